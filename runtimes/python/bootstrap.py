"""Realm's Python bootstrap: /usr/bin/python3 $LAMBDA_RUNTIME_DIR/bootstrap.py.

Loads $_HANDLER ("dir/mod.func", "pkg.mod.func", "mod.obj.method") from
$LAMBDA_TASK_ROOT; an init failure goes to POST /runtime/init/error and the
process exits 1. Then it serves one invocation at a time, handler on the main
thread, over the WebSocket channel of docs/runtime-channel.md, or the HTTP
runtime API (http.client, one keep-alive connection) when
LAMBDA_USE_WEBSOCKET is false/0 or the WebSocket cannot be opened. The
WebSocket client is a small RFC 6455 client over a plain socket: a reader
thread answers pings (frames and JSON) while a handler runs and queues
invocations; the main thread sends. Only the standard library is used, and
it is imported before the task root goes on sys.path. Errors, context and
log lines follow AWS's Python runtime (awslambdaric). A handler returning a
generator streams each item it yields.
"""

import base64
import importlib
import json
import logging
import os
import socket
import struct
import sys
import threading
import time
import traceback
import types
from _queue import SimpleQueue

try:
    from _sha1 import sha1
except ImportError:  # pragma: no cover
    from hashlib import sha1

_THIS_FILE = os.path.abspath(__file__)
_ENV = os.environ
_API = _ENV.get("AWS_LAMBDA_RUNTIME_API", "")
_TASK_ROOT = _ENV.get("LAMBDA_TASK_ROOT") or os.getcwd()
_FUNCTION_NAME = _ENV.get("AWS_LAMBDA_FUNCTION_NAME")
_FUNCTION_VERSION = _ENV.get("AWS_LAMBDA_FUNCTION_VERSION")
_MEMORY_SIZE = _ENV.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
_LOG_GROUP = _ENV.get("AWS_LAMBDA_LOG_GROUP_NAME")
_LOG_STREAM = _ENV.get("AWS_LAMBDA_LOG_STREAM_NAME")
_USE_WS = _ENV.get("LAMBDA_USE_WEBSOCKET", "").strip().lower() not in ("false", "0", "no", "off")

_BASE = "/2018-06-01/runtime"
_ERROR_TYPE = "Lambda-Runtime-Function-Error-Type"
_ERROR_BODY = "Lambda-Runtime-Function-Error-Body"
_DEFAULT_STREAM_TYPE = "application/octet-stream"

_request_id = ""  # the current invocation, for log lines


def _note(message):
    """One line about the runtime itself, on stderr."""
    try:
        sys.stderr.write("realm-bootstrap: %s\n" % message)
        sys.stderr.flush()
    except Exception:
        pass


def _flush_std():
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass


def _fatal(message):
    _note(message)
    _flush_std()
    os._exit(1)


def _stdlib_import(name):
    """Import a standard module late without picking up a task-root module of the same name."""
    module = sys.modules.get(name)
    if module is not None:
        return module
    saved = sys.path
    sys.path = [p for p in saved if p not in (_TASK_ROOT, "")]
    try:
        return importlib.import_module(name)
    finally:
        sys.path = saved


# ---------------------------------------------------------------- logging


class _RequestIdFilter(logging.Filter):
    def filter(self, record):
        record.aws_request_id = _request_id
        return True


def _setup_logging():
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(line_buffering=True)
        except Exception:
            pass
    formatter = logging.Formatter(
        "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s",
        "%Y-%m-%dT%H:%M:%S",
    )
    formatter.converter = time.gmtime
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(formatter)
    handler.addFilter(_RequestIdFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    level = _ENV.get("AWS_LAMBDA_LOG_LEVEL", "").upper()
    if level in logging._nameToLevel:
        root.setLevel(level)


def _log_error(payload):
    """AWS's error log record: one line, "\r" between its parts."""
    lines = ["[ERROR] %s: %s" % (payload["errorType"], payload["errorMessage"])]
    trace = payload.get("stackTrace")
    if trace:
        lines.append("Traceback (most recent call last):")
        for frame in trace:
            lines.extend(frame.splitlines())
    try:
        sys.stdout.write("\r".join(lines) + "\n")
    except Exception:
        pass


# ---------------------------------------------------------------- errors and JSON


class _Fault(Exception):
    """A runtime-detected failure with an AWS error type (Runtime.*)."""

    def __init__(self, error_type, message, trace=None):
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.trace = trace or []

    def payload(self, request_id):
        return _make_error(self.message, self.error_type, self.trace, request_id)


def _make_error(message, error_type, trace, request_id):
    return {
        "errorMessage": message or "",
        "errorType": error_type or "",
        "requestId": request_id or "",
        "stackTrace": trace or [],
    }


def _error_payload(exc, request_id):
    frames = traceback.extract_tb(exc.__traceback__)
    start = 0
    while start < len(frames) and frames[start].filename == _THIS_FILE:
        start += 1
    return _make_error(str(exc), type(exc).__name__, traceback.format_list(frames[start:]), request_id)


def _json_default(obj):
    if type(obj).__name__ == "Decimal":
        return int(obj) if obj == obj.to_integral_value() else float(obj)
    raise TypeError("Object of type %s is not JSON serializable" % type(obj).__name__)


def _to_json(obj):
    try:
        return json.dumps(obj, default=_json_default)
    except Exception as e:
        raise _Fault("Runtime.MarshalError", "Unable to marshal response: %s" % e)


def _json_or_none(value):
    if value is None or value == "":
        return None
    if not isinstance(value, (str, bytes)):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return None


# ---------------------------------------------------------------- context


class CognitoIdentity:
    __slots__ = ["cognito_identity_id", "cognito_identity_pool_id"]

    def __repr__(self):
        return "CognitoIdentity([cognito_identity_id=%s,cognito_identity_pool_id=%s])" % (
            self.cognito_identity_id, self.cognito_identity_pool_id)


class Client:
    __slots__ = ["installation_id", "app_title", "app_version_name", "app_version_code", "app_package_name"]


class ClientContext:
    __slots__ = ["custom", "env", "client"]


def _object_from(cls, values):
    obj = cls()
    for field in cls.__slots__:
        setattr(obj, field, values.get(field) if isinstance(values, dict) else None)
    return obj


class LambdaContext:
    def __init__(self, inv):
        self.aws_request_id = inv.id
        self.log_group_name = _LOG_GROUP
        self.log_stream_name = _LOG_STREAM
        self.function_name = _FUNCTION_NAME
        self.memory_limit_in_mb = _MEMORY_SIZE
        self.function_version = _FUNCTION_VERSION
        self.invoked_function_arn = inv.arn
        self.tenant_id = None
        self.client_context = None
        if inv.client_context is not None:
            self.client_context = _object_from(ClientContext, inv.client_context)
            if self.client_context.client is not None:
                self.client_context.client = _object_from(Client, self.client_context.client)
        identity = inv.identity if isinstance(inv.identity, dict) else {}
        self.identity = CognitoIdentity()
        self.identity.cognito_identity_id = identity.get("cognitoIdentityId")
        self.identity.cognito_identity_pool_id = identity.get("cognitoIdentityPoolId")
        self._deadline_ms = inv.deadline_ms
        self._content_type = None
        self._stream_started = False

    def get_remaining_time_in_millis(self):
        remaining = self._deadline_ms - int(time.time() * 1000)
        return remaining if remaining > 0 else 0

    def log(self, msg):
        sys.stdout.write(str(msg))

    def set_content_type(self, content_type):
        """Content type of a streamed (generator) response; before the first yield."""
        if self._stream_started:
            raise RuntimeError("Cannot set content-type, too late.")
        self._content_type = str(content_type)

    def __repr__(self):
        return (
            "LambdaContext([aws_request_id=%s,log_group_name=%s,log_stream_name=%s,function_name=%s,"
            "memory_limit_in_mb=%s,function_version=%s,invoked_function_arn=%s,client_context=%s,identity=%s])"
            % (self.aws_request_id, self.log_group_name, self.log_stream_name, self.function_name,
               self.memory_limit_in_mb, self.function_version, self.invoked_function_arn,
               self.client_context, self.identity)
        )


class _Invocation:
    __slots__ = ["id", "event", "body", "content_type", "deadline_ms", "arn", "trace_id",
                 "client_context", "identity"]

    def __init__(self, id, deadline_ms, arn, trace_id, client_context, identity,
                 event=None, body=None, content_type=None):
        self.id = id
        self.event = event
        self.body = body  # HTTP: raw bytes still to unmarshal
        self.content_type = content_type
        self.deadline_ms = deadline_ms
        self.arn = arn
        self.trace_id = trace_id
        self.client_context = client_context
        self.identity = identity


# ---------------------------------------------------------------- handler loading


def _resolve(obj, names):
    for name in names:
        obj = getattr(obj, name)
    return obj


def _load_handler(handler):
    try:
        modname, fname = handler.rsplit(".", 1)
    except (ValueError, AttributeError) as e:
        raise _Fault("Runtime.MalformedHandlerName", "Bad handler '%s': %s" % (handler, e))
    if modname.split(".")[0] in sys.builtin_module_names:
        raise _Fault("Runtime.BuiltInModuleConflict",
                     "Cannot use built-in module %s as a handler module" % modname)
    dotted = modname.replace("/", ".")
    attrs = [fname]
    try:
        try:
            module = importlib.import_module(dotted)
        except ModuleNotFoundError as e:
            # "mod.obj.method": the longest importable prefix is the module, the rest attributes.
            missing = e.name or ""
            if "." not in missing or not (dotted == missing or dotted.startswith(missing + ".")):
                raise
            parent = missing.rsplit(".", 1)[0]
            try:
                module = importlib.import_module(parent)
                attrs = dotted[len(parent) + 1:].split(".") + [fname]
                _resolve(module, attrs)
            except Exception:
                raise e from None
    except ImportError as e:
        raise _Fault("Runtime.ImportModuleError", "Unable to import module '%s': %s" % (modname, e))
    except SyntaxError as e:
        trace = ['  File "%s" Line %s\n    %s' % (e.filename, e.lineno, e.text)]
        raise _Fault("Runtime.UserCodeSyntaxError", "Syntax error in module '%s': %s" % (modname, e), trace)
    try:
        func = _resolve(module, attrs)
    except AttributeError:
        raise _Fault("Runtime.HandlerNotFound", "Handler '%s' missing on module '%s'" % (fname, modname))
    if not callable(func):
        raise _Fault("Runtime.HandlerNotFound", "Handler '%s' on module '%s' is not callable" % (fname, modname))
    return func


# ---------------------------------------------------------------- HTTP channel


def _split_api(api):
    host, _, port = api.rpartition(":")
    return host, int(port)


class _HttpStream:
    """A chunked POST .../response in streaming mode; errors go in the trailers."""

    def __init__(self, channel, request_id, content_type):
        self.channel = channel
        self.path = "%s/invocation/%s/response" % (_BASE, request_id)
        self.broken = False
        headers = (
            ("Lambda-Runtime-Function-Response-Mode", "streaming"),
            ("Transfer-Encoding", "chunked"),
            ("Content-Type", content_type),
            ("Trailer", "%s, %s" % (_ERROR_TYPE, _ERROR_BODY)),
        )
        for attempt in (0, 1):
            conn = channel.conn
            try:
                conn.putrequest("POST", self.path, skip_accept_encoding=True)
                for name, value in headers:
                    conn.putheader(name, value)
                conn.endheaders()
                return
            except channel.errors as e:
                conn.close()
                if attempt:
                    self._broke(e)

    def _broke(self, exc):
        if not self.broken:
            self.broken = True
            _note("streamed response failed: %s" % exc)
            self.channel.conn.close()

    def write(self, data):
        if isinstance(data, str):
            data = data.encode("utf-8")
        if self.broken or not data:
            return
        try:
            self.channel.conn.send(b"%x\r\n%s\r\n" % (len(data), data))
        except self.channel.errors as e:
            self._broke(e)

    def end(self, payload):
        if self.broken:
            return
        tail = b"0\r\n"
        if payload is not None:
            body = base64.b64encode(json.dumps(payload).encode("utf-8"))
            tail += b"%s: %s\r\n%s: %s\r\n" % (
                _ERROR_TYPE.encode(), _header_type(payload["errorType"]).encode(), _ERROR_BODY.encode(), body)
        tail += b"\r\n"
        conn = self.channel.conn
        try:
            conn.send(tail)
            resp = conn.getresponse()
            text = resp.read()
        except self.channel.errors as e:
            self._broke(e)
            return
        self.channel.check("streamed response", resp.status, text)


def _header_type(error_type):
    if isinstance(error_type, str) and 0 < len(error_type) <= 256 and all(
            "\x21" <= c <= "\x7e" for c in error_type):
        return error_type
    return "Runtime.Unknown"


class HttpChannel:
    def __init__(self, api):
        client = _stdlib_import("http.client")
        host, port = _split_api(api)
        self.conn = client.HTTPConnection(host, port)
        self.errors = (OSError, client.HTTPException)

    def request(self, method, path, body=None, headers=None):
        for attempt in (0, 1):
            try:
                self.conn.request(method, path, body, headers or {})
                resp = self.conn.getresponse()
                return resp, resp.read()
            except self.errors:
                # A kept-alive connection the server closed: one retry on a fresh one.
                self.conn.close()
                if attempt:
                    raise

    def check(self, what, status, text):
        if status >= 500:
            _fatal("runtime API answered %d to %s: %r" % (status, what, text[:200]))
        if status not in (200, 202):
            _note("runtime API answered %d to %s: %r" % (status, what, text[:200]))

    def post(self, what, path, body, headers):
        try:
            resp, text = self.request("POST", path, body, headers)
        except self.errors as e:
            _note("runtime API unreachable on %s: %s" % (what, e))
            return
        self.check(what, resp.status, text)

    def next(self):
        try:
            resp, body = self.request("GET", _BASE + "/invocation/next")
        except self.errors as e:
            _fatal("runtime API unreachable on invocation/next: %s" % e)
        if resp.status != 200:
            _fatal("runtime API answered %d to invocation/next: %r" % (resp.status, body[:200]))
        h = resp.headers
        return _Invocation(
            id=h.get("Lambda-Runtime-Aws-Request-Id"),
            deadline_ms=int(h.get("Lambda-Runtime-Deadline-Ms") or 0),
            arn=h.get("Lambda-Runtime-Invoked-Function-Arn"),
            trace_id=h.get("Lambda-Runtime-Trace-Id"),
            client_context=_json_or_none(h.get("Lambda-Runtime-Client-Context")),
            identity=_json_or_none(h.get("Lambda-Runtime-Cognito-Identity")),
            body=body,
            content_type=h.get("Content-Type"),
        )

    def respond(self, request_id, json_text):
        self.post("response", "%s/invocation/%s/response" % (_BASE, request_id),
                  json_text.encode("utf-8"), {"Content-Type": "application/json"})

    def respond_bytes(self, request_id, data):
        self.post("response", "%s/invocation/%s/response" % (_BASE, request_id),
                  data, {"Content-Type": "application/unknown"})

    def fail(self, request_id, payload):
        self.post("error", "%s/invocation/%s/error" % (_BASE, request_id),
                  json.dumps(payload).encode("utf-8"),
                  {"Content-Type": "application/json", _ERROR_TYPE: _header_type(payload["errorType"])})

    def init_error(self, payload):
        self.post("init/error", _BASE + "/init/error", json.dumps(payload).encode("utf-8"),
                  {"Content-Type": "application/json", _ERROR_TYPE: _header_type(payload["errorType"])})

    def open_stream(self, request_id, content_type):
        return _HttpStream(self, request_id, content_type)


# ---------------------------------------------------------------- WebSocket channel


class _Fallback(Exception):
    """The WebSocket was refused after register: use HTTP."""


def _mask(data, key):
    n = len(data)
    k = int.from_bytes(key * (n // 4) + key[: n % 4], "little")
    return (int.from_bytes(data, "little") ^ k).to_bytes(n, "little")


class _WsStream:
    def __init__(self, channel, rid_json, content_type):
        self.channel = channel
        self.rid = rid_json
        channel.send('{"type":"stream_start","request_id":%s,"content_type":%s}'
                     % (rid_json, json.dumps(content_type)))

    def write(self, data):
        if isinstance(data, str) and "\x00" in data:
            data = data.encode("utf-8", "surrogatepass")  # a JSON parser may refuse \u0000
        if isinstance(data, str):
            if data:
                self.channel.send('{"type":"chunk","request_id":%s,"data":%s}' % (self.rid, json.dumps(data)))
        elif data:
            self.channel.send('{"type":"chunk","request_id":%s,"data_b64":"%s"}'
                              % (self.rid, base64.b64encode(data).decode("ascii")))

    def end(self, payload):
        if payload is None:
            self.channel.send('{"type":"stream_end","request_id":%s}' % self.rid)
        else:
            self.channel.send('{"type":"stream_end","request_id":%s,"error_type":%s,"error_message":%s}'
                              % (self.rid, json.dumps(payload["errorType"]), json.dumps(payload["errorMessage"])))


class WsChannel:
    GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

    def __init__(self, api, register):
        host, port = _split_api(api)
        path = _BASE + "/websocket"
        sock = socket.create_connection((host, port), timeout=10)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            key = base64.b64encode(os.urandom(16))
            sock.sendall(b"GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                         b"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
                         % (path.encode(), api.encode(), key))
            buf = bytearray()
            while b"\r\n\r\n" not in buf:
                data = sock.recv(4096)
                if not data:
                    raise ConnectionError("connection closed during the handshake")
                buf += data
                if len(buf) > 65536:
                    raise ConnectionError("handshake response too large")
            end = buf.index(b"\r\n\r\n")
            lines = bytes(buf[:end]).decode("latin-1").split("\r\n")
            del buf[: end + 4]
            status = lines[0].split(" ", 2)
            if len(status) < 2 or status[1] != "101":
                raise ConnectionError("handshake answered %r" % lines[0])
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            expected = base64.b64encode(sha1(key + self.GUID).digest()).decode()
            if headers.get("sec-websocket-accept") != expected:
                raise ConnectionError("bad Sec-WebSocket-Accept")
            sock.settimeout(None)
        except BaseException:
            sock.close()
            raise
        self.sock = sock
        self.buf = buf
        self.lock = threading.Lock()
        self.queue = SimpleQueue()
        self.served = 0
        self.abandoned = False
        self.send(json.dumps(register))
        threading.Thread(target=self._reader, name="realm-ws-reader", daemon=True).start()

    # -- sending (any thread)

    def _send_frame(self, opcode, data):
        n = len(data)
        if n < 126:
            head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
        elif n < 65536:
            head = struct.pack("!BBH", 0x80 | opcode, 0xFE, n)
        else:
            head = struct.pack("!BBQ", 0x80 | opcode, 0xFF, n)
        key = os.urandom(4)
        if n:
            data = _mask(data, key)
        with self.lock:
            if n < 65536:
                self.sock.sendall(head + key + data)
            else:
                self.sock.sendall(head + key)
                self.sock.sendall(data)

    def send(self, text):
        try:
            self._send_frame(0x1, text.encode("utf-8"))
        except OSError as e:
            if not self.abandoned:
                _fatal("runtime channel send failed: %s" % e)

    # -- receiving (reader thread)

    def _recv_exact(self, n):
        buf = self.buf
        if n - len(buf) > 65536:
            # A large payload: read it in place rather than through the buffer.
            out = bytearray(n)
            have = len(buf)
            out[:have] = buf
            buf.clear()
            view = memoryview(out)
            while have < n:
                got = self.sock.recv_into(view[have:])
                if not got:
                    raise EOFError
                have += got
            return out
        while len(buf) < n:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError
            buf += data
        out = bytes(buf[:n])
        del buf[:n]
        return out

    def _read_frame(self):
        b0, b1 = self._recv_exact(2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._recv_exact(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._recv_exact(8))[0]
        key = self._recv_exact(4) if b1 & 0x80 else None
        data = self._recv_exact(n) if n else b""
        if key:
            data = _mask(data, key)
        return b0 & 0x80, b0 & 0x0F, data

    def _reader(self):
        code = 1006
        try:
            parts = []
            while True:
                fin, opcode, data = self._read_frame()
                if opcode == 0x9:  # ping frame
                    self._send_frame(0xA, data)
                elif opcode == 0xA:
                    pass
                elif opcode == 0x8:  # close: echo it, then stop
                    code = struct.unpack("!H", data[:2])[0] if len(data) >= 2 else 1005
                    try:
                        self._send_frame(0x8, data[:2])
                    except OSError:
                        pass
                    break
                elif opcode in (0x0, 0x1, 0x2):
                    parts.append(data)
                    if fin:
                        message = parts[0] if len(parts) == 1 else b"".join(parts)
                        parts = []
                        self._on_message(message)
                else:
                    raise ConnectionError("unexpected WebSocket opcode %d" % opcode)
        except Exception as e:
            if self.abandoned:
                return
            _note("runtime channel lost: %s" % (str(e) or type(e).__name__))
        if self.abandoned:
            return
        if code not in (1000, 1001):
            _note("runtime channel closed (%d)" % code)
        _flush_std()
        os._exit(0 if code in (1000, 1001) else 1)

    def _on_message(self, message):
        try:
            msg = json.loads(message)
            kind = msg.get("type")
        except (ValueError, AttributeError):
            _note("runtime channel sent a message that is not a JSON object")
            return
        if kind == "invocation":
            self.served += 1
            self.queue.put(msg)
        elif kind == "ping":
            self.send('{"type":"pong"}')
        elif kind == "error_response":
            reason = "%s: %s" % (msg.get("code"), msg.get("message"))
            if self.served == 0:
                self.queue.put(_Fallback(reason))
            else:
                _note("runtime channel error_response %s" % reason)

    # -- the channel interface (main thread)

    def next(self):
        msg = self.queue.get()
        if isinstance(msg, _Fallback):
            raise msg
        return _Invocation(
            id=msg.get("request_id"),
            deadline_ms=int(msg.get("deadline_ms") or 0),
            arn=msg.get("invoked_function_arn"),
            trace_id=msg.get("trace_id"),
            client_context=_json_or_none(msg.get("client_context")),
            identity=_json_or_none(msg.get("cognito_identity")),
            event=msg.get("payload"),
        )

    def respond(self, request_id, json_text):
        self.send('{"type":"response","request_id":%s,"payload":%s}' % (json.dumps(request_id), json_text))

    def respond_bytes(self, request_id, data):
        # The channel carries JSON: bytes that are JSON text go as is, others as a string.
        try:
            text = data.decode("utf-8")
            json.loads(text)
        except ValueError:
            text = json.dumps(data.decode("utf-8", "replace"))
        self.respond(request_id, text)

    def fail(self, request_id, payload):
        self.send(json.dumps({
            "type": "error",
            "request_id": request_id,
            "error_message": payload["errorMessage"],
            "error_type": payload["errorType"],
            "stack_trace": payload["stackTrace"],
        }))

    def open_stream(self, request_id, content_type):
        return _WsStream(self, json.dumps(request_id), content_type)

    def abandon(self):
        self.abandoned = True
        try:
            self._send_frame(0x8, struct.pack("!H", 1000))
        except OSError:
            pass
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


# ---------------------------------------------------------------- invocations


def _unmarshal(inv):
    content_type = (inv.content_type or "application/json").split(";")[0].strip().lower()
    if content_type != "application/json":
        return inv.body
    if not inv.body:
        return {}
    try:
        return json.loads(inv.body)
    except ValueError as e:
        raise _Fault("Runtime.UnmarshalError", "Unable to unmarshal input: %s" % e)


def _chunk_data(item):
    if isinstance(item, (bytes, bytearray, memoryview)):
        return bytes(item)
    if isinstance(item, str):
        return item
    return _to_json(item)


def _stream(gen, ctx, inv, channel):
    """Send each yielded item as it comes; a failure before the first item is a plain error."""
    sink = None
    error = None
    while True:
        try:
            item = next(gen)
            data = _chunk_data(item)
        except StopIteration:
            break
        except Exception as e:
            error = e.payload(inv.id) if isinstance(e, _Fault) else _error_payload(e, inv.id)
            break
        if sink is None:
            ctx._stream_started = True
            _flush_std()
            sink = channel.open_stream(inv.id, ctx._content_type or _DEFAULT_STREAM_TYPE)
        sink.write(data)
        if getattr(sink, "broken", False):
            gen.close()
            return
    _flush_std()
    if error is not None:
        _log_error(error)
        _flush_std()
        if sink is None:
            channel.fail(inv.id, error)
            return
    if sink is None:
        sink = channel.open_stream(inv.id, ctx._content_type or _DEFAULT_STREAM_TYPE)
    sink.end(error)


def _invoke(handler, inv, channel):
    global _request_id
    _request_id = inv.id
    if inv.trace_id:
        _ENV["_X_AMZN_TRACE_ID"] = inv.trace_id
    else:
        _ENV.pop("_X_AMZN_TRACE_ID", None)
    try:
        ctx = LambdaContext(inv)
        event = inv.event if inv.body is None else _unmarshal(inv)
        result = handler(event, ctx)
        if isinstance(result, types.GeneratorType):
            _stream(result, ctx, inv, channel)
            return
        if isinstance(result, bytes):
            _flush_std()
            channel.respond_bytes(inv.id, result)
            return
        body = _to_json(result)
    except _Fault as e:
        error = e.payload(inv.id)
    except Exception as e:
        error = _error_payload(e, inv.id)
    else:
        _flush_std()
        channel.respond(inv.id, body)
        return
    _log_error(error)
    _flush_std()
    channel.fail(inv.id, error)


def _runtime_name():
    env = _ENV.get("AWS_EXECUTION_ENV", "")
    if env.startswith("AWS_Lambda_"):
        return env[len("AWS_Lambda_"):]
    return "python%d.%d" % sys.version_info[:2]


def main():
    if not _API:
        _fatal("AWS_LAMBDA_RUNTIME_API is not set")
    _setup_logging()
    if not _USE_WS:
        _stdlib_import("http.client")
    # User modules resolve from the task root, not from this file's directory.
    here = os.path.dirname(_THIS_FILE)
    sys.path[:] = [p for p in sys.path if p not in (here, "")]
    sys.path.insert(0, _TASK_ROOT)

    try:
        handler = _load_handler(_ENV.get("_HANDLER", ""))
    except Exception as e:
        payload = e.payload(None) if isinstance(e, _Fault) else _error_payload(e, None)
        _log_error(payload)
        _flush_std()
        HttpChannel(_API).init_error(payload)
        _flush_std()
        sys.exit(1)

    channel = None
    if _USE_WS:
        try:
            channel = WsChannel(_API, {
                "type": "register",
                "function_name": _FUNCTION_NAME,
                "runtime": _runtime_name(),
                "version": _FUNCTION_VERSION,
                "instance_id": _LOG_STREAM,
            })
        except (OSError, ValueError) as e:
            _note("WebSocket channel unavailable (%s); falling back to the HTTP runtime API" % e)
    if channel is None:
        channel = HttpChannel(_API)

    while True:
        try:
            inv = channel.next()
        except _Fallback as e:
            _note("WebSocket channel refused (%s); falling back to the HTTP runtime API" % e)
            channel.abandon()
            channel = HttpChannel(_API)
            continue
        _invoke(handler, inv, channel)


if __name__ == "__main__":
    main()
