/* sock.c: Socket.IO v5 sockets on top of Engine.IO sessions: namespace CONNECT (who may
 * connect is the domain's decision), binary packet reassembly, events, acks and emits with
 * any number of arguments. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eio.h"
#include "frame.h"
#include "json_out.h"
#include "log.h"
#include "rt.h"
#include "session.h"
#include "sock.h"
#include "stats.h"

/* The Socket.IO state of one Engine.IO session, kept in the session for this layer. */
#define SIO_MAX_ATTACHMENTS 16
#define SIO_MAX_NAMESPACES 8
typedef struct sio_state {
    chat_sock *socks[SIO_MAX_NAMESPACES]; /* one per connected namespace */
    sio_packet pending;                   /* a binary packet waiting for its attachments */
    chat_buf att[SIO_MAX_ATTACHMENTS];
    size_t att_have;
} sio_state;

/* NULL on out-of-memory: made on the session's first message, freed when it closes. */
static sio_state *session_state(chat_session *s)
{
    sio_state *st = chat__session_upper(s);
    if (!st && (st = calloc(1, sizeof *st))) {
        chat__session_set_upper(s, st);
    }
    return st;
}

static const chat_sock_handler *upper(chat_runtime *rt) { return rt->sock_handler; }

void chat__sock_ref(chat_sock *k) { k->refs++; }

void chat__sock_unref(chat_sock *k)
{
    if (k && --k->refs == 0) {
        chat__vec_free(&k->rooms);
        free(k);
    }
}

/* Encodes one Socket.IO packet as an Engine.IO message and queues it. */
static void send_packet(chat_session *s, int type, const char *nsp, int64_t ack_id,
                        const json_t *data)
{
    chat_buf *b = &chat__session_rt(s)->scratch;
    chat__buf_reset(b);
    if (chat__buf_appendc(b, '4') || chat__sio_encode(b, type, nsp, ack_id, data, 0)) {
        return;
    }
    chat_frame *f = chat__frame_new(b->data, b->len, 0);
    chat__session_send(s, f);
    chat__frame_unref(f);
}

/* CONNECT_ERROR {message[, data]}: what socket.io-client hands to connect_error as
 * err.message and err.data. data borrowed, may be NULL. */
static void send_connect_error(chat_session *s, const char *nsp, const char *message,
                               json_t *data)
{
    json_t *body = json_pack("{s:s,s:O*}", "message", message, "data", data);
    if (body) {
        send_packet(s, SIO_CONNECT_ERROR, nsp, -1, body);
    }
    json_decref(body);
}

/* 1 when name needs no JSON escaping (event names are identifiers like "message:ack"). */
static int plain_name(const char *name)
{
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
        if (*p < 0x20 || *p >= 0x7f || *p == '"' || *p == '\\') {
            return 0;
        }
    }
    return 1;
}

/* The packet of [event, arg] (event NULL: [arg]), written straight into the frame: the
 * array around arg is never built as a jansson value (two allocations and frees per ack). */
static void send_arg(chat_session *s, int type, const char *nsp, int64_t ack_id,
                     const char *event, const json_t *arg)
{
    chat_buf *b = &chat__session_rt(s)->scratch;
    chat__buf_reset(b);
    if (!arg || chat__buf_appendc(b, '4') || chat__sio_encode(b, type, nsp, ack_id, NULL, 0) ||
        chat__buf_appendc(b, '[')) {
        return;
    }
    if (event && (chat__buf_appendc(b, '"') || chat__buf_append(b, event, strlen(event)) ||
                  chat__buf_append(b, "\",", 2))) {
        return;
    }
    if (chat__json_append(b, arg) || chat__buf_appendc(b, ']')) {
        return;
    }
    chat_frame *f = chat__frame_new(b->data, b->len, 0);
    chat__session_send(s, f);
    chat__frame_unref(f);
}

void chat__sock_emit(chat_sock *k, const char *event, json_t *arg)
{
    if (!k->session) {
        return;
    }
    if (event && plain_name(event)) {
        send_arg(k->session, SIO_EVENT, k->nsp, -1, event, arg);
        return;
    }
    json_t *args = json_pack("[sO]", event, arg);
    if (args) {
        send_packet(k->session, SIO_EVENT, k->nsp, -1, args);
        json_decref(args);
    }
}

void chat__sock_ack(chat_sock *k, int64_t ack_id, json_t *arg)
{
    if (!k->session || ack_id < 0) {
        return;
    }
    send_arg(k->session, SIO_ACK, k->nsp, ack_id, NULL, arg);
}

void chat__sock_fail(chat_sock *k, const char *event, int64_t ack_id, int err,
                     const char *message)
{
    chat__stats_error(k->rt, err);
    json_t *error = json_pack("{s:s,s:s}", "code", chat_errcode(err), "message",
                              message ? message : chat_strerror(err));
    if (!error) {
        return;
    }
    if (ack_id >= 0) {
        json_t *answer = json_pack("{s:b,s:O}", "ok", 0, "error", error);
        chat__sock_ack(k, ack_id, answer);
        json_decref(answer);
    } else {
        json_t *note = json_pack("{s:s,s:O}", "event", event, "error", error);
        chat__sock_emit(k, "error", note);
        json_decref(note);
    }
    json_decref(error);
}

/* Replaces every {"$binary": base64} in v by a placeholder and appends its bytes to att. */
static json_t *extract_binary(const json_t *v, json_t *att)
{
    if (json_is_object(v) && json_object_size(v) == 1 &&
        json_is_string(json_object_get(v, "$binary"))) {
        json_array_append(att, json_object_get(v, "$binary"));
        return json_pack("{s:b,s:I}", "_placeholder", 1, "num",
                         (json_int_t)json_array_size(att) - 1);
    }
    if (json_is_array(v)) {
        json_t *out = json_array();
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x) {
            json_array_append_new(out, extract_binary(x, att));
        }
        return out;
    }
    if (json_is_object(v)) {
        json_t *out = json_object();
        const char *k;
        json_t *x;
        json_object_foreach((json_t *)v, k, x) {
            json_object_set_new(out, k, extract_binary(x, att));
        }
        return out;
    }
    return json_incref((json_t *)v);
}

/* Sends args (an EVENT's [name, ...] or an ACK's [...]) with its {"$binary"} values as
 * attachments: the binary type, the placeholders' text, then one binary message each, all
 * queued together so nothing can come between them. Without binary values, the text type. */
static void send_args(chat_sock *k, int type, int binary_type, int64_t ack_id, json_t *args)
{
    chat_session *s = k->session;
    json_t *att = json_array();
    json_t *data = att ? extract_binary(args, att) : NULL;
    size_t n = json_array_size(att), nframes = 0;
    chat_frame **frames = calloc(n + 1, sizeof *frames);
    chat_buf b = CHAT_BUF_INIT;
    if (!s || !data || !frames || n > SIO_ATTACHMENTS_MAX || chat__buf_appendc(&b, '4') ||
        chat__sio_encode(&b, n ? binary_type : type, k->nsp, ack_id, data, n) ||
        !(frames[nframes++] = chat__frame_new(b.data, b.len, 0))) {
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *b64 = json_array_get(att, i);
        long len;
        chat__buf_reset(&b);
        if (chat__buf_append(&b, json_string_value(b64), json_string_length(b64)) ||
            (len = chat__base64_decode_inplace(b.data, b.len)) < 0 ||
            !(frames[nframes++] = chat__frame_new(b.data, (size_t)len, 1))) {
            goto done; /* the whole packet or nothing: half of one would break the stream */
        }
    }
    for (size_t i = 0; i < nframes; i++) {
        chat__session_send(s, frames[i]);
    }
done:
    for (size_t i = 0; frames && i < nframes; i++) {
        chat__frame_unref(frames[i]);
    }
    free(frames);
    chat__buf_free(&b);
    json_decref(data);
    json_decref(att);
}

void chat__sock_emit_args(chat_sock *k, json_t *args)
{
    if (k->session && json_is_string(json_array_get(args, 0))) {
        send_args(k, SIO_EVENT, SIO_BINARY_EVENT, -1, args);
    }
}

void chat__sock_ack_args(chat_sock *k, int64_t ack_id, json_t *args)
{
    if (k->session && ack_id >= 0 && json_is_array(args)) {
        send_args(k, SIO_ACK, SIO_BINARY_ACK, ack_id, args);
    }
}

/* Gives received attachments to scripts: each placeholder becomes {"$binary": base64}. */
static json_t *inline_binary(json_t *v, sio_state *st)
{
    if (json_is_object(v) && json_is_true(json_object_get(v, "_placeholder"))) {
        json_int_t num = json_integer_value(json_object_get(v, "num"));
        chat_buf b64 = CHAT_BUF_INIT;
        json_t *out = NULL;
        if (num >= 0 && (size_t)num < st->att_have &&
            !chat__base64_encode(&b64, st->att[num].data, st->att[num].len) &&
            !chat__buf_terminate(&b64)) {
            out = json_pack("{s:s}", "$binary", (const char *)b64.data);
        }
        chat__buf_free(&b64);
        return out ? out : json_null();
    }
    if (json_is_array(v)) {
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x) {
            json_array_set_new(v, i, inline_binary(x, st));
        }
    } else if (json_is_object(v)) {
        const char *key;
        json_t *x;
        json_object_foreach(v, key, x) {
            json_object_set_new(v, key, inline_binary(x, st));
        }
    }
    return json_incref(v);
}

/* Called by the domain when the socket is ready: answer CONNECT. */
void chat__sock_connected(chat_sock *k)
{
    if (!k->session) {
        return;
    }
    k->connected = 1;
    json_t *data = json_pack("{s:s}", "sid", k->id);
    send_packet(k->session, SIO_CONNECT, k->nsp, -1, data);
    json_decref(data);
}

static chat_sock **sock_slot(sio_state *st, const char *nsp, int create)
{
    chat_sock **free_slot = NULL;
    for (int i = 0; i < SIO_MAX_NAMESPACES; i++) {
        if (st->socks[i] && strcmp(st->socks[i]->nsp, nsp) == 0) {
            return &st->socks[i];
        }
        if (!st->socks[i] && !free_slot) {
            free_slot = &st->socks[i];
        }
    }
    return create ? free_slot : NULL;
}

static void detach_sock(chat_session *s, chat_sock **slot, const char *reason)
{
    chat_sock *k = *slot;
    *slot = NULL;
    chat__map_del(&k->rt->socks, k->id);
    upper(k->rt)->on_disconnect(k, reason);
    k->session = NULL;
    chat__sock_unref(k);
}

void chat__sock_disconnect(chat_sock *k, const char *reason)
{
    chat_session *s = k->session;
    if (!s) {
        return;
    }
    sio_state *st = chat__session_upper(s);
    chat_sock **slot = st ? sock_slot(st, k->nsp, 0) : NULL;
    send_packet(s, SIO_DISCONNECT, k->nsp, -1, NULL);
    if (slot && *slot == k) {
        detach_sock(s, slot, reason);
    }
}

void chat__sock_refuse(chat_sock *k, const char *message, json_t *data)
{
    chat_session *s = k->session;
    if (!s) {
        return;
    }
    sio_state *st = chat__session_upper(s);
    chat_sock **slot = st ? sock_slot(st, k->nsp, 0) : NULL;
    send_connect_error(s, k->nsp, message, data);
    if (slot) {
        detach_sock(s, slot, "refused");
    }
}

/* A CONNECT: the socket is made and the domain decides (authentication is its policy, the
 * scripts' or the built-in token check); it answers with chat__sock_connected or
 * chat__sock_refuse. */
static int on_connect(chat_session *s, sio_packet *p)
{
    chat_runtime *rt = chat__session_rt(s);
    sio_state *st = chat__session_upper(s);
    if (strcmp(p->nsp, "/") != 0 && !upper(rt)->namespace_open(rt, p->nsp)) {
        send_connect_error(s, p->nsp, "Invalid namespace", NULL);
        return 0;
    }
    if (sock_slot(st, p->nsp, 0)) {
        return -1; /* CONNECT twice on one namespace is a broken client */
    }
    chat_sock **slot = sock_slot(st, p->nsp, 1);
    if (!slot) {
        send_connect_error(s, p->nsp, "too many namespaces on one connection", NULL);
        return 0;
    }
    chat_sock *k = calloc(1, sizeof *k);
    json_t *auth = p->data ? json_incref(p->data) : json_object();
    if (!k || !auth) {
        free(k);
        json_decref(auth);
        return -1;
    }
    k->rt = rt;
    k->session = s;
    k->refs = 1; /* the session's */
    snprintf(k->nsp, sizeof k->nsp, "%s", p->nsp);
    do {
        chat__random_id(k->id);
    } while (chat__map_get(&rt->socks, k->id));
    if (chat__map_put(&rt->socks, k->id, k)) {
        free(k);
        json_decref(auth);
        return -1;
    }
    *slot = k;
    upper(rt)->on_connect(k, auth); /* the handshake's auth object, whole */
    return 0;
}

static void clear_pending(sio_state *st)
{
    chat__sio_packet_clear(&st->pending);
    for (size_t i = 0; i < SIO_MAX_ATTACHMENTS; i++) {
        chat__buf_free(&st->att[i]);
    }
    st->att_have = 0;
    memset(&st->pending, 0, sizeof st->pending);
}

static int dispatch(chat_session *s, sio_packet *p)
{
    sio_state *st = chat__session_upper(s);
    switch (p->type) {
    case SIO_CONNECT:
        return on_connect(s, p);
    case SIO_DISCONNECT: {
        chat_sock **slot = sock_slot(st, p->nsp, 0);
        if (slot) {
            detach_sock(s, slot, "client namespace disconnect");
        }
        return 0;
    }
    case SIO_EVENT:
    case SIO_BINARY_EVENT: {
        chat_sock **slot = sock_slot(st, p->nsp, 0);
        chat_sock *k = slot ? *slot : NULL;
        if (!k || !k->connected) {
            return 0; /* not connected to that namespace: Socket.IO drops it */
        }
        const char *name = json_string_value(json_array_get(p->data, 0));
        if (p->type == SIO_BINARY_EVENT) {
            json_decref(inline_binary(p->data, st)); /* handlers get the bytes themselves */
        }
        chat__sock_ref(k);
        upper(k->rt)->on_event(k, name, p->data, p->ack_id);
        chat__sock_unref(k);
        return 0;
    }
    case SIO_ACK:
    case SIO_BINARY_ACK:
        return 0; /* the server asks clients for no acks (yet) */
    default:
        return -1; /* CONNECT_ERROR comes only from servers */
    }
}

static int on_message(chat_session *s, const uint8_t *data, size_t len, int binary)
{
    sio_state *st = session_state(s);
    if (!st) {
        return -1;
    }
    if (binary) {
        if (st->att_have >= st->pending.nattachments) {
            return -1; /* an attachment nobody announced */
        }
        /* one packet's binaries together are one payload: maxPayload bounds their sum, not
         * each (16 of them would hold 16 x maxPayload per session) */
        size_t held = len;
        for (size_t i = 0; i < st->att_have; i++) {
            held += st->att[i].len;
        }
        if (held > (size_t)chat__session_rt(s)->cfg.max_payload) {
            return -1;
        }
        if (chat__buf_append(&st->att[st->att_have], data, len)) {
            return -1;
        }
        if (++st->att_have < st->pending.nattachments) {
            return 0;
        }
        int rc = dispatch(s, &st->pending);
        clear_pending(st);
        return rc;
    }
    if (st->att_have < st->pending.nattachments) {
        return -1; /* text while attachments are owed */
    }
    sio_packet p;
    if (chat__sio_decode((const char *)data, len, &p)) {
        return -1;
    }
    if (p.nattachments) {
        if (p.nattachments > SIO_MAX_ATTACHMENTS) {
            chat__sio_packet_clear(&p);
            return -1;
        }
        st->pending = p;
        st->att_have = 0;
        return 0;
    }
    int rc = dispatch(s, &p);
    chat__sio_packet_clear(&p);
    return rc;
}

static void on_close(chat_session *s, const char *reason)
{
    sio_state *st = chat__session_upper(s);
    if (!st) {
        return;
    }
    for (int i = 0; i < SIO_MAX_NAMESPACES; i++) {
        if (st->socks[i]) {
            detach_sock(s, &st->socks[i], reason);
        }
    }
    clear_pending(st);
    chat__session_set_upper(s, NULL);
    free(st);
}

/* Frames the domain encoded once for many sockets (room fan-out). Adds its own reference. */
void chat__sock_send_frame(chat_sock *k, chat_frame *f)
{
    if (k->session && f) {
        chat__session_send(k->session, f);
    }
}

const char *chat__sock_peer(chat_sock *k)
{
    return k->session ? chat__session_peer(k->session) : "";
}

static int any_connected(chat_session *s)
{
    sio_state *st = chat__session_upper(s);
    for (int i = 0; st && i < SIO_MAX_NAMESPACES; i++) {
        if (st->socks[i] && st->socks[i]->connected) {
            return 1;
        }
    }
    return 0;
}

static const chat_session_handler session_handler = {
    .on_message = on_message,
    .on_close = on_close,
    .connected = any_connected,
};

int chat__sock_start(chat_runtime *rt, const chat_sock_handler *h)
{
    rt->sock_handler = h;
    return chat__session_start(rt, &session_handler);
}
