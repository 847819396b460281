/* http_client.c: one HTTP/1.1 request over plain TCP, for chatctl. Deliberately small: the
 * admin API is reached on the node itself or across a private network (or its own listen
 * address), so chatctl needs no TLS library; put a tunnel in front for anything else. */
#include "http_client.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

int hc_parse_url(const char *url, hc_url *out)
{
    memset(out, 0, sizeof *out);
    if (strncmp(url, "http://", 7) != 0) {
        return -1;
    }
    const char *host = url + 7;
    const char *slash = strchr(host, '/');
    size_t hostlen = slash ? (size_t)(slash - host) : strlen(host);
    if (hostlen == 0 || hostlen >= sizeof out->host) {
        return -1;
    }
    char hostport[256];
    memcpy(hostport, host, hostlen);
    hostport[hostlen] = 0;
    snprintf(out->port, sizeof out->port, "80");
    char *colon = NULL;
    if (hostport[0] == '[') { /* [::1]:8080 */
        char *close = strchr(hostport, ']');
        if (!close) {
            return -1;
        }
        *close = 0;
        snprintf(out->host, sizeof out->host, "%s", hostport + 1);
        colon = close[1] == ':' ? close + 1 : NULL;
    } else {
        colon = strrchr(hostport, ':');
        if (colon) {
            *colon = 0;
        }
        snprintf(out->host, sizeof out->host, "%s", hostport);
    }
    if (colon) {
        char *end;
        long port = strtol(colon + 1, &end, 10);
        if (*end || port < 1 || port > 65535) {
            return -1;
        }
        snprintf(out->port, sizeof out->port, "%ld", port);
    }
    /* a path prefix (chatd behind a proxy at /chat/) without its trailing slash */
    snprintf(out->prefix, sizeof out->prefix, "%s", slash ? slash : "");
    size_t n = strlen(out->prefix);
    while (n && out->prefix[n - 1] == '/') {
        out->prefix[--n] = 0;
    }
    return out->host[0] ? 0 : -1;
}

static int connect_to(const hc_url *u, int timeout_ms, char *err, size_t errlen)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
    int rc = getaddrinfo(u->host, u->port, &hints, &res);
    if (rc) {
        snprintf(err, errlen, "cannot resolve %s: %s", u->host, gai_strerror(rc));
        return -1;
    }
    int fd = -1;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            continue;
        }
        int flags = fcntl(fd, F_GETFL);
        fcntl(fd, F_SETFL, flags | O_NONBLOCK);
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0 || errno == EINPROGRESS) {
            struct pollfd p = {.fd = fd, .events = POLLOUT};
            int soerr = 0;
            socklen_t len = sizeof soerr;
            if (poll(&p, 1, timeout_ms) == 1 &&
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) == 0 && soerr == 0) {
                fcntl(fd, F_SETFL, flags);
                break;
            }
            snprintf(err, errlen, "cannot connect to %s:%s: %s", u->host, u->port,
                     soerr ? strerror(soerr) : "timed out");
        } else {
            snprintf(err, errlen, "cannot connect to %s:%s: %s", u->host, u->port,
                     strerror(errno));
        }
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd >= 0) {
        struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    }
    return fd;
}

static int send_all(int fd, const char *data, size_t len)
{
    while (len) {
        ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
        if (n <= 0) {
            if (n < 0 && errno == EINTR) {
                continue;
            }
            return -1;
        }
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Decodes a chunked body in place; returns its length, or -1 when it is malformed. */
static long dechunk(char *body, size_t len)
{
    size_t in = 0, out = 0;
    for (;;) {
        char *end;
        unsigned long size = strtoul(body + in, &end, 16);
        char *crlf = strstr(body + in, "\r\n");
        if (end == body + in || !crlf) {
            return -1;
        }
        in = (size_t)(crlf - body) + 2;
        if (size == 0) {
            return (long)out;
        }
        if (in + size > len) {
            return -1;
        }
        memmove(body + out, body + in, size);
        out += size;
        in += size + 2;
        if (in > len) {
            return -1;
        }
    }
}

int hc_request(const hc_url *u, const char *method, const char *path, const char *headers,
               const char *body, int timeout_ms, hc_response *res, char *err, size_t errlen)
{
    memset(res, 0, sizeof *res);
    int fd = connect_to(u, timeout_ms, err, errlen);
    if (fd < 0) {
        return -1;
    }
    size_t blen = body ? strlen(body) : 0;
    char length[96] = ""; /* a request without a body says nothing of one */
    if (body) {
        snprintf(length, sizeof length,
                 "Content-Type: application/json\r\nContent-Length: %zu\r\n", blen);
    }
    char head[4096];
    int n = snprintf(head, sizeof head,
                     "%s %s%s HTTP/1.1\r\nHost: %s:%s\r\nUser-Agent: chatctl\r\n"
                     "Accept: application/json\r\nConnection: close\r\n%s%s\r\n",
                     method, u->prefix, path, u->host, u->port, headers ? headers : "", length);
    if (n < 0 || (size_t)n >= sizeof head) {
        snprintf(err, errlen, "the request is too large");
        close(fd);
        return -1;
    }
    if (send_all(fd, head, (size_t)n) || (blen && send_all(fd, body, blen))) {
        snprintf(err, errlen, "cannot send to %s:%s: %s", u->host, u->port, strerror(errno));
        close(fd);
        return -1;
    }
    size_t cap = 65536, len = 0;
    char *buf = malloc(cap + 1);
    for (;;) {
        if (!buf) {
            snprintf(err, errlen, "out of memory");
            close(fd);
            return -1;
        }
        if (len == cap) {
            char *bigger = realloc(buf, cap * 2 + 1);
            if (!bigger) {
                free(buf);
                buf = NULL;
                continue;
            }
            buf = bigger;
            cap *= 2;
        }
        ssize_t got = recv(fd, buf + len, cap - len, 0);
        if (got < 0 && errno == EINTR) {
            continue;
        }
        if (got < 0) {
            snprintf(err, errlen, "no answer from %s:%s: %s", u->host, u->port,
                     errno == EAGAIN ? "timed out" : strerror(errno));
            free(buf);
            close(fd);
            return -1;
        }
        if (got == 0) {
            break;
        }
        len += (size_t)got;
    }
    close(fd);
    buf[len] = 0;
    char *sep = strstr(buf, "\r\n\r\n");
    int status = 0;
    if (!sep || sscanf(buf, "HTTP/1.%*d %d", &status) != 1) {
        snprintf(err, errlen, "%s:%s did not answer HTTP", u->host, u->port);
        free(buf);
        return -1;
    }
    *sep = 0;
    res->status = status;
    const char *rid = strcasestr(buf, "\r\nx-request-id:");
    if (rid) {
        rid += 15;
        rid += strspn(rid, " ");
        snprintf(res->request_id, sizeof res->request_id, "%.*s", (int)strcspn(rid, "\r\n"),
                 rid);
    }
    int chunked = strcasestr(buf, "\r\ntransfer-encoding: chunked") != NULL;
    const char *cl = strcasestr(buf, "\r\ncontent-length:");
    char *start = sep + 4;
    size_t body_len = len - (size_t)(start - buf);
    if (chunked) {
        long d = dechunk(start, body_len);
        if (d < 0) {
            snprintf(err, errlen, "a malformed chunked answer");
            free(buf);
            return -1;
        }
        body_len = (size_t)d;
    } else if (cl) {
        size_t want = strtoul(cl + 17, NULL, 10);
        if (want < body_len) {
            body_len = want;
        }
    }
    memmove(buf, start, body_len);
    buf[body_len] = 0;
    res->body = buf;
    res->body_len = body_len;
    return 0;
}

void hc_response_free(hc_response *res)
{
    free(res->body);
    res->body = NULL;
}
