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

/* Registers `invoke`, the by-name fallback and the metadata describer. */
void realm_functions_register(realm_dispatch_t *d, realm_invoker_t *iv);

#endif
