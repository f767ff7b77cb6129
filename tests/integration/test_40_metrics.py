"""GET /metrics on the metrics listener: Prometheus text format, the families
Realm promises, and counters that move with traffic."""
import json
import math
import re
import socket
import subprocess
import time

from wsclient import Ws

PROMTOOL = "/usr/bin/promtool"

FAMILIES = {
    "process_resident_memory_bytes": "gauge",
    "process_cpu_seconds_total": "counter",
    "process_open_fds": "gauge",
    "process_max_fds": "gauge",
    "process_start_time_seconds": "gauge",
    "realm_connections_open": "gauge",
    "realm_connections_accepted_total": "counter",
    "realm_connections_rejected_total": "counter",
    "realm_http_requests_total": "counter",
    "realm_websocket_messages_total": "counter",
    "realm_websocket_connections": "gauge",
    "realm_calls_total": "counter",
    "realm_call_duration_seconds": "histogram",
    "realm_calls_in_flight": "gauge",
    "realm_build_info": "gauge",
}

LISTENERS = ("client", "control", "runtime", "metrics")
SAMPLE_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$')
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


# ---- helpers -------------------------------------------------------------------


def http_get(port, path="/metrics", method="GET"):
    """One request on a fresh connection; returns (status, headers dict, body bytes)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        s.sendall(f"{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    return status, headers, body


class Metrics:
    """A parsed scrape: samples[(name, frozenset(labels))] = value, plus HELP/TYPE."""

    def __init__(self, text):
        self.text = text
        self.help = {}
        self.type = {}
        self.samples = {}
        for line in text.splitlines():
            if line.startswith("# HELP "):
                name, _, doc = line[7:].partition(" ")
                self.help[name] = doc
            elif line.startswith("# TYPE "):
                name, _, typ = line[7:].partition(" ")
                self.type[name] = typ
            elif line and not line.startswith("#"):
                m = SAMPLE_RE.match(line)
                assert m, f"unparseable sample line {line!r}"
                labels = frozenset(LABEL_RE.findall(m.group(2) or ""))
                self.samples[(m.group(1), labels)] = float(m.group(3))

    def get(self, name, **labels):
        key = (name, frozenset(labels.items()))
        assert key in self.samples, f"no sample {name}{labels}; have " + ", ".join(
            f"{n}{dict(l)}" for n, l in self.samples if n == name)
        return self.samples[key]

    def all(self, name):
        return {l: v for (n, l), v in self.samples.items() if n == name}


def scrape(server):
    status, headers, body = http_get(server.ports["metrics"])
    assert status == 200, (status, body[:200])
    assert headers["content-type"].startswith("text/plain"), headers
    return Metrics(body.decode("utf-8"))


# ---- format ---------------------------------------------------------------------


def test_promtool_accepts_the_text(server):
    # Some traffic first so that labelled children and the histogram have data.
    ws = Ws(server.ports["client"])
    ws.call({"id": "1", "function": "health"})
    assert ws.recv()["status"] == "complete"
    ws.close_handshake()
    http_get(server.ports["control"], "/nope")
    text = scrape(server).text
    p = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True,
                       text=True, timeout=30)
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout == "" and p.stderr == "", p.stdout + p.stderr


def test_every_family_has_help_and_type(server):
    m = scrape(server)
    for name, typ in FAMILIES.items():
        assert name in m.help and m.help[name].strip(), f"{name}: no HELP"
        assert m.type.get(name) == typ, f"{name}: TYPE {m.type.get(name)!r}, want {typ}"
    # And every family in the text declares both.
    for name in m.type:
        assert name in m.help, f"{name}: TYPE without HELP"
    for (name, _labels) in m.samples:
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        assert name in m.type or base in m.type, f"sample {name} has no TYPE"


def test_text_ends_with_newline_and_has_no_duplicates(server):
    status, _, body = http_get(server.ports["metrics"])
    text = body.decode()
    assert text.endswith("\n")
    lines = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    keys = [ln.rsplit(" ", 1)[0] for ln in lines]
    dups = {k for k in keys if keys.count(k) > 1}
    assert not dups, dups


def test_process_metrics_are_plausible(server):
    m = scrape(server)
    assert m.get("process_resident_memory_bytes") > 1024 * 1024
    assert m.get("process_cpu_seconds_total") >= 0
    open_fds = m.get("process_open_fds")
    assert open_fds >= 5  # stdio + 4 listeners at least
    assert m.get("process_max_fds") >= open_fds
    start = m.get("process_start_time_seconds")
    assert time.time() - 120 < start <= time.time() + 1, start


def test_build_info(server):
    m = scrape(server)
    assert m.get("realm_build_info", version="0.1.0") == 1


def test_listener_children_exist(server):
    m = scrape(server)
    for listener in LISTENERS:
        for fam in ("realm_connections_open", "realm_connections_accepted_total",
                    "realm_connections_rejected_total"):
            m.get(fam, listener=listener)
        for cls in ("1xx", "2xx", "3xx", "4xx", "5xx"):
            m.get("realm_http_requests_total", listener=listener, **{"class": cls})


def test_head_metrics_has_no_body(server):
    status, headers, body = http_get(server.ports["metrics"], "/metrics", method="HEAD")
    assert status == 200, (status, headers)
    assert int(headers["content-length"]) > 0, headers
    assert body == b""


# ---- counters move --------------------------------------------------------------


def test_health_call_counts(server):
    before = scrape(server)
    assert before.get("realm_calls_total", function="health", outcome="complete") == 0
    ws = Ws(server.ports["client"])
    ws.call({"id": "1", "function": "health"})
    reply = ws.recv()
    assert reply["status"] == "complete", reply
    m = scrape(server)
    assert m.get("realm_calls_total", function="health", outcome="complete") == 1
    assert m.get("realm_calls_total", function="health", outcome="error") == 0
    assert m.get("realm_call_duration_seconds_count", function="health") == 1
    assert m.get("realm_call_duration_seconds_sum", function="health") >= 0
    assert m.get("realm_call_duration_seconds_bucket", function="health", le="+Inf") == 1
    assert m.get("realm_websocket_messages_total", direction="in", type="text") == 1
    assert m.get("realm_websocket_messages_total", direction="out", type="text") == 2  # welcome + reply
    assert m.get("realm_websocket_connections") == 1
    assert m.get("realm_connections_open", listener="client") == 1
    assert m.get("realm_http_requests_total", listener="client", **{"class": "1xx"}) == 1
    ws.close_handshake()


def test_histogram_buckets_are_cumulative(server):
    ws = Ws(server.ports["client"])
    for i in range(3):
        ws.call({"id": str(i), "function": "health"})
        assert ws.recv()["status"] == "complete"
    ws.close_handshake()
    m = scrape(server)
    buckets = []
    for labels, v in m.all("realm_call_duration_seconds_bucket").items():
        d = dict(labels)
        if d.get("function") == "health":
            buckets.append((math.inf if d["le"] == "+Inf" else float(d["le"]), v))
    buckets.sort()
    assert len(buckets) >= 2 and buckets[-1][0] == math.inf, buckets
    values = [v for _, v in buckets]
    assert values == sorted(values), buckets
    assert values[-1] == 3 == m.get("realm_call_duration_seconds_count", function="health")


def test_error_outcome_counts(server):
    ws = Ws(server.ports["client"])
    ws.call({"id": "1", "function": "echo", "params": {"repeat": -1}})
    reply = ws.recv()
    assert reply["status"] == "error", reply
    ws.close_handshake()
    m = scrape(server)
    assert m.get("realm_calls_total", function="echo", outcome="error") == 1
    assert m.get("realm_calls_total", function="echo", outcome="complete") == 0


def test_calls_in_flight_gauge(server):
    ws = Ws(server.ports["client"])
    ws.call({"id": "slow", "function": "echo", "params": {"message": "x", "delay_ms": 3000}})
    # A call answered after it proves the slow one has been dispatched.
    ws.call({"id": "fast", "function": "health"})
    assert ws.recv()["id"] == "fast"
    assert scrape(server).get("realm_calls_in_flight") == 1
    ws.call({"id": "c", "function": "cancel", "params": {"id": "slow"}})
    got = {r["id"]: r["status"] for r in (ws.recv(), ws.recv())}
    assert got == {"slow": "cancelled", "c": "complete"}, got
    m = scrape(server)
    assert m.get("realm_calls_in_flight") == 0
    assert m.get("realm_calls_total", function="echo", outcome="cancelled") == 1
    ws.close_handshake()


def test_http_requests_by_class_increase(server):
    before = scrape(server)
    for _ in range(3):
        status, _, _ = http_get(server.ports["control"], "/nope")
        assert status == 404
    status, _, _ = http_get(server.ports["runtime"], "/x")
    assert status == 404
    after = scrape(server)

    def req(m, listener, cls):
        return m.get("realm_http_requests_total", listener=listener, **{"class": cls})

    assert req(after, "control", "4xx") - req(before, "control", "4xx") == 3
    assert req(after, "runtime", "4xx") - req(before, "runtime", "4xx") == 1
    # The first scrape's own 200 was counted once it had been sent.
    assert req(after, "metrics", "2xx") - req(before, "metrics", "2xx") == 1
    assert req(after, "control", "2xx") == req(before, "control", "2xx") == 0


def test_connections_accepted_increase(server):
    before = scrape(server)
    socks = [socket.create_connection(("127.0.0.1", server.ports["control"]), timeout=10)
             for _ in range(4)]
    # A request on each proves every connection has been accepted.
    for s in socks:
        s.sendall(b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n")
        assert s.recv(65536).startswith(b"HTTP/1.1 404")
    during = scrape(server)
    for s in socks:
        s.close()
    acc = lambda m, l: m.get("realm_connections_accepted_total", listener=l)
    assert acc(during, "control") - acc(before, "control") == 4
    assert during.get("realm_connections_open", listener="control") == 4
    # The metrics listener counted both scrapes.
    assert acc(during, "metrics") - acc(before, "metrics") == 1
    assert during.get("realm_connections_rejected_total", listener="control") == 0


def test_websocket_connections_gauge_falls_after_close(server):
    ws = Ws(server.ports["client"])
    assert scrape(server).get("realm_websocket_connections") == 1
    ws.close_handshake()
    # close() returns after the server's close frame; the TCP close follows.
    # A second client's handshake is processed after the first one's teardown
    # only if the server has read the EOF; instead, read until it shows 0.
    deadline = time.monotonic() + 5
    while True:
        v = scrape(server).get("realm_websocket_connections")
        if v == 0 or time.monotonic() > deadline:
            break
    assert v == 0


# ---- liveness ---------------------------------------------------------------------


def test_health_route_on_metrics_listener(server):
    status, headers, body = http_get(server.ports["metrics"], "/health")
    assert status == 200, (status, body)
    assert headers["content-type"] == "application/json", headers
    assert json.loads(body) == {"status": "ok", "version": "0.1.0"}
