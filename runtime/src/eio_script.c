/* eio_script.c: the plain Engine.IO endpoint the scripts serve (cfg.eio_path, default
 * /engine.io/), for engine.io-client users who want Engine.IO without Socket.IO. It is the
 * second layer above session.c, beside sock.c: session.c does the whole protocol (handshake,
 * both transports and the upgrade, heartbeats, payload framing, error answers), and this
 * file turns its sessions into the hooks eio/open, eio/message and eio/close. The scripts
 * answer with chat.eio.send and chat.eio.close (lua_eio.c), which reach this file through
 * rt->eio_actions. Loop thread only. */
#include <string.h>

#include "eio.h"
#include "log.h"
#include "rt.h"
#include "script.h"
#include "session.h"

static void notified(int status, const char *message, json_t *ev, void *arg)
{
    (void)status;
    (void)message;
    (void)arg;
    json_decref(ev);
}

/* Takes ev. Hooks run in order of arrival: each in its own coroutine, so one that waits on
 * I/O does not hold up the next session's. */
static void notify(chat_runtime *rt, const char *hook, json_t *ev)
{
    if (ev && rt->script && chat__script_has(rt->script, hook)) {
        chat__script_run(rt->script, hook, ev, notified, NULL);
    } else {
        json_decref(ev);
    }
}

static void on_open(chat_session *s)
{
    notify(chat__session_rt(s), "eio/open",
           json_pack("{s:s,s:s}", "sid", chat__session_sid(s), "peer", chat__session_peer(s)));
}

/* Text reaches the script as a string, binary as chat.binary ({"$binary": base64} on the way
 * through the JSON the hooks take). */
static int on_message(chat_session *s, const uint8_t *data, size_t len, int binary)
{
    chat_runtime *rt = chat__session_rt(s);
    if (!rt->script || !chat__script_has(rt->script, "eio/message")) {
        return 0;
    }
    json_t *value;
    if (binary) {
        chat_buf b = CHAT_BUF_INIT;
        if (chat__base64_encode(&b, data, len) || chat__buf_terminate(&b)) {
            chat__buf_free(&b);
            return 0; /* out of memory: the message is dropped, the session goes on */
        }
        value = json_pack("{s:s}", "$binary", (const char *)b.data);
        chat__buf_free(&b);
    } else {
        value = json_stringn(len ? (const char *)data : "", len); /* UTF-8, checked by eio.c */
    }
    if (!value) {
        return 0;
    }
    notify(rt, "eio/message",
           json_pack("{s:s,s:o}", "sid", chat__session_sid(s), "data", value));
    return 0;
}

static void on_close(chat_session *s, const char *reason)
{
    notify(chat__session_rt(s), "eio/close",
           json_pack("{s:s,s:s}", "sid", chat__session_sid(s), "reason", reason));
}

/* No namespace to wait for: an open session is in use (the bounds on idle sessions). */
static int connected(chat_session *s)
{
    (void)s;
    return 1;
}

static const chat_session_handler eio_handler = {
    .on_open = on_open,
    .on_message = on_message,
    .on_close = on_close,
    .connected = connected,
};

/* ---- what the scripts may do (lua_eio.c) ---- */

static int eio_send(chat_runtime *rt, const char *sid, const void *data, size_t len, int binary)
{
    chat_session *s = chat__session_get(rt, sid, &eio_handler);
    if (!s) {
        return CHAT_ENOTFOUND;
    }
    chat_frame *f;
    if (binary) {
        f = chat__frame_new(data, len, 1);
    } else {
        chat_buf b = CHAT_BUF_INIT; /* "4" + the text: an Engine.IO message */
        int rc = chat__buf_appendc(&b, '0' + EIO_MESSAGE) || chat__buf_append(&b, data, len);
        f = rc ? NULL : chat__frame_new(b.data, b.len, 0);
        chat__buf_free(&b);
    }
    if (!f) {
        return CHAT_ENOMEM;
    }
    chat__session_send(s, f);
    chat__frame_unref(f);
    return 0;
}

static int eio_close(chat_runtime *rt, const char *sid)
{
    chat_session *s = chat__session_get(rt, sid, &eio_handler);
    if (!s) {
        return CHAT_ENOTFOUND;
    }
    chat__session_close(s, "server close");
    return 0;
}

static const chat_eio_actions eio_actions = {
    .send = eio_send,
    .close = eio_close,
};

int chat__eio_script_start(chat_runtime *rt)
{
    rt->eio_actions = &eio_actions;
    if (!rt->cfg.eio_path || !rt->cfg.eio_path[0]) {
        return 0; /* off */
    }
    int rc = chat__session_mount(rt, rt->cfg.eio_path, &eio_handler);
    if (rc == CHAT_EINVAL) {
        chat__log(CHAT_LOG_ERROR, "bad_eio_path",
                  "CHAT_EIO_PATH must start with '/' and name a path, like /engine.io/",
                  json_pack("{s:s}", "eio_path", rt->cfg.eio_path));
    }
    return rc;
}
