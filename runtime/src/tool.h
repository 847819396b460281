/* tool.h: entry points for chatd's tool modes, not part of the embedding API (chat.h). */
#ifndef CHAT_TOOL_H
#define CHAT_TOOL_H

#include "chat.h"

/* Runs a Lua file with the real bindings (store, kv, json, jwt, crypto, timers), outside the
 * sandbox and without listening: for specs and tools (`chatd --run file.lua args...`).
 * Copies cfg; owns its loop. Returns 0 when the file ran to the end without an error. */
int chat__run_lua(const chat_config *cfg, const char *path, int argc, char **argv);

#endif
