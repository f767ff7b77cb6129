/*
 * validate.c - the field rules of Lambda's control API: names, runtimes,
 * configuration fields, environment variables, tags, and the seed's
 * snake_case compatibility form.
 *
 * Messages name the field and say what is accepted, since they reach the
 * user as InvalidParameterValueException messages.
 */
#include "registry/internal.h"

#include "runtimes/runtimes.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static int all_in(const char *s, const char *extra)
{
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && !strchr(extra, *s)) return 0;
    return 1;
}

int realm_reg_valid_name(const char *s)
{
    size_t n = strlen(s);
    return n >= 1 && n <= NAME_MAX_LEN && all_in(s, "-_");
}

int realm_reg_valid_alias(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > ALIAS_MAX_LEN || !all_in(s, "-_")) return 0;
    for (const char *p = s; *p; p++)
        if (!isdigit((unsigned char)*p)) return 1;
    return 0; /* all digits: that is a version */
}

int realm_reg_valid_version(const char *s)
{
    if (strcmp(s, "$LATEST") == 0) return 1;
    size_t n = strlen(s);
    if (n < 1 || n > 18 || s[0] == '0') return 0;
    for (; *s; s++)
        if (!isdigit((unsigned char)*s)) return 0;
    return 1;
}

/* ---- runtimes (the table: runtimes/runtimes.h) ---- */

int realm_reg_runtime_is_provided(const char *rt)
{
    const realm_runtimes_entry_t *e = realm_runtimes_find(rt);
    return e && !e->needs_handler;
}

/* ---- typed members ---- */

int realm_reg_get_str(json_t *obj, const char *key, const char **out, realm_error_t *e)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_string(v)) return reg_invalid(e, "%s must be a string", key);
    *out = json_string_value(v);
    return 1;
}

int realm_reg_get_int(json_t *obj, const char *key, long long *out, realm_error_t *e)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) return 0;
    if (json_is_integer(v)) {
        *out = json_integer_value(v);
        return 1;
    }
    /* 3.0 is 3; a real outside long long's range is no integer of ours
     * (and converting it would be undefined). */
    double d = json_is_real(v) ? json_real_value(v) : 0.5;
    if (d >= -9223372036854775808.0 && d < 9223372036854775808.0 && d == (double)(long long)d) {
        *out = (long long)d;
        return 1;
    }
    return reg_invalid(e, "%s must be an integer", key);
}

int realm_reg_get_bool(json_t *obj, const char *key, int *out, realm_error_t *e)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_boolean(v)) return reg_invalid(e, "%s must be true or false", key);
    *out = json_is_true(v);
    return 1;
}

/* ---- environment ---- */

/* Names the runtime sets itself (AWS's reserved keys). */
static const char *const reserved_env[] = {
    "_HANDLER",
    "_X_AMZN_TRACE_ID",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_INITIALIZATION_TYPE",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_ACCESS_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_LAMBDA_RUNTIME_API",
    "LAMBDA_TASK_ROOT",
    "LAMBDA_RUNTIME_DIR",
};

#define ENV_MAX_BYTES 4096

static int check_env(json_t *env, json_t *cfg, realm_error_t *e)
{
    if (!json_is_object(env)) return reg_invalid(e, "Environment must be an object");
    json_t *vars = json_object_get(env, "Variables");
    if (!vars || json_is_null(vars))
        vars = json_object();
    else if (!json_is_object(vars))
        return reg_invalid(e, "Environment.Variables must be an object of strings");
    else
        json_incref(vars);
    size_t total = 0;
    const char *k;
    json_t *v;
    json_object_foreach(vars, k, v)
    {
        size_t n = strlen(k);
        if (n < 2 || !isalpha((unsigned char)k[0]) || !all_in(k, "_")) {
            json_decref(vars);
            return reg_invalid(e,
                               "Environment variable name '%.128s' is not valid: it must start "
                               "with a letter and have at least 2 of [a-zA-Z0-9_]",
                               k);
        }
        for (size_t i = 0; i < sizeof(reserved_env) / sizeof(reserved_env[0]); i++) {
            if (strcmp(k, reserved_env[i]) == 0) {
                json_decref(vars);
                return reg_invalid(e,
                                   "Environment variable %s is reserved: the runtime sets it "
                                   "(reserved keys used in this request: %s)",
                                   k, k);
            }
        }
        if (!json_is_string(v)) {
            json_decref(vars);
            return reg_invalid(e, "Environment variable %.128s must be a string", k);
        }
        total += n + json_string_length(v);
    }
    if (total > ENV_MAX_BYTES) {
        json_decref(vars);
        return reg_invalid(e, "Environment variables take %zu bytes; the limit is %d", total,
                           ENV_MAX_BYTES);
    }
    if (json_object_size(vars) == 0)
        json_object_del(cfg, "Environment");
    else
        json_object_set_new(cfg, "Environment", json_pack("{s:O}", "Variables", vars));
    json_decref(vars);
    return 0;
}

/* ---- configuration ---- */

int realm_reg_check_architectures(json_t *req, json_t *cfg, realm_error_t *e)
{
    json_t *a = json_object_get(req, "Architectures");
    if (!a || json_is_null(a)) return 0;
    if (!json_is_array(a) || json_array_size(a) != 1 || !json_is_string(json_array_get(a, 0)))
        return reg_invalid(e, "Architectures must be a list of exactly one architecture");
    const char *arch = json_string_value(json_array_get(a, 0));
    if (strcmp(arch, "x86_64") != 0)
        return reg_invalid(e,
                           "Architectures: '%.64s' cannot run on this server; the accepted "
                           "value is x86_64",
                           arch);
    json_object_set_new(cfg, "Architectures", json_pack("[s]", "x86_64"));
    return 0;
}

int realm_reg_check_config_fields(const realm_registry_t *r, json_t *req, json_t *cfg,
                                  int is_create, realm_error_t *e)
{
    const char *s = NULL;
    long long n = 0;
    int rc;
    (void)r;
    /* Only the runtimes whose interpreter this server has (probed at start):
     * a known one without it is refused by name, never run on another. */
    char runtimes[512];
    realm_runtimes_available(runtimes, sizeof(runtimes));
    if ((rc = realm_reg_get_str(req, "Runtime", &s, e)) < 0) return -1;
    if (rc) {
        const realm_runtimes_entry_t *rt = realm_runtimes_find(s);
        if (!rt)
            return reg_invalid(e,
                               "Runtime '%.64s' is not supported; the runtimes this server can run "
                               "are %s",
                               s, runtimes);
        if (!realm_runtimes_version(rt))
            return reg_invalid(e,
                               "Runtime '%.64s' is not installed on this server; the runtimes it "
                               "can run are %s",
                               s, runtimes);
        json_object_set_new(cfg, "Runtime", json_string(rt->name));
    } else if (is_create) {
        return reg_invalid(e, "Runtime is required; the runtimes this server can run are %s",
                           runtimes);
    }
    if ((rc = realm_reg_get_str(req, "Handler", &s, e)) < 0) return -1;
    if (rc) {
        if (strlen(s) < 1 || strlen(s) > 128)
            return reg_invalid(e, "Handler must be 1 to 128 characters");
        for (const char *p = s; *p; p++)
            if (isspace((unsigned char)*p))
                return reg_invalid(e, "Handler '%.128s' must not contain spaces", s);
        json_object_set_new(cfg, "Handler", json_string(s));
    }
    if ((rc = realm_reg_get_str(req, "Role", &s, e)) < 0) return -1;
    if (rc) json_object_set_new(cfg, "Role", json_string(s));
    if ((rc = realm_reg_get_str(req, "Description", &s, e)) < 0) return -1;
    if (rc) {
        if (strlen(s) > 256) return reg_invalid(e, "Description is over 256 characters");
        json_object_set_new(cfg, "Description", json_string(s));
    }
    if ((rc = realm_reg_get_int(req, "Timeout", &n, e)) < 0) return -1;
    if (rc) {
        if (n < 1 || n > 900)
            return reg_invalid(e, "Timeout %lld is out of range: it must be 1 to 900 seconds", n);
        json_object_set_new(cfg, "Timeout", json_integer(n));
    }
    if ((rc = realm_reg_get_int(req, "MemorySize", &n, e)) < 0) return -1;
    if (rc) {
        if (n < 128 || n > 10240)
            return reg_invalid(e, "MemorySize %lld is out of range: it must be 128 to 10240 MB", n);
        json_object_set_new(cfg, "MemorySize", json_integer(n));
    }
    json_t *env = json_object_get(req, "Environment");
    if (env && !json_is_null(env) && check_env(env, cfg, e) != 0) return -1;
    json_t *layers = json_object_get(req, "Layers");
    if (layers && !json_is_null(layers) && (!json_is_array(layers) || json_array_size(layers)))
        return reg_invalid(e, "Layers are not supported: put the code in the package");
    json_t *eph = json_object_get(req, "EphemeralStorage");
    if (eph && !json_is_null(eph)) {
        if ((rc = realm_reg_get_int(eph, "Size", &n, e)) < 0) return -1;
        if (rc != 1 || n < 512 || n > 10240)
            return reg_invalid(e, "EphemeralStorage.Size must be 512 to 10240 MB");
        json_object_set_new(cfg, "EphemeralStorage", json_pack("{s:I}", "Size", (json_int_t)n));
    }
    if ((rc = realm_reg_get_str(req, "PackageType", &s, e)) < 0) return -1;
    if (rc && strcmp(s, "Zip") != 0)
        return reg_invalid(e, "PackageType '%.32s' is not supported; only Zip is", s);
    if (realm_reg_check_architectures(req, cfg, e) != 0) return -1;
    const char *rt = json_string_value(json_object_get(cfg, "Runtime"));
    if (is_create && rt && !realm_reg_runtime_is_provided(rt) && !json_object_get(cfg, "Handler"))
        return reg_invalid(e, "Handler is required for runtime %s", rt);
    return 0;
}

int realm_reg_check_tags(json_t *tags, realm_error_t *e)
{
    if (!json_is_object(tags)) return reg_invalid(e, "Tags must be an object of strings");
    const char *k;
    json_t *v;
    json_object_foreach(tags, k, v)
    {
        size_t n = strlen(k);
        if (n < 1 || n > 128)
            return reg_invalid(e, "Tag key '%.128s' must be 1 to 128 characters", k);
        if (strncmp(k, "aws:", 4) == 0)
            return reg_invalid(e, "Tag key '%.128s' is reserved: keys must not start with aws:", k);
        if (!json_is_string(v) || json_string_length(v) > 256)
            return reg_invalid(
                e, "Tag %.128s: the value must be a string of at most 256 characters", k);
    }
    return 0;
}

/* ---- the seed's compatibility form ---- */

static void rename_key(json_t *obj, const char *from, const char *to)
{
    json_t *v = json_object_get(obj, from);
    if (!v) return;
    json_object_set(obj, to, v);
    json_object_del(obj, from);
}

void realm_reg_seed_to_aws(json_t *req)
{
    static const char *const map[][2] = {
        {"function_name", "FunctionName"},
        {"runtime", "Runtime"},
        {"handler", "Handler"},
        {"description", "Description"},
        {"timeout", "Timeout"},
        {"memory_size", "MemorySize"},
        {"role", "Role"},
        {"publish", "Publish"},
        {"tags", "Tags"},
    };
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        rename_key(req, map[i][0], map[i][1]);
    json_t *code = json_object_get(req, "code");
    if (json_is_object(code)) {
        rename_key(code, "zip_file", "ZipFile");
        json_object_set(req, "Code", code);
        json_object_del(req, "code");
    }
    json_t *env = json_object_get(req, "environment");
    if (env) {
        /* The seed sends {"KEY": "value"} or {"variables": {...}}. */
        json_t *vars = json_object_get(env, "variables");
        json_object_set_new(req, "Environment", json_pack("{s:O}", "Variables", vars ? vars : env));
        json_object_del(req, "environment");
    }
}
