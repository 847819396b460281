/* bus_redis.c: the bus across nodes through Redis pub/sub (CHAT_REDIS_URL).
 *
 * Two connections: a subscriber (SUBSCRIBE puts a connection in a mode where nothing else may
 * be sent) and a publisher. Channels are the domain's own names (room:{roomId}:messages,
 * presence:updates, user:{userId}:notify). Each payload is sent as
 *     "@" <16 hex: this node's id> "\n" <data>
 * so a node recognises its own messages when Redis echoes them back and drops them: the
 * generic half (bus.c) has already delivered them locally, before publish returned, which is
 * what keeps same-node delivery going while Redis is down. A payload without that envelope
 * (published by something else, e.g. a script through redis-cli) is delivered whole.
 *
 * Room and user channels are not subscribed one by one: the subscriber takes the patterns
 * room:*:messages and user:*:notify once (as Socket.IO's Redis adapter takes one pattern for
 * every broadcast), and bus.c drops what no local socket listens to. A SUBSCRIBE sent when a
 * node learns of a new member would race the first message to that room: node A publishes
 * "user U joined room R", then R's first message; node B only asks for R once it has read
 * the first, so the second was gone. With the patterns both come down B's one connection in
 * A's order, and B's local subscription (synchronous) precedes the message.
 *
 * While the subscriber is down nothing is lost from the local view: the channel set lives in
 * bus.c, and every channel is subscribed again as soon as the connection is back. */
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "chat.h"
#include "log.h"
#include "redis_conn.h"

#define BR_NODE_LEN 16
#define BR_PREFIX_LEN (1 + BR_NODE_LEN + 1)
#define BR_RESUB_BATCH 256 /* channels per SUBSCRIBE after a reconnect */

static const char *br_patterns[] = {"room:*:messages", "user:*:notify"};
#define BR_NPATTERNS ((int)(sizeof br_patterns / sizeof br_patterns[0]))

/* 1 when one of the patterns covers channel: no SUBSCRIBE of its own. */
static int br_patterned(const char *channel)
{
    for (int i = 0; i < BR_NPATTERNS; i++) {
        if (fnmatch(br_patterns[i], channel, 0) == 0) {
            return 1;
        }
    }
    return 0;
}

typedef struct bus_redis {
    chat_bus *bus;
    chat_redis *sub;
    chat_redis *pub;
    char node[BR_NODE_LEN + 1];
    char *buf; /* envelope scratch, reused */
    size_t cap;
    /* resubscription batch */
    const char *batch[BR_RESUB_BATCH];
    int nbatch;
    int patterns_confirmed; /* on this subscriber connection: ready once all are */
} bus_redis;

static void br_message(chat_redis *r, redisReply *reply, void *arg)
{
    bus_redis *b = arg;
    (void)r;
    /* ["message", channel, payload] or ["pmessage", pattern, channel, payload];
     * ["psubscribe", pattern, count] confirms a pattern; other confirmations need nothing */
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements < 3 ||
        reply->element[0]->type != REDIS_REPLY_STRING) {
        return;
    }
    const char *kind = reply->element[0]->str;
    size_t first = strcasecmp(kind, "message") == 0 ? 1 : strcasecmp(kind, "pmessage") == 0 ? 2 : 0;
    if (strcasecmp(kind, "psubscribe") == 0) {
        b->patterns_confirmed++;
        return;
    }
    if (!first || reply->elements != first + 2 ||
        reply->element[first]->type != REDIS_REPLY_STRING ||
        reply->element[first + 1]->type != REDIS_REPLY_STRING) {
        return;
    }
    const char *channel = reply->element[first]->str;
    const char *data = reply->element[first + 1]->str;
    size_t len = reply->element[first + 1]->len;
    if (len >= BR_PREFIX_LEN && data[0] == '@' && data[BR_PREFIX_LEN - 1] == '\n') {
        if (memcmp(data + 1, b->node, BR_NODE_LEN) == 0) {
            return; /* our own: delivered locally when it was published */
        }
        data += BR_PREFIX_LEN;
        len -= BR_PREFIX_LEN;
    }
    chat__bus_deliver(b->bus, channel, data, len);
}

static void br_flush(bus_redis *b)
{
    if (b->nbatch) {
        chat__redis_subscribe(b->sub, "SUBSCRIBE", b->nbatch, b->batch, NULL, br_message, b);
        b->nbatch = 0;
    }
}

static void br_batch_add(const char *channel, void *arg)
{
    bus_redis *b = arg;
    if (br_patterned(channel)) {
        return;
    }
    b->batch[b->nbatch++] = channel;
    if (b->nbatch == BR_RESUB_BATCH) {
        br_flush(b);
    }
}

static void br_sub_state(chat_redis *r, int up, void *arg)
{
    bus_redis *b = arg;
    (void)r;
    if (up) {
        /* a fresh connection knows no channel: the patterns, then every other channel this
         * node needs */
        b->patterns_confirmed = 0;
        chat__redis_subscribe(b->sub, "PSUBSCRIBE", BR_NPATTERNS, br_patterns, NULL, br_message,
                              b);
        b->nbatch = 0;
        chat__bus_foreach(b->bus, br_batch_add, b);
        br_flush(b);
    }
}

static int br_open(void **impl, chat_bus *bus, uv_loop_t *loop, const char *target)
{
    bus_redis *b = calloc(1, sizeof *b);
    int err = CHAT_ENOMEM;
    uint8_t raw[BR_NODE_LEN / 2];

    *impl = NULL;
    if (!b) {
        goto fail;
    }
    b->bus = bus;
    err = CHAT_EINTERNAL;
    if (uv_random(NULL, NULL, raw, sizeof raw, 0, NULL)) {
        goto fail;
    }
    for (size_t i = 0; i < sizeof raw; i++) {
        snprintf(b->node + 2 * i, 3, "%02x", raw[i]);
    }
    chat_redis_opts so = {.url = target,
                          .role = "bus-subscribe",
                          .subscriber = 1,
                          .on_state = br_sub_state,
                          .arg = b};
    chat_redis_opts po = {.url = target, .role = "bus-publish"};
    if ((err = chat__redis_new(&b->sub, loop, &so)) ||
        (err = chat__redis_new(&b->pub, loop, &po))) {
        goto fail;
    }
    *impl = b;
    return 0;
fail:
    if (b) {
        chat__redis_free(b->sub);
        free(b);
    }
    return err;
}

static void br_close(void *impl)
{
    bus_redis *b = impl;
    if (!b) {
        return;
    }
    chat__redis_free(b->sub);
    chat__redis_free(b->pub);
    free(b->buf);
    free(b);
}

static int br_subscribe(void *impl, const char *channel)
{
    bus_redis *b = impl;
    if (br_patterned(channel)) {
        return 0;
    }
    int err = chat__redis_subscribe(b->sub, "SUBSCRIBE", 1, &channel, NULL, br_message, b);
    /* down: the reconnect subscribes it with the rest */
    return err == CHAT_EUNAVAIL ? 0 : err;
}

static void br_unsubscribe(void *impl, const char *channel)
{
    bus_redis *b = impl;
    if (br_patterned(channel)) {
        return;
    }
    /* down: nothing to undo, the reconnect will not subscribe it. A quick unsubscribe and
     * subscribe again is safe: hiredis counts the pending subscribes per channel. */
    chat__redis_subscribe(b->sub, "UNSUBSCRIBE", 1, &channel, NULL, br_message, b);
}

static int br_publish(void *impl, const char *channel, const char *data, size_t len)
{
    bus_redis *b = impl;
    if (!chat__redis_is_up(b->pub)) {
        return CHAT_EUNAVAIL; /* delivered on this node already; other nodes miss it */
    }
    size_t need = BR_PREFIX_LEN + len;
    if (need > b->cap) {
        size_t cap = need < 4096 ? 4096 : need * 2;
        char *nb = realloc(b->buf, cap);
        if (!nb) {
            return CHAT_ENOMEM;
        }
        b->buf = nb;
        b->cap = cap;
    }
    b->buf[0] = '@';
    memcpy(b->buf + 1, b->node, BR_NODE_LEN);
    b->buf[BR_PREFIX_LEN - 1] = '\n';
    memcpy(b->buf + BR_PREFIX_LEN, data, len);
    const char *argv[3] = {"PUBLISH", channel, b->buf};
    size_t lens[3] = {7, strlen(channel), need};
    /* hiredis copies the command into its output buffer: the scratch is free again */
    return chat__redis_command(b->pub, 3, argv, lens, NULL, NULL);
}

static int br_ready(void *impl)
{
    bus_redis *b = impl;
    return chat__redis_is_up(b->sub) && chat__redis_is_up(b->pub) &&
                   b->patterns_confirmed >= BR_NPATTERNS
               ? 0
               : CHAT_EUNAVAIL;
}

const chat_bus_backend chat__bus_redis = {
    .name = "redis",
    .open = br_open,
    .close = br_close,
    .subscribe = br_subscribe,
    .unsubscribe = br_unsubscribe,
    .publish = br_publish,
    .ready = br_ready,
};
