/* test_json_out.c: chat__json_append (runtime/src/json_out.c) writes exactly what
 * json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) writes, for every kind of value: strings with
 * every byte jansson escapes and multi-byte UTF-8, integers at their limits, reals, nesting,
 * empty containers, and thousands of random documents. */
#include <math.h>
#include <stdint.h>

#include "chat.h"
#include "json_out.h"
#include "test.h"

static int same(const json_t *v)
{
    char *want = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    chat_buf b = CHAT_BUF_INIT;
    int rc = chat__json_append(&b, v);
    int ok = want && rc == 0 && b.len == strlen(want) && memcmp(b.data, want, b.len) == 0;
    if (!ok) {
        fprintf(stderr, "want %s\n got %.*s (rc %d)\n", want ? want : "(null)", (int)b.len,
                b.data ? (char *)b.data : "", rc);
    }
    free(want);
    chat__buf_free(&b);
    return ok;
}

static json_t *random_string(void)
{
    static const char *pieces[] = {"a", "Z", "\"", "\\", "/", "\n", "\r", "\t", "\b", "\f",
                                   "\x01", "\x1f", "\x7f", " ", "é", "€", "😀", "\xe2\x80\xa8",
                                   "<", "\x10", "0"};
    char s[256];
    size_t n = 0, count = test_rand() % 24;
    for (size_t i = 0; i < count; i++) {
        const char *p = pieces[test_rand() % (sizeof pieces / sizeof pieces[0])];
        size_t l = strlen(p);
        memcpy(s + n, p, l);
        n += l;
    }
    return json_stringn(s, n);
}

static json_t *random_value(int depth)
{
    switch (test_rand() % (depth > 4 ? 6 : 8)) {
    case 0: return random_string();
    case 1: return json_integer((json_int_t)(test_rand() % 2 ? test_rand() : test_rand() % 1000) * (test_rand() % 2 ? 1 : -1));
    case 2: return json_real((double)(int64_t)test_rand() / 1e6);
    case 3: return json_true();
    case 4: return json_false();
    case 5: return json_null();
    case 6: {
        json_t *a = json_array();
        for (size_t i = 0, n = test_rand() % 5; i < n; i++) {
            json_array_append_new(a, random_value(depth + 1));
        }
        return a;
    }
    default: {
        json_t *o = json_object();
        for (size_t i = 0, n = test_rand() % 5; i < n; i++) {
            json_t *k = random_string();
            json_object_set_new(o, json_string_value(k), random_value(depth + 1));
            json_decref(k);
        }
        return o;
    }
    }
}

int main(void)
{
    /* each byte jansson escapes, and the ones it leaves alone */
    for (int c = 1; c < 256; c++) {
        char s[2] = {(char)c, 0};
        if (c < 0x80) {
            json_t *v = json_string(s);
            CHECK(same(v));
            json_decref(v);
        }
    }
    json_t *v = json_pack("{s:s,s:s,s:[],s:{},s:I,s:I,s:I,s:f,s:b,s:n,s:[i,[i,[i]]]}", "id",
                          "65a000000000000000000001", "content", "héllo \"wörld\"\n\t€😀",
                          "attachments", "reactions", "min", (json_int_t)INT64_MIN, "max",
                          (json_int_t)INT64_MAX, "zero", (json_int_t)0, "real", 1.5, "t", 1,
                          "n", "deep", 1, 2, 3);
    CHECK(same(v));
    json_decref(v);
    v = json_stringn("nul\0inside", 11); /* jansson writes it as \u0000 */
    CHECK(same(v));
    json_decref(v);
    for (int i = 0; i < 5000; i++) {
        v = random_value(0);
        CHECK(same(v));
        json_decref(v);
    }
    /* what JSON cannot carry: refused, the buffer as it was */
    chat_buf b = CHAT_BUF_INIT;
    chat__buf_append(&b, "keep", 4);
    v = json_pack("[f]", NAN);
    if (v) { /* jansson refuses to make a NaN real; then there is nothing to check */
        CHECK(chat__json_append(&b, v) == CHAT_EINVAL && b.len == 4);
        json_decref(v);
    }
    json_t *deep = json_array(), *cur = deep;
    for (int i = 0; i < 3000; i++) {
        json_t *next = json_array();
        json_array_append_new(cur, next);
        cur = next;
    }
    CHECK(chat__json_append(&b, deep) == CHAT_EINVAL && b.len == 4);
    json_decref(deep);
    chat__buf_free(&b);
    return TEST_DONE("test_json_out");
}
