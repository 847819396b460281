/* test_store_sqlite.c: the store scenarios (store_scenarios.h) against the SQLite backend,
 * plus what only SQLite has: the data dir's permissions, WAL mode, an uncreatable dir. */
#include <sys/stat.h>
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
    test_rooms(s);
    test_messages(s);
    test_paging(s);
    test_calls(s);
    char wal[256];
    snprintf(wal, sizeof wal, "%s/chatd.db-wal", datadir);
    CHECK(access(wal, F_OK) == 0); /* WAL mode is on */
    chat__store_close(s);

    test_close_pending();
    test_reopen();

    /* a data dir that cannot be created */
    s = NULL;
    CHECK(chat__store_open(&s, &loop, &chat__store_sqlite, "/proc/nope/data") == CHAT_EUNAVAIL);
    CHECK(s == NULL);

    CHECK(uv_loop_close(&loop) == 0);
    cleanup();
    printf("test_store_sqlite: %d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
