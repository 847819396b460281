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
#include "frame.h"
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
    /* the seams: what each layer registered with the one below at start */
    const struct chat_session_handler *session_handler; /* sock.c, for session.c */
    const struct chat_sock_handler *sock_handler;       /* the domain, for sock.c */
    const struct chat_actions *actions;                 /* the domain, for scripts */
    chat_vec http_routes;                /* const chat_http_route*, by their owners */
    int (*http_fallback)(chat_http_req *req); /* static files: CHAT_ENOTFOUND if not its */
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

/* The route table: each owner adds its routes at start (REST from rest.c, /socket.io/ from
 * session.c, the operator's endpoints from ops.c). */
#define CHAT_HTTP_ANY (-1)
typedef void (*chat_http_route_fn)(chat_http_req *req, const char *user_id);
typedef struct chat_http_route {
    int method; /* CHAT_HTTP_GET.. (HEAD is served as GET), or CHAT_HTTP_ANY */
    const char *path;
    int auth; /* 1: needs a valid bearer token, whose user id fn gets */
    chat_http_route_fn fn;
} chat_http_route;
/* Borrows routes (a static table). 0 or CHAT_ENOMEM. */
int chat__http_routes_add(chat_runtime *rt, const chat_http_route *routes, size_t n);
/* For paths no route names: fn answers, or returns CHAT_ENOTFOUND for a 404. */
void chat__http_set_fallback(chat_runtime *rt, int (*fn)(chat_http_req *req));

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

/* The socket layer's handler, registered at start (chat__session_start). */
typedef struct chat_session_handler {
    /* An Engine.IO message (text or binary). -1: the packet is invalid and the session is
     * closed (the protocol's answer to a parse error). */
    int (*on_message)(chat_session *s, const uint8_t *data, size_t len, int binary);
    /* The session is closing: let go of it (its upper state too). */
    void (*on_close)(chat_session *s, const char *reason);
} chat_session_handler;
/* Registers h and the /socket.io/ routes. */
int chat__session_start(chat_runtime *rt, const chat_session_handler *h);
/* The socket layer's state for this session (NULL until it sets one). */
void *chat__session_upper(chat_session *s);
void chat__session_set_upper(chat_session *s, void *upper);
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

/* The domain's handler, registered at start (chat__sock_start). */
typedef struct chat_sock_handler {
    /* Whether nsp (not "/") is open; *anonymous: tokens are optional there. */
    int (*namespace_open)(chat_runtime *rt, const char *nsp, int *anonymous);
    /* The socket passed authentication (user_id NULL: anonymous); takes auth. Answer with
     * chat__sock_connected or chat__sock_refuse. */
    void (*on_connect)(chat_sock *k, const char *user_id, json_t *auth);
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

/* ---- what scripts may do to the chat (the domain registers it at start; lua_chat.c
 * calls it). No policy hooks run for these; cb gets the room, user or message. ---- */
typedef struct chat_actions {
    void (*emit_room)(chat_runtime *rt, const char *room_id, const char *event,
                      json_t *payload);
    /* 1 when sent (user) or when the socket is connected here (socket) */
    int (*emit_user)(chat_runtime *rt, const char *user_id, const char *event, json_t *payload);
    int (*emit_socket)(chat_runtime *rt, const char *sock_id, const char *event,
                       json_t *payload);
    void (*join)(chat_runtime *rt, const char *room_id, const char *user_id, chat_store_cb cb,
                 void *arg);
    void (*leave)(chat_runtime *rt, const char *room_id, const char *user_id, chat_store_cb cb,
                  void *arg);
    void (*ensure_user)(chat_runtime *rt, const char *username, chat_store_cb cb, void *arg);
    void (*send_as)(chat_runtime *rt, const char *user_id, const char *room_id,
                    const char *content, chat_store_cb cb, void *arg);
    /* borrows payload ({name, type, participants, settings}, as room:create) */
    void (*create_room)(chat_runtime *rt, const char *user_id, json_t *payload,
                        chat_store_cb cb, void *arg);
} chat_actions;

/* static.c: the web page's files. start: checks the directory (a missing one is logged
 * once, and nothing is served). serve: 0 when it answers the request (now or from the
 * thread pool), CHAT_ENOTFOUND when the path is not one it serves. */
int chat__static_start(chat_runtime *rt);
void chat__static_free(chat_runtime *rt);
int chat__static_serve(chat_http_req *req);

/* ops.c: registers the operator's endpoints: /healthz, /readyz, /metrics, /admin/reload. */
int chat__ops_start(chat_runtime *rt);

/* net.c */
int chat__net_start(chat_runtime *rt);
void chat__net_stop(chat_runtime *rt);
void chat__net_free(chat_runtime *rt); /* after the loop ran the closes */

/* config.c: "host:port" */
int chat__parse_listen(const char *s, char *host, size_t hostlen, int *port);

#endif
