/* reload.c: the cluster reload (reload.h). A reload started on any node (POST /admin/reload,
 * SIGHUP, a change in the scripts folder) brings every live node to the same scripts version,
 * or leaves every node on the old one. */
#include "reload.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cluster.h"
#include "log.h"
#include "rt.h"
#include "script.h"
#include "session.h"

#define RELOAD_VOTE_MS 2000   /* how long the initiator waits for every node's prepare */
#define RELOAD_COMMIT_MS 1000 /* ... and for their commits */

typedef struct reload reload;

struct chat_reload {
    chat_runtime *rt;
    reload *reloads;      /* started here, waiting for votes or commits */
    char prepared_id[24]; /* the cluster reload this node prepared for */
    int64_t prepared_key; /* ... its start (ms) and starter: a newer one wins */
    char prepared_from[CHAT_NODE_ID_MAX];
    char serving_dir[4200]; /* the published copy the served scripts came from, or "" */
    char prepared_dir[4200];
    uint64_t other_prepare_seen; /* uv_now of the last reload another node started */
    uv_timer_t catchup;          /* at start: load the cluster's published scripts */
    int catchup_tries;
    int stopped;
};

/* ---- the cluster reload ----
 * The node that starts it publishes reload_prepare; every node loads the new files without
 * serving them and votes (reload_vote, with file:line when they failed). With every live
 * node's yes, the starter publishes reload_commit and each node swaps in what it prepared, at
 * the same version; with any no, or a node that does not answer within RELOAD_VOTE_MS, it
 * publishes reload_abort and every node keeps its old scripts. */

struct reload {
    reload *next;
    chat_reload *a;
    char id[24];
    char by[40];
    chat_reload_cb cb;  /* who waits for the answer, or NULL: the log is the answer */
    void *cbarg;
    json_t *votes;      /* node -> {ok, version, hash, error} */
    json_t *done;       /* node -> {version, hash} */
    size_t expect;      /* live nodes when it started */
    int committing;
    int version;        /* the version every node takes */
    json_t *files;      /* what it sent (Redis): published once every node committed */
    json_t *nodes;      /* the live nodes' ids when it started */
    uv_timer_t timer;
};

static void reload_closed(uv_handle_t *h)
{
    reload *r = h->data;
    json_decref(r->votes);
    json_decref(r->done);
    json_decref(r->files);
    json_decref(r->nodes);
    free(r);
}

static void reload_finish(reload *r, int status, json_t *body)
{
    chat_reload *a = r->a;
    for (reload **p = &a->reloads; *p; p = &(*p)->next) {
        if (*p == r) {
            *p = r->next;
            break;
        }
    }
    if (r->cb) {
        r->cb(status, body, r->cbarg);
    } else { /* started by SIGHUP or the watcher: the log is the answer */
        json_t *nodes = json_object_get(body, "nodes");
        json_t *fields =
            json_pack("{s:s,s:O}", "reload", r->id, "nodes", nodes ? nodes : json_null());
        json_t *error = json_object_get(body, "error");
        json_object_set_new(fields, "by", json_string(r->by));
        json_object_set(fields, "error", error ? error : json_null());
        chat__log(status == 200 ? CHAT_LOG_INFO : CHAT_LOG_ERROR,
                  status == 200 ? "reload_done" : "reload_refused",
                  status == 200 ? "every node runs the new scripts"
                                : "the scripts were refused; every node keeps the old ones",
                  fields);
        json_decref(body);
    }
    uv_timer_stop(&r->timer);
    uv_close((uv_handle_t *)&r->timer, reload_closed);
}

static reload *reload_find(chat_reload *a, const char *id)
{
    for (reload *r = a ? a->reloads : NULL; r; r = r->next) {
        if (id && strcmp(r->id, id) == 0) {
            return r;
        }
    }
    return NULL;
}

static int cmp_key(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The nodes' results as an array sorted by node id. */
static json_t *node_results(json_t *by_node)
{
    json_t *arr = json_array();
    const char *keys[256];
    size_t n = 0;
    const char *node;
    json_t *v;
    json_object_foreach(by_node, node, v)
    {
        if (n < 256) {
            keys[n++] = node;
        }
    }
    qsort(keys, n, sizeof keys[0], cmp_key);
    for (size_t i = 0; i < n; i++) {
        json_t *row = json_deep_copy(json_object_get(by_node, keys[i]));
        json_object_set_new(row, "id", json_string(keys[i]));
        json_array_append_new(arr, row);
    }
    return arr;
}

static void reload_timeout(uv_timer_t *t);

static void reload_decide(reload *r, const char *missing)
{
    chat_runtime *rt = r->a->rt;
    json_t *abort_msg = NULL;
    const char *node;
    json_t *v;
    int all_ok = json_object_size(r->votes) >= r->expect && !missing;
    r->version = 0;
    json_object_foreach(r->votes, node, v)
    {
        all_ok &= json_is_true(json_object_get(v, "ok"));
        int ver = (int)json_integer_value(json_object_get(v, "version"));
        r->version = ver > r->version ? ver : r->version;
    }
    if (!all_ok) {
        abort_msg = json_pack("{s:s}", "id", r->id);
        chat__cluster_publish(rt, "reload_abort", abort_msg);
        json_decref(abort_msg);
        /* the message names each node's file:line */
        chat_buf why = CHAT_BUF_INIT;
        chat__buf_appendf(&why, "%s", missing ? missing : "the scripts failed to load; every "
                                                          "node keeps the old ones:");
        json_object_foreach(r->votes, node, v)
        {
            const char *e = json_string_value(json_object_get(v, "error"));
            if (e) {
                chat__buf_appendf(&why, " node %s: %s;", node, e);
            }
        }
        chat__buf_terminate(&why);
        json_t *body = json_pack("{s:b,s:{s:s,s:s},s:o}", "ok", 0, "error", "code",
                                 missing ? "unavailable" : "invalid_payload", "message",
                                 why.data ? (const char *)why.data : "refused", "nodes",
                                 node_results(r->votes));
        chat__buf_free(&why);
        reload_finish(r, missing ? 503 : 400, body);
        return;
    }
    r->committing = 1;
    json_t *msg = json_pack("{s:s,s:i}", "id", r->id, "version", r->version);
    uv_timer_start(&r->timer, reload_timeout, RELOAD_COMMIT_MS, 0);
    chat__cluster_publish(rt, "reload_commit", msg);
    json_decref(msg);
}

static void reload_timeout(uv_timer_t *t)
{
    reload *r = t->data;
    if (!r->committing) {
        char why[512];
        size_t n = (size_t)snprintf(why, sizeof why, "no answer in time from node");
        size_t i;
        json_t *id;
        json_array_foreach(r->nodes, i, id)
        {
            const char *s = json_string_value(id);
            if (s && !json_object_get(r->votes, s) && n < sizeof why) {
                n += (size_t)snprintf(why + n, sizeof why - n, " %s", s);
            }
        }
        if (n < sizeof why) {
            snprintf(why + n, sizeof why - n, "; every node keeps the old scripts (retry, or "
                                              "check the nodes: GET /admin/stats)");
        }
        reload_decide(r, why);
        return;
    }
    /* committed, but not every node confirmed: say which did */
    json_t *body = json_pack("{s:b,s:i,s:o,s:b}", "ok", 1, "version", r->version, "nodes",
                             node_results(r->done), "confirmed", 0);
    reload_finish(r, 200, body);
}

/* ---- the published copy ----
 * With Redis, the starter sends its scripts folder's files (the top level and bots/, what
 * the loader reads) in reload_prepare; each node writes them under
 * <data_dir>/published/<reload id>/ and loads that, so nodes whose own folders differ
 * still switch to one version with one hash. */
#define BUNDLE_MAX (4 << 20)

static int bundle_add_dir(json_t *files, const char *dir, const char *rel, size_t *total)
{
    char path[4200];
    snprintf(path, sizeof path, "%s%s%s", dir, rel[0] ? "/" : "", rel);
    DIR *d = opendir(path);
    if (!d) {
        return 0;
    }
    int rc = 0;
    for (struct dirent *e; !rc && (e = readdir(d));) {
        size_t n = strlen(e->d_name);
        if (e->d_name[0] == '.' || n < 5 || strcmp(e->d_name + n - 4, ".lua") != 0) {
            continue;
        }
        char file[8400], name[300];
        snprintf(file, sizeof file, "%s/%s", path, e->d_name);
        snprintf(name, sizeof name, "%s%s%s", rel, rel[0] ? "/" : "", e->d_name);
        FILE *f = fopen(file, "rb");
        chat_buf b = CHAT_BUF_INIT;
        char chunk[8192];
        for (size_t got; f && (got = fread(chunk, 1, sizeof chunk, f)) > 0;) {
            if (chat__buf_append(&b, chunk, got)) {
                rc = CHAT_ENOMEM;
                break;
            }
        }
        if (f) {
            fclose(f);
        }
        *total += b.len;
        if (!rc && *total > BUNDLE_MAX) {
            rc = CHAT_ETOOBIG;
        }
        if (!rc && f) {
            json_object_set_new(files, name, json_stringn_nocheck((const char *)b.data, b.len));
        }
        chat__buf_free(&b);
    }
    closedir(d);
    return rc;
}

/* A published file name: "x.lua" or "bots/x.lua" of [A-Za-z0-9._-], nothing else. */
static int safe_name(const char *name)
{
    const char *base = strncmp(name, "bots/", 5) == 0 ? name + 5 : name;
    if (!*base || base[0] == '.' || strlen(name) > 200) {
        return 0;
    }
    for (const char *p = base; *p; p++) {
        if (!isalnum((unsigned char)*p) && *p != '.' && *p != '_' && *p != '-') {
            return 0;
        }
    }
    return 1;
}

static void remove_dir(const char *dir)
{
    if (!dir[0]) {
        return;
    }
    for (int pass = 0; pass < 2; pass++) { /* bots/ first, then the top */
        char path[4300];
        snprintf(path, sizeof path, pass == 0 ? "%s/bots" : "%s", dir);
        DIR *d = opendir(path);
        for (struct dirent *e; d && (e = readdir(d));) {
            if (e->d_name[0] != '.') {
                char file[8400];
                snprintf(file, sizeof file, "%s/%s", path, e->d_name);
                unlink(file);
            }
        }
        if (d) {
            closedir(d);
        }
        rmdir(path);
    }
}

/* Writes the files under <data_dir>/published/<id>; 0 and dir set, or CHAT_E*. */
static int materialize(chat_runtime *rt, const char *id, json_t *files, char *dir, size_t len)
{
    char base[4200];
    int n = snprintf(base, sizeof base, "%s/published", rt->cfg.data_dir);
    if (n < 0 || (size_t)n >= sizeof base) {
        return CHAT_EINVAL;
    }
    n = snprintf(dir, len, "%s/%s", base, id);
    if (n < 0 || (size_t)n >= len) {
        return CHAT_EINVAL;
    }
    mkdir(base, 0700);
    if (mkdir(dir, 0700) && errno != EEXIST) {
        return CHAT_EINTERNAL;
    }
    char bots[4300];
    snprintf(bots, sizeof bots, "%s/bots", dir);
    const char *name;
    json_t *text;
    json_object_foreach(files, name, text)
    {
        if (!safe_name(name) || !json_is_string(text)) {
            return CHAT_EINVAL;
        }
        if (strncmp(name, "bots/", 5) == 0) {
            mkdir(bots, 0700);
        }
        char file[8400];
        snprintf(file, sizeof file, "%s/%s", dir, name);
        FILE *f = fopen(file, "wb");
        size_t tlen = json_string_length(text);
        if (!f || fwrite(json_string_value(text), 1, tlen, f) != tlen) {
            if (f) {
                fclose(f);
            }
            return CHAT_EINTERNAL;
        }
        fclose(f);
    }
    return 0;
}

/* (key, from) order: which of two reloads is the newer. */
static int newer(int64_t key, const char *from, int64_t than_key, const char *than_from)
{
    return key != than_key ? key > than_key : strcmp(from, than_from) > 0;
}

/* Every node: load the files, vote. */
static void op_prepare(chat_runtime *rt, json_t *msg)
{
    chat_reload *a = rt->reload;
    const char *id = json_string_value(json_object_get(msg, "id"));
    const char *from = json_string_value(json_object_get(msg, "from"));
    int64_t key = json_integer_value(json_object_get(msg, "key"));
    json_t *files = json_object_get(msg, "files");
    if (!a || !id || !from || !rt->script) {
        return;
    }
    if (strcmp(from, rt->node_id) != 0) {
        a->other_prepare_seen = uv_now(rt->loop);
    }
    char err[1024] = "";
    int rc = 0;
    if (a->prepared_id[0] && !newer(key, from, a->prepared_key, a->prepared_from)) {
        /* two reloads at once: the newer one wins everywhere, the older is refused */
        snprintf(err, sizeof err, "superseded by the newer reload %s from node %s",
                 a->prepared_id, a->prepared_from);
        rc = CHAT_ECONFLICT;
    } else {
        char dir[4200] = "";
        if (json_is_object(files)) {
            rc = materialize(rt, id, files, dir, sizeof dir);
            if (rc) {
                snprintf(err, sizeof err, "could not write the published scripts under %s",
                         dir);
            }
        }
        if (!rc) {
            rc = chat__script_prepare(rt->script, dir[0] ? dir : NULL, err, sizeof err);
        }
        if (a->prepared_dir[0] && strcmp(a->prepared_dir, a->serving_dir) != 0) {
            remove_dir(a->prepared_dir); /* what an older prepare wrote */
        }
        snprintf(a->prepared_dir, sizeof a->prepared_dir, "%s", rc ? "" : dir);
        if (rc && dir[0]) {
            remove_dir(dir);
        }
        snprintf(a->prepared_id, sizeof a->prepared_id, "%s", rc ? "" : id);
        snprintf(a->prepared_from, sizeof a->prepared_from, "%s", from);
        a->prepared_key = key;
    }
    json_t *vote = json_pack("{s:s,s:s,s:b,s:i,s:s,s:o}", "id", id, "to", from, "ok", rc == 0,
                             "version", rc ? 0 : chat__script_prepared_version(rt->script),
                             "hash", rc ? "" : chat__script_prepared_hash(rt->script), "error",
                             rc ? json_string(err) : json_null());
    chat__cluster_publish(rt, "reload_vote", vote);
    json_decref(vote);
}

static void op_vote(chat_runtime *rt, json_t *msg)
{
    const char *to = json_string_value(json_object_get(msg, "to"));
    reload *r = to && strcmp(to, rt->node_id) == 0
                    ? reload_find(rt->reload, json_string_value(json_object_get(msg, "id")))
                    : NULL;
    if (!r || r->committing) {
        return;
    }
    json_object_set_new(r->votes, json_string_value(json_object_get(msg, "from")),
                        json_pack("{s:O,s:O,s:O,s:O}", "ok", json_object_get(msg, "ok"),
                                  "version", json_object_get(msg, "version"), "hash",
                                  json_object_get(msg, "hash"), "error",
                                  json_object_get(msg, "error")));
    /* every live node's answer, so a refusal names each node that failed */
    if (json_object_size(r->votes) >= r->expect) {
        reload_decide(r, NULL);
    }
}

static void op_commit(chat_runtime *rt, json_t *msg)
{
    chat_reload *a = rt->reload;
    const char *id = json_string_value(json_object_get(msg, "id"));
    if (!a || !id || strcmp(a->prepared_id, id) != 0) {
        return; /* this node did not prepare that one (or a newer prepare replaced it) */
    }
    a->prepared_id[0] = 0;
    int rc = chat__script_commit(rt->script,
                                 (int)json_integer_value(json_object_get(msg, "version")));
    if (rc == 0 && strcmp(a->serving_dir, a->prepared_dir) != 0) {
        remove_dir(a->serving_dir); /* the copy the old scripts came from */
        memcpy(a->serving_dir, a->prepared_dir, sizeof a->serving_dir);
    }
    a->prepared_dir[0] = 0;
    int version = 0;
    unsigned long x, y, z;
    chat__script_stats(rt->script, &version, &x, &y, &z);
    json_t *done = json_pack("{s:s,s:s,s:b,s:i,s:s}", "id", id, "to",
                             json_string_value(json_object_get(msg, "from")), "ok", rc == 0,
                             "version", version, "hash", chat__script_hash(rt->script));
    chat__cluster_publish(rt, "reload_done", done);
    json_decref(done);
    chat__cluster_beat_now(rt); /* the others' stats show the new version at once */
}

static void op_abort(chat_runtime *rt, json_t *msg)
{
    chat_reload *a = rt->reload;
    const char *id = json_string_value(json_object_get(msg, "id"));
    if (a && id && strcmp(a->prepared_id, id) == 0) {
        a->prepared_id[0] = 0;
        chat__script_abort(rt->script);
        if (strcmp(a->prepared_dir, a->serving_dir) != 0) {
            remove_dir(a->prepared_dir);
        }
        a->prepared_dir[0] = 0;
    }
}

/* ---- the published version, for nodes that start later ----
 * Once every node committed, the starter stores what they run in Redis
 * (chatd:scripts:published {id, version, hash, files}); a node that starts loads it when its
 * own files differ, so it joins on the cluster's version rather than its folder's. */
#define PUBLISHED_KEY "chatd:scripts:published"

static void published_stored(int status, json_t *reply, void *arg)
{
    (void)arg;
    if (status) {
        chat__log(CHAT_LOG_WARN, "scripts_publish_failed",
                  "could not store the scripts in Redis; nodes that start later load their own "
                  "folder until the next reload",
                  NULL);
    }
    json_decref(reply);
}

static void publish_scripts(chat_runtime *rt, reload *r)
{
    if (!r->files) {
        return;
    }
    json_t *pub = json_pack("{s:s,s:i,s:s,s:O}", "id", r->id, "version", r->version, "hash",
                            chat__script_hash(rt->script), "files", r->files);
    char *text = pub ? json_dumps(pub, JSON_COMPACT) : NULL;
    json_decref(pub);
    const char *argv[] = {"SET", PUBLISHED_KEY, text};
    if (!text || chat__kv_redis_command(rt->kv, 3, argv, NULL, published_stored, NULL)) {
        published_stored(CHAT_EUNAVAIL, NULL, NULL);
    }
    free(text);
}

static void catchup_cb(uv_timer_t *t);

static void published_loaded(int status, json_t *reply, void *arg)
{
    chat_runtime *rt = arg;
    chat_reload *a = rt->reload;
    json_t *pub = json_is_string(reply) ? json_loads(json_string_value(reply), 0, NULL) : NULL;
    json_decref(reply);
    if (!a || a->stopped) {
        json_decref(pub);
        return;
    }
    if (status) { /* Redis not up yet: try again shortly */
        if (++a->catchup_tries < 60) {
            uv_timer_start(&a->catchup, catchup_cb, 500, 0);
        }
        return;
    }
    const char *id = json_string_value(json_object_get(pub, "id"));
    const char *hash = json_string_value(json_object_get(pub, "hash"));
    json_t *files = json_object_get(pub, "files");
    if (!pub || !id || !hash || !json_is_object(files) ||
        strcmp(hash, chat__script_hash(rt->script)) == 0 || a->prepared_id[0]) {
        json_decref(pub); /* nothing published, the same files, or a reload under way */
        return;
    }
    char dir[4200], err[1024] = "";
    int rc = materialize(rt, id, files, dir, sizeof dir);
    rc = rc ? rc : chat__script_prepare(rt->script, dir, err, sizeof err);
    rc = rc ? rc
            : chat__script_commit(rt->script,
                                  (int)json_integer_value(json_object_get(pub, "version")));
    if (rc) {
        remove_dir(dir);
        chat__log(CHAT_LOG_ERROR, "scripts_published_refused",
                  "the cluster's published scripts do not load here; this node serves its own "
                  "folder's",
                  json_pack("{s:s,s:s}", "hash", hash, "error", err));
    } else {
        remove_dir(a->serving_dir);
        snprintf(a->serving_dir, sizeof a->serving_dir, "%s", dir);
        chat__log(CHAT_LOG_INFO, "scripts_published_loaded",
                  "loaded the scripts the cluster runs (published in Redis), not this node's "
                  "folder's",
                  json_pack("{s:s,s:O}", "hash", hash, "version", json_object_get(pub, "version")));
        chat__cluster_beat_now(rt);
    }
    json_decref(pub);
}

static void catchup_cb(uv_timer_t *t)
{
    chat_runtime *rt = t->data;
    const char *argv[] = {"GET", PUBLISHED_KEY};
    if (chat__kv_redis_command(rt->kv, 2, argv, NULL, published_loaded, rt)) {
        published_loaded(CHAT_EUNAVAIL, NULL, rt);
    }
}

static void op_done(chat_runtime *rt, json_t *msg)
{
    const char *to = json_string_value(json_object_get(msg, "to"));
    reload *r = to && strcmp(to, rt->node_id) == 0
                    ? reload_find(rt->reload, json_string_value(json_object_get(msg, "id")))
                    : NULL;
    if (!r || !r->committing) {
        return;
    }
    json_object_set_new(r->done, json_string_value(json_object_get(msg, "from")),
                        json_pack("{s:O,s:O,s:O}", "ok", json_object_get(msg, "ok"), "version",
                                  json_object_get(msg, "version"), "hash",
                                  json_object_get(msg, "hash")));
    if (json_object_size(r->done) >= json_object_size(r->votes)) {
        publish_scripts(rt, r);
        json_t *body = json_pack("{s:b,s:i,s:o,s:b}", "ok", 1, "version", r->version, "nodes",
                                 node_results(r->done), "confirmed", 1);
        reload_finish(r, 200, body);
    }
}

static const chat_cluster_op reload_ops[] = {
    {"reload_prepare", op_prepare}, {"reload_vote", op_vote}, {"reload_commit", op_commit},
    {"reload_abort", op_abort},     {"reload_done", op_done},
};

static void reload_start(chat_runtime *rt, const char *by, chat_reload_cb cb, void *cbarg)
{
    chat_reload *a = rt->reload;
    reload *r = calloc(1, sizeof *r);
    if (!r || !(r->votes = json_object()) || !(r->done = json_object())) {
        if (r) {
            json_decref(r->votes);
            free(r);
        }
        if (cb) {
            cb(500, json_pack("{s:b,s:{s:s,s:s}}", "ok", 0, "error", "code", "internal",
                              "message", chat_strerror(CHAT_ENOMEM)),
               cbarg);
        }
        return;
    }
    r->a = a;
    char rnd[21];
    chat__random_id(rnd);
    snprintf(r->id, sizeof r->id, "%.20s", rnd);
    snprintf(r->by, sizeof r->by, "%s", by);
    r->cb = cb;
    r->cbarg = cbarg;
    json_t *live = chat__cluster_nodes(rt);
    r->nodes = json_array();
    size_t li;
    json_t *ln;
    json_array_foreach(live, li, ln)
    {
        json_array_append(r->nodes, json_object_get(ln, "id"));
    }
    json_decref(live);
    r->expect = json_array_size(r->nodes);
    r->next = a->reloads;
    a->reloads = r;
    uv_timer_init(rt->loop, &r->timer);
    r->timer.data = r;
    uv_timer_start(&r->timer, reload_timeout, RELOAD_VOTE_MS, 0);
    json_t *msg = json_pack("{s:s,s:s,s:I}", "id", r->id, "by", by, "key",
                            (json_int_t)chat__now_ms());
    if (strcmp(chat__bus_backend_name(rt->bus), "local") != 0) {
        /* other nodes may exist: they load this node's files, not their own */
        json_t *files = json_object();
        size_t total = 0;
        int rc = bundle_add_dir(files, rt->cfg.scripts_dir, "", &total);
        rc = rc ? rc : bundle_add_dir(files, rt->cfg.scripts_dir, "bots", &total);
        json_object_set_new(msg, "files", files);
        r->files = json_incref(files);
        if (rc) {
            json_t *body = json_pack("{s:b,s:{s:s,s:s}}", "ok", 0, "error", "code",
                                     chat_errcode(rc), "message",
                                     rc == CHAT_ETOOBIG ? "the scripts folder holds more than "
                                                          "4 MiB of .lua files"
                                                        : "could not read the scripts folder");
            json_decref(msg);
            reload_finish(r, chat_errstatus(rc), body);
            return;
        }
    }
    /* this node votes before publish returns; with one node, it all ends here */
    chat__cluster_publish(rt, "reload_prepare", msg);
    json_decref(msg);
}

void chat__reload_cluster(chat_runtime *rt, const char *by, chat_reload_cb cb, void *arg)
{
    if (rt->reload && !rt->reload->stopped) {
        reload_start(rt, by, cb, arg);
    } else if (cb) {
        cb(503, json_pack("{s:b,s:{s:s,s:s}}", "ok", 0, "error", "code", "unavailable", "message",
                          "the node is stopping; retry on another"),
           arg);
    }
}

/* A change on disk: this node starts a cluster reload, unless another node just started one
 * (an edit made on every node at once, as a ConfigMap update: one reload is enough). */
static void on_scripts_changed(void *arg)
{
    chat_runtime *rt = arg;
    chat_reload *a = rt->reload;
    if (a && a->other_prepare_seen && uv_now(rt->loop) - a->other_prepare_seen < 1000) {
        chat__log(CHAT_LOG_INFO, "reload_skipped",
                  "the scripts changed here while another node reloads the cluster; its "
                  "reload carries its own files",
                  NULL);
        return;
    }
    chat__reload_cluster(rt, "watcher", NULL, NULL);
}

/* ---- lifecycle ---- */

int chat__reload_start(chat_runtime *rt)
{
    chat_reload *a = calloc(1, sizeof *a);
    if (!a) {
        return CHAT_ENOMEM;
    }
    a->rt = rt;
    rt->reload = a;
    uv_timer_init(rt->loop, &a->catchup); /* closed by chat__reload_stop, whatever happens */
    a->catchup.data = rt;
    int rc = chat__cluster_handle(rt, reload_ops, sizeof reload_ops / sizeof reload_ops[0]);
    if (!rc && rt->script) {
        chat__script_on_change(rt->script, on_scripts_changed, rt);
    }
    if (!rc && rt->script && strcmp(chat__kv_backend_name(rt->kv), "redis") == 0) {
        uv_timer_start(&a->catchup, catchup_cb, 0, 0);
    }
    return rc;
}

void chat__reload_stop(chat_runtime *rt)
{
    chat_reload *a = rt->reload;
    if (!a || a->stopped) {
        return;
    }
    a->stopped = 1;
    uv_timer_stop(&a->catchup);
    uv_close((uv_handle_t *)&a->catchup, NULL);
    while (a->reloads) {
        json_t *body = json_pack("{s:b,s:{s:s,s:s}}", "ok", 0, "error", "code", "unavailable",
                                 "message", "the node is stopping; retry on another");
        reload_finish(a->reloads, 503, body);
    }
}

void chat__reload_free(chat_runtime *rt)
{
    free(rt->reload);
    rt->reload = NULL;
}
