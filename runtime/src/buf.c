#include "buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat.h"

int chat__buf_reserve(chat_buf *b, size_t extra)
{
    if (b->len + extra + 1 <= b->cap) {
        return 0;
    }
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra + 1) {
        cap *= 2;
    }
    uint8_t *p = realloc(b->data, cap);
    if (!p) {
        return CHAT_ENOMEM;
    }
    b->data = p;
    b->cap = cap;
    return 0;
}

int chat__buf_append(chat_buf *b, const void *data, size_t len)
{
    if (chat__buf_reserve(b, len)) {
        return CHAT_ENOMEM;
    }
    if (len) {
        memcpy(b->data + b->len, data, len);
    }
    b->len += len;
    return 0;
}

int chat__buf_appendc(chat_buf *b, uint8_t c) { return chat__buf_append(b, &c, 1); }

int chat__buf_appendf(chat_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || chat__buf_reserve(b, (size_t)n)) {
        return CHAT_ENOMEM;
    }
    va_start(ap, fmt);
    vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

int chat__buf_terminate(chat_buf *b)
{
    if (chat__buf_reserve(b, 0)) {
        return CHAT_ENOMEM;
    }
    b->data[b->len] = '\0';
    return 0;
}

void chat__buf_free(chat_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}
