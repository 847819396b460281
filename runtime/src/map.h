/* map.h: containers. chat_map: a string-keyed hash map (open addressing, linear probing). Keys are borrowed: each
 * value owns its key (e.g. a session's sid), so the map never copies or frees them. */
#ifndef CHAT_MAP_H
#define CHAT_MAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct chat_map_slot {
    const char *key; /* NULL: empty; CHAT_MAP_TOMBSTONE: deleted */
    void *value;
} chat_map_slot;

typedef struct chat_map {
    chat_map_slot *slots;
    size_t cap;  /* power of two */
    size_t used; /* live + tombstones */
    size_t len;  /* live */
} chat_map;

void *chat__map_get(const chat_map *m, const char *key);
/* Inserts or replaces. 0 or CHAT_ENOMEM. */
int chat__map_put(chat_map *m, const char *key, void *value);
/* Removes and returns the value, or NULL. */
void *chat__map_del(chat_map *m, const char *key);
void chat__map_free(chat_map *m);
/* Iteration: for (size_t i = 0; (v = chat__map_next(m, &i));) ... (no changes meanwhile) */
void *chat__map_next(const chat_map *m, size_t *iter);

/* A pointer vector with swap-remove: order is not kept. */
typedef struct chat_vec {
    void **items;
    uint32_t len, cap;
} chat_vec;
int chat__vec_push(chat_vec *v, void *item); /* 0 or CHAT_ENOMEM */
int chat__vec_remove(chat_vec *v, void *item); /* 1 if it was there */
int chat__vec_has(const chat_vec *v, const void *item);
void chat__vec_free(chat_vec *v);

#endif
