/* reads.c: read state. room:read {roomId, messageId} moves the member's marker forward (the
 * room/read policy decides first) and tells the room's other sockets, on every node, with
 * room:read; GET /rooms carries each room's unread count, the caller's marker and everyone's
 * (chat__rooms_answer_with_reads). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "domain_int.h"

static void read_stored(int status, json_t *marker, void *arg)
{
    chat_call *c = arg;
    if (status) {
        json_decref(marker);
        chat__call_fail(c, status,
                        status == CHAT_ENOTFOUND ? "that message is not in this room" : NULL);
        return;
    }
    json_t *read = json_pack("{s:O,s:O,s:O,s:O}", "roomId", json_object_get(marker, "roomId"),
                             "userId", json_object_get(marker, "userId"), "messageId",
                             json_object_get(marker, "messageId"), "at",
                             json_object_get(marker, "at"));
    if (json_is_true(json_object_get(marker, "moved")) && read) {
        char except[32];
        snprintf(except, sizeof except, "s:%s", c->k ? c->k->id : "-");
        chat__fanout_room(c->rt, c->room_id, except, "room:read", read);
    }
    json_decref(marker);
    chat__call_done(c, json_pack("{s:o}", "read", read));
}

static void read_allowed(chat_call *c, json_t *ev)
{
    (void)ev;
    chat__call_store(c, CHAT_STORE_READ_SET,
                     json_pack("{s:s,s:s,s:O,s:I}", "roomId", c->room_id, "userId", c->user_id,
                               "messageId", json_object_get(c->input, "messageId"), "at",
                               (json_int_t)chat__now_ms()),
                     read_stored);
}

static void read_member(chat_call *c)
{
    json_t *ev = json_pack("{s:o,s:o,s:{s:s},s:O}", "socket", chat__socket_json(c->k), "user",
                           chat__call_user_json(c), "room", "id", c->room_id, "messageId",
                           json_object_get(c->input, "messageId"));
    chat__call_hook(c, "room/read", ev, read_allowed);
}

void chat__on_room_read(chat_call *c, json_t *payload)
{
    if (chat__take_room_id(c, payload)) {
        return;
    }
    const char *id = json_string_value(json_object_get(payload, "messageId"));
    if (!chat__is_object_id(id)) {
        chat__call_fail(c, CHAT_EINVAL, "messageId must be a message id (24 hex characters)");
        return;
    }
    c->input = json_pack("{s:s}", "messageId", id);
    if (!c->input) {
        chat__call_fail(c, CHAT_ENOMEM, NULL);
        return;
    }
    chat__require_member(c, read_member);
}

/* ---- GET /rooms with unread counts ---- */

static void reads_loaded(int status, json_t *state, void *arg)
{
    chat_call *c = arg;
    json_t *rooms = c->input;
    if (status) {
        json_decref(state);
        chat__call_fail(c, status, NULL);
        return;
    }
    size_t i;
    json_t *room;
    json_array_foreach(rooms, i, room)
    {
        json_t *st = json_object_get(state, json_string_value(json_object_get(room, "id")));
        if (st) {
            json_object_set(room, "unread", json_object_get(st, "unread"));
            json_object_set(room, "lastReadId", json_object_get(st, "lastReadId"));
            json_object_set(room, "reads", json_object_get(st, "reads"));
        }
    }
    json_decref(state);
    chat__call_done(c, json_pack("{s:O}", "rooms", rooms));
}

void chat__rooms_answer_with_reads(chat_call *c, json_t *rooms)
{
    json_t *ids = json_array();
    size_t i;
    json_t *room;
    json_array_foreach(rooms, i, room)
    {
        if (i < CHAT_STORE_ROOMS_MAX) {
            json_array_append(ids, json_object_get(room, "id"));
        }
    }
    json_decref(c->input);
    c->input = rooms; /* answered by reads_loaded */
    chat__call_store(c, CHAT_STORE_READ_STATE,
                     json_pack("{s:s,s:o}", "userId", c->user_id, "roomIds", ids), reads_loaded);
}
