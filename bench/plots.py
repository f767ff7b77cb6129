#!/usr/bin/python3
"""bench/plots.py - PNG plots of bench/results/invoke.json (matplotlib, Agg).

    plots.py [RESULTS_JSON [OUT_DIR]]

Writes invoke-latency.png, invoke-throughput.png, invoke-peer.png (Realm
against serverless-offline, when the peer ran) and invoke-memory.png next to
the results file (or in OUT_DIR). Every plotted value is a key of the
results file, the same keys BENCHMARKS.md names.
"""
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402

CONFIGS = (
    ("node_http", "Node, HTTP rt"),
    ("node_ws", "Node, WS rt"),
    ("python_http", "Python, HTTP rt"),
    ("python_ws", "Python, WS rt"),
    ("provided_http", "C, HTTP rt"),
)
TRANSPORTS = (("http", "Invoke HTTP"), ("ws", "client WS"))
SCENARIOS = (("cold", "cold start"), ("warm", "warm (sequential)"), ("hf", "high frequency"))


def latency(r, dst):
    fns = r["functions"]
    keys = [k for k, _ in CONFIGS if k in fns]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.8))
    w = 0.38
    for ax, (sc, title) in zip(axes, SCENARIOS):
        for i, (t, tl) in enumerate(TRANSPORTS):
            xs = [j + (i - 0.5) * w for j in range(len(keys))]
            p50 = [fns[k][t][sc]["p50_ms"] for k in keys]
            p99 = [fns[k][t][sc]["p99_ms"] for k in keys]
            ax.bar(xs, p50, w, label=f"{tl} p50")
            ax.scatter(xs, p99, marker="_", s=200, color="black", zorder=3,
                       label="p99" if i == 0 else None)
        ax.set_xticks(range(len(keys)))
        ax.set_xticklabels([dict(CONFIGS)[k] for k in keys], rotation=30, ha="right", fontsize=8)
        ax.set_title(title)
        ax.set_ylabel("ms")
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Realm invocation latency, no-op function ({r['date']}, {r['cores']} cores)")
    fig.tight_layout()
    fig.savefig(dst, dpi=90)
    plt.close(fig)


def throughput(r, dst):
    fns = r["functions"]
    conns = [str(c) for c in r["config"]["concurrency"]]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    for i, (k, label) in enumerate(CONFIGS):
        if k not in fns:
            continue
        for t, tl in TRANSPORTS:
            style = "-" if t == "http" else "--"
            xs = [int(c) for c in conns]
            color = f"C{i}"
            axes[0].plot(xs, [fns[k][t]["tput"][c]["per_s"] for c in conns], style, marker="o",
                         color=color, label=f"{label} / {tl}")
            axes[1].plot(xs, [fns[k][t]["tput"][c]["p99_ms"] for c in conns], style, marker="o", color=color)
    axes[0].set_ylabel("invocations/s")
    axes[1].set_ylabel("p99 latency, ms")
    axes[1].set_yscale("log")
    axes[1].yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    for ax in axes:
        ax.set_xlabel("concurrent callers")
        ax.set_xscale("log")
        ax.set_xticks([int(c) for c in conns])
        ax.set_xticklabels(conns)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle("Realm invocation throughput (solid: Invoke over HTTP, dashed: client WebSocket)")
    fig.tight_layout()
    fig.savefig(dst, dpi=90)
    plt.close(fig)


def peer(r, dst):
    """Node over Invoke HTTP: Realm's two runtime channels and the peer measured beside each."""
    fns = r["functions"]
    rows = [k for k in ("node_ws", "node_http") if k in fns and "peer" in fns[k]["http"]]
    if not rows:
        return False
    label = {"node_ws": "WS runtime", "node_http": "HTTP runtime"}
    conns = [str(c) for c in r["config"]["concurrency"]]
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8))
    scen = (("cold", "cold p50"), ("warm", "warm p50"), ("hf", "high freq. p50"))
    series = []
    for k in rows:
        series.append((f"Realm ({label[k]})", fns[k]["http"], "tab:blue" if k == "node_ws" else "tab:cyan"))
        series.append((f"serverless-offline (beside {label[k]})", fns[k]["http"]["peer"],
                       "tab:red" if k == "node_ws" else "tab:orange"))
    w = 0.8 / len(series)
    for i, (name, cell, color) in enumerate(series):
        xs = [j + (i - (len(series) - 1) / 2) * w for j in range(len(scen))]
        axes[0].bar(xs, [cell[sc]["p50_ms"] for sc, _ in scen], w, color=color, label=name)
        axes[1].plot([int(c) for c in conns], [cell["tput"][c]["per_s"] for c in conns], "-o", color=color,
                     label=name)
    axes[0].set_xticks(range(len(scen)))
    axes[0].set_xticklabels([t for _, t in scen])
    axes[0].set_ylabel("ms (log)")
    axes[0].set_yscale("log")
    axes[0].yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    axes[0].grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=7)
    axes[0].set_title("latency")
    axes[1].set_xscale("log")
    axes[1].set_xticks([int(c) for c in conns])
    axes[1].set_xticklabels(conns)
    axes[1].set_xlabel("concurrent callers")
    axes[1].set_ylabel("invocations/s")
    axes[1].grid(alpha=0.3)
    axes[1].set_title("throughput")
    fig.suptitle("Node no-op over Invoke HTTP: Realm against serverless-offline, alternating rounds")
    fig.tight_layout()
    fig.savefig(dst, dpi=90)
    plt.close(fig)
    return True


def memory(r, dst):
    im = r.get("idle_memory") or {}
    ns = sorted((n for n in im if "rss_kb" in im[n]), key=int)
    if not ns:
        return False
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.bar(ns, [im[n]["rss_kb"] / 1024 for n in ns], color="tab:blue")
    for i, n in enumerate(ns):
        ax.text(i, im[n]["rss_kb"] / 1024, f"{im[n]['rss_kb'] / 1024:.1f}", ha="center", va="bottom")
    ax.set_xlabel("idle client WebSockets")
    ax.set_ylabel("server VmRSS, MiB")
    ax.set_title("Realm server memory")
    fig.tight_layout()
    fig.savefig(dst, dpi=90)
    plt.close(fig)
    return True


def main(argv):
    src = argv[1] if len(argv) > 1 else os.path.join(os.path.dirname(__file__), "results", "invoke.json")
    out = argv[2] if len(argv) > 2 else os.path.dirname(src)
    with open(src) as f:
        r = json.load(f)
    if r.get("functions"):
        latency(r, os.path.join(out, "invoke-latency.png"))
        throughput(r, os.path.join(out, "invoke-throughput.png"))
        peer(r, os.path.join(out, "invoke-peer.png"))
    memory(r, os.path.join(out, "invoke-memory.png"))
    print("plots: wrote", out, file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv)
