'use strict';
/*
 * bench/peers/http_server.js - the Node peer for the HTTP benchmark: a plain
 * `http` server answering GET /health as Realm's metrics listener does (a
 * small JSON object built per request), over keep-alive connections.
 * GET /metrics answers a Prometheus-style text body of a given size, built
 * once (kept for comparison by hand). Anything else is a 404.
 *
 *   node bench/peers/http_server.js [PORT] [BODY_BYTES]   (defaults 0, 12000)
 *
 * Prints "listening http://127.0.0.1:PORT/metrics" once listening;
 * SIGTERM/SIGINT stop it.
 */
const http = require('http');

const port = Number(process.argv[2] || 0);
const size = Number(process.argv[3] || 12000);

function makeBody(len) {
  const lines = ["# HELP bench_padding Filler the size of Realm's /metrics reply", '# TYPE bench_padding gauge'];
  let total = lines.reduce((n, l) => n + l.length + 1, 0);
  for (let i = 0; ; i++) {
    const l = `bench_padding{series="${i}"} ${i}`;
    if (total + l.length + 1 > len - 2) break; // leave room for the "#..." line below
    lines.push(l);
    total += l.length + 1;
  }
  lines.push('#' + '-'.repeat(Math.max(0, len - total - 2))); // pads to exactly len bytes
  return Buffer.from(lines.join('\n') + '\n');
}

const body = makeBody(size);
const server = http.createServer((req, res) => {
  if (req.method === 'GET' && req.url === '/health') {
    const json = Buffer.from(JSON.stringify({ status: 'ok', version: '0.1.0' }));
    res.writeHead(200, {
      'Server': 'node-peer',
      'Content-Type': 'application/json',
      'Content-Length': json.length,
    });
    res.end(json);
  } else if (req.method === 'GET' && req.url === '/metrics') {
    res.writeHead(200, {
      'Server': 'node-peer',
      'Content-Type': 'text/plain; version=0.0.4; charset=utf-8',
      'Content-Length': body.length,
    });
    res.end(body);
  } else {
    res.writeHead(404, { 'Content-Type': 'text/plain', 'Content-Length': 10 });
    res.end('not found\n');
  }
});
server.keepAliveTimeout = 60000; // wrk's connections stay open for the whole run

server.listen(port, '127.0.0.1', () => {
  process.stdout.write(`listening http://127.0.0.1:${server.address().port}/metrics\n`);
});

for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => {
    server.closeAllConnections();
    server.close(() => process.exit(0));
  });
}
