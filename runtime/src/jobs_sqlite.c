/* jobs_sqlite.c: the job queue in a SQLite file of the data dir (jobs.db, WAL), for a node
 * without Redis. One table: a job is a row with the time it is due, a lease while a handler
 * holds it, and a dead mark once it failed its last attempt. Every statement runs on the
 * libuv thread pool, one at a time (a mutex on the one connection), never on the loop;
 * PRAGMA synchronous follows CHAT_SQLITE_SYNCHRONOUS, as the store's file does.
 * One node owns the file, so leases of a process that died are cleared when it starts
 * again: those jobs run again at once. */
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat.h"
#include "jobs.h"
#include "log.h"

typedef struct jobs_sqlite {
    sqlite3 *db;
    pthread_mutex_t mu;
    int pending; /* work queued on the pool */
    int closing; /* freed by the last completion */
} jobs_sqlite;

enum { JS_PUSH, JS_CLAIM, JS_FINISH, JS_RETRY, JS_BURY, JS_DEAD };

typedef struct js_op {
    uv_work_t work;
    jobs_sqlite *js;
    int kind;
    char *ref, *job;
    int64_t due, now, lease, max;
    int n;
    int status;
    json_t *result;
    chat_jobs_cb cb;
    void *arg;
} js_op;

static const char js_schema[] =
    "PRAGMA journal_mode=WAL;"
    "CREATE TABLE IF NOT EXISTS jobs ("
    " seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    " job TEXT NOT NULL,"
    " due INTEGER NOT NULL,"
    " lease INTEGER NOT NULL DEFAULT 0,"
    " dead INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX IF NOT EXISTS jobs_due ON jobs(dead, due);"
    "UPDATE jobs SET lease = 0 WHERE dead = 0 AND lease <> 0;";

static int js_exec(sqlite3 *db, const char *sql, const char *text, int64_t a, int64_t b)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    int idx = 1;
    if (rc == SQLITE_OK && text) {
        rc = sqlite3_bind_text(st, idx++, text, -1, SQLITE_STATIC);
    }
    if (rc == SQLITE_OK && sqlite3_bind_parameter_count(st) >= idx) {
        rc = sqlite3_bind_int64(st, idx++, a);
    }
    if (rc == SQLITE_OK && sqlite3_bind_parameter_count(st) >= idx) {
        rc = sqlite3_bind_int64(st, idx++, b);
    }
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(st);
        rc = rc == SQLITE_DONE || rc == SQLITE_ROW ? SQLITE_OK : rc;
    }
    sqlite3_finalize(st);
    return rc;
}

static int64_t js_scalar(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st = NULL;
    int64_t v = -1;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW) {
        v = sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
    return v;
}

static int js_claim(js_op *o, sqlite3 *db)
{
    sqlite3_stmt *st = NULL;
    json_t *out = json_array();
    int rc = out ? sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) : SQLITE_NOMEM;
    if (rc == SQLITE_OK) {
        rc = sqlite3_prepare_v2(db,
                                "SELECT seq, job FROM jobs WHERE dead = 0 AND due <= ?1 AND "
                                "lease <= ?1 ORDER BY due, seq LIMIT ?2",
                                -1, &st, NULL);
    }
    if (rc == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, o->now);
        sqlite3_bind_int(st, 2, o->n);
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            char ref[24];
            snprintf(ref, sizeof ref, "%lld", (long long)sqlite3_column_int64(st, 0));
            json_array_append_new(out, json_pack("[s,s]", ref,
                                                 (const char *)sqlite3_column_text(st, 1)));
        }
        rc = rc == SQLITE_DONE ? SQLITE_OK : rc;
    }
    sqlite3_finalize(st);
    size_t i;
    json_t *pair;
    json_array_foreach(rc == SQLITE_OK ? out : NULL, i, pair) {
        rc = js_exec(db, "UPDATE jobs SET lease = ?1 WHERE seq = ?2", NULL, o->now + o->lease,
                     strtoll(json_string_value(json_array_get(pair, 0)), NULL, 10));
        if (rc != SQLITE_OK) {
            break;
        }
    }
    if (rc == SQLITE_OK) {
        rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    }
    if (rc != SQLITE_OK) {
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        json_decref(out);
        return rc;
    }
    o->result = out;
    return SQLITE_OK;
}

static int js_dead(js_op *o, sqlite3 *db)
{
    sqlite3_stmt *st = NULL;
    json_t *out = json_array();
    int rc = sqlite3_prepare_v2(db, "SELECT job FROM jobs WHERE dead = 1 ORDER BY seq DESC "
                                    "LIMIT ?1", -1, &st, NULL);
    if (rc == SQLITE_OK && out) {
        sqlite3_bind_int(st, 1, o->n);
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            json_array_append_new(out, json_string((const char *)sqlite3_column_text(st, 0)));
        }
        rc = rc == SQLITE_DONE ? SQLITE_OK : rc;
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_OK || !out) {
        json_decref(out);
        return rc ? rc : SQLITE_NOMEM;
    }
    o->result = out;
    return SQLITE_OK;
}

static void js_work(uv_work_t *w)
{
    js_op *o = w->data;
    sqlite3 *db = o->js->db;
    int64_t ref = o->ref ? strtoll(o->ref, NULL, 10) : 0;
    int rc = SQLITE_OK;
    pthread_mutex_lock(&o->js->mu);
    switch (o->kind) {
    case JS_PUSH:
        if (o->max > 0 && js_scalar(db, "SELECT count(*) FROM jobs WHERE dead = 0") >= o->max) {
            o->status = CHAT_ETOOBIG;
            break;
        }
        rc = js_exec(db, "INSERT INTO jobs (job, due) VALUES (?1, ?2)", o->job, o->due, 0);
        break;
    case JS_CLAIM:
        rc = js_claim(o, db);
        break;
    case JS_FINISH:
        rc = js_exec(db, "DELETE FROM jobs WHERE seq = ?1", NULL, ref, 0);
        break;
    case JS_RETRY:
        rc = js_exec(db, "UPDATE jobs SET job = ?1, due = ?2, lease = 0 WHERE seq = ?3", o->job,
                     o->due, ref);
        break;
    case JS_BURY:
        rc = js_exec(db, "UPDATE jobs SET job = ?1, dead = 1, lease = 0 WHERE seq = ?2", o->job,
                     ref, 0);
        if (rc == SQLITE_OK) {
            rc = js_exec(db, "DELETE FROM jobs WHERE dead = 1 AND seq NOT IN (SELECT seq FROM "
                             "jobs WHERE dead = 1 ORDER BY seq DESC LIMIT ?1)",
                         NULL, o->max, 0);
        }
        break;
    case JS_DEAD:
        rc = js_dead(o, db);
        break;
    }
    if (rc != SQLITE_OK && !o->status) {
        o->status = CHAT_EUNAVAIL;
        chat__log(CHAT_LOG_ERROR, "jobs_sqlite_error", "a job queue statement failed",
                  json_pack("{s:s}", "error", sqlite3_errmsg(db)));
    }
    pthread_mutex_unlock(&o->js->mu);
}

static void js_free(jobs_sqlite *js)
{
    sqlite3_close(js->db);
    pthread_mutex_destroy(&js->mu);
    free(js);
}

static void js_after(uv_work_t *w, int status)
{
    js_op *o = w->data;
    jobs_sqlite *js = o->js;
    if (status && !o->status) {
        o->status = CHAT_EUNAVAIL;
    }
    if (o->cb) {
        o->cb(o->status, o->status ? NULL : json_incref(o->result), o->arg);
    }
    json_decref(o->result);
    free(o->ref);
    free(o->job);
    free(o);
    if (--js->pending == 0 && js->closing) {
        js_free(js);
    }
}

static void js_queue(jobs_sqlite *js, js_op *o, uv_loop_t *loop)
{
    o->js = js;
    o->work.data = o;
    js->pending++;
    uv_queue_work(loop, &o->work, js_work, js_after);
}

typedef struct js_impl {
    jobs_sqlite *js;
    uv_loop_t *loop;
} js_impl;

static js_op *js_op_new(int kind, const char *ref, const char *job, chat_jobs_cb cb, void *arg)
{
    js_op *o = calloc(1, sizeof *o);
    if (!o || (ref && !(o->ref = strdup(ref))) || (job && !(o->job = strdup(job)))) {
        if (o) {
            free(o->ref);
            free(o);
        }
        if (cb) {
            cb(CHAT_ENOMEM, NULL, arg);
        }
        return NULL;
    }
    o->kind = kind;
    o->cb = cb;
    o->arg = arg;
    return o;
}

static int js_open(void **impl, uv_loop_t *loop, const char *dir, const char *consumer,
                   int synchronous)
{
    (void)consumer;
    static const char *const sync_pragma[] = {
        "PRAGMA synchronous=NORMAL", "PRAGMA synchronous=NORMAL", "PRAGMA synchronous=FULL",
        "PRAGMA synchronous=EXTRA"};
    int sync = synchronous >= 1 && synchronous <= 3 ? synchronous : 1;
    char path[4096];
    snprintf(path, sizeof path, "%s/jobs.db", dir);
    js_impl *ji = calloc(1, sizeof *ji);
    jobs_sqlite *js = calloc(1, sizeof *js);
    if (!ji || !js) {
        free(ji);
        free(js);
        return CHAT_ENOMEM;
    }
    int rc = sqlite3_open_v2(path, &js->db,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                             NULL);
    if (rc == SQLITE_OK) {
        sqlite3_busy_timeout(js->db, 5000);
        rc = sqlite3_exec(js->db, js_schema, NULL, NULL, NULL);
    }
    if (rc == SQLITE_OK) {
        /* as the store: NORMAL (WAL) keeps what was pushed across a crash of chatd */
        rc = sqlite3_exec(js->db, sync_pragma[sync], NULL, NULL, NULL);
    }
    if (rc != SQLITE_OK) {
        chat__log(CHAT_LOG_ERROR, "jobs_open_failed", "cannot open the job queue's SQLite file",
                  json_pack("{s:s,s:s}", "path", path, "error",
                            js->db ? sqlite3_errmsg(js->db) : "?"));
        sqlite3_close(js->db);
        free(js);
        free(ji);
        return CHAT_EUNAVAIL;
    }
    pthread_mutex_init(&js->mu, NULL);
    ji->js = js;
    ji->loop = loop;
    *impl = ji;
    return 0;
}

static void js_close(void *impl)
{
    js_impl *ji = impl;
    if (ji->js->pending) {
        ji->js->closing = 1; /* the last completion frees it */
    } else {
        js_free(ji->js);
    }
    free(ji);
}

static void js_push(void *impl, const char *job, int64_t due, long max, chat_jobs_cb cb,
                    void *arg)
{
    js_impl *ji = impl;
    js_op *o = js_op_new(JS_PUSH, NULL, job, cb, arg);
    if (o) {
        o->due = due;
        o->max = max;
        js_queue(ji->js, o, ji->loop);
    }
}

static void js_claim_op(void *impl, int n, int64_t now, int64_t lease, chat_jobs_cb cb,
                        void *arg)
{
    js_impl *ji = impl;
    js_op *o = js_op_new(JS_CLAIM, NULL, NULL, cb, arg);
    if (o) {
        o->n = n;
        o->now = now;
        o->lease = lease;
        js_queue(ji->js, o, ji->loop);
    }
}

static void js_finish(void *impl, const char *ref, chat_jobs_cb cb, void *arg)
{
    js_impl *ji = impl;
    js_op *o = js_op_new(JS_FINISH, ref, NULL, cb, arg);
    if (o) {
        js_queue(ji->js, o, ji->loop);
    }
}

static void js_retry(void *impl, const char *ref, const char *job, int64_t due, chat_jobs_cb cb,
                     void *arg)
{
    js_impl *ji = impl;
    js_op *o = js_op_new(JS_RETRY, ref, job, cb, arg);
    if (o) {
        o->due = due;
        js_queue(ji->js, o, ji->loop);
    }
}

static void js_bury(void *impl, const char *ref, const char *job, long keep, chat_jobs_cb cb,
                    void *arg)
{
    js_impl *ji = impl;
    js_op *o = js_op_new(JS_BURY, ref, job, cb, arg);
    if (o) {
        o->max = keep;
        js_queue(ji->js, o, ji->loop);
    }
}

static void js_dead_op(void *impl, int limit, chat_jobs_cb cb, void *arg)
{
    js_impl *ji = impl;
    js_op *o = js_op_new(JS_DEAD, NULL, NULL, cb, arg);
    if (o) {
        o->n = limit;
        js_queue(ji->js, o, ji->loop);
    }
}

const chat_jobs_backend chat__jobs_sqlite = {
    .name = "sqlite",
    .open = js_open,
    .close = js_close,
    .push = js_push,
    .claim = js_claim_op,
    .finish = js_finish,
    .retry = js_retry,
    .bury = js_bury,
    .dead = js_dead_op,
};
