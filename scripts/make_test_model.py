#!/usr/bin/python3
"""Writes a small deterministic GGUF model for Realm's generate tests.

No model weights can be downloaded here, so the project makes its own: the
llama architecture, the real tokenizer of a vocab-only GGUF from the llama.cpp
tree node-llama-cpp ships (extracted by scripts/setup.sh into build/llama.cpp),
and random weights from a fixed seed. The text it generates is gibberish, but
llama.cpp loads and runs it like any llama model, so tokenization, sampling,
streaming, stop strings, cancellation and timings are all real.

    PYTHONPATH=build/llama.cpp/gguf-py /usr/bin/python3 scripts/make_test_model.py
        -> build/models/tiny-test.gguf (n_embd 64, 2 layers, f16: 9.1 MB)
    ... make_test_model.py --size-mb 300 --out build/models/bench-300mb.gguf
        -> a model of about 300 MB for the benchmark (dims scaled up)

The same arguments give the same bytes on every run (numpy default_rng(seed),
tensors drawn in a fixed order, no timestamps).

Properties tests can rely on:
  - vocabulary: ggml-vocab-llama-spm.gguf (32000 tokens, SentencePiece, BOS 1
    added to prompts, EOS 2); a Llama-2 chat template in tokenizer.chat_template;
  - the output rows of every token that is not a normal text token (unknown,
    control such as BOS/EOS, the 256 byte tokens) are zero, so their logit is
    0 while text tokens' logits spread over several units: generation never
    produces EOS nor a partial UTF-8 byte, and always runs to max_tokens
    unless a stop string ends it;
  - logits are well separated (output std 4/sqrt(n_embd)), so greedy tokens do
    not depend on float rounding (thread count, batch split).
"""

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LLAMA_DIR = ROOT / "build" / "llama.cpp"
if str(LLAMA_DIR / "gguf-py") not in sys.path:
    sys.path.insert(0, str(LLAMA_DIR / "gguf-py"))

try:
    import numpy as np
except ImportError:
    sys.exit("make_test_model: numpy is missing (Debian: python3-numpy; scripts/setup.sh --test installs it)")
try:
    import gguf
except ImportError as e:
    sys.exit(f"make_test_model: gguf-py not importable ({e}); run scripts/setup.sh to extract build/llama.cpp")

VOCAB = LLAMA_DIR / "models" / "ggml-vocab-llama-spm.gguf"

# The Llama-2 chat template (as in Meta's tokenizer_config.json): llama.cpp's
# llama_chat_apply_template recognises it as "llama2".
CHAT_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
    "{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}"
    "{% endfor %}"
)

TYPES = {
    # name: (GGML tensor type, llama_ftype for general.file_type)
    "f32": (gguf.GGMLQuantizationType.F32, gguf.LlamaFileType.ALL_F32),
    "f16": (gguf.GGMLQuantizationType.F16, gguf.LlamaFileType.MOSTLY_F16),
    "q8_0": (gguf.GGMLQuantizationType.Q8_0, gguf.LlamaFileType.MOSTLY_Q8_0),
}


def copy_tokenizer(writer, path):
    """Every tokenizer.* key of the vocab-only GGUF, byte for byte."""
    reader = gguf.GGUFReader(str(path))
    n_vocab = None
    token_types = None
    for key, field in reader.fields.items():
        if not key.startswith("tokenizer."):
            continue
        vtype = field.types[0]
        if vtype == gguf.GGUFValueType.ARRAY:
            sub = field.types[-1]
            if sub == gguf.GGUFValueType.STRING:
                val = [bytes(field.parts[i]) for i in field.data]
            else:
                val = [field.parts[i][0].item() for i in field.data]
            writer.add_key_value(key, val, vtype, sub_type=sub)
            if key == "tokenizer.ggml.tokens":
                n_vocab = len(val)
            if key == "tokenizer.ggml.token_type":
                token_types = np.array(val, dtype=np.int32)
        elif vtype == gguf.GGUFValueType.STRING:
            writer.add_key_value(key, bytes(field.parts[field.data[0]]), vtype)
        else:
            writer.add_key_value(key, field.parts[field.data[0]][0].item(), vtype)
    if n_vocab is None or token_types is None:
        sys.exit(f"make_test_model: {path} has no tokenizer.ggml.tokens/token_type")
    return n_vocab, token_types


def dims_for(size_mb, n_vocab, bytes_per_param):
    """Dimensions whose weights take about size_mb MB (MB = 10^6 bytes)."""
    target = size_mb * 1e6 / bytes_per_param  # parameters
    n_embd = 64
    for e in (128, 256, 512, 768, 1024, 1536, 2048, 3072, 4096):
        if 2 * n_vocab * e <= 0.45 * target:  # embeddings + output: under half
            n_embd = e
    n_ff = (n_embd * 8 // 3 + 255) // 256 * 256 if n_embd >= 256 else n_embd * 2
    per_layer = 4 * n_embd * n_embd + 3 * n_embd * n_ff + 2 * n_embd
    n_layer = max(1, round((target - 2 * n_vocab * n_embd - n_embd) / per_layer))
    n_head = max(1, n_embd // 64) if n_embd >= 256 else 4
    return dict(n_embd=n_embd, n_layer=n_layer, n_head=n_head, n_head_kv=n_head, n_ff=n_ff,
                n_ctx=4096)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(ROOT / "build" / "models" / "tiny-test.gguf"))
    ap.add_argument("--size-mb", type=float, default=0,
                    help="scale the dims up to a model of about this many MB (benchmarks)")
    ap.add_argument("--type", choices=sorted(TYPES), default="f16",
                    help="type of the 2-D weights (norms are always f32)")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--vocab", default=str(VOCAB))
    args = ap.parse_args()

    qtype, ftype = TYPES[args.type]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")

    writer = gguf.GGUFWriter(str(tmp), "llama")
    n_vocab, token_types = copy_tokenizer(writer, args.vocab)
    if "tokenizer.chat_template" not in writer.kv_data[0]:
        writer.add_chat_template(CHAT_TEMPLATE)

    if args.size_mb > 0:
        bpp = {"f32": 4, "f16": 2, "q8_0": 34 / 32}[args.type]
        d = dims_for(args.size_mb, n_vocab, bpp)
        name = f"realm-bench-{args.size_mb:g}mb"
    else:
        d = dict(n_embd=64, n_layer=2, n_head=4, n_head_kv=4, n_ff=128, n_ctx=256)
        name = "realm-tiny-test"
    E, L, H, HKV, F = d["n_embd"], d["n_layer"], d["n_head"], d["n_head_kv"], d["n_ff"]
    head_dim = E // H

    writer.add_name(name)
    writer.add_description(f"Realm test model: random weights (seed {args.seed}), not a language model")
    writer.add_file_type(int(ftype))
    writer.add_context_length(d["n_ctx"])
    writer.add_embedding_length(E)
    writer.add_block_count(L)
    writer.add_feed_forward_length(F)
    writer.add_head_count(H)
    writer.add_head_count_kv(HKV)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(n_vocab)
    if qtype != gguf.GGMLQuantizationType.F32:
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)

    rng = np.random.default_rng(args.seed)

    def normal(shape, std):
        return (rng.standard_normal(shape, dtype=np.float32) * np.float32(std))

    def add_matrix(tname, data):
        # numpy shape (rows, cols) is GGML's ne = {cols, rows}
        if qtype == gguf.GGMLQuantizationType.F32:
            writer.add_tensor(tname, data)
        elif qtype == gguf.GGMLQuantizationType.F16:
            writer.add_tensor(tname, data.astype(np.float16))
        else:
            writer.add_tensor(tname, gguf.quants.quantize(data, qtype), raw_dtype=qtype)

    def add_norm(tname):
        writer.add_tensor(tname, np.ones(E, dtype=np.float32))

    add_matrix("token_embd.weight", normal((n_vocab, E), 1.0))
    for i in range(L):
        add_norm(f"blk.{i}.attn_norm.weight")
        add_matrix(f"blk.{i}.attn_q.weight", normal((H * head_dim, E), 1 / np.sqrt(E)))
        add_matrix(f"blk.{i}.attn_k.weight", normal((HKV * head_dim, E), 1 / np.sqrt(E)))
        add_matrix(f"blk.{i}.attn_v.weight", normal((HKV * head_dim, E), 1 / np.sqrt(E)))
        add_matrix(f"blk.{i}.attn_output.weight", normal((E, H * head_dim), 1 / np.sqrt(H * head_dim)))
        add_norm(f"blk.{i}.ffn_norm.weight")
        add_matrix(f"blk.{i}.ffn_gate.weight", normal((F, E), 1 / np.sqrt(E)))
        add_matrix(f"blk.{i}.ffn_down.weight", normal((E, F), 1 / np.sqrt(F)))
        add_matrix(f"blk.{i}.ffn_up.weight", normal((F, E), 1 / np.sqrt(E)))
    add_norm("output_norm.weight")
    output = normal((n_vocab, E), 4 / np.sqrt(E))
    output[token_types != int(gguf.TokenType.NORMAL)] = 0  # never EOS, control or byte tokens
    add_matrix("output.weight", output)

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    os.replace(tmp, out)

    n_params = 2 * n_vocab * E + E + L * (2 * E + 2 * E * H * head_dim + 2 * E * HKV * head_dim + 3 * E * F)
    print(f"make_test_model: {out} ({out.stat().st_size / 1e6:.1f} MB): llama, n_vocab {n_vocab}, "
          f"n_embd {E}, n_layer {L}, n_head {H}, n_head_kv {HKV}, n_ff {F}, n_ctx_train {d['n_ctx']}, "
          f"{args.type}, {n_params / 1e6:.2f}M params, seed {args.seed}")


if __name__ == "__main__":
    main()
