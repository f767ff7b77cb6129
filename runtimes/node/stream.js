/*
 * Response streaming (awslambda.streamifyResponse). ResponseStream is a
 * Writable handed to the handler; each write goes straight to a channel
 * "sink" (a WebSocket chunk message or an HTTP chunk), and its callback
 * fires once the transport took the data. The sink opens lazily on the
 * first write or on end(), so setContentType() works until then. A failure
 * recorded with fail() before the end is sent as the stream's error
 * (WebSocket stream_end error, HTTP trailers).
 */
'use strict';

const { Writable } = require('stream');

const HANDLER_STREAMING = Symbol.for('aws.lambda.runtime.handler.streaming');
const HANDLER_HIGHWATERMARK = Symbol.for('aws.lambda.runtime.handler.streaming.highWaterMark');
const DEFAULT_CONTENT_TYPE = 'application/octet-stream';
const HTTP_INTEGRATION_CONTENT_TYPE = 'application/vnd.awslambda.http-integration-response';

function invalidOperation(message) {
  const e = new Error(message);
  e.name = 'Runtime.InvalidStreamingOperation';
  return e;
}

class ResponseStream extends Writable {
  /*
   * openSink(contentType) -> {ended, write(chunk, encoding, cb), end(errorPayload|null, cb)};
   * toPayload(err) -> the error JSON object.
   */
  constructor(openSink, toPayload, highWaterMark) {
    super({ decodeStrings: false, highWaterMark });
    this._openSink = openSink;
    this._toPayload = toPayload;
    this._sink = null;
    this._contentType = DEFAULT_CONTENT_TYPE;
    this._writeCalled = false;
    this._failure = null; // error payload to send with the end of the stream
    this._onBeforeFirstWrite = undefined;
  }

  get started() {
    return this._sink !== null;
  }

  setContentType(contentType) {
    if (this._writeCalled || this._sink) throw invalidOperation('Cannot set content-type, too late.');
    this._contentType = String(contentType);
  }

  _beforeFirstWrite() {
    this._writeCalled = true;
    const hook = this._onBeforeFirstWrite;
    if (typeof hook === 'function') {
      this._onBeforeFirstWrite = undefined;
      hook((chunk) => Writable.prototype.write.call(this, chunk));
    }
  }

  write(chunk, encoding, callback) {
    if (typeof chunk !== 'string' && !(chunk instanceof Uint8Array)) chunk = JSON.stringify(chunk);
    if (!this._writeCalled) this._beforeFirstWrite();
    return super.write(chunk, encoding, callback);
  }

  end(chunk, encoding, callback) {
    if (!this._writeCalled && !this.writableEnded && typeof chunk !== 'function') this._beforeFirstWrite();
    if (chunk != null && typeof chunk !== 'function' && typeof chunk !== 'string' && !(chunk instanceof Uint8Array)) {
      chunk = JSON.stringify(chunk);
    }
    return super.end(chunk, encoding, callback);
  }

  /* Ends the stream with an error (the payload goes out with the end). */
  fail(payload) {
    this._failure = payload;
    if (!this.writableEnded) super.end();
  }

  _sinkOpen() {
    if (!this._sink) this._sink = this._openSink(this._contentType);
    return this._sink;
  }

  _write(chunk, encoding, cb) {
    if (chunk.length === 0) return cb();
    // A transport that throws fails the stream (its error goes out with the
    // end) instead of leaving the write pending forever.
    try {
      this._sinkOpen().write(chunk, encoding, cb);
    } catch (err) {
      cb(err);
    }
  }

  _final(cb) {
    this._sinkOpen().end(this._failure, (err) => cb(err));
  }

  _destroy(err, cb) {
    // Destroyed before the end was sent: close the transport's stream.
    if (this._sink && !this._sink.ended) {
      const payload = err ? this._toPayload(err) : this._failure;
      this._sink.end(payload, () => cb(err));
      return;
    }
    cb(err);
  }
}

class HttpResponseStream {
  static from(underlyingStream, prelude) {
    underlyingStream.setContentType(HTTP_INTEGRATION_CONTENT_TYPE);
    const metadataPrelude = JSON.stringify(prelude);
    underlyingStream._onBeforeFirstWrite = (write) => {
      write(metadataPrelude);
      write(new Uint8Array(8)); // 8 NUL bytes separate the prelude from the body
    };
    return underlyingStream;
  }
}

function streamifyResponse(handler, options) {
  handler[HANDLER_STREAMING] = 'response';
  if (options && typeof options.highWaterMark === 'number') {
    handler[HANDLER_HIGHWATERMARK] = parseInt(options.highWaterMark, 10);
  }
  return handler;
}

function isStreaming(handler) {
  return handler[HANDLER_STREAMING] === 'response';
}

function highWaterMark(handler) {
  const hwm = parseInt(handler[HANDLER_HIGHWATERMARK], 10);
  return Number.isNaN(hwm) ? undefined : hwm;
}

module.exports = { ResponseStream, HttpResponseStream, streamifyResponse, isStreaming, highWaterMark };
