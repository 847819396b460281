/* members.c: local membership: which sockets on this node receive which room. A user with
 * sockets here has a chat_user_state listing its rooms; a room with local subscribers has a
 * chat_room_state listing its sockets and holds a bus subscription to its channel, so what
 * other nodes publish for it arrives here. The check that a user may act in a room is here
 * too (chat__require_member). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "domain_int.h"

static chat_room_state *room_state_get(chat_runtime *rt, const char *room_id)
{
    chat_room_state *r = chat__map_get(&rt->rooms, room_id);
    if (r) {
        return r;
    }
    r = calloc(1, sizeof *r);
    if (!r) {
        return NULL;
    }
    memcpy(r->id, room_id, 25);
    snprintf(r->channel, sizeof r->channel, "room:%s:messages", room_id);
    if (chat__map_put(&rt->rooms, r->id, r) || chat__bus_subscribe(rt->bus, r->channel)) {
        chat__map_del(&rt->rooms, r->id);
        free(r);
        return NULL;
    }
    return r;
}

static void room_state_release(chat_runtime *rt, chat_room_state *r)
{
    if (--r->users > 0) {
        return;
    }
    chat__bus_unsubscribe(rt->bus, r->channel);
    chat__map_del(&rt->rooms, r->id);
    chat__vec_free(&r->socks);
    json_decref(r->room);
    free(r);
}

/* Keeps the newest copy of a room this node has seen, for policy hooks (settings, admin). */
void chat__members_cache_room(chat_runtime *rt, json_t *room)
{
    const char *id = json_string_value(json_object_get(room, "id"));
    chat_room_state *r = id ? chat__map_get(&rt->rooms, id) : NULL;
    if (r) {
        json_decref(r->room);
        r->room = json_incref(room);
    }
}

static int subscribe(chat_sock *k, chat_room_state *r)
{
    if (chat__vec_push(&r->socks, k)) {
        return CHAT_ENOMEM;
    }
    if (chat__vec_push(&k->rooms, r)) {
        chat__vec_remove(&r->socks, k);
        return CHAT_ENOMEM;
    }
    return 0;
}

/* The user (with local sockets) is a member of room_id: subscribe all its sockets. */
int chat__members_join(chat_runtime *rt, chat_user_state *u, const char *room_id)
{
    for (uint32_t i = 0; i < u->rooms.len; i++) {
        if (strcmp(((chat_room_state *)u->rooms.items[i])->id, room_id) == 0) {
            return 0;
        }
    }
    chat_room_state *r = room_state_get(rt, room_id);
    if (!r || chat__vec_push(&u->rooms, r)) {
        if (r && !r->users) {
            r->users = 1;
            room_state_release(rt, r);
        }
        return CHAT_ENOMEM;
    }
    r->users++;
    for (uint32_t i = 0; i < u->socks.len; i++) {
        if (subscribe(u->socks.items[i], r)) {
            return CHAT_ENOMEM;
        }
    }
    return 0;
}

void chat__members_leave(chat_runtime *rt, chat_user_state *u, const char *room_id)
{
    for (uint32_t i = 0; i < u->rooms.len; i++) {
        chat_room_state *r = u->rooms.items[i];
        if (strcmp(r->id, room_id) != 0) {
            continue;
        }
        chat__vec_remove(&u->rooms, r);
        for (uint32_t j = 0; j < u->socks.len; j++) {
            chat_sock *k = u->socks.items[j];
            chat__vec_remove(&r->socks, k);
            chat__vec_remove(&k->rooms, r);
        }
        room_state_release(rt, r);
        return;
    }
}

int chat__members_attach(chat_sock *k, json_t *rooms, int *first)
{
    chat_runtime *rt = k->rt;
    chat_user_state *u = chat__map_get(&rt->users, k->user_id);
    if (!u) {
        u = calloc(1, sizeof *u);
        if (!u || (memcpy(u->id, k->user_id, 25), chat__map_put(&rt->users, u->id, u))) {
            free(u);
            return CHAT_ENOMEM;
        }
        /* membership changes and emits for this user, made on any node, reach this one */
        char channel[48];
        chat__notify_channel(channel, u->id);
        chat__bus_subscribe(rt->bus, channel);
    }
    size_t i;
    json_t *room;
    json_array_foreach(rooms, i, room)
    {
        chat__members_join(rt, u, json_string_value(json_object_get(room, "id")));
        chat__members_cache_room(rt, room);
    }
    chat__vec_push(&u->socks, k);
    k->user = u;
    for (uint32_t j = 0; j < u->rooms.len; j++) {
        subscribe(k, u->rooms.items[j]);
    }
    *first = u->socks.len == 1;
    return 0;
}

chat_user_state *chat__members_detach(chat_sock *k)
{
    for (uint32_t i = 0; i < k->rooms.len; i++) {
        chat__vec_remove(&((chat_room_state *)k->rooms.items[i])->socks, k);
    }
    chat__vec_free(&k->rooms);
    chat_user_state *u = k->user;
    k->user = NULL;
    if (!u) {
        return NULL;
    }
    chat__vec_remove(&u->socks, k);
    return u->socks.len ? NULL : u;
}

void chat__members_user_free(chat_runtime *rt, chat_user_state *u)
{
    for (uint32_t i = 0; i < u->rooms.len; i++) {
        room_state_release(rt, u->rooms.items[i]);
    }
    chat__vec_free(&u->rooms);
    chat__vec_free(&u->socks);
    char channel[48];
    chat__notify_channel(channel, u->id);
    chat__bus_unsubscribe(rt->bus, channel);
    chat__map_del(&rt->users, u->id);
    free(u);
}

chat_room_state *chat__members_room(chat_sock *k, const char *room_id)
{
    for (uint32_t i = 0; i < k->rooms.len; i++) {
        chat_room_state *r = k->rooms.items[i];
        if (strcmp(r->id, room_id) == 0) {
            return r;
        }
    }
    return NULL;
}

/* ---- membership check: the step after it is c->next ---- */

static void member_room_loaded(int status, json_t *room, void *arg)
{
    chat_call *c = arg;
    if (status) {
        json_decref(room);
        chat__call_fail(c, status, status == CHAT_ENOTFOUND ? "no room with that id" : NULL);
        return;
    }
    if (!chat__json_has_string(json_object_get(room, "participants"), c->user_id)) {
        json_decref(room);
        chat__call_fail(c, CHAT_EFORBIDDEN, "you are not a member of this room; join it first");
        return;
    }
    c->room = room;
    /* a member this node did not know about (joined elsewhere): subscribe now */
    if (c->k && c->k->user) {
        chat__members_join(c->rt, c->k->user, c->room_id);
    }
    chat__members_cache_room(c->rt, room);
    c->next(c);
}

/* Membership is checked on every action: by this node's subscriptions when the socket has
 * the room, else by the stored room. c->room is set when this node has a copy. */
void chat__require_member(chat_call *c, chat_call_step next)
{
    c->next = next;
    chat_room_state *r = c->k ? chat__members_room(c->k, c->room_id) : NULL;
    if (r) {
        c->room = json_incref(r->room);
        next(c);
        return;
    }
    chat__call_store(c, CHAT_STORE_ROOM_GET, json_pack("{s:s}", "id", c->room_id),
                     member_room_loaded);
}

static void room_loaded_for_policy(int status, json_t *room, void *arg)
{
    chat_call *c = arg;
    if (status) {
        json_decref(room);
        chat__call_fail(c, status, status == CHAT_ENOTFOUND ? "no room with that id" : NULL);
        return;
    }
    c->room = room;
    chat__members_cache_room(c->rt, room);
    c->next(c);
}

/* Makes sure c->room holds the room (policies read its settings and admin), then next. */
void chat__with_room(chat_call *c, chat_call_step next)
{
    c->next = next;
    if (c->room) {
        next(c);
        return;
    }
    chat__call_store(c, CHAT_STORE_ROOM_GET, json_pack("{s:s}", "id", c->room_id),
                     room_loaded_for_policy);
}
