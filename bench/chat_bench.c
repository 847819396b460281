/* chat_bench.c: a Socket.IO v4 load generator over WebSocket, on libuv.
 *
 * It speaks to any Socket.IO v4 server that offers the chat contract of PROTOCOL.md:
 * users are registered over REST (POST /auth/register -> {user, token}), every connection
 * opens Engine.IO v4 straight on the websocket transport and authenticates in the Socket.IO
 * CONNECT packet (40{"token":...}), rooms are made with room:create and filled with
 * participants, messages go out as message:send with an ack and come back to the other
 * members as message:new.
 *
 * The send time (monotonic, microseconds) is written into each message's content, so the
 * send-to-deliver latency is measured by this process alone. Connections are spread over
 * several loopback source addresses (127.0.0.2, 127.0.0.3, ...) so the ephemeral ports of
 * one address do not cap their number.
 *
 * A run is a list of steps. Each step grows the connection count to its target (registering,
 * connecting and making rooms as needed), then sends for --step-secs at its rate ("max" keeps
 * a window of deliveries in flight instead), drains, and records its figures. Progress goes
 * to stderr once a second; the end prints a one-line summary and one line of JSON on stdout.
 *
 * Only loopback targets are accepted: this is a benchmark for one machine. */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define MAX_STEPS 32
#define PEND_RING 64      /* acks one connection may wait for at once */
#define FRAME_MAX (16u << 20)
#define READ_CHUNK (256u << 10)
#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

/* ---------------------------------------------------------------- options */

typedef struct options {
    char host[64];
    int port;
    int src_ips;             /* source addresses 127.0.0.2 .. 127.0.0.(1+src_ips); 0: any */
    int steps;
    int conns[MAX_STEPS];
    double rate[MAX_STEPS];  /* messages/s over all senders; <0: max (window) */
    double user_rate;        /* >0: rate = user_rate * senders */
    int room_size;           /* 0: no rooms, nothing is sent */
    int senders_per_room;    /* 0: every member sends */
    int window;              /* "max": deliveries in flight (0: only --inflight limits) */
    int inflight;            /* unacknowledged sends per connection */
    int msg_size;            /* bytes of content */
    double step_secs, warmup_secs, drain_secs, settle_secs;
    double stop_p99_ms;      /* stop the ramp once a step's p99 passes this */
    double max_secs;         /* the whole run, whatever happens */
    int connect_par;         /* connections being opened at once */
    int http_par;            /* registration requests at once */
    int room_par;            /* room:create in flight at once */
    int server_pid;
    char label[96];
    char json_out[512];
    int quiet;
} options;

static options opt;

/* ---------------------------------------------------------------- histogram */

/* Log-linear buckets over microseconds: exact below 128, then 64 sub-buckets per power of
 * two (under 1.6% error), up to about 2^40 us. */
#define H_BUCKETS (36 * 64 + 128)

typedef struct hist {
    uint64_t b[H_BUCKETS];
    uint64_t n, max, sum;
} hist;

static int h_index(uint64_t v)
{
    if (v < 128) {
        return (int)v;
    }
    int msb = 63 - __builtin_clzll(v);
    int shift = msb - 6;
    int i = shift * 64 + (int)(v >> shift);
    return i < H_BUCKETS ? i : H_BUCKETS - 1;
}

static uint64_t h_value(int i)
{
    if (i < 128) {
        return (uint64_t)i;
    }
    int shift = i / 64 - 1;
    uint64_t m = (uint64_t)(i % 64 + 64);
    return (m << shift) + ((1ull << shift) >> 1);
}

static void h_add(hist *h, uint64_t v)
{
    h->b[h_index(v)]++;
    h->n++;
    h->sum += v;
    if (v > h->max) {
        h->max = v;
    }
}

/* in milliseconds */
static double h_pct(const hist *h, double p)
{
    if (!h->n) {
        return 0;
    }
    uint64_t want = (uint64_t)ceil(p * (double)h->n);
    if (want < 1) {
        want = 1;
    }
    uint64_t seen = 0;
    for (int i = 0; i < H_BUCKETS; i++) {
        seen += h->b[i];
        if (seen >= want) {
            uint64_t v = h_value(i);
            return (double)(v > h->max ? h->max : v) / 1000.0;
        }
    }
    return (double)h->max / 1000.0;
}

static json_t *h_json(const hist *h)
{
    return json_pack("{s:I,s:f,s:f,s:f,s:f,s:f,s:f}", "count", (json_int_t)h->n, "mean",
                     h->n ? (double)h->sum / (double)h->n / 1000.0 : 0.0, "p50",
                     h_pct(h, 0.50), "p90", h_pct(h, 0.90), "p99", h_pct(h, 0.99), "p999",
                     h_pct(h, 0.999), "max", (double)h->max / 1000.0);
}

/* ---------------------------------------------------------------- state */

enum { C_NEW, C_TCP, C_WS, C_EIO, C_SIO, C_READY, C_DEAD };
enum { P_FREE, P_SEND, P_CREATE };

typedef struct pend {
    uint64_t t_us;
    uint32_t id;
    uint8_t kind;
    uint8_t measured;
} pend;

typedef struct conn {
    uv_tcp_t tcp;
    uv_connect_t creq;
    int idx;
    int room;
    uint8_t state;
    uint8_t sender;
    uint8_t closing;
    uint8_t frag_op;
    uint16_t inflight;
    uint32_t next_ack;
    uint32_t seq;
    uint64_t t_start;
    uint8_t *rbuf; /* bytes of an incomplete frame or handshake */
    uint32_t rlen, rcap;
    uint8_t *frag; /* a fragmented message being reassembled */
    uint32_t flen, fcap;
    pend *pend;
    char key[28];
} conn;

typedef struct user {
    char id[40];
    char *token;
} user;

typedef struct room {
    char id[40];
    int first, size; /* connections [first, first+size) */
    int ready;       /* 1 made, -1 failed */
    int members;     /* deliveries one message makes: connected members but the sender */
} room;

typedef struct hcli {
    uv_tcp_t tcp;
    uv_connect_t creq;
    int user;
    int state; /* 0 connecting, 1 idle, 2 waiting, 3 closed */
    uint8_t *buf;
    size_t len, cap;
} hcli;

typedef struct wreq {
    uv_write_t req;
    size_t len;
    char data[];
} wreq;

typedef struct step_result {
    int conns_target, conns_ready;
    double rate_target, rate_offered;
    double connect_secs, connect_rate;
    double secs;
    uint64_t sent, acked, ack_errors, deliveries, other_events, behind;
    uint64_t lost;
    hist lat, ack_lat;
    double srv_cpu_pct, cli_cpu_pct;
    double others_cpu_pct; /* the rest of the machine, in % of one core */
    long rss_kb;
    double rss_per_conn;
    int stopped_p99;
} step_result;

enum { PH_REGISTER, PH_CONNECT, PH_ROOMS, PH_SETTLE, PH_WARMUP, PH_MEASURE, PH_DRAIN, PH_DONE };
static const char *const phase_name[] = {"register", "connect", "rooms", "settle",
                                         "warmup",   "measure", "drain", "done"};

static struct {
    uv_loop_t *loop;
    uv_timer_t tick, progress, phase_timer, deadline;
    struct sockaddr_in target;
    uint64_t t0_ns;
    char tag[16];
    uint64_t rng;
    int max_conns, nusers;
    user *users;
    conn *conns;
    room *rooms;
    int nrooms, rooms_made, rooms_pending, rooms_next, rooms_end;
    int *senders;
    int nsenders, sender_rr;
    hcli *hc;
    int nhc, reg_next, reg_done, reg_errors;
    int *reg_retry; /* users whose request was lost with its connection */
    int nretry;
    int step, phase;
    int conn_next, conn_target, connecting, ready, dead, conn_errors;
    uint64_t phase_t0;
    uint64_t run_t0_us; /* sending started (for pacing) */
    uint64_t run_sent;  /* sends since run_t0 */
    double rate;        /* current msgs/s; <0 max */
    int sending, measuring;
    uint64_t exp_deliv, got_deliv; /* for the window and the drain */
    uint64_t total_inflight;
    uint64_t last_progress_deliv;
    /* measurement of the current step */
    step_result *cur;
    uint64_t meas_t0_us;
    double srv_cpu0, cli_cpu0, mach_busy0, mach_total0;
    /* per-second progress */
    hist sec_lat;
    uint64_t sec_sent, sec_acked, sec_deliv, sec_ready;
    double sec_srv_cpu, sec_cli_cpu, sec_mb, sec_mt;
    long rss_base_kb;
    step_result res[MAX_STEPS];
    int nres;
    json_t *rss_series; /* [conns, rss_kb] pairs sampled while connecting */
    int failed;
    char fail_msg[256];
    int error_prints;
    uint8_t rbuf[READ_CHUNK];
    char sbuf[1 << 16];
} B;

/* ---------------------------------------------------------------- small helpers */

static uint64_t now_us(void) { return (uv_hrtime() - B.t0_ns) / 1000; }
static double now_s(void) { return (double)(uv_hrtime() - B.t0_ns) / 1e9; }

static uint64_t rnd(void)
{
    uint64_t x = B.rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return B.rng = x;
}

static void logf_(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void logf_(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "[%7.1fs] ", now_s());
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    fputs("chat-bench: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(2);
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) {
        die("out of memory (%zu bytes)", n);
    }
    return p;
}

static void *xcalloc(size_t a, size_t b)
{
    void *p = calloc(a ? a : 1, b ? b : 1);
    if (!p) {
        die("out of memory");
    }
    return p;
}

static int grow(uint8_t **buf, uint32_t *cap, size_t need)
{
    if (need <= *cap) {
        return 0;
    }
    if (need > FRAME_MAX + 64) {
        return -1;
    }
    size_t c = *cap ? *cap : 256;
    while (c < need) {
        c *= 2;
    }
    uint8_t *p = realloc(*buf, c);
    if (!p) {
        return -1;
    }
    *buf = p;
    *cap = (uint32_t)c;
    return 0;
}

/* /proc/<pid>/stat: utime + stime of every thread, in seconds */
static double proc_cpu(int pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) {
        return -1;
    }
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')'); /* the command name may hold spaces */
    if (!p) {
        return -1;
    }
    unsigned long ut = 0, st = 0;
    /* after ")": state(3) ... utime is field 14, stime 15 */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2) {
        return -1;
    }
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static long proc_rss_kb(int pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    if (!f) {
        return -1;
    }
    long kb = -1;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "VmRSS:", 6) == 0) {
            kb = strtol(line + 6, NULL, 10);
            break;
        }
    }
    fclose(f);
    return kb;
}

static double self_cpu(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* All CPUs, from /proc/stat: busy and total seconds. Busy minus server minus this process is
 * what everything else on the machine used: the load the figures were taken under. */
static void machine_cpu(double *busy, double *total)
{
    unsigned long long v[8] = {0};
    *busy = *total = 0;
    FILE *f = fopen("/proc/stat", "r");
    if (!f) {
        return;
    }
    int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2],
                   &v[3], &v[4], &v[5], &v[6], &v[7]);
    fclose(f);
    if (n < 8) {
        return;
    }
    double tck = (double)sysconf(_SC_CLK_TCK);
    /* user nice system idle iowait irq softirq steal */
    *busy = (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / tck;
    *total = (double)(v[0] + v[1] + v[2] + v[3] + v[4] + v[5] + v[6] + v[7]) / tck;
}

static double srv_cpu(void) { return opt.server_pid > 0 ? proc_cpu(opt.server_pid) : 0; }
static long srv_rss(void) { return opt.server_pid > 0 ? proc_rss_kb(opt.server_pid) : -1; }

/* ---------------------------------------------------------------- writing */

static void on_written(uv_write_t *req, int status)
{
    (void)status; /* a failed write shows up as a read error or EOF */
    free(req->data);
}

/* Writes now if the socket takes it, queues a copy of the rest otherwise. */
static int stream_write(uv_stream_t *s, const void *data, size_t len)
{
    uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
    int n = uv_try_write(s, &b, 1);
    if (n == (int)len) {
        return 0;
    }
    if (n < 0 && n != UV_EAGAIN) {
        return n;
    }
    if (n < 0) {
        n = 0;
    }
    size_t rest = len - (size_t)n;
    wreq *w = xmalloc(sizeof *w + rest);
    w->req.data = w;
    w->len = rest;
    memcpy(w->data, (const char *)data + n, rest);
    uv_buf_t rb = uv_buf_init(w->data, (unsigned)rest);
    int rc = uv_write(&w->req, s, &rb, 1, on_written);
    if (rc) {
        free(w);
    }
    return rc;
}

/* ---------------------------------------------------------------- connections */

static void conn_fail(conn *c, const char *why);
static void step_advance(void);
static void conns_pump(void);
static void rooms_pump(void);

static void on_conn_closed(uv_handle_t *h)
{
    conn *c = h->data;
    free(c->rbuf);
    free(c->frag);
    free(c->pend);
    c->rbuf = c->frag = NULL;
    c->pend = NULL;
    c->rlen = c->rcap = c->flen = c->fcap = 0;
}

static void conn_fail(conn *c, const char *why)
{
    if (c->state == C_DEAD) {
        return;
    }
    int was = c->state;
    c->state = C_DEAD;
    B.dead++;
    if (was == C_READY) {
        B.ready--;
    } else {
        B.connecting--;
        B.conn_errors++;
    }
    B.total_inflight -= c->inflight;
    c->inflight = 0;
    if (B.error_prints < 10) {
        B.error_prints++;
        logf_("connection %d (%s) lost: %s", c->idx,
              was == C_READY ? "ready" : "opening", why);
    }
    if (!c->closing) {
        c->closing = 1;
        uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
    }
    if (was != C_READY) {
        conns_pump();
    }
}

/* Sends one masked text frame. */
static int ws_send(conn *c, const char *payload, size_t len)
{
    uint8_t stack[2048];
    size_t hl = len < 126 ? 2 : len < 65536 ? 4 : 10;
    size_t total = hl + 4 + len;
    uint8_t *f = total <= sizeof stack ? stack : xmalloc(total);
    f[0] = 0x81;
    if (len < 126) {
        f[1] = (uint8_t)(0x80 | len);
    } else if (len < 65536) {
        f[1] = 0x80 | 126;
        f[2] = (uint8_t)(len >> 8);
        f[3] = (uint8_t)len;
    } else {
        f[1] = 0x80 | 127;
        for (int i = 0; i < 8; i++) {
            f[2 + i] = (uint8_t)((uint64_t)len >> (56 - 8 * i));
        }
    }
    uint32_t m32 = (uint32_t)rnd();
    uint8_t mask[4];
    memcpy(mask, &m32, 4);
    memcpy(f + hl, mask, 4);
    uint8_t *dst = f + hl + 4;
    for (size_t i = 0; i < len; i++) {
        dst[i] = (uint8_t)payload[i] ^ mask[i & 3];
    }
    int rc = stream_write((uv_stream_t *)&c->tcp, f, total);
    if (f != stack) {
        free(f);
    }
    if (rc) {
        conn_fail(c, uv_strerror(rc));
    }
    return rc;
}

static int ws_send_pong(conn *c, const uint8_t *payload, size_t len)
{
    uint8_t f[2 + 4 + 125];
    if (len > 125) {
        len = 125;
    }
    f[0] = 0x8A;
    f[1] = (uint8_t)(0x80 | len);
    uint32_t m32 = (uint32_t)rnd();
    memcpy(f + 2, &m32, 4);
    for (size_t i = 0; i < len; i++) {
        f[6 + i] = payload[i] ^ f[2 + (i & 3)];
    }
    return stream_write((uv_stream_t *)&c->tcp, f, 6 + len);
}

static pend *pend_take(conn *c, uint32_t *id)
{
    if (!c->pend) {
        c->pend = xcalloc(PEND_RING, sizeof *c->pend);
    }
    for (int tries = 0; tries < PEND_RING; tries++) {
        uint32_t a = c->next_ack++;
        pend *p = &c->pend[a % PEND_RING];
        if (p->kind == P_FREE) {
            p->id = a;
            *id = a;
            return p;
        }
    }
    return NULL;
}

/* ---- sending messages ---- */

static int send_message(conn *c)
{
    room *r = &B.rooms[c->room];
    uint32_t ack;
    pend *p = pend_take(c, &ack);
    if (!p) {
        return -1;
    }
    uint64_t t = now_us();
    int measured = B.measuring;
    char content[4096];
    int n = snprintf(content, sizeof content, "~%" PRIu64 "~%d%c~%d-%u~", t, B.step,
                     measured ? 'm' : 'w', c->idx, c->seq);
    while (n < opt.msg_size && n < (int)sizeof content - 1) {
        content[n++] = 'x';
    }
    content[n] = '\0';
    int len = snprintf(B.sbuf, sizeof B.sbuf,
                       "42%u[\"message:send\",{\"roomId\":\"%s\",\"content\":\"%s\","
                       "\"clientMsgId\":\"%s-%d-%u\"}]",
                       ack, r->id, content, B.tag, c->idx, c->seq);
    c->seq++;
    p->kind = P_SEND;
    p->t_us = t;
    p->measured = (uint8_t)measured;
    if (ws_send(c, B.sbuf, (size_t)len)) {
        return -1;
    }
    c->inflight++;
    B.total_inflight++;
    B.exp_deliv += (uint64_t)r->members;
    B.run_sent++;
    B.sec_sent++;
    if (measured) {
        B.cur->sent++;
    }
    return 0;
}

static conn *next_sender(void)
{
    for (int tries = 0; tries < B.nsenders; tries++) {
        conn *c = &B.conns[B.senders[B.sender_rr]];
        B.sender_rr = (B.sender_rr + 1) % B.nsenders;
        if (c->state == C_READY && c->inflight < opt.inflight) {
            return c;
        }
    }
    return NULL;
}

static void send_pump(void)
{
    if (!B.sending || !B.nsenders) {
        return;
    }
    if (B.rate < 0) {
        /* max: keep the window of deliveries (or the per-connection inflight) full */
        for (int i = 0; i < 5000; i++) {
            if (opt.window > 0 && B.exp_deliv - B.got_deliv >= (uint64_t)opt.window) {
                return;
            }
            conn *c = next_sender();
            if (!c || send_message(c)) {
                return;
            }
        }
        return;
    }
    double el = (double)(now_us() - B.run_t0_us) / 1e6;
    double due = el * B.rate - (double)B.run_sent;
    if (due > B.rate * 0.1 + 1) {
        /* fell more than 100 ms behind: drop the debt rather than burst */
        uint64_t skip = (uint64_t)(due - B.rate * 0.1);
        B.run_sent += skip;
        if (B.measuring) {
            B.cur->behind += skip;
        }
        due -= (double)skip;
    }
    while (due >= 1.0) {
        conn *c = next_sender();
        if (!c) {
            /* every sender waits for acks: the server is behind */
            B.run_sent++;
            if (B.measuring) {
                B.cur->behind++;
            }
        } else if (send_message(c)) {
            return;
        }
        due -= 1.0;
    }
}

/* ---- receiving ---- */

static void on_delivery(const uint8_t *p, size_t n, uint64_t t)
{
    static const char mark[] = "\"content\":\"~";
    const uint8_t *m = memmem(p, n, mark, sizeof mark - 1);
    if (!m) {
        if (B.cur) {
            B.cur->other_events++;
        }
        return;
    }
    m += sizeof mark - 1;
    const uint8_t *end = p + n;
    uint64_t ts = 0;
    while (m < end && *m >= '0' && *m <= '9') {
        ts = ts * 10 + (uint64_t)(*m++ - '0');
    }
    int step = 0;
    if (m < end && *m == '~') {
        m++;
    }
    while (m < end && *m >= '0' && *m <= '9') {
        step = step * 10 + (*m++ - '0');
    }
    int measured = m < end && *m == 'm';
    B.got_deliv++;
    B.sec_deliv++;
    uint64_t lat = t > ts ? t - ts : 0;
    h_add(&B.sec_lat, lat);
    if (B.cur && step == B.step) {
        if (B.measuring) {
            B.cur->deliveries++;
        }
        if (measured) {
            h_add(&B.cur->lat, lat);
        }
    }
}

static void on_room_created(conn *c, const uint8_t *p, size_t n);

static void on_ack(conn *c, const uint8_t *p, size_t n, uint64_t t)
{
    uint32_t id = 0;
    size_t i = 0;
    while (i < n && p[i] >= '0' && p[i] <= '9') {
        id = id * 10 + (uint32_t)(p[i++] - '0');
    }
    if (!c->pend) {
        return;
    }
    pend *pd = &c->pend[id % PEND_RING];
    if (pd->kind == P_FREE || pd->id != id) {
        return;
    }
    int kind = pd->kind;
    pd->kind = P_FREE;
    const uint8_t *args = p + i;
    size_t alen = n - i;
    if (kind == P_CREATE) {
        on_room_created(c, args, alen);
        return;
    }
    c->inflight--;
    B.total_inflight--;
    B.sec_acked++;
    int ok = memmem(args, alen < 24 ? alen : 24, "\"ok\":true", 9) != NULL;
    room *r = &B.rooms[c->room];
    if (!ok) {
        /* nothing will be delivered for it */
        B.exp_deliv -= (uint64_t)r->members;
        if (B.cur) {
            B.cur->ack_errors++;
        }
        if (B.error_prints < 10) {
            B.error_prints++;
            logf_("message:send refused: %.*s", (int)(alen < 300 ? alen : 300), args);
        }
        return;
    }
    if (B.cur && pd->measured) {
        B.cur->acked++;
        h_add(&B.cur->ack_lat, t - pd->t_us);
    }
}

static void on_sio(conn *c, const uint8_t *p, size_t n, uint64_t t)
{
    if (n < 1) {
        return;
    }
    char type = (char)p[0];
    p++;
    n--;
    if (n && p[0] == '/') {
        const uint8_t *comma = memchr(p, ',', n);
        if (!comma) {
            return; /* another namespace, with no payload: not ours */
        }
        n -= (size_t)(comma + 1 - p);
        p = comma + 1;
    }
    switch (type) {
    case '0':
        if (c->state == C_SIO) {
            c->state = C_READY;
            B.connecting--;
            B.ready++;
            B.sec_ready++;
            conns_pump();
        }
        return;
    case '4':
        conn_fail(c, "CONNECT refused (connect_error)");
        return;
    case '1':
        conn_fail(c, "server disconnected the socket");
        return;
    case '2': {
        static const char ev[] = "[\"message:new\",";
        size_t i = 0;
        while (i < n && p[i] >= '0' && p[i] <= '9') {
            i++;
        }
        if (n - i >= sizeof ev - 1 && memcmp(p + i, ev, sizeof ev - 1) == 0) {
            on_delivery(p + i, n - i, t);
        } else if (B.cur) {
            B.cur->other_events++;
        }
        return;
    }
    case '3':
        on_ack(c, p, n, t);
        return;
    default:
        return;
    }
}

static void on_eio(conn *c, const uint8_t *p, size_t n, uint64_t t)
{
    if (!n) {
        return;
    }
    switch (p[0]) {
    case '0': { /* open: authenticate */
        if (c->state != C_EIO) {
            return;
        }
        user *u = &B.users[c->idx];
        int len = snprintf(B.sbuf, sizeof B.sbuf, "40{\"token\":\"%s\"}", u->token);
        c->state = C_SIO;
        ws_send(c, B.sbuf, (size_t)len);
        return;
    }
    case '2': { /* ping: answer pong with the same data */
        char pong[256];
        size_t m = n < sizeof pong ? n : sizeof pong;
        memcpy(pong, p, m);
        pong[0] = '3';
        ws_send(c, pong, m);
        return;
    }
    case '1':
        conn_fail(c, "Engine.IO close");
        return;
    case '4':
        on_sio(c, p + 1, n - 1, t);
        return;
    default:
        return;
    }
}

static void on_message(conn *c, int op, const uint8_t *p, size_t n, uint64_t t)
{
    if (op == 1) {
        on_eio(c, p, n, t);
    }
    /* binary frames carry attachments of binary packets: nothing this tool asks for */
}

static void on_frame(conn *c, int fin, int op, uint8_t *p, size_t n, uint64_t t)
{
    switch (op) {
    case 0x0: /* continuation */
        if (!c->frag_op) {
            conn_fail(c, "continuation frame without a start");
            return;
        }
        if (grow(&c->frag, &c->fcap, (size_t)c->flen + n)) {
            conn_fail(c, "message too large");
            return;
        }
        memcpy(c->frag + c->flen, p, n);
        c->flen += (uint32_t)n;
        if (fin) {
            int fop = c->frag_op;
            c->frag_op = 0;
            on_message(c, fop, c->frag, c->flen, t);
            c->flen = 0;
        }
        return;
    case 0x1:
    case 0x2:
        if (fin) {
            on_message(c, op, p, n, t);
            return;
        }
        c->frag_op = (uint8_t)op;
        c->flen = 0;
        if (grow(&c->frag, &c->fcap, n)) {
            conn_fail(c, "message too large");
            return;
        }
        memcpy(c->frag, p, n);
        c->flen = (uint32_t)n;
        return;
    case 0x8:
        conn_fail(c, "websocket closed by the server");
        return;
    case 0x9:
        ws_send_pong(c, p, n);
        return;
    default:
        return;
    }
}

/* Parses whole frames from p; returns the bytes consumed. */
static size_t ws_parse(conn *c, uint8_t *p, size_t n, uint64_t t)
{
    size_t off = 0;
    while (c->state != C_DEAD && n - off >= 2) {
        uint8_t b0 = p[off], b1 = p[off + 1];
        size_t hl = 2;
        uint64_t len = b1 & 0x7f;
        if (len == 126) {
            if (n - off < 4) {
                break;
            }
            len = (uint64_t)p[off + 2] << 8 | p[off + 3];
            hl = 4;
        } else if (len == 127) {
            if (n - off < 10) {
                break;
            }
            len = 0;
            for (int i = 0; i < 8; i++) {
                len = len << 8 | p[off + 2 + i];
            }
            hl = 10;
        }
        if (len > FRAME_MAX) {
            conn_fail(c, "frame too large");
            return n;
        }
        int masked = b1 & 0x80;
        if (masked) {
            hl += 4;
        }
        if (n - off < hl + len) {
            break;
        }
        uint8_t *pl = p + off + hl;
        if (masked) {
            const uint8_t *mk = pl - 4;
            for (uint64_t i = 0; i < len; i++) {
                pl[i] ^= mk[i & 3];
            }
        }
        on_frame(c, b0 & 0x80, b0 & 0x0f, pl, (size_t)len, t);
        off += hl + (size_t)len;
    }
    return off;
}

static int header_has(const char *hdr, size_t hlen, const char *name, const char *value)
{
    size_t nl = strlen(name);
    for (const char *p = hdr; p && p < hdr + hlen;) {
        const char *eol = memmem(p, (size_t)(hdr + hlen - p), "\r\n", 2);
        if (!eol) {
            break;
        }
        if ((size_t)(eol - p) > nl + 1 && strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            const char *v = p + nl + 1;
            while (*v == ' ') {
                v++;
            }
            size_t vl = (size_t)(eol - v);
            return vl == strlen(value) && strncmp(v, value, vl) == 0;
        }
        p = eol + 2;
    }
    return 0;
}

static void ws_accept_for(const char *key, char out[32])
{
    char in[64];
    unsigned char dig[SHA_DIGEST_LENGTH];
    int n = snprintf(in, sizeof in, "%s%s", key, WS_GUID);
    SHA1((const unsigned char *)in, (size_t)n, dig);
    EVP_EncodeBlock((unsigned char *)out, dig, SHA_DIGEST_LENGTH);
}

/* The 101 answer; returns bytes consumed, 0 if incomplete, -1 on failure. */
static long ws_handshake_done(conn *c, uint8_t *p, size_t n)
{
    uint8_t *end = memmem(p, n, "\r\n\r\n", 4);
    if (!end) {
        if (n > 16384) {
            conn_fail(c, "handshake answer too long");
            return -1;
        }
        return 0;
    }
    size_t hlen = (size_t)(end - p) + 2;
    char accept[32];
    ws_accept_for(c->key, accept);
    if (n < 12 || memcmp(p, "HTTP/1.1 101", 12) != 0) {
        char why[160];
        snprintf(why, sizeof why, "upgrade refused: %.*s", (int)(hlen < 100 ? hlen : 100),
                 (const char *)p);
        conn_fail(c, why);
        return -1;
    }
    if (!header_has((const char *)p, hlen, "Sec-WebSocket-Accept", accept)) {
        conn_fail(c, "bad Sec-WebSocket-Accept");
        return -1;
    }
    c->state = C_EIO;
    return (long)(hlen + 2);
}

static void consume(conn *c, uint8_t *p, size_t n, uint64_t t)
{
    size_t off = 0;
    if (c->state == C_WS) {
        long h = ws_handshake_done(c, p, n);
        if (h <= 0) {
            if (h == 0 && c->state == C_WS) {
                goto keep;
            }
            return;
        }
        off = (size_t)h;
    }
    off += ws_parse(c, p + off, n - off, t);
keep:
    if (c->state == C_DEAD) {
        return;
    }
    size_t rest = n - off;
    if (p == c->rbuf) {
        if (rest && off) {
            memmove(c->rbuf, c->rbuf + off, rest);
        }
        c->rlen = (uint32_t)rest;
        if (!rest && c->rcap > 65536) {
            free(c->rbuf); /* an idle connection keeps no big buffer */
            c->rbuf = NULL;
            c->rcap = 0;
        }
        return;
    }
    if (rest) {
        if (grow(&c->rbuf, &c->rcap, rest)) {
            conn_fail(c, "out of memory");
            return;
        }
        memcpy(c->rbuf, p + off, rest);
        c->rlen = (uint32_t)rest;
    }
}

static void on_alloc(uv_handle_t *h, size_t sug, uv_buf_t *buf)
{
    (void)h;
    (void)sug;
    *buf = uv_buf_init((char *)B.rbuf, sizeof B.rbuf);
}

static void on_conn_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    conn *c = s->data;
    if (nread < 0) {
        conn_fail(c, nread == UV_EOF ? "closed by the server" : uv_strerror((int)nread));
        return;
    }
    if (nread == 0 || c->state == C_DEAD) {
        return;
    }
    uint64_t t = now_us();
    if (c->rlen) {
        if (grow(&c->rbuf, &c->rcap, (size_t)c->rlen + (size_t)nread)) {
            conn_fail(c, "out of memory");
            return;
        }
        memcpy(c->rbuf + c->rlen, buf->base, (size_t)nread);
        c->rlen += (uint32_t)nread;
        consume(c, c->rbuf, c->rlen, t);
    } else {
        consume(c, (uint8_t *)buf->base, (size_t)nread, t);
    }
}

static void on_conn_connected(uv_connect_t *req, int status)
{
    conn *c = req->data;
    if (c->state == C_DEAD) {
        return;
    }
    if (status) {
        conn_fail(c, uv_strerror(status));
        return;
    }
    c->state = C_WS;
    uv_tcp_nodelay(&c->tcp, 1);
    uint8_t raw[16];
    for (int i = 0; i < 16; i += 8) {
        uint64_t r = rnd();
        memcpy(raw + i, &r, 8);
    }
    EVP_EncodeBlock((unsigned char *)c->key, raw, 16);
    int len = snprintf(B.sbuf, sizeof B.sbuf,
                       "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n"
                       "Host: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                       "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n",
                       opt.host, opt.port, c->key);
    int rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_conn_read);
    if (!rc) {
        rc = stream_write((uv_stream_t *)&c->tcp, B.sbuf, (size_t)len);
    }
    if (rc) {
        conn_fail(c, uv_strerror(rc));
    }
}

static void conn_open(conn *c)
{
    c->state = C_TCP;
    c->t_start = now_us();
    c->tcp.data = c;
    c->creq.data = c;
    B.connecting++;
    int rc = uv_tcp_init_ex(B.loop, &c->tcp, AF_INET);
    if (rc) {
        /* no handle to close */
        c->state = C_DEAD;
        c->closing = 1;
        B.connecting--;
        B.dead++;
        B.conn_errors++;
        if (B.error_prints++ < 10) {
            logf_("connection %d: socket: %s", c->idx, uv_strerror(rc));
        }
        return;
    }
    if (opt.src_ips > 0) {
        uv_os_fd_t fd;
        int one = 1;
        if (uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0) {
            setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        }
        struct sockaddr_in src;
        memset(&src, 0, sizeof src);
        src.sin_family = AF_INET;
        src.sin_addr.s_addr = htonl(0x7f000002u + (uint32_t)(c->idx % opt.src_ips));
        rc = uv_tcp_bind(&c->tcp, (const struct sockaddr *)&src, 0);
    }
    if (!rc) {
        rc = uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&B.target,
                            on_conn_connected);
    }
    if (rc) {
        conn_fail(c, uv_strerror(rc));
    }
}

/* ---------------------------------------------------------------- rooms */

static void on_room_created(conn *c, const uint8_t *p, size_t n)
{
    room *r = &B.rooms[c->room];
    B.rooms_pending--;
    json_error_t err;
    json_t *v = json_loadb((const char *)p, n, 0, &err);
    json_t *a = json_array_get(v, 0);
    const char *id = json_string_value(json_object_get(json_object_get(a, "room"), "id"));
    if (json_is_true(json_object_get(a, "ok")) && id && strlen(id) < sizeof r->id) {
        snprintf(r->id, sizeof r->id, "%s", id);
        r->ready = 1;
        int members = 0;
        for (int i = r->first; i < r->first + r->size; i++) {
            members += B.conns[i].state == C_READY;
        }
        r->members = members > 0 ? members - 1 : 0;
        B.rooms_made++;
    } else {
        r->ready = -1;
        if (B.error_prints++ < 10) {
            logf_("room:create refused: %.*s", (int)(n < 300 ? n : 300), (const char *)p);
        }
    }
    json_decref(v);
    rooms_pump();
}

static int room_create(room *r)
{
    conn *c = &B.conns[r->first];
    if (c->state != C_READY) {
        r->ready = -1;
        return -1;
    }
    uint32_t ack;
    pend *p = pend_take(c, &ack);
    if (!p) {
        r->ready = -1;
        return -1;
    }
    size_t cap = 256 + (size_t)r->size * 48;
    char *buf = xmalloc(cap);
    int len = snprintf(buf, cap, "42%u[\"room:create\",{\"name\":\"bench-%s-%d\",\"type\":\"group\","
                       "\"participants\":[", ack, B.tag, (int)(r - B.rooms));
    int first = 1;
    for (int i = r->first + 1; i < r->first + r->size; i++) {
        if (B.conns[i].state != C_READY) {
            continue;
        }
        len += snprintf(buf + len, cap - (size_t)len, "%s\"%s\"", first ? "" : ",",
                        B.users[i].id);
        first = 0;
    }
    len += snprintf(buf + len, cap - (size_t)len, "]}]");
    p->kind = P_CREATE;
    p->t_us = now_us();
    B.rooms_pending++;
    int rc = ws_send(c, buf, (size_t)len);
    free(buf);
    if (rc) {
        p->kind = P_FREE;
        B.rooms_pending--;
        r->ready = -1;
    }
    return rc;
}

static void rooms_pump(void)
{
    if (B.phase != PH_ROOMS) {
        return;
    }
    while (B.rooms_next < B.rooms_end && B.rooms_pending < opt.room_par) {
        room_create(&B.rooms[B.rooms_next++]);
    }
    if (B.rooms_next >= B.rooms_end && B.rooms_pending == 0) {
        step_advance();
    }
}

/* ---------------------------------------------------------------- registration (REST) */

static void hc_send(hcli *h);
static void hc_open(hcli *h);

static void reg_finish_one(void)
{
    B.reg_done++;
    if (B.reg_done >= B.nusers && B.phase == PH_REGISTER) {
        step_advance();
    }
}

static void on_hc_closed(uv_handle_t *hd)
{
    hcli *h = hd->data;
    free(h->buf);
    h->buf = NULL;
    h->len = h->cap = 0;
    if (h->state == 2) {
        /* the connection dropped with a request outstanding: ask again on a new one */
        h->state = 3;
        if (h->user >= 0 && B.nretry < B.nhc) {
            B.reg_retry[B.nretry++] = h->user;
        }
        h->user = -1;
        if (B.phase == PH_REGISTER && !B.failed) {
            hc_open(h);
        }
        return;
    }
    h->state = 3;
}

static void hc_close(hcli *h)
{
    if (!uv_is_closing((uv_handle_t *)&h->tcp)) {
        uv_close((uv_handle_t *)&h->tcp, on_hc_closed);
    }
}

static int reg_store(int u, const char *body, size_t n)
{
    json_error_t err;
    json_t *v = json_loadb(body, n, 0, &err);
    const char *id = json_string_value(json_object_get(json_object_get(v, "user"), "id"));
    const char *tok = json_string_value(json_object_get(v, "token"));
    int rc = -1;
    if (id && tok && strlen(id) < sizeof B.users[u].id) {
        snprintf(B.users[u].id, sizeof B.users[u].id, "%s", id);
        B.users[u].token = strdup(tok);
        rc = B.users[u].token ? 0 : -1;
    }
    json_decref(v);
    return rc;
}

/* One whole HTTP response in h->buf? Handles Content-Length and chunked bodies. */
static void hc_parse(hcli *h)
{
    uint8_t *end = memmem(h->buf, h->len, "\r\n\r\n", 4);
    if (!end) {
        return;
    }
    size_t hlen = (size_t)(end - h->buf) + 4;
    const char *hd = (const char *)h->buf;
    int status = atoi(hd + 9);
    long clen = -1;
    int chunked = 0, close_after = 0;
    for (const char *p = hd; p < hd + hlen - 2;) {
        const char *eol = memmem(p, (size_t)(hd + hlen - p), "\r\n", 2);
        if (!eol) {
            break;
        }
        if (strncasecmp(p, "content-length:", 15) == 0) {
            clen = strtol(p + 15, NULL, 10);
        } else if (strncasecmp(p, "transfer-encoding:", 18) == 0 &&
                   memmem(p, (size_t)(eol - p), "chunked", 7)) {
            chunked = 1;
        } else if (strncasecmp(p, "connection:", 11) == 0 &&
                   memmem(p, (size_t)(eol - p), "close", 5)) {
            close_after = 1;
        }
        p = eol + 2;
    }
    char *body = NULL;
    size_t blen = 0, total = 0;
    if (chunked) {
        size_t off = hlen;
        body = xmalloc(h->len);
        for (;;) {
            uint8_t *eol = memmem(h->buf + off, h->len - off, "\r\n", 2);
            if (!eol) {
                free(body);
                return;
            }
            size_t sz = strtoul((const char *)h->buf + off, NULL, 16);
            off = (size_t)(eol - h->buf) + 2;
            if (h->len - off < sz + 2) {
                free(body);
                return;
            }
            memcpy(body + blen, h->buf + off, sz);
            blen += sz;
            off += sz + 2;
            if (sz == 0) {
                break;
            }
        }
        total = off;
    } else {
        if (clen < 0) {
            clen = 0;
        }
        if (h->len < hlen + (size_t)clen) {
            return;
        }
        body = xmalloc((size_t)clen + 1);
        memcpy(body, h->buf + hlen, (size_t)clen);
        blen = (size_t)clen;
        total = hlen + (size_t)clen;
    }
    memmove(h->buf, h->buf + total, h->len - total);
    h->len -= total;
    int u = h->user;
    h->state = 1;
    if ((status == 200 || status == 201) && reg_store(u, body, blen) == 0) {
        reg_finish_one();
    } else {
        B.reg_errors++;
        if (B.error_prints++ < 10) {
            logf_("register user %d: HTTP %d %.*s", u, status, (int)(blen < 200 ? blen : 200),
                  body);
        }
        if (B.reg_errors > 20 && !B.failed) {
            B.failed = 1;
            snprintf(B.fail_msg, sizeof B.fail_msg, "registration keeps failing (HTTP %d)",
                     status);
        }
        reg_finish_one();
    }
    free(body);
    if (close_after) {
        hc_close(h);
        return;
    }
    hc_send(h);
}

static void on_hc_alloc(uv_handle_t *hd, size_t sug, uv_buf_t *buf)
{
    hcli *h = hd->data;
    (void)sug;
    if (h->cap - h->len < 16384) {
        size_t c = h->cap ? h->cap * 2 : 32768;
        uint8_t *p = realloc(h->buf, c);
        if (!p) {
            die("out of memory");
        }
        h->buf = p;
        h->cap = c;
    }
    *buf = uv_buf_init((char *)h->buf + h->len, (unsigned)(h->cap - h->len));
}

static void on_hc_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    hcli *h = s->data;
    (void)buf;
    if (nread < 0) {
        hc_close(h);
        return;
    }
    h->len += (size_t)nread;
    hc_parse(h);
}

static void hc_send(hcli *h)
{
    if ((B.reg_next >= B.nusers && !B.nretry) || B.failed) {
        h->state = 1;
        hc_close(h);
        return;
    }
    if (h->state == 3) {
        return;
    }
    int u = h->user = B.nretry ? B.reg_retry[--B.nretry] : B.reg_next++;
    char body[256];
    int bl = snprintf(body, sizeof body,
                      "{\"email\":\"b%su%d@bench.test\",\"username\":\"b%s_%d\","
                      "\"password\":\"bench-password-1\"}",
                      B.tag, u, B.tag, u);
    char req[512];
    int rl = snprintf(req, sizeof req,
                      "POST /auth/register HTTP/1.1\r\nHost: %s:%d\r\n"
                      "Content-Type: application/json\r\nContent-Length: %d\r\n"
                      "Connection: keep-alive\r\n\r\n%s",
                      opt.host, opt.port, bl, body);
    h->state = 2;
    if (stream_write((uv_stream_t *)&h->tcp, req, (size_t)rl)) {
        hc_close(h); /* the close hands the user to another connection */
    }
}

static void on_hc_connected(uv_connect_t *req, int status)
{
    hcli *h = req->data;
    if (status) {
        h->state = 1;
        B.reg_errors++;
        if (B.error_prints++ < 10) {
            logf_("REST connection: %s", uv_strerror(status));
        }
        if (B.reg_errors > 20) {
            B.failed = 1;
            snprintf(B.fail_msg, sizeof B.fail_msg, "cannot reach %s:%d: %s", opt.host,
                     opt.port, uv_strerror(status));
        }
        hc_close(h);
        return;
    }
    h->state = 1;
    uv_tcp_nodelay(&h->tcp, 1);
    uv_read_start((uv_stream_t *)&h->tcp, on_hc_alloc, on_hc_read);
    hc_send(h);
}

static void hc_open(hcli *h)
{
    memset(&h->tcp, 0, sizeof h->tcp);
    h->state = 0;
    h->buf = NULL;
    h->len = h->cap = 0;
    uv_tcp_init(B.loop, &h->tcp);
    h->tcp.data = h;
    h->creq.data = h;
    if (uv_tcp_connect(&h->creq, &h->tcp, (const struct sockaddr *)&B.target,
                       on_hc_connected)) {
        hc_close(h);
    }
}

static void register_start(void)
{
    B.nhc = opt.http_par;
    B.hc = xcalloc((size_t)B.nhc, sizeof *B.hc);
    B.reg_retry = xcalloc((size_t)B.nhc, sizeof *B.reg_retry);
    for (int i = 0; i < B.nhc; i++) {
        B.hc[i].user = -1;
        hc_open(&B.hc[i]);
    }
}

/* ---------------------------------------------------------------- phases */

static void conns_pump(void)
{
    if (B.phase != PH_CONNECT) {
        return;
    }
    while (B.conn_next < B.conn_target && B.connecting < opt.connect_par) {
        conn_open(&B.conns[B.conn_next++]);
    }
    if (B.conn_next >= B.conn_target && B.connecting == 0) {
        step_advance();
    }
}

static double cur_rate(void)
{
    if (opt.user_rate > 0) {
        int active = 0;
        for (int i = 0; i < B.nsenders; i++) {
            active += B.conns[B.senders[i]].state == C_READY;
        }
        return opt.user_rate * active;
    }
    return opt.rate[B.step];
}

static void phase_timer_cb(uv_timer_t *t)
{
    (void)t;
    step_advance();
}

static void set_phase(int ph, double secs)
{
    B.phase = ph;
    B.phase_t0 = now_us();
    if (secs > 0) {
        uv_timer_start(&B.phase_timer, phase_timer_cb, (uint64_t)(secs * 1000), 0);
    }
}

static void finish(void);

static void measure_begin(void)
{
    step_result *r = B.cur;
    B.measuring = 1;
    B.meas_t0_us = now_us();
    B.srv_cpu0 = srv_cpu();
    B.cli_cpu0 = self_cpu();
    machine_cpu(&B.mach_busy0, &B.mach_total0);
    r->other_events = 0;
}

static void measure_end(void)
{
    step_result *r = B.cur;
    B.measuring = 0;
    r->secs = (double)(now_us() - B.meas_t0_us) / 1e6;
    if (opt.server_pid > 0) {
        r->srv_cpu_pct = (srv_cpu() - B.srv_cpu0) / r->secs * 100.0;
        r->rss_kb = srv_rss();
        if (B.ready > 0 && B.rss_base_kb > 0 && r->rss_kb > 0) {
            r->rss_per_conn = (double)(r->rss_kb - B.rss_base_kb) * 1024.0 / B.ready;
        }
    }
    r->cli_cpu_pct = (self_cpu() - B.cli_cpu0) / r->secs * 100.0;
    double mb, mt;
    machine_cpu(&mb, &mt);
    if (mt > B.mach_total0) {
        double ncpu = (double)sysconf(_SC_NPROCESSORS_ONLN);
        double busy_pct = (mb - B.mach_busy0) / (mt - B.mach_total0) * ncpu * 100.0;
        r->others_cpu_pct = busy_pct - r->cli_cpu_pct - (opt.server_pid > 0 ? r->srv_cpu_pct : 0);
        if (r->others_cpu_pct < 0) {
            r->others_cpu_pct = 0;
        }
    }
    r->conns_ready = B.ready;
}

static void log_step(const step_result *r)
{
    logf_("step %d done: conns %d  rate %.0f/s  sent %" PRIu64 "  deliveries %.0f/s  "
          "lat p50 %.2f p90 %.2f p99 %.2f max %.2f ms  ack p99 %.2f ms  srv cpu %.0f%%  "
          "rss %ld KB (%.0f B/conn)  cli cpu %.0f%%  others %.0f%%  lost %" PRIu64,
          B.step + 1, r->conns_ready, r->rate_offered, r->sent,
          r->secs > 0 ? (double)r->deliveries / r->secs : 0.0, h_pct(&r->lat, .5),
          h_pct(&r->lat, .9), h_pct(&r->lat, .99), (double)r->lat.max / 1000.0,
          h_pct(&r->ack_lat, .99), r->srv_cpu_pct, r->rss_kb, r->rss_per_conn,
          r->cli_cpu_pct, r->others_cpu_pct, r->lost);
}

static void step_begin(void);

/* Moves the current step to its next phase. Every phase ends by calling this. */
static void step_advance(void)
{
    uv_timer_stop(&B.phase_timer);
    if (B.failed) {
        finish();
        return;
    }
    step_result *r = B.cur;
    switch (B.phase) {
    case PH_REGISTER:
        for (int i = 0; i < B.nhc; i++) {
            if (B.hc[i].state != 3) {
                hc_close(&B.hc[i]);
            }
        }
        logf_("registered %d users (%d errors) in %.1f s", B.reg_done - B.reg_errors,
              B.reg_errors, (double)(now_us() - B.phase_t0) / 1e6);
        B.rss_base_kb = srv_rss();
        B.step = 0;
        step_begin();
        return;
    case PH_CONNECT: {
        double secs = (double)(now_us() - B.phase_t0) / 1e6;
        int opened = B.conn_target - (B.step ? B.res[B.step - 1].conns_target : 0);
        r->connect_secs = secs;
        r->connect_rate = secs > 0 ? opened / secs : 0;
        logf_("step %d: %d connections ready (%d failed), %d opened in %.2f s: %.0f conn/s",
              B.step + 1, B.ready, B.conn_errors, opened, secs, r->connect_rate);
        if (B.rss_series) {
            json_array_append_new(B.rss_series, json_pack("[i,I]", B.ready, (json_int_t)srv_rss()));
        }
        if (opt.room_size > 0) {
            int first = B.step ? B.res[B.step - 1].conns_target : 0;
            int start_room = B.nrooms;
            for (int i = first; i < B.conn_target; i += opt.room_size) {
                room *rm = &B.rooms[B.nrooms];
                rm->first = i;
                rm->size = B.conn_target - i < opt.room_size ? B.conn_target - i : opt.room_size;
                rm->ready = 0;
                for (int j = i; j < i + rm->size; j++) {
                    B.conns[j].room = B.nrooms;
                }
                B.nrooms++;
            }
            B.rooms_next = start_room;
            B.rooms_end = B.nrooms;
            set_phase(PH_ROOMS, 0);
            rooms_pump();
            return;
        }
        set_phase(PH_ROOMS, 0);
        step_advance();
        return;
    }
    case PH_ROOMS: {
        int made = 0;
        for (int i = 0; i < B.nrooms; i++) {
            room *rm = &B.rooms[i];
            if (rm->ready != 1 || rm->id[0] == '\0' || rm->size < 1) {
                continue;
            }
            made++;
        }
        /* senders of the rooms made in this step */
        int first_room = 0;
        while (first_room < B.nrooms &&
               B.rooms[first_room].first < (B.step ? B.res[B.step - 1].conns_target : 0)) {
            first_room++;
        }
        for (int i = first_room; i < B.nrooms; i++) {
            room *rm = &B.rooms[i];
            if (rm->ready != 1) {
                continue;
            }
            int k = opt.senders_per_room > 0 && opt.senders_per_room < rm->size
                        ? opt.senders_per_room
                        : rm->size;
            for (int j = rm->first; j < rm->first + k; j++) {
                if (!B.conns[j].sender) {
                    B.conns[j].sender = 1;
                    B.senders[B.nsenders++] = j;
                }
            }
        }
        if (opt.room_size > 0) {
            logf_("step %d: %d rooms ready, %d senders", B.step + 1, made, B.nsenders);
        }
        set_phase(PH_SETTLE, opt.settle_secs > 0 ? opt.settle_secs : 0.001);
        return;
    }
    case PH_SETTLE:
        B.rate = cur_rate();
        r->rate_offered = B.rate;
        B.sending = B.rate != 0 && B.nsenders > 0;
        B.run_t0_us = now_us();
        B.run_sent = 0;
        set_phase(PH_WARMUP, opt.warmup_secs > 0 ? opt.warmup_secs : 0.001);
        return;
    case PH_WARMUP:
        measure_begin();
        set_phase(PH_MEASURE, opt.step_secs);
        return;
    case PH_MEASURE:
        measure_end();
        B.sending = 0;
        set_phase(PH_DRAIN, 0);
        uv_timer_start(&B.phase_timer, phase_timer_cb, (uint64_t)(opt.drain_secs * 1000), 0);
        if (B.exp_deliv <= B.got_deliv && B.total_inflight == 0) {
            step_advance();
        }
        return;
    case PH_DRAIN: {
        r->lost = B.exp_deliv > B.got_deliv ? B.exp_deliv - B.got_deliv : 0;
        B.exp_deliv = B.got_deliv; /* what is lost stays lost: don't block the next step */
        log_step(r);
        B.nres = B.step + 1;
        int over = opt.stop_p99_ms > 0 && r->lat.n && h_pct(&r->lat, 0.99) > opt.stop_p99_ms;
        if (over) {
            r->stopped_p99 = 1;
            logf_("p99 %.2f ms passed %.2f ms: stopping the ramp", h_pct(&r->lat, 0.99),
                  opt.stop_p99_ms);
        }
        if (over || B.step + 1 >= opt.steps) {
            finish();
            return;
        }
        B.step++;
        step_begin();
        return;
    }
    default:
        return;
    }
}

static void step_begin(void)
{
    B.cur = &B.res[B.step];
    memset(B.cur, 0, sizeof *B.cur);
    B.cur->conns_target = opt.conns[B.step];
    B.cur->rate_target = opt.rate[B.step];
    B.conn_target = opt.conns[B.step];
    logf_("step %d/%d: %d connections, rate %s", B.step + 1, opt.steps, B.conn_target,
          opt.user_rate > 0 ? "per user" : opt.rate[B.step] < 0 ? "max" : "fixed");
    set_phase(PH_CONNECT, 0);
    conns_pump();
}

static void on_tick(uv_timer_t *t)
{
    (void)t;
    send_pump();
    if (B.phase == PH_DRAIN && B.exp_deliv <= B.got_deliv && B.total_inflight == 0 &&
        now_us() - B.phase_t0 > 50000) {
        step_advance();
    }
}

static void on_progress(uv_timer_t *t)
{
    (void)t;
    double sc = srv_cpu(), cc = self_cpu(), mb, mt;
    long rss = srv_rss();
    machine_cpu(&mb, &mt);
    double others = 0;
    if (mt > B.sec_mt) {
        others = (mb - B.sec_mb) / (mt - B.sec_mt) * (double)sysconf(_SC_NPROCESSORS_ONLN) * 100 -
                 (opt.server_pid > 0 ? (sc - B.sec_srv_cpu) * 100 : 0) - (cc - B.sec_cli_cpu) * 100;
    }
    if (!opt.quiet) {
        char extra[96] = "";
        if (B.phase == PH_REGISTER) {
            snprintf(extra, sizeof extra, "  registered %d/%d", B.reg_done, B.nusers);
        }
        logf_("step %d %-8s conns %d/%d (+%" PRIu64 "/s, %d opening)  sent %" PRIu64
              "/s  acks %" PRIu64 "/s  deliv %" PRIu64 "/s  lat p50 %.2f p99 %.2f max %.2f ms"
              "  srv cpu %.0f%% rss %.1f MB  cli cpu %.0f%%  others %.0f%%%s",
              B.step + 1, phase_name[B.phase], B.ready, B.conn_target, B.sec_ready,
              B.connecting, B.sec_sent, B.sec_acked, B.sec_deliv, h_pct(&B.sec_lat, .5),
              h_pct(&B.sec_lat, .99), (double)B.sec_lat.max / 1000.0,
              opt.server_pid > 0 ? (sc - B.sec_srv_cpu) * 100 : 0.0,
              rss > 0 ? (double)rss / 1024 : 0.0, (cc - B.sec_cli_cpu) * 100,
              others > 0 ? others : 0.0, extra);
    }
    if (B.rss_series && B.phase == PH_CONNECT && rss > 0) {
        json_array_append_new(B.rss_series, json_pack("[i,I]", B.ready, (json_int_t)rss));
    }
    memset(&B.sec_lat, 0, sizeof B.sec_lat);
    B.sec_sent = B.sec_acked = B.sec_deliv = B.sec_ready = 0;
    B.sec_srv_cpu = sc;
    B.sec_cli_cpu = cc;
    B.sec_mb = mb;
    B.sec_mt = mt;
}

static void on_deadline(uv_timer_t *t)
{
    (void)t;
    logf_("the run reached --max-secs %.0f: stopping", opt.max_secs);
    if (B.measuring) {
        measure_end();
        B.nres = B.step + 1;
    }
    B.failed = 1;
    snprintf(B.fail_msg, sizeof B.fail_msg, "stopped at --max-secs");
    finish();
}

/* ---------------------------------------------------------------- results */

static json_t *step_json(const step_result *r)
{
    return json_pack(
        "{s:i,s:i,s:f,s:f,s:f,s:f,s:f,s:I,s:I,s:I,s:I,s:I,s:I,s:f,s:f,s:f,s:o,s:o,s:f,s:f,"
        "s:I,s:f,s:f,s:b}",
        "conns_target", r->conns_target, "conns", r->conns_ready, "rate_target",
        r->rate_target, "rate_offered", r->rate_offered, "connect_secs", r->connect_secs,
        "connect_per_s", r->connect_rate, "secs", r->secs, "sent", (json_int_t)r->sent, "acked",
        (json_int_t)r->acked, "ack_errors", (json_int_t)r->ack_errors, "deliveries",
        (json_int_t)r->deliveries, "lost", (json_int_t)r->lost, "behind",
        (json_int_t)r->behind, "sends_per_s", r->secs > 0 ? (double)r->sent / r->secs : 0.0,
        "acks_per_s", r->secs > 0 ? (double)r->acked / r->secs : 0.0, "deliveries_per_s",
        r->secs > 0 ? (double)r->deliveries / r->secs : 0.0, "latency_ms", h_json(&r->lat),
        "ack_latency_ms", h_json(&r->ack_lat), "server_cpu_pct", r->srv_cpu_pct,
        "client_cpu_pct", r->cli_cpu_pct, "server_rss_kb", (json_int_t)r->rss_kb,
        "server_rss_per_conn_bytes", r->rss_per_conn, "others_cpu_pct", r->others_cpu_pct,
        "stopped_p99", r->stopped_p99);
}

static void finish(void)
{
    static int done;
    if (done) {
        return;
    }
    done = 1;
    B.phase = PH_DONE;
    json_t *steps = json_array();
    for (int i = 0; i < B.nres; i++) {
        json_array_append_new(steps, step_json(&B.res[i]));
    }
    json_t *root = json_pack(
        "{s:s,s:s,s:s,s:i,s:{s:i,s:i,s:i,s:i,s:f,s:i,s:i,s:f,s:f,s:f},s:i,s:I,s:o,s:o,s:b,s:s}",
        "tool", "chat-bench", "label", opt.label, "host", opt.host, "port", opt.port, "config",
        "room_size", opt.room_size, "senders_per_room", opt.senders_per_room, "inflight",
        opt.inflight, "window", opt.window, "user_rate", opt.user_rate, "msg_size",
        opt.msg_size, "src_ips", opt.src_ips, "step_secs", opt.step_secs, "warmup_secs",
        opt.warmup_secs, "stop_p99_ms", opt.stop_p99_ms, "connect_errors", B.conn_errors,
        "server_rss_base_kb", (json_int_t)B.rss_base_kb, "steps", steps, "rss_series",
        B.rss_series ? json_incref(B.rss_series) : json_array(), "ok", !B.failed, "error",
        B.failed ? B.fail_msg : "");
    /* the one-line summary: the last step, or the best for a max run */
    const step_result *last = B.nres ? &B.res[B.nres - 1] : NULL;
    double conn_rate = 0;
    for (int i = 0; i < B.nres; i++) {
        if (B.res[i].connect_rate > conn_rate) {
            conn_rate = B.res[i].connect_rate; /* later steps may open none */
        }
    }
    if (last) {
        printf("summary: %s conns=%d sent/s=%.0f acks/s=%.0f deliveries/s=%.0f "
               "p50=%.2fms p90=%.2fms p99=%.2fms max=%.2fms srv_cpu=%.0f%% "
               "rss/conn=%.0fB connect/s=%.0f%s\n",
               opt.label, last->conns_ready, last->secs > 0 ? last->sent / last->secs : 0,
               last->secs > 0 ? last->acked / last->secs : 0,
               last->secs > 0 ? last->deliveries / last->secs : 0, h_pct(&last->lat, .5),
               h_pct(&last->lat, .9), h_pct(&last->lat, .99), (double)last->lat.max / 1000,
               last->srv_cpu_pct, last->rss_per_conn, conn_rate,
               B.failed ? " (incomplete)" : "");
    } else {
        printf("summary: %s no step completed: %s\n", opt.label, B.fail_msg);
    }
    char *text = json_dumps(root, JSON_COMPACT | JSON_REAL_PRECISION(6));
    if (text) {
        puts(text);
        if (opt.json_out[0]) {
            FILE *f = fopen(opt.json_out, "w");
            if (f) {
                fputs(text, f);
                fputc('\n', f);
                fclose(f);
            }
        }
        free(text);
    }
    json_decref(root);
    fflush(stdout);
    /* the server sees every connection drop at once when the process exits */
    _exit(B.failed ? 1 : 0);
}

/* ---------------------------------------------------------------- options */

static void usage_to(FILE *out, int code)
{
    fputs(
        "usage: chat-bench [options]\n"
        "  --target HOST:PORT      the Socket.IO server (loopback only; default 127.0.0.1:8080)\n"
        "  --conns N[,N..]         connections at each step (default 100)\n"
        "  --rate R[,R..]|max      messages/s over all senders at each step (default 0: idle)\n"
        "  --user-rate R           messages/s per sender instead of --rate\n"
        "  --room-size N           members per room (0: no rooms; default 0)\n"
        "  --senders-per-room K    members of each room that send (default: all)\n"
        "  --window N              max: deliveries in flight (default 20000; 0: acks only)\n"
        "  --inflight N            unacknowledged sends per connection (default 16, <= 60)\n"
        "  --msg-size N            bytes of message content (default 64)\n"
        "  --step-secs S           measured time of each step (default 10)\n"
        "  --warmup-secs S         sending before measuring, each step (default 2)\n"
        "  --settle-secs S         wait after connecting, before sending (default 1)\n"
        "  --drain-secs S          wait for deliveries after a step (default 3)\n"
        "  --stop-p99-ms X         end the ramp after a step whose p99 passes X\n"
        "  --src-ips N             spread connections over 127.0.0.2..127.0.0.(N+1) (default 4)\n"
        "  --connect-par N         connections opening at once (default 256)\n"
        "  --http-par N            registrations at once (default 32)\n"
        "  --server-pid PID        sample the server's CPU and RSS from /proc\n"
        "  --label NAME            name in the output (default: target)\n"
        "  --json-out FILE         also write the JSON there\n"
        "  --max-secs S            stop the whole run after S seconds (default 300)\n"
        "  --quiet                 no per-second progress\n",
        out);
    exit(code);
}

static void usage(void) { usage_to(stderr, 2); }

static int parse_list_int(const char *s, int *out, int max)
{
    int n = 0;
    for (const char *p = s; *p && n < max;) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 0 || v > 10000000) {
            return -1;
        }
        out[n++] = (int)v;
        p = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') {
            return -1;
        }
    }
    return n;
}

static int parse_list_rate(const char *s, double *out, int max)
{
    int n = 0;
    for (const char *p = s; *p && n < max;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (len == 3 && strncmp(p, "max", 3) == 0) {
            out[n++] = -1;
        } else {
            char *end;
            double v = strtod(p, &end);
            if (end != p + len || v < 0) {
                return -1;
            }
            out[n++] = v;
        }
        p = comma ? comma + 1 : p + len;
    }
    return n;
}

static void parse_args(int argc, char **argv)
{
    int nconns = 1, nrates = 1;
    snprintf(opt.host, sizeof opt.host, "127.0.0.1");
    opt.port = 8080;
    opt.src_ips = 4;
    opt.conns[0] = 100;
    opt.rate[0] = 0;
    opt.window = 20000;
    opt.inflight = 16;
    opt.msg_size = 64;
    opt.step_secs = 10;
    opt.warmup_secs = 2;
    opt.settle_secs = 1;
    opt.drain_secs = 3;
    opt.max_secs = 300;
    opt.connect_par = 256;
    opt.http_par = 32;
    opt.room_par = 32;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define ARG(name) (strcmp(a, name) == 0 && v && (i++, 1))
        if (ARG("--target")) {
            const char *colon = strrchr(v, ':');
            if (!colon || (size_t)(colon - v) >= sizeof opt.host) {
                usage();
            }
            snprintf(opt.host, sizeof opt.host, "%.*s", (int)(colon - v), v);
            opt.port = atoi(colon + 1);
        } else if (ARG("--conns")) {
            if ((nconns = parse_list_int(v, opt.conns, MAX_STEPS)) <= 0) {
                usage();
            }
        } else if (ARG("--rate")) {
            if ((nrates = parse_list_rate(v, opt.rate, MAX_STEPS)) <= 0) {
                usage();
            }
        } else if (ARG("--user-rate")) {
            opt.user_rate = atof(v);
        } else if (ARG("--room-size")) {
            opt.room_size = atoi(v);
        } else if (ARG("--senders-per-room")) {
            opt.senders_per_room = atoi(v);
        } else if (ARG("--window")) {
            opt.window = atoi(v);
        } else if (ARG("--inflight")) {
            opt.inflight = atoi(v);
        } else if (ARG("--msg-size")) {
            opt.msg_size = atoi(v);
        } else if (ARG("--step-secs")) {
            opt.step_secs = atof(v);
        } else if (ARG("--warmup-secs")) {
            opt.warmup_secs = atof(v);
        } else if (ARG("--settle-secs")) {
            opt.settle_secs = atof(v);
        } else if (ARG("--drain-secs")) {
            opt.drain_secs = atof(v);
        } else if (ARG("--stop-p99-ms")) {
            opt.stop_p99_ms = atof(v);
        } else if (ARG("--src-ips")) {
            opt.src_ips = atoi(v);
        } else if (ARG("--connect-par")) {
            opt.connect_par = atoi(v);
        } else if (ARG("--http-par")) {
            opt.http_par = atoi(v);
        } else if (ARG("--server-pid")) {
            opt.server_pid = atoi(v);
        } else if (ARG("--label")) {
            snprintf(opt.label, sizeof opt.label, "%s", v);
        } else if (ARG("--json-out")) {
            snprintf(opt.json_out, sizeof opt.json_out, "%s", v);
        } else if (ARG("--max-secs")) {
            opt.max_secs = atof(v);
        } else if (strcmp(a, "--quiet") == 0) {
            opt.quiet = 1;
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage_to(stdout, 0);
        } else {
            usage();
        }
#undef ARG
    }
    opt.steps = nconns > nrates ? nconns : nrates;
    for (int i = 1; i < opt.steps; i++) {
        if (i >= nconns) {
            opt.conns[i] = opt.conns[nconns - 1];
        }
        if (i >= nrates) {
            opt.rate[i] = opt.rate[nrates - 1];
        }
        if (opt.conns[i] < opt.conns[i - 1]) {
            die("--conns must not shrink from one step to the next");
        }
    }
    if (opt.conns[opt.steps - 1] < 1) {
        die("--conns must reach at least 1");
    }
    if (opt.inflight < 1 || opt.inflight > PEND_RING - 4) {
        die("--inflight must be 1..%d", PEND_RING - 4);
    }
    if (opt.room_size < 0 || opt.room_size > 1000) {
        die("--room-size must be 0..1000");
    }
    if (opt.msg_size < 32 || opt.msg_size > 4000) {
        die("--msg-size must be 32..4000");
    }
    if (opt.src_ips < 0 || opt.src_ips > 250) {
        die("--src-ips must be 0..250");
    }
    if (opt.connect_par < 1 || opt.http_par < 1) {
        die("--connect-par and --http-par must be positive");
    }
    if (!opt.label[0]) {
        snprintf(opt.label, sizeof opt.label, "%s:%d", opt.host, opt.port);
    }
    for (int i = 0; i < opt.steps; i++) {
        if ((opt.rate[i] != 0 || opt.user_rate > 0) && opt.room_size == 0) {
            die("sending needs rooms: set --room-size");
        }
    }
}

int main(int argc, char **argv)
{
    parse_args(argc, argv);
    B.loop = uv_default_loop();
    B.t0_ns = uv_hrtime();
    B.rng = B.t0_ns ^ ((uint64_t)getpid() << 32) ^ 0x9e3779b97f4a7c15ull;
    if (!B.rng) {
        B.rng = 1;
    }
    static const char abc[] = "abcdefghijklmnopqrstuvwxyz0123456789";
    for (int i = 0; i < 6; i++) {
        B.tag[i] = abc[rnd() % 36];
    }
    if (uv_ip4_addr(opt.host, opt.port, &B.target)) {
        die("--target wants an IPv4 address and a port, e.g. 127.0.0.1:8080");
    }
    /* Load tests here stay on this machine: only 127.0.0.0/8 is a target. */
    if ((ntohl(B.target.sin_addr.s_addr) >> 24) != 127) {
        die("only loopback targets (127.0.0.0/8) are allowed");
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        if (rl.rlim_cur < rl.rlim_max) {
            rl.rlim_cur = rl.rlim_max;
            setrlimit(RLIMIT_NOFILE, &rl);
        }
        int maxc = opt.conns[opt.steps - 1];
        if ((rlim_t)maxc + 64 + (rlim_t)opt.http_par > rl.rlim_cur) {
            logf_("warning: %d connections need more descriptors than RLIMIT_NOFILE %llu "
                  "allows this process; the excess will fail",
                  maxc, (unsigned long long)rl.rlim_cur);
        }
    }
    B.max_conns = opt.conns[opt.steps - 1];
    B.nusers = B.max_conns;
    B.users = xcalloc((size_t)B.nusers, sizeof *B.users);
    B.conns = xcalloc((size_t)B.max_conns, sizeof *B.conns);
    for (int i = 0; i < B.max_conns; i++) {
        B.conns[i].idx = i;
        B.conns[i].room = -1;
    }
    B.rooms = xcalloc((size_t)(opt.room_size ? B.max_conns / opt.room_size + MAX_STEPS + 1 : 1),
                      sizeof *B.rooms);
    B.senders = xcalloc((size_t)B.max_conns, sizeof *B.senders);
    B.rss_series = opt.server_pid > 0 ? json_array() : NULL;
    signal(SIGPIPE, SIG_IGN);

    uv_timer_init(B.loop, &B.tick);
    uv_timer_init(B.loop, &B.progress);
    uv_timer_init(B.loop, &B.phase_timer);
    uv_timer_init(B.loop, &B.deadline);
    uv_timer_start(&B.tick, on_tick, 1, 1);
    uv_timer_start(&B.progress, on_progress, 1000, 1000);
    uv_timer_start(&B.deadline, on_deadline, (uint64_t)(opt.max_secs * 1000), 0);
    B.sec_srv_cpu = srv_cpu();
    B.sec_cli_cpu = self_cpu();
    machine_cpu(&B.sec_mb, &B.sec_mt);
    logf_("chat-bench %s -> %s:%d: %d step(s), up to %d connections from %d source address(es)",
          opt.label, opt.host, opt.port, opt.steps, B.max_conns, opt.src_ips);
    set_phase(PH_REGISTER, 0);
    register_start();
    uv_run(B.loop, UV_RUN_DEFAULT);
    finish();
    return 0;
}
