/* bus.h: cross-node publish/subscribe. In-process here (one node); Redis in a later backend.
 * Every node subscribes to the channels its local sockets need and receives what any node
 * publishes there, including itself. */
#ifndef CHAT_BUS_H
#define CHAT_BUS_H

#include <stddef.h>
#include <uv.h>

typedef struct chat_bus chat_bus;

/* Called on the loop for each message on a subscribed channel; data is borrowed. */
typedef void (*chat_bus_cb)(const char *channel, const char *data, size_t len, void *arg);

int chat__bus_new(chat_bus **out, uv_loop_t *loop, chat_bus_cb cb, void *arg);
void chat__bus_free(chat_bus *bus);
/* Subscriptions are counted: n subscribes need n unsubscribes. 0 or CHAT_ENOMEM. */
int chat__bus_subscribe(chat_bus *bus, const char *channel);
void chat__bus_unsubscribe(chat_bus *bus, const char *channel);
/* Copies data. Delivery to this node's subscribers happens before publish returns. */
int chat__bus_publish(chat_bus *bus, const char *channel, const char *data, size_t len);

#endif
