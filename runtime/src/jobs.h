/* jobs.h: the durable job queue behind chat.jobs. Scripts push jobs (a name and a JSON
 * payload); a handler the scripts declared for that name (chat.jobs.handle) runs each one
 * later, on some node; a failed run is retried with exponential backoff, and a job that failed
 * its last attempt goes to a dead-letter list the operator reads.
 *
 * Two backends behind one small table of functions: SQLite in the data dir (jobs_sqlite.c,
 * one node: the jobs survive a restart) and Redis Streams with a consumer group
 * (jobs_redis.c, CHAT_REDIS_URL: every node takes jobs; one that dies holding a job loses it
 * to another after CHAT_JOBS_TIMEOUT_MS). Delivery is at least once: a handler may see a job
 * again after a crash, so handlers should be idempotent.
 *
 * A job, as stored and as handlers see it: {id, name, payload, attempt, maxAttempts,
 * createdAt, error?} (attempt counts the runs that failed so far, before this one).
 * Loop thread only. */
#ifndef CHAT_JOBS_H
#define CHAT_JOBS_H

#include <jansson.h>
#include <stdint.h>
#include <uv.h>

#include "buf.h"

typedef struct chat_runtime chat_runtime;
typedef struct chat_jobs chat_jobs;

/* status 0 or CHAT_E*; result owned by the callback (may be NULL). cb may be NULL. */
typedef void (*chat_jobs_cb)(int status, json_t *result, void *arg);

typedef struct chat_jobs_backend {
    const char *name;
    /* target: the data dir (SQLite) or a redis:// URL; consumer: this node's name;
     * synchronous: SQLite's PRAGMA synchronous as CHAT_SQLITE_SYNCHRONOUS gives it (1 NORMAL,
     * 2 FULL, 3 EXTRA) */
    int (*open)(void **impl, uv_loop_t *loop, const char *target, const char *consumer,
                int synchronous);
    void (*close)(void *impl); /* callbacks still owed run with CHAT_EUNAVAIL or later */
    /* job: JSON text; due: epoch ms; max: jobs the queue may hold (CHAT_ETOOBIG past it) */
    void (*push)(void *impl, const char *job, int64_t due, long max, chat_jobs_cb cb, void *arg);
    /* up to n jobs due by now that nobody holds, or whose holder has been quiet for lease_ms;
     * result: [[ref, job text], ...] (ref: the backend's handle on this delivery) */
    void (*claim)(void *impl, int n, int64_t now, int64_t lease_ms, chat_jobs_cb cb, void *arg);
    void (*finish)(void *impl, const char *ref, chat_jobs_cb cb, void *arg);
    void (*retry)(void *impl, const char *ref, const char *job, int64_t due, chat_jobs_cb cb,
                  void *arg);
    /* onto the dead-letter list, which keeps the newest `keep` */
    void (*bury)(void *impl, const char *ref, const char *job, long keep, chat_jobs_cb cb,
                 void *arg);
    /* result: [job text, ...], newest first */
    void (*dead)(void *impl, int limit, chat_jobs_cb cb, void *arg);
} chat_jobs_backend;

extern const chat_jobs_backend chat__jobs_sqlite;
extern const chat_jobs_backend chat__jobs_redis;

/* Runs one job's handler: the host (runtime.c) gives the scripts' runner at start. done gets
 * 0, or the failure and a sentence for the dead-letter list; CHAT_ENOTFOUND: no handler. */
typedef void (*chat_jobs_done)(int status, const char *error, void *arg);
typedef void (*chat_jobs_runner)(chat_runtime *rt, const char *name, json_t *job,
                                 chat_jobs_done done, void *arg);

int chat__jobs_open(chat_jobs **out, chat_runtime *rt, const chat_jobs_backend *be,
                    const char *target, int synchronous);
/* Starts taking jobs (chatd; not chatd --run, which only pushes). */
int chat__jobs_start(chat_jobs *jobs, chat_jobs_runner runner);
/* Stops taking jobs; runs already started report to nothing. NULL-safe. */
void chat__jobs_free(chat_jobs *jobs);

/* name: 1..64 of letters, digits, _ . - : ; payload borrowed; delay_ms >= 0; max_attempts
 * 0: CHAT_JOBS_ATTEMPTS. cb gets {"id": id}. CHAT_EINVAL / CHAT_ETOOBIG are also returned
 * at once (cb is not called). */
int chat__jobs_push(chat_jobs *jobs, const char *name, json_t *payload, int64_t delay_ms,
                    int max_attempts, chat_jobs_cb cb, void *arg);
/* The dead-letter list, newest first: cb gets an array of jobs (objects). */
void chat__jobs_dead(chat_jobs *jobs, int limit, chat_jobs_cb cb, void *arg);
int chat__jobs_metrics(chat_jobs *jobs, chat_buf *b);
const char *chat__jobs_backend_name(const chat_jobs *jobs);

#endif
