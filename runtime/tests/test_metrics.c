/* test_metrics.c: the metrics registry and its Prometheus text. */
#include <string.h>

#include "chat.h"
#include "metrics.h"
#include "test.h"

static char *page(chat_metrics *m)
{
    static chat_buf b = CHAT_BUF_INIT;
    chat__buf_reset(&b);
    CHECK(chat__metrics_render(m, &b) == 0);
    CHECK(chat__buf_terminate(&b) == 0);
    return (char *)b.data;
}

static void test_names_never_shared(void)
{
    chat_metrics *m = chat__metrics_new();
    /* the pair /metrics used to show: gauge x and counter x_total are one family to
     * OpenMetrics, so the second registration is refused, whichever comes first */
    CHECK(chat__metric_new(m, CHAT_METRIC_GAUGE, "chatd_sessions", "", NULL, NULL, 0));
    CHECK(!chat__metric_new(m, CHAT_METRIC_COUNTER, "chatd_sessions_total", "", NULL, NULL, 0));
    CHECK(chat__metric_new(m, CHAT_METRIC_COUNTER, "chatd_opened_total", "", NULL, NULL, 0));
    CHECK(!chat__metric_new(m, CHAT_METRIC_GAUGE, "chatd_opened", "", NULL, NULL, 0));
    CHECK(!chat__metric_new(m, CHAT_METRIC_GAUGE, "chatd_opened_total", "", NULL, NULL, 0));
    /* a histogram's sample names are taken too */
    static const double b[] = {1, 2};
    CHECK(chat__metric_new(m, CHAT_METRIC_HISTOGRAM, "chatd_lat_seconds", "", NULL, b, 2));
    CHECK(!chat__metric_new(m, CHAT_METRIC_GAUGE, "chatd_lat_seconds_count", "", NULL, NULL, 0));
    CHECK(!chat__metric_new(m, CHAT_METRIC_COUNTER, "chatd_lat_seconds_sum_total", "", NULL,
                            NULL, 0));
    CHECK(!chat__metric_new(m, CHAT_METRIC_GAUGE, "chatd_lat_seconds", "", NULL, NULL, 0));
    /* bad names and shapes */
    CHECK(!chat__metric_new(m, CHAT_METRIC_COUNTER, "chatd_no_suffix", "", NULL, NULL, 0));
    CHECK(!chat__metric_new(m, CHAT_METRIC_GAUGE, "9lives", "", NULL, NULL, 0));
    CHECK(!chat__metric_new(m, CHAT_METRIC_GAUGE, "a-b", "", NULL, NULL, 0));
    CHECK(!chat__metric_new(m, CHAT_METRIC_GAUGE, "chatd_x", "", "le", NULL, 0));
    static const double unsorted[] = {2, 1};
    CHECK(!chat__metric_new(m, CHAT_METRIC_HISTOGRAM, "chatd_h", "", NULL, unsorted, 2));
    CHECK(!chat__metric_new(m, CHAT_METRIC_HISTOGRAM, "chatd_h", "", NULL, NULL, 0));
    chat__metrics_free(m);
}

static void test_text(void)
{
    chat_metrics *m = chat__metrics_new();
    chat_metric *c = chat__metric_new(m, CHAT_METRIC_COUNTER, "chatd_errors_total",
                                      "Errors\\by code\nsecond line.", "code", NULL, 0);
    chat_metric *g = chat__metric_new(m, CHAT_METRIC_GAUGE, "chatd_open", "Open.", NULL, NULL, 0);
    static const double b[] = {0.01, 0.1, 1};
    chat_metric *h = chat__metric_new(m, CHAT_METRIC_HISTOGRAM, "chatd_call_seconds", "Calls.",
                                      "op", b, 3);
    CHECK(c && g && h);
    char *text = page(m);
    /* a family without a label shows 0 before first use; one with a label shows no series */
    CHECK(strstr(text, "# TYPE chatd_open gauge\nchatd_open 0\n"));
    CHECK(strstr(text, "# HELP chatd_errors_total Errors\\\\by code\\nsecond line.\n"
                       "# TYPE chatd_errors_total counter\n# HELP"));
    chat__metric_add(c, "not_found", 1);
    chat__metric_add(c, "not_found", 2);
    chat__metric_add(c, "a\"b\\c\nd", 1);
    chat__series_set(chat__metric_series(g, NULL), 42);
    chat__metric_observe(h, "room_get", 0.005);
    chat__metric_observe(h, "room_get", 0.1); /* an upper bound is inclusive */
    chat__metric_observe(h, "room_get", 5);
    text = page(m);
    CHECK(strstr(text, "chatd_errors_total{code=\"not_found\"} 3\n"));
    CHECK(strstr(text, "chatd_errors_total{code=\"a\\\"b\\\\c\\nd\"} 1\n"));
    CHECK(strstr(text, "chatd_open 42\n"));
    CHECK(strstr(text, "chatd_call_seconds_bucket{op=\"room_get\",le=\"0.01\"} 1\n"
                       "chatd_call_seconds_bucket{op=\"room_get\",le=\"0.1\"} 2\n"
                       "chatd_call_seconds_bucket{op=\"room_get\",le=\"1\"} 2\n"
                       "chatd_call_seconds_bucket{op=\"room_get\",le=\"+Inf\"} 3\n"
                       "chatd_call_seconds_sum{op=\"room_get\"} 5.105\n"
                       "chatd_call_seconds_count{op=\"room_get\"} 3\n"));
    chat__metrics_free(m);
}

static void test_series_bounded(void)
{
    chat_metrics *m = chat__metrics_new();
    chat_metric *c = chat__metric_new(m, CHAT_METRIC_COUNTER, "chatd_hooks_total", "", "hook",
                                      NULL, 0);
    char name[32];
    for (int i = 0; i < CHAT_METRIC_SERIES_MAX + 50; i++) {
        snprintf(name, sizeof name, "hook%d", i);
        chat__metric_add(c, name, 1);
    }
    char *text = page(m);
    CHECK(strstr(text, "chatd_hooks_total{hook=\"hook0\"} 1\n"));
    CHECK(!strstr(text, "hook=\"hook" "210\""));
    CHECK(strstr(text, "chatd_hooks_total{hook=\"other\"} 50\n"));
    chat__metrics_free(m);
}

static void test_process(void)
{
    chat_metrics *m = chat__metrics_new();
    CHECK(chat__metrics_process_register(m) == 0);
    chat__metrics_process_update(m);
    char *text = page(m);
    CHECK(strstr(text, "\nprocess_open_fds "));
    CHECK(!strstr(text, "\nprocess_open_fds 0\n"));
    CHECK(!strstr(text, "\nprocess_resident_memory_bytes 0\n"));
    CHECK(!strstr(text, "\nprocess_start_time_seconds 0\n"));
    chat__metrics_free(m);
}

int main(void)
{
    test_names_never_shared();
    test_text();
    test_series_bounded();
    test_process();
    return TEST_DONE("test_metrics");
}
