/* stats.h: what the runtime measures (stats.c holds the table of every metric name) and the
 * /metrics page. The chat__stats_* calls are cheap and NULL-safe; loop thread only, except
 * chat__stats_redis_reconnect and chat__metrics_store_reconnect (atomics). */
#ifndef CHAT_STATS_H
#define CHAT_STATS_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "metrics.h"

typedef struct chat_runtime chat_runtime;
typedef struct chat_stats_reg chat_stats_reg;

/* Registers the families on rt->metrics. 0 or CHAT_ENOMEM. */
int chat__stats_new(chat_runtime *rt);
void chat__stats_free(chat_runtime *rt);

/* An error answer (ack, `error` event or REST) with code err. */
void chat__stats_error(chat_runtime *rt, int err);
/* A store call of op queued at start_ns (uv_hrtime) has answered. */
void chat__stats_store_call(chat_runtime *rt, int op, uint64_t start_ns);
void chat__stats_store_observer(void *rt, int op, uint64_t start_ns); /* chat_store_observe */
/* A hook chain started at start_ns has answered. */
void chat__stats_hook(chat_runtime *rt, const char *hook, uint64_t start_ns);
/* One broadcast reached recipients local sockets. */
void chat__stats_broadcast(chat_runtime *rt, size_t recipients);
/* A message:send that arrived at received_ns was stored (acknowledged 0) or its ack queued
 * (acknowledged 1). */
void chat__stats_message(chat_runtime *rt, int acknowledged, uint64_t received_ns);
/* A Redis connection (role "bus-subscribe", "bus-publish", "kv") is up again after a loss. */
void chat__stats_redis_reconnect(const char *role);

/* The Prometheus text page (appended to out), with the scripts' numbers the caller read
 * (chat__script_stats). 0 or CHAT_ENOMEM. */
int chat__stats_page(chat_runtime *rt, int version, unsigned long reloads,
                     unsigned long failures, unsigned long errors, chat_buf *out);

#endif
