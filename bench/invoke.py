#!/usr/bin/python3
"""bench/invoke.py - invocation latency, throughput and server cost (issue 7).

Starts one Realm server (fresh data directory, ephemeral loopback ports) and
the peer, serverless-offline (bench/peers/serverless, its port read from
/proc), deploys no-op functions with boto3 and measures, for each function
configuration x caller transport:

  cold   the first invocation of a newly created function (new environment),
         one call at a time from a Python asyncio client
  warm   one caller with a pause after each reply (warm environment)
  hf     one caller back to back
  tput   invocations/s and latency at 1, 10, 50, 100 concurrent callers

warm, hf and tput are driven by the C load generators: wrk (Invoke over
HTTP/1.1 keep-alive, bench/wrk_report.lua posting {}) and realm-wsload (the
client WebSocket `invoke`), --rounds rounds each; a row's figures are those
of its median round, every round kept under "rounds". The Node rows over
HTTP alternate Realm and the peer round by round (A, B, A, B, ...); the
peer's figures sit under "peer" in the same row.

Function configurations: Node (nodejs20.x) and Python (python3.11) with the
environment on the HTTP runtime API (LAMBDA_USE_WEBSOCKET=false) and on the
WebSocket runtime channel (the default), and `provided.al2023` with a C
bootstrap (bench/functions/bootstrap.c, HTTP runtime API only).

Server cost: VmRSS of the server with 0, 1000 and 10000 idle client
WebSockets (realm-wsload --idle), and per runtime the memory peak of a warm
environment (REPORT line, Max Memory Used) and its start time.

CPU per round: the load generator's (getrusage of the child), the server's
(/proc/PID/stat) and the rest of the machine's (/proc/stat); a round where
the load generator used 90 % of a core is flagged (client_bound).

Writes bench/results/invoke.json (or --out).
"""
import argparse
import asyncio
import io
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import zipfile

import boto3
import websockets

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
HZ = os.sysconf("SC_CLK_TCK")
CLIENT_BOUND_PCT = 90.0
WARMUP_RUNS = 10

CONFIGS = [
    # key, runtime, handler, channel
    ("node_http", "nodejs20.x", "index.handler", "http"),
    ("node_ws", "nodejs20.x", "index.handler", "ws"),
    ("python_http", "python3.11", "app.handler", "http"),
    ("python_ws", "python3.11", "app.handler", "ws"),
    ("provided_http", "provided.al2023", "bootstrap", "http"),
]
TRANSPORTS = ["http", "ws"]


def pct(xs, p):
    if not xs:
        return None
    s = sorted(xs)
    k = max(0, min(len(s) - 1, int(round(p / 100.0 * len(s) + 0.5)) - 1))
    return s[k]


def stats_ms(lat_ns):
    ms = [x / 1e6 for x in lat_ns]
    return {
        "n": len(ms),
        "p50_ms": pct(ms, 50),
        "p90_ms": pct(ms, 90),
        "p99_ms": pct(ms, 99),
        "max_ms": max(ms) if ms else None,
        "mean_ms": sum(ms) / len(ms) if ms else None,
    }


def log(*a):
    print("invoke:", *a, file=sys.stderr, flush=True)


# ---- zips -------------------------------------------------------------------------


def zip_bytes(files):
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w", zipfile.ZIP_DEFLATED) as z:
        for name, (data, mode) in files.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o100000 | mode) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, data)
    return b.getvalue()


def build_zips(tmp):
    exe = os.path.join(tmp, "bootstrap")
    subprocess.run(["gcc", "-O2", "-o", exe, os.path.join(HERE, "functions", "bootstrap.c")], check=True)
    fn = os.path.join(HERE, "functions")
    return {
        "nodejs20.x": zip_bytes({"index.js": (open(os.path.join(fn, "index.js"), "rb").read(), 0o644)}),
        "python3.11": zip_bytes({"app.py": (open(os.path.join(fn, "app.py"), "rb").read(), 0o644)}),
        "provided.al2023": zip_bytes({"bootstrap": (open(exe, "rb").read(), 0o755)}),
    }


# ---- server -----------------------------------------------------------------------


class Server:
    """A server process the benchmark started (self.proc)."""

    def rss_kb(self):
        for line in open(f"/proc/{self.proc.pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Realm(Server):
    def __init__(self, binary, data, extra):
        self.out = open(os.path.join(data, "realm.out"), "w+")
        self.err = open(os.path.join(data, "realm.err"), "w+")
        self.proc = subprocess.Popen(
            [binary, "serve", "--port", "0", "--control-port", "0", "--runtime-port", "0",
             "--metrics-port", "0", "--data-dir", os.path.join(data, "data"), "--log-level", "warn"] + extra,
            stdout=self.out, stderr=self.err)
        self.ports = {}
        for _ in range(100):
            self.out.seek(0)
            for line in self.out.read().splitlines():
                m = re.match(r"listening (\w+) \w+://[^:]+:(\d+)", line)
                if m:
                    self.ports[m.group(1)] = int(m.group(2))
            if len(self.ports) >= 4:
                break
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        if len(self.ports) < 4:
            self.err.seek(0)
            sys.exit("realm did not start: " + self.err.read()[-2000:])
        self.control = f"http://127.0.0.1:{self.ports['control']}"
        self.ws_url = f"ws://127.0.0.1:{self.ports['client']}/"
        self.lam = boto3.client("lambda", endpoint_url=self.control, region_name="us-east-1",
                                aws_access_key_id="x", aws_secret_access_key="x")

    def create(self, name, runtime, handler, channel, zips):
        env = {"LAMBDA_USE_WEBSOCKET": "false"} if channel == "http" else {}
        self.lam.create_function(FunctionName=name, Runtime=runtime, Handler=handler,
                                 Role="arn:aws:iam::000000000000:role/bench", Code={"ZipFile": zips[runtime]},
                                 MemorySize=256, Timeout=30, Environment={"Variables": env})
        for _ in range(200):
            c = self.lam.get_function_configuration(FunctionName=name)
            if c.get("State", "Active") == "Active" and c.get("LastUpdateStatus", "Successful") != "InProgress":
                return
            time.sleep(0.05)
        raise RuntimeError(f"{name} did not become Active")

    def delete(self, name):
        self.lam.delete_function(FunctionName=name)

    def logs(self, name):
        with urllib.request.urlopen(f"{self.control}/realm/v1/functions/{name}/logs?tail=1000000") as r:
            return r.read().decode("utf-8", "replace")


# ---- callers ----------------------------------------------------------------------


class HttpCaller:
    """One keep-alive HTTP/1.1 connection calling Invoke."""

    def __init__(self, port):
        self.port = port

    async def open(self):
        self.r, self.w = await asyncio.open_connection("127.0.0.1", self.port)
        return self

    async def call(self, name):
        body = b"{}"
        self.w.write(f"POST /2015-03-31/functions/{name}/invocations HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
        head = await self.r.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        h = head.lower()
        m = re.search(rb"\r\ncontent-length: *(\d+)", h)
        if m:
            data = await self.r.readexactly(int(m.group(1)))
        elif b"transfer-encoding: chunked" in h:
            data = b""
            while True:
                size = int((await self.r.readuntil(b"\r\n")).strip().split(b";")[0], 16)
                data += await self.r.readexactly(size + 2)
                if size == 0:
                    break
        else:
            data = b""
        if status != 200 or b"x-amz-function-error" in h:
            raise RuntimeError(f"invoke {name}: HTTP {status} {data[:200]!r}")
        return data

    async def close(self):
        self.w.close()


class WsCaller:
    """One client WebSocket calling `invoke`."""

    def __init__(self, url):
        self.url = url
        self.n = 0

    async def open(self):
        self.ws = await websockets.connect(self.url, max_size=None, ping_interval=None, compression=None)
        await self.ws.recv()  # welcome
        return self

    async def call(self, name):
        self.n += 1
        mid = str(self.n)
        await self.ws.send(json.dumps({"id": mid, "function": "invoke", "params": {"name": name, "payload": {}}}))
        while True:
            m = json.loads(await self.ws.recv())
            if m.get("id") != mid:
                continue
            st = m.get("status")
            if st == "complete":
                return m
            if st != "streaming":
                raise RuntimeError(f"invoke {name} over ws: {json.dumps(m)[:300]}")

    async def close(self):
        await self.ws.close()


async def caller(realm, transport):
    c = HttpCaller(realm.ports["control"]) if transport == "http" else WsCaller(realm.ws_url)
    return await c.open()


def tool_env():
    e = dict(os.environ)
    for k in ("WRK_METHOD", "WRK_BODY", "WRK_PAUSE_MS"):
        e.pop(k, None)
    return e


def proc_ticks(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(f[11]) + int(f[12])


def machine_ticks():
    with open("/proc/stat") as f:
        v = f.readline().split()
    return sum(int(x) for x in (v[1], v[2], v[3], v[6], v[7], v[8]))


class Target:
    """Where a load goes: Invoke over HTTP (wrk) or the client WebSocket `invoke` (realm-wsload)."""

    def __init__(self, kind, url, pid, function=None):
        self.kind, self.url, self.pid, self.function = kind, url, pid, function


def run_load(a, t, conns, seconds, pause_ms=0, warmup=False):
    """One run of the C load generator against t; latency in ms, CPU of client, server, machine."""
    env = tool_env()
    if t.kind == "http":
        env.update(WRK_METHOD="POST", WRK_BODY="{}", WRK_PAUSE_MS=str(pause_ms))
        cmd = ["wrk", "-t1", f"-c{conns}", f"-d{int(seconds)}s", "--timeout", "30s",
               "-s", os.path.join(HERE, "wrk_report.lua"), t.url]
    else:
        cmd = [a.wsload, "-c", str(conns), "-d", str(seconds), "-w", "0", "-f", "invoke",
               "-p", json.dumps({"name": t.function, "payload": {}})]
        cmd += (["-P", str(pause_ms)] if pause_ms else []) + [t.url]
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    s0, m0, w0 = proc_ticks(t.pid), machine_ticks(), time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=seconds + 300)
    wall = time.perf_counter() - w0
    s1, m1 = proc_ticks(t.pid), machine_ticks()
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    client = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    server, machine = (s1 - s0) / HZ, (m1 - m0) / HZ
    if t.kind == "http":
        line = next((x[9:] for x in p.stdout.splitlines() if x.startswith("WRK_JSON ")), None)
        if line is None:
            raise RuntimeError(f"wrk printed no result ({p.returncode}): {p.stdout[-500:]} {p.stderr[-500:]}")
        w = json.loads(line)
        n, per_s, errors = w["requests"], w["requests_per_s"], sum(w["errors"].values())
        first = [f"wrk errors {json.dumps(w['errors'])}"] if errors else []
    else:
        try:
            w = json.loads(p.stdout.strip().splitlines()[-1])
        except (IndexError, ValueError):
            raise RuntimeError(f"realm-wsload printed no result ({p.returncode}): {p.stderr[-500:]}") from None
        n, per_s, errors = w["calls"], w["calls_per_s"], w["errors"]
        first = [p.stderr.strip()[-300:]] if errors else []
    if n == 0 and not warmup:
        raise RuntimeError(f"{' '.join(cmd)}: no call completed: {p.stdout[-300:]} {p.stderr[-300:]}")
    r = {"n": n, "per_s": round(per_s, 1), "p50_ms": w["p50_us"] / 1e3, "p90_ms": w["p90_us"] / 1e3,
         "p99_ms": w["p99_us"] / 1e3, "max_ms": w["max_us"] / 1e3, "errors": errors,
         "wall_s": round(wall, 3), "client_cpu_s": round(client, 3),
         "client_cpu_pct": round(100.0 * client / wall, 1), "server_cpu_pct": round(100.0 * server / wall, 1),
         "other_cpu_cores": round(max(0.0, machine - server - client) / wall, 2)}
    r["client_bound"] = r["client_cpu_pct"] >= CLIENT_BOUND_PCT
    if first:
        r["first_errors"] = first
    return r


def alternate(a, sides, conns, seconds, rounds, pause_ms=0, warmup_s=0, rank="per_s"):
    """Rounds that alternate the sides (A, B, A, B, ...), after an unrecorded warm-up of each;
    each side's figures are those of its median round (ranked by `rank`), every round kept.
    A warm-up is repeated (up to WARMUP_RUNS times) until it completes at least as many calls
    as there are callers: the environments (or the peer's workers) have started by then."""
    for _, t in sides:
        for _ in range(WARMUP_RUNS if warmup_s > 0 else 0):
            if run_load(a, t, conns, warmup_s, pause_ms, warmup=True)["n"] >= conns:
                break
    runs = {label: [] for label, _ in sides}
    for _ in range(rounds):
        for label, t in sides:
            runs[label].append(run_load(a, t, conns, seconds, pause_ms))
    out = {}
    for label, rs in runs.items():
        order = sorted(range(len(rs)), key=lambda i: rs[i][rank])
        med = dict(rs[order[len(rs) // 2]])
        med.update(connections=conns, median_round=order[len(rs) // 2] + 1, ranked_by=rank,
                   errors=sum(x["errors"] for x in rs), rounds=rs)
        med["client_bound"] = any(x["client_bound"] for x in rs)
        med["client_cpu_pct_max"] = max(x["client_cpu_pct"] for x in rs)
        out[label] = med
    return out


def env_cost(realm, name):
    """Max Memory Used and the Init Duration (if logged) of an environment, from REPORT lines."""
    text = realm.logs(name)
    mem = [int(x) for x in re.findall(r"Max Memory Used: (\d+) MB", text)]
    init = [float(x) for x in re.findall(r"Init Duration: ([\d.]+) ms", text)]
    return {"max_memory_used_mb": max(mem) if mem else None, "report_lines": len(mem),
            "init_duration_ms": max(init) if init else None}


def descendants(pid):
    kids = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                st = open(f"/proc/{d}/stat").read()
            except OSError:
                continue
            ppid = int(st.rsplit(")", 1)[1].split()[1])
            kids.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for k in kids.get(p, []):
            out.append(k)
            todo.append(k)
    return out


def env_processes(server_pid):
    """VmRSS of every process below the server (one warm environment: bwrap and the runtime)."""
    procs = []
    for p in descendants(server_pid):
        try:
            comm = open(f"/proc/{p}/comm").read().strip()
            rss = next((int(l.split()[1]) for l in open(f"/proc/{p}/status") if l.startswith("VmRSS:")), 0)
        except OSError:
            continue
        procs.append({"comm": comm, "rss_kb": rss})
    return {"processes": procs, "rss_kb_total": sum(p["rss_kb"] for p in procs),
            "rss_kb_runtime": sum(p["rss_kb"] for p in procs if p["comm"] != "bwrap")}


def idle_memory(realm_bin, wsload, tmp, counts):
    """VmRSS of a fresh server with N idle client WebSockets (realm-wsload --idle)."""
    out = {}
    r = Realm(realm_bin, tempfile.mkdtemp(dir=tmp), [])
    try:
        time.sleep(1)
        out["0"] = {"rss_kb": r.rss_kb()}
        for n in counts:
            p = subprocess.Popen([wsload, "--idle", "-c", str(n), r.ws_url], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
            t0 = time.time()
            ok = False
            while time.time() - t0 < 90:
                line = p.stdout.readline()
                if not line:
                    break
                if line.strip() == "ready":
                    ok = True
                    break
            if not ok:
                p.kill()
                out[str(n)] = {"error": p.stderr.read()[-500:]}
                continue
            open_s = time.time() - t0
            time.sleep(1)
            rss = r.rss_kb()
            p.terminate()
            p.communicate(timeout=30)
            out[str(n)] = {"rss_kb": rss, "open_s": round(open_s, 2),
                           "per_connection_bytes": round((rss - out["0"]["rss_kb"]) * 1024 / n)}
            log(f"idle {n}: {rss} kB")
            time.sleep(1)
    finally:
        r.stop()
    return out


class Peer(Server):
    """The same Node function under serverless-offline (bench/peers/serverless/): its local
    Lambda endpoint serves Invoke at /2015-03-31/functions/NAME/invocations."""

    DIR = os.path.join(HERE, "peers", "serverless")
    PREFIX = "realm-bench-peer-bench-"

    MODULES = os.path.join(DIR, "node_modules")

    @classmethod
    def versions(cls):
        if not os.path.isdir(os.path.join(cls.MODULES, "serverless-offline")):
            sys.exit("bench/peers/serverless/node_modules is missing (scripts/setup.sh --bench installs it)")
        return {m: json.load(open(os.path.join(cls.MODULES, m, "package.json")))["version"]
                for m in ("serverless", "serverless-offline")}

    def __init__(self, tmp, cold):
        mods = self.MODULES
        self.versions()
        env = dict(os.environ, REALM_BENCH_COLD=str(cold), SLS_TELEMETRY_DISABLED="1",
                   SLS_NOTIFICATIONS_MODE="off", SLS_DEPRECATION_DISABLE="*")
        self.out = open(os.path.join(tmp, "peer.out"), "w+")
        self.proc = subprocess.Popen(
            ["node", os.path.join(mods, "serverless", "bin", "serverless.js"), "offline", "start",
             "--lambdaPort", "0", "--host", "127.0.0.1"],
            cwd=self.DIR, env=env, stdout=self.out, stderr=subprocess.STDOUT)
        self.port = None
        for _ in range(300):
            self.out.seek(0)
            if "listening on" in self.out.read():
                self.port = self.listening_port()
            if self.port or self.proc.poll() is not None:
                break
            time.sleep(0.1)
        if not self.port:
            self.out.seek(0)
            self.stop()
            sys.exit("serverless-offline did not start: " + self.out.read()[-2000:])
        self.rss_kb_start = self.rss_kb()

    def listening_port(self):
        """serverless-offline prints the port it was given (0): read the one it got from /proc."""
        inodes = set()
        for fd in os.listdir(f"/proc/{self.proc.pid}/fd"):
            try:
                link = os.readlink(f"/proc/{self.proc.pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            for line in open(table).read().splitlines()[1:]:
                f = line.split()
                if f[3] == "0A" and f[9] in inodes:
                    return int(f[1].rsplit(":", 1)[1], 16)
        return None

    def url(self, fn):
        return f"http://127.0.0.1:{self.port}/2015-03-31/functions/{self.PREFIX}{fn}/invocations"



async def cold_cell(realm, transport, cfg, zips, n, seq, peer=None):
    """n first invocations of new functions; with a peer, each followed by the first
    invocation of one of its cold functions (serverless-offline loads a handler then)."""
    key, runtime, handler, channel = cfg
    c = await caller(realm, transport)
    pc = await HttpCaller(peer.port).open() if peer else None
    lat, plat, names = [], [], []
    for i in range(n):
        name = f"bench-cold-{key}-{transport}-{seq}-{i}".replace("_", "-")
        realm.create(name, runtime, handler, channel, zips)
        names.append(name)
        t0 = time.perf_counter_ns()
        await c.call(name)
        lat.append(time.perf_counter_ns() - t0)
        if pc:
            t0 = time.perf_counter_ns()
            await pc.call(f"{Peer.PREFIX}cold{i}")
            plat.append(time.perf_counter_ns() - t0)
    await c.close()
    if pc:
        await pc.close()
    for name in names:
        realm.delete(name)
    return stats_ms(lat), (stats_ms(plat) if pc else None)


def measure(a, sides):
    """warm, hf and throughput of one row (and of the peer, alternating, when sides has two)."""
    res = {label: {"tput": {}} for label, _ in sides}
    for sc, conns, secs, pause, warmup, rank in (("warm", 1, a.warm_s, a.warm_pause_ms, 0, "p50_ms"),
                                                 ("hf", 1, a.hf_s, 0, 0, "per_s")):
        for label, x in alternate(a, sides, conns, secs, a.rounds, pause, warmup, rank).items():
            x["pause_ms"] = pause
            res[label][sc] = x
    for conns in a.conns:
        for label, x in alternate(a, sides, conns, a.tput_s, a.rounds, 0, a.tput_warmup_s).items():
            res[label]["tput"][str(conns)] = x
    return res


def measure_row(a, realm, name, transport, peer):
    """warm, hf and tput of Realm's row, alternating with the peer when there is one."""
    if transport == "http":
        t = Target("http", f"{realm.control}/2015-03-31/functions/{name}/invocations", realm.proc.pid)
    else:
        t = Target("ws", realm.ws_url, realm.proc.pid, name)
    sides = [("realm", t)]
    if peer:
        sides.append(("peer", Target("http", peer.url("noop"), peer.proc.pid)))
    m = measure(a, sides)
    cell = m["realm"]
    if peer:
        cell["peer"] = m["peer"]
    return cell


async def run_matrix(realm, zips, a, tmp):
    res = {}
    seq = 0
    for cfg in CONFIGS:
        key, runtime, handler, channel = cfg
        name = f"bench-{key}".replace("_", "-")
        realm.create(name, runtime, handler, channel, zips)
        res[key] = {"runtime": runtime, "runtime_channel": channel, "function": name}
        # start time and memory of one environment: first invocation of a new function.
        c = await caller(realm, "http")
        t0 = time.perf_counter()
        await c.call(name)
        first_ms = (time.perf_counter() - t0) * 1000
        await c.close()
        await asyncio.sleep(0.2)
        procs = env_processes(realm.proc.pid)
        for transport in TRANSPORTS:
            seq += 1
            # A fresh peer for each row it is measured beside: never slowed by its own history
            # (a long-running serverless-offline keeps every worker thread it ever started).
            with_peer = None
            if transport == "http" and runtime.startswith("nodejs") and not a.no_peer:
                with_peer = Peer(tmp, a.cold)
            try:
                cold, pcold = await cold_cell(realm, transport, cfg, zips, a.cold, seq, with_peer)
                cell = measure_row(a, realm, name, transport, with_peer)
                if with_peer:
                    cell["peer"]["rss_kb_start"] = with_peer.rss_kb_start
                    cell["peer"]["rss_kb_end"] = with_peer.rss_kb()
            finally:
                if with_peer:
                    with_peer.stop()
            cell["cold"] = cold
            if with_peer:
                cell["peer"]["cold"] = pcold
            res[key][transport] = cell
            tp = " ".join(f"c{k}={v['per_s']}/s" for k, v in cell["tput"].items())
            log(f"{key} via {transport}: cold p50 {cell['cold']['p50_ms']:.1f} ms, warm p50 "
                f"{cell['warm']['p50_ms']:.2f} ms, hf {cell['hf']['per_s']}/s; {tp}")
            if with_peer:
                pp = cell["peer"]
                tp = " ".join(f"c{k}={v['per_s']}/s" for k, v in pp["tput"].items())
                log(f"  peer: cold p50 {pp['cold']['p50_ms']:.1f} ms, warm p50 {pp['warm']['p50_ms']:.2f} ms, "
                    f"hf {pp['hf']['per_s']}/s; {tp}")
        cost = env_cost(realm, name)
        cost["first_invoke_ms"] = round(first_ms, 2)
        cost.update(procs)
        res[key]["environment"] = cost
        realm.delete(name)
        await asyncio.sleep(0.5)
    return res


def ratio(a, b):
    return round(a / b, 3) if a is not None and b else None


# The seed's published tables (../shared/seeds/lambda-at-home-websocket-runtime.md,
# "Performance Benefits"), quoted as they are: milliseconds and requests/s of an
# unnamed setup, HTTP runtime API against the WebSocket runtime channel. Written
# into the results so that BENCHMARKS.md takes them from there like every figure.
SEED_PUBLISHED = {
    "source": "lambda-at-home-websocket-runtime.md, Performance Benefits",
    "latency_ms": {"cold": {"label": "Cold Start", "http": 150, "ws": 120, "improvement": "20%"},
                   "warm": {"label": "Warm Start", "http": 50, "ws": 35, "improvement": "30%"},
                   "hf": {"label": "High Frequency", "http": 30, "ws": 20, "improvement": "33%"}},
    "throughput_per_s": {"10": {"http": 100, "ws": 115, "improvement": "15%"},
                         "50": {"http": 400, "ws": 480, "improvement": "20%"},
                         "100": {"http": 700, "ws": 900, "improvement": "29%"}},
}
SEED_SCENARIOS = tuple(SEED_PUBLISHED["latency_ms"])
SEED_CONCURRENCY = tuple(int(n) for n in SEED_PUBLISHED["throughput_per_s"])


def comparisons(fns, conns):
    """The derived figures BENCHMARKS.md shows, computed here so that each is a key of the file:
    Realm over the peer measured in the same rounds, and the seed's HTTP-vs-WebSocket rows."""
    out = {}
    peer = {}
    for k in ("node_ws", "node_http"):
        row = fns.get(k, {}).get("http", {})
        if "peer" not in row:
            continue
        me, pe = row, row["peer"]
        c = {f"{sc}_{f}": ratio(me[sc][f], pe[sc][f])
             for sc, f in (("cold", "p50_ms"), ("warm", "p50_ms"), ("warm", "p99_ms"), ("hf", "per_s"),
                           ("hf", "p50_ms"))}
        for n in conns:
            c[f"tput_{n}_per_s"] = ratio(me["tput"][str(n)]["per_s"], pe["tput"][str(n)]["per_s"])
            c[f"tput_{n}_p99_ms"] = ratio(me["tput"][str(n)]["p99_ms"], pe["tput"][str(n)]["p99_ms"])
        peer[k] = c
    if peer:
        out["realm_over_peer"] = peer
    if "node_http" in fns and "node_ws" in fns:
        h, w = fns["node_http"]["http"], fns["node_ws"]["http"]
        seed = {"latency": {}, "throughput": {}}
        for sc in SEED_SCENARIOS:
            seed["latency"][sc] = {"http_p50_ms": h[sc]["p50_ms"], "ws_p50_ms": w[sc]["p50_ms"],
                                   "improvement_pct": round(100 * (h[sc]["p50_ms"] - w[sc]["p50_ms"])
                                                            / h[sc]["p50_ms"])}
        for n in SEED_CONCURRENCY:
            if n in conns:
                a, b = h["tput"][str(n)]["per_s"], w["tput"][str(n)]["per_s"]
                seed["throughput"][str(n)] = {"http_per_s": a, "ws_per_s": b,
                                              "improvement_pct": round(100 * (b - a) / a)}
        out["seed_rows"] = seed
    out["seed_published"] = SEED_PUBLISHED
    return out


def wrk_version():
    p = subprocess.run(["wrk", "-v"], capture_output=True, text=True)
    return (p.stdout + p.stderr).split()[1] if (p.stdout + p.stderr).split()[1:] else ""


def node_version():
    return subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--realm", default=os.path.join(ROOT, "build/bench/realm"))
    ap.add_argument("--wsload", default=os.path.join(ROOT, "build/bench/bench/realm-wsload"))
    ap.add_argument("--out", default=os.path.join(HERE, "results", "invoke.json"))
    ap.add_argument("--cold", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--warm-s", type=int, default=1)
    ap.add_argument("--warm-pause-ms", type=int, default=5)
    ap.add_argument("--hf-s", type=int, default=1)
    ap.add_argument("--tput-s", type=int, default=2)
    ap.add_argument("--tput-warmup-s", type=int, default=1)
    ap.add_argument("--no-peer", action="store_true", help="skip serverless-offline")
    ap.add_argument("--conns", default="1,10,50,100")
    ap.add_argument("--idle", default="1000,10000")
    ap.add_argument("--only", default="", help="comma-separated config keys (default: all)")
    a = ap.parse_args()
    a.conns = [int(x) for x in a.conns.split(",") if x]
    idle = [int(x) for x in a.idle.split(",") if x]
    global CONFIGS
    if a.only:
        CONFIGS = [c for c in CONFIGS if c[0] in a.only.split(",")]

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(idle + [0]) + 1024
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))

    tmp = tempfile.mkdtemp(prefix="realm-invoke-")
    out = {
        "command": " ".join([os.path.relpath(sys.argv[0], ROOT)] + sys.argv[1:]),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cores": os.cpu_count(),
        "cpu_model": next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), ""),
        "loadavg_at_start": open("/proc/loadavg").read().split()[:3],
        "config": {"cold_samples": a.cold, "rounds": a.rounds, "warm_seconds": a.warm_s,
                   "warm_pause_ms": a.warm_pause_ms, "hf_seconds": a.hf_s, "tput_seconds": a.tput_s,
                   "tput_warmup_s": a.tput_warmup_s, "concurrency": a.conns,
                   "client_bound_pct": CLIENT_BOUND_PCT, "realm": os.path.relpath(a.realm, ROOT),
                   "wsload": os.path.relpath(a.wsload, ROOT), "wrk": wrk_version(),
                   "python": sys.version.split()[0], "websockets": websockets.__version__,
                   "boto3": boto3.__version__, "node": node_version()},
    }
    try:
        if idle and os.path.exists(a.wsload):
            out["idle_memory"] = idle_memory(a.realm, a.wsload, tmp, idle)
        zips = build_zips(tmp)
        realm = Realm(a.realm, tempfile.mkdtemp(dir=tmp), [])
        try:
            out["server_rss_kb_start"] = realm.rss_kb()
            if not a.no_peer:
                out["peer"] = {"name": "serverless-offline", "versions": Peer.versions()}
            try:
                out["functions"] = asyncio.run(run_matrix(realm, zips, a, tmp))
            except Exception:
                realm.err.seek(0)
                log(f"failed; realm exit status {realm.proc.poll()}, its stderr ends:\n"
                    + realm.err.read()[-3000:])
                raise
            out["comparisons"] = comparisons(out["functions"], a.conns)
            out["server_rss_kb_end"] = realm.rss_kb()
        finally:
            realm.stop()
            realm.err.seek(0)
            # the server's own account of anything that went wrong (--log-level warn)
            out["server_stderr_tail"] = realm.err.read().splitlines()[-30:]
        out["loadavg_at_end"] = open("/proc/loadavg").read().split()[:3]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(out, f, indent=1)
    log("wrote", a.out)


if __name__ == "__main__":
    main()
