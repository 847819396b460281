/* http.h: HTTP requests and responses (http.c), filled by net.c, and the route table that
 * each owner adds its routes to at start. Loop thread only. */
#ifndef CHAT_HTTP_H
#define CHAT_HTTP_H

#include <jansson.h>
#include <libwebsockets.h>
#include <stddef.h>

#include "buf.h"
#include "chat.h"

typedef struct chat_http_req chat_http_req;
typedef struct chat_session chat_session;

enum { CHAT_HTTP_GET, CHAT_HTTP_POST, CHAT_HTTP_OPTIONS, CHAT_HTTP_HEAD, CHAT_HTTP_OTHER,
       CHAT_HTTP_PATCH, CHAT_HTTP_DELETE };

struct chat_http_req {
    chat_runtime *rt;
    struct lws *wsi; /* NULL once the client went away */
    int refs;
    int method;
    char path[256];
    char *query; /* raw "a=b&c=d", url-decoded per pair by chat__http_query */
    char *authorization;
    char *if_none_match;
    char *content_type_in; /* the request's Content-Type, or NULL */
    chat_buf body;
    size_t body_seen; /* bytes offered, including those dropped past the limit */
    int body_too_large;
    /* response */
    int responded;
    int status;
    const char *content_type;
    char extra_headers[512]; /* "name: value\r\n" lines */
    chat_buf resp;
    /* Engine.IO polling GET held open for packets */
    chat_session *poll_session;
    int close_after; /* answer with Connection: close, then end the connection */
    /* set by chat__http_dispatch: for the log, and X-Request-Id on the answer */
    char request_id[72]; /* the client's X-Request-Id when sane, else 16 random hex */
    char peer[64];
    uint64_t started;    /* uv_hrtime at dispatch */
    int log_level;       /* of the request's log line; -1: none (Engine.IO polling) */
    int admin_door;      /* came in on CHAT_ADMIN_LISTEN (set by net.c) */
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
/* An integer query parameter in min..max, def when absent, into *out: 0, or -1 after answering
 * 400 "<name> must be between <min> and <max>". */
int chat__http_query_int(chat_http_req *req, const char *name, int def, int min, int max,
                         int *out);
/* The auth_failed log line (never the token or password): door "rest", "admin", "login". */
void chat__http_auth_failed(chat_http_req *req, const char *door, const char *reason,
                            const char *login);
/* The client address of a request: the TCP peer, or X-Forwarded-For's last entry when the
 * runtime trusts its proxy. */
void chat__peer_address(chat_runtime *rt, struct lws *wsi, char *out, size_t len);
void chat__http_req_ref(chat_http_req *req);
void chat__http_req_unref(chat_http_req *req);
void chat__http_dispatch(chat_http_req *req);

/* The route table: each owner adds its routes at start (REST from rest.c, /socket.io/ from
 * session.c, the operator's endpoints from ops.c). */
#define CHAT_HTTP_ANY (-1)
typedef void (*chat_http_route_fn)(chat_http_req *req, const char *user_id);
typedef struct chat_http_route {
    int method; /* CHAT_HTTP_GET.. (HEAD is served as GET), or CHAT_HTTP_ANY */
    const char *path; /* exact, or ending in "/" and "*": every path with that prefix */
    int auth; /* 1: needs a valid bearer token, whose user id fn gets */
    chat_http_route_fn fn;
} chat_http_route;
/* Borrows routes (a static table). 0 or CHAT_ENOMEM. */
int chat__http_routes_add(chat_runtime *rt, const chat_http_route *routes, size_t n);
/* For paths no route names: fn answers, or returns CHAT_ENOTFOUND for a 404. */
void chat__http_set_fallback(chat_runtime *rt, int (*fn)(chat_http_req *req));

#endif
