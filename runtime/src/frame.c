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
    return f;
}

void chat__frame_unref(chat_frame *f)
{
    if (f && --f->refs == 0) {
        free(f);
    }
}
