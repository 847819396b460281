#include "chat.h"

typedef struct err_entry {
    int err;
    const char *code;
    int status;
    const char *msg;
} err_entry;

static const err_entry err_table[] = {
#define CHAT_ERRNO_ROW(name, code, status, msg) {CHAT_E##name, code, status, msg},
    CHAT_ERRNO_MAP(CHAT_ERRNO_ROW)
#undef CHAT_ERRNO_ROW
};

static const err_entry *err_find(int err)
{
    for (size_t i = 0; i < sizeof err_table / sizeof err_table[0]; i++) {
        if (err_table[i].err == err) {
            return &err_table[i];
        }
    }
    return &err_table[CHAT_EINTERNAL - CHAT__EFIRST - 1];
}

const char *chat_strerror(int err) { return err_find(err)->msg; }
const char *chat_errcode(int err) { return err_find(err)->code; }
int chat_errstatus(int err) { return err_find(err)->status; }
