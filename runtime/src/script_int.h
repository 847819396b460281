/* script_int.h: what the three parts of the Lua host share (script_sandbox.c: the sandbox,
 * the memory cap and the instruction budget; script_state.c: states and their reload;
 * script_run.c: runs in coroutines and their pending I/O). Not for the bindings: they use
 * script.h. */
#ifndef CHAT_SCRIPT_INT_H
#define CHAT_SCRIPT_INT_H

#include <lua.h>
#include <uv.h>

#include "script.h"
#include "map.h"

typedef struct script_state script_state;
typedef struct script_run script_run;
typedef struct chat_config chat_config;

/* The rooms handed to hooks, each converted to Lua once (script_run.c): the Lua table stays
 * in the registry while the slot holds a reference to the jansson room it was built from. */
#define SCRIPT_ROOM_SLOTS 64
/* Coroutines whose run returned, kept for the next runs: a new one for every hook was a
 * thread, a stack grown twice and their collection per message (script_run.c). */
#define SCRIPT_SPARE_THREADS 8
typedef struct script_room {
    json_t *src; /* the room the table was built from (referenced), or NULL: empty slot */
    int ref;     /* the table, in the registry */
} script_room;

/* One generation of the scripts: a Lua state and what it owns outside Lua. */
struct script_state {
    lua_State *L;
    chat_script *host;
    int refs;            /* the host's while current, plus one per run and pending operation */
    int version;
    size_t mem, mem_cap;
    int capped;          /* script code is running: allocations past mem_cap fail (see
                          * script_call in script_sandbox.c, the one place that sets it) */
    script_run *current; /* the run being resumed (one at a time: one loop thread) */
    int loading;         /* top-level code runs without a run: nothing may wait for I/O */
    long load_budget;
    int sync;            /* chatd --run: bindings drive the loop instead of yielding */
    int retired;         /* replaced by a reload: timer runs still waiting are abandoned */
    chat_map timers;     /* uv timers created by this state by their key (lua_timer.c), closed
                          * when it retires: found and removed in O(1) */
    uint64_t timer_ids;  /* the last timer key given out */
    long pattern_steps;  /* limit of one string.find/match/gmatch/gsub call */
    char hash[65];       /* the files' content hash when they were loaded (cluster.h) */
    script_room rooms[SCRIPT_ROOM_SLOTS]; /* rooms converted for hooks, by a hash of their id */
    int spare[SCRIPT_SPARE_THREADS]; /* coroutines of finished runs (registry refs), reused */
    int nspare;
};

struct script_run {
    uint64_t started; /* uv_hrtime at start: chatd_hook_seconds */
    script_state *st;
    lua_State *co;
    int co_ref;
    int ev_ref;
    long budget;
    int killed;
    int returned;       /* the coroutine returned: it may serve another run */
    int awaiting;       /* yielded by chat__script_await: only a pending completion resumes it */
    const char *wait_error; /* set when resumed because its pending operation expired */
    uint64_t deadline;  /* loop time after which a hook may not wait any longer; 0: none */
    chat_script_cb cb;
    void *arg;
    const char *read_back; /* the one field of the event the host reads after, or NULL: all */
    char hook[96]; /* "event/" and an event name of up to 64 bytes */
};

struct chat_script {
    chat_runtime *rt;
    script_state *cur;
    int next_version;
    unsigned long reloads, reload_failures, errors;
    unsigned long timers_refused, kv_refused, waits_expired, patterns_refused;
    uv_fs_event_t watch[3];
    int nwatch;
    uv_timer_t debounce;
    uv_timer_t sweep;  /* expires pending operations past their deadline */
    int sweep_ready, sweep_on;
    chat_pending *pendings; /* operations that may expire or be abandoned */
    int closing; /* handles whose close callback is still owed */
    int states;  /* states not closed yet: a retired one may still finish handlers */
    int freed;   /* chat__script_free was called: free once closing and states are 0 */
    script_state *prepared; /* loaded by chat__script_prepare, waiting for commit or abort */
    void (*on_change)(void *arg); /* set: a change on disk calls it instead of reloading */
    void *on_change_arg;
};

#define SCRIPT_REJECT_KEY "chat.reject"
#define SCRIPT_ACCEPT_KEY "chat.accept" /* marks chat.accept(...) results */
#define SCRIPT_HOOKS_KEY "chat.hooks"
#define SCRIPT_NAMESPACES_KEY "chat.namespaces"
#define SCRIPT_STATE_KEY "chat.state"
#define SCRIPT_CHAIN_KEY "chat.chain"
#define SCRIPT_BUDGET_STEP 1000 /* instructions between two budget checks */

script_state *chat__script_state_of(lua_State *L);

/* script_sandbox.c */
void *chat__script_alloc(void *ud, void *ptr, size_t osize, size_t nsize);
void chat__script_budget_hook(lua_State *L, lua_Debug *ar);
/* Script code runs only through these: they turn the memory cap on for its duration. */
int chat__script_call(script_state *st, lua_State *L, int nargs, int nres);
int chat__script_resume(script_state *st, lua_State *co, int nargs, int *nres);
int chat__script_open_sandbox(lua_State *L, const chat_config *cfg, int sandboxed);
/* After the policies' shared globals are set: each file gets its own environment. */
void chat__script_push_env(lua_State *L);
int chat__script_open_patterns(lua_State *L);

/* script_state.c */
void chat__script_state_unref(script_state *st);

/* script_run.c */
/* Ends the waits of st's runs (NULL: every state's): all = 0 the timer and bot functions
 * (reload), all = 1 every run (shutdown). */
void chat__script_abandon(chat_script *sc, script_state *st, int all);
void chat__script_sweep_start(chat_script *sc);
/* Drops the rooms' references before the state closes. */
void chat__script_rooms_free(script_state *st);

#endif
