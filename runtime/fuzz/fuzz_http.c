/* fuzz_http.c: libFuzzer target for the HTTP request checks chatd owns on top of
 * libwebsockets (runtime/src/http_frame.c) and its query lookup (chat__http_query).
 * Input: up to four fields separated by NUL bytes: Content-Length, Transfer-Encoding,
 * version, Connection; the first byte's low bits say which of the first two are absent, and
 * the whole input is also a query string. Invariants, checked against a slow reference:
 *   - Transfer-Encoding present: never a body length (400 or 411, and close);
 *   - a body length only from a Content-Length of 1..18 digits with optional blanks around,
 *     and it is that number; anything else present is refused;
 *   - Connection: close (any case, anywhere in the list) or a version other than HTTP/1.1
 *     always closes; an absent Connection on HTTP/1.1 never does;
 *   - a query value comes back NUL-terminated inside the buffer, and only for a name that
 *     is in the query.
 * A broken invariant aborts (libFuzzer reports it as a crash). */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http_frame.h"
#include "http.h"

#define CHECK(c)                                                                            \
    do {                                                                                    \
        if (!(c)) {                                                                         \
            fprintf(stderr, "fuzz_http: %s:%d: %s\n", __FILE__, __LINE__, #c);              \
            abort();                                                                        \
        }                                                                                   \
    } while (0)

/* the reference: Content-Length as RFC 9110 says, more slowly */
static int ref_length(const char *s, uint64_t *out)
{
    size_t n = strlen(s), a = 0, b = n;
    while (a < n && (s[a] == ' ' || s[a] == '\t')) {
        a++;
    }
    while (b > a && (s[b - 1] == ' ' || s[b - 1] == '\t')) {
        b--;
    }
    if (b == a || b - a > 18) {
        return -1;
    }
    uint64_t v = 0;
    for (size_t i = a; i < b; i++) {
        if (!isdigit((unsigned char)s[i])) {
            return -1;
        }
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    *out = v;
    return 0;
}

static int ref_has_close(const char *c)
{
    char *copy = strdup(c), *save = NULL;
    int found = 0;
    CHECK(copy);
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        while (*t == ' ' || *t == '\t') {
            t++;
        }
        size_t n = strlen(t);
        while (n && (t[n - 1] == ' ' || t[n - 1] == '\t')) {
            n--;
        }
        if (n == 5 && strncasecmp(t, "close", 5) == 0) {
            found = 1;
        }
    }
    free(copy);
    return found;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) {
        return 0;
    }
    char *s = malloc(size + 1);
    CHECK(s);
    memcpy(s, data + 1, size - 1);
    s[size - 1] = '\0';
    /* the fields, each NUL-terminated inside s */
    char *field[4] = {NULL, NULL, NULL, NULL};
    char *p = s, *end = s + size - 1;
    for (int i = 0; i < 4 && p <= end; i++) {
        field[i] = p;
        p += strlen(p) + 1;
    }
    const char *cl = (data[0] & 1) ? NULL : field[0];
    const char *te = (data[0] & 2) ? NULL : field[1];
    const char *version = field[2];
    const char *connection = field[3];

    uint64_t len = 12345;
    int kind = chat__http_body_framing(cl, te, &len);
    CHECK(kind == CHAT_BODY_NONE || kind == CHAT_BODY_LENGTH || kind == CHAT_BODY_BAD ||
          kind == CHAT_BODY_CHUNKED);
    if (te) {
        CHECK(kind == CHAT_BODY_BAD || kind == CHAT_BODY_CHUNKED);
        CHECK(!cl || kind == CHAT_BODY_BAD);
    } else if (!cl) {
        CHECK(kind == CHAT_BODY_NONE && len == 0);
    } else {
        uint64_t want;
        if (ref_length(cl, &want)) {
            CHECK(kind == CHAT_BODY_BAD);
        } else {
            CHECK(len == want);
            CHECK(kind == (want ? CHAT_BODY_LENGTH : CHAT_BODY_NONE));
        }
    }

    int close = chat__http_wants_close(version, connection);
    CHECK(close == 0 || close == 1);
    if ((version && strcasecmp(version, "HTTP/1.1") != 0) || (connection && ref_has_close(connection))) {
        CHECK(close == 1);
    }
    if ((!version || strcasecmp(version, "HTTP/1.1") == 0) && !connection) {
        CHECK(close == 0);
    }

    /* the whole input as a query string, looked up by a name taken from its start */
    chat_http_req req;
    memset(&req, 0, sizeof req);
    req.query = s;
    char name[8], out[16];
    size_t nlen = strcspn(s, "=&");
    if (nlen >= sizeof name) {
        nlen = sizeof name - 1;
    }
    memcpy(name, s, nlen);
    name[nlen] = '\0';
    memset(out, 'Z', sizeof out);
    const char *v = chat__http_query(&req, name, out, sizeof out);
    if (v) {
        CHECK(v == out);
        CHECK(memchr(out, '\0', sizeof out) != NULL);
        CHECK(strstr(s, name) != NULL);
    }
    free(s);
    return 0;
}
