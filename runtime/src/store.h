/* store.h: durable users, rooms and messages behind one interface.
 *
 * Objects travel as jansson values in the shapes of PROTOCOL.md ("Objects"); users also
 * carry "email" and "passwordHash" (never sent to other clients: the domain strips them).
 * A call queues the work on the uv thread pool, runs the backend there, and reports on the
 * loop. The backend is a table of synchronous functions (store_sqlite.c, store_mongo.c);
 * the domain never names one. */
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
     * (string or null),createdAt,updatedAt}. result {"message":stored,"duplicate":bool}:
     * when (senderId, clientMsgId) exists already, the stored one and duplicate=true, and
     * nothing is written. */
    CHAT_STORE_MESSAGE_INSERT,
    /* arg {roomId, before (message id or null), limit}; result {"messages":[newest
     * first],"nextBefore":id or null}. nextBefore is the id to pass as before for the next
     * older page, null when there is none. CHAT_ENOTFOUND if before is not in the room. */
    CHAT_STORE_MESSAGES_PAGE,
    /* arg null; result null. 0 when the backend answers (for /readyz). */
    CHAT_STORE_PING,
    CHAT_STORE_NOPS
} chat_store_op;

typedef struct chat_store chat_store;

/* A backend: synchronous functions called on worker threads (several at once: the backend
 * serialises what it must). exec returns 0 or CHAT_E* and sets *result (owned by caller). */
typedef struct chat_store_backend {
    const char *name;
    int (*open)(void **impl, const char *target); /* target: data dir or URI */
    void (*close)(void *impl);
    int (*exec)(void *impl, int op, json_t *arg, json_t **result);
} chat_store_backend;

extern const chat_store_backend chat__store_sqlite;
extern const chat_store_backend chat__store_mongo; /* target: a mongodb:// URI */

/* Opens synchronously (at start-up, before serving). */
int chat__store_open(chat_store **out, uv_loop_t *loop, const chat_store_backend *be,
                     const char *target);
/* Waits for pending calls to finish (runs no loop: call after they reported), then closes. */
void chat__store_close(chat_store *s);
int chat__store_pending(const chat_store *s);

/* status 0 or CHAT_E*; result is owned by the callback (json_decref it or keep it). */
typedef void (*chat_store_cb)(int status, json_t *result, void *arg);
/* Takes arg (stolen, even on failure). Returns 0 when queued; cb then runs exactly once. */
int chat__store_call(chat_store *s, int op, json_t *arg, chat_store_cb cb, void *cbarg);
/* Runs op synchronously on the calling thread (tests and start-up only). */
int chat__store_exec(chat_store *s, int op, json_t *arg, json_t **result);

/* Argument checks shared by the backends: an op's fields in order, each with the JSON types
 * it may have (CHAT_F_OPT: may be missing or null). */
enum {
    CHAT_F_STR = 1u << JSON_STRING,
    CHAT_F_INT = 1u << JSON_INTEGER,
    CHAT_F_OBJ = 1u << JSON_OBJECT,
    CHAT_F_ARR = 1u << JSON_ARRAY,
    CHAT_F_OPT = 1u << 16,
};
#define CHAT_STORE_FIELDS_MAX 12

typedef struct chat_store_field {
    const char *key;
    unsigned types;
} chat_store_field;

/* Fills vals (borrowed; NULL for a missing optional field) from arg in the order of fields.
 * CHAT_EINVAL when arg is not an object or a field is missing or of another type. */
int chat__store_args(json_t *arg, const chat_store_field *fields, int n, json_t **vals);

/* A new ObjectId: 24 lowercase hex (4-byte seconds, 5 random bytes, 3-byte counter).
 * Thread-safe. */
void chat__objectid(char out[25]);
int64_t chat__now_ms(void);

#endif
