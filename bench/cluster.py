#!/usr/bin/python3
"""bench/cluster.py - Realm's calls across the nodes of a cluster (issue 17).

Starts a throwaway PostgreSQL cluster (tests/integration/pg_util.py), a
nats-server (tests/integration/nats_util.py) and Realm nodes on them, all
pinned to CPU 0, and drives them with wrk pinned to CPU 1 (taskset), each
over Invoke HTTP (keep-alive) of a warm no-op `provided.al2023` function
(bench/functions/bootstrap.c, HTTP runtime API):

  hop     two nodes; the function warm on its home. One wrk caller in a
          closed loop, rounds alternating between calling the home (the call
          runs where it arrives: local) and calling the other node (the call
          is placed on the home over NATS and its result comes back: one
          hop). p50/p99 latency, calls/s and server-side CPU per call (both
          nodes and nats-server, /proc/PID/stat), and hop / local ratios.
  scale   three nodes; calls/s and latency with --callers callers on the
          function's home node (every call local), then spread over the three
          nodes (a wrk per node: two thirds of the calls hop to the home); the
          rounds alternate. On a machine whose server side is one core, the
          three nodes share that core: this shows what the cluster's hops
          cost, not how it scales out.

Each figure is the median of --rounds rounds with min and max; writes
bench/results/cluster.json (or --out); bench/report.py renders it into
BENCHMARKS.md.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import invoke  # noqa: E402  (zips, the Realm wrapper, wrk)
from nats_util import NatsServer  # noqa: E402
from pg_util import PgCluster, _children  # noqa: E402


def log(*a):
    print("cluster:", *a, file=sys.stderr, flush=True)


def spread(xs):
    xs = [x for x in xs if x is not None]
    if not xs:
        return None
    return {"median": round(statistics.median(xs), 4), "min": round(min(xs), 4),
            "max": round(max(xs), 4)}


def pin(pid, cpu):
    subprocess.run(["taskset", "-a", "-p", "-c", cpu, str(pid)], check=True, capture_output=True)


def metric(node, name):
    with urllib.request.urlopen(f"http://127.0.0.1:{node.ports['metrics']}/metrics") as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + "{") or line.startswith(name + " "):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def ticks(pids):
    total = 0
    for pid in pids:
        try:
            total += invoke.proc_ticks(pid)
        except (OSError, IndexError):
            pass
    return total


def wrk(urls, conns_each, seconds, cpu):
    """One wrk per URL at once (pinned to cpu); their merged figures."""
    env = invoke.tool_env()
    env.update(WRK_METHOD="POST", WRK_BODY="{}", WRK_PAUSE_MS="0")
    procs = [subprocess.Popen(["taskset", "-c", cpu, "wrk", "-t1", f"-c{conns_each}",
                               f"-d{int(seconds)}s", "--timeout", "30s", "-s",
                               os.path.join(HERE, "wrk_report.lua"), u],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for u in urls]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=seconds + 120)
        line = next((x[9:] for x in out.splitlines() if x.startswith("WRK_JSON ")), None)
        if line is None:
            raise RuntimeError(f"wrk printed no result: {out[-300:]} {err[-300:]}")
        outs.append(json.loads(line))
    n = sum(w["requests"] for w in outs)
    return {"each_p99_ms": [w["p99_us"] / 1e3 for w in outs], "n": n, "per_s": round(sum(w["requests_per_s"] for w in outs), 1),
            # the slowest wrk's percentiles (each wrk sees its own callers)
            "p50_ms": max(w["p50_us"] for w in outs) / 1e3,
            "p99_ms": max(w["p99_us"] for w in outs) / 1e3,
            "errors": sum(sum(w["errors"].values()) for w in outs)}


def measure(server_pids, urls, conns_each, seconds, cpu):
    t0 = ticks(server_pids)
    w0 = time.perf_counter()
    r = wrk(urls, conns_each, seconds, cpu)
    wall = time.perf_counter() - w0
    used = (ticks(server_pids) - t0) / invoke.HZ
    r["server_cpu_pct"] = round(100 * used / wall, 1)
    r["server_side_cpu_us_per_call"] = round(1e6 * used / r["n"], 1) if r["n"] else None
    return r


def url(node, name):
    return f"http://127.0.0.1:{node.ports['control']}/2015-03-31/functions/{name}/invocations"


def start_nodes(a, tmp, pg, nats, n):
    nodes = []
    for i in range(n):
        data = tempfile.mkdtemp(dir=tmp, prefix=f"n{i + 1}-")
        node = invoke.Realm(a.realm, data, ["--db", pg.url, "--nats", nats.url,
                                            "--node-id", f"n{i + 1}"])
        if a.pin:
            pin(node.proc.pid, a.server_cpu)
        nodes.append(node)
    for _ in range(200):
        if all(metric(x, "realm_cluster_nodes") == n for x in nodes):
            return nodes
        time.sleep(0.05)
    raise RuntimeError(f"{n} nodes did not find each other")


def server_pids(nodes, nats, pg):
    pids = [x.proc.pid for x in nodes] + [nats.proc.pid]
    pm = pg.postmaster_pid()
    return pids + [pm] + sorted(_children(pm))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--realm", default=os.path.join(ROOT, "build/bench/realm"))
    ap.add_argument("--out", default=os.path.join(HERE, "results", "cluster.json"))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=2)
    ap.add_argument("--callers", type=int, default=6)
    ap.add_argument("--note", default="")
    ap.add_argument("--no-pin", action="store_true", help="let the scheduler place everything")
    a = ap.parse_args()
    a.pin = os.cpu_count() >= 2 and not a.no_pin
    a.server_cpu, a.client_cpu = "0", "1" if os.cpu_count() >= 2 else "0"
    if a.pin:
        pin(os.getpid(), a.client_cpu)
    started = time.time()
    load0 = " ".join(open("/proc/loadavg").read().split()[:3])
    out = {"machine": {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                       "cores": os.cpu_count(), "loadavg_at_start": load0, "note": a.note,
                       "realm_commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"],
                                                      capture_output=True, text=True,
                                                      cwd=ROOT).stdout.strip()},
           "config": {"rounds": a.rounds, "seconds": a.seconds, "callers": a.callers,
                      "pinned": a.pin}}
    with tempfile.TemporaryDirectory() as tmp, PgCluster.running() as pg, \
            NatsServer.running() as nats:
        if a.pin:
            pin(nats.proc.pid, a.server_cpu)
            pin(pg.postmaster_pid(), a.server_cpu)
        zips = invoke.build_zips(tmp)

        # ---- hop: one caller, local against one hop ----
        nodes = start_nodes(a, tmp, pg, nats, 2)
        nodes[0].create("noop", "provided.al2023", "bootstrap", "http", zips)
        urllib.request.urlopen(urllib.request.Request(url(nodes[0], "noop"), data=b"{}")).read()
        ran = [metric(x, "realm_invocations_total") for x in nodes]
        home = nodes[ran.index(max(ran))]
        other = nodes[1 - nodes.index(home)]
        pids = server_pids(nodes, nats, pg)
        log("hop: warm-up")
        for side in (home, other):
            wrk([url(side, "noop")], 1, 1, a.client_cpu)
        rounds = {"local": [], "hop": []}
        for i in range(a.rounds):
            for kind, side in (("local", home), ("hop", other)):
                rounds[kind].append(measure(pids, [url(side, "noop")], 1, a.seconds,
                                            a.client_cpu))
                log(f"hop round {i + 1} {kind}: {rounds[kind][-1]['per_s']}/s "
                    f"p50 {rounds[kind][-1]['p50_ms']:.3f} ms")
        placed = metric(other, "realm_cluster_calls_placed_total")
        out["hop"] = {k: {f: spread([r[f] for r in v])
                          for f in ("per_s", "p50_ms", "p99_ms", "server_side_cpu_us_per_call",
                                    "server_cpu_pct")} for k, v in rounds.items()}
        out["hop"]["errors"] = sum(r["errors"] for v in rounds.values() for r in v)
        out["hop"]["placed_by_other"] = placed
        out["hop"]["ratio"] = {f: round(out["hop"]["hop"][f]["median"] /
                                        out["hop"]["local"][f]["median"], 3)
                               for f in ("per_s", "p50_ms", "p99_ms", "server_side_cpu_us_per_call")}
        for x in nodes:
            x.stop()

        # ---- scale: callers over one node, then over three ----
        nodes = start_nodes(a, tmp, pg, nats, 3)
        nodes[0].create("noop3", "provided.al2023", "bootstrap", "http", zips)
        urllib.request.urlopen(urllib.request.Request(url(nodes[0], "noop3"), data=b"{}")).read()
        ran = [metric(x, "realm_invocations_total") for x in nodes]
        home3 = nodes[ran.index(max(ran))]
        pids = server_pids(nodes, nats, pg)
        each = max(1, a.callers // 3)
        log("scale: warm-up")
        wrk([url(home3, "noop3")], a.callers, 1, a.client_cpu)
        wrk([url(x, "noop3") for x in nodes], each, 1, a.client_cpu)
        rounds = {"one_node": [], "three_nodes": []}
        for i in range(a.rounds):
            rounds["one_node"].append(measure(pids, [url(home3, "noop3")], a.callers,
                                              a.seconds, a.client_cpu))
            rounds["three_nodes"].append(measure(pids, [url(x, "noop3") for x in nodes], each,
                                                 a.seconds, a.client_cpu))
            log(f"scale round {i + 1}: one {rounds['one_node'][-1]['per_s']}/s, "
                f"three {rounds['three_nodes'][-1]['per_s']}/s")
        out["scale"] = {k: {f: spread([r[f] for r in v])
                            for f in ("per_s", "p50_ms", "p99_ms", "server_side_cpu_us_per_call",
                                      "server_cpu_pct")} for k, v in rounds.items()}
        out["scale"]["errors"] = sum(r["errors"] for v in rounds.values() for r in v)
        out["scale"]["ratio"] = {f: round(out["scale"]["three_nodes"][f]["median"] /
                                          out["scale"]["one_node"][f]["median"], 3)
                                 for f in ("per_s", "p50_ms", "p99_ms",
                                           "server_side_cpu_us_per_call")}
        out["scale"]["ran_per_node"] = [metric(x, "realm_invocations_total") for x in nodes]
        for x in nodes:
            x.stop()
    out["machine"]["loadavg_at_end"] = " ".join(open("/proc/loadavg").read().split()[:3])
    out["machine"]["seconds"] = round(time.time() - started)
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(out, f, indent=1)
    log("wrote", a.out)


if __name__ == "__main__":
    main()
