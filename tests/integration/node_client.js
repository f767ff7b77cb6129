#!/usr/bin/env node
// A Realm client written against the Node `ws` package, as a JavaScript SDK
// would be: welcome, health, metadata, a streaming echo and a cancel. Prints
// one JSON summary line on stdout; test_31_node_client.py checks it.
//
// usage: node node_client.js ws://127.0.0.1:PORT
'use strict';

const path = require('path');

function loadWs() {
  try {
    return require('ws'); // NODE_PATH, or a node_modules above this file
  } catch (e) {
    return require(path.join(__dirname, '..', '..', 'node_modules', 'ws'));
  }
}

const WebSocket = loadWs();
const url = process.argv[2];
if (!url) {
  console.error('usage: node node_client.js ws://host:port');
  process.exit(2);
}

const summary = {};
const waiters = []; // {match(msg), resolve}
const inbox = [];

// A safety net only: the client never waits on timers otherwise.
const deadline = setTimeout(() => {
  console.error('node client: timed out; summary so far: ' + JSON.stringify(summary));
  process.exit(1);
}, 30000);

const ws = new WebSocket(url);

function deliver(msg) {
  for (let i = 0; i < waiters.length; i++) {
    if (waiters[i].match(msg)) {
      const w = waiters.splice(i, 1)[0];
      w.resolve(msg);
      return;
    }
  }
  inbox.push(msg);
}

// Resolves with the next message (already received or future) that matches.
function next(match) {
  const i = inbox.findIndex(match);
  if (i >= 0) return Promise.resolve(inbox.splice(i, 1)[0]);
  return new Promise((resolve) => waiters.push({ match, resolve }));
}

function send(id, fn, params) {
  ws.send(JSON.stringify({ id, function: fn, params: params || {} }));
}

// All replies of one call, streaming ones then the final one.
async function call(id, fn, params) {
  send(id, fn, params);
  const replies = [];
  for (;;) {
    const m = await next((x) => x.id === id);
    replies.push(m);
    if (m.status !== 'streaming') return replies;
  }
}

ws.on('message', (data, isBinary) => {
  if (isBinary) {
    summary.unexpected_binary = true;
    return;
  }
  deliver(JSON.parse(data.toString('utf8')));
});

ws.on('error', (err) => {
  console.error('node client: ' + err.message);
  process.exit(1);
});

ws.on('open', async () => {
  try {
    summary.welcome = await next((m) => m.status === 'connected');

    const [health] = await call('h1', 'health');
    summary.health = health;

    const [meta] = await call('m1', 'metadata');
    summary.metadata = {
      status: meta.status,
      runtime: meta.data.runtime,
      functions: meta.data.functions.map((f) => f.name),
      echo_streaming: meta.data.functions.find((f) => f.name === 'echo').streaming,
    };

    const echo = await call('e1', 'echo', { message: { hello: 'wörld' }, repeat: 3, delay_ms: 5 });
    summary.echo = {
      statuses: echo.map((m) => m.status),
      indices: echo.filter((m) => m.status === 'streaming').map((m) => m.data.index),
      messages: echo.map((m) => m.data.message),
      final: echo[echo.length - 1].data,
    };

    // Cancel a long stream once it is visibly running.
    send('long', 'echo', { message: 'tick', repeat: 1000, delay_ms: 20 });
    const first = await next((m) => m.id === 'long');
    send('c1', 'cancel', { id: 'long' });
    const victim = await next((m) => m.id === 'long' && m.status !== 'streaming');
    const cancelReply = await next((m) => m.id === 'c1');
    summary.cancel = { first_status: first.status, victim, reply: cancelReply };

    const [unknown] = await call('u1', 'no_such_function');
    summary.unknown = unknown.error && unknown.error.code;

    ws.close(1000, 'done');
  } catch (e) {
    console.error('node client: ' + (e && e.stack ? e.stack : e));
    process.exit(1);
  }
});

ws.on('close', (code, reason) => {
  clearTimeout(deadline);
  summary.close = { code, reason: reason.toString() };
  process.stdout.write(JSON.stringify(summary) + '\n');
});
