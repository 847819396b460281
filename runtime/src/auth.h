/* auth.h: passwords (bcrypt via libxcrypt) and tokens (JWT via libjwt). */
#ifndef CHAT_AUTH_H
#define CHAT_AUTH_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define CHAT_HASH_MAX 128 /* bcrypt hashes are 60 bytes */

/* Blocking (tens to hundreds of ms): call from the thread pool only.
 * hash: "$2b$<cost>$..." into out. verify: 0 on match, CHAT_EUNAUTHORIZED on mismatch or a
 * malformed hash; compares in constant time. */
int chat__password_hash(const char *password, int cost, char out[CHAT_HASH_MAX]);
int chat__password_verify(const char *password, const char *hash);

/* Loop-side wrappers: run the above on the loop's bcrypt workers (chat__auth_pool_start; the
 * uv thread pool when the loop has none), then call cb on the loop. The password is copied.
 * For hash, hash is the result (valid during cb). CHAT_EUNAVAIL (and no cb) when the bcrypt
 * queue is full: the server is busy checking passwords; the client should retry later. */
typedef void (*chat_password_cb)(int status, const char *hash, void *arg);
int chat__password_hash_async(uv_loop_t *loop, const char *password, int cost,
                              chat_password_cb cb, void *arg);
int chat__password_verify_async(uv_loop_t *loop, const char *password, const char *hash,
                                chat_password_cb cb, void *arg);

/* The bcrypt workers of a loop: threads that run nothing but bcrypt, and at most queue_max
 * jobs waiting for them, so logins never hold the uv thread pool the store runs on. Stop
 * joins the threads once they finished the job each was running, answers every job on the
 * calling (loop) thread (those that never started: CHAT_EUNAVAIL), and closes the pool's one
 * handle (the loop must run once more to free it). */
int chat__auth_pool_start(uv_loop_t *loop, int threads, int queue_max);
void chat__auth_pool_stop(uv_loop_t *loop);

typedef struct chat_auth_stats {
    uint64_t done;     /* jobs finished */
    uint64_t rejected; /* refused: the queue was full */
    int queued, running, threads, queue_max;
} chat_auth_stats;
void chat__auth_stats(uv_loop_t *loop, chat_auth_stats *out);
struct chat_buf;
/* Appends the bcrypt lines of /metrics. 0 or CHAT_ENOMEM. */
int chat__auth_metrics(struct chat_buf *b, uv_loop_t *loop);

/* HS256 tokens with claims sub, iat, exp = now + ttl_s. *out is malloc'd. */
int chat__jwt_sign(const char *secret, const char *sub, int64_t now_s, int ttl_s, char **out);
/* 0 and the sub claim (a 24-hex id) copied into sub, or CHAT_EUNAUTHORIZED for anything
 * else: malformed, alg other than HS256 (including "none"), bad signature, missing or
 * past exp (exp <= now_s), missing or malformed sub, an nbf that is not an integer or is
 * later than now_s + CHAT_JWT_LEEWAY_S. */
/* bcrypt reads at most 72 bytes of a password: register refuses longer ones; login still
 * accepts up to 256 (and bcrypt compares the first 72) for accounts made before that bound. */
#define CHAT_PASSWORD_MAX 72
#define CHAT_JWT_LEEWAY_S 30 /* seconds of clock skew allowed for nbf */
int chat__jwt_verify(const char *secret, const char *token, int64_t now_s, char sub[25]);

#endif
