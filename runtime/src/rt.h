/* rt.h: the runtime object every layer hangs off, what scripts may do to the chat
 * (chat_actions), and the start/stop of the runtime's parts. Each layer's own objects are in
 * its header: frame.h, http.h, session.h, sock.h, domain.h. Loop thread only. */
#ifndef CHAT_RT_H
#define CHAT_RT_H

#include <jansson.h>
#include <stdint.h>
#include <uv.h>

#include "buf.h"
#include "bus.h"
#include "chat.h"
#include "frame.h"
#include "kv.h"
#include "map.h"
#include "store.h"

#define CHAT_NODE_ID_MAX 17

typedef struct chat_http_req chat_http_req;

/* ---- the runtime ---- */
typedef struct chat_stats {
    uint64_t connections_total;
    uint64_t messages_stored;
    uint64_t frames_out;
    uint64_t bad_packets;
    uint64_t login_limited_account; /* logins refused: too many failures for the account */
    uint64_t login_limited_ip;      /* ... from the client address */
    uint64_t register_limited;      /* registrations refused: too many from the address */
    uint64_t presence_nodes_reaped; /* dead nodes whose presence this node cleared */
    uint64_t presence_users_reaped; /* users this node announced offline for a dead node */
    uint64_t offline_push[5]; /* notifications.c: mentions of a user on no node, by outcome */
    uint64_t uploads_refused[8]; /* uploads.c: refused uploads and downloads, by reason */
    uint64_t reactions_refused;  /* message_ops.c: at reactions_waiting_max for one message */
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

    struct lws_context *lws; /* net.c */
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
    const struct chat_sock_handler *sock_handler;       /* the domain, for sock.c */
    const struct chat_actions *actions;                 /* the domain, for scripts */
    chat_vec http_routes;                /* const chat_http_route*, by their owners */
    int (*http_fallback)(chat_http_req *req); /* static files: CHAT_ENOTFOUND if not its */
    struct chat_presence *presence; /* presence.c: the heartbeat with Redis, else NULL */
    struct chat_limits *limits; /* bounds.c: connection bounds and their counters */
    struct chat_stats_reg *metrics;   /* stats.c: what /metrics shows */
    struct chat_cluster *cluster;     /* cluster.c: the other nodes, and ops for all of them */
    struct chat_admin *admin;         /* admin.c: the admin API's tokens */
    struct chat_reload *reload;       /* reload.c: cluster reloads in flight */
    struct chat_sanctions *sanctions; /* sanctions.c: disabled accounts, bans, mutes */
    /* set by sanctions.c: 1 (and why) when a token's user may not use REST (disabled) */
    int (*http_user_refused)(chat_runtime *rt, const char *user_id, char *why, size_t len);
    chat_vec session_mounts; /* session.c: the Engine.IO endpoints, each with its upper layer */
    const struct chat_eio_actions *eio_actions; /* eio_script.c, for lua_eio.c */
    /* the graceful stop (runtime.c) and what it waits for */
    struct runtime_drain *drain; /* NULL: not stopping, or done */
    int calls_pending;           /* domain calls not answered yet (call.c) */
    int http_reqs;               /* HTTP requests not answered and written yet (net.c, http.c) */
    int ws_conns;                /* websocket connections established and not closed (session.c) */
    struct chat_jobs *jobs; /* the job queue (jobs.h) */
    struct chat_session_flush *session_flush; /* session.c: websockets with frames to write */
    chat_map reacting; /* message_ops.c: message id -> its reactions in flight, in order */
};

/* ---- what scripts may do on the plain Engine.IO endpoint (eio_script.c registers it at
 * start; lua_eio.c calls it). 0, or CHAT_ENOTFOUND when sid is no open session of it. ---- */
typedef struct chat_eio_actions {
    int (*send)(chat_runtime *rt, const char *sid, const void *data, size_t len, int binary);
    int (*close)(chat_runtime *rt, const char *sid);
} chat_eio_actions;

/* eio_script.c: mounts the plain Engine.IO endpoint (cfg.eio_path) for the scripts. */
int chat__eio_script_start(chat_runtime *rt);

/* ---- what scripts may do to the chat (the domain registers it at start; lua_chat.c
 * calls it). No policy hooks run for these; cb gets the room, user or message. ---- */
typedef struct chat_actions {
    /* emits: args is the event's arguments after its name, a JSON array (borrowed), any
     * number of them; {"$binary": base64} values go out as binary attachments */
    void (*emit_room)(chat_runtime *rt, const char *room_id, const char *event, json_t *args);
    /* 1 when sent (user) or when the socket is connected here (socket) */
    int (*emit_user)(chat_runtime *rt, const char *user_id, const char *event, json_t *args);
    int (*emit_socket)(chat_runtime *rt, const char *sock_id, const char *event,
                       json_t *args);
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

/* ops.c: registers the operator's endpoints: /healthz, /readyz, /metrics (admin.c: /admin/). */
int chat__ops_start(chat_runtime *rt);

/* net.c */
int chat__net_start(chat_runtime *rt);
void chat__net_stop(chat_runtime *rt);
void chat__net_free(chat_runtime *rt); /* after the loop ran the closes */
extern const lws_retry_bo_t chat__net_no_validity; /* the vhost's policy: no lws validity timer */
int chat__net_fd_limit(long nofile, long max_conns); /* lws's fd table: bound + others, <= nofile */

/* config.c: "host:port" */
int chat__parse_listen(const char *s, char *host, size_t hostlen, int *port);

#endif
