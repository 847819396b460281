/* test_store_mongo.c: the store scenarios (store_scenarios.h) against a real server speaking
 * MongoDB's protocol: FerretDB with its SQLite backend, started by tools/services.sh, at
 * CHAT_TEST_MONGO_URI (each run in a database of its own, dropped at the end). Then what only
 * a networked store has: a server that is not there answers unavailable, quickly; a server
 * killed mid-way makes writes answer unavailable and never succeed falsely, and the store
 * recovers by itself once the server is back (a private FerretDB, CHAT_TEST_FERRETDB_BIN).
 * Prints the insert latency it measured. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <mongoc/mongoc.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "store_scenarios.h"

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

/* A free loopback port (bound, then released). */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t n = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) || getsockname(fd, (void *)&a, &n)) {
        if (fd >= 0) {
            close(fd);
        }
        return -1;
    }
    close(fd);
    return ntohs(a.sin_port);
}

/* The base URI with the database replaced (mongodb://hosts/<db>?options); malloc'd.
 * (mongoc_uri_set_database does not change the string mongoc_uri_get_string returns.) */
static char *uri_with_db(const char *base, const char *db)
{
    const char *hosts = strstr(base, "://");
    if (strncmp(base, "mongodb://", 10) != 0 || !hosts) {
        fprintf(stderr, "test_store_mongo: CHAT_TEST_MONGO_URI must start with mongodb://\n");
        return NULL;
    }
    hosts += 3;
    size_t hn = strcspn(hosts, "/?");
    const char *opts = strchr(hosts + hn, '?');
    size_t n = strlen(base) + strlen(db) + 4;
    char *s = malloc(n);
    if (s) {
        snprintf(s, n, "%.*s/%s%s", (int)(hosts + hn - base), base, db, opts ? opts : "");
    }
    return s;
}

static void drop_database(const char *uri_str, const char *db)
{
    mongoc_client_t *client = mongoc_client_new(uri_str);
    if (!client) {
        return;
    }
    bson_error_t error;
    mongoc_database_t *d = mongoc_client_get_database(client, db);
    if (!mongoc_database_drop(d, &error)) {
        fprintf(stderr, "test_store_mongo: dropping %s: %s\n", db, error.message);
    }
    mongoc_database_destroy(d);
    mongoc_client_destroy(client);
}

/* ---- measured figures ---- */

static void measure_inserts(void)
{
    chat_store *s = NULL;
    json_t *r = NULL;
    enum { N = 300 };
    static double lat[N];

    CHECK(chat__store_open(&s, &loop, sc_be, sc_target) == 0);
    if (!s) {
        return;
    }
    for (int i = 0; i < N; i++) {
        char id[25];
        char cid[32];
        chat__objectid(id);
        snprintf(cid, sizeof cid, "lat-%d", i);
        double t0 = now_s();
        CHECK(run(s, CHAT_STORE_MESSAGE_INSERT,
                  message(id, ROOM2, ALICE, "latency", cid, 90000 + i), &r) == 0);
        lat[i] = (now_s() - t0) * 1000;
        json_decref(r);
    }
    qsort(lat, N, sizeof lat[0], cmp_double);
    /* and through the store's queue: 1000 calls in flight, first one insert per call on the
     * uv pool (batch_max 1), then group-committed as ordered bulk inserts */
    double rate[2];
    for (int batched = 0; batched < 2; batched++) {
        chat_store *t = NULL;
        chat_store_opts o = {.sqlite_synchronous = 1, .batch_max = batched ? 1024 : 1};
        CHECK(chat__store_open_with(&t, &loop, sc_be, sc_target, &o) == 0);
        if (!t) {
            return;
        }
        memset(&cs, 0, sizeof cs);
        double t0 = now_s();
        for (int i = 0; i < 1000; i++) {
            char id[25];
            chat__objectid(id);
            chat__store_call(t, CHAT_STORE_MESSAGE_INSERT,
                             message(id, ROOM2, BOB, "throughput", NULL, 100000 + i), on_insert,
                             NULL);
        }
        uv_run(&loop, UV_RUN_DEFAULT);
        rate[batched] = 1000 / (now_s() - t0);
        CHECK(cs.ok == 1000);
        chat__store_close(t);
    }
    printf("test_store_mongo: message insert, one at a time: median %.2f ms, p99 %.2f ms; "
           "1000 concurrent: %.0f inserts/s single, %.0f inserts/s batched (insertMany)\n",
           lat[N / 2], lat[N * 99 / 100], rate[0], rate[1]);
    chat__store_close(s);
}

/* ---- failures ---- */

static void test_bad_uris(void)
{
    chat_store *s = NULL;
    CHECK(chat__store_open(&s, &loop, &chat__store_mongo, "postgres://nope") == CHAT_EINVAL);
    CHECK(chat__store_open(&s, &loop, &chat__store_mongo, NULL) == CHAT_EINVAL);
    /* an acknowledged write is the whole point: w=0 is refused */
    CHECK(chat__store_open(&s, &loop, &chat__store_mongo, "mongodb://127.0.0.1:1/x?w=0") ==
          CHAT_EINVAL);
    CHECK(s == NULL);
}

/* Nobody listens: open still succeeds (the server may come later), calls answer unavailable
 * within the server selection timeout, and nothing claims success. */
static void test_unreachable(void)
{
    chat_store *s = NULL;
    json_t *r = NULL;
    char uri[128];
    int port = free_port();
    snprintf(uri, sizeof uri, "mongodb://127.0.0.1:%d/chatd_x?serverSelectionTimeoutMS=300", port);
    double t0 = now_s();
    CHECK(chat__store_open(&s, &loop, &chat__store_mongo, uri) == 0);
    if (!s) {
        return;
    }
    CHECK(run(s, CHAT_STORE_PING, NULL, &r) == CHAT_EUNAVAIL);
    CHECK(r == NULL);
    char id[25];
    chat__objectid(id);
    CHECK(run(s, CHAT_STORE_MESSAGE_INSERT, message(id, ROOM1, ALICE, "lost?", "u-1", 1), &r) ==
          CHAT_EUNAVAIL);
    CHECK(r == NULL);
    CHECK(run(s, CHAT_STORE_USER_GET, json_pack("{s:s}", "id", ALICE), &r) == CHAT_EUNAVAIL);
    CHECK(now_s() - t0 < 5.0);
    chat__store_close(s);
}

static pid_t start_ferretdb(const char *bin, const char *dir, int port)
{
    char sqlite_url[300], state[300], listen[64], logf[300];
    snprintf(sqlite_url, sizeof sqlite_url, "--sqlite-url=file:%s/", dir);
    snprintf(state, sizeof state, "--state-dir=%s", dir);
    snprintf(listen, sizeof listen, "--listen-addr=127.0.0.1:%d", port);
    snprintf(logf, sizeof logf, "%s/ferretdb.log", dir);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(logf, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execl(bin, bin, "--handler=sqlite", sqlite_url, state, listen, "--debug-addr=-",
              "--telemetry=disable", "--log-level=warn", (char *)NULL);
        _exit(127);
    }
    return pid;
}

/* Pings until the store answers; 1 when it did within ms. */
static int wait_ping(chat_store *s, int ms)
{
    double end = now_s() + ms / 1000.0;
    while (now_s() < end) {
        json_t *r = NULL;
        if (run(s, CHAT_STORE_PING, NULL, &r) == 0) {
            json_decref(r);
            return 1;
        }
        usleep(50000);
    }
    return 0;
}

static void test_outage(const char *bin)
{
    char dir[] = "/tmp/test_store_mongo_XXXXXX";
    char uri[160];
    chat_store *s = NULL;
    json_t *r = NULL;
    int port = free_port();

    if (!mkdtemp(dir)) {
        CHECK(!"mkdtemp");
        return;
    }
    pid_t pid = start_ferretdb(bin, dir, port);
    CHECK(pid > 0);
    snprintf(uri, sizeof uri, "mongodb://127.0.0.1:%d/chatd_outage?serverSelectionTimeoutMS=500",
             port);
    CHECK(chat__store_open(&s, &loop, &chat__store_mongo, uri) == 0);
    if (!s || pid <= 0) {
        goto done;
    }
    CHECK(wait_ping(s, 15000));
    CHECK(run(s, CHAT_STORE_ROOM_CREATE, room(ROOM1, "outage", 1, NULL), &r) == 0);
    json_decref(r);
    char id1[25];
    chat__objectid(id1);
    CHECK(run(s, CHAT_STORE_MESSAGE_INSERT, message(id1, ROOM1, ALICE, "before", "o-1", 10), &r) ==
          0);
    json_decref(r);

    /* the server dies */
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    pid = -1;
    char id2[25];
    chat__objectid(id2);
    r = NULL;
    CHECK(run(s, CHAT_STORE_MESSAGE_INSERT, message(id2, ROOM1, ALICE, "during", "o-2", 20), &r) ==
          CHAT_EUNAVAIL);
    CHECK(r == NULL);
    CHECK(run(s, CHAT_STORE_MESSAGES_PAGE, page_arg(ROOM1, NULL, 10), &r) == CHAT_EUNAVAIL);
    CHECK(run(s, CHAT_STORE_PING, NULL, &r) == CHAT_EUNAVAIL);

    /* it comes back with its data; the same store recovers by itself */
    double t0 = now_s();
    pid = start_ferretdb(bin, dir, port);
    CHECK(wait_ping(s, 15000));
    printf("test_store_mongo: store answered again %.2f s after the server restarted\n",
           now_s() - t0);
    /* the unacknowledged message was not stored; the client's retry stores it once */
    CHECK(run(s, CHAT_STORE_MESSAGES_PAGE, page_arg(ROOM1, NULL, 10), &r) == 0);
    CHECK(json_array_size(json_object_get(r, "messages")) == 1);
    json_decref(r);
    char id3[25];
    chat__objectid(id3);
    CHECK(run(s, CHAT_STORE_MESSAGE_INSERT, message(id3, ROOM1, ALICE, "during", "o-2", 30), &r) ==
          0);
    CHECK(json_is_false(json_object_get(r, "duplicate")));
    json_decref(r);
    CHECK(run(s, CHAT_STORE_MESSAGE_INSERT, message(id2, ROOM1, ALICE, "during", "o-2", 31), &r) ==
          0);
    CHECK(json_is_true(json_object_get(r, "duplicate")));
    json_decref(r);
    CHECK(run(s, CHAT_STORE_MESSAGES_PAGE, page_arg(ROOM1, NULL, 10), &r) == 0);
    CHECK(json_array_size(json_object_get(r, "messages")) == 2);
    json_decref(r);
done:
    chat__store_close(s);
    if (pid > 0) {
        kill(pid, SIGTERM);
        waitpid(pid, NULL, 0);
    }
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "test_store_mongo: could not remove %s\n", dir);
    }
}

int main(void)
{
    chat_store *s = NULL;
    const char *base = getenv("CHAT_TEST_MONGO_URI");
    const char *ferretdb = getenv("CHAT_TEST_FERRETDB_BIN");

    if (!base || !*base) {
        return test_skip("test_store_mongo", "CHAT_TEST_MONGO_URI is not set; start the test "
                                             "servers: eval \"$(tools/services.sh start)\"");
    }
    signal(SIGPIPE, SIG_IGN);
    if (uv_loop_init(&loop) != 0) {
        return 1;
    }
    char db[64];
    snprintf(db, sizeof db, "chatd_test_%d_%lld", (int)getpid(), (long long)time(NULL));
    char *uri = uri_with_db(base, db);
    if (!uri) {
        return 1;
    }
    sc_be = &chat__store_mongo;
    sc_target = uri;

    test_objectid();
    CHECK(chat__store_open(&s, &loop, sc_be, sc_target) == 0);
    if (!s) {
        fprintf(stderr,
                "test_store_mongo: cannot open the store at %s (is FerretDB running? "
                "tools/services.sh start)\n",
                base);
        free(uri);
        printf("test_store_mongo: %d passed, %d failed\n", passed, failed);
        return 1;
    }
    json_t *r = NULL;
    CHECK(run(s, CHAT_STORE_PING, NULL, &r) == 0);
    if (failed) {
        fprintf(stderr, "test_store_mongo: %s does not answer\n", base);
        chat__store_close(s);
        free(uri);
        return test_skip("test_store_mongo", "the MongoDB/FerretDB at CHAT_TEST_MONGO_URI does "
                                             "not answer; start the test servers: eval "
                                             "\"$(tools/services.sh start)\"");
    }
    json_decref(r);
    test_users(s);
    test_profiles(s);
    test_rooms(s);
    test_messages(s);
    test_paging(s);
    test_edits(s);
    test_reactions(s);
    test_reaction_cap(s, 0);
    test_reads(s);
    test_notifications(s);
    test_uploads(s);
    test_calls(s);
    chat__store_close(s);
    test_close_pending();
    test_reopen();
    measure_inserts();
    test_bad_uris();
    test_unreachable();
    if (ferretdb && *ferretdb) {
        test_outage(ferretdb);
    } else {
        CHECK(!"CHAT_TEST_FERRETDB_BIN is not set: run tools/services.sh start");
    }
    drop_database(uri, db);
    free(uri);
    CHECK(uv_loop_close(&loop) == 0);
    printf("test_store_mongo: %d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
