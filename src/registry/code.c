/*
 * code.c - the code packages' bytes where the registry's backend keeps them
 * (registry.h, "code packages in the database"): kept with the version rows
 * on PostgreSQL, fetched into a server's local package store on demand,
 * hash-checked on every fetch; nothing on SQLite (the data dir is the truth).
 */
#include "registry/internal.h"

#include "base/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Generous: the package passed the limits of the server that took it, and its
 * hash is checked before it is unpacked; these only bound a broken row. */
#define FETCH_MAX_UNZIPPED (64ULL << 30)
#define FETCH_MAX_ENTRIES 10000000ULL

static int is_hex64(const char *s)
{
    if (!s || strlen(s) != REALM_PKG_HEX_LEN) return 0;
    return strspn(s, "0123456789abcdef") == REALM_PKG_HEX_LEN;
}

int realm_registry_code_keep(realm_registry_t *r, const char *hex, const void *zip, size_t len)
{
    if (!is_hex64(hex)) return -1;
    int rc = realm_store_pkg_put(r->store, hex, zip, len);
    return rc < 0 ? -1 : 0; /* REALM_STORE_NOT_KEPT: nothing to do */
}

int realm_registry_code_fetch(realm_registry_t *r, realm_pkg_store_t *pkgs, const char *hex,
                              char *err, size_t err_len)
{
    if (!is_hex64(hex)) {
        snprintf(err, err_len, "package '%.80s': not a SHA-256 in lower-case hex", hex ? hex : "");
        return -1;
    }
    if (realm_pkg_store_has(pkgs, hex)) return 0;
    char *zip = NULL;
    size_t len = 0;
    int rc = realm_store_pkg_get(r->store, hex, &zip, &len);
    if (rc != 0) {
        snprintf(err, err_len,
                 rc == 1 ? "package %s is not in the database"
                         : "package %s: cannot read it from the database",
                 hex);
        return -1;
    }
    realm_pkg_info_t info;
    realm_pkg_hash(zip, len, &info);
    if (strcmp(info.hex, hex) != 0) {
        realm_error("registry: package %s read from the database hashes to %s (%zu bytes): "
                    "refused; its rows were altered or damaged",
                    hex, info.hex, len);
        snprintf(err, err_len, "package %s: the bytes in the database do not match its hash", hex);
        free(zip);
        return -1;
    }
    realm_pkg_limits_t lim = {.max_zip_bytes = len,
                              .max_unzipped_bytes = FETCH_MAX_UNZIPPED,
                              .max_entries = FETCH_MAX_ENTRIES};
    rc = realm_pkg_store_put(pkgs, zip, len, &lim, &info, err, err_len);
    free(zip);
    return rc == 0 ? 0 : -1;
}

size_t realm_registry_code_forget_unused(realm_registry_t *r)
{
    /* A create or update in flight may be about to name any package. */
    if (realm_store_pending_count(r->store) > 0) return 0;
    int64_t n = realm_store_pkg_delete_unused(r->store);
    return n > 0 ? (size_t)n : 0;
}
