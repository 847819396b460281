/* kv.h: counters, presence and caches with TTLs. In-process here; Redis in a later backend.
 * Callbacks run on the loop, possibly before the call returns (the in-process backend
 * answers at once): callers must not rely on either order. */
#ifndef CHAT_KV_H
#define CHAT_KV_H

#include <stdint.h>
#include <uv.h>

typedef struct chat_kv chat_kv;

/* value: the string (NULL when absent) for get; the new number as text for incr. */
typedef void (*chat_kv_cb)(int status, const char *value, int64_t number, void *arg);

int chat__kv_new(chat_kv **out, uv_loop_t *loop);
void chat__kv_free(chat_kv *kv);
/* ttl_ms <= 0: no expiry. cb may be NULL. */
int chat__kv_set(chat_kv *kv, const char *key, const char *value, int64_t ttl_ms,
                 chat_kv_cb cb, void *arg);
int chat__kv_get(chat_kv *kv, const char *key, chat_kv_cb cb, void *arg);
/* Adds by to the integer at key (absent counts as 0); a new key gets ttl_ms (if > 0). */
int chat__kv_incr(chat_kv *kv, const char *key, int64_t by, int64_t ttl_ms, chat_kv_cb cb,
                  void *arg);
int chat__kv_expire(chat_kv *kv, const char *key, int64_t ttl_ms, chat_kv_cb cb, void *arg);
int chat__kv_del(chat_kv *kv, const char *key, chat_kv_cb cb, void *arg);
size_t chat__kv_count(const chat_kv *kv);

#endif
