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

/* A map with `incremental` set grows by moving its entries a few at a time, each put moving
 * some (CHAT_MAP_MOVE_STEP old slots): rehashing the kv's 400k keys at once held the loop
 * for 20 ms. Meanwhile an entry is in exactly one of the two tables; lookups try the new
 * one, then the old. Such a map may not be put into while it is walked (a move could bring
 * an entry already seen). Other maps move everything when they grow, as before. */
typedef struct chat_map {
    chat_map_slot *slots;
    size_t cap;  /* power of two */
    size_t used; /* live + tombstones, in slots */
    size_t len;  /* live, in both tables */
    chat_map_slot *old; /* the table being emptied into slots, or NULL */
    size_t old_cap;
    size_t old_at; /* old's slots below this have been moved */
    int incremental; /* set before the first put */
} chat_map;
#define CHAT_MAP_MOVE_STEP 64

void *chat__map_get(const chat_map *m, const char *key);
/* Inserts or replaces. 0 or CHAT_ENOMEM. */
int chat__map_put(chat_map *m, const char *key, void *value);
/* Removes and returns the value, or NULL. */
void *chat__map_del(chat_map *m, const char *key);
void chat__map_free(chat_map *m);
/* Iteration: for (size_t i = 0; (v = chat__map_next(m, &i));) ... (no changes meanwhile,
 * but chat__map_del of the value just returned) */
void *chat__map_next(const chat_map *m, size_t *iter);
/* The same, looking at the positions before end only: a walk in bounded steps. Positions
 * run over the old table, then the new one (chat__map_positions: how many there are). */
void *chat__map_next_before(const chat_map *m, size_t *iter, size_t end);
size_t chat__map_positions(const chat_map *m);

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
