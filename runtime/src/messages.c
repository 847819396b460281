/* messages.c: message:send (validate, the message/before policy, store, ack, fan out,
 * message/after), typing, and a room's history (GET /messages) with its recent-messages
 * cache. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "domain_int.h"
#include "json_out.h"
#include "stats.h"

#define CLIENT_MSG_ID_MAX 128
#define ATTACHMENTS_MAX 10

static void recent_key(char *out, size_t n, const char *room_id, const char *what);

/* The sender's ack, [{"ok":true,"message":<json>}], around the message's JSON as it was
 * dumped for the broadcast: the same bytes, no second encode. */
static void ack_with_message(chat_call *c, const chat_buf *mjson)
{
    chat_buf *b = &c->rt->scratch;
    chat__buf_reset(b);
    static const char open[] = "[{\"ok\":true,\"message\":";
    if (chat__buf_appendc(b, '4') || chat__sio_encode(b, SIO_ACK, c->k->nsp, c->ack_id, NULL, 0) ||
        chat__buf_append(b, open, sizeof open - 1) || chat__buf_append(b, mjson->data, mjson->len) ||
        chat__buf_append(b, "}]", 2)) {
        return;
    }
    chat_frame *f = chat__frame_new(b->data, b->len, 0);
    chat__sock_send_frame(c->k, f);
    chat__frame_unref(f);
}

/* message:ack {clientMsgId, id, createdAt} to the sender, written around the stored
 * message's values: the bytes the same object built with json_pack would give. */
static void emit_message_ack(chat_call *c, json_t *message)
{
    static const char *const names[] = {"clientMsgId", "id", "createdAt"};
    static const char *const keys[] = {"[\"message:ack\",{\"clientMsgId\":", ",\"id\":",
                                       ",\"createdAt\":"};
    chat_buf *b = &c->rt->scratch;
    chat__buf_reset(b);
    if (!c->k->session || chat__buf_appendc(b, '4') ||
        chat__sio_encode(b, SIO_EVENT, c->k->nsp, -1, NULL, 0)) {
        return;
    }
    for (int i = 0; i < 3; i++) {
        json_t *v = json_object_get(message, names[i]);
        if (chat__buf_append(b, keys[i], strlen(keys[i])) ||
            (v ? chat__json_append(b, v) : chat__buf_append(b, "null", 4))) {
            return;
        }
    }
    if (chat__buf_append(b, "}]", 2)) {
        return;
    }
    chat_frame *f = chat__frame_new(b->data, b->len, 0);
    chat__sock_send_frame(c->k, f);
    chat__frame_unref(f);
}

static void message_stored(int status, json_t *result, void *arg)
{
    chat_call *c = arg;
    if (status) {
        json_decref(result);
        chat__call_fail(c, status,
                        status == CHAT_EUNAVAIL
                            ? "the message was not stored: the store is unavailable; "
                              "retry with the same clientMsgId"
                            : NULL);
        return;
    }
    json_t *message = json_object_get(result, "message");
    chat_runtime *rt = c->rt;
    uint64_t received_ns = c->k ? c->received_ns : 0;
    chat__stats_message(rt, 0, received_ns);
    /* the message's JSON, dumped once: the broadcast and the sender's ack carry these bytes */
    chat_buf mjson = CHAT_BUF_INIT;
    int dumped = chat__json_append(&mjson, message) == 0;
    int duplicate = json_is_true(json_object_get(result, "duplicate"));
    if (!duplicate) {
        char except[32];
        snprintf(except, sizeof except, "s:%s", c->k ? c->k->id : "-");
        c->rt->stats.messages_stored++;
        char key[64];
        recent_key(key, sizeof key, c->room_id, "version");
        chat__kv_incr(c->rt->kv, key, 1, 0, NULL, NULL); /* the cached copy is now old */
        if (dumped) {
            chat__fanout_room_json(c->rt, c->room_id, except, "message:new",
                                   (const char *)mjson.data, mjson.len);
        } else {
            chat__fanout_room(c->rt, c->room_id, except, "message:new", message);
        }
    }
    if (c->k) {
        emit_message_ack(c, message);
    }
    if (!duplicate) {
        chat__mentions_after_message(c->rt, message); /* notifications.c */
        chat_script_event ev = chat__call_event(c, NULL, "message", message);
        chat__notify_event(c->rt, "message/after", &ev);
    }
    if (dumped && c->k && c->ack_id >= 0) {
        ack_with_message(c, &mjson);
        c->ack_id = -1; /* answered */
    }
    chat__call_done(c, c->req || c->done || !dumped ? json_pack("{s:O}", "message", message)
                                                    : NULL);
    chat__stats_message(rt, 1, received_ns); /* the ack is queued to the sender */
    chat__buf_free(&mjson);
    json_decref(result);
}

/* Sets k to v (taken) on an object being built; -1 when v is NULL or the set failed. */
static int put(json_t *o, const char *k, json_t *v)
{
    return v ? json_object_set_new_nocheck(o, k, v) : -1;
}

void chat__message_send_member(chat_call *c)
{
    json_t *in = c->input;
    char id[25];
    chat__objectid(id);
    int64_t now = chat__now_ms();
    json_t *client_id = json_object_get(in, "clientMsgId");
    json_t *attachments = json_object_get(in, "attachments");
    /* built field by field: json_pack parsed its format and checked every string again (the
     * ids are ours, the content was checked when it was decoded); the keys' order is the
     * stored message's, as the broadcast and the ack show it */
    json_t *msg = json_object();
    if (!msg || put(msg, "id", json_stringn_nocheck(id, 24)) ||
        put(msg, "roomId", json_stringn_nocheck(c->room_id, strlen(c->room_id))) ||
        put(msg, "senderId", json_stringn_nocheck(c->user_id, strlen(c->user_id))) ||
        put(msg, "content", json_incref(json_object_get(in, "content"))) ||
        put(msg, "attachments", attachments ? json_incref(attachments) : json_array()) ||
        put(msg, "reactions", json_object()) ||
        put(msg, "clientMsgId", client_id ? json_incref(client_id) : json_null()) ||
        put(msg, "createdAt", json_integer((json_int_t)now)) ||
        put(msg, "updatedAt", json_integer((json_int_t)now))) {
        json_decref(msg);
        chat__call_fail(c, CHAT_ENOMEM, NULL);
        return;
    }
    chat__call_store(c, CHAT_STORE_MESSAGE_INSERT, msg, message_stored);
}

/* A message's content: a non-empty string of at most message_max_bytes (message:send and
 * message:edit, before and after the policies). Fails the call and returns -1 otherwise. */
int chat__check_content(chat_call *c, json_t *content)
{
    if (!json_is_string(content) || !json_string_length(content)) {
        chat__call_fail(c, CHAT_EINVAL, "content must be a non-empty string");
        return -1;
    }
    if (json_string_length(content) > (size_t)c->rt->cfg.message_max_bytes) {
        char msg[128];
        snprintf(msg, sizeof msg, "content is longer than %d bytes; split the message",
                 c->rt->cfg.message_max_bytes);
        chat__call_fail(c, CHAT_ETOOBIG, msg);
        return -1;
    }
    return 0;
}

/* Checks {content, clientMsgId?, attachments?} and keeps the valid copy in c->input;
 * fails the call and returns -1 otherwise. Runs again on what the policies rewrote. */
int chat__take_message(chat_call *c, json_t *payload)
{
    json_t *content = json_object_get(payload, "content");
    json_t *client_id = json_object_get(payload, "clientMsgId");
    json_t *attachments = json_object_get(payload, "attachments");
    if (chat__check_content(c, content)) {
        return -1;
    }
    if (client_id && !json_is_null(client_id) &&
        (!json_is_string(client_id) || !json_string_length(client_id) ||
         json_string_length(client_id) > CLIENT_MSG_ID_MAX)) {
        chat__call_fail(c, CHAT_EINVAL, "clientMsgId must be a string of 1 to 128 bytes");
        return -1;
    }
    if (attachments && !json_is_null(attachments) &&
        (!json_is_array(attachments) || json_array_size(attachments) > ATTACHMENTS_MAX)) {
        chat__call_fail(c, CHAT_EINVAL, "attachments must be an array of at most 10 objects");
        return -1;
    }
    size_t i;
    json_t *a;
    json_array_foreach(attachments, i, a)
    {
        if (!json_is_object(a) || json_object_get(a, "$binary")) {
            chat__call_fail(c, CHAT_EINVAL,
                            "attachments must be JSON objects (upload binary files elsewhere and "
                            "send their URLs)");
            return -1;
        }
    }
    json_t *input = json_pack("{s:O}", "content", content);
    if (json_is_string(client_id)) {
        json_object_set(input, "clientMsgId", client_id);
    }
    if (json_is_array(attachments)) {
        json_object_set(input, "attachments", attachments);
    }
    json_decref(c->input);
    c->input = input;
    return 0;
}

static void message_allowed(chat_call *c, json_t *ev)
{
    json_t *message = json_object_get(ev, "message");
    if (!json_is_object(message)) {
        chat__call_fail(c, CHAT_EINTERNAL, "a policy removed the message");
        return;
    }
    /* the client's clientMsgId stays: a policy may rewrite content, not identity */
    json_t *client_id = json_object_get(c->input, "clientMsgId");
    if (client_id) {
        json_object_set(message, "clientMsgId", client_id);
    } else {
        json_object_del(message, "clientMsgId");
    }
    /* as the policies left it: nearly always what was checked already (c->input) */
    if (json_equal(message, c->input) || chat__take_message(c, message) == 0) {
        chat__message_send_member(c);
    }
}

static void message_policy(chat_call *c)
{
    chat_script_event ev = chat__call_event(c, c->room, "message", c->input);
    chat__call_hook_event(c, "message/before", &ev, message_allowed);
}

static void message_send_checked(chat_call *c)
{
    if (chat__script_has(c->rt->script, "message/before")) {
        chat__with_room(c, message_policy);
    } else {
        chat__message_send_member(c);
    }
}

static void message_attachments(chat_call *c)
{
    chat__attachments_resolve(c, message_send_checked);
}

void chat__on_message_send(chat_call *c, json_t *payload)
{
    if (chat__take_room_id(c, payload) || chat__take_message(c, payload)) {
        return;
    }
    chat__require_member(c, message_attachments); /* uploads.c, then message_send_checked */
}

/* ---- typing ---- */

static void typing_allowed(chat_call *c, json_t *ev)
{
    char except[32];
    snprintf(except, sizeof except, "u:%s", c->user_id);
    json_t *note = json_pack("{s:s,s:s,s:O}", "roomId", c->room_id, "userId", c->user_id, "typing",
                             json_object_get(ev, "typing"));
    chat__fanout_room(c->rt, c->room_id, except, "typing", note);
    json_decref(note);
    chat__call_done(c, NULL);
}

static void typing_member(chat_call *c, int typing)
{
    chat_script_event ev = chat__call_event(c, NULL, "typing", json_boolean(typing));
    chat__call_hook_event(c, "typing", &ev, typing_allowed);
}

static void typing_start_member(chat_call *c)
{
    typing_member(c, 1);
}
static void typing_stop_member(chat_call *c)
{
    typing_member(c, 0);
}

void chat__on_typing_start(chat_call *c, json_t *payload)
{
    if (chat__take_room_id(c, payload) == 0) {
        chat__require_member(c, typing_start_member);
    }
}

void chat__on_typing_stop(chat_call *c, json_t *payload)
{
    if (chat__take_room_id(c, payload) == 0) {
        chat__require_member(c, typing_stop_member);
    }
}

static void page_loaded(int status, json_t *page, void *arg)
{
    chat_call *c = arg;
    if (status) {
        json_decref(page);
        chat__call_fail(c, status,
                        status == CHAT_ENOTFOUND ? "before is not a message of this room" : NULL);
        return;
    }
    chat__call_done(c, page);
}

/* ---- the recent-messages cache: messages:{roomId}:recent (TTL 1 h) ----
 * The newest RECENT_N messages of a room serve GET /messages without `before`. The copy
 * carries the room's version (messages:{roomId}:version, bumped by every stored message)
 * read before the store was asked, so a copy older than the newest message is never used. */

#define RECENT_N 100
#define RECENT_TTL_MS (3600 * 1000)

static void recent_key(char *out, size_t n, const char *room_id, const char *what)
{
    snprintf(out, n, "messages:%s:%s", room_id, what);
}

/* The first `limit` messages of a cached page, with the cursor for the rest. */
static json_t *slice_page(json_t *page, int limit)
{
    json_t *all = json_object_get(page, "messages");
    size_t n = json_array_size(all), take = (size_t)limit < n ? (size_t)limit : n;
    json_t *messages = json_array();
    for (size_t i = 0; i < take; i++) {
        json_array_append(messages, json_array_get(all, i));
    }
    json_t *next = take < n ? json_object_get(json_array_get(all, take - 1), "id")
                            : json_object_get(page, "nextBefore");
    return json_pack("{s:o,s:O}", "messages", messages, "nextBefore", next ? next : json_null());
}

static int requested_limit(chat_call *c)
{
    return (int)json_integer_value(json_object_get(c->input, "limit"));
}

static void recent_loaded(int status, json_t *page, void *arg)
{
    chat_call *c = arg;
    if (status) {
        page_loaded(status, page, arg);
        return;
    }
    char key[64];
    recent_key(key, sizeof key, c->room_id, "recent");
    json_t *copy = json_pack("{s:s,s:O}", "version", c->event, "page", page);
    char *text = copy ? json_dumps(copy, JSON_COMPACT) : NULL;
    if (text) {
        chat__kv_set(c->rt->kv, key, text, RECENT_TTL_MS, NULL, NULL);
    }
    free(text);
    json_decref(copy);
    chat__call_done(c, slice_page(page, requested_limit(c)));
    json_decref(page);
}

static void recent_cached(int status, const char *value, int64_t number, void *arg)
{
    chat_call *c = arg;
    (void)number;
    json_t *copy = !status && value ? json_loads(value, 0, NULL) : NULL;
    const char *version = json_string_value(json_object_get(copy, "version"));
    if (version && strcmp(version, c->event) == 0) {
        chat__call_done(c, slice_page(json_object_get(copy, "page"), requested_limit(c)));
        json_decref(copy);
        return;
    }
    json_decref(copy);
    chat__call_store(c, CHAT_STORE_MESSAGES_PAGE,
                     json_pack("{s:s,s:n,s:i}", "roomId", c->room_id, "before", "limit", RECENT_N),
                     recent_loaded);
}

static void recent_version(int status, const char *value, int64_t number, void *arg)
{
    chat_call *c = arg;
    (void)number;
    if (status) { /* kv down: the store answers alone */
        chat__call_store(c, CHAT_STORE_MESSAGES_PAGE, json_incref(c->input), page_loaded);
        return;
    }
    /* c->event is free on the REST door: it holds the version for the steps after */
    snprintf(c->event, sizeof c->event, "%s", value ? value : "0");
    char key[64];
    recent_key(key, sizeof key, c->room_id, "recent");
    chat__kv_get(c->rt->kv, key, recent_cached, c);
}

void chat__messages_page(chat_call *c)
{
    if (json_is_null(json_object_get(c->input, "before"))) {
        char key[64];
        recent_key(key, sizeof key, c->room_id, "version");
        chat__kv_get(c->rt->kv, key, recent_version, c);
        return;
    }
    chat__call_store(c, CHAT_STORE_MESSAGES_PAGE, json_incref(c->input), page_loaded);
}
