// bench/peers/serverless/serverless.js - the peer's service (Serverless
// Framework 3 reads serverless.js as it reads serverless.yml): the no-op
// Node function of bench/functions/index.js as `noop`, and as cold0..coldN-1
// (N = REALM_BENCH_COLD, default 5), each first invoked once by bench/invoke.py
// to time a cold start (serverless-offline loads a handler on its first call).
"use strict";

const cold = Number(process.env.REALM_BENCH_COLD || 5);
const functions = { noop: { handler: "noop.handler" } };
for (let i = 0; i < cold; i++) functions[`cold${i}`] = { handler: "noop.handler" };

module.exports = {
  service: "realm-bench-peer",
  frameworkVersion: "3",
  provider: { name: "aws", runtime: "nodejs20.x", region: "us-east-1", stage: "bench" },
  functions,
  plugins: ["serverless-offline"],
};
