/* connect.c: a socket's life in the domain: connect (who it is: the scripts' "connect/auth"
 * policy or the built-in token check; then the user, the "connect" policy, its rooms),
 * catch-up after a reconnect (auth.since), and disconnect. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "domain_int.h"
#include "log.h"
#include "sanctions.h"
#include "session.h"

typedef struct connect_ctx {
    chat_sock *k;
    json_t *auth;
} connect_ctx;

static void connect_ctx_free(connect_ctx *cc)
{
    chat__sock_unref(cc->k);
    json_decref(cc->auth);
    free(cc);
}

/* ---- catch-up: auth.since = {roomId: id of the last message the client saw} ----
 * After a reconnect, whichever node the client lands on sends it what it missed, oldest
 * first, as message:new. Walks the history newest first, at most CATCHUP_MAX messages. */

#define CATCHUP_PAGE 100
#define CATCHUP_MAX 1000

typedef struct catchup {
    chat_sock *k;
    char room_id[25];
    char after[25];
    json_t *missed; /* newest first */
} catchup;

static void catchup_page(int status, json_t *page, void *arg)
{
    catchup *cu = arg;
    int found = 0;
    size_t i;
    json_t *m;
    json_array_foreach(json_object_get(page, "messages"), i, m)
    {
        if (strcmp(json_string_value(json_object_get(m, "id")), cu->after) == 0) {
            found = 1;
            break;
        }
        json_array_append(cu->missed, m);
    }
    const char *next = json_string_value(json_object_get(page, "nextBefore"));
    if (!status && !found && next && cu->k->session && json_array_size(cu->missed) < CATCHUP_MAX &&
        chat__store_call(cu->k->rt->store, CHAT_STORE_MESSAGES_PAGE,
                         json_pack("{s:s,s:s,s:i}", "roomId", cu->room_id, "before", next, "limit",
                                   CATCHUP_PAGE),
                         catchup_page, cu) == 0) {
        json_decref(page);
        return;
    }
    json_decref(page);
    for (size_t j = json_array_size(cu->missed); !status && j-- > 0;) {
        chat__sock_emit(cu->k, "message:new", json_array_get(cu->missed, j));
    }
    chat__sock_unref(cu->k);
    json_decref(cu->missed);
    free(cu);
}

static void catch_up(chat_sock *k, json_t *since)
{
    const char *room_id;
    json_t *after;
    json_object_foreach(since, room_id, after)
    {
        const char *after_id = json_string_value(after);
        if (!chat__is_object_id(room_id) || !chat__is_object_id(after_id) ||
            !chat__members_room(k, room_id)) {
            continue; /* only rooms the user is in */
        }
        catchup *cu = calloc(1, sizeof *cu);
        if (!cu || !(cu->missed = json_array())) {
            free(cu);
            return;
        }
        cu->k = k;
        chat__sock_ref(k);
        memcpy(cu->room_id, room_id, 25);
        memcpy(cu->after, after_id, 25);
        if (chat__store_call(
                k->rt->store, CHAT_STORE_MESSAGES_PAGE,
                json_pack("{s:s,s:n,s:i}", "roomId", room_id, "before", "limit", CATCHUP_PAGE),
                catchup_page, cu)) {
            chat__sock_unref(k);
            json_decref(cu->missed);
            free(cu);
        }
    }
}

static void connect_rooms_loaded(int status, json_t *rooms, void *arg)
{
    connect_ctx *cc = arg;
    chat_sock *k = cc->k;
    chat_runtime *rt = k->rt;
    if (!k->session) {
        goto done; /* gone while we waited */
    }
    if (status) {
        chat__sock_refuse(k, status == CHAT_EUNAVAIL ? "unavailable" : "internal", NULL);
        goto done;
    }
    int first = 0;
    if (chat__members_attach(k, rooms, &first)) {
        chat__sock_refuse(k, "internal", NULL);
        goto done;
    }
    chat__sock_connected(k);
    if (first) {
        chat__presence_change(rt, k->user, 1);
    }
    if (json_is_object(json_object_get(cc->auth, "since"))) {
        catch_up(k, json_object_get(cc->auth, "since"));
    }
    chat__notifications_on_connect(k); /* notifications.c: the unread ones */
done:
    json_decref(rooms);
    connect_ctx_free(cc);
}

/* The connect policies allowed: "/" sockets load their rooms, others are ready. */
static void connect_allowed(int status, const char *message, json_t *ev, void *arg)
{
    connect_ctx *cc = arg;
    chat_sock *k = cc->k;
    if (!k->session || status) {
        if (k->session) {
            chat__sock_refuse(k, message ? message : chat_errcode(status),
                              json_object_get(ev, "data"));
        }
        json_decref(ev);
        connect_ctx_free(cc);
        return;
    }
    json_decref(ev);
    if (strcmp(k->nsp, "/") != 0 || !k->user_id[0]) {
        chat__sock_connected(k);
        connect_ctx_free(cc);
        return;
    }
    if (chat__store_call(k->rt->store, CHAT_STORE_ROOMS_FOR_USER,
                         json_pack("{s:s}", "userId", k->user_id), connect_rooms_loaded, cc)) {
        chat__sock_refuse(k, "unavailable", NULL);
        connect_ctx_free(cc);
    }
}

static void connect_policy(connect_ctx *cc, json_t *user)
{
    chat_sock *k = cc->k;
    if (!chat__script_has(k->rt->script, "connect")) {
        connect_allowed(0, NULL, NULL, cc);
        return;
    }
    json_t *ev = json_pack("{s:o,s:o,s:O}", "socket", chat__socket_json(k), "user",
                           user ? json_incref(user) : json_null(), "auth", cc->auth);
    chat__script_run(k->rt->script, "connect", ev, connect_allowed, cc);
}

static void connect_user_loaded(int status, json_t *user, void *arg)
{
    connect_ctx *cc = arg;
    chat_sock *k = cc->k;
    if (!k->session || status) {
        if (k->session) {
            chat__sock_refuse(k,
                              status == CHAT_ENOTFOUND  ? "unauthorized"
                              : status == CHAT_EUNAVAIL ? "unavailable"
                                                        : "internal",
                              NULL);
        }
        json_decref(user);
        connect_ctx_free(cc);
        return;
    }
    snprintf(k->username, sizeof k->username, "%s",
             json_string_value(json_object_get(user, "username")));
    json_t *pub = chat__public_user(user, 0);
    json_decref(user);
    connect_policy(cc, pub);
    json_decref(pub);
}

/* Who the socket is, decided: user_id (a user that must exist) or NULL (anonymous). */
static void authenticated(connect_ctx *cc, const char *user_id)
{
    chat_sock *k = cc->k;
    if (!user_id) {
        connect_policy(cc, NULL);
        return;
    }
    memcpy(k->user_id, user_id, 25);
    if (k->session) {
        chat__session_set_user(k->session, user_id); /* for its connection_close line */
    }
    if (chat__sanction_find(k->rt, CHAT_SANCTION_DISABLE, NULL, user_id) ||
        chat__sanction_find(k->rt, CHAT_SANCTION_BAN, NULL, user_id)) {
        chat__sock_refuse(k, "forbidden", NULL); /* a disabled account, or banned everywhere */
        connect_ctx_free(cc);
        return;
    }
    if (chat__store_call(k->rt->store, CHAT_STORE_USER_GET, json_pack("{s:s}", "id", user_id),
                         connect_user_loaded, cc)) {
        chat__sock_refuse(k, "unavailable", NULL);
        connect_ctx_free(cc);
    }
}

/* The built-in policy, when no "connect/auth" handler decided: auth.token must be a valid
 * JWT of ours; on a namespace a script declared anonymous it may be absent (but if present
 * it must be valid). The same as before authentication was a policy. */
static void token_policy(connect_ctx *cc)
{
    chat_sock *k = cc->k;
    chat_runtime *rt = k->rt;
    int anonymous = 0;
    if (strcmp(k->nsp, "/") != 0 && !chat__script_namespace(rt->script, k->nsp, &anonymous)) {
        anonymous = 0; /* undeclared by a reload meanwhile: a token it is */
    }
    json_t *token = json_object_get(cc->auth, "token");
    char user_id[25] = "";
    uv_timeval64_t tv;
    uv_gettimeofday(&tv);
    if ((token || !anonymous) &&
        (!json_is_string(token) ||
         chat__jwt_verify(rt->jwt_secret, json_string_value(token), tv.tv_sec, user_id))) {
        chat__log(CHAT_LOG_WARN, "auth_failed", "a Socket.IO CONNECT failed authentication",
                  json_pack("{s:s,s:s,s:s,s:s}", "door", "socket", "reason",
                            token ? "invalid or expired token" : "no token", "nsp", k->nsp,
                            "peer", k->session ? chat__session_peer(k->session) : ""));
        chat__sock_refuse(k, "unauthorized", NULL);
        connect_ctx_free(cc);
        return;
    }
    authenticated(cc, user_id[0] ? user_id : NULL);
}

/* The "connect/auth" handlers answered: chat.accept(userId) or chat.accept_anonymous()
 * authenticate, chat.reject refuses with its message and data; anything else (nothing,
 * true, a table) decides nothing and the token check applies, so a policy that forgets to
 * answer never lets everyone in. */
static void auth_decided(int status, const char *message, json_t *ev, void *arg)
{
    connect_ctx *cc = arg;
    chat_sock *k = cc->k;
    json_t *accepted = json_object_get(ev, "accepted");
    const char *user_id = json_string_value(json_object_get(accepted, "userId"));
    if (!k->session) {
        connect_ctx_free(cc);
    } else if (status) {
        chat__sock_refuse(k, message ? message : chat_errcode(status),
                          json_object_get(ev, "data"));
        connect_ctx_free(cc);
    } else if (!accepted) {
        token_policy(cc);
    } else if (user_id && !chat__is_object_id(user_id)) {
        chat__log(CHAT_LOG_WARN, "connect_auth_bad_user",
                  "a connect/auth handler accepted a user id that is not one; refused",
                  json_pack("{s:s}", "socket", k->id));
        chat__sock_refuse(k, "unauthorized", NULL);
        connect_ctx_free(cc);
    } else {
        authenticated(cc, user_id);
    }
    json_decref(ev);
}

void chat__domain_connect(chat_sock *k, json_t *auth)
{
    connect_ctx *cc = calloc(1, sizeof *cc);
    if (!cc) {
        json_decref(auth);
        chat__sock_refuse(k, "internal", NULL);
        return;
    }
    cc->k = k;
    cc->auth = json_is_object(auth) ? auth : json_object();
    if (cc->auth != auth) {
        json_decref(auth);
    }
    chat__sock_ref(k);
    if (!chat__script_has(k->rt->script, "connect/auth")) {
        token_policy(cc);
        return;
    }
    json_t *ev = json_pack("{s:o,s:s,s:O}", "socket", chat__socket_json(k), "namespace", k->nsp,
                           "auth", cc->auth);
    chat__script_run(k->rt->script, "connect/auth", ev, auth_decided, cc);
}

void chat__domain_disconnect(chat_sock *k, const char *reason)
{
    chat_runtime *rt = k->rt;
    if (k->connected) {
        chat__notify_hook(rt, "disconnect",
                          json_pack("{s:o,s:o,s:s}", "socket", chat__socket_json(k), "user",
                                    chat__user_json(k->user_id, k->username), "reason",
                                    reason ? reason : "transport close"));
    }
    chat_user_state *u = chat__members_detach(k);
    if (u) { /* its last socket on this node */
        chat__presence_change(rt, u, 0);
        chat__members_user_free(rt, u);
    }
}
