/* domain.c: the chat domain's entry from the socket layer: the table of Socket.IO events,
 * script-handled custom events, and the handler registered with sock.c at start. The
 * concerns live in their own files: connect.c, members.c, rooms.c, messages.c,
 * presence.c, fanout.c, actions.c (for scripts), rest.c (for HTTP); call.c is the glue that
 * lets one operation answer whichever door it came through. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "domain_int.h"
#include "sanctions.h"

typedef struct event_handler {
    const char *name;
    void (*fn)(chat_call *c, json_t *payload);
} event_handler;

static const event_handler event_handlers[] = {
    {"room:join", chat__on_room_join},       {"room:leave", chat__on_room_leave},
    {"room:create", chat__on_room_create},   {"message:send", chat__on_message_send},
    {"typing:start", chat__on_typing_start}, {"typing:stop", chat__on_typing_stop},
    {"message:edit", chat__on_message_edit}, {"message:delete", chat__on_message_delete},
    {"message:react", chat__on_message_react}, {"room:read", chat__on_room_read},
};

/* What the handler returned is the ack: every value it returned, as the ack's arguments;
 * nothing (or true) is {ok:true}. Binary values go out as attachments. */
static void custom_event_answered(chat_call *c, json_t *ev)
{
    json_t *results = json_object_get(ev, "results");
    json_t *result = json_object_get(ev, "result");
    if (c->k && c->ack_id >= 0) {
        json_t *args = json_is_array(results) ? json_incref(results)
                       : result               ? json_pack("[O]", result)
                                              : json_pack("[{s:b}]", "ok", 1);
        chat__sock_ack_args(c->k, c->ack_id, args);
        json_decref(args);
    }
    chat__call_free(c);
}

void chat__domain_event(chat_sock *k, const char *event, json_t *args, int64_t ack_id)
{
    const event_handler *h = NULL;
    for (size_t i = 0;
         strcmp(k->nsp, "/") == 0 && i < sizeof event_handlers / sizeof event_handlers[0]; i++) {
        if (strcmp(event_handlers[i].name, event) == 0) {
            h = &event_handlers[i];
            break;
        }
    }
    chat_call *c = chat__call_from_sock(k, event, ack_id);
    if (!c) {
        return;
    }
    if (h && !k->user_id[0]) {
        /* an anonymous socket (the connect policy let it in without a user): the chat's
         * own events need someone to act as */
        chat__call_fail(c, CHAT_EUNAUTHORIZED, "sign in to use the chat: this connection is "
                                               "anonymous");
        return;
    }
    if (h) {
        json_t *payload = json_array_get(args, 1);
        if (!json_is_object(payload)) {
            chat__call_fail(c, CHAT_EINVAL, "the payload must be an object");
            return;
        }
        /* an operator's mute or room ban (sanctions.h), in force on every node */
        const json_t *s = NULL;
        const char *room = json_string_value(json_object_get(payload, "roomId"));
        if (strcmp(event, "message:send") == 0) {
            s = chat__sanction_find(k->rt, CHAT_SANCTION_MUTE, room, k->user_id);
        } else if (strcmp(event, "room:join") == 0 && room) {
            s = chat__sanction_find(k->rt, CHAT_SANCTION_BAN, room, k->user_id);
        }
        if (s) {
            char why[640];
            chat__sanction_describe(s, why, sizeof why);
            chat__call_fail(c, CHAT_EFORBIDDEN, why);
            return;
        }
        h->fn(c, payload);
        return;
    }
    /* any other event goes to the scripts' "event/<name>" handlers; what they return is the
     * ack */
    char hook[96];
    snprintf(hook, sizeof hook, "event/%s", event);
    if (strlen(event) > 64 || !chat__script_has(k->rt->script, hook)) {
        char msg[160];
        snprintf(msg, sizeof msg, "unknown event \"%.64s\"", event);
        chat__call_fail(c, CHAT_EINVAL, msg);
        return;
    }
    json_t *rest = json_array();
    for (size_t i = 1; i < json_array_size(args); i++) {
        json_array_append(rest, json_array_get(args, i));
    }
    /* data: the first argument, as most events carry one payload; args: all of them */
    json_t *ev = json_pack("{s:o,s:o,s:s,s:s,s:o,s:O*}", "socket", chat__socket_json(k), "user",
                           chat__user_json(k->user_id, k->username), "namespace", k->nsp, "event",
                           event, "args", rest, "data", json_array_get(rest, 0));
    chat__call_hook(c, hook, ev, custom_event_answered);
}

static int namespace_open(chat_runtime *rt, const char *nsp)
{
    int anonymous;
    return chat__script_namespace(rt->script, nsp, &anonymous);
}

/* What sock.c calls: the domain registers it at start, so the socket layer never names the
 * domain. */
static const chat_sock_handler sock_handler = {
    .namespace_open = namespace_open,
    .on_connect = chat__domain_connect,
    .on_event = chat__domain_event,
    .on_disconnect = chat__domain_disconnect,
};

int chat__domain_start(chat_runtime *rt)
{
    rt->actions = &chat__domain_actions;
    int rc = chat__sock_start(rt, &sock_handler);
    rc = rc ? rc : chat__rest_start(rt);
    rc = rc ? rc : chat__users_start(rt);
    rc = rc ? rc : chat__notifications_start(rt);
    rc = rc ? rc : chat__uploads_start(rt);
    return rc ? rc : chat__presence_start(rt);
}

void chat__domain_stop(chat_runtime *rt)
{
    chat__presence_stop(rt);
    chat__reactions_stop(rt);
}
