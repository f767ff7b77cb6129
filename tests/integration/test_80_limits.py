"""Limits and attacks: a peer that never reads its replies.

The server must not queue without bound for a client that does not read:
past --max-send-queue-bytes that client is dropped, its calls are
cancelled, and everyone else is unaffected.
"""
import json
import resource
import socket

from wsraw import RawWS

QUEUE_LIMIT = 256 * 1024


def health(server):
    with RawWS(server.ports["client"]) as ws:
        return ws.call("health")


def test_client_that_never_reads_is_dropped(make_server):
    server = make_server("--max-send-queue-bytes", str(QUEUE_LIMIT))
    ws = RawWS(server.ports["client"])
    # A small receive buffer so the kernel cannot absorb the replies for us.
    ws.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
    message = "x" * 1000
    repeat = 10000
    total = 0
    for i in range(3):
        ws.send_json({"id": f"big{i}", "function": "echo",
                      "params": {"message": message, "repeat": repeat}})
        total += repeat * (len(message) + 60)
    # Now read: if the server kept everything, ~30 MB of replies would arrive.
    # It must instead drop us once more than the limit is queued.
    received = 0
    ws.sock.settimeout(10)
    try:
        while True:
            data = ws.sock.recv(1 << 16)
            if not data:
                break
            received += len(data)
            assert received < total, "server queued every reply for a client that did not read"
    except ConnectionResetError:
        pass
    assert received < total / 2, (received, total)
    # The server lives on and serves others; the dropped client's calls are gone.
    reply = health(server)
    assert reply["status"] == "complete", reply
    assert reply["data"]["in_flight"] == 1, reply


def test_slow_reader_gets_everything(make_server):
    """Backpressure is not loss: a client that reads late still gets every reply
    as long as what is queued for it stays under the limit."""
    server = make_server("--max-send-queue-bytes", str(8 * 1024 * 1024))
    ws = RawWS(server.ports["client"])
    ws.send_json({"id": "a", "function": "echo", "params": {"message": "y" * 100, "repeat": 2000}})
    got = 0
    while True:
        msg = ws.recv_json()
        assert msg["id"] == "a", msg
        if msg["status"] == "complete":
            break
        assert msg["status"] == "streaming", msg
        assert msg["data"]["index"] == got, msg
        got += 1
    assert got == 2000
    ws.close()


# ---- open files ------------------------------------------------------------

# What serve plans beside --max-connections (src/api/server.c, plan_fds): the
# client listener's idle HTTP connections, the control, runtime and metrics
# listeners' limits and the reserve, at their defaults.
FD_HEADROOM = 256 + 1024 + 1024 + 128 + 2048


def _nofile_of(pid):
    for line in open(f"/proc/{pid}/limits"):
        if line.startswith("Max open files"):
            f = line.split()
            return int(f[3]), int(f[4])
    raise AssertionError("no open files line")


def _with_nofile(soft, hard):
    return lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_open_files_soft_limit_is_raised_for_max_connections(make_server):
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    hard = 6000 if hard == resource.RLIM_INFINITY else min(hard, 6000)
    want = 100 + FD_HEADROOM
    s = make_server("--max-connections", "100", preexec_fn=_with_nofile(256, hard))
    assert _nofile_of(s.proc.pid) == (min(want, hard), hard)
    s.stop()  # stderr whole
    assert ("open files are limited" in s.stderr) == (hard < want), s.stderr


def test_open_files_hard_limit_below_need_is_reported(make_server):
    s = make_server("--max-connections", "100", preexec_fn=_with_nofile(256, 1000))
    assert _nofile_of(s.proc.pid) == (1000, 1000)  # raised as far as allowed
    conn = s.connect()  # and it serves
    conn.close()
    s.stop()
    assert "open files are limited to 1000" in s.stderr and "--max-connections 100" in s.stderr, s.stderr
