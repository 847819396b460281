/* lua_http.c: chat.http.request{url, method, headers, body, timeout_ms}, an HTTP client for
 * scripts (webhooks), on libcurl's multi interface driven by the libuv loop: curl tells which
 * sockets to watch (uv_poll) and when to call it back (uv_timer), so a request never blocks
 * the loop. Each request has its own multi handle and closes everything it opened when it
 * ends or when its coroutine is abandoned. */
#include <curl/curl.h>
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "rt.h"
#include "script.h"

#define HTTP_BODY_MAX (1024 * 1024) /* a response larger than this fails the request */

typedef struct http_req {
    uv_timer_t timer; /* first: the request is freed when the timer has closed */
    uv_loop_t *loop;
    CURLM *multi;
    CURL *easy;
    struct curl_slist *headers;
    char *body;
    chat_buf resp;
    chat_pending *pending;
    int torn;
    char errbuf[CURL_ERROR_SIZE];
} http_req;

typedef struct http_sock {
    uv_poll_t poll;
    http_req *req;
    curl_socket_t fd;
} http_sock;

static void sock_closed(uv_handle_t *h) { free(h->data); }

static void teardown_closed(uv_handle_t *h)
{
    http_req *r = (http_req *)h;
    chat__buf_free(&r->resp);
    free(r->body);
    free(r);
}

/* Removes the easy handle (curl closes its sockets through socket_cb), frees curl's side and
 * closes the timer, whose close frees the request. */
static void teardown(http_req *r)
{
    if (r->torn) {
        return;
    }
    r->torn = 1;
    curl_multi_remove_handle(r->multi, r->easy);
    curl_easy_cleanup(r->easy);
    curl_multi_cleanup(r->multi);
    curl_slist_free_all(r->headers);
    uv_timer_stop(&r->timer);
    uv_close((uv_handle_t *)&r->timer, teardown_closed);
}

static void check_done(http_req *r)
{
    int left;
    CURLMsg *m;
    while ((m = curl_multi_info_read(r->multi, &left))) {
        if (m->msg != CURLMSG_DONE) {
            continue;
        }
        CURLcode code = m->data.result;
        chat_pending *p = r->pending;
        lua_State *T = chat__script_pending_thread(p);
        int n;
        if (code != CURLE_OK) {
            n = chat__lua_fail(T, CHAT_EUNAVAIL,
                               r->errbuf[0] ? r->errbuf : curl_easy_strerror(code));
        } else {
            long status = 0;
            curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
            lua_createtable(T, 0, 2);
            lua_pushinteger(T, status);
            lua_setfield(T, -2, "status");
            lua_pushlstring(T, r->resp.len ? (const char *)r->resp.data : "", r->resp.len);
            lua_setfield(T, -2, "body");
            n = 1;
        }
        teardown(r);
        chat__script_pending_done(p, n);
        return;
    }
}

static void poll_cb(uv_poll_t *h, int status, int events)
{
    http_sock *s = h->data;
    http_req *r = s->req;
    int flags = status < 0 ? CURL_CSELECT_ERR : 0;
    flags |= (events & UV_READABLE) ? CURL_CSELECT_IN : 0;
    flags |= (events & UV_WRITABLE) ? CURL_CSELECT_OUT : 0;
    int running;
    curl_multi_socket_action(r->multi, s->fd, flags, &running);
    check_done(r);
}

static int socket_cb(CURL *easy, curl_socket_t fd, int action, void *userp, void *socketp)
{
    http_req *r = userp;
    http_sock *s = socketp;
    (void)easy;
    if (action == CURL_POLL_REMOVE) {
        if (s) {
            uv_poll_stop(&s->poll);
            uv_close((uv_handle_t *)&s->poll, sock_closed);
            curl_multi_assign(r->multi, fd, NULL);
        }
        return 0;
    }
    if (!s) {
        s = calloc(1, sizeof *s);
        if (!s || uv_poll_init_socket(r->loop, &s->poll, fd)) {
            free(s);
            return -1;
        }
        s->poll.data = s;
        s->req = r;
        s->fd = fd;
        if (!chat__script_pending_sync(r->pending)) {
            uv_unref((uv_handle_t *)&s->poll);
        }
        curl_multi_assign(r->multi, fd, s);
    }
    int events = (action & CURL_POLL_IN ? UV_READABLE : 0) |
                 (action & CURL_POLL_OUT ? UV_WRITABLE : 0);
    uv_poll_start(&s->poll, events, poll_cb);
    return 0;
}

static void timeout_fire(uv_timer_t *t)
{
    http_req *r = (http_req *)t;
    int running;
    curl_multi_socket_action(r->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(r);
}

static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    http_req *r = userp;
    (void)multi;
    if (timeout_ms < 0) {
        uv_timer_stop(&r->timer);
    } else {
        uv_timer_start(&r->timer, timeout_fire, (uint64_t)timeout_ms, 0);
    }
    return 0;
}

static size_t write_cb(char *data, size_t size, size_t n, void *userp)
{
    http_req *r = userp;
    size_t len = size * n;
    if (r->resp.len + len > HTTP_BODY_MAX || chat__buf_append(&r->resp, data, len)) {
        return 0; /* curl fails the transfer: CURLE_WRITE_ERROR */
    }
    return len;
}

/* The coroutine was abandoned (its deadline, a reload, shutdown): stop the transfer. */
static void http_cancel(void *arg) { teardown(arg); }

static const char *opt_string(lua_State *L, const char *name, size_t *len)
{
    lua_getfield(L, 1, name);
    const char *s = lua_isnil(L, -1) ? NULL : lua_tolstring(L, -1, len);
    if (!lua_isnil(L, -1) && !s) {
        luaL_error(L, "bad field '%s' (a string expected)", name);
    }
    lua_pop(L, 1); /* the string stays alive: the table at 1 holds it */
    return s;
}

/* chat.http.request{url = , method = "GET", headers = {name = value}, body = , timeout_ms =
 * 10000} -> {status, body} | nil, message, "unavailable" (no answer: a refused connection,
 * a timeout, a response over 1 MiB). An HTTP error status is an answer, not a failure. */
static int http_request(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    size_t body_len = 0;
    const char *url = opt_string(L, "url", NULL);
    const char *method = opt_string(L, "method", NULL);
    const char *body = opt_string(L, "body", &body_len);
    luaL_argcheck(L, url && (strncmp(url, "http://", 7) == 0 || strncmp(url, "https://", 8) == 0),
                  1, "url: an http:// or https:// URL");
    lua_getfield(L, 1, "timeout_ms");
    lua_Integer timeout = luaL_optinteger(L, -1, 10000);
    lua_pop(L, 1);
    luaL_argcheck(L, timeout >= 1 && timeout <= 600000, 1, "timeout_ms: 1 to 600000");
    const char *why = chat__script_wait_error(L);
    if (why) {
        return luaL_error(L, "%s", why);
    }
    http_req *r = calloc(1, sizeof *r);
    if (!r) {
        return luaL_error(L, "out of memory");
    }
    if (lua_getfield(L, 1, "headers") == LUA_TTABLE) {
        lua_pushnil(L);
        while (lua_next(L, -2)) {
            if (lua_type(L, -2) == LUA_TSTRING && lua_type(L, -1) == LUA_TSTRING &&
                !strpbrk(lua_tostring(L, -2), "\r\n:") && !strpbrk(lua_tostring(L, -1), "\r\n")) {
                const char *h = lua_pushfstring(L, "%s: %s", lua_tostring(L, -2),
                                                lua_tostring(L, -1));
                struct curl_slist *next = curl_slist_append(r->headers, h);
                if (next) {
                    r->headers = next;
                }
                lua_pop(L, 1);
            }
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
    r->loop = chat__script_loop(L);
    r->multi = curl_multi_init();
    r->easy = curl_easy_init();
    if (body && !(r->body = malloc(body_len ? body_len : 1))) {
        body = NULL;
    }
    if (!r->multi || !r->easy || (body_len && !r->body)) {
        curl_easy_cleanup(r->easy);
        curl_multi_cleanup(r->multi);
        curl_slist_free_all(r->headers);
        free(r->body);
        free(r);
        return luaL_error(L, "out of memory");
    }
    CURL *e = r->easy;
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)timeout);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "chatd");
    if (body) {
        memcpy(r->body, body, body_len);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)body_len);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body);
    }
    if (method) {
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
    }
    if (r->headers) {
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->headers);
    }
    curl_multi_setopt(r->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
    curl_multi_setopt(r->multi, CURLMOPT_SOCKETDATA, r);
    curl_multi_setopt(r->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(r->multi, CURLMOPT_TIMERDATA, r);
    uv_timer_init(r->loop, &r->timer);
    r->pending = chat__script_pending_new(L);
    if (!chat__script_pending_sync(r->pending)) {
        uv_unref((uv_handle_t *)&r->timer); /* a waiting script does not keep chatd up */
    }
    chat__script_pending_on_cancel(r->pending, http_cancel, r);
    curl_multi_add_handle(r->multi, r->easy); /* sets the first timeout through timer_cb */
    lua_settop(L, 0);
    return chat__script_await(L, r->pending);
}

static const luaL_Reg http_funcs[] = {
    {"request", http_request},
    {NULL, NULL},
};

int luaopen_chat_http(lua_State *L)
{
    static int ready;
    if (!ready) {
        curl_global_init(CURL_GLOBAL_DEFAULT);
        ready = 1;
    }
    luaL_newlib(L, http_funcs);
    return 1;
}
