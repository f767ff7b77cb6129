'use strict';
/*
 * bench/peers/ws_server.js - the Node peer for the WebSocket benchmark: a
 * `ws` server speaking the part of Realm's client protocol the benchmark
 * uses (src/proto/message.h), with replies of the same shape:
 *
 *   on connect  {"status":"connected","version":"0.1.0","tenant_id":null}
 *   health      {"id":..,"status":"complete","data":{"status":"ok","version":"0.1.0",
 *                "uptime_seconds":N,"connections":N,"in_flight":N}}
 *   otherwise   {"id":..,"status":"error","error":{"code":..,"message":..}}
 *
 * Like Realm, each call is parsed as JSON and each reply serialized from an
 * object (no canned strings), and permessage-deflate is off.
 *
 *   node bench/peers/ws_server.js [PORT]   (default 0: an ephemeral port)
 *
 * Prints "listening ws://127.0.0.1:PORT" once listening; SIGTERM/SIGINT stop it.
 */
const { WebSocketServer } = require('ws');

const VERSION = '0.1.0';
const port = Number(process.argv[2] || 0);
const started = process.hrtime.bigint();
let inFlight = 0;

const wss = new WebSocketServer({ host: '127.0.0.1', port, perMessageDeflate: false });

function errorReply(id, code, message) {
  return JSON.stringify({ id: id === undefined ? null : id, status: 'error', error: { code, message } });
}

wss.on('connection', (ws) => {
  ws.send(JSON.stringify({ status: 'connected', version: VERSION, tenant_id: null }));
  ws.on('message', (data, isBinary) => {
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
      data: { status: 'ok', version: VERSION, uptime_seconds: uptime, connections: wss.clients.size, in_flight: inFlight },
    }));
    inFlight--;
  });
  ws.on('error', () => {}); // a peer vanishing mid-write is not our concern here
});

wss.on('listening', () => {
  process.stdout.write(`listening ws://127.0.0.1:${wss.address().port}\n`);
});

for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => {
    for (const ws of wss.clients) ws.terminate();
    wss.close(() => process.exit(0));
  });
}
