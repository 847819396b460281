/* redis_conn.c: a self-healing hiredis async connection on the uv loop.
 *
 * States: DOWN (waiting out the backoff) -> RESOLVING (uv_getaddrinfo, only for host names:
 * hiredis would resolve them with a blocking call) -> CONNECTING (non-blocking connect) ->
 * HANDSHAKE (AUTH, SELECT and a PING pipelined; the PONG proves the server answers) -> UP.
 * Any failure goes back to DOWN and schedules the next attempt. One timer serves every
 * state: the backoff, the connect deadline, and the probe while UP. */
#include "redis_conn.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <hiredis/adapters/libuv.h>
#include <hiredis/async.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat.h"
#include "log.h"
#include "stats.h"

#define RC_BACKOFF_MIN_MS 100
#define RC_BACKOFF_MAX_MS 5000
#define RC_CONNECT_TIMEOUT_MS 2000 /* connect plus handshake */
#define RC_PROBE_EVERY_MS 1000
#define RC_PROBE_TIMEOUT_MS 3000
/* A subscriber may only (un)subscribe, so it probes by subscribing again to this channel:
 * Redis confirms every SUBSCRIBE, even a repeated one. */
#define RC_PROBE_CHANNEL "__chatd:probe"

enum { RC_DOWN, RC_RESOLVING, RC_CONNECTING, RC_HANDSHAKE, RC_UP };

struct chat_redis {
    uv_loop_t *loop;
    uv_timer_t timer;
    uv_getaddrinfo_t gai;
    redisAsyncContext *ac; /* the live context, NULL while DOWN or RESOLVING */
    redisLibuvEvents *ev;  /* its poll handle (the libuv adapter's) */
    int state;
    int closing;   /* chat__redis_free was called */
    int resolving; /* gai in flight: the memory waits for it */
    int timer_open;
    int subscriber;
    int outstanding; /* replies owed to chat__redis_command callers */
    uint64_t backoff_ms;
    uint64_t probe_sent; /* loop time of the unanswered probe, 0 when none */
    uint64_t down_since; /* loop time of the first failure of this outage, 0 while up */
    int down_logged;
    int auth_logged; /* "redis_auth_failed" said since the last success */
    int was_up;
    chat_redis_state_cb on_state;
    void *arg;
    chat_redis_reply_cb sub_cb; /* the subscriber's handler for every channel */
    void *sub_arg;
    char *role;
    char *user;
    char *password;
    int db;
    int port;
    int numeric; /* host is an IP address: no resolution */
    char host[256];
    char ip[INET6_ADDRSTRLEN];
    char addr[300];
    char err[512];
};

typedef struct rc_cmd {
    chat_redis *r;
    chat_redis_reply_cb cb;
    void *arg;
} rc_cmd;

static void rc_connect(chat_redis *r);
static void rc_lost(chat_redis *r);

/* ---- the libuv adapter, with hiredis 1.0's fix for poll errors ----
 * hiredis 0.14's redisLibuvPoll returns when status != 0. libuv reports POLLERR (a refused
 * connect, a reset connection) exactly that way and stops the handle, so the context would
 * wait forever and no callback would ever say the connection is gone. Here hiredis reads or
 * writes instead, finds the socket error and disconnects. */

static void rc_poll_cb(uv_poll_t *handle, int status, int events)
{
    redisLibuvEvents *p = handle->data;
    int ev = status ? p->events : events;
    if (p->context && (ev & UV_READABLE)) {
        redisAsyncHandleRead(p->context);
    }
    if (p->context && (ev & UV_WRITABLE)) {
        redisAsyncHandleWrite(p->context);
    }
}

static void rc_poll_update(redisLibuvEvents *p)
{
    if (p->events) {
        uv_poll_start(&p->handle, p->events, rc_poll_cb);
    } else {
        uv_poll_stop(&p->handle);
    }
}

static void rc_add_read(void *privdata)
{
    redisLibuvEvents *p = privdata;
    p->events |= UV_READABLE;
    rc_poll_update(p);
}

static void rc_del_read(void *privdata)
{
    redisLibuvEvents *p = privdata;
    p->events &= ~UV_READABLE;
    rc_poll_update(p);
}

static void rc_add_write(void *privdata)
{
    redisLibuvEvents *p = privdata;
    p->events |= UV_WRITABLE;
    rc_poll_update(p);
}

static void rc_del_write(void *privdata)
{
    redisLibuvEvents *p = privdata;
    p->events &= ~UV_WRITABLE;
    rc_poll_update(p);
}

/* ---- URL ---- */

static int hexval(int c)
{
    return isdigit(c) ? c - '0' : isxdigit(c) ? (tolower(c) - 'a' + 10) : -1;
}

/* Copies s[0..n) with %XX decoded; NULL on out-of-memory or a bad escape. */
static char *pct_decode(const char *s, size_t n)
{
    char *out = malloc(n + 1);
    size_t j = 0;
    if (!out) {
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '%') {
            out[j++] = s[i];
            continue;
        }
        int hi = i + 2 < n ? hexval((unsigned char)s[i + 1]) : -1;
        int lo = i + 2 < n ? hexval((unsigned char)s[i + 2]) : -1;
        if (hi < 0 || lo < 0) {
            free(out);
            return NULL;
        }
        out[j++] = (char)(hi * 16 + lo);
        i += 2;
    }
    out[j] = '\0';
    return out;
}

/* redis://[[user]:password@]host[:port][/db]; "redis://secret@host" takes secret as the
 * password (Redis before 6 had no users). */
static int rc_parse_url(chat_redis *r, const char *url)
{
    static const char scheme[] = "redis://";
    if (!url || strncmp(url, scheme, sizeof scheme - 1) != 0) {
        return CHAT_EINVAL;
    }
    const char *p = url + sizeof scheme - 1;
    const char *end = p + strcspn(p, "/?#");
    const char *at = memchr(p, '@', (size_t)(end - p));
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (colon) {
            if (colon > p && !(r->user = pct_decode(p, (size_t)(colon - p)))) {
                return CHAT_EINVAL;
            }
            if (!(r->password = pct_decode(colon + 1, (size_t)(at - colon - 1)))) {
                return CHAT_EINVAL;
            }
        } else if (!(r->password = pct_decode(p, (size_t)(at - p)))) {
            return CHAT_EINVAL;
        }
        p = at + 1;
    }
    const char *host = p;
    const char *host_end;
    const char *port = NULL;
    if (*p == '[') { /* [::1]:6379 */
        host = p + 1;
        host_end = memchr(host, ']', (size_t)(end - host));
        if (!host_end) {
            return CHAT_EINVAL;
        }
        port = host_end + 1 < end && host_end[1] == ':' ? host_end + 2 : NULL;
    } else {
        host_end = memchr(p, ':', (size_t)(end - p));
        if (host_end) {
            port = host_end + 1;
        } else {
            host_end = end;
        }
    }
    size_t hn = (size_t)(host_end - host);
    if (hn == 0 || hn >= sizeof r->host) {
        return CHAT_EINVAL;
    }
    memcpy(r->host, host, hn);
    r->host[hn] = '\0';
    r->port = 6379;
    if (port) {
        char *e;
        long v = strtol(port, &e, 10);
        if (e != end || e == port || v < 1 || v > 65535) {
            return CHAT_EINVAL;
        }
        r->port = (int)v;
    }
    if (*end == '/' && end[1] && end[1] != '?' && end[1] != '#') {
        char *e;
        long v = strtol(end + 1, &e, 10);
        if ((*e && *e != '?' && *e != '#') || e == end + 1 || v < 0 || v > 100000) {
            return CHAT_EINVAL;
        }
        r->db = (int)v;
    }
    struct in6_addr a6;
    r->numeric = inet_pton(AF_INET, r->host, &a6) == 1 || inet_pton(AF_INET6, r->host, &a6) == 1;
    if (r->numeric) {
        snprintf(r->ip, sizeof r->ip, "%.45s", r->host);
    }
    snprintf(r->addr, sizeof r->addr, strchr(r->host, ':') ? "[%s]:%d" : "%s:%d", r->host, r->port);
    return 0;
}

/* ---- state ---- */

static void rc_track(chat_redis *r, int delta)
{
    r->outstanding += delta;
    if (r->outstanding < 0) {
        r->outstanding = 0; /* a reply from a context already given up */
    }
    /* a connection with nothing owed must not keep the loop (and a stopping server) alive */
    if (r->ev) {
        if (r->outstanding > 0) {
            uv_ref((uv_handle_t *)&r->ev->handle);
        } else {
            uv_unref((uv_handle_t *)&r->ev->handle);
        }
    }
}

static void rc_timer_cb(uv_timer_t *t);

static void rc_arm(chat_redis *r, uint64_t timeout, uint64_t repeat)
{
    if (!r->closing) {
        uv_timer_start(&r->timer, rc_timer_cb, timeout, repeat);
    }
}

static void rc_log_up(chat_redis *r)
{
    uint64_t down_ms = r->down_since ? uv_now(r->loop) - r->down_since : 0;
    if (r->was_up) {
        chat__log(CHAT_LOG_INFO, "redis_up", "reconnected to Redis",
                  json_pack("{s:s,s:s,s:I}", "role", r->role, "redis", r->addr, "down_ms",
                            (json_int_t)down_ms));
    } else {
        chat__log(CHAT_LOG_INFO, "redis_up", "connected to Redis",
                  json_pack("{s:s,s:s}", "role", r->role, "redis", r->addr));
    }
}

static void rc_set_up(chat_redis *r)
{
    r->state = RC_UP;
    r->backoff_ms = RC_BACKOFF_MIN_MS;
    r->probe_sent = 0;
    if (r->down_logged || !r->was_up) {
        rc_log_up(r);
    }
    if (r->was_up) {
        chat__stats_redis_reconnect(r->role);
    }
    r->down_logged = 0;
    r->auth_logged = 0;
    r->down_since = 0;
    r->was_up = 1;
    rc_arm(r, RC_PROBE_EVERY_MS, RC_PROBE_EVERY_MS);
    if (r->on_state) {
        r->on_state(r, 1, r->arg);
    }
}

/* Drops the current context on our own decision (timeout, refused handshake). */
static void rc_drop(chat_redis *r, const char *why)
{
    redisAsyncContext *ac = r->ac;
    snprintf(r->err, sizeof r->err, "%s", why);
    if (!ac) {
        return;
    }
    /* pending callbacks run with NULL; a connected context then reports through
     * rc_on_disconnect, which calls rc_lost */
    redisAsyncFree(ac);
    if (r->ac == ac) {
        /* never connected (no disconnect callback), or freed later from inside a callback */
        r->ac = NULL;
        r->ev = NULL;
        rc_lost(r);
    }
}

static void rc_lost(chat_redis *r)
{
    int was = r->state;
    r->state = RC_DOWN;
    r->probe_sent = 0;
    r->outstanding = 0;
    if (r->closing) {
        return;
    }
    if (!r->down_since) {
        r->down_since = uv_now(r->loop);
    }
    if (!r->down_logged) {
        r->down_logged = 1;
        chat__log(CHAT_LOG_WARN, "redis_down",
                  r->was_up ? "lost the connection to Redis; reconnecting with backoff (up to "
                              "every 5 s). Check that redis-server is running and reachable at "
                              "CHAT_REDIS_URL"
                            : "cannot connect to Redis; retrying with backoff (up to every 5 s). "
                              "Check that redis-server is running and reachable at "
                              "CHAT_REDIS_URL",
                  json_pack("{s:s,s:s,s:s}", "role", r->role, "redis", r->addr, "error",
                            r->err[0] ? r->err : "unknown"));
    } else {
        chat__log(CHAT_LOG_DEBUG, "redis_retry_failed", "Redis still does not answer",
                  json_pack("{s:s,s:s,s:s,s:I}", "role", r->role, "redis", r->addr, "error", r->err,
                            "next_ms", (json_int_t)r->backoff_ms));
    }
    rc_arm(r, r->backoff_ms, 0);
    r->backoff_ms = r->backoff_ms * 2 > RC_BACKOFF_MAX_MS ? RC_BACKOFF_MAX_MS : r->backoff_ms * 2;
    if (was == RC_UP && r->on_state) {
        r->on_state(r, 0, r->arg);
    }
}

/* ---- handshake and probes ---- */

static void rc_handshake_step(redisAsyncContext *ac, void *reply, void *privdata)
{
    chat_redis *r = privdata;
    redisReply *rep = reply;
    if (!rep || r->ac != ac || r->state != RC_HANDSHAKE) {
        return;
    }
    if (rep->type == REDIS_REPLY_ERROR) {
        char why[160];
        snprintf(why, sizeof why, "handshake refused: %s", rep->str);
        if (!r->auth_logged) {
            r->auth_logged = 1;
            chat__log(
                CHAT_LOG_ERROR, "redis_auth_failed",
                "Redis refused AUTH or SELECT; fix the password, user or database number "
                "in CHAT_REDIS_URL",
                json_pack("{s:s,s:s,s:s}", "role", r->role, "redis", r->addr, "error", rep->str));
        }
        rc_drop(r, why);
    }
}

static void rc_handshake_done(redisAsyncContext *ac, void *reply, void *privdata)
{
    chat_redis *r = privdata;
    redisReply *rep = reply;
    if (!rep || r->ac != ac || r->state != RC_HANDSHAKE) {
        return;
    }
    if (rep->type == REDIS_REPLY_ERROR) {
        rc_handshake_step(ac, reply, privdata);
        return;
    }
    rc_set_up(r);
}

static void rc_probe_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    chat_redis *r = privdata;
    redisReply *rep = reply;
    if (!rep || r->ac != ac) {
        return;
    }
    /* a subscriber's probe answers "subscribe"; a message on the probe channel is no answer */
    if (r->subscriber && !(rep->type == REDIS_REPLY_ARRAY && rep->elements >= 1 &&
                           rep->element[0]->type == REDIS_REPLY_STRING &&
                           strcasecmp(rep->element[0]->str, "subscribe") == 0)) {
        return;
    }
    r->probe_sent = 0;
}

static void rc_probe(chat_redis *r)
{
    uint64_t now = uv_now(r->loop);
    if (r->probe_sent) {
        if (now - r->probe_sent >= RC_PROBE_TIMEOUT_MS) {
            rc_drop(r, "Redis did not answer a PING within 3 s");
        }
        return;
    }
    int rc = r->subscriber
                 ? redisAsyncCommand(r->ac, rc_probe_reply, r, "SUBSCRIBE %s", RC_PROBE_CHANNEL)
                 : redisAsyncCommand(r->ac, rc_probe_reply, r, "PING");
    if (rc == REDIS_OK) {
        r->probe_sent = now ? now : 1;
    }
}

static void rc_timer_cb(uv_timer_t *t)
{
    chat_redis *r = t->data;
    switch (r->state) {
    case RC_DOWN:
        rc_connect(r);
        break;
    case RC_CONNECTING:
    case RC_HANDSHAKE:
        rc_drop(r, "timed out connecting (2 s)");
        break;
    case RC_UP:
        rc_probe(r);
        break;
    default:
        break;
    }
}

/* ---- connecting ---- */

static void rc_on_connect(const redisAsyncContext *cac, int status)
{
    chat_redis *r = cac->data;
    redisAsyncContext *ac = (redisAsyncContext *)cac;
    if (!r || r->ac != ac) {
        return;
    }
    if (status != REDIS_OK) {
        /* hiredis frees the context after this returns */
        snprintf(r->err, sizeof r->err, "%s", ac->errstr[0] ? ac->errstr : "connect failed");
        r->ac = NULL;
        r->ev = NULL;
        rc_lost(r);
        return;
    }
    r->state = RC_HANDSHAKE;
    /* pipelined: the server answers them in order, and the PONG says it all worked */
    if (r->password) {
        if (r->user) {
            redisAsyncCommand(ac, rc_handshake_step, r, "AUTH %s %s", r->user, r->password);
        } else {
            redisAsyncCommand(ac, rc_handshake_step, r, "AUTH %s", r->password);
        }
    }
    if (r->db && !r->subscriber) {
        redisAsyncCommand(ac, rc_handshake_step, r, "SELECT %d", r->db);
    }
    redisAsyncCommand(ac, rc_handshake_done, r, "PING");
}

static void rc_on_disconnect(const redisAsyncContext *cac, int status)
{
    chat_redis *r = cac->data;
    if (!r || r->ac != cac) {
        return;
    }
    if (status != REDIS_OK || !r->err[0]) {
        snprintf(r->err, sizeof r->err, "%s",
                 cac->errstr[0] ? cac->errstr : "the server closed the connection");
    }
    r->ac = NULL;
    r->ev = NULL;
    rc_lost(r);
}

static void rc_connect_ip(chat_redis *r)
{
    redisAsyncContext *ac = redisAsyncConnect(r->ip, r->port);
    r->err[0] = '\0';
    if (!ac) {
        snprintf(r->err, sizeof r->err, "out of memory");
        rc_lost(r);
        return;
    }
    if (ac->err) {
        snprintf(r->err, sizeof r->err, "%s", ac->errstr);
        redisAsyncFree(ac);
        rc_lost(r);
        return;
    }
    if (redisLibuvAttach(ac, r->loop) != REDIS_OK) {
        snprintf(r->err, sizeof r->err, "cannot watch the socket");
        redisAsyncFree(ac);
        rc_lost(r);
        return;
    }
    ac->ev.addRead = rc_add_read;
    ac->ev.delRead = rc_del_read;
    ac->ev.addWrite = rc_add_write;
    ac->ev.delWrite = rc_del_write;
    r->ac = ac;
    r->ev = ac->ev.data;
    uv_unref((uv_handle_t *)&r->ev->handle);
    ac->data = r;
    r->state = RC_CONNECTING;
    /* in 0.14 setting the connect callback is what asks for the first write event */
    redisAsyncSetDisconnectCallback(ac, rc_on_disconnect);
    redisAsyncSetConnectCallback(ac, rc_on_connect);
    rc_arm(r, RC_CONNECT_TIMEOUT_MS, 0);
}

static void rc_free_mem(chat_redis *r)
{
    free(r->role);
    free(r->user);
    free(r->password);
    free(r);
}

static void rc_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    chat_redis *r = req->data;
    r->resolving = 0;
    if (r->closing) {
        uv_freeaddrinfo(res);
        if (!r->timer_open) {
            rc_free_mem(r);
        }
        return;
    }
    if (status || !res) {
        snprintf(r->err, sizeof r->err, "cannot resolve %s: %s", r->host,
                 status ? uv_strerror(status) : "no address");
        uv_freeaddrinfo(res);
        rc_lost(r);
        return;
    }
    int rc = res->ai_family == AF_INET6
                 ? uv_ip6_name((struct sockaddr_in6 *)res->ai_addr, r->ip, sizeof r->ip)
                 : uv_ip4_name((struct sockaddr_in *)res->ai_addr, r->ip, sizeof r->ip);
    uv_freeaddrinfo(res);
    if (rc) {
        snprintf(r->err, sizeof r->err, "cannot use the address of %s", r->host);
        rc_lost(r);
        return;
    }
    rc_connect_ip(r);
}

static void rc_connect(chat_redis *r)
{
    if (r->numeric) {
        rc_connect_ip(r);
        return;
    }
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    r->state = RC_RESOLVING;
    r->gai.data = r;
    int rc = uv_getaddrinfo(r->loop, &r->gai, rc_resolved, r->host, NULL, &hints);
    if (rc) {
        snprintf(r->err, sizeof r->err, "cannot resolve %s: %s", r->host, uv_strerror(rc));
        rc_lost(r);
        return;
    }
    r->resolving = 1;
}

/* ---- public ---- */

int chat__redis_new(chat_redis **out, uv_loop_t *loop, const chat_redis_opts *opts)
{
    *out = NULL;
    chat_redis *r = calloc(1, sizeof *r);
    if (!r) {
        return CHAT_ENOMEM;
    }
    r->loop = loop;
    r->subscriber = opts->subscriber;
    r->on_state = opts->on_state;
    r->arg = opts->arg;
    r->backoff_ms = RC_BACKOFF_MIN_MS;
    r->role = strdup(opts->role ? opts->role : "redis");
    if (!r->role) {
        rc_free_mem(r);
        return CHAT_ENOMEM;
    }
    if (rc_parse_url(r, opts->url)) {
        chat__log(CHAT_LOG_ERROR, "bad_redis_url",
                  "CHAT_REDIS_URL must look like redis://127.0.0.1:6379/0 or "
                  "redis://:password@host:6379/0 (TLS is not supported: use a local TLS proxy)",
                  NULL); /* the URL may hold a password: not logged */
        rc_free_mem(r);
        return CHAT_EINVAL;
    }
    uv_timer_init(loop, &r->timer);
    r->timer.data = r;
    r->timer_open = 1;
    uv_unref((uv_handle_t *)&r->timer);
    rc_connect(r);
    *out = r;
    return 0;
}

static void rc_timer_closed(uv_handle_t *h)
{
    chat_redis *r = h->data;
    r->timer_open = 0;
    if (!r->resolving) {
        rc_free_mem(r);
    }
}

void chat__redis_free(chat_redis *r)
{
    if (!r) {
        return;
    }
    r->closing = 1;
    uv_timer_stop(&r->timer);
    redisAsyncContext *ac = r->ac;
    if (ac) {
        redisAsyncFree(ac); /* callbacks run now with NULL */
        r->ac = NULL;
        r->ev = NULL;
    }
    if (r->resolving) {
        uv_cancel((uv_req_t *)&r->gai); /* rc_resolved still runs, with UV_ECANCELED */
    }
    uv_close((uv_handle_t *)&r->timer, rc_timer_closed);
}

int chat__redis_is_up(const chat_redis *r)
{
    return r && r->state == RC_UP && r->ac;
}

const char *chat__redis_addr(const chat_redis *r)
{
    return r->addr;
}

static void rc_cmd_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    rc_cmd *c = privdata;
    (void)ac;
    rc_track(c->r, -1);
    c->cb(c->r, reply, c->arg);
    free(c);
}

static void rc_cmd_counted(redisAsyncContext *ac, void *reply, void *privdata)
{
    (void)ac;
    (void)reply;
    rc_track(privdata, -1);
}

int chat__redis_command(chat_redis *r, int argc, const char **argv, const size_t *lens,
                        chat_redis_reply_cb cb, void *arg)
{
    if (!r || r->subscriber || argc < 1) {
        return CHAT_EINVAL;
    }
    if (!chat__redis_is_up(r)) {
        return CHAT_EUNAVAIL;
    }
    rc_cmd *c = NULL;
    if (cb) {
        c = malloc(sizeof *c);
        if (!c) {
            return CHAT_ENOMEM;
        }
        c->r = r;
        c->cb = cb;
        c->arg = arg;
    }
    if (redisAsyncCommandArgv(r->ac, c ? rc_cmd_reply : rc_cmd_counted, c ? (void *)c : r, argc,
                              argv, lens) != REDIS_OK) {
        free(c); /* the context is going away (its callbacks are running) */
        return CHAT_EUNAVAIL;
    }
    rc_track(r, 1);
    return 0;
}

static void rc_sub_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    chat_redis *r = privdata;
    (void)ac;
    if (r->sub_cb) {
        r->sub_cb(r, reply, r->sub_arg);
    }
}

int chat__redis_subscribe(chat_redis *r, const char *verb, int n, const char **channels,
                          const size_t *lens, chat_redis_reply_cb cb, void *arg)
{
    if (!r || !r->subscriber || n < 1) {
        return CHAT_EINVAL;
    }
    if (!chat__redis_is_up(r)) {
        return CHAT_EUNAVAIL;
    }
    const char **argv = malloc(((size_t)n + 1) * sizeof *argv);
    size_t *argl = malloc(((size_t)n + 1) * sizeof *argl);
    int err = CHAT_ENOMEM;
    if (!argv || !argl) {
        goto done;
    }
    argv[0] = verb;
    argl[0] = strlen(argv[0]);
    for (int i = 0; i < n; i++) {
        argv[i + 1] = channels[i];
        argl[i + 1] = lens ? lens[i] : strlen(channels[i]);
    }
    r->sub_cb = cb;
    r->sub_arg = arg;
    /* hiredis keeps one callback per channel and calls it for each confirmation and
     * message; UNSUBSCRIBE answers through that same callback */
    err = redisAsyncCommandArgv(r->ac, rc_sub_reply, r, n + 1, argv, argl) == REDIS_OK
              ? 0
              : CHAT_EUNAVAIL;
done:
    free(argv);
    free(argl);
    return err;
}
