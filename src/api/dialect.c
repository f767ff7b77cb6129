/*
 * dialect.c - Lambda@Home's dialect of the control API (see dialect.h).
 */
#include "api/dialect.h"

#include "proto/lah.h"

#include <stdlib.h>
#include <string.h>

enum { MOUNT_LAH = 1 };

/* Every JSON body of a response under the prefix, errors in Lambda@Home's ErrorShape. */
static json_t *lah_filter(realm_http_res_t *res, int status, json_t *body, void *data)
{
    (void)data;
    json_t *out;
    if (status >= 400) {
        char type[128];
        if (realm_http_res_header_value(res, "x-amzn-ErrorType", type, sizeof(type)) < 0)
            type[0] = '\0';
        out = realm_lah_error_from_aws(body, type);
    } else {
        out = realm_lah_from_aws(body);
    }
    json_decref(body);
    return out;
}

/*
 * Is this route's body the function's payload, not an operation's
 * parameters? Invoke (.../invocations), InvokeWithResponseStream
 * (.../response-streaming-invocations) and InvokeAsync (.../invoke-async).
 */
static int is_payload(const char *route_path)
{
    size_t n = strlen(route_path);
    static const char inv[] = "invocations";
    return (n >= sizeof(inv) - 1 && strcmp(route_path + n - (sizeof(inv) - 1), inv) == 0) ||
           strstr(route_path, "/invoke-async") != NULL;
}

/* A control operation's JSON object body, rewritten in AWS's form (others are left to fail). */
static void lah_request(realm_http_req_t *req)
{
    if (req->body.len == 0 || is_payload(req->route_path)) return;
    json_t *j = json_loadb(req->body.data, req->body.len, 0, NULL);
    if (!json_is_object(j)) {
        json_decref(j);
        return;
    }
    json_t *aws = realm_lah_to_aws(j);
    json_decref(j);
    char *text = json_dumps(aws, JSON_COMPACT);
    json_decref(aws);
    if (!text) return;
    realm_buf_reset(&req->body);
    realm_buf_append(&req->body, text, strlen(text));
    free(text);
}

/* A request admitted (now, or after its key was looked up): in AWS's form for the routes. */
static void on_admitted(realm_http_req_t *req)
{
    if (req->mount == MOUNT_LAH) lah_request(req);
}

int realm_dialect_control_guard(realm_http_req_t *req, realm_http_res_t *res, void *data)
{
    if (req->mount == MOUNT_LAH) realm_http_res_set_json_filter(res, lah_filter, NULL);
    int rc = realm_authn_control_guard(req, res, data);
    if (rc == 0) on_admitted(req); /* else refused, or admitted later through on_admitted */
    return rc;
}

/* GET /admin/warm-pool/{FunctionName}, under the prefix only. */
static void on_warm_pool(realm_http_req_t *req, realm_http_res_t *res, void *data)
{
    realm_exec_t *exec = data;
    if (req->mount != MOUNT_LAH) {
        realm_http_res_error(res, 404, "no such path");
        return;
    }
    const char *name = realm_http_req_param(req, "FunctionName");
    size_t n = realm_exec_env_count(exec, req->principal, name ? name : "");
    realm_http_res_send_json(res, 200, json_pack("{s:I, s:[]}", "total", (json_int_t)n, "entries"));
}

void realm_dialect_routes(realm_http_server_t *control, realm_exec_t *exec)
{
    realm_http_server_route(control, "GET", "/admin/warm-pool/{FunctionName}", 1, on_warm_pool,
                            exec);
}

void realm_dialect_attach(realm_http_server_t *control, realm_authn_t *authn)
{
    realm_http_server_mount(control, REALM_DIALECT_LAH_PREFIX, MOUNT_LAH);
    realm_http_server_set_guard(control, realm_dialect_control_guard, authn);
    realm_authn_on_admitted(authn, on_admitted);
}
