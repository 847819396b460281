/* http.c: HTTP requests and responses, and the route table. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "http.h"
#include "log.h"
#include "rt.h"

void chat__http_req_ref(chat_http_req *req) { req->refs++; }

void chat__http_req_unref(chat_http_req *req)
{
    if (!req || --req->refs > 0) {
        return;
    }
    free(req->query);
    free(req->authorization);
    free(req->if_none_match);
    free(req->content_type_in);
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

/* A route path ending in "/" "*" matches its prefix and one more non-empty segment
 * ("/users/<id>"); any other route path matches itself only. */
static int path_matches(const char *route, const char *path)
{
    size_t n = strlen(route);
    if (n >= 2 && route[n - 1] == '*' && route[n - 2] == '/') {
        return strncmp(route, path, n - 1) == 0 && path[n - 1] && !strchr(path + n - 1, '/');
    }
    return strcmp(route, path) == 0;
}

void chat__http_dispatch(chat_http_req *req)
{
    int path_known = 0;
    const chat_vec *routes = &req->rt->http_routes;
    for (uint32_t i = 0; i < routes->len; i++) {
        const chat_http_route *r = routes->items[i];
        if (!path_matches(r->path, req->path)) {
            continue;
        }
        path_known = 1;
        int method = req->method == CHAT_HTTP_HEAD ? CHAT_HTTP_GET : req->method;
        if (r->method != method && r->method != CHAT_HTTP_ANY) {
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
    if (req->rt->http_fallback && req->rt->http_fallback(req) == 0) {
        return;
    }
    chat__http_respond_error(req, CHAT_ENOTFOUND, "no such path");
}
