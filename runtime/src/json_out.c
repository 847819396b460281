/* json_out.c: a compact JSON writer for jansson values (json_out.h). */
#include "json_out.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "chat.h"

#define JSON_OUT_DEPTH_MAX 2048

/* What jansson's dump_string escapes: '"', '\\' and bytes below 0x20 (without
 * JSON_ENSURE_ASCII or JSON_ESCAPE_SLASH). */
static const uint8_t needs_escape[256] = {
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    ['"'] = 1, ['\\'] = 1,
};

static int put_string(chat_buf *out, const char *s, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";
    if (chat__buf_reserve(out, len + 2)) {
        return CHAT_ENOMEM;
    }
    out->data[out->len++] = '"';
    size_t run = 0; /* start of the bytes not yet copied */
    for (size_t i = 0; i < len; i++) {
        uint8_t c = (uint8_t)s[i];
        if (!needs_escape[c]) {
            continue;
        }
        char esc[6] = {'\\', 0};
        size_t n = 2;
        switch (c) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        default:
            memcpy(esc + 1, "u00", 3);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            n = 6;
        }
        if (chat__buf_append(out, s + run, i - run) || chat__buf_append(out, esc, n)) {
            return CHAT_ENOMEM;
        }
        run = i + 1;
    }
    if (chat__buf_append(out, s + run, len - run) || chat__buf_appendc(out, '"')) {
        return CHAT_ENOMEM;
    }
    return 0;
}

static int put_int(chat_buf *out, json_int_t v)
{
    char tmp[24];
    size_t n = sizeof tmp;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        tmp[--n] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0) {
        tmp[--n] = '-';
    }
    return chat__buf_append(out, tmp + n, sizeof tmp - n) ? CHAT_ENOMEM : 0;
}

static int put_value(chat_buf *out, const json_t *v, int depth)
{
    if (depth > JSON_OUT_DEPTH_MAX) {
        return CHAT_EINVAL;
    }
    int rc;
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        const char *k;
        json_t *x;
        int first = 1;
        if (chat__buf_appendc(out, '{')) {
            return CHAT_ENOMEM;
        }
        json_object_foreach((json_t *)v, k, x) {
            if (!first && chat__buf_appendc(out, ',')) {
                return CHAT_ENOMEM;
            }
            if ((rc = put_string(out, k, strlen(k)))) {
                return rc;
            }
            if (chat__buf_appendc(out, ':')) {
                return CHAT_ENOMEM;
            }
            if ((rc = put_value(out, x, depth + 1))) {
                return rc;
            }
            first = 0;
        }
        return chat__buf_appendc(out, '}') ? CHAT_ENOMEM : 0;
    }
    case JSON_ARRAY: {
        size_t n = json_array_size(v);
        if (chat__buf_appendc(out, '[')) {
            return CHAT_ENOMEM;
        }
        for (size_t i = 0; i < n; i++) {
            if (i && chat__buf_appendc(out, ',')) {
                return CHAT_ENOMEM;
            }
            if ((rc = put_value(out, json_array_get(v, i), depth + 1))) {
                return rc;
            }
        }
        return chat__buf_appendc(out, ']') ? CHAT_ENOMEM : 0;
    }
    case JSON_STRING:
        return put_string(out, json_string_value(v), json_string_length(v));
    case JSON_INTEGER:
        return put_int(out, json_integer_value(v));
    case JSON_TRUE:
        return chat__buf_append(out, "true", 4) ? CHAT_ENOMEM : 0;
    case JSON_FALSE:
        return chat__buf_append(out, "false", 5) ? CHAT_ENOMEM : 0;
    case JSON_NULL:
        return chat__buf_append(out, "null", 4) ? CHAT_ENOMEM : 0;
    case JSON_REAL: {
        /* rare on these paths: jansson's own formatting, so the bytes stay the same */
        char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        if (!text) {
            return CHAT_EINVAL;
        }
        rc = chat__buf_append(out, text, strlen(text)) ? CHAT_ENOMEM : 0;
        free(text);
        return rc;
    }
    }
    return CHAT_EINVAL;
}

int chat__json_append(chat_buf *out, const json_t *v)
{
    size_t start = out->len;
    int rc = v ? put_value(out, v, 0) : CHAT_EINVAL;
    if (rc) {
        out->len = start;
    }
    return rc;
}
