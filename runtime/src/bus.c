/* bus.c: the backend-independent half of the bus (subscription counts, local delivery) and
 * the in-process backend, which has nothing to add: one node is every node. */
#include "bus.h"

#include <stdlib.h>
#include <string.h>

#include "chat.h"
#include "map.h"

typedef struct bus_sub {
    int count;
    char channel[];
} bus_sub;

struct chat_bus {
    chat_map subs;
    chat_bus_cb cb;
    void *arg;
    const chat_bus_backend *be;
    void *impl;
};

const chat_bus_backend chat__bus_local = {.name = "local"};

int chat__bus_open(chat_bus **out, uv_loop_t *loop, const chat_bus_backend *be, const char *target,
                   chat_bus_cb cb, void *arg)
{
    if (!out || !be || !cb) {
        return CHAT_EINVAL;
    }
    *out = NULL;
    chat_bus *bus = calloc(1, sizeof *bus);
    if (!bus) {
        return CHAT_ENOMEM;
    }
    bus->cb = cb;
    bus->arg = arg;
    bus->be = be;
    if (be->open) {
        int err = be->open(&bus->impl, bus, loop, target);
        if (err) {
            free(bus);
            return err;
        }
    }
    *out = bus;
    return 0;
}

int chat__bus_new(chat_bus **out, uv_loop_t *loop, chat_bus_cb cb, void *arg)
{
    return chat__bus_open(out, loop, &chat__bus_local, NULL, cb, arg);
}

void chat__bus_free(chat_bus *bus)
{
    if (!bus) {
        return;
    }
    if (bus->be->close) {
        bus->be->close(bus->impl);
    }
    bus_sub *s;
    for (size_t i = 0; (s = chat__map_next(&bus->subs, &i));) {
        free(s);
    }
    chat__map_free(&bus->subs);
    free(bus);
}

int chat__bus_subscribe(chat_bus *bus, const char *channel)
{
    bus_sub *s = chat__map_get(&bus->subs, channel);
    if (s) {
        s->count++;
        return 0;
    }
    size_t n = strlen(channel);
    s = malloc(sizeof *s + n + 1);
    if (!s) {
        return CHAT_ENOMEM;
    }
    s->count = 1;
    memcpy(s->channel, channel, n + 1);
    if (chat__map_put(&bus->subs, s->channel, s)) {
        free(s);
        return CHAT_ENOMEM;
    }
    if (bus->be->subscribe && bus->be->subscribe(bus->impl, s->channel) == CHAT_ENOMEM) {
        /* other failures (Redis down) are repaired by the backend when it reconnects */
        chat__map_del(&bus->subs, s->channel);
        free(s);
        return CHAT_ENOMEM;
    }
    return 0;
}

void chat__bus_unsubscribe(chat_bus *bus, const char *channel)
{
    bus_sub *s = chat__map_get(&bus->subs, channel);
    if (s && --s->count == 0) {
        chat__map_del(&bus->subs, channel);
        if (bus->be->unsubscribe) {
            bus->be->unsubscribe(bus->impl, s->channel);
        }
        free(s);
    }
}

int chat__bus_publish(chat_bus *bus, const char *channel, const char *data, size_t len)
{
    /* local subscribers first and at once: they must not wait for (or lose) a round trip */
    chat__bus_deliver(bus, channel, data, len);
    return bus->be->publish ? bus->be->publish(bus->impl, channel, data, len) : 0;
}

int chat__bus_publish_remote(chat_bus *bus, const char *channel, const char *data, size_t len)
{
    return bus->be->publish ? bus->be->publish(bus->impl, channel, data, len) : 0;
}

void chat__bus_deliver(chat_bus *bus, const char *channel, const char *data, size_t len)
{
    if (chat__map_get(&bus->subs, channel)) {
        bus->cb(channel, data, len, bus->arg);
    }
}

int chat__bus_ready(const chat_bus *bus)
{
    if (!bus) {
        return CHAT_EUNAVAIL;
    }
    return bus->be->ready ? bus->be->ready(bus->impl) : 0;
}

const char *chat__bus_backend_name(const chat_bus *bus)
{
    return bus->be->name;
}

void chat__bus_foreach(const chat_bus *bus, void (*fn)(const char *channel, void *arg), void *arg)
{
    bus_sub *s;
    for (size_t i = 0; (s = chat__map_next(&bus->subs, &i));) {
        fn(s->channel, arg);
    }
}

int chat__bus_subscribed(const chat_bus *bus, const char *channel)
{
    return chat__map_get(&bus->subs, channel) != NULL;
}
