/* script_sandbox.c: the sandbox a policy runs in. A Lua state built from explicit allow and
 * deny lists (Redis's script_lua.c), an allocator with a memory cap, an instruction budget
 * that holds on every thread, pattern functions with a step limit, and protection between
 * policies: each file has its own globals, and the shared libraries, the `chat` module and
 * the string metatable are read-only. */
#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "rt.h"
#include "script_int.h"

script_state *chat__script_state_of(lua_State *L)
{
    lua_getfield(L, LUA_REGISTRYINDEX, SCRIPT_STATE_KEY);
    script_state *st = lua_touserdata(L, -1);
    lua_pop(L, 1);
    return st;
}

/* ---- memory cap ----
 * The cap applies only while script code runs, that is inside chat__script_call and
 * chat__script_resume, where an allocation failure is an error the running code gets. The
 * host's own work on the state (an event turned into a table, results pushed onto a waiting
 * coroutine, a traceback) runs outside them, where a failure would abort the process; it is
 * bounded by the size of the events, so it may go past the cap, and the next script
 * allocation fails. The one exception, results pushed while script code waits in chatd --run,
 * turns the cap off itself (chat__script_pending_thread). */

void *chat__script_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    script_state *st = ud;
    size_t old = ptr ? osize : 0;
    if (nsize == 0) {
        st->mem -= old;
        free(ptr);
        return NULL;
    }
    if (st->capped && nsize > old && st->mem - old + nsize > st->mem_cap) {
        return NULL; /* Lua raises "not enough memory" in the running code */
    }
    void *p = realloc(ptr, nsize);
    if (p) {
        st->mem = st->mem - old + nsize;
    }
    return p;
}

int chat__script_call(script_state *st, lua_State *L, int nargs, int nres)
{
    int outer = st->capped;
    st->capped = 1;
    int rc = lua_pcall(L, nargs, nres, 0);
    st->capped = outer;
    return rc;
}

int chat__script_resume(script_state *st, lua_State *co, int nargs, int *nres)
{
    int outer = st->capped;
    st->capped = 1;
    int rc = lua_resume(co, NULL, nargs, nres);
    st->capped = outer;
    return rc;
}

/* ---- instruction budget ----
 * A count hook on the run's coroutine, inherited by every coroutine created from it. Once the
 * budget is spent, every thread that reaches the hook switches to an every-instruction hook
 * and raises: a pcall, an xpcall handler, a __close or a nested coroutine can catch the error,
 * but the next instruction outside it raises again, so the kill unwinds the whole run. */

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

void chat__script_budget_hook(lua_State *L, lua_Debug *ar)
{
    script_state *st = chat__script_state_of(L);
    long *budget = st->current ? &st->current->budget : &st->load_budget;
    if (ar->event == LUA_HOOKCOUNT && *budget >= 0) {
        *budget -= lua_gethookcount(L); /* instructions since the last call */
    }
    if (*budget < 0) {
        if (st->current) {
            st->current->killed = 1;
        }
        /* this thread, whichever it is, fires at every instruction from now on */
        lua_sethook(L, chat__script_budget_hook, LUA_MASKCOUNT | LUA_MASKLINE, 1);
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

/* ---- xpcall ----
 * The budget's kill is raised from inside the count hook, and Lua calls an xpcall message
 * handler before it unwinds, with hooks still off: a handler that loops would run forever.
 * Once the budget is spent the handler is skipped and the error object passed on. */

static int budget_spent(lua_State *L)
{
    script_state *st = chat__script_state_of(L);
    return st->current ? st->current->budget < 0 : st->loading && st->load_budget < 0;
}

static int msgh_guard(lua_State *L)
{
    if (budget_spent(L)) {
        return 1; /* the error object, untouched */
    }
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, 1);
    return 1;
}

static int xpcall_k(lua_State *L, int status, lua_KContext ctx)
{
    (void)status;
    (void)ctx;
    return lua_gettop(L);
}

static int safe_xpcall(lua_State *L)
{
    int n = lua_gettop(L);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    lua_pushvalue(L, 2);
    lua_pushcclosure(L, msgh_guard, 1);
    lua_replace(L, 2);
    lua_pushvalue(L, lua_upvalueindex(1)); /* the original xpcall */
    lua_insert(L, 1);
    lua_callk(L, n, LUA_MULTRET, 0, xpcall_k); /* f may wait for I/O: yieldable */
    return lua_gettop(L);
}

/* ---- print goes to the log ---- */

/* print(...): one log line (event "script") with the values as tostring shows them, tab
 * separated, and the script's file and line; stdout is not the scripts' to write on. */
static int log_print(lua_State *L)
{
    int n = lua_gettop(L);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (int i = 1; i <= n; i++) {
        if (i > 1) {
            luaL_addchar(&b, '\t');
        }
        luaL_tolstring(L, i, NULL);
        luaL_addvalue(&b);
    }
    luaL_pushresult(&b);
    json_t *fields = NULL;
    lua_Debug ar;
    if (lua_getstack(L, 1, &ar) && lua_getinfo(L, "Sl", &ar)) {
        fields = json_pack("{s:o}", "script", json_sprintf("%s:%d", ar.short_src, ar.currentline));
    }
    chat__log(CHAT_LOG_INFO, "script", lua_tostring(L, -1), fields);
    return 0;
}

/* ---- read-only tables ----
 * A policy must not change what another policy relies on: the libraries, the `chat` module,
 * the modules `require` hands out and the string metatable are read-only proxies (an empty
 * table whose metatable reads through to the real one and refuses writes; rawset refuses
 * them too), and each policy file runs with globals of its own. */

static const char *const readonly_key = "chat.readonly"; /* proxy -> true (weak keys) */

static int readonly_newindex(lua_State *L)
{
    return luaL_error(L, "attempt to change a read-only table (field '%s'); the libraries and "
                         "the chat module are shared by every policy",
                      lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2) : "?");
}

static int readonly_pairs(lua_State *L)
{
    lua_getglobal(L, "next");
    lua_getmetatable(L, 1);
    lua_getfield(L, -1, "__index"); /* [.., next, mt, real] */
    lua_remove(L, -2);
    lua_pushnil(L);
    return 3;
}

static int readonly_len(lua_State *L)
{
    lua_getmetatable(L, 1);
    lua_getfield(L, -1, "__index");
    lua_pushinteger(L, (lua_Integer)lua_rawlen(L, -1));
    return 1;
}

/* [.., t] -> [.., proxy of t]; a proxy stays as it is. */
static void push_readonly(lua_State *L)
{
    lua_getfield(L, LUA_REGISTRYINDEX, readonly_key);
    lua_pushvalue(L, -2);
    int already = lua_rawget(L, -2) != LUA_TNIL;
    lua_pop(L, 2);
    if (already) {
        return;
    }
    lua_newtable(L);                /* [.., t, proxy] */
    lua_createtable(L, 0, 5);       /* [.., t, proxy, mt] */
    lua_pushvalue(L, -3);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, readonly_newindex);
    lua_setfield(L, -2, "__newindex");
    lua_pushcfunction(L, readonly_pairs);
    lua_setfield(L, -2, "__pairs");
    lua_pushcfunction(L, readonly_len);
    lua_setfield(L, -2, "__len");
    lua_pushliteral(L, "read-only");
    lua_setfield(L, -2, "__metatable");
    lua_setmetatable(L, -2);
    lua_remove(L, -2);              /* [.., proxy] */
    lua_getfield(L, LUA_REGISTRYINDEX, readonly_key);
    lua_pushvalue(L, -2);
    lua_pushboolean(L, 1);
    lua_rawset(L, -3);
    lua_pop(L, 1);
}

/* The table at field name of the table at idx becomes read-only in place. */
static void protect_field(lua_State *L, int idx, const char *name)
{
    idx = lua_absindex(L, idx);
    if (lua_getfield(L, idx, name) == LUA_TTABLE) {
        push_readonly(L);
        lua_setfield(L, idx, name);
    } else {
        lua_pop(L, 1);
    }
}

static int is_readonly(lua_State *L, int idx)
{
    idx = lua_absindex(L, idx);
    lua_getfield(L, LUA_REGISTRYINDEX, readonly_key);
    lua_pushvalue(L, idx);
    int ro = lua_rawget(L, -2) != LUA_TNIL;
    lua_pop(L, 2);
    return ro;
}

/* rawset() that refuses the read-only proxies. */
static int safe_rawset(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_argcheck(L, !is_readonly(L, 1), 1, "a read-only table");
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, 1);
    return 1;
}

/* require() whose modules are shared read-only: one policy cannot change what another gets. */
static int safe_require(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    lua_settop(L, 1);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_pushvalue(L, 1);
    lua_call(L, 1, 2); /* [name, module, loader data] */
    if (lua_istable(L, 2) && !is_readonly(L, 2)) {
        if (strcmp(name, "chat") == 0) {
            /* its sub-modules (kv, timer, ...) are shared too */
            lua_pushnil(L);
            while (lua_next(L, 2)) {
                if (lua_type(L, -2) == LUA_TSTRING && lua_istable(L, -1)) {
                    lua_pushvalue(L, -2);
                    lua_insert(L, -2);
                    push_readonly(L);
                    lua_rawset(L, 2); /* replacing a key's value while iterating is allowed */
                } else {
                    lua_pop(L, 1);
                }
            }
        }
        lua_pushvalue(L, 2);
        push_readonly(L);
        lua_replace(L, 2);
        luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
        lua_pushvalue(L, 2);
        lua_setfield(L, -2, name);
        lua_pop(L, 1);
    }
    return 2;
}

/* The libraries, package's view, the string metatable and the globals become read-only. */
static void protect_shared(lua_State *L)
{
    lua_newtable(L);
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "k");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    lua_setfield(L, LUA_REGISTRYINDEX, readonly_key);

    wrap_global(L, "rawset", safe_rawset);
    wrap_global(L, "xpcall", safe_xpcall);
    wrap_global(L, "require", safe_require);
    lua_pushcfunction(L, log_print);
    lua_setglobal(L, "print");

    /* package: a view without the searchers, with read-only loaded and preload */
    lua_getglobal(L, "package");
    lua_createtable(L, 0, 4); /* [.., package, view] */
    static const char *const package_view[] = {"path", "config", "loaded", "preload", NULL};
    for (const char *const *f = package_view; *f; f++) {
        lua_getfield(L, -2, *f);
        if (lua_istable(L, -1)) {
            push_readonly(L);
        }
        lua_setfield(L, -2, *f);
    }
    lua_setglobal(L, "package");
    lua_pop(L, 1);

    lua_pushglobaltable(L);
    static const char *const libs[] = {"string", "table", "math", "os", "coroutine", "utf8",
                                       "package", NULL};
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE); /* [.., G, loaded] */
    for (const char *const *lib = libs; *lib; lib++) {
        protect_field(L, -2, *lib);
        lua_getfield(L, -2, *lib);
        lua_setfield(L, -2, *lib);
    }
    /* strings' methods read through the read-only string table; getmetatable("") is a
     * read-only view of the metatable */
    lua_pushliteral(L, "");
    lua_getmetatable(L, -1); /* [.., G, loaded, "", mt] */
    lua_getfield(L, -4, "string");
    lua_setfield(L, -2, "__index");
    lua_createtable(L, 0, 1);
    lua_getfield(L, -5, "string");
    lua_setfield(L, -2, "__index");
    push_readonly(L);
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 2);
    /* the globals: _G and load()'s default environment are a read-only view */
    lua_pushvalue(L, -2);
    push_readonly(L); /* [.., G, loaded, GP] */
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, "_G");
    lua_pushvalue(L, -1);
    lua_setfield(L, -4, "_G");
    lua_rawseti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);
    lua_pop(L, 2);
}

void chat__script_push_env(lua_State *L)
{
    lua_newtable(L); /* [.., env] */
    lua_createtable(L, 0, 1);
    lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);
    lua_setfield(L, -2, "__index");
    lua_setmetatable(L, -2);
    lua_pushvalue(L, -1);
    lua_setfield(L, -2, "_G"); /* a policy's _G is its own globals */
}

int chat__script_open_sandbox(lua_State *L, const chat_config *cfg, int sandboxed)
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
        chat__script_open_patterns(L);
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
    chat__script_open_patterns(L);
    protect_shared(L);
    return 0;
}