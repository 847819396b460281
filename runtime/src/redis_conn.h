/* redis_conn.h: one Redis connection on the uv loop (hiredis async API), shared by the bus
 * and kv backends. It connects in the background and keeps reconnecting with backoff
 * (100 ms doubling to 5 s), resolves host names without blocking the loop, checks that the
 * server still answers (a probe every second; no answer within 3 s drops the connection),
 * and logs "redis_down" / "redis_up" once per change. Commands are pipelined: each is written
 * as soon as it is issued, whatever is still waiting for a reply.
 *
 * An idle connection does not keep the loop alive; one with replies outstanding does, so a
 * graceful stop still delivers what was published. Loop thread only. */
#ifndef CHAT_REDIS_CONN_H
#define CHAT_REDIS_CONN_H

#include <hiredis/hiredis.h>
#include <stddef.h>
#include <uv.h>

typedef struct chat_redis chat_redis;

/* reply: borrowed; NULL when the connection went away before the answer. */
typedef void (*chat_redis_reply_cb)(chat_redis *r, redisReply *reply, void *arg);
/* up: 1 when the connection is (again) usable, 0 when it was lost. */
typedef void (*chat_redis_state_cb)(chat_redis *r, int up, void *arg);

typedef struct chat_redis_opts {
    const char *url;              /* redis://[[user]:password@]host[:port][/db] (borrowed) */
    const char *role;             /* for the log: "bus-subscribe", "bus-publish", "kv" */
    int subscriber;               /* only SUBSCRIBE/UNSUBSCRIBE after the handshake */
    chat_redis_state_cb on_state; /* may be NULL */
    void *arg;
} chat_redis_opts;

/* Parses the URL (CHAT_EINVAL, logged, when it is not a redis:// URL) and starts connecting. */
int chat__redis_new(chat_redis **out, uv_loop_t *loop, const chat_redis_opts *opts);
/* NULL-safe. Pending callbacks run with a NULL reply before it returns; the memory goes when
 * the loop has closed the handles. */
void chat__redis_free(chat_redis *r);
/* 1 when connected and answering. */
int chat__redis_is_up(const chat_redis *r);

/* A regular command (not on a subscriber). Copies argv; lens may be NULL. cb (may be NULL)
 * runs exactly once, later, with the reply or NULL. CHAT_EUNAVAIL when the connection is
 * not up (cb is not called), CHAT_EINVAL on a subscriber. */
int chat__redis_command(chat_redis *r, int argc, const char **argv, const size_t *lens,
                        chat_redis_reply_cb cb, void *arg);
/* verb ("SUBSCRIBE", "UNSUBSCRIBE" or "PSUBSCRIBE") channels or patterns on a subscriber.
 * cb runs for every confirmation and message of those, and with NULL when the connection
 * goes away. CHAT_EUNAVAIL when not up. */
int chat__redis_subscribe(chat_redis *r, const char *verb, int n, const char **channels,
                          const size_t *lens, chat_redis_reply_cb cb, void *arg);

/* "host:port" for the log (no password). */
const char *chat__redis_addr(const chat_redis *r);

#endif
