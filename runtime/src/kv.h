/* kv.h: counters, presence and caches with TTLs, behind one interface with two backends:
 * in-process (kv.c) and Redis (kv_redis.c, CHAT_REDIS_URL).
 *
 * Every call runs its callback exactly once (when cb is not NULL), on the loop, possibly
 * before the call returns (the in-process backend answers at once; Redis answers when the
 * reply arrives, or at once with CHAT_EUNAVAIL while it is down): callers must not rely on
 * either order. The return value repeats a failure that was reported synchronously.
 * Loop thread only. */
#ifndef CHAT_KV_H
#define CHAT_KV_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct chat_kv chat_kv;

/* value: the string (NULL when absent) for get; the value set for set; the new number as
 * text for incr. number: get: value as an integer; incr: the new value; expire and del:
 * 1 if the key existed, else 0. */
typedef void (*chat_kv_cb)(int status, const char *value, int64_t number, void *arg);

typedef struct chat_kv_backend {
    const char *name;
    int (*open)(void **impl, uv_loop_t *loop, const char *target);
    void (*close)(void *impl); /* pending callbacks run with CHAT_EUNAVAIL */
    int (*set)(void *impl, const char *key, const char *value, int64_t ttl_ms, chat_kv_cb cb,
               void *arg);
    int (*get)(void *impl, const char *key, chat_kv_cb cb, void *arg);
    int (*incr)(void *impl, const char *key, int64_t by, int64_t ttl_ms, chat_kv_cb cb, void *arg);
    int (*expire)(void *impl, const char *key, int64_t ttl_ms, chat_kv_cb cb, void *arg);
    int (*del)(void *impl, const char *key, chat_kv_cb cb, void *arg);
    size_t (*count)(void *impl);
    size_t (*bytes)(void *impl); /* memory held for keys and values; NULL: not known (Redis) */
    int (*ready)(void *impl);
} chat_kv_backend;

extern const chat_kv_backend chat__kv_local;
extern const chat_kv_backend chat__kv_redis;

/* The in-process kv. */
int chat__kv_new(chat_kv **out, uv_loop_t *loop);
/* Any backend; target: a redis:// URL for Redis (connects in the background, never blocks;
 * CHAT_EINVAL for a bad URL). */
int chat__kv_open(chat_kv **out, uv_loop_t *loop, const chat_kv_backend *be, const char *target);
/* NULL-safe. Pending callbacks run with CHAT_EUNAVAIL before it returns. */
void chat__kv_free(chat_kv *kv);
/* ttl_ms <= 0: no expiry. cb may be NULL. */
int chat__kv_set(chat_kv *kv, const char *key, const char *value, int64_t ttl_ms, chat_kv_cb cb,
                 void *arg);
int chat__kv_get(chat_kv *kv, const char *key, chat_kv_cb cb, void *arg);
/* Adds by to the integer at key (absent counts as 0); a new key gets ttl_ms (if > 0). */
int chat__kv_incr(chat_kv *kv, const char *key, int64_t by, int64_t ttl_ms, chat_kv_cb cb,
                  void *arg);
/* ttl_ms <= 0 removes the expiry. */
int chat__kv_expire(chat_kv *kv, const char *key, int64_t ttl_ms, chat_kv_cb cb, void *arg);
int chat__kv_del(chat_kv *kv, const char *key, chat_kv_cb cb, void *arg);
/* The same, refused with CHAT_ETOOBIG (cb runs with it, and it is returned) when the
 * in-process kv would hold more than max_bytes after the write; Redis: no check here. The
 * scripts' writes go through these (CHAT_LUA_KV_MB); the runtime's own small keys (presence
 * counts, rate-limit counters) do not, so a script that fills the kv cannot switch them off. */
int chat__kv_set_within(chat_kv *kv, size_t max_bytes, const char *key, const char *value,
                        int64_t ttl_ms, chat_kv_cb cb, void *arg);
int chat__kv_incr_within(chat_kv *kv, size_t max_bytes, const char *key, int64_t by,
                         int64_t ttl_ms, chat_kv_cb cb, void *arg);
/* Keys held in process (in-process backend); 0 for Redis. */
size_t chat__kv_count(const chat_kv *kv);
/* Bytes of keys and values the in-process kv holds; 0 for Redis (its maxmemory bounds it). */
size_t chat__kv_bytes(const chat_kv *kv);
/* 0 when the backend answers (always for in-process), else CHAT_EUNAVAIL. */
int chat__kv_ready(const chat_kv *kv);
/* "local" or "redis". */
const char *chat__kv_backend_name(const chat_kv *kv);
/* The backend's own state if kv runs on be, else NULL. */
void *chat__kv_impl(const chat_kv *kv, const chat_kv_backend *be);

/* ---- raw Redis commands (for scripts), only on the Redis backend ----
 * reply: the Redis reply as JSON: status and bulk strings as strings (bytes as they are,
 * possibly not UTF-8: use json_string_length), integers, nil as null, arrays as arrays.
 * status: 0; CHAT_EINVAL with reply the error text for a Redis error reply ("ERR ...",
 * "WRONGTYPE ..."); CHAT_EUNAVAIL (reply NULL) when the connection went away before the
 * answer. reply is owned by the callback. */
typedef void (*chat_kv_reply_cb)(int status, json_t *reply, void *arg);
/* Copies argv. Returns 0 and then calls cb exactly once, always later on the loop (never
 * before returning); or returns CHAT_EINVAL (not on Redis, argc < 1), CHAT_EFORBIDDEN (a
 * command that would take over or block the shared connection: (P|S)SUBSCRIBE and the
 * unsubscribes, MONITOR, SELECT, AUTH, HELLO, RESET, QUIT, CLIENT, SYNC, PSYNC, REPLCONF,
 * WAIT, WAITAOF, the blocking pops, XREAD(GROUP) ... BLOCK), CHAT_EUNAVAIL (Redis is down)
 * or CHAT_ENOMEM, and never calls cb. lens may be NULL for NUL-terminated argv. */
int chat__kv_redis_command(chat_kv *kv, int argc, const char **argv, const size_t *lens,
                           chat_kv_reply_cb cb, void *arg);

#endif
