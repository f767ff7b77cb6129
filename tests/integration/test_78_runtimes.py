"""Runtimes: the official aws-lambda-ric on provided.al2023, Realm's Node and
Python bootstraps (handler styles, nested handlers, the HTTP channel, init
errors, error shapes, Python streaming), a `provided` shell bootstrap, and
deployed functions called over the client WebSocket (streaming, cancel,
metadata)."""
import json
import os
import re
import time
import uuid

import pytest

from fn_util import (NODE_ECHO, NODE_MODULES, PY_ECHO, deploy, deploy_node, deploy_python,
                     fn_client, fn_logs, fn_server, invoke, ok, poll_until, stream_invoke,
                     tail_log, tree_files)
from wsclient import Ws

RID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
RIC_DIR = os.path.join(NODE_MODULES, "aws-lambda-ric")
STORE_DIR = os.path.join(NODE_MODULES, "@aws", "lambda-invoke-store")


@pytest.fixture(scope="module")
def srv():
    with fn_server() as s:
        yield s


@pytest.fixture(scope="module")
def lam(srv):
    return fn_client(srv)


@pytest.fixture
def ws(srv):
    c = Ws(srv.ports["client"], timeout=20)
    yield c
    c.close()


def fn_error(lam, name, event=None):
    """Invokes; must be 200 + FunctionError Unhandled; returns the error JSON."""
    r, p = invoke(lam, name, {} if event is None else event)
    assert r["StatusCode"] == 200, r
    assert r.get("FunctionError") == "Unhandled", (r, p)
    assert isinstance(p, dict), p
    return p


# ---- aws-lambda-ric (the official Node runtime interface client) -------------------------


def ric_files(handler_src):
    if not os.path.isfile(os.path.join(RIC_DIR, "index.mjs")) or not os.path.isdir(STORE_DIR):
        pytest.skip(f"aws-lambda-ric is not installed in {NODE_MODULES} (npm ci)")
    files = {
        "bootstrap": "#!/bin/sh\nexec /usr/bin/node /var/task/node_modules/aws-lambda-ric/index.mjs\n",
        "index.js": handler_src,
    }
    files.update(tree_files(RIC_DIR, "node_modules/aws-lambda-ric"))
    files.update(tree_files(STORE_DIR, "node_modules/@aws/lambda-invoke-store"))
    return files


RIC_HANDLER = """
exports.handler = async (event, context) => {
  console.log('ric handler saw', JSON.stringify(event));
  if (event.fail) throw new TypeError('ric says no');
  return { event, requestId: context.awsRequestId, fn: context.functionName,
           remaining: context.getRemainingTimeInMillis() };
};
"""


def test_aws_lambda_ric_runs_an_unchanged_handler(lam):
    deploy(lam, "ric", ric_files(RIC_HANDLER), runtime="provided.al2023", handler="index.handler",
           Timeout=5)
    for i in range(2):  # a cold and a warm invocation
        marker = uuid.uuid4().hex
        r, p = invoke(lam, "ric", {"marker": marker}, LogType="Tail")
        assert r["StatusCode"] == 200 and "FunctionError" not in r, p
        assert p["event"] == {"marker": marker}
        assert p["requestId"] == r["ResponseMetadata"]["RequestId"], p
        assert p["fn"] == "ric"
        assert 0 < p["remaining"] <= 5000, p
        log = tail_log(r)
        assert f"START RequestId: {p['requestId']}" in log, log
        assert marker in log, log
    # A thrown error comes back as the RIC posted it.
    err = fn_error(lam, "ric", {"fail": True})
    assert err["errorType"] == "TypeError", err
    assert err["errorMessage"] == "ric says no", err
    # ... and the environment keeps serving.
    assert ok(lam, "ric", {"after": 1})["event"] == {"after": 1}


# ---- Realm's Node and Python bootstraps -----------------------------------------------------


def test_node_callback_handler(lam):
    deploy_node(lam, "callback", """
exports.handler = (event, context, callback) => {
  setTimeout(() => {
    if (event.fail) callback(new RangeError('callback error'));
    else callback(null, { via: 'callback', event, id: context.awsRequestId });
  }, 20);
};""")
    r, p = invoke(lam, "callback", {"x": 1})
    assert "FunctionError" not in r, p
    assert p == {"via": "callback", "event": {"x": 1}, "id": r["ResponseMetadata"]["RequestId"]}
    err = fn_error(lam, "callback", {"fail": True})
    assert (err["errorType"], err["errorMessage"]) == ("RangeError", "callback error"), err


def test_node_sync_and_promise_styles(lam):
    deploy_node(lam, "styles", """
exports.sync = (event, context, callback) => { callback(null, 'sync ' + event.n); };
exports.promise = (event) => Promise.resolve('promise ' + event.n);
exports.done = (event, context) => { context.succeed('succeed ' + event.n); };""",
                Timeout=3)
    for h, want in (("sync", "sync 1"), ("promise", "promise 1"), ("done", "succeed 1")):
        lam.update_function_configuration(FunctionName="styles", Handler=f"index.{h}")
        _wait_updated(lam, "styles")
        assert ok(lam, "styles", {"n": 1}) == want


def _wait_updated(lam, name):
    deadline = time.monotonic() + 10
    while lam.get_function_configuration(FunctionName=name)["LastUpdateStatus"] != "Successful":
        assert time.monotonic() < deadline, "configuration update did not finish"
        time.sleep(0.05)


@pytest.mark.parametrize("runtime", ["node", "python"])
def test_handler_in_a_nested_folder(lam, runtime):
    if runtime == "node":
        files = {"lib/sub/mod.js": "exports.handler = async (e) => ({ nested: 'node', e });\n",
                 "index.js": "exports.handler = async () => 'wrong file';\n"}
        deploy(lam, "nested-node", files, runtime="nodejs22.x", handler="lib/sub/mod.handler")
    else:
        files = {"lib/sub/mod.py": "def handler(e, c):\n    return {'nested': 'python', 'e': e}\n",
                 "app.py": "def handler(e, c):\n    return 'wrong file'\n"}
        deploy(lam, "nested-python", files, runtime="python3.11", handler="lib/sub/mod.handler")
    p = ok(lam, f"nested-{runtime}", {"k": 1})
    assert p == {"nested": runtime, "e": {"k": 1}}, p


HTTP_ONLY = {"Variables": {"LAMBDA_USE_WEBSOCKET": "false"}}


@pytest.mark.parametrize("runtime", ["node", "python"])
def test_http_runtime_channel(lam, runtime):
    name = f"http-{runtime}"
    if runtime == "node":
        deploy_node(lam, name, NODE_ECHO, Environment=HTTP_ONLY)
    else:
        deploy_python(lam, name, PY_ECHO, Environment=HTTP_ONLY)
    cc = "eyJjdXN0b20iOnsiayI6InYifX0="  # {"custom":{"k":"v"}}
    seen = []
    for i in range(3):
        r, p = invoke(lam, name, {"i": i}, LogType="Tail", ClientContext=cc)
        assert "FunctionError" not in r, p
        assert p["event"] == {"i": i}
        assert p["requestId"] == r["ResponseMetadata"]["RequestId"]
        assert p["clientContext"]["custom"] == {"k": "v"}, p
        assert f"START RequestId: {p['requestId']}" in tail_log(r)
        seen.append(p)
    assert len({p["env"] for p in seen}) == 1, seen  # one warm environment
    assert [p["served"] for p in seen] == [1, 2, 3], seen
    # A thrown error on HTTP has the same shape.
    deploy_python(lam, f"{name}-err", "def handler(e, c):\n    raise KeyError('nope')\n",
                  Environment=HTTP_ONLY) if runtime == "python" else \
        deploy_node(lam, f"{name}-err", "exports.handler = async () => "
                    "{ throw new SyntaxError('nope'); };", Environment=HTTP_ONLY)
    err = fn_error(lam, f"{name}-err")
    assert err["errorType"] == ("KeyError" if runtime == "python" else "SyntaxError"), err
    assert isinstance(err["stackTrace"], list) and err["stackTrace"], err


INIT_ERRORS = [
    # (id, runtime, files, handler, errorType, words in errorMessage)
    ("node-missing-module", "nodejs20.x", {"other.js": "exports.x = 1;\n"}, "index.handler",
     "Runtime.ImportModuleError", ["index"]),
    ("node-missing-handler", "nodejs20.x", {"index.js": "exports.other = () => 1;\n"},
     "index.handler", "Runtime.HandlerNotFound", ["index.handler"]),
    ("node-syntax-error", "nodejs20.x", {"index.js": "exports.handler = async () => {{;\n"},
     "index.handler", "Runtime.UserCodeSyntaxError", []),
    ("python-missing-module", "python3.11", {"other.py": "x = 1\n"}, "app.handler",
     "Runtime.ImportModuleError", ["app"]),
    ("python-missing-handler", "python3.11", {"app.py": "def other(e, c):\n    return 1\n"},
     "app.handler", "Runtime.HandlerNotFound", ["handler"]),
    ("python-syntax-error", "python3.11", {"app.py": "def handler(e, c)\n    return 1\n"},
     "app.handler", "Runtime.UserCodeSyntaxError", ["app"]),
]


@pytest.mark.parametrize("case", INIT_ERRORS, ids=[c[0] for c in INIT_ERRORS])
def test_init_error_is_the_invocations_error(lam, case):
    name, runtime, files, handler, error_type, words = case
    deploy(lam, name, files, runtime=runtime, handler=handler)
    for _ in range(2):  # every invocation meets the init error, promptly
        t0 = time.monotonic()
        err = fn_error(lam, name)
        assert time.monotonic() - t0 < 2.5
        assert err["errorType"] == error_type, err
        for w in words:
            assert w in err["errorMessage"], err


@pytest.mark.parametrize("runtime", ["node", "python"])
def test_thrown_error_shape(lam, runtime):
    if runtime == "node":
        deploy_node(lam, "throws-node", """
class CustomError extends Error { constructor(m) { super(m); this.name = 'CustomError'; } }
exports.handler = async () => { throw new CustomError('it broke'); };""")
    else:
        deploy_python(lam, "throws-python", """
class CustomError(Exception):
    pass
def handler(event, context):
    raise CustomError('it broke')
""")
    err = fn_error(lam, f"throws-{runtime}")
    assert err["errorType"] == "CustomError", err
    assert err["errorMessage"] == "it broke", err
    assert isinstance(err["stackTrace"], list) and err["stackTrace"], err
    assert all(isinstance(line, str) for line in err["stackTrace"]), err
    assert any("/var/task/" in line for line in err["stackTrace"]), err


def test_provided_runtime_with_a_shell_bootstrap(lam):
    bootstrap = r"""#!/bin/sh
set -eu
API="http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime"
while true; do
  HEADERS="$(mktemp)"
  EVENT="$(/usr/bin/curl -sS -D "$HEADERS" "$API/invocation/next")"
  REQUEST_ID="$(grep -i '^Lambda-Runtime-Aws-Request-Id:' "$HEADERS" | tr -d '\r' | cut -d' ' -f2)"
  DEADLINE="$(grep -i '^Lambda-Runtime-Deadline-Ms:' "$HEADERS" | tr -d '\r' | cut -d' ' -f2)"
  ARN="$(grep -i '^Lambda-Runtime-Invoked-Function-Arn:' "$HEADERS" | tr -d '\r' | cut -d' ' -f2)"
  echo "shell bootstrap serving $REQUEST_ID"
  RESPONSE="{\"shell\":true,\"event\":$EVENT,\"request_id\":\"$REQUEST_ID\",\"deadline\":$DEADLINE,\"arn\":\"$ARN\",\"handler\":\"$_HANDLER\"}"
  /usr/bin/curl -sS -o /dev/null -X POST "$API/invocation/$REQUEST_ID/response" -d "$RESPONSE"
  rm -f "$HEADERS"
done
"""
    deploy(lam, "shell", {"bootstrap": bootstrap}, runtime="provided", handler="function.handler")
    for i in range(2):
        t_call = time.time() * 1000
        r, p = invoke(lam, "shell", {"i": i}, LogType="Tail")
        assert "FunctionError" not in r, p
        rid = r["ResponseMetadata"]["RequestId"]
        assert p["shell"] is True and p["event"] == {"i": i}, p
        assert p["request_id"] == rid, p
        assert p["handler"] == "function.handler"
        assert p["arn"] == "arn:aws:lambda:us-east-1:000000000000:function:shell", p
        # Deadline: epoch milliseconds, about Timeout (3 s) after the call.
        assert t_call + 1000 < p["deadline"] < t_call + 5000, (t_call, p["deadline"])
        assert f"shell bootstrap serving {rid}" in tail_log(r)


def test_python_generator_streams(srv, lam):
    deploy_python(lam, "py-stream", """
import time
def handler(event, context):
    for i in range(event['parts']):
        yield 'part-%d;' % i
        time.sleep(event['gap_ms'] / 1000.0)
    yield b'bytes-end'
""")
    parts, gap = 4, 150
    status, headers, events, times, raw = stream_invoke(srv, "py-stream",
                                                        {"parts": parts, "gap_ms": gap})
    assert status == 200, raw
    kinds = [e[0] for e in events]
    assert kinds[-1] == "InvokeComplete" and set(kinds[:-1]) == {"PayloadChunk"}, kinds
    body = b"".join(e[2] for e in events[:-1])
    assert body == b"".join(b"part-%d;" % i for i in range(parts)) + b"bytes-end", body
    chunk_times = times[:-1]
    assert chunk_times[-1] - chunk_times[0] >= (parts - 1) * gap / 1000 * 0.8, chunk_times
    assert not json.loads(events[-1][2]).get("ErrorCode"), events[-1]


# ---- deployed functions on the client WebSocket ------------------------------------------


def recv_for(ws, call_id):
    """Messages for call_id up to and including its final reply."""
    msgs = []
    while True:
        m = ws.recv()
        assert isinstance(m, dict), m
        if m.get("id") != call_id:
            continue
        msgs.append(m)
        if m["status"] != "streaming":
            return msgs


def test_ws_invoke_and_call_by_name(ws, lam):
    deploy_node(lam, "hello", NODE_ECHO)
    ws.call({"id": "a", "function": "invoke",
             "params": {"name": "hello", "payload": {"via": "invoke"}, "log_type": "Tail"}})
    [m] = recv_for(ws, "a")
    assert m["status"] == "complete", m
    d = m["data"]
    assert re.fullmatch(RID, d["request_id"]) and d["executed_version"] == "$LATEST", d
    assert d["payload"]["event"] == {"via": "invoke"} and d["payload"]["requestId"] == \
        d["request_id"], d
    assert f"START RequestId: {d['request_id']}" in d["log_tail"], d
    ws.call({"id": "b", "function": "hello", "params": {"via": "name"}})
    [m] = recv_for(ws, "b")
    assert m["status"] == "complete", m
    assert m["data"]["payload"]["event"] == {"via": "name"}, m


def test_ws_invoke_streams_chunks(ws, lam):
    deploy_node(lam, "ws-streamer", """
exports.handler = awslambda.streamifyResponse(async (event, stream) => {
  for (let i = 0; i < event.parts; i++) {
    stream.write('chunk-' + i);
    await new Promise((r) => setTimeout(r, 30));
  }
  stream.end();
});""")
    ws.call({"id": "s", "function": "invoke", "params": {"name": "ws-streamer",
                                                          "payload": {"parts": 4}}})
    msgs = recv_for(ws, "s")
    streaming = [m for m in msgs if m["status"] == "streaming"]
    assert [m["data"]["index"] for m in streaming] == list(range(len(streaming))), msgs
    assert "".join(m["data"]["data"] for m in streaming) == "chunk-0chunk-1chunk-2chunk-3", msgs
    final = msgs[-1]
    assert final["status"] == "complete", final
    assert final["data"]["chunks"] == len(streaming), final
    assert re.fullmatch(RID, final["data"]["request_id"]), final


def test_ws_function_error_and_throttle(ws, lam):
    deploy_node(lam, "ws-throws", "exports.handler = async () => { throw new RangeError('bad'); };")
    ws.call({"id": "e", "function": "invoke", "params": {"name": "ws-throws"}})
    [m] = recv_for(ws, "e")
    assert m["status"] == "error", m
    e = m["error"]
    assert e["code"] == "FUNCTION_ERROR" and e["error_type"] == "RangeError", e
    assert e["error"]["errorMessage"] == "bad" and e["error"]["errorType"] == "RangeError", e
    deploy_node(lam, "ws-zero", NODE_ECHO)
    lam.put_function_concurrency(FunctionName="ws-zero", ReservedConcurrentExecutions=0)
    ws.call({"id": "t", "function": "invoke", "params": {"name": "ws-zero"}})
    [m] = recv_for(ws, "t")
    assert m["status"] == "error" and m["error"]["code"] == "THROTTLED", m
    ws.call({"id": "n", "function": "invoke", "params": {"name": "no-such-fn"}})
    [m] = recv_for(ws, "n")
    assert m["status"] == "error" and m["error"]["code"] == "FUNCTION_NOT_FOUND", m
    # Lambda's 6 MB limit on a synchronous event holds here too.
    ws.call({"id": "big", "function": "invoke",
             "params": {"name": "ws-throws", "payload": {"x": "a" * (6 * 1024 * 1024)}}})
    [m] = recv_for(ws, "big")
    assert m["status"] == "error" and m["error"]["code"] == "INVALID_PARAMS", m
    assert m["error"]["param"] == "payload", m


def test_ws_cancel_stops_a_slow_invoke(ws, srv, lam):
    deploy_node(lam, "ws-slow", NODE_ECHO, Timeout=30)
    warm = ok(lam, "ws-slow", {})
    ws.call({"id": "slow", "function": "invoke",
             "params": {"name": "ws-slow", "payload": {"sleep_ms": 20000}}})
    # Wait until it runs, then cancel it.
    poll_until(lambda: '"sleep_ms":20000' in fn_logs(srv, "ws-slow"), 10,
               what="the slow invocation to start")
    t0 = time.monotonic()
    ws.call({"id": "c", "function": "cancel", "params": {"id": "slow"}})
    got = {}
    while len(got) < 2:
        m = ws.recv()
        got[m["id"]] = m
    assert time.monotonic() - t0 < 2, got
    assert got["slow"] == {"id": "slow", "status": "cancelled"}, got
    assert got["c"]["status"] == "complete" and got["c"]["data"] == {"id": "slow",
                                                                     "cancelled": True}, got
    # The next call works, on a fresh environment (the cancelled one was stopped).
    t0 = time.monotonic()
    after = ok(lam, "ws-slow", {"after": 1})
    assert time.monotonic() - t0 < 5
    assert after["event"] == {"after": 1}
    assert after["env"] != warm["env"], (warm, after)


def test_ws_metadata_lists_deployed_functions(ws, lam):
    deploy_python(lam, "listed-fn", PY_ECHO, MemorySize=256, Timeout=7)
    ws.call({"id": "m", "function": "metadata"})
    [m] = recv_for(ws, "m")
    assert m["status"] == "complete", m
    fns = [f for f in m["data"]["functions"] if f["name"] == "listed-fn"]
    assert len(fns) == 1, [f["name"] for f in m["data"]["functions"]]
    f = fns[0]
    assert f["kind"] == "lambda", f
    assert (f["runtime"], f["handler"], f["memory_mb"], f["timeout_s"]) == \
        ("python3.11", "app.handler", 256, 7), f
    lam.delete_function(FunctionName="listed-fn")
    ws.call({"id": "m2", "function": "metadata"})
    [m] = recv_for(ws, "m2")
    assert "listed-fn" not in [f["name"] for f in m["data"]["functions"]]


def test_ws_channel_frames_pipelined_behind_the_handshake(lam):
    # A bootstrap that sends its first WebSocket frame (a ping) in the same
    # write as the upgrade request: the server answers it (pong) and goes on
    # serving (it used to answer before the channel's WebSocket was set).
    bootstrap = r"""#!/usr/bin/python3
import base64, json, os, re, socket
host, port = os.environ["AWS_LAMBDA_RUNTIME_API"].rsplit(":", 1)
s = socket.create_connection((host, int(port)))
key = base64.b64encode(os.urandom(16)).decode()
req = ("GET /2018-06-01/runtime/websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
       "Connection: Upgrade\r\nSec-WebSocket-Key: " + key + "\r\nSec-WebSocket-Version: 13\r\n\r\n")
body, mask = b'{"type":"ping"}', os.urandom(4)
frame = bytes([0x81, 0x80 | len(body)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(body))
s.sendall(req.encode() + frame)
data = b""
while b'"pong"' not in data:
    got = s.recv(4096)
    if not got:
        break
    data += got
pong = b'"pong"' in data
# The open channel registered the environment: the invocation comes on it.
while b'"invocation"' not in data or b'"request_id":"' not in data.split(b'"invocation"', 1)[1]:
    got = s.recv(4096)
    if not got:
        raise SystemExit(1)
    data += got
rid = re.search(rb'"request_id":"([^"]+)"', data.split(b'"invocation"', 1)[1]).group(1).decode()
body, mask = json.dumps({"type": "response", "request_id": rid, "payload": {"pong": pong}}).encode(), os.urandom(4)
s.sendall(bytes([0x81, 0x80 | len(body)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(body)))
while s.recv(4096):
    pass
"""
    deploy(lam, "ws-pipelined", {"bootstrap": bootstrap}, runtime="provided",
           handler="function.handler")
    r, p = invoke(lam, "ws-pipelined", {})
    assert "FunctionError" not in r, p
    assert p == {"pong": True}, p


def test_runtime_api_header_names_are_lower_case(lam):
    # A runtime that looks its headers up by exact lower-case name (as
    # Lambda@Home's Python bootstrap does) finds them: HTTP names are
    # case-insensitive and Realm sends them in lower case.
    bootstrap = r"""#!/usr/bin/python3
import http.client, json, os
host, port = os.environ["AWS_LAMBDA_RUNTIME_API"].rsplit(":", 1)
while True:
    c = http.client.HTTPConnection(host, int(port))
    c.request("GET", "/2018-06-01/runtime/invocation/next")
    r = c.getresponse()
    event = r.read()
    h = dict(r.getheaders())  # exact names, as sent
    rid = h.get("lambda-runtime-aws-request-id")
    names = sorted(k for k in h if k.lower().startswith("lambda-runtime-"))
    c.request("POST", "/2018-06-01/runtime/invocation/%s/response" % rid,
              body=json.dumps({"names": names, "deadline": h.get("lambda-runtime-deadline-ms") is not None}))
    c.getresponse().read()
    c.close()
"""
    deploy(lam, "lower-headers", {"bootstrap": bootstrap}, runtime="provided",
           handler="function.handler")
    r, p = invoke(lam, "lower-headers", {})
    assert "FunctionError" not in r, p
    assert p["deadline"] is True, p
    assert all(n == n.lower() for n in p["names"]), p
    assert "lambda-runtime-aws-request-id" in p["names"], p
