/* http.c: HTTP requests and responses, and the route table. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "log.h"
#include "rt.h"
#include "script.h"

#include <openssl/crypto.h>

void chat__http_req_ref(chat_http_req *req) { req->refs++; }

void chat__http_req_unref(chat_http_req *req)
{
    if (!req || --req->refs > 0) {
        return;
    }
    free(req->query);
    free(req->authorization);
    free(req->if_none_match);
    chat__buf_free(&req->body);
    chat__buf_free(&req->resp);
    free(req);
}

void chat__http_respond(chat_http_req *req, int status, const char *content_type,
                        const void *body, size_t len)
{
    if (req->responded) {
        return;
    }
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
    json_t *body = json_pack("{s:b,s:{s:s,s:s}}", "ok", 0, "error", "code", chat_errcode(err),
                             "message", message ? message : chat_strerror(err));
    chat__http_respond_json(req, chat_errstatus(err), body);
}

const char *chat__http_query(const chat_http_req *req, const char *name, char *buf,
                             size_t len)
{
    size_t n = strlen(name);
    for (const char *p = req->query; p && *p;) {
        const char *amp = strchr(p, '&');
        size_t plen = amp ? (size_t)(amp - p) : strlen(p);
        if (plen > n && strncmp(p, name, n) == 0 && p[n] == '=') {
            size_t vlen = plen - n - 1;
            if (vlen >= len) {
                return NULL;
            }
            memcpy(buf, p + n + 1, vlen);
            buf[vlen] = '\0';
            return buf;
        }
        if (plen == n && strncmp(p, name, n) == 0) {
            buf[0] = '\0';
            return buf;
        }
        p = amp ? amp + 1 : NULL;
    }
    return NULL;
}

/* POST /admin/reload with Authorization: Bearer <CHAT_ADMIN_TOKEN>: reloads the scripts and
 * answers with the error (file:line: message) when they did not load. */
static void admin_reload(chat_http_req *req, const char *user_id)
{
    (void)user_id;
    const char *token = req->rt->cfg.admin_token;
    const char *h = req->authorization;
    if (!token || !token[0]) {
        chat__http_respond_error(req, CHAT_ENOTFOUND,
                                 "the admin API is off; set CHAT_ADMIN_TOKEN to enable it");
        return;
    }
    size_t n = strlen(token);
    if (!h || strncasecmp(h, "Bearer ", 7) != 0 || strlen(h + 7) != n ||
        CRYPTO_memcmp(h + 7, token, n) != 0) {
        chat__http_respond_error(req, CHAT_EUNAUTHORIZED,
                                 "send Authorization: Bearer <CHAT_ADMIN_TOKEN>");
        return;
    }
    char err[1024];
    if (chat_runtime_reload(req->rt, err, sizeof err)) {
        chat__http_respond_error(req, CHAT_EINVAL, err);
        return;
    }
    int version;
    unsigned long reloads, failures, errors;
    chat__script_stats(req->rt->script, &version, &reloads, &failures, &errors);
    chat__http_respond_json(req, 200, json_pack("{s:b,s:i}", "ok", 1, "version", version));
}

typedef void (*route_fn)(chat_http_req *req, const char *user_id);

typedef struct route {
    int method;
    const char *path;
    int auth; /* 1: needs a valid bearer token */
    route_fn fn;
} route;

static const route routes[] = {
    {CHAT_HTTP_POST, "/auth/register", 0, chat__rest_register},
    {CHAT_HTTP_POST, "/auth/login", 0, chat__rest_login},
    {CHAT_HTTP_GET, "/me", 1, chat__rest_me},
    {CHAT_HTTP_GET, "/rooms", 1, chat__rest_rooms_list},
    {CHAT_HTTP_POST, "/rooms", 1, chat__rest_rooms_create},
    {CHAT_HTTP_GET, "/messages", 1, chat__rest_messages},
    {CHAT_HTTP_GET, "/healthz", 0, chat__rest_healthz},
    {CHAT_HTTP_GET, "/readyz", 0, chat__rest_readyz},
    {CHAT_HTTP_GET, "/metrics", 0, chat__rest_metrics},
    {CHAT_HTTP_POST, "/admin/reload", 0, admin_reload},
};

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

void chat__http_dispatch(chat_http_req *req)
{
    if (strcmp(req->path, "/socket.io/") == 0 || strcmp(req->path, "/socket.io") == 0) {
        chat__eio_http(req);
        return;
    }
    int path_known = 0;
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        const route *r = &routes[i];
        if (strcmp(r->path, req->path) != 0) {
            continue;
        }
        path_known = 1;
        int method = req->method == CHAT_HTTP_HEAD ? CHAT_HTTP_GET : req->method;
        if (r->method != method) {
            continue;
        }
        char user_id[25];
        if (r->auth && bearer_user(req, user_id)) {
            chat__http_respond_error(req, CHAT_EUNAUTHORIZED,
                                     "send a valid token: Authorization: Bearer <JWT>");
            return;
        }
        r->fn(req, r->auth ? user_id : NULL);
        return;
    }
    if (path_known) {
        chat__http_respond_error(req, CHAT_EINVAL, "method not allowed on this path");
        return;
    }
    if (chat__static_serve(req) == 0) {
        return;
    }
    chat__http_respond_error(req, CHAT_ENOTFOUND, "no such path");
}
