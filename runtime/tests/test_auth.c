/* test_auth.c: bcrypt hashing and verification, HS256 tokens, and the thread-pool wrappers. */
#include <jansson.h>
#include <jwt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "test.h"
#include "auth.h"
#include "chat.h"

static const char secret[] = "test-secret-with-enough-entropy-0123456789abcdef";
static const char user_id[] = "65a1b2c3d4e5f60718293a4b";
static const int64_t now = 1700000000;

/* ---- helpers that build hostile tokens ---- */

static char *b64url(const char *data, size_t len)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    char *out = malloc(len * 4 / 3 + 4);
    size_t o = 0;
    if (!out) {
        return NULL;
    }
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)(unsigned char)data[i] << 16;
        if (i + 1 < len) {
            v |= (uint32_t)(unsigned char)data[i + 1] << 8;
        }
        if (i + 2 < len) {
            v |= (unsigned char)data[i + 2];
        }
        out[o++] = alphabet[(v >> 18) & 63];
        out[o++] = alphabet[(v >> 12) & 63];
        if (i + 1 < len) {
            out[o++] = alphabet[(v >> 6) & 63];
        }
        if (i + 2 < len) {
            out[o++] = alphabet[v & 63];
        }
    }
    out[o] = '\0';
    return out;
}

/* header.payload.sig from raw JSON texts; sig is used verbatim. */
static char *raw_token(const char *header, const char *payload, const char *sig)
{
    char *h = b64url(header, strlen(header));
    char *p = b64url(payload, strlen(payload));
    char *t = NULL;
    if (h && p) {
        size_t n = strlen(h) + strlen(p) + strlen(sig) + 3;
        t = malloc(n);
        if (t) {
            snprintf(t, n, "%s.%s.%s", h, p, sig);
        }
    }
    free(h);
    free(p);
    return t;
}

/* A token signed by libjwt with any alg, key and claims (JSON text). */
static char *lib_token(jwt_alg_t alg, const char *key, const char *claims)
{
    jwt_t *jwt = NULL;
    char *t = NULL;
    if (jwt_new(&jwt) == 0 && jwt_add_grants_json(jwt, claims) == 0 &&
        jwt_set_alg(jwt, alg, (const unsigned char *)key, key ? (int)strlen(key) : 0) == 0) {
        t = jwt_encode_str(jwt);
    }
    if (jwt) {
        jwt_free(jwt);
    }
    return t;
}

static int verify(const char *token)
{
    char sub[25] = "untouched";
    return chat__jwt_verify(secret, token, now, sub);
}

/* ---- passwords ---- */

static void test_password(void)
{
    char h1[CHAT_HASH_MAX];
    char h2[CHAT_HASH_MAX];

    CHECK(chat__password_hash("correct horse", 4, h1) == 0);
    CHECK(strncmp(h1, "$2b$04$", 7) == 0);
    CHECK(strlen(h1) == 60);
    CHECK(chat__password_verify("correct horse", h1) == 0);
    CHECK(chat__password_verify("correct horsf", h1) == CHAT_EUNAUTHORIZED);
    CHECK(chat__password_verify("", h1) == CHAT_EUNAUTHORIZED);
    /* a fresh salt each time */
    CHECK(chat__password_hash("correct horse", 4, h2) == 0);
    CHECK(strcmp(h1, h2) != 0);
    CHECK(chat__password_verify("correct horse", h2) == 0);

    /* bad costs are refused, not clamped */
    CHECK(chat__password_hash("x", 3, h2) == CHAT_EINVAL);
    CHECK(chat__password_hash("x", 32, h2) == CHAT_EINVAL);
    CHECK(chat__password_hash(NULL, 4, h2) == CHAT_EINVAL);

    /* malformed hashes never verify */
    char bad[CHAT_HASH_MAX];
    CHECK(chat__password_verify("correct horse", "") == CHAT_EUNAUTHORIZED);
    CHECK(chat__password_verify("correct horse", "not a hash") == CHAT_EUNAUTHORIZED);
    CHECK(chat__password_verify("correct horse", NULL) == CHAT_EUNAUTHORIZED);
    CHECK(chat__password_verify(NULL, h1) == CHAT_EUNAUTHORIZED);
    snprintf(bad, sizeof bad, "%.59s", h1); /* truncated */
    CHECK(chat__password_verify("correct horse", bad) == CHAT_EUNAUTHORIZED);
    snprintf(bad, sizeof bad, "%s", h1);
    bad[30] = '!'; /* outside the bcrypt alphabet */
    CHECK(chat__password_verify("correct horse", bad) == CHAT_EUNAUTHORIZED);
    snprintf(bad, sizeof bad, "$2b$99$%s", h1 + 7); /* impossible cost */
    CHECK(chat__password_verify("correct horse", bad) == CHAT_EUNAUTHORIZED);
    snprintf(bad, sizeof bad, "$2x$%s", h1 + 4); /* the buggy legacy variant */
    CHECK(chat__password_verify("correct horse", bad) == CHAT_EUNAUTHORIZED);
    /* a DES setting: crypt would accept it, we must not */
    CHECK(chat__password_verify("correct horse", "abJnggxhB/yWI") == CHAT_EUNAUTHORIZED);
    /* $2a$ hashes from other implementations still verify */
    snprintf(bad, sizeof bad, "$2a$%s", h1 + 4);
    CHECK(chat__password_verify("correct horse", bad) == 0);
}

/* ---- tokens ---- */

static void test_jwt(void)
{
    char *tok = NULL;
    char sub[25];
    char claims[256];

    CHECK(chat__jwt_sign(secret, user_id, now, 3600, &tok) == 0);
    CHECK(tok != NULL);
    memset(sub, 'x', sizeof sub);
    CHECK(chat__jwt_verify(secret, tok, now, sub) == 0);
    CHECK(strcmp(sub, user_id) == 0);
    CHECK(chat__jwt_verify(secret, tok, now + 3599, sub) == 0);

    /* the claims are the ones asked for */
    jwt_t *jwt = NULL;
    CHECK(jwt_decode(&jwt, tok, (const unsigned char *)secret, (int)strlen(secret)) == 0);
    if (jwt) {
        CHECK(jwt_get_alg(jwt) == JWT_ALG_HS256);
        CHECK(jwt_get_grant_int(jwt, "iat") == now);
        CHECK(jwt_get_grant_int(jwt, "exp") == now + 3600);
        CHECK(strcmp(jwt_get_grant(jwt, "sub"), user_id) == 0);
        jwt_free(jwt);
    }

    /* expiry: exp == now and exp < now both fail */
    CHECK(chat__jwt_verify(secret, tok, now + 3600, sub) == CHAT_EUNAUTHORIZED);
    CHECK(chat__jwt_verify(secret, tok, now + 7200, sub) == CHAT_EUNAUTHORIZED);

    /* wrong secret */
    CHECK(chat__jwt_verify("another-secret-another-secret-another", tok, now, sub) ==
          CHAT_EUNAUTHORIZED);

    /* tampered payload, original signature */
    char *dot1 = strchr(tok, '.');
    char *dot2 = dot1 ? strchr(dot1 + 1, '.') : NULL;
    CHECK(dot1 && dot2);
    if (dot1 && dot2) {
        snprintf(claims, sizeof claims, "{\"sub\":\"%s\",\"iat\":%lld,\"exp\":%lld}",
                 "65a1b2c3d4e5f60718293a4c", (long long)now, (long long)now + 3600);
        char *p = b64url(claims, strlen(claims));
        size_t n = (size_t)(dot1 - tok) + strlen(p) + strlen(dot2) + 2;
        char *forged = malloc(n);
        snprintf(forged, n, "%.*s.%s%s", (int)(dot1 - tok), tok, p, dot2);
        CHECK(verify(forged) == CHAT_EUNAUTHORIZED);
        /* same payload, signature cut or altered */
        snprintf(forged, n, "%.*s", (int)(dot2 - tok + 1), tok);
        CHECK(verify(forged) == CHAT_EUNAUTHORIZED);
        snprintf(forged, n, "%s", tok);
        forged[strlen(forged) - 2] ^= 1;
        CHECK(verify(forged) == CHAT_EUNAUTHORIZED);
        free(forged);
        free(p);
    }
    free(tok);

    /* alg none, hand-built, with and without a signature part */
    snprintf(claims, sizeof claims, "{\"sub\":\"%s\",\"iat\":%lld,\"exp\":%lld}", user_id,
             (long long)now, (long long)now + 3600);
    char *none = raw_token("{\"alg\":\"none\",\"typ\":\"JWT\"}", claims, "");
    CHECK(verify(none) == CHAT_EUNAUTHORIZED);
    free(none);
    none = raw_token("{\"alg\":\"None\",\"typ\":\"JWT\"}", claims, "");
    CHECK(verify(none) == CHAT_EUNAUTHORIZED);
    free(none);
    none = raw_token("{\"typ\":\"JWT\"}", claims, "");
    CHECK(verify(none) == CHAT_EUNAUTHORIZED);
    free(none);
    /* alg none signed by libjwt itself */
    none = lib_token(JWT_ALG_NONE, NULL, claims);
    CHECK(none != NULL);
    CHECK(verify(none) == CHAT_EUNAUTHORIZED);
    free(none);

    /* other HMAC algs with the right secret verify in libjwt, and must not here */
    char *other = lib_token(JWT_ALG_HS512, secret, claims);
    CHECK(other != NULL);
    CHECK(verify(other) == CHAT_EUNAUTHORIZED);
    free(other);
    other = lib_token(JWT_ALG_HS384, secret, claims);
    CHECK(verify(other) == CHAT_EUNAUTHORIZED);
    free(other);

    /* the control: the same claims as HS256 pass */
    other = lib_token(JWT_ALG_HS256, secret, claims);
    CHECK(verify(other) == 0);
    free(other);

    /* nbf: up to CHAT_JWT_LEEWAY_S ahead passes (clock skew); later, or not an integer, not */
    const struct {
        const char *fmt; /* the claim's JSON, from now + delta */
        long long delta;
        int want;
    } nbfs[] = {
        {"%lld", 0, 0},
        {"%lld", -600, 0},
        {"%lld", CHAT_JWT_LEEWAY_S, 0},
        {"%lld", CHAT_JWT_LEEWAY_S + 1, CHAT_EUNAUTHORIZED},
        {"%lld", 3600, CHAT_EUNAUTHORIZED},
        {"\"%lld\"", 0, CHAT_EUNAUTHORIZED},
        {"%lld.5", 0, CHAT_EUNAUTHORIZED},
        {"null", 0, CHAT_EUNAUTHORIZED},
    };
    for (size_t i = 0; i < sizeof nbfs / sizeof nbfs[0]; i++) {
        char nbf[48];
        snprintf(nbf, sizeof nbf, nbfs[i].fmt, (long long)now + nbfs[i].delta);
        snprintf(claims, sizeof claims, "{\"sub\":\"%s\",\"iat\":%lld,\"exp\":%lld,\"nbf\":%s}",
                 user_id, (long long)now, (long long)now + 3600, nbf);
        char *t = lib_token(JWT_ALG_HS256, secret, claims);
        CHECK(t != NULL);
        CHECK(t && verify(t) == nbfs[i].want);
        free(t);
    }

    /* claims: missing sub, malformed sub, missing or mistyped exp */
    static const char *const bad_claims[] = {
        "{\"iat\":1700000000,\"exp\":1700003600}",
        "{\"sub\":\"65A1B2C3D4E5F60718293A4B\",\"exp\":1700003600}",
        "{\"sub\":\"65a1b2c3d4e5f60718293a4\",\"exp\":1700003600}",
        "{\"sub\":\"65a1b2c3d4e5f60718293a4bb\",\"exp\":1700003600}",
        "{\"sub\":\"65a1b2c3d4e5f60718293a4g\",\"exp\":1700003600}",
        "{\"sub\":\"../../../etc/passwd\",\"exp\":1700003600}",
        "{\"sub\":12345,\"exp\":1700003600}",
        "{\"sub\":\"65a1b2c3d4e5f60718293a4b\"}",
        "{\"sub\":\"65a1b2c3d4e5f60718293a4b\",\"exp\":\"1700003600\"}",
        "{\"sub\":\"65a1b2c3d4e5f60718293a4b\",\"exp\":1700003600.5}",
        "{\"sub\":\"65a1b2c3d4e5f60718293a4b\",\"exp\":null}",
    };
    for (size_t i = 0; i < sizeof bad_claims / sizeof bad_claims[0]; i++) {
        char *t = lib_token(JWT_ALG_HS256, secret, bad_claims[i]);
        CHECK(t != NULL);
        int rc = verify(t);
        CHECK(rc == CHAT_EUNAUTHORIZED);
        if (rc != CHAT_EUNAUTHORIZED) {
            fprintf(stderr, "  accepted claims %s\n", bad_claims[i]);
        }
        free(t);
    }

    /* garbage */
    static const char *const garbage[] = {
        "", ".", "..", "...", "abc", "a.b", "a.b.c", "a.b.c.d", "eyJhbGciOiJIUzI1NiJ9",
        "eyJhbGciOiJIUzI1NiJ9..", "eyJhbGciOiJIUzI1NiJ9.e30.", "\xff\xfe.\x01.\x02",
        "Bearer x.y.z", "{\"alg\":\"HS256\"}",
        /* empty segments: libjwt 1.10.2 overflows a heap buffer on these (see auth.c) */
        ".e30.abc", "eyJhbGciOiJIUzI1NiJ9..abc",
        ".eyJzdWIiOiI2NWExYjJjM2Q0ZTVmNjA3MTgyOTNhNGIifQ."
        "wtb9nOkA-aNGw-X7AmSS2fdvlZSXpVNEBdxS4MS_SlY",
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.."
        "wtb9nOkA-aNGw-X7AmSS2fdvlZSXpVNEBdxS4MS_SlY",
    };
    for (size_t i = 0; i < sizeof garbage / sizeof garbage[0]; i++) {
        CHECK(verify(garbage[i]) == CHAT_EUNAUTHORIZED);
    }
    CHECK(verify(NULL) == CHAT_EUNAUTHORIZED);
    CHECK(chat__jwt_verify(NULL, "a.b.c", now, sub) == CHAT_EUNAUTHORIZED);
    CHECK(chat__jwt_verify("", "a.b.c", now, sub) == CHAT_EUNAUTHORIZED);

    /* a validly signed token over 8 KiB is refused before parsing */
    size_t pad_len = 9000;
    char *big_claims = malloc(pad_len + 128);
    int n = snprintf(big_claims, pad_len + 128, "{\"sub\":\"%s\",\"exp\":%lld,\"pad\":\"", user_id,
                     (long long)now + 3600);
    memset(big_claims + n, 'a', pad_len);
    strcpy(big_claims + n + pad_len, "\"}");
    char *big = lib_token(JWT_ALG_HS256, secret, big_claims);
    CHECK(big != NULL && strlen(big) > 8192);
    CHECK(verify(big) == CHAT_EUNAUTHORIZED);
    free(big);
    free(big_claims);

    /* sign refuses what verify would refuse */
    CHECK(chat__jwt_sign(secret, "not-an-id", now, 60, &tok) == CHAT_EINVAL);
    CHECK(tok == NULL);
    CHECK(chat__jwt_sign("", user_id, now, 60, &tok) == CHAT_EINVAL);
    CHECK(chat__jwt_sign(secret, user_id, now, 0, &tok) == CHAT_EINVAL);
}

/* ---- the thread-pool wrappers on a real loop ---- */

typedef struct async_state {
    int calls;
    int hash_status;
    char hash[CHAT_HASH_MAX];
    int verify_ok;
    int verify_bad;
    int verify_malformed;
} async_state;

static async_state as;

static void on_verify_ok(int status, const char *hash, void *arg)
{
    as.calls++;
    as.verify_ok = status;
    CHECK(hash == NULL);
    CHECK(arg == &as);
}

static void on_verify_bad(int status, const char *hash, void *arg)
{
    (void)hash;
    (void)arg;
    as.calls++;
    as.verify_bad = status;
}

static void on_verify_malformed(int status, const char *hash, void *arg)
{
    (void)hash;
    (void)arg;
    as.calls++;
    as.verify_malformed = status;
}

static void on_hash(int status, const char *hash, void *arg)
{
    uv_loop_t *loop = arg;
    as.calls++;
    as.hash_status = status;
    CHECK(status == 0 && hash != NULL);
    if (status != 0 || !hash) {
        return;
    }
    snprintf(as.hash, sizeof as.hash, "%s", hash);
    /* chain the verifies from the callback, as the domain does */
    char password[] = "s3cret password";
    CHECK(chat__password_verify_async(loop, password, hash, on_verify_ok, &as) == 0);
    memset(password, 0, sizeof password); /* the wrapper copied it */
    CHECK(chat__password_verify_async(loop, "wrong", hash, on_verify_bad, &as) == 0);
    char longhash[300];
    memset(longhash, 'a', sizeof longhash - 1);
    longhash[sizeof longhash - 1] = '\0';
    CHECK(chat__password_verify_async(loop, "x", longhash, on_verify_malformed, &as) == 0);
}

static void test_async(void)
{
    uv_loop_t loop;
    CHECK(uv_loop_init(&loop) == 0);
    memset(&as, 0, sizeof as);
    as.verify_ok = as.verify_bad = as.verify_malformed = 1;

    CHECK(chat__password_hash_async(&loop, "s3cret password", 4, on_hash, &loop) == 0);
    CHECK(chat__password_hash_async(NULL, "x", 4, on_hash, &loop) == CHAT_EINVAL);
    CHECK(chat__password_hash_async(&loop, "x", 4, NULL, &loop) == CHAT_EINVAL);
    CHECK(chat__password_verify_async(&loop, "x", NULL, on_verify_bad, NULL) == CHAT_EINVAL);
    CHECK(uv_run(&loop, UV_RUN_DEFAULT) == 0);
    CHECK(as.calls == 4);
    CHECK(as.hash_status == 0);
    CHECK(strncmp(as.hash, "$2b$04$", 7) == 0);
    CHECK(as.verify_ok == 0);
    CHECK(as.verify_bad == CHAT_EUNAUTHORIZED);
    CHECK(as.verify_malformed == CHAT_EUNAUTHORIZED);
    CHECK(uv_loop_close(&loop) == 0);
}

/* The same wrappers on the loop's own bcrypt workers: the chained hash and verifies, then a
 * burst larger than the queue: the excess is refused at once (CHAT_EUNAVAIL, no callback)
 * and counted, every accepted job is answered exactly once, an idle pool does not keep
 * uv_run alive, and stop leaves a loop that closes. */
static int burst_answered;
static int burst_ok;
static int burst_unavail;

static void on_burst(int status, const char *hash, void *arg)
{
    (void)hash;
    (void)arg;
    burst_answered++;
    burst_ok += status == 0;
    burst_unavail += status == CHAT_EUNAVAIL;
}

static void test_pool(void)
{
    uv_loop_t loop;
    char hash[CHAT_HASH_MAX];
    chat_auth_stats st;

    CHECK(uv_loop_init(&loop) == 0);
    CHECK(chat__auth_pool_start(&loop, 1, 3) == 0);
    memset(&as, 0, sizeof as);
    as.verify_ok = as.verify_bad = as.verify_malformed = 1;
    CHECK(chat__password_hash_async(&loop, "s3cret password", 4, on_hash, &loop) == 0);
    CHECK(uv_run(&loop, UV_RUN_DEFAULT) == 0); /* returns: the idle pool holds no ref */
    CHECK(as.calls == 4);
    CHECK(as.verify_ok == 0);
    CHECK(as.verify_bad == CHAT_EUNAUTHORIZED);
    CHECK(as.verify_malformed == CHAT_EUNAUTHORIZED);

    CHECK(chat__password_hash("burst password", 6, hash) == 0);
    int accepted = 0, refused = 0;
    for (int i = 0; i < 12; i++) {
        int rc = chat__password_verify_async(&loop, "burst password", hash, on_burst, NULL);
        CHECK(rc == 0 || rc == CHAT_EUNAVAIL);
        accepted += rc == 0;
        refused += rc == CHAT_EUNAVAIL;
    }
    /* one thread, three waiting: at most four in at once (three if none started yet) */
    CHECK(accepted >= 3 && accepted <= 4);
    CHECK(refused == 12 - accepted);
    chat__auth_stats(&loop, &st);
    CHECK(st.rejected == (uint64_t)refused);
    CHECK(st.threads == 1 && st.queue_max == 3);
    CHECK(uv_run(&loop, UV_RUN_DEFAULT) == 0);
    CHECK(burst_answered == accepted);
    CHECK(burst_ok == accepted);
    chat__auth_stats(&loop, &st);
    CHECK(st.queued == 0 && st.running == 0);
    CHECK(st.done == (uint64_t)accepted + 4);

    /* jobs accepted before stop are answered by stop itself, once each: the one running
     * with its result, those that never started unavailable */
    burst_answered = burst_ok = burst_unavail = 0;
    for (int i = 0; i < 3; i++) {
        CHECK(chat__password_verify_async(&loop, "burst password", hash, on_burst, NULL) == 0);
    }
    chat__auth_pool_stop(&loop);
    CHECK(burst_answered == 3);
    CHECK(burst_ok + burst_unavail == 3);
    CHECK(uv_run(&loop, UV_RUN_DEFAULT) == 0); /* the pool's handle closes */
    CHECK(uv_loop_close(&loop) == 0);
    CHECK(chat__auth_pool_start(&loop, 0, 3) == CHAT_EINVAL);
}

int main(void)
{
    test_password();
    test_jwt();
    test_async();
    test_pool();
    printf("test_auth: %d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
