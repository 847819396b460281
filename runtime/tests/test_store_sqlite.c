/* test_store_sqlite.c: the store scenarios (store_scenarios.h) against the SQLite backend,
 * plus what only SQLite has: the data dir's permissions, WAL mode, an uncreatable dir. */
#include <sqlite3.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "store_scenarios.h"

static char tmpdir[64];
static char datadir[128];

static void cleanup(void)
{
    static const char *const files[] = {"chatd.db", "chatd.db-wal", "chatd.db-shm"};
    char path[256];
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", datadir, files[i]);
        unlink(path);
    }
    rmdir(datadir);
    rmdir(tmpdir);
}

/* A file written by the first schema (user_version 1, no profile columns) opens, keeps its
 * users and takes profile changes; the index by sender alone that later files had is gone. */
static void test_migration(void)
{
    char dir[160], path[200];
    sqlite3 *db = NULL;
    chat_store *s = NULL;
    json_t *r = NULL;

    snprintf(dir, sizeof dir, "%s/old", tmpdir);
    snprintf(path, sizeof path, "%s/chatd.db", dir);
    CHECK(mkdir(dir, 0700) == 0);
    CHECK(sqlite3_open(path, &db) == SQLITE_OK);
    CHECK(sqlite3_exec(db,
                       "CREATE TABLE users (id TEXT NOT NULL PRIMARY KEY, email TEXT NOT NULL "
                       "COLLATE NOCASE UNIQUE, username TEXT NOT NULL COLLATE NOCASE UNIQUE, "
                       "password_hash TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'offline', "
                       "last_seen INTEGER, avatar TEXT, created_at INTEGER NOT NULL);"
                       "CREATE TABLE messages (id TEXT NOT NULL PRIMARY KEY, room_id TEXT NOT "
                       "NULL, sender_id TEXT NOT NULL, content TEXT NOT NULL, attachments TEXT NOT "
                       "NULL DEFAULT '[]', reactions TEXT NOT NULL DEFAULT '{}', client_msg_id "
                       "TEXT, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);"
                       "CREATE INDEX messages_sender ON messages(sender_id);"
                       "INSERT INTO messages (id, room_id, sender_id, content, created_at, "
                       "updated_at) VALUES ('65000000000000000f000001', '6500000000000000000001a1',"
                       " '650000000000000000000a01', 'old words', 5, 5);"
                       "INSERT INTO users (id, email, username, password_hash, created_at) VALUES "
                       "('650000000000000000000a01', 'old@example.com', 'old', 'h', 5);"
                       "PRAGMA user_version = 1;",
                       NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(db);
    CHECK(chat__store_open(&s, &loop, &chat__store_sqlite, dir) == 0);
    if (s) {
        CHECK(run(s, CHAT_STORE_USER_GET, json_pack("{s:s}", "id", ALICE), &r) == 0);
        CHECK(str(r, "username") && strcmp(str(r, "username"), "old") == 0);
        CHECK(json_is_null(json_object_get(r, "displayName")));
        json_decref(r);
        CHECK(run(s, CHAT_STORE_USER_UPDATE,
                  json_pack("{s:s,s:s}", "id", ALICE, "displayName", "Old Timer"), &r) == 0);
        CHECK(str(r, "displayName") && strcmp(str(r, "displayName"), "Old Timer") == 0);
        json_decref(r);
        CHECK(run(s, CHAT_STORE_MESSAGE_GET, json_pack("{s:s}", "id", "65000000000000000f000001"),
                  &r) == 0);
        CHECK(str(r, "content") && strcmp(str(r, "content"), "old words") == 0);
        CHECK(json_object_get(r, "deleted") == NULL);
        json_decref(r);
        CHECK(run(s, CHAT_STORE_MESSAGE_DELETE,
                  json_pack("{s:s,s:I}", "id", "65000000000000000f000001", "updatedAt",
                            (json_int_t)9),
                  &r) == 0);
        CHECK(json_is_true(json_object_get(r, "deleted")));
        json_decref(r);
        chat__store_close(s);
    }
    sqlite3_stmt *q = NULL;
    CHECK(sqlite3_open(path, &db) == SQLITE_OK);
    CHECK(sqlite3_prepare_v2(db, "SELECT count(*) FROM sqlite_master WHERE name = 'messages_sender'",
                             -1, &q, NULL) == SQLITE_OK);
    CHECK(sqlite3_step(q) == SQLITE_ROW && sqlite3_column_int(q, 0) == 0);
    sqlite3_finalize(q);
    sqlite3_close(db);
    static const char *const files[] = {"chatd.db", "chatd.db-wal", "chatd.db-shm"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        unlink(path);
    }
    rmdir(dir);
}

/* The store opened with o in datadir, and an empty group room (its id in room) to insert
 * into; NULL (a failed CHECK) if either failed. */
static chat_store *open_with_room(const chat_store_opts *o, char room[25])
{
    chat_store *s = NULL;
    json_t *r = NULL;
    CHECK(chat__store_open_with(&s, &loop, &chat__store_sqlite, datadir, o) == 0);
    if (!s) {
        return NULL;
    }
    chat__objectid(room);
    CHECK(run(s, CHAT_STORE_ROOM_CREATE,
              json_pack("{s:s,s:s,s:[],s:I}", "id", room, "type", "group", "participants",
                        "createdAt", (json_int_t)1),
              &r) == 0);
    json_decref(r);
    return s;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A figure, not a check: stored inserts per second through chat__store_call with 1024 in
 * flight (as chatd under load), for each synchronous mode, group-committed and one
 * transaction per insert. Every insert carries a clientMsgId, as chatd's clients send. */
static void measure_inserts(void)
{
    static const struct {
        const char *name;
        int sync, batch;
    } modes[] = {{"NORMAL, group commit", 1, 1024},
                 {"NORMAL, one per insert", 1, 1},
                 {"FULL, group commit", 2, 1024},
                 {"FULL, one per insert", 2, 1}};
    enum { INFLIGHT = 1024 };
    printf("test_store_sqlite: stored inserts/s, %d in flight:", INFLIGHT);
    for (size_t m = 0; m < sizeof modes / sizeof modes[0]; m++) {
        chat_store_opts o = {.sqlite_synchronous = modes[m].sync, .batch_max = modes[m].batch};
        char room[25];
        chat_store *s = open_with_room(&o, room);
        if (!s) {
            return;
        }
        /* FULL, one at a time, is slow on a real disk: fewer of them */
        int total = modes[m].sync == 2 && modes[m].batch == 1 ? 2000 : 20000;
        memset(&cs, 0, sizeof cs);
        double t0 = now_s();
        for (int i = 0; i < total; i++) {
            char id[25];
            char cid[24];
            chat__objectid(id);
            snprintf(cid, sizeof cid, "m%zu-%d", m, i);
            CHECK(chat__store_call(s, CHAT_STORE_MESSAGE_INSERT,
                                   message(id, room, ALICE, "throughput", cid, 200000 + i),
                                   on_insert, NULL) == 0);
            if (chat__store_pending(s) >= INFLIGHT) {
                uv_run(&loop, UV_RUN_ONCE);
            }
        }
        uv_run(&loop, UV_RUN_DEFAULT);
        double took = now_s() - t0;
        CHECK(cs.fresh == total);
        printf(" %s %.0f;", modes[m].name, total / took);
        chat__store_close(s);
    }
    printf("\n");
}

/* store_queue_max: past it a call (an insert or any other) is refused at once with
 * CHAT_EUNAVAIL, its callback never runs, and it is counted; every call accepted before is
 * still answered once, and once they are, calls are accepted again. The loop does not run
 * between the calls, so the queue cannot drain in between. */
static void test_queue_max(void)
{
    chat_store_opts o = {.sqlite_synchronous = 1, .batch_max = 1024, .queue_max = 3};
    char room[25];
    chat_store *s = open_with_room(&o, room);
    if (!s) {
        return;
    }
    memset(&cs, 0, sizeof cs);
    char id[25];
    for (int i = 0; i < 3; i++) {
        chat__objectid(id);
        CHECK(chat__store_call(s, CHAT_STORE_MESSAGE_INSERT,
                               message(id, room, ALICE, "queued", NULL, 300000 + i), on_insert,
                               NULL) == 0);
    }
    chat__objectid(id);
    CHECK(chat__store_call(s, CHAT_STORE_MESSAGE_INSERT,
                           message(id, room, ALICE, "one too many", NULL, 300010), on_insert,
                           NULL) == CHAT_EUNAVAIL);
    CHECK(chat__store_call(s, CHAT_STORE_ROOM_GET, json_pack("{s:s}", "id", room), on_insert,
                           NULL) == CHAT_EUNAVAIL);
    CHECK(chat__store_refused(s) == 2);
    CHECK(uv_run(&loop, UV_RUN_DEFAULT) == 0);
    CHECK(cs.calls == 3 && cs.fresh == 3);
    chat__objectid(id);
    CHECK(chat__store_call(s, CHAT_STORE_MESSAGE_INSERT,
                           message(id, room, ALICE, "room again", NULL, 300020), on_insert,
                           NULL) == 0);
    CHECK(uv_run(&loop, UV_RUN_DEFAULT) == 0);
    CHECK(cs.calls == 4 && cs.fresh == 4);
    chat__store_close(s);
}

/* The WAL stays bounded under writes that never pause, in the worst case for it: one
 * transaction per insert (about six WAL frames each, 20,000 of them: ~500 MB were no
 * checkpoint to finish), 1024 in flight. Checkpoints run beside the writer, and past its
 * bound (32 MB) the writer folds the WAL back itself; the file's size is looked at after
 * every loop iteration, and /metrics counts the checkpoints. */
/* with the checkpointer thread, and without it (the writer alone, as when the thread
 * cannot start): either way the WAL stays bounded */
static void test_wal_bounded(int no_checkpointer)
{
    enum { TOTAL = 20000, INFLIGHT = 1024 };
    const long long bound = 48LL * 1024 * 1024; /* 32 MB and what one pass may add */
    chat_store_opts o = {.sqlite_synchronous = 1, .batch_max = 1,
                         .no_checkpointer = no_checkpointer};
    char room[25];
    chat_store *s = open_with_room(&o, room);
    if (!s) {
        return;
    }
    char wal[256];
    snprintf(wal, sizeof wal, "%s/chatd.db-wal", datadir);
    long long largest = 0;
    struct stat sb;
    memset(&cs, 0, sizeof cs);
    for (int i = 0; i < TOTAL || chat__store_pending(s) > 0;) {
        while (i < TOTAL && chat__store_pending(s) < INFLIGHT) {
            char id[25], cid[24];
            chat__objectid(id);
            snprintf(cid, sizeof cid, "wal%d-%d", no_checkpointer, i);
            CHECK(chat__store_call(s, CHAT_STORE_MESSAGE_INSERT,
                                   message(id, room, ALICE, "the WAL stays bounded", cid,
                                           400000 + i),
                                   on_insert, NULL) == 0);
            i++;
        }
        uv_run(&loop, UV_RUN_ONCE);
        if (stat(wal, &sb) == 0 && (long long)sb.st_size > largest) {
            largest = (long long)sb.st_size;
        }
    }
    CHECK(cs.fresh == TOTAL);
    chat_store_stats st;
    chat__store_stats(s, &st);
    CHECK(st.checkpoints + st.checkpoints_forced > 0);
    CHECK(largest > 0 && largest <= bound);
    printf("test_store_sqlite: WAL at most %.1f MB over %d single-insert commits, %s "
           "(%llu passive checkpoints, %llu forced)\n",
           (double)largest / 1048576.0, TOTAL,
           no_checkpointer ? "the writer alone" : "checkpointer thread",
           (unsigned long long)st.checkpoints,
           (unsigned long long)st.checkpoints_forced);
    chat__store_close(s);
}

int main(void)
{
    chat_store *s = NULL;
    struct stat sb;

    snprintf(tmpdir, sizeof tmpdir, "/tmp/test_store_XXXXXX");
    if (!mkdtemp(tmpdir) || uv_loop_init(&loop) != 0) {
        perror("setup");
        return 1;
    }
    snprintf(datadir, sizeof datadir, "%s/data", tmpdir);
    sc_be = &chat__store_sqlite;
    sc_target = datadir;

    test_objectid();
    CHECK(chat__store_open(&s, &loop, &chat__store_sqlite, datadir) == 0);
    if (!s) {
        cleanup();
        fprintf(stderr, "cannot open the store\n");
        return 1;
    }
    CHECK(stat(datadir, &sb) == 0 && (sb.st_mode & 0777) == 0700);
    test_users(s);
    test_profiles(s);
    test_rooms(s);
    test_messages(s);
    test_paging(s);
    test_edits(s);
    test_reactions(s);
    test_reaction_cap(s, 1);
    test_reads(s);
    test_notifications(s);
    test_uploads(s);
    test_calls(s);
    char wal[256];
    snprintf(wal, sizeof wal, "%s/chatd.db-wal", datadir);
    CHECK(access(wal, F_OK) == 0); /* WAL mode is on */
    chat__store_close(s);

    test_close_pending();
    test_queue_max();
    test_wal_bounded(0);
    test_wal_bounded(1);
    test_reopen();
    test_migration();
    measure_inserts();

    /* a data dir that cannot be created */
    s = NULL;
    CHECK(chat__store_open(&s, &loop, &chat__store_sqlite, "/proc/nope/data") == CHAT_EUNAVAIL);
    CHECK(s == NULL);

    CHECK(uv_loop_close(&loop) == 0);
    cleanup();
    printf("test_store_sqlite: %d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
