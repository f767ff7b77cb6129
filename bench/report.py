#!/usr/bin/python3
"""bench/report.py - bench/results/core.json and BENCHMARKS.md for `make bench`.

    report.py collect RAW_DIR RESULTS_JSON   raw records of bench/run.sh -> results
    report.py render RESULTS_JSON OUTPUT_MD  results -> BENCHMARKS.md

collect reads what bench/run.sh left in RAW_DIR (machine.json, config.json,
memory-{realm,node}.json, runs.jsonl: one line per recorded round) and writes
one indented JSON file: every round as measured, and per scenario and server
the median round, plus the ratios Realm/Node of those medians. render prints
only values of that file (rounded for reading) and names the key of each.
Standard library only.
"""
import json
import os
import statistics
import sys

SIDES = ("realm", "node")
SCENARIOS = (("http", 1), ("http", 100), ("ws", 1), ("ws", 100))
BOTTLENECK_PCT = 90.0  # a one-thread load generator busier than this may have set the pace
BUSY_CORES = 0.25  # other processes using more than this many cores make figures noisy


# ---------------------------------------------------------------------------
# collect
# ---------------------------------------------------------------------------


def ratio(a, b):
    return None if not b else round(a / b, 4)


def load(raw, name):
    with open(os.path.join(raw, name)) as f:
        return json.load(f)


def normalize(r):
    """One round of runs.jsonl as the figures the report uses."""
    tool = r.get("wrk") or r.get("wsload")
    is_http = r["section"] == "http"
    duration = tool["duration_s"]
    other = r["machine_cpu_s"] - r["server_cpu_s"] - r["client_cpu_s"]
    return {
        "round": r["round"],
        "per_s": tool["requests_per_s" if is_http else "calls_per_s"],
        "count": tool["requests" if is_http else "calls"],
        "p50_us": tool["p50_us"],
        "p99_us": tool["p99_us"],
        "wall_s": r["wall_s"],
        "server_cpu_s": r["server_cpu_s"],
        "server_cpu_pct": round(100 * r["server_cpu_s"] / r["wall_s"], 1),
        "client_cpu_s": r["client_cpu_s"],
        "client_cpu_pct": round(100 * r["client_cpu_s"] / duration, 1) if duration else None,
        "machine_cpu_s": r["machine_cpu_s"],
        "other_cpu_s": round(other, 3),
        # Ticks are 10 ms: a quiet machine can come out slightly below zero.
        "other_cpu_cores": max(0.0, round(other / r["wall_s"], 2)),
        "raw": tool,
    }


def summarize(rounds):
    med = lambda k: statistics.median(x[k] for x in rounds)  # noqa: E731
    return {
        "per_s": round(med("per_s"), 2),
        "per_s_min": min(x["per_s"] for x in rounds),
        "per_s_max": max(x["per_s"] for x in rounds),
        "p50_us": med("p50_us"),
        "p99_us": med("p99_us"),
        "server_cpu_pct": med("server_cpu_pct"),
        "client_cpu_pct": med("client_cpu_pct"),
        "client_cpu_pct_max": max(x["client_cpu_pct"] for x in rounds),
        "other_cpu_cores": med("other_cpu_cores"),
        "rounds": rounds,
    }


def collect(raw, dst):
    config = load(raw, "config.json")
    res = {"command": config["command"], "machine": load(raw, "machine.json"), "config": config}

    mem = {}
    for side in SIDES:
        m = load(raw, f"memory-{side}.json")
        m["bytes_per_connection"] = round((m["rss_n_kb"] - m["rss_0_kb"]) * 1024 / m["connections"])
        mem[side] = m
    mem["ratio_realm_node"] = {
        k: ratio(mem["realm"][k], mem["node"][k]) for k in ("rss_0_kb", "rss_n_kb", "bytes_per_connection")
    }
    res["memory"] = mem

    with open(os.path.join(raw, "runs.jsonl")) as f:
        runs = [json.loads(line) for line in f if line.strip()]
    for section, conns in SCENARIOS:
        scen = {}
        for side in SIDES:
            rounds = [
                normalize(r)
                for r in runs
                if r["section"] == section and r["connections"] == conns and r["server"] == side
            ]
            if not rounds:
                sys.exit(f"report.py: no rounds for {section} c{conns} {side}")
            scen[side] = summarize(rounds)
        scen["ratio_realm_node"] = {
            k: ratio(scen["realm"][k], scen["node"][k]) for k in ("per_s", "p50_us", "p99_us")
        }
        res.setdefault(section, {})[f"c{conns}"] = scen

    tmp = dst + ".tmp"
    with open(tmp, "w") as f:
        json.dump(res, f, indent=2)
        f.write("\n")
    os.replace(tmp, dst)


# ---------------------------------------------------------------------------
# render
# ---------------------------------------------------------------------------


def fmt(v, digits=0):
    if v is None:
        return "n/a"
    if digits == 0:
        return str(int(round(v)))
    return f"{v:.{digits}f}"


def table(header, rows):
    line = lambda cells: "| " + " | ".join(cells) + " |"  # noqa: E731
    return [line(header), line(["---"] * len(header))] + [line(r) for r in rows]


def pair_rows(res, section, label_unit):
    rows = []
    for conns in (1, 100):
        base = f"{section}.c{conns}"
        p = res[section][f"c{conns}"]
        r, n, q = p["realm"], p["node"], p["ratio_realm_node"]
        conn_label = "1 connection" if conns == 1 else f"{conns} connections"
        rows.append(
            [
                f"{conn_label}, {label_unit} (median; min–max)",
                f'{fmt(r["per_s"])} ({fmt(r["per_s_min"])}–{fmt(r["per_s_max"])})',
                f'{fmt(n["per_s"])} ({fmt(n["per_s_min"])}–{fmt(n["per_s_max"])})',
                fmt(q["per_s"], 2),
                f"`{base}.{{realm,node}}.per_s` (`_min`, `_max`), `{base}.ratio_realm_node.per_s`",
            ]
        )
        for name, key in (("p50 latency, µs", "p50_us"), ("p99 latency, µs", "p99_us")):
            rows.append(
                [
                    f"{conn_label}, {name}",
                    fmt(r[key]),
                    fmt(n[key]),
                    fmt(q[key], 2),
                    f"`{base}.{{realm,node}}.{key}`, `{base}.ratio_realm_node.{key}`",
                ]
            )
    return rows


def render(src, dst):
    with open(src) as f:
        res = json.load(f)
    m, cfg, mem = res["machine"], res["config"], res["memory"]
    n_idle = cfg["idle_connections"]
    out = [
        "# Benchmarks",
        "",
        "Realm against peers doing the same work, measured side by side in one run",
        "on one machine: Node servers for HTTP and WebSocket serving, `serverless-offline`",
        "for invocations, node-llama-cpp for `generate`; and the Lambda@Home seed's",
        "published tables beside Realm's numbers; and Realm on SQLite beside Realm on",
        "PostgreSQL. Speed and memory are given as ratios against the same-run peer;",
        "none of them is a target or a test.",
        "",
        "Reproduce with:",
        "",
        "```",
        res["command"],
        "```",
        "",
        "(`make bench` runs `scripts/setup.sh --bench`, then `bench/run.sh`, which runs",
        "`bench/invoke.py`, `bench/plots.py`, `bench/llm.py`, `bench/store.py` and `bench/cluster.py`.)",
        "Generated by `bench/report.py` from `bench/results/core.json`, `invoke.json`, `llm.json`,",
        "`store.json` and `cluster.json`;",
        "do not edit by hand. Every figure is a value of one of those files, rounded;",
        "the last column of each table gives its key (of `core.json` unless it names",
        "another file).",
        "",
        "## Machine",
        "",
    ]
    out += table(
        ["", "", "key"],
        [
            ["Date (UTC)", m["date"], "`machine.date`"],
            ["CPU", m["cpu_model"], "`machine.cpu_model`"],
            ["Cores", str(m["cores"]), "`machine.cores`"],
            ["Memory", f'{m["memory_kb"]} kB', "`machine.memory_kb`"],
            ["Kernel", m["kernel"], "`machine.kernel`"],
            ["OS", m["os"], "`machine.os`"],
            ["Load average at start / end", f'{m["loadavg_at_start"]} / {cfg["loadavg_at_end"]}',
             "`machine.loadavg_at_start`, `config.loadavg_at_end`"],
            ["Realm", f'commit {m["realm_commit"]}, {m["realm_tracked_files_modified"]} tracked files'
             f' modified; {m["realm_build"]}',
             "`machine.realm_commit`, `machine.realm_tracked_files_modified`, `machine.realm_build`"],
            ["Node", f'{m["node_version"]}, ws {m["ws_version"]}', "`machine.node_version`, `machine.ws_version`"],
            ["wrk", m["wrk_version"], "`machine.wrk_version`"],
        ],
    )
    out += [
        "",
        "## Method",
        "",
        f"Each scenario starts with an unrecorded {fmt(cfg['warmup_s'], 1)} s warm-up per server",
        f"(`config.warmup_s`), then {cfg['rounds']} rounds (`config.rounds`) of",
        f"{fmt(cfg['seconds_per_round'], 1)} s (`config.seconds_per_round`) that alternate Realm and",
        "Node, so that other work on the machine weighs on both alike. Tables give the",
        "median round; ratios are of those medians. Servers, peers and load generators",
        "share the machine's cores; all traffic is on loopback. Rates: higher is",
        "better, so a ratio above 1 favours Realm. Latency and memory: lower is",
        "better, so a ratio below 1 favours Realm.",
        "",
        "## HTTP: `GET /health`",
        "",
        "`wrk -t1 -c1` and `-c100`, keep-alive, against the liveness route of Realm's",
        "metrics listener, which builds a small JSON object per request",
        f"({cfg['realm_metrics_bytes']} bytes, `config.realm_metrics_bytes`). The Node `http` peer",
        "(`bench/peers/http_server.js`) answers the same route with the same object,",
        "built per request with `JSON.stringify`.",
        "",
    ]
    out += table(["Scenario", "Realm", "Node", "Realm/Node", "key"], pair_rows(res, "http", "requests/s"))
    out += [
        "",
        "## WebSocket: `health` calls",
        "",
        "`realm-wsload` (`bench/wsload.c`) with 1 and 100 connections, closed loop: each",
        "connection sends `{\"id\":..,\"function\":\"health\",\"params\":{}}`, waits for the",
        "reply, then sends the next; the welcome message is not counted. The Node",
        "peer (`bench/peers/ws_server.js`, `ws`) sends the same welcome and parses",
        "each call and serializes each reply of the same shape, as Realm does.",
        "",
    ]
    out += table(["Scenario", "Realm", "Node", "Realm/Node", "key"], pair_rows(res, "ws", "calls/s"))
    out += [
        "",
        f"## Memory: {n_idle} idle WebSocket connections",
        "",
        "Resident set size (`VmRSS`, `/proc/PID/status`) of a freshly started server,",
        f"then with {n_idle} connections (`config.idle_connections`) that have had their",
        "welcome and send nothing (`realm-wsload --idle`), read one second after the",
        "last opened. Per connection: the difference divided by the count. Kernel",
        "socket buffers are not in RSS.",
        "",
    ]
    mrows = []
    for name, key in (
        ("RSS, no connections (kB)", "rss_0_kb"),
        (f"RSS, {n_idle} idle connections (kB)", "rss_n_kb"),
        ("memory per idle connection (bytes)", "bytes_per_connection"),
    ):
        mrows.append(
            [
                name,
                fmt(mem["realm"][key]),
                fmt(mem["node"][key]),
                fmt(mem["ratio_realm_node"][key], 2),
                f"`memory.{{realm,node}}.{key}`, `memory.ratio_realm_node.{key}`",
            ]
        )
    out += table(["Figure", "Realm", "Node", "Realm/Node", "key"], mrows)

    out += [
        "",
        "## Was the load generator the bottleneck?",
        "",
        "CPU per recorded round, median over the rounds, as a share of one core:",
        "the server's (user + system, all threads, `/proc/PID/stat`), the load",
        "generator's (wrk: `time`; realm-wsload: `getrusage` over its measured",
        "window) and, in cores, every other process's (`/proc/stat` less those two).",
        "Both load generators run one thread: one near 100 % would have set the",
        "pace itself.",
        "",
    ]
    crows, flagged, busy = [], [], []
    for section, conns in SCENARIOS:
        for side in SIDES:
            p = res[section][f"c{conns}"][side]
            key = f"{section}.c{conns}.{side}"
            name = f'{"HTTP" if section == "http" else "WebSocket"}, {conns} conn., {"Realm" if side == "realm" else "Node"}'
            if p["client_cpu_pct_max"] >= BOTTLENECK_PCT:
                flagged.append(name)
            if p["other_cpu_cores"] > BUSY_CORES:
                busy.append(name)
            crows.append(
                [
                    name,
                    fmt(p["server_cpu_pct"]) + " %",
                    f'{fmt(p["client_cpu_pct"])} % (max {fmt(p["client_cpu_pct_max"])} %)',
                    fmt(p["other_cpu_cores"], 2),
                    f"`{key}.server_cpu_pct`, `.client_cpu_pct`, `.client_cpu_pct_max`, `.other_cpu_cores`",
                ]
            )
    out += table(["Run", "server CPU", "load generator CPU", "other processes (cores)", "key"], crows)
    out += [""]
    if flagged:
        out += [
            f"**A load generator used {fmt(BOTTLENECK_PCT)} % of a core or more in a round of: "
            + "; ".join(flagged)
            + ". Those figures may measure the load generator as much as the server.**",
            "",
        ]
    else:
        out += [f"No load generator reached {fmt(BOTTLENECK_PCT)} % of a core in any round.", ""]
    if busy:
        out += [
            f"**Other processes used more than {BUSY_CORES} of a core (median) during: "
            + "; ".join(busy)
            + ". The machine was not quiet; alternating rounds spread that over both"
            " sides, but those figures are noisier than a quiet machine would give.**",
            "",
        ]
    out += invoke_section(os.path.join(os.path.dirname(src), "invoke.json"))
    out += llm_section(os.path.join(os.path.dirname(src), "llm.json"))
    out += store_section(os.path.join(os.path.dirname(src), "store.json"))
    out += cluster_section(os.path.join(os.path.dirname(src), "cluster.json"))
    with open(dst, "w") as f:
        f.write("\n".join(out))


INV_CONFIGS = (
    ("node_http", "Node, HTTP runtime API"),
    ("node_ws", "Node, WebSocket runtime channel"),
    ("python_http", "Python, HTTP runtime API"),
    ("python_ws", "Python, WebSocket runtime channel"),
    ("provided_http", "provided (C), HTTP runtime API"),
)
INV_TRANSPORTS = (("http", "Invoke over HTTP"), ("ws", "client WebSocket"))
INV_SCENARIOS = (("cold", "cold start"), ("warm", "warm (sequential)"), ("hf", "high frequency"))


def invoke_section(path):
    """Invocation latency, throughput and server cost (bench/invoke.py), if it ran."""
    if not os.path.exists(path):
        return []
    with open(path) as f:
        r = json.load(f)
    c, fns = r["config"], r.get("functions", {})
    K = "`invoke.json: "
    peer = r.get("peer")
    out = [
        "## Invocations: latency, throughput, server cost",
        "",
        f"`{r['command']}` ({r['date']}, {r['cores']} cores, {r['cpu_model']}; load average "
        f"{' '.join(r['loadavg_at_start'])} at start, {' '.join(r.get('loadavg_at_end', []))} at end), "
        f"writing `bench/results/invoke.json`; keys below are of that file (`invoke.json: KEY`). "
        "One Realm server (`" + c["realm"] + "`), no-op functions (`bench/functions/`): Node "
        f"(`{fns.get('node_http', {}).get('runtime', 'nodejs20.x')}`, `index.js`), Python "
        f"(`{fns.get('python_http', {}).get('runtime', 'python3.11')}`, `app.py`) and `provided.al2023` with a C "
        "bootstrap (`bootstrap.c`, compiled with gcc at bench time, HTTP runtime API over one "
        "keep-alive socket). The environment uses the WebSocket runtime channel (Realm's default) "
        "or the HTTP runtime API (`LAMBDA_USE_WEBSOCKET=false`).",
        "",
        "Callers: Invoke over HTTP/1.1 keep-alive is driven by `wrk` "
        f"({c['wrk']}, one thread, `bench/wrk_report.lua` posting `{{}}`), the client WebSocket "
        f"`invoke` by `realm-wsload` (`bench/wsload.c`, one thread, `--function invoke`); one "
        "connection per caller, each in a closed loop. Cold starts are timed by a Python asyncio "
        f"client (Python {c['python']}, websockets {c['websockets']}), one call at a time: there a "
        "client's own microseconds are lost in the environment's start.",
        "",
        f"- cold start: the first invocation of a newly created function, {c['cold_samples']} "
        "functions per row (a new environment each; the create is not timed);",
        f"- warm (sequential): one caller for {c['warm_seconds']} s, a {fmt(c['warm_pause_ms'])} ms "
        "pause after each reply, the environment already warm;",
        f"- high frequency: one caller back to back for {c['hf_seconds']} s;",
        f"- throughput: {', '.join(str(n) for n in c['concurrency'])} callers in a closed loop for "
        f"{c['tput_seconds']} s, after an unrecorded {c['tput_warmup_s']} s warm-up at the same "
        "concurrency (environments, or the peer's workers, start then), repeated until one completes "
        "at least as many calls as there are callers.",
        "",
        f"Every warm, high-frequency and throughput figure is the median of {c['rounds']} rounds "
        "(`rounds` of each row keeps them all; `median_round` says which one is shown; warm rounds "
        "are ranked by p50, the others by invocations/s). Rows with a peer alternate Realm and the "
        "peer round by round (Realm, peer, Realm, peer, ...), so a neighbour busy for a while on "
        "this shared machine slows both alike. Client, server, environments and peer share the "
        f"machine's {r['cores']} cores.",
        "",
    ]
    flagged, errored = [], []

    def mark(cell, where):
        if cell.get("client_bound"):
            flagged.append(f"{where} ({fmt(cell.get('client_cpu_pct_max', cell.get('client_cpu_pct')))} %)")
            return " †"
        return ""

    def note_errors(cell, where):
        if cell.get("errors"):
            first = (cell.get("first_errors") or [""])[0]
            if not first:
                first = next((x["first_errors"][0] for x in cell.get("rounds", []) if x.get("first_errors")), "")
            errored.append(f"`{where}`: {cell['errors']} errors; {first}")

    if peer and all("peer" in fns.get(k, {}).get("http", {}) for k in ("node_ws", "node_http")):
        v = peer["versions"]
        out += [
            "### Against a peer: serverless-offline",
            "",
            f"The same Node function (`bench/functions/index.js`) under `serverless-offline` "
            f"{v['serverless-offline']} (Serverless Framework {v['serverless']}; "
            "`bench/peers/serverless/`), whose local Lambda endpoint serves the same Invoke route, "
            "driven by the same `wrk` with the same script, in rounds alternating with Realm's. "
            "It runs handlers in worker threads of its own Node process: no sandbox, no process, "
            "cgroup or network namespace per environment, where Realm starts a sandboxed process. "
            "Its cold start is the first invocation of one of its functions (`cold0`..: it loads "
            "the handler into a new worker then), interleaved with Realm's cold samples. A fresh "
            "peer is started for each of Realm's two Node rows and measured in rounds alternating "
            "with that row (a long-running serverless-offline keeps every worker thread it ever "
            "started, and slows down once it has served 100 callers); ratios are "
            "Realm over the peer of the same rounds (for latency, below 1 favours Realm; for "
            "invocations/s, above 1 does).",
            "",
        ]
        rows = []
        cmp_ = r["comparisons"]["realm_over_peer"]
        ck = f"`comparisons.realm_over_peer.{{node_ws,node_http}}."
        for sc, label, fld, unit in (("cold", "cold start p50", "p50_ms", "ms"),
                                     ("warm", "warm p50", "p50_ms", "ms"),
                                     ("warm", "warm p99", "p99_ms", "ms"),
                                     ("hf", "high frequency", "per_s", "inv/s"),
                                     ("hf", "high frequency p50", "p50_ms", "ms")):
            cells = [f"{label} ({unit})"]
            for k in ("node_ws", "node_http"):
                me, pe = fns[k]["http"][sc], fns[k]["http"]["peer"][sc]
                cells += [fmt(me[fld], 2 if unit == "ms" else 0), fmt(pe[fld], 2 if unit == "ms" else 0),
                          fmt(cmp_[k][f"{sc}_{fld}"], 2)]
            rows.append(cells + [f"{K}functions.{{node_ws,node_http}}.http.{{{sc},peer.{sc}}}.{fld}`, "
                                 f"{ck}{sc}_{fld}`"])
        for n in c["concurrency"]:
            for fld, unit, d in (("per_s", "inv/s", 0), ("p99_ms", "ms", 1)):
                cells = [f"{n} callers{' p99' if fld == 'p99_ms' else ''} ({unit})"]
                for k in ("node_ws", "node_http"):
                    me, pe = fns[k]["http"]["tput"][str(n)], fns[k]["http"]["peer"]["tput"][str(n)]
                    cells += [fmt(me[fld], d), fmt(pe[fld], d), fmt(cmp_[k][f"tput_{n}_{fld}"], 2)]
                rows.append(cells + [f"{K}functions.{{node_ws,node_http}}.http.{{tput,peer.tput}}.{n}.{fld}`, "
                                     f"{ck}tput_{n}_{fld}`"])
        out += table(["Invoke over HTTP, Node", "Realm, WS runtime", "peer", "Realm/peer",
                      "Realm, HTTP runtime", "peer", "Realm/peer", "key"], rows)
        for k in ("node_ws", "node_http"):
            pc = fns[k]["http"]["peer"]
            for sc in ("warm", "hf"):
                mark(pc[sc], f"{k}.http.peer.{sc}")
                note_errors(pc[sc], f"{k}.http.peer.{sc}")
            for n, x in pc["tput"].items():
                mark(x, f"{k}.http.peer.tput.{n}")
                note_errors(x, f"{k}.http.peer.tput.{n}")
        out += ["", "![Realm against serverless-offline](bench/results/invoke-peer.png)", "",
                "Memory: the peer's Node process held "
                + "; ".join(f"{fmt(fns[k]['http']['peer']['rss_kb_start'])} kB at start and "
                            f"{fmt(fns[k]['http']['peer']['rss_kb_end'])} kB at the end of the rounds beside "
                            f"`{k}` ({K}functions.{k}.http.peer.{{rss_kb_start,rss_kb_end}}`)"
                            for k in ("node_ws", "node_http"))
                + f", after up to {max(c['concurrency'])} concurrent invocations; Realm's server, "
                f"{fmt(r['server_rss_kb_start'])} kB at start and {fmt(r['server_rss_kb_end'])} kB at the end "
                "(`server_rss_kb_start`, `server_rss_kb_end`), its environments apart (below).", ""]
    elif not peer:
        out += ["No peer in this run (`bench/invoke.py --no-peer`).", ""]

    out += [
        "### Against the seed's tables",
        "",
        "The seed (`lambda-at-home-websocket-runtime.md`, \"Performance Benefits\") publishes, "
        "without saying how they were measured:",
        "",
    ]
    sp = r["comparisons"]["seed_published"]
    lat, tput = sp["latency_ms"], sp["throughput_per_s"]
    out += table(["Scenario", "HTTP (ms)", "WebSocket (ms)", "Improvement", "key"],
                 [[x["label"], str(x["http"]), str(x["ws"]), x["improvement"],
                   f"{K}comparisons.seed_published.latency_ms.{sc}`"] for sc, x in lat.items()])
    out += [""]
    out += table(["Concurrent Invocations", "HTTP (req/s)", "WebSocket (req/s)", "Improvement", "key"],
                 [[n, str(x["http"]), str(x["ws"]), x["improvement"],
                   f"{K}comparisons.seed_published.throughput_per_s.{n}`"] for n, x in tput.items()])
    out += ["", "Realm's numbers for the same rows: Node function, Invoke over HTTP, environment on "
            "the HTTP runtime API (\"HTTP\") or the WebSocket runtime channel (\"WebSocket\"); "
            "latency is the median (p50).", ""]
    rows = []
    sr = r["comparisons"].get("seed_rows")
    if sr:
        for sc, seed in lat.items():
            x = sr["latency"][sc]
            rows.append([seed["label"], str(seed["http"]), str(seed["ws"]), seed["improvement"],
                         fmt(x["http_p50_ms"], 2), fmt(x["ws_p50_ms"], 2), f"{x['improvement_pct']}%",
                         f"{K}comparisons.seed_rows.latency.{sc}.{{http_p50_ms,ws_p50_ms,improvement_pct}}`"])
        out += table(["Scenario", "seed HTTP (ms)", "seed WebSocket (ms)", "seed improvement", "Realm HTTP (ms)",
                      "Realm WebSocket (ms)", "Realm improvement", "key"], rows)
        out += [""]
        rows = []
        for n, seed in tput.items():
            x = sr["throughput"].get(n)
            if not x:
                continue
            rows.append([n, str(seed["http"]), str(seed["ws"]), seed["improvement"], fmt(x["http_per_s"]),
                         fmt(x["ws_per_s"]), f"{x['improvement_pct']}%",
                         f"{K}comparisons.seed_rows.throughput.{n}.{{http_per_s,ws_per_s,improvement_pct}}`"])
        out += table(["Concurrent", "seed HTTP (req/s)", "seed WebSocket (req/s)", "seed improvement",
                      "Realm HTTP (inv/s)", "Realm WebSocket (inv/s)", "Realm improvement", "key"], rows)
        out += [""]

    out += ["### Latency, ms", "", "![invocation latency](bench/results/invoke-latency.png)", ""]
    rows = []
    for k, label in INV_CONFIGS:
        if k not in fns:
            continue
        for t, tl in INV_TRANSPORTS:
            for sc, sl in INV_SCENARIOS:
                x = fns[k][t][sc]
                m = mark(x, f"{k}.{t}.{sc}") if sc != "cold" else ""
                note_errors(x, f"{k}.{t}.{sc}")
                rows.append([label, tl, sl + m, str(x["n"]), fmt(x["p50_ms"], 2), fmt(x["p90_ms"], 2),
                             fmt(x["p99_ms"], 2), fmt(x["max_ms"], 2),
                             f"{K}functions.{k}.{t}.{sc}.{{n,p50_ms,p90_ms,p99_ms,max_ms}}`"])
    out += table(["Function", "Caller", "Scenario", "n", "p50", "p90", "p99", "max", "key"], rows)
    out += ["", "### Throughput: invocations/s (p99 ms)", "",
            "![invocation throughput](bench/results/invoke-throughput.png)", ""]
    conns = [str(x) for x in c["concurrency"]]

    def tput_rows(cell, fields):
        """A row per function and caller, a cell per concurrency (cell(x, where) renders it)."""
        rows = []
        for k, label in INV_CONFIGS:
            if k not in fns:
                continue
            for t, tl in INV_TRANSPORTS:
                cells = [cell(fns[k][t]["tput"][n], f"{k}.{t}.tput.{n}") for n in conns]
                rows.append([label, tl] + cells + [f"{K}functions.{k}.{t}.tput.N.{{{fields}}}`"])
        return table(["Function", "Caller"] + [f"{n} callers" for n in conns] + ["key"], rows)

    def rate_cell(x, where):
        note_errors(x, where)
        return f"{fmt(x['per_s'])} ({fmt(x['p99_ms'], 1)}){mark(x, where)}"

    out += tput_rows(rate_cell, "per_s,p99_ms")
    out += [""]
    out += ["CPU in the median throughput round: Realm's server process (% of a core), the load "
            "generator (% of a core, `getrusage` of the child), and every other process in cores "
            "(`/proc/stat` less those two: the environments, mostly).", ""]
    out += tput_rows(lambda x, where: f"{fmt(x['server_cpu_pct'])} / {fmt(x['client_cpu_pct'])} / "
                     f"{fmt(x['other_cpu_cores'], 2)}", "server_cpu_pct,client_cpu_pct,other_cpu_cores")
    out += [""]
    if flagged:
        out += ["† The load generator used " + f"{fmt(c['client_bound_pct'])} % of a core or more in a round of: "
                + "; ".join(flagged) + " (`client_cpu_pct_max`, `client_bound`): there it may set the pace.", ""]
    else:
        out += [f"No load generator reached {fmt(c['client_bound_pct'])} % of a core in any round "
                "(`client_cpu_pct_max` of each row).", ""]
    if errored:
        out += ["Failed invocations (counted, not timed), first error of each row (`errors`, "
                "`first_errors`):", ""] + [f"- {e}" for e in errored] + [""]
        tail = [x for x in r.get("server_stderr_tail", []) if x.strip()]
        if tail:
            out += ["The server's stderr (`--log-level warn`), last lines (`server_stderr_tail`):", "",
                    "```"] + tail[-10:] + ["```", ""]
    else:
        out += ["No invocation failed (`errors` is 0 in every row).", ""]
    im = r.get("idle_memory")
    out += ["### Server memory with idle client WebSockets", ""]
    if im:
        rows = []
        for n in sorted(im, key=int):
            x = im[n]
            rows.append([n, fmt(x.get("rss_kb")), fmt(x.get("per_connection_bytes")) if n != "0" else "",
                         f"{K}idle_memory.{n}.rss_kb`" + (", `.per_connection_bytes`" if n != "0" else "")])
        out += ["VmRSS of a freshly started server, then while N connections opened by "
                "`realm-wsload --idle` (which waits for each welcome) stay idle, 1 s after the last opened.", ""]
        out += table(["Idle connections", "server VmRSS (kB)", "bytes per connection", "key"], rows)
        out += ["", "![server memory](bench/results/invoke-memory.png)", ""]
    rows = []
    for k, label in INV_CONFIGS:
        if k not in fns or "environment" not in fns[k]:
            continue
        e = fns[k]["environment"]
        procs = ", ".join(f"{p['comm']} {p['rss_kb']}" for p in e.get("processes", []))
        rows.append([label, fmt(e["first_invoke_ms"], 1), fmt(fns[k]["http"]["cold"]["p50_ms"], 1),
                     fmt(e["max_memory_used_mb"]), fmt(e.get("rss_kb_runtime")), procs,
                     f"{K}functions.{k}.environment.{{first_invoke_ms,max_memory_used_mb,rss_kb_runtime,processes}}`, "
                     f"`functions.{k}.http.cold.p50_ms`"])
    if rows:
        out += ["### One warm environment per runtime", "",
                "Start: the first invocation of a new function over HTTP (environment start plus one "
                "invocation; Realm logs no separate init duration), and the cold-start median above. "
                "Memory: the largest `Max Memory Used` of the function's REPORT lines (the peak of the "
                "environment's memory cgroup, whole MB), and the VmRSS of the processes below the "
                "server with one warm environment (bubblewrap's and the runtime's).", ""]
        out += table(["Function", "first invocation (ms)", "cold p50 (ms)", "Max Memory Used (MB)",
                      "runtime VmRSS (kB)", "processes (VmRSS kB)", "key"], rows)
        out += [""]
    return out


def llm_section(path):
    """generate against llama.cpp called by node-llama-cpp (bench/llm.py), if it ran."""
    if not os.path.exists(path):
        return []
    with open(path) as f:
        r = json.load(f)
    rows = [
        ["Realm (client WebSocket, streaming)", fmt(r["realm"]["tokens_per_second_median"], 1),
         fmt(r["realm"]["ttft_ms_median"], 1), "`llm.json: realm.*_median`"],
        ["node-llama-cpp (llama.cpp directly)", fmt(r["peer"]["tokens_per_second_median"], 1),
         fmt(r["peer"]["ttft_ms_median"], 1), "`llm.json: peer.*_median`"],
        ["Ratio Realm/peer", fmt(r["throughput_ratio_realm_over_peer"], 2), "",
         "`llm.json: throughput_ratio_realm_over_peer`"],
    ]
    out = [
        "## generate: tokens per second",
        "",
        f"`bench/llm.py` ({r['date']}): model `{r['model']}` ({r['model_bytes']} bytes, `llm.json: model_bytes`, "
        "made by `scripts/make_test_model.py --size-mb 300`), greedy, "
        f"{r['tokens']} tokens, {r['threads']} thread(s), median of {r['runs']} alternating runs "
        "after one warm-up each. Realm is timed by its client from the first to the last "
        "streamed token (call to first token for TTFT); the peer by its own clock around "
        "llama.cpp's evaluation. Realm emits each token one step late (so the last can say "
        "`is_final`), which its TTFT includes. "
        f"Same tokens as the peer: {'yes' if r['same_tokens_as_peer'] else 'no'} "
        f"(`same_tokens_as_peer`; first {r['same_prefix_tokens']} agree).",
        "",
    ]
    out += table(["Run", "tokens/s", "time to first token (ms)", "key"], rows)
    out += [""]
    return out


STORE_OPS = (
    ("create", "CreateFunction (small zip, new name)", "operations/s"),
    ("get", "GetFunction", "operations/s"),
    ("update", "UpdateFunctionConfiguration (new Description)", "operations/s"),
    ("publish", "UpdateFunctionConfiguration + PublishVersion (a new version each)", "pairs/s"),
    ("list", "ListFunctions (MaxItems 50)", "operations/s"),
)
STORE_SIDES = ("sqlite", "postgresql")
STORE_LABEL = {"sqlite": "SQLite", "postgresql": "PostgreSQL",
               "postgresql_async": "PostgreSQL, synchronous_commit off"}


def store_section(path):
    """Realm on SQLite against Realm on PostgreSQL (bench/store.py), if it ran."""
    if not os.path.exists(path):
        return []
    with open(path) as f:
        r = json.load(f)
    m, c, b, q = r["machine"], r["config"], r["backends"], r["ratio_pg_sqlite"]
    K = "`store.json: "

    def span(x, d=0):
        return f'{fmt(x["median"], d)} ({fmt(x["min"], d)}–{fmt(x["max"], d)})' if x else "n/a"

    pin = (f"Realm, its environments and PostgreSQL are pinned to CPU {c['server_cpu']} and the load "
           f"generators to CPU {c['client_cpu']} (`taskset`; `config.pinned`)" if c["pinned"]
           else "Nothing is pinned (fewer than two CPUs; `config.pinned`)")
    out = [
        "## Storage: SQLite and PostgreSQL",
        "",
        f"`{r['command']}` ({m['date']}, {m['cores']} cores, {m['cpu_model']}; commit {m['realm_commit']}, "
        f"{m['realm_tracked_files_modified']} tracked files modified; {m['postgresql']}; load average "
        f"{m['loadavg_at_start']} at start, {c['loadavg_at_end']} at end, {fmt(c['duration_s'])} s in all), "
        "writing `bench/results/store.json`; keys below are of that file (`store.json: KEY`).",
        "",
        "Realm servers of the same Release build (`" + c["realm"] + "`), each with its own data "
        "directory: one on SQLite (the default: `realm.db`, `events.db`, `auth.db` in the data "
        "directory, WAL, `synchronous=NORMAL`: a commit is not flushed to disk, a checkpoint is) and "
        "one with `--db postgresql://…` (registry, code packages, the Event queue and keys in "
        "PostgreSQL), on a throwaway cluster on loopback started by `tests/integration/pg_util.py` "
        "with fsync on (`config.postgresql_fsync`) and `synchronous_commit` on: each commit waits "
        "for its WAL flush, as in production."
        + (" A third server uses another database of the same cluster with `synchronous_commit = off` "
           "(`ALTER DATABASE`): its commits do not wait for the flush, like SQLite's here, which "
           "separates what the flush costs from the rest (the network round trips, PostgreSQL's own "
           "work); it is a measurement, not a recommended setting (a power loss could lose the last "
           "commits acknowledged)." if "postgresql_async" in c.get("backends", []) else "")
        + " "
        f"{pin}: the server side's CPU (Realm's and, on PostgreSQL, the database's) is "
        "one core on both. Unsigned requests (no `--auth`), over raw HTTP/1.1 keep-alive from a "
        f"Python client (`http.client`, {c['clients']} threads: `config.clients`), each in a closed loop.",
        "",
        f"- control: each operation for {fmt(c['control_seconds'], 1)} s per round "
        "(`config.control_seconds`); the functions created stay, so ListFunctions and the later "
        "rounds see a registry that grows by a few thousand functions; UpdateFunctionConfiguration "
        "and PublishVersion act on one function per client (a publish with nothing changed returns "
        "the last version, so each pair changes the Description first and is counted as one);",
        f"- Events: {c['events_per_round']} `InvocationType: Event` invocations per round "
        "(`config.events_per_round`) of a no-op `provided.al2023` function (`bench/functions/"
        "bootstrap.c`, HTTP runtime API) with warm environments, server run with "
        f"`--concurrency-limit {c['concurrency_limit']}` (at most that many events at once). "
        "Enqueue: 202s per second from the first send to the last 202. Dispatch: events run to "
        "completion per second, from the first send until "
        "`GET /realm/v1/functions/NAME/failed-events` says `Pending: 0` (polled every 10 ms), so it "
        "is never above the enqueue rate: dispatching starts while events are still coming in. "
        "Meanwhile a separate process sends `GET /health` to the metrics listener, one request at "
        "a time, 1 ms apart: every listener is served by Realm's one event loop, so its latency "
        "shows how long the loop is held by the Event path's storage calls;",
        f"- warm invoke: synchronous Invoke of the same warm function, one `wrk` caller "
        f"({c['wrk']}) in a closed loop for {c['warm_seconds']} s (`config.warm_seconds`). The "
        "resolution of an unchanged function is cached on the loop, so neither backend's database "
        "is read: the two should agree.",
        "",
        f"After an unrecorded warm-up of each server, {c['rounds']} rounds (`config.rounds`) alternate "
        "SQLite and PostgreSQL (each round: every control operation, the Events, the warm invokes). "
        "Figures are the median round with the min–max over the rounds; ratios are PostgreSQL over "
        "SQLite of the medians (for rates, below 1 means PostgreSQL is slower; for latency and CPU "
        "per operation, above 1 does). Server-side CPU per operation is Realm's CPU plus, on "
        "PostgreSQL, the postmaster's and its backends' (`/proc/PID/stat`), divided by the "
        "operations completed: less sensitive to the neighbours than a rate.",
        "",
    ]
    if m.get("note"):
        out += [f"**What the machine was doing:** {m['note']} (`machine.note`)", ""]
    sides = c.get("backends", list(STORE_SIDES))
    pgs = [x for x in sides if x != "sqlite"]
    rq = {"postgresql": q, "postgresql_async": r.get("ratio_pg_async_sqlite")}
    rname = {"postgresql": "ratio_pg_sqlite", "postgresql_async": "ratio_pg_async_sqlite"}
    kb = f"{K}backends.{{{','.join(sides)}}}."
    rk = rname[pgs[0]] if len(pgs) == 1 else "{" + ",".join(rname[x] for x in pgs) + "}"
    rows = []

    def row(label, get, d=0, ratio=None, key=""):
        """get(side_dict) -> a spread or a cell text; ratio(ratio_dict) -> a number or text."""
        cells = [label]
        for side in sides:
            v = get(b[side])
            cells.append(v if isinstance(v, str) else span(v, d))
            if side != "sqlite":
                x = ratio(rq[side]) if ratio else None
                cells.append(x if isinstance(x, str) else fmt(x, 2))
        rows.append(cells + [key])

    for op, label, unit in STORE_OPS:
        row(f"{label}: {unit}", lambda x: x["control"][op]["per_s"], ratio=lambda z: z["control"][op]["per_s"],
            key=f"{kb}control.{op}.per_s`, `{rk}.control.{op}.per_s`")
        row(f"{label}: p50 / p99 latency, ms",
            lambda x: f'{fmt(x["control"][op]["p50_ms"]["median"], 2)} / {fmt(x["control"][op]["p99_ms"]["median"], 2)}',
            ratio=lambda z: f'{fmt(z["control"][op]["p50_ms"], 2)} / {fmt(z["control"][op]["p99_ms"], 2)}',
            key=f"{kb}control.{op}.{{p50_ms,p99_ms}}.median`, `{rk}.control.{op}.{{p50_ms,p99_ms}}`")
        row(f"{label}: server-side CPU per operation, µs", lambda x: x["control"][op]["server_side_cpu_us_per_op"],
            ratio=lambda z: z["control"][op]["server_side_cpu_us_per_op"],
            key=f"{kb}control.{op}.server_side_cpu_us_per_op`, `{rk}.control.{op}.server_side_cpu_us_per_op`")
    row("Event enqueue: 202s/s", lambda x: x["events"]["enqueue_per_s"], ratio=lambda z: z["events"]["enqueue_per_s"],
        key=f"{kb}events.enqueue_per_s`, `{rk}.events.enqueue_per_s`")
    row("Event dispatch: events run to completion/s", lambda x: x["events"]["dispatch_per_s"],
        ratio=lambda z: z["events"]["dispatch_per_s"], key=f"{kb}events.dispatch_per_s`, `{rk}.events.dispatch_per_s`")
    row("Event: server-side CPU per event (enqueue to completion, environment apart), µs",
        lambda x: x["events"]["server_side_cpu_us_per_op"], ratio=lambda z: z["events"]["server_side_cpu_us_per_op"],
        key=f"{kb}events.server_side_cpu_us_per_op`, `{rk}.events.server_side_cpu_us_per_op`")
    for fld, label in (("p50_ms", "p50"), ("p99_ms", "p99"), ("max_ms", "max")):
        row(f"During the Events, GET /health (metrics listener, same loop): {label} latency, ms",
            lambda x: x["events"][f"health_{fld}"], 2, ratio=lambda z: z["events"].get(f"health_{fld}"),
            key=f"{kb}events.health_{fld}`, `{rk}.events.health_{fld}`")
    for fld, label in (("p50_ms", "p50"), ("p99_ms", "p99")):
        row(f"Warm synchronous Invoke: {label} latency, ms", lambda x: x["warm"][fld], 3,
            ratio=lambda z: z["warm"][fld], key=f"{kb}warm.{fld}`, `{rk}.warm.{fld}`")
    head = ["Figure (median; min–max)", "SQLite"]
    for side in pgs:
        head += [STORE_LABEL[side], f"{STORE_LABEL[side]} / SQLite"]
    out += table(head + ["key"], rows)
    out += ["", "CPU in the rounds (medians): Realm's server process and PostgreSQL's processes (% of a core, "
            "together on one core), the load generator (% of a core; the largest round in brackets) and "
            "every other process, in cores (`/proc/stat` less those: other agents' work, and the "
            "environments during the Events).", ""]
    crows, flagged, errs = [], [], []
    scen = [(f"control.{op}", label.split(" (")[0]) for op, label, _ in STORE_OPS] + [("events", "Events"),
                                                                                      ("warm", "warm Invoke")]
    for key, label in scen:
        cells = [label]
        for side in sides:
            x = b[side]
            for part in key.split("."):
                x = x[part]
            cmax = x.get("client_cpu_pct_max")
            if cmax is not None and cmax >= BOTTLENECK_PCT:
                flagged.append(f"{label} on {STORE_LABEL[side]} ({fmt(cmax)} %)")
            if x.get("errors") or x.get("rejected") or x.get("failed_for_good"):
                errs.append(f"{label} on {STORE_LABEL[side]}: errors {x.get('errors', 0)}, rejected {x.get('rejected', 0)}, "
                            f"failed {x.get('failed_for_good', 0)}")
            client = fmt(x["client_cpu_pct"]["median"]) if "client_cpu_pct" in x else "n/a"
            if cmax is not None:
                client += f" ({fmt(cmax)})"
            cells.append(f'{fmt(x["server_cpu_pct"]["median"])} / {fmt(x["db_cpu_pct"]["median"])} / '
                         f'{client} / {fmt(x["other_cpu_cores"]["median"], 2)}')
        crows.append(cells + [f"{kb}{key}.{{server_cpu_pct,db_cpu_pct,client_cpu_pct,other_cpu_cores}}`"])
    out += table(["Scenario"] + [f"{STORE_LABEL[x]}: Realm % / db % / client % / other cores" for x in sides]
                 + ["key"], crows)
    out += [""]
    if flagged:
        out += [f"**The load generator (Python, one process) used {fmt(BOTTLENECK_PCT)} % of a core or more "
                "in a round of: " + "; ".join(flagged) + ". There it set the pace, and the figure is a lower "
                "bound of the server's rate; the server-side CPU per operation still compares the backends.**", ""]
    else:
        out += [f"No load generator reached {fmt(BOTTLENECK_PCT)} % of a core in any round.", ""]
    if errs:
        out += ["Failures: " + "; ".join(errs) + " (`errors`, `rejected`, `failed_for_good`).", ""]
    else:
        out += ["No operation failed, no Event was refused and none failed (`errors`, `rejected`, "
                "`failed_for_good` are 0).", ""]
    return out

def cluster_section(path):
    """Calls across the nodes of a cluster (bench/cluster.py), if it ran."""
    if not os.path.exists(path):
        return []
    with open(path) as f:
        r = json.load(f)
    m, c, h, sc = r["machine"], r["config"], r["hop"], r["scale"]
    K = "`cluster.json: "

    def span(x, d=0):
        return f'{fmt(x["median"], d)} ({fmt(x["min"], d)}–{fmt(x["max"], d)})' if x else "n/a"

    rows = [("calls/s", "per_s", 0), ("p50 latency, ms", "p50_ms", 3), ("p99 latency, ms", "p99_ms", 3),
            ("server-side CPU per call, µs", "server_side_cpu_us_per_call", 0)]
    out = [
        "## Cluster: a call across nodes",
        "",
        f"`bench/cluster.py` ({m['date']}, {m['cores']} cores; commit {m['realm_commit']}; load average "
        f"{m['loadavg_at_start']} at start, {m['loadavg_at_end']} at end, {m['seconds']} s in all), "
        "writing `bench/results/cluster.json`; keys below are of that file.",
        "",
        "Realm nodes of one Release build on one PostgreSQL (`pg_util.py`) and one nats-server, all "
        "pinned to CPU 0 with PostgreSQL and nats-server; `wrk` on CPU 1 (`config.pinned`). Synchronous "
        "Invoke (HTTP keep-alive) of a warm no-op `provided.al2023` function (`bench/functions/"
        f"bootstrap.c`); {c['rounds']} rounds of {fmt(c['seconds'], 1)} s per side, alternating; "
        "medians with min–max. Server-side CPU: every node, nats-server and PostgreSQL (`/proc/PID/stat`) "
        "per call.",
        "",
        "- hop: two nodes, one caller in a closed loop. *local* calls the node where the function is warm "
        "(it runs there); *hop* calls the other node, which places each call on the first over NATS "
        f"(offer, accept, result back: `hop.placed_by_other` = {fmt(h['placed_by_other'])} calls placed).",
        f"- scale: three nodes; {c['callers']} callers on the function's home node (*one node*: every call "
        "runs where it arrives) against the same callers spread over the three nodes (*three nodes*: a "
        "`wrk` per node; two thirds of the calls hop to the home, where the function is warm). All nodes "
        "share CPU 0 here: this shows what the cluster's hops cost, not how it scales out on several "
        "machines.",
    ]
    if m.get("note"):
        out += ["", f"**What the machine was doing:** {m['note']}"]
    out += ["", "| Figure (median; min–max) | local | hop | hop / local | key |", "| --- | --- | --- | --- | --- |"]
    for label, k, d in rows:
        out.append(f"| {label} | {span(h['local'][k], d)} | {span(h['hop'][k], d)} | {fmt(h['ratio'][k], 2)} | "
                   f"{K}hop.{{local,hop}}.{k}`, {K}hop.ratio.{k}` |")
    out += ["", "| Figure (median; min–max) | one node | three nodes | three / one | key |",
            "| --- | --- | --- | --- | --- |"]
    for label, k, d in rows:
        out.append(f"| {label} | {span(sc['one_node'][k], d)} | {span(sc['three_nodes'][k], d)} | "
                   f"{fmt(sc['ratio'][k], 2)} | {K}scale.{{one_node,three_nodes}}.{k}`, {K}scale.ratio.{k}` |")
    out += ["", "Reading the figures: a hop costs two NATS exchanges (the offer and its accept, then the "
            "result) through nats-server and, on each node, libnats' reader and delivery threads handing each "
            "message to the event loop; on this virtual machine the CPU goes mostly to those context switches "
            "(`perf`: over half of the samples in the kernel's task switching), which is where issue 18 should "
            "look. The three-node p99 is dominated by stalls of hundreds of milliseconds that come from "
            "packing three nodes, nats-server, PostgreSQL and the environments onto one core: unpinned "
            "(`bench/cluster.py --no-pin`) the same scenario's p99 stayed between 10 and 95 ms in a check run."]
    out += ["", f"Calls that failed: {h['errors'] + sc['errors']} (`hop.errors`, `scale.errors`). Calls run per "
            f"node in the three-node rounds: {', '.join(fmt(x) for x in sc['ran_per_node'])} "
            "(`scale.ran_per_node`).", ""]
    return out



def main(argv):
    if len(argv) == 4 and argv[1] == "collect":
        collect(argv[2], argv[3])
    elif len(argv) == 4 and argv[1] == "render":
        render(argv[2], argv[3])
    else:
        sys.exit("usage: report.py collect RAW_DIR RESULTS_JSON | render RESULTS_JSON OUTPUT_MD")


if __name__ == "__main__":
    main(sys.argv)

