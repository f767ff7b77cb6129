"""Invoke: the real AWS CLI and boto3 against Node and Python functions
(payloads, versions and aliases, Tail logs, Event, DryRun, the errors and
limits of the request), warm reuse, concurrent callers, scale-out, and
InvokeWithResponseStream in AWS's event-stream framing."""
import base64
import json
import re
import threading
import time
import uuid

import pytest

from fn_util import (NODE_ECHO, PY_ECHO, build_zip, deploy_node, deploy_python,
                     error_code, fn_client, fn_logs, fn_server, invoke, node_files, ok,
                     poll_until, py_files, raw_invoke, stream_invoke, tail_log)
from lambda_util import ROLE, aws, write_zip

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


@pytest.fixture(scope="module")
def srv():
    with fn_server() as s:
        yield s


@pytest.fixture(scope="module")
def lam(srv):
    return fn_client(srv)


@pytest.fixture(scope="module")
def node_fn(lam):
    deploy_node(lam, "echo-node")
    return "echo-node"


@pytest.fixture(scope="module")
def py_fn(lam):
    deploy_python(lam, "echo-py")
    return "echo-py"


@pytest.fixture(params=["node", "python"])
def echo_fn(request):
    return request.getfixturevalue("node_fn" if request.param == "node" else "py_fn")


def check_tail(log, request_id, console_line):
    """AWS's START/END/REPORT lines for request_id around the handler's output."""
    lines = log.splitlines()
    start = [i for i, l in enumerate(lines) if l.startswith(f"START RequestId: {request_id}")]
    end = [i for i, l in enumerate(lines) if l == f"END RequestId: {request_id}"]
    report = [i for i, l in enumerate(lines) if l.startswith(f"REPORT RequestId: {request_id}\t")]
    assert len(start) == 1 and len(end) == 1 and len(report) == 1, log
    assert start[0] < end[0] < report[0], log
    assert "Version: $LATEST" in lines[start[0]], log
    body = lines[start[0] + 1:end[0]]
    assert any(console_line in l for l in body), log
    r = lines[report[0]]
    for field in ("Duration: ", "Billed Duration: ", "Memory Size: 128 MB", "Max Memory Used: "):
        assert field in r, r
    assert re.search(r"\tDuration: \d+\.\d\d ms\t", r), r


# ---- the AWS CLI ----------------------------------------------------------------------


@pytest.mark.parametrize("runtime", ["nodejs20.x", "python3.11"])
def test_aws_cli_deploys_and_invokes(srv, tmp_path, runtime):
    name = "cli-" + runtime.replace(".", "-")
    files, handler = ((node_files(), "index.handler") if runtime.startswith("node")
                      else (py_files(), "app.handler"))
    zp = write_zip(build_zip(files), str(tmp_path))
    rc, out, err = aws(srv, "lambda", "create-function", "--function-name", name,
                       "--runtime", runtime, "--role", ROLE, "--handler", handler,
                       "--zip-file", f"fileb://{zp}")
    assert rc == 0, err
    assert out["State"] == "Active", out

    outfile = tmp_path / "out.json"
    marker = uuid.uuid4().hex
    rc, out, err = aws(srv, "lambda", "invoke", "--function-name", name,
                       "--cli-binary-format", "raw-in-base64-out",
                       "--payload", json.dumps({"marker": marker}), "--log-type", "Tail",
                       str(outfile))
    assert rc == 0, err
    assert out["StatusCode"] == 200, out
    assert out["ExecutedVersion"] == "$LATEST", out
    assert "FunctionError" not in out, out
    payload = json.loads(outfile.read_text())
    assert payload["event"] == {"marker": marker}, payload
    assert payload["version"] == "$LATEST"
    assert payload["arn"] == f"arn:aws:lambda:us-east-1:000000000000:function:{name}"
    log = base64.b64decode(out["LogResult"]).decode()
    assert re.fullmatch(UUID, payload["requestId"]), payload
    check_tail(log, payload["requestId"], marker)


# ---- boto3 -----------------------------------------------------------------------------


def test_tail_log_is_the_invocations_log(lam, echo_fn):
    marker = uuid.uuid4().hex
    r, p = invoke(lam, echo_fn, {"marker": marker}, LogType="Tail")
    assert r["StatusCode"] == 200 and "FunctionError" not in r, p
    assert r["ResponseMetadata"]["RequestId"] == p["requestId"]
    log = tail_log(r)
    check_tail(log, p["requestId"], marker)
    # Only this invocation's log: no START of another request.
    assert log.count("START RequestId:") == 1, log
    # Without Tail there is no log.
    r, _ = invoke(lam, echo_fn, {"marker": marker})
    assert "LogResult" not in r


def test_tail_log_is_at_most_4_kb_and_ends_with_report(lam):
    src = """exports.handler = async () => {
  for (let i = 0; i < 200; i++) console.log('line ' + i + ' ' + 'x'.repeat(60));
  return 'done';
};"""
    deploy_node(lam, "chatty", src)
    r, p = invoke(lam, "chatty", {}, LogType="Tail")
    assert p == "done"
    raw = base64.b64decode(r["LogResult"])
    assert 3000 < len(raw) <= 4096, len(raw)
    log = raw.decode("utf-8", "replace")
    assert "line 199 " in log, log
    assert log.rstrip("\n").splitlines()[-1].startswith("REPORT RequestId: "), log


def test_output_written_just_before_the_answer_is_in_the_tail(lam):
    """A Python function that writes 256 KB and answers at once: what is
    still in the output pipe when the answer arrives belongs before END."""
    deploy_python(lam, "burst-py", """
import sys
def handler(event, context):
    for i in range(4096):
        sys.stdout.write("filler %d %s\\n" % (i, "y" * 50))
    print("last-line " + event["marker"])
    return "done"
""")
    for _ in range(5):
        marker = uuid.uuid4().hex
        r, p = invoke(lam, "burst-py", {"marker": marker}, LogType="Tail")
        assert p == "done", p
        log = tail_log(r)
        lines = log.splitlines()
        end = [i for i, l in enumerate(lines) if l.startswith("END RequestId: ")]
        assert len(end) == 1 and f"last-line {marker}" in lines[end[0] - 1], log


def test_versions_aliases_and_qualifier(lam):
    src = "exports.handler = async (e, ctx) => ({ code: 'CODE', version: ctx.functionVersion, " \
          "arn: ctx.invokedFunctionArn });\n"
    deploy_node(lam, "versioned", src.replace("CODE", "one"))
    v1 = lam.publish_version(FunctionName="versioned")["Version"]
    lam.update_function_code(FunctionName="versioned",
                             ZipFile=build_zip(node_files(src.replace("CODE", "two"))))
    poll_until(lambda: lam.get_function_configuration(FunctionName="versioned")
               ["LastUpdateStatus"] == "Successful", 10, what="the code update")
    v2 = lam.publish_version(FunctionName="versioned")["Version"]
    assert (v1, v2) == ("1", "2")
    lam.create_alias(FunctionName="versioned", Name="live", FunctionVersion="1")
    base = "arn:aws:lambda:us-east-1:000000000000:function:versioned"

    def call(qualifier=None):
        kw = {"Qualifier": qualifier} if qualifier else {}
        r, p = invoke(lam, "versioned", {}, **kw)
        assert r["StatusCode"] == 200 and "FunctionError" not in r, p
        return r["ExecutedVersion"], p

    assert call() == ("$LATEST", {"code": "two", "version": "$LATEST", "arn": base})
    assert call("$LATEST") == ("$LATEST", {"code": "two", "version": "$LATEST",
                                           "arn": base + ":$LATEST"})
    assert call("1") == ("1", {"code": "one", "version": "1", "arn": base + ":1"})
    assert call("2") == ("2", {"code": "two", "version": "2", "arn": base + ":2"})
    assert call("live") == ("1", {"code": "one", "version": "1", "arn": base + ":live"})
    lam.update_alias(FunctionName="versioned", Name="live", FunctionVersion="2")
    assert call("live") == ("2", {"code": "two", "version": "2", "arn": base + ":live"})
    # A qualified name in FunctionName works as well.
    r, p = invoke(lam, "versioned:1", {})
    assert (r["ExecutedVersion"], p["code"]) == ("1", "one")
    # Unknown versions and aliases are 404.
    code, status, _ = error_code(lam.invoke, FunctionName="versioned", Qualifier="9",
                                 Payload=b"{}")
    assert (code, status) == ("ResourceNotFoundException", 404)
    code, status, _ = error_code(lam.invoke, FunctionName="versioned", Qualifier="nope",
                                 Payload=b"{}")
    assert (code, status) == ("ResourceNotFoundException", 404)


def test_event_is_accepted_then_runs(srv, lam, echo_fn):
    marker = "event-" + uuid.uuid4().hex
    r = lam.invoke(FunctionName=echo_fn, InvocationType="Event",
                   Payload=json.dumps({"marker": marker}).encode())
    assert r["StatusCode"] == 202, r
    assert r["Payload"].read() == b""
    assert "FunctionError" not in r
    def reported():
        log = fn_logs(srv, echo_fn)
        return marker in log and "REPORT RequestId: " in log[log.index(marker):] and log

    log = poll_until(reported, 15, what="the Event invocation's log lines")
    # The run is logged like any other: START ... marker ... END, REPORT.
    at = log.index(marker)
    start = log.rfind("START RequestId: ", 0, at)
    assert start >= 0, log
    rid = log[start:].split()[2]
    assert f"END RequestId: {rid}" in log[at:], log
    assert f"REPORT RequestId: {rid}" in log[at:], log


def test_dry_run_is_204_and_runs_nothing(srv, lam, node_fn):
    ok(lam, node_fn, {"warm": True})
    before = fn_logs(srv, node_fn).count("START RequestId:")
    r = lam.invoke(FunctionName=node_fn, InvocationType="DryRun", Payload=b"{}")
    assert r["StatusCode"] == 204, r
    assert r["Payload"].read() == b""
    # A synchronous call afterwards is logged after anything DryRun could have run.
    ok(lam, node_fn, {})
    assert fn_logs(srv, node_fn).count("START RequestId:") == before + 1


@pytest.mark.parametrize("itype", ["RequestResponse", "Event", "DryRun"])
def test_unknown_function_is_404(lam, itype):
    code, status, resp = error_code(lam.invoke, FunctionName="no-such-function",
                                    InvocationType=itype, Payload=b"{}")
    assert (code, status) == ("ResourceNotFoundException", 404), resp
    assert "no-such-function" in resp["Error"]["Message"]


def test_unknown_function_stream_is_404(srv):
    status, headers, _, _, raw = stream_invoke(srv, "no-such-function", {})
    assert status == 404, raw
    assert headers.get("x-amzn-errortype", "").split(":")[0] == "ResourceNotFoundException"


def test_bad_invocation_and_log_types_are_400(srv, node_fn):
    status, h, body = raw_invoke(srv, node_fn, b"{}", {"X-Amz-Invocation-Type": "Sometimes"})
    assert status == 400, body
    assert h["x-amzn-errortype"].split(":")[0] == "InvalidParameterValueException", h
    status, h, body = raw_invoke(srv, node_fn, b"{}", {"X-Amz-Log-Type": "Everything"})
    assert status == 400, body
    assert h["x-amzn-errortype"].split(":")[0] == "InvalidParameterValueException", h


@pytest.mark.parametrize("itype", ["RequestResponse", "Event"])
def test_non_json_payload_is_400(srv, lam, node_fn, itype):
    for body in (b"not json", b"{\"a\":", b"\xff\xfe"):
        status, h, data = raw_invoke(srv, node_fn, body, {"X-Amz-Invocation-Type": itype})
        assert status == 400, (body, data)
        assert h["x-amzn-errortype"].split(":")[0] == "InvalidRequestContentException", h
        assert json.loads(data)["message"], data
    code, status, _ = error_code(lam.invoke, FunctionName=node_fn, InvocationType=itype,
                                 Payload=b"{oops}")
    assert (code, status) == ("InvalidRequestContentException", 400)


def test_any_json_value_is_an_event(lam, echo_fn):
    for value in ([1, 2, 3], "text", 42, None, True, {"nested": {"a": [1, {"b": None}]}}):
        p = ok(lam, echo_fn, raw=json.dumps(value).encode())
        assert p["event"] == value, (value, p)


def test_empty_payload_is_an_empty_object(lam, echo_fn):
    p = ok(lam, echo_fn, raw=b"")
    assert p["event"] == {}, p


def test_event_with_a_nul_escape_is_accepted(lam, echo_fn):
    """RFC 8259 JSON may escape U+0000; Lambda takes any valid JSON event."""
    value = {"text": "a\u0000b"}
    raw = json.dumps(value).encode()
    assert b"\\u0000" in raw
    p = ok(lam, echo_fn, raw=raw)
    assert p["event"] == value, p


def test_result_with_a_nul_escape_is_returned(lam):
    """A handler's result that contains U+0000 comes back as the function
    answered it, at once (not after the timeout)."""
    deploy_node(lam, "nul-result", "exports.handler = async () => ({ s: 'a\\u0000b' });",
                Timeout=3)
    t0 = time.monotonic()
    r, p = invoke(lam, "nul-result", {})
    elapsed = time.monotonic() - t0
    assert "FunctionError" not in r, p
    assert p == {"s": "a\u0000b"}, p
    assert elapsed < 2, elapsed


def test_oversized_sync_payload_is_413(srv, node_fn):
    body = b'"' + b"x" * (6 * 1024 * 1024) + b'"'  # 6 MiB + 2 bytes
    status, h, data = raw_invoke(srv, node_fn, body)
    assert status == 413, data[:200]
    assert h["x-amzn-errortype"].split(":")[0] == "RequestTooLargeException", h
    assert "6291456" in json.loads(data)["message"], data


def test_oversized_event_payload_is_413(srv, lam, node_fn):
    body = b'"' + b"x" * (256 * 1024) + b'"'  # 256 KiB + 2 bytes: too big for Event only
    status, h, data = raw_invoke(srv, node_fn, body, {"X-Amz-Invocation-Type": "Event"})
    assert status == 413, data[:200]
    assert h["x-amzn-errortype"].split(":")[0] == "RequestTooLargeException", h
    # The same body is a fine synchronous event.
    r, p = invoke(lam, node_fn, raw=body)
    assert "FunctionError" not in r
    assert p["event"] == "x" * (256 * 1024)


def test_large_sync_payload_round_trips(lam, node_fn):
    big = "y" * (5 * 1024 * 1024)
    p = ok(lam, node_fn, {"big": big})
    assert p["event"]["big"] == big


def test_client_context_reaches_the_handler(lam, echo_fn):
    cc = {"client": {"installation_id": "inst-1", "app_title": "tests", "app_version_name": "1.0",
                     "app_version_code": "10", "app_package_name": "com.example"},
          "custom": {"key": "value"}, "env": {"platform": "linux"}}
    p = ok(lam, echo_fn, {}, ClientContext=base64.b64encode(json.dumps(cc).encode()).decode())
    assert p["clientContext"] == cc, p
    # Without one, there is none.
    assert ok(lam, echo_fn, {})["clientContext"] is None


def test_bad_client_context_is_400(srv, node_fn):
    for cc in ("!!!not-base64!!!", base64.b64encode(b"not json").decode()):
        status, h, data = raw_invoke(srv, node_fn, b"{}", {"X-Amz-Client-Context": cc})
        assert status == 400, (cc, data)
        assert h["x-amzn-errortype"].split(":")[0] == "InvalidRequestContentException", h


def test_warm_environment_is_reused(lam, echo_fn):
    first = ok(lam, echo_fn, {"n": 0})
    seen = [first]
    for i in range(1, 4):
        seen.append(ok(lam, echo_fn, {"n": i}))
    assert len({p["env"] for p in seen}) == 1, seen
    assert len({p["pid"] for p in seen}) == 1, seen
    counts = [p["served"] for p in seen]
    assert counts == list(range(counts[0], counts[0] + 4)), counts
    assert len({p["requestId"] for p in seen}) == 4


@pytest.mark.parametrize("runtime", ["node", "python"])
def test_concurrent_callers_each_get_their_own_answer(srv, runtime):
    name = f"conc-{runtime}"
    lam = fn_client(srv)
    if runtime == "node":
        deploy_node(lam, name, NODE_ECHO)
    else:
        deploy_python(lam, name, PY_ECHO)
    n = 20
    clients = [fn_client(srv) for _ in range(n)]
    results, errors = {}, []
    barrier = threading.Barrier(n)

    def caller(i):
        token = f"{i}-{uuid.uuid4().hex}"
        try:
            barrier.wait(timeout=30)
            r, p = invoke(clients[i], name, {"token": token, "sleep_ms": 50})
            results.setdefault(i, []).append((token, r["StatusCode"], r.get("FunctionError"),
                                              p, r["ResponseMetadata"]["RequestId"]))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append((i, repr(e)))

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert sorted(results) == list(range(n)), results.keys()
    request_ids = set()
    for i, answers in results.items():
        assert len(answers) == 1, answers
        token, status, ferr, p, rid = answers[0]
        assert status == 200 and ferr is None, answers[0]
        assert p["event"]["token"] == token, (token, p)
        assert p["requestId"] == rid
        request_ids.add(rid)
    assert len(request_ids) == n
    # Each environment counted its invocations 1, 2, ... with no gaps or repeats.
    by_env = {}
    for answers in results.values():
        p = answers[0][3]
        by_env.setdefault(p["env"], []).append(p["served"])
    for env, counts in by_env.items():
        assert sorted(counts) == list(range(1, len(counts) + 1)), (env, counts)


def test_concurrent_slow_calls_scale_out(srv, lam):
    deploy_node(lam, "scale-out", NODE_ECHO)
    n = 4
    clients = [fn_client(srv) for _ in range(n)]
    results, errors = [], []
    barrier = threading.Barrier(n)

    def caller(i):
        try:
            barrier.wait(timeout=30)
            results.append(ok(clients[i], "scale-out", {"i": i, "sleep_ms": 300}))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(n)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    elapsed = time.monotonic() - t0
    assert not errors, errors
    assert sorted(p["event"]["i"] for p in results) == list(range(n))
    envs = {p["env"] for p in results}
    assert len(envs) > 1, results
    # Four 300 ms calls one after another would take 1.2 s.
    assert elapsed < 1.2 + 2.0, elapsed


# ---- InvokeWithResponseStream ----------------------------------------------------------


def test_response_stream_of_a_buffered_handler(srv, node_fn):
    status, headers, events, _, raw = stream_invoke(srv, node_fn, {"buffered": 1},
                                                    headers={"X-Amz-Log-Type": "Tail"})
    assert status == 200, raw
    assert headers.get("x-amz-executed-version") == "$LATEST", headers
    kinds = [e[0] for e in events]
    assert kinds == ["PayloadChunk", "InvokeComplete"], events
    for kind, h, _ in events:
        assert h[":message-type"] == "event", h
    payload = json.loads(events[0][2])
    assert payload["event"] == {"buffered": 1}, payload
    assert headers.get("x-amzn-requestid") == payload["requestId"], headers
    done = json.loads(events[1][2])
    assert not done.get("ErrorCode"), done
    log = base64.b64decode(done["LogResult"]).decode()
    check_tail(log, payload["requestId"], '"buffered"')


STREAMING_NODE = """
exports.handler = awslambda.streamifyResponse(async (event, stream, context) => {
  stream.setContentType('text/plain');
  for (let i = 0; i < event.parts; i++) {
    stream.write(`part-${i};`);
    await new Promise((r) => setTimeout(r, event.gap_ms));
  }
  stream.write('rid=' + context.awsRequestId);
  stream.end();
});
"""


def test_response_stream_of_a_streaming_handler(srv, lam):
    deploy_node(lam, "streamer", STREAMING_NODE)
    parts, gap = 5, 150
    status, headers, events, times, raw = stream_invoke(srv, "streamer",
                                                        {"parts": parts, "gap_ms": gap})
    assert status == 200, raw
    assert headers.get("content-type") == "text/plain", headers
    kinds = [e[0] for e in events]
    assert kinds[-1] == "InvokeComplete" and set(kinds[:-1]) == {"PayloadChunk"}, kinds
    body = b"".join(e[2] for e in events[:-1]).decode()
    expected = "".join(f"part-{i};" for i in range(parts))
    assert body.startswith(expected), body
    rid = body[len(expected):]
    assert re.fullmatch("rid=" + UUID, rid), body
    # The parts came as the handler wrote them, not all at the end.
    chunk_times = times[:-1]
    assert len(chunk_times) >= parts, events
    assert chunk_times[-1] - chunk_times[0] >= (parts - 1) * gap / 1000 * 0.8, chunk_times
    done = json.loads(events[-1][2])
    assert not done.get("ErrorCode"), done


def test_response_stream_names_its_request_id(srv, lam):
    """Every Lambda answer carries x-amzn-RequestId; for a streamed response it
    is the invocation's id, the one the handler sees."""
    deploy_node(lam, "streamer-rid", STREAMING_NODE)
    status, headers, events, _, raw = stream_invoke(srv, "streamer-rid", {"parts": 1, "gap_ms": 1})
    assert status == 200, raw
    body = b"".join(e[2] for e in events if e[0] == "PayloadChunk").decode()
    rid = body.split("rid=")[1]
    assert headers.get("x-amzn-requestid") == rid, headers


def test_response_stream_of_a_failing_handler(srv, lam):
    deploy_node(lam, "stream-fails", """
exports.handler = awslambda.streamifyResponse(async (event, stream) => {
  stream.write('before;');
  await new Promise((r) => setTimeout(r, 20));
  throw new TypeError('mid-stream failure');
});""")
    status, _, events, _, raw = stream_invoke(srv, "stream-fails", {})
    assert status == 200, raw
    assert events[0] == ("PayloadChunk", events[0][1], b"before;"), events
    kind, _, body = events[-1]
    assert kind == "InvokeComplete", events
    done = json.loads(body)
    # (Which code AWS puts here for a mid-stream throw is not pinned down; there must be one.)
    assert done.get("ErrorCode"), done
    assert "mid-stream failure" in done.get("ErrorDetails", ""), done


def test_a_relative_data_dir_runs_functions():
    """The default --data-dir is relative (./realm-data): the code the
    sandbox binds must still resolve (it is made absolute at start)."""
    from conftest import Server  # pylint: disable=import-outside-toplevel
    from fn_util import fn_client, ok  # pylint: disable=import-outside-toplevel
    srv = Server(data_dir="rel-data")
    try:
        lam = fn_client(srv)
        deploy_node(lam, "rel")
        assert ok(lam, "rel", {"x": 1}) is not None
    finally:
        srv.stop()


def test_each_change_reaches_the_next_invocation(lam):
    """Invocations of an unchanged function skip the registry (a cache kept while
    nothing is written); every kind of change must still reach the very next call."""
    name = "changes"
    src = "exports.handler = async () => ({ v: process.env.V_ONE || null, code: 'A' });"
    deploy_node(lam, name, src)
    assert ok(lam, name) == {"v": None, "code": "A"}
    assert ok(lam, name) == {"v": None, "code": "A"}  # the second from the cache
    lam.update_function_configuration(FunctionName=name, Environment={"Variables": {"V_ONE": "x"}})
    assert ok(lam, name) == {"v": "x", "code": "A"}
    lam.update_function_code(FunctionName=name, ZipFile=build_zip(node_files(src.replace("'A'", "'B'"))))
    poll_until(lambda: lam.get_function_configuration(FunctionName=name)["LastUpdateStatus"]
               == "Successful", 10, what="the code update")
    assert ok(lam, name) == {"v": "x", "code": "B"}
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
    code, status, resp = error_code(lam.invoke, FunctionName=name, Payload=b"{}")
    assert (code, status) == ("TooManyRequestsException", 429), resp
    lam.delete_function_concurrency(FunctionName=name)
    assert ok(lam, name) == {"v": "x", "code": "B"}
    lam.delete_function(FunctionName=name)
    code, status, resp = error_code(lam.invoke, FunctionName=name, Payload=b"{}")
    assert (code, status) == ("ResourceNotFoundException", 404), resp
    deploy_node(lam, name, src.replace("'A'", "'C'"))
    assert ok(lam, name) == {"v": None, "code": "C"}
