"""HTTP/1.1 on the listeners, over raw sockets.

Routes used: the metrics listener's `GET /metrics` (its body limit is 1 byte)
and the control listener's unknown paths, which are 404s in AWS's error shape
(its default body limit is --max-body-bytes). Every malformed case also checks that the server still
answers on a fresh connection afterwards.

Synchronisation is by blocking reads with a timeout, never by sleeping.
"""
import json
import socket
import time

import pytest

READ_TIMEOUT = 5


class Response:
    def __init__(self, version, status, reason, headers, body):
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers  # list of (name, value) as sent
        self.body = body

    def header(self, name):
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return None

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"<Response {self.status} {self.headers!r} {self.body[:200]!r}>"


class Http:
    """A raw HTTP/1.1 client connection with its own read buffer."""

    def __init__(self, port, timeout=READ_TIMEOUT):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""

    def close(self):
        self.sock.close()

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("latin-1")
        self.sock.sendall(data)

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError(f"connection closed; unparsed bytes {self.buf!r}")
        self.buf += chunk

    def _read_until(self, sep):
        while sep not in self.buf:
            self._fill()
        i = self.buf.index(sep)
        out, self.buf = self.buf[:i], self.buf[i + len(sep):]
        return out

    def _read_exact(self, n):
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _read_to_eof(self):
        while True:
            try:
                self._fill()
            except EOFError:
                break
        out, self.buf = self.buf, b""
        return out

    def read_response(self, head=False):
        """Reads one response (a 1xx is returned on its own)."""
        block = self._read_until(b"\r\n\r\n").decode("latin-1")
        lines = block.split("\r\n")
        version, status, reason = (lines[0].split(" ", 2) + [""])[:3]
        assert version == "HTTP/1.1", f"bad status line {lines[0]!r}"
        headers = []
        for line in lines[1:]:
            name, _, value = line.partition(":")
            assert name and _, f"bad header line {line!r}"
            headers.append((name, value.strip()))
        res = Response(version, int(status), reason, headers, b"")
        if res.status < 200 or head or res.status in (204, 304):
            return res
        te = res.header("Transfer-Encoding")
        cl = res.header("Content-Length")
        if te is not None:
            assert te.lower() == "chunked", te
            body = b""
            while True:
                size = int(self._read_until(b"\r\n").split(b";")[0], 16)
                if size == 0:
                    while self._read_until(b"\r\n") != b"":
                        pass
                    break
                body += self._read_exact(size)
                assert self._read_exact(2) == b"\r\n"
            res.body = body
        elif cl is not None:
            res.body = self._read_exact(int(cl))
        else:
            res.body = self._read_to_eof()
        return res

    def expect_eof(self, timeout=READ_TIMEOUT):
        """Asserts the server closes without sending anything more."""
        self.sock.settimeout(timeout)
        try:
            while True:
                try:
                    chunk = self.sock.recv(65536)
                except ConnectionResetError:
                    chunk = b""
                if not chunk:
                    break
                self.buf += chunk
        finally:
            self.sock.settimeout(READ_TIMEOUT)
        assert self.buf == b"", f"unexpected bytes before close: {self.buf!r}"

    def expect_silence(self, seconds):
        """Asserts nothing arrives (and no close) for `seconds`: a timed read."""
        self.sock.settimeout(seconds)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            chunk = None
        finally:
            self.sock.settimeout(READ_TIMEOUT)
        assert chunk is None, f"expected silence, got {chunk!r}"


def request(method, path, headers=(), body=b"", version="HTTP/1.1", host=True):
    lines = [f"{method} {path} {version}"]
    if host:
        lines.append("Host: test")
    lines += [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def assert_alive(server):
    """A fresh connection is served (the server survived whatever came before)."""
    c = Http(server.ports["metrics"])
    try:
        c.send(request("GET", "/metrics", [("Connection", "close")]))
        r = c.read_response()
        assert r.status == 200, r
        assert b"realm_build_info" in r.body
    finally:
        c.close()


def assert_error_json(r, status):
    assert r.status == status, r
    assert r.header("Content-Type").startswith("application/json"), r
    body = r.json()
    if r.header("x-amzn-ErrorType"):
        # The control listener answers in AWS's shape (docs/control-api.md).
        assert set(body) == {"Type", "message"}, body
        assert r.header("x-amzn-RequestId"), r
        assert isinstance(body["message"], str) and body["message"], body
        return
    if "errorType" in body:
        # The runtime listener answers in AWS's runtime API shape (docs/runtime-channel.md).
        assert set(body) == {"errorMessage", "errorType"}, body
        return
    assert set(body) == {"error"}, body
    err = body["error"]
    assert err["status"] == status, body
    assert isinstance(err["code"], str) and err["code"], body
    assert isinstance(err["message"], str) and err["message"], body


# ---- basic routing -------------------------------------------------------------


def test_get_metrics_ok(server):
    c = Http(server.ports["metrics"])
    c.send(request("GET", "/metrics"))
    r = c.read_response()
    assert r.status == 200, r
    assert r.header("Content-Type").startswith("text/plain"), r
    assert int(r.header("Content-Length")) == len(r.body) > 0
    assert r.header("Connection") is None, r
    c.close()


@pytest.mark.parametrize("listener,method,path", [
    ("control", "GET", "/"),
    ("control", "POST", "/2015-03-31/nope"),
    ("runtime", "GET", "/2018-06-01/runtime/nope"),
    ("metrics", "GET", "/nope"),
    ("metrics", "GET", "/metrics/extra"),
])
def test_unknown_path_is_404_json(server, listener, method, path):
    c = Http(server.ports[listener])
    c.send(request(method, path, [("Content-Length", "0")] if method == "POST" else []))
    r = c.read_response()
    assert_error_json(r, 404)
    if listener == "control":
        assert r.header("x-amzn-ErrorType") == "UnknownOperationException", r
    elif listener == "runtime":
        # The runtime API answers in AWS's runtime shape.
        assert r.json()["errorType"] == "NotFound", r
    else:
        assert r.json()["error"]["code"] == "Not Found"
    # A 404 keeps the connection usable.
    c.send(request("GET", "/x"))
    assert c.read_response().status == 404
    c.close()


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_wrong_method_is_405_with_allow(server, method):
    c = Http(server.ports["metrics"])
    c.send(request(method, "/metrics", [("Content-Length", "0")]))
    r = c.read_response()
    assert_error_json(r, 405)
    allow = [m.strip() for m in (r.header("Allow") or "").split(",")]
    assert "GET" in allow and "HEAD" in allow, r
    assert method not in allow
    c.send(request("GET", "/metrics"))
    assert c.read_response().status == 200
    c.close()


def test_head_has_length_and_no_body(server):
    c = Http(server.ports["metrics"])
    c.send(request("HEAD", "/metrics"))
    r = c.read_response(head=True)
    assert r.status == 200, r
    assert int(r.header("Content-Length")) > 0, r
    # If any body bytes had been sent they would precede the next status line.
    c.send(request("GET", "/nope"))
    r2 = c.read_response()
    assert r2.status == 404, r2
    c.close()


def test_head_on_unknown_path_is_404_without_body(server):
    c = Http(server.ports["control"])
    c.send(request("HEAD", "/nope"))
    r = c.read_response(head=True)
    assert r.status == 404, r
    assert int(r.header("Content-Length")) > 0, r
    c.send(request("GET", "/metrics"))
    assert_error_json(c.read_response(), 404)
    c.close()


def test_plain_get_on_client_listener_is_426(server):
    c = Http(server.ports["client"])
    c.send(request("GET", "/"))
    r = c.read_response()
    assert r.status == 426, r
    assert (r.header("Upgrade") or "").lower() == "websocket", r
    c.close()


# ---- connection management -------------------------------------------------------


def test_keep_alive_serves_many_requests(server):
    c = Http(server.ports["metrics"])
    for _ in range(5):
        c.send(request("GET", "/metrics"))
        r = c.read_response()
        assert r.status == 200, r
        assert r.header("Connection") is None, r
    c.close()


def test_pipelining_three_requests_in_one_write(server):
    c = Http(server.ports["metrics"])
    c.send(request("GET", "/metrics") + request("GET", "/first-missing") +
           request("POST", "/metrics", [("Content-Length", "0")]))
    statuses = [c.read_response().status for _ in range(3)]
    assert statuses == [200, 404, 405]
    # And in the other order, to tell reordering from luck.
    c.send(request("GET", "/second-missing") + request("POST", "/metrics", [("Content-Length", "0")]) +
           request("GET", "/metrics"))
    r1, r2, r3 = (c.read_response() for _ in range(3))
    assert [r1.status, r2.status, r3.status] == [404, 405, 200]
    assert b"realm_build_info" in r3.body
    c.close()


def test_pipelined_requests_keep_order_on_404_paths(server):
    c = Http(server.ports["control"])
    paths = [f"/p{i}" for i in range(3)]
    c.send(b"".join(request("GET", p) for p in paths))
    for p in paths:
        r = c.read_response()
        assert r.status == 404, r
    c.close()


def test_http10_without_keep_alive_closes(server):
    c = Http(server.ports["metrics"])
    c.send(request("GET", "/metrics", version="HTTP/1.0", host=False))
    r = c.read_response()
    assert r.status == 200, r
    assert (r.header("Connection") or "").lower() == "close", r
    c.expect_eof()
    c.close()
    assert_alive(server)


def test_http10_with_keep_alive_stays_open(server):
    c = Http(server.ports["metrics"])
    c.send(request("GET", "/metrics", [("Connection", "keep-alive")], version="HTTP/1.0"))
    r = c.read_response()
    assert r.status == 200, r
    assert (r.header("Connection") or "").lower() == "keep-alive", r
    c.send(request("GET", "/metrics", version="HTTP/1.0"))
    assert c.read_response().status == 200
    c.expect_eof()
    c.close()


def test_connection_close_request_closes(server):
    c = Http(server.ports["metrics"])
    c.send(request("GET", "/metrics", [("Connection", "close")]))
    r = c.read_response()
    assert r.status == 200
    assert (r.header("Connection") or "").lower() == "close", r
    c.expect_eof()
    c.close()


def test_half_close_after_complete_request_gets_response(server):
    c = Http(server.ports["metrics"])
    c.send(request("GET", "/metrics"))
    c.sock.shutdown(socket.SHUT_WR)
    r = c.read_response()
    assert r.status == 200, r
    assert b"realm_build_info" in r.body
    c.expect_eof()
    c.close()


def test_half_close_after_pipelined_requests_gets_all_responses(server):
    c = Http(server.ports["control"])
    c.send(request("GET", "/a") + request("GET", "/b"))
    c.sock.shutdown(socket.SHUT_WR)
    assert c.read_response().status == 404
    assert c.read_response().status == 404
    c.expect_eof()
    c.close()
    assert_alive(server)


# ---- request bodies ----------------------------------------------------------------


def test_chunked_body_on_404_is_consumed(server):
    c = Http(server.ports["control"])
    body = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nTrailer: x\r\n\r\n"
    c.send(request("POST", "/functions", [("Transfer-Encoding", "chunked")], body))
    assert_error_json(c.read_response(), 404)
    # If the body had not been consumed, its bytes would be parsed as a request.
    c.send(request("GET", "/next"))
    r = c.read_response()
    assert_error_json(r, 404)
    c.close()


def test_chunked_body_in_pieces(server):
    c = Http(server.ports["control"])
    c.send(request("POST", "/functions", [("Transfer-Encoding", "chunked")]))
    for piece in (b"3\r\nab", b"c\r\n", b"a\r\n0123", b"456789\r\n", b"0\r\n", b"\r\n"):
        c.send(piece)
    assert c.read_response().status == 404
    c.send(request("GET", "/metrics"))
    assert c.read_response().status == 404
    c.close()


def test_chunked_get_within_route_limit(server):
    # /metrics allows a body of 1 byte: a chunked GET with one byte is served.
    c = Http(server.ports["metrics"])
    c.send(request("GET", "/metrics", [("Transfer-Encoding", "chunked")], b"1\r\nx\r\n0\r\n\r\n"))
    r = c.read_response()
    assert r.status == 200, r
    c.send(request("GET", "/metrics"))
    assert c.read_response().status == 200
    c.close()


def test_content_length_body_on_404_is_consumed(server):
    c = Http(server.ports["control"])
    c.send(request("POST", "/x", [("Content-Length", "11")], b"GET / HTTP/"))
    assert c.read_response().status == 404
    c.send(request("GET", "/y"))
    assert c.read_response().status == 404
    c.expect_silence(0.2)
    c.close()


def test_body_over_limit_by_content_length_is_413_before_body(server):
    c = Http(server.ports["metrics"])
    # The route allows 1 byte; no body byte is sent: the answer cannot wait for it.
    c.send(request("GET", "/metrics", [("Content-Length", "2")]))
    r = c.read_response()
    assert_error_json(r, 413)
    assert (r.header("Connection") or "").lower() == "close", r
    c.close()
    assert_alive(server)


def test_body_over_server_limit_by_content_length_is_413(make_server):
    s = make_server("--max-body-bytes", "1024")
    c = Http(s.ports["control"])
    c.send(request("POST", "/x", [("Content-Length", "1025")]))
    assert_error_json(c.read_response(), 413)
    c.close()
    c = Http(s.ports["control"])
    c.send(request("POST", "/x", [("Content-Length", "1024")], b"a" * 1024))
    assert c.read_response().status == 404
    c.close()
    assert_alive(s)


def test_default_body_limit_is_6mib(server):
    c = Http(server.ports["control"])
    c.send(request("POST", "/x", [("Content-Length", str(6 * 1024 * 1024 + 1))]))
    assert_error_json(c.read_response(), 413)
    c.close()
    assert_alive(server)


@pytest.mark.parametrize("port_name,flags,chunks", [
    ("metrics", (), [b"5\r\nhello\r\n"]),
    ("control", ("--max-body-bytes", "1024"), [b"200\r\n" + b"a" * 512 + b"\r\n"] * 3),
])
def test_body_over_limit_mid_chunked_is_413(make_server, port_name, flags, chunks):
    s = make_server(*flags)
    c = Http(s.ports[port_name])
    method = "GET" if port_name == "metrics" else "POST"
    path = "/metrics" if port_name == "metrics" else "/x"
    c.send(request(method, path, [("Transfer-Encoding", "chunked")]))
    for chunk in chunks:
        try:
            c.send(chunk)
        except (BrokenPipeError, ConnectionResetError):
            break
    r = c.read_response()
    assert_error_json(r, 413)
    assert (r.header("Connection") or "").lower() == "close", r
    c.expect_eof()
    c.close()
    assert_alive(s)


# ---- Expect ------------------------------------------------------------------------


def test_expect_continue_on_route_sends_100(server):
    c = Http(server.ports["metrics"])
    c.send(request("GET", "/metrics", [("Content-Length", "1"), ("Expect", "100-continue")]))
    r = c.read_response()
    assert r.status == 100, r
    c.send(b"x")
    r = c.read_response()
    assert r.status == 200, r
    c.close()


def test_expect_continue_chunked_on_route_sends_100(server):
    c = Http(server.ports["metrics"])
    c.send(request("GET", "/metrics", [("Transfer-Encoding", "chunked"), ("Expect", "100-continue")]))
    assert c.read_response().status == 100
    c.send(b"1\r\nx\r\n0\r\n\r\n")
    assert c.read_response().status == 200
    c.close()


def test_expect_continue_over_limit_gets_413_without_100(server):
    c = Http(server.ports["metrics"])
    c.send(request("GET", "/metrics", [("Content-Length", "100"), ("Expect", "100-continue")]))
    r = c.read_response()
    assert_error_json(r, 413)
    c.close()
    assert_alive(server)


def test_expect_continue_unknown_path_gets_404_without_100(server):
    # No 100 for a path that does not exist: the final status comes at once,
    # without waiting for a body the client is holding back.
    c = Http(server.ports["control"])
    c.send(request("POST", "/functions", [("Content-Length", "5"), ("Expect", "100-continue")]))
    r = c.read_response()
    assert_error_json(r, 404)
    c.close()
    assert_alive(server)


def test_expect_continue_wrong_method_gets_405_without_100(server):
    c = Http(server.ports["metrics"])
    c.send(request("POST", "/metrics", [("Content-Length", "5"), ("Expect", "100-continue")]))
    r = c.read_response()
    assert_error_json(r, 405)
    c.close()
    assert_alive(server)


def test_expect_continue_without_body_gets_no_100(server):
    c = Http(server.ports["metrics"])
    c.send(request("GET", "/metrics", [("Expect", "100-continue")]))
    r = c.read_response()
    assert r.status == 200, r
    c.close()


@pytest.mark.parametrize("value", ["200-ok", "100-continue, foo", "x"])
def test_other_expect_is_417(server, value):
    c = Http(server.ports["metrics"])
    c.send(request("GET", "/metrics", [("Expect", value)]))
    r = c.read_response()
    assert_error_json(r, 417)
    c.close()
    assert_alive(server)


# ---- limits ------------------------------------------------------------------------


def test_header_block_over_limit_is_431(server):
    c = Http(server.ports["metrics"])
    c.send(request("GET", "/metrics", [("X-Big", "a" * (17 * 1024))]))
    r = c.read_response()
    assert_error_json(r, 431)
    assert (r.header("Connection") or "").lower() == "close", r
    c.expect_eof()
    c.close()
    assert_alive(server)


def test_header_block_just_under_limit_is_served(server):
    c = Http(server.ports["metrics"])
    c.send(request("GET", "/metrics", [("X-Big", "a" * (15 * 1024))]))
    assert c.read_response().status == 200
    c.close()


def test_long_request_target_counts_toward_header_limit(server):
    c = Http(server.ports["control"])
    c.send(request("GET", "/" + "a" * (17 * 1024)))
    assert_error_json(c.read_response(), 431)
    c.close()
    assert_alive(server)


def test_more_than_100_headers_is_431(server):
    c = Http(server.ports["metrics"])
    c.send(request("GET", "/metrics", [(f"X-H{i}", "v") for i in range(101)]))
    r = c.read_response()
    assert_error_json(r, 431)
    c.expect_eof()
    c.close()
    assert_alive(server)


def test_100_headers_are_served(server):
    c = Http(server.ports["metrics"])
    # request() adds Host: 99 more make 100.
    c.send(request("GET", "/metrics", [(f"X-H{i}", "v") for i in range(99)]))
    assert c.read_response().status == 200
    c.close()


# ---- malformed requests --------------------------------------------------------------

MALFORMED = {
    "garbage": b"HELLO\r\n\r\n",
    "no_version": b"GET /metrics\r\n\r\n",
    "bad_version": b"GET /metrics HTTP/9.9\r\nHost: x\r\n\r\n",
    "header_without_colon": b"GET /metrics HTTP/1.1\r\nHost x\r\n\r\n",
    "space_before_colon": b"GET /metrics HTTP/1.1\r\nHost : x\r\n\r\n",
    "bad_content_length": b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    "two_content_lengths": b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    "bad_chunk_size": b"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    "chunk_missing_crlf": b"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n0\r\n\r\n",
    "nul_in_target": b"GET /me\x00trics HTTP/1.1\r\nHost: x\r\n\r\n",
    "bare_lf_in_header": b"GET /metrics HTTP/1.1\r\nHost: x\nX: y\r\n\r\n",
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_is_400_and_close(server, name):
    port = server.ports["control" if MALFORMED[name].startswith(b"POST") else "metrics"]
    c = Http(port)
    c.send(MALFORMED[name])
    r = c.read_response()
    assert_error_json(r, 400)
    assert (r.header("Connection") or "").lower() == "close", r
    c.expect_eof()
    c.close()
    assert_alive(server)


def test_http2_version_in_http1_syntax_is_505(server):
    c = Http(server.ports["metrics"])
    c.send(b"GET /metrics HTTP/2.0\r\nHost: x\r\n\r\n")
    r = c.read_response()
    assert_error_json(r, 505)
    c.expect_eof()
    c.close()
    assert_alive(server)


def test_malformed_after_good_request_in_same_write(server):
    c = Http(server.ports["metrics"])
    c.send(request("GET", "/metrics") + b"BROKEN\r\n\r\n")
    assert c.read_response().status == 200
    assert_error_json(c.read_response(), 400)
    c.expect_eof()
    c.close()
    assert_alive(server)


@pytest.mark.parametrize("order", ["cl_first", "te_first"])
def test_content_length_with_transfer_encoding_is_400(server, order):
    hdrs = [("Content-Length", "5"), ("Transfer-Encoding", "chunked")]
    if order == "te_first":
        hdrs.reverse()
    c = Http(server.ports["control"])
    c.send(request("POST", "/x", hdrs, b"0\r\n\r\n"))
    r = c.read_response()
    assert_error_json(r, 400)
    c.expect_eof()
    c.close()
    assert_alive(server)


# ---- timeouts ----------------------------------------------------------------------


def test_slow_header_block_is_408(make_server):
    s = make_server("--header-timeout-ms", "300", "--idle-timeout-ms", "60000")
    c = Http(s.ports["metrics"])
    c.send(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
    t0 = time.monotonic()
    r = c.read_response()
    elapsed = time.monotonic() - t0
    assert_error_json(r, 408)
    assert (r.header("Connection") or "").lower() == "close", r
    assert elapsed < 3, elapsed
    c.expect_eof()
    c.close()
    assert_alive(s)


def test_trickled_header_block_is_408(make_server):
    # A slowloris client that sends a byte every 100 ms never completes the
    # header block; the header timeout runs from the first byte, not per read.
    s = make_server("--header-timeout-ms", "500", "--idle-timeout-ms", "60000")
    c = Http(s.ports["metrics"])
    c.send(b"GET /metrics HTTP/1.1\r\n")
    t0 = time.monotonic()
    got = b""
    c.sock.settimeout(0.1)
    while time.monotonic() - t0 < 5:
        try:
            chunk = c.sock.recv(65536)
        except socket.timeout:
            try:
                c.send(b"X")  # part of an endless header name
            except (BrokenPipeError, ConnectionResetError):
                break
            continue
        if not chunk:
            break
        got += chunk
        if b"\r\n\r\n" in got:
            break
    c.sock.settimeout(READ_TIMEOUT)
    assert got.startswith(b"HTTP/1.1 408 "), got
    assert time.monotonic() - t0 < 3
    c.close()
    assert_alive(s)


def test_idle_keep_alive_is_closed_silently(make_server):
    s = make_server("--idle-timeout-ms", "300")
    c = Http(s.ports["metrics"])
    c.send(request("GET", "/metrics"))
    assert c.read_response().status == 200
    t0 = time.monotonic()
    c.expect_eof()
    assert time.monotonic() - t0 < 3
    c.close()
    assert_alive(s)


def test_idle_new_connection_is_closed_silently(make_server):
    s = make_server("--idle-timeout-ms", "300")
    c = Http(s.ports["control"])
    c.expect_eof()
    c.close()


def test_idle_timeout_is_not_hit_early(make_server):
    s = make_server("--idle-timeout-ms", "1500")
    c = Http(s.ports["metrics"])
    c.expect_silence(0.5)
    c.send(request("GET", "/metrics"))
    assert c.read_response().status == 200
    c.close()


def test_stalled_body_is_408(make_server):
    s = make_server("--idle-timeout-ms", "300", "--header-timeout-ms", "60000")
    c = Http(s.ports["control"])
    c.send(request("POST", "/x", [("Content-Length", "10")], b"abc"))
    t0 = time.monotonic()
    r = c.read_response()
    assert_error_json(r, 408)
    assert time.monotonic() - t0 < 3
    assert (r.header("Connection") or "").lower() == "close", r
    c.expect_eof()
    c.close()
    assert_alive(s)


def test_stalled_chunked_body_is_408(make_server):
    s = make_server("--idle-timeout-ms", "300", "--header-timeout-ms", "60000")
    c = Http(s.ports["control"])
    c.send(request("POST", "/x", [("Transfer-Encoding", "chunked")], b"4\r\nab"))
    assert_error_json(c.read_response(), 408)
    c.expect_eof()
    c.close()
    assert_alive(s)


def test_responses_counted_after_errors(server):
    # The request counter sees 4xx answers from the metrics listener itself.
    c = Http(server.ports["metrics"])
    c.send(request("GET", "/nope"))
    assert c.read_response().status == 404
    c.send(request("GET", "/metrics"))
    body = c.read_response().body.decode()
    line = [ln for ln in body.splitlines()
            if ln.startswith('realm_http_requests_total{listener="metrics",class="4xx"}')]
    assert line and float(line[0].split()[-1]) >= 1, line
    c.close()
