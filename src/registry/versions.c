/*
 * versions.c - versions, aliases, reserved concurrency, tags and account
 * settings (see registry.h). Each operation is one transaction.
 */
#include "registry/internal.h"

#include "base/str.h"

#include <stdlib.h>
#include <string.h>

/* ---- versions ---- */

/* Equal apart from the fields that change on every write. */
static int same_config(json_t *a, json_t *b)
{
    static const char *const volatile_keys[] = {"LastModified", "RevisionId", "Description"};
    json_t *x = json_deep_copy(a), *y = json_deep_copy(b);
    for (size_t i = 0; i < 3; i++) {
        json_object_del(x, volatile_keys[i]);
        json_object_del(y, volatile_keys[i]);
    }
    int eq = json_equal(x, y);
    json_decref(x);
    json_decref(y);
    return eq;
}

int realm_reg_publish_locked(realm_registry_t *r, const char *tenant, const char *name,
                             const char *description, long *num, realm_error_t *e)
{
    json_t *latest = NULL, *last = NULL;
    char code[REALM_PKG_HEX_LEN + 1], last_code[REALM_PKG_HEX_LEN + 1];
    int rc = realm_reg_load_version(r, tenant, name, 0, &latest, code);
    if (rc != 0)
        return rc < 0 ? realm_reg_db_fail(r, e) : realm_reg_not_found(r, tenant, name, NULL, e);
    int64_t last_num = 0;
    rc = realm_store_ver_last(r->store, tenant, name, &last_num, &last, last_code);
    if (rc < 0) goto fail;
    if (last && strcmp(last_code, code) == 0 && same_config(last, latest)) {
        *num = (long)last_num; /* nothing changed since: AWS returns that version */
        json_decref(latest);
        json_decref(last);
        return 0;
    }
    json_decref(last);
    long n = (long)realm_store_fn_take_version(r->store, tenant, name);
    if (n <= 0) goto fail;
    realm_reg_stamp(latest, NULL);
    if (description) json_object_set_new(latest, "Description", json_string(description));
    if (realm_store_ver_insert(r->store, tenant, name, n, code, latest) != 0) goto fail;
    json_decref(latest);
    *num = n;
    return 0;
fail:
    json_decref(latest);
    return realm_reg_db_fail(r, e);
}

json_t *realm_registry_publish_version(realm_registry_t *r, const char *tenant, const char *fn_name,
                                       json_t *req, realm_error_t *e)
{
    char name[NAME_MAX_LEN + 1], q[ALIAS_MAX_LEN + 1];
    if (realm_registry_parse_name(r, tenant, fn_name, 0, name, q, e) != 0) return NULL;
    const char *sha = NULL, *desc = NULL;
    if (realm_reg_get_str(req, "CodeSha256", &sha, e) < 0 ||
        realm_reg_get_str(req, "Description", &desc, e) < 0)
        return NULL;
    if (desc && strlen(desc) > 256) {
        reg_invalid(e, "Description is over 256 characters");
        return NULL;
    }
    if (realm_reg_is_updating(r, tenant, name)) {
        realm_reg_conflict_updating(r, tenant, name, e);
        return NULL;
    }
    json_t *latest = NULL;
    if (realm_reg_begin_latest(r, tenant, name, &latest, e) != 0) return NULL;
    int rc;
    const char *have_sha = json_string_value(json_object_get(latest, "CodeSha256"));
    long num = 0;
    if (sha && (!have_sha || strcmp(sha, have_sha) != 0)) {
        reg_invalid(e,
                    "CodeSha256 (%.64s) is different from the current CodeSha256 of $LATEST "
                    "(%s): the code changed; please try again",
                    sha, have_sha ? have_sha : "");
        rc = -1;
    } else if (realm_reg_check_revision(req, latest, e) != 0) {
        rc = -1;
    } else {
        rc = realm_reg_publish_locked(r, tenant, name, desc, &num, e);
    }
    json_decref(latest);
    if (rc != 0) {
        realm_store_rollback(r->store);
        return NULL;
    }
    if (realm_store_commit(r->store) != 0) {
        realm_reg_db_fail(r, e);
        return NULL;
    }
    json_t *cfg = NULL;
    if (realm_reg_load_version(r, tenant, name, num, &cfg, NULL) != 0) {
        realm_reg_db_fail(r, e);
        return NULL;
    }
    json_t *out = realm_reg_render(r, tenant, name, cfg, num, 1);
    json_decref(cfg);
    return out;
}

static long parse_marker_num(const char *marker, realm_error_t *e)
{
    if (!marker || !*marker) return -1;
    char *end;
    long n = strtol(marker, &end, 10);
    if (*end || n < 0) {
        reg_invalid(e, "Marker '%.100s' is not a marker this API returned", marker);
        return -2;
    }
    return n;
}

/* Looks the function up: 0 exists, -1 with e (404 or 500). */
static int need_function(realm_registry_t *r, const char *tenant, const char *name,
                         realm_error_t *e)
{
    int rc = realm_reg_function_exists(r, tenant, name);
    if (rc < 0) return realm_reg_db_fail(r, e);
    if (rc == 0) return realm_reg_not_found(r, tenant, name, NULL, e);
    return 0;
}

json_t *realm_registry_list_versions(realm_registry_t *r, const char *tenant, const char *fn_name,
                                     const char *marker, long max_items, realm_error_t *e)
{
    char name[NAME_MAX_LEN + 1], q[ALIAS_MAX_LEN + 1];
    if (realm_registry_parse_name(r, tenant, fn_name, 0, name, q, e) != 0) return NULL;
    long after = parse_marker_num(marker, e);
    if (after == -2 || need_function(r, tenant, name, e) != 0) return NULL;
    long page = realm_reg_page_size(max_items);
    json_t *rows = realm_store_ver_list(r->store, tenant, name, NULL, after, 0, (size_t)page + 1);
    if (!rows) {
        realm_reg_db_fail(r, e);
        return NULL;
    }
    json_t *list = json_array();
    long last = -1;
    size_t i;
    json_t *row;
    json_array_foreach(rows, i, row)
    {
        if ((long)i == page) break;
        long num = (long)json_integer_value(json_object_get(row, "num"));
        json_array_append_new(
            list, realm_reg_render(r, tenant, name, json_object_get(row, "config"), num, 1));
        last = num;
    }
    int more = (long)json_array_size(rows) > page;
    json_decref(rows);
    json_t *out = json_pack("{s:o}", "Versions", list);
    if (more) {
        char m[24];
        snprintf(m, sizeof(m), "%ld", last);
        json_object_set_new(out, "NextMarker", json_string(m));
    }
    return out;
}

/* ---- aliases ---- */

static json_t *render_alias(realm_registry_t *r, const char *tenant, const char *name,
                            const char *alias, json_t *stored)
{
    char arn[256];
    realm_reg_arn(r, tenant, name, alias, arn, sizeof(arn));
    json_t *out = json_pack("{s:s, s:s}", "AliasArn", arn, "Name", alias);
    json_object_update(out, stored);
    return out;
}

static int version_exists(realm_registry_t *r, const char *tenant, const char *name,
                          const char *version)
{
    long num = strcmp(version, "$LATEST") == 0 ? 0 : strtol(version, NULL, 10);
    int rc = realm_store_ver_get(r->store, tenant, name, num, NULL, NULL);
    return rc < 0 ? -1 : rc == 0;
}

/* Applies FunctionVersion, Description and RoutingConfig from req to cfg. */
static int apply_alias_fields(realm_registry_t *r, const char *tenant, const char *name,
                              json_t *req, json_t *cfg, realm_error_t *e)
{
    const char *fv, *desc;
    int rc = realm_reg_get_str(req, "FunctionVersion", &fv, e);
    if (rc < 0) return -1;
    if (rc) {
        if (!realm_reg_valid_version(fv))
            return reg_invalid(e, "FunctionVersion '%.64s' must be $LATEST or a version number",
                               fv);
        rc = version_exists(r, tenant, name, fv);
        if (rc < 0) return realm_reg_db_fail(r, e);
        if (rc == 0) return realm_reg_not_found(r, tenant, name, fv, e);
        json_object_set_new(cfg, "FunctionVersion", json_string(fv));
    }
    if ((rc = realm_reg_get_str(req, "Description", &desc, e)) < 0) return -1;
    if (rc) {
        if (strlen(desc) > 256) return reg_invalid(e, "Description is over 256 characters");
        json_object_set_new(cfg, "Description", json_string(desc));
    }
    json_t *rcfg = json_object_get(req, "RoutingConfig");
    if (rcfg && !json_is_null(rcfg)) {
        json_t *w = json_object_get(rcfg, "AdditionalVersionWeights");
        if (!json_is_object(rcfg) || (w && !json_is_null(w) && !json_is_object(w)))
            return reg_invalid(e, "RoutingConfig.AdditionalVersionWeights must be an object of "
                                  "version: weight");
        if (!w || json_is_null(w) || json_object_size(w) == 0) {
            json_object_del(cfg, "RoutingConfig");
        } else {
            if (json_object_size(w) > 1)
                return reg_invalid(e, "RoutingConfig can shift traffic to at most one "
                                      "additional version");
            const char *k;
            json_t *v;
            json_object_foreach(w, k, v)
            {
                if (!realm_reg_valid_version(k) || strcmp(k, "$LATEST") == 0)
                    return reg_invalid(e,
                                       "RoutingConfig: '%.64s' must be a published version "
                                       "number",
                                       k);
                if (!json_is_number(v) || json_number_value(v) < 0 || json_number_value(v) > 1)
                    return reg_invalid(e,
                                       "RoutingConfig: the weight of version %s must be a "
                                       "number from 0.0 to 1.0",
                                       k);
                rc = version_exists(r, tenant, name, k);
                if (rc < 0) return realm_reg_db_fail(r, e);
                if (rc == 0) return realm_reg_not_found(r, tenant, name, k, e);
            }
            json_object_set_new(cfg, "RoutingConfig",
                                json_pack("{s:O}", "AdditionalVersionWeights", w));
        }
    }
    const char *primary = json_string_value(json_object_get(cfg, "FunctionVersion"));
    json_t *w = json_object_get(json_object_get(cfg, "RoutingConfig"), "AdditionalVersionWeights");
    if (primary && w) {
        if (strcmp(primary, "$LATEST") == 0)
            return reg_invalid(e, "RoutingConfig cannot be used when the alias points to "
                                  "$LATEST: point it to a published version");
        if (json_object_get(w, primary))
            return reg_invalid(e,
                               "RoutingConfig: version %s is already the alias's "
                               "FunctionVersion",
                               primary);
    }
    char rev[37];
    realm_str_uuid4(rev);
    json_object_set_new(cfg, "RevisionId", json_string(rev));
    return 0;
}

static int alias_args(realm_registry_t *r, const char *tenant, const char *fn_name,
                      const char *alias, char *name, realm_error_t *e)
{
    char q[ALIAS_MAX_LEN + 1];
    if (realm_registry_parse_name(r, tenant, fn_name, 0, name, q, e) != 0) return -1;
    if (alias && !realm_reg_valid_alias(alias))
        return reg_invalid(e,
                           "Alias name '%.128s' is not valid: 1 to 128 of [a-zA-Z0-9-_], not "
                           "all digits",
                           alias);
    return 0;
}

static int alias_missing(realm_registry_t *r, const char *tenant, const char *name,
                         const char *alias, realm_error_t *e)
{
    char arn[256];
    realm_reg_arn(r, tenant, name, alias, arn, sizeof(arn));
    return realm_error_set(e, REALM_ERR_FUNCTION_NOT_FOUND, "Alias not found: %s", arn);
}

static int save_alias(realm_registry_t *r, const char *tenant, const char *name, const char *alias,
                      json_t *cfg, int is_insert)
{
    return realm_store_alias_put(r->store, tenant, name, alias, cfg, is_insert);
}

json_t *realm_registry_create_alias(realm_registry_t *r, const char *tenant, const char *fn_name,
                                    json_t *req, realm_error_t *e)
{
    char name[NAME_MAX_LEN + 1];
    const char *alias;
    int rc = realm_reg_get_str(req, "Name", &alias, e);
    if (rc < 0) return NULL;
    if (rc == 0) {
        reg_invalid(e, "Name is required (the alias name)");
        return NULL;
    }
    if (alias_args(r, tenant, fn_name, alias, name, e) != 0) return NULL;
    if (!json_is_string(json_object_get(req, "FunctionVersion"))) {
        reg_invalid(e, "FunctionVersion is required ($LATEST or a version number)");
        return NULL;
    }
    if (realm_store_begin(r->store) != 0) {
        realm_reg_db_fail(r, e);
        return NULL;
    }
    json_t *cfg = json_pack("{s:s}", "Description", ""), *existing = NULL, *out = NULL;
    if (need_function(r, tenant, name, e) != 0) goto fail;
    rc = realm_reg_load_alias(r, tenant, name, alias, &existing);
    json_decref(existing);
    if (rc < 0) {
        realm_reg_db_fail(r, e);
        goto fail;
    }
    if (rc == 0) {
        char arn[256];
        realm_reg_arn(r, tenant, name, alias, arn, sizeof(arn));
        realm_error_set(e, REALM_ERR_RESOURCE_CONFLICT, "Alias already exists: %s", arn);
        goto fail;
    }
    if (apply_alias_fields(r, tenant, name, req, cfg, e) != 0) goto fail;
    if (save_alias(r, tenant, name, alias, cfg, 1) != 0 || realm_store_commit(r->store) != 0) {
        realm_reg_db_fail(r, e);
        json_decref(cfg);
        return NULL;
    }
    out = render_alias(r, tenant, name, alias, cfg);
    json_decref(cfg);
    return out;
fail:
    realm_store_rollback(r->store);
    json_decref(cfg);
    return NULL;
}

json_t *realm_registry_get_alias(realm_registry_t *r, const char *tenant, const char *fn_name,
                                 const char *alias, realm_error_t *e)
{
    char name[NAME_MAX_LEN + 1];
    if (alias_args(r, tenant, fn_name, alias, name, e) != 0) return NULL;
    json_t *cfg = NULL;
    int rc = realm_reg_load_alias(r, tenant, name, alias, &cfg);
    if (rc < 0) {
        realm_reg_db_fail(r, e);
        return NULL;
    }
    if (rc == 1) {
        if (need_function(r, tenant, name, e) == 0) alias_missing(r, tenant, name, alias, e);
        return NULL;
    }
    json_t *out = render_alias(r, tenant, name, alias, cfg);
    json_decref(cfg);
    return out;
}

json_t *realm_registry_update_alias(realm_registry_t *r, const char *tenant, const char *fn_name,
                                    const char *alias, json_t *req, realm_error_t *e)
{
    char name[NAME_MAX_LEN + 1];
    if (alias_args(r, tenant, fn_name, alias, name, e) != 0) return NULL;
    if (realm_store_begin(r->store) != 0) {
        realm_reg_db_fail(r, e);
        return NULL;
    }
    json_t *cfg = NULL;
    int rc = realm_reg_load_alias(r, tenant, name, alias, &cfg);
    if (rc != 0) {
        realm_store_rollback(r->store);
        if (rc < 0)
            realm_reg_db_fail(r, e);
        else if (need_function(r, tenant, name, e) == 0)
            alias_missing(r, tenant, name, alias, e);
        return NULL;
    }
    if (realm_reg_check_revision(req, cfg, e) != 0 ||
        apply_alias_fields(r, tenant, name, req, cfg, e) != 0) {
        realm_store_rollback(r->store);
        json_decref(cfg);
        return NULL;
    }
    if (save_alias(r, tenant, name, alias, cfg, 0) != 0 || realm_store_commit(r->store) != 0) {
        realm_reg_db_fail(r, e);
        json_decref(cfg);
        return NULL;
    }
    json_t *out = render_alias(r, tenant, name, alias, cfg);
    json_decref(cfg);
    return out;
}

int realm_registry_delete_alias(realm_registry_t *r, const char *tenant, const char *fn_name,
                                const char *alias, realm_error_t *e)
{
    char name[NAME_MAX_LEN + 1];
    if (alias_args(r, tenant, fn_name, alias, name, e) != 0) return -1;
    if (need_function(r, tenant, name, e) != 0) return -1;
    int rc = realm_store_alias_delete(r->store, tenant, name, alias);
    if (rc < 0) return realm_reg_db_fail(r, e);
    if (rc == 1) return alias_missing(r, tenant, name, alias, e);
    return 0;
}

json_t *realm_registry_list_aliases(realm_registry_t *r, const char *tenant, const char *fn_name,
                                    const char *function_version, const char *marker,
                                    long max_items, realm_error_t *e)
{
    char name[NAME_MAX_LEN + 1];
    if (alias_args(r, tenant, fn_name, NULL, name, e) != 0) return NULL;
    if (function_version && *function_version && !realm_reg_valid_version(function_version)) {
        reg_invalid(e, "FunctionVersion '%.64s' must be $LATEST or a version number",
                    function_version);
        return NULL;
    }
    if (need_function(r, tenant, name, e) != 0) return NULL;
    long page = realm_reg_page_size(max_items);
    json_t *rows =
        realm_store_alias_list(r->store, tenant, name, marker, function_version, (size_t)page + 1);
    if (!rows) {
        realm_reg_db_fail(r, e);
        return NULL;
    }
    json_t *list = json_array();
    char last[ALIAS_MAX_LEN + 1] = "";
    size_t i;
    json_t *row;
    json_array_foreach(rows, i, row)
    {
        if ((long)i == page) break;
        const char *alias = json_string_value(json_object_get(row, "alias"));
        json_array_append_new(list,
                              render_alias(r, tenant, name, alias, json_object_get(row, "config")));
        snprintf(last, sizeof(last), "%s", alias);
    }
    int more = (long)json_array_size(rows) > page;
    json_decref(rows);
    json_t *out = json_pack("{s:o}", "Aliases", list);
    if (more) json_object_set_new(out, "NextMarker", json_string(last));
    return out;
}

/* ---- reserved concurrency ---- */

static int fn_args(realm_registry_t *r, const char *tenant, const char *fn_name, char *name,
                   realm_error_t *e)
{
    char q[ALIAS_MAX_LEN + 1];
    if (realm_registry_parse_name(r, tenant, fn_name, 0, name, q, e) != 0) return -1;
    return need_function(r, tenant, name, e);
}

static long long sum_reserved(realm_registry_t *r, const char *tenant, const char *except)
{
    return realm_store_fn_sum_reserved(r->store, tenant, except);
}

json_t *realm_registry_put_concurrency(realm_registry_t *r, const char *tenant, const char *fn_name,
                                       json_t *req, realm_error_t *e)
{
    char name[NAME_MAX_LEN + 1];
    long long n;
    int rc = realm_reg_get_int(req, "ReservedConcurrentExecutions", &n, e);
    if (rc < 0) return NULL;
    if (rc == 0 || n < 0) {
        reg_invalid(e, "ReservedConcurrentExecutions is required: an integer >= 0");
        return NULL;
    }
    if (realm_store_begin(r->store) != 0) {
        realm_reg_db_fail(r, e);
        return NULL;
    }
    if (fn_args(r, tenant, fn_name, name, e) != 0) {
        realm_store_rollback(r->store);
        return NULL;
    }
    long long others = sum_reserved(r, tenant, name);
    if (others < 0) {
        realm_store_rollback(r->store);
        realm_reg_db_fail(r, e);
        return NULL;
    }
    if ((unsigned long long)(others + n) > r->concurrency_limit) {
        realm_store_rollback(r->store);
        reg_invalid(e,
                    "Specified ReservedConcurrentExecutions for function decreases account's "
                    "UnreservedConcurrentExecution below its minimum value of [0]: the account "
                    "limit is %llu and %lld are reserved by other functions",
                    (unsigned long long)r->concurrency_limit, others);
        return NULL;
    }
    if (realm_store_fn_set_reserved(r->store, tenant, name, n) != 0 ||
        realm_store_commit(r->store) != 0) {
        realm_reg_db_fail(r, e);
        return NULL;
    }
    return json_pack("{s:I}", "ReservedConcurrentExecutions", (json_int_t)n);
}

json_t *realm_registry_get_concurrency(realm_registry_t *r, const char *tenant, const char *fn_name,
                                       realm_error_t *e)
{
    char name[NAME_MAX_LEN + 1];
    if (fn_args(r, tenant, fn_name, name, e) != 0) return NULL;
    realm_store_fn_t fn;
    int rc = realm_store_fn_get(r->store, tenant, name, &fn);
    if (rc < 0) {
        realm_reg_db_fail(r, e);
        return NULL;
    }
    json_t *out = json_object();
    if (rc == 0 && fn.reserved >= 0)
        json_object_set_new(out, "ReservedConcurrentExecutions", json_integer(fn.reserved));
    if (rc == 0) realm_store_fn_dispose(&fn);
    return out;
}

int realm_registry_delete_concurrency(realm_registry_t *r, const char *tenant, const char *fn_name,
                                      realm_error_t *e)
{
    char name[NAME_MAX_LEN + 1];
    if (fn_args(r, tenant, fn_name, name, e) != 0) return -1;
    if (realm_store_fn_set_reserved(r->store, tenant, name, -1) != 0)
        return realm_reg_db_fail(r, e);
    return 0;
}

/* ---- tags ---- */

static int tag_target(realm_registry_t *r, const char *tenant, const char *arn, char *name,
                      realm_error_t *e)
{
    char q[ALIAS_MAX_LEN + 1];
    if (strncmp(arn, "arn:", 4) != 0)
        return reg_invalid(e, "Resource '%.200s' must be a function ARN", arn);
    if (realm_registry_parse_name(r, tenant, arn, 1, name, q, e) != 0) return -1;
    if (*q)
        return reg_invalid(e, "Tags apply to a function, not to a version or an alias: use the "
                              "unqualified function ARN");
    return need_function(r, tenant, name, e);
}

static json_t *load_tags(realm_registry_t *r, const char *tenant, const char *name)
{
    realm_store_fn_t fn;
    if (realm_store_fn_get(r->store, tenant, name, &fn) != 0) return NULL;
    return fn.tags;
}

static int save_tags(realm_registry_t *r, const char *tenant, const char *name, json_t *tags)
{
    return realm_store_fn_set_tags(r->store, tenant, name, tags);
}

/*
 * Begins the write transaction of a tag change: the function's tags (new
 * reference) and its name, or NULL with e set and the transaction rolled back.
 */
static json_t *tags_begin(realm_registry_t *r, const char *tenant, const char *arn, char *name,
                          realm_error_t *e)
{
    if (realm_store_begin(r->store) != 0) {
        realm_reg_db_fail(r, e);
        return NULL;
    }
    if (tag_target(r, tenant, arn, name, e) != 0) {
        realm_store_rollback(r->store);
        return NULL;
    }
    json_t *tags = load_tags(r, tenant, name);
    if (!tags) {
        realm_store_rollback(r->store);
        realm_reg_db_fail(r, e);
    }
    return tags;
}

int realm_registry_tag(realm_registry_t *r, const char *tenant, const char *arn, json_t *req,
                       realm_error_t *e)
{
    char name[NAME_MAX_LEN + 1];
    json_t *add = json_object_get(req, "Tags");
    if (!add) return reg_invalid(e, "Tags is required");
    if (realm_reg_check_tags(add, e) != 0) return -1;
    json_t *tags = tags_begin(r, tenant, arn, name, e);
    if (!tags) return -1;
    json_object_update(tags, add);
    int rc = 0;
    if (json_object_size(tags) > 50) {
        realm_store_rollback(r->store);
        rc = reg_invalid(e, "A function can have at most 50 tags");
    } else if (save_tags(r, tenant, name, tags) != 0 || realm_store_commit(r->store) != 0) {
        rc = realm_reg_db_fail(r, e);
    }
    json_decref(tags);
    return rc;
}

int realm_registry_untag(realm_registry_t *r, const char *tenant, const char *arn,
                         const char *const *keys, realm_error_t *e)
{
    char name[NAME_MAX_LEN + 1];
    json_t *tags = tags_begin(r, tenant, arn, name, e);
    if (!tags) return -1;
    for (size_t i = 0; keys[i]; i++)
        json_object_del(tags, keys[i]);
    int rc = save_tags(r, tenant, name, tags) != 0 || realm_store_commit(r->store) != 0
                 ? realm_reg_db_fail(r, e)
                 : 0;
    json_decref(tags);
    return rc;
}

json_t *realm_registry_list_tags(realm_registry_t *r, const char *tenant, const char *arn,
                                 realm_error_t *e)
{
    char name[NAME_MAX_LEN + 1];
    if (tag_target(r, tenant, arn, name, e) != 0) return NULL;
    json_t *tags = load_tags(r, tenant, name);
    if (!tags) {
        realm_reg_db_fail(r, e);
        return NULL;
    }
    return json_pack("{s:o}", "Tags", tags);
}

/* ---- account ---- */

json_t *realm_registry_account_settings(realm_registry_t *r, const char *tenant, realm_error_t *e)
{
    long long reserved = sum_reserved(r, tenant, NULL);
    int64_t count = 0, size = 0;
    if (reserved < 0 || realm_store_fn_usage(r->store, tenant, &count, &size) != 0) {
        realm_reg_db_fail(r, e);
        return NULL;
    }
    long long limit = (long long)r->concurrency_limit;
    /* 75 GB: Lambda's default storage quota for all packages. */
    return json_pack(
        "{s:{s:I, s:I, s:I, s:I, s:I}, s:{s:I, s:I}}", "AccountLimit", "TotalCodeSize",
        (json_int_t)80530636800LL, "CodeSizeUnzipped", (json_int_t)r->max_unzipped_bytes,
        "CodeSizeZipped", (json_int_t)r->max_zip_bytes, "ConcurrentExecutions", (json_int_t)limit,
        "UnreservedConcurrentExecutions", (json_int_t)(limit - reserved), "AccountUsage",
        "TotalCodeSize", (json_int_t)size, "FunctionCount", (json_int_t)count);
}
