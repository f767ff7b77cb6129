/*
 * test_lah.c - the Lambda@Home dialect's JSON mapping (proto/lah.h): keys
 * both ways (acronyms, digits, keys already in the target form), the
 * shapes Lambda@Home flattens (GetFunction, Environment), user maps kept
 * verbatim, error shapes, and truncation of the key functions.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "fixture.h"
#include "proto/lah.h"

#include <stdlib.h>
#include <string.h>

static json_t *parse(const char *text)
{
    json_error_t err;
    json_t *j = json_loads(text, 0, &err);
    if (!j) fail_msg("bad test JSON: %s: %s", err.text, text);
    return j;
}

/* Asserts that got (a reference, consumed) equals the JSON text want. */
static void assert_json(json_t *got, const char *want)
{
    json_t *w = parse(want);
    char *g = json_dumps(got, JSON_COMPACT | JSON_SORT_KEYS);
    char *ws = json_dumps(w, JSON_COMPACT | JSON_SORT_KEYS);
    assert_string_equal(g, ws);
    free(g);
    free(ws);
    json_decref(w);
    json_decref(got);
}

static void snake(const char *in, const char *want)
{
    char out[64];
    size_t n = realm_lah_snake(in, out, sizeof(out));
    assert_string_equal(out, want);
    assert_int_equal(n, strlen(want));
}

static void camel(const char *in, const char *want)
{
    char out[64];
    size_t n = realm_lah_camel(in, out, sizeof(out));
    assert_string_equal(out, want);
    assert_int_equal(n, strlen(want));
}

static void test_keys(void **state)
{
    (void)state;
    snake("FunctionName", "function_name");
    snake("CodeSha256", "code_sha256");
    snake("KMSKeyArn", "kms_key_arn");
    snake("S3Bucket", "s3_bucket");
    snake("ReservedConcurrentExecutions", "reserved_concurrent_executions");
    snake("message", "message");
    snake("retryAfterSeconds", "retry_after_seconds");
    snake("function_name", "function_name"); /* already snake */
    snake("", "");
    camel("function_name", "FunctionName");
    camel("zip_file", "ZipFile");
    camel("s3_object_version", "S3ObjectVersion");
    camel("memory_size", "MemorySize");
    camel("FunctionName", "FunctionName"); /* already AWS */
    camel("_x", "_x");                     /* a leading underscore is kept */
    camel("a__b", "AB");
    camel("", "");
}

static void test_key_truncation(void **state)
{
    (void)state;
    char out[6];
    assert_int_equal(realm_lah_snake("FunctionName", out, sizeof(out)), 13);
    assert_string_equal(out, "funct");
    assert_int_equal(realm_lah_camel("function_name", out, sizeof(out)), 12);
    assert_string_equal(out, "Funct");
    assert_int_equal(realm_lah_snake("FunctionName", NULL, 0), 13);
}

static void test_function_configuration(void **state)
{
    (void)state;
    json_t *aws =
        parse("{\"FunctionName\":\"f\",\"Runtime\":\"nodejs22.x\",\"MemorySize\":128,"
              "\"Environment\":{\"Variables\":{\"MY_KEY\":\"v\",\"camelKey\":\"w\"}},"
              "\"Architectures\":[\"x86_64\"],\"TracingConfig\":{\"Mode\":\"PassThrough\"},"
              "\"State\":\"Active\",\"CodeSha256\":\"abc\"}");
    assert_json(realm_lah_from_aws(aws),
                "{\"function_name\":\"f\",\"runtime\":\"nodejs22.x\",\"memory_size\":128,"
                "\"environment\":{\"MY_KEY\":\"v\",\"camelKey\":\"w\"},"
                "\"architectures\":[\"x86_64\"],\"tracing_config\":{\"mode\":\"PassThrough\"},"
                "\"state\":\"Active\",\"code_sha256\":\"abc\"}");
    json_decref(aws);
}

static void test_get_function_flattens(void **state)
{
    (void)state;
    json_t *aws = parse("{\"Configuration\":{\"FunctionName\":\"f\",\"State\":\"Active\"},"
                        "\"Code\":{\"RepositoryType\":\"S3\",\"Location\":\"http://x\"},"
                        "\"Tags\":{\"Team\":\"A\",\"cost_center\":\"1\"},"
                        "\"Concurrency\":{\"ReservedConcurrentExecutions\":2}}");
    assert_json(realm_lah_from_aws(aws),
                "{\"function_name\":\"f\",\"state\":\"Active\","
                "\"code\":{\"repository_type\":\"S3\",\"location\":\"http://x\"},"
                "\"tags\":{\"Team\":\"A\",\"cost_center\":\"1\"},"
                "\"concurrency\":{\"reserved_concurrent_executions\":2}}");
    json_decref(aws);
}

static void test_lists_and_aliases(void **state)
{
    (void)state;
    json_t *aws = parse("{\"Functions\":[{\"FunctionName\":\"a\"},{\"FunctionName\":\"b\"}],"
                        "\"NextMarker\":\"m\"}");
    assert_json(realm_lah_from_aws(aws),
                "{\"functions\":[{\"function_name\":\"a\"},{\"function_name\":\"b\"}],"
                "\"next_marker\":\"m\"}");
    json_decref(aws);
    aws = parse("{\"Name\":\"live\",\"FunctionVersion\":\"1\","
                "\"RoutingConfig\":{\"AdditionalVersionWeights\":{\"2\":0.5}}}");
    assert_json(realm_lah_from_aws(aws),
                "{\"name\":\"live\",\"function_version\":\"1\","
                "\"routing_config\":{\"additional_version_weights\":{\"2\":0.5}}}");
    json_decref(aws);
    /* A bare scalar or array passes through. */
    aws = parse("[1,\"X\",null]");
    assert_json(realm_lah_from_aws(aws), "[1,\"X\",null]");
    json_decref(aws);
}

static void test_errors(void **state)
{
    (void)state;
    json_t *aws = parse("{\"Type\":\"User\",\"message\":\"Function not found: f\"}");
    assert_json(realm_lah_error_from_aws(aws, "ResourceNotFoundException"),
                "{\"error_type\":\"ResourceNotFoundException\","
                "\"error_message\":\"Function not found: f\"}");
    json_decref(aws);
    aws = parse("{\"Type\":\"User\",\"message\":\"Rate\",\"Reason\":\"R\"}");
    assert_json(realm_lah_error_from_aws(aws, NULL),
                "{\"error_type\":\"\",\"error_message\":\"Rate\",\"reason\":\"R\"}");
    json_decref(aws);
    aws = parse("{}");
    assert_json(realm_lah_error_from_aws(aws, "T"),
                "{\"error_type\":\"T\",\"error_message\":\"\"}");
    json_decref(aws);
}

static void test_requests(void **state)
{
    (void)state;
    /* Lambda@Home's CreateFunction, as its e2e suite sends it. */
    json_t *lah = parse("{\"function_name\":\"f\",\"runtime\":\"nodejs22.x\","
                        "\"handler\":\"index.handler\",\"code\":{\"zip_file\":\"UEs=\"},"
                        "\"description\":\"d\",\"timeout\":30,\"memory_size\":512,"
                        "\"environment\":{\"my_key\":\"v\"},\"tags\":{\"k_k\":\"v\"}}");
    assert_json(realm_lah_to_aws(lah),
                "{\"FunctionName\":\"f\",\"Runtime\":\"nodejs22.x\","
                "\"Handler\":\"index.handler\",\"Code\":{\"ZipFile\":\"UEs=\"},"
                "\"Description\":\"d\",\"Timeout\":30,\"MemorySize\":512,"
                "\"Environment\":{\"Variables\":{\"my_key\":\"v\"}},\"Tags\":{\"k_k\":\"v\"}}");
    json_decref(lah);
    /* {"variables": {...}} and an AWS-shaped body come out AWS-shaped. */
    lah = parse("{\"environment\":{\"variables\":{\"a_b\":\"1\"}},\"FunctionName\":\"g\"}");
    assert_json(realm_lah_to_aws(lah),
                "{\"Environment\":{\"Variables\":{\"a_b\":\"1\"}},\"FunctionName\":\"g\"}");
    json_decref(lah);
    lah = parse("{\"routing_config\":{\"additional_version_weights\":{\"2\":0.1}},"
                "\"reserved_concurrent_executions\":3,\"revision_id\":\"r\"}");
    assert_json(realm_lah_to_aws(lah),
                "{\"RoutingConfig\":{\"AdditionalVersionWeights\":{\"2\":0.1}},"
                "\"ReservedConcurrentExecutions\":3,\"RevisionId\":\"r\"}");
    json_decref(lah);
    /* A non-object environment is renamed, not wrapped (the registry refuses it). */
    lah = parse("{\"environment\":\"x\"}");
    assert_json(realm_lah_to_aws(lah), "{\"Environment\":\"x\"}");
    json_decref(lah);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keys),
        cmocka_unit_test(test_key_truncation),
        cmocka_unit_test(test_function_configuration),
        cmocka_unit_test(test_get_function_flattens),
        cmocka_unit_test(test_lists_and_aliases),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_requests),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
