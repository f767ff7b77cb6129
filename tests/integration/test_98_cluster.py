"""Several Realm nodes as one (issue 17, docs/cluster.md). Nodes started
with the same --nats and --db find each other through NATS alone: each
one's `health` names every node up and /metrics counts them; a node killed
with -9 is dropped once silent, one stopped cleanly at once. A function
created or updated through one node runs on the very next call through
another. Calls gather where their function is warm (or on its home by
rendezvous hash), through HTTP Invoke, response streams and the WebSocket;
a cancel reaches the running node; a running node killed ends its calls
with NODE_LOST, and calls go on through the others; nats-server killed,
each node serves its own callers; PostgreSQL restarted, calls run again.
generate runs on a node with its model. Reserved concurrency and the
tenant's limit hold across nodes (leases in PostgreSQL), and a node paused
past its lease completes nothing. Events sent to all nodes while one is
killed and restarted all run; a function's log read through any node holds
every node's lines. Bad flags are refused with a message."""
import contextlib
import json
import os
import re
import signal
import subprocess
import threading
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import Server, assert_no_sanitizer_report, finish, realm_bin
from fn_util import build_zip, deploy, fn_client, http_request, ok, poll_until, raw_invoke
from nats_util import NatsServer
from pg_util import _alive as alive
from wsclient import Ws


@pytest.fixture
def nats():
    with NatsServer.running() as n:
        yield n


def node(pg, nats, node_id, *extra, data_dir=None):
    return Server("--db", pg.url, "--nats", nats.url, "--node-id", node_id, *extra,
                  data_dir=data_dir)


@contextlib.contextmanager
def nodes_up(pg, nats, count, *extra):
    """n1..nCOUNT on pg and nats, once each sees them all; finished after."""
    ids = [f"n{i}" for i in range(1, count + 1)]
    nodes = []
    try:
        for i in ids:
            nodes.append(node(pg, nats, i, *extra))
        for n in nodes:
            poll_until(lambda n=n: nodes_seen(n) == ids, 15, what=f"{count} nodes seen")
        yield nodes
    finally:
        for n in nodes:
            finish(n)


def three_nodes(pg, nats, *extra):
    return nodes_up(pg, nats, 3, *extra)


def health(srv):
    c = Ws(srv.ports["client"])
    try:
        c.call({"id": "h", "function": "health", "params": {}})
        while True:
            m = c.recv()
            if isinstance(m, dict) and m.get("id") == "h":
                assert m["status"] == "complete", m
                return m["data"]
    finally:
        c.close()


def nodes_seen(srv):
    return sorted(health(srv)["cluster"]["nodes"])


def metric(srv, name, text=None):
    """A node's sample of name (its node="ID" label aside), or None."""
    if text is None:
        with urllib.request.urlopen(srv.url("metrics", "/metrics"), timeout=10) as r:
            text = r.read().decode()
    m = re.search(rf'^{name}(?:{{node="[^"]*"}})? (\S+)$', text, re.M)
    return float(m.group(1)) if m else None


def test_nodes_find_each_other_and_notice_who_leaves(pg_cluster, nats):
    n1 = node(pg_cluster, nats, "n1")
    n2 = node(pg_cluster, nats, "n2")
    n3 = node(pg_cluster, nats, "n3")
    try:
        for n in (n1, n2, n3):
            poll_until(lambda n=n: nodes_seen(n) == ["n1", "n2", "n3"], 15,
                       what="three nodes seen")
        h = health(n2)["cluster"]
        assert h["node"] == "n2" and h["bus_connected"] is True, h
        assert metric(n1, "realm_cluster_nodes") == 3
        assert metric(n1, "realm_cluster_bus_connected") == 1
        # Every sample of a node carries its id first.
        with urllib.request.urlopen(n2.url("metrics", "/metrics"), timeout=10) as r:
            text = r.read().decode()
        samples = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
        assert samples and all(ln.split(" ")[0].split("{")[1].startswith('node="n2"')
                               for ln in samples), [ln for ln in samples
                                                    if 'node="n2"' not in ln][:5]

        # kill -9: dropped once silent; the others go on.
        n3.kill()
        poll_until(lambda: nodes_seen(n1) == ["n1", "n2"], 15, what="n3 dropped by n1")
        poll_until(lambda: nodes_seen(n2) == ["n1", "n2"], 15, what="n3 dropped by n2")
        # Started again (its own data dir, the same database): back in.
        n3 = node(pg_cluster, nats, "n3")
        poll_until(lambda: nodes_seen(n1) == ["n1", "n2", "n3"], 15, what="n3 back")

        # A clean stop says goodbye: gone from the others at once, long
        # before a silent node would be.
        assert n2.stop() == 0
        poll_until(lambda: nodes_seen(n1) == ["n1", "n3"], 2, what="n2 gone at once")
        assert metric(n1, "realm_cluster_nodes") == 2
    finally:
        for n in (n1, n2, n3):
            finish(n)


def test_nodes_survive_a_nats_restart(pg_cluster, nats):
    n1 = node(pg_cluster, nats, "n1")
    n2 = node(pg_cluster, nats, "n2")
    try:
        poll_until(lambda: nodes_seen(n1) == ["n1", "n2"], 15, what="two nodes")
        nats.kill()
        poll_until(lambda: metric(n1, "realm_cluster_bus_connected") == 0, 15,
                   what="n1 sees the bus gone")
        # Calls on a node keep working without the bus.
        assert health(n1)["status"] == "ok"
        poll_until(lambda: nodes_seen(n1) == ["n1"], 15, what="n2 silent to n1")
        nats.start()
        poll_until(lambda: metric(n1, "realm_cluster_bus_connected") == 1, 15,
                   what="n1 reconnected")
        poll_until(lambda: nodes_seen(n1) == ["n1", "n2"], 15, what="n2 seen again")
        poll_until(lambda: nodes_seen(n2) == ["n1", "n2"], 15, what="n1 seen again")
    finally:
        for n in (n1, n2):
            finish(n)


def refused(*args):
    p = subprocess.run([realm_bin(), "serve", "--port", "0", "--control-port", "0",
                        "--runtime-port", "0", "--metrics-port", "0", *args],
                       capture_output=True, text=True, timeout=60)
    assert_no_sanitizer_report(p.stderr)
    assert p.returncode != 0, p.stderr
    return p.stderr


def test_bad_cluster_flags_are_refused(tmp_path, pg_cluster, nats):
    d = ["--data-dir", str(tmp_path / "d")]
    assert "the nodes of a cluster share one database" in refused(
        *d, "--db", "sqlite", "--nats", nats.url)
    assert "is not a list of nats://HOST:PORT URLs" in refused(
        *d, "--db", pg_cluster.url, "--nats", "http://127.0.0.1:1")
    assert "--node-id: 'bad id!' is not 1 to 32 of [A-Za-z0-9_-]" in refused(
        *d, "--db", pg_cluster.url, "--nats", nats.url, "--node-id", "bad id!")


def test_without_nats_there_is_no_cluster(make_server):
    srv = make_server()
    assert "cluster" not in health(srv)
    assert metric(srv, "realm_cluster_nodes") is None


def test_cluster_script_up_restart_down(tmp_path):
    """scripts/cluster.sh: `up DIR 3` starts PostgreSQL, three clustered
    nats-servers and three nodes, waits until each sees all, and writes
    cluster.json; `start-node` brings a stopped node back on its former
    ports; `down` stops everything."""
    import json
    import os
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    script = os.path.join(root, "scripts", "cluster.sh")
    env = {**os.environ, "REALM_BIN": realm_bin()}
    d = tmp_path / "c"

    def run(*args):
        p = subprocess.run([script, *args], capture_output=True, text=True, timeout=300, env=env)
        assert p.returncode == 0, p.stdout + p.stderr
        return p.stdout

    run("up", str(d), "3")
    try:
        doc = json.loads((d / "cluster.json").read_text())
        assert [n["id"] for n in doc["nodes"]] == ["n1", "n2", "n3"], doc
        assert len(doc["nats"]) == 3 and doc["db"].startswith("postgresql://"), doc
        for n in doc["nodes"]:
            assert re.fullmatch(r"ws://127\.0\.0\.1:\d+/", n["client"]), n
            assert re.fullmatch(r"http://127\.0\.0\.1:\d+", n["control"]), n
            with urllib.request.urlopen(n["metrics"] + "/metrics", timeout=10) as r:
                assert f'realm_cluster_nodes{{node="{n["id"]}"}} 3\n' in r.read().decode()
        n2 = doc["nodes"][1]
        os.kill(n2["pid"], 9)
        poll_until(lambda: not alive(n2["pid"]), 30, what="n2 dead")
        run("start-node", str(d), "n2")
        again = json.loads((d / "cluster.json").read_text())["nodes"][1]
        assert again["client"] == n2["client"] and again["pid"] != n2["pid"], (again, n2)
        with urllib.request.urlopen(again["metrics"] + "/metrics", timeout=10) as r:
            assert 'realm_cluster_nodes{node="n2"} 3\n' in r.read().decode()
    finally:
        run("down", str(d))
    assert not (d / "cluster.json").exists()
    assert not any(alive(n["pid"]) for n in doc["nodes"] + doc["nats"]), doc


VERSION_SRC = """exports.handler = async (event) => ({version: %d, got: event});
"""


def test_a_function_written_on_one_node_runs_on_the_others(pg_cluster, nats):
    with three_nodes(pg_cluster, nats) as (n1, n2, n3):
        l1, l3 = fn_client(n1), fn_client(n3)
        deploy(l1, "hop", {"index.js": VERSION_SRC % 1})
        l1.get_waiter("function_active_v2").wait(FunctionName="hop")
        assert ok(l3, "hop", {"via": "n3"}) == {"version": 1, "got": {"via": "n3"}}
        c = Ws(n2.ports["client"])
        try:
            c.call({"id": "1", "function": "invoke", "params": {"name": "hop",
                                                                 "payload": {"via": "n2"}}})
            m = c.recv()
            while m.get("id") != "1" or m.get("status") not in ("complete", "error"):
                m = c.recv()
            assert m["status"] == "complete", m
            assert m["data"]["payload"] == {"version": 1, "got": {"via": "n2"}}, m
        finally:
            c.close()
        # n3 has version 1 cached now; each update through n1 runs on the
        # very next invoke through n3.
        for v in range(2, 6):
            l1.update_function_code(FunctionName="hop",
                                    ZipFile=build_zip({"index.js": VERSION_SRC % v}))
            assert ok(l3, "hop")["version"] == v


LOG_SRC = """exports.handler = async (event) => { console.log("ran " + event.tag); return event.tag; };
"""


def test_logs_read_through_any_node_hold_every_nodes_lines(pg_cluster, nats):
    with three_nodes(pg_cluster, nats) as (n1, n2, n3):
        clients = {"n1": fn_client(n1), "n2": fn_client(n2), "n3": fn_client(n3)}
        deploy(clients["n1"], "logger", {"index.js": LOG_SRC})
        clients["n1"].get_waiter("function_active_v2").wait(FunctionName="logger")
        # A payload above what travels between nodes (768 KiB) runs where it
        # arrives: each node's log then holds its own line.
        for nid, lam in clients.items():
            assert ok(lam, "logger", {"tag": f"on-{nid}", "pad": "x" * 800_000}) == f"on-{nid}"
        path = "/realm/v1/functions/logger/logs"
        for srv in (n1, n2, n3):
            status, headers, body = http_request(srv.ports["control"], "GET", path)
            assert status == 200, (status, body)
            assert headers.get("x-realm-log-nodes") == "n1,n2,n3", headers
            text = body.decode()
            for nid in ("n1", "n2", "n3"):
                assert f"ran on-{nid}" in text, (srv.ports, text)
            # Node by node, in id order.
            assert text.index("ran on-n1") < text.index("ran on-n2") < text.index("ran on-n3")
        # A node gone: the others answer with what they have.
        n3.kill()
        poll_until(lambda: nodes_seen(n1) == ["n1", "n2"], 15, what="n3 dropped")
        status, headers, body = http_request(n1.ports["control"], "GET", path)
        assert status == 200 and headers.get("x-realm-log-nodes") == "n1,n2", headers
        assert "ran on-n3" not in body.decode() and "ran on-n2" in body.decode()
        # Unknown functions are still 404 (the registry says so first).
        status, _, _ = http_request(n2.ports["control"], "GET", "/realm/v1/functions/nope/logs")
        assert status == 404


EVENT_SRC = """exports.handler = async (event) => {
  console.log("began " + event.tag + " " + Date.now());
  await new Promise((r) => setTimeout(r, event.ms));
  console.log("ended " + event.tag + " " + Date.now());
};
"""


def test_events_queued_on_one_node_run_once_each_within_the_account_limit(pg_cluster, nats):
    """The tenant's account limit (--concurrency-limit 1) holds across the
    cluster: two Events sent to n1, the first holding its environment for
    3 s, both run, one after the other, wherever a dispatcher claims them
    (a node refused a lease asks the holder's idle environment to let go)."""
    with three_nodes(pg_cluster, nats, "--concurrency-limit", "1") as nodes:
        lam = fn_client(nodes[0])
        deploy(lam, "ev", {"index.js": EVENT_SRC}, Timeout=20)
        lam.get_waiter("function_active_v2").wait(FunctionName="ev")
        for tag, ms in (("slow", 3000), ("quick", 10)):
            r = lam.invoke(FunctionName="ev", InvocationType="Event",
                           Payload=json.dumps({"tag": tag, "ms": ms}).encode())
            assert r["StatusCode"] == 202, r

        def log():
            return http_request(nodes[0].ports["control"], "GET",
                                "/realm/v1/functions/ev/logs")[2]

        poll_until(lambda: (t := log().decode()) and "ended quick" in t and "ended slow" in t,
                   30, what="both events run")
        ran = [metric(n, "realm_invocations_total") for n in nodes]
        assert sum(ran) == 2, ran
        at = {(m[1], m[2]): int(m[3])
              for m in re.finditer(r"(began|ended) (slow|quick) (\d+)", log().decode())}
        assert len(at) == 4, at
        slow, quick = (at["began", "slow"], at["ended", "slow"]), (at["began", "quick"],
                                                                    at["ended", "quick"])
        assert most_at_once([slow, quick]) == 1, (slow, quick)


SLEEP_SRC = """exports.handler = async (event) => {
  const began = Date.now();
  console.log("began " + event.tag);
  await new Promise((r) => setTimeout(r, event.ms));
  return {began, ended: Date.now(), tag: event.tag};
};
"""


def most_at_once(intervals):
    """The largest number of (began, ended) intervals that overlap."""
    edges = sorted([(b, 1) for b, _ in intervals] + [(e, -1) for _, e in intervals])
    n = top = 0
    for _, d in edges:
        n += d
        top = max(top, n)
    return top


def test_reserved_concurrency_holds_across_nodes(pg_cluster, nats):
    """Reserved concurrency 2, nine callers at once spread over three nodes
    (three each): two run, never more at once, the other seven get 429
    ReservedFunctionConcurrentInvocationLimitExceeded. The leases are rows
    in PostgreSQL: every node counts the others' environments."""
    with three_nodes(pg_cluster, nats) as nodes:
        lam = fn_client(nodes[0])
        deploy(lam, "res", {"index.js": SLEEP_SRC}, Timeout=20)
        lam.get_waiter("function_active_v2").wait(FunctionName="res")
        lam.put_function_concurrency(FunctionName="res", ReservedConcurrentExecutions=2)
        start = threading.Barrier(9)

        def call(i):
            start.wait()
            return raw_invoke(nodes[i % 3], "res",
                              json.dumps({"ms": 2000, "tag": f"c{i}"}).encode())

        with ThreadPoolExecutor(9) as ex:
            results = list(ex.map(call, range(9)))
        ran = [json.loads(b) for st, _, b in results if st == 200]
        refused = [(st, h, b) for st, h, b in results if st != 200]
        assert len(ran) == 2, results
        assert most_at_once([(r["began"], r["ended"]) for r in ran]) <= 2
        for st, h, b in refused:
            assert st == 429, (st, b)
            assert json.loads(b)["Reason"] == "ReservedFunctionConcurrentInvocationLimitExceeded", b


def test_a_node_paused_past_its_lease_completes_nothing(pg_cluster, nats):
    """n1 runs the only environment reserved concurrency allows and is
    paused (SIGSTOP) past its lease: n2 runs the function meanwhile (the
    lease ended in the database), and once n1 goes on, its invocation ends
    with a platform error instead of a result (the fence)."""
    with nodes_up(pg_cluster, nats, 2, "--node-lease-ms", "1500") as (n1, n2):
        lam = fn_client(n1)
        deploy(lam, "fenced", {"index.js": SLEEP_SRC}, Timeout=30)
        lam.get_waiter("function_active_v2").wait(FunctionName="fenced")
        lam.put_function_concurrency(FunctionName="fenced", ReservedConcurrentExecutions=1)
        out = {}

        def on_n1():  # a payload too large to travel runs where it arrives: on n1
            out["n1"] = raw_invoke(n1, "fenced", json.dumps({"ms": 4000, "tag": "n1",
                                                             "pad": "x" * 800_000}).encode())

        t = threading.Thread(target=on_n1)
        t.start()
        poll_until(lambda: "began n1" in http_request(n2.ports["control"], "GET",
                                                      "/realm/v1/functions/fenced/logs")[2]
                   .decode(), 15, what="n1's invocation running")
        # While n1 runs it, n2 is refused: the one lease is n1's.
        st, _, b = raw_invoke(n2, "fenced", json.dumps({"ms": 10, "tag": "early"}).encode())
        assert st == 429, (st, b)
        os.kill(n1.proc.pid, signal.SIGSTOP)
        try:
            # Past n1's lease, n2 takes the place.
            st, b = 429, b""
            def n2_runs():
                nonlocal st, b
                st, _, b = raw_invoke(n2, "fenced", json.dumps({"ms": 10, "tag": "n2"}).encode())
                return st == 200
            poll_until(n2_runs, 15, interval=0.2, what="n2 runs once n1's lease ended")
            assert json.loads(b)["tag"] == "n2"
        finally:
            os.kill(n1.proc.pid, signal.SIGCONT)
        t.join(30)
        st, h, b = out["n1"]
        assert st != 200, (st, b)
        assert b"lease" in b, b


RAN_SRC = """exports.handler = async (event) => {
  await new Promise((r) => setTimeout(r, 50));
  console.log("ran " + event.tag);
};
"""


def test_events_run_while_a_node_is_killed_and_restarted(pg_cluster, nats):
    """Events sent to all three nodes while n2 is killed with -9 and started
    again (on its data dir): every one a node accepted (202) runs, read
    through n1's logs route. Events n2 had taken when it died come back when
    their lease ends (--event-lease-ms 3000) and run elsewhere."""
    with three_nodes(pg_cluster, nats, "--event-lease-ms", "3000") as nodes:
        n1, n2, n3 = nodes
        lam = fn_client(n1)
        deploy(lam, "evk", {"index.js": RAN_SRC}, Timeout=10)
        lam.get_waiter("function_active_v2").wait(FunctionName="evk")
        accepted, lock = [], threading.Lock()
        alive_nodes = {"n1": n1, "n2": n2, "n3": n3}

        def send(i):
            nid = ("n1", "n2", "n3")[i % 3]
            srv = alive_nodes[nid]
            try:
                st, _, _ = raw_invoke(srv, "evk", json.dumps({"tag": f"e{i}"}).encode(),
                                      headers={"X-Amz-Invocation-Type": "Event"}, timeout=10)
            except OSError:
                return  # n2 down: nothing accepted
            if st == 202:
                with lock:
                    accepted.append(f"e{i}")

        for i in range(0, 30):
            send(i)
        n2.kill()
        for i in range(30, 60):
            send(i)
        restarted = node(pg_cluster, nats, "n2", "--event-lease-ms", "3000",
                         data_dir=n2.data_dir)
        try:
            alive_nodes["n2"] = restarted
            poll_until(lambda: nodes_seen(n1) == ["n1", "n2", "n3"], 15, what="n2 back")
            for i in range(60, 90):
                send(i)
            assert len(accepted) >= 60, accepted  # n1 and n3 took all theirs

            def ran():
                text = http_request(n1.ports["control"], "GET",
                                    "/realm/v1/functions/evk/logs?tail=1000000")[2].decode()
                return set(re.findall(r"ran (e\d+)", text))

            poll_until(lambda: set(accepted) <= ran(), 60, interval=0.5,
                       what="every accepted event run")
        finally:
            finish(restarted)


STREAM_SRC = """
exports.handler = awslambda.streamifyResponse(async (event, stream) => {
  stream.setContentType('text/plain');
  for (let i = 0; i < event.parts; i++) {
    stream.write(`part-${i};`);
    await new Promise((r) => setTimeout(r, event.gap_ms));
  }
  stream.end();
});
"""


def ran_on(nodes):
    """Each node's realm_invocations_total (what its environments ran)."""
    return [metric(n, "realm_invocations_total") or 0 for n in nodes]


def test_calls_run_where_the_function_is_warm(pg_cluster, nats):
    """A function's calls gather on one node whatever node they reach: the
    first runs on the revision's home (rendezvous hash, the same on every
    node), the next ones on the node with its idle environment, through HTTP
    Invoke, the WebSocket and a response stream; results, streamed parts,
    function errors and log tails come back as if run where they arrived."""
    with three_nodes(pg_cluster, nats) as nodes:
        lam = fn_client(nodes[0])
        deploy(lam, "warm", {"index.js": VERSION_SRC % 1})
        lam.get_waiter("function_active_v2").wait(FunctionName="warm")
        for i, n in enumerate(nodes * 3):
            assert ok(fn_client(n), "warm", {"i": i}) == {"version": 1, "got": {"i": i}}
        ran = ran_on(nodes)
        assert sorted(ran) == [0, 0, 9], ran
        home = nodes[ran.index(9)]
        others = [n for n in nodes if n is not home]
        placed = sum(metric(n, "realm_cluster_calls_placed_total") for n in others)
        assert placed == 6, placed
        assert metric(home, "realm_cluster_calls_served_total") == 6
        # The WebSocket of another node.
        m = ws_replies(others[0], {"id": "w", "function": "invoke",
                                   "params": {"name": "warm", "payload": {"via": "ws"}}})[-1]
        assert m["status"] == "complete", m
        assert m["data"]["payload"] == {"version": 1, "got": {"via": "ws"}}, m
        # A function error and its log tail, through another node.
        deploy(lam, "boom", {"index.js": 'exports.handler = async () => { console.log("about to");'
                                         ' throw new Error("kaput"); };'})
        lam.get_waiter("function_active_v2").wait(FunctionName="boom")
        r = fn_client(others[1]).invoke(FunctionName="boom", LogType="Tail")
        assert r.get("FunctionError") == "Unhandled", r
        assert b"kaput" in r["Payload"].read()
        import base64
        assert "about to" in base64.b64decode(r["LogResult"]).decode()
        # A response stream, part by part, through a node that does not run it.
        deploy(lam, "streamer", {"index.js": STREAM_SRC})
        lam.get_waiter("function_active_v2").wait(FunctionName="streamer")
        for n in nodes:  # warm it on its home
            from fn_util import stream_invoke
            status, headers, events, times, raw = stream_invoke(n, "streamer",
                                                                {"parts": 4, "gap_ms": 200})
            assert status == 200, raw
            assert headers.get("content-type") == "text/plain", headers
            kinds = [e[0] for e in events]
            assert kinds[-1] == "InvokeComplete" and set(kinds[:-1]) == {"PayloadChunk"}, kinds
            body = b"".join(e[2] for e in events[:-1]).decode()
            assert body == "part-0;part-1;part-2;part-3;", body
            # Parts came as they were written (not all at the end).
            assert times[-1] - times[0] > 0.4, times


def test_a_lost_node_ends_its_calls_and_a_cancel_reaches_it(pg_cluster, nats):
    """A call placed on another node is cancelled there when its caller
    cancels it; one whose node dies (kill -9) ends with NODE_LOST within
    seconds (never run again elsewhere)."""
    with three_nodes(pg_cluster, nats) as nodes:
        lam = fn_client(nodes[0])
        deploy(lam, "slow", {"index.js": SLEEP_SRC}, Timeout=60)
        lam.get_waiter("function_active_v2").wait(FunctionName="slow")
        assert ok(lam, "slow", {"ms": 10, "tag": "warm"})["tag"] == "warm"
        ran = ran_on(nodes)
        home = nodes[ran.index(1)]
        origin = next(n for n in nodes if n is not home)
        # Cancel over the WebSocket of the origin: the home's environment stops.
        stopped = metric(home, "realm_environments_stopped_total") or 0
        c = Ws(origin.ports["client"])
        try:
            c.call({"id": "s", "function": "invoke",
                    "params": {"name": "slow", "payload": {"ms": 30000, "tag": "cancelme"}}})
            poll_until(lambda: "began cancelme" in http_request(
                home.ports["control"], "GET", "/realm/v1/functions/slow/logs")[2].decode(),
                15, what="running on its home")
            c.call({"id": "x", "function": "cancel", "params": {"id": "s"}})
            seen = {}
            while "s" not in seen or "x" not in seen:
                m = c.recv()
                if isinstance(m, dict) and m.get("id") in ("s", "x") and m.get("status") in (
                        "cancelled", "complete", "error"):
                    seen[m["id"]] = m
            assert seen["s"]["status"] == "cancelled", seen
        finally:
            c.close()
        poll_until(lambda: (metric(home, "realm_environments_stopped_total") or 0) > stopped, 10,
                   what="the home's environment stopped")
        # kill -9 of the running node: the caller hears NODE_LOST.
        assert ok(lam, "slow", {"ms": 10, "tag": "warm2"})["tag"] == "warm2"
        out = {}

        def call():
            out["r"] = raw_invoke(origin, "slow", json.dumps({"ms": 30000, "tag": "dies"}).encode(),
                                  timeout=60)

        t = threading.Thread(target=call)
        t.start()
        poll_until(lambda: "began dies" in http_request(
            origin.ports["control"], "GET", "/realm/v1/functions/slow/logs")[2].decode(),
            15, what="running on its home")
        home.kill()
        t.join(20)
        assert not t.is_alive()
        st, h, b = out["r"]
        assert st == 502, (st, b)
        assert b"was lost" in b, b
        assert metric(origin, "realm_cluster_calls_lost_total") == 1


def ws_replies(srv, msg):
    """Every reply to msg (streamed parts, then the end)."""
    c = Ws(srv.ports["client"])
    out = []
    try:
        c.call(msg)
        while True:
            m = c.recv()
            if isinstance(m, dict) and m.get("id") == msg["id"]:
                out.append(m)
                if m.get("status") in ("complete", "error", "cancelled"):
                    return out
    finally:
        c.close()


def test_generate_runs_on_a_node_with_the_model(pg_cluster, nats):
    """n1 has no model (--model none); n2 has the bundled one. generate
    naming it through n1 runs on n2 and its tokens stream back through n1,
    the same tokens as on n2 itself; a model no node has is refused."""
    n1 = node(pg_cluster, nats, "n1", "--model", "none")
    n2 = node(pg_cluster, nats, "n2")
    try:
        for n in (n1, n2):
            poll_until(lambda n=n: nodes_seen(n) == ["n1", "n2"], 15, what="two nodes")
        params = {"prompt": "Once upon a time", "max_tokens": 12, "temperature": 0,
                  "stream": True, "model": "stories260K"}
        poll_until(lambda: ws_replies(n1, {"id": "g", "function": "generate",
                                            "params": params})[-1]["status"] == "complete",
                   10, interval=0.5, what="n1 hears n2's model")
        here = ws_replies(n2, {"id": "g", "function": "generate", "params": params})
        there = ws_replies(n1, {"id": "g", "function": "generate", "params": params})
        assert there[-1]["status"] == "complete", there
        parts = [m["data"]["text"] for m in there if m["status"] == "streaming"]
        assert len(parts) >= 2, there
        assert "".join(parts) == there[-1]["data"]["text"] == here[-1]["data"]["text"]
        assert there[-1]["data"]["model"] == "stories260K"
        assert metric(n2, "realm_cluster_calls_served_total") >= 2
        # No default model on n1, and a model nobody has.
        m = ws_replies(n1, {"id": "x", "function": "generate", "params": {"prompt": "Hi"}})[-1]
        assert m["status"] == "error" and m["error"]["code"] == "NO_MODEL", m
        m = ws_replies(n1, {"id": "y", "function": "generate",
                            "params": {"prompt": "Hi", "model": "nope"}})[-1]
        assert m["status"] == "error" and m["error"]["code"] == "NO_MODEL", m
        m = ws_replies(n2, {"id": "z", "function": "generate",
                            "params": {"prompt": "Hi", "model": "nope"}})[-1]
        assert m["status"] == "error" and m["error"]["code"] == "INVALID_PARAMS", m
    finally:
        for n in (n1, n2):
            finish(n)


QUICK_SRC = """exports.handler = async (event) => {
  await new Promise((r) => setTimeout(r, event.ms || 0));
  return {ok: true, i: event.i};
};
"""


def load(targets, seconds, ms=30):
    """Calls spread over targets from 4 threads for `seconds`: [(t_start, status, body)]."""
    import time
    out, lock, t0 = [], threading.Lock(), time.monotonic()

    def worker(k):
        i = 0
        while time.monotonic() - t0 < seconds:
            srv = targets[(k + i) % len(targets)]
            t = time.monotonic() - t0
            try:
                st, _, b = raw_invoke(srv, "quick", json.dumps({"ms": ms, "i": i}).encode(),
                                      timeout=20)
            except OSError as e:  # the node it talked to is the one killed
                st, b = 0, str(e).encode()
            with lock:
                out.append((t, st, b))
            i += 1

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for th in threads:
        th.start()
    return threads, out


def test_a_node_killed_under_load_loses_only_its_calls(pg_cluster, nats):
    """Calls through two nodes run on the third (the function's home); it is
    killed with -9 mid-load: every call ends (none hangs), those it was
    running with NODE_LOST (502), and the calls after it is gone run on the
    others."""
    import time
    with three_nodes(pg_cluster, nats) as nodes:
        lam = fn_client(nodes[0])
        deploy(lam, "quick", {"index.js": QUICK_SRC})
        lam.get_waiter("function_active_v2").wait(FunctionName="quick")
        assert ok(lam, "quick", {"i": 0})["ok"] is True
        home = nodes[ran_on(nodes).index(1)]
        others = [n for n in nodes if n is not home]
        threads, out = load(others, 6.0)
        time.sleep(2.0)  # the load runs on the home meanwhile (not a synchronisation)
        killed_at = 2.0
        home.kill()
        for th in threads:
            th.join(30)
        assert not any(th.is_alive() for th in threads), "a call hung"
        statuses = {st for _, st, _ in out}
        assert statuses <= {200, 502}, [(t, st, b) for t, st, b in out if st not in (200, 502)]
        lost = [b for _, st, b in out if st == 502]
        assert all(b"was lost" in b for b in lost), lost
        late = [st for t, st, _ in out if t > killed_at + 0.5]
        assert late and all(st == 200 for st in late), late
        assert sum(st == 200 for t, st, _ in out if t < killed_at) > 0


def test_calls_go_on_while_nats_is_down(pg_cluster, nats):
    """nats-server killed: every node serves its own callers (nothing is
    placed while the bus is away); started again, the nodes find each other
    and calls are placed again."""
    with three_nodes(pg_cluster, nats) as nodes:
        lam = fn_client(nodes[0])
        deploy(lam, "quick", {"index.js": QUICK_SRC})
        lam.get_waiter("function_active_v2").wait(FunctionName="quick")
        assert ok(lam, "quick", {"i": 0})["ok"] is True
        home = nodes[ran_on(nodes).index(1)]
        origin = next(n for n in nodes if n is not home)
        nats.kill()
        poll_until(lambda: metric(origin, "realm_cluster_bus_connected") == 0, 15,
                   what="the bus gone")
        for i in range(5):
            st, _, b = raw_invoke(origin, "quick", json.dumps({"i": i}).encode())
            assert st == 200, (st, b)
        assert metric(origin, "realm_invocations_total") >= 5  # ran where it arrived
        nats.start()
        poll_until(lambda: all(metric(n, "realm_cluster_bus_connected") == 1 for n in nodes), 20,
                   what="the bus back")
        poll_until(lambda: nodes_seen(origin) == ["n1", "n2", "n3"], 20, what="cluster again")
        placed = metric(origin, "realm_cluster_calls_placed_total") or 0
        # The origin is warm itself now: a call that finds its environment busy goes to the home.
        with ThreadPoolExecutor(4) as ex:
            results = list(ex.map(lambda i: raw_invoke(origin, "quick", json.dumps(
                {"i": i, "ms": 500}).encode()), range(4)))
        assert all(st == 200 for st, _, _ in results), results
        assert (metric(origin, "realm_cluster_calls_placed_total") or 0) > placed


def test_the_cluster_rides_out_a_database_restart(nats):
    """PostgreSQL stopped (immediate) under two nodes: calls end with a clear
    error or a result, never hang; started again, calls through both nodes
    run again (leases taken anew)."""
    from pg_util import PgCluster
    with PgCluster.running() as pg:
        with nodes_up(pg, nats, 2, "--node-lease-ms", "2000") as (n1, n2):
            lam = fn_client(n1)
            deploy(lam, "quick", {"index.js": QUICK_SRC})
            lam.get_waiter("function_active_v2").wait(FunctionName="quick")
            for n in (n1, n2):
                st, _, b = raw_invoke(n, "quick", b'{"i": 1}')
                assert st == 200, (st, b)
            pg.stop(mode="immediate")
            for i in range(6):
                for n in (n1, n2):
                    st, _, b = raw_invoke(n, "quick", json.dumps({"i": i}).encode(), timeout=40)
                    assert st in (200, 500, 502, 503), (st, b)
            pg.start()

            def both_run():
                return all(raw_invoke(n, "quick", b'{"i": 2}', timeout=40)[0] == 200
                           for n in (n1, n2))

            poll_until(both_run, 40, interval=0.5, what="calls run again")
