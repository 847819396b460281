/* net.c: libwebsockets on the runtime's libuv loop. One lws protocol serves HTTP (REST,
 * Engine.IO polling, static files) and WebSocket (Engine.IO's websocket transport). */
#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bounds.h"
#include "http.h"
#include "http_frame.h"
#include "log.h"
#include "rt.h"
#include "session.h"

/* ---- HTTP on libwebsockets 4.1.6, and the defects chatd works around ----
 *
 * lws reads a connection's bytes ahead, parses them and calls us. Its h1 server (4.1.6, the
 * Debian 12 package) has defects a client can reach; spec/e2e/http_*.test.js show each:
 *
 *  D1 (spin after a body): once a request's body is complete, lws keeps the connection in
 *     its body state until the transaction completes. If more bytes of the connection sit
 *     in lws's buffer (a pipelined request, or the tail of one it parsed from that buffer),
 *     its "ripe rxflow" service re-enters that state in a tight loop, delivering
 *     HTTP_BODY_COMPLETION again and again: 100% CPU, no WRITEABLE, deaf to SIGTERM.
 *     Completing the transaction inside that callback does not end it either (lws goes on
 *     spinning in its header parser).
 *  D2 (flow control starves writes): lws_rx_flow_control(wsi, 0) does not stop that loop,
 *     and a flow-controlled h1 wsi never gets HTTP_WRITEABLE (the POLLOUT branch lives in
 *     the POLLIN handler, which returns early), so pausing reading is no way out.
 *  D3 (no framing checks): lws honours Content-Length over Transfer-Encoding when both are
 *     sent (request smuggling behind a proxy that reads them the other way), never decodes
 *     a chunked request body and never completes a body-less POST: those got no answer.
 *  D4 (lost request after a body-less POST): after a POST (or other non-GET request)
 *     without Content-Length has been answered, lws silently swallows the connection's next
 *     request: no callback at all, so it would never be answered.
 *
 * What chatd does: it checks each request's framing itself (http_frame.c) when the headers
 * are complete: no body -> to the routes at once, whatever the method; Content-Length ->
 * exactly that many bytes; Transfer-Encoding -> 411 (chunked) or 400 (with Content-Length,
 * or another coding), and the connection closes, as it does after a body-less request
 * other than GET or HEAD that has no Content-Length (D4). A second HTTP_BODY_COMPLETION for one
 * request is D1 starting: the answer, if ready, is written on the spot with Connection:
 * close and the connection closes (returning -1 is the one thing that stops lws); a
 * pipelined request behind a body is not served (RFC 9112 9.3.2: a client must not
 * pipeline after a non-idempotent request, and must retry what a closed connection left
 * unanswered). Requests pipelined behind body-less ones are served in order: lws parses
 * the next one only after the transaction completes. Whenever chatd ends a connection
 * after an answer, that answer says Connection: close. */

/* lws gives each connection one block of this; it survives the HTTP -> WS upgrade, but not
 * lws_http_transaction_completed(), which hands the wsi a fresh, zeroed one. */
typedef struct net_pss {
    chat_http_req *req; /* the request being read or answered: at most one */
    chat_ws_conn ws;
    int dispatched;      /* req went to the routes (its body, if any, is complete) */
    int completions;     /* HTTP_BODY_COMPLETION deliveries for req (D1 when > 1) */
} net_pss;

static const int method_map[] = {
    [LWSHUMETH_GET] = CHAT_HTTP_GET,         [LWSHUMETH_POST] = CHAT_HTTP_POST,
    [LWSHUMETH_OPTIONS] = CHAT_HTTP_OPTIONS, [LWSHUMETH_PUT] = CHAT_HTTP_OTHER,
    [LWSHUMETH_PATCH] = CHAT_HTTP_PATCH,     [LWSHUMETH_DELETE] = CHAT_HTTP_DELETE,
    [LWSHUMETH_CONNECT] = CHAT_HTTP_OTHER,   [LWSHUMETH_HEAD] = CHAT_HTTP_HEAD,
};

static char *copy_header(struct lws *wsi, enum lws_token_indexes h)
{
    int n = lws_hdr_total_length(wsi, h);
    if (n <= 0) {
        return NULL;
    }
    char *s = malloc((size_t)n + 1);
    if (s && lws_hdr_copy(wsi, s, n + 1, h) < 0) {
        free(s);
        return NULL;
    }
    return s;
}

/* Query fragments arrive split and url-decoded; join them back with '&'. */
static char *copy_query(struct lws *wsi)
{
    chat_buf b = CHAT_BUF_INIT;
    char frag[1024];
    for (int i = 0;; i++) {
        int n = lws_hdr_copy_fragment(wsi, frag, sizeof frag, WSI_TOKEN_HTTP_URI_ARGS, i);
        if (n < 0) {
            break;
        }
        if ((b.len && chat__buf_appendc(&b, '&')) || chat__buf_append(&b, frag, (size_t)n)) {
            chat__buf_free(&b);
            return NULL;
        }
    }
    if (chat__buf_terminate(&b)) {
        chat__buf_free(&b);
        return NULL;
    }
    return (char *)b.data;
}

/* Headers: "name: value\r\n" lines in req->extra_headers, then Connection: close. */
static int add_headers(struct lws *wsi, chat_http_req *req, uint8_t **p, uint8_t *end)
{
    for (char *line = req->extra_headers; *line;) {
        char *colon = strchr(line, ':');
        char *eol = strstr(line, "\r\n");
        if (!colon || !eol) {
            break;
        }
        char name[64];
        size_t n = (size_t)(colon - line) + 1;
        if (n >= sizeof name) {
            break;
        }
        memcpy(name, line, n);
        name[n] = '\0';
        const char *v = colon + 1;
        while (*v == ' ') {
            v++;
        }
        if (lws_add_http_header_by_name(wsi, (const unsigned char *)name,
                                        (const unsigned char *)v, (int)(eol - v), p, end)) {
            return -1;
        }
        line = eol + 2;
    }
    if (req->close_after &&
        lws_add_http_header_by_token(wsi, WSI_TOKEN_CONNECTION, (const unsigned char *)"close",
                                     5, p, end)) {
        return -1;
    }
    return 0;
}

/* Headers chatd accepts: 8 KB. lws gets twice that room so that a request a little over
 * is answered 431 by chatd; lws 4.1.6 drops a connection whose headers overflow its own
 * room without a word (no callback reaches chatd first), so that stays for > 16 KB. */
#define NET_HEADER_MAX 8192
#define NET_HEADER_ROOM 16384

/* The header bytes lws kept for this request (the request line's URI included). */
static size_t header_bytes(struct lws *wsi)
{
    size_t n = 0;
    for (int t = 0; t < WSI_TOKEN_COUNT; t++) {
        int len = lws_hdr_total_length(wsi, (enum lws_token_indexes)t);
        if (len > 0) {
            n += (size_t)len;
        }
    }
    return n;
}

static int write_response(struct lws *wsi, chat_http_req *req)
{
    uint8_t hdr[LWS_PRE + 1024];
    uint8_t *start = hdr + LWS_PRE, *p = start, *end = hdr + sizeof hdr - 1;
    size_t body_len = req->resp.len - LWS_PRE;
    if (lws_add_http_common_headers(wsi, (unsigned)req->status, req->content_type,
                                    body_len, &p, end) ||
        add_headers(wsi, req, &p, end) || lws_finalize_write_http_header(wsi, start, &p, end)) {
        return -1;
    }
    /* HEAD and 304 declare the length of the representation and send no body */
    if (body_len && req->method != CHAT_HTTP_HEAD && req->status != 304 &&
        lws_write(wsi, req->resp.data + LWS_PRE, body_len, LWS_WRITE_HTTP_FINAL) !=
            (int)body_len) {
        return -1;
    }
    return 0;
}

/* Writes req's answer (it is ready: responded == 1) and ends the transaction. Returns what
 * the lws callback must return: -1 closes the connection. pss is gone afterwards. */
static int send_answer(struct lws *wsi, net_pss *pss, int force_close)
{
    chat_http_req *req = pss->req;
    req->responded = 2;
    if (force_close) {
        req->close_after = 1;
    }
    int close = req->close_after;
    if (write_response(wsi, req)) {
        close = 1;
    }
    pss->req = NULL;
    req->wsi = NULL;
    chat__http_req_unref(req);
    if (close) {
        return -1;
    }
    /* lws also closes when it saw Connection: close or HTTP/1.0: chatd said so already */
    return lws_http_transaction_completed(wsi) ? -1 : 0;
}

static int http_write(struct lws *wsi, net_pss *pss)
{
    chat_http_req *req = pss->req;
    if (req && req->poll_session && !req->responded) {
        chat__eio_poll_writeable(req);
    }
    if (!req || req->responded != 1) {
        return 0;
    }
    return send_answer(wsi, pss, 0);
}

static void dispatch(chat_http_req *req)
{
    if (req->body_too_large) {
        req->close_after = 1; /* what followed the body was not read as a request */
        chat__http_respond_error(req, CHAT_ETOOBIG, NULL);
    } else {
        chat__http_dispatch(req);
    }
}

/* A connection to CHAT_ADMIN_LISTEN (the vhost "admin"). */
static int net_is_admin_vhost(struct lws *wsi)
{
    struct lws_vhost *vh = lws_get_vhost(wsi);
    const char *name = vh ? lws_get_vhost_name(vh) : NULL;
    return name && strcmp(name, "admin") == 0;
}

static int on_http(chat_runtime *rt, struct lws *wsi, net_pss *pss, const char *path)
{
    if (pss->req) {
        /* lws parsed another request while one is unanswered: not in order, so not at
         * all; what is ready goes out first */
        return pss->req->responded == 1 ? send_answer(wsi, pss, 1) | -1 : -1;
    }
    char *uri;
    int urilen;
    int m = lws_http_get_uri_and_method(wsi, &uri, &urilen);
    chat_http_req *req = calloc(1, sizeof *req);
    if (!req) {
        return -1;
    }
    req->rt = rt;
    req->wsi = wsi;
    req->admin_door = net_is_admin_vhost(wsi);
    req->refs = 1; /* the connection's */
    rt->http_reqs++; /* until freed: a graceful stop waits for it (chat__http_req_unref) */
    req->method = m >= 0 && (size_t)m < sizeof method_map / sizeof method_map[0]
                      ? method_map[m]
                      : CHAT_HTTP_OTHER;
    snprintf(req->path, sizeof req->path, "%s", path);
    req->query = copy_query(wsi);
    req->authorization = copy_header(wsi, WSI_TOKEN_HTTP_AUTHORIZATION);
    req->if_none_match = copy_header(wsi, WSI_TOKEN_HTTP_IF_NONE_MATCH);
    req->content_type_in = copy_header(wsi, WSI_TOKEN_HTTP_CONTENT_TYPE);
    pss->req = req;
    pss->dispatched = 0;
    pss->completions = 0;

    char *cl = copy_header(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH);
    int has_cl = cl != NULL;
    char *te = copy_header(wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING);
    char *version = copy_header(wsi, WSI_TOKEN_HTTP);
    char *connection = copy_header(wsi, WSI_TOKEN_CONNECTION);
    uint64_t length = 0;
    int framing = chat__http_body_framing(cl, te, &length);
    req->close_after = chat__http_wants_close(version, connection);
    free(cl);
    free(te);
    free(version);
    free(connection);

    if (!req->query) {
        pss->dispatched = 1;
        chat__http_respond_error(req, CHAT_ENOMEM, NULL);
        return 0;
    }
    if (header_bytes(wsi) > NET_HEADER_MAX) {
        pss->dispatched = 1;
        req->close_after = 1; /* its body, if any, is not read */
        chat__http_respond_json(
            req, 431,
            json_pack("{s:b,s:{s:s,s:s}}", "ok", 0, "error", "code", chat_errcode(CHAT_ETOOBIG),
                      "message", "the request's headers are larger than 8 KB"));
        return 0;
    }
    switch (framing) {
    case CHAT_BODY_BAD: /* D3: smuggling attempt or garbage: where its body ends is unknown */
        pss->dispatched = 1;
        req->close_after = 1;
        chat__http_respond_error(req, CHAT_EINVAL,
                                 "bad request framing: send one valid Content-Length and no "
                                 "Transfer-Encoding");
        return 0;
    case CHAT_BODY_CHUNKED: /* D3: lws 4.1 cannot read a chunked body */
        pss->dispatched = 1;
        req->close_after = 1;
        chat__http_respond_json(
            req, 411,
            json_pack("{s:b,s:{s:s,s:s}}", "ok", 0, "error", "code", chat_errcode(CHAT_EINVAL),
                      "message", "chunked request bodies are not supported; send the body "
                                 "with a Content-Length"));
        return 0;
    case CHAT_BODY_NONE:
        if (has_cl && req->method != CHAT_HTTP_GET && req->method != CHAT_HTTP_HEAD) {
            /* Content-Length: 0: lws completes the body at once, answered then; for GET and
             * HEAD it never does (no body state for them): those go to the routes now */
            return 0;
        }
        if (req->method != CHAT_HTTP_GET && req->method != CHAT_HTTP_HEAD) {
            req->close_after = 1; /* D4 */
        }
        pss->dispatched = 1; /* no body, whatever the method (D3) */
        dispatch(req);
        return 0;
    case CHAT_BODY_LENGTH:
    default:
        if (length > (uint64_t)rt->cfg.max_payload) {
            req->body_too_large = 1; /* read and dropped, then 413 */
        }
        return 0; /* to the routes at HTTP_BODY_COMPLETION */
    }
}

static void on_http_body(chat_runtime *rt, chat_http_req *req, const void *in, size_t len)
{
    req->body_seen += len;
    if (req->body_seen > (size_t)rt->cfg.max_payload) {
        req->body_too_large = 1;
        chat__buf_free(&req->body);
    }
    if (!req->body_too_large && chat__buf_append(&req->body, in, len)) {
        req->body_too_large = 1; /* out of memory: refuse rather than half-read */
    }
}

static int on_body_completion(struct lws *wsi, net_pss *pss)
{
    chat_http_req *req = pss->req;
    if (!req) {
        return 0;
    }
    if (++pss->completions > 1) {
        /* D1: lws spins until this connection closes; answer first if we can */
        return req->responded == 1 ? send_answer(wsi, pss, 1) | -1 : -1;
    }
    if (!pss->dispatched) {
        pss->dispatched = 1;
        dispatch(req);
    }
    return 0;
}

static int http_callback(chat_runtime *rt, struct lws *wsi, net_pss *pss,
                         enum lws_callback_reasons reason, void *in, size_t len)
{
    switch (reason) {
    case LWS_CALLBACK_HTTP:
        return on_http(rt, wsi, pss, in);
    case LWS_CALLBACK_HTTP_BODY:
        if (!pss->req) {
            return -1;
        }
        if (pss->dispatched) {
            /* body bytes for a request chatd framed as complete: lws and chatd disagree
             * on where the next request starts, so there will be no next request */
            pss->req->close_after = 1;
            return 0;
        }
        on_http_body(rt, pss->req, in, len);
        return 0;
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
        return on_body_completion(wsi, pss);
    case LWS_CALLBACK_HTTP_WRITEABLE:
        return http_write(wsi, pss);
    default:
        return 0;
    }
}

static int ws_filter(chat_runtime *rt, struct lws *wsi, net_pss *pss)
{
    char path[256], arg[CHAT_SID_MAX + 8];
    memset(&pss->ws, 0, sizeof pss->ws);
    pss->ws.rt = rt;
    pss->ws.wsi = wsi;
    if (lws_hdr_copy(wsi, path, sizeof path, WSI_TOKEN_GET_URI) <= 0 ||
        !(pss->ws.handler = chat__session_mount_find(rt, path))) {
        return 1; /* not an Engine.IO endpoint: lws refuses the upgrade */
    }
    const char *eio = lws_get_urlarg_by_name(wsi, "EIO=", arg, sizeof arg);
    if (!eio || strcmp(eio, "4") != 0) {
        pss->ws.bad_request = 1;
    }
    const char *transport = lws_get_urlarg_by_name(wsi, "transport=", arg, sizeof arg);
    if (!transport || strcmp(transport, "websocket") != 0) {
        pss->ws.bad_request = 1;
    }
    chat__peer_address(rt, wsi, pss->ws.peer, sizeof pss->ws.peer);
    const char *sid = lws_get_urlarg_by_name(wsi, "sid=", arg, sizeof arg);
    if (sid) {
        snprintf(pss->ws.sid, sizeof pss->ws.sid, "%s", sid);
    }
    return 0;
}

static int net_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user,
                        void *in, size_t len)
{
    net_pss *pss = user;
    struct lws_context *ctx = lws_get_context(wsi);
    chat_runtime *rt = ctx ? lws_context_user(ctx) : NULL;

    switch (reason) {
    case LWS_CALLBACK_HTTP:
    case LWS_CALLBACK_HTTP_BODY:
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
    case LWS_CALLBACK_HTTP_WRITEABLE:
        return http_callback(rt, wsi, pss, reason, in, len);
    case LWS_CALLBACK_CLOSED_HTTP:
        if (pss && pss->req) {
            chat_http_req *req = pss->req;
            pss->req = NULL;
            pss->dispatched = 0;
            req->wsi = NULL;
            chat__http_closed(req);
            chat__http_req_unref(req);
        }
        return 0;
    /* the accept path: connection bounds (bounds.c) */
    case LWS_CALLBACK_FILTER_NETWORK_CONNECTION:
        return rt ? chat__limits_filter(rt, wsi, (int)(lws_intptr_t)in) : 0;
    case LWS_CALLBACK_WSI_CREATE:
        if (rt) {
            chat__limits_wsi_create(rt, wsi);
        }
        return 0;
    case LWS_CALLBACK_WSI_DESTROY:
        if (rt) {
            chat__limits_wsi_destroy(rt, wsi);
        }
        return 0;
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
        if (net_is_admin_vhost(wsi)) {
            return -1; /* the admin address serves no clients */
        }
        return ws_filter(rt, wsi, pss);
    case LWS_CALLBACK_ESTABLISHED:
        chat__ws_established(&pss->ws);
        return 0;
    case LWS_CALLBACK_RECEIVE:
        chat__ws_receive(&pss->ws, in, len, lws_is_first_fragment(wsi),
                         lws_is_final_fragment(wsi) && !lws_remaining_packet_payload(wsi),
                         lws_frame_is_binary(wsi));
        if (pss->ws.closing) {
            /* what the message made chatd close (too big: 1009, bad packet: 1002) is said in
             * the close frame: lws sends it when RECEIVE returns -1, but not when
             * SERVER_WRITEABLE does (it takes that for a failed write: the client saw 1006) */
            lws_close_reason(wsi, (enum lws_close_status)pss->ws.close_status, NULL, 0);
            return -1;
        }
        return 0;
    case LWS_CALLBACK_TIMER:
        /* a websocket chatd closes (session.c chat__ws_writeable): the reason is set */
        return pss && pss->ws.closing ? -1 : 0;
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        /* lws echoes the close frame next (ops-ws.c:500-512): chatd, which writes outside
         * this callback (session.c), must not put a data frame after it (RFC 6455 5.5.1) */
        if (pss) {
            pss->ws.peer_closed = 1;
        }
        return 0;
    case LWS_CALLBACK_SERVER_WRITEABLE:
        return chat__ws_writeable(&pss->ws);
    case LWS_CALLBACK_CLOSED:
        chat__ws_closed(&pss->ws);
        return 0;
    default:
        return lws_callback_http_dummy(wsi, reason, user, in, len);
    }
}

/* rx_buffer_size: lws gives every websocket a receive buffer of this size (ops-ws.c:841;
 * 0 = the 4 KB service buffer), and an idle socket's pages of it stay resident: 1 KB holds
 * a typical chat packet whole, and bigger messages arrive in pieces that session.c gathers.
 * 4,096 -> 1,024 took idle RSS from 8.3 to 5.2 KB per connection (10,000 held).
 * tx_packet_size: how much lws_issue_raw hands send() at once (output.c:106-116; else the
 * 4 KB service buffer, and the rest of a bigger write would wait for POLLOUT): a batch of
 * frames (session.c WS_BATCH_MAX) leaves in one send(). */
static const struct lws_protocols protocols[] = {
    {"chatd", net_callback, sizeof(net_pss), 1024, 0, NULL, 65536 + 1024},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

/* The runtimes listening in this process, under a lock: an embedding host may run
 * runtimes on several threads, each on its own loop, while lws's log is process-wide. */
static uv_once_t net_once = UV_ONCE_INIT;
static uv_mutex_t net_lock;
static chat_runtime **net_runtimes;
static size_t net_nruntimes, net_cap;

static void net_lock_init(void)
{
    if (uv_mutex_init(&net_lock)) {
        abort();
    }
}

static int net_register(chat_runtime *rt, int on)
{
    int rc = 0;
    uv_once(&net_once, net_lock_init);
    uv_mutex_lock(&net_lock);
    if (on) {
        if (net_nruntimes == net_cap) {
            size_t cap = net_cap ? net_cap * 2 : 4;
            chat_runtime **r = realloc(net_runtimes, cap * sizeof *r);
            if (!r) {
                rc = CHAT_ENOMEM;
                goto out;
            }
            net_runtimes = r;
            net_cap = cap;
        }
        net_runtimes[net_nruntimes++] = rt;
    } else {
        for (size_t i = 0; i < net_nruntimes; i++) {
            if (net_runtimes[i] == rt) {
                net_runtimes[i] = net_runtimes[--net_nruntimes];
                break;
            }
        }
        if (!net_nruntimes) {
            free(net_runtimes);
            net_runtimes = NULL;
            net_cap = 0;
        }
    }
out:
    uv_mutex_unlock(&net_lock);
    return rc;
}

static void lws_log_emit(int level, const char *line)
{
    /* lws 4.1.6 reports a failed accept() only by this line (see bounds.c): back off instead
     * of logging it millions of times. lws logs it on the thread whose loop accepted, so
     * only the runtimes on this thread act: another thread's loop, lws context and counters
     * are its own (its listeners back off when their own accept() fails). */
    static _Thread_local int acting; /* lws may log again while a runtime backs off */
    const char *acc = strstr(line, "accept: errno ");
    if (acc && !acting) {
        int err = atoi(acc + 14);
        acting = 1;
        uv_once(&net_once, net_lock_init);
        uv_mutex_lock(&net_lock);
        for (size_t i = 0; i < net_nruntimes; i++) {
            if (chat__limits_on_this_thread(net_runtimes[i])) {
                chat__limits_accept_error(net_runtimes[i], err);
            }
        }
        uv_mutex_unlock(&net_lock);
        acting = 0;
        return;
    }
    char msg[512];
    snprintf(msg, sizeof msg, "%s", line);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r')) {
        msg[--n] = '\0';
    }
    chat__log(level == LLL_ERR ? CHAT_LOG_ERROR : CHAT_LOG_WARN, "lws", msg, NULL);
}

/* lws 4.1 on a foreign loop does not recover cleanly when its listening socket cannot bind,
 * so find out first, with a plain socket, and say why. */
static int check_bindable(chat_runtime *rt, int any)
{
    char port[8];
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    snprintf(port, sizeof port, "%d", rt->listen_port);
    int rc = getaddrinfo(any ? NULL : rt->listen_host, port, &hints, &res);
    if (rc) {
        chat__log(CHAT_LOG_ERROR, "listen_failed",
                  "cannot resolve the listen address; set CHAT_LISTEN to host:port",
                  json_pack("{s:s,s:s}", "listen", rt->cfg.listen, "error", gai_strerror(rc)));
        return CHAT_EINVAL;
    }
    int fd = socket(res->ai_family, SOCK_STREAM, 0), one = 1, err = 0;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) ||
        bind(fd, res->ai_addr, res->ai_addrlen)) {
        err = errno;
    }
    if (fd >= 0) {
        close(fd);
    }
    freeaddrinfo(res);
    if (err) {
        chat__log(CHAT_LOG_ERROR, "listen_failed",
                  err == EADDRINUSE ? "the port is in use by another program; stop it or set "
                                      "CHAT_LISTEN to another port"
                                    : "cannot listen on that address; set CHAT_LISTEN",
                  json_pack("{s:s,s:s}", "listen", rt->cfg.listen, "error", strerror(err)));
        return CHAT_EUNAVAIL;
    }
    return 0;
}

/* lws 4.1.6 gives every established websocket a "validity" timer (an lws ws PING after 300 s,
 * hang-up 10 s later without a ws PONG: context.c's default_retry, wsi-timeout.c:291-360).
 * All of them sit in one sorted list per thread, and as every new one is the latest,
 * inserting it walks every connection held: O(n) per accept (63% of the loop thread while
 * 8,000 connections opened on top of 2,000: BENCHMARKS.md "Issue 12"). A policy whose
 * secs_since_valid_hangup is 0 schedules none (wsi-timeout.c:340). Liveness is Engine.IO's
 * heartbeat, a per-session libuv timer (a heap), which also drops dead peers. */
const lws_retry_bo_t chat__net_no_validity = {.secs_since_valid_ping = 0,
                                              .secs_since_valid_hangup = 0};

/* lws sizes its fd table (and, in Debian's build, scans it on every close: close.c:712,
 * unix-fds.c:81-116) by the open-file limit, which containers often set to 1M. Size it by
 * the connection bound instead (bounds.c: max_connections, plus room for chatd's other
 * descriptors), never above the open-file limit; without a bound, at most NET_FD_CAP. */
#define NET_FD_CAP 65536
#define NET_FD_OTHERS 256
int chat__net_fd_limit(long nofile, long max_conns)
{
    long want = max_conns > 0 ? max_conns + NET_FD_OTHERS : NET_FD_CAP;
    if (nofile > 0 && nofile < want) {
        want = nofile;
    }
    return want > INT_MAX ? INT_MAX : (int)want;
}

int chat__net_start(chat_runtime *rt)
{
    struct lws_context_creation_info info;
    void *foreign_loops[1] = {rt->loop};

    lws_set_log_level(LLL_ERR | LLL_WARN, lws_log_emit);
    memset(&info, 0, sizeof info);
    info.port = rt->listen_port;
    int any = !rt->listen_host[0] || strcmp(rt->listen_host, "0.0.0.0") == 0 ||
              strcmp(rt->listen_host, "*") == 0;
    int rc = check_bindable(rt, any);
    if (rc) {
        return rc;
    }
    info.iface = any ? NULL : rt->listen_host;
    info.protocols = protocols;
    info.options = LWS_SERVER_OPTION_LIBUV | LWS_SERVER_OPTION_VALIDATE_UTF8;
    if (strcmp(rt->listen_host, "0.0.0.0") == 0) {
        info.options |= LWS_SERVER_OPTION_DISABLE_IPV6;
    }
    if (!rt->limits && (rc = chat__limits_init(rt))) {
        return rc;
    }
    if ((rc = net_register(rt, 1))) {
        return rc;
    }
    info.foreign_loops = foreign_loops;
    info.user = rt;
    info.max_http_header_data = NET_HEADER_ROOM;
    info.max_http_header_pool = 4096; /* held long polls keep their header table */
    info.keepalive_timeout = 60;
    info.timeout_secs = 20;
    info.retry_and_idle_policy = &chat__net_no_validity;
    struct rlimit nofile;
    info.fd_limit_per_thread = (unsigned int)chat__net_fd_limit(
        getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur != RLIM_INFINITY
            ? (long)nofile.rlim_cur : 0,
        rt->limits->max_conns);
    rt->lws = lws_create_context(&info);
    if (!rt->lws || !lws_get_vhost_by_name(rt->lws, "default")) {
        rt->lws = NULL; /* half made: lws cannot free it safely (see check_bindable) */
        chat__log(CHAT_LOG_ERROR, "listen_failed",
                  "could not listen; is the address in use or not local? set CHAT_LISTEN",
                  json_pack("{s:s}", "listen", rt->cfg.listen));
        return CHAT_EUNAVAIL;
    }
    chat__limits_probe(rt, any ? "127.0.0.1" : rt->listen_host,
                       lws_get_vhost_listen_port(lws_get_vhost_by_name(rt->lws, "default")));
    /* the admin API on an address of its own (CHAT_ADMIN_LISTEN): a second vhost */
    const char *admin = rt->cfg.admin_listen;
    if (admin && *admin) {
        char host[128];
        int port;
        if (chat__parse_listen(admin, host, sizeof host, &port)) {
            chat__log(CHAT_LOG_ERROR, "bad_admin_listen",
                      "CHAT_ADMIN_LISTEN must look like 127.0.0.1:9090",
                      json_pack("{s:s}", "admin_listen", admin));
            return CHAT_EINVAL;
        }
        struct lws_context_creation_info ai = info;
        ai.port = port;
        ai.iface = !host[0] || strcmp(host, "0.0.0.0") == 0 || strcmp(host, "*") == 0 ? NULL : host;
        ai.vhost_name = "admin";
        if (!lws_create_vhost(rt->lws, &ai)) {
            chat__log(CHAT_LOG_ERROR, "listen_failed",
                      "could not listen on the admin address; is it in use or not local? set "
                      "CHAT_ADMIN_LISTEN",
                      json_pack("{s:s}", "admin_listen", admin));
            return CHAT_EUNAVAIL;
        }
    }
    return 0;
}

/* With a foreign loop lws closes its handles asynchronously: the first destroy starts that,
 * and a second one, once the loop has run them to completion, frees the context. */
void chat__net_stop(chat_runtime *rt)
{
    chat__session_flush_stop(rt);
    chat__limits_stop(rt);
    net_register(rt, 0);
    if (rt->lws) {
        lws_context_destroy(rt->lws);
        rt->lws_closing = rt->lws;
        rt->lws = NULL;
    }
}

void chat__net_free(chat_runtime *rt)
{
    if (rt->lws_closing) {
        lws_context_destroy(rt->lws_closing);
        rt->lws_closing = NULL;
    }
    chat__limits_free(rt);
}
