/* sock.c: Socket.IO v5 sockets on top of Engine.IO sessions: namespace CONNECT with token
 * authentication, binary packet reassembly, events, acks and emits. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "log.h"
#include "rt.h"

void chat__sock_ref(chat_sock *k) { k->refs++; }

void chat__sock_unref(chat_sock *k)
{
    if (k && --k->refs == 0) {
        chat__vec_free(&k->rooms);
        free(k);
    }
}

/* Encodes one Socket.IO packet as an Engine.IO message and queues it. */
static void send_packet(chat_session *s, int type, int64_t ack_id, const json_t *data)
{
    chat_buf *b = &chat__session_rt(s)->scratch;
    chat__buf_reset(b);
    if (chat__buf_appendc(b, '4') || chat__sio_encode(b, type, "/", ack_id, data, 0)) {
        return;
    }
    chat_frame *f = chat__frame_new(b->data, b->len, 0);
    chat__session_send(s, f);
    chat__frame_unref(f);
}

static void send_connect_error(chat_session *s, const char *nsp, const char *message)
{
    chat_buf *b = &chat__session_rt(s)->scratch;
    json_t *data = json_pack("{s:s}", "message", message);
    chat__buf_reset(b);
    if (data && !chat__buf_appendc(b, '4') &&
        !chat__sio_encode(b, SIO_CONNECT_ERROR, nsp, -1, data, 0)) {
        chat_frame *f = chat__frame_new(b->data, b->len, 0);
        chat__session_send(s, f);
        chat__frame_unref(f);
    }
    json_decref(data);
}

void chat__sock_emit(chat_sock *k, const char *event, json_t *arg)
{
    if (!k->session) {
        return;
    }
    json_t *args = json_pack("[sO]", event, arg);
    if (args) {
        send_packet(k->session, SIO_EVENT, -1, args);
        json_decref(args);
    }
}

void chat__sock_ack(chat_sock *k, int64_t ack_id, json_t *arg)
{
    if (!k->session || ack_id < 0) {
        return;
    }
    json_t *args = json_pack("[O]", arg);
    if (args) {
        send_packet(k->session, SIO_ACK, ack_id, args);
        json_decref(args);
    }
}

void chat__sock_fail(chat_sock *k, const char *event, int64_t ack_id, int err,
                     const char *message)
{
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

/* Called by the domain when the socket's rooms are loaded: answer CONNECT. */
void chat__sock_connected(chat_sock *k)
{
    if (!k->session) {
        return;
    }
    k->connected = 1;
    json_t *data = json_pack("{s:s}", "sid", k->id);
    send_packet(k->session, SIO_CONNECT, -1, data);
    json_decref(data);
}

static void detach_sock(chat_session *s);

void chat__sock_refuse(chat_sock *k, const char *message)
{
    chat_session *s = k->session;
    if (!s) {
        return;
    }
    send_connect_error(s, "/", message);
    detach_sock(s);
}

static void make_socket_id(char out[24])
{
    static const char abc[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    uint8_t r[20];
    uv_random(NULL, NULL, r, sizeof r, 0, NULL);
    for (int i = 0; i < 20; i++) {
        out[i] = abc[r[i] & 63];
    }
    out[20] = '\0';
}

static int on_connect(chat_session *s, sio_packet *p)
{
    chat_sio_state *st = chat__session_sio(s);
    if (strcmp(p->nsp, "/") != 0) {
        send_connect_error(s, p->nsp, "Invalid namespace");
        return 0;
    }
    if (st->sock) {
        return -1; /* CONNECT twice on one namespace is a broken client */
    }
    json_t *token = p->data ? json_object_get(p->data, "token") : NULL;
    char user_id[25];
    uv_timeval64_t tv;
    uv_gettimeofday(&tv);
    if (!json_is_string(token) ||
        chat__jwt_verify(chat__session_rt(s)->jwt_secret, json_string_value(token), tv.tv_sec, user_id)) {
        send_connect_error(s, "/", "unauthorized");
        return 0;
    }
    chat_sock *k = calloc(1, sizeof *k);
    if (!k) {
        return -1;
    }
    k->rt = chat__session_rt(s);
    k->session = s;
    k->refs = 1; /* the session's */
    make_socket_id(k->id);
    st->sock = k;
    chat__domain_connect(k, user_id);
    return 0;
}

static void detach_sock(chat_session *s)
{
    chat_sio_state *st = chat__session_sio(s);
    chat_sock *k = st->sock;
    if (!k) {
        return;
    }
    st->sock = NULL;
    chat__domain_disconnect(k);
    k->session = NULL;
    chat__sock_unref(k);
}

static void clear_pending(chat_sio_state *st)
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
    chat_sio_state *st = chat__session_sio(s);
    switch (p->type) {
    case SIO_CONNECT:
        return on_connect(s, p);
    case SIO_DISCONNECT:
        if (strcmp(p->nsp, "/") == 0) {
            detach_sock(s);
        }
        return 0;
    case SIO_EVENT:
    case SIO_BINARY_EVENT: {
        chat_sock *k = st->sock;
        if (!k || !k->connected || strcmp(p->nsp, "/") != 0) {
            return 0; /* not connected to that namespace: Socket.IO drops it */
        }
        const char *name = json_string_value(json_array_get(p->data, 0));
        chat__sock_ref(k);
        chat__domain_event(k, name, p->data, p->ack_id);
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

int chat__sock_on_message(chat_session *s, const uint8_t *data, size_t len, int binary)
{
    chat_sio_state *st = chat__session_sio(s);
    if (binary) {
        if (st->att_have >= st->pending.nattachments) {
            return -1; /* an attachment nobody announced */
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

void chat__sock_session_closed(chat_session *s, const char *reason)
{
    chat_sio_state *st = chat__session_sio(s);
    (void)reason;
    detach_sock(s);
    clear_pending(st);
}
