/* test_redis.c: the Redis backends of the bus and the kv against a real redis-server.
 *
 * On the shared server at CHAT_TEST_REDIS_URL (tools/services.sh): kv values, TTLs, incr with
 * a TTL for new keys, expire, del, raw commands, pipelining; two buses as two nodes: local
 * delivery at once, delivery to the other node, no echo of our own messages, unsubscribe,
 * foreign publishers, order, and the publish round trip.
 *
 * On a private redis-server this test starts (so the shared one stays up for other tests):
 * the server shut down (SHUTDOWN NOSAVE) and started again: same-node delivery goes on while
 * it is down, kv calls answer unavailable at once, and cross-node delivery resumes by itself
 * with every channel subscribed again; then a server that hangs (SIGSTOP) is noticed by the
 * probe and survived. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "test.h"
#include "bus.h"
#include "chat.h"
#include "kv.h"

static uv_loop_t loop;
static char prefix[64]; /* keys and channels of this run */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* ---- running the loop until something happened ---- */

static void tick(uv_timer_t *t)
{
    (void)t;
}

/* Runs the loop until pred(arg) holds or ms pass; 1 if it held. Idle Redis connections do
 * not keep a loop alive, so a ticking timer does while we wait. */
static int run_until(int (*pred)(void *), void *arg, int ms)
{
    uv_timer_t t;
    uv_timer_init(&loop, &t);
    uv_timer_start(&t, tick, 5, 5);
    double end = now_s() + ms / 1000.0;
    int ok;
    while (!(ok = pred(arg)) && now_s() < end) {
        uv_run(&loop, UV_RUN_ONCE);
    }
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&loop, UV_RUN_NOWAIT);
    return ok;
}

static int never(void *arg)
{
    (void)arg;
    return 0;
}

static void run_for(int ms)
{
    run_until(never, NULL, ms);
}

/* ---- kv callbacks ---- */

typedef struct kv_result {
    int calls;
    int status;
    int64_t number;
    int has_value;
    char value[256];
} kv_result;

static void kv_done(int status, const char *value, int64_t number, void *arg)
{
    kv_result *r = arg;
    r->calls++;
    r->status = status;
    r->number = number;
    r->has_value = value != NULL;
    snprintf(r->value, sizeof r->value, "%s", value ? value : "");
}

static int kv_answered(void *arg)
{
    return ((kv_result *)arg)->calls > 0;
}

static int kv_ready(void *arg)
{
    return chat__kv_ready(arg) == 0;
}
static int kv_down(void *arg)
{
    return chat__kv_ready(arg) != 0;
}

#define KV_WAIT(res) CHECK(run_until(kv_answered, &(res), 3000) && (res).calls == 1)

static const char *key(const char *name)
{
    static char buf[8][128];
    static int i;
    char *k = buf[i++ % 8];
    snprintf(k, 128, "%s:%s", prefix, name);
    return k;
}

typedef struct raw_result {
    int calls;
    int status;
    json_t *reply;
} raw_result;

static void raw_done(int status, json_t *reply, void *arg)
{
    raw_result *r = arg;
    r->calls++;
    r->status = status;
    json_decref(r->reply);
    r->reply = reply;
}

static int raw_answered(void *arg)
{
    return ((raw_result *)arg)->calls > 0;
}

/* Runs a raw command (NUL-terminated args) and waits for it; returns the reply (owned). */
static json_t *raw(chat_kv *kv, int *status, int argc, const char **argv)
{
    raw_result r = {0};
    int rc = chat__kv_redis_command(kv, argc, argv, NULL, raw_done, &r);
    if (rc) {
        *status = rc;
        return NULL;
    }
    CHECK(r.calls == 0); /* never before returning */
    CHECK(run_until(raw_answered, &r, 3000) && r.calls == 1);
    *status = r.status;
    return r.reply;
}

static json_int_t raw_int(chat_kv *kv, int argc, const char **argv)
{
    int st;
    json_t *v = raw(kv, &st, argc, argv);
    json_int_t n = st == 0 && json_is_integer(v) ? json_integer_value(v) : -999;
    json_decref(v);
    return n;
}

static json_int_t pttl(chat_kv *kv, const char *k)
{
    const char *argv[] = {"PTTL", k};
    return raw_int(kv, 2, argv);
}

/* ---- kv ---- */

static void test_kv(chat_kv *kv)
{
    kv_result r = {0};

    CHECK(strcmp(chat__kv_backend_name(kv), "redis") == 0);
    CHECK(chat__kv_count(kv) == 0);

    /* set and get */
    CHECK(chat__kv_set(kv, key("a"), "hello", 0, kv_done, &r) == 0);
    KV_WAIT(r);
    CHECK(r.status == 0 && r.has_value && strcmp(r.value, "hello") == 0);
    memset(&r, 0, sizeof r);
    chat__kv_get(kv, key("a"), kv_done, &r);
    KV_WAIT(r);
    CHECK(r.status == 0 && strcmp(r.value, "hello") == 0);
    memset(&r, 0, sizeof r);
    chat__kv_get(kv, key("missing"), kv_done, &r);
    KV_WAIT(r);
    CHECK(r.status == 0 && !r.has_value);
    memset(&r, 0, sizeof r);
    chat__kv_set(kv, key("n"), "42", 0, NULL, NULL); /* no callback: fire and forget */
    chat__kv_get(kv, key("n"), kv_done, &r);         /* pipelined behind it */
    KV_WAIT(r);
    CHECK(r.number == 42);

    /* TTLs in milliseconds */
    memset(&r, 0, sizeof r);
    chat__kv_set(kv, key("ttl"), "soon gone", 150, kv_done, &r);
    KV_WAIT(r);
    CHECK(pttl(kv, key("ttl")) > 0 && pttl(kv, key("ttl")) <= 150);
    run_for(250);
    memset(&r, 0, sizeof r);
    chat__kv_get(kv, key("ttl"), kv_done, &r);
    KV_WAIT(r);
    CHECK(r.status == 0 && !r.has_value);

    /* incr: a new key gets the TTL, an existing one keeps its own */
    memset(&r, 0, sizeof r);
    chat__kv_incr(kv, key("count"), 1, 300, kv_done, &r);
    KV_WAIT(r);
    CHECK(r.status == 0 && r.number == 1 && strcmp(r.value, "1") == 0);
    json_int_t t1 = pttl(kv, key("count"));
    CHECK(t1 > 0 && t1 <= 300);
    run_for(100);
    memset(&r, 0, sizeof r);
    chat__kv_incr(kv, key("count"), 5, 10000, kv_done, &r);
    KV_WAIT(r);
    CHECK(r.number == 6);
    CHECK(pttl(kv, key("count")) <= 200); /* not reset to 10 s */
    run_for(250);
    memset(&r, 0, sizeof r);
    chat__kv_incr(kv, key("count"), -2, 0, kv_done, &r);
    KV_WAIT(r);
    CHECK(r.number == -2); /* expired: counted from 0, and no TTL now */
    CHECK(pttl(kv, key("count")) == -1);
    memset(&r, 0, sizeof r);
    chat__kv_incr(kv, key("a"), 1, 0, kv_done, &r); /* "hello" is no integer */
    KV_WAIT(r);
    CHECK(r.status == CHAT_EINVAL);

    /* expire and del answer whether the key existed */
    memset(&r, 0, sizeof r);
    chat__kv_expire(kv, key("count"), 5000, kv_done, &r);
    KV_WAIT(r);
    CHECK(r.status == 0 && r.number == 1);
    CHECK(pttl(kv, key("count")) > 4000);
    memset(&r, 0, sizeof r);
    chat__kv_expire(kv, key("count"), 0, kv_done, &r); /* no TTL any more */
    KV_WAIT(r);
    CHECK(r.status == 0 && r.number == 1);
    CHECK(pttl(kv, key("count")) == -1);
    memset(&r, 0, sizeof r);
    chat__kv_expire(kv, key("nothing"), 5000, kv_done, &r);
    KV_WAIT(r);
    CHECK(r.status == 0 && r.number == 0);
    memset(&r, 0, sizeof r);
    chat__kv_expire(kv, key("nothing"), 0, kv_done, &r);
    KV_WAIT(r);
    CHECK(r.status == 0 && r.number == 0);
    memset(&r, 0, sizeof r);
    chat__kv_del(kv, key("count"), kv_done, &r);
    KV_WAIT(r);
    CHECK(r.status == 0 && r.number == 1);
    memset(&r, 0, sizeof r);
    chat__kv_del(kv, key("count"), kv_done, &r);
    KV_WAIT(r);
    CHECK(r.status == 0 && r.number == 0);

    /* pipelining: 2000 increments in flight at once, answered in order */
    static kv_result many[2000];
    double t0 = now_s();
    for (int i = 0; i < 2000; i++) {
        memset(&many[i], 0, sizeof many[i]);
        CHECK(chat__kv_incr(kv, key("many"), 1, 60000, kv_done, &many[i]) == 0);
    }
    CHECK(many[0].calls == 0); /* none answered yet: nothing waited for a reply */
    int all = 0;
    for (int spin = 0; spin < 400 && !all; spin++) {
        run_for(5);
        all = 1;
        for (int i = 0; i < 2000 && all; i++) {
            all = many[i].calls == 1;
        }
    }
    double took = now_s() - t0;
    CHECK(all);
    int in_order = 1;
    for (int i = 0; i < 2000; i++) {
        in_order &= many[i].number == i + 1;
    }
    CHECK(in_order);
    printf("test_redis: 2000 pipelined kv incr: %.1f ms (%.0f/s)\n", took * 1000, 2000 / took);

    /* raw commands */
    int st;
    const char *ping[] = {"PING"};
    json_t *v = raw(kv, &st, 1, ping);
    CHECK(st == 0 && json_is_string(v) && strcmp(json_string_value(v), "PONG") == 0);
    json_decref(v);
    const char *hset[] = {"HSET", key("h"), "f1", "v1", "f2", "v2"};
    CHECK(raw_int(kv, 6, hset) == 2);
    const char *hget[] = {"HMGET", key("h"), "f1", "nope"};
    v = raw(kv, &st, 4, hget);
    CHECK(st == 0 && json_is_array(v) && json_array_size(v) == 2 &&
          strcmp(json_string_value(json_array_get(v, 0)), "v1") == 0 &&
          json_is_null(json_array_get(v, 1)));
    json_decref(v);
    const char *bad[] = {"INCR", key("h")};
    v = raw(kv, &st, 2, bad);
    CHECK(st == CHAT_EINVAL && json_is_string(v) &&
          strncmp(json_string_value(v), "WRONGTYPE", 9) == 0);
    json_decref(v);
    /* binary-safe: NUL and bytes that are not UTF-8 */
    const char bin[] = {'a', 0, (char)0xff, 'b'};
    const char *setb[] = {"SET", key("bin"), bin};
    size_t lens[] = {3, strlen(key("bin")), sizeof bin};
    raw_result rr = {0};
    CHECK(chat__kv_redis_command(kv, 3, setb, lens, raw_done, &rr) == 0);
    CHECK(run_until(raw_answered, &rr, 3000));
    json_decref(rr.reply);
    const char *getb[] = {"GET", key("bin")};
    v = raw(kv, &st, 2, getb);
    CHECK(st == 0 && json_string_length(v) == sizeof bin &&
          memcmp(json_string_value(v), bin, sizeof bin) == 0);
    json_decref(v);
    /* commands that would break the shared connection are refused */
    const char *sub[] = {"subscribe", "x"};
    CHECK(chat__kv_redis_command(kv, 2, sub, NULL, raw_done, &rr) == CHAT_EFORBIDDEN);
    const char *blpop[] = {"BLPOP", "x", "0"};
    CHECK(chat__kv_redis_command(kv, 3, blpop, NULL, raw_done, &rr) == CHAT_EFORBIDDEN);
    CHECK(chat__kv_redis_command(kv, 0, ping, NULL, raw_done, &rr) == CHAT_EINVAL);

    const char *del[] = {"DEL", key("a"), key("n"), key("h"), key("bin"), key("many")};
    CHECK(raw_int(kv, 6, del) == 5);
}

/* ---- bus ---- */

typedef struct node {
    chat_bus *bus;
    int got;
    char last_channel[128];
    char last[256];
    size_t last_len;
    int seq_ok; /* messages "m<n>" arrived in order */
    int next_seq;
    double got_at;
    const char *notice, *join; /* on a message on notice, subscribe join: as the domain does */
} node;

static void on_bus(const char *channel, const char *data, size_t len, void *arg)
{
    node *n = arg;
    if (n->notice && strcmp(channel, n->notice) == 0) {
        CHECK(chat__bus_subscribe(n->bus, n->join) == 0);
    }
    n->got++;
    n->got_at = now_s();
    snprintf(n->last_channel, sizeof n->last_channel, "%s", channel);
    n->last_len = len < sizeof n->last ? len : sizeof n->last - 1;
    memcpy(n->last, data, n->last_len);
    n->last[n->last_len] = '\0';
    if (len > 1 && data[0] == 'm') {
        int seq = atoi(data + 1);
        if (seq != n->next_seq) {
            n->seq_ok = 0;
        }
        n->next_seq = seq + 1;
    }
}

static int bus_ready(void *arg)
{
    return chat__bus_ready(arg) == 0;
}
static int bus_down(void *arg)
{
    return chat__bus_ready(arg) != 0;
}

typedef struct numsub {
    chat_kv *kv;
    const char *channel;
    int want;
} numsub;

/* Waits until the server counts want subscribers on channel. */
static int numsub_is(void *arg)
{
    numsub *q = arg;
    const char *argv[] = {"PUBSUB", "NUMSUB", q->channel};
    int st;
    json_t *v = raw(q->kv, &st, 3, argv);
    int ok = st == 0 && json_integer_value(json_array_get(v, 1)) == q->want;
    json_decref(v);
    return ok;
}

static int wait_numsub(chat_kv *kv, const char *channel, int want)
{
    numsub q = {kv, channel, want};
    return run_until(numsub_is, &q, 8000);
}

static int got_at_least(void *arg)
{
    int **p = arg;
    return *p[0] >= *p[1];
}

static int wait_got(node *n, int want, int ms)
{
    int *p[2] = {&n->got, &want};
    return run_until(got_at_least, p, ms);
}

static int open_node(node *n, const char *url)
{
    memset(n, 0, sizeof *n);
    n->seq_ok = 1;
    return chat__bus_open(&n->bus, &loop, &chat__bus_redis, url, on_bus, n);
}

static void test_bus(const char *url, chat_kv *kv)
{
    node a, b;
    char ch[128], ch2[128];
    /* channels of their own (SUBSCRIBE each): room and user channels come by pattern, below */
    snprintf(ch, sizeof ch, "test:%s:one", prefix);
    snprintf(ch2, sizeof ch2, "test:%s:two", prefix);

    CHECK(open_node(&a, url) == 0);
    CHECK(open_node(&b, url) == 0);
    CHECK(strcmp(chat__bus_backend_name(a.bus), "redis") == 0);
    CHECK(run_until(bus_ready, a.bus, 5000));
    CHECK(run_until(bus_ready, b.bus, 5000));
    CHECK(chat__bus_subscribe(a.bus, ch) == 0);
    CHECK(chat__bus_subscribe(b.bus, ch) == 0);
    CHECK(chat__bus_subscribe(b.bus, ch) == 0); /* counted: one SUBSCRIBE on the server */
    CHECK(wait_numsub(kv, ch, 2));

    /* local at once, remote when Redis brings it, our own never twice */
    CHECK(chat__bus_publish(a.bus, ch, "hello", 5) == 0);
    CHECK(a.got == 1 && strcmp(a.last, "hello") == 0);
    CHECK(b.got == 0);
    CHECK(wait_got(&b, 1, 3000));
    CHECK(strcmp(b.last, "hello") == 0 && strcmp(b.last_channel, ch) == 0);
    run_for(100);
    CHECK(a.got == 1);
    CHECK(b.got == 1);

    /* binary data, NULs and newlines survive */
    const char bin[] = {'x', '\n', 0, '@', '\n', 'y'};
    chat__bus_publish(b.bus, ch, bin, sizeof bin);
    CHECK(wait_got(&a, 2, 3000) && a.last_len == sizeof bin &&
          memcmp(a.last, bin, sizeof bin) == 0);

    /* a publisher that is not chatd: delivered whole */
    const char *pub[] = {"PUBLISH", ch, "@from-outside\n"};
    CHECK(raw_int(kv, 3, pub) == 2);
    CHECK(wait_got(&a, 3, 3000) && strcmp(a.last, "@from-outside\n") == 0);
    CHECK(wait_got(&b, 3, 3000) && strcmp(b.last, "@from-outside\n") == 0);

    /* order across nodes */
    a.got = b.got = 0;
    b.next_seq = 0;
    b.seq_ok = 1;
    for (int i = 0; i < 500; i++) {
        char m[16];
        int len = snprintf(m, sizeof m, "m%d", i);
        chat__bus_publish(a.bus, ch, m, (size_t)len);
    }
    CHECK(a.got == 500);
    CHECK(wait_got(&b, 500, 5000) && b.seq_ok && b.got == 500);

    /* the round trip: publish on a, received on b */
    enum { N = 300 };
    static double rtt[N];
    for (int i = 0; i < N; i++) {
        int before = b.got;
        double t0 = now_s();
        chat__bus_publish(a.bus, ch, "rt", 2);
        CHECK(wait_got(&b, before + 1, 3000));
        rtt[i] = (b.got_at - t0) * 1000;
    }
    qsort(rtt, N, sizeof rtt[0], cmp_double);
    printf("test_redis: publish on one node -> delivered on the other: median %.3f ms, "
           "p99 %.3f ms\n",
           rtt[N / 2], rtt[N * 99 / 100]);

    /* unsubscribe: counted, then off the server */
    chat__bus_unsubscribe(b.bus, ch);
    CHECK(chat__bus_subscribed(b.bus, ch));
    chat__bus_unsubscribe(b.bus, ch);
    CHECK(!chat__bus_subscribed(b.bus, ch));
    CHECK(wait_numsub(kv, ch, 1));
    b.got = 0;
    chat__bus_publish(a.bus, ch, "after", 5);
    run_for(200);
    CHECK(b.got == 0);
    chat__bus_publish(b.bus, ch, "to a", 4); /* b publishes without listening */
    CHECK(b.got == 0);
    CHECK(wait_got(&a, a.got + 1, 3000) && strcmp(a.last, "to a") == 0);

    /* leave and join again at once: the subscription survives the pending UNSUBSCRIBE */
    CHECK(chat__bus_subscribe(b.bus, ch2) == 0);
    chat__bus_unsubscribe(b.bus, ch2);
    CHECK(chat__bus_subscribe(b.bus, ch2) == 0);
    CHECK(wait_numsub(kv, ch2, 1));
    b.got = 0;
    chat__bus_publish(a.bus, ch2, "still here", 10);
    CHECK(wait_got(&b, 1, 3000) && strcmp(b.last, "still here") == 0);

    /* publish_remote (what the domain uses: it delivers on its own node itself): the other
     * nodes get it, this node's subscribers do not */
    CHECK(chat__bus_subscribe(a.bus, ch2) == 0);
    CHECK(wait_numsub(kv, ch2, 2));
    int a_before = a.got;
    b.got = 0;
    CHECK(chat__bus_publish_remote(a.bus, ch2, "remote only", 11) == 0);
    CHECK(a.got == a_before);
    CHECK(wait_got(&b, 1, 3000) && strcmp(b.last, "remote only") == 0);
    run_for(100);
    CHECK(a.got == a_before && b.got == 1);

    /* room and user channels: b learns of a new member from a's notice and subscribes the
     * room then; a's first message to the room, published right after the notice, must
     * still reach b (with a SUBSCRIBE sent on reading the notice it was lost) */
    char room[128], user[128];
    snprintf(room, sizeof room, "room:%s:messages", prefix);
    snprintf(user, sizeof user, "user:%s:notify", prefix);
    CHECK(chat__bus_subscribe(b.bus, user) == 0);
    b.got = 0;
    b.notice = user;
    b.join = room;
    CHECK(chat__bus_publish_remote(a.bus, user, "joined", 6) == 0);
    CHECK(chat__bus_publish_remote(a.bus, room, "first", 5) == 0);
    CHECK(wait_got(&b, 2, 3000) && strcmp(b.last, "first") == 0 &&
          strcmp(b.last_channel, room) == 0);
    b.notice = NULL;
    /* a room nobody here listens to is dropped on arrival */
    chat__bus_unsubscribe(b.bus, room);
    chat__bus_publish_remote(a.bus, room, "nobody", 6);
    chat__bus_publish_remote(a.bus, user, "marker", 6);
    CHECK(wait_got(&b, 3, 3000) && strcmp(b.last, "marker") == 0);
    CHECK(b.got == 3);

    chat__bus_free(a.bus);
    chat__bus_free(b.bus);

    /* the in-process bus: one node is every node, so publish_remote has nobody to tell */
    node l;
    memset(&l, 0, sizeof l);
    CHECK(chat__bus_new(&l.bus, &loop, on_bus, &l) == 0);
    CHECK(chat__bus_subscribe(l.bus, ch) == 0);
    CHECK(chat__bus_publish_remote(l.bus, ch, "x", 1) == 0 && l.got == 0);
    CHECK(chat__bus_publish(l.bus, ch, "y", 1) == 0 && l.got == 1);
    chat__bus_free(l.bus);
    run_for(50);
}

/* ---- a private server that goes away and comes back ---- */

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t n = sizeof sa;
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) || getsockname(fd, (void *)&sa, &n)) {
        if (fd >= 0) {
            close(fd);
        }
        return -1;
    }
    close(fd);
    return ntohs(sa.sin_port);
}

/* password: NULL for none */
static pid_t start_redis_auth(int port, const char *password)
{
    char p[16];
    snprintf(p, sizeof p, "%d", port);
    fflush(stdout); /* or the child's exit would print our buffered lines again */
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open("/dev/null", O_WRONLY);
        if (fd >= 0) {
            dup2(fd, 1);
        }
        execlp("redis-server", "redis-server", "--bind", "127.0.0.1", "--port", p, "--save", "",
               "--appendonly", "no", "--daemonize", "no", "--requirepass",
               password ? password : "", (char *)NULL);
        _exit(127);
    }
    return pid;
}

static pid_t start_redis(int port) { return start_redis_auth(port, NULL); }

typedef struct counter {
    int calls;
    int unavail;
} counter;

static void count_cb(int status, const char *value, int64_t number, void *arg)
{
    counter *c = arg;
    (void)value;
    (void)number;
    c->calls++;
    c->unavail += status == CHAT_EUNAVAIL;
}

static void test_outage(void)
{
    int port = free_port();
    char url[64];
    node a, b;
    chat_kv *kv = NULL;
    char ch[128], ch2[128];

    snprintf(url, sizeof url, "redis://127.0.0.1:%d/0", port);
    snprintf(ch, sizeof ch, "room:%s:outage", prefix);
    snprintf(ch2, sizeof ch2, "presence:%s", prefix);
    pid_t pid = start_redis(port);
    CHECK(pid > 0);
    CHECK(chat__kv_open(&kv, &loop, &chat__kv_redis, url) == 0);
    CHECK(open_node(&a, url) == 0);
    CHECK(open_node(&b, url) == 0);
    if (!kv || !a.bus || !b.bus) {
        return;
    }
    CHECK(run_until(kv_ready, kv, 8000));
    CHECK(run_until(bus_ready, a.bus, 8000) && run_until(bus_ready, b.bus, 8000));
    chat__bus_subscribe(a.bus, ch);
    chat__bus_subscribe(b.bus, ch);
    CHECK(wait_numsub(kv, ch, 2));
    chat__bus_publish(a.bus, ch, "one", 3);
    CHECK(wait_got(&b, 1, 3000));

    /* in-flight kv calls when the server goes: each still answers exactly once */
    counter c = {0};
    for (int i = 0; i < 100; i++) {
        chat__kv_incr(kv, "outage:count", 1, 0, count_cb, &c);
    }
    int st;
    const char *shutdown[] = {"SHUTDOWN", "NOSAVE"};
    json_t *v = raw(kv, &st, 2, shutdown);
    json_decref(v);
    CHECK(st == CHAT_EUNAVAIL); /* SHUTDOWN answers by closing the connection */
    waitpid(pid, NULL, 0);
    CHECK(c.calls == 100);
    CHECK(run_until(bus_down, a.bus, 3000));
    CHECK(run_until(bus_down, b.bus, 3000));
    CHECK(run_until(kv_down, kv, 3000));

    /* down: this node's subscribers still get what it publishes, at once */
    int a_before = a.got;
    CHECK(chat__bus_publish(a.bus, ch, "local only", 10) == CHAT_EUNAVAIL);
    CHECK(a.got == a_before + 1 && strcmp(a.last, "local only") == 0);
    /* kv answers unavailable, at once and once */
    kv_result r = {0};
    CHECK(chat__kv_get(kv, "x", kv_done, &r) == CHAT_EUNAVAIL);
    CHECK(r.calls == 1 && r.status == CHAT_EUNAVAIL);
    memset(&r, 0, sizeof r);
    CHECK(chat__kv_incr(kv, "x", 1, 1000, kv_done, &r) == CHAT_EUNAVAIL && r.calls == 1);
    CHECK(chat__kv_redis_command(kv, 1, (const char *[]){"PING"}, NULL, raw_done, NULL) ==
          CHAT_EUNAVAIL);
    /* a channel joined while down is subscribed when the server is back */
    chat__bus_subscribe(b.bus, ch2);
    run_for(300);

    /* back: everything resubscribes and cross-node delivery resumes by itself */
    double t0 = now_s();
    pid = start_redis(port);
    CHECK(run_until(bus_ready, a.bus, 10000));
    CHECK(run_until(bus_ready, b.bus, 10000));
    CHECK(run_until(kv_ready, kv, 10000));
    printf("test_redis: bus and kv up again %.2f s after redis-server restarted\n", now_s() - t0);
    CHECK(wait_numsub(kv, ch, 2));
    CHECK(wait_numsub(kv, ch2, 1));
    b.got = 0;
    chat__bus_publish(a.bus, ch, "two", 3);
    CHECK(wait_got(&b, 1, 3000) && strcmp(b.last, "two") == 0);
    chat__bus_publish(a.bus, ch2, "three", 5);
    CHECK(wait_got(&b, 2, 3000) && strcmp(b.last, "three") == 0);
    memset(&r, 0, sizeof r);
    chat__kv_set(kv, "k", "v", 0, kv_done, &r);
    KV_WAIT(r);
    CHECK(r.status == 0);

    /* a server that hangs: no error on the socket, only silence. The probe notices. */
    kill(pid, SIGSTOP);
    t0 = now_s();
    CHECK(run_until(kv_down, kv, 6000));
    CHECK(run_until(bus_down, a.bus, 6000));
    printf("test_redis: a hung server was noticed after %.2f s\n", now_s() - t0);
    kill(pid, SIGCONT);
    CHECK(run_until(kv_ready, kv, 10000));
    CHECK(run_until(bus_ready, a.bus, 10000) && run_until(bus_ready, b.bus, 10000));
    CHECK(wait_numsub(kv, ch, 2));
    b.got = 0;
    chat__bus_publish(a.bus, ch, "four", 4);
    CHECK(wait_got(&b, 1, 3000) && strcmp(b.last, "four") == 0);

    chat__bus_free(a.bus);
    chat__bus_free(b.bus);
    chat__kv_free(kv);
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
}

/* A password (percent-encoded in the URL) and a database number: AUTH and SELECT happen
 * before the connection counts as up; a wrong password keeps it down. */
static void test_auth(void)
{
    int port = free_port();
    char good[128], good0[128], wrong[128];
    chat_kv *kv = NULL, *kv0 = NULL, *bad = NULL;
    node n;

    snprintf(good, sizeof good, "redis://:s%%40cret@127.0.0.1:%d/2", port);
    snprintf(good0, sizeof good0, "redis://default:s%%40cret@127.0.0.1:%d", port);
    snprintf(wrong, sizeof wrong, "redis://:nope@127.0.0.1:%d/2", port);
    pid_t pid = start_redis_auth(port, "s@cret");
    CHECK(chat__kv_open(&kv, &loop, &chat__kv_redis, good) == 0);
    CHECK(chat__kv_open(&kv0, &loop, &chat__kv_redis, good0) == 0);
    CHECK(chat__kv_open(&bad, &loop, &chat__kv_redis, wrong) == 0);
    CHECK(open_node(&n, good) == 0);
    CHECK(run_until(kv_ready, kv, 8000) && run_until(kv_ready, kv0, 8000));
    CHECK(run_until(bus_ready, n.bus, 8000));
    kv_result r = {0};
    chat__kv_set(kv, "in-db-2", "yes", 0, kv_done, &r);
    KV_WAIT(r);
    CHECK(r.status == 0);
    memset(&r, 0, sizeof r);
    chat__kv_get(kv0, "in-db-2", kv_done, &r); /* another database */
    KV_WAIT(r);
    CHECK(r.status == 0 && !r.has_value);
    memset(&r, 0, sizeof r);
    chat__kv_get(kv, "in-db-2", kv_done, &r);
    KV_WAIT(r);
    CHECK(r.status == 0 && strcmp(r.value, "yes") == 0);
    run_for(300);
    CHECK(chat__kv_ready(bad) == CHAT_EUNAVAIL);
    chat__kv_free(kv);
    chat__kv_free(kv0);
    chat__kv_free(bad);
    chat__bus_free(n.bus);
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
    run_for(20);
}

/* ---- misc ---- */

static void test_misc(const char *url)
{
    chat_bus *bus = NULL;
    chat_kv *kv = NULL;
    node n;
    static const char *const bad[] = {"http://127.0.0.1:6379", "redis://", "redis://host:99999",
                                      "rediss://127.0.0.1:6379", "redis://127.0.0.1:6379/x"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK(chat__bus_open(&bus, &loop, &chat__bus_redis, bad[i], on_bus, &n) == CHAT_EINVAL);
        CHECK(chat__kv_open(&kv, &loop, &chat__kv_redis, bad[i]) == CHAT_EINVAL);
    }
    CHECK(bus == NULL && kv == NULL);

    /* a host name is resolved without blocking the loop */
    char named[128];
    const char *port = strrchr(url, ':');
    snprintf(named, sizeof named, "redis://localhost%s", port ? port : ":6379");
    CHECK(chat__kv_open(&kv, &loop, &chat__kv_redis, named) == 0);
    CHECK(run_until(kv_ready, kv, 5000));
    /* idle connections do not keep the loop alive */
    double t0 = now_s();
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(now_s() - t0 < 1.5);
    chat__kv_free(kv);

    /* the in-process backends keep the same contract */
    CHECK(chat__kv_new(&kv, &loop) == 0);
    CHECK(strcmp(chat__kv_backend_name(kv), "local") == 0 && chat__kv_ready(kv) == 0);
    kv_result r = {0};
    chat__kv_incr(kv, "c", 2, 1000, kv_done, &r);
    CHECK(r.calls == 1 && r.number == 2);
    CHECK(chat__kv_redis_command(kv, 1, (const char *[]){"PING"}, NULL, raw_done, NULL) ==
          CHAT_EINVAL);
    chat__kv_free(kv);
    CHECK(chat__bus_new(&bus, &loop, on_bus, &n) == 0);
    memset(&n, 0, sizeof n);
    CHECK(strcmp(chat__bus_backend_name(bus), "local") == 0 && chat__bus_ready(bus) == 0);
    chat__bus_subscribe(bus, "c");
    CHECK(chat__bus_publish(bus, "c", "x", 1) == 0 && n.got == 1);
    chat__bus_publish(bus, "other", "x", 1);
    CHECK(n.got == 1);
    chat__bus_free(bus);
}

int main(void)
{
    const char *url = getenv("CHAT_TEST_REDIS_URL");
    if (!url || !*url) {
        return test_skip("test_redis", "CHAT_TEST_REDIS_URL is not set; start the test "
                                       "servers: eval \"$(tools/services.sh start)\"");
    }
    signal(SIGPIPE, SIG_IGN);
    if (uv_loop_init(&loop) != 0) {
        return 1;
    }
    snprintf(prefix, sizeof prefix, "chatd-test-%d-%lld", (int)getpid(), (long long)time(NULL));

    chat_kv *kv = NULL;
    CHECK(chat__kv_open(&kv, &loop, &chat__kv_redis, url) == 0);
    if (!kv || !run_until(kv_ready, kv, 5000)) {
        chat__kv_free(kv);
        uv_run(&loop, UV_RUN_DEFAULT);
        uv_loop_close(&loop);
        return test_skip("test_redis", "Redis at CHAT_TEST_REDIS_URL does not answer; start "
                                       "the test servers: eval \"$(tools/services.sh start)\"");
    }
    test_kv(kv);
    test_bus(url, kv);
    chat__kv_free(kv);
    test_misc(url);
    test_auth();
    test_outage();

    uv_run(&loop, UV_RUN_DEFAULT); /* the handles' closes */
    CHECK(uv_loop_close(&loop) == 0);
    return TEST_DONE("test_redis");
}
