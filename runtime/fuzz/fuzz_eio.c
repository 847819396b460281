/* fuzz_eio.c: libFuzzer target for the Engine.IO codec (runtime/src/eio.c).
 * The first input byte picks the framing bits; the rest is the packet data. For each input:
 *   - a websocket frame (text or binary) is decoded; what it yields must lie inside the input;
 *   - the input as a polling payload is decoded; every packet it yields is encoded again into
 *     a payload, which must decode to the same packets (type, binary flag, bytes);
 *   - the base64 and UTF-8 helpers run on it.
 * A broken invariant aborts (libFuzzer reports it as a crash). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "chat.h"
#include "eio.h"

#define CHECK(c)                                                                            \
    do {                                                                                    \
        if (!(c)) {                                                                         \
            fprintf(stderr, "fuzz_eio: %s:%d: %s\n", __FILE__, __LINE__, #c);               \
            abort();                                                                        \
        }                                                                                   \
    } while (0)

typedef struct pkt {
    int type, binary;
    uint8_t *data;
    size_t len;
} pkt;

typedef struct pkts {
    pkt *v;
    size_t n, cap;
} pkts;

static int collect(const eio_packet *p, void *arg)
{
    pkts *l = arg;
    CHECK(p->type >= EIO_OPEN && p->type <= EIO_NOOP);
    CHECK(!p->binary || p->type == EIO_MESSAGE);
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 8;
        pkt *v = realloc(l->v, cap * sizeof *v);
        CHECK(v);
        l->v = v;
        l->cap = cap;
    }
    pkt *q = &l->v[l->n++];
    q->type = p->type;
    q->binary = p->binary;
    q->len = p->len;
    q->data = malloc(p->len + 1);
    CHECK(q->data);
    if (p->len) {
        memcpy(q->data, p->data, p->len);
    }
    return 0;
}

static void pkts_free(pkts *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i].data);
    }
    free(l->v);
    memset(l, 0, sizeof *l);
}

static void frame(const uint8_t *data, size_t size, int binary)
{
    eio_packet p;
    if (chat__eio_decode_frame(data, size, binary, &p) != 0) {
        return;
    }
    CHECK(p.type >= EIO_OPEN && p.type <= EIO_NOOP);
    CHECK(p.binary == binary);
    CHECK(p.len <= size);
    if (p.len) {
        CHECK(p.data >= data && p.data + p.len <= data + size);
    }
    if (!binary) {
        CHECK(chat__utf8_valid(data, size));
    }
}

static void payload(const uint8_t *data, size_t size)
{
    uint8_t *body = malloc(size + 1);
    CHECK(body);
    if (size) {
        memcpy(body, data, size);
    }
    pkts first = {0}, second = {0};
    int rc = chat__eio_decode_payload(body, size, collect, &first);
    free(body);
    if (rc != 0) {
        pkts_free(&first);
        return;
    }
    CHECK(first.n > 0);
    /* encode what was decoded, then decode that again: the same packets */
    chat_buf out = CHAT_BUF_INIT;
    for (size_t i = 0; i < first.n; i++) {
        pkt *q = &first.v[i];
        CHECK(chat__eio_payload_append(&out, q->type, q->data, q->len, q->binary) == 0);
    }
    CHECK(chat__eio_decode_payload(out.data, out.len, collect, &second) == 0);
    CHECK(second.n == first.n);
    for (size_t i = 0; i < first.n; i++) {
        CHECK(second.v[i].type == first.v[i].type);
        CHECK(second.v[i].binary == first.v[i].binary);
        CHECK(second.v[i].len == first.v[i].len);
        CHECK(first.v[i].len == 0 || memcmp(second.v[i].data, first.v[i].data, first.v[i].len) == 0);
    }
    chat__buf_free(&out);
    pkts_free(&first);
    pkts_free(&second);
}

static void base64(const uint8_t *data, size_t size)
{
    uint8_t *copy = malloc(size + 1);
    CHECK(copy);
    if (size) {
        memcpy(copy, data, size);
    }
    long n = chat__base64_decode_inplace(copy, size);
    if (n >= 0) {
        CHECK((size_t)n <= size);
        /* what decoded encodes back to bytes that decode the same */
        chat_buf enc = CHAT_BUF_INIT;
        CHECK(chat__base64_encode(&enc, copy, (size_t)n) == 0);
        long m = chat__base64_decode_inplace(enc.data, enc.len);
        CHECK(m == n);
        CHECK(n == 0 || memcmp(enc.data, copy, (size_t)n) == 0);
        chat__buf_free(&enc);
    } else {
        CHECK(n == CHAT_EINVAL);
    }
    free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0) {
        return 0;
    }
    uint8_t mode = data[0];
    data++;
    size--;
    frame(data, size, mode & 1);
    payload(data, size);
    if (mode & 2) {
        base64(data, size);
    }
    (void)chat__utf8_valid(data, size);
    return 0;
}
