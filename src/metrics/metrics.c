/*
 * metrics.c - Prometheus metrics registry and text exposition (see metrics.h).
 *
 * DESIGN: the registry is an array of families in registration order; each
 * family is an array of children in creation order. Lookups are linear on
 * purpose: families have a handful of children, callers look a child up once
 * and keep the pointer, and a flat array keeps the exposition order stable
 * (scrapes diff cleanly). A family without labels gets its only child at
 * registration, so it is always exposed (a zero sample, or an empty
 * histogram) even before its first update.
 *
 * Histograms keep one non-cumulative count per finite bucket; the exposition
 * sums them on the way out ("le" buckets are cumulative, format 0.0.4), and
 * the +Inf bucket is the total count.
 *
 * Numbers are printed as Prometheus parses them: integral values without
 * exponent or decimal point, others with the shortest %g precision that reads
 * back to the same double, and +Inf/-Inf/NaN spelled out. printf's decimal
 * point follows LC_NUMERIC; Realm never calls setlocale, so it is '.'.
 *
 * Misuse that would corrupt memory later (a family registered twice with
 * different labels, too many labels, invalid names, unsorted buckets) aborts
 * at registration time, which is process start.
 *
 * LIFETIME: families, children and collectors live until realm_metrics_free().
 * THREADS: loop thread only.
 */
#include "metrics/metrics.h"

#include "base/alloc.h"

#include <dirent.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

/* Upper bounds used when a histogram is registered with buckets == NULL
 * (the Prometheus client libraries' defaults, in seconds). */
static const double default_buckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};

struct realm_metric_s {
    realm_metric_family_t *family;                /* borrowed; owns this child */
    char *label_values[REALM_METRICS_MAX_LABELS]; /* owned; family->label_cnt used */
    double value;                                 /* counter/gauge value; histogram sum */
    unsigned long long count;                     /* histogram: observations */
    unsigned long long *bucket_counts;            /* owned; histogram: per-bucket, not cumulative */
};

struct realm_metric_family_s {
    realm_metric_type_t type;
    char *name;                                  /* owned */
    char *help;                                  /* owned */
    char *label_names[REALM_METRICS_MAX_LABELS]; /* owned; label_cnt used */
    size_t label_cnt;
    double *buckets; /* owned; finite upper bounds, ascending (histogram only) */
    size_t buckets_cnt;
    realm_metric_t **children; /* owned array of owned children, creation order */
    size_t children_cnt;
    size_t children_cap;
};

typedef struct {
    realm_metrics_collect_cb cb;
    void *data; /* borrowed */
} collector_t;

struct realm_metrics_s {
    realm_metric_family_t **families; /* owned, registration order */
    size_t families_cnt;
    size_t families_cap;
    collector_t *collectors; /* owned, registration order */
    size_t collectors_cnt;
    size_t collectors_cap;
    char *const_label; /* owned: `name="escaped value"`, or NULL */
};

/* ------------------------------------------------------------------------ */
/* Helpers                                                                   */
/* ------------------------------------------------------------------------ */

static void misuse(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void misuse(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("realm: metrics misuse: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    abort();
}

/* Grows *arr (elements of elem_size) so that one more fits. */
static void grow(void **arr, size_t *cap, size_t cnt, size_t elem_size)
{
    if (cnt < *cap) return;
    size_t n = *cap ? *cap * 2 : 4;
    *arr = realm_realloc(*arr, n * elem_size);
    *cap = n;
}

/* [a-zA-Z_:][a-zA-Z0-9_:]* (metric names) or without ':' (label names). */
static int is_valid_name(const char *s, size_t len, int allow_colon)
{
    if (len == 0) return 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                 (allow_colon && c == ':') || (i > 0 && c >= '0' && c <= '9');
        if (!ok) return 0;
    }
    return 1;
}

static const char *type_name(realm_metric_type_t type)
{
    switch (type) {
    case REALM_METRIC_COUNTER:
        return "counter";
    case REALM_METRIC_GAUGE:
        return "gauge";
    case REALM_METRIC_HISTOGRAM:
        return "histogram";
    }
    return "untyped";
}

#define NUMBER_MAX 32 /* "-1.2345678901234567e-308" fits with room to spare */

/* Formats v as the exposition format spells it (see the top of the file). */
static void format_number(char out[NUMBER_MAX], double v)
{
    if (isnan(v)) {
        strcpy(out, "NaN");
    } else if (isinf(v)) {
        strcpy(out, v > 0 ? "+Inf" : "-Inf");
    } else if (v == 0) {
        strcpy(out, "0"); /* also -0 */
    } else if (v == trunc(v) && fabs(v) < 9007199254740992.0) {
        /* integral and exact in a double (< 2^53): plain digits */
        snprintf(out, NUMBER_MAX, "%.0f", v);
    } else {
        /* shortest of 15/16/17 significant digits that reads back exactly,
         * so 0.005 prints as "0.005" and not "0.0050000000000000001" */
        for (int prec = 15; prec <= 17; prec++) {
            snprintf(out, NUMBER_MAX, "%.*g", prec, v);
            if (strtod(out, NULL) == v) break;
        }
    }
}

static void append_number(realm_buf_t *out, double v)
{
    char num[NUMBER_MAX];
    format_number(num, v);
    realm_buf_appends(out, num);
}

/* Appends s with '\\' and '\n' escaped, and '"' too if escape_quote. */
static void append_escaped(realm_buf_t *out, const char *s, int escape_quote)
{
    const char *run = s;
    for (; *s; s++) {
        const char *esc = NULL;
        if (*s == '\\')
            esc = "\\\\";
        else if (*s == '\n')
            esc = "\\n";
        else if (*s == '"' && escape_quote)
            esc = "\\\"";
        if (esc == NULL) continue;
        realm_buf_append(out, run, (size_t)(s - run));
        realm_buf_appends(out, esc);
        run = s + 1;
    }
    realm_buf_append(out, run, (size_t)(s - run));
}

/* ------------------------------------------------------------------------ */
/* Registry                                                                  */
/* ------------------------------------------------------------------------ */

realm_metrics_t *realm_metrics_new(void)
{
    return realm_calloc(1, sizeof(realm_metrics_t));
}

static void child_free(realm_metric_t *c)
{
    for (size_t i = 0; i < c->family->label_cnt; i++)
        free(c->label_values[i]);
    free(c->bucket_counts);
    free(c);
}

static void family_free(realm_metric_family_t *f)
{
    for (size_t i = 0; i < f->children_cnt; i++)
        child_free(f->children[i]);
    free(f->children);
    for (size_t i = 0; i < f->label_cnt; i++)
        free(f->label_names[i]);
    free(f->buckets);
    free(f->help);
    free(f->name);
    free(f);
}

void realm_metrics_free(realm_metrics_t *m)
{
    if (m == NULL) return;
    for (size_t i = 0; i < m->families_cnt; i++)
        family_free(m->families[i]);
    free(m->families);
    free(m->collectors);
    free(m->const_label);
    free(m);
}

/* Splits "a,b" (spaces around names tolerated) into f->label_names. */
static void parse_label_names(realm_metric_family_t *f, const char *label_names)
{
    const char *p = label_names;
    if (p == NULL || *p == '\0') return;
    for (;;) {
        while (*p == ' ')
            p++;
        const char *start = p;
        while (*p && *p != ',' && *p != ' ')
            p++;
        size_t len = (size_t)(p - start);
        while (*p == ' ')
            p++;
        if (!is_valid_name(start, len, 0) || (len >= 2 && start[0] == '_' && start[1] == '_'))
            misuse("%s: invalid label names \"%s\"", f->name, label_names);
        if (f->type == REALM_METRIC_HISTOGRAM && len == 2 && memcmp(start, "le", 2) == 0)
            misuse("%s: a histogram cannot have a label named \"le\"", f->name);
        if (f->label_cnt == REALM_METRICS_MAX_LABELS)
            misuse("%s: more than %d labels", f->name, REALM_METRICS_MAX_LABELS);
        f->label_names[f->label_cnt++] = realm_strndup(start, len);
        if (*p == '\0') break;
        if (*p != ',') misuse("%s: invalid label names \"%s\"", f->name, label_names);
        p++;
    }
    for (size_t i = 0; i < f->label_cnt; i++)
        for (size_t j = i + 1; j < f->label_cnt; j++)
            if (strcmp(f->label_names[i], f->label_names[j]) == 0)
                misuse("%s: duplicate label \"%s\"", f->name, f->label_names[i]);
}

static void copy_buckets(realm_metric_family_t *f, const double *buckets, size_t buckets_cnt)
{
    if (buckets == NULL) {
        buckets = default_buckets;
        buckets_cnt = sizeof(default_buckets) / sizeof(default_buckets[0]);
    }
    /* +Inf is implicit; tolerate a caller spelling it out as the last bound */
    if (buckets_cnt > 0 && isinf(buckets[buckets_cnt - 1]) && buckets[buckets_cnt - 1] > 0)
        buckets_cnt--;
    f->buckets = realm_malloc(buckets_cnt * sizeof(double));
    for (size_t i = 0; i < buckets_cnt; i++) {
        if (!isfinite(buckets[i]) || (i > 0 && !(buckets[i] > buckets[i - 1])))
            misuse("%s: bucket bounds must be finite and strictly ascending", f->name);
        f->buckets[i] = buckets[i];
    }
    f->buckets_cnt = buckets_cnt;
}

/* Same label names in the same order as "a,b"? Used for re-registration. */
static int same_labels(const realm_metric_family_t *a, const realm_metric_family_t *b)
{
    if (a->label_cnt != b->label_cnt) return 0;
    for (size_t i = 0; i < a->label_cnt; i++)
        if (strcmp(a->label_names[i], b->label_names[i]) != 0) return 0;
    return 1;
}

static realm_metric_t *child_new(realm_metric_family_t *f, const char *const *label_values)
{
    realm_metric_t *c = realm_calloc(1, sizeof(*c));
    c->family = f;
    for (size_t i = 0; i < f->label_cnt; i++) {
        const char *v = label_values ? label_values[i] : NULL;
        c->label_values[i] = realm_strdup(v ? v : "");
    }
    if (f->type == REALM_METRIC_HISTOGRAM)
        c->bucket_counts = realm_calloc(f->buckets_cnt, sizeof(unsigned long long));
    grow((void **)&f->children, &f->children_cap, f->children_cnt, sizeof(*f->children));
    f->children[f->children_cnt++] = c;
    return c;
}

realm_metric_family_t *realm_metrics_family(realm_metrics_t *m, realm_metric_type_t type,
                                            const char *name, const char *help,
                                            const char *label_names, const double *buckets,
                                            size_t buckets_cnt)
{
    if (!is_valid_name(name, strlen(name), 1)) misuse("invalid metric name \"%s\"", name);
    if (type != REALM_METRIC_COUNTER && type != REALM_METRIC_GAUGE &&
        type != REALM_METRIC_HISTOGRAM)
        misuse("%s: unknown metric type %d", name, (int)type);

    realm_metric_family_t *f = realm_calloc(1, sizeof(*f));
    f->type = type;
    f->name = realm_strdup(name);
    f->help = realm_strdup(help ? help : "");
    parse_label_names(f, label_names);

    for (size_t i = 0; i < m->families_cnt; i++) {
        realm_metric_family_t *old = m->families[i];
        if (strcmp(old->name, name) != 0) continue;
        /* a mismatch here would make realm_metrics_child() read the wrong
         * number of label values, so refuse it loudly */
        if (old->type != type || !same_labels(old, f))
            misuse("%s registered twice with a different type or labels", name);
        family_free(f);
        return old;
    }

    if (type == REALM_METRIC_HISTOGRAM) copy_buckets(f, buckets, buckets_cnt);
    grow((void **)&m->families, &m->families_cap, m->families_cnt, sizeof(*m->families));
    m->families[m->families_cnt++] = f;
    if (f->label_cnt == 0) child_new(f, NULL);
    return f;
}

realm_metric_t *realm_metrics_child(realm_metric_family_t *f, const char *const *label_values)
{
    for (size_t i = 0; i < f->children_cnt; i++) {
        realm_metric_t *c = f->children[i];
        size_t j = 0;
        for (; j < f->label_cnt; j++) {
            const char *v = label_values ? label_values[j] : NULL;
            if (strcmp(c->label_values[j], v ? v : "") != 0) break;
        }
        if (j == f->label_cnt) return c;
    }
    return child_new(f, label_values);
}

/* ------------------------------------------------------------------------ */
/* Updates                                                                   */
/*                                                                           */
/* Calls that do not fit the metric's type (set on a counter, inc on a       */
/* histogram, a negative counter add) are ignored: a counter never goes      */
/* down, and a metrics bug must not take the server down at runtime.         */
/* ------------------------------------------------------------------------ */

void realm_metric_inc(realm_metric_t *c)
{
    realm_metric_add(c, 1);
}

void realm_metric_add(realm_metric_t *c, double v)
{
    switch (c->family->type) {
    case REALM_METRIC_COUNTER:
        if (v >= 0) c->value += v;
        break;
    case REALM_METRIC_GAUGE:
        c->value += v;
        break;
    case REALM_METRIC_HISTOGRAM:
        break;
    }
}

void realm_metric_set(realm_metric_t *c, double v)
{
    if (c->family->type == REALM_METRIC_GAUGE) c->value = v;
}

void realm_metric_observe(realm_metric_t *c, double v)
{
    const realm_metric_family_t *f = c->family;
    if (f->type != REALM_METRIC_HISTOGRAM) return;
    /* first bound with v <= le; larger values (and NaN) only count in +Inf */
    for (size_t i = 0; i < f->buckets_cnt; i++) {
        if (v <= f->buckets[i]) {
            c->bucket_counts[i]++;
            break;
        }
    }
    c->count++;
    c->value += v;
}

double realm_metric_value(const realm_metric_t *c)
{
    return c->value;
}

unsigned long long realm_metric_count(const realm_metric_t *c)
{
    return c->family->type == REALM_METRIC_HISTOGRAM ? c->count : 0;
}

void realm_metrics_add_collector(realm_metrics_t *m, realm_metrics_collect_cb cb, void *data)
{
    grow((void **)&m->collectors, &m->collectors_cap, m->collectors_cnt, sizeof(*m->collectors));
    m->collectors[m->collectors_cnt].cb = cb;
    m->collectors[m->collectors_cnt].data = data;
    m->collectors_cnt++;
}

/* ------------------------------------------------------------------------ */
/* Exposition                                                                */
/* ------------------------------------------------------------------------ */

void realm_metrics_emit_header(realm_buf_t *out, const char *name, const char *help,
                               realm_metric_type_t type)
{
    realm_buf_appends(out, "# HELP ");
    realm_buf_appends(out, name);
    if (help && *help) {
        realm_buf_append(out, " ", 1);
        append_escaped(out, help, 0);
    }
    realm_buf_appendf(out, "\n# TYPE %s %s\n", name, type_name(type));
}

void realm_metrics_emit_sample(realm_buf_t *out, const char *name, const char *const *labels,
                               double value)
{
    realm_buf_appends(out, name);
    if (labels && labels[0]) {
        realm_buf_append(out, "{", 1);
        for (size_t i = 0; labels[i]; i += 2) {
            if (i > 0) realm_buf_append(out, ",", 1);
            realm_buf_appends(out, labels[i]);
            realm_buf_append(out, "=\"", 2);
            append_escaped(out, labels[i + 1] ? labels[i + 1] : "", 1);
            realm_buf_append(out, "\"", 1);
            if (labels[i + 1] == NULL) break; /* odd array: a name without value */
        }
        realm_buf_append(out, "}", 1);
    }
    realm_buf_append(out, " ", 1);
    append_number(out, value);
    realm_buf_append(out, "\n", 1);
}

/* Room for every label pair, an "le" pair and the NULL terminator. */
#define LABELS_MAX (2 * (REALM_METRICS_MAX_LABELS + 1) + 1)

static void render_histogram(realm_buf_t *out, const realm_metric_family_t *f,
                             const realm_metric_t *c, const char **labels, size_t n)
{
    size_t name_len = strlen(f->name);
    char *series = realm_malloc(name_len + sizeof("_bucket"));
    char le[NUMBER_MAX];
    unsigned long long cumulative = 0;

    memcpy(series, f->name, name_len);
    strcpy(series + name_len, "_bucket");
    labels[n] = "le";
    labels[n + 1] = le;
    labels[n + 2] = NULL;
    for (size_t i = 0; i < f->buckets_cnt; i++) {
        cumulative += c->bucket_counts[i];
        format_number(le, f->buckets[i]);
        realm_metrics_emit_sample(out, series, labels, (double)cumulative);
    }
    strcpy(le, "+Inf");
    realm_metrics_emit_sample(out, series, labels, (double)c->count);

    labels[n] = NULL; /* _sum and _count carry only the family's labels */
    strcpy(series + name_len, "_sum");
    realm_metrics_emit_sample(out, series, labels, c->value);
    strcpy(series + name_len, "_count");
    realm_metrics_emit_sample(out, series, labels, (double)c->count);
    free(series);
}

static void render_family(realm_buf_t *out, const realm_metric_family_t *f)
{
    realm_metrics_emit_header(out, f->name, f->help, f->type);
    for (size_t i = 0; i < f->children_cnt; i++) {
        const realm_metric_t *c = f->children[i];
        const char *labels[LABELS_MAX];
        size_t n = 0;
        for (size_t j = 0; j < f->label_cnt; j++) {
            labels[n++] = f->label_names[j];
            labels[n++] = c->label_values[j];
        }
        labels[n] = NULL;
        if (f->type == REALM_METRIC_HISTOGRAM)
            render_histogram(out, f, c, labels, n);
        else
            realm_metrics_emit_sample(out, f->name, labels, c->value);
    }
}

static void render_all(realm_metrics_t *m, realm_buf_t *out)
{
    for (size_t i = 0; i < m->families_cnt; i++)
        render_family(out, m->families[i]);
    for (size_t i = 0; i < m->collectors_cnt; i++)
        m->collectors[i].cb(out, m->collectors[i].data);
}

void realm_metrics_render(realm_metrics_t *m, realm_buf_t *out)
{
    if (!m->const_label) {
        render_all(m, out);
        return;
    }
    /* Rendered apart, then copied with the label put first in every
     * sample line: `a 1` -> `a{node="n1"} 1`, `a{x="y"} 1` -> `a{node="n1",x="y"} 1`. */
    realm_buf_t all;
    realm_buf_init(&all);
    render_all(m, &all);
    const char *p = all.data ? all.data : "", *end = p + all.len;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        size_t len = eol ? (size_t)(eol - p) + 1 : (size_t)(end - p);
        size_t name_len = strcspn(p, "{ \n");
        if (p[0] == '#' || name_len >= len || p[name_len] == '\n') {
            realm_buf_append(out, p, len);
        } else {
            realm_buf_append(out, p, name_len);
            realm_buf_appendf(out, "{%s%s", m->const_label, p[name_len] == '{' ? "," : "}");
            size_t rest = name_len + (p[name_len] == '{' ? 1 : 0);
            realm_buf_append(out, p + rest, len - rest);
        }
        p += len;
    }
    realm_buf_dispose(&all);
}

void realm_metrics_set_const_label(realm_metrics_t *m, const char *name, const char *value)
{
    realm_buf_t b;
    realm_buf_init(&b);
    realm_buf_appendf(&b, "%s=\"", name);
    append_escaped(&b, value, 1);
    realm_buf_appends(&b, "\"");
    free(m->const_label);
    m->const_label = realm_strdup(b.data);
    realm_buf_dispose(&b);
}

/* ------------------------------------------------------------------------ */
/* Process collector                                                         */
/*                                                                           */
/* The standard process_* families, with the names and help texts the        */
/* official client libraries use, read from proc(5) at scrape time. A family */
/* whose source cannot be read is left out rather than reported as 0.        */
/* ------------------------------------------------------------------------ */

/* Reads a small /proc file into buf (NUL-terminated). Returns 0 or -1. */
static int read_proc_file(const char *path, char *buf, size_t size)
{
    FILE *fp = fopen(path, "r");
    if (fp == NULL) return -1;
    size_t n = fread(buf, 1, size - 1, fp);
    fclose(fp);
    buf[n] = '\0';
    return n > 0 ? 0 : -1;
}

/* Boot time in seconds since the epoch ("btime" in /proc/stat), or -1. */
static double read_boot_time(void)
{
    FILE *fp = fopen("/proc/stat", "r");
    if (fp == NULL) return -1;
    char line[512];
    double btime = -1;
    unsigned long long v;
    while (fgets(line, sizeof(line), fp)) {
        if (sscanf(line, "btime %llu", &v) == 1) {
            btime = (double)v;
            break;
        }
    }
    fclose(fp);
    return btime;
}

/* Entries in /proc/self/fd (the directory's own descriptor included, as the
 * other client libraries count it), or -1. */
static double count_open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL) return -1;
    double n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        n++;
    }
    closedir(d);
    return n;
}

static void emit_one(realm_buf_t *out, const char *name, const char *help, realm_metric_type_t type,
                     double value)
{
    realm_metrics_emit_header(out, name, help, type);
    realm_metrics_emit_sample(out, name, NULL, value);
}

void realm_metrics_collect_process(realm_buf_t *out, void *data)
{
    char stat[2048];
    unsigned long utime = 0, stime = 0, vsize = 0;
    unsigned long long starttime = 0;
    long rss = 0;
    int have_stat = 0;

    if (read_proc_file("/proc/self/stat", stat, sizeof(stat)) == 0) {
        /* comm (field 2) may hold spaces and ')': parse after the last ')'.
         * From field 3: state ppid pgrp session tty_nr tpgid flags minflt
         * cminflt majflt cmajflt utime(14) stime(15) cutime cstime priority
         * nice num_threads itrealvalue starttime(22) vsize(23) rss(24). */
        const char *p = strrchr(stat, ')');
        if (p && sscanf(p + 1,
                        " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu %*d %*d %*d %*d"
                        " %*d %*d %llu %lu %ld",
                        &utime, &stime, &starttime, &vsize, &rss) == 5)
            have_stat = 1;
    }
    long ticks = sysconf(_SC_CLK_TCK);
    long page_size = sysconf(_SC_PAGESIZE);

    if (have_stat && page_size > 0)
        emit_one(out, "process_resident_memory_bytes", "Resident memory size in bytes.",
                 REALM_METRIC_GAUGE, (double)rss * (double)page_size);
    if (have_stat)
        emit_one(out, "process_virtual_memory_bytes", "Virtual memory size in bytes.",
                 REALM_METRIC_GAUGE, (double)vsize);
    if (have_stat && ticks > 0)
        emit_one(out, "process_cpu_seconds_total",
                 "Total user and system CPU time spent in seconds.", REALM_METRIC_COUNTER,
                 ((double)utime + (double)stime) / (double)ticks);

    double fds = count_open_fds();
    if (fds >= 0)
        emit_one(out, "process_open_fds", "Number of open file descriptors.", REALM_METRIC_GAUGE,
                 fds);

    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
        emit_one(out, "process_max_fds", "Maximum number of open file descriptors.",
                 REALM_METRIC_GAUGE, rl.rlim_cur == RLIM_INFINITY ? INFINITY : (double)rl.rlim_cur);

    double btime = read_boot_time();
    if (have_stat && ticks > 0 && btime >= 0)
        emit_one(out, "process_start_time_seconds",
                 "Start time of the process since unix epoch in seconds.", REALM_METRIC_GAUGE,
                 btime + (double)starttime / (double)ticks);
}
