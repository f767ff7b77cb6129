/*
 * fuzz_lah.c - libFuzzer driver for the Lambda@Home dialect's JSON mapping
 * (proto/lah.h): an untrusted request body mapped to AWS's form, and any
 * JSON value mapped back as an answer and as an error. Nothing may crash,
 * leak or read out of bounds; every mapping of an object is an object, and
 * an error is always an object. The input is also fed, as one key, to the
 * key functions with a small buffer (truncation).
 *
 *   make fuzz-build && build/fuzz/fuzz_lah -max_total_time=600 fuzz/corpus/fuzz_lah
 */
#include "proto/lah.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char key[8];
    char *copy = malloc(size + 1);
    if (!copy) return 0;
    memcpy(copy, data, size);
    copy[size] = '\0';
    realm_lah_snake(copy, key, sizeof(key));
    realm_lah_camel(copy, key, sizeof(key));
    free(copy);

    json_t *j = json_loadb((const char *)data, size, JSON_DECODE_ANY, NULL);
    if (!j) return 0;
    json_t *aws = realm_lah_to_aws(j);
    json_t *lah = realm_lah_from_aws(j);
    json_t *err = realm_lah_error_from_aws(j, "T");
    if (json_is_object(j) && (!json_is_object(aws) || !json_is_object(lah))) abort();
    if (!json_is_object(err)) abort();
    json_t *back = realm_lah_from_aws(aws);
    json_decref(back);
    json_decref(err);
    json_decref(lah);
    json_decref(aws);
    json_decref(j);
    return 0;
}
