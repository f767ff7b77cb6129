"""Graceful shutdown on SIGTERM and SIGINT.

Synchronisation without sleeps: an idle HTTP keep-alive connection opened
before the signal is closed by the server when shutdown begins, so a
blocking read that returns EOF on it says "the server is draining now".
"""
import signal
import socket
import time

import pytest
from wsclient import Ws
from wsproto.events import CloseConnection

SIGNALS = [pytest.param(signal.SIGTERM, id="SIGTERM"), pytest.param(signal.SIGINT, id="SIGINT")]
TIMEOUT = 10


def idle_http(server, name="metrics", partial=b""):
    """A keep-alive HTTP connection that has completed one request.

    partial (the start of a second request) goes out in the same write as
    the first request, so once the first response is back the server has
    also read the partial one: the connection is then mid-request.
    """
    s = socket.create_connection(("127.0.0.1", server.ports[name]), timeout=TIMEOUT)
    s.sendall((b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n" if name == "metrics"
               else b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n") + partial)
    data = b""
    while True:
        data += s.recv(65536)
        head, sep, body = data.partition(b"\r\n\r\n")
        if sep:
            length = int([ln.split(b":")[1] for ln in head.split(b"\r\n")
                          if ln.lower().startswith(b"content-length:")][0])
            if len(body) >= length:
                assert body[length:] == b""
                break
    assert b"Connection: close" not in head
    return s


def wait_eof(sock):
    """Blocks until the server closes sock; returns the bytes it sent first."""
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    return data


def sync_shutdown_started(server, sig, probe):
    """Sends sig and returns once the server has begun draining."""
    server.signal(sig)
    assert wait_eof(probe) == b"", "idle keep-alive connection got bytes at shutdown"
    probe.close()


def call_health_roundtrip(ws, call_id):
    """A quick call; its answer proves earlier frames were processed."""
    ws.call({"id": call_id, "function": "health"})
    r = ws.recv()
    assert isinstance(r, dict) and r["id"] == call_id and r["status"] == "complete", r


def assert_clean_exit(server, within):
    t0 = time.monotonic()
    rc = server.wait(timeout=30)
    assert rc == 0, f"exit {rc}\n{server.stderr}"
    assert time.monotonic() - t0 < within
    assert "AddressSanitizer" not in server.stderr and "runtime error:" not in server.stderr


# ---- tests -----------------------------------------------------------------------------


@pytest.mark.parametrize("sig", SIGNALS)
def test_no_clients_exits_0_promptly(server, sig):
    t0 = time.monotonic()
    server.signal(sig)
    rc = server.wait(timeout=30)
    assert rc == 0, server.stderr
    assert time.monotonic() - t0 < 3, "shutdown with nothing to wait for took too long"
    assert "shutdown complete" in server.stderr


@pytest.mark.parametrize("sig", SIGNALS)
def test_idle_websocket_gets_1001(server, sig):
    ws = Ws(server.ports["client"])
    call_health_roundtrip(ws, "h")
    server.signal(sig)
    msgs, code = ws.recv_until_close()
    assert msgs == [] and code == 1001, (msgs, code)
    ws.expect_tcp_eof()
    ws.close()
    assert_clean_exit(server, within=5)


@pytest.mark.parametrize("sig", SIGNALS)
def test_in_flight_call_finishes_then_1001(server, sig):
    ws = Ws(server.ports["client"])
    probe = idle_http(server)
    ws.call({"id": "slow", "function": "echo", "params": {"message": "x", "delay_ms": 800}})
    call_health_roundtrip(ws, "h")  # "slow" is in flight now
    t0 = time.monotonic()
    sync_shutdown_started(server, sig, probe)
    # A new call after the signal is refused.
    ws.call({"id": "late", "function": "health"})
    msgs, code = ws.recv_until_close()
    by_id = {m["id"]: m for m in msgs}
    assert set(by_id) == {"slow", "late"}, msgs
    assert by_id["late"]["status"] == "error", msgs
    assert by_id["late"]["error"]["code"] == "SHUTTING_DOWN", msgs
    assert by_id["slow"]["status"] == "complete", msgs
    assert by_id["slow"]["data"] == {"message": "x", "parts": 0}, msgs
    # The echo reply is the last message before the close frame.
    assert msgs[-1]["id"] == "slow", msgs
    assert code == 1001
    assert time.monotonic() - t0 < 5
    ws.expect_tcp_eof()
    ws.close()
    assert_clean_exit(server, within=5)


@pytest.mark.parametrize("sig", SIGNALS)
def test_call_past_grace_is_cancelled_then_1001(make_server, sig):
    s = make_server("--shutdown-grace-ms", "300")
    ws = Ws(s.ports["client"])
    ws.call({"id": "long", "function": "echo", "params": {"message": "x", "delay_ms": 20000}})
    call_health_roundtrip(ws, "h")
    t0 = time.monotonic()
    s.signal(sig)
    msgs, code = ws.recv_until_close()
    elapsed = time.monotonic() - t0
    assert msgs == [{"id": "long", "status": "cancelled"}], msgs
    assert code == 1001
    assert 0.25 <= elapsed < 5, elapsed
    ws.expect_tcp_eof()
    ws.close()
    assert_clean_exit(s, within=5)
    m = [ln for ln in s.stderr.splitlines() if "cancelling" in ln]
    assert m, s.stderr


@pytest.mark.parametrize("sig", SIGNALS)
def test_streaming_call_past_grace_is_cancelled(make_server, sig):
    s = make_server("--shutdown-grace-ms", "300")
    ws = Ws(s.ports["client"])
    ws.call({"id": "st", "function": "echo",
             "params": {"message": "x", "repeat": 100, "delay_ms": 100}})
    first = ws.recv()
    assert first["id"] == "st" and first["status"] == "streaming", first
    s.signal(sig)
    msgs, code = ws.recv_until_close()
    assert msgs and msgs[-1] == {"id": "st", "status": "cancelled"}, msgs
    assert all(m["status"] == "streaming" for m in msgs[:-1]), msgs
    assert code == 1001
    ws.close()
    assert_clean_exit(s, within=5)


@pytest.mark.parametrize("sig", SIGNALS)
def test_new_connections_refused_after_signal(server, sig):
    ws = Ws(server.ports["client"])
    probe = idle_http(server)
    ws.call({"id": "slow", "function": "echo", "params": {"message": "x", "delay_ms": 1500}})
    call_health_roundtrip(ws, "h")
    sync_shutdown_started(server, sig, probe)
    # The server is still running (a call is in flight) but accepts nothing.
    assert server.proc.poll() is None
    for name in ("client", "control", "runtime", "metrics"):
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", server.ports[name]), timeout=TIMEOUT).close()
    assert server.proc.poll() is None
    msgs, code = ws.recv_until_close()
    assert [m["id"] for m in msgs] == ["slow"] and code == 1001, (msgs, code)
    ws.close()
    assert_clean_exit(server, within=5)


@pytest.mark.parametrize("sig", SIGNALS)
@pytest.mark.parametrize("listener", ["control", "metrics", "client"])
def test_idle_http_keep_alive_is_closed(server, sig, listener):
    ws = Ws(server.ports["client"])  # keeps the server alive past the signal
    ws.call({"id": "slow", "function": "echo", "params": {"message": "x", "delay_ms": 2000}})
    call_health_roundtrip(ws, "h")
    conn = idle_http(server, listener)
    t0 = time.monotonic()
    server.signal(sig)
    assert wait_eof(conn) == b""
    conn.close()
    assert time.monotonic() - t0 < 1.8, "idle connection waited for the in-flight call"
    msgs, code = ws.recv_until_close()
    assert code == 1001
    ws.close()
    assert_clean_exit(server, within=5)


@pytest.mark.parametrize("sig", SIGNALS)
def test_request_in_progress_finishes_with_connection_close(server, sig):
    ws = Ws(server.ports["client"])
    ws.call({"id": "slow", "function": "echo", "params": {"message": "x", "delay_ms": 1500}})
    call_health_roundtrip(ws, "h")
    probe = idle_http(server)
    busy = idle_http(server, partial=b"GET /metrics HTTP/1.1\r\n")  # half a request
    sync_shutdown_started(server, sig, probe)
    busy.sendall(b"Host: t\r\n\r\n")
    data = wait_eof(busy)
    busy.close()
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), data[:200]
    assert b"\r\nConnection: close" in head, head
    assert b"realm_build_info" in body
    msgs, code = ws.recv_until_close()
    assert code == 1001
    ws.close()
    assert_clean_exit(server, within=5)


@pytest.mark.parametrize("sig", SIGNALS)
def test_websocket_upgrade_refused_while_draining(server, sig):
    """A client connection accepted before the signal but upgrading after it
    is refused (503 with Connection: close), not turned into a session."""
    ws = Ws(server.ports["client"])
    ws.call({"id": "slow", "function": "echo", "params": {"message": "x", "delay_ms": 1500}})
    call_health_roundtrip(ws, "h")
    probe = idle_http(server)
    # Accepted, one plain request answered (404), the upgrade request begun.
    early = idle_http(server, "client", partial=b"GET / HTTP/1.1\r\nHost: t\r\n")
    sync_shutdown_started(server, sig, probe)
    early.sendall(b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
                  b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                  b"Sec-WebSocket-Version: 13\r\n\r\n")
    data = wait_eof(early)
    early.close()
    assert data.startswith(b"HTTP/1.1 503 "), data[:200]
    assert b"Connection: close" in data
    msgs, code = ws.recv_until_close()
    assert code == 1001
    ws.close()
    assert_clean_exit(server, within=5)


@pytest.mark.parametrize("sig", SIGNALS)
def test_several_websockets_each_closed_when_their_calls_finish(server, sig):
    idle = Ws(server.ports["client"])
    busy = Ws(server.ports["client"])
    busy.call({"id": "slow", "function": "echo", "params": {"message": "y", "delay_ms": 2000}})
    call_health_roundtrip(busy, "h")
    call_health_roundtrip(idle, "h")
    t0 = time.monotonic()
    server.signal(sig)
    # The idle one is closed at once, without waiting for the other's call.
    msgs, code = idle.recv_until_close()
    assert msgs == [] and code == 1001, (msgs, code)
    assert time.monotonic() - t0 < 1.8
    msgs, code = busy.recv_until_close()
    assert [m["id"] for m in msgs] == ["slow"] and code == 1001, (msgs, code)
    idle.close()
    busy.close()
    assert_clean_exit(server, within=5)


def test_second_signal_skips_grace(make_server):
    s = make_server("--shutdown-grace-ms", "20000")
    ws = Ws(s.ports["client"])
    ws.call({"id": "long", "function": "echo", "params": {"message": "x", "delay_ms": 30000}})
    call_health_roundtrip(ws, "h")
    probe = idle_http(s)
    sync_shutdown_started(s, signal.SIGTERM, probe)
    t0 = time.monotonic()
    s.signal(signal.SIGINT)
    msgs, code = ws.recv_until_close()
    assert msgs == [{"id": "long", "status": "cancelled"}], msgs
    assert code == 1001
    assert time.monotonic() - t0 < 3
    ws.close()
    assert_clean_exit(s, within=5)


def test_websocket_that_never_answers_close_does_not_block_exit(make_server):
    # The client reads the 1001 close frame but never replies and never closes
    # its socket: the server still exits 0 (close handshake timeout).
    s = make_server("--shutdown-grace-ms", "200")
    ws = Ws(s.ports["client"])
    s.signal(signal.SIGTERM)
    ev = ws._next()
    assert isinstance(ev, CloseConnection) and ev.code == 1001, ev
    t0 = time.monotonic()
    rc = s.wait(timeout=30)
    assert rc == 0, s.stderr
    assert time.monotonic() - t0 < 10
    ws.close()
