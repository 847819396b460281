/* store_sqlite.c: the embedded store, one SQLite file (<data dir>/chatd.db) in WAL mode.
 *
 * One connection behind one mutex. Calls come from several pool threads at once, but SQLite
 * has a single writer anyway, so more connections would only trade the mutex for
 * SQLITE_BUSY retries on the write-heavy message path. Statements are prepared once at open
 * and reset at the end of every call: a statement left mid-step would hold a read snapshot
 * and keep WAL checkpoints from finishing. */
#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <uv.h>

#include "chat.h"
#include "log.h"
#include "store.h"

#define SQ_FILE "chatd.db"
#define SQ_BUSY_TIMEOUT_MS 5000

/* Mirrors the seed's MongoDB collections and indexes. Emails and usernames are unique
 * case-insensitively (NOCASE folds ASCII only). JSON members are stored as JSON text. */
static const char sq_schema[] =
    "CREATE TABLE IF NOT EXISTS users ("
    " id TEXT NOT NULL PRIMARY KEY,"
    " email TEXT NOT NULL COLLATE NOCASE UNIQUE,"
    " username TEXT NOT NULL COLLATE NOCASE UNIQUE,"
    " password_hash TEXT NOT NULL,"
    " status TEXT NOT NULL DEFAULT 'offline',"
    " last_seen INTEGER,"
    " avatar TEXT,"
    " created_at INTEGER NOT NULL,"
    " display_name TEXT,"
    " status_text TEXT);"
    "CREATE TABLE IF NOT EXISTS rooms ("
    " id TEXT NOT NULL PRIMARY KEY,"
    " name TEXT,"
    " type TEXT NOT NULL,"
    " admin TEXT,"
    " settings TEXT NOT NULL DEFAULT '{}',"
    " created_at INTEGER NOT NULL);"
    /* rowid order is join order: a new rowid is always above every live one */
    "CREATE TABLE IF NOT EXISTS room_participants ("
    " room_id TEXT NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,"
    " user_id TEXT NOT NULL,"
    " joined_at INTEGER NOT NULL,"
    " PRIMARY KEY (room_id, user_id));"
    "CREATE INDEX IF NOT EXISTS room_participants_user ON room_participants(user_id);"
    "CREATE TABLE IF NOT EXISTS messages ("
    " id TEXT NOT NULL PRIMARY KEY,"
    " room_id TEXT NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,"
    " sender_id TEXT NOT NULL,"
    " content TEXT NOT NULL,"
    " attachments TEXT NOT NULL DEFAULT '[]',"
    " reactions TEXT NOT NULL DEFAULT '{}',"
    " client_msg_id TEXT,"
    " created_at INTEGER NOT NULL,"
    " updated_at INTEGER NOT NULL,"
    " deleted INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX IF NOT EXISTS messages_room_time ON messages(room_id, created_at, id);"
    "CREATE TABLE IF NOT EXISTS notifications ("
    " id TEXT NOT NULL PRIMARY KEY,"
    " user_id TEXT NOT NULL,"
    " type TEXT NOT NULL,"
    " data TEXT NOT NULL DEFAULT '{}',"
    " created_at INTEGER NOT NULL,"
    " read INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX IF NOT EXISTS notifications_user_time"
    " ON notifications(user_id, created_at, id);"
    "CREATE TABLE IF NOT EXISTS uploads ("
    " id TEXT NOT NULL PRIMARY KEY,"
    " uploader_id TEXT NOT NULL,"
    " name TEXT NOT NULL,"
    " type TEXT NOT NULL,"
    " size INTEGER NOT NULL,"
    " created_at INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS upload_rooms ("
    " upload_id TEXT NOT NULL REFERENCES uploads(id) ON DELETE CASCADE,"
    " room_id TEXT NOT NULL,"
    " PRIMARY KEY (upload_id, room_id));"
    /* how far each member has read each room: msg_created_at, message_id is the position */
    "CREATE TABLE IF NOT EXISTS read_markers ("
    " room_id TEXT NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,"
    " user_id TEXT NOT NULL,"
    " message_id TEXT NOT NULL,"
    " msg_created_at INTEGER NOT NULL,"
    " at INTEGER NOT NULL,"
    " PRIMARY KEY (room_id, user_id));"
    "CREATE UNIQUE INDEX IF NOT EXISTS messages_client_msg ON messages(sender_id, client_msg_id)"
    " WHERE client_msg_id IS NOT NULL;";

/* What an older file (user_version i + 1) needs to become the current schema: ALTERs for
 * what sq_schema's CREATE TABLE IF NOT EXISTS cannot add to a table that exists. */
static const char *const sq_migrations[] = {
    /* 1 -> 2: profiles */
    "ALTER TABLE users ADD COLUMN display_name TEXT;"
    "ALTER TABLE users ADD COLUMN status_text TEXT;",
    /* 2 -> 3: edits and deletes */
    "ALTER TABLE messages ADD COLUMN deleted INTEGER NOT NULL DEFAULT 0;",
    /* 3 -> 4: no query reads messages by sender alone (a resend's lookup uses the unique
     * (sender_id, client_msg_id) index), and the index cost every insert a B-tree update */
    "DROP INDEX IF EXISTS messages_sender;",
};
#define SQ_SCHEMA_VERSION (1 + (int)(sizeof sq_migrations / sizeof sq_migrations[0]))

#define USER_COLS                                                                            \
    "id, email, username, password_hash, status, last_seen, avatar, created_at, display_name," \
    " status_text"
#define NOTE_COLS "id, user_id, type, data, created_at, read"
#define ROOM_COLS "r.id, r.name, r.type, r.admin, r.settings, r.created_at"
#define MSG_COLS                                                                            \
    "id, room_id, sender_id, content, attachments, reactions, client_msg_id, created_at, " \
    "updated_at, deleted"

/* Every statement, prepared once at open. X(name, sql) */
#define SQ_STMT_MAP(X)                                                                      \
    X(BEGIN, "BEGIN IMMEDIATE")                                                             \
    X(COMMIT, "COMMIT")                                                                     \
    X(ROLLBACK, "ROLLBACK")                                                                 \
    X(PING, "SELECT count(*) FROM sqlite_schema")                                           \
    X(USER_INSERT, "INSERT INTO users (id, email, username, password_hash, status, avatar," \
                   " created_at) VALUES (?1, ?2, ?3, ?4, coalesce(?5, 'offline'), ?6, ?7)")  \
    X(USER_GET, "SELECT " USER_COLS " FROM users WHERE id = ?1")                            \
    X(USER_BY_LOGIN, "SELECT " USER_COLS " FROM users WHERE email = ?1 OR username = ?1"    \
                     " ORDER BY email = ?1 DESC LIMIT 1")                                   \
    X(USER_SET_SEEN, "UPDATE users SET last_seen = ?2, status = coalesce(?3, status)"      \
                     " WHERE id = ?1")                                                      \
    X(USER_UPDATE, "UPDATE users SET"                                                       \
                   " display_name = CASE WHEN ?2 IS NULL THEN display_name ELSE nullif(?2, '') END," \
                   " avatar = CASE WHEN ?3 IS NULL THEN avatar ELSE nullif(?3, '') END,"   \
                   " status_text = CASE WHEN ?4 IS NULL THEN status_text ELSE nullif(?4, '') END" \
                   " WHERE id = ?1")                                                        \
    X(USERS_SEARCH, "SELECT " USER_COLS " FROM users WHERE username >= ?1"                  \
                    " AND username < ?1 || char(127) ORDER BY username LIMIT ?2")            \
    X(MSG_GET, "SELECT " MSG_COLS " FROM messages WHERE id = ?1")                          \
    X(MSG_EDIT, "UPDATE messages SET content = ?2, updated_at = ?3"                         \
                " WHERE id = ?1 AND deleted = 0")                                           \
    X(MSG_DELETE, "UPDATE messages SET deleted = 1, content = '', attachments = '[]',"     \
                  " reactions = '{}', updated_at = ?2 WHERE id = ?1 AND deleted = 0")        \
    X(MSG_REACTIONS, "SELECT reactions FROM messages WHERE id = ?1 AND deleted = 0")        \
    X(MSG_SET_REACTIONS, "UPDATE messages SET reactions = ?2 WHERE id = ?1")                \
    X(READ_UPSERT, "INSERT INTO read_markers (room_id, user_id, message_id, msg_created_at, at)" \
                   " VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (room_id, user_id) DO UPDATE SET" \
                   " message_id = excluded.message_id, msg_created_at = excluded.msg_created_at," \
                   " at = excluded.at WHERE (excluded.msg_created_at, excluded.message_id) >"   \
                   " (read_markers.msg_created_at, read_markers.message_id)")                  \
    X(READ_GET, "SELECT room_id, user_id, message_id, at FROM read_markers"                  \
                " WHERE room_id = ?1 AND user_id = ?2")                                     \
    X(READ_ROOM, "SELECT user_id, message_id, msg_created_at FROM read_markers"              \
                 " WHERE room_id = ?1 ORDER BY rowid")                                      \
    X(UNREAD_AFTER, "SELECT count(*) FROM (SELECT 1 FROM messages WHERE room_id = ?1"        \
                    " AND (created_at, id) > (?2, ?3) AND sender_id <> ?4 AND deleted = 0"   \
                    " LIMIT ?5)")                                                           \
    X(UNREAD_ALL, "SELECT count(*) FROM (SELECT 1 FROM messages WHERE room_id = ?1"          \
                  " AND sender_id <> ?2 AND deleted = 0 LIMIT ?3)")                         \
    X(NOTE_INSERT, "INSERT INTO notifications (id, user_id, type, data, created_at)"       \
                   " VALUES (?1, ?2, ?3, ?4, ?5)")                                          \
    X(NOTE_POSITION, "SELECT created_at, id FROM notifications WHERE id = ?1"              \
                     " AND user_id = ?2")                                                   \
    X(NOTE_PAGE, "SELECT " NOTE_COLS " FROM notifications WHERE user_id = ?1"              \
                 " ORDER BY created_at DESC, id DESC LIMIT ?2")                             \
    X(NOTE_PAGE_BEFORE, "SELECT " NOTE_COLS " FROM notifications WHERE user_id = ?1"       \
                        " AND (created_at, id) < (?2, ?3)"                                  \
                        " ORDER BY created_at DESC, id DESC LIMIT ?4")                      \
    X(NOTE_UNREAD, "SELECT count(*) FROM (SELECT 1 FROM notifications WHERE user_id = ?1"  \
                   " AND read = 0 LIMIT ?2)")                                               \
    X(NOTE_READ_ONE, "UPDATE notifications SET read = 1 WHERE id = ?2 AND user_id = ?1"    \
                     " AND read = 0")                                                       \
    X(NOTE_READ_ALL, "UPDATE notifications SET read = 1 WHERE user_id = ?1 AND read = 0")   \
    X(UPLOAD_INSERT, "INSERT INTO uploads (id, uploader_id, name, type, size, created_at)"  \
                     " VALUES (?1, ?2, ?3, ?4, ?5, ?6)")                                    \
    X(UPLOAD_GET, "SELECT id, uploader_id, name, type, size, created_at FROM uploads"       \
                  " WHERE id = ?1")                                                         \
    X(UPLOAD_ROOMS, "SELECT room_id FROM upload_rooms WHERE upload_id = ?1 ORDER BY rowid") \
    X(UPLOAD_POST, "INSERT INTO upload_rooms (upload_id, room_id) VALUES (?1, ?2)"          \
                   " ON CONFLICT (upload_id, room_id) DO NOTHING")                          \
    X(ROOM_INSERT, "INSERT INTO rooms (id, name, type, admin, settings, created_at)"       \
                   " VALUES (?1, ?2, ?3, ?4, coalesce(?5, '{}'), ?6)")                      \
    X(ROOM_GET, "SELECT " ROOM_COLS " FROM rooms r WHERE r.id = ?1")                        \
    X(ROOM_MEMBERS, "SELECT user_id FROM room_participants WHERE room_id = ?1"             \
                    " ORDER BY rowid")                                                      \
    X(MEMBER_ADD, "INSERT INTO room_participants (room_id, user_id, joined_at)"            \
                  " VALUES (?1, ?2, ?3) ON CONFLICT (room_id, user_id) DO NOTHING")         \
    X(MEMBER_DEL, "DELETE FROM room_participants WHERE room_id = ?1 AND user_id = ?2")     \
    X(ROOMS_LIST, "SELECT " ROOM_COLS " FROM rooms r WHERE ?1 IS NULL OR r.id > ?1"         \
                  " ORDER BY r.id LIMIT ?2")                                                \
    X(USERS_FIND, "SELECT " USER_COLS " FROM users WHERE username LIKE ?1 ESCAPE '!'"       \
                  " OR email LIKE ?1 ESCAPE '!' ORDER BY username LIMIT ?2")                \
    X(ROOMS_FOR_USER, "SELECT " ROOM_COLS " FROM room_participants p"                      \
                      " JOIN rooms r ON r.id = p.room_id WHERE p.user_id = ?1"              \
                      " ORDER BY r.created_at DESC, r.id DESC")                             \
    X(MSG_INSERT, "INSERT OR IGNORE INTO messages (id, room_id, sender_id, content, attachments,"    \
                  " reactions, client_msg_id, created_at, updated_at) VALUES (?1, ?2, ?3,"  \
                  " ?4, coalesce(?5, '[]'), coalesce(?6, '{}'), ?7, ?8, coalesce(?9, ?8))") \
        X(MSG_BY_CLIENT_ID, "SELECT " MSG_COLS " FROM messages"                                \
                        " WHERE sender_id = ?1 AND client_msg_id = ?2")                     \
    X(MSG_POSITION, "SELECT created_at, id FROM messages WHERE id = ?1 AND room_id = ?2")  \
    X(MSG_PAGE, "SELECT " MSG_COLS " FROM messages WHERE room_id = ?1"                     \
                " ORDER BY created_at DESC, id DESC LIMIT ?2")                              \
    X(MSG_PAGE_BEFORE, "SELECT " MSG_COLS " FROM messages WHERE room_id = ?1"              \
                       " AND (created_at, id) < (?2, ?3)"                                   \
                       " ORDER BY created_at DESC, id DESC LIMIT ?4")

enum {
#define SQ_STMT_ENUM(name, sql) SQ_##name,
    SQ_STMT_MAP(SQ_STMT_ENUM)
#undef SQ_STMT_ENUM
    SQ_NSTMTS
};

static const char *const sq_sql[SQ_NSTMTS] = {
#define SQ_STMT_SQL(name, sql) sql,
    SQ_STMT_MAP(SQ_STMT_SQL)
#undef SQ_STMT_SQL
};

_Static_assert(SQ_NSTMTS <= 64, "the used-statement mask is 64 bits");

/* WAL checkpoints. SQLite's own (automatic) checkpoint runs inside the COMMIT that passes
 * 1000 pages, on the writer: every call queued behind it waits for the copy into the
 * database and its two fsyncs. A forced TRUNCATE checkpoint every 1000 calls (this file's
 * earlier answer to a WAL that grew to 1 GB) did the same plus an ftruncate and a regrown
 * file. In the chat mix that was a 5-30 ms wait (up to ~100 ms on a busy disk) every second
 * or so for every message in flight, and under sustained inserts a checkpoint every second
 * batch. So checkpoints run beside the writer instead: the writer's WAL hook wakes a
 * checkpointer thread, which has its own connection and runs PASSIVE checkpoints (they take
 * no lock a writer needs) while the WAL holds SQ_WAL_CHECKPOINT_PAGES or more frames
 * (SQLite's default is 1000: fewer, larger passes copy a page written by many commits once,
 * half the checkpoint CPU under sustained inserts). Once a pass has copied every frame, the
 * writer's next transaction starts the WAL again from its beginning (the file is reused,
 * not grown). Under writes that never pause, a pass never catches the last frame and the
 * WAL would grow without end: past SQ_WAL_FORCE_PAGES frames the writer runs a RESTART
 * checkpoint itself between two calls (commits wait: the price of a bounded file under
 * overload), and journal_size_limit cuts the file back to 32 MB (SQ_WAL_LIMIT_SQL) when the
 * WAL starts again. A reader outside chatd holding an old snapshot can keep any checkpoint
 * from finishing; then the forced one is retried only after another SQ_WAL_FORCE_PAGES
 * frames. */
#define SQ_WAL_CHECKPOINT_PAGES 4096 /* 16 MB: a pass copies each hot page once per 4096 frames */
#define SQ_WAL_PASS_STEP 1024        /* frames between two passes that could not copy every frame */
#define SQ_WAL_FORCE_PAGES 8192                  /* ~32 MB of 4 KB pages */
#define SQ_WAL_LIMIT_SQL "PRAGMA journal_size_limit = 33554432" /* 32 MB */

typedef struct sq_ckpt {
    sqlite3 *db; /* its own connection; NULL: none (the writer checkpoints, as SQLite does) */
    uv_thread_t thread;
    uv_mutex_t lock;
    uv_cond_t wake;
    uv_cond_t idle;
    int want; /* under lock: a pass is asked for */
    int busy; /* under lock: a pass is running (it holds SQLite's checkpoint lock) */
    int stop; /* under lock */
    atomic_uint_fast64_t passes;
    atomic_int next; /* the frame count that asks for the next pass */
} sq_ckpt;

typedef struct sq_store {
    sqlite3 *db;
    uv_mutex_t lock; /* one call at a time on the connection */
    sqlite3_stmt *stmt[SQ_NSTMTS];
    uint64_t used;      /* statements touched by the current call, reset when it ends */
    const char *op;     /* the current call, for the log */
    char conflict[160]; /* message of the last UNIQUE failure, to name the field */
    int wal_pages;      /* frames in the WAL after the last commit (the WAL hook; under lock) */
    int force_at;       /* the writer forces a checkpoint at this many frames (under lock) */
    atomic_uint_fast64_t wal_pages_seen; /* wal_pages, for the stats */
    atomic_uint_fast64_t forced;
    sq_ckpt ck;
} sq_store;

/* ---- errors ---- */

typedef struct sq_errmap {
    int rc; /* an extended code, or a primary code matching all its extended codes */
    int err;
} sq_errmap;

/* First match wins, so extended codes come before their primary code. */
static const sq_errmap sq_errors[] = {
    {SQLITE_CONSTRAINT_UNIQUE, CHAT_ECONFLICT},
    {SQLITE_CONSTRAINT_PRIMARYKEY, CHAT_ECONFLICT},
    {SQLITE_CONSTRAINT_FOREIGNKEY, CHAT_ENOTFOUND}, /* a message or member for no room */
    {SQLITE_CONSTRAINT, CHAT_EINVAL},
    {SQLITE_BUSY, CHAT_EUNAVAIL},
    {SQLITE_LOCKED, CHAT_EUNAVAIL},
    {SQLITE_IOERR, CHAT_EUNAVAIL},
    {SQLITE_FULL, CHAT_EUNAVAIL},
    {SQLITE_CANTOPEN, CHAT_EUNAVAIL},
    {SQLITE_READONLY, CHAT_EUNAVAIL},
    {SQLITE_PROTOCOL, CHAT_EUNAVAIL},
    {SQLITE_NOMEM, CHAT_ENOMEM},
    {SQLITE_TOOBIG, CHAT_ETOOBIG},
};

/* SQLite names the index columns in the message ("UNIQUE constraint failed: users.email");
 * the text has been stable since 3.8 and is the only place that says which index fired. */
static const struct {
    const char *needle;
    const char *field;
} sq_conflict_fields[] = {
    {"users.email", "email"},
    {"users.username", "username"},
    {"client_msg_id", "clientMsgId"},
    {".id", "id"},
};

/* Maps a SQLite failure to CHAT_E*; logs the ones that are not an ordinary answer. */
static int sq_error(sq_store *st, int rc, const char *sql)
{
    int err = CHAT_EINTERNAL;
    const char *msg = st->db ? sqlite3_errmsg(st->db) : sqlite3_errstr(rc);

    for (size_t i = 0; i < sizeof sq_errors / sizeof sq_errors[0]; i++) {
        if (sq_errors[i].rc == rc || sq_errors[i].rc == (rc & 0xff)) {
            err = sq_errors[i].err;
            break;
        }
    }
    if (err == CHAT_ECONFLICT) {
        snprintf(st->conflict, sizeof st->conflict, "%s", msg);
    } else if (err != CHAT_ENOTFOUND) {
        chat__log(CHAT_LOG_ERROR, "store_error",
                  "a SQLite statement failed; the store call reports an error",
                  json_pack("{s:s,s:s?,s:i,s:s,s:s?}", "backend", "sqlite", "op", st->op,
                            "code", rc, "error", msg, "sql", sql));
    }
    return err;
}

static json_t *sq_conflict_result(const sq_store *st)
{
    const char *field = "id";
    for (size_t i = 0; i < sizeof sq_conflict_fields / sizeof sq_conflict_fields[0]; i++) {
        if (strstr(st->conflict, sq_conflict_fields[i].needle)) {
            field = sq_conflict_fields[i].field;
            break;
        }
    }
    return json_pack("{s:s}", "field", field);
}

/* ---- statements ---- */

static sqlite3_stmt *sq_stmt(sq_store *st, int id)
{
    sqlite3_stmt *stmt = st->stmt[id];
    st->used |= UINT64_C(1) << id;
    sqlite3_reset(stmt);
    sqlite3_clear_bindings(stmt);
    return stmt;
}

/* Steps once: 1 for a row, 0 when done, or a CHAT_E* code. */
static int sq_step(sq_store *st, sqlite3_stmt *stmt)
{
    int rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW) {
        return 1;
    }
    if (rc == SQLITE_DONE) {
        return 0;
    }
    return sq_error(st, rc, sqlite3_sql(stmt));
}

/* Runs a statement that returns no rows. */
static int sq_run(sq_store *st, int id)
{
    int rc = sq_step(st, sq_stmt(st, id));
    return rc < 0 ? rc : 0;
}

/* Binds vals[i] to parameter i + 1 by JSON type; NULL binds SQL NULL, and arrays and objects
 * bind as compact JSON text. Strings keep their length so an embedded NUL survives. */
static int sq_bind(sq_store *st, sqlite3_stmt *stmt, json_t *const *vals, int n)
{
    int rc = SQLITE_OK;

    for (int i = 0; i < n && rc == SQLITE_OK; i++) {
        json_t *v = vals[i];
        char *text;
        switch (v ? json_typeof(v) : JSON_NULL) {
        case JSON_STRING:
            if (json_string_length(v) > INT_MAX) {
                rc = SQLITE_TOOBIG;
                break;
            }
            rc = sqlite3_bind_text(stmt, i + 1, json_string_value(v),
                                   (int)json_string_length(v), SQLITE_STATIC);
            break;
        case JSON_INTEGER:
            rc = sqlite3_bind_int64(stmt, i + 1, json_integer_value(v));
            break;
        case JSON_REAL:
            rc = sqlite3_bind_double(stmt, i + 1, json_real_value(v));
            break;
        case JSON_TRUE:
        case JSON_FALSE:
            rc = sqlite3_bind_int(stmt, i + 1, json_is_true(v));
            break;
        case JSON_OBJECT:
        case JSON_ARRAY:
            if (json_is_object(v) ? json_object_size(v) == 0 : json_array_size(v) == 0) {
                /* the usual attachments and reactions: no encoding, no allocation */
                rc = sqlite3_bind_text(stmt, i + 1, json_is_object(v) ? "{}" : "[]", 2,
                                       SQLITE_STATIC);
                break;
            }
            text = json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER);
            if (!text) {
                rc = SQLITE_NOMEM;
                break;
            }
            rc = sqlite3_bind_text(stmt, i + 1, text, -1, SQLITE_TRANSIENT);
            free(text);
            break;
        default:
            rc = sqlite3_bind_null(stmt, i + 1);
            break;
        }
    }
    return rc == SQLITE_OK ? 0 : sq_error(st, rc, sqlite3_sql(stmt));
}

#define NFIELDS(f) ((int)(sizeof(f) / sizeof((f)[0])))

/* ---- rows: each object's members in column order ---- */

enum { C_PLAIN, C_OBJECT, C_ARRAY, C_LATER, C_FLAG };

typedef struct sq_col {
    const char *key;
    int kind; /* C_OBJECT, C_ARRAY: JSON text; C_LATER: no column, filled in by the caller;
               * C_FLAG: an integer, the member true when it is not 0 and absent when it is */
} sq_col;

static const sq_col user_cols[] = {
    {"id", C_PLAIN},     {"email", C_PLAIN},    {"username", C_PLAIN}, {"passwordHash", C_PLAIN},
    {"status", C_PLAIN}, {"lastSeen", C_PLAIN}, {"avatar", C_PLAIN},   {"createdAt", C_PLAIN},
    {"displayName", C_PLAIN}, {"statusText", C_PLAIN},
};
static const sq_col room_cols[] = {
    {"id", C_PLAIN},    {"name", C_PLAIN},     {"type", C_PLAIN},      {"participants", C_LATER},
    {"admin", C_PLAIN}, {"settings", C_OBJECT}, {"createdAt", C_PLAIN},
};
static const sq_col msg_cols[] = {
    {"id", C_PLAIN},          {"roomId", C_PLAIN},      {"senderId", C_PLAIN},
    {"content", C_PLAIN},     {"attachments", C_ARRAY}, {"reactions", C_OBJECT},
    {"clientMsgId", C_PLAIN}, {"createdAt", C_PLAIN},   {"updatedAt", C_PLAIN},
    {"deleted", C_FLAG},
};

static const sq_col note_cols[] = {
    {"id", C_PLAIN},      {"userId", C_PLAIN},    {"type", C_PLAIN},
    {"data", C_OBJECT},   {"createdAt", C_PLAIN}, {"read", C_LATER},
};

static json_t *sq_column(sqlite3_stmt *stmt, int i, int kind)
{
    int type = sqlite3_column_type(stmt, i);
    if (type == SQLITE_NULL) {
        return kind == C_OBJECT ? json_object() : kind == C_ARRAY ? json_array() : json_null();
    }
    if (type == SQLITE_INTEGER && kind == C_PLAIN) {
        return json_integer(sqlite3_column_int64(stmt, i));
    }
    if (type != SQLITE_TEXT) {
        return NULL; /* the schema stores nothing else: the row is corrupt */
    }
    const char *text = (const char *)sqlite3_column_text(stmt, i);
    size_t len = (size_t)sqlite3_column_bytes(stmt, i);
    if (!text) {
        return NULL;
    }
    if (kind == C_PLAIN) {
        return json_stringn(text, len);
    }
    json_t *v = json_loadb(text, len, 0, NULL);
    if (v && json_typeof(v) != (kind == C_OBJECT ? JSON_OBJECT : JSON_ARRAY)) {
        json_decref(v);
        v = NULL;
    }
    return v;
}

/* The current row as an object; NULL on out-of-memory or a corrupt JSON column. */
static json_t *sq_row(sq_store *st, sqlite3_stmt *stmt, const sq_col *cols, int n)
{
    json_t *obj = json_object();
    int col = 0;

    if (!obj) {
        goto fail;
    }
    for (int i = 0; i < n; i++) {
        if (cols[i].kind == C_FLAG) {
            if (sqlite3_column_int64(stmt, col++) != 0 &&
                json_object_set_new(obj, cols[i].key, json_true())) {
                goto fail;
            }
            continue;
        }
        json_t *v = cols[i].kind == C_LATER ? json_null() : sq_column(stmt, col++, cols[i].kind);
        if (!v || json_object_set_new(obj, cols[i].key, v) != 0) {
            chat__log(CHAT_LOG_ERROR, "store_error",
                      "a stored row could not be turned into JSON (out of memory or a "
                      "corrupt JSON column)",
                      json_pack("{s:s,s:s?,s:s}", "backend", "sqlite", "op", st->op, "column",
                                cols[i].key));
            goto fail;
        }
    }
    return obj;
fail:
    json_decref(obj);
    return NULL;
}

/* The room on the current row of stmt (ROOM_COLS), with its participants. */
static int sq_room_row(sq_store *st, sqlite3_stmt *stmt, json_t **out)
{
    json_t *room = NULL;
    json_t *members = NULL;
    int err = CHAT_ENOMEM;
    int rc;

    room = sq_row(st, stmt, room_cols, NFIELDS(room_cols));
    members = json_array();
    if (!room || !members) {
        goto fail;
    }
    json_t *id = json_object_get(room, "id");
    sqlite3_stmt *m = sq_stmt(st, SQ_ROOM_MEMBERS);
    err = sq_bind(st, m, &id, 1);
    if (err) {
        goto fail;
    }
    while ((rc = sq_step(st, m)) == 1) {
        json_t *uid = sq_column(m, 0, C_PLAIN);
        if (!uid || json_array_append_new(members, uid) != 0) {
            err = CHAT_ENOMEM;
            goto fail;
        }
    }
    if (rc < 0) {
        err = rc;
        goto fail;
    }
    err = CHAT_ENOMEM;
    if (json_object_set_new(room, "participants", members) != 0) {
        members = NULL; /* set_new consumed it */
        goto fail;
    }
    *out = room;
    return 0;
fail:
    json_decref(members);
    json_decref(room);
    return err;
}

/* Runs a one-row lookup with vals bound and builds its object: 0, CHAT_ENOTFOUND or an
 * error. With cols NULL it builds a room (ROOM_COLS plus participants). */
static int sq_get(sq_store *st, int sid, json_t *const *vals, int nvals, const sq_col *cols,
                  int ncols, json_t **out)
{
    sqlite3_stmt *stmt = sq_stmt(st, sid);
    int err = sq_bind(st, stmt, vals, nvals);
    if (err) {
        return err;
    }
    int rc = sq_step(st, stmt);
    if (rc <= 0) {
        return rc < 0 ? rc : CHAT_ENOTFOUND;
    }
    if (!cols) {
        return sq_room_row(st, stmt, out);
    }
    *out = sq_row(st, stmt, cols, ncols);
    return *out ? 0 : CHAT_EINTERNAL;
}

/* ---- operations ---- */

static int op_user_create(sq_store *st, const chat_store_req *q, json_t **result)
{
    json_t *const *v = q->v;
    sqlite3_stmt *stmt = sq_stmt(st, SQ_USER_INSERT);
    int err = sq_bind(st, stmt, v, CHAT_U_CREATED + 1);
    if (!err) {
        err = sq_step(st, stmt);
    }
    if (err) {
        return err;
    }
    return sq_get(st, SQ_USER_GET, v, 1, user_cols, NFIELDS(user_cols), result);
}

static int op_user_by_login(sq_store *st, const chat_store_req *q, json_t **result)
{
    return sq_get(st, SQ_USER_BY_LOGIN, q->v, 1, user_cols, NFIELDS(user_cols), result);
}

static int op_user_get(sq_store *st, const chat_store_req *q, json_t **result)
{
    return sq_get(st, SQ_USER_GET, q->v, 1, user_cols, NFIELDS(user_cols), result);
}

static int op_user_set_seen(sq_store *st, const chat_store_req *q, json_t **result)
{
    sqlite3_stmt *stmt = sq_stmt(st, SQ_USER_SET_SEEN);
    int err = sq_bind(st, stmt, q->v, CHAT_SEEN_STATUS + 1);
    if (!err) {
        err = sq_step(st, stmt);
    }
    if (err) {
        return err;
    }
    if (sqlite3_changes(st->db) == 0) {
        return CHAT_ENOTFOUND;
    }
    *result = json_null();
    return 0;
}

static int op_user_update(sq_store *st, const chat_store_req *q, json_t **result)
{
    sqlite3_stmt *stmt = sq_stmt(st, SQ_USER_UPDATE);
    int err = sq_bind(st, stmt, q->v, CHAT_UU_STATUS_TEXT + 1);
    if (!err) {
        err = sq_step(st, stmt);
    }
    if (err) {
        return err;
    }
    if (sqlite3_changes(st->db) == 0) {
        return CHAT_ENOTFOUND;
    }
    return sq_get(st, SQ_USER_GET, q->v, 1, user_cols, NFIELDS(user_cols), result);
}

static int op_users_get(sq_store *st, const chat_store_req *q, json_t **result)
{
    json_t *users = json_array();
    size_t i;
    json_t *id;
    if (!users) {
        return CHAT_ENOMEM;
    }
    json_array_foreach (q->ids, i, id) {
        json_t *u = NULL;
        int err = sq_get(st, SQ_USER_GET, &id, 1, user_cols, NFIELDS(user_cols), &u);
        if (err == CHAT_ENOTFOUND) {
            continue;
        }
        if (err || json_array_append_new(users, u)) {
            json_decref(users);
            return err ? err : CHAT_ENOMEM;
        }
    }
    *result = users;
    return 0;
}

static int op_users_search(sq_store *st, const chat_store_req *q, json_t **result)
{
    json_t *users = json_array();
    int rc;
    int err = CHAT_ENOMEM;
    if (!users) {
        return err;
    }
    sqlite3_stmt *stmt = sq_stmt(st, SQ_USERS_SEARCH);
    if ((err = sq_bind(st, stmt, q->v, 1))) {
        goto fail;
    }
    if (sqlite3_bind_int64(stmt, 2, q->limit) != SQLITE_OK) {
        err = sq_error(st, sqlite3_errcode(st->db), sqlite3_sql(stmt));
        goto fail;
    }
    while ((rc = sq_step(st, stmt)) == 1) {
        json_t *u = sq_row(st, stmt, user_cols, NFIELDS(user_cols));
        if (!u || json_array_append_new(users, u)) {
            err = u ? CHAT_ENOMEM : CHAT_EINTERNAL;
            goto fail;
        }
    }
    if (rc < 0) {
        err = rc;
        goto fail;
    }
    *result = users;
    return 0;
fail:
    json_decref(users);
    return err;
}

static int op_message_get(sq_store *st, const chat_store_req *q, json_t **result)
{
    return sq_get(st, SQ_MSG_GET, q->v, 1, msg_cols, NFIELDS(msg_cols), result);
}

/* An UPDATE of one live message (nvals bound), then the message as it is now. */
static int sq_message_change(sq_store *st, int sid, const chat_store_req *q, int nvals,
                             json_t **result)
{
    sqlite3_stmt *stmt = sq_stmt(st, sid);
    int err = sq_bind(st, stmt, q->v, nvals);
    if (!err) {
        err = sq_step(st, stmt);
    }
    if (err) {
        return err;
    }
    if (sqlite3_changes(st->db) == 0) {
        return CHAT_ENOTFOUND;
    }
    return sq_get(st, SQ_MSG_GET, q->v, 1, msg_cols, NFIELDS(msg_cols), result);
}

static int op_message_edit(sq_store *st, const chat_store_req *q, json_t **result)
{
    return sq_message_change(st, SQ_MSG_EDIT, q, CHAT_ME_UPDATED + 1, result);
}

static int op_message_delete(sq_store *st, const chat_store_req *q, json_t **result)
{
    return sq_message_change(st, SQ_MSG_DELETE, q, CHAT_MD_UPDATED + 1, result);
}

/* Read, change and write the reactions in one transaction (the write lock is taken first, so
 * two reactions never lose each other, and max holds: the count is read under the lock). */
static int op_message_react(sq_store *st, const chat_store_req *q, json_t **result)
{
    json_t *const *v = q->v;
    json_t *reactions = NULL;
    int err;
    static const sq_col cols[] = {{"reactions", C_OBJECT}};

    if ((err = sq_run(st, SQ_BEGIN)) ||
        (err = sq_get(st, SQ_MSG_REACTIONS, v, 1, cols, 1, &reactions))) {
        goto done;
    }
    const char *emoji = json_string_value(v[CHAT_MR_EMOJI]);
    json_t *obj = json_object_get(reactions, "reactions");
    json_t *users = json_object_get(obj, emoji);
    if (users && !json_is_array(users)) {
        users = NULL; /* not ours: replaced */
        json_object_del(obj, emoji);
    }
    int at = -1;
    size_t i;
    json_t *u;
    json_array_foreach (users, i, u) {
        if (json_equal(u, v[CHAT_MR_USER])) {
            at = (int)i;
        }
    }
    if (json_is_true(v[CHAT_MR_ON]) && !users && json_integer_value(v[CHAT_MR_MAX]) > 0 &&
        json_object_size(obj) >= (size_t)json_integer_value(v[CHAT_MR_MAX])) {
        err = CHAT_ECONFLICT;
        goto done;
    }
    err = CHAT_ENOMEM;
    if (json_is_true(v[CHAT_MR_ON]) && at < 0) {
        if (!users && json_object_set_new(obj, emoji, users = json_array())) {
            goto done;
        }
        if (json_array_append(users, v[CHAT_MR_USER])) {
            goto done;
        }
    } else if (!json_is_true(v[CHAT_MR_ON]) && at >= 0) {
        json_array_remove(users, (size_t)at);
        if (!json_array_size(users)) {
            json_object_del(obj, emoji);
        }
    }
    json_t *set[2] = {v[CHAT_MR_ID], obj};
    sqlite3_stmt *stmt = sq_stmt(st, SQ_MSG_SET_REACTIONS);
    if ((err = sq_bind(st, stmt, set, 2)) || (err = sq_step(st, stmt)) ||
        (err = sq_get(st, SQ_MSG_GET, v, 1, msg_cols, NFIELDS(msg_cols), result))) {
        goto done;
    }
    err = sq_run(st, SQ_COMMIT);
done:
    json_decref(reactions);
    return err; /* sq_exec rolls back and drops *result on failure */
}

static int op_read_set(sq_store *st, const chat_store_req *q, json_t **result)
{
    json_t *const *v = q->v;
    json_t *pos = NULL;
    int err;
    static const sq_col pos_cols[] = {{"createdAt", C_PLAIN}, {"id", C_PLAIN}};
    static const sq_col read_cols[] = {
        {"roomId", C_PLAIN}, {"userId", C_PLAIN}, {"messageId", C_PLAIN}, {"at", C_PLAIN}};

    json_t *key[2] = {v[CHAT_RD_MSG], v[CHAT_RD_ROOM]};
    if ((err = sq_run(st, SQ_BEGIN)) ||
        (err = sq_get(st, SQ_MSG_POSITION, key, 2, pos_cols, 2, &pos))) {
        goto done;
    }
    json_t *row[5] = {v[CHAT_RD_ROOM], v[CHAT_RD_USER], v[CHAT_RD_MSG],
                      json_object_get(pos, "createdAt"), v[CHAT_RD_AT]};
    sqlite3_stmt *stmt = sq_stmt(st, SQ_READ_UPSERT);
    if ((err = sq_bind(st, stmt, row, 5)) || (err = sq_step(st, stmt))) {
        goto done;
    }
    int moved = sqlite3_changes(st->db) > 0;
    if ((err = sq_get(st, SQ_READ_GET, v, 2, read_cols, 4, result))) {
        goto done;
    }
    if (json_object_set_new(*result, "moved", json_boolean(moved))) {
        err = CHAT_ENOMEM;
        goto done;
    }
    err = sq_run(st, SQ_COMMIT);
done:
    json_decref(pos);
    return err;
}

/* One count query; *n the count. */
static int sq_count(sq_store *st, sqlite3_stmt *stmt, json_int_t *n)
{
    int rc = sq_step(st, stmt);
    if (rc < 0) {
        return rc;
    }
    *n = rc == 1 ? sqlite3_column_int64(stmt, 0) : 0;
    return 0;
}

static int op_read_state(sq_store *st, const chat_store_req *q, json_t **result)
{
    json_t *user = q->v[0];
    json_t *out = json_object();
    size_t i;
    json_t *room;
    int err = 0;

    if (!out) {
        return CHAT_ENOMEM;
    }
    json_array_foreach (q->ids, i, room) {
        json_t *reads = json_object();
        json_t *mine = NULL; /* [createdAt, id] of the user's marker */
        json_int_t unread = 0;
        int rc;
        sqlite3_stmt *stmt = sq_stmt(st, SQ_READ_ROOM);
        if (!reads) {
            err = CHAT_ENOMEM;
            break;
        }
        if (!(err = sq_bind(st, stmt, &room, 1))) {
            while ((rc = sq_step(st, stmt)) == 1) {
                const char *uid = (const char *)sqlite3_column_text(stmt, 0);
                json_t *mid = sq_column(stmt, 1, C_PLAIN);
                if (!uid || !mid || json_object_set_new(reads, uid, mid)) {
                    err = CHAT_ENOMEM;
                    break;
                }
                if (strcmp(uid, json_string_value(user)) == 0) {
                    json_decref(mine);
                    mine = json_pack("[I,O]", (json_int_t)sqlite3_column_int64(stmt, 2), mid);
                }
            }
            if (!err && rc < 0) {
                err = rc;
            }
        }
        if (!err) {
            if (mine) {
                json_t *vals[4] = {room, json_array_get(mine, 0), json_array_get(mine, 1), user};
                stmt = sq_stmt(st, SQ_UNREAD_AFTER);
                err = sq_bind(st, stmt, vals, 4);
                if (!err && sqlite3_bind_int64(stmt, 5, CHAT_STORE_UNREAD_MAX) != SQLITE_OK) {
                    err = CHAT_EINTERNAL;
                }
            } else {
                json_t *vals[2] = {room, user};
                stmt = sq_stmt(st, SQ_UNREAD_ALL);
                err = sq_bind(st, stmt, vals, 2);
                if (!err && sqlite3_bind_int64(stmt, 3, CHAT_STORE_UNREAD_MAX) != SQLITE_OK) {
                    err = CHAT_EINTERNAL;
                }
            }
            if (!err) {
                err = sq_count(st, stmt, &unread);
            }
        }
        if (!err && json_object_set_new(out, json_string_value(room),
                                        json_pack("{s:I,s:O,s:O}", "unread", unread, "lastReadId",
                                                  mine ? json_array_get(mine, 1) : json_null(),
                                                  "reads", reads))) {
            err = CHAT_ENOMEM;
        }
        json_decref(mine);
        json_decref(reads);
        if (err) {
            break;
        }
    }
    if (err) {
        json_decref(out);
        return err;
    }
    *result = out;
    return 0;
}

static int op_notify_insert(sq_store *st, const chat_store_req *q, json_t **result)
{
    json_t *const *v = q->v;
    sqlite3_stmt *stmt = sq_stmt(st, SQ_NOTE_INSERT);
    int err = sq_bind(st, stmt, v, CHAT_N_CREATED + 1);
    if (!err) {
        err = sq_step(st, stmt);
    }
    if (err) {
        return err;
    }
    *result = json_pack("{s:O,s:O,s:O,s:O,s:O,s:b}", "id", v[CHAT_N_ID], "userId", v[CHAT_N_USER],
                        "type", v[CHAT_N_TYPE], "data", v[CHAT_N_DATA], "createdAt",
                        v[CHAT_N_CREATED], "read", 0);
    return *result ? 0 : CHAT_ENOMEM;
}

/* The rows of a notifications page; "read" is the last column, an integer. */
static int sq_note_rows(sq_store *st, sqlite3_stmt *stmt, json_int_t limit, json_t *into,
                        int *more)
{
    int rc;
    json_int_t n = 0;
    while ((rc = sq_step(st, stmt)) == 1) {
        if (n == limit) {
            *more = 1;
            break;
        }
        json_t *row = sq_row(st, stmt, note_cols, NFIELDS(note_cols));
        if (!row || json_object_set_new(row, "read", json_boolean(sqlite3_column_int64(stmt, 5))) ||
            json_array_append_new(into, row)) {
            return row ? CHAT_ENOMEM : CHAT_EINTERNAL;
        }
        n++;
    }
    return rc < 0 ? rc : 0;
}

static int op_notify_list(sq_store *st, const chat_store_req *q, json_t **result)
{
    json_t *const *v = q->v;
    json_t *notes = json_array();
    json_t *pos = NULL;
    json_int_t unread = 0;
    int more = 0;
    int err = CHAT_ENOMEM;
    sqlite3_stmt *stmt;

    if (!notes) {
        return err;
    }
    if (v[CHAT_NL_BEFORE]) {
        static const sq_col pos_cols[] = {{"createdAt", C_PLAIN}, {"id", C_PLAIN}};
        json_t *key[2] = {v[CHAT_NL_BEFORE], v[CHAT_NL_USER]};
        if ((err = sq_get(st, SQ_NOTE_POSITION, key, 2, pos_cols, 2, &pos))) {
            goto done;
        }
        json_t *page[3] = {v[CHAT_NL_USER], json_object_get(pos, "createdAt"), v[CHAT_NL_BEFORE]};
        stmt = sq_stmt(st, SQ_NOTE_PAGE_BEFORE);
        err = sq_bind(st, stmt, page, 3);
    } else {
        stmt = sq_stmt(st, SQ_NOTE_PAGE);
        err = sq_bind(st, stmt, v, 1);
    }
    if (!err && sqlite3_bind_int64(stmt, v[CHAT_NL_BEFORE] ? 4 : 2, q->limit + 1) != SQLITE_OK) {
        err = CHAT_EINTERNAL;
    }
    if (err || (err = sq_note_rows(st, stmt, q->limit, notes, &more))) {
        goto done;
    }
    stmt = sq_stmt(st, SQ_NOTE_UNREAD);
    if ((err = sq_bind(st, stmt, v, 1))) {
        goto done;
    }
    if (sqlite3_bind_int64(stmt, 2, CHAT_STORE_UNREAD_MAX) != SQLITE_OK) {
        err = CHAT_EINTERNAL;
        goto done;
    }
    if ((err = sq_count(st, stmt, &unread))) {
        goto done;
    }
    json_t *last = json_array_get(notes, json_array_size(notes) - 1);
    *result = json_pack("{s:O,s:O,s:I}", "notifications", notes, "nextBefore",
                        more ? json_object_get(last, "id") : json_null(), "unread", unread);
    err = *result ? 0 : CHAT_ENOMEM;
done:
    json_decref(pos);
    json_decref(notes);
    return err;
}

static int op_notify_read(sq_store *st, const chat_store_req *q, json_t **result)
{
    json_t *user = q->v[0];
    json_int_t updated = 0;
    int err;

    if (!q->ids) {
        sqlite3_stmt *stmt = sq_stmt(st, SQ_NOTE_READ_ALL);
        if ((err = sq_bind(st, stmt, &user, 1)) || (err = sq_step(st, stmt))) {
            return err;
        }
        updated = sqlite3_changes(st->db);
    } else {
        size_t i;
        json_t *id;
        if ((err = sq_run(st, SQ_BEGIN))) {
            return err;
        }
        json_array_foreach (q->ids, i, id) {
            json_t *vals[2] = {user, id};
            sqlite3_stmt *stmt = sq_stmt(st, SQ_NOTE_READ_ONE);
            if ((err = sq_bind(st, stmt, vals, 2)) || (err = sq_step(st, stmt))) {
                return err;
            }
            updated += sqlite3_changes(st->db);
        }
        if ((err = sq_run(st, SQ_COMMIT))) {
            return err;
        }
    }
    *result = json_pack("{s:I}", "updated", updated);
    return *result ? 0 : CHAT_ENOMEM;
}

static const sq_col upload_cols[] = {
    {"id", C_PLAIN},   {"uploaderId", C_PLAIN}, {"name", C_PLAIN},
    {"type", C_PLAIN}, {"size", C_PLAIN},       {"createdAt", C_PLAIN},
};

/* The upload with its rooms. */
static int sq_upload(sq_store *st, json_t *id, json_t **result)
{
    json_t *up = NULL;
    json_t *rooms = json_array();
    int rc;
    int err = rooms ? sq_get(st, SQ_UPLOAD_GET, &id, 1, upload_cols, NFIELDS(upload_cols), &up)
                    : CHAT_ENOMEM;
    if (err) {
        goto fail;
    }
    sqlite3_stmt *stmt = sq_stmt(st, SQ_UPLOAD_ROOMS);
    if ((err = sq_bind(st, stmt, &id, 1))) {
        goto fail;
    }
    while ((rc = sq_step(st, stmt)) == 1) {
        json_t *r = sq_column(stmt, 0, C_PLAIN);
        if (!r || json_array_append_new(rooms, r)) {
            err = CHAT_ENOMEM;
            goto fail;
        }
    }
    if (rc < 0) {
        err = rc;
        goto fail;
    }
    json_object_set_new(up, "rooms", rooms);
    *result = up;
    return 0;
fail:
    json_decref(rooms);
    json_decref(up);
    return err;
}

static int op_upload_insert(sq_store *st, const chat_store_req *q, json_t **result)
{
    sqlite3_stmt *stmt = sq_stmt(st, SQ_UPLOAD_INSERT);
    int err = sq_bind(st, stmt, q->v, CHAT_UP_CREATED + 1);
    if (!err) {
        err = sq_step(st, stmt);
    }
    return err ? err : sq_upload(st, q->v[CHAT_UP_ID], result);
}

static int op_upload_get(sq_store *st, const chat_store_req *q, json_t **result)
{
    return sq_upload(st, q->v[0], result);
}

static int op_upload_post(sq_store *st, const chat_store_req *q, json_t **result)
{
    int err = sq_run(st, SQ_BEGIN);
    json_t *up = NULL;
    if (err || (err = sq_upload(st, q->v[0], &up))) {
        return err;
    }
    json_decref(up);
    sqlite3_stmt *stmt = sq_stmt(st, SQ_UPLOAD_POST);
    if ((err = sq_bind(st, stmt, q->v, 2)) || (err = sq_step(st, stmt)) ||
        (err = sq_upload(st, q->v[0], result))) {
        return err;
    }
    return sq_run(st, SQ_COMMIT);
}

static int sq_add_member(sq_store *st, json_t *room_id, json_t *user_id, int64_t joined_at)
{
    json_t *v[2] = {room_id, user_id};
    sqlite3_stmt *stmt = sq_stmt(st, SQ_MEMBER_ADD);
    int err = sq_bind(st, stmt, v, 2);
    if (!err && sqlite3_bind_int64(stmt, 3, joined_at) != SQLITE_OK) {
        err = sq_error(st, sqlite3_errcode(st->db), sqlite3_sql(stmt));
    }
    if (!err) {
        err = sq_step(st, stmt);
    }
    return err;
}

static int op_room_create(sq_store *st, const chat_store_req *q, json_t **result)
{
    json_t *const *v = q->v;
    size_t i;
    json_t *uid;
    int err;

    int64_t created = json_integer_value(v[CHAT_R_CREATED]);
    if ((err = sq_run(st, SQ_BEGIN))) {
        return err;
    }
    sqlite3_stmt *stmt = sq_stmt(st, SQ_ROOM_INSERT);
    if ((err = sq_bind(st, stmt, v, CHAT_R_CREATED + 1)) || (err = sq_step(st, stmt))) {
        return err; /* sq_exec rolls the transaction back */
    }
    /* the first participants joined when the room was made; rowid keeps their order */
    json_array_foreach(q->participants, i, uid) {
        if ((err = sq_add_member(st, v[CHAT_R_ID], uid, created))) {
            return err;
        }
    }
    if ((err = sq_get(st, SQ_ROOM_GET, v, 1, NULL, 0, result)) || (err = sq_run(st, SQ_COMMIT))) {
        json_decref(*result);
        *result = NULL;
        return err;
    }
    return 0;
}

static int op_room_get(sq_store *st, const chat_store_req *q, json_t **result)
{
    return sq_get(st, SQ_ROOM_GET, q->v, 1, NULL, 0, result);
}

/* Add or remove one member; the room must exist. Both are idempotent. */
static int sq_change_member(sq_store *st, const chat_store_req *q, int add, json_t **result)
{
    json_t *const *v = q->v;
    json_t *room = NULL;
    int err;

    if ((err = sq_run(st, SQ_BEGIN))) {
        goto fail;
    }
    sqlite3_stmt *stmt = sq_stmt(st, SQ_ROOM_GET);
    if ((err = sq_bind(st, stmt, v, 1)) || (err = sq_step(st, stmt)) < 0) {
        goto fail;
    }
    if (err == 0) {
        err = CHAT_ENOTFOUND;
        goto fail;
    }
    if (add) {
        err = sq_add_member(st, v[0], v[1], chat__now_ms());
    } else {
        stmt = sq_stmt(st, SQ_MEMBER_DEL);
        if (!(err = sq_bind(st, stmt, v, 2))) {
            err = sq_step(st, stmt);
        }
    }
    if (err || (err = sq_get(st, SQ_ROOM_GET, v, 1, NULL, 0, &room)) ||
        (err = sq_run(st, SQ_COMMIT))) {
        goto fail;
    }
    *result = room;
    return 0;
fail:
    json_decref(room);
    return err;
}

static int op_room_add_member(sq_store *st, const chat_store_req *q, json_t **result)
{
    return sq_change_member(st, q, 1, result);
}

static int op_room_remove_member(sq_store *st, const chat_store_req *q, json_t **result)
{
    return sq_change_member(st, q, 0, result);
}

static int op_rooms_for_user(sq_store *st, const chat_store_req *q, json_t **result)
{
    json_t *const *v = q->v;
    json_t *rooms = NULL;
    int err = CHAT_ENOMEM;
    int rc;

    rooms = json_array();
    if (!rooms) {
        goto fail;
    }
    sqlite3_stmt *stmt = sq_stmt(st, SQ_ROOMS_FOR_USER);
    if ((err = sq_bind(st, stmt, v, 1))) {
        goto fail;
    }
    while ((rc = sq_step(st, stmt)) == 1) {
        json_t *room = NULL;
        if ((err = sq_room_row(st, stmt, &room))) {
            goto fail;
        }
        if (json_array_append_new(rooms, room) != 0) {
            err = CHAT_ENOMEM;
            goto fail;
        }
    }
    if (rc < 0) {
        err = rc;
        goto fail;
    }
    *result = rooms;
    return 0;
fail:
    json_decref(rooms);
    return err;
}

/* The admin API's room list: rooms above v[0] in id order. */
static int op_rooms_list(sq_store *st, const chat_store_req *q, json_t **result)
{
    json_t *rooms = json_array();
    int err = rooms ? 0 : CHAT_ENOMEM;
    int rc = 0;
    sqlite3_stmt *stmt = sq_stmt(st, SQ_ROOMS_LIST);
    if (!err) {
        err = sq_bind(st, stmt, q->v, 2);
    }
    while (!err && (rc = sq_step(st, stmt)) == 1) {
        json_t *room = NULL;
        if (!(err = sq_room_row(st, stmt, &room)) && json_array_append_new(rooms, room)) {
            err = CHAT_ENOMEM;
        }
    }
    if (!err && rc < 0) {
        err = rc;
    }
    if (err) {
        json_decref(rooms);
        return err;
    }
    *result = rooms;
    return 0;
}

/* The admin API's user search: LIKE 'prefix%' (ASCII case-insensitive), with the pattern's
 * own % and _ escaped. */
static int op_users_find(sq_store *st, const chat_store_req *q, json_t **result)
{
    const char *prefix = json_string_value(q->v[0]);
    size_t n = json_string_length(q->v[0]);
    char *pattern = malloc(2 * n + 2);
    json_t *users = json_array();
    if (!pattern || !users) {
        free(pattern);
        json_decref(users);
        return CHAT_ENOMEM;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (prefix[i] == '%' || prefix[i] == '_' || prefix[i] == '!') {
            pattern[k++] = '!';
        }
        pattern[k++] = prefix[i];
    }
    pattern[k++] = '%';
    pattern[k] = 0;
    json_t *v[2] = {json_stringn_nocheck(pattern, k), q->v[1]};
    free(pattern);
    sqlite3_stmt *stmt = sq_stmt(st, SQ_USERS_FIND);
    int err = v[0] ? sq_bind(st, stmt, v, 2) : CHAT_ENOMEM;
    int rc = 0;
    while (!err && (rc = sq_step(st, stmt)) == 1) {
        json_t *user = sq_row(st, stmt, user_cols, NFIELDS(user_cols));
        if (!user || json_array_append_new(users, user)) {
            err = CHAT_ENOMEM;
        }
    }
    if (!err && rc < 0) {
        err = rc;
    }
    sqlite3_reset(stmt); /* it bound v[0], which goes now */
    json_decref(v[0]);
    if (err) {
        json_decref(users);
        return err;
    }
    *result = users;
    return 0;
}

/* One insert inside the caller's transaction: the stored message (built from the request:
 * nothing is read back) or, for a clientMsgId this sender used before, the stored one with
 * duplicate true. The INSERT ignores a taken unique key, so the common case costs one
 * statement; only when it stored nothing does the clientMsgId lookup run (a resend), and
 * when that finds nothing the id was taken. A failed INSERT (a room that does not exist)
 * undoes only itself: the transaction stays open for the others of a batch (unless SQLite
 * ended it: the caller checks autocommit). */
static int sq_insert_one(sq_store *st, const chat_store_req *q, json_t **result)
{
    json_t *const *v = q->v;
    json_t *msg = NULL;
    int duplicate = 0;
    sqlite3_stmt *stmt = sq_stmt(st, SQ_MSG_INSERT);
    int err = sq_bind(st, stmt, v, CHAT_M_UPDATED + 1);

    if (!err) {
        err = sq_step(st, stmt);
    }
    sqlite3_reset(stmt); /* ends the statement now: the next one of a batch may follow */
    if (err) {
        return err;
    }
    if (sqlite3_changes(st->db) == 0) {
        /* A client retrying after a lost ack sends the same clientMsgId: answer with what
         * is stored instead of a second copy. */
        if (!v[CHAT_M_CLIENT]) {
            return CHAT_ECONFLICT; /* the id is taken; conflict text empty: field "id" */
        }
        json_t *key[2] = {v[CHAT_M_SENDER], v[CHAT_M_CLIENT]};
        err = sq_get(st, SQ_MSG_BY_CLIENT_ID, key, 2, msg_cols, NFIELDS(msg_cols), &msg);
        if (err) {
            return err == CHAT_ENOTFOUND ? CHAT_ECONFLICT : err;
        }
        duplicate = 1;
    } else {
        msg = chat__store_message(q);
        if (!msg) {
            return CHAT_ENOMEM;
        }
    }
    *result = json_pack("{s:o,s:b}", "message", msg, "duplicate", duplicate);
    return *result ? 0 : CHAT_ENOMEM; /* the "o" format took msg, even on failure */
}

static int op_message_insert(sq_store *st, const chat_store_req *q, json_t **result)
{
    int err = sq_run(st, SQ_BEGIN);
    if (!err) {
        err = sq_insert_one(st, q, result);
    }
    if (!err) {
        err = sq_run(st, SQ_COMMIT);
    }
    return err; /* sq_exec rolls back and drops *result on failure */
}

static int op_messages_page(sq_store *st, const chat_store_req *q, json_t **result)
{
    json_t *const *v = q->v;
    json_t *msgs = NULL;
    json_t *before = NULL; /* the position (created_at, id) of the before message */
    json_t *out = NULL;
    json_int_t limit = q->limit;
    int err = CHAT_ENOMEM;
    int rc;
    sqlite3_stmt *stmt;

    msgs = json_array();
    if (!msgs) {
        goto fail;
    }
    if (v[1]) {
        json_t *key[2] = {v[1], v[0]};
        static const sq_col pos_cols[] = {{"createdAt", C_PLAIN}, {"id", C_PLAIN}};
        if ((err = sq_get(st, SQ_MSG_POSITION, key, 2, pos_cols, 2, &before))) {
            goto fail;
        }
        json_t *page[3] = {v[0], json_object_get(before, "createdAt"), v[1]};
        stmt = sq_stmt(st, SQ_MSG_PAGE_BEFORE);
        err = sq_bind(st, stmt, page, 3);
    } else {
        stmt = sq_stmt(st, SQ_MSG_PAGE);
        err = sq_bind(st, stmt, v, 1);
    }
    /* one row past the page tells whether an older page exists */
    if (!err && sqlite3_bind_int64(stmt, v[1] ? 4 : 2, limit + 1) != SQLITE_OK) {
        err = sq_error(st, sqlite3_errcode(st->db), sqlite3_sql(stmt));
    }
    if (err) {
        goto fail;
    }
    json_int_t n = 0;
    while ((rc = sq_step(st, stmt)) == 1 && n < limit) {
        json_t *m = sq_row(st, stmt, msg_cols, NFIELDS(msg_cols));
        if (!m || json_array_append_new(msgs, m) != 0) {
            err = m ? CHAT_ENOMEM : CHAT_EINTERNAL;
            goto fail;
        }
        n++;
    }
    if (rc < 0) {
        err = rc;
        goto fail;
    }
    json_t *last = json_array_get(msgs, json_array_size(msgs) - 1);
    json_t *next = rc == 1 ? json_object_get(last, "id") : json_null();
    out = json_pack("{s:O,s:O}", "messages", msgs, "nextBefore", next);
    if (!out) {
        err = CHAT_ENOMEM;
        goto fail;
    }
    *result = out;
    err = 0;
fail:
    json_decref(before);
    json_decref(msgs);
    return err;
}

static int op_ping(sq_store *st, const chat_store_req *q, json_t **result)
{
    (void)q;
    int rc = sq_step(st, sq_stmt(st, SQ_PING));
    if (rc < 0) {
        return rc;
    }
    *result = json_null();
    return 0;
}

typedef int (*sq_op_fn)(sq_store *st, const chat_store_req *q, json_t **result);

static const struct {
    const char *name;
    sq_op_fn fn;
} sq_ops[CHAT_STORE_NOPS] = {
    [CHAT_STORE_USER_CREATE] = {"user_create", op_user_create},
    [CHAT_STORE_USER_BY_LOGIN] = {"user_by_login", op_user_by_login},
    [CHAT_STORE_USER_GET] = {"user_get", op_user_get},
    [CHAT_STORE_USER_SET_SEEN] = {"user_set_seen", op_user_set_seen},
    [CHAT_STORE_ROOM_CREATE] = {"room_create", op_room_create},
    [CHAT_STORE_ROOM_GET] = {"room_get", op_room_get},
    [CHAT_STORE_ROOM_ADD_MEMBER] = {"room_add_member", op_room_add_member},
    [CHAT_STORE_ROOM_REMOVE_MEMBER] = {"room_remove_member", op_room_remove_member},
    [CHAT_STORE_ROOMS_FOR_USER] = {"rooms_for_user", op_rooms_for_user},
    [CHAT_STORE_MESSAGE_INSERT] = {"message_insert", op_message_insert},
    [CHAT_STORE_MESSAGES_PAGE] = {"messages_page", op_messages_page},
    [CHAT_STORE_PING] = {"ping", op_ping},
    [CHAT_STORE_ROOMS_LIST] = {"rooms_list", op_rooms_list},
    [CHAT_STORE_USERS_FIND] = {"users_find", op_users_find},
    [CHAT_STORE_USER_UPDATE] = {"user_update", op_user_update},
    [CHAT_STORE_USERS_GET] = {"users_get", op_users_get},
    [CHAT_STORE_USERS_SEARCH] = {"users_search", op_users_search},
    [CHAT_STORE_MESSAGE_GET] = {"message_get", op_message_get},
    [CHAT_STORE_MESSAGE_EDIT] = {"message_edit", op_message_edit},
    [CHAT_STORE_MESSAGE_DELETE] = {"message_delete", op_message_delete},
    [CHAT_STORE_MESSAGE_REACT] = {"message_react", op_message_react},
    [CHAT_STORE_READ_SET] = {"read_set", op_read_set},
    [CHAT_STORE_READ_STATE] = {"read_state", op_read_state},
    [CHAT_STORE_NOTIFY_INSERT] = {"notify_insert", op_notify_insert},
    [CHAT_STORE_NOTIFY_LIST] = {"notify_list", op_notify_list},
    [CHAT_STORE_NOTIFY_READ] = {"notify_read", op_notify_read},
    [CHAT_STORE_UPLOAD_INSERT] = {"upload_insert", op_upload_insert},
    [CHAT_STORE_UPLOAD_GET] = {"upload_get", op_upload_get},
    [CHAT_STORE_UPLOAD_POST] = {"upload_post", op_upload_post},
};

/* ---- checkpoints (see SQ_WAL_CHECKPOINT_PAGES) ---- */

static void sq_ckpt_main(void *arg)
{
    sq_store *st = arg;
    sq_ckpt *ck = &st->ck;

    uv_mutex_lock(&ck->lock);
    for (;;) {
        while (!ck->want && !ck->stop) {
            uv_cond_wait(&ck->wake, &ck->lock);
        }
        if (ck->stop) {
            break;
        }
        ck->want = 0;
        if (atomic_load(&st->wal_pages_seen) < (uint_fast64_t)atomic_load(&ck->next)) {
            continue; /* asked for while the last pass ran, and that pass moved the mark */
        }
        ck->busy = 1;
        uv_mutex_unlock(&ck->lock);
        /* PASSIVE: copies what no reader still needs, never waits, never blocks a commit */
        int log = 0, done = 0;
        int rc = sqlite3_wal_checkpoint_v2(ck->db, NULL, SQLITE_CHECKPOINT_PASSIVE, &log, &done);
        /* every frame copied: the writer's next transaction starts the WAL again. Else
         * commits came meanwhile; the next pass waits for SQ_WAL_PASS_STEP more frames (a
         * pass per commit would cost two fsyncs per commit) */
        atomic_store(&ck->next, rc == SQLITE_OK && done < log ? log + SQ_WAL_PASS_STEP
                                                              : SQ_WAL_CHECKPOINT_PAGES);
        if (rc != SQLITE_OK && rc != SQLITE_BUSY) {
            chat__log(CHAT_LOG_WARN, "store_checkpoint_failed",
                      "a SQLite WAL checkpoint failed; the next commit past the threshold "
                      "tries again",
                      json_pack("{s:i,s:s}", "code", rc, "error", sqlite3_errmsg(ck->db)));
        }
        atomic_fetch_add_explicit(&ck->passes, 1, memory_order_relaxed);
        uv_mutex_lock(&ck->lock);
        ck->busy = 0;
        uv_cond_signal(&ck->idle);
    }
    uv_mutex_unlock(&ck->lock);
}

/* After every commit on the writer's connection (SQLite calls it with the WAL's frame
 * count; it replaces the automatic checkpoint). */
static int sq_wal_hook(void *arg, sqlite3 *db, const char *name, int pages)
{
    sq_store *st = arg;
    (void)db;
    (void)name;
    if (pages < st->wal_pages) {
        atomic_store(&st->ck.next, SQ_WAL_CHECKPOINT_PAGES); /* the WAL started again */
    }
    st->wal_pages = pages;
    atomic_store_explicit(&st->wal_pages_seen, (uint_fast64_t)pages, memory_order_relaxed);
    if (st->ck.db && pages >= atomic_load(&st->ck.next)) {
        uv_mutex_lock(&st->ck.lock);
        if (!st->ck.want) {
            st->ck.want = 1;
            uv_cond_signal(&st->ck.wake);
        }
        uv_mutex_unlock(&st->ck.lock);
    }
    return SQLITE_OK;
}

/* Between two calls on the writer (no transaction open, under st->lock). */
static void sq_checkpoint_writer(sq_store *st)
{
    if (!st->ck.db && st->wal_pages >= atomic_load(&st->ck.next)) {
        /* no checkpointer thread: the writer runs the pass itself, spaced as the thread's
         * are, and the forced checkpoint below still bounds the WAL */
        int log = 0, done = 0;
        int rc = sqlite3_wal_checkpoint_v2(st->db, NULL, SQLITE_CHECKPOINT_PASSIVE, &log, &done);
        int whole = rc == SQLITE_OK && done >= log;
        atomic_store(&st->ck.next,
                     whole ? SQ_WAL_CHECKPOINT_PAGES : st->wal_pages + SQ_WAL_PASS_STEP);
        atomic_fetch_add_explicit(&st->ck.passes, 1, memory_order_relaxed);
        if (whole) {
            st->wal_pages = 0; /* the next commit starts the WAL again */
            return;
        }
    }
    if (st->wal_pages < st->force_at) {
        return;
    }
    /* SQLite answers BUSY at once while another connection checkpoints: wait for the
     * checkpointer's pass to end, and keep it from starting the next one meanwhile */
    if (st->ck.db) {
        uv_mutex_lock(&st->ck.lock);
        while (st->ck.busy) {
            uv_cond_wait(&st->ck.idle, &st->ck.lock);
        }
    }
    int rc = sqlite3_wal_checkpoint_v2(st->db, NULL, SQLITE_CHECKPOINT_RESTART, NULL, NULL);
    if (st->ck.db) {
        uv_mutex_unlock(&st->ck.lock);
    }
    atomic_fetch_add_explicit(&st->forced, 1, memory_order_relaxed);
    if (rc == SQLITE_OK) {
        st->force_at = SQ_WAL_FORCE_PAGES;
        st->wal_pages = 0; /* the next commit starts the WAL again */
        atomic_store(&st->ck.next, SQ_WAL_CHECKPOINT_PAGES);
    } else {
        /* a reader holds an old snapshot (or the disk failed): not again on every call */
        st->force_at = st->wal_pages + SQ_WAL_FORCE_PAGES;
        chat__log(CHAT_LOG_WARN, "store_checkpoint_blocked",
                  "the SQLite WAL passed its bound and a checkpoint could not finish (a "
                  "reader holding an old snapshot?); the WAL grows until it can",
                  json_pack("{s:i,s:i,s:s}", "walPages", st->wal_pages, "code", rc, "error",
                            sqlite3_errmsg(st->db)));
    }
}

static void sq_stats(void *impl, chat_store_stats *out)
{
    sq_store *st = impl;
    out->checkpoints = atomic_load_explicit(&st->ck.passes, memory_order_relaxed);
    out->checkpoints_forced = atomic_load_explicit(&st->forced, memory_order_relaxed);
    out->wal_pages = atomic_load_explicit(&st->wal_pages_seen, memory_order_relaxed);
}

/* The checkpointer's connection and thread. Without them (an error, logged) the writer
 * checkpoints as SQLite would. */
static void sq_ckpt_start(sq_store *st, const char *path, const chat_store_opts *opts)
{
    sq_ckpt *ck = &st->ck;
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc == SQLITE_OK) {
        /* the checkpoint's fsyncs follow the connection's setting: the writer's */
        rc = sqlite3_exec(db,
                          opts->sqlite_synchronous >= 3   ? "PRAGMA synchronous = EXTRA"
                          : opts->sqlite_synchronous == 2 ? "PRAGMA synchronous = FULL"
                                                          : "PRAGMA synchronous = NORMAL",
                          NULL, NULL, NULL);
    }
    if (rc == SQLITE_OK && uv_mutex_init(&ck->lock) != 0) {
        rc = SQLITE_NOMEM;
    } else if (rc == SQLITE_OK && uv_cond_init(&ck->wake) != 0) {
        uv_mutex_destroy(&ck->lock);
        rc = SQLITE_NOMEM;
    } else if (rc == SQLITE_OK && uv_cond_init(&ck->idle) != 0) {
        uv_cond_destroy(&ck->wake);
        uv_mutex_destroy(&ck->lock);
        rc = SQLITE_NOMEM;
    }
    if (rc == SQLITE_OK) {
        ck->db = db;
        if (uv_thread_create(&ck->thread, sq_ckpt_main, st) != 0) {
            ck->db = NULL;
            uv_cond_destroy(&ck->idle);
            uv_cond_destroy(&ck->wake);
            uv_mutex_destroy(&ck->lock);
            rc = SQLITE_NOMEM;
        }
    }
    if (rc != SQLITE_OK) {
        chat__log(CHAT_LOG_WARN, "store_checkpointer_off",
                  "no checkpointer thread for the SQLite WAL; commits wait for checkpoints",
                  json_pack("{s:i,s:s}", "code", rc, "error",
                            db ? sqlite3_errmsg(db) : sqlite3_errstr(rc)));
        sqlite3_close(db);
    }
}

static void sq_ckpt_stop(sq_store *st)
{
    sq_ckpt *ck = &st->ck;
    if (!ck->db) {
        return;
    }
    uv_mutex_lock(&ck->lock);
    ck->stop = 1;
    uv_cond_signal(&ck->wake);
    uv_mutex_unlock(&ck->lock);
    uv_thread_join(&ck->thread);
    uv_cond_destroy(&ck->idle);
    uv_cond_destroy(&ck->wake);
    uv_mutex_destroy(&ck->lock);
    sqlite3_close(ck->db);
    ck->db = NULL;
}

static void sq_call_begin(sq_store *st, const char *op)
{
    uv_mutex_lock(&st->lock);
    st->op = op;
    st->used = 0;
    st->conflict[0] = '\0';
}

/* One place ends every call: no statement keeps a snapshot, no transaction stays open. */
static void sq_call_end(sq_store *st)
{
    for (int i = 0; i < SQ_NSTMTS; i++) {
        if (st->used & (UINT64_C(1) << i)) {
            sqlite3_reset(st->stmt[i]);
        }
    }
    if (!sqlite3_get_autocommit(st->db)) {
        int rc = sqlite3_step(st->stmt[SQ_ROLLBACK]);
        if (rc != SQLITE_DONE) {
            sq_error(st, rc, "ROLLBACK"); /* logged: later calls will fail to BEGIN */
        }
        sqlite3_reset(st->stmt[SQ_ROLLBACK]);
    }
    if (sqlite3_get_autocommit(st->db)) {
        sq_checkpoint_writer(st);
    }
    st->op = NULL;
    uv_mutex_unlock(&st->lock);
}

static int sq_exec(void *impl, const chat_store_req *q, json_t **result)
{
    sq_store *st = impl;
    int err;

    *result = NULL;
    if (q->op < 0 || q->op >= CHAT_STORE_NOPS || !sq_ops[q->op].fn) {
        return CHAT_EINVAL;
    }
    sq_call_begin(st, sq_ops[q->op].name);
    err = sq_ops[q->op].fn(st, q, result);
    if (err) {
        json_decref(*result);
        *result = err == CHAT_ECONFLICT ? sq_conflict_result(st) : NULL;
    }
    sq_call_end(st);
    return err;
}

/* Group commit: n inserts in one transaction, one fsync (with synchronous=FULL) or none
 * (NORMAL, WAL) for all of them. An insert the database refuses (a room that does not exist,
 * a taken id) fails alone; a failure that ends the transaction, or a failed COMMIT, fails
 * every insert of the batch: none of them is answered as stored. */
static void sq_insert_batch(void *impl, chat_store_req *const *reqs, int n, int *status,
                            json_t **results)
{
    sq_store *st = impl;
    int err;

    sq_call_begin(st, "message_insert_batch");
    err = sq_run(st, SQ_BEGIN);
    for (int i = 0; i < n && !err; i++) {
        results[i] = NULL;
        st->conflict[0] = '\0';
        status[i] = sq_insert_one(st, reqs[i], &results[i]);
        if (status[i] == 0) {
            continue;
        }
        json_decref(results[i]);
        results[i] = status[i] == CHAT_ECONFLICT ? sq_conflict_result(st) : NULL;
        if (sqlite3_get_autocommit(st->db) ||
            (status[i] != CHAT_ECONFLICT && status[i] != CHAT_ENOTFOUND &&
             status[i] != CHAT_EINVAL && status[i] != CHAT_ETOOBIG)) {
            err = status[i]; /* the transaction is gone, or the database is in trouble */
        }
    }
    if (!err) {
        err = sq_run(st, SQ_COMMIT);
    }
    if (err) {
        /* stored nothing: the inserts that had succeeded, and those never tried, answer
         * the batch's error (the caller may retry them); refused ones keep their answer */
        for (int i = 0; i < n; i++) {
            if (status[i] == 0) {
                json_decref(results[i]);
                results[i] = NULL;
                status[i] = err;
            }
        }
    }
    sq_call_end(st);
}

/* ---- open and close ---- */

static void sq_free(sq_store *st)
{
    sq_ckpt_stop(st); /* first: the writer's close is then the last and empties the WAL */
    for (int i = 0; i < SQ_NSTMTS; i++) {
        sqlite3_finalize(st->stmt[i]);
    }
    sqlite3_close(st->db);
    uv_mutex_destroy(&st->lock);
    free(st);
}

static void sq_close(void *impl)
{
    sq_store *st = impl;
    if (st) {
        /* cheap, and keeps the planner's statistics fresh for the next start */
        sqlite3_exec(st->db, "PRAGMA optimize", NULL, NULL, NULL);
        sq_free(st);
    }
}

/* Runs SQL with no parameters; with text, copies the first column of the first row. */
static int sq_exec_sql(sq_store *st, const char *sql, char *text, size_t textsz)
{
    sqlite3_stmt *stmt = NULL;
    int rc = sqlite3_prepare_v2(st->db, sql, -1, &stmt, NULL);
    int err;

    if (rc != SQLITE_OK) {
        err = sq_error(st, rc, sql);
        goto fail;
    }
    err = sq_step(st, stmt);
    if (err < 0) {
        goto fail;
    }
    if (text) {
        const char *t = err == 1 ? (const char *)sqlite3_column_text(stmt, 0) : NULL;
        snprintf(text, textsz, "%s", t ? t : "");
    }
    err = 0;
fail:
    sqlite3_finalize(stmt);
    return err;
}

static int sq_setup(sq_store *st, const chat_store_opts *opts)
{
    char mode[16];
    char version[24];
    int err;

    sqlite3_extended_result_codes(st->db, 1);
    sqlite3_busy_timeout(st->db, SQ_BUSY_TIMEOUT_MS);
    if ((err = sq_exec_sql(st, "PRAGMA journal_mode = WAL", mode, sizeof mode)) ||
        (err = sq_exec_sql(st, opts->sqlite_synchronous >= 3   ? "PRAGMA synchronous = EXTRA"
                               : opts->sqlite_synchronous == 2 ? "PRAGMA synchronous = FULL"
                                                               : "PRAGMA synchronous = NORMAL",
                           NULL, 0)) ||
        (err = sq_exec_sql(st, "PRAGMA foreign_keys = ON", NULL, 0)) ||
        (err = sq_exec_sql(st, SQ_WAL_LIMIT_SQL, NULL, 0)) ||
        (err = sq_exec_sql(st, "PRAGMA user_version", version, sizeof version))) {
        return err;
    }
    if (strcmp(mode, "wal") != 0) {
        /* e.g. a network file system: still correct, only slower under concurrent readers */
        chat__log(CHAT_LOG_WARN, "store_no_wal",
                  "SQLite could not switch the database to WAL mode; continuing without it",
                  json_pack("{s:s}", "journal_mode", mode));
    }
    if (atoi(version) > SQ_SCHEMA_VERSION) {
        chat__log(CHAT_LOG_ERROR, "store_schema_newer",
                  "the database was written by a newer chatd; upgrade chatd or use another "
                  "data directory",
                  json_pack("{s:i,s:i}", "found", atoi(version), "supported", SQ_SCHEMA_VERSION));
        return CHAT_EINTERNAL;
    }
    /* a new file gets the current schema at once; an older one, its tables as they are
     * plus the migrations after its version, all in one transaction */
    int from = atoi(version);
    char set_version[48];
    snprintf(set_version, sizeof set_version, "PRAGMA user_version = %d; COMMIT",
             SQ_SCHEMA_VERSION);
    int rc = sqlite3_exec(st->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_exec(st->db, sq_schema, NULL, NULL, NULL);
    }
    for (int i = from > 0 ? from - 1 : SQ_SCHEMA_VERSION; rc == SQLITE_OK && i < SQ_SCHEMA_VERSION - 1;
         i++) {
        rc = sqlite3_exec(st->db, sq_migrations[i], NULL, NULL, NULL);
    }
    if (rc != SQLITE_OK ||
        sqlite3_exec(st->db, set_version, NULL, NULL, NULL) != SQLITE_OK) {
        err = sq_error(st, sqlite3_extended_errcode(st->db), "schema");
        sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
        return err;
    }
    for (int i = 0; i < SQ_NSTMTS; i++) {
        rc = sqlite3_prepare_v3(st->db, sq_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
                                    &st->stmt[i], NULL);
        if (rc != SQLITE_OK) {
            return sq_error(st, rc, sq_sql[i]);
        }
    }
    return 0;
}

static int sq_open(void **impl, const char *target, const chat_store_opts *opts)
{
    sq_store *st = NULL;
    char *path = NULL;
    int err = CHAT_EINVAL;

    *impl = NULL;
    if (!target || !*target) {
        goto fail;
    }
    /* the directory holds password hashes: only the server's user may enter */
    if (mkdir(target, 0700) != 0 && errno != EEXIST) {
        chat__log(CHAT_LOG_ERROR, "store_error",
                  "cannot create the data directory; create it or set CHAT_DATA_DIR",
                  json_pack("{s:s,s:s}", "dir", target, "error", strerror(errno)));
        err = CHAT_EUNAVAIL;
        goto fail;
    }
    err = CHAT_ENOMEM;
    size_t n = strlen(target) + sizeof "/" SQ_FILE;
    path = malloc(n);
    st = calloc(1, sizeof *st);
    if (!path || !st) {
        goto fail;
    }
    if (uv_mutex_init(&st->lock) != 0) {
        free(st);
        st = NULL;
        goto fail;
    }
    snprintf(path, n, "%s/%s", target, SQ_FILE);
    st->op = "open";
    /* NOMUTEX: st->lock already serialises every use of the connection */
    int rc = sqlite3_open_v2(path, &st->db,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                             NULL);
    if (rc != SQLITE_OK) {
        err = sq_error(st, rc, path);
        goto fail;
    }
    if ((err = sq_setup(st, opts))) {
        goto fail;
    }
    st->force_at = SQ_WAL_FORCE_PAGES;
    atomic_init(&st->ck.next, SQ_WAL_CHECKPOINT_PAGES);
    sqlite3_wal_hook(st->db, sq_wal_hook, st); /* instead of the automatic checkpoint */
    if (!opts->no_checkpointer) {
        sq_ckpt_start(st, path, opts);
    }
    st->op = NULL;
    *impl = st;
    free(path);
    return 0;
fail:
    if (st) {
        sq_free(st);
    }
    free(path);
    return err;
}

const chat_store_backend chat__store_sqlite = {
    .name = "sqlite",
    .open = sq_open,
    .close = sq_close,
    .exec = sq_exec,
    .insert_batch = sq_insert_batch,
    .stats = sq_stats,
};
