/*
 * control.h - the Lambda control API on the control listener: routes,
 * AWS error shapes, and the off-loop unpacking of code packages. The rules
 * live in registry/; this adapter only speaks HTTP (docs/control-api.md).
 *
 * LIFETIME: create after the control HTTP server, free after the loop has
 * run out of work (package jobs in flight hold the loop open).
 * THREADS: loop thread; package work runs on libuv's thread pool.
 */
#ifndef REALM_API_CONTROL_H
#define REALM_API_CONTROL_H

#include "config/config.h"
#include "http/server.h"
#include "registry/registry.h"

#include <uv.h>

typedef struct realm_control_s realm_control_t;

/*
 * Opens the registry (DATA_DIR/realm.db) and the package store
 * (DATA_DIR/packages), removes packages no function uses, and adds the
 * routes to http. Returns NULL with a message in err.
 */
realm_control_t *realm_control_new(uv_loop_t *loop, realm_http_server_t *http,
                                   const realm_config_t *cfg, char *err, size_t err_len);
void realm_control_free(realm_control_t *ctl);

/* Told when a function is created, its code or configuration changes, or it is deleted. */
typedef void (*realm_control_change_cb)(const char *tenant, const char *name, int is_deleted,
                                        void *data);
void realm_control_set_change_cb(realm_control_t *ctl, realm_control_change_cb cb, void *data);

realm_registry_t *realm_control_registry(realm_control_t *ctl);
realm_pkg_store_t *realm_control_packages(realm_control_t *ctl);

/* Sends an AWS-shaped error (status, x-amzn-ErrorType, x-amzn-RequestId, body). */
void realm_control_send_error(realm_http_res_t *res, int status, const char *type,
                              const char *message);

#endif
