"""Response-streaming functions under plain Invoke and Event, `realm invoke`
printing chunks as they arrive, and reserved concurrency throttling
synchronous calls at once (issue 15).

The functions that must block do so on a gate this test controls: a TCP
server on the host's loopback (the server runs with --env-network host, so
environments can reach it) that holds each connection until release()
writes a byte to it. The gate's connection count says when a function is
inside its handler, so nothing here waits by sleeping.
"""
import json
import os
import socket
import subprocess
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import realm_bin
from fn_util import (deploy, failed_events, fn_client, fn_logs, fn_server,
                     invoke, ok, poll_until, raw_invoke, stream_invoke)
from lambda_util import aws
from wsclient import Ws

SIX_MB = 6 * 1024 * 1024

STREAMER = r"""
const net = require('net');
// Resolves once the test's gate writes a byte (see Gate in the test).
function gate(port) {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('data', () => { s.destroy(); resolve(); });
    s.once('error', reject);
  });
}
exports.handler = awslambda.streamifyResponse(async (event, stream) => {
  if (event.contentType) stream.setContentType(event.contentType);
  if (event.bytes) {
    const piece = Buffer.alloc(64 * 1024, 'x');
    let left = event.bytes;
    while (left > 0) {
      const n = Math.min(left, piece.length);
      stream.write(piece.subarray(0, n));
      left -= n;
    }
  }
  for (let i = 0; i < (event.parts || 0); i++) {
    stream.write('chunk-' + i + ';');
    if (event.gate && i === 0) await gate(event.gate);
  }
  console.log('streamer wrote everything ' + (event.marker || ''));
  stream.end();
});
"""

BLOCKER = r"""
const net = require('net');
exports.handler = async (event) => {
  console.log('blocker', JSON.stringify(event));
  if (event.gate) {
    await new Promise((resolve, reject) => {
      const s = net.connect(event.gate, '127.0.0.1');
      s.once('data', () => { s.destroy(); resolve(); });
      s.once('error', reject);
    });
  }
  return { done: event.n === undefined ? true : event.n };
};
"""


class Gate:
    """A TCP server that holds every connection until release(); once
    released, later connections are answered at once."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.lock = threading.Lock()
        self.conns = []
        self.accepted = 0
        self.is_released = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.accepted += 1
                if self.is_released:
                    c.sendall(b"g")
                    c.close()
                else:
                    self.conns.append(c)

    def waiting(self):
        with self.lock:
            return self.accepted

    def release(self):
        with self.lock:
            self.is_released = True
            for c in self.conns:
                try:
                    c.sendall(b"g")
                finally:
                    c.close()
            self.conns = []

    def close(self):
        self.release()
        self.sock.close()


@pytest.fixture(scope="module")
def srv():
    with fn_server("--env-network", "host") as s:
        yield s


@pytest.fixture(scope="module")
def lam(srv):
    return fn_client(srv, read_timeout=60)


@pytest.fixture(scope="module")
def streamer(lam):
    deploy(lam, "streamer", {"index.js": STREAMER}, MemorySize=512, Timeout=30)
    return "streamer"


@pytest.fixture
def gate():
    g = Gate()
    yield g
    g.close()


# ---- plain Invoke of a streaming function --------------------------------------------


def test_boto3_invoke_returns_the_whole_stream_with_its_content_type(lam, streamer):
    r = lam.invoke(FunctionName=streamer,
                   Payload=json.dumps({"parts": 5, "contentType": "text/plain; charset=utf-8"}))
    assert r["StatusCode"] == 200 and "FunctionError" not in r, r
    assert r["Payload"].read() == b"chunk-0;chunk-1;chunk-2;chunk-3;chunk-4;"
    assert r["ResponseMetadata"]["HTTPHeaders"]["content-type"] == "text/plain; charset=utf-8"


def test_default_content_type_is_octet_stream(srv, streamer):
    status, headers, body = raw_invoke(srv, streamer, json.dumps({"parts": 2}).encode())
    assert status == 200, body
    assert body == b"chunk-0;chunk-1;"
    assert headers["content-type"] == "application/octet-stream", headers


def test_empty_stream_is_an_empty_body(srv, streamer):
    status, headers, body = raw_invoke(srv, streamer, b"{}")
    assert (status, body) == (200, b""), (status, headers, body)
    assert "x-amz-function-error" not in headers, headers


def test_aws_cli_invoke_writes_the_whole_stream(srv, streamer, tmp_path):
    outfile = tmp_path / "out.bin"
    rc, out, err = aws(srv, "lambda", "invoke", "--function-name", streamer,
                       "--cli-binary-format", "raw-in-base64-out",
                       "--payload", json.dumps({"parts": 3}), str(outfile))
    assert rc == 0, err
    assert out["StatusCode"] == 200 and "FunctionError" not in out, out
    assert outfile.read_bytes() == b"chunk-0;chunk-1;chunk-2;"


def test_stream_of_exactly_six_mb_comes_whole(lam, streamer):
    r = lam.invoke(FunctionName=streamer, Payload=json.dumps({"bytes": SIX_MB}))
    data = r["Payload"].read()
    assert "FunctionError" not in r, data[:300]
    assert len(data) == SIX_MB and data == b"x" * SIX_MB


def test_stream_over_six_mb_is_response_size_too_large(srv, lam, streamer):
    marker = uuid.uuid4().hex
    r, p = invoke(lam, streamer, {"bytes": 7 * 1024 * 1024, "marker": marker})
    assert r["StatusCode"] == 200 and r.get("FunctionError") == "Unhandled", (r, p)
    assert p["errorType"] == "Function.ResponseSizeTooLarge", p
    assert str(7 * 1024 * 1024) in p["errorMessage"], p
    # The function ran to its end all the same, and the next call works.
    assert f"streamer wrote everything {marker}" in fn_logs(srv, streamer)
    r = lam.invoke(FunctionName=streamer, Payload=json.dumps({"parts": 1}))
    assert r["Payload"].read() == b"chunk-0;"


PY_STREAMER = '''
def handler(event, context):
    context.set_content_type('text/x-parts')
    for i in range(event['parts']):
        yield 'part-%d;' % i
    yield b'end'
'''


@pytest.mark.parametrize("channel", ["websocket", "http"])
def test_python_generator_under_invoke_comes_whole(lam, channel):
    """Both runtime API channels: the WebSocket one's stream_chunk messages and
    the HTTP one's chunked response in streaming mode."""
    name = f"py-streamer-{channel}"
    env = {"Variables": {"LAMBDA_USE_WEBSOCKET": "false" if channel == "http" else "true"}}
    deploy(lam, name, {"app.py": PY_STREAMER}, runtime="python3.11", handler="app.handler",
           Environment=env)
    r = lam.invoke(FunctionName=name, Payload=json.dumps({"parts": 3}))
    assert "FunctionError" not in r, r
    assert r["Payload"].read() == b"part-0;part-1;part-2;end"
    assert r["ResponseMetadata"]["HTTPHeaders"]["content-type"] == "text/x-parts"


def test_invoke_with_response_stream_still_streams(srv, streamer):
    status, headers, events, _, _ = stream_invoke(srv, streamer, {"parts": 3})
    assert status == 200
    chunks = [p for t, _, p in events if t == "PayloadChunk"]
    assert b"".join(chunks) == b"chunk-0;chunk-1;chunk-2;" and len(chunks) == 3, events
    assert events[-1][0] == "InvokeComplete"


def test_websocket_invoke_forwards_the_chunks_and_the_content_type(srv, streamer):
    ws = Ws(srv.ports["client"], timeout=30)
    try:
        ws.call({"id": "s", "function": "invoke",
                 "params": {"name": streamer,
                            "payload": {"parts": 3, "contentType": "text/csv"}}})
        msgs = []
        while not msgs or msgs[-1]["status"] == "streaming":
            m = ws.recv()
            if isinstance(m, dict) and m.get("id") == "s":
                msgs.append(m)
        assert "".join(m["data"]["data"] for m in msgs[:-1]) == "chunk-0;chunk-1;chunk-2;", msgs
        final = msgs[-1]
        assert final["status"] == "complete", final
        assert final["data"]["chunks"] == 3 and final["data"]["content_type"] == "text/csv", final
    finally:
        ws.close()


# ---- Event --------------------------------------------------------------------------


def test_event_invocation_of_a_streaming_function_runs_to_its_end(srv, lam, streamer):
    marker = uuid.uuid4().hex
    r = lam.invoke(FunctionName=streamer, InvocationType="Event",
                   Payload=json.dumps({"parts": 4, "marker": marker}))
    assert r["StatusCode"] == 202
    poll_until(lambda: f"streamer wrote everything {marker}" in fn_logs(srv, streamer), 30,
               what="the event's function to finish")
    # Counted done: nothing pending, nothing failed.
    poll_until(lambda: failed_events(srv, streamer) == {"FailedEvents": [], "Pending": 0}, 10,
               what="the event to be done")


# ---- realm invoke ---------------------------------------------------------------------


def read_until(stream, want, limit=1 << 20):
    got = b""
    while want not in got:
        b = stream.read1(4096) if hasattr(stream, "read1") else stream.read(1)
        if not b:
            break
        got += b
        assert len(got) < limit
    return got


def test_realm_invoke_prints_chunks_as_they_arrive(srv, streamer, gate):
    endpoint = f"http://127.0.0.1:{srv.ports['control']}"
    p = subprocess.Popen([realm_bin(), "invoke", streamer, "--payload",
                          json.dumps({"parts": 3, "gate": gate.port}), "--endpoint", endpoint],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        # The first chunk is printed while the function is still held at the gate.
        first = read_until(p.stdout, b"chunk-0;")
        assert first == b"chunk-0;", first
        # The function connects to the gate after writing chunk-0; it stays
        # held there (the command is still running) until the release.
        poll_until(lambda: gate.waiting() == 1, 30, what="the function at the gate")
        assert p.poll() is None
        gate.release()
        rest = p.stdout.read()
        assert p.wait(timeout=30) == 0, p.stderr.read()
        assert first + rest == b"chunk-0;chunk-1;chunk-2;\n"
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_realm_invoke_no_stream_waits_for_the_whole_answer(srv, streamer):
    endpoint = f"http://127.0.0.1:{srv.ports['control']}"
    r = subprocess.run([realm_bin(), "invoke", streamer, "--no-stream", "--payload",
                        json.dumps({"parts": 2}), "--endpoint", endpoint],
                       capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"chunk-0;chunk-1;\n"


def test_realm_invoke_of_a_plain_function_and_its_error(srv, lam):
    deploy(lam, "plain-cli", {"index.js": "exports.handler = async (e) => { "
                              "if (e.fail) throw new TypeError('bad ' + e.fail); "
                              "return {got: e}; };"})
    endpoint = f"http://127.0.0.1:{srv.ports['control']}"
    for extra in ([], ["--no-stream"]):
        r = subprocess.run([realm_bin(), "invoke", "plain-cli", *extra, "--payload", '{"a":1}',
                            "--endpoint", endpoint], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and json.loads(r.stdout) == {"got": {"a": 1}}, (extra, r)
        r = subprocess.run([realm_bin(), "invoke", "plain-cli", *extra, "--payload",
                            '{"fail":"input"}', "--endpoint", endpoint],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 1 and r.stdout == "", (extra, r)
        err = json.loads(r.stderr.strip().splitlines()[-1])
        assert err["errorType"] == "TypeError" and "bad input" in err["errorMessage"], (extra, r)


# ---- reserved concurrency -----------------------------------------------------------


def test_reserved_concurrency_throttles_synchronous_calls_at_once(srv, lam, gate):
    """Reserved concurrency 1 and eight concurrent synchronous calls of a
    function held at the gate: one runs, the seven others get 429 with the
    reserved reason while it is still held (they never waited for it)."""
    deploy(lam, "reserved-gate", {"index.js": BLOCKER}, Timeout=60)
    lam.put_function_concurrency(FunctionName="reserved-gate", ReservedConcurrentExecutions=1)
    clients = [fn_client(srv, read_timeout=60) for _ in range(8)]

    def call(i):
        try:
            r, p = invoke(clients[i], "reserved-gate", {"gate": gate.port, "n": i})
            return ("ok", r["StatusCode"], p)
        except Exception as e:  # noqa: BLE001 - the ClientError is what is looked at
            resp = getattr(e, "response", None)
            return ("error", resp["ResponseMetadata"]["HTTPStatusCode"] if resp else e, resp)

    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(call, i) for i in range(8)]
        try:
            poll_until(lambda: gate.waiting() == 1 and sum(f.done() for f in futures) == 7, 30,
                       what="one call held at the gate and seven answered")
            early = [f.result() for f in futures if f.done()]
        finally:
            gate.release()
        results = [f.result(timeout=60) for f in futures]
    assert all(r[0] == "error" for r in early), early
    for _, status, resp in early:
        assert status == 429, resp
        assert resp["Error"]["Code"] == "TooManyRequestsException", resp
        assert resp["Reason"] == "ReservedFunctionConcurrentInvocationLimitExceeded", resp
        assert resp["Type"] == "User" and resp["message"], resp
        assert resp["ResponseMetadata"]["HTTPHeaders"].get("retry-after"), resp
    oks = [r for r in results if r[0] == "ok"]
    assert len(oks) == 1 and oks[0][1] == 200 and "done" in oks[0][2], results
    assert gate.waiting() == 1  # the throttled calls never ran
    # After the release a new call succeeds.
    assert ok(lam, "reserved-gate", {"n": 99}) == {"done": 99}


def test_reserved_concurrency_throttles_stream_and_websocket_calls(srv, lam, gate):
    deploy(lam, "reserved-ws", {"index.js": BLOCKER}, Timeout=60)
    lam.put_function_concurrency(FunctionName="reserved-ws", ReservedConcurrentExecutions=1)
    holder = ThreadPoolExecutor(1)
    try:
        held = holder.submit(invoke, fn_client(srv, read_timeout=60), "reserved-ws",
                             {"gate": gate.port})
        poll_until(lambda: gate.waiting() == 1, 30, what="the first call at the gate")
        status, _, _, _, raw = stream_invoke(srv, "reserved-ws", {})
        assert status == 429, raw
        body = json.loads(raw)
        assert body["Reason"] == "ReservedFunctionConcurrentInvocationLimitExceeded", body
        ws = Ws(srv.ports["client"], timeout=30)
        try:
            ws.call({"id": "t", "function": "invoke", "params": {"name": "reserved-ws"}})
            m = ws.recv()
            while not (isinstance(m, dict) and m.get("id") == "t"):
                m = ws.recv()
            assert m["status"] == "error" and m["error"]["code"] == "THROTTLED", m
            assert m["error"]["reason"] == \
                "ReservedFunctionConcurrentInvocationLimitExceeded", m
        finally:
            ws.close()
        # An Event past reserved concurrency is queued, not refused: it runs later.
        marker = uuid.uuid4().hex
        r = lam.invoke(FunctionName="reserved-ws", InvocationType="Event",
                       Payload=json.dumps({"n": marker}))
        assert r["StatusCode"] == 202
        gate.release()
        r, p = held.result(timeout=60)
        assert p == {"done": True}, p
        poll_until(lambda: failed_events(srv, "reserved-ws") == {"FailedEvents": [],
                                                                 "Pending": 0}, 30,
                   what="the queued event to run")
        assert marker in fn_logs(srv, "reserved-ws")
    finally:
        gate.release()
        holder.shutdown(wait=True)


def test_unreserved_function_still_queues(srv, lam, gate):
    """Without reserved concurrency a call waits in the bounded queue for the
    server's own capacity; here there is room, so both calls run."""
    deploy(lam, "unreserved", {"index.js": BLOCKER}, Timeout=60)
    with ThreadPoolExecutor(2) as pool:
        fs = [pool.submit(invoke, fn_client(srv, read_timeout=60), "unreserved",
                          {"gate": gate.port, "n": i}) for i in range(2)]
        poll_until(lambda: gate.waiting() == 2, 30, what="both calls at the gate")
        gate.release()
        assert sorted(f.result(timeout=60)[1]["done"] for f in fs) == [0, 1]


# ---- a function deleted while an invocation runs ------------------------------------

LATE_LOADER = r"""
const net = require('net');
exports.handler = async (event) => {
  await new Promise((resolve, reject) => {
    const s = net.connect(event.gate, '127.0.0.1');
    s.once('data', () => { s.destroy(); resolve(); });
    s.once('error', reject);
  });
  // Read from the package only after the gate: the code must still be there.
  return { late: require('./late.js').value };
};
"""


def test_delete_during_an_invocation_lets_it_finish_then_frees_the_package(srv, lam, gate):
    """DeleteFunction while a call runs (AWS lets it finish): the unpacked
    package stays until the environment ends, then goes."""
    import base64
    created = deploy(lam, "deleted-in-flight",
                     {"index.js": LATE_LOADER, "late.js": "exports.value = 'still here';"},
                     Timeout=60)
    tree = os.path.join(srv.data_dir, "packages",
                        base64.b64decode(created["CodeSha256"]).hex())
    assert os.path.isdir(tree)
    with ThreadPoolExecutor(1) as pool:
        fut = pool.submit(invoke, fn_client(srv, read_timeout=60), "deleted-in-flight",
                          {"gate": gate.port})
        poll_until(lambda: gate.waiting() == 1, 60, what="the call at the gate")
        lam.delete_function(FunctionName="deleted-in-flight")
        assert os.path.isdir(tree)  # kept: an environment runs it
        gate.release()
        r, payload = fut.result(timeout=60)
    assert "FunctionError" not in r, payload
    assert payload == {"late": "still here"}
    # Its environment ends (the function is gone), and the package with it.
    poll_until(lambda: not os.path.exists(tree), 60, what="the package removed")
