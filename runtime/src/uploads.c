/* uploads.c: attachments. POST /uploads stores a file (size and media type limited by
 * settings; the upload/before policy may veto) under <data dir>/uploads/<id>, with its
 * metadata in the store; a message refers to it as {uploadId}, which the server turns into
 * {uploadId, name, type, size, url} and links to the room; GET /uploads/:id serves it to the
 * uploader and to members of a room where it was posted. A picture its uploader made their
 * avatar (PATCH /me, chat__avatar_share) is linked to the pseudo-room "*" instead: every
 * signed-in user may then download it, as every signed-in user may read a profile. The
 * bytes live in the data directory with either store (no GridFS yet): nodes of a cluster
 * share it (a volume). File I/O runs on the libuv thread pool (uv_fs_*). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "domain_int.h"
#include "log.h"
#include "metrics.h"

#define UPLOAD_NAME_MAX 255

/* Why an upload or a download was refused (chatd_uploads_refused_total) */
enum {
    REFUSED_TOO_LARGE,
    REFUSED_TYPE,
    REFUSED_POLICY,
    REFUSED_NOT_MEMBER,
    REFUSED_AVATAR,
    REFUSED_REASONS
};
static const char *const refused_reasons[REFUSED_REASONS] = {"too_large", "type", "policy",
                                                             "not_member", "avatar"};

/* In an upload's rooms: the file is a profile picture, readable by every signed-in user. */
#define UPLOAD_EVERYONE "*"
_Static_assert(REFUSED_REASONS <= sizeof ((chat_stats *)0)->uploads_refused /
                                      sizeof ((chat_stats *)0)->uploads_refused[0],
               "rt->stats.uploads_refused counts every reason");

int chat__uploads_metrics(chat_runtime *rt, chat_buf *b)
{
    return chat__metrics_counts(
        b, "chatd_uploads_refused_total",
        "Uploads refused (too_large: over CHAT_UPLOAD_MAX_BYTES; type: a Content-Type not in "
        "CHAT_UPLOAD_TYPES; policy: the upload/before hook said no), downloads refused to "
        "someone neither the uploader nor a member of a room where the file was posted "
        "(not_member), and PATCH /me avatars refused (avatar: someone else's upload, not a "
        "picture, or over CHAT_AVATAR_MAX_BYTES).",
        "reason", refused_reasons, rt->stats.uploads_refused, REFUSED_REASONS);
}

typedef struct upload_io {
    uv_fs_t fs;
    chat_call *c;
    uv_file fd;
    char path[512];
    json_t *upload; /* the metadata being stored / served */
    char *data;     /* GET: the bytes read */
    size_t len, done;
} upload_io;

static void upload_path(chat_runtime *rt, char *out, size_t n, const char *id)
{
    snprintf(out, n, "%s/uploads/%s", rt->cfg.data_dir, id);
}

static json_t *upload_public(json_t *up)
{
    const char *id = json_string_value(json_object_get(up, "id"));
    char url[64];
    snprintf(url, sizeof url, "/uploads/%s", id ? id : "");
    return json_pack("{s:O,s:O,s:O,s:O,s:s,s:O}", "id", json_object_get(up, "id"), "name",
                     json_object_get(up, "name"), "type", json_object_get(up, "type"), "size",
                     json_object_get(up, "size"), "url", url, "createdAt",
                     json_object_get(up, "createdAt"));
}

static void io_free(upload_io *io)
{
    json_decref(io->upload);
    free(io->data);
    free(io);
}

/* ---- POST /uploads ---- */

static void unlinked(uv_fs_t *fs)
{
    upload_io *io = fs->data;
    uv_fs_req_cleanup(fs);
    io_free(io);
}

/* The write failed or the store refused: the file goes, the call fails. */
static void upload_abort(upload_io *io, int err, const char *msg)
{
    uv_loop_t *loop = io->c->rt->loop;
    chat__call_fail(io->c, err, msg);
    io->c = NULL;
    io->fs.data = io;
    if (uv_fs_unlink(loop, &io->fs, io->path, unlinked)) {
        io_free(io);
    }
}

static void upload_stored(int status, json_t *up, void *arg)
{
    upload_io *io = arg;
    if (status) {
        json_decref(up);
        chat_runtime *rt = io->c->rt;
        chat__call_fail(io->c, status, NULL);
        io->c = NULL;
        io->fs.data = io;
        if (uv_fs_unlink(rt->loop, &io->fs, io->path, unlinked)) {
            io_free(io);
        }
        return;
    }
    chat__call_done(io->c, json_pack("{s:o}", "upload", upload_public(up)));
    json_decref(up);
    io_free(io);
}

static void upload_closed(uv_fs_t *fs)
{
    upload_io *io = fs->data;
    int rc = (int)fs->result;
    uv_fs_req_cleanup(fs);
    if (rc < 0) {
        upload_abort(io, CHAT_EUNAVAIL, "the file could not be stored; retry");
        return;
    }
    if (chat__store_call(io->c->rt->store, CHAT_STORE_UPLOAD_INSERT, json_incref(io->upload),
                         upload_stored, io)) {
        upload_abort(io, CHAT_EUNAVAIL, "the store is unavailable; retry shortly");
    }
}

static void upload_written(uv_fs_t *fs)
{
    upload_io *io = fs->data;
    ssize_t n = fs->result;
    chat_runtime *rt = io->c->rt;
    uv_fs_req_cleanup(fs);
    if (n < 0) {
        uv_fs_t close_req;
        uv_fs_close(rt->loop, &close_req, io->fd, NULL); /* sync: a local fd */
        uv_fs_req_cleanup(&close_req);
        chat__log(CHAT_LOG_ERROR, "upload_write_failed", "an upload could not be written",
                  json_pack("{s:s,s:s}", "path", io->path, "error", uv_strerror((int)n)));
        upload_abort(io, CHAT_EUNAVAIL, "the file could not be stored; retry");
        return;
    }
    io->done += (size_t)n;
    chat_http_req *req = io->c->req;
    if (io->done < io->len) {
        uv_buf_t b = uv_buf_init((char *)req->body.data + io->done, (unsigned)(io->len - io->done));
        if (uv_fs_write(rt->loop, &io->fs, io->fd, &b, 1, -1, upload_written) == 0) {
            return;
        }
    }
    uv_fs_close(rt->loop, &io->fs, io->fd, upload_closed);
}

static void upload_opened(uv_fs_t *fs)
{
    upload_io *io = fs->data;
    int fd = (int)fs->result;
    uv_fs_req_cleanup(fs);
    if (fd < 0) {
        chat__log(CHAT_LOG_ERROR, "upload_write_failed", "an upload could not be created",
                  json_pack("{s:s,s:s}", "path", io->path, "error", uv_strerror(fd)));
        chat__call_fail(io->c, CHAT_EUNAVAIL, "the file could not be stored; retry");
        io_free(io);
        return;
    }
    io->fd = fd;
    chat_http_req *req = io->c->req;
    uv_buf_t b = uv_buf_init((char *)req->body.data, (unsigned)io->len);
    if (uv_fs_write(io->c->rt->loop, &io->fs, fd, &b, 1, -1, upload_written)) {
        io->fs.result = UV_EIO;
        upload_written(&io->fs);
    }
}

static void upload_allowed(chat_call *c, json_t *ev)
{
    json_t *up = json_object_get(ev, "upload");
    const char *name = json_string_value(json_object_get(up, "name"));
    if (!name || !*name || strlen(name) > UPLOAD_NAME_MAX || strpbrk(name, "/\\\"")) {
        chat__call_fail(c, CHAT_EINVAL, "a policy gave the file a name that cannot be used");
        return;
    }
    upload_io *io = calloc(1, sizeof *io);
    if (!io) {
        chat__call_fail(c, CHAT_ENOMEM, NULL);
        return;
    }
    char id[25];
    chat__objectid(id);
    io->c = c;
    io->len = c->req->body.len;
    io->fs.data = io;
    io->upload = json_pack("{s:s,s:s,s:s,s:O,s:I,s:I}", "id", id, "uploaderId", c->user_id,
                           "name", name, "type", json_object_get(c->input, "type"), "size",
                           (json_int_t)io->len, "createdAt", (json_int_t)chat__now_ms());
    upload_path(c->rt, io->path, sizeof io->path, id);
    if (!io->upload || uv_fs_open(c->rt->loop, &io->fs, io->path, O_WRONLY | O_CREAT | O_EXCL,
                                  0600, upload_opened)) {
        chat__call_fail(c, CHAT_EINTERNAL, "could not store the file");
        io_free(io);
    }
}

/* The upload/before policy answered (as chat__call_hook, counting a veto; a script that
 * failed or ran out of memory is not a veto: chatd_script_errors_total counts it). */
static void upload_decided(int status, const char *message, json_t *ev, void *arg)
{
    chat_call *c = arg;
    if (status) {
        if (status != CHAT_EINTERNAL && status != CHAT_ENOMEM) {
            c->rt->stats.uploads_refused[REFUSED_POLICY]++;
        }
        json_decref(ev);
        chat__call_fail(c, status, message);
        return;
    }
    upload_allowed(c, ev);
    json_decref(ev);
}

/* "image/png; charset=x" -> "image/png" when the settings allow it (any case); else NULL. */
static int type_allowed(chat_runtime *rt, const char *type, char *out, size_t n)
{
    if (!type) {
        return 0;
    }
    size_t len = strcspn(type, "; \t");
    if (!len || len >= n) {
        return 0;
    }
    for (size_t i = 0; i < len; i++) {
        out[i] = (char)((type[i] >= 'A' && type[i] <= 'Z') ? type[i] + 32 : type[i]);
    }
    out[len] = '\0';
    const char *list = rt->cfg.upload_types ? rt->cfg.upload_types : "";
    for (const char *p = list; *p;) {
        while (*p == ',' || *p == ' ') {
            p++;
        }
        size_t m = strcspn(p, ", ");
        if (m == len && strncasecmp(p, out, len) == 0) {
            return 1;
        }
        p += m;
    }
    return 0;
}

static void rest_upload(chat_http_req *req, const char *user_id)
{
    char name[UPLOAD_NAME_MAX + 2], type[128];
    const char *n = chat__http_query(req, "name", name, sizeof name);
    if (req->body.len > (size_t)req->rt->cfg.upload_max_bytes) {
        req->rt->stats.uploads_refused[REFUSED_TOO_LARGE]++;
        char msg[128];
        snprintf(msg, sizeof msg, "the file is larger than %d bytes", req->rt->cfg.upload_max_bytes);
        chat__http_respond_error(req, CHAT_ETOOBIG, msg);
        return;
    }
    if (!req->body.len) {
        chat__http_respond_error(req, CHAT_EINVAL, "send the file's bytes as the body");
        return;
    }
    if (!n || !*n || strpbrk(n, "/\\\"")) {
        chat__http_respond_error(req, CHAT_EINVAL,
                                 "name the file: ?name=<1 to 255 bytes, no '/', '\\' or '\"'>");
        return;
    }
    for (const char *p = n; *p; p++) {
        if ((unsigned char)*p < 0x20) {
            chat__http_respond_error(req, CHAT_EINVAL, "the file name has control characters");
            return;
        }
    }
    if (!type_allowed(req->rt, req->content_type_in, type, sizeof type)) {
        req->rt->stats.uploads_refused[REFUSED_TYPE]++;
        char msg[512];
        snprintf(msg, sizeof msg, "Content-Type must be one of: %.400s",
                 req->rt->cfg.upload_types ? req->rt->cfg.upload_types : "");
        chat__http_respond_error(req, CHAT_EINVAL, msg);
        return;
    }
    chat_call *c = chat__call_from_req(req, user_id, 201);
    if (!c) {
        return;
    }
    c->input = json_pack("{s:s,s:s,s:I}", "name", n, "type", type, "size",
                         (json_int_t)req->body.len);
    json_t *ev = json_pack("{s:o,s:O}", "user", chat__call_user_json(c), "upload", c->input);
    if (!ev) {
        chat__call_fail(c, CHAT_ENOMEM, NULL);
        return;
    }
    if (!chat__script_has(c->rt->script, "upload/before")) {
        upload_allowed(c, ev);
        json_decref(ev);
        return;
    }
    chat__script_run(c->rt->script, "upload/before", ev, upload_decided, c);
}

/* ---- GET /uploads/:id ---- */

/* The response keeps a pointer to its Content-Type: a string that lives for ever. Types
 * outside this table are served as application/octet-stream. */
static const char *served_type(const char *type)
{
    static const char *const known[] = {
        "image/png", "image/jpeg", "image/gif", "image/webp", "image/avif", "application/pdf",
        "text/plain", "audio/mpeg", "audio/ogg", "video/mp4", "video/webm", "application/zip",
    };
    for (size_t i = 0; type && i < sizeof known / sizeof known[0]; i++) {
        if (strcmp(type, known[i]) == 0) {
            return known[i];
        }
    }
    return "application/octet-stream";
}

static void served_closed(uv_fs_t *fs)
{
    uv_fs_req_cleanup(fs);
    free(fs);
}

static void serve_read(uv_fs_t *fs)
{
    upload_io *io = fs->data;
    ssize_t n = fs->result;
    chat_runtime *rt = io->c->rt;
    uv_fs_req_cleanup(fs);
    if (n > 0) {
        io->done += (size_t)n;
        if (io->done < io->len) {
            uv_buf_t b = uv_buf_init(io->data + io->done, (unsigned)(io->len - io->done));
            if (uv_fs_read(rt->loop, &io->fs, io->fd, &b, 1, -1, serve_read) == 0) {
                return;
            }
        }
    }
    uv_fs_t *close_req = malloc(sizeof *close_req);
    if (!close_req || uv_fs_close(rt->loop, close_req, io->fd, served_closed)) {
        free(close_req);
    }
    chat_call *c = io->c;
    if (n < 0 || io->done != io->len) {
        chat__call_fail(c, CHAT_EUNAVAIL, "the file could not be read; retry");
        io_free(io);
        return;
    }
    const char *type = json_string_value(json_object_get(io->upload, "type"));
    const char *name = json_string_value(json_object_get(io->upload, "name"));
    int inline_ok = type && strncmp(type, "image/", 6) == 0;
    snprintf(c->req->extra_headers, sizeof c->req->extra_headers,
             "Content-Disposition: %s; filename=\"%.120s\"\r\nX-Content-Type-Options: nosniff\r\n"
             "Cache-Control: private, max-age=3600\r\n",
             inline_ok ? "inline" : "attachment", name ? name : "file");
    chat__http_respond(c->req, 200, served_type(type), io->data, io->len);
    chat__call_free(c);
    io_free(io);
}

static void serve_opened(uv_fs_t *fs)
{
    upload_io *io = fs->data;
    int fd = (int)fs->result;
    uv_fs_req_cleanup(fs);
    if (fd < 0) {
        chat__call_fail(io->c, fd == UV_ENOENT ? CHAT_ENOTFOUND : CHAT_EUNAVAIL,
                        fd == UV_ENOENT ? "the file is gone" : "the file could not be read; retry");
        io_free(io);
        return;
    }
    io->fd = fd;
    io->len = (size_t)json_integer_value(json_object_get(io->upload, "size"));
    io->data = malloc(io->len ? io->len : 1);
    uv_buf_t b = uv_buf_init(io->data, (unsigned)io->len);
    if (!io->data || uv_fs_read(io->c->rt->loop, &io->fs, fd, &b, 1, 0, serve_read)) {
        io->fs.result = UV_ENOMEM;
        serve_read(&io->fs);
    }
}

static void serve(chat_call *c, json_t *up)
{
    upload_io *io = calloc(1, sizeof *io);
    if (!io) {
        json_decref(up);
        chat__call_fail(c, CHAT_ENOMEM, NULL);
        return;
    }
    io->c = c;
    io->upload = up;
    io->fs.data = io;
    upload_path(c->rt, io->path, sizeof io->path, json_string_value(json_object_get(up, "id")));
    if (uv_fs_open(c->rt->loop, &io->fs, io->path, O_RDONLY, 0, serve_opened)) {
        chat__call_fail(c, CHAT_EINTERNAL, NULL);
        io_free(io);
    }
}

static void check_next_room(chat_call *c);

static void room_for_download(int status, json_t *room, void *arg)
{
    chat_call *c = arg;
    int member = !status && chat__json_has_string(json_object_get(room, "participants"), c->user_id);
    json_decref(room);
    if (status && status != CHAT_ENOTFOUND) {
        chat__call_fail(c, status, NULL);
        return;
    }
    if (member) {
        json_t *up = c->room; /* the upload rides in the spare slot */
        c->room = NULL;
        serve(c, up);
        return;
    }
    check_next_room(c);
}

/* c->room: the upload; c->input: the rooms still to check. */
static void check_next_room(chat_call *c)
{
    json_t *id = json_array_get(c->input, 0);
    if (!id) {
        c->rt->stats.uploads_refused[REFUSED_NOT_MEMBER]++;
        chat__call_fail(c, CHAT_EFORBIDDEN,
                        "only the uploader and members of a room where it was posted may "
                        "download this file");
        return;
    }
    json_t *arg = json_pack("{s:O}", "id", id);
    json_array_remove(c->input, 0);
    chat__call_store(c, CHAT_STORE_ROOM_GET, arg, room_for_download);
}

static void upload_loaded(int status, json_t *up, void *arg)
{
    chat_call *c = arg;
    if (status) {
        json_decref(up);
        chat__call_fail(c, status, status == CHAT_ENOTFOUND ? "no file with that id" : NULL);
        return;
    }
    const char *uploader = json_string_value(json_object_get(up, "uploaderId"));
    if ((uploader && strcmp(uploader, c->user_id) == 0) ||
        chat__json_has_string(json_object_get(up, "rooms"), UPLOAD_EVERYONE)) {
        serve(c, up);
        return;
    }
    c->input = json_deep_copy(json_object_get(up, "rooms"));
    c->room = up;
    check_next_room(c);
}

static void rest_download(chat_http_req *req, const char *user_id)
{
    const char *id = req->path + strlen("/uploads/");
    if (!chat__is_object_id(id)) {
        chat__http_respond_error(req, CHAT_ENOTFOUND, "no file with that id");
        return;
    }
    chat_call *c = chat__call_from_req(req, user_id, 200);
    if (c) {
        chat__call_store(c, CHAT_STORE_UPLOAD_GET, json_pack("{s:s}", "id", id), upload_loaded);
    }
}

/* ---- attachments of a message: {uploadId} -> the file's metadata, linked to the room ---- */

typedef struct attach_ctx {
    chat_call *c;
    chat_call_step next;
    size_t i; /* the attachment being resolved */
    int linking;
} attach_ctx;

static void attach_step(attach_ctx *a);

static void attach_linked(int status, json_t *up, void *arg)
{
    attach_ctx *a = arg;
    json_decref(up);
    if (status) {
        chat__call_fail(a->c, status, NULL);
        free(a);
        return;
    }
    a->i++;
    attach_step(a);
}

static void attach_loaded(int status, json_t *up, void *arg)
{
    attach_ctx *a = arg;
    chat_call *c = a->c;
    if (status) {
        json_decref(up);
        chat__call_fail(c, status,
                        status == CHAT_ENOTFOUND ? "an attachment names no uploaded file" : NULL);
        free(a);
        return;
    }
    const char *uploader = json_string_value(json_object_get(up, "uploaderId"));
    if (!uploader || strcmp(uploader, c->user_id) != 0) {
        json_decref(up);
        chat__call_fail(c, CHAT_EFORBIDDEN, "attach only files you uploaded");
        free(a);
        return;
    }
    json_t *pub = upload_public(up);
    json_t *att = json_pack("{s:O,s:O,s:O,s:O,s:O}", "uploadId", json_object_get(pub, "id"),
                            "name", json_object_get(pub, "name"), "type",
                            json_object_get(pub, "type"), "size", json_object_get(pub, "size"),
                            "url", json_object_get(pub, "url"));
    json_decref(pub);
    json_decref(up);
    json_array_set_new(json_object_get(c->input, "attachments"), a->i, att);
    a->i++;
    attach_step(a);
}

/* First every {uploadId} is checked and filled in, then every one is linked to the room (so
 * nothing is linked when one of them is refused), then next. */
static void attach_step(attach_ctx *a)
{
    chat_call *c = a->c;
    json_t *list = json_object_get(c->input, "attachments");
    for (; a->i < json_array_size(list); a->i++) {
        json_t *id = json_object_get(json_array_get(list, a->i), "uploadId");
        if (!id) {
            continue; /* plain metadata, as before uploads existed */
        }
        if (!chat__is_object_id(json_string_value(id))) {
            chat__call_fail(c, CHAT_EINVAL, "uploadId must be an upload id (24 hex characters)");
            free(a);
            return;
        }
        int rc = a->linking
                     ? chat__store_call(c->rt->store, CHAT_STORE_UPLOAD_POST,
                                        json_pack("{s:O,s:s}", "id", id, "roomId", c->room_id),
                                        attach_linked, a)
                     : chat__store_call(c->rt->store, CHAT_STORE_UPLOAD_GET,
                                        json_pack("{s:O}", "id", id), attach_loaded, a);
        if (rc) {
            chat__call_fail(c, rc, "the store is unavailable; retry shortly");
            free(a);
        }
        return;
    }
    if (!a->linking) {
        a->linking = 1;
        a->i = 0;
        attach_step(a);
        return;
    }
    chat_call_step next = a->next;
    free(a);
    next(c);
}

void chat__attachments_resolve(chat_call *c, chat_call_step next)
{
    json_t *list = json_object_get(c->input, "attachments");
    int any = 0;
    size_t i;
    json_t *x;
    json_array_foreach(list, i, x)
    {
        any |= json_object_get(x, "uploadId") != NULL;
    }
    attach_ctx *a = any ? calloc(1, sizeof *a) : NULL;
    if (!a) {
        if (any) {
            chat__call_fail(c, CHAT_ENOMEM, NULL);
        } else {
            next(c);
        }
        return;
    }
    a->c = c;
    a->next = next;
    attach_step(a);
}

/* ---- an upload as a profile picture (PATCH /me) ---- */

/* The media types a picture can have: served inline as what they are (served_type). */
static int avatar_type(const char *type)
{
    static const char *const ok[] = {"image/png", "image/jpeg", "image/gif", "image/webp",
                                     "image/avif"};
    for (size_t i = 0; type && i < sizeof ok / sizeof ok[0]; i++) {
        if (strcmp(type, ok[i]) == 0) {
            return 1;
        }
    }
    return 0;
}

static void avatar_refuse(chat_call *c, int err, const char *msg)
{
    c->rt->stats.uploads_refused[REFUSED_AVATAR]++;
    chat__call_fail(c, err, msg);
}

static void avatar_shared(int status, json_t *up, void *arg)
{
    chat_call *c = arg;
    json_decref(up);
    if (status) {
        chat__call_fail(c, status, status == CHAT_ENOTFOUND ? "no file with that id" : NULL);
        return;
    }
    c->next(c);
}

static void avatar_loaded(int status, json_t *up, void *arg)
{
    chat_call *c = arg;
    if (status) {
        json_decref(up);
        chat__call_fail(c, status,
                        status == CHAT_ENOTFOUND ? "avatar names no uploaded file" : NULL);
        return;
    }
    const char *uploader = json_string_value(json_object_get(up, "uploaderId"));
    json_int_t size = json_integer_value(json_object_get(up, "size"));
    char msg[128];
    if (!uploader || strcmp(uploader, c->user_id) != 0) {
        avatar_refuse(c, CHAT_EFORBIDDEN, "an avatar must be a picture you uploaded");
    } else if (!avatar_type(json_string_value(json_object_get(up, "type")))) {
        avatar_refuse(c, CHAT_EINVAL,
                      "an avatar upload must be a picture (image/png, image/jpeg, image/gif, "
                      "image/webp or image/avif)");
    } else if (size > c->rt->cfg.avatar_max_bytes) {
        snprintf(msg, sizeof msg, "an avatar picture is at most %d bytes",
                 c->rt->cfg.avatar_max_bytes);
        avatar_refuse(c, CHAT_ETOOBIG, msg);
    } else if (chat__json_has_string(json_object_get(up, "rooms"), UPLOAD_EVERYONE)) {
        c->next(c); /* shared already (set before, or by another PATCH) */
    } else {
        /* shared before the profile changes: should that fail, the picture is readable and
         * not yet anyone's avatar (a retry finishes it), never an avatar nobody can see */
        chat__call_store(c, CHAT_STORE_UPLOAD_POST,
                         json_pack("{s:O,s:s}", "id", json_object_get(up, "id"), "roomId",
                                   UPLOAD_EVERYONE),
                         avatar_shared);
    }
    json_decref(up);
}

void chat__avatar_share(chat_call *c, const char *id, chat_call_step next)
{
    c->next = next;
    chat__call_store(c, CHAT_STORE_UPLOAD_GET, json_pack("{s:s}", "id", id), avatar_loaded);
}

static const chat_http_route upload_routes[] = {
    {CHAT_HTTP_POST, "/uploads", 1, rest_upload},
    {CHAT_HTTP_GET, "/uploads/*", 1, rest_download},
};

int chat__uploads_start(chat_runtime *rt)
{
    char path[512];
    snprintf(path, sizeof path, "%s/uploads", rt->cfg.data_dir);
    if (mkdir(path, 0700) != 0 && errno != EEXIST) {
        chat__log(CHAT_LOG_ERROR, "uploads_dir_failed", "cannot create the uploads directory",
                  json_pack("{s:s,s:s}", "dir", path, "error", strerror(errno)));
        return CHAT_EUNAVAIL;
    }
    return chat__http_routes_add(rt, upload_routes, sizeof upload_routes / sizeof upload_routes[0]);
}
