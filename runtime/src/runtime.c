/* runtime.c: the runtime's lifecycle: configuration, secrets, store, kv, bus, listener. */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "admin.h"
#include "reload.h"
#include "cluster.h"
#include "domain.h"
#include "frame.h"
#include "jobs.h"
#include "auth.h"
#include "log.h"
#include "rt.h"
#include "script.h"
#include "session.h"
#include "stats.h"
#include "tool.h"

#ifndef CHAT_DATADIR /* set by CMake: <prefix>/share/chatd and the same relative to lib, bin */
#define CHAT_DATADIR "/usr/local/share/chatd"
#define CHAT_DATADIR_FROM_LIB "../share/chatd"
#define CHAT_DATADIR_FROM_BIN "../share/chatd"
#endif

#define JWT_SECRET_MIN 32

static int copy_config(chat_config *dst, const chat_config *src)
{
    *dst = *src;
    char **strs[] = {&dst->listen,      &dst->data_dir, &dst->jwt_secret, &dst->log_level,
                     &dst->static_dir,  &dst->scripts_dir, &dst->lua_dir,  &dst->admin_token,
                     &dst->node_id,     &dst->redis_url,   &dst->mongo_uri,
                     &dst->sqlite_synchronous, &dst->admin_tokens, &dst->admin_listen,
                     &dst->eio_path, &dst->upload_types};
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++) {
        if (*strs[i] && !(*strs[i] = strdup(*strs[i]))) {
            for (size_t j = 0; j < i; j++) {
                free(*strs[j]);
            }
            memset(dst, 0, sizeof *dst);
            return CHAT_ENOMEM;
        }
    }
    return 0;
}

static int make_dir(const char *path)
{
    if (mkdir(path, 0700) == 0 || errno == EEXIST) {
        return 0;
    }
    chat__log(CHAT_LOG_ERROR, "data_dir_failed",
              "cannot create the data directory; set CHAT_DATA_DIR to a writable path",
              json_pack("{s:s,s:s}", "path", path, "error", strerror(errno)));
    return CHAT_EINTERNAL;
}

/* The secret from the config, else <data_dir>/jwt_secret, created on first start. */
static int load_jwt_secret(chat_runtime *rt)
{
    if (rt->cfg.jwt_secret) {
        if (strlen(rt->cfg.jwt_secret) < JWT_SECRET_MIN) {
            chat__log(CHAT_LOG_ERROR, "jwt_secret_too_short",
                      "CHAT_JWT_SECRET must be at least 32 bytes; use a long random string",
                      NULL);
            return CHAT_EINVAL;
        }
        rt->jwt_secret = strdup(rt->cfg.jwt_secret);
        return rt->jwt_secret ? 0 : CHAT_ENOMEM;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/jwt_secret", rt->cfg.data_dir);
    char buf[256];
    FILE *f = fopen(path, "r");
    if (f) {
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r')) {
            n--;
        }
        buf[n] = '\0';
        if (n < JWT_SECRET_MIN) {
            chat__log(CHAT_LOG_ERROR, "jwt_secret_too_short",
                      "the stored JWT secret is shorter than 32 bytes; delete it to make a "
                      "new one (this signs everyone out)",
                      json_pack("{s:s}", "path", path));
            return CHAT_EINVAL;
        }
        rt->jwt_secret = strdup(buf);
        return rt->jwt_secret ? 0 : CHAT_ENOMEM;
    }
    uint8_t raw[32];
    if (uv_random(NULL, NULL, raw, sizeof raw, 0, NULL)) {
        return CHAT_EINTERNAL;
    }
    for (size_t i = 0; i < sizeof raw; i++) {
        snprintf(buf + 2 * i, 3, "%02x", raw[i]);
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0 || write(fd, buf, 64) != 64 || close(fd) != 0) {
        chat__log(CHAT_LOG_ERROR, "jwt_secret_write_failed",
                  "cannot write the generated JWT secret; check the data directory",
                  json_pack("{s:s,s:s}", "path", path, "error", strerror(errno)));
        return CHAT_EINTERNAL;
    }
    chat__log(CHAT_LOG_WARN, "jwt_secret_generated",
              "generated a JWT secret and kept it in the data dir; set CHAT_JWT_SECRET to "
              "share one secret between nodes",
              json_pack("{s:s}", "path", path));
    rt->jwt_secret = strdup(buf);
    return rt->jwt_secret ? 0 : CHAT_ENOMEM;
}

static int set_node_id(chat_runtime *rt)
{
    const char *id = rt->cfg.node_id;
    if (!id) {
        static const char abc[] = "abcdefghijklmnopqrstuvwxyz0123456789";
        uint8_t r[6];
        uv_random(NULL, NULL, r, sizeof r, 0, NULL);
        for (int i = 0; i < 6; i++) {
            rt->node_id[i] = abc[r[i] % 36];
        }
        rt->node_id[6] = '\0';
        return 0;
    }
    size_t n = strlen(id);
    if (n == 0 || n >= CHAT_NODE_ID_MAX || strspn(id, "abcdefghijklmnopqrstuvwxyz0123456789-") != n) {
        chat__log(CHAT_LOG_ERROR, "bad_node_id",
                  "CHAT_NODE_ID must be 1 to 16 of a-z, 0-9 and '-'", NULL);
        return CHAT_EINVAL;
    }
    memcpy(rt->node_id, id, n + 1);
    return 0;
}

static void make_dummy_hash(chat_runtime *rt)
{
    static const char abc[] = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    uint8_t r[53];
    uv_random(NULL, NULL, r, sizeof r, 0, NULL);
    int n = snprintf(rt->dummy_hash, sizeof rt->dummy_hash, "$2b$%02d$", rt->cfg.bcrypt_cost);
    for (size_t i = 0; i < sizeof r; i++) {
        rt->dummy_hash[n + i] = abc[r[i] & 63];
    }
    /* the last salt character must carry no spare bits */
    rt->dummy_hash[n + 21] = '.';
    rt->dummy_hash[n + 53] = '\0';
}

static int is_dir(const char *path)
{
    struct stat st;
    return path && stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* The installed data directory: next to the library (libchatrt.so at <prefix>/lib), next to
 * the program (chatd or a host linking libchatrt.a, at <prefix>/bin), then the configured
 * prefix. The first that holds sub wins; the result goes to out ("" when none does). */
static void find_installed(const char *sub, char *out, size_t outlen)
{
    char bases[3][2048] = {{0}};
    Dl_info info;
    char real[4096];
    if (dladdr((void *)chat_runtime_new, &info) && info.dli_fname && strstr(info.dli_fname, ".so") &&
        realpath(info.dli_fname, real)) {
        snprintf(bases[0], sizeof bases[0], "%s/%s", dirname(real), CHAT_DATADIR_FROM_LIB);
    }
    ssize_t n = readlink("/proc/self/exe", real, sizeof real - 1);
    if (n > 0) {
        real[n] = '\0';
        snprintf(bases[1], sizeof bases[1], "%s/%s", dirname(real), CHAT_DATADIR_FROM_BIN);
    }
    snprintf(bases[2], sizeof bases[2], "%s", CHAT_DATADIR);
    out[0] = '\0';
    for (int i = 0; i < 3; i++) {
        char path[2048 + 64];
        if (bases[i][0] && strlen(sub) < 64 &&
            (size_t)snprintf(path, sizeof path, "%s/%s", bases[i], sub) < outlen &&
            is_dir(path)) {
            const char *found = realpath(path, real) ? real : path;
            size_t len = strlen(found);
            if (len < outlen) {
                memcpy(out, found, len + 1);
                return;
            }
        }
    }
}

/* A folder option left at its default (relative to the working directory, as in the source
 * tree) falls back to the installed copy; one that is still missing is a warning that names
 * it, since the runtime then serves without the policies or library it holds. */
static int resolve_dir(chat_runtime *rt, char **field, const char *def, const char *sub,
                       const char *event, const char *what)
{
    if (!*field || !**field || is_dir(*field)) {
        return 0;
    }
    if (strcmp(*field, def) == 0) {
        char found[4096];
        find_installed(sub, found, sizeof found);
        if (found[0]) {
            char *copy = strdup(found);
            if (!copy) {
                return CHAT_ENOMEM;
            }
            free(*field);
            *field = copy;
            return 0;
        }
    }
    if (!event) {
        return 0; /* its owner says so when it starts (static.c) */
    }
    char installed[4096];
    snprintf(installed, sizeof installed, "%s/%s", CHAT_DATADIR, sub);
    chat__log(CHAT_LOG_WARN, event, what,
              json_pack("{s:s,s:s}", "path", *field, "installed", installed));
    (void)rt;
    return 0;
}

static int resolve_dirs(chat_runtime *rt)
{
    int rc;
    if ((rc = resolve_dir(rt, &rt->cfg.lua_dir, "lua", "lua", "lua_dir_missing",
                          "the Lua library folder is missing: scripts that require chat.* "
                          "modules will fail; set CHAT_LUA_DIR")) ||
        (rc = resolve_dir(rt, &rt->cfg.scripts_dir, "scripts", "scripts", "scripts_dir_missing",
                          "the scripts folder is missing: chatd runs with no policies or "
                          "bots; set CHAT_SCRIPTS_DIR")) ||
        (rc = resolve_dir(rt, &rt->cfg.static_dir, "examples/web", "web", NULL, NULL))) {
        return rc;
    }
    return 0;
}

/* The job queue's runner: a job's handler is the scripts' hook "job/<name>"
 * (chat.jobs.handle), run with the job as its event. */
typedef struct job_call {
    chat_jobs_done done;
    void *arg;
} job_call;

static void job_ran(int status, const char *message, json_t *ev, void *arg)
{
    job_call *c = arg;
    json_decref(ev);
    c->done(status, status ? message : NULL, c->arg);
    free(c);
}

static void run_job(chat_runtime *rt, const char *name, json_t *job, chat_jobs_done done,
                    void *arg)
{
    char hook[80];
    snprintf(hook, sizeof hook, "job/%s", name);
    job_call *c = malloc(sizeof *c);
    if (!c || !chat__script_has(rt->script, hook)) {
        int status = c ? CHAT_ENOTFOUND : CHAT_ENOMEM;
        free(c);
        json_decref(job);
        done(status, NULL, arg);
        return;
    }
    c->done = done;
    c->arg = arg;
    chat__script_run(rt->script, hook, job, job_ran, c);
}

/* serve: load the scripts and listen (chatd); 0: only the store, kv and bus (chatd --run). */
static int runtime_new(chat_runtime **out, uv_loop_t *loop, const chat_config *cfg, int serve)
{
    int rc;
    chat_runtime *rt = calloc(1, sizeof *rt);
    if (!rt) {
        return CHAT_ENOMEM;
    }
    if ((rc = copy_config(&rt->cfg, cfg))) {
        free(rt);
        return rc;
    }
    if (loop) {
        rt->loop = loop;
    } else {
        if (uv_loop_init(&rt->own_loop)) {
            chat_config_free(&rt->cfg);
            free(rt);
            return CHAT_EINTERNAL;
        }
        rt->loop = &rt->own_loop;
        rt->owns_loop = 1;
    }
    if (rt->cfg.log_level) {
        chat_log_set_level(rt->cfg.log_level);
    }
    if ((rc = chat__parse_listen(rt->cfg.listen, rt->listen_host, sizeof rt->listen_host,
                                 &rt->listen_port))) {
        chat__log(CHAT_LOG_ERROR, "bad_listen", "CHAT_LISTEN must look like 127.0.0.1:8080",
                  json_pack("{s:s}", "listen", rt->cfg.listen));
        goto fail;
    }
    if ((rc = set_node_id(rt))) {
        goto fail;
    }
    if ((rc = resolve_dirs(rt))) {
        goto fail;
    }
    make_dummy_hash(rt);
    if ((rc = chat__stats_new(rt))) {
        goto fail;
    }
    rt->ping_frame = chat__frame_new("2", 1, 0);
    rt->noop_frame = chat__frame_new("6", 1, 0);
    if (!rt->ping_frame || !rt->noop_frame) {
        rc = CHAT_ENOMEM;
        goto fail;
    }
    if ((rc = make_dir(rt->cfg.data_dir)) || (rc = load_jwt_secret(rt))) {
        goto fail;
    }
    /* the scaled-out backends when configured, else the embedded ones */
    const char *mongo = rt->cfg.mongo_uri && *rt->cfg.mongo_uri ? rt->cfg.mongo_uri : NULL;
    const char *redis = rt->cfg.redis_url && *rt->cfg.redis_url ? rt->cfg.redis_url : NULL;
    const chat_store_backend *store_be = mongo ? &chat__store_mongo : &chat__store_sqlite;
    chat_store_opts sopts = {
        .sqlite_synchronous = chat__store_parse_synchronous(rt->cfg.sqlite_synchronous),
        .batch_max = rt->cfg.store_batch_max,
        .queue_max = rt->cfg.store_queue_max,
    };
    if (!sopts.sqlite_synchronous) {
        chat__log(CHAT_LOG_ERROR, "bad_sqlite_synchronous",
                  "CHAT_SQLITE_SYNCHRONOUS must be normal or full",
                  json_pack("{s:s?}", "sqlite_synchronous", rt->cfg.sqlite_synchronous));
        rc = CHAT_EINVAL;
        goto fail;
    }
    if ((rc = chat__auth_pool_start(rt->loop, rt->cfg.bcrypt_threads, rt->cfg.bcrypt_queue))) {
        goto fail;
    }
    rc = chat__store_open_with(&rt->store, rt->loop, store_be,
                               mongo ? mongo : rt->cfg.data_dir, &sopts);
    if (rc) {
        chat__log(CHAT_LOG_ERROR, "store_open_failed",
                  mongo ? "cannot open the MongoDB store; check CHAT_MONGO_URI (see above)"
                        : "cannot open the SQLite store in the data directory",
                  json_pack("{s:s,s:s,s:s}", "store", store_be->name, "data_dir",
                            rt->cfg.data_dir, "code", chat_errcode(rc)));
        goto fail;
    }
    chat__store_observe(rt->store, chat__stats_store_observer, rt);
    if ((rc = redis ? chat__kv_open(&rt->kv, rt->loop, &chat__kv_redis, redis)
                    : chat__kv_new(&rt->kv, rt->loop)) ||
        (rc = chat__bus_open(&rt->bus, rt->loop, redis ? &chat__bus_redis : &chat__bus_local,
                             redis, chat__fanout_receive, rt)) ||
        (rc = chat__bus_subscribe(rt->bus, "presence:updates")) ||
        (rc = chat__bus_subscribe(rt->bus, "users:updates")) || /* user:updated (users.c) */
        (rc = chat__jobs_open(&rt->jobs, rt, redis ? &chat__jobs_redis : &chat__jobs_sqlite,
                              redis ? redis : rt->cfg.data_dir, sopts.sqlite_synchronous))) {
        goto fail;
    }
    if ((rc = chat__domain_start(rt))) { /* scripts act through it, with --run too */
        goto fail;
    }
    if ((rc = chat__eio_script_start(rt))) { /* the scripts' own Engine.IO endpoint */
        goto fail;
    }
    if (!serve) {
        *out = rt;
        return 0;
    }
    char err[1024];
    if ((rc = chat__script_new(&rt->script, rt, err, sizeof err))) {
        goto fail; /* logged with the file and line */
    }
    if ((rc = chat__jobs_start(rt->jobs, run_job))) {
        goto fail;
    }
    /* each layer registers with the one below: domain -> sockets -> sessions -> routes */
    if ((rc = chat__ops_start(rt)) || (rc = chat__static_start(rt)) || (rc = chat__net_start(rt))) {
        goto fail;
    }
    /* the other nodes, and the admin API that acts on all of them */
    if ((rc = chat__cluster_start(rt)) || (rc = chat__admin_start(rt))) {
        goto fail;
    }
    chat__log(CHAT_LOG_INFO, "listening", "chatd is serving",
              json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "listen", rt->cfg.listen, "store",
                        store_be->name, "bus", chat__bus_backend_name(rt->bus), "kv",
                        chat__kv_backend_name(rt->kv), "data_dir", rt->cfg.data_dir,
                        "scripts_dir", rt->cfg.scripts_dir, "lua_dir", rt->cfg.lua_dir));
    *out = rt;
    return 0;
fail:
    chat_runtime_free(rt);
    return rc;
}

int chat_runtime_new(chat_runtime **out, uv_loop_t *loop, const chat_config *cfg)
{
    return runtime_new(out, loop, cfg, 1);
}

int chat__run_lua(const chat_config *cfg, const char *path, int argc, char **argv)
{
    chat_runtime *rt;
    int rc = runtime_new(&rt, NULL, cfg, 0);
    if (rc == 0) {
        rc = chat__script_run_file(rt, path, argc, argv);
        chat_runtime_free(rt);
    }
    return rc;
}

uv_loop_t *chat_runtime_loop(chat_runtime *rt) { return rt->loop; }

int chat_runtime_run(chat_runtime *rt)
{
    uv_run(rt->loop, UV_RUN_DEFAULT);
    return 0;
}

/* ---- the graceful stop ----
 * Two steps, each waited for on a short tick, both under one bound (cfg.shutdown_timeout_ms):
 * 1. rt->stopping: /readyz answers 503 and no new session is accepted, while the calls in
 *    flight (message writes and their acks) and the store's pending work finish; this step
 *    may take three quarters of the bound, so that the clients are still told after it;
 * 2. every client gets what is queued for it and the close (chat__sessions_shutdown), and the
 *    runtime waits until the websockets have closed and the HTTP answers are written.
 * Then the listener closes (chat__net_stop). What the bound cuts is logged. */
#define DRAIN_TICK_MS 5

typedef struct runtime_drain {
    uv_timer_t tick;
    chat_runtime *rt;
    int step; /* 0: calls in flight; 1: clients closing */
    int cut;  /* something was left when a step ran out of time */
    uint64_t started;
} runtime_drain;

static void drain_freed(uv_handle_t *h) { free(h->data); }

static void log_cut(chat_runtime *rt, const char *msg)
{
    chat__log(CHAT_LOG_WARN, "stop_cut", msg,
              json_pack("{s:i,s:i,s:i,s:i,s:i}", "calls", rt->calls_pending, "store_pending",
                        chat__store_pending(rt->store), "sessions", (int)rt->sessions.len,
                        "websockets", rt->ws_conns, "http_requests", rt->http_reqs));
}

static void drain_finish(runtime_drain *d)
{
    chat_runtime *rt = d->rt;
    rt->drain = NULL;
    chat__sessions_close_all(rt);
    chat__domain_stop(rt);
    chat__cluster_stop(rt);
    chat__admin_stop(rt);
    chat__net_stop(rt);
    uv_timer_stop(&d->tick);
    uv_close((uv_handle_t *)&d->tick, drain_freed);
    chat__log(CHAT_LOG_INFO, "stopped", d->cut ? "stopped, cutting what was left" : "stopped cleanly",
              json_pack("{s:I,s:b}", "ms", (json_int_t)(uv_now(rt->loop) - d->started), "cut",
                        d->cut));
}

static void drain_tick(uv_timer_t *t)
{
    runtime_drain *d = t->data;
    chat_runtime *rt = d->rt;
    uv_update_time(rt->loop);
    uint64_t bound = (uint64_t)rt->cfg.shutdown_timeout_ms, spent = uv_now(rt->loop) - d->started;
    if (d->step == 0) {
        int busy = rt->calls_pending > 0 || chat__store_pending(rt->store) > 0;
        if (busy && spent < bound * 3 / 4) {
            return;
        }
        if (busy) {
            d->cut = 1;
            log_cut(rt, "calls still in flight at the graceful stop's bound "
                        "(CHAT_SHUTDOWN_TIMEOUT_MS): closing the clients without their answers");
        }
        d->step = 1;
        chat__sessions_shutdown(rt);
    }
    /* the store's writes still finish after this (the loop runs until they are done) */
    int left = rt->sessions.len || rt->ws_conns > 0 || rt->http_reqs > 0;
    if (left && spent < bound) {
        return;
    }
    if (left) {
        d->cut = 1;
        log_cut(rt, "clients still closing at the graceful stop's bound "
                    "(CHAT_SHUTDOWN_TIMEOUT_MS): cutting their connections");
    }
    drain_finish(d);
}

void chat_runtime_stop(chat_runtime *rt)
{
    if (rt->stopping) {
        return;
    }
    rt->stopping = 1;
    chat__log(CHAT_LOG_INFO, "stopping",
              "graceful stop: no new sessions; calls in flight finish, then clients are closed",
              json_pack("{s:i,s:i,s:i}", "store_pending", chat__store_pending(rt->store), "calls",
                        rt->calls_pending, "timeout_ms", rt->cfg.shutdown_timeout_ms));
    runtime_drain *d = calloc(1, sizeof *d);
    if (!d) { /* cannot wait: the old way, closing everything now */
        chat__sessions_close_all(rt);
        chat__domain_stop(rt);
        chat__cluster_stop(rt);
        chat__admin_stop(rt);
        chat__net_stop(rt);
        return;
    }
    d->rt = rt;
    uv_update_time(rt->loop);
    d->started = uv_now(rt->loop);
    uv_timer_init(rt->loop, &d->tick);
    d->tick.data = d;
    rt->drain = d;
    drain_tick(&d->tick); /* nothing in flight: the clients are told at once */
    if (rt->drain) {
        uv_timer_start(&d->tick, drain_tick, DRAIN_TICK_MS, DRAIN_TICK_MS);
    }
}

/* A stop still draining when the runtime is freed: an owned loop runs it to its end (it is
 * bounded); a host's loop cannot be run from here, so what is left is cut. */
static void drain_wait(chat_runtime *rt)
{
    while (rt->drain && rt->owns_loop) {
        uv_run(rt->loop, UV_RUN_ONCE);
    }
    if (rt->drain) {
        rt->drain->cut = 1;
        log_cut(rt, "the runtime was freed during its graceful stop: cutting what is left");
        drain_finish(rt->drain);
    }
}

int chat_runtime_reload(chat_runtime *rt, char *err, size_t errlen)
{
    if (!rt->admin) {
        return chat__script_reload(rt->script, err, errlen);
    }
    /* a load that fails here is refused at once, with its file:line; one that loads goes to
     * every node (with no other node live, it is done before this returns) */
    int rc = chat__script_prepare(rt->script, NULL, err, errlen);
    if (rc) {
        return rc;
    }
    chat__script_abort(rt->script);
    chat__reload_cluster(rt, "chat_runtime_reload", NULL, NULL);
    return 0;
}

/* What the runtime holds on the loop after the script handles and lws have closed. */
static void release_backends(chat_runtime *rt)
{
    chat__net_free(rt);
    chat__auth_pool_stop(rt->loop); /* answers what is left before the store closes */
    chat__store_close(rt->store);
    rt->store = NULL;
    chat__kv_free(rt->kv);
    rt->kv = NULL;
    chat__bus_free(rt->bus);
    rt->bus = NULL;
}

static void free_memory(chat_runtime *rt)
{
    chat__map_free(&rt->sessions);
    chat__map_free(&rt->users);
    chat__map_free(&rt->rooms);
    chat__map_free(&rt->socks);
    chat__vec_free(&rt->http_routes);
    chat__session_mounts_free(rt);
    chat__frame_unref(rt->ping_frame);
    chat__frame_unref(rt->noop_frame);
    chat__buf_free(&rt->scratch);
    chat__buf_free(&rt->pubbuf);
    free(rt->jwt_secret);
    chat__static_free(rt);
    chat__admin_free(rt);
    chat__cluster_free(rt);
    chat__stats_free(rt);
    chat_config_free(&rt->cfg);
}

/* The old way, and the one for owned loops: run the loop until nothing is left. cb (if any)
 * runs when everything is closed, just before rt itself is freed. */
static void runtime_free(chat_runtime *rt, chat_close_cb cb, void *arg)
{
    if (!rt) {
        return;
    }
    drain_wait(rt);
    chat__domain_stop(rt);
    chat__net_stop(rt);
    chat__cluster_stop(rt);
    chat__admin_stop(rt);
    chat__jobs_free(rt->jobs); /* before the scripts: runs they end report to nothing */
    rt->jobs = NULL;
    chat__script_free(rt->script);
    rt->script = NULL;
    if (rt->owns_loop) {
        uv_run(rt->loop, UV_RUN_DEFAULT); /* let pending work and closes finish */
    }
    release_backends(rt);
    free_memory(rt);
    if (rt->owns_loop) {
        uv_run(rt->loop, UV_RUN_DEFAULT); /* the kv timer's close */
        uv_loop_close(rt->loop);
    }
    if (cb) {
        cb(rt, arg);
    }
    free(rt);
}

void chat_runtime_free(chat_runtime *rt) { runtime_free(rt, NULL, NULL); }

/* ---- close with a callback, on a loop the host runs ----
 * The host's own handles keep its loop alive, so "run the loop until it is empty" (what
 * chat_runtime_free does on an owned loop) never happens. Instead a timer owned by the closer
 * looks, once per millisecond, for the moment the runtime's work is done: first sessions,
 * pending store calls and lws's handles; then, after the backends are released, their closes.
 * A handle whose close has not completed is still on the loop's handle queue and says
 * uv_is_closing, so one walk finds them (a host's own closing handles only delay this by an
 * iteration). Then the closer's timer closes last and its close callback hands over. */
typedef struct runtime_closer {
    uv_timer_t timer;
    chat_runtime *rt;
    chat_close_cb cb;
    void *arg;
    int phase; /* 0: draining sessions, store and lws; 1: backends released */
} runtime_closer;

static void count_closing(uv_handle_t *h, void *arg)
{
    /* our own timer is never closing while it ticks, so it is not counted */
    *(int *)arg += uv_is_closing(h) ? 1 : 0;
}

static int closing_handles(uv_loop_t *loop)
{
    int n = 0;
    uv_walk(loop, count_closing, &n);
    return n;
}

static void closer_closed(uv_handle_t *h)
{
    runtime_closer *c = h->data;
    chat_runtime *rt = c->rt;
    if (c->cb) {
        c->cb(rt, c->arg);
    }
    free_memory(rt);
    free(rt);
    free(c);
}

static void closer_tick(uv_timer_t *t)
{
    runtime_closer *c = t->data;
    chat_runtime *rt = c->rt;
    size_t i = 0;
    if (closing_handles(rt->loop) > 0) {
        return;
    }
    if (c->phase == 0) {
        if (rt->drain) {
            return; /* the graceful stop is still under way (bounded) */
        }
        if (rt->script) { /* after the stop: the hooks saw the last disconnects */
            chat__jobs_free(rt->jobs); /* before the scripts: runs they end report to nothing */
            rt->jobs = NULL;
            chat__script_free(rt->script);
            rt->script = NULL;
            return;
        }
        if (chat__map_next(&rt->sessions, &i) || chat__store_pending(rt->store) > 0) {
            return;
        }
        release_backends(rt);
        c->phase = 1;
        return; /* their closes complete in this or the next iterations */
    }
    uv_timer_stop(t);
    uv_close((uv_handle_t *)t, closer_closed);
}

void chat_runtime_close(chat_runtime *rt, chat_close_cb cb, void *arg)
{
    if (!rt) {
        return;
    }
    if (rt->owns_loop) {
        /* nothing else runs this loop: finish here, running it to the end */
        chat_runtime_stop(rt);
        runtime_free(rt, cb, arg);
        return;
    }
    runtime_closer *c = calloc(1, sizeof *c);
    chat_runtime_stop(rt);
    if (!c) {
        drain_wait(rt);
        chat__jobs_free(rt->jobs);
        rt->jobs = NULL;
        chat__script_free(rt->script);
        rt->script = NULL; /* cannot wait for the closes: at least free what is safe to free */
        chat__log(CHAT_LOG_ERROR, "close_failed", "out of memory while closing the runtime",
                  NULL);
        return;
    }
    c->rt = rt;
    c->cb = cb;
    c->arg = arg;
    uv_timer_init(rt->loop, &c->timer);
    c->timer.data = c;
    uv_timer_start(&c->timer, closer_tick, 0, 1);
}
