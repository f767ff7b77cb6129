/*
 * internal.h - shared between the registry's files (not a public header):
 * the registry struct, errors, storage helpers, and the field validators of
 * validate.c.
 */
#ifndef REALM_REGISTRY_INTERNAL_H
#define REALM_REGISTRY_INTERNAL_H

#include "registry/registry.h"

#include "store/store.h"

#define NAME_MAX_LEN 64
#define ALIAS_MAX_LEN 128

struct realm_registry_s {
    realm_store_t *store; /* every row and the creates/updates in flight */
    char *region;
    char *account;
    uint64_t concurrency_limit;
    uint64_t max_zip_bytes;
    uint64_t max_unzipped_bytes;
};

/* Sets e to a 400 InvalidParameterValueException and returns -1. */
#define reg_invalid(e, ...) realm_error_set(e, REALM_ERR_INVALID_PARAMS, __VA_ARGS__)

/* ---- validate.c ---- */

int realm_reg_valid_name(const char *s);
int realm_reg_valid_alias(const char *s);
int realm_reg_valid_version(const char *s); /* "$LATEST" or digits */
int realm_reg_runtime_is_provided(const char *rt);
/* Checks the common configuration fields of req; seen fields are copied to cfg. */
int realm_reg_check_config_fields(const realm_registry_t *r, json_t *req, json_t *cfg,
                                  int is_create, realm_error_t *e);
int realm_reg_check_tags(json_t *tags, realm_error_t *e);
/* Rewrites the seed's snake_case CreateFunction body into the AWS shape. */
void realm_reg_seed_to_aws(json_t *req);
/* Optional typed members: 0 absent, 1 present (value stored), -1 wrong type (e set). */
int realm_reg_get_str(json_t *obj, const char *key, const char **out, realm_error_t *e);
int realm_reg_get_int(json_t *obj, const char *key, long long *out, realm_error_t *e);
int realm_reg_get_bool(json_t *obj, const char *key, int *out, realm_error_t *e);

int realm_reg_check_architectures(json_t *req, json_t *cfg, realm_error_t *e);

/* ---- registry.c helpers used by others ---- */

int realm_reg_db_fail(realm_registry_t *r, realm_error_t *e); /* 500 ServiceException */
/* The account in a tenant's ARNs: the tenant itself when it is 12 digits, else the server's. */
const char *realm_reg_account(const realm_registry_t *r, const char *tenant);
void realm_reg_arn(const realm_registry_t *r, const char *tenant, const char *name,
                   const char *qualifier, char *out, size_t out_len);
int realm_reg_name_and_qualifier(realm_registry_t *r, const char *tenant, const char *fn_name,
                                 const char *qualifier, int allow_qualifier, char *name, char *q,
                                 realm_error_t *e);
int realm_reg_is_updating(realm_registry_t *r, const char *tenant, const char *name);
/* The FunctionConfiguration of a stored version (num 0 = $LATEST). */
json_t *realm_reg_render(realm_registry_t *r, const char *tenant, const char *name, json_t *stored,
                         long num, int qualified_arn);
int realm_reg_load_version(realm_registry_t *r, const char *tenant, const char *name, long num,
                           json_t **config, char *code_hex);
int realm_reg_load_alias(realm_registry_t *r, const char *tenant, const char *name,
                         const char *alias, json_t **config);
int realm_reg_function_exists(realm_registry_t *r, const char *tenant, const char *name);
int realm_reg_not_found(realm_registry_t *r, const char *tenant, const char *name, const char *q,
                        realm_error_t *e);
int realm_reg_resolve(realm_registry_t *r, const char *tenant, const char *name, const char *q,
                      double pick, long *num, json_t **config, char *code_hex, realm_error_t *e);
long realm_reg_page_size(long max_items);
int realm_reg_begin_latest(realm_registry_t *r, const char *tenant, const char *name, json_t **cfg,
                           realm_error_t *e);
/* 412 unless req's RevisionId (when given) is stored's. Returns 0 or -1. */
int realm_reg_check_revision(json_t *req, json_t *stored, realm_error_t *e);
/* 409: the function is being updated. Returns -1. */
int realm_reg_conflict_updating(realm_registry_t *r, const char *tenant, const char *name,
                                realm_error_t *e);

/* ---- versions.c ---- */

/*
 * Publishes $LATEST inside the caller's transaction (or finds the last
 * version if nothing changed). description may be NULL. Sets *num.
 */
int realm_reg_publish_locked(realm_registry_t *r, const char *tenant, const char *name,
                             const char *description, long *num, realm_error_t *e);

void realm_reg_now(char out[32]); /* 2026-11-22T10:00:00.000+0000 */
/* A new LastModified and RevisionId on cfg, and the code's identity when pkg. */
void realm_reg_stamp(json_t *cfg, const realm_pkg_info_t *pkg);

#endif
