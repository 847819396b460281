/* domain_int.h: what the chat domain's files share among themselves (not for the layers
 * below, which see domain.h): one call through any door (call.c), the policy-hook glue,
 * validation, local membership (members.c), fan-out (fanout.c), presence and the
 * operations each concern file offers the others. Loop thread only. */
#ifndef CHAT_DOMAIN_INT_H
#define CHAT_DOMAIN_INT_H

#include <stdio.h>

#include "domain.h"
#include "http.h"
#include "rt.h"
#include "script.h"
#include "sock.h"

/* ---- local state (members.c) ---- */
typedef struct chat_room_state chat_room_state;

struct chat_user_state {
    char id[25];
    chat_vec socks; /* local connected sockets */
    chat_vec rooms; /* chat_room_state* the user belongs to (with local subscribers) */
};

struct chat_room_state {
    char id[25];
    char channel[48]; /* "room:<id>:messages" */
    chat_vec socks;   /* local sockets subscribed */
    int users;        /* local users holding it in their rooms */
    json_t *room;     /* the room as last loaded or changed here, for policy hooks */
};

/* ---- one call through either door (call.c) ---- */
typedef struct chat_call chat_call;
typedef void (*chat_call_step)(chat_call *c);
typedef void (*chat_hook_step)(chat_call *c, json_t *ev);

struct chat_call {
    chat_runtime *rt;
    char user_id[25];
    chat_sock *k; /* the socket door (referenced), or NULL */
    int64_t ack_id;
    char event[64];     /* the event name, for `error` answers */
    chat_http_req *req; /* the REST door (referenced), or NULL */
    chat_store_cb done; /* the script door: called with the result, or NULL */
    void *done_arg;
    int ok_status; /* REST status on success */
    char room_id[25];
    json_t *input;             /* the validated payload (owned) */
    json_t *room;              /* the room as loaded (owned) */
    chat_call_step next;       /* what runs once membership is confirmed */
    chat_hook_step after_hook; /* what runs once the policy hooks allowed */
    int second_lookup;         /* ensure_user: the lookup after creating */
    uint64_t received_ns;      /* the socket door: when the event arrived (uv_hrtime) */
};

/* NULL on out-of-memory (from_script has then called cb with CHAT_ENOMEM). */
chat_call *chat__call_from_sock(chat_sock *k, const char *event, int64_t ack_id);
chat_call *chat__call_from_req(chat_http_req *req, const char *user_id, int ok_status);
chat_call *chat__call_from_script(chat_runtime *rt, const char *user_id, chat_store_cb cb,
                                  void *arg);
void chat__call_free(chat_call *c);
/* Answer and free the call: {ok:true, ...result} (takes result) or the error shape. */
void chat__call_done(chat_call *c, json_t *result);
void chat__call_fail(chat_call *c, int err, const char *message);
/* A store operation whose cb gets c; fails the call (and returns the error) when the store
 * does not take it. Takes arg. */
int chat__call_store(chat_call *c, int op, json_t *arg, chat_store_cb cb);
/* Runs the handlers of hook on ev (taken), then next(c, ev after the handlers); a rejection
 * fails the call. Without handlers next runs at once. */
void chat__call_hook(chat_call *c, const char *hook, json_t *ev, chat_hook_step next);
void chat__call_hook_reading(chat_call *c, const char *hook, json_t *ev, const char *field,
                             chat_hook_step next);
/* Tells the scripts about something that happened; nobody waits. Takes ev. */
void chat__notify_hook(chat_runtime *rt, const char *hook, json_t *ev);
/* A hook's event by its parts (script.h), built in Lua without a JSON object: c's socket and
 * user, room (borrowed; NULL: {id: c->room_id}) and field: value (borrowed). */
chat_script_event chat__call_event(chat_call *c, json_t *room, const char *field, json_t *value);
/* chat__call_hook_reading and chat__notify_hook for such an event: next reads ev->field. */
void chat__call_hook_event(chat_call *c, const char *hook, const chat_script_event *ev,
                           chat_hook_step next);
void chat__notify_event(chat_runtime *rt, const char *hook, const chat_script_event *ev);
json_t *chat__socket_json(chat_sock *k); /* null for NULL */
json_t *chat__user_json(const char *id, const char *username);
json_t *chat__call_user_json(chat_call *c);

/* ---- validation (call.c) ---- */
int chat__is_object_id(const char *s);
/* payload.roomId into c->room_id; fails the call and returns -1 when it is bad. */
int chat__take_room_id(chat_call *c, json_t *payload);
int chat__json_has_string(json_t *arr, const char *s);
/* The public view of a user: never the hash, the email only for its owner. */
json_t *chat__public_user(json_t *user, int self);
int chat__valid_username(const char *s);
#define BOT_EMAIL_DOMAIN "@bots.invalid" /* bots' accounts; people cannot register it */
int chat__is_bot_email(const char *email);

/* ---- local membership (members.c) ---- */
/* The socket's user is in these rooms (the store's list): make the user's local state and
 * subscribe the socket. 0 or CHAT_ENOMEM. *first: it is the user's first socket here. */
int chat__members_attach(chat_sock *k, json_t *rooms, int *first);
/* The socket is gone. Returns its user's state when that was its last socket here: the
 * caller reports presence and then frees it with chat__members_user_free. */
chat_user_state *chat__members_detach(chat_sock *k);
void chat__members_user_free(chat_runtime *rt, chat_user_state *u);
/* The user (with local sockets) is a member of room_id: subscribe all its sockets. */
int chat__members_join(chat_runtime *rt, chat_user_state *u, const char *room_id);
void chat__members_leave(chat_runtime *rt, chat_user_state *u, const char *room_id);
/* Keeps the newest copy of a room this node has seen, for policy hooks. Borrows room. */
void chat__members_cache_room(chat_runtime *rt, json_t *room);
chat_room_state *chat__members_room(chat_sock *k, const char *room_id);
/* Checks that c->user_id is a member of c->room_id (this node's subscriptions, else the
 * store), then next(c); c->room is set when a copy is at hand. */
void chat__require_member(chat_call *c, chat_call_step next);
/* Makes sure c->room holds the room (policies read its settings and admin), then next. */
void chat__with_room(chat_call *c, chat_call_step next);

/* ---- fan-out (fanout.c) ---- */
/* Every socket in room_id, on every node, except "-" none, "s:<socket id>" or
 * "u:<user id>", receives the event. Borrows payload. */
void chat__fanout_room(chat_runtime *rt, const char *room_id, const char *except, const char *event,
                       json_t *payload);
/* The same with the payload already encoded as JSON (len bytes); event needs no escaping. */
void chat__fanout_room_json(chat_runtime *rt, const char *room_id, const char *except,
                            const char *event, const char *json, size_t len);
/* The same for a list of rooms ("id,id,..."), published on channel (presence,
 * user:updated): each socket once. */
void chat__fanout_rooms(chat_runtime *rt, const char *channel, const char *rooms_csv,
                        const char *except, const char *event, json_t *payload);
/* A script's emit: args is the whole event, [name, args...] (borrowed); binary: it has
 * {"$binary": base64} values, which each socket sends as attachments. */
void chat__fanout_room_event(chat_runtime *rt, const char *room_id, json_t *args, int binary);
/* A control message for one user's sockets wherever they are: {"op":"joined"|"left",
 * "roomId"} or {"op":"emit","event","args":[...]}. Takes msg. */
void chat__notify_user(chat_runtime *rt, const char *user_id, json_t *msg);
/* "user:<id>:notify": members.c subscribes it while the user has sockets here. */
static inline void chat__notify_channel(char out[48], const char *user_id)
{
    snprintf(out, 48, "user:%s:notify", user_id);
}

/* ---- presence (presence.c) ---- */
void chat__presence_change(chat_runtime *rt, chat_user_state *u, int online);
/* With Redis: this node's presence record and its heartbeat, which also takes the users of
 * dead nodes offline. Nothing with the in-process kv. */
typedef struct chat_presence chat_presence;
int chat__presence_start(chat_runtime *rt);
void chat__presence_stop(chat_runtime *rt);

/* ---- operations the concerns offer each other ---- */
/* rooms.c: validates {name, type, participants, settings} and stores the room. */
void chat__room_create(chat_call *c, json_t *payload);
/* rooms.c: adds / removes c->user_id to / from c->room_id, then tells everyone. */
void chat__room_add_member(chat_call *c);
void chat__room_remove_member(chat_call *c);
/* messages.c */
int chat__check_content(chat_call *c, json_t *content);
int chat__take_message(chat_call *c, json_t *payload);
void chat__message_send_member(chat_call *c); /* stores c->input in c->room_id */
void chat__messages_page(chat_call *c);       /* c->input: {roomId, before, limit} */
/* message_ops.c: answers (unavailable) the reactions waiting behind one in flight */
void chat__reactions_stop(chat_runtime *rt);

/* ---- the socket layer's handler (connect.c, domain.c) ---- */
/* A CONNECT: authenticates (the "connect/auth" policy, else the token check), then the
 * user, the "connect" policy, the rooms. Takes auth (the handshake's object, whole). */
void chat__domain_connect(chat_sock *k, json_t *auth);
void chat__domain_disconnect(chat_sock *k, const char *reason);
void chat__domain_event(chat_sock *k, const char *event, json_t *args, int64_t ack_id);
/* rest.c: registers the REST routes with http.c. */
int chat__rest_start(chat_runtime *rt);
/* users.c: profiles and the directory (PATCH /me, GET /users...). */
int chat__users_start(chat_runtime *rt);
/* notifications.c: routes; mentions of a stored message; a connected socket's unread ones */
int chat__notifications_start(chat_runtime *rt);
void chat__mentions_after_message(chat_runtime *rt, json_t *message);
void chat__notifications_on_connect(chat_sock *k);
/* chatd_offline_pushes_total for /metrics. 0 or CHAT_ENOMEM. */
int chat__notifications_metrics(chat_runtime *rt, chat_buf *b);
/* uploads.c: routes; a message's {uploadId} attachments checked, filled in and linked to
 * c->room_id, then next (or the call fails and nothing is linked) */
int chat__uploads_start(chat_runtime *rt);
void chat__attachments_resolve(chat_call *c, chat_call_step next);
/* PATCH /me's avatar "/uploads/<id>" (id checked): the caller's own picture (a type served
 * inline, at most avatar_max_bytes) becomes readable by every signed-in user, then next(c);
 * otherwise the call fails (forbidden, invalid_payload, payload_too_large, not_found) and
 * nothing changed. Uses c->next. */
void chat__avatar_share(chat_call *c, const char *id, chat_call_step next);
/* chatd_uploads_refused_total for /metrics. 0 or CHAT_ENOMEM. */
int chat__uploads_metrics(chat_runtime *rt, chat_buf *b);
/* users.c: the user's profile or presence changed: drop the cached copy. */
void chat__users_changed(chat_runtime *rt, const char *user_id);

/* ---- the Socket.IO events (domain.c's table) ---- */
void chat__on_room_join(chat_call *c, json_t *payload);
void chat__on_room_leave(chat_call *c, json_t *payload);
void chat__on_room_create(chat_call *c, json_t *payload);
void chat__on_message_send(chat_call *c, json_t *payload);
void chat__on_typing_start(chat_call *c, json_t *payload);
void chat__on_typing_stop(chat_call *c, json_t *payload);
void chat__on_message_edit(chat_call *c, json_t *payload);   /* message_ops.c */
void chat__on_message_delete(chat_call *c, json_t *payload); /* message_ops.c */
void chat__on_message_react(chat_call *c, json_t *payload);  /* message_ops.c */
void chat__on_room_read(chat_call *c, json_t *payload);      /* reads.c */
/* reads.c: answers c with {rooms}, each with unread, lastReadId and reads. Takes rooms. */
void chat__rooms_answer_with_reads(chat_call *c, json_t *rooms);

#endif
