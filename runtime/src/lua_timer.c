/* lua_timer.c: chat.timer.after(ms, fn) and chat.timer.every(ms, fn), each returning a
 * handle with :cancel(). fn runs in its own coroutine (it may wait for I/O). Timers belong to
 * the scripts' generation: a reload stops them and the new scripts start their own. A timer
 * always runs on a later pass of the loop than the code that started it, so a chain of
 * timers that start timers leaves room for I/O between two links; the number of pending
 * timers is bounded (CHAT_LUA_TIMERS_MAX). */
#include <lauxlib.h>
#include <stdlib.h>

#include "rt.h"
#include "script.h"

typedef struct lua_timer {
    uv_timer_t handle; /* first: the state frees the handle's memory when it retires */
    lua_State *L;      /* the state's main thread */
    int fn_ref;
    int repeat;
    char key[CHAT_TIMER_KEY]; /* its key in the state's timers, held by its cancel handle */
} lua_timer;

static void timer_free(uv_handle_t *h) { free(h); }

static void timer_cancel(lua_timer *t)
{
    chat__script_untrack_timer(t->L, t->key);
    luaL_unref(t->L, LUA_REGISTRYINDEX, t->fn_ref);
    uv_close((uv_handle_t *)&t->handle, timer_free);
}

static void timer_fire(uv_timer_t *h)
{
    lua_timer *t = (lua_timer *)h;
    lua_State *L = t->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, t->fn_ref);
    if (!t->repeat) {
        timer_cancel(t); /* the function is on the stack: safe to drop its reference */
    }
    chat__script_spawn(L, 0, "timer");
}

static int start(lua_State *L, int repeat)
{
    lua_Integer ms = luaL_checkinteger(L, 1);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    luaL_argcheck(L, ms >= 0 && ms <= 7 * 86400 * 1000, 1, "0 ms to 7 days");
    luaL_argcheck(L, !repeat || ms >= 10, 1, "every: at least 10 ms");
    if (ms == 0) {
        /* libuv runs a timer due now in the pass that started it: a function that starts
         * after(0) again would never give the loop back. 1 ms puts it on a later pass. */
        ms = 1;
    }
    lua_timer *t = calloc(1, sizeof *t);
    if (!t) {
        return luaL_error(L, "out of memory");
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
    t->L = lua_tothread(L, -1);
    lua_pop(L, 1);
    t->repeat = repeat;
    lua_pushvalue(L, 2);
    t->fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    uv_timer_init(chat__script_loop(L), &t->handle);
    uv_unref((uv_handle_t *)&t->handle); /* a script's schedule does not keep chatd running */
    int rc = chat__script_track_timer(L, &t->handle, t->key);
    if (rc) {
        luaL_unref(L, LUA_REGISTRYINDEX, t->fn_ref);
        uv_close((uv_handle_t *)&t->handle, timer_free);
        if (rc == CHAT_ETOOBIG) {
            return luaL_error(L, "too many timers pending (CHAT_LUA_TIMERS_MAX = %d); cancel "
                                 "some or start fewer",
                              chat__script_rt(L)->cfg.lua_timers_max);
        }
        return luaL_error(L, "out of memory");
    }
    /* the loop's clock is as old as this loop iteration: a script may have run for a while */
    uv_update_time(chat__script_loop(L));
    uv_timer_start(&t->handle, timer_fire, (uint64_t)ms, repeat ? (uint64_t)ms : 0);
    /* the handle: {cancel = function} with the timer's key as its upvalue (never a pointer:
     * the timer may be gone when cancel is called) */
    lua_newtable(L);
    lua_pushstring(L, t->key);
    lua_pushcclosure(L, chat__lua_timer_cancel, 1);
    lua_setfield(L, -2, "cancel");
    return 1;
}

int chat__lua_timer_cancel(lua_State *L)
{
    const char *key = lua_tostring(L, lua_upvalueindex(1));
    /* only a timer still alive in this state is closed: it may have fired or been retired */
    lua_timer *t = key ? (lua_timer *)chat__script_timer_find(L, key) : NULL;
    if (t) {
        timer_cancel(t);
    }
    return 0;
}

typedef struct sleep_req {
    uv_timer_t handle;
    chat_pending *pending;
} sleep_req;

static void sleep_closed(uv_handle_t *h) { free(h); }

static void sleep_done(uv_timer_t *h)
{
    sleep_req *r = (sleep_req *)h;
    chat_pending *p = r->pending;
    uv_close((uv_handle_t *)h, sleep_closed);
    chat__script_pending_done(p, 0);
}

/* The sleeping coroutine was abandoned: the timer stops and sleep_done never runs. */
static void sleep_cancel(void *arg)
{
    sleep_req *r = arg;
    uv_close((uv_handle_t *)&r->handle, sleep_closed);
}

/* chat.timer.sleep(ms): waits without blocking anything else. A hook, which a client waits
 * on, may wait CHAT_LUA_HOOK_WAIT_MS in all: a longer sleep fails at once. */
static int timer_sleep(lua_State *L)
{
    lua_Integer ms = luaL_checkinteger(L, 1);
    luaL_argcheck(L, ms >= 0 && ms <= 3600 * 1000, 1, "0 ms to 1 hour");
    long left = chat__script_wait_left(L);
    if (left >= 0 && ms > left) {
        return luaL_error(L, "chat.timer.sleep(%d): a hook may wait %d ms in all "
                             "(CHAT_LUA_HOOK_WAIT_MS) and has %d ms left; use chat.timer.after "
                             "for later work",
                          (int)ms, chat__script_rt(L)->cfg.lua_hook_wait_ms, (int)left);
    }
    chat_pending *p = chat__script_pending_new(L); /* raises where nothing may wait */
    sleep_req *r = calloc(1, sizeof *r);
    if (!r) {
        chat__script_pending_cancel(p);
        return luaL_error(L, "out of memory");
    }
    r->pending = p;
    chat__script_pending_on_cancel(p, sleep_cancel, r);
    chat__script_pending_no_deadline(p);
    uv_timer_init(chat__script_loop(L), &r->handle);
    if (!chat__script_pending_sync(p)) {
        uv_unref((uv_handle_t *)&r->handle); /* a sleeping script does not keep chatd up */
    }
    uv_update_time(chat__script_loop(L));
    uv_timer_start(&r->handle, sleep_done, (uint64_t)ms, 0);
    lua_settop(L, 0);
    return chat__script_await(L, r->pending);
}

static int timer_after(lua_State *L) { return start(L, 0); }
static int timer_every(lua_State *L) { return start(L, 1); }

static const luaL_Reg timer_funcs[] = {
    {"after", timer_after}, {"every", timer_every}, {"sleep", timer_sleep}, {NULL, NULL},
};

int luaopen_chat_timer(lua_State *L)
{
    luaL_newlib(L, timer_funcs);
    return 1;
}
