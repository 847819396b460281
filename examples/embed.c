/* embed.c: a host program that runs chatd inside itself, on the host's own libuv loop.
 *
 * It shows the three things an embedder needs from chat.h:
 *   - a borrowed loop: the host owns it, runs it, and has its own handles on it (a timer
 *     that ticks every 100 ms, and the signal watchers);
 *   - a log sink: the runtime's JSON log lines go to the host's function, not stderr;
 *   - a clean close: on SIGINT/SIGTERM the host closes its handles and calls
 *     chat_runtime_close; its callback runs once the runtime holds nothing on the loop, so
 *     uv_run returns and uv_loop_close succeeds.
 *
 * Build against an installed chatd (cmake --install build --prefix $PREFIX):
 *   cc embed.c $(PKG_CONFIG_PATH=$PREFIX/lib/pkgconfig pkg-config --cflags --libs chatrt)
 * or with CMake: examples/CMakeLists.txt (find_package(chatrt)).
 *
 *   ./embed [host:port]          # default 127.0.0.1:8090; data in ./embed-data
 *
 * Everything it says goes to stdout, one line per event: "host: ..." for its own, and
 * "log <level> <json>" for the runtime's. tools/test_embed.sh drives it. */
#define _POSIX_C_SOURCE 200809L /* uv.h needs POSIX types (pthread_rwlock_t) under -std=c11 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include <chat.h>

typedef struct host {
    uv_loop_t loop;
    uv_timer_t tick;
    uv_signal_t sigint, sigterm;
    chat_runtime *rt;
    uv_mutex_t out_lock; /* the sink runs on store worker threads too */
    unsigned ticks;
    int closed;
} host;

static void host_say(host *h, const char *fmt, const char *arg)
{
    uv_mutex_lock(&h->out_lock);
    printf("host: ");
    printf(fmt, arg);
    printf("\n");
    fflush(stdout);
    uv_mutex_unlock(&h->out_lock);
}

/* The runtime's log: any thread, so it only takes the lock and writes. */
static void log_sink(void *arg, chat_log_level level, const char *event, const char *json)
{
    static const char *const names[] = {"debug", "info", "warn", "error"};
    host *h = arg;
    (void)event;
    uv_mutex_lock(&h->out_lock);
    printf("log %s %s\n", names[level], json);
    fflush(stdout);
    uv_mutex_unlock(&h->out_lock);
}

static void on_tick(uv_timer_t *t)
{
    host *h = t->data;
    char n[32];
    snprintf(n, sizeof n, "%u", ++h->ticks);
    host_say(h, "tick %s", n);
}

static void on_closed(chat_runtime *rt, void *arg)
{
    host *h = arg;
    (void)rt;
    h->rt = NULL;
    h->closed = 1;
    host_say(h, "%s", "runtime closed");
}

static void on_signal(uv_signal_t *sig, int signum)
{
    host *h = sig->data;
    host_say(h, "stopping on %s", signum == SIGINT ? "SIGINT" : "SIGTERM");
    /* the host closes its own handles ... */
    uv_close((uv_handle_t *)&h->tick, NULL);
    uv_close((uv_handle_t *)&h->sigint, NULL);
    uv_close((uv_handle_t *)&h->sigterm, NULL);
    /* ... and the runtime closes its own, then calls back */
    chat_runtime_close(h->rt, on_closed, h);
}

int main(int argc, char **argv)
{
    static host h;
    const char *listen = argc > 1 ? argv[1] : "127.0.0.1:8090";
    chat_config cfg;
    int rc;

    if (uv_mutex_init(&h.out_lock) || uv_loop_init(&h.loop)) {
        return 1;
    }
    chat_log_set_sink(log_sink, &h);
    if ((rc = chat_config_init(&cfg)) || (rc = chat_config_set(&cfg, "listen", listen)) ||
        (rc = chat_config_set(&cfg, "data_dir", "embed-data"))) {
        fprintf(stderr, "embed: bad configuration: %s\n", chat_strerror(rc));
        return 2;
    }
    rc = chat_runtime_new(&h.rt, &h.loop, &cfg);
    chat_config_free(&cfg); /* the runtime keeps a copy */
    if (rc) {
        fprintf(stderr, "embed: chat_runtime_new: %s\n", chat_strerror(rc));
        return 1;
    }
    host_say(&h, "serving on %s", listen);

    uv_timer_init(&h.loop, &h.tick);
    h.tick.data = &h;
    uv_timer_start(&h.tick, on_tick, 100, 100);
    uv_signal_init(&h.loop, &h.sigint);
    uv_signal_init(&h.loop, &h.sigterm);
    h.sigint.data = h.sigterm.data = &h;
    uv_signal_start(&h.sigint, on_signal, SIGINT);
    uv_signal_start(&h.sigterm, on_signal, SIGTERM);

    uv_run(&h.loop, UV_RUN_DEFAULT);

    rc = uv_loop_close(&h.loop);
    host_say(&h, "uv_loop_close: %s", rc == 0 ? "ok" : uv_err_name(rc));
    chat_log_set_sink(NULL, NULL);
    uv_mutex_destroy(&h.out_lock);
    return rc == 0 && h.closed ? 0 : 1;
}
