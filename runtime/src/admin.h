/* admin.h: the admin API (docs/admin-openapi.yaml): paths under /admin/, bearer tokens from
 * CHAT_ADMIN_TOKEN (named "admin") and CHAT_ADMIN_TOKENS ("name=token,..."), every action
 * logged with the token's name. Also the cluster reload: every live node prepares the new
 * scripts, then all commit or all abort. Loop thread only. */
#ifndef CHAT_ADMIN_H
#define CHAT_ADMIN_H

typedef struct chat_runtime chat_runtime;
typedef struct chat_http_req chat_http_req;

int chat__admin_start(chat_runtime *rt); /* after the cluster started */
void chat__admin_stop(chat_runtime *rt);
void chat__admin_free(chat_runtime *rt);

/* A request whose path starts with /admin/ (or is /admin). */
void chat__admin_http(chat_http_req *req);

/* Starts a reload of every node (as POST /admin/reload does); by names who asked ("sighup",
 * "watcher", a token's name). The result is logged (event reload_done / reload_refused). */
void chat__admin_reload_cluster(chat_runtime *rt, const char *by);

#endif
