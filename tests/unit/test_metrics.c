/*
 * test_metrics.c - the metrics registry and its Prometheus text exposition.
 *
 * Renders are compared as whole strings, so a stray space, a missing HELP
 * line or a non-cumulative bucket fails the test. The process collector is
 * checked against what the test can measure itself (getrusage, getrlimit,
 * time, an extra descriptor).
 */
#include "metrics/metrics.h"

#include <fcntl.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "fixture.h"

/* a > b, printing both values when it is not. */
#define assert_gt(a, b)                                                                            \
    do {                                                                                           \
        double a_ = (a), b_ = (b);                                                                 \
        if (!(a_ > b_)) {                                                                          \
            print_error("%s = %.17g is not > %s = %.17g\n", #a, a_, #b, b_);                       \
            fail();                                                                                \
        }                                                                                          \
    } while (0)

/* |a - b| <= tol, printing both values when it is not. */
#define assert_near(a, b, tol)                                                                     \
    do {                                                                                           \
        double a_ = (a), b_ = (b);                                                                 \
        if (!(fabs(a_ - b_) <= (tol))) {                                                           \
            print_error("%s = %.17g is not within %g of %s = %.17g\n", #a, a_, (double)(tol), #b,  \
                        b_);                                                                       \
            fail();                                                                                \
        }                                                                                          \
    } while (0)

/* Renders m into a fresh string compared with expected. */
static void assert_render(realm_metrics_t *m, const char *expected)
{
    realm_buf_t out;
    realm_buf_init(&out);
    realm_metrics_render(m, &out);
    assert_string_equal(out.data ? out.data : "", expected);
    realm_buf_dispose(&out);
}

/* ------------------------------------------------------------------------ */

static void test_counter_unlabelled(void **state)
{
    realm_metrics_t *m = realm_metrics_new();
    realm_metric_family_t *f = realm_metrics_family(m, REALM_METRIC_COUNTER, "realm_requests_total",
                                                    "Requests served.", NULL, NULL, 0);

    /* exposed before the first update */
    assert_render(m, "# HELP realm_requests_total Requests served.\n"
                     "# TYPE realm_requests_total counter\n"
                     "realm_requests_total 0\n");

    realm_metric_t *c = realm_metrics_child(f, NULL);
    realm_metric_inc(c);
    realm_metric_add(c, 2);
    realm_metric_add(c, -1); /* counters never go down */
    realm_metric_set(c, 42); /* set is for gauges */
    assert_true(realm_metric_value(c) == 3);
    assert_render(m, "# HELP realm_requests_total Requests served.\n"
                     "# TYPE realm_requests_total counter\n"
                     "realm_requests_total 3\n");

    realm_metric_add(c, 0.5);
    assert_ptr_equal(realm_metrics_child(f, NULL), c);
    assert_render(m, "# HELP realm_requests_total Requests served.\n"
                     "# TYPE realm_requests_total counter\n"
                     "realm_requests_total 3.5\n");
    realm_metrics_free(m);
}

static void test_labelled_family_without_children(void **state)
{
    realm_metrics_t *m = realm_metrics_new();
    realm_metrics_family(m, REALM_METRIC_COUNTER, "realm_calls_total", "Calls.", "function", NULL,
                         0);
    realm_metrics_family(m, REALM_METRIC_HISTOGRAM, "realm_call_seconds", "Call latency.",
                         "function", NULL, 0);
    assert_render(m, "# HELP realm_calls_total Calls.\n"
                     "# TYPE realm_calls_total counter\n"
                     "# HELP realm_call_seconds Call latency.\n"
                     "# TYPE realm_call_seconds histogram\n");
    realm_metrics_free(m);
}

static void test_gauge_children_in_creation_order(void **state)
{
    realm_metrics_t *m = realm_metrics_new();
    realm_metric_family_t *f = realm_metrics_family(
        m, REALM_METRIC_GAUGE, "realm_inflight", "In-flight calls.", "function, outcome", NULL, 0);

    const char *b_ok[] = {"b", "ok"};
    const char *a_ok[] = {"a", "ok"};
    const char *b_err[] = {"b", "err"};
    realm_metric_t *c1 = realm_metrics_child(f, b_ok);
    realm_metric_t *c2 = realm_metrics_child(f, a_ok);
    realm_metric_t *c3 = realm_metrics_child(f, b_err);
    /* every label value takes part in the lookup, not just the first */
    assert_ptr_not_equal(c1, c3);
    assert_ptr_not_equal(c1, c2);
    /* the same values (in a different array) find the same child */
    const char *b_ok_again[] = {"b", "ok"};
    assert_ptr_equal(realm_metrics_child(f, b_ok_again), c1);

    realm_metric_set(c1, 7);
    realm_metric_add(c1, -2.5);
    realm_metric_inc(c2);
    realm_metric_add(c3, -3);
    realm_metric_observe(c3, 10); /* observe is for histograms */
    assert_render(m, "# HELP realm_inflight In-flight calls.\n"
                     "# TYPE realm_inflight gauge\n"
                     "realm_inflight{function=\"b\",outcome=\"ok\"} 4.5\n"
                     "realm_inflight{function=\"a\",outcome=\"ok\"} 1\n"
                     "realm_inflight{function=\"b\",outcome=\"err\"} -3\n");
    realm_metrics_free(m);
}

static void test_escaping(void **state)
{
    realm_metrics_t *m = realm_metrics_new();
    realm_metric_family_t *f =
        realm_metrics_family(m, REALM_METRIC_COUNTER, "realm_odd_total",
                             "A \"quoted\" help\\text\nover two lines.", "name", NULL, 0);
    const char *v[] = {"a\\b\"c\nd"};
    realm_metric_inc(realm_metrics_child(f, v));
    const char *plain[] = {"x"};
    realm_metric_inc(realm_metrics_child(f, plain));
    /* HELP escapes backslash and newline only; label values also quotes */
    assert_render(m, "# HELP realm_odd_total A \"quoted\" help\\\\text\\nover two lines.\n"
                     "# TYPE realm_odd_total counter\n"
                     "realm_odd_total{name=\"a\\\\b\\\"c\\nd\"} 1\n"
                     "realm_odd_total{name=\"x\"} 1\n");
    realm_metrics_free(m);
}

static void test_number_formatting(void **state)
{
    static const struct {
        double v;
        const char *text;
    } cases[] = {
        {3, "3"},
        {-2, "-2"},
        {0, "0"},
        {-0.0, "0"},
        {0.1, "0.1"},
        {0.005, "0.005"},
        {2.5, "2.5"},
        {123456789.25, "123456789.25"},
        {1e-7, "1e-07"},
        {1e15, "1000000000000000"},
        {9007199254740992.0, "9007199254740992"},
        {1e20, "1e+20"},
        {1.5e300, "1.5e+300"},
        {1.0 / 3.0, "0.3333333333333333"},
        {0.1 + 0.2, "0.30000000000000004"},
        {INFINITY, "+Inf"},
        {-INFINITY, "-Inf"},
        {NAN, "NaN"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        realm_buf_t out;
        char expected[64];
        realm_buf_init(&out);
        realm_metrics_emit_sample(&out, "x", NULL, cases[i].v);
        snprintf(expected, sizeof(expected), "x %s\n", cases[i].text);
        assert_string_equal(out.data, expected);
        /* and it reads back as the same number (NaN aside) */
        if (!isnan(cases[i].v)) assert_true(strtod(out.data + 2, NULL) == cases[i].v);
        realm_buf_dispose(&out);
    }
}

static void test_histogram(void **state)
{
    realm_metrics_t *m = realm_metrics_new();
    static const double bounds[] = {0.005, 1, 2.5};
    realm_metric_family_t *f = realm_metrics_family(m, REALM_METRIC_HISTOGRAM, "realm_call_seconds",
                                                    "Call latency.", "function", bounds, 3);
    const char *fa[] = {"fa"};
    const char *fb[] = {"fb"};
    realm_metric_t *a = realm_metrics_child(f, fa);
    realm_metrics_child(f, fb); /* never observed: all zeros */

    realm_metric_observe(a, 0.005); /* bounds are inclusive (le) */
    realm_metric_observe(a, 0.5);
    realm_metric_observe(a, 1);
    realm_metric_observe(a, 2);
    realm_metric_observe(a, 100); /* only in +Inf */
    realm_metric_inc(a);          /* inc/add/set are for counters and gauges */
    realm_metric_add(a, 5);
    realm_metric_set(a, 5);
    assert_true(realm_metric_count(a) == 5);
    assert_near(realm_metric_value(a), 103.505, 1e-9);

    assert_render(m, "# HELP realm_call_seconds Call latency.\n"
                     "# TYPE realm_call_seconds histogram\n"
                     "realm_call_seconds_bucket{function=\"fa\",le=\"0.005\"} 1\n"
                     "realm_call_seconds_bucket{function=\"fa\",le=\"1\"} 3\n"
                     "realm_call_seconds_bucket{function=\"fa\",le=\"2.5\"} 4\n"
                     "realm_call_seconds_bucket{function=\"fa\",le=\"+Inf\"} 5\n"
                     "realm_call_seconds_sum{function=\"fa\"} 103.505\n"
                     "realm_call_seconds_count{function=\"fa\"} 5\n"
                     "realm_call_seconds_bucket{function=\"fb\",le=\"0.005\"} 0\n"
                     "realm_call_seconds_bucket{function=\"fb\",le=\"1\"} 0\n"
                     "realm_call_seconds_bucket{function=\"fb\",le=\"2.5\"} 0\n"
                     "realm_call_seconds_bucket{function=\"fb\",le=\"+Inf\"} 0\n"
                     "realm_call_seconds_sum{function=\"fb\"} 0\n"
                     "realm_call_seconds_count{function=\"fb\"} 0\n");
    realm_metrics_free(m);
}

static void test_histogram_unlabelled_and_bounds(void **state)
{
    realm_metrics_t *m = realm_metrics_new();
    /* an explicit trailing +Inf is the implicit one, not a second bucket */
    static const double bounds[] = {1, INFINITY};
    realm_metric_family_t *f = realm_metrics_family(m, REALM_METRIC_HISTOGRAM, "realm_size_bytes",
                                                    "Sizes.", "", bounds, 2);
    assert_render(m, "# HELP realm_size_bytes Sizes.\n"
                     "# TYPE realm_size_bytes histogram\n"
                     "realm_size_bytes_bucket{le=\"1\"} 0\n"
                     "realm_size_bytes_bucket{le=\"+Inf\"} 0\n"
                     "realm_size_bytes_sum 0\n"
                     "realm_size_bytes_count 0\n");
    realm_metric_t *c = realm_metrics_child(f, NULL);
    realm_metric_observe(c, 0.25);
    realm_metric_observe(c, 4);
    assert_render(m, "# HELP realm_size_bytes Sizes.\n"
                     "# TYPE realm_size_bytes histogram\n"
                     "realm_size_bytes_bucket{le=\"1\"} 1\n"
                     "realm_size_bytes_bucket{le=\"+Inf\"} 2\n"
                     "realm_size_bytes_sum 4.25\n"
                     "realm_size_bytes_count 2\n");
    realm_metrics_free(m);
}

static void test_histogram_default_buckets(void **state)
{
    realm_metrics_t *m = realm_metrics_new();
    realm_metric_family_t *f =
        realm_metrics_family(m, REALM_METRIC_HISTOGRAM, "h", "Default buckets.", NULL, NULL, 0);
    realm_metric_observe(realm_metrics_child(f, NULL), 0.07);
    assert_render(m, "# HELP h Default buckets.\n"
                     "# TYPE h histogram\n"
                     "h_bucket{le=\"0.005\"} 0\n"
                     "h_bucket{le=\"0.01\"} 0\n"
                     "h_bucket{le=\"0.025\"} 0\n"
                     "h_bucket{le=\"0.05\"} 0\n"
                     "h_bucket{le=\"0.1\"} 1\n"
                     "h_bucket{le=\"0.25\"} 1\n"
                     "h_bucket{le=\"0.5\"} 1\n"
                     "h_bucket{le=\"1\"} 1\n"
                     "h_bucket{le=\"2.5\"} 1\n"
                     "h_bucket{le=\"5\"} 1\n"
                     "h_bucket{le=\"10\"} 1\n"
                     "h_bucket{le=\"+Inf\"} 1\n"
                     "h_sum 0.07\n"
                     "h_count 1\n");
    realm_metrics_free(m);
}

static void test_same_name_returns_existing(void **state)
{
    realm_metrics_t *m = realm_metrics_new();
    realm_metric_family_t *f1 =
        realm_metrics_family(m, REALM_METRIC_COUNTER, "dup_total", "First.", "a,b", NULL, 0);
    realm_metric_family_t *f2 =
        realm_metrics_family(m, REALM_METRIC_COUNTER, "dup_total", "Second.", "a,b", NULL, 0);
    assert_ptr_equal(f1, f2);
    const char *v[] = {"1", "2"};
    realm_metric_add(realm_metrics_child(f2, v), 2);
    assert_render(m, "# HELP dup_total First.\n"
                     "# TYPE dup_total counter\n"
                     "dup_total{a=\"1\",b=\"2\"} 2\n");
    realm_metrics_free(m);
}

static void collect_a(realm_buf_t *out, void *data)
{
    int *calls = data;
    (*calls)++;
    realm_metrics_emit_header(out, "coll_a", "From A.", REALM_METRIC_GAUGE);
    const char *labels[] = {"k", "v\"", "k2", "w", NULL};
    realm_metrics_emit_sample(out, "coll_a", labels, *calls);
}

static void collect_b(realm_buf_t *out, void *data)
{
    realm_metrics_emit_header(out, "coll_b_total", "", REALM_METRIC_COUNTER);
    realm_metrics_emit_sample(out, "coll_b_total", NULL, 0.25);
}

static void test_collectors_after_families(void **state)
{
    int calls = 0;
    realm_metrics_t *m = realm_metrics_new();
    /* a collector registered before the family still renders after it */
    realm_metrics_add_collector(m, collect_a, &calls);
    realm_metric_family_t *f =
        realm_metrics_family(m, REALM_METRIC_GAUGE, "fam", "A family.", NULL, NULL, 0);
    realm_metrics_add_collector(m, collect_b, NULL);
    realm_metric_set(realm_metrics_child(f, NULL), 1);

    /* render appends to what the buffer already holds */
    realm_buf_t out;
    realm_buf_init(&out);
    realm_buf_appends(&out, "prefix\n");
    realm_metrics_render(m, &out);
    assert_string_equal(out.data, "prefix\n"
                                  "# HELP fam A family.\n"
                                  "# TYPE fam gauge\n"
                                  "fam 1\n"
                                  "# HELP coll_a From A.\n"
                                  "# TYPE coll_a gauge\n"
                                  "coll_a{k=\"v\\\"\",k2=\"w\"} 1\n"
                                  "# HELP coll_b_total\n"
                                  "# TYPE coll_b_total counter\n"
                                  "coll_b_total 0.25\n");
    assert_int_equal(calls, 1);
    realm_buf_dispose(&out);
    realm_metrics_free(m);
}

/* ------------------------------------------------------------------------ */
/* Process collector                                                         */
/* ------------------------------------------------------------------------ */

/*
 * Finds family name in a render: asserts its HELP and TYPE lines and exactly
 * one unlabelled sample, and returns the sample's value.
 */
static double process_value(const char *text, const char *name, const char *type)
{
    char want[128];
    snprintf(want, sizeof(want), "# HELP %s ", name);
    if (strstr(text, want) == NULL) {
        print_error("no \"%s\" in:\n%s\n", want, text);
        fail();
    }
    snprintf(want, sizeof(want), "\n# TYPE %s %s\n%s ", name, type, name);
    const char *p = strstr(text, want);
    if (p == NULL) {
        print_error("no TYPE line and sample \"%s\" in:\n%s\n", want, text);
        fail();
    }
    p += strlen(want);
    char *end;
    double v = strtod(p, &end);
    if (end == p || *end != '\n') {
        print_error("bad sample value for %s in:\n%s\n", name, text);
        fail();
    }
    return v;
}

static double collect_open_fds(void)
{
    realm_buf_t out;
    realm_buf_init(&out);
    realm_metrics_collect_process(&out, NULL);
    double v = process_value(out.data, "process_open_fds", "gauge");
    realm_buf_dispose(&out);
    return v;
}

/* User + system CPU time of this process, from getrusage. */
static double rusage_cpu_seconds(void)
{
    struct rusage ru;
    assert_int_equal(getrusage(RUSAGE_SELF, &ru), 0);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* Open descriptors found by probing each number below the soft limit. */
static double probe_open_fds(void)
{
    struct rlimit rl;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
    int limit = rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > 65536 ? 65536 : (int)rl.rlim_cur;
    double n = 0;
    for (int fd = 0; fd < limit; fd++)
        n += fcntl(fd, F_GETFD) != -1;
    return n;
}

static void test_process_collector(void **state)
{
    /* burn some user CPU so that utime is large enough to tell apart from
     * the neighbouring fields of /proc/self/stat */
    volatile double sink = 0;
    while (rusage_cpu_seconds() < 0.3)
        for (int i = 0; i < 100000; i++)
            sink += i;
    (void)sink;

    double fds_probed = probe_open_fds();
    realm_buf_t out;
    realm_buf_init(&out);
    realm_metrics_collect_process(&out, NULL);
    const char *text = out.data;
    assert_non_null(text);

    double rss = process_value(text, "process_resident_memory_bytes", "gauge");
    double vsize = process_value(text, "process_virtual_memory_bytes", "gauge");
    double cpu = process_value(text, "process_cpu_seconds_total", "counter");
    double fds = process_value(text, "process_open_fds", "gauge");
    double max_fds = process_value(text, "process_max_fds", "gauge");
    double start = process_value(text, "process_start_time_seconds", "gauge");

    /* exactly six families, one sample each */
    size_t lines = 0;
    for (const char *p = text; *p; p++)
        lines += *p == '\n';
    assert_int_equal(lines, 6 * 3);

    double ru_cpu = rusage_cpu_seconds();
    struct rusage ru;
    assert_int_equal(getrusage(RUSAGE_SELF, &ru), 0);
    double peak_rss = (double)ru.ru_maxrss * 1024;
    long page = sysconf(_SC_PAGESIZE);

    /* rss is pages * page size: more than a few pages, at most the peak */
    assert_gt(rss, 64.0 * (double)page);
    assert_true(fmod(rss, (double)page) == 0);
    assert_gt(peak_rss + 1, rss);
    assert_gt(vsize + 1, rss);
    /* clock ticks vs. getrusage's finer clock */
    assert_gt(cpu, 0.25);
    assert_near(cpu, ru_cpu, 0.1);
    /* what the probe saw, plus the collector's own /proc/self/fd stream */
    assert_gt(fds, 2); /* stdin, stdout, stderr at least */
    assert_near(fds, fds_probed + 1, 0);

    struct rlimit rl;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rl.rlim_cur == RLIM_INFINITY)
        assert_true(isinf(max_fds));
    else
        assert_true(max_fds == (double)rl.rlim_cur);
    assert_gt(max_fds + 1, fds);

    /* this process started moments ago */
    double now = (double)time(NULL);
    assert_gt(now + 2, start);
    assert_gt(start, now - 600);
    realm_buf_dispose(&out);

    /* one more descriptor shows up as one more */
    double before = collect_open_fds();
    int fd = dup(2);
    assert_true(fd >= 0);
    double after = collect_open_fds();
    close(fd);
    assert_near(after, before + 1, 0);
}

/* A node's id on every sample, collectors' included; headers untouched. */
static void emit_two(realm_buf_t *out, void *data)
{
    (void)data;
    realm_metrics_emit_header(out, "c_plain", "h", REALM_METRIC_GAUGE);
    realm_metrics_emit_sample(out, "c_plain", NULL, 1);
    const char *labels[] = {"k", "v", NULL};
    realm_metrics_emit_sample(out, "c_labelled", labels, 2);
}

static void test_const_label(void **state)
{
    (void)state;
    realm_metrics_t *m = realm_metrics_new();
    realm_metric_family_t *f =
        realm_metrics_family(m, REALM_METRIC_COUNTER, "a_total", "help", "x", NULL, 0);
    const char *xv[] = {"1"};
    realm_metric_inc(realm_metrics_child(f, xv));
    realm_metrics_family(m, REALM_METRIC_HISTOGRAM, "h_seconds", "help", NULL,
                         (const double[]){0.5}, 1);
    realm_metrics_add_collector(m, emit_two, NULL);
    realm_metrics_set_const_label(m, "node", "n\"1");
    realm_buf_t out;
    realm_buf_init(&out);
    realm_metrics_render(m, &out);
    assert_contains(out.data, "# HELP a_total help\n# TYPE a_total counter\n");
    assert_contains(out.data, "\na_total{node=\"n\\\"1\",x=\"1\"} 1\n");
    assert_contains(out.data, "\nh_seconds_bucket{node=\"n\\\"1\",le=\"0.5\"} 0\n");
    assert_contains(out.data, "\nh_seconds_count{node=\"n\\\"1\"} 0\n");
    assert_contains(out.data, "\nc_plain{node=\"n\\\"1\"} 1\n");
    assert_contains(out.data, "\nc_labelled{node=\"n\\\"1\",k=\"v\"} 2\n");
    /* Every sample line has it. */
    for (const char *p = out.data; p && *p;) {
        const char *eol = strchr(p, '\n');
        if (p[0] != '#' && !strstr(p, "{node=\"n\\\"1\"")) fail_msg("no node label: %.80s", p);
        p = eol ? eol + 1 : NULL;
    }
    realm_buf_dispose(&out);
    realm_metrics_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counter_unlabelled),
        cmocka_unit_test(test_labelled_family_without_children),
        cmocka_unit_test(test_gauge_children_in_creation_order),
        cmocka_unit_test(test_escaping),
        cmocka_unit_test(test_number_formatting),
        cmocka_unit_test(test_histogram),
        cmocka_unit_test(test_histogram_unlabelled_and_bounds),
        cmocka_unit_test(test_histogram_default_buckets),
        cmocka_unit_test(test_same_name_returns_existing),
        cmocka_unit_test(test_collectors_after_families),
        cmocka_unit_test(test_process_collector),
        cmocka_unit_test(test_const_label),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
