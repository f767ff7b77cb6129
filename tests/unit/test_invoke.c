/*
 * test_invoke.c - the invocation layer (src/invoke/invoker.h) over a real
 * registry and event queue in a temporary directory and a real engine that
 * never spawns (every function has reserved concurrency 0, so an
 * invocation is throttled): the resolution cache (hits while the registry's
 * write generation holds, a miss after any write, versions never cached),
 * the callback rule of realm_invoker_start (a throttle reported on a later
 * turn, exactly once; a refusal synchronously, with no callback), Event
 * submission (queued under the plain name, the qualifier as given; DryRun
 * queues nothing; a full queue is 429 EventQueueFull), the dispatcher
 * parking an event whose function may not run (on a later turn, without
 * reading it), the retry and expiry decisions, --provisioned's syntax,
 * reading a function's log tail, and realm_invoker_close leaving an empty
 * loop.
 */
#include "invoke/invoker.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

typedef struct {
    uv_loop_t loop;
    char dir[64];
    realm_config_t cfg;
    realm_registry_t *reg;
    realm_registry_async_t *ra; /* reg's worker: the invoker's way to it */
    realm_pkg_store_t *store;
    realm_exec_t *exec;
    realm_invoker_t *iv;
} fx_t;

static void must(json_t *o, const realm_error_t *e, const char *what)
{
    if (!o) fail_msg("%s: %s", what, e->message);
    json_decref(o);
}

static void published(void *data, int status)
{
    assert_int_equal(status, 0);
    *(int *)data = 1;
}

/* The tests write the registry directly (its worker is idle then); a job
 * on the worker publishes the new generation, as after a control API write. */
static void publish(fx_t *f)
{
    if (!f->ra) return;
    int done = 0;
    assert_int_equal(realm_registry_async_submit(f->ra, NULL, published, &done), 0);
    while (!done)
        uv_run(&f->loop, UV_RUN_ONCE);
}

static void set_reserved(fx_t *f, const char *name, int n)
{
    realm_error_t e;
    json_t *req = json_pack("{s:i}", "ReservedConcurrentExecutions", n);
    must(realm_registry_put_concurrency(f->reg, "", name, req, &e), &e, "concurrency");
    json_decref(req);
    publish(f);
}

static void create(fx_t *f, const char *name)
{
    realm_error_t e;
    char fn[65];
    json_t *req = json_pack("{s:s, s:s, s:s, s:{s:s}}", "FunctionName", name, "Runtime",
                            "nodejs20.x", "Handler", "index.handler", "Code", "ZipFile", "AA==");
    if (!realm_registry_create_check(f->reg, "", req, fn, &e)) must(NULL, &e, "create");
    realm_pkg_info_t pkg = {.zip_bytes = 22};
    memset(pkg.hex, 'a', REALM_PKG_HEX_LEN);
    memcpy(pkg.sha256_b64, "fake", 5);
    must(realm_registry_create_commit(f->reg, "", req, &pkg, &e), &e, "commit");
    json_decref(req);
    set_reserved(f, name, 0); /* throttled, never spawned */
}

static int setup(void **state)
{
    fx_t *f = calloc(1, sizeof(*f));
    char err[512] = "";
    uv_loop_init(&f->loop);
    snprintf(f->dir, sizeof(f->dir), "/tmp/realm-test-invoke-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    realm_config_defaults(&f->cfg);
    free(f->cfg.data_dir);
    f->cfg.data_dir = strdup(f->dir);
    f->cfg.event_queue_max_per_function = 3;
    f->cfg.event_retries = 2;
    f->cfg.event_retry_base_ms = 1000;
    realm_registry_opts_t ro = {.region = "us-east-1",
                                .account_id = "000000000000",
                                .concurrency_limit = 10,
                                .max_zip_bytes = 1000,
                                .max_unzipped_bytes = 1000};
    char path[128];
    snprintf(path, sizeof(path), "%s/realm.db", f->dir);
    f->reg = realm_registry_open(path, &ro, err, sizeof(err));
    if (!f->reg) fail_msg("registry: %s", err);
    snprintf(path, sizeof(path), "%s/packages", f->dir);
    f->store = realm_pkg_store_open(path, err, sizeof(err));
    if (!f->store) fail_msg("packages: %s", err);
    /* The fake package the functions name is "stored" (a zip and a tree), as
     * resolution checks that the code is there (registry/code.c). */
    char hex[REALM_PKG_HEX_LEN + 1];
    memset(hex, 'a', REALM_PKG_HEX_LEN);
    hex[REALM_PKG_HEX_LEN] = '\0';
    char zip[4200], tree[4200];
    realm_pkg_store_zip_path(f->store, hex, zip, sizeof(zip));
    realm_pkg_store_tree_path(f->store, hex, tree, sizeof(tree));
    FILE *z = fopen(zip, "w");
    assert_non_null(z);
    fclose(z);
    assert_int_equal(mkdir(tree, 0755), 0);
    create(f, "f");
    realm_exec_opts_t xo = {.loop = &f->loop, .concurrency_limit = 10, .queue_depth = 10};
    f->exec = realm_exec_new(&xo);
    f->ra = realm_registry_async_new(&f->loop, f->reg, 64, 0);
    assert_non_null(f->ra);
    realm_invoker_opts_t io = {
        .loop = &f->loop, .cfg = &f->cfg, .ra = f->ra, .store = f->store, .exec = f->exec};
    f->iv = realm_invoker_new(&io, err, sizeof(err));
    if (!f->iv) fail_msg("invoker: %s", err);
    *state = f;
    return 0;
}

static void on_closed(void *data)
{
    (*(int *)data)++;
}

static int teardown(void **state)
{
    fx_t *f = *state;
    int exec_closed = 0, closed = 0, ra_closed = 0;
    realm_registry_async_close(f->ra, on_closed, &ra_closed);
    while (!ra_closed)
        uv_run(&f->loop, UV_RUN_ONCE);
    realm_exec_close(f->exec, on_closed, &exec_closed);
    while (!exec_closed)
        uv_run(&f->loop, UV_RUN_ONCE);
    realm_invoker_close(f->iv, on_closed, &closed);
    assert_int_equal(closed, 0); /* on a later turn */
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(closed, 1);
    assert_int_equal(uv_loop_close(&f->loop), 0); /* no handle left behind */
    realm_pkg_store_close(f->store);
    realm_registry_async_free(f->ra);
    realm_registry_close(f->reg);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    realm_config_dispose(&f->cfg);
    free(f);
    return 0;
}

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
}

/* realm_invoker_submit, waiting for its answer (which never comes inside the call). */
static int submit(fx_t *f, realm_invoker_mode_t mode, const char *fn, const char *q,
                  const char *payload, char version[24], realm_error_t *e)
{
    submitted_t sb = {0};
    if (realm_invoker_submit(f->iv, mode, "", fn, q, payload, strlen(payload), on_submitted, &sb,
                             e) != 0)
        return -1;
    assert_int_equal(sb.calls, 0);
    while (sb.calls == 0)
        uv_run(&f->loop, UV_RUN_ONCE);
    assert_int_equal(sb.calls, 1);
    snprintf(version, 24, "%s", sb.version);
    *e = sb.e;
    return sb.e.code ? -1 : 0;
}

static int dry_run(fx_t *f, const char *fn, const char *q, char version[24])
{
    realm_error_t e;
    return submit(f, REALM_INVOKER_DRY_RUN, fn, q, "{}", version, &e);
}

/* Until the Event machinery has nothing under way (its jobs are done). */
static void settle(fx_t *f)
{
    while (!realm_invoker_events_idle(f->iv))
        uv_run(&f->loop, UV_RUN_ONCE);
}

typedef struct {
    int calls;
    json_t *list;
    int64_t pending;
} failed_t;

static void on_failed(json_t *list, int64_t pending, void *data)
{
    failed_t *fl = data;
    fl->calls++;
    fl->list = list;
    fl->pending = pending;
}

static void cache_follows_generation(void **state)
{
    fx_t *f = *state;
    char v[24];
    uint64_t h0 = realm_invoker_cache_hits(f->iv);
    assert_int_equal(dry_run(f, "f", NULL, v), 0); /* a miss: now cached */
    assert_string_equal(v, "$LATEST");
    assert_int_equal(realm_invoker_cache_hits(f->iv), h0);
    assert_int_equal(dry_run(f, "f", NULL, v), 0);
    assert_int_equal(dry_run(f, "f", NULL, v), 0);
    assert_int_equal(realm_invoker_cache_hits(f->iv), h0 + 2);
    /* Any registry write moves the generation: the next resolution reads anew. */
    uint64_t gen = realm_registry_generation(f->reg);
    set_reserved(f, "f", 0);
    assert_true(realm_registry_generation(f->reg) != gen);
    assert_int_equal(dry_run(f, "f", NULL, v), 0);
    assert_int_equal(realm_invoker_cache_hits(f->iv), h0 + 2);
    assert_int_equal(dry_run(f, "f", NULL, v), 0);
    assert_int_equal(realm_invoker_cache_hits(f->iv), h0 + 3);
    /* Qualified references are resolved each time (aliases may be weighted). */
    assert_int_equal(dry_run(f, "f", "$LATEST", v), 0);
    assert_int_equal(dry_run(f, "f:$LATEST", NULL, v), 0);
    assert_int_equal(realm_invoker_cache_hits(f->iv), h0 + 3);
    /* A function that does not exist is not cached either. */
    assert_int_equal(dry_run(f, "nope", NULL, v), -1);
    assert_int_equal(dry_run(f, "nope", NULL, v), -1);
    assert_int_equal(realm_invoker_cache_hits(f->iv), h0 + 3);
    /* A deleted function stops resolving at once. */
    realm_error_t e;
    create(f, "gone");
    assert_int_equal(dry_run(f, "gone", NULL, v), 0);
    assert_int_equal(realm_registry_delete_function(f->reg, "", "gone", NULL, &e), 0);
    publish(f);
    assert_int_equal(dry_run(f, "gone", NULL, v), -1);
}

typedef struct {
    int done;
    realm_inv_status_t status;
} probe_t;

static void on_done(realm_inv_t *inv, const realm_inv_result_t *r, void *data)
{
    (void)inv;
    probe_t *p = data;
    p->done++;
    p->status = r->status;
}

typedef struct {
    int calls, has_inv, code;
} started_t;

static void on_started(realm_inv_t *inv, const realm_error_t *e, void *data)
{
    started_t *st = data;
    st->calls++;
    st->has_inv = inv != NULL;
    st->code = e ? e->code : 0;
}

static void start_reports_later(void **state)
{
    fx_t *f = *state;
    static const realm_inv_sink_t sink = {.on_done = on_done};
    probe_t p = {0};
    realm_error_t e;
    char version[24] = "";
    realm_inv_req_t req = {.payload = "{}", .payload_len = 2};
    /* "f" was resolved at setup (a cached name): it starts at once. */
    char v0[24];
    assert_int_equal(dry_run(f, "f", NULL, v0), 0);
    realm_inv_t *inv = NULL;
    assert_int_equal(
        realm_invoker_start(f->iv, "", "f", NULL, &req, &sink, &p, version, on_started, &inv, &e),
        1);
    assert_non_null(inv);
    assert_string_equal(version, "$LATEST");
    assert_int_equal(p.done, 0); /* never inside the call that started it */
    uv_run(&f->loop, UV_RUN_NOWAIT);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    assert_int_equal(p.done, 1);
    assert_int_equal(p.status, REALM_INV_THROTTLED);
    /* Not cached: resolved on the registry's worker; nothing to run is said
     * later, in started, and the sink never hears of it. */
    probe_t q = {0};
    started_t st = {0};
    assert_int_equal(realm_invoker_start(f->iv, "", "nope", NULL, &req, &sink, &st, version,
                                         on_started, &inv, &e),
                     0);
    assert_int_equal(st.calls, 0);
    while (st.calls == 0)
        uv_run(&f->loop, UV_RUN_ONCE);
    assert_int_equal(st.calls, 1);
    assert_false(st.has_inv);
    assert_int_equal(realm_err_http_status(st.code), 404);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    assert_int_equal(q.done, 0);
}

static void submit_queues_events(void **state)
{
    fx_t *f = *state;
    realm_queue_t *q = realm_invoker_queue(f->iv);
    char v[24];
    realm_error_t e;
    realm_invoker_drain(f->iv); /* no dispatcher: the test reads the queue itself */
    assert_int_equal(dry_run(f, "f", NULL, v), 0);
    assert_int_equal(realm_invoker_events_pending(f->iv), 0);
    assert_int_equal(submit(f, REALM_INVOKER_EVENT, "f:$LATEST", NULL, "{\"a\":1}", v, &e), 0);
    assert_int_equal(submit(f, REALM_INVOKER_EVENT_PLAIN, "f", NULL, "{}", v, &e), 0);
    assert_int_equal(realm_invoker_events_pending(f->iv), 2);
    settle(f);
    assert_int_equal(realm_queue_pending_of(q, "", "f"), 2);
    /* The queue holds 3 per function here: the fourth is refused. */
    assert_int_equal(submit(f, REALM_INVOKER_EVENT, "f", NULL, "{}", v, &e), 0);
    assert_int_equal(submit(f, REALM_INVOKER_EVENT, "f", NULL, "{}", v, &e), -1);
    assert_int_equal(realm_err_http_status(e.code), 429);
    assert_string_equal(realm_invoker_throttle_reason(e.code), "EventQueueFull");
    assert_int_equal(submit(f, REALM_INVOKER_EVENT, "nope", NULL, "{}", v, &e), -1);
    assert_int_equal(realm_err_http_status(e.code), 404);
    settle(f);
    /* The first taken is the first pushed: under its plain name, qualifier as given. */
    realm_queue_item_t it;
    assert_int_equal(realm_queue_take_due(q, INT64_MAX, &it, 1), 1);
    assert_string_equal(it.function, "f");
    assert_string_equal(it.qualifier, "$LATEST");
    realm_queue_release(q, it.id);
    realm_queue_item_dispose(&it);
}

static void dispatcher_parks(void **state)
{
    fx_t *f = *state;
    realm_queue_t *q = realm_invoker_queue(f->iv);
    char v[24];
    realm_error_t e;
    assert_int_equal(submit(f, REALM_INVOKER_EVENT, "f", NULL, "{}", v, &e), 0);
    /* The dispatcher runs on later turns: reserved concurrency 0 parks the event. */
    settle(f);
    json_t *parked = realm_queue_parked(q);
    assert_int_equal(json_array_size(parked), 1);
    assert_string_equal(json_string_value(json_array_get(json_array_get(parked, 0), 1)), "f");
    json_decref(parked);
    assert_int_equal(realm_queue_pending_of(q, "", "f"), 1);
    /* Still 0 after another write: a look at parked functions leaves it parked. */
    realm_invoker_drain(f->iv);
    create(f, "other");
    parked = realm_queue_parked(q);
    assert_int_equal(json_array_size(parked), 1);
    json_decref(parked);
    /* Forgetting the function takes its events with it (jobs in order). */
    realm_invoker_forget(f->iv, "", "f");
    failed_t fl = {0};
    assert_int_equal(realm_invoker_failed_events(f->iv, "", "f", on_failed, &fl), 0);
    assert_int_equal(fl.calls, 0);
    settle(f);
    assert_int_equal(fl.calls, 1);
    assert_int_equal(json_array_size(fl.list), 0);
    assert_int_equal(fl.pending, 0);
    json_decref(fl.list);
    assert_int_equal(realm_queue_pending_of(q, "", "f"), 0);
}

static void event_decisions(void **state)
{
    fx_t *f = *state;
    int64_t delay = -1;
    /* --event-retries 2 with a 1 s base: 1 s, 2 s, then the failed list. */
    assert_int_equal(realm_invoker_event_verdict(&f->cfg, 0, &delay), REALM_EVENT_RETRY);
    assert_int_equal(delay, 1000);
    assert_int_equal(realm_invoker_event_verdict(&f->cfg, 1, &delay), REALM_EVENT_RETRY);
    assert_int_equal(delay, 2000);
    assert_int_equal(realm_invoker_event_verdict(&f->cfg, 2, &delay), REALM_EVENT_FAIL);
    realm_config_t none = f->cfg;
    none.event_retries = 0;
    assert_int_equal(realm_invoker_event_verdict(&none, 0, &delay), REALM_EVENT_FAIL);
    /* Lambda keeps an event 6 hours. */
    int64_t six_h = 6 * 3600 * 1000LL;
    assert_false(realm_invoker_event_is_expired(1000, 1000 + six_h - 1));
    assert_true(realm_invoker_event_is_expired(1000, 1000 + six_h));
}

static void provisioned_syntax(void **state)
{
    (void)state;
    char err[200];
    assert_int_equal(realm_invoker_check_provisioned(NULL, err, sizeof(err)), 0);
    assert_int_equal(realm_invoker_check_provisioned("none", err, sizeof(err)), 0);
    assert_int_equal(
        realm_invoker_check_provisioned("f=2,g:live=0,111122223333/h=1000", err, sizeof(err)), 0);
    const char *bad[] = {"f", "=2", "f=-1", "f=1001", "f=2x", "f=1,,g=1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        assert_int_equal(realm_invoker_check_provisioned(bad[i], err, sizeof(err)), -1);
        assert_non_null(strstr(err, "--provisioned"));
    }
}

static void logs_read_tail(void **state)
{
    fx_t *f = *state;
    char dir[128], path[160];
    snprintf(dir, sizeof(dir), "%s/logs/_", f->dir);
    snprintf(path, sizeof(path), "%s/logs", f->dir);
    assert_int_equal(mkdir(path, 0700), 0);
    assert_int_equal(mkdir(dir, 0700), 0);
    snprintf(path, sizeof(path), "%s/f.log.1", dir);
    FILE *o = fopen(path, "w");
    fputs("old-line\n", o);
    fclose(o);
    snprintf(path, sizeof(path), "%s/f.log", dir);
    o = fopen(path, "w");
    fputs("new\n", o);
    fclose(o);
    realm_buf_t b;
    realm_buf_init(&b);
    realm_invoker_read_log(f->iv, "", "f", 3, &b); /* within the current file */
    assert_string_equal(b.data, "ew\n");
    realm_buf_reset(&b);
    realm_invoker_read_log(f->iv, "", "f", 9, &b); /* the older file first */
    assert_string_equal(b.data, "line\nnew\n");
    realm_buf_dispose(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(cache_follows_generation, setup, teardown),
        cmocka_unit_test_setup_teardown(start_reports_later, setup, teardown),
        cmocka_unit_test_setup_teardown(submit_queues_events, setup, teardown),
        cmocka_unit_test_setup_teardown(dispatcher_parks, setup, teardown),
        cmocka_unit_test_setup_teardown(event_decisions, setup, teardown),
        cmocka_unit_test(provisioned_syntax),
        cmocka_unit_test_setup_teardown(logs_read_tail, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
