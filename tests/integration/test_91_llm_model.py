"""The test model (make test-model) against llama.cpp itself, through the
peer tests/integration/llm_peer.mjs (node-llama-cpp's CPU prebuilt): it loads,
generates exactly the tokens asked for, and the same seed gives the same ids.
These are the foundations generate's own tests stand on; no Realm server here."""
import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT

HERE = os.path.dirname(os.path.abspath(__file__))
NODE = shutil.which("node")
PEER = os.path.join(HERE, "llm_peer.mjs")
NODE_LLAMA = os.path.join(ROOT, "node_modules", "node-llama-cpp")
MODEL = os.path.join(ROOT, "build", "models", "tiny-test.gguf")
GGUF_PY = os.path.join(ROOT, "build", "llama.cpp", "gguf-py")


def node_major():
    if NODE is None:
        return 0
    v = subprocess.run([NODE, "--version"], capture_output=True, text=True).stdout.strip()
    return int(v.lstrip("v").split(".")[0] or 0)


pytestmark = [
    pytest.mark.skipif(NODE is None, reason="node is not installed"),
    pytest.mark.skipif(0 < node_major() < 20, reason="node-llama-cpp needs Node.js 20 or newer"),
    pytest.mark.skipif(not os.path.isdir(NODE_LLAMA),
                       reason="node-llama-cpp is not installed in node_modules (scripts/setup.sh)"),
    pytest.mark.skipif(not os.path.exists(MODEL), reason=f"no test model at {MODEL} (make test-model)"),
]


def peer(prompt, n, *args):
    p = subprocess.run([NODE, PEER, MODEL, prompt, str(n), *map(str, args)],
                       capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert p.returncode == 0, f"llm_peer failed ({p.returncode}):\n{p.stdout}\n{p.stderr}"
    lines = p.stdout.strip().splitlines()
    assert len(lines) == 1, f"expected one JSON line:\n{p.stdout}\n{p.stderr}"
    return json.loads(lines[0])


def test_greedy_generates_exactly_n_tokens():
    r = peer("Hello", 8)
    assert len(r["tokens"]) == 8
    assert all(isinstance(t, int) and 0 <= t < 32000 for t in r["tokens"])
    assert r["finish_reason"] == "length"
    assert r["prompt_tokens"] == 2  # BOS + "▁Hello"
    assert isinstance(r["text"], str) and r["text"]
    t = r["timing"]
    assert t["time_to_first_token_ms"] > 0 and t["total_ms"] >= t["time_to_first_token_ms"]
    assert t["tokens_per_second"] > 0


def test_greedy_is_deterministic_and_n_is_a_prefix():
    a = peer("Hello", 8)
    b = peer("Hello", 8)
    assert a["tokens"] == b["tokens"] and a["text"] == b["text"]
    # Greedy: fewer tokens are the first ones of the longer run; 1 is 1.
    assert peer("Hello", 3)["tokens"] == a["tokens"][:3]
    assert len(peer("Hello", 1)["tokens"]) == 1


def test_greedy_does_not_depend_on_threads():
    assert peer("The quick brown fox", 6, "--threads", 2)["tokens"] == \
        peer("The quick brown fox", 6, "--threads", 1)["tokens"]


def test_seeded_sampling_is_reproducible():
    args = ("--temperature", 0.8, "--top-k", 40, "--top-p", 0.9)
    a = peer("Once upon a time", 16, *args, "--seed", 42)
    b = peer("Once upon a time", 16, *args, "--seed", 42)
    c = peer("Once upon a time", 16, *args, "--seed", 43)
    assert len(a["tokens"]) == 16
    assert a["tokens"] == b["tokens"]
    assert a["tokens"] != c["tokens"]


def test_runs_to_max_tokens_without_eos():
    # The model's output rows for EOS/control/byte tokens are zero: long
    # generations end by length, never by an end-of-generation token.
    r = peer("Hello", 200)
    assert len(r["tokens"]) == 200 and r["finish_reason"] == "length"
    assert 2 not in r["tokens"]


def test_bad_arguments_exit_2():
    p = subprocess.run([NODE, PEER, MODEL, "Hello", "0"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "N must be a positive integer" in p.stderr


def test_missing_model_fails():
    p = subprocess.run([NODE, PEER, os.path.join(ROOT, "build", "models", "nope.gguf"), "Hello", "1"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode != 0 and p.stdout == ""


@pytest.fixture(scope="module")
def gguf_mod():
    if not os.path.isdir(GGUF_PY):
        pytest.skip("no gguf-py in build/llama.cpp (scripts/setup.sh)")
    sys.path.insert(0, GGUF_PY)
    try:
        import gguf  # noqa: F401
    except ImportError as e:
        pytest.skip(f"gguf-py not importable: {e}")
    finally:
        sys.path.remove(GGUF_PY)
    return gguf


def test_model_metadata(gguf_mod):
    r = gguf_mod.GGUFReader(MODEL)
    f = {k: v.contents() for k, v in r.fields.items()
         if k not in ("tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type")}
    assert f["general.architecture"] == "llama"
    assert f["general.name"] == "realm-tiny-test"
    assert f["general.file_type"] == 1  # MOSTLY_F16
    assert (f["llama.embedding_length"], f["llama.block_count"], f["llama.attention.head_count"],
            f["llama.attention.head_count_kv"], f["llama.feed_forward_length"],
            f["llama.context_length"]) == (64, 2, 4, 4, 128, 256)
    assert f["tokenizer.ggml.model"] == "llama"
    assert (f["tokenizer.ggml.bos_token_id"], f["tokenizer.ggml.eos_token_id"]) == (1, 2)
    assert "[INST]" in f["tokenizer.chat_template"]
    assert len(r.fields["tokenizer.ggml.tokens"].data) == 32000
    names = {t.name for t in r.tensors}
    assert {"token_embd.weight", "output_norm.weight", "output.weight"} <= names
    for i in range(2):
        for part in ("attn_norm", "attn_q", "attn_k", "attn_v", "attn_output",
                     "ffn_norm", "ffn_gate", "ffn_down", "ffn_up"):
            assert f"blk.{i}.{part}.weight" in names
    assert len(names) == 3 + 2 * 9


def test_model_is_deterministic(gguf_mod, tmp_path):
    out = tmp_path / "again.gguf"
    env = dict(os.environ, PYTHONPATH=GGUF_PY)
    p = subprocess.run(["/usr/bin/python3", os.path.join(ROOT, "scripts", "make_test_model.py"),
                        "--out", str(out)], capture_output=True, text=True, timeout=300, env=env)
    assert p.returncode == 0, p.stderr
    with open(MODEL, "rb") as a, open(out, "rb") as b:
        assert a.read() == b.read()
