"""Lambda@Home's own clients (issue 15; docs/compatibility.md): GET /healthz on
the control port (200 "OK", unsigned even with --auth, nothing else leaked;
signed requests to other routes unaffected), and Lambda@Home's snake_case
dialect under the /lambda-at-home prefix, requests and answers, while the
same functions seen without the prefix (boto3, raw HTTP) keep AWS's shapes.
Invoke payloads are the function's and are never renamed.

Lambda@Home's own bootstraps and e2e suite are third-party code that CI
cannot fetch: they were run by hand (docs/compatibility.md has the results);
here raw HTTP requests in the shapes its e2e client (test-client.js) sends
stand in for it."""
import base64
import json
import subprocess

import pytest

from conftest import Server, finish, realm_bin, db_args
from fn_util import (NODE_ECHO, build_zip, decode_event_stream, deploy_node, fn_client, fn_server,
                     http_request, invoke_path)
from lambda_util import REGION, lambda_client

LAH = "/lambda-at-home"
ADMIN_KEY = "adm-lah-0123456789abcdef0123456789abcdef"


@pytest.fixture(scope="module")
def srv():
    with fn_server() as s:
        yield s


@pytest.fixture(scope="module")
def lam(srv):
    return fn_client(srv)


def req(srv, method, path, body=None, headers=None):
    """(status, headers, parsed JSON body or the raw bytes) of an unsigned request."""
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    data = json.dumps(body).encode() if body is not None else b""
    status, hs, raw = http_request(srv.ports["control"], method, path, data, h)
    try:
        return status, hs, json.loads(raw) if raw else None
    except ValueError:
        return status, hs, raw


def lah_create(srv, name, **extra):
    """CreateFunction as Lambda@Home's e2e client sends it."""
    body = {"function_name": name, "runtime": "nodejs20.x", "handler": "index.handler",
            "code": {"zip_file": base64.b64encode(build_zip({"index.js": NODE_ECHO})).decode()},
            "description": f"Test function for {name}", "timeout": 30, "memory_size": 512}
    body.update(extra)
    return req(srv, "POST", LAH + "/2015-03-31/functions", body)


# ---- /healthz ---------------------------------------------------------------------------


def test_healthz_answers_ok_and_nothing_else(srv):
    status, hs, body = http_request(srv.ports["control"], "GET", "/healthz")
    assert (status, body) == (200, b"OK")
    assert hs["content-type"].startswith("text/plain")
    assert "x-amzn-requestid" not in hs
    # HEAD is served too (a load balancer may probe with it), without a body.
    status, hs, body = http_request(srv.ports["control"], "HEAD", "/healthz")
    assert (status, body, hs["content-length"]) == (200, b"", "2")
    # The prefix the dialect lives under has it as well (Lambda@Home's e2e polls it there).
    assert http_request(srv.ports["control"], "GET", LAH + "/healthz")[::2] == (200, b"OK")
    # Only GET/HEAD: other methods are an unknown operation, in AWS's shape.
    status, hs, body = http_request(srv.ports["control"], "POST", "/healthz", b"{}")
    assert status == 405 and hs["x-amzn-errortype"] == "UnknownOperationException", body


@pytest.fixture(scope="module")
def auth_srv():
    s = Server("--auth", "--admin-key", ADMIN_KEY, "--shutdown-grace-ms", "1000")
    try:
        yield s
    finally:
        finish(s)


def keys_create(srv, tenant):
    p = subprocess.run([realm_bin(), "keys", "create", "--tenant", tenant, "--json",
                        "--data-dir", srv.data_dir, *db_args(srv.data_dir)], capture_output=True,
                       text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def test_healthz_is_open_with_auth_and_only_it(auth_srv):
    port = auth_srv.ports["control"]
    for path in ("/healthz", LAH + "/healthz"):
        status, _, body = http_request(port, "GET", path)
        assert (status, body) == (200, b"OK"), path
    # Every other route still needs a signature: unsigned is 403, in each dialect's shape.
    status, hs, body = http_request(port, "GET", "/2015-03-31/functions")
    assert status == 403 and hs["x-amzn-errortype"] == "MissingAuthenticationTokenException"
    assert json.loads(body) == {"Type": "User", "message": "Missing Authentication Token"}
    status, hs, body = http_request(port, "GET", LAH + "/2015-03-31/functions")
    assert status == 403
    assert json.loads(body) == {"error_type": "MissingAuthenticationTokenException",
                                "error_message": "Missing Authentication Token"}
    # A path that only resembles it is not open.
    for path in ("/healthz/x", "/healthzz", "//healthz", "/2015-03-31/healthz"):
        status, _, _ = http_request(port, "GET", path)
        assert status in (403, 404), (path, status)
        assert status != 200
    # Signed requests work as before.
    key = keys_create(auth_srv, "lah-tenant")
    lam = lambda_client(auth_srv, akid=key["access_key_id"], secret=key["secret_access_key"])
    assert lam.list_functions()["Functions"] == []
    # A wrong signature on /healthz changes nothing: it is not checked there.
    status, _, body = http_request(port, "GET", "/healthz",
                                   headers={"Authorization": "AWS4-HMAC-SHA256 nonsense"})
    assert (status, body) == (200, b"OK")


# ---- the dialect ------------------------------------------------------------------------


def test_create_get_list_in_snake_case(srv, lam):
    status, _, fn = lah_create(srv, "lah-one", environment={"MY_KEY": "v", "camelKey": "w"})
    assert status == 201, fn
    assert fn["function_name"] == "lah-one" and fn["state"] == "Active", fn
    assert fn["runtime"] == "nodejs20.x" and fn["handler"] == "index.handler"
    assert fn["memory_size"] == 512 and fn["timeout"] == 30
    assert fn["environment"] == {"MY_KEY": "v", "camelKey": "w"}  # user keys verbatim
    assert not any(k[0].isupper() for k in fn), fn

    status, _, got = req(srv, "GET", LAH + "/2015-03-31/functions/lah-one")
    assert status == 200
    # Lambda@Home's GetFunction is the function itself (AWS's Configuration, flattened).
    assert got["function_name"] == "lah-one" and got["state"] == "Active", got
    assert "configuration" not in got and got["code"]["repository_type"] == "S3"

    status, _, listed = req(srv, "GET", LAH + "/2015-03-31/functions")
    assert status == 200 and isinstance(listed["functions"], list)
    assert "lah-one" in [f["function_name"] for f in listed["functions"]]

    # The same function without the prefix: AWS's shapes, for raw HTTP and boto3.
    status, _, aws = req(srv, "GET", "/2015-03-31/functions/lah-one")
    assert status == 200 and aws["Configuration"]["FunctionName"] == "lah-one"
    assert aws["Configuration"]["Environment"] == {"Variables": {"MY_KEY": "v", "camelKey": "w"}}
    assert "function_name" not in json.dumps(aws)
    cfg = lam.get_function(FunctionName="lah-one")["Configuration"]
    assert cfg["MemorySize"] == 512 and cfg["Environment"]["Variables"]["camelKey"] == "w"
    assert "lah-one" in [f["FunctionName"] for f in lam.list_functions()["Functions"]]


def test_invoke_payload_is_never_renamed(srv, lam):
    assert lah_create(srv, "lah-echo")[0] == 201
    event = {"FunctionName": "x", "function_name": "y", "Nested": {"KeyName": [1, {"A_b": 2}]}}
    status, hs, out = req(srv, "POST", LAH + "/2015-03-31/functions/lah-echo/invocations",
                          event, {"X-Amz-Invocation-Type": "RequestResponse"})
    assert status == 200 and "x-amz-function-error" not in hs, out
    assert out["event"] == event and "requestId" in out
    # Without the prefix, the same.
    status, _, out = req(srv, "POST", "/2015-03-31/functions/lah-echo/invocations", event)
    assert status == 200 and out["event"] == event
    # InvokeWithResponseStream and InvokeAsync bodies are payloads too.
    status, _, raw = http_request(srv.ports["control"], "POST",
                                  LAH + invoke_path("lah-echo", stream=True),
                                  json.dumps(event).encode())
    assert status == 200, raw
    chunks = [p for kind, _, p in decode_event_stream(raw) if kind == "PayloadChunk"]
    assert json.loads(b"".join(chunks))["event"] == event
    status, _, _ = req(srv, "POST", LAH + "/2014-11-13/functions/lah-echo/invoke-async/", event)
    assert status == 202


def test_errors_in_lambda_at_home_shape(srv):
    status, hs, body = req(srv, "GET", LAH + "/2015-03-31/functions/lah-missing")
    assert status == 404 and hs["x-amzn-errortype"] == "ResourceNotFoundException"
    assert body["error_type"] == "ResourceNotFoundException"
    assert "lah-missing" in body["error_message"] and set(body) == {"error_type", "error_message"}
    status, _, body = req(srv, "POST", LAH + "/2015-03-31/functions/lah-missing/invocations", {})
    assert status == 404 and body["error_type"] == "ResourceNotFoundException"
    status, _, body = req(srv, "DELETE", LAH + "/2015-03-31/functions/lah-missing")
    assert status == 404 and body["error_type"] == "ResourceNotFoundException"
    # A bad parameter (Lambda@Home's e2e sends an empty name and expects a failure).
    status, _, body = lah_create(srv, "")
    assert status == 400 and body["error_type"] == "InvalidParameterValueException", body
    # Without the prefix: AWS's error body.
    status, _, body = req(srv, "GET", "/2015-03-31/functions/lah-missing")
    assert status == 404 and set(body) == {"Type", "message"}


def test_update_publish_alias_concurrency(srv, lam):
    assert lah_create(srv, "lah-ops")[0] == 201
    base = LAH + "/2015-03-31/functions/lah-ops"
    status, _, cfg = req(srv, "PUT", base + "/configuration",
                         {"description": "changed", "environment": {"A_B": "1"}, "timeout": 7})
    assert status == 200 and cfg["description"] == "changed" and cfg["timeout"] == 7, cfg
    assert cfg["environment"] == {"A_B": "1"}
    status, _, code = req(srv, "PUT", base + "/code",
                          {"zip_file": base64.b64encode(build_zip({"index.js": NODE_ECHO + "\n//2"}))
                           .decode()})
    assert status == 200 and code["function_name"] == "lah-ops", code
    status, _, ver = req(srv, "POST", base + "/versions", {"description": "first"})
    assert status == 201 and ver["version"] == "1" and ver["description"] == "first", ver
    status, _, alias = req(srv, "POST", base + "/aliases",
                           {"name": "live", "function_version": "1"})
    assert status == 201 and alias["name"] == "live" and alias["function_version"] == "1", alias
    status, _, aliases = req(srv, "GET", base + "/aliases")
    assert status == 200 and [a["name"] for a in aliases["aliases"]] == ["live"]
    status, _, versions = req(srv, "GET", base + "/versions")
    assert status == 200 and [v["version"] for v in versions["versions"]] == ["$LATEST", "1"]
    status, _, conc = req(srv, "PUT", LAH + "/2017-10-31/functions/lah-ops/concurrency",
                          {"reserved_concurrent_executions": 3})
    assert status == 200 and conc == {"reserved_concurrent_executions": 3}
    # boto3 sees the same state in AWS's shapes.
    c = lam.get_function_configuration(FunctionName="lah-ops")
    assert c["Description"] == "changed" and c["Environment"]["Variables"] == {"A_B": "1"}
    assert lam.get_alias(FunctionName="lah-ops", Name="live")["FunctionVersion"] == "1"
    assert lam.get_function_concurrency(FunctionName="lah-ops")[
        "ReservedConcurrentExecutions"] == 3
    status, _, body = req(srv, "DELETE", base)
    assert (status, body) == (204, None)


def test_aws_clients_see_no_snake_case(srv, lam):
    """Functions made through boto3 read back in AWS's shapes (nothing leaks
    across), and through the prefix in Lambda@Home's."""
    deploy_node(lam, "lah-boto", Environment={"Variables": {"KEY1": "v"}})
    r = lam.get_function(FunctionName="lah-boto")
    assert set(r) >= {"Configuration", "Code"}
    assert all(k[0].isupper() for k in r["Configuration"]), r["Configuration"]
    status, _, body = req(srv, "GET", LAH + "/2015-03-31/functions/lah-boto")
    assert status == 200 and body["function_name"] == "lah-boto"
    assert body["environment"] == {"KEY1": "v"}
    # Unknown paths under the prefix are as unknown as without it.
    assert req(srv, "GET", LAH + "/nothing")[0] == 404
    assert req(srv, "GET", LAH)[0] == 404
    assert req(srv, "GET", "/lambda-at-homes/2015-03-31/functions")[0] == 404
    assert REGION  # the server's region is the clients' (lambda_util)


def test_warm_pool_under_the_prefix_only(srv):
    """Lambda@Home's GET /admin/warm-pool/{name}: the function's environments
    now (Realm has no container ids to list); not a Lambda route, so 404
    without the prefix."""
    assert lah_create(srv, "lah-pool")[0] == 201
    status, _, body = req(srv, "GET", LAH + "/admin/warm-pool/lah-pool")
    assert (status, body) == (200, {"total": 0, "entries": []})
    status, _, out = req(srv, "POST", LAH + "/2015-03-31/functions/lah-pool/invocations", {})
    assert status == 200, out
    status, _, body = req(srv, "GET", LAH + "/admin/warm-pool/lah-pool")
    assert status == 200 and body["total"] == 1, body
    status, hs, body = req(srv, "GET", "/admin/warm-pool/lah-pool")
    assert status == 404 and hs["x-amzn-errortype"] == "UnknownOperationException", body
