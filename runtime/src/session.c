/* session.c: Engine.IO v4 sessions: handshake, the polling and websocket transports, the
 * upgrade from one to the other, heartbeats and the outgoing queue. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "eio.h"
#include "bounds.h"
#include "frame.h"
#include "http.h"
#include "log.h"
#include "rt.h"
#include "session.h"

enum { TRANSPORT_POLLING, TRANSPORT_WEBSOCKET };

/* A client that reads nothing while this many packets pile up is cut off, so one slow
 * reader cannot make the server hold unbounded memory. The byte bound
 * (session_queue_max_bytes) is the one that matters; this one bounds the ring's size. */
#define SESSION_QUEUE_MAX 100000

struct chat_session {
    chat_runtime *rt;
    const chat_session_handler *h; /* the layer above, from the endpoint it was opened at */
    char sid[CHAT_SID_MAX];
    int refs;
    int closed;
    int transport;
    int awaiting_pong;
    int overflow; /* the client fell too far behind: close it */
    int upgrading; /* probe answered: polls are released at once so the client can pause */
    int client_closed; /* the client sent the close packet */
    int unconnected; /* no namespace connected yet: counted by bounds.c, connect timer runs */
    int handles;     /* uv handles still to close before the session is freed */
    int draining;  /* graceful stop: polls take the queue, then one gets the close */
    int dirty;         /* on the runtime's flush list (websocket frames to write) */
    chat_http_req *poll;  /* GET held open until there is something to send */
    chat_ws_conn *ws;     /* the websocket transport, once in use */
    chat_ws_conn *probe;  /* a websocket upgrading this polling session */
    chat_frame **q;       /* ring of outgoing packets */
    uint32_t qhead, qlen, qcap;
    size_t qbytes;        /* payload bytes in q: a shared broadcast frame counts in each */
    uv_timer_t timer;
    uv_timer_t connect_timer; /* connect_timeout_ms */
    uv_timer_t watch; /* while a poll is held: has its client gone away? (poll_watch_cb) */
    char peer[64];
    void *upper; /* the socket layer's state for this session (chat__session_set_upper) */
    uint64_t opened;  /* uv_now at open: the close line's duration */
    char user_id[25]; /* the user a socket authenticated as, for the close line */
};

void chat__session_set_user(chat_session *s, const char *user_id)
{
    snprintf(s->user_id, sizeof s->user_id, "%s", user_id);
}

/* The session as the log names it: the sid's node and first random characters. The whole sid
 * is not logged: it is what a polling client presents, so it works as a credential. */
static void log_conn(const chat_session *s, char out[24])
{
    snprintf(out, 24, "%.*s", (int)(strcspn(s->sid, ".") + 9), s->sid);
}

static const char *transport_name(int transport)
{
    return transport == TRANSPORT_WEBSOCKET ? "websocket" : "polling";
}

void *chat__session_upper(chat_session *s) { return s->upper; }
void chat__session_set_upper(chat_session *s, void *upper) { s->upper = upper; }
chat_runtime *chat__session_rt(chat_session *s) { return s->rt; }
const char *chat__session_sid(chat_session *s) { return s->sid; }

/* Engine.IO's error answers over HTTP: 400 {"code":N,"message":"..."} */
enum {
    EIO_ERR_TRANSPORT = 0,
    EIO_ERR_SID = 1,
    EIO_ERR_METHOD = 2,
    EIO_ERR_BAD = 3,
    EIO_ERR_VERSION = 5,
};
static const char *const eio_err_msg[] = {
    [EIO_ERR_TRANSPORT] = "Transport unknown",
    [EIO_ERR_SID] = "Session ID unknown",
    [EIO_ERR_METHOD] = "Bad handshake method",
    [EIO_ERR_BAD] = "Bad request",
    [EIO_ERR_VERSION] = "Unsupported protocol version",
};

static void eio_error(chat_http_req *req, int code)
{
    json_t *body = json_pack("{s:i,s:s}", "code", code, "message", eio_err_msg[code]);
    chat__http_respond_json(req, 400, body);
}

/* ---- lifetime ---- */

static void session_freed(uv_handle_t *h)
{
    chat_session *s = h->data;
    if (--s->handles == 0) {
        free(s);
    }
}

static void session_unref(chat_session *s)
{
    if (--s->refs > 0) {
        return;
    }
    while (s->qlen) {
        chat__frame_unref(s->q[s->qhead]);
        s->qhead = (s->qhead + 1) % s->qcap;
        s->qlen--;
    }
    free(s->q);
    uv_close((uv_handle_t *)&s->timer, session_freed);
    uv_close((uv_handle_t *)&s->connect_timer, session_freed);
    uv_close((uv_handle_t *)&s->watch, session_freed);
}

static chat_frame *queue_pop(chat_session *s)
{
    chat_frame *f = s->q[s->qhead];
    s->qhead = (s->qhead + 1) % s->qcap;
    s->qlen--;
    s->qbytes -= f->len;
    return f;
}

static int queue_push(chat_session *s, chat_frame *f)
{
    if (s->qlen == s->qcap) {
        uint32_t cap = s->qcap ? s->qcap * 2 : 8;
        chat_frame **q = malloc(cap * sizeof *q);
        if (!q) {
            return CHAT_ENOMEM;
        }
        for (uint32_t i = 0; i < s->qlen; i++) {
            q[i] = s->q[(s->qhead + i) % s->qcap];
        }
        free(s->q);
        s->q = q;
        s->qhead = 0;
        s->qcap = cap;
    }
    s->q[(s->qhead + s->qlen) % s->qcap] = chat__frame_ref(f);
    s->qlen++;
    s->qbytes += f->len;
    return 0;
}

static void heartbeat_cb(uv_timer_t *t);
static void poll_watch_cb(uv_timer_t *t);
static int poll_client_gone(chat_http_req *req);
static void poll_gone(chat_http_req *req);

/* ---- sockets connected: the end of the connect timeout ---- */

static int any_namespace(chat_session *s)
{
    return s->h->connected(s);
}

static void connect_done(chat_session *s)
{
    if (s->unconnected) {
        s->unconnected = 0;
        uv_timer_stop(&s->connect_timer);
        chat__limits_session_done(s->rt, s->peer);
    }
}

/* Socket.IO's connectTimeout: a session that has connected no namespace in time is closed,
 * so sessions that never send CONNECT cannot pile up until the ping timeout. */
static void connect_timeout_cb(uv_timer_t *t)
{
    chat_session *s = t->data;
    if (!s->unconnected) {
        return;
    }
    if (any_namespace(s)) {
        /* connected, but the CONNECT answer never went through chat__session_send (its
         * frame failed to allocate): stop counting it as waiting to connect */
        connect_done(s);
        return;
    }
    if (s->rt->limits) {
        s->rt->limits->connect_timeouts++;
    }
    chat__session_close(s, "connect timeout");
}

/* ---- sending ----
 *
 * Websocket sessions are written the way Redis answers its clients
 * (handleClientsWithPendingWrites): a session given a frame goes on the runtime's flush
 * list, and before the loop next waits (uv_check after the I/O callbacks, uv_prepare after
 * the timers) each listed session writes everything it has queued with one lws_write of
 * pre-framed bytes (LWS_WRITE_RAW: lws sends them as they are, ops-ws.c:1625-1629 and
 * 1909-1910 in lws 4.1.6), so the ack, message:ack and the broadcasts a socket got in one
 * pass leave in one send(). Nothing arms POLLOUT unless the kernel takes less than was
 * written: lws keeps the rest itself (output.c:204-231), arms POLLOUT, drains it first on
 * writability, then calls SERVER_WRITEABLE, where the session goes on. While lws holds such
 * a rest (lws_partial_buffered), chatd writes nothing more, so lws holds at most one batch
 * per socket and the session's own queue (bounded) is what a slow reader fills.
 * The old way cost four epoll_ctl per delivered frame (the libuv backend re-arms POLLOUT with
 * uv_poll_start), and one send() each (measured: BENCHMARKS.md "Issue 12"). */

#define WS_BATCH_MAX 65536 /* bytes per lws_write; net.c's tx_packet_size lets one send() take it */

struct chat_session_flush {
    uv_check_t check;
    uv_prepare_t prepare;
    int closing;            /* 2 handles to close before the struct is freed */
    chat_session **list;    /* each holds a session reference */
    size_t len, cap;
    chat_buf batch;         /* several frames copied together for one write */
    uint64_t writes, batched, partial; /* /metrics */
};

static void ws_flush(chat_session *s);
static void ws_close_conn(chat_ws_conn *c, int status);

static void flush_list(struct chat_session_flush *fl)
{
    /* a flush may queue more (never to a listed session: they are written first) */
    for (size_t i = 0; i < fl->len; i++) {
        chat_session *s = fl->list[i];
        s->dirty = 0;
        ws_flush(s);
        session_unref(s);
    }
    fl->len = 0;
}

static void flush_check_cb(uv_check_t *h) { flush_list(h->data); }
static void flush_prepare_cb(uv_prepare_t *h) { flush_list(h->data); }

static struct chat_session_flush *flush_of(chat_runtime *rt)
{
    if (rt->session_flush || rt->stopping || !rt->lws) {
        return rt->session_flush;
    }
    struct chat_session_flush *fl = calloc(1, sizeof *fl);
    if (!fl) {
        return NULL;
    }
    uv_check_init(rt->loop, &fl->check);
    uv_prepare_init(rt->loop, &fl->prepare);
    fl->check.data = fl->prepare.data = fl;
    uv_check_start(&fl->check, flush_check_cb);
    uv_prepare_start(&fl->prepare, flush_prepare_cb);
    /* they never keep the loop running by themselves */
    uv_unref((uv_handle_t *)&fl->check);
    uv_unref((uv_handle_t *)&fl->prepare);
    rt->session_flush = fl;
    return fl;
}

static void flush_handle_closed(uv_handle_t *h)
{
    struct chat_session_flush *fl = h->data;
    if (--fl->closing == 0) {
        chat__buf_free(&fl->batch);
        free(fl->list);
        free(fl);
    }
}

void chat__session_flush_stop(chat_runtime *rt)
{
    struct chat_session_flush *fl = rt->session_flush;
    if (!fl) {
        return;
    }
    flush_list(fl); /* what was queued this pass still goes out, as it did before */
    rt->session_flush = NULL;
    fl->closing = 2;
    uv_close((uv_handle_t *)&fl->check, flush_handle_closed);
    uv_close((uv_handle_t *)&fl->prepare, flush_handle_closed);
}

void chat__session_flush_stats(chat_runtime *rt, uint64_t *writes, uint64_t *batched,
                               uint64_t *partial)
{
    struct chat_session_flush *fl = rt->session_flush;
    *writes = fl ? fl->writes : 0;
    *batched = fl ? fl->batched : 0;
    *partial = fl ? fl->partial : 0;
}

/* Writes the session's queue to its websocket: whole frames, at most WS_BATCH_MAX bytes per
 * write, until the queue is empty or lws holds part of a write. */
static void ws_flush(chat_session *s)
{
    chat_ws_conn *c = s->ws;
    struct chat_session_flush *fl = s->rt->session_flush;
    /* a session the graceful stop ended still writes its queue: the close packet is last */
    if ((s->closed && !(c && c->close_drained)) || s->transport != TRANSPORT_WEBSOCKET || !c ||
        c->closing || c->peer_closed || c->probe_reply || !fl) {
        return;
    }
    while (s->qlen && !lws_partial_buffered(c->wsi)) {
        int n;
        if (s->qlen == 1 || s->q[s->qhead]->hl + s->q[s->qhead]->len >= WS_BATCH_MAX) {
            chat_frame *f = queue_pop(s);
            n = lws_write(c->wsi, chat__frame_wire(f), f->hl + f->len, LWS_WRITE_RAW);
            chat__frame_unref(f);
        } else {
            chat_buf *b = &fl->batch;
            chat__buf_reset(b);
            while (s->qlen) {
                chat_frame *f = s->q[s->qhead];
                if (b->len && b->len + f->hl + f->len > WS_BATCH_MAX) {
                    break;
                }
                if (chat__buf_append(b, chat__frame_wire(f), f->hl + f->len)) {
                    break; /* out of memory: write what is there, the rest next time */
                }
                chat__frame_unref(queue_pop(s));
            }
            if (!b->len) {
                ws_close_conn(c, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION);
                return;
            }
            fl->batched++;
            n = lws_write(c->wsi, b->data, b->len, LWS_WRITE_RAW);
            if (b->cap > 4 * WS_BATCH_MAX) {
                chat__buf_free(b);
            }
        }
        fl->writes++;
        if (n < 0) { /* the connection failed */
            ws_close_conn(c, LWS_CLOSE_STATUS_ABNORMAL_CLOSE);
            return;
        }
        if (lws_partial_buffered(c->wsi)) {
            fl->partial++;
        }
    }
}

static void kick(chat_session *s)
{
    if (s->transport == TRANSPORT_WEBSOCKET) {
        struct chat_session_flush *fl;
        if (!s->ws || s->dirty) {
            return;
        }
        if (!(fl = flush_of(s->rt))) {
            lws_callback_on_writable(s->ws->wsi); /* stopping, or out of memory: the old way */
            return;
        }
        if (fl->len == fl->cap) {
            size_t cap = fl->cap ? fl->cap * 2 : 256;
            chat_session **l = realloc(fl->list, cap * sizeof *l);
            if (!l) {
                lws_callback_on_writable(s->ws->wsi);
                return;
            }
            fl->list = l;
            fl->cap = cap;
        }
        s->dirty = 1;
        s->refs++;
        fl->list[fl->len++] = s;
    } else if (s->poll && s->poll->wsi) {
        /* lws serves no writeable callback to a connection under flow control */
        lws_rx_flow_control(s->poll->wsi, 1);
        lws_callback_on_writable(s->poll->wsi);
    }
}

void chat__session_send(chat_session *s, chat_frame *f)
{
    if (!f || s->closed || s->overflow) {
        return;
    }
    if (s->unconnected && any_namespace(s)) {
        connect_done(s); /* this is the CONNECT answer going out */
    }
    /* Never closes here: callers may be walking a room's sockets. An overflowing session
     * is closed from its own transport callback or heartbeat. One packet always fits in an
     * empty queue (the open packet, a pong as large as maxPayload). */
    if (s->qlen >= SESSION_QUEUE_MAX ||
        (s->qlen && s->qbytes + f->len > (size_t)s->rt->cfg.session_queue_max_bytes) ||
        queue_push(s, f)) {
        s->overflow = 1;
        if (s->rt->limits) {
            s->rt->limits->slow_clients++;
        }
        chat__log(CHAT_LOG_WARN, "slow_client",
                  "closing a client that stopped reading its messages",
                  json_pack("{s:s,s:s}", "sid", s->sid, "peer", s->peer));
        uv_timer_start(&s->timer, heartbeat_cb, 0, 0);
        return;
    }
    s->rt->stats.frames_out++;
    kick(s);
}

/* A held poll. lws 4.1 does not read a connection while its request is unanswered, yet
 * keeps polling it for input: a client that went away made the loop spin on its readable
 * socket, and the session lived on until its ping timed out. So lws stops watching input
 * while a poll is held (flow control, lifted for the answer: kick), and poll_watch_cb
 * looks, once a second, whether the client closed its end: Engine.IO ends a session whose
 * poll was cut short. */
#define POLL_WATCH_MS 1000

static void poll_hold(chat_session *s, chat_http_req *req)
{
    s->poll = req;
    req->poll_session = s;
    chat__http_req_ref(req);
    s->refs++;
    if (req->wsi) {
        lws_set_timeout(req->wsi, NO_PENDING_TIMEOUT, 0);
        lws_rx_flow_control(req->wsi, 0);
        uv_timer_start(&s->watch, poll_watch_cb, POLL_WATCH_MS, POLL_WATCH_MS);
    }
}

/* The poll is answered (or gone): lws reads the connection again for its next request. */
static void poll_unhold(chat_session *s, chat_http_req *req)
{
    s->poll = NULL;
    req->poll_session = NULL;
    if (s->draining) {
        /* the graceful stop: the close goes in the next poll, if one comes in time */
        uv_timer_start(&s->watch, poll_watch_cb, POLL_WATCH_MS, 0);
    } else {
        uv_timer_stop(&s->watch);
    }
    if (req->wsi) {
        lws_rx_flow_control(req->wsi, 1);
    }
}

static void release_poll(chat_session *s, const char *packet)
{
    chat_http_req *req = s->poll;
    if (!req) {
        return;
    }
    poll_unhold(s, req);
    chat__http_respond(req, 200, "text/plain; charset=UTF-8", packet, strlen(packet));
    chat__http_req_unref(req);
    session_unref(s);
}

void chat__eio_poll_writeable(chat_http_req *req)
{
    chat_session *s = req->poll_session;
    if (!s || s->poll != req) {
        return;
    }
    if (!s->qlen && !s->closed) {
        if (req->wsi) {
            lws_rx_flow_control(req->wsi, 0); /* woken for nothing: keep holding */
        }
        return;
    }
    if (req->wsi && !s->closed && poll_client_gone(req)) {
        poll_gone(req); /* not answered: what is queued would be lost on the way */
        return;
    }
    chat_buf *body = &s->rt->scratch;
    chat__buf_reset(body);
    int rc = 0;
    while (s->qlen && !rc) {
        chat_frame *f = queue_pop(s);
        uint8_t *p = chat__frame_payload(f);
        rc = f->binary ? chat__eio_payload_append(body, EIO_MESSAGE, p, f->len, 1)
                       : chat__eio_payload_append(body, p[0] - '0', p + 1, f->len - 1, 0);
        chat__frame_unref(f);
    }
    if (s->closed) {
        rc = rc ? rc : chat__eio_payload_append(body, EIO_CLOSE, NULL, 0, 0);
    }
    poll_unhold(s, req);
    if (rc) {
        chat__http_respond_error(req, rc, NULL);
    } else {
        chat__http_respond(req, 200, "text/plain; charset=UTF-8", body->data, body->len);
    }
    chat__http_req_unref(req);
    session_unref(s);
}

/* ---- heartbeat ---- */

static void heartbeat_cb(uv_timer_t *t)
{
    chat_session *s = t->data;
    if (s->overflow) {
        /* A reader this slow will not read a close frame either, and lws 4.1.6 never
         * calls WRITEABLE (where the close is sent) while its own copy of a partly written
         * frame waits for the socket: the connection would stay open for good. Cut it off
         * now (spec/e2e/limits.test.js, "a pong flood": the reader finds it closed). */
        struct lws *wsi = s->ws ? s->ws->wsi : NULL;
        chat__session_close(s, "slow client");
        if (wsi) {
            lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
        }
        return;
    }
    if (s->awaiting_pong) {
        chat__session_close(s, "ping timeout");
        return;
    }
    s->awaiting_pong = 1;
    chat__session_send(s, s->rt->ping_frame);
    uv_timer_start(&s->timer, heartbeat_cb, (uint64_t)s->rt->cfg.ping_timeout_ms, 0);
}

/* ---- open and close ---- */

/* "<node id>.<20 random characters>": a load balancer can send every request of a session
 * to the node that holds it by looking at the sid alone (deploy/nginx.conf does). */
void chat__random_id(char out[21])
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

static void make_sid(chat_runtime *rt, char out[CHAT_SID_MAX])
{
    int n = snprintf(out, CHAT_SID_MAX, "%s.", rt->node_id);
    chat__random_id(out + n);
}

/* *err: CHAT_ENOMEM, or CHAT_EUNAVAIL when the bounds on sessions without a namespace
 * refuse this one. */
static chat_session *session_new(chat_runtime *rt, const chat_session_handler *h,
                                 int transport, const char *peer, int *err)
{
    peer = peer ? peer : "";
    *err = chat__limits_session_open(rt, peer);
    if (*err) {
        return NULL;
    }
    *err = CHAT_ENOMEM;
    chat_session *s = calloc(1, sizeof *s);
    if (!s) {
        chat__limits_session_done(rt, peer);
        chat__limits_session_closed(rt, peer);
        return NULL;
    }
    s->rt = rt;
    s->h = h;
    s->refs = 1; /* the sessions map's */
    s->transport = transport;
    do {
        make_sid(rt, s->sid);
    } while (chat__map_get(&rt->sessions, s->sid));
    snprintf(s->peer, sizeof s->peer, "%s", peer);
    if (chat__map_put(&rt->sessions, s->sid, s)) {
        chat__limits_session_done(rt, peer);
        chat__limits_session_closed(rt, peer);
        free(s);
        return NULL;
    }
    uv_timer_init(rt->loop, &s->timer);
    s->timer.data = s;
    uv_timer_init(rt->loop, &s->watch);
    s->watch.data = s;
    uv_timer_start(&s->timer, heartbeat_cb, (uint64_t)rt->cfg.ping_interval_ms, 0);
    uv_timer_init(rt->loop, &s->connect_timer);
    s->connect_timer.data = s;
    s->handles = 3;
    s->unconnected = 1;
    uv_timer_start(&s->connect_timer, connect_timeout_cb, (uint64_t)rt->cfg.connect_timeout_ms,
                   0);
    if (h->connected(s)) {
        connect_done(s); /* an upper layer with nothing to connect (the plain endpoint) */
    }
    rt->stats.connections_total++;
    s->opened = uv_now(rt->loop);
    char conn[24];
    log_conn(s, conn);
    chat__log(CHAT_LOG_INFO, "connection_open", "a client opened a connection",
              json_pack("{s:s,s:s,s:s}", "conn", conn, "peer", s->peer, "transport",
                        transport_name(transport)));

    char open[256];
    snprintf(open, sizeof open,
             "0{\"sid\":\"%s\",\"upgrades\":[%s],\"pingInterval\":%d,\"pingTimeout\":%d,"
             "\"maxPayload\":%d}",
             s->sid, transport == TRANSPORT_POLLING ? "\"websocket\"" : "",
             rt->cfg.ping_interval_ms, rt->cfg.ping_timeout_ms, rt->cfg.max_payload);
    chat_frame *f = chat__frame_new(open, strlen(open), 0);
    if (!f || queue_push(s, f)) {
        chat__frame_unref(f);
        chat__session_close(s, "out of memory");
        return NULL;
    }
    chat__frame_unref(f);
    return s;
}

static void ws_close_conn(chat_ws_conn *c, int status)
{
    c->closing = 1;
    c->close_status = status;
    lws_callback_on_writable(c->wsi);
}

/* graceful: the client gets what is queued, then the close packet; a websocket closes
 * with 1001 (going away) once that is written. Otherwise the queue is dropped. */
static void session_end(chat_session *s, const char *reason, int graceful)
{
    if (s->closed) {
        return;
    }
    s->closed = 1;
    uv_timer_stop(&s->timer);
    char conn[24];
    log_conn(s, conn);
    chat__log(CHAT_LOG_INFO, "connection_close", "a connection closed",
              json_pack("{s:s,s:s,s:s,s:s,s:I,s:s}", "conn", conn, "peer", s->peer, "transport",
                        transport_name(s->transport), "reason", reason ? reason : "",
                        "duration_ms", (json_int_t)(uv_now(s->rt->loop) - s->opened), "user",
                        s->user_id));
    connect_done(s);
    chat__limits_session_closed(s->rt, s->peer);
    chat__map_del(&s->rt->sessions, s->sid);
    s->refs++; /* keep s alive while the layers above let go */
    s->h->on_close(s, reason);
    if (!graceful) {
        while (s->qlen) {
            chat__frame_unref(queue_pop(s));
        }
    }
    if (s->poll) {
        if (graceful) {
            chat__eio_poll_writeable(s->poll); /* the queue, then the close packet */
        } else {
            release_poll(s, "1");
        }
    }
    if (s->ws && graceful) {
        chat_frame *f = chat__frame_new("1", 1, 0);
        if (f && !queue_push(s, f)) {
            s->ws->close_drained = LWS_CLOSE_STATUS_GOINGAWAY;
            lws_callback_on_writable(s->ws->wsi);
        } else {
            ws_close_conn(s->ws, LWS_CLOSE_STATUS_GOINGAWAY);
        }
        chat__frame_unref(f);
    } else if (s->ws) {
        ws_close_conn(s->ws, LWS_CLOSE_STATUS_NORMAL);
    }
    if (s->probe) {
        ws_close_conn(s->probe, graceful ? LWS_CLOSE_STATUS_GOINGAWAY : LWS_CLOSE_STATUS_NORMAL);
    }
    session_unref(s); /* the map's */
    session_unref(s);
}

void chat__session_close(chat_session *s, const char *reason)
{
    session_end(s, reason, 0);
}

const char *chat__session_peer(chat_session *s) { return s->peer; }

void chat__sessions_close_all(chat_runtime *rt)
{
    chat_session *s;
    size_t i = 0;
    while ((s = chat__map_next(&rt->sessions, &i))) {
        chat__session_close(s, "server shutting down");
        i = 0; /* the map changed */
    }
}

void chat__sessions_shutdown(chat_runtime *rt)
{
    chat_session *s;
    size_t i = 0;
    while ((s = chat__map_next(&rt->sessions, &i))) {
        if (s->draining) {
            continue; /* waiting for its next poll */
        }
        if (s->transport == TRANSPORT_POLLING && (s->qlen || !s->poll)) {
            /* Packets first, the close in the next poll's answer, as the reference does:
             * socket.io-client drops an ack that shares a payload with the close. A client
             * between two polls gets the close in its next one (else its next poll would
             * find no session and fail), if that comes within POLL_WATCH_MS. */
            s->draining = 1;
            if (s->poll) {
                kick(s);
            } else {
                uv_timer_start(&s->watch, poll_watch_cb, POLL_WATCH_MS, 0);
            }
            continue;
        }
        session_end(s, "server shutting down", 1);
        i = 0; /* the map changed */
    }
}

/* ---- incoming packets, from either transport ---- */

static int on_packet(chat_session *s, const eio_packet *p)
{
    if (s->closed) {
        return -1;
    }
    switch (p->type) {
    case EIO_PONG:
        s->awaiting_pong = 0;
        uv_timer_start(&s->timer, heartbeat_cb, (uint64_t)s->rt->cfg.ping_interval_ms, 0);
        return 0;
    case EIO_PING: {
        chat_buf b = CHAT_BUF_INIT;
        int rc = chat__buf_appendc(&b, '3') || chat__buf_append(&b, p->data, p->len);
        chat_frame *f = rc ? NULL : chat__frame_new(b.data, b.len, 0);
        chat__buf_free(&b);
        chat__session_send(s, f);
        chat__frame_unref(f);
        return 0;
    }
    case EIO_MESSAGE:
        if (s->draining) {
            return 0; /* the server is stopping: no new work */
        }
        if (s->h->on_message(s, p->data, p->len, p->binary)) {
            s->rt->stats.bad_packets++;
            chat__session_close(s, "parse error");
            return -1;
        }
        return 0;
    case EIO_CLOSE:
        /* like engine.io: a poll held open is answered with a noop, then the session ends
         * and its sid is unknown from now on */
        if (s->poll) {
            release_poll(s, "6");
        }
        s->client_closed = 1;
        chat__session_close(s, "client close");
        return -1;
    case EIO_NOOP:
        return 0;
    default: /* open, or upgrade outside a probe */
        s->rt->stats.bad_packets++;
        chat__session_close(s, "parse error");
        return -1;
    }
}

static int on_polled_packet(const eio_packet *p, void *arg)
{
    chat_session *s = arg;
    return s->closed ? -1 : on_packet(s, p);
}

static void client_address(chat_http_req *req, char *out, size_t len)
{
    chat__peer_address(req->rt, req->wsi, out, len);
}

static void session_opened(chat_session *s)
{
    if (s->h->on_open && !s->closed) {
        s->h->on_open(s);
    }
}

void chat__eio_http(chat_http_req *req)
{
    chat_runtime *rt = req->rt;
    const chat_session_handler *h = chat__session_mount_find(rt, req->path);
    char eio[8], transport[16], sid[CHAT_SID_MAX];
    if (!h) {
        chat__http_respond_error(req, CHAT_ENOTFOUND, "no such path");
        return;
    }
    if (!chat__http_query(req, "EIO", eio, sizeof eio) || strcmp(eio, "4") != 0) {
        eio_error(req, EIO_ERR_VERSION);
        return;
    }
    if (!chat__http_query(req, "transport", transport, sizeof transport) ||
        (strcmp(transport, "polling") != 0 && strcmp(transport, "websocket") != 0)) {
        eio_error(req, EIO_ERR_TRANSPORT);
        return;
    }
    if (strcmp(transport, "polling") != 0) {
        eio_error(req, EIO_ERR_BAD); /* a websocket request without the upgrade */
        return;
    }
    if (!chat__http_query(req, "sid", sid, sizeof sid)) {
        if (req->method != CHAT_HTTP_GET) {
            eio_error(req, EIO_ERR_METHOD);
            return;
        }
        if (rt->stopping) {
            chat__http_respond_error(req, CHAT_EUNAVAIL, "the server is shutting down");
            return;
        }
        char peer[64];
        client_address(req, peer, sizeof peer);
        int err;
        chat_session *s = session_new(rt, h, TRANSPORT_POLLING, peer, &err);
        if (!s) {
            chat__http_respond_error(req, err,
                                     err == CHAT_EUNAVAIL
                                         ? "too many sessions (from this address, or waiting to connect); retry shortly"
                                         : NULL);
            return;
        }
        /* the open packet is queued: answer with it now */
        s->refs++; /* ours while the layer above hears of it */
        poll_hold(s, req);
        chat__eio_poll_writeable(req);
        session_opened(s);
        session_unref(s);
        return;
    }
    chat_session *s = chat__map_get(&rt->sessions, sid);
    if (!s || s->h != h) {
        eio_error(req, EIO_ERR_SID);
        return;
    }
    if (s->transport != TRANSPORT_POLLING) {
        eio_error(req, EIO_ERR_BAD);
        return;
    }
    if (req->method == CHAT_HTTP_GET) {
        if (s->poll) {
            /* two polls at once is a broken client: Engine.IO closes the session */
            eio_error(req, EIO_ERR_BAD);
            chat__session_close(s, "overlapping polls");
            return;
        }
        poll_hold(s, req);
        if (s->draining && !s->qlen) {
            session_end(s, "server shutting down", 1); /* answers this poll with the close */
            return;
        }
        if (s->upgrading && !s->qlen) {
            chat__session_send(s, s->rt->noop_frame);
        }
        if (s->qlen) {
            kick(s);
        }
        return;
    }
    if (req->method != CHAT_HTTP_POST) {
        eio_error(req, EIO_ERR_BAD);
        return;
    }
    s->refs++;
    int rc = chat__eio_decode_payload(req->body.data, req->body.len, on_polled_packet, s);
    if (rc == CHAT_EINVAL) {
        s->rt->stats.bad_packets++;
        eio_error(req, EIO_ERR_BAD);
        chat__session_close(s, "parse error");
    } else if (rc && s->closed && !s->client_closed) {
        eio_error(req, EIO_ERR_BAD);
    } else {
        chat__http_respond(req, 200, "text/html", "ok", 2);
    }
    session_unref(s);
}

void chat__http_closed(chat_http_req *req)
{
    chat_session *s = req->poll_session;
    if (s && s->poll == req) {
        /* Engine.IO ends a session whose poll was cut short */
        poll_unhold(s, req);
        chat__http_req_unref(req);
        chat__session_close(s, "transport close");
        session_unref(s);
    }
}

/* 1 when the client of a held poll closed its end (lws does not read it to tell us). */
static int poll_client_gone(chat_http_req *req)
{
    char c;
    ssize_t n = recv(lws_get_socket_fd(req->wsi), &c, 1, MSG_PEEK | MSG_DONTWAIT);
    /* > 0: still there (what it sent waits for the poll's answer) */
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

/* Ends the session of a held poll whose client went away, and has lws close the
 * connection. */
static void poll_gone(chat_http_req *req)
{
    lws_set_timeout(req->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
    chat__http_closed(req);
}

static void poll_watch_cb(uv_timer_t *t)
{
    chat_session *s = t->data;
    chat_http_req *req = s->poll;
    if (!req && s->draining && !s->closed) {
        /* stopping, and no poll came for the close: not worth holding the stop for */
        session_end(s, "server shutting down", 1);
    } else if (!req || !req->wsi) {
        uv_timer_stop(t);
    } else if (poll_client_gone(req)) {
        poll_gone(req);
    }
}

/* ---- the websocket transport ---- */

void chat__ws_established(chat_ws_conn *c)
{
    chat_runtime *rt = c->rt;
    c->counted = 1;
    rt->ws_conns++;
    if (c->bad_request || rt->stopping) {
        ws_close_conn(c, LWS_CLOSE_STATUS_POLICY_VIOLATION);
        return;
    }
    const char *peer = c->peer; /* read with the upgrade's headers */
    if (!c->sid[0]) {
        int err;
        chat_session *s = session_new(rt, c->handler, TRANSPORT_WEBSOCKET, peer, &err);
        if (!s) {
            /* 1013 Try Again Later: a session bound refused it */
            ws_close_conn(c, err == CHAT_EUNAVAIL ? 1013 : LWS_CLOSE_STATUS_UNEXPECTED_CONDITION);
            return;
        }
        s->ws = c;
        c->session = s;
        s->refs += 2; /* the connection's, and ours while the layer above hears of it */
        kick(s);
        session_opened(s);
        session_unref(s);
        return;
    }
    chat_session *s = chat__map_get(&rt->sessions, c->sid);
    if (!s || s->h != c->handler || s->transport != TRANSPORT_POLLING || s->probe ||
        s->draining) {
        ws_close_conn(c, LWS_CLOSE_STATUS_POLICY_VIOLATION);
        return;
    }
    s->probe = c;
    c->probe = 1;
    c->session = s;
    s->refs++;
}

static void on_probe_packet(chat_ws_conn *c, const eio_packet *p)
{
    chat_session *s = c->session;
    if (p->type == EIO_PING && p->len == 5 && memcmp(p->data, "probe", 5) == 0) {
        c->probe_reply = 1;
        lws_callback_on_writable(c->wsi);
        /* the client pauses polling before it upgrades: its pending poll must return */
        s->upgrading = 1;
        if (s->poll && !s->qlen) {
            chat__session_send(s, s->rt->noop_frame);
        }
        return;
    }
    if (p->type == EIO_UPGRADE) {
        s->probe = NULL;
        c->probe = 0;
        s->ws = c;
        s->transport = TRANSPORT_WEBSOCKET;
        /* what is queued now goes out on the websocket, in order */
        release_poll(s, "6");
        kick(s);
        return;
    }
    ws_close_conn(c, LWS_CLOSE_STATUS_PROTOCOL_ERR);
}

void chat__ws_receive(chat_ws_conn *c, const void *in, size_t len, int first, int final,
                      int binary)
{
    if (c->closing || c->close_drained || !c->session) {
        return; /* closing: what the client sends now is not read */
    }
    const uint8_t *frame = in;
    size_t frame_len = len;
    if (!(first && final)) {
        /* lws hands a message over in pieces of at most rx_buffer_size (net.c): gather them */
        if (first) {
            chat__buf_reset(&c->rx);
            c->rx_binary = binary;
        }
        if (c->rx.len + len > (size_t)c->rt->cfg.max_payload) {
            chat__buf_free(&c->rx);
            chat__session_close(c->session, "payload too large");
            ws_close_conn(c, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE);
            return;
        }
        if (chat__buf_append(&c->rx, in, len)) {
            chat__session_close(c->session, "out of memory");
            return;
        }
        if (!final) {
            return;
        }
        frame = c->rx.data;
        frame_len = c->rx.len;
        binary = c->rx_binary;
    } else if (len > (size_t)c->rt->cfg.max_payload) {
        chat__session_close(c->session, "payload too large");
        ws_close_conn(c, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE);
        return;
    }
    /* A message that came whole is read where lws put it: no copy, and an idle socket
     * holds no receive buffer of its own */
    eio_packet p;
    chat_session *s = c->session;
    if (chat__eio_decode_frame(frame, frame_len, binary, &p)) {
        c->rt->stats.bad_packets++;
        chat__session_close(s, "parse error");
        ws_close_conn(c, LWS_CLOSE_STATUS_PROTOCOL_ERR);
        return;
    }
    s->refs++;
    if (c->probe) {
        on_probe_packet(c, &p);
    } else {
        on_packet(s, &p);
    }
    session_unref(s);
    if (c->rx.cap > 4096) {
        chat__buf_free(&c->rx); /* don't keep a big buffer for an idle socket */
    } else {
        chat__buf_reset(&c->rx);
    }
}

int chat__ws_writeable(chat_ws_conn *c)
{
    if (c->closing) {
        /* lws 4.1.6 takes -1 from SERVER_WRITEABLE for a failed write and drops the TCP
         * connection without the close frame (the client saw 1006); -1 from its TIMER
         * callback closes properly: see net.c */
        lws_close_reason(c->wsi, (enum lws_close_status)c->close_status, NULL, 0);
        lws_set_timer_usecs(c->wsi, 1);
        return 0;
    }
    if (c->probe_reply) {
        uint8_t buf[LWS_PRE + 8];
        memcpy(buf + LWS_PRE, "3probe", 6);
        c->probe_reply = 0;
        if (lws_write(c->wsi, buf + LWS_PRE, 6, LWS_WRITE_TEXT) < 6) {
            return -1;
        }
        if (c->session && c->session->ws == c && c->session->qlen) {
            lws_callback_on_writable(c->wsi);
        }
        return 0;
    }
    chat_session *s = c->session;
    if (c->close_drained && (!s || s->ws != c || !s->qlen)) {
        /* the graceful stop: everything queued, the close packet last, is written; the
         * close frame goes as for any close chatd starts (above) */
        c->closing = 1;
        c->close_status = c->close_drained;
        lws_close_reason(c->wsi, (enum lws_close_status)c->close_status, NULL, 0);
        lws_set_timer_usecs(c->wsi, 1);
        return 0;
    }
    if (!s || s->ws != c || !s->qlen) {
        return 0;
    }
    if (!s->rt->session_flush) {
        /* stopping (or the flush list could not be made): one frame per callback */
        chat_frame *f = queue_pop(s);
        int n = lws_write(c->wsi, chat__frame_payload(f), f->len,
                          f->binary ? LWS_WRITE_BINARY : LWS_WRITE_TEXT);
        chat__frame_unref(f);
        if (n < 0) {
            return -1;
        }
        if (s->qlen || c->close_drained) {
            lws_callback_on_writable(c->wsi); /* the next packet, or the close frame */
        }
        return 0;
    }
    /* lws has sent what it held of an earlier write: go on with the queue */
    ws_flush(s);
    if (c->close_drained && !s->qlen && !lws_partial_buffered(c->wsi)) {
        lws_callback_on_writable(c->wsi); /* the graceful stop's close frame */
    }
    return 0;
}

void chat__ws_closed(chat_ws_conn *c)
{
    chat__buf_free(&c->rx);
    if (c->counted) {
        c->counted = 0;
        c->rt->ws_conns--;
    }
    chat_session *s = c->session;
    if (!s) {
        return;
    }
    c->session = NULL;
    if (s->ws == c) {
        s->ws = NULL;
        chat__session_close(s, "transport close");
    } else if (s->probe == c) {
        s->probe = NULL;
    }
    session_unref(s);
}

/* ---- the seam to the layers above: the endpoints, each with its handler ---- */

typedef struct session_mount {
    char path[128];    /* "/socket.io/" */
    char bare[128];    /* "/socket.io" */
    const chat_session_handler *h;
    chat_http_route routes[2];
} session_mount;

static void eio_route(chat_http_req *req, const char *user_id)
{
    (void)user_id;
    chat__eio_http(req);
}

int chat__session_mount(chat_runtime *rt, const char *path, const chat_session_handler *h)
{
    size_t n = strlen(path);
    session_mount *m = calloc(1, sizeof *m);
    if (!m || n < 2 || n + 1 >= sizeof m->path || path[0] != '/') {
        free(m);
        return m ? CHAT_EINVAL : CHAT_ENOMEM;
    }
    /* both spellings, with and without the trailing slash, as clients differ */
    memcpy(m->path, path, n);
    if (m->path[n - 1] != '/') {
        m->path[n++] = '/';
    }
    m->path[n] = '\0';
    memcpy(m->bare, m->path, n - 1);
    m->bare[n - 1] = '\0';
    m->h = h;
    m->routes[0] = (chat_http_route){CHAT_HTTP_ANY, m->path, 0, eio_route};
    m->routes[1] = (chat_http_route){CHAT_HTTP_ANY, m->bare, 0, eio_route};
    if (chat__vec_push(&rt->session_mounts, m)) {
        free(m);
        return CHAT_ENOMEM;
    }
    return chat__http_routes_add(rt, m->routes, 2);
}

int chat__session_start(chat_runtime *rt, const chat_session_handler *h)
{
    return chat__session_mount(rt, "/socket.io/", h);
}

const chat_session_handler *chat__session_mount_find(chat_runtime *rt, const char *path)
{
    for (uint32_t i = 0; i < rt->session_mounts.len; i++) {
        const session_mount *m = rt->session_mounts.items[i];
        if (strcmp(m->path, path) == 0 || strcmp(m->bare, path) == 0) {
            return m->h;
        }
    }
    return NULL;
}

void chat__session_mounts_free(chat_runtime *rt)
{
    for (uint32_t i = 0; i < rt->session_mounts.len; i++) {
        free(rt->session_mounts.items[i]);
    }
    chat__vec_free(&rt->session_mounts);
}

chat_session *chat__session_get(chat_runtime *rt, const char *sid, const chat_session_handler *h)
{
    chat_session *s = chat__map_get(&rt->sessions, sid);
    return s && s->h == h && !s->closed ? s : NULL;
}
