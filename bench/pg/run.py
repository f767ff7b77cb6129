#!/usr/bin/python3
"""bench/pg/run.py - how should the loop talk to PostgreSQL? (issue 16)

Builds realm-pgloop (bench/pg/pgloop.c; build/bench, Release, REALM_BENCH=ON,
only that target), starts a throwaway PostgreSQL cluster with the tests'
pg_util (fsync on, as in production), fills its tables, then runs each way of
calling PostgreSQL from a libuv loop (sync on the loop, async + uv_poll,
pipeline, worker threads) for a SELECT by primary key, an INSERT commit and
a five-statement transaction (a registry operation's shape), with 1 and 16
requests in flight. Rounds alternate the configurations, and
the median round of each is reported (the machine is shared: a neighbour busy
for a while slows every configuration alike).

Pinned when the machine has two CPUs or more: realm-pgloop (the loop and its
worker threads: the server's side) on CPU 0, PostgreSQL and its backends on
CPU 1 (taskset).

Writes bench/results/pg-loop.json (every round and the medians) and prints
a Markdown table (the one in docs/storage.md).

Knobs (environment): PGBENCH_ROUNDS (3), PGBENCH_SECONDS (2), PGBENCH_WARMUP (0.5),
PGBENCH_PIN (1; 0: no taskset), PGBENCH_ONLY (a substring of the labels to run),
PGBENCH_OUT (the file name under bench/results/, pg-loop.json).
"""
import json
import os
import platform
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from pg_util import PgCluster  # noqa: E402

BUILD = os.path.join(ROOT, "build", "bench")
BIN = os.path.join(BUILD, "bench", "pg", "realm-pgloop")
RESULTS = os.path.join(ROOT, "bench", "results",
                       os.environ.get("PGBENCH_OUT", "pg-loop.json"))
ROUNDS = int(os.environ.get("PGBENCH_ROUNDS", "3"))
SECONDS = float(os.environ.get("PGBENCH_SECONDS", "2"))
WARMUP = float(os.environ.get("PGBENCH_WARMUP", "0.5"))
PIN = os.environ.get("PGBENCH_PIN", "1") != "0"

# (label, arguments): in flight 1, then 16.
CONFIGS = [
    ("sync on the loop, 1 in flight", ["--mode", "sync"]),
    ("async uv_poll, 1 in flight, 1 conn", ["--mode", "async", "--inflight", "1", "--conns", "1"]),
    ("worker thread, 1 in flight, 1 worker", ["--mode", "worker", "--inflight", "1", "--workers", "1"]),
    ("async uv_poll, 16 in flight, 16 conns", ["--mode", "async", "--inflight", "16", "--conns", "16"]),
    ("async uv_poll, 16 in flight, 4 conns", ["--mode", "async", "--inflight", "16", "--conns", "4"]),
    ("pipeline, 16 in flight, 1 conn", ["--mode", "pipeline", "--inflight", "16", "--conns", "1"]),
    ("pipeline, 16 in flight, 4 conns", ["--mode", "pipeline", "--inflight", "16", "--conns", "4"]),
    ("workers, 16 in flight, 4 workers", ["--mode", "worker", "--inflight", "16", "--workers", "4"]),
    ("workers, 16 in flight, 16 workers", ["--mode", "worker", "--inflight", "16", "--workers", "16"]),
]
OPS = ["select", "insert", "txn"]


def log(msg):
    print(f"pgbench: {msg}", file=sys.stderr, flush=True)


def build():
    log(f"building realm-pgloop ({BUILD}, Release)")
    subprocess.run(["cmake", "-S", ROOT, "-B", BUILD, "-DCMAKE_BUILD_TYPE=Release",
                    "-DREALM_TESTS=OFF", "-DREALM_BENCH=ON"], check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["cmake", "--build", BUILD, "-j2", "--target", "realm-pgloop"], check=True,
                   stdout=subprocess.DEVNULL)


def main():
    build()
    pinned = PIN and (os.cpu_count() or 1) >= 2
    only = os.environ.get("PGBENCH_ONLY")
    configs = [c for c in CONFIGS if not only or only in c[0]]
    loop_pin = ["taskset", "-c", "0"] if pinned else []
    rounds = []
    load = [os.getloadavg()[0]]
    with PgCluster.running(cpus="1" if pinned else None) as pg:
        version = pg.psql("SHOW server_version")
        subprocess.run([BIN, "--url", pg.url, "--setup"], check=True, stderr=subprocess.DEVNULL)
        for rnd in range(ROUNDS):
            for op in OPS:
                for label, args in configs:
                    cmd = loop_pin + [BIN, "--url", pg.url, "--op", op, "--seconds", str(SECONDS),
                                      "--warmup", str(WARMUP), *args]
                    r = subprocess.run(cmd, capture_output=True, text=True,
                                       timeout=SECONDS + WARMUP + 60)
                    if r.returncode != 0:
                        raise RuntimeError(f"{' '.join(cmd)}: exit {r.returncode}: {r.stderr}")
                    rec = json.loads(r.stdout)
                    rec.update(label=label, round=rnd)
                    rounds.append(rec)
                    log(f"round {rnd + 1}/{ROUNDS} {op:6} {label:40} {rec['ops_per_s']:>7.0f}/s "
                        f"p50 {rec['p50_us']:.0f} us p99 {rec['p99_us']:.0f} us "
                        f"loop {rec['loop_cpu_us_per_op']:.1f} us/op")
                    if rec["errors"]:
                        raise RuntimeError(f"{label} {op}: {rec['errors']} errors")
    load.append(os.getloadavg()[0])

    medians = []
    for op in OPS:
        for label, _ in configs:
            recs = [r for r in rounds if r["op"] == op and r["label"] == label]
            med = sorted(recs, key=lambda r: r["ops_per_s"])[len(recs) // 2]  # the median round
            medians.append({
                "op": op, "label": label, "ops_per_s": med["ops_per_s"],
                "p50_us": med["p50_us"], "p99_us": med["p99_us"],
                "loop_cpu_us_per_op": statistics.median(r["loop_cpu_us_per_op"] for r in recs),
                "proc_cpu_us_per_op": statistics.median(r["proc_cpu_us_per_op"] for r in recs),
            })
    out = {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "machine": {"cpus": os.cpu_count(), "kernel": platform.release(),
                       "loadavg_1m_before_after": load},
           "postgresql": version, "fsync": "on", "pinned": pinned,
           "rounds": ROUNDS, "seconds": SECONDS, "warmup": WARMUP,
           "medians": medians, "all": rounds}
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "w") as f:
        json.dump(out, f, indent=1)
    log(f"wrote {RESULTS}")

    print("| operation | how | ops/s | p50 µs | p99 µs | loop CPU µs/op | process CPU µs/op |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for m in medians:
        print(f"| {m['op']} | {m['label']} | {m['ops_per_s']:,.0f} | {m['p50_us']:,.0f} | "
              f"{m['p99_us']:,.0f} | {m['loop_cpu_us_per_op']:.1f} | {m['proc_cpu_us_per_op']:.1f} |")


if __name__ == "__main__":
    main()
