/*
 * test_err.c - the error vocabulary (base/err.h): the rows the Lambda APIs
 * answer with keep their HTTP status and AWS error type byte for byte (they
 * replaced the registry's own (status, type) pairs), the WebSocket codes the
 * control-plane rows show, and realm_error_set.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "fixture.h"

#include "base/err.h"

#include <string.h>

typedef struct {
    int code;
    int status;
    const char *type;
    const char *wire;
} row_t;

/* Every (status, type) pair the control plane answers with. */
static const row_t control_rows[] = {
    {REALM_ERR_INVALID_PARAMS, 400, "InvalidParameterValueException", "INVALID_PARAMS"},
    {REALM_ERR_INVALID_REQUEST, 400, "InvalidRequestContentException", "INVALID_REQUEST"},
    {REALM_ERR_FUNCTION_NOT_FOUND, 404, "ResourceNotFoundException", "FUNCTION_NOT_FOUND"},
    {REALM_ERR_RESOURCE_CONFLICT, 409, "ResourceConflictException", "CONFLICT"},
    {REALM_ERR_PRECONDITION_FAILED, 412, "PreconditionFailedException", "PRECONDITION_FAILED"},
    {REALM_ERR_REQUEST_TOO_LARGE, 413, "RequestTooLargeException", "PAYLOAD_TOO_LARGE"},
    {REALM_ERR_EVENT_QUEUE_FULL, 429, "TooManyRequestsException", "EVENT_QUEUE_FULL"},
    {REALM_ERR_THROTTLED, 429, "TooManyRequestsException", "THROTTLED"},
    {REALM_ERR_INTERNAL_ERROR, 500, "ServiceException", "INTERNAL_ERROR"},
};

static void test_control_rows(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(control_rows) / sizeof(control_rows[0]); i++) {
        const row_t *r = &control_rows[i];
        assert_int_equal(realm_err_http_status(r->code), r->status);
        assert_string_equal(realm_err_aws_type(r->code), r->type);
        assert_string_equal(realm_err_code(r->code), r->wire);
    }
    /* The control plane's own rows stay in its range. */
    assert_true(REALM_ERR_RESOURCE_CONFLICT <= -1100 && REALM_ERR_RESOURCE_CONFLICT >= -1149);
    assert_true(REALM_ERR_EVENT_QUEUE_FULL <= -1100 && REALM_ERR_EVENT_QUEUE_FULL >= -1149);
}

static void test_unknown(void **state)
{
    (void)state;
    assert_int_equal(realm_err_http_status(-1999), 500);
    assert_string_equal(realm_err_aws_type(-1999), "ServiceException");
    assert_string_equal(realm_err_code(-1999), "INTERNAL_ERROR");
}

static void test_error_set(void **state)
{
    (void)state;
    realm_error_t e = {0};
    assert_int_equal(realm_error_set(&e, REALM_ERR_FUNCTION_NOT_FOUND, "Function not found: %s",
                                     "arn:aws:lambda:x"),
                     -1);
    assert_int_equal(e.code, REALM_ERR_FUNCTION_NOT_FOUND);
    assert_string_equal(e.message, "Function not found: arn:aws:lambda:x");
    /* A long message is cut to the buffer, NUL-terminated. */
    char big[2000];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    realm_error_set(&e, REALM_ERR_INVALID_PARAMS, "%s", big);
    assert_int_equal(strlen(e.message), sizeof(e.message) - 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_control_rows),
        cmocka_unit_test(test_unknown),
        cmocka_unit_test(test_error_set),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
