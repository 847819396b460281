/* sio.h: Socket.IO v5 packet codec (pure; no I/O).
 * Spec: https://socket.io/docs/v4/socket-io-protocol/
 *   <type>[<attachments>-][<nsp>,][<ack id>][<JSON data>]   e.g. 2/chat,12["msg",{"a":1}] */
#ifndef CHAT_SIO_H
#define CHAT_SIO_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

typedef enum sio_type {
    SIO_CONNECT = 0,
    SIO_DISCONNECT = 1,
    SIO_EVENT = 2,
    SIO_ACK = 3,
    SIO_CONNECT_ERROR = 4,
    SIO_BINARY_EVENT = 5,
    SIO_BINARY_ACK = 6,
} sio_type;

#define SIO_NSP_MAX 128
#define SIO_ATTACHMENTS_MAX 1000 /* bounds what a session must buffer for one packet */

typedef struct sio_packet {
    int type;               /* sio_type */
    char nsp[SIO_NSP_MAX];  /* "/" when absent */
    int64_t ack_id;         /* -1 when absent */
    json_t *data;           /* owned; NULL when absent */
    size_t nattachments;    /* binary packets: buffers that follow as binary messages */
} sio_packet;

/* Parses one text message. The rules (each violation is CHAT_EINVAL, data left NULL):
 * type 0..6; attachments count only for types 5 and 6 and required there, at most
 * SIO_ATTACHMENTS_MAX; nsp starts with '/', at most SIO_NSP_MAX-1 bytes, no control
 * characters, ends at ',' (or at the end of the text, as the reference parser allows);
 * ack id decimal, < 2^53, only on EVENT, ACK and their binary forms; data is
 * strict JSON (valid UTF-8, one value, nothing after it); CONNECT data, if present, is an
 * object; EVENT/BINARY_EVENT data is a non-empty array whose first element is a string
 * other than the names Socket.IO reserves (connect, connect_error, disconnect,
 * disconnecting, newListener, removeListener);
 * ACK/BINARY_ACK data is an array and the ack id is required; DISCONNECT has no data;
 * CONNECT_ERROR data is an object. For binary packets, every object with
 * "_placeholder":true must have an integer "num" with 0 <= num < nattachments. */
int chat__sio_decode(const char *text, size_t len, sio_packet *out);
void chat__sio_packet_clear(sio_packet *p); /* frees data; NULL-safe fields */

/* Appends the text form of a packet. nsp NULL or "/" is omitted; ack_id < 0 omitted;
 * data may be NULL (borrowed). nattachments > 0 only for binary types. 0, CHAT_ENOMEM,
 * or CHAT_EINVAL (type outside 0..6, attachments on a non-binary type, data jansson
 * cannot serialize); on failure out is unchanged. */
int chat__sio_encode(chat_buf *out, int type, const char *nsp, int64_t ack_id,
                     const json_t *data, size_t nattachments);

/* Counts {"_placeholder":true,"num":N} objects in a value (for building binary packets). */
size_t chat__sio_count_placeholders(const json_t *v);

#endif
