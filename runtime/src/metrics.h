/* metrics.h: counters, gauges and fixed-bucket histograms, rendered in the Prometheus text
 * format for GET /metrics.
 *
 * A registry holds families (one name, one type, at most one label); a family holds series,
 * one per label value, created on first use. Registering a family whose name, or any name its
 * samples use (x_total's "x", a histogram's x_bucket/x_sum/x_count), is taken by another
 * family fails: two families never share a name. Loop thread only; the few counters other
 * threads bump (chat__metrics_store_reconnect) are atomics read at scrape time. */
#ifndef CHAT_METRICS_H
#define CHAT_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

typedef struct chat_metrics chat_metrics;
typedef struct chat_metric chat_metric;        /* a family */
typedef struct chat_metric_series chat_metric_series;

typedef enum { CHAT_METRIC_COUNTER, CHAT_METRIC_GAUGE, CHAT_METRIC_HISTOGRAM } chat_metric_type;

/* Series past this many in one family fold into the label value "other" (label values that
 * come from scripts, such as hook names, cannot grow the page without bound). */
#define CHAT_METRIC_SERIES_MAX 200

chat_metrics *chat__metrics_new(void); /* NULL on out-of-memory */
void chat__metrics_free(chat_metrics *m);

/* name: [a-zA-Z_:][a-zA-Z0-9_:]*; counters end in _total. label: the label's name, or NULL
 * for a family of one series. buckets: ascending upper bounds for a histogram (copied; +Inf
 * is implied), NULL for the others. NULL when the name is invalid or collides, or on
 * out-of-memory. */
chat_metric *chat__metric_new(chat_metrics *m, chat_metric_type type, const char *name,
                              const char *help, const char *label, const double *buckets,
                              size_t nbuckets);
/* The series for a label value (NULL for a family without a label), created on first use;
 * callers on hot paths keep it. NULL on out-of-memory. */
chat_metric_series *chat__metric_series(chat_metric *f, const char *value);
/* The same, with the series' whole label text given as is, e.g. `version="0.1.0",lua="5.4"`
 * (already escaped). */
chat_metric_series *chat__metric_series_raw(chat_metric *f, const char *labels);

/* Removes the series a family without a label starts with, for one whose series all come
 * from chat__metric_series_raw (chatd_build_info). */
void chat__metric_drop_unlabelled(chat_metric *f);

void chat__series_add(chat_metric_series *s, double v);     /* counter or gauge; NULL-safe */
void chat__series_set(chat_metric_series *s, double v);     /* gauge (or a counter copied
                                                               from a running total) */
void chat__series_observe(chat_metric_series *s, double v); /* histogram */

/* Shorthands: series lookup + add/observe. f may be NULL (no-op). */
void chat__metric_add(chat_metric *f, const char *value, double v);
void chat__metric_observe(chat_metric *f, const char *value, double v);

/* The whole page. 0 or CHAT_ENOMEM. */
int chat__metrics_render(const chat_metrics *m, chat_buf *out);

/* A counter family kept outside the registry as n plain counts, one per label value, every
 * value shown (0 included): `# HELP`, `# TYPE` and `name{label="value"} count` lines. help
 * is written as given (no backslash or newline in it). 0 or CHAT_ENOMEM. */
int chat__metrics_counts(chat_buf *b, const char *name, const char *help, const char *label,
                         const char *const *values, const uint64_t *counts, size_t n);

/* Buckets: seconds from 0.5 ms to 10 s, and counts from 0 to 10000. */
extern const double chat__metrics_latency_buckets[];
extern const size_t chat__metrics_latency_nbuckets;
extern const double chat__metrics_count_buckets[];
extern const size_t chat__metrics_count_nbuckets;

/* Seconds between two uv_hrtime() readings. */
static inline double chat__metrics_since(uint64_t start_ns, uint64_t now_ns)
{
    return now_ns > start_ns ? (double)(now_ns - start_ns) / 1e9 : 0.0;
}

/* ---- process_* (the standard names of Prometheus client libraries) ---- */
/* Registers process_cpu_seconds_total, process_resident_memory_bytes,
 * process_virtual_memory_bytes, process_open_fds, process_max_fds and
 * process_start_time_seconds; chat__metrics_process_update refreshes them (at each scrape). */
int chat__metrics_process_register(chat_metrics *m);
void chat__metrics_process_update(chat_metrics *m);

/* Store reconnects (a backend that was unavailable answers again): bumped on store worker
 * threads, read at scrape time. */
void chat__metrics_store_reconnect(void);
uint64_t chat__metrics_store_reconnects(void);

#endif
