/* store.c: the backend-independent half of the store: calls queued on the uv thread pool and
 * reported on the loop, plus the ids and clock every backend shares. */
#include "store.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "chat.h"
#include "log.h"

struct chat_store {
    uv_loop_t *loop;
    const chat_store_backend *be;
    void *impl;    /* NULL once the backend is closed */
    int pending;   /* calls whose callback has not run yet (loop thread only) */
    unsigned long long refused; /* calls refused at opts.queue_max */
    int closed;    /* closed while callbacks were still owed: the last one frees this */
    chat_store_opts opts;
    uv_mutex_t lock;
    uv_cond_t idle;
    int running; /* under lock: jobs queued for or running on a worker */
    /* group commit (loop thread only): inserts waiting for the next batch, in call order */
    struct store_req *q_head, *q_tail;
    int queued;
    int writing; /* a batch is queued for or running on a worker */
    chat_store_stats stats;
    chat_store_observe_fn observe; /* told each call's op and start as it answers */
    void *observe_arg;
};

typedef struct store_req {
    uv_work_t work;
    chat_store *s;
    int op;
    int status;
    json_t *arg;
    json_t *result;
    chat_store_cb cb;
    void *cbarg;
    chat_store_req req; /* checked arg (inserts: on the loop, when queued for a batch) */
    struct store_req *next;
    uint64_t started; /* uv_hrtime when queued */
} store_req;

typedef struct store_batch {
    uv_work_t work;
    chat_store *s;
    int n;
    store_req **items;
    chat_store_req **reqs;
    int *status;
    json_t **results;
} store_batch;

static const chat_store_opts store_defaults = {
    .sqlite_synchronous = 1, .batch_max = 1024, .queue_max = 10000};

static void store_free(chat_store *s)
{
    uv_cond_destroy(&s->idle);
    uv_mutex_destroy(&s->lock);
    free(s);
}

int chat__store_open_with(chat_store **out, uv_loop_t *loop, const chat_store_backend *be,
                          const char *target, const chat_store_opts *opts)
{
    chat_store *s = NULL;
    int err = CHAT_EINVAL;
    char id[25];

    if (!out || !be || !be->open || !be->close || !be->exec) {
        goto fail;
    }
    *out = NULL;
    chat__objectid(id); /* seeds the id generator now, not on the first hot-path call */
    err = CHAT_ENOMEM;
    s = calloc(1, sizeof *s);
    if (!s) {
        goto fail;
    }
    if (uv_mutex_init(&s->lock) != 0) {
        free(s);
        s = NULL;
        goto fail;
    }
    if (uv_cond_init(&s->idle) != 0) {
        uv_mutex_destroy(&s->lock);
        free(s);
        s = NULL;
        goto fail;
    }
    s->loop = loop;
    s->be = be;
    s->opts = opts ? *opts : store_defaults;
    if (s->opts.sqlite_synchronous < 1 || s->opts.sqlite_synchronous > 3) {
        s->opts.sqlite_synchronous = store_defaults.sqlite_synchronous;
    }
    if (s->opts.queue_max <= 0) {
        s->opts.queue_max = store_defaults.queue_max;
    }
    err = be->open(&s->impl, target, &s->opts);
    if (err) {
        goto fail;
    }
    *out = s;
    return 0;
fail:
    if (s) {
        store_free(s);
    }
    return err;
}

int chat__store_open(chat_store **out, uv_loop_t *loop, const chat_store_backend *be,
                     const char *target)
{
    return chat__store_open_with(out, loop, be, target, NULL);
}

static void store_wait_idle(chat_store *s)
{
    uv_mutex_lock(&s->lock);
    while (s->running > 0) {
        uv_cond_wait(&s->idle, &s->lock);
    }
    uv_mutex_unlock(&s->lock);
}

static int batch_start(chat_store *s);
static void batch_fallback(chat_store *s);

void chat__store_close(chat_store *s)
{
    if (!s) {
        return;
    }
    /* Pool threads run without the loop, so this wait ends on its own; it keeps the backend
     * alive until no worker is inside it. Inserts still waiting for a batch are written
     * first: their callers are answered (on the loop) like every other pending call. */
    store_wait_idle(s);
    while (s->q_head && s->impl) {
        s->writing = 0; /* the last batch ended; its report waits for the loop */
        if (batch_start(s) != 0) {
            batch_fallback(s);
        }
        store_wait_idle(s);
    }
    s->closed = 1; /* no batch starts from now on */
    if (s->impl) {
        s->be->close(s->impl);
        s->impl = NULL;
    }
    if (s->pending > 0) {
        /* results are still owed to callbacks on the loop; the last one frees s */
        return;
    }
    store_free(s);
}

int chat__store_pending(const chat_store *s) { return s ? s->pending : 0; }
unsigned long long chat__store_refused(const chat_store *s) { return s ? s->refused : 0; }

void chat__store_observe(chat_store *s, chat_store_observe_fn fn, void *arg)
{
    s->observe = fn;
    s->observe_arg = arg;
}

void chat__store_stats(const chat_store *s, chat_store_stats *out)
{
    memset(out, 0, sizeof *out);
    if (s) {
        *out = s->stats;
        out->queued = s->queued;
        if (s->impl && s->be->stats) {
            s->be->stats(s->impl, out);
        }
    }
}

int chat__store_metrics(struct chat_buf *b, const chat_store *s)
{
    chat_store_stats st;
    chat__store_stats(s, &st);
    return chat__buf_appendf(
        b,
        "# HELP chatd_store_insert_batches_total Group commits of message inserts.\n"
        "# TYPE chatd_store_insert_batches_total counter\n"
        "chatd_store_insert_batches_total %llu\n"
        "# HELP chatd_store_inserts_batched_total Message inserts written by group commits.\n"
        "# TYPE chatd_store_inserts_batched_total counter\n"
        "chatd_store_inserts_batched_total %llu\n"
        "# HELP chatd_store_insert_batch_largest The most inserts one group commit held.\n"
        "# TYPE chatd_store_insert_batch_largest gauge\n"
        "chatd_store_insert_batch_largest %d\n"
        "# HELP chatd_store_inserts_queued Message inserts waiting for the next group commit.\n"
        "# TYPE chatd_store_inserts_queued gauge\nchatd_store_inserts_queued %d\n"
        "# HELP chatd_store_checkpoints_total SQLite WAL checkpoint passes (PASSIVE: commits "
        "do not wait), by the checkpointer thread or, if it could not start, the writer "
        "(0 on MongoDB).\n"
        "# TYPE chatd_store_checkpoints_total counter\nchatd_store_checkpoints_total %llu\n"
        "# HELP chatd_store_checkpoints_forced_total SQLite WAL checkpoints the writer ran "
        "itself (commits waited) because the WAL passed its bound.\n"
        "# TYPE chatd_store_checkpoints_forced_total counter\n"
        "chatd_store_checkpoints_forced_total %llu\n"
        "# HELP chatd_store_wal_pages Frames in the SQLite WAL after the last commit.\n"
        "# TYPE chatd_store_wal_pages gauge\nchatd_store_wal_pages %llu\n",
        (unsigned long long)st.batches, (unsigned long long)st.batched, st.batch_largest,
        st.queued, (unsigned long long)st.checkpoints,
        (unsigned long long)st.checkpoints_forced, (unsigned long long)st.wal_pages);
}

/* "normal", "full" or "extra" (any case) as chat_store_opts.sqlite_synchronous; 0 if none. */
int chat__store_parse_synchronous(const char *s)
{
    static const char *const names[] = {"normal", "full", "extra"};
    for (int i = 0; s && i < 3; i++) {
        if (strcasecmp(s, names[i]) == 0) {
            return i + 1;
        }
    }
    return 0;
}

static void store_job_ended(chat_store *s)
{
    uv_mutex_lock(&s->lock);
    if (--s->running == 0) {
        uv_cond_signal(&s->idle);
    }
    uv_mutex_unlock(&s->lock);
}

static void store_run(uv_work_t *work)
{
    store_req *r = work->data;
    chat_store *s = r->s;

    r->status = chat__store_check(r->op, r->arg, &r->req);
    r->req.arg_given = 1; /* chat__store_call took it */
    if (!r->status) {
        r->status = s->be->exec(s->impl, &r->req, &r->result);
    }
    chat__store_req_clear(&r->req);
    store_job_ended(s);
}

/* Reports one call and frees it; 1 when the store was freed (closed, nothing owed). */
static int store_report(chat_store *s, store_req *r)
{
    s->pending--;
    /* decided before cb: a cb that closes the store frees it itself when nothing is owed */
    int free_store = s->closed && s->pending == 0;
    chat__store_req_clear(&r->req);
    json_decref(r->arg);
    if (s->observe) {
        s->observe(s->observe_arg, r->op, r->started);
    }
    r->cb(r->status, r->result, r->cbarg);
    free(r);
    if (free_store) {
        store_free(s);
    }
    return free_store;
}

static void store_done(uv_work_t *work, int status)
{
    store_req *r = work->data;
    chat_store *s = r->s;

    if (status == UV_ECANCELED) {
        /* never ran: keep the worker count honest and report the store as unavailable */
        store_job_ended(s);
        json_decref(r->result);
        r->result = NULL;
        r->status = CHAT_EUNAVAIL;
    }
    store_report(s, r);
}

/* ---- group commit ---- */

static void batch_run(uv_work_t *work)
{
    store_batch *b = work->data;
    chat_store *s = b->s;

    s->be->insert_batch(s->impl, b->reqs, b->n, b->status, b->results);
    store_job_ended(s);
}

static void batch_done(uv_work_t *work, int status)
{
    store_batch *b = work->data;
    chat_store *s = b->s;

    if (status == UV_ECANCELED) {
        store_job_ended(s);
    }
    s->writing = 0;
    s->stats.batches++;
    s->stats.batched += (uint64_t)b->n;
    if (b->n > s->stats.batch_largest) {
        s->stats.batch_largest = b->n;
    }
    /* the next batch starts writing before this one is reported */
    if (s->q_head && !s->closed && batch_start(s) != 0) {
        batch_fallback(s);
    }
    int n = b->n;
    store_req **items = b->items;
    int *st = b->status;
    json_t **res = b->results;
    free(b->reqs);
    free(b);
    for (int i = 0; i < n; i++) {
        store_req *r = items[i];
        if (status == UV_ECANCELED) {
            json_decref(res[i]);
            r->status = CHAT_EUNAVAIL;
            r->result = NULL;
        } else {
            r->status = st[i];
            r->result = res[i];
        }
        if (store_report(s, r)) {
            break; /* freed the store: only possible on the last one */
        }
    }
    free(items);
    free(st);
    free(res);
}

/* Takes every queued insert (up to batch_max) into one job. 0 or CHAT_E*. */
static int batch_start(chat_store *s)
{
    if (s->writing || !s->q_head) {
        return 0;
    }
    int n = s->queued < s->opts.batch_max ? s->queued : s->opts.batch_max;
    store_batch *b = calloc(1, sizeof *b);
    if (b) {
        b->items = calloc((size_t)n, sizeof *b->items);
        b->reqs = calloc((size_t)n, sizeof *b->reqs);
        b->status = calloc((size_t)n, sizeof *b->status);
        b->results = calloc((size_t)n, sizeof *b->results);
    }
    if (!b || !b->items || !b->reqs || !b->status || !b->results) {
        if (b) {
            free(b->items);
            free(b->reqs);
            free(b->status);
            free(b->results);
            free(b);
        }
        return CHAT_ENOMEM; /* the queue stays; the next insert or batch retries */
    }
    for (int i = 0; i < n; i++) {
        store_req *r = s->q_head;
        s->q_head = r->next;
        r->next = NULL;
        b->items[i] = r;
        b->reqs[i] = &r->req;
    }
    if (!s->q_head) {
        s->q_tail = NULL;
    }
    s->queued -= n;
    b->n = n;
    b->s = s;
    b->work.data = b;
    uv_mutex_lock(&s->lock);
    s->running++;
    uv_mutex_unlock(&s->lock);
    s->writing = 1;
    if (uv_queue_work(s->loop, &b->work, batch_run, batch_done) != 0) {
        /* cannot happen with a valid loop: put the batch back, in order, for the fallback */
        store_job_ended(s);
        s->writing = 0;
        b->items[n - 1]->next = s->q_head;
        for (int i = n - 2; i >= 0; i--) {
            b->items[i]->next = b->items[i + 1];
        }
        if (!s->q_head) {
            s->q_tail = b->items[n - 1];
        }
        s->q_head = b->items[0];
        s->queued += n;
        free(b->items);
        free(b->reqs);
        free(b->status);
        free(b->results);
        free(b);
        return CHAT_EINTERNAL;
    }
    return 0;
}

/* Queues r on its own worker job. 0 or CHAT_EINTERNAL (r is then not queued). */
static int queue_single(chat_store *s, store_req *r)
{
    chat__store_req_clear(&r->req); /* the worker checks arg again */
    /* counted before queueing: a worker may finish before uv_queue_work returns */
    uv_mutex_lock(&s->lock);
    s->running++;
    uv_mutex_unlock(&s->lock);
    if (uv_queue_work(s->loop, &r->work, store_run, store_done) != 0) {
        store_job_ended(s);
        return CHAT_EINTERNAL;
    }
    return 0;
}

/* No memory for a batch: every queued insert runs on its own job instead. */
static void batch_fallback(chat_store *s)
{
    store_req *r;
    while ((r = s->q_head)) {
        s->q_head = r->next;
        r->next = NULL;
        s->queued--;
        if (queue_single(s, r) != 0) {
            r->status = CHAT_EINTERNAL;
            if (store_report(s, r)) {
                return;
            }
        }
    }
    s->q_tail = NULL;
}

int chat__store_call(chat_store *s, int op, json_t *arg, chat_store_cb cb, void *cbarg)
{
    store_req *r = NULL;
    int err = CHAT_EINVAL;

    if (!s || !s->loop || !cb || op < 0 || op >= CHAT_STORE_NOPS) {
        goto fail;
    }
    err = CHAT_EUNAVAIL;
    if (s->closed || !s->impl) {
        goto fail;
    }
    /* a slow store (failover, fsync stall) must not let clients grow the queue without
     * bound: past store_queue_max the caller answers `unavailable` at once */
    if (s->pending >= s->opts.queue_max) {
        s->refused++;
        goto fail;
    }
    err = CHAT_ENOMEM;
    r = calloc(1, sizeof *r);
    if (!r) {
        goto fail;
    }
    r->work.data = r;
    r->s = s;
    r->op = op;
    r->arg = arg;
    r->cb = cb;
    r->cbarg = cbarg;
    r->started = uv_hrtime();
    /* A well-formed insert joins the queue for the next batch; anything else (and an insert
     * that fails its checks, answered by the worker like any call) runs on its own. */
    if (op == CHAT_STORE_MESSAGE_INSERT && s->be->insert_batch && s->opts.batch_max > 1 &&
        chat__store_check(op, arg, &r->req) == 0) {
        r->req.arg_given = 1;
        if (s->q_tail) {
            s->q_tail->next = r;
        } else {
            s->q_head = r;
        }
        s->q_tail = r;
        s->queued++;
        s->pending++;
        if (!s->writing && batch_start(s) != 0) {
            batch_fallback(s);
        }
        return 0;
    }
    if ((err = queue_single(s, r)) != 0) {
        goto fail;
    }
    s->pending++;
    return 0;
fail:
    if (r) {
        chat__store_req_clear(&r->req);
    }
    free(r);
    json_decref(arg);
    return err;
}

int chat__store_exec(chat_store *s, int op, json_t *arg, json_t **result)
{
    chat_store_req req;

    if (result) {
        *result = NULL;
    }
    if (!s || !s->impl || !result || op < 0 || op >= CHAT_STORE_NOPS) {
        return CHAT_EINVAL;
    }
    int err = chat__store_check(op, arg, &req);
    if (!err) {
        err = s->be->exec(s->impl, &req, result);
    }
    chat__store_req_clear(&req);
    return err;
}

/* ---- ObjectIds ---- */

static uv_once_t oid_once = UV_ONCE_INIT;
static uint8_t oid_random[5];
static atomic_uint oid_counter;

static void oid_init(void)
{
    uint8_t seed[8];
    size_t got = 0;

    while (got < sizeof seed) {
        ssize_t n = getrandom(seed + got, sizeof seed - got, 0);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            break;
        }
        got += (size_t)n;
    }
    if (got < sizeof seed) {
        /* no kernel randomness: ids need uniqueness, not secrecy; time and pid suffice */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t x = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^
                     ((uint64_t)getpid() << 40);
        memcpy(seed, &x, sizeof seed);
        chat__log(CHAT_LOG_WARN, "objectid_weak_seed",
                  "getrandom failed; ObjectIds are seeded from the clock and pid", NULL);
    }
    memcpy(oid_random, seed, sizeof oid_random);
    atomic_store(&oid_counter, (unsigned)seed[5] << 16 | (unsigned)seed[6] << 8 | seed[7]);
}

void chat__objectid(char out[25])
{
    static const char hex[] = "0123456789abcdef";
    uint8_t b[12];

    uv_once(&oid_once, oid_init);
    uint32_t secs = (uint32_t)time(NULL);
    uint32_t n = atomic_fetch_add(&oid_counter, 1) & 0xffffffu;
    b[0] = (uint8_t)(secs >> 24);
    b[1] = (uint8_t)(secs >> 16);
    b[2] = (uint8_t)(secs >> 8);
    b[3] = (uint8_t)secs;
    memcpy(b + 4, oid_random, sizeof oid_random);
    b[9] = (uint8_t)(n >> 16);
    b[10] = (uint8_t)(n >> 8);
    b[11] = (uint8_t)n;
    for (int i = 0; i < 12; i++) {
        out[2 * i] = hex[b[i] >> 4];
        out[2 * i + 1] = hex[b[i] & 15];
    }
    out[24] = '\0';
}

int64_t chat__now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- the contract: each op's fields, in the order of store.h's enums ---- */

enum {
    F_STR = 1u << JSON_STRING,
    F_INT = 1u << JSON_INTEGER,
    F_OBJ = 1u << JSON_OBJECT,
    F_ARR = 1u << JSON_ARRAY,
    F_BOOL = 1u << JSON_TRUE | 1u << JSON_FALSE,
    F_OPT = 1u << 16, /* may be missing or null */
};

typedef struct store_field {
    const char *key;
    unsigned types;
} store_field;

static const store_field f_id[] = {{"id", F_STR}};
static const store_field f_login[] = {{"login", F_STR}};
static const store_field f_user_id[] = {{"userId", F_STR}};
static const store_field f_member[] = {{"roomId", F_STR}, {"userId", F_STR}};
static const store_field f_user_create[] = {
    {"id", F_STR},           {"email", F_STR},          {"username", F_STR},
    {"passwordHash", F_STR}, {"status", F_STR | F_OPT}, {"avatar", F_STR | F_OPT},
    {"createdAt", F_INT},
};
static const store_field f_user_seen[] = {
    {"id", F_STR}, {"lastSeen", F_INT | F_OPT}, {"status", F_STR | F_OPT}};
static const store_field f_room_create[] = {
    {"id", F_STR},           {"name", F_STR | F_OPT},     {"type", F_STR},
    {"admin", F_STR | F_OPT}, {"settings", F_OBJ | F_OPT}, {"createdAt", F_INT},
};
static const store_field f_message[] = {
    {"id", F_STR},
    {"roomId", F_STR},
    {"senderId", F_STR},
    {"content", F_STR},
    {"attachments", F_ARR | F_OPT},
    {"reactions", F_OBJ | F_OPT},
    {"clientMsgId", F_STR | F_OPT},
    {"createdAt", F_INT},
    {"updatedAt", F_INT | F_OPT},
};
static const store_field f_user_update[] = {
    {"id", F_STR},
    {"displayName", F_STR | F_OPT},
    {"avatar", F_STR | F_OPT},
    {"statusText", F_STR | F_OPT},
};
static const store_field f_users_search[] = {{"prefix", F_STR}, {"limit", F_INT | F_OPT}};
static const store_field f_message_edit[] = {
    {"id", F_STR}, {"content", F_STR}, {"updatedAt", F_INT}};
static const store_field f_message_delete[] = {{"id", F_STR}, {"updatedAt", F_INT}};
static const store_field f_message_react[] = {
    {"id", F_STR}, {"userId", F_STR}, {"emoji", F_STR}, {"on", F_BOOL}, {"max", F_INT | F_OPT}};
static const store_field f_read_set[] = {
    {"roomId", F_STR}, {"userId", F_STR}, {"messageId", F_STR}, {"at", F_INT}};
static const store_field f_notify_insert[] = {
    {"id", F_STR}, {"userId", F_STR}, {"type", F_STR}, {"data", F_OBJ}, {"createdAt", F_INT}};
static const store_field f_notify_list[] = {
    {"userId", F_STR}, {"before", F_STR | F_OPT}, {"limit", F_INT | F_OPT}};
static const store_field f_upload[] = {
    {"id", F_STR},   {"uploaderId", F_STR}, {"name", F_STR},
    {"type", F_STR}, {"size", F_INT},       {"createdAt", F_INT}};
static const store_field f_upload_post[] = {{"id", F_STR}, {"roomId", F_STR}};
static const store_field f_page[] = {
    {"roomId", F_STR}, {"before", F_STR | F_OPT}, {"limit", F_INT | F_OPT}};
static const store_field f_rooms_list[] = {{"after", F_STR | F_OPT}, {"limit", F_INT}};
static const store_field f_users_find[] = {{"prefix", F_STR}, {"limit", F_INT}};

#define FIELDS(f) f, (int)(sizeof(f) / sizeof((f)[0]))

static const struct {
    const store_field *fields;
    int n;
} store_ops[CHAT_STORE_NOPS] = {
    [CHAT_STORE_USER_CREATE] = {FIELDS(f_user_create)},
    [CHAT_STORE_USER_BY_LOGIN] = {FIELDS(f_login)},
    [CHAT_STORE_USER_GET] = {FIELDS(f_id)},
    [CHAT_STORE_USER_SET_SEEN] = {FIELDS(f_user_seen)},
    [CHAT_STORE_ROOM_CREATE] = {FIELDS(f_room_create)},
    [CHAT_STORE_ROOM_GET] = {FIELDS(f_id)},
    [CHAT_STORE_ROOM_ADD_MEMBER] = {FIELDS(f_member)},
    [CHAT_STORE_ROOM_REMOVE_MEMBER] = {FIELDS(f_member)},
    [CHAT_STORE_ROOMS_FOR_USER] = {FIELDS(f_user_id)},
    [CHAT_STORE_MESSAGE_INSERT] = {FIELDS(f_message)},
    [CHAT_STORE_MESSAGES_PAGE] = {FIELDS(f_page)},
    [CHAT_STORE_PING] = {NULL, 0},
    [CHAT_STORE_ROOMS_LIST] = {FIELDS(f_rooms_list)},
    [CHAT_STORE_USERS_FIND] = {FIELDS(f_users_find)},
    [CHAT_STORE_USER_UPDATE] = {FIELDS(f_user_update)},
    [CHAT_STORE_USERS_GET] = {NULL, 0}, /* ids: checked below */
    [CHAT_STORE_USERS_SEARCH] = {FIELDS(f_users_search)},
    [CHAT_STORE_MESSAGE_GET] = {FIELDS(f_id)},
    [CHAT_STORE_MESSAGE_EDIT] = {FIELDS(f_message_edit)},
    [CHAT_STORE_MESSAGE_DELETE] = {FIELDS(f_message_delete)},
    [CHAT_STORE_MESSAGE_REACT] = {FIELDS(f_message_react)},
    [CHAT_STORE_READ_SET] = {FIELDS(f_read_set)},
    [CHAT_STORE_READ_STATE] = {FIELDS(f_user_id)}, /* roomIds: checked below */
    [CHAT_STORE_NOTIFY_INSERT] = {FIELDS(f_notify_insert)},
    [CHAT_STORE_NOTIFY_LIST] = {FIELDS(f_notify_list)},
    [CHAT_STORE_NOTIFY_READ] = {FIELDS(f_user_id)}, /* ids: checked below */
    [CHAT_STORE_UPLOAD_INSERT] = {FIELDS(f_upload)},
    [CHAT_STORE_UPLOAD_GET] = {FIELDS(f_id)},
    [CHAT_STORE_UPLOAD_POST] = {FIELDS(f_upload_post)},
};

_Static_assert(sizeof f_message / sizeof f_message[0] <= CHAT_STORE_FIELDS_MAX,
               "req.v holds every field");

/* 1 when v nests no deeper than depth levels more. */
static int json_depth_ok(json_t *v, int depth)
{
    if (depth < 0) {
        return 0;
    }
    if (json_is_object(v)) {
        const char *k;
        json_t *item;
        json_object_foreach (v, k, item) {
            if (!json_depth_ok(item, depth - 1)) {
                return 0;
            }
        }
    } else if (json_is_array(v)) {
        size_t i;
        json_t *item;
        json_array_foreach (v, i, item) {
            if (!json_depth_ok(item, depth - 1)) {
                return 0;
            }
        }
    }
    return 1;
}

void chat__store_req_clear(chat_store_req *req)
{
    json_decref(req->participants);
    json_decref(req->ids);
    memset(req, 0, sizeof *req);
}

/* The strings of arr (NULL: none), each once, in order, into *out. 0, or CHAT_EINVAL for
 * an item that is not a string / CHAT_ENOMEM (req is then cleared). */
static int unique_strings(json_t *arr, json_t **out, chat_store_req *req)
{
    size_t i;
    json_t *s;
    *out = json_array();
    if (!*out) {
        return CHAT_ENOMEM;
    }
    json_array_foreach (arr, i, s) {
        if (!json_is_string(s)) {
            chat__store_req_clear(req);
            return CHAT_EINVAL;
        }
        int seen = 0;
        for (size_t j = 0; j < json_array_size(*out) && !seen; j++) {
            seen = json_equal(json_array_get(*out, j), s);
        }
        if (!seen && json_array_append(*out, s)) {
            chat__store_req_clear(req);
            return CHAT_ENOMEM;
        }
    }
    return 0;
}

int chat__store_check(int op, json_t *arg, chat_store_req *req)
{
    memset(req, 0, sizeof *req);
    req->op = op;
    req->arg = arg;
    if (op < 0 || op >= CHAT_STORE_NOPS) {
        return CHAT_EINVAL;
    }
    if (op == CHAT_STORE_PING) {
        return 0; /* takes nothing; its arg is ignored */
    }
    if (!json_is_object(arg)) {
        return CHAT_EINVAL;
    }
    for (int i = 0; i < store_ops[op].n; i++) {
        const store_field *f = &store_ops[op].fields[i];
        json_t *v = json_object_get(arg, f->key);
        if (!v || json_is_null(v)) {
            if (!(f->types & F_OPT)) {
                return CHAT_EINVAL;
            }
            v = NULL;
        } else if (!(f->types & (1u << json_typeof(v)))) {
            return CHAT_EINVAL;
        } else if ((f->types & (F_OBJ | F_ARR)) && !json_depth_ok(v, CHAT_STORE_JSON_DEPTH)) {
            return CHAT_EINVAL;
        }
        req->v[i] = v;
    }
    if (op == CHAT_STORE_MESSAGES_PAGE) {
        json_int_t limit =
            req->v[CHAT_P_LIMIT] ? json_integer_value(req->v[CHAT_P_LIMIT]) : CHAT_STORE_PAGE_DEFAULT;
        if (limit < 1) {
            return CHAT_EINVAL;
        }
        req->limit = limit > CHAT_STORE_PAGE_MAX ? CHAT_STORE_PAGE_MAX : limit;
    }
    if (op == CHAT_STORE_USERS_SEARCH) {
        json_int_t limit = req->v[CHAT_US_LIMIT] ? json_integer_value(req->v[CHAT_US_LIMIT])
                                                 : CHAT_STORE_SEARCH_DEFAULT;
        size_t n = json_string_length(req->v[CHAT_US_PREFIX]);
        if (limit < 1 || n == 0 || n > CHAT_STORE_PREFIX_MAX) {
            return CHAT_EINVAL;
        }
        req->limit = limit > CHAT_STORE_SEARCH_MAX ? CHAT_STORE_SEARCH_MAX : limit;
    }
    if (op == CHAT_STORE_MESSAGE_REACT) {
        /* the emoji is a key of reactions: a MongoDB field name as well */
        json_t *e = req->v[CHAT_MR_EMOJI];
        const char *es = json_string_value(e);
        size_t n = json_string_length(e);
        if (n < 1 || n > CHAT_STORE_EMOJI_MAX || strlen(es) != n || strchr(es, '.') ||
            es[0] == '$') {
            return CHAT_EINVAL;
        }
    }
    if (op == CHAT_STORE_ROOM_CREATE) {
        /* participants: strings, each once, in join order */
        json_t *members = json_object_get(arg, "participants");
        if (members && !json_is_array(members) && !json_is_null(members)) {
            return CHAT_EINVAL;
        }
        return unique_strings(members, &req->participants, req);
    }
    if (op == CHAT_STORE_USERS_GET) {
        json_t *ids = json_object_get(arg, "ids");
        if (!json_is_array(ids) || json_array_size(ids) < 1 ||
            json_array_size(ids) > CHAT_STORE_IDS_MAX) {
            return CHAT_EINVAL;
        }
        return unique_strings(ids, &req->ids, req);
    }
    if (op == CHAT_STORE_NOTIFY_LIST) {
        json_int_t limit = req->v[CHAT_NL_LIMIT] ? json_integer_value(req->v[CHAT_NL_LIMIT])
                                                 : CHAT_STORE_PAGE_DEFAULT;
        if (limit < 1) {
            return CHAT_EINVAL;
        }
        req->limit = limit > CHAT_STORE_PAGE_MAX ? CHAT_STORE_PAGE_MAX : limit;
    }
    if (op == CHAT_STORE_NOTIFY_READ) {
        json_t *ids = json_object_get(arg, "ids");
        if (!ids || json_is_null(ids)) {
            return 0; /* all */
        }
        if (!json_is_array(ids) || json_array_size(ids) > CHAT_STORE_IDS_MAX) {
            return CHAT_EINVAL;
        }
        return unique_strings(ids, &req->ids, req);
    }
    if (op == CHAT_STORE_READ_STATE) {
        json_t *ids = json_object_get(arg, "roomIds");
        if (!json_is_array(ids) || json_array_size(ids) > CHAT_STORE_ROOMS_MAX) {
            return CHAT_EINVAL;
        }
        return unique_strings(ids, &req->ids, req);
    }
    return 0;
}

/* 1 when arg is the stored form already: the nine members and nothing else, each present
 * (clientMsgId may be null). Their types were checked by chat__store_check. */
static int message_stored_form(const chat_store_req *req)
{
    json_t *const *v = req->v;
    if (!req->arg_given || json_object_size(req->arg) != CHAT_M_UPDATED + 1) {
        return 0;
    }
    for (int i = 0; i <= CHAT_M_UPDATED; i++) {
        if (!v[i] && !(i == CHAT_M_CLIENT && json_object_get(req->arg, "clientMsgId"))) {
            return 0;
        }
    }
    return 1;
}

json_t *chat__store_message(const chat_store_req *req)
{
    json_t *const *v = req->v;
    if (message_stored_form(req)) {
        return json_incref(req->arg);
    }
    /* copies: the caller may still hold and change the objects it passed */
    json_t *att = v[CHAT_M_ATT] ? json_deep_copy(v[CHAT_M_ATT]) : json_array();
    json_t *react = v[CHAT_M_REACT] ? json_deep_copy(v[CHAT_M_REACT]) : json_object();
    json_t *client = v[CHAT_M_CLIENT] ? json_incref(v[CHAT_M_CLIENT]) : json_null();

    return json_pack("{s:O,s:O,s:O,s:O,s:o,s:o,s:o,s:O,s:O}", "id", v[CHAT_M_ID], "roomId",
                     v[CHAT_M_ROOM], "senderId", v[CHAT_M_SENDER], "content", v[CHAT_M_CONTENT],
                     "attachments", att, "reactions", react, "clientMsgId", client, "createdAt",
                     v[CHAT_M_CREATED], "updatedAt",
                     v[CHAT_M_UPDATED] ? v[CHAT_M_UPDATED] : v[CHAT_M_CREATED]);
}
