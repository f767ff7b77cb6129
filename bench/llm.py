"""generate through Realm (client WebSocket, streaming) against llama.cpp
called directly by node-llama-cpp, same model, prompt, greedy sampling and
threads, in the same run. Writes bench/results/llm.json.

  /usr/bin/python3 bench/llm.py [--model PATH] [--tokens N] [--runs R] [--threads T]

Each run alternates peer and Realm so both see the same machine load.
tokens_per_second counts generated tokens from the first to the last token
as the client sees them; ttft_ms is from sending the call (Realm) or from
starting the generation (peer, its own figure) to the first token.
"""
import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

import websockets

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def peer(model, prompt, n, threads):
    out = subprocess.run(["node", os.path.join(ROOT, "tests/integration/llm_peer.mjs"), model,
                          prompt, str(n), "--threads", str(threads)],
                         cwd=ROOT, capture_output=True, text=True, check=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    t = r["timing"]
    return {"tokens": len(r["tokens"]), "tokens_per_second": t["tokens_per_second"],
            "ttft_ms": t.get("time_to_first_token_ms"), "ids": r["tokens"]}


async def realm_once(port, prompt, n):
    async with websockets.connect(f"ws://127.0.0.1:{port}", max_size=None) as ws:
        await ws.recv()
        t0 = time.perf_counter()
        await ws.send(json.dumps({"id": "b", "function": "generate", "params": {
            "prompt": prompt, "max_tokens": n, "temperature": 0, "stream": True}}))
        first = last = None
        ids = []
        while True:
            m = json.loads(await ws.recv())
            if m["status"] == "streaming":
                now = time.perf_counter()
                first = first or now
                last = now
                ids.append(m["data"]["token_id"])
            elif m["status"] == "complete":
                res = m["data"]
                break
            else:
                raise RuntimeError(m)
    tps = (len(ids) - 1) / (last - first) if len(ids) > 1 else 0
    return {"tokens": len(ids), "tokens_per_second": tps, "ttft_ms": (first - t0) * 1000,
            "worker_tokens_per_second": res["timing"]["tokens_per_second"], "ids": ids}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=os.path.join(ROOT, "build/models/bench-300.gguf"))
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--ctx", type=int, default=0, help="context size for both (0: their defaults)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--prompt", default="Once upon a time")
    ap.add_argument("--realm", default=os.path.join(ROOT, "build/realm"))
    a = ap.parse_args()
    data = tempfile.mkdtemp(prefix="realm-bench-llm-")
    proc = subprocess.Popen([a.realm, "serve", "--port", "0", "--control-port", "0",
                             "--runtime-port", "0", "--metrics-port", "0", "--data-dir", data,
                             "--model", f"bench={a.model}", "--llm-threads", str(a.threads)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    port = None
    while port is None:
        line = proc.stdout.readline()
        if not line:
            sys.exit("realm did not start")
        m = re.match(r"listening client ws://[^:]+:(\d+)", line)
        if m:
            port = int(m.group(1))
    try:
        # Warm both: the environment loads the model; the page cache holds it.
        asyncio.run(realm_once(port, a.prompt, 4))
        peer(a.model, a.prompt, 4, a.threads)
        rows = {"realm": [], "peer": []}
        for _ in range(a.runs):
            rows["peer"].append(peer(a.model, a.prompt, a.tokens, a.threads))
            rows["realm"].append(asyncio.run(realm_once(port, a.prompt, a.tokens)))
    finally:
        proc.terminate()
        proc.wait()
    same = all(r["ids"] == p["ids"] for r, p in zip(rows["realm"], rows["peer"]))

    def prefix(a, b):
        n = 0
        while n < min(len(a), len(b)) and a[n] == b[n]:
            n += 1
        return n
    same_prefix = min(prefix(r["ids"], p["ids"]) for r, p in zip(rows["realm"], rows["peer"]))
    summary = {}
    for k, rs in rows.items():
        summary[k] = {
            "tokens_per_second_median": statistics.median(r["tokens_per_second"] for r in rs),
            "ttft_ms_median": statistics.median(r["ttft_ms"] for r in rs if r["ttft_ms"] is not None),
            "runs": [{x: r[x] for x in r if x != "ids"} for r in rs],
        }
    out = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "model": os.path.basename(a.model),
        "model_bytes": os.path.getsize(a.model),
        "tokens": a.tokens, "threads": a.threads, "runs": a.runs,
        "same_tokens_as_peer": same,
        # Random weights make near-ties; float differences (batching, context size)
        # can flip one eventually: how many tokens agree before that.
        "same_prefix_tokens": same_prefix,
        "realm": summary["realm"], "peer": summary["peer"],
        "throughput_ratio_realm_over_peer": summary["realm"]["tokens_per_second_median"]
        / summary["peer"]["tokens_per_second_median"],
    }
    os.makedirs(os.path.join(ROOT, "bench/results"), exist_ok=True)
    with open(os.path.join(ROOT, "bench/results/llm.json"), "w") as f:
        json.dump(out, f, indent=2)
    print(json.dumps({k: v for k, v in out.items() if k not in ("realm", "peer")}, indent=2))
    print("realm", summary["realm"]["tokens_per_second_median"], "tok/s, ttft",
          summary["realm"]["ttft_ms_median"], "ms")
    print("peer ", summary["peer"]["tokens_per_second_median"], "tok/s, ttft",
          summary["peer"]["ttft_ms_median"], "ms")


if __name__ == "__main__":
    main()
