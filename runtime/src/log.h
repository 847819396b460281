/* log.h: JSON lines, one per event, to the host's sink (chat_log_set_sink) or stderr:
 *   {"ts":1700000000000,"level":"warn","event":"jwt_secret_generated","msg":"...",...fields} */
#ifndef CHAT_LOG_H
#define CHAT_LOG_H

#include <jansson.h>

#include "chat.h" /* chat_log_level, chat_log_set_level */

int chat__log_enabled(int level);
/* msg: a sentence for the operator (what happened, what to do). fields: extra members,
 * taken (stolen), may be NULL, e.g. json_pack("{s:s}", "listen", addr). Any thread. */
void chat__log(int level, const char *event, const char *msg, json_t *fields);

#endif
