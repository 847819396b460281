/* call.c: one call through any of the domain's three doors (a Socket.IO event, a REST
 * request, a script action) and the glue to the policy hooks. A call carries who asked and
 * how to answer; chat__call_done and chat__call_fail answer through the door it came from
 * and free it, so each step of a domain operation ends in exactly one of them. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "domain_int.h"
#include "log.h"

static chat_call *call_new(chat_runtime *rt, const char *user_id)
{
    chat_call *c = calloc(1, sizeof *c);
    if (c) {
        c->rt = rt;
        rt->calls_pending++; /* a graceful stop lets it finish (chat__call_free) */
        c->ack_id = -1;
        snprintf(c->user_id, sizeof c->user_id, "%s", user_id ? user_id : "");
    }
    return c;
}

chat_call *chat__call_from_sock(chat_sock *k, const char *event, int64_t ack_id)
{
    chat_call *c = call_new(k->rt, k->user_id);
    if (c) {
        c->k = k;
        c->received_ns = uv_hrtime();
        chat__sock_ref(k);
        snprintf(c->event, sizeof c->event, "%s", event);
        c->ack_id = ack_id;
    }
    return c;
}

chat_call *chat__call_from_req(chat_http_req *req, const char *user_id, int ok_status)
{
    chat_call *c = call_new(req->rt, user_id);
    if (c) {
        c->req = req;
        chat__http_req_ref(req);
        c->ok_status = ok_status;
    }
    return c;
}

chat_call *chat__call_from_script(chat_runtime *rt, const char *user_id, chat_store_cb cb,
                                  void *arg)
{
    chat_call *c = call_new(rt, user_id);
    if (!c) {
        cb(CHAT_ENOMEM, NULL, arg);
        return NULL;
    }
    c->done = cb;
    c->done_arg = arg;
    return c;
}

void chat__call_free(chat_call *c)
{
    c->rt->calls_pending--;
    if (c->k) {
        chat__sock_unref(c->k);
    }
    if (c->req) {
        chat__http_req_unref(c->req);
    }
    json_decref(c->input);
    json_decref(c->room);
    free(c);
}

/* Answers and frees the call: {ok:true, ...result} through the ack, or the REST body. */
void chat__call_done(chat_call *c, json_t *result)
{
    if (c->k && c->ack_id >= 0) {
        json_t *answer = json_object();
        json_object_set_new(answer, "ok", json_true());
        if (result) {
            json_object_update(answer, result);
        }
        chat__sock_ack(c->k, c->ack_id, answer);
        json_decref(answer);
    }
    if (c->req) {
        chat__http_respond_json(c->req, c->ok_status, result ? json_incref(result) : json_object());
    }
    if (c->done) {
        c->done(0, result ? json_incref(result) : NULL, c->done_arg);
    }
    json_decref(result);
    chat__call_free(c);
}

void chat__call_fail(chat_call *c, int err, const char *message)
{
    if (c->k) {
        chat__sock_fail(c->k, c->event, c->ack_id, err, message);
    }
    if (c->req) {
        chat__http_respond_error(c->req, err, message);
    }
    if (c->done) {
        c->done(err, NULL, c->done_arg);
    }
    if (err == CHAT_EINTERNAL || err == CHAT_EUNAVAIL) {
        chat__log(CHAT_LOG_WARN, "request_failed", message ? message : chat_strerror(err),
                  json_pack("{s:s,s:s}", "code", chat_errcode(err), "user", c->user_id));
    }
    chat__call_free(c);
}

int chat__call_store(chat_call *c, int op, json_t *arg, chat_store_cb cb)
{
    int rc = chat__store_call(c->rt->store, op, arg, cb, c);
    if (rc) {
        chat__call_fail(c, rc, "the store is unavailable; retry shortly");
    }
    return rc;
}

/* ---- policy hooks (scripts) ---- */

json_t *chat__socket_json(chat_sock *k)
{
    if (!k) {
        return json_null();
    }
    const char *peer = chat__sock_peer(k);
    return json_pack("{s:s,s:s,s:s}", "id", k->id, "namespace", k->nsp, "ip", peer);
}

json_t *chat__user_json(const char *id, const char *username)
{
    if (!id || !id[0]) {
        return json_null();
    }
    return username && username[0] ? json_pack("{s:s,s:s}", "id", id, "username", username)
                                   : json_pack("{s:s}", "id", id);
}

json_t *chat__call_user_json(chat_call *c)
{
    return chat__user_json(c->user_id, c->k ? c->k->username : NULL);
}

static void hook_answered(int status, const char *message, json_t *ev, void *arg)
{
    chat_call *c = arg;
    if (status) {
        json_decref(ev);
        chat__call_fail(c, status, message);
        return;
    }
    c->after_hook(c, ev);
    json_decref(ev);
}

/* Runs the handlers of hook on ev (stolen), then next(c, ev after the handlers); a
 * rejection fails the call with the handler's code and message. Without handlers, next runs
 * at once: no Lua round trip. */
void chat__call_hook(chat_call *c, const char *hook, json_t *ev, chat_hook_step next)
{
    chat__call_hook_reading(c, hook, ev, NULL, next);
}

/* The same when next reads only ev[field] (a static string): only that comes back. */
void chat__call_hook_reading(chat_call *c, const char *hook, json_t *ev, const char *field,
                             chat_hook_step next)
{
    if (!ev || !chat__script_has(c->rt->script, hook)) {
        next(c, ev);
        json_decref(ev);
        return;
    }
    c->after_hook = next;
    chat__script_run_reading(c->rt->script, hook, ev, field, hook_answered, c);
}

chat_script_event chat__call_event(chat_call *c, json_t *room, const char *field, json_t *value)
{
    chat_script_event ev = {.user_id = c->user_id, .room = room, .room_id = c->room_id,
                            .field = field, .value = value};
    if (c->k) {
        ev.socket_id = c->k->id;
        ev.socket_nsp = c->k->nsp;
        ev.socket_ip = chat__sock_peer(c->k);
        ev.username = c->k->username;
    }
    return ev;
}

/* The same as chat__call_hook_reading for an event given by its parts (no JSON object is
 * built for it); field is what next reads, and what it gets as it is without handlers. */
void chat__call_hook_event(chat_call *c, const char *hook, const chat_script_event *ev,
                           chat_hook_step next)
{
    if (!chat__script_has(c->rt->script, hook)) {
        json_t *as_is = json_object();
        if (as_is && ev->value) {
            json_object_set(as_is, ev->field, ev->value);
        }
        next(c, as_is);
        json_decref(as_is);
        return;
    }
    c->after_hook = next;
    chat__script_run_event(c->rt->script, hook, ev, ev->field, hook_answered, c);
}

void chat__notify_event(chat_runtime *rt, const char *hook, const chat_script_event *ev)
{
    if (chat__script_has(rt->script, hook)) {
        chat__script_run_event(rt->script, hook, ev, NULL, NULL, NULL);
    }
}

/* Tells the scripts about something that happened: nobody waits for the answer, so nothing
 * is converted back from Lua. */
void chat__notify_hook(chat_runtime *rt, const char *hook, json_t *ev)
{
    if (ev && chat__script_has(rt->script, hook)) {
        chat__script_run(rt->script, hook, ev, NULL, NULL);
    } else {
        json_decref(ev);
    }
}

/* ---- validation ---- */

int chat__is_object_id(const char *s)
{
    if (!s || strlen(s) != 24) {
        return 0;
    }
    for (int i = 0; i < 24; i++) {
        if (!isxdigit((unsigned char)s[i]) || isupper((unsigned char)s[i])) {
            return 0;
        }
    }
    return 1;
}

/* Reads payload.roomId into c->room_id; fails the call and returns -1 if it is bad. */
int chat__take_room_id(chat_call *c, json_t *payload)
{
    const char *id = json_string_value(json_object_get(payload, "roomId"));
    if (!chat__is_object_id(id)) {
        chat__call_fail(c, CHAT_EINVAL, "roomId must be a room id (24 hex characters)");
        return -1;
    }
    memcpy(c->room_id, id, 25);
    return 0;
}

int chat__json_has_string(json_t *arr, const char *s)
{
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v)
    {
        if (json_is_string(v) && strcmp(json_string_value(v), s) == 0) {
            return 1;
        }
    }
    return 0;
}

/* The public view of a user: never the hash, and the email only for its owner. */
json_t *chat__public_user(json_t *user, int self)
{
    json_t *u = json_deep_copy(user);
    if (u) {
        json_object_del(u, "passwordHash");
        if (!self) {
            json_object_del(u, "email");
        }
    }
    return u;
}

int chat__valid_username(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n < 3 || n > 32) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        if (!isalnum((unsigned char)s[i]) && !strchr("_.-", s[i])) {
            return 0;
        }
    }
    return 1;
}

int chat__is_bot_email(const char *email)
{
    size_t n = email ? strlen(email) : 0, d = strlen(BOT_EMAIL_DOMAIN);
    return n > d && strcasecmp(email + n - d, BOT_EMAIL_DOMAIN) == 0;
}
