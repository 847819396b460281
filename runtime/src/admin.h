/* admin.h: the admin API (docs/admin-openapi.yaml): paths under /admin/, bearer tokens from
 * CHAT_ADMIN_TOKEN (named "admin") and CHAT_ADMIN_TOKENS ("name=token,..."), every action
 * logged with the token's name. POST /admin/reload starts the cluster reload (reload.h).
 * Loop thread only. */
#ifndef CHAT_ADMIN_H
#define CHAT_ADMIN_H

typedef struct chat_runtime chat_runtime;
typedef struct chat_http_req chat_http_req;

int chat__admin_start(chat_runtime *rt); /* after the cluster started */
void chat__admin_stop(chat_runtime *rt);
void chat__admin_free(chat_runtime *rt);

/* A request whose path starts with /admin/ (or is /admin). */
void chat__admin_http(chat_http_req *req);


#endif
