#include "eio.h"

#include <limits.h>
#include <stdint.h>
#include <string.h>

#include "chat.h"

#define EIO_SEPARATOR 0x1e /* record separator between packets of a polling payload */

static int type_from_char(uint8_t c)
{
    return c >= '0' && c <= '0' + EIO_NOOP ? c - '0' : -1;
}

int chat__utf8_valid(const uint8_t *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        /* chat text is mostly ASCII: skip it a word at a time */
        while (i + 8 <= len) {
            uint64_t w;
            memcpy(&w, s + i, sizeof w);
            if (w & UINT64_C(0x8080808080808080)) {
                break;
            }
            i += 8;
        }
        if (i >= len) {
            break;
        }
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        /* Unicode 15, table 3-7: the second byte's range depends on the lead byte, which
         * is what rules out overlongs, surrogates and code points past U+10FFFF */
        size_t n;
        uint8_t lo = 0x80, hi = 0xbf;
        if (c >= 0xc2 && c <= 0xdf) {
            n = 2;
        } else if (c >= 0xe0 && c <= 0xef) {
            n = 3;
            if (c == 0xe0) {
                lo = 0xa0;
            } else if (c == 0xed) {
                hi = 0x9f;
            }
        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 4;
            if (c == 0xf0) {
                lo = 0x90;
            } else if (c == 0xf4) {
                hi = 0x8f;
            }
        } else {
            return 0;
        }
        if (len - i < n || s[i + 1] < lo || s[i + 1] > hi) {
            return 0;
        }
        for (size_t k = 2; k < n; k++) {
            if ((s[i + k] & 0xc0) != 0x80) {
                return 0;
            }
        }
        i += n;
    }
    return 1;
}

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* 0..63 for alphabet characters, 64 for the '=' pad, -1 for anything else */
static int b64_decode_char(uint8_t c)
{
    if (c >= 'A' && c <= 'Z') {
        return c - 'A';
    }
    if (c >= 'a' && c <= 'z') {
        return c - 'a' + 26;
    }
    if (c >= '0' && c <= '9') {
        return c - '0' + 52;
    }
    switch (c) {
    case '+':
        return 62;
    case '/':
        return 63;
    case '=':
        return 64;
    default:
        return -1;
    }
}

/* Largest input whose encoding still fits in a size_t with room for a prefix. */
#define B64_MAX_INPUT (SIZE_MAX / 4 * 3 - 3)

static size_t b64_encoded_len(size_t len) { return (len + 2) / 3 * 4; }

static void b64_write(uint8_t *dst, const uint8_t *src, size_t len)
{
    size_t i = 0;
    for (; i + 3 <= len; i += 3) {
        uint32_t v = (uint32_t)src[i] << 16 | (uint32_t)src[i + 1] << 8 | src[i + 2];
        *dst++ = (uint8_t)b64_alphabet[v >> 18];
        *dst++ = (uint8_t)b64_alphabet[(v >> 12) & 63];
        *dst++ = (uint8_t)b64_alphabet[(v >> 6) & 63];
        *dst++ = (uint8_t)b64_alphabet[v & 63];
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)src[i] << 16;
        *dst++ = (uint8_t)b64_alphabet[v >> 18];
        *dst++ = (uint8_t)b64_alphabet[(v >> 12) & 63];
        *dst++ = '=';
        *dst++ = '=';
    } else if (len - i == 2) {
        uint32_t v = (uint32_t)src[i] << 16 | (uint32_t)src[i + 1] << 8;
        *dst++ = (uint8_t)b64_alphabet[v >> 18];
        *dst++ = (uint8_t)b64_alphabet[(v >> 12) & 63];
        *dst++ = (uint8_t)b64_alphabet[(v >> 6) & 63];
        *dst++ = '=';
    }
}

int chat__base64_encode(chat_buf *out, const uint8_t *data, size_t len)
{
    if (len > B64_MAX_INPUT) {
        return CHAT_ENOMEM;
    }
    size_t n = b64_encoded_len(len);
    if (chat__buf_reserve(out, n)) {
        return CHAT_ENOMEM;
    }
    b64_write(out->data + out->len, data, len);
    out->len += n;
    return 0;
}

long chat__base64_decode_inplace(uint8_t *s, size_t len)
{
    if (len % 4 != 0 || len / 4 * 3 > (size_t)LONG_MAX) {
        return CHAT_EINVAL;
    }
    /* writing 3 bytes per 4 read never overtakes the reader */
    size_t o = 0;
    for (size_t i = 0; i < len; i += 4) {
        int a = b64_decode_char(s[i]);
        int b = b64_decode_char(s[i + 1]);
        int c = b64_decode_char(s[i + 2]);
        int d = b64_decode_char(s[i + 3]);
        int last = i + 4 == len;
        if (a < 0 || b < 0 || c < 0 || d < 0 || a == 64 || b == 64) {
            return CHAT_EINVAL;
        }
        if (c == 64 || d == 64) {
            /* padding only at the very end, "x=" never followed by a data character,
             * and the unused bits must be zero so each byte string has one encoding */
            if (!last || (c == 64 && d != 64)) {
                return CHAT_EINVAL;
            }
            if (c == 64) {
                if (b & 0x0f) {
                    return CHAT_EINVAL;
                }
                s[o++] = (uint8_t)(a << 2 | b >> 4);
            } else {
                if (c & 0x03) {
                    return CHAT_EINVAL;
                }
                s[o++] = (uint8_t)(a << 2 | b >> 4);
                s[o++] = (uint8_t)((b & 0x0f) << 4 | c >> 2);
            }
            break;
        }
        s[o++] = (uint8_t)(a << 2 | b >> 4);
        s[o++] = (uint8_t)((b & 0x0f) << 4 | c >> 2);
        s[o++] = (uint8_t)((c & 0x03) << 6 | d);
    }
    return (long)o;
}

int chat__eio_decode_frame(const uint8_t *frame, size_t len, int is_binary, eio_packet *out)
{
    if (is_binary) {
        out->type = EIO_MESSAGE;
        out->binary = 1;
        out->data = frame;
        out->len = len;
        return 0;
    }
    if (len == 0) {
        return CHAT_EINVAL;
    }
    int type = type_from_char(frame[0]);
    if (type < 0 || !chat__utf8_valid(frame + 1, len - 1)) {
        return CHAT_EINVAL;
    }
    out->type = type;
    out->binary = 0;
    out->data = frame + 1;
    out->len = len - 1;
    return 0;
}

/* Decodes one non-empty packet of a polling payload in place. */
static int decode_one(uint8_t *p, size_t len, eio_packet *out)
{
    if (p[0] == 'b') {
        long n = chat__base64_decode_inplace(p + 1, len - 1);
        if (n < 0) {
            return CHAT_EINVAL;
        }
        out->type = EIO_MESSAGE;
        out->binary = 1;
        out->data = p + 1;
        out->len = (size_t)n;
        return 0;
    }
    return chat__eio_decode_frame(p, len, 0, out);
}

int chat__eio_decode_payload(uint8_t *body, size_t len,
                             int (*fn)(const eio_packet *pkt, void *arg), void *arg)
{
    if (len == 0) {
        return CHAT_EINVAL;
    }
    uint8_t *p = body;
    uint8_t *end = body + len;
    for (;;) {
        uint8_t *sep = memchr(p, EIO_SEPARATOR, (size_t)(end - p));
        uint8_t *stop = sep ? sep : end;
        if (stop == p) {
            return CHAT_EINVAL; /* empty packet, including a leading or trailing separator */
        }
        eio_packet pkt;
        if (decode_one(p, (size_t)(stop - p), &pkt)) {
            return CHAT_EINVAL;
        }
        int rc = fn(&pkt, arg);
        if (rc) {
            return rc;
        }
        if (!sep) {
            return 0;
        }
        p = sep + 1;
    }
}

int chat__eio_payload_append(chat_buf *body, int type, const uint8_t *data, size_t len,
                             int binary)
{
    if (type < EIO_OPEN || type > EIO_NOOP || (binary && type != EIO_MESSAGE)) {
        return CHAT_EINVAL;
    }
    if (!binary && len && memchr(data, EIO_SEPARATOR, len)) {
        return CHAT_EINVAL; /* it would split into packets the sender never wrote */
    }
    if (len > B64_MAX_INPUT) {
        return CHAT_ENOMEM;
    }
    size_t body_len = binary ? b64_encoded_len(len) : len;
    size_t sep = body->len ? 1 : 0;
    if (chat__buf_reserve(body, sep + 1 + body_len)) {
        return CHAT_ENOMEM;
    }
    /* reserved up front so a failure never leaves half a packet behind */
    uint8_t *w = body->data + body->len;
    if (sep) {
        *w++ = EIO_SEPARATOR;
    }
    if (binary) {
        *w++ = 'b';
        b64_write(w, data, len);
    } else {
        *w++ = (uint8_t)('0' + type);
        if (len) {
            memcpy(w, data, len);
        }
    }
    body->len += sep + 1 + body_len;
    return 0;
}
