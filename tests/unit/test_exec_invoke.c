/*
 * test_exec_invoke.c - realm_exec_invoke keeps libuv's callback rule: an
 * invocation refused at once (reserved concurrency 0) is reported on a
 * later loop turn, never from inside the call; a caller that invokes again
 * from on_done (as the Event queue does) is answered a turn later each
 * time, so the stack does not grow; a refused invocation can still be
 * cancelled (then nothing is reported); freeing or closing the engine
 * delivers what is still pending and leaves no handle behind, and
 * realm_exec_close's callback comes on a later turn.
 */
#include "exec/exec.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <uv.h>

#include <cmocka.h>

typedef struct {
    int in_invoke;      /* 1 while realm_exec_invoke runs */
    int done;           /* on_done calls */
    int done_in_invoke; /* of which inside realm_exec_invoke */
    realm_inv_status_t last;
    char reason[96];
    int again;            /* invocations still to start from on_done */
    int depth, max_depth; /* nesting of on_done */
    realm_exec_t *x;
    int closed;        /* realm_exec_close's callbacks */
    int done_at_close; /* on_done calls before it */
} probe_t;

static const realm_exec_fn_t zero_fn = {
    .tenant = "",
    .name = "zero",
    .version = "$LATEST",
    .revision = "r1",
    .arn = "arn:aws:lambda:us-east-1:000000000000:function:zero",
    .runtime = "nodejs20.x",
    .handler = "index.handler",
    .code_dir = "/nonexistent",
    .reserved = 0,
};

static void on_done(realm_inv_t *inv, const realm_inv_result_t *r, void *data);
static const realm_inv_sink_t sink = {.on_done = on_done};

static realm_inv_t *invoke(probe_t *p)
{
    realm_inv_req_t req = {.payload = "{}", .payload_len = 2};
    p->in_invoke = 1;
    realm_inv_t *inv = realm_exec_invoke(p->x, &zero_fn, &req, &sink, p);
    p->in_invoke = 0;
    return inv;
}

static void on_done(realm_inv_t *inv, const realm_inv_result_t *r, void *data)
{
    (void)inv;
    probe_t *p = data;
    p->done++;
    if (p->in_invoke) p->done_in_invoke++;
    p->last = r->status;
    snprintf(p->reason, sizeof(p->reason), "%s", r->error_type ? r->error_type : "");
    p->depth++;
    if (p->depth > p->max_depth) p->max_depth = p->depth;
    if (p->again > 0) {
        p->again--;
        assert_non_null(invoke(p));
    }
    p->depth--;
}

static realm_exec_t *engine(uv_loop_t *loop)
{
    realm_exec_opts_t o = {.loop = loop, .concurrency_limit = 10, .queue_depth = 10};
    return realm_exec_new(&o);
}

static void throttle_is_reported_later(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    probe_t p = {0};
    p.x = engine(&loop);
    realm_inv_t *inv = invoke(&p);
    assert_non_null(inv);
    assert_int_equal(p.done, 0); /* not inside the call */
    assert_int_equal(uv_run(&loop, UV_RUN_NOWAIT), 0);
    assert_int_equal(p.done, 1);
    assert_int_equal(p.done_in_invoke, 0);
    assert_int_equal(p.last, REALM_INV_THROTTLED);
    assert_string_equal(p.reason, "ReservedFunctionConcurrentInvocationLimitExceeded");
    realm_exec_close(p.x, NULL, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void invoking_again_from_on_done_waits_a_turn(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    probe_t p = {0};
    p.x = engine(&loop);
    p.again = 5000; /* the flood's pattern: each end starts the next */
    invoke(&p);
    int turns = 0;
    while (p.done < 5001 && turns < 10000) {
        int before = p.done;
        uv_run(&loop, UV_RUN_NOWAIT);
        assert_int_equal(p.done - before, 1); /* one per turn: what it adds waits */
        turns++;
    }
    assert_int_equal(p.done, 5001);
    assert_int_equal(p.done_in_invoke, 0);
    assert_int_equal(p.max_depth, 1); /* never nested */
    realm_exec_close(p.x, NULL, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void cancelled_before_its_turn_reports_nothing(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    probe_t p = {0};
    p.x = engine(&loop);
    realm_inv_t *a = invoke(&p);
    realm_inv_t *b = invoke(&p);
    realm_inv_t *c = invoke(&p);
    realm_inv_cancel(b);
    realm_inv_cancel(a);
    uv_run(&loop, UV_RUN_NOWAIT);
    assert_int_equal(p.done, 1); /* c alone */
    (void)c;
    /* Freeing the engine delivers what is still waiting for its turn. */
    invoke(&p);
    invoke(&p);
    realm_exec_close(p.x, NULL, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(p.done, 3);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void on_closed(void *data)
{
    probe_t *p = data;
    p->closed++;
    p->done_at_close = p->done;
}

/* realm_exec_close keeps the callback rule too: what is pending is delivered
 * first, then the engine is gone and the callback comes, on a later turn. */
static void close_reports_on_a_later_turn(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    probe_t p = {0};
    p.x = engine(&loop);
    invoke(&p);
    invoke(&p);
    realm_exec_close(p.x, on_closed, &p);
    assert_int_equal(p.closed, 0); /* not inside the call */
    assert_int_equal(p.done, 0);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(p.closed, 1);
    assert_int_equal(p.done_at_close, 2);
    assert_int_equal(p.done_in_invoke, 0);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* The runtime side's codes answer what the runtime API answered when they
 * were HTTP status numbers inside the engine. */
static void runtime_side_codes(void **state)
{
    (void)state;
    static const struct {
        int err, status;
        const char *aws, *code;
    } want[] = {
        {REALM_ERR_INVALID_REQUEST_ID, 400, "InvalidRequestID", "INVALID_REQUEST_ID"},
        {REALM_ERR_INVALID_STATE_TRANSITION, 403, "InvalidStateTransition", "INVALID_STATE"},
        {REALM_ERR_ENV_GONE, 403, "InvalidStateTransition", "UNKNOWN_ENVIRONMENT"},
        {REALM_ERR_RESPONSE_TOO_LARGE, 413, "RequestEntityTooLarge", "PAYLOAD_TOO_LARGE"},
        {REALM_ERR_ENV_STOPPED, 410, "Realm.EnvironmentStopped", "ENV_STOPPED"},
        {REALM_ERR_UNKNOWN_ENVIRONMENT, 403, "Realm.UnknownEnvironment", "UNKNOWN_ENVIRONMENT"},
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        assert_int_equal(realm_err_http_status(want[i].err), want[i].status);
        assert_string_equal(realm_err_aws_type(want[i].err), want[i].aws);
        assert_string_equal(realm_err_code(want[i].err), want[i].code);
    }
    assert_string_equal(realm_err_message(REALM_ERR_INVALID_REQUEST_ID), "Invalid request ID");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(throttle_is_reported_later),
        cmocka_unit_test(invoking_again_from_on_done_waits_a_turn),
        cmocka_unit_test(cancelled_before_its_turn_reports_nothing),
        cmocka_unit_test(close_reports_on_a_later_turn),
        cmocka_unit_test(runtime_side_codes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
