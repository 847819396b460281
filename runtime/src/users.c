/* users.c: profiles and the user directory: PATCH /me, GET /users/:id, GET /users?ids=,
 * GET /users?q=. Lookups go through user:{userId}:data (the public user as JSON, TTL 30
 * min) when the kv is Redis; a profile change and a presence change drop that copy.
 *
 * A stored profile change is announced as user:updated (the public user) to every socket
 * that shares a room with the user and to the user's own sockets, on every node. The cached
 * copy is replaced first by a short hold and the event waits for Redis to confirm it: a client
 * that reads the directory on seeing the event, through any node, gets the new profile.
 *
 * The hold ("-" for USER_CACHE_HOLD_MS) and fills with SET NX close the race a plain DEL
 * leaves open: a lookup that read the store just before the change and writes its copy just
 * after it would leave the old profile cached for the full TTL. With the hold in place that
 * write finds the key taken and writes nothing; lookups meanwhile read the store. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "domain_int.h"
#include "log.h"

#define USER_CACHE_TTL_MS (30 * 60 * 1000)
#define USER_CACHE_HOLD_MS 5000 /* a lookup reads the store and fills in far less than this */
#define DISPLAY_NAME_MAX 64
#define STATUS_TEXT_MAX 140
#define AVATAR_MAX 512
#define SEARCH_LIMIT_MAX 20
#define USERS_CHANNEL "users:updates" /* every node subscribes to it at start (runtime.c) */

static void cache_key(char out[48], const char *user_id)
{
    snprintf(out, 48, "user:%s:data", user_id);
}

/* Only Redis is worth a copy: the embedded store is one process away from the same data. */
static int cache_on(chat_runtime *rt)
{
    const char *be = chat__kv_backend_name(rt->kv);
    return be && strcmp(be, "redis") == 0;
}

/* Replaces the cached copy with the hold; cb (may be NULL) runs once Redis has it. */
static void cache_hold(chat_runtime *rt, const char *user_id, chat_kv_cb cb, void *arg)
{
    char key[48];
    cache_key(key, user_id);
    chat__kv_set(rt->kv, key, "-", USER_CACHE_HOLD_MS, cb, arg);
}

void chat__users_changed(chat_runtime *rt, const char *user_id)
{
    if (cache_on(rt)) {
        cache_hold(rt, user_id, NULL, NULL);
    }
}

static void cache_filled(int status, json_t *reply, void *arg)
{
    (void)status; /* a copy not written is read from the store next time */
    (void)arg;
    json_decref(reply);
}

/* Writes the copy unless the key is taken (a copy, or the hold after a change). */
static void cache_fill(chat_runtime *rt, const char *user_id, const char *text)
{
    char key[48], ttl[24];
    cache_key(key, user_id);
    snprintf(ttl, sizeof ttl, "%d", USER_CACHE_TTL_MS);
    const char *argv[] = {"SET", key, text, "PX", ttl, "NX"};
    chat__kv_redis_command(rt->kv, 6, argv, NULL, cache_filled, NULL);
}

/* ---- loading users by id, through the cache ---- */

typedef struct users_load {
    chat_call *c;
    json_t *ids;   /* the ids asked, each once, in order */
    json_t *found; /* id -> public user */
    int pending;   /* cache reads not answered yet */
    int single;    /* GET /users/:id: answer {user} or 404 */
} users_load;

static void load_answer(users_load *l)
{
    chat_call *c = l->c;
    if (l->single) {
        json_t *u = json_object_get(l->found, json_string_value(json_array_get(l->ids, 0)));
        if (u) {
            chat__call_done(c, json_pack("{s:O}", "user", u));
        } else {
            chat__call_fail(c, CHAT_ENOTFOUND, "no user has that id");
        }
    } else {
        json_t *users = json_array();
        size_t i;
        json_t *id;
        json_array_foreach(l->ids, i, id)
        {
            json_t *u = json_object_get(l->found, json_string_value(id));
            if (u) {
                json_array_append(users, u);
            }
        }
        chat__call_done(c, json_pack("{s:o}", "users", users));
    }
    json_decref(l->ids);
    json_decref(l->found);
    free(l);
}

static void users_stored(int status, json_t *users, void *arg)
{
    users_load *l = arg;
    if (status) {
        json_decref(users);
        chat__call_fail(l->c, status, NULL);
        json_decref(l->ids);
        json_decref(l->found);
        free(l);
        return;
    }
    size_t i;
    json_t *u;
    json_array_foreach(users, i, u)
    {
        const char *id = json_string_value(json_object_get(u, "id"));
        json_t *pub = chat__public_user(u, 0);
        if (!id || !pub) {
            json_decref(pub);
            continue;
        }
        if (cache_on(l->c->rt)) {
            char *text = json_dumps(pub, JSON_COMPACT);
            if (text) {
                cache_fill(l->c->rt, id, text);
            }
            free(text);
        }
        json_object_set_new(l->found, id, pub);
    }
    json_decref(users);
    load_answer(l);
}

/* Every id the cache did not have goes to the store in one USERS_GET. */
static void load_from_store(users_load *l)
{
    json_t *missing = json_array();
    size_t i;
    json_t *id;
    json_array_foreach(l->ids, i, id)
    {
        if (!json_object_get(l->found, json_string_value(id))) {
            json_array_append(missing, id);
        }
    }
    if (!json_array_size(missing)) {
        json_decref(missing);
        load_answer(l);
        return;
    }
    if (chat__store_call(l->c->rt->store, CHAT_STORE_USERS_GET,
                         json_pack("{s:o}", "ids", missing), users_stored, l)) {
        chat__call_fail(l->c, CHAT_EUNAVAIL, "the store is unavailable; retry shortly");
        json_decref(l->ids);
        json_decref(l->found);
        free(l);
    }
}

typedef struct cache_read {
    users_load *l;
    char id[25];
} cache_read;

static void cache_answered(int status, const char *value, int64_t number, void *arg)
{
    cache_read *r = arg;
    users_load *l = r->l;
    (void)number;
    json_t *u = !status && value ? json_loads(value, 0, NULL) : NULL;
    if (json_is_object(u)) {
        json_object_set(l->found, r->id, u);
    }
    json_decref(u);
    free(r);
    if (--l->pending == 0) {
        load_from_store(l);
    }
}

/* Takes ids (strings, each once). Answers c. */
static void users_load_start(chat_call *c, json_t *ids, int single)
{
    users_load *l = calloc(1, sizeof *l);
    if (!l || !(l->found = json_object())) {
        free(l);
        json_decref(ids);
        chat__call_fail(c, CHAT_ENOMEM, NULL);
        return;
    }
    l->c = c;
    l->ids = ids;
    l->single = single;
    if (!cache_on(c->rt)) {
        load_from_store(l);
        return;
    }
    l->pending = 1; /* held until every read is asked */
    size_t i;
    json_t *id;
    json_array_foreach(ids, i, id)
    {
        cache_read *r = calloc(1, sizeof *r);
        if (!r) {
            continue;
        }
        char key[48];
        r->l = l;
        snprintf(r->id, sizeof r->id, "%s", json_string_value(id));
        cache_key(key, r->id);
        l->pending++;
        if (chat__kv_get(c->rt->kv, key, cache_answered, r)) {
            l->pending--;
            free(r);
        }
    }
    if (--l->pending == 0) {
        load_from_store(l);
    }
}

/* ---- GET /users/:id, GET /users?ids= | ?q= ---- */

static void rest_user_get(chat_http_req *req, const char *user_id)
{
    const char *id = req->path + strlen("/users/");
    if (!chat__is_object_id(id)) {
        chat__http_respond_error(req, CHAT_ENOTFOUND, "no user has that id");
        return;
    }
    chat_call *c = chat__call_from_req(req, user_id, 200);
    if (c) {
        users_load_start(c, json_pack("[s]", id), 1);
    }
}

static int search_prefix_ok(const char *q)
{
    size_t n = strlen(q);
    if (n < 1 || n > 32) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        if (!isalnum((unsigned char)q[i]) && !strchr("_.-", q[i])) {
            return 0;
        }
    }
    return 1;
}

static void users_found(int status, json_t *users, void *arg)
{
    chat_call *c = arg;
    if (status) {
        json_decref(users);
        chat__call_fail(c, status, NULL);
        return;
    }
    json_t *out = json_array();
    size_t i;
    json_t *u;
    json_array_foreach(users, i, u)
    {
        json_array_append_new(out, chat__public_user(u, 0));
    }
    json_decref(users);
    chat__call_done(c, json_pack("{s:o}", "users", out));
}

static void rest_users(chat_http_req *req, const char *user_id)
{
    char ids_s[CHAT_STORE_IDS_MAX * 25 + 1], q[40];
    const char *ids = chat__http_query(req, "ids", ids_s, sizeof ids_s);
    const char *prefix = chat__http_query(req, "q", q, sizeof q);
    if ((ids == NULL) == (prefix == NULL)) {
        chat__http_respond_error(req, CHAT_EINVAL,
                                 "send either ids=<id>,<id>,... or q=<username prefix>");
        return;
    }
    if (ids) {
        json_t *list = json_array();
        const char *p = ids;
        int bad = !*p;
        while (!bad && *p) {
            const char *comma = strchr(p, ',');
            size_t n = comma ? (size_t)(comma - p) : strlen(p);
            char id[25];
            bad = n != 24;
            if (!bad) {
                memcpy(id, p, 24);
                id[24] = '\0';
                bad = !chat__is_object_id(id);
            }
            if (!bad && !chat__json_has_string(list, id)) {
                json_array_append_new(list, json_string(id));
            }
            bad = bad || json_array_size(list) > CHAT_STORE_IDS_MAX;
            p = comma ? comma + 1 : p + n;
            bad = bad || (comma && !*p);
        }
        if (bad) {
            json_decref(list);
            chat__http_respond_error(req, CHAT_EINVAL,
                                     "ids must be 1 to 100 user ids (24 hex), comma-separated");
            return;
        }
        chat_call *c = chat__call_from_req(req, user_id, 200);
        if (c) {
            users_load_start(c, list, 0);
        } else {
            json_decref(list);
        }
        return;
    }
    if (!search_prefix_ok(prefix)) {
        chat__http_respond_error(req, CHAT_EINVAL,
                                 "q must be 1 to 32 letters, digits, '_', '.' or '-' (the start "
                                 "of a username)");
        return;
    }
    int limit;
    if (chat__http_query_int(req, "limit", 10, 1, SEARCH_LIMIT_MAX, &limit)) {
        return;
    }
    chat_call *c = chat__call_from_req(req, user_id, 200);
    if (c) {
        chat__call_store(c, CHAT_STORE_USERS_SEARCH,
                         json_pack("{s:s,s:i}", "prefix", prefix, "limit", limit),
                         users_found);
    }
}

/* ---- PATCH /me ---- */

static int has_control(const char *s)
{
    for (; *s; s++) {
        if ((unsigned char)*s < 0x20 || *s == 0x7f) {
            return 1;
        }
    }
    return 0;
}

/* Checks {displayName?, avatar?, statusText?} (null or "" clears a field) into the store's
 * form (null -> ""); NULL with *problem set when something is wrong. */
static json_t *take_changes(json_t *body, const char **problem)
{
    static const struct {
        const char *key;
        size_t max;
        const char *msg;
    } fields[] = {
        {"displayName", DISPLAY_NAME_MAX,
         "displayName must be a string of at most 64 bytes without control characters, or "
         "null"},
        {"avatar", AVATAR_MAX,
         "avatar must be an http(s) URL of at most 512 bytes, an /uploads/<upload id> path, "
         "or null"},
        {"statusText", STATUS_TEXT_MAX,
         "statusText must be a string of at most 140 bytes without control characters, or "
         "null"},
    };
    const char *key;
    json_t *v;
    json_object_foreach(body, key, v)
    {
        int known = 0;
        for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
            known |= strcmp(key, fields[i].key) == 0;
        }
        if (!known) {
            *problem = "a profile has displayName, avatar and statusText only";
            return NULL;
        }
    }
    json_t *out = json_object();
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        v = json_object_get(body, fields[i].key);
        if (!v) {
            continue;
        }
        if (json_is_null(v)) {
            json_object_set_new(out, fields[i].key, json_string(""));
            continue;
        }
        const char *s = json_string_value(v);
        int ok = s && json_string_length(v) <= fields[i].max &&
                 strlen(s) == json_string_length(v) && !has_control(s);
        if (ok && i == 1 && *s) {
            ok = strncmp(s, "/uploads/", 9) == 0
                     ? chat__is_object_id(s + 9) /* the picture is checked in the store */
                     : (strncmp(s, "https://", 8) == 0 || strncmp(s, "http://", 7) == 0) &&
                           !strpbrk(s, " \"'<>\\");
        }
        if (!ok) {
            json_decref(out);
            *problem = fields[i].msg;
            return NULL;
        }
        json_object_set(out, fields[i].key, v);
    }
    if (!json_object_size(out)) {
        json_decref(out);
        *problem = "send at least one of displayName, avatar, statusText";
        return NULL;
    }
    return out;
}

/* ---- announcing a stored change: user:updated ---- */

typedef struct profile_out {
    chat_call *c;
    json_t *user;   /* the stored user after the change (owned) */
    chat_buf rooms; /* the user's room ids, comma-separated */
    int pending;    /* the cache drop and the room list, not answered yet */
} profile_out;

/* The cache no longer holds the old profile and the rooms are known: tell everyone, answer. */
static void profile_announce(profile_out *p)
{
    chat_call *c = p->c;
    chat_runtime *rt = c->rt;
    json_t *pub = chat__public_user(p->user, 0);
    if (pub && p->rooms.len && !chat__buf_terminate(&p->rooms)) {
        char except[32]; /* the user's own sockets get it once, below */
        snprintf(except, sizeof except, "u:%s", c->user_id);
        chat__fanout_rooms(rt, USERS_CHANNEL, (const char *)p->rooms.data, except,
                           "user:updated", pub);
    }
    if (pub) {
        chat__notify_user(rt, c->user_id,
                          json_pack("{s:s,s:s,s:[O]}", "op", "emit", "event", "user:updated",
                                    "args", pub));
        chat__notify_hook(rt, "user/updated",
                          json_pack("{s:O,s:O}", "user", pub, "changes", c->input));
    }
    json_decref(pub);
    chat__call_done(c, json_pack("{s:o}", "user", chat__public_user(p->user, 1)));
    json_decref(p->user);
    chat__buf_free(&p->rooms);
    free(p);
}

static void profile_cache_dropped(int status, const char *value, int64_t number, void *arg)
{
    profile_out *p = arg;
    (void)value;
    (void)number;
    if (status) { /* Redis is down: an old copy there may outlive the change (its TTL) */
        chat__log(CHAT_LOG_WARN, "user_cache_drop_failed",
                  "could not replace the cached copy of a changed profile",
                  json_pack("{s:s,s:s}", "user", p->c->user_id, "code", chat_errcode(status)));
    }
    if (--p->pending == 0) {
        profile_announce(p);
    }
}

static void profile_rooms(int status, json_t *rooms, void *arg)
{
    profile_out *p = arg;
    for (size_t i = 0; status == 0 && i < json_array_size(rooms); i++) {
        const char *id = json_string_value(json_object_get(json_array_get(rooms, i), "id"));
        if (id && strlen(id) == 24 &&
            ((p->rooms.len && chat__buf_appendc(&p->rooms, ',')) ||
             chat__buf_append(&p->rooms, id, 24))) {
            status = CHAT_ENOMEM;
        }
    }
    if (status) { /* the change is stored: it is answered, only the rooms are not told */
        chat__buf_free(&p->rooms);
        chat__log(CHAT_LOG_WARN, "user_update_rooms_failed",
                  "could not load the rooms of a user whose profile changed; they are not told",
                  json_pack("{s:s,s:s}", "user", p->c->user_id, "code", chat_errcode(status)));
    }
    json_decref(rooms);
    if (--p->pending == 0) {
        profile_announce(p);
    }
}

static void me_updated(int status, json_t *user, void *arg)
{
    chat_call *c = arg;
    if (status) {
        json_decref(user);
        chat__call_fail(c, status == CHAT_ENOTFOUND ? CHAT_EUNAUTHORIZED : status,
                        status == CHAT_ENOTFOUND ? "this account no longer exists" : NULL);
        return;
    }
    profile_out *p = calloc(1, sizeof *p);
    if (!p) {
        chat__users_changed(c->rt, c->user_id);
        chat__call_done(c, json_pack("{s:o}", "user", chat__public_user(user, 1)));
        json_decref(user);
        return;
    }
    p->c = c;
    p->user = user;
    p->pending = 1; /* held until both are asked */
    if (cache_on(c->rt)) {
        p->pending++;
        cache_hold(c->rt, c->user_id, profile_cache_dropped, p); /* answers exactly once */
    }
    p->pending++;
    if (chat__store_call(c->rt->store, CHAT_STORE_ROOMS_FOR_USER,
                         json_pack("{s:s}", "userId", c->user_id), profile_rooms, p)) {
        profile_rooms(CHAT_EUNAVAIL, NULL, p);
    }
    if (--p->pending == 0) {
        profile_announce(p);
    }
}

static void profile_store(chat_call *c)
{
    json_t *arg = json_deep_copy(c->input);
    json_object_set_new(arg, "id", json_string(c->user_id));
    chat__call_store(c, CHAT_STORE_USER_UPDATE, arg, me_updated);
}

static void profile_allowed(chat_call *c, json_t *ev)
{
    const char *problem = NULL;
    json_t *changes = json_object_get(ev, "changes");
    json_t *checked = json_is_object(changes) ? take_changes(changes, &problem) : NULL;
    if (!checked) {
        chat__call_fail(c, CHAT_EINVAL, problem ? problem : "a policy removed the changes");
        return;
    }
    json_decref(c->input);
    c->input = checked;
    const char *avatar = json_string_value(json_object_get(checked, "avatar"));
    if (avatar && strncmp(avatar, "/uploads/", 9) == 0) {
        chat__avatar_share(c, avatar + 9, profile_store); /* own picture, then readable by all */
        return;
    }
    profile_store(c);
}

static void rest_me_patch(chat_http_req *req, const char *user_id)
{
    json_error_t jerr;
    json_t *body =
        req->body.len ? json_loadb((const char *)req->body.data, req->body.len, 0, &jerr) : NULL;
    const char *problem = "the body must be a JSON object in UTF-8";
    json_t *changes = json_is_object(body) ? take_changes(body, &problem) : NULL;
    json_decref(body);
    if (!changes) {
        chat__http_respond_error(req, CHAT_EINVAL, problem);
        return;
    }
    chat_call *c = chat__call_from_req(req, user_id, 200);
    if (!c) {
        json_decref(changes);
        return;
    }
    c->input = changes;
    json_t *ev = json_pack("{s:o,s:O}", "user", chat__call_user_json(c), "changes", changes);
    chat__call_hook(c, "user/update", ev, profile_allowed);
}

static const chat_http_route user_routes[] = {
    {CHAT_HTTP_PATCH, "/me", 1, rest_me_patch},
    {CHAT_HTTP_GET, "/users", 1, rest_users},
    {CHAT_HTTP_GET, "/users/*", 1, rest_user_get},
};

int chat__users_start(chat_runtime *rt)
{
    return chat__http_routes_add(rt, user_routes, sizeof user_routes / sizeof user_routes[0]);
}
