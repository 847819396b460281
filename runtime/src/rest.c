/* rest.c: the REST API (auth, me, rooms, messages) and its routes, registered with http.c
 * at start. The handlers parse the request and run the same domain operations as the
 * Socket.IO events. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "domain_int.h"
#include "log.h"
#include "session.h"
#include "sanctions.h"

/* ---- REST ---- */

/* Parses the body as a JSON object; answers 400 and returns NULL otherwise. */
static json_t *body_object(chat_http_req *req)
{
    json_error_t err;
    json_t *v =
        req->body.len ? json_loadb((const char *)req->body.data, req->body.len, 0, &err) : NULL;
    if (!json_is_object(v)) {
        json_decref(v);
        chat__http_respond_error(req, CHAT_EINVAL, "the body must be a JSON object in UTF-8");
        return NULL;
    }
    return v;
}

static int valid_email(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    const char *at = s ? strchr(s, '@') : NULL;
    if (n < 3 || n > 254 || !at || at == s || strchr(at + 1, '@') || !strchr(at + 1, '.')) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)s[i] <= ' ') {
            return 0;
        }
    }
    return at[strlen(at) - 1] != '.';
}

/* ---- bounds on registrations and failed logins ----
 * Fixed windows in the kv (in-process, or Redis so every node counts the same), on the seed's
 * ratelimit: keys: ratelimit:register:{ip}, ratelimit:login:ip:{ip} and
 * ratelimit:login:account:{login as typed, lower-cased}. A key is created with the time left
 * in its window as its TTL, so the retry hint is that time. An attempt is counted before any
 * bcrypt work, so a refused one costs a kv increment and nothing else; a successful login
 * takes its count back, so only failures accumulate. The account is the login as typed, not
 * the user it names: the bound then behaves the same for accounts that exist and for those
 * that do not, and never ties an email to a username. */

enum { LIMIT_ACCOUNT, LIMIT_IP, LIMIT_REGISTER };

typedef struct limit_key {
    char key[320];
    int limit;
    int kind;
} limit_key;

typedef struct limit_walk limit_walk;
/* Runs once every key took its count; w is freed after it returns. */
typedef void (*limit_next)(chat_call *c, const limit_walk *w);

struct limit_walk {
    chat_call *c;
    limit_next next;
    int n, i;
    int64_t window_ms;
    limit_key keys[2];
};

static const char *const limit_what[] = {
    [LIMIT_ACCOUNT] = "failed logins for this account",
    [LIMIT_IP] = "failed logins from this address",
    [LIMIT_REGISTER] = "registrations from this address",
};

static int64_t window_left_ms(int64_t window_ms)
{
    return window_ms - chat__now_ms() % window_ms;
}

static void limit_refuse(chat_call *c, int kind, int limit, int64_t window_ms)
{
    chat_stats *st = &c->rt->stats;
    if (kind == LIMIT_ACCOUNT) {
        st->login_limited_account++;
    } else if (kind == LIMIT_IP) {
        st->login_limited_ip++;
    } else {
        st->register_limited++;
    }
    long long retry_s = (window_left_ms(window_ms) + 999) / 1000;
    char msg[160];
    snprintf(msg, sizeof msg, "too many %s (%d per %lld s); retry in %lld s", limit_what[kind],
             limit, (long long)(window_ms / 1000), retry_s);
    if (c->req) {
        snprintf(c->req->extra_headers, sizeof c->req->extra_headers, "Retry-After: %lld\r\n",
                 retry_s);
    }
    chat__call_fail(c, CHAT_ERATELIMIT, msg);
}

static void limit_step(limit_walk *w);

static void limit_counted(int status, const char *value, int64_t number, void *arg)
{
    limit_walk *w = arg;
    (void)value;
    if (status) {
        /* the kv (Redis) is down: let the attempt through, as the rest of the chat keeps
         * working on one node without Redis; bcrypt still runs on its own bounded pool. One
         * log line a minute at most. */
        static int64_t logged_at;
        int64_t now = chat__now_ms();
        if (now - logged_at >= 60000) {
            logged_at = now;
            chat__log(CHAT_LOG_WARN, "ratelimit_unavailable",
                      "login and register bounds are not enforced while the kv is down",
                      json_pack("{s:s,s:s}", "bound", limit_what[w->keys[w->i].kind],
                                "code", chat_errcode(status)));
        }
        number = 0;
    }
    if (number > w->keys[w->i].limit) {
        limit_refuse(w->c, w->keys[w->i].kind, w->keys[w->i].limit, w->window_ms);
        free(w);
        return;
    }
    w->i++;
    limit_step(w);
}

static void limit_step(limit_walk *w)
{
    if (w->i == w->n) {
        w->next(w->c, w);
        free(w);
        return;
    }
    chat__kv_incr(w->c->rt->kv, w->keys[w->i].key, 1, window_left_ms(w->window_ms),
                  limit_counted, w);
}

static void client_ip(chat_http_req *req, char *out, size_t len)
{
    chat__peer_address(req->rt, req->wsi, out, len);
    if (!out[0]) {
        snprintf(out, len, "unknown");
    }
}

static void login_key(char *out, size_t len, const char *login)
{
    int n = snprintf(out, len, "ratelimit:login:account:");
    for (size_t i = 0; login[i] && (size_t)n + 1 < len; i++) {
        out[n++] = (char)tolower((unsigned char)login[i]);
    }
    out[n] = '\0';
}

/* Starts the REST call for req (answering ok_status on success; takes body as its input),
 * counts one attempt on each of the n keys in windows of window_s, then runs next; or fails
 * the call with 429 at the first key past its limit. */
static void limited_call(chat_http_req *req, json_t *body, int ok_status, int window_s,
                         const limit_key *keys, int n, limit_next next)
{
    chat_call *c = chat__call_from_req(req, NULL, ok_status);
    if (!c) {
        json_decref(body);
        chat__http_respond_error(req, CHAT_ENOMEM, NULL);
        return;
    }
    c->input = body;
    limit_walk *w = calloc(1, sizeof *w);
    if (!w) {
        chat__call_fail(c, CHAT_ENOMEM, NULL);
        return;
    }
    w->c = c;
    w->next = next;
    w->n = n;
    w->window_ms = (int64_t)window_s * 1000;
    memcpy(w->keys, keys, (size_t)n * sizeof *keys);
    limit_step(w);
}

/* A login past its bounds, until it is answered: the keys it counted (taken back unless the
 * attempt turns out a failure) and the user loaded for the password check. */
typedef struct login_ctx {
    chat_call *c;
    char ip_key[320];
    char account_key[320];
    json_t *user; /* owned; NULL for an unknown login */
} login_ctx;

static void login_ctx_free(login_ctx *l)
{
    json_decref(l->user);
    free(l);
}

/* The attempt was not a failure (a successful login, or one never checked). */
static void login_uncount(chat_runtime *rt, const char *ip_key, const char *account_key)
{
    /* the TTL only matters if the window ended meanwhile: the -1 then expires with the new
     * window instead of staying forever */
    int64_t ttl = window_left_ms((int64_t)rt->cfg.login_window_s * 1000);
    chat__kv_incr(rt->kv, ip_key, -1, ttl, NULL, NULL);
    chat__kv_incr(rt->kv, account_key, -1, ttl, NULL, NULL);
}

static void answer_with_token(chat_call *c, json_t *user)
{
    char *token = NULL;
    uv_timeval64_t tv;
    uv_gettimeofday(&tv);
    const char *id = json_string_value(json_object_get(user, "id"));
    if (!id || chat__jwt_sign(c->rt->jwt_secret, id, tv.tv_sec, c->rt->cfg.token_ttl_s, &token)) {
        json_decref(user);
        chat__call_fail(c, CHAT_EINTERNAL, "could not sign a token");
        return;
    }
    json_t *body = json_pack("{s:o,s:s}", "user", chat__public_user(user, 1), "token", token);
    free(token);
    json_decref(user);
    chat__call_done(c, body);
}

static void registered(int status, json_t *result, void *arg)
{
    chat_call *c = arg;
    if (status == CHAT_ECONFLICT) {
        const char *field = json_string_value(json_object_get(result, "field"));
        char msg[96];
        snprintf(msg, sizeof msg, "that %s is already registered",
                 field ? field : "email or username");
        json_decref(result);
        chat__call_fail(c, CHAT_ECONFLICT, msg);
        return;
    }
    if (status) {
        json_decref(result);
        chat__call_fail(c, status, NULL);
        return;
    }
    answer_with_token(c, result);
}

static void password_hashed(int status, const char *hash, void *arg)
{
    chat_call *c = arg;
    if (status) {
        chat__call_fail(c, CHAT_EINTERNAL, "could not hash the password");
        return;
    }
    char id[25];
    chat__objectid(id);
    json_t *in = c->input;
    json_t *user =
        json_pack("{s:s,s:O,s:O,s:s,s:I}", "id", id, "email", json_object_get(in, "email"),
                  "username", json_object_get(in, "username"), "passwordHash", hash, "createdAt",
                  (json_int_t)chat__now_ms());
    chat__call_store(c, CHAT_STORE_USER_CREATE, user, registered);
}

static void register_allowed(chat_call *c, const limit_walk *w)
{
    (void)w;
    const char *password = json_string_value(json_object_get(c->input, "password"));
    int rc = chat__password_hash_async(c->rt->loop, password, c->rt->cfg.bcrypt_cost,
                                       password_hashed, c);
    if (rc) {
        chat__call_fail(c, rc == CHAT_EUNAVAIL ? rc : CHAT_EINTERNAL,
                        rc == CHAT_EUNAVAIL ? "the server is busy checking passwords; retry shortly"
                                            : "could not hash the password");
    }
}

static void rest_register(chat_http_req *req, const char *user_id)
{
    (void)user_id;
    json_t *body = body_object(req);
    if (!body) {
        return;
    }
    const char *email = json_string_value(json_object_get(body, "email"));
    const char *username = json_string_value(json_object_get(body, "username"));
    json_t *password = json_object_get(body, "password");
    const char *problem = !valid_email(email) || chat__is_bot_email(email)
                              ? "email must be a valid address"
                          : !chat__valid_username(username)
                              ? "username must be 3 to 32 letters, digits, '_', '.' or '-'"
                          : !json_is_string(password) || json_string_length(password) < 8 ||
                                  json_string_length(password) > CHAT_PASSWORD_MAX
                              ? "password must be a string of 8 to 72 bytes in UTF-8 (bcrypt "
                                "reads no more; a letter outside ASCII takes 2 to 4 bytes)"
                              : NULL;
    if (problem) {
        json_decref(body);
        chat__http_respond_error(req, CHAT_EINVAL, problem);
        return;
    }
    if (memchr(json_string_value(password), 0, json_string_length(password))) {
        json_decref(body);
        chat__http_respond_error(req, CHAT_EINVAL, "password must not contain NUL bytes");
        return;
    }
    char ip[64];
    client_ip(req, ip, sizeof ip);
    limit_key key = {.limit = req->rt->cfg.register_per_ip, .kind = LIMIT_REGISTER};
    snprintf(key.key, sizeof key.key, "ratelimit:register:%s", ip);
    limited_call(req, body, 201, req->rt->cfg.register_window_s, &key, 1, register_allowed);
}

static void login_checked(int status, const char *unused, void *arg)
{
    login_ctx *l = arg;
    chat_call *c = l->c;
    (void)unused;
    if (status && status != CHAT_EUNAUTHORIZED) { /* not checked (stopping): not a failure */
        login_uncount(c->rt, l->ip_key, l->account_key);
        chat__call_fail(c, status, NULL);
        login_ctx_free(l);
        return;
    }
    if (status || !l->user) {
        if (c->req) {
            chat__http_auth_failed(c->req, "login", "wrong login or password",
                                   json_string_value(json_object_get(c->input, "login")));
        }
        chat__call_fail(c, CHAT_EUNAUTHORIZED, "wrong login or password");
        login_ctx_free(l);
        return;
    }
    login_uncount(c->rt, l->ip_key, l->account_key);
    const json_t *s = chat__sanction_find(c->rt, CHAT_SANCTION_DISABLE, NULL,
                                          json_string_value(json_object_get(l->user, "id")));
    if (s) {
        char why[640];
        chat__sanction_describe(s, why, sizeof why);
        chat__call_fail(c, CHAT_EFORBIDDEN, why);
    } else {
        answer_with_token(c, l->user);
        l->user = NULL; /* taken */
    }
    login_ctx_free(l);
}

static void login_user_loaded(int status, json_t *user, void *arg)
{
    login_ctx *l = arg;
    chat_call *c = l->c;
    if (status && status != CHAT_ENOTFOUND) {
        json_decref(user);
        login_uncount(c->rt, l->ip_key, l->account_key); /* the store failed, not the password */
        chat__call_fail(c, status, NULL);
        login_ctx_free(l);
        return;
    }
    /* an unknown login is checked against a dummy hash of the same cost, so it takes as
     * long as a wrong password: no user enumeration by timing */
    const char *dummy_hash = c->rt->dummy_hash;
    const char *hash =
        status ? dummy_hash : json_string_value(json_object_get(user, "passwordHash"));
    if (status) {
        json_decref(user);
    } else {
        l->user = user;
    }
    const char *password = json_string_value(json_object_get(c->input, "password"));
    int rc = chat__password_verify_async(c->rt->loop, password, hash ? hash : dummy_hash,
                                         login_checked, l);
    if (rc) {
        login_uncount(c->rt, l->ip_key, l->account_key); /* refused before checking */
        chat__call_fail(c, rc == CHAT_EUNAVAIL ? rc : CHAT_EINTERNAL,
                        rc == CHAT_EUNAVAIL ? "the server is busy checking passwords; retry shortly"
                                            : "could not check the password");
        login_ctx_free(l);
    }
}

static void login_allowed(chat_call *c, const limit_walk *w)
{
    login_ctx *l = calloc(1, sizeof *l);
    if (!l) {
        login_uncount(c->rt, w->keys[0].key, w->keys[1].key); /* never checked */
        chat__call_fail(c, CHAT_ENOMEM, NULL);
        return;
    }
    l->c = c;
    snprintf(l->ip_key, sizeof l->ip_key, "%s", w->keys[0].key);
    snprintf(l->account_key, sizeof l->account_key, "%s", w->keys[1].key);
    /* chat__call_store would hand the callback the call; this one needs the login too */
    int rc = chat__store_call(c->rt->store, CHAT_STORE_USER_BY_LOGIN,
                              json_pack("{s:O}", "login", json_object_get(c->input, "login")),
                              login_user_loaded, l);
    if (rc) {
        chat__call_fail(c, rc, "the store is unavailable; retry shortly");
        login_ctx_free(l);
    }
}

static void rest_login(chat_http_req *req, const char *user_id)
{
    (void)user_id;
    json_t *body = body_object(req);
    if (!body) {
        return;
    }
    json_t *login = json_object_get(body, "login");
    json_t *password = json_object_get(body, "password");
    if (!json_is_string(login) || !json_string_length(login) || json_string_length(login) > 254 ||
        !json_is_string(password) || json_string_length(password) > 256) {
        json_decref(body);
        chat__http_respond_error(req, CHAT_EINVAL,
                                 "send {\"login\": email or username, \"password\": string}");
        return;
    }
    char ip[64];
    client_ip(req, ip, sizeof ip);
    limit_key keys[2] = {{.limit = req->rt->cfg.login_fail_ip, .kind = LIMIT_IP},
                         {.limit = req->rt->cfg.login_fail_account, .kind = LIMIT_ACCOUNT}};
    snprintf(keys[0].key, sizeof keys[0].key, "ratelimit:login:ip:%s", ip);
    login_key(keys[1].key, sizeof keys[1].key, json_string_value(login));
    limited_call(req, body, 200, req->rt->cfg.login_window_s, keys, 2, login_allowed);
}

static void me_loaded(int status, json_t *user, void *arg)
{
    chat_call *c = arg;
    if (status) {
        json_decref(user);
        chat__call_fail(c, status == CHAT_ENOTFOUND ? CHAT_EUNAUTHORIZED : status,
                        status == CHAT_ENOTFOUND ? "this account no longer exists" : NULL);
        return;
    }
    chat__call_done(c, json_pack("{s:o}", "user", chat__public_user(user, 1)));
    json_decref(user);
}

static void rest_me(chat_http_req *req, const char *user_id)
{
    chat_call *c = chat__call_from_req(req, user_id, 200);
    if (c) {
        chat__call_store(c, CHAT_STORE_USER_GET, json_pack("{s:s}", "id", user_id), me_loaded);
    }
}

static void rooms_loaded(int status, json_t *rooms, void *arg)
{
    chat_call *c = arg;
    if (status) {
        json_decref(rooms);
        chat__call_fail(c, status, NULL);
        return;
    }
    chat__rooms_answer_with_reads(c, rooms); /* reads.c: unread counts and markers */
}

static void rest_rooms_list(chat_http_req *req, const char *user_id)
{
    chat_call *c = chat__call_from_req(req, user_id, 200);
    if (c) {
        chat__call_store(c, CHAT_STORE_ROOMS_FOR_USER, json_pack("{s:s}", "userId", user_id),
                         rooms_loaded);
    }
}

static void rest_rooms_create(chat_http_req *req, const char *user_id)
{
    json_t *body = body_object(req);
    if (!body) {
        return;
    }
    chat_call *c = chat__call_from_req(req, user_id, 201);
    if (c) {
        chat__room_create(c, body);
    }
    json_decref(body);
}

static void rest_messages(chat_http_req *req, const char *user_id)
{
    char room_id[32], before[32];
    const char *r = chat__http_query(req, "roomId", room_id, sizeof room_id);
    const char *b = chat__http_query(req, "before", before, sizeof before);
    if (!chat__is_object_id(r)) {
        chat__http_respond_error(req, CHAT_EINVAL, "roomId must be a room id (24 hex characters)");
        return;
    }
    if (b && *b && !chat__is_object_id(b)) {
        chat__http_respond_error(req, CHAT_EINVAL, "before must be a message id");
        return;
    }
    int limit;
    if (chat__http_query_int(req, "limit", 50, 1, 100, &limit)) {
        return;
    }
    chat_call *c = chat__call_from_req(req, user_id, 200);
    if (!c) {
        return;
    }
    memcpy(c->room_id, r, 25);
    c->input = json_pack("{s:s,s:o,s:i}", "roomId", r, "before",
                         b && *b ? json_string(b) : json_null(), "limit", limit);
    chat__require_member(c, chat__messages_page);
}

static const chat_http_route rest_routes[] = {
    {CHAT_HTTP_POST, "/auth/register", 0, rest_register},
    {CHAT_HTTP_POST, "/auth/login", 0, rest_login},
    {CHAT_HTTP_GET, "/me", 1, rest_me},
    {CHAT_HTTP_GET, "/rooms", 1, rest_rooms_list},
    {CHAT_HTTP_POST, "/rooms", 1, rest_rooms_create},
    {CHAT_HTTP_GET, "/messages", 1, rest_messages},
};

int chat__rest_start(chat_runtime *rt)
{
    return chat__http_routes_add(rt, rest_routes, sizeof rest_routes / sizeof rest_routes[0]);
}
