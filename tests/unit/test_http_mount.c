/*
 * test_http_mount.c - the HTTP server's mounts (realm_http_server_mount):
 * every route also under a prefix, the request tagged, req->path kept as
 * sent and req->route_path the rest; prefixes that only look alike do not
 * match. Routing is checked without a connection (realm_http_server_match).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "fixture.h"
#include "http/server.h"

#include <stdlib.h>
#include <string.h>

static void handler(realm_http_req_t *req, realm_http_res_t *res, void *data)
{
    (void)req, (void)res, (void)data;
}

/* Routes path with method; returns the status (0: routed) and frees the captures. */
static int route(realm_http_server_t *s, const char *method, const char *path, int *mount,
                 char *route_path, size_t route_path_len, char *param, size_t param_len)
{
    realm_http_req_t req;
    memset(&req, 0, sizeof(req));
    req.method_name = method;
    req.path = path;
    req.query = "";
    const char *pattern = NULL;
    int rc = realm_http_server_match(s, &req, &pattern, NULL);
    *mount = req.mount;
    snprintf(route_path, route_path_len, "%s", req.route_path ? req.route_path : "(null)");
    if (param) snprintf(param, param_len, "%s", req.params_cnt ? req.param_values[0] : "");
    assert_ptr_equal(req.path, path); /* as sent */
    for (size_t i = 0; i < req.params_cnt; i++)
        free(req.param_values[i]);
    return rc;
}

static void test_mount(void **state)
{
    (void)state;
    realm_http_limits_t lim = {.max_header_bytes = 8192, .max_body_bytes = 1024};
    realm_http_server_t *s = realm_http_server_new("t", &lim);
    realm_http_server_route(s, "GET", "/healthz", 0, handler, NULL);
    realm_http_server_route(s, "GET", "/2015-03-31/functions/{FunctionName}", 0, handler, NULL);
    realm_http_server_mount(s, "/lah", 7);
    int mount;
    char rp[128], param[64];

    assert_int_equal(route(s, "GET", "/2015-03-31/functions/f%20x", &mount, rp, sizeof(rp), param,
                           sizeof(param)),
                     0);
    assert_int_equal(mount, 0);
    assert_string_equal(rp, "/2015-03-31/functions/f%20x");
    assert_string_equal(param, "f x");

    assert_int_equal(route(s, "GET", "/lah/2015-03-31/functions/g", &mount, rp, sizeof(rp), param,
                           sizeof(param)),
                     0);
    assert_int_equal(mount, 7);
    assert_string_equal(rp, "/2015-03-31/functions/g");
    assert_string_equal(param, "g");

    assert_int_equal(route(s, "HEAD", "/lah/healthz", &mount, rp, sizeof(rp), NULL, 0), 0);
    assert_int_equal(mount, 7);
    assert_string_equal(rp, "/healthz");
    /* A method the path does not have is 405 under the mount too. */
    assert_int_equal(route(s, "POST", "/lah/healthz", &mount, rp, sizeof(rp), NULL, 0), 405);

    /* Only the whole segment: "/lahx", "/lah" alone, and the prefix deeper in are no mount. */
    static const char *const misses[] = {"/lahx/healthz",  "/lah",         "/lah/",
                                         "/x/lah/healthz", "/LAH/healthz", "/lah/lah/healthz"};
    for (size_t i = 0; i < sizeof(misses) / sizeof(misses[0]); i++) {
        int rc = route(s, "GET", misses[i], &mount, rp, sizeof(rp), NULL, 0);
        if (rc != 404) fail_msg("%s routed (%d)", misses[i], rc);
    }
    /* An escaped control character is refused before any mount. */
    assert_int_equal(route(s, "GET", "/lah/healthz%00", &mount, rp, sizeof(rp), NULL, 0), 400);
    assert_int_equal(mount, 0);
    realm_http_server_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mount),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
