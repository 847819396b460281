/* kv_redis.c: the kv on Redis (CHAT_REDIS_URL), shared by every node: keys as the domain
 * names them (user:{userId}:online, ratelimit:{ip}, ...), TTLs in milliseconds (PX, PEXPIRE).
 *
 * One connection; commands are pipelined (each goes out as soon as it is issued). Two
 * operations need more than one command to keep the in-process semantics, and run as small
 * Lua scripts so they stay atomic across nodes: incr with a TTL for new keys (EXISTS, INCRBY,
 * PEXPIRE), and expire with no TTL (PERSIST, answering whether the key exists).
 * While Redis is down every call answers CHAT_EUNAVAIL at once. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "chat.h"
#include "kv.h"
#include "log.h"
#include "redis_conn.h"

static const char kr_incr_script[] =
    "local existed = redis.call('EXISTS', KEYS[1]) "
    "local n = redis.call('INCRBY', KEYS[1], ARGV[1]) "
    "if existed == 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end "
    "return n";
static const char kr_persist_script[] = "if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end "
                                        "redis.call('PERSIST', KEYS[1]) return 1";

typedef struct kv_redis {
    chat_redis *conn;
} kv_redis;

enum { KR_SET, KR_GET, KR_NUMBER };

typedef struct kr_call {
    int kind;
    chat_kv_cb cb;
    void *arg;
    char value[]; /* set: the value, handed back to cb */
} kr_call;

/* Errors Redis gives while it cannot serve (loading, out of memory, a read-only replica):
 * the caller should retry. Anything else is a misuse of the key (WRONGTYPE, not an integer). */
static const char *const kr_unavail_errors[] = {"LOADING", "BUSY",     "MASTERDOWN",  "READONLY",
                                                "OOM",     "TRYAGAIN", "CLUSTERDOWN", "NOAUTH"};

static int kr_error_status(const redisReply *reply)
{
    for (size_t i = 0; i < sizeof kr_unavail_errors / sizeof kr_unavail_errors[0]; i++) {
        size_t n = strlen(kr_unavail_errors[i]);
        if (reply->len >= n && strncmp(reply->str, kr_unavail_errors[i], n) == 0) {
            return CHAT_EUNAVAIL;
        }
    }
    return CHAT_EINVAL;
}

static void kr_reply(chat_redis *r, redisReply *reply, void *arg)
{
    kr_call *c = arg;
    char text[24];
    (void)r;
    if (!reply) {
        c->cb(CHAT_EUNAVAIL, NULL, 0, c->arg);
    } else if (reply->type == REDIS_REPLY_ERROR) {
        int status = kr_error_status(reply);
        chat__log(status == CHAT_EUNAVAIL ? CHAT_LOG_WARN : CHAT_LOG_ERROR, "kv_error",
                  "Redis refused a kv command", json_pack("{s:s}", "error", reply->str));
        c->cb(status, NULL, 0, c->arg);
    } else if (c->kind == KR_SET) {
        c->cb(0, c->value, 0, c->arg);
    } else if (c->kind == KR_GET) {
        const char *v = reply->type == REDIS_REPLY_STRING ? reply->str : NULL;
        c->cb(0, v, v ? strtoll(v, NULL, 10) : 0, c->arg);
    } else if (reply->type == REDIS_REPLY_INTEGER) {
        snprintf(text, sizeof text, "%lld", reply->integer);
        c->cb(0, text, (int64_t)reply->integer, c->arg);
    } else {
        c->cb(CHAT_EINTERNAL, NULL, 0, c->arg);
    }
    free(c);
}

/* Sends argv; cb runs exactly once, at once when the command cannot be sent. */
static int kr_send(kv_redis *k, int kind, const char *value, int argc, const char **argv,
                   chat_kv_cb cb, void *arg)
{
    size_t vn = value ? strlen(value) + 1 : 0;
    kr_call *c = NULL;
    int err;

    if (cb) {
        c = malloc(sizeof *c + vn);
        if (!c) {
            cb(CHAT_ENOMEM, NULL, 0, arg);
            return CHAT_ENOMEM;
        }
        c->kind = kind;
        c->cb = cb;
        c->arg = arg;
        if (vn) {
            memcpy(c->value, value, vn);
        }
    }
    err = chat__redis_command(k->conn, argc, argv, NULL, c ? kr_reply : NULL, c);
    if (err) {
        free(c);
        if (cb) {
            cb(err, NULL, 0, arg);
        }
    }
    return err;
}

static int kr_open(void **impl, uv_loop_t *loop, const char *target)
{
    kv_redis *k = calloc(1, sizeof *k);
    *impl = NULL;
    if (!k) {
        return CHAT_ENOMEM;
    }
    chat_redis_opts o = {.url = target, .role = "kv"};
    int err = chat__redis_new(&k->conn, loop, &o);
    if (err) {
        free(k);
        return err;
    }
    *impl = k;
    return 0;
}

static void kr_close(void *impl)
{
    kv_redis *k = impl;
    if (k) {
        chat__redis_free(k->conn);
        free(k);
    }
}

static int kr_set(void *impl, const char *key, const char *value, int64_t ttl_ms, chat_kv_cb cb,
                  void *arg)
{
    char ttl[24];
    snprintf(ttl, sizeof ttl, "%" PRId64, ttl_ms);
    const char *argv[] = {"SET", key, value, "PX", ttl};
    return kr_send(impl, KR_SET, value, ttl_ms > 0 ? 5 : 3, argv, cb, arg);
}

static int kr_get(void *impl, const char *key, chat_kv_cb cb, void *arg)
{
    const char *argv[] = {"GET", key};
    return kr_send(impl, KR_GET, NULL, 2, argv, cb, arg);
}

static int kr_incr(void *impl, const char *key, int64_t by, int64_t ttl_ms, chat_kv_cb cb,
                   void *arg)
{
    char n[24];
    char ttl[24];
    snprintf(n, sizeof n, "%" PRId64, by);
    snprintf(ttl, sizeof ttl, "%" PRId64, ttl_ms);
    if (ttl_ms <= 0) {
        const char *argv[] = {"INCRBY", key, n};
        return kr_send(impl, KR_NUMBER, NULL, 3, argv, cb, arg);
    }
    const char *argv[] = {"EVAL", kr_incr_script, "1", key, n, ttl};
    return kr_send(impl, KR_NUMBER, NULL, 6, argv, cb, arg);
}

static int kr_expire(void *impl, const char *key, int64_t ttl_ms, chat_kv_cb cb, void *arg)
{
    char ttl[24];
    snprintf(ttl, sizeof ttl, "%" PRId64, ttl_ms);
    if (ttl_ms <= 0) {
        const char *argv[] = {"EVAL", kr_persist_script, "1", key};
        return kr_send(impl, KR_NUMBER, NULL, 4, argv, cb, arg);
    }
    const char *argv[] = {"PEXPIRE", key, ttl};
    return kr_send(impl, KR_NUMBER, NULL, 3, argv, cb, arg);
}

static int kr_del(void *impl, const char *key, chat_kv_cb cb, void *arg)
{
    const char *argv[] = {"DEL", key};
    return kr_send(impl, KR_NUMBER, NULL, 2, argv, cb, arg);
}

static int kr_ready(void *impl)
{
    kv_redis *k = impl;
    return chat__redis_is_up(k->conn) ? 0 : CHAT_EUNAVAIL;
}

const chat_kv_backend chat__kv_redis = {
    .name = "redis",
    .open = kr_open,
    .close = kr_close,
    .set = kr_set,
    .get = kr_get,
    .incr = kr_incr,
    .expire = kr_expire,
    .del = kr_del,
    .ready = kr_ready,
};

/* ---- raw commands ---- */

typedef struct kr_raw {
    chat_kv_reply_cb cb;
    void *arg;
} kr_raw;

/* NULL on out-of-memory. Bulk strings keep their bytes (not necessarily UTF-8). */
static json_t *kr_to_json(const redisReply *reply)
{
    switch (reply->type) {
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
    case REDIS_REPLY_ERROR:
        return json_stringn_nocheck(reply->str, reply->len);
    case REDIS_REPLY_INTEGER:
        return json_integer((json_int_t)reply->integer);
    case REDIS_REPLY_ARRAY: {
        json_t *arr = json_array();
        for (size_t i = 0; arr && i < reply->elements; i++) {
            json_t *v = kr_to_json(reply->element[i]);
            if (!v || json_array_append_new(arr, v)) {
                json_decref(arr);
                return NULL;
            }
        }
        return arr;
    }
    default:
        return json_null();
    }
}

static void kr_raw_reply(chat_redis *r, redisReply *reply, void *arg)
{
    kr_raw *c = arg;
    (void)r;
    if (!reply) {
        c->cb(CHAT_EUNAVAIL, NULL, c->arg);
    } else {
        json_t *v = kr_to_json(reply);
        int status = !v ? CHAT_ENOMEM : reply->type == REDIS_REPLY_ERROR ? CHAT_EINVAL : 0;
        c->cb(status, v, c->arg);
    }
    free(c);
}

/* Commands a script may not send on the shared connection: they would put it in another
 * mode (pub/sub, MONITOR), change it for every caller (SELECT, AUTH, CLIENT REPLY), close it,
 * or block it, and with it every kv call of the node, until they return. */
static const char *const kr_refused[] = {
    "SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE", "UNSUBSCRIBE", "PUNSUBSCRIBE", "SUNSUBSCRIBE",
    "MONITOR",   "SELECT",     "AUTH",       "HELLO",       "RESET",        "QUIT",
    "CLIENT",    "SYNC",       "PSYNC",      "REPLCONF",    "WAIT",         "WAITAOF",
    "BLPOP",     "BRPOP",      "BRPOPLPUSH", "BLMOVE",      "BLMPOP",       "BZPOPMIN",
    "BZPOPMAX",  "BZMPOP",
};

static int kr_allowed(int argc, const char **argv, const size_t *lens)
{
    size_t n = lens ? lens[0] : strlen(argv[0]);
    for (size_t i = 0; i < sizeof kr_refused / sizeof kr_refused[0]; i++) {
        if (strlen(kr_refused[i]) == n && strncasecmp(argv[0], kr_refused[i], n) == 0) {
            return 0;
        }
    }
    /* XREAD / XREADGROUP ... BLOCK ms */
    if ((n == 5 && strncasecmp(argv[0], "XREAD", 5) == 0) ||
        (n == 10 && strncasecmp(argv[0], "XREADGROUP", 10) == 0)) {
        for (int i = 1; i < argc; i++) {
            size_t m = lens ? lens[i] : strlen(argv[i]);
            if (m == 5 && strncasecmp(argv[i], "BLOCK", 5) == 0) {
                return 0;
            }
        }
    }
    return 1;
}

int chat__kv_redis_command(chat_kv *kv, int argc, const char **argv, const size_t *lens,
                           chat_kv_reply_cb cb, void *arg)
{
    kv_redis *k = chat__kv_impl(kv, &chat__kv_redis);
    if (!k || argc < 1 || !argv || !argv[0] || !cb) {
        return CHAT_EINVAL;
    }
    if (!kr_allowed(argc, argv, lens)) {
        return CHAT_EFORBIDDEN;
    }
    kr_raw *c = malloc(sizeof *c);
    if (!c) {
        return CHAT_ENOMEM;
    }
    c->cb = cb;
    c->arg = arg;
    int err = chat__redis_command(k->conn, argc, argv, lens, kr_raw_reply, c);
    if (err) {
        free(c);
    }
    return err;
}
