/* buf.h: a growable byte buffer, reused across messages on hot paths. */
#ifndef CHAT_BUF_H
#define CHAT_BUF_H

#include <stddef.h>
#include <stdint.h>

typedef struct chat_buf {
    uint8_t *data;
    size_t len;
    size_t cap;
} chat_buf;

#define CHAT_BUF_INIT {NULL, 0, 0}

/* Each returns 0 or CHAT_ENOMEM; the buffer keeps its contents on failure. */
int chat__buf_reserve(chat_buf *b, size_t extra);
int chat__buf_append(chat_buf *b, const void *data, size_t len);
int chat__buf_appendc(chat_buf *b, uint8_t c);
int chat__buf_appendf(chat_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Keeps a NUL after the contents (not counted in len) so data can be read as a string. */
int chat__buf_terminate(chat_buf *b);
static inline void chat__buf_reset(chat_buf *b) { b->len = 0; }
void chat__buf_free(chat_buf *b);

#endif
