/* session.h: Engine.IO v4 sessions (session.c) over both transports, the websocket
 * connection state net.c keeps per connection, and the handler the socket layer registers.
 * Loop thread only. */
#ifndef CHAT_SESSION_H
#define CHAT_SESSION_H

#include <libwebsockets.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "chat.h"
#include "frame.h"
#include "http.h"

#define CHAT_SID_MAX 48 /* "<node id>.<20 random>" */

typedef struct chat_session_handler chat_session_handler;

void chat__eio_http(chat_http_req *req); /* an Engine.IO endpoint over HTTP */
/* Per websocket connection, kept in the lws per-session data. */
typedef struct chat_ws_conn {
    chat_runtime *rt;
    chat_session *session;
    struct lws *wsi;
    chat_buf rx;
    int rx_binary;
    int rx_too_large;
    int probe;        /* upgrading an existing polling session */
    int probe_reply;  /* "3probe" to send */
    int closing;      /* close on next writeable */
    int peer_closed;  /* the client sent a close frame: lws answers it, chatd writes no more */
    int close_status; /* websocket close code */
    char sid[CHAT_SID_MAX];
    int bad_request; /* set at filter time: refuse once established */
    char peer[64];   /* the client's address, read with the upgrade request's headers */
    const chat_session_handler *handler; /* the endpoint's upper layer (ws_filter) */
    int counted;        /* in rt->ws_conns */
    int close_drained;  /* graceful stop: close with this code once the queue is written */
} chat_ws_conn;
void chat__ws_established(chat_ws_conn *c);
void chat__ws_receive(chat_ws_conn *c, const void *in, size_t len, int first, int final,
                      int binary);
int chat__ws_writeable(chat_ws_conn *c); /* -1: close the connection */
void chat__ws_closed(chat_ws_conn *c);
void chat__http_closed(chat_http_req *req); /* a held poll's client went away */
/* A held poll may write: fill its response from the session's queue. */
void chat__eio_poll_writeable(chat_http_req *req);

/* The layer above an Engine.IO endpoint (sock.c for /socket.io/, eio_script.c for the
 * scripts' plain endpoint), registered at start with its path (chat__session_mount). */
struct chat_session_handler {
    /* A session was opened (its handshake answered). NULL: nothing to do. */
    void (*on_open)(chat_session *s);
    /* An Engine.IO message (text or binary). -1: the packet is invalid and the session is
     * closed (the protocol's answer to a parse error). */
    int (*on_message)(chat_session *s, const uint8_t *data, size_t len, int binary);
    /* The session is closing: let go of it (its upper state too). */
    void (*on_close)(chat_session *s, const char *reason);
    /* Whether a Socket.IO namespace is connected on it (its CONNECT was answered), for the
     * bounds on sessions that never connect one. */
    int (*connected)(chat_session *s);
};
/* Serves Engine.IO at path ("/socket.io/"; also without the trailing slash) for h: its
 * routes, websocket upgrades and sessions. Copies path. 0 or CHAT_ENOMEM. */
int chat__session_mount(chat_runtime *rt, const char *path, const chat_session_handler *h);
/* The Socket.IO layer's mount: h at /socket.io/. */
int chat__session_start(chat_runtime *rt, const chat_session_handler *h);
/* The handler mounted at path, or NULL (net.c: which websocket upgrades are ours). */
const chat_session_handler *chat__session_mount_find(chat_runtime *rt, const char *path);
/* The mounts' memory, when the runtime is freed. */
void chat__session_mounts_free(chat_runtime *rt);
/* The open session sid of the endpoint h, or NULL. */
chat_session *chat__session_get(chat_runtime *rt, const char *sid, const chat_session_handler *h);
const char *chat__session_sid(chat_session *s);
/* The socket layer's state for this session (NULL until it sets one). */
void *chat__session_upper(chat_session *s);
void chat__session_set_upper(chat_session *s, void *upper);
chat_runtime *chat__session_rt(chat_session *s);

/* Queue a packet to the session's client. Adds its own reference to f. */
void chat__session_send(chat_session *s, chat_frame *f);
void chat__session_close(chat_session *s, const char *reason);
const char *chat__session_peer(chat_session *s);
/* The user a socket of the session authenticated as (for the connection_close line). */
void chat__session_set_user(chat_session *s, const char *user_id);
/* 20 random base64url characters and a NUL: session and socket ids. */
void chat__random_id(char out[21]);
void chat__sessions_close_all(chat_runtime *rt);
/* The graceful stop's last word to every client: what is queued for it, then the Engine.IO
 * close packet; a websocket then gets a close frame 1001 (going away), a held poll its
 * answer. A polling client with packets queued gets them first and the close in its next
 * poll, as does one between two polls; a poll that does not come within a second is not
 * waited for. */
void chat__sessions_shutdown(chat_runtime *rt);
/* Writes what the flush list holds and closes its loop handles (net.c, at stop). */
void chat__session_flush_stop(chat_runtime *rt);
/* lws_write calls, those that carried several frames, and those lws had to keep part of
 * (the socket was full) since start: /metrics. */
void chat__session_flush_stats(chat_runtime *rt, uint64_t *writes, uint64_t *batched,
                               uint64_t *partial);

#endif
