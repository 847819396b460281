/* sock.h: Socket.IO v5 sockets (sock.c) on Engine.IO sessions, and the handler the domain
 * registers. Loop thread only. */
#ifndef CHAT_SOCK_H
#define CHAT_SOCK_H

#include <jansson.h>
#include <stdint.h>

#include "chat.h"
#include "frame.h"
#include "map.h"
#include "session.h"
#include "sio.h"

typedef struct chat_sock chat_sock;
typedef struct chat_user_state chat_user_state;

struct chat_sock {
    chat_runtime *rt;
    chat_session *session; /* NULL once disconnected */
    int refs;
    int connected; /* CONNECT answered */
    char id[24];   /* Socket.IO socket id */
    char nsp[SIO_NSP_MAX];
    char user_id[25]; /* "" for an anonymous socket (as the connect policy allowed) */
    char username[40];
    chat_user_state *user; /* "/" sockets: the user's local state */
    chat_vec rooms;        /* chat_room_state* this socket receives */
    uint32_t mark;
};

/* The domain's handler, registered at start (chat__sock_start). */
typedef struct chat_sock_handler {
    /* Whether nsp (not "/") is open to clients at all. */
    int (*namespace_open)(chat_runtime *rt, const char *nsp);
    /* A CONNECT to an open namespace: auth is the handshake's auth object, whole (taken; {}
     * when the client sent none). The domain authenticates (its policy) and answers with
     * chat__sock_connected or chat__sock_refuse. */
    void (*on_connect)(chat_sock *k, json_t *auth);
    /* A client event; args is the whole argument array (borrowed), args[0] the name. */
    void (*on_event)(chat_sock *k, const char *event, json_t *args, int64_t ack_id);
    void (*on_disconnect)(chat_sock *k, const char *reason);
} chat_sock_handler;
/* Registers h, and the socket layer with the sessions. */
int chat__sock_start(chat_runtime *rt, const chat_sock_handler *h);
/* Queues a frame encoded once for many sockets; adds its own reference. */
void chat__sock_send_frame(chat_sock *k, chat_frame *f);
const char *chat__sock_peer(chat_sock *k); /* "" once disconnected */
/* Called by the domain once the socket's user and rooms are loaded: answers CONNECT. */
void chat__sock_connected(chat_sock *k);
/* Refuses the CONNECT with CONNECT_ERROR {message[, data]} (data borrowed, may be NULL)
 * and forgets the socket. */
void chat__sock_refuse(chat_sock *k, const char *message, json_t *data);
/* The server ends the socket: a DISCONNECT packet (the client does not reconnect on its own),
 * then the domain lets it go. Packets queued before it are still delivered. */
void chat__sock_disconnect(chat_sock *k, const char *reason);
void chat__sock_ref(chat_sock *k);
void chat__sock_unref(chat_sock *k);
/* Emits an event to one socket: data is the argument array after the event name
 * (borrowed). */
void chat__sock_emit(chat_sock *k, const char *event, json_t *arg);
/* Emits args, the whole event ([name, arg...], borrowed), with any number of arguments;
 * {"$binary": base64} values anywhere in them go out as attachments (a BINARY_EVENT with
 * placeholders). Only for emits from scripts: clients cannot make the server send binary by
 * storing such objects in messages. */
void chat__sock_emit_args(chat_sock *k, json_t *args);
/* Answers an ack id (no-op for ack_id < 0). data: the one ack argument (borrowed). */
void chat__sock_ack(chat_sock *k, int64_t ack_id, json_t *arg);
/* Answers an ack id with the array args as its arguments (borrowed); {"$binary"} values go
 * out as attachments (a BINARY_ACK). For answers from scripts. */
void chat__sock_ack_args(chat_sock *k, int64_t ack_id, json_t *args);
/* The failure answer: through the ack when the client asked for one, else an `error`
 * event {event, error:{code,message}}. */
void chat__sock_fail(chat_sock *k, const char *event, int64_t ack_id, int err,
                     const char *message);

#endif
