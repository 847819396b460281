/* test_eio.c: Engine.IO codec, UTF-8 validator and base64. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test.h"
#include "buf.h"
#include "chat.h"
#include "eio.h"

#define U8(s) ((const uint8_t *)(s))
#define VALID(lit) chat__utf8_valid(U8(lit), sizeof(lit) - 1)

/* ---- UTF-8 ----------------------------------------------------------------- */

/* Slow oracle straight from the definition: decode, then reject overlongs, surrogates
 * and anything past U+10FFFF. */
static int utf8_oracle(const uint8_t *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        uint8_t c = s[i];
        size_t n;
        uint32_t cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            n = 2;
            cp = c & 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            n = 3;
            cp = c & 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            n = 4;
            cp = c & 0x07;
        } else {
            return 0;
        }
        if (len - i < n) {
            return 0;
        }
        for (size_t k = 1; k < n; k++) {
            if ((s[i + k] & 0xc0) != 0x80) {
                return 0;
            }
            cp = cp << 6 | (s[i + k] & 0x3f);
        }
        static const uint32_t min[] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < min[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
            return 0;
        }
        i += n;
    }
    return 1;
}

static void test_utf8(void)
{
    CHECK(chat__utf8_valid(NULL, 0));
    CHECK(VALID("hello"));
    CHECK(VALID("a somewhat longer ascii line that spans several words"));
    CHECK(VALID("\0")); /* U+0000 is a valid scalar value */
    CHECK(VALID("caf\xc3\xa9"));
    CHECK(VALID("\xe2\x82\xac"));          /* U+20AC */
    CHECK(VALID("\xf0\x9f\x98\x80"));      /* U+1F600 */
    CHECK(VALID("\xc2\x80"));              /* U+0080, smallest 2-byte */
    CHECK(VALID("\xdf\xbf"));              /* U+07FF */
    CHECK(VALID("\xe0\xa0\x80"));          /* U+0800, smallest 3-byte */
    CHECK(VALID("\xed\x9f\xbf"));          /* U+D7FF, just below the surrogates */
    CHECK(VALID("\xee\x80\x80"));          /* U+E000, just above them */
    CHECK(VALID("\xef\xbf\xbf"));          /* U+FFFF */
    CHECK(VALID("\xf0\x90\x80\x80"));      /* U+10000, smallest 4-byte */
    CHECK(VALID("\xf4\x8f\xbf\xbf"));      /* U+10FFFF, the last code point */

    /* overlongs */
    CHECK(!VALID("\xc0\xaf"));
    CHECK(!VALID("\xc0\x80"));
    CHECK(!VALID("\xc1\xbf"));
    CHECK(!VALID("\xe0\x80\xaf"));
    CHECK(!VALID("\xe0\x9f\xbf"));
    CHECK(!VALID("\xf0\x80\x80\xaf"));
    CHECK(!VALID("\xf0\x8f\xbf\xbf"));
    /* surrogates */
    CHECK(!VALID("\xed\xa0\x80"));
    CHECK(!VALID("\xed\xbf\xbf"));
    CHECK(!VALID("\xed\xa0\xbd\xed\xb8\x80")); /* CESU-8 pair */
    /* past U+10FFFF and never-valid lead bytes */
    CHECK(!VALID("\xf4\x90\x80\x80"));
    CHECK(!VALID("\xf5\x80\x80\x80"));
    CHECK(!VALID("\xf8\x88\x80\x80\x80"));
    CHECK(!VALID("\xfe"));
    CHECK(!VALID("\xff"));
    /* truncated sequences, at the end and in the middle */
    CHECK(!VALID("\xc3"));
    CHECK(!VALID("\xe2\x82"));
    CHECK(!VALID("\xf0\x9f\x98"));
    CHECK(!VALID("abcdefgh\xf0\x9f\x98"));
    CHECK(!VALID("\xe2\x82x"));
    CHECK(!VALID("\xf0\x9f\x98x"));
    /* stray or bad continuation bytes */
    CHECK(!VALID("\x80"));
    CHECK(!VALID("\xbf"));
    CHECK(!VALID("a\x80" "bcdefghij"));
    CHECK(!VALID("\xc3\x28"));
    CHECK(!VALID("\xe2\x28\xa1"));
    CHECK(!VALID("\xe2\x82\x28"));
    CHECK(!VALID("\xf0\x9f\x28\x80"));
    CHECK(!VALID("\xf0\x9f\x98\xc0"));
    /* the bad byte hides after a full word of ASCII, or straddles the word boundary */
    CHECK(!VALID("0123456789abcdef\xff"));
    CHECK(VALID("0123456\xc3\xa9" "89abcdef"));
    CHECK(!VALID("0123456\xc3" "89abcdef"));

    /* every 1-, 2- and 3-byte string agrees with the oracle */
    int agree = 1;
    for (uint32_t v = 0; v < (1u << 24) && agree; v++) {
        uint8_t b[3] = {(uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
        agree = chat__utf8_valid(b, 3) == utf8_oracle(b, 3)
                && chat__utf8_valid(b + 1, 2) == utf8_oracle(b + 1, 2)
                && chat__utf8_valid(b + 2, 1) == utf8_oracle(b + 2, 1);
    }
    CHECK(agree);
    /* every 4-byte string with a 4-byte lead byte */
    agree = 1;
    for (uint32_t v = 0; v < (1u << 24) && agree; v++) {
        for (uint32_t lead = 0xf0; lead <= 0xf7 && agree; lead++) {
            uint8_t b[4] = {(uint8_t)lead, (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
            agree = chat__utf8_valid(b, 4) == utf8_oracle(b, 4);
        }
        v += 0x0f; /* the low bits only matter as continuation bytes: sample them */
    }
    CHECK(agree);
    /* every code point, encoded, is valid; inside a long ASCII run too */
    int all = 1;
    for (uint32_t cp = 0; cp <= 0x10ffff && all; cp++) {
        if (cp >= 0xd800 && cp <= 0xdfff) {
            continue;
        }
        uint8_t b[16] = "abcdefghi";
        size_t n = 9;
        if (cp < 0x80) {
            b[n++] = (uint8_t)cp;
        } else if (cp < 0x800) {
            b[n++] = (uint8_t)(0xc0 | cp >> 6);
            b[n++] = (uint8_t)(0x80 | (cp & 0x3f));
        } else if (cp < 0x10000) {
            b[n++] = (uint8_t)(0xe0 | cp >> 12);
            b[n++] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
            b[n++] = (uint8_t)(0x80 | (cp & 0x3f));
        } else {
            b[n++] = (uint8_t)(0xf0 | cp >> 18);
            b[n++] = (uint8_t)(0x80 | ((cp >> 12) & 0x3f));
            b[n++] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
            b[n++] = (uint8_t)(0x80 | (cp & 0x3f));
        }
        all = chat__utf8_valid(b, n);
    }
    CHECK(all);
}

/* ---- base64 ---------------------------------------------------------------- */

static int b64_is(const char *in, const char *want)
{
    chat_buf b = CHAT_BUF_INIT;
    int ok = chat__base64_encode(&b, U8(in), strlen(in)) == 0 && b.len == strlen(want)
             && (b.len == 0 || memcmp(b.data, want, b.len) == 0);
    chat__buf_free(&b);
    return ok;
}

/* Decodes a copy of s; returns the length (or the error) and leaves the bytes in out. */
static long b64_dec(const char *s, uint8_t *out)
{
    size_t n = strlen(s);
    memcpy(out, s, n);
    return chat__base64_decode_inplace(out, n);
}

static void test_base64(void)
{
    /* RFC 4648 section 10 */
    static const char *const vec[][2] = {
        {"", ""},         {"f", "Zg=="},         {"fo", "Zm8="},         {"foo", "Zm9v"},
        {"foob", "Zm9vYg=="}, {"fooba", "Zm9vYmE="}, {"foobar", "Zm9vYmFy"},
    };
    uint8_t tmp[64];
    for (size_t i = 0; i < sizeof vec / sizeof vec[0]; i++) {
        CHECK(b64_is(vec[i][0], vec[i][1]));
        long n = b64_dec(vec[i][1], tmp);
        CHECK(n == (long)strlen(vec[i][0]));
        CHECK(n >= 0 && memcmp(tmp, vec[i][0], (size_t)n) == 0);
    }
    CHECK(b64_is("\xff\xfe\xfd", "//79"));
    CHECK(b64_is("\xfb\xef", "++8="));

    /* appends rather than overwrites */
    chat_buf b = CHAT_BUF_INIT;
    CHECK(chat__buf_append(&b, "x:", 2) == 0);
    CHECK(chat__base64_encode(&b, U8("foo"), 3) == 0);
    CHECK(b.len == 6 && memcmp(b.data, "x:Zm9v", 6) == 0);
    chat__buf_free(&b);

    /* round trip of every length up to 300 with pseudo-random bytes, all byte values */
    uint8_t src[300];
    unsigned seed = 12345;
    for (size_t i = 0; i < sizeof src; i++) {
        seed = seed * 1103515245u + 12345u;
        src[i] = (uint8_t)(i < 256 ? i : seed >> 16);
    }
    int ok = 1;
    for (size_t len = 0; len <= sizeof src && ok; len++) {
        chat_buf e = CHAT_BUF_INIT;
        ok = chat__base64_encode(&e, src, len) == 0 && e.len == (len + 2) / 3 * 4;
        long n = ok ? chat__base64_decode_inplace(e.data, e.len) : -1;
        ok = ok && n == (long)len && (len == 0 || memcmp(e.data, src, len) == 0);
        chat__buf_free(&e);
    }
    CHECK(ok);

    /* malformed */
    static const char *const bad[] = {
        "Zg=",      /* not a multiple of 4 */
        "Zm9",      "Z",        "Zm9vY",
        "Zg",       /* unpadded */
        "Zm9v!A==", /* not in the alphabet */
        "Zm9-",     /* base64url is not accepted */
        "Zm9_",     "Zm9\n",    "Zm 9",     "Zm9v\0AAA",
        "Zg==Zm9v", /* padding in the middle */
        "=Zm9",     "Z===",     "====",     "Zm=v",     "Z=9v",
        "Zh==",     /* non-zero pad bits */
        "Zm9=",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        size_t n = strlen(bad[i]);
        if (i == 10) {
            n = 8; /* the one with an embedded NUL */
        }
        memcpy(tmp, bad[i], n);
        long r = chat__base64_decode_inplace(tmp, n);
        if (r != CHAT_EINVAL) {
            fprintf(stderr, "bad base64 #%zu accepted\n", i);
        }
        CHECK(r == CHAT_EINVAL);
    }
    CHECK(chat__base64_decode_inplace(tmp, 0) == 0);
}

/* ---- WebSocket frames -------------------------------------------------------- */

static int frame_is(const char *s, size_t len, int type, const char *data)
{
    eio_packet p;
    if (chat__eio_decode_frame(U8(s), len, 0, &p) != 0) {
        return 0;
    }
    return p.type == type && !p.binary && p.len == strlen(data)
           && p.data == U8(s) + 1 && memcmp(p.data, data, p.len) == 0;
}

#define FRAME_IS(lit, type, data) frame_is(lit, sizeof(lit) - 1, type, data)
#define FRAME_BAD(lit)                                                                      \
    (chat__eio_decode_frame(U8(lit), sizeof(lit) - 1, 0, &(eio_packet){0}) == CHAT_EINVAL)

static void test_frames(void)
{
    CHECK(FRAME_IS("0{\"sid\":\"x\"}", EIO_OPEN, "{\"sid\":\"x\"}"));
    CHECK(FRAME_IS("1", EIO_CLOSE, ""));
    CHECK(FRAME_IS("2probe", EIO_PING, "probe"));
    CHECK(FRAME_IS("3", EIO_PONG, ""));
    CHECK(FRAME_IS("3probe", EIO_PONG, "probe"));
    CHECK(FRAME_IS("4hello", EIO_MESSAGE, "hello"));
    CHECK(FRAME_IS("42[\"a\",1]", EIO_MESSAGE, "2[\"a\",1]"));
    CHECK(FRAME_IS("4caf\xc3\xa9", EIO_MESSAGE, "caf\xc3\xa9"));
    CHECK(FRAME_IS("5", EIO_UPGRADE, ""));
    CHECK(FRAME_IS("6", EIO_NOOP, ""));

    CHECK(FRAME_BAD(""));
    CHECK(FRAME_BAD("7"));
    CHECK(FRAME_BAD("9hello"));
    CHECK(FRAME_BAD("x"));
    CHECK(FRAME_BAD("/4"));
    CHECK(FRAME_BAD("bAQID")); /* v3-style binary in a text frame */
    CHECK(FRAME_BAD("4\xff"));
    CHECK(FRAME_BAD("4\xc0\xaf"));
    CHECK(FRAME_BAD("4\xed\xa0\x80"));
    CHECK(FRAME_BAD("4abc\xe2\x82"));
    CHECK(FRAME_BAD("\xc3\xa9"));

    /* a binary frame is a message as is: no prefix, any bytes, may be empty */
    static const uint8_t bin[] = {0x04, 0xff, 0x00, 0xc0, 0xaf};
    eio_packet p;
    CHECK(chat__eio_decode_frame(bin, sizeof bin, 1, &p) == 0);
    CHECK(p.type == EIO_MESSAGE && p.binary && p.data == bin && p.len == sizeof bin);
    CHECK(chat__eio_decode_frame(bin, 0, 1, &p) == 0);
    CHECK(p.type == EIO_MESSAGE && p.binary && p.len == 0);
}

/* ---- polling payloads -------------------------------------------------------- */

typedef struct seen {
    int n;
    int stop_at; /* return 42 from this call (1-based), 0: never */
    int type[8];
    int binary[8];
    size_t len[8];
    uint8_t data[8][64];
} seen;

static int record(const eio_packet *pkt, void *arg)
{
    seen *s = arg;
    if (s->n >= 8 || pkt->len > sizeof s->data[0]) {
        return -1;
    }
    s->type[s->n] = pkt->type;
    s->binary[s->n] = pkt->binary;
    s->len[s->n] = pkt->len;
    if (pkt->len) {
        memcpy(s->data[s->n], pkt->data, pkt->len);
    }
    s->n++;
    return s->n == s->stop_at ? 42 : 0;
}

/* Decodes a copy of the literal; the copy is needed because decoding is in place. */
static int payload(const char *lit, size_t len, seen *s)
{
    uint8_t *body = malloc(len ? len : 1);
    if (!body) {
        return CHAT_ENOMEM;
    }
    memcpy(body, lit, len);
    int rc = chat__eio_decode_payload(body, len, record, s);
    free(body);
    return rc;
}

#define PAYLOAD(lit, s) payload(lit, sizeof(lit) - 1, s)

static int got(const seen *s, int i, int type, int binary, const void *data, size_t len)
{
    return i < s->n && s->type[i] == type && s->binary[i] == binary && s->len[i] == len
           && (len == 0 || memcmp(s->data[i], data, len) == 0);
}

static void test_payload_decode(void)
{
    seen s = {0};
    CHECK(PAYLOAD("4hello", &s) == 0);
    CHECK(s.n == 1 && got(&s, 0, EIO_MESSAGE, 0, "hello", 5));

    s = (seen){0};
    CHECK(PAYLOAD("4hello\x1e" "2\x1e" "42[\"a\"]\x1e" "bAQID\x1e" "b\x1e" "6", &s) == 0);
    CHECK(s.n == 6);
    CHECK(got(&s, 0, EIO_MESSAGE, 0, "hello", 5));
    CHECK(got(&s, 1, EIO_PING, 0, "", 0));
    CHECK(got(&s, 2, EIO_MESSAGE, 0, "2[\"a\"]", 6));
    CHECK(got(&s, 3, EIO_MESSAGE, 1, "\x01\x02\x03", 3));
    CHECK(got(&s, 4, EIO_MESSAGE, 1, "", 0)); /* "b" alone: an empty binary message */
    CHECK(got(&s, 5, EIO_NOOP, 0, "", 0));

    s = (seen){0};
    CHECK(PAYLOAD("1", &s) == 0 && got(&s, 0, EIO_CLOSE, 0, "", 0));

    /* empty body and empty packets */
    s = (seen){0};
    CHECK(payload("", 0, &s) == CHAT_EINVAL && s.n == 0);
    CHECK(PAYLOAD("\x1e", &s) == CHAT_EINVAL && s.n == 0);
    CHECK(PAYLOAD("\x1e" "4a", &s) == CHAT_EINVAL && s.n == 0);
    /* packets before the bad one are delivered, the bad one and later ones are not */
    s = (seen){0};
    CHECK(PAYLOAD("4a\x1e", &s) == CHAT_EINVAL && s.n == 1);
    s = (seen){0};
    CHECK(PAYLOAD("4a\x1e\x1e" "4b", &s) == CHAT_EINVAL && s.n == 1);
    s = (seen){0};
    CHECK(PAYLOAD("4a\x1e" "9x\x1e" "4b", &s) == CHAT_EINVAL && s.n == 1);
    s = (seen){0};
    CHECK(PAYLOAD("4a\x1e" "bZm9\x1e" "4b", &s) == CHAT_EINVAL && s.n == 1);
    s = (seen){0};
    CHECK(PAYLOAD("4a\x1e" "4\xff\x1e" "4b", &s) == CHAT_EINVAL && s.n == 1);
    s = (seen){0};
    CHECK(PAYLOAD("4\xed\xa0\x80", &s) == CHAT_EINVAL && s.n == 0);
    CHECK(PAYLOAD("b!!!!", &s) == CHAT_EINVAL && s.n == 0);
    CHECK(PAYLOAD("bZg", &s) == CHAT_EINVAL && s.n == 0);
    CHECK(PAYLOAD("x", &s) == CHAT_EINVAL && s.n == 0);

    /* the callback's non-zero value stops decoding and is returned */
    s = (seen){.stop_at = 2};
    CHECK(PAYLOAD("4a\x1e" "4b\x1e" "4c", &s) == 42 && s.n == 2);
    s = (seen){.stop_at = 1};
    CHECK(PAYLOAD("4a\x1e" "4\xff", &s) == 42 && s.n == 1);

    /* base64 is decoded in place, inside the caller's body */
    uint8_t body[] = "4x\x1e" "bZm9vYmFy";
    s = (seen){0};
    CHECK(chat__eio_decode_payload(body, sizeof body - 1, record, &s) == 0);
    CHECK(s.n == 2 && got(&s, 1, EIO_MESSAGE, 1, "foobar", 6));
    CHECK(memcmp(body + 4, "foobar", 6) == 0);
}

static void test_payload_append(void)
{
    chat_buf b = CHAT_BUF_INIT;
    CHECK(chat__eio_payload_append(&b, EIO_MESSAGE, U8("hello"), 5, 0) == 0);
    CHECK(b.len == 6 && memcmp(b.data, "4hello", 6) == 0);
    CHECK(chat__eio_payload_append(&b, EIO_PING, NULL, 0, 0) == 0);
    CHECK(chat__eio_payload_append(&b, EIO_MESSAGE, U8("\x01\x02\x03"), 3, 1) == 0);
    CHECK(chat__eio_payload_append(&b, EIO_MESSAGE, NULL, 0, 1) == 0);
    CHECK(chat__eio_payload_append(&b, EIO_NOOP, NULL, 0, 0) == 0);
    static const char want[] = "4hello\x1e" "2\x1e" "bAQID\x1e" "b\x1e" "6";
    CHECK(b.len == sizeof want - 1 && memcmp(b.data, want, b.len) == 0);

    /* misuse is refused and leaves the body as it was */
    size_t before = b.len;
    CHECK(chat__eio_payload_append(&b, 7, U8("x"), 1, 0) == CHAT_EINVAL);
    CHECK(chat__eio_payload_append(&b, -1, U8("x"), 1, 0) == CHAT_EINVAL);
    CHECK(chat__eio_payload_append(&b, EIO_PING, U8("x"), 1, 1) == CHAT_EINVAL);
    CHECK(chat__eio_payload_append(&b, EIO_MESSAGE, U8("a\x1e" "4b"), 4, 0) == CHAT_EINVAL);
    CHECK(b.len == before);
    /* in a binary message the separator byte is harmless: base64 hides it */
    CHECK(chat__eio_payload_append(&b, EIO_MESSAGE, U8("\x1e"), 1, 1) == 0);
    CHECK(b.len == before + 6 && memcmp(b.data + before, "\x1e" "bHg==", 6) == 0);
    chat__buf_free(&b);

    /* round trip: a mix of text and binary packets comes back out in order */
    static const struct {
        int type, binary;
        const char *data;
        size_t len; /* 0: strlen */
    } pk[] = {
        {EIO_OPEN, 0, "{\"sid\":\"abc\",\"upgrades\":[\"websocket\"]}", 0},
        {EIO_MESSAGE, 0, "2[\"caf\xc3\xa9\",1]", 0},
        {EIO_MESSAGE, 1, "\x00\x1e\xff\xfe", 4},
        {EIO_MESSAGE, 1, "ab", 0},
        {EIO_PONG, 0, "probe", 0},
        {EIO_MESSAGE, 0, "", 0},
        {EIO_CLOSE, 0, "", 0},
    };
    size_t npk = sizeof pk / sizeof pk[0];
    int ok = 1;
    for (size_t i = 0; i < npk; i++) {
        size_t len = pk[i].len ? pk[i].len : strlen(pk[i].data);
        ok = ok && chat__eio_payload_append(&b, pk[i].type, U8(pk[i].data), len,
                                            pk[i].binary) == 0;
    }
    CHECK(ok);
    seen s = {0};
    CHECK(chat__eio_decode_payload(b.data, b.len, record, &s) == 0);
    CHECK(s.n == (int)npk);
    for (size_t i = 0; i < npk; i++) {
        size_t len = pk[i].len ? pk[i].len : strlen(pk[i].data);
        CHECK(got(&s, (int)i, pk[i].type, pk[i].binary, pk[i].data, len));
    }
    chat__buf_free(&b);
}

int main(void)
{
    test_utf8();
    test_base64();
    test_frames();
    test_payload_decode();
    test_payload_append();
    return TEST_DONE("test_eio");
}
