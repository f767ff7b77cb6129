/*
 * fuzz_invoke.c - libFuzzer driver for the control API's Invoke paths
 * (src/api/invoke.c) below the socket, and the Event queue's round trip:
 *
 * The input is an HTTP request stream (cut into pieces whose size comes
 * from the first byte) through the real parser and the control API's real
 * Invoke routes (realm_invoke_routes on a server, matched with
 * realm_http_server_match: the function name percent-decoded from the
 * path). A complete Invoke or InvokeWithResponseStream request goes through
 * realm_invoke_parse (X-Amz-Invocation-Type, X-Amz-Log-Type,
 * X-Amz-Client-Context, the Qualifier, the payload and its limits), then:
 *
 * - RequestResponse: realm_invoker_start resolves the name through the
 *   registry and starts it on the engine; every function here has reserved
 *   concurrency 0, so nothing is spawned and the invocation is throttled on
 *   a later loop turn, which must come exactly once.
 * - Event and DryRun: realm_invoke_submit; an accepted Event is in the
 *   durable queue (SQLite in a temporary directory), is taken back with
 *   its payload, which must be the request's bytes, under the function's
 *   own name, and then ends as done, retry, fail, defer or park.
 *
 * The registry (in memory) holds f (versions 1 and 2, aliases live and
 * blue), g and a tenant's h; each queue bound is small, so a full queue
 * (429 EventQueueFull) is reached, and the queue is emptied now and then.
 *
 *   make fuzz-build && build/fuzz/fuzz_invoke -max_total_time=600 \
 *       build/fuzz/corpus/fuzz_invoke fuzz/corpus/fuzz_invoke
 */
#include "api/invoke.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct {
    uv_loop_t loop;
    char dir[64];
    realm_config_t cfg;
    realm_registry_t *reg;
    realm_registry_async_t *ra; /* reg on its worker, as the server has it */
    realm_pkg_store_t *store;
    realm_exec_t *exec;
    realm_invoker_t *iv;
    realm_http_server_t *http;
    unsigned long runs;
} fx;

static void must(json_t *o, const realm_error_t *e, const char *what)
{
    if (!o) {
        fprintf(stderr, "fuzz_invoke: %s: %s\n", what, e->message);
        abort();
    }
    json_decref(o);
}

static void create(const char *tenant, const char *name)
{
    realm_error_t e;
    char fn[65];
    json_t *req = json_pack("{s:s, s:s, s:s, s:{s:s}}", "FunctionName", name, "Runtime",
                            "nodejs20.x", "Handler", "index.handler", "Code", "ZipFile", "AA==");
    if (!realm_registry_create_check(fx.reg, tenant, req, fn, &e)) must(NULL, &e, "create");
    realm_pkg_info_t pkg = {.zip_bytes = 22};
    memset(pkg.hex, 'a', REALM_PKG_HEX_LEN);
    memcpy(pkg.sha256_b64, "fake", 5);
    must(realm_registry_create_commit(fx.reg, tenant, req, &pkg, &e), &e, "commit");
    json_decref(req);
    /* Reserved concurrency 0: an invocation is throttled, never spawned. */
    req = json_pack("{s:i}", "ReservedConcurrentExecutions", 0);
    must(realm_registry_put_concurrency(fx.reg, tenant, name, req, &e), &e, "concurrency");
    json_decref(req);
}

static void on_exec_closed(void *data)
{
    *(int *)data = 1;
}

static void cleanup(void)
{
    int exec_closed = 0, ra_closed = 0;
    realm_registry_async_close(fx.ra, on_exec_closed, &ra_closed);
    while (!ra_closed)
        uv_run(&fx.loop, UV_RUN_ONCE);
    realm_exec_close(fx.exec, on_exec_closed, &exec_closed);
    while (!exec_closed)
        uv_run(&fx.loop, UV_RUN_ONCE);
    realm_invoker_close(fx.iv, NULL, NULL);
    uv_run(&fx.loop, UV_RUN_DEFAULT);
    realm_http_server_free(fx.http);
    realm_pkg_store_close(fx.store);
    realm_registry_async_free(fx.ra);
    realm_registry_close(fx.reg);
    uv_loop_close(&fx.loop);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", fx.dir);
    if (system(cmd) != 0) fprintf(stderr, "fuzz_invoke: could not remove %s\n", fx.dir);
    realm_config_dispose(&fx.cfg);
}

static void setup(void)
{
    char err[512];
    uv_loop_init(&fx.loop);
    snprintf(fx.dir, sizeof(fx.dir), "/tmp/realm-fuzz-invoke-XXXXXX");
    if (!mkdtemp(fx.dir)) abort();
    realm_config_defaults(&fx.cfg);
    free(fx.cfg.data_dir);
    fx.cfg.data_dir = strdup(fx.dir);
    fx.cfg.event_queue_max_per_function = 8;
    fx.cfg.event_queue_max_per_tenant = 12;
    realm_registry_opts_t ro = {.region = "us-east-1",
                                .account_id = "000000000000",
                                .concurrency_limit = 10,
                                .max_zip_bytes = 1000,
                                .max_unzipped_bytes = 1000};
    fx.reg = realm_registry_open(":memory:", &ro, err, sizeof(err));
    char pkgs[96];
    snprintf(pkgs, sizeof(pkgs), "%s/packages", fx.dir);
    fx.store = realm_pkg_store_open(pkgs, err, sizeof(err));
    if (!fx.reg || !fx.store) {
        fprintf(stderr, "fuzz_invoke: %s\n", err);
        abort();
    }
    /* The fake package every function names is "stored" (a zip and a tree):
     * resolution checks that the code is there. */
    char hex[REALM_PKG_HEX_LEN + 1], zip[4200], tree[4200];
    memset(hex, 'a', REALM_PKG_HEX_LEN);
    hex[REALM_PKG_HEX_LEN] = '\0';
    realm_pkg_store_zip_path(fx.store, hex, zip, sizeof(zip));
    realm_pkg_store_tree_path(fx.store, hex, tree, sizeof(tree));
    FILE *zf = fopen(zip, "w");
    if (!zf || mkdir(tree, 0755) != 0) abort();
    fclose(zf);
    create("", "f");
    create("", "g");
    create("111122223333", "h");
    realm_error_t e;
    json_t *req = json_object();
    must(realm_registry_publish_version(fx.reg, "", "f", req, &e), &e, "publish 1");
    json_decref(req);
    /* New code, so that publishing makes version 2. */
    char fn[65];
    req = json_pack("{s:s}", "ZipFile", "AA==");
    if (!realm_registry_code_check(fx.reg, "", "f", req, fn, &e)) must(NULL, &e, "code");
    realm_pkg_info_t pkg = {.zip_bytes = 22};
    memset(pkg.hex, 'b', REALM_PKG_HEX_LEN);
    memcpy(pkg.sha256_b64, "fak2", 5);
    must(realm_registry_code_commit(fx.reg, "", fn, req, &pkg, &e), &e, "code commit");
    json_decref(req);
    req = json_object();
    must(realm_registry_publish_version(fx.reg, "", "f", req, &e), &e, "publish 2");
    json_decref(req);
    req = json_pack("{s:s, s:s}", "Name", "live", "FunctionVersion", "1");
    must(realm_registry_create_alias(fx.reg, "", "f", req, &e), &e, "alias live");
    json_decref(req);
    req = json_pack("{s:s, s:s, s:{s:{s:f}}}", "Name", "blue", "FunctionVersion", "1",
                    "RoutingConfig", "AdditionalVersionWeights", "2", 0.5);
    must(realm_registry_create_alias(fx.reg, "", "f", req, &e), &e, "alias blue");
    json_decref(req);
    realm_exec_opts_t xo = {.loop = &fx.loop, .concurrency_limit = 10, .queue_depth = 10};
    fx.exec = realm_exec_new(&xo);
    fx.ra = realm_registry_async_new(&fx.loop, fx.reg, 64, 0);
    if (!fx.ra) abort();
    realm_invoker_opts_t io = {
        .loop = &fx.loop, .cfg = &fx.cfg, .ra = fx.ra, .store = fx.store, .exec = fx.exec};
    fx.iv = realm_invoker_new(&io, err, sizeof(err));
    if (!fx.iv) {
        fprintf(stderr, "fuzz_invoke: %s\n", err);
        abort();
    }
    realm_http_limits_t lim = {.max_header_bytes = 16384, .max_body_bytes = 1024 * 1024};
    fx.http = realm_http_server_new("control", &lim);
    realm_invoke_routes(fx.iv, fx.http);
    /* No dispatcher: the fuzzer reads and settles the queue itself. */
    realm_invoker_drain(fx.iv);
    atexit(cleanup);
}

/* ---- RequestResponse ---- */

typedef struct {
    int calls;
    realm_inv_t *inv;
    realm_error_t e;
} started_t;

typedef struct {
    int done;
    realm_inv_status_t status;
    started_t *st;
} probe_t;

static void on_started(realm_inv_t *inv, const realm_error_t *e, void *data)
{
    started_t *st = ((probe_t *)data)->st;
    st->calls++;
    st->inv = inv;
    if (e) st->e = *e;
}

static void on_done(realm_inv_t *inv, const realm_inv_result_t *r, void *data)
{
    (void)inv;
    probe_t *p = data;
    p->done++;
    p->status = r->status;
    if (!r->request_id || !r->request_id[0]) __builtin_trap();
}

static void run_sync(const realm_invoke_req_t *ir)
{
    static const realm_inv_sink_t sink = {.on_done = on_done};
    probe_t p = {0};
    realm_inv_req_t rq = {.payload = ir->payload,
                          .payload_len = ir->len,
                          .client_context = ir->cc.len ? ir->cc.data : NULL};
    char version[24];
    realm_error_t e;
    realm_inv_t *inv = NULL;
    started_t st = {0};
    p.st = &st;
    int rc = realm_invoker_start(fx.iv, ir->tenant, ir->fn, ir->qualifier, &rq, &sink, &p, version,
                                 on_started, &inv, &e);
    if (rc == 0) { /* resolved on the registry's worker: started comes later, once */
        if (st.calls) __builtin_trap();
        while (!st.calls)
            uv_run(&fx.loop, UV_RUN_ONCE);
        if (st.calls != 1) __builtin_trap();
        inv = st.inv;
        e = st.e;
    }
    if (!inv) {
        if (realm_err_http_status(e.code) < 400 || realm_err_http_status(e.code) > 599 ||
            !realm_err_aws_type(e.code) || !e.message[0])
            __builtin_trap();
        return;
    }
    if (p.done) __builtin_trap(); /* never from inside the call that started it */
    for (int i = 0; i < 8 && !p.done; i++)
        uv_run(&fx.loop, UV_RUN_NOWAIT);
    /* Reserved concurrency 0 everywhere: throttled, once. */
    if (p.done != 1 || p.status != REALM_INV_THROTTLED) __builtin_trap();
}

/* ---- Event and DryRun ---- */

typedef struct {
    int calls;
    char version[24];
    realm_error_t e;
} submitted_t;

static void on_submitted(const char *version, const realm_error_t *e, void *data)
{
    submitted_t *sb = data;
    sb->calls++;
    if (version) snprintf(sb->version, sizeof(sb->version), "%s", version);
    if (e) sb->e = *e;
    if ((version == NULL) == (e == NULL)) __builtin_trap(); /* one or the other */
}

static void run_event(const realm_invoke_req_t *ir, uint8_t how)
{
    realm_error_t e;
    submitted_t sb = {0};
    int rc = realm_invoke_submit(fx.iv, ir, on_submitted, &sb, &e);
    if (rc == 0) { /* the answer comes later, once */
        if (sb.calls) __builtin_trap();
        while (!sb.calls)
            uv_run(&fx.loop, UV_RUN_ONCE);
        if (sb.calls != 1) __builtin_trap();
        if (sb.e.code) rc = -1, e = sb.e;
        /* Its jobs done: the queue is the fuzzer's until the next call. */
        while (!realm_invoker_events_idle(fx.iv))
            uv_run(&fx.loop, UV_RUN_ONCE);
    }
    const char *version = sb.version;
    if (rc != 0) {
        if (realm_err_http_status(e.code) < 400 || realm_err_http_status(e.code) > 599 ||
            !realm_err_aws_type(e.code) || !e.message[0])
            __builtin_trap();
        if (realm_err_http_status(e.code) == 429 &&
            strcmp(realm_invoker_throttle_reason(e.code), "EventQueueFull") != 0)
            __builtin_trap();
        return;
    }
    if (strcmp(version, "$LATEST") != 0 && atoi(version) < 1) __builtin_trap();
    if (strcmp(ir->type, "DryRun") == 0) return;
    realm_queue_t *q = realm_invoker_queue(fx.iv);
    realm_queue_item_t items[16];
    size_t n = realm_queue_take_due(q, INT64_MAX / 2, items, 16);
    /* The newest is the one just pushed: the request's bytes, under its own name. */
    size_t last = 0;
    for (size_t i = 1; i < n; i++)
        if (items[i].id > items[last].id) last = i;
    if (n == 0 || realm_queue_load_payload(q, &items[last]) != 0) __builtin_trap();
    realm_queue_item_t *it = &items[last];
    if (it->payload_len != ir->len || memcmp(it->payload, ir->payload, ir->len) != 0 ||
        it->attempts != 0 || strcmp(it->tenant, ir->tenant) != 0 || strchr(it->function, ':'))
        __builtin_trap();
    if (ir->qualifier && strcmp(it->qualifier, ir->qualifier) != 0) __builtin_trap();
    int64_t now = INT64_MAX / 4;
    for (size_t i = 0; i < n; i++) {
        int64_t id = items[i].id;
        int orc;
        switch ((how + i) % 6) {
        case 0:
        case 1:
            orc = realm_queue_done(q, id);
            break;
        case 2:
            orc = realm_queue_retry(q, id, now, "Unhandled");
            break;
        case 3:
            orc = realm_queue_fail(q, id, "Unhandled", it->payload, now);
            break;
        case 4:
            orc = realm_queue_defer(q, id, now);
            break;
        default:
            orc = realm_queue_park(q, id, now);
            break;
        }
        if (orc != 0) __builtin_trap();
        realm_queue_item_dispose(&items[i]);
    }
    json_t *failed = realm_queue_list_failed(q, ir->tenant, it->function, 5);
    if (!json_is_array(failed)) __builtin_trap();
    json_decref(failed);
}

/* ---- the request ---- */

static void handle(realm_http_req_t *req, const char *pattern, uint8_t how)
{
    int is_stream = strstr(pattern, "response-streaming") != NULL;
    if (!strstr(pattern, "/invocations")) return;
    const char *fn = realm_http_req_param(req, "FunctionName");
    if (!fn) __builtin_trap();
    /* A path segment with %00 must not name a function. */
    if (strstr(req->path, "%00")) __builtin_trap();
    realm_invoke_req_t ir;
    realm_error_t e;
    if (realm_invoke_parse(req, is_stream, &ir, &e) != 0) {
        if ((realm_err_http_status(e.code) != 400 && realm_err_http_status(e.code) != 413) ||
            !realm_err_aws_type(e.code) || !e.message[0])
            __builtin_trap();
        return;
    }
    json_t *j = json_loadb(ir.payload, ir.len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    if (!j) __builtin_trap();
    json_decref(j);
    if (ir.cc.len) {
        j = json_loadb(ir.cc.data, ir.cc.len, 0, NULL);
        if (!json_is_object(j)) __builtin_trap();
        json_decref(j);
    }
    if (strcmp(ir.type, "RequestResponse") == 0)
        run_sync(&ir);
    else
        run_event(&ir, how);
    realm_invoke_req_dispose(&ir);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!fx.iv) setup();
    if (size < 1) return 0;
    size_t step = (size_t)data[0] + 1;
    uint8_t how = data[0];
    data++, size--;
    realm_http_parser_t p;
    realm_http_parser_init(&p, 16384);
    realm_buf_t pending;
    realm_buf_init(&pending);
    const char *pattern = NULL;
    size_t fed = 0;
    int done = 0;
    while (!done && fed < size) {
        size_t n = size - fed < step ? size - fed : step;
        realm_buf_append(&pending, data + fed, n);
        fed += n;
        for (;;) {
            if (pending.len == 0 && !realm_http_parser_in_body(&p)) break;
            size_t used = 0;
            int rc =
                realm_http_parser_feed(&p, pending.data ? pending.data : "", pending.len, &used);
            realm_buf_consume(&pending, used);
            if (rc == REALM_HTTP_NEED_MORE) break;
            if (rc == REALM_HTTP_FAILED) {
                done = 1;
                break;
            }
            if (rc == REALM_HTTP_HEAD_DONE) {
                uint64_t limit = 0;
                int st = realm_http_server_match(fx.http, &p.req, &pattern, &limit);
                if (st != 0) pattern = NULL;
                realm_http_parser_set_body_limit(&p, st == 0 ? limit : 1024 * 1024, st != 0);
            } else if (rc == REALM_HTTP_MSG_DONE) {
                /* The guard's principal: the default tenant, or now and then another. */
                if (how & 0x80) snprintf(p.req.principal, sizeof(p.req.principal), "111122223333");
                if (pattern) handle(&p.req, pattern, how);
                pattern = NULL;
            }
        }
    }
    realm_buf_dispose(&pending);
    realm_http_parser_dispose(&p);
    /* Pending kicks run (parked events stay parked: reserved concurrency 0). */
    uv_run(&fx.loop, UV_RUN_NOWAIT);
    /* Now and then, start over with an empty queue. */
    if (++fx.runs % 256 == 0) {
        realm_invoker_forget(fx.iv, "", "f");
        realm_invoker_forget(fx.iv, "", "g");
        realm_invoker_forget(fx.iv, "111122223333", "h");
        while (!realm_invoker_events_idle(fx.iv))
            uv_run(&fx.loop, UV_RUN_ONCE);
    }
    return 0;
}
