// The correctness (and benchmark) peer for Realm's `generate`: the same model,
// prompt and sampling run through node-llama-cpp, which calls the same
// llama.cpp libraries (its CPU prebuilt, never a build nor a download).
//
//   node tests/integration/llm_peer.mjs MODEL PROMPT N [options]
//
//   --seed S          sampling seed (only used when --temperature > 0)
//   --temperature T   0 (the default) is greedy
//   --top-k K         default 40 (0 = whole vocabulary)
//   --top-p P         default 0.9
//   --min-p P         default 0 (off)
//   --threads T       default 1. Give the same count as Realm's worker: left to
//                     itself node-llama-cpp takes max(4, math cores), and 4
//                     threads spinning on a 2-core machine run 100x slower
//   --ctx C           context size; default the model's training context
//
// Prompt tokens: llama_tokenize(vocab, PROMPT, add_special=true,
// parse_special=false), i.e. BOS first when the vocabulary asks for it.
// Sampling chain when T > 0, in this order (node-llama-cpp's; Realm's worker
// gives the same tokens for the same seed only with the same chain):
//   top_k(K) -> top_p(P, min_keep 1) -> min_p(P, 1) if > 0 -> temp(T) -> dist(S)
// When T = 0: greedy only. Generation stops after N tokens or at an
// end-of-generation token (llama_vocab_is_eog), which is not counted.
// Context: flash attention off, KV cache f16.
//
// Prints one JSON line on stdout:
//   {"tokens":[ids...],            generated token ids, at most N
//    "text":"...",                 their text: the concatenation of
//                                  llama_token_to_piece(id, special=false)
//    "prompt_tokens":P,            number of prompt tokens (BOS included)
//    "finish_reason":"length"|"stop",   stop = an end-of-generation token came
//    "timing":{"load_ms","time_to_first_token_ms","total_ms","tokens_per_second"}}
// time_to_first_token_ms and total_ms run from the start of prompt evaluation
// to the first and last token; tokens_per_second = (tokens-1) / (last - first)
// (pure decode speed; 0 with fewer than 2 tokens). Errors: a message on
// stderr and exit status 1 (2 for bad arguments).
import { getLlama, LlamaLogLevel } from "node-llama-cpp";

function usage(msg) {
  if (msg) process.stderr.write(`llm_peer: ${msg}\n`);
  process.stderr.write("usage: node llm_peer.mjs MODEL PROMPT N [--seed S] [--temperature T] " +
    "[--top-k K] [--top-p P] [--min-p P] [--threads T] [--ctx C]\n");
  process.exit(2);
}

const positional = [];
const opts = { seed: 0, temperature: 0, topK: 40, topP: 0.9, minP: 0, threads: 1, ctx: undefined };
const names = { "--seed": "seed", "--temperature": "temperature", "--top-k": "topK", "--top-p": "topP",
  "--min-p": "minP", "--threads": "threads", "--ctx": "ctx" };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  if (a in names) {
    if (i + 1 >= argv.length) usage(`${a} needs a value`);
    const v = Number(argv[++i]);
    if (!Number.isFinite(v)) usage(`${a}: not a number: ${argv[i]}`);
    opts[names[a]] = v;
  } else if (a.startsWith("--")) {
    usage(`unknown option ${a}`);
  } else {
    positional.push(a);
  }
}
if (positional.length !== 3) usage();
const [modelPath, prompt, nArg] = positional;
const maxTokens = Number(nArg);
if (!Number.isInteger(maxTokens) || maxTokens < 1) usage(`N must be a positive integer: ${nArg}`);

const t0 = performance.now();
const llama = await getLlama({
  gpu: false,               // CPU only: the prebuilt @node-llama-cpp/linux-x64
  build: "never",           // never compile llama.cpp
  skipDownload: true,       // never fetch sources or binaries
  usePrebuiltBinaries: true,
  progressLogs: false,
  logLevel: LlamaLogLevel.error,
  logger: (level, message) => process.stderr.write(`llama.cpp ${level}: ${message}\n`),
});
const model = await llama.loadModel({ modelPath, gpuLayers: 0 });
const context = await model.createContext({
  contextSize: opts.ctx ?? model.trainContextSize,
  sequences: 1,
  flashAttention: false,
  threads: opts.threads,
});
const sequence = context.getSequence();
const loadMs = performance.now() - t0;

const promptTokens = model.tokenize(prompt, false);
if (model.tokens.shouldPrependBosToken && model.tokens.bos != null) promptTokens.unshift(model.tokens.bos);
if (model.tokens.shouldAppendEosToken && model.tokens.eos != null) promptTokens.push(model.tokens.eos);

const sampling = opts.temperature > 0
  ? { temperature: opts.temperature, topK: opts.topK, topP: opts.topP, minP: opts.minP, seed: opts.seed }
  : { temperature: 0 };

const tokens = [];
let finishReason = "length";
const tStart = performance.now();
let tFirst = 0;
let tLast = 0;
const gen = sequence.evaluate(promptTokens, { ...sampling, yieldEogToken: true });
for await (const token of gen) {
  if (model.isEogToken(token)) {
    finishReason = "stop";
    break;
  }
  tLast = performance.now();
  if (tokens.length === 0) tFirst = tLast;
  tokens.push(token);
  if (tokens.length >= maxTokens) break;
}
await gen.return?.();

const text = model.detokenize(tokens, false, promptTokens);
const round = (x) => Math.round(x * 1000) / 1000;
process.stdout.write(JSON.stringify({
  tokens,
  text,
  prompt_tokens: promptTokens.length,
  finish_reason: finishReason,
  timing: {
    load_ms: round(loadMs),
    time_to_first_token_ms: round(tokens.length ? tFirst - tStart : 0),
    total_ms: round(tokens.length ? tLast - tStart : 0),
    tokens_per_second: round(tokens.length > 1 ? (tokens.length - 1) / ((tLast - tFirst) / 1000) : 0),
  },
}) + "\n");

await context.dispose();
await model.dispose();
await llama.dispose();
