/* store_mongo.c: the scaled-out store on MongoDB (CHAT_MONGO_URI) through mongo-c-driver.
 *
 * Calls run on the uv thread pool, each with a client popped from one mongoc_client_pool_t
 * and pushed back at the end; the loop never waits on the network. Results have exactly the
 * shapes of store_sqlite.c (store.h).
 *
 * Collections, in the database named by the URI (default "chatd"):
 *   users     {_id, email, emailLower, username, usernameLower, passwordHash, status,
 *              lastSeen, avatar, createdAt, displayName, statusText}; unique emailLower_1,
 *              usernameLower_1 (which also serves the username prefix search). The lower-
 *              cased copies make email and username unique case-insensitively without a
 *              collation (ASCII folding, as SQLite's NOCASE: both backends agree).
 *   rooms     {_id, name, type, participants (join order), admin, settings, createdAt};
 *              participants_1.
 *   messages  {_id, roomId, senderId, content, attachments, reactions, clientMsgId,
 *              clientKey, createdAt, updatedAt, reactionsRev}; roomId_1_createdAt_1__id_1 for
 *              paging and unique senderId_1_clientKey_1 for idempotent sends. reactionsRev
 *              counts the new emoji added under a cap (op_message_react).
 *   read_markers {_id: roomId + ":" + userId, roomId, userId, messageId, msgCreatedAt, at};
 *              roomId_1. msgCreatedAt, messageId is the marker's position.
 *   notifications {_id, userId, type, data, createdAt, read}; userId_1_createdAt_1__id_1.
 *   uploads   {_id, uploaderId, name, type, size, createdAt, rooms}: a file's metadata (the
 *              bytes live in the data directory, as with SQLite).
 * Ids are the 24-hex strings the domain makes, stored as strings in _id (not the ObjectId
 * type): every other field that names an id (participants, roomId, senderId, admin) holds
 * the same string, the API speaks strings, and no conversion can disagree between backends.
 * They sort the same way as ObjectIds (same bytes, hex keeps the order).
 *
 * clientKey is "c:" + clientMsgId, or "i:" + _id when there is none, so the unique index on
 * (senderId, clientKey) is exactly "unique (senderId, clientMsgId) where clientMsgId is a
 * string". A partial index would say that directly, but FerretDB (our test server) rejects
 * partialFilterExpression and ignores sparse; this form works on every server.
 *
 * Writes use write concern majority unless the URI sets w (w=0 is refused): a call reports
 * success only for a write the server acknowledged. Network errors, server selection
 * failures and write concern errors answer CHAT_EUNAVAIL, and the client may retry; a retried
 * message:send is deduplicated by its clientMsgId, so an unknown outcome is never doubled. */
#include <ctype.h>
#include <limits.h>
#include <mongoc/mongoc.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "bson_json.h"
#include "chat.h"
#include "log.h"
#include "map.h"
#include "metrics.h"
#include "store.h"

#define MG_DEFAULT_DB "chatd"
#define MG_ROOM_CACHE 65536  /* known room ids kept before the cache starts over */
#define MG_WTIMEOUT_MS 10000 /* majority not reached in time: unavailable */

typedef struct mg_store {
    mongoc_client_pool_t *pool;
    mongoc_uri_t *uri;
    char db[128];
    uv_mutex_t lock; /* guards indexes_ready and rooms */
    int indexes_ready;
    chat_map rooms;  /* ids of rooms known to exist: rooms are never deleted */
    atomic_int down; /* the last call found the server unavailable (log once per outage) */
} mg_store;

/* One call: the client it borrowed and what failed. */
typedef struct mg_call {
    mg_store *st;
    mongoc_client_t *client;
    const char *op;
    const char *conflict; /* the field named by a CHAT_ECONFLICT result */
} mg_call;

static int mg_ensure_indexes(mg_call *c);

/* ---- errors ---- */

/* Server error codes that mean "not now" rather than "not this". */
static const int mg_unavail_codes[] = {
    6,     /* HostUnreachable */
    7,     /* HostNotFound */
    50,    /* MaxTimeMSExpired */
    64,    /* WriteConcernFailed */
    89,    /* NetworkTimeout */
    91,    /* ShutdownInProgress */
    189,   /* PrimarySteppedDown */
    262,   /* ExceededTimeLimit */
    9001,  /* SocketException */
    10107, /* NotWritablePrimary */
    11600, /* InterruptedAtShutdown */
    11602, /* InterruptedDueToReplStateChange */
    13435, /* NotPrimaryNoSecondaryOk */
    13436, /* NotPrimaryOrSecondary */
};

/* Codes that reject the data itself (a bad key in attachments, a document too large). */
static const struct {
    int code;
    int err;
} mg_data_codes[] = {
    {2, CHAT_EINVAL},      /* BadValue */
    {9, CHAT_EINVAL},      /* FailedToParse */
    {14, CHAT_EINVAL},     /* TypeMismatch */
    {52, CHAT_EINVAL},     /* DollarPrefixedFieldName */
    {55, CHAT_EINVAL},     /* InvalidDBRef */
    {56, CHAT_EINVAL},     /* EmptyFieldName */
    {57, CHAT_EINVAL},     /* DottedFieldName */
    {10334, CHAT_ETOOBIG}, /* BSONObjectTooLarge */
    {17419, CHAT_ETOOBIG}, /* document too large for the wire */
    {17420, CHAT_ETOOBIG},
};

static int mg_error_status(const bson_error_t *e, const bson_t *reply)
{
    if (reply && (mongoc_error_has_label(reply, "RetryableWriteError") ||
                  mongoc_error_has_label(reply, "TransientTransactionError"))) {
        return CHAT_EUNAVAIL;
    }
    switch (e->domain) {
    case MONGOC_ERROR_STREAM:
    case MONGOC_ERROR_SERVER_SELECTION:
    case MONGOC_ERROR_WRITE_CONCERN:
    case MONGOC_ERROR_PROTOCOL:
    case MONGOC_ERROR_SASL:
    case MONGOC_ERROR_SCRAM:
        return CHAT_EUNAVAIL;
    case MONGOC_ERROR_CLIENT:
        return e->code == MONGOC_ERROR_CLIENT_TOO_BIG ? CHAT_ETOOBIG : CHAT_EUNAVAIL;
    case MONGOC_ERROR_BSON:
        return CHAT_EINVAL;
    default:
        break;
    }
    if (e->code == MONGOC_ERROR_DUPLICATE_KEY || e->code == 11001 || e->code == 12582) {
        return CHAT_ECONFLICT;
    }
    for (size_t i = 0; i < sizeof mg_unavail_codes / sizeof mg_unavail_codes[0]; i++) {
        if ((int)e->code == mg_unavail_codes[i]) {
            return CHAT_EUNAVAIL;
        }
    }
    for (size_t i = 0; i < sizeof mg_data_codes / sizeof mg_data_codes[0]; i++) {
        if ((int)e->code == mg_data_codes[i].code) {
            return mg_data_codes[i].err;
        }
    }
    return CHAT_EINTERNAL;
}

/* Maps a driver failure to CHAT_E* and logs what is not an ordinary answer: unavailability
 * once per outage, anything unexpected every time. */
static int mg_fail(mg_call *c, const bson_error_t *e, const bson_t *reply)
{
    int err = mg_error_status(e, reply);
    if (err == CHAT_EUNAVAIL) {
        if (!atomic_exchange(&c->st->down, 1)) {
            chat__log(CHAT_LOG_WARN, "store_unavailable",
                      "MongoDB does not answer; store calls answer unavailable (clients retry) "
                      "until it is back. Check the server and CHAT_MONGO_URI",
                      json_pack("{s:s,s:s,s:i,s:i,s:s}", "backend", "mongo", "op", c->op, "domain",
                                (int)e->domain, "code", (int)e->code, "error", e->message));
        }
    } else if (err != CHAT_ECONFLICT) {
        chat__log(CHAT_LOG_ERROR, "store_error",
                  "a MongoDB operation failed; the store call reports an error",
                  json_pack("{s:s,s:s,s:i,s:i,s:s}", "backend", "mongo", "op", c->op, "domain",
                            (int)e->domain, "code", (int)e->code, "error", e->message));
    }
    return err;
}

static void mg_succeeded(mg_call *c)
{
    if (atomic_load(&c->st->down) && atomic_exchange(&c->st->down, 0)) {
        chat__metrics_store_reconnect();
        chat__log(CHAT_LOG_INFO, "store_available", "MongoDB answers again",
                  json_pack("{s:s,s:s}", "backend", "mongo", "op", c->op));
    }
}

#define NFIELDS(f) ((int)(sizeof(f) / sizeof((f)[0])))

/* the checked fields (store.h) by their short names */
enum { U_ID = CHAT_U_ID, U_EMAIL = CHAT_U_EMAIL, U_USERNAME = CHAT_U_USERNAME, U_HASH = CHAT_U_HASH,
       U_STATUS = CHAT_U_STATUS, U_AVATAR = CHAT_U_AVATAR, U_CREATED = CHAT_U_CREATED };
enum { R_ID = CHAT_R_ID, R_NAME = CHAT_R_NAME, R_TYPE = CHAT_R_TYPE, R_ADMIN = CHAT_R_ADMIN,
       R_SETTINGS = CHAT_R_SETTINGS, R_CREATED = CHAT_R_CREATED };
enum { M_ID = CHAT_M_ID, M_ROOM = CHAT_M_ROOM, M_SENDER = CHAT_M_SENDER, M_CONTENT = CHAT_M_CONTENT,
       M_ATT = CHAT_M_ATT, M_REACT = CHAT_M_REACT, M_CLIENT = CHAT_M_CLIENT,
       M_CREATED = CHAT_M_CREATED, M_UPDATED = CHAT_M_UPDATED };

/* ---- documents -> objects: each object's members in order, from which field ---- */

enum { C_PLAIN, C_OBJECT, C_ARRAY, C_FLAG /* true when the field is true, else absent */,
       C_REACTIONS /* an object whose emptied arrays ($pull leaves them) are left out */ };

typedef struct mg_col {
    const char *key;   /* in the result */
    const char *field; /* in the document */
    int kind;          /* C_OBJECT, C_ARRAY: {} or [] when absent */
} mg_col;

static const mg_col user_cols[] = {
    {"id", "_id", C_PLAIN},
    {"email", "email", C_PLAIN},
    {"username", "username", C_PLAIN},
    {"passwordHash", "passwordHash", C_PLAIN},
    {"status", "status", C_PLAIN},
    {"lastSeen", "lastSeen", C_PLAIN},
    {"avatar", "avatar", C_PLAIN},
    {"createdAt", "createdAt", C_PLAIN},
    {"displayName", "displayName", C_PLAIN},
    {"statusText", "statusText", C_PLAIN},
};
static const mg_col room_cols[] = {
    {"id", "_id", C_PLAIN},
    {"name", "name", C_PLAIN},
    {"type", "type", C_PLAIN},
    {"participants", "participants", C_ARRAY},
    {"admin", "admin", C_PLAIN},
    {"settings", "settings", C_OBJECT},
    {"createdAt", "createdAt", C_PLAIN},
};
static const mg_col msg_cols[] = {
    {"id", "_id", C_PLAIN},
    {"roomId", "roomId", C_PLAIN},
    {"senderId", "senderId", C_PLAIN},
    {"content", "content", C_PLAIN},
    {"attachments", "attachments", C_ARRAY},
    {"reactions", "reactions", C_REACTIONS},
    {"clientMsgId", "clientMsgId", C_PLAIN},
    {"createdAt", "createdAt", C_PLAIN},
    {"updatedAt", "updatedAt", C_PLAIN},
    {"deleted", "deleted", C_FLAG},
};

/* The document as a result object; NULL (logged) on out-of-memory or a corrupt field. */
static json_t *mg_doc_json(mg_call *c, const bson_t *doc, const mg_col *cols, int n)
{
    json_t *obj = json_object();
    bson_iter_t it;

    if (!obj) {
        return NULL;
    }
    for (int i = 0; i < n; i++) {
        json_t *v = NULL;
        if (cols[i].kind == C_FLAG) {
            if (bson_iter_init_find(&it, doc, cols[i].field) && BSON_ITER_HOLDS_BOOL(&it) &&
                bson_iter_bool(&it) && json_object_set_new(obj, cols[i].key, json_true())) {
                json_decref(obj);
                return NULL;
            }
            continue;
        }
        if (bson_iter_init_find(&it, doc, cols[i].field) && !BSON_ITER_HOLDS_NULL(&it)) {
            v = chat__bson_to_json(&it);
            if (v && cols[i].kind != C_PLAIN &&
                json_typeof(v) != (cols[i].kind == C_ARRAY ? JSON_ARRAY : JSON_OBJECT)) {
                json_decref(v);
                v = NULL;
            }
            if (v && cols[i].kind == C_REACTIONS) {
                const char *k;
                json_t *x;
                void *tmp;
                json_object_foreach_safe (v, tmp, k, x) {
                    if (json_is_array(x) && !json_array_size(x)) {
                        json_object_del(v, k);
                    }
                }
            }
        } else {
            v = cols[i].kind == C_OBJECT || cols[i].kind == C_REACTIONS ? json_object()
                : cols[i].kind == C_ARRAY ? json_array()
                                          : json_null();
        }
        if (!v || json_object_set_new(obj, cols[i].key, v) != 0) {
            chat__log(CHAT_LOG_ERROR, "store_error",
                      "a stored document could not be turned into JSON (out of memory or a "
                      "field of an unexpected type)",
                      json_pack("{s:s,s:s,s:s}", "backend", "mongo", "op", c->op, "field",
                                cols[i].field));
            json_decref(obj);
            return NULL;
        }
    }
    return obj;
}

/* ---- small driver wrappers ---- */

static mongoc_collection_t *mg_coll(mg_call *c, const char *name)
{
    return mongoc_client_get_collection(c->client, c->st->db, name);
}

/* ASCII lower case, like SQLite's NOCASE. Returns a malloc'd copy or NULL. */
static char *mg_lower(json_t *s)
{
    size_t n = json_string_length(s);
    char *out = malloc(n + 1);
    if (out) {
        const char *in = json_string_value(s);
        for (size_t i = 0; i < n; i++) {
            out[i] = (char)tolower((unsigned char)in[i]);
        }
        out[n] = '\0';
    }
    return out;
}

static bool mg_append_str(bson_t *b, const char *key, json_t *s)
{
    return bson_append_utf8(b, key, -1, json_string_value(s), (int)json_string_length(s));
}

/* Finds one document in coll matching filter (opts may add a projection or sort) and turns
 * it into an object with cols: 0, CHAT_ENOTFOUND or an error. */
static int mg_find_one(mg_call *c, const char *coll_name, const bson_t *filter, const bson_t *opts,
                       const mg_col *cols, int ncols, json_t **out)
{
    mongoc_collection_t *coll = mg_coll(c, coll_name);
    bson_t o = BSON_INITIALIZER;
    const bson_t *doc;
    bson_error_t error;
    int err = CHAT_ENOTFOUND;

    if (opts) {
        bson_concat(&o, opts);
    }
    BSON_APPEND_INT64(&o, "limit", 1);
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(coll, filter, &o, NULL);
    if (mongoc_cursor_next(cur, &doc)) {
        *out = cols ? mg_doc_json(c, doc, cols, ncols) : json_null();
        err = *out ? 0 : CHAT_EINTERNAL;
    } else if (mongoc_cursor_error_document(cur, &error, &doc)) {
        err = mg_fail(c, &error, doc);
    }
    mongoc_cursor_destroy(cur);
    bson_destroy(&o);
    mongoc_collection_destroy(coll);
    return err;
}

static int mg_find_by_id(mg_call *c, const char *coll_name, json_t *id, const mg_col *cols,
                         int ncols, json_t **out)
{
    bson_t filter = BSON_INITIALIZER;
    int err = mg_append_str(&filter, "_id", id)
                  ? mg_find_one(c, coll_name, &filter, NULL, cols, ncols, out)
                  : CHAT_EINVAL;
    bson_destroy(&filter);
    return err;
}

/* Inserts doc; 0, CHAT_ECONFLICT (a unique index), or an error. */
static int mg_insert(mg_call *c, const char *coll_name, const bson_t *doc)
{
    mongoc_collection_t *coll = mg_coll(c, coll_name);
    bson_error_t error;
    bson_t reply;
    int err = 0;

    if (!mongoc_collection_insert_one(coll, doc, NULL, &reply, &error)) {
        err = mg_fail(c, &error, &reply);
    }
    bson_destroy(&reply);
    mongoc_collection_destroy(coll);
    return err;
}

/* ---- the room cache ---- */

static int mg_room_known(mg_store *st, const char *id)
{
    uv_mutex_lock(&st->lock);
    int known = chat__map_get(&st->rooms, id) != NULL;
    uv_mutex_unlock(&st->lock);
    return known;
}

static void mg_room_remember(mg_store *st, const char *id)
{
    char *copy = strdup(id);
    if (!copy) {
        return; /* only a cache */
    }
    uv_mutex_lock(&st->lock);
    if (st->rooms.len >= MG_ROOM_CACHE) {
        char *k;
        for (size_t i = 0; (k = chat__map_next(&st->rooms, &i));) {
            free(k);
        }
        chat__map_free(&st->rooms);
        memset(&st->rooms, 0, sizeof st->rooms);
    }
    if (chat__map_get(&st->rooms, copy) || chat__map_put(&st->rooms, copy, copy)) {
        free(copy);
    }
    uv_mutex_unlock(&st->lock);
}

/* 0 when the room exists, CHAT_ENOTFOUND, or an error. */
static int mg_room_exists(mg_call *c, json_t *room_id)
{
    json_t *found = NULL;
    if (mg_room_known(c->st, json_string_value(room_id))) {
        return 0;
    }
    bson_t opts = BSON_INITIALIZER;
    bson_t proj;
    BSON_APPEND_DOCUMENT_BEGIN(&opts, "projection", &proj);
    BSON_APPEND_INT32(&proj, "_id", 1);
    bson_append_document_end(&opts, &proj);
    bson_t filter = BSON_INITIALIZER;
    mg_append_str(&filter, "_id", room_id);
    int err = mg_find_one(c, "rooms", &filter, &opts, NULL, 0, &found);
    bson_destroy(&filter);
    bson_destroy(&opts);
    json_decref(found);
    if (!err) {
        mg_room_remember(c->st, json_string_value(room_id));
    }
    return err;
}

/* ---- users ---- */

/* Which unique index a duplicate user hit. MongoDB names the index in the message; FerretDB
 * does not, so the fallback looks for each taken value. */
static const char *mg_user_conflict(mg_call *c, json_t *const *v, const char *email_lower,
                                    const char *username_lower)
{
    static const struct {
        const char *field;
        const char *result;
    } order[] = {{"_id", "id"}, {"emailLower", "email"}, {"usernameLower", "username"}};
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
        bson_t filter = BSON_INITIALIZER;
        json_t *found = NULL;
        if (i == 0) {
            mg_append_str(&filter, "_id", v[U_ID]);
        } else {
            BSON_APPEND_UTF8(&filter, order[i].field, i == 1 ? email_lower : username_lower);
        }
        int err = mg_find_one(c, "users", &filter, NULL, NULL, 0, &found);
        bson_destroy(&filter);
        json_decref(found);
        if (err == 0) {
            return order[i].result;
        }
    }
    return "id";
}

static int op_user_create(mg_call *c, const chat_store_req *q, json_t **result)
{
    json_t *const *v = q->v;
    bson_t doc = BSON_INITIALIZER;
    char *email_lower = NULL;
    char *username_lower = NULL;
    int err = CHAT_ENOMEM;

    email_lower = mg_lower(v[U_EMAIL]);
    username_lower = mg_lower(v[U_USERNAME]);
    if (!email_lower || !username_lower) {
        goto done;
    }
    err = CHAT_EINVAL;
    if (!mg_append_str(&doc, "_id", v[U_ID]) || !mg_append_str(&doc, "email", v[U_EMAIL]) ||
        !BSON_APPEND_UTF8(&doc, "emailLower", email_lower) ||
        !mg_append_str(&doc, "username", v[U_USERNAME]) ||
        !BSON_APPEND_UTF8(&doc, "usernameLower", username_lower) ||
        !mg_append_str(&doc, "passwordHash", v[U_HASH]) ||
        !(v[U_STATUS] ? mg_append_str(&doc, "status", v[U_STATUS])
                      : BSON_APPEND_UTF8(&doc, "status", "offline")) ||
        !BSON_APPEND_NULL(&doc, "lastSeen") ||
        !chat__bson_append_json(&doc, "avatar", -1, v[U_AVATAR]) ||
        !BSON_APPEND_INT64(&doc, "createdAt", json_integer_value(v[U_CREATED])) ||
        !BSON_APPEND_NULL(&doc, "displayName") || !BSON_APPEND_NULL(&doc, "statusText")) {
        goto done;
    }
    err = mg_insert(c, "users", &doc);
    if (err == CHAT_ECONFLICT) {
        c->conflict = mg_user_conflict(c, v, email_lower, username_lower);
        goto done;
    }
    if (!err) {
        *result = mg_doc_json(c, &doc, user_cols, NFIELDS(user_cols));
        err = *result ? 0 : CHAT_ENOMEM;
    }
done:
    free(email_lower);
    free(username_lower);
    bson_destroy(&doc);
    return err;
}

static int op_user_by_login(mg_call *c, const chat_store_req *q, json_t **result)
{
    json_t *const *v = q->v;
    int err;
    char *lower = mg_lower(v[0]);
    if (!lower) {
        return CHAT_ENOMEM;
    }
    /* an email match wins over a username match, as in SQLite: two indexed lookups */
    static const char *const fields[] = {"emailLower", "usernameLower"};
    err = CHAT_ENOTFOUND;
    for (size_t i = 0; i < 2 && err == CHAT_ENOTFOUND; i++) {
        bson_t filter = BSON_INITIALIZER;
        BSON_APPEND_UTF8(&filter, fields[i], lower);
        err = mg_find_one(c, "users", &filter, NULL, user_cols, NFIELDS(user_cols), result);
        bson_destroy(&filter);
    }
    free(lower);
    return err;
}

static int op_user_get(mg_call *c, const chat_store_req *q, json_t **result)
{
    return mg_find_by_id(c, "users", q->v[0], user_cols, NFIELDS(user_cols), result);
}

static int op_user_set_seen(mg_call *c, const chat_store_req *q, json_t **result)
{
    json_t *const *v = q->v;
    int err;
    bson_t filter = BSON_INITIALIZER;
    bson_t update = BSON_INITIALIZER;
    bson_t set;
    bson_t reply;
    bson_error_t error;
    mg_append_str(&filter, "_id", v[0]);
    BSON_APPEND_DOCUMENT_BEGIN(&update, "$set", &set);
    chat__bson_append_json(&set, "lastSeen", -1, v[1]);
    if (v[2]) {
        mg_append_str(&set, "status", v[2]);
    }
    bson_append_document_end(&update, &set);
    mongoc_collection_t *coll = mg_coll(c, "users");
    if (!mongoc_collection_update_one(coll, &filter, &update, NULL, &reply, &error)) {
        err = mg_fail(c, &error, &reply);
    } else {
        bson_iter_t it;
        int64_t matched =
            bson_iter_init_find(&it, &reply, "matchedCount") ? bson_iter_as_int64(&it) : 0;
        err = matched ? 0 : CHAT_ENOTFOUND;
    }
    bson_destroy(&reply);
    mongoc_collection_destroy(coll);
    bson_destroy(&update);
    bson_destroy(&filter);
    if (!err) {
        *result = json_null();
    }
    return err;
}

/* One findAndModify on coll answering with the document after the update, as an object with
 * cols: 0, CHAT_ENOTFOUND (nothing matched query) or an error. */
static int mg_modify_one(mg_call *c, const char *coll_name, const bson_t *query,
                         const bson_t *update, const mg_col *cols, int ncols, json_t **result)
{
    bson_t reply;
    bson_error_t error;
    int err;
    mongoc_find_and_modify_opts_t *opts = mongoc_find_and_modify_opts_new();
    mongoc_find_and_modify_opts_set_update(opts, update);
    mongoc_find_and_modify_opts_set_flags(opts, MONGOC_FIND_AND_MODIFY_RETURN_NEW);
    mongoc_collection_t *coll = mg_coll(c, coll_name);
    if (!mongoc_collection_find_and_modify_with_opts(coll, query, opts, &reply, &error)) {
        err = mg_fail(c, &error, &reply);
    } else {
        bson_iter_t it;
        err = CHAT_ENOTFOUND;
        if (bson_iter_init_find(&it, &reply, "value") && BSON_ITER_HOLDS_DOCUMENT(&it)) {
            uint32_t len;
            const uint8_t *data;
            bson_t doc;
            bson_iter_document(&it, &len, &data);
            err = CHAT_EINTERNAL;
            if (bson_init_static(&doc, data, len)) {
                *result = mg_doc_json(c, &doc, cols, ncols);
                err = *result ? 0 : CHAT_EINTERNAL;
            }
        }
    }
    bson_destroy(&reply);
    mongoc_collection_destroy(coll);
    mongoc_find_and_modify_opts_destroy(opts);
    return err;
}

/* Applies a USER_UPDATE in one findAndModify that answers with the user after it. */
static int op_user_update(mg_call *c, const chat_store_req *q, json_t **result)
{
    static const struct {
        int field;
        const char *name;
    } fields[] = {{CHAT_UU_NAME, "displayName"},
                  {CHAT_UU_AVATAR, "avatar"},
                  {CHAT_UU_STATUS_TEXT, "statusText"}};
    json_t *const *v = q->v;
    bson_t query = BSON_INITIALIZER;
    bson_t update = BSON_INITIALIZER;
    bson_t set;
    int nset = 0;
    int err;

    mg_append_str(&query, "_id", v[CHAT_UU_ID]);
    BSON_APPEND_DOCUMENT_BEGIN(&update, "$set", &set);
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        json_t *x = v[fields[i].field];
        if (!x) {
            continue;
        }
        nset++;
        if (json_string_length(x) == 0) {
            BSON_APPEND_NULL(&set, fields[i].name);
        } else {
            mg_append_str(&set, fields[i].name, x);
        }
    }
    bson_append_document_end(&update, &set);
    if (!nset) { /* nothing to change: MongoDB refuses an empty $set */
        bson_destroy(&update);
        bson_destroy(&query);
        return mg_find_by_id(c, "users", v[CHAT_UU_ID], user_cols, NFIELDS(user_cols), result);
    }
    err = mg_modify_one(c, "users", &query, &update, user_cols, NFIELDS(user_cols), result);
    bson_destroy(&update);
    bson_destroy(&query);
    return err;
}

static int mg_find_all(mg_call *c, const char *coll_name, const bson_t *filter, const bson_t *opts,
                       const mg_col *cols, int ncols, json_t *into);

/* One find with $in, then the answer put in the order of the ids. */
static int op_users_get(mg_call *c, const chat_store_req *q, json_t **result)
{
    json_t *found = json_array();
    json_t *users = json_array();
    bson_t filter = BSON_INITIALIZER;
    bson_t id, in;
    size_t i;
    json_t *x;
    int err = CHAT_ENOMEM;

    if (!found || !users) {
        goto done;
    }
    BSON_APPEND_DOCUMENT_BEGIN(&filter, "_id", &id);
    BSON_APPEND_ARRAY_BEGIN(&id, "$in", &in);
    json_array_foreach (q->ids, i, x) {
        char key[24];
        snprintf(key, sizeof key, "%u", (unsigned)i); /* i < CHAT_STORE_IDS_MAX */
        mg_append_str(&in, key, x);
    }
    bson_append_array_end(&id, &in);
    bson_append_document_end(&filter, &id);
    if ((err = mg_find_all(c, "users", &filter, NULL, user_cols, NFIELDS(user_cols), found))) {
        goto done;
    }
    json_array_foreach (q->ids, i, x) {
        size_t j;
        json_t *u;
        json_array_foreach (found, j, u) {
            if (json_equal(json_object_get(u, "id"), x)) {
                if (json_array_append(users, u)) {
                    err = CHAT_ENOMEM;
                    goto done;
                }
                break;
            }
        }
    }
    *result = users;
    users = NULL;
    err = 0;
done:
    bson_destroy(&filter);
    json_decref(found);
    json_decref(users);
    return err;
}

/* A range on usernameLower: [prefix, prefix + 0x7f), every username character being below. */
static int op_users_search(mg_call *c, const chat_store_req *q, json_t **result)
{
    json_t *users = json_array();
    char *lower = mg_lower(q->v[CHAT_US_PREFIX]);
    size_t n = json_string_length(q->v[CHAT_US_PREFIX]);
    char *upper = malloc(n + 2);
    bson_t filter = BSON_INITIALIZER;
    bson_t opts = BSON_INITIALIZER;
    bson_t range, sort;
    int err = CHAT_ENOMEM;

    if (!users || !lower || !upper) {
        goto done;
    }
    memcpy(upper, lower, n);
    upper[n] = 0x7f;
    upper[n + 1] = '\0';
    BSON_APPEND_DOCUMENT_BEGIN(&filter, "usernameLower", &range);
    bson_append_utf8(&range, "$gte", -1, lower, (int)n);
    bson_append_utf8(&range, "$lt", -1, upper, (int)n + 1);
    bson_append_document_end(&filter, &range);
    BSON_APPEND_DOCUMENT_BEGIN(&opts, "sort", &sort);
    BSON_APPEND_INT32(&sort, "usernameLower", 1);
    bson_append_document_end(&opts, &sort);
    BSON_APPEND_INT64(&opts, "limit", q->limit);
    if ((err = mg_find_all(c, "users", &filter, &opts, user_cols, NFIELDS(user_cols), users))) {
        goto done;
    }
    *result = users;
    users = NULL;
done:
    bson_destroy(&opts);
    bson_destroy(&filter);
    free(lower);
    free(upper);
    json_decref(users);
    return err;
}

/* ---- edits and deletes ---- */

static int op_message_get(mg_call *c, const chat_store_req *q, json_t **result)
{
    return mg_find_by_id(c, "messages", q->v[0], msg_cols, NFIELDS(msg_cols), result);
}

/* {_id: id, deleted: {$ne: true}}: only a live message changes */
static void mg_live_message(bson_t *query, json_t *id)
{
    bson_t ne;
    mg_append_str(query, "_id", id);
    BSON_APPEND_DOCUMENT_BEGIN(query, "deleted", &ne);
    BSON_APPEND_BOOL(&ne, "$ne", true);
    bson_append_document_end(query, &ne);
}

static int op_message_edit(mg_call *c, const chat_store_req *q, json_t **result)
{
    bson_t query = BSON_INITIALIZER;
    bson_t update = BSON_INITIALIZER;
    bson_t set;
    mg_live_message(&query, q->v[CHAT_ME_ID]);
    BSON_APPEND_DOCUMENT_BEGIN(&update, "$set", &set);
    mg_append_str(&set, "content", q->v[CHAT_ME_CONTENT]);
    BSON_APPEND_INT64(&set, "updatedAt", json_integer_value(q->v[CHAT_ME_UPDATED]));
    bson_append_document_end(&update, &set);
    int err = mg_modify_one(c, "messages", &query, &update, msg_cols, NFIELDS(msg_cols), result);
    bson_destroy(&update);
    bson_destroy(&query);
    return err;
}

static int op_message_delete(mg_call *c, const chat_store_req *q, json_t **result)
{
    bson_t query = BSON_INITIALIZER;
    bson_t update = BSON_INITIALIZER;
    bson_t set, empty;
    mg_live_message(&query, q->v[CHAT_MD_ID]);
    BSON_APPEND_DOCUMENT_BEGIN(&update, "$set", &set);
    BSON_APPEND_BOOL(&set, "deleted", true);
    BSON_APPEND_UTF8(&set, "content", "");
    BSON_APPEND_ARRAY_BEGIN(&set, "attachments", &empty);
    bson_append_array_end(&set, &empty);
    BSON_APPEND_DOCUMENT_BEGIN(&set, "reactions", &empty);
    bson_append_document_end(&set, &empty);
    BSON_APPEND_INT64(&set, "updatedAt", json_integer_value(q->v[CHAT_MD_UPDATED]));
    bson_append_document_end(&update, &set);
    int err = mg_modify_one(c, "messages", &query, &update, msg_cols, NFIELDS(msg_cols), result);
    bson_destroy(&update);
    bson_destroy(&query);
    return err;
}

#define REACT_TRIES 64 /* compare-and-set rounds a capped reaction waits through */

static const mg_col react_cols[] = {
    {"reactions", "reactions", C_REACTIONS},
    {"rev", "reactionsRev", C_PLAIN},
};

/* One reaction update: $addToSet (on) or $pull of the user on reactions.<emoji>, on a live
 * message also matching extra (NULL: none); $inc reactionsRev when bump. */
static int mg_react_update(mg_call *c, const chat_store_req *q, const char *path,
                           const bson_t *extra, int bump, json_t **result)
{
    json_t *const *v = q->v;
    bson_t query = BSON_INITIALIZER;
    bson_t update = BSON_INITIALIZER;
    bson_t op;
    mg_live_message(&query, v[CHAT_MR_ID]);
    if (extra) {
        bson_concat(&query, extra);
    }
    BSON_APPEND_DOCUMENT_BEGIN(&update, json_is_true(v[CHAT_MR_ON]) ? "$addToSet" : "$pull", &op);
    mg_append_str(&op, path, v[CHAT_MR_USER]);
    bson_append_document_end(&update, &op);
    if (bump) {
        BSON_APPEND_DOCUMENT_BEGIN(&update, "$inc", &op);
        BSON_APPEND_INT64(&op, "reactionsRev", 1);
        bson_append_document_end(&update, &op);
    }
    int err = mg_modify_one(c, "messages", &query, &update, msg_cols, NFIELDS(msg_cols), result);
    bson_destroy(&update);
    bson_destroy(&query);
    return err;
}

/* Adding under max, which no single update can check (FerretDB has no $expr to count the
 * emoji): read the reactions and their revision, then write only if the check still holds.
 * To an emoji with users, the write requires it still has some (so it cannot come back
 * between a removal and another emoji's arrival); a new emoji requires the revision read,
 * and bumps it, so of two new emoji racing for the last place one wins and the other reads
 * again and finds the message full. Removals need no check: they only make room. */
static int mg_react_capped(mg_call *c, const chat_store_req *q, const char *path,
                           json_t **result)
{
    json_t *const *v = q->v;
    size_t max = (size_t)json_integer_value(v[CHAT_MR_MAX]);
    for (int i = 0; i < REACT_TRIES; i++) {
        json_t *now = NULL;
        bson_t filter = BSON_INITIALIZER;
        mg_live_message(&filter, v[CHAT_MR_ID]);
        int err = mg_find_one(c, "messages", &filter, NULL, react_cols, NFIELDS(react_cols), &now);
        bson_destroy(&filter);
        if (err) {
            return err;
        }
        json_t *reactions = json_object_get(now, "reactions"); /* emptied emoji left out */
        json_t *rev = json_object_get(now, "rev");
        int has = json_object_get(reactions, json_string_value(v[CHAT_MR_EMOJI])) != NULL;
        int full = json_object_size(reactions) >= max;
        bson_t cond = BSON_INITIALIZER, sub, none;
        if (has) {
            /* {path: {$exists: true, $ne: []}} */
            BSON_APPEND_DOCUMENT_BEGIN(&cond, path, &sub);
            BSON_APPEND_BOOL(&sub, "$exists", true);
            BSON_APPEND_ARRAY_BEGIN(&sub, "$ne", &none);
            bson_append_array_end(&sub, &none);
            bson_append_document_end(&cond, &sub);
        } else if (json_is_integer(rev)) {
            BSON_APPEND_INT64(&cond, "reactionsRev", json_integer_value(rev));
        } else {
            BSON_APPEND_DOCUMENT_BEGIN(&cond, "reactionsRev", &sub);
            BSON_APPEND_BOOL(&sub, "$exists", false);
            bson_append_document_end(&cond, &sub);
        }
        json_decref(now);
        if (!has && full) {
            bson_destroy(&cond);
            return CHAT_ECONFLICT;
        }
        err = mg_react_update(c, q, path, &cond, !has, result);
        bson_destroy(&cond);
        if (err != CHAT_ENOTFOUND) {
            return err;
        }
        /* it changed (or was deleted) since the read: read again */
    }
    return CHAT_EUNAVAIL; /* too busy to settle: the client may retry */
}

/* $addToSet or $pull on reactions.<emoji>, answered with the message; one atomic update
 * unless a capped addition has to check first (mg_react_capped). On MongoDB that is enough,
 * across nodes. FerretDB 1.x (the tests' MongoDB) runs findAndModify as a query and then an
 * unconditional write, so two calls at once for one message lose each other's reaction and
 * both pass the cap's check: the domain sends one node's reactions to a message here one at
 * a time (message_ops.c), so nothing waits on a pool thread. */
static int op_message_react(mg_call *c, const chat_store_req *q, json_t **result)
{
    json_t *const *v = q->v;
    size_t n = json_string_length(v[CHAT_MR_EMOJI]);
    char *path = malloc(n + sizeof "reactions.");
    if (!path) {
        return CHAT_ENOMEM;
    }
    snprintf(path, n + sizeof "reactions.", "reactions.%s", json_string_value(v[CHAT_MR_EMOJI]));
    int err = json_is_true(v[CHAT_MR_ON]) && json_integer_value(v[CHAT_MR_MAX]) > 0
                  ? mg_react_capped(c, q, path, result)
                  : mg_react_update(c, q, path, NULL, 0, result);
    free(path);
    return err;
}

/* ---- read markers ---- */

static const mg_col read_cols[] = {
    {"roomId", "roomId", C_PLAIN},
    {"userId", "userId", C_PLAIN},
    {"messageId", "messageId", C_PLAIN},
    {"at", "at", C_PLAIN},
};

/* position < (created, id): {$or: [{msgCreatedAt: {$lt: created}}, {msgCreatedAt: created,
 * messageId: {$lt: id}}]} appended to filter (field names given) */
static void mg_before(bson_t *filter, const char *time_field, const char *id_field,
                      int64_t created, json_t *id, const char *op)
{
    bson_t or, a, b, lt, lt2;
    BSON_APPEND_ARRAY_BEGIN(filter, "$or", &or);
    BSON_APPEND_DOCUMENT_BEGIN(&or, "0", &a);
    BSON_APPEND_DOCUMENT_BEGIN(&a, time_field, &lt);
    BSON_APPEND_INT64(&lt, op, created);
    bson_append_document_end(&a, &lt);
    bson_append_document_end(&or, &a);
    BSON_APPEND_DOCUMENT_BEGIN(&or, "1", &b);
    BSON_APPEND_INT64(&b, time_field, created);
    BSON_APPEND_DOCUMENT_BEGIN(&b, id_field, &lt2);
    mg_append_str(&lt2, op, id);
    bson_append_document_end(&b, &lt2);
    bson_append_document_end(&or, &b);
    bson_append_array_end(filter, &or);
}

static char *mg_marker_id(json_t *room, json_t *user)
{
    char *key = malloc(json_string_length(room) + json_string_length(user) + 2);
    if (key) {
        sprintf(key, "%s:%s", json_string_value(room), json_string_value(user));
    }
    return key;
}

/* An upsert guarded by the position: an older marker matches and moves; a newer one does
 * not match, so the upsert tries to insert its _id and hits the duplicate key: not moved. */
static int op_read_set(mg_call *c, const chat_store_req *q, json_t **result)
{
    json_t *const *v = q->v;
    json_t *pos = NULL;
    static const mg_col pos_cols[] = {{"createdAt", "createdAt", C_PLAIN}};
    bson_t pf = BSON_INITIALIZER;
    mg_append_str(&pf, "_id", v[CHAT_RD_MSG]);
    mg_append_str(&pf, "roomId", v[CHAT_RD_ROOM]);
    int err = mg_find_one(c, "messages", &pf, NULL, pos_cols, 1, &pos);
    bson_destroy(&pf);
    if (err) {
        return err;
    }
    int64_t created = json_integer_value(json_object_get(pos, "createdAt"));
    json_decref(pos);
    char *key = mg_marker_id(v[CHAT_RD_ROOM], v[CHAT_RD_USER]);
    if (!key) {
        return CHAT_ENOMEM;
    }
    bson_t filter = BSON_INITIALIZER;
    bson_t update = BSON_INITIALIZER;
    bson_t opts = BSON_INITIALIZER;
    bson_t set;
    bson_t reply;
    bson_error_t error;
    BSON_APPEND_UTF8(&filter, "_id", key);
    mg_before(&filter, "msgCreatedAt", "messageId", created, v[CHAT_RD_MSG], "$lt");
    BSON_APPEND_DOCUMENT_BEGIN(&update, "$set", &set);
    mg_append_str(&set, "roomId", v[CHAT_RD_ROOM]);
    mg_append_str(&set, "userId", v[CHAT_RD_USER]);
    mg_append_str(&set, "messageId", v[CHAT_RD_MSG]);
    BSON_APPEND_INT64(&set, "msgCreatedAt", created);
    BSON_APPEND_INT64(&set, "at", json_integer_value(v[CHAT_RD_AT]));
    bson_append_document_end(&update, &set);
    BSON_APPEND_BOOL(&opts, "upsert", true);
    int moved = 1;
    mongoc_collection_t *coll = mg_coll(c, "read_markers");
    if (!mongoc_collection_update_one(coll, &filter, &update, &opts, &reply, &error)) {
        err = mg_fail(c, &error, &reply);
        if (err == CHAT_ECONFLICT) {
            err = 0;
            moved = 0;
        }
    }
    bson_destroy(&reply);
    mongoc_collection_destroy(coll);
    bson_destroy(&opts);
    bson_destroy(&update);
    bson_destroy(&filter);
    if (!err) {
        bson_t id = BSON_INITIALIZER;
        BSON_APPEND_UTF8(&id, "_id", key);
        err = mg_find_one(c, "read_markers", &id, NULL, read_cols, NFIELDS(read_cols), result);
        bson_destroy(&id);
    }
    free(key);
    if (!err && json_object_set_new(*result, "moved", json_boolean(moved))) {
        err = CHAT_ENOMEM;
    }
    return err;
}

static int op_read_state(mg_call *c, const chat_store_req *q, json_t **result)
{
    json_t *user = q->v[0];
    json_t *out = json_object();
    json_t *markers = json_array();
    static const mg_col cols[] = {{"roomId", "roomId", C_PLAIN},
                                  {"userId", "userId", C_PLAIN},
                                  {"messageId", "messageId", C_PLAIN},
                                  {"msgCreatedAt", "msgCreatedAt", C_PLAIN}};
    size_t i, j;
    json_t *room, *m;
    int err = CHAT_ENOMEM;

    if (!out || !markers) {
        goto done;
    }
    if (!json_array_size(q->ids)) {
        err = 0;
        goto done;
    }
    bson_t filter = BSON_INITIALIZER;
    bson_t in_doc, in;
    BSON_APPEND_DOCUMENT_BEGIN(&filter, "roomId", &in_doc);
    BSON_APPEND_ARRAY_BEGIN(&in_doc, "$in", &in);
    json_array_foreach (q->ids, i, room) {
        char k[24];
        snprintf(k, sizeof k, "%u", (unsigned)i);
        mg_append_str(&in, k, room);
    }
    bson_append_array_end(&in_doc, &in);
    bson_append_document_end(&filter, &in_doc);
    err = mg_find_all(c, "read_markers", &filter, NULL, cols, NFIELDS(cols), markers);
    bson_destroy(&filter);
    if (err) {
        goto done;
    }
    mongoc_collection_t *coll = mg_coll(c, "messages");
    json_array_foreach (q->ids, i, room) {
        json_t *reads = json_object();
        json_t *mine = NULL;
        json_array_foreach (markers, j, m) {
            if (json_equal(json_object_get(m, "roomId"), room)) {
                json_object_set(reads, json_string_value(json_object_get(m, "userId")),
                                json_object_get(m, "messageId"));
                if (json_equal(json_object_get(m, "userId"), user)) {
                    mine = m;
                }
            }
        }
        bson_t cf = BSON_INITIALIZER;
        bson_t ne, ne2, co = BSON_INITIALIZER;
        bson_error_t error;
        bson_t reply;
        mg_append_str(&cf, "roomId", room);
        BSON_APPEND_DOCUMENT_BEGIN(&cf, "senderId", &ne);
        mg_append_str(&ne, "$ne", user);
        bson_append_document_end(&cf, &ne);
        BSON_APPEND_DOCUMENT_BEGIN(&cf, "deleted", &ne2);
        BSON_APPEND_BOOL(&ne2, "$ne", true);
        bson_append_document_end(&cf, &ne2);
        if (mine) {
            /* after the marker: (createdAt, _id) > (msgCreatedAt, messageId) */
            mg_before(&cf, "createdAt", "_id",
                      json_integer_value(json_object_get(mine, "msgCreatedAt")),
                      json_object_get(mine, "messageId"), "$gt");
        }
        BSON_APPEND_INT64(&co, "limit", CHAT_STORE_UNREAD_MAX);
        int64_t n = mongoc_collection_count_documents(coll, &cf, &co, NULL, &reply, &error);
        if (n < 0) {
            err = mg_fail(c, &error, &reply);
        }
        bson_destroy(&reply);
        bson_destroy(&co);
        bson_destroy(&cf);
        if (!err && (!reads || json_object_set_new(out, json_string_value(room),
                                                   json_pack("{s:I,s:O,s:O}", "unread",
                                                             (json_int_t)n, "lastReadId",
                                                             mine ? json_object_get(mine, "messageId")
                                                                  : json_null(),
                                                             "reads", reads)))) {
            err = CHAT_ENOMEM;
        }
        json_decref(reads);
        if (err) {
            break;
        }
    }
    mongoc_collection_destroy(coll);
done:
    json_decref(markers);
    if (err) {
        json_decref(out);
        return err;
    }
    *result = out;
    return 0;
}

/* ---- notifications ---- */

static const mg_col note_cols[] = {
    {"id", "_id", C_PLAIN},         {"userId", "userId", C_PLAIN},
    {"type", "type", C_PLAIN},      {"data", "data", C_OBJECT},
    {"createdAt", "createdAt", C_PLAIN}, {"read", "read", C_PLAIN},
};

static int op_notify_insert(mg_call *c, const chat_store_req *q, json_t **result)
{
    json_t *const *v = q->v;
    bson_t doc = BSON_INITIALIZER;
    int err = CHAT_EINVAL;
    if (mg_append_str(&doc, "_id", v[CHAT_N_ID]) && mg_append_str(&doc, "userId", v[CHAT_N_USER]) &&
        mg_append_str(&doc, "type", v[CHAT_N_TYPE]) &&
        chat__bson_append_json(&doc, "data", -1, v[CHAT_N_DATA]) &&
        BSON_APPEND_INT64(&doc, "createdAt", json_integer_value(v[CHAT_N_CREATED])) &&
        BSON_APPEND_BOOL(&doc, "read", false)) {
        err = mg_insert(c, "notifications", &doc);
    }
    if (err == CHAT_ECONFLICT) {
        c->conflict = "id";
    }
    if (!err) {
        *result = mg_doc_json(c, &doc, note_cols, NFIELDS(note_cols));
        err = *result ? 0 : CHAT_ENOMEM;
    }
    bson_destroy(&doc);
    return err;
}

static int op_notify_list(mg_call *c, const chat_store_req *q, json_t **result)
{
    json_t *const *v = q->v;
    json_t *notes = json_array();
    json_t *pos = NULL;
    bson_t filter = BSON_INITIALIZER;
    bson_t opts = BSON_INITIALIZER;
    bson_t sort;
    int err = CHAT_ENOMEM;

    if (!notes) {
        goto done;
    }
    mg_append_str(&filter, "userId", v[CHAT_NL_USER]);
    if (v[CHAT_NL_BEFORE]) {
        static const mg_col pos_cols[] = {{"createdAt", "createdAt", C_PLAIN}};
        bson_t pf = BSON_INITIALIZER;
        mg_append_str(&pf, "_id", v[CHAT_NL_BEFORE]);
        mg_append_str(&pf, "userId", v[CHAT_NL_USER]);
        err = mg_find_one(c, "notifications", &pf, NULL, pos_cols, 1, &pos);
        bson_destroy(&pf);
        if (err) {
            goto done;
        }
        mg_before(&filter, "createdAt", "_id", json_integer_value(json_object_get(pos, "createdAt")),
                  v[CHAT_NL_BEFORE], "$lt");
    }
    BSON_APPEND_DOCUMENT_BEGIN(&opts, "sort", &sort);
    BSON_APPEND_INT32(&sort, "createdAt", -1);
    BSON_APPEND_INT32(&sort, "_id", -1);
    bson_append_document_end(&opts, &sort);
    BSON_APPEND_INT64(&opts, "limit", q->limit + 1);
    if ((err = mg_find_all(c, "notifications", &filter, &opts, note_cols, NFIELDS(note_cols), notes))) {
        goto done;
    }
    json_t *next = json_null();
    if ((json_int_t)json_array_size(notes) > q->limit) {
        json_array_remove(notes, (size_t)q->limit);
        next = json_object_get(json_array_get(notes, (size_t)q->limit - 1), "id");
    }
    bson_t uf = BSON_INITIALIZER;
    bson_t co = BSON_INITIALIZER;
    bson_t reply;
    bson_error_t error;
    mg_append_str(&uf, "userId", v[CHAT_NL_USER]);
    BSON_APPEND_BOOL(&uf, "read", false);
    BSON_APPEND_INT64(&co, "limit", CHAT_STORE_UNREAD_MAX);
    mongoc_collection_t *coll = mg_coll(c, "notifications");
    int64_t unread = mongoc_collection_count_documents(coll, &uf, &co, NULL, &reply, &error);
    if (unread < 0) {
        err = mg_fail(c, &error, &reply);
    }
    bson_destroy(&reply);
    mongoc_collection_destroy(coll);
    bson_destroy(&co);
    bson_destroy(&uf);
    if (!err) {
        *result = json_pack("{s:O,s:O,s:I}", "notifications", notes, "nextBefore", next, "unread",
                            (json_int_t)unread);
        err = *result ? 0 : CHAT_ENOMEM;
    }
done:
    bson_destroy(&opts);
    bson_destroy(&filter);
    json_decref(pos);
    json_decref(notes);
    return err;
}

static int op_notify_read(mg_call *c, const chat_store_req *q, json_t **result)
{
    bson_t filter = BSON_INITIALIZER;
    bson_t update = BSON_INITIALIZER;
    bson_t set;
    bson_t reply;
    bson_error_t error;
    int err = 0;

    mg_append_str(&filter, "userId", q->v[0]);
    BSON_APPEND_BOOL(&filter, "read", false);
    if (q->ids) {
        bson_t id, in;
        size_t i;
        json_t *x;
        BSON_APPEND_DOCUMENT_BEGIN(&filter, "_id", &id);
        BSON_APPEND_ARRAY_BEGIN(&id, "$in", &in);
        json_array_foreach (q->ids, i, x) {
            char k[24];
            snprintf(k, sizeof k, "%u", (unsigned)i);
            mg_append_str(&in, k, x);
        }
        bson_append_array_end(&id, &in);
        bson_append_document_end(&filter, &id);
    }
    BSON_APPEND_DOCUMENT_BEGIN(&update, "$set", &set);
    BSON_APPEND_BOOL(&set, "read", true);
    bson_append_document_end(&update, &set);
    int64_t updated = 0;
    mongoc_collection_t *coll = mg_coll(c, "notifications");
    if (q->ids && !json_array_size(q->ids)) {
        /* nothing named: nothing to do */
    } else if (!mongoc_collection_update_many(coll, &filter, &update, NULL, &reply, &error)) {
        err = mg_fail(c, &error, &reply);
        bson_destroy(&reply);
    } else {
        bson_iter_t it;
        updated = bson_iter_init_find(&it, &reply, "modifiedCount") ? bson_iter_as_int64(&it) : 0;
        bson_destroy(&reply);
    }
    mongoc_collection_destroy(coll);
    bson_destroy(&update);
    bson_destroy(&filter);
    if (!err) {
        *result = json_pack("{s:I}", "updated", (json_int_t)updated);
        err = *result ? 0 : CHAT_ENOMEM;
    }
    return err;
}

/* ---- uploads ---- */

static const mg_col upload_cols[] = {
    {"id", "_id", C_PLAIN},        {"uploaderId", "uploaderId", C_PLAIN},
    {"name", "name", C_PLAIN},     {"type", "type", C_PLAIN},
    {"size", "size", C_PLAIN},     {"createdAt", "createdAt", C_PLAIN},
    {"rooms", "rooms", C_ARRAY},
};

static int op_upload_insert(mg_call *c, const chat_store_req *q, json_t **result)
{
    json_t *const *v = q->v;
    bson_t doc = BSON_INITIALIZER;
    bson_t rooms;
    int err = CHAT_EINVAL;
    if (mg_append_str(&doc, "_id", v[CHAT_UP_ID]) &&
        mg_append_str(&doc, "uploaderId", v[CHAT_UP_UPLOADER]) &&
        mg_append_str(&doc, "name", v[CHAT_UP_NAME]) && mg_append_str(&doc, "type", v[CHAT_UP_TYPE]) &&
        BSON_APPEND_INT64(&doc, "size", json_integer_value(v[CHAT_UP_SIZE])) &&
        BSON_APPEND_INT64(&doc, "createdAt", json_integer_value(v[CHAT_UP_CREATED])) &&
        BSON_APPEND_ARRAY_BEGIN(&doc, "rooms", &rooms) && bson_append_array_end(&doc, &rooms)) {
        err = mg_insert(c, "uploads", &doc);
    }
    if (err == CHAT_ECONFLICT) {
        c->conflict = "id";
    }
    if (!err) {
        *result = mg_doc_json(c, &doc, upload_cols, NFIELDS(upload_cols));
        err = *result ? 0 : CHAT_ENOMEM;
    }
    bson_destroy(&doc);
    return err;
}

static int op_upload_get(mg_call *c, const chat_store_req *q, json_t **result)
{
    return mg_find_by_id(c, "uploads", q->v[0], upload_cols, NFIELDS(upload_cols), result);
}

static int op_upload_post(mg_call *c, const chat_store_req *q, json_t **result)
{
    bson_t query = BSON_INITIALIZER;
    bson_t update = BSON_INITIALIZER;
    bson_t op;
    mg_append_str(&query, "_id", q->v[0]);
    BSON_APPEND_DOCUMENT_BEGIN(&update, "$addToSet", &op);
    mg_append_str(&op, "rooms", q->v[1]);
    bson_append_document_end(&update, &op);
    int err = mg_modify_one(c, "uploads", &query, &update, upload_cols, NFIELDS(upload_cols), result);
    bson_destroy(&update);
    bson_destroy(&query);
    return err;
}

/* ---- rooms ---- */

static int op_room_create(mg_call *c, const chat_store_req *q, json_t **result)
{
    json_t *const *v = q->v;
    json_t *unique = q->participants; /* join order, each member once (store.c) */
    bson_t doc = BSON_INITIALIZER;
    int err;

    err = CHAT_EINVAL;
    if (!mg_append_str(&doc, "_id", v[R_ID]) || !chat__bson_append_json(&doc, "name", -1, v[R_NAME]) ||
        !mg_append_str(&doc, "type", v[R_TYPE]) ||
        !chat__bson_append_json(&doc, "participants", -1, unique) ||
        !chat__bson_append_json(&doc, "admin", -1, v[R_ADMIN])) {
        goto done;
    }
    bson_t empty = BSON_INITIALIZER;
    if (v[R_SETTINGS] ? !chat__bson_append_json(&doc, "settings", -1, v[R_SETTINGS])
                      : !bson_append_document(&doc, "settings", -1, &empty)) {
        goto done;
    }
    if (!BSON_APPEND_INT64(&doc, "createdAt", json_integer_value(v[R_CREATED]))) {
        goto done;
    }
    err = mg_insert(c, "rooms", &doc);
    if (err == CHAT_ECONFLICT) {
        c->conflict = "id";
    }
    if (!err) {
        mg_room_remember(c->st, json_string_value(v[R_ID]));
        *result = mg_doc_json(c, &doc, room_cols, NFIELDS(room_cols));
        err = *result ? 0 : CHAT_ENOMEM;
    }
done:
    bson_destroy(&doc);
    return err;
}

static int op_room_get(mg_call *c, const chat_store_req *q, json_t **result)
{
    return mg_find_by_id(c, "rooms", q->v[0], room_cols, NFIELDS(room_cols), result);
}

/* Adds ($addToSet appends, so join order holds) or removes one member in one atomic
 * findAndModify that answers with the room after the change. Both are idempotent. */
static int mg_change_member(mg_call *c, const chat_store_req *q, int add, json_t **result)
{
    json_t *const *v = q->v;
    int err;
    bson_t query = BSON_INITIALIZER;
    bson_t update = BSON_INITIALIZER;
    bson_t op;
    mg_append_str(&query, "_id", v[0]);
    BSON_APPEND_DOCUMENT_BEGIN(&update, add ? "$addToSet" : "$pull", &op);
    mg_append_str(&op, "participants", v[1]);
    bson_append_document_end(&update, &op);
    err = mg_modify_one(c, "rooms", &query, &update, room_cols, NFIELDS(room_cols), result);
    bson_destroy(&update);
    bson_destroy(&query);
    return err;
}

static int op_room_add_member(mg_call *c, const chat_store_req *q, json_t **result)
{
    return mg_change_member(c, q, 1, result);
}

static int op_room_remove_member(mg_call *c, const chat_store_req *q, json_t **result)
{
    return mg_change_member(c, q, 0, result);
}

/* Every document of a find into an array of objects. */
static int mg_find_all(mg_call *c, const char *coll_name, const bson_t *filter, const bson_t *opts,
                       const mg_col *cols, int ncols, json_t *into)
{
    mongoc_collection_t *coll = mg_coll(c, coll_name);
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(coll, filter, opts, NULL);
    const bson_t *doc;
    bson_error_t error;
    int err = 0;

    while (!err && mongoc_cursor_next(cur, &doc)) {
        json_t *obj = mg_doc_json(c, doc, cols, ncols);
        if (!obj || json_array_append_new(into, obj)) {
            err = obj ? CHAT_ENOMEM : CHAT_EINTERNAL;
        }
    }
    if (!err && mongoc_cursor_error_document(cur, &error, &doc)) {
        err = mg_fail(c, &error, doc);
    }
    mongoc_cursor_destroy(cur);
    mongoc_collection_destroy(coll);
    return err;
}

static int op_rooms_for_user(mg_call *c, const chat_store_req *q, json_t **result)
{
    json_t *const *v = q->v;
    int err;
    json_t *rooms = json_array();
    if (!rooms) {
        return CHAT_ENOMEM;
    }
    bson_t filter = BSON_INITIALIZER;
    bson_t opts = BSON_INITIALIZER;
    bson_t sort;
    mg_append_str(&filter, "participants", v[0]);
    BSON_APPEND_DOCUMENT_BEGIN(&opts, "sort", &sort);
    BSON_APPEND_INT32(&sort, "createdAt", -1);
    BSON_APPEND_INT32(&sort, "_id", -1);
    bson_append_document_end(&opts, &sort);
    err = mg_find_all(c, "rooms", &filter, &opts, room_cols, NFIELDS(room_cols), rooms);
    bson_destroy(&opts);
    bson_destroy(&filter);
    if (err) {
        json_decref(rooms);
        return err;
    }
    *result = rooms;
    return 0;
}

/* The admin API's room list: {_id > after} in _id order. */
static int op_rooms_list(mg_call *c, const chat_store_req *q, json_t **result)
{
    json_t *const *v = q->v;
    json_t *rooms = json_array();
    if (!rooms) {
        return CHAT_ENOMEM;
    }
    bson_t filter = BSON_INITIALIZER;
    bson_t opts = BSON_INITIALIZER;
    bson_t gt, sort;
    if (v[0]) {
        BSON_APPEND_DOCUMENT_BEGIN(&filter, "_id", &gt);
        mg_append_str(&gt, "$gt", v[0]);
        bson_append_document_end(&filter, &gt);
    }
    BSON_APPEND_DOCUMENT_BEGIN(&opts, "sort", &sort);
    BSON_APPEND_INT32(&sort, "_id", 1);
    bson_append_document_end(&opts, &sort);
    BSON_APPEND_INT64(&opts, "limit", json_integer_value(v[1]));
    int err = mg_find_all(c, "rooms", &filter, &opts, room_cols, NFIELDS(room_cols), rooms);
    bson_destroy(&opts);
    bson_destroy(&filter);
    if (err) {
        json_decref(rooms);
        return err;
    }
    *result = rooms;
    return 0;
}

/* The admin API's user search: a range on the lowercased username or email (their indexes),
 * [prefix, prefix + U+FFFF). */
static int op_users_find(mg_call *c, const chat_store_req *q, json_t **result)
{
    json_t *const *v = q->v;
    char *lower = mg_lower(v[0]);
    json_t *users = json_array();
    size_t n = json_string_length(v[0]);
    char *upper = lower ? malloc(n + 4) : NULL;
    if (!lower || !users || !upper) {
        free(lower);
        free(upper);
        json_decref(users);
        return CHAT_ENOMEM;
    }
    memcpy(upper, lower, n);
    memcpy(upper + n, "\xef\xbf\xbf", 4); /* U+FFFF and the NUL */
    bson_t filter = BSON_INITIALIZER;
    bson_t opts = BSON_INITIALIZER;
    bson_t or, branch, range, sort;
    static const char *const fields[] = {"usernameLower", "emailLower"};
    BSON_APPEND_ARRAY_BEGIN(&filter, "$or", &or);
    for (int i = 0; i < 2; i++) {
        BSON_APPEND_DOCUMENT_BEGIN(&or, i ? "1" : "0", &branch);
        BSON_APPEND_DOCUMENT_BEGIN(&branch, fields[i], &range);
        BSON_APPEND_UTF8(&range, "$gte", lower);
        BSON_APPEND_UTF8(&range, "$lt", upper);
        bson_append_document_end(&branch, &range);
        bson_append_document_end(&or, &branch);
    }
    bson_append_array_end(&filter, &or);
    BSON_APPEND_DOCUMENT_BEGIN(&opts, "sort", &sort);
    BSON_APPEND_INT32(&sort, "usernameLower", 1);
    bson_append_document_end(&opts, &sort);
    BSON_APPEND_INT64(&opts, "limit", json_integer_value(v[1]));
    int err = mg_find_all(c, "users", &filter, &opts, user_cols, NFIELDS(user_cols), users);
    bson_destroy(&opts);
    bson_destroy(&filter);
    free(lower);
    free(upper);
    if (err) {
        json_decref(users);
        return err;
    }
    *result = users;
    return 0;
}

/* ---- messages ---- */

/* "c:" + clientMsgId, or "i:" + id: see the top of the file. */
static char *mg_client_key(json_t *client_id, json_t *id)
{
    json_t *s = client_id ? client_id : id;
    size_t n = json_string_length(s);
    char *key = malloc(n + 3);
    if (key) {
        key[0] = client_id ? 'c' : 'i';
        key[1] = ':';
        memcpy(key + 2, json_string_value(s), n);
        key[n + 2] = '\0';
    }
    return key;
}

static int mg_message_by_client_key(mg_call *c, json_t *sender, const char *key, size_t keylen,
                                    json_t **out)
{
    bson_t filter = BSON_INITIALIZER;
    mg_append_str(&filter, "senderId", sender);
    bson_append_utf8(&filter, "clientKey", -1, key, (int)keylen);
    int err = mg_find_one(c, "messages", &filter, NULL, msg_cols, NFIELDS(msg_cols), out);
    bson_destroy(&filter);
    return err;
}

/* A message's document, after checking that its room exists. *key ("c:"/"i:" form) is
 * malloc'd. 0 or CHAT_E*. */
static int mg_message_doc(mg_call *c, const chat_store_req *q, bson_t *doc, char **key,
                          size_t *keylen)
{
    json_t *const *v = q->v;
    json_t *kv = v[M_CLIENT] ? v[M_CLIENT] : v[M_ID];

    if (json_string_length(kv) > INT_MAX - 3) {
        return CHAT_ETOOBIG;
    }
    *key = mg_client_key(v[M_CLIENT], v[M_ID]);
    if (!*key) {
        return CHAT_ENOMEM;
    }
    *keylen = json_string_length(kv) + 2;
    int err = mg_room_exists(c, v[M_ROOM]);
    if (err) {
        return err;
    }
    json_t *att = v[M_ATT];
    json_t *react = v[M_REACT];
    bson_t empty = BSON_INITIALIZER;
    if (!mg_append_str(doc, "_id", v[M_ID]) || !mg_append_str(doc, "roomId", v[M_ROOM]) ||
        !mg_append_str(doc, "senderId", v[M_SENDER]) ||
        !mg_append_str(doc, "content", v[M_CONTENT]) ||
        !(att ? chat__bson_append_json(doc, "attachments", -1, att)
              : bson_append_array(doc, "attachments", -1, &empty)) ||
        !(react ? chat__bson_append_json(doc, "reactions", -1, react)
                : bson_append_document(doc, "reactions", -1, &empty)) ||
        !chat__bson_append_json(doc, "clientMsgId", -1, v[M_CLIENT]) ||
        !bson_append_utf8(doc, "clientKey", -1, *key, (int)*keylen) ||
        !BSON_APPEND_INT64(doc, "createdAt", json_integer_value(v[M_CREATED])) ||
        !BSON_APPEND_INT64(doc, "updatedAt",
                           json_integer_value(v[M_UPDATED] ? v[M_UPDATED] : v[M_CREATED]))) {
        return CHAT_EINVAL;
    }
    return 0;
}

/* The answer to one insert whose write ended with err (0: stored). *result is set on 0. */
static int mg_message_answer(mg_call *c, const chat_store_req *q, int err, const char *key,
                             size_t keylen, json_t **result)
{
    json_t *msg = NULL;
    int duplicate = 0;

    if (err == CHAT_ECONFLICT) {
        /* A client retrying after a lost ack sends the same clientMsgId: answer with what is
         * stored. Concurrent retries race on the unique index, and all but one land here. */
        err = mg_message_by_client_key(c, q->v[M_SENDER], key, keylen, &msg);
        if (err == CHAT_ENOTFOUND || (!err && !q->v[M_CLIENT])) {
            json_decref(msg);
            msg = NULL;
            c->conflict = "id";
            err = CHAT_ECONFLICT;
        }
        duplicate = !err;
    } else if (!err) {
        msg = chat__store_message(q);
        err = msg ? 0 : CHAT_ENOMEM;
    }
    if (err) {
        json_decref(msg);
        return err;
    }
    *result = json_pack("{s:o,s:b}", "message", msg, "duplicate", duplicate);
    return *result ? 0 : CHAT_ENOMEM; /* the "o" format took msg, even on failure */
}

static int op_message_insert(mg_call *c, const chat_store_req *q, json_t **result)
{
    bson_t doc = BSON_INITIALIZER;
    char *key = NULL;
    size_t keylen = 0;
    int err = mg_message_doc(c, q, &doc, &key, &keylen);

    if (!err) {
        err = mg_insert(c, "messages", &doc);
        err = mg_message_answer(c, q, err, key, keylen, result);
    }
    free(key);
    bson_destroy(&doc);
    return err;
}

static int op_messages_page(mg_call *c, const chat_store_req *q, json_t **result)
{
    json_t *const *v = q->v;
    json_t *msgs = NULL;
    json_t *pos = NULL;
    json_int_t limit = q->limit;
    int err = CHAT_ENOMEM;
    bson_t filter = BSON_INITIALIZER;
    bson_t opts = BSON_INITIALIZER;

    msgs = json_array();
    if (!msgs) {
        goto done;
    }
    mg_append_str(&filter, "roomId", v[0]);
    if (v[1]) {
        /* the position (createdAt, _id) of the before message, which must be in this room */
        static const mg_col pos_cols[] = {{"createdAt", "createdAt", C_PLAIN}};
        bson_t pf = BSON_INITIALIZER;
        mg_append_str(&pf, "_id", v[1]);
        mg_append_str(&pf, "roomId", v[0]);
        err = mg_find_one(c, "messages", &pf, NULL, pos_cols, 1, &pos);
        bson_destroy(&pf);
        if (err) {
            goto done;
        }
        int64_t created = json_integer_value(json_object_get(pos, "createdAt"));
        /* (createdAt, _id) < (created, before) */
        bson_t or, a, b, lt, lt2;
        BSON_APPEND_ARRAY_BEGIN(&filter, "$or", & or);
        BSON_APPEND_DOCUMENT_BEGIN(& or, "0", &a);
        BSON_APPEND_DOCUMENT_BEGIN(&a, "createdAt", &lt);
        BSON_APPEND_INT64(&lt, "$lt", created);
        bson_append_document_end(&a, &lt);
        bson_append_document_end(& or, &a);
        BSON_APPEND_DOCUMENT_BEGIN(& or, "1", &b);
        BSON_APPEND_INT64(&b, "createdAt", created);
        BSON_APPEND_DOCUMENT_BEGIN(&b, "_id", &lt2);
        mg_append_str(&lt2, "$lt", v[1]);
        bson_append_document_end(&b, &lt2);
        bson_append_document_end(& or, &b);
        bson_append_array_end(&filter, & or);
    }
    bson_t sort;
    BSON_APPEND_DOCUMENT_BEGIN(&opts, "sort", &sort);
    BSON_APPEND_INT32(&sort, "createdAt", -1);
    BSON_APPEND_INT32(&sort, "_id", -1);
    bson_append_document_end(&opts, &sort);
    /* one past the page tells whether an older page exists */
    BSON_APPEND_INT64(&opts, "limit", limit + 1);
    if ((err = mg_find_all(c, "messages", &filter, &opts, msg_cols, NFIELDS(msg_cols), msgs))) {
        goto done;
    }
    json_t *next = json_null();
    if ((json_int_t)json_array_size(msgs) > limit) {
        json_array_remove(msgs, (size_t)limit);
        next = json_object_get(json_array_get(msgs, (size_t)limit - 1), "id");
    }
    *result = json_pack("{s:O,s:O}", "messages", msgs, "nextBefore", next);
    err = *result ? 0 : CHAT_ENOMEM;
done:
    bson_destroy(&opts);
    bson_destroy(&filter);
    json_decref(pos);
    json_decref(msgs);
    return err;
}

static int op_ping(mg_call *c, const chat_store_req *q, json_t **result)
{
    (void)q;
    bson_t cmd = BSON_INITIALIZER;
    bson_t reply;
    bson_error_t error;
    int err = 0;
    BSON_APPEND_INT32(&cmd, "ping", 1);
    if (!mongoc_client_command_simple(c->client, "admin", &cmd, NULL, &reply, &error)) {
        err = mg_fail(c, &error, &reply);
    }
    bson_destroy(&reply);
    bson_destroy(&cmd);
    if (!err) {
        *result = json_null();
    }
    return err;
}

typedef int (*mg_op_fn)(mg_call *c, const chat_store_req *q, json_t **result);

static const struct {
    const char *name;
    mg_op_fn fn;
    int writes; /* needs the unique indexes in place first */
} mg_ops[CHAT_STORE_NOPS] = {
    [CHAT_STORE_USER_CREATE] = {"user_create", op_user_create, 1},
    [CHAT_STORE_USER_BY_LOGIN] = {"user_by_login", op_user_by_login, 0},
    [CHAT_STORE_USER_GET] = {"user_get", op_user_get, 0},
    [CHAT_STORE_USER_SET_SEEN] = {"user_set_seen", op_user_set_seen, 0},
    [CHAT_STORE_ROOM_CREATE] = {"room_create", op_room_create, 1},
    [CHAT_STORE_ROOM_GET] = {"room_get", op_room_get, 0},
    [CHAT_STORE_ROOM_ADD_MEMBER] = {"room_add_member", op_room_add_member, 0},
    [CHAT_STORE_ROOM_REMOVE_MEMBER] = {"room_remove_member", op_room_remove_member, 0},
    [CHAT_STORE_ROOMS_FOR_USER] = {"rooms_for_user", op_rooms_for_user, 0},
    [CHAT_STORE_ROOMS_LIST] = {"rooms_list", op_rooms_list, 0},
    [CHAT_STORE_USERS_FIND] = {"users_find", op_users_find, 0},
    [CHAT_STORE_MESSAGE_INSERT] = {"message_insert", op_message_insert, 1},
    [CHAT_STORE_MESSAGES_PAGE] = {"messages_page", op_messages_page, 0},
    [CHAT_STORE_PING] = {"ping", op_ping, 0},
    [CHAT_STORE_USER_UPDATE] = {"user_update", op_user_update, 0},
    [CHAT_STORE_USERS_GET] = {"users_get", op_users_get, 0},
    [CHAT_STORE_USERS_SEARCH] = {"users_search", op_users_search, 0},
    [CHAT_STORE_MESSAGE_GET] = {"message_get", op_message_get, 0},
    [CHAT_STORE_MESSAGE_EDIT] = {"message_edit", op_message_edit, 0},
    [CHAT_STORE_MESSAGE_DELETE] = {"message_delete", op_message_delete, 0},
    [CHAT_STORE_MESSAGE_REACT] = {"message_react", op_message_react, 0},
    [CHAT_STORE_READ_SET] = {"read_set", op_read_set, 1},
    [CHAT_STORE_READ_STATE] = {"read_state", op_read_state, 0},
    [CHAT_STORE_NOTIFY_INSERT] = {"notify_insert", op_notify_insert, 1},
    [CHAT_STORE_NOTIFY_LIST] = {"notify_list", op_notify_list, 0},
    [CHAT_STORE_NOTIFY_READ] = {"notify_read", op_notify_read, 0},
    [CHAT_STORE_UPLOAD_INSERT] = {"upload_insert", op_upload_insert, 1},
    [CHAT_STORE_UPLOAD_GET] = {"upload_get", op_upload_get, 0},
    [CHAT_STORE_UPLOAD_POST] = {"upload_post", op_upload_post, 0},
};

static int mg_exec(void *impl, const chat_store_req *q, json_t **result)
{
    mg_store *st = impl;
    mg_call c = {.st = st};
    int op = q->op;
    int err;

    *result = NULL;
    if (op < 0 || op >= CHAT_STORE_NOPS || !mg_ops[op].fn) {
        return CHAT_EINVAL;
    }
    c.op = mg_ops[op].name;
    c.client = mongoc_client_pool_pop(st->pool);
    if (!c.client) {
        return CHAT_EUNAVAIL;
    }
    /* the unique indexes carry the idempotency and uniqueness guarantees: no write before
     * they exist (they are made at open, or here once the server is reachable) */
    err = mg_ops[op].writes ? mg_ensure_indexes(&c) : 0;
    if (!err) {
        err = mg_ops[op].fn(&c, q, result);
    }
    mongoc_client_pool_push(st->pool, c.client);
    if (err != CHAT_EUNAVAIL) {
        mg_succeeded(&c); /* the server answered, whatever it said */
    }
    if (err) {
        json_decref(*result);
        *result = err == CHAT_ECONFLICT
                      ? json_pack("{s:s}", "field", c.conflict ? c.conflict : "id")
                      : NULL;
    }
    return err;
}

/* Group commit on MongoDB: the batch's documents go in ordered bulk inserts (insertMany),
 * one round trip and one majority wait for many messages. An ordered bulk stops at the
 * first refused document (a resent clientMsgId): that one is answered on its own (the stored
 * message), and the rest go in the next bulk. A failure that leaves the outcome unknown (the
 * network, the write concern) answers every not-yet-confirmed insert unavailable: the client
 * retries, and its clientMsgId keeps the retry from doubling anything. */
static void mg_insert_batch(void *impl, chat_store_req *const *reqs, int n, int *status,
                            json_t **results)
{
    mg_store *st = impl;
    mg_call c = {.st = st, .op = "message_insert_batch"};
    bson_t *docs = calloc((size_t)n, sizeof *docs);
    char **keys = calloc((size_t)n, sizeof *keys);
    size_t *keylens = calloc((size_t)n, sizeof *keylens);
    int *todo = calloc((size_t)n, sizeof *todo); /* indexes of the documents to write */
    int ntodo = 0;
    int err = 0;

    for (int i = 0; i < n; i++) {
        status[i] = CHAT_ENOMEM;
        results[i] = NULL;
    }
    if (!docs || !keys || !keylens || !todo) {
        goto done;
    }
    for (int i = 0; i < n; i++) {
        bson_init(&docs[i]);
    }
    c.client = mongoc_client_pool_pop(st->pool);
    err = c.client ? mg_ensure_indexes(&c) : CHAT_EUNAVAIL;
    for (int i = 0; i < n; i++) {
        status[i] = err ? err : mg_message_doc(&c, reqs[i], &docs[i], &keys[i], &keylens[i]);
        if (!status[i]) {
            todo[ntodo++] = i;
            status[i] = CHAT_EUNAVAIL; /* until the server confirms it */
        }
    }
    mongoc_collection_t *coll = c.client && ntodo ? mg_coll(&c, "messages") : NULL;
    int from = 0;
    while (coll && from < ntodo) {
        bson_t opts = BSON_INITIALIZER;
        bson_t reply;
        bson_error_t error;
        BSON_APPEND_BOOL(&opts, "ordered", true);
        mongoc_bulk_operation_t *bulk = mongoc_collection_create_bulk_operation_with_opts(coll, &opts);
        for (int j = from; j < ntodo; j++) {
            mongoc_bulk_operation_insert_with_opts(bulk, &docs[todo[j]], NULL, NULL);
        }
        uint32_t ok = mongoc_bulk_operation_execute(bulk, &reply, &error);
        bson_iter_t it, werr;
        int64_t inserted = bson_iter_init_find(&it, &reply, "nInserted") ? bson_iter_as_int64(&it) : 0;
        int bad = -1; /* the refused document (ordered: the first failure), relative to from */
        int32_t code = 0;
        const char *msg = "";
        if (!ok && bson_iter_init_find(&it, &reply, "writeErrors") && BSON_ITER_HOLDS_ARRAY(&it) &&
            bson_iter_recurse(&it, &werr) && bson_iter_next(&werr) &&
            BSON_ITER_HOLDS_DOCUMENT(&werr)) {
            bson_iter_t e;
            if (bson_iter_recurse(&werr, &e)) {
                while (bson_iter_next(&e)) {
                    if (strcmp(bson_iter_key(&e), "index") == 0) {
                        bad = (int)bson_iter_as_int64(&e);
                    } else if (strcmp(bson_iter_key(&e), "code") == 0) {
                        code = (int32_t)bson_iter_as_int64(&e);
                    } else if (strcmp(bson_iter_key(&e), "errmsg") == 0 && BSON_ITER_HOLDS_UTF8(&e)) {
                        msg = bson_iter_utf8(&e, NULL);
                    }
                }
            }
        }
        int has_wc_error = bson_iter_init_find(&it, &reply, "writeConcernErrors") &&
                           BSON_ITER_HOLDS_ARRAY(&it) && bson_iter_recurse(&it, &werr) &&
                           bson_iter_next(&werr);
        int confirmed = ok ? ntodo - from : (bad >= 0 && !has_wc_error ? bad : 0);
        if (inserted < confirmed) {
            confirmed = (int)inserted; /* trust the smaller count */
        }
        for (int j = from; j < from + confirmed; j++) {
            int i = todo[j];
            status[i] = mg_message_answer(&c, reqs[i], 0, keys[i], keylens[i], &results[i]);
        }
        if (ok) {
            from = ntodo;
        } else if (bad >= 0 && !has_wc_error && bad == confirmed) {
            /* one refused document: answer it alone, then go on after it */
            int i = todo[from + bad];
            bson_error_t e = {.domain = MONGOC_ERROR_SERVER, .code = (uint32_t)code};
            snprintf(e.message, sizeof e.message, "%s", msg);
            int werr_status = code == 11000 ? CHAT_ECONFLICT : mg_fail(&c, &e, NULL);
            c.conflict = NULL;
            status[i] = mg_message_answer(&c, reqs[i], werr_status, keys[i], keylens[i], &results[i]);
            if (status[i] == CHAT_ECONFLICT) {
                results[i] = json_pack("{s:s}", "field", c.conflict ? c.conflict : "id");
            }
            from += bad + 1;
        } else {
            /* unknown outcome for the rest: unavailable (already set), retried by clients */
            mg_fail(&c, &error, &reply);
            from = ntodo;
        }
        bson_destroy(&reply);
        mongoc_bulk_operation_destroy(bulk);
        bson_destroy(&opts);
    }
    if (coll) {
        mongoc_collection_destroy(coll);
    }
    if (c.client) {
        mongoc_client_pool_push(st->pool, c.client);
    }
    for (int i = 0; i < n; i++) {
        if (status[i] != CHAT_EUNAVAIL) {
            mg_succeeded(&c);
            break;
        }
    }
done:
    for (int i = 0; docs && i < n; i++) {
        bson_destroy(&docs[i]);
        free(keys ? keys[i] : NULL);
    }
    free(docs);
    free(keys);
    free(keylens);
    free(todo);
}

/* ---- indexes ---- */

typedef struct mg_index {
    const char *coll;
    const char *name;
    const char *keys[3];
    int dir[3];
    int unique;
} mg_index;

static const mg_index mg_indexes[] = {
    {"users", "emailLower_1", {"emailLower"}, {1}, 1},
    {"users", "usernameLower_1", {"usernameLower"}, {1}, 1},
    {"rooms", "participants_1", {"participants"}, {1}, 0},
    {"messages", "roomId_1_createdAt_1__id_1", {"roomId", "createdAt", "_id"}, {1, 1, 1}, 0},
    /* its senderId prefix also serves lookups by sender: no separate senderId index */
    {"messages", "senderId_1_clientKey_1", {"senderId", "clientKey"}, {1, 1}, 1},
    {"read_markers", "roomId_1", {"roomId"}, {1}, 0},
    {"notifications", "userId_1_createdAt_1__id_1", {"userId", "createdAt", "_id"}, {1, 1, 1}, 0},
};

/* One createIndexes command per index: FerretDB 1.24 drops the connection (a panic) when one
 * command names several indexes that all exist already, which is every start after the
 * first. MongoDB answers either form the same way. */
static int mg_create_indexes(mg_call *c)
{
    mongoc_database_t *db = mongoc_client_get_database(c->client, c->st->db);
    int err = 0;

    for (size_t i = 0; i < sizeof mg_indexes / sizeof mg_indexes[0] && !err; i++) {
        const mg_index *ix = &mg_indexes[i];
        bson_t cmd = BSON_INITIALIZER;
        bson_t list, spec, key;
        bson_t reply;
        bson_error_t error;
        BSON_APPEND_UTF8(&cmd, "createIndexes", ix->coll);
        BSON_APPEND_ARRAY_BEGIN(&cmd, "indexes", &list);
        BSON_APPEND_DOCUMENT_BEGIN(&list, "0", &spec);
        BSON_APPEND_DOCUMENT_BEGIN(&spec, "key", &key);
        for (int j = 0; j < 3 && ix->keys[j]; j++) {
            BSON_APPEND_INT32(&key, ix->keys[j], ix->dir[j]);
        }
        bson_append_document_end(&spec, &key);
        BSON_APPEND_UTF8(&spec, "name", ix->name);
        if (ix->unique) {
            BSON_APPEND_BOOL(&spec, "unique", true);
        }
        bson_append_document_end(&list, &spec);
        bson_append_array_end(&cmd, &list);
        if (!mongoc_database_write_command_with_opts(db, &cmd, NULL, &reply, &error)) {
            err = mg_fail(c, &error, &reply);
            if (err != CHAT_EUNAVAIL) {
                chat__log(CHAT_LOG_ERROR, "store_index_failed",
                          "cannot create an index chatd needs (an index of the same name with "
                          "other options? duplicate emails or usernames already stored?); fix "
                          "the database, then restart",
                          json_pack("{s:s,s:s,s:s}", "collection", ix->coll, "index", ix->name,
                                    "error", error.message));
                err = CHAT_EINTERNAL;
            }
        }
        bson_destroy(&reply);
        bson_destroy(&cmd);
    }
    mongoc_database_destroy(db);
    return err;
}

static int mg_ensure_indexes(mg_call *c)
{
    mg_store *st = c->st;
    int err = 0;
    uv_mutex_lock(&st->lock);
    if (!st->indexes_ready) {
        /* under the lock: the other writers wait for the answer rather than race it */
        const char *op = c->op;
        c->op = "create_indexes";
        err = mg_create_indexes(c);
        c->op = op;
        st->indexes_ready = err == 0;
    }
    uv_mutex_unlock(&st->lock);
    return err;
}

/* ---- open and close ---- */

static void mg_log_handler(mongoc_log_level_t level, const char *domain, const char *message,
                           void *data)
{
    (void)data;
    if (level > MONGOC_LOG_LEVEL_WARNING || (message && strstr(message, "\"endSessions\""))) {
        /* the driver's chatter (and FerretDB lacking endSessions when a pool closes); our
         * own calls log what matters */
        return;
    }
    chat__log(
        level == MONGOC_LOG_LEVEL_WARNING ? CHAT_LOG_WARN : CHAT_LOG_ERROR, "mongoc",
        "mongo-c-driver reported a problem",
        json_pack("{s:s,s:s}", "domain", domain ? domain : "", "error", message ? message : ""));
}

static uv_once_t mg_once = UV_ONCE_INIT;

static void mg_global_init(void)
{
    /* global driver state for the process; never cleaned up, as the driver intends for a
     * library that may be opened again */
    mongoc_init();
    mongoc_log_set_handler(mg_log_handler, NULL);
}

/* Sets a timeout the URI does not set itself. */
static void mg_default_ms(mongoc_uri_t *uri, const char *opt, int32_t ms)
{
    if (!mongoc_uri_has_option(uri, opt)) {
        mongoc_uri_set_option_as_int32(uri, opt, ms);
    }
}

static void mg_free(mg_store *st)
{
    if (!st) {
        return;
    }
    if (st->pool) {
        mongoc_client_pool_destroy(st->pool);
    }
    mongoc_uri_destroy(st->uri);
    char *k;
    for (size_t i = 0; (k = chat__map_next(&st->rooms, &i));) {
        free(k);
    }
    chat__map_free(&st->rooms);
    uv_mutex_destroy(&st->lock);
    free(st);
}

static int mg_open(void **impl, const char *target, const chat_store_opts *opts)
{
    mg_store *st = NULL;
    bson_error_t error;
    int err = CHAT_EINVAL;

    (void)opts;
    *impl = NULL;
    uv_once(&mg_once, mg_global_init);
    mongoc_uri_t *uri = target ? mongoc_uri_new_with_error(target, &error) : NULL;
    if (!uri) {
        chat__log(CHAT_LOG_ERROR, "bad_mongo_uri",
                  "CHAT_MONGO_URI is not a MongoDB connection string; it must look like "
                  "mongodb://host1,host2,host3/chatd?replicaSet=rs0",
                  json_pack("{s:s}", "error", target ? error.message : "unset"));
        goto fail;
    }
    const mongoc_write_concern_t *wc = mongoc_uri_get_write_concern(uri);
    int32_t w = mongoc_write_concern_get_w(wc);
    if (w == MONGOC_WRITE_CONCERN_W_UNACKNOWLEDGED || w == MONGOC_WRITE_CONCERN_W_ERRORS_IGNORED) {
        chat__log(CHAT_LOG_ERROR, "bad_mongo_uri",
                  "CHAT_MONGO_URI asks for unacknowledged writes (w=0); chatd acknowledges a "
                  "message only once it is stored, so remove w=0",
                  NULL);
        mongoc_uri_destroy(uri);
        goto fail;
    }
    if (w == MONGOC_WRITE_CONCERN_W_DEFAULT && !mongoc_write_concern_get_wtag(wc)) {
        mongoc_write_concern_t *maj = mongoc_write_concern_new();
        mongoc_write_concern_set_w(maj, MONGOC_WRITE_CONCERN_W_MAJORITY);
        mongoc_write_concern_set_wtimeout_int64(maj, MG_WTIMEOUT_MS);
        mongoc_uri_set_write_concern(uri, maj);
        mongoc_write_concern_destroy(maj);
    }
    /* the driver's defaults wait up to 30 s to find a server and 5 min on a silent socket,
     * holding a worker thread all along; a chat call should say "unavailable" sooner */
    mg_default_ms(uri, MONGOC_URI_SERVERSELECTIONTIMEOUTMS, 3000);
    mg_default_ms(uri, MONGOC_URI_CONNECTTIMEOUTMS, 3000);
    mg_default_ms(uri, MONGOC_URI_SOCKETTIMEOUTMS, 15000);
    if (!mongoc_uri_get_appname(uri)) {
        mongoc_uri_set_appname(uri, "chatd");
    }
    err = CHAT_ENOMEM;
    st = calloc(1, sizeof *st);
    if (!st) {
        mongoc_uri_destroy(uri);
        goto fail;
    }
    st->uri = uri;
    if (uv_mutex_init(&st->lock) != 0) {
        mongoc_uri_destroy(uri);
        free(st);
        st = NULL;
        goto fail;
    }
    const char *db = mongoc_uri_get_database(uri);
    snprintf(st->db, sizeof st->db, "%s", db && *db ? db : MG_DEFAULT_DB);
    st->pool = mongoc_client_pool_new_with_error(uri, &error);
    if (!st->pool) {
        err = CHAT_EINVAL;
        chat__log(CHAT_LOG_ERROR, "bad_mongo_uri", "cannot use CHAT_MONGO_URI",
                  json_pack("{s:s}", "error", error.message));
        goto fail;
    }
    mongoc_client_pool_set_error_api(st->pool, MONGOC_ERROR_API_VERSION_2);

    /* Make the indexes now if the server answers. If it does not, start anyway: calls answer
     * unavailable until it does, and the first write makes them. */
    mg_call c = {.st = st, .op = "open", .client = mongoc_client_pool_pop(st->pool)};
    err = c.client ? mg_ensure_indexes(&c) : CHAT_EUNAVAIL;
    if (c.client) {
        mongoc_client_pool_push(st->pool, c.client);
    }
    if (err && err != CHAT_EUNAVAIL) {
        goto fail;
    }
    *impl = st;
    return 0;
fail:
    mg_free(st);
    return err;
}

static void mg_close(void *impl)
{
    mg_free(impl);
}

const chat_store_backend chat__store_mongo = {
    .name = "mongo",
    .open = mg_open,
    .close = mg_close,
    .exec = mg_exec,
    .insert_batch = mg_insert_batch,
};
