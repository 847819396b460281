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
};

int chat__bus_new(chat_bus **out, uv_loop_t *loop, chat_bus_cb cb, void *arg)
{
    (void)loop;
    chat_bus *bus = calloc(1, sizeof *bus);
    if (!bus) {
        return CHAT_ENOMEM;
    }
    bus->cb = cb;
    bus->arg = arg;
    *out = bus;
    return 0;
}

void chat__bus_free(chat_bus *bus)
{
    if (!bus) {
        return;
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
    return 0;
}

void chat__bus_unsubscribe(chat_bus *bus, const char *channel)
{
    bus_sub *s = chat__map_get(&bus->subs, channel);
    if (s && --s->count == 0) {
        chat__map_del(&bus->subs, channel);
        free(s);
    }
}

int chat__bus_publish(chat_bus *bus, const char *channel, const char *data, size_t len)
{
    if (chat__map_get(&bus->subs, channel)) {
        bus->cb(channel, data, len, bus->arg);
    }
    return 0;
}
