/* test_kv.c: the in-process kv's sweep of keys that expire unread. */
#include <uv.h>

#include "kv.h"
#include "test.h"

static uv_loop_t loop;

typedef struct watch {
    chat_kv *kv;
    size_t until; /* stop once the kv holds this many keys */
    size_t start; /* keys held when the run began */
    int partial;  /* a check saw some of them gone, not all */
    uv_timer_t check, deadline;
} watch;

static void stop(watch *w)
{
    uv_timer_stop(&w->check);
    uv_timer_stop(&w->deadline);
}

static void check_cb(uv_timer_t *t)
{
    watch *w = t->data;
    size_t n = chat__kv_count(w->kv);
    if (n > w->until && n < w->start) {
        w->partial = 1;
    }
    if (n <= w->until) {
        stop(w);
    }
}

static void deadline_cb(uv_timer_t *t) { stop(t->data); }

/* Runs the loop until the kv holds `until` keys or deadline_ms passes, looking every 20 ms;
 * *partial: a look found the kv between where it started and `until`. */
static size_t run_until(chat_kv *kv, size_t until, uint64_t deadline_ms, int *partial)
{
    watch w = {.kv = kv, .until = until, .start = chat__kv_count(kv)};
    uv_timer_init(&loop, &w.check);
    uv_timer_init(&loop, &w.deadline);
    w.check.data = w.deadline.data = &w;
    uv_timer_start(&w.check, check_cb, 20, 20);
    uv_timer_start(&w.deadline, deadline_cb, deadline_ms, 0);
    while (uv_timer_get_due_in(&w.deadline) > 0 && uv_is_active((uv_handle_t *)&w.check)) {
        uv_run(&loop, UV_RUN_ONCE);
    }
    uv_close((uv_handle_t *)&w.check, NULL);
    uv_close((uv_handle_t *)&w.deadline, NULL);
    uv_run(&loop, UV_RUN_NOWAIT);
    if (partial) {
        *partial = w.partial;
    }
    return chat__kv_count(kv);
}

static void fill(chat_kv *kv, const char *prefix, int n, int64_t ttl_ms)
{
    char key[64];
    for (int i = 0; i < n; i++) {
        snprintf(key, sizeof key, "%s:%d", prefix, i);
        CHECK(chat__kv_set(kv, key, "v", ttl_ms, NULL, NULL) == 0);
    }
}

/* Keys nobody reads again go once they expire; the others stay. */
static void test_sweep_drops_expired(void)
{
    chat_kv *kv = NULL;
    CHECK(chat__kv_new(&kv, &loop) == 0);
    fill(kv, "kept", 5, 0);
    fill(kv, "long", 5, 600000);
    fill(kv, "flood", 3000, 1);
    size_t left = run_until(kv, 10, 5000, NULL);
    CHECK(left == 10);
    CHECK(chat__kv_bytes(kv) > 0);
    chat__kv_free(kv);
}

/* A large kv is swept a slice at a time (one pass over 300k expired keys at once held the
 * loop for tens of ms): the looks in between find some of them gone and some not, and all
 * of them go within about one whole pass (10 s). */
static void test_sweep_in_slices(void)
{
    chat_kv *kv = NULL;
    CHECK(chat__kv_new(&kv, &loop) == 0);
    fill(kv, "flood", 300000, 1);
    int partial = 0;
    size_t left = run_until(kv, 0, 20000, &partial);
    CHECK(partial);
    CHECK(left == 0);
    chat__kv_free(kv);
}

int main(void)
{
    uv_loop_init(&loop);
    test_sweep_drops_expired();
    test_sweep_in_slices();
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(uv_loop_close(&loop) == 0);
    return TEST_DONE("test_kv");
}
