/* store.c: the backend-independent half of the store: calls queued on the uv thread pool and
 * reported on the loop, plus the ids and clock every backend shares. */
#include "store.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "chat.h"
#include "log.h"

struct chat_store {
    uv_loop_t *loop;
    const chat_store_backend *be;
    void *impl;    /* NULL once the backend is closed */
    int pending;   /* calls whose callback has not run yet (loop thread only) */
    int closed;    /* closed while callbacks were still owed: the last one frees this */
    uv_mutex_t lock;
    uv_cond_t idle;
    int running; /* under lock: calls queued for or running on a worker */
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
} store_req;

static void store_free(chat_store *s)
{
    uv_cond_destroy(&s->idle);
    uv_mutex_destroy(&s->lock);
    free(s);
}

int chat__store_open(chat_store **out, uv_loop_t *loop, const chat_store_backend *be,
                     const char *target)
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
    err = be->open(&s->impl, target);
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

void chat__store_close(chat_store *s)
{
    if (!s) {
        return;
    }
    /* Pool threads run without the loop, so this wait ends on its own; it keeps the backend
     * alive until no worker is inside it. */
    uv_mutex_lock(&s->lock);
    while (s->running > 0) {
        uv_cond_wait(&s->idle, &s->lock);
    }
    uv_mutex_unlock(&s->lock);
    if (s->impl) {
        s->be->close(s->impl);
        s->impl = NULL;
    }
    if (s->pending > 0) {
        /* results are still owed to callbacks on the loop; the last one frees s */
        s->closed = 1;
        return;
    }
    store_free(s);
}

int chat__store_pending(const chat_store *s) { return s ? s->pending : 0; }

static void store_run(uv_work_t *work)
{
    store_req *r = work->data;
    chat_store *s = r->s;

    r->status = s->be->exec(s->impl, r->op, r->arg, &r->result);
    uv_mutex_lock(&s->lock);
    if (--s->running == 0) {
        uv_cond_signal(&s->idle);
    }
    uv_mutex_unlock(&s->lock);
}

static void store_done(uv_work_t *work, int status)
{
    store_req *r = work->data;
    chat_store *s = r->s;

    if (status == UV_ECANCELED) {
        /* never ran: keep the worker count honest and report the store as unavailable */
        uv_mutex_lock(&s->lock);
        if (--s->running == 0) {
            uv_cond_signal(&s->idle);
        }
        uv_mutex_unlock(&s->lock);
        json_decref(r->result);
        r->result = NULL;
        r->status = CHAT_EUNAVAIL;
    }
    s->pending--;
    /* decided before cb: a cb that closes the store frees it itself when nothing is owed */
    int free_store = s->closed && s->pending == 0;
    json_decref(r->arg);
    r->cb(r->status, r->result, r->cbarg);
    free(r);
    if (free_store) {
        store_free(s);
    }
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
    /* counted before queueing: a worker may finish before uv_queue_work returns */
    uv_mutex_lock(&s->lock);
    s->running++;
    uv_mutex_unlock(&s->lock);
    if (uv_queue_work(s->loop, &r->work, store_run, store_done) != 0) {
        uv_mutex_lock(&s->lock);
        s->running--;
        uv_mutex_unlock(&s->lock);
        err = CHAT_EINTERNAL;
        goto fail;
    }
    s->pending++;
    return 0;
fail:
    free(r);
    json_decref(arg);
    return err;
}

int chat__store_exec(chat_store *s, int op, json_t *arg, json_t **result)
{
    if (result) {
        *result = NULL;
    }
    if (!s || !s->impl || !result || op < 0 || op >= CHAT_STORE_NOPS) {
        return CHAT_EINVAL;
    }
    return s->be->exec(s->impl, op, arg, result);
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

int chat__store_args(json_t *arg, const chat_store_field *fields, int n, json_t **vals)
{
    if (!json_is_object(arg) || n > CHAT_STORE_FIELDS_MAX) {
        return CHAT_EINVAL;
    }
    for (int i = 0; i < n; i++) {
        json_t *v = json_object_get(arg, fields[i].key);
        if (!v || json_is_null(v)) {
            if (!(fields[i].types & CHAT_F_OPT)) {
                return CHAT_EINVAL;
            }
            v = NULL;
        } else if (!(fields[i].types & (1u << json_typeof(v)))) {
            return CHAT_EINVAL;
        }
        vals[i] = v;
    }
    return 0;
}
