/* chat.h: the one public header of libchatrt, the chatd runtime.
 *
 * Build against it with `pkg-config --cflags --libs chatrt` or CMake's
 * `find_package(chatrt)` + `target_link_libraries(app chatrt::chatrt)`; examples/embed.c is
 * a complete host program.
 *
 * Threads: every function here is called from the thread that runs the runtime's
 * uv loop unless it says otherwise (chat_config_* and chat_log_* may be called from any
 * thread).
 *
 * Ownership: the caller owns what it passes in (the runtime copies what it keeps) and the
 * library owns what it returns, unless a declaration says otherwise.
 */
#ifndef CHAT_H
#define CHAT_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#if defined(CHAT_BUILDING)
#define CHAT_API __attribute__((visibility("default")))
#else
#define CHAT_API
#endif

/* ---- Errors ---------------------------------------------------------------
 * 0 is success; failures are negative CHAT_E* values. Each maps to the protocol's
 * error code (PROTOCOL.md "Errors"), the REST status and a default sentence.
 *   X(name, protocol code, HTTP status, default message) */
#define CHAT_ERRNO_MAP(X)                                                                   \
    X(UNAUTHORIZED, "unauthorized", 401, "sign in again: the token is missing or invalid")   \
    X(FORBIDDEN, "forbidden", 403, "you are not allowed to do that")                         \
    X(NOTFOUND, "not_found", 404, "no such resource")                                        \
    X(INVAL, "invalid_payload", 400, "the request is malformed")                             \
    X(TOOBIG, "payload_too_large", 413, "the payload is larger than the server accepts")     \
    X(RATELIMIT, "rate_limited", 429, "too many requests; retry later")                      \
    X(POLICY, "policy_rejected", 422, "refused by the server's policy")                      \
    X(CONFLICT, "conflict", 409, "that already exists")                                      \
    X(UNAVAIL, "unavailable", 503, "a backing store is unavailable; retry shortly")          \
    X(INTERNAL, "internal", 500, "internal error; the server logged it")                     \
    X(NOMEM, "internal", 500, "out of memory")

typedef enum chat_errno {
    CHAT_OK = 0,
    CHAT__EFIRST = -1000,
#define CHAT_ERRNO_ENUM(name, code, status, msg) CHAT_E##name,
    CHAT_ERRNO_MAP(CHAT_ERRNO_ENUM)
#undef CHAT_ERRNO_ENUM
} chat_errno;

/* Static strings; never NULL. Unknown values map to "internal". */
CHAT_API const char *chat_strerror(int err); /* default sentence for people */
CHAT_API const char *chat_errcode(int err);  /* protocol code, e.g. "rate_limited" */
CHAT_API int chat_errstatus(int err);        /* REST status, e.g. 429 */

/* ---- Configuration ----------------------------------------------------------
 * Plain data; strings are owned by the config (chat_config_free releases them). The
 * functions touch only the config they are given (setting log_level also sets the
 * process-wide log level), so any thread may use its own config. */
typedef struct chat_config {
    char *listen;           /* "host:port", default "127.0.0.1:8080" */
    char *data_dir;         /* default "./data" */
    char *jwt_secret;       /* NULL: read or create <data_dir>/jwt_secret */
    int ping_interval_ms;   /* Engine.IO pingInterval, default 25000 */
    int ping_timeout_ms;    /* Engine.IO pingTimeout, default 20000 */
    int max_payload;        /* Engine.IO maxPayload in bytes, default 1000000 */
    int bcrypt_cost;        /* default 12 */
    int token_ttl_s;        /* JWT lifetime, default 86400 */
    int message_max_bytes;  /* content length limit, default 10000 */
    char *log_level;        /* debug, info, warn, error; default info */
    char *scripts_dir;      /* the operator's policies and bots; default "scripts" */
    char *lua_dir;          /* the Lua library shipped with the runtime; default "lua" */
    int lua_budget;         /* instructions one hook call may run; default 10000000 */
    int lua_memory_mb;      /* memory cap of the scripts' Lua state; default 64 */
    char *admin_token;      /* bearer token for the admin API; NULL: admin API off */
    int trust_proxy;        /* 1: take the client address from X-Forwarded-For; default 0 */
    char *node_id;          /* this process's name in a cluster ([a-z0-9-], <= 16); NULL: random */
    char *static_dir;       /* the web page's files, served at /; default "examples/web" */
    char *redis_url;        /* redis://[:pw@]host:port/db: bus and kv on Redis; NULL: in-process */
    char *mongo_uri;        /* mongodb://...: store on MongoDB; NULL: SQLite in data_dir */
    int lua_pattern_steps;  /* matching steps one string.find/match/gmatch/gsub call may take */
    int lua_timers_max;     /* timers one generation of the scripts may have pending */
    int lua_kv_mb;          /* in-process kv memory scripts may fill with kv.set, in MiB */
    int lua_hook_wait_ms;   /* how long a hook may wait for I/O (sleep included) in all */
    int bcrypt_threads;     /* threads that run only bcrypt (logins, registrations); default 2 */
    int bcrypt_queue;       /* bcrypt jobs waiting at most; more are refused with 503; 256 */
    char *sqlite_synchronous; /* "normal" (default: an ack survives a crash of chatd, not a
                               * power loss) or "full" (survives a power loss; slower) */
    int store_batch_max;    /* message inserts per group commit; default 1024; 1: no batching */
    int login_fail_account; /* failed logins per account per login window; default 10 */
    int login_fail_ip;      /* failed logins per client address per login window; default 100 */
    int login_window_s;     /* default 900 */
    int register_per_ip;    /* registrations per client address per register window; default 20 */
    int register_window_s;  /* default 3600 */
    int presence_heartbeat_ms; /* Redis: presence record renewal period; default 1000 */
    int presence_ttl_ms;    /* Redis: a node silent this long is dead; default 5000 */
    /* bounds on what one client can make the server hold (bounds.c) */
    int session_queue_max_bytes; /* bytes queued to one client before it is cut off; 4 MiB */
    int max_connections;         /* open TCP connections; 0 (default): open-file limit less a reserve */
    int max_connections_per_ip;  /* open TCP connections per peer address (off with trust_proxy); 1024 */
    int max_unconnected_sessions;        /* sessions with no namespace connected; 10000 */
    int max_unconnected_sessions_per_ip; /* the same, per client address; 128 */
    int connect_timeout_ms;      /* Socket.IO connectTimeout; default 45000 */
    int accept_backoff_ms;       /* pause accepting after an accept() error; default 200 */
    char *admin_tokens;     /* more admin tokens with names for the log: "alice=tok,bob=tok" */
    char *admin_listen;     /* "host:port" of the admin API alone; NULL: on listen, with the rest */
    char *eio_path;         /* the scripts' plain Engine.IO endpoint; default "/engine.io/", "" off */
    int shutdown_timeout_ms; /* bound on a graceful stop (chat_runtime_stop); default 10000 */
    int upload_max_bytes;   /* largest file POST /uploads takes; default 1000000 */
    char *upload_types;     /* media types uploads may have, comma-separated */
    int max_sessions_per_ip;     /* Engine.IO sessions per client address, connected or not; 1024 */
    int store_queue_max;         /* store calls queued or running; past it: unavailable; 10000 */
    int jobs_attempts;      /* runs a job gets before the dead-letter list; default 5 */
    int jobs_backoff_ms;    /* wait before the 2nd run, doubled for each next; default 1000 */
    int jobs_backoff_max_ms; /* longest wait between two runs; default 600000 */
    int jobs_timeout_ms;    /* a run may take this long; a job held longer by a node that went
                             * quiet is taken over by another; default 60000 */
    int jobs_max;           /* jobs queued at most (0: no bound); default 100000 */
    int jobs_payload_max;   /* bytes of one job's JSON payload at most; default 65536 */
    int jobs_concurrency;   /* handlers running at once on one node; default 16 */
    int jobs_poll_ms;       /* how often a node looks for due jobs; default 250 */
    int jobs_dead_max;      /* dead jobs kept (the newest); default 1000 */
    int avatar_max_bytes;   /* largest upload PATCH /me takes as an avatar; default 524288 */
    int reactions_waiting_max; /* reactions waiting behind one in flight to the same message on
                                * a node; past it: unavailable; default 64 */
} chat_config;

/* Fills every field with its default (strings are copies). */
CHAT_API int chat_config_init(chat_config *cfg);
CHAT_API void chat_config_free(chat_config *cfg);
/* Sets one option by its documented name ("listen", "ping_interval_ms", ...).
 * Returns CHAT_EINVAL for an unknown name or a bad value (chat_config_expect says why). */
CHAT_API int chat_config_set(chat_config *cfg, const char *name, const char *value);
/* Writes what option name accepts into buf, for people: "an integer from 4 to 31",
 * "host:port", "debug, info, warn or error" or "a string". Returns CHAT_EINVAL (and "")
 * for an unknown name. */
CHAT_API int chat_config_expect(const char *name, char *buf, size_t len);
/* Applies every CHAT_<NAME> environment variable that is set. On failure stores the
 * name of the offending variable in *bad (static storage) and returns CHAT_EINVAL. */
CHAT_API int chat_config_from_env(chat_config *cfg, const char **bad);
/* For --help: calls fn once per option with its name, environment variable and help. */
CHAT_API void chat_config_describe(void (*fn)(const char *name, const char *env,
                                              const char *def, const char *help, void *arg),
                                   void *arg);

/* ---- Log ------------------------------------------------------------------------
 * One JSON object per event, e.g.
 *   {"ts":1700000000000,"level":"warn","event":"scripts_dir_missing","msg":"...","path":"..."}
 * By default each goes to stderr as one line. The sink and level are process-wide (the log
 * is shared by every runtime in the process). */
typedef enum chat_log_level {
    CHAT_LOG_DEBUG,
    CHAT_LOG_INFO,
    CHAT_LOG_WARN,
    CHAT_LOG_ERROR
} chat_log_level;

/* Receives each line that passes the level (json: the object, without a newline, borrowed
 * for the call). Called from any thread (store workers log too), possibly concurrently:
 * the sink must be thread-safe and must not call back into the runtime. */
typedef void (*chat_log_fn)(void *arg, chat_log_level level, const char *event,
                            const char *json);

/* Sends the log to fn(arg, ...) instead of stderr; fn NULL restores stderr. Set it before
 * chat_runtime_new, and keep arg alive until the last runtime is closed. */
CHAT_API void chat_log_set_sink(chat_log_fn fn, void *arg);
/* The least level logged ("debug", "info", "warn", "error"); the log_level option sets it
 * too. Returns CHAT_EINVAL for another name. */
CHAT_API int chat_log_set_level(const char *name);

/* ---- Runtime ---------------------------------------------------------------- */
typedef struct chat_runtime chat_runtime;

/* Creates a runtime bound to loop (borrowed: the host runs it and closes it after the
 * runtime's close callback; NULL makes one the runtime owns). Copies cfg. Opens the store,
 * loads the scripts and listens; returns a CHAT_E* code on failure (the log says why).
 * A scripts_dir or lua_dir left at its default ("scripts", "lua") is looked up in the
 * working directory, then in the installed data directory (<prefix>/share/chatd); a folder
 * that is missing is logged as a warning naming the path, and the runtime serves without it. */
CHAT_API int chat_runtime_new(chat_runtime **out, uv_loop_t *loop, const chat_config *cfg);
/* The loop the runtime runs on. */
CHAT_API uv_loop_t *chat_runtime_loop(chat_runtime *rt);
/* Runs the loop until chat_runtime_stop has finished; for runtimes that own their loop. */
CHAT_API int chat_runtime_run(chat_runtime *rt);
/* Reloads the scripts (as on SIGHUP): a new Lua state replaces the old one only if every
 * file loads. On failure err holds "file:line: message" and the old scripts keep serving.
 * A serving runtime reloads its whole cluster (README "Cluster reload"): 0 means the files
 * load here and the reload started; with no other node live it is done when this returns,
 * otherwise its outcome is logged (reload_done, or reload_refused with each node's error). */
CHAT_API int chat_runtime_reload(chat_runtime *rt, char *err, size_t errlen);
/* Graceful stop, bounded by cfg.shutdown_timeout_ms: /readyz answers 503 and no new
 * session is accepted; the calls in flight (message writes included) finish and are
 * answered; then every client gets what is queued for it and the Engine.IO close packet (a
 * websocket then a close frame 1001, a held poll its answer), and the listener closes. What
 * is left when the bound runs out is cut, and logged. Returns at once; the loop does the
 * rest (chat_runtime_run returns when it is done). Safe to call from a signal watcher on
 * the loop; calling it again does nothing. */
CHAT_API void chat_runtime_stop(chat_runtime *rt);

typedef void (*chat_close_cb)(chat_runtime *rt, void *arg);
/* Stops the runtime (as chat_runtime_stop) and releases everything it holds on the loop,
 * libuv style: keep running the loop; cb(rt, arg) runs on the loop once the last of the
 * runtime's handles has closed and its pending store work has finished. After cb returns rt
 * is freed; cb may be NULL. From then on the runtime holds nothing on the loop, so a host
 * whose own handles are closed sees uv_run return and uv_loop_close succeed. Call it once,
 * from the loop's thread; do not call chat_runtime_free afterwards. On a runtime that owns
 * its loop, call it after chat_runtime_run returned: it runs that loop to the end itself
 * and calls cb before it returns. */
CHAT_API void chat_runtime_close(chat_runtime *rt, chat_close_cb cb, void *arg);
/* For a runtime that owns its loop (chat_runtime_new with loop NULL), after
 * chat_runtime_run has returned: closes it, runs the loop to the end and frees everything,
 * loop included (NULL-safe). Hosts with their own loop use chat_runtime_close instead. */
CHAT_API void chat_runtime_free(chat_runtime *rt);

#endif
