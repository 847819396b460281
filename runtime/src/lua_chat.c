/* lua_chat.c: the `chat` module scripts require: hooks, rejections, namespaces, emits and
 * room actions, plus the sub-modules (kv, store, json, jwt, crypto, timer, log). The parts
 * written in Lua (kick, ban, mute, bots) are in lua/chat/actions.lua. */
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "rt.h"
#include "script.h"
#include "sio.h"

int luaopen_chat_kv(lua_State *L);
int luaopen_chat_store(lua_State *L);
int luaopen_chat_jwt(lua_State *L);
int luaopen_chat_crypto(lua_State *L);
int luaopen_chat_timer(lua_State *L);
int luaopen_chat_log(lua_State *L);
int luaopen_chat_redis(lua_State *L);
int luaopen_chat_json(lua_State *L);
int luaopen_chat_eio(lua_State *L);
int luaopen_chat_jobs(lua_State *L);
int luaopen_chat_http(lua_State *L);

static const char *const known_hooks[] = {
    "connect/auth", "connect", "room/join",     "room/joined", "room/leave",
    "message/before", "message/after", "typing", "disconnect",
    "user/update", "user/updated", "message/edit", "message/delete", "message/react", "room/read",
    "notification/before", "upload/before", "eio/open", "eio/message", "eio/close", NULL,
};

/* chat.hook(name, fn, priority = 0): higher priorities run first; equal ones in the order
 * they were hooked. */
static int chat_hook(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    lua_Number prio = luaL_optnumber(L, 3, 0);
    int known = (strncmp(name, "event/", 6) == 0 && name[6]) ||
                (strncmp(name, "job/", 4) == 0 && name[4]); /* chat.jobs.handle's */
    for (const char *const *h = known_hooks; !known && *h; h++) {
        known = strcmp(*h, name) == 0;
    }
    if (!known) {
        return luaL_argerror(L, 1, lua_pushfstring(L, "unknown hook '%s'", name));
    }
    lua_getfield(L, LUA_REGISTRYINDEX, "chat.hooks");
    if (lua_getfield(L, -1, name) != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_setfield(L, -3, name);
    }
    /* [.., hooks, list]: insert after the last entry whose priority is >= prio */
    lua_Integer n = luaL_len(L, -1), pos = n + 1;
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, -1, i);
        lua_getfield(L, -1, "priority");
        lua_Number p = lua_tonumber(L, -1);
        lua_pop(L, 2);
        if (p < prio) {
            pos = i;
            break;
        }
    }
    for (lua_Integer i = n; i >= pos; i--) {
        lua_rawgeti(L, -1, i);
        lua_rawseti(L, -2, i + 1);
    }
    lua_createtable(L, 0, 2);
    lua_pushvalue(L, 2);
    lua_setfield(L, -2, "fn");
    lua_pushnumber(L, prio);
    lua_setfield(L, -2, "priority");
    lua_rawseti(L, -2, pos);
    return 0;
}

/* chat.handlers(name) -> {fn, ...}: the handlers hooked on name, in the order they run (for
 * specs that drive a policy's hooks directly). */
static int chat_handlers(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    lua_newtable(L);
    lua_getfield(L, LUA_REGISTRYINDEX, "chat.hooks");
    if (lua_getfield(L, -1, name) == LUA_TTABLE) {
        lua_Integer n = luaL_len(L, -1);
        for (lua_Integer i = 1; i <= n; i++) {
            lua_rawgeti(L, -1, i);
            lua_getfield(L, -1, "fn");
            lua_rawseti(L, -5, i);
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 2);
    return 1;
}

/* chat.reject(code, message [, data]): what a handler returns to refuse. data (any JSON
 * value) goes with a refused connection: the client's connect_error err.data. */
static int chat_reject(lua_State *L)
{
    const char *code = luaL_checkstring(L, 1);
    const char *message = luaL_optstring(L, 2, "refused by the server's policy");
    if (!chat__script_reject_code(code)) {
        return luaL_argerror(L, 1, "not an error code of PROTOCOL.md");
    }
    lua_settop(L, 3); /* [code, message, data or nil] */
    lua_createtable(L, 0, 3);
    lua_pushstring(L, code);
    lua_setfield(L, -2, "code");
    lua_pushstring(L, message);
    lua_setfield(L, -2, "message");
    if (!lua_isnoneornil(L, 3)) {
        const char *err = NULL;
        json_t *check = chat__lua_to_json(L, 3, &err); /* refuse now what cannot be sent */
        if (!check) {
            return luaL_argerror(L, 3, err ? err : "cannot be sent as JSON");
        }
        json_decref(check);
        lua_pushvalue(L, 3);
        lua_setfield(L, -2, "data");
    }
    lua_getfield(L, LUA_REGISTRYINDEX, "chat.reject");
    lua_setmetatable(L, -2);
    return 1;
}

/* chat.accept(userId): what a "connect/auth" handler returns to let the socket in as that
 * user; only this value (or chat.accept_anonymous()) authenticates. */
static int chat_accept(lua_State *L)
{
    size_t len;
    const char *user = luaL_checklstring(L, 1, &len);
    luaL_argcheck(L, len == 24 && strspn(user, "0123456789abcdef") == 24, 1,
                  "a user id (24 lowercase hex characters)");
    lua_createtable(L, 0, 1);
    lua_pushvalue(L, 1);
    lua_setfield(L, -2, "userId");
    lua_getfield(L, LUA_REGISTRYINDEX, "chat.accept");
    lua_setmetatable(L, -2);
    return 1;
}

/* chat.accept_anonymous(): lets the socket in without a user (built-in chat events answer
 * it "unauthorized"; event/<name> handlers see no ev.user). */
static int chat_accept_anonymous(lua_State *L)
{
    lua_createtable(L, 0, 0);
    lua_getfield(L, LUA_REGISTRYINDEX, "chat.accept");
    lua_setmetatable(L, -2);
    return 1;
}

/* chat.namespace("/bots", {anonymous = true}): clients may connect to it; its events go to
 * "event/<name>" hooks. */
static int chat_namespace(lua_State *L)
{
    const char *nsp = luaL_checkstring(L, 1);
    luaL_argcheck(L, nsp[0] == '/' && nsp[1] && strlen(nsp) < SIO_NSP_MAX, 1,
                  "a namespace looks like \"/name\"");
    lua_getfield(L, LUA_REGISTRYINDEX, "chat.namespaces");
    lua_createtable(L, 0, 1);
    if (lua_istable(L, 2)) {
        lua_getfield(L, 2, "anonymous");
        lua_setfield(L, -2, "anonymous");
    }
    lua_setfield(L, -2, nsp);
    return 0;
}

/* The domain's actions, registered at start: scripts act on the chat through them. */
static const chat_actions *actions(lua_State *L) { return chat__script_rt(L)->actions; }

/* The arguments of an emit, from stack index first to the top, as a JSON array: as many as
 * were given (an explicit nil is a null; none is an event without arguments). */
static json_t *emit_args(lua_State *L, int first)
{
    int top = lua_gettop(L);
    json_t *args = json_array();
    if (!args) {
        luaL_error(L, "not enough memory");
    }
    for (int i = first; i <= top; i++) {
        const char *err = NULL;
        json_t *v = chat__lua_to_json(L, i, &err);
        if (!v || json_array_append_new(args, v)) {
            json_decref(args);
            luaL_argerror(L, i, err ? err : "cannot be sent as JSON");
        }
    }
    return args;
}

/* chat.emit_room(roomId, event, ...): to every member socket of the room, on every node. */
static int chat_emit_room(lua_State *L)
{
    const char *room = luaL_checkstring(L, 1);
    const char *event = luaL_checkstring(L, 2);
    json_t *args = emit_args(L, 3);
    actions(L)->emit_room(chat__script_rt(L), room, event, args);
    json_decref(args);
    return 0;
}

/* chat.emit_user(userId, event, ...): to every socket of the user, on every node. */
static int chat_emit_user(lua_State *L)
{
    const char *user = luaL_checkstring(L, 1);
    const char *event = luaL_checkstring(L, 2);
    json_t *args = emit_args(L, 3);
    lua_pushboolean(L, actions(L)->emit_user(chat__script_rt(L), user, event, args));
    json_decref(args);
    return 1;
}

/* chat.emit_socket(socketId, event, ...): true when the socket is connected here. */
static int chat_emit_socket(lua_State *L)
{
    const char *sock = luaL_checkstring(L, 1);
    const char *event = luaL_checkstring(L, 2);
    json_t *args = emit_args(L, 3);
    lua_pushboolean(L, actions(L)->emit_socket(chat__script_rt(L), sock, event, args));
    json_decref(args);
    return 1;
}

static void action_done(int status, json_t *result, void *arg)
{
    chat_pending *p = arg;
    lua_State *T = chat__script_pending_thread(p);
    if (status) {
        chat__script_pending_done(p, chat__lua_fail(T, status, NULL));
    } else if (!result) {
        lua_pushboolean(T, 1);
        chat__script_pending_done(p, 1);
    } else {
        /* {room = ...} or {message = ...}: the caller wants the object itself */
        json_t *inner = json_object_size(result) == 1 ? json_object_get(result, "room") : NULL;
        if (!inner && json_object_size(result) == 1) {
            inner = json_object_get(result, "message");
        }
        chat__json_to_lua(T, inner ? inner : result);
        chat__script_pending_done(p, 1);
    }
    json_decref(result);
}

/* chat.join(roomId, userId) -> room | nil, err: makes the user a member (no policy hooks). */
static int chat_join(lua_State *L)
{
    const char *room = luaL_checkstring(L, 1);
    const char *user = luaL_checkstring(L, 2);
    chat_pending *p = chat__script_pending_new(L);
    actions(L)->join(chat__script_rt(L), room, user, action_done, p);
    return chat__script_await(L, p);
}

/* chat.leave(roomId, userId) -> true | nil, err: ends the membership on every device. */
static int chat_leave(lua_State *L)
{
    const char *room = luaL_checkstring(L, 1);
    const char *user = luaL_checkstring(L, 2);
    chat_pending *p = chat__script_pending_new(L);
    actions(L)->leave(chat__script_rt(L), room, user, action_done, p);
    return chat__script_await(L, p);
}

/* chat._ensure_user(username) -> user: the account of a bot, created on first use. */
static int chat_ensure_user(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    chat_pending *p = chat__script_pending_new(L);
    actions(L)->ensure_user(chat__script_rt(L), name, action_done, p);
    return chat__script_await(L, p);
}

/* chat._send_as(userId, roomId, content) -> message: stored and delivered like anyone's. */
static int chat_send_as(lua_State *L)
{
    const char *user = luaL_checkstring(L, 1);
    const char *room = luaL_checkstring(L, 2);
    const char *content = luaL_checkstring(L, 3);
    chat_pending *p = chat__script_pending_new(L);
    actions(L)->send_as(chat__script_rt(L), user, room, content, action_done, p);
    return chat__script_await(L, p);
}

/* chat.create_room(adminId, {name, type, participants, settings}) -> room | nil, err: a room
 * checked like room:create, with adminId as its admin and first member (no policy hooks). */
static int chat_create_room(lua_State *L)
{
    const char *admin = luaL_checkstring(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    const char *why = chat__script_wait_error(L);
    if (why) {
        return luaL_error(L, "%s", why);
    }
    /* the pending first: it raises on out of memory, which would leak a payload made before */
    chat_pending *p = chat__script_pending_new(L);
    const char *err = NULL;
    json_t *payload = chat__lua_to_json(L, 2, &err);
    if (!payload) {
        chat__script_pending_cancel(p);
        return luaL_argerror(L, 2, err ? err : "cannot be sent as JSON");
    }
    actions(L)->create_room(chat__script_rt(L), admin, payload, action_done, p);
    json_decref(payload);
    return chat__script_await(L, p);
}

/* the chain returned (after yielding, maybe): its results are the whole stack */
static int dispatch_k(lua_State *L, int status, lua_KContext ctx)
{
    (void)status;
    (void)ctx;
    return lua_gettop(L);
}

/* chat.dispatch(name, ev) -> the first non-nil result, with every value it came with: runs
 * the handlers of a hook in order, as the server does (specs drive policies through it). */
static int chat_dispatch(lua_State *L)
{
    luaL_checkstring(L, 1);
    lua_settop(L, 2);
    lua_getfield(L, LUA_REGISTRYINDEX, "chat.chain");
    lua_insert(L, 1);
    lua_callk(L, 2, LUA_MULTRET, 0, dispatch_k);
    return lua_gettop(L);
}

/* Settings that are secrets: a script gets none of them (a policy could log or send them). */
static int is_secret(const char *name)
{
    static const char *const secrets[] = {"jwt_secret", "admin_token", "redis_url", "mongo_uri",
                                          "admin_tokens", NULL};
    char lower[64];
    size_t i = 0;
    for (; name[i] && i < sizeof lower - 1; i++) {
        char c = name[i];
        lower[i] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
    }
    lower[i] = '\0';
    for (const char *const *s = secrets; *s; s++) {
        if (strcmp(lower, *s) == 0) {
            return 1;
        }
    }
    return strstr(lower, "secret") || strstr(lower, "password");
}

/* chat.setting(name, default): the operator's CHAT_<NAME> environment variable, as a number
 * when the default is one. Secret settings (the JWT secret, the admin token, URLs that carry
 * passwords) are refused. */
static int chat_setting(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    if (is_secret(name)) {
        return luaL_argerror(L, 1, lua_pushfstring(L, "'%s' is a secret setting; scripts cannot "
                                                      "read it", name));
    }
    char env[128];
    size_t i = 0;
    memcpy(env, "CHAT_", 5);
    for (; name[i] && i < sizeof env - 6; i++) {
        char c = name[i];
        env[5 + i] = (char)(c >= 'a' && c <= 'z' ? c - 32 : c);
    }
    env[5 + i] = '\0';
    const char *v = getenv(env);
    if (!v) {
        lua_settop(L, 2);
        return 1;
    }
    if (lua_type(L, 2) == LUA_TNUMBER) {
        if (!lua_stringtonumber(L, v)) {
            return luaL_error(L, "%s must be a number", env);
        }
        return 1;
    }
    lua_pushstring(L, v);
    return 1;
}

static int chat_array(lua_State *L)
{
    if (lua_isnoneornil(L, 1)) {
        lua_newtable(L);
    } else {
        luaL_checktype(L, 1, LUA_TTABLE);
        lua_settop(L, 1);
    }
    chat__lua_push_array_mt(L);
    lua_setmetatable(L, -2);
    return 1;
}

/* chat.binary(s): bytes that an emit sends as a binary attachment (a Buffer or ArrayBuffer
 * in the client); tostring(b) gives the bytes back. Received attachments arrive as these. */
static int chat_binary(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    chat__lua_push_binary(L, s, len);
    return 1;
}

static int chat_now(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)chat__now_ms());
    return 1;
}

static const luaL_Reg chat_funcs[] = {
    {"hook", chat_hook},
    {"handlers", chat_handlers},
    {"reject", chat_reject},
    {"accept", chat_accept},
    {"accept_anonymous", chat_accept_anonymous},
    {"namespace", chat_namespace},
    {"emit_room", chat_emit_room},
    {"emit_user", chat_emit_user},
    {"emit_socket", chat_emit_socket},
    {"join", chat_join},
    {"leave", chat_leave},
    {"_ensure_user", chat_ensure_user},
    {"_send_as", chat_send_as},
    {"create_room", chat_create_room},
    {"dispatch", chat_dispatch},
    {"setting", chat_setting},
    {"array", chat_array},
    {"now", chat_now},
    {"binary", chat_binary},
    {NULL, NULL},
};

static const luaL_Reg submodules[] = {
    {"kv", luaopen_chat_kv},         {"store", luaopen_chat_store},
    {"jwt", luaopen_chat_jwt},       {"crypto", luaopen_chat_crypto},
    {"timer", luaopen_chat_timer},   {"log", luaopen_chat_log},
    {"redis", luaopen_chat_redis},
    {"json", luaopen_chat_json},     {"eio", luaopen_chat_eio},
    {"jobs", luaopen_chat_jobs},     {"http", luaopen_chat_http},
    {NULL, NULL},
};

int luaopen_chat(lua_State *L)
{
    luaL_newlib(L, chat_funcs);
    for (const luaL_Reg *m = submodules; m->func; m++) {
        m->func(L);
        lua_setfield(L, -2, m->name);
    }
    lua_pushlightuserdata(L, NULL);
    lua_setfield(L, -2, "null");
    /* the parts written in Lua extend the table */
    lua_getglobal(L, "require");
    lua_pushliteral(L, "chat.actions");
    lua_call(L, 1, 1);
    lua_pushvalue(L, -2);
    lua_call(L, 1, 0);
    lua_getglobal(L, "require");
    lua_pushliteral(L, "chat.jobs");
    lua_call(L, 1, 1);
    lua_pushvalue(L, -2);
    lua_call(L, 1, 0);
    return 1;
}
