/*
 * metrics.h - an in-process Prometheus metrics registry and its text
 * exposition (format 0.0.4: # HELP, # TYPE, samples).
 *
 * DESIGN: a registry holds families (counter, gauge, histogram), each with a
 * fixed list of label names set at creation. A child is one label-value
 * combination; callers look a child up once (realm_metrics_child) and keep the
 * pointer, so the hot path is one add on a double. Values that live elsewhere
 * (process stats, connection counts) are reported by collectors: callbacks
 * run at scrape time that emit whole families through realm_metrics_emit_*.
 *
 * LIFETIME: families and children live until realm_metrics_free().
 * THREADS: loop thread only.
 */
#ifndef REALM_METRICS_METRICS_H
#define REALM_METRICS_METRICS_H

#include "base/buf.h"

#include <stddef.h>

typedef struct realm_metrics_s realm_metrics_t;
typedef struct realm_metric_family_s realm_metric_family_t;
typedef struct realm_metric_s realm_metric_t;

typedef enum {
    REALM_METRIC_COUNTER,
    REALM_METRIC_GAUGE,
    REALM_METRIC_HISTOGRAM,
} realm_metric_type_t;

#define REALM_METRICS_MAX_LABELS 4

/* New registry; free with realm_metrics_free(). */
realm_metrics_t *realm_metrics_new(void);
void realm_metrics_free(realm_metrics_t *m);

/*
 * Registers a family. name and help are copied. label_names is a
 * comma-separated list ("function,outcome") or NULL/"" for none (at most
 * REALM_METRICS_MAX_LABELS). buckets/buckets_cnt are the histogram's upper
 * bounds in ascending order (copied; +Inf is implicit); ignored for other
 * types. Returns a family owned by the registry. Registering the same name
 * twice returns the existing family.
 *
 * buckets == NULL on a histogram means the client libraries' defaults
 * (.005 .01 .025 .05 .1 .25 .5 1 2.5 5 10); a trailing +Inf bound is dropped.
 * A family without labels gets its one child now, so it is exposed (as 0)
 * before its first update. Programming errors abort with a message: an
 * invalid metric or label name, more than REALM_METRICS_MAX_LABELS labels,
 * "le" as a histogram label, bounds not finite and strictly ascending, or the
 * same name registered again with a different type or label names.
 */
realm_metric_family_t *realm_metrics_family(realm_metrics_t *m, realm_metric_type_t type,
                                            const char *name, const char *help,
                                            const char *label_names, const double *buckets,
                                            size_t buckets_cnt);

/*
 * The child for these label values (label_values has as many entries as the
 * family has label names; NULL for none), created on first use. Values are
 * copied (a NULL value counts as ""). The pointer stays valid until
 * realm_metrics_free(). Children are exposed in creation order.
 */
realm_metric_t *realm_metrics_child(realm_metric_family_t *f, const char *const *label_values);

/*
 * Updates. A call that does not fit the metric's type (set on a counter, add
 * on a histogram, observe on a gauge) or a negative add on a counter is
 * ignored: counters never go down.
 */
void realm_metric_inc(realm_metric_t *c);                       /* counter/gauge += 1 */
void realm_metric_add(realm_metric_t *c, double v);             /* counter (v >= 0) / gauge */
void realm_metric_set(realm_metric_t *c, double v);             /* gauge */
void realm_metric_observe(realm_metric_t *c, double v);         /* histogram */
double realm_metric_value(const realm_metric_t *c);             /* counter/gauge value; hist sum */
unsigned long long realm_metric_count(const realm_metric_t *c); /* histogram count */

/*
 * A collector appends whole families to out at scrape time using the emit
 * helpers below. Called in registration order, after the registry's own
 * families. data is borrowed until realm_metrics_free().
 */
typedef void (*realm_metrics_collect_cb)(realm_buf_t *out, void *data);
void realm_metrics_add_collector(realm_metrics_t *m, realm_metrics_collect_cb cb, void *data);

/* Emit "# HELP name help" and "# TYPE name type" (help is escaped). */
void realm_metrics_emit_header(realm_buf_t *out, const char *name, const char *help,
                               realm_metric_type_t type);
/*
 * Emit one sample line: name{l1="v1",...} value. labels is a NULL-terminated
 * array of alternating names and values (NULL for no labels); values are
 * escaped per the exposition format (backslash, quote, newline).
 */
void realm_metrics_emit_sample(realm_buf_t *out, const char *name, const char *const *labels,
                               double value);

/* Appends the whole exposition (families, then collectors) to out. */
void realm_metrics_render(realm_metrics_t *m, realm_buf_t *out);
/*
 * Every sample rendered from now on carries name="value" first (a node's id
 * in a cluster: node="n1"), collectors' samples included. name is a valid
 * label name no family uses (copied); value is escaped (copied). A second
 * call replaces the first.
 */
void realm_metrics_set_const_label(realm_metrics_t *m, const char *name, const char *value);

/*
 * A collector for the standard process metrics, read from /proc/self:
 * process_resident_memory_bytes, process_virtual_memory_bytes,
 * process_cpu_seconds_total, process_open_fds, process_max_fds,
 * process_start_time_seconds. Pass NULL as data.
 */
void realm_metrics_collect_process(realm_buf_t *out, void *data);

#endif
