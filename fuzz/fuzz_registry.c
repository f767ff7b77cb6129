/*
 * fuzz_registry.c - libFuzzer driver for the control API's request handling
 * below HTTP: each input is split at the first newline into a function name
 * (as it would come from the path) and a JSON body, and given to every
 * registry operation against one in-memory database. Creates commit with a
 * fixed fake package, so later inputs find functions, versions and aliases
 * to update, publish, route and delete.
 *
 *   make fuzz-build && build/fuzz/fuzz_registry -max_total_time=600 fuzz/corpus/fuzz_registry
 */
#include "registry/registry.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static realm_registry_t *reg;

static void check(json_t *out, const realm_error_t *e)
{
    if (out) {
        json_decref(out);
        return;
    }
    /* Every refusal has a type, an HTTP status and a message. */
    if (!realm_err_aws_type(e->code) || realm_err_http_status(e->code) < 400 ||
        realm_err_http_status(e->code) > 599 || e->message[0] == '\0')
        abort();
}

static void check_rc(int rc, const realm_error_t *e)
{
    check(rc == 0 ? json_object() : NULL, e);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!reg) {
        realm_registry_opts_t o = {.region = "us-east-1",
                                   .account_id = "000000000000",
                                   .concurrency_limit = 10,
                                   .max_zip_bytes = 1000,
                                   .max_unzipped_bytes = 1000};
        char err[256];
        reg = realm_registry_open(":memory:", &o, err, sizeof(err));
        if (!reg) abort();
    }
    const uint8_t *nl = memchr(data, '\n', size);
    if (!nl || (size_t)(nl - data) > 200) return 0;
    char name[256];
    memcpy(name, data, (size_t)(nl - data));
    name[nl - data] = '\0';
    if (strlen(name) != (size_t)(nl - data)) return 0; /* a NUL: not a path segment */
    json_t *req = json_loadb((const char *)nl + 1, size - (size_t)(nl - data) - 1, 0, NULL);
    if (!json_is_object(req)) {
        json_decref(req);
        return 0;
    }
    realm_error_t e;
    realm_pkg_info_t pkg = {.zip_bytes = 22};
    memset(pkg.hex, 'a', REALM_PKG_HEX_LEN);
    memcpy(pkg.sha256_b64, "fake", 5);
    json_t *copy = json_deep_copy(req);
    char fn[65];
    if (realm_registry_create_check(reg, "", copy, fn, &e))
        check(realm_registry_create_commit(reg, "", copy, &pkg, &e), &e);
    else
        check(NULL, &e);
    json_decref(copy);
    if (realm_registry_code_check(reg, "", name, req, fn, &e))
        check(realm_registry_code_commit(reg, "", fn, req, &pkg, &e), &e);
    else
        check(NULL, &e);
    check(realm_registry_update_configuration(reg, "", name, req, &e), &e);
    check(realm_registry_publish_version(reg, "", name, req, &e), &e);
    check(realm_registry_create_alias(reg, "", name, req, &e), &e);
    check(realm_registry_update_alias(reg, "", name, "live", req, &e), &e);
    check(realm_registry_put_concurrency(reg, "", name, req, &e), &e);
    check_rc(realm_registry_tag(reg, "", name, req, &e), &e);
    check(realm_registry_get_function(reg, "", name, NULL, "http://x", &e), &e);
    check(realm_registry_list_versions(reg, "", name, NULL, 0, &e), &e);
    check(realm_registry_list_aliases(reg, "", name, NULL, NULL, 0, &e), &e);
    check(realm_registry_list_functions(reg, "", name, 3, 1, &e), &e);
    realm_fn_version_t v;
    if (realm_registry_resolve(reg, "", name, NULL, 0.5, &v, &e) == 0)
        realm_fn_version_dispose(&v);
    else
        check(NULL, &e);
    /* Now and then, forget things so the database stays small. */
    if (size % 7 == 0) check_rc(realm_registry_delete_function(reg, "", name, NULL, &e), &e);
    json_decref(req);
    return 0;
}
