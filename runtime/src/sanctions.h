/* sanctions.h: what an operator imposed on a user through the admin API: an account disabled,
 * a ban or a mute in one room or everywhere. Every node holds them all in memory (checked on
 * the hot paths without I/O) and applies a change the moment the "sanction" cluster op
 * reaches it. They persist in Redis (hash chatd:sanctions) when CHAT_REDIS_URL is set, else
 * in <data_dir>/sanctions.json. Loop thread only. */
#ifndef CHAT_SANCTIONS_H
#define CHAT_SANCTIONS_H

#include <jansson.h>
#include <stdint.h>

typedef struct chat_runtime chat_runtime;

typedef enum { CHAT_SANCTION_DISABLE, CHAT_SANCTION_BAN, CHAT_SANCTION_MUTE } chat_sanction_kind;

#define CHAT_SANCTION_EVERYWHERE "*"

int chat__sanctions_start(chat_runtime *rt); /* loads them; registers the cluster ops */
void chat__sanctions_free(chat_runtime *rt);

/* The sanction of kind on user in room (a room id, or "*" for everywhere) in force now, as
 * {kind, roomId, userId, until (ms, or null: until lifted), reason, by, at}; NULL if none. A
 * room-scoped check also finds the sanction "everywhere". Borrowed. */
const json_t *chat__sanction_find(chat_runtime *rt, chat_sanction_kind kind, const char *room,
                                  const char *user_id);
/* Every sanction in force on user (a new array). */
json_t *chat__sanctions_of(chat_runtime *rt, const char *user_id);

/* Imposes (seconds 0: until lifted) or lifts one, on every node. by: the admin token's name.
 * 0, or CHAT_EUNAVAIL when other nodes could not be reached. */
int chat__sanction_set(chat_runtime *rt, chat_sanction_kind kind, const char *room,
                       const char *user_id, int64_t seconds, const char *reason, const char *by);
int chat__sanction_lift(chat_runtime *rt, chat_sanction_kind kind, const char *room,
                        const char *user_id, const char *by);
/* Disconnects the user's sockets everywhere, telling them first (kick everywhere). */
int chat__sanction_kick(chat_runtime *rt, const char *user_id, const char *reason,
                        const char *by);
/* Tells the user's sockets (every node) of a moderation action: the `moderation` event. */
int chat__sanction_notify(chat_runtime *rt, const char *user_id, json_t *note);

/* The sentence for a refused action, e.g. "you are muted in this room until 2026-...". */
void chat__sanction_describe(const json_t *s, char *out, size_t len);

#endif
