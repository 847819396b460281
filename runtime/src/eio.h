/* eio.h: Engine.IO v4 packet codec (pure; no I/O). Sessions and transports live in session.c.
 * Spec: https://socket.io/docs/v4/engine-io-protocol/ */
#ifndef CHAT_EIO_H
#define CHAT_EIO_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

typedef enum eio_type {
    EIO_OPEN = 0,
    EIO_CLOSE = 1,
    EIO_PING = 2,
    EIO_PONG = 3,
    EIO_MESSAGE = 4,
    EIO_UPGRADE = 5,
    EIO_NOOP = 6,
} eio_type;

typedef struct eio_packet {
    int type;            /* eio_type */
    int binary;          /* 1: data is a binary message (always type EIO_MESSAGE) */
    const uint8_t *data; /* borrowed from the input, after the type character */
    size_t len;
} eio_packet;

/* One WebSocket frame is one packet. A binary frame is a binary message with no type
 * prefix; a text frame starts with the type digit. Returns 0 or CHAT_EINVAL (empty text
 * frame, unknown type, a text frame that is not valid UTF-8). */
int chat__eio_decode_frame(const uint8_t *frame, size_t len, int is_binary, eio_packet *out);

/* A polling POST body: packets separated by 0x1e; a packet "b<base64>" is a binary
 * message. Decodes base64 in place (body is modified). Calls fn once per packet, in order;
 * stops and returns fn's value if it is non-zero. Returns CHAT_EINVAL for an empty body,
 * an empty packet, an unknown type, bad base64 or text that is not valid UTF-8; no
 * callback has been made for the invalid packet or any after it. */
int chat__eio_decode_payload(uint8_t *body, size_t len,
                             int (*fn)(const eio_packet *pkt, void *arg), void *arg);

/* Appends one packet to a polling response body (adds the 0x1e separator when the body
 * is not empty; binary messages are written as "b" + base64). 0, CHAT_ENOMEM, or
 * CHAT_EINVAL for a type outside 0..6, a binary packet that is not EIO_MESSAGE or text
 * containing 0x1e; on failure the body is unchanged. */
int chat__eio_payload_append(chat_buf *body, int type, const uint8_t *data, size_t len,
                             int binary);

/* Strict UTF-8 check (no overlongs, no surrogates, nothing past U+10FFFF). 1 if valid. */
int chat__utf8_valid(const uint8_t *s, size_t len);

/* Base64 (RFC 4648, with padding). encode appends to out; decode works in place and
 * returns the decoded length, or CHAT_EINVAL. */
int chat__base64_encode(chat_buf *out, const uint8_t *data, size_t len);
long chat__base64_decode_inplace(uint8_t *s, size_t len);

#endif
