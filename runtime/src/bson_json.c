/* bson_json.c: JSON <-> BSON for the MongoDB store (bson_json.h). */
#include "bson_json.h"

#include <limits.h>
#include <string.h>


static bool mg_append_json(bson_t *b, const char *key, int keylen, json_t *v, int depth);

static bool mg_append_object(bson_t *b, json_t *obj, int depth)
{
    const char *k;
    json_t *v;
    json_object_foreach (obj, k, v) {
        size_t n = strlen(k);
        if (n > INT_MAX || !mg_append_json(b, k, (int)n, v, depth + 1)) {
            return false;
        }
    }
    return true;
}

static bool mg_append_json(bson_t *b, const char *key, int keylen, json_t *v, int depth)
{
    bson_t child;
    if (depth > CHAT_BSON_MAX_DEPTH) {
        return false;
    }
    switch (v ? json_typeof(v) : JSON_NULL) {
    case JSON_STRING:
        if (json_string_length(v) > INT_MAX) {
            return false;
        }
        return bson_append_utf8(b, key, keylen, json_string_value(v), (int)json_string_length(v));
    case JSON_INTEGER:
        return bson_append_int64(b, key, keylen, json_integer_value(v));
    case JSON_REAL:
        return bson_append_double(b, key, keylen, json_real_value(v));
    case JSON_TRUE:
    case JSON_FALSE:
        return bson_append_bool(b, key, keylen, json_is_true(v));
    case JSON_OBJECT:
        return bson_append_document_begin(b, key, keylen, &child) &&
               mg_append_object(&child, v, depth) && bson_append_document_end(b, &child);
    case JSON_ARRAY: {
        if (!bson_append_array_begin(b, key, keylen, &child)) {
            return false;
        }
        size_t i;
        json_t *item;
        json_array_foreach (v, i, item) {
            char idx[24];
            const char *ik;
            size_t n = bson_uint32_to_string((uint32_t)i, &ik, idx, sizeof idx);
            if (!mg_append_json(&child, ik, (int)n, item, depth + 1)) {
                return false;
            }
        }
        return bson_append_array_end(b, &child);
    }
    default:
        return bson_append_null(b, key, keylen);
    }
}

static json_t *mg_value_json(const bson_iter_t *it, int depth);

static json_t *mg_container_json(const bson_iter_t *it, int array, int depth)
{
    bson_iter_t child;
    json_t *out = array ? json_array() : json_object();
    if (!out || !bson_iter_recurse(it, &child)) {
        json_decref(out);
        return NULL;
    }
    while (bson_iter_next(&child)) {
        json_t *v = mg_value_json(&child, depth + 1);
        int rc = !v      ? -1
                 : array ? json_array_append_new(out, v)
                         : json_object_set_new(out, bson_iter_key(&child), v);
        if (rc) {
            json_decref(out);
            return NULL;
        }
    }
    return out;
}

/* NULL on out-of-memory, too deep, or a string that is not UTF-8. */
static json_t *mg_value_json(const bson_iter_t *it, int depth)
{
    uint32_t len;
    const char *s;
    char oid[25];

    if (depth > CHAT_BSON_MAX_DEPTH + 2) {
        return NULL;
    }
    switch (bson_iter_type(it)) {
    case BSON_TYPE_UTF8:
        s = bson_iter_utf8(it, &len);
        return json_stringn(s, len);
    case BSON_TYPE_INT32:
        return json_integer(bson_iter_int32(it));
    case BSON_TYPE_INT64:
        return json_integer(bson_iter_int64(it));
    case BSON_TYPE_DOUBLE:
        return json_real(bson_iter_double(it));
    case BSON_TYPE_BOOL:
        return json_boolean(bson_iter_bool(it));
    case BSON_TYPE_DATE_TIME:
        return json_integer(bson_iter_date_time(it));
    case BSON_TYPE_OID:
        bson_oid_to_string(bson_iter_oid(it), oid);
        return json_string(oid);
    case BSON_TYPE_DOCUMENT:
        return mg_container_json(it, 0, depth);
    case BSON_TYPE_ARRAY:
        return mg_container_json(it, 1, depth);
    default:
        return json_null();
    }
}

bool chat__bson_append_json(bson_t *b, const char *key, int keylen, json_t *v)
{
    return mg_append_json(b, key, keylen, v, 0);
}

json_t *chat__bson_to_json(const bson_iter_t *it)
{
    return mg_value_json(it, 0);
}
