/* ops.c: the operator's endpoints: /healthz, /readyz and /metrics (the admin API is admin.c), with
 * their routes, registered with http.c at start. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

#include "auth.h"
#include "bounds.h"
#include "domain_int.h"
#include "http.h"
#include "jobs.h"
#include "log.h"
#include "rt.h"
#include "script.h"
#include "stats.h"
#include "session.h"

static void healthz(chat_http_req *req, const char *user_id)
{
    (void)user_id;
    chat__http_respond_json(req, 200, json_pack("{s:b}", "ok", 1));
}

/* 200 when the store, the bus and the kv all answer; else 503 naming each one that failed,
 * e.g. {"ok":false,"error":{"code":"unavailable","message":"redis bus: down"},"checks":{..}} */
static void ready_checked(int status, json_t *result, void *arg)
{
    chat_http_req *req = arg;
    chat_runtime *rt = req->rt;
    json_decref(result);
    struct {
        const char *name;
        int status;
    } checks[] = {
        {"store", status},
        {"bus", chat__bus_ready(rt->bus)},
        {"kv", chat__kv_ready(rt->kv)},
    };
    json_t *summary = json_object();
    chat_buf failed = CHAT_BUF_INIT;
    for (size_t i = 0; i < sizeof checks / sizeof checks[0]; i++) {
        json_object_set_new(summary, checks[i].name, json_string(checks[i].status ? "down" : "ok"));
        if (checks[i].status) {
            chat__buf_appendf(&failed, "%s%s (%s): %s", failed.len ? "; " : "", checks[i].name,
                              i == 0   ? "store"
                              : i == 1 ? chat__bus_backend_name(rt->bus)
                                       : chat__kv_backend_name(rt->kv),
                              chat_strerror(checks[i].status));
        }
    }
    if (failed.len && !chat__buf_terminate(&failed)) {
        json_t *body = json_pack("{s:b,s:{s:s,s:s},s:o}", "ok", 0, "error", "code", "unavailable",
                                 "message", (const char *)failed.data, "checks", summary);
        chat__http_respond_json(req, 503, body);
    } else {
        chat__http_respond_json(req, 200, json_pack("{s:b,s:o}", "ok", 1, "checks", summary));
    }
    chat__buf_free(&failed);
    chat__http_req_unref(req);
}

static void readyz(chat_http_req *req, const char *user_id)
{
    (void)user_id;
    if (req->rt->stopping) { /* a load balancer stops sending new clients here */
        chat__http_respond_json(
            req, 503,
            json_pack("{s:b,s:{s:s,s:s}}", "ok", 0, "error", "code", "unavailable", "message",
                      "the server is shutting down; connect to another node"));
        return;
    }
    chat__http_req_ref(req);
    if (chat__store_call(req->rt->store, CHAT_STORE_PING, NULL, ready_checked, req)) {
        chat__http_respond_error(req, CHAT_EUNAVAIL, "store: not accepting work");
        chat__http_req_unref(req);
    }
}

static void metrics(chat_http_req *req, const char *user_id)
{
    (void)user_id;
    chat_runtime *rt = req->rt;
    chat_buf b = CHAT_BUF_INIT;
    int version = 0;
    unsigned long reloads = 0, failures = 0, errors = 0;
    chat__script_stats(rt->script, &version, &reloads, &failures, &errors);
    int rc = chat__stats_page(rt, version, reloads, failures, errors, &b);
    rc = rc ? rc : chat__buf_appendf(
        &b,
        "# HELP chatd_login_rate_limited_total Logins refused with 429: too many failures for "
        "the account, or from the client address.\n"
        "# TYPE chatd_login_rate_limited_total counter\n"
        "chatd_login_rate_limited_total{scope=\"account\"} %llu\n"
        "chatd_login_rate_limited_total{scope=\"ip\"} %llu\n"
        "# HELP chatd_register_rate_limited_total Registrations refused with 429: too many from "
        "the client address.\n"
        "# TYPE chatd_register_rate_limited_total counter\n"
        "chatd_register_rate_limited_total %llu\n"
        "# HELP chatd_presence_nodes_reaped_total Dead nodes (presence record expired) whose "
        "users this node took offline.\n"
        "# TYPE chatd_presence_nodes_reaped_total counter\n"
        "chatd_presence_nodes_reaped_total %llu\n"
        "# HELP chatd_presence_users_reaped_total Users this node announced offline because "
        "their node died.\n"
        "# TYPE chatd_presence_users_reaped_total counter\n"
        "chatd_presence_users_reaped_total %llu\n",
        (unsigned long long)rt->stats.login_limited_account,
        (unsigned long long)rt->stats.login_limited_ip,
        (unsigned long long)rt->stats.register_limited,
        (unsigned long long)rt->stats.presence_nodes_reaped,
        (unsigned long long)rt->stats.presence_users_reaped);
    uint64_t writes, batched, partial;
    chat__session_flush_stats(rt, &writes, &batched, &partial);
    rc = rc ? rc : chat__buf_appendf(
        &b,
        "# HELP chatd_ws_writes_total Websocket writes (one send() each unless the socket was full).\n"
        "# TYPE chatd_ws_writes_total counter\nchatd_ws_writes_total %llu\n"
        "# HELP chatd_ws_batched_writes_total Websocket writes that carried several frames.\n"
        "# TYPE chatd_ws_batched_writes_total counter\nchatd_ws_batched_writes_total %llu\n"
        "# HELP chatd_ws_partial_writes_total Websocket writes the socket took only part of "
        "(lws kept the rest until it was writable).\n"
        "# TYPE chatd_ws_partial_writes_total counter\nchatd_ws_partial_writes_total %llu\n",
        (unsigned long long)writes, (unsigned long long)batched, (unsigned long long)partial);
    rc = rc ? rc : chat__script_metrics(rt->script, &b); /* the Lua host's bounds */
    rc = rc ? rc : chat__store_metrics(&b, rt->store);
    rc = rc ? rc : chat__auth_metrics(&b, rt->loop);
    rc = rc ? rc : chat__limits_metrics(rt, &b);
    rc = rc ? rc : chat__jobs_metrics(rt->jobs, &b);
    rc = rc ? rc : chat__notifications_metrics(rt, &b);
    rc = rc ? rc : chat__uploads_metrics(rt, &b);
    if (rc) {
        chat__http_respond_error(req, CHAT_ENOMEM, NULL);
    } else {
        chat__http_respond(req, 200, "text/plain; version=0.0.4; charset=utf-8", b.data, b.len);
    }
    chat__buf_free(&b);
}

static const chat_http_route ops_routes[] = {
    {CHAT_HTTP_GET, "/healthz", 0, healthz},
    {CHAT_HTTP_GET, "/readyz", 0, readyz},
    {CHAT_HTTP_GET, "/metrics", 0, metrics},
};

int chat__ops_start(chat_runtime *rt)
{
    return chat__http_routes_add(rt, ops_routes, sizeof ops_routes / sizeof ops_routes[0]);
}
