/* lua_jwt.c: chat.jwt.sign(userId, ttl_s?) -> token; chat.jwt.verify(token) -> userId | nil, err.
 * Same secret, algorithm and checks as the server's own tokens. */
#include <lauxlib.h>
#include <stdlib.h>

#include "auth.h"
#include "rt.h"
#include "script.h"

static int jwt_sign(lua_State *L)
{
    chat_runtime *rt = chat__script_rt(L);
    const char *sub = luaL_checkstring(L, 1);
    lua_Integer ttl = luaL_optinteger(L, 2, rt->cfg.token_ttl_s);
    luaL_argcheck(L, ttl > 0 && ttl <= 365 * 86400, 2, "ttl must be 1 s to 1 year");
    uv_timeval64_t tv;
    uv_gettimeofday(&tv);
    char *token = NULL;
    if (chat__jwt_sign(rt->jwt_secret, sub, tv.tv_sec, (int)ttl, &token)) {
        return luaL_argerror(L, 1, "expected a user id (24 hex characters)");
    }
    lua_pushstring(L, token);
    free(token);
    return 1;
}

static int jwt_verify(lua_State *L)
{
    chat_runtime *rt = chat__script_rt(L);
    const char *token = luaL_checkstring(L, 1);
    uv_timeval64_t tv;
    uv_gettimeofday(&tv);
    char sub[25];
    if (chat__jwt_verify(rt->jwt_secret, token, tv.tv_sec, sub)) {
        return chat__lua_fail(L, CHAT_EUNAUTHORIZED, "the token is invalid or expired");
    }
    lua_pushstring(L, sub);
    return 1;
}

static const luaL_Reg jwt_funcs[] = {{"sign", jwt_sign}, {"verify", jwt_verify}, {NULL, NULL}};

int luaopen_chat_jwt(lua_State *L)
{
    luaL_newlib(L, jwt_funcs);
    return 1;
}
