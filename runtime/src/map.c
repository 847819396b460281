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

static chat_map_slot *find(const chat_map *m, const char *key)
{
    if (!m->cap) {
        return NULL;
    }
    size_t mask = m->cap - 1;
    for (size_t i = hash_str(key) & mask;; i = (i + 1) & mask) {
        chat_map_slot *s = &m->slots[i];
        if (!s->key) {
            return NULL;
        }
        if (s->key != CHAT_MAP_TOMBSTONE && strcmp(s->key, key) == 0) {
            return s;
        }
    }
}

static int grow(chat_map *m)
{
    size_t cap = m->cap ? m->cap * 2 : 16;
    if (m->len * 4 < m->cap) {
        cap = m->cap; /* mostly tombstones: rehash in place size */
    }
    chat_map_slot *slots = calloc(cap, sizeof *slots);
    if (!slots) {
        return CHAT_ENOMEM;
    }
    for (size_t i = 0; i < m->cap; i++) {
        chat_map_slot *s = &m->slots[i];
        if (s->key && s->key != CHAT_MAP_TOMBSTONE) {
            size_t j = hash_str(s->key) & (cap - 1);
            while (slots[j].key) {
                j = (j + 1) & (cap - 1);
            }
            slots[j] = *s;
        }
    }
    free(m->slots);
    m->slots = slots;
    m->cap = cap;
    m->used = m->len;
    return 0;
}

void *chat__map_get(const chat_map *m, const char *key)
{
    chat_map_slot *s = find(m, key);
    return s ? s->value : NULL;
}

int chat__map_put(chat_map *m, const char *key, void *value)
{
    chat_map_slot *s = find(m, key);
    if (s) {
        s->key = key;
        s->value = value;
        return 0;
    }
    if ((m->used + 1) * 4 > m->cap * 3 && grow(m)) {
        return CHAT_ENOMEM;
    }
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

void *chat__map_next(const chat_map *m, size_t *iter)
{
    for (; *iter < m->cap; (*iter)++) {
        chat_map_slot *s = &m->slots[*iter];
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
