/* cluster.c: the nodes' heartbeat and their shared operations on the bus (cluster.h). */
#include "cluster.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "rt.h"
#include "script.h"

#ifndef CHAT_VERSION
#define CHAT_VERSION "0.0.0"
#endif

#define RATE_WINDOW 10 /* seconds of samples for messagesPerSecond */
#define OP_TABLES 8

typedef struct node_seen {
    char id[CHAT_NODE_ID_MAX];
    json_t *stats;
    uint64_t seen; /* uv_now */
} node_seen;

struct chat_cluster {
    chat_runtime *rt;
    uv_timer_t beat;
    int stopped;
    chat_map nodes; /* id -> node_seen (other nodes) */
    const chat_cluster_op *ops[OP_TABLES];
    size_t nops[OP_TABLES];
    int ntables;
    int64_t started_ms;
    uint64_t stored[RATE_WINDOW + 1]; /* messages_stored, one sample per beat */
    int nsamples, sample;
};

static const char *const hello_op = "hello";

/* ---- stats ---- */

static double messages_per_second(chat_cluster *c)
{
    if (c->nsamples < 2) {
        return 0;
    }
    int newest = (c->sample + RATE_WINDOW) % (RATE_WINDOW + 1);
    int span = c->nsamples - 1;
    int oldest = (newest - span + RATE_WINDOW + 1) % (RATE_WINDOW + 1);
    return (double)(c->stored[newest] - c->stored[oldest]) / span;
}

json_t *chat__cluster_node_stats(chat_runtime *rt)
{
    chat_cluster *c = rt->cluster;
    int version = 0;
    unsigned long reloads, failures, errors;
    chat__script_stats(rt->script, &version, &reloads, &failures, &errors);
    return json_pack("{s:s,s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:f,s:i,s:s,s:s,s:s}", "id", rt->node_id,
                     "version", CHAT_VERSION, "startedAt", (json_int_t)(c ? c->started_ms : 0),
                     "at", (json_int_t)chat__now_ms(), "connections",
                     (json_int_t)rt->sessions.len, "usersOnline", (json_int_t)rt->users.len,
                     "roomsActive", (json_int_t)rt->rooms.len, "messagesStored",
                     (json_int_t)rt->stats.messages_stored, "messagesPerSecond",
                     c ? messages_per_second(c) : 0.0, "scriptsVersion", version, "scriptsHash",
                     chat__script_hash(rt->script), "bus", chat__bus_backend_name(rt->bus), "kv",
                     chat__kv_backend_name(rt->kv));
}

static int cmp_id(const void *a, const void *b)
{
    return strcmp(json_string_value(json_object_get(*(json_t *const *)a, "id")),
                  json_string_value(json_object_get(*(json_t *const *)b, "id")));
}

/* Drops nodes not heard from in CHAT_CLUSTER_DEAD_MS. */
static void prune(chat_cluster *c)
{
    uint64_t now = uv_now(c->rt->loop);
    node_seen *n;
    for (size_t i = 0; (n = chat__map_next(&c->nodes, &i));) {
        if (now - n->seen > CHAT_CLUSTER_DEAD_MS) {
            chat__log(CHAT_LOG_WARN, "node_gone", "a node stopped sending its heartbeat",
                      json_pack("{s:s}", "node", n->id));
            chat__map_del(&c->nodes, n->id);
            json_decref(n->stats);
            free(n);
            i = 0; /* the map changed: start over */
        }
    }
}

json_t *chat__cluster_nodes(chat_runtime *rt)
{
    chat_cluster *c = rt->cluster;
    json_t *all[256];
    size_t n = 0;
    all[n++] = chat__cluster_node_stats(rt);
    if (c) {
        prune(c);
        node_seen *s;
        for (size_t i = 0; (s = chat__map_next(&c->nodes, &i)) && n < 256;) {
            all[n++] = json_incref(s->stats);
        }
    }
    qsort(all, n, sizeof all[0], cmp_id);
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) {
        json_array_append_new(arr, all[i]);
    }
    return arr;
}

size_t chat__cluster_size(chat_runtime *rt)
{
    if (!rt->cluster) {
        return 1;
    }
    prune(rt->cluster);
    return 1 + rt->cluster->nodes.len;
}

/* ---- the channel ---- */

int chat__cluster_publish(chat_runtime *rt, const char *op, json_t *msg)
{
    json_t *m = msg ? json_deep_copy(msg) : json_object();
    if (!m || json_object_set_new(m, "op", json_string(op)) ||
        json_object_set_new(m, "from", json_string(rt->node_id))) {
        json_decref(m);
        return CHAT_ENOMEM;
    }
    char *text = json_dumps(m, JSON_COMPACT);
    json_decref(m);
    if (!text) {
        return CHAT_ENOMEM;
    }
    int rc = chat__bus_publish(rt->bus, CHAT_CLUSTER_CHANNEL, text, strlen(text));
    free(text);
    return rc;
}

static void say_hello(chat_runtime *rt);

static void on_hello(chat_cluster *c, const char *from, json_t *msg)
{
    json_t *stats = json_object_get(msg, "stats");
    if (!json_is_object(stats) || strlen(from) >= CHAT_NODE_ID_MAX) {
        return;
    }
    node_seen *n = chat__map_get(&c->nodes, from);
    if (!n) {
        n = calloc(1, sizeof *n);
        if (!n) {
            return;
        }
        snprintf(n->id, sizeof n->id, "%s", from);
        if (chat__map_put(&c->nodes, n->id, n)) {
            free(n);
            return;
        }
        chat__log(CHAT_LOG_INFO, "node_seen", "a node joined the cluster",
                  json_pack("{s:s}", "node", from));
        /* answer at once, so the newcomer knows this node without waiting a beat */
        if (!c->stopped) {
            say_hello(c->rt);
        }
    }
    json_decref(n->stats);
    n->stats = json_incref(stats);
    n->seen = uv_now(c->rt->loop);
}

void chat__cluster_bus_message(chat_runtime *rt, const char *data, size_t len)
{
    chat_cluster *c = rt->cluster;
    if (!c) {
        return;
    }
    json_t *msg = json_loadb(data, len, 0, NULL);
    const char *op = json_string_value(json_object_get(msg, "op"));
    const char *from = json_string_value(json_object_get(msg, "from"));
    if (!op || !from) {
        chat__log(CHAT_LOG_WARN, "cluster_bad_message", "ignored a malformed cluster message",
                  NULL);
        json_decref(msg);
        return;
    }
    if (strcmp(op, hello_op) == 0) {
        if (strcmp(from, rt->node_id) != 0) {
            on_hello(c, from, msg);
        }
        json_decref(msg);
        return;
    }
    for (int t = 0; t < c->ntables; t++) {
        for (size_t i = 0; i < c->nops[t]; i++) {
            if (strcmp(c->ops[t][i].op, op) == 0) {
                c->ops[t][i].fn(rt, msg);
                json_decref(msg);
                return;
            }
        }
    }
    chat__log(CHAT_LOG_DEBUG, "cluster_unknown_op", "ignored a cluster op this node lacks",
              json_pack("{s:s,s:s}", "op", op, "from", from));
    json_decref(msg);
}

int chat__cluster_handle(chat_runtime *rt, const chat_cluster_op *ops, size_t n)
{
    chat_cluster *c = rt->cluster;
    if (!c || c->ntables == OP_TABLES) {
        return CHAT_ENOMEM;
    }
    c->ops[c->ntables] = ops;
    c->nops[c->ntables++] = n;
    return 0;
}

static void say_hello(chat_runtime *rt)
{
    json_t *msg = json_pack("{s:o}", "stats", chat__cluster_node_stats(rt));
    if (msg) {
        chat__cluster_publish(rt, hello_op, msg);
    }
    json_decref(msg);
}

static void beat(uv_timer_t *t)
{
    chat_cluster *c = t->data;
    chat_runtime *rt = c->rt;
    c->stored[c->sample] = rt->stats.messages_stored;
    c->sample = (c->sample + 1) % (RATE_WINDOW + 1);
    if (c->nsamples < RATE_WINDOW + 1) {
        c->nsamples++;
    }
    prune(c);
    say_hello(rt);
}

void chat__cluster_beat_now(chat_runtime *rt)
{
    chat_cluster *c = rt->cluster;
    if (c && !c->stopped) {
        say_hello(rt);
    }
}

int chat__cluster_start(chat_runtime *rt)
{
    chat_cluster *c = calloc(1, sizeof *c);
    if (!c) {
        return CHAT_ENOMEM;
    }
    c->rt = rt;
    c->started_ms = chat__now_ms();
    if (chat__bus_subscribe(rt->bus, CHAT_CLUSTER_CHANNEL)) {
        free(c);
        return CHAT_ENOMEM;
    }
    rt->cluster = c;
    uv_timer_init(rt->loop, &c->beat);
    c->beat.data = c;
    uv_timer_start(&c->beat, beat, 0, CHAT_CLUSTER_BEAT_MS);
    uv_unref((uv_handle_t *)&c->beat); /* the heartbeat alone keeps no loop running */
    return 0;
}

void chat__cluster_stop(chat_runtime *rt)
{
    chat_cluster *c = rt->cluster;
    if (!c || c->stopped) {
        return;
    }
    c->stopped = 1;
    uv_timer_stop(&c->beat);
    uv_close((uv_handle_t *)&c->beat, NULL);
}

void chat__cluster_free(chat_runtime *rt)
{
    chat_cluster *c = rt->cluster;
    if (!c) {
        return;
    }
    node_seen *n;
    for (size_t i = 0; (n = chat__map_next(&c->nodes, &i));) {
        json_decref(n->stats);
        free(n);
    }
    chat__map_free(&c->nodes);
    free(c);
    rt->cluster = NULL;
}
