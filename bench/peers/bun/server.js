'use strict';
/*
 * bench/peers/bun/server.js - Bun (uWebSockets inside) as the fastest peer of
 * the WebSocket and HTTP benchmarks (issue 18): the same work as the Node
 * peers (bench/peers/ws_server.js, http_server.js), on Bun.serve.
 *
 *   bun server.js ws [PORT]                 the client protocol's `health`
 *   bun server.js http [PORT] [BODY_BYTES]  GET /health (and /metrics)
 *
 * ws: {"status":"connected",...} on connect; each call parsed as JSON and
 * each reply serialized from an object (no canned strings), as Realm and the
 * Node peer do; permessage-deflate off. http: GET /health builds its small
 * JSON object per request; /metrics answers a body of BODY_BYTES built once.
 * Prints "listening ws://127.0.0.1:PORT" (or http://.../metrics) once
 * listening; SIGTERM/SIGINT stop it. Bun is pinned in package.json /
 * package-lock.json and installed by scripts/setup.sh --bench.
 */
const VERSION = '0.1.0';
const mode = process.argv[2] || 'ws';
const port = Number(process.argv[3] || 0);
const size = Number(process.argv[4] || 12000);
const started = process.hrtime.bigint();
let inFlight = 0;
let connections = 0;

function errorReply(id, code, message) {
  return JSON.stringify({ id: id === undefined ? null : id, status: 'error', error: { code, message } });
}

function makeBody(len) {
  const lines = ["# HELP bench_padding Filler the size of Realm's /metrics reply", '# TYPE bench_padding gauge'];
  let total = lines.reduce((n, l) => n + l.length + 1, 0);
  for (let i = 0; ; i++) {
    const l = `bench_padding{series="${i}"} ${i}`;
    if (total + l.length + 1 > len - 2) break;
    lines.push(l);
    total += l.length + 1;
  }
  lines.push('#' + '-'.repeat(Math.max(0, len - total - 2)));
  return lines.join('\n') + '\n';
}

let server;
if (mode === 'http') {
  const body = makeBody(size);
  server = Bun.serve({
    hostname: '127.0.0.1',
    port,
    fetch(req) {
      const path = new URL(req.url).pathname;
      if (req.method === 'GET' && path === '/health') {
        return new Response(JSON.stringify({ status: 'ok', version: VERSION }), {
          headers: { 'Server': 'bun-peer', 'Content-Type': 'application/json' },
        });
      }
      if (req.method === 'GET' && path === '/metrics') {
        return new Response(body, {
          headers: { 'Server': 'bun-peer', 'Content-Type': 'text/plain; version=0.0.4; charset=utf-8' },
        });
      }
      return new Response('not found\n', { status: 404, headers: { 'Content-Type': 'text/plain' } });
    },
  });
  process.stdout.write(`listening http://127.0.0.1:${server.port}/metrics\n`);
} else {
  server = Bun.serve({
    hostname: '127.0.0.1',
    port,
    fetch(req, srv) {
      if (srv.upgrade(req)) return undefined;
      return new Response('upgrade required\n', { status: 426 });
    },
    websocket: {
      perMessageDeflate: false,
      open(ws) {
        connections++;
        ws.send(JSON.stringify({ status: 'connected', version: VERSION, tenant_id: null }));
      },
      close() {
        connections--;
      },
      message(ws, data) {
        let call;
        try {
          call = JSON.parse(data);
        } catch (e) {
          ws.send(errorReply(null, 'INVALID_REQUEST', 'message is not JSON'));
          return;
        }
        if (call === null || typeof call !== 'object' || typeof call.id !== 'string') {
          ws.send(errorReply(null, 'INVALID_REQUEST', "'id' must be a string"));
          return;
        }
        if (call.function !== 'health') {
          ws.send(errorReply(call.id, 'FUNCTION_NOT_FOUND', `no function named '${call.function}'`));
          return;
        }
        inFlight++;
        const uptime = Number((process.hrtime.bigint() - started) / 1000000000n);
        ws.send(JSON.stringify({
          id: call.id,
          status: 'complete',
          data: { status: 'ok', version: VERSION, uptime_seconds: uptime, connections, in_flight: inFlight },
        }));
        inFlight--;
      },
    },
  });
  process.stdout.write(`listening ws://127.0.0.1:${server.port}\n`);
}

for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => {
    server.stop(true);
    process.exit(0);
  });
}
