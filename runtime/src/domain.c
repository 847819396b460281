/* domain.c: the chat domain. Rooms, messages, typing and presence for both doors (Socket.IO
 * events and REST), membership on this node, and fan-out of what the bus delivers. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "log.h"
#include "rt.h"
#include "script.h"

#define PRESENCE_CHANNEL "presence:updates"
#define ROOM_NAME_MAX 100
#define CLIENT_MSG_ID_MAX 128
#define PARTICIPANTS_MAX 1000
#define ATTACHMENTS_MAX 10
#define SETTINGS_MAX_BYTES 2048

/* ---- one call through either door ---- */

typedef struct domain_call domain_call;
typedef void (*domain_step)(domain_call *c);
typedef void (*hook_step)(domain_call *c, json_t *ev);

struct domain_call {
    chat_runtime *rt;
    char user_id[25];
    chat_sock *k;        /* the socket door (referenced), or NULL */
    int64_t ack_id;
    char event[64];      /* the event name, for `error` answers */
    chat_http_req *req;  /* the REST door (referenced), or NULL */
    chat_store_cb done;  /* the script door: called with the result, or NULL */
    void *done_arg;
    int ok_status;       /* REST status on success */
    char room_id[25];
    json_t *input;       /* the validated payload (owned) */
    json_t *room;        /* the room as loaded (owned) */
    domain_step next;    /* what runs once membership is confirmed */
    hook_step after_hook; /* what runs once the policy hooks allowed */
    int second_lookup;    /* ensure_user: the lookup after creating */
};

static domain_call *call_new(chat_runtime *rt, const char *user_id)
{
    domain_call *c = calloc(1, sizeof *c);
    if (c) {
        c->rt = rt;
        c->ack_id = -1;
        snprintf(c->user_id, sizeof c->user_id, "%s", user_id ? user_id : "");
    }
    return c;
}

static domain_call *call_from_sock(chat_sock *k, const char *event, int64_t ack_id)
{
    domain_call *c = call_new(k->rt, k->user_id);
    if (c) {
        c->k = k;
        chat__sock_ref(k);
        snprintf(c->event, sizeof c->event, "%s", event);
        c->ack_id = ack_id;
    }
    return c;
}

static domain_call *call_from_req(chat_http_req *req, const char *user_id, int ok_status)
{
    domain_call *c = call_new(req->rt, user_id);
    if (c) {
        c->req = req;
        chat__http_req_ref(req);
        c->ok_status = ok_status;
    }
    return c;
}

static domain_call *call_from_script(chat_runtime *rt, const char *user_id, chat_store_cb cb,
                                     void *arg)
{
    domain_call *c = call_new(rt, user_id);
    if (!c) {
        cb(CHAT_ENOMEM, NULL, arg);
        return NULL;
    }
    c->done = cb;
    c->done_arg = arg;
    return c;
}

static void call_free(domain_call *c)
{
    if (c->k) {
        chat__sock_unref(c->k);
    }
    if (c->req) {
        chat__http_req_unref(c->req);
    }
    json_decref(c->input);
    json_decref(c->room);
    free(c);
}

/* Answers and frees the call: {ok:true, ...result} through the ack, or the REST body. */
static void call_done(domain_call *c, json_t *result)
{
    if (c->k) {
        json_t *answer = json_object();
        json_object_set_new(answer, "ok", json_true());
        if (result) {
            json_object_update(answer, result);
        }
        chat__sock_ack(c->k, c->ack_id, answer);
        json_decref(answer);
    }
    if (c->req) {
        chat__http_respond_json(c->req, c->ok_status, result ? json_incref(result) : json_object());
    }
    if (c->done) {
        c->done(0, result ? json_incref(result) : NULL, c->done_arg);
    }
    json_decref(result);
    call_free(c);
}

static void call_fail(domain_call *c, int err, const char *message)
{
    if (c->k) {
        chat__sock_fail(c->k, c->event, c->ack_id, err, message);
    }
    if (c->req) {
        chat__http_respond_error(c->req, err, message);
    }
    if (c->done) {
        c->done(err, NULL, c->done_arg);
    }
    if (err == CHAT_EINTERNAL || err == CHAT_EUNAVAIL) {
        chat__log(CHAT_LOG_WARN, "request_failed", message ? message : chat_strerror(err),
                  json_pack("{s:s,s:s}", "code", chat_errcode(err), "user", c->user_id));
    }
    call_free(c);
}

static int store_call(domain_call *c, int op, json_t *arg, chat_store_cb cb)
{
    int rc = chat__store_call(c->rt->store, op, arg, cb, c);
    if (rc) {
        call_fail(c, rc, "the store is unavailable; retry shortly");
    }
    return rc;
}

/* ---- policy hooks (scripts) ---- */

static json_t *socket_json(chat_sock *k)
{
    if (!k) {
        return json_null();
    }
    const char *peer = k->session ? chat__session_peer(k->session) : "";
    return json_pack("{s:s,s:s,s:s}", "id", k->id, "namespace", k->nsp, "ip", peer);
}

static json_t *user_json(const char *id, const char *username)
{
    if (!id || !id[0]) {
        return json_null();
    }
    return username && username[0] ? json_pack("{s:s,s:s}", "id", id, "username", username)
                                    : json_pack("{s:s}", "id", id);
}

static json_t *call_user_json(domain_call *c)
{
    return user_json(c->user_id, c->k ? c->k->username : NULL);
}

static void hook_answered(int status, const char *message, json_t *ev, void *arg)
{
    domain_call *c = arg;
    if (status) {
        json_decref(ev);
        call_fail(c, status, message);
        return;
    }
    c->after_hook(c, ev);
    json_decref(ev);
}

/* Runs the handlers of hook on ev (stolen), then next(c, ev after the handlers); a
 * rejection fails the call with the handler's code and message. Without handlers, next runs
 * at once: no Lua round trip. */
static void run_hook(domain_call *c, const char *hook, json_t *ev, hook_step next)
{
    if (!ev || !chat__script_has(c->rt->script, hook)) {
        next(c, ev);
        json_decref(ev);
        return;
    }
    c->after_hook = next;
    chat__script_run(c->rt->script, hook, ev, hook_answered, c);
}

static void notified(int status, const char *message, json_t *ev, void *arg)
{
    (void)status;
    (void)message;
    (void)arg;
    json_decref(ev);
}

/* Tells the scripts about something that happened: nobody waits for the answer. */
static void notify_hook(chat_runtime *rt, const char *hook, json_t *ev)
{
    if (ev && chat__script_has(rt->script, hook)) {
        chat__script_run(rt->script, hook, ev, notified, NULL);
    } else {
        json_decref(ev);
    }
}

/* ---- validation ---- */

static int is_object_id(const char *s)
{
    if (!s || strlen(s) != 24) {
        return 0;
    }
    for (int i = 0; i < 24; i++) {
        if (!isxdigit((unsigned char)s[i]) || isupper((unsigned char)s[i])) {
            return 0;
        }
    }
    return 1;
}

/* Reads payload.roomId into c->room_id; fails the call and returns -1 if it is bad. */
static int take_room_id(domain_call *c, json_t *payload)
{
    const char *id = json_string_value(json_object_get(payload, "roomId"));
    if (!is_object_id(id)) {
        call_fail(c, CHAT_EINVAL, "roomId must be a room id (24 hex characters)");
        return -1;
    }
    memcpy(c->room_id, id, 25);
    return 0;
}

static int json_array_has_string(json_t *arr, const char *s)
{
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v) {
        if (json_is_string(v) && strcmp(json_string_value(v), s) == 0) {
            return 1;
        }
    }
    return 0;
}

/* The public view of a user: never the hash, and the email only for its owner. */
static json_t *public_user(json_t *user, int self)
{
    json_t *u = json_deep_copy(user);
    if (u) {
        json_object_del(u, "passwordHash");
        if (!self) {
            json_object_del(u, "email");
        }
    }
    return u;
}

static int64_t now_ms(void) { return chat__now_ms(); }

static void recent_key(char *out, size_t n, const char *room_id, const char *what);

/* ---- local membership: which sockets on this node receive which room ---- */

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
static void cache_room(chat_runtime *rt, json_t *room)
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
static int user_join_local(chat_runtime *rt, chat_user_state *u, const char *room_id)
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

static void user_leave_local(chat_runtime *rt, chat_user_state *u, const char *room_id)
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

static chat_room_state *sock_room(chat_sock *k, const char *room_id)
{
    for (uint32_t i = 0; i < k->rooms.len; i++) {
        chat_room_state *r = k->rooms.items[i];
        if (strcmp(r->id, room_id) == 0) {
            return r;
        }
    }
    return NULL;
}

/* ---- fan-out through the bus ----
 * A bus message is "<room ids, comma-separated>\n<except>\n<Engine.IO packet>", where except
 * is "-", "s:<socket id>" or "u:<user id>". The packet is encoded once by the publisher;
 * every node turns it into one frame shared by all its local targets. */

static void publish(chat_runtime *rt, const char *channel, const char *rooms_csv,
                    const char *except, const char *event, json_t *payload)
{
    chat_buf *b = &rt->pubbuf;
    json_t *args = json_pack("[sO]", event, payload);
    chat__buf_reset(b);
    if (!args || chat__buf_appendf(b, "%s\n%s\n4", rooms_csv, except) ||
        chat__sio_encode(b, SIO_EVENT, "/", -1, args, 0)) {
        chat__log(CHAT_LOG_ERROR, "publish_failed", "out of memory while encoding an event",
                  json_pack("{s:s}", "event", event));
    } else {
        chat__bus_publish(rt->bus, channel, (const char *)b->data, b->len);
    }
    json_decref(args);
}

static void publish_room(chat_runtime *rt, const char *room_id, const char *except,
                         const char *event, json_t *payload)
{
    char channel[48];
    snprintf(channel, sizeof channel, "room:%s:messages", room_id);
    publish(rt, channel, room_id, except, event, payload);
}

/* ---- per-user control messages: user:{userId}:notify ----
 * JSON: {"op":"joined"|"left","roomId":..} keeps every node's subscriptions in step with the
 * membership; {"op":"emit","event":..,"data":..} reaches the user's sockets on any node. */

static void notify_user(chat_runtime *rt, const char *user_id, json_t *msg)
{
    char channel[48];
    snprintf(channel, sizeof channel, "user:%s:notify", user_id);
    char *text = msg ? json_dumps(msg, JSON_COMPACT) : NULL;
    if (text) {
        chat__bus_publish(rt->bus, channel, text, strlen(text));
    }
    free(text);
    json_decref(msg);
}

static void on_user_notify(chat_runtime *rt, const char *channel, const char *data, size_t len)
{
    char user_id[25];
    if (strlen(channel) < 5 + 24 || sscanf(channel, "user:%24[0-9a-f]:notify", user_id) != 1) {
        return;
    }
    chat_user_state *u = chat__map_get(&rt->users, user_id);
    json_t *msg = u ? json_loadb(data, len, 0, NULL) : NULL;
    const char *op = json_string_value(json_object_get(msg, "op"));
    const char *room_id = json_string_value(json_object_get(msg, "roomId"));
    if (op && strcmp(op, "emit") == 0) {
        const char *event = json_string_value(json_object_get(msg, "event"));
        for (uint32_t i = 0; event && i < u->socks.len; i++) {
            chat__sock_emit_binary(u->socks.items[i], event, json_object_get(msg, "data"));
        }
    } else if (op && room_id && strcmp(op, "joined") == 0) {
        user_join_local(rt, u, room_id);
    } else if (op && room_id && strcmp(op, "left") == 0) {
        user_leave_local(rt, u, room_id);
    }
    json_decref(msg);
}

void chat__domain_bus_message(const char *channel, const char *data, size_t len, void *arg)
{
    chat_runtime *rt = arg;
    if (strncmp(channel, "user:", 5) == 0) {
        on_user_notify(rt, channel, data, len);
        return;
    }
    const char *end = data + len;
    const char *nl1 = memchr(data, '\n', len);
    const char *nl2 = nl1 ? memchr(nl1 + 1, '\n', (size_t)(end - nl1 - 1)) : NULL;
    if (!nl2) {
        chat__log(CHAT_LOG_WARN, "bus_bad_message", "ignored a malformed bus message",
                  json_pack("{s:s}", "channel", channel));
        return;
    }
    char except[40] = "-";
    size_t elen = (size_t)(nl2 - nl1 - 1);
    if (elen < sizeof except) {
        memcpy(except, nl1 + 1, elen);
        except[elen] = '\0';
    }
    const char *packet = nl2 + 1;
    size_t plen = (size_t)(end - packet);
    chat_frame *frame = NULL;
    json_t *binary = NULL; /* "B" + [event, payload]: a script's emit with binary values */
    if (plen && packet[0] == 'B' && !(binary = json_loadb(packet + 1, plen - 1, 0, NULL))) {
        return;
    }
    uint32_t mark = ++rt->mark;
    for (const char *p = data; p < nl1;) {
        const char *comma = memchr(p, ',', (size_t)(nl1 - p));
        const char *stop = comma ? comma : nl1;
        char room_id[25];
        if (stop - p == 24) {
            memcpy(room_id, p, 24);
            room_id[24] = '\0';
            chat_room_state *r = chat__map_get(&rt->rooms, room_id);
            for (uint32_t i = 0; r && i < r->socks.len; i++) {
                chat_sock *k = r->socks.items[i];
                if (k->mark == mark || !k->session) {
                    continue;
                }
                k->mark = mark;
                if ((except[0] == 's' && strcmp(except + 2, k->id) == 0) ||
                    (except[0] == 'u' && strcmp(except + 2, k->user_id) == 0)) {
                    continue;
                }
                if (binary) {
                    chat__sock_emit_binary(k, json_string_value(json_array_get(binary, 0)),
                                           json_array_get(binary, 1));
                    continue;
                }
                if (!frame && !(frame = chat__frame_new(packet, plen, 0))) {
                    return;
                }
                chat__session_send(k->session, frame);
            }
        }
        p = stop + 1;
    }
    chat__frame_unref(frame);
    json_decref(binary);
}

/* ---- presence ---- */

static void publish_presence(chat_runtime *rt, chat_user_state *u, const char *status,
                             int64_t last_seen)
{
    chat_buf csv = CHAT_BUF_INIT;
    for (uint32_t i = 0; i < u->rooms.len; i++) {
        chat_room_state *r = u->rooms.items[i];
        if ((i && chat__buf_appendc(&csv, ',')) || chat__buf_append(&csv, r->id, 24)) {
            chat__buf_free(&csv);
            return;
        }
    }
    if (chat__buf_terminate(&csv)) {
        return;
    }
    char except[32];
    snprintf(except, sizeof except, "u:%s", u->id);
    json_t *payload = json_pack("{s:s,s:s,s:I}", "userId", u->id, "status", status,
                                "lastSeen", (json_int_t)last_seen);
    if (payload && csv.len) {
        publish(rt, PRESENCE_CHANNEL, (const char *)csv.data, except, "presence:update",
                payload);
    }
    json_decref(payload);
    chat__buf_free(&csv);
}

typedef struct presence_ctx {
    chat_runtime *rt;
    char user_id[25];
    int online;
    chat_buf rooms; /* for going offline: the user's rooms when its last socket left */
} presence_ctx;

static void store_ignore(int status, json_t *result, void *arg)
{
    if (status) {
        chat__log(CHAT_LOG_WARN, "last_seen_failed", "could not record a user's last seen time",
                  json_pack("{s:s}", "code", chat_errcode(status)));
    }
    json_decref(result);
    (void)arg;
}

static void presence_counted(int status, const char *value, int64_t number, void *arg)
{
    presence_ctx *p = arg;
    (void)value;
    int64_t now = now_ms();
    /* first socket anywhere comes online; last one anywhere goes offline */
    if (status == 0 && ((p->online && number == 1) || (!p->online && number <= 0))) {
        chat_user_state *u = chat__map_get(&p->rt->users, p->user_id);
        const char *st = p->online ? "online" : "offline";
        if (u) {
            publish_presence(p->rt, u, st, now);
        } else if (p->rooms.len) {
            char except[32];
            snprintf(except, sizeof except, "u:%s", p->user_id);
            json_t *payload = json_pack("{s:s,s:s,s:I}", "userId", p->user_id, "status", st,
                                        "lastSeen", (json_int_t)now);
            chat__buf_terminate(&p->rooms);
            publish(p->rt, PRESENCE_CHANNEL, (const char *)p->rooms.data, except,
                    "presence:update", payload);
            json_decref(payload);
        }
        chat__store_call(p->rt->store, CHAT_STORE_USER_SET_SEEN,
                         json_pack("{s:s,s:I,s:s}", "id", p->user_id, "lastSeen",
                                   (json_int_t)now, "status", st),
                         store_ignore, NULL);
    }
    chat__buf_free(&p->rooms);
    free(p);
}

static void presence_change(chat_runtime *rt, chat_user_state *u, int online)
{
    presence_ctx *p = calloc(1, sizeof *p);
    if (!p) {
        return;
    }
    p->rt = rt;
    p->online = online;
    memcpy(p->user_id, u->id, 25);
    for (uint32_t i = 0; !online && i < u->rooms.len; i++) {
        chat_room_state *r = u->rooms.items[i];
        if ((i && chat__buf_appendc(&p->rooms, ',')) || chat__buf_append(&p->rooms, r->id, 24)) {
            break;
        }
    }
    char key[48];
    snprintf(key, sizeof key, "user:%s:online", u->id);
    chat__kv_incr(rt->kv, key, online ? 1 : -1, 0, presence_counted, p);
}

/* ---- connect and disconnect ---- */

typedef struct connect_ctx {
    chat_sock *k;
    json_t *auth;
} connect_ctx;

static void connect_ctx_free(connect_ctx *cc)
{
    chat__sock_unref(cc->k);
    json_decref(cc->auth);
    free(cc);
}

/* ---- catch-up: auth.since = {roomId: id of the last message the client saw} ----
 * After a reconnect, whichever node the client lands on sends it what it missed, oldest
 * first, as message:new. Walks the history newest first, at most CATCHUP_MAX messages. */

#define CATCHUP_PAGE 100
#define CATCHUP_MAX 1000

typedef struct catchup {
    chat_sock *k;
    char room_id[25];
    char after[25];
    json_t *missed; /* newest first */
} catchup;

static void catchup_page(int status, json_t *page, void *arg)
{
    catchup *cu = arg;
    int found = 0;
    size_t i;
    json_t *m;
    json_array_foreach(json_object_get(page, "messages"), i, m) {
        if (strcmp(json_string_value(json_object_get(m, "id")), cu->after) == 0) {
            found = 1;
            break;
        }
        json_array_append(cu->missed, m);
    }
    const char *next = json_string_value(json_object_get(page, "nextBefore"));
    if (!status && !found && next && cu->k->session &&
        json_array_size(cu->missed) < CATCHUP_MAX &&
        chat__store_call(cu->k->rt->store, CHAT_STORE_MESSAGES_PAGE,
                         json_pack("{s:s,s:s,s:i}", "roomId", cu->room_id, "before", next,
                                   "limit", CATCHUP_PAGE),
                         catchup_page, cu) == 0) {
        json_decref(page);
        return;
    }
    json_decref(page);
    for (size_t j = json_array_size(cu->missed); !status && j-- > 0;) {
        chat__sock_emit(cu->k, "message:new", json_array_get(cu->missed, j));
    }
    chat__sock_unref(cu->k);
    json_decref(cu->missed);
    free(cu);
}

static void catch_up(chat_sock *k, json_t *since)
{
    const char *room_id;
    json_t *after;
    json_object_foreach(since, room_id, after) {
        const char *after_id = json_string_value(after);
        if (!is_object_id(room_id) || !is_object_id(after_id) || !sock_room(k, room_id)) {
            continue; /* only rooms the user is in */
        }
        catchup *cu = calloc(1, sizeof *cu);
        if (!cu || !(cu->missed = json_array())) {
            free(cu);
            return;
        }
        cu->k = k;
        chat__sock_ref(k);
        memcpy(cu->room_id, room_id, 25);
        memcpy(cu->after, after_id, 25);
        if (chat__store_call(k->rt->store, CHAT_STORE_MESSAGES_PAGE,
                             json_pack("{s:s,s:n,s:i}", "roomId", room_id, "before", "limit",
                                       CATCHUP_PAGE),
                             catchup_page, cu)) {
            chat__sock_unref(k);
            json_decref(cu->missed);
            free(cu);
        }
    }
}

static void connect_rooms_loaded(int status, json_t *rooms, void *arg)
{
    connect_ctx *cc = arg;
    chat_sock *k = cc->k;
    chat_runtime *rt = k->rt;
    if (!k->session) {
        goto done; /* gone while we waited */
    }
    if (status) {
        chat__sock_refuse(k, status == CHAT_EUNAVAIL ? "unavailable" : "internal");
        goto done;
    }
    chat_user_state *u = chat__map_get(&rt->users, k->user_id);
    if (!u) {
        u = calloc(1, sizeof *u);
        if (!u || (memcpy(u->id, k->user_id, 25), chat__map_put(&rt->users, u->id, u))) {
            free(u);
            chat__sock_refuse(k, "internal");
            goto done;
        }
        /* membership changes and emits for this user, made on any node */
        char channel[48];
        snprintf(channel, sizeof channel, "user:%s:notify", u->id);
        chat__bus_subscribe(rt->bus, channel);
    }
    size_t i;
    json_t *room;
    json_array_foreach(rooms, i, room) {
        user_join_local(rt, u, json_string_value(json_object_get(room, "id")));
        cache_room(rt, room);
    }
    chat__vec_push(&u->socks, k);
    k->user = u;
    for (uint32_t j = 0; j < u->rooms.len; j++) {
        subscribe(k, u->rooms.items[j]);
    }
    chat__sock_connected(k);
    if (u->socks.len == 1) {
        presence_change(rt, u, 1);
    }
    if (json_is_object(json_object_get(cc->auth, "since"))) {
        catch_up(k, json_object_get(cc->auth, "since"));
    }
done:
    json_decref(rooms);
    connect_ctx_free(cc);
}

/* The connect policies allowed: "/" sockets load their rooms, others are ready. */
static void connect_allowed(int status, const char *message, json_t *ev, void *arg)
{
    connect_ctx *cc = arg;
    chat_sock *k = cc->k;
    json_decref(ev);
    if (!k->session) {
        connect_ctx_free(cc);
        return;
    }
    if (status) {
        chat__sock_refuse(k, message ? message : chat_errcode(status));
        connect_ctx_free(cc);
        return;
    }
    if (strcmp(k->nsp, "/") != 0 || !k->user_id[0]) {
        chat__sock_connected(k);
        connect_ctx_free(cc);
        return;
    }
    if (chat__store_call(k->rt->store, CHAT_STORE_ROOMS_FOR_USER,
                         json_pack("{s:s}", "userId", k->user_id), connect_rooms_loaded, cc)) {
        chat__sock_refuse(k, "unavailable");
        connect_ctx_free(cc);
    }
}

static void connect_policy(connect_ctx *cc, json_t *user)
{
    chat_sock *k = cc->k;
    if (!chat__script_has(k->rt->script, "connect")) {
        connect_allowed(0, NULL, NULL, cc);
        return;
    }
    json_t *ev = json_pack("{s:o,s:o,s:O}", "socket", socket_json(k), "user",
                           user ? json_incref(user) : json_null(), "auth", cc->auth);
    chat__script_run(k->rt->script, "connect", ev, connect_allowed, cc);
}

static void connect_user_loaded(int status, json_t *user, void *arg)
{
    connect_ctx *cc = arg;
    chat_sock *k = cc->k;
    if (!k->session || status) {
        if (k->session) {
            chat__sock_refuse(k, status == CHAT_ENOTFOUND ? "unauthorized"
                                 : status == CHAT_EUNAVAIL ? "unavailable"
                                                           : "internal");
        }
        json_decref(user);
        connect_ctx_free(cc);
        return;
    }
    snprintf(k->username, sizeof k->username, "%s",
             json_string_value(json_object_get(user, "username")));
    json_t *pub = public_user(user, 0);
    json_decref(user);
    connect_policy(cc, pub);
    json_decref(pub);
}

void chat__domain_connect(chat_sock *k, const char *user_id, json_t *auth)
{
    connect_ctx *cc = calloc(1, sizeof *cc);
    if (!cc) {
        json_decref(auth);
        chat__sock_refuse(k, "internal");
        return;
    }
    cc->k = k;
    cc->auth = auth ? auth : json_object();
    chat__sock_ref(k);
    if (!user_id) {
        connect_policy(cc, NULL); /* anonymous, on a namespace that allows it */
        return;
    }
    memcpy(k->user_id, user_id, 25);
    if (chat__store_call(k->rt->store, CHAT_STORE_USER_GET, json_pack("{s:s}", "id", user_id),
                         connect_user_loaded, cc)) {
        chat__sock_refuse(k, "unavailable");
        connect_ctx_free(cc);
    }
}

void chat__domain_disconnect(chat_sock *k, const char *reason)
{
    chat_runtime *rt = k->rt;
    if (k->connected) {
        notify_hook(rt, "disconnect",
                    json_pack("{s:o,s:o,s:s}", "socket", socket_json(k), "user",
                              user_json(k->user_id, k->username), "reason",
                              reason ? reason : "transport close"));
    }
    for (uint32_t i = 0; i < k->rooms.len; i++) {
        chat__vec_remove(&((chat_room_state *)k->rooms.items[i])->socks, k);
    }
    chat__vec_free(&k->rooms);
    chat_user_state *u = k->user;
    k->user = NULL;
    if (!u) {
        return;
    }
    chat__vec_remove(&u->socks, k);
    if (u->socks.len) {
        return;
    }
    presence_change(rt, u, 0);
    for (uint32_t i = 0; i < u->rooms.len; i++) {
        room_state_release(rt, u->rooms.items[i]);
    }
    chat__vec_free(&u->rooms);
    chat__vec_free(&u->socks);
    char channel[48];
    snprintf(channel, sizeof channel, "user:%s:notify", u->id);
    chat__bus_unsubscribe(rt->bus, channel);
    chat__map_del(&rt->users, u->id);
    free(u);
}

/* ---- membership check: the step after it is c->next ---- */

static void member_room_loaded(int status, json_t *room, void *arg)
{
    domain_call *c = arg;
    if (status) {
        json_decref(room);
        call_fail(c, status, status == CHAT_ENOTFOUND ? "no room with that id" : NULL);
        return;
    }
    if (!json_array_has_string(json_object_get(room, "participants"), c->user_id)) {
        json_decref(room);
        call_fail(c, CHAT_EFORBIDDEN, "you are not a member of this room; join it first");
        return;
    }
    c->room = room;
    /* a member this node did not know about (joined elsewhere): subscribe now */
    if (c->k && c->k->user) {
        user_join_local(c->rt, c->k->user, c->room_id);
    }
    cache_room(c->rt, room);
    c->next(c);
}

/* Membership is checked on every action: by this node's subscriptions when the socket has
 * the room, else by the stored room. c->room is set when this node has a copy. */
static void require_member(domain_call *c, domain_step next)
{
    c->next = next;
    chat_room_state *r = c->k ? sock_room(c->k, c->room_id) : NULL;
    if (r) {
        c->room = json_incref(r->room);
        next(c);
        return;
    }
    store_call(c, CHAT_STORE_ROOM_GET, json_pack("{s:s}", "id", c->room_id), member_room_loaded);
}

static void room_loaded_for_policy(int status, json_t *room, void *arg)
{
    domain_call *c = arg;
    if (status) {
        json_decref(room);
        call_fail(c, status, status == CHAT_ENOTFOUND ? "no room with that id" : NULL);
        return;
    }
    c->room = room;
    cache_room(c->rt, room);
    c->next(c);
}

/* Makes sure c->room holds the room (policies read its settings and admin), then next. */
static void with_room(domain_call *c, domain_step next)
{
    c->next = next;
    if (c->room) {
        next(c);
        return;
    }
    store_call(c, CHAT_STORE_ROOM_GET, json_pack("{s:s}", "id", c->room_id),
               room_loaded_for_policy);
}

/* ---- rooms ---- */

static void room_created(int status, json_t *room, void *arg)
{
    domain_call *c = arg;
    if (status) {
        json_decref(room);
        call_fail(c, status, NULL);
        return;
    }
    size_t i;
    json_t *p;
    json_array_foreach(json_object_get(room, "participants"), i, p) {
        chat_user_state *u = chat__map_get(&c->rt->users, json_string_value(p));
        if (u) {
            user_join_local(c->rt, u, json_string_value(json_object_get(room, "id")));
        }
        notify_user(c->rt, json_string_value(p),
                    json_pack("{s:s,s:O}", "op", "joined", "roomId", json_object_get(room, "id")));
    }
    cache_room(c->rt, room);
    call_done(c, json_pack("{s:o}", "room", room));
}

/* Validates {name, type, participants} and stores the room; used by both doors. */
static void room_create(domain_call *c, json_t *payload)
{
    json_t *name = json_object_get(payload, "name");
    const char *type = json_string_value(json_object_get(payload, "type"));
    json_t *participants = json_object_get(payload, "participants");
    if (!type || (strcmp(type, "group") != 0 && strcmp(type, "direct") != 0)) {
        call_fail(c, CHAT_EINVAL, "type must be \"group\" or \"direct\"");
        return;
    }
    if (name && !json_is_null(name) &&
        (!json_is_string(name) || json_string_length(name) > ROOM_NAME_MAX)) {
        call_fail(c, CHAT_EINVAL, "name must be a string of at most 100 bytes");
        return;
    }
    if (strcmp(type, "group") == 0 && (!json_is_string(name) || !json_string_length(name))) {
        call_fail(c, CHAT_EINVAL, "a group room needs a name");
        return;
    }
    if (participants && !json_is_array(participants)) {
        call_fail(c, CHAT_EINVAL, "participants must be an array of user ids");
        return;
    }
    json_t *settings = json_object_get(payload, "settings");
    if (settings && !json_is_null(settings)) {
        char *text = json_is_object(settings) ? json_dumps(settings, JSON_COMPACT) : NULL;
        size_t n = text ? strlen(text) : SIZE_MAX;
        free(text);
        if (n > SETTINGS_MAX_BYTES) {
            call_fail(c, CHAT_EINVAL, "settings must be an object of at most 2048 bytes");
            return;
        }
    }
    json_t *members = json_array();
    json_array_append_new(members, json_string(c->user_id));
    size_t i;
    json_t *p;
    json_array_foreach(participants, i, p) {
        const char *id = json_string_value(p);
        if (!is_object_id(id)) {
            json_decref(members);
            call_fail(c, CHAT_EINVAL, "participants must be user ids (24 hex characters)");
            return;
        }
        if (!json_array_has_string(members, id)) {
            json_array_append_new(members, json_string(id));
        }
    }
    if (json_array_size(members) > PARTICIPANTS_MAX) {
        json_decref(members);
        call_fail(c, CHAT_EINVAL, "a room has at most 1000 participants");
        return;
    }
    if (strcmp(type, "direct") == 0 && json_array_size(members) != 2) {
        json_decref(members);
        call_fail(c, CHAT_EINVAL, "a direct room has exactly one other participant");
        return;
    }
    char id[25];
    chat__objectid(id);
    json_t *room = json_pack("{s:s,s:s,s:s,s:o,s:s,s:o,s:I}", "id", id, "name",
                             json_is_string(name) ? json_string_value(name) : "", "type", type,
                             "participants", members, "admin", c->user_id, "settings",
                             json_is_object(settings) ? json_deep_copy(settings) : json_object(),
                             "createdAt", (json_int_t)now_ms());
    if (!room) {
        call_fail(c, CHAT_ENOMEM, NULL);
        return;
    }
    store_call(c, CHAT_STORE_ROOM_CREATE, room, room_created);
}

static void room_member_added(int status, json_t *room, void *arg)
{
    domain_call *c = arg;
    if (status) {
        json_decref(room);
        call_fail(c, status, status == CHAT_ENOTFOUND ? "no room with that id" : NULL);
        return;
    }
    chat_user_state *u = chat__map_get(&c->rt->users, c->user_id);
    if (u) {
        user_join_local(c->rt, u, c->room_id);
    }
    cache_room(c->rt, room);
    notify_user(c->rt, c->user_id, json_pack("{s:s,s:s}", "op", "joined", "roomId", c->room_id));
    char except[32];
    snprintf(except, sizeof except, "u:%s", c->user_id);
    json_t *note = json_pack("{s:s,s:s}", "roomId", c->room_id, "userId", c->user_id);
    publish_room(c->rt, c->room_id, except, "room:member_joined", note);
    json_decref(note);
    if (!c->done) { /* joins made by scripts do not call the scripts back */
        notify_hook(c->rt, "room/joined",
                    json_pack("{s:o,s:o,s:O}", "socket", socket_json(c->k), "user",
                              call_user_json(c), "room", room));
    }
    call_done(c, json_pack("{s:o}", "room", room));
}

static void join_allowed(domain_call *c, json_t *ev)
{
    (void)ev;
    store_call(c, CHAT_STORE_ROOM_ADD_MEMBER,
               json_pack("{s:s,s:s}", "roomId", c->room_id, "userId", c->user_id),
               room_member_added);
}

static void join_room_loaded(int status, json_t *room, void *arg)
{
    domain_call *c = arg;
    if (status) {
        json_decref(room);
        call_fail(c, status, status == CHAT_ENOTFOUND ? "no room with that id" : NULL);
        return;
    }
    json_t *participants = json_object_get(room, "participants");
    if (json_array_has_string(participants, c->user_id)) {
        chat_user_state *u = chat__map_get(&c->rt->users, c->user_id);
        if (u) {
            user_join_local(c->rt, u, c->room_id);
        }
        call_done(c, json_pack("{s:o}", "room", room));
        return;
    }
    const char *type = json_string_value(json_object_get(room, "type"));
    if (!type || strcmp(type, "group") != 0) {
        json_decref(room);
        call_fail(c, CHAT_EFORBIDDEN, "a direct room has only its two participants");
        return;
    }
    /* the room rules (private rooms, member limits, bans) are policies in scripts */
    json_t *ev = json_pack("{s:o,s:o,s:o}", "socket", socket_json(c->k), "user",
                           call_user_json(c), "room", room);
    run_hook(c, "room/join", ev, join_allowed);
}

static void room_member_removed(int status, json_t *room, void *arg)
{
    domain_call *c = arg;
    if (status) {
        json_decref(room);
        call_fail(c, status, NULL);
        return;
    }
    cache_room(c->rt, room);
    json_decref(room);
    chat_user_state *u = chat__map_get(&c->rt->users, c->user_id);
    if (u) {
        user_leave_local(c->rt, u, c->room_id);
    }
    notify_user(c->rt, c->user_id, json_pack("{s:s,s:s}", "op", "left", "roomId", c->room_id));
    json_t *note = json_pack("{s:s,s:s}", "roomId", c->room_id, "userId", c->user_id);
    publish_room(c->rt, c->room_id, "-", "room:member_left", note);
    json_decref(note);
    notify_hook(c->rt, "room/leave",
                json_pack("{s:o,s:o,s:{s:s}}", "socket", socket_json(c->k), "user",
                          call_user_json(c), "room", "id", c->room_id));
    call_done(c, NULL);
}

static void leave_member_confirmed(domain_call *c)
{
    store_call(c, CHAT_STORE_ROOM_REMOVE_MEMBER,
               json_pack("{s:s,s:s}", "roomId", c->room_id, "userId", c->user_id),
               room_member_removed);
}

/* ---- messages ---- */

static void message_stored(int status, json_t *result, void *arg)
{
    domain_call *c = arg;
    if (status) {
        json_decref(result);
        call_fail(c, status, status == CHAT_EUNAVAIL
                                 ? "the message was not stored: the store is unavailable; "
                                   "retry with the same clientMsgId"
                                 : NULL);
        return;
    }
    json_t *message = json_object_get(result, "message");
    if (!json_is_true(json_object_get(result, "duplicate"))) {
        char except[32];
        snprintf(except, sizeof except, "s:%s", c->k ? c->k->id : "-");
        c->rt->stats.messages_stored++;
        char key[64];
        recent_key(key, sizeof key, c->room_id, "version");
        chat__kv_incr(c->rt->kv, key, 1, 0, NULL, NULL); /* the cached copy is now old */
        publish_room(c->rt, c->room_id, except, "message:new", message);
    }
    if (c->k) {
        json_t *ack = json_pack("{s:O,s:O,s:O}", "clientMsgId",
                                json_object_get(message, "clientMsgId"), "id",
                                json_object_get(message, "id"), "createdAt",
                                json_object_get(message, "createdAt"));
        chat__sock_emit(c->k, "message:ack", ack);
        json_decref(ack);
    }
    if (!json_is_true(json_object_get(result, "duplicate"))) {
        notify_hook(c->rt, "message/after",
                    json_pack("{s:o,s:o,s:{s:s},s:O}", "socket", socket_json(c->k), "user",
                              call_user_json(c), "room", "id", c->room_id, "message", message));
    }
    call_done(c, json_pack("{s:O}", "message", message));
    json_decref(result);
}

static void message_send_member(domain_call *c)
{
    json_t *in = c->input;
    char id[25];
    chat__objectid(id);
    int64_t now = now_ms();
    json_t *client_id = json_object_get(in, "clientMsgId");
    json_t *msg = json_pack("{s:s,s:s,s:s,s:O,s:[],s:{},s:O,s:I,s:I}", "id", id, "roomId",
                            c->room_id, "senderId", c->user_id, "content",
                            json_object_get(in, "content"), "attachments", "reactions",
                            "clientMsgId", client_id ? client_id : json_null(), "createdAt",
                            (json_int_t)now, "updatedAt", (json_int_t)now);
    if (!msg) {
        call_fail(c, CHAT_ENOMEM, NULL);
        return;
    }
    if (json_object_get(in, "attachments")) {
        json_object_set(msg, "attachments", json_object_get(in, "attachments"));
    }
    store_call(c, CHAT_STORE_MESSAGE_INSERT, msg, message_stored);
}

/* Checks {content, clientMsgId?, attachments?} and keeps the valid copy in c->input;
 * fails the call and returns -1 otherwise. Runs again on what the policies rewrote. */
static int take_message(domain_call *c, json_t *payload)
{
    json_t *content = json_object_get(payload, "content");
    json_t *client_id = json_object_get(payload, "clientMsgId");
    json_t *attachments = json_object_get(payload, "attachments");
    if (!json_is_string(content) || !json_string_length(content)) {
        call_fail(c, CHAT_EINVAL, "content must be a non-empty string");
        return -1;
    }
    if (json_string_length(content) > (size_t)c->rt->cfg.message_max_bytes) {
        char msg[128];
        snprintf(msg, sizeof msg, "content is longer than %d bytes; split the message",
                 c->rt->cfg.message_max_bytes);
        call_fail(c, CHAT_ETOOBIG, msg);
        return -1;
    }
    if (client_id && !json_is_null(client_id) &&
        (!json_is_string(client_id) || !json_string_length(client_id) ||
         json_string_length(client_id) > CLIENT_MSG_ID_MAX)) {
        call_fail(c, CHAT_EINVAL, "clientMsgId must be a string of 1 to 128 bytes");
        return -1;
    }
    if (attachments && !json_is_null(attachments) &&
        (!json_is_array(attachments) || json_array_size(attachments) > ATTACHMENTS_MAX)) {
        call_fail(c, CHAT_EINVAL, "attachments must be an array of at most 10 objects");
        return -1;
    }
    size_t i;
    json_t *a;
    json_array_foreach(attachments, i, a) {
        if (!json_is_object(a) || json_object_get(a, "$binary")) {
            call_fail(c, CHAT_EINVAL,
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

static void message_allowed(domain_call *c, json_t *ev)
{
    json_t *message = json_object_get(ev, "message");
    if (!json_is_object(message)) {
        call_fail(c, CHAT_EINTERNAL, "a policy removed the message");
        return;
    }
    /* the client's clientMsgId stays: a policy may rewrite content, not identity */
    json_t *client_id = json_object_get(c->input, "clientMsgId");
    if (client_id) {
        json_object_set(message, "clientMsgId", client_id);
    } else {
        json_object_del(message, "clientMsgId");
    }
    if (take_message(c, message) == 0) {
        message_send_member(c);
    }
}

static void message_policy(domain_call *c)
{
    json_t *ev = json_pack("{s:o,s:o,s:O,s:O}", "socket", socket_json(c->k), "user",
                           call_user_json(c), "room", c->room, "message", c->input);
    run_hook(c, "message/before", ev, message_allowed);
}

static void message_send_checked(domain_call *c)
{
    if (chat__script_has(c->rt->script, "message/before")) {
        with_room(c, message_policy);
    } else {
        message_send_member(c);
    }
}

static void on_message_send(domain_call *c, json_t *payload)
{
    if (take_room_id(c, payload) || take_message(c, payload)) {
        return;
    }
    require_member(c, message_send_checked);
}

/* ---- typing ---- */

static void typing_allowed(domain_call *c, json_t *ev)
{
    char except[32];
    snprintf(except, sizeof except, "u:%s", c->user_id);
    json_t *note = json_pack("{s:s,s:s,s:O}", "roomId", c->room_id, "userId", c->user_id,
                             "typing", json_object_get(ev, "typing"));
    publish_room(c->rt, c->room_id, except, "typing", note);
    json_decref(note);
    call_done(c, NULL);
}

static void typing_member(domain_call *c, int typing)
{
    json_t *ev = json_pack("{s:o,s:o,s:{s:s},s:b}", "socket", socket_json(c->k), "user",
                           call_user_json(c), "room", "id", c->room_id, "typing", typing);
    run_hook(c, "typing", ev, typing_allowed);
}

static void typing_start_member(domain_call *c) { typing_member(c, 1); }
static void typing_stop_member(domain_call *c) { typing_member(c, 0); }

/* ---- Socket.IO events ---- */

static void on_room_join(domain_call *c, json_t *payload)
{
    if (take_room_id(c, payload) == 0) {
        store_call(c, CHAT_STORE_ROOM_GET, json_pack("{s:s}", "id", c->room_id),
                   join_room_loaded);
    }
}

static void on_room_leave(domain_call *c, json_t *payload)
{
    if (take_room_id(c, payload) == 0) {
        require_member(c, leave_member_confirmed);
    }
}

static void on_room_create(domain_call *c, json_t *payload) { room_create(c, payload); }

static void on_typing_start(domain_call *c, json_t *payload)
{
    if (take_room_id(c, payload) == 0) {
        require_member(c, typing_start_member);
    }
}

static void on_typing_stop(domain_call *c, json_t *payload)
{
    if (take_room_id(c, payload) == 0) {
        require_member(c, typing_stop_member);
    }
}

typedef struct event_handler {
    const char *name;
    void (*fn)(domain_call *c, json_t *payload);
} event_handler;

static const event_handler event_handlers[] = {
    {"room:join", on_room_join},         {"room:leave", on_room_leave},
    {"room:create", on_room_create},     {"message:send", on_message_send},
    {"typing:start", on_typing_start},   {"typing:stop", on_typing_stop},
};

static void custom_event_answered(domain_call *c, json_t *ev)
{
    json_t *result = json_object_get(ev, "result");
    if (c->k && c->ack_id >= 0) {
        if (result) {
            chat__sock_ack(c->k, c->ack_id, result);
        } else {
            json_t *ok = json_pack("{s:b}", "ok", 1);
            chat__sock_ack(c->k, c->ack_id, ok);
            json_decref(ok);
        }
    }
    call_free(c);
}

void chat__domain_event(chat_sock *k, const char *event, json_t *args, int64_t ack_id)
{
    const event_handler *h = NULL;
    for (size_t i = 0; strcmp(k->nsp, "/") == 0 && i < sizeof event_handlers / sizeof event_handlers[0];
         i++) {
        if (strcmp(event_handlers[i].name, event) == 0) {
            h = &event_handlers[i];
            break;
        }
    }
    domain_call *c = call_from_sock(k, event, ack_id);
    if (!c) {
        return;
    }
    if (h) {
        json_t *payload = json_array_get(args, 1);
        if (!json_is_object(payload)) {
            call_fail(c, CHAT_EINVAL, "the payload must be an object");
            return;
        }
        h->fn(c, payload);
        return;
    }
    /* any other event goes to the scripts' "event/<name>" handlers; what they return is the
     * ack */
    char hook[96];
    snprintf(hook, sizeof hook, "event/%s", event);
    if (strlen(event) > 64 || !chat__script_has(k->rt->script, hook)) {
        char msg[160];
        snprintf(msg, sizeof msg, "unknown event \"%.64s\"", event);
        call_fail(c, CHAT_EINVAL, msg);
        return;
    }
    json_t *rest = json_array();
    for (size_t i = 1; i < json_array_size(args); i++) {
        json_array_append(rest, json_array_get(args, i));
    }
    json_t *ev = json_pack("{s:o,s:o,s:s,s:s,s:o}", "socket", socket_json(k), "user",
                           user_json(k->user_id, k->username), "namespace", k->nsp, "event",
                           event, "args", rest);
    run_hook(c, hook, ev, custom_event_answered);
}

static int valid_username(const char *s);

/* ---- actions for scripts ---- */

static int has_binary(const json_t *v)
{
    size_t i;
    const char *k;
    json_t *x;
    if (json_is_object(v)) {
        if (json_object_size(v) == 1 && json_is_string(json_object_get(v, "$binary"))) {
            return 1;
        }
        json_object_foreach((json_t *)v, k, x) {
            if (has_binary(x)) {
                return 1;
            }
        }
    } else if (json_is_array(v)) {
        json_array_foreach(v, i, x) {
            if (has_binary(x)) {
                return 1;
            }
        }
    }
    return 0;
}

void chat__domain_emit_room(chat_runtime *rt, const char *room_id, const char *event,
                            json_t *payload)
{
    if (!is_object_id(room_id)) {
        return;
    }
    if (!has_binary(payload)) {
        publish_room(rt, room_id, "-", event, payload);
        return;
    }
    /* binary goes as "B" + JSON [event, payload]: each node encodes it per socket */
    char channel[48];
    snprintf(channel, sizeof channel, "room:%s:messages", room_id);
    json_t *args = json_pack("[sO]", event, payload);
    char *text = args ? json_dumps(args, JSON_COMPACT) : NULL;
    chat_buf b = CHAT_BUF_INIT;
    if (text && !chat__buf_appendf(&b, "%s\n-\nB%s", room_id, text)) {
        chat__bus_publish(rt->bus, channel, (const char *)b.data, b.len);
    }
    chat__buf_free(&b);
    free(text);
    json_decref(args);
}

int chat__domain_emit_user(chat_runtime *rt, const char *user_id, const char *event,
                           json_t *payload)
{
    if (!is_object_id(user_id)) {
        return 0;
    }
    notify_user(rt, user_id,
                json_pack("{s:s,s:s,s:O}", "op", "emit", "event", event, "data", payload));
    return 1;
}

int chat__domain_emit_socket(chat_runtime *rt, const char *sock_id, const char *event,
                             json_t *payload)
{
    chat_sock *k = chat__map_get(&rt->socks, sock_id);
    if (!k || !k->connected) {
        return 0;
    }
    chat__sock_emit_binary(k, event, payload);
    return 1;
}

static domain_call *script_room_call(chat_runtime *rt, const char *room_id, const char *user_id,
                                     chat_store_cb cb, void *arg)
{
    if (!is_object_id(room_id) || !is_object_id(user_id)) {
        cb(CHAT_EINVAL, NULL, arg);
        return NULL;
    }
    domain_call *c = call_from_script(rt, user_id, cb, arg);
    if (c) {
        memcpy(c->room_id, room_id, 25);
    }
    return c;
}

void chat__domain_join(chat_runtime *rt, const char *room_id, const char *user_id,
                       chat_store_cb cb, void *arg)
{
    domain_call *c = script_room_call(rt, room_id, user_id, cb, arg);
    if (c) {
        store_call(c, CHAT_STORE_ROOM_ADD_MEMBER,
                   json_pack("{s:s,s:s}", "roomId", room_id, "userId", user_id),
                   room_member_added);
    }
}

void chat__domain_leave(chat_runtime *rt, const char *room_id, const char *user_id,
                        chat_store_cb cb, void *arg)
{
    domain_call *c = script_room_call(rt, room_id, user_id, cb, arg);
    if (c) {
        store_call(c, CHAT_STORE_ROOM_REMOVE_MEMBER,
                   json_pack("{s:s,s:s}", "roomId", room_id, "userId", user_id),
                   room_member_removed);
    }
}

void chat__domain_send_as(chat_runtime *rt, const char *user_id, const char *room_id,
                          const char *content, chat_store_cb cb, void *arg)
{
    domain_call *c = script_room_call(rt, room_id, user_id, cb, arg);
    if (!c) {
        return;
    }
    json_t *payload = json_pack("{s:s}", "content", content);
    if (payload && take_message(c, payload) == 0) {
        require_member(c, message_send_member);
    } else if (!payload) {
        call_fail(c, CHAT_ENOMEM, NULL);
    }
    json_decref(payload);
}

/* A room made by a script: the same validation as room:create, with user_id as its admin. */
void chat__domain_create_room(chat_runtime *rt, const char *user_id, json_t *payload,
                              chat_store_cb cb, void *arg)
{
    if (!is_object_id(user_id)) {
        cb(CHAT_EINVAL, NULL, arg);
        return;
    }
    domain_call *c = call_from_script(rt, user_id, cb, arg);
    if (c) {
        room_create(c, payload);
    }
}

static void bot_created(int status, json_t *user, void *arg);

#define BOT_EMAIL_DOMAIN "@bots.invalid" /* bots' accounts; people cannot register it */

static int is_bot_email(const char *email)
{
    size_t n = email ? strlen(email) : 0, d = strlen(BOT_EMAIL_DOMAIN);
    return n > d && strcasecmp(email + n - d, BOT_EMAIL_DOMAIN) == 0;
}

static void bot_looked_up(int status, json_t *user, void *arg)
{
    domain_call *c = arg;
    if (status == 0 && !is_bot_email(json_string_value(json_object_get(user, "email")))) {
        json_decref(user); /* a person has that username: a bot must not speak as them */
        call_fail(c, CHAT_ECONFLICT, NULL);
        return;
    }
    if (status == 0) {
        call_done(c, public_user(user, 0));
        json_decref(user);
        return;
    }
    json_decref(user);
    if (status != CHAT_ENOTFOUND || c->second_lookup) {
        call_fail(c, status, NULL);
        return;
    }
    /* a bot signs in with no password: "!" is no bcrypt hash, so no password matches */
    char id[25];
    chat__objectid(id);
    const char *name = json_string_value(json_object_get(c->input, "username"));
    json_t *bot = json_pack("{s:s,s:s,s:s,s:s,s:I}", "id", id, "email",
                            json_string_value(json_object_get(c->input, "email")), "username",
                            name, "passwordHash", "!", "createdAt", (json_int_t)now_ms());
    store_call(c, CHAT_STORE_USER_CREATE, bot, bot_created);
}

static void bot_created(int status, json_t *user, void *arg)
{
    domain_call *c = arg;
    json_decref(user);
    if (status && status != CHAT_ECONFLICT) {
        call_fail(c, status, NULL);
        return;
    }
    /* look it up again: on a conflict another node (or call) created it first */
    c->second_lookup = 1;
    store_call(c, CHAT_STORE_USER_BY_LOGIN,
               json_pack("{s:O}", "login", json_object_get(c->input, "username")),
               bot_looked_up);
}

void chat__domain_ensure_user(chat_runtime *rt, const char *username, chat_store_cb cb,
                              void *arg)
{
    if (!valid_username(username)) {
        cb(CHAT_EINVAL, NULL, arg);
        return;
    }
    domain_call *c = call_from_script(rt, NULL, cb, arg);
    if (!c) {
        return;
    }
    c->input = json_pack("{s:s,s:s+}", "username", username, "email", username,
                         BOT_EMAIL_DOMAIN);
    store_call(c, CHAT_STORE_USER_BY_LOGIN, json_pack("{s:s}", "login", username),
               bot_looked_up);
}

/* ---- REST ---- */

/* Parses the body as a JSON object; answers 400 and returns NULL otherwise. */
static json_t *body_object(chat_http_req *req)
{
    json_error_t err;
    json_t *v = req->body.len ? json_loadb((const char *)req->body.data, req->body.len, 0, &err)
                              : NULL;
    if (!json_is_object(v)) {
        json_decref(v);
        chat__http_respond_error(req, CHAT_EINVAL,
                                 "the body must be a JSON object in UTF-8");
        return NULL;
    }
    return v;
}

static int valid_username(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n < 3 || n > 32) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        if (!isalnum((unsigned char)s[i]) && !strchr("_.-", s[i])) {
            return 0;
        }
    }
    return 1;
}

static int valid_email(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    const char *at = s ? strchr(s, '@') : NULL;
    if (n < 3 || n > 254 || !at || at == s || strchr(at + 1, '@') || !strchr(at + 1, '.')) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)s[i] <= ' ') {
            return 0;
        }
    }
    return at[strlen(at) - 1] != '.';
}

static void answer_with_token(domain_call *c, json_t *user)
{
    char *token = NULL;
    uv_timeval64_t tv;
    uv_gettimeofday(&tv);
    const char *id = json_string_value(json_object_get(user, "id"));
    if (!id || chat__jwt_sign(c->rt->jwt_secret, id, tv.tv_sec, c->rt->cfg.token_ttl_s,
                              &token)) {
        json_decref(user);
        call_fail(c, CHAT_EINTERNAL, "could not sign a token");
        return;
    }
    json_t *body = json_pack("{s:o,s:s}", "user", public_user(user, 1), "token", token);
    free(token);
    json_decref(user);
    call_done(c, body);
}

static void registered(int status, json_t *result, void *arg)
{
    domain_call *c = arg;
    if (status == CHAT_ECONFLICT) {
        const char *field = json_string_value(json_object_get(result, "field"));
        char msg[96];
        snprintf(msg, sizeof msg, "that %s is already registered",
                 field ? field : "email or username");
        json_decref(result);
        call_fail(c, CHAT_ECONFLICT, msg);
        return;
    }
    if (status) {
        json_decref(result);
        call_fail(c, status, NULL);
        return;
    }
    answer_with_token(c, result);
}

static void password_hashed(int status, const char *hash, void *arg)
{
    domain_call *c = arg;
    if (status) {
        call_fail(c, CHAT_EINTERNAL, "could not hash the password");
        return;
    }
    char id[25];
    chat__objectid(id);
    json_t *in = c->input;
    json_t *user = json_pack("{s:s,s:O,s:O,s:s,s:I}", "id", id, "email",
                             json_object_get(in, "email"), "username",
                             json_object_get(in, "username"), "passwordHash", hash, "createdAt",
                             (json_int_t)now_ms());
    store_call(c, CHAT_STORE_USER_CREATE, user, registered);
}

void chat__rest_register(chat_http_req *req, const char *user_id)
{
    (void)user_id;
    json_t *body = body_object(req);
    if (!body) {
        return;
    }
    const char *email = json_string_value(json_object_get(body, "email"));
    const char *username = json_string_value(json_object_get(body, "username"));
    json_t *password = json_object_get(body, "password");
    const char *problem = !valid_email(email) || is_bot_email(email)
                              ? "email must be a valid address"
                          : !valid_username(username)
                              ? "username must be 3 to 32 letters, digits, '_', '.' or '-'"
                          : !json_is_string(password) || json_string_length(password) < 8 ||
                                  json_string_length(password) > 256
                              ? "password must be a string of 8 to 256 bytes"
                              : NULL;
    if (problem) {
        json_decref(body);
        chat__http_respond_error(req, CHAT_EINVAL, problem);
        return;
    }
    if (memchr(json_string_value(password), 0, json_string_length(password))) {
        json_decref(body);
        chat__http_respond_error(req, CHAT_EINVAL, "password must not contain NUL bytes");
        return;
    }
    domain_call *c = call_from_req(req, NULL, 201);
    if (!c) {
        json_decref(body);
        chat__http_respond_error(req, CHAT_ENOMEM, NULL);
        return;
    }
    c->input = body;
    if (chat__password_hash_async(req->rt->loop, json_string_value(password),
                                  req->rt->cfg.bcrypt_cost, password_hashed, c)) {
        call_fail(c, CHAT_EINTERNAL, "could not hash the password");
    }
}

static void login_checked(int status, const char *unused, void *arg)
{
    domain_call *c = arg;
    (void)unused;
    if (status || !c->room) {
        call_fail(c, CHAT_EUNAUTHORIZED, "wrong login or password");
        return;
    }
    json_t *user = c->room; /* the loaded user travels in the spare slot */
    c->room = NULL;
    answer_with_token(c, user);
}

static void login_user_loaded(int status, json_t *user, void *arg)
{
    domain_call *c = arg;
    if (status && status != CHAT_ENOTFOUND) {
        json_decref(user);
        call_fail(c, status, NULL);
        return;
    }
    /* an unknown login is checked against a dummy hash of the same cost, so it takes as
     * long as a wrong password: no user enumeration by timing */
    const char *dummy_hash = c->rt->dummy_hash;
    const char *hash = status ? dummy_hash
                              : json_string_value(json_object_get(user, "passwordHash"));
    c->room = status ? NULL : user;
    if (status) {
        json_decref(user);
    }
    const char *password = json_string_value(json_object_get(c->input, "password"));
    if (chat__password_verify_async(c->rt->loop, password, hash ? hash : dummy_hash,
                                    login_checked, c)) {
        call_fail(c, CHAT_EINTERNAL, "could not check the password");
    }
}

void chat__rest_login(chat_http_req *req, const char *user_id)
{
    (void)user_id;
    json_t *body = body_object(req);
    if (!body) {
        return;
    }
    json_t *login = json_object_get(body, "login");
    json_t *password = json_object_get(body, "password");
    if (!json_is_string(login) || !json_string_length(login) ||
        json_string_length(login) > 254 || !json_is_string(password) ||
        json_string_length(password) > 256) {
        json_decref(body);
        chat__http_respond_error(req, CHAT_EINVAL,
                                 "send {\"login\": email or username, \"password\": string}");
        return;
    }
    domain_call *c = call_from_req(req, NULL, 200);
    if (!c) {
        json_decref(body);
        chat__http_respond_error(req, CHAT_ENOMEM, NULL);
        return;
    }
    c->input = body;
    store_call(c, CHAT_STORE_USER_BY_LOGIN, json_pack("{s:O}", "login", login),
               login_user_loaded);
}

static void me_loaded(int status, json_t *user, void *arg)
{
    domain_call *c = arg;
    if (status) {
        json_decref(user);
        call_fail(c, status == CHAT_ENOTFOUND ? CHAT_EUNAUTHORIZED : status,
                  status == CHAT_ENOTFOUND ? "this account no longer exists" : NULL);
        return;
    }
    call_done(c, json_pack("{s:o}", "user", public_user(user, 1)));
    json_decref(user);
}

void chat__rest_me(chat_http_req *req, const char *user_id)
{
    domain_call *c = call_from_req(req, user_id, 200);
    if (c) {
        store_call(c, CHAT_STORE_USER_GET, json_pack("{s:s}", "id", user_id), me_loaded);
    }
}

static void rooms_loaded(int status, json_t *rooms, void *arg)
{
    domain_call *c = arg;
    if (status) {
        json_decref(rooms);
        call_fail(c, status, NULL);
        return;
    }
    call_done(c, json_pack("{s:o}", "rooms", rooms));
}

void chat__rest_rooms_list(chat_http_req *req, const char *user_id)
{
    domain_call *c = call_from_req(req, user_id, 200);
    if (c) {
        store_call(c, CHAT_STORE_ROOMS_FOR_USER, json_pack("{s:s}", "userId", user_id),
                   rooms_loaded);
    }
}

void chat__rest_rooms_create(chat_http_req *req, const char *user_id)
{
    json_t *body = body_object(req);
    if (!body) {
        return;
    }
    domain_call *c = call_from_req(req, user_id, 201);
    if (c) {
        room_create(c, body);
    }
    json_decref(body);
}

static void page_loaded(int status, json_t *page, void *arg)
{
    domain_call *c = arg;
    if (status) {
        json_decref(page);
        call_fail(c, status,
                  status == CHAT_ENOTFOUND ? "before is not a message of this room" : NULL);
        return;
    }
    call_done(c, page);
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

static int requested_limit(domain_call *c)
{
    return (int)json_integer_value(json_object_get(c->input, "limit"));
}

static void recent_loaded(int status, json_t *page, void *arg)
{
    domain_call *c = arg;
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
    call_done(c, slice_page(page, requested_limit(c)));
    json_decref(page);
}

static void recent_cached(int status, const char *value, int64_t number, void *arg)
{
    domain_call *c = arg;
    (void)number;
    json_t *copy = !status && value ? json_loads(value, 0, NULL) : NULL;
    const char *version = json_string_value(json_object_get(copy, "version"));
    if (version && strcmp(version, c->event) == 0) {
        call_done(c, slice_page(json_object_get(copy, "page"), requested_limit(c)));
        json_decref(copy);
        return;
    }
    json_decref(copy);
    store_call(c, CHAT_STORE_MESSAGES_PAGE,
               json_pack("{s:s,s:n,s:i}", "roomId", c->room_id, "before", "limit", RECENT_N),
               recent_loaded);
}

static void recent_version(int status, const char *value, int64_t number, void *arg)
{
    domain_call *c = arg;
    (void)number;
    if (status) { /* kv down: the store answers alone */
        store_call(c, CHAT_STORE_MESSAGES_PAGE, json_incref(c->input), page_loaded);
        return;
    }
    /* c->event is free on the REST door: it holds the version for the steps after */
    snprintf(c->event, sizeof c->event, "%s", value ? value : "0");
    char key[64];
    recent_key(key, sizeof key, c->room_id, "recent");
    chat__kv_get(c->rt->kv, key, recent_cached, c);
}

static void messages_member(domain_call *c)
{
    if (json_is_null(json_object_get(c->input, "before"))) {
        char key[64];
        recent_key(key, sizeof key, c->room_id, "version");
        chat__kv_get(c->rt->kv, key, recent_version, c);
        return;
    }
    store_call(c, CHAT_STORE_MESSAGES_PAGE, json_incref(c->input), page_loaded);
}

void chat__rest_messages(chat_http_req *req, const char *user_id)
{
    char room_id[32], before[32], limit_s[16];
    const char *r = chat__http_query(req, "roomId", room_id, sizeof room_id);
    const char *b = chat__http_query(req, "before", before, sizeof before);
    const char *l = chat__http_query(req, "limit", limit_s, sizeof limit_s);
    if (!is_object_id(r)) {
        chat__http_respond_error(req, CHAT_EINVAL, "roomId must be a room id (24 hex characters)");
        return;
    }
    if (b && *b && !is_object_id(b)) {
        chat__http_respond_error(req, CHAT_EINVAL, "before must be a message id");
        return;
    }
    long limit = 50;
    if (l) {
        char *end;
        limit = strtol(l, &end, 10);
        if (end == l || *end || limit < 1 || limit > 100) {
            chat__http_respond_error(req, CHAT_EINVAL, "limit must be between 1 and 100");
            return;
        }
    }
    domain_call *c = call_from_req(req, user_id, 200);
    if (!c) {
        return;
    }
    memcpy(c->room_id, r, 25);
    c->input = json_pack("{s:s,s:o,s:i}", "roomId", r, "before",
                         b && *b ? json_string(b) : json_null(), "limit", (int)limit);
    require_member(c, messages_member);
}

void chat__rest_healthz(chat_http_req *req, const char *user_id)
{
    (void)user_id;
    chat__http_respond_json(req, 200, json_pack("{s:b}", "ok", 1));
}

/* 200 when the store, the bus and the kv all answer; else 503 naming each one that failed,
 * e.g. {"ok":false,"error":{"code":"unavailable","message":"redis bus: down"},"checks":{..}} */
static void ready_checked(int status, json_t *result, void *arg)
{
    chat_http_req *req = arg;
    chat_runtime *rt = req->rt;
    json_decref(result);
    struct {
        const char *name;
        int status;
    } checks[] = {
        {"store", status},
        {"bus", chat__bus_ready(rt->bus)},
        {"kv", chat__kv_ready(rt->kv)},
    };
    json_t *summary = json_object();
    chat_buf failed = CHAT_BUF_INIT;
    for (size_t i = 0; i < sizeof checks / sizeof checks[0]; i++) {
        json_object_set_new(summary, checks[i].name,
                            json_string(checks[i].status ? "down" : "ok"));
        if (checks[i].status) {
            chat__buf_appendf(&failed, "%s%s (%s): %s", failed.len ? "; " : "", checks[i].name,
                              i == 0 ? "store" : i == 1 ? chat__bus_backend_name(rt->bus)
                                                        : chat__kv_backend_name(rt->kv),
                              chat_strerror(checks[i].status));
        }
    }
    if (failed.len && !chat__buf_terminate(&failed)) {
        json_t *body = json_pack("{s:b,s:{s:s,s:s},s:o}", "ok", 0, "error", "code",
                                 "unavailable", "message", (const char *)failed.data, "checks",
                                 summary);
        chat__http_respond_json(req, 503, body);
    } else {
        chat__http_respond_json(req, 200, json_pack("{s:b,s:o}", "ok", 1, "checks", summary));
    }
    chat__buf_free(&failed);
    chat__http_req_unref(req);
}

void chat__rest_readyz(chat_http_req *req, const char *user_id)
{
    (void)user_id;
    chat__http_req_ref(req);
    if (chat__store_call(req->rt->store, CHAT_STORE_PING, NULL, ready_checked, req)) {
        chat__http_respond_error(req, CHAT_EUNAVAIL, "store: not accepting work");
        chat__http_req_unref(req);
    }
}

void chat__rest_metrics(chat_http_req *req, const char *user_id)
{
    (void)user_id;
    chat_runtime *rt = req->rt;
    chat_buf b = CHAT_BUF_INIT;
    int version;
    unsigned long reloads, failures, errors;
    chat__script_stats(rt->script, &version, &reloads, &failures, &errors);
    int rc = chat__buf_appendf(
        &b,
        "# HELP chatd_sessions Engine.IO sessions open on this node.\n"
        "# TYPE chatd_sessions gauge\nchatd_sessions %zu\n"
        "# HELP chatd_sessions_total Engine.IO sessions opened since start.\n"
        "# TYPE chatd_sessions_total counter\nchatd_sessions_total %llu\n"
        "# HELP chatd_users_connected Users with at least one socket on this node.\n"
        "# TYPE chatd_users_connected gauge\nchatd_users_connected %zu\n"
        "# HELP chatd_rooms_active Rooms with subscribers on this node.\n"
        "# TYPE chatd_rooms_active gauge\nchatd_rooms_active %zu\n"
        "# HELP chatd_messages_stored_total Messages stored through this node.\n"
        "# TYPE chatd_messages_stored_total counter\nchatd_messages_stored_total %llu\n"
        "# HELP chatd_frames_out_total Packets queued to clients.\n"
        "# TYPE chatd_frames_out_total counter\nchatd_frames_out_total %llu\n"
        "# HELP chatd_bad_packets_total Malformed packets that closed a session.\n"
        "# TYPE chatd_bad_packets_total counter\nchatd_bad_packets_total %llu\n"
        "# HELP chatd_store_pending Store calls queued or running.\n"
        "# TYPE chatd_store_pending gauge\nchatd_store_pending %d\n"
        "# HELP chatd_scripts_version Generation of the loaded scripts.\n"
        "# TYPE chatd_scripts_version gauge\nchatd_scripts_version %d\n"
        "# HELP chatd_scripts_reloads_total Reloads that swapped in new scripts.\n"
        "# TYPE chatd_scripts_reloads_total counter\nchatd_scripts_reloads_total %lu\n"
        "# HELP chatd_scripts_reload_failures_total Reloads refused: a file did not load.\n"
        "# TYPE chatd_scripts_reload_failures_total counter\n"
        "chatd_scripts_reload_failures_total %lu\n"
        "# HELP chatd_script_errors_total Hook calls that raised or ran out of budget.\n"
        "# TYPE chatd_script_errors_total counter\nchatd_script_errors_total %lu\n",
        rt->sessions.len, (unsigned long long)rt->stats.connections_total, rt->users.len,
        rt->rooms.len, (unsigned long long)rt->stats.messages_stored,
        (unsigned long long)rt->stats.frames_out, (unsigned long long)rt->stats.bad_packets,
        chat__store_pending(rt->store), version, reloads, failures, errors);
    rc = rc ? rc : chat__script_metrics(rt->script, &b);
    if (rc) {
        chat__http_respond_error(req, CHAT_ENOMEM, NULL);
    } else {
        chat__http_respond(req, 200, "text/plain; version=0.0.4", b.data, b.len);
    }
    chat__buf_free(&b);
}
