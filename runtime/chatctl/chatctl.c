/* chatctl: the operator's command line for chatd's admin API (docs/admin-openapi.yaml).
 *
 *   chatctl [--url URL] [--token TOKEN] [--json] [--timeout S] COMMAND [ARGS] [--OPTION VALUE]
 *
 * The server address comes from --url or CHATCTL_URL (default http://127.0.0.1:8080), the
 * admin token from --token or CHAT_ADMIN_TOKEN (the variable chatd itself reads). Output is
 * readable text; --json prints the server's JSON answer as it is. Exit status: 0 done, 1 the
 * server refused (the error is printed), 2 bad usage, 3 the server could not be reached. */
#include <ctype.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_client.h"

enum { EXIT_REFUSED = 1, EXIT_USAGE = 2, EXIT_UNREACHABLE = 3 };

/* Where an --option goes: a body member (POST) or a query parameter (GET). */
typedef struct option {
    const char *flag;  /* "room" for --room */
    const char *field; /* "roomId" */
    int duration;      /* the value is 30s, 10m, 2h, 1d or seconds: sent as a number */
    int number;        /* sent as a number */
} option;

typedef struct command {
    const char *name;
    const char *usage;
    const char *help;
    const char *method;
    const char *path;       /* {1}, {2}: the positional arguments, URL-escaped */
    int npos;               /* positional arguments */
    const char *pos_field;  /* the last positional goes into this body member instead */
    const option *options;  /* NULL-terminated by flag */
    const char *columns;    /* table columns for arrays of objects, or NULL for all */
} command;

#define OPT(flag, field) {flag, field, 0, 0}
#define END {NULL, NULL, 0, 0}
static const option o_room_reason[] = {OPT("room", "roomId"), OPT("reason", "reason"), END};
static const option o_room_for_reason[] = {
    OPT("room", "roomId"), {"for", "seconds", 1, 0}, OPT("reason", "reason"), END};
static const option o_room[] = {OPT("room", "roomId"), END};
static const option o_reason[] = {OPT("reason", "reason"), END};
static const option o_page[] = {{"limit", "limit", 0, 1}, OPT("after", "after"), END};
static const option o_find[] = {{"limit", "limit", 0, 1}, END};

static const command commands[] = {
    {"stats", "", "the cluster's and each node's connections, users online, rooms, "
     "messages/s and scripts version", "GET", "/admin/stats", 0, NULL, NULL,
     "id,connections,usersOnline,roomsActive,messagesPerSecond,scriptsVersion,scriptsHash"},
    {"rooms", "[--limit N] [--after ROOM_ID]", "list rooms, oldest first", "GET", "/admin/rooms",
     0, NULL, o_page, "id,name,type,createdAt"},
    {"room", "ROOM_ID", "a room and its members", "GET", "/admin/rooms/{1}", 1, NULL, NULL,
     "id,username,online"},
    {"users", "QUERY [--limit N]", "find users whose name or email starts with QUERY", "GET",
     "/admin/users?q={1}", 1, NULL, o_find, "id,username,email,disabled,online"},
    {"user", "USER_ID", "a user, their rooms and sanctions", "GET", "/admin/users/{1}", 1, NULL,
     NULL, NULL},
    {"disable", "USER_ID [--reason TEXT]", "disable an account: its sockets are cut and its "
     "tokens refused", "POST", "/admin/users/{1}/disable", 1, NULL, o_reason, NULL},
    {"enable", "USER_ID", "re-enable an account", "POST", "/admin/users/{1}/enable", 1, NULL,
     NULL, NULL},
    {"kick", "USER_ID [--room ROOM_ID] [--reason TEXT]", "remove a user from a room, or "
     "disconnect them everywhere", "POST", "/admin/users/{1}/kick", 1, NULL, o_room_reason, NULL},
    {"ban", "USER_ID [--room ROOM_ID] [--for DURATION] [--reason TEXT]", "ban a user from a "
     "room or everywhere (DURATION: 30s, 10m, 2h, 1d; none: until unbanned)", "POST",
     "/admin/users/{1}/ban", 1, NULL, o_room_for_reason, NULL},
    {"unban", "USER_ID [--room ROOM_ID]", "lift a ban", "POST", "/admin/users/{1}/unban", 1, NULL,
     o_room, NULL},
    {"mute", "USER_ID [--room ROOM_ID] [--for DURATION] [--reason TEXT]", "mute a user in a "
     "room or everywhere", "POST", "/admin/users/{1}/mute", 1, NULL, o_room_for_reason, NULL},
    {"unmute", "USER_ID [--room ROOM_ID]", "lift a mute", "POST", "/admin/users/{1}/unmute", 1,
     NULL, o_room, NULL},
    {"say", "ROOM_ID TEXT", "send a system message to a room", "POST", "/admin/rooms/{1}/system",
     2, "content", NULL, NULL},
    {"announce", "TEXT", "send a system message to everyone connected", "POST", "/admin/system",
     1, "content", NULL, NULL},
    {"reload", "", "reload the scripts on every node (all or none)", "POST", "/admin/reload", 0,
     NULL, NULL, "id,version,hash,ok,error"},
    {"ready", "", "whether the node's store, bus and kv answer (GET /readyz)", "GET", "/readyz",
     0, NULL, NULL, NULL},
    {"metrics", "", "the node's Prometheus metrics, as text", "GET", "/metrics", 0, NULL, NULL,
     NULL},
};
#define NCOMMANDS (sizeof commands / sizeof commands[0])

static void usage(FILE *to)
{
    fprintf(to,
            "usage: chatctl [--url URL] [--token TOKEN] [--json] [--timeout SECONDS] COMMAND "
            "[ARGS]\n\n"
            "Operates a chatd cluster through its admin API.\n"
            "  --url      the node to talk to (env CHATCTL_URL; default http://127.0.0.1:8080)\n"
            "  --token    the admin token (env CHAT_ADMIN_TOKEN)\n"
            "  --json     print the server's JSON answer instead of text\n"
            "  --timeout  seconds to wait for the server (default 10)\n\ncommands:\n");
    for (size_t i = 0; i < NCOMMANDS; i++) {
        char head[96];
        snprintf(head, sizeof head, "%s %s", commands[i].name, commands[i].usage);
        fprintf(to, "  %-62s\n      %s\n", head, commands[i].help);
    }
}

/* 30s, 10m, 2h, 1d or plain seconds; -1 when malformed. */
static long parse_duration(const char *s)
{
    char *end;
    long n = strtol(s, &end, 10);
    if (end == s || n < 0) {
        return -1;
    }
    long mult = *end == 0 || strcmp(end, "s") == 0 ? 1
                : strcmp(end, "m") == 0            ? 60
                : strcmp(end, "h") == 0            ? 3600
                : strcmp(end, "d") == 0            ? 86400
                                                   : -1;
    return mult < 0 || n > 100L * 365 * 86400 / mult ? -1 : n * mult;
}

static void url_escape(char *out, size_t len, const char *s)
{
    size_t n = 0;
    for (; *s && n + 4 < len; s++) {
        unsigned char c = (unsigned char)*s;
        if (isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
            out[n++] = (char)c;
        } else {
            n += (size_t)snprintf(out + n, len - n, "%%%02X", c);
        }
    }
    out[n] = 0;
}

/* ---- readable output ---- */

static void print_scalar(FILE *to, const json_t *v)
{
    if (json_is_string(v)) {
        fputs(json_string_value(v), to);
    } else if (json_is_null(v)) {
        fputs("-", to);
    } else {
        char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        fputs(s ? s : "?", to);
        free(s);
    }
}

static int is_scalar(const json_t *v) { return !json_is_object(v) && !json_is_array(v); }

static int has_column(const char *columns, const char *key)
{
    size_t n = strlen(key);
    for (const char *p = columns; p && *p;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (len == n && strncmp(p, key, n) == 0) {
            return 1;
        }
        p = comma ? comma + 1 : p + len;
    }
    return 0;
}

/* An array of objects as an aligned table. Columns: the command's that occur, else every
 * scalar member of the first rows. */
static void print_table(FILE *to, const json_t *rows, const char *columns, int indent)
{
    const char *cols[16];
    size_t ncols = 0;
    size_t i;
    json_t *row;
    json_array_foreach(rows, i, row)
    {
        const char *key;
        json_t *v;
        json_object_foreach((json_t *)row, key, v)
        {
            int want = columns ? has_column(columns, key) : is_scalar(v);
            int seen = 0;
            for (size_t c = 0; c < ncols; c++) {
                seen |= strcmp(cols[c], key) == 0;
            }
            if (want && !seen && ncols < 16) {
                cols[ncols++] = key;
            }
        }
    }
    if (columns) { /* in the command's order */
        size_t k = 0;
        const char *sorted[16];
        for (const char *p = columns; *p;) {
            const char *comma = strchr(p, ',');
            size_t len = comma ? (size_t)(comma - p) : strlen(p);
            for (size_t c = 0; c < ncols; c++) {
                if (strlen(cols[c]) == len && strncmp(cols[c], p, len) == 0) {
                    sorted[k++] = cols[c];
                }
            }
            p = comma ? comma + 1 : p + len;
        }
        memcpy(cols, sorted, k * sizeof cols[0]);
        ncols = k;
    }
    size_t width[16];
    for (size_t c = 0; c < ncols; c++) {
        width[c] = strlen(cols[c]);
        json_array_foreach(rows, i, row)
        {
            json_t *v = json_object_get(row, cols[c]);
            char *s = json_is_string(v) ? strdup(json_string_value(v))
                                        : json_dumps(v ? v : json_null(), JSON_ENCODE_ANY |
                                                                              JSON_COMPACT);
            size_t n = s ? strlen(s) : 1;
            width[c] = n > width[c] ? (n > 40 ? 40 : n) : width[c];
            free(s);
        }
    }
    fprintf(to, "%*s", indent, "");
    for (size_t c = 0; c < ncols; c++) {
        fprintf(to, "%-*s%s", (int)width[c], cols[c], c + 1 < ncols ? "  " : "\n");
    }
    json_array_foreach(rows, i, row)
    {
        fprintf(to, "%*s", indent, "");
        for (size_t c = 0; c < ncols; c++) {
            json_t *v = json_object_get(row, cols[c]);
            char *s = json_is_string(v) ? strdup(json_string_value(v))
                      : !v || json_is_null(v)
                          ? strdup("-")
                          : json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
            fprintf(to, "%-*.40s%s", (int)width[c], s ? s : "?", c + 1 < ncols ? "  " : "\n");
            free(s);
        }
    }
    if (ncols == 0) {
        fprintf(to, "\n");
    }
}

static void print_value(FILE *to, const char *key, const json_t *v, const char *columns,
                        int indent)
{
    if (is_scalar(v)) {
        fprintf(to, "%*s%s: ", indent, "", key);
        print_scalar(to, v);
        fputc('\n', to);
    } else if (json_is_object(v)) {
        fprintf(to, "%*s%s:\n", indent, "", key);
        const char *k;
        json_t *m;
        json_object_foreach((json_t *)v, k, m)
        {
            print_value(to, k, m, columns, indent + 2);
        }
    } else if (json_array_size(v) && json_is_object(json_array_get(v, 0))) {
        fprintf(to, "%*s%s: %zu\n", indent, "", key, json_array_size(v));
        print_table(to, v, columns, indent + 2);
    } else {
        fprintf(to, "%*s%s: ", indent, "", key);
        size_t i;
        json_t *m;
        json_array_foreach(v, i, m)
        {
            if (i) {
                fputs(", ", to);
            }
            print_scalar(to, m);
        }
        fputs(json_array_size(v) ? "\n" : "(none)\n", to);
    }
}

/* ---- main ---- */

typedef struct args {
    const char *url;
    const char *token;
    int json;
    int timeout_s;
    const command *cmd;
    const char *pos[4];
    int npos;
    const char *opt_val[8]; /* by index in cmd->options */
} args;

static int parse_args(int argc, char **argv, args *a)
{
    memset(a, 0, sizeof *a);
    a->url = getenv("CHATCTL_URL");
    a->token = getenv("CHAT_ADMIN_TOKEN");
    a->timeout_s = 10;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        const char *val = NULL;
        char name[32] = "";
        if (strncmp(arg, "--", 2) == 0 && arg[2]) {
            const char *eq = strchr(arg, '=');
            size_t n = eq ? (size_t)(eq - arg - 2) : strlen(arg + 2);
            if (n >= sizeof name) {
                fprintf(stderr, "chatctl: unknown option %s\n", arg);
                return -1;
            }
            memcpy(name, arg + 2, n);
            name[n] = 0;
            if (strcmp(name, "json") == 0 || strcmp(name, "help") == 0) {
                if (name[0] == 'h') {
                    usage(stdout);
                    exit(0);
                }
                a->json = 1;
                continue;
            }
            val = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
            if (!val) {
                fprintf(stderr, "chatctl: --%s needs a value\n", name);
                return -1;
            }
            if (strcmp(name, "url") == 0) {
                a->url = val;
            } else if (strcmp(name, "token") == 0) {
                a->token = val;
            } else if (strcmp(name, "timeout") == 0) {
                a->timeout_s = atoi(val);
                if (a->timeout_s < 1 || a->timeout_s > 3600) {
                    fprintf(stderr, "chatctl: --timeout takes seconds from 1 to 3600\n");
                    return -1;
                }
            } else {
                int found = 0;
                for (int k = 0; a->cmd && a->cmd->options && a->cmd->options[k].flag; k++) {
                    if (strcmp(a->cmd->options[k].flag, name) == 0) {
                        a->opt_val[k] = val;
                        found = 1;
                    }
                }
                if (!found) {
                    fprintf(stderr, "chatctl: %s does not take --%s\n",
                            a->cmd ? a->cmd->name : "(no command yet)", name);
                    return -1;
                }
            }
        } else if (!a->cmd) {
            for (size_t k = 0; k < NCOMMANDS; k++) {
                if (strcmp(commands[k].name, arg) == 0) {
                    a->cmd = &commands[k];
                }
            }
            if (!a->cmd) {
                fprintf(stderr, "chatctl: unknown command %s (chatctl --help lists them)\n", arg);
                return -1;
            }
        } else if (a->npos < 4) {
            a->pos[a->npos++] = arg;
        } else {
            fprintf(stderr, "chatctl: too many arguments\n");
            return -1;
        }
    }
    if (!a->cmd) {
        usage(stderr);
        return -1;
    }
    if (a->npos != a->cmd->npos) {
        fprintf(stderr, "usage: chatctl %s %s\n", a->cmd->name, a->cmd->usage);
        return -1;
    }
    if (!a->url || !*a->url) {
        a->url = "http://127.0.0.1:8080";
    }
    return 0;
}

/* The request path (with GET options as query parameters) and the JSON body. */
static int build_request(const args *a, char *path, size_t pathlen, json_t **body)
{
    const command *c = a->cmd;
    int body_pos = c->pos_field ? c->npos - 1 : c->npos;
    size_t n = 0;
    for (const char *p = c->path; *p && n + 1 < pathlen;) {
        if (p[0] == '{' && p[1] >= '1' && p[1] <= '4' && p[2] == '}') {
            char esc[512];
            url_escape(esc, sizeof esc, a->pos[p[1] - '1']);
            n += (size_t)snprintf(path + n, pathlen - n, "%s", esc);
            p += 3;
        } else {
            path[n++] = *p++;
        }
    }
    path[n < pathlen ? n : pathlen - 1] = 0;
    int get = strcmp(c->method, "GET") == 0;
    *body = get ? NULL : json_object();
    if (c->pos_field && body_pos >= 0) {
        json_object_set_new(*body, c->pos_field, json_string(a->pos[body_pos]));
    }
    for (int k = 0; c->options && c->options[k].flag; k++) {
        const option *o = &c->options[k];
        const char *v = a->opt_val[k];
        if (!v) {
            continue;
        }
        long num = 0;
        if (o->duration && (num = parse_duration(v)) < 0) {
            fprintf(stderr, "chatctl: --%s takes a duration: 30s, 10m, 2h, 1d\n", o->flag);
            return -1;
        }
        if (o->number) {
            char *end;
            num = strtol(v, &end, 10);
            if (end == v || *end) {
                fprintf(stderr, "chatctl: --%s takes a number\n", o->flag);
                return -1;
            }
        }
        if (get) {
            char esc[512];
            url_escape(esc, sizeof esc, v);
            size_t used = strlen(path);
            snprintf(path + used, pathlen - used, "%c%s=%s", strchr(path, '?') ? '&' : '?',
                     o->field, esc);
        } else {
            json_object_set_new(*body, o->field,
                                o->duration || o->number ? json_integer(num) : json_string(v));
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    args a;
    if (parse_args(argc, argv, &a)) {
        return EXIT_USAGE;
    }
    hc_url url;
    if (hc_parse_url(a.url, &url)) {
        fprintf(stderr, "chatctl: --url must look like http://host:port (got %s)\n", a.url);
        return EXIT_USAGE;
    }
    char path[2048];
    json_t *body = NULL;
    if (build_request(&a, path, sizeof path, &body)) {
        json_decref(body);
        return EXIT_USAGE;
    }
    char headers[1024] = "";
    if (a.token && *a.token) {
        if (strpbrk(a.token, "\r\n") || strlen(a.token) > 900) {
            fprintf(stderr, "chatctl: the token must be one line\n");
            json_decref(body);
            return EXIT_USAGE;
        }
        snprintf(headers, sizeof headers, "Authorization: Bearer %s\r\n", a.token);
    }
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    hc_response res;
    char err[512];
    int rc = hc_request(&url, a.cmd->method, path, headers, text, a.timeout_s * 1000, &res, err,
                        sizeof err);
    free(text);
    if (rc) {
        fprintf(stderr, "chatctl: %s\n", err);
        return EXIT_UNREACHABLE;
    }
    if (strcmp(a.cmd->name, "metrics") == 0 && res.status == 200) {
        fwrite(res.body, 1, res.body_len, stdout);
        hc_response_free(&res);
        return 0;
    }
    json_error_t jerr;
    json_t *answer = json_loadb(res.body, res.body_len, 0, &jerr);
    int ok = res.status >= 200 && res.status < 300;
    if (a.json) {
        fwrite(res.body, 1, res.body_len, stdout);
        if (res.body_len && res.body[res.body_len - 1] != '\n') {
            fputc('\n', stdout);
        }
    } else if (!answer) {
        fprintf(ok ? stdout : stderr, "%s%s", res.body, res.body_len ? "\n" : "");
    } else if (!ok || json_is_false(json_object_get(answer, "ok"))) {
        json_t *e = json_object_get(answer, "error");
        fprintf(stderr, "chatctl: %s (HTTP %d): %s\n",
                json_string_value(json_object_get(e, "code")) ?: "error", res.status,
                json_string_value(json_object_get(e, "message")) ?: res.body);
        if (json_object_get(answer, "nodes")) { /* a reload refused: each node's file:line */
            print_value(stderr, "nodes", json_object_get(answer, "nodes"), a.cmd->columns, 0);
        }
    } else {
        const char *key;
        json_t *v;
        json_object_foreach(answer, key, v)
        {
            if (strcmp(key, "ok") != 0) {
                print_value(stdout, key, v, a.cmd->columns, 0);
            }
        }
    }
    if (!ok && res.request_id[0] && !a.json) {
        fprintf(stderr, "request id: %s\n", res.request_id);
    }
    json_decref(answer);
    hc_response_free(&res);
    return ok ? 0 : EXIT_REFUSED;
}
