#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "chat.h"

static int min_level = CHAT_LOG_INFO;
static const char *const level_names[] = {"debug", "info", "warn", "error"};

int chat__log_set_level(const char *name)
{
    for (int i = 0; i < 4; i++) {
        if (strcmp(name, level_names[i]) == 0) {
            min_level = i;
            return 0;
        }
    }
    return CHAT_EINVAL;
}

int chat__log_enabled(int level) { return level >= min_level; }

void chat__log(int level, const char *event, const char *msg, json_t *fields)
{
    if (level < min_level) {
        json_decref(fields);
        return;
    }
    uv_timeval64_t tv;
    uv_gettimeofday(&tv);
    json_t *line = json_pack("{s:I,s:s,s:s,s:s}", "ts", (json_int_t)(tv.tv_sec * 1000 + tv.tv_usec / 1000),
                             "level", level_names[level], "event", event, "msg", msg ? msg : "");
    if (line && fields) {
        json_object_update(line, fields);
    }
    json_decref(fields);
    char *text = line ? json_dumps(line, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(line);
    if (text) {
        /* one fprintf per line: stdio locks the stream, so lines never interleave */
        fprintf(stderr, "%s\n", text);
        free(text);
    }
}
