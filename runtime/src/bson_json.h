/* bson_json.h: JSON (jansson) <-> BSON (libbson), as the MongoDB store keeps objects.
 *
 * JSON to BSON: strings as UTF-8, integers as int64, reals as double, true/false as bool,
 * null as null, objects as embedded documents (member order kept), arrays as arrays.
 * BSON to JSON: the same back, plus int32 as an integer, a date as its milliseconds, an
 * ObjectId as its 24-hex string; other types read as null. Nesting deeper than
 * CHAT_BSON_MAX_DEPTH fails both ways. */
#ifndef CHAT_BSON_JSON_H
#define CHAT_BSON_JSON_H

#include <bson/bson.h>
#include <jansson.h>
#include <stdbool.h>

#define CHAT_BSON_MAX_DEPTH 64

/* Appends v (NULL: null) under key (keylen -1: NUL-terminated). false when libbson refuses
 * (document too large, bad key) or v is nested too deep. */
bool chat__bson_append_json(bson_t *b, const char *key, int keylen, json_t *v);
/* The value at it as JSON; NULL on out-of-memory, too deep, or a string that is not UTF-8. */
json_t *chat__bson_to_json(const bson_iter_t *it);

#endif
