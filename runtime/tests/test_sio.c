/* test_sio.c: Socket.IO packet codec. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test.h"
#include "buf.h"
#include "chat.h"
#include "sio.h"

static json_t *js(const char *s)
{
    json_t *v = json_loads(s, JSON_DECODE_ANY, NULL);
    if (!v) {
        fprintf(stderr, "test bug: bad JSON %s\n", s);
        abort();
    }
    return v;
}

/* Decodes and checks every field; want_data NULL means no data. */
static int dec_is(const char *text, size_t len, int type, const char *nsp, int64_t ack,
                  size_t natt, const char *want_data)
{
    sio_packet p;
    int rc = chat__sio_decode(text, len, &p);
    if (rc != 0) {
        fprintf(stderr, "  decode of \"%.*s\" failed\n", (int)len, text);
        return 0;
    }
    int ok = p.type == type && strcmp(p.nsp, nsp) == 0 && p.ack_id == ack
             && p.nattachments == natt;
    if (want_data) {
        json_t *want = js(want_data);
        ok = ok && p.data && json_equal(p.data, want);
        json_decref(want);
    } else {
        ok = ok && p.data == NULL;
    }
    if (!ok) {
        fprintf(stderr, "  decode of \"%.*s\" gave type %d nsp %s ack %lld natt %zu\n", (int)len,
                text, p.type, p.nsp, (long long)p.ack_id, p.nattachments);
    }
    chat__sio_packet_clear(&p);
    return ok;
}

/* A rejected packet is CHAT_EINVAL and comes back with no data and default fields. */
static int dec_bad(const char *text, size_t len)
{
    sio_packet p;
    p.data = (json_t *)1; /* must be overwritten */
    int rc = chat__sio_decode(text, len, &p);
    if (rc != CHAT_EINVAL) {
        fprintf(stderr, "  \"%.*s\" was accepted\n", (int)len, text);
        if (rc == 0) {
            chat__sio_packet_clear(&p);
        }
        return 0;
    }
    return p.data == NULL && p.ack_id == -1 && strcmp(p.nsp, "/") == 0 && p.nattachments == 0;
}

#define DEC(lit, type, nsp, ack, natt, data)                                                 \
    dec_is(lit, sizeof(lit) - 1, type, nsp, ack, natt, data)
#define BAD(lit) dec_bad(lit, sizeof(lit) - 1)

static void test_decode_basic(void)
{
    CHECK(DEC("0", SIO_CONNECT, "/", -1, 0, NULL));
    CHECK(DEC("0{\"token\":\"abc\"}", SIO_CONNECT, "/", -1, 0, "{\"token\":\"abc\"}"));
    CHECK(DEC("0/admin,", SIO_CONNECT, "/admin", -1, 0, NULL));
    CHECK(DEC("0/admin,{\"a\":1}", SIO_CONNECT, "/admin", -1, 0, "{\"a\":1}"));
    CHECK(DEC("0/admin", SIO_CONNECT, "/admin", -1, 0, NULL)); /* nsp up to the end */
    CHECK(DEC("1", SIO_DISCONNECT, "/", -1, 0, NULL));
    CHECK(DEC("1/admin,", SIO_DISCONNECT, "/admin", -1, 0, NULL));
    CHECK(DEC("2[\"a\"]", SIO_EVENT, "/", -1, 0, "[\"a\"]"));
    CHECK(DEC("2[\"a\",1,{},null,[true]]", SIO_EVENT, "/", -1, 0, "[\"a\",1,{},null,[true]]"));
    CHECK(DEC("2/chat,12[\"msg\",{\"a\":1}]", SIO_EVENT, "/chat", 12, 0, "[\"msg\",{\"a\":1}]"));
    CHECK(DEC("212[\"msg\"]", SIO_EVENT, "/", 12, 0, "[\"msg\"]"));
    CHECK(DEC("2/,[\"a\"]", SIO_EVENT, "/", -1, 0, "[\"a\"]"));
    CHECK(DEC("2/caf\xc3\xa9,[\"a\"]", SIO_EVENT, "/caf\xc3\xa9", -1, 0, "[\"a\"]"));
    CHECK(DEC("2/a?b=c,[\"a\"]", SIO_EVENT, "/a?b=c", -1, 0, "[\"a\"]"));
    CHECK(DEC("2[\"Disconnect\"]", SIO_EVENT, "/", -1, 0, "[\"Disconnect\"]"));
    CHECK(DEC("2[\"\"]", SIO_EVENT, "/", -1, 0, "[\"\"]"));
    CHECK(DEC("3/chat,5[]", SIO_ACK, "/chat", 5, 0, "[]"));
    CHECK(DEC("35[1,\"two\"]", SIO_ACK, "/", 5, 0, "[1,\"two\"]"));
    CHECK(DEC("4{\"message\":\"nope\"}", SIO_CONNECT_ERROR, "/", -1, 0, "{\"message\":\"nope\"}"));
    CHECK(DEC("4/admin,{\"message\":\"no\",\"data\":{}}", SIO_CONNECT_ERROR, "/admin", -1, 0,
              "{\"message\":\"no\",\"data\":{}}"));
}

static void test_decode_types(void)
{
    CHECK(BAD(""));
    CHECK(BAD("7"));
    CHECK(BAD("9[\"a\"]"));
    CHECK(BAD("a"));
    CHECK(BAD("-1"));
    CHECK(BAD("/"));
    CHECK(BAD(" 2[\"a\"]"));
    CHECK(BAD("\0002[\"a\"]"));
}

static void test_decode_ack(void)
{
    CHECK(DEC("20[\"a\"]", SIO_EVENT, "/", 0, 0, "[\"a\"]"));
    CHECK(DEC("2/x,0[\"a\"]", SIO_EVENT, "/x", 0, 0, "[\"a\"]"));
    CHECK(DEC("2007[\"a\"]", SIO_EVENT, "/", 7, 0, "[\"a\"]")); /* like Number("007") */
    CHECK(DEC("29007199254740991[\"a\"]", SIO_EVENT, "/", 9007199254740991LL, 0, "[\"a\"]"));
    CHECK(DEC("39007199254740991[]", SIO_ACK, "/", 9007199254740991LL, 0, "[]"));
    CHECK(BAD("29007199254740992[\"a\"]")); /* 2^53 */
    CHECK(BAD("29007199254740993[\"a\"]"));
    CHECK(BAD("218446744073709551615[\"a\"]"));         /* UINT64_MAX */
    CHECK(BAD("218446744073709551616[\"a\"]"));         /* past it */
    CHECK(BAD("2999999999999999999999999999[\"a\"]")); /* would wrap */
    CHECK(BAD("35"));                                  /* ACK without data */
    CHECK(BAD("3[]"));                                 /* ACK without id */
    CHECK(BAD("3/chat,[]"));
    CHECK(BAD("35{}"));
    CHECK(BAD("35\"x\""));
    CHECK(BAD("35 7")); /* a lone number is JSON, but not an ACK's data */
    CHECK(BAD("2-1[\"a\"]"));
    CHECK(BAD("2 5[\"a\"]"));
    /* ids only where an acknowledgement can exist */
    CHECK(BAD("05{}"));
    CHECK(BAD("05"));
    CHECK(BAD("0/admin,5"));
    CHECK(BAD("15"));
    CHECK(BAD("45{\"message\":\"x\"}"));
}

static void test_decode_nsp(void)
{
    char text[256];
    char nsp[SIO_NSP_MAX + 1];
    /* SIO_NSP_MAX - 1 bytes fit, SIO_NSP_MAX do not */
    memset(nsp, 'n', sizeof nsp);
    nsp[0] = '/';
    nsp[SIO_NSP_MAX - 1] = '\0';
    int n = snprintf(text, sizeof text, "2%s,[\"a\"]", nsp);
    CHECK(dec_is(text, (size_t)n, SIO_EVENT, nsp, -1, 0, "[\"a\"]"));
    n = snprintf(text, sizeof text, "0%s", nsp);
    CHECK(dec_is(text, (size_t)n, SIO_CONNECT, nsp, -1, 0, NULL));
    nsp[SIO_NSP_MAX - 1] = 'n';
    nsp[SIO_NSP_MAX] = '\0';
    n = snprintf(text, sizeof text, "2%s,[\"a\"]", nsp);
    CHECK(dec_bad(text, (size_t)n));
    n = snprintf(text, sizeof text, "0%s", nsp);
    CHECK(dec_bad(text, (size_t)n));

    CHECK(BAD("2/a\tb,[\"a\"]"));
    CHECK(BAD("2/a\nb,[\"a\"]"));
    CHECK(BAD("2/a\x7f" "b,[\"a\"]"));
    CHECK(BAD("2/a\0b,[\"a\"]")); /* would silently cut the C string */
    CHECK(BAD("2/\xff,[\"a\"]"));
    CHECK(BAD("2/chat[\"a\"]")); /* no comma: the name runs into the data */
    CHECK(BAD("2chat,[\"a\"]"));
}

static void test_decode_data(void)
{
    /* one JSON value and nothing after it; whitespace around it is JSON's own */
    CHECK(BAD("2[\"a\"]x"));
    CHECK(BAD("2[\"a\"][\"b\"]"));
    CHECK(BAD("2[\"a\"],"));
    CHECK(BAD("2[\"a\"]\0"));
    CHECK(BAD("0{}{}"));
    CHECK(BAD("0{} x"));
    CHECK(DEC("2[\"a\"] ", SIO_EVENT, "/", -1, 0, "[\"a\"]"));
    CHECK(DEC("2 [\"a\"]\n", SIO_EVENT, "/", -1, 0, "[\"a\"]"));
    CHECK(BAD("2[\"a\""));
    CHECK(BAD("2[\"a\",]"));
    CHECK(BAD("2['a']"));
    CHECK(BAD("0{a:1}"));
    CHECK(BAD("0 "));
    CHECK(DEC("0{\"a\":1,\"a\":2}", SIO_CONNECT, "/", -1, 0, "{\"a\":2}")); /* as browsers do */
    /* jansson refuses integers past int64; JavaScript would print 2^64 as digits */
    CHECK(BAD("2[\"a\",18446744073709551616]"));
    CHECK(DEC("2[\"a\",1.5e300,-0.25]", SIO_EVENT, "/", -1, 0, "[\"a\",1.5e300,-0.25]"));

    /* per-type shape */
    CHECK(BAD("0[]"));
    CHECK(BAD("0\"x\""));
    CHECK(BAD("0null"));
    CHECK(BAD("1{}"));
    CHECK(BAD("1[]"));
    CHECK(BAD("1/admin,{}"));
    CHECK(BAD("1 "));
    CHECK(BAD("2"));
    CHECK(BAD("2/chat,"));
    CHECK(BAD("25"));
    CHECK(BAD("2[]"));
    CHECK(BAD("2{}"));
    CHECK(BAD("2\"a\""));
    CHECK(BAD("27"));
    CHECK(BAD("2[1]"));
    CHECK(BAD("2[null]"));
    CHECK(BAD("2[[\"a\"]]"));
    CHECK(BAD("2[{\"a\":1}]"));
    CHECK(BAD("4"));
    CHECK(BAD("4\"not authorized\""));
    CHECK(BAD("4[1]"));
    CHECK(BAD("4/admin,"));

    static const char *const reserved[] = {
        "2[\"connect\"]",          "2[\"connect_error\"]",      "2[\"disconnect\",1]",
        "2[\"disconnecting\"]",    "2[\"newListener\",\"x\"]", "2[\"removeListener\"]",
        "25[\"disconnect\"]",      "2/chat,[\"connect\"]",
        "51-[\"disconnect\",{\"_placeholder\":true,\"num\":0}]",
    };
    for (size_t i = 0; i < sizeof reserved / sizeof reserved[0]; i++) {
        CHECK(dec_bad(reserved[i], strlen(reserved[i])));
    }
    CHECK(DEC("2[\"connected\"]", SIO_EVENT, "/", -1, 0, "[\"connected\"]"));
    CHECK(DEC("31[\"disconnect\"]", SIO_ACK, "/", 1, 0, "[\"disconnect\"]"));
}

static void test_decode_utf8(void)
{
    CHECK(DEC("2[\"caf\xc3\xa9\",\"\xf0\x9f\x98\x80\"]", SIO_EVENT, "/", -1, 0,
              "[\"caf\xc3\xa9\",\"\xf0\x9f\x98\x80\"]"));
    CHECK(DEC("2[\"\\ud83d\\ude00\"]", SIO_EVENT, "/", -1, 0, "[\"\xf0\x9f\x98\x80\"]"));
    CHECK(DEC("2[\"a/b\\/c\"]", SIO_EVENT, "/", -1, 0, "[\"a/b/c\"]"));
    CHECK(BAD("2[\"\xc0\xaf\"]"));             /* overlong '/' */
    CHECK(BAD("2[\"\xe0\x80\xaf\"]"));         /* overlong, 3 bytes */
    CHECK(BAD("2[\"\xed\xa0\x80\"]"));         /* surrogate */
    CHECK(BAD("2[\"\xe2\x82\"]"));             /* truncated */
    CHECK(BAD("2[\"a\"]\xe2\x82"));            /* truncated at the very end */
    CHECK(BAD("2[\"\xf4\x90\x80\x80\"]"));     /* past U+10FFFF */
    CHECK(BAD("2[\"\xff\"]"));
    CHECK(BAD("2[\"a\",{\"k\xc3\":1}]"));      /* in a key */
    CHECK(BAD("2[\"\\ud800\"]"));              /* escaped lone surrogate */
    CHECK(BAD("2[\"\\udc00x\"]"));
    CHECK(BAD("2[\"\\u0000\"]"));              /* would cut C strings */
    CHECK(BAD("2[\"a\nb\"]"));                 /* raw control character */
}

static void test_decode_binary(void)
{
    CHECK(DEC("51-[\"a\",{\"_placeholder\":true,\"num\":0}]", SIO_BINARY_EVENT, "/", -1, 1,
              "[\"a\",{\"_placeholder\":true,\"num\":0}]"));
    CHECK(DEC("52-/chat,7[\"up\",{\"_placeholder\":true,\"num\":1},"
              "{\"x\":[{\"_placeholder\":true,\"num\":0}]}]",
              SIO_BINARY_EVENT, "/chat", 7, 2,
              "[\"up\",{\"_placeholder\":true,\"num\":1},"
              "{\"x\":[{\"_placeholder\":true,\"num\":0}]}]"));
    CHECK(DEC("61-5[{\"_placeholder\":true,\"num\":0}]", SIO_BINARY_ACK, "/", 5, 1,
              "[{\"_placeholder\":true,\"num\":0}]"));
    CHECK(DEC("61-/x,5[{\"_placeholder\":true,\"num\":0}]", SIO_BINARY_ACK, "/x", 5, 1,
              "[{\"_placeholder\":true,\"num\":0}]"));
    /* zero and unreferenced attachments are legal, as in the reference parser */
    CHECK(DEC("50-[\"a\"]", SIO_BINARY_EVENT, "/", -1, 0, "[\"a\"]"));
    CHECK(DEC("53-[\"a\",{\"_placeholder\":true,\"num\":2}]", SIO_BINARY_EVENT, "/", -1, 3,
              "[\"a\",{\"_placeholder\":true,\"num\":2}]"));
    /* only "_placeholder":true makes a placeholder */
    CHECK(DEC("51-[\"a\",{\"_placeholder\":false,\"num\":9},{\"num\":7}]", SIO_BINARY_EVENT,
              "/", -1, 1, "[\"a\",{\"_placeholder\":false,\"num\":9},{\"num\":7}]"));
    CHECK(DEC("51-[\"a\",{\"_placeholder\":\"true\"}]", SIO_BINARY_EVENT, "/", -1, 1,
              "[\"a\",{\"_placeholder\":\"true\"}]"));
    CHECK(DEC("501-[\"a\",{\"_placeholder\":true,\"num\":0}]", SIO_BINARY_EVENT, "/", -1, 1,
              "[\"a\",{\"_placeholder\":true,\"num\":0}]"));
    char text[64];
    int n = snprintf(text, sizeof text, "5%d-[\"a\"]", SIO_ATTACHMENTS_MAX);
    CHECK(dec_is(text, (size_t)n, SIO_BINARY_EVENT, "/", -1, SIO_ATTACHMENTS_MAX, "[\"a\"]"));
    n = snprintf(text, sizeof text, "5%d-[\"a\"]", SIO_ATTACHMENTS_MAX + 1);
    CHECK(dec_bad(text, (size_t)n));
    CHECK(BAD("599999999999999999999999-[\"a\"]"));

    /* placeholders out of range or malformed */
    CHECK(BAD("51-[\"a\",{\"_placeholder\":true,\"num\":1}]"));
    CHECK(BAD("50-[\"a\",{\"_placeholder\":true,\"num\":0}]"));
    CHECK(BAD("51-[\"a\",{\"_placeholder\":true,\"num\":-1}]"));
    CHECK(BAD("51-[\"a\",{\"_placeholder\":true,\"num\":\"0\"}]"));
    CHECK(BAD("51-[\"a\",{\"_placeholder\":true,\"num\":0.0}]"));
    CHECK(BAD("51-[\"a\",{\"_placeholder\":true}]"));
    CHECK(BAD("51-[\"a\",{\"_placeholder\":true,\"num\":null}]"));
    CHECK(BAD("52-[\"a\",{\"_placeholder\":true,\"num\":0},{\"d\":{\"_placeholder\":true,"
              "\"num\":2}}]"));
    CHECK(BAD("52-[\"a\",{\"_placeholder\":true,\"num\":9223372036854775807}]"));
    CHECK(BAD("61-5[{\"_placeholder\":true,\"num\":1}]"));

    /* the attachments prefix: only on 5 and 6, always there */
    CHECK(BAD("5[\"a\"]"));
    CHECK(BAD("5-[\"a\"]"));
    CHECK(BAD("51[\"a\"]"));
    CHECK(BAD("51"));
    CHECK(BAD("51-"));
    CHECK(BAD("51-/chat,"));
    CHECK(BAD("5a-[\"a\"]"));
    CHECK(BAD("5+1-[\"a\"]"));
    CHECK(BAD("6[]"));
    CHECK(BAD("61-[]")); /* BINARY_ACK without id */
    CHECK(BAD("61-5"));
    CHECK(BAD("61-5{}"));
    CHECK(BAD("21-[\"a\"]"));
    CHECK(BAD("01-{}"));
    CHECK(BAD("31-5[]"));
    CHECK(BAD("51-[]"));
    CHECK(BAD("51-[1]"));

    /* EVENT data with placeholders is just data */
    CHECK(DEC("2[\"a\",{\"_placeholder\":true,\"num\":5}]", SIO_EVENT, "/", -1, 0,
              "[\"a\",{\"_placeholder\":true,\"num\":5}]"));
}

static void test_clear(void)
{
    sio_packet p;
    CHECK(chat__sio_decode("2/x,3[\"a\"]", 10, &p) == 0 && p.data);
    chat__sio_packet_clear(&p);
    CHECK(p.data == NULL && p.ack_id == -1 && strcmp(p.nsp, "/") == 0);
    chat__sio_packet_clear(&p); /* twice is harmless */
    chat__sio_packet_clear(NULL);
    CHECK(1);
}

/* ---- encode ---------------------------------------------------------------- */

static int enc_is(int type, const char *nsp, int64_t ack, const char *data, size_t natt,
                  const char *want)
{
    chat_buf b = CHAT_BUF_INIT;
    json_t *v = data ? js(data) : NULL;
    int rc = chat__sio_encode(&b, type, nsp, ack, v, natt);
    int ok = rc == 0 && b.len == strlen(want) && memcmp(b.data, want, b.len) == 0;
    if (!ok) {
        fprintf(stderr, "  encode gave rc %d \"%.*s\", want \"%s\"\n", rc, (int)b.len,
                b.data ? (char *)b.data : "", want);
    }
    json_decref(v);
    chat__buf_free(&b);
    return ok;
}

static void test_encode(void)
{
    CHECK(enc_is(SIO_EVENT, "/", -1, "[\"a\",1]", 0, "2[\"a\",1]"));
    CHECK(enc_is(SIO_EVENT, NULL, -1, "[\"a\",1]", 0, "2[\"a\",1]"));
    CHECK(enc_is(SIO_EVENT, "", -1, "[\"a\",1]", 0, "2[\"a\",1]"));
    CHECK(enc_is(SIO_EVENT, "/x", 5, "[\"a\",1]", 0, "2/x,5[\"a\",1]"));
    CHECK(enc_is(SIO_EVENT, "/", 0, "[\"a\"]", 0, "20[\"a\"]"));
    CHECK(enc_is(SIO_EVENT, "/", 9007199254740991LL, "[\"a\"]", 0,
                 "29007199254740991[\"a\"]"));
    CHECK(enc_is(SIO_BINARY_EVENT, "/", -1, "[\"a\",{\"_placeholder\":true,\"num\":0}]", 1,
                 "51-[\"a\",{\"_placeholder\":true,\"num\":0}]"));
    CHECK(enc_is(SIO_BINARY_EVENT, "/up", 3, "[\"f\",{\"_placeholder\":true,\"num\":0}]", 12,
                 "512-/up,3[\"f\",{\"_placeholder\":true,\"num\":0}]"));
    CHECK(enc_is(SIO_BINARY_EVENT, "/", -1, "[\"a\"]", 0, "50-[\"a\"]"));
    CHECK(enc_is(SIO_BINARY_ACK, "/", 3, "[{\"_placeholder\":true,\"num\":0}]", 1,
                 "61-3[{\"_placeholder\":true,\"num\":0}]"));
    CHECK(enc_is(SIO_CONNECT, "/", -1, "{\"sid\":\"abc\"}", 0, "0{\"sid\":\"abc\"}"));
    CHECK(enc_is(SIO_CONNECT, "/admin", -1, NULL, 0, "0/admin,"));
    CHECK(enc_is(SIO_CONNECT, "/admin", -1, "{\"sid\":\"s\"}", 0, "0/admin,{\"sid\":\"s\"}"));
    CHECK(enc_is(SIO_DISCONNECT, "/", -1, NULL, 0, "1"));
    CHECK(enc_is(SIO_DISCONNECT, "/admin", -1, NULL, 0, "1/admin,"));
    CHECK(enc_is(SIO_ACK, "/chat", 12, "[]", 0, "3/chat,12[]"));
    CHECK(enc_is(SIO_ACK, "/", 12, "[null,{\"ok\":true}]", 0, "312[null,{\"ok\":true}]"));
    CHECK(enc_is(SIO_CONNECT_ERROR, "/", -1, "{\"message\":\"x\"}", 0,
                 "4{\"message\":\"x\"}"));
    /* compact, '/' and non-ASCII written as is, key order kept */
    CHECK(enc_is(SIO_EVENT, "/", -1, "[ \"a/b\" , { \"z\" : 1 , \"a\" : [ 1 , 2 ] } ]", 0,
                 "2[\"a/b\",{\"z\":1,\"a\":[1,2]}]"));
    CHECK(enc_is(SIO_EVENT, "/", -1, "[\"caf\\u00e9 \xf0\x9f\x98\x80\"]", 0,
                 "2[\"caf\xc3\xa9 \xf0\x9f\x98\x80\"]"));
    CHECK(enc_is(SIO_EVENT, "/", -1, "[\"q\\\"\\\\\\n\\u0001\"]", 0,
                 "2[\"q\\\"\\\\\\n\\u0001\"]"));
    /* any JSON value may be written, even where decode would refuse it */
    CHECK(enc_is(SIO_EVENT, "/", -1, "7", 0, "27"));

    /* appends to what is there */
    chat_buf b = CHAT_BUF_INIT;
    CHECK(chat__buf_append(&b, "42", 2) == 0);
    json_t *v = js("[\"a\"]");
    CHECK(chat__sio_encode(&b, SIO_EVENT, "/", -1, v, 0) == 0);
    CHECK(b.len == 8 && memcmp(b.data, "422[\"a\"]", 8) == 0);

    /* misuse is refused and leaves the buffer as it was */
    CHECK(chat__sio_encode(&b, 7, "/", -1, v, 0) == CHAT_EINVAL);
    CHECK(chat__sio_encode(&b, -1, "/", -1, v, 0) == CHAT_EINVAL);
    CHECK(chat__sio_encode(&b, SIO_EVENT, "/", -1, v, 1) == CHAT_EINVAL);
    CHECK(chat__sio_encode(&b, SIO_ACK, "/", 1, v, 2) == CHAT_EINVAL);
    /* a cycle cannot be serialized; the prefix already written is taken back */
    json_t *a = json_array();
    json_t *inner = json_array();
    CHECK(a && inner && json_array_append(inner, a) == 0 && json_array_append(a, inner) == 0);
    CHECK(chat__sio_encode(&b, SIO_EVENT, "/long/namespace", 77, a, 0) == CHAT_EINVAL);
    json_array_clear(inner); /* break the cycle so both can be freed */
    json_decref(inner);
    json_decref(a);
    CHECK(b.len == 8 && memcmp(b.data, "422[\"a\"]", 8) == 0);
    json_decref(v);
    chat__buf_free(&b);
}

/* encode then decode gives back the same packet */
static int round_trip(int type, const char *nsp, int64_t ack, const char *data, size_t natt)
{
    chat_buf b = CHAT_BUF_INIT;
    json_t *v = data ? js(data) : NULL;
    sio_packet p;
    int ok = chat__sio_encode(&b, type, nsp, ack, v, natt) == 0
             && chat__sio_decode((const char *)b.data, b.len, &p) == 0;
    if (ok) {
        ok = p.type == type && strcmp(p.nsp, nsp ? nsp : "/") == 0 && p.ack_id == ack
             && p.nattachments == natt && (v ? p.data && json_equal(v, p.data) : !p.data);
        chat__sio_packet_clear(&p);
    }
    if (!ok) {
        fprintf(stderr, "  round trip failed: \"%.*s\"\n", (int)b.len,
                b.data ? (char *)b.data : "");
    }
    json_decref(v);
    chat__buf_free(&b);
    return ok;
}

static void test_round_trip(void)
{
    CHECK(round_trip(SIO_CONNECT, "/", -1, NULL, 0));
    CHECK(round_trip(SIO_CONNECT, "/admin", -1, NULL, 0));
    CHECK(round_trip(SIO_CONNECT, "/admin", -1, "{\"token\":\"t\",\"n\":[1,2.5,null]}", 0));
    CHECK(round_trip(SIO_DISCONNECT, NULL, -1, NULL, 0));
    CHECK(round_trip(SIO_DISCONNECT, "/admin", -1, NULL, 0));
    CHECK(round_trip(SIO_EVENT, "/", -1, "[\"a\",1]", 0));
    CHECK(round_trip(SIO_EVENT, "/x", 5, "[\"a\",1]", 0));
    CHECK(round_trip(SIO_EVENT, "/x", 0, "[\"a\",0.1,-3,1e-300,true,false,null]", 0));
    CHECK(round_trip(SIO_EVENT, "/caf\xc3\xa9", 9007199254740991LL,
                     "[\"\xf0\x9f\x98\x80\",{\"k/\\\"\":\"\\t\"}]", 0));
    CHECK(round_trip(SIO_ACK, "/", 1, "[]", 0));
    CHECK(round_trip(SIO_ACK, "/chat", 12, "[{\"ok\":true}]", 0));
    CHECK(round_trip(SIO_CONNECT_ERROR, "/", -1, "{\"message\":\"no\"}", 0));
    CHECK(round_trip(SIO_BINARY_EVENT, "/", -1, "[\"a\",{\"_placeholder\":true,\"num\":0}]", 1));
    CHECK(round_trip(SIO_BINARY_EVENT, "/up", 4,
                     "[\"f\",{\"_placeholder\":true,\"num\":1},[{\"_placeholder\":true,"
                     "\"num\":0}]]",
                     2));
    CHECK(round_trip(SIO_BINARY_ACK, "/", 0, "[{\"_placeholder\":true,\"num\":0}]", 1));

    /* and canonical text survives decode then encode byte for byte */
    static const char *const texts[] = {
        "0",
        "0/admin,",
        "0/admin,{\"token\":\"abc\"}",
        "1/admin,",
        "2[\"a\",1]",
        "2/x,5[\"a\",1]",
        "2/chat,12[\"msg\",{\"a\":1,\"b\":[true,null,\"x/y\"]}]",
        "3/chat,12[]",
        "4{\"message\":\"nope\"}",
        "51-[\"a\",{\"_placeholder\":true,\"num\":0}]",
        "62-/x,9[{\"_placeholder\":true,\"num\":1},{\"_placeholder\":true,\"num\":0}]",
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        sio_packet p;
        chat_buf b = CHAT_BUF_INIT;
        int ok = chat__sio_decode(texts[i], strlen(texts[i]), &p) == 0
                 && chat__sio_encode(&b, p.type, p.nsp, p.ack_id, p.data, p.nattachments) == 0
                 && b.len == strlen(texts[i]) && memcmp(b.data, texts[i], b.len) == 0;
        if (!ok) {
            fprintf(stderr, "  \"%s\" came back as \"%.*s\"\n", texts[i], (int)b.len,
                    b.data ? (char *)b.data : "");
        }
        CHECK(ok);
        chat__sio_packet_clear(&p);
        chat__buf_free(&b);
    }
}

static size_t count(const char *s)
{
    json_t *v = js(s);
    size_t n = chat__sio_count_placeholders(v);
    json_decref(v);
    return n;
}

static void test_count(void)
{
    CHECK(chat__sio_count_placeholders(NULL) == 0);
    CHECK(count("1") == 0);
    CHECK(count("\"_placeholder\"") == 0);
    CHECK(count("[\"a\",{}]") == 0);
    CHECK(count("{\"_placeholder\":true,\"num\":0}") == 1);
    CHECK(count("[\"a\",{\"_placeholder\":true,\"num\":0}]") == 1);
    CHECK(count("[\"a\",{\"_placeholder\":true,\"num\":0},{\"x\":[{\"_placeholder\":true,"
                "\"num\":1},{\"y\":{\"_placeholder\":true,\"num\":2}}]}]")
          == 3);
    /* not placeholders: false flag, bad num, and nothing inside a placeholder counts */
    CHECK(count("[{\"_placeholder\":false,\"num\":0},{\"_placeholder\":true},"
                "{\"_placeholder\":true,\"num\":-1},{\"_placeholder\":true,\"num\":\"0\"}]")
          == 0);
    CHECK(count("[{\"_placeholder\":true,\"num\":0,\"x\":{\"_placeholder\":true,\"num\":1}}]")
          == 1);
}

int main(void)
{
    test_decode_basic();
    test_decode_types();
    test_decode_ack();
    test_decode_nsp();
    test_decode_data();
    test_decode_utf8();
    test_decode_binary();
    test_clear();
    test_encode();
    test_round_trip();
    test_count();
    return TEST_DONE("test_sio");
}
