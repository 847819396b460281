/* http_frame.h: what a request's headers say about its body and its connection. Pure
 * functions, no libwebsockets: chatd checks the framing itself before it trusts lws with a
 * body (see net.c), and runtime/fuzz/fuzz_http.c fuzzes them. */
#ifndef CHAT_HTTP_FRAME_H
#define CHAT_HTTP_FRAME_H

#include <stddef.h>
#include <stdint.h>

enum chat_http_body {
    CHAT_BODY_NONE,     /* no body: answer at once, whatever the method */
    CHAT_BODY_LENGTH,   /* Content-Length bytes follow */
    CHAT_BODY_BAD,      /* 400 and close: bad or conflicting framing (smuggling attempt) */
    CHAT_BODY_CHUNKED,  /* 411 and close: Transfer-Encoding without Content-Length */
};

/* content_length and transfer_encoding are the header values as received (NULL when the
 * header is absent; lws joins repeated headers with ','). Returns a chat_http_body and sets
 * *length for CHAT_BODY_LENGTH. Content-Length and Transfer-Encoding together are refused
 * (RFC 9112 6.3: a server may reject such a message, and must close after it). */
int chat__http_body_framing(const char *content_length, const char *transfer_encoding,
                            uint64_t *length);

/* 1 when the connection must close after this response: HTTP/1.0 (chatd does not do 1.0
 * keep-alive), or a "close" token in Connection. version is the request line's version
 * ("HTTP/1.1"), connection the Connection header; either may be NULL. */
int chat__http_wants_close(const char *version, const char *connection);

#endif
