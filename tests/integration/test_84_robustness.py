"""Security and robustness (issue 13): descriptors, names, memory, SigV4.

- Descriptors: every listener has a connection limit and the server keeps
  descriptors in reserve, so 22,000 idle connections to the control port
  leave an environment able to start, and /metrics and /health answer; idle
  HTTP connections past --max-idle-http-connections close oldest first; a
  listener at its limit answers 503 with Retry-After and closes.
- Names: a function name holding NUL or another control character (escaped
  in a path or query, or in a WebSocket call) is refused with 400 in the
  protocol's own shape before any lookup: `victim%00junk` never runs
  `victim`.
- Memory: after a burst of 10,000 WebSockets the server's RSS falls back to
  within twice its idle RSS (glibc's malloc_trim after activity stops).
  Measured on a build without sanitizers (ASan's allocator keeps freed
  memory in quarantine by design): REALM_RELEASE_BIN, else build/realm,
  which `make test` builds.
- SigV4 (--auth): X-Amz-Content-SHA256: UNSIGNED-PAYLOAD and a body that
  does not match the signed payload hash are 403.

Nothing sleeps to synchronise: waits poll with deadlines.
"""
import base64
import hashlib
import json
import os
import resource
import socket
import subprocess
import sys
import urllib.request

import pytest

from conftest import ROOT, Server, realm_bin
from fn_util import deploy_python, fn_client, fn_server, http_request, metric, poll_until
from test_82_tenants import check_aws_error, keys_create, send, sign, signed
from wsclient import Ws

# ---- helpers ----------------------------------------------------------------------------


def _raise_nofile():
    """This process may hold as many descriptors as its hard limit allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


# A child that holds connections to a port: each line "N" on its stdin opens N
# more (non-blocking connects, then a wait until each is established or
# failed) and answers "ok ESTABLISHED FAILED"; EOF closes them all. Several
# children share a flood: one process may not hold more descriptors than its
# hard limit.
HOLDER_SRC = r"""
import resource, socket, sys, time
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
port, socks = int(sys.argv[1]), []
for line in sys.stdin:
    batch = []
    for _ in range(int(line)):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        batch.append(s)
    pending, failed, deadline = batch, 0, time.monotonic() + 60
    while pending and time.monotonic() < deadline:
        left = []
        for s in pending:
            if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                failed += 1
                continue
            try:
                s.getpeername()
            except OSError:
                left.append(s)
        pending = left
        if pending:
            time.sleep(0.05)
    socks += batch
    print("ok", len(batch) - len(pending) - failed, failed + len(pending), flush=True)
"""


class Flood:
    """Idle TCP connections to a port, held by child processes. Opened in
    batches smaller than the listen backlog, each once the server has taken
    the one before (seen() counts what it took), so that none is lost to a
    full accept queue: every one reaches the server."""

    BATCH = 1000

    def __init__(self, port, per_child, children):
        self.kids = [subprocess.Popen(["/usr/bin/python3", "-c", HOLDER_SRC, str(port)],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
                     for _ in range(children)]
        self.per_child = per_child
        self.connected = 0

    def open(self, seen, base):
        for k in self.kids:
            left = self.per_child
            while left > 0:
                n = min(self.BATCH, left)
                k.stdin.write(f"{n}\n")
                k.stdin.flush()
                line = k.stdout.readline().split()
                assert line and line[0] == "ok", line
                self.connected += int(line[1])
                left -= n
                poll_until(lambda: seen() - base >= self.connected, 60, 0.05,
                           f"the server to take {self.connected} connections")

    def close(self):
        for k in self.kids:
            k.stdin.close()
        for k in self.kids:
            k.wait(timeout=60)


def open_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def soft_nofile(pid):
    for line in open(f"/proc/{pid}/limits"):
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise AssertionError("no open files line")


def rss_kb(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def health(s):
    with urllib.request.urlopen(s.url("metrics", "/health"), timeout=10) as r:
        return r.status, json.loads(r.read())


def read_response(sock):
    """(status, {lower-case header: value}, body) of one HTTP response; None at EOF."""
    data = b""
    while b"\r\n\r\n" not in data:
        d = sock.recv(65536)
        if not d:
            return None
        data += d
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in
               (l.split(":", 1) for l in lines[1:])}
    n = int(headers.get("content-length", "0"))
    while len(rest) < n:
        d = sock.recv(65536)
        assert d, "EOF inside a body"
        rest += d
    return int(lines[0].split()[1]), headers, rest[:n]


LIST = b"GET /2015-03-31/functions/ HTTP/1.1\r\nHost: x\r\n\r\n"


def is_closed_by_server(sock):
    """True when the server has closed this (idle) connection."""
    sock.settimeout(10)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


# ---- descriptors ------------------------------------------------------------------------

PY_FN = """
def handler(event, context):
    return {"ok": True, "event": event}
"""


def test_22000_idle_control_connections_leave_room_for_an_environment():
    hard = _raise_nofile()
    procs = max(2, -(-22000 // (hard - 100)))
    with fn_server() as s:
        lam = fn_client(s)
        deploy_python(lam, "pyfn", PY_FN)
        deploy_python(lam, "pyfn2", PY_FN)
        pid = s.proc.pid
        limit = soft_nofile(pid)
        # Every connection reaches the server: accepted (and perhaps closed
        # later as the oldest idle one) or refused.
        seen = lambda: (metric(s, "realm_connections_accepted_total", '{listener="control"}') +
                        metric(s, "realm_connections_rejected_total", '{listener="control"}'))
        flood = Flood(s.ports["control"], 22000 // procs, procs)
        try:
            flood.open(seen, seen())
            assert flood.connected >= 21990, flood.connected
            assert metric(s, "realm_connections_open", '{listener="control"}') <= 1024
            # Idle ones over the cap go once a second has passed (the grace
            # a burst gets between accept and its first request).
            poll_until(lambda: metric(s, "realm_connections_idle", '{listener="control"}') <= 256,
                       10, 0.2, "idle connections to fall to the cap")
            fds = open_fds(pid)
            assert fds < limit - 2048, (fds, limit)
            # The monitoring surface answers.
            assert health(s) == (200, {"status": "ok", "version": "0.1.0"})
            assert metric(s, "realm_accept_pauses_total", '{listener="control"}') == 0
            # Two environments start, over the client WebSocket: `invoke`
            # and a call by the function's own name.
            ws = Ws(s.ports["client"], timeout=60)
            try:
                ws.call({"id": "1", "function": "invoke",
                         "params": {"name": "pyfn", "payload": {}}})
                r = ws.recv()
                assert r["id"] == "1" and r["status"] == "complete", r
                assert r["data"]["payload"] == {"ok": True, "event": {}}, r
                ws.call({"id": "2", "function": "pyfn2", "params": {"n": 2}})
                r = ws.recv()
                assert r["id"] == "2" and r["status"] == "complete", r
                assert r["data"]["payload"] == {"ok": True, "event": {"n": 2}}, r
            finally:
                ws.close()
            assert metric(s, "realm_environments_started_total") == 2
            # The control API itself still serves a newcomer (room is made).
            assert http_request(s.ports["control"], "GET", "/2015-03-31/functions/")[0] == 200
        finally:
            flood.close()


def test_listener_at_its_limit_answers_503_and_recovers(make_server):
    s = make_server("--max-control-connections", "3")
    busy = []
    for _ in range(3):  # mid-header: busy, not idle, so never closed for room
        c = socket.create_connection(("127.0.0.1", s.ports["control"]), timeout=10)
        c.sendall(b"GET /2015-03-31/functions/ HTTP/1.1\r\n")
        busy.append(c)
    poll_until(lambda: metric(s, "realm_connections_open", '{listener="control"}') == 3, 10)
    poll_until(lambda: metric(s, "realm_connections_idle", '{listener="control"}') == 0, 10,
               what="the three to be read from (busy, not idle)")
    extra = socket.create_connection(("127.0.0.1", s.ports["control"]), timeout=10)
    status, headers, body = read_response(extra)
    assert status == 503 and headers["retry-after"] == "1", (status, headers)
    assert headers["x-amzn-errortype"] == "ServiceException", headers
    assert json.loads(body)["message"], body
    assert is_closed_by_server(extra)
    extra.close()
    assert metric(s, "realm_connections_rejected_total", '{listener="control"}') >= 1
    assert metric(s, "realm_connections_max", '{listener="control"}') == 3
    # One finishes its request: the next newcomer is served.
    busy[0].sendall(b"Host: x\r\nConnection: close\r\n\r\n")
    assert read_response(busy[0])[0] == 200
    poll_until(lambda: metric(s, "realm_connections_open", '{listener="control"}') == 2, 10)
    assert http_request(s.ports["control"], "GET", "/2015-03-31/functions/")[0] == 200
    for c in busy:
        c.close()


def test_idle_http_connections_close_oldest_first(make_server):
    s = make_server("--max-idle-http-connections", "3")
    conns = []
    for _ in range(5):  # each becomes idle after its answer, in this order
        c = socket.create_connection(("127.0.0.1", s.ports["control"]), timeout=10)
        c.sendall(LIST)
        assert read_response(c)[0] == 200
        conns.append(c)
    assert is_closed_by_server(conns[0]) and is_closed_by_server(conns[1])
    for c in conns[2:]:  # the three youngest still serve
        c.sendall(LIST)
        assert read_response(c)[0] == 200
    assert metric(s, "realm_connections_idle", '{listener="control"}') == 3
    # A connection that never sends a byte is idle too: it takes the oldest's place.
    silent = socket.create_connection(("127.0.0.1", s.ports["control"]), timeout=10)
    assert is_closed_by_server(conns[2])
    for c in conns + [silent]:
        c.close()


# ---- memory -----------------------------------------------------------------------------


def _is_sanitized(path):
    with open(path, "rb") as f:
        return b"__asan_init" in f.read()


def _plain_binary():
    for cand in (os.environ.get("REALM_RELEASE_BIN"), realm_bin(),
                 os.path.join(ROOT, "build", "realm")):
        if cand and os.path.exists(cand) and not _is_sanitized(cand):
            return cand
    return None


def ws_burst(port, n):
    """Opens n WebSockets (raw handshakes), waits for every welcome, returns the sockets."""
    req = (b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key: " + base64.b64encode(os.urandom(16)) +
           b"\r\nSec-WebSocket-Version: 13\r\n\r\n")
    socks = []
    for _ in range(n):
        c = socket.create_connection(("127.0.0.1", port), timeout=30)
        c.sendall(req)
        socks.append(c)
    for c in socks:
        buf = b""
        while b'"connected"' not in buf:
            d = c.recv(4096)
            assert d, buf
            buf += d
        assert buf.startswith(b"HTTP/1.1 101"), buf[:80]
    return socks


def test_rss_returns_within_twice_idle_after_10000_connections(make_server, monkeypatch):
    binary = _plain_binary()
    if binary is None:
        pytest.skip("needs a build without sanitizers (make build, or REALM_RELEASE_BIN)")
    _raise_nofile()
    monkeypatch.setenv("REALM_BIN", binary)
    s = make_server()
    pid = s.proc.pid
    assert health(s)[0] == 200
    idle = rss_kb(pid)
    socks = ws_burst(s.ports["client"], 10000)
    poll_until(lambda: metric(s, "realm_websocket_connections") == 10000, 30)
    peak = rss_kb(pid)
    for c in socks:
        c.close()
    poll_until(lambda: metric(s, "realm_websocket_connections") == 0, 60, 0.2,
               "the burst to close")
    # The burst did cost memory (or this test could not fail) ...
    assert peak > 2 * idle, (idle, peak)
    # ... and it is given back once activity stops.
    after = poll_until(lambda: (lambda r: r if r <= 2 * idle else 0)(rss_kb(pid)), 30, 0.2,
                       f"RSS to fall within 2x of idle ({idle} kB; peak {peak} kB)")
    assert metric(s, "realm_memory_trims_total") >= 1
    print(f"RSS idle {idle} kB, peak {peak} kB, after {after} kB")


# ---- names ------------------------------------------------------------------------------

BAD = ["victim%00junk", "victim%00", "%00victim", "vic%01tim", "victim%0a", "victim%1F", "victim%7f",
       "arn:aws:lambda:us-east-1:000000000000:function:victim%00junk",
       "000000000000:function:victim%00junk", "victim:%00"]


def _invocations(s):
    return metric(s, "realm_invocations_total")


def test_control_characters_in_names_are_400_before_any_lookup(make_server):
    s = make_server()
    lam = fn_client(s)
    deploy_python(lam, "victim", PY_FN)
    lam.create_alias(FunctionName="victim", Name="live", FunctionVersion="$LATEST")
    port = s.ports["control"]
    cases = []
    for name in BAD:
        cases += [("GET", f"/2015-03-31/functions/{name}", b""),
                  ("GET", f"/2015-03-31/functions/{name}/configuration", b""),
                  ("PUT", f"/2015-03-31/functions/{name}/configuration", b"{}"),
                  ("DELETE", f"/2015-03-31/functions/{name}", b""),
                  ("POST", f"/2015-03-31/functions/{name}/invocations", b"{}"),
                  ("POST", f"/2021-11-15/functions/{name}/response-streaming-invocations", b"{}"),
                  ("POST", f"/2014-11-13/functions/{name}/invoke-async/", b"{}"),
                  ("GET", f"/2015-03-31/functions/{name}/aliases", b""),
                  ("GET", f"/2015-03-31/functions/{name}/aliases/live", b"")]
    cases += [("GET", "/2015-03-31/functions/victim/aliases/live%00x", b""),
              ("DELETE", "/2015-03-31/functions/victim/aliases/live%00", b""),
              ("PUT", "/2015-03-31/functions/victim/aliases/live%0a", b"{}"),
              ("POST", "/2015-03-31/functions/victim/invocations?Qualifier=live%00x", b"{}"),
              ("DELETE", "/2015-03-31/functions/victim?Qualifier=%00", b"")]
    for method, path, body in cases:
        status, headers, data = http_request(port, method, path, body)
        check_aws_error(status, headers, data, 400, "InvalidParameterValueException")
    # A name with a control character in a JSON body: the registry refuses it.
    status, headers, data = http_request(
        port, "POST", "/2015-03-31/functions", json.dumps(
            {"FunctionName": "bad\u0001name", "Runtime": "python3.11", "Handler": "app.handler",
             "Role": "arn:aws:iam::000000000000:role/x",
             "Code": {"ZipFile": base64.b64encode(b"PK").decode()}}).encode())
    check_aws_error(status, headers, data, 400, "InvalidParameterValueException", "control")
    # victim never ran, and is all there.
    assert _invocations(s) == 0
    assert lam.get_function(FunctionName="victim")["Configuration"]["FunctionName"] == "victim"
    assert lam.get_alias(FunctionName="victim", Name="live")["Name"] == "live"

    ws = Ws(s.ports["client"])
    try:
        for i, (params, param) in enumerate([({"name": "victim\u0001junk"}, "name"),
                                             ({"name": "victim\njunk"}, "name"),
                                             ({"name": "victim\u007f"}, "name"),
                                             ({"name": "victim", "qualifier": "live\u0001"},
                                              "qualifier")]):
            ws.call({"id": f"p{i}", "function": "invoke", "params": params})
            r = ws.recv()
            assert r["id"] == f"p{i}" and r["status"] == "error", r
            assert r["error"]["code"] == "INVALID_PARAMS" and r["error"]["param"] == param, r
        # By the function's own name.
        for i, fn in enumerate(["victim\u0001junk", "victim\u001f", "\u007fvictim"]):
            ws.call({"id": f"n{i}", "function": fn, "params": {}})
            r = ws.recv()
            assert r["id"] == f"n{i}" and r["status"] == "error", r
            assert r["error"]["code"] == "INVALID_REQUEST", r
            assert "control characters" in r["error"]["message"], r
        # NUL: jansson refuses the whole message (not JSON the server reads).
        ws.sock.sendall(ws.ws.send(__import__("wsproto").events.TextMessage(
            data='{"id":"z","function":"invoke","params":{"name":"victim\\u0000junk"}}')))
        r = ws.recv()
        assert r["id"] is None and r["status"] == "error", r
        assert r["error"]["code"] == "INVALID_REQUEST", r
    finally:
        ws.close()
    assert _invocations(s) == 0


# ---- SigV4 ------------------------------------------------------------------------------


def test_sigv4_unsigned_payload_and_mismatched_body_are_403(make_server):
    s = make_server("--auth")
    key = keys_create(s, "team-a")
    ak, sk = key["access_key_id"], key["secret_access_key"]
    path = "/2015-03-31/functions"

    def create_body(name):
        return json.dumps({"FunctionName": name, "Runtime": "python3.11",
                           "Handler": "app.handler", "Role": "arn:aws:iam::000000000000:role/x",
                           "Code": {"ZipFile": ""}}).encode()

    a, b = create_body("fn-a"), create_body("fn-b")
    # UNSIGNED-PAYLOAD, signed as a header: refused with the body it was
    # signed with, and with any other (a replay with another body).
    h = sign(s, "POST", path, a, ak, sk, {"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"})
    assert "x-amz-content-sha256" in h["Authorization"].lower(), h
    for body in (a, b):
        check_aws_error(*send(s, "POST", path, body, h), 403, "InvalidSignatureException",
                        "UNSIGNED-PAYLOAD")
    # GET with no body: refused all the same.
    h = sign(s, "GET", path + "/", b"", ak, sk, {"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"})
    check_aws_error(*send(s, "GET", path + "/", b"", h), 403, "InvalidSignatureException")
    # A signed payload hash that is not the body's.
    h = sign(s, "POST", path, a, ak, sk,
             {"X-Amz-Content-SHA256": hashlib.sha256(a).hexdigest()})
    check_aws_error(*send(s, "POST", path, b, h), 403, "InvalidSignatureException",
                    "x-amz-content-sha256")
    # No header: the server hashes the body itself; the signed one verifies,
    # another body does not.
    h = sign(s, "GET", path + "/", b"", ak, sk)
    assert send(s, "GET", path + "/", b"", h)[0] == 200
    h = sign(s, "POST", path, a, ak, sk)
    check_aws_error(*send(s, "POST", path, b, h), 403, "InvalidSignatureException")
    # Nothing was created by any of them.
    status, _, body = signed(s, key, "GET", path + "/")
    assert status == 200 and json.loads(body)["Functions"] == [], body
