/* actions.c: what scripts may do through chat.* (emit, join, leave, send as a user, create a
 * room, make a bot's account). No policy hooks run for them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "domain_int.h"

static int has_binary(const json_t *v)
{
    size_t i;
    const char *k;
    json_t *x;
    if (json_is_object(v)) {
        if (json_object_size(v) == 1 && json_is_string(json_object_get(v, "$binary"))) {
            return 1;
        }
        json_object_foreach((json_t *)v, k, x)
        {
            if (has_binary(x)) {
                return 1;
            }
        }
    } else if (json_is_array(v)) {
        json_array_foreach(v, i, x)
        {
            if (has_binary(x)) {
                return 1;
            }
        }
    }
    return 0;
}

/* [event, args...]: the whole Socket.IO event a script emits. */
static json_t *event_args(const char *event, json_t *args)
{
    json_t *all = json_pack("[s]", event);
    if (all && json_array_extend(all, args)) {
        json_decref(all);
        return NULL;
    }
    return all;
}

static void emit_room(chat_runtime *rt, const char *room_id, const char *event, json_t *args)
{
    json_t *all = chat__is_object_id(room_id) ? event_args(event, args) : NULL;
    if (all) {
        chat__fanout_room_event(rt, room_id, all, has_binary(args));
    }
    json_decref(all);
}

static int emit_user(chat_runtime *rt, const char *user_id, const char *event, json_t *args)
{
    if (!chat__is_object_id(user_id)) {
        return 0;
    }
    /* data: the first argument too, for nodes that predate multi-argument emits */
    chat__notify_user(rt, user_id,
                      json_pack("{s:s,s:s,s:O,s:O*}", "op", "emit", "event", event, "args", args,
                                "data", json_array_get(args, 0)));
    return 1;
}

static int emit_socket(chat_runtime *rt, const char *sock_id, const char *event, json_t *args)
{
    chat_sock *k = chat__map_get(&rt->socks, sock_id);
    if (!k || !k->connected) {
        return 0;
    }
    json_t *all = event_args(event, args);
    chat__sock_emit_args(k, all);
    json_decref(all);
    return 1;
}

static chat_call *script_room_call(chat_runtime *rt, const char *room_id, const char *user_id,
                                   chat_store_cb cb, void *arg)
{
    if (!chat__is_object_id(room_id) || !chat__is_object_id(user_id)) {
        cb(CHAT_EINVAL, NULL, arg);
        return NULL;
    }
    chat_call *c = chat__call_from_script(rt, user_id, cb, arg);
    if (c) {
        memcpy(c->room_id, room_id, 25);
    }
    return c;
}

static void join(chat_runtime *rt, const char *room_id, const char *user_id, chat_store_cb cb,
                 void *arg)
{
    chat_call *c = script_room_call(rt, room_id, user_id, cb, arg);
    if (c) {
        chat__room_add_member(c);
    }
}

static void leave(chat_runtime *rt, const char *room_id, const char *user_id, chat_store_cb cb,
                  void *arg)
{
    chat_call *c = script_room_call(rt, room_id, user_id, cb, arg);
    if (c) {
        chat__room_remove_member(c);
    }
}

static void send_as(chat_runtime *rt, const char *user_id, const char *room_id, const char *content,
                    chat_store_cb cb, void *arg)
{
    chat_call *c = script_room_call(rt, room_id, user_id, cb, arg);
    if (!c) {
        return;
    }
    json_t *payload = json_pack("{s:s}", "content", content);
    if (payload && chat__take_message(c, payload) == 0) {
        chat__require_member(c, chat__message_send_member);
    } else if (!payload) {
        chat__call_fail(c, CHAT_ENOMEM, NULL);
    }
    json_decref(payload);
}

/* A room made by a script: the same validation as room:create, with user_id as its admin. */
static void create_room(chat_runtime *rt, const char *user_id, json_t *payload, chat_store_cb cb,
                        void *arg)
{
    if (!chat__is_object_id(user_id)) {
        cb(CHAT_EINVAL, NULL, arg);
        return;
    }
    chat_call *c = chat__call_from_script(rt, user_id, cb, arg);
    if (c) {
        chat__room_create(c, payload);
    }
}

static void bot_created(int status, json_t *user, void *arg);

static void bot_looked_up(int status, json_t *user, void *arg)
{
    chat_call *c = arg;
    if (status == 0 && !chat__is_bot_email(json_string_value(json_object_get(user, "email")))) {
        json_decref(user); /* a person has that username: a bot must not speak as them */
        chat__call_fail(c, CHAT_ECONFLICT, NULL);
        return;
    }
    if (status == 0) {
        chat__call_done(c, chat__public_user(user, 0));
        json_decref(user);
        return;
    }
    json_decref(user);
    if (status != CHAT_ENOTFOUND || c->second_lookup) {
        chat__call_fail(c, status, NULL);
        return;
    }
    /* a bot signs in with no password: "!" is no bcrypt hash, so no password matches */
    char id[25];
    chat__objectid(id);
    const char *name = json_string_value(json_object_get(c->input, "username"));
    json_t *bot = json_pack("{s:s,s:s,s:s,s:s,s:I}", "id", id, "email",
                            json_string_value(json_object_get(c->input, "email")), "username", name,
                            "passwordHash", "!", "createdAt", (json_int_t)chat__now_ms());
    chat__call_store(c, CHAT_STORE_USER_CREATE, bot, bot_created);
}

static void bot_created(int status, json_t *user, void *arg)
{
    chat_call *c = arg;
    json_decref(user);
    if (status && status != CHAT_ECONFLICT) {
        chat__call_fail(c, status, NULL);
        return;
    }
    /* look it up again: on a conflict another node (or call) created it first */
    c->second_lookup = 1;
    chat__call_store(c, CHAT_STORE_USER_BY_LOGIN,
                     json_pack("{s:O}", "login", json_object_get(c->input, "username")),
                     bot_looked_up);
}

static void ensure_user(chat_runtime *rt, const char *username, chat_store_cb cb, void *arg)
{
    if (!chat__valid_username(username)) {
        cb(CHAT_EINVAL, NULL, arg);
        return;
    }
    chat_call *c = chat__call_from_script(rt, NULL, cb, arg);
    if (!c) {
        return;
    }
    c->input = json_pack("{s:s,s:s+}", "username", username, "email", username, BOT_EMAIL_DOMAIN);
    chat__call_store(c, CHAT_STORE_USER_BY_LOGIN, json_pack("{s:s}", "login", username),
                     bot_looked_up);
}

const chat_actions chat__domain_actions = {
    .emit_room = emit_room,
    .emit_user = emit_user,
    .emit_socket = emit_socket,
    .join = join,
    .leave = leave,
    .ensure_user = ensure_user,
    .send_as = send_as,
    .create_room = create_room,
};
