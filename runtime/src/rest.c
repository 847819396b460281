/* rest.c: the REST API (auth, me, rooms, messages) and its routes, registered with http.c
 * at start. The handlers parse the request and run the same domain operations as the
 * Socket.IO events. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "domain_int.h"

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
                                  json_string_length(password) > 256
                              ? "password must be a string of 8 to 256 bytes"
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
    chat_call *c = chat__call_from_req(req, NULL, 201);
    if (!c) {
        json_decref(body);
        chat__http_respond_error(req, CHAT_ENOMEM, NULL);
        return;
    }
    c->input = body;
    int rc = chat__password_hash_async(req->rt->loop, json_string_value(password),
                                       req->rt->cfg.bcrypt_cost, password_hashed, c);
    if (rc) {
        chat__call_fail(c, rc == CHAT_EUNAVAIL ? rc : CHAT_EINTERNAL,
                        rc == CHAT_EUNAVAIL ? "the server is busy checking passwords; retry shortly"
                                            : "could not hash the password");
    }
}

static void login_checked(int status, const char *unused, void *arg)
{
    chat_call *c = arg;
    (void)unused;
    if (status || !c->room) {
        chat__call_fail(c, CHAT_EUNAUTHORIZED, "wrong login or password");
        return;
    }
    json_t *user = c->room; /* the loaded user travels in the spare slot */
    c->room = NULL;
    answer_with_token(c, user);
}

static void login_user_loaded(int status, json_t *user, void *arg)
{
    chat_call *c = arg;
    if (status && status != CHAT_ENOTFOUND) {
        json_decref(user);
        chat__call_fail(c, status, NULL);
        return;
    }
    /* an unknown login is checked against a dummy hash of the same cost, so it takes as
     * long as a wrong password: no user enumeration by timing */
    const char *dummy_hash = c->rt->dummy_hash;
    const char *hash =
        status ? dummy_hash : json_string_value(json_object_get(user, "passwordHash"));
    c->room = status ? NULL : user;
    if (status) {
        json_decref(user);
    }
    const char *password = json_string_value(json_object_get(c->input, "password"));
    int rc = chat__password_verify_async(c->rt->loop, password, hash ? hash : dummy_hash,
                                         login_checked, c);
    if (rc) {
        chat__call_fail(c, rc == CHAT_EUNAVAIL ? rc : CHAT_EINTERNAL,
                        rc == CHAT_EUNAVAIL ? "the server is busy checking passwords; retry shortly"
                                            : "could not check the password");
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
    chat_call *c = chat__call_from_req(req, NULL, 200);
    if (!c) {
        json_decref(body);
        chat__http_respond_error(req, CHAT_ENOMEM, NULL);
        return;
    }
    c->input = body;
    chat__call_store(c, CHAT_STORE_USER_BY_LOGIN, json_pack("{s:O}", "login", login),
                     login_user_loaded);
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
    char room_id[32], before[32], limit_s[16];
    const char *r = chat__http_query(req, "roomId", room_id, sizeof room_id);
    const char *b = chat__http_query(req, "before", before, sizeof before);
    const char *l = chat__http_query(req, "limit", limit_s, sizeof limit_s);
    if (!chat__is_object_id(r)) {
        chat__http_respond_error(req, CHAT_EINVAL, "roomId must be a room id (24 hex characters)");
        return;
    }
    if (b && *b && !chat__is_object_id(b)) {
        chat__http_respond_error(req, CHAT_EINVAL, "before must be a message id");
        return;
    }
    long limit = 50;
    if (l) {
        char *end;
        limit = strtol(l, &end, 10);
        if (end == l || *end || limit < 1 || limit > 100) {
            chat__http_respond_error(req, CHAT_EINVAL, "limit must be between 1 and 100");
            return;
        }
    }
    chat_call *c = chat__call_from_req(req, user_id, 200);
    if (!c) {
        return;
    }
    memcpy(c->room_id, r, 25);
    c->input = json_pack("{s:s,s:o,s:i}", "roomId", r, "before",
                         b && *b ? json_string(b) : json_null(), "limit", (int)limit);
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
