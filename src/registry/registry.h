/*
 * registry.h - the durable function registry: functions, versions, aliases,
 * reserved concurrency and tags, with AWS Lambda's rules and shapes.
 *
 * DESIGN: the registry is the Lambda control plane without HTTP. Each
 * operation takes the parsed request (jansson, the botocore shapes) and
 * answers the response object or an error (realm_error_t: a REALM_ERR_* code,
 * whose row in base/err.h gives the HTTP status and AWS type, and a message); the
 * HTTP adapter (api/control.c) only routes and renders. State lives in a
 * store (store/store.h: SQLite by default, "memory:..." as the path keeps it
 * in memory) and every operation is one transaction, so a kill -9 leaves
 * either the old or the new state. A function's configuration is stored as
 * the JSON of the fields a user set plus the code's identity; the fields
 * that derive from the server (ARNs, State, Version) are added when
 * rendering. Code packages themselves live in the package store (pkg/): the
 * registry only names them by hash, and callers store a package before the
 * operation that refers to it (see realm_registry_code_used for cleanup).
 *
 * Operations that carry a code package come in two steps, because the
 * package is unpacked off the loop: *_check validates everything but the
 * package (and marks the function as updating), then *_commit records it.
 *
 * Tenants: every name lives in a tenant's namespace (tenant "" until
 * authentication exists).
 *
 * THREADS: loop thread only (one store connection).
 */
#ifndef REALM_REGISTRY_REGISTRY_H
#define REALM_REGISTRY_REGISTRY_H

#include "base/err.h"
#include "pkg/pkg.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

typedef struct realm_registry_s realm_registry_t;

typedef struct {
    const char *region;         /* copied */
    const char *account_id;     /* copied; 12 digits */
    uint64_t concurrency_limit; /* account concurrency */
    uint64_t max_zip_bytes;     /* reported by GetAccountSettings */
    uint64_t max_unzipped_bytes;
} realm_registry_opts_t;

/* What a function version runs: returned by realm_registry_resolve. */
typedef struct {
    char name[65];
    char version[24]; /* "$LATEST" or "7" */
    char code_hex[REALM_PKG_HEX_LEN + 1];
    json_t *config;   /* owned reference: the rendered FunctionConfiguration */
    int64_t reserved; /* reserved concurrency, -1 when none */
} realm_fn_version_t;

/* Opens (creating) the database at path. NULL with a message in err. */
realm_registry_t *realm_registry_open(const char *path, const realm_registry_opts_t *opts,
                                      char *err, size_t err_len);
void realm_registry_close(realm_registry_t *r);

/* ---- functions ---- */

/*
 * CreateFunction, step 1: validates req (AWS shape, or the seed's snake_case
 * form, which is rewritten into the AWS shape in place) and checks the name
 * is free. On success returns the base64 zip (borrowed from req) and marks
 * the name as being created; the caller must then call _commit or _abort.
 */
const char *realm_registry_create_check(realm_registry_t *r, const char *tenant, json_t *req,
                                        char *name_out, realm_error_t *e);
/* Step 2: records the function with its stored package. Returns the configuration. */
json_t *realm_registry_create_commit(realm_registry_t *r, const char *tenant, json_t *req,
                                     const realm_pkg_info_t *pkg, realm_error_t *e);
/* Forgets a create or code update that did not reach _commit. */
void realm_registry_update_abort(realm_registry_t *r, const char *tenant, const char *name);

/* UpdateFunctionCode, step 1 (name from the path). Returns the base64 zip. */
const char *realm_registry_code_check(realm_registry_t *r, const char *tenant, const char *fn_name,
                                      json_t *req, char *name_out, realm_error_t *e);
json_t *realm_registry_code_commit(realm_registry_t *r, const char *tenant, const char *name,
                                   json_t *req, const realm_pkg_info_t *pkg, realm_error_t *e);

/* GetFunction: {Configuration, Code{RepositoryType, Location}, Tags, Concurrency}. */
json_t *realm_registry_get_function(realm_registry_t *r, const char *tenant, const char *fn_name,
                                    const char *qualifier, const char *code_url_base,
                                    realm_error_t *e);
json_t *realm_registry_get_configuration(realm_registry_t *r, const char *tenant,
                                         const char *fn_name, const char *qualifier,
                                         realm_error_t *e);
json_t *realm_registry_update_configuration(realm_registry_t *r, const char *tenant,
                                            const char *fn_name, json_t *req, realm_error_t *e);
/* ListFunctions; marker may be NULL; max_items 0 means the default. */
json_t *realm_registry_list_functions(realm_registry_t *r, const char *tenant, const char *marker,
                                      long max_items, int all_versions, realm_error_t *e);
/* DeleteFunction (whole function, or one version with a qualifier). Returns 0 or -1. */
int realm_registry_delete_function(realm_registry_t *r, const char *tenant, const char *fn_name,
                                   const char *qualifier, realm_error_t *e);

/* ---- versions and aliases ---- */

json_t *realm_registry_publish_version(realm_registry_t *r, const char *tenant, const char *fn_name,
                                       json_t *req, realm_error_t *e);
json_t *realm_registry_list_versions(realm_registry_t *r, const char *tenant, const char *fn_name,
                                     const char *marker, long max_items, realm_error_t *e);
json_t *realm_registry_create_alias(realm_registry_t *r, const char *tenant, const char *fn_name,
                                    json_t *req, realm_error_t *e);
json_t *realm_registry_get_alias(realm_registry_t *r, const char *tenant, const char *fn_name,
                                 const char *alias, realm_error_t *e);
json_t *realm_registry_update_alias(realm_registry_t *r, const char *tenant, const char *fn_name,
                                    const char *alias, json_t *req, realm_error_t *e);
int realm_registry_delete_alias(realm_registry_t *r, const char *tenant, const char *fn_name,
                                const char *alias, realm_error_t *e);
json_t *realm_registry_list_aliases(realm_registry_t *r, const char *tenant, const char *fn_name,
                                    const char *function_version, const char *marker,
                                    long max_items, realm_error_t *e);

/* ---- concurrency, tags, account ---- */

json_t *realm_registry_put_concurrency(realm_registry_t *r, const char *tenant, const char *fn_name,
                                       json_t *req, realm_error_t *e);
json_t *realm_registry_get_concurrency(realm_registry_t *r, const char *tenant, const char *fn_name,
                                       realm_error_t *e);
int realm_registry_delete_concurrency(realm_registry_t *r, const char *tenant, const char *fn_name,
                                      realm_error_t *e);
int realm_registry_tag(realm_registry_t *r, const char *tenant, const char *arn, json_t *req,
                       realm_error_t *e);
/* keys: a NULL-terminated array. */
int realm_registry_untag(realm_registry_t *r, const char *tenant, const char *arn,
                         const char *const *keys, realm_error_t *e);
json_t *realm_registry_list_tags(realm_registry_t *r, const char *tenant, const char *arn,
                                 realm_error_t *e);
json_t *realm_registry_account_settings(realm_registry_t *r, const char *tenant, realm_error_t *e);

/* ---- for the runtime side and the package store ---- */

/*
 * Resolves a function reference (name or ARN, optional qualifier; aliases
 * pick a version by their routing weights using pick in [0,1)) to what
 * runs. Returns 0 (fill *out; release with realm_fn_version_dispose) or -1.
 */
int realm_registry_resolve(realm_registry_t *r, const char *tenant, const char *fn_name,
                           const char *qualifier, double pick, realm_fn_version_t *out,
                           realm_error_t *e);
void realm_fn_version_dispose(realm_fn_version_t *v);
/*
 * A number that changes with every statement that may write the registry
 * (committed or not): what was read at one value still holds while it stays
 * the same. Writes by other processes are not seen.
 */
uint64_t realm_registry_generation(const realm_registry_t *r);
/* This registry's own calls that may have written, ever (cheap: no round trip). */
uint64_t realm_registry_local_writes(const realm_registry_t *r);

/* 1 if a version of one of tenant's functions uses the package (errors: 0). */
int realm_registry_code_owned(realm_registry_t *r, const char *tenant, const char *hex);
/* 1 if any version of any function (or a create in progress) uses the package. */
int realm_registry_code_used(realm_registry_t *r, const char *hex);

/*
 * Code packages in the database (code.c; docs/storage.md, "Code packages
 * on PostgreSQL"): where the store keeps package bytes (PostgreSQL, memory),
 * every server fetches a version's package from there into its own package
 * store; on SQLite the data dir's package store is the only copy and these
 * are no-ops. SYNCHRONOUS: each blocks on the database (and fetch on the
 * disk); in the server they run on the store worker thread (storeq/), never
 * on the loop.
 *
 * keep: keeps zip (len bytes; hex must be its SHA-256, as realm_pkg_hash
 * gives) in the database, inside the caller's store transaction when one is
 * open (so it commits with the version row naming it). Idempotent. 0 (also
 * on SQLite, where nothing is kept), or -1 (a storage error, logged).
 */
int realm_registry_code_keep(realm_registry_t *r, const char *hex, const void *zip, size_t len);
/*
 * fetch: makes sure pkgs holds hex's tree: when it does not, reads the zip
 * from the database, checks that its SHA-256 is hex (on every fetch: a
 * mismatch is refused and logged, nothing is written) and stores it with
 * realm_pkg_store_put (generous limits: the package passed the limits of
 * the server that took it). 0, or -1 with a message in err (not in the
 * database, SQLite included; a storage error; a hash mismatch; a zip pkg/
 * refuses).
 */
int realm_registry_code_fetch(realm_registry_t *r, realm_pkg_store_t *pkgs, const char *hex,
                              char *err, size_t err_len);
/*
 * forget_unused: deletes from the database the packages no version of any
 * tenant names (PostgreSQL: and untouched for REALM_STORE_PKG_GRACE_S, see
 * store.h); nothing while a create or update is in flight. Returns how many
 * (0 on SQLite and on errors, which are logged). Local package stores are
 * collected apart (realm_pkg_store_gc with realm_registry_code_used).
 */
size_t realm_registry_code_forget_unused(realm_registry_t *r);
/* 1 when the registry's last storage error was the database out of reach. */
int realm_registry_unreachable(const realm_registry_t *r);

/*
 * Parses a FunctionName as AWS accepts it: a name, a partial ARN
 * (ACCOUNT:function:NAME) or a full ARN, with an optional ":QUALIFIER" when
 * allow_qualifier. Fills name (65 bytes) and qualifier (129 bytes; "" when
 * none). Returns 0, or -1 with the error (400 for a malformed name, 404 for
 * an ARN naming another region or account).
 */
int realm_registry_parse_name(const realm_registry_t *r, const char *tenant, const char *in,
                              int allow_qualifier, char *name, char *qualifier, realm_error_t *e);

#endif
