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
    realm_registry_t *reg;
    realm_pkg_store_t *store;
    realm_pkg_limits_t limits;
    int jobs;                 /* package jobs in flight */
    int sweep_wanted;         /* a sweep is due once jobs reaches 0 */
    const realm_exec_t *exec; /* borrowed, or NULL */
    body_op_t ops[OP_COUNT];
    realm_control_change_cb on_change;
    void *change_data;
};

enum job_kind { JOB_CREATE, JOB_CODE, JOB_DOWNLOAD };

typedef struct {
    uv_work_t work;
    realm_control_t *ctl;
    realm_http_res_t *res; /* NULL once the client went away */
    enum job_kind kind;
    json_t *req;     /* owned */
    const char *b64; /* borrowed from req */
    char name[65];
    char tenant[80]; /* the request's principal */
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
    if (!ctl->on_change ||
        realm_registry_parse_name(ctl->reg, tenant, fn_name, 1, name, q, &e) != 0)
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

/* ---- package sweep ---- */

static int keep_package(const char *hex, void *data)
{
    realm_control_t *ctl = data;
    if (realm_registry_code_used(ctl->reg, hex)) return 1;
    if (!ctl->exec) return 0;
    /* Deleted or replaced while an environment runs it (or a call waits for one). */
    char tree[4200];
    realm_pkg_store_tree_path(ctl->store, hex, tree, sizeof(tree));
    return realm_exec_uses_code(ctl->exec, tree);
}

static void maybe_sweep(realm_control_t *ctl)
{
    if (!ctl->sweep_wanted || ctl->jobs > 0) return;
    ctl->sweep_wanted = 0;
    size_t n = realm_pkg_store_gc(ctl->store, keep_package, ctl);
    if (n) realm_info("removed %zu code package%s no function uses", n, n == 1 ? "" : "s");
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
    }
    realm_buf_dispose(&zip);
}

static void job_aborted(realm_http_res_t *res, void *data)
{
    (void)res;
    job_t *j = data;
    j->res = NULL;
}

static void job_done(uv_work_t *w, int status)
{
    job_t *j = w->data;
    realm_control_t *ctl = j->ctl;
    realm_error_t e = {0};
    json_t *out = NULL;
    int code = 200;
    if (status != 0 && j->rc == 0) job_fail(j, REALM_ERR_INTERNAL_ERROR, "the job was cancelled");
    if (j->kind == JOB_DOWNLOAD) {
        if (j->res && j->rc == 0)
            realm_http_res_send(j->res, 200, "application/zip", j->file.data, j->file.len);
        else if (j->res)
            send_reg_error(j->res, &j->err);
        realm_buf_dispose(&j->file);
        goto done;
    }
    if (j->rc != 0) {
        realm_registry_update_abort(ctl->reg, j->tenant, j->name);
        e = j->err;
    } else if (j->kind == JOB_CREATE) {
        out = realm_registry_create_commit(ctl->reg, j->tenant, j->req, &j->info, &e);
        if (out) changed(ctl, j->tenant, j->name, 0);
        code = 201;
    } else {
        out = realm_registry_code_commit(ctl->reg, j->tenant, j->name, j->req, &j->info, &e);
        if (out) changed(ctl, j->tenant, j->name, 0);
    }
    /* A refused commit, a dry run or replaced code may leave a package nobody uses. */
    if (!out || j->kind == JOB_CODE) ctl->sweep_wanted = 1;
    if (j->res)
        answer(j->res, code, out, &e);
    else
        json_decref(out);
done:
    json_decref(j->req);
    free(j);
    ctl->jobs--;
    maybe_sweep(ctl);
}

/* Starts a job, or answers 429 when too many are in flight. Takes req. */
static void start_job(realm_control_t *ctl, realm_http_res_t *res, job_t *j)
{
    j->ctl = ctl;
    j->res = res;
    j->work.data = j;
    ctl->jobs++;
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

/* ---- handlers ---- */

/*
 * CreateFunction and UpdateFunctionCode: the registry checks all but the
 * package, then a job unpacks it and the registry commits (job_done).
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
    realm_error_t e;
    job_t *j = realm_calloc(1, sizeof(*j));
    snprintf(j->tenant, sizeof(j->tenant), "%s", req->principal);
    j->b64 =
        kind == JOB_CREATE
            ? realm_registry_create_check(ctl->reg, req->principal, body, j->name, &e)
            : realm_registry_code_check(ctl->reg, req->principal, fn_param(req), body, j->name, &e);
    if (!j->b64) {
        free(j);
        json_decref(body);
        send_reg_error(res, &e);
        return;
    }
    j->kind = kind;
    j->req = body;
    start_job(ctl, res, j);
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
    realm_error_t e;
    code_url_base(req, ctl, base, sizeof(base));
    answer(res, 200,
           realm_registry_get_function(ctl->reg, req->principal, fn_param(req),
                                       query(req, "Qualifier", q, sizeof(q)), base, &e),
           &e);
}

static void on_get_configuration(realm_http_req_t *req, realm_http_res_t *res, void *data)
{
    realm_control_t *ctl = data;
    char q[160];
    realm_error_t e;
    answer(res, 200,
           realm_registry_get_configuration(ctl->reg, req->principal, fn_param(req),
                                            query(req, "Qualifier", q, sizeof(q)), &e),
           &e);
}

static void on_body_op(realm_http_req_t *req, realm_http_res_t *res, void *data)
{
    const body_op_t *op = data;
    json_t *body = body_json(req, res);
    if (!body) return;
    realm_error_t e;
    json_t *out = op->fn(op->ctl->reg, req->principal, fn_param(req), body, &e);
    if (out && op == &op->ctl->ops[OP_UPDATE_CONFIGURATION])
        changed(op->ctl, req->principal, fn_param(req), 0);
    answer(res, op->status, out, &e);
    json_decref(body);
}

static void on_list_functions(realm_http_req_t *req, realm_http_res_t *res, void *data)
{
    realm_control_t *ctl = data;
    char marker[256], fv[32];
    long max = max_items(req, res);
    if (max < 0) return;
    const char *v = query(req, "FunctionVersion", fv, sizeof(fv));
    if (v && strcmp(v, "ALL") != 0) {
        send_code(res, REALM_ERR_INVALID_PARAMS, "FunctionVersion must be ALL when given");
        return;
    }
    realm_error_t e;
    answer(res, 200,
           realm_registry_list_functions(ctl->reg, req->principal,
                                         query(req, "Marker", marker, sizeof(marker)), max,
                                         v != NULL, &e),
           &e);
}

static void on_delete_function(realm_http_req_t *req, realm_http_res_t *res, void *data)
{
    realm_control_t *ctl = data;
    char q[160];
    realm_error_t e;
    int rc = realm_registry_delete_function(ctl->reg, req->principal, fn_param(req),
                                            query(req, "Qualifier", q, sizeof(q)), &e);
    if (rc == 0) {
        /* Deleting one version (a qualifier) leaves the function. */
        changed(ctl, req->principal, fn_param(req), query(req, "Qualifier", q, sizeof(q)) == NULL);
        ctl->sweep_wanted = 1;
        maybe_sweep(ctl);
    }
    answer_empty(res, rc, &e);
}

static void on_list_versions(realm_http_req_t *req, realm_http_res_t *res, void *data)
{
    realm_control_t *ctl = data;
    char marker[64];
    long max = max_items(req, res);
    if (max < 0) return;
    realm_error_t e;
    answer(res, 200,
           realm_registry_list_versions(ctl->reg, req->principal, fn_param(req),
                                        query(req, "Marker", marker, sizeof(marker)), max, &e),
           &e);
}

static void on_list_aliases(realm_http_req_t *req, realm_http_res_t *res, void *data)
{
    realm_control_t *ctl = data;
    char marker[160], fv[32];
    long max = max_items(req, res);
    if (max < 0) return;
    realm_error_t e;
    answer(res, 200,
           realm_registry_list_aliases(ctl->reg, req->principal, fn_param(req),
                                       query(req, "FunctionVersion", fv, sizeof(fv)),
                                       query(req, "Marker", marker, sizeof(marker)), max, &e),
           &e);
}

static const char *alias_param(realm_http_req_t *req)
{
    const char *v = realm_http_req_param(req, "Name");
    return v ? v : "";
}

static void on_get_alias(realm_http_req_t *req, realm_http_res_t *res, void *data)
{
    realm_control_t *ctl = data;
    realm_error_t e;
    answer(res, 200,
           realm_registry_get_alias(ctl->reg, req->principal, fn_param(req), alias_param(req), &e),
           &e);
}

static void on_update_alias(realm_http_req_t *req, realm_http_res_t *res, void *data)
{
    realm_control_t *ctl = data;
    json_t *body = body_json(req, res);
    if (!body) return;
    realm_error_t e;
    answer(res, 200,
           realm_registry_update_alias(ctl->reg, req->principal, fn_param(req), alias_param(req),
                                       body, &e),
           &e);
    json_decref(body);
}

static void on_delete_alias(realm_http_req_t *req, realm_http_res_t *res, void *data)
{
    realm_control_t *ctl = data;
    realm_error_t e;
    answer_empty(
        res,
        realm_registry_delete_alias(ctl->reg, req->principal, fn_param(req), alias_param(req), &e),
        &e);
}

static void on_get_concurrency(realm_http_req_t *req, realm_http_res_t *res, void *data)
{
    realm_control_t *ctl = data;
    realm_error_t e;
    answer(res, 200, realm_registry_get_concurrency(ctl->reg, req->principal, fn_param(req), &e),
           &e);
}

static void on_delete_concurrency(realm_http_req_t *req, realm_http_res_t *res, void *data)
{
    realm_control_t *ctl = data;
    realm_error_t e;
    answer_empty(
        res, realm_registry_delete_concurrency(ctl->reg, req->principal, fn_param(req), &e), &e);
}

static const char *arn_param(realm_http_req_t *req)
{
    const char *v = realm_http_req_param(req, "ARN");
    return v ? v : "";
}

static void on_tag(realm_http_req_t *req, realm_http_res_t *res, void *data)
{
    realm_control_t *ctl = data;
    json_t *body = body_json(req, res);
    if (!body) return;
    realm_error_t e;
    answer_empty(res, realm_registry_tag(ctl->reg, req->principal, arn_param(req), body, &e), &e);
    json_decref(body);
}

#define MAX_UNTAG_KEYS 50

static void on_untag(realm_http_req_t *req, realm_http_res_t *res, void *data)
{
    realm_control_t *ctl = data;
    char bufs[MAX_UNTAG_KEYS][132];
    const char *keys[MAX_UNTAG_KEYS + 1];
    size_t n = 0;
    while (n < MAX_UNTAG_KEYS &&
           realm_http_query_param(req->query, "tagKeys", n, bufs[n], sizeof(bufs[n])) >= 0) {
        keys[n] = bufs[n];
        n++;
    }
    keys[n] = NULL;
    if (n == 0) {
        send_code(res, REALM_ERR_INVALID_PARAMS,
                  "tagKeys is required: the keys of the tags to remove");
        return;
    }
    realm_error_t e;
    answer_empty(res, realm_registry_untag(ctl->reg, req->principal, arn_param(req), keys, &e), &e);
}

static void on_list_tags(realm_http_req_t *req, realm_http_res_t *res, void *data)
{
    realm_control_t *ctl = data;
    realm_error_t e;
    answer(res, 200, realm_registry_list_tags(ctl->reg, req->principal, arn_param(req), &e), &e);
}

static void on_account(realm_http_req_t *req, realm_http_res_t *res, void *data)
{
    (void)req;
    realm_control_t *ctl = data;
    realm_error_t e;
    json_t *acct = realm_registry_account_settings(ctl->reg, req->principal, &e);
    /* Realm's own member (AWS clients ignore it): the runtimes this server
     * can run, each with its interpreter's exact version (null: the
     * function's own bootstrap), as the server probed them at start. */
    if (acct) {
        json_t *rts = json_object();
        const realm_runtimes_entry_t *rt;
        for (size_t i = 0; (rt = realm_runtimes_at(i)) != NULL; i++) {
            const char *v = realm_runtimes_version(rt);
            if (v) json_object_set_new(rts, rt->name, v[0] ? json_string(v) : json_null());
        }
        json_object_set_new(acct, "Runtimes", rts);
    }
    answer(res, 200, acct, &e);
}

static void on_package(realm_http_req_t *req, realm_http_res_t *res, void *data)
{
    realm_control_t *ctl = data;
    const char *file = realm_http_req_param(req, "File");
    char hex[REALM_PKG_HEX_LEN + 1];
    int ok = file && strlen(file) == REALM_PKG_HEX_LEN + 4 &&
             strcmp(file + REALM_PKG_HEX_LEN, ".zip") == 0 &&
             strspn(file, "0123456789abcdef") == REALM_PKG_HEX_LEN;
    if (ok) {
        snprintf(hex, sizeof(hex), "%.*s", REALM_PKG_HEX_LEN, file);
        /* Only a package of the caller's own functions: another tenant's reads as missing. */
        ok = realm_registry_code_owned(ctl->reg, req->principal, hex) &&
             realm_pkg_store_has(ctl->store, hex);
    }
    if (!ok) {
        send_code(res, REALM_ERR_FUNCTION_NOT_FOUND, "No such code package");
        return;
    }
    if (too_busy(ctl, res)) return;
    job_t *j = realm_calloc(1, sizeof(*j));
    j->kind = JOB_DOWNLOAD;
    realm_pkg_store_zip_path(ctl->store, hex, j->path, sizeof(j->path));
    request_id(res);
    start_job(ctl, res, j);
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
                                   const realm_config_t *cfg, realm_registry_t *reg,
                                   realm_pkg_store_t *store)
{
    realm_control_t *ctl = realm_calloc(1, sizeof(*ctl));
    ctl->loop = loop;
    ctl->cfg = cfg;
    ctl->limits = (realm_pkg_limits_t){.max_zip_bytes = cfg->max_code_zip_bytes,
                                       .max_unzipped_bytes = cfg->max_code_unzipped_bytes,
                                       .max_entries = cfg->max_code_entries};
    ctl->reg = reg;
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
