/* frame.c: reference-counted outgoing packets. */
#include "frame.h"

#include <stdlib.h>
#include <string.h>

chat_frame *chat__frame_new(const void *payload, size_t len, int binary)
{
    chat_frame *f = malloc(sizeof *f + LWS_PRE + len);
    if (!f) {
        return NULL;
    }
    f->refs = 1;
    f->len = (uint32_t)len;
    f->binary = (uint8_t)binary;
    memcpy(f->data + LWS_PRE, payload, len);
    uint8_t *p = f->data + LWS_PRE, op = (uint8_t)(0x80 | (binary ? 0x2 : 0x1));
    if (len < 126) {
        f->hl = 2;
        p[-1] = (uint8_t)len;
    } else if (len < 65536) {
        f->hl = 4;
        p[-3] = 126;
        p[-2] = (uint8_t)(len >> 8);
        p[-1] = (uint8_t)len;
    } else {
        f->hl = 10;
        p[-9] = 127;
        for (int i = 0; i < 8; i++) {
            p[-8 + i] = (uint8_t)((uint64_t)len >> (56 - 8 * i));
        }
    }
    p[-f->hl] = op;
    return f;
}

void chat__frame_unref(chat_frame *f)
{
    if (f && --f->refs == 0) {
        free(f);
    }
}
