/* policy-bench: what the Lua policies cost per message, measured inside a real runtime.
 *
 *   build-bench/bench/policy-bench [messages] [scripts_dir] [lua_dir]
 *
 * Starts a chatd runtime (its own loop, a fresh SQLite data directory, a free loopback port,
 * the scripts folder as chatd would load it) and drives the hooks the way the message path
 * does (messages.c), without sockets, the store or fan-out, so what is printed is the cost
 * of the scripting layer alone, per message, in CPU time of this process:
 *
 *   message/before   the event built in C, marshalled into Lua, every handler (the default
 *                    policies: rate limits, moderation, read-only rooms), ev.message read back
 *   ... whole event  the same, reading the whole event back as chatd did before
 *   message/after    a notification (the help bot), nothing read back
 *   unused hook      the check chatd makes for a hook no script hooks (typing by default):
 *                    it builds no event and runs no Lua, so this is the whole cost
 *
 * A figure, not a test: it asserts nothing about time. bench/run.sh prints it beside the
 * scenarios; BENCHMARKS.md records it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "rt.h"
#include "script.h"

static int done, failed;
static char first_refusal[256];

static void answered(int status, const char *message, json_t *ev, void *arg)
{
    (void)arg;
    if (status) {
        if (!failed++) {
            snprintf(first_refusal, sizeof first_refusal, "%s", message ? message : "?");
        }
    }
    json_decref(ev);
    done++;
}

static double cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t n = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) || getsockname(fd, (void *)&a, &n)) {
        return -1;
    }
    close(fd);
    return ntohs(a.sin_port);
}

/* A group room of 10 as the store returns it (what message/before gets as ev.room). */
static json_t *room_json(void)
{
    json_t *participants = json_array();
    for (int i = 0; i < 10; i++) {
        char id[25];
        snprintf(id, sizeof id, "65a0000000000000000000%02d", i);
        json_array_append_new(participants, json_string(id));
    }
    return json_pack("{s:s,s:s,s:s,s:o,s:s,s:{},s:I}", "id", "65b000000000000000000001", "name",
                     "general", "type", "group", "participants", participants, "admin",
                     "65a000000000000000000000", "settings", "createdAt",
                     (json_int_t)1764547200000);
}

/* The strings of message i's event. */
typedef struct names {
    char user[25], sock[32], cid[32], content[96];
} names;

static void names_of(names *nm, int i)
{
    static int serial; /* over every run: moderation refuses a content seen 3 times */
    int n = serial++;
    snprintf(nm->user, sizeof nm->user, "65a0000000000000000000%02d", i % 10);
    snprintf(nm->sock, sizeof nm->sock, "sock%08d", n);
    snprintf(nm->cid, sizeof nm->cid, "c%d", n);
    snprintf(nm->content, sizeof nm->content,
             "hello everyone, this is message %d, of an ordinary length", n);
}

/* ev.message: what the client sent (message/before) or the stored message (message/after) */
static json_t *message_of(const names *nm, int stored)
{
    if (!stored) {
        return json_pack("{s:s,s:s}", "content", nm->content, "clientMsgId", nm->cid);
    }
    return json_pack("{s:s,s:s,s:s,s:s,s:[],s:{},s:s,s:I,s:I}", "id", "65c000000000000000000001",
                     "roomId", "65b000000000000000000001", "senderId", nm->user, "content",
                     nm->content, "attachments", "reactions", "clientMsgId", nm->cid,
                     "createdAt", (json_int_t)1764547200000, "updatedAt",
                     (json_int_t)1764547200000);
}

/* The event as a JSON object (chat__script_run_reading; how messages.c built it before). */
static json_t *event_json(const json_t *room, const names *nm, int stored)
{
    json_t *socket = json_pack("{s:s,s:s,s:s}", "id", nm->sock, "namespace", "/", "ip",
                               "127.0.0.1");
    json_t *who = json_pack("{s:s,s:s}", "id", nm->user, "username", "someone");
    json_t *message = message_of(nm, stored);
    if (!stored) {
        return json_pack("{s:o,s:o,s:O,s:o}", "socket", socket, "user", who, "room", room,
                         "message", message);
    }
    return json_pack("{s:o,s:o,s:{s:s},s:o}", "socket", socket, "user", who, "room", "id",
                     "65b000000000000000000001", "message", message);
}

/* Runs n messages through hook; returns CPU ns per message. as_json: the event as a JSON
 * object, else by its parts (chat__script_run_event, as messages.c does). */
static double run(chat_runtime *rt, const char *hook, const char *read_back, int notify,
                  int as_json, int n)
{
    json_t *room = room_json();
    done = 0;
    double t0 = cpu_ns();
    for (int i = 0; i < n; i++) {
        names nm;
        names_of(&nm, i);
        int want = notify ? done : done + 1;
        chat_script_cb cb = notify ? NULL : answered;
        if (as_json) {
            chat__script_run_reading(rt->script, hook, event_json(room, &nm, notify), read_back,
                                     cb, NULL);
        } else {
            json_t *message = message_of(&nm, notify);
            chat_script_event ev = {.socket_id = nm.sock, .socket_nsp = "/",
                                    .socket_ip = "127.0.0.1", .user_id = nm.user,
                                    .username = "someone", .room = notify ? NULL : room,
                                    .room_id = "65b000000000000000000001", .field = "message",
                                    .value = message};
            chat__script_run_event(rt->script, hook, &ev, read_back, cb, NULL);
            json_decref(message);
        }
        while (done < want) { /* a handler waiting on kv I/O finishes on the loop */
            uv_run(rt->loop, UV_RUN_ONCE);
        }
    }
    uv_run(rt->loop, UV_RUN_NOWAIT);
    double t = (cpu_ns() - t0) / n;
    json_decref(room);
    return t;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 20000;
    char dir[] = "/tmp/policy-bench.XXXXXX", listen[32];
    int port = free_port();
    if (n <= 0 || !mkdtemp(dir) || port < 0) {
        fprintf(stderr, "usage: policy-bench [messages] [scripts_dir] [lua_dir]\n");
        return 2;
    }
    /* the default policies with their rate limits out of the way, as bench/run.sh runs chatd */
    setenv("CHAT_RATELIMIT_USER", "1000000000", 1);
    setenv("CHAT_RATELIMIT_IP", "1000000000", 1);
    snprintf(listen, sizeof listen, "127.0.0.1:%d", port);
    chat_config cfg;
    chat_config_init(&cfg);
    chat_config_set(&cfg, "listen", listen);
    chat_config_set(&cfg, "data_dir", dir);
    chat_config_set(&cfg, "jwt_secret", "policy-bench-secret-0123456789abcdef0123456789");
    chat_config_set(&cfg, "log_level", "warn");
    if (argc > 2) {
        chat_config_set(&cfg, "scripts_dir", argv[2]);
    }
    if (argc > 3) {
        chat_config_set(&cfg, "lua_dir", argv[3]);
    }
    chat_runtime *rt;
    int rc = chat_runtime_new(&rt, NULL, &cfg) ? -1 : 0;
    chat_config_free(&cfg);
    if (rc) {
        fprintf(stderr, "policy-bench: the runtime did not start (see the log above)\n");
        return 1;
    }
    run(rt, "message/before", "message", 0, 0, n / 10 + 1); /* warm up: JIT-less, but caches */
    double before = run(rt, "message/before", "message", 0, 0, n);
    double before_json = run(rt, "message/before", "message", 0, 1, n);
    double whole = run(rt, "message/before", NULL, 0, 1, n);
    double after = run(rt, "message/after", NULL, 1, 0, n);
    const char *unused = "typing";
    int has = chat__script_has(rt->script, unused);
    double t0 = cpu_ns();
    volatile int sink = 0;
    for (int i = 0; i < n; i++) {
        sink += chat__script_has(rt->script, unused);
    }
    double check = (cpu_ns() - t0) / n;
    printf("policy cost per message (CPU, %d messages, scripts from the runtime's scripts_dir):\n",
           n);
    printf("  message/before (default policies, ev.message read back) %8.2f us\n",
           before / 1000);
    printf("  message/before, the event built as a JSON object first     %8.2f us\n",
           before_json / 1000);
    printf("  message/before, whole event read back (as before)        %8.2f us\n",
           whole / 1000);
    printf("  message/after (notification, nothing read back)          %8.2f us\n",
           after / 1000);
    printf("  unused hook (%s, %s): the whole cost        %8.3f us\n", unused,
           has ? "HOOKED" : "no handler", check / 1000);
    printf("{\"messages\":%d,\"before_us\":%.3f,\"before_json_us\":%.3f,"
           "\"before_whole_us\":%.3f,\"after_us\":%.3f,"
           "\"unused_hook_us\":%.4f,\"unused_hook_hooked\":%s,\"refused\":%d}\n",
           n, before / 1000, before_json / 1000, whole / 1000, after / 1000, check / 1000,
           has ? "true" : "false", failed);
    if (failed) {
        fprintf(stderr, "policy-bench: %d messages were refused, the first: %s\n", failed,
                first_refusal);
    }
    chat_runtime_stop(rt);
    chat_runtime_run(rt);
    chat_runtime_free(rt);
    char cmd[64];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd)) {
        fprintf(stderr, "policy-bench: could not remove %s\n", dir);
    }
    return failed ? 1 : 0;
}
