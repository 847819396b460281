#include "kv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat.h"
#include "map.h"

typedef struct kv_entry {
    char *value;
    int64_t expires_ms; /* 0: never */
    char key[];
} kv_entry;

struct chat_kv {
    uv_loop_t *loop;
    chat_map map;
    uv_timer_t sweep; /* drops expired keys nobody reads again */
};

static int64_t now_ms(chat_kv *kv) { return (int64_t)uv_now(kv->loop); }

static void entry_free(kv_entry *e)
{
    if (e) {
        free(e->value);
        free(e);
    }
}

/* Returns the live entry, dropping it first if it expired. */
static kv_entry *lookup(chat_kv *kv, const char *key)
{
    kv_entry *e = chat__map_get(&kv->map, key);
    if (e && e->expires_ms && e->expires_ms <= now_ms(kv)) {
        chat__map_del(&kv->map, key);
        entry_free(e);
        return NULL;
    }
    return e;
}

static kv_entry *lookup_or_create(chat_kv *kv, const char *key)
{
    kv_entry *e = lookup(kv, key);
    if (e) {
        return e;
    }
    size_t n = strlen(key);
    e = calloc(1, sizeof *e + n + 1);
    if (!e) {
        return NULL;
    }
    memcpy(e->key, key, n + 1);
    if (chat__map_put(&kv->map, e->key, e)) {
        free(e);
        return NULL;
    }
    return e;
}

static void sweep_cb(uv_timer_t *t)
{
    chat_kv *kv = t->data;
    int64_t now = now_ms(kv);
    kv_entry *e;
    /* collect first: deleting while iterating would skip slots */
    size_t n = 0, cap = 0;
    kv_entry **dead = NULL;
    for (size_t i = 0; (e = chat__map_next(&kv->map, &i));) {
        if (e->expires_ms && e->expires_ms <= now) {
            if (n == cap) {
                cap = cap ? cap * 2 : 64;
                kv_entry **d = realloc(dead, cap * sizeof *d);
                if (!d) {
                    break;
                }
                dead = d;
            }
            dead[n++] = e;
        }
    }
    for (size_t i = 0; i < n; i++) {
        chat__map_del(&kv->map, dead[i]->key);
        entry_free(dead[i]);
    }
    free(dead);
}

int chat__kv_new(chat_kv **out, uv_loop_t *loop)
{
    chat_kv *kv = calloc(1, sizeof *kv);
    if (!kv) {
        return CHAT_ENOMEM;
    }
    kv->loop = loop;
    uv_timer_init(loop, &kv->sweep);
    kv->sweep.data = kv;
    uv_timer_start(&kv->sweep, sweep_cb, 10000, 10000);
    uv_unref((uv_handle_t *)&kv->sweep);
    *out = kv;
    return 0;
}

static void kv_closed(uv_handle_t *h) { free(h->data); }

void chat__kv_free(chat_kv *kv)
{
    if (!kv) {
        return;
    }
    kv_entry *e;
    for (size_t i = 0; (e = chat__map_next(&kv->map, &i));) {
        entry_free(e);
    }
    chat__map_free(&kv->map);
    uv_close((uv_handle_t *)&kv->sweep, kv_closed);
}

static void set_ttl(chat_kv *kv, kv_entry *e, int64_t ttl_ms)
{
    e->expires_ms = ttl_ms > 0 ? now_ms(kv) + ttl_ms : 0;
}

int chat__kv_set(chat_kv *kv, const char *key, const char *value, int64_t ttl_ms,
                 chat_kv_cb cb, void *arg)
{
    kv_entry *e = lookup_or_create(kv, key);
    char *copy = strdup(value);
    if (!e || !copy) {
        free(copy);
        if (cb) {
            cb(CHAT_ENOMEM, NULL, 0, arg);
        }
        return CHAT_ENOMEM;
    }
    free(e->value);
    e->value = copy;
    set_ttl(kv, e, ttl_ms);
    if (cb) {
        cb(0, value, 0, arg);
    }
    return 0;
}

int chat__kv_get(chat_kv *kv, const char *key, chat_kv_cb cb, void *arg)
{
    kv_entry *e = lookup(kv, key);
    const char *v = e ? e->value : NULL;
    cb(0, v, v ? strtoll(v, NULL, 10) : 0, arg);
    return 0;
}

int chat__kv_incr(chat_kv *kv, const char *key, int64_t by, int64_t ttl_ms, chat_kv_cb cb,
                  void *arg)
{
    kv_entry *e = lookup(kv, key);
    int fresh = !e;
    if (!e) {
        e = lookup_or_create(kv, key);
    }
    char text[24];
    int64_t n = (e && e->value ? strtoll(e->value, NULL, 10) : 0) + by;
    snprintf(text, sizeof text, "%lld", (long long)n);
    char *copy = e ? strdup(text) : NULL;
    if (!copy) {
        if (cb) {
            cb(CHAT_ENOMEM, NULL, 0, arg);
        }
        return CHAT_ENOMEM;
    }
    free(e->value);
    e->value = copy;
    if (fresh) {
        set_ttl(kv, e, ttl_ms);
    }
    if (cb) {
        cb(0, text, n, arg);
    }
    return 0;
}

int chat__kv_expire(chat_kv *kv, const char *key, int64_t ttl_ms, chat_kv_cb cb, void *arg)
{
    kv_entry *e = lookup(kv, key);
    if (e) {
        set_ttl(kv, e, ttl_ms);
    }
    if (cb) {
        cb(0, NULL, e ? 1 : 0, arg);
    }
    return 0;
}

int chat__kv_del(chat_kv *kv, const char *key, chat_kv_cb cb, void *arg)
{
    kv_entry *e = lookup(kv, key);
    if (e) {
        chat__map_del(&kv->map, key);
        entry_free(e);
    }
    if (cb) {
        cb(0, NULL, e ? 1 : 0, arg);
    }
    return 0;
}

size_t chat__kv_count(const chat_kv *kv) { return kv->map.len; }
