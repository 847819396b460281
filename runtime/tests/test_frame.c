/* test_frame.c: the websocket header chat__frame_new writes once for every recipient
 * (runtime/src/frame.c), byte for byte as RFC 6455 section 5.2 frames a server's message:
 * FIN + opcode (0x1 text, 0x2 binary), MASK bit clear, then the payload length in 7 bits,
 * 126 + 16 bits, or 127 + 64 bits (network order, the shortest form). */
#include <stdlib.h>

#include "frame.h"
#include "test.h"

static int header_is(size_t len, int binary, const uint8_t *want, size_t wantlen)
{
    uint8_t *payload = malloc(len ? len : 1);
    for (size_t i = 0; i < len; i++) {
        payload[i] = (uint8_t)('a' + i % 26);
    }
    chat_frame *f = chat__frame_new(payload, len, binary);
    int ok = f && f->hl == wantlen && memcmp(chat__frame_wire(f), want, wantlen) == 0 &&
             chat__frame_wire(f) + f->hl == chat__frame_payload(f) &&
             memcmp(chat__frame_payload(f), payload, len) == 0;
    chat__frame_unref(f);
    free(payload);
    return ok;
}

int main(void)
{
    CHECK(header_is(0, 0, (const uint8_t[]){0x81, 0}, 2));
    CHECK(header_is(1, 0, (const uint8_t[]){0x81, 1}, 2));
    CHECK(header_is(125, 0, (const uint8_t[]){0x81, 125}, 2));
    CHECK(header_is(126, 0, (const uint8_t[]){0x81, 126, 0x00, 126}, 4));
    CHECK(header_is(300, 1, (const uint8_t[]){0x82, 126, 0x01, 0x2c}, 4));
    CHECK(header_is(65535, 0, (const uint8_t[]){0x81, 126, 0xff, 0xff}, 4));
    CHECK(header_is(65536, 0, (const uint8_t[]){0x81, 127, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00}, 10));
    CHECK(header_is(1000000, 1,
                    (const uint8_t[]){0x82, 127, 0, 0, 0, 0, 0, 0x0f, 0x42, 0x40}, 10));
    /* the header fits in lws's headroom, which the polling transport never reads */
    CHECK(LWS_PRE >= 10);
    return TEST_DONE("test_frame");
}
