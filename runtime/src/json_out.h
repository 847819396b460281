/* json_out.h: JSON text for a jansson value, appended to a chat_buf: the same bytes as
 * json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY), several times faster (jansson decodes every
 * string code point by code point and prints integers with snprintf; its strings are valid
 * UTF-8 already, so escaping is a byte scan). The hot encodes use it: Socket.IO packets
 * (sio.c) and the stored message (messages.c). */
#ifndef CHAT_JSON_OUT_H
#define CHAT_JSON_OUT_H

#include <jansson.h>

#include "buf.h"

/* 0; CHAT_ENOMEM; CHAT_EINVAL for what JSON cannot carry (a non-finite real, nesting deeper
 * than 2048). On failure out keeps its length from before the call. */
int chat__json_append(chat_buf *out, const json_t *v);

#endif
