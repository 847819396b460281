/* lua_json.c: JSON values (jansson, the domain's) to Lua tables and back. JSON null is
 * cjson's null (a NULL light userdata), so scripts compare against chat.json.null. */
#include <lauxlib.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eio.h"
#include "chat.h"
#include "script.h"

#define DEPTH_MAX 64

static const char *const array_key = "chat.array";
static const char *const binary_key = "chat.binary";

/* Binary data travels through JSON as {"$binary": "<base64>"}; in Lua it is a chat.binary
 * userdata, so a handler can tell bytes from text and emits turn it into a binary packet. */
void chat__lua_push_binary(lua_State *L, const void *data, size_t len)
{
    void *p = lua_newuserdatauv(L, len, 0);
    if (len) {
        memcpy(p, data, len);
    }
    if (luaL_newmetatable(L, binary_key)) {
        lua_pushcfunction(L, chat__lua_binary_tostring);
        lua_setfield(L, -2, "__tostring");
        lua_pushcfunction(L, chat__lua_binary_len);
        lua_setfield(L, -2, "__len");
    }
    lua_setmetatable(L, -2);
}

int chat__lua_binary_tostring(lua_State *L)
{
    void *p = luaL_checkudata(L, 1, binary_key);
    lua_pushlstring(L, p, lua_rawlen(L, 1));
    return 1;
}

int chat__lua_binary_len(lua_State *L)
{
    luaL_checkudata(L, 1, binary_key);
    lua_pushinteger(L, (lua_Integer)lua_rawlen(L, 1));
    return 1;
}

static int push_binary_object(lua_State *L, const json_t *v)
{
    json_t *b64 = json_object_get(v, "$binary");
    if (json_object_size(v) != 1 || !json_is_string(b64)) {
        return 0;
    }
    size_t n = json_string_length(b64);
    uint8_t *tmp = malloc(n + 1);
    if (!tmp) {
        return 0;
    }
    memcpy(tmp, json_string_value(b64), n);
    long len = chat__base64_decode_inplace(tmp, n);
    if (len >= 0) {
        chat__lua_push_binary(L, tmp, (size_t)len);
    }
    free(tmp);
    return len >= 0;
}

/* The metatable that marks a table as a JSON array (an empty one included). */
void chat__lua_push_array_mt(lua_State *L)
{
    if (luaL_getsubtable(L, LUA_REGISTRYINDEX, array_key) == 0) {
        lua_pushliteral(L, "array");
        lua_setfield(L, -2, "__name");
    }
}

static void to_lua(lua_State *L, const json_t *v, int depth)
{
    luaL_checkstack(L, 4, "JSON too deep");
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        const char *k;
        json_t *x;
        if (push_binary_object(L, v)) {
            break;
        }
        lua_createtable(L, 0, (int)json_object_size(v));
        json_object_foreach((json_t *)v, k, x) {
            to_lua(L, x, depth + 1);
            lua_setfield(L, -2, k);
        }
        break;
    }
    case JSON_ARRAY: {
        size_t i;
        json_t *x;
        lua_createtable(L, (int)json_array_size(v), 0);
        json_array_foreach(v, i, x) {
            to_lua(L, x, depth + 1);
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        chat__lua_push_array_mt(L);
        lua_setmetatable(L, -2);
        break;
    }
    case JSON_STRING:
        lua_pushlstring(L, json_string_value(v), json_string_length(v));
        break;
    case JSON_INTEGER:
        lua_pushinteger(L, (lua_Integer)json_integer_value(v));
        break;
    case JSON_REAL:
        lua_pushnumber(L, json_real_value(v));
        break;
    case JSON_TRUE:
        lua_pushboolean(L, 1);
        break;
    case JSON_FALSE:
        lua_pushboolean(L, 0);
        break;
    default:
        lua_pushlightuserdata(L, NULL);
        break;
    }
}

void chat__json_to_lua(lua_State *L, const json_t *v)
{
    if (!v) {
        lua_pushnil(L);
        return;
    }
    to_lua(L, v, 0);
}

/* n > 0 when the table is a sequence 1..n and nothing else; 0 when it is empty. */
static lua_Integer sequence_len(lua_State *L, int idx)
{
    lua_Integer n = 0, max = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 1) {
            lua_pop(L, 1);
            return -1;
        }
        lua_Integer k = lua_tointeger(L, -1);
        max = k > max ? k : max;
        n++;
    }
    return n == max ? n : -1;
}

static json_t *to_json(lua_State *L, int idx, int depth, const char **err)
{
    if (depth > DEPTH_MAX) {
        *err = "is nested too deeply";
        return NULL;
    }
    idx = lua_absindex(L, idx);
    switch (lua_type(L, idx)) {
    case LUA_TNIL:
        return json_null();
    case LUA_TBOOLEAN:
        return json_boolean(lua_toboolean(L, idx));
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx)) {
            return json_integer((json_int_t)lua_tointeger(L, idx));
        }
        if (!isfinite(lua_tonumber(L, idx))) {
            *err = "contains NaN or infinity";
            return NULL;
        }
        return json_real(lua_tonumber(L, idx));
    case LUA_TSTRING: {
        size_t len;
        const char *s = lua_tolstring(L, idx, &len);
        if (!chat__utf8_valid((const uint8_t *)s, len)) {
            *err = "contains a string that is not valid UTF-8";
            return NULL;
        }
        return json_stringn(s, len);
    }
    case LUA_TLIGHTUSERDATA:
        if (!lua_touserdata(L, idx)) {
            return json_null();
        }
        break;
    case LUA_TUSERDATA: {
        const void *p = luaL_testudata(L, idx, binary_key);
        chat_buf b = CHAT_BUF_INIT;
        if (!p || chat__base64_encode(&b, p, lua_rawlen(L, idx)) || chat__buf_terminate(&b)) {
            chat__buf_free(&b);
            break;
        }
        json_t *obj = json_pack("{s:s}", "$binary", (const char *)b.data);
        chat__buf_free(&b);
        return obj;
    }
    case LUA_TTABLE: {
        luaL_checkstack(L, 6, "JSON too deep");
        int marked = 0;
        if (lua_getmetatable(L, idx)) {
            lua_getfield(L, LUA_REGISTRYINDEX, array_key);
            marked = lua_rawequal(L, -1, -2);
            lua_pop(L, 2);
        }
        lua_Integer n = sequence_len(L, idx);
        if (marked || n > 0) {
            if (n < 0) {
                *err = "has an array with holes or extra keys";
                return NULL;
            }
            json_t *arr = json_array();
            for (lua_Integer i = 1; arr && i <= n; i++) {
                lua_rawgeti(L, idx, i);
                json_t *x = to_json(L, -1, depth + 1, err);
                lua_pop(L, 1);
                if (!x || json_array_append_new(arr, x)) {
                    json_decref(arr);
                    return NULL;
                }
            }
            return arr;
        }
        json_t *obj = json_object();
        lua_pushnil(L);
        while (obj && lua_next(L, idx)) {
            if (lua_type(L, -2) != LUA_TSTRING) {
                lua_pop(L, 2);
                json_decref(obj);
                *err = "has a table with a key that is not a string";
                return NULL;
            }
            json_t *x = to_json(L, -1, depth + 1, err);
            if (!x || json_object_set_new(obj, lua_tostring(L, -2), x)) {
                if (x) {
                    *err = "has a key that is not valid UTF-8";
                }
                lua_pop(L, 2);
                json_decref(obj);
                return NULL;
            }
            lua_pop(L, 1);
        }
        return obj;
    }
    default:
        break;
    }
    *err = "contains a function, thread or userdata";
    return NULL;
}

json_t *chat__lua_to_json(lua_State *L, int idx, const char **err)
{
    const char *dummy;
    return to_json(L, idx, 0, err ? err : &dummy);
}

/* ---- chat.json: encode and decode the way events are converted ----
 * Arrays stay arrays (empty ones too, through chat.array) and null is chat.null, so a value
 * that came in an event goes out unchanged. A jansson value being built is held in a box
 * whose __gc frees it, so an error half way (the memory cap) leaks nothing. */

static const char *const box_key = "chat.json.box";

static int box_gc(lua_State *L)
{
    json_t **box = luaL_checkudata(L, 1, box_key);
    json_decref(*box);
    *box = NULL;
    return 0;
}

static json_t **push_box(lua_State *L)
{
    json_t **box = lua_newuserdatauv(L, sizeof *box, 0);
    *box = NULL;
    if (luaL_newmetatable(L, box_key)) {
        lua_pushcfunction(L, box_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    return box;
}

/* chat.json.encode(value) -> text (object keys sorted); raises for what JSON cannot carry. */
static int json_encode(lua_State *L)
{
    luaL_checkany(L, 1);
    lua_settop(L, 1);
    json_t **box = push_box(L); /* [value, box] */
    const char *err = NULL;
    *box = chat__lua_to_json(L, 1, &err);
    if (!*box) {
        return luaL_argerror(L, 1, lua_pushfstring(L, "cannot be encoded: it %s", err));
    }
    size_t flags = JSON_COMPACT | JSON_ENCODE_ANY | JSON_SORT_KEYS;
    size_t n = json_dumpb(*box, NULL, 0, flags);
    luaL_Buffer b;
    char *p = luaL_buffinitsize(L, &b, n);
    json_dumpb(*box, p, n, flags);
    luaL_pushresultsize(&b, n);
    json_decref(*box);
    *box = NULL;
    return 1;
}

/* chat.json.decode(text) -> value | nil, message (with the line and column). */
static int json_decode(lua_State *L)
{
    size_t len;
    const char *text = luaL_checklstring(L, 1, &len);
    json_t **box = push_box(L);
    json_error_t jerr;
    *box = json_loadb(text, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
    if (!*box) {
        return chat__lua_fail(L, CHAT_EINVAL,
                              lua_pushfstring(L, "invalid JSON at line %d, column %d: %s",
                                              jerr.line, jerr.column, jerr.text));
    }
    chat__json_to_lua(L, *box);
    json_decref(*box);
    *box = NULL;
    return 1;
}

int luaopen_chat_json(lua_State *L)
{
    static const luaL_Reg funcs[] = {
        {"encode", json_encode}, {"decode", json_decode}, {NULL, NULL},
    };
    luaL_newlib(L, funcs);
    lua_pushlightuserdata(L, NULL);
    lua_setfield(L, -2, "null");
    return 1;
}
