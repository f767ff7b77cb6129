"""A tiny RFC 6455 client over a raw socket, for byte-exact protocol tests.

Unlike a real client library it lets a test send anything: unmasked frames,
reserved bits and opcodes, bad lengths, fragments in any order. Reads are
blocking with a socket timeout, so a test never sleeps: it waits for bytes.
"""
import base64
import hashlib
import json
import os
import socket
import struct

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def accept_for(key):
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


def build_frame(opcode, payload=b"", fin=True, rsv=0, mask=True, mask_key=None, length_bits=None):
    """One frame's bytes. rsv is the 3-bit RSV1..3 field (4 = RSV1, 2 = RSV2, 1 = RSV3).

    length_bits forces the length encoding (7, 16 or 64); by default the
    minimal one is used, as RFC 6455 5.2 requires.
    """
    if isinstance(payload, str):
        payload = payload.encode()
    n = len(payload)
    head = bytes([(0x80 if fin else 0) | ((rsv & 7) << 4) | (opcode & 0xF)])
    if length_bits is None:
        length_bits = 7 if n <= 125 else 16 if n <= 0xFFFF else 64
    mbit = 0x80 if mask else 0
    if length_bits == 7:
        assert n <= 125
        head += bytes([mbit | n])
    elif length_bits == 16:
        head += bytes([mbit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([mbit | 127]) + struct.pack("!Q", n)
    if not mask:
        return head + payload
    key = mask_key if mask_key is not None else os.urandom(4)
    body = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return head + key + body


def close_payload(code, reason=b""):
    if isinstance(reason, str):
        reason = reason.encode()
    return struct.pack("!H", code) + reason


class Frame:
    def __init__(self, fin, rsv, opcode, masked, payload, header):
        self.fin, self.rsv, self.opcode, self.masked = fin, rsv, opcode, masked
        self.payload, self.header = payload, header

    @property
    def close_code(self):
        assert self.opcode == CLOSE, f"not a close frame: opcode {self.opcode:#x}"
        return struct.unpack("!H", self.payload[:2])[0] if len(self.payload) >= 2 else None

    def json(self):
        return json.loads(self.payload)

    def __repr__(self):
        return (f"Frame(fin={self.fin}, rsv={self.rsv}, opcode={self.opcode:#x}, "
                f"len={len(self.payload)}, payload={self.payload[:80]!r})")


class HandshakeError(Exception):
    def __init__(self, status, headers, body):
        super().__init__(f"handshake answered {status}: {headers} {body!r}")
        self.status, self.headers, self.body = status, headers, body


def read_http_response(sock, buf=b""):
    """Reads one HTTP response head (and a Content-Length body). Returns
    (status, headers with lower-case names, body, leftover bytes)."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise EOFError(f"connection closed during the response head: {buf!r}")
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    body = b""
    if status != 101 and "content-length" in headers:
        n = int(headers["content-length"])
        while len(rest) < n:
            chunk = sock.recv(65536)
            if not chunk:
                break
            rest += chunk
        body, rest = rest[:n], rest[n:]
    return status, headers, body, rest


class RawWS:
    """A WebSocket client connection whose every byte the test controls."""

    def __init__(self, port, timeout=10, path="/", headers=None, key=None, read_welcome=True,
                 early=b""):
        """Opens and upgrades; early is sent in the same write as the request."""
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.key = key or base64.b64encode(os.urandom(16)).decode()
        hdrs = {
            "Host": f"127.0.0.1:{port}",
            "Upgrade": "websocket",
            "Connection": "Upgrade",
            "Sec-WebSocket-Key": self.key,
            "Sec-WebSocket-Version": "13",
        }
        hdrs.update(headers or {})
        req = f"GET {path} HTTP/1.1\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in hdrs.items() if v is not None) + "\r\n"
        self.sock.sendall(req.encode() + early)
        status, self.headers, body, self.buf = read_http_response(self.sock)
        if status != 101:
            self.sock.close()
            raise HandshakeError(status, self.headers, body)
        assert self.headers.get("sec-websocket-accept") == accept_for(self.key), self.headers
        self.welcome = None
        if read_welcome:
            f = self.recv_frame()
            assert f.opcode == TEXT, f
            self.welcome = f.json()

    # ---- sending ----

    def send_raw(self, data):
        self.sock.sendall(data)

    def send_bytewise(self, data):
        """One byte per send() (TCP_NODELAY is on), to exercise partial parsing."""
        for i in range(len(data)):
            self.sock.sendall(data[i:i + 1])

    def send_frame(self, opcode, payload=b"", **kw):
        self.sock.sendall(build_frame(opcode, payload, **kw))

    def send_text(self, text, **kw):
        self.send_frame(TEXT, text, **kw)

    def send_json(self, obj):
        self.send_text(json.dumps(obj))

    def send_close(self, code=None, reason=b""):
        self.send_frame(CLOSE, b"" if code is None else close_payload(code, reason))

    # ---- receiving ----

    def _need(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError(f"EOF with {len(self.buf)} of {n} bytes buffered")
            self.buf += chunk

    def _take(self, n):
        self._need(n)
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def recv_frame(self):
        """Reads one frame; EOFError when the peer closes first."""
        h = self._take(2)
        fin, rsv, opcode = h[0] >> 7, (h[0] >> 4) & 7, h[0] & 0xF
        masked, n = h[1] >> 7, h[1] & 0x7F
        header = h
        if n == 126:
            ext = self._take(2)
            header += ext
            n = struct.unpack("!H", ext)[0]
        elif n == 127:
            ext = self._take(8)
            header += ext
            n = struct.unpack("!Q", ext)[0]
        key = None
        if masked:
            key = self._take(4)
            header += key
        payload = self._take(n)
        if key:
            payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        return Frame(bool(fin), rsv, opcode, bool(masked), payload, header)

    def recv_data(self, answer_pings=True):
        """The next data frame (control frames are skipped; pings answered)."""
        while True:
            f = self.recv_frame()
            if f.opcode == PING and answer_pings:
                self.send_frame(PONG, f.payload)
                continue
            if f.opcode in (PING, PONG):
                continue
            return f

    def recv_json(self):
        f = self.recv_data()
        assert f.opcode == TEXT, f"expected a text reply, got {f}"
        return f.json()

    def call(self, function, params=None, id="req_1"):
        """Sends a call and returns its final reply (streaming ones are dropped)."""
        self.send_json({"id": id, "function": function, "params": params or {}})
        while True:
            msg = self.recv_json()
            if msg.get("id") == id and msg.get("status") != "streaming":
                return msg

    def expect_close(self, code):
        """Reads until the server's close frame, asserts its code, then expects
        the server to close TCP. Returns the close frame."""
        while True:
            f = self.recv_frame()
            if f.opcode == CLOSE:
                break
            assert f.opcode in (TEXT, PING, PONG), f"unexpected frame before close: {f}"
        assert f.close_code == code, f"close code {f.close_code} != expected {code} ({f})"
        assert not f.masked, "server frames must not be masked"
        self.expect_eof()
        return f

    def expect_eof(self):
        """Reads until the server closes the connection (RFC 6455 7.1.1: the
        server closes TCP first). Returns the bytes that came before EOF."""
        rest = self.buf
        self.buf = b""
        while True:
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                return rest
            if not chunk:
                return rest
            rest += chunk

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
