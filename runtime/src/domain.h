/* domain.h: the chat domain as the rest of the runtime sees it: started once by the
 * runtime, fed by the bus, and acted on by scripts. (Its files share domain_int.h.) */
#ifndef CHAT_DOMAIN_H
#define CHAT_DOMAIN_H

#include <jansson.h>
#include <stddef.h>

#include "rt.h"

/* Registers the domain with the socket layer (and so the sockets with the sessions and
 * /socket.io/ with http), the REST routes, and the actions for scripts. */
int chat__domain_start(chat_runtime *rt);
/* Stops what the domain runs on its own (the presence heartbeat); idempotent. */
void chat__domain_stop(chat_runtime *rt);
/* The bus callback (chat_bus_cb, arg: the runtime): what other nodes published. */
void chat__fanout_receive(const char *channel, const char *data, size_t len, void *arg);

/* What scripts may do (actions.c), registered by chat__domain_start as rt->actions. */
extern const chat_actions chat__domain_actions;

#endif
