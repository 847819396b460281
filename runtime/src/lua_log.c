/* lua_log.c: chat.log.info/warn/error(message, fields?) as JSON log lines (event "script"). */
#include <lauxlib.h>

#include "log.h"
#include "script.h"

static int log_at(lua_State *L, int level)
{
    const char *msg = luaL_checkstring(L, 1);
    json_t *fields = NULL;
    if (!lua_isnoneornil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        const char *err = NULL;
        fields = chat__lua_to_json(L, 2, &err);
        if (!json_is_object(fields)) {
            json_decref(fields);
            return luaL_argerror(L, 2, err ? err : "expected a table of fields");
        }
    }
    lua_Debug ar;
    if (lua_getstack(L, 1, &ar) && lua_getinfo(L, "Sl", &ar)) {
        if (!fields) {
            fields = json_object();
        }
        json_object_set_new(fields, "script", json_sprintf("%s:%d", ar.short_src, ar.currentline));
    }
    chat__log(level, "script", msg, fields);
    return 0;
}

static int log_info(lua_State *L) { return log_at(L, CHAT_LOG_INFO); }
static int log_warn(lua_State *L) { return log_at(L, CHAT_LOG_WARN); }
static int log_error(lua_State *L) { return log_at(L, CHAT_LOG_ERROR); }
static int log_debug(lua_State *L) { return log_at(L, CHAT_LOG_DEBUG); }

static const luaL_Reg log_funcs[] = {
    {"debug", log_debug}, {"info", log_info}, {"warn", log_warn}, {"error", log_error}, {NULL, NULL},
};

int luaopen_chat_log(lua_State *L)
{
    luaL_newlib(L, log_funcs);
    return 1;
}
