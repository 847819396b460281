/* bounds.h: the bounds on what clients can make one node hold (connections in total and per
 * address, Engine.IO sessions that never connected a namespace, bytes queued to a client,
 * accept errors), and the counters /metrics shows when they trip. Loop thread only. */
#ifndef CHAT_BOUNDS_H
#define CHAT_BOUNDS_H

#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#include "buf.h"
#include "map.h"

struct lws;
typedef struct chat_runtime chat_runtime;

typedef struct chat_ip_count {
    char ip[64]; /* the map's key */
    int n;
} chat_ip_count;

typedef struct chat_limits {
    chat_runtime *rt;
    uv_thread_t loop_thread;  /* the thread that runs rt's loop (it started the runtime) */
    int max_conns;            /* effective: the setting, or the open-file limit less a reserve */
    int conns;                /* accepted TCP connections still open */
    chat_map conns_by_ip;     /* TCP peer -> chat_ip_count (unless the proxy is trusted) */
    chat_map conns_by_wsi;    /* "%p" of the wsi -> chat_conn */
    struct chat_conn *filtered; /* accepted by the filter, waiting for its wsi */
    int unconnected;          /* Engine.IO sessions with no namespace connected yet */
    chat_map unconnected_by_ip; /* client address -> chat_ip_count */
    chat_map sessions_by_ip;  /* client address -> chat_ip_count: every Engine.IO session */
    /* accept errors: lws retries accept() at once, forever; we stop it polling the listen
     * socket for accept_backoff_ms and log once per second with a count */
    struct lws *listen_wsi;
    int probe_fd;             /* our own connection to the listener, to learn listen_wsi */
    struct sockaddr_storage probe_addr;
    uv_timer_t accept_timer;
    int accept_paused;
    int timer_open;
    uint64_t accept_errors_unlogged;
    uint64_t accept_last_log_ms;
    int accept_last_errno;
    /* counters for /metrics */
    uint64_t accept_errors;
    uint64_t conns_refused;         /* max_connections */
    uint64_t conns_refused_ip;      /* max_connections_per_ip */
    uint64_t sessions_refused;      /* max_unconnected_sessions */
    uint64_t sessions_refused_ip;   /* max_unconnected_sessions_per_ip */
    uint64_t connect_timeouts;      /* connect_timeout_ms */
    uint64_t sessions_refused_all_ip; /* max_sessions_per_ip */
    uint64_t slow_clients;          /* session_queue_max_bytes */
} chat_limits;

int chat__limits_init(chat_runtime *rt);
void chat__limits_stop(chat_runtime *rt); /* closes the timer (the loop runs the close) */
void chat__limits_free(chat_runtime *rt);

/* Connects to the listener once, so the accept path learns the listen wsi before any client
 * arrives (lws has no public accessor for it; the backoff needs it). */
void chat__limits_probe(chat_runtime *rt, const char *host, int port);

/* lws callbacks on the listen socket and connection wsis (net.c). filter: nonzero refuses
 * the connection (after answering 503 when the socket takes it). */
int chat__limits_filter(chat_runtime *rt, struct lws *listen_wsi, int fd);
void chat__limits_wsi_create(chat_runtime *rt, struct lws *wsi);
void chat__limits_wsi_destroy(chat_runtime *rt, struct lws *wsi);
/* 1 when the calling thread runs rt's loop: only then may lws's log act on rt. */
int chat__limits_on_this_thread(chat_runtime *rt);
/* lws logged an accept() failure. Call on rt's loop thread. */
void chat__limits_accept_error(chat_runtime *rt, int err);

/* A new Engine.IO session from a client address: 0, or CHAT_EUNAVAIL when the bounds on
 * sessions without a namespace, or on all sessions of that address (max_sessions_per_ip),
 * refuse it. Counts it as unconnected until chat__limits_session_done (a namespace connected,
 * or the session ended first), and as one of its address's sessions until
 * chat__limits_session_closed. */
int chat__limits_session_open(chat_runtime *rt, const char *peer);
void chat__limits_session_done(chat_runtime *rt, const char *peer);
void chat__limits_session_closed(chat_runtime *rt, const char *peer);

/* Appends the counters in the Prometheus text format. */
int chat__limits_metrics(chat_runtime *rt, chat_buf *b);

#endif
