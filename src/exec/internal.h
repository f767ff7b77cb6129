/*
 * internal.h - what exec's files share (not part of the interface: see
 * exec.h). exec.c is the scheduler (pools, queues, invocations, the later
 * list, the engine's life), env.c the environments (spawning, states,
 * timers, exits), runtime_api.c the runtime side (what an environment's
 * runtime API calls do), fnlog.c the function logs.
 *
 * STATES of an environment:
 *   STARTING  spawned; has not asked for work yet (init timeout armed)
 *   IDLE      a `next` is waiting (idle timeout armed)
 *   BUSY      one invocation is open (its deadline armed)
 *   RESTING   answered; its next `next` has not come yet (a short grace
 *             timer: while it runs the environment counts as about to be
 *             idle, so a caller that invokes again right after its answer
 *             reuses it instead of starting another)
 *   STOPPING  killed or exited; off its pool, waiting to be reaped
 * An environment leaves its pool's counts the moment it stops, so the
 * replacement can start before the old process is reaped.
 *
 * Shared functions carry the realm_exec_ prefix; everything else is static.
 * THREADS: loop thread only.
 */
#ifndef REALM_EXEC_INTERNAL_H
#define REALM_EXEC_INTERNAL_H

#include "base/buf.h"
#include "exec/exec.h"
#include "exec/fnlog.h"
#include "exec/netstack.h"
#include "exec/spawn.h"

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define RESTING_GRACE_MS 250
#define PROVISION_GIVE_UP 3 /* init deaths in a row before provisioning stops */
#define SANDBOX_UID 993     /* sbx_user1051, as on Lambda */
#define TENANT_UID_BASE 20000
#define MAX_BINDS 8 /* a function's own read-only binds */

typedef enum { ENV_STARTING, ENV_IDLE, ENV_BUSY, ENV_RESTING, ENV_STOPPING } env_state_t;

typedef struct pool_s pool_t;

struct realm_inv_s {
    realm_exec_t *x;
    pool_t *pool;
    realm_env_t *env;         /* while bound */
    realm_inv_t *prev, *next; /* the pool's queue */
    char request_id[64];
    char *payload;
    size_t payload_len;
    char *invoked_arn;
    char *client_context;
    char trace_id[128];
    realm_inv_sink_t sink;
    void *data;
    int64_t deadline_ms;
    uint64_t queued_at, started_ns;
    realm_buf_t log; /* the tail of this invocation's log */
    /* A streamed response when the sink takes no chunks: collected here. */
    realm_buf_t streamed;
    size_t streamed_total; /* bytes streamed (also past the limit) */
    char *content_type;    /* of a streamed response; owned, or NULL */
    /* On the engine's later list (is_ending): how it ends, and the links. */
    realm_inv_t *later_prev, *later_next;
    uint64_t later_seq; /* order on the later list */
    realm_inv_status_t later_status;
    char *later_type; /* owned, or NULL */
    char *later_msg;  /* owned, or NULL */
    unsigned is_queued : 1;
    unsigned is_ending : 1; /* on the later list */
    unsigned is_streaming : 1;
    unsigned waits_past_reserved : 1; /* realm_inv_req_t's */
    unsigned is_placed : 1;           /* runs elsewhere (placed.c) */
    unsigned must_place : 1;          /* realm_inv_req_t's */
    int error_code;                   /* a FAILED end's REALM_ERR_* (0: none) */
    void *placed;                     /* the placer's pointer */
    realm_inv_t *placed_prev, *placed_next;
    const realm_exec_fn_t *placing_fn; /* during place() only */
};

struct realm_env_s {
    int refs;
    realm_exec_t *x;
    pool_t *pool;                     /* NULL once stopping */
    realm_env_t *prev, *next;         /* the pool's environments */
    realm_env_t *all_prev, *all_next; /* every environment of the engine */
    env_state_t state;
    char id[48];
    realm_spawn_t *sp;
    uv_timer_t timer;
    realm_inv_t *inv; /* BUSY */
    realm_env_next_cb next_cb;
    void *next_data;
    char *init_error; /* posted to /init/error, or NULL */
    size_t init_error_len;
    char init_error_type[64];
    char stop_reason[96]; /* why we stopped it, for the log */
    uint64_t last_used;
    void *private_listener;     /* from opts.private_listen, or NULL */
    realm_netstack_t *netstack; /* slirp4netns of a private network, or NULL */
    int64_t lease;              /* its concurrency lease (cluster), or 0 */
    unsigned has_asked : 1;     /* a `next` came at least once (init done) */
    unsigned oom_reported : 1;  /* an invocation already ended with Runtime.OutOfMemory */
    unsigned is_slow : 1;       /* RESTING past its grace */
    unsigned timer_closed : 1;
};

struct pool_s {
    realm_exec_t *x;
    pool_t *prev, *next;
    char *key;
    char *tenant, *name, *version, *arn, *runtime, *handler, *code_dir;
    char **env;
    uint64_t memory_mb, timeout_s;
    int64_t reserved;
    realm_exec_net_t network;
    uint64_t tmp_mb;   /* its /tmp */
    uint32_t uid;      /* inside the sandbox: one per tenant */
    uint32_t host_uid; /* on the host: one per tenant (0: as the server) */
    char **binds;      /* more read-only binds (host, sandbox pairs), NULL-terminated; or NULL */
    uint64_t n_ok, n_error, n_throttled; /* invocations ended, by outcome */
    realm_inv_t *q_head, *q_tail;
    size_t queued;
    realm_env_t *envs;
    size_t n_envs, n_starting, n_idle, n_busy, n_resting_fresh;
    size_t n_leasing; /* environments waiting for their lease (cluster) */
    size_t provisioned;
    int init_failures;   /* environments in a row that died before asking for work */
    int is_pump_due;     /* realm_exec_pump_soon: on the next loop turn */
    int is_retired;      /* code or configuration changed: no new work */
    realm_fnlog_t *log;  /* the function's log file */
    char log_stream[96]; /* AWS_LAMBDA_LOG_STREAM_NAME */
};

struct realm_exec_s {
    realm_exec_opts_t o;
    char *runtimes_dir, *node_modules_dir, *logs_dir, *self_exe, *region;
    realm_buf_t bpf;
    pool_t *pools;
    realm_env_t *all;
    size_t n_envs; /* not stopping */
    uint64_t env_seq;
    realm_exec_stats_t st;
    uint32_t tenants_seen;                /* tenants given a uid so far */
    int warned_uids;                      /* more tenants than host uids, said once */
    uv_idle_t later_idle;                 /* runs while the later list is not empty */
    uv_idle_t pump_idle;                  /* runs while a pool's pump is due */
    realm_inv_t *later_head, *later_tail; /* invocations to end on a later turn */
    uint64_t later_seq;                   /* the last seq given on the later list */
    int is_freeing;
    size_t n_timers;            /* environments' timers not closed yet */
    realm_exec_placer_t placer; /* placement on other nodes (place NULL: none) */
    void *placer_ud;
    realm_inv_t *placed;        /* invocations placed elsewhere */
    realm_exec_leases_t leases; /* cluster concurrency (take NULL: none) */
    void *leases_ud;
    size_t n_leasing;             /* lease answers still to come */
    realm_exec_close_cb close_cb; /* realm_exec_close's */
    void *close_data;
    unsigned is_closing : 1;      /* realm_exec_close was called */
    unsigned is_idle_closing : 1; /* the last handle is closing: x goes with it */
};

/* ---- exec.c: the scheduler ---- */

/* Starts environments for p's queue and its provisioned count (see pump in exec.c). */
void realm_exec_pump(pool_t *p);
/* The same on the next loop turn (from calls that take a callback pump may run). */
void realm_exec_pump_soon(pool_t *p);
void realm_exec_q_remove(pool_t *p, realm_inv_t *inv);
/* Ends an invocation: its sink's last event, then it is freed. */
void realm_exec_inv_finish(realm_inv_t *inv, realm_inv_status_t status, const char *payload,
                           size_t len, const char *error_type, const char *error_message);
/* Ends it with a function error in AWS's shape ({"errorType","errorMessage"}), logged. */
void realm_exec_inv_fail(realm_inv_t *inv, const char *type, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Output of the runtime: to the invocation's tail. */
void realm_exec_inv_log(realm_inv_t *inv, const char *bytes, size_t len);
/* A platform line (START, END, REPORT...) to the invocation (or NULL) and p's file (or NULL). */
void realm_exec_platform_line(pool_t *p, realm_inv_t *inv, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Ends inv later (no environment): off its queue now, on_done on a later turn. */
void realm_exec_inv_end_later(realm_inv_t *inv, realm_inv_status_t status, const char *error_type,
                              const char *error_message);
void realm_exec_inv_free(realm_inv_t *inv);
/* Offers inv to the placer (placed.c): 1 if it runs elsewhere now. */
int realm_exec_try_place(pool_t *p, realm_inv_t *inv, const realm_exec_fn_t *fn,
                         const realm_inv_sink_t *sink);
/* realm_inv_cancel of a placed invocation. */
void realm_exec_placed_cancel(realm_inv_t *inv);
/* A shutdown: every placed invocation is cancelled on its node and fails. */
void realm_exec_placed_shutdown(realm_exec_t *x);
/* The pool key's hash (realm_exec_fn_key). */
void realm_exec_key_hash(const char *key, char out[17]);
char *realm_exec_pool_key(const realm_exec_fn_t *fn);
/* 1 when an environment of p is idle or about to take an invocation. */
int realm_exec_is_warm(const pool_t *p);
/* Queues inv on p and pumps, or throttles it (realm_exec_invoke's last step). */
void realm_exec_admit(pool_t *p, realm_inv_t *inv);

/* Once closing and nothing is left (environments, their timers, the later
 * list), closes the last handle; x is freed in its callback. */
void realm_exec_close_maybe(realm_exec_t *x);

/* ---- env.c: environments ---- */

/* Starts an environment of p; 0, or -1 with why in err (also logged). */
int realm_exec_env_spawn(pool_t *p, int64_t lease, char *err, size_t err_len);
/* Past its concurrency lease (exec.h): stopped; its invocation, if any, fails (runtime_api.c). */
void realm_exec_env_fence(realm_env_t *env);
/* Kills the environment; its end comes through its spawn's exit. */
void realm_exec_env_stop(realm_env_t *env, const char *why);
void realm_exec_env_set_state(realm_env_t *env, env_state_t s);
/* The environment's timer: init, deadline, resting grace or idle, by state. */
void realm_exec_on_env_timer(uv_timer_t *t);
/* END and REPORT lines once an invocation is over in its environment. */
void realm_exec_report(realm_env_t *env, realm_inv_t *inv);

#endif
