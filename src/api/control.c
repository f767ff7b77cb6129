/*
 * control.c - the Lambda control API over HTTP (see control.h).
 *
 * DESIGN: each route parses the path, query and JSON body, calls one
 * registry operation and renders its answer or its AWS error. Requests that
 * carry a code package (CreateFunction, UpdateFunctionCode) run in three
 * steps: the registry checks everything but the package on the loop
 * (marking the function as being updated), a worker thread decodes the
 * base64 and validates, stores and unpacks the zip, and back on the loop
 * the registry commits. At most --max-package-jobs packages are unpacked
 * at once; beyond that the answer is 429 TooManyRequestsException. A client
 * that goes away mid-job does not stop it: the operation completes, as it
 * would on AWS.
 *
 * Packages no version refers to (after a delete, a refused commit, a dry
 * run) are removed by a sweep of the store that runs only when no package
 * job is in flight, so a sweep can never remove a package a job is about
 * to commit.
 */
#include "api/control.h"

#include "base/alloc.h"
#include "base/log.h"
#include "base/str.h"
#include "runtimes/runtimes.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A registry operation on a function with a JSON body (one handler serves all). */
typedef json_t *(*body_op_fn)(realm_registry_t *r, const char *tenant, const char *fn_name,
                              json_t *req, realm_error_t *e);

enum { OP_UPDATE_CONFIGURATION, OP_PUBLISH, OP_CREATE_ALIAS, OP_PUT_CONCURRENCY, OP_COUNT };

typedef struct {
    struct realm_control_s *ctl;
    body_op_fn fn;
    int status; /* on success */
} body_op_t;

struct realm_control_s {
    uv_loop_t *loop;
    const realm_config_t *cfg;
    realm_registry_async_t *ra; /* the registry, on its worker */
    realm_pkg_store_t *store;
    realm_pkg_limits_t limits;
    int jobs;                 /* package jobs in flight */
    int sweep_wanted;         /* a sweep is due once jobs reaches 0 */
    int is_sweeping;          /* a sweep job is queued */
    const realm_exec_t *exec; /* borrowed, or NULL */
    body_op_t ops[OP_COUNT];
    realm_control_change_cb on_change;
    void *change_data;
};

enum job_kind { JOB_CREATE, JOB_CODE, JOB_DOWNLOAD };

#define MAX_UNTAG_KEYS 50
/* New operations wait for the registry's worker up to this many deep (503 beyond). */
#define CONTROL_MAX_QUEUED 4096

static void maybe_sweep(struct realm_control_s *ctl);
static int too_busy(struct realm_control_s *ctl, realm_http_res_t *res);

typedef struct {
    uv_work_t work;
    realm_control_t *ctl;
    realm_http_res_t *res; /* NULL once the client went away */
    enum job_kind kind;
    json_t *req;     /* owned */
    const char *b64; /* borrowed from req */
    char name[65];
    char tenant[80]; /* the request's principal */
    char fn[200];    /* FunctionName as given (JOB_CODE) */
    json_t *out;     /* the commit's answer */
    realm_buf_t zip; /* the package's bytes, from the unpacking to the commit */
    char path[4096]; /* JOB_DOWNLOAD */
    /* results of the worker */
    int rc;
    realm_error_t err; /* when rc != 0 */
    realm_pkg_info_t info;
    realm_buf_t file; /* JOB_DOWNLOAD */
} job_t;

/* ---- responses ---- */

static void request_id(realm_http_res_t *res)
{
    char id[37];
    realm_str_uuid4(id);
    realm_http_res_header(res, "x-amzn-RequestId", id);
}

void realm_control_send_error(realm_http_res_t *res, int status, const char *type,
                              const char *message)
{
    request_id(res);
    realm_http_res_header(res, "x-amzn-ErrorType", type);
    json_t *body =
        json_pack("{s:s, s:s}", "Type", status >= 500 ? "Service" : "User", "message", message);
    realm_http_res_send_json(res, status, body);
}

/* A function's code or configuration changed, or it is gone. */
static void changed(realm_control_t *ctl, const char *tenant, const char *fn_name, int is_deleted)
{
    char name[65], q[129];
    realm_error_t e;
    if (!ctl->on_change || realm_registry_parse_name(realm_registry_async_registry(ctl->ra), tenant,
                                                     fn_name, 1, name, q, &e) != 0)
        return;
    ctl->on_change(tenant, name, is_deleted, ctl->change_data);
}

/* The error a REALM_ERR_* code stands for: its HTTP status and AWS type, with message. */
static void send_code(realm_http_res_t *res, int code, const char *message)
{
    realm_control_send_error(res, realm_err_http_status(code), realm_err_aws_type(code), message);
}

static void send_reg_error(realm_http_res_t *res, const realm_error_t *e)
{
    send_code(res, e->code, e->message);
}

/* Sends body (owned) with status, or the registry's error when body is NULL. */
static void answer(realm_http_res_t *res, int status, json_t *body, const realm_error_t *e)
{
    if (!body) {
        send_reg_error(res, e);
        return;
    }
    request_id(res);
    realm_http_res_send_json(res, status, body);
}

static void answer_empty(realm_http_res_t *res, int rc, const realm_error_t *e)
{
    if (rc != 0) {
        send_reg_error(res, e);
        return;
    }
    request_id(res);
    realm_http_res_send(res, 204, NULL, NULL, 0);
}

static void on_http_error(realm_http_res_t *res, int status, const char *message, void *data)
{
    (void)data;
    const char *type;
    char msg[256];
    switch (status) {
    case 404:
    case 405:
        type = "UnknownOperationException";
        snprintf(msg, sizeof(msg), "Unknown operation: %s", message);
        break;
    case 413:
    case 431:
        type = "RequestTooLargeException";
        snprintf(msg, sizeof(msg), "Request too large: %s", message);
        break;
    case 408:
        type = "RequestTimeoutException";
        snprintf(msg, sizeof(msg), "%s", message);
        break;
    default:
        /* A name with a control character in it is a bad parameter, as AWS
         * calls a FunctionName that fails its pattern. */
        type = status >= 500                              ? "ServiceException"
               : strcmp(message, realm_http_msg_ctl) == 0 ? "InvalidParameterValueException"
                                                          : "InvalidRequestContentException";
        snprintf(msg, sizeof(msg), "%s", message);
    }
    realm_control_send_error(res, status, type, msg);
}

/* ---- request parts ---- */

/* The JSON object body ({} when empty), or NULL after answering 400. */
static json_t *body_json(realm_http_req_t *req, realm_http_res_t *res)
{
    if (req->body.len == 0) return json_object();
    json_error_t jerr;
    json_t *j = json_loadb(req->body.data, req->body.len, 0, &jerr);
    if (!json_is_object(j)) {
        char msg[256];
        snprintf(msg, sizeof(msg), "Could not parse request body into json: %s",
                 j ? "the body must be a JSON object" : jerr.text);
        json_decref(j);
        send_code(res, REALM_ERR_INVALID_REQUEST, msg);
        return NULL;
    }
    return j;
}

static const char *fn_param(realm_http_req_t *req)
{
    const char *v = realm_http_req_param(req, "FunctionName");
    return v ? v : "";
}

/* A query parameter into buf, or NULL when absent. */
static const char *query(realm_http_req_t *req, const char *name, char *buf, size_t len)
{
    return realm_http_query_param(req->query, name, 0, buf, len) >= 0 ? buf : NULL;
}

/* MaxItems: 0 when absent, -1 after answering 400. */
static long max_items(realm_http_req_t *req, realm_http_res_t *res)
{
    char buf[32];
    if (!query(req, "MaxItems", buf, sizeof(buf))) return 0;
    char *end;
    long n = strtol(buf, &end, 10);
    if (*buf == '\0' || *end || n < 1 || n > 10000) {
        send_code(res, REALM_ERR_INVALID_PARAMS, "MaxItems must be an integer from 1 to 10000");
        return -1;
    }
    return n;
}

/* ---- registry operations on the registry's worker ---- */

/*
 * Every route that reads or writes the registry runs it as a job on the
 * registry's store worker (registry/async.h) and answers in the job's
 * done callback, on the loop. What the job needs from the request is
 * copied into it: the request may be gone by then (a client that went away
 * gets no answer; the operation still completes, as on AWS).
 */
enum rop_kind {
    R_GET_FUNCTION,
    R_GET_CONFIGURATION,
    R_BODY,
    R_LIST_FUNCTIONS,
    R_DELETE_FUNCTION,
    R_LIST_VERSIONS,
    R_LIST_ALIASES,
    R_GET_ALIAS,
    R_UPDATE_ALIAS,
    R_DELETE_ALIAS,
    R_GET_CONCURRENCY,
    R_DELETE_CONCURRENCY,
    R_TAG,
    R_UNTAG,
    R_LIST_TAGS,
    R_ACCOUNT,
    R_PACKAGE,
};

typedef struct {
    realm_control_t *ctl;
    realm_http_res_t *res; /* NULL once the client went away */
    enum rop_kind kind;
    const body_op_t *bop; /* R_BODY */
    char *tenant, *fn, *qualifier, *alias, *arn, *marker, *version, *base;
    long max;
    int flag;
    json_t *body; /* owned: the request body, or the keys of R_UNTAG */
    /* results */
    json_t *out;
    int rc;
    realm_error_t e;
    char hex[REALM_PKG_HEX_LEN + 1]; /* R_PACKAGE */
} rop_t;

static void rop_aborted(realm_http_res_t *res, void *data)
{
    (void)res;
    rop_t *op = data;
    op->res = NULL;
}

static void rop_free(rop_t *op)
{
    free(op->tenant);
    free(op->fn);
    free(op->qualifier);
    free(op->alias);
    free(op->arn);
    free(op->marker);
    free(op->version);
    free(op->base);
    json_decref(op->body);
    json_decref(op->out);
    free(op);
}

static rop_t *rop_new(realm_control_t *ctl, realm_http_req_t *req, realm_http_res_t *res,
                      enum rop_kind kind)
{
    rop_t *op = realm_calloc(1, sizeof(*op));
    op->ctl = ctl;
    op->res = res;
    op->kind = kind;
    op->tenant = realm_strdup(req->principal);
    op->fn = realm_strdup(fn_param(req));
    return op;
}

static void rop_work(realm_registry_t *reg, void *data)
{
    rop_t *op = data;
    const char *t = op->tenant;
    realm_error_t *e = &op->e;
    switch (op->kind) {
    case R_GET_FUNCTION:
        op->out = realm_registry_get_function(reg, t, op->fn, op->qualifier, op->base, e);
        break;
    case R_GET_CONFIGURATION:
        op->out = realm_registry_get_configuration(reg, t, op->fn, op->qualifier, e);
        break;
    case R_BODY:
        op->out = op->bop->fn(reg, t, op->fn, op->body, e);
        break;
    case R_LIST_FUNCTIONS:
        op->out = realm_registry_list_functions(reg, t, op->marker, op->max, op->flag, e);
        break;
    case R_DELETE_FUNCTION:
        op->rc = realm_registry_delete_function(reg, t, op->fn, op->qualifier, e);
        break;
    case R_LIST_VERSIONS:
        op->out = realm_registry_list_versions(reg, t, op->fn, op->marker, op->max, e);
        break;
    case R_LIST_ALIASES:
        op->out = realm_registry_list_aliases(reg, t, op->fn, op->version, op->marker, op->max, e);
        break;
    case R_GET_ALIAS:
        op->out = realm_registry_get_alias(reg, t, op->fn, op->alias, e);
        break;
    case R_UPDATE_ALIAS:
        op->out = realm_registry_update_alias(reg, t, op->fn, op->alias, op->body, e);
        break;
    case R_DELETE_ALIAS:
        op->rc = realm_registry_delete_alias(reg, t, op->fn, op->alias, e);
        break;
    case R_GET_CONCURRENCY:
        op->out = realm_registry_get_concurrency(reg, t, op->fn, e);
        break;
    case R_DELETE_CONCURRENCY:
        op->rc = realm_registry_delete_concurrency(reg, t, op->fn, e);
        break;
    case R_TAG:
        op->rc = realm_registry_tag(reg, t, op->arn, op->body, e);
        break;
    case R_UNTAG: {
        const char *keys[MAX_UNTAG_KEYS + 1];
        size_t i, n = 0;
        json_t *k;
        json_array_foreach(op->body, i, k) keys[n++] = json_string_value(k);
        keys[n] = NULL;
        op->rc = realm_registry_untag(reg, t, op->arn, keys, e);
        break;
    }
    case R_LIST_TAGS:
        op->out = realm_registry_list_tags(reg, t, op->arn, e);
        break;
    case R_ACCOUNT:
        op->out = realm_registry_account_settings(reg, t, e);
        break;
    case R_PACKAGE: {
        char err[300];
        op->rc =
            realm_registry_code_owned(reg, t, op->hex) &&
                    realm_registry_code_fetch(reg, op->ctl->store, op->hex, err, sizeof(err)) == 0
                ? 0
                : -1;
        break;
    }
    }
}

static void account_runtimes(json_t *acct);
static int sweep_then(realm_control_t *ctl, rop_t *op);
static void rop_answer(rop_t *op);
static void start_download(rop_t *op);

static void rop_done(void *data, int status)
{
    rop_t *op = data;
    realm_control_t *ctl = op->ctl;
    realm_http_res_t *res = op->res;
    if (res) realm_http_res_on_abort(res, NULL, NULL);
    if (status != 0) {
        json_decref(op->out);
        op->out = NULL;
        op->rc = realm_error_set(&op->e, status, "%s", realm_err_message(status));
    }
    int is_empty = op->kind == R_DELETE_FUNCTION || op->kind == R_DELETE_ALIAS ||
                   op->kind == R_DELETE_CONCURRENCY || op->kind == R_TAG || op->kind == R_UNTAG;
    int ok = is_empty ? op->rc == 0 : op->out != NULL;
    if (status == 0 && op->kind == R_DELETE_FUNCTION && ok) {
        /* Deleting one version (a qualifier) leaves the function. Its
         * packages are gone when the answer comes (unless a package job is
         * in flight: then after it). */
        changed(ctl, op->tenant, op->fn, op->qualifier == NULL);
        ctl->sweep_wanted = 1;
        if (sweep_then(ctl, op)) return;
    }
    if (ok && op->kind == R_BODY && op->bop == &ctl->ops[OP_UPDATE_CONFIGURATION])
        changed(ctl, op->tenant, op->fn, 0);
    if (op->kind == R_PACKAGE) {
        if (status == 0 && op->rc == 0 && res && realm_pkg_store_has(ctl->store, op->hex)) {
            if (!too_busy(ctl, res)) {
                start_download(op);
                return;
            }
        } else if (res && status != 0) {
            send_reg_error(res, &op->e);
        } else if (res) {
            send_code(res, REALM_ERR_FUNCTION_NOT_FOUND, "No such code package");
        }
        rop_free(op);
        return;
    }
    if (ok && op->kind == R_ACCOUNT) account_runtimes(op->out);
    rop_answer(op);
}

static void rop_answer(rop_t *op)
{
    realm_http_res_t *res = op->res;
    if (res) {
        realm_http_res_on_abort(res, NULL, NULL);
        if (op->kind == R_DELETE_FUNCTION || op->kind == R_DELETE_ALIAS ||
            op->kind == R_DELETE_CONCURRENCY || op->kind == R_TAG || op->kind == R_UNTAG) {
            answer_empty(res, op->rc, &op->e);
        } else {
            answer(res, op->kind == R_BODY ? op->bop->status : 200, op->out, &op->e);
            op->out = NULL; /* answer took it */
        }
    }
    rop_free(op);
}

/* Refused at once (503) when the registry's queue is full or closing. */
static void rop_submit(rop_t *op)
{
    realm_control_t *ctl = op->ctl;
    int rc = realm_registry_async_in_flight(ctl->ra) >= CONTROL_MAX_QUEUED
                 ? REALM_ERR_BACKPRESSURE
                 : realm_registry_async_submit(ctl->ra, rop_work, rop_done, op);
    if (rc == 0) {
        realm_http_res_on_abort(op->res, rop_aborted, op);
        return;
    }
    send_code(op->res, rc,
              rc == REALM_ERR_BACKPRESSURE
                  ? "Too many control operations are waiting for the database; retry shortly"
                  : realm_err_message(rc));
    rop_free(op);
}

/* ---- package sweep ---- */

/*
 * The sweep runs in two steps: on the registry's worker, the packages no
 * version uses are listed (nothing is removed there); back on the loop,
 * each is removed unless an environment still runs it or a package job
 * began meanwhile (then the sweep is tried again after the jobs end).
 */
typedef struct {
    realm_control_t *ctl;
    json_t *unused; /* hex strings */
    rop_t *then;    /* answered once the sweep is done, or NULL */
} sweep_t;

static int note_unused(const char *hex, void *data)
{
    sweep_t *sw = data;
    if (!realm_registry_code_used(realm_registry_async_registry(sw->ctl->ra), hex))
        json_array_append_new(sw->unused, json_string(hex));
    return 1; /* removed later, on the loop */
}

static void sweep_work(realm_registry_t *reg, void *data)
{
    sweep_t *sw = data;
    realm_pkg_store_gc(sw->ctl->store, note_unused, sw);
    /* The database's copies too (PostgreSQL; after a grace: store.h). */
    realm_registry_code_forget_unused(reg);
}

static void sweep_done(void *data, int status)
{
    sweep_t *sw = data;
    realm_control_t *ctl = sw->ctl;
    ctl->is_sweeping = 0;
    size_t removed = 0, i;
    json_t *h;
    if (status == 0 && ctl->jobs == 0) {
        json_array_foreach(sw->unused, i, h)
        {
            char tree[4200];
            realm_pkg_store_tree_path(ctl->store, json_string_value(h), tree, sizeof(tree));
            /* Deleted or replaced while an environment runs it (or a call waits for one). */
            if (ctl->exec && realm_exec_uses_code(ctl->exec, tree)) continue;
            if (realm_pkg_store_remove(ctl->store, json_string_value(h)) == 0) removed++;
        }
    } else if (status == 0) {
        ctl->sweep_wanted = 1; /* a package job began: after it */
    }
    if (removed)
        realm_info("removed %zu code package%s no function uses", removed, removed == 1 ? "" : "s");
    json_decref(sw->unused);
    if (sw->then) rop_answer(sw->then);
    free(sw);
    maybe_sweep(ctl);
}

/* Starts a sweep if one is due and may run; op (may be NULL) is answered
 * when it is done. 1 if it started (and took op), 0 if not. */
static int sweep_then(realm_control_t *ctl, rop_t *op)
{
    if (!ctl->sweep_wanted || ctl->jobs > 0 || ctl->is_sweeping || !ctl->ra) return 0;
    sweep_t *sw = realm_calloc(1, sizeof(*sw));
    sw->ctl = ctl;
    sw->unused = json_array();
    sw->then = op;
    if (realm_registry_async_submit(ctl->ra, sweep_work, sweep_done, sw) != 0) {
        json_decref(sw->unused);
        free(sw);
        return 0;
    }
    if (op && op->res) realm_http_res_on_abort(op->res, rop_aborted, op);
    ctl->sweep_wanted = 0;
    ctl->is_sweeping = 1;
    return 1;
}

static void maybe_sweep(realm_control_t *ctl)
{
    sweep_then(ctl, NULL);
}

/* ---- package jobs ---- */

static void job_fail(job_t *j, int code, const char *msg)
{
    j->rc = realm_error_set(&j->err, code, "%s", msg);
}

static void job_work(uv_work_t *w)
{
    job_t *j = w->data;
    if (j->kind == JOB_DOWNLOAD) {
        FILE *f = fopen(j->path, "rb");
        char chunk[65536];
        size_t n;
        if (!f) {
            job_fail(j, REALM_ERR_FUNCTION_NOT_FOUND, "No such code package");
            return;
        }
        while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
            realm_buf_append(&j->file, chunk, n);
        fclose(f);
        return;
    }
    realm_buf_t zip;
    realm_buf_init(&zip);
    if (realm_str_b64_decode(j->b64, strlen(j->b64), &zip) != 0) {
        job_fail(j, REALM_ERR_INVALID_PARAMS,
                 "ZipFile is not valid base64: send the zip file's bytes base64-encoded");
    } else if (zip.len > j->ctl->limits.max_zip_bytes) {
        char msg[160];
        snprintf(msg, sizeof(msg), "The code package is %zu bytes; the limit is %llu (zipped)",
                 zip.len, (unsigned long long)j->ctl->limits.max_zip_bytes);
        job_fail(j, REALM_ERR_REQUEST_TOO_LARGE, msg);
    } else if (realm_pkg_store_put(j->ctl->store, zip.data, zip.len, &j->ctl->limits, &j->info,
                                   j->err.message, sizeof(j->err.message)) != 0) {
        j->rc = -1;
        j->err.code = REALM_ERR_INVALID_PARAMS;
    } else {
        j->zip = zip; /* the database keeps it too (commit_work) */
        return;
    }
    realm_buf_dispose(&zip);
}

static void job_aborted(realm_http_res_t *res, void *data)
{
    (void)res;
    job_t *j = data;
    j->res = NULL;
}

static void job_end(job_t *j)
{
    realm_control_t *ctl = j->ctl;
    if (j->res) realm_http_res_on_abort(j->res, NULL, NULL);
    json_decref(j->req);
    json_decref(j->out);
    realm_buf_dispose(&j->file);
    realm_buf_dispose(&j->zip);
    free(j);
    ctl->jobs--;
    maybe_sweep(ctl);
}

/* On the registry's worker: the commit (or the abort of a failed unpack). */
static void commit_work(realm_registry_t *reg, void *data)
{
    job_t *j = data;
    if (j->rc == 0 && realm_registry_code_keep(reg, j->info.hex, j->zip.data, j->zip.len) < 0)
        j->rc = realm_error_set(&j->err,
                                realm_registry_unreachable(reg) ? REALM_ERR_STORE_UNAVAILABLE
                                                                : REALM_ERR_INTERNAL_ERROR,
                                "The code package could not be stored in the database");
    realm_buf_dispose(&j->zip);
    if (j->rc != 0)
        realm_registry_update_abort(reg, j->tenant, j->name);
    else if (j->kind == JOB_CREATE)
        j->out = realm_registry_create_commit(reg, j->tenant, j->req, &j->info, &j->err);
    else
        j->out = realm_registry_code_commit(reg, j->tenant, j->name, j->req, &j->info, &j->err);
}

static void commit_done(void *data, int status)
{
    job_t *j = data;
    realm_control_t *ctl = j->ctl;
    if (status != 0 && j->rc == 0 && !j->out)
        realm_error_set(&j->err, status, "%s", realm_err_message(status));
    if (j->out) changed(ctl, j->tenant, j->name, 0);
    /* A refused commit, a dry run or replaced code may leave a package nobody uses. */
    if (!j->out || j->kind == JOB_CODE) ctl->sweep_wanted = 1;
    if (j->res) {
        realm_http_res_on_abort(j->res, NULL, NULL);
        answer(j->res, j->kind == JOB_CREATE ? 201 : 200, j->out, &j->err);
        j->out = NULL;
        j->res = NULL;
    }
    job_end(j);
}

static void job_done(uv_work_t *w, int status)
{
    job_t *j = w->data;
    if (status != 0 && j->rc == 0) job_fail(j, REALM_ERR_INTERNAL_ERROR, "the job was cancelled");
    if (j->kind == JOB_DOWNLOAD) {
        if (j->res && j->rc == 0)
            realm_http_res_send(j->res, 200, "application/zip", j->file.data, j->file.len);
        else if (j->res)
            send_reg_error(j->res, &j->err);
        j->res = NULL;
        job_end(j);
        return;
    }
    /* The package jobs are bounded (too_busy), so this submit finds room. */
    int rc = realm_registry_async_submit(j->ctl->ra, commit_work, commit_done, j);
    if (rc != 0) {
        if (j->rc == 0) realm_error_set(&j->err, rc, "%s", realm_err_message(rc));
        if (j->res) send_reg_error(j->res, &j->err);
        j->res = NULL;
        job_end(j);
    }
}

/* Starts a job's off-loop part. */
static void start_job(realm_control_t *ctl, realm_http_res_t *res, job_t *j)
{
    j->ctl = ctl;
    j->res = res;
    j->work.data = j;
    realm_http_res_on_abort(res, job_aborted, j);
    uv_queue_work(ctl->loop, &j->work, job_work, job_done);
}

static int too_busy(realm_control_t *ctl, realm_http_res_t *res)
{
    if ((uint64_t)ctl->jobs < ctl->cfg->max_package_jobs) return 0;
    realm_http_res_header(res, "Retry-After", "1");
    send_code(res, REALM_ERR_THROTTLED,
              "Too many code packages are being unpacked at once; retry in a "
              "second");
    return 1;
}

static void start_download(rop_t *op)
{
    realm_control_t *ctl = op->ctl;
    job_t *j = realm_calloc(1, sizeof(*j));
    j->kind = JOB_DOWNLOAD;
    realm_pkg_store_zip_path(ctl->store, op->hex, j->path, sizeof(j->path));
    request_id(op->res);
    ctl->jobs++;
    start_job(ctl, op->res, j);
    op->res = NULL;
    rop_free(op);
}

/* ---- handlers ---- */

/* On the registry's worker: everything but the package is checked. */
static void check_work(realm_registry_t *reg, void *data)
{
    job_t *j = data;
    j->b64 = j->kind == JOB_CREATE
                 ? realm_registry_create_check(reg, j->tenant, j->req, j->name, &j->err)
                 : realm_registry_code_check(reg, j->tenant, j->fn, j->req, j->name, &j->err);
}

static void check_done(void *data, int status)
{
    job_t *j = data;
    if (status != 0 || !j->b64) {
        if (status != 0) realm_error_set(&j->err, status, "%s", realm_err_message(status));
        if (j->res) send_reg_error(j->res, &j->err);
        j->res = NULL;
        job_end(j);
        return;
    }
    j->work.data = j;
    uv_queue_work(j->ctl->loop, &j->work, job_work, job_done);
}

/*
 * CreateFunction and UpdateFunctionCode: the registry checks all but the
 * package (on its worker), then a job unpacks it and the registry commits
 * (on its worker again).
 */
static void on_package_request(realm_http_req_t *req, realm_http_res_t *res, realm_control_t *ctl,
                               enum job_kind kind)
{
    json_t *body = body_json(req, res);
    if (!body) return;
    if (too_busy(ctl, res)) {
        json_decref(body);
        return;
    }
    job_t *j = realm_calloc(1, sizeof(*j));
    snprintf(j->tenant, sizeof(j->tenant), "%s", req->principal);
    snprintf(j->fn, sizeof(j->fn), "%s", fn_param(req));
    j->kind = kind;
    j->req = body;
    j->ctl = ctl;
    j->res = res;
    ctl->jobs++;
    int rc = realm_registry_async_submit(ctl->ra, check_work, check_done, j);
    if (rc != 0) {
        send_code(res, rc, realm_err_message(rc));
        j->res = NULL;
        job_end(j);
        return;
    }
    realm_http_res_on_abort(res, job_aborted, j);
}

static void on_create(realm_http_req_t *req, realm_http_res_t *res, void *data)
{
    on_package_request(req, res, data, JOB_CREATE);
}

static void on_update_code(realm_http_req_t *req, realm_http_res_t *res, void *data)
{
    on_package_request(req, res, data, JOB_CODE);
}

static void code_url_base(realm_http_req_t *req, const realm_control_t *ctl, char *out, size_t len)
{
    const char *host = realm_http_req_header(req, "Host");
    if (host && *host && !strpbrk(host, " \"<>\\"))
        snprintf(out, len, "http://%s", host);
    else
        snprintf(out, len, "http://%s:%d", ctl->cfg->host, ctl->cfg->control_port);
}

static void on_get_function(realm_http_req_t *req, realm_http_res_t *res, void *data)
{
    realm_control_t *ctl = data;
    char q[160], base[300];
    code_url_base(req, ctl, base, sizeof(base));
    rop_t *op = rop_new(ctl, req, res, R_GET_FUNCTION);
    op->qualifier = realm_strdup_opt(query(req, "Qualifier", q, sizeof(q)));
    op->base = realm_strdup(base);
    rop_submit(op);
}

static void on_get_configuration(realm_http_req_t *req, realm_http_res_t *res, void *data)
{
    char q[160];
    rop_t *op = rop_new(data, req, res, R_GET_CONFIGURATION);
    op->qualifier = realm_strdup_opt(query(req, "Qualifier", q, sizeof(q)));
    rop_submit(op);
}

static void on_body_op(realm_http_req_t *req, realm_http_res_t *res, void *data)
{
    const body_op_t *bop = data;
    json_t *body = body_json(req, res);
    if (!body) return;
    rop_t *op = rop_new(bop->ctl, req, res, R_BODY);
    op->bop = bop;
    op->body = body;
    rop_submit(op);
}

static void on_list_functions(realm_http_req_t *req, realm_http_res_t *res, void *data)
{
    char marker[256], fv[32];
    long max = max_items(req, res);
    if (max < 0) return;
    const char *v = query(req, "FunctionVersion", fv, sizeof(fv));
    if (v && strcmp(v, "ALL") != 0) {
        send_code(res, REALM_ERR_INVALID_PARAMS, "FunctionVersion must be ALL when given");
        return;
    }
    rop_t *op = rop_new(data, req, res, R_LIST_FUNCTIONS);
    op->marker = realm_strdup_opt(query(req, "Marker", marker, sizeof(marker)));
    op->max = max;
    op->flag = v != NULL;
    rop_submit(op);
}

static void on_delete_function(realm_http_req_t *req, realm_http_res_t *res, void *data)
{
    char q[160];
    rop_t *op = rop_new(data, req, res, R_DELETE_FUNCTION);
    op->qualifier = realm_strdup_opt(query(req, "Qualifier", q, sizeof(q)));
    rop_submit(op);
}

static void on_list_versions(realm_http_req_t *req, realm_http_res_t *res, void *data)
{
    char marker[64];
    long max = max_items(req, res);
    if (max < 0) return;
    rop_t *op = rop_new(data, req, res, R_LIST_VERSIONS);
    op->marker = realm_strdup_opt(query(req, "Marker", marker, sizeof(marker)));
    op->max = max;
    rop_submit(op);
}

static void on_list_aliases(realm_http_req_t *req, realm_http_res_t *res, void *data)
{
    char marker[160], fv[32];
    long max = max_items(req, res);
    if (max < 0) return;
    rop_t *op = rop_new(data, req, res, R_LIST_ALIASES);
    op->version = realm_strdup_opt(query(req, "FunctionVersion", fv, sizeof(fv)));
    op->marker = realm_strdup_opt(query(req, "Marker", marker, sizeof(marker)));
    op->max = max;
    rop_submit(op);
}

static const char *alias_param(realm_http_req_t *req)
{
    const char *v = realm_http_req_param(req, "Name");
    return v ? v : "";
}

static void alias_op(realm_http_req_t *req, realm_http_res_t *res, void *data, enum rop_kind kind)
{
    json_t *body = NULL;
    if (kind == R_UPDATE_ALIAS && !(body = body_json(req, res))) return;
    rop_t *op = rop_new(data, req, res, kind);
    op->alias = realm_strdup(alias_param(req));
    op->body = body;
    rop_submit(op);
}

static void on_get_alias(realm_http_req_t *req, realm_http_res_t *res, void *data)
{
    alias_op(req, res, data, R_GET_ALIAS);
}

static void on_update_alias(realm_http_req_t *req, realm_http_res_t *res, void *data)
{
    alias_op(req, res, data, R_UPDATE_ALIAS);
}

static void on_delete_alias(realm_http_req_t *req, realm_http_res_t *res, void *data)
{
    alias_op(req, res, data, R_DELETE_ALIAS);
}

static void on_get_concurrency(realm_http_req_t *req, realm_http_res_t *res, void *data)
{
    rop_submit(rop_new(data, req, res, R_GET_CONCURRENCY));
}

static void on_delete_concurrency(realm_http_req_t *req, realm_http_res_t *res, void *data)
{
    rop_submit(rop_new(data, req, res, R_DELETE_CONCURRENCY));
}

static const char *arn_param(realm_http_req_t *req)
{
    const char *v = realm_http_req_param(req, "ARN");
    return v ? v : "";
}

static void on_tag(realm_http_req_t *req, realm_http_res_t *res, void *data)
{
    json_t *body = body_json(req, res);
    if (!body) return;
    rop_t *op = rop_new(data, req, res, R_TAG);
    op->arn = realm_strdup(arn_param(req));
    op->body = body;
    rop_submit(op);
}

static void on_untag(realm_http_req_t *req, realm_http_res_t *res, void *data)
{
    char buf[132];
    json_t *keys = json_array();
    while (json_array_size(keys) < MAX_UNTAG_KEYS &&
           realm_http_query_param(req->query, "tagKeys", json_array_size(keys), buf, sizeof(buf)) >=
               0)
        json_array_append_new(keys, json_string(buf));
    if (json_array_size(keys) == 0) {
        json_decref(keys);
        send_code(res, REALM_ERR_INVALID_PARAMS,
                  "tagKeys is required: the keys of the tags to remove");
        return;
    }
    rop_t *op = rop_new(data, req, res, R_UNTAG);
    op->arn = realm_strdup(arn_param(req));
    op->body = keys;
    rop_submit(op);
}

static void on_list_tags(realm_http_req_t *req, realm_http_res_t *res, void *data)
{
    rop_t *op = rop_new(data, req, res, R_LIST_TAGS);
    op->arn = realm_strdup(arn_param(req));
    rop_submit(op);
}

/* Realm's own member of GetAccountSettings (AWS clients ignore it): the
 * runtimes this server can run, each with its interpreter's exact version
 * (null: the function's own bootstrap), as the server probed them at start. */
static void account_runtimes(json_t *acct)
{
    json_t *rts = json_object();
    const realm_runtimes_entry_t *rt;
    for (size_t i = 0; (rt = realm_runtimes_at(i)) != NULL; i++) {
        const char *v = realm_runtimes_version(rt);
        if (v) json_object_set_new(rts, rt->name, v[0] ? json_string(v) : json_null());
    }
    json_object_set_new(acct, "Runtimes", rts);
}

static void on_account(realm_http_req_t *req, realm_http_res_t *res, void *data)
{
    rop_submit(rop_new(data, req, res, R_ACCOUNT));
}

static void on_package(realm_http_req_t *req, realm_http_res_t *res, void *data)
{
    const char *file = realm_http_req_param(req, "File");
    int ok = file && strlen(file) == REALM_PKG_HEX_LEN + 4 &&
             strcmp(file + REALM_PKG_HEX_LEN, ".zip") == 0 &&
             strspn(file, "0123456789abcdef") == REALM_PKG_HEX_LEN;
    if (!ok) {
        send_code(res, REALM_ERR_FUNCTION_NOT_FOUND, "No such code package");
        return;
    }
    /* Only a package of the caller's own functions: another tenant's reads as missing. */
    rop_t *op = rop_new(data, req, res, R_PACKAGE);
    snprintf(op->hex, sizeof(op->hex), "%.*s", REALM_PKG_HEX_LEN, file);
    rop_submit(op);
}

/* ---- life ---- */

static void add_routes(realm_control_t *ctl, realm_http_server_t *http)
{
    /* A base64 zip is 4/3 of the zip, plus the JSON around it. */
    uint64_t code_body = ctl->limits.max_zip_bytes / 3 * 4 + 8 + (1u << 20);
    static const struct {
        body_op_fn fn;
        int status;
    } ops[OP_COUNT] = {
        [OP_UPDATE_CONFIGURATION] = {realm_registry_update_configuration, 200},
        [OP_PUBLISH] = {realm_registry_publish_version, 201},
        [OP_CREATE_ALIAS] = {realm_registry_create_alias, 201},
        [OP_PUT_CONCURRENCY] = {realm_registry_put_concurrency, 200},
    };
    for (int i = 0; i < OP_COUNT; i++)
        ctl->ops[i] = (body_op_t){.ctl = ctl, .fn = ops[i].fn, .status = ops[i].status};
    static const struct {
        const char *method, *path;
        realm_http_handler_cb cb;
        int is_code;
        int op; /* for on_body_op: its ops[] index, else -1 */
    } routes[] = {
        {"POST", "/2015-03-31/functions", on_create, 1, -1},
        {"GET", "/2015-03-31/functions/", on_list_functions, 0, -1},
        {"GET", "/2015-03-31/functions", on_list_functions, 0, -1},
        {"GET", "/2015-03-31/functions/{FunctionName}", on_get_function, 0, -1},
        {"DELETE", "/2015-03-31/functions/{FunctionName}", on_delete_function, 0, -1},
        {"GET", "/2015-03-31/functions/{FunctionName}/configuration", on_get_configuration, 0, -1},
        {"PUT", "/2015-03-31/functions/{FunctionName}/configuration", on_body_op, 0,
         OP_UPDATE_CONFIGURATION},
        {"PUT", "/2015-03-31/functions/{FunctionName}/code", on_update_code, 1, -1},
        {"POST", "/2015-03-31/functions/{FunctionName}/versions", on_body_op, 0, OP_PUBLISH},
        {"GET", "/2015-03-31/functions/{FunctionName}/versions", on_list_versions, 0, -1},
        {"POST", "/2015-03-31/functions/{FunctionName}/aliases", on_body_op, 0, OP_CREATE_ALIAS},
        {"GET", "/2015-03-31/functions/{FunctionName}/aliases", on_list_aliases, 0, -1},
        {"GET", "/2015-03-31/functions/{FunctionName}/aliases/{Name}", on_get_alias, 0, -1},
        {"PUT", "/2015-03-31/functions/{FunctionName}/aliases/{Name}", on_update_alias, 0, -1},
        {"DELETE", "/2015-03-31/functions/{FunctionName}/aliases/{Name}", on_delete_alias, 0, -1},
        {"PUT", "/2017-10-31/functions/{FunctionName}/concurrency", on_body_op, 0,
         OP_PUT_CONCURRENCY},
        {"DELETE", "/2017-10-31/functions/{FunctionName}/concurrency", on_delete_concurrency, 0,
         -1},
        {"GET", "/2019-09-30/functions/{FunctionName}/concurrency", on_get_concurrency, 0, -1},
        {"POST", "/2017-03-31/tags/{ARN}", on_tag, 0, -1},
        {"DELETE", "/2017-03-31/tags/{ARN}", on_untag, 0, -1},
        {"GET", "/2017-03-31/tags/{ARN}", on_list_tags, 0, -1},
        {"GET", "/2016-08-19/account-settings/", on_account, 0, -1},
        {"GET", "/2016-08-19/account-settings", on_account, 0, -1},
        {"GET", "/realm/packages/{File}", on_package, 0, -1},
    };
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++)
        realm_http_server_route(http, routes[i].method, routes[i].path,
                                routes[i].is_code ? code_body : 0, routes[i].cb,
                                routes[i].op >= 0 ? (void *)&ctl->ops[routes[i].op] : ctl);
    realm_http_server_set_error_cb(http, on_http_error, ctl);
}

realm_control_t *realm_control_new(uv_loop_t *loop, realm_http_server_t *http,
                                   const realm_config_t *cfg, realm_registry_async_t *ra,
                                   realm_pkg_store_t *store)
{
    realm_control_t *ctl = realm_calloc(1, sizeof(*ctl));
    ctl->loop = loop;
    ctl->cfg = cfg;
    ctl->limits = (realm_pkg_limits_t){.max_zip_bytes = cfg->max_code_zip_bytes,
                                       .max_unzipped_bytes = cfg->max_code_unzipped_bytes,
                                       .max_entries = cfg->max_code_entries};
    ctl->ra = ra;
    ctl->store = store;
    ctl->sweep_wanted = 1;
    maybe_sweep(ctl);
    add_routes(ctl, http);
    return ctl;
}

void realm_control_free(realm_control_t *ctl)
{
    free(ctl);
}

void realm_control_set_exec(realm_control_t *ctl, const realm_exec_t *x)
{
    ctl->exec = x;
}

void realm_control_sweep(realm_control_t *ctl)
{
    ctl->sweep_wanted = 1;
    maybe_sweep(ctl);
}

void realm_control_set_change_cb(realm_control_t *ctl, realm_control_change_cb cb, void *data)
{
    ctl->on_change = cb;
    ctl->change_data = data;
}
