/* kv.c: the kv interface (dispatch to a backend) and the in-process backend: a map with
 * expiry times, checked when a key is read and swept for keys nobody reads: a slice of the
 * map every 100 ms, the whole of it about every 10 s. */
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
    const chat_kv_backend *be;
    void *impl;
};

typedef struct local_kv {
    uv_loop_t *loop;
    chat_map map;
    uv_timer_t sweep; /* drops expired keys nobody reads again */
    size_t sweep_at;  /* the slot the next slice starts at */
    size_t bytes;     /* keys and values held, for the scripts' bound (CHAT_LUA_KV_MB) */
} local_kv;

static int64_t now_ms(local_kv *kv) { return (int64_t)uv_now(kv->loop); }

static size_t entry_bytes(const kv_entry *e)
{
    return sizeof *e + strlen(e->key) + 1 + (e->value ? strlen(e->value) + 1 : 0);
}

static void entry_free(kv_entry *e)
{
    if (e) {
        free(e->value);
        free(e);
    }
}

/* Drops e from the map and the byte count. */
static void entry_drop(local_kv *kv, kv_entry *e)
{
    kv->bytes -= entry_bytes(e);
    chat__map_del(&kv->map, e->key);
    entry_free(e);
}

/* Replaces e's value (taking copy), keeping the byte count. */
static void entry_set_value(local_kv *kv, kv_entry *e, char *copy)
{
    kv->bytes -= entry_bytes(e);
    free(e->value);
    e->value = copy;
    kv->bytes += entry_bytes(e);
}

/* Returns the live entry, dropping it first if it expired. */
static kv_entry *lookup(local_kv *kv, const char *key)
{
    kv_entry *e = chat__map_get(&kv->map, key);
    if (e && e->expires_ms && e->expires_ms <= now_ms(kv)) {
        entry_drop(kv, e);
        return NULL;
    }
    return e;
}

static kv_entry *lookup_or_create(local_kv *kv, const char *key)
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
    kv->bytes += entry_bytes(e);
    return e;
}

#define SWEEP_EVERY_MS 100
#define SWEEP_SLICES 100 /* a whole pass: SWEEP_SLICES * SWEEP_EVERY_MS */
#define SWEEP_SLOTS_MIN 1024

/* One slice of the map. Sweeping the whole map at once stalled the loop: the flood keys of
 * the default moderation policy (one per message, 30 s) were 360k at 12k msgs/s, and a
 * pass that dropped a third of them took tens of ms every 10 s. Deleting leaves a
 * tombstone and moves no other entry, so the walk may delete as it goes. */
static void sweep_cb(uv_timer_t *t)
{
    local_kv *kv = t->data;
    int64_t now = now_ms(kv);
    size_t slots = chat__map_positions(&kv->map) / SWEEP_SLICES;
    size_t end = kv->sweep_at + (slots > SWEEP_SLOTS_MIN ? slots : SWEEP_SLOTS_MIN);
    kv_entry *e;
    while ((e = chat__map_next_before(&kv->map, &kv->sweep_at, end))) {
        if (e->expires_ms && e->expires_ms <= now) {
            entry_drop(kv, e);
        }
    }
    if (kv->sweep_at >= chat__map_positions(&kv->map)) {
        kv->sweep_at = 0;
    }
}

static int local_open(void **out, uv_loop_t *loop, const char *target)
{
    (void)target;
    local_kv *kv = calloc(1, sizeof *kv);
    if (!kv) {
        return CHAT_ENOMEM;
    }
    kv->loop = loop;
    kv->map.incremental = 1; /* one flood key per message: 100k of keys, grown in steps */
    uv_timer_init(loop, &kv->sweep);
    kv->sweep.data = kv;
    uv_timer_start(&kv->sweep, sweep_cb, SWEEP_EVERY_MS, SWEEP_EVERY_MS);
    uv_unref((uv_handle_t *)&kv->sweep);
    *out = kv;
    return 0;
}

static void kv_closed(uv_handle_t *h) { free(h->data); }

static void local_close(void *impl)
{
    local_kv *kv = impl;
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

static void set_ttl(local_kv *kv, kv_entry *e, int64_t ttl_ms)
{
    e->expires_ms = ttl_ms > 0 ? now_ms(kv) + ttl_ms : 0;
}

static int local_set(void *impl, const char *key, const char *value, int64_t ttl_ms,
                     chat_kv_cb cb, void *arg)
{
    local_kv *kv = impl;
    kv_entry *e = lookup_or_create(kv, key);
    char *copy = strdup(value);
    if (!e || !copy) {
        free(copy);
        if (cb) {
            cb(CHAT_ENOMEM, NULL, 0, arg);
        }
        return CHAT_ENOMEM;
    }
    entry_set_value(kv, e, copy);
    set_ttl(kv, e, ttl_ms);
    if (cb) {
        cb(0, value, 0, arg);
    }
    return 0;
}

static int local_get(void *impl, const char *key, chat_kv_cb cb, void *arg)
{
    local_kv *kv = impl;
    kv_entry *e = lookup(kv, key);
    const char *v = e ? e->value : NULL;
    cb(0, v, v ? strtoll(v, NULL, 10) : 0, arg);
    return 0;
}

static int local_incr(void *impl, const char *key, int64_t by, int64_t ttl_ms, chat_kv_cb cb,
                      void *arg)
{
    local_kv *kv = impl;
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
    entry_set_value(kv, e, copy);
    if (fresh) {
        set_ttl(kv, e, ttl_ms);
    }
    if (cb) {
        cb(0, text, n, arg);
    }
    return 0;
}

static int local_expire(void *impl, const char *key, int64_t ttl_ms, chat_kv_cb cb, void *arg)
{
    local_kv *kv = impl;
    kv_entry *e = lookup(kv, key);
    if (e) {
        set_ttl(kv, e, ttl_ms);
    }
    if (cb) {
        cb(0, NULL, e ? 1 : 0, arg);
    }
    return 0;
}

static int local_del(void *impl, const char *key, chat_kv_cb cb, void *arg)
{
    local_kv *kv = impl;
    kv_entry *e = lookup(kv, key);
    int existed = e != NULL;
    if (e) {
        entry_drop(kv, e);
    }
    if (cb) {
        cb(0, NULL, existed, arg);
    }
    return 0;
}

static size_t local_count(void *impl) { return ((local_kv *)impl)->map.len; }
static size_t local_bytes(void *impl) { return ((local_kv *)impl)->bytes; }

const chat_kv_backend chat__kv_local = {
    .name = "local",
    .open = local_open,
    .close = local_close,
    .set = local_set,
    .get = local_get,
    .incr = local_incr,
    .expire = local_expire,
    .del = local_del,
    .count = local_count,
    .bytes = local_bytes,
};

/* ---- the interface ---- */

int chat__kv_open(chat_kv **out, uv_loop_t *loop, const chat_kv_backend *be, const char *target)
{
    if (!out || !be || !be->open) {
        return CHAT_EINVAL;
    }
    *out = NULL;
    chat_kv *kv = calloc(1, sizeof *kv);
    if (!kv) {
        return CHAT_ENOMEM;
    }
    kv->be = be;
    int err = be->open(&kv->impl, loop, target);
    if (err) {
        free(kv);
        return err;
    }
    *out = kv;
    return 0;
}

int chat__kv_new(chat_kv **out, uv_loop_t *loop)
{
    return chat__kv_open(out, loop, &chat__kv_local, NULL);
}

void chat__kv_free(chat_kv *kv)
{
    if (!kv) {
        return;
    }
    kv->be->close(kv->impl);
    free(kv);
}

int chat__kv_set(chat_kv *kv, const char *key, const char *value, int64_t ttl_ms,
                 chat_kv_cb cb, void *arg)
{
    return kv->be->set(kv->impl, key, value, ttl_ms, cb, arg);
}

int chat__kv_get(chat_kv *kv, const char *key, chat_kv_cb cb, void *arg)
{
    return kv->be->get(kv->impl, key, cb, arg);
}

int chat__kv_incr(chat_kv *kv, const char *key, int64_t by, int64_t ttl_ms, chat_kv_cb cb,
                  void *arg)
{
    return kv->be->incr(kv->impl, key, by, ttl_ms, cb, arg);
}

int chat__kv_expire(chat_kv *kv, const char *key, int64_t ttl_ms, chat_kv_cb cb, void *arg)
{
    return kv->be->expire(kv->impl, key, ttl_ms, cb, arg);
}

int chat__kv_del(chat_kv *kv, const char *key, chat_kv_cb cb, void *arg)
{
    return kv->be->del(kv->impl, key, cb, arg);
}

/* What a write would add to the in-process kv: a new entry whole, a replaced value's growth.
 * incr of a key that exists adds at most a few digits: counted as nothing. */
static size_t local_growth(local_kv *kv, const char *key, const char *value)
{
    kv_entry *e = lookup(kv, key);
    size_t vlen = value ? strlen(value) + 1 : 24; /* incr: at most a 64-bit integer */
    if (!e) {
        return sizeof *e + strlen(key) + 1 + vlen;
    }
    size_t old = e->value ? strlen(e->value) + 1 : 0;
    return value && vlen > old ? vlen - old : 0;
}

/* The bound lives with the byte count: every write the scripts make, incr creating keys
 * included, is refused with CHAT_ETOOBIG (through cb, like any answer) past max_bytes. */
static int over_limit(chat_kv *kv, size_t max_bytes, const char *key, const char *value,
                      chat_kv_cb cb, void *arg)
{
    if (kv->be != &chat__kv_local) {
        return 0; /* Redis: its maxmemory bounds it */
    }
    local_kv *l = kv->impl;
    if (l->bytes + local_growth(l, key, value) <= max_bytes) {
        return 0;
    }
    if (cb) {
        cb(CHAT_ETOOBIG, NULL, 0, arg);
    }
    return CHAT_ETOOBIG;
}

int chat__kv_set_within(chat_kv *kv, size_t max_bytes, const char *key, const char *value,
                        int64_t ttl_ms, chat_kv_cb cb, void *arg)
{
    int rc = over_limit(kv, max_bytes, key, value, cb, arg);
    return rc ? rc : chat__kv_set(kv, key, value, ttl_ms, cb, arg);
}

int chat__kv_incr_within(chat_kv *kv, size_t max_bytes, const char *key, int64_t by,
                         int64_t ttl_ms, chat_kv_cb cb, void *arg)
{
    int rc = over_limit(kv, max_bytes, key, NULL, cb, arg);
    return rc ? rc : chat__kv_incr(kv, key, by, ttl_ms, cb, arg);
}

size_t chat__kv_count(const chat_kv *kv) { return kv->be->count ? kv->be->count(kv->impl) : 0; }
size_t chat__kv_bytes(const chat_kv *kv) { return kv->be->bytes ? kv->be->bytes(kv->impl) : 0; }

int chat__kv_ready(const chat_kv *kv)
{
    if (!kv) {
        return CHAT_EUNAVAIL;
    }
    return kv->be->ready ? kv->be->ready(kv->impl) : 0;
}

const char *chat__kv_backend_name(const chat_kv *kv) { return kv->be->name; }

void *chat__kv_impl(const chat_kv *kv, const chat_kv_backend *be)
{
    return kv && kv->be == be ? kv->impl : NULL;
}
