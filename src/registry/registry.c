/*
 * registry.c - the registry's storage and its function operations (see
 * registry.h). Versions, aliases, concurrency and tags are in versions.c.
 *
 * STORAGE: every row (functions, versions, aliases, reservations, tags)
 * and the creates/updates in flight live in a store (store/store.h); this
 * file keeps the Lambda rules. A function's configuration is stored as JSON
 * (the fields a user set plus the code's identity); an alias's as
 * {FunctionVersion, Description, RoutingConfig, RevisionId}.
 */
#include "registry/internal.h"

#include "base/alloc.h"
#include "base/log.h"
#include "base/str.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LIST_PAGE_MAX 50

/* ---- small things ---- */

void realm_reg_stamp(json_t *cfg, const realm_pkg_info_t *pkg)
{
    char now[32], rev[37];
    realm_reg_now(now);
    realm_str_uuid4(rev);
    if (pkg) {
        json_object_set_new(cfg, "CodeSha256", json_string(pkg->sha256_b64));
        json_object_set_new(cfg, "CodeSize", json_integer((json_int_t)pkg->zip_bytes));
    }
    json_object_set_new(cfg, "LastModified", json_string(now));
    json_object_set_new(cfg, "RevisionId", json_string(rev));
}

void realm_reg_now(char out[32])
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, 32 - n, ".%03ld+0000", ts.tv_nsec / 1000000);
}

int realm_registry_unreachable(const realm_registry_t *r)
{
    return realm_store_is_unreachable(r->store);
}

int realm_reg_db_fail(realm_registry_t *r, realm_error_t *e)
{
    /* The store logged the cause; a database out of reach is a 503 (retry). */
    if (realm_store_is_unreachable(r->store))
        return realm_error_set(e, REALM_ERR_STORE_UNAVAILABLE,
                               "The registry's database is unavailable; retry shortly");
    return realm_error_set(e, REALM_ERR_INTERNAL_ERROR,
                           "The registry could not complete the operation (storage error)");
}

/* ---- ARNs and names ---- */

static int is_digits(const char *s, size_t n)
{
    if (strlen(s) != n) return 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9') return 0;
    return 1;
}

const char *realm_reg_account(const realm_registry_t *r, const char *tenant)
{
    /* A tenant whose namespace is a 12-digit account id has its own ARNs. */
    return tenant && is_digits(tenant, 12) ? tenant : r->account;
}

void realm_reg_arn(const realm_registry_t *r, const char *tenant, const char *name,
                   const char *qualifier, char *out, size_t out_len)
{
    snprintf(out, out_len, "arn:aws:lambda:%s:%s:function:%s%s%s", r->region,
             realm_reg_account(r, tenant), name, qualifier && *qualifier ? ":" : "",
             qualifier ? qualifier : "");
}

static int valid_region(const char *s)
{
    /* [a-z]{2}(-gov)?-[a-z]+-\d */
    size_t n = strlen(s);
    if (n < 6 || s[2] != '-' || s[n - 2] != '-' || s[n - 1] < '0' || s[n - 1] > '9') return 0;
    for (size_t i = 0; i < n - 2; i++)
        if (s[i] != '-' && (s[i] < 'a' || s[i] > 'z')) return 0;
    return 1;
}

int realm_registry_parse_name(const realm_registry_t *r, const char *tenant, const char *in,
                              int allow_qualifier, char *name, char *qualifier, realm_error_t *e)
{
    char buf[256];
    char *parts[9];
    size_t n = 0;
    if (strlen(in) < 1 || strlen(in) > 170) goto bad;
    if (realm_str_has_ctl(in, strlen(in)))
        return reg_invalid(e, "FunctionName must not contain control characters");
    snprintf(buf, sizeof(buf), "%s", in);
    for (char *p = buf, *tok; n < 9 && (tok = strsep(&p, ":")) != NULL;)
        parts[n++] = tok;
    if (n == 9) goto bad;
    const char *nm, *q = NULL;
    const char *region = NULL, *account = NULL;
    if (strcmp(parts[0], "arn") == 0) {
        if (n < 7 || n > 8 || strncmp(parts[1], "aws", 3) != 0 || strcmp(parts[2], "lambda") != 0 ||
            !valid_region(parts[3]) || !is_digits(parts[4], 12) ||
            strcmp(parts[5], "function") != 0)
            goto bad;
        region = parts[3];
        account = parts[4];
        nm = parts[6];
        if (n == 8) q = parts[7];
    } else if (n >= 3 && strcmp(parts[1], "function") == 0) {
        if (n > 4 || !is_digits(parts[0], 12)) goto bad;
        account = parts[0];
        nm = parts[2];
        if (n == 4) q = parts[3];
    } else {
        if (n > 2) goto bad;
        nm = parts[0];
        if (n == 2) q = parts[1];
    }
    if (!realm_reg_valid_name(nm)) goto bad;
    if (q && (!allow_qualifier || (!realm_reg_valid_version(q) && !realm_reg_valid_alias(q))))
        goto bad;
    if ((region && strcmp(region, r->region) != 0) ||
        (account && strcmp(account, realm_reg_account(r, tenant)) != 0))
        return realm_error_set(e, REALM_ERR_FUNCTION_NOT_FOUND, "Function not found: %.200s", in);
    snprintf(name, NAME_MAX_LEN + 1, "%s", nm);
    snprintf(qualifier, ALIAS_MAX_LEN + 1, "%s", q ? q : "");
    return 0;
bad:
    return reg_invalid(e,
                       "FunctionName '%.200s' is not valid: use a name of 1 to 64 characters "
                       "[a-zA-Z0-9-_], or a function ARN%s",
                       in, allow_qualifier ? ", optionally followed by :VERSION or :ALIAS" : "");
}

/* Parses fn_name and merges an explicit qualifier (which must agree). */
int realm_reg_name_and_qualifier(realm_registry_t *r, const char *tenant, const char *fn_name,
                                 const char *qualifier, int allow_qualifier, char *name, char *q,
                                 realm_error_t *e)
{
    if (realm_registry_parse_name(r, tenant, fn_name, allow_qualifier, name, q, e) != 0) return -1;
    if (qualifier && *qualifier) {
        if (!realm_reg_valid_version(qualifier) && !realm_reg_valid_alias(qualifier))
            return reg_invalid(e, "Qualifier '%.128s' is not a version or an alias name",
                               qualifier);
        if (*q && strcmp(q, qualifier) != 0)
            return reg_invalid(e, "The derived qualifier from the function name does not match "
                                  "the specified qualifier.");
        snprintf(q, ALIAS_MAX_LEN + 1, "%s", qualifier);
    }
    return 0;
}

/* ---- pending creates and updates ---- */

static int pending_find(realm_registry_t *r, const char *tenant, const char *name)
{
    return realm_store_pending_get(r->store, tenant, name) != 0;
}

/* 0 recorded; 1 another server recorded one first (between the find and
 * this: a shared database); -1 a storage error. */
static int pending_add(realm_registry_t *r, const char *tenant, const char *name, int is_create)
{
    return realm_store_pending_add(r->store, tenant, name, is_create);
}

void realm_registry_update_abort(realm_registry_t *r, const char *tenant, const char *name)
{
    realm_store_pending_remove(r->store, tenant, name);
}

int realm_reg_is_updating(realm_registry_t *r, const char *tenant, const char *name)
{
    return realm_store_pending_get(r->store, tenant, name) == 1;
}

/* ---- rendering ---- */

json_t *realm_reg_render(realm_registry_t *r, const char *tenant, const char *name, json_t *stored,
                         long num, int qualified_arn)
{
    json_t *c = json_deep_copy(stored);
    char version[24], arn[256];
    if (num == 0)
        snprintf(version, sizeof(version), "$LATEST");
    else
        snprintf(version, sizeof(version), "%ld", num);
    realm_reg_arn(r, tenant, name, qualified_arn ? version : NULL, arn, sizeof(arn));
    json_object_set_new(c, "FunctionArn", json_string(arn));
    json_object_set_new(c, "Version", json_string(version));
    json_object_set_new(c, "State", json_string("Active"));
    json_object_set_new(c, "StateReason", json_string("The function is ready to be invoked"));
    int updating = num == 0 && realm_reg_is_updating(r, tenant, name);
    json_object_set_new(c, "LastUpdateStatus", json_string(updating ? "InProgress" : "Successful"));
    if (updating)
        json_object_set_new(c, "LastUpdateStatusReason",
                            json_string("The function is being updated with a new code package"));
    return c;
}

/* ---- loading ---- */

/* Loads a function's version row: 0 found, 1 missing, -1 error. */
int realm_reg_load_version(realm_registry_t *r, const char *tenant, const char *name, long num,
                           json_t **config, char *code_hex)
{
    return realm_store_ver_get(r->store, tenant, name, num, config, code_hex);
}

/*
 * Begins a write transaction and loads $LATEST of name. Returns 0, or -1
 * with e set (404 or 500) and the transaction rolled back.
 */
int realm_reg_begin_latest(realm_registry_t *r, const char *tenant, const char *name, json_t **cfg,
                           realm_error_t *e)
{
    if (realm_store_begin(r->store) != 0) return realm_reg_db_fail(r, e);
    int rc = realm_reg_load_version(r, tenant, name, 0, cfg, NULL);
    if (rc == 0) return 0;
    realm_store_rollback(r->store);
    return rc < 0 ? realm_reg_db_fail(r, e) : realm_reg_not_found(r, tenant, name, NULL, e);
}

/* Loads an alias's stored config: 0 found, 1 missing, -1 error. */
int realm_reg_load_alias(realm_registry_t *r, const char *tenant, const char *name,
                         const char *alias, json_t **config)
{
    return realm_store_alias_get(r->store, tenant, name, alias, config);
}

int realm_reg_function_exists(realm_registry_t *r, const char *tenant, const char *name)
{
    int rc = realm_store_fn_get(r->store, tenant, name, NULL);
    return rc < 0 ? -1 : rc == 0;
}

int realm_reg_not_found(realm_registry_t *r, const char *tenant, const char *name, const char *q,
                        realm_error_t *e)
{
    char arn[256];
    realm_reg_arn(r, tenant, name, q, arn, sizeof(arn));
    return realm_error_set(e, REALM_ERR_FUNCTION_NOT_FOUND, "Function not found: %s", arn);
}

/*
 * Resolves name + qualifier to a version row: *num (0 = $LATEST), *config
 * (owned) and code_hex. An alias resolves to its primary version unless pick
 * is >= 0 (then its routing weights choose). Returns 0 or -1 with e.
 */
int realm_reg_resolve(realm_registry_t *r, const char *tenant, const char *name, const char *q,
                      double pick, long *num, json_t **config, char *code_hex, realm_error_t *e)
{
    long n = 0;
    if (*q && strcmp(q, "$LATEST") != 0) {
        if (realm_reg_valid_version(q)) {
            n = strtol(q, NULL, 10);
        } else {
            json_t *alias = NULL;
            int rc = realm_reg_load_alias(r, tenant, name, q, &alias);
            if (rc < 0) return realm_reg_db_fail(r, e);
            if (rc == 1) {
                rc = realm_reg_function_exists(r, tenant, name);
                if (rc < 0) return realm_reg_db_fail(r, e);
                if (rc == 0) return realm_reg_not_found(r, tenant, name, NULL, e);
                char arn[256];
                realm_reg_arn(r, tenant, name, q, arn, sizeof(arn));
                return realm_error_set(e, REALM_ERR_FUNCTION_NOT_FOUND, "Alias not found: %s", arn);
            }
            const char *fv = json_string_value(json_object_get(alias, "FunctionVersion"));
            n = fv && strcmp(fv, "$LATEST") != 0 ? strtol(fv, NULL, 10) : 0;
            json_t *w = json_object_get(json_object_get(alias, "RoutingConfig"),
                                        "AdditionalVersionWeights");
            if (pick >= 0 && json_is_object(w)) {
                const char *k;
                json_t *v;
                double acc = 0;
                json_object_foreach(w, k, v)
                {
                    acc += json_number_value(v);
                    if (pick < acc) {
                        n = strtol(k, NULL, 10);
                        break;
                    }
                }
            }
            json_decref(alias);
        }
    }
    int rc = realm_reg_load_version(r, tenant, name, n, config, code_hex);
    if (rc < 0) return realm_reg_db_fail(r, e);
    if (rc == 1) return realm_reg_not_found(r, tenant, name, *q ? q : NULL, e);
    *num = n;
    return 0;
}

/* ---- open / close ---- */

realm_registry_t *realm_registry_open(const char *path, const realm_registry_opts_t *opts,
                                      char *err, size_t err_len)
{
    if (!is_digits(opts->account_id, 12)) {
        snprintf(err, err_len, "account id '%s' is not 12 digits", opts->account_id);
        return NULL;
    }
    if (!valid_region(opts->region)) {
        snprintf(err, err_len, "region '%s' is not a region name (like us-east-1)", opts->region);
        return NULL;
    }
    realm_registry_t *r = realm_calloc(1, sizeof(*r));
    /* Another process may hold the write lock: an operation then fails with a
     * ServiceException after the store's busy timeout. */
    r->store = realm_store_open(REALM_STORE_REGISTRY, path, err, err_len);
    if (!r->store) goto fail;
    r->region = realm_strdup(opts->region);
    r->account = realm_strdup(opts->account_id);
    r->concurrency_limit = opts->concurrency_limit;
    r->max_zip_bytes = opts->max_zip_bytes;
    r->max_unzipped_bytes = opts->max_unzipped_bytes;
    return r;
fail:
    free(r);
    return NULL;
}

void realm_registry_close(realm_registry_t *r)
{
    if (!r) return;
    realm_store_close(r->store);
    free(r->region);
    free(r->account);
    free(r);
}

/* ---- create ---- */

static const char *zip_of(json_t *code, realm_error_t *e)
{
    if (!json_is_object(code)) {
        reg_invalid(e, "Code is required: {\"ZipFile\": <base64 zip>}");
        return NULL;
    }
    static const char *const unsupported[] = {"S3Bucket", "S3Key", "S3ObjectVersion", "ImageUri"};
    for (size_t i = 0; i < 4; i++) {
        if (json_object_get(code, unsupported[i])) {
            reg_invalid(e, "Code.%s is not supported: upload the package as Code.ZipFile",
                        unsupported[i]);
            return NULL;
        }
    }
    json_t *z = json_object_get(code, "ZipFile");
    if (!json_is_string(z) || json_string_length(z) == 0) {
        reg_invalid(e, "Code.ZipFile is required: the base64 of a zip file");
        return NULL;
    }
    return json_string_value(z);
}

const char *realm_registry_create_check(realm_registry_t *r, const char *tenant, json_t *req,
                                        char *name_out, realm_error_t *e)
{
    if (json_object_get(req, "function_name")) realm_reg_seed_to_aws(req);
    const char *fn_name;
    int rc = realm_reg_get_str(req, "FunctionName", &fn_name, e);
    if (rc < 0) return NULL;
    if (rc == 0) {
        reg_invalid(e, "FunctionName is required");
        return NULL;
    }
    char name[NAME_MAX_LEN + 1], q[ALIAS_MAX_LEN + 1];
    if (realm_registry_parse_name(r, tenant, fn_name, 0, name, q, e) != 0) return NULL;
    /* Existence first: "it exists" is the answer that matters to a client
     * deciding between create and update (realm deploy does). */
    rc = realm_reg_function_exists(r, tenant, name);
    if (rc < 0) {
        realm_reg_db_fail(r, e);
        return NULL;
    }
    if (rc == 1 || pending_find(r, tenant, name)) {
        realm_error_set(e, REALM_ERR_RESOURCE_CONFLICT, "Function already exist: %s", name);
        return NULL;
    }
    json_t *cfg = json_object();
    rc = realm_reg_check_config_fields(r, req, cfg, 1, e);
    json_decref(cfg);
    if (rc != 0) return NULL;
    json_t *tags = json_object_get(req, "Tags");
    if (tags && !json_is_null(tags) && realm_reg_check_tags(tags, e) != 0) return NULL;
    if (tags && json_object_size(tags) > 50) {
        reg_invalid(e, "A function can have at most 50 tags");
        return NULL;
    }
    int publish = 0;
    if (realm_reg_get_bool(req, "Publish", &publish, e) < 0) return NULL;
    const char *zip = zip_of(json_object_get(req, "Code"), e);
    if (!zip) return NULL;
    rc = pending_add(r, tenant, name, 1);
    if (rc != 0) {
        if (rc < 0)
            realm_reg_db_fail(r, e);
        else
            realm_error_set(e, REALM_ERR_RESOURCE_CONFLICT, "Function already exist: %s", name);
        return NULL;
    }
    memcpy(name_out, name, sizeof(name));
    return zip;
}

/* The stored configuration of a new $LATEST from a checked request. */
static json_t *new_config(realm_registry_t *r, const char *name, json_t *req,
                          const realm_pkg_info_t *pkg, realm_error_t *e)
{
    json_t *cfg = json_pack("{s:s, s:s, s:i, s:i, s:s, s:[s], s:{s:i}}", "FunctionName", name,
                            "Description", "", "Timeout", 3, "MemorySize", 128, "PackageType",
                            "Zip", "Architectures", "x86_64", "EphemeralStorage", "Size", 512);
    if (realm_reg_check_config_fields(r, req, cfg, 1, e) != 0) {
        json_decref(cfg);
        return NULL;
    }
    realm_reg_stamp(cfg, pkg);
    return cfg;
}

/*
 * Ends a transaction that wrote $LATEST (cfg): publishes it first when asked,
 * commits, and renders what the caller answers (the new version, or
 * $LATEST). NULL with e set (the transaction rolled back) on failure.
 */
static json_t *publish_and_commit(realm_registry_t *r, const char *tenant, const char *name,
                                  json_t *cfg, int publish, realm_error_t *e)
{
    long num = 0;
    if (publish && realm_reg_publish_locked(r, tenant, name, NULL, &num, e) != 0) {
        realm_store_rollback(r->store);
        return NULL;
    }
    if (realm_store_commit(r->store) != 0) {
        realm_reg_db_fail(r, e);
        return NULL;
    }
    if (!num) return realm_reg_render(r, tenant, name, cfg, 0, 0);
    json_t *vc = NULL;
    if (realm_reg_load_version(r, tenant, name, num, &vc, NULL) != 0) {
        realm_reg_db_fail(r, e);
        return NULL;
    }
    json_t *out = realm_reg_render(r, tenant, name, vc, num, 1);
    json_decref(vc);
    return out;
}

json_t *realm_registry_create_commit(realm_registry_t *r, const char *tenant, json_t *req,
                                     const realm_pkg_info_t *pkg, realm_error_t *e)
{
    char name[NAME_MAX_LEN + 1], q[ALIAS_MAX_LEN + 1];
    const char *fn_name = json_string_value(json_object_get(req, "FunctionName"));
    if (!fn_name || realm_registry_parse_name(r, tenant, fn_name, 0, name, q, e) != 0) return NULL;
    realm_registry_update_abort(r, tenant, name);
    json_t *cfg = new_config(r, name, req, pkg, e);
    if (!cfg) return NULL;
    json_t *tags = json_object_get(req, "Tags");
    json_t *out = NULL;
    if (realm_store_begin(r->store) != 0) {
        realm_reg_db_fail(r, e);
        goto done;
    }
    int rc = realm_store_fn_insert(r->store, tenant, name, json_is_object(tags) ? tags : NULL);
    if (rc != 0) {
        realm_store_rollback(r->store);
        if (rc < 0)
            realm_reg_db_fail(r, e);
        else
            realm_error_set(e, REALM_ERR_RESOURCE_CONFLICT, "Function already exist: %s", name);
        goto done;
    }
    if (realm_store_ver_insert(r->store, tenant, name, 0, pkg->hex, cfg) != 0) {
        realm_store_rollback(r->store);
        realm_reg_db_fail(r, e);
        goto done;
    }
    int publish = 0;
    realm_error_t ignore;
    realm_reg_get_bool(req, "Publish", &publish, &ignore);
    out = publish_and_commit(r, tenant, name, cfg, publish, e);
    if (!out) goto done;
    realm_info("function %s%s%s created (%s, %llu bytes)", *tenant ? tenant : "",
               *tenant ? "/" : "", name, json_string_value(json_object_get(cfg, "Runtime")),
               (unsigned long long)pkg->zip_bytes);
done:
    json_decref(cfg);
    return out;
}

/* ---- code updates ---- */

int realm_reg_check_revision(json_t *req, json_t *stored, realm_error_t *e)
{
    const char *want;
    int rc = realm_reg_get_str(req, "RevisionId", &want, e);
    if (rc <= 0) return rc;
    const char *have = json_string_value(json_object_get(stored, "RevisionId"));
    if (!have || strcmp(have, want) != 0)
        return realm_error_set(
            e, REALM_ERR_PRECONDITION_FAILED,
            "The Revision Id provided does not match the latest Revision Id. Call "
            "GetFunction/GetAlias API to retrieve the latest Revision Id");
    return 0;
}

int realm_reg_conflict_updating(realm_registry_t *r, const char *tenant, const char *name,
                                realm_error_t *e)
{
    char arn[256];
    realm_reg_arn(r, tenant, name, NULL, arn, sizeof(arn));
    return realm_error_set(
        e, REALM_ERR_RESOURCE_CONFLICT,
        "The operation cannot be performed at this time. An update is in progress for "
        "resource: %s",
        arn);
}

const char *realm_registry_code_check(realm_registry_t *r, const char *tenant, const char *fn_name,
                                      json_t *req, char *name, realm_error_t *e)
{
    char q[ALIAS_MAX_LEN + 1];
    if (realm_registry_parse_name(r, tenant, fn_name, 0, name, q, e) != 0) return NULL;
    int b;
    if (realm_reg_get_bool(req, "Publish", &b, e) < 0 ||
        realm_reg_get_bool(req, "DryRun", &b, e) < 0)
        return NULL;
    json_t *probe = json_object();
    int rc = realm_reg_check_architectures(req, probe, e);
    json_decref(probe);
    if (rc != 0) return NULL;
    const char *zip = zip_of(req, e);
    if (!zip) return NULL;
    json_t *cfg = NULL;
    rc = realm_reg_load_version(r, tenant, name, 0, &cfg, NULL);
    if (rc < 0) {
        realm_reg_db_fail(r, e);
        return NULL;
    }
    if (rc == 1) {
        realm_reg_not_found(r, tenant, name, NULL, e);
        return NULL;
    }
    rc = realm_reg_check_revision(req, cfg, e);
    json_decref(cfg);
    if (rc != 0) return NULL;
    if (pending_find(r, tenant, name)) {
        realm_reg_conflict_updating(r, tenant, name, e);
        return NULL;
    }
    rc = pending_add(r, tenant, name, 0);
    if (rc != 0) {
        if (rc < 0)
            realm_reg_db_fail(r, e);
        else
            realm_reg_conflict_updating(r, tenant, name, e);
        return NULL;
    }
    return zip;
}

json_t *realm_registry_code_commit(realm_registry_t *r, const char *tenant, const char *name,
                                   json_t *req, const realm_pkg_info_t *pkg, realm_error_t *e)
{
    realm_registry_update_abort(r, tenant, name);
    int dry = 0, publish = 0;
    realm_reg_get_bool(req, "DryRun", &dry, e);
    realm_reg_get_bool(req, "Publish", &publish, e);
    json_t *cfg = NULL, *out = NULL;
    if (realm_reg_begin_latest(r, tenant, name, &cfg, e) != 0) return NULL;
    int rc;
    if (realm_reg_check_revision(req, cfg, e) != 0) {
        realm_store_rollback(r->store);
        goto done;
    }
    realm_reg_stamp(cfg, pkg);
    if (dry) {
        realm_store_rollback(r->store);
        out = realm_reg_render(r, tenant, name, cfg, 0, 0);
        goto done;
    }
    rc = realm_store_ver_update(r->store, tenant, name, 0, pkg->hex, cfg);
    if (rc != 0) {
        realm_store_rollback(r->store);
        realm_reg_db_fail(r, e);
        goto done;
    }
    out = publish_and_commit(r, tenant, name, cfg, publish, e);
done:
    json_decref(cfg);
    return out;
}

/* ---- get / update configuration ---- */

/*
 * The FunctionConfiguration fn_name + qualifier names (an alias answers with
 * its own ARN, as on AWS). Fills name and, when given, the code's hash.
 */
static json_t *configuration(realm_registry_t *r, const char *tenant, const char *fn_name,
                             const char *qualifier, char *name, char *code_hex, realm_error_t *e)
{
    char q[ALIAS_MAX_LEN + 1];
    if (realm_reg_name_and_qualifier(r, tenant, fn_name, qualifier, 1, name, q, e) != 0)
        return NULL;
    long num = 0;
    json_t *cfg = NULL;
    if (realm_reg_resolve(r, tenant, name, q, -1, &num, &cfg, code_hex, e) != 0) return NULL;
    json_t *out = realm_reg_render(r, tenant, name, cfg, num, *q != '\0');
    if (*q && !realm_reg_valid_version(q)) {
        char arn[256];
        realm_reg_arn(r, tenant, name, q, arn, sizeof(arn));
        json_object_set_new(out, "FunctionArn", json_string(arn));
    }
    json_decref(cfg);
    return out;
}

json_t *realm_registry_get_configuration(realm_registry_t *r, const char *tenant,
                                         const char *fn_name, const char *qualifier,
                                         realm_error_t *e)
{
    char name[NAME_MAX_LEN + 1];
    return configuration(r, tenant, fn_name, qualifier, name, NULL, e);
}

json_t *realm_registry_get_function(realm_registry_t *r, const char *tenant, const char *fn_name,
                                    const char *qualifier, const char *code_url_base,
                                    realm_error_t *e)
{
    char name[NAME_MAX_LEN + 1], hex[REALM_PKG_HEX_LEN + 1];
    json_t *conf = configuration(r, tenant, fn_name, qualifier, name, hex, e);
    if (!conf) return NULL;
    char url[512];
    snprintf(url, sizeof(url), "%s/realm/packages/%s.zip", code_url_base, hex);
    json_t *out = json_pack("{s:o, s:{s:s, s:s}}", "Configuration", conf, "Code", "RepositoryType",
                            "S3", "Location", url);
    realm_store_fn_t fn;
    if (realm_store_fn_get(r->store, tenant, name, &fn) == 0) {
        if (json_object_size(fn.tags)) json_object_set(out, "Tags", fn.tags);
        if (fn.reserved >= 0)
            json_object_set_new(
                out, "Concurrency",
                json_pack("{s:I}", "ReservedConcurrentExecutions", (json_int_t)fn.reserved));
        realm_store_fn_dispose(&fn);
    }
    return out;
}

json_t *realm_registry_update_configuration(realm_registry_t *r, const char *tenant,
                                            const char *fn_name, json_t *req, realm_error_t *e)
{
    char name[NAME_MAX_LEN + 1], q[ALIAS_MAX_LEN + 1];
    if (realm_registry_parse_name(r, tenant, fn_name, 0, name, q, e) != 0) return NULL;
    json_t *cfg = NULL, *out = NULL;
    if (realm_reg_begin_latest(r, tenant, name, &cfg, e) != 0) return NULL;
    int rc;
    if (realm_reg_check_revision(req, cfg, e) != 0 ||
        realm_reg_check_config_fields(r, req, cfg, 0, e) != 0) {
        realm_store_rollback(r->store);
        goto done;
    }
    const char *rt = json_string_value(json_object_get(cfg, "Runtime"));
    if (rt && !realm_reg_runtime_is_provided(rt) && !json_object_get(cfg, "Handler")) {
        realm_store_rollback(r->store);
        reg_invalid(e, "Handler is required for runtime %s", rt);
        goto done;
    }
    realm_reg_stamp(cfg, NULL);
    rc = realm_store_ver_update(r->store, tenant, name, 0, NULL, cfg);
    if (rc != 0 || realm_store_commit(r->store) != 0) {
        if (rc != 0) realm_store_rollback(r->store);
        realm_reg_db_fail(r, e);
        goto done;
    }
    out = realm_reg_render(r, tenant, name, cfg, 0, 0);
done:
    json_decref(cfg);
    return out;
}

/* ---- list / delete ---- */

long realm_reg_page_size(long max_items)
{
    return max_items <= 0 || max_items > LIST_PAGE_MAX ? LIST_PAGE_MAX : max_items;
}

json_t *realm_registry_list_functions(realm_registry_t *r, const char *tenant, const char *marker,
                                      long max_items, int all_versions, realm_error_t *e)
{
    long page = realm_reg_page_size(max_items);
    /* Markers: "name" for $LATEST only, "name:num" with all versions. */
    char mname[NAME_MAX_LEN + 1] = "";
    long mnum = -1;
    if (marker && *marker) {
        char buf[128];
        snprintf(buf, sizeof(buf), "%s", marker);
        char *colon = strchr(buf, ':');
        if (colon) {
            *colon = '\0';
            mnum = strtol(colon + 1, NULL, 10);
        }
        if (!realm_reg_valid_name(buf) || (colon && !all_versions)) {
            reg_invalid(e, "Marker '%.100s' is not a marker this API returned", marker);
            return NULL;
        }
        snprintf(mname, sizeof(mname), "%.64s", buf);
    }
    json_t *rows =
        realm_store_ver_list(r->store, tenant, NULL, mname, mnum, !all_versions, (size_t)page + 1);
    if (!rows) {
        realm_reg_db_fail(r, e);
        return NULL;
    }
    json_t *list = json_array();
    char last[NAME_MAX_LEN + 32] = "";
    size_t i;
    json_t *row;
    json_array_foreach(rows, i, row)
    {
        if ((long)i == page) break;
        const char *name = json_string_value(json_object_get(row, "name"));
        long num = (long)json_integer_value(json_object_get(row, "num"));
        json_array_append_new(
            list,
            realm_reg_render(r, tenant, name, json_object_get(row, "config"), num, all_versions));
        if (all_versions)
            snprintf(last, sizeof(last), "%s:%ld", name, num);
        else
            snprintf(last, sizeof(last), "%s", name);
    }
    int more = (long)json_array_size(rows) > page;
    json_decref(rows);
    json_t *out = json_pack("{s:o}", "Functions", list);
    if (more) json_object_set_new(out, "NextMarker", json_string(last));
    return out;
}

int realm_registry_delete_function(realm_registry_t *r, const char *tenant, const char *fn_name,
                                   const char *qualifier, realm_error_t *e)
{
    char name[NAME_MAX_LEN + 1], q[ALIAS_MAX_LEN + 1];
    if (realm_reg_name_and_qualifier(r, tenant, fn_name, qualifier, 1, name, q, e) != 0) return -1;
    if (pending_find(r, tenant, name)) return realm_reg_conflict_updating(r, tenant, name, e);
    int rc = realm_reg_function_exists(r, tenant, name);
    if (rc < 0) return realm_reg_db_fail(r, e);
    if (rc == 0) return realm_reg_not_found(r, tenant, name, NULL, e);
    if (!*q) {
        if (realm_store_fn_delete(r->store, tenant, name) < 0) return realm_reg_db_fail(r, e);
        realm_info("function %s deleted", name);
        return 0;
    }
    if (strcmp(q, "$LATEST") == 0)
        return reg_invalid(e, "$LATEST cannot be deleted on its own: delete the function instead");
    if (!realm_reg_valid_version(q))
        return reg_invalid(e, "Qualifier '%s' is an alias: delete it with DeleteAlias", q);
    char alias[ALIAS_MAX_LEN + 1];
    rc = realm_store_alias_using(r->store, tenant, name, q, alias);
    if (rc < 0) return realm_reg_db_fail(r, e);
    if (rc == 1)
        return realm_error_set(
            e, REALM_ERR_RESOURCE_CONFLICT,
            "Unable to delete version %s because alias %s uses it: update or delete "
            "the alias first",
            q, alias);
    rc = realm_store_ver_delete(r->store, tenant, name, strtol(q, NULL, 10));
    if (rc < 0) return realm_reg_db_fail(r, e);
    if (rc == 1) return realm_reg_not_found(r, tenant, name, q, e);
    return 0;
}

/* ---- for the runtime and the package store ---- */

int realm_registry_resolve(realm_registry_t *r, const char *tenant, const char *fn_name,
                           const char *qualifier, double pick, realm_fn_version_t *out,
                           realm_error_t *e)
{
    char name[NAME_MAX_LEN + 1], q[ALIAS_MAX_LEN + 1];
    memset(out, 0, sizeof(*out));
    if (realm_reg_name_and_qualifier(r, tenant, fn_name, qualifier, 1, name, q, e) != 0) return -1;
    long num = 0;
    json_t *cfg = NULL;
    if (realm_reg_resolve(r, tenant, name, q, pick < 0 ? 0 : pick, &num, &cfg, out->code_hex, e) !=
        0)
        return -1;
    snprintf(out->name, sizeof(out->name), "%s", name);
    if (num == 0)
        snprintf(out->version, sizeof(out->version), "$LATEST");
    else
        snprintf(out->version, sizeof(out->version), "%ld", num);
    out->config = realm_reg_render(r, tenant, name, cfg, num, num != 0);
    json_decref(cfg);
    out->reserved = -1;
    realm_store_fn_t fn;
    if (realm_store_fn_get(r->store, tenant, name, &fn) == 0) {
        out->reserved = fn.reserved;
        realm_store_fn_dispose(&fn);
    }
    return 0;
}

uint64_t realm_registry_generation(const realm_registry_t *r)
{
    return realm_store_generation(r->store);
}

uint64_t realm_registry_local_writes(const realm_registry_t *r)
{
    return realm_store_local_writes(r->store);
}

void realm_fn_version_dispose(realm_fn_version_t *v)
{
    json_decref(v->config);
    v->config = NULL;
}

int realm_registry_code_owned(realm_registry_t *r, const char *tenant, const char *hex)
{
    return realm_store_code_used(r->store, tenant, hex) == 1;
}

int realm_registry_code_used(realm_registry_t *r, const char *hex)
{
    /* A create or update in flight may be about to refer to any package. */
    if (realm_store_pending_count(r->store) > 0) return 1;
    return realm_store_code_used(r->store, NULL, hex) != 0; /* errors keep the package */
}
