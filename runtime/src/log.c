#include "log.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "chat.h"

static atomic_int min_level = CHAT_LOG_INFO;
static const char *const level_names[] = {"debug", "info", "warn", "error"};

/* The sink and its argument change together, under the lock, so a line logged from a store
 * worker while the host sets the sink goes wholly to the old sink or wholly to the new one. */
static uv_once_t sink_once = UV_ONCE_INIT;
static uv_mutex_t sink_lock;
static chat_log_fn sink_fn;
static void *sink_arg;

static void sink_init(void)
{
    if (uv_mutex_init(&sink_lock)) {
        abort();
    }
}

void chat_log_set_sink(chat_log_fn fn, void *arg)
{
    uv_once(&sink_once, sink_init);
    uv_mutex_lock(&sink_lock);
    sink_fn = fn;
    sink_arg = arg;
    uv_mutex_unlock(&sink_lock);
}

int chat_log_set_level(const char *name)
{
    for (int i = 0; i < 4; i++) {
        if (name && strcmp(name, level_names[i]) == 0) {
            min_level = i;
            return 0;
        }
    }
    return CHAT_EINVAL;
}

int chat__log_enabled(int level) { return level >= min_level; }

void chat__log(int level, const char *event, const char *msg, json_t *fields)
{
    if (level < min_level || level < 0 || level > CHAT_LOG_ERROR) {
        json_decref(fields);
        return;
    }
    uv_timeval64_t tv;
    uv_gettimeofday(&tv);
    /* ts for programs (ms since the epoch), time for people and log tools (RFC 3339, UTC) */
    char when[40];
    time_t secs = (time_t)tv.tv_sec;
    struct tm tm;
    gmtime_r(&secs, &tm);
    size_t n = strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(when + n, sizeof when - n, ".%03dZ", (int)(tv.tv_usec / 1000));
    json_t *line = json_pack("{s:I,s:s,s:s,s:s,s:s}", "ts",
                             (json_int_t)(tv.tv_sec * 1000 + tv.tv_usec / 1000), "time", when,
                             "level", level_names[level], "event", event, "msg", msg ? msg : "");
    if (line && fields) {
        json_object_update(line, fields);
    }
    json_decref(fields);
    char *text = line ? json_dumps(line, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(line);
    if (!text) {
        return;
    }
    uv_once(&sink_once, sink_init);
    uv_mutex_lock(&sink_lock);
    if (sink_fn) {
        sink_fn(sink_arg, (chat_log_level)level, event, text);
    } else {
        /* one fprintf per line: stdio locks the stream, so lines never interleave */
        fprintf(stderr, "%s\n", text);
    }
    uv_mutex_unlock(&sink_lock);
    free(text);
}
