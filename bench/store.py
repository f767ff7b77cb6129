#!/usr/bin/python3
"""bench/store.py - Realm on SQLite and on PostgreSQL, side by side (issue 16).

Starts a throwaway PostgreSQL cluster (tests/integration/pg_util.py, fsync on,
as in production) and Realm servers, each with its own data directory: one on
SQLite (the default), one with `--db <the cluster's url>`, and (unless
--no-async-commit) one on another database of the cluster whose
synchronous_commit is off: a commit does not wait for its WAL flush there,
as SQLite's WAL with synchronous=NORMAL does not, which shows what the flush
costs. The
server side (Realm, its environments and PostgreSQL) is pinned to CPU 0, this
script and its load generators to CPU 1 (taskset), when there are two CPUs.
Then, after an unrecorded warm-up of each server, --rounds rounds that
alternate the servers (SQLite, PostgreSQL, PostgreSQL async, SQLite, ...)
measure, per server:

  control  operations/s of the control API over raw HTTP/1.1 keep-alive
           (unsigned, no --auth), --clients clients in a closed loop for
           --control-s seconds per operation: CreateFunction (a small zip,
           new names), GetFunction, UpdateFunctionConfiguration (one function
           per client, a new Description each time), UpdateFunctionConfiguration
           followed by PublishVersion (a new version each time; counted as
           pairs), ListFunctions (MaxItems 50; every function created so far
           is in the registry)
  events   --events `InvocationType: Event` invocations of a no-op `provided`
           function (bench/functions/bootstrap.c, HTTP runtime API) sent by
           --clients clients: the enqueue rate (202s/s, first send to last
           202) and the dispatch rate (events run to completion per second,
           from the first send until failed-events says Pending 0, polled
           every 10 ms); the server runs with --concurrency-limit 4.
           Meanwhile a separate process times GET /health on the metrics
           listener (one at a time, 1 ms apart): the loop's responsiveness
           while the queue works
  warm     synchronous Invoke of the same warm function, one wrk caller in a
           closed loop for --warm-s seconds: p50 and p99 latency

Each figure is the median of its rounds with the min and max kept; ratios
are PostgreSQL over SQLite of those medians. Server-side CPU per operation:
Realm's CPU plus the cluster's (postmaster and backends), per operation. Writes bench/results/store.json
(or --out); bench/report.py renders it into BENCHMARKS.md.
"""
import argparse
import base64
import http.client
import json
import os
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import types

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import invoke  # noqa: E402  (zips, the Realm server wrapper, the wrk runs)
from pg_util import PgCluster, _children  # noqa: E402

# sqlite: the default; postgresql: --db on the cluster, fsync and synchronous_commit on (as in
# production); postgresql_async: the same cluster, another database with synchronous_commit off
# (a commit does not wait for its WAL flush: what SQLite's WAL with synchronous=NORMAL does too),
# which tells the commit's flush apart from the rest of the cost.
BACKENDS = ["sqlite", "postgresql", "postgresql_async"]
OPS = ("create", "get", "update", "publish", "list")
ROLE = "arn:aws:iam::000000000000:role/bench"


def log(*a):
    print("store:", *a, file=sys.stderr, flush=True)


def pct(xs, p):
    return invoke.pct(xs, p)


def spread(xs):
    xs = [x for x in xs if x is not None]
    if not xs:
        return None
    return {"median": round(statistics.median(xs), 4), "min": round(min(xs), 4), "max": round(max(xs), 4)}


def rusage_self():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class Client:
    """One keep-alive HTTP/1.1 connection to the control port."""

    def __init__(self, port):
        self.c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def req(self, method, path, body=None, headers=None):
        data = json.dumps(body).encode() if isinstance(body, dict) else body
        h = {"Content-Type": "application/json"} if data is not None else {}
        h.update(headers or {})
        self.c.request(method, path, body=data, headers=h)
        r = self.c.getresponse()
        return r.status, r.read()

    def close(self):
        self.c.close()


class Server:
    """A Realm server (bench/invoke.py's wrapper) on one backend, pinned."""

    def __init__(self, a, backend, tmp, url=None):
        self.backend = backend
        data = tempfile.mkdtemp(dir=tmp, prefix=backend + "-")
        extra = ["--concurrency-limit", str(a.concurrency_limit)] + (["--db", url] if url else [])
        self.realm = invoke.Realm(a.realm, data, extra)
        if a.pin:
            # every thread, and the environments it starts later, on the server's CPU
            subprocess.run(["taskset", "-a", "-p", "-c", a.server_cpu, str(self.realm.proc.pid)],
                           check=True, capture_output=True)
        self.port = self.realm.ports["control"]
        self.pid = self.realm.proc.pid
        self.round = 0
        self.pg = None  # the PgCluster behind --db, whose CPU is the server side's too

    def db_ticks(self):
        """CPU ticks of the PostgreSQL postmaster and its children (the backends of this
        server's connections are long-lived), 0 on SQLite."""
        if not self.pg:
            return 0
        pm = self.pg.postmaster_pid()
        total = 0
        for pid in [pm] + sorted(_children(pm)):
            try:
                total += invoke.proc_ticks(pid)
            except (OSError, IndexError):
                pass  # a child that just exited
        return total

    def cpu(self):
        """(Realm's ticks, the database's ticks, the machine's ticks, this process's CPU s)."""
        return invoke.proc_ticks(self.pid), self.db_ticks(), invoke.machine_ticks(), rusage_self()

    def fn_body(self, name, zipb, runtime="nodejs20.x", handler="index.handler", env=None):
        return {"FunctionName": name, "Runtime": runtime, "Handler": handler, "Role": ROLE,
                "Code": {"ZipFile": base64.b64encode(zipb).decode()}, "MemorySize": 128, "Timeout": 30,
                "Environment": {"Variables": env or {}}}


def cost(srv, c0, c1, wall, ops):
    """CPU shares of the window: Realm's, the database's, the load generator's (% of a core),
    everything else in cores, and the server side's (Realm + database) CPU per operation."""
    realm = (c1[0] - c0[0]) / invoke.HZ
    db = (c1[1] - c0[1]) / invoke.HZ
    machine = (c1[2] - c0[2]) / invoke.HZ
    client = c1[3] - c0[3]
    return {"server_cpu_pct": round(100 * realm / wall, 1), "db_cpu_pct": round(100 * db / wall, 1),
            "client_cpu_pct": round(100 * client / wall, 1),
            "other_cpu_cores": round(max(0.0, machine - realm - db - client) / wall, 2),
            "server_side_cpu_us_per_op": round(1e6 * (realm + db) / ops, 1) if ops else None}


def closed_loop(srv, clients, seconds, op):
    """clients threads, each calling op(client, index, n) in a loop for seconds; returns
    ops/s, latency percentiles, errors and the load generator's CPU."""
    lat = [[] for _ in range(clients)]
    errs = [[] for _ in range(clients)]
    conns = [Client(srv.port) for _ in range(clients)]
    start = threading.Barrier(clients + 1)
    stop_at = [0.0]

    def run(i):
        start.wait()
        n = 0
        while time.perf_counter() < stop_at[0]:
            t0 = time.perf_counter_ns()
            try:
                ok, what = op(conns[i], i, n)
            except Exception as e:  # noqa: BLE001  (counted, reported)
                ok, what = False, repr(e)
            lat[i].append(time.perf_counter_ns() - t0)
            if not ok:
                errs[i].append(what)
            n += 1

    ts = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    for t in ts:
        t.start()
    c0 = srv.cpu()
    w0 = time.perf_counter()
    stop_at[0] = w0 + seconds
    start.wait()
    for t in ts:
        t.join()
    wall = time.perf_counter() - w0
    c1 = srv.cpu()
    for c in conns:
        c.close()
    all_lat = [x / 1e6 for xs in lat for x in xs]
    all_err = [e for xs in errs for e in xs]
    n = len(all_lat)
    ok = n - len(all_err)
    return dict({"n": n, "per_s": round(ok / wall, 1), "p50_ms": pct(all_lat, 50),
                 "p99_ms": pct(all_lat, 99), "errors": len(all_err), "first_errors": all_err[:3],
                 "wall_s": round(wall, 3)}, **cost(srv, c0, c1, wall, ok))


def control_round(a, srv, zips, seconds):
    """One round of every control operation; the functions it creates stay."""
    srv.round += 1
    tag = f"{srv.round}"
    small = zips["nodejs20.x"]
    out = {}

    def create(c, i, n):
        name = f"c{tag}-{i}-{n}"
        st, body = c.req("POST", "/2015-03-31/functions", srv.fn_body(name, small))
        return st == 201, f"{st} {body[:160]!r}"
    out["create"] = closed_loop(srv, a.clients, seconds, create)

    def get(c, i, n):
        st, body = c.req("GET", f"/2015-03-31/functions/c{tag}-{i}-0")
        return st == 200, f"{st} {body[:160]!r}"
    out["get"] = closed_loop(srv, a.clients, seconds, get)

    def update(c, i, n):
        st, body = c.req("PUT", f"/2015-03-31/functions/c{tag}-{i}-1/configuration",
                         {"Description": f"u{n}"})
        return st == 200, f"{st} {body[:160]!r}"
    out["update"] = closed_loop(srv, a.clients, seconds, update)

    def publish(c, i, n):
        fn = f"/2015-03-31/functions/c{tag}-{i}-2"
        st, body = c.req("PUT", fn + "/configuration", {"Description": f"p{n}"})
        if st != 200:
            return False, f"update {st} {body[:160]!r}"
        st, body = c.req("POST", fn + "/versions", {})
        return st == 201, f"publish {st} {body[:160]!r}"
    out["publish"] = closed_loop(srv, a.clients, seconds, publish)

    def list_(c, i, n):
        st, body = c.req("GET", "/2015-03-31/functions?MaxItems=50")
        return st == 200, f"{st} {body[:160]!r}"
    out["list"] = closed_loop(srv, a.clients, seconds, list_)
    return out


def pending(c, name):
    st, body = c.req("GET", f"/realm/v1/functions/{name}/failed-events")
    if st != 200:
        raise RuntimeError(f"failed-events: {st} {body[:200]!r}")
    j = json.loads(body)
    return j["Pending"], len(j["FailedEvents"])


HEALTH_POLLER = r"""
import http.client, json, signal, sys, time
h = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=60)
lat, stop = [], []
signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
print("ready", flush=True)
while not stop:
    t0 = time.perf_counter()
    h.request("GET", "/health")
    h.getresponse().read()
    lat.append((time.perf_counter() - t0) * 1000)
    time.sleep(0.001)
print(json.dumps(lat), flush=True)
"""


class HealthPoller:
    """GET /health on the metrics listener, one request at a time (1 ms apart), from its own
    process (no GIL shared with the clients), while a round runs: how long Realm's event loop
    takes to answer while it also serves the round (every listener is on that one loop)."""

    def __init__(self, srv):
        self.p = subprocess.Popen([sys.executable, "-c", HEALTH_POLLER, str(srv.realm.ports["metrics"])],
                                  stdout=subprocess.PIPE, text=True)
        if self.p.stdout.readline().strip() != "ready":
            raise RuntimeError("the /health poller did not start")

    def stop(self):
        self.p.terminate()
        lat = json.loads(self.p.stdout.readline())
        self.p.wait(10)
        return {"n": len(lat), "p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99), "max_ms": max(lat) if lat else None}


def events_round(a, srv, name, n_events):
    """n_events Event invocations from a.clients clients: enqueue and dispatch rates, and
    GET /health's latency meanwhile."""
    poll = Client(srv.port)
    p0, failed0 = pending(poll, name)
    if p0:
        raise RuntimeError(f"{p0} events pending before the round")
    per = [n_events // a.clients + (1 if i < n_events % a.clients else 0) for i in range(a.clients)]
    codes = [dict() for _ in range(a.clients)]
    done_at = [0.0] * a.clients
    conns = [Client(srv.port) for _ in range(a.clients)]
    go = threading.Barrier(a.clients + 1)
    path = f"/2015-03-31/functions/{name}/invocations"

    def run(i):
        go.wait()
        for k in range(per[i]):
            st, _ = conns[i].req("POST", path, json.dumps({"k": k}).encode(),
                                 {"X-Amz-Invocation-Type": "Event"})
            codes[i][st] = codes[i].get(st, 0) + 1
        done_at[i] = time.perf_counter()

    ts = [threading.Thread(target=run, args=(i,)) for i in range(a.clients)]
    for t in ts:
        t.start()
    hp = HealthPoller(srv)
    c0 = srv.cpu()
    t0 = time.perf_counter()
    go.wait()
    for t in ts:
        t.join()
    t_enq = max(done_at)
    deadline = t0 + a.event_timeout_s
    polls = 0
    while True:
        p, failed = pending(poll, name)
        polls += 1
        if p == 0:
            break
        if time.perf_counter() > deadline:
            raise RuntimeError(f"{p} events still pending after {a.event_timeout_s} s")
        time.sleep(0.01)  # the poll's period (a measurement, not synchronisation)
    t_empty = time.perf_counter()
    c1 = srv.cpu()
    health = hp.stop()
    for c in conns + [poll]:
        c.close()
    total = {}
    for d in codes:
        for k, v in d.items():
            total[str(k)] = total.get(str(k), 0) + v
    accepted = total.get("202", 0)
    wall = t_empty - t0
    return dict({"events": n_events, "accepted": accepted, "status_counts": total,
                 "failed_for_good": failed - failed0,
                 "enqueue_s": round(t_enq - t0, 4), "enqueue_per_s": round(accepted / (t_enq - t0), 1),
                 "dispatch_s": round(wall, 4), "dispatch_per_s": round(accepted / wall, 1), "polls": polls,
                 "health_during": health},
                **cost(srv, c0, c1, wall, accepted))


def warm_round(a, srv, name, seconds):
    t = invoke.Target("http", f"http://127.0.0.1:{srv.port}/2015-03-31/functions/{name}/invocations", srv.pid)
    c0 = srv.cpu()
    r = invoke.run_load(types.SimpleNamespace(wsload=None), t, 1, seconds)
    c1 = srv.cpu()
    r["db_cpu_pct"] = round(100 * (c1[1] - c0[1]) / invoke.HZ / r["wall_s"], 1)
    return r


def setup(a, srv, zips):
    """The event function (a no-op `provided` bootstrap on the HTTP runtime API), warmed."""
    c = Client(srv.port)
    body = srv.fn_body("ev", zips["provided.al2023"], "provided.al2023", "bootstrap",
                       {"LAMBDA_USE_WEBSOCKET": "false"})
    st, b = c.req("POST", "/2015-03-31/functions", body)
    if st != 201:
        raise RuntimeError(f"create ev on {srv.backend}: {st} {b[:300]!r}")
    for _ in range(200):
        st, b = c.req("GET", "/2015-03-31/functions/ev/configuration")
        j = json.loads(b)
        if j.get("State", "Active") == "Active" and j.get("LastUpdateStatus") != "InProgress":
            break
        time.sleep(0.05)
    st, b = c.req("POST", "/2015-03-31/functions/ev/invocations", b"{}")
    if st != 200:
        raise RuntimeError(f"invoke ev on {srv.backend}: {st} {b[:300]!r}")
    c.close()


def warmup(a, srv, zips):
    setup(a, srv, zips)
    srv.round = 0
    control_round(a, srv, zips, a.warmup_s)
    events_round(a, srv, "ev", a.events // 2)
    warm_round(a, srv, "ev", 1)


def summarize(rounds):
    out = {"control": {}, "events": {}, "warm": {}}
    for op in OPS:
        rs = [r["control"][op] for r in rounds]
        out["control"][op] = {"per_s": spread([x["per_s"] for x in rs]),
                              "p50_ms": spread([x["p50_ms"] for x in rs]),
                              "p99_ms": spread([x["p99_ms"] for x in rs]),
                              "errors": sum(x["errors"] for x in rs),
                              "client_cpu_pct": spread([x["client_cpu_pct"] for x in rs]),
                              "client_cpu_pct_max": max(x["client_cpu_pct"] for x in rs),
                              "server_cpu_pct": spread([x["server_cpu_pct"] for x in rs]),
                              "db_cpu_pct": spread([x["db_cpu_pct"] for x in rs]),
                              "other_cpu_cores": spread([x["other_cpu_cores"] for x in rs]),
                              "server_side_cpu_us_per_op": spread([x["server_side_cpu_us_per_op"] for x in rs])}
    ev = [r["events"] for r in rounds]
    out["events"] = {k: spread([x[k] for x in ev]) for k in ("enqueue_per_s", "dispatch_per_s", "server_cpu_pct",
                                                             "db_cpu_pct", "client_cpu_pct", "other_cpu_cores",
                                                             "server_side_cpu_us_per_op")}
    out["events"]["client_cpu_pct_max"] = max(x["client_cpu_pct"] for x in ev)
    for k in ("p50_ms", "p99_ms", "max_ms"):
        out["events"][f"health_{k}"] = spread([x["health_during"][k] for x in ev])
    out["events"]["rejected"] = sum(x["events"] - x["accepted"] for x in ev)
    out["events"]["failed_for_good"] = sum(x["failed_for_good"] for x in ev)
    w = [r["warm"] for r in rounds]
    out["warm"] = {k: spread([x[k] for x in w]) for k in ("p50_ms", "p99_ms", "per_s", "server_cpu_pct",
                                                          "db_cpu_pct", "client_cpu_pct", "other_cpu_cores")}
    out["warm"]["errors"] = sum(x["errors"] for x in w)
    return out


def ratios(s, pg="postgresql"):
    q = lambda a, b: round(a["median"] / b["median"], 3) if a and b and b["median"] else None  # noqa: E731
    p, l_ = s[pg], s["sqlite"]
    out = {"control": {op: {k: q(p["control"][op][k], l_["control"][op][k])
                            for k in ("per_s", "p50_ms", "p99_ms", "server_side_cpu_us_per_op")} for op in OPS},
           "events": {k: q(p["events"][k], l_["events"][k])
                      for k in ("enqueue_per_s", "dispatch_per_s", "server_side_cpu_us_per_op", "health_p50_ms",
                                "health_p99_ms", "health_max_ms")},
           "warm": {k: q(p["warm"][k], l_["warm"][k]) for k in ("p50_ms", "p99_ms")}}
    return out


def machine(a):
    def sh(*cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT).stdout.strip()
        except OSError:
            return ""
    osr = dict(line.rstrip("\n").split("=", 1) for line in open("/etc/os-release") if "=" in line)
    from pg_util import pg_bindir
    return {"cpu_model": next((x.split(":", 1)[1].strip() for x in open("/proc/cpuinfo")
                               if x.startswith("model name")), ""),
            "cores": os.cpu_count(),
            "memory_kb": next(int(x.split()[1]) for x in open("/proc/meminfo") if x.startswith("MemTotal:")),
            "kernel": os.uname().release, "os": osr.get("PRETTY_NAME", "").strip('"'),
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "loadavg_at_start": " ".join(open("/proc/loadavg").read().split()[:3]),
            "realm_commit": sh("git", "rev-parse", "--short", "HEAD") or "unknown",
            "realm_tracked_files_modified": len(sh("git", "status", "--porcelain",
                                                   "--untracked-files=no").splitlines()),
            "realm_build": "CMake Release, " + sh("cc", "--version").splitlines()[0],
            "postgresql": sh(os.path.join(pg_bindir(), "postgres"), "--version"),
            "sqlite": sh("/usr/bin/python3", "-c", "import sqlite3; print(sqlite3.sqlite_version)")
            + " (Python's; Realm links the system's)"}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--realm", default=os.path.join(ROOT, "build/bench/realm"))
    ap.add_argument("--out", default=os.path.join(HERE, "results", "store.json"))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--control-s", type=float, default=1.5)
    ap.add_argument("--warmup-s", type=float, default=0.3)
    ap.add_argument("--events", type=int, default=1000)
    ap.add_argument("--event-timeout-s", type=float, default=120)
    ap.add_argument("--warm-s", type=int, default=1)
    ap.add_argument("--concurrency-limit", type=int, default=4)
    ap.add_argument("--no-async-commit", action="store_true",
                    help="skip the third server (PostgreSQL with synchronous_commit off)")
    ap.add_argument("--note", default="", help="what else the machine was doing (BENCHMARKS.md prints it)")
    a = ap.parse_args()
    a.pin = os.cpu_count() >= 2
    if a.no_async_commit:
        BACKENDS.remove("postgresql_async")
    a.server_cpu, a.client_cpu = "0", 1
    if a.pin:
        os.sched_setaffinity(0, {a.client_cpu})  # this script and wrk
    t_start = time.time()
    out = {"command": shlex.join([os.path.relpath(sys.argv[0], ROOT)] + sys.argv[1:]),
           "machine": dict(machine(a), note=a.note),
           "config": {"rounds": a.rounds, "clients": a.clients, "control_seconds": a.control_s,
                      "warmup_seconds": a.warmup_s, "events_per_round": a.events, "warm_seconds": a.warm_s,
                      "concurrency_limit": a.concurrency_limit, "pinned": a.pin,
                      "server_cpu": a.server_cpu if a.pin else None, "client_cpu": a.client_cpu if a.pin else None,
                      "postgresql_fsync": True, "backends": BACKENDS, "realm": os.path.relpath(a.realm, ROOT),
                      "wrk": invoke.wrk_version(), "python": sys.version.split()[0]}}
    tmp = tempfile.mkdtemp(prefix="realm-store-")
    servers = {}
    with PgCluster.running(fsync=True, cpus=a.server_cpu if a.pin else None) as pg:
        try:
            zips = invoke.build_zips(tmp)
            servers["sqlite"] = Server(a, "sqlite", tmp)
            servers["postgresql"] = Server(a, "postgresql", tmp, pg.url)
            servers["postgresql"].pg = pg
            if "postgresql_async" in BACKENDS:
                url = pg.create_database("realm_async")
                pg.psql("ALTER DATABASE realm_async SET synchronous_commit = off", db="postgres")
                servers["postgresql_async"] = Server(a, "postgresql_async", tmp, url)
                servers["postgresql_async"].pg = pg
            for b in BACKENDS:
                log(f"warm-up {b}")
                warmup(a, servers[b], zips)
            rounds = {b: [] for b in BACKENDS}
            for i in range(a.rounds):
                for b in BACKENDS:
                    s = servers[b]
                    r = {"round": i + 1, "control": control_round(a, s, zips, a.control_s),
                         "events": events_round(a, s, "ev", a.events),
                         "warm": warm_round(a, s, "ev", a.warm_s)}
                    rounds[b].append(r)
                    log(f"round {i + 1} {b}: " + ", ".join(f"{op} {r['control'][op]['per_s']}/s" for op in OPS)
                        + f"; events enqueue {r['events']['enqueue_per_s']}/s dispatch "
                        f"{r['events']['dispatch_per_s']}/s; warm p50 {r['warm']['p50_ms']:.3f} ms "
                        f"p99 {r['warm']['p99_ms']:.3f} ms")
            out["backends"] = {b: dict(summarize(rounds[b]), rounds=rounds[b]) for b in BACKENDS}
            out["ratio_pg_sqlite"] = ratios(out["backends"])
            if "postgresql_async" in BACKENDS:
                out["ratio_pg_async_sqlite"] = ratios(out["backends"], "postgresql_async")
            for b in BACKENDS:
                out["backends"][b]["server_rss_kb_end"] = servers[b].realm.rss_kb()
        finally:
            for b, s in servers.items():
                s.realm.stop()
                s.realm.err.seek(0)
                if b in out.get("backends", {}):
                    out["backends"][b]["server_stderr_tail"] = s.realm.err.read().splitlines()[-20:]
    shutil.rmtree(tmp, ignore_errors=True)
    out["config"]["loadavg_at_end"] = " ".join(open("/proc/loadavg").read().split()[:3])
    out["config"]["duration_s"] = round(time.time() - t_start, 1)
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    log("wrote", a.out)


if __name__ == "__main__":
    main()
