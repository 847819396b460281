#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat.h"
#include "log.h"
#include "rt.h"

enum { OPT_STR, OPT_INT };

typedef struct option_def {
    const char *name;
    const char *env;
    int type;
    size_t offset;
    const char *def;
    int min, max;
    const char *help;
} option_def;

#define STR(field) OPT_STR, offsetof(chat_config, field)
#define INT(field) OPT_INT, offsetof(chat_config, field)

static const option_def options[] = {
    {"listen", "CHAT_LISTEN", STR(listen), "127.0.0.1:8080", 0, 0,
     "address and port to listen on (host:port; 0.0.0.0 for all interfaces)"},
    {"data_dir", "CHAT_DATA_DIR", STR(data_dir), "./data", 0, 0,
     "directory for the SQLite database and the generated JWT secret"},
    {"jwt_secret", "CHAT_JWT_SECRET", STR(jwt_secret), NULL, 0, 0,
     "HS256 signing secret (at least 32 bytes); unset: generated once into the data dir"},
    {"ping_interval_ms", "CHAT_PING_INTERVAL_MS", INT(ping_interval_ms), "25000", 50, 3600000,
     "Engine.IO pingInterval: how often the server pings each client"},
    {"ping_timeout_ms", "CHAT_PING_TIMEOUT_MS", INT(ping_timeout_ms), "20000", 50, 3600000,
     "Engine.IO pingTimeout: how long a client has to answer a ping"},
    {"max_payload", "CHAT_MAX_PAYLOAD", INT(max_payload), "1000000", 1024, 100000000,
     "largest Engine.IO payload or HTTP body accepted, in bytes"},
    {"bcrypt_cost", "CHAT_BCRYPT_COST", INT(bcrypt_cost), "12", 4, 31,
     "bcrypt work factor for new password hashes"},
    {"token_ttl_s", "CHAT_TOKEN_TTL_S", INT(token_ttl_s), "86400", 1, INT_MAX,
     "lifetime of issued JWTs in seconds"},
    {"message_max_bytes", "CHAT_MESSAGE_MAX_BYTES", INT(message_max_bytes), "10000", 1,
     100000000, "largest message content accepted, in bytes"},
    {"log_level", "CHAT_LOG_LEVEL", STR(log_level), "info", 0, 0,
     "debug, info, warn or error"},
    {"scripts_dir", "CHAT_SCRIPTS_DIR", STR(scripts_dir), "scripts", 0, 0,
     "the Lua policies and bots (reloaded on change, SIGHUP or POST /admin/reload)"},
    {"lua_dir", "CHAT_LUA_DIR", STR(lua_dir), "lua", 0, 0,
     "the Lua library shipped with chatd"},
    {"lua_budget", "CHAT_LUA_BUDGET", INT(lua_budget), "10000000", 10000, INT_MAX,
     "instructions one script hook call may run before it is stopped"},
    {"lua_memory_mb", "CHAT_LUA_MEMORY_MB", INT(lua_memory_mb), "64", 4, 65536,
     "memory cap of the scripts' Lua state, in MiB"},
    {"trust_proxy", "CHAT_TRUST_PROXY", INT(trust_proxy), "0", 0, 1,
     "1 behind a reverse proxy: the client address (for per-IP limits) is the last one in "
     "X-Forwarded-For"},
    {"node_id", "CHAT_NODE_ID", STR(node_id), NULL, 0, 0,
     "this node's name in a cluster (a-z, 0-9, '-'; up to 16); it prefixes session ids so a "
     "load balancer can route by sid; unset: random"},
    {"admin_token", "CHAT_ADMIN_TOKEN", STR(admin_token), NULL, 0, 0,
     "bearer token for the admin API (/admin/, chatctl), named admin in its log lines; unset "
     "(and no CHAT_ADMIN_TOKENS): admin API off"},
    {"static_dir", "CHAT_STATIC_DIR", STR(static_dir), "examples/web", 0, 0,
     "directory of the web chat page served at / (empty: serve no files)"},
    {"redis_url", "CHAT_REDIS_URL", STR(redis_url), NULL, 0, 0,
     "Redis for pub/sub between nodes and the kv, e.g. redis://127.0.0.1:6379/0; "
     "unset: in-process (one node)"},
    {"mongo_uri", "CHAT_MONGO_URI", STR(mongo_uri), NULL, 0, 0,
     "MongoDB for users, rooms and messages, e.g. mongodb://db1,db2,db3/chatd?replicaSet=rs0; "
     "unset: SQLite in the data dir"},
    {"lua_pattern_steps", "CHAT_LUA_PATTERN_STEPS", INT(lua_pattern_steps), "10000000", 1000,
     INT_MAX, "matching steps one string.find/match/gmatch/gsub call of a script may take"},
    {"lua_timers_max", "CHAT_LUA_TIMERS_MAX", INT(lua_timers_max), "10000", 1, INT_MAX,
     "timers the scripts may have pending at once"},
    {"lua_kv_mb", "CHAT_LUA_KV_MB", INT(lua_kv_mb), "64", 1, 65536,
     "memory the scripts may fill in the in-process kv with chat.kv.set, in MiB"},
    {"lua_hook_wait_ms", "CHAT_LUA_HOOK_WAIT_MS", INT(lua_hook_wait_ms), "5000", 1, 600000,
     "how long one hook may wait for I/O (chat.timer.sleep included) before it fails"},
    {"bcrypt_threads", "CHAT_BCRYPT_THREADS", INT(bcrypt_threads), "2", 1, 64,
     "threads that run only bcrypt (logins and registrations), apart from the store's"},
    {"bcrypt_queue", "CHAT_BCRYPT_QUEUE", INT(bcrypt_queue), "256", 1, 1000000,
     "password checks waiting for a bcrypt thread at most; beyond it a login or registration "
     "is refused with 503 (counted in chatd_bcrypt_rejected_total)"},
    {"sqlite_synchronous", "CHAT_SQLITE_SYNCHRONOUS", STR(sqlite_synchronous), "normal", 0, 0,
     "normal: an acknowledged message survives a crash of chatd or the OS kernel killing it, "
     "not a power loss (the last commits may be lost); full: fsync on every commit, survives "
     "a power loss, slower"},
    {"store_batch_max", "CHAT_STORE_BATCH_MAX", INT(store_batch_max), "1024", 1, 100000,
     "message inserts written in one transaction (SQLite) or one insertMany (MongoDB) at most; "
     "1: one write per message"},
    /* authpresence: login and registration bounds, presence heartbeat */
    {"login_fail_account", "CHAT_LOGIN_FAIL_ACCOUNT", INT(login_fail_account), "10", 1, INT_MAX,
     "failed logins one account (the login as typed, lower-cased) may have per login window; "
     "then 429 until the window ends"},
    {"login_fail_ip", "CHAT_LOGIN_FAIL_IP", INT(login_fail_ip), "100", 1, INT_MAX,
     "failed logins one client address may have per login window; then 429"},
    {"login_window_s", "CHAT_LOGIN_WINDOW_S", INT(login_window_s), "900", 1, 86400,
     "the window failed logins are counted in, in seconds"},
    {"register_per_ip", "CHAT_REGISTER_PER_IP", INT(register_per_ip), "20", 1, INT_MAX,
     "registrations (taken names included) one client address may attempt per register window"},
    {"register_window_s", "CHAT_REGISTER_WINDOW_S", INT(register_window_s), "3600", 1, 86400,
     "the window registrations are counted in, in seconds"},
    {"presence_heartbeat_ms", "CHAT_PRESENCE_HEARTBEAT_MS", INT(presence_heartbeat_ms), "1000",
     100, 600000, "with Redis: how often a node renews its presence record and looks for dead "
     "nodes"},
    {"presence_ttl_ms", "CHAT_PRESENCE_TTL_MS", INT(presence_ttl_ms), "5000", 300, 3600000,
     "with Redis: a node whose presence record is this old is dead; its users go offline"},
    {"session_queue_max_bytes", "CHAT_SESSION_QUEUE_MAX_BYTES", INT(session_queue_max_bytes),
     "4194304", 65536, INT_MAX,
     "bytes queued to one client (broadcasts included) before it is closed as a slow reader"},
    {"max_connections", "CHAT_MAX_CONNECTIONS", INT(max_connections), "0", 0, INT_MAX,
     "open TCP connections; more are answered 503 and closed (0: the open-file limit less a "
     "reserve for chatd's own files)"},
    {"max_connections_per_ip", "CHAT_MAX_CONNECTIONS_PER_IP", INT(max_connections_per_ip),
     "1024", 1, INT_MAX,
     "open TCP connections from one peer address; not applied with trust_proxy=1 (every "
     "connection comes from the proxy: bound them there, e.g. nginx limit_conn)"},
    {"max_unconnected_sessions", "CHAT_MAX_UNCONNECTED_SESSIONS",
     INT(max_unconnected_sessions), "10000", 1, INT_MAX,
     "Engine.IO sessions that have not connected a Socket.IO namespace yet; more handshakes are "
     "refused (503)"},
    {"max_unconnected_sessions_per_ip", "CHAT_MAX_UNCONNECTED_SESSIONS_PER_IP",
     INT(max_unconnected_sessions_per_ip), "128", 1, INT_MAX,
     "the same, per client address (X-Forwarded-For's with trust_proxy=1)"},
    {"connect_timeout_ms", "CHAT_CONNECT_TIMEOUT_MS", INT(connect_timeout_ms), "45000", 10,
     3600000, "Socket.IO connectTimeout: a session that connects no namespace in time is closed"},
    {"accept_backoff_ms", "CHAT_ACCEPT_BACKOFF_MS", INT(accept_backoff_ms), "200", 1, 60000,
     "after a failed accept() (e.g. at the open-file limit) stop accepting this long"},
    {"admin_tokens", "CHAT_ADMIN_TOKENS", STR(admin_tokens), NULL, 0, 0,
     "more admin API tokens, each with a name the log records for what it does: "
     "name=token,name=token (CHAT_ADMIN_TOKEN is the one named admin)"},
    {"admin_listen", "CHAT_ADMIN_LISTEN", STR(admin_listen), NULL, 0, 0,
     "host:port for the admin API alone (with /healthz, /readyz, /metrics); set, /admin/ is "
     "not served on the client address; unset: the admin API is on listen"},
    {"eio_path", "CHAT_EIO_PATH", STR(eio_path), "/engine.io/", 0, 0,
     "path of the plain Engine.IO endpoint the scripts serve (eio/* hooks); empty: off"},
    {"shutdown_timeout_ms", "CHAT_SHUTDOWN_TIMEOUT_MS", INT(shutdown_timeout_ms), "10000", 0,
     3600000, "bound on a graceful stop (SIGTERM): after it what is left is cut and logged"},
    {"upload_max_bytes", "CHAT_UPLOAD_MAX_BYTES", INT(upload_max_bytes), "1000000", 1, INT_MAX,
     "largest file POST /uploads stores, in bytes (a body over max_payload is refused first)"},
    {"upload_types", "CHAT_UPLOAD_TYPES", STR(upload_types),
     "image/png,image/jpeg,image/gif,image/webp,application/pdf,text/plain", 0, 0,
     "media types an upload may have, comma-separated"},
    {"max_sessions_per_ip", "CHAT_MAX_SESSIONS_PER_IP", INT(max_sessions_per_ip), "1024", 1,
     INT_MAX, "Engine.IO sessions per client address, connected ones included (a polling "
     "session holds no connection); more handshakes are refused (503)"},
    {"store_queue_max", "CHAT_STORE_QUEUE_MAX", INT(store_queue_max), "10000", 1, 10000000,
     "store calls queued or running; past it a call (message:send, a REST call) is answered "
     "`unavailable` at once rather than queued"},
    {"jobs_attempts", "CHAT_JOBS_ATTEMPTS", INT(jobs_attempts), "5", 1, 100,
     "runs a job gets (chat.jobs.push's max_attempts overrides) before it goes to the "
     "dead-letter list"},
    {"jobs_backoff_ms", "CHAT_JOBS_BACKOFF_MS", INT(jobs_backoff_ms), "1000", 1, 86400000,
     "wait before a failed job's second run; doubled before each next one"},
    {"jobs_backoff_max_ms", "CHAT_JOBS_BACKOFF_MAX_MS", INT(jobs_backoff_max_ms), "600000", 1,
     INT_MAX, "longest wait between two runs of a failing job"},
    {"jobs_timeout_ms", "CHAT_JOBS_TIMEOUT_MS", INT(jobs_timeout_ms), "60000", 100, 86400000,
     "how long a job's handler may run (wait for I/O); a job held longer by a node that "
     "died is taken over by another"},
    {"jobs_max", "CHAT_JOBS_MAX", INT(jobs_max), "100000", 0, INT_MAX,
     "jobs queued (due or delayed) at most; past it chat.jobs.push answers payload_too_large "
     "(chatd_jobs_refused_total{reason=\"full\"}); 0: no bound"},
    {"jobs_payload_max", "CHAT_JOBS_PAYLOAD_MAX", INT(jobs_payload_max), "65536", 2, 16777216,
     "bytes of one job's payload as JSON at most (chatd_jobs_refused_total{reason=\"too_big\"})"},
    {"jobs_concurrency", "CHAT_JOBS_CONCURRENCY", INT(jobs_concurrency), "16", 1, 10000,
     "job handlers running at once on one node"},
    {"jobs_poll_ms", "CHAT_JOBS_POLL_MS", INT(jobs_poll_ms), "250", 10, 60000,
     "how often a node looks for due jobs"},
    {"jobs_dead_max", "CHAT_JOBS_DEAD_MAX", INT(jobs_dead_max), "1000", 1, 10000000,
     "dead jobs kept on the dead-letter list (the newest)"},
    {"avatar_max_bytes", "CHAT_AVATAR_MAX_BYTES", INT(avatar_max_bytes), "524288", 1, INT_MAX,
     "largest upload PATCH /me takes as an avatar (a picture every signed-in user may "
     "download), in bytes"},
    {"reactions_waiting_max", "CHAT_REACTIONS_WAITING_MAX", INT(reactions_waiting_max), "64", 1,
     1000000,
     "reactions to one message waiting on a node behind the one being stored; past it "
     "message:react is answered `unavailable` (chatd_reactions_refused_total)"},
};

#define NOPTIONS (sizeof options / sizeof options[0])

static int set_option(chat_config *cfg, const option_def *o, const char *value)
{
    void *field = (char *)cfg + o->offset;
    if (o->type == OPT_STR) {
        char *copy = value ? strdup(value) : NULL;
        if (value && !copy) {
            return CHAT_ENOMEM;
        }
        free(*(char **)field);
        *(char **)field = copy;
        return 0;
    }
    char *end;
    errno = 0;
    long n = strtol(value, &end, 10);
    if (errno || end == value || *end || n < o->min || n > o->max) {
        return CHAT_EINVAL;
    }
    *(int *)field = (int)n;
    return 0;
}

int chat_config_init(chat_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    for (size_t i = 0; i < NOPTIONS; i++) {
        if (options[i].def && set_option(cfg, &options[i], options[i].def)) {
            chat_config_free(cfg);
            return CHAT_ENOMEM;
        }
    }
    return 0;
}

void chat_config_free(chat_config *cfg)
{
    for (size_t i = 0; i < NOPTIONS; i++) {
        if (options[i].type == OPT_STR) {
            char **field = (char **)((char *)cfg + options[i].offset);
            free(*field);
            *field = NULL;
        }
    }
}

int chat_config_set(chat_config *cfg, const char *name, const char *value)
{
    for (size_t i = 0; i < NOPTIONS; i++) {
        if (strcmp(options[i].name, name) == 0) {
            int rc = set_option(cfg, &options[i], value);
            if (rc == 0 && strcmp(name, "log_level") == 0) {
                rc = chat_log_set_level(value);
            }
            if (rc == 0 && (strcmp(name, "listen") == 0 ||
                            (strcmp(name, "admin_listen") == 0 && *value))) {
                char host[128];
                int port;
                rc = chat__parse_listen(value, host, sizeof host, &port);
            }
            return rc;
        }
    }
    return CHAT_EINVAL;
}

int chat_config_expect(const char *name, char *buf, size_t len)
{
    if (len) {
        buf[0] = '\0';
    }
    for (size_t i = 0; i < NOPTIONS; i++) {
        const option_def *o = &options[i];
        if (strcmp(o->name, name) != 0) {
            continue;
        }
        if (o->type == OPT_INT) {
            snprintf(buf, len, "an integer from %d to %d", o->min, o->max);
        } else if (strcmp(name, "listen") == 0 || strcmp(name, "admin_listen") == 0) {
            snprintf(buf, len, "host:port, e.g. 127.0.0.1:8080 or [::1]:8080");
        } else if (strcmp(name, "log_level") == 0) {
            snprintf(buf, len, "debug, info, warn or error");
        } else {
            snprintf(buf, len, "a string");
        }
        return 0;
    }
    return CHAT_EINVAL;
}

int chat_config_from_env(chat_config *cfg, const char **bad)
{
    for (size_t i = 0; i < NOPTIONS; i++) {
        const char *v = getenv(options[i].env);
        if (v && chat_config_set(cfg, options[i].name, v)) {
            *bad = options[i].env;
            return CHAT_EINVAL;
        }
    }
    return 0;
}

void chat_config_describe(void (*fn)(const char *, const char *, const char *, const char *,
                                     void *),
                          void *arg)
{
    for (size_t i = 0; i < NOPTIONS; i++) {
        fn(options[i].name, options[i].env, options[i].def, options[i].help, arg);
    }
}

int chat__parse_listen(const char *s, char *host, size_t hostlen, int *port)
{
    const char *colon = strrchr(s, ':');
    if (!colon || (size_t)(colon - s) >= hostlen) {
        return CHAT_EINVAL;
    }
    const char *h = s;
    size_t n = (size_t)(colon - s);
    if (n >= 2 && h[0] == '[' && h[n - 1] == ']') { /* [::1]:8080 */
        h++;
        n -= 2;
    }
    memcpy(host, h, n);
    host[n] = '\0';
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (end == colon + 1 || *end || p < 0 || p > 65535) {
        return CHAT_EINVAL;
    }
    *port = (int)p;
    return 0;
}
