/* http.c: HTTP requests and responses, and the route table. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "http.h"
#include "log.h"
#include "rt.h"
#include "stats.h"

void chat__http_req_ref(chat_http_req *req) { req->refs++; }

void chat__http_req_unref(chat_http_req *req)
{
    if (!req || --req->refs > 0) {
        return;
    }
    req->rt->http_reqs--;
    free(req->query);
    free(req->authorization);
    free(req->if_none_match);
    free(req->content_type_in);
    chat__buf_free(&req->body);
    chat__buf_free(&req->resp);
    free(req);
}

/* The client's address: the TCP peer, or behind a proxy we trust (CHAT_TRUST_PROXY=1) the
 * last address it appended to X-Forwarded-For. Rate limits per IP depend on it. */
void chat__peer_address(chat_runtime *rt, struct lws *wsi, char *out, size_t len)
{
    out[0] = '\0';
    if (!wsi) {
        return;
    }
    lws_get_peer_simple(wsi, out, len);
    if (strncmp(out, "::ffff:", 7) == 0 && strchr(out + 7, '.')) {
        memmove(out, out + 7, strlen(out + 7) + 1); /* an IPv4 client on a dual-stack socket */
    }
    char xff[256];
    if (rt->cfg.trust_proxy &&
        lws_hdr_copy(wsi, xff, sizeof xff, WSI_TOKEN_X_FORWARDED_FOR) > 0) {
        const char *last = strrchr(xff, ',');
        last = last ? last + 1 : xff;
        while (*last == ' ') {
            last++;
        }
        if (*last && strlen(last) < len) {
            snprintf(out, len, "%s", last);
        }
    }
}

static const char *const method_names[] = {"GET", "POST", "OPTIONS", "HEAD", "OTHER", "PATCH",
                                            "DELETE"};

/* One line per answered request (not Engine.IO polling: the connection lines cover it). */
static void log_request(chat_http_req *req, int status)
{
    if (req->log_level < 0 || !req->started || !chat__log_enabled(req->log_level)) {
        return;
    }
    double ms = (double)(uv_hrtime() - req->started) / 1e6;
    chat__log(req->log_level, "http_request", "answered an HTTP request",
              json_pack("{s:s,s:s,s:i,s:f,s:s,s:s}", "method", method_names[req->method], "path",
                        req->path, "status", status, "ms", ms, "peer", req->peer, "request_id",
                        req->request_id));
}

void chat__http_respond(chat_http_req *req, int status, const char *content_type,
                        const void *body, size_t len)
{
    if (req->responded) {
        return;
    }
    log_request(req, status);
    req->responded = 1;
    req->status = status;
    req->content_type = content_type;
    /* LWS_PRE bytes of headroom in front of the body, as lws_write wants */
    chat__buf_reset(&req->resp);
    uint8_t pre[LWS_PRE] = {0};
    if (chat__buf_append(&req->resp, pre, sizeof pre) ||
        chat__buf_append(&req->resp, body, len)) {
        req->status = 500;
        req->resp.len = LWS_PRE;
    }
    if (req->wsi) {
        lws_callback_on_writable(req->wsi);
    }
}

void chat__http_respond_json(chat_http_req *req, int status, json_t *body)
{
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (!text) {
        static const char oom[] = "{\"ok\":false,\"error\":{\"code\":\"internal\","
                                  "\"message\":\"out of memory\"}}";
        chat__http_respond(req, 500, "application/json", oom, sizeof oom - 1);
        return;
    }
    chat__http_respond(req, status, "application/json", text, strlen(text));
    free(text);
}

void chat__http_respond_error(chat_http_req *req, int err, const char *message)
{
    chat__stats_error(req->rt, err);
    json_t *body = json_pack("{s:b,s:{s:s,s:s}}", "ok", 0, "error", "code", chat_errcode(err),
                             "message", message ? message : chat_strerror(err));
    chat__http_respond_json(req, chat_errstatus(err), body);
}

int chat__http_query_int(chat_http_req *req, const char *name, int def, int min, int max,
                         int *out)
{
    char buf[16];
    const char *v = chat__http_query(req, name, buf, sizeof buf);
    *out = def;
    if (!v) {
        return 0;
    }
    char *end;
    long n = strtol(v, &end, 10);
    if (end == v || *end || n < min || n > max) {
        char msg[96];
        snprintf(msg, sizeof msg, "%s must be between %d and %d", name, min, max);
        chat__http_respond_error(req, CHAT_EINVAL, msg);
        return -1;
    }
    *out = (int)n;
    return 0;
}

int chat__http_routes_add(chat_runtime *rt, const chat_http_route *routes, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (chat__vec_push(&rt->http_routes, (void *)&routes[i])) {
            return CHAT_ENOMEM;
        }
    }
    return 0;
}

void chat__http_set_fallback(chat_runtime *rt, int (*fn)(chat_http_req *req))
{
    rt->http_fallback = fn;
}

static int bearer_user(chat_http_req *req, char user_id[25])
{
    const char *h = req->authorization;
    if (!h || strncasecmp(h, "Bearer ", 7) != 0) {
        return CHAT_EUNAUTHORIZED;
    }
    uv_timeval64_t tv;
    uv_gettimeofday(&tv);
    return chat__jwt_verify(req->rt->jwt_secret, h + 7, tv.tv_sec, user_id);
}

void chat__http_auth_failed(chat_http_req *req, const char *door, const char *reason,
                            const char *login)
{
    json_t *f = json_pack("{s:s,s:s,s:s,s:s,s:s}", "door", door, "reason", reason, "path",
                          req->path, "peer", req->peer, "request_id", req->request_id);
    if (f && login) {
        json_object_set_new(f, "login", json_string(login));
    }
    chat__log(CHAT_LOG_WARN, "auth_failed", "a request failed authentication", f);
}

/* A client's X-Request-Id is kept when it is 1..64 of [A-Za-z0-9._:-] (so it is safe in
 * logs and headers); otherwise the request gets 16 random hex characters. */
static void take_request_id(chat_http_req *req)
{
    char id[72] = "";
    int n = req->wsi ? lws_hdr_custom_copy(req->wsi, id, sizeof id, "x-request-id:", 13) : -1;
    int ok = n > 0 && n <= 64;
    for (int i = 0; ok && i < n; i++) {
        char ch = id[i];
        ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
             ch == '.' || ch == '_' || ch == ':' || ch == '-';
    }
    if (!ok) {
        unsigned char raw[8];
        uv_random(NULL, NULL, raw, sizeof raw, 0, NULL);
        for (size_t i = 0; i < sizeof raw; i++) {
            snprintf(id + 2 * i, 3, "%02x", raw[i]);
        }
    }
    snprintf(req->request_id, sizeof req->request_id, "%s", id);
    size_t used = strlen(req->extra_headers);
    snprintf(req->extra_headers + used, sizeof req->extra_headers - used,
             "X-Request-Id: %s\r\n", req->request_id);
}

/* An exact path, or a prefix route (its path ends in a slash and a star). */
static int route_matches(const chat_http_route *r, const char *path)
{
    size_t n = strlen(r->path);
    if (n >= 2 && r->path[n - 1] == '*' && r->path[n - 2] == '/') {
        return strncmp(r->path, path, n - 1) == 0;
    }
    return strcmp(r->path, path) == 0;
}

void chat__http_dispatch(chat_http_req *req)
{
    req->started = uv_hrtime();
    chat__peer_address(req->rt, req->wsi, req->peer, sizeof req->peer);
    take_request_id(req);
    /* Engine.IO polling has the connection lines; probes and scrapes come every few
     * seconds, so their lines are debug */
    req->log_level = strncmp(req->path, "/socket.io", 10) == 0 ? -1
                     : strcmp(req->path, "/healthz") == 0 || strcmp(req->path, "/readyz") == 0 ||
                             strcmp(req->path, "/metrics") == 0
                         ? CHAT_LOG_DEBUG
                         : CHAT_LOG_INFO;
    /* with CHAT_ADMIN_LISTEN, /admin/ is there and only there (with the probes and metrics) */
    const char *admin_listen = req->rt->cfg.admin_listen;
    if (admin_listen && *admin_listen) {
        int admin_path = strncmp(req->path, "/admin/", 7) == 0;
        int probe = strcmp(req->path, "/healthz") == 0 || strcmp(req->path, "/readyz") == 0 ||
                    strcmp(req->path, "/metrics") == 0;
        if (req->admin_door ? !admin_path && !probe : admin_path) {
            chat__http_respond_error(req, CHAT_ENOTFOUND,
                                     req->admin_door
                                         ? "the admin address serves /admin/, /healthz, /readyz "
                                           "and /metrics"
                                         : "no such path");
            return;
        }
    }
    int path_known = 0;
    const chat_vec *routes = &req->rt->http_routes;
    for (uint32_t i = 0; i < routes->len; i++) {
        const chat_http_route *r = routes->items[i];
        if (!route_matches(r, req->path)) {
            continue;
        }
        path_known = 1;
        int method = req->method == CHAT_HTTP_HEAD ? CHAT_HTTP_GET : req->method;
        if (r->method != method && r->method != CHAT_HTTP_ANY) {
            continue;
        }
        char user_id[25];
        if (r->auth && bearer_user(req, user_id)) {
            chat__http_auth_failed(req, "rest",
                                   req->authorization ? "invalid or expired token" : "no token",
                                   NULL);
            chat__http_respond_error(req, CHAT_EUNAUTHORIZED,
                                     "send a valid token: Authorization: Bearer <JWT>");
            return;
        }
        char why[640];
        if (r->auth && req->rt->http_user_refused &&
            req->rt->http_user_refused(req->rt, user_id, why, sizeof why)) {
            chat__http_respond_error(req, CHAT_EFORBIDDEN, why); /* e.g. a disabled account */
            return;
        }
        r->fn(req, r->auth ? user_id : NULL);
        return;
    }
    if (path_known) {
        chat__http_respond_error(req, CHAT_EINVAL, "method not allowed on this path");
        return;
    }
    if (req->rt->http_fallback && req->rt->http_fallback(req) == 0) {
        return;
    }
    chat__http_respond_error(req, CHAT_ENOTFOUND, "no such path");
}
