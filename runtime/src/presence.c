/* presence.c: online/offline. The first socket of a user anywhere in the cluster makes it
 * online and the last one gone makes it offline (a counter in the kv, user:{id}:online);
 * the change goes to the members of the user's rooms and to the store (lastSeen). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "domain_int.h"
#include "log.h"

#define PRESENCE_CHANNEL "presence:updates" /* every node subscribes to it at start */

static void publish_presence(chat_runtime *rt, chat_user_state *u, const char *status,
                             int64_t last_seen)
{
    chat_buf csv = CHAT_BUF_INIT;
    for (uint32_t i = 0; i < u->rooms.len; i++) {
        chat_room_state *r = u->rooms.items[i];
        if ((i && chat__buf_appendc(&csv, ',')) || chat__buf_append(&csv, r->id, 24)) {
            chat__buf_free(&csv);
            return;
        }
    }
    if (chat__buf_terminate(&csv)) {
        return;
    }
    char except[32];
    snprintf(except, sizeof except, "u:%s", u->id);
    json_t *payload = json_pack("{s:s,s:s,s:I}", "userId", u->id, "status", status, "lastSeen",
                                (json_int_t)last_seen);
    if (payload && csv.len) {
        chat__fanout_rooms(rt, PRESENCE_CHANNEL, (const char *)csv.data, except, "presence:update",
                           payload);
    }
    json_decref(payload);
    chat__buf_free(&csv);
}

typedef struct presence_ctx {
    chat_runtime *rt;
    char user_id[25];
    int online;
    chat_buf rooms; /* for going offline: the user's rooms when its last socket left */
} presence_ctx;

typedef struct seen_ctx {
    chat_runtime *rt;
    char user_id[25];
} seen_ctx;

static void store_ignore(int status, json_t *result, void *arg)
{
    seen_ctx *s = arg;
    if (status) {
        chat__log(CHAT_LOG_WARN, "last_seen_failed", "could not record a user's last seen time",
                  json_pack("{s:s}", "code", chat_errcode(status)));
    }
    json_decref(result);
    if (s) {
        chat__users_changed(s->rt, s->user_id); /* the directory's copy shows the old status */
        free(s);
    }
}

static void presence_counted(int status, const char *value, int64_t number, void *arg)
{
    presence_ctx *p = arg;
    (void)value;
    int64_t now = chat__now_ms();
    /* first socket anywhere comes online; last one anywhere goes offline */
    if (status == 0 && ((p->online && number == 1) || (!p->online && number <= 0))) {
        chat_user_state *u = chat__map_get(&p->rt->users, p->user_id);
        const char *st = p->online ? "online" : "offline";
        if (u) {
            publish_presence(p->rt, u, st, now);
        } else if (p->rooms.len) {
            char except[32];
            snprintf(except, sizeof except, "u:%s", p->user_id);
            json_t *payload = json_pack("{s:s,s:s,s:I}", "userId", p->user_id, "status", st,
                                        "lastSeen", (json_int_t)now);
            chat__buf_terminate(&p->rooms);
            chat__fanout_rooms(p->rt, PRESENCE_CHANNEL, (const char *)p->rooms.data, except,
                               "presence:update", payload);
            json_decref(payload);
        }
        seen_ctx *s = malloc(sizeof *s);
        if (s) {
            s->rt = p->rt;
            memcpy(s->user_id, p->user_id, 25);
        }
        chat__store_call(
            p->rt->store, CHAT_STORE_USER_SET_SEEN,
            json_pack("{s:s,s:I,s:s}", "id", p->user_id, "lastSeen", (json_int_t)now, "status", st),
            store_ignore, s);
    }
    chat__buf_free(&p->rooms);
    free(p);
}

void chat__presence_change(chat_runtime *rt, chat_user_state *u, int online)
{
    presence_ctx *p = calloc(1, sizeof *p);
    if (!p) {
        return;
    }
    p->rt = rt;
    p->online = online;
    memcpy(p->user_id, u->id, 25);
    for (uint32_t i = 0; !online && i < u->rooms.len; i++) {
        chat_room_state *r = u->rooms.items[i];
        if ((i && chat__buf_appendc(&p->rooms, ',')) || chat__buf_append(&p->rooms, r->id, 24)) {
            break;
        }
    }
    char key[48];
    snprintf(key, sizeof key, "user:%s:online", u->id);
    chat__kv_incr(rt->kv, key, online ? 1 : -1, 0, presence_counted, p);
}
