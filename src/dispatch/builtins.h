/*
 * builtins.h - the functions every Realm server has: health, metadata and
 * echo (a diagnostic that can stream and take its time, which is what tests
 * and clients need to see interleaving and cancellation).
 */
#ifndef REALM_DISPATCH_BUILTINS_H
#define REALM_DISPATCH_BUILTINS_H

#include "dispatch/dispatch.h"

#include <stddef.h>
#include <uv.h>

typedef struct {
    uv_loop_t *loop;
    uint64_t start_ns;                 /* uv_hrtime() at server start */
    size_t (*connections)(void *data); /* open client connections */
    json_t *(*cluster)(void *data);    /* health's "cluster" (a new object), or NULL: none */
    void *data;
    realm_dispatch_t *dispatch; /* set by realm_builtins_register */
    json_t *runtimes; /* borrowed: {runtime: exact version} for metadata (the server's); or NULL */
} realm_builtins_ctx_t;

/* Registers health, metadata and echo. ctx is borrowed until d is freed. */
void realm_builtins_register(realm_dispatch_t *d, realm_builtins_ctx_t *ctx);
/* The metadata document: the table's functions and more (borrowed: the
 * describer's deployed functions, or NULL). A new reference. */
json_t *realm_builtins_metadata(const realm_dispatch_t *d, json_t *more);

#endif
