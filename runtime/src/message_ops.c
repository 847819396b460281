/* message_ops.c: changes to a stored message: message:edit and message:delete (the sender or
 * the room's admin, a member of its room) and message:react (any member). A policy hook
 * (message/edit, message/delete, message/react) decides first; members get message:updated,
 * message:deleted or message:reaction on every node, and the room's recent-messages cache is
 * dropped. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "domain_int.h"

/* c->input: {messageId, content? (edit), emoji + on (react), message (the stored one, once
 * loaded)} */

#define REACTIONS_MAX 20 /* different emoji on one message */
#define FULL_MESSAGE "this message has 20 different reactions already; add to one of them"

static const char *op_name(chat_call *c)
{
    return json_object_get(c->input, "content") ? "edit"
           : json_object_get(c->input, "emoji") ? "react"
                                                : "delete";
}

/* ---- emoji: one short grapheme ---- */

/* The next code point of s (valid UTF-8: jansson checked it); advances *i. */
static unsigned next_cp(const unsigned char *s, size_t n, size_t *i)
{
    unsigned c = s[*i];
    int more = c < 0x80 ? 0 : c < 0xe0 ? 1 : c < 0xf0 ? 2 : 3;
    c &= more == 0 ? 0x7f : more == 1 ? 0x1f : more == 2 ? 0x0f : 0x07;
    (*i)++;
    while (more-- > 0 && *i < n) {
        c = c << 6 | (s[(*i)++] & 0x3f);
    }
    return c;
}

static int pictographic(unsigned c)
{
    return c == 0xa9 || c == 0xae || (c >= 0x203c && c <= 0x3299) ||
           (c >= 0x1f000 && c <= 0x1faff);
}

static int regional(unsigned c)
{
    return c >= 0x1f1e6 && c <= 0x1f1ff;
}

/* 1 when s is one emoji: a pictograph (or a keycap base 0-9 # *), then only variation
 * selectors, skin tones, tags, a keycap mark, a second regional indicator (a flag), or
 * ZWJ + another pictograph; at most 10 code points and CHAT_STORE_EMOJI_MAX bytes. */
static int valid_emoji(json_t *v)
{
    const unsigned char *s = (const unsigned char *)json_string_value(v);
    size_t n = json_string_length(v), i = 0;
    if (!s || n < 1 || n > CHAT_STORE_EMOJI_MAX || strlen((const char *)s) != n) {
        return 0;
    }
    unsigned first = next_cp(s, n, &i);
    int keycap = (first >= '0' && first <= '9') || first == '#' || first == '*';
    if (!pictographic(first) && !keycap) {
        return 0;
    }
    int count = 1, after_zwj = 0, flag = regional(first);
    while (i < n) {
        unsigned c = next_cp(s, n, &i);
        if (++count > 10) {
            return 0;
        }
        if (after_zwj) {
            if (!pictographic(c)) {
                return 0;
            }
            after_zwj = 0;
        } else if (c == 0x200d) {
            after_zwj = 1;
        } else if (flag == 1 && regional(c)) {
            flag = 2;
        } else if (!(c == 0xfe0f || c == 0xfe0e || c == 0x20e3 || (c >= 0x1f3fb && c <= 0x1f3ff) ||
                     (c >= 0xe0020 && c <= 0xe007f))) {
            return 0;
        }
    }
    return !after_zwj && flag != 1 && (!keycap || strstr((const char *)s, "\xe2\x83\xa3"));
}

static void changed(int status, json_t *message, void *arg)
{
    chat_call *c = arg;
    if (status) {
        json_decref(message);
        chat__call_fail(c, status,
                        status == CHAT_ENOTFOUND    ? "that message was deleted"
                        : status == CHAT_ECONFLICT && strcmp(op_name(c), "react") == 0
                            ? FULL_MESSAGE
                            : NULL);
        return;
    }
    const char *op = op_name(c);
    char key[64], except[32];
    snprintf(key, sizeof key, "messages:%s:version", c->room_id);
    chat__kv_incr(c->rt->kv, key, 1, 0, NULL, NULL); /* the cached history is now old */
    snprintf(except, sizeof except, "s:%s", c->k ? c->k->id : "-");
    if (strcmp(op, "react") == 0) {
        json_t *note = json_pack(
            "{s:O,s:s,s:s,s:O,s:O,s:O}", "messageId", json_object_get(message, "id"), "roomId",
            c->room_id, "userId", c->user_id, "emoji", json_object_get(c->input, "emoji"), "on",
            json_object_get(c->input, "on"), "reactions", json_object_get(message, "reactions"));
        chat__fanout_room(c->rt, c->room_id, except, "message:reaction", note);
        json_decref(note);
    } else {
        chat__fanout_room(c->rt, c->room_id, except,
                          strcmp(op, "edit") == 0 ? "message:updated" : "message:deleted",
                          message);
    }
    chat__call_done(c, json_pack("{s:o}", "message", message));
}

/* ---- reactions to one message go to the store one at a time ----
 * FerretDB 1.x (the tests' MongoDB) runs findAndModify as a query and then an unconditional
 * write, so two reactions to one message in the store at once can lose each other and both
 * pass the cap's check; MongoDB itself needs no help (store_mongo.c's compare-and-set holds
 * across nodes). A lock in the store for that kept pool threads waiting, which stalled every
 * store call and file I/O of the node; here a reaction to a message with one in flight waits
 * in that message's line on the loop instead, and nothing blocks. A line exists while one of
 * its reactions is in the store; it is bounded (cfg.reactions_waiting_max waiting; past it:
 * unavailable, retry shortly), and a stop answers whoever still waits. */
typedef struct react_line {
    char id[25];
    size_t head, len, cap; /* waiting[head .. head+len): the calls waiting, oldest first */
    chat_call **waiting;
} react_line;

static chat_call *react_pop(react_line *l)
{
    chat_call *c = l->waiting[l->head++];
    if (--l->len == 0) {
        l->head = 0;
    }
    return c;
}

/* 0 or CHAT_ENOMEM. */
static int react_push(react_line *l, chat_call *c)
{
    if (l->head + l->len == l->cap) {
        if (l->head > 0) {
            memmove(l->waiting, l->waiting + l->head, l->len * sizeof *l->waiting);
            l->head = 0;
        } else {
            size_t cap = l->cap ? l->cap * 2 : 8;
            chat_call **w = realloc(l->waiting, cap * sizeof *w);
            if (!w) {
                return CHAT_ENOMEM;
            }
            l->waiting = w;
            l->cap = cap;
        }
    }
    l->waiting[l->head + l->len++] = c;
    return 0;
}

static void reacted(int status, json_t *message, void *arg);

/* 0: c's reaction is in the store; else it has been answered (and freed). */
static int react_store(chat_call *c)
{
    return chat__call_store(c, CHAT_STORE_MESSAGE_REACT,
                            json_pack("{s:O,s:s,s:O,s:O,s:i}", "id",
                                      json_object_get(c->input, "messageId"), "userId",
                                      c->user_id, "emoji", json_object_get(c->input, "emoji"),
                                      "on", json_object_get(c->input, "on"), "max",
                                      REACTIONS_MAX),
                            reacted);
}

/* The reaction in flight to id was answered: the next one waiting goes, or the line ends. */
static void react_next(chat_runtime *rt, const char *id)
{
    react_line *l = chat__map_get(&rt->reacting, id);
    while (l && l->len > 0) {
        if (react_store(react_pop(l)) == 0) {
            return;
        }
    }
    if (l) {
        chat__map_del(&rt->reacting, l->id);
        free(l->waiting);
        free(l);
    }
    if (rt->reacting.len == 0) {
        chat__map_free(&rt->reacting); /* nothing in flight: no table either */
    }
}

static void reacted(int status, json_t *message, void *arg)
{
    chat_call *c = arg;
    chat_runtime *rt = c->rt;
    char id[25];
    snprintf(id, sizeof id, "%s", json_string_value(json_object_get(c->input, "messageId")));
    changed(status, message, c); /* answers and frees c */
    react_next(rt, id);
}

static void react_queue(chat_call *c)
{
    chat_runtime *rt = c->rt;
    const char *id = json_string_value(json_object_get(c->input, "messageId"));
    react_line *l = chat__map_get(&rt->reacting, id);
    if (l) {
        if (l->len >= (size_t)rt->cfg.reactions_waiting_max) {
            rt->stats.reactions_refused++;
            chat__call_fail(c, CHAT_EUNAVAIL,
                            "too many reactions to this message at once; retry shortly");
            return;
        }
        if (react_push(l, c) != 0) {
            chat__call_fail(c, CHAT_ENOMEM, NULL);
        }
        return;
    }
    l = calloc(1, sizeof *l);
    if (!l) {
        chat__call_fail(c, CHAT_ENOMEM, NULL);
        return;
    }
    snprintf(l->id, sizeof l->id, "%s", id);
    if (chat__map_put(&rt->reacting, l->id, l) != 0) {
        free(l);
        chat__call_fail(c, CHAT_ENOMEM, NULL);
        return;
    }
    if (react_store(c) != 0) {
        react_next(rt, l->id); /* nobody waits yet: the line ends */
    }
}

void chat__reactions_stop(chat_runtime *rt)
{
    react_line *l;
    for (size_t i = 0; (l = chat__map_next(&rt->reacting, &i));) {
        /* the one in the store is answered when it returns, and ends the line */
        while (l->len > 0) {
            chat__call_fail(react_pop(l), CHAT_EUNAVAIL, "the server is stopping; retry shortly");
        }
    }
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
    if (strcmp(op_name(c), "react") == 0) {
        react_queue(c);
        return;
    }
    if (strcmp(op_name(c), "edit") == 0) {
        json_t *content = json_object_get(ev, "content");
        if (chat__check_content(c, content)) {
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

static void react_member(chat_call *c)
{
    json_t *msg = json_object_get(c->input, "message");
    json_t *reactions = json_object_get(msg, "reactions");
    const char *emoji = json_string_value(json_object_get(c->input, "emoji"));
    /* refused early when it is full already; the store holds the cap against races */
    if (json_is_true(json_object_get(c->input, "on")) && !json_object_get(reactions, emoji) &&
        json_object_size(reactions) >= REACTIONS_MAX) {
        chat__call_fail(c, CHAT_ECONFLICT, FULL_MESSAGE);
        return;
    }
    json_t *ev = json_pack("{s:o,s:o,s:O,s:O,s:O,s:O}", "socket", chat__socket_json(c->k),
                           "user", chat__call_user_json(c), "room", c->room, "message", msg,
                           "emoji", json_object_get(c->input, "emoji"), "on",
                           json_object_get(c->input, "on"));
    chat__call_hook(c, "message/react", ev, change_allowed);
}

/* Member, with the room at hand: the sender or the room's admin may go on. */
static void change_member(chat_call *c)
{
    if (strcmp(op_name(c), "react") == 0) {
        react_member(c);
        return;
    }
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
    if (edit && chat__check_content(c, content)) {
        return;
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

void chat__on_message_react(chat_call *c, json_t *payload)
{
    const char *id = json_string_value(json_object_get(payload, "messageId"));
    json_t *emoji = json_object_get(payload, "emoji");
    json_t *on = json_object_get(payload, "on");
    if (!chat__is_object_id(id)) {
        chat__call_fail(c, CHAT_EINVAL, "messageId must be a message id (24 hex characters)");
        return;
    }
    if (!valid_emoji(emoji)) {
        chat__call_fail(c, CHAT_EINVAL, "emoji must be one emoji (at most 32 bytes)");
        return;
    }
    if (!json_is_boolean(on)) {
        chat__call_fail(c, CHAT_EINVAL, "on must be true (add the reaction) or false (remove it)");
        return;
    }
    c->input = json_pack("{s:s,s:O,s:O}", "messageId", id, "emoji", emoji, "on", on);
    if (!c->input) {
        chat__call_fail(c, CHAT_ENOMEM, NULL);
        return;
    }
    chat__call_store(c, CHAT_STORE_MESSAGE_GET, json_pack("{s:s}", "id", id), message_loaded);
}
