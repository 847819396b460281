/* notifications.c: mentions and notifications. A stored message that says @username notifies
 * that user (a member of the room, not the sender): the notification/before policy decides,
 * the store keeps it, and every socket of the user on any node gets `notification` (through
 * user:{userId}:notify). A socket that connects gets the user's unread ones; GET
 * /notifications lists them and POST /notifications/read marks them read.
 *
 * A user with no socket on any node at that moment (this node's users, then presence's
 * user:{userId}:online, which counts the nodes holding them when Redis is shared) also gets a
 * durable job, OFFLINE_JOB, when the scripts handle it (scripts/notify_offline.lua posts it to
 * the operator's push service): the queue retries it, and it survives a restart. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "domain_int.h"
#include "jobs.h"
#include "kv.h"
#include "log.h"
#include "metrics.h"

#define MENTIONS_MAX 10    /* distinct @names acted on per message */
#define EXCERPT_MAX 200    /* bytes of the message a notification quotes */
#define ON_CONNECT_MAX 50  /* unread notifications sent to a socket that connects */
#define OFFLINE_JOB "notify.offline"

/* What became of a mention's notification for someone offline (chatd_offline_pushes_total) */
enum { PUSH_QUEUED, PUSH_ONLINE, PUSH_NO_HANDLER, PUSH_UNKNOWN, PUSH_BOT, PUSH_OUTCOMES };
static const char *const push_outcomes[PUSH_OUTCOMES] = {"queued", "online", "no_handler",
                                                         "unknown", "bot"};
_Static_assert(PUSH_OUTCOMES <= sizeof ((chat_stats *)0)->offline_push /
                                    sizeof ((chat_stats *)0)->offline_push[0],
               "rt->stats.offline_push counts every outcome");

static int name_char(int ch)
{
    return isalnum(ch) || ch == '_' || ch == '.' || ch == '-';
}

/* The distinct @names of content (case-insensitively), at most MENTIONS_MAX. */
static json_t *mentions_in(const char *s)
{
    json_t *names = json_array();
    for (const char *p = s; names && *p && json_array_size(names) < MENTIONS_MAX; p++) {
        if (*p != '@' || (p > s && name_char((unsigned char)p[-1]))) {
            continue;
        }
        size_t n = 0;
        while (name_char((unsigned char)p[1 + n])) {
            n++;
        }
        while (n && p[n] == '.') {
            n--; /* "@bob." at the end of a sentence */
        }
        if (n < 3 || n > 32) {
            continue;
        }
        char name[33];
        memcpy(name, p + 1, n);
        name[n] = '\0';
        int seen = 0;
        size_t i;
        json_t *x;
        json_array_foreach(names, i, x)
        {
            seen |= strcasecmp(json_string_value(x), name) == 0;
        }
        if (!seen) {
            json_array_append_new(names, json_string(name));
        }
        p += n;
    }
    return names;
}

/* UTF-8 safe prefix of at most max bytes. */
static json_t *excerpt(const char *s)
{
    size_t n = strlen(s);
    if (n <= EXCERPT_MAX) {
        return json_string(s);
    }
    n = EXCERPT_MAX;
    while (n && ((unsigned char)s[n] & 0xc0) == 0x80) {
        n--;
    }
    char buf[EXCERPT_MAX + 4];
    memcpy(buf, s, n);
    memcpy(buf + n, "\xe2\x80\xa6", 4); /* … */
    return json_string(buf);
}

typedef struct mention_job {
    chat_runtime *rt;
    json_t *message;
    json_t *room;
    json_t *names;
    size_t next;
    json_t *done;    /* user ids notified */
    json_t *pending; /* the notification the policy is deciding on */
    json_t *user;    /* its user's public profile */
    int user_bot;    /* and that user is a bot: nobody to push to */
} mention_job;

static void mention_next(mention_job *j);

static void job_free(mention_job *j)
{
    json_decref(j->message);
    json_decref(j->room);
    json_decref(j->names);
    json_decref(j->done);
    json_decref(j->pending);
    json_decref(j->user);
    free(j);
}

/* ---- the push for someone offline ---- */

typedef struct offline_ctx {
    chat_runtime *rt;
    json_t *payload; /* {userId, user, notification} */
} offline_ctx;

static void offline_pushed(int status, json_t *result, void *arg)
{
    json_t *payload = arg; /* the runtime may be gone: only the log */
    if (status) {
        chat__log(CHAT_LOG_WARN, "offline_push_failed",
                  "the job that pushes a notification to an offline user could not be queued",
                  json_pack("{s:O,s:s}", "user", json_object_get(payload, "userId"), "code",
                            chat_errcode(status)));
    }
    json_decref(result);
    json_decref(payload);
}

static void offline_push(offline_ctx *o)
{
    chat_runtime *rt = o->rt;
    json_t *payload = o->payload;
    free(o);
    int rc = rt->jobs ? chat__jobs_push(rt->jobs, OFFLINE_JOB, payload, 0, 0, offline_pushed,
                                        payload)
                      : CHAT_EUNAVAIL;
    if (rc) {
        offline_pushed(rc, NULL, payload); /* counted by the queue's refusals, and logged */
    } else {
        rt->stats.offline_push[PUSH_QUEUED]++;
    }
}

static void presence_read(int status, const char *value, int64_t number, void *arg)
{
    offline_ctx *o = arg;
    (void)value;
    if (status) {
        /* not knowing is not offline: no push rather than one to someone reading already */
        o->rt->stats.offline_push[PUSH_UNKNOWN]++;
        chat__log(CHAT_LOG_WARN, "offline_push_skipped",
                  "could not tell whether a mentioned user is online; no push is sent",
                  json_pack("{s:O,s:s}", "user", json_object_get(o->payload, "userId"), "code",
                            chat_errcode(status)));
    } else if (number > 0) {
        o->rt->stats.offline_push[PUSH_ONLINE]++;
    } else {
        offline_push(o);
        return;
    }
    json_decref(o->payload);
    free(o);
}

/* n was stored and published: if its user has no socket anywhere, queue the push. */
static void push_if_offline(chat_runtime *rt, json_t *n, json_t *user, int bot)
{
    const char *uid = json_string_value(json_object_get(n, "userId"));
    if (!uid) {
        return;
    }
    if (bot) {
        rt->stats.offline_push[PUSH_BOT]++; /* a script's account: no device anywhere */
        return;
    }
    if (!rt->jobs || !chat__script_has(rt->script, "job/" OFFLINE_JOB)) {
        rt->stats.offline_push[PUSH_NO_HANDLER]++;
        return;
    }
    if (chat__map_get(&rt->users, uid)) {
        rt->stats.offline_push[PUSH_ONLINE]++; /* a socket here */
        return;
    }
    offline_ctx *o = malloc(sizeof *o);
    json_t *payload = json_pack("{s:s,s:O,s:O}", "userId", uid, "user", user ? user : json_null(),
                                "notification", n);
    if (!o || !payload) {
        free(o);
        json_decref(payload);
        return;
    }
    o->rt = rt;
    o->payload = payload;
    char key[48];
    snprintf(key, sizeof key, "user:%s:online", uid); /* presence.c keeps it, on every node */
    chat__kv_get(rt->kv, key, presence_read, o);
}

int chat__notifications_metrics(chat_runtime *rt, chat_buf *b)
{
    return chat__metrics_counts(
        b, "chatd_offline_pushes_total",
        "Mention notifications by what became of their push: queued as a notify.offline job "
        "(the user had no socket on any node), or not (online: a socket somewhere; no_handler: "
        "no script handles the job; unknown: presence could not be read; bot: the user is a "
        "bot).",
        "outcome", push_outcomes, rt->stats.offline_push, PUSH_OUTCOMES);
}

static void notification_stored(int status, json_t *n, void *arg)
{
    mention_job *j = arg;
    if (status) {
        chat__log(CHAT_LOG_WARN, "notification_failed", "a mention could not be stored",
                  json_pack("{s:s}", "code", chat_errcode(status)));
    } else {
        const char *uid = json_string_value(json_object_get(n, "userId"));
        chat__notify_user(j->rt, uid,
                          json_pack("{s:s,s:s,s:O}", "op", "emit", "event", "notification", "data", n));
        push_if_offline(j->rt, n, j->user, j->user_bot);
    }
    json_decref(n);
    mention_next(j);
}

/* The policy answered (through a script-door call): store what it allowed. It may rewrite
 * the data; who gets it, and its id and type, stay. */
static void mention_allowed(int status, json_t *ev, void *arg)
{
    mention_job *j = arg;
    json_t *n = j->pending;
    json_t *data = json_object_get(json_object_get(ev, "notification"), "data");
    j->pending = NULL;
    if (status || !json_is_object(data)) {
        json_decref(ev);
        json_decref(n);
        mention_next(j); /* suppressed */
        return;
    }
    json_t *arg_n = json_pack("{s:O,s:O,s:O,s:O,s:O}", "id", json_object_get(n, "id"), "userId",
                              json_object_get(n, "userId"), "type", json_object_get(n, "type"),
                              "data", data, "createdAt", json_object_get(n, "createdAt"));
    json_decref(ev);
    json_decref(n);
    if (!arg_n || chat__store_call(j->rt->store, CHAT_STORE_NOTIFY_INSERT, arg_n,
                                   notification_stored, j)) {
        mention_next(j);
    }
}

static void policy_passed(chat_call *c, json_t *ev)
{
    chat__call_done(c, json_incref(ev));
}

static void mentioned_user(int status, json_t *user, void *arg)
{
    mention_job *j = arg;
    const char *uid = json_string_value(json_object_get(user, "id"));
    const char *sender = json_string_value(json_object_get(j->message, "senderId"));
    if (status || !uid || (sender && strcmp(uid, sender) == 0) ||
        !chat__json_has_string(json_object_get(j->room, "participants"), uid) ||
        chat__json_has_string(j->done, uid)) {
        json_decref(user);
        mention_next(j); /* nobody, the sender, a non-member (who may not read it), or again */
        return;
    }
    json_array_append_new(j->done, json_string(uid));
    char id[25];
    chat__objectid(id);
    json_t *content = json_object_get(j->message, "content");
    json_t *n = json_pack("{s:s,s:s,s:s,s:{s:O,s:O,s:O,s:o},s:I,s:b}", "id", id, "userId", uid,
                          "type", "mention", "data", "roomId", json_object_get(j->message, "roomId"),
                          "messageId", json_object_get(j->message, "id"), "senderId",
                          json_object_get(j->message, "senderId"), "excerpt",
                          excerpt(json_string_value(content)), "createdAt",
                          (json_int_t)chat__now_ms(), "read", 0);
    json_decref(j->user);
    j->user = chat__public_user(user, 0);
    j->user_bot = chat__is_bot_email(json_string_value(json_object_get(user, "email")));
    json_t *ev = json_pack("{s:O,s:{s:O},s:o}", "user", j->user, "room", "id",
                           json_object_get(j->message, "roomId"), "notification", n);
    json_decref(user);
    j->pending = json_incref(n);
    chat_call *c = chat__call_from_script(j->rt, sender, mention_allowed, j);
    if (c) {
        chat__call_hook(c, "notification/before", ev, policy_passed);
    } else {
        json_decref(ev);
    }
}

static void mention_next(mention_job *j)
{
    while (j->next < json_array_size(j->names)) {
        json_t *name = json_array_get(j->names, j->next++);
        if (chat__store_call(j->rt->store, CHAT_STORE_USER_BY_LOGIN,
                             json_pack("{s:O}", "login", name), mentioned_user, j) == 0) {
            return;
        }
    }
    job_free(j);
}

static void mention_room(int status, json_t *room, void *arg)
{
    mention_job *j = arg;
    if (status) {
        json_decref(room);
        job_free(j);
        return;
    }
    j->room = room;
    mention_next(j);
}

void chat__mentions_after_message(chat_runtime *rt, json_t *message)
{
    const char *content = json_string_value(json_object_get(message, "content"));
    if (!content || !strchr(content, '@')) {
        return;
    }
    json_t *names = mentions_in(content);
    if (!json_array_size(names)) {
        json_decref(names);
        return;
    }
    mention_job *j = calloc(1, sizeof *j);
    if (!j) {
        json_decref(names);
        return;
    }
    j->rt = rt;
    j->message = json_incref(message);
    j->names = names;
    j->done = json_array();
    if (chat__store_call(rt->store, CHAT_STORE_ROOM_GET,
                         json_pack("{s:O}", "id", json_object_get(message, "roomId")), mention_room,
                         j)) {
        job_free(j);
    }
}

/* ---- on connect: the unread ones, oldest first ---- */

static void unread_loaded(int status, json_t *page, void *arg)
{
    chat_sock *k = arg;
    json_t *list = json_object_get(page, "notifications");
    for (size_t i = json_array_size(list); !status && k->session && i-- > 0;) {
        json_t *n = json_array_get(list, i);
        if (!json_is_true(json_object_get(n, "read"))) {
            chat__sock_emit(k, "notification", n);
        }
    }
    json_decref(page);
    chat__sock_unref(k);
}

void chat__notifications_on_connect(chat_sock *k)
{
    chat__sock_ref(k);
    if (chat__store_call(k->rt->store, CHAT_STORE_NOTIFY_LIST,
                         json_pack("{s:s,s:i}", "userId", k->user_id, "limit", ON_CONNECT_MAX),
                         unread_loaded, k)) {
        chat__sock_unref(k);
    }
}

/* ---- REST ---- */

static void listed(int status, json_t *page, void *arg)
{
    chat_call *c = arg;
    if (status) {
        json_decref(page);
        chat__call_fail(c, status,
                        status == CHAT_ENOTFOUND ? "before is not one of your notifications" : NULL);
        return;
    }
    chat__call_done(c, page);
}

static void rest_notifications(chat_http_req *req, const char *user_id)
{
    char before[32];
    const char *b = chat__http_query(req, "before", before, sizeof before);
    if (b && !chat__is_object_id(b)) {
        chat__http_respond_error(req, CHAT_EINVAL, "before must be a notification id");
        return;
    }
    int limit;
    if (chat__http_query_int(req, "limit", 50, 1, 100, &limit)) {
        return;
    }
    chat_call *c = chat__call_from_req(req, user_id, 200);
    if (c) {
        chat__call_store(c, CHAT_STORE_NOTIFY_LIST,
                         json_pack("{s:s,s:s?,s:i}", "userId", user_id, "before", b, "limit", limit),
                         listed);
    }
}

static void marked(int status, json_t *result, void *arg)
{
    chat_call *c = arg;
    if (status) {
        json_decref(result);
        chat__call_fail(c, status, NULL);
        return;
    }
    chat__call_done(c, result);
}

static void rest_notifications_read(chat_http_req *req, const char *user_id)
{
    json_t *body = NULL;
    if (req->body.len) {
        body = json_loadb((const char *)req->body.data, req->body.len, 0, NULL);
        if (!json_is_object(body)) {
            json_decref(body);
            chat__http_respond_error(req, CHAT_EINVAL, "the body must be a JSON object in UTF-8");
            return;
        }
    }
    json_t *ids = json_object_get(body, "ids");
    int ok = !ids || json_is_null(ids) || (json_is_array(ids) && json_array_size(ids) <= 100);
    size_t i;
    json_t *id;
    json_array_foreach(ids, i, id)
    {
        ok = ok && chat__is_object_id(json_string_value(id));
    }
    if (!ok) {
        json_decref(body);
        chat__http_respond_error(req, CHAT_EINVAL,
                                 "ids must be up to 100 notification ids; leave it out to mark "
                                 "every notification read");
        return;
    }
    chat_call *c = chat__call_from_req(req, user_id, 200);
    if (c) {
        json_t *arg = json_pack("{s:s}", "userId", user_id);
        if (json_is_array(ids)) {
            json_object_set(arg, "ids", ids);
        }
        chat__call_store(c, CHAT_STORE_NOTIFY_READ, arg, marked);
    }
    json_decref(body);
}

static const chat_http_route note_routes[] = {
    {CHAT_HTTP_GET, "/notifications", 1, rest_notifications},
    {CHAT_HTTP_POST, "/notifications/read", 1, rest_notifications_read},
};

int chat__notifications_start(chat_runtime *rt)
{
    return chat__http_routes_add(rt, note_routes, sizeof note_routes / sizeof note_routes[0]);
}
