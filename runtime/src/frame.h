/* frame.h: one encoded Engine.IO packet, shared by every socket it goes to. Loop thread
 * only. */
#ifndef CHAT_FRAME_H
#define CHAT_FRAME_H

#include <libwebsockets.h>
#include <stddef.h>
#include <stdint.h>

typedef struct chat_frame {
    uint32_t refs;
    uint32_t len;   /* payload bytes */
    uint8_t binary; /* websocket binary message (no type prefix) */
    uint8_t hl;     /* bytes of the websocket frame header just before the payload */
    uint8_t data[]; /* LWS_PRE bytes of headroom (its end: the ws header), then the payload */
} chat_frame;

/* Copies payload and writes the server's websocket frame header for it (RFC 6455 5.2:
 * FIN, text or binary, the 7-, 16- or 64-bit length, never masked) into the end of the
 * headroom: the same bytes for every recipient, so a broadcast is framed once. NULL on
 * out-of-memory. */
chat_frame *chat__frame_new(const void *payload, size_t len, int binary);
static inline uint8_t *chat__frame_payload(chat_frame *f)
{
    return f->data + LWS_PRE;
}
/* The websocket frame as it goes on the wire: header and payload (f->hl + f->len bytes). */
static inline uint8_t *chat__frame_wire(chat_frame *f)
{
    return f->data + LWS_PRE - f->hl;
}
static inline chat_frame *chat__frame_ref(chat_frame *f)
{
    f->refs++;
    return f;
}
void chat__frame_unref(chat_frame *f); /* NULL-safe */

#endif
