/*
 * server.c - wiring of listeners, HTTP servers, the client WebSocket surface,
 * the dispatcher and metrics; signals and graceful shutdown (see server.h).
 *
 * SHUTDOWN: on the first SIGINT/SIGTERM the listeners stop accepting, HTTP
 * connections answer their current request with `Connection: close` (idle
 * ones close at once), and the client surface refuses new calls with
 * SHUTTING_DOWN and closes each WebSocket with 1001 as soon as its calls
 * are done. At the end of the grace period the calls still running are
 * cancelled. Once no connection is left (or the grace period plus the close
 * handshake timeout has passed) every handle is closed and the loop ends; the
 * process exits 0. A second signal skips the grace period.
 */
#include "api/server.h"

#include "api/authn.h"
#include "api/node.h"
#include "api/client.h"
#include "api/control.h"
#include "api/dialect.h"
#include "api/invoke.h"
#include "api/runtime.h"
#include "base/alloc.h"
#include "base/log.h"
#include "dispatch/builtins.h"
#include "dispatch/dispatch.h"
#include "exec/exec.h"
#include "http/server.h"
#include "invoke/functions.h"
#include "invoke/generate.h"
#include "invoke/invoker.h"
#include "metrics/metrics.h"
#include "net/listener.h"
#include "pkg/pkg.h"
#include "registry/async.h"
#include "registry/registry.h"
#include "runtimes/runtimes.h"
#include "sandbox/sandbox.h"
#include "store/store.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum { L_CLIENT, L_CONTROL, L_RUNTIME, L_METRICS, L_COUNT };

static const char *const listener_names[L_COUNT] = {"client", "control", "runtime", "metrics"};

#define SHUTDOWN_POLL_MS 20
#define CLOSE_HANDSHAKE_MS 5000
#define AUTH_TIMEOUT_MS 10000 /* to send {"type":"auth"} on a new WebSocket */
#define TRIM_TICK_MS 1000     /* how often memory use is looked at (base/alloc.h) */
#define TRIM_BUSY_TICKS 30    /* trim at least this often (in ticks) while busy */
#define IDLE_GRACE_MS 1000    /* a new idle connection is safe from the idle cap this long */
#define REGISTRY_MAX_JOBS                                                                          \
    65536                     /* the registry worker's queue bound (control refuses past 4096)     \
                               */
#define REGISTRY_POLL_MS 1000 /* another server's registry writes are seen this soon */

typedef struct {
    realm_server_t *s;
    int index;
    realm_metric_t *by_class[6]; /* realm_http_requests_total children: 1xx..5xx */
} surface_t;

struct realm_server_s {
    uv_loop_t *loop;
    const realm_config_t *cfg;
    realm_metrics_t *metrics;
    realm_dispatch_t *dispatch;
    realm_builtins_ctx_t builtins;
    realm_client_t *client;
    realm_control_t *control;
    realm_registry_t *reg;      /* DATA_DIR/realm.db or --db, opened here, then used by ra only */
    realm_registry_async_t *ra; /* the registry on its worker, lent to control and the invoker */
    realm_pkg_store_t *store;   /* DATA_DIR/packages, likewise */
    realm_sandbox_probe_t probe;
    realm_exec_t *exec;
    realm_invoker_t *invoker;
    realm_authn_t *authn;
    realm_node_t *node; /* --nats: this server in its cluster, or NULL */
    realm_functions_t *functions;
    realm_generate_t *generate;
    realm_runtime_t *runtime;
    char runtimes_dir[4096];
    char node_modules_dir[4096];
    json_t *runtimes_json; /* owned: {runtime: exact version} of the available ones */
    char logs_dir[4096];
    char scratch_dir[4096]; /* environments' /tmp disks; "" for tmpfs */
    char spawn_exe[4096];   /* the trampoline: realm-spawn beside us, or ourselves */
    realm_http_server_t *http[L_COUNT];
    realm_listener_t *listeners[L_COUNT];
    size_t max_conns[L_COUNT]; /* each listener's connection limit (plan_fds) */
    surface_t surfaces[L_COUNT];
    uv_signal_t sigint, sigterm;
    uv_timer_t shutdown_timer;
    uv_timer_t trim_timer; /* each second: the idle cap, giving memory back */
    realm_mem_idle_t mem;  /* when to trim */
    uint64_t responses;    /* HTTP responses sent, all listeners */
    uint64_t shutdown_started;
    int signals;
    int is_shutting_down;
    int is_closing; /* realm_server_free runs: no more package sweeps */
    int grace_over;
};

/* ---- metrics ---- */

static void on_http_observe(int status, void *data)
{
    surface_t *sf = data;
    int cls = status / 100;
    if (cls >= 1 && cls <= 5) realm_metric_inc(sf->by_class[cls]);
    sf->s->responses++;
}

static void collect_listeners(realm_buf_t *out, void *data)
{
    realm_server_t *s = data;
    static const struct {
        const char *name, *help;
        realm_metric_type_t type;
    } fams[] = {
        {"realm_connections_open", "Open connections, by listener", REALM_METRIC_GAUGE},
        {"realm_connections_accepted_total", "Connections accepted, by listener",
         REALM_METRIC_COUNTER},
        {"realm_connections_rejected_total", "Connections refused or failed at accept, by listener",
         REALM_METRIC_COUNTER},
    };
    static const struct {
        const char *name, *help;
        realm_metric_type_t type;
    } more[] = {
        {"realm_connections_max", "Connection limit, by listener", REALM_METRIC_GAUGE},
        {"realm_connections_idle", "HTTP connections waiting for a request, by listener",
         REALM_METRIC_GAUGE},
        {"realm_accept_pauses_total",
         "Times accepting paused for want of file descriptors, by listener", REALM_METRIC_COUNTER},
    };
    for (size_t f = 0; f < 6; f++) {
        const char *name = f < 3 ? fams[f].name : more[f - 3].name;
        realm_metrics_emit_header(out, name, f < 3 ? fams[f].help : more[f - 3].help,
                                  f < 3 ? fams[f].type : more[f - 3].type);
        for (int i = 0; i < L_COUNT; i++) {
            realm_listener_t *l = s->listeners[i];
            if (!l) continue;
            const char *labels[] = {"listener", listener_names[i], NULL};
            double v = f == 0   ? (double)realm_listener_open_cnt(l)
                       : f == 1 ? (double)realm_listener_accepted_cnt(l)
                       : f == 2 ? (double)realm_listener_rejected_cnt(l)
                       : f == 3 ? (double)realm_listener_max_conns(l)
                       : f == 4 ? (double)realm_http_server_idle_cnt(s->http[i])
                                : (double)realm_listener_paused_cnt(l);
            if (i == L_RUNTIME && s->runtime && f < 3) {
                /* Environments with a namespace of their own connect to their
                 * private listeners: they are the runtime listener's too. */
                uint64_t po, pa, pr;
                realm_runtime_private_counts(s->runtime, &po, &pa, &pr);
                v += (double)(f == 0 ? po : f == 1 ? pa : pr);
            }
            realm_metrics_emit_sample(out, name, labels, v);
        }
    }
    realm_metrics_emit_header(out, "realm_memory_trims_total",
                              "Times free memory was given back to the system after a burst",
                              REALM_METRIC_COUNTER);
    realm_metrics_emit_sample(out, "realm_memory_trims_total", NULL, (double)s->mem.trims_cnt);
    realm_metrics_emit_header(out, "realm_event_queue_pending",
                              "Event invocations queued (all tenants), leased or not",
                              REALM_METRIC_GAUGE);
    realm_metrics_emit_sample(out, "realm_event_queue_pending", NULL,
                              s->invoker ? (double)realm_invoker_events_pending(s->invoker) : 0);
    realm_metrics_emit_header(out, "realm_websocket_connections",
                              "Open client WebSocket connections", REALM_METRIC_GAUGE);
    realm_metrics_emit_sample(out, "realm_websocket_connections", NULL,
                              (double)realm_client_connections(s->client));
}

static void emit_tenant(const char *tenant, uint64_t ok, uint64_t errors, uint64_t throttled,
                        void *data)
{
    realm_buf_t *out = data;
    static const char *const outcomes[] = {"ok", "error", "throttled"};
    uint64_t v[] = {ok, errors, throttled};
    for (int i = 0; i < 3; i++) {
        const char *labels[] = {"tenant", tenant[0] ? tenant : "default", "outcome", outcomes[i],
                                NULL};
        realm_metrics_emit_sample(out, "realm_tenant_invocations_total", labels, (double)v[i]);
    }
}

/* The execution engine's counters, read at scrape time. */
static void collect_exec(realm_buf_t *out, void *data)
{
    realm_server_t *s = data;
    if (!s->exec) return;
    realm_exec_stats_t st;
    realm_exec_stats(s->exec, &st);
    realm_metrics_emit_header(out, "realm_environments", "Execution environments, by state",
                              REALM_METRIC_GAUGE);
    static const char *const states[] = {"busy", "idle", "starting", "resting"};
    size_t known = st.busy + st.idle + st.starting;
    double by_state[] = {(double)st.busy, (double)st.idle, (double)st.starting,
                         (double)(st.environments > known ? st.environments - known : 0)};
    for (int i = 0; i < 4; i++) {
        const char *labels[] = {"state", states[i], NULL};
        realm_metrics_emit_sample(out, "realm_environments", labels, by_state[i]);
    }
    realm_metrics_emit_header(out, "realm_invocations_queued",
                              "Invocations waiting for an environment", REALM_METRIC_GAUGE);
    realm_metrics_emit_sample(out, "realm_invocations_queued", NULL, (double)st.queued);
    static const struct {
        const char *name, *help;
    } fams[] = {
        {"realm_environments_started_total", "Execution environments started (cold starts)"},
        {"realm_environments_stopped_total", "Execution environments stopped"},
        {"realm_invocations_total", "Invocations handed to an environment"},
        {"realm_invocation_timeouts_total", "Invocations that ran past their timeout"},
        {"realm_invocation_oom_total", "Invocations ended by the memory limit"},
        {"realm_environment_crashes_total", "Environments that exited on their own"},
        {"realm_invocation_throttles_total", "Invocations refused with 429 (concurrency)"},
    };
    uint64_t vals[] = {st.started_total, st.stopped_total, st.invocations_total, st.timeouts_total,
                       st.oom_total,     st.crashes_total, st.throttles_total};
    for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
        realm_metrics_emit_header(out, fams[i].name, fams[i].help, REALM_METRIC_COUNTER);
        realm_metrics_emit_sample(out, fams[i].name, NULL, (double)vals[i]);
    }
    /* Tenants are bounded by the keys an operator creates. */
    realm_metrics_emit_header(out, "realm_tenant_invocations_total",
                              "Invocations ended, by tenant (account id) and outcome",
                              REALM_METRIC_COUNTER);
    realm_exec_tenant_stats(s->exec, emit_tenant, out);
}

static void on_metrics(realm_http_req_t *req, realm_http_res_t *res, void *data)
{
    (void)req;
    realm_server_t *s = data;
    realm_buf_t out;
    realm_buf_init(&out);
    realm_metrics_render(s->metrics, &out);
    realm_http_res_send(res, 200, "text/plain; version=0.0.4; charset=utf-8", out.data, out.len);
    realm_buf_dispose(&out);
}

/* Liveness for orchestrators and load balancers (no call protocol needed). */
static void on_health(realm_http_req_t *req, realm_http_res_t *res, void *data)
{
    (void)req;
    realm_server_t *s = data;
    const char *status = s->is_shutting_down ? "shutting_down" : "ok";
    char body[96];
    int n = snprintf(body, sizeof(body), "{\"status\":\"%s\",\"version\":\"%s\"}", status,
                     REALM_VERSION);
    realm_http_res_send(res, s->is_shutting_down ? 503 : 200, "application/json", body, (size_t)n);
}

/*
 * The control port's probe, as Lambda@Home answers it (200 "OK"): open
 * without a signature, so it says nothing else; 503 while shutting down.
 */
static void on_healthz(realm_http_req_t *req, realm_http_res_t *res, void *data)
{
    (void)req;
    realm_server_t *s = data;
    if (s->is_shutting_down)
        realm_http_res_send(res, 503, "text/plain; charset=utf-8", "shutting down", 13);
    else
        realm_http_res_send(res, 200, "text/plain; charset=utf-8", "OK", 2);
}

/* ---- the cluster (--nats) ---- */

/* A listener's URL: scheme://host:port and path. */
static void listener_url(const realm_server_t *s, int i, const char *path, char *out, size_t len)
{
    static const char *const schemes[L_COUNT] = {"ws", "http", "http", "http"};
    const char *host = realm_listener_host(s->listeners[i]);
    int v6 = strchr(host, ':') != NULL;
    snprintf(out, len, "%s://%s%s%s:%d%s", schemes[i], v6 ? "[" : "", host, v6 ? "]" : "",
             realm_listener_port(s->listeners[i]), path);
}

/* What this node says about itself in its heartbeat (cluster.h). */
static json_t *node_state(void *data)
{
    realm_server_t *s = data;
    char client[300], control[300], metrics[300];
    listener_url(s, L_CLIENT, "/", client, sizeof(client));
    listener_url(s, L_CONTROL, "", control, sizeof(control));
    listener_url(s, L_METRICS, "", metrics, sizeof(metrics));
    return json_pack("{s:s, s:s, s:s, s:s, s:b}", "version", REALM_VERSION, "client", client,
                     "control", control, "metrics", metrics, "draining",
                     s->authn && realm_admit_is_draining(realm_authn_admit(s->authn)));
}

static json_t *cluster_health(void *data)
{
    realm_server_t *s = data;
    return realm_node_health(s->node);
}

static size_t client_connections(void *data)
{
    realm_server_t *s = data;
    return s->client ? realm_client_connections(s->client) : 0;
}

/* ---- listeners ---- */

static void on_conn(realm_listener_t *l, realm_conn_t *c, void *data)
{
    (void)l;
    surface_t *sf = data;
    if (sf->index == L_RUNTIME) realm_runtime_accept(sf->s->runtime, c);
    realm_http_server_attach(sf->s->http[sf->index], c);
}

static void setup_surface(realm_server_t *s, int i)
{
    const realm_config_t *cfg = s->cfg;
    realm_http_limits_t limits = {
        .max_header_bytes = cfg->max_header_bytes,
        .max_body_bytes = cfg->max_body_bytes,
        .header_timeout_ms = cfg->header_timeout_ms,
        .idle_timeout_ms = cfg->idle_timeout_ms,
    };
    /* Runtimes keep their connection while the environment idles. */
    if (i == L_RUNTIME && limits.idle_timeout_ms < cfg->env_idle_ms + 60000)
        limits.idle_timeout_ms = cfg->env_idle_ms + 60000;
    /* Idle connections are capped, oldest closed first, except an
     * environment's: its connection is idle between invocations and must
     * stay (the runtime listener has its own limit and takes only
     * environments). */
    limits.max_idle_conns = i == L_RUNTIME ? 0 : (size_t)cfg->max_idle_http_connections;
    limits.idle_grace_ms = IDLE_GRACE_MS;
    surface_t *sf = &s->surfaces[i];
    sf->s = s;
    sf->index = i;
    s->http[i] = realm_http_server_new(listener_names[i], &limits);
    realm_http_server_set_observer(s->http[i], on_http_observe, sf);
}

static int listener_port(const realm_config_t *cfg, int i)
{
    switch (i) {
    case L_CLIENT:
        return cfg->port;
    case L_CONTROL:
        return cfg->control_port;
    case L_RUNTIME:
        return cfg->runtime_port;
    default:
        return cfg->metrics_port;
    }
}

static int mkdir_p(const char *path)
{
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s", path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(tmp, 0700) != 0 && errno != EEXIST) return -1;
        *p = '/';
    }
    if (mkdir(tmp, 0700) != 0 && errno != EEXIST) return -1;
    return 0;
}

/* ---- file descriptors ---- */

/*
 * Every connection is a descriptor, and so is much of the server's own work:
 * an environment's pipes and cgroup files, SQLite's files, log files,
 * packages being unpacked. Each listener gets a connection limit, and
 * --reserved-fds descriptors are kept beyond all of them, so that no flood
 * of connections can leave an environment unable to start. The soft
 * RLIMIT_NOFILE is raised to cover the whole plan; when the hard limit does
 * not allow it, the reserve is kept (at most half of what there is) and the
 * listeners' limits shrink in proportion.
 */
static void plan_fds(realm_server_t *s)
{
    const realm_config_t *cfg = s->cfg;
    uint64_t want[L_COUNT];
    /* The client listener: the WebSockets, plus HTTP connections not yet
     * upgraded (capped as idle ones are). */
    want[L_CLIENT] = cfg->max_connections + cfg->max_idle_http_connections;
    want[L_CONTROL] = cfg->max_control_connections;
    want[L_RUNTIME] = cfg->max_runtime_connections;
    want[L_METRICS] = cfg->max_metrics_connections;
    uint64_t conns = 0;
    for (int i = 0; i < L_COUNT; i++)
        conns += want[i];
    uint64_t total = conns + cfg->reserved_fds;
    if (cfg->max_runtime_connections < cfg->concurrency_limit)
        realm_warn("--max-runtime-connections %" PRIu64 " is below --concurrency-limit %" PRIu64
                   ": environments beyond it cannot reach the runtime API",
                   cfg->max_runtime_connections, cfg->concurrency_limit);
    uint64_t have = realm_listener_raise_fd_limit(total);
    for (int i = 0; i < L_COUNT; i++)
        s->max_conns[i] = (size_t)want[i];
    if (have >= total) return;
    uint64_t reserve = cfg->reserved_fds < have / 2 ? cfg->reserved_fds : have / 2;
    uint64_t room = have - reserve;
    for (int i = 0; i < L_COUNT; i++) {
        uint64_t n = want[i] * room / conns;
        s->max_conns[i] = (size_t)(n ? n : 1);
    }
    realm_warn("open files are limited to %" PRIu64
               " (ulimit -n, hard limit): fewer than the %" PRIu64
               " planned (--max-connections %" PRIu64 " and the other listeners' limits, plus "
               "--reserved-fds %" PRIu64 "); connection limits lowered to client %zu, control "
               "%zu, runtime %zu, metrics %zu, with %" PRIu64 " reserved",
               have, total, cfg->max_connections, cfg->reserved_fds, s->max_conns[L_CLIENT],
               s->max_conns[L_CONTROL], s->max_conns[L_RUNTIME], s->max_conns[L_METRICS], reserve);
}

/* What a connection over a listener's limit is sent before it is closed. */
static void refusal_text(int i, realm_buf_t *out)
{
    const char *body, *extra = "";
    if (i == L_CONTROL) {
        body = "{\"Type\":\"Service\",\"message\":\"Too many connections; retry later\"}";
        extra = "x-amzn-ErrorType: ServiceException\r\n";
    } else if (i == L_RUNTIME) {
        body = "{\"errorMessage\":\"Too many connections\",\"errorType\":"
               "\"ServiceUnavailable\"}";
    } else {
        body = "{\"error\":{\"status\":503,\"code\":\"Service Unavailable\",\"message\":"
               "\"too many connections\"}}";
    }
    realm_buf_appendf(out,
                      "HTTP/1.1 503 Service Unavailable\r\nServer: realm/" REALM_VERSION
                      "\r\nRetry-After: 1\r\n%sContent-Type: application/json\r\n"
                      "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                      extra, strlen(body), body);
}

static int make_room(realm_listener_t *l, void *data)
{
    (void)l;
    return realm_http_server_close_oldest_idle(data);
}

static void limit_listener(realm_server_t *s, int i)
{
    realm_buf_t text;
    realm_buf_init(&text);
    refusal_text(i, &text);
    realm_listener_set_limit(s->listeners[i], s->max_conns[i], text.data, text.len);
    realm_buf_dispose(&text);
    realm_listener_set_room_cb(s->listeners[i], make_room, s->http[i]);
}

/* ---- memory ---- */

/*
 * Work done so far, as one number that changes whenever a connection opens
 * or closes, a response goes out or calls are in flight; the trim policy
 * (base/alloc.h) only compares it from one tick to the next.
 */
static uint64_t activity(realm_server_t *s)
{
    uint64_t n = s->responses + realm_dispatch_in_flight(s->dispatch);
    for (int i = 0; i < L_COUNT; i++)
        if (s->listeners[i])
            n += realm_listener_accepted_cnt(s->listeners[i]) * 2 +
                 realm_listener_open_cnt(s->listeners[i]);
    return n;
}

/* Each second: idle connections over the cap that have aged go, then memory. */
static void on_tick(uv_timer_t *t)
{
    realm_server_t *s = t->data;
    for (int i = 0; i < L_COUNT; i++)
        realm_http_server_sweep_idle(s->http[i]);
    realm_mem_idle_tick(&s->mem, activity(s));
}

/* ---- execution ---- */

/* realm-spawn in our own directory (it loads faster than we do), else
 * ourselves: both take `__spawn ARGS...`. */
static void find_spawn_exe(char *out, size_t len)
{
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n > 0) {
        self[n] = '\0';
        char *slash = strrchr(self, '/');
        if (slash) {
            *slash = '\0';
            snprintf(out, len, "%.4000s/realm-spawn", self);
            if (access(out, X_OK) == 0) return;
        }
    }
    snprintf(out, len, "/proc/self/exe");
}

/* "FIRST-LAST", 1 <= FIRST <= LAST < 2^32 - 1. */
static int parse_uid_range(const char *s, unsigned long *first, unsigned long *last)
{
    char *e;
    errno = 0;
    *first = strtoul(s, &e, 10);
    if (errno || e == s || *e != '-' || *first == 0) return -1;
    const char *t = e + 1;
    *last = strtoul(t, &e, 10);
    if (errno || e == t || *e || *last < *first || *last > 0xfffffffeul) return -1;
    return 0;
}

/* Disk images left by environments of an earlier process; the empty ext4
 * images made once per size (ext4-MB.img) stay. */
static void clean_scratch(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.' ||
            (strncmp(e->d_name, "ext4-", 5) == 0 && !strstr(e->d_name, ".img.")))
            continue;
        char path[4400];
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        unlink(path);
    }
    closedir(d);
}

static int is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/*
 * Our bootstraps: --runtimes-dir, else the first runtimes/ with
 * the table's marker (node/bootstrap.js) found going up from the binary's directory (build/realm
 * and build/asan/realm both find the repository's). node_modules (for the
 * `ws` package) is looked for beside it.
 */
static void find_runtimes(realm_server_t *s)
{
    const realm_config_t *cfg = s->cfg;
    s->runtimes_dir[0] = s->node_modules_dir[0] = '\0';
    if (cfg->runtimes_dir && strcmp(cfg->runtimes_dir, "auto") != 0) {
        if (!realpath(cfg->runtimes_dir, s->runtimes_dir))
            snprintf(s->runtimes_dir, sizeof(s->runtimes_dir), "%s", cfg->runtimes_dir);
    } else {
        char exe[4096];
        ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
        if (n > 0) {
            exe[n] = '\0';
            for (int up = 0; up < 5; up++) {
                char *slash = strrchr(exe, '/');
                if (!slash || slash == exe) break;
                *slash = '\0';
                char probe[4200];
                snprintf(probe, sizeof(probe), "%s/runtimes/%s", exe, realm_runtimes_marker());
                if (access(probe, R_OK) == 0) {
                    snprintf(s->runtimes_dir, sizeof(s->runtimes_dir), "%.4000s/runtimes", exe);
                    break;
                }
            }
        }
    }
    if (!s->runtimes_dir[0]) {
        realm_warn("runtimes: no runtimes/ directory found (--runtimes-dir); Node and Python "
                   "functions cannot start");
        snprintf(s->runtimes_dir, sizeof(s->runtimes_dir), "/nonexistent");
        return;
    }
    char nm[4200];
    snprintf(nm, sizeof(nm), "%s/../node_modules", s->runtimes_dir);
    if (is_dir(nm) && realpath(nm, s->node_modules_dir) == NULL) s->node_modules_dir[0] = '\0';
}

/*
 * Which runtimes this server can run, with their exact versions: probed once
 * here (runtimes/runtimes.h), logged, and kept as {name: version} for
 * `metadata` (null: the function brings its own bootstrap).
 */
static void probe_runtimes(realm_server_t *s)
{
    realm_runtimes_probe(s->runtimes_dir);
    s->runtimes_json = json_object();
    char missing[1024] = "";
    size_t ml = 0;
    const realm_runtimes_entry_t *rt;
    for (size_t i = 0; (rt = realm_runtimes_at(i)) != NULL; i++) {
        const char *v = realm_runtimes_version(rt);
        if (v) {
            json_object_set_new(s->runtimes_json, rt->name, v[0] ? json_string(v) : json_null());
        } else if (ml < sizeof(missing)) {
            int k = snprintf(missing + ml, sizeof(missing) - ml, "%s%s (%s)", ml ? "; " : "",
                             rt->name, realm_runtimes_why(rt));
            if (k > 0) ml += (size_t)k;
        }
    }
    char *have = json_dumps(s->runtimes_json, JSON_COMPACT);
    realm_info("runtimes: %s", have ? have : "{}");
    free(have);
    if (missing[0]) realm_info("runtimes not available here: %s", missing);
}

static void on_function_changed(const char *tenant, const char *name, int is_deleted, void *data)
{
    realm_server_t *s = data;
    realm_exec_forget(s->exec, tenant, name);
    if (!s->invoker) return;
    if (is_deleted)
        realm_invoker_forget(s->invoker, tenant, name);
    else
        realm_invoker_provision(s->invoker, name);
}

static void *private_listen(realm_env_t *env, int fd, void *data)
{
    realm_server_t *s = data;
    return realm_runtime_private_listen(env, fd, s->runtime);
}

static void private_close(void *handle, void *data)
{
    realm_server_t *s = data;
    realm_runtime_private_close(handle, s->runtime);
}

/* A deleted or replaced function's last environment ended: its package may go now. */
static void code_released(void *data)
{
    realm_server_t *s = data;
    if (s->control && !s->is_closing) realm_control_sweep(s->control);
}

static void setup_exec(realm_server_t *s)
{
    const realm_config_t *cfg = s->cfg;
    realm_sandbox_probe_init(&s->probe);
    realm_info("%s", s->probe.summary);
    if (!s->probe.is_bwrap_usable)
        realm_warn("sandbox: bubblewrap cannot run here (%s): functions cannot be invoked",
                   s->probe.bwrap_error ? s->probe.bwrap_error : "not found");
    if (!s->probe.cg[REALM_SANDBOX_CG_MEMORY].dir)
        realm_warn("sandbox: no memory cgroup: memory limits are not enforced");
    if (!s->probe.cg[REALM_SANDBOX_CG_MEMORY].dir && !s->probe.cg[REALM_SANDBOX_CG_PIDS].dir &&
        !s->probe.cg[REALM_SANDBOX_CG_CPU].dir)
        realm_warn("sandbox: no usable cgroup: the runtime API cannot tell environments apart "
                   "(every runtime connection is refused)");
    find_runtimes(s);
    probe_runtimes(s);
    find_spawn_exe(s->spawn_exe, sizeof(s->spawn_exe));
    snprintf(s->logs_dir, sizeof(s->logs_dir), "%s/logs", cfg->data_dir);
    realm_exec_net_t net = strcmp(cfg->env_network, "none") == 0   ? REALM_EXEC_NET_NONE
                           : strcmp(cfg->env_network, "host") == 0 ? REALM_EXEC_NET_HOST
                                                                   : REALM_EXEC_NET_PRIVATE;
    const char *slirp = access("/usr/bin/slirp4netns", X_OK) == 0 ? "/usr/bin/slirp4netns" : NULL;
    if (net == REALM_EXEC_NET_PRIVATE && !slirp)
        realm_warn("sandbox: slirp4netns not found: functions get no outbound network");
    if (net == REALM_EXEC_NET_HOST)
        realm_warn("sandbox: --env-network=host: functions share the host's network and can "
                   "reach its loopback services (local development only)");
    unsigned long uid_first = 0, uid_last = 0;
    parse_uid_range(cfg->env_host_uids, &uid_first, &uid_last); /* checked at start */
    s->scratch_dir[0] = '\0';
    if (cfg->env_tmp_disk && realm_sandbox_scratch_usable()) {
        char dir[4096];
        snprintf(dir, sizeof(dir), "%s/scratch", cfg->data_dir);
        if (mkdir_p(dir) == 0 && realpath(dir, s->scratch_dir)) {
            clean_scratch(s->scratch_dir);
        } else {
            s->scratch_dir[0] = '\0';
        }
    }
    if (geteuid() == 0 && !s->scratch_dir[0])
        realm_warn("sandbox: /tmp of environments is a tmpfs: it counts toward their memory");
    if (geteuid() == 0)
        realm_info("sandbox: environments run as host uids %lu-%lu, network %s, /tmp on %s",
                   uid_first, uid_last, cfg->env_network, s->scratch_dir[0] ? "disk" : "tmpfs");
    realm_exec_opts_t xo = {
        .loop = s->loop,
        .probe = &s->probe,
        .self_exe = s->spawn_exe,
        .runtimes_dir = s->runtimes_dir,
        .node_modules_dir = s->node_modules_dir[0] ? s->node_modules_dir : NULL,
        .logs_dir = s->logs_dir,
        .region = cfg->region,
        .concurrency_limit = cfg->concurrency_limit,
        .queue_depth = cfg->invoke_queue_depth,
        .idle_ms = cfg->env_idle_ms,
        .init_timeout_ms = cfg->env_init_timeout_ms,
        .tmp_mb = cfg->env_tmp_bytes / (1024 * 1024),
        .pids_max = cfg->env_pids_max,
        .log_file_bytes = cfg->log_file_bytes,
        .network = net,
        .slirp_path = slirp,
        .host_uid_first = (uint32_t)uid_first,
        .host_uid_last = (uint32_t)uid_last,
        .scratch_dir = s->scratch_dir[0] ? s->scratch_dir : NULL,
        .private_listen = private_listen,
        .private_close = private_close,
        .code_released = code_released,
        .hook_data = s,
    };
    s->exec = realm_exec_new(&xo);
    realm_ws_config_t ws = {.max_message_bytes = cfg->max_message_bytes,
                            .max_send_queue_bytes = cfg->max_send_queue_bytes,
                            .ping_interval_ms = 0};
    s->runtime = realm_runtime_new(s->loop, s->exec, s->http[L_RUNTIME], &ws);
    realm_control_set_change_cb(s->control, on_function_changed, s);
    realm_control_set_exec(s->control, s->exec);
}

/* ---- shutdown ---- */

static size_t open_connections(realm_server_t *s)
{
    size_t n = 0;
    /* Runtime connections serve the others' invocations; they go at the end. */
    for (int i = 0; i < L_COUNT; i++)
        if (s->listeners[i] && i != L_RUNTIME) n += realm_listener_open_cnt(s->listeners[i]);
    return n;
}

static void close_idle(realm_conn_t *c, void *data)
{
    (void)data;
    realm_http_conn_close_when_idle(c);
}

static void close_now(realm_conn_t *c, void *data)
{
    (void)data;
    realm_conn_close(c, 0);
}

static void finish_shutdown(realm_server_t *s)
{
    for (int i = 0; i < L_COUNT; i++)
        realm_listener_each(s->listeners[i], close_now, NULL);
    uv_timer_stop(&s->shutdown_timer);
    uv_close((uv_handle_t *)&s->shutdown_timer, NULL);
    uv_close((uv_handle_t *)&s->trim_timer, NULL);
    uv_close((uv_handle_t *)&s->sigint, NULL);
    uv_close((uv_handle_t *)&s->sigterm, NULL);
    /* Environments go too, or their handles would keep the loop running. */
    realm_exec_shutdown(s->exec);
    realm_info("shutdown complete");
}

static void on_shutdown_tick(uv_timer_t *t)
{
    realm_server_t *s = t->data;
    uint64_t elapsed = uv_now(s->loop) - s->shutdown_started;
    if (!s->grace_over && (elapsed >= s->cfg->shutdown_grace_ms || s->signals > 1)) {
        s->grace_over = 1;
        if (realm_dispatch_in_flight(s->dispatch) > 0)
            realm_warn("grace period over: cancelling %zu calls in flight",
                       realm_dispatch_in_flight(s->dispatch));
        realm_client_cancel_all(s->client);
    }
    if (open_connections(s) == 0 || elapsed >= s->cfg->shutdown_grace_ms + CLOSE_HANDSHAKE_MS) {
        finish_shutdown(s);
    }
}

void realm_server_shutdown(realm_server_t *s)
{
    s->signals++;
    if (s->is_shutting_down) return;
    s->is_shutting_down = 1;
    s->shutdown_started = uv_now(s->loop);
    realm_info("shutting down: no new connections; %zu calls in flight get up to %llu ms",
               realm_dispatch_in_flight(s->dispatch),
               (unsigned long long)s->cfg->shutdown_grace_ms);
    for (int i = 0; i < L_COUNT; i++) {
        realm_listener_close(s->listeners[i], NULL);
        realm_http_server_drain(s->http[i]);
    }
    realm_admit_drain(realm_authn_admit(s->authn));
    realm_client_drain(s->client);
    if (s->invoker) realm_invoker_drain(s->invoker);
    /* HTTP connections (not the upgraded ones) finish their request and close. */
    for (int i = 0; i < L_COUNT; i++)
        realm_http_server_each(s->http[i], close_idle, NULL);
    uv_timer_start(&s->shutdown_timer, on_shutdown_tick, 0, SHUTDOWN_POLL_MS);
}

static void on_signal(uv_signal_t *h, int signum)
{
    realm_server_t *s = h->data;
    realm_info("received %s", signum == SIGINT ? "SIGINT" : "SIGTERM");
    realm_server_shutdown(s);
}

/* ---- life ---- */

void realm_server_db_shown(const char *db, char *out, size_t len)
{
    /* postgresql://USER:PASSWORD@HOST/DB: the password is left out. */
    const char *scheme = strstr(db, "://");
    const char *at = scheme ? strchr(scheme + 3, '@') : NULL;
    const char *slash = scheme ? strchr(scheme + 3, '/') : NULL;
    const char *colon = scheme ? memchr(scheme + 3, ':', at ? (size_t)(at - scheme - 3) : 0) : NULL;
    if (at && (!slash || at < slash) && colon)
        snprintf(out, len, "%.*s%s", (int)(colon - db), db, at);
    else
        snprintf(out, len, "%s", db);
    char *q = strchr(out, '?'); /* options may hold a password too */
    if (q) *q = '\0';
}

/* Opens the registry and the package store the control API and the invoker share. */
static int open_stores(realm_server_t *s, char *err, size_t err_len)
{
    const realm_config_t *cfg = s->cfg;
    char path[4096];
    snprintf(path, sizeof(path), "%s/packages", cfg->data_dir);
    s->store = realm_pkg_store_open(path, err, err_len);
    if (!s->store) return -1;
    if (realm_store_is_pg(cfg->db)) {
        snprintf(path, sizeof(path), "%s", cfg->db);
    } else if (strcmp(cfg->db, "sqlite") == 0) {
        snprintf(path, sizeof(path), "%s/realm.db", cfg->data_dir);
    } else {
        snprintf(err, err_len, "--db: '%.200s' is neither sqlite nor a postgresql:// URL", cfg->db);
        return -1;
    }
    realm_registry_opts_t opts = {.region = cfg->region,
                                  .account_id = cfg->account_id,
                                  .concurrency_limit = cfg->concurrency_limit,
                                  .max_zip_bytes = cfg->max_code_zip_bytes,
                                  .max_unzipped_bytes = cfg->max_code_unzipped_bytes};
    s->reg = realm_registry_open(path, &opts, err, err_len);
    if (!s->reg) return -1;
    char shown[512];
    realm_server_db_shown(cfg->db, shown, sizeof(shown));
    realm_info("storage: %s%s%s", shown, realm_store_is_pg(cfg->db) ? "" : " in ",
               realm_store_is_pg(cfg->db) ? "" : cfg->data_dir);
    return 0;
}

int realm_server_new(uv_loop_t *loop, const realm_config_t *cfg, realm_server_t **out, char *err,
                     size_t err_len)
{
    unsigned long uid_first, uid_last;
    if (parse_uid_range(cfg->env_host_uids, &uid_first, &uid_last) != 0) {
        snprintf(err, err_len,
                 "--env-host-uids: '%s' is not FIRST-LAST (1 <= FIRST <= LAST <= 4294967294)",
                 cfg->env_host_uids);
        return -1;
    }
    if (mkdir_p(cfg->data_dir) != 0) {
        snprintf(err, err_len, "data dir %s: %s", cfg->data_dir, strerror(errno));
        return -1;
    }
    realm_server_t *s = realm_calloc(1, sizeof(*s));
    s->loop = loop;
    s->cfg = cfg;
    /* The server's own handles first: realm_server_free closes them whatever else was made. */
    uv_timer_init(loop, &s->shutdown_timer);
    s->shutdown_timer.data = s;
    uv_timer_init(loop, &s->trim_timer);
    s->trim_timer.data = s;
    uv_signal_init(loop, &s->sigint);
    uv_signal_init(loop, &s->sigterm);
    s->sigint.data = s->sigterm.data = s;
    plan_fds(s);
    s->metrics = realm_metrics_new();
    realm_metric_family_t *bi =
        realm_metrics_family(s->metrics, REALM_METRIC_GAUGE, "realm_build_info",
                             "Realm version (always 1)", "version", NULL, 0);
    const char *ver[] = {REALM_VERSION};
    realm_metric_set(realm_metrics_child(bi, ver), 1);
    realm_metric_family_t *req_fam = realm_metrics_family(
        s->metrics, REALM_METRIC_COUNTER, "realm_http_requests_total",
        "HTTP responses sent, by listener and status class", "listener,class", NULL, 0);
    s->dispatch = realm_dispatch_new(loop, s->metrics);

    for (int i = 0; i < L_COUNT; i++) {
        setup_surface(s, i);
        static const char *const classes[] = {"", "1xx", "2xx", "3xx", "4xx", "5xx"};
        for (int c = 1; c <= 5; c++) {
            const char *labels[] = {listener_names[i], classes[c]};
            s->surfaces[i].by_class[c] = realm_metrics_child(req_fam, labels);
        }
    }
    realm_client_config_t ccfg = {
        .ws = {.max_message_bytes = cfg->max_message_bytes,
               .max_send_queue_bytes = cfg->max_send_queue_bytes,
               .ping_interval_ms = cfg->ws_ping_interval_ms},
        .max_calls_per_connection = cfg->max_calls_per_connection,
        .auth_timeout_ms = AUTH_TIMEOUT_MS,
    };
    s->builtins = (realm_builtins_ctx_t){.loop = loop,
                                         .start_ns = uv_hrtime(),
                                         .connections = client_connections,
                                         .cluster = cluster_health,
                                         .data = s};
    realm_builtins_register(s->dispatch, &s->builtins);
    s->authn = realm_authn_new(loop, cfg, err, err_len);
    if (!s->authn) goto fail;
    ccfg.authn = s->authn;
    realm_dialect_attach(s->http[L_CONTROL], s->authn);
    realm_http_server_route(s->http[L_CONTROL], "GET", "/healthz", 1, on_healthz, s);
    realm_http_server_set_guard(s->http[L_METRICS], realm_authn_metrics_guard, s->authn);
    s->client = realm_client_new(loop, s->dispatch, s->metrics, s->http[L_CLIENT], &ccfg);
    if (open_stores(s, err, err_len) != 0) goto fail;
    s->ra = realm_registry_async_new(loop, s->reg, REGISTRY_MAX_JOBS, REGISTRY_POLL_MS);
    if (!s->ra) {
        snprintf(err, err_len, "cannot start the registry's worker thread");
        goto fail;
    }
    s->control = realm_control_new(loop, s->http[L_CONTROL], cfg, s->ra, s->store);
    setup_exec(s);
    realm_dialect_routes(s->http[L_CONTROL], s->exec);
    s->builtins.runtimes = s->runtimes_json; /* probed by setup_exec */
    s->generate = realm_generate_new(cfg, s->exec, s->metrics, s->dispatch, err, err_len);
    if (!s->generate) goto fail;
    if (realm_invoker_check_provisioned(cfg->provisioned, err, err_len) != 0) goto fail;
    realm_invoker_opts_t io = {
        .loop = loop, .cfg = cfg, .ra = s->ra, .store = s->store, .exec = s->exec};
    s->invoker = realm_invoker_new(&io, err, err_len);
    if (!s->invoker) goto fail;
    realm_invoke_routes(s->invoker, s->http[L_CONTROL]);
    s->functions = realm_functions_new(s->dispatch, s->invoker);
    realm_http_server_route(s->http[L_METRICS], "GET", "/metrics", 1, on_metrics, s);
    realm_http_server_route(s->http[L_METRICS], "GET", "/health", 1, on_health, s);

    realm_metrics_add_collector(s->metrics, collect_listeners, s);
    realm_metrics_add_collector(s->metrics, collect_exec, s);
    realm_metrics_add_collector(s->metrics, realm_authn_collect, s->authn);
    realm_metrics_add_collector(s->metrics, realm_metrics_collect_process, NULL);

    for (int i = 0; i < L_COUNT; i++) {
        /* The runtime API is for environments on this machine only. */
        const char *host = i == L_RUNTIME ? "127.0.0.1" : cfg->host;
        int rc = realm_listener_new(loop, listener_names[i], host, listener_port(cfg, i), on_conn,
                                    &s->surfaces[i], &s->listeners[i]);
        if (rc != 0) {
            snprintf(err, err_len, "%s listener: %s:%d: %s", listener_names[i], host,
                     listener_port(cfg, i), uv_strerror(rc));
            s->listeners[i] = NULL;
            goto fail;
        }
        limit_listener(s, i);
    }
    realm_exec_set_runtime_port(s->exec, realm_listener_port(s->listeners[L_RUNTIME]));
    realm_node_config_t nc = {.cfg = cfg,
                              .client_port = realm_listener_port(s->listeners[L_CLIENT]),
                              .state = node_state,
                              .ud = s,
                              .ra = s->ra,
                              .invoker = s->invoker,
                              .exec = s->exec,
                              .generate = s->generate,
                              .metrics = s->metrics};
    if (realm_node_open(loop, &nc, &s->node, err, err_len) != 0) goto fail;
    realm_invoker_begin(s->invoker);
    /* The trim timer never keeps the loop alive on its own. */
    realm_mem_idle_init(&s->mem, TRIM_BUSY_TICKS);
    uv_timer_start(&s->trim_timer, on_tick, TRIM_TICK_MS, TRIM_TICK_MS);
    uv_unref((uv_handle_t *)&s->trim_timer);
    uv_signal_start(&s->sigint, on_signal, SIGINT);
    uv_signal_start(&s->sigterm, on_signal, SIGTERM);
    if (strcmp(cfg->host, "127.0.0.1") != 0 && strcmp(cfg->host, "::1") != 0 &&
        strcmp(cfg->host, "localhost") != 0) {
        realm_warn("listening on %s: every surface is reachable from other machines", cfg->host);
        if (!cfg->auth)
            realm_warn("AUTHENTICATION IS OFF on a non-loopback address: anyone who can reach "
                       "%s can deploy and run code here (start with --auth)",
                       cfg->host);
    }
    if (cfg->auth)
        realm_info("authentication on: API keys on the client WebSocket, SigV4 on "
                   "the control API");
    *out = s;
    return 0;
fail:
    realm_server_free(s);
    return -1;
}

void realm_server_print_listeners(const realm_server_t *s, FILE *out)
{
    for (int i = 0; i < L_COUNT; i++) {
        char url[300];
        listener_url(s, i, i == L_METRICS ? "/metrics" : "", url, sizeof(url));
        fprintf(out, "listening %s %s\n", listener_names[i], url);
    }
    fflush(out);
}

int realm_server_run(realm_server_t *s)
{
    uv_run(s->loop, UV_RUN_DEFAULT);
    return 0;
}

static void close_handle(uv_handle_t *h)
{
    if (!uv_is_closing(h)) uv_close(h, NULL);
}

/*
 * Teardown, second step: the execution engine is gone, so no invocation end
 * can reach the invoker any more. What is left closes with callbacks (the
 * invoker, the client surface, the dispatcher free themselves on a later
 * turn of the loop run in realm_server_free) or is freed here.
 */
static void on_exec_closed(void *data)
{
    realm_server_t *s = data;
    s->exec = NULL;
    realm_invoker_close(s->invoker, NULL, NULL);
    realm_runtime_free(s->runtime);
    realm_sandbox_probe_dispose(&s->probe);
    realm_client_close(s->client, NULL, NULL);
    realm_control_free(s->control);
    for (int i = 0; i < L_COUNT; i++)
        realm_http_server_free(s->http[i]);
    realm_functions_free(s->functions);
    realm_generate_free(s->generate);
    realm_dispatch_close(s->dispatch, NULL, NULL);
}

/*
 * Teardown, first step: the registry's worker is gone (jobs not started were
 * cancelled, their callbacks have run), so no resolution can start an
 * invocation any more; now the engine closes.
 */
static void on_registry_stopped(void *data)
{
    realm_server_t *s = data;
    if (s->exec) {
        realm_exec_close(s->exec, on_exec_closed, s);
    } else {
        on_exec_closed(s);
    }
}

/*
 * Teardown, step zero: the key store's worker is gone (lookups not started
 * were answered SHUTTING_DOWN while the surfaces still stood); now the
 * registry's worker.
 */
static void on_authn_stopped(void *data)
{
    realm_server_t *s = data;
    if (s->ra)
        realm_registry_async_close(s->ra, on_registry_stopped, s);
    else
        on_registry_stopped(s);
}

/*
 * Safe on a server realm_server_new gave up on halfway: everything not made
 * is NULL. Everything that closes on the loop is closed first (the execution
 * engine first: its end settles invocations and queued events, then
 * on_exec_closed closes the rest); the one loop run below then delivers
 * every close callback, and what is left is freed.
 */
void realm_server_free(realm_server_t *s)
{
    if (!s) return;
    s->is_closing = 1;
    for (int i = 0; i < L_COUNT; i++)
        if (s->listeners[i]) realm_listener_free(s->listeners[i]);
    close_handle((uv_handle_t *)&s->shutdown_timer);
    close_handle((uv_handle_t *)&s->trim_timer);
    close_handle((uv_handle_t *)&s->sigint);
    close_handle((uv_handle_t *)&s->sigterm);
    realm_node_close(s->node);
    s->node = NULL;
    if (s->authn)
        realm_authn_close(s->authn, on_authn_stopped, s);
    else
        on_authn_stopped(s);
    uv_run(s->loop, UV_RUN_DEFAULT);
    realm_registry_async_free(s->ra);
    realm_registry_close(s->reg);
    realm_pkg_store_close(s->store);
    realm_authn_free(s->authn);
    realm_metrics_free(s->metrics);
    json_decref(s->runtimes_json);
    free(s);
}
