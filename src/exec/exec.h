/*
 * exec.h - execution environments and invocations: the scheduler between
 * callers (Invoke, the client WebSocket) and the runtime API (HTTP or the
 * WebSocket channel) that environments pull work from.
 *
 * DESIGN: environments are grouped in pools, one per function revision
 * (tenant, name, version and RevisionId: a new revision gets a new pool and
 * the old one's environments idle out). An environment runs one invocation
 * at a time (AWS's model) and is reused warm. An invocation waits in its
 * pool's queue until an environment asks for work (`next`); a new
 * environment starts when the queue holds more invocations than there are
 * environments starting, up to the function's reserved concurrency and the
 * account limit (idle environments of other pools are stopped to make
 * room). Past those and a full queue, the caller is throttled at once. A
 * synchronous caller past the function's reserved concurrency is throttled
 * at once without queueing (Lambda's 429); an Event invocation queues.
 *
 * Every invocation ends exactly once through its sink: a result, a
 * function error, a throttle, or a platform error (timeout, out of memory,
 * crash), unless the caller cancels it first (then nothing is reported and
 * the environment running it is stopped and replaced). It never ends inside
 * realm_exec_invoke: a refusal is reported on a later loop turn.
 *
 * The runtime side identifies an environment by the connection it comes
 * from (realm_exec_env_for_fd): a process Realm did not start in an
 * environment cannot take or answer any invocation.
 *
 * LIFETIME: realm_exec_new .. realm_exec_close (x is freed on a later loop
 * turn, then its callback comes); environments are
 * reference-counted because runtime connections outlive them.
 * THREADS: loop thread only.
 */
#ifndef REALM_EXEC_EXEC_H
#define REALM_EXEC_EXEC_H

#include "base/err.h"
#include "sandbox/sandbox.h"

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct realm_exec_s realm_exec_t;
typedef struct realm_env_s realm_env_t;
typedef struct realm_inv_s realm_inv_t;

/* 6 MiB + 100 bytes: Lambda's largest synchronous response (RequestEntityTooLarge above). */
#define REALM_EXEC_MAX_RESPONSE (6u * 1024u * 1024u + 100u)
/* The Tail of Invoke: the last 4 KB of an invocation's log. */
#define REALM_EXEC_TAIL_BYTES 4096u

/* An environment's network. Every one but HOST has a namespace of its own
 * whose loopback holds only its runtime API. */
typedef enum {
    REALM_EXEC_NET_PRIVATE = 0, /* outbound through slirp4netns; host loopback unreachable */
    REALM_EXEC_NET_NONE = 1,    /* nothing but the runtime API */
    REALM_EXEC_NET_HOST = 2,    /* the host's own network (local development only) */
} realm_exec_net_t;

typedef struct {
    uv_loop_t *loop;
    const realm_sandbox_probe_t *probe; /* borrowed */
    const char *self_exe;               /* this binary (the spawn trampoline) */
    const char *runtimes_dir;           /* holds the table's bootstrap folders */
    const char *node_modules_dir;       /* bound at /var/runtime/node_modules for Node; or NULL */
    const char *logs_dir;               /* function logs: DIR/<tenant>/<name>.log */
    int runtime_port;                   /* AWS_LAMBDA_RUNTIME_API=127.0.0.1:PORT */
    const char *region;
    uint64_t concurrency_limit; /* environments at once, all functions */
    uint64_t queue_depth;       /* invocations waiting per function before 429 */
    uint64_t idle_ms;           /* an idle environment is stopped after this */
    uint64_t init_timeout_ms;   /* from start to the first `next` */
    uint64_t tmp_mb;            /* size of each environment's /tmp */
    uint64_t pids_max;          /* processes and threads per environment */
    uint64_t log_file_bytes;    /* per function log file, before rotation */
    realm_exec_net_t network;   /* what environments' network is (each has its own) */
    const char *slirp_path;     /* slirp4netns, for REALM_EXEC_NET_PRIVATE; NULL: none */
    uint32_t host_uid_first;    /* when root: host uids of environments, one per tenant, */
    uint32_t host_uid_last;     /* from first (no tenant) up; 0: bwrap runs as we do */
    const char *scratch_dir;    /* when root: /tmp is a disk made here (NULL: a tmpfs) */
    /*
     * An environment without the host's network reaches the runtime API on
     * 127.0.0.1:REALM_EXEC_PRIVATE_PORT inside its own namespace: exec makes
     * that listening socket and hands it over; the owner serves the runtime
     * API on it for that environment alone (every connection is env's) and
     * returns a handle (or NULL), released with private_close when the
     * environment ends. The fd is the owner's from then on, also on failure.
     */
    void *(*private_listen)(realm_env_t *env, int fd, void *data);
    void (*private_close)(void *handle, void *data);
    /*
     * Optional: the last environment of a changed or deleted function
     * (realm_exec_forget) ended and nothing of it waits: a code package it
     * ran may be unused now (see realm_exec_uses_code).
     */
    void (*code_released)(void *data);
    void *hook_data;
} realm_exec_opts_t;

#define REALM_EXEC_PRIVATE_PORT 9001

/* A function version as it runs (strings borrowed for the call). */
typedef struct {
    const char *tenant;
    const char *name;
    const char *version;  /* "$LATEST" or "3" */
    const char *revision; /* identity of code and configuration */
    const char *arn;      /* unqualified function ARN */
    const char *runtime;  /* a name of the runtime table (runtimes/runtimes.h) */
    const char *handler;
    const char *code_dir;   /* the unpacked package (host path) */
    const char *const *env; /* the function's own "K=V" variables, NULL-terminated; or NULL */
    uint64_t memory_mb;
    uint64_t timeout_s;
    uint64_t tmp_mb;  /* EphemeralStorage: size of /tmp (0: the server's default) */
    int64_t reserved; /* reserved concurrency, -1 when none */
    int no_network;   /* 1: no network but the runtime API, whatever the server allows */
    /* More read-only binds: HOST, SANDBOX_PATH pairs, NULL-terminated (at most 8); or NULL. */
    const char *const *ro_binds;
} realm_exec_fn_t;

typedef struct {
    const void *payload; /* the event (JSON), copied */
    size_t payload_len;
    /* Or the event in malloc'd memory (payload_len bytes and a NUL) that the
     * engine takes over, saving the copy: payload is then ignored. */
    char *payload_owned;
    const char *invoked_arn;    /* as invoked (qualified when it was); or NULL */
    const char *client_context; /* decoded JSON; or NULL */
    const char *trace_id;       /* or NULL: one is made */
    const char *request_id;     /* or NULL: one is made */
    /*
     * Past the function's reserved concurrency: 0 (synchronous calls) is
     * throttled at once (ReservedFunctionConcurrentInvocationLimitExceeded,
     * as Lambda answers Invoke); 1 (Event invocations, which Lambda queues)
     * waits in the pool's queue like any other. Waits for the server's own
     * capacity (--concurrency, unreserved) are the same for both: the
     * bounded queue (queue_depth), then a throttle.
     */
    int waits_past_reserved;
    /* 1: runs on this server, never placed on another node (a call placed here). */
    int no_placement;
    /* 1: runs on another node or not at all (what it needs is not here: a
     * model); when no node takes it, it fails with REALM_ERR_NO_MODEL. */
    int must_place;
} realm_inv_req_t;

typedef enum {
    REALM_INV_OK = 0,    /* payload is the function's response */
    REALM_INV_FN_ERROR,  /* payload is the error JSON; X-Amz-Function-Error Unhandled */
    REALM_INV_THROTTLED, /* 429: error_type is the Reason */
    REALM_INV_FAILED,    /* the service could not run it (error_message says why) */
} realm_inv_status_t;

typedef struct {
    realm_inv_status_t status;
    const char *request_id;
    const char *payload; /* borrowed for the callback */
    size_t payload_len;
    const char *error_type;    /* FN_ERROR: errorType (Runtime.ExitError...); THROTTLED: Reason */
    const char *error_message; /* THROTTLED/FAILED: text */
    const char *log_tail;      /* last REALM_EXEC_TAIL_BYTES of this invocation's log */
    size_t log_tail_len;
    int was_streamed; /* chunks went to on_chunk; payload is empty */
    /* A streamed response's content type (as the function set it, else
     * application/octet-stream); NULL when the function answered whole. */
    const char *content_type;
    /* FAILED: the REALM_ERR_* code that says why (0: REALM_ERR_INTERNAL_ERROR). */
    int error_code;
} realm_inv_result_t;

typedef struct {
    /* A streamed response begins (content type given by the function). Optional. */
    void (*on_stream)(realm_inv_t *inv, const char *content_type, void *data);
    /*
     * One chunk of a streamed response, borrowed. Optional: without it the
     * engine collects the chunks and on_done gets them whole as the payload
     * (what Invoke answers for a streaming function), up to
     * REALM_EXEC_MAX_RESPONSE; a longer stream still runs to its end, then
     * ends as a Function.ResponseSizeTooLarge function error, as a whole
     * response that size does.
     */
    void (*on_chunk)(realm_inv_t *inv, const void *bytes, size_t len, void *data);
    /* The end (always, once, unless cancelled); inv is freed after it returns. */
    void (*on_done)(realm_inv_t *inv, const realm_inv_result_t *r, void *data);
} realm_inv_sink_t;

realm_exec_t *realm_exec_new(const realm_exec_opts_t *opts);
/* The runtime listener's port, for AWS_LAMBDA_RUNTIME_API (once it is bound). */
void realm_exec_set_runtime_port(realm_exec_t *x, int port);
/*
 * Fails what is queued or running (REALM_INV_FAILED) and kills every
 * environment; their ends come through the loop. Nothing new starts.
 */
void realm_exec_shutdown(realm_exec_t *x);
/*
 * Shuts down if needed; once every environment is reaped and every pending
 * end delivered, frees x and calls cb(data) (cb may be NULL), always on a
 * later loop turn, never inside this call. The loop must keep running
 * until then. Invocations started meanwhile fail (ServiceException); none
 * may be started once cb has come.
 */
typedef void (*realm_exec_close_cb)(void *data);
void realm_exec_close(realm_exec_t *x, realm_exec_close_cb cb, void *data);

/*
 * Starts an invocation of fn and returns it (never NULL). The sink's on_done
 * comes exactly once, always on a later loop turn, never from inside this
 * call (libuv's callback rule): also when the invocation is refused at once
 * (throttled: reserved concurrency 0, a full queue) or no environment can
 * start. The invocation is the caller's to cancel until on_done. fn and req
 * are borrowed for the call (copied); sink is copied; data is passed back.
 */
realm_inv_t *realm_exec_invoke(realm_exec_t *x, const realm_exec_fn_t *fn,
                               const realm_inv_req_t *req, const realm_inv_sink_t *sink,
                               void *data);
/* Drops an invocation: no sink event follows; its environment is stopped. */
void realm_inv_cancel(realm_inv_t *inv);
const char *realm_inv_request_id(const realm_inv_t *inv);

/*
 * Concurrency across the nodes of a cluster (docs/cluster.md): with leases
 * set, every environment holds a lease taken before it starts (counted
 * against the function's reserved concurrency and the tenant's account
 * limit over every node) and dropped when it stops. An environment whose
 * lease is lost, or not known to be live when its invocation ends (this
 * node was paused or cut off past the lease), is stopped, and that
 * invocation fails instead of completing (the fence).
 */
#define REALM_EXEC_LEASE_FN_FULL 0
#define REALM_EXEC_LEASE_TENANT_FULL (-2)
#define REALM_EXEC_LEASE_UNAVAILABLE (-1)
typedef void (*realm_exec_lease_cb)(int64_t lease, void *token);
typedef struct {
    /* cb(lease, token) exactly once, on a later loop turn: lease > 0
     * granted, else one of REALM_EXEC_LEASE_*. fn_cap < 0: no cap. */
    void (*take)(void *ud, const char *tenant, const char *name, int64_t fn_cap, int64_t tenant_cap,
                 realm_exec_lease_cb cb, void *token);
    void (*drop)(void *ud, int64_t lease);
    /* 1 while the lease is known to be live now. */
    int (*is_live)(void *ud, int64_t lease);
} realm_exec_leases_t;
/* hooks NULL: none (a single server); copied. Environments holding leases keep them. */
void realm_exec_set_leases(realm_exec_t *x, const realm_exec_leases_t *hooks, void *ud);
/* The lease ended without this node (its environment stops; its invocation fails). */
void realm_exec_lease_lost(realm_exec_t *x, int64_t lease);
/*
 * Another node was refused a lease of tenant's function (name NULL: of any
 * of its functions, at the tenant's limit): the least recently used idle
 * environment holding such a lease stops, so its lease goes. 1 if one did.
 */
int realm_exec_yield_idle(realm_exec_t *x, const char *tenant, const char *name);

/*
 * Placement on the nodes of a cluster (docs/cluster.md): with a placer set,
 * an invocation that no environment here can take at once (none idle or
 * about to be) is offered to place(); when it answers 1 the invocation runs
 * elsewhere: the placer reports its events through realm_exec_placed_*
 * (stream, chunks, then done, exactly once, never from inside place), or
 * hands it back with realm_exec_placed_here (nothing ran elsewhere: it runs
 * here as any other). Cancelling a placed invocation calls cancel() first;
 * a shutdown cancels them too and ends them as it ends the others. An
 * invocation whose request says no_placement, or whose function's
 * reserved concurrency is 0, is never offered.
 */
typedef struct {
    /* fn and inv's request (realm_inv_describe) are readable during the call. */
    int (*place)(void *ud, realm_inv_t *inv, const realm_exec_fn_t *fn, int wants_chunks);
    void (*cancel)(void *ud, realm_inv_t *inv);
} realm_exec_placer_t;
/* placer NULL: none; copied. */
void realm_exec_set_placer(realm_exec_t *x, const realm_exec_placer_t *placer, void *ud);
/* The request as the invocation holds it (strings and payload borrowed from inv). */
void realm_inv_describe(const realm_inv_t *inv, realm_inv_req_t *out);
/* The placer's own pointer on a placed invocation. */
void realm_inv_set_placed(realm_inv_t *inv, void *placed);
void *realm_inv_placed(const realm_inv_t *inv);
void realm_exec_placed_stream(realm_inv_t *inv, const char *content_type);
void realm_exec_placed_chunk(realm_inv_t *inv, const void *bytes, size_t len);
/* The end (the sink's on_done, now); inv is freed after it returns. */
void realm_exec_placed_done(realm_inv_t *inv, const realm_inv_result_t *r);
/* Runs it here after all (on a later loop turn at the latest). */
void realm_exec_placed_here(realm_inv_t *inv);
/* The identity of fn's pool (tenant, name, version, revision, network,
 * /tmp) as 16 hex digits, the same on every node: what idle lists name. */
void realm_exec_fn_key(const realm_exec_fn_t *fn, char out[17]);
/* cb(key, idle) for each pool with idle environments (its key as above). */
typedef void (*realm_exec_idle_cb)(const char *key, size_t idle, void *data);
void realm_exec_idle_pools(const realm_exec_t *x, realm_exec_idle_cb cb, void *data);

/* Keeps n environments of fn warm (provisioned concurrency); 0 releases them. */
void realm_exec_provision(realm_exec_t *x, const realm_exec_fn_t *fn, size_t n);
/*
 * A function was updated or deleted: its idle environments stop now, busy
 * ones once they have answered; later invocations get fresh environments.
 */
void realm_exec_forget(realm_exec_t *x, const char *tenant, const char *name);

/*
 * 1 while an environment runs, or an invocation waits to run, code from
 * code_dir (an unpacked package): the package must stay even when no
 * function refers to it any more (deleted or updated in flight).
 */
int realm_exec_uses_code(const realm_exec_t *x, const char *code_dir);

/* Counters for metrics and health. */
typedef struct {
    size_t environments, busy, idle, starting, queued;
    uint64_t started_total, stopped_total, timeouts_total, oom_total, crashes_total,
        throttles_total, invocations_total;
} realm_exec_stats_t;
void realm_exec_stats(const realm_exec_t *x, realm_exec_stats_t *out);
/* Invocations ended per tenant (namespace), by outcome: for metrics. */
typedef void (*realm_exec_tenant_cb)(const char *tenant, uint64_t ok, uint64_t errors,
                                     uint64_t throttled, void *data);
void realm_exec_tenant_stats(const realm_exec_t *x, realm_exec_tenant_cb cb, void *data);
/* Environments of one function (for tests and `realm functions`). */
size_t realm_exec_env_count(const realm_exec_t *x, const char *tenant, const char *name);

/* ---- the runtime side ---- */

/*
 * The environment a runtime API connection comes from (fd: the accepted
 * loopback socket), with a reference; NULL if it belongs to none.
 */
realm_env_t *realm_exec_env_for_fd(realm_exec_t *x, int fd);
void realm_env_ref(realm_env_t *env);
void realm_env_unref(realm_env_t *env);
int realm_env_is_alive(const realm_env_t *env);
const char *realm_env_id(const realm_env_t *env);
const char *realm_env_function(const realm_env_t *env);

/* The work a `next` hands over (borrowed for the callback). */
typedef struct {
    const char *request_id;
    const char *payload;
    size_t payload_len;
    int64_t deadline_ms; /* Unix epoch ms */
    const char *invoked_arn;
    const char *trace_id;
    const char *client_context; /* or NULL */
} realm_env_work_t;

typedef void (*realm_env_next_cb)(realm_env_t *env, const realm_env_work_t *w, void *data);

/*
 * The runtime side returns 0 or one of these (base/err.h, with the HTTP
 * status and AWS error type the runtime API answers):
 *   REALM_ERR_INVALID_REQUEST_ID        not the current invocation
 *   REALM_ERR_INVALID_STATE_TRANSITION  out of order
 *   REALM_ERR_RESPONSE_TOO_LARGE        above REALM_EXEC_MAX_RESPONSE (the invocation
 *                                       has ended with Function.ResponseSizeTooLarge)
 *   REALM_ERR_ENV_GONE                  the environment was stopped
 */
/*
 * The environment asks for work. cb runs once, on a later loop turn (never
 * inside this call), with the next invocation, or with w NULL when the
 * environment is stopped first; realm_env_next_abort withdraws it. Returns 0, or
 * INVALID_STATE_TRANSITION if an invocation is open or a `next` is already waiting.
 */
int realm_env_next(realm_env_t *env, realm_env_next_cb cb, void *data);
/* The waiting `next` went away (its connection closed). */
void realm_env_next_abort(realm_env_t *env, void *data);
/* The whole response of the current invocation. */
int realm_env_respond(realm_env_t *env, const char *request_id, const void *body, size_t len);
/* An error of the current invocation: body is the error JSON; type may be NULL. */
int realm_env_fail(realm_env_t *env, const char *request_id, const char *type, const void *body,
                   size_t len);
/* Init failed: the environment is stopped; the invocation that waits gets body. */
int realm_env_init_error(realm_env_t *env, const char *type, const void *body, size_t len);
/* A streamed response: begin, chunks, end (error_body NULL when it went well). */
int realm_env_stream_begin(realm_env_t *env, const char *request_id, const char *content_type);
int realm_env_stream_write(realm_env_t *env, const char *request_id, const void *data, size_t len);
int realm_env_stream_end(realm_env_t *env, const char *request_id, const char *error_type,
                         const void *error_body, size_t error_len);

#endif
