/*
 * The two ways to reach Realm's runtime API (docs/runtime-channel.md), with
 * one interface used by bootstrap.js:
 *   next(cb)                  cb({id, event | body, deadlineMs, arn, traceId, clientContext, identity})
 *   respond(id, json, cb)     json: the result as JSON text
 *   fail(id, payload, cb)     payload: {errorMessage, errorType, stackTrace}
 *   openStream(id, ctype)     -> sink {ended, write(chunk, enc, cb), end(payload|null, cb)}
 *   hold(bool)                keep the process alive on this channel or not
 * HttpChannel speaks AWS's API 2018-06-01 over one keep-alive connection.
 * WsChannel keeps one WebSocket (npm "ws") and takes invocations pushed to it.
 */
'use strict';

const http = require('http');

// String.prototype.isWellFormed is Node 20+; on Node 18 the same test (no
// lone surrogate) by regular expression.
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
const isWellFormed = (s) => (typeof s.isWellFormed === 'function' ? s.isWellFormed() : !LONE_SURROGATE.test(s));

const BASE = '/2018-06-01/runtime';
const TRAILER_TYPE = 'Lambda-Runtime-Function-Error-Type';
const TRAILER_BODY = 'Lambda-Runtime-Function-Error-Body';

function note(message) {
  process.stderr.write(`realm-bootstrap: ${message}\n`);
}

function fatal(message) {
  note(message);
  process.exit(1);
}

/* A header-safe error type (the body always carries the real one). */
function errorTypeHeader(type) {
  return typeof type === 'string' && /^[\x21-\x7e]{1,256}$/.test(type) ? type : 'Runtime.Unknown';
}

function parseJsonHeader(value) {
  if (value === undefined || value === null || value === '') return undefined;
  if (typeof value !== 'string') return value;
  try {
    return JSON.parse(value);
  } catch (_) {
    return undefined;
  }
}

function splitApi(api) {
  const i = api.lastIndexOf(':');
  return { host: api.slice(0, i), port: Number(api.slice(i + 1)) };
}

class HttpChannel {
  constructor(api) {
    const { host, port } = splitApi(api);
    this.host = host;
    this.port = port;
    this.agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  }

  /* One request; retried once if a reused keep-alive socket was closed under it. */
  request(method, path, headers, body, cb, retried) {
    let finished = false;
    const req = http.request({
      host: this.host, port: this.port, method, path, headers, agent: this.agent,
    }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { text += d; });
      res.on('end', () => { if (!finished) { finished = true; cb(null, res, text); } });
      res.on('error', (err) => { if (!finished) { finished = true; cb(err); } });
    });
    req.on('error', (err) => {
      if (finished) return;
      finished = true;
      if (!retried && req.reusedSocket && (err.code === 'ECONNRESET' || err.code === 'EPIPE')) {
        this.request(method, path, headers, body, cb, true);
        return;
      }
      cb(err);
    });
    req.end(body);
  }

  next(cb) {
    this.request('GET', `${BASE}/invocation/next`, undefined, undefined, (err, res, body) => {
      if (err) fatal(`runtime API unreachable on invocation/next: ${err.message}`);
      if (res.statusCode !== 200) fatal(`runtime API answered ${res.statusCode} to invocation/next: ${body}`);
      const h = res.headers;
      cb({
        id: h['lambda-runtime-aws-request-id'],
        body,
        deadlineMs: Number(h['lambda-runtime-deadline-ms']) || 0,
        arn: h['lambda-runtime-invoked-function-arn'],
        traceId: h['lambda-runtime-trace-id'],
        clientContext: parseJsonHeader(h['lambda-runtime-client-context']),
        identity: parseJsonHeader(h['lambda-runtime-cognito-identity']),
      });
    });
  }

  post(what, path, headers, body, cb) {
    this.request('POST', path, headers, body, (err, res, text) => {
      if (err) {
        note(`runtime API unreachable on ${what}: ${err.message}`);
      } else if (res.statusCode >= 500) {
        fatal(`runtime API answered ${res.statusCode} to ${what}: ${text}`);
      } else if (res.statusCode !== 202 && res.statusCode !== 200) {
        note(`runtime API answered ${res.statusCode} to ${what}: ${text}`);
      }
      cb();
    });
  }

  initError(payload, cb) {
    const json = JSON.stringify(payload);
    this.post('init/error', `${BASE}/init/error`, {
      'Content-Type': 'application/json',
      'Content-Length': Buffer.byteLength(json),
      [TRAILER_TYPE]: errorTypeHeader(payload.errorType),
    }, json, cb);
  }

  respond(id, json, cb) {
    this.post('response', `${BASE}/invocation/${encodeURIComponent(id)}/response`,
      { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(json) }, json, cb);
  }

  fail(id, payload, cb) {
    const json = JSON.stringify(payload);
    this.post('error', `${BASE}/invocation/${encodeURIComponent(id)}/error`, {
      'Content-Type': 'application/json',
      'Content-Length': Buffer.byteLength(json),
      [TRAILER_TYPE]: errorTypeHeader(payload.errorType),
    }, json, cb);
  }

  openStream(id, contentType) {
    let endCb = null;
    let done = false;
    const complete = () => {
      if (done) return;
      done = true;
      if (endCb) endCb();
    };
    const req = http.request({
      host: this.host,
      port: this.port,
      method: 'POST',
      path: `${BASE}/invocation/${encodeURIComponent(id)}/response`,
      agent: this.agent,
      headers: {
        'Lambda-Runtime-Function-Response-Mode': 'streaming',
        'Transfer-Encoding': 'chunked',
        'Content-Type': contentType,
        Trailer: `${TRAILER_TYPE}, ${TRAILER_BODY}`,
      },
    }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { text += d; });
      res.on('end', () => {
        if (res.statusCode >= 500) fatal(`runtime API answered ${res.statusCode} to a streamed response: ${text}`);
        if (res.statusCode !== 202 && res.statusCode !== 200) {
          note(`runtime API answered ${res.statusCode} to a streamed response: ${text}`);
        }
        complete();
      });
    });
    req.on('error', (err) => {
      note(`streamed response failed: ${err.message}`);
      complete();
    });
    const sink = {
      ended: false,
      write(chunk, encoding, cb) {
        if (done) return cb(new Error('the streamed response was closed by the runtime API'));
        req.write(chunk, encoding, cb);
      },
      end(payload, cb) {
        if (sink.ended) return cb();
        sink.ended = true;
        endCb = cb;
        if (done) return complete();
        if (payload) {
          req.addTrailers({
            [TRAILER_TYPE]: errorTypeHeader(payload.errorType),
            [TRAILER_BODY]: Buffer.from(JSON.stringify(payload)).toString('base64'),
          });
        }
        req.end();
      },
    };
    return sink;
  }

  hold() {
    // Idle keep-alive sockets are unref'd by the agent; requests in flight hold the loop.
  }

  close() {
    this.agent.destroy();
  }
}

class WsChannel {
  /* Resolves once the WebSocket is open and register is sent; rejects if it cannot open. */
  static open(api, register) {
    return new Promise((resolve, reject) => {
      let WebSocket;
      try {
        WebSocket = require('ws');
      } catch (e) {
        reject(new Error(`the "ws" package cannot be loaded (${e.message})`));
        return;
      }
      const ws = new WebSocket(`ws://${api}${BASE}/websocket`, {
        perMessageDeflate: false,
        handshakeTimeout: 10000,
      });
      const onError = (err) => reject(err);
      ws.once('error', onError);
      ws.once('open', () => {
        ws.removeListener('error', onError);
        const channel = new WsChannel(ws);
        ws.send(JSON.stringify(register));
        resolve(channel);
      });
    });
  }

  constructor(ws) {
    this.ws = ws;
    this.queue = [];
    this.waiter = null;
    this.served = 0;
    this.abandoned = false;
    this.onFallback = null; // set by the runtime: an error_response came before any invocation
    ws.on('message', (data) => this.onMessage(data));
    ws.on('error', (err) => note(`runtime channel error: ${err.message}`));
    ws.on('close', (code, reason) => {
      if (this.abandoned) return;
      if (code !== 1000 && code !== 1001) note(`runtime channel closed (${code} ${reason})`);
      process.exit(code === 1000 || code === 1001 ? 0 : 1);
    });
  }

  onMessage(data) {
    let msg;
    try {
      msg = JSON.parse(data);
    } catch (_) {
      note('runtime channel sent a message that is not JSON');
      return;
    }
    switch (msg.type) {
      case 'invocation': {
        this.served++;
        const inv = {
          id: msg.request_id,
          event: msg.payload === undefined ? null : msg.payload,
          deadlineMs: Number(msg.deadline_ms) || 0,
          arn: msg.invoked_function_arn,
          traceId: msg.trace_id,
          clientContext: parseJsonHeader(msg.client_context),
          identity: parseJsonHeader(msg.cognito_identity),
        };
        const waiter = this.waiter;
        if (waiter) {
          this.waiter = null;
          waiter(inv);
        } else {
          this.queue.push(inv);
        }
        break;
      }
      case 'ping':
        this.ws.send('{"type":"pong"}');
        break;
      case 'pong':
        break;
      case 'error_response':
        if (this.served === 0 && this.onFallback) {
          this.onFallback(`${msg.code}: ${msg.message}`);
        } else {
          note(`runtime channel error_response ${msg.code}: ${msg.message}`);
        }
        break;
      default:
        break;
    }
  }

  /* Stops using this WebSocket (fallback to HTTP); returns a pending next() callback. */
  abandon() {
    this.abandoned = true;
    const waiter = this.waiter;
    this.waiter = null;
    this.ws.close(1000);
    return waiter;
  }

  next(cb) {
    if (this.queue.length) cb(this.queue.shift());
    else this.waiter = cb;
  }

  respond(id, json, cb) {
    this.ws.send(`{"type":"response","request_id":${JSON.stringify(id)},"payload":${json}}`);
    cb();
  }

  fail(id, payload, cb) {
    this.ws.send(JSON.stringify({
      type: 'error',
      request_id: id,
      error_message: payload.errorMessage,
      error_type: payload.errorType,
      stack_trace: payload.stackTrace,
    }));
    cb();
  }

  openStream(id, contentType) {
    const ws = this.ws;
    const rid = JSON.stringify(id);
    ws.send(`{"type":"stream_start","request_id":${rid},"content_type":${JSON.stringify(contentType)}}`);
    const sink = {
      ended: false,
      write(chunk, encoding, cb) {
        let msg;
        // Text goes as "data" unless a JSON parser might refuse it (NUL, lone surrogates).
        if (typeof chunk === 'string' && (encoding === 'utf8' || encoding === 'utf-8' || !encoding) &&
            chunk.indexOf('\u0000') === -1 && isWellFormed(chunk)) {
          msg = `{"type":"chunk","request_id":${rid},"data":${JSON.stringify(chunk)}}`;
        } else {
          const buf = typeof chunk === 'string' ? Buffer.from(chunk, encoding) : chunk;
          msg = `{"type":"chunk","request_id":${rid},"data_b64":"${buf.toString('base64')}"}`;
        }
        ws.send(msg, cb);
      },
      end(payload, cb) {
        if (sink.ended) return cb();
        sink.ended = true;
        const msg = payload
          ? JSON.stringify({
            type: 'stream_end', request_id: id, error_type: payload.errorType, error_message: payload.errorMessage,
          })
          : `{"type":"stream_end","request_id":${rid}}`;
        ws.send(msg, () => cb());
      },
    };
    return sink;
  }

  hold(on) {
    const socket = this.ws._socket;
    if (!socket) return;
    if (on) socket.ref();
    else socket.unref();
  }
}

module.exports = { HttpChannel, WsChannel, note, fatal, parseJsonHeader };
