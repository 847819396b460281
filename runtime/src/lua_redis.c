/* lua_redis.c: chat.redis(command, args...) -> reply | nil, message, code: raw Redis commands for
 * scripts when CHAT_REDIS_URL is set (kv_redis.c refuses commands that would block or take
 * over the shared connection). Replies: strings, integers, arrays as tables, nil. */
#include <lauxlib.h>
#include <stdlib.h>

#include "kv.h"
#include "rt.h"
#include "script.h"

#define ARGS_MAX 64

static void reply_done(int status, json_t *reply, void *arg)
{
    chat_pending *p = arg;
    lua_State *T = chat__script_pending_thread(p);
    if (status) {
        /* Redis's own error text, when it sent one, is the message */
        chat__script_pending_done(
            p, chat__lua_fail(T, status, json_is_string(reply) ? json_string_value(reply) : NULL));
    } else {
        chat__json_to_lua(T, reply);
        chat__script_pending_done(p, 1);
    }
    json_decref(reply);
}

static int chat_redis(lua_State *L)
{
    int argc = lua_gettop(L);
    luaL_argcheck(L, argc >= 1 && argc <= ARGS_MAX, 1, "a command and up to 63 arguments");
    const char *argv[ARGS_MAX];
    size_t lens[ARGS_MAX];
    for (int i = 0; i < argc; i++) {
        argv[i] = luaL_checklstring(L, i + 1, &lens[i]);
    }
    chat_pending *p = chat__script_pending_new(L);
    int rc = chat__kv_redis_command(chat__script_rt(L)->kv, argc, argv, lens, reply_done, p);
    if (rc) {
        /* not started: answer now (CHAT_EINVAL here means Redis is not configured) */
        chat__script_pending_cancel(p);
        return chat__lua_fail(L, rc == CHAT_EINVAL ? CHAT_EUNAVAIL : rc,
                              rc == CHAT_EINVAL       ? "Redis is not configured (set CHAT_REDIS_URL)"
                              : rc == CHAT_EFORBIDDEN ? "that command is not allowed from scripts"
                                                      : NULL);
    }
    return chat__script_await(L, p);
}

int luaopen_chat_redis(lua_State *L)
{
    lua_pushcfunction(L, chat_redis);
    return 1;
}
