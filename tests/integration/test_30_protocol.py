"""The Realm call protocol on the client WebSocket, with a real client
(python3-websockets 10.4, asyncio API).

Covers the welcome, health and metadata, every INVALID_REQUEST shape,
INVALID_PARAMS, duplicate ids, TOO_MANY_CALLS, concurrent streaming calls,
cancel, peers vanishing mid-call, graceful shutdown and 1,000 concurrent
connections. No sleeps: every wait is a read with a timeout.
"""
import asyncio
import json
import resource
import signal

import pytest
import websockets

TIMEOUT = 20
WELCOME = {"status": "connected", "version": "0.1.0", "tenant_id": None}


def run(coro, timeout=120):
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def connect(server, **kw):
    ws = await websockets.connect(server.ws_url, max_size=None, open_timeout=TIMEOUT, **kw)
    welcome = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
    return ws, welcome


async def recv(ws, timeout=TIMEOUT):
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def send(ws, id, function, params=None, **extra):
    msg = {"id": id, "function": function}
    if params is not None:
        msg["params"] = params
    msg.update(extra)
    await ws.send(json.dumps(msg))


async def call(ws, function, params=None, id="r1", **extra):
    """Sends a call; returns all its replies (streaming ones, then the final one)."""
    await send(ws, id, function, params, **extra)
    replies = []
    while True:
        m = await recv(ws)
        assert m.get("id") == id, f"reply for another id while waiting for {id}: {m}"
        replies.append(m)
        if m["status"] != "streaming":
            return replies


async def call1(ws, function, params=None, id="r1", **extra):
    replies = await call(ws, function, params, id, **extra)
    assert len(replies) == 1, replies
    return replies[0]


async def raw_error(ws, text):
    """Sends raw text (or bytes); returns the error reply."""
    await ws.send(text)
    m = await recv(ws)
    assert m["status"] == "error", m
    assert set(m) == {"id", "status", "error"}, m
    assert isinstance(m["error"]["message"], str) and m["error"]["message"], m
    return m


# ---- welcome, health, metadata ----------------------------------------------

def test_welcome(server):
    async def go():
        ws, welcome = await connect(server)
        assert welcome == WELCOME
        await ws.close()
    run(go())


def test_health(server):
    async def go():
        ws, _ = await connect(server)
        ws2, _ = await connect(server)
        m = await call1(ws, "health", {})
        assert m["id"] == "r1" and m["status"] == "complete", m
        assert set(m) == {"id", "status", "data"}, m
        d = m["data"]
        assert set(d) >= {"status", "version", "uptime_seconds", "connections", "in_flight"}, d
        assert d["status"] == "ok" and d["version"] == "0.1.0", d
        for k in ("uptime_seconds", "connections", "in_flight"):
            assert type(d[k]) is int and d[k] >= 0, (k, d)
        assert d["connections"] == 2, d
        # An echo in flight is counted.
        await send(ws2, "slow", "echo", {"delay_ms": 600000})
        await send(ws2, "h", "health")  # same connection: answered after slow started
        h = await recv(ws2)
        assert h["id"] == "h" and h["data"]["in_flight"] >= 2, h
        await ws2.close()
        await ws.close()
    run(go())


def test_health_params_optional(server):
    async def go():
        ws, _ = await connect(server)
        for extra in ({}, {"params": None}, {"params": {}}):
            msg = {"id": "h", "function": "health", **extra}
            await ws.send(json.dumps(msg))
            m = await recv(ws)
            assert m["status"] == "complete", (msg, m)
        await ws.close()
    run(go())


PARAM_KEYS = {"name", "type", "required", "default", "description"}
TYPES = {"string", "integer", "number", "boolean", "object", "array", "any"}


async def get_metadata(ws):
    m = await call1(ws, "metadata", {}, id="meta")
    assert m["status"] == "complete", m
    return m["data"]


def test_metadata_shape(server):
    async def go():
        ws, _ = await connect(server)
        md = await get_metadata(ws)
        assert md["runtime"] == {"name": "realm", "version": "0.1.0"}, md["runtime"]
        fns = {f["name"]: f for f in md["functions"]}
        assert len(fns) == len(md["functions"]), "function names must be unique"
        assert {"health", "metadata", "echo", "cancel"} <= set(fns), sorted(fns)
        for f in md["functions"]:
            assert {"name", "description", "params", "result", "streaming"} <= set(f), f
            assert isinstance(f["description"], str) and f["description"], f
            assert isinstance(f["streaming"], bool), f
            assert isinstance(f["params"], list), f
            for p in f["params"]:
                assert PARAM_KEYS <= set(p), (f["name"], p)
                assert p["type"] in TYPES, (f["name"], p)
                assert isinstance(p["required"], bool), p
        assert fns["echo"]["streaming"] is True
        assert fns["health"]["streaming"] is False
        assert fns["health"]["params"] == []
        echo = {p["name"]: p for p in fns["echo"]["params"]}
        assert set(echo) == {"message", "repeat", "delay_ms"}, echo
        assert echo["message"]["type"] == "any" and echo["message"]["required"] is False
        assert echo["repeat"]["type"] == "integer"
        assert (echo["repeat"]["minimum"], echo["repeat"]["maximum"]) == (0, 10000)
        assert echo["repeat"]["default"] == 0
        assert (echo["delay_ms"]["minimum"], echo["delay_ms"]["maximum"]) == (0, 600000)
        cancel = {p["name"]: p for p in fns["cancel"]["params"]}
        assert cancel["id"]["type"] == "string" and cancel["id"]["required"] is True
        await ws.close()
    run(go())


def sample_value(p):
    t = p["type"]
    if t == "integer" or t == "number":
        return p.get("minimum", 0)
    return {"string": "no-such-call", "boolean": False, "object": {}, "array": [],
            "any": None}[t]


def test_metadata_matches_what_is_callable(server):
    async def go():
        ws, _ = await connect(server)
        md = await get_metadata(ws)
        for i, f in enumerate(md["functions"]):
            params = {p["name"]: sample_value(p) for p in f["params"] if p["required"]}
            for name in f.get("required_one_of", [])[:1]:  # one of them is required
                params[name] = sample_value(next(p for p in f["params"] if p["name"] == name))
            replies = await call(ws, f["name"], params, id=f"c{i}")
            final = replies[-1]
            if final["status"] == "error":
                # Callable: the function was found and the params were accepted
                # (invoke may report that the function it was asked to run is missing).
                err = final["error"]
                missing_target = (err["code"] == "FUNCTION_NOT_FOUND"
                                  and err.get("function") not in (None, f["name"]))
                assert missing_target or err["code"] not in (
                    "FUNCTION_NOT_FOUND", "INVALID_PARAMS", "INVALID_REQUEST"), (f["name"], final)
            else:
                assert final["status"] == "complete", (f["name"], final)
            # Every listed param is accepted by name.
            full = {p["name"]: sample_value(p) for p in f["params"]}
            final = (await call(ws, f["name"], full, id=f"d{i}"))[-1]
            # (A sample value may be refused, e.g. generate's model "no-such-call":
            # what must not happen is a param refused for its name.)
            assert final["status"] == "complete" or final["error"].get("function") not in (
                None, f["name"]) or final["error"]["code"] != "FUNCTION_NOT_FOUND", (
                f["name"], full, final)
            if final["status"] == "error" and final["error"]["code"] == "INVALID_PARAMS":
                assert "unknown param" not in final["error"]["message"], (f["name"], final)
                assert final["error"].get("param") in full, (f["name"], final)
        listed = {f["name"] for f in md["functions"]}
        for name in ("Health", "health ", "metadata2", "_unknown", "x" * 300):
            assert name not in listed
            m = await call1(ws, name, {}, id="nf")
            assert m["status"] == "error" and m["error"]["code"] == "FUNCTION_NOT_FOUND", m
            assert m["id"] == "nf"
        await ws.close()
    run(go())


# ---- INVALID_REQUEST --------------------------------------------------------

INVALID = [
    # (name, text, expected id, word the message must contain)
    ("not-json", "this is not json", None, "JSON"),
    ("truncated-json", '{"id":"a","function":"health"', None, "JSON"),
    ("json-array", '[{"id":"a","function":"health"}]', None, "object"),
    ("json-string", '"health"', None, "object"),
    ("json-null", "null", None, "object"),
    ("missing-id", '{"function":"health","params":{}}', None, "id"),
    ("id-number", '{"id":1,"function":"health"}', None, "id"),
    ("id-null", '{"id":null,"function":"health"}', None, "id"),
    ("id-object", '{"id":{},"function":"health"}', None, "id"),
    ("empty-id", '{"id":"","function":"health"}', None, "id"),
    ("id-too-long", json.dumps({"id": "x" * 257, "function": "health"}), None, "id"),
    ("missing-function", '{"id":"a","params":{}}', "a", "function"),
    ("function-number", '{"id":"a","function":5}', "a", "function"),
    ("function-null", '{"id":"a","function":null}', "a", "function"),
    ("function-empty", '{"id":"a","function":""}', "a", "function"),
    ("params-array", '{"id":"a","function":"health","params":[]}', "a", "params"),
    ("params-string", '{"id":"a","function":"health","params":"x"}', "a", "params"),
    ("tenant-number", '{"id":"a","function":"health","tenant_id":7}', "a", "tenant_id"),
    ("unknown-field", '{"id":"a","function":"health","extra":1}', "a", "extra"),
    ("unknown-field-first", '{"stream":true,"id":"a","function":"health"}', "a", "stream"),
    ("duplicate-key", '{"id":"a","id":"b","function":"health"}', None, ""),
]


@pytest.mark.parametrize("text,exp_id,word", [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_invalid_request(server, text, exp_id, word):
    async def go():
        ws, _ = await connect(server)
        m = await raw_error(ws, text)
        assert m["error"]["code"] == "INVALID_REQUEST", m
        assert m["id"] == exp_id, m
        assert word in m["error"]["message"], m
        # The connection stays usable.
        assert (await call1(ws, "health", {}, id="after"))["status"] == "complete"
        await ws.close()
    run(go())


def test_id_of_max_length_is_accepted(server):
    async def go():
        ws, _ = await connect(server)
        m = await call1(ws, "health", {}, id="x" * 256)
        assert m["status"] == "complete" and m["id"] == "x" * 256, m
        await ws.close()
    run(go())


def test_tenant_id_accepted(server):
    async def go():
        ws, _ = await connect(server)
        for tenant in (None, "tenant-a"):
            m = await call1(ws, "health", {}, id="t", tenant_id=tenant)
            assert m["status"] == "complete", m
        await ws.close()
    run(go())


@pytest.mark.parametrize("payload", [b"", b"\x00\x01\x02", b'{"id":"a","function":"health"}'])
def test_binary_message_is_invalid_request(server, payload):
    async def go():
        ws, _ = await connect(server)
        m = await raw_error(ws, payload)
        assert m["error"]["code"] == "INVALID_REQUEST" and m["id"] is None, m
        assert "binary" in m["error"]["message"], m
        assert (await call1(ws, "health", {}, id="after"))["status"] == "complete"
        await ws.close()
    run(go())


# ---- INVALID_PARAMS ---------------------------------------------------------

BAD_PARAMS = [
    ("echo", {"repeat": "3"}, "repeat"),
    ("echo", {"repeat": True}, "repeat"),
    ("echo", {"repeat": 1.5}, "repeat"),
    ("echo", {"repeat": -1}, "repeat"),
    ("echo", {"repeat": 10001}, "repeat"),
    ("echo", {"delay_ms": 600001}, "delay_ms"),
    ("echo", {"delay_ms": -5}, "delay_ms"),
    ("echo", {"delay_ms": []}, "delay_ms"),
    ("echo", {"message": "x", "colour": "red"}, "colour"),
    ("health", {"verbose": True}, "verbose"),
    ("metadata", {"x": 1}, "x"),
    ("cancel", {}, "id"),
    ("cancel", {"id": 5}, "id"),
    ("cancel", {"id": ""}, "id"),
    ("cancel", {"id": "a", "force": True}, "force"),
]


@pytest.mark.parametrize("function,params,param", BAD_PARAMS,
                         ids=[f"{f}-{json.dumps(p)}" for f, p, _ in BAD_PARAMS])
def test_invalid_params_names_the_param(server, function, params, param):
    async def go():
        ws, _ = await connect(server)
        m = await call1(ws, function, params, id="p")
        assert m["status"] == "error" and m["id"] == "p", m
        assert m["error"]["code"] == "INVALID_PARAMS", m
        assert m["error"]["param"] == param, m
        assert param in m["error"]["message"], m
        await ws.close()
    run(go())


def test_params_at_their_bounds_are_accepted(server):
    async def go():
        ws, _ = await connect(server)
        m = await call1(ws, "echo", {"repeat": 0, "delay_ms": 0, "message": None})
        assert m["data"] == {"message": None, "parts": 0}, m
        replies = await call(ws, "echo", {"repeat": 10000, "message": 1}, id="big")
        assert len(replies) == 10001
        assert [r["data"]["index"] for r in replies[:-1]] == list(range(10000))
        assert replies[-1]["data"] == {"message": 1, "parts": 10000}
        # JSON has one number type: 3.0 is the integer 3.
        replies = await call(ws, "echo", {"repeat": 3.0}, id="float")
        assert replies[-1]["data"]["parts"] == 3, replies[-1]
        await ws.close()
    run(go())


# ---- duplicate ids, TOO_MANY_CALLS ------------------------------------------

def test_duplicate_in_flight_id(server):
    async def go():
        ws, _ = await connect(server)
        await send(ws, "d", "echo", {"delay_ms": 600000})
        await send(ws, "d", "health")
        m = await recv(ws)
        assert m["id"] == "d" and m["status"] == "error", m
        assert m["error"]["code"] == "INVALID_REQUEST", m
        assert "in flight" in m["error"]["message"], m
        # The original call is untouched: cancel it and get its cancelled reply.
        await send(ws, "c", "cancel", {"id": "d"})
        got = {(r["id"], r["status"]) for r in [await recv(ws), await recv(ws)]}
        assert got == {("d", "cancelled"), ("c", "complete")}, got
        # Once it has ended the id can be used again.
        assert (await call1(ws, "health", {}, id="d"))["status"] == "complete"
        await ws.close()
    run(go())


def test_same_id_on_two_connections_is_fine(server):
    async def go():
        a, _ = await connect(server)
        b, _ = await connect(server)
        await send(a, "same", "echo", {"delay_ms": 600000})
        m = await call1(b, "health", {}, id="same")
        assert m["status"] == "complete", m
        await a.close()
        await b.close()
    run(go())


def test_too_many_calls(make_server):
    s = make_server("--max-calls-per-connection", "2")

    async def go():
        ws, _ = await connect(s)
        other, _ = await connect(s)
        await send(ws, "a", "echo", {"delay_ms": 600000})
        await send(ws, "b", "echo", {"delay_ms": 600000})
        await send(ws, "c", "health")
        m = await recv(ws)
        assert m["id"] == "c" and m["error"]["code"] == "TOO_MANY_CALLS", m
        # The limit is per connection.
        assert (await call1(other, "health", {}, id="o"))["status"] == "complete"
        # At the limit a client can still cancel what it started.
        await send(ws, "x", "cancel", {"id": "a"})
        got = {(r["id"], r["status"]) for r in [await recv(ws), await recv(ws)]}
        assert got == {("a", "cancelled"), ("x", "complete")}, got
        # One slot is free again.
        assert (await call1(ws, "health", {}, id="c2"))["status"] == "complete"
        await ws.close()
        await other.close()
    run(go())


# ---- concurrency and streaming ----------------------------------------------

def check_call_replies(replies, repeat, message):
    """One call's replies: repeat streaming parts in index order, then complete."""
    assert [r["status"] for r in replies] == ["streaming"] * repeat + ["complete"], replies
    assert [r["data"]["index"] for r in replies[:-1]] == list(range(repeat)), replies
    assert all(r["data"]["message"] == message for r in replies[:-1]), replies
    assert replies[-1]["data"] == {"message": message, "parts": repeat}, replies[-1]


def test_many_calls_in_flight_interleave(server):
    async def go():
        ws, _ = await connect(server)
        specs = {f"e{i}": (i % 6, 5 + (i * 7) % 40) for i in range(40)}
        specs["fast"] = (0, 10)
        specs["slow"] = (3, 150)
        specs["mid"] = (1, 140)
        for id, (repeat, delay) in specs.items():
            await send(ws, id, "echo", {"message": {"id": id}, "repeat": repeat,
                                        "delay_ms": delay})
        order = []
        per_id = {id: [] for id in specs}
        open_ids = set(specs)
        while open_ids:
            m = await recv(ws)
            assert m["id"] in per_id, m
            assert m["id"] in open_ids, f"reply after the final one: {m}"
            per_id[m["id"]].append(m)
            order.append((m["id"], m["status"]))
            if m["status"] != "streaming":
                open_ids.discard(m["id"])
        for id, (repeat, _) in specs.items():
            check_call_replies(per_id[id], repeat, {"id": id})
        # Replies of different calls interleave: slow's first part (150 ms)
        # comes before mid's final reply (280 ms), fast (10 ms) before both.
        assert order.index(("fast", "complete")) < order.index(("slow", "streaming"))
        assert order.index(("slow", "streaming")) < order.index(("mid", "complete"))
        await ws.close()
    run(go())


def test_streaming_parts_precede_complete_without_delay(server):
    async def go():
        ws, _ = await connect(server)
        for repeat in (1, 2, 50):
            replies = await call(ws, "echo", {"message": [1, "two"], "repeat": repeat},
                                 id=f"s{repeat}")
            check_call_replies(replies, repeat, [1, "two"])
        await ws.close()
    run(go())


# ---- cancel -----------------------------------------------------------------

def test_cancel_streaming_call(server):
    async def go():
        ws, _ = await connect(server)
        await send(ws, "e", "echo", {"message": "m", "repeat": 1000, "delay_ms": 20})
        first = await recv(ws)
        assert (first["id"], first["status"], first["data"]["index"]) == ("e", "streaming", 0)
        await send(ws, "c", "cancel", {"id": "e"})
        seen_parts = 0
        replies = []
        while len(replies) < 2:
            m = await recv(ws)
            if m["id"] == "e" and m["status"] == "streaming":
                seen_parts += 1  # parts sent before the cancel arrived
                continue
            replies.append(m)
        assert replies[0] == {"id": "e", "status": "cancelled"}, replies
        assert replies[1] == {"id": "c", "status": "complete",
                              "data": {"id": "e", "cancelled": True}}, replies
        # Nothing more for "e": a 200 ms echo's reply comes first and alone.
        m = await call1(ws, "echo", {"message": "later", "delay_ms": 200}, id="later")
        assert m["data"]["message"] == "later", m
        # The cancelled call is no longer in flight.
        m = await call1(ws, "cancel", {"id": "e"}, id="again")
        assert m["error"]["code"] == "CALL_NOT_FOUND", m
        await ws.close()
    run(go())


def test_cancel_unknown_id(server):
    async def go():
        ws, _ = await connect(server)
        m = await call1(ws, "cancel", {"id": "nope"}, id="c")
        assert m["id"] == "c" and m["status"] == "error", m
        assert m["error"]["code"] == "CALL_NOT_FOUND", m
        # A finished call cannot be cancelled either.
        assert (await call1(ws, "health", {}, id="done"))["status"] == "complete"
        m = await call1(ws, "cancel", {"id": "done"}, id="c2")
        assert m["error"]["code"] == "CALL_NOT_FOUND", m
        # Nor can a cancel cancel itself.
        m = await call1(ws, "cancel", {"id": "self"}, id="self")
        assert m["error"]["code"] == "CALL_NOT_FOUND", m
        await ws.close()
    run(go())


def test_cancel_is_per_connection(server):
    async def go():
        a, _ = await connect(server)
        b, _ = await connect(server)
        await send(a, "job", "echo", {"delay_ms": 300, "message": "a's"})
        m = await call1(b, "cancel", {"id": "job"}, id="c")
        assert m["error"]["code"] == "CALL_NOT_FOUND", m
        m = await recv(a)
        assert m == {"id": "job", "status": "complete", "data": {"message": "a's", "parts": 0}}
        await a.close()
        await b.close()
    run(go())


# ---- peers going away -------------------------------------------------------

async def wait_in_flight(server, expected, tries=500):
    """Polls health (each poll is a round trip, no sleeping) until in_flight
    reaches expected (the health call itself counts as one)."""
    ws, _ = await connect(server)
    try:
        for i in range(tries):
            d = (await call1(ws, "health", {}, id=f"h{i}"))["data"]
            if d["in_flight"] == expected:
                return d
        raise AssertionError(f"in_flight stayed at {d['in_flight']}, expected {expected}")
    finally:
        await ws.close()


def test_close_with_calls_in_flight(server):
    async def go():
        for how in ("close", "abort"):
            # max_queue=None: while closing, the client keeps reading the
            # replies queued before the server's close frame.
            ws, _ = await connect(server, max_queue=None)
            await send(ws, "slow", "echo", {"delay_ms": 600000})
            await send(ws, "stream", "echo", {"repeat": 10000, "delay_ms": 1, "message": "x"})
            await send(ws, "big", "echo", {"repeat": 5000, "message": "y" * 1000})
            await recv(ws)
            if how == "close":
                await ws.close()
            else:
                ws.transport.abort()
            # Calls of a vanished peer are cancelled: only the poll remains.
            await wait_in_flight(server, 1)
    run(go())


def test_abrupt_disconnect_while_server_writes(server):
    # Many connections vanish while the server streams large replies to them.
    async def go():
        conns = [await connect(server) for _ in range(10)]
        for ws, _ in conns:
            await send(ws, "flood", "echo", {"repeat": 2000, "message": "z" * 2000})
        for ws, _ in conns:
            ws.transport.abort()
        d = await wait_in_flight(server, 1)
        assert d["status"] == "ok"
    run(go())


# ---- graceful shutdown ------------------------------------------------------

def test_shutting_down(make_server):
    s = make_server("--shutdown-grace-ms", "30000")

    async def go():
        ws, _ = await connect(s)
        await send(ws, "slow", "echo", {"delay_ms": 600000})
        await call1(ws, "health", {}, id="ready")  # slow has started
        s.signal(signal.SIGTERM)
        # Calls made after the signal is handled get SHUTTING_DOWN.
        for i in range(2000):
            m = await call1(ws, "health", {}, id=f"n{i}")
            if m["status"] == "error":
                break
        assert m["error"]["code"] == "SHUTTING_DOWN", m
        # The call in flight may still be cancelled, and then the connection
        # closes with 1001 (nothing left in flight).
        await send(ws, "c", "cancel", {"id": "slow"})
        got = {(r["id"], r["status"]) for r in [await recv(ws), await recv(ws)]}
        assert got == {("slow", "cancelled"), ("c", "complete")}, got
        with pytest.raises(websockets.ConnectionClosed) as e:
            await recv(ws)
        assert e.value.rcvd is not None and e.value.rcvd.code == 1001, e.value
    run(go())
    assert s.wait(timeout=20) == 0, s.stderr


# ---- 1,000 concurrent connections -------------------------------------------

def raise_nofile(n):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(max(soft, n), hard)
    if want > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return want


def test_thousand_concurrent_connections(make_server):
    n = 1000
    # Both ends of every connection live on this machine; the server inherits it.
    assert raise_nofile(2 * n + 200) >= 2 * n + 200, "RLIMIT_NOFILE too low for this test"
    s = make_server()

    async def go():
        conns = await asyncio.gather(*[connect(s, ping_interval=None) for _ in range(n)])
        assert all(w == WELCOME for _, w in conns)
        socks = [ws for ws, _ in conns]
        # Send every call first: a long echo, then a health on the same
        # connection (answered only after the echo has started).
        await asyncio.gather(*[send(ws, "long", "echo", {"delay_ms": 600000, "message": i})
                               for i, ws in enumerate(socks)])
        await asyncio.gather(*[send(ws, "h", "health") for ws in socks])
        health = await asyncio.gather(*[recv(ws, 60) for ws in socks])
        assert all(h["id"] == "h" and h["status"] == "complete" for h in health)
        # Now all n echoes are in flight at once.
        probe, _ = await connect(s)
        d = (await call1(probe, "health", {}, id="probe"))["data"]
        assert d["connections"] == n + 1, d
        assert d["in_flight"] == n + 1, d
        # Cancel them all and read every reply.
        await asyncio.gather(*[send(ws, "c", "cancel", {"id": "long"}) for ws in socks])

        async def two(ws):
            return {(r["id"], r["status"]) for r in [await recv(ws, 60), await recv(ws, 60)]}
        got = await asyncio.gather(*[two(ws) for ws in socks])
        assert all(g == {("long", "cancelled"), ("c", "complete")} for g in got)
        # And a call that completes on its own on each, all answered.
        await asyncio.gather(*[send(ws, "e", "echo", {"message": i, "repeat": 1, "delay_ms": 50})
                               for i, ws in enumerate(socks)])

        async def echo_replies(ws):
            return [await recv(ws, 60), await recv(ws, 60)]
        replies = await asyncio.gather(*[echo_replies(ws) for ws in socks])
        for i, r in enumerate(replies):
            check_call_replies(r, 1, i)
        await asyncio.gather(*[ws.close() for ws in socks])
        await probe.close()
    run(go(), timeout=240)
