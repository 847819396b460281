/* auth.c: passwords (bcrypt via libxcrypt) and tokens (HS256 JWT via libjwt). */
#include "auth.h"

#include <crypt.h>
#include <errno.h>
#include <jansson.h>
#include <jwt.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "chat.h"

#define BCRYPT_LEN 60        /* "$2b$" cost "$" 22 salt + 31 hash characters */
#define JWT_MAX_LEN 8192     /* refused before parsing: no honest token comes near it */
#define JWT_HS256_SIG_LEN 43 /* base64url of 32 bytes, unpadded */
#define OBJECTID_LEN 24

/* Hash prefixes we accept on verify. $2x$ (the buggy pre-2011 variant) is deliberately
 * absent; $2a$ and $2y$ come from other bcrypt implementations (seed data, bcryptjs). */
static const char *const bcrypt_prefixes[] = {"$2a$", "$2b$", "$2y$"};

static int is_bcrypt(const char *hash)
{
    if (strnlen(hash, BCRYPT_LEN + 1) != BCRYPT_LEN) {
        return 0;
    }
    for (size_t i = 0; i < sizeof bcrypt_prefixes / sizeof bcrypt_prefixes[0]; i++) {
        if (memcmp(hash, bcrypt_prefixes[i], 4) == 0) {
            return 1;
        }
    }
    return 0;
}

static int is_objectid(const char *s)
{
    for (int i = 0; i < OBJECTID_LEN; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) {
            return 0; /* also stops at a NUL before 24 characters */
        }
    }
    return s[OBJECTID_LEN] == '\0';
}

/* crypt_data is 32 KiB: on the heap, since pool threads may have small stacks. It holds
 * password-derived state, so it is wiped before it is freed. */
static struct crypt_data *crypt_data_new(void)
{
    return calloc(1, sizeof(struct crypt_data));
}

static void crypt_data_free(struct crypt_data *cd)
{
    if (cd) {
        explicit_bzero(cd, sizeof *cd);
        free(cd);
    }
}

int chat__password_hash(const char *password, int cost, char out[CHAT_HASH_MAX])
{
    struct crypt_data *cd = NULL;
    char setting[CRYPT_GENSALT_OUTPUT_SIZE];
    int err = CHAT_EINVAL;

    if (!password || !out || cost < 4 || cost > 31) {
        goto fail;
    }
    /* NULL rbytes: libxcrypt draws the salt from the OS random source itself */
    if (!crypt_gensalt_rn("$2b$", (unsigned long)cost, NULL, 0, setting, sizeof setting)) {
        err = CHAT_EINTERNAL;
        goto fail;
    }
    cd = crypt_data_new();
    if (!cd) {
        err = CHAT_ENOMEM;
        goto fail;
    }
    /* crypt_rn returns NULL on failure (never the "*0" token), e.g. a phrase over
     * CRYPT_MAX_PASSPHRASE_SIZE. bcrypt itself only reads the first 72 bytes. */
    errno = 0;
    const char *h = crypt_rn(password, setting, cd, (int)sizeof *cd);
    if (!h || !is_bcrypt(h)) {
        err = errno == ERANGE ? CHAT_EINVAL : CHAT_EINTERNAL;
        goto fail;
    }
    memcpy(out, h, BCRYPT_LEN + 1);
    err = 0;
fail:
    crypt_data_free(cd);
    return err;
}

int chat__password_verify(const char *password, const char *hash)
{
    struct crypt_data *cd = NULL;
    int err = CHAT_EUNAUTHORIZED;

    /* Only well-formed bcrypt: crypt would otherwise happily run DES or MD5 settings. */
    if (!password || !hash || !is_bcrypt(hash)) {
        goto fail;
    }
    cd = crypt_data_new();
    if (!cd) {
        err = CHAT_ENOMEM;
        goto fail;
    }
    const char *h = crypt_rn(password, hash, cd, (int)sizeof *cd);
    if (!h || strnlen(h, BCRYPT_LEN + 1) != BCRYPT_LEN) {
        goto fail;
    }
    /* constant time: no early exit tells an attacker how much of the hash matched */
    if (CRYPTO_memcmp(h, hash, BCRYPT_LEN) == 0) {
        err = 0;
    }
fail:
    crypt_data_free(cd);
    return err;
}

/* ---- the bcrypt workers ----
 *
 * bcrypt is slow on purpose (tens to hundreds of ms of CPU). On libuv's shared thread pool
 * (4 threads) a burst of logins filled every thread and the store's calls waited behind them:
 * one user's message:send took 14.6 s to be acknowledged during 100 parallel logins. So
 * bcrypt runs on its own few threads with a bounded queue; the uv pool keeps the store's
 * work, which never waits behind a password. A full queue refuses at once (CHAT_EUNAVAIL:
 * the caller answers 503 "busy") rather than queueing without bound. Results come back to
 * the loop through one uv_async_t, referenced only while jobs are in flight so an idle pool
 * never keeps uv_run alive. A loop without a pool (tests, tools) falls back to the uv pool. */

typedef struct pw_work {
    uv_work_t req;
    struct pw_work *next;
    int verify; /* 0: hash password into hash; 1: check password against hash */
    int cost;
    int status;
    chat_password_cb cb;
    void *arg;
    char *password;
    char hash[CHAT_HASH_MAX];
} pw_work;

typedef struct pw_pool {
    uv_loop_t *loop;
    struct pw_pool *next_pool;
    uv_async_t done_async;
    uv_mutex_t lock;
    uv_cond_t cond;
    uv_thread_t *threads;
    int nthreads;
    int refs; /* runtimes sharing this loop's pool (pools_lock) */
    int queue_max;
    int stopping;
    pw_work *todo_head, *todo_tail; /* under lock: waiting for a thread */
    pw_work *done_head, *done_tail; /* under lock: finished, for the loop */
    int queued;                     /* under lock: in todo */
    int running;                    /* under lock: on a thread */
    int in_flight;                  /* loop thread: accepted and not yet reported */
    chat_auth_stats stats;          /* loop thread, except queued/running (copied) */
} pw_pool;

static uv_mutex_t pools_lock;
static uv_once_t pools_once = UV_ONCE_INIT;
static pw_pool *pools; /* under pools_lock */

static void pools_init(void)
{
    if (uv_mutex_init(&pools_lock) != 0) {
        abort(); /* cannot happen on Linux; nothing sensible to do without a mutex */
    }
}

static pw_pool *pool_of(uv_loop_t *loop)
{
    uv_once(&pools_once, pools_init);
    uv_mutex_lock(&pools_lock);
    pw_pool *p = pools;
    while (p && p->loop != loop) {
        p = p->next_pool;
    }
    uv_mutex_unlock(&pools_lock);
    return p;
}

static void pw_work_free(pw_work *w)
{
    if (w) {
        if (w->password) {
            explicit_bzero(w->password, strlen(w->password));
            free(w->password);
        }
        explicit_bzero(w->hash, sizeof w->hash);
        free(w);
    }
}

static void pw_compute(pw_work *w)
{
    if (w->verify) {
        w->status = chat__password_verify(w->password, w->hash);
    } else {
        w->status = chat__password_hash(w->password, w->cost, w->hash);
    }
}

static void pw_report(pw_work *w, int status)
{
    const char *hash = (!w->verify && status == 0) ? w->hash : NULL;
    w->cb(status, hash, w->arg);
    pw_work_free(w);
}

static void pw_thread(void *arg)
{
    pw_pool *p = arg;
    uv_mutex_lock(&p->lock);
    for (;;) {
        while (!p->todo_head && !p->stopping) {
            uv_cond_wait(&p->cond, &p->lock);
        }
        if (p->stopping) {
            break; /* what is still queued is answered by chat__auth_pool_stop */
        }
        pw_work *w = p->todo_head;
        p->todo_head = w->next;
        if (!p->todo_head) {
            p->todo_tail = NULL;
        }
        p->queued--;
        p->running++;
        uv_mutex_unlock(&p->lock);
        w->next = NULL;
        pw_compute(w);
        uv_mutex_lock(&p->lock);
        p->running--;
        if (p->done_tail) {
            p->done_tail->next = w;
        } else {
            p->done_head = w;
        }
        p->done_tail = w;
        uv_async_send(&p->done_async);
    }
    uv_mutex_unlock(&p->lock);
}

/* On the loop: report every finished job. */
static void pw_pool_drain(pw_pool *p)
{
    uv_mutex_lock(&p->lock);
    pw_work *w = p->done_head;
    p->done_head = p->done_tail = NULL;
    uv_mutex_unlock(&p->lock);
    while (w) {
        pw_work *next = w->next;
        p->in_flight--;
        p->stats.done++;
        pw_report(w, w->status);
        w = next;
    }
    if (p->in_flight == 0) {
        uv_unref((uv_handle_t *)&p->done_async); /* idle: do not keep the loop alive */
    }
}

static void pw_async_cb(uv_async_t *h)
{
    pw_pool_drain(h->data);
}

static void pw_pool_closed(uv_handle_t *h)
{
    pw_pool *p = h->data;
    uv_cond_destroy(&p->cond);
    uv_mutex_destroy(&p->lock);
    free(p->threads);
    free(p);
}

int chat__auth_pool_start(uv_loop_t *loop, int threads, int queue_max)
{
    if (!loop || threads < 1 || queue_max < 1) {
        return CHAT_EINVAL;
    }
    pw_pool *p = pool_of(loop);
    if (p) {
        /* another runtime on this loop: share its workers (loop thread only) */
        uv_mutex_lock(&pools_lock);
        p->refs++;
        uv_mutex_unlock(&pools_lock);
        return 0;
    }
    p = calloc(1, sizeof *p);
    if (!p) {
        return CHAT_ENOMEM;
    }
    p->loop = loop;
    p->queue_max = queue_max;
    p->threads = calloc((size_t)threads, sizeof *p->threads);
    if (!p->threads || uv_mutex_init(&p->lock) != 0) {
        free(p->threads);
        free(p);
        return CHAT_ENOMEM;
    }
    if (uv_cond_init(&p->cond) != 0) {
        uv_mutex_destroy(&p->lock);
        free(p->threads);
        free(p);
        return CHAT_ENOMEM;
    }
    if (uv_async_init(loop, &p->done_async, pw_async_cb) != 0) {
        uv_cond_destroy(&p->cond);
        uv_mutex_destroy(&p->lock);
        free(p->threads);
        free(p);
        return CHAT_EINTERNAL;
    }
    p->done_async.data = p;
    uv_unref((uv_handle_t *)&p->done_async);
    /* crypt_data lives on the heap, so a small stack is plenty */
    uv_thread_options_t opts = {.flags = UV_THREAD_HAS_STACK_SIZE, .stack_size = 256 * 1024};
    for (int i = 0; i < threads; i++) {
        if (uv_thread_create_ex(&p->threads[i], &opts, pw_thread, p) != 0) {
            break;
        }
        p->nthreads++;
    }
    if (p->nthreads == 0) {
        uv_close((uv_handle_t *)&p->done_async, pw_pool_closed);
        return CHAT_EINTERNAL;
    }
    uv_once(&pools_once, pools_init);
    uv_mutex_lock(&pools_lock);
    p->refs = 1;
    p->next_pool = pools;
    pools = p;
    uv_mutex_unlock(&pools_lock);
    return 0;
}

void chat__auth_pool_stop(uv_loop_t *loop)
{
    pw_pool *p = pool_of(loop);
    if (!p) {
        return;
    }
    uv_mutex_lock(&pools_lock);
    if (--p->refs > 0) {
        uv_mutex_unlock(&pools_lock);
        return;
    }
    for (pw_pool **pp = &pools; *pp; pp = &(*pp)->next_pool) {
        if (*pp == p) {
            *pp = p->next_pool;
            break;
        }
    }
    uv_mutex_unlock(&pools_lock);
    /* the threads finish the job they are running (a bounded computation), then exit; the
     * jobs that never started are answered unavailable: a client may retry */
    uv_mutex_lock(&p->lock);
    p->stopping = 1;
    uv_cond_broadcast(&p->cond);
    uv_mutex_unlock(&p->lock);
    for (int i = 0; i < p->nthreads; i++) {
        uv_thread_join(&p->threads[i]);
    }
    pw_pool_drain(p); /* every accepted job is answered, exactly once */
    pw_work *w = p->todo_head;
    p->todo_head = p->todo_tail = NULL;
    p->queued = 0;
    while (w) {
        pw_work *next = w->next;
        p->in_flight--;
        pw_report(w, CHAT_EUNAVAIL);
        w = next;
    }
    uv_close((uv_handle_t *)&p->done_async, pw_pool_closed);
}

void chat__auth_stats(uv_loop_t *loop, chat_auth_stats *out)
{
    memset(out, 0, sizeof *out);
    pw_pool *p = pool_of(loop);
    if (!p) {
        return;
    }
    *out = p->stats;
    uv_mutex_lock(&p->lock);
    out->queued = p->queued;
    out->running = p->running;
    uv_mutex_unlock(&p->lock);
    out->threads = p->nthreads;
    out->queue_max = p->queue_max;
}

static void pw_run(uv_work_t *req)
{
    pw_compute(req->data);
}

static void pw_done(uv_work_t *req, int status)
{
    pw_work *w = req->data;
    pw_report(w, status == UV_ECANCELED ? CHAT_EUNAVAIL : w->status);
}

static int pw_queue(uv_loop_t *loop, int verify, const char *password, const char *hash,
                    int cost, chat_password_cb cb, void *arg)
{
    pw_work *w = NULL;
    int err = CHAT_EINVAL;

    if (!loop || !password || !cb || (verify && !hash)) {
        goto fail;
    }
    err = CHAT_ENOMEM;
    w = calloc(1, sizeof *w);
    if (!w) {
        goto fail;
    }
    w->password = strdup(password);
    if (!w->password) {
        goto fail;
    }
    w->req.data = w;
    w->verify = verify;
    w->cost = cost;
    w->cb = cb;
    w->arg = arg;
    if (verify) {
        if (strnlen(hash, CHAT_HASH_MAX) < CHAT_HASH_MAX) {
            memcpy(w->hash, hash, strlen(hash) + 1);
        }
        /* else: too long to be bcrypt; the empty copy fails verification on a worker,
         * so cb still runs later and exactly once, like every other outcome */
    }
    pw_pool *p = pool_of(loop);
    if (p) {
        uv_mutex_lock(&p->lock);
        int full = p->queued >= p->queue_max || p->stopping;
        if (!full) {
            if (p->todo_tail) {
                p->todo_tail->next = w;
            } else {
                p->todo_head = w;
            }
            p->todo_tail = w;
            p->queued++;
            uv_cond_signal(&p->cond);
        }
        uv_mutex_unlock(&p->lock);
        if (full) {
            p->stats.rejected++;
            err = CHAT_EUNAVAIL;
            goto fail;
        }
        if (p->in_flight++ == 0) {
            uv_ref((uv_handle_t *)&p->done_async);
        }
        return 0;
    }
    if (uv_queue_work(loop, &w->req, pw_run, pw_done) != 0) {
        err = CHAT_EINTERNAL;
        goto fail;
    }
    return 0;
fail:
    pw_work_free(w);
    return err;
}

int chat__password_hash_async(uv_loop_t *loop, const char *password, int cost,
                              chat_password_cb cb, void *arg)
{
    return pw_queue(loop, 0, password, NULL, cost, cb, arg);
}

int chat__password_verify_async(uv_loop_t *loop, const char *password, const char *hash,
                                chat_password_cb cb, void *arg)
{
    return pw_queue(loop, 1, password, hash, 0, cb, arg);
}

int chat__auth_metrics(chat_buf *b, uv_loop_t *loop)
{
    chat_auth_stats st;
    chat__auth_stats(loop, &st);
    return chat__buf_appendf(
        b,
        "# HELP chatd_bcrypt_queued Password checks and hashes waiting for a bcrypt thread.\n"
        "# TYPE chatd_bcrypt_queued gauge\nchatd_bcrypt_queued %d\n"
        "# HELP chatd_bcrypt_running Password checks and hashes running now.\n"
        "# TYPE chatd_bcrypt_running gauge\nchatd_bcrypt_running %d\n"
        "# HELP chatd_bcrypt_done_total Password checks and hashes finished.\n"
        "# TYPE chatd_bcrypt_done_total counter\nchatd_bcrypt_done_total %llu\n"
        "# HELP chatd_bcrypt_rejected_total Logins and registrations refused (503) because "
        "the bcrypt queue (bcrypt_queue) was full.\n"
        "# TYPE chatd_bcrypt_rejected_total counter\nchatd_bcrypt_rejected_total %llu\n",
        st.queued, st.running, (unsigned long long)st.done, (unsigned long long)st.rejected);
}

/* ---- JWT ---- */

static int jwt_errno(int e) { return e == ENOMEM ? CHAT_ENOMEM : CHAT_EINTERNAL; }

int chat__jwt_sign(const char *secret, const char *sub, int64_t now_s, int ttl_s, char **out)
{
    jwt_t *jwt = NULL;
    int err = CHAT_EINVAL;
    int rc;

    if (out) {
        *out = NULL;
    }
    /* refuse to sign what verify would refuse */
    if (!secret || !*secret || strlen(secret) > INT_MAX || !sub || !is_objectid(sub) ||
        ttl_s <= 0 || now_s < 0 || now_s > INT64_MAX - ttl_s || !out) {
        goto fail;
    }
    rc = jwt_new(&jwt);
    if (rc == 0) {
        rc = jwt_add_grant(jwt, "sub", sub);
    }
    if (rc == 0) {
        rc = jwt_add_grant_int(jwt, "iat", (long)now_s);
    }
    if (rc == 0) {
        rc = jwt_add_grant_int(jwt, "exp", (long)(now_s + ttl_s));
    }
    if (rc == 0) {
        rc = jwt_set_alg(jwt, JWT_ALG_HS256, (const unsigned char *)secret, (int)strlen(secret));
    }
    if (rc != 0) {
        err = jwt_errno(rc);
        goto fail;
    }
    *out = jwt_encode_str(jwt); /* malloc'd: libjwt 1.10 has no custom allocator */
    if (!*out) {
        err = jwt_errno(errno);
        goto fail;
    }
    err = 0;
fail:
    if (jwt) {
        jwt_free(jwt);
    }
    return err;
}

/* Claims are read from the decoded JSON, not jwt_get_grant_int: that one folds "missing"
 * and "not an integer" into errno, and a string or real exp must not pass. */
static int jwt_check_claims(jwt_t *jwt, int64_t now_s, char sub[25])
{
    char *text = NULL;
    json_t *claims = NULL;
    int err = CHAT_EUNAUTHORIZED;

    text = jwt_get_grants_json(jwt, NULL);
    if (!text) {
        goto fail;
    }
    claims = json_loads(text, 0, NULL);
    json_t *exp = json_object_get(claims, "exp");
    const char *s = json_string_value(json_object_get(claims, "sub"));
    if (!json_is_integer(exp) || json_integer_value(exp) <= now_s || !s || !is_objectid(s)) {
        goto fail;
    }
    /* nbf ("not before", RFC 7519 4.1.5) is optional; when present it must be an integer no
     * later than now plus the clock-skew allowance (a token minted by another host whose
     * clock runs a little ahead still works; one post-dated by more does not). */
    json_t *nbf = json_object_get(claims, "nbf");
    if (nbf && (!json_is_integer(nbf) || json_integer_value(nbf) > now_s + CHAT_JWT_LEEWAY_S)) {
        goto fail;
    }
    memcpy(sub, s, OBJECTID_LEN + 1);
    err = 0;
fail:
    json_decref(claims);
    free(text);
    return err;
}

/* header.payload.signature, base64url, the first two non-empty and the signature the 43
 * characters of an unpadded HMAC-SHA256. Checked before libjwt sees the token: Debian's
 * libjwt 1.10.2 writes a byte past a zero-sized buffer when a segment is empty (".e30.x"). */
static int jwt_shape_ok(const char *token)
{
    size_t seg_len[3] = {0, 0, 0};
    int seg = 0;

    for (const char *p = token; *p; p++) {
        char c = *p;
        if (c == '.') {
            if (++seg > 2) {
                return 0;
            }
        } else if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                   c == '-' || c == '_') {
            seg_len[seg]++;
        } else {
            return 0;
        }
    }
    return seg == 2 && seg_len[0] > 0 && seg_len[1] > 0 && seg_len[2] == JWT_HS256_SIG_LEN;
}

int chat__jwt_verify(const char *secret, const char *token, int64_t now_s, char sub[25])
{
    jwt_t *jwt = NULL;
    int err = CHAT_EUNAUTHORIZED;

    if (!secret || !*secret || strlen(secret) > INT_MAX || !token || !sub ||
        strnlen(token, JWT_MAX_LEN + 1) > JWT_MAX_LEN || !jwt_shape_ok(token)) {
        goto fail;
    }
    if (jwt_decode(&jwt, token, (const unsigned char *)secret, (int)strlen(secret)) != 0) {
        goto fail;
    }
    /* jwt_decode verifies with whatever alg the token names (HS512 with our secret passes),
     * and some 1.x releases accept alg "none" even when given a key: pin the alg here. */
    if (jwt_get_alg(jwt) != JWT_ALG_HS256) {
        goto fail;
    }
    err = jwt_check_claims(jwt, now_s, sub);
fail:
    if (jwt) {
        jwt_free(jwt);
    }
    return err;
}
