/* http_client.h: chatctl's HTTP client (http:// only; see http_client.c). */
#ifndef CHATCTL_HTTP_CLIENT_H
#define CHATCTL_HTTP_CLIENT_H

#include <stddef.h>

typedef struct hc_url {
    char host[256];
    char port[8];
    char prefix[512]; /* a path before the API's own paths, without a trailing slash */
} hc_url;

typedef struct hc_response {
    int status;
    char *body; /* NUL-terminated (owned) */
    size_t body_len;
    char request_id[80];
} hc_response;

/* "http://host[:port][/prefix]". 0 or -1. */
int hc_parse_url(const char *url, hc_url *out);
/* headers: extra "Name: value\r\n" lines or NULL; body: JSON or NULL. 0, or -1 with err set
 * (no connection, no answer, not HTTP). */
int hc_request(const hc_url *u, const char *method, const char *path, const char *headers,
               const char *body, int timeout_ms, hc_response *res, char *err, size_t errlen);
void hc_response_free(hc_response *res);

#endif
