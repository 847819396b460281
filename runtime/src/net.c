/* net.c: libwebsockets on the runtime's libuv loop. One lws protocol serves HTTP (REST,
 * Engine.IO polling, static files) and WebSocket (Engine.IO's websocket transport). */
#include <errno.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http.h"
#include "log.h"
#include "rt.h"
#include "session.h"

/* lws gives each connection one block of this; it survives the HTTP -> WS upgrade. */
typedef struct net_pss {
    chat_http_req *req;
    chat_ws_conn ws;
} net_pss;

static const int method_map[] = {
    [LWSHUMETH_GET] = CHAT_HTTP_GET,         [LWSHUMETH_POST] = CHAT_HTTP_POST,
    [LWSHUMETH_OPTIONS] = CHAT_HTTP_OPTIONS, [LWSHUMETH_PUT] = CHAT_HTTP_OTHER,
    [LWSHUMETH_PATCH] = CHAT_HTTP_OTHER,     [LWSHUMETH_DELETE] = CHAT_HTTP_OTHER,
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

static int on_http(chat_runtime *rt, struct lws *wsi, net_pss *pss, const char *path)
{
    char *uri;
    int urilen;
    int m = lws_http_get_uri_and_method(wsi, &uri, &urilen);
    chat_http_req *req = calloc(1, sizeof *req);
    if (!req) {
        return -1;
    }
    req->rt = rt;
    req->wsi = wsi;
    req->refs = 1; /* the connection's */
    req->method = m >= 0 && (size_t)m < sizeof method_map / sizeof method_map[0]
                      ? method_map[m]
                      : CHAT_HTTP_OTHER;
    snprintf(req->path, sizeof req->path, "%s", path);
    req->query = copy_query(wsi);
    req->authorization = copy_header(wsi, WSI_TOKEN_HTTP_AUTHORIZATION);
    req->if_none_match = copy_header(wsi, WSI_TOKEN_HTTP_IF_NONE_MATCH);
    pss->req = req;
    if (!req->query) {
        chat__http_respond_error(req, CHAT_ENOMEM, NULL);
        return 0;
    }
    if (req->method == CHAT_HTTP_POST) {
        char cl[32];
        if (lws_hdr_copy(wsi, cl, sizeof cl, WSI_TOKEN_HTTP_CONTENT_LENGTH) > 0 &&
            strtoll(cl, NULL, 10) > rt->cfg.max_payload) {
            req->body_too_large = 1;
        }
        return 0; /* dispatched when the body is complete */
    }
    chat__http_dispatch(req);
    return 0;
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

static int http_write(struct lws *wsi, net_pss *pss)
{
    chat_http_req *req = pss->req;
    if (req && req->poll_session && !req->responded) {
        chat__eio_poll_writeable(req);
    }
    if (!req || req->responded != 1) {
        return 0;
    }
    req->responded = 2;
    uint8_t hdr[LWS_PRE + 1024];
    uint8_t *start = hdr + LWS_PRE, *p = start, *end = hdr + sizeof hdr - 1;
    size_t body_len = req->resp.len - LWS_PRE;
    if (lws_add_http_common_headers(wsi, (unsigned)req->status, req->content_type,
                                    body_len, &p, end)) {
        return -1;
    }
    /* extra headers are "name: value\r\n" lines */
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
                                        (const unsigned char *)v, (int)(eol - v), &p, end)) {
            return -1;
        }
        line = eol + 2;
    }
    if (lws_finalize_write_http_header(wsi, start, &p, end)) {
        return -1;
    }
    /* HEAD and 304 declare the length of the representation and send no body */
    if (body_len && req->method != CHAT_HTTP_HEAD && req->status != 304 &&
        lws_write(wsi, req->resp.data + LWS_PRE, body_len, LWS_WRITE_HTTP_FINAL) !=
            (int)body_len) {
        return -1;
    }
    pss->req = NULL;
    req->wsi = NULL;
    chat__http_req_unref(req);
    return lws_http_transaction_completed(wsi) ? -1 : 0;
}

static int ws_filter(chat_runtime *rt, struct lws *wsi, net_pss *pss)
{
    char path[64], arg[CHAT_SID_MAX + 8];
    memset(&pss->ws, 0, sizeof pss->ws);
    pss->ws.rt = rt;
    pss->ws.wsi = wsi;
    if (lws_hdr_copy(wsi, path, sizeof path, WSI_TOKEN_GET_URI) <= 0 ||
        strcmp(path, "/socket.io/") != 0) {
        return 1; /* not ours: lws refuses the upgrade */
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
        return on_http(rt, wsi, pss, in);
    case LWS_CALLBACK_HTTP_BODY:
        if (pss->req) {
            on_http_body(rt, pss->req, in, len);
        }
        return 0;
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
        if (pss->req) {
            if (pss->req->body_too_large) {
                chat__http_respond_error(pss->req, CHAT_ETOOBIG, NULL);
            } else {
                chat__http_dispatch(pss->req);
            }
        }
        return 0;
    case LWS_CALLBACK_HTTP_WRITEABLE:
        return http_write(wsi, pss);
    case LWS_CALLBACK_CLOSED_HTTP:
        if (pss && pss->req) {
            chat_http_req *req = pss->req;
            pss->req = NULL;
            req->wsi = NULL;
            chat__http_closed(req);
            chat__http_req_unref(req);
        }
        return 0;
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
        return ws_filter(rt, wsi, pss);
    case LWS_CALLBACK_ESTABLISHED:
        chat__ws_established(&pss->ws);
        return 0;
    case LWS_CALLBACK_RECEIVE:
        chat__ws_receive(&pss->ws, in, len, lws_is_first_fragment(wsi),
                         lws_is_final_fragment(wsi) && !lws_remaining_packet_payload(wsi),
                         lws_frame_is_binary(wsi));
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

static const struct lws_protocols protocols[] = {
    {"chatd", net_callback, sizeof(net_pss), 0, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

static void lws_log_emit(int level, const char *line)
{
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
    info.foreign_loops = foreign_loops;
    info.user = rt;
    info.max_http_header_data = 8192;
    info.max_http_header_pool = 4096; /* held long polls keep their header table */
    info.keepalive_timeout = 60;
    info.timeout_secs = 20;
    rt->lws = lws_create_context(&info);
    if (!rt->lws || !lws_get_vhost_by_name(rt->lws, "default")) {
        rt->lws = NULL; /* half made: lws cannot free it safely (see check_bindable) */
        chat__log(CHAT_LOG_ERROR, "listen_failed",
                  "could not listen; is the address in use or not local? set CHAT_LISTEN",
                  json_pack("{s:s}", "listen", rt->cfg.listen));
        return CHAT_EUNAVAIL;
    }
    return 0;
}

/* With a foreign loop lws closes its handles asynchronously: the first destroy starts that,
 * and a second one, once the loop has run them to completion, frees the context. */
void chat__net_stop(chat_runtime *rt)
{
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
}
