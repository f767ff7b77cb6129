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
        "Realm against Node servers doing the same work, measured side by side in one",
        "run on one machine. Speed and memory are given as ratios Realm/Node against",
        "that same-run peer; none of them is a target or a test.",
        "",
        "Reproduce with:",
        "",
        "```",
        res["command"],
        "```",
        "",
        "Generated by `bench/report.py` from `bench/results/core.json`, which",
        "`bench/run.sh` writes; do not edit by hand. Every figure is a value of that",
        "file, rounded; the last column of each table gives its key.",
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
    out += llm_section(os.path.join(os.path.dirname(src), "llm.json"))
    with open(dst, "w") as f:
        f.write("\n".join(out))


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
        f"`bench/llm.py` ({r['date']}): model `{r['model']}` ({r['model_bytes'] >> 20} MiB, "
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


def main(argv):
    if len(argv) == 4 and argv[1] == "collect":
        collect(argv[2], argv[3])
    elif len(argv) == 4 and argv[1] == "render":
        render(argv[2], argv[3])
    else:
        sys.exit("usage: report.py collect RAW_DIR RESULTS_JSON | render RESULTS_JSON OUTPUT_MD")


if __name__ == "__main__":
    main(sys.argv)
