/* lua_store.c: chat.store: read queries on the store (rooms, users, history). Each waits for
 * its answer; a missing object is nil, a failure nil, a message and the error code. */
#include <lauxlib.h>

#include "rt.h"
#include "script.h"

static void query_done(int status, json_t *result, void *arg)
{
    chat_pending *p = arg;
    lua_State *T = chat__script_pending_thread(p);
    if (json_is_object(result)) {
        json_object_del(result, "passwordHash"); /* scripts never see password hashes */
    }
    if (status == CHAT_ENOTFOUND) {
        lua_pushnil(T);
        chat__script_pending_done(p, 1);
    } else if (status) {
        chat__script_pending_done(p, chat__lua_fail(T, status, NULL));
    } else {
        chat__json_to_lua(T, result);
        chat__script_pending_done(p, 1);
    }
    json_decref(result);
}

static int query(lua_State *L, int op, json_t *arg)
{
    if (!arg) {
        return luaL_error(L, "out of memory");
    }
    const char *why = chat__script_wait_error(L);
    if (why) {
        json_decref(arg);
        return luaL_error(L, "%s", why);
    }
    chat_pending *p = chat__script_pending_new(L);
    int rc = chat__store_call(chat__script_rt(L)->store, op, arg, query_done, p);
    if (rc) {
        query_done(rc, NULL, p);
    }
    return chat__script_await(L, p);
}

static int store_room(lua_State *L)
{
    return query(L, CHAT_STORE_ROOM_GET, json_pack("{s:s}", "id", luaL_checkstring(L, 1)));
}

static int store_user(lua_State *L)
{
    return query(L, CHAT_STORE_USER_GET, json_pack("{s:s}", "id", luaL_checkstring(L, 1)));
}

static int store_user_by_name(lua_State *L)
{
    return query(L, CHAT_STORE_USER_BY_LOGIN, json_pack("{s:s}", "login", luaL_checkstring(L, 1)));
}

static int store_rooms_for_user(lua_State *L)
{
    return query(L, CHAT_STORE_ROOMS_FOR_USER,
                 json_pack("{s:s}", "userId", luaL_checkstring(L, 1)));
}

/* chat.store.messages(roomId, {before = id, limit = n}) -> {messages, nextBefore} */
static int store_messages(lua_State *L)
{
    const char *room = luaL_checkstring(L, 1);
    const char *before = NULL;
    lua_Integer limit = 50;
    if (lua_istable(L, 2)) {
        lua_getfield(L, 2, "before");
        before = lua_tostring(L, -1);
        lua_getfield(L, 2, "limit");
        limit = luaL_optinteger(L, -1, 50);
    }
    luaL_argcheck(L, limit >= 1 && limit <= 100, 2, "limit must be 1..100");
    json_t *arg = json_pack("{s:s,s:o,s:I}", "roomId", room, "before",
                            before ? json_string(before) : json_null(), "limit",
                            (json_int_t)limit);
    lua_settop(L, 0);
    return query(L, CHAT_STORE_MESSAGES_PAGE, arg);
}

static const luaL_Reg store_funcs[] = {
    {"room", store_room},
    {"user", store_user},
    {"user_by_name", store_user_by_name},
    {"rooms_for_user", store_rooms_for_user},
    {"messages", store_messages},
    {NULL, NULL},
};

int luaopen_chat_store(lua_State *L)
{
    luaL_newlib(L, store_funcs);
    return 1;
}
