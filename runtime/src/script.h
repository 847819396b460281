/* script.h: the Lua 5.4 host. Loads lua/ (the shipped library) and the scripts folder into a
 * sandboxed state, runs hooks in coroutines under an instruction budget and a memory cap, and
 * swaps in a new state on reload only when every file loads. */
#ifndef CHAT_SCRIPT_H
#define CHAT_SCRIPT_H

#include <jansson.h>
#include <lua.h>
#include <stddef.h>
#include <uv.h>

typedef struct chat_runtime chat_runtime;
typedef struct chat_script chat_script;

/* Builds the first state. On failure err holds "file:line: message". */
int chat__script_new(chat_script **out, chat_runtime *rt, char *err, size_t errlen);
void chat__script_free(chat_script *sc);
/* Builds a new state from the files and swaps it in; the old one serves the handlers already
 * running and is closed after them. On failure the old state keeps serving. */
int chat__script_reload(chat_script *sc, char *err, size_t errlen);
/* A reload in two phases (a cluster reload: every node prepares, then all commit or all
 * abort). prepare builds and loads a new state without serving it (replacing one prepared
 * before); on failure err holds "file:line: message" and nothing changes. commit swaps the
 * prepared state in (CHAT_ENOTFOUND when none is); abort drops it. reload = prepare+commit.
 * dir: the policies' folder to load (a cluster reload's published copy), NULL: scripts_dir. */
int chat__script_prepare(chat_script *sc, const char *dir, char *err, size_t errlen);
int chat__script_commit(chat_script *sc, int version); /* version > 0: serve as that one */
void chat__script_abort(chat_script *sc);
/* The prepared state's version and hash (0, "" when none is prepared). */
int chat__script_prepared_version(chat_script *sc);
const char *chat__script_prepared_hash(chat_script *sc);
/* The scripts' content hash: SHA-256 (hex) over each .lua file's path relative to its folder
 * and bytes, in path order, for scripts_dir then lua_dir. 0, or CHAT_ENOTFOUND. */
int chat__scripts_hash(const char *scripts_dir, const char *lua_dir, char out[65]);

/* The serving state's content hash (cluster.h chat__scripts_hash), "" before the first. */
const char *chat__script_hash(chat_script *sc);
/* fn(arg) runs instead of a local reload when the files change on disk. */
void chat__script_on_change(chat_script *sc, void (*fn)(void *arg), void *arg);
/* The loaded state's generation (1, 2, ...) and counters for /metrics. */
void chat__script_stats(chat_script *sc, int *version, unsigned long *reloads,
                        unsigned long *reload_failures, unsigned long *errors);
/* The Lua host's bounds as /metrics lines (appended to b; 0 or CHAT_ENOMEM). */
typedef struct chat_buf chat_buf;
int chat__script_metrics(chat_script *sc, chat_buf *b);
/* Counts a refusal for /metrics: what is "timers", "kv", "patterns". */
void chat__script_count_refusal(lua_State *L, const char *what);
/* Bindings report an expected failure as `nil, message, code` (code from the error table):
 * pushes the three values, returns 3. message NULL: the table's sentence. */
int chat__lua_fail(lua_State *L, int err, const char *message);

/* 1 when at least one handler is hooked on name: callers skip the Lua round trip otherwise. */
int chat__script_has(chat_script *sc, const char *hook);
/* A namespace other than "/" that a script declared; anonymous: connections without a token
 * are allowed there. 1 if declared. */
int chat__script_namespace(chat_script *sc, const char *nsp, int *anonymous);

/* The result of running a hook chain.
 * status 0: allowed; ev is the event after the handlers (they may rewrite it); for custom
 *   events ev["result"] holds what the handler returned (the ack), if anything, and
 *   ev["results"] every value when it returned several (an ack with several arguments);
 *   ev["accepted"] is {"userId": id} or {} (anonymous) when a handler returned chat.accept.
 *   Only the host sets these three: what a handler stored there itself is dropped.
 * status CHAT_E*: a handler rejected (code and message from chat.reject) or failed
 *   (CHAT_EINTERNAL; the error is logged with file and line). ev is NULL, or {"data": v}
 *   when the rejection carried data (chat.reject's third argument). ev is owned by the
 *   callback. */
typedef void (*chat_script_cb)(int status, const char *message, json_t *ev, void *arg);
/* Runs the handlers of hook in priority order in a new coroutine (chat.dispatch). Takes ev
 * (stolen); its top-level nulls are absent in Lua (no socket, an anonymous user). cb runs
 * exactly once, possibly before this returns. */
void chat__script_run(chat_script *sc, const char *hook, json_t *ev, chat_script_cb cb,
                      void *arg);
/* The same, when the host reads back only ev[read_back] (a static string): cb's ev holds
 * that field alone. cb NULL: a notification, nothing is read back (no conversion at all). */
void chat__script_run_reading(chat_script *sc, const char *hook, json_t *ev,
                              const char *read_back, chat_script_cb cb, void *arg);
/* An event with the parts every domain hook's event has, put into Lua straight from these
 * fields (no JSON object is built for it): the same table as chat__script_run_reading would
 * give for {"socket": {id, namespace, ip}, "user": {id[, username]}, "room": room or {id},
 * field: value}. socket_id NULL: no socket; user_id NULL or "": no user; room: a whole room
 * (borrowed), NULL: {"id": room_id}, no room when room_id is NULL too; value borrowed.
 * Everything is read before this returns. cb's ev is as for chat__script_run_reading. */
typedef struct chat_script_event {
    const char *socket_id, *socket_nsp, *socket_ip;
    const char *user_id, *username;
    json_t *room;
    const char *room_id;
    const char *field;
    json_t *value;
} chat_script_event;
void chat__script_run_event(chat_script *sc, const char *hook, const chat_script_event *ev,
                            const char *read_back, chat_script_cb cb, void *arg);

/* ---- for the bindings (lua_*.c) ---- */

/* The runtime of the state L belongs to. */
chat_runtime *chat__script_rt(lua_State *L);
/* Pending I/O from a binding: start the operation with chat__script_pending_new as its
 * callback argument; when it completes, push the results on the pending's thread and call
 * chat__script_pending_done. chat__script_await then returns to the binding's caller: it
 * yields the coroutine (server) or runs the loop until done (chatd --run). */
typedef struct chat_pending chat_pending;
/* Why L cannot wait for I/O here (loading, a nested coroutine), or NULL: bindings that hold C
 * resources ask before chat__script_pending_new, which raises with this message. */
const char *chat__script_wait_error(lua_State *L);
chat_pending *chat__script_pending_new(lua_State *L);
/* The operation never started: frees p. */
void chat__script_pending_cancel(chat_pending *p);
/* The cleanup of a pending operation: called when its coroutine is abandoned (its deadline
 * passed, a reload dropped it, the server stops) to stop the operation, after which its
 * completion must never come. Operations that cannot be stopped register none: their
 * completion still comes and its results are dropped. */
typedef void (*chat_pending_cancel_cb)(void *arg);
void chat__script_pending_on_cancel(chat_pending *p, chat_pending_cancel_cb cb, void *arg);
/* 1: chatd --run's top level waits by running the loop, so its timers must keep it alive;
 * 0: a coroutine waits, and what it waits on must not keep chatd from stopping. */
int chat__script_pending_sync(const chat_pending *p);
/* A timer or bot function's sleep: its own timer bounds it, no I/O deadline applies. */
void chat__script_pending_no_deadline(chat_pending *p);
/* Milliseconds the running hook may still wait for I/O; -1: no limit (timers, chatd --run). */
long chat__script_wait_left(lua_State *L);
lua_State *chat__script_pending_thread(chat_pending *p); /* where to push results */
void chat__script_pending_done(chat_pending *p, int nresults);
int chat__script_await(lua_State *L, chat_pending *p);
/* Runs fn (at the top of L's stack, popped) in a new coroutine of this state, with nargs
 * arguments below it; errors are logged. For timers and bot callbacks. */
void chat__script_spawn(lua_State *L, int nargs, const char *what);

/* Timers (lua_timer.c) register with their state so a reload can stop them. */
uv_loop_t *chat__script_loop(lua_State *L);
/* Timers by a key the state gives out (never reused): track fills key (which must live as
 * long as the timer: the map borrows it); find returns the live timer or NULL (it ended, or
 * the state retired). All O(1). */
#define CHAT_TIMER_KEY 20
int chat__script_track_timer(lua_State *L, uv_timer_t *t, char key[CHAT_TIMER_KEY]);
void chat__script_untrack_timer(lua_State *L, const char *key);
uv_timer_t *chat__script_timer_find(lua_State *L, const char *key);
int chat__lua_timer_cancel(lua_State *L);
/* Maps a protocol error code ("rate_limited") to CHAT_E*, 0 if unknown (from CHAT_ERRNO_MAP). */
int chat__script_reject_code(const char *code);
void chat__lua_push_array_mt(lua_State *L);
/* chat.binary values (lua_json.c). */
void chat__lua_push_binary(lua_State *L, const void *data, size_t len);
int chat__lua_binary_tostring(lua_State *L);
int chat__lua_binary_len(lua_State *L);

/* Lua <-> JSON (lua_json.c, also chat.json). Arrays from JSON carry the chat.array metatable
 * so they encode back as arrays, empty ones included. chat__lua_to_json returns NULL (and sets
 * err) for values JSON cannot carry. */
void chat__json_to_lua(lua_State *L, const json_t *v);
json_t *chat__lua_to_json(lua_State *L, int idx, const char **err);

/* Runs a Lua file with the real bindings, outside the sandbox (busted specs, tools). */
int chat__script_run_file(chat_runtime *rt, const char *path, int argc, char **argv);

#endif
