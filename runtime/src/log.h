/* log.h: JSON lines on stderr, one per event:
 *   {"ts":1700000000000,"level":"warn","event":"jwt_secret_generated","msg":"...",...fields} */
#ifndef CHAT_LOG_H
#define CHAT_LOG_H

#include <jansson.h>

enum { CHAT_LOG_DEBUG, CHAT_LOG_INFO, CHAT_LOG_WARN, CHAT_LOG_ERROR };

/* Returns CHAT_EINVAL for an unknown level name (debug, info, warn, error). */
int chat__log_set_level(const char *name);
int chat__log_enabled(int level);
/* msg: a sentence for the operator (what happened, what to do). fields: extra members,
 * taken (stolen), may be NULL, e.g. json_pack("{s:s}", "listen", addr). Any thread. */
void chat__log(int level, const char *event, const char *msg, json_t *fields);

#endif
