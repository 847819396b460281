/* rt.h: the runtime's internal objects, shared by net, http, session, sock and domain.
 * Everything here lives on the loop thread. */
#ifndef CHAT_RT_H
#define CHAT_RT_H

#include <jansson.h>
#include <libwebsockets.h>
#include <stdint.h>
#include <uv.h>

#include "buf.h"
#include "bus.h"
#include "chat.h"
#include "kv.h"
#include "map.h"
#include "sio.h"
#include "store.h"

#define CHAT_SID_MAX 48 /* "<node id>.<20 random>" */
#define CHAT_NODE_ID_MAX 17

typedef struct chat_session chat_session;
typedef struct chat_sock chat_sock;
typedef struct chat_http_req chat_http_req;
typedef struct chat_user_state chat_user_state;
typedef struct chat_room_state chat_room_state;


/* ---- frames: one encoded Engine.IO packet, shared by every socket it goes to ---- */
typedef struct chat_frame {
    uint32_t refs;
    uint32_t len;   /* payload bytes */
    uint8_t binary; /* websocket binary message (no type prefix) */
    uint8_t data[]; /* LWS_PRE bytes of headroom, then the payload */
} chat_frame;

/* Copies payload. NULL on out-of-memory. */
chat_frame *chat__frame_new(const void *payload, size_t len, int binary);
static inline uint8_t *chat__frame_payload(chat_frame *f) { return f->data + LWS_PRE; }
static inline chat_frame *chat__frame_ref(chat_frame *f)
{
    f->refs++;
    return f;
}
void chat__frame_unref(chat_frame *f);

/* ---- the runtime ---- */
typedef struct chat_stats {
    uint64_t connections_total;
    uint64_t messages_stored;
    uint64_t frames_out;
    uint64_t bad_packets;
} chat_stats;

struct chat_runtime {
    uv_loop_t *loop;
    uv_loop_t own_loop;
    int owns_loop;
    chat_config cfg;
    char listen_host[128];
    char node_id[CHAT_NODE_ID_MAX]; /* names this process in sids and logs */
    int listen_port;
    char *jwt_secret;

    struct lws_context *lws;
    struct lws_context *lws_closing; /* destroyed, waiting for its handles to close */
    chat_store *store;
    chat_kv *kv;
    chat_bus *bus;

    chat_map sessions; /* sid -> chat_session */
    chat_map users;    /* userId -> chat_user_state (users with local sockets) */
    chat_map rooms;    /* roomId -> chat_room_state (rooms with local subscribers) */
    chat_map socks;    /* Socket.IO socket id -> chat_sock (connected sockets) */
    struct chat_script *script;
    uint32_t mark;     /* generation counter for de-duplicating fan-out targets */
    int stopping;
    chat_frame *ping_frame; /* "2", shared by every session */
    chat_frame *noop_frame; /* "6" */
    chat_stats stats;
    chat_buf scratch; /* reused encode buffer for packets to one socket */
    chat_buf pubbuf;  /* reused encode buffer for bus messages */
    char dummy_hash[64]; /* checked on logins for unknown users: same cost as a real check */
    char *static_root;   /* static_dir made absolute; NULL: serve no files */
};

/* ---- HTTP requests (http.c) ---- */
enum { CHAT_HTTP_GET, CHAT_HTTP_POST, CHAT_HTTP_OPTIONS, CHAT_HTTP_HEAD, CHAT_HTTP_OTHER };

struct chat_http_req {
    chat_runtime *rt;
    struct lws *wsi; /* NULL once the client went away */
    int refs;
    int method;
    char path[256];
    char *query; /* raw "a=b&c=d", url-decoded per pair by chat__http_query */
    char *authorization;
    char *if_none_match;
    chat_buf body;
    size_t body_seen; /* bytes offered, including those dropped past the limit */
    int body_too_large;
    /* response */
    int responded;
    int status;
    const char *content_type;
    char extra_headers[256]; /* "name: value\r\n" lines */
    chat_buf resp;
    /* Engine.IO polling GET held open for packets */
    chat_session *poll_session;
};

void chat__http_respond(chat_http_req *req, int status, const char *content_type,
                        const void *body, size_t len);
/* Takes body (stolen). */
void chat__http_respond_json(chat_http_req *req, int status, json_t *body);
/* The PROTOCOL.md error shape; message NULL uses chat_strerror. */
void chat__http_respond_error(chat_http_req *req, int err, const char *message);
/* Copies the url-decoded value of a query parameter into buf; NULL when absent. */
const char *chat__http_query(const chat_http_req *req, const char *name, char *buf,
                             size_t len);
void chat__http_req_ref(chat_http_req *req);
void chat__http_req_unref(chat_http_req *req);
void chat__http_dispatch(chat_http_req *req);

/* ---- Engine.IO sessions (session.c) ---- */
void chat__eio_http(chat_http_req *req); /* /socket.io/ over HTTP */
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
    int close_status; /* websocket close code */
    char sid[CHAT_SID_MAX];
    int bad_request; /* set at filter time: refuse once established */
    char peer[64];   /* the client's address, read with the upgrade request's headers */
} chat_ws_conn;
void chat__ws_established(chat_ws_conn *c);
/* The client address of a request: the TCP peer, or X-Forwarded-For's last entry when the
 * runtime trusts its proxy. */
void chat__peer_address(chat_runtime *rt, struct lws *wsi, char *out, size_t len);
void chat__ws_receive(chat_ws_conn *c, const void *in, size_t len, int first, int final,
                      int binary);
int chat__ws_writeable(chat_ws_conn *c); /* -1: close the connection */
void chat__ws_closed(chat_ws_conn *c);
void chat__http_closed(chat_http_req *req); /* a held poll's client went away */
/* A held poll may write: fill its response from the session's queue. */
void chat__eio_poll_writeable(chat_http_req *req);

/* The Socket.IO state of one Engine.IO session (owned by sock.c, stored in the session). */
#define SIO_MAX_ATTACHMENTS 16
#define SIO_MAX_NAMESPACES 8
typedef struct chat_sio_state {
    chat_sock *socks[SIO_MAX_NAMESPACES]; /* one per connected namespace */
    sio_packet pending;       /* a binary packet waiting for its attachments */
    chat_buf att[SIO_MAX_ATTACHMENTS];
    size_t att_have;
} chat_sio_state;
chat_sio_state *chat__session_sio(chat_session *s);
chat_runtime *chat__session_rt(chat_session *s);

/* Queue a packet to the session's client. Adds its own reference to f. */
void chat__session_send(chat_session *s, chat_frame *f);
void chat__session_close(chat_session *s, const char *reason);
const char *chat__session_peer(chat_session *s);
/* 20 random base64url characters and a NUL: session and socket ids. */
void chat__random_id(char out[21]);
void chat__sessions_close_all(chat_runtime *rt);

/* ---- Socket.IO sockets (sock.c) ---- */
struct chat_sock {
    chat_runtime *rt;
    chat_session *session; /* NULL once disconnected */
    int refs;
    int connected; /* CONNECT answered */
    char id[24];   /* Socket.IO socket id */
    char nsp[SIO_NSP_MAX];
    char user_id[25]; /* "" for an anonymous socket (namespaces that allow it) */
    char username[40];
    chat_user_state *user; /* "/" sockets: the user's local state */
    chat_vec rooms;        /* chat_room_state* this socket receives */
    uint32_t mark;
};

/* Engine.IO message (text or binary) from a session. Returns -1 when the packet is
 * invalid: the session must be closed (the protocol's answer to a parse error). */
int chat__sock_on_message(chat_session *s, const uint8_t *data, size_t len, int binary);
void chat__sock_session_closed(chat_session *s, const char *reason);
/* Called by the domain once the socket's user and rooms are loaded: answers CONNECT. */
void chat__sock_connected(chat_sock *k);
/* Refuses the CONNECT with CONNECT_ERROR {message} and forgets the socket. */
void chat__sock_refuse(chat_sock *k, const char *message);
void chat__sock_ref(chat_sock *k);
void chat__sock_unref(chat_sock *k);
/* Emits an event to one socket: data is the argument array after the event name
 * (borrowed). */
void chat__sock_emit(chat_sock *k, const char *event, json_t *arg);
/* Like chat__sock_emit, but {"$binary": base64} values in arg go out as binary attachments
 * (a BINARY_EVENT). Only for emits from scripts: clients cannot make the server send
 * binary by storing such objects. */
void chat__sock_emit_binary(chat_sock *k, const char *event, json_t *arg);
/* Answers an ack id (no-op for ack_id < 0). data: the one ack argument (borrowed). */
void chat__sock_ack(chat_sock *k, int64_t ack_id, json_t *arg);
/* The failure answer: through the ack when the client asked for one, else an `error`
 * event {event, error:{code,message}}. */
void chat__sock_fail(chat_sock *k, const char *event, int64_t ack_id, int err,
                     const char *message);

/* ---- the chat domain (domain.c) ---- */
struct chat_user_state {
    char id[25];
    chat_vec socks;  /* local connected sockets */
    chat_vec rooms;  /* chat_room_state* the user belongs to (with local subscribers) */
};

struct chat_room_state {
    char id[25];
    char channel[48]; /* "room:<id>:messages" */
    chat_vec socks;   /* local sockets subscribed */
    int users;        /* local users holding it in their rooms */
    json_t *room;     /* the room as last loaded or changed here, for policy hooks */
};

/* The socket finished authentication (user_id NULL: anonymous, on a namespace that allows
 * it): run the connect hooks, load the user's rooms ("/"), then answer CONNECT. */
void chat__domain_connect(chat_sock *k, const char *user_id, json_t *auth);
void chat__domain_disconnect(chat_sock *k, const char *reason);
/* A client event; data is the whole argument array (borrowed) and data[0] the name. */
void chat__domain_event(chat_sock *k, const char *event, json_t *args, int64_t ack_id);
/* A message from the bus. */
void chat__domain_bus_message(const char *channel, const char *data, size_t len, void *arg);

/* Actions for scripts (no policy hooks run for them). cb gets the room, user or message. */
void chat__domain_emit_room(chat_runtime *rt, const char *room_id, const char *event,
                            json_t *payload);
int chat__domain_emit_user(chat_runtime *rt, const char *user_id, const char *event,
                           json_t *payload);
int chat__domain_emit_socket(chat_runtime *rt, const char *sock_id, const char *event,
                             json_t *payload);
void chat__domain_join(chat_runtime *rt, const char *room_id, const char *user_id,
                       chat_store_cb cb, void *arg);
void chat__domain_leave(chat_runtime *rt, const char *room_id, const char *user_id,
                        chat_store_cb cb, void *arg);
void chat__domain_ensure_user(chat_runtime *rt, const char *username, chat_store_cb cb,
                              void *arg);
void chat__domain_send_as(chat_runtime *rt, const char *user_id, const char *room_id,
                          const char *content, chat_store_cb cb, void *arg);
/* Borrows payload ({name, type, participants, settings}, as room:create). */
void chat__domain_create_room(chat_runtime *rt, const char *user_id, json_t *payload,
                              chat_store_cb cb, void *arg);

/* REST handlers: the request is authenticated when user_id is non-NULL. */
void chat__rest_register(chat_http_req *req, const char *user_id);
void chat__rest_login(chat_http_req *req, const char *user_id);
void chat__rest_me(chat_http_req *req, const char *user_id);
void chat__rest_rooms_list(chat_http_req *req, const char *user_id);
void chat__rest_rooms_create(chat_http_req *req, const char *user_id);
void chat__rest_messages(chat_http_req *req, const char *user_id);
void chat__rest_healthz(chat_http_req *req, const char *user_id);
void chat__rest_readyz(chat_http_req *req, const char *user_id);
void chat__rest_metrics(chat_http_req *req, const char *user_id);

/* static.c: the web page's files. start: checks the directory (a missing one is logged
 * once, and nothing is served). serve: 0 when it answers the request (now or from the
 * thread pool), CHAT_ENOTFOUND when the path is not one it serves. */
int chat__static_start(chat_runtime *rt);
void chat__static_free(chat_runtime *rt);
int chat__static_serve(chat_http_req *req);

/* net.c */
int chat__net_start(chat_runtime *rt);
void chat__net_stop(chat_runtime *rt);
void chat__net_free(chat_runtime *rt); /* after the loop ran the closes */

/* config.c: "host:port" */
int chat__parse_listen(const char *s, char *host, size_t hostlen, int *port);

#endif
