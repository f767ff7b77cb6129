/*
 * env.c - execution environments: spawning one for a pool (the runtime
 * table's argv, binds and environment; the sandbox; a private network),
 * its states and timer, and its end (see internal.h for the states).
 *
 * LIFETIME: an environment is reference-counted: its timer handle holds one
 * reference (dropped in the close callback after the exit), each runtime
 * API connection tagged with it another (realm_exec_env_for_fd).
 * THREADS: loop thread only.
 */
#include "exec/internal.h"

#include "base/alloc.h"
#include "base/buf.h"
#include "base/log.h"
#include "runtimes/runtimes.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* END and REPORT lines once an invocation is over in its environment. */
void realm_exec_report(realm_env_t *env, realm_inv_t *inv)
{
    pool_t *p = env->pool ? env->pool : inv->pool;
    double ms = (double)(uv_hrtime() - inv->started_ns) / 1e6;
    uint64_t peak = env->sp ? realm_sandbox_group_memory_peak(realm_spawn_group(env->sp)) : 0;
    /* What the runtime wrote before it answered may still wait in the pipes
     * (the answer's socket can be read first in the same loop turn): it
     * belongs before END. */
    if (env->sp) {
        realm_inv_t *was = env->inv;
        env->inv = inv; /* on_spawn_output logs to env->inv */
        realm_spawn_drain(env->sp);
        env->inv = was;
    }
    realm_exec_platform_line(p, inv, "END RequestId: %s", inv->request_id);
    realm_exec_platform_line(
        p, inv,
        "REPORT RequestId: %s\tDuration: %.2f ms\tBilled Duration: %.0f ms\tMemory Size: "
        "%" PRIu64 " MB\tMax Memory Used: %" PRIu64 " MB",
        inv->request_id, ms, ms < 1 ? 1 : ms + 0.5, p ? p->memory_mb : 0,
        (peak + (1024 * 1024) - 1) / (1024 * 1024)); /* whole MB, rounded up */
}

/* ---- environments ---- */

static void env_release(realm_env_t *env)
{
    free(env->init_error);
    free(env);
}

void realm_env_ref(realm_env_t *env)
{
    env->refs++;
}

void realm_env_unref(realm_env_t *env)
{
    if (--env->refs == 0) env_release(env);
}

static void on_env_timer_closed(uv_handle_t *h)
{
    realm_env_t *env = h->data;
    realm_exec_t *x = env->x; /* outlives its environments' timers */
    realm_env_unref(env);
    x->n_timers--;
    realm_exec_close_maybe(x);
}

static void pool_count(pool_t *p, env_state_t s, int delta)
{
    size_t *c = s == ENV_STARTING ? &p->n_starting
                : s == ENV_IDLE   ? &p->n_idle
                : s == ENV_BUSY   ? &p->n_busy
                                  : NULL;
    if (c) *c = (size_t)((long)*c + delta);
}

void realm_exec_env_set_state(realm_env_t *env, env_state_t s)
{
    pool_t *p = env->pool;
    if (p) {
        pool_count(p, env->state, -1);
        if (env->state == ENV_RESTING && !env->is_slow) p->n_resting_fresh--;
        pool_count(p, s, +1);
        if (s == ENV_RESTING) p->n_resting_fresh++;
    }
    env->is_slow = 0;
    env->state = s;
}

/* Takes the environment off its pool (it is going away). */
static void env_detach(realm_env_t *env)
{
    pool_t *p = env->pool;
    if (!p) return;
    realm_exec_env_set_state(env, ENV_STOPPING);
    if (env->prev)
        env->prev->next = env->next;
    else
        p->envs = env->next;
    if (env->next) env->next->prev = env->prev;
    env->prev = env->next = NULL;
    p->n_envs--;
    env->x->n_envs--;
    env->pool = NULL;
    env->x->st.stopped_total++;
    if (env->lease && env->x->leases.drop) env->x->leases.drop(env->x->leases_ud, env->lease);
    env->lease = 0;
    if (p->is_retired && !p->envs && !p->q_head && env->x->o.code_released)
        env->x->o.code_released(env->x->o.hook_data);
    /* A waiting `next` hears that no work will come (its connection can close). */
    realm_env_next_cb cb = env->next_cb;
    void *data = env->next_data;
    env->next_cb = NULL;
    env->next_data = NULL;
    if (cb) cb(env, NULL, data);
}

static void env_unlink_all(realm_env_t *env)
{
    realm_exec_t *x = env->x;
    if (env->all_prev)
        env->all_prev->all_next = env->all_next;
    else if (x->all == env)
        x->all = env->all_next;
    if (env->all_next) env->all_next->all_prev = env->all_prev;
    env->all_prev = env->all_next = NULL;
}

static void exit_text(char *out, size_t n, int64_t status, int sig)
{
    /* bwrap, as pid 1 of the sandbox, reports a runtime killed by a signal as 128 + signal. */
    if (sig == 0 && status > 128 && status < 128 + 32) sig = (int)(status - 128);
    if (sig > 0) {
        const char *name = sig == 9    ? "killed"
                           : sig == 11 ? "segmentation fault"
                           : sig == 6  ? "aborted"
                           : sig == 15 ? "terminated"
                                       : NULL;
        if (name)
            snprintf(out, n, "Runtime exited with error: signal: %s", name);
        else
            snprintf(out, n, "Runtime exited with error: signal: %d", sig);
    } else if (status == 0) {
        snprintf(out, n, "Runtime exited without providing a reason");
    } else {
        snprintf(out, n, "Runtime exited with error: exit status %" PRId64, status);
    }
}

static void on_spawn_exit(realm_spawn_t *sp, int64_t status, int sig, int oom, void *data)
{
    realm_env_t *env = data;
    pool_t *p = env->pool;
    realm_exec_t *x = env->x;
    char why[160];
    exit_text(why, sizeof(why), status, sig);
    int was_starting = env->state == ENV_STARTING;
    realm_inv_t *inv = env->inv;
    if (!inv && was_starting && p && p->q_head && !env->stop_reason[0]) {
        /* Init failed: the oldest waiting invocation hears why, as on Lambda. */
        inv = p->q_head;
        realm_exec_q_remove(p, inv);
        inv->env = env;
        inv->started_ns = uv_hrtime();
    }
    /* An OOM already reported at the answer (oom_ends) is not counted again. */
    if (oom && !env->oom_reported)
        x->st.oom_total++;
    else if (!oom && !env->stop_reason[0])
        x->st.crashes_total++;
    if (was_starting && p && !env->stop_reason[0] && ++p->init_failures == PROVISION_GIVE_UP)
        realm_warn("%s:%s: %d environments in a row died during init; provisioned ones are not "
                   "restarted until the function changes",
                   p->name, p->version, PROVISION_GIVE_UP);
    if (env->stop_reason[0])
        realm_debug("environment %s stopped (%s)", env->id, env->stop_reason);
    else
        realm_info("environment %s of %s exited: %s%s", env->id, p ? p->name : "?", why,
                   oom ? " (out of memory)" : "");
    if (p) realm_exec_platform_line(p, inv, "%s%s", why, oom ? " (memory limit)" : "");
    env_detach(env);
    uv_timer_stop(&env->timer);
    if (inv) {
        env->inv = NULL;
        if (env->init_error) {
            realm_exec_inv_finish(
                inv, REALM_INV_FN_ERROR, env->init_error, env->init_error_len,
                env->init_error_type[0] ? env->init_error_type : "Runtime.InitError", NULL);
        } else if (oom) {
            realm_exec_inv_fail(inv, "Runtime.OutOfMemory", "%s", why);
        } else {
            realm_exec_inv_fail(inv, "Runtime.ExitError", "%s", why);
        }
    }
    if (env->private_listener) {
        x->o.private_close(env->private_listener, x->o.hook_data);
        env->private_listener = NULL;
    }
    realm_netstack_free(env->netstack);
    env->netstack = NULL;
    realm_spawn_free(sp);
    env->sp = NULL;
    env_unlink_all(env);
    if (!env->timer_closed) {
        env->timer_closed = 1;
        uv_close((uv_handle_t *)&env->timer, on_env_timer_closed);
    }
    if (p && !x->is_freeing) realm_exec_pump(p);
}

static void on_spawn_output(realm_spawn_t *sp, int stream, const char *bytes, size_t len,
                            void *data)
{
    (void)sp;
    (void)stream;
    realm_env_t *env = data;
    if (env->inv) realm_exec_inv_log(env->inv, bytes, len);
    if (env->pool) realm_fnlog_write(env->pool->log, bytes, len);
}

static void on_netstack_ready(realm_netstack_t *ns, int ok, void *data)
{
    (void)ns;
    realm_env_t *env = data;
    if (!ok) realm_error("environment %s: its network stack failed: no network", env->id);
    if (env->sp) realm_spawn_go(env->sp);
}

/* The sandbox is up and waits: its runtime API goes inside its namespace,
 * and with a private network, slirp4netns is attached before it runs. */
static int on_spawn_ready(realm_spawn_t *sp, int pid, void *data)
{
    (void)sp;
    realm_env_t *env = data;
    realm_exec_t *x = env->x;
    int fd = -1;
    int rc = realm_sandbox_netns_listen(pid, REALM_EXEC_PRIVATE_PORT, &fd);
    if (rc != 0) {
        realm_error("environment %s: runtime API in its network namespace: %s", env->id,
                    strerror(-rc));
        return 0; /* it will fail to connect and exit; its invocation hears why */
    }
    pool_t *p = env->pool;
    int wants_stack = p && p->network == REALM_EXEC_NET_PRIVATE && x->o.slirp_path;
    /* A socket in the namespace, for the stack to see when `lo` is up. */
    int lo_fd = wants_stack ? fcntl(fd, F_DUPFD_CLOEXEC, 0) : -1;
    env->private_listener = x->o.private_listen(env, fd, x->o.hook_data);
    if (!wants_stack) return 0;
    if (lo_fd < 0) {
        realm_error("environment %s: network stack: %s", env->id, strerror(errno));
        return 0;
    }
    realm_netstack_opts_t no = {.self_exe = x->self_exe,
                                .slirp_path = x->o.slirp_path,
                                .pid = pid,
                                .uid = p->host_uid,
                                .gid = p->host_uid,
                                .lo_fd = lo_fd};
    char err[256];
    if (realm_netstack_start(x->o.loop, &no, on_netstack_ready, env, &env->netstack, err,
                             sizeof(err)) != 0) {
        close(lo_fd);
        realm_error("environment %s: network stack: %s", env->id, err);
        return 0;
    }
    return 1; /* on_netstack_ready lets it go */
}

/* Kills the environment; its end comes through on_spawn_exit. */
void realm_exec_env_stop(realm_env_t *env, const char *why)
{
    if (env->state == ENV_STOPPING && !env->pool) return;
    snprintf(env->stop_reason, sizeof(env->stop_reason), "%s", why);
    pool_t *p = env->pool;
    env_detach(env);
    uv_timer_stop(&env->timer);
    if (env->sp) realm_spawn_kill(env->sp);
    if (p && !env->x->is_freeing) realm_exec_pump(p);
}

void realm_exec_on_env_timer(uv_timer_t *t)
{
    realm_env_t *env = t->data;
    realm_exec_t *x = env->x;
    switch (env->state) {
    case ENV_STARTING: {
        pool_t *p = env->pool;
        realm_inv_t *inv = p ? p->q_head : NULL;
        if (inv) {
            realm_exec_q_remove(p, inv);
            inv->started_ns = uv_hrtime();
            realm_exec_inv_fail(inv, "Runtime.InitError",
                                "Runtime did not ask for an invocation within %.2f seconds",
                                (double)x->o.init_timeout_ms / 1000.0);
        }
        realm_exec_env_stop(env, "init timeout");
        break;
    }
    case ENV_BUSY: {
        realm_inv_t *inv = env->inv;
        pool_t *p = env->pool;
        x->st.timeouts_total++;
        env->inv = NULL;
        if (inv) {
            realm_exec_report(env, inv);
            realm_exec_inv_fail(inv, "Sandbox.Timedout", "Task timed out after %.2f seconds",
                                (double)(p ? p->timeout_s : 0));
        }
        realm_exec_env_stop(env, "timeout");
        break;
    }
    case ENV_RESTING:
        if (env->is_slow) {
            /* It never asked again: it holds a slot for nothing. */
            realm_exec_env_stop(env, "did not ask for the next invocation");
        } else if (env->pool) {
            /* Past its grace: no longer counted on to take the queue. */
            env->pool->n_resting_fresh--;
            env->is_slow = 1;
            uv_timer_start(&env->timer, realm_exec_on_env_timer, env->pool->timeout_s * 1000 + 1000,
                           0);
            realm_exec_pump(env->pool);
        }
        break;
    case ENV_IDLE:
        if (env->pool && env->pool->n_envs <= env->pool->provisioned) break;
        realm_exec_env_stop(env, "idle");
        break;
    default:
        break;
    }
}

static void env_push(char ***v, size_t *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void env_push(char ***v, size_t *n, const char *fmt, ...)
{
    *v = realm_realloc(*v, (*n + 2) * sizeof(char *));
    va_list ap;
    va_start(ap, fmt);
    realm_buf_t b;
    realm_buf_init(&b);
    realm_buf_vappendf(&b, fmt, ap);
    va_end(ap);
    (*v)[(*n)++] = realm_buf_steal(&b, NULL);
    (*v)[*n] = NULL;
}

/* Starts an environment of p; 0, or -1 with why in err (also logged). */
int realm_exec_env_spawn(pool_t *p, int64_t lease, char *err, size_t err_len)
{
    realm_exec_t *x = p->x;
    /* How it starts: the runtime table's row (runtimes/runtimes.h). */
    const realm_runtimes_entry_t *rt = realm_runtimes_find(p->runtime);
    if (!rt) rt = realm_runtimes_fallback();
    /* Never another interpreter than the row's: one this server does not
     * have (a function created before it went away) does not start. */
    if (!realm_runtimes_version(rt)) {
        snprintf(err, err_len, "runtime %s is not installed on this server (%s)", rt->name,
                 realm_runtimes_why(rt));
        realm_error("environment of %s: %s", p->name, err);
        return -1;
    }
    char rdir[4200] = "", ldir[4200] = "";
    /* The function's own binds, then the runtime's: pairs, NULL-terminated. */
    const char *binds[2 * MAX_BINDS + 5] = {NULL};
    size_t nb = 0;
    for (size_t i = 0; p->binds && p->binds[i] && nb < 2 * MAX_BINDS; i++)
        binds[nb++] = p->binds[i];
    if (rt->dir) snprintf(rdir, sizeof(rdir), "%s/%s", x->runtimes_dir, rt->dir);
    if (rt->lang) {
        /* The interpreter's own tree (runtimes/lang/...), at /var/lang as on AWS. */
        snprintf(ldir, sizeof(ldir), "%s/%s", x->runtimes_dir, rt->lang);
        binds[nb++] = ldir;
        binds[nb++] = REALM_RUNTIMES_LANG_DIR;
    }
    if (rt->binds_node_modules && x->node_modules_dir) {
        binds[nb++] = x->node_modules_dir;
        binds[nb++] = "/var/runtime/node_modules";
    }

    realm_env_t *env = realm_calloc(1, sizeof(*env));
    env->refs = 1; /* the timer handle's */
    env->x = x;
    snprintf(env->id, sizeof(env->id), "env-%d-%" PRIu64, (int)getpid(), ++x->env_seq);

    char **ev = NULL;
    size_t en = 0;
    env_push(&ev, &en, "PATH=%s/usr/local/bin:/usr/bin:/bin:/opt/bin",
             rt->lang ? REALM_RUNTIMES_LANG_DIR "/bin:" : "");
    env_push(&ev, &en, "LANG=C.UTF-8");
    env_push(&ev, &en, "TZ=:UTC");
    env_push(&ev, &en, "LD_LIBRARY_PATH=/var/task:/var/task/lib:/opt/lib");
    int is_private = p->network != REALM_EXEC_NET_HOST && x->o.private_listen;
    int has_stack = is_private && p->network == REALM_EXEC_NET_PRIVATE && x->o.slirp_path;
    env_push(&ev, &en, "AWS_LAMBDA_RUNTIME_API=127.0.0.1:%d",
             is_private ? REALM_EXEC_PRIVATE_PORT : x->o.runtime_port);
    env_push(&ev, &en, "_HANDLER=%s", p->handler ? p->handler : "");
    env_push(&ev, &en, "LAMBDA_TASK_ROOT=/var/task");
    env_push(&ev, &en, "LAMBDA_RUNTIME_DIR=/opt");
    env_push(&ev, &en, "AWS_EXECUTION_ENV=AWS_Lambda_%s", p->runtime);
    env_push(&ev, &en, "AWS_LAMBDA_FUNCTION_NAME=%s", p->name);
    env_push(&ev, &en, "AWS_LAMBDA_FUNCTION_VERSION=%s", p->version);
    env_push(&ev, &en, "AWS_LAMBDA_FUNCTION_MEMORY_SIZE=%" PRIu64, p->memory_mb);
    env_push(&ev, &en, "AWS_LAMBDA_LOG_GROUP_NAME=/aws/lambda/%s", p->name);
    env_push(&ev, &en, "AWS_LAMBDA_LOG_STREAM_NAME=%s", p->log_stream);
    env_push(&ev, &en, "AWS_LAMBDA_INITIALIZATION_TYPE=on-demand");
    env_push(&ev, &en, "AWS_REGION=%s", x->region);
    env_push(&ev, &en, "AWS_DEFAULT_REGION=%s", x->region);
    for (size_t i = 0; i < sizeof(rt->env) / sizeof(rt->env[0]) && rt->env[i]; i++)
        env_push(&ev, &en, "%s", rt->env[i]);
    if (p->env)
        for (char **e = p->env; *e; e++)
            env_push(&ev, &en, "%s", *e);

    realm_spawn_opts_t so = {
        .self_exe = x->self_exe,
        .probe = x->o.probe,
        .bpf = x->bpf.data,
        .bpf_len = x->bpf.len,
        .spec =
            {
                .bwrap_features = x->o.probe->bwrap_features,
                .code_dir = p->code_dir,
                .runtime_dir = rdir[0] ? rdir : NULL,
                .tmp_mb = p->tmp_mb,
                .env = (const char *const *)ev,
                .ro_binds = binds[0] ? binds : NULL,
                /* HOST shares ours; the others get their own namespace. */
                .has_network = p->network == REALM_EXEC_NET_HOST || !is_private,
                .argv = rt->argv,
                .uid = p->uid,
                .gid = p->uid,
            },
        .limits =
            {
                .memory_bytes = p->memory_mb * 1024 * 1024,
                .pids_max = x->o.pids_max,
                .cpu_weight = p->memory_mb * 100 / 1024 ? p->memory_mb * 100 / 1024 : 1,
            },
        .name = env->id,
        .wait_ready = is_private,
        .host_uid = p->host_uid,
        .host_gid = p->host_uid,
        .scratch_dir = x->o.scratch_dir,
        .resolv_text = has_stack ? REALM_NETSTACK_RESOLV_CONF : NULL,
    };
    if (so.limits.cpu_weight > 10000) so.limits.cpu_weight = 10000;
    realm_spawn_cb_t cb = {
        .on_output = on_spawn_output, .on_exit = on_spawn_exit, .on_ready = on_spawn_ready};
    int rc = realm_spawn_start(x->o.loop, &so, &cb, env, &env->sp, err, err_len);
    for (size_t i = 0; i < en; i++)
        free(ev[i]);
    free(ev);
    if (rc != 0) {
        realm_error("environment of %s: %s", p->name, err);
        free(env);
        return -1;
    }
    uv_timer_init(x->o.loop, &env->timer);
    x->n_timers++;
    env->timer.data = env;
    env->pool = p;
    env->state = ENV_STARTING;
    env->lease = lease;
    p->n_starting++;
    env->next = p->envs;
    if (p->envs) p->envs->prev = env;
    p->envs = env;
    p->n_envs++;
    env->all_next = x->all;
    if (x->all) x->all->all_prev = env;
    x->all = env;
    x->n_envs++;
    x->st.started_total++;
    env->last_used = uv_now(x->o.loop);
    uv_timer_start(&env->timer, realm_exec_on_env_timer, x->o.init_timeout_ms, 0);
    realm_debug("environment %s of %s:%s starting", env->id, p->name, p->version);
    return 0;
}
