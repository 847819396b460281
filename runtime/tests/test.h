/* test.h: what every runtime/tests/test_<sub>.c shares: the counters, CHECK, the closing
 * summary line, and the skip for tests whose service (Redis, FerretDB) is absent.
 *
 *   #include "test.h"
 *   int main(void) { CHECK(1 + 1 == 2); return TEST_DONE("test_x"); }
 *
 * ctest counts exit code 77 (TEST_SKIP_CODE) as skipped, not failed. tools/test.sh starts
 * the services and sets CHAT_TEST_REQUIRE_SERVICES=1, so there an absent service is a
 * failure: CI skips nothing. */
#ifndef CHAT_TEST_H
#define CHAT_TEST_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TEST_SKIP_CODE 77

static int passed, failed;

#define CHECK(cond)                                                                         \
    do {                                                                                    \
        if (cond) {                                                                         \
            passed++;                                                                       \
        } else {                                                                            \
            failed++;                                                                       \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);        \
        }                                                                                   \
    } while (0)

/* A fixed xorshift sequence for randomized tests: the same inputs on every run. */
static inline uint64_t test_rand(void)
{
    static uint64_t x = 0x9e3779b97f4a7c15ull;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return x;
}

/* The last line of every test program, and its exit code. */
#define TEST_DONE(name)                                                                     \
    (printf("%s: %d passed, %d failed\n", (name), passed, failed), failed ? 1 : 0)

/* The exit code for "the service this test needs is not there": skipped (77), or a failure
 * when CHAT_TEST_REQUIRE_SERVICES is set. why says what is missing and how to start it. */
static inline int test_skip(const char *name, const char *why)
{
    const char *req = getenv("CHAT_TEST_REQUIRE_SERVICES");
    if (req && *req && strcmp(req, "0") != 0) {
        fprintf(stderr, "%s: %s (CHAT_TEST_REQUIRE_SERVICES is set, so this fails)\n", name,
                why);
        printf("%s: %d passed, %d failed\n", name, passed, failed + 1);
        return 1;
    }
    fprintf(stderr, "%s: skipped: %s\n", name, why);
    printf("%s: skipped\n", name);
    return TEST_SKIP_CODE;
}

#endif
