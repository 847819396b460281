/* lua_jobs.c: chat.jobs.push(name, payload [, {delay_ms, max_attempts}]) and
 * chat.jobs.dead([limit]), both waiting for the queue's answer. chat.jobs.handle, which
 * declares the handler of a job name, is written in Lua (lua/chat/jobs.lua). */
#include <lauxlib.h>
#include <string.h>

#include "jobs.h"
#include "rt.h"
#include "script.h"

static void pushed(int status, json_t *result, void *arg)
{
    chat_pending *p = arg;
    lua_State *T = chat__script_pending_thread(p);
    if (status) {
        chat__script_pending_done(
            p, chat__lua_fail(T, status,
                              status == CHAT_ETOOBIG ? "the job queue is full (CHAT_JOBS_MAX)"
                                                     : NULL));
    } else {
        lua_pushstring(T, json_string_value(json_object_get(result, "id")));
        chat__script_pending_done(p, 1);
    }
    json_decref(result);
}

static lua_Integer opt_field(lua_State *L, int t, const char *name, lua_Integer lo,
                             lua_Integer hi)
{
    lua_Integer v = 0;
    if (lua_getfield(L, t, name) != LUA_TNIL) {
        int isint = 0;
        v = lua_tointegerx(L, -1, &isint);
        if (!isint || v < lo || v > hi) {
            luaL_error(L, "bad option '%s' (an integer from %d to %d)", name, (int)lo, (int)hi);
        }
    }
    lua_pop(L, 1);
    return v;
}

/* chat.jobs.push(name, payload [, opts]) -> id | nil, message, code */
static int jobs_push(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    luaL_argcheck(L, lua_gettop(L) >= 2, 2, "a payload (any JSON value; nil is null)");
    lua_Integer delay = 0, attempts = 0;
    if (!lua_isnoneornil(L, 3)) {
        luaL_checktype(L, 3, LUA_TTABLE);
        delay = opt_field(L, 3, "delay_ms", 0, 30LL * 86400 * 1000);
        attempts = opt_field(L, 3, "max_attempts", 1, 100);
    }
    const char *err = NULL;
    json_t *payload = lua_isnil(L, 2) ? json_null() : chat__lua_to_json(L, 2, &err);
    if (!payload) {
        return luaL_argerror(L, 2, err ? err : "cannot be stored as JSON");
    }
    chat_runtime *rt = chat__script_rt(L);
    if (!rt->jobs) {
        json_decref(payload);
        return chat__lua_fail(L, CHAT_EUNAVAIL, "the job queue is not running");
    }
    const char *why = chat__script_wait_error(L);
    if (why) {
        json_decref(payload);
        return luaL_error(L, "%s", why);
    }
    chat_pending *p = chat__script_pending_new(L);
    int rc = chat__jobs_push(rt->jobs, name, payload, delay, (int)attempts, pushed, p);
    json_decref(payload);
    if (rc) {
        chat__script_pending_cancel(p);
        if (rc == CHAT_EINVAL) {
            return luaL_argerror(L, 1, "a job name: 1 to 64 of letters, digits, _ . - :");
        }
        return chat__lua_fail(L, rc,
                              rc == CHAT_ETOOBIG
                                  ? "the payload is larger than CHAT_JOBS_PAYLOAD_MAX"
                                  : NULL);
    }
    return chat__script_await(L, p);
}

static void listed(int status, json_t *result, void *arg)
{
    chat_pending *p = arg;
    lua_State *T = chat__script_pending_thread(p);
    if (status) {
        chat__script_pending_done(p, chat__lua_fail(T, status, NULL));
    } else {
        chat__json_to_lua(T, result);
        chat__script_pending_done(p, 1);
    }
    json_decref(result);
}

/* chat.jobs.dead([limit = 100]) -> {job, ...} newest first | nil, message, code */
static int jobs_dead(lua_State *L)
{
    lua_Integer limit = luaL_optinteger(L, 1, 100);
    luaL_argcheck(L, limit >= 1 && limit <= 10000, 1, "1 to 10000");
    chat_runtime *rt = chat__script_rt(L);
    if (!rt->jobs) {
        return chat__lua_fail(L, CHAT_EUNAVAIL, "the job queue is not running");
    }
    chat_pending *p = chat__script_pending_new(L);
    chat__jobs_dead(rt->jobs, (int)limit, listed, p);
    return chat__script_await(L, p);
}

static const luaL_Reg jobs_funcs[] = {
    {"push", jobs_push},
    {"dead", jobs_dead},
    {NULL, NULL},
};

int luaopen_chat_jobs(lua_State *L)
{
    luaL_newlib(L, jobs_funcs);
    return 1;
}
