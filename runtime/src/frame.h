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
    uint8_t data[]; /* LWS_PRE bytes of headroom, then the payload */
} chat_frame;

/* Copies payload. NULL on out-of-memory. */
chat_frame *chat__frame_new(const void *payload, size_t len, int binary);
static inline uint8_t *chat__frame_payload(chat_frame *f)
{
    return f->data + LWS_PRE;
}
static inline chat_frame *chat__frame_ref(chat_frame *f)
{
    f->refs++;
    return f;
}
void chat__frame_unref(chat_frame *f); /* NULL-safe */

#endif
