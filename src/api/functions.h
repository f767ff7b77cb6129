/*
 * functions.h - deployed functions on the client WebSocket: the `invoke`
 * function ({"name","payload","qualifier"}), calling a deployed function
 * directly by its name (params are the event), and their place in
 * `metadata`. A function's streamed chunks arrive as `streaming` replies,
 * then one `complete`; `cancel` stops its environment.
 */
#ifndef REALM_API_FUNCTIONS_H
#define REALM_API_FUNCTIONS_H

#include "api/invoke.h"
#include "dispatch/dispatch.h"

typedef struct realm_functions_s realm_functions_t;

/* Registers `invoke`, the by-name fallback and the metadata describer. */
realm_functions_t *realm_functions_new(realm_dispatch_t *d, realm_invoker_t *iv);
/* After the dispatcher is done with them. */
void realm_functions_free(realm_functions_t *fs);

#endif
