"""RFC 6455 conformance of the client WebSocket, byte by byte over raw sockets.

Organised like the Autobahn TestSuite: framing, pings/pongs, reserved bits,
opcodes, fragmentation, UTF-8, close handling, limits, plus the opening
handshake and keep-alive. The server is not an echo server, so "payload
round trips" are Realm calls (`echo`) whose frames have exactly the sizes
under test. Every malformed case ends by checking that a fresh client is
still served.
"""
import base64
import json
import os
import socket
import struct

import pytest

from wsraw import (BINARY, CLOSE, CONT, PING, PONG, TEXT, HandshakeError, RawWS, accept_for,
                   build_frame, close_payload, read_http_response)


def assert_serves(server):
    """A new client can still connect and call health."""
    with RawWS(server.ports["client"]) as ws:
        assert ws.welcome == {"status": "connected", "version": "0.1.0", "tenant_id": None}
        reply = ws.call("health", id="fresh")
        assert reply["status"] == "complete", reply
        assert reply["data"]["status"] == "ok", reply


def expect_protocol_close(server, ws, code):
    ws.expect_close(code)
    ws.close()
    assert_serves(server)


def call_text(n, id="f"):
    """A JSON echo call exactly n bytes long (n >= 60); returns (text, message)."""
    base = json.dumps({"id": id, "function": "echo", "params": {"message": ""}},
                      separators=(",", ":"))
    pad = n - len(base)
    assert pad >= 0, f"{n} is shorter than the smallest call ({len(base)})"
    msg = "a" * pad
    text = json.dumps({"id": id, "function": "echo", "params": {"message": msg}},
                      separators=(",", ":"))
    assert len(text) == n
    return text, msg


def minimal_header_len(payload_len, masked=False):
    n = 2 if payload_len <= 125 else 4 if payload_len <= 0xFFFF else 10
    return n + (4 if masked else 0)


@pytest.fixture
def ws(server):
    with RawWS(server.ports["client"]) as w:
        yield w


# ---- 1. framing -------------------------------------------------------------

@pytest.mark.parametrize("n,len_byte", [(125, 125), (126, 126), (65535, 126), (65536, 127)])
def test_text_payload_lengths(server, ws, n, len_byte):
    text, msg = call_text(n)
    frame = build_frame(TEXT, text)
    assert frame[1] & 0x7F == len_byte, "the test frame must use the length encoding under test"
    ws.send_raw(frame)
    f = ws.recv_data()
    assert f.opcode == TEXT and f.fin, f
    assert not f.masked, "server frames must not be masked (RFC 6455 5.1)"
    assert len(f.header) == minimal_header_len(len(f.payload)), \
        f"server used a {len(f.header)}-byte header for a {len(f.payload)}-byte payload"
    reply = f.json()
    assert reply == {"id": "f", "status": "complete", "data": {"message": msg, "parts": 0}}


def test_text_payload_length_0(server, ws):
    ws.send_raw(build_frame(TEXT, b""))
    reply = ws.recv_json()
    assert reply["id"] is None and reply["status"] == "error", reply
    assert reply["error"]["code"] == "INVALID_REQUEST", reply
    assert ws.call("health")["status"] == "complete"


@pytest.mark.parametrize("n", [0, 125, 126, 65535, 65536])
def test_binary_payload_lengths(server, ws, n):
    ws.send_frame(BINARY, os.urandom(n))
    reply = ws.recv_json()
    assert reply["id"] is None and reply["error"]["code"] == "INVALID_REQUEST", reply
    # The frame was parsed to its end: the connection is still in sync.
    assert ws.call("health")["status"] == "complete"


@pytest.mark.parametrize("n", [100, 300])
def test_frame_delivered_byte_at_a_time(server, ws, n):
    text, msg = call_text(n)
    ws.send_bytewise(build_frame(TEXT, text))
    assert ws.recv_json() == {"id": "f", "status": "complete", "data": {"message": msg, "parts": 0}}


def test_many_frames_in_one_write(server, ws):
    frames = b"".join(build_frame(TEXT, json.dumps({"id": f"m{i}", "function": "health"}))
                      for i in range(20))
    ws.send_raw(frames + build_frame(PING, b"p"))
    ids = []
    pong = None
    while len(ids) < 20 or pong is None:
        f = ws.recv_frame()
        if f.opcode == PONG:
            pong = f.payload
            continue
        reply = f.json()
        assert reply["status"] == "complete", reply
        ids.append(reply["id"])
    assert ids == [f"m{i}" for i in range(20)], "replies to synchronous calls keep arrival order"
    assert pong == b"p"


@pytest.mark.parametrize("seed", range(5))
def test_mixed_stream_split_at_random_points(server, ws, seed):
    # Data and control frames (a close with a multi-byte reason last) cut at
    # random places: every call answered, every ping ponged, the close echoed.
    import random
    rnd = random.Random(seed)
    text, msg = call_text(400)
    p1, p2, p3 = split3(text.encode())
    stream = (build_frame(PING, "\u00e9" * 40) +
              build_frame(TEXT, p1, fin=False) + build_frame(PING, b"in") +
              build_frame(CONT, p2, fin=False) + build_frame(CONT, p3) +
              build_frame(TEXT, json.dumps({"id": "h", "function": "health"})) +
              build_frame(CLOSE, close_payload(1000, "\u00e9t\u00e9 \U0001f600" * 5)))
    cuts = sorted(rnd.sample(range(1, len(stream)), 40))
    for a, b in zip([0] + cuts, cuts + [len(stream)]):
        ws.send_raw(stream[a:b])
    got = []
    while True:
        f = ws.recv_frame()
        got.append(f)
        if f.opcode == CLOSE:
            break
    assert [f.opcode for f in got] == [PONG, PONG, TEXT, TEXT, CLOSE], got
    assert got[0].payload == ("\u00e9" * 40).encode() and got[1].payload == b"in"
    assert got[2].json()["data"]["message"] == msg
    assert got[3].json()["id"] == "h"
    assert got[4].close_code == 1000, got[4]
    ws.expect_eof()


def test_frames_pipelined_behind_handshake(server):
    early = build_frame(TEXT, json.dumps({"id": "early", "function": "health"}))
    with RawWS(server.ports["client"], early=early) as ws:
        # The welcome comes first, then the answer to the pipelined call.
        assert ws.welcome["status"] == "connected"
        reply = ws.recv_json()
        assert reply["id"] == "early" and reply["status"] == "complete", reply


# ---- 2. pings and pongs -----------------------------------------------------

@pytest.mark.parametrize("payload", [b"", b"hello", bytes(range(125)), "\u00e9t\u00e9".encode()])
def test_ping_gets_identical_pong(server, ws, payload):
    ws.send_frame(PING, payload)
    f = ws.recv_frame()
    assert f.opcode == PONG, f
    assert f.payload == payload
    assert not f.masked


def test_ping_delivered_byte_at_a_time(server, ws):
    ws.send_bytewise(build_frame(PING, b"slow ping"))
    f = ws.recv_frame()
    assert f.opcode == PONG and f.payload == b"slow ping", f


def test_ping_payload_over_125_is_protocol_error(server, ws):
    ws.send_frame(PING, b"x" * 126)
    expect_protocol_close(server, ws, 1002)


def test_unsolicited_pong_is_ignored(server, ws):
    ws.send_frame(PONG, b"unasked")
    ws.send_frame(PONG, b"")
    reply = ws.call("health")
    assert reply["status"] == "complete", reply


def test_many_pings_all_answered_in_order(server, ws):
    ws.send_raw(b"".join(build_frame(PING, str(i).encode()) for i in range(50)))
    got = [ws.recv_frame() for _ in range(50)]
    assert [f.opcode for f in got] == [PONG] * 50
    assert [f.payload for f in got] == [str(i).encode() for i in range(50)]


# ---- 3. reserved bits -------------------------------------------------------

@pytest.mark.parametrize("rsv", [4, 2, 1, 7], ids=["rsv1", "rsv2", "rsv3", "all"])
def test_reserved_bits_on_text_are_protocol_error(server, ws, rsv):
    ws.send_frame(TEXT, json.dumps({"id": "r", "function": "health"}), rsv=rsv)
    expect_protocol_close(server, ws, 1002)


@pytest.mark.parametrize("rsv", [4, 2, 1])
def test_reserved_bits_on_ping_are_protocol_error(server, ws, rsv):
    ws.send_frame(PING, b"x", rsv=rsv)
    expect_protocol_close(server, ws, 1002)


def test_reserved_bits_after_valid_call(server, ws):
    # Autobahn 3.3: the valid message is answered, then the bad frame closes.
    ws.send_raw(build_frame(TEXT, json.dumps({"id": "ok", "function": "health"})) +
                build_frame(TEXT, "x", rsv=2))
    reply = ws.recv_json()
    assert reply["id"] == "ok", reply
    expect_protocol_close(server, ws, 1002)


# ---- 4. opcodes -------------------------------------------------------------

@pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF])
def test_reserved_opcodes_are_protocol_error(server, ws, opcode):
    ws.send_frame(opcode, b"payload")
    expect_protocol_close(server, ws, 1002)


@pytest.mark.parametrize("opcode", [3, 0xB])
def test_reserved_opcode_empty_payload(server, ws, opcode):
    ws.send_frame(opcode, b"")
    expect_protocol_close(server, ws, 1002)


# ---- 5. fragmentation -------------------------------------------------------

def split3(data):
    a, b = len(data) // 3, 2 * len(data) // 3
    return data[:a], data[a:b], data[b:]


def test_fragmented_text_is_reassembled(server, ws):
    text, msg = call_text(300)
    p1, p2, p3 = split3(text.encode())
    ws.send_frame(TEXT, p1, fin=False)
    ws.send_frame(CONT, p2, fin=False)
    ws.send_frame(CONT, p3, fin=True)
    assert ws.recv_json() == {"id": "f", "status": "complete", "data": {"message": msg, "parts": 0}}


def test_fragmented_text_with_empty_fragments(server, ws):
    text, msg = call_text(100)
    ws.send_raw(build_frame(TEXT, b"", fin=False) + build_frame(CONT, text, fin=False) +
                build_frame(CONT, b"", fin=True))
    assert ws.recv_json()["data"]["message"] == msg


def test_fragmented_text_one_byte_per_fragment(server, ws):
    text = json.dumps({"id": "tiny", "function": "health"}).encode()
    frames = [build_frame(TEXT, text[:1], fin=False)]
    frames += [build_frame(CONT, text[i:i + 1], fin=False) for i in range(1, len(text) - 1)]
    frames.append(build_frame(CONT, text[-1:], fin=True))
    ws.send_raw(b"".join(frames))
    reply = ws.recv_json()
    assert reply["id"] == "tiny" and reply["status"] == "complete", reply


def test_control_frames_interleaved_in_fragments(server, ws):
    text, msg = call_text(200)
    p1, p2, p3 = split3(text.encode())
    ws.send_frame(TEXT, p1, fin=False)
    ws.send_frame(PING, b"between-1")
    ws.send_frame(CONT, p2, fin=False)
    ws.send_frame(PONG, b"unsolicited")
    ws.send_frame(PING, b"between-2")
    ws.send_frame(CONT, p3, fin=True)
    f1, f2, f3 = ws.recv_frame(), ws.recv_frame(), ws.recv_frame()
    assert (f1.opcode, f1.payload) == (PONG, b"between-1"), f1
    assert (f2.opcode, f2.payload) == (PONG, b"between-2"), f2
    assert f3.opcode == TEXT, f3
    assert f3.json() == {"id": "f", "status": "complete", "data": {"message": msg, "parts": 0}}


def test_fragmented_binary_is_answered_not_closed(server, ws):
    ws.send_frame(BINARY, b"\x00\x01", fin=False)
    ws.send_frame(CONT, b"\x02", fin=True)
    reply = ws.recv_json()
    assert reply["error"]["code"] == "INVALID_REQUEST", reply
    assert ws.call("health")["status"] == "complete"


@pytest.mark.parametrize("fin", [True, False])
def test_continuation_without_start_is_protocol_error(server, ws, fin):
    ws.send_frame(CONT, b"orphan", fin=fin)
    expect_protocol_close(server, ws, 1002)


@pytest.mark.parametrize("second", [TEXT, BINARY])
def test_new_message_inside_fragmented_one_is_protocol_error(server, ws, second):
    ws.send_frame(TEXT, b'{"id":', fin=False)
    ws.send_frame(second, b'"x"}', fin=True)
    expect_protocol_close(server, ws, 1002)


def test_continuation_after_finished_message_is_protocol_error(server, ws):
    ws.send_frame(TEXT, json.dumps({"id": "a", "function": "health"}), fin=True)
    ws.send_frame(CONT, b"more", fin=True)
    reply = ws.recv_json()
    assert reply["id"] == "a", reply
    expect_protocol_close(server, ws, 1002)


@pytest.mark.parametrize("opcode", [PING, PONG, CLOSE])
def test_fragmented_control_frame_is_protocol_error(server, ws, opcode):
    ws.send_frame(opcode, b"\x03\xe8ab" if opcode == CLOSE else b"ab", fin=False)
    ws.send_frame(CONT, b"cd", fin=True)
    expect_protocol_close(server, ws, 1002)


# ---- 6. UTF-8 ---------------------------------------------------------------

INVALID_UTF8 = {
    "ff": b"\xff",
    "lone-continuation": b"\x80",
    "overlong-slash": b"\xc0\xaf",
    "overlong-3": b"\xe0\x80\xaf",
    "surrogate": b"\xed\xa0\x80",
    "above-max": b"\xf4\x90\x80\x80",
    "truncated-at-end": b"\xce\xba\xe1\xbd",
    "in-json-string": b'{"id":"\xe1x","function":"health"}',
}


@pytest.mark.parametrize("payload", list(INVALID_UTF8.values()), ids=list(INVALID_UTF8))
def test_invalid_utf8_text_closes_1007(server, ws, payload):
    ws.send_frame(TEXT, payload)
    expect_protocol_close(server, ws, 1007)


@pytest.mark.parametrize("payload", list(INVALID_UTF8.values()), ids=list(INVALID_UTF8))
def test_invalid_utf8_in_fragmented_text_closes_1007(server, ws, payload):
    ws.send_frame(TEXT, b'{"id":"u","function":"echo","params":{"message":"', fin=False)
    ws.send_frame(CONT, payload, fin=False)
    ws.send_frame(CONT, b'"}}', fin=True)
    expect_protocol_close(server, ws, 1007)


def test_invalid_utf8_fails_fast_before_message_ends(server, ws):
    # Autobahn 6.4: the error is found in an unfinished message; no FIN needed.
    ws.send_frame(TEXT, b'{"id":"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5', fin=False)
    ws.send_frame(CONT, b"\xf4\x90\x80\x80", fin=False)
    expect_protocol_close(server, ws, 1007)


def test_valid_multibyte_split_across_fragments(server, ws):
    msg = "\u03ba\u1f79\u03c3\u03bc\u03b5 \U0001f600 \u00e9"
    text = json.dumps({"id": "k", "function": "echo", "params": {"message": msg}},
                      ensure_ascii=False).encode()
    # Split inside every multi-byte sequence: one byte per fragment.
    start = text.index("\u03ba".encode())
    frames = [build_frame(TEXT, text[:start + 1], fin=False)]
    frames += [build_frame(CONT, text[i:i + 1], fin=False) for i in range(start + 1, len(text) - 1)]
    frames.append(build_frame(CONT, text[-1:], fin=True))
    ws.send_raw(b"".join(frames))
    reply = ws.recv_json()
    assert reply == {"id": "k", "status": "complete", "data": {"message": msg, "parts": 0}}


def test_valid_utf8_in_single_frame(server, ws):
    msg = "Hello-\u00b5@\u00df\u00f6\u00e4\u00fc\u00e0\u00e1-UTF-8!! \U0010ffff \uffff"
    ws.send_text(json.dumps({"id": "v", "function": "echo", "params": {"message": msg}},
                            ensure_ascii=False))
    assert ws.recv_json()["data"]["message"] == msg


# ---- 7. close handling ------------------------------------------------------

@pytest.mark.parametrize("code", [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011,
                                  3000, 3999, 4000, 4999])
def test_close_is_echoed_with_same_code(server, ws, code):
    ws.send_close(code)
    f = ws.expect_close(code)
    assert f.payload == close_payload(code)
    assert_serves(server)


def test_close_with_reason_is_echoed(server, ws):
    ws.send_close(1000, "bye \u00e9".encode())
    f = ws.expect_close(1000)
    assert f.payload[2:].decode("utf-8") in ("", "bye \u00e9")


def test_close_without_payload(server, ws):
    ws.send_close()
    while True:
        f = ws.recv_frame()
        if f.opcode == CLOSE:
            break
    # No status was received, so none (or 1000) is echoed; never 1005 on the wire.
    assert f.payload in (b"", close_payload(1000)), f
    ws.expect_eof()
    assert_serves(server)


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1016, 2000, 2999, 5000, 65535])
def test_close_with_invalid_code_is_protocol_error(server, ws, code):
    ws.send_close(code)
    expect_protocol_close(server, ws, 1002)


def test_close_with_one_byte_payload_is_protocol_error(server, ws):
    ws.send_frame(CLOSE, b"\x03")
    expect_protocol_close(server, ws, 1002)


def test_close_with_invalid_utf8_reason_closes_1007(server, ws):
    ws.send_close(1000, b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited")
    expect_protocol_close(server, ws, 1007)


def test_close_with_invalid_utf8_reason_byte_at_a_time(server, ws):
    ws.send_bytewise(build_frame(CLOSE, close_payload(1000, b"ab\xffcd")))
    expect_protocol_close(server, ws, 1007)


def test_close_with_valid_multibyte_reason_byte_at_a_time(server, ws):
    reason = "\u00e9ab\u03bacd\U0001f600".encode()
    ws.send_bytewise(build_frame(CLOSE, close_payload(1000, reason)))
    f = ws.expect_close(1000)
    assert f.payload[2:] in (b"", reason)


def test_close_reason_of_123_bytes_is_echoed(server, ws):
    ws.send_close(1000, b"r" * 123)
    ws.expect_close(1000)


def test_frames_after_close_are_ignored(server, ws):
    ws.send_raw(build_frame(CLOSE, close_payload(1000)) +
                build_frame(TEXT, json.dumps({"id": "late", "function": "health"})) +
                build_frame(PING, b"late"))
    f = ws.recv_frame()
    assert f.opcode == CLOSE and f.close_code == 1000, f
    assert ws.expect_eof() == b"", "nothing may follow the close frame"
    assert_serves(server)


def test_server_closes_tcp_after_close_handshake(server, ws):
    # RFC 6455 7.1.1: after the close handshake the server closes TCP first;
    # the client does not have to close its side for EOF to arrive.
    ws.send_close(1000)
    ws.expect_close(1000)


def test_close_while_call_in_flight(server, ws):
    ws.send_json({"id": "slow", "function": "echo", "params": {"delay_ms": 600000}})
    ws.send_close(1000)
    ws.expect_close(1000)
    assert_serves(server)


# ---- 9. limits --------------------------------------------------------------

def test_message_over_limit_closes_1009(make_server):
    s = make_server("--max-message-bytes", "1024")
    with RawWS(s.ports["client"]) as ws:
        text, msg = call_text(1024)
        ws.send_text(text)
        assert ws.recv_json()["data"]["message"] == msg, "a message at the limit is accepted"
        text, _ = call_text(1025)
        ws.send_text(text)
        ws.expect_close(1009)
    assert_serves(s)


def test_fragmented_message_over_limit_closes_1009(make_server):
    s = make_server("--max-message-bytes", "1024")
    with RawWS(s.ports["client"]) as ws:
        ws.send_frame(TEXT, b"a" * 600, fin=False)
        ws.send_frame(CONT, b"a" * 600, fin=False)
        ws.expect_close(1009)
    assert_serves(s)


def test_huge_declared_length_closes_1009(make_server):
    # A 2^40-byte frame is refused at its first bytes, not buffered.
    s = make_server("--max-message-bytes", "1024")
    with RawWS(s.ports["client"]) as ws:
        ws.send_raw(bytes([0x81, 0x80 | 127]) + struct.pack("!Q", 1 << 40) + b"mask" + b"x" * 100)
        ws.expect_close(1009)
    assert_serves(s)


def test_64bit_length_with_high_bit_is_protocol_error(server, ws):
    ws.send_raw(bytes([0x81, 0x80 | 127]) + struct.pack("!Q", 1 << 63) + b"mask" + b"x" * 8)
    expect_protocol_close(server, ws, 1002)


@pytest.mark.parametrize("bits,n", [(16, 5), (16, 125), (64, 200), (64, 65535)])
def test_non_minimal_length_encoding_is_protocol_error(server, ws, bits, n):
    # RFC 6455 5.2: "the minimal number of bytes MUST be used to encode the length".
    ws.send_frame(TEXT, b"x" * n, length_bits=bits)
    expect_protocol_close(server, ws, 1002)


@pytest.mark.parametrize("opcode", [TEXT, PING, CLOSE])
def test_unmasked_client_frame_is_protocol_error(server, ws, opcode):
    payload = close_payload(1000) if opcode == CLOSE else json.dumps(
        {"id": "u", "function": "health"})
    ws.send_frame(opcode, payload, mask=False)
    expect_protocol_close(server, ws, 1002)


# ---- handshake --------------------------------------------------------------

def raw_request(server, request):
    with socket.create_connection(("127.0.0.1", server.ports["client"]), timeout=10) as s:
        s.sendall(request.encode())
        status, headers, body, _ = read_http_response(s)
    return status, headers, body


def upgrade_request(path="/", **overrides):
    hdrs = {"Host": "localhost", "Upgrade": "websocket", "Connection": "Upgrade",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version": "13"}
    for k, v in overrides.items():
        hdrs[k.replace("_", "-")] = v
    return f"GET {path} HTTP/1.1\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in hdrs.items() if v is not None) + "\r\n"


def test_handshake_accept_value_rfc_example(server):
    status, headers, _ = raw_request(server, upgrade_request())
    assert status == 101
    # RFC 6455 1.3's worked example.
    assert headers["sec-websocket-accept"] == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    assert headers["upgrade"].lower() == "websocket"
    assert "upgrade" in headers["connection"].lower()


def test_handshake_accept_value_random_key(server):
    key = base64.b64encode(os.urandom(16)).decode()
    status, headers, _ = raw_request(server, upgrade_request(Sec_WebSocket_Key=key))
    assert status == 101
    assert headers["sec-websocket-accept"] == accept_for(key)


def test_handshake_browser_style_headers(server):
    # Firefox sends "Connection: keep-alive, Upgrade"; tokens are case-insensitive.
    with RawWS(server.ports["client"], headers={"Connection": "keep-alive, Upgrade",
                                                "Upgrade": "WebSocket"}) as ws:
        assert ws.call("health")["status"] == "complete"


@pytest.mark.parametrize("version", [None, "8", "12", "14", ""])
def test_handshake_bad_version_is_426(server, version):
    status, headers, _ = raw_request(server, upgrade_request(Sec_WebSocket_Version=version))
    assert status == 426
    assert headers.get("sec-websocket-version") == "13"


@pytest.mark.parametrize("key", [None, "", "abc", "dGhlIHNhbXBsZSBub25jZQ", "!!!!!!!!!!!!!!!!!!!!!!==",
                                 base64.b64encode(os.urandom(15)).decode(),
                                 base64.b64encode(os.urandom(17)).decode()])
def test_handshake_bad_key_is_400(server, key):
    status, _, _ = raw_request(server, upgrade_request(Sec_WebSocket_Key=key))
    assert status == 400


def test_plain_get_without_upgrade_is_426(server):
    status, headers, _ = raw_request(server, "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert status == 426
    assert headers.get("sec-websocket-version") == "13"


@pytest.mark.parametrize("path", ["/ws", "/foo/bar", "/index.html"])
def test_upgrade_on_other_path_is_404(server, path):
    status, _, _ = raw_request(server, upgrade_request(path=path))
    assert status == 404


def test_peer_reset_with_unread_output(server):
    # The peer reads part of the 101 and resets the connection (close with
    # unread data sends RST) while the server still writes the welcome and
    # replies: the write fails (EPIPE/ECONNRESET) and must not kill the server.
    for _ in range(3):
        s = socket.create_connection(("127.0.0.1", server.ports["client"]), timeout=10)
        s.sendall(upgrade_request().encode() +
                  build_frame(TEXT, json.dumps({"id": "big", "function": "echo",
                                                "params": {"repeat": 200, "message": "x" * 500}})))
        assert s.recv(12).startswith(b"HTTP/1.1 101")
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
    assert_serves(server)


def test_failed_handshake_then_good_one(server):
    with pytest.raises(HandshakeError) as e:
        RawWS(server.ports["client"], headers={"Sec-WebSocket-Version": "7"})
    assert e.value.status == 426
    assert_serves(server)


# ---- keep-alive -------------------------------------------------------------

def test_server_pings_and_drops_silent_peer(make_server):
    s = make_server("--ws-ping-interval-ms", "200")
    with RawWS(s.ports["client"], timeout=10) as ws:
        pings = 0
        while True:
            try:
                f = ws.recv_frame()
            except (EOFError, ConnectionResetError):
                break
            assert f.opcode == PING, f"only pings may arrive on an idle connection: {f}"
            assert not f.masked
            pings += 1
        # Timing out (socket.timeout) instead of EOF fails the test.
        assert pings >= 1, "the server dropped the peer without pinging it first"
    assert_serves(s)


def test_server_keeps_peer_that_answers_pings(make_server):
    s = make_server("--ws-ping-interval-ms", "200")
    with RawWS(s.ports["client"], timeout=10) as ws:
        for _ in range(4):
            f = ws.recv_frame()
            assert f.opcode == PING, f
            ws.send_frame(PONG, f.payload)
        reply = ws.call("health")
        assert reply["status"] == "complete", reply


def test_no_ping_while_peer_is_active(make_server):
    # Traffic from the peer counts as liveness: an active peer is not pinged.
    s = make_server("--ws-ping-interval-ms", "400")
    with RawWS(s.ports["client"], timeout=10) as ws:
        ws.send_json({"id": "tick", "function": "echo",
                      "params": {"repeat": 5, "delay_ms": 100}})
        got = []
        while True:
            f = ws.recv_frame()
            if f.opcode == PING:
                got.append("ping")
                ws.send_frame(PONG, f.payload)
                continue
            m = f.json()
            got.append(m["status"])
            if m["status"] != "streaming":
                break
            ws.send_frame(PONG, b"keepalive")  # unsolicited pong: still input
        assert got == ["streaming"] * 5 + ["complete"], got
