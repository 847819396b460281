/* script_run.c: runs. A hook chain, a timer's function or a bot callback runs in a coroutine
 * of its own under the instruction budget; a binding that waits for I/O registers a pending
 * operation and yields, and the completion resumes the coroutine with the results
 * (OpenResty's model). Every pending operation has a deadline, and a cleanup that runs when
 * its coroutine is abandoned (a reload, a timeout, shutdown): an abandoned coroutine cancels
 * its own pending work, and a completion that arrives after that is dropped. */
#include <lauxlib.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "rt.h"
#include "script_int.h"
#include "stats.h"

#define IO_DEADLINE_MS 60000 /* an I/O call of a timer or bot function (hooks: their own) */
#define SWEEP_MS 100         /* how often deadlines are checked */

struct chat_pending {
    script_state *st;
    script_run *run;  /* NULL: chatd --run's top level, which drives the loop itself */
    lua_State *L;
    int done;
    int nresults;
    int waiting;      /* the coroutine yielded and must be resumed */
    int pushing;      /* between chat__script_pending_thread and _done */
    int pushing_cap;  /* the memory cap as it was when the push began */
    int expired;      /* given up on (deadline, abandoned): the completion's results are dropped */
    uint64_t deadline; /* loop time; 0: none */
    chat_pending_cancel_cb cancel; /* stops the operation: its completion never comes */
    void *cancel_arg;
    chat_pending *next, **pprev; /* in the host's list while it may expire */
};

static void resume(script_run *run, int nargs);

/* ---- the answer ---- */

/* Maps a protocol error code ("rate_limited") to CHAT_E*, 0 if unknown; the codes are the
 * error table's (CHAT_ERRNO_MAP in chat.h), never restated here. */
int chat__script_reject_code(const char *code)
{
#define CHAT_ERRNO_CODE(name, c, status, msg)                                                  \
    if (strcmp(code, c) == 0) {                                                                \
        return CHAT_E##name;                                                                   \
    }
    CHAT_ERRNO_MAP(CHAT_ERRNO_CODE)
#undef CHAT_ERRNO_CODE
    return 0;
}

static void run_finish(script_run *run, int status, const char *message, json_t *ev)
{
    script_state *st = run->st;
    if (run->returned && st->nspare < SCRIPT_SPARE_THREADS && run->co_ref != LUA_NOREF) {
        lua_settop(run->co, 0); /* it returned: its status is LUA_OK, a new body may start */
        st->spare[st->nspare++] = run->co_ref;
    } else {
        luaL_unref(st->L, LUA_REGISTRYINDEX, run->co_ref);
    }
    luaL_unref(st->L, LUA_REGISTRYINDEX, run->ev_ref);
    chat__stats_hook(st->host->rt, run->hook, run->started);
    if (run->cb) {
        run->cb(status, message, ev, run->arg);
    } else {
        json_decref(ev);
    }
    free(run);
    chat__script_state_unref(st);
}

/* [co, message] -> the traceback of co under message (run protected: it allocates). */
static int traceback_p(lua_State *L)
{
    lua_State *co = lua_touserdata(L, 1);
    luaL_traceback(L, co, lua_touserdata(L, 2), 0);
    return 1;
}

/* The run's coroutine raised (its error object on top): log it with a traceback, answer
 * `internal`. */
static void run_failed(script_run *run)
{
    script_state *st = run->st;
    lua_State *L = st->L;
    char msg[1024];
    int type = lua_type(run->co, -1);
    if (type == LUA_TSTRING) {
        snprintf(msg, sizeof msg, "%s", lua_tostring(run->co, -1));
    } else {
        snprintf(msg, sizeof msg, "(error object is a %s value)", lua_typename(run->co, type));
    }
    const char *why = run->killed ? "a script ran past its instruction budget and was stopped"
                      : strcmp(msg, "not enough memory") == 0
                          ? "a script reached the memory cap (CHAT_LUA_MEMORY_MB) and was stopped"
                      : run->cb ? "a script raised an error; the client was told `internal`"
                                : "a timer's function raised an error";
    st->host->errors++;
    lua_pushcfunction(L, traceback_p);
    lua_pushlightuserdata(L, run->co);
    lua_pushlightuserdata(L, msg);
    int rc = lua_pcall(L, 2, 1, 0);
    chat__log(CHAT_LOG_ERROR, "script_error", why,
              json_pack("{s:s,s:s,s:s,s:i,s:I}", "hook", run->hook, "error", msg, "traceback",
                        rc == LUA_OK ? lua_tostring(L, -1) : msg, "version", st->version,
                        "lua_kb", (json_int_t)(st->mem / 1024)));
    lua_pop(L, 1);
    if (strcmp(msg, "not enough memory") == 0) {
        /* what the dead coroutine held goes now; what stays is kept by the scripts */
        luaL_unref(L, LUA_REGISTRYINDEX, run->co_ref);
        run->co_ref = LUA_NOREF;
        lua_gc(L, LUA_GCCOLLECT);
        if (st->mem > st->mem_cap / 10 * 9) {
            chat__log(CHAT_LOG_ERROR, "scripts_memory_full",
                      "the scripts keep what they allocate and their state stays full, so "
                      "every hook fails; fix the script and reload",
                      json_pack("{s:I,s:i}", "lua_kb", (json_int_t)(st->mem / 1024), "version",
                                st->version));
        }
    }
    /* a job keeps its error (retries, the dead-letter list); a client gets a sentence */
    run_finish(run, CHAT_EINTERNAL,
               strncmp(run->hook, "job/", 4) == 0
                   ? msg
                   : "a server script failed; the operator has been told",
               NULL);
}

/* A string field of a table at idx, or def: never converts (that could raise here). */
static void copy_field(lua_State *co, int idx, const char *name, const char *def, char *out,
                       size_t outlen)
{
    lua_pushstring(co, name);
    int type = lua_rawget(co, idx < 0 ? idx - 1 : idx);
    snprintf(out, outlen, "%s", type == LUA_TSTRING ? lua_tostring(co, -1) : def);
    lua_pop(co, 1);
}

/* The coroutine returned: turn its result into the callback's answer. */
static void run_returned(script_run *run, int nres)
{
    script_state *st = run->st;
    lua_State *co = run->co;
    run->returned = 1; /* every way out below empties its stack */
    lua_State *L = st->L;
    json_t *accepted = NULL; /* chat.accept(...): {"userId": id} or {} (anonymous) */
    if (nres > 0 && lua_istable(co, -nres) && lua_getmetatable(co, -nres)) {
        lua_getfield(co, LUA_REGISTRYINDEX, SCRIPT_REJECT_KEY);
        int is_reject = lua_rawequal(co, -1, -2);
        lua_pop(co, 1);
        lua_getfield(co, LUA_REGISTRYINDEX, SCRIPT_ACCEPT_KEY);
        int is_accept = lua_rawequal(co, -1, -2);
        lua_pop(co, 2);
        if (is_reject) {
            char code[32], msg[512];
            copy_field(co, -nres, "code", "policy_rejected", code, sizeof code);
            copy_field(co, -nres, "message", "refused by the server's policy", msg, sizeof msg);
            int err = chat__script_reject_code(code);
            /* data, when given, goes with the refusal (a CONNECT_ERROR's data): {"data": v} */
            json_t *data = NULL;
            lua_pushliteral(co, "data");
            if (lua_rawget(co, -nres - 1) != LUA_TNIL) {
                data = chat__lua_to_json(co, -1, NULL);
            }
            lua_settop(co, 0);
            run_finish(run, err ? err : CHAT_EPOLICY, msg,
                       data ? json_pack("{s:o}", "data", data) : NULL);
            return;
        }
        if (is_accept) {
            char user[32];
            copy_field(co, -nres, "userId", "", user, sizeof user);
            accepted = user[0] ? json_pack("{s:s}", "userId", user) : json_object();
            lua_settop(co, 0);
            nres = 0;
        }
    }
    if (!run->cb) { /* a notification or a timer: nobody reads the event or result back */
        json_decref(accepted);
        lua_settop(co, 0);
        run_finish(run, 0, NULL, NULL);
        return;
    }
    const char *jerr = NULL;
    json_t *result = NULL;
    json_t *results = NULL; /* several values: every one of them (an ack's arguments) */
    if (nres > 1) {
        results = json_array();
        for (int i = -nres; results && i < 0; i++) {
            json_t *v = chat__lua_to_json(co, i, &jerr);
            if (!v || json_array_append_new(results, v)) {
                json_decref(results);
                results = NULL;
                jerr = jerr ? jerr : "could not be converted (out of memory)";
            }
        }
        if (!results) {
            lua_settop(co, 0);
            lua_pushfstring(co, "%s: the handler's return values %s", run->hook, jerr);
            run_failed(run);
            return;
        }
        result = json_incref(json_array_get(results, 0));
    } else if (nres > 0 && !lua_isnil(co, -nres) && !lua_isboolean(co, -nres)) {
        result = chat__lua_to_json(co, -nres, &jerr);
        if (!result) {
            lua_settop(co, 0);
            lua_pushfstring(co, "%s: the handler's return value %s", run->hook, jerr);
            run_failed(run);
            return;
        }
    }
    lua_settop(co, 0);
    lua_rawgeti(L, LUA_REGISTRYINDEX, run->ev_ref);
    json_t *ev;
    if (run->read_back && lua_istable(L, -1)) {
        /* only the field the host reads: converting the whole event (the room with its
         * participants, the user, the socket) back to JSON cost more than the policies */
        lua_getfield(L, -1, run->read_back);
        json_t *v = lua_isnil(L, -1) ? NULL : chat__lua_to_json(L, -1, &jerr);
        ev = v || lua_isnil(L, -1) ? json_object() : NULL;
        if (ev && v) {
            json_object_set_new(ev, run->read_back, v);
        } else {
            json_decref(v);
        }
        lua_pop(L, 1);
    } else {
        ev = chat__lua_to_json(L, -1, &jerr);
    }
    lua_pop(L, 1);
    if (!ev) {
        json_decref(result);
        json_decref(results);
        json_decref(accepted);
        lua_pushfstring(co, "%s: the event was changed into something JSON cannot carry (%s)",
                        run->hook, jerr);
        run_failed(run);
        return;
    }
    /* the answer is what the handler returned, never what it stored in ev under these */
    json_object_del(ev, "result");
    json_object_del(ev, "results");
    json_object_del(ev, "accepted");
    if (accepted) {
        json_object_set_new(ev, "accepted", accepted);
    }
    if (result) {
        json_object_set_new(ev, "result", result);
    }
    if (results) {
        json_object_set_new(ev, "results", results);
    }
    run_finish(run, 0, NULL, ev);
}

int chat__lua_fail(lua_State *L, int err, const char *message)
{
    lua_pushnil(L);
    lua_pushstring(L, message ? message : chat_strerror(err));
    lua_pushstring(L, chat_errcode(err));
    return 3;
}

/* ---- runs ---- */

/* Runs the coroutine until it returns, fails or waits; the host's own work after it (the
 * answer, the log) runs with the memory cap off, whatever the caller had. */
static void resume(script_run *run, int nargs)
{
    script_state *st = run->st;
    script_run *outer = st->current;
    int outer_cap = st->capped;
    st->refs++; /* run_finish may drop the last other reference */
    st->current = run;
    run->awaiting = 0;
    int nres = 0;
    int rc = chat__script_resume(st, run->co, nargs, &nres);
    st->current = outer;
    st->capped = 0;
    if (rc == LUA_YIELD && run->awaiting) {
        lua_pop(run->co, nres); /* a binding is waiting on I/O: its completion resumes us */
    } else if (rc == LUA_YIELD) {
        /* a bare coroutine.yield() in a handler: nothing would ever resume it */
        lua_pop(run->co, nres);
        lua_pushfstring(run->co, "%s: coroutine.yield() in a handler; wait with "
                                 "chat.timer.sleep or a chat binding instead", run->hook);
        run_failed(run);
    } else if (rc != LUA_OK) {
        run_failed(run);
    } else {
        run_returned(run, nres);
    }
    st->capped = outer_cap;
    chat__script_state_unref(st);
}

static script_run *run_new(script_state *st, const char *hook, chat_script_cb cb, void *arg)
{
    script_run *run = calloc(1, sizeof *run);
    if (!run) {
        return NULL;
    }
    const chat_config *cfg = &st->host->rt->cfg;
    run->st = st;
    run->started = uv_hrtime();
    st->refs++;
    run->cb = cb;
    run->arg = arg;
    run->budget = cfg->lua_budget;
    run->co_ref = LUA_NOREF;
    run->ev_ref = LUA_NOREF;
    if (cb && strncmp(hook, "job/", 4) == 0) {
        /* a job's handler (jobs.h): no client waits, its lease bounds it */
        run->deadline = uv_now(st->host->rt->loop) + (uint64_t)cfg->jobs_timeout_ms;
    } else if (cb && cfg->lua_hook_wait_ms > 0) {
        /* a client waits for the answer: the hook may not keep it waiting for long */
        run->deadline = uv_now(st->host->rt->loop) + (uint64_t)cfg->lua_hook_wait_ms;
    }
    snprintf(run->hook, sizeof run->hook, "%s", hook);
    return run;
}

/* Gives the run a coroutine (budgeted) anchored in the registry: a spare one whose run
 * returned (a finished coroutine takes a new body, lua_resume's manual), or a new one.
 * Coroutines the script creates inherit the hook (lua_newthread copies it), so the budget
 * holds on every thread; setting it again on a spare one restarts its instruction count, so
 * the budget's checks fall as in a new thread. */
static void run_thread(lua_State *L, script_run *run)
{
    script_state *st = run->st;
    if (st->nspare > 0) {
        run->co_ref = st->spare[--st->nspare];
        lua_rawgeti(L, LUA_REGISTRYINDEX, run->co_ref);
        run->co = lua_tothread(L, -1);
        lua_pop(L, 1);
    } else {
        run->co = lua_newthread(L);
        run->co_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    lua_sethook(run->co, chat__script_budget_hook, LUA_MASKCOUNT, SCRIPT_BUDGET_STEP);
}

/* ---- events into Lua ---- */

/* Pushes a copy of the table at idx, a JSON value as chat__json_to_lua made it: an array
 * holds 1..n and has the array metatable, an object only string keys. Tables are copied
 * all the way down; the other values (strings, numbers, chat.binary) cannot be changed in
 * place and are shared. Copying Lua values costs a fraction of converting the JSON again:
 * no string is hashed or interned. */
static void copy_json_table(lua_State *L, int src)
{
    src = lua_absindex(L, src);
    luaL_checkstack(L, 4, "the event is nested too deeply");
    if (lua_getmetatable(L, src)) { /* an array */
        lua_Integer n = (lua_Integer)lua_rawlen(L, src);
        lua_createtable(L, (int)n, 0);
        lua_insert(L, -2);
        lua_setmetatable(L, -2);
        for (lua_Integer i = 1; i <= n; i++) {
            if (lua_rawgeti(L, src, i) == LUA_TTABLE) {
                copy_json_table(L, -1);
                lua_remove(L, -2);
            }
            lua_rawseti(L, -2, i);
        }
        return;
    }
    int n = 0;
    lua_pushnil(L);
    while (lua_next(L, src)) {
        lua_pop(L, 1);
        n++;
    }
    lua_createtable(L, 0, n);
    lua_pushnil(L);
    while (lua_next(L, src)) { /* [copy, k, v] */
        if (lua_type(L, -1) == LUA_TTABLE) {
            copy_json_table(L, -1);
            lua_remove(L, -2);
        }
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_rawset(L, -4); /* [copy, k] */
    }
}

static unsigned room_slot(const char *id)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (; *id; id++) {
        h = (h ^ (uint8_t)*id) * 16777619u;
    }
    return h % SCRIPT_ROOM_SLOTS;
}

/* A whole room ({id, participants, ...}) as the handlers see it: a table of their own that
 * they may change as they like, copied from a table converted once per version of the room
 * (rebuilding a room of 100 from JSON for every message cost more than the policies). The
 * node's copy of a room (members.c) is replaced, never changed in place, when the room
 * changes (a join, a leave): the jansson object is the version. The slot keeps a reference
 * to it, so while it is cached no other room can take its address. */
static void room_to_lua(script_state *st, lua_State *L, json_t *room)
{
    const char *id = json_string_value(json_object_get(room, "id"));
    if (!id || !json_object_get(room, "participants")) { /* {id} and the like: small */
        chat__json_to_lua(L, room);
        return;
    }
    script_room *slot = &st->rooms[room_slot(id)];
    if (slot->src != room) {
        chat__json_to_lua(L, room);
        if (slot->src) {
            lua_rawseti(L, LUA_REGISTRYINDEX, slot->ref);
            json_decref(slot->src);
        } else {
            slot->ref = luaL_ref(L, LUA_REGISTRYINDEX);
        }
        slot->src = json_incref(room);
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, slot->ref);
    copy_json_table(L, -1);
    lua_remove(L, -2);
}

void chat__script_rooms_free(script_state *st)
{
    for (int i = 0; i < SCRIPT_ROOM_SLOTS; i++) {
        json_decref(st->rooms[i].src); /* the tables go with the state */
        st->rooms[i].src = NULL;
    }
}

/* An event as the handlers see it: top-level nulls (no socket, an anonymous user) are absent,
 * so `if ev.user then` reads as it should. */
static void event_to_lua(script_state *st, lua_State *L, json_t *ev)
{
    if (!json_is_object(ev)) {
        chat__json_to_lua(L, ev);
        return;
    }
    const char *k;
    json_t *v;
    lua_createtable(L, 0, (int)json_object_size(ev));
    json_object_foreach(ev, k, v) {
        if (json_is_null(v)) {
            continue;
        }
        if (json_is_object(v) && strcmp(k, "room") == 0) {
            room_to_lua(st, L, v);
        } else {
            chat__json_to_lua(L, v);
        }
        lua_setfield(L, -2, k);
    }
}

static void push_field(lua_State *L, const char *k, const char *v)
{
    lua_pushstring(L, v);
    lua_setfield(L, -2, k);
}

static void event_parts_to_lua(script_state *st, lua_State *L, const chat_script_event *ev)
{
    lua_createtable(L, 0, 4);
    if (ev->socket_id) {
        lua_createtable(L, 0, 3);
        push_field(L, "id", ev->socket_id);
        push_field(L, "namespace", ev->socket_nsp);
        push_field(L, "ip", ev->socket_ip);
        lua_setfield(L, -2, "socket");
    }
    if (ev->user_id && ev->user_id[0]) {
        int named = ev->username && ev->username[0];
        lua_createtable(L, 0, 1 + named);
        push_field(L, "id", ev->user_id);
        if (named) {
            push_field(L, "username", ev->username);
        }
        lua_setfield(L, -2, "user");
    }
    if (ev->room || ev->room_id) {
        if (ev->room) {
            room_to_lua(st, L, ev->room);
        } else {
            lua_createtable(L, 0, 1);
            push_field(L, "id", ev->room_id);
        }
        lua_setfield(L, -2, "room");
    }
    if (ev->field && ev->value && !json_is_null(ev->value)) {
        chat__json_to_lua(L, ev->value);
        lua_setfield(L, -2, ev->field);
    }
}

/* What a run starts from: a JSON event, or its parts. */
typedef struct run_start {
    script_run *run;
    json_t *ev;
    const chat_script_event *parts;
} run_start;

/* [run_start] (light userdata): the coroutine with the chain, the hook name and the event. */
static int run_start_p(lua_State *L)
{
    run_start *rs = lua_touserdata(L, 1);
    script_run *run = rs->run;
    run_thread(L, run);
    if (rs->parts) {
        event_parts_to_lua(run->st, L, rs->parts);
    } else {
        event_to_lua(run->st, L, rs->ev);
    }
    run->ev_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_State *co = run->co;
    lua_getfield(co, LUA_REGISTRYINDEX, SCRIPT_CHAIN_KEY);
    lua_pushstring(co, run->hook);
    lua_rawgeti(co, LUA_REGISTRYINDEX, run->ev_ref);
    return 0;
}

/* The host's call failed before any script code ran (the allocator failed): log, count. */
static void run_not_started(script_run *run, lua_State *L)
{
    char error[256];
    snprintf(error, sizeof error, "%s", lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "?");
    lua_pop(L, 1);
    run->st->host->errors++;
    chat__log(CHAT_LOG_ERROR, "script_error", "a hook could not be started",
              json_pack("{s:s,s:s}", "hook", run->hook, "error", error));
    run_finish(run, CHAT_EINTERNAL, "a server script failed; the operator has been told",
               NULL);
}

void chat__script_run(chat_script *sc, const char *hook, json_t *ev, chat_script_cb cb,
                      void *arg)
{
    chat__script_run_reading(sc, hook, ev, NULL, cb, arg);
}

static void run_begin(script_run *run, json_t *ev, const chat_script_event *parts)
{
    lua_State *L = run->st->L;
    run_start rs = {run, ev, parts};
    lua_pushcfunction(L, run_start_p);
    lua_pushlightuserdata(L, &rs);
    int rc = lua_pcall(L, 1, 0, 0);
    json_decref(ev);
    if (rc != LUA_OK) {
        run_not_started(run, L);
        return;
    }
    resume(run, 2);
}

void chat__script_run_reading(chat_script *sc, const char *hook, json_t *ev,
                              const char *read_back, chat_script_cb cb, void *arg)
{
    script_state *st = sc ? sc->cur : NULL;
    script_run *run = st ? run_new(st, hook, cb, arg) : NULL;
    if (!run) {
        if (cb) {
            cb(st ? CHAT_ENOMEM : 0, NULL, ev, arg);
        } else {
            json_decref(ev);
        }
        return;
    }
    run->read_back = read_back;
    run_begin(run, ev, NULL);
}

void chat__script_run_event(chat_script *sc, const char *hook, const chat_script_event *ev,
                            const char *read_back, chat_script_cb cb, void *arg)
{
    script_state *st = sc ? sc->cur : NULL;
    script_run *run = st ? run_new(st, hook, cb, arg) : NULL;
    if (!run) {
        if (cb) { /* no scripts: allowed as it is */
            json_t *as_is = json_object();
            if (as_is && ev->field && ev->value) {
                json_object_set(as_is, ev->field, ev->value);
            }
            cb(st ? CHAT_ENOMEM : 0, NULL, as_is, arg);
        }
        return;
    }
    run->read_back = read_back;
    run_begin(run, NULL, ev);
}

/* [run, fn, args...]: the run's coroutine holding fn and its arguments. */
static int spawn_p(lua_State *L)
{
    script_run *run = lua_touserdata(L, 1);
    lua_remove(L, 1);
    int n = lua_gettop(L);
    run_thread(L, run);
    if (!lua_checkstack(run->co, n)) {
        return luaL_error(L, "out of memory");
    }
    lua_xmove(L, run->co, n);
    return 0;
}

void chat__script_spawn(lua_State *L, int nargs, const char *what)
{
    script_state *st = chat__script_state_of(L);
    script_run *run = run_new(st, what, NULL, NULL);
    if (!run) {
        lua_pop(L, nargs + 1);
        return;
    }
    lua_pushcfunction(L, spawn_p);
    lua_pushlightuserdata(L, run);
    lua_rotate(L, -(nargs + 3), 2); /* [.., spawn_p, run, fn, args...] */
    if (lua_pcall(L, nargs + 2, 0, 0) != LUA_OK) {
        run_not_started(run, L);
        return;
    }
    resume(run, nargs);
}

/* ---- pending I/O ---- */

chat_runtime *chat__script_rt(lua_State *L)
{
    lua_getfield(L, LUA_REGISTRYINDEX, "chat.rt");
    chat_runtime *rt = lua_touserdata(L, -1);
    lua_pop(L, 1);
    return rt;
}

static uint64_t loop_now(script_state *st) { return uv_now(st->host->rt->loop); }

const char *chat__script_wait_error(lua_State *L)
{
    script_state *st = chat__script_state_of(L);
    if (st->loading) {
        return "scripts cannot wait for I/O while loading; do it in a hook or a timer";
    }
    /* a hook or timer coroutine yields; the top level of `chatd --run` drives the loop */
    if (!(st->current && st->current->co == L) && !(st->sync && !st->current)) {
        return "I/O must be called from the handler itself, not a nested coroutine";
    }
    if (st->host->freed) {
        return "the server is stopping";
    }
    if (st->current && st->current->deadline && loop_now(st) >= st->current->deadline) {
        return "the hook has waited as long as it may (CHAT_LUA_HOOK_WAIT_MS); answer without "
               "more I/O";
    }
    return NULL;
}

long chat__script_wait_left(lua_State *L)
{
    script_state *st = chat__script_state_of(L);
    script_run *run = st->current && st->current->co == L ? st->current : NULL;
    if (!run || !run->deadline) {
        return -1;
    }
    uv_update_time(st->host->rt->loop);
    uint64_t now = loop_now(st);
    return now >= run->deadline ? 0 : (long)(run->deadline - now);
}

static void pending_link(chat_pending *p)
{
    chat_script *sc = p->st->host;
    chat_pending **head = &sc->pendings;
    p->next = *head;
    p->pprev = head;
    if (*head) {
        (*head)->pprev = &p->next;
    }
    *head = p;
    chat__script_sweep_start(sc);
}

static void pending_unlink(chat_pending *p)
{
    if (p->pprev) {
        *p->pprev = p->next;
        if (p->next) {
            p->next->pprev = p->pprev;
        }
        p->pprev = NULL;
        p->next = NULL;
    }
}

static void pending_free(chat_pending *p)
{
    script_state *st = p->st;
    pending_unlink(p);
    free(p);
    chat__script_state_unref(st);
}

chat_pending *chat__script_pending_new(lua_State *L)
{
    script_state *st = chat__script_state_of(L);
    const char *why = chat__script_wait_error(L);
    if (why) {
        luaL_error(L, "%s", why);
    }
    script_run *run = st->current && st->current->co == L ? st->current : NULL;
    chat_pending *p = calloc(1, sizeof *p);
    if (!p) {
        luaL_error(L, "out of memory");
    }
    p->st = st;
    p->run = run;
    p->L = L;
    st->refs++; /* a completion may come after its run is gone: the state stays till then */
    if (run) {
        p->deadline = run->deadline ? run->deadline : loop_now(st) + IO_DEADLINE_MS;
        pending_link(p);
    }
    return p;
}

void chat__script_pending_on_cancel(chat_pending *p, chat_pending_cancel_cb cb, void *arg)
{
    p->cancel = cb;
    p->cancel_arg = arg;
}

void chat__script_pending_no_deadline(chat_pending *p)
{
    if (p->run && !p->run->deadline) {
        p->deadline = 0; /* a timer's sleep: its own timer is its deadline */
    }
}

void chat__script_pending_cancel(chat_pending *p) { pending_free(p); }

int chat__script_pending_sync(const chat_pending *p) { return p->run == NULL; }

/* From here to chat__script_pending_done the host pushes results: never capped (a failure
 * here would be outside any protected call). An expired operation's results go to the main
 * thread and are dropped. */
lua_State *chat__script_pending_thread(chat_pending *p)
{
    if (!p->pushing) {
        p->pushing = 1;
        p->pushing_cap = p->st->capped;
        p->st->capped = 0;
    }
    return p->expired ? p->st->L : p->L;
}

void chat__script_pending_done(chat_pending *p, int nresults)
{
    if (p->pushing) {
        p->pushing = 0;
        p->st->capped = p->pushing_cap;
    }
    if (p->expired) {
        lua_pop(p->st->L, nresults);
        pending_free(p);
        return;
    }
    pending_unlink(p);
    p->done = 1;
    p->nresults = nresults;
    if (p->waiting) {
        script_run *run = p->run;
        pending_free(p);
        resume(run, nresults);
    }
}

/* Resumed: the results pushed by chat__script_pending_done are the whole stack, or the wait
 * was given up on and the call raises. */
static int await_k(lua_State *L, int status, lua_KContext ctx)
{
    (void)status;
    (void)ctx;
    script_state *st = chat__script_state_of(L);
    script_run *run = st->current;
    if (run && run->wait_error) {
        const char *why = run->wait_error;
        run->wait_error = NULL;
        return luaL_error(L, "%s", why);
    }
    return lua_gettop(L);
}

int chat__script_await(lua_State *L, chat_pending *p)
{
    if (!p->run) {
        while (!p->done) {
            uv_run(p->st->host->rt->loop, UV_RUN_ONCE);
        }
    }
    if (p->done) {
        int n = p->nresults;
        pending_free(p);
        return n;
    }
    p->waiting = 1;
    p->run->awaiting = 1;
    lua_settop(L, 0); /* the results will be all that is on the stack */
    return lua_yieldk(L, 0, 0, await_k);
}

/* Gives up on p: its cleanup cancels the operation (or its completion is dropped when it
 * comes), and its run is resumed with an error (resume) or dropped without running again. */
static void pending_expire(chat_pending *p, const char *why, int resume_run)
{
    script_run *run = p->run;
    pending_unlink(p);
    p->expired = 1;
    int cancelled = 0;
    if (p->cancel) {
        p->cancel(p->cancel_arg);
        cancelled = 1;
    }
    int waiting = p->waiting;
    if (cancelled) {
        pending_free(p);
    }
    if (!run || !waiting) {
        return;
    }
    if (resume_run) {
        run->wait_error = why;
        resume(run, 0);
        return;
    }
    chat__log(CHAT_LOG_INFO, "script_abandoned", why,
              json_pack("{s:s,s:i}", "hook", run->hook, "version", run->st->version));
    run_finish(run, CHAT_EUNAVAIL, why, NULL);
}

/* A reload (all = 0): the timer and bot functions of a retired state that still wait are
 * dropped, their operations cancelled; hooks finish on it (they have a deadline). Shutdown
 * (all = 1): every wait ends, hooks fail. */
void chat__script_abandon(chat_script *sc, script_state *st, int all)
{
    for (int again = 1; again;) {
        again = 0;
        for (chat_pending *p = sc->pendings; p; p = p->next) {
            if ((!st || p->st == st) && p->run && (all || !p->run->cb)) {
                pending_expire(p, all ? "the server is stopping"
                                      : "its scripts were replaced by a reload", all);
                again = 1; /* the list changed under us */
                break;
            }
        }
    }
}

static void sweep_cb(uv_timer_t *t)
{
    chat_script *sc = t->data;
    uint64_t now = uv_now(sc->rt->loop);
    for (int again = 1; again;) {
        again = 0;
        for (chat_pending *p = sc->pendings; p; p = p->next) {
            if (p->deadline && now >= p->deadline) {
                sc->waits_expired++;
                pending_expire(p, p->run && p->run->cb
                                      ? "the hook waited longer than it may "
                                        "(CHAT_LUA_HOOK_WAIT_MS) and was stopped"
                                      : "an I/O call took longer than 60 s and was given up",
                               1);
                again = 1;
                break;
            }
        }
    }
    if (!sc->pendings) {
        uv_timer_stop(t);
        sc->sweep_on = 0;
    }
}

void chat__script_sweep_start(chat_script *sc)
{
    if (sc->sweep_ready && !sc->sweep_on) {
        sc->sweep_on = 1;
        uv_timer_start(&sc->sweep, sweep_cb, SWEEP_MS, SWEEP_MS);
    }
}
