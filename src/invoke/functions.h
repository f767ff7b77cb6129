/*
 * functions.h - deployed functions as dispatcher functions (the client
 * WebSocket's calls, docs/protocol.md): the `invoke` function
 * ({"name","payload","qualifier"}), calling a deployed function directly by
 * its name (params are the event), and their place in `metadata`. A
 * function's streamed chunks become realm_call_stream, then one
 * realm_call_complete; cancelling the call stops its environment. No wire
 * format here: api/client.c adapts the dispatcher's sink.
 *
 * LIFETIME: d and iv are borrowed until realm_functions_free.
 * THREADS: loop thread only.
 */
#ifndef REALM_INVOKE_FUNCTIONS_H
#define REALM_INVOKE_FUNCTIONS_H

#include "dispatch/dispatch.h"
#include "invoke/invoker.h"

typedef struct realm_functions_s realm_functions_t;

/* Registers `invoke`, the by-name fallback and the metadata describer. */
realm_functions_t *realm_functions_new(realm_dispatch_t *d, realm_invoker_t *iv);
/* After the dispatcher is done with them. */
void realm_functions_free(realm_functions_t *fs);

#endif
