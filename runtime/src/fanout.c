/* fanout.c: how an event reaches every socket that should get it, on this node and the
 * others. Read top to bottom:
 *
 *   1. chat__fanout_room / chat__fanout_rooms encode the Socket.IO packet once, as the
 *      bus message "<room ids, comma-separated>\n<except>\n<Engine.IO packet>" (except is
 *      "-", "s:<socket id>" or "u:<user id>");
 *   2. deliver() turns the packet into one frame and queues it to each local socket of those
 *      rooms (each socket once, the excepted ones skipped), in call order, before returning;
 *   3. the same bytes go on the bus (room:{roomId}:messages, or presence:updates) for the
 *      other nodes only: the in-process bus has nobody to tell, and Redis does not bring a
 *      node its own publications back;
 *   4. another node's publication arrives in chat__fanout_receive, which parses the header
 *      and runs the same deliver().
 *
 * Order within a room: one node publishes in the order its events happen, delivers locally
 * at once and Redis keeps a connection's order, so every socket sees a room's events in the
 * order their node made them. Per-user control messages (user:{userId}:notify) take the same
 * two steps: applied here directly, published for the others. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster.h"
#include "domain_int.h"
#include "log.h"
#include "stats.h"

/* ---- 2. local delivery ---- */

/* Queues packet (one Engine.IO packet, encoded once) to every local socket in the listed
 * rooms, except the excepted ones. binary: the event [name, args...] to encode per socket
 * instead (a script's emit with binary values). */
static void deliver(chat_runtime *rt, const char *rooms, size_t rooms_len, const char *except,
                    const char *packet, size_t plen, json_t *binary)
{
    chat_frame *frame = NULL;
    uint32_t mark = ++rt->mark;
    size_t reached = 0;
    const char *end = rooms + rooms_len;
    for (const char *p = rooms; p < end;) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *stop = comma ? comma : end;
        char room_id[25];
        if (stop - p == 24) {
            memcpy(room_id, p, 24);
            room_id[24] = '\0';
            chat_room_state *r = chat__map_get(&rt->rooms, room_id);
            for (uint32_t i = 0; r && i < r->socks.len; i++) {
                chat_sock *k = r->socks.items[i];
                if (k->mark == mark || !k->session) {
                    continue;
                }
                k->mark = mark;
                if ((except[0] == 's' && strcmp(except + 2, k->id) == 0) ||
                    (except[0] == 'u' && strcmp(except + 2, k->user_id) == 0)) {
                    continue;
                }
                reached++;
                if (binary) {
                    chat__sock_emit_args(k, binary);
                    continue;
                }
                if (!frame && !(frame = chat__frame_new(packet, plen, 0))) {
                    return;
                }
                chat__sock_send_frame(k, frame);
            }
        }
        p = stop + 1;
    }
    chat__stats_broadcast(rt, reached);
    chat__frame_unref(frame);
}

/* ---- 1 and 3: encode once, deliver here, publish for the others ---- */

/* args: the whole event, [name, args...] (borrowed). */
static void fanout_event(chat_runtime *rt, const char *channel, const char *rooms_csv,
                         const char *except, json_t *args)
{
    chat_buf *b = &rt->pubbuf;
    size_t rooms_len = strlen(rooms_csv), head = rooms_len + strlen(except) + 2;
    chat__buf_reset(b);
    if (chat__buf_appendf(b, "%s\n%s\n4", rooms_csv, except) ||
        chat__sio_encode(b, SIO_EVENT, "/", -1, args, 0)) {
        chat__log(CHAT_LOG_ERROR, "publish_failed", "out of memory while encoding an event",
                  json_pack("{s:O}", "event", json_array_get(args, 0)));
        return;
    }
    deliver(rt, rooms_csv, rooms_len, except, (const char *)b->data + head, b->len - head, NULL);
    chat__bus_publish_remote(rt->bus, channel, (const char *)b->data, b->len);
}

void chat__fanout_rooms(chat_runtime *rt, const char *channel, const char *rooms_csv,
                        const char *except, const char *event, json_t *payload)
{
    json_t *args = json_pack("[sO]", event, payload);
    if (!args) {
        chat__log(CHAT_LOG_ERROR, "publish_failed", "out of memory while encoding an event",
                  json_pack("{s:s}", "event", event));
        return;
    }
    fanout_event(rt, channel, rooms_csv, except, args);
    json_decref(args);
}

void chat__fanout_room(chat_runtime *rt, const char *room_id, const char *except, const char *event,
                       json_t *payload)
{
    char channel[48];
    snprintf(channel, sizeof channel, "room:%s:messages", room_id);
    chat__fanout_rooms(rt, channel, room_id, except, event, payload);
}

/* The same, with the payload already JSON (the message, dumped once for the broadcast and
 * the sender's ack). event is a name chatd chose: nothing in it needs escaping. */
void chat__fanout_room_json(chat_runtime *rt, const char *room_id, const char *except,
                            const char *event, const char *json, size_t len)
{
    char channel[48];
    snprintf(channel, sizeof channel, "room:%s:messages", room_id);
    chat_buf *b = &rt->pubbuf;
    chat__buf_reset(b);
    size_t head = strlen(room_id) + strlen(except) + 2;
    if (chat__buf_appendf(b, "%s\n%s\n42[\"%s\",", room_id, except, event) ||
        chat__buf_append(b, json, len) || chat__buf_appendc(b, ']')) {
        chat__log(CHAT_LOG_ERROR, "publish_failed", "out of memory while encoding an event",
                  json_pack("{s:s}", "event", event));
        return;
    }
    deliver(rt, room_id, strlen(room_id), except, (const char *)b->data + head, b->len - head,
            NULL);
    chat__bus_publish_remote(rt->bus, channel, (const char *)b->data, b->len);
}

/* A script's emit, [name, args...]. Binary values go on the bus as "B" + that JSON: each
 * socket encodes its own attachments. */
void chat__fanout_room_event(chat_runtime *rt, const char *room_id, json_t *args, int binary)
{
    char channel[48];
    snprintf(channel, sizeof channel, "room:%s:messages", room_id);
    if (!binary) {
        fanout_event(rt, channel, room_id, "-", args);
        return;
    }
    char *text = json_dumps(args, JSON_COMPACT);
    chat_buf b = CHAT_BUF_INIT;
    if (text && !chat__buf_appendf(&b, "%s\n-\nB%s", room_id, text)) {
        deliver(rt, room_id, 24, "-", NULL, 0, args);
        chat__bus_publish_remote(rt->bus, channel, (const char *)b.data, b.len);
    }
    chat__buf_free(&b);
    free(text);
}

/* ---- per-user control messages: user:{userId}:notify ----
 * JSON: {"op":"joined"|"left","roomId":..} keeps every node's subscriptions in step with the
 * membership; {"op":"emit","event":..,"data":..} reaches the user's sockets on any node. */

static void apply_user_notify(chat_runtime *rt, chat_user_state *u, json_t *msg)
{
    const char *op = json_string_value(json_object_get(msg, "op"));
    const char *room_id = json_string_value(json_object_get(msg, "roomId"));
    if (op && strcmp(op, "emit") == 0) {
        /* "args": every argument; "data": the one argument of nodes before multi-argument
         * emits */
        json_t *args = json_object_get(msg, "args");
        json_t *all = json_pack("[O]", json_object_get(msg, "event"));
        if (all && (json_is_array(args) ? json_array_extend(all, args)
                                        : json_array_append(all, json_object_get(msg, "data")))) {
            json_decref(all);
            all = NULL;
        }
        for (uint32_t i = 0; all && i < u->socks.len; i++) {
            chat__sock_emit_args(u->socks.items[i], all);
        }
        json_decref(all);
    } else if (op && room_id && strcmp(op, "joined") == 0) {
        chat__members_join(rt, u, room_id);
    } else if (op && room_id && strcmp(op, "left") == 0) {
        chat__members_leave(rt, u, room_id);
    }
}

void chat__notify_user(chat_runtime *rt, const char *user_id, json_t *msg)
{
    char channel[48];
    chat__notify_channel(channel, user_id);
    chat_user_state *u = chat__map_get(&rt->users, user_id);
    if (u && msg) {
        apply_user_notify(rt, u, msg);
    }
    char *text = msg ? json_dumps(msg, JSON_COMPACT) : NULL;
    if (text) {
        chat__bus_publish_remote(rt->bus, channel, text, strlen(text));
    }
    free(text);
    json_decref(msg);
}

/* ---- 4. what other nodes published ---- */

void chat__fanout_receive(const char *channel, const char *data, size_t len, void *arg)
{
    chat_runtime *rt = arg;
    if (strcmp(channel, CHAT_CLUSTER_CHANNEL) == 0) { /* node to node (cluster.h) */
        chat__cluster_bus_message(rt, data, len);
        return;
    }
    if (strncmp(channel, "user:", 5) == 0) {
        char user_id[25];
        if (strlen(channel) < 5 + 24 || sscanf(channel, "user:%24[0-9a-f]:notify", user_id) != 1) {
            return;
        }
        chat_user_state *u = chat__map_get(&rt->users, user_id);
        json_t *msg = u ? json_loadb(data, len, 0, NULL) : NULL;
        if (msg) {
            apply_user_notify(rt, u, msg);
        }
        json_decref(msg);
        return;
    }
    const char *end = data + len;
    const char *nl1 = memchr(data, '\n', len);
    const char *nl2 = nl1 ? memchr(nl1 + 1, '\n', (size_t)(end - nl1 - 1)) : NULL;
    if (!nl2) {
        chat__log(CHAT_LOG_WARN, "bus_bad_message", "ignored a malformed bus message",
                  json_pack("{s:s}", "channel", channel));
        return;
    }
    char except[40] = "-";
    size_t elen = (size_t)(nl2 - nl1 - 1);
    if (elen < sizeof except) {
        memcpy(except, nl1 + 1, elen);
        except[elen] = '\0';
    }
    const char *packet = nl2 + 1;
    size_t plen = (size_t)(end - packet);
    json_t *binary = NULL;
    if (plen && packet[0] == 'B' && !(binary = json_loadb(packet + 1, plen - 1, 0, NULL))) {
        return;
    }
    deliver(rt, data, (size_t)(nl1 - data), except, packet, plen, binary);
    json_decref(binary);
}
