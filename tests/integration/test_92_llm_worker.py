"""The model worker (realm-llm, src/llm/) against the fake runtime API of
fake_runtime.py: it loads build/models/tiny-test.gguf (random weights, a real
llama SPM vocabulary: gibberish, but deterministic), takes invocations over
HTTP and streams one NDJSON line per token as a chunked response.

Skipped when the worker was not built (no llama.cpp: REALM_HAVE_LLAMA off) or
the test model is missing (`make test-model`). Waits are on the fake's
conditions with timeouts, never sleeps.
"""

import json
import os
import subprocess

import pytest

from conftest import Proc
from fake_runtime import FakeRuntime

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LIB_DIR = os.environ.get("REALM_LLAMA_LIB_DIR") or os.path.join(
    ROOT, "node_modules", "@node-llama-cpp", "linux-x64", "bins", "linux-x64")
MODEL = os.environ.get("REALM_TEST_MODEL") or os.path.join(ROOT, "build", "models", "tiny-test.gguf")
TIMEOUT = 60  # the sanitizer build is slow; a token of the tiny model takes well under 1 ms in release


def worker_bin():
    env = os.environ.get("REALM_LLM_BIN")
    if env:
        return env
    cands = []
    if os.environ.get("REALM_BIN"):
        cands.append(os.path.join(os.path.dirname(os.environ["REALM_BIN"]), "realm-llm"))
    cands += [os.path.join(ROOT, c) for c in ("build/asan/realm-llm", "build/realm-llm", "build/dev/realm-llm")]
    for path in cands:
        if os.path.exists(path):
            return path
    return None


BIN = worker_bin()
pytestmark = [
    pytest.mark.skipif(BIN is None, reason="realm-llm not built (needs llama.cpp: scripts/setup.sh, then make)"),
    pytest.mark.skipif(not os.path.exists(MODEL), reason="no test model at %s (make test-model)" % MODEL),
    pytest.mark.skipif(not os.path.isdir(LIB_DIR), reason="no ggml backends at %s" % LIB_DIR),
]


class Worker:
    """A realm-llm process serving a FakeRuntime."""

    def __init__(self, model=MODEL, **env):
        self.fake = FakeRuntime()
        e = {
            "PATH": "/usr/bin:/bin",
            "AWS_LAMBDA_RUNTIME_API": self.fake.address,
            "REALM_LLM_MODEL": model,
            "REALM_LLM_LIB_DIR": LIB_DIR,
            "REALM_LLM_THREADS": "2",
        }
        e.update(env)
        self.p = Proc([BIN], env=e, stdout=False)
        self.proc = self.p.proc

    def wait_log(self, pred, timeout=TIMEOUT):
        """The first stderr line for which pred is true (waits for it)."""
        line = self.p.find_line(pred, "stderr", timeout)
        assert line, "no such line in stderr: %s" % self.stderr
        return line

    @property
    def stderr(self):
        return self.p.text("stderr")

    def call(self, event):
        """Invokes with event; returns the fake's Result."""
        rid = self.fake.invoke(event)
        res = self.fake.wait_result(rid, timeout=TIMEOUT)
        assert not self.fake.violations, self.fake.violations
        return res

    def generate(self, **params):
        """A request that must stream: returns (token lines, done line, result)."""
        res = self.call(params)
        assert res.kind == "stream", "expected a stream, got %r\nstderr: %s" % (res, self.stderr)
        assert res.stream_error is None, res.stream_error
        lines = [json.loads(c) for c in res.chunks]
        assert lines, "an empty stream"
        assert lines[-1]["type"] == "done", lines[-1]
        tokens = lines[:-1]
        assert all(t["type"] == "token" for t in tokens), tokens
        return tokens, lines[-1], res

    def close(self):
        self.proc.kill()
        self.proc.wait()
        self.fake.close()


@pytest.fixture(scope="module")
def worker():
    w = Worker()
    yield w
    w.close()


def texts(tokens):
    return [t["text"] for t in tokens]


def ids(tokens):
    return [t["token_id"] for t in tokens]


# ---- the stream ---------------------------------------------------------------------------


def test_stream_shape(worker):
    tokens, done, res = worker.generate(prompt="Once upon a time", max_tokens=12, temperature=0)
    assert res.content_type == "application/x-ndjson"
    assert res.headers.get("lambda-runtime-function-response-mode") == "streaming"
    assert res.headers.get("transfer-encoding", "").lower() == "chunked"
    # One chunk per line, each exactly one JSON line.
    for chunk in res.chunks:
        assert chunk.endswith(b"\n") and chunk.count(b"\n") == 1, chunk
    assert [t["index"] for t in tokens] == list(range(len(tokens)))
    assert [t["is_final"] for t in tokens] == [False] * (len(tokens) - 1) + [True]
    assert all(isinstance(t["token_id"], int) and t["token_id"] >= 0 for t in tokens)
    assert "".join(texts(tokens)) == done["text"]
    assert done["tokens_generated"] == len(tokens)
    assert done["prompt_tokens"] > 0
    assert done["finish_reason"] in ("length", "stop")


def test_timing_is_sane(worker):
    tokens, done, _ = worker.generate(prompt="Timing", max_tokens=20, temperature=0)
    timing = done["timing"]
    assert set(timing) == {"time_to_first_token_ms", "tokens_per_second", "total_ms"}
    assert 0 < timing["time_to_first_token_ms"] <= timing["total_ms"] < TIMEOUT * 1000, timing
    assert timing["tokens_per_second"] > 0, timing
    # n tokens cannot take less than (n - 1) / rate of wall time.
    assert timing["total_ms"] >= (len(tokens) - 1) * 1000 / timing["tokens_per_second"] * 0.5, timing


def test_max_tokens_is_exact(worker):
    for n in (1, 5, 17):
        tokens, done, _ = worker.generate(prompt="Count with me", max_tokens=n, temperature=0.9, seed=7)
        # The test model never produces EOS, so only max_tokens can end it.
        assert len(tokens) == n and done["tokens_generated"] == n, (n, tokens)
        assert done["finish_reason"] == "length"
        assert tokens[-1]["is_final"] is True


def test_same_seed_same_tokens(worker):
    params = dict(prompt="The weather today", max_tokens=24, temperature=0.9, top_p=0.95, top_k=50, seed=1234)
    a, done_a, _ = worker.generate(**params)
    b, done_b, _ = worker.generate(**params)
    assert ids(a) == ids(b) and done_a["text"] == done_b["text"]
    # Another request in between must not change anything (the context is reset).
    worker.generate(prompt="something else entirely", max_tokens=7, temperature=1.0, seed=99)
    c, _, _ = worker.generate(**params)
    assert ids(c) == ids(a)


def test_greedy_is_deterministic_and_seed_free(worker):
    a, _, _ = worker.generate(prompt="Greedy", max_tokens=16, temperature=0, seed=1)
    b, _, _ = worker.generate(prompt="Greedy", max_tokens=16, temperature=0, seed=2)
    c, _, _ = worker.generate(prompt="Greedy", max_tokens=16, temperature=0)
    assert ids(a) == ids(b) == ids(c)


def test_seeds_differ(worker):
    # With random weights the distribution is flat enough that two seeds agree on
    # 24 tokens only by a miracle; a worker that ignored the seed would fail here.
    a, _, _ = worker.generate(prompt="Seeds", max_tokens=24, temperature=1.0, top_k=0, top_p=1.0, seed=1)
    b, _, _ = worker.generate(prompt="Seeds", max_tokens=24, temperature=1.0, top_k=0, top_p=1.0, seed=2)
    assert ids(a) != ids(b)


# ---- stop strings -------------------------------------------------------------------------


def greedy(worker, prompt, n=40, **extra):
    return worker.generate(prompt=prompt, max_tokens=n, temperature=0, **extra)


@pytest.mark.parametrize("where", ["inside", "straddling", "whole-tokens"])
def test_stop_string_ends_before_it(worker, where):
    prompt = "Stop strings are %s" % where
    full, done_full, _ = greedy(worker, prompt)
    text = done_full["text"]
    # A stop string from the middle of the greedy output that does not occur earlier:
    # two characters inside token k, two on each side of the k/k+1 boundary, or
    # tokens k and k+1 whole.
    stop = None
    for k in range(8, len(full) - 2):
        before = len("".join(texts(full[:k])))
        a, b = full[k]["text"], full[k + 1]["text"]
        if where == "inside" and len(a) >= 3:
            cand, at = a[1:3], before + 1
        elif where == "straddling" and len(a) >= 2 and len(b) >= 2:
            cand, at = a[-2:] + b[:2], before + len(a) - 2
        elif where == "whole-tokens" and a and b:
            cand, at = a + b, before
        else:
            continue
        if cand.strip() and text.find(cand) == at:
            stop = cand
            break
    assert stop, "no usable stop string in %r" % text
    cut = text.index(stop)

    tokens, done, res = greedy(worker, prompt, stop=["never-there", stop])
    assert done["finish_reason"] == "stop"
    assert done["text"] == text[:cut]
    assert "".join(texts(tokens)) == done["text"]
    assert done["tokens_generated"] == len(tokens)
    # Nothing of the stop string leaks, in any chunk.
    for chunk in res.chunks:
        assert stop not in json.loads(chunk)["text"]
    # The same tokens as without the stop string, up to the cut (the last one maybe shortened).
    assert ids(tokens) == ids(full)[:len(tokens)]
    assert texts(tokens)[:-1] == texts(full)[:len(tokens) - 1]
    assert tokens[-1]["is_final"] is True
    assert full[len(tokens) - 1]["text"].startswith(tokens[-1]["text"])


def test_stop_string_at_the_start(worker):
    full, done_full, _ = greedy(worker, "Right away", n=6)
    first = full[0]["text"]
    tokens, done, _ = greedy(worker, "Right away", n=6, stop=[first[:2]])
    assert done["finish_reason"] == "stop"
    assert done["text"] == "" and tokens == [] and done["tokens_generated"] == 0


def test_stop_prefix_that_never_completes_is_released(worker):
    # A stop string whose first characters appear but which never completes: the
    # held-back text must come out in the end, all of it.
    full, done_full, _ = greedy(worker, "Held back", n=20)
    text = done_full["text"]
    stop = text[-3:] + "\x01never"
    tokens, done, _ = greedy(worker, "Held back", n=20, stop=[stop])
    assert done["finish_reason"] == "length"
    assert done["text"] == text and ids(tokens) == ids(full)
    assert texts(tokens) == texts(full)


# ---- chat ---------------------------------------------------------------------------------


def test_messages_use_the_chat_template(worker):
    tokens, done, _ = worker.generate(
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}],
        max_tokens=5, temperature=0)
    assert len(tokens) == 5
    # [INST] <<SYS>> ... <</SYS>> Hello [/INST] is far more than the bare words.
    plain, plain_done, _ = worker.generate(prompt="Be brief. Hello", max_tokens=1, temperature=0)
    assert done["prompt_tokens"] > plain_done["prompt_tokens"] + 10


# ---- bad input ----------------------------------------------------------------------------

BAD = [
    ({}, "prompt"),
    ({"prompt": 5}, "prompt"),
    ({"prompt": "x", "max_tokens": 0}, "max_tokens"),
    ({"prompt": "x", "max_tokens": "5"}, "max_tokens"),
    ({"prompt": "x", "temperature": -0.5}, "temperature"),
    ({"prompt": "x", "top_p": 1.5}, "top_p"),
    ({"prompt": "x", "top_k": -1}, "top_k"),
    ({"prompt": "x", "min_p": 2}, "min_p"),
    ({"prompt": "x", "repetition_penalty": 0}, "repetition_penalty"),
    ({"prompt": "x", "seed": -1}, "seed"),
    ({"prompt": "x", "seed": 1.5}, "seed"),
    ({"prompt": "x", "stop": "x"}, "stop"),
    ({"prompt": "x", "stop": [""]}, "stop"),
    ({"prompt": "x", "stop": ["a"] * 17}, "stop"),
    ({"prompt": "x", "messages": [{"role": "user", "content": "y"}]}, "either"),
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "user"}]}, "messages[0]"),
    ([1, 2], "object"),
    ("just a string", "object"),
]


@pytest.mark.parametrize("event,word", BAD, ids=[str(i) for i in range(len(BAD))])
def test_bad_params_get_an_error_and_the_worker_goes_on(worker, event, word):
    res = worker.call(event)
    assert res.kind == "error", res
    assert res.error["errorType"] == "InvalidParams"
    assert res.error_type_header == "InvalidParams"
    assert word in res.error["errorMessage"], res.error
    tokens, done, _ = worker.generate(prompt="still here", max_tokens=2, temperature=0)
    assert len(tokens) == 2


def test_prompt_longer_than_the_context(worker):
    res = worker.call({"prompt": "word " * 2000, "max_tokens": 1})
    assert res.kind == "error" and res.error["errorType"] == "InvalidParams"
    msg = res.error["errorMessage"]
    assert msg.startswith("prompt is ") and "tokens; the context is " in msg, msg
    n_prompt = int(msg.split()[2])
    n_ctx = int(msg.rsplit(" ", 1)[1])
    assert n_prompt > n_ctx > 0
    tokens, _, _ = worker.generate(prompt="after the long one", max_tokens=3, temperature=0)
    assert len(tokens) == 3


def test_the_context_bounds_the_answer():
    # Ask for more than the context holds: the answer stops at its end. Every
    # token but the last takes a slot (the last is sampled, never decoded).
    w = Worker(REALM_LLM_CTX="64")
    try:
        tokens, done, _ = w.generate(prompt="Short context", max_tokens=1000, temperature=0)
        line = w.wait_log(lambda l: "parameters" in l)
        n_ctx = int(line.split("context ")[1].split(",")[0])
        assert n_ctx >= 64
        assert done["finish_reason"] == "length"
        assert done["prompt_tokens"] + len(tokens) == n_ctx + 1
    finally:
        w.close()


def test_null_event(worker):
    res = worker.call(None)
    assert res.kind == "error" and res.error["errorType"] == "InvalidParams"


# ---- init ---------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["missing", "not-gguf"])
def test_bad_model_is_an_init_error(tmp_path, model):
    path = str(tmp_path / "model.gguf")
    if model == "not-gguf":
        with open(path, "w") as f:
            f.write("this is not a model\n" * 10)
    w = Worker(model=path)
    try:
        headers, body = w.fake.wait_init_error(timeout=TIMEOUT)
        assert headers.get("lambda-runtime-function-error-type") == "Runtime.ModelLoadError"
        assert body["errorType"] == "Runtime.ModelLoadError"
        assert path in body["errorMessage"], body
        assert w.proc.wait(timeout=TIMEOUT) == 1
        assert w.fake.http_next_calls == 0
    finally:
        w.close()


def test_startup_log_line(worker):
    line = worker.wait_log(lambda l: l.startswith("realm-llm: ") and "parameters" in l)
    assert MODEL in line and "n_ctx_train" in line and "llama" in line, line


# ---- the peer: llama.cpp through node-llama-cpp ---------------------------------------------

NLC = os.path.join(ROOT, "node_modules", "node-llama-cpp", "dist", "index.js")
PEER_JS = """
import {getLlama} from %s;
const [modelPath, n, ...prompts] = process.argv.slice(2);
const llama = await getLlama({gpu: false, build: "never", logLevel: "error"});
const model = await llama.loadModel({modelPath});
const context = await model.createContext({contextSize: 256, threads: 2});
const seq = context.getSequence();
const results = [];
for (const prompt of prompts) {
  await seq.clearHistory();
  let tokens = model.tokenize(prompt);
  if (model.tokens.shouldPrependBosToken) tokens = [model.tokens.bos, ...tokens];
  const ids = [];
  for await (const t of seq.evaluate(tokens, {temperature: 0})) {
    ids.push(t);
    if (ids.length >= Number(n)) break;
  }
  results.push({prompt_tokens: tokens.length, ids});
}
console.log(JSON.stringify(results));
process.exit(0);
"""


@pytest.mark.skipif(not os.path.exists(NLC), reason="node-llama-cpp is not installed (npm ci)")
def test_greedy_matches_node_llama_cpp(worker, tmp_path):
    prompts = ["Hello world", "Once upon a time, in a land far away", "The quick brown fox. " * 6]
    script = tmp_path / "peer.mjs"
    script.write_text(PEER_JS % json.dumps(NLC))
    out = subprocess.run(["node", str(script), MODEL, "40", *prompts], capture_output=True, text=True,
                         timeout=120, check=True)
    peer = json.loads(out.stdout.strip().splitlines()[-1])
    for prompt, expect in zip(prompts, peer):
        tokens, done, _ = worker.generate(prompt=prompt, max_tokens=40, temperature=0)
        assert done["prompt_tokens"] == expect["prompt_tokens"]
        assert ids(tokens) == expect["ids"], prompt
