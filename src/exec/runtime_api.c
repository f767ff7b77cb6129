/*
 * runtime_api.c - the runtime side of exec: what an environment's calls to
 * the runtime API do (next, response, error, init error, streams), and
 * which environment a connection comes from (see exec.h, "the runtime
 * side"). api/runtime.c adapts these to HTTP and the WebSocket channel.
 *
 * Every call checks the environment is alive and the request id names its
 * current invocation, and returns 0 or a REALM_ERR_* code (base/err.h).
 * THREADS: loop thread only.
 */
#include "exec/internal.h"

#include "base/alloc.h"
#include "base/log.h"
#include "sandbox/sandbox.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- public: the runtime side ---- */

realm_env_t *realm_exec_env_for_fd(realm_exec_t *x, int fd)
{
    unsigned long inode = realm_sandbox_peer_inode(fd);
    if (!inode) return NULL;
    for (realm_env_t *e = x->all; e; e = e->all_next) {
        if (!e->pool || !e->sp) continue;
        if (realm_sandbox_group_holds(realm_spawn_group(e->sp), inode) == 1) {
            realm_env_ref(e);
            return e;
        }
    }
    return NULL;
}

int realm_env_is_alive(const realm_env_t *env)
{
    return env->pool != NULL;
}

const char *realm_env_id(const realm_env_t *env)
{
    return env->id;
}

const char *realm_env_function(const realm_env_t *env)
{
    return env->pool ? env->pool->name : "";
}

int realm_env_next(realm_env_t *env, realm_env_next_cb cb, void *data)
{
    pool_t *p = env->pool;
    if (!p) return REALM_ERR_ENV_GONE;
    if (env->state == ENV_BUSY || env->state == ENV_IDLE) return REALM_ERR_INVALID_STATE_TRANSITION;
    env->has_asked = 1;
    p->init_failures = 0;
    env->next_cb = cb;
    env->next_data = data;
    env->last_used = uv_now(env->x->o.loop);
    realm_exec_env_set_state(env, ENV_IDLE);
    uv_timer_start(&env->timer, realm_exec_on_env_timer, env->x->o.idle_ms, 0);
    /* Work already queued goes to it on a later turn (cb never runs inside
     * this call); else the next invocation finds it waiting. */
    if (p->q_head) realm_exec_pump_soon(p);
    return 0;
}

void realm_env_next_abort(realm_env_t *env, void *data)
{
    if (env->state != ENV_IDLE || env->next_data != data) return;
    env->next_cb = NULL;
    env->next_data = NULL;
    /* It will ask again on a new connection: count it as about to. */
    realm_exec_env_set_state(env, ENV_RESTING);
    uv_timer_start(&env->timer, realm_exec_on_env_timer, RESTING_GRACE_MS, 0);
}

/* The current invocation if request_id names it; else an error code. */
static int current(realm_env_t *env, const char *request_id, realm_inv_t **out)
{
    if (!env->pool) return REALM_ERR_ENV_GONE;
    if (!request_id || !env->inv || strcmp(env->inv->request_id, request_id) != 0)
        return REALM_ERR_INVALID_REQUEST_ID;
    *out = env->inv;
    return 0;
}

/*
 * The memory limit killed a process of the environment (say a child the
 * runtime started) while it ran the invocation: Lambda's answer is
 * Runtime.OutOfMemory and a fresh environment. 1 if so (inv is ended).
 */
static int oom_ends(realm_env_t *env, realm_inv_t *inv)
{
    if (!env->sp || !realm_sandbox_group_oom(realm_spawn_group(env->sp))) return 0;
    env->x->st.oom_total++;
    realm_exec_report(env, inv);
    env->inv = NULL;
    inv->env = NULL;
    realm_exec_inv_fail(inv, "Runtime.OutOfMemory",
                        "Runtime exited with error: signal: killed (memory limit)");
    env->oom_reported = 1;
    realm_exec_env_stop(env, "out of memory");
    return 1;
}

/*
 * The fence of a cluster (exec.h): an environment whose concurrency lease is
 * not known to be live (this node was paused or cut off from its database
 * past the lease: another node may run in its place) completes nothing. 1
 * if so (inv is ended with a platform error, the environment stopped).
 */
static int fenced(realm_env_t *env, realm_inv_t *inv)
{
    realm_exec_t *x = env->x;
    (void)inv;
    if (!env->lease || !x->leases.is_live || x->leases.is_live(x->leases_ud, env->lease)) return 0;
    realm_exec_env_fence(env);
    return 1;
}

void realm_exec_env_fence(realm_env_t *env)
{
    const char *msg = "this node's concurrency lease ended before the invocation did (the node "
                      "was paused or cut off from its database): its result is dropped";
    realm_warn("environment %s: past its concurrency lease: stopped", env->id);
    realm_inv_t *inv = env->inv;
    if (inv) {
        realm_exec_report(env, inv);
        env->inv = NULL;
        inv->env = NULL;
    }
    realm_exec_env_stop(env, "past its concurrency lease");
    if (inv) realm_exec_inv_finish(inv, REALM_INV_FAILED, NULL, 0, "ServiceException", msg);
}

/* The invocation is answered: the environment rests until its next `next`. */
static void env_answered(realm_env_t *env, realm_inv_t *inv)
{
    realm_exec_report(env, inv);
    env->inv = NULL;
    inv->env = NULL;
    if (env->pool && env->pool->is_retired && !env->pool->q_head) {
        realm_exec_env_stop(env, "function changed");
        return;
    }
    realm_exec_env_set_state(env, ENV_RESTING);
    uv_timer_start(&env->timer, realm_exec_on_env_timer, RESTING_GRACE_MS, 0);
}

/* Ends inv with Lambda's error for a response above the limit (len bytes). */
static void finish_too_large(realm_inv_t *inv, size_t len)
{
    char msg[160];
    snprintf(msg, sizeof(msg),
             "Response payload size (%zu bytes) exceeded maximum allowed payload size "
             "(%u bytes).",
             len, REALM_EXEC_MAX_RESPONSE);
    json_t *o =
        json_pack("{s:s, s:s}", "errorType", "Function.ResponseSizeTooLarge", "errorMessage", msg);
    char *b = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    realm_exec_inv_finish(inv, REALM_INV_FN_ERROR, b, strlen(b), "Function.ResponseSizeTooLarge",
                          msg);
    free(b);
}

int realm_env_respond(realm_env_t *env, const char *request_id, const void *body, size_t len)
{
    realm_inv_t *inv;
    int rc = current(env, request_id, &inv);
    if (rc != 0) return rc;
    if (inv->is_streaming) return REALM_ERR_INVALID_STATE_TRANSITION;
    if (oom_ends(env, inv) || fenced(env, inv)) return 0;
    env_answered(env, inv);
    if (len > REALM_EXEC_MAX_RESPONSE) {
        finish_too_large(inv, len);
        return REALM_ERR_RESPONSE_TOO_LARGE;
    }
    realm_exec_inv_finish(inv, REALM_INV_OK, body, len, NULL, NULL);
    return 0;
}

/* The errorType of an error body, else fallback. */
static void error_type_of(const void *body, size_t len, const char *header, char *out, size_t n)
{
    out[0] = '\0';
    json_t *j = json_loadb(body, len, 0, NULL);
    const char *t = json_string_value(json_object_get(j, "errorType"));
    if (t && t[0])
        snprintf(out, n, "%s", t);
    else if (header && header[0])
        snprintf(out, n, "%s", header);
    else
        snprintf(out, n, "Unhandled");
    json_decref(j);
}

int realm_env_fail(realm_env_t *env, const char *request_id, const char *type, const void *body,
                   size_t len)
{
    realm_inv_t *inv;
    int rc = current(env, request_id, &inv);
    if (rc != 0) return rc;
    if (inv->is_streaming) return REALM_ERR_INVALID_STATE_TRANSITION;
    if (oom_ends(env, inv) || fenced(env, inv)) return 0;
    char et[128];
    error_type_of(body, len, type, et, sizeof(et));
    env_answered(env, inv);
    if (len > REALM_EXEC_MAX_RESPONSE) len = REALM_EXEC_MAX_RESPONSE;
    realm_exec_inv_finish(inv, REALM_INV_FN_ERROR, body, len, et, NULL);
    return 0;
}

int realm_env_init_error(realm_env_t *env, const char *type, const void *body, size_t len)
{
    if (!env->pool) return REALM_ERR_ENV_GONE;
    if (env->state != ENV_STARTING || env->init_error) return REALM_ERR_INVALID_STATE_TRANSITION;
    if (len > 64 * 1024) len = 64 * 1024;
    env->init_error = realm_malloc(len + 1);
    memcpy(env->init_error, body, len);
    env->init_error[len] = '\0';
    env->init_error_len = len;
    error_type_of(body, len, type, env->init_error_type, sizeof(env->init_error_type));
    /* The runtime exits by itself; the exit hands the error to a waiting invocation. */
    return 0;
}

int realm_env_stream_begin(realm_env_t *env, const char *request_id, const char *content_type)
{
    realm_inv_t *inv;
    int rc = current(env, request_id, &inv);
    if (rc != 0) return rc;
    if (inv->is_streaming) return REALM_ERR_INVALID_STATE_TRANSITION;
    inv->is_streaming = 1;
    free(inv->content_type);
    inv->content_type =
        realm_strdup(content_type && content_type[0] ? content_type : "application/octet-stream");
    if (inv->sink.on_stream)
        inv->sink.on_stream(
            inv, content_type && content_type[0] ? content_type : "application/octet-stream",
            inv->data);
    return 0;
}

int realm_env_stream_write(realm_env_t *env, const char *request_id, const void *data, size_t len)
{
    realm_inv_t *inv;
    int rc = current(env, request_id, &inv);
    if (rc != 0) return rc;
    if (!inv->is_streaming) return REALM_ERR_INVALID_STATE_TRANSITION;
    if (!len) return 0;
    if (inv->sink.on_chunk) {
        inv->sink.on_chunk(inv, data, len, inv->data);
        return 0;
    }
    /* Collected for a caller that wants the response whole; past the limit
     * the rest is only counted (the function runs to its end). */
    inv->streamed_total += len;
    if (inv->streamed_total <= REALM_EXEC_MAX_RESPONSE)
        realm_buf_append(&inv->streamed, data, len);
    else
        realm_buf_dispose(&inv->streamed);
    return 0;
}

int realm_env_stream_end(realm_env_t *env, const char *request_id, const char *error_type,
                         const void *error_body, size_t error_len)
{
    realm_inv_t *inv;
    int rc = current(env, request_id, &inv);
    if (rc != 0) return rc;
    if (!inv->is_streaming) return REALM_ERR_INVALID_STATE_TRANSITION;
    if (oom_ends(env, inv) || fenced(env, inv)) return 0;
    env_answered(env, inv);
    if (error_type || error_body) {
        char et[128];
        error_type_of(error_body ? error_body : "", error_body ? error_len : 0, error_type, et,
                      sizeof(et));
        realm_exec_inv_finish(inv, REALM_INV_FN_ERROR, error_body, error_body ? error_len : 0, et,
                              NULL);
    } else if (inv->streamed_total > REALM_EXEC_MAX_RESPONSE) {
        finish_too_large(inv, inv->streamed_total);
    } else {
        /* Chunks that were collected are the payload (none went to on_chunk). */
        realm_exec_inv_finish(inv, REALM_INV_OK, inv->streamed.data, inv->streamed.len, NULL, NULL);
    }
    return 0;
}
