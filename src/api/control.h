/*
 * control.h - the Lambda control API on the control listener: routes,
 * AWS error shapes, and the off-loop unpacking of code packages. The rules
 * live in registry/; this adapter only speaks HTTP (docs/control-api.md).
 *
 * LIFETIME: create after the control HTTP server, free after the loop has
 * run out of work (package jobs in flight hold the loop open).
 * THREADS: loop thread; package work runs on libuv's thread pool, registry
 * work on the registry's store worker (registry/async.h).
 */
#ifndef REALM_API_CONTROL_H
#define REALM_API_CONTROL_H

#include "config/config.h"
#include "http/server.h"
#include "exec/exec.h"
#include "registry/async.h"

#include <uv.h>

typedef struct realm_control_s realm_control_t;

/*
 * Serves the registry (on its worker: every operation is a job there, and
 * the answer is sent when it is done) and the package store (both
 * borrowed, opened by the server, and kept open until after
 * realm_control_free): removes packages
 * no function uses, and adds the routes to http.
 */
realm_control_t *realm_control_new(uv_loop_t *loop, realm_http_server_t *http,
                                   const realm_config_t *cfg, realm_registry_async_t *ra,
                                   realm_pkg_store_t *store);
void realm_control_free(realm_control_t *ctl);

/* Told when a function is created, its code or configuration changes, or it is deleted. */
typedef void (*realm_control_change_cb)(const char *tenant, const char *name, int is_deleted,
                                        void *data);
void realm_control_set_change_cb(realm_control_t *ctl, realm_control_change_cb cb, void *data);

/*
 * The execution engine (borrowed; may be NULL): a package an environment
 * still runs is kept after its function is deleted or updated, and removed
 * by realm_control_sweep once the engine releases it.
 */
void realm_control_set_exec(realm_control_t *ctl, const realm_exec_t *x);
/* Removes the packages nothing uses (now, or once package jobs in flight end). */
void realm_control_sweep(realm_control_t *ctl);

/* Sends an AWS-shaped error (status, x-amzn-ErrorType, x-amzn-RequestId, body). */
void realm_control_send_error(realm_http_res_t *res, int status, const char *type,
                              const char *message);

#endif
