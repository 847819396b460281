/* bus.h: cross-node publish/subscribe behind one interface, with two backends: in-process
 * (bus.c, one node) and Redis pub/sub (bus_redis.c, CHAT_REDIS_URL).
 *
 * Every node subscribes to the channels its local sockets need and receives what any node
 * publishes there. The backend-independent half here counts subscriptions and delivers a
 * publish to this node's own subscribers at once, before publish returns, whatever the
 * backend; the backend carries it to the other nodes and brings theirs back (never our own
 * again). So the domain sees the same thing on both: local delivery is synchronous, remote
 * delivery arrives later on the loop. Loop thread only. */
#ifndef CHAT_BUS_H
#define CHAT_BUS_H

#include <stddef.h>
#include <uv.h>

typedef struct chat_bus chat_bus;

/* Called on the loop for each message on a subscribed channel; data is borrowed. */
typedef void (*chat_bus_cb)(const char *channel, const char *data, size_t len, void *arg);

/* A backend. The generic half calls subscribe when a channel gets its first local subscriber
 * and unsubscribe when it loses its last; publish only for other nodes. Any op may be NULL. */
typedef struct chat_bus_backend {
    const char *name;
    /* target: the backend's address (a redis:// URL), or NULL */
    int (*open)(void **impl, chat_bus *bus, uv_loop_t *loop, const char *target);
    /* frees impl (handles may finish closing on the loop afterwards) */
    void (*close)(void *impl);
    int (*subscribe)(void *impl, const char *channel);
    void (*unsubscribe)(void *impl, const char *channel);
    int (*publish)(void *impl, const char *channel, const char *data, size_t len);
    int (*ready)(void *impl); /* 0 or CHAT_EUNAVAIL */
} chat_bus_backend;

extern const chat_bus_backend chat__bus_local;
extern const chat_bus_backend chat__bus_redis;

/* The in-process bus. */
int chat__bus_new(chat_bus **out, uv_loop_t *loop, chat_bus_cb cb, void *arg);
/* Any backend. Redis: connects in the background (never blocks; CHAT_EINVAL for a bad
 * URL); until it is up, publishes still reach this node's subscribers. */
int chat__bus_open(chat_bus **out, uv_loop_t *loop, const chat_bus_backend *be, const char *target,
                   chat_bus_cb cb, void *arg);
/* NULL-safe. Handles close on the loop: run it afterwards if you own it. */
void chat__bus_free(chat_bus *bus);
/* Subscriptions are counted: n subscribes need n unsubscribes. 0 or CHAT_ENOMEM. */
int chat__bus_subscribe(chat_bus *bus, const char *channel);
void chat__bus_unsubscribe(chat_bus *bus, const char *channel);
/* Copies data. Delivery to this node's subscribers happens before publish returns, even when
 * the backend is down. 0, or CHAT_EUNAVAIL when other nodes could not be reached (local
 * delivery happened all the same), or CHAT_ENOMEM. */
int chat__bus_publish(chat_bus *bus, const char *channel, const char *data, size_t len);
/* For the other nodes only: this node's subscribers are not called (the domain delivers
 * locally itself, before publishing). The in-process backend has nothing to do. Same
 * results as chat__bus_publish. */
int chat__bus_publish_remote(chat_bus *bus, const char *channel, const char *data, size_t len);
/* 0 when other nodes are reachable (always for the in-process bus), else CHAT_EUNAVAIL. */
int chat__bus_ready(const chat_bus *bus);
/* "local" or "redis". */
const char *chat__bus_backend_name(const chat_bus *bus);

/* ---- for backends ---- */
/* Hands a message from another node to this node's subscribers of channel (if any). */
void chat__bus_deliver(chat_bus *bus, const char *channel, const char *data, size_t len);
/* Calls fn for every channel with local subscribers (e.g. to resubscribe after reconnect). */
void chat__bus_foreach(const chat_bus *bus, void (*fn)(const char *channel, void *arg), void *arg);
/* Whether channel has local subscribers. */
int chat__bus_subscribed(const chat_bus *bus, const char *channel);

#endif
