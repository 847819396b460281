/* test_map.c: chat_map against a plain array, growing at once and in steps. */
#include <stdint.h>

#include "map.h"
#include "test.h"

#define KEYS 20000

static char keys[KEYS][16];
static int present[KEYS]; /* the reference: is keys[i] in the map */

/* Every key is found exactly when the reference has it, and a walk sees each live entry
 * once. Returns the number of disagreements. */
static int agrees(const chat_map *m)
{
    int wrong = 0;
    size_t live = 0;
    for (int i = 0; i < KEYS; i++) {
        void *v = chat__map_get(m, keys[i]);
        wrong += present[i] ? v != keys[i] : v != NULL;
        live += present[i] != 0;
    }
    wrong += m->len != live;
    static unsigned char seen[KEYS];
    memset(seen, 0, sizeof seen);
    size_t walked = 0;
    char *v;
    for (size_t it = 0; (v = chat__map_next(m, &it));) {
        int i = (int)((v - keys[0]) / (long)sizeof keys[0]);
        wrong += seen[i]++ != 0 || !present[i];
        walked++;
    }
    wrong += walked != live;
    return wrong;
}

static void churn(int incremental)
{
    chat_map m = {.incremental = incremental};
    memset(present, 0, sizeof present);
    int wrong = 0, moving = 0;
    for (int round = 0; round < 200000; round++) {
        int i = (int)(test_rand() % KEYS);
        if (test_rand() % 3) {
            CHECK(chat__map_put(&m, keys[i], keys[i]) == 0);
            present[i] = 1;
        } else {
            void *v = chat__map_del(&m, keys[i]);
            wrong += present[i] ? v != keys[i] : v != NULL;
            present[i] = 0;
        }
        moving += m.old != NULL;
        if (round % 10007 == 0 || (m.old && round % 97 == 0)) {
            wrong += agrees(&m);
        }
    }
    wrong += agrees(&m);
    CHECK(wrong == 0);
    /* a map that grows in steps spends puts with two tables; the other never does */
    CHECK(incremental ? moving > 0 : moving == 0);
    chat__map_free(&m);
}

/* A put that grows a large incremental map moves a few entries, not all of them: the rest
 * stay reachable in the old table until later puts move them. */
static void grows_in_steps(void)
{
    chat_map m = {.incremental = 1};
    memset(present, 0, sizeof present);
    int i = 0;
    size_t cap = 0;
    for (; i < KEYS && (cap == 0 || m.cap == cap); i++) {
        cap = m.cap;
        CHECK(chat__map_put(&m, keys[i], keys[i]) == 0);
        present[i] = 1;
    }
    CHECK(m.cap == cap * 2);
    CHECK(m.old != NULL && m.old_cap == cap);
    CHECK(m.used < (size_t)i / 2); /* most entries have not moved yet */
    CHECK(agrees(&m) == 0);
    while (m.old) {
        CHECK(chat__map_put(&m, keys[i], keys[i]) == 0);
        present[i++] = 1;
    }
    CHECK(agrees(&m) == 0);
    chat__map_free(&m);
}

int main(void)
{
    for (int i = 0; i < KEYS; i++) {
        snprintf(keys[i], sizeof keys[i], "k%d", i);
    }
    churn(0);
    churn(1);
    grows_in_steps();
    return TEST_DONE("test_map");
}
