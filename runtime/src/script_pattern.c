/* script_pattern.c: string.find, match, gmatch and gsub for scripts, with Lua 5.4's pattern
 * language and a limit on the work one call may do. Lua's own matcher backtracks without
 * bound inside a single C call, where no instruction budget can reach it:
 * ("a"):rep(27):find(("a*"):rep(9) .. "b") holds the whole server for seconds. This matcher
 * counts its steps (each pattern item tried, each character a repetition or a %b scans) and
 * raises "pattern too complex" past CHAT_LUA_PATTERN_STEPS, so the call fails and nothing
 * else notices. Plain finds (no magic characters, or plain = true) are a memory search and
 * are not limited. */
#include <ctype.h>
#include <lauxlib.h>
#include <string.h>

#include "rt.h"
#include "script_int.h"

#define CAPTURES_MAX 32
#define DEPTH_MAX 200 /* recursion of the matcher, as in Lua */
#define CAP_UNFINISHED (-1)
#define CAP_POSITION (-2)
#define SPECIALS "^$*+?.([%-"

typedef struct matcher {
    const char *src, *end; /* the subject; *end is its terminating NUL */
    const char *pend;      /* the pattern's end */
    lua_State *L;
    long steps, limit;
    int depth;
    int level;
    struct {
        const char *init;
        ptrdiff_t len;
    } cap[CAPTURES_MAX];
} matcher;

static const char *do_match(matcher *m, const char *s, const char *p);

static void too_complex(matcher *m)
{
    script_state *st = chat__script_state_of(m->L);
    if (st && st->host) {
        st->host->patterns_refused++;
    }
    luaL_error(m->L,
               "pattern too complex: more than %d matching steps on a subject of %d bytes "
               "(CHAT_LUA_PATTERN_STEPS); simplify the pattern or shorten the subject",
               (int)m->limit, (int)(m->end - m->src));
}

static void step(matcher *m)
{
    if (--m->steps < 0) {
        too_complex(m);
    }
}

/* The end of the single-character class that starts at p. */
static const char *class_end(matcher *m, const char *p)
{
    char c = *p++;
    if (c == '%') {
        if (p >= m->pend) {
            luaL_error(m->L, "malformed pattern (ends with '%%')");
        }
        return p + 1;
    }
    if (c == '[') {
        if (*p == '^') {
            p++;
        }
        do { /* the first character, even ']', belongs to the set */
            if (p >= m->pend) {
                luaL_error(m->L, "malformed pattern (missing ']')");
            }
            char d = *p++;
            if (d == '%' && p < m->pend) {
                p++;
            }
        } while (*p != ']');
        return p + 1;
    }
    return p;
}

static int class_match(int c, int cl)
{
    int r;
    switch (tolower(cl)) {
    case 'a': r = isalpha(c); break;
    case 'c': r = iscntrl(c); break;
    case 'd': r = isdigit(c); break;
    case 'g': r = isgraph(c); break;
    case 'l': r = islower(c); break;
    case 'p': r = ispunct(c); break;
    case 's': r = isspace(c); break;
    case 'u': r = isupper(c); break;
    case 'w': r = isalnum(c); break;
    case 'x': r = isxdigit(c); break;
    default: return cl == c;
    }
    return isupper(cl) ? !r : r != 0;
}

/* p at '[', last at the closing ']'. */
static int set_match(int c, const char *p, const char *last)
{
    int in = 1;
    if (p[1] == '^') {
        in = 0;
        p++;
    }
    while (++p < last) {
        if (*p == '%') {
            p++;
            if (class_match(c, (unsigned char)*p)) {
                return in;
            }
        } else if (p[1] == '-' && p + 2 < last) {
            p += 2;
            if ((unsigned char)p[-2] <= c && c <= (unsigned char)*p) {
                return in;
            }
        } else if ((unsigned char)*p == c) {
            return in;
        }
    }
    return !in;
}

static int single_match(matcher *m, const char *s, const char *p, const char *ep)
{
    if (s >= m->end) {
        return 0;
    }
    int c = (unsigned char)*s;
    switch (*p) {
    case '.': return 1;
    case '%': return class_match(c, (unsigned char)p[1]);
    case '[': return set_match(c, p, ep - 1);
    default: return (unsigned char)*p == c;
    }
}

static const char *max_expand(matcher *m, const char *s, const char *p, const char *ep)
{
    ptrdiff_t i = 0;
    while (single_match(m, s + i, p, ep)) {
        step(m);
        i++;
    }
    for (; i >= 0; i--) { /* the longest first, then one shorter at a time */
        const char *r = do_match(m, s + i, ep + 1);
        if (r) {
            return r;
        }
    }
    return NULL;
}

static const char *min_expand(matcher *m, const char *s, const char *p, const char *ep)
{
    for (;;) {
        const char *r = do_match(m, s, ep + 1);
        if (r) {
            return r;
        }
        if (!single_match(m, s, p, ep)) {
            return NULL;
        }
        step(m);
        s++;
    }
}

static const char *start_capture(matcher *m, const char *s, const char *p, ptrdiff_t what)
{
    if (m->level >= CAPTURES_MAX) {
        luaL_error(m->L, "too many captures");
    }
    m->cap[m->level].init = s;
    m->cap[m->level].len = what;
    m->level++;
    const char *r = do_match(m, s, p);
    if (!r) {
        m->level--;
    }
    return r;
}

static const char *end_capture(matcher *m, const char *s, const char *p)
{
    int l = m->level - 1;
    while (l >= 0 && m->cap[l].len != CAP_UNFINISHED) {
        l--;
    }
    if (l < 0) {
        luaL_error(m->L, "invalid pattern capture");
    }
    m->cap[l].len = s - m->cap[l].init;
    const char *r = do_match(m, s, p);
    if (!r) {
        m->cap[l].len = CAP_UNFINISHED;
    }
    return r;
}

static int capture_index(matcher *m, int digit)
{
    int l = digit - '1';
    if (l < 0 || l >= m->level || m->cap[l].len == CAP_UNFINISHED) {
        luaL_error(m->L, "invalid capture index %%%d", l + 1);
    }
    return l;
}

static const char *match_capture(matcher *m, const char *s, int digit)
{
    int l = capture_index(m, digit);
    ptrdiff_t len = m->cap[l].len;
    if (len >= 0 && m->end - s >= len && memcmp(m->cap[l].init, s, (size_t)len) == 0) {
        return s + len;
    }
    return NULL;
}

static const char *match_balance(matcher *m, const char *s, const char *p)
{
    if (p + 1 >= m->pend) {
        luaL_error(m->L, "malformed pattern (missing arguments to '%%b')");
    }
    if (s >= m->end || *s != *p) {
        return NULL;
    }
    char open = p[0], close = p[1];
    int depth = 1;
    while (++s < m->end) {
        step(m);
        if (*s == close) {
            if (--depth == 0) {
                return s + 1;
            }
        } else if (*s == open) {
            depth++;
        }
    }
    return NULL;
}

static const char *do_match(matcher *m, const char *s, const char *p)
{
    if (--m->depth == 0) {
        luaL_error(m->L, "pattern too complex (nested too deeply)");
    }
    for (;;) {
        step(m);
        if (p == m->pend) {
            break;
        }
        if (*p == '(') {
            s = p + 1 < m->pend && p[1] == ')' ? start_capture(m, s, p + 2, CAP_POSITION)
                                               : start_capture(m, s, p + 1, CAP_UNFINISHED);
            break;
        }
        if (*p == ')') {
            s = end_capture(m, s, p + 1);
            break;
        }
        if (*p == '$' && p + 1 == m->pend) {
            s = s == m->end ? s : NULL;
            break;
        }
        if (*p == '%' && p[1] == 'b') {
            s = match_balance(m, s, p + 2);
            if (!s) {
                break;
            }
            p += 4;
            continue;
        }
        if (*p == '%' && p[1] == 'f') {
            p += 2;
            if (*p != '[') {
                luaL_error(m->L, "missing '[' after '%%f' in pattern");
            }
            const char *ep = class_end(m, p);
            int prev = s == m->src ? '\0' : (unsigned char)s[-1];
            int cur = (unsigned char)*s; /* the NUL at the end */
            if (!set_match(prev, p, ep - 1) && set_match(cur, p, ep - 1)) {
                p = ep;
                continue;
            }
            s = NULL;
            break;
        }
        if (*p == '%' && isdigit((unsigned char)p[1])) {
            s = match_capture(m, s, p[1]);
            if (!s) {
                break;
            }
            p += 2;
            continue;
        }
        const char *ep = class_end(m, p);
        char rep = ep < m->pend ? *ep : '\0';
        if (!single_match(m, s, p, ep)) {
            if (rep == '*' || rep == '?' || rep == '-') {
                p = ep + 1; /* zero repetitions */
                continue;
            }
            s = NULL;
            break;
        }
        if (rep == '?') {
            const char *r = do_match(m, s + 1, ep + 1);
            if (r) {
                s = r;
                break;
            }
            p = ep + 1;
            continue;
        }
        if (rep == '+') {
            s = max_expand(m, s + 1, p, ep);
            break;
        }
        if (rep == '*') {
            s = max_expand(m, s, p, ep);
            break;
        }
        if (rep == '-') {
            s = min_expand(m, s, p, ep);
            break;
        }
        s++;
        p = ep;
    }
    m->depth++;
    return s;
}

static void matcher_init(matcher *m, lua_State *L, const char *s, size_t ls, const char *p,
                         size_t lp)
{
    script_state *st = chat__script_state_of(L);
    m->L = L;
    m->src = s;
    m->end = s + ls;
    m->pend = p + lp;
    m->limit = st && st->pattern_steps > 0 ? st->pattern_steps : 10000000;
    m->steps = m->limit;
}

static void matcher_reset(matcher *m)
{
    m->level = 0;
    m->depth = DEPTH_MAX;
}

/* Pushes capture i, or the whole match s..e when there are none. */
static void push_capture(matcher *m, int i, const char *s, const char *e)
{
    if (i >= m->level) {
        if (i != 0) {
            luaL_error(m->L, "invalid capture index %%%d", i + 1);
        }
        lua_pushlstring(m->L, s, (size_t)(e - s));
        return;
    }
    ptrdiff_t len = m->cap[i].len;
    if (len == CAP_UNFINISHED) {
        luaL_error(m->L, "unfinished capture");
    }
    if (len == CAP_POSITION) {
        lua_pushinteger(m->L, (lua_Integer)(m->cap[i].init - m->src) + 1);
    } else {
        lua_pushlstring(m->L, m->cap[i].init, (size_t)len);
    }
}

/* The captures (or the whole match when s is not NULL and there are none). */
static int push_captures(matcher *m, const char *s, const char *e)
{
    int n = m->level == 0 && s ? 1 : m->level;
    luaL_checkstack(m->L, n, "too many captures");
    for (int i = 0; i < n; i++) {
        push_capture(m, i, s, e);
    }
    return n;
}

/* Lua 5.4's initial position: negative counts from the end, 0 and below the start are 1. */
static size_t start_pos(lua_Integer pos, size_t len)
{
    if (pos > 0) {
        return (size_t)pos;
    }
    if (pos == 0 || pos < -(lua_Integer)len) {
        return 1;
    }
    return len + (size_t)pos + 1;
}

static int no_specials(const char *p, size_t lp)
{
    for (size_t i = 0; i < lp; i++) {
        if (strchr(SPECIALS, p[i]) && p[i]) {
            return 0;
        }
    }
    return 1;
}

static const char *mem_find(const char *s, size_t ls, const char *p, size_t lp)
{
    if (lp == 0) {
        return s;
    }
    while (lp <= ls) {
        const char *hit = memchr(s, *p, ls - lp + 1);
        if (!hit) {
            return NULL;
        }
        if (memcmp(hit + 1, p + 1, lp - 1) == 0) {
            return hit;
        }
        ls -= (size_t)(hit + 1 - s);
        s = hit + 1;
    }
    return NULL;
}

static int find_aux(lua_State *L, int find)
{
    size_t ls, lp;
    const char *s = luaL_checklstring(L, 1, &ls);
    const char *p = luaL_checklstring(L, 2, &lp);
    size_t init = start_pos(luaL_optinteger(L, 3, 1), ls);
    if (init > ls + 1) {
        luaL_pushfail(L);
        return 1;
    }
    if (find && (lua_toboolean(L, 4) || no_specials(p, lp))) {
        const char *hit = mem_find(s + init - 1, ls - init + 1, p, lp);
        if (hit) {
            lua_pushinteger(L, (lua_Integer)(hit - s) + 1);
            lua_pushinteger(L, (lua_Integer)(hit - s + (ptrdiff_t)lp));
            return 2;
        }
        luaL_pushfail(L);
        return 1;
    }
    matcher m;
    int anchor = lp > 0 && *p == '^';
    if (anchor) {
        p++;
        lp--;
    }
    matcher_init(&m, L, s, ls, p, lp);
    const char *s1 = s + init - 1;
    do {
        matcher_reset(&m);
        const char *e = do_match(&m, s1, p);
        if (e) {
            if (find) {
                lua_pushinteger(L, (lua_Integer)(s1 - s) + 1);
                lua_pushinteger(L, (lua_Integer)(e - s));
                return push_captures(&m, NULL, NULL) + 2;
            }
            return push_captures(&m, s1, e);
        }
    } while (s1++ < m.end && !anchor);
    luaL_pushfail(L);
    return 1;
}

static int str_find(lua_State *L) { return find_aux(L, 1); }
static int str_match(lua_State *L) { return find_aux(L, 0); }

typedef struct gmatch_state {
    size_t pos;       /* where the next search starts */
    ptrdiff_t last;   /* end of the last match, -1: none (an empty match may not repeat) */
} gmatch_state;

/* upvalues: subject, pattern, state */
static int gmatch_next(lua_State *L)
{
    size_t ls, lp;
    const char *s = lua_tolstring(L, lua_upvalueindex(1), &ls);
    const char *p = lua_tolstring(L, lua_upvalueindex(2), &lp);
    gmatch_state *g = lua_touserdata(L, lua_upvalueindex(3));
    matcher m;
    matcher_init(&m, L, s, ls, p, lp);
    for (const char *src = s + g->pos; src <= m.end; src++) {
        matcher_reset(&m);
        const char *e = do_match(&m, src, p);
        if (e && e - s != g->last) {
            g->pos = (size_t)(e - s);
            g->last = e - s;
            return push_captures(&m, src, e);
        }
    }
    g->pos = ls + 1;
    return 0;
}

static int str_gmatch(lua_State *L)
{
    size_t ls;
    luaL_checklstring(L, 1, &ls);
    luaL_checkstring(L, 2);
    size_t init = start_pos(luaL_optinteger(L, 3, 1), ls);
    lua_settop(L, 2);
    gmatch_state *g = lua_newuserdatauv(L, sizeof *g, 0);
    g->pos = init > ls + 1 ? ls + 1 : init - 1;
    g->last = -1;
    lua_pushcclosure(L, gmatch_next, 3);
    return 1;
}

/* Appends the replacement of the match s..e to b. */
static void add_value(matcher *m, luaL_Buffer *b, const char *s, const char *e, int tr)
{
    lua_State *L = m->L;
    if (tr == LUA_TFUNCTION) {
        lua_pushvalue(L, 3);
        int n = push_captures(m, s, e);
        lua_call(L, n, 1);
    } else if (tr == LUA_TTABLE) {
        push_capture(m, 0, s, e);
        lua_gettable(L, 3);
    } else {
        size_t lr;
        const char *r = lua_tolstring(L, 3, &lr);
        for (size_t i = 0; i < lr; i++) {
            if (r[i] != '%') {
                luaL_addchar(b, r[i]);
                continue;
            }
            i++;
            if (i < lr && r[i] == '%') {
                luaL_addchar(b, '%');
            } else if (i < lr && isdigit((unsigned char)r[i])) {
                if (r[i] == '0') {
                    luaL_addlstring(b, s, (size_t)(e - s));
                } else {
                    push_capture(m, r[i] - '1', s, e);
                    luaL_tolstring(L, -1, NULL);
                    lua_remove(L, -2);
                    luaL_addvalue(b);
                }
            } else {
                luaL_error(L, "invalid use of '%%' in replacement string");
            }
        }
        return;
    }
    if (!lua_toboolean(L, -1)) { /* nil or false: keep the original text */
        lua_pop(L, 1);
        luaL_addlstring(b, s, (size_t)(e - s));
    } else if (!lua_isstring(L, -1)) {
        luaL_error(L, "invalid replacement value (a %s)", luaL_typename(L, -1));
    } else {
        luaL_addvalue(b);
    }
}

static int str_gsub(lua_State *L)
{
    size_t ls, lp;
    const char *src = luaL_checklstring(L, 1, &ls);
    const char *p = luaL_checklstring(L, 2, &lp);
    int tr = lua_type(L, 3);
    lua_Integer max_n = luaL_optinteger(L, 4, (lua_Integer)ls + 1);
    luaL_argexpected(L, tr == LUA_TNUMBER || tr == LUA_TSTRING || tr == LUA_TFUNCTION ||
                            tr == LUA_TTABLE,
                     3, "string/function/table");
    int anchor = lp > 0 && *p == '^';
    if (anchor) {
        p++;
        lp--;
    }
    matcher m;
    matcher_init(&m, L, src, ls, p, lp);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    const char *last = NULL;
    lua_Integer n = 0;
    while (n < max_n) {
        matcher_reset(&m);
        const char *e = do_match(&m, src, p);
        if (e && e != last) {
            n++;
            add_value(&m, &b, src, e, tr);
            src = last = e;
        } else if (src < m.end) {
            luaL_addchar(&b, *src++);
        } else {
            break;
        }
        if (anchor) {
            break;
        }
    }
    luaL_addlstring(&b, src, (size_t)(m.end - src));
    luaL_pushresult(&b);
    lua_pushinteger(L, n);
    return 2;
}

/* Replaces the four functions in the string table (before it becomes read-only). */
int chat__script_open_patterns(lua_State *L)
{
    static const luaL_Reg fns[] = {
        {"find", str_find},     {"match", str_match}, {"gmatch", str_gmatch},
        {"gsub", str_gsub},     {NULL, NULL},
    };
    lua_getglobal(L, "string");
    luaL_setfuncs(L, fns, 0);
    lua_pop(L, 1);
    return 0;
}
