/* lua_kv.c: chat.kv.get/set/incr/expire/del: counters and values with TTLs, on the runtime's
 * kv (in-process, or Redis when configured). Each call waits for its answer; failures return
 * nil, a message and the error code. TTLs are in milliseconds. What scripts may fill in the
 * in-process kv is bounded (CHAT_LUA_KV_MB): it lives outside the Lua heap and its cap. */
#include <lauxlib.h>

#include "kv.h"
#include "rt.h"
#include "script.h"

static int push_error(lua_State *T, int status)
{
    if (status == CHAT_ETOOBIG) {
        chat__script_count_refusal(T, "kv");
        return chat__lua_fail(T, status,
                              "the kv is full (CHAT_LUA_KV_MB); delete keys or give them a TTL");
    }
    return chat__lua_fail(T, status, NULL);
}

static size_t kv_max(lua_State *L) { return (size_t)chat__script_rt(L)->cfg.lua_kv_mb * 1024 * 1024; }

static void get_done(int status, const char *value, int64_t number, void *arg)
{
    chat_pending *p = arg;
    lua_State *T = chat__script_pending_thread(p);
    (void)number;
    if (status) {
        chat__script_pending_done(p, push_error(T, status));
        return;
    }
    if (value) {
        lua_pushstring(T, value);
    } else {
        lua_pushnil(T);
    }
    chat__script_pending_done(p, 1);
}

static void number_done(int status, const char *value, int64_t number, void *arg)
{
    chat_pending *p = arg;
    lua_State *T = chat__script_pending_thread(p);
    (void)value;
    if (status) {
        chat__script_pending_done(p, push_error(T, status));
        return;
    }
    lua_pushinteger(T, (lua_Integer)number);
    chat__script_pending_done(p, 1);
}

static void bool_done(int status, const char *value, int64_t number, void *arg)
{
    chat_pending *p = arg;
    lua_State *T = chat__script_pending_thread(p);
    (void)value;
    if (status) {
        chat__script_pending_done(p, push_error(T, status));
        return;
    }
    lua_pushboolean(T, number != 0 || value != NULL);
    chat__script_pending_done(p, 1);
}

static int kv_get(lua_State *L)
{
    const char *key = luaL_checkstring(L, 1);
    chat_pending *p = chat__script_pending_new(L);
    chat__kv_get(chat__script_rt(L)->kv, key, get_done, p);
    return chat__script_await(L, p);
}

static int kv_set(lua_State *L)
{
    const char *key = luaL_checkstring(L, 1);
    const char *value = luaL_checkstring(L, 2);
    lua_Integer ttl = luaL_optinteger(L, 3, 0);
    chat_pending *p = chat__script_pending_new(L);
    chat__kv_set_within(chat__script_rt(L)->kv, kv_max(L), key, value, ttl, bool_done, p);
    return chat__script_await(L, p);
}

static int kv_incr(lua_State *L)
{
    const char *key = luaL_checkstring(L, 1);
    lua_Integer by = luaL_optinteger(L, 2, 1);
    lua_Integer ttl = luaL_optinteger(L, 3, 0);
    chat_pending *p = chat__script_pending_new(L);
    chat__kv_incr_within(chat__script_rt(L)->kv, kv_max(L), key, by, ttl, number_done, p);
    return chat__script_await(L, p);
}

static int kv_expire(lua_State *L)
{
    const char *key = luaL_checkstring(L, 1);
    lua_Integer ttl = luaL_checkinteger(L, 2);
    chat_pending *p = chat__script_pending_new(L);
    chat__kv_expire(chat__script_rt(L)->kv, key, ttl, bool_done, p);
    return chat__script_await(L, p);
}

static int kv_del(lua_State *L)
{
    const char *key = luaL_checkstring(L, 1);
    chat_pending *p = chat__script_pending_new(L);
    chat__kv_del(chat__script_rt(L)->kv, key, bool_done, p);
    return chat__script_await(L, p);
}

static const luaL_Reg kv_funcs[] = {
    {"get", kv_get}, {"set", kv_set}, {"incr", kv_incr},
    {"expire", kv_expire}, {"del", kv_del}, {NULL, NULL},
};

int luaopen_chat_kv(lua_State *L)
{
    luaL_newlib(L, kv_funcs);
    return 1;
}
