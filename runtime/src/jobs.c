/* jobs.c: the job queue's rules, whatever the backend: checks and bounds on push, the worker
 * (a poll timer that claims what is due, up to CHAT_JOBS_CONCURRENCY running at once), the
 * outcome of a run (finished, retried after base * 2^(attempt-1) ms, or buried) and the
 * counters for /metrics. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat.h"
#include "jobs.h"
#include "log.h"
#include "rt.h"

struct chat_jobs {
    chat_runtime *rt;
    const chat_jobs_backend *be;
    void *impl;
    chat_jobs_runner runner;
    uv_timer_t poll;
    int polling;  /* the poll timer was started (closed in free) */
    int claiming; /* a claim is out: one at a time */
    int running;
    int *alive; /* cleared when freed: completions still owed find it and stop */
    uint64_t pushed, refused_full, refused_big, done, retried, dead, failed_runs;
};

typedef struct job_run {
    chat_jobs *jobs;
    int *alive;
    char *ref;
    json_t *job;
} job_run;

static int valid_name(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > 64) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-' || c == ':')) {
            return 0;
        }
    }
    return 1;
}

/* alive[0]: the queue exists; alive[1]: callbacks still owed that hold it; then the queue
 * itself. Completions that come after chat__jobs_free find alive[0] == 0 and only drop. */
static int *alive_hold(chat_jobs *jobs)
{
    jobs->alive[1]++;
    return jobs->alive;
}

static void alive_drop(int *alive)
{
    if (--alive[1] == 0 && !alive[0]) {
        free(alive);
    }
}

static void job_id(char out[25])
{
    unsigned char raw[12];
    uv_random(NULL, NULL, raw, sizeof raw, 0, NULL);
    for (int i = 0; i < 12; i++) {
        snprintf(out + 2 * i, 3, "%02x", raw[i]);
    }
}

typedef struct push_req {
    chat_jobs *jobs;
    int *alive;
    char id[25];
    chat_jobs_cb cb;
    void *arg;
} push_req;

static void pushed(int status, json_t *result, void *arg)
{
    push_req *p = arg;
    json_decref(result);
    if (*p->alive) {
        if (status == CHAT_ETOOBIG) {
            p->jobs->refused_full++;
        } else if (!status) {
            p->jobs->pushed++;
        }
    }
    if (p->cb) {
        p->cb(status, status ? NULL : json_pack("{s:s}", "id", p->id), p->arg);
    }
    alive_drop(p->alive);
    free(p);
}

int chat__jobs_push(chat_jobs *jobs, const char *name, json_t *payload, int64_t delay_ms,
                    int max_attempts, chat_jobs_cb cb, void *arg)
{
    const chat_config *cfg = &jobs->rt->cfg;
    if (!valid_name(name) || delay_ms < 0 || max_attempts < 0 || max_attempts > 100) {
        return CHAT_EINVAL;
    }
    char *text = json_dumps(payload ? payload : json_null(), JSON_COMPACT | JSON_ENCODE_ANY);
    if (!text) {
        return CHAT_EINVAL;
    }
    size_t size = strlen(text);
    free(text);
    if (size > (size_t)cfg->jobs_payload_max) {
        jobs->refused_big++;
        return CHAT_ETOOBIG;
    }
    push_req *p = calloc(1, sizeof *p);
    if (!p) {
        return CHAT_ENOMEM;
    }
    job_id(p->id);
    int64_t now = (int64_t)chat__now_ms();
    json_t *job = json_pack("{s:s,s:s,s:O,s:i,s:i,s:I}", "id", p->id, "name", name, "payload",
                            payload ? payload : json_null(), "attempt", 0, "maxAttempts",
                            max_attempts ? max_attempts : cfg->jobs_attempts, "createdAt",
                            (json_int_t)now);
    char *jtext = job ? json_dumps(job, JSON_COMPACT) : NULL;
    json_decref(job);
    if (!jtext) {
        free(p);
        return CHAT_ENOMEM;
    }
    p->jobs = jobs;
    p->cb = cb;
    p->arg = arg;
    p->alive = alive_hold(jobs);
    jobs->be->push(jobs->impl, jtext, now + delay_ms, (long)cfg->jobs_max, pushed, p);
    free(jtext);
    return 0;
}

/* ---- running a job ---- */

static void poll_now(chat_jobs *jobs);

static void outcome_done(int status, json_t *result, void *arg)
{
    int *alive = arg;
    json_decref(result);
    if (status) {
        chat__log(CHAT_LOG_WARN, "job_store_failed",
                  "could not record a job's outcome; it will run again after its lease",
                  json_pack("{s:s}", "code", chat_errcode(status)));
    }
    alive_drop(alive);
}

static void run_free(job_run *r)
{
    free(r->ref);
    json_decref(r->job);
    free(r);
}

static void job_done(int status, const char *error, void *arg)
{
    job_run *r = arg;
    chat_jobs *jobs = r->jobs;
    if (!*r->alive) {
        alive_drop(r->alive);
        run_free(r);
        return;
    }
    jobs->running--;
    const chat_config *cfg = &jobs->rt->cfg;
    const char *name = json_string_value(json_object_get(r->job, "name"));
    const char *id = json_string_value(json_object_get(r->job, "id"));
    if (!status) {
        jobs->done++;
        jobs->be->finish(jobs->impl, r->ref, outcome_done, alive_hold(jobs));
    } else {
        jobs->failed_runs++;
        int attempt = (int)json_integer_value(json_object_get(r->job, "attempt")) + 1;
        int max = (int)json_integer_value(json_object_get(r->job, "maxAttempts"));
        char why[512];
        snprintf(why, sizeof why, "%s",
                 error ? error
                 : status == CHAT_ENOTFOUND
                     ? "no handler for this job (chat.jobs.handle) in the loaded scripts"
                     : chat_strerror(status));
        json_object_set_new(r->job, "attempt", json_integer(attempt));
        json_object_set_new(r->job, "error", json_string(why));
        char *text = json_dumps(r->job, JSON_COMPACT);
        if (!text) {
            /* cannot record it: the lease runs out and the job runs again */
        } else if (attempt >= max) {
            jobs->dead++;
            json_object_set_new(r->job, "diedAt", json_integer((json_int_t)chat__now_ms()));
            free(text);
            text = json_dumps(r->job, JSON_COMPACT);
            chat__log(CHAT_LOG_WARN, "job_dead",
                      "a job failed its last attempt and went to the dead-letter list",
                      json_pack("{s:s?,s:s?,s:i,s:s}", "job", name, "id", id, "attempts",
                                attempt, "error", why));
            if (text) {
                jobs->be->bury(jobs->impl, r->ref, text, (long)cfg->jobs_dead_max, outcome_done,
                               alive_hold(jobs));
            }
        } else {
            jobs->retried++;
            int64_t delay = cfg->jobs_backoff_ms;
            for (int i = 1; i < attempt && delay < cfg->jobs_backoff_max_ms; i++) {
                delay *= 2;
            }
            if (delay > cfg->jobs_backoff_max_ms) {
                delay = cfg->jobs_backoff_max_ms;
            }
            chat__log(CHAT_LOG_INFO, "job_retry", "a job failed; it will be tried again",
                      json_pack("{s:s?,s:s?,s:i,s:I,s:s}", "job", name, "id", id, "attempt",
                                attempt, "delay_ms", (json_int_t)delay, "error", why));
            jobs->be->retry(jobs->impl, r->ref, text, (int64_t)chat__now_ms() + delay,
                            outcome_done, alive_hold(jobs));
        }
        free(text);
    }
    alive_drop(r->alive);
    run_free(r);
    poll_now(jobs); /* a slot is free */
}

static void claimed(int status, json_t *result, void *arg)
{
    int *alive = arg;
    if (!*alive) {
        json_decref(result);
        alive_drop(alive);
        return;
    }
    chat_jobs *jobs = *(chat_jobs **)(alive + 2);
    alive_drop(alive);
    jobs->claiming = 0;
    size_t i;
    json_t *pair;
    json_array_foreach(status ? NULL : result, i, pair) {
        const char *ref = json_string_value(json_array_get(pair, 0));
        const char *text = json_string_value(json_array_get(pair, 1));
        json_t *job = text ? json_loads(text, 0, NULL) : NULL;
        const char *name = json_string_value(json_object_get(job, "name"));
        job_run *r = calloc(1, sizeof *r);
        if (!ref || !name || !r || !(r->ref = strdup(ref))) {
            chat__log(CHAT_LOG_ERROR, "job_unreadable", "a stored job could not be read; "
                      "it stays where it is", json_pack("{s:s?}", "ref", ref));
            json_decref(job);
            free(r);
            continue;
        }
        r->jobs = jobs;
        r->alive = alive_hold(jobs);
        r->job = job;
        jobs->running++;
        json_t *copy = json_deep_copy(job);
        jobs->runner(jobs->rt, name, copy, job_done, r);
    }
    json_decref(result);
}

static void poll_now(chat_jobs *jobs)
{
    const chat_config *cfg = &jobs->rt->cfg;
    int room = cfg->jobs_concurrency - jobs->running;
    if (!jobs->runner || jobs->claiming || room <= 0) {
        return;
    }
    jobs->claiming = 1;
    /* a run is abandoned at CHAT_JOBS_TIMEOUT_MS; the lease is a little longer, so a job
     * is taken again only once its run has surely ended (or its node has) */
    jobs->be->claim(jobs->impl, room, (int64_t)chat__now_ms(), cfg->jobs_timeout_ms + 1000L,
                    claimed, alive_hold(jobs));
}

static void poll_cb(uv_timer_t *t) { poll_now(t->data); }

/* ---- the queue ---- */

int chat__jobs_open(chat_jobs **out, chat_runtime *rt, const chat_jobs_backend *be,
                    const char *target, int synchronous)
{
    chat_jobs *jobs = calloc(1, sizeof *jobs);
    int *alive = calloc(1, 2 * sizeof(int) + sizeof(chat_jobs *));
    if (!jobs || !alive) {
        free(jobs);
        free(alive);
        return CHAT_ENOMEM;
    }
    jobs->rt = rt;
    jobs->be = be;
    alive[0] = 1;
    *(chat_jobs **)(alive + 2) = jobs;
    jobs->alive = alive;
    int rc = be->open(&jobs->impl, rt->loop, target, rt->node_id, synchronous);
    if (rc) {
        free(alive);
        free(jobs);
        return rc;
    }
    *out = jobs;
    return 0;
}

int chat__jobs_start(chat_jobs *jobs, chat_jobs_runner runner)
{
    jobs->runner = runner;
    uv_timer_init(jobs->rt->loop, &jobs->poll);
    jobs->poll.data = jobs;
    uv_unref((uv_handle_t *)&jobs->poll);
    jobs->polling = 1;
    int ms = jobs->rt->cfg.jobs_poll_ms;
    return uv_timer_start(&jobs->poll, poll_cb, (uint64_t)ms, (uint64_t)ms) ? CHAT_EINTERNAL : 0;
}

static void poll_closed(uv_handle_t *h) { free(h->data); }

void chat__jobs_free(chat_jobs *jobs)
{
    if (!jobs) {
        return;
    }
    jobs->alive[0] = 0;
    if (jobs->alive[1] == 0) {
        free(jobs->alive);
    }
    jobs->be->close(jobs->impl);
    if (jobs->polling) {
        uv_close((uv_handle_t *)&jobs->poll, poll_closed); /* frees jobs */
    } else {
        free(jobs);
    }
}

typedef struct dead_req {
    chat_jobs_cb cb;
    void *arg;
} dead_req;

static void dead_listed(int status, json_t *result, void *arg)
{
    dead_req *d = arg;
    json_t *out = status ? NULL : json_array();
    size_t i;
    json_t *v;
    json_array_foreach(out ? result : NULL, i, v) {
        json_t *job = json_loads(json_string_value(v) ? json_string_value(v) : "null", 0, NULL);
        if (job) {
            json_array_append_new(out, job);
        }
    }
    json_decref(result);
    d->cb(status, out, d->arg);
    free(d);
}

void chat__jobs_dead(chat_jobs *jobs, int limit, chat_jobs_cb cb, void *arg)
{
    dead_req *d = malloc(sizeof *d);
    if (!d) {
        cb(CHAT_ENOMEM, NULL, arg);
        return;
    }
    d->cb = cb;
    d->arg = arg;
    jobs->be->dead(jobs->impl, limit, dead_listed, d);
}

const char *chat__jobs_backend_name(const chat_jobs *jobs) { return jobs->be->name; }

int chat__jobs_metrics(chat_jobs *jobs, chat_buf *b)
{
    if (!jobs) {
        return 0;
    }
    return chat__buf_appendf(
        b,
        "# HELP chatd_jobs_pushed_total Jobs queued through this node.\n"
        "# TYPE chatd_jobs_pushed_total counter\nchatd_jobs_pushed_total %llu\n"
        "# HELP chatd_jobs_refused_total Pushes refused: the queue held CHAT_JOBS_MAX jobs "
        "(full) or the payload was over CHAT_JOBS_PAYLOAD_MAX (too_big).\n"
        "# TYPE chatd_jobs_refused_total counter\n"
        "chatd_jobs_refused_total{reason=\"full\"} %llu\n"
        "chatd_jobs_refused_total{reason=\"too_big\"} %llu\n"
        "# HELP chatd_jobs_running Job handlers running on this node.\n"
        "# TYPE chatd_jobs_running gauge\nchatd_jobs_running %d\n"
        "# HELP chatd_jobs_done_total Jobs whose handler succeeded on this node.\n"
        "# TYPE chatd_jobs_done_total counter\nchatd_jobs_done_total %llu\n"
        "# HELP chatd_jobs_failed_runs_total Handler runs that failed on this node.\n"
        "# TYPE chatd_jobs_failed_runs_total counter\nchatd_jobs_failed_runs_total %llu\n"
        "# HELP chatd_jobs_retried_total Failed jobs scheduled for another attempt.\n"
        "# TYPE chatd_jobs_retried_total counter\nchatd_jobs_retried_total %llu\n"
        "# HELP chatd_jobs_dead_total Jobs put on the dead-letter list by this node.\n"
        "# TYPE chatd_jobs_dead_total counter\nchatd_jobs_dead_total %llu\n",
        (unsigned long long)jobs->pushed, (unsigned long long)jobs->refused_full,
        (unsigned long long)jobs->refused_big, jobs->running, (unsigned long long)jobs->done,
        (unsigned long long)jobs->failed_runs, (unsigned long long)jobs->retried,
        (unsigned long long)jobs->dead);
}
