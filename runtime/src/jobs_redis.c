/* jobs_redis.c: the job queue on Redis Streams (CHAT_REDIS_URL), shared by every node.
 *
 *   jobs:stream   the jobs due now: entries {job}, read by the consumer group "chatd", each
 *                 node a consumer (its node id). A delivered entry stays pending until the
 *                 node acknowledges it (XACK, then XDEL); one left pending longer than the
 *                 lease (its node died, or hangs) is taken over by another node (XAUTOCLAIM).
 *   jobs:delayed  a sorted set of jobs not due yet (a delay, a retry's backoff), by due time;
 *                 each poll moves the due ones to the stream.
 *   jobs:dead     the dead-letter list, newest first, trimmed to CHAT_JOBS_DEAD_MAX.
 *
 * Every change that touches two keys is one small Lua script, so a node dying between two
 * commands neither loses nor doubles a job. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat.h"
#include "jobs.h"
#include "log.h"
#include "redis_conn.h"
#include "store.h" /* chat__now_ms */

#define JR_STREAM "jobs:stream"
#define JR_DELAYED "jobs:delayed"
#define JR_DEAD "jobs:dead"
#define JR_GROUP "chatd"

static const char jr_push_script[] =
    "if tonumber(ARGV[3]) > 0 and redis.call('XLEN', KEYS[1]) + redis.call('ZCARD', KEYS[2]) "
    ">= tonumber(ARGV[3]) then return 0 end "
    "if tonumber(ARGV[2]) <= tonumber(ARGV[4]) then redis.call('XADD', KEYS[1], '*', 'job', "
    "ARGV[1]) else redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1]) end return 1";
static const char jr_promote_script[] =
    "local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2]) "
    "for _, j in ipairs(due) do redis.call('ZREM', KEYS[1], j) "
    "redis.call('XADD', KEYS[2], '*', 'job', j) end return #due";
static const char jr_retry_script[] =
    "redis.call('XACK', KEYS[1], ARGV[4], ARGV[1]) "
    "if redis.call('XDEL', KEYS[1], ARGV[1]) == 0 then return 0 end "
    "redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2]) return 1";
static const char jr_bury_script[] =
    "redis.call('XACK', KEYS[1], ARGV[4], ARGV[1]) "
    "if redis.call('XDEL', KEYS[1], ARGV[1]) == 0 then return 0 end "
    "redis.call('LPUSH', KEYS[2], ARGV[2]) redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[3]) - 1) "
    "return 1";
static const char jr_finish_script[] =
    "redis.call('XACK', KEYS[1], ARGV[2], ARGV[1]) return redis.call('XDEL', KEYS[1], ARGV[1])";

typedef struct jobs_redis {
    chat_redis *conn;
    char consumer[64];
    int group_ready;
} jobs_redis;

typedef struct jr_call {
    jobs_redis *jr;
    chat_jobs_cb cb;
    void *arg;
    int kind;
    int n;
    json_t *acc; /* claim: what the steps found so far */
} jr_call;

enum { JR_PLAIN, JR_PUSH, JR_CLAIM_AUTO, JR_CLAIM_NEW, JR_LIST };

static void jr_group_made(chat_redis *r, redisReply *reply, void *arg)
{
    jobs_redis *jr = arg;
    (void)r;
    if (reply && (reply->type != REDIS_REPLY_ERROR || strncmp(reply->str, "BUSYGROUP", 9) == 0)) {
        jr->group_ready = 1;
    } else if (reply) {
        chat__log(CHAT_LOG_ERROR, "jobs_redis_error", "cannot create the jobs consumer group",
                  json_pack("{s:s}", "error", reply->str));
    }
}

static void jr_state(chat_redis *r, int up, void *arg)
{
    jobs_redis *jr = arg;
    if (!up) {
        jr->group_ready = 0;
        return;
    }
    /* from id 0: jobs added before the group existed are taken too */
    const char *argv[] = {"XGROUP", "CREATE", JR_STREAM, JR_GROUP, "0", "MKSTREAM"};
    chat__redis_command(r, 6, argv, NULL, jr_group_made, jr);
}

static int jr_open(void **impl, uv_loop_t *loop, const char *url, const char *consumer,
                   int synchronous)
{
    (void)synchronous;
    jobs_redis *jr = calloc(1, sizeof *jr);
    if (!jr) {
        return CHAT_ENOMEM;
    }
    snprintf(jr->consumer, sizeof jr->consumer, "%s", consumer);
    chat_redis_opts opts = {.url = url, .role = "jobs", .on_state = jr_state, .arg = jr};
    int rc = chat__redis_new(&jr->conn, loop, &opts);
    if (rc) {
        free(jr);
        return rc;
    }
    *impl = jr;
    return 0;
}

static void jr_close(void *impl)
{
    jobs_redis *jr = impl;
    chat__redis_free(jr->conn); /* callbacks still owed run now, with no reply */
    free(jr);
}

/* [id, [field, value, ...]] entries -> [[id, job], ...] appended to acc */
static void jr_entries(json_t *acc, const redisReply *entries)
{
    if (!entries || entries->type != REDIS_REPLY_ARRAY) {
        return;
    }
    for (size_t i = 0; i < entries->elements; i++) {
        const redisReply *e = entries->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 2 ||
            e->element[0]->type != REDIS_REPLY_STRING ||
            e->element[1]->type != REDIS_REPLY_ARRAY) {
            continue; /* XAUTOCLAIM names entries deleted meanwhile as nil */
        }
        const redisReply *fields = e->element[1];
        for (size_t f = 0; f + 1 < fields->elements; f += 2) {
            if (fields->element[f]->type == REDIS_REPLY_STRING &&
                strcmp(fields->element[f]->str, "job") == 0 &&
                fields->element[f + 1]->type == REDIS_REPLY_STRING) {
                json_array_append_new(acc, json_pack("[s,s]", e->element[0]->str,
                                                     fields->element[f + 1]->str));
            }
        }
    }
}

static void jr_reply(chat_redis *r, redisReply *reply, void *arg);

static int jr_send(jr_call *c, int argc, const char **argv)
{
    int rc = chat__redis_command(c->jr->conn, argc, argv, NULL, jr_reply, c);
    if (rc) {
        if (c->cb) {
            c->cb(rc, NULL, c->arg);
        }
        json_decref(c->acc);
        free(c);
    }
    return rc;
}

static void jr_reply(chat_redis *r, redisReply *reply, void *arg)
{
    jr_call *c = arg;
    int status = 0;
    json_t *result = NULL;
    if (!reply) {
        status = CHAT_EUNAVAIL;
    } else if (reply->type == REDIS_REPLY_ERROR) {
        chat__log(CHAT_LOG_WARN, "jobs_redis_error", "Redis refused a job queue command",
                  json_pack("{s:s}", "error", reply->str));
        status = CHAT_EUNAVAIL;
        if (strncmp(reply->str, "NOGROUP", 7) == 0) {
            jr_state(r, 1, c->jr); /* the stream was deleted: make it and the group again */
        }
    } else if (c->kind == JR_PUSH) {
        status = reply->type == REDIS_REPLY_INTEGER && reply->integer == 1 ? 0 : CHAT_ETOOBIG;
    } else if (c->kind == JR_CLAIM_AUTO) {
        /* [next cursor, entries, deleted ids]: then the entries never delivered */
        jr_entries(c->acc, reply->type == REDIS_REPLY_ARRAY && reply->elements >= 2
                               ? reply->element[1] : NULL);
        int left = c->n - (int)json_array_size(c->acc);
        if (left > 0) {
            char count[16];
            snprintf(count, sizeof count, "%d", left);
            const char *argv[] = {"XREADGROUP", "GROUP", JR_GROUP,  c->jr->consumer, "COUNT",
                                  count,        "STREAMS", JR_STREAM, ">"};
            c->kind = JR_CLAIM_NEW;
            jr_send(c, 9, argv);
            return;
        }
        result = c->acc;
        c->acc = NULL;
    } else if (c->kind == JR_CLAIM_NEW) {
        /* [[stream, entries]] or nil */
        if (reply->type == REDIS_REPLY_ARRAY && reply->elements >= 1 &&
            reply->element[0]->type == REDIS_REPLY_ARRAY && reply->element[0]->elements >= 2) {
            jr_entries(c->acc, reply->element[0]->element[1]);
        }
        result = c->acc;
        c->acc = NULL;
    } else if (c->kind == JR_LIST) {
        result = json_array();
        for (size_t i = 0; reply->type == REDIS_REPLY_ARRAY && i < reply->elements; i++) {
            if (reply->element[i]->type == REDIS_REPLY_STRING) {
                json_array_append_new(result, json_string(reply->element[i]->str));
            }
        }
    }
    if (c->cb) {
        c->cb(status, status ? NULL : result, c->arg);
        if (status) {
            json_decref(result);
        }
    } else {
        json_decref(result);
    }
    json_decref(c->acc);
    free(c);
}

static jr_call *jr_call_new(jobs_redis *jr, int kind, chat_jobs_cb cb, void *arg)
{
    jr_call *c = calloc(1, sizeof *c);
    if (!c && cb) {
        cb(CHAT_ENOMEM, NULL, arg);
    }
    if (c) {
        c->jr = jr;
        c->kind = kind;
        c->cb = cb;
        c->arg = arg;
    }
    return c;
}

static void jr_push(void *impl, const char *job, int64_t due, long max, chat_jobs_cb cb,
                    void *arg)
{
    jobs_redis *jr = impl;
    jr_call *c = jr_call_new(jr, JR_PUSH, cb, arg);
    if (!c) {
        return;
    }
    char sdue[24], smax[24], snow[24];
    snprintf(sdue, sizeof sdue, "%lld", (long long)due);
    snprintf(smax, sizeof smax, "%ld", max);
    snprintf(snow, sizeof snow, "%lld", (long long)chat__now_ms());
    const char *argv[] = {"EVAL", jr_push_script, "2", JR_STREAM, JR_DELAYED, job, sdue, smax,
                          snow};
    jr_send(c, 9, argv);
}

static void jr_claim(void *impl, int n, int64_t now, int64_t lease, chat_jobs_cb cb, void *arg)
{
    jobs_redis *jr = impl;
    if (!jr->group_ready) {
        cb(CHAT_EUNAVAIL, NULL, arg);
        return;
    }
    char snow[24], count[16], idle[24];
    snprintf(snow, sizeof snow, "%lld", (long long)now);
    snprintf(count, sizeof count, "%d", n);
    snprintf(idle, sizeof idle, "%lld", (long long)lease);
    /* what is due moves to the stream (no answer needed: the next step sees it) */
    const char *promote[] = {"EVAL", jr_promote_script, "2", JR_DELAYED, JR_STREAM, snow, "100"};
    chat__redis_command(jr->conn, 7, promote, NULL, NULL, NULL);
    jr_call *c = jr_call_new(jr, JR_CLAIM_AUTO, cb, arg);
    if (!c || !(c->acc = json_array())) {
        if (c) {
            cb(CHAT_ENOMEM, NULL, arg);
        }
        free(c);
        return;
    }
    c->n = n;
    const char *argv[] = {"XAUTOCLAIM", JR_STREAM, JR_GROUP, jr->consumer, idle, "0-0", "COUNT",
                          count};
    jr_send(c, 8, argv);
}

static void jr_finish(void *impl, const char *ref, chat_jobs_cb cb, void *arg)
{
    jobs_redis *jr = impl;
    jr_call *c = jr_call_new(jr, JR_PLAIN, cb, arg);
    if (c) {
        const char *argv[] = {"EVAL", jr_finish_script, "1", JR_STREAM, ref, JR_GROUP};
        jr_send(c, 6, argv);
    }
}

static void jr_retry(void *impl, const char *ref, const char *job, int64_t due, chat_jobs_cb cb,
                     void *arg)
{
    jobs_redis *jr = impl;
    jr_call *c = jr_call_new(jr, JR_PLAIN, cb, arg);
    if (c) {
        char sdue[24];
        snprintf(sdue, sizeof sdue, "%lld", (long long)due);
        const char *argv[] = {"EVAL", jr_retry_script, "2", JR_STREAM, JR_DELAYED, ref, job, sdue,
                              JR_GROUP};
        jr_send(c, 9, argv);
    }
}

static void jr_bury(void *impl, const char *ref, const char *job, long keep, chat_jobs_cb cb,
                    void *arg)
{
    jobs_redis *jr = impl;
    jr_call *c = jr_call_new(jr, JR_PLAIN, cb, arg);
    if (c) {
        char skeep[24];
        snprintf(skeep, sizeof skeep, "%ld", keep > 0 ? keep : 1);
        const char *argv[] = {"EVAL", jr_bury_script, "2", JR_STREAM, JR_DEAD, ref, job, skeep,
                              JR_GROUP};
        jr_send(c, 9, argv);
    }
}

static void jr_dead(void *impl, int limit, chat_jobs_cb cb, void *arg)
{
    jobs_redis *jr = impl;
    jr_call *c = jr_call_new(jr, JR_LIST, cb, arg);
    if (c) {
        char last[16];
        snprintf(last, sizeof last, "%d", limit > 0 ? limit - 1 : 0);
        const char *argv[] = {"LRANGE", JR_DEAD, "0", last};
        jr_send(c, 4, argv);
    }
}

const chat_jobs_backend chat__jobs_redis = {
    .name = "redis",
    .open = jr_open,
    .close = jr_close,
    .push = jr_push,
    .claim = jr_claim,
    .finish = jr_finish,
    .retry = jr_retry,
    .bury = jr_bury,
    .dead = jr_dead,
};
