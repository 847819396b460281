/* store.h: durable users, rooms and messages behind one interface.
 *
 * Objects travel as jansson values in the shapes of PROTOCOL.md ("Objects"); users also
 * carry "email" and "passwordHash" (never sent to other clients: the domain strips them).
 * A call queues the work on the uv thread pool, runs the backend there, and reports on the
 * loop. The backend is a table of synchronous functions (store_sqlite.c, store_mongo.c);
 * the domain never names one. What each op takes and checks is said once, here and in
 * store.c; the backends do only I/O and mapping. */
#ifndef CHAT_STORE_H
#define CHAT_STORE_H

#include <jansson.h>
#include <stdint.h>
#include <uv.h>

typedef enum chat_store_op {
    /* arg {id,email,username,passwordHash,createdAt}; result: the user.
     * CHAT_ECONFLICT when email or username is taken (result {"field":"email"|"username"}). */
    CHAT_STORE_USER_CREATE,
    /* arg {login}: email or username (case-insensitive); result: the user, or CHAT_ENOTFOUND */
    CHAT_STORE_USER_BY_LOGIN,
    /* arg {id}; result: the user, or CHAT_ENOTFOUND */
    CHAT_STORE_USER_GET,
    /* arg {id,lastSeen,status}; result null */
    CHAT_STORE_USER_SET_SEEN,
    /* arg: a room object {id,name,type,participants,admin,settings,createdAt}; result: it */
    CHAT_STORE_ROOM_CREATE,
    /* arg {id}; result: the room, or CHAT_ENOTFOUND */
    CHAT_STORE_ROOM_GET,
    /* arg {roomId,userId}; result: the room after the change, or CHAT_ENOTFOUND */
    CHAT_STORE_ROOM_ADD_MEMBER,
    CHAT_STORE_ROOM_REMOVE_MEMBER,
    /* arg {userId}; result: array of rooms the user participates in, newest first */
    CHAT_STORE_ROOMS_FOR_USER,
    /* arg: a message object {id,roomId,senderId,content,attachments,reactions,clientMsgId
     * (string or null),createdAt,updatedAt}; a stored message also carries deleted: true once
     * it is a tombstone (the member is absent otherwise). result {"message":stored,"duplicate":bool}:
     * when (senderId, clientMsgId) exists already, the stored one and duplicate=true, and
     * nothing is written. */
    CHAT_STORE_MESSAGE_INSERT,
    /* arg {roomId, before (message id or null), limit}; result {"messages":[newest
     * first],"nextBefore":id or null}. nextBefore is the id to pass as before for the next
     * older page, null when there is none. CHAT_ENOTFOUND if before is not in the room. */
    CHAT_STORE_MESSAGES_PAGE,
    /* arg null; result null. 0 when the backend answers (for /readyz). */
    CHAT_STORE_PING,
    /* arg {after (room id, optional), limit}; result: an array of up to limit rooms with ids
     * above after, in id order (ids grow with time: oldest first). The admin API's list. */
    CHAT_STORE_ROOMS_LIST,
    /* arg {prefix, limit}; result: an array of up to limit users whose username or email
     * starts with prefix (case-insensitive), by username. The admin API's search. */
    CHAT_STORE_USERS_FIND,
    /* arg {id, displayName?, avatar?, statusText?}: a field that is missing or null stays as
     * it is, "" clears it (stored and answered as null). result: the user after the change,
     * or CHAT_ENOTFOUND. */
    CHAT_STORE_USER_UPDATE,
    /* arg {ids: [id]}: 1..CHAT_STORE_IDS_MAX strings. result: array of the users found, in
     * the order of ids, each once (ids that name nobody are left out). */
    CHAT_STORE_USERS_GET,
    /* arg {prefix, limit?}: prefix a non-empty string of at most 64 bytes. result: array of
     * the users whose username starts with prefix (ASCII case-insensitive), ordered by the
     * lower-cased username, at most limit (default 10, clamped to CHAT_STORE_SEARCH_MAX). */
    CHAT_STORE_USERS_SEARCH,
    /* arg {id}; result: the message (a deleted one as its tombstone), or CHAT_ENOTFOUND */
    CHAT_STORE_MESSAGE_GET,
    /* arg {id, content, updatedAt}; result: the message after the change. CHAT_ENOTFOUND
     * when there is no such message or it was deleted. */
    CHAT_STORE_MESSAGE_EDIT,
    /* arg {id, updatedAt}: the message becomes a tombstone (deleted: true, content "",
     * attachments [], reactions {}); result: the tombstone. CHAT_ENOTFOUND when there is no
     * such message or it was deleted already. */
    CHAT_STORE_MESSAGE_DELETE,
    /* arg {id, userId, emoji, on (bool)}: userId is added to (on) or removed from the
     * message's reactions[emoji], an array of user ids, each once, in the order they
     * reacted; an emptied emoji disappears. emoji: 1..CHAT_STORE_EMOJI_MAX bytes, no '.',
     * not starting with '$' (a MongoDB field name). result: the message after, or
     * CHAT_ENOTFOUND when there is no such message or it was deleted. updatedAt stays.
     * max (optional, > 0): adding an emoji the message does not carry yet, when it carries
     * max different ones already, changes nothing and answers CHAT_ECONFLICT; the check and
     * the write are one atomic step, so concurrent reactions never pass max. */
    CHAT_STORE_MESSAGE_REACT,
    /* arg {roomId, userId, messageId, at}: the user has read the room up to messageId, which
     * must be a message of the room (else CHAT_ENOTFOUND). A marker only moves forward (by
     * the message's createdAt, then id). result {roomId, userId, messageId, at, moved}: the
     * marker after the call (an earlier messageId leaves the later one: moved false). */
    CHAT_STORE_READ_SET,
    /* arg {userId, roomIds: [id]} (0..CHAT_STORE_ROOMS_MAX). result {<roomId>: {unread,
     * lastReadId, reads}}: unread counts the room's live messages from others after the
     * user's marker (all of them without one), at most CHAT_STORE_UNREAD_MAX; lastReadId the
     * user's marker or null; reads {<userId>: messageId} every member's marker. */
    CHAT_STORE_READ_STATE,
    /* arg {id, userId, type, data (object), createdAt}; result: the notification {id, userId,
     * type, data, createdAt, read: false}. */
    CHAT_STORE_NOTIFY_INSERT,
    /* arg {userId, before (notification id or null), limit}; result {notifications: [newest
     * first], nextBefore (id or null), unread (the user's unread ones, at most
     * CHAT_STORE_UNREAD_MAX)}. CHAT_ENOTFOUND if before is not one of the user's. */
    CHAT_STORE_NOTIFY_LIST,
    /* arg {userId, ids (null: all of the user's)}: 0..CHAT_STORE_IDS_MAX ids; ids of others
     * are ignored. result {updated: how many became read}. */
    CHAT_STORE_NOTIFY_READ,
    /* arg {id, uploaderId, name, type, size, createdAt}: a file's metadata (the bytes are in
     * the data directory). result: the upload {id, uploaderId, name, type, size, createdAt,
     * rooms: []}. */
    CHAT_STORE_UPLOAD_INSERT,
    /* arg {id}; result: the upload, rooms the ids of the rooms it was posted in (each once,
     * in order), or CHAT_ENOTFOUND */
    CHAT_STORE_UPLOAD_GET,
    /* arg {id, roomId}: the upload was posted in roomId (or roomId "*": it is someone's
     * avatar, readable by every signed-in user; uploads.c). result: the upload after, or
     * CHAT_ENOTFOUND. Idempotent. */
    CHAT_STORE_UPLOAD_POST,
    CHAT_STORE_NOPS
} chat_store_op;

typedef struct chat_store chat_store;

/* ---- The contract: each op's arguments, checked once in store.c ----
 * store.c checks a call's arg against its op's field table (store.c, chat__store_check) and
 * hands the backend a chat_store_req: the fields in the order below (borrowed from arg; NULL
 * for an optional field that is missing or null), plus what the checks derived. A backend
 * never looks at arg itself: it does I/O and maps rows or documents to the result shapes
 * above. */
enum { CHAT_STORE_FIELDS_MAX = 12 };

/* USER_CREATE */
enum { CHAT_U_ID, CHAT_U_EMAIL, CHAT_U_USERNAME, CHAT_U_HASH, CHAT_U_STATUS, CHAT_U_AVATAR,
       CHAT_U_CREATED };
/* USER_UPDATE */
enum { CHAT_UU_ID, CHAT_UU_NAME, CHAT_UU_AVATAR, CHAT_UU_STATUS_TEXT };
/* USERS_SEARCH (the clamped limit: req->limit) */
enum { CHAT_US_PREFIX, CHAT_US_LIMIT };
/* USER_SET_SEEN */
enum { CHAT_SEEN_ID, CHAT_SEEN_AT, CHAT_SEEN_STATUS };
/* ROOM_CREATE (participants: req->participants) */
enum { CHAT_R_ID, CHAT_R_NAME, CHAT_R_TYPE, CHAT_R_ADMIN, CHAT_R_SETTINGS, CHAT_R_CREATED };
/* ROOM_ADD_MEMBER, ROOM_REMOVE_MEMBER */
enum { CHAT_MB_ROOM, CHAT_MB_USER };
/* MESSAGE_INSERT */
enum { CHAT_M_ID, CHAT_M_ROOM, CHAT_M_SENDER, CHAT_M_CONTENT, CHAT_M_ATT, CHAT_M_REACT,
       CHAT_M_CLIENT, CHAT_M_CREATED, CHAT_M_UPDATED };
/* MESSAGE_EDIT, MESSAGE_DELETE (no content) */
enum { CHAT_ME_ID, CHAT_ME_CONTENT, CHAT_ME_UPDATED };
enum { CHAT_MD_ID, CHAT_MD_UPDATED };
/* READ_SET; READ_STATE: v[0] userId, req->ids the room ids */
enum { CHAT_RD_ROOM, CHAT_RD_USER, CHAT_RD_MSG, CHAT_RD_AT };
/* NOTIFY_INSERT; NOTIFY_LIST (limit clamped: req->limit); NOTIFY_READ: v[0] userId, req->ids
 * (NULL: all) */
enum { CHAT_N_ID, CHAT_N_USER, CHAT_N_TYPE, CHAT_N_DATA, CHAT_N_CREATED };
enum { CHAT_NL_USER, CHAT_NL_BEFORE, CHAT_NL_LIMIT };
/* UPLOAD_INSERT; UPLOAD_GET: v[0] id; UPLOAD_POST: v[0] id, v[1] roomId */
enum { CHAT_UP_ID, CHAT_UP_UPLOADER, CHAT_UP_NAME, CHAT_UP_TYPE, CHAT_UP_SIZE, CHAT_UP_CREATED };
/* MESSAGE_REACT */
enum { CHAT_MR_ID, CHAT_MR_USER, CHAT_MR_EMOJI, CHAT_MR_ON, CHAT_MR_MAX };
/* MESSAGES_PAGE (the clamped limit: req->limit) */
enum { CHAT_P_ROOM, CHAT_P_BEFORE, CHAT_P_LIMIT };
/* USER_BY_LOGIN: v[0] login; USER_GET, ROOM_GET: v[0] id; ROOMS_FOR_USER: v[0] userId;
 * PING: nothing. ROOMS_LIST: v[0] after (or NULL), v[1] limit; USERS_FIND: v[0] prefix,
 * v[1] limit; USERS_GET: req->ids. */

#define CHAT_STORE_PAGE_DEFAULT 50 /* MESSAGES_PAGE without a limit */
#define CHAT_STORE_PAGE_MAX 1000   /* a larger limit is clamped to this */
#define CHAT_STORE_JSON_DEPTH 64   /* nesting accepted in attachments, reactions, settings */
#define CHAT_STORE_IDS_MAX 100     /* ids one USERS_GET takes */
#define CHAT_STORE_SEARCH_DEFAULT 10
#define CHAT_STORE_SEARCH_MAX 50   /* users one USERS_SEARCH answers at most */
#define CHAT_STORE_PREFIX_MAX 64   /* bytes of a USERS_SEARCH prefix */
#define CHAT_STORE_EMOJI_MAX 32    /* bytes of a MESSAGE_REACT emoji */
#define CHAT_STORE_ROOMS_MAX 1000  /* room ids one READ_STATE takes */
#define CHAT_STORE_UNREAD_MAX 1000 /* unread counts stop here ("1000 or more") */

typedef struct chat_store_req {
    int op;
    json_t *v[CHAT_STORE_FIELDS_MAX];
    json_t *participants; /* ROOM_CREATE: the strings of arg.participants, each once, in
                           * join order (owned by the req; an empty array when none) */
    json_int_t limit;     /* MESSAGES_PAGE: 1..CHAT_STORE_PAGE_MAX; USERS_SEARCH: 1..
                           * CHAT_STORE_SEARCH_MAX */
    json_t *ids;          /* USERS_GET: the strings of arg.ids; READ_STATE: of arg.roomIds; each
                           * once, in order (owned) */
    json_t *arg;          /* the checked arg (borrowed) */
    int arg_given;        /* 1: the caller gave arg away (chat__store_call), so an answer may
                           * share it instead of copying it (chat__store_message) */
} chat_store_req;

/* Checks arg for op and fills req. 0, or CHAT_EINVAL when arg is not an object, a field is
 * missing or of another type, a limit is below 1 or JSON is nested too deep. Release with
 * chat__store_req_clear (also after a failure). arg must outlive req. */
int chat__store_check(int op, json_t *arg, chat_store_req *req);
void chat__store_req_clear(chat_store_req *req);
/* The stored form of a checked MESSAGE_INSERT: every member present, defaults filled in
 * (attachments [], reactions {}, clientMsgId null, updatedAt = createdAt). NULL on
 * out-of-memory. Backends answer with it instead of reading the row back. When the caller
 * gave arg away and arg is that form already (exactly these nine members, as chatd's
 * message:send builds it), it is arg itself, with a new reference: no copy is built on the
 * worker and freed on the loop. */
json_t *chat__store_message(const chat_store_req *req);

/* ---- Backends ----
 * Synchronous functions called on worker threads (several at once: the backend serialises
 * what it must). exec returns 0 or CHAT_E* and sets *result (owned by caller); on
 * CHAT_ECONFLICT *result is {"field": name}. insert_batch (optional) stores n checked
 * MESSAGE_INSERTs in order, as one unit of work where the backend can (one SQLite
 * transaction, one ordered MongoDB bulk insert), and fills status[i] and result[i] for each
 * exactly as exec would have. */
typedef struct chat_store_opts {
    int sqlite_synchronous; /* 1 NORMAL (default), 2 FULL, 3 EXTRA: PRAGMA synchronous */
    int batch_max;          /* message inserts per batch; <= 1: one call per insert */
    int queue_max;          /* calls queued or running; past it a call is refused at once
                             * with CHAT_EUNAVAIL (store_queue_max); <= 0: the default */
    int no_checkpointer;    /* SQLite, tests: the writer checkpoints alone, as it does when
                             * the checkpointer thread cannot start */
} chat_store_opts;

struct chat_store_stats;
typedef struct chat_store_backend {
    const char *name;
    /* target: data dir or URI; opts never NULL */
    int (*open)(void **impl, const char *target, const chat_store_opts *opts);
    void (*close)(void *impl);
    int (*exec)(void *impl, const chat_store_req *req, json_t **result);
    void (*insert_batch)(void *impl, chat_store_req *const *reqs, int n, int *status,
                         json_t **results);
    /* optional: fills the backend's own counters of chat_store_stats (any thread) */
    void (*stats)(void *impl, struct chat_store_stats *out);
} chat_store_backend;

extern const chat_store_backend chat__store_sqlite;
extern const chat_store_backend chat__store_mongo; /* target: a mongodb:// URI */

/* Opens synchronously (at start-up, before serving). opts NULL: the defaults. */
int chat__store_open_with(chat_store **out, uv_loop_t *loop, const chat_store_backend *be,
                          const char *target, const chat_store_opts *opts);
int chat__store_open(chat_store **out, uv_loop_t *loop, const chat_store_backend *be,
                     const char *target);
/* Waits for pending calls to finish (runs no loop: call after they reported), then closes. */
void chat__store_close(chat_store *s);
int chat__store_pending(const chat_store *s);
/* Calls refused at store_queue_max since the store opened. */
unsigned long long chat__store_refused(const chat_store *s);

/* status 0 or CHAT_E*; result is owned by the callback (json_decref it or keep it). */
typedef void (*chat_store_cb)(int status, json_t *result, void *arg);
/* Takes arg (stolen, even on failure). Returns 0 when queued; cb then runs exactly once.
 * Message inserts are group-committed: while one batch is being written, the next ones
 * queue, and the next batch takes them all (up to batch_max) in call order; each caller is
 * answered after its batch committed. */
int chat__store_call(chat_store *s, int op, json_t *arg, chat_store_cb cb, void *cbarg);
/* fn(arg, op, started) runs on the loop as each call answers, before its callback; started
 * is uv_hrtime() when it was queued (for chatd_store_call_seconds). */
typedef void (*chat_store_observe_fn)(void *arg, int op, uint64_t started);
void chat__store_observe(chat_store *s, chat_store_observe_fn fn, void *arg);
/* Runs op synchronously on the calling thread (tests and start-up only). */
int chat__store_exec(chat_store *s, int op, json_t *arg, json_t **result);

/* Counters for /metrics (loop thread). */
typedef struct chat_store_stats {
    uint64_t batches;      /* insert batches written */
    uint64_t batched;      /* inserts written in them */
    int batch_largest;     /* the most inserts one batch held */
    int queued;            /* inserts waiting for the next batch now */
    /* SQLite: WAL checkpoints. Passive ones run on the store's checkpointer thread, beside
     * the writer; a forced one runs on the writer (commits wait for it) only when the WAL
     * passed its bound because the checkpointer could not keep up. */
    uint64_t checkpoints;        /* passive checkpoint passes run by the checkpointer */
    uint64_t checkpoints_forced; /* RESTART checkpoints the writer ran at the WAL bound */
    uint64_t wal_pages;          /* frames in the WAL after the last commit */
} chat_store_stats;
void chat__store_stats(const chat_store *s, chat_store_stats *out);
struct chat_buf;
/* Appends the store's lines of /metrics. 0 or CHAT_ENOMEM. */
int chat__store_metrics(struct chat_buf *b, const chat_store *s);
/* "normal", "full" or "extra" (any case) as chat_store_opts.sqlite_synchronous; 0: neither. */
int chat__store_parse_synchronous(const char *s);

/* A new ObjectId: 24 lowercase hex (4-byte seconds, 5 random bytes, 3-byte counter).
 * Thread-safe. */
void chat__objectid(char out[25]);
int64_t chat__now_ms(void);

#endif
