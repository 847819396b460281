/* static.c: the web page's files (config static_dir), answered for GET and HEAD on paths
 * that no route claims.
 *
 * Reads run on the libuv thread pool, one job per request: resolve the path, check it is a
 * regular file inside the directory, read it, hash it. A cache in memory would still need a
 * stat per request to notice a new deploy, so it would save little besides a read that the
 * kernel's page cache already makes cheap, and it would add invalidation and a memory cap to
 * get right. The files are small (the page and its scripts, the Socket.IO bundle); a file
 * over STATIC_MAX_BYTES is refused rather than held in memory.
 *
 * Safety: the request path is checked on the loop thread (no "." or ".." segments, no
 * dotfiles, no '%' left after lws decoded the URI, no backslashes or control bytes); the
 * worker then resolves every symlink with realpath() and serves the file only if the result
 * is still inside the resolved directory, and opens it with O_NOFOLLOW. The directory is
 * resolved on each request, so an atomic symlink swap of a deploy is picked up at once.
 * Directories are never listed: a path ending in '/' means its index.html, nothing else.
 *
 * Caching: the names are not content-hashed (there is no build step), so nothing may be cached
 * for long or as immutable. Every file gets "public, max-age=300": a browser or CDN serves its
 * copy for at most five minutes after a deploy, then revalidates, and the ETag turns that into
 * a 304 without a body. One lifetime for every file keeps a page's files from drifting far
 * apart. The ETag is a hash of the content rather than size and mtime, so several nodes behind
 * one CDN agree on it, and re-copying an unchanged file does not invalidate caches. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "http.h"
#include "log.h"
#include "rt.h"

#define STATIC_MAX_BYTES (16u << 20)
#define STATIC_CACHE_CONTROL "public, max-age=300"

typedef struct static_type {
    const char *ext;
    const char *type;
} static_type;

static const static_type types[] = {
    {"html", "text/html; charset=utf-8"},
    {"js", "text/javascript; charset=utf-8"},
    {"mjs", "text/javascript; charset=utf-8"},
    {"css", "text/css; charset=utf-8"},
    {"json", "application/json"},
    {"map", "application/json"},
    {"webmanifest", "application/manifest+json"},
    {"txt", "text/plain; charset=utf-8"},
    {"svg", "image/svg+xml"},
    {"png", "image/png"},
    {"jpg", "image/jpeg"},
    {"jpeg", "image/jpeg"},
    {"gif", "image/gif"},
    {"webp", "image/webp"},
    {"ico", "image/x-icon"},
    {"woff2", "font/woff2"},
    {"woff", "font/woff"},
    {"wasm", "application/wasm"},
};

typedef struct static_job {
    uv_work_t work;
    chat_http_req *req;
    char *root; /* the configured directory, absolute */
    char rel[256];
    char *if_none_match;
    /* results, written by the worker */
    int status; /* 200, 304, 404 or 500 */
    const char *type;
    char etag[40]; /* "<32 hex>" with the quotes */
    char *data;
    size_t len;
} static_job;

int chat__static_start(chat_runtime *rt)
{
    chat__http_set_fallback(rt, chat__static_serve);
    const char *dir = rt->cfg.static_dir;
    struct stat st;
    if (!dir || !*dir) {
        return 0; /* set to empty: no page, on purpose */
    }
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        chat__log(CHAT_LOG_WARN, "static_dir_missing",
                  "the web page directory does not exist, so / serves nothing; set "
                  "CHAT_STATIC_DIR to the examples/web folder of a checkout, or to an empty "
                  "value for no page",
                  json_pack("{s:s}", "static_dir", dir));
        return 0;
    }
    if (dir[0] == '/') {
        rt->static_root = strdup(dir);
    } else {
        /* absolute now, so a later chdir cannot move it; symlinks stay unresolved */
        char cwd[PATH_MAX];
        if (!getcwd(cwd, sizeof cwd)) {
            return CHAT_EINTERNAL;
        }
        size_t n = strlen(cwd) + strlen(dir) + 2;
        rt->static_root = malloc(n);
        if (rt->static_root) {
            snprintf(rt->static_root, n, "%s/%s", cwd, dir);
        }
    }
    if (!rt->static_root) {
        return CHAT_ENOMEM;
    }
    chat__log(CHAT_LOG_INFO, "static_dir", "serving the web page at /",
              json_pack("{s:s}", "static_dir", rt->static_root));
    return 0;
}

void chat__static_free(chat_runtime *rt)
{
    free(rt->static_root);
    rt->static_root = NULL;
}

/* The path relative to the root, or -1 for one we never serve. */
static int clean_path(const char *path, char *out, size_t outlen)
{
    if (path[0] != '/') {
        return -1;
    }
    for (const char *seg = path + 1;;) {
        const char *slash = strchr(seg, '/');
        size_t n = slash ? (size_t)(slash - seg) : strlen(seg);
        if (seg[0] == '.' || (n == 0 && slash)) {
            return -1; /* ".", "..", dotfiles, "//" */
        }
        for (size_t i = 0; i < n; i++) {
            unsigned char c = (unsigned char)seg[i];
            if (c < 0x20 || c == 0x7f || c == '\\' || c == '%') {
                return -1;
            }
        }
        if (!slash) {
            break;
        }
        seg = slash + 1;
    }
    size_t len = strlen(path + 1);
    int dir = len == 0 || path[len] == '/';
    if (snprintf(out, outlen, "%s%s", path + 1, dir ? "index.html" : "") >= (int)outlen) {
        return -1;
    }
    return 0;
}

static const char *type_of(const char *rel)
{
    const char *dot = strrchr(rel, '.');
    if (dot && !strchr(dot, '/')) {
        for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
            if (strcasecmp(types[i].ext, dot + 1) == 0) {
                return types[i].type;
            }
        }
    }
    return "application/octet-stream";
}

/* If-None-Match: "*" or a list of entity tags, compared weakly (RFC 9110 13.1.2). */
static int etag_matches(const char *header, const char *etag)
{
    size_t elen = strlen(etag);
    for (const char *p = header; p && *p;) {
        while (*p == ' ' || *p == '\t' || *p == ',') {
            p++;
        }
        if (*p == '*') {
            return 1;
        }
        if (strncmp(p, "W/", 2) == 0) {
            p += 2;
        }
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        while (n && (p[n - 1] == ' ' || p[n - 1] == '\t')) {
            n--;
        }
        if (n == elen && memcmp(p, etag, n) == 0) {
            return 1;
        }
        p = end;
    }
    return 0;
}

static void static_run(uv_work_t *w)
{
    static_job *j = w->data;
    char root[PATH_MAX], path[PATH_MAX], file[PATH_MAX];
    int fd = -1;
    j->status = 404;
    if (!realpath(j->root, root) ||
        snprintf(path, sizeof path, "%s/%s", root, j->rel) >= (int)sizeof path ||
        !realpath(path, file)) {
        return;
    }
    size_t n = strlen(root);
    if (strncmp(file, root, n) != 0 || (file[n] != '/' && root[n - 1] != '/')) {
        return; /* a symlink that leads out of the directory */
    }
    fd = open(file, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        goto done;
    }
    if ((uint64_t)st.st_size > STATIC_MAX_BYTES) {
        chat__log(CHAT_LOG_WARN, "static_file_too_large",
                  "a file in the web page directory is larger than 16 MiB and is not served; "
                  "serve large files from a CDN or object store",
                  json_pack("{s:s,s:I}", "path", file, "bytes", (json_int_t)st.st_size));
        goto done;
    }
    j->status = 500;
    j->data = malloc(st.st_size ? (size_t)st.st_size : 1);
    if (!j->data) {
        goto done;
    }
    while (j->len < (size_t)st.st_size) {
        ssize_t r = read(fd, j->data + j->len, (size_t)st.st_size - j->len);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r <= 0) {
            break; /* shrank while we read: serve what is there */
        }
        j->len += (size_t)r;
    }
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (!EVP_Digest(j->data, j->len, md, &mdlen, EVP_sha256(), NULL) || mdlen < 16) {
        goto done;
    }
    j->etag[0] = '"';
    for (int i = 0; i < 16; i++) {
        snprintf(j->etag + 1 + 2 * i, 3, "%02x", md[i]);
    }
    memcpy(j->etag + 33, "\"", 2);
    j->type = type_of(j->rel);
    j->status = j->if_none_match && etag_matches(j->if_none_match, j->etag) ? 304 : 200;
done:
    if (fd >= 0) {
        close(fd);
    }
}

static void static_done(uv_work_t *w, int status)
{
    static_job *j = w->data;
    chat_http_req *req = j->req;
    if (status) {
        chat__http_respond_error(req, CHAT_EUNAVAIL, "the server is stopping; retry");
    } else if (j->status == 200 || j->status == 304) {
        size_t used = strlen(req->extra_headers); /* after X-Request-Id */
        snprintf(req->extra_headers + used, sizeof req->extra_headers - used,
                 "ETag: %s\r\nCache-Control: " STATIC_CACHE_CONTROL
                 "\r\nX-Content-Type-Options: nosniff\r\n",
                 j->etag);
        /* a 304 carries the length a 200 would have (RFC 9110 8.6); net.c sends no body */
        chat__http_respond(req, j->status, j->type, j->data, j->len);
    } else if (j->status == 404) {
        chat__http_respond_error(req, CHAT_ENOTFOUND, "no such path");
    } else {
        chat__http_respond_error(req, CHAT_EINTERNAL, "could not read the file; retry");
    }
    chat__http_req_unref(req);
    free(j->data);
    free(j->if_none_match);
    free(j->root);
    free(j);
}

int chat__static_serve(chat_http_req *req)
{
    chat_runtime *rt = req->rt;
    if (!rt->static_root || (req->method != CHAT_HTTP_GET && req->method != CHAT_HTTP_HEAD)) {
        return CHAT_ENOTFOUND;
    }
    static_job *j = calloc(1, sizeof *j);
    if (!j) {
        chat__http_respond_error(req, CHAT_ENOMEM, NULL);
        return 0;
    }
    if (clean_path(req->path, j->rel, sizeof j->rel)) {
        free(j);
        return CHAT_ENOTFOUND;
    }
    j->work.data = j;
    j->req = req;
    j->root = strdup(rt->static_root);
    j->if_none_match = req->if_none_match ? strdup(req->if_none_match) : NULL;
    if (!j->root || (req->if_none_match && !j->if_none_match)) {
        goto fail;
    }
    chat__http_req_ref(req);
    if (uv_queue_work(rt->loop, &j->work, static_run, static_done) != 0) {
        chat__http_req_unref(req);
        goto fail;
    }
    return 0;
fail:
    free(j->root);
    free(j->if_none_match);
    free(j);
    chat__http_respond_error(req, CHAT_ENOMEM, NULL);
    return 0;
}
