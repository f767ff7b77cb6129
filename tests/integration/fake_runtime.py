"""An in-process fake of Realm's runtime API, for testing the bootstraps.

One listener on 127.0.0.1 (port 0) serves both channels of
docs/runtime-channel.md: AWS's HTTP API 2018-06-01 (http.server, keep-alive,
chunked streamed responses with trailers) and the WebSocket channel at
/2018-06-01/runtime/websocket (the upgraded connection is driven by the
sans-I/O ServerConnection of Debian's websockets 10.4, which checks the
client's handshake and masking). invoke() queues an invocation; whichever
channel asks first gets it, one at a time per WebSocket; results, init
errors, register messages and protocol violations are recorded, and the
wait_* methods block on conditions (with timeouts), never on sleeps.

ws_mode: "accept" (normal), "reject" (the upgrade gets 404),
"error_response" (register is answered with error_response, as a refusal).
next_status: a status other than 200 makes every GET .../next fail with it.
GET /test/gate/<name> blocks until open_gate(name): handlers use it to pause.
"""

import base64
import collections
import json
import socket
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from websockets.frames import Opcode
from websockets.server import ServerConnection

BASE = "/2018-06-01/runtime"
WS_PATH = BASE + "/websocket"
DEFAULT_TIMEOUT = 10


class Result:
    """What the bootstrap answered for one invocation."""

    def __init__(self, request_id):
        self.request_id = request_id
        self.channel = None       # "ws" or "http": where the invocation was delivered
        self.kind = None          # "response", "error" or "stream"
        self.payload = None       # response: the JSON value
        self.body = None          # HTTP response/error: raw body bytes
        self.headers = {}         # HTTP: request headers (lower-case names)
        self.error = None         # error: {errorMessage, errorType, stackTrace, ...}
        self.error_type_header = None
        self.content_type = None  # stream
        self.chunks = []          # stream: bytes, in arrival order
        self.stream_error = None  # stream: {"type", "message", "body"} from stream_end or trailers
        self.trailers = {}
        self.done = False

    def __repr__(self):
        return "Result(%r)" % {k: v for k, v in vars(self).items() if v not in (None, [], {})}


class FakeRuntime:
    def __init__(self, ws_mode="accept", next_status=200):
        assert ws_mode in ("accept", "reject", "error_response")
        self.ws_mode = ws_mode
        self.next_status = next_status
        self.cond = threading.Condition()
        self.pending = collections.deque()
        self.results = {}
        self.init_errors = []     # (headers, body)
        self.registers = []       # register messages
        self.violations = []      # protocol errors seen
        self.http_next_calls = 0
        self.ws_connections = 0
        self.pongs = 0
        self.peers = []
        self.gates = {}
        self.closed = False
        fake = self

        class Handler(_Handler):
            pass

        Handler.fake = fake
        self.server = _Server(("127.0.0.1", 0), Handler)
        self.server.fake = fake
        self.port = self.server.server_address[1]
        self.address = "127.0.0.1:%d" % self.port
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    def _accept_loop(self):
        # Not serve_forever(): its shutdown() waits up to a poll interval.
        while True:
            try:
                sock, addr = self.server.socket.accept()
            except OSError:
                return
            self.server.process_request(sock, addr)

    # ---- test side

    def invoke(self, payload=None, *, request_id=None, deadline_ms=None, arn=None,
               client_context=None, identity=None, trace_id=None):
        rid = request_id or str(uuid.uuid4())
        inv = {
            "request_id": rid,
            "payload": payload,
            "deadline_ms": deadline_ms if deadline_ms is not None else int(time.time() * 1000) + 30000,
            "invoked_function_arn": arn or "arn:aws:lambda:us-east-1:000000000000:function:test-fn",
            "trace_id": trace_id or "Root=1-00000000-000000000000000000000000;Sampled=0",
            "client_context": client_context,
            "cognito_identity": identity,
        }
        with self.cond:
            self.results[rid] = Result(rid)
            self.pending.append(inv)
            self.cond.notify_all()
        return rid

    def _wait(self, predicate, timeout, what):
        deadline = time.monotonic() + timeout
        with self.cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("timed out waiting for %s" % what)
                self.cond.wait(left)

    def wait_result(self, rid, timeout=DEFAULT_TIMEOUT):
        res = self.results[rid]
        self._wait(lambda: res.done, timeout, "the result of %s" % rid)
        return res

    def wait_chunks(self, rid, count, timeout=DEFAULT_TIMEOUT):
        res = self.results[rid]
        self._wait(lambda: len(res.chunks) >= count or res.done, timeout, "%d chunks of %s" % (count, rid))
        return res

    def wait_init_error(self, timeout=DEFAULT_TIMEOUT):
        self._wait(lambda: self.init_errors, timeout, "an init error")
        return self.init_errors[0]

    def wait_registered(self, timeout=DEFAULT_TIMEOUT):
        self._wait(lambda: self.registers, timeout, "register")
        return self.registers[0]

    def ping(self, timeout=DEFAULT_TIMEOUT):
        """Sends {"type":"ping"} on the newest WebSocket and waits for the pong."""
        with self.cond:
            before = self.pongs
            peer = self.peers[-1]
        peer.send({"type": "ping"})
        self._wait(lambda: self.pongs > before, timeout, "pong")

    def gate(self, name):
        with self.cond:
            self.gates[name] = threading.Event()

    def open_gate(self, name):
        self.gates[name].set()

    def close(self):
        with self.cond:
            self.closed = True
            self.cond.notify_all()
            peers = list(self.peers)
        for peer in peers:
            peer.shutdown()
        try:
            self.server.socket.shutdown(socket.SHUT_RDWR)  # wakes accept()
        except OSError:
            pass
        self._thread.join(DEFAULT_TIMEOUT)
        self.server.server_close()

    # ---- shared by both channels

    def _take(self, peer=None):
        """The next invocation, or None once closed (or once the peer is gone)."""
        with self.cond:
            while not self.pending and not self.closed and not (peer and peer.gone):
                self.cond.wait()
            if self.closed or (peer and peer.gone):
                return None
            return self.pending.popleft()

    def _result(self, rid, channel):
        with self.cond:
            res = self.results.get(rid)
            if res is None:
                self.violations.append("%s: unknown request id %r" % (channel, rid))
            elif res.done:
                self.violations.append("%s: second answer for %r" % (channel, rid))
                res = None
            return res

    def _finish(self, res):
        with self.cond:
            res.done = True
            self.cond.notify_all()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake = None

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):
            return  # the bootstrap went away (killed at teardown)
        self.fake.violations.append("fake: %r" % exc)
        super().handle_error(request, client_address)


class _Peer:
    """One WebSocket connection from a bootstrap."""

    def __init__(self, fake, conn, sock):
        self.fake = fake
        self.conn = conn
        self.sock = sock
        self.lock = threading.Lock()
        self.registered = False
        self.inflight = None
        self.gone = False
        self.parts = []

    def flush(self):
        for data in self.conn.data_to_send():
            if data:
                self.sock.sendall(data)
            else:
                try:
                    self.sock.shutdown(socket.SHUT_WR)
                except OSError:
                    pass

    def send(self, obj):
        with self.lock:
            self.conn.send_text(json.dumps(obj).encode())
            self.flush()

    def send_close(self, code=1000):
        with self.lock:
            self.conn.send_close(code)
            self.flush()

    def shutdown(self):
        with self.fake.cond:
            self.gone = True
            self.fake.cond.notify_all()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def dispatch(self):
        fake = self.fake
        while True:
            with fake.cond:
                while self.inflight is not None and not self.gone and not fake.closed:
                    fake.cond.wait()
            inv = fake._take(self)
            if inv is None:
                return
            with fake.cond:
                if self.gone:
                    fake.pending.appendleft(inv)
                    fake.cond.notify_all()
                    return
                self.inflight = inv["request_id"]
                fake.results[inv["request_id"]].channel = "ws"
            self.send(dict(type="invocation", **inv))

    def on_frame(self, frame):
        if frame.opcode in (Opcode.TEXT, Opcode.BINARY, Opcode.CONT):
            if frame.opcode == Opcode.BINARY:
                self.fake.violations.append("ws: binary frame")
            self.parts.append(frame.data)
            if frame.fin:
                data, self.parts = b"".join(self.parts), []
                try:
                    msg = json.loads(data)
                except ValueError:
                    self.fake.violations.append("ws: not JSON: %r" % data[:100])
                    return
                self.on_message(msg)

    def on_message(self, msg):
        fake = self.fake
        kind = msg.get("type")
        if kind == "register":
            with fake.cond:
                fake.registers.append(msg)
                fake.cond.notify_all()
            if fake.ws_mode == "error_response":
                self.send({"type": "error_response", "code": "INVALID_STATE", "message": "refused by the test"})
                return
            self.registered = True
            threading.Thread(target=self.dispatch, daemon=True).start()
            return
        if kind == "ping":
            self.send({"type": "pong"})
            return
        if kind == "pong":
            with fake.cond:
                fake.pongs += 1
                fake.cond.notify_all()
            return
        if not self.registered:
            fake.violations.append("ws: %s before register" % kind)
            return
        rid = msg.get("request_id")
        if rid != self.inflight:
            fake.violations.append("ws: %s for %r while %r is in flight" % (kind, rid, self.inflight))
            return
        res = fake.results[rid]
        end = False
        if kind == "response":
            res.kind, res.payload, end = "response", msg.get("payload"), True
        elif kind == "error":
            res.kind, end = "error", True
            res.error = {
                "errorMessage": msg.get("error_message"),
                "errorType": msg.get("error_type"),
                "stackTrace": msg.get("stack_trace"),
            }
        elif kind == "stream_start":
            res.kind, res.content_type = "stream", msg.get("content_type")
        elif kind == "chunk":
            if res.kind != "stream":
                fake.violations.append("ws: chunk before stream_start")
            data = msg["data"].encode() if "data" in msg else base64.b64decode(msg["data_b64"])
            with fake.cond:
                res.chunks.append(data)
                fake.cond.notify_all()
        elif kind == "stream_end":
            if res.kind != "stream":
                fake.violations.append("ws: stream_end before stream_start")
            end = True
            if "error_type" in msg or "error_message" in msg:
                res.stream_error = {"type": msg.get("error_type"), "message": msg.get("error_message")}
        else:
            fake.violations.append("ws: unknown message %r" % kind)
            return
        if end:
            with fake.cond:
                self.inflight = None
                res.done = True
                fake.cond.notify_all()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are separate writes
    fake = None

    def log_message(self, *args):
        pass

    def reply(self, status, body=b"", headers=None):
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def read_body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def read_chunked(self, on_chunk):
        while True:
            size = int(self.rfile.readline(65537).split(b";")[0].strip(), 16)
            if size == 0:
                break
            data = self.rfile.read(size)
            self.rfile.read(2)
            on_chunk(data)
        trailers = {}
        while True:
            line = self.rfile.readline(65537)
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            trailers[name.strip().lower()] = value.strip()
        return trailers

    def do_GET(self):
        fake = self.fake
        if self.path == WS_PATH and self.headers.get("Upgrade", "").lower() == "websocket":
            if fake.ws_mode == "reject":
                self.reply(404, {"errorType": "NotFound", "errorMessage": "no WebSocket here"})
                return
            self.websocket()
            return
        if self.path.startswith("/test/gate/"):
            gate = fake.gates[self.path[len("/test/gate/"):]]
            self.reply(200 if gate.wait(DEFAULT_TIMEOUT) else 504, b"open")
            return
        if self.path != BASE + "/invocation/next":
            self.reply(404, {"errorType": "NotFound", "errorMessage": self.path})
            return
        with fake.cond:
            fake.http_next_calls += 1
        if fake.next_status != 200:
            self.reply(fake.next_status, {"errorType": "InternalServerError", "errorMessage": "test"})
            return
        inv = fake._take()
        if inv is None:
            self.close_connection = True
            return
        fake.results[inv["request_id"]].channel = "http"
        headers = {
            "Content-Type": "application/json",
            "Lambda-Runtime-Aws-Request-Id": inv["request_id"],
            "Lambda-Runtime-Deadline-Ms": str(inv["deadline_ms"]),
            "Lambda-Runtime-Invoked-Function-Arn": inv["invoked_function_arn"],
            "Lambda-Runtime-Trace-Id": inv["trace_id"],
        }
        if inv["client_context"] is not None:
            headers["Lambda-Runtime-Client-Context"] = json.dumps(inv["client_context"])
        if inv["cognito_identity"] is not None:
            headers["Lambda-Runtime-Cognito-Identity"] = json.dumps(inv["cognito_identity"])
        self.reply(200, json.dumps(inv["payload"]).encode(), headers)

    def do_POST(self):
        fake = self.fake
        headers = {k.lower(): v for k, v in self.headers.items()}
        if self.path == BASE + "/init/error":
            body = self.read_body()
            with fake.cond:
                fake.init_errors.append((headers, json.loads(body)))
                fake.cond.notify_all()
            self.reply(202, {"status": "OK"})
            return
        parts = self.path.split("/")
        # "", "2018-06-01", "runtime", "invocation", id, kind
        if len(parts) != 6 or parts[3] != "invocation" or parts[5] not in ("response", "error"):
            self.read_body()
            self.reply(404, {"errorType": "NotFound", "errorMessage": self.path})
            return
        rid, kind = parts[4], parts[5]
        res = fake._result(rid, "http")
        streaming = headers.get("lambda-runtime-function-response-mode") == "streaming"
        if res is None:
            if streaming:
                self.read_chunked(lambda data: None)
            else:
                self.read_body()
            self.reply(400, {"errorType": "InvalidRequestID", "errorMessage": "Invalid request ID"})
            return
        res.headers = headers
        if kind == "response" and streaming:
            res.kind, res.content_type = "stream", headers.get("content-type")
            if headers.get("transfer-encoding", "").lower() != "chunked":
                fake.violations.append("http: streamed response without chunked encoding")

            def on_chunk(data):
                with fake.cond:
                    res.chunks.append(data)
                    fake.cond.notify_all()

            res.trailers = self.read_chunked(on_chunk)
            if "lambda-runtime-function-error-type" in res.trailers:
                body = res.trailers.get("lambda-runtime-function-error-body")
                res.stream_error = {
                    "type": res.trailers["lambda-runtime-function-error-type"],
                    "body": json.loads(base64.b64decode(body)) if body else None,
                }
        elif kind == "response":
            res.kind, res.body = "response", self.read_body()
            try:
                res.payload = json.loads(res.body)
            except ValueError:
                fake.violations.append("http: response body is not JSON: %r" % res.body[:100])
        else:
            res.kind, res.body = "error", self.read_body()
            res.error = json.loads(res.body)
            res.error_type_header = headers.get("lambda-runtime-function-error-type")
        self.reply(202, {"status": "OK"})
        fake._finish(res)

    def websocket(self):
        fake = self.fake
        conn = ServerConnection(max_size=None)
        # http.server already read the request: hand the same bytes to websockets.
        head = "GET %s HTTP/1.1\r\n%s\r\n" % (self.path, "".join(
            "%s: %s\r\n" % (k, v) for k, v in self.headers.items()))
        conn.receive_data(head.encode("latin-1"))
        request = conn.events_received()[0]
        response = conn.accept(request)
        conn.send_response(response)
        peer = _Peer(fake, conn, self.connection)
        with peer.lock:
            peer.flush()
        self.close_connection = True
        if response.status_code != 101:
            fake.violations.append("ws: handshake refused: %s" % conn.handshake_exc)
            return
        with fake.cond:
            fake.ws_connections += 1
            fake.peers.append(peer)
        try:
            while True:
                data = self.rfile.read1(65536)
                with peer.lock:
                    if not data:
                        conn.receive_eof()
                    else:
                        conn.receive_data(data)
                    events = conn.events_received()
                    peer.flush()
                for frame in events:
                    peer.on_frame(frame)
                if not data or conn.close_rcvd is not None:
                    break
        except OSError:
            pass
        finally:
            with fake.cond:
                peer.gone = True
                fake.cond.notify_all()
