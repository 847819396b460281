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

/* ---- thread-pool wrappers ---- */

typedef struct pw_work {
    uv_work_t req;
    int verify; /* 0: hash password into hash; 1: check password against hash */
    int cost;
    int status;
    chat_password_cb cb;
    void *arg;
    char *password;
    char hash[CHAT_HASH_MAX];
} pw_work;

static void pw_work_free(pw_work *w)
{
    if (w) {
        if (w->password) {
            explicit_bzero(w->password, strlen(w->password));
            free(w->password);
        }
        free(w);
    }
}

static void pw_run(uv_work_t *req)
{
    pw_work *w = req->data;
    if (w->verify) {
        w->status = chat__password_verify(w->password, w->hash);
    } else {
        w->status = chat__password_hash(w->password, w->cost, w->hash);
    }
}

static void pw_done(uv_work_t *req, int status)
{
    pw_work *w = req->data;
    int st = status == UV_ECANCELED ? CHAT_EUNAVAIL : w->status;
    const char *hash = (!w->verify && st == 0) ? w->hash : NULL;
    w->cb(st, hash, w->arg);
    pw_work_free(w);
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
        /* else: too long to be bcrypt; the empty copy fails verification on the pool,
         * so cb still runs later and exactly once, like every other outcome */
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
