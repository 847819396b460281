/* bounds.c: connection bounds (see bounds.h). */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <unistd.h>

#include "bounds.h"
#include "log.h"
#include "rt.h"

/* One accepted TCP connection, from the filter until its wsi is destroyed. */
typedef struct chat_conn {
    char key[24];        /* "%p" of the wsi */
    chat_ip_count *ip;   /* NULL when per-address counting is off (trusted proxy) */
} chat_conn;

/* File descriptors kept free for everything that is not a client connection: the store's
 * files, the loop's own descriptors, Redis, static files, logs. */
static int fd_reserve(long limit)
{
    long r = 32 + limit / 16;
    return (int)(r > 256 ? 256 : r);
}

int chat__limits_init(chat_runtime *rt)
{
    chat_limits *l = calloc(1, sizeof *l);
    if (!l) {
        return CHAT_ENOMEM;
    }
    l->rt = rt;
    l->loop_thread = uv_thread_self();
    l->max_conns = rt->cfg.max_connections;
    if (l->max_conns <= 0) {
        struct rlimit rl;
        long lim = 1024;
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
            lim = (long)rl.rlim_cur;
        } else if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
            lim = 1L << 20;
        }
        long n = lim - fd_reserve(lim);
        l->max_conns = n < 1 ? 1 : n > 1000000 ? 1000000 : (int)n;
    }
    l->probe_fd = -1;
    uv_timer_init(rt->loop, &l->accept_timer);
    l->accept_timer.data = l;
    l->timer_open = 1;
    rt->limits = l;
    return 0;
}

static void timer_closed(uv_handle_t *h) { free(h->data); }

static void free_counts(chat_map *m)
{
    void *v;
    for (size_t i = 0; (v = chat__map_next(m, &i));) {
        free(v);
    }
    chat__map_free(m);
}

void chat__limits_stop(chat_runtime *rt)
{
    chat_limits *l = rt->limits;
    if (!l || !l->timer_open) {
        return;
    }
    /* the connections' records go when lws destroys their wsis; the rest goes with l */
    l->timer_open = 0;
    uv_timer_stop(&l->accept_timer);
}

void chat__limits_free(chat_runtime *rt)
{
    chat_limits *l = rt->limits;
    if (!l) {
        return;
    }
    rt->limits = NULL;
    free_counts(&l->conns_by_wsi);
    free_counts(&l->conns_by_ip);
    free_counts(&l->unconnected_by_ip);
    free_counts(&l->sessions_by_ip);
    free(l->filtered);
    if (l->probe_fd >= 0) {
        close(l->probe_fd);
    }
    /* the timer's memory is l itself: freed once the loop has closed the handle */
    uv_close((uv_handle_t *)&l->accept_timer, timer_closed);
}

/* ---- per-address counts ---- */

static chat_ip_count *ip_get(chat_map *m, const char *ip, int create)
{
    chat_ip_count *c = chat__map_get(m, ip);
    if (c || !create) {
        return c;
    }
    c = calloc(1, sizeof *c);
    if (!c) {
        return NULL;
    }
    snprintf(c->ip, sizeof c->ip, "%s", ip);
    if (chat__map_put(m, c->ip, c)) {
        free(c);
        return NULL;
    }
    return c;
}

static void ip_release(chat_map *m, chat_ip_count *c)
{
    if (c && --c->n <= 0) {
        chat__map_del(m, c->ip);
        free(c);
    }
}

/* ---- TCP connections ---- */

static void conn_release(chat_limits *l, chat_conn *c)
{
    l->conns--;
    ip_release(&l->conns_by_ip, c->ip);
    free(c);
}

/* A refused connection hears why when its socket can take it: a 503 in the PROTOCOL.md error
 * shape, then the close. What the client already sent is read first, so the close is a FIN
 * rather than a reset that could destroy the answer in flight. */
static void refuse(int fd, const char *message)
{
    char buf[4096], body[256], resp[512];
    /* at most 16 KB: a sender that keeps the socket readable must not hold the loop here */
    for (int i = 0; i < 4 && recv(fd, buf, sizeof buf, MSG_DONTWAIT) > 0; i++) {
    }
    int bl = snprintf(body, sizeof body,
                      "{\"ok\":false,\"error\":{\"code\":\"unavailable\",\"message\":\"%s\"}}",
                      message);
    int n = snprintf(resp, sizeof resp,
                     "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                     "Content-Length: %d\r\nRetry-After: 1\r\nConnection: close\r\n\r\n%s",
                     bl, body);
    if (send(fd, resp, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL) == n) {
        shutdown(fd, SHUT_WR);
    }
}

static void peer_of(int fd, char *out, size_t len)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    out[0] = '\0';
    if (getpeername(fd, (struct sockaddr *)&ss, &sl)) {
        return;
    }
    if (ss.ss_family == AF_INET) {
        inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, out, (socklen_t)len);
    } else if (ss.ss_family == AF_INET6) {
        struct in6_addr *a = &((struct sockaddr_in6 *)&ss)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a)) {
            inet_ntop(AF_INET, &a->s6_addr[12], out, (socklen_t)len);
        } else {
            inet_ntop(AF_INET6, a, out, (socklen_t)len);
        }
    }
}

void chat__limits_probe(chat_runtime *rt, const char *host, int port)
{
    chat_limits *l = rt->limits;
    char portstr[8];
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    if (!l || l->probe_fd >= 0) {
        return;
    }
    snprintf(portstr, sizeof portstr, "%d", port);
    if (getaddrinfo(host, portstr, &hints, &res) || !res) {
        return; /* no probe: listen_wsi is learnt at the first accepted connection */
    }
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    socklen_t sl = sizeof l->probe_addr;
    if (fd >= 0 && (connect(fd, res->ai_addr, res->ai_addrlen) == 0 || errno == EINPROGRESS) &&
        getsockname(fd, (struct sockaddr *)&l->probe_addr, &sl) == 0) {
        l->probe_fd = fd;
    } else if (fd >= 0) {
        close(fd);
    }
    freeaddrinfo(res);
}

static int same_addr(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family) {
        return 0;
    }
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    if (a->ss_family == AF_INET6) {
        const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
        return x->sin6_port == y->sin6_port &&
               memcmp(&x->sin6_addr, &y->sin6_addr, sizeof x->sin6_addr) == 0;
    }
    return 0;
}

/* The probe's connection, seen from the listener: a v4 peer on a dual-stack listener shows
 * as ::ffff:a.b.c.d, so compare after mapping it back. */
static int is_probe(chat_limits *l, int fd)
{
    struct sockaddr_storage peer;
    socklen_t sl = sizeof peer;
    if (l->probe_fd < 0 || getpeername(fd, (struct sockaddr *)&peer, &sl)) {
        return 0;
    }
    if (peer.ss_family == AF_INET6 && l->probe_addr.ss_family == AF_INET) {
        struct sockaddr_in6 *p6 = (struct sockaddr_in6 *)&peer;
        if (IN6_IS_ADDR_V4MAPPED(&p6->sin6_addr)) {
            struct sockaddr_in v4 = {.sin_family = AF_INET, .sin_port = p6->sin6_port};
            memcpy(&v4.sin_addr, &p6->sin6_addr.s6_addr[12], 4);
            memset(&peer, 0, sizeof peer);
            memcpy(&peer, &v4, sizeof v4);
        }
    }
    return same_addr(&peer, &l->probe_addr);
}

/* LWS_CALLBACK_FILTER_NETWORK_CONNECTION: lws has accept()ed fd on listen_wsi and asks
 * whether to keep it. Right behind it (same call stack) lws adopts the fd into a new wsi and
 * reports LWS_CALLBACK_WSI_CREATE, where the connection's record is bound to that wsi. */
int chat__limits_filter(chat_runtime *rt, struct lws *listen_wsi, int fd)
{
    chat_limits *l = rt->limits;
    if (!l) {
        return 0;
    }
    l->listen_wsi = listen_wsi;
    if (is_probe(l, fd)) {
        close(l->probe_fd); /* it served its purpose: lws closes its end */
        l->probe_fd = -1;
        return 1;
    }
    if (l->filtered) { /* never bound to a wsi: lws failed to adopt it */
        chat_conn *old = l->filtered;
        l->filtered = NULL;
        conn_release(l, old);
    }
    if (l->conns >= l->max_conns) {
        l->conns_refused++;
        refuse(fd, "the server has too many connections; retry shortly");
        return 1;
    }
    chat_ip_count *ip = NULL;
    if (!rt->cfg.trust_proxy) {
        /* Behind a trusted proxy every connection comes from the proxy: a per-address bound
         * there would cap the proxy itself. The proxy bounds connections per client
         * (nginx: limit_conn); chatd still bounds sessions per client address. */
        char peer[64];
        peer_of(fd, peer, sizeof peer);
        ip = ip_get(&l->conns_by_ip, peer, 1);
        if (!ip) {
            refuse(fd, "out of memory");
            return 1;
        }
        if (ip->n >= rt->cfg.max_connections_per_ip) {
            l->conns_refused_ip++;
            refuse(fd, "too many connections from your address; retry shortly");
            return 1;
        }
    }
    chat_conn *c = calloc(1, sizeof *c);
    if (!c) {
        if (ip && ip->n == 0) {
            chat__map_del(&l->conns_by_ip, ip->ip);
            free(ip);
        }
        refuse(fd, "out of memory");
        return 1;
    }
    if (ip) {
        ip->n++;
    }
    c->ip = ip;
    l->conns++;
    l->filtered = c;
    return 0;
}

void chat__limits_wsi_create(chat_runtime *rt, struct lws *wsi)
{
    chat_limits *l = rt->limits;
    if (!l || !l->filtered) {
        return; /* not an accepted connection (lws makes other wsis too) */
    }
    chat_conn *c = l->filtered;
    l->filtered = NULL;
    snprintf(c->key, sizeof c->key, "%p", (void *)wsi);
    if (chat__map_put(&l->conns_by_wsi, c->key, c)) {
        conn_release(l, c); /* uncounted rather than leaked */
    }
}

void chat__limits_wsi_destroy(chat_runtime *rt, struct lws *wsi)
{
    chat_limits *l = rt->limits;
    if (!l) {
        return;
    }
    if (wsi == l->listen_wsi) {
        l->listen_wsi = NULL;
    }
    char key[24];
    snprintf(key, sizeof key, "%p", (void *)wsi);
    chat_conn *c = chat__map_del(&l->conns_by_wsi, key);
    if (c) {
        conn_release(l, c);
    }
}

/* ---- accept errors ----
 * lws 4.1.6 workaround: when accept() fails with anything but EAGAIN (EMFILE at the
 * open-file limit, ENFILE, ENOBUFS), lws logs "accept: errno N" and returns; the listen
 * socket stays readable, so the loop calls it again at once: 100% CPU and millions of log
 * lines, while established connections starve. lws offers no hook for it but its log line,
 * so that line is where we act: stop polling the listen socket (rx flow control on the
 * listen wsi removes POLLIN from its libuv poll handle) for accept_backoff_ms, then resume.
 * Pending connections wait in the kernel's backlog meanwhile. The defect and the fix:
 * spec/e2e/limits.test.js, "accept() failing with EMFILE backs off" (530 log lines in the
 * first instant without this; a few with it). */

static void accept_resume(uv_timer_t *t)
{
    chat_limits *l = t->data;
    l->accept_paused = 0;
    if (l->listen_wsi && !l->rt->stopping) {
        lws_rx_flow_control(l->listen_wsi, 1);
    }
}

static void accept_log(chat_limits *l, uint64_t now)
{
    char msg[160];
    snprintf(msg, sizeof msg,
             "accept() failed; pausing new connections for %d ms each time (%s)",
             l->rt->cfg.accept_backoff_ms,
             l->accept_last_errno == EMFILE || l->accept_last_errno == ENFILE
                 ? "at the open-file limit: raise ulimit -n or lower max_connections"
                 : "see errno");
    chat__log(CHAT_LOG_ERROR, "accept_failed", msg,
              json_pack("{s:i,s:I,s:I}", "errno", l->accept_last_errno, "count",
                        (json_int_t)l->accept_errors_unlogged, "total",
                        (json_int_t)l->accept_errors));
    l->accept_errors_unlogged = 0;
    l->accept_last_log_ms = now;
}

int chat__limits_on_this_thread(chat_runtime *rt)
{
    uv_thread_t self = uv_thread_self();
    return rt->limits && uv_thread_equal(&rt->limits->loop_thread, &self);
}

void chat__limits_accept_error(chat_runtime *rt, int err)
{
    chat_limits *l = rt->limits;
    if (!l) {
        return;
    }
    l->accept_errors++;
    l->accept_errors_unlogged++;
    l->accept_last_errno = err;
    uint64_t now = uv_now(rt->loop);
    if (!l->accept_last_log_ms || now - l->accept_last_log_ms >= 1000) {
        accept_log(l, now);
    }
    if (!l->accept_paused && l->timer_open && l->listen_wsi) {
        l->accept_paused = 1;
        lws_rx_flow_control(l->listen_wsi, 0);
        uv_timer_start(&l->accept_timer, accept_resume, (uint64_t)rt->cfg.accept_backoff_ms, 0);
    }
}

/* ---- Engine.IO sessions without a namespace ---- */

int chat__limits_session_open(chat_runtime *rt, const char *peer)
{
    chat_limits *l = rt->limits;
    if (!l) {
        return 0;
    }
    if (l->unconnected >= rt->cfg.max_unconnected_sessions) {
        l->sessions_refused++;
        return CHAT_EUNAVAIL;
    }
    /* a connected session owns no TCP connection over polling: only this bounds how many
     * one address holds (handshake, CONNECT, repeat) */
    chat_ip_count *all = ip_get(&l->sessions_by_ip, peer, 0);
    if (all && all->n >= rt->cfg.max_sessions_per_ip) {
        l->sessions_refused_all_ip++;
        return CHAT_EUNAVAIL;
    }
    chat_ip_count *ip = ip_get(&l->unconnected_by_ip, peer, 0);
    if (ip && ip->n >= rt->cfg.max_unconnected_sessions_per_ip) {
        l->sessions_refused_ip++;
        return CHAT_EUNAVAIL;
    }
    if (!all && !(all = ip_get(&l->sessions_by_ip, peer, 1))) {
        return CHAT_ENOMEM;
    }
    if (!ip && !(ip = ip_get(&l->unconnected_by_ip, peer, 1))) {
        if (!all->n) {
            all->n = 1;
            ip_release(&l->sessions_by_ip, all); /* drops the empty entry */
        }
        return CHAT_ENOMEM;
    }
    ip->n++;
    all->n++;
    l->unconnected++;
    return 0;
}

void chat__limits_session_closed(chat_runtime *rt, const char *peer)
{
    chat_limits *l = rt->limits;
    if (l) {
        ip_release(&l->sessions_by_ip, chat__map_get(&l->sessions_by_ip, peer));
    }
}

void chat__limits_session_done(chat_runtime *rt, const char *peer)
{
    chat_limits *l = rt->limits;
    if (!l) {
        return;
    }
    l->unconnected--;
    ip_release(&l->unconnected_by_ip, chat__map_get(&l->unconnected_by_ip, peer));
}

int chat__limits_metrics(chat_runtime *rt, chat_buf *b)
{
    chat_limits *l = rt->limits;
    if (!l) {
        return 0;
    }
    return chat__buf_appendf(
        b,
        "# HELP chatd_connections Open TCP connections.\n"
        "# TYPE chatd_connections gauge\nchatd_connections %d\n"
        "# HELP chatd_connections_max The bound on open TCP connections (max_connections).\n"
        "# TYPE chatd_connections_max gauge\nchatd_connections_max %d\n"
        "# HELP chatd_connections_refused_total Connections refused at a bound.\n"
        "# TYPE chatd_connections_refused_total counter\n"
        "chatd_connections_refused_total{limit=\"max_connections\"} %llu\n"
        "chatd_connections_refused_total{limit=\"max_connections_per_ip\"} %llu\n"
        "# HELP chatd_sessions_unconnected Engine.IO sessions with no namespace connected.\n"
        "# TYPE chatd_sessions_unconnected gauge\nchatd_sessions_unconnected %d\n"
        "# HELP chatd_sessions_refused_total Engine.IO handshakes refused at a bound.\n"
        "# TYPE chatd_sessions_refused_total counter\n"
        "chatd_sessions_refused_total{limit=\"max_unconnected_sessions\"} %llu\n"
        "chatd_sessions_refused_total{limit=\"max_unconnected_sessions_per_ip\"} %llu\n"
        "chatd_sessions_refused_total{limit=\"max_sessions_per_ip\"} %llu\n"
        "# HELP chatd_connect_timeouts_total Sessions closed for connecting no namespace in "
        "time (connect_timeout_ms).\n"
        "# TYPE chatd_connect_timeouts_total counter\nchatd_connect_timeouts_total %llu\n"
        "# HELP chatd_slow_clients_total Sessions closed for having more than "
        "session_queue_max_bytes queued.\n"
        "# TYPE chatd_slow_clients_total counter\nchatd_slow_clients_total %llu\n"
        "# HELP chatd_accept_errors_total Failed accept() calls (each pauses accepting).\n"
        "# TYPE chatd_accept_errors_total counter\nchatd_accept_errors_total %llu\n",
        l->conns, l->max_conns, (unsigned long long)l->conns_refused,
        (unsigned long long)l->conns_refused_ip, l->unconnected,
        (unsigned long long)l->sessions_refused, (unsigned long long)l->sessions_refused_ip,
        (unsigned long long)l->sessions_refused_all_ip,
        (unsigned long long)l->connect_timeouts, (unsigned long long)l->slow_clients,
        (unsigned long long)l->accept_errors);
}
