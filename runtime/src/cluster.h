/* cluster.h: what the nodes of a cluster tell each other on the bus channel "cluster" (Redis
 * pub/sub when CHAT_REDIS_URL is set; in-process otherwise, a cluster of one):
 *   - a heartbeat every second carrying the node's stats, so any node can show them all
 *     (a node not heard from for CHAT_CLUSTER_DEAD_MS is gone);
 *   - operations every node applies at once (sanctions, system messages, reload phases),
 *     each a JSON object {"op": name, "from": node id, ...} handled by a table of handlers.
 * Loop thread only. */
#ifndef CHAT_CLUSTER_H
#define CHAT_CLUSTER_H

#include <jansson.h>
#include <stddef.h>

typedef struct chat_runtime chat_runtime;
typedef struct chat_cluster chat_cluster;

#define CHAT_CLUSTER_CHANNEL "cluster"
#define CHAT_CLUSTER_BEAT_MS 1000
#define CHAT_CLUSTER_DEAD_MS 3500

/* Subscribes and starts the heartbeat (after the node serves). 0 or CHAT_ENOMEM. */
int chat__cluster_start(chat_runtime *rt);
/* Stops the heartbeat (its timer closes on the loop); idempotent. */
void chat__cluster_stop(chat_runtime *rt);
/* After the loop ran the closes. */
void chat__cluster_free(chat_runtime *rt);

/* A message on the "cluster" channel (from the bus). */
void chat__cluster_bus_message(chat_runtime *rt, const char *data, size_t len);

/* Publishes op to every node, this one included (handled before this returns). msg: the
 * op's members (borrowed); "op" and "from" are added. 0, or CHAT_EUNAVAIL when other nodes
 * could not be reached (this node handled it), or CHAT_ENOMEM. */
int chat__cluster_publish(chat_runtime *rt, const char *op, json_t *msg);

/* An op's handler: msg is the whole message (borrowed). */
typedef void (*chat_cluster_fn)(chat_runtime *rt, json_t *msg);
/* Handlers for ops: a static table, registered once at start by their owner. */
typedef struct chat_cluster_op {
    const char *op;
    chat_cluster_fn fn;
} chat_cluster_op;
int chat__cluster_handle(chat_runtime *rt, const chat_cluster_op *ops, size_t n);

/* This node's stats as the heartbeat carries them (new reference). */
json_t *chat__cluster_node_stats(chat_runtime *rt);
/* Every live node's last stats (this one fresh), sorted by id: a new array. */
json_t *chat__cluster_nodes(chat_runtime *rt);
/* Sends this node's stats now (after a change the others should see at once). */
void chat__cluster_beat_now(chat_runtime *rt);
/* How many nodes are live (this one included). */
size_t chat__cluster_size(chat_runtime *rt);

#endif
