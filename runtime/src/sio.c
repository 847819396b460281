#include "sio.h"

#include <string.h>

#include "chat.h"
#include "eio.h"
#include "json_out.h"

#define SIO_ACK_ID_MAX ((UINT64_C(1) << 53) - 1) /* ids must survive a JS number */

enum ack_rule { ACK_NONE, ACK_OPTIONAL, ACK_REQUIRED };
enum data_rule { DATA_NONE, DATA_OBJECT_OPTIONAL, DATA_OBJECT, DATA_EVENT, DATA_ARRAY };

typedef struct sio_rule {
    unsigned char binary; /* carries "<attachments>-" */
    unsigned char ack;    /* ack_rule */
    unsigned char data;   /* data_rule */
} sio_rule;

static const sio_rule rules[] = {
    [SIO_CONNECT] = {0, ACK_NONE, DATA_OBJECT_OPTIONAL},
    [SIO_DISCONNECT] = {0, ACK_NONE, DATA_NONE},
    [SIO_EVENT] = {0, ACK_OPTIONAL, DATA_EVENT},
    [SIO_ACK] = {0, ACK_REQUIRED, DATA_ARRAY},
    [SIO_CONNECT_ERROR] = {0, ACK_NONE, DATA_OBJECT},
    [SIO_BINARY_EVENT] = {1, ACK_OPTIONAL, DATA_EVENT},
    [SIO_BINARY_ACK] = {1, ACK_REQUIRED, DATA_ARRAY},
};

#define SIO_NTYPES (sizeof rules / sizeof rules[0])

/* Event names with a meaning of their own on one side or the other; the reference parser
 * refuses them so a client cannot fake, say, a disconnect to the server's handlers. */
static const char *const reserved_events[] = {
    "connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener",
};

static int is_digit(char c) { return c >= '0' && c <= '9'; }

/* Reads one or more digits at *pp; fails past max. Leading zeros are accepted, as
 * JavaScript's Number() does in the reference parser. */
static int parse_uint(const char **pp, const char *end, uint64_t max, uint64_t *out)
{
    const char *p = *pp;
    uint64_t v = 0;
    if (p == end || !is_digit(*p)) {
        return -1;
    }
    for (; p < end && is_digit(*p); p++) {
        v = v * 10 + (uint64_t)(*p - '0');
        if (v > max) {
            return -1; /* max is far below UINT64_MAX / 10, so v never wraps */
        }
    }
    *pp = p;
    *out = v;
    return 0;
}

/* 1: v is a placeholder with a usable num; 0: not a placeholder;
 * -1: it says "_placeholder":true but num is missing, negative or not an integer. */
static int placeholder_num(const json_t *v, json_int_t *num)
{
    if (!json_is_object(v) || !json_is_true(json_object_get(v, "_placeholder"))) {
        return 0;
    }
    const json_t *n = json_object_get(v, "num");
    if (!json_is_integer(n) || json_integer_value(n) < 0) {
        return -1;
    }
    *num = json_integer_value(n);
    return 1;
}

/* Recursion depth is bounded by the parser's own nesting limit. The casts below only
 * satisfy json_object_foreach, which jansson does not declare for const objects. */
static int placeholders_valid(const json_t *v, size_t nattachments)
{
    json_int_t num;
    int kind = placeholder_num(v, &num);
    if (kind) {
        return kind > 0 && (uint64_t)num < nattachments;
    }
    if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++) {
            if (!placeholders_valid(json_array_get(v, i), nattachments)) {
                return 0;
            }
        }
    } else if (json_is_object(v)) {
        const char *key;
        json_t *val;
        json_object_foreach((json_t *)v, key, val) {
            if (!placeholders_valid(val, nattachments)) {
                return 0;
            }
        }
    }
    return 1;
}

size_t chat__sio_count_placeholders(const json_t *v)
{
    json_int_t num;
    int kind = placeholder_num(v, &num);
    if (kind) {
        return kind > 0 ? 1 : 0;
    }
    size_t n = 0;
    if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++) {
            n += chat__sio_count_placeholders(json_array_get(v, i));
        }
    } else if (json_is_object(v)) {
        const char *key;
        json_t *val;
        json_object_foreach((json_t *)v, key, val) {
            n += chat__sio_count_placeholders(val);
        }
    }
    return n;
}

static int event_name_ok(const json_t *data)
{
    if (!json_is_array(data) || json_array_size(data) == 0) {
        return 0;
    }
    const char *name = json_string_value(json_array_get(data, 0));
    if (!name) {
        return 0;
    }
    for (size_t i = 0; i < sizeof reserved_events / sizeof reserved_events[0]; i++) {
        if (strcmp(name, reserved_events[i]) == 0) {
            return 0;
        }
    }
    return 1;
}

static int data_ok(int rule, const json_t *data)
{
    switch (rule) {
    case DATA_NONE:
        return data == NULL;
    case DATA_OBJECT_OPTIONAL:
        return data == NULL || json_is_object(data);
    case DATA_OBJECT:
        return json_is_object(data);
    case DATA_EVENT:
        return event_name_ok(data);
    case DATA_ARRAY:
        return json_is_array(data);
    default:
        return 0;
    }
}

static void packet_reset(sio_packet *p)
{
    p->type = -1;
    strcpy(p->nsp, "/");
    p->ack_id = -1;
    p->data = NULL;
    p->nattachments = 0;
}

int chat__sio_decode(const char *text, size_t len, sio_packet *out)
{
    const char *p = text;
    const char *end = text + len;
    const sio_rule *rule;
    int type;
    packet_reset(out);
    if (len == 0 || !chat__utf8_valid((const uint8_t *)text, len)) {
        goto fail;
    }

    type = *p++ - '0';
    if (type < 0 || (size_t)type >= SIO_NTYPES) {
        goto fail;
    }
    rule = &rules[type];
    out->type = type;

    if (rule->binary) {
        uint64_t n;
        if (parse_uint(&p, end, SIO_ATTACHMENTS_MAX, &n) || p == end || *p != '-') {
            goto fail;
        }
        p++;
        out->nattachments = (size_t)n;
    }

    if (p < end && *p == '/') {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *stop = comma ? comma : end;
        size_t n = (size_t)(stop - p);
        if (n >= SIO_NSP_MAX) {
            goto fail;
        }
        for (const char *c = p; c < stop; c++) {
            if ((unsigned char)*c < 0x20 || *c == 0x7f) {
                goto fail; /* the name reaches logs and C strings */
            }
        }
        memcpy(out->nsp, p, n);
        out->nsp[n] = '\0';
        p = comma ? comma + 1 : end;
    }

    if (p < end && is_digit(*p)) {
        uint64_t id;
        if (rule->ack == ACK_NONE || parse_uint(&p, end, SIO_ACK_ID_MAX, &id)) {
            goto fail;
        }
        out->ack_id = (int64_t)id;
    } else if (rule->ack == ACK_REQUIRED) {
        goto fail;
    }

    if (p < end) {
        /* without JSON_DISABLE_EOF_CHECK jansson refuses anything after the value */
        out->data = json_loadb(p, (size_t)(end - p), JSON_DECODE_ANY, NULL);
        if (!out->data) {
            goto fail;
        }
    }
    if (!data_ok(rule->data, out->data)) {
        goto fail;
    }
    if (rule->binary && !placeholders_valid(out->data, out->nattachments)) {
        goto fail;
    }
    return 0;

fail:
    json_decref(out->data);
    packet_reset(out);
    return CHAT_EINVAL;
}

void chat__sio_packet_clear(sio_packet *p)
{
    if (!p) {
        return;
    }
    json_decref(p->data);
    packet_reset(p);
}

static int append_uint(chat_buf *out, uint64_t v)
{
    char tmp[20];
    size_t n = sizeof tmp;
    do {
        tmp[--n] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return chat__buf_append(out, tmp + n, sizeof tmp - n);
}

int chat__sio_encode(chat_buf *out, int type, const char *nsp, int64_t ack_id,
                     const json_t *data, size_t nattachments)
{
    size_t start = out->len;
    int rc = CHAT_EINVAL;
    if (type < 0 || (size_t)type >= SIO_NTYPES || (nattachments && !rules[type].binary)) {
        goto fail;
    }
    rc = CHAT_ENOMEM;
    if (chat__buf_appendc(out, (uint8_t)('0' + type))) {
        goto fail;
    }
    if (rules[type].binary
        && (append_uint(out, nattachments) || chat__buf_appendc(out, '-'))) {
        goto fail;
    }
    if (nsp && nsp[0] && strcmp(nsp, "/") != 0
        && (chat__buf_append(out, nsp, strlen(nsp)) || chat__buf_appendc(out, ','))) {
        goto fail;
    }
    if (ack_id >= 0 && append_uint(out, (uint64_t)ack_id)) {
        goto fail;
    }
    if (data) {
        /* one pass straight into the buffer, jansson's bytes without its per-code-point
         * string dump (json_out.c); a sizing pass first used to double every encode */
        if ((rc = chat__json_append(out, data))) {
            goto fail;
        }
    }
    return 0;

fail:
    out->len = start;
    return rc;
}
