/*
 * fuzz_pkg.c - libFuzzer driver for the code package validator: every input
 * is offered to realm_pkg_store_put as a zip under small limits. A refused
 * input must leave the store empty; an accepted one is removed again so the
 * store stays small. Seeds in fuzz/corpus/fuzz_pkg are real zips (good and
 * hostile), so mutations start from valid central directories.
 *
 *   make fuzz-build && build/fuzz/fuzz_pkg -max_total_time=600 fuzz/corpus/fuzz_pkg
 */
#include "pkg/pkg.h"

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static realm_pkg_store_t *store;
static char root[64];

/* Entries in the store root other than an empty .staging. */
static int leftovers(void)
{
    DIR *d = opendir(root);
    if (!d) abort();
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
        if (strcmp(de->d_name, ".staging") == 0) continue;
        n++;
    }
    closedir(d);
    return n;
}

/* The store holds only an empty .staging between inputs. */
static void cleanup(void)
{
    char staging[96];
    realm_pkg_store_close(store);
    snprintf(staging, sizeof(staging), "%s/.staging", root);
    rmdir(staging);
    rmdir(root);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!store) {
        snprintf(root, sizeof(root), "/tmp/realm-fuzz-pkg-XXXXXX");
        if (!mkdtemp(root)) abort();
        char err[256];
        store = realm_pkg_store_open(root, err, sizeof(err));
        if (!store) abort();
        atexit(cleanup);
    }
    const realm_pkg_limits_t lim = {
        .max_zip_bytes = 1 << 20, .max_unzipped_bytes = 4 << 20, .max_entries = 64};
    realm_pkg_info_t info;
    char err[512];
    if (realm_pkg_store_put(store, data, size, &lim, &info, err, sizeof(err)) == 0) {
        if (!realm_pkg_store_has(store, info.hex)) abort();
        realm_pkg_store_remove(store, info.hex);
    } else if (err[0] == '\0') {
        abort(); /* every refusal says why */
    }
    if (leftovers() != 0) abort(); /* nothing is left behind */
    return 0;
}
