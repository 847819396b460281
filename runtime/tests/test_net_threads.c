/* test_net_threads.c: two runtimes on two threads, each on its own loop (chat.h allows a
 * runtime per loop). lws's log is process-wide, and it is the only place lws 4.1.6 reports
 * a failed accept(): the accept backoff must act only on the runtimes whose loop runs on the
 * thread that logged it, never touch another thread's loop, lws context or counters. */
#include <lws_config.h>
#include <libwebsockets.h>
#include <unistd.h>
#include <uv.h>

#include "bounds.h"
#include "chat.h"
#include "rt.h"
#include "test.h"

static char tmpdir[64];

static chat_runtime *make(uv_loop_t *loop, const char *name)
{
    chat_config cfg;
    char dir[128];
    snprintf(dir, sizeof dir, "%s/%s", tmpdir, name);
    chat_runtime *rt = NULL;
    if (chat_config_init(&cfg) || chat_config_set(&cfg, "listen", "127.0.0.1:0") ||
        chat_config_set(&cfg, "data_dir", dir) ||
        chat_config_set(&cfg, "scripts_dir", tmpdir) || chat_runtime_new(&rt, loop, &cfg)) {
        rt = NULL;
    }
    chat_config_free(&cfg);
    return rt;
}

static void closed(chat_runtime *rt, void *arg)
{
    (void)rt;
    *(int *)arg = 1;
}

static void finish(chat_runtime *rt, uv_loop_t *loop)
{
    int done = 0;
    chat_runtime_close(rt, closed, &done);
    while (!done && uv_run(loop, UV_RUN_ONCE)) {
    }
    uv_run(loop, UV_RUN_DEFAULT);
}

typedef struct other {
    uv_loop_t loop;
    chat_runtime *rt;
    uv_sem_t made, go_on;
} other;

static void other_thread(void *arg)
{
    other *o = arg;
    uv_loop_init(&o->loop);
    o->rt = make(&o->loop, "b");
    uv_sem_post(&o->made);
    uv_sem_wait(&o->go_on); /* the main thread logs and checks meanwhile */
    if (o->rt) {
        finish(o->rt, &o->loop);
    }
    uv_loop_close(&o->loop);
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/test_net_threads_XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    uv_loop_t loop;
    uv_loop_init(&loop);
    chat_runtime *a = make(&loop, "a");
    CHECK(a != NULL);

    other o;
    memset(&o, 0, sizeof o);
    uv_sem_init(&o.made, 0);
    uv_sem_init(&o.go_on, 0);
    uv_thread_t t;
    CHECK(uv_thread_create(&t, other_thread, &o) == 0);
    uv_sem_wait(&o.made);
    CHECK(o.rt != NULL);

    if (a && o.rt) {
        /* what lws logs on this thread when accept() fails on a's listener */
        _lws_log(LLL_ERR, "lws_server_socket_service: accept: errno 24\n");
        CHECK(a->limits->accept_errors == 1);
        CHECK(o.rt->limits->accept_errors == 0); /* b's loop runs on another thread */
    }

    uv_sem_post(&o.go_on);
    uv_thread_join(&t);
    if (a) {
        finish(a, &loop);
    }
    CHECK(uv_loop_close(&loop) == 0);
    uv_sem_destroy(&o.made);
    uv_sem_destroy(&o.go_on);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    CHECK(system(cmd) == 0);
    return TEST_DONE("test_net_threads");
}
