/* store_scenarios.h: every store op, through chat__store_exec and through chat__store_call on
 * a real uv loop, and data surviving a reopen: the same scenarios for each backend
 * (test_store_sqlite.c, test_store_mongo.c). Include once, from the test's one .c file; set
 * sc_be and sc_target, then call the test_* functions. */
#ifndef CHAT_STORE_SCENARIOS_H
#define CHAT_STORE_SCENARIOS_H

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "test.h"
#include "chat.h"
#include "store.h"

static uv_loop_t loop;
/* the backend under test and its target (data dir or URI), set by the test's main */
static const chat_store_backend *sc_be;
static const char *sc_target;

static const char ALICE[] = "650000000000000000000a01";
static const char BOB[] = "650000000000000000000b02";
static const char CAROL[] = "650000000000000000000c03";
static const char ROOM1[] = "6500000000000000000001a1";
static const char ROOM2[] = "6500000000000000000002a2";
static const char ROOM3[] = "6500000000000000000003a3";
static const char ROOM4[] = "6500000000000000000004a4";
static const char EMPTY_ROOM[] = "6500000000000000000005a5";
static const char NO_ROOM[] = "6500000000000000000009a9";

/* Runs op synchronously; takes arg. */
static int run(chat_store *s, int op, json_t *arg, json_t **res)
{
    int rc = chat__store_exec(s, op, arg, res);
    json_decref(arg);
    return rc;
}

static const char *str(json_t *obj, const char *key)
{
    return json_string_value(json_object_get(obj, key));
}

static json_int_t num(json_t *obj, const char *key)
{
    return json_integer_value(json_object_get(obj, key));
}

/* Participants as one comma-joined string, for compact comparisons. */
static const char *members(json_t *room)
{
    static char buf[256];
    json_t *arr = json_object_get(room, "participants");
    size_t i;
    json_t *v;
    buf[0] = '\0';
    if (!json_is_array(arr)) {
        return "(not an array)";
    }
    json_array_foreach(arr, i, v) {
        size_t n = strlen(buf);
        snprintf(buf + n, sizeof buf - n, "%s%s", i ? "," : "", json_string_value(v));
    }
    return buf;
}

static json_t *message(const char *id, const char *room, const char *sender, const char *content,
                       const char *client_id, json_int_t created)
{
    return json_pack("{s:s,s:s,s:s,s:s,s:s?,s:I}", "id", id, "roomId", room, "senderId", sender,
                     "content", content, "clientMsgId", client_id, "createdAt", created);
}

static json_t *page_arg(const char *room, const char *before, int limit)
{
    return json_pack("{s:s,s:s?,s:i}", "roomId", room, "before", before, "limit", limit);
}

/* ---- users ---- */

static void test_users(chat_store *s)
{
    json_t *r = NULL;

    CHECK(run(s, CHAT_STORE_USER_CREATE,
              json_pack("{s:s,s:s,s:s,s:s,s:I}", "id", ALICE, "email", "Alice@Example.com",
                        "username", "alice", "passwordHash", "$2b$04$hash", "createdAt",
                        (json_int_t)1000),
              &r) == 0);
    CHECK(str(r, "id") && strcmp(str(r, "id"), ALICE) == 0);
    CHECK(str(r, "email") && strcmp(str(r, "email"), "Alice@Example.com") == 0);
    CHECK(str(r, "username") && strcmp(str(r, "username"), "alice") == 0);
    CHECK(str(r, "passwordHash") && strcmp(str(r, "passwordHash"), "$2b$04$hash") == 0);
    CHECK(str(r, "status") && strcmp(str(r, "status"), "offline") == 0);
    CHECK(json_is_null(json_object_get(r, "lastSeen")));
    CHECK(json_is_null(json_object_get(r, "avatar")));
    CHECK(num(r, "createdAt") == 1000);
    CHECK(json_is_null(json_object_get(r, "displayName")));
    CHECK(json_is_null(json_object_get(r, "statusText")));
    CHECK(json_object_size(r) == 10);
    json_decref(r);

    CHECK(run(s, CHAT_STORE_USER_CREATE,
              json_pack("{s:s,s:s,s:s,s:s,s:I}", "id", BOB, "email", "bob@example.com",
                        "username", "Bob", "passwordHash", "h", "createdAt", (json_int_t)1001),
              &r) == 0);
    json_decref(r);

    /* duplicates, case-insensitively, name the field */
    r = NULL;
    CHECK(run(s, CHAT_STORE_USER_CREATE,
              json_pack("{s:s,s:s,s:s,s:s,s:I}", "id", CAROL, "email", "ALICE@example.COM",
                        "username", "carol", "passwordHash", "h", "createdAt", (json_int_t)1),
              &r) == CHAT_ECONFLICT);
    CHECK(str(r, "field") && strcmp(str(r, "field"), "email") == 0);
    json_decref(r);
    r = NULL;
    CHECK(run(s, CHAT_STORE_USER_CREATE,
              json_pack("{s:s,s:s,s:s,s:s,s:I}", "id", CAROL, "email", "carol@example.com",
                        "username", "ALICE", "passwordHash", "h", "createdAt", (json_int_t)1),
              &r) == CHAT_ECONFLICT);
    CHECK(str(r, "field") && strcmp(str(r, "field"), "username") == 0);
    json_decref(r);
    r = NULL;
    CHECK(run(s, CHAT_STORE_USER_CREATE,
              json_pack("{s:s,s:s,s:s,s:s,s:I}", "id", ALICE, "email", "x@example.com",
                        "username", "x", "passwordHash", "h", "createdAt", (json_int_t)1),
              &r) == CHAT_ECONFLICT);
    CHECK(str(r, "field") && strcmp(str(r, "field"), "id") == 0);
    json_decref(r);
    CHECK(run(s, CHAT_STORE_USER_CREATE,
              json_pack("{s:s,s:s,s:s,s:s,s:I}", "id", CAROL, "email", "carol@example.com",
                        "username", "carol", "passwordHash", "h", "createdAt", (json_int_t)1002),
              &r) == 0);
    json_decref(r);

    /* malformed arguments */
    r = NULL;
    CHECK(run(s, CHAT_STORE_USER_CREATE, json_pack("{s:s}", "id", "x"), &r) == CHAT_EINVAL);
    CHECK(r == NULL);
    CHECK(run(s, CHAT_STORE_USER_CREATE,
              json_pack("{s:s,s:s,s:s,s:s,s:s}", "id", "y", "email", "y", "username", "y",
                        "passwordHash", "h", "createdAt", "yesterday"),
              &r) == CHAT_EINVAL);
    CHECK(run(s, CHAT_STORE_USER_GET, NULL, &r) == CHAT_EINVAL);
    CHECK(run(s, CHAT_STORE_USER_GET, json_pack("[s]", ALICE), &r) == CHAT_EINVAL);

    /* login by email or username, any case */
    static const char *const logins[] = {"alice@example.com", "ALICE@EXAMPLE.COM", "alice",
                                         "AlIcE"};
    for (size_t i = 0; i < sizeof logins / sizeof logins[0]; i++) {
        r = NULL;
        CHECK(run(s, CHAT_STORE_USER_BY_LOGIN, json_pack("{s:s}", "login", logins[i]), &r) == 0);
        CHECK(str(r, "id") && strcmp(str(r, "id"), ALICE) == 0);
        json_decref(r);
    }
    r = NULL;
    CHECK(run(s, CHAT_STORE_USER_BY_LOGIN, json_pack("{s:s}", "login", "bob"), &r) == 0);
    CHECK(str(r, "id") && strcmp(str(r, "id"), BOB) == 0);
    json_decref(r);
    r = NULL;
    CHECK(run(s, CHAT_STORE_USER_BY_LOGIN, json_pack("{s:s}", "login", "nobody"), &r) ==
          CHAT_ENOTFOUND);
    CHECK(r == NULL);

    CHECK(run(s, CHAT_STORE_USER_GET, json_pack("{s:s}", "id", BOB), &r) == 0);
    CHECK(str(r, "email") && strcmp(str(r, "email"), "bob@example.com") == 0);
    json_decref(r);
    r = NULL;
    CHECK(run(s, CHAT_STORE_USER_GET, json_pack("{s:s}", "id", NO_ROOM), &r) == CHAT_ENOTFOUND);
    CHECK(r == NULL);

    /* last seen */
    CHECK(run(s, CHAT_STORE_USER_SET_SEEN,
              json_pack("{s:s,s:I,s:s}", "id", ALICE, "lastSeen", (json_int_t)1700000000123,
                        "status", "online"),
              &r) == 0);
    CHECK(json_is_null(r));
    json_decref(r);
    CHECK(run(s, CHAT_STORE_USER_GET, json_pack("{s:s}", "id", ALICE), &r) == 0);
    CHECK(num(r, "lastSeen") == 1700000000123);
    CHECK(str(r, "status") && strcmp(str(r, "status"), "online") == 0);
    json_decref(r);
    CHECK(run(s, CHAT_STORE_USER_SET_SEEN,
              json_pack("{s:s,s:I,s:s}", "id", NO_ROOM, "lastSeen", (json_int_t)1, "status",
                        "online"),
              &r) == CHAT_ENOTFOUND);
}

/* ---- profiles and the directory (after test_users: alice, Bob, carol) ---- */

static const char *usernames(json_t *users)
{
    static char buf[256];
    size_t i;
    json_t *u;
    buf[0] = '\0';
    if (!json_is_array(users)) {
        return "(not an array)";
    }
    json_array_foreach(users, i, u) {
        size_t n = strlen(buf);
        snprintf(buf + n, sizeof buf - n, "%s%s", i ? "," : "", str(u, "username"));
    }
    return buf;
}

static void test_profiles(chat_store *s)
{
    json_t *r = NULL;

    /* set, keep what is not named, clear with "" */
    CHECK(run(s, CHAT_STORE_USER_UPDATE,
              json_pack("{s:s,s:s,s:s}", "id", ALICE, "displayName", "Alice A.", "avatar",
                        "https://example.com/a.png"),
              &r) == 0);
    CHECK(str(r, "displayName") && strcmp(str(r, "displayName"), "Alice A.") == 0);
    CHECK(str(r, "avatar") && strcmp(str(r, "avatar"), "https://example.com/a.png") == 0);
    CHECK(json_is_null(json_object_get(r, "statusText")));
    CHECK(str(r, "email") && strcmp(str(r, "email"), "Alice@Example.com") == 0);
    json_decref(r);
    CHECK(run(s, CHAT_STORE_USER_UPDATE,
              json_pack("{s:s,s:s,s:n}", "id", ALICE, "statusText", "at lunch", "avatar"),
              &r) == 0);
    CHECK(str(r, "displayName") && strcmp(str(r, "displayName"), "Alice A.") == 0);
    CHECK(str(r, "avatar") && strcmp(str(r, "avatar"), "https://example.com/a.png") == 0);
    CHECK(str(r, "statusText") && strcmp(str(r, "statusText"), "at lunch") == 0);
    json_decref(r);
    CHECK(run(s, CHAT_STORE_USER_UPDATE, json_pack("{s:s,s:s}", "id", ALICE, "avatar", ""),
              &r) == 0);
    CHECK(json_is_null(json_object_get(r, "avatar")));
    CHECK(str(r, "displayName") && strcmp(str(r, "displayName"), "Alice A.") == 0);
    json_decref(r);
    CHECK(run(s, CHAT_STORE_USER_GET, json_pack("{s:s}", "id", ALICE), &r) == 0);
    CHECK(json_is_null(json_object_get(r, "avatar")));
    CHECK(str(r, "statusText") && strcmp(str(r, "statusText"), "at lunch") == 0);
    json_decref(r);
    /* nothing named: the user as it is */
    CHECK(run(s, CHAT_STORE_USER_UPDATE, json_pack("{s:s}", "id", BOB), &r) == 0);
    CHECK(str(r, "username") && strcmp(str(r, "username"), "Bob") == 0);
    json_decref(r);
    r = NULL;
    CHECK(run(s, CHAT_STORE_USER_UPDATE, json_pack("{s:s,s:s}", "id", NO_ROOM, "displayName", "x"),
              &r) == CHAT_ENOTFOUND);
    CHECK(r == NULL);
    CHECK(run(s, CHAT_STORE_USER_UPDATE, json_pack("{s:s,s:i}", "id", ALICE, "displayName", 3),
              &r) == CHAT_EINVAL);

    /* many at once: in the order asked, each once, unknown ids left out */
    CHECK(run(s, CHAT_STORE_USERS_GET, json_pack("{s:[ssss]}", "ids", CAROL, NO_ROOM, ALICE, CAROL),
              &r) == 0);
    CHECK(strcmp(usernames(r), "carol,alice") == 0);
    CHECK(json_is_null(json_object_get(json_array_get(r, 0), "displayName")));
    CHECK(str(json_array_get(r, 1), "displayName") &&
          strcmp(str(json_array_get(r, 1), "displayName"), "Alice A.") == 0);
    json_decref(r);
    CHECK(run(s, CHAT_STORE_USERS_GET, json_pack("{s:[s]}", "ids", NO_ROOM), &r) == 0);
    CHECK(json_is_array(r) && json_array_size(r) == 0);
    json_decref(r);
    r = NULL;
    CHECK(run(s, CHAT_STORE_USERS_GET, json_pack("{s:[]}", "ids"), &r) == CHAT_EINVAL);
    CHECK(run(s, CHAT_STORE_USERS_GET, json_pack("{s:[i]}", "ids", 1), &r) == CHAT_EINVAL);
    json_t *many = json_array();
    for (int i = 0; i <= CHAT_STORE_IDS_MAX; i++) {
        json_array_append_new(many, json_string(ALICE));
    }
    CHECK(run(s, CHAT_STORE_USERS_GET, json_pack("{s:o}", "ids", many), &r) == CHAT_EINVAL);
    CHECK(r == NULL);

    /* username prefix, any case, ordered by the lower-cased name, bounded */
    CHECK(run(s, CHAT_STORE_USERS_SEARCH, json_pack("{s:s}", "prefix", "B"), &r) == 0);
    CHECK(strcmp(usernames(r), "Bob") == 0);
    json_decref(r);
    CHECK(run(s, CHAT_STORE_USERS_SEARCH, json_pack("{s:s}", "prefix", "ALI"), &r) == 0);
    CHECK(strcmp(usernames(r), "alice") == 0);
    json_decref(r);
    CHECK(run(s, CHAT_STORE_USERS_SEARCH, json_pack("{s:s}", "prefix", "alicex"), &r) == 0);
    CHECK(json_is_array(r) && json_array_size(r) == 0);
    json_decref(r);
    static const char *const extra[] = {"zed1", "Zed2", "zed3"};
    static const char *const extra_ids[] = {"650000000000000000000d01", "650000000000000000000d02",
                                            "650000000000000000000d03"};
    for (int i = 0; i < 3; i++) {
        char email[64];
        snprintf(email, sizeof email, "%s@example.com", extra[i]);
        CHECK(run(s, CHAT_STORE_USER_CREATE,
                  json_pack("{s:s,s:s,s:s,s:s,s:I}", "id", extra_ids[i], "email", email,
                            "username", extra[i], "passwordHash", "h", "createdAt",
                            (json_int_t)2000 + i),
                  &r) == 0);
        json_decref(r);
    }
    CHECK(run(s, CHAT_STORE_USERS_SEARCH, json_pack("{s:s}", "prefix", "zed"), &r) == 0);
    CHECK(strcmp(usernames(r), "zed1,Zed2,zed3") == 0);
    json_decref(r);
    CHECK(run(s, CHAT_STORE_USERS_SEARCH, json_pack("{s:s,s:i}", "prefix", "ZE", "limit", 2),
              &r) == 0);
    CHECK(strcmp(usernames(r), "zed1,Zed2") == 0);
    json_decref(r);
    r = NULL;
    CHECK(run(s, CHAT_STORE_USERS_SEARCH, json_pack("{s:s}", "prefix", ""), &r) == CHAT_EINVAL);
    CHECK(run(s, CHAT_STORE_USERS_SEARCH, json_pack("{s:s,s:i}", "prefix", "z", "limit", 0), &r) ==
          CHAT_EINVAL);
    CHECK(r == NULL);
}

/* ---- rooms ---- */

static json_t *room(const char *id, const char *name, json_int_t created, const char *settings)
{
    json_t *r = json_pack("{s:s,s:s,s:s,s:[ss],s:s,s:I}", "id", id, "name", name, "type",
                          "group", "participants", ALICE, BOB, "admin", ALICE, "createdAt",
                          created);
    if (settings) {
        json_object_set_new(r, "settings", json_loads(settings, 0, NULL));
    }
    return r;
}

static void test_rooms(chat_store *s)
{
    json_t *r = NULL;

    CHECK(run(s, CHAT_STORE_ROOM_CREATE, room(ROOM1, "general", 2000, "{\"slow\":5}"), &r) == 0);
    CHECK(str(r, "id") && strcmp(str(r, "id"), ROOM1) == 0);
    CHECK(str(r, "name") && strcmp(str(r, "name"), "general") == 0);
    CHECK(str(r, "type") && strcmp(str(r, "type"), "group") == 0);
    CHECK(str(r, "admin") && strcmp(str(r, "admin"), ALICE) == 0);
    CHECK(strcmp(members(r), "650000000000000000000a01,650000000000000000000b02") == 0);
    CHECK(num(json_object_get(r, "settings"), "slow") == 5);
    CHECK(num(r, "createdAt") == 2000);
    CHECK(json_object_size(r) == 7);
    json_decref(r);

    /* settings default to {}; duplicate participants collapse */
    json_t *arg = room(ROOM2, "random", 3000, NULL);
    json_array_append_new(json_object_get(arg, "participants"), json_string(ALICE));
    CHECK(run(s, CHAT_STORE_ROOM_CREATE, arg, &r) == 0);
    CHECK(json_is_object(json_object_get(r, "settings")) &&
          json_object_size(json_object_get(r, "settings")) == 0);
    CHECK(json_array_size(json_object_get(r, "participants")) == 2);
    json_decref(r);

    /* rooms for the paging tests, with nobody but Alice */
    static const char *const extra[] = {ROOM3, ROOM4, EMPTY_ROOM};
    for (size_t i = 0; i < 3; i++) {
        json_t *a = json_pack("{s:s,s:s,s:s,s:[s],s:n,s:I}", "id", extra[i], "name", "x", "type",
                              "direct", "participants", ALICE, "admin", "createdAt",
                              (json_int_t)1000 + (json_int_t)i);
        CHECK(run(s, CHAT_STORE_ROOM_CREATE, a, &r) == 0);
        CHECK(json_is_null(json_object_get(r, "admin")));
        json_decref(r);
    }

    r = NULL;
    CHECK(run(s, CHAT_STORE_ROOM_CREATE, room(ROOM1, "again", 1, NULL), &r) == CHAT_ECONFLICT);
    CHECK(str(r, "field") && strcmp(str(r, "field"), "id") == 0);
    json_decref(r);
    CHECK(run(s, CHAT_STORE_ROOM_CREATE, json_pack("{s:s,s:s,s:s,s:[i],s:I}", "id", "bad", "name",
                                                   "x", "type", "group", "participants", 5,
                                                   "createdAt", (json_int_t)1),
              &r) == CHAT_EINVAL);
    /* the failed create left nothing behind */
    r = NULL;
    CHECK(run(s, CHAT_STORE_ROOM_GET, json_pack("{s:s}", "id", "bad"), &r) == CHAT_ENOTFOUND);

    CHECK(run(s, CHAT_STORE_ROOM_GET, json_pack("{s:s}", "id", ROOM1), &r) == 0);
    CHECK(strcmp(members(r), "650000000000000000000a01,650000000000000000000b02") == 0);
    json_decref(r);
    r = NULL;
    CHECK(run(s, CHAT_STORE_ROOM_GET, json_pack("{s:s}", "id", NO_ROOM), &r) == CHAT_ENOTFOUND);
    CHECK(r == NULL);

    /* membership keeps join order and is idempotent */
#define MEMBER(op, room_id, user)                                                           \
    run(s, op, json_pack("{s:s,s:s}", "roomId", room_id, "userId", user), &r)
    CHECK(MEMBER(CHAT_STORE_ROOM_ADD_MEMBER, ROOM1, CAROL) == 0);
    CHECK(strcmp(members(r), "650000000000000000000a01,650000000000000000000b02,"
                             "650000000000000000000c03") == 0);
    json_decref(r);
    CHECK(MEMBER(CHAT_STORE_ROOM_ADD_MEMBER, ROOM1, CAROL) == 0);
    CHECK(json_array_size(json_object_get(r, "participants")) == 3);
    json_decref(r);
    CHECK(MEMBER(CHAT_STORE_ROOM_REMOVE_MEMBER, ROOM1, BOB) == 0);
    CHECK(strcmp(members(r), "650000000000000000000a01,650000000000000000000c03") == 0);
    json_decref(r);
    CHECK(MEMBER(CHAT_STORE_ROOM_REMOVE_MEMBER, ROOM1, BOB) == 0);
    CHECK(strcmp(members(r), "650000000000000000000a01,650000000000000000000c03") == 0);
    json_decref(r);
    CHECK(MEMBER(CHAT_STORE_ROOM_ADD_MEMBER, ROOM1, BOB) == 0);
    CHECK(strcmp(members(r), "650000000000000000000a01,650000000000000000000c03,"
                             "650000000000000000000b02") == 0);
    json_decref(r);
    r = NULL;
    CHECK(MEMBER(CHAT_STORE_ROOM_ADD_MEMBER, NO_ROOM, BOB) == CHAT_ENOTFOUND);
    CHECK(r == NULL);
    CHECK(MEMBER(CHAT_STORE_ROOM_REMOVE_MEMBER, NO_ROOM, BOB) == CHAT_ENOTFOUND);
    CHECK(run(s, CHAT_STORE_ROOM_ADD_MEMBER, json_pack("{s:s}", "roomId", ROOM1), &r) ==
          CHAT_EINVAL);
#undef MEMBER

    /* rooms for a user, newest first, each with its participants */
    CHECK(run(s, CHAT_STORE_ROOMS_FOR_USER, json_pack("{s:s}", "userId", ALICE), &r) == 0);
    CHECK(json_array_size(r) == 5);
    static const char *const order[] = {ROOM2, ROOM1, EMPTY_ROOM, ROOM4, ROOM3};
    for (size_t i = 0; i < 5 && i < json_array_size(r); i++) {
        CHECK(strcmp(str(json_array_get(r, i), "id"), order[i]) == 0);
        CHECK(json_is_array(json_object_get(json_array_get(r, i), "participants")));
    }
    json_decref(r);
    CHECK(run(s, CHAT_STORE_ROOMS_FOR_USER, json_pack("{s:s}", "userId", CAROL), &r) == 0);
    CHECK(json_array_size(r) == 1);
    CHECK(strcmp(members(json_array_get(r, 0)), "650000000000000000000a01,"
                                                "650000000000000000000c03,"
                                                "650000000000000000000b02") == 0);
    json_decref(r);
    CHECK(run(s, CHAT_STORE_ROOMS_FOR_USER, json_pack("{s:s}", "userId", NO_ROOM), &r) == 0);
    CHECK(json_is_array(r) && json_array_size(r) == 0);
    json_decref(r);
}

/* ---- messages ---- */

static void test_messages(chat_store *s)
{
    json_t *r = NULL;
    char first_id[25];

    chat__objectid(first_id);
    CHECK(run(s, CHAT_STORE_MESSAGE_INSERT, message(first_id, ROOM1, ALICE, "hi", "c-1", 5000),
              &r) == 0);
    json_t *m = json_object_get(r, "message");
    CHECK(json_is_false(json_object_get(r, "duplicate")));
    CHECK(str(m, "id") && strcmp(str(m, "id"), first_id) == 0);
    CHECK(str(m, "roomId") && strcmp(str(m, "roomId"), ROOM1) == 0);
    CHECK(str(m, "senderId") && strcmp(str(m, "senderId"), ALICE) == 0);
    CHECK(str(m, "content") && strcmp(str(m, "content"), "hi") == 0);
    CHECK(json_is_array(json_object_get(m, "attachments")) &&
          json_array_size(json_object_get(m, "attachments")) == 0);
    CHECK(json_is_object(json_object_get(m, "reactions")) &&
          json_object_size(json_object_get(m, "reactions")) == 0);
    CHECK(str(m, "clientMsgId") && strcmp(str(m, "clientMsgId"), "c-1") == 0);
    CHECK(num(m, "createdAt") == 5000);
    CHECK(num(m, "updatedAt") == 5000); /* defaults to createdAt */
    CHECK(json_object_size(m) == 9);
    json_decref(r);

    /* a retry with the same (sender, clientMsgId) returns the stored message */
    char retry_id[25];
    chat__objectid(retry_id);
    CHECK(run(s, CHAT_STORE_MESSAGE_INSERT,
              message(retry_id, ROOM1, ALICE, "hi (resent)", "c-1", 5005), &r) == 0);
    m = json_object_get(r, "message");
    CHECK(json_is_true(json_object_get(r, "duplicate")));
    CHECK(str(m, "id") && strcmp(str(m, "id"), first_id) == 0);
    CHECK(str(m, "content") && strcmp(str(m, "content"), "hi") == 0);
    json_decref(r);
    r = NULL;
    CHECK(run(s, CHAT_STORE_MESSAGES_PAGE, page_arg(ROOM1, NULL, 50), &r) == 0);
    CHECK(json_array_size(json_object_get(r, "messages")) == 1);
    json_decref(r);

    /* the same clientMsgId from someone else is a different message */
    char other_id[25];
    chat__objectid(other_id);
    CHECK(run(s, CHAT_STORE_MESSAGE_INSERT, message(other_id, ROOM1, BOB, "yo", "c-1", 5001),
              &r) == 0);
    CHECK(json_is_false(json_object_get(r, "duplicate")));
    json_decref(r);

    /* no clientMsgId: null, and never deduplicated */
    char a_id[25];
    char b_id[25];
    chat__objectid(a_id);
    chat__objectid(b_id);
    CHECK(run(s, CHAT_STORE_MESSAGE_INSERT, message(a_id, ROOM1, ALICE, "same", NULL, 5002), &r) ==
          0);
    CHECK(json_is_null(json_object_get(json_object_get(r, "message"), "clientMsgId")));
    json_decref(r);
    CHECK(run(s, CHAT_STORE_MESSAGE_INSERT, message(b_id, ROOM1, ALICE, "same", NULL, 5002), &r) ==
          0);
    CHECK(json_is_false(json_object_get(r, "duplicate")));
    json_decref(r);

    /* same id again: a conflict, not a silent overwrite */
    r = NULL;
    CHECK(run(s, CHAT_STORE_MESSAGE_INSERT, message(b_id, ROOM1, ALICE, "x", NULL, 5003), &r) ==
          CHAT_ECONFLICT);
    CHECK(str(r, "field") && strcmp(str(r, "field"), "id") == 0);
    json_decref(r);

    /* a message for no room */
    char lost_id[25];
    chat__objectid(lost_id);
    r = NULL;
    CHECK(run(s, CHAT_STORE_MESSAGE_INSERT, message(lost_id, NO_ROOM, ALICE, "x", NULL, 1), &r) ==
          CHAT_ENOTFOUND);
    CHECK(r == NULL);

    /* attachments, reactions, updatedAt and an embedded NUL round-trip */
    char rich_id[25];
    chat__objectid(rich_id);
    json_t *rich = message(rich_id, ROOM1, CAROL, "", "c-rich", 5010);
    json_object_set_new(rich, "content", json_stringn("a\0b", 3));
    json_object_set_new(rich, "attachments", json_loads("[{\"url\":\"/f/1.png\",\"size\":12}]",
                                                        0, NULL));
    json_object_set_new(rich, "reactions",
                        json_loads("{\"\xf0\x9f\x91\x8d\":[\"650000000000000000000a01\"]}", 0,
                                   NULL));
    json_object_set_new(rich, "updatedAt", json_integer(6000));
    CHECK(run(s, CHAT_STORE_MESSAGE_INSERT, json_incref(rich), &r) == 0);
    m = json_object_get(r, "message");
    CHECK(json_equal(json_object_get(m, "attachments"), json_object_get(rich, "attachments")));
    CHECK(json_equal(json_object_get(m, "reactions"), json_object_get(rich, "reactions")));
    CHECK(json_string_length(json_object_get(m, "content")) == 3);
    CHECK(num(m, "updatedAt") == 6000);
    json_decref(r);
    json_decref(rich);

    /* malformed */
    CHECK(run(s, CHAT_STORE_MESSAGE_INSERT, json_pack("{s:s}", "id", "x"), &r) == CHAT_EINVAL);
    json_t *bad = message("z", ROOM1, ALICE, "x", NULL, 1);
    json_object_set_new(bad, "attachments", json_string("nope"));
    CHECK(run(s, CHAT_STORE_MESSAGE_INSERT, bad, &r) == CHAT_EINVAL);
}

/* Pages through a room; returns the number of messages seen and checks the order. */
static int page_all(chat_store *s, const char *room_id, int limit, const int *expect_sizes,
                    int npages)
{
    char before[25] = "";
    json_t *seen = json_object();
    json_int_t last_created = INT64_MAX;
    char last_id[25] = "\x7f";
    int total = 0;

    for (int p = 0; p < npages + 1; p++) {
        json_t *r = NULL;
        int rc = run(s, CHAT_STORE_MESSAGES_PAGE, page_arg(room_id, *before ? before : NULL,
                                                           limit),
                     &r);
        CHECK(rc == 0);
        if (rc != 0) {
            break;
        }
        json_t *msgs = json_object_get(r, "messages");
        CHECK(p < npages && (int)json_array_size(msgs) == expect_sizes[p]);
        size_t i;
        json_t *m;
        json_array_foreach(msgs, i, m) {
            /* strictly older than the one before it: (createdAt, id) descending */
            json_int_t c = num(m, "createdAt");
            const char *id = str(m, "id");
            CHECK(strcmp(str(m, "roomId"), room_id) == 0);
            CHECK(c < last_created || (c == last_created && strcmp(id, last_id) < 0));
            CHECK(json_object_get(seen, id) == NULL);
            json_object_set_new(seen, id, json_true());
            last_created = c;
            snprintf(last_id, sizeof last_id, "%s", id);
            total++;
        }
        json_t *next = json_object_get(r, "nextBefore");
        if (json_is_null(next)) {
            CHECK(p == npages - 1);
            json_decref(r);
            break;
        }
        CHECK(json_is_string(next) && strcmp(json_string_value(next), last_id) == 0);
        snprintf(before, sizeof before, "%s", json_string_value(next));
        json_decref(r);
    }
    json_decref(seen);
    return total;
}

static void test_paging(chat_store *s)
{
    json_t *r = NULL;

    /* 120 messages in ROOM3, three per millisecond so ids break the ties, interleaved with
     * messages in ROOM4 that must not leak in */
    for (int i = 0; i < 120; i++) {
        char id[25];
        char content[32];
        chat__objectid(id);
        snprintf(content, sizeof content, "m%d", i);
        CHECK(run(s, CHAT_STORE_MESSAGE_INSERT, message(id, ROOM3, ALICE, content, NULL,
                                                        10000 + i / 3),
                  &r) == 0);
        json_decref(r);
        if (i % 10 == 0) {
            chat__objectid(id);
            CHECK(run(s, CHAT_STORE_MESSAGE_INSERT, message(id, ROOM4, ALICE, "other", NULL,
                                                            10000 + i / 3),
                      &r) == 0);
            json_decref(r);
        }
    }
    static const int sizes[] = {50, 50, 20};
    CHECK(page_all(s, ROOM3, 50, sizes, 3) == 120);
    static const int sizes_7[] = {7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 1};
    CHECK(page_all(s, ROOM3, 7, sizes_7, 18) == 120);
    /* exactly one full page: no next page */
    static const int sizes_120[] = {120};
    CHECK(page_all(s, ROOM3, 120, sizes_120, 1) == 120);
    static const int sizes_12[] = {12};
    CHECK(page_all(s, ROOM4, 50, sizes_12, 1) == 12);

    /* newest first, and a page from the newest message excludes it */
    CHECK(run(s, CHAT_STORE_MESSAGES_PAGE, page_arg(ROOM3, NULL, 1), &r) == 0);
    json_t *newest = json_incref(json_array_get(json_object_get(r, "messages"), 0));
    CHECK(str(newest, "content") && strcmp(str(newest, "content"), "m119") == 0);
    json_decref(r);
    CHECK(run(s, CHAT_STORE_MESSAGES_PAGE, page_arg(ROOM3, str(newest, "id"), 200), &r) == 0);
    CHECK(json_array_size(json_object_get(r, "messages")) == 119);
    CHECK(json_is_null(json_object_get(r, "nextBefore")));
    json_decref(r);

    /* before must be a message of this room */
    r = NULL;
    CHECK(run(s, CHAT_STORE_MESSAGES_PAGE, page_arg(ROOM4, str(newest, "id"), 10), &r) ==
          CHAT_ENOTFOUND);
    CHECK(run(s, CHAT_STORE_MESSAGES_PAGE, page_arg(ROOM3, "nope", 10), &r) == CHAT_ENOTFOUND);
    CHECK(r == NULL);
    json_decref(newest);

    /* limits */
    CHECK(run(s, CHAT_STORE_MESSAGES_PAGE, page_arg(ROOM3, NULL, 0), &r) == CHAT_EINVAL);
    CHECK(run(s, CHAT_STORE_MESSAGES_PAGE, page_arg(ROOM3, NULL, -5), &r) == CHAT_EINVAL);
    CHECK(run(s, CHAT_STORE_MESSAGES_PAGE, json_pack("{s:s}", "roomId", ROOM3), &r) == 0);
    CHECK(json_array_size(json_object_get(r, "messages")) == 50); /* the default */
    CHECK(json_is_string(json_object_get(r, "nextBefore")));
    json_decref(r);
    CHECK(run(s, CHAT_STORE_MESSAGES_PAGE, page_arg(EMPTY_ROOM, NULL, 50), &r) == 0);
    CHECK(json_array_size(json_object_get(r, "messages")) == 0);
    CHECK(json_is_null(json_object_get(r, "nextBefore")));
    json_decref(r);

    CHECK(run(s, CHAT_STORE_PING, NULL, &r) == 0);
    CHECK(json_is_null(r));
    json_decref(r);
    CHECK(run(s, -1, NULL, &r) == CHAT_EINVAL);
    CHECK(run(s, CHAT_STORE_NOPS, NULL, &r) == CHAT_EINVAL);
}

/* ---- chat__store_call on a real loop ---- */

typedef struct call_stats {
    int calls;
    int ok;
    int fresh;
    int dups;
    int notfound;
    char dup_target[25];
    int dup_mismatch;
} call_stats;

static call_stats cs;

/* ---- edits and deletes (after test_rooms: ROOM1 exists) ---- */

static void test_edits(chat_store *s)
{
    static const char M1[] = "65000000000000000e000001";
    static const char M2[] = "65000000000000000e000002";
    json_t *r = NULL;

    CHECK(run(s, CHAT_STORE_MESSAGE_INSERT, message(M1, ROOM1, ALICE, "first", NULL, 5000), &r) ==
          0);
    json_decref(r);
    CHECK(run(s, CHAT_STORE_MESSAGE_INSERT, message(M2, ROOM1, BOB, "second", NULL, 5001), &r) ==
          0);
    CHECK(json_object_get(json_object_get(r, "message"), "deleted") == NULL);
    json_decref(r);

    CHECK(run(s, CHAT_STORE_MESSAGE_GET, json_pack("{s:s}", "id", M1), &r) == 0);
    CHECK(str(r, "content") && strcmp(str(r, "content"), "first") == 0);
    CHECK(json_object_get(r, "deleted") == NULL);
    CHECK(num(r, "updatedAt") == 5000);
    json_decref(r);
    r = NULL;
    CHECK(run(s, CHAT_STORE_MESSAGE_GET, json_pack("{s:s}", "id", NO_ROOM), &r) == CHAT_ENOTFOUND);
    CHECK(r == NULL);

    CHECK(run(s, CHAT_STORE_MESSAGE_EDIT,
              json_pack("{s:s,s:s,s:I}", "id", M1, "content", "first, edited", "updatedAt",
                        (json_int_t)6000),
              &r) == 0);
    CHECK(str(r, "content") && strcmp(str(r, "content"), "first, edited") == 0);
    CHECK(num(r, "createdAt") == 5000 && num(r, "updatedAt") == 6000);
    CHECK(str(r, "senderId") && strcmp(str(r, "senderId"), ALICE) == 0);
    json_decref(r);

    CHECK(run(s, CHAT_STORE_MESSAGE_DELETE,
              json_pack("{s:s,s:I}", "id", M2, "updatedAt", (json_int_t)7000), &r) == 0);
    CHECK(json_is_true(json_object_get(r, "deleted")));
    CHECK(str(r, "content") && strcmp(str(r, "content"), "") == 0);
    CHECK(json_array_size(json_object_get(r, "attachments")) == 0);
    CHECK(json_object_size(json_object_get(r, "reactions")) == 0);
    CHECK(num(r, "updatedAt") == 7000);
    json_decref(r);
    /* a tombstone neither changes again nor is deleted twice */
    r = NULL;
    CHECK(run(s, CHAT_STORE_MESSAGE_EDIT,
              json_pack("{s:s,s:s,s:I}", "id", M2, "content", "back", "updatedAt",
                        (json_int_t)8000),
              &r) == CHAT_ENOTFOUND);
    CHECK(run(s, CHAT_STORE_MESSAGE_DELETE,
              json_pack("{s:s,s:I}", "id", M2, "updatedAt", (json_int_t)8000), &r) ==
          CHAT_ENOTFOUND);
    CHECK(run(s, CHAT_STORE_MESSAGE_EDIT,
              json_pack("{s:s,s:s,s:I}", "id", NO_ROOM, "content", "x", "updatedAt",
                        (json_int_t)8000),
              &r) == CHAT_ENOTFOUND);
    CHECK(run(s, CHAT_STORE_MESSAGE_EDIT, json_pack("{s:s,s:s}", "id", M1, "content", "x"), &r) ==
          CHAT_EINVAL);
    CHECK(r == NULL);
    /* history shows the edit and the tombstone */
    CHECK(run(s, CHAT_STORE_MESSAGES_PAGE, page_arg(ROOM1, NULL, 1000), &r) == 0);
    json_t *msgs = json_object_get(r, "messages");
    int seen = 0;
    size_t i;
    json_t *m;
    json_array_foreach(msgs, i, m) {
        if (strcmp(str(m, "id"), M1) == 0) {
            CHECK(strcmp(str(m, "content"), "first, edited") == 0 && num(m, "updatedAt") == 6000);
            CHECK(json_object_get(m, "deleted") == NULL);
            seen++;
        } else if (strcmp(str(m, "id"), M2) == 0) {
            CHECK(json_is_true(json_object_get(m, "deleted")) && strcmp(str(m, "content"), "") == 0);
            seen++;
        }
    }
    CHECK(seen == 2);
    json_decref(r);
}

/* ---- reactions (after test_edits) ---- */

static json_t *react(const char *id, const char *user, const char *emoji, int on)
{
    return json_pack("{s:s,s:s,s:s,s:b}", "id", id, "userId", user, "emoji", emoji, "on", on);
}

/* reactions[emoji] as "a,b", "" when absent, "(bad)" when not an array */
static const char *reacted(json_t *msg, const char *emoji)
{
    json_t *r = json_object_get(json_object_get(msg, "reactions"), emoji);
    static char buf[200];
    size_t i;
    json_t *u;
    buf[0] = '\0';
    if (r && !json_is_array(r)) {
        return "(bad)";
    }
    json_array_foreach(r, i, u) {
        size_t n = strlen(buf);
        snprintf(buf + n, sizeof buf - n, "%s%c", i ? "," : "", json_string_value(u)[23]);
    }
    return buf;
}

static void test_reactions(chat_store *s)
{
    static const char M[] = "65000000000000000e000003";
    static const char GONE[] = "65000000000000000e000002"; /* deleted by test_edits */
    static const char THUMBS[] = "\xf0\x9f\x91\x8d";
    static const char HEART[] = "\xe2\x9d\xa4\xef\xb8\x8f";
    json_t *r = NULL;

    CHECK(run(s, CHAT_STORE_MESSAGE_INSERT, message(M, ROOM1, ALICE, "react to me", NULL, 5002),
              &r) == 0);
    json_decref(r);
    CHECK(run(s, CHAT_STORE_MESSAGE_REACT, react(M, BOB, THUMBS, 1), &r) == 0);
    CHECK(strcmp(reacted(r, THUMBS), "2") == 0);
    CHECK(num(r, "updatedAt") == 5002);
    json_decref(r);
    CHECK(run(s, CHAT_STORE_MESSAGE_REACT, react(M, ALICE, THUMBS, 1), &r) == 0);
    json_decref(r);
    /* once per user per emoji */
    CHECK(run(s, CHAT_STORE_MESSAGE_REACT, react(M, BOB, THUMBS, 1), &r) == 0);
    CHECK(strcmp(reacted(r, THUMBS), "2,1") == 0);
    json_decref(r);
    CHECK(run(s, CHAT_STORE_MESSAGE_REACT, react(M, CAROL, HEART, 1), &r) == 0);
    CHECK(strcmp(reacted(r, HEART), "3") == 0);
    CHECK(json_object_size(json_object_get(r, "reactions")) == 2);
    json_decref(r);
    CHECK(run(s, CHAT_STORE_MESSAGE_REACT, react(M, BOB, THUMBS, 0), &r) == 0);
    CHECK(strcmp(reacted(r, THUMBS), "1") == 0);
    json_decref(r);
    /* removing what is not there changes nothing; the last one out removes the emoji */
    CHECK(run(s, CHAT_STORE_MESSAGE_REACT, react(M, BOB, HEART, 0), &r) == 0);
    CHECK(strcmp(reacted(r, HEART), "3") == 0);
    json_decref(r);
    CHECK(run(s, CHAT_STORE_MESSAGE_REACT, react(M, CAROL, HEART, 0), &r) == 0);
    CHECK(json_object_get(json_object_get(r, "reactions"), HEART) == NULL);
    CHECK(json_object_size(json_object_get(r, "reactions")) == 1);
    json_decref(r);
    /* history carries them */
    CHECK(run(s, CHAT_STORE_MESSAGE_GET, json_pack("{s:s}", "id", M), &r) == 0);
    CHECK(strcmp(reacted(r, THUMBS), "1") == 0);
    CHECK(json_object_size(json_object_get(r, "reactions")) == 1);
    json_decref(r);
    /* no message, a tombstone, bad arguments */
    r = NULL;
    CHECK(run(s, CHAT_STORE_MESSAGE_REACT, react(NO_ROOM, BOB, THUMBS, 1), &r) == CHAT_ENOTFOUND);
    CHECK(run(s, CHAT_STORE_MESSAGE_REACT, react(GONE, BOB, THUMBS, 1), &r) == CHAT_ENOTFOUND);
    CHECK(run(s, CHAT_STORE_MESSAGE_REACT, react(M, BOB, "a.b", 1), &r) == CHAT_EINVAL);
    CHECK(run(s, CHAT_STORE_MESSAGE_REACT, react(M, BOB, "$x", 1), &r) == CHAT_EINVAL);
    CHECK(run(s, CHAT_STORE_MESSAGE_REACT, react(M, BOB, "", 1), &r) == CHAT_EINVAL);
    CHECK(run(s, CHAT_STORE_MESSAGE_REACT,
              json_pack("{s:s,s:s,s:s,s:i}", "id", M, "userId", BOB, "emoji", THUMBS, "on", 1),
              &r) == CHAT_EINVAL);
    CHECK(r == NULL);
    CHECK(run(s, CHAT_STORE_MESSAGE_GET, json_pack("{s:s}", "id", GONE), &r) == 0);
    CHECK(json_object_size(json_object_get(r, "reactions")) == 0);
    json_decref(r);
}

/* ---- the cap on different emoji (max), held against concurrent calls ---- */

static int cap_ok, cap_full, cap_other;

static void on_capped(int status, json_t *result, void *arg)
{
    (void)arg;
    json_decref(result);
    if (status == 0) {
        cap_ok++;
    } else if (status == CHAT_ECONFLICT) {
        cap_full++;
    } else {
        cap_other++;
    }
}

static json_t *react_max(const char *id, const char *user, const char *emoji, int on, int max)
{
    json_t *a = react(id, user, emoji, on);
    json_object_set_new(a, "max", json_integer(max));
    return a;
}

/* concurrent: the backend itself keeps calls for one message apart (SQLite's write
 * transaction), so 24 at once must still come to exactly 20. FerretDB 1.x does not (its
 * findAndModify is a read and then an unconditional write), and the store no longer holds a
 * lock for it: chatd sends one node's reactions to a message to the store one at a time
 * (message_ops.c, checked end to end by spec/e2e/reactions.test.js), so there they go one
 * after another here too, as the domain sends them. */
static void test_reaction_cap(chat_store *s, int concurrent)
{
    static const char M[] = "65000000000000000e000004";
    static const char BUSY[] = "65000000000000000e000005";
    json_t *r = NULL;

    CHECK(run(s, CHAT_STORE_MESSAGE_INSERT, message(M, ROOM1, ALICE, "cap", NULL, 5003), &r) == 0);
    json_decref(r);
    CHECK(run(s, CHAT_STORE_MESSAGE_REACT, react_max(M, BOB, "e0", 1, 3), &r) == 0);
    json_decref(r);
    CHECK(run(s, CHAT_STORE_MESSAGE_REACT, react_max(M, BOB, "e1", 1, 3), &r) == 0);
    json_decref(r);
    CHECK(run(s, CHAT_STORE_MESSAGE_REACT, react_max(M, BOB, "e2", 1, 3), &r) == 0);
    json_decref(r);
    /* full: a fourth emoji is refused and changes nothing; adding to one that is there is not */
    CHECK(run(s, CHAT_STORE_MESSAGE_REACT, react_max(M, BOB, "e3", 1, 3), &r) == CHAT_ECONFLICT);
    json_decref(r);
    CHECK(run(s, CHAT_STORE_MESSAGE_REACT, react_max(M, ALICE, "e0", 1, 3), &r) == 0);
    CHECK(strcmp(reacted(r, "e0"), "2,1") == 0);
    CHECK(json_object_size(json_object_get(r, "reactions")) == 3);
    json_decref(r);
    /* the last one out of e2 makes room for e3 */
    CHECK(run(s, CHAT_STORE_MESSAGE_REACT, react_max(M, BOB, "e2", 0, 3), &r) == 0);
    json_decref(r);
    CHECK(run(s, CHAT_STORE_MESSAGE_REACT, react_max(M, BOB, "e3", 1, 3), &r) == 0);
    CHECK(strcmp(reacted(r, "e3"), "2") == 0);
    CHECK(json_object_get(json_object_get(r, "reactions"), "e2") == NULL);
    json_decref(r);
    /* an emptied emoji does not come back under the cap: e2 again is a new one */
    CHECK(run(s, CHAT_STORE_MESSAGE_REACT, react_max(M, CAROL, "e2", 1, 3), &r) == CHAT_ECONFLICT);
    json_decref(r);
    /* without max nothing is counted (callers that keep no cap) */
    CHECK(run(s, CHAT_STORE_MESSAGE_REACT, react(M, CAROL, "e4", 1), &r) == 0);
    CHECK(json_object_size(json_object_get(r, "reactions")) == 4);
    json_decref(r);

    /* 24 different emoji (at once where the backend allows), max 20: exactly 20 stored */
    CHECK(run(s, CHAT_STORE_MESSAGE_INSERT, message(BUSY, ROOM1, ALICE, "busy", NULL, 5004), &r) ==
          0);
    json_decref(r);
    cap_ok = cap_full = cap_other = 0;
    for (int i = 0; i < 24; i++) {
        char e[8];
        snprintf(e, sizeof e, "b%02d", i);
        CHECK(chat__store_call(s, CHAT_STORE_MESSAGE_REACT,
                               react_max(BUSY, i % 2 ? BOB : CAROL, e, 1, 20), on_capped,
                               NULL) == 0);
        if (!concurrent) {
            CHECK(uv_run(&loop, UV_RUN_DEFAULT) == 0);
        }
    }
    CHECK(uv_run(&loop, UV_RUN_DEFAULT) == 0);
    CHECK(cap_ok == 20);
    CHECK(cap_full == 4);
    CHECK(cap_other == 0);
    CHECK(run(s, CHAT_STORE_MESSAGE_GET, json_pack("{s:s}", "id", BUSY), &r) == 0);
    CHECK(json_object_size(json_object_get(r, "reactions")) == 20);
    json_decref(r);
}

/* ---- read markers and unread counts ---- */

static json_t *read_arg(const char *room_id, const char *user, const char *msg, json_int_t at)
{
    return json_pack("{s:s,s:s,s:s,s:I}", "roomId", room_id, "userId", user, "messageId", msg,
                     "at", at);
}

static json_t *read_state(chat_store *s, const char *user, const char *room_id)
{
    json_t *r = NULL;
    CHECK(run(s, CHAT_STORE_READ_STATE, json_pack("{s:s,s:[s]}", "userId", user, "roomIds", room_id),
              &r) == 0);
    json_t *one = json_incref(json_object_get(r, room_id));
    json_decref(r);
    return one;
}

static void test_reads(chat_store *s)
{
    static const char RR[] = "6500000000000000000007a7";
    static const char R1[] = "65000000000000000f100001", R2[] = "65000000000000000f100002",
                      R3[] = "65000000000000000f100003", R4[] = "65000000000000000f100004";
    json_t *r = NULL;

    CHECK(run(s, CHAT_STORE_ROOM_CREATE, room(RR, "reads", 9000, NULL), &r) == 0);
    json_decref(r);
    CHECK(run(s, CHAT_STORE_MESSAGE_INSERT, message(R1, RR, ALICE, "one", NULL, 9001), &r) == 0);
    json_decref(r);
    CHECK(run(s, CHAT_STORE_MESSAGE_INSERT, message(R2, RR, BOB, "two", NULL, 9002), &r) == 0);
    json_decref(r);
    CHECK(run(s, CHAT_STORE_MESSAGE_INSERT, message(R3, RR, BOB, "three", NULL, 9003), &r) == 0);
    json_decref(r);
    CHECK(run(s, CHAT_STORE_MESSAGE_INSERT, message(R4, RR, BOB, "four", NULL, 9003), &r) == 0);
    json_decref(r);

    /* no marker: every message from the others is unread */
    r = read_state(s, ALICE, RR);
    CHECK(num(r, "unread") == 3);
    CHECK(json_is_null(json_object_get(r, "lastReadId")));
    CHECK(json_object_size(json_object_get(r, "reads")) == 0);
    json_decref(r);

    CHECK(run(s, CHAT_STORE_READ_SET, read_arg(RR, ALICE, R2, 10000), &r) == 0);
    CHECK(json_is_true(json_object_get(r, "moved")));
    CHECK(str(r, "messageId") && strcmp(str(r, "messageId"), R2) == 0);
    CHECK(str(r, "roomId") && strcmp(str(r, "roomId"), RR) == 0);
    CHECK(num(r, "at") == 10000);
    json_decref(r);
    r = read_state(s, ALICE, RR);
    CHECK(num(r, "unread") == 2);
    CHECK(str(r, "lastReadId") && strcmp(str(r, "lastReadId"), R2) == 0);
    json_decref(r);
    /* a tombstone is not unread */
    CHECK(run(s, CHAT_STORE_MESSAGE_DELETE, json_pack("{s:s,s:I}", "id", R4, "updatedAt",
                                                      (json_int_t)9999), &r) == 0);
    json_decref(r);
    r = read_state(s, ALICE, RR);
    CHECK(num(r, "unread") == 1);
    json_decref(r);
    /* never backwards */
    CHECK(run(s, CHAT_STORE_READ_SET, read_arg(RR, ALICE, R1, 11000), &r) == 0);
    CHECK(!json_is_true(json_object_get(r, "moved")));
    CHECK(str(r, "messageId") && strcmp(str(r, "messageId"), R2) == 0);
    CHECK(num(r, "at") == 10000);
    json_decref(r);
    CHECK(run(s, CHAT_STORE_READ_SET, read_arg(RR, ALICE, R2, 11000), &r) == 0);
    CHECK(!json_is_true(json_object_get(r, "moved")));
    json_decref(r);
    /* the same createdAt: the id decides */
    CHECK(run(s, CHAT_STORE_READ_SET, read_arg(RR, BOB, R4, 12000), &r) == 0);
    CHECK(json_is_true(json_object_get(r, "moved")));
    json_decref(r);
    CHECK(run(s, CHAT_STORE_READ_SET, read_arg(RR, BOB, R3, 12001), &r) == 0);
    CHECK(!json_is_true(json_object_get(r, "moved")));
    CHECK(str(r, "messageId") && strcmp(str(r, "messageId"), R4) == 0);
    json_decref(r);
    r = read_state(s, BOB, RR);
    CHECK(num(r, "unread") == 0);
    json_t *reads = json_object_get(r, "reads");
    CHECK(json_object_size(reads) == 2);
    CHECK(str(reads, ALICE) && strcmp(str(reads, ALICE), R2) == 0);
    CHECK(str(reads, BOB) && strcmp(str(reads, BOB), R4) == 0);
    json_decref(r);

    /* a message of another room, or none, is not a marker */
    r = NULL;
    CHECK(run(s, CHAT_STORE_READ_SET, read_arg(ROOM1, ALICE, R3, 1), &r) == CHAT_ENOTFOUND);
    CHECK(run(s, CHAT_STORE_READ_SET, read_arg(RR, ALICE, NO_ROOM, 1), &r) == CHAT_ENOTFOUND);
    CHECK(run(s, CHAT_STORE_READ_SET, json_pack("{s:s,s:s}", "roomId", RR, "userId", ALICE), &r) ==
          CHAT_EINVAL);
    CHECK(run(s, CHAT_STORE_READ_STATE, json_pack("{s:s,s:s}", "userId", ALICE, "roomIds", RR), &r) ==
          CHAT_EINVAL);
    CHECK(r == NULL);
    CHECK(run(s, CHAT_STORE_READ_STATE, json_pack("{s:s,s:[]}", "userId", ALICE, "roomIds"), &r) ==
          0);
    CHECK(json_is_object(r) && json_object_size(r) == 0);
    json_decref(r);
    r = read_state(s, CAROL, RR); /* not even a member: counts like anyone without a marker */
    CHECK(num(r, "unread") == 3);
    json_decref(r);
}

/* ---- notifications ---- */

static json_t *note(const char *id, const char *user, json_int_t created)
{
    return json_pack("{s:s,s:s,s:s,s:{s:s},s:I}", "id", id, "userId", user, "type", "mention",
                     "data", "roomId", ROOM1, "createdAt", created);
}

static void test_notifications(chat_store *s)
{
    static const char N[5][25] = {"65000000000000000a000001", "65000000000000000a000002",
                                  "65000000000000000a000003", "65000000000000000a000004",
                                  "65000000000000000a000005"};
    json_t *r = NULL;

    CHECK(run(s, CHAT_STORE_NOTIFY_INSERT, note(N[0], ALICE, 100), &r) == 0);
    CHECK(str(r, "id") && strcmp(str(r, "id"), N[0]) == 0);
    CHECK(str(r, "type") && strcmp(str(r, "type"), "mention") == 0);
    CHECK(json_is_false(json_object_get(r, "read")));
    CHECK(str(json_object_get(r, "data"), "roomId") &&
          strcmp(str(json_object_get(r, "data"), "roomId"), ROOM1) == 0);
    json_decref(r);
    CHECK(run(s, CHAT_STORE_NOTIFY_INSERT, note(N[1], ALICE, 101), &r) == 0);
    json_decref(r);
    CHECK(run(s, CHAT_STORE_NOTIFY_INSERT, note(N[2], ALICE, 101), &r) == 0);
    json_decref(r);
    CHECK(run(s, CHAT_STORE_NOTIFY_INSERT, note(N[3], BOB, 102), &r) == 0);
    json_decref(r);
    r = NULL;
    CHECK(run(s, CHAT_STORE_NOTIFY_INSERT, note(N[3], BOB, 102), &r) == CHAT_ECONFLICT);
    json_decref(r);
    r = NULL;
    CHECK(run(s, CHAT_STORE_NOTIFY_INSERT, json_pack("{s:s,s:s}", "id", N[4], "userId", ALICE), &r) ==
          CHAT_EINVAL);

    /* newest first, in pages */
    CHECK(run(s, CHAT_STORE_NOTIFY_LIST, json_pack("{s:s,s:i}", "userId", ALICE, "limit", 2), &r) ==
          0);
    json_t *list = json_object_get(r, "notifications");
    CHECK(json_array_size(list) == 2);
    CHECK(strcmp(str(json_array_get(list, 0), "id"), N[2]) == 0);
    CHECK(strcmp(str(json_array_get(list, 1), "id"), N[1]) == 0);
    CHECK(str(r, "nextBefore") && strcmp(str(r, "nextBefore"), N[1]) == 0);
    CHECK(num(r, "unread") == 3);
    json_decref(r);
    CHECK(run(s, CHAT_STORE_NOTIFY_LIST,
              json_pack("{s:s,s:s,s:i}", "userId", ALICE, "before", N[1], "limit", 2), &r) == 0);
    list = json_object_get(r, "notifications");
    CHECK(json_array_size(list) == 1 && strcmp(str(json_array_get(list, 0), "id"), N[0]) == 0);
    CHECK(json_is_null(json_object_get(r, "nextBefore")));
    json_decref(r);
    r = NULL;
    CHECK(run(s, CHAT_STORE_NOTIFY_LIST,
              json_pack("{s:s,s:s,s:i}", "userId", ALICE, "before", N[3], "limit", 2), &r) ==
          CHAT_ENOTFOUND); /* bob's */

    /* read: some, others' ignored, then all */
    CHECK(run(s, CHAT_STORE_NOTIFY_READ, json_pack("{s:s,s:[sss]}", "userId", ALICE, "ids", N[0], N[3], N[0]),
              &r) == 0);
    CHECK(num(r, "updated") == 1);
    json_decref(r);
    CHECK(run(s, CHAT_STORE_NOTIFY_LIST, json_pack("{s:s}", "userId", ALICE), &r) == 0);
    CHECK(num(r, "unread") == 2);
    list = json_object_get(r, "notifications");
    CHECK(json_is_true(json_object_get(json_array_get(list, 2), "read")));
    CHECK(json_is_false(json_object_get(json_array_get(list, 0), "read")));
    json_decref(r);
    CHECK(run(s, CHAT_STORE_NOTIFY_READ, json_pack("{s:s,s:n}", "userId", ALICE, "ids"), &r) == 0);
    CHECK(num(r, "updated") == 2);
    json_decref(r);
    CHECK(run(s, CHAT_STORE_NOTIFY_READ, json_pack("{s:s}", "userId", ALICE), &r) == 0);
    CHECK(num(r, "updated") == 0);
    json_decref(r);
    CHECK(run(s, CHAT_STORE_NOTIFY_LIST, json_pack("{s:s}", "userId", BOB), &r) == 0);
    CHECK(num(r, "unread") == 1);
    json_decref(r);
    r = NULL;
    CHECK(run(s, CHAT_STORE_NOTIFY_READ, json_pack("{s:s,s:s}", "userId", ALICE, "ids", N[0]), &r) ==
          CHAT_EINVAL);
    CHECK(r == NULL);
}

/* ---- uploads ---- */

static void test_uploads(chat_store *s)
{
    static const char U1[] = "65000000000000000b000001";
    json_t *r = NULL;

    CHECK(run(s, CHAT_STORE_UPLOAD_INSERT,
              json_pack("{s:s,s:s,s:s,s:s,s:i,s:I}", "id", U1, "uploaderId", ALICE, "name",
                        "cat.png", "type", "image/png", "size", 1234, "createdAt", (json_int_t)50),
              &r) == 0);
    CHECK(str(r, "name") && strcmp(str(r, "name"), "cat.png") == 0);
    CHECK(num(r, "size") == 1234 && num(r, "createdAt") == 50);
    CHECK(json_is_array(json_object_get(r, "rooms")) && json_array_size(json_object_get(r, "rooms")) == 0);
    json_decref(r);
    r = NULL;
    CHECK(run(s, CHAT_STORE_UPLOAD_INSERT,
              json_pack("{s:s,s:s,s:s,s:s,s:i,s:I}", "id", U1, "uploaderId", BOB, "name", "x",
                        "type", "text/plain", "size", 1, "createdAt", (json_int_t)51),
              &r) == CHAT_ECONFLICT);
    json_decref(r);
    CHECK(run(s, CHAT_STORE_UPLOAD_POST, json_pack("{s:s,s:s}", "id", U1, "roomId", ROOM1), &r) == 0);
    CHECK(json_array_size(json_object_get(r, "rooms")) == 1);
    json_decref(r);
    CHECK(run(s, CHAT_STORE_UPLOAD_POST, json_pack("{s:s,s:s}", "id", U1, "roomId", ROOM1), &r) == 0);
    json_decref(r);
    CHECK(run(s, CHAT_STORE_UPLOAD_POST, json_pack("{s:s,s:s}", "id", U1, "roomId", ROOM2), &r) == 0);
    json_decref(r);
    CHECK(run(s, CHAT_STORE_UPLOAD_GET, json_pack("{s:s}", "id", U1), &r) == 0);
    json_t *rooms = json_object_get(r, "rooms");
    CHECK(json_array_size(rooms) == 2);
    CHECK(strcmp(json_string_value(json_array_get(rooms, 0)), ROOM1) == 0);
    CHECK(strcmp(json_string_value(json_array_get(rooms, 1)), ROOM2) == 0);
    CHECK(str(r, "uploaderId") && strcmp(str(r, "uploaderId"), ALICE) == 0);
    json_decref(r);
    r = NULL;
    /* an avatar is linked to the pseudo-room "*" (uploads.c): kept like any room id */
    CHECK(run(s, CHAT_STORE_UPLOAD_POST, json_pack("{s:s,s:s}", "id", U1, "roomId", "*"), &r) == 0);
    json_decref(r);
    CHECK(run(s, CHAT_STORE_UPLOAD_GET, json_pack("{s:s}", "id", U1), &r) == 0);
    CHECK(json_array_size(json_object_get(r, "rooms")) == 3);
    CHECK(strcmp(json_string_value(json_array_get(json_object_get(r, "rooms"), 2)), "*") == 0);
    json_decref(r);
    r = NULL;
    CHECK(run(s, CHAT_STORE_UPLOAD_GET, json_pack("{s:s}", "id", NO_ROOM), &r) == CHAT_ENOTFOUND);
    CHECK(run(s, CHAT_STORE_UPLOAD_POST, json_pack("{s:s,s:s}", "id", NO_ROOM, "roomId", ROOM1), &r) ==
          CHAT_ENOTFOUND);
    CHECK(run(s, CHAT_STORE_UPLOAD_INSERT, json_pack("{s:s}", "id", U1), &r) == CHAT_EINVAL);
    CHECK(r == NULL);
}

static void on_insert(int status, json_t *result, void *arg)
{
    (void)arg;
    cs.calls++;
    if (status == 0) {
        cs.ok++;
        if (json_is_true(json_object_get(result, "duplicate"))) {
            cs.dups++;
        } else {
            cs.fresh++;
        }
    }
    json_decref(result);
}

static void on_same_client_id(int status, json_t *result, void *arg)
{
    (void)arg;
    cs.calls++;
    const char *id = str(json_object_get(result, "message"), "id");
    if (status == 0 && id) {
        cs.ok++;
        if (!*cs.dup_target) {
            snprintf(cs.dup_target, sizeof cs.dup_target, "%s", id);
        } else if (strcmp(cs.dup_target, id) != 0) {
            cs.dup_mismatch++;
        }
        if (json_is_true(json_object_get(result, "duplicate"))) {
            cs.dups++;
        } else {
            cs.fresh++;
        }
    }
    json_decref(result);
}

static void on_expect_notfound(int status, json_t *result, void *arg)
{
    (void)arg;
    cs.calls++;
    cs.notfound += status == CHAT_ENOTFOUND;
    json_decref(result);
}

typedef struct mixed_answer {
    int status;
    int duplicate;
    char field[16];
    char id[25];
    int order; /* when it was answered */
} mixed_answer;

static mixed_answer mixed[8];
static int mixed_answered;

static void on_mixed(int status, json_t *result, void *arg)
{
    mixed_answer *a = arg;
    a->status = status;
    a->order = mixed_answered++;
    a->duplicate = json_is_true(json_object_get(result, "duplicate"));
    const char *f = str(result, "field");
    const char *id = str(json_object_get(result, "message"), "id");
    snprintf(a->field, sizeof a->field, "%s", f ? f : "");
    snprintf(a->id, sizeof a->id, "%s", id ? id : "");
    json_decref(result);
}

static void test_mixed_batch(chat_store *s)
{
    static const char MIX_ROOM[] = "6500000000000000000006a6";
    char ids[8][25];
    json_t *r = NULL;
    chat_store_stats before, after;

    CHECK(run(s, CHAT_STORE_ROOM_CREATE,
              json_pack("{s:s,s:s,s:[s],s:I}", "id", MIX_ROOM, "type", "group", "participants",
                        ALICE, "createdAt", (json_int_t)7),
              &r) == 0);
    json_decref(r);
    chat__store_stats(s, &before);
    memset(mixed, 0, sizeof mixed);
    mixed_answered = 0;
    for (int i = 0; i < 8; i++) {
        chat__objectid(ids[i]);
    }
    /* 0 ok; 1 no such room; 2 ok; 3 the id of 0 again; 4 the clientMsgId of 2 again (a
     * resend inside the same batch); 5 ok; 6 bad arg (no content); 7 ok */
    json_t *args[8] = {
        message(ids[0], MIX_ROOM, ALICE, "m0", "mix-0", 40000),
        message(ids[1], NO_ROOM, ALICE, "m1", "mix-1", 40001),
        message(ids[2], MIX_ROOM, ALICE, "m2", "mix-2", 40002),
        message(ids[0], MIX_ROOM, ALICE, "m3", NULL, 40003),
        message(ids[4], MIX_ROOM, ALICE, "m4", "mix-2", 40004),
        message(ids[5], MIX_ROOM, ALICE, "m5", NULL, 40005),
        json_pack("{s:s,s:s,s:s,s:I}", "id", ids[6], "roomId", MIX_ROOM, "senderId", ALICE,
                  "createdAt", (json_int_t)40006),
        message(ids[7], MIX_ROOM, ALICE, "m7", "mix-7", 40007),
    };
    for (int i = 0; i < 8; i++) {
        CHECK(chat__store_call(s, CHAT_STORE_MESSAGE_INSERT, args[i], on_mixed, &mixed[i]) == 0);
    }
    CHECK(uv_run(&loop, UV_RUN_DEFAULT) == 0);
    CHECK(mixed_answered == 8);
    CHECK(mixed[0].status == 0 && !mixed[0].duplicate && strcmp(mixed[0].id, ids[0]) == 0);
    CHECK(mixed[1].status == CHAT_ENOTFOUND);
    CHECK(mixed[2].status == 0 && !mixed[2].duplicate && strcmp(mixed[2].id, ids[2]) == 0);
    CHECK(mixed[3].status == CHAT_ECONFLICT && strcmp(mixed[3].field, "id") == 0);
    CHECK(mixed[4].status == 0 && mixed[4].duplicate && strcmp(mixed[4].id, ids[2]) == 0);
    CHECK(mixed[5].status == 0 && !mixed[5].duplicate);
    CHECK(mixed[6].status == CHAT_EINVAL);
    CHECK(mixed[7].status == 0 && !mixed[7].duplicate);
    /* the well-formed inserts were answered in call order */
    CHECK(mixed[0].order < mixed[2].order && mixed[2].order < mixed[5].order &&
          mixed[5].order < mixed[7].order);
    CHECK(run(s, CHAT_STORE_MESSAGES_PAGE, page_arg(MIX_ROOM, NULL, 100), &r) == 0);
    json_t *msgs = json_object_get(r, "messages");
    CHECK(json_array_size(msgs) == 4);
    static const int stored[] = {7, 5, 2, 0}; /* newest first */
    for (size_t i = 0; i < 4 && i < json_array_size(msgs); i++) {
        json_t *m = json_array_get(msgs, i);
        CHECK(strcmp(str(m, "id"), ids[stored[i]]) == 0);
        CHECK(json_is_array(json_object_get(m, "attachments")));
        CHECK(json_is_object(json_object_get(m, "reactions")));
        CHECK(num(m, "updatedAt") == num(m, "createdAt"));
    }
    json_decref(r);
    chat__store_stats(s, &after);
    /* group commit: the seven well-formed inserts queued together went in at most two
     * batches (the first call starts one at once; the rest wait for it) */
    CHECK(after.batched - before.batched == 7);
    CHECK(after.batches - before.batches <= 2);
    CHECK(after.queued == 0);
}

static void test_calls(chat_store *s)
{
    json_t *r = NULL;

    memset(&cs, 0, sizeof cs);
    for (int i = 0; i < 200; i++) {
        char id[25];
        char client_id[16];
        chat__objectid(id);
        snprintf(client_id, sizeof client_id, "bulk-%d", i);
        CHECK(chat__store_call(s, CHAT_STORE_MESSAGE_INSERT,
                               message(id, EMPTY_ROOM, BOB, "bulk", client_id, 20000 + i),
                               on_insert, NULL) == 0);
    }
    CHECK(chat__store_pending(s) == 200);
    CHECK(uv_run(&loop, UV_RUN_DEFAULT) == 0);
    CHECK(chat__store_pending(s) == 0);
    CHECK(cs.calls == 200);
    CHECK(cs.ok == 200);
    CHECK(cs.fresh == 200);
    CHECK(run(s, CHAT_STORE_MESSAGES_PAGE, page_arg(EMPTY_ROOM, NULL, 1000), &r) == 0);
    CHECK(json_array_size(json_object_get(r, "messages")) == 200);
    json_decref(r);

    /* one clientMsgId sent 20 times at once: one row, every caller gets it */
    memset(&cs, 0, sizeof cs);
    for (int i = 0; i < 20; i++) {
        char id[25];
        chat__objectid(id);
        CHECK(chat__store_call(s, CHAT_STORE_MESSAGE_INSERT,
                               message(id, EMPTY_ROOM, CAROL, "once", "storm", 30000 + i),
                               on_same_client_id, NULL) == 0);
    }
    CHECK(chat__store_call(s, CHAT_STORE_ROOM_GET, json_pack("{s:s}", "id", NO_ROOM),
                           on_expect_notfound, NULL) == 0);
    CHECK(uv_run(&loop, UV_RUN_DEFAULT) == 0);
    CHECK(cs.calls == 21);
    CHECK(cs.ok == 20);
    CHECK(cs.fresh == 1);
    CHECK(cs.dups == 19);
    CHECK(cs.dup_mismatch == 0);
    CHECK(cs.notfound == 1);
    CHECK(run(s, CHAT_STORE_MESSAGES_PAGE, page_arg(EMPTY_ROOM, NULL, 1000), &r) == 0);
    CHECK(json_array_size(json_object_get(r, "messages")) == 201);
    json_decref(r);

    /* one batch with inserts the database refuses among good ones: each is answered on its
     * own, the good ones are stored, in call order */
    test_mixed_batch(s);

    /* refused calls never call back, and still take arg (ASan would see a leak) */
    CHECK(chat__store_call(s, CHAT_STORE_NOPS, json_object(), on_insert, NULL) == CHAT_EINVAL);
    CHECK(chat__store_call(s, CHAT_STORE_PING, json_object(), NULL, NULL) == CHAT_EINVAL);
    CHECK(chat__store_call(NULL, CHAT_STORE_PING, json_object(), on_insert, NULL) ==
          CHAT_EINVAL);
    CHECK(chat__store_pending(s) == 0);
}

/* ---- close with callbacks still owed, then reopen ---- */

static void test_close_pending(void)
{
    chat_store *s = NULL;
    CHECK(chat__store_open(&s, &loop, sc_be, sc_target) == 0);
    if (!s) {
        return;
    }
    memset(&cs, 0, sizeof cs);
    for (int i = 0; i < 10; i++) {
        CHECK(chat__store_call(s, CHAT_STORE_ROOM_GET, json_pack("{s:s}", "id", NO_ROOM),
                               on_expect_notfound, NULL) == 0);
    }
    chat__store_close(s); /* waits for the workers; the callbacks still run, once each */
    CHECK(cs.calls == 0);
    CHECK(uv_run(&loop, UV_RUN_DEFAULT) == 0);
    CHECK(cs.calls == 10);
    CHECK(cs.notfound == 10);
}

static void test_reopen(void)
{
    chat_store *s = NULL;
    json_t *r = NULL;

    CHECK(chat__store_open(&s, &loop, sc_be, sc_target) == 0);
    if (!s) {
        return;
    }
    CHECK(run(s, CHAT_STORE_USER_BY_LOGIN, json_pack("{s:s}", "login", "ALICE"), &r) == 0);
    CHECK(num(r, "lastSeen") == 1700000000123);
    json_decref(r);
    CHECK(run(s, CHAT_STORE_ROOM_GET, json_pack("{s:s}", "id", ROOM1), &r) == 0);
    CHECK(strcmp(members(r), "650000000000000000000a01,650000000000000000000c03,"
                             "650000000000000000000b02") == 0);
    CHECK(num(json_object_get(r, "settings"), "slow") == 5);
    json_decref(r);
    static const int sizes[] = {50, 50, 20};
    CHECK(page_all(s, ROOM3, 50, sizes, 3) == 120);
    /* the unique indexes survived too */
    CHECK(run(s, CHAT_STORE_USER_CREATE,
              json_pack("{s:s,s:s,s:s,s:s,s:I}", "id", "650000000000000000000d04", "email",
                        "new@example.com", "username", "BOB", "passwordHash", "h", "createdAt",
                        (json_int_t)1),
              &r) == CHAT_ECONFLICT);
    json_decref(r);
    chat__store_close(s);
}

static void test_objectid(void)
{
    char a[25];
    char b[25];
    chat__objectid(a);
    chat__objectid(b);
    CHECK(strlen(a) == 24 && strspn(a, "0123456789abcdef") == 24);
    CHECK(strcmp(a, b) != 0);
    CHECK(memcmp(a + 8, b + 8, 10) == 0); /* same process: same random part */
    int64_t now = chat__now_ms();
    CHECK(now > 1600000000000 && now < 4102444800000);
    unsigned long secs = strtoul((char[9]){a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], 0},
                                 NULL, 16);
    CHECK(secs + 5 >= (unsigned long)(now / 1000) && secs <= (unsigned long)(now / 1000) + 1);
}

#endif
