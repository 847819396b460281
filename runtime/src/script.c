/* script.c: the Lua host: a sandboxed state per generation of the scripts, hooks run in
 * coroutines under an instruction budget and a memory cap, reload by building a whole new
 * state and swapping it in only when every file loaded (nginx's cycle, Redis's FUNCTION LOAD
 * REPLACE). */
#include "script.h"

#include <dirent.h>
#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "log.h"
#include "rt.h"

#define BUDGET_STEP 1000 /* instructions between two budget checks */
#define FILES_MAX 256

typedef struct script_state script_state;
typedef struct script_run script_run;

struct script_state {
    lua_State *L;
    chat_script *host;
    int refs;       /* the host's while current, plus one per running coroutine and timer */
    int version;
    size_t mem, mem_cap;
    script_run *current; /* the run being resumed (one at a time: one loop thread) */
    int loading;         /* top-level code runs without a run: nothing may wait for I/O */
    long load_budget;
    int sync;            /* chatd --run: bindings drive the loop instead of yielding */
    int hostwork;        /* >0: the host is converting or pushing values (see capped_alloc) */
    chat_vec timers;     /* uv timers created by this state, closed when it retires */
};

struct script_run {
    script_state *st;
    lua_State *co;
    int co_ref;
    int ev_ref;
    long budget;
    int killed;
    int awaiting; /* yielded by chat__script_await: only a pending completion resumes it */
    chat_script_cb cb;
    void *arg;
    char hook[96]; /* "event/" and an event name of up to 64 bytes */
};

struct chat_pending {
    script_state *st;
    script_run *run;
    lua_State *L;
    int done;
    int nresults;
    int waiting; /* the coroutine yielded and must be resumed */
    int pushing; /* between chat__script_pending_thread and _done: st->hostwork is raised */
};

struct chat_script {
    chat_runtime *rt;
    script_state *cur;
    int next_version;
    unsigned long reloads, reload_failures, errors;
    uv_fs_event_t watch[3];
    int nwatch;
    uv_timer_t debounce;
    int closing; /* handles whose close callback is still owed */
    int states;  /* states not closed yet: a retired one may still finish handlers */
    int freed;   /* chat__script_free was called: free once closing and states are 0 */
};

static const char *const reject_key = "chat.reject";
static const char *const hooks_key = "chat.hooks";
static const char *const namespaces_key = "chat.namespaces";
static const char *const state_key = "chat.state";
static const char *const chain_key = "chat.chain";

static void state_unref(script_state *st);
static void resume(script_run *run, int nargs);

static script_state *state_of(lua_State *L)
{
    lua_getfield(L, LUA_REGISTRYINDEX, state_key);
    script_state *st = lua_touserdata(L, -1);
    lua_pop(L, 1);
    return st;
}

/* ---- memory cap ----
 * The cap applies while script code runs (a hook or timer coroutine, loading, chatd --run),
 * where an allocation failure is an error the running code gets. The host's own work on the
 * state (an event turned into a table, results pushed onto a waiting coroutine, a traceback)
 * runs outside any protected call, where a failure would abort the process; it is bounded by
 * the size of the events, so it may go past the cap, and the next script allocation fails. */

static int cap_applies(const script_state *st)
{
    return st->hostwork == 0 && (st->current || st->loading || st->sync);
}

static void *capped_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    script_state *st = ud;
    size_t old = ptr ? osize : 0;
    if (nsize == 0) {
        st->mem -= old;
        free(ptr);
        return NULL;
    }
    if (nsize > old && st->mem - old + nsize > st->mem_cap && cap_applies(st)) {
        return NULL; /* Lua raises "not enough memory" in the running coroutine */
    }
    void *p = realloc(ptr, nsize);
    if (p) {
        st->mem = st->mem - old + nsize;
    }
    return p;
}

/* ---- instruction budget ---- */

/* Raises the kill at the script's own file and line (the hook runs inside its function). */
static int budget_error(lua_State *L, lua_Debug *ar)
{
    if (lua_getinfo(L, "Sl", ar) && ar->currentline > 0) {
        lua_pushfstring(L, "%s:%d: instruction budget exceeded (the hook ran too long)",
                        ar->short_src, ar->currentline);
    } else {
        lua_pushliteral(L, "instruction budget exceeded (the hook ran too long)");
    }
    return lua_error(L);
}

static void budget_hook(lua_State *L, lua_Debug *ar)
{
    script_state *st = state_of(L);
    long *budget = st->current ? &st->current->budget : &st->load_budget;
    if (st->current && st->current->killed) {
        budget_error(L, ar);
    }
    *budget -= BUDGET_STEP;
    if (*budget < 0) {
        if (st->current) {
            st->current->killed = 1;
        }
        /* fire at every line from now on, so a pcall in the script cannot swallow the kill */
        lua_sethook(L, budget_hook, LUA_MASKCOUNT | LUA_MASKLINE, 1);
        budget_error(L, ar);
    }
}

/* ---- the sandbox ---- */

/* The first readable file for module name along path ("a/?.lua;b/?.lua"), or NULL. */
static const char *search_path(lua_State *L, const char *name, const char *path)
{
    const char *mod = luaL_gsub(L, name, ".", LUA_DIRSEP); /* [.., mod] */
    for (const char *p = path; *p;) {
        const char *semi = strchr(p, ';');
        size_t n = semi ? (size_t)(semi - p) : strlen(p);
        lua_pushlstring(L, p, n);
        const char *file = luaL_gsub(L, lua_tostring(L, -1), "?", mod);
        FILE *f = fopen(file, "r");
        if (f) {
            fclose(f);
            return file; /* left on the stack */
        }
        lua_pop(L, 2);
        p = semi ? semi + 1 : p + n;
    }
    lua_pushfstring(L, "no file for module '%s' in %s", name, path);
    return NULL;
}

/* `require` finds Lua source only (never bytecode or C) in lua/ and the scripts folder. */
static int text_searcher(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    lua_getfield(L, LUA_REGISTRYINDEX, "chat.path");
    const char *path = lua_tostring(L, -1);
    const char *file = search_path(L, name, path ? path : "");
    if (!file) {
        return 1; /* the message says where it looked */
    }
    if (luaL_loadfilex(L, file, "t") != LUA_OK) {
        return luaL_error(L, "error loading module '%s' from '%s':\n\t%s", name, file,
                          lua_tostring(L, -1));
    }
    lua_pushstring(L, file);
    return 2;
}

/* load() that refuses binary chunks. */
static int safe_load(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    const char *chunkname = luaL_optstring(L, 2, s);
    int env = !lua_isnone(L, 4) ? 4 : 0;
    if (luaL_loadbufferx(L, s, len, chunkname, "t") != LUA_OK) {
        luaL_pushfail(L);
        lua_insert(L, -2);
        return 2;
    }
    if (env) {
        lua_pushvalue(L, env);
        if (!lua_setupvalue(L, -2, 1)) {
            lua_pop(L, 1);
        }
    }
    return 1;
}

/* setmetatable() that refuses __gc: a finalizer runs whenever the collector gets to it,
 * outside any hook, so no budget could stop it. */
static int safe_setmetatable(lua_State *L)
{
    if (lua_istable(L, 2)) {
        lua_pushliteral(L, "__gc");
        luaL_argcheck(L, lua_rawget(L, 2) == LUA_TNIL, 2,
                      "__gc finalizers are not available to scripts");
        lua_pop(L, 1);
    }
    lua_pushvalue(L, lua_upvalueindex(1)); /* the original setmetatable */
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, 1);
    return 1;
}

/* collectgarbage() limited to looking and collecting: stopping the collector or changing its
 * mode would let one script starve the others of memory. */
static int safe_collectgarbage(lua_State *L)
{
    static const char *const allowed[] = {"collect", "count", "step", "isrunning", NULL};
    luaL_checkoption(L, 1, "collect", allowed);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
    return lua_gettop(L);
}

static void wrap_global(lua_State *L, const char *name, lua_CFunction fn)
{
    lua_getglobal(L, name);
    lua_pushcclosure(L, fn, 1);
    lua_setglobal(L, name);
}

static void remove_fields(lua_State *L, const char *table, const char *const *names)
{
    lua_getglobal(L, table); /* [.., tbl] */
    for (; *names; names++) {
        lua_pushnil(L);
        lua_setfield(L, -2, *names);
    }
    lua_pop(L, 1);
}

int luaopen_chat(lua_State *L);

static int open_sandbox(lua_State *L, const chat_config *cfg, int sandboxed)
{
    static const luaL_Reg libs[] = {
        {LUA_GNAME, luaopen_base},         {LUA_LOADLIBNAME, luaopen_package},
        {LUA_COLIBNAME, luaopen_coroutine}, {LUA_TABLIBNAME, luaopen_table},
        {LUA_STRLIBNAME, luaopen_string},   {LUA_MATHLIBNAME, luaopen_math},
        {LUA_UTF8LIBNAME, luaopen_utf8},    {LUA_OSLIBNAME, luaopen_os},
        {NULL, NULL},
    };
    if (!sandboxed) {
        luaL_openlibs(L);
    } else {
        for (const luaL_Reg *lib = libs; lib->func; lib++) {
            luaL_requiref(L, lib->name, lib->func, 1);
            lua_pop(L, 1);
        }
    }
    /* lua-cjson is a C module: load it now, before C loading is closed off. chat.json is the
     * host's own (it keeps empty arrays); scripts that want cjson's options require "cjson". */
    lua_getglobal(L, "require");
    lua_pushstring(L, "cjson");
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
        return -1;
    }
    lua_setfield(L, LUA_REGISTRYINDEX, "chat.cjson");

    char path[8192];
    snprintf(path, sizeof path, "%s/?.lua;%s/?/init.lua;%s/?.lua", cfg->lua_dir, cfg->lua_dir,
             cfg->scripts_dir);
    lua_pushstring(L, path);
    lua_setfield(L, LUA_REGISTRYINDEX, "chat.path");
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
    lua_pushcfunction(L, luaopen_chat);
    lua_setfield(L, -2, "chat");
    lua_pop(L, 1);
    if (!sandboxed) {
        lua_getglobal(L, "package");
        lua_getfield(L, -1, "path");
        lua_pushfstring(L, "%s;%s", path, lua_tostring(L, -1));
        lua_setfield(L, -3, "path");
        lua_pop(L, 2);
        return 0;
    }
    static const char *const base_out[] = {"dofile", "loadfile", NULL};
    static const char *const os_out[] = {"execute", "exit",    "getenv", "remove",
                                         "rename",  "tmpname", "setlocale", NULL};
    static const char *const string_out[] = {"dump", NULL};
    static const char *const package_out[] = {"loadlib", "cpath", "searchpath", NULL};
    remove_fields(L, LUA_GNAME, base_out);
    remove_fields(L, "os", os_out);
    remove_fields(L, "string", string_out);
    remove_fields(L, "package", package_out);
    lua_pushcfunction(L, safe_load);
    lua_setglobal(L, "load");
    wrap_global(L, "setmetatable", safe_setmetatable);
    wrap_global(L, "collectgarbage", safe_collectgarbage);
    /* searchers: preload (the chat module), then Lua text files from our folders only */
    lua_getglobal(L, "package");
    lua_createtable(L, 2, 0);
    lua_getfield(L, -2, "searchers");
    lua_rawgeti(L, -1, 1); /* the preload searcher */
    lua_rawseti(L, -3, 1);
    lua_pop(L, 1);
    lua_pushcfunction(L, text_searcher);
    lua_rawseti(L, -2, 2);
    lua_setfield(L, -2, "searchers");
    lua_pushstring(L, path);
    lua_setfield(L, -2, "path");
    lua_pop(L, 1);
    return 0;
}

/* ---- states ---- */

/* The chain, in Lua: handlers in priority order; the first that returns non-nil decides. */
static const char chain_src[] =
    "local hooks = ...\n"
    "return function(name, ev)\n"
    "  local handlers = hooks[name]\n"
    "  if handlers == nil then return nil end\n"
    "  for i = 1, #handlers do\n"
    "    local r = handlers[i].fn(ev)\n"
    "    if r ~= nil then return r end\n"
    "  end\n"
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
    st->L = lua_newstate(capped_alloc, st);
    if (!st->L) {
        free(st);
        return NULL;
    }
    lua_State *L = st->L;
    lua_pushlightuserdata(L, st);
    lua_setfield(L, LUA_REGISTRYINDEX, state_key);
    lua_pushlightuserdata(L, rt);
    lua_setfield(L, LUA_REGISTRYINDEX, "chat.rt");
    lua_newtable(L);
    lua_setfield(L, LUA_REGISTRYINDEX, hooks_key);
    lua_newtable(L);
    lua_setfield(L, LUA_REGISTRYINDEX, namespaces_key);
    lua_newtable(L); /* the metatable that marks chat.reject(...) results */
    lua_setfield(L, LUA_REGISTRYINDEX, reject_key);
    lua_atpanic(L, on_panic);
    if (open_sandbox(L, &rt->cfg, sandboxed)) {
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
    lua_getfield(L, LUA_REGISTRYINDEX, hooks_key);
    lua_call(L, 1, 1);
    lua_setfield(L, LUA_REGISTRYINDEX, chain_key);
    sc->states++;
    return st;
}

static void timer_closed(uv_handle_t *h)
{
    free(h);
}

static void state_retire_timers(script_state *st)
{
    for (uint32_t i = 0; i < st->timers.len; i++) {
        uv_timer_t *t = st->timers.items[i];
        uv_close((uv_handle_t *)t, timer_closed);
    }
    st->timers.len = 0;
}

static void script_maybe_free(chat_script *sc)
{
    if (sc->freed && sc->closing == 0 && sc->states == 0) {
        free(sc);
    }
}

static void state_unref(script_state *st)
{
    if (--st->refs > 0) {
        return;
    }
    chat_script *sc = st->host;
    state_retire_timers(st);
    chat__vec_free(&st->timers);
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
        lua_sethook(L, budget_hook, LUA_MASKCOUNT, BUDGET_STEP);
        if (luaL_loadfilex(L, names[i], "t") != LUA_OK || lua_pcall(L, 0, 0, 0) != LUA_OK) {
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
    if (sc->cur) {
        state_retire_timers(sc->cur);
        state_unref(sc->cur);
        sc->cur = NULL;
    }
    sc->freed = 1;
    sc->closing = sc->nwatch + 1;
    for (int i = 0; i < sc->nwatch; i++) {
        uv_close((uv_handle_t *)&sc->watch[i], script_handle_closed);
    }
    uv_close((uv_handle_t *)&sc->debounce, script_handle_closed);
}

int chat__script_reload(chat_script *sc, char *err, size_t errlen)
{
    chat_runtime *rt = sc->rt;
    err[0] = '\0';
    script_state *st = state_new(sc, 1);
    if (!st) {
        snprintf(err, errlen, "could not create a Lua state (out of memory?)");
        sc->reload_failures++;
        return CHAT_ENOMEM;
    }
    st->version = sc->next_version + 1;
    int rc = state_load_files(st, &rt->cfg, err, errlen);
    if (rc) {
        sc->reload_failures++;
        state_unref(st);
        chat__log(CHAT_LOG_ERROR, "scripts_rejected",
                  sc->cur ? "a script failed to load; the previous version keeps serving"
                          : "a script failed to load; fix it and start again",
                  json_pack("{s:s}", "error", err));
        return rc;
    }
    sc->next_version = st->version;
    script_state *old = sc->cur;
    sc->cur = st;
    sc->reloads++;
    if (old) {
        /* its timers stop now; handlers still running finish on it, then it closes */
        state_retire_timers(old);
        state_unref(old);
    }
    chat__log(CHAT_LOG_INFO, "scripts_loaded", "scripts loaded",
              json_pack("{s:i,s:s,s:I}", "version", st->version, "dir", rt->cfg.scripts_dir,
                        "lua_kb", (json_int_t)(st->mem / 1024)));
    return 0;
}

void chat__script_stats(chat_script *sc, int *version, unsigned long *reloads,
                        unsigned long *reload_failures, unsigned long *errors)
{
    *version = sc && sc->cur ? sc->cur->version : 0;
    *reloads = sc ? sc->reloads : 0;
    *reload_failures = sc ? sc->reload_failures : 0;
    *errors = sc ? sc->errors : 0;
}

/* ---- the scripts folder watcher ---- */

static void debounce_cb(uv_timer_t *t)
{
    chat_script *sc = t->data;
    char err[1024];
    chat__log(CHAT_LOG_INFO, "scripts_changed", "a script changed on disk; reloading", NULL);
    chat__script_reload(sc, err, sizeof err);
}

static void watch_cb(uv_fs_event_t *h, const char *filename, int events, int status)
{
    chat_script *sc = h->data;
    (void)events;
    if (status < 0 || !filename || filename[0] == '.' || !strstr(filename, ".lua")) {
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
    st->hostwork++;
    lua_getfield(L, LUA_REGISTRYINDEX, hooks_key);
    int has = lua_getfield(L, -1, hook) == LUA_TTABLE && lua_rawlen(L, -1) > 0;
    lua_pop(L, 2);
    st->hostwork--;
    return has;
}

int chat__script_namespace(chat_script *sc, const char *nsp, int *anonymous)
{
    if (!sc || !sc->cur) {
        return 0;
    }
    script_state *st = sc->cur;
    lua_State *L = st->L;
    st->hostwork++;
    lua_getfield(L, LUA_REGISTRYINDEX, namespaces_key);
    int declared = lua_getfield(L, -1, nsp) == LUA_TTABLE;
    if (declared) {
        lua_getfield(L, -1, "anonymous");
        *anonymous = lua_toboolean(L, -1);
        lua_pop(L, 1);
    }
    lua_pop(L, 2);
    st->hostwork--;
    return declared;
}

static const struct {
    const char *code;
    int err;
} reject_codes[] = {
    {"unauthorized", CHAT_EUNAUTHORIZED}, {"forbidden", CHAT_EFORBIDDEN},
    {"not_found", CHAT_ENOTFOUND},         {"invalid_payload", CHAT_EINVAL},
    {"payload_too_large", CHAT_ETOOBIG},   {"rate_limited", CHAT_ERATELIMIT},
    {"policy_rejected", CHAT_EPOLICY},     {"conflict", CHAT_ECONFLICT},
    {"unavailable", CHAT_EUNAVAIL},        {"internal", CHAT_EINTERNAL},
};

int chat__script_reject_code(const char *code)
{
    for (size_t i = 0; i < sizeof reject_codes / sizeof reject_codes[0]; i++) {
        if (strcmp(reject_codes[i].code, code) == 0) {
            return reject_codes[i].err;
        }
    }
    return 0;
}

static void run_finish(script_run *run, int status, const char *message, json_t *ev)
{
    script_state *st = run->st;
    luaL_unref(st->L, LUA_REGISTRYINDEX, run->co_ref);
    luaL_unref(st->L, LUA_REGISTRYINDEX, run->ev_ref);
    if (run->cb) {
        run->cb(status, message, ev, run->arg);
    } else {
        json_decref(ev);
    }
    free(run);
    state_unref(st);
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
    st->hostwork++;
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
    st->hostwork--;
    run_finish(run, CHAT_EINTERNAL, "a server script failed; the operator has been told",
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
    lua_State *L = st->L;
    st->hostwork++;
    if (nres > 0 && lua_istable(co, -nres) && lua_getmetatable(co, -nres)) {
        lua_getfield(co, LUA_REGISTRYINDEX, reject_key);
        int is_reject = lua_rawequal(co, -1, -2);
        lua_pop(co, 2);
        if (is_reject) {
            char code[32], msg[512];
            copy_field(co, -nres, "code", "policy_rejected", code, sizeof code);
            copy_field(co, -nres, "message", "refused by the server's policy", msg, sizeof msg);
            int err = chat__script_reject_code(code);
            lua_settop(co, 0);
            st->hostwork--;
            run_finish(run, err ? err : CHAT_EPOLICY, msg, NULL);
            return;
        }
    }
    const char *jerr = NULL;
    json_t *result = NULL;
    if (nres > 0 && !lua_isnil(co, -nres) && !lua_isboolean(co, -nres)) {
        result = chat__lua_to_json(co, -nres, &jerr);
        if (!result) {
            lua_settop(co, 0);
            lua_pushfstring(co, "%s: the handler's return value %s", run->hook, jerr);
            st->hostwork--;
            run_failed(run);
            return;
        }
    }
    lua_settop(co, 0);
    lua_rawgeti(L, LUA_REGISTRYINDEX, run->ev_ref);
    json_t *ev = chat__lua_to_json(L, -1, &jerr);
    lua_pop(L, 1);
    if (!ev) {
        json_decref(result);
        lua_pushfstring(co, "%s: the event was changed into something JSON cannot carry (%s)",
                        run->hook, jerr);
        st->hostwork--;
        run_failed(run);
        return;
    }
    st->hostwork--;
    if (result) {
        json_object_set_new(ev, "result", result);
    }
    run_finish(run, 0, NULL, ev);
}

static void resume(script_run *run, int nargs)
{
    script_state *st = run->st;
    script_run *outer = st->current;
    st->current = run;
    run->awaiting = 0;
    int nres = 0;
    int rc = lua_resume(run->co, NULL, nargs, &nres);
    st->current = outer;
    if (rc == LUA_YIELD && run->awaiting) {
        lua_pop(run->co, nres); /* a binding is waiting on I/O: its completion resumes us */
        return;
    }
    if (rc == LUA_YIELD) {
        /* a bare coroutine.yield() in a handler: nothing would ever resume it */
        st->hostwork++;
        lua_pop(run->co, nres);
        lua_pushfstring(run->co, "%s: coroutine.yield() in a handler; wait with "
                                 "chat.timer.sleep or a chat binding instead", run->hook);
        st->hostwork--;
        run_failed(run);
        return;
    }
    if (rc != LUA_OK) {
        run_failed(run);
        return;
    }
    run_returned(run, nres);
}

static script_run *run_new(script_state *st, const char *hook, chat_script_cb cb, void *arg)
{
    script_run *run = calloc(1, sizeof *run);
    if (!run) {
        return NULL;
    }
    run->st = st;
    st->refs++;
    run->cb = cb;
    run->arg = arg;
    run->budget = st->host->rt->cfg.lua_budget;
    run->co_ref = LUA_NOREF;
    run->ev_ref = LUA_NOREF;
    snprintf(run->hook, sizeof run->hook, "%s", hook);
    return run;
}

/* Makes the run's coroutine (budgeted) and anchors it in the registry. */
static void run_thread(lua_State *L, script_run *run)
{
    run->co = lua_newthread(L);
    lua_sethook(run->co, budget_hook, LUA_MASKCOUNT, BUDGET_STEP);
    run->co_ref = luaL_ref(L, LUA_REGISTRYINDEX);
}

/* An event as the handlers see it: top-level nulls (no socket, an anonymous user) are absent,
 * so `if ev.user then` reads as it should. */
static void event_to_lua(lua_State *L, json_t *ev)
{
    if (!json_is_object(ev)) {
        chat__json_to_lua(L, ev);
        return;
    }
    const char *k;
    json_t *v;
    lua_createtable(L, 0, (int)json_object_size(ev));
    json_object_foreach(ev, k, v) {
        if (!json_is_null(v)) {
            chat__json_to_lua(L, v);
            lua_setfield(L, -2, k);
        }
    }
}

/* [run, ev] (light userdata): the coroutine with the chain, the hook name and the event. */
static int run_start_p(lua_State *L)
{
    script_run *run = lua_touserdata(L, 1);
    run_thread(L, run);
    event_to_lua(L, lua_touserdata(L, 2));
    run->ev_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_State *co = run->co;
    lua_getfield(co, LUA_REGISTRYINDEX, chain_key);
    lua_pushstring(co, run->hook);
    lua_rawgeti(co, LUA_REGISTRYINDEX, run->ev_ref);
    return 0;
}

/* The host's call failed before any script code ran (the allocator failed): log, count. */
static void run_not_started(script_run *run, const char *error)
{
    run->st->host->errors++;
    chat__log(CHAT_LOG_ERROR, "script_error", "a hook could not be started",
              json_pack("{s:s,s:s}", "hook", run->hook, "error", error ? error : "?"));
    run_finish(run, CHAT_EINTERNAL, "a server script failed; the operator has been told",
               NULL);
}

void chat__script_run(chat_script *sc, const char *hook, json_t *ev, chat_script_cb cb,
                      void *arg)
{
    script_state *st = sc ? sc->cur : NULL;
    if (!st) {
        cb(0, NULL, ev, arg);
        return;
    }
    script_run *run = run_new(st, hook, cb, arg);
    if (!run) {
        cb(CHAT_ENOMEM, NULL, ev, arg);
        return;
    }
    lua_State *L = st->L;
    st->hostwork++;
    lua_pushcfunction(L, run_start_p);
    lua_pushlightuserdata(L, run);
    lua_pushlightuserdata(L, ev);
    int rc = lua_pcall(L, 2, 0, 0);
    json_decref(ev);
    if (rc != LUA_OK) {
        char error[256];
        snprintf(error, sizeof error, "%s",
                 lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "?");
        lua_pop(L, 1);
        st->hostwork--;
        run_not_started(run, error);
        return;
    }
    st->hostwork--;
    resume(run, 2);
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
    script_state *st = state_of(L);
    script_run *run = run_new(st, what, NULL, NULL);
    if (!run) {
        lua_pop(L, nargs + 1);
        return;
    }
    st->hostwork++;
    lua_pushcfunction(L, spawn_p);
    lua_pushlightuserdata(L, run);
    lua_rotate(L, -(nargs + 3), 2); /* [.., spawn_p, run, fn, args...] */
    int rc = lua_pcall(L, nargs + 2, 0, 0);
    if (rc != LUA_OK) {
        char error[256];
        snprintf(error, sizeof error, "%s",
                 lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "?");
        lua_pop(L, 1);
        st->hostwork--;
        run_not_started(run, error);
        return;
    }
    st->hostwork--;
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

const char *chat__script_wait_error(lua_State *L)
{
    script_state *st = state_of(L);
    if (st->loading) {
        return "scripts cannot wait for I/O while loading; do it in a hook or a timer";
    }
    /* a hook or timer coroutine yields; the top level of `chatd --run` drives the loop */
    if (!(st->current && st->current->co == L) && !(st->sync && !st->current)) {
        return "I/O must be called from the handler itself, not a nested coroutine";
    }
    return NULL;
}

chat_pending *chat__script_pending_new(lua_State *L)
{
    script_state *st = state_of(L);
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
    return p;
}

void chat__script_pending_cancel(chat_pending *p)
{
    free(p);
}

/* From here to chat__script_pending_done the host pushes results: the cap waits. */
lua_State *chat__script_pending_thread(chat_pending *p)
{
    if (!p->pushing) {
        p->pushing = 1;
        p->st->hostwork++;
    }
    return p->L;
}

void chat__script_pending_done(chat_pending *p, int nresults)
{
    if (p->pushing) {
        p->pushing = 0;
        p->st->hostwork--;
    }
    p->done = 1;
    p->nresults = nresults;
    if (p->waiting) {
        script_run *run = p->run;
        free(p);
        resume(run, nresults);
    }
}

/* Resumed: the results pushed by chat__script_pending_done are the whole stack. */
static int await_k(lua_State *L, int status, lua_KContext ctx)
{
    (void)status;
    (void)ctx;
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
        free(p);
        return n;
    }
    p->waiting = 1;
    p->run->awaiting = 1;
    lua_settop(L, 0); /* the results will be all that is on the stack */
    return lua_yieldk(L, 0, 0, await_k);
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
    if (luaL_loadfilex(L, path, "t") != LUA_OK || lua_pcall(L, 0, 0, 0) != LUA_OK) {
        fprintf(stderr, "%s\n", lua_tostring(L, -1));
        rc = CHAT_EINVAL;
    }
    state_retire_timers(st);
    /* timer functions still waiting (a sleep, a store call) finish before the state closes */
    while (st->refs > 1 && uv_run(rt->loop, UV_RUN_ONCE)) {
    }
    uv_run(rt->loop, UV_RUN_NOWAIT);
    lua_close(L);
    chat__vec_free(&st->timers);
    free(st);
    return rc;
}

/* ---- for lua_timer.c ---- */

int chat__script_track_timer(lua_State *L, uv_timer_t *t)
{
    return chat__vec_push(&state_of(L)->timers, t);
}

void chat__script_untrack_timer(lua_State *L, uv_timer_t *t)
{
    chat__vec_remove(&state_of(L)->timers, t);
}

int chat__script_timer_alive(lua_State *L, uv_timer_t *t)
{
    return chat__vec_has(&state_of(L)->timers, t);
}

uv_loop_t *chat__script_loop(lua_State *L) { return chat__script_rt(L)->loop; }
