/* fuzz_sio.c: libFuzzer target for the Socket.IO codec (runtime/src/sio.c).
 * Each input is one Socket.IO text packet. When it decodes, the packet is encoded again and
 * the text must decode to the same packet (type, namespace, ack id, attachments, data), and
 * the decoder's promises hold (namespace form, placeholder count, data shape per type).
 * A broken invariant aborts (libFuzzer reports it as a crash). */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "chat.h"
#include "sio.h"

#define CHECK(c)                                                                            \
    do {                                                                                    \
        if (!(c)) {                                                                         \
            fprintf(stderr, "fuzz_sio: %s:%d: %s\n", __FILE__, __LINE__, #c);               \
            abort();                                                                        \
        }                                                                                   \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sio_packet p;
    if (chat__sio_decode((const char *)data, size, &p) != 0) {
        CHECK(p.data == NULL);
        return 0;
    }
    CHECK(p.type >= SIO_CONNECT && p.type <= SIO_BINARY_ACK);
    CHECK(p.nsp[0] == '/' && strlen(p.nsp) < SIO_NSP_MAX);
    CHECK(p.nattachments <= SIO_ATTACHMENTS_MAX);
    int binary = p.type == SIO_BINARY_EVENT || p.type == SIO_BINARY_ACK;
    CHECK(binary || p.nattachments == 0);
    if (p.type == SIO_EVENT || p.type == SIO_BINARY_EVENT) {
        CHECK(json_is_array(p.data) && json_array_size(p.data) > 0 &&
              json_is_string(json_array_get(p.data, 0)));
    }
    if (p.type == SIO_ACK || p.type == SIO_BINARY_ACK) {
        CHECK(json_is_array(p.data) && p.ack_id >= 0);
    }
    if (p.type == SIO_DISCONNECT) {
        CHECK(p.data == NULL);
    }
    if (p.data) {
        (void)chat__sio_count_placeholders(p.data);
    }

    chat_buf out = CHAT_BUF_INIT;
    CHECK(chat__sio_encode(&out, p.type, p.nsp, p.ack_id, p.data, p.nattachments) == 0);
    sio_packet q;
    int rc = chat__sio_decode((const char *)out.data, out.len, &q);
    if (rc != 0) {
        fprintf(stderr, "fuzz_sio: re-encoded packet does not decode: %.*s\n", (int)out.len,
                (const char *)out.data);
    }
    CHECK(rc == 0);
    CHECK(q.type == p.type);
    CHECK(strcmp(q.nsp, p.nsp) == 0);
    CHECK(q.ack_id == p.ack_id);
    CHECK(q.nattachments == p.nattachments);
    CHECK((q.data == NULL) == (p.data == NULL));
    CHECK(!p.data || json_equal(p.data, q.data));
    chat__sio_packet_clear(&q);
    chat__sio_packet_clear(&p);
    chat__buf_free(&out);
    return 0;
}
