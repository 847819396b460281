/* admin.c: the admin API (admin.h). The paths, bodies and answers are
 * those of docs/admin-openapi.yaml; spec/e2e/admin.test.js checks the server against it. */
#include "admin.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "cluster.h"
#include "http.h"
#include "jobs.h"
#include "log.h"
#include "reload.h"
#include "rt.h"
#include "sanctions.h"
#include "script.h"
#include "session.h"
#include "sock.h"

#define TOKENS_MAX 16
#define CONTENT_MAX 10000

typedef struct admin_token {
    char name[33];
    char *token;
} admin_token;

typedef struct chat_admin {
    chat_runtime *rt;
    admin_token tokens[TOKENS_MAX];
    int ntokens;
    int stopped;
} chat_admin;

/* ---- tokens ---- */

static int add_token(chat_admin *a, const char *name, size_t nlen, const char *tok, size_t tlen)
{
    if (a->ntokens == TOKENS_MAX || !tlen || !nlen || nlen >= sizeof a->tokens[0].name) {
        return CHAT_EINVAL;
    }
    admin_token *t = &a->tokens[a->ntokens];
    memcpy(t->name, name, nlen);
    t->name[nlen] = 0;
    t->token = strndup(tok, tlen);
    if (!t->token) {
        return CHAT_ENOMEM;
    }
    a->ntokens++;
    return 0;
}

/* CHAT_ADMIN_TOKENS: "alice=s3cret,bob=0ther" (names: what the log says did it). */
static int parse_tokens(chat_admin *a, const char *spec)
{
    for (const char *p = spec; p && *p;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        const char *eq = memchr(p, '=', len);
        if (!eq || add_token(a, p, (size_t)(eq - p), eq + 1, len - (size_t)(eq - p) - 1)) {
            chat__log(CHAT_LOG_ERROR, "admin_tokens_invalid",
                      "CHAT_ADMIN_TOKENS must be name=token pairs separated by commas "
                      "(up to 16; names up to 32 characters); the admin API is off",
                      NULL);
            return CHAT_EINVAL;
        }
        p = comma ? comma + 1 : p + len;
    }
    return 0;
}

/* The token's name, or NULL. Compares every token in constant time. */
static const char *token_name(chat_admin *a, const char *header)
{
    if (!header || strncasecmp(header, "Bearer ", 7) != 0) {
        return NULL;
    }
    const char *given = header + 7;
    size_t n = strlen(given);
    const char *found = NULL;
    for (int i = 0; i < a->ntokens; i++) {
        size_t tn = strlen(a->tokens[i].token);
        if (tn == n && CRYPTO_memcmp(given, a->tokens[i].token, n) == 0) {
            found = a->tokens[i].name;
        }
    }
    return found;
}

/* ---- answers and the action log ---- */

static int is_object_id(const char *s)
{
    if (!s || strlen(s) != 24) {
        return 0;
    }
    for (int i = 0; i < 24; i++) {
        if (!isxdigit((unsigned char)s[i]) || isupper((unsigned char)s[i])) {
            return 0;
        }
    }
    return 1;
}

/* One line per action, with who did it: the token's name, the peer and the request id. */
static void log_action(chat_http_req *req, const char *by, const char *action, int status,
                       json_t *fields)
{
    json_t *f = fields ? fields : json_object();
    json_object_set_new(f, "by", json_string(by));
    json_object_set_new(f, "action", json_string(action));
    json_object_set_new(f, "status", json_integer(status));
    if (req) {
        json_object_set_new(f, "peer", json_string(req->peer));
        json_object_set_new(f, "request_id", json_string(req->request_id));
    }
    chat__log(status < 400 ? CHAT_LOG_INFO : CHAT_LOG_WARN, "admin_action",
              "an operator acted through the admin API", f);
}

typedef struct admin_call {
    chat_http_req *req;
    chat_runtime *rt;
    char by[33];
    char action[24];
    char user_id[25];
    char room_id[25];
    json_t *body; /* the request's JSON body (owned) */
    json_t *acc;  /* an answer being built (owned) */
    int pending;  /* store or kv answers still owed */
    void (*next)(struct admin_call *c); /* with_user: what runs once the user exists */
} admin_call;

static admin_call *call_new(chat_http_req *req, const char *by, const char *action,
                            json_t *body)
{
    admin_call *c = calloc(1, sizeof *c);
    if (!c) {
        json_decref(body);
        chat__http_respond_error(req, CHAT_ENOMEM, NULL);
        return NULL;
    }
    c->req = req;
    c->rt = req->rt;
    chat__http_req_ref(req);
    snprintf(c->by, sizeof c->by, "%s", by);
    snprintf(c->action, sizeof c->action, "%s", action);
    c->body = body;
    return c;
}

static void call_free(admin_call *c)
{
    json_decref(c->body);
    json_decref(c->acc);
    chat__http_req_unref(c->req);
    free(c);
}

static json_t *call_fields(admin_call *c)
{
    json_t *f = json_object();
    if (c->user_id[0]) {
        json_object_set_new(f, "userId", json_string(c->user_id));
    }
    if (c->room_id[0]) {
        json_object_set_new(f, "roomId", json_string(c->room_id));
    }
    json_t *reason = json_object_get(c->body, "reason");
    if (json_is_string(reason)) {
        json_object_set(f, "reason", reason);
    }
    json_t *seconds = json_object_get(c->body, "seconds");
    if (json_is_integer(seconds)) {
        json_object_set(f, "seconds", seconds);
    }
    return f;
}

/* Answers {ok:true, ...answer} (answer stolen), logs mutations, frees c. */
static void call_ok(admin_call *c, json_t *answer, int log)
{
    json_t *body = answer ? answer : json_object();
    json_object_set_new(body, "ok", json_true());
    if (log) {
        log_action(c->req, c->by, c->action, 200, call_fields(c));
    }
    chat__http_respond_json(c->req, 200, body);
    call_free(c);
}

static void call_fail(admin_call *c, int err, const char *message)
{
    log_action(c->req, c->by, c->action, chat_errstatus(err), call_fields(c));
    chat__http_respond_error(c->req, err, message);
    call_free(c);
}

static void strip_user(json_t *user)
{
    json_object_del(user, "passwordHash");
}

/* ---- GET /admin/stats ---- */

static void stats(chat_http_req *req, const char *by, const char *id, json_t *body)
{
    (void)by, (void)id;
    json_decref(body);
    chat_runtime *rt = req->rt;
    json_t *nodes = chat__cluster_nodes(rt);
    json_int_t connections = 0, users = 0;
    double rate = 0;
    size_t i;
    json_t *n;
    json_t *versions = json_object();
    json_array_foreach(nodes, i, n)
    {
        connections += json_integer_value(json_object_get(n, "connections"));
        users += json_integer_value(json_object_get(n, "usersOnline"));
        rate += json_real_value(json_object_get(n, "messagesPerSecond"));
        const char *hash = json_string_value(json_object_get(n, "scriptsHash"));
        json_object_set_new(versions, hash ? hash : "", json_true());
    }
    json_t *answer = json_pack(
        "{s:o,s:{s:I,s:I,s:I,s:f,s:b},s:o}", "node", chat__cluster_node_stats(rt), "cluster",
        "nodes", (json_int_t)json_array_size(nodes), "connections", connections, "usersOnline",
        users, "messagesPerSecond", rate, "scriptsConsistent", json_object_size(versions) <= 1,
        "nodes", nodes);
    json_decref(versions);
    json_object_set_new(answer, "ok", json_true());
    chat__http_respond_json(req, 200, answer);
}

/* ---- GET /admin/jobs/dead ---- */

static void jobs_listed(int status, json_t *jobs, void *arg)
{
    chat_http_req *req = arg;
    if (status) {
        chat__http_respond_error(req, status, "the job queue did not answer; retry shortly");
    } else {
        chat__http_respond_json(req, 200, json_pack("{s:b,s:o}", "ok", 1, "jobs", jobs));
    }
    chat__http_req_unref(req);
}

static void jobs_dead(chat_http_req *req, const char *by, const char *id, json_t *body)
{
    (void)by, (void)id;
    json_decref(body);
    chat__http_req_ref(req);
    chat__jobs_dead(req->rt->jobs, 1000, jobs_listed, req);
}

/* ---- GET /admin/users/{id}, /admin/rooms/{id} ---- */

static void user_online(int status, const char *value, int64_t number, void *arg)
{
    (void)value;
    admin_call *c = arg;
    json_object_set_new(c->acc, "online", json_boolean(status == 0 && number > 0));
    if (--c->pending == 0) {
        call_ok(c, json_incref(c->acc), 0);
    }
}

static void user_rooms(int status, json_t *rooms, void *arg)
{
    admin_call *c = arg;
    json_t *ids = json_array();
    size_t i;
    json_t *r;
    json_array_foreach(status ? NULL : rooms, i, r)
    {
        json_array_append(ids, json_object_get(r, "id"));
    }
    json_object_set_new(c->acc, "rooms", ids);
    json_decref(rooms);
    if (--c->pending == 0) {
        call_ok(c, json_incref(c->acc), 0);
    }
}

static void user_loaded(int status, json_t *user, void *arg)
{
    admin_call *c = arg;
    if (status) {
        json_decref(user);
        call_fail(c, status, status == CHAT_ENOTFOUND ? "no user has that id" : NULL);
        return;
    }
    strip_user(user);
    c->acc = json_pack("{s:o,s:o}", "user", user, "sanctions",
                       chat__sanctions_of(c->rt, c->user_id));
    c->pending = 2;
    char key[48];
    snprintf(key, sizeof key, "user:%s:online", c->user_id);
    if (chat__store_call(c->rt->store, CHAT_STORE_ROOMS_FOR_USER,
                         json_pack("{s:s}", "userId", c->user_id), user_rooms, c)) {
        json_object_set_new(c->acc, "rooms", json_array());
        c->pending--;
    }
    chat__kv_get(c->rt->kv, key, user_online, c);
}

static void user_get(chat_http_req *req, const char *by, const char *id, json_t *body)
{
    admin_call *c = call_new(req, by, "user", body);
    if (!c) {
        return;
    }
    memcpy(c->user_id, id, 25);
    if (chat__store_call(c->rt->store, CHAT_STORE_USER_GET, json_pack("{s:s}", "id", id),
                         user_loaded, c)) {
        call_fail(c, CHAT_EUNAVAIL, NULL);
    }
}

typedef struct member_ctx {
    admin_call *c;
    json_t *member; /* borrowed from c->acc's members */
} member_ctx;

static void member_online(int status, const char *value, int64_t number, void *arg)
{
    (void)value;
    member_ctx *m = arg;
    admin_call *c = m->c;
    json_object_set_new(m->member, "online", json_boolean(status == 0 && number > 0));
    free(m);
    if (--c->pending == 0) {
        call_ok(c, json_incref(c->acc), 0);
    }
}

static void room_loaded(int status, json_t *room, void *arg)
{
    admin_call *c = arg;
    if (status) {
        json_decref(room);
        call_fail(c, status, status == CHAT_ENOTFOUND ? "no room has that id" : NULL);
        return;
    }
    json_t *members = json_array();
    c->acc = json_pack("{s:o,s:o}", "room", room, "members", members);
    json_t *ids = json_object_get(room, "participants");
    size_t i;
    json_t *id;
    c->pending = 1; /* this function's own, released below */
    json_array_foreach(ids, i, id)
    {
        json_t *m = json_pack("{s:O,s:b}", "id", id, "online", 0);
        json_array_append_new(members, m);
        member_ctx *mc = calloc(1, sizeof *mc);
        if (!mc || !json_is_string(id)) {
            free(mc);
            continue;
        }
        mc->c = c;
        mc->member = m;
        c->pending++;
        char key[48];
        snprintf(key, sizeof key, "user:%s:online", json_string_value(id));
        chat__kv_get(c->rt->kv, key, member_online, mc);
    }
    if (--c->pending == 0) {
        call_ok(c, json_incref(c->acc), 0);
    }
}

static void room_get(chat_http_req *req, const char *by, const char *id, json_t *body)
{
    admin_call *c = call_new(req, by, "room", body);
    if (!c) {
        return;
    }
    memcpy(c->room_id, id, 25);
    if (chat__store_call(c->rt->store, CHAT_STORE_ROOM_GET, json_pack("{s:s}", "id", id),
                         room_loaded, c)) {
        call_fail(c, CHAT_EUNAVAIL, NULL);
    }
}

/* ---- GET /admin/rooms?after=&limit=, GET /admin/users?q=&limit= ---- */

/* limit: 1..100, default 50; -1 (answered) when malformed. */
static int take_limit(chat_http_req *req)
{
    int n;
    return chat__http_query_int(req, "limit", 50, 1, 100, &n) ? -1 : n;
}

static void rooms_listed(int status, json_t *rooms, void *arg)
{
    admin_call *c = arg;
    if (status) {
        json_decref(rooms);
        call_fail(c, status, NULL);
        return;
    }
    size_t n = json_array_size(rooms);
    json_t *last = json_object_get(json_array_get(rooms, n - 1), "id");
    int limit = (int)json_integer_value(json_object_get(c->body, "limit"));
    json_t *answer = json_pack("{s:o,s:O}", "rooms", rooms, "next",
                               n == (size_t)limit && last ? last : json_null());
    call_ok(c, answer, 0);
}

static void rooms_list(chat_http_req *req, const char *by, const char *id, json_t *body)
{
    (void)id;
    json_decref(body);
    char after[32];
    const char *a = chat__http_query(req, "after", after, sizeof after);
    int limit = take_limit(req);
    if (limit < 0) {
        return;
    }
    if (a && !is_object_id(a)) {
        chat__http_respond_error(req, CHAT_EINVAL, "after must be a room id");
        return;
    }
    json_t *arg = json_pack("{s:o,s:i}", "after", a ? json_string(a) : json_null(), "limit",
                            limit);
    admin_call *c = call_new(req, by, "rooms", json_pack("{s:i}", "limit", limit));
    if (!c) {
        json_decref(arg);
        return;
    }
    if (chat__store_call(c->rt->store, CHAT_STORE_ROOMS_LIST, arg, rooms_listed, c)) {
        call_fail(c, CHAT_EUNAVAIL, NULL);
    }
}

static void users_found(int status, json_t *users, void *arg)
{
    admin_call *c = arg;
    if (status) {
        json_decref(users);
        call_fail(c, status, NULL);
        return;
    }
    size_t i;
    json_t *u;
    json_array_foreach(users, i, u)
    {
        strip_user(u);
        const char *uid = json_string_value(json_object_get(u, "id"));
        json_object_set_new(u, "disabled",
                            json_boolean(uid && chat__sanction_find(c->rt, CHAT_SANCTION_DISABLE,
                                                                    NULL, uid)));
    }
    call_ok(c, json_pack("{s:o}", "users", users), 0);
}

static void users_find(chat_http_req *req, const char *by, const char *id, json_t *body)
{
    (void)id;
    json_decref(body);
    char q[256];
    const char *prefix = chat__http_query(req, "q", q, sizeof q);
    int limit = take_limit(req);
    if (limit < 0) {
        return;
    }
    if (!prefix || !*prefix) {
        chat__http_respond_error(req, CHAT_EINVAL,
                                 "q must be the start of a username or email (1 to 254 bytes)");
        return;
    }
    admin_call *c = call_new(req, by, "users", NULL);
    if (c && chat__store_call(c->rt->store, CHAT_STORE_USERS_FIND,
                              json_pack("{s:s,s:i}", "prefix", prefix, "limit", limit),
                              users_found, c)) {
        call_fail(c, CHAT_EUNAVAIL, NULL);
    }
}

/* ---- sanctions: disable, enable, kick, ban, unban, mute, unmute ---- */

/* The optional members of a sanction's body: roomId (a room id), seconds (>= 1), reason
 * (a string of up to 500 bytes). -1 (answered) when one is malformed. */
static int take_sanction_body(admin_call *c, int room_ok, int seconds_ok, int64_t *seconds)
{
    json_t *room = json_object_get(c->body, "roomId");
    json_t *secs = json_object_get(c->body, "seconds");
    json_t *reason = json_object_get(c->body, "reason");
    *seconds = 0;
    if (room && !json_is_null(room)) {
        if (!room_ok || !is_object_id(json_string_value(room))) {
            call_fail(c, CHAT_EINVAL, room_ok ? "roomId must be a room id (24 hex characters)"
                                              : "this action takes no roomId");
            return -1;
        }
        memcpy(c->room_id, json_string_value(room), 25);
    }
    if (secs && !json_is_null(secs)) {
        if (!seconds_ok || !json_is_integer(secs) || json_integer_value(secs) < 1 ||
            json_integer_value(secs) > 100LL * 365 * 86400) {
            call_fail(c, CHAT_EINVAL, seconds_ok ? "seconds must be a whole number of seconds "
                                                   "from 1 to 100 years (or absent: until lifted)"
                                                 : "this action takes no seconds");
            return -1;
        }
        *seconds = json_integer_value(secs);
    }
    if (reason && !json_is_null(reason) &&
        (!json_is_string(reason) || json_string_length(reason) > 500)) {
        call_fail(c, CHAT_EINVAL, "reason must be a string of up to 500 bytes");
        return -1;
    }
    return 0;
}

static const char *reason_of(admin_call *c)
{
    return json_string_value(json_object_get(c->body, "reason"));
}

static void answer_sanctions(admin_call *c, int rc)
{
    if (rc && rc != CHAT_EUNAVAIL) {
        call_fail(c, rc, NULL);
        return;
    }
    /* EUNAVAIL: the bus to other nodes is down; this node applied it, the rest will not */
    json_t *answer = json_pack("{s:s,s:o,s:b}", "userId", c->user_id, "sanctions",
                               chat__sanctions_of(c->rt, c->user_id), "allNodes", rc == 0);
    call_ok(c, answer, 1);
}

/* The user must exist: the action runs once the store says so. */
typedef void (*user_step)(admin_call *c);

static void user_checked(int status, json_t *user, void *arg)
{
    admin_call *c = arg;
    user_step next = c->next;
    json_decref(user);
    if (status) {
        call_fail(c, status, status == CHAT_ENOTFOUND ? "no user has that id" : NULL);
        return;
    }
    next(c);
}

static void with_user(admin_call *c, user_step next)
{
    c->next = next;
    if (chat__store_call(c->rt->store, CHAT_STORE_USER_GET,
                         json_pack("{s:s}", "id", c->user_id), user_checked, c)) {
        call_fail(c, CHAT_EUNAVAIL, NULL);
    }
}

static void do_disable(admin_call *c)
{
    answer_sanctions(c, chat__sanction_set(c->rt, CHAT_SANCTION_DISABLE, NULL, c->user_id, 0,
                                           reason_of(c), c->by));
}

static void do_enable(admin_call *c)
{
    answer_sanctions(c, chat__sanction_lift(c->rt, CHAT_SANCTION_DISABLE, NULL, c->user_id,
                                            c->by));
}

static void left_room(int status, json_t *result, void *arg)
{
    admin_call *c = arg;
    json_decref(result);
    if (status && status != CHAT_ENOTFOUND) {
        call_fail(c, status, NULL);
        return;
    }
    int banned = strcmp(c->action, "ban") == 0;
    if (banned) {
        answer_sanctions(c, 0);
        return;
    }
    json_t *note = json_pack("{s:s,s:s,s:n,s:o}", "action", "kicked", "roomId", c->room_id,
                             "until", "reason",
                             reason_of(c) ? json_string(reason_of(c)) : json_null());
    int rc = chat__sanction_notify(c->rt, c->user_id, note);
    json_decref(note);
    call_ok(c, json_pack("{s:s,s:s,s:b}", "userId", c->user_id, "roomId", c->room_id,
                         "allNodes", rc == 0),
            1);
}

static void do_kick(admin_call *c)
{
    if (c->room_id[0]) { /* out of the room: the domain tells the room and the user's nodes */
        c->rt->actions->leave(c->rt, c->room_id, c->user_id, left_room, c);
        return;
    }
    int rc = chat__sanction_kick(c->rt, c->user_id, reason_of(c), c->by);
    call_ok(c, json_pack("{s:s,s:n,s:b}", "userId", c->user_id, "roomId", "allNodes", rc == 0),
            1);
}

static void do_ban(admin_call *c)
{
    int64_t seconds = json_integer_value(json_object_get(c->body, "seconds"));
    int rc = chat__sanction_set(c->rt, CHAT_SANCTION_BAN, c->room_id[0] ? c->room_id : NULL,
                                c->user_id, seconds, reason_of(c), c->by);
    if (rc && rc != CHAT_EUNAVAIL) {
        call_fail(c, rc, NULL);
    } else if (c->room_id[0]) { /* and out of the room now */
        c->rt->actions->leave(c->rt, c->room_id, c->user_id, left_room, c);
    } else {
        answer_sanctions(c, rc);
    }
}

static void do_unban(admin_call *c)
{
    answer_sanctions(c, chat__sanction_lift(c->rt, CHAT_SANCTION_BAN,
                                            c->room_id[0] ? c->room_id : NULL, c->user_id, c->by));
}

static void do_mute(admin_call *c)
{
    int64_t seconds = json_integer_value(json_object_get(c->body, "seconds"));
    answer_sanctions(c, chat__sanction_set(c->rt, CHAT_SANCTION_MUTE,
                                           c->room_id[0] ? c->room_id : NULL, c->user_id, seconds,
                                           reason_of(c), c->by));
}

static void do_unmute(admin_call *c)
{
    answer_sanctions(c, chat__sanction_lift(c->rt, CHAT_SANCTION_MUTE,
                                            c->room_id[0] ? c->room_id : NULL, c->user_id, c->by));
}

typedef struct sanction_action {
    const char *name;
    user_step step;
    int room_ok, seconds_ok;
} sanction_action;

static const sanction_action sanction_actions[] = {
    {"disable", do_disable, 0, 0}, {"enable", do_enable, 0, 0}, {"kick", do_kick, 1, 0},
    {"ban", do_ban, 1, 1},         {"unban", do_unban, 1, 0},   {"mute", do_mute, 1, 1},
    {"unmute", do_unmute, 1, 0},
};

static void user_action(chat_http_req *req, const char *by, const char *id, json_t *body,
                        const char *action)
{
    const sanction_action *sa = NULL;
    for (size_t i = 0; i < sizeof sanction_actions / sizeof sanction_actions[0]; i++) {
        if (strcmp(sanction_actions[i].name, action) == 0) {
            sa = &sanction_actions[i];
        }
    }
    admin_call *c = call_new(req, by, action, body);
    if (!c || !sa) {
        if (c) {
            call_fail(c, CHAT_ENOTFOUND, "no such action");
        }
        return;
    }
    memcpy(c->user_id, id, 25);
    int64_t seconds;
    if (take_sanction_body(c, sa->room_ok, sa->seconds_ok, &seconds) == 0) {
        with_user(c, sa->step);
    }
}

#define USER_ACTION(name)                                                                    \
    static void user_##name(chat_http_req *req, const char *by, const char *id, json_t *body) \
    {                                                                                        \
        user_action(req, by, id, body, #name);                                               \
    }
USER_ACTION(disable)
USER_ACTION(enable)
USER_ACTION(kick)
USER_ACTION(ban)
USER_ACTION(unban)
USER_ACTION(mute)
USER_ACTION(unmute)

/* ---- system messages ---- */

static json_t *take_content(admin_call *c)
{
    json_t *content = json_object_get(c->body, "content");
    if (!json_is_string(content) || !json_string_length(content) ||
        json_string_length(content) > CONTENT_MAX) {
        call_fail(c, CHAT_EINVAL, "content must be a non-empty string of up to 10000 bytes");
        return NULL;
    }
    return content;
}

static void op_system(chat_runtime *rt, json_t *msg)
{
    json_t *note = json_object_get(msg, "message");
    chat_sock *k;
    for (size_t i = 0; (k = chat__map_next(&rt->socks, &i));) {
        if (k->connected && strcmp(k->nsp, "/") == 0) {
            chat__sock_emit(k, "system:message", note);
        }
    }
}

static const chat_cluster_op admin_ops[] = {{"system", op_system}};

static void system_all(chat_http_req *req, const char *by, const char *id, json_t *body)
{
    (void)id;
    admin_call *c = call_new(req, by, "system", body);
    json_t *content = c ? take_content(c) : NULL;
    if (!content) {
        return;
    }
    json_t *msg = json_pack("{s:{s:n,s:O,s:I}}", "message", "roomId", "content", content,
                            "createdAt", (json_int_t)chat__now_ms());
    int rc = chat__cluster_publish(c->rt, "system", msg);
    json_t *answer = json_pack("{s:O,s:b}", "message", json_object_get(msg, "message"),
                               "allNodes", rc == 0);
    json_decref(msg);
    call_ok(c, answer, 1);
}

static void system_room_found(int status, json_t *room, void *arg)
{
    admin_call *c = arg;
    json_decref(room);
    if (status) {
        call_fail(c, status, status == CHAT_ENOTFOUND ? "no room has that id" : NULL);
        return;
    }
    json_t *message = json_pack("{s:s,s:O,s:I}", "roomId", c->room_id, "content",
                                json_object_get(c->body, "content"), "createdAt",
                                (json_int_t)chat__now_ms());
    json_t *args = json_pack("[O]", message); /* the event's one argument */
    if (args) {
        c->rt->actions->emit_room(c->rt, c->room_id, "system:message", args);
    }
    json_decref(args);
    call_ok(c, json_pack("{s:o}", "message", message), 1);
}

static void system_room(chat_http_req *req, const char *by, const char *id, json_t *body)
{
    admin_call *c = call_new(req, by, "system", body);
    if (!c) {
        return;
    }
    memcpy(c->room_id, id, 25);
    if (!take_content(c)) {
        return;
    }
    if (chat__store_call(c->rt->store, CHAT_STORE_ROOM_GET, json_pack("{s:s}", "id", id),
                         system_room_found, c)) {
        call_fail(c, CHAT_EUNAVAIL, NULL);
    }
}

/* ---- routing ---- */

typedef void (*admin_fn)(chat_http_req *req, const char *by, const char *id, json_t *body);

/* prefix, then a 24-hex id when suffix is not NULL, then suffix */
typedef struct admin_route {
    int method;
    const char *prefix;
    const char *suffix;
    admin_fn fn;
} admin_route;

static void reload_answered(int status, json_t *body, void *arg)
{
    admin_call *c = arg;
    json_t *nodes = json_object_get(body, "nodes");
    log_action(c->req, c->by, c->action, status,
                           json_pack("{s:O}", "nodes", nodes ? nodes : json_null()));
    chat__http_respond_json(c->req, status, body);
    call_free(c);
}

static void reload_route(chat_http_req *req, const char *by, const char *id, json_t *body)
{
    (void)id;
    admin_call *c = call_new(req, by, "reload", body);
    if (c) {
        chat__reload_cluster(req->rt, by, reload_answered, c);
    }
}

static const admin_route routes[] = {
    {CHAT_HTTP_GET, "/admin/stats", NULL, stats},
    {CHAT_HTTP_GET, "/admin/jobs/dead", NULL, jobs_dead},
    {CHAT_HTTP_POST, "/admin/reload", NULL, reload_route},
    {CHAT_HTTP_POST, "/admin/system", NULL, system_all},
    {CHAT_HTTP_GET, "/admin/rooms", NULL, rooms_list},
    {CHAT_HTTP_GET, "/admin/users", NULL, users_find},
    {CHAT_HTTP_GET, "/admin/rooms/", "", room_get},
    {CHAT_HTTP_POST, "/admin/rooms/", "/system", system_room},
    {CHAT_HTTP_GET, "/admin/users/", "", user_get},
    {CHAT_HTTP_POST, "/admin/users/", "/disable", user_disable},
    {CHAT_HTTP_POST, "/admin/users/", "/enable", user_enable},
    {CHAT_HTTP_POST, "/admin/users/", "/kick", user_kick},
    {CHAT_HTTP_POST, "/admin/users/", "/ban", user_ban},
    {CHAT_HTTP_POST, "/admin/users/", "/unban", user_unban},
    {CHAT_HTTP_POST, "/admin/users/", "/mute", user_mute},
    {CHAT_HTTP_POST, "/admin/users/", "/unmute", user_unmute},
};

/* 1 when path matches r (id gets the id part), 0 when not; -1 when the path has r's shape
 * but the id is malformed. */
static int match(const admin_route *r, const char *path, char id[25])
{
    size_t plen = strlen(r->prefix);
    if (strncmp(path, r->prefix, plen) != 0) {
        return 0;
    }
    if (!r->suffix) {
        return path[plen] == 0;
    }
    const char *rest = path + plen;
    const char *slash = strchr(rest, '/');
    size_t idlen = slash ? (size_t)(slash - rest) : strlen(rest);
    if (strcmp(rest + idlen, r->suffix) != 0) {
        return 0;
    }
    if (idlen != 24) {
        return -1;
    }
    memcpy(id, rest, 24);
    id[24] = 0;
    return is_object_id(id) ? 1 : -1;
}

static void admin_route_fn(chat_http_req *req, const char *user_id)
{
    (void)user_id;
    chat__admin_http(req);
}

static const chat_http_route admin_routes[] = {
    {CHAT_HTTP_ANY, "/admin/*", 0, admin_route_fn}, /* its own tokens and paths */
};

void chat__admin_http(chat_http_req *req)
{
    chat_admin *a = req->rt->admin;
    if (!a || a->ntokens == 0) {
        chat__http_respond_error(req, CHAT_ENOTFOUND,
                                 "the admin API is off; set CHAT_ADMIN_TOKEN (or "
                                 "CHAT_ADMIN_TOKENS) to enable it");
        return;
    }
    const char *by = token_name(a, req->authorization);
    if (!by) {
        chat__http_auth_failed(req, "admin",
                               req->authorization ? "wrong admin token" : "no admin token", NULL);
        chat__http_respond_error(req, CHAT_EUNAUTHORIZED,
                                 "send Authorization: Bearer <an admin token>");
        return;
    }
    int method = req->method == CHAT_HTTP_HEAD ? CHAT_HTTP_GET : req->method;
    int path_known = 0;
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        char id[25] = "";
        int m = match(&routes[i], req->path, id);
        if (m < 0) {
            chat__http_respond_error(req, CHAT_EINVAL, "the id in the path must be 24 hex "
                                                       "characters");
            return;
        }
        if (m == 0) {
            continue;
        }
        path_known = 1;
        if (routes[i].method != method) {
            continue;
        }
        json_t *body = NULL;
        if (method == CHAT_HTTP_POST) {
            json_error_t jerr;
            body = req->body.len ? json_loadb((const char *)req->body.data, req->body.len, 0,
                                              &jerr)
                                 : json_object();
            if (!json_is_object(body)) {
                json_decref(body);
                chat__http_respond_error(req, req->body_too_large ? CHAT_ETOOBIG : CHAT_EINVAL,
                                         req->body_too_large ? NULL
                                                             : "the body must be a JSON object");
                return;
            }
        }
        routes[i].fn(req, by, id, body);
        return;
    }
    chat__http_respond_error(req, path_known ? CHAT_EINVAL : CHAT_ENOTFOUND,
                             path_known ? "method not allowed on this path"
                                        : "no such admin path");
}

/* ---- lifecycle ---- */

int chat__admin_start(chat_runtime *rt)
{
    chat_admin *a = calloc(1, sizeof *a);
    if (!a) {
        return CHAT_ENOMEM;
    }
    a->rt = rt;
    rt->admin = a;
    const char *single = rt->cfg.admin_token;
    if (single && *single && add_token(a, "admin", 5, single, strlen(single))) {
        return CHAT_ENOMEM;
    }
    if (rt->cfg.admin_tokens && *rt->cfg.admin_tokens &&
        parse_tokens(a, rt->cfg.admin_tokens)) {
        return CHAT_EINVAL;
    }
    int rc = chat__cluster_handle(rt, admin_ops, sizeof admin_ops / sizeof admin_ops[0]);
    if (!rc) {
        rc = chat__http_routes_add(rt, admin_routes, sizeof admin_routes / sizeof admin_routes[0]);
    }
    if (!rc) {
        rc = chat__sanctions_start(rt);
    }
    return rc ? rc : chat__reload_start(rt);
}

void chat__admin_stop(chat_runtime *rt)
{
    chat_admin *a = rt->admin;
    if (!a || a->stopped) {
        return;
    }
    a->stopped = 1;
    chat__reload_stop(rt);
}

void chat__admin_free(chat_runtime *rt)
{
    chat_admin *a = rt->admin;
    if (!a) {
        return;
    }
    chat__sanctions_free(rt);
    chat__reload_free(rt);
    for (int i = 0; i < a->ntokens; i++) {
        free(a->tokens[i].token);
    }
    free(a);
    rt->admin = NULL;
}
