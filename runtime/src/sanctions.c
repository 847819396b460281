/* sanctions.c: disabled accounts, bans and mutes (sanctions.h), applied on every node through
 * the cluster ops "sanction", "kick" and "notify". */
#include "sanctions.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cluster.h"
#include "log.h"
#include "rt.h"
#include "sock.h"

#define REDIS_HASH "chatd:sanctions"

static const char *const kind_names[] = {"disable", "ban", "mute"};

typedef struct entry {
    char key[80]; /* "kind:room:user" */
    json_t *s;
} entry;

typedef struct chat_sanctions {
    chat_map map;
    char path[4096]; /* the file, when Redis is not configured */
    int redis;
} chat_sanctions;

static chat_sanctions *of(chat_runtime *rt) { return rt->sanctions; }

static int kind_of(const char *name)
{
    for (int i = 0; i < 3; i++) {
        if (name && strcmp(name, kind_names[i]) == 0) {
            return i;
        }
    }
    return -1;
}

static void make_key(char out[80], int kind, const char *room, const char *user)
{
    snprintf(out, 80, "%s:%s:%s", kind_names[kind], room, user);
}

static int expired(const json_t *s, int64_t now)
{
    json_t *until = json_object_get(s, "until");
    return json_is_integer(until) && json_integer_value(until) <= now;
}

/* ---- persistence ---- */

static json_t *all_entries(chat_sanctions *ss)
{
    json_t *arr = json_array();
    int64_t now = chat__now_ms();
    entry *e;
    for (size_t i = 0; (e = chat__map_next(&ss->map, &i));) {
        if (!expired(e->s, now)) {
            json_array_append(arr, e->s);
        }
    }
    return arr;
}

/* The file: written whole to a temporary name, then renamed over the old one. */
static void save_file(chat_sanctions *ss)
{
    json_t *arr = all_entries(ss);
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", ss->path);
    int rc = arr ? json_dump_file(arr, tmp, JSON_INDENT(1)) : -1;
    json_decref(arr);
    if (rc || rename(tmp, ss->path)) {
        chat__log(CHAT_LOG_ERROR, "sanctions_save_failed",
                  "could not write the sanctions file; they hold until this node restarts",
                  json_pack("{s:s,s:s}", "path", ss->path, "error", strerror(errno)));
    }
}

static void redis_done(int status, json_t *reply, void *arg)
{
    (void)arg;
    if (status) {
        chat__log(CHAT_LOG_ERROR, "sanctions_save_failed",
                  "could not write a sanction to Redis; nodes that start later miss it",
                  json_pack("{s:s}", "error", json_string_value(reply) ? json_string_value(reply)
                                                                         : "unavailable"));
    }
    json_decref(reply);
}

/* One entry's change, by the node that made it (the others only apply it). */
static void persist(chat_runtime *rt, const char *key, const json_t *s)
{
    chat_sanctions *ss = of(rt);
    if (!ss->redis) {
        save_file(ss);
        return;
    }
    char *text = s ? json_dumps(s, JSON_COMPACT) : NULL;
    const char *argv[4] = {s ? "HSET" : "HDEL", REDIS_HASH, key, text};
    chat__kv_redis_command(rt->kv, s ? 4 : 3, argv, NULL, redis_done, NULL);
    free(text);
}

static void put(chat_sanctions *ss, const json_t *s)
{
    int kind = kind_of(json_string_value(json_object_get(s, "kind")));
    const char *room = json_string_value(json_object_get(s, "roomId"));
    const char *user = json_string_value(json_object_get(s, "userId"));
    if (kind < 0 || !user) {
        return;
    }
    char key[80];
    make_key(key, kind, room ? room : CHAT_SANCTION_EVERYWHERE, user);
    entry *e = chat__map_get(&ss->map, key);
    if (!e) {
        e = calloc(1, sizeof *e);
        if (!e) {
            return;
        }
        snprintf(e->key, sizeof e->key, "%s", key);
        if (chat__map_put(&ss->map, e->key, e)) {
            free(e);
            return;
        }
    }
    json_decref(e->s);
    e->s = json_deep_copy(s);
}

static void drop(chat_sanctions *ss, const char *key)
{
    entry *e = chat__map_del(&ss->map, key);
    if (e) {
        json_decref(e->s);
        free(e);
    }
}

static void load_array(chat_sanctions *ss, json_t *arr)
{
    size_t i;
    json_t *s;
    int64_t now = chat__now_ms();
    json_array_foreach(arr, i, s)
    {
        if (json_is_object(s) && !expired(s, now)) {
            put(ss, s);
        }
    }
}

static void redis_loaded(int status, json_t *reply, void *arg)
{
    chat_runtime *rt = arg;
    chat_sanctions *ss = of(rt);
    if (status || !ss) {
        chat__log(CHAT_LOG_WARN, "sanctions_load_failed",
                  "could not read the sanctions from Redis; this node starts without them",
                  NULL);
        json_decref(reply);
        return;
    }
    /* HGETALL: [field, value, field, value, ...] */
    json_t *arr = json_array();
    for (size_t i = 1; i < json_array_size(reply); i += 2) {
        json_t *s = json_loads(json_string_value(json_array_get(reply, i)), 0, NULL);
        if (s) {
            json_array_append_new(arr, s);
        }
    }
    load_array(ss, arr);
    json_decref(arr);
    json_decref(reply);
}

/* ---- effects on this node ---- */

/* The user's sockets on this node, referenced (so closing one cannot free another). A walk
 * over every socket here: sanctions are rare, and the domain keeps its per-user index. */
static size_t local_socks(chat_runtime *rt, const char *user_id, chat_sock **out, size_t max)
{
    size_t n = 0;
    chat_sock *k;
    for (size_t i = 0; n < max && (k = chat__map_next(&rt->socks, &i));) {
        if (strcmp(k->user_id, user_id) == 0) {
            out[n] = k;
            chat__sock_ref(out[n++]);
        }
    }
    return n;
}

static void emit_local(chat_runtime *rt, const char *user_id, json_t *note, int disconnect,
                       const char *reason)
{
    chat_sock *socks[64];
    size_t n = local_socks(rt, user_id, socks, 64);
    for (size_t i = 0; i < n; i++) {
        if (note) {
            chat__sock_emit(socks[i], "moderation", note);
        }
        if (disconnect) {
            chat__sock_disconnect(socks[i], reason);
        }
        chat__sock_unref(socks[i]);
    }
}

/* What the user is told: the sanction without who imposed it. */
static json_t *note_of(const char *action, const json_t *s)
{
    json_t *room = json_object_get(s, "roomId");
    json_t *until = json_object_get(s, "until");
    json_t *reason = json_object_get(s, "reason");
    return json_pack("{s:s,s:O,s:O,s:O}", "action", action, "roomId", room ? room : json_null(),
                     "until", until ? until : json_null(), "reason",
                     reason ? reason : json_null());
}

static void op_sanction(chat_runtime *rt, json_t *msg)
{
    chat_sanctions *ss = of(rt);
    const char *action = json_string_value(json_object_get(msg, "action"));
    json_t *s = json_object_get(msg, "sanction");
    int kind = kind_of(json_string_value(json_object_get(s, "kind")));
    const char *user = json_string_value(json_object_get(s, "userId"));
    const char *room = json_string_value(json_object_get(s, "roomId"));
    int mine = strcmp(json_string_value(json_object_get(msg, "from")), rt->node_id) == 0;
    if (!ss || !action || kind < 0 || !user || strlen(user) != 24) {
        return;
    }
    char key[80];
    make_key(key, kind, room ? room : CHAT_SANCTION_EVERYWHERE, user);
    int set = strcmp(action, "set") == 0;
    if (set) {
        put(ss, s);
    } else {
        drop(ss, key);
    }
    if (mine) {
        persist(rt, key, set ? s : NULL);
    }
    static const char *const set_words[] = {"disabled", "banned", "muted"};
    static const char *const lift_words[] = {"enabled", "unbanned", "unmuted"};
    json_t *note = note_of(set ? set_words[kind] : lift_words[kind], s);
    /* a disabled account or a ban everywhere ends the user's sockets on every node */
    int cut = set && (kind == CHAT_SANCTION_DISABLE || (kind == CHAT_SANCTION_BAN && !room));
    emit_local(rt, user, note, cut, set_words[kind]);
    json_decref(note);
}

static void op_kick(chat_runtime *rt, json_t *msg)
{
    const char *user = json_string_value(json_object_get(msg, "userId"));
    if (user) {
        json_t *note = note_of("kicked", msg);
        emit_local(rt, user, note, 1, "kicked");
        json_decref(note);
    }
}

static void op_notify(chat_runtime *rt, json_t *msg)
{
    const char *user = json_string_value(json_object_get(msg, "userId"));
    json_t *note = json_object_get(msg, "note");
    if (user && json_is_object(note)) {
        emit_local(rt, user, note, 0, NULL);
    }
}

static const chat_cluster_op ops[] = {
    {"sanction", op_sanction},
    {"kick", op_kick},
    {"notify", op_notify},
};

/* ---- the API ---- */

/* http.c asks before it serves a token's user (rt->http_user_refused). */
static int refused_rest(chat_runtime *rt, const char *user_id, char *why, size_t len)
{
    const json_t *s = chat__sanction_find(rt, CHAT_SANCTION_DISABLE, NULL, user_id);
    if (s) {
        chat__sanction_describe(s, why, len);
    }
    return s != NULL;
}

int chat__sanctions_start(chat_runtime *rt)
{
    chat_sanctions *ss = calloc(1, sizeof *ss);
    if (!ss) {
        return CHAT_ENOMEM;
    }
    rt->sanctions = ss;
    ss->redis = strcmp(chat__kv_backend_name(rt->kv), "redis") == 0;
    if (ss->redis) {
        const char *argv[] = {"HGETALL", REDIS_HASH};
        if (chat__kv_redis_command(rt->kv, 2, argv, NULL, redis_loaded, rt)) {
            chat__log(CHAT_LOG_WARN, "sanctions_load_failed",
                      "Redis is down: this node starts without the sanctions made before", NULL);
        }
    } else {
        snprintf(ss->path, sizeof ss->path, "%s/sanctions.json", rt->cfg.data_dir);
        json_error_t jerr;
        json_t *arr = json_load_file(ss->path, 0, &jerr);
        if (arr) {
            load_array(ss, arr);
        } else if (access(ss->path, F_OK) == 0) {
            chat__log(CHAT_LOG_ERROR, "sanctions_load_failed",
                      "the sanctions file is not valid JSON; starting without it",
                      json_pack("{s:s,s:s}", "path", ss->path, "error", jerr.text));
        }
        json_decref(arr);
    }
    rt->http_user_refused = refused_rest;
    return chat__cluster_handle(rt, ops, sizeof ops / sizeof ops[0]);
}

void chat__sanctions_free(chat_runtime *rt)
{
    chat_sanctions *ss = of(rt);
    if (!ss) {
        return;
    }
    entry *e;
    for (size_t i = 0; (e = chat__map_next(&ss->map, &i));) {
        json_decref(e->s);
        free(e);
    }
    chat__map_free(&ss->map);
    free(ss);
    rt->sanctions = NULL;
}

const json_t *chat__sanction_find(chat_runtime *rt, chat_sanction_kind kind, const char *room,
                                  const char *user_id)
{
    chat_sanctions *ss = of(rt);
    if (!ss || !ss->map.len || !user_id || !user_id[0]) {
        return NULL;
    }
    int64_t now = chat__now_ms();
    for (int pass = 0; pass < 2; pass++) {
        const char *scope = pass == 0 && room ? room : CHAT_SANCTION_EVERYWHERE;
        char key[80];
        make_key(key, (int)kind, scope, user_id);
        entry *e = chat__map_get(&ss->map, key);
        if (e && !expired(e->s, now)) {
            return e->s;
        }
        if (e) {
            drop(ss, key); /* it ran out */
        }
        if (!room) {
            break;
        }
    }
    return NULL;
}

json_t *chat__sanctions_of(chat_runtime *rt, const char *user_id)
{
    json_t *arr = json_array();
    chat_sanctions *ss = of(rt);
    int64_t now = chat__now_ms();
    entry *e;
    for (size_t i = 0; ss && (e = chat__map_next(&ss->map, &i));) {
        const char *u = json_string_value(json_object_get(e->s, "userId"));
        if (u && strcmp(u, user_id) == 0 && !expired(e->s, now)) {
            json_array_append(arr, e->s);
        }
    }
    return arr;
}

int chat__sanction_set(chat_runtime *rt, chat_sanction_kind kind, const char *room,
                       const char *user_id, int64_t seconds, const char *reason, const char *by)
{
    int64_t now = chat__now_ms();
    json_t *msg = json_pack(
        "{s:s,s:{s:s,s:o,s:s,s:o,s:o,s:s,s:I}}", "action", "set", "sanction", "kind",
        kind_names[kind], "roomId", room ? json_string(room) : json_null(), "userId", user_id,
        "until", seconds > 0 ? json_integer(now + seconds * 1000) : json_null(), "reason",
        reason ? json_string(reason) : json_null(), "by", by, "at", (json_int_t)now);
    if (!msg) {
        return CHAT_ENOMEM;
    }
    int rc = chat__cluster_publish(rt, "sanction", msg);
    json_decref(msg);
    return rc;
}

int chat__sanction_lift(chat_runtime *rt, chat_sanction_kind kind, const char *room,
                        const char *user_id, const char *by)
{
    json_t *msg = json_pack("{s:s,s:{s:s,s:o,s:s,s:s}}", "action", "lift", "sanction", "kind",
                            kind_names[kind], "roomId", room ? json_string(room) : json_null(),
                            "userId", user_id, "by", by);
    if (!msg) {
        return CHAT_ENOMEM;
    }
    int rc = chat__cluster_publish(rt, "sanction", msg);
    json_decref(msg);
    return rc;
}

int chat__sanction_kick(chat_runtime *rt, const char *user_id, const char *reason,
                        const char *by)
{
    json_t *msg = json_pack("{s:s,s:o,s:n,s:s}", "userId", user_id, "reason",
                            reason ? json_string(reason) : json_null(), "roomId", "by", by);
    if (!msg) {
        return CHAT_ENOMEM;
    }
    int rc = chat__cluster_publish(rt, "kick", msg);
    json_decref(msg);
    return rc;
}

int chat__sanction_notify(chat_runtime *rt, const char *user_id, json_t *note)
{
    json_t *msg = json_pack("{s:s,s:O}", "userId", user_id, "note", note);
    if (!msg) {
        return CHAT_ENOMEM;
    }
    int rc = chat__cluster_publish(rt, "notify", msg);
    json_decref(msg);
    return rc;
}

void chat__sanction_describe(const json_t *s, char *out, size_t len)
{
    int kind = kind_of(json_string_value(json_object_get(s, "kind")));
    int room = json_is_string(json_object_get(s, "roomId"));
    json_t *until = json_object_get(s, "until");
    const char *reason = json_string_value(json_object_get(s, "reason"));
    char when[48] = "until an operator lifts it";
    if (json_is_integer(until)) {
        time_t secs = (time_t)(json_integer_value(until) / 1000);
        struct tm tm;
        gmtime_r(&secs, &tm);
        strftime(when, sizeof when, "until %Y-%m-%dT%H:%M:%SZ", &tm);
    }
    static const char *const what[] = {"this account is disabled", "you are banned",
                                       "you are muted"};
    snprintf(out, len, "%s%s %s%s%s", kind >= 0 ? what[kind] : "refused",
             kind == CHAT_SANCTION_DISABLE ? "" : room ? " in this room" : " everywhere", when,
             reason ? ": " : "", reason ? reason : "");
}
