"""A small blocking WebSocket client on wsproto for the integration tests.

Reads block with a socket timeout; nothing sleeps. recv() returns a decoded
JSON message, or ("close", code) when the server sends its close frame;
pings are answered on the way.
"""
import json
import socket

from wsproto import ConnectionType, WSConnection
from wsproto.events import (AcceptConnection, CloseConnection, Ping, RejectConnection,
                            Request, TextMessage)

TIMEOUT = 10


class Ws:
    """A blocking WebSocket client on wsproto; recv() returns a dict for a
    message or ("close", code) for the server's close frame."""

    def __init__(self, port, timeout=TIMEOUT):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.pending = []
        self.text = ""
        self.sock.sendall(self.ws.send(Request(host=f"127.0.0.1:{port}", target="/")))
        while True:
            ev = self._next()
            if isinstance(ev, AcceptConnection):
                break
            assert not isinstance(ev, RejectConnection), ev
        welcome = self.recv()
        assert isinstance(welcome, dict) and welcome["status"] == "connected", welcome

    def _next(self):
        while not self.pending:
            data = self.sock.recv(65536)
            self.ws.receive_data(data or None)
            self.pending.extend(self.ws.events())
        return self.pending.pop(0)

    def recv(self):
        while True:
            ev = self._next()
            if isinstance(ev, Ping):
                self.sock.sendall(self.ws.send(ev.response()))
            elif isinstance(ev, CloseConnection):
                try:
                    self.sock.sendall(self.ws.send(ev.response()))
                except OSError:
                    pass
                return ("close", ev.code)
            elif isinstance(ev, TextMessage):
                self.text += ev.data
                if ev.message_finished:
                    text, self.text = self.text, ""
                    return json.loads(text)
            else:
                raise AssertionError(f"unexpected event {ev!r}")

    def recv_until_close(self):
        """Messages received before the close frame, and the close code."""
        msgs = []
        while True:
            m = self.recv()
            if isinstance(m, tuple):
                return msgs, m[1]
            msgs.append(m)

    def expect_tcp_eof(self):
        """After the close handshake the server closes the TCP connection."""
        while True:
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                return
            if not data:
                return
            assert False, f"bytes after close: {data!r}"

    def call(self, obj):
        self.sock.sendall(self.ws.send(TextMessage(data=json.dumps(obj))))

    def close(self):
        self.sock.close()

    def close_handshake(self):
        """Close politely: send 1000 and wait for the server's close frame."""
        try:
            self.sock.sendall(self.ws.send(CloseConnection(code=1000)))
            while not isinstance(self._next(), CloseConnection):
                pass
        finally:
            self.sock.close()
