/* stats.c: the runtime's metric families (one table of every name /metrics shows), the
 * measurement calls the other layers make, and the /metrics page. */
#include "stats.h"

#include <jansson.h>
#include <lua.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rt.h"

#ifndef CHAT_VERSION /* set by CMake from project(VERSION) */
#define CHAT_VERSION "0.0.0"
#endif

/* Redis reconnects by connection role, bumped on the loop of whichever runtime owns the
 * connection; process-wide like the connections' log lines. */
static const char *const redis_roles[] = {"bus-subscribe", "bus-publish", "kv", "other"};
#define REDIS_ROLES (sizeof redis_roles / sizeof redis_roles[0])
static _Atomic uint64_t redis_reconnects[REDIS_ROLES];

void chat__stats_redis_reconnect(const char *role)
{
    size_t i = 0;
    while (i < REDIS_ROLES - 1 && (!role || strcmp(role, redis_roles[i]) != 0)) {
        i++;
    }
    atomic_fetch_add(&redis_reconnects[i], 1);
}

static const char *const store_op_names[CHAT_STORE_NOPS] = {
    [CHAT_STORE_USER_CREATE] = "user_create",
    [CHAT_STORE_USER_BY_LOGIN] = "user_by_login",
    [CHAT_STORE_USER_GET] = "user_get",
    [CHAT_STORE_USER_SET_SEEN] = "user_set_seen",
    [CHAT_STORE_ROOM_CREATE] = "room_create",
    [CHAT_STORE_ROOM_GET] = "room_get",
    [CHAT_STORE_ROOM_ADD_MEMBER] = "room_add_member",
    [CHAT_STORE_ROOM_REMOVE_MEMBER] = "room_remove_member",
    [CHAT_STORE_ROOMS_FOR_USER] = "rooms_for_user",
    [CHAT_STORE_MESSAGE_INSERT] = "message_insert",
    [CHAT_STORE_MESSAGES_PAGE] = "messages_page",
    [CHAT_STORE_PING] = "ping",
    [CHAT_STORE_ROOMS_LIST] = "rooms_list",
    [CHAT_STORE_USERS_FIND] = "users_find",
};

struct chat_stats_reg {
    chat_metrics *reg;
    /* measured where they happen */
    chat_metric_series *msg_stored, *msg_acked;
    chat_metric *store_seconds, *hook_seconds, *errors;
    chat_metric_series *store_op[CHAT_STORE_NOPS];
    chat_metric_series *broadcast;
    /* copied from running totals at each scrape */
    chat_metric_series *sessions_open, *sessions_opened, *users, *rooms, *stored, *frames_out,
        *bad_packets, *store_pending, *scripts_version, *reloads, *reload_failures,
        *script_errors, *store_reconnects, *redis_reconnects[REDIS_ROLES];
    chat_metric_series *store_refused;
    chat_metric_series *reactions_refused;
};

#define COUNTER(name, help) chat__metric_new(m, CHAT_METRIC_COUNTER, name, help, NULL, NULL, 0)
#define GAUGE(name, help) chat__metric_new(m, CHAT_METRIC_GAUGE, name, help, NULL, NULL, 0)
#define ONE(f) chat__metric_series((f), NULL)

static int build_info(chat_metrics *m)
{
    chat_metric *f = chat__metric_new(m, CHAT_METRIC_GAUGE, "chatd_build_info",
                                      "Always 1; the labels name the build and its libraries.",
                                      NULL, NULL, 0);
    if (!f) {
        return CHAT_ENOMEM;
    }
    /* the one label-less series made at registration is replaced by the labelled one */
    char labels[512];
    snprintf(labels, sizeof labels,
             "version=\"%s\",lua=\"%s.%s.%s\",libuv=\"%s\",libwebsockets=\"%s\","
             "jansson=\"%s\"",
             CHAT_VERSION, LUA_VERSION_MAJOR, LUA_VERSION_MINOR, LUA_VERSION_RELEASE,
             uv_version_string(), lws_get_library_version(), JANSSON_VERSION);
    for (char *p = labels; *p; p++) {
        if (*p == ' ' || *p == '\\') { /* lws's version has a space and a git hash */
            *p = '-';
        }
    }
    chat_metric_series *s = chat__metric_series_raw(f, labels);
    if (!s) {
        return CHAT_ENOMEM;
    }
    chat__series_set(s, 1);
    chat__metric_drop_unlabelled(f);
    return 0;
}

int chat__stats_new(chat_runtime *rt)
{
    chat_stats_reg *st = calloc(1, sizeof *st);
    chat_metrics *m = chat__metrics_new();
    if (!st || !m) {
        free(st);
        chat__metrics_free(m);
        return CHAT_ENOMEM;
    }
    st->reg = m;
    rt->metrics = st;
    chat_metric *latency = chat__metric_new(
        m, CHAT_METRIC_HISTOGRAM, "chatd_message_latency_seconds",
        "message:send from its arrival to stage: stored (the store answered) or "
        "acknowledged (the ack was queued to the sender).",
        "stage", chat__metrics_latency_buckets, chat__metrics_latency_nbuckets);
    st->msg_stored = chat__metric_series(latency, "stored");
    st->msg_acked = chat__metric_series(latency, "acknowledged");
    st->store_seconds = chat__metric_new(m, CHAT_METRIC_HISTOGRAM, "chatd_store_call_seconds",
                                         "Store calls from queueing to their answer, by op.",
                                         "op", chat__metrics_latency_buckets,
                                         chat__metrics_latency_nbuckets);
    for (int op = 0; op < CHAT_STORE_NOPS && st->store_seconds; op++) {
        st->store_op[op] = chat__metric_series(st->store_seconds,
                                               store_op_names[op] ? store_op_names[op] : "other");
    }
    st->hook_seconds = chat__metric_new(
        m, CHAT_METRIC_HISTOGRAM, "chatd_hook_seconds",
        "Script hook chains from start to answer (waits for I/O included), by hook.", "hook",
        chat__metrics_latency_buckets, chat__metrics_latency_nbuckets);
    st->broadcast = ONE(chat__metric_new(
        m, CHAT_METRIC_HISTOGRAM, "chatd_broadcast_recipients",
        "Local sockets one room or user broadcast reached on this node.", NULL,
        chat__metrics_count_buckets, chat__metrics_count_nbuckets));
    st->errors = chat__metric_new(m, CHAT_METRIC_COUNTER, "chatd_errors_total",
                                  "Error answers sent to clients (acks, error events and REST), "
                                  "by protocol code.",
                                  "code", NULL, 0);
    st->sessions_open = ONE(GAUGE("chatd_sessions_open", "Engine.IO sessions open on this node."));
    st->sessions_opened =
        ONE(COUNTER("chatd_sessions_opened_total", "Engine.IO sessions opened since start."));
    st->users = ONE(GAUGE("chatd_users_connected", "Users with at least one socket on this node."));
    st->rooms = ONE(GAUGE("chatd_rooms_active", "Rooms with subscribers on this node."));
    st->stored =
        ONE(COUNTER("chatd_messages_stored_total", "Messages stored through this node."));
    st->frames_out = ONE(COUNTER("chatd_frames_out_total", "Packets queued to clients."));
    st->bad_packets =
        ONE(COUNTER("chatd_bad_packets_total", "Malformed packets that closed a session."));
    st->store_pending = ONE(GAUGE("chatd_store_pending", "Store calls queued or running."));
    st->scripts_version =
        ONE(GAUGE("chatd_scripts_version", "Generation of the loaded scripts."));
    st->reloads =
        ONE(COUNTER("chatd_scripts_reloads_total", "Reloads that swapped in new scripts."));
    st->reload_failures = ONE(COUNTER("chatd_scripts_reload_failures_total",
                                      "Reloads refused: a file did not load."));
    st->script_errors = ONE(COUNTER("chatd_script_errors_total",
                                    "Hook calls that raised or ran out of budget."));
    st->store_reconnects = ONE(COUNTER(
        "chatd_store_reconnects_total",
        "Times the store answered again after being unavailable (in this process)."));
    chat_metric *redis = chat__metric_new(
        m, CHAT_METRIC_COUNTER, "chatd_redis_reconnects_total",
        "Redis connections re-established after a loss, by role (in this process).", "role",
        NULL, 0);
    for (size_t i = 0; i < REDIS_ROLES && redis; i++) {
        st->redis_reconnects[i] = chat__metric_series(redis, redis_roles[i]);
    }
    st->store_refused = ONE(COUNTER("chatd_store_refused_total",
                                    "Store calls refused at store_queue_max (answered unavailable)."));
    st->reactions_refused = ONE(COUNTER(
        "chatd_reactions_refused_total",
        "Reactions answered unavailable: reactions_waiting_max already waited for the message."));
    int rc = build_info(m);
    if (rc || !st->store_refused || !st->reactions_refused || chat__metrics_process_register(m) || !latency || !st->msg_stored ||
        !st->msg_acked || !st->store_seconds || !st->hook_seconds || !st->broadcast ||
        !st->errors || !st->sessions_open || !st->sessions_opened || !st->users || !st->rooms ||
        !st->stored || !st->frames_out || !st->bad_packets || !st->store_pending ||
        !st->scripts_version || !st->reloads || !st->reload_failures || !st->script_errors ||
        !st->store_reconnects || !redis) {
        chat__stats_free(rt);
        return CHAT_ENOMEM;
    }
    return 0;
}

void chat__stats_free(chat_runtime *rt)
{
    if (rt->metrics) {
        chat__metrics_free(rt->metrics->reg);
        free(rt->metrics);
        rt->metrics = NULL;
    }
}

void chat__stats_error(chat_runtime *rt, int err)
{
    if (rt && rt->metrics) {
        chat__metric_add(rt->metrics->errors, chat_errcode(err), 1);
    }
}

void chat__stats_store_call(chat_runtime *rt, int op, uint64_t start_ns)
{
    if (rt && rt->metrics && op >= 0 && op < CHAT_STORE_NOPS) {
        chat__series_observe(rt->metrics->store_op[op], chat__metrics_since(start_ns, uv_hrtime()));
    }
}

void chat__stats_store_observer(void *rt, int op, uint64_t start_ns)
{
    chat__stats_store_call(rt, op, start_ns);
}

void chat__stats_hook(chat_runtime *rt, const char *hook, uint64_t start_ns)
{
    if (rt && rt->metrics) {
        chat__metric_observe(rt->metrics->hook_seconds, hook,
                             chat__metrics_since(start_ns, uv_hrtime()));
    }
}

void chat__stats_broadcast(chat_runtime *rt, size_t recipients)
{
    if (rt && rt->metrics) {
        chat__series_observe(rt->metrics->broadcast, (double)recipients);
    }
}

void chat__stats_message(chat_runtime *rt, int acknowledged, uint64_t received_ns)
{
    if (rt && rt->metrics && received_ns) {
        chat__series_observe(acknowledged ? rt->metrics->msg_acked : rt->metrics->msg_stored,
                             chat__metrics_since(received_ns, uv_hrtime()));
    }
}

int chat__stats_page(chat_runtime *rt, int version, unsigned long reloads,
                     unsigned long failures, unsigned long errors, chat_buf *out)
{
    chat_stats_reg *st = rt->metrics;
    if (!st) {
        return CHAT_ENOMEM;
    }
    chat__series_set(st->sessions_open, (double)rt->sessions.len);
    chat__series_set(st->sessions_opened, (double)rt->stats.connections_total);
    chat__series_set(st->users, (double)rt->users.len);
    chat__series_set(st->rooms, (double)rt->rooms.len);
    chat__series_set(st->stored, (double)rt->stats.messages_stored);
    chat__series_set(st->frames_out, (double)rt->stats.frames_out);
    chat__series_set(st->bad_packets, (double)rt->stats.bad_packets);
    chat__series_set(st->store_pending, (double)chat__store_pending(rt->store));
    chat__series_set(st->store_refused, (double)chat__store_refused(rt->store));
    chat__series_set(st->reactions_refused, (double)rt->stats.reactions_refused);
    chat__series_set(st->scripts_version, version);
    chat__series_set(st->reloads, (double)reloads);
    chat__series_set(st->reload_failures, (double)failures);
    chat__series_set(st->script_errors, (double)errors);
    chat__series_set(st->store_reconnects, (double)chat__metrics_store_reconnects());
    for (size_t i = 0; i < REDIS_ROLES; i++) {
        chat__series_set(st->redis_reconnects[i], (double)atomic_load(&redis_reconnects[i]));
    }
    chat__metrics_process_update(st->reg);
    return chat__metrics_render(st->reg, out);
}
