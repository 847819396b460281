/* rooms.c: room:create, room:join and room:leave, for every door. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "domain_int.h"

#define ROOM_NAME_MAX 100
#define PARTICIPANTS_MAX 1000
#define SETTINGS_MAX_BYTES 2048

static void room_created(int status, json_t *room, void *arg)
{
    chat_call *c = arg;
    if (status) {
        json_decref(room);
        chat__call_fail(c, status, NULL);
        return;
    }
    size_t i;
    json_t *p;
    json_array_foreach(json_object_get(room, "participants"), i, p)
    {
        chat_user_state *u = chat__map_get(&c->rt->users, json_string_value(p));
        if (u) {
            chat__members_join(c->rt, u, json_string_value(json_object_get(room, "id")));
        }
        chat__notify_user(
            c->rt, json_string_value(p),
            json_pack("{s:s,s:O}", "op", "joined", "roomId", json_object_get(room, "id")));
    }
    chat__members_cache_room(c->rt, room);
    chat__call_done(c, json_pack("{s:o}", "room", room));
}

/* Validates {name, type, participants} and stores the room; used by both doors. */
void chat__room_create(chat_call *c, json_t *payload)
{
    json_t *name = json_object_get(payload, "name");
    const char *type = json_string_value(json_object_get(payload, "type"));
    json_t *participants = json_object_get(payload, "participants");
    if (!type || (strcmp(type, "group") != 0 && strcmp(type, "direct") != 0)) {
        chat__call_fail(c, CHAT_EINVAL, "type must be \"group\" or \"direct\"");
        return;
    }
    if (name && !json_is_null(name) &&
        (!json_is_string(name) || json_string_length(name) > ROOM_NAME_MAX)) {
        chat__call_fail(c, CHAT_EINVAL, "name must be a string of at most 100 bytes");
        return;
    }
    if (strcmp(type, "group") == 0 && (!json_is_string(name) || !json_string_length(name))) {
        chat__call_fail(c, CHAT_EINVAL, "a group room needs a name");
        return;
    }
    if (participants && !json_is_array(participants)) {
        chat__call_fail(c, CHAT_EINVAL, "participants must be an array of user ids");
        return;
    }
    json_t *settings = json_object_get(payload, "settings");
    if (settings && !json_is_null(settings)) {
        char *text = json_is_object(settings) ? json_dumps(settings, JSON_COMPACT) : NULL;
        size_t n = text ? strlen(text) : SIZE_MAX;
        free(text);
        if (n > SETTINGS_MAX_BYTES) {
            chat__call_fail(c, CHAT_EINVAL, "settings must be an object of at most 2048 bytes");
            return;
        }
    }
    json_t *members = json_array();
    json_array_append_new(members, json_string(c->user_id));
    size_t i;
    json_t *p;
    json_array_foreach(participants, i, p)
    {
        const char *id = json_string_value(p);
        if (!chat__is_object_id(id)) {
            json_decref(members);
            chat__call_fail(c, CHAT_EINVAL, "participants must be user ids (24 hex characters)");
            return;
        }
        if (!chat__json_has_string(members, id)) {
            json_array_append_new(members, json_string(id));
        }
    }
    if (json_array_size(members) > PARTICIPANTS_MAX) {
        json_decref(members);
        chat__call_fail(c, CHAT_EINVAL, "a room has at most 1000 participants");
        return;
    }
    if (strcmp(type, "direct") == 0 && json_array_size(members) != 2) {
        json_decref(members);
        chat__call_fail(c, CHAT_EINVAL, "a direct room has exactly one other participant");
        return;
    }
    char id[25];
    chat__objectid(id);
    json_t *room = json_pack("{s:s,s:s,s:s,s:o,s:s,s:o,s:I}", "id", id, "name",
                             json_is_string(name) ? json_string_value(name) : "", "type", type,
                             "participants", members, "admin", c->user_id, "settings",
                             json_is_object(settings) ? json_deep_copy(settings) : json_object(),
                             "createdAt", (json_int_t)chat__now_ms());
    if (!room) {
        chat__call_fail(c, CHAT_ENOMEM, NULL);
        return;
    }
    chat__call_store(c, CHAT_STORE_ROOM_CREATE, room, room_created);
}

static void room_member_added(int status, json_t *room, void *arg)
{
    chat_call *c = arg;
    if (status) {
        json_decref(room);
        chat__call_fail(c, status, status == CHAT_ENOTFOUND ? "no room with that id" : NULL);
        return;
    }
    chat_user_state *u = chat__map_get(&c->rt->users, c->user_id);
    if (u) {
        chat__members_join(c->rt, u, c->room_id);
    }
    chat__members_cache_room(c->rt, room);
    chat__notify_user(c->rt, c->user_id,
                      json_pack("{s:s,s:s}", "op", "joined", "roomId", c->room_id));
    char except[32];
    snprintf(except, sizeof except, "u:%s", c->user_id);
    json_t *note = json_pack("{s:s,s:s}", "roomId", c->room_id, "userId", c->user_id);
    chat__fanout_room(c->rt, c->room_id, except, "room:member_joined", note);
    json_decref(note);
    if (!c->done) { /* joins made by scripts do not call the scripts back */
        chat__notify_hook(c->rt, "room/joined",
                          json_pack("{s:o,s:o,s:O}", "socket", chat__socket_json(c->k), "user",
                                    chat__call_user_json(c), "room", room));
    }
    chat__call_done(c, json_pack("{s:o}", "room", room));
}

void chat__room_add_member(chat_call *c)
{
    chat__call_store(c, CHAT_STORE_ROOM_ADD_MEMBER,
                     json_pack("{s:s,s:s}", "roomId", c->room_id, "userId", c->user_id),
                     room_member_added);
}

static void join_allowed(chat_call *c, json_t *ev)
{
    (void)ev;
    chat__room_add_member(c);
}

static void join_room_loaded(int status, json_t *room, void *arg)
{
    chat_call *c = arg;
    if (status) {
        json_decref(room);
        chat__call_fail(c, status, status == CHAT_ENOTFOUND ? "no room with that id" : NULL);
        return;
    }
    json_t *participants = json_object_get(room, "participants");
    if (chat__json_has_string(participants, c->user_id)) {
        chat_user_state *u = chat__map_get(&c->rt->users, c->user_id);
        if (u) {
            chat__members_join(c->rt, u, c->room_id);
        }
        chat__call_done(c, json_pack("{s:o}", "room", room));
        return;
    }
    const char *type = json_string_value(json_object_get(room, "type"));
    if (!type || strcmp(type, "group") != 0) {
        json_decref(room);
        chat__call_fail(c, CHAT_EFORBIDDEN, "a direct room has only its two participants");
        return;
    }
    /* the room rules (private rooms, member limits, bans) are policies in scripts */
    json_t *ev = json_pack("{s:o,s:o,s:o}", "socket", chat__socket_json(c->k), "user",
                           chat__call_user_json(c), "room", room);
    chat__call_hook(c, "room/join", ev, join_allowed);
}

static void room_member_removed(int status, json_t *room, void *arg)
{
    chat_call *c = arg;
    if (status) {
        json_decref(room);
        chat__call_fail(c, status, NULL);
        return;
    }
    chat__members_cache_room(c->rt, room);
    json_decref(room);
    chat_user_state *u = chat__map_get(&c->rt->users, c->user_id);
    if (u) {
        chat__members_leave(c->rt, u, c->room_id);
    }
    chat__notify_user(c->rt, c->user_id,
                      json_pack("{s:s,s:s}", "op", "left", "roomId", c->room_id));
    json_t *note = json_pack("{s:s,s:s}", "roomId", c->room_id, "userId", c->user_id);
    chat__fanout_room(c->rt, c->room_id, "-", "room:member_left", note);
    json_decref(note);
    chat__notify_hook(c->rt, "room/leave",
                      json_pack("{s:o,s:o,s:{s:s}}", "socket", chat__socket_json(c->k), "user",
                                chat__call_user_json(c), "room", "id", c->room_id));
    chat__call_done(c, NULL);
}

void chat__room_remove_member(chat_call *c)
{
    chat__call_store(c, CHAT_STORE_ROOM_REMOVE_MEMBER,
                     json_pack("{s:s,s:s}", "roomId", c->room_id, "userId", c->user_id),
                     room_member_removed);
}

void chat__on_room_join(chat_call *c, json_t *payload)
{
    if (chat__take_room_id(c, payload) == 0) {
        chat__call_store(c, CHAT_STORE_ROOM_GET, json_pack("{s:s}", "id", c->room_id),
                         join_room_loaded);
    }
}

void chat__on_room_leave(chat_call *c, json_t *payload)
{
    if (chat__take_room_id(c, payload) == 0) {
        chat__require_member(c, chat__room_remove_member);
    }
}

void chat__on_room_create(chat_call *c, json_t *payload)
{
    chat__room_create(c, payload);
}
