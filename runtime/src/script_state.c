/* script_state.c: the states and their reload. A state is one generation of the scripts: a
 * sandboxed Lua state with every policy file loaded. Reload builds a whole new state and
 * swaps it in only when every file loaded (nginx's cycle, Redis's FUNCTION LOAD REPLACE); the
 * old one serves the hooks already running and closes after them, its timers stop at once
 * and the timer functions still waiting on it are abandoned. */
#include <dirent.h>
#include <openssl/evp.h>
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "buf.h"
#include "log.h"
#include "rt.h"
#include "script_int.h"

#define FILES_MAX 256

/* The chain, in Lua: handlers in priority order; the first that returns non-nil decides,
 * with every value it returned (several values are an ack with several arguments). Tail
 * calls: no table per handler, and the stack stays flat however many handlers there are. */
static const char chain_src[] =
    "local hooks = ...\n"
    "local run\n"
    "local function decide(handlers, i, ev, r, ...)\n"
    "  if r ~= nil then return r, ... end\n"
    "  return run(handlers, i + 1, ev)\n"
    "end\n"
    "run = function(handlers, i, ev)\n"
    "  local h = handlers[i]\n"
    "  if h == nil then return nil end\n"
    "  return decide(handlers, i, ev, h.fn(ev))\n"
    "end\n"
    "return function(name, ev)\n"
    "  local handlers = hooks[name]\n"
    "  if handlers == nil then return nil end\n"
    "  return run(handlers, 1, ev)\n"
    "end\n";

/* An error outside any protected call: nothing can be recovered, but the log says why. */
static int on_panic(lua_State *L)
{
    const char *msg = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "?";
    chat__log(CHAT_LOG_ERROR, "lua_panic", "an error escaped the Lua host; chatd stops",
              json_pack("{s:s}", "error", msg));
    return 0; /* Lua aborts */
}

static script_state *state_new(chat_script *sc, int sandboxed)
{
    chat_runtime *rt = sc->rt;
    script_state *st = calloc(1, sizeof *st);
    if (!st) {
        return NULL;
    }
    st->host = sc;
    st->refs = 1;
    st->mem_cap = (size_t)rt->cfg.lua_memory_mb * 1024 * 1024;
    st->pattern_steps = rt->cfg.lua_pattern_steps;
    st->L = lua_newstate(chat__script_alloc, st);
    if (!st->L) {
        free(st);
        return NULL;
    }
    lua_State *L = st->L;
    lua_pushlightuserdata(L, st);
    lua_setfield(L, LUA_REGISTRYINDEX, SCRIPT_STATE_KEY);
    lua_pushlightuserdata(L, rt);
    lua_setfield(L, LUA_REGISTRYINDEX, "chat.rt");
    lua_newtable(L);
    lua_setfield(L, LUA_REGISTRYINDEX, SCRIPT_HOOKS_KEY);
    lua_newtable(L);
    lua_setfield(L, LUA_REGISTRYINDEX, SCRIPT_NAMESPACES_KEY);
    lua_newtable(L); /* the metatable that marks chat.reject(...) results */
    lua_setfield(L, LUA_REGISTRYINDEX, SCRIPT_REJECT_KEY);
    lua_newtable(L); /* and chat.accept(...) results: only those authenticate */
    lua_setfield(L, LUA_REGISTRYINDEX, SCRIPT_ACCEPT_KEY);
    lua_atpanic(L, on_panic);
    if (chat__script_open_sandbox(L, &rt->cfg, sandboxed)) {
        chat__log(CHAT_LOG_ERROR, "lua_init_failed",
                  "could not load lua-cjson; install the lua-cjson package",
                  json_pack("{s:s}", "error", lua_tostring(L, -1)));
        lua_close(L);
        free(st);
        return NULL;
    }
    /* the chain that runs a hook's handlers, compiled once: chat.dispatch is the same */
    if (luaL_loadbufferx(L, chain_src, sizeof chain_src - 1, "=chat.dispatch", "t") != LUA_OK) {
        lua_close(L);
        free(st);
        return NULL;
    }
    lua_getfield(L, LUA_REGISTRYINDEX, SCRIPT_HOOKS_KEY);
    lua_call(L, 1, 1);
    lua_setfield(L, LUA_REGISTRYINDEX, SCRIPT_CHAIN_KEY);
    sc->states++;
    return st;
}

static void timer_closed(uv_handle_t *h)
{
    free(h);
}

static void state_retire_timers(script_state *st)
{
    uv_timer_t *t;
    for (size_t i = 0; (t = chat__map_next(&st->timers, &i));) {
        uv_close((uv_handle_t *)t, timer_closed); /* frees it (and its key) later */
    }
    chat__map_free(&st->timers);
}

static void script_maybe_free(chat_script *sc)
{
    if (sc->freed && sc->closing == 0 && sc->states == 0) {
        free(sc);
    }
}

void chat__script_state_unref(script_state *st)
{
    if (--st->refs > 0) {
        return;
    }
    chat_script *sc = st->host;
    state_retire_timers(st);
    chat__map_free(&st->timers);
    chat__script_rooms_free(st);
    lua_close(st->L);
    free(st);
    sc->states--;
    script_maybe_free(sc);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The .lua files of dir (sorted, so load order is stable) appended to names. */
static int list_lua(const char *dir, char **names, int *n)
{
    DIR *d = opendir(dir);
    if (!d) {
        return 0;
    }
    int first = *n;
    struct dirent *e;
    while ((e = readdir(d)) && *n < FILES_MAX) {
        size_t len = strlen(e->d_name);
        if (len > 4 && strcmp(e->d_name + len - 4, ".lua") == 0 && e->d_name[0] != '.') {
            size_t plen = strlen(dir) + len + 2;
            char *p = malloc(plen);
            if (p) {
                snprintf(p, plen, "%s/%s", dir, e->d_name);
                names[(*n)++] = p;
            }
        }
    }
    closedir(d);
    qsort(names + first, (size_t)(*n - first), sizeof *names, cmp_str);
    return 0;
}

/* Loads every policy file into st. On failure err holds "file:line: message". */
static int state_load_files(script_state *st, const chat_config *cfg, char *err, size_t errlen)
{
    int sandboxed = 1;
    char *names[FILES_MAX];
    int n = 0, rc = 0;
    char bots[4096];
    snprintf(bots, sizeof bots, "%s/bots", cfg->scripts_dir);
    list_lua(cfg->scripts_dir, names, &n);
    list_lua(bots, names, &n);
    lua_State *L = st->L;
    st->loading = 1;
    for (int i = 0; i < n && !rc; i++) {
        st->load_budget = cfg->lua_budget;
        lua_sethook(L, chat__script_budget_hook, LUA_MASKCOUNT, SCRIPT_BUDGET_STEP);
        /* each file has globals of its own; what they share is read-only */
        int rc_load = luaL_loadfilex(L, names[i], "t");
        if (rc_load == LUA_OK && sandboxed) {
            chat__script_push_env(L);
            lua_setupvalue(L, -2, 1);
        }
        if (rc_load != LUA_OK || chat__script_call(st, L, 0, 0) != LUA_OK) {
            snprintf(err, errlen, "%s", lua_tostring(L, -1));
            lua_pop(L, 1);
            rc = CHAT_EINVAL;
        }
        lua_sethook(L, NULL, 0, 0);
    }
    st->loading = 0;
    for (int i = 0; i < n; i++) {
        free(names[i]);
    }
    return rc;
}

/* ---- the scripts' hash ---- */


/* Adds every .lua under dir (recursively, sorted) to the digest as "path\0bytes\0". */
static int hash_dir(EVP_MD_CTX *md, const char *dir, const char *rel, int depth)
{
    char path[4096];
    snprintf(path, sizeof path, "%s%s%s", dir, rel[0] ? "/" : "", rel);
    DIR *d = opendir(path);
    if (!d) {
        return CHAT_ENOTFOUND;
    }
    char *names[1024];
    size_t n = 0;
    for (struct dirent *e; (e = readdir(d)) && n < 1024;) {
        if (e->d_name[0] != '.') {
            names[n] = strdup(e->d_name);
            n += names[n] != NULL;
        }
    }
    closedir(d);
    qsort(names, n, sizeof names[0], cmp_str);
    for (size_t i = 0; i < n; i++) {
        char sub[4096], full[8192];
        snprintf(sub, sizeof sub, "%s%s%s", rel, rel[0] ? "/" : "", names[i]);
        snprintf(full, sizeof full, "%s/%s", dir, sub);
        size_t len = strlen(names[i]);
        if (len > 4 && strcmp(names[i] + len - 4, ".lua") == 0) {
            FILE *f = fopen(full, "rb");
            if (f) {
                EVP_DigestUpdate(md, sub, strlen(sub) + 1);
                char buf[8192];
                for (size_t got; (got = fread(buf, 1, sizeof buf, f)) > 0;) {
                    EVP_DigestUpdate(md, buf, got);
                }
                EVP_DigestUpdate(md, "", 1);
                fclose(f);
            }
        } else if (depth < 8) {
            hash_dir(md, dir, sub, depth + 1); /* not a directory: opendir fails, skipped */
        }
        free(names[i]);
    }
    return 0;
}

int chat__scripts_hash(const char *scripts_dir, const char *lua_dir, char out[65])
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (!md || !EVP_DigestInit_ex(md, EVP_sha256(), NULL)) {
        EVP_MD_CTX_free(md);
        return CHAT_ENOMEM;
    }
    int rc = scripts_dir ? hash_dir(md, scripts_dir, "", 0) : CHAT_ENOTFOUND;
    EVP_DigestUpdate(md, "\n", 1); /* the folders' boundary */
    if (lua_dir) {
        hash_dir(md, lua_dir, "", 0);
    }
    unsigned char digest[32];
    unsigned int dlen = 0;
    EVP_DigestFinal_ex(md, digest, &dlen);
    EVP_MD_CTX_free(md);
    for (unsigned i = 0; i < 32; i++) {
        snprintf(out + 2 * i, 3, "%02x", digest[i]);
    }
    return rc;
}

static void watch_start(chat_script *sc);

int chat__script_new(chat_script **out, chat_runtime *rt, char *err, size_t errlen)
{
    chat_script *sc = calloc(1, sizeof *sc);
    if (!sc) {
        return CHAT_ENOMEM;
    }
    sc->rt = rt;
    uv_timer_init(rt->loop, &sc->debounce);
    sc->debounce.data = sc;
    uv_timer_init(rt->loop, &sc->sweep);
    uv_unref((uv_handle_t *)&sc->sweep); /* the operations it watches keep the loop alive */
    sc->sweep.data = sc;
    sc->sweep_ready = 1;
    int rc = chat__script_reload(sc, err, errlen);
    if (rc) {
        sc->reload_failures = 0;
        chat__script_free(sc);
        return rc;
    }
    sc->reloads = 0;
    watch_start(sc);
    *out = sc;
    return 0;
}

static void script_handle_closed(uv_handle_t *h)
{
    chat_script *sc = h->data;
    sc->closing--;
    script_maybe_free(sc);
}

void chat__script_free(chat_script *sc)
{
    if (!sc) {
        return;
    }
    /* every wait ends: sleeps stop, hooks fail, timer functions are dropped */
    chat__script_abandon(sc, NULL, 1);
    chat__script_abort(sc);
    if (sc->cur) {
        state_retire_timers(sc->cur);
        chat__script_state_unref(sc->cur);
        sc->cur = NULL;
    }
    sc->freed = 1;
    sc->closing = sc->nwatch + 2;
    sc->sweep_ready = 0;
    uv_close((uv_handle_t *)&sc->sweep, script_handle_closed);
    for (int i = 0; i < sc->nwatch; i++) {
        uv_close((uv_handle_t *)&sc->watch[i], script_handle_closed);
    }
    uv_close((uv_handle_t *)&sc->debounce, script_handle_closed);
}

void chat__script_abort(chat_script *sc)
{
    if (sc && sc->prepared) {
        script_state *st = sc->prepared;
        sc->prepared = NULL;
        state_retire_timers(st);
        st->retired = 1;
        chat__script_abandon(sc, st, 0);
        chat__script_state_unref(st);
    }
}

int chat__script_prepare(chat_script *sc, const char *dir, char *err, size_t errlen)
{
    chat_runtime *rt = sc->rt;
    err[0] = '\0';
    chat__script_abort(sc); /* a newer prepare replaces an older one */
    chat_config cfg = rt->cfg; /* read only: the folder may be another one */
    if (dir) {
        cfg.scripts_dir = (char *)dir;
    }
    char hash[65] = "";
    chat__scripts_hash(cfg.scripts_dir, cfg.lua_dir, hash);
    script_state *st = state_new(sc, 1);
    if (!st) {
        snprintf(err, errlen, "could not create a Lua state (out of memory?)");
        sc->reload_failures++;
        return CHAT_ENOMEM;
    }
    st->version = sc->next_version + 1;
    memcpy(st->hash, hash, sizeof st->hash);
    int rc = state_load_files(st, &cfg, err, errlen);
    if (rc) {
        sc->reload_failures++;
        chat__script_state_unref(st);
        chat__log(CHAT_LOG_ERROR, "scripts_rejected",
                  sc->cur ? "a script failed to load; the previous version keeps serving"
                          : "a script failed to load; fix it and start again",
                  json_pack("{s:s}", "error", err));
        return rc;
    }
    sc->next_version = st->version;
    sc->prepared = st;
    return 0;
}

int chat__script_reload(chat_script *sc, char *err, size_t errlen)
{
    int rc = chat__script_prepare(sc, NULL, err, errlen);
    return rc ? rc : chat__script_commit(sc, 0);
}

int chat__script_commit(chat_script *sc, int version)
{
    chat_runtime *rt = sc->rt;
    script_state *st = sc->prepared;
    if (!st) {
        return CHAT_ENOTFOUND;
    }
    sc->prepared = NULL;
    if (version > st->version) { /* a cluster reload: every node takes the same number */
        st->version = version;
        sc->next_version = version;
    }
    script_state *old = sc->cur;
    sc->cur = st;
    sc->reloads++;
    if (old) {
        /* its timers stop now and its timer functions still waiting are dropped; hooks
         * still running finish on it (their wait is bounded), then it closes */
        state_retire_timers(old);
        old->retired = 1;
        chat__script_abandon(sc, old, 0);
        chat__script_state_unref(old);
    }
    chat__log(CHAT_LOG_INFO, "scripts_loaded", "scripts loaded",
              json_pack("{s:i,s:s,s:s,s:I}", "version", st->version, "hash", st->hash, "dir",
                        rt->cfg.scripts_dir, "lua_kb", (json_int_t)(st->mem / 1024)));
    return 0;
}

int chat__script_prepared_version(chat_script *sc)
{
    return sc && sc->prepared ? sc->prepared->version : 0;
}

const char *chat__script_prepared_hash(chat_script *sc)
{
    return sc && sc->prepared ? sc->prepared->hash : "";
}

const char *chat__script_hash(chat_script *sc)
{
    return sc && sc->cur ? sc->cur->hash : "";
}

void chat__script_on_change(chat_script *sc, void (*fn)(void *arg), void *arg)
{
    sc->on_change = fn;
    sc->on_change_arg = arg;
}

void chat__script_stats(chat_script *sc, int *version, unsigned long *reloads,
                        unsigned long *reload_failures, unsigned long *errors)
{
    *version = sc && sc->cur ? sc->cur->version : 0;
    *reloads = sc ? sc->reloads : 0;
    *reload_failures = sc ? sc->reload_failures : 0;
    *errors = sc ? sc->errors : 0;
}

int chat__script_metrics(chat_script *sc, chat_buf *b)
{
    unsigned long timers = sc && sc->cur ? (unsigned long)sc->cur->timers.len : 0;
    return chat__buf_appendf(
        b,
        "# HELP chatd_script_timers Timers the loaded scripts have pending.\n"
        "# TYPE chatd_script_timers gauge\nchatd_script_timers %lu\n"
        "# HELP chatd_script_timers_refused_total Timers refused: CHAT_LUA_TIMERS_MAX reached.\n"
        "# TYPE chatd_script_timers_refused_total counter\n"
        "chatd_script_timers_refused_total %lu\n"
        "# HELP chatd_script_kv_refused_total kv writes refused: CHAT_LUA_KV_MB reached.\n"
        "# TYPE chatd_script_kv_refused_total counter\nchatd_script_kv_refused_total %lu\n"
        "# HELP chatd_script_patterns_refused_total Pattern calls stopped at "
        "CHAT_LUA_PATTERN_STEPS.\n"
        "# TYPE chatd_script_patterns_refused_total counter\n"
        "chatd_script_patterns_refused_total %lu\n"
        "# HELP chatd_script_waits_expired_total I/O waits given up at their deadline "
        "(CHAT_LUA_HOOK_WAIT_MS for hooks).\n"
        "# TYPE chatd_script_waits_expired_total counter\n"
        "chatd_script_waits_expired_total %lu\n",
        timers, sc ? sc->timers_refused : 0, sc ? sc->kv_refused : 0,
        sc ? sc->patterns_refused : 0, sc ? sc->waits_expired : 0);
}

void chat__script_count_refusal(lua_State *L, const char *what)
{
    chat_script *sc = chat__script_state_of(L)->host;
    if (strcmp(what, "timers") == 0) {
        sc->timers_refused++;
    } else if (strcmp(what, "kv") == 0) {
        sc->kv_refused++;
    } else if (strcmp(what, "patterns") == 0) {
        sc->patterns_refused++;
    }
}

/* ---- the scripts folder watcher ---- */

static void debounce_cb(uv_timer_t *t)
{
    chat_script *sc = t->data;
    char err[1024];
    chat__log(CHAT_LOG_INFO, "scripts_changed", "a script changed on disk; reloading", NULL);
    if (sc->on_change) { /* the runtime reloads the whole cluster */
        sc->on_change(sc->on_change_arg);
        return;
    }
    chat__script_reload(sc, err, sizeof err);
}

static void watch_cb(uv_fs_event_t *h, const char *filename, int events, int status)
{
    chat_script *sc = h->data;
    (void)events;
    /* a Kubernetes ConfigMap volume changes every file at once by renaming a new ..data
     * symlink over the old one: no *.lua name changes in the folder itself */
    int swapped = filename && strcmp(filename, "..data") == 0;
    if (status < 0 || !filename ||
        (!swapped && (filename[0] == '.' || !strstr(filename, ".lua")))) {
        return;
    }
    /* editors write in several steps: reload once things settle */
    uv_timer_start(&sc->debounce, debounce_cb, 150, 0);
}

static void watch_start(chat_script *sc)
{
    const chat_config *cfg = &sc->rt->cfg;
    char dirs[3][4096];
    snprintf(dirs[0], sizeof dirs[0], "%s", cfg->scripts_dir);
    snprintf(dirs[1], sizeof dirs[1], "%s/bots", cfg->scripts_dir);
    snprintf(dirs[2], sizeof dirs[2], "%s", cfg->lua_dir);
    for (int i = 0; i < 3; i++) {
        struct stat sb;
        if (stat(dirs[i], &sb) || !S_ISDIR(sb.st_mode)) {
            continue;
        }
        uv_fs_event_t *w = &sc->watch[sc->nwatch];
        uv_fs_event_init(sc->rt->loop, w);
        w->data = sc;
        if (uv_fs_event_start(w, watch_cb, dirs[i], UV_FS_EVENT_RECURSIVE) == 0 ||
            uv_fs_event_start(w, watch_cb, dirs[i], 0) == 0) {
            uv_unref((uv_handle_t *)w);
            sc->nwatch++;
        } else {
            uv_close((uv_handle_t *)w, NULL);
        }
    }
    uv_unref((uv_handle_t *)&sc->debounce);
}

/* ---- hooks ---- */

int chat__script_has(chat_script *sc, const char *hook)
{
    if (!sc || !sc->cur) {
        return 0;
    }
    script_state *st = sc->cur;
    lua_State *L = st->L;
    lua_getfield(L, LUA_REGISTRYINDEX, SCRIPT_HOOKS_KEY);
    int has = lua_getfield(L, -1, hook) == LUA_TTABLE && lua_rawlen(L, -1) > 0;
    lua_pop(L, 2);
    return has;
}

int chat__script_namespace(chat_script *sc, const char *nsp, int *anonymous)
{
    if (!sc || !sc->cur) {
        return 0;
    }
    script_state *st = sc->cur;
    lua_State *L = st->L;
    lua_getfield(L, LUA_REGISTRYINDEX, SCRIPT_NAMESPACES_KEY);
    int declared = lua_getfield(L, -1, nsp) == LUA_TTABLE;
    if (declared) {
        lua_getfield(L, -1, "anonymous");
        *anonymous = lua_toboolean(L, -1);
        lua_pop(L, 1);
    }
    lua_pop(L, 2);
    return declared;
}
/* ---- chatd --run ---- */

int chat__script_run_file(chat_runtime *rt, const char *path, int argc, char **argv)
{
    chat_script tmp = {.rt = rt};
    script_state *st = state_new(&tmp, 0);
    if (!st) {
        return CHAT_ENOMEM;
    }
    st->sync = 1;
    lua_State *L = st->L;
    lua_createtable(L, argc, 1);
    lua_pushstring(L, path);
    lua_rawseti(L, -2, 0);
    for (int i = 0; i < argc; i++) {
        lua_pushstring(L, argv[i]);
        lua_rawseti(L, -2, i + 1);
    }
    lua_setglobal(L, "arg");
    int rc = 0;
    if (luaL_loadfilex(L, path, "t") != LUA_OK || chat__script_call(st, L, 0, 0) != LUA_OK) {
        fprintf(stderr, "%s\n", lua_tostring(L, -1));
        rc = CHAT_EINVAL;
    }
    state_retire_timers(st);
    /* timer functions still waiting (a sleep, a store call) finish before the state closes */
    while (st->refs > 1 && uv_run(rt->loop, UV_RUN_ONCE)) {
    }
    uv_run(rt->loop, UV_RUN_NOWAIT);
    chat__script_rooms_free(st);
    lua_close(L);
    chat__map_free(&st->timers);
    free(st);
    return rc;
}

/* ---- for lua_timer.c ---- */

int chat__script_track_timer(lua_State *L, uv_timer_t *t, char key[CHAT_TIMER_KEY])
{
    script_state *st = chat__script_state_of(L);
    int max = st->host->rt->cfg.lua_timers_max;
    if (max > 0 && st->timers.len >= (size_t)max) {
        st->host->timers_refused++;
        return CHAT_ETOOBIG;
    }
    /* never reused: a handle whose timer ended cannot reach a later one */
    snprintf(key, CHAT_TIMER_KEY, "%llx", (unsigned long long)++st->timer_ids);
    return chat__map_put(&st->timers, key, t);
}

void chat__script_untrack_timer(lua_State *L, const char *key)
{
    chat__map_del(&chat__script_state_of(L)->timers, key);
}

uv_timer_t *chat__script_timer_find(lua_State *L, const char *key)
{
    return chat__map_get(&chat__script_state_of(L)->timers, key);
}

uv_loop_t *chat__script_loop(lua_State *L) { return chat__script_rt(L)->loop; }