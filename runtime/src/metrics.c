/* metrics.c: the registry, the Prometheus text format and the process_* metrics. */
#include "metrics.h"

#include <dirent.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <unistd.h>

#include "chat.h"
#include "map.h"

const double chat__metrics_latency_buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                0.1,    0.25,  0.5,    1,     2.5,  5,     10};
const size_t chat__metrics_latency_nbuckets =
    sizeof chat__metrics_latency_buckets / sizeof chat__metrics_latency_buckets[0];
const double chat__metrics_count_buckets[] = {0,  1,   2,   5,    10,   20,  50,
                                              100, 200, 500, 1000, 2000, 5000, 10000};
const size_t chat__metrics_count_nbuckets =
    sizeof chat__metrics_count_buckets / sizeof chat__metrics_count_buckets[0];

struct chat_metric_series {
    chat_metric *family;
    char *labels;     /* `name="value"`, escaped; "" for none (owned; the map's key) */
    double value;     /* counter, gauge; a histogram's sum */
    uint64_t count;   /* histogram: observations */
    uint64_t *counts; /* histogram: per bucket (not cumulative), nbuckets + 1 for +Inf */
};

struct chat_metric {
    chat_metric_type type;
    char *name;
    char *help;
    char *label;
    double *buckets;
    size_t nbuckets;
    chat_map series; /* labels -> chat_metric_series */
    chat_vec order;  /* chat_metric_series*, in creation order: a stable page */
    chat_metric_series *other; /* the fold for series past CHAT_METRIC_SERIES_MAX */
};

typedef struct process_metrics {
    chat_metric *cpu, *rss, *vsz, *fds, *max_fds, *start;
} process_metrics;

struct chat_metrics {
    chat_vec families;  /* chat_metric*, in registration order */
    chat_map names;     /* every name a family's samples use -> the family */
    chat_vec names_own; /* the strings keyed in names */
    process_metrics proc;
};

static _Atomic uint64_t store_reconnects;

void chat__metrics_store_reconnect(void) { atomic_fetch_add(&store_reconnects, 1); }
uint64_t chat__metrics_store_reconnects(void) { return atomic_load(&store_reconnects); }

chat_metrics *chat__metrics_new(void) { return calloc(1, sizeof(chat_metrics)); }

static void series_free(chat_metric_series *s)
{
    if (s) {
        free(s->labels);
        free(s->counts);
        free(s);
    }
}

static void family_free(chat_metric *f)
{
    for (uint32_t i = 0; i < f->order.len; i++) {
        series_free(f->order.items[i]);
    }
    series_free(f->other);
    chat__vec_free(&f->order);
    chat__map_free(&f->series);
    free(f->name);
    free(f->help);
    free(f->label);
    free(f->buckets);
    free(f);
}

void chat__metrics_free(chat_metrics *m)
{
    if (!m) {
        return;
    }
    for (uint32_t i = 0; i < m->families.len; i++) {
        family_free(m->families.items[i]);
    }
    for (uint32_t i = 0; i < m->names_own.len; i++) {
        free(m->names_own.items[i]);
    }
    chat__vec_free(&m->families);
    chat__vec_free(&m->names_own);
    chat__map_free(&m->names);
    free(m);
}

static int valid_name(const char *s)
{
    if (!s || !*s) {
        return 0;
    }
    for (const char *p = s; *p; p++) {
        int alpha = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '_' || *p == ':';
        if (!alpha && !(p > s && *p >= '0' && *p <= '9')) {
            return 0;
        }
    }
    return 1;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* The names a family claims: its own, and the ones its samples and OpenMetrics use. */
static size_t claimed_names(chat_metric_type type, const char *name, char out[4][160])
{
    size_t n = 0;
    snprintf(out[n++], 160, "%s", name);
    if (type == CHAT_METRIC_COUNTER) {
        snprintf(out[n++], 160, "%.*s", (int)(strlen(name) - 6), name); /* x_total -> x */
    } else if (type == CHAT_METRIC_HISTOGRAM) {
        snprintf(out[n++], 160, "%s_bucket", name);
        snprintf(out[n++], 160, "%s_sum", name);
        snprintf(out[n++], 160, "%s_count", name);
    } else {
        snprintf(out[n++], 160, "%s_total", name); /* the counter this gauge would clash with */
    }
    return n;
}

chat_metric *chat__metric_new(chat_metrics *m, chat_metric_type type, const char *name,
                              const char *help, const char *label, const double *buckets,
                              size_t nbuckets)
{
    if (!m || !valid_name(name) || strlen(name) > 120 || (label && !valid_name(label)) ||
        (type == CHAT_METRIC_COUNTER && !ends_with(name, "_total")) ||
        (type == CHAT_METRIC_HISTOGRAM && (!buckets || !nbuckets)) ||
        (label && strcmp(label, "le") == 0)) {
        return NULL;
    }
    for (size_t i = 1; type == CHAT_METRIC_HISTOGRAM && i < nbuckets; i++) {
        if (!(buckets[i] > buckets[i - 1])) {
            return NULL;
        }
    }
    char names[4][160];
    size_t nnames = claimed_names(type, name, names);
    for (size_t i = 0; i < nnames; i++) {
        if (chat__map_get(&m->names, names[i])) {
            return NULL;
        }
    }
    chat_metric *f = calloc(1, sizeof *f);
    if (!f) {
        return NULL;
    }
    f->type = type;
    f->name = strdup(name);
    f->help = strdup(help ? help : "");
    f->label = label ? strdup(label) : NULL;
    if (type == CHAT_METRIC_HISTOGRAM) {
        f->buckets = malloc(nbuckets * sizeof *buckets);
        if (f->buckets) {
            memcpy(f->buckets, buckets, nbuckets * sizeof *buckets);
            f->nbuckets = nbuckets;
        }
    }
    if (!f->name || !f->help || (label && !f->label) ||
        (type == CHAT_METRIC_HISTOGRAM && !f->buckets) || chat__vec_push(&m->families, f)) {
        family_free(f);
        return NULL;
    }
    for (size_t i = 0; i < nnames; i++) {
        char *key = strdup(names[i]);
        if (!key || chat__vec_push(&m->names_own, key)) {
            free(key);
            return NULL; /* the family stays registered (and freed with m), unnamed */
        }
        if (chat__map_put(&m->names, key, f)) {
            return NULL;
        }
    }
    /* a family without a label always shows its one series, even before first use */
    if (!label && !chat__metric_series_raw(f, "")) {
        return NULL;
    }
    return f;
}

/* Label values are escaped as the text format asks: \\, \" and \n. */
static int format_labels(char *out, size_t len, const char *label, const char *value)
{
    size_t n = (size_t)snprintf(out, len, "%s=\"", label);
    for (const char *p = value; *p && n + 3 < len; p++) {
        if (*p == '\\' || *p == '"') {
            out[n++] = '\\';
            out[n++] = *p;
        } else if (*p == '\n') {
            out[n++] = '\\';
            out[n++] = 'n';
        } else {
            out[n++] = *p;
        }
    }
    if (n + 2 > len) {
        return -1;
    }
    out[n++] = '"';
    out[n] = 0;
    return 0;
}

static chat_metric_series *series_new(chat_metric *f, const char *labels)
{
    chat_metric_series *s = calloc(1, sizeof *s);
    if (!s) {
        return NULL;
    }
    s->family = f;
    s->labels = strdup(labels);
    if (f->type == CHAT_METRIC_HISTOGRAM) {
        s->counts = calloc(f->nbuckets + 1, sizeof *s->counts);
    }
    if (!s->labels || (f->type == CHAT_METRIC_HISTOGRAM && !s->counts)) {
        series_free(s);
        return NULL;
    }
    return s;
}

chat_metric_series *chat__metric_series_raw(chat_metric *f, const char *labels)
{
    if (!f) {
        return NULL;
    }
    chat_metric_series *s = chat__map_get(&f->series, labels);
    if (s) {
        return s;
    }
    if (f->order.len >= CHAT_METRIC_SERIES_MAX) {
        if (!f->other) {
            char other[160];
            if (f->label) {
                format_labels(other, sizeof other, f->label, "other");
            } else {
                other[0] = 0;
            }
            f->other = series_new(f, other);
        }
        return f->other;
    }
    s = series_new(f, labels);
    if (!s) {
        return NULL;
    }
    if (chat__vec_push(&f->order, s)) {
        series_free(s);
        return NULL;
    }
    if (chat__map_put(&f->series, s->labels, s)) {
        f->order.len--;
        series_free(s);
        return NULL;
    }
    return s;
}

chat_metric_series *chat__metric_series(chat_metric *f, const char *value)
{
    if (!f) {
        return NULL;
    }
    if (!f->label) {
        return chat__metric_series_raw(f, "");
    }
    char labels[512];
    if (format_labels(labels, sizeof labels, f->label, value ? value : "")) {
        return NULL;
    }
    return chat__metric_series_raw(f, labels);
}

void chat__metric_drop_unlabelled(chat_metric *f)
{
    chat_metric_series *s = f ? chat__map_del(&f->series, "") : NULL;
    if (!s) {
        return;
    }
    for (uint32_t i = 0; i < f->order.len; i++) {
        if (f->order.items[i] == s) {
            memmove(&f->order.items[i], &f->order.items[i + 1],
                    (f->order.len - i - 1) * sizeof f->order.items[0]);
            f->order.len--;
            break;
        }
    }
    series_free(s);
}

void chat__series_add(chat_metric_series *s, double v)
{
    if (s && s->family->type != CHAT_METRIC_HISTOGRAM) {
        s->value += v;
    }
}

void chat__series_set(chat_metric_series *s, double v)
{
    if (s && s->family->type != CHAT_METRIC_HISTOGRAM) {
        s->value = v;
    }
}

void chat__series_observe(chat_metric_series *s, double v)
{
    if (!s || s->family->type != CHAT_METRIC_HISTOGRAM || isnan(v)) {
        return;
    }
    const chat_metric *f = s->family;
    size_t i = 0;
    while (i < f->nbuckets && v > f->buckets[i]) {
        i++;
    }
    s->counts[i]++;
    s->count++;
    s->value += v;
}

void chat__metric_add(chat_metric *f, const char *value, double v)
{
    chat__series_add(chat__metric_series(f, value), v);
}

void chat__metric_observe(chat_metric *f, const char *value, double v)
{
    chat__series_observe(chat__metric_series(f, value), v);
}

/* The shortest of %.15g and %.17g that reads back as v: 0.1, not 0.10000000000000001. */
static void format_double(char *out, size_t len, double v)
{
    snprintf(out, len, "%.15g", v);
    if (strtod(out, NULL) != v) {
        snprintf(out, len, "%.17g", v);
    }
}

/* Numbers as Prometheus reads them: integers without a fraction, +Inf, NaN. */
static int append_number(chat_buf *b, double v)
{
    if (isnan(v)) {
        return chat__buf_appendf(b, "NaN");
    }
    if (isinf(v)) {
        return chat__buf_appendf(b, v > 0 ? "+Inf" : "-Inf");
    }
    if (v == floor(v) && fabs(v) < 1e15) {
        return chat__buf_appendf(b, "%.0f", v);
    }
    char s[32];
    format_double(s, sizeof s, v);
    return chat__buf_appendf(b, "%s", s);
}

static int render_sample(chat_buf *b, const char *name, const char *suffix, const char *labels,
                         const char *extra, double v)
{
    int rc = chat__buf_appendf(b, "%s%s", name, suffix);
    if (!rc && (labels[0] || extra)) {
        rc = chat__buf_appendf(b, "{%s%s%s}", labels, labels[0] && extra ? "," : "",
                               extra ? extra : "");
    }
    if (!rc) {
        rc = chat__buf_appendc(b, ' ');
    }
    if (!rc) {
        rc = append_number(b, v);
    }
    return rc ? rc : chat__buf_appendc(b, '\n');
}

static int render_series(chat_buf *b, const chat_metric *f, const chat_metric_series *s)
{
    if (f->type != CHAT_METRIC_HISTOGRAM) {
        return render_sample(b, f->name, "", s->labels, NULL, s->value);
    }
    uint64_t cumulative = 0;
    char le[64];
    for (size_t i = 0; i <= f->nbuckets; i++) {
        cumulative += s->counts[i];
        if (i < f->nbuckets) {
            char num[32];
            format_double(num, sizeof num, f->buckets[i]);
            snprintf(le, sizeof le, "le=\"%s\"", num);
        } else {
            snprintf(le, sizeof le, "le=\"+Inf\"");
        }
        if (render_sample(b, f->name, "_bucket", s->labels, le, (double)cumulative)) {
            return CHAT_ENOMEM;
        }
    }
    if (render_sample(b, f->name, "_sum", s->labels, NULL, s->value) ||
        render_sample(b, f->name, "_count", s->labels, NULL, (double)s->count)) {
        return CHAT_ENOMEM;
    }
    return 0;
}

int chat__metrics_render(const chat_metrics *m, chat_buf *out)
{
    static const char *const types[] = {"counter", "gauge", "histogram"};
    for (uint32_t i = 0; i < m->families.len; i++) {
        const chat_metric *f = m->families.items[i];
        if (chat__buf_appendf(out, "# HELP %s ", f->name)) {
            return CHAT_ENOMEM;
        }
        for (const char *p = f->help; *p; p++) { /* HELP escapes \\ and \n only */
            int rc = *p == '\\'  ? chat__buf_append(out, "\\\\", 2)
                     : *p == '\n' ? chat__buf_append(out, "\\n", 2)
                                  : chat__buf_appendc(out, (uint8_t)*p);
            if (rc) {
                return CHAT_ENOMEM;
            }
        }
        if (chat__buf_appendf(out, "\n# TYPE %s %s\n", f->name, types[f->type])) {
            return CHAT_ENOMEM;
        }
        for (uint32_t k = 0; k < f->order.len; k++) {
            if (render_series(out, f, f->order.items[k])) {
                return CHAT_ENOMEM;
            }
        }
        if (f->other && render_series(out, f, f->other)) {
            return CHAT_ENOMEM;
        }
    }
    return 0;
}

int chat__metrics_counts(chat_buf *b, const char *name, const char *help, const char *label,
                         const char *const *values, const uint64_t *counts, size_t n)
{
    int rc = chat__buf_appendf(b, "# HELP %s %s\n# TYPE %s counter\n", name, help, name);
    for (size_t i = 0; !rc && i < n; i++) {
        rc = chat__buf_appendf(b, "%s{%s=\"%s\"} %llu\n", name, label, values[i],
                               (unsigned long long)counts[i]);
    }
    return rc;
}

/* ---- process_* ---- */

int chat__metrics_process_register(chat_metrics *m)
{
    process_metrics *p = &m->proc;
    p->cpu = chat__metric_new(m, CHAT_METRIC_COUNTER, "process_cpu_seconds_total",
                              "User and system CPU time spent, in seconds.", NULL, NULL, 0);
    p->rss = chat__metric_new(m, CHAT_METRIC_GAUGE, "process_resident_memory_bytes",
                              "Resident memory size in bytes.", NULL, NULL, 0);
    p->vsz = chat__metric_new(m, CHAT_METRIC_GAUGE, "process_virtual_memory_bytes",
                              "Virtual memory size in bytes.", NULL, NULL, 0);
    p->fds = chat__metric_new(m, CHAT_METRIC_GAUGE, "process_open_fds",
                              "Open file descriptors.", NULL, NULL, 0);
    p->max_fds = chat__metric_new(m, CHAT_METRIC_GAUGE, "process_max_fds",
                                  "The limit on open file descriptors.", NULL, NULL, 0);
    p->start = chat__metric_new(m, CHAT_METRIC_GAUGE, "process_start_time_seconds",
                                "Start time of the process since the Unix epoch, in seconds.",
                                NULL, NULL, 0);
    if (!p->cpu || !p->rss || !p->vsz || !p->fds || !p->max_fds || !p->start) {
        return CHAT_ENOMEM;
    }
    /* The start time: the process's start in clock ticks after boot (/proc/self/stat field
     * 22) plus the boot time (/proc/stat btime); an embedding host started before us. */
    double start = 0;
    FILE *fp = fopen("/proc/self/stat", "r");
    unsigned long long ticks = 0;
    if (fp) {
        char line[1024];
        if (fgets(line, sizeof line, fp)) {
            char *q = strrchr(line, ')'); /* the command name may hold spaces */
            int field = 2;
            for (char *t = q ? strtok(q + 1, " ") : NULL; t; t = strtok(NULL, " ")) {
                if (++field == 22) {
                    ticks = strtoull(t, NULL, 10);
                    break;
                }
            }
        }
        fclose(fp);
    }
    fp = fopen("/proc/stat", "r");
    if (fp && ticks) {
        char line[256];
        while (fgets(line, sizeof line, fp)) {
            unsigned long long btime;
            if (sscanf(line, "btime %llu", &btime) == 1) {
                start = (double)btime + (double)ticks / (double)sysconf(_SC_CLK_TCK);
                break;
            }
        }
    }
    if (fp) {
        fclose(fp);
    }
    if (start == 0) {
        struct timeval tv;
        gettimeofday(&tv, NULL);
        start = (double)tv.tv_sec;
    }
    chat__series_set(chat__metric_series(p->start, NULL), start);
    return 0;
}

void chat__metrics_process_update(chat_metrics *m)
{
    process_metrics *p = &m->proc;
    if (!p->cpu) {
        return;
    }
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) == 0) {
        double cpu = (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
                     (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
        chat__series_set(chat__metric_series(p->cpu, NULL), cpu);
    }
    FILE *fp = fopen("/proc/self/statm", "r");
    if (fp) {
        unsigned long long size, resident;
        if (fscanf(fp, "%llu %llu", &size, &resident) == 2) {
            double page = (double)sysconf(_SC_PAGESIZE);
            chat__series_set(chat__metric_series(p->vsz, NULL), (double)size * page);
            chat__series_set(chat__metric_series(p->rss, NULL), (double)resident * page);
        }
        fclose(fp);
    }
    DIR *d = opendir("/proc/self/fd");
    if (d) {
        double n = 0;
        for (struct dirent *e; (e = readdir(d));) {
            n += e->d_name[0] != '.';
        }
        closedir(d);
        chat__series_set(chat__metric_series(p->fds, NULL), n - 1); /* less opendir's own */
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        chat__series_set(chat__metric_series(p->max_fds, NULL),
                         rl.rlim_cur == RLIM_INFINITY ? INFINITY : (double)rl.rlim_cur);
    }
}
