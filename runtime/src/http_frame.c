/* http_frame.c: request framing checks (see http_frame.h). */
#include "http_frame.h"

#include "http.h"

#include <string.h>
#include <strings.h>

static int is_ows(char c) { return c == ' ' || c == '\t'; }

/* A Content-Length value: 1*DIGIT with optional whitespace around it, at most 18 digits
 * (larger than anything chatd accepts, and no overflow). Lists ("5, 5") are refused. */
static int parse_length(const char *s, uint64_t *out)
{
    while (is_ows(*s)) {
        s++;
    }
    uint64_t v = 0;
    int digits = 0;
    while (*s >= '0' && *s <= '9') {
        if (++digits > 18) {
            return -1;
        }
        v = v * 10 + (uint64_t)(*s++ - '0');
    }
    while (is_ows(*s)) {
        s++;
    }
    if (!digits || *s) {
        return -1;
    }
    *out = v;
    return 0;
}

/* Is the last coding of a Transfer-Encoding list "chunked"? */
static int last_is_chunked(const char *te)
{
    const char *last = strrchr(te, ',');
    last = last ? last + 1 : te;
    while (is_ows(*last)) {
        last++;
    }
    size_t n = strlen(last);
    while (n && is_ows(last[n - 1])) {
        n--;
    }
    return n == 7 && strncasecmp(last, "chunked", 7) == 0;
}

int chat__http_body_framing(const char *content_length, const char *transfer_encoding,
                            uint64_t *length)
{
    *length = 0;
    if (transfer_encoding) {
        if (content_length) {
            return CHAT_BODY_BAD;
        }
        return last_is_chunked(transfer_encoding) ? CHAT_BODY_CHUNKED : CHAT_BODY_BAD;
    }
    if (!content_length) {
        return CHAT_BODY_NONE;
    }
    if (parse_length(content_length, length)) {
        return CHAT_BODY_BAD;
    }
    return *length ? CHAT_BODY_LENGTH : CHAT_BODY_NONE;
}

int chat__http_wants_close(const char *version, const char *connection)
{
    if (version && strcasecmp(version, "HTTP/1.1") != 0) {
        return 1; /* HTTP/1.0 (or anything we do not know): one request per connection */
    }
    for (const char *p = connection; p && *p;) {
        while (*p == ',' || is_ows(*p)) {
            p++;
        }
        const char *end = p;
        while (*end && *end != ',') {
            end++;
        }
        size_t n = (size_t)(end - p);
        while (n && is_ows(p[n - 1])) {
            n--;
        }
        if (n == 5 && strncasecmp(p, "close", 5) == 0) {
            return 1;
        }
        p = end;
    }
    return 0;
}

/* name=value from the request's query (a bare name gives ""); NULL when absent or when
 * the value does not fit in buf. */
const char *chat__http_query(const chat_http_req *req, const char *name, char *buf,
                             size_t len)
{
    size_t n = strlen(name);
    for (const char *p = req->query; p && *p;) {
        const char *amp = strchr(p, '&');
        size_t plen = amp ? (size_t)(amp - p) : strlen(p);
        if (plen > n && strncmp(p, name, n) == 0 && p[n] == '=') {
            size_t vlen = plen - n - 1;
            if (vlen >= len) {
                return NULL;
            }
            memcpy(buf, p + n + 1, vlen);
            buf[vlen] = '\0';
            return buf;
        }
        if (plen == n && strncmp(p, name, n) == 0) {
            buf[0] = '\0';
            return buf;
        }
        p = amp ? amp + 1 : NULL;
    }
    return NULL;
}
