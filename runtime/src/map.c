#include "map.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "chat.h"

static const char tombstone;
#define CHAT_MAP_TOMBSTONE (&tombstone)

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (; *s; s++) {
        h = (h ^ (uint8_t)*s) * 1099511628211ULL;
    }
    return h;
}

static chat_map_slot *find_in(chat_map_slot *slots, size_t cap, const char *key, uint64_t h)
{
    if (!cap) {
        return NULL;
    }
    size_t mask = cap - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        chat_map_slot *s = &slots[i];
        if (!s->key) {
            return NULL;
        }
        if (s->key != CHAT_MAP_TOMBSTONE && strcmp(s->key, key) == 0) {
            return s;
        }
    }
}

static chat_map_slot *find(const chat_map *m, const char *key)
{
    uint64_t h = hash_str(key);
    chat_map_slot *s = find_in(m->slots, m->cap, key, h);
    return s || !m->old ? s : find_in(m->old, m->old_cap, key, h);
}

/* Into the new table, which has room (its load stays under 3/4 until every old entry is in). */
static void place(chat_map *m, const char *key, void *value)
{
    size_t mask = m->cap - 1;
    size_t i = hash_str(key) & mask;
    while (m->slots[i].key && m->slots[i].key != CHAT_MAP_TOMBSTONE) {
        i = (i + 1) & mask;
    }
    if (!m->slots[i].key) {
        m->used++;
    }
    m->slots[i].key = key;
    m->slots[i].value = value;
}

/* Moves up to n old slots' entries; a moved one leaves a tombstone, so the old table's probe
 * chains still lead to the entries not moved yet. */
static void move_some(chat_map *m, size_t n)
{
    for (; m->old && n > 0; n--) {
        if (m->old_at == m->old_cap) {
            free(m->old);
            m->old = NULL;
            m->old_cap = m->old_at = 0;
            return;
        }
        chat_map_slot *s = &m->old[m->old_at++];
        if (s->key && s->key != CHAT_MAP_TOMBSTONE) {
            place(m, s->key, s->value);
            s->key = CHAT_MAP_TOMBSTONE;
            s->value = NULL;
        }
    }
}

/* A new table for the live entries: twice the size, or the same when most slots are
 * tombstones. The entries move now, or over the next puts (incremental). */
static int grow(chat_map *m)
{
    move_some(m, SIZE_MAX); /* a move still under way ends first */
    size_t cap = m->cap ? m->cap * 2 : 16;
    if (m->len * 4 < m->cap) {
        cap = m->cap;
    }
    chat_map_slot *slots = calloc(cap, sizeof *slots);
    if (!slots) {
        return CHAT_ENOMEM;
    }
    if (m->len) {
        m->old = m->slots;
        m->old_cap = m->cap;
        m->old_at = 0;
    } else {
        free(m->slots);
    }
    m->slots = slots;
    m->cap = cap;
    m->used = 0;
    if (!m->incremental) {
        move_some(m, SIZE_MAX);
    }
    return 0;
}

void *chat__map_get(const chat_map *m, const char *key)
{
    chat_map_slot *s = find(m, key);
    return s ? s->value : NULL;
}

int chat__map_put(chat_map *m, const char *key, void *value)
{
    move_some(m, CHAT_MAP_MOVE_STEP);
    chat_map_slot *s = find(m, key);
    if (s) {
        s->key = key;
        s->value = value;
        return 0;
    }
    if ((m->used + 1) * 4 > m->cap * 3 && grow(m)) {
        return CHAT_ENOMEM;
    }
    place(m, key, value);
    m->len++;
    return 0;
}

void *chat__map_del(chat_map *m, const char *key)
{
    chat_map_slot *s = find(m, key);
    if (!s) {
        return NULL;
    }
    void *v = s->value;
    s->key = CHAT_MAP_TOMBSTONE;
    s->value = NULL;
    m->len--;
    return v;
}

size_t chat__map_positions(const chat_map *m) { return m->old_cap + m->cap; }

void *chat__map_next(const chat_map *m, size_t *iter)
{
    return chat__map_next_before(m, iter, chat__map_positions(m));
}

void *chat__map_next_before(const chat_map *m, size_t *iter, size_t end)
{
    size_t total = chat__map_positions(m);
    for (end = end < total ? end : total; *iter < end; (*iter)++) {
        chat_map_slot *s = *iter < m->old_cap ? &m->old[*iter] : &m->slots[*iter - m->old_cap];
        if (s->key && s->key != CHAT_MAP_TOMBSTONE) {
            (*iter)++;
            return s->value;
        }
    }
    return NULL;
}

void chat__map_free(chat_map *m)
{
    free(m->slots);
    free(m->old);
    memset(m, 0, sizeof *m);
}

int chat__vec_push(chat_vec *v, void *item)
{
    if (v->len == v->cap) {
        uint32_t cap = v->cap ? v->cap * 2 : 4;
        void **items = realloc(v->items, cap * sizeof *items);
        if (!items) {
            return CHAT_ENOMEM;
        }
        v->items = items;
        v->cap = cap;
    }
    v->items[v->len++] = item;
    return 0;
}

int chat__vec_remove(chat_vec *v, void *item)
{
    for (uint32_t i = 0; i < v->len; i++) {
        if (v->items[i] == item) {
            v->items[i] = v->items[--v->len];
            return 1;
        }
    }
    return 0;
}

int chat__vec_has(const chat_vec *v, const void *item)
{
    for (uint32_t i = 0; i < v->len; i++) {
        if (v->items[i] == item) {
            return 1;
        }
    }
    return 0;
}

void chat__vec_free(chat_vec *v)
{
    free(v->items);
    v->items = NULL;
    v->len = v->cap = 0;
}
