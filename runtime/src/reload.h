/* reload.h: the cluster reload. The starting node publishes its scripts; every live node
 * prepares them (loads without serving) and votes; with every yes all commit at one version,
 * with any no or silence all abort and keep the old scripts. Loop thread only. */
#ifndef CHAT_RELOAD_H
#define CHAT_RELOAD_H

typedef struct chat_runtime chat_runtime;
typedef struct chat_reload chat_reload;

int chat__reload_start(chat_runtime *rt); /* after the cluster started */
void chat__reload_stop(chat_runtime *rt); /* reloads started here answer 503 */
void chat__reload_free(chat_runtime *rt);

/* The answer: an HTTP status and the body of POST /admin/reload (docs/admin-openapi.yaml),
 * which the callback takes. */
typedef struct json_t json_t;
typedef void (*chat_reload_cb)(int status, json_t *body, void *arg);

/* Starts a reload of every node. by names who asked ("sighup", "watcher", a token's name).
 * cb runs once with the result, possibly before this returns; with NULL the log is the
 * answer (event reload_done or reload_refused). */
void chat__reload_cluster(chat_runtime *rt, const char *by, chat_reload_cb cb, void *arg);

#endif
