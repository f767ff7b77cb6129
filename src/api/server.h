/*
 * server.h - one Realm server: four listeners and the subsystems behind
 * them, wired from a configuration, with graceful shutdown on SIGINT/SIGTERM.
 *
 *   client   WebSocket, the Realm call protocol       (--port, 8080)
 *   control  Lambda control API                       (--control-port, 9000)
 *   runtime  Lambda runtime API                       (--runtime-port, 9001)
 *   metrics  Prometheus /metrics                      (--metrics-port, 9090)
 *
 * THREADS: everything runs on the loop given to realm_server_new().
 */
#ifndef REALM_API_SERVER_H
#define REALM_API_SERVER_H

#include "config/config.h"

#include <stddef.h>
#include <stdio.h>
#include <uv.h>

typedef struct realm_server_s realm_server_t;

/*
 * Creates the server and binds every listener. cfg is borrowed for the
 * server's life. Returns 0, or -1 with a message in err (e.g. "control
 * listener: 127.0.0.1:9000: address already in use").
 */
int realm_server_new(uv_loop_t *loop, const realm_config_t *cfg, realm_server_t **out, char *err,
                     size_t err_len);
/* Prints one line per listener with the address actually bound. */
void realm_server_print_listeners(const realm_server_t *s, FILE *out);
/*
 * Runs the loop until a shutdown finishes (SIGINT/SIGTERM, or
 * realm_server_shutdown). Returns the process exit code (0).
 */
int realm_server_run(realm_server_t *s);
/* Starts a graceful shutdown, as a signal would. */
void realm_server_shutdown(realm_server_t *s);
/* Frees everything; the loop is then empty and uv_loop_close() returns 0. */
void realm_server_free(realm_server_t *s);
/* The --db value as it may be shown (a URL's password and options left out). */
void realm_server_db_shown(const char *db, char *out, size_t len);

#endif
