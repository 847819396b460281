/* message_ops.c: changes to a stored message: message:edit and message:delete. The sender,
 * or the room's admin, may change a message of a room they are a member of; a policy hook
 * (message/edit, message/delete) decides first; members get message:updated or
 * message:deleted on every node, and the room's recent-messages cache is dropped. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "domain_int.h"

/* c->input: {messageId, content?, message (the stored one, once loaded)} */

static const char *op_name(chat_call *c)
{
    return json_object_get(c->input, "content") ? "edit" : "delete";
}

static void changed(int status, json_t *message, void *arg)
{
    chat_call *c = arg;
    if (status) {
        json_decref(message);
        chat__call_fail(c, status,
                        status == CHAT_ENOTFOUND ? "that message was deleted" : NULL);
        return;
    }
    int edit = strcmp(op_name(c), "edit") == 0;
    char key[64], except[32];
    snprintf(key, sizeof key, "messages:%s:version", c->room_id);
    chat__kv_incr(c->rt->kv, key, 1, 0, NULL, NULL); /* the cached history is now old */
    snprintf(except, sizeof except, "s:%s", c->k ? c->k->id : "-");
    chat__fanout_room(c->rt, c->room_id, except, edit ? "message:updated" : "message:deleted",
                      message);
    chat__call_done(c, json_pack("{s:o}", "message", message));
}

static void change_allowed(chat_call *c, json_t *ev)
{
    json_t *id = json_object_get(c->input, "messageId");
    int64_t now = chat__now_ms();
    json_t *msg = json_object_get(c->input, "message");
    /* updatedAt never goes back, whatever the clocks of two nodes say */
    int64_t before = json_integer_value(json_object_get(msg, "updatedAt"));
    if (now <= before) {
        now = before + 1;
    }
    if (strcmp(op_name(c), "edit") == 0) {
        json_t *content = json_object_get(ev, "content");
        if (!json_is_string(content) || !json_string_length(content)) {
            chat__call_fail(c, CHAT_EINVAL, "content must be a non-empty string");
            return;
        }
        if (json_string_length(content) > (size_t)c->rt->cfg.message_max_bytes) {
            char m[128];
            snprintf(m, sizeof m, "content is longer than %d bytes; split the message",
                     c->rt->cfg.message_max_bytes);
            chat__call_fail(c, CHAT_ETOOBIG, m);
            return;
        }
        chat__call_store(c, CHAT_STORE_MESSAGE_EDIT,
                         json_pack("{s:O,s:O,s:I}", "id", id, "content", content, "updatedAt",
                                   (json_int_t)now),
                         changed);
        return;
    }
    chat__call_store(c, CHAT_STORE_MESSAGE_DELETE,
                     json_pack("{s:O,s:I}", "id", id, "updatedAt", (json_int_t)now), changed);
}

/* Member, with the room at hand: the sender or the room's admin may go on. */
static void change_member(chat_call *c)
{
    json_t *msg = json_object_get(c->input, "message");
    const char *sender = json_string_value(json_object_get(msg, "senderId"));
    const char *admin = json_string_value(json_object_get(c->room, "admin"));
    if (!(sender && strcmp(sender, c->user_id) == 0) && !(admin && strcmp(admin, c->user_id) == 0)) {
        char m[96];
        snprintf(m, sizeof m, "only the sender or the room's admin may %s this message",
                 op_name(c));
        chat__call_fail(c, CHAT_EFORBIDDEN, m);
        return;
    }
    char hook[32];
    snprintf(hook, sizeof hook, "message/%s", op_name(c));
    json_t *ev = json_pack("{s:o,s:o,s:O,s:O}", "socket", chat__socket_json(c->k), "user",
                           chat__call_user_json(c), "room", c->room, "message", msg);
    json_t *content = json_object_get(c->input, "content");
    if (ev && content) {
        json_object_set(ev, "content", content);
    }
    chat__call_hook(c, hook, ev, change_allowed);
}

static void change_is_member(chat_call *c)
{
    chat__with_room(c, change_member);
}

static void message_loaded(int status, json_t *msg, void *arg)
{
    chat_call *c = arg;
    if (status || json_is_true(json_object_get(msg, "deleted"))) {
        json_decref(msg);
        chat__call_fail(c, status && status != CHAT_ENOTFOUND ? status : CHAT_ENOTFOUND,
                        status && status != CHAT_ENOTFOUND ? NULL : "no message with that id");
        return;
    }
    const char *room_id = json_string_value(json_object_get(msg, "roomId"));
    if (!chat__is_object_id(room_id)) {
        json_decref(msg);
        chat__call_fail(c, CHAT_EINTERNAL, "the stored message has no room");
        return;
    }
    memcpy(c->room_id, room_id, 25);
    json_object_set_new(c->input, "message", msg);
    /* a non-member hears "forbidden" (chat__require_member), never what the message said */
    chat__require_member(c, change_is_member);
}

/* {messageId, content?}: validates into c->input and loads the message. */
static void change_start(chat_call *c, json_t *payload, int edit)
{
    const char *id = json_string_value(json_object_get(payload, "messageId"));
    if (!chat__is_object_id(id)) {
        chat__call_fail(c, CHAT_EINVAL, "messageId must be a message id (24 hex characters)");
        return;
    }
    json_t *content = json_object_get(payload, "content");
    if (edit) {
        if (!json_is_string(content) || !json_string_length(content)) {
            chat__call_fail(c, CHAT_EINVAL, "content must be a non-empty string");
            return;
        }
        if (json_string_length(content) > (size_t)c->rt->cfg.message_max_bytes) {
            char m[128];
            snprintf(m, sizeof m, "content is longer than %d bytes; split the message",
                     c->rt->cfg.message_max_bytes);
            chat__call_fail(c, CHAT_ETOOBIG, m);
            return;
        }
    }
    c->input = json_pack("{s:s}", "messageId", id);
    if (!c->input) {
        chat__call_fail(c, CHAT_ENOMEM, NULL);
        return;
    }
    if (edit) {
        json_object_set(c->input, "content", content);
    }
    chat__call_store(c, CHAT_STORE_MESSAGE_GET, json_pack("{s:s}", "id", id), message_loaded);
}

void chat__on_message_edit(chat_call *c, json_t *payload)
{
    change_start(c, payload, 1);
}

void chat__on_message_delete(chat_call *c, json_t *payload)
{
    change_start(c, payload, 0);
}
