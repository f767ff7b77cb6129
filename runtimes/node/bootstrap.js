/*
 * Realm's Node.js bootstrap: `node $LAMBDA_RUNTIME_DIR/bootstrap.js`.
 *
 * Loads $_HANDLER from $LAMBDA_TASK_ROOT (loader.js); an init failure goes to
 * POST /runtime/init/error and the process exits 1. Then it serves one
 * invocation at a time over the WebSocket channel, or the HTTP runtime API
 * when LAMBDA_USE_WEBSOCKET is false/0 or the WebSocket cannot be opened
 * (channels.js). Handler semantics follow aws-lambda-ric: promises, callbacks
 * (callbackWaitsForEmptyEventLoop), sync return values, context.done/succeed/
 * fail, and awslambda.streamifyResponse (stream.js). To see "event loop
 * empty" the channel's socket is unref'd while a handler runs, and the
 * pending outcome is taken on process 'beforeExit'.
 */
'use strict';

const util = require('util');
const logging = require('./console.js');

logging.patchConsole();

const { loadHandler, runtimeError } = require('./loader.js');
const { HttpChannel, WsChannel, note } = require('./channels.js');
const streaming = require('./stream.js');

const env = process.env;
const API = env.AWS_LAMBDA_RUNTIME_API;
const TASK_ROOT = env.LAMBDA_TASK_ROOT || process.cwd();
const FUNCTION_NAME = env.AWS_LAMBDA_FUNCTION_NAME;
const FUNCTION_VERSION = env.AWS_LAMBDA_FUNCTION_VERSION;
const MEMORY_SIZE = env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE;
const LOG_GROUP = env.AWS_LAMBDA_LOG_GROUP_NAME;
const LOG_STREAM = env.AWS_LAMBDA_LOG_STREAM_NAME;
const WS_FLAG = (env.LAMBDA_USE_WEBSOCKET || '').trim().toLowerCase();
const USE_WS = !['false', '0', 'no', 'off'].includes(WS_FLAG);

function runtimeName() {
  const m = /^AWS_Lambda_(.+)$/.exec(env.AWS_EXECUTION_ENV || '');
  return m ? m[1] : `nodejs${process.versions.node.split('.')[0]}.x`;
}

/* AWS's error JSON, with stackTrace (the Python runtime's name) for the trace. */
function errorPayload(err) {
  try {
    if (util.types.isNativeError(err) || (err && typeof err.name === 'string' &&
        typeof err.message === 'string' && typeof err.stack === 'string')) {
      return {
        errorType: err.name,
        errorMessage: err.message,
        stackTrace: typeof err.stack === 'string' ? err.stack.split('\n') : [],
      };
    }
    return { errorType: typeof err, errorMessage: String(err), stackTrace: [] };
  } catch (_) {
    return {
      errorType: 'handled',
      errorMessage: 'callback called with Error argument, but there was a problem while retrieving one or more of its message, name, and stack',
      stackTrace: [],
    };
  }
}

function logError(label, payload) {
  console.error(`${label} \t${JSON.stringify(payload)}`);
}

function makeContext(inv) {
  return {
    awsRequestId: inv.id,
    invokedFunctionArn: inv.arn,
    functionName: FUNCTION_NAME,
    functionVersion: FUNCTION_VERSION,
    memoryLimitInMB: MEMORY_SIZE,
    logGroupName: LOG_GROUP,
    logStreamName: LOG_STREAM,
    clientContext: inv.clientContext,
    identity: inv.identity,
    getRemainingTimeInMillis() {
      return inv.deadlineMs - Date.now();
    },
  };
}

class Runtime {
  constructor(handler) {
    this.handler = handler;
    this.streaming = streaming.isStreaming(handler);
    this.highWaterMark = streaming.highWaterMark(handler);
    this.channel = null;
    this.cur = null; // the invocation in progress
    this.next = this.next.bind(this);
    this.handle = this.handle.bind(this);
  }

  setChannel(channel) {
    this.channel = channel;
    if (channel instanceof WsChannel) channel.onFallback = (reason) => this.fallback(reason);
  }

  fallback(reason) {
    note(`WebSocket channel refused (${reason}); falling back to the HTTP runtime API`);
    const waiter = this.channel.abandon();
    this.setChannel(new HttpChannel(API));
    if (waiter) this.channel.next(waiter);
  }

  next() {
    this.channel.next(this.handle);
  }

  handle(inv) {
    logging.setRequestId(inv.id);
    if (inv.traceId) env._X_AMZN_TRACE_ID = inv.traceId;
    else delete env._X_AMZN_TRACE_ID;
    const cur = { id: inv.id, done: false, onEmpty: null, stream: null, earlyError: null };
    this.cur = cur;
    let event = inv.event;
    if (inv.body !== undefined) {
      try {
        event = inv.body === '' ? {} : JSON.parse(inv.body);
      } catch (e) {
        this.finish(cur, false, runtimeError('Runtime.UnmarshalError', `Unable to unmarshal input: ${e.message}`));
        return;
      }
    }
    this.channel.hold(false);
    if (this.streaming) this.runStreaming(event, inv, cur);
    else this.runBuffered(event, inv, cur);
  }

  runBuffered(event, inv, cur) {
    let waitForEmptyLoop = true;
    let settled = false;
    const settle = (err, result, immediate) => {
      if (settled) return;
      settled = true;
      if (err !== undefined && err !== null) this.finish(cur, false, err);
      else if (immediate || !waitForEmptyLoop) this.finish(cur, true, result);
      else cur.onEmpty = () => this.finish(cur, true, result);
    };
    const callback = (err, result) => settle(err, result, false);
    const context = makeContext(inv);
    Object.defineProperty(context, 'callbackWaitsForEmptyEventLoop', {
      enumerable: true,
      get: () => waitForEmptyLoop,
      set: (value) => { waitForEmptyLoop = value; },
    });
    context.done = (err, result) => settle(err, result, true);
    context.succeed = (result) => settle(null, result, true);
    context.fail = (err) => settle(err === undefined || err === null ? 'handled' : err, null, true);
    // The loop emptied with no outcome: AWS answers null (sync/callback handlers).
    cur.onEmpty = () => settle(null, null, true);

    let result;
    try {
      result = this.handler(event, context, callback);
    } catch (err) {
      settle(err === undefined || err === null ? 'handled' : err, null, true);
      return;
    }
    if (result && typeof result.then === 'function') {
      if (!settled) {
        cur.onEmpty = () => settle(runtimeError('Runtime.NodeJsExit',
          'The event loop emptied before the handler\'s promise settled'), null, true);
      }
      result.then(
        (value) => settle(null, value, true),
        (err) => settle(err === undefined || err === null ? 'handled' : err, null, true));
    } else if (result !== undefined) {
      settle(null, result, true);
    }
  }

  /* Buffered outcome: ok -> value is the result, else value is the error. */
  finish(cur, ok, value) {
    if (cur.done) {
      console.error('Invocation has already been reported as done. Cannot call complete more than once per invocation.');
      return;
    }
    cur.done = true;
    if (this.cur === cur) this.cur = null;
    this.channel.hold(true);
    if (ok) {
      let json;
      try {
        json = JSON.stringify(value);
      } catch (_) {
        ok = false;
        value = runtimeError('Runtime.JSONStringifyError', 'Unable to stringify response body');
      }
      if (ok) {
        this.channel.respond(cur.id, json === undefined ? 'null' : json, this.next);
        return;
      }
    }
    const payload = errorPayload(value);
    logError('Invoke Error', payload);
    this.channel.fail(cur.id, payload, this.next);
  }

  runStreaming(event, inv, cur) {
    const channel = this.channel;
    const rs = new streaming.ResponseStream(
      (contentType) => channel.openStream(cur.id, contentType), errorPayload, this.highWaterMark);
    cur.stream = rs;
    rs.on('error', () => {}); // the outcome is read on 'close'
    rs.on('close', () => this.streamClosed(cur));
    cur.onEmpty = () => this.streamFailed(cur, runtimeError('Runtime.InvalidStreamingOperation',
      'Response stream is not finished.'));
    let result;
    try {
      result = this.handler(event, rs, makeContext(inv));
    } catch (err) {
      this.streamFailed(cur, err);
      return;
    }
    if (result && typeof result.then === 'function') {
      result.then(undefined, (err) => this.streamFailed(cur, err === undefined || err === null ? 'handled' : err));
    }
  }

  /* The handler failed: a plain error if nothing was sent yet, else the stream ends with it. */
  streamFailed(cur, err) {
    const payload = errorPayload(err);
    logError('Invoke Error', payload);
    const rs = cur.stream;
    if (cur.done || rs.destroyed) return;
    cur.onEmpty = null;
    if (!rs.started && !rs._writeCalled) {
      cur.earlyError = payload;
      rs.destroy();
    } else {
      rs.fail(payload);
    }
  }

  streamClosed(cur) {
    if (cur.done) return;
    const rs = cur.stream;
    let payload = cur.earlyError;
    if (!payload && !rs.started && rs.errored) payload = errorPayload(rs.errored);
    if (payload) {
      cur.done = true;
      if (this.cur === cur) this.cur = null;
      this.channel.hold(true);
      this.channel.fail(cur.id, payload, this.next);
      return;
    }
    if (!rs.started) {
      // Destroyed without an error before anything was sent: an empty stream.
      rs._sinkOpen().end(null, () => this.streamDone(cur));
      return;
    }
    this.streamDone(cur);
  }

  streamDone(cur) {
    cur.done = true;
    if (this.cur === cur) this.cur = null;
    this.channel.hold(true);
    this.next();
  }

  /* An uncaught exception or unhandled rejection: it fails the current invocation, if any. */
  uncaught(label, err) {
    const cur = this.cur;
    if (!cur || cur.done) {
      logError(label, errorPayload(err));
    } else if (cur.stream) {
      this.streamFailed(cur, err);
    } else {
      this.finish(cur, false, err);
    }
  }
}

let runtime = null;

function initFailure(err) {
  const payload = errorPayload(err);
  logError('Init Error', payload);
  new HttpChannel(API).initError(payload, () => process.exit(1));
}

function onUncaught(label, err) {
  if (runtime && runtime.channel) runtime.uncaught(label, err);
  else initFailure(err);
}

process.on('uncaughtException', (err) => onUncaught('Uncaught Exception', err));
process.on('unhandledRejection', (reason) => {
  let err = reason;
  if (!util.types.isNativeError(reason)) {
    err = runtimeError('Runtime.UnhandledPromiseRejection', String(reason));
  }
  onUncaught('Unhandled Promise Rejection', err);
});
process.on('beforeExit', () => {
  const cur = runtime && runtime.cur;
  if (cur && cur.onEmpty) {
    const onEmpty = cur.onEmpty;
    cur.onEmpty = null;
    onEmpty();
  } else if (runtime && runtime.channel) {
    runtime.channel.hold(true);
  }
});

if (env.AWS_LAMBDA_NODEJS_NO_GLOBAL_AWSLAMBDA !== '1' && env.AWS_LAMBDA_NODEJS_NO_GLOBAL_AWSLAMBDA !== 'true') {
  globalThis.awslambda = {
    streamifyResponse: streaming.streamifyResponse,
    HttpResponseStream: streaming.HttpResponseStream,
  };
}

async function main() {
  if (!API) {
    note('AWS_LAMBDA_RUNTIME_API is not set');
    process.exit(1);
  }
  let handler;
  try {
    handler = await loadHandler(TASK_ROOT, env._HANDLER);
  } catch (err) {
    initFailure(err);
    return;
  }
  const rt = new Runtime(handler);
  let channel = null;
  if (USE_WS) {
    try {
      channel = await WsChannel.open(API, {
        type: 'register',
        function_name: FUNCTION_NAME,
        runtime: runtimeName(),
        version: FUNCTION_VERSION,
        instance_id: LOG_STREAM,
      });
    } catch (err) {
      note(`WebSocket channel unavailable (${err.message}); falling back to the HTTP runtime API`);
    }
  }
  rt.setChannel(channel || new HttpChannel(API));
  runtime = rt;
  rt.next();
}

main();
