#!/usr/bin/python3
"""bench/invoke.py - invocation latency, throughput and server cost (issue 7).

Starts one Realm server (fresh data directory, ephemeral loopback ports),
deploys no-op functions with boto3 and measures, for each function
configuration x caller transport:

  cold   the first invocation of a newly created function (new environment)
  warm   sequential invocations with a pause between them (warm environment)
  hf     back-to-back invocations from one caller for a fixed time
  tput   invocations/s and latency at 1, 10, 50, 100 concurrent callers

Function configurations: Node (nodejs20.x) and Python (python3.12) with the
environment on the HTTP runtime API (LAMBDA_USE_WEBSOCKET=false) and on the
WebSocket runtime channel (the default), and `provided.al2023` with a C
bootstrap (bench/functions/bootstrap.c, HTTP runtime API only).
Caller transports: Invoke over HTTP/1.1 keep-alive (raw asyncio sockets) and
the client WebSocket `invoke` (python3-websockets), one connection per caller.

Server cost: VmRSS of the server with 0, 1000 and 10000 idle client
WebSockets (realm-wsload --idle), and per runtime the memory peak of a warm
environment (REPORT line, Max Memory Used) and its start time.

The client's CPU (/proc/self/stat) is recorded for every timed cell; a cell
where it reached 90 % of a core is flagged (client_bound).

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

CONFIGS = [
    # key, runtime, handler, channel
    ("node_http", "nodejs20.x", "index.handler", "http"),
    ("node_ws", "nodejs20.x", "index.handler", "ws"),
    ("python_http", "python3.12", "app.handler", "http"),
    ("python_ws", "python3.12", "app.handler", "ws"),
    ("provided_http", "provided.al2023", "bootstrap", "http"),
]
TRANSPORTS = ["http", "ws"]


def cpu_s():
    f = open("/proc/self/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / HZ


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
        "python3.12": zip_bytes({"app.py": (open(os.path.join(fn, "app.py"), "rb").read(), 0o644)}),
        "provided.al2023": zip_bytes({"bootstrap": (open(exe, "rb").read(), 0o755)}),
    }


# ---- server -----------------------------------------------------------------------


class Realm:
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


def cell_cpu(wall, c0, c1):
    pct_ = 100.0 * (c1 - c0) / wall if wall > 0 else 0.0
    return {"wall_s": round(wall, 4), "client_cpu_s": round(c1 - c0, 4), "client_cpu_pct": round(pct_, 1),
            "client_bound": pct_ >= CLIENT_BOUND_PCT}


async def reopen(c):
    """A new connection for a caller whose call failed (retried: the server may be busy)."""
    try:
        await c.close()
    except Exception:  # noqa: BLE001 - the old connection is gone either way
        pass
    for i in range(50):
        try:
            return await c.open()
        except OSError as e:
            if i == 49:
                raise RuntimeError(f"cannot reconnect: {e!r}") from e
            await asyncio.sleep(0.1)


async def timed(c, name, lat, errs=None):
    t0 = time.perf_counter_ns()
    try:
        await c.call(name)
    except Exception as e:  # noqa: BLE001 - counted and reported
        if errs is None:
            raise
        errs.append(repr(e)[:300])
        log(f"{name}: {e!r:.300}")
        await reopen(c)
        return
    lat.append(time.perf_counter_ns() - t0)


async def warm_cell(realm, transport, name, n, pause_s):
    c = await caller(realm, transport)
    await c.call(name)  # make sure an environment is warm
    lat, errs = [], []
    w0, c0 = time.perf_counter(), cpu_s()
    for _ in range(n):
        await timed(c, name, lat, errs)
        await asyncio.sleep(pause_s)
    r = stats_ms(lat)
    r.update(cell_cpu(time.perf_counter() - w0, c0, cpu_s()))
    r["errors"] = len(errs)
    if errs:
        r["first_errors"] = errs[:3]
    r["pause_ms"] = pause_s * 1000
    await c.close()
    return r


async def load_cell(realm, transport, name, conns, seconds, warmup_s):
    cs = [await caller(realm, transport) for _ in range(conns)]
    lat = []
    errors = 0
    first_errors = []

    async def loop(c, until, record):
        nonlocal errors
        while time.perf_counter() < until:
            t0 = time.perf_counter_ns()
            try:
                await c.call(name)
            except Exception as e:  # noqa: BLE001 - counted and reported
                errors += 1
                if len(first_errors) < 3:
                    first_errors.append(repr(e)[:300])
                    log(f"{name} c{conns}: {e!r:.300}")
                await reopen(c)
                continue
            if record:
                lat.append(time.perf_counter_ns() - t0)

    if warmup_s > 0:
        # every caller completes one call first (environments start), then a timed warm-up.
        await asyncio.gather(*(c.call(name) for c in cs))
        until = time.perf_counter() + warmup_s
        await asyncio.gather(*(loop(c, until, False) for c in cs))
    errors = 0
    w0, c0 = time.perf_counter(), cpu_s()
    until = w0 + seconds
    await asyncio.gather(*(loop(c, until, True) for c in cs))
    wall = time.perf_counter() - w0
    r = stats_ms(lat)
    r.update(cell_cpu(wall, c0, cpu_s()))
    r["connections"] = conns
    r["per_s"] = round(len(lat) / wall, 1)
    r["errors"] = errors
    if first_errors:
        r["first_errors"] = first_errors
    for c in cs:
        await c.close()
    return r


async def cold_cell(realm, transport, cfg, zips, n, seq):
    key, runtime, handler, channel = cfg
    c = await caller(realm, transport)
    lat, errs = [], []
    names = []
    for i in range(n):
        name = f"bench-cold-{key}-{transport}-{seq}-{i}".replace("_", "-")
        realm.create(name, runtime, handler, channel, zips)
        names.append(name)
        await timed(c, name, lat, errs)
    await c.close()
    for name in names:
        realm.delete(name)
    r = stats_ms(lat)
    r["errors"] = len(errs)
    if errs:
        r["first_errors"] = errs[:3]
    return r


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


async def run_matrix(realm, zips, a):
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
            cell = {}
            cell["cold"] = await cold_cell(realm, transport, cfg, zips, a.cold, seq)
            cell["warm"] = await warm_cell(realm, transport, name, a.warm, a.warm_pause_ms / 1000)
            cell["hf"] = await load_cell(realm, transport, name, 1, a.hf_s, 0)
            cell["tput"] = {}
            for conns in a.conns:
                cell["tput"][str(conns)] = await load_cell(realm, transport, name, conns, a.tput_s, a.tput_warmup_s)
            res[key][transport] = cell
            tp = " ".join(f"c{k}={v['per_s']}/s" for k, v in cell["tput"].items())
            log(f"{key} via {transport}: cold p50 {cell['cold']['p50_ms']:.1f} ms, warm p50 "
                f"{cell['warm']['p50_ms']:.2f} ms, hf p50 {cell['hf']['p50_ms']:.2f} ms; {tp}")
        cost = env_cost(realm, name)
        cost["first_invoke_ms"] = round(first_ms, 2)
        cost.update(procs)
        res[key]["environment"] = cost
        realm.delete(name)
        await asyncio.sleep(0.5)
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--realm", default=os.path.join(ROOT, "build/bench/realm"))
    ap.add_argument("--wsload", default=os.path.join(ROOT, "build/bench/bench/realm-wsload"))
    ap.add_argument("--out", default=os.path.join(HERE, "results", "invoke.json"))
    ap.add_argument("--cold", type=int, default=5)
    ap.add_argument("--warm", type=int, default=200)
    ap.add_argument("--warm-pause-ms", type=float, default=5)
    ap.add_argument("--hf-s", type=float, default=2)
    ap.add_argument("--tput-s", type=float, default=3)
    ap.add_argument("--tput-warmup-s", type=float, default=1)
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
        "config": {"cold_samples": a.cold, "warm_samples": a.warm, "warm_pause_ms": a.warm_pause_ms,
                   "hf_seconds": a.hf_s, "tput_seconds": a.tput_s, "tput_warmup_s": a.tput_warmup_s,
                   "concurrency": a.conns, "client_bound_pct": CLIENT_BOUND_PCT,
                   "realm": os.path.relpath(a.realm, ROOT), "python": sys.version.split()[0],
                   "websockets": websockets.__version__, "boto3": boto3.__version__},
    }
    try:
        if idle and os.path.exists(a.wsload):
            out["idle_memory"] = idle_memory(a.realm, a.wsload, tmp, idle)
        zips = build_zips(tmp)
        realm = Realm(a.realm, tempfile.mkdtemp(dir=tmp), [])
        try:
            out["server_rss_kb_start"] = realm.rss_kb()
            try:
                out["functions"] = asyncio.run(run_matrix(realm, zips, a))
            except Exception:
                realm.err.seek(0)
                log(f"failed; realm exit status {realm.proc.poll()}, its stderr ends:\n"
                    + realm.err.read()[-3000:])
                raise
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
