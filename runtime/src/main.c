/* chatd: a thin program around libchatrt. Options come from CHAT_* environment variables,
 * overridden by --name=value or --name value flags (the same names, with '-' or '_'). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat.h"
#include "tool.h"

static void print_option(const char *name, const char *env, const char *def, const char *help,
                         void *arg)
{
    (void)arg;
    char flag[64];
    snprintf(flag, sizeof flag, "--%s", name);
    for (char *p = flag + 2; *p; p++) {
        if (*p == '_') {
            *p = '-';
        }
    }
    char expect[96];
    chat_config_expect(name, expect, sizeof expect);
    if (strncmp(expect, "an integer", 10) == 0) {
        printf("  %-24s %-24s %s (%s; default: %s)\n", flag, env, help, expect + 3,
               def ? def : "unset");
    } else {
        printf("  %-24s %-24s %s (default: %s)\n", flag, env, help, def ? def : "unset");
    }
}

/* "--bcrypt-cost" -> "bcrypt_cost"; 0 if arg is not a flag or the name is too long */
static int flag_name(const char *arg, size_t n, char *name, size_t namelen)
{
    if (strncmp(arg, "--", 2) != 0 || n <= 2 || n - 2 >= namelen) {
        return 0;
    }
    memcpy(name, arg + 2, n - 2);
    name[n - 2] = '\0';
    for (char *p = name; *p; p++) {
        if (*p == '-') {
            *p = '_';
        }
    }
    return 1;
}

static void usage(void)
{
    printf("usage: chatd [--option=value | --option value ...]\n"
           "       chatd [--option=value ...] --run file.lua [args...]\n\n"
           "An embeddable real-time chat server that speaks Socket.IO v4.\n\n"
           "options (flag, environment variable, meaning):\n");
    chat_config_describe(print_option, NULL);
}

static void on_signal(uv_signal_t *h, int signum)
{
    (void)signum;
    chat_runtime_stop(h->data);
    uv_close((uv_handle_t *)h, NULL);
}

/* SIGHUP reloads the scripts; a broken file is logged and the old ones keep serving. */
static void on_sighup(uv_signal_t *h, int signum)
{
    char err[1024];
    (void)signum;
    chat_runtime_reload(h->data, err, sizeof err);
}

int main(int argc, char **argv)
{
    chat_config cfg;
    const char *bad = NULL;
    if (chat_config_init(&cfg)) {
        fprintf(stderr, "chatd: out of memory\n");
        return 1;
    }
    if (chat_config_from_env(&cfg, &bad)) {
        char name[64], expect[96] = "";
        snprintf(name, sizeof name, "%s", bad + 5); /* CHAT_BCRYPT_COST -> bcrypt_cost */
        for (char *p = name; *p; p++) {
            *p = (char)(*p >= 'A' && *p <= 'Z' ? *p - 'A' + 'a' : *p);
        }
        chat_config_expect(name, expect, sizeof expect);
        fprintf(stderr, "chatd: %s='%s' is not valid: expected %s; see chatd --help\n", bad,
                getenv(bad), expect);
        chat_config_free(&cfg);
        return 2;
    }
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--run") == 0 && i + 1 < argc) {
            /* chatd --run file.lua args...: the rest belongs to the script */
            int rc = chat__run_lua(&cfg, argv[i + 1], argc - i - 2, argv + i + 2);
            chat_config_free(&cfg);
            return rc ? 1 : 0;
        }
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage();
            chat_config_free(&cfg);
            return 0;
        }
        char name[64], expect[96];
        const char *eq = strchr(argv[i], '=');
        const char *value = eq ? eq + 1 : NULL;
        size_t n = eq ? (size_t)(eq - argv[i]) : strlen(argv[i]);
        if (!flag_name(argv[i], n, name, sizeof name) ||
            chat_config_expect(name, expect, sizeof expect)) {
            fprintf(stderr, "chatd: unknown argument '%s'; see chatd --help\n", argv[i]);
            chat_config_free(&cfg);
            return 2;
        }
        if (!value) { /* --name value */
            if (i + 1 >= argc) {
                fprintf(stderr, "chatd: %s needs a value: %s; see chatd --help\n", argv[i],
                        expect);
                chat_config_free(&cfg);
                return 2;
            }
            value = argv[++i];
        }
        if (chat_config_set(&cfg, name, value)) {
            fprintf(stderr, "chatd: bad value '%s' for --%.*s: expected %s; see chatd --help\n",
                    value, (int)(n - 2), argv[eq ? i : i - 1] + 2, expect);
            chat_config_free(&cfg);
            return 2;
        }
    }

    signal(SIGPIPE, SIG_IGN);
    chat_runtime *rt;
    int rc = chat_runtime_new(&rt, NULL, &cfg);
    chat_config_free(&cfg);
    if (rc) {
        fprintf(stderr, "chatd: could not start; the log above says why\n");
        return 1;
    }
    uv_signal_t sigint, sigterm, sighup;
    uv_signal_init(chat_runtime_loop(rt), &sigint);
    uv_signal_init(chat_runtime_loop(rt), &sigterm);
    uv_signal_init(chat_runtime_loop(rt), &sighup);
    sigint.data = sigterm.data = sighup.data = rt;
    uv_signal_start(&sigint, on_signal, SIGINT);
    uv_signal_start(&sigterm, on_signal, SIGTERM);
    uv_signal_start(&sighup, on_sighup, SIGHUP);
    uv_unref((uv_handle_t *)&sighup);
    /* either signal stops the runtime; the other watcher must not keep the loop alive */
    uv_unref((uv_handle_t *)&sigint);
    uv_unref((uv_handle_t *)&sigterm);

    chat_runtime_run(rt);
    if (!uv_is_closing((uv_handle_t *)&sigint)) {
        uv_close((uv_handle_t *)&sigint, NULL);
    }
    if (!uv_is_closing((uv_handle_t *)&sigterm)) {
        uv_close((uv_handle_t *)&sigterm, NULL);
    }
    uv_close((uv_handle_t *)&sighup, NULL);
    chat_runtime_free(rt);
    return 0;
}
