/* lua_eio.c: chat.eio, the scripts' side of the plain Engine.IO endpoint (eio_script.c):
 * chat.eio.send(sid, data) sends a message to one session, as text (a string) or binary (a
 * chat.binary value); chat.eio.close(sid) ends it. Both return true, or nil, message,
 * "not_found" when sid is no open session of the endpoint on this node. */
#include <lauxlib.h>

#include "eio.h"
#include "rt.h"
#include "script.h"

static const chat_eio_actions *eio(lua_State *L)
{
    const chat_eio_actions *a = chat__script_rt(L)->eio_actions;
    if (!a) {
        luaL_error(L, "chat.eio: the Engine.IO endpoint is not running here");
    }
    return a;
}

static int answer(lua_State *L, int rc)
{
    if (rc) {
        return chat__lua_fail(L, rc, rc == CHAT_ENOTFOUND ? "no such Engine.IO session here"
                                                          : NULL);
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* chat.eio.send(sid, data): data a string (a text message) or chat.binary (a binary one) */
static int eio_send(lua_State *L)
{
    const char *sid = luaL_checkstring(L, 1);
    const void *data;
    size_t len;
    int binary = 0;
    if (lua_type(L, 2) == LUA_TSTRING) {
        data = lua_tolstring(L, 2, &len);
        luaL_argcheck(L, chat__utf8_valid(data, len), 2,
                      "text must be UTF-8; send bytes as chat.binary(s)");
    } else if ((data = luaL_testudata(L, 2, "chat.binary"))) {
        len = lua_rawlen(L, 2);
        binary = 1;
    } else {
        return luaL_typeerror(L, 2, "string or chat.binary");
    }
    const chat_eio_actions *a = eio(L);
    return answer(L, a->send(chat__script_rt(L), sid, data, len, binary));
}

/* chat.eio.close(sid) */
static int eio_close(lua_State *L)
{
    const char *sid = luaL_checkstring(L, 1);
    const chat_eio_actions *a = eio(L);
    return answer(L, a->close(chat__script_rt(L), sid));
}

static const luaL_Reg eio_funcs[] = {
    {"send", eio_send},
    {"close", eio_close},
    {NULL, NULL},
};

int luaopen_chat_eio(lua_State *L)
{
    luaL_newlib(L, eio_funcs);
    return 1;
}
