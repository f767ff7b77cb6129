"""A Node.js client (the `ws` package from the repo's node_modules) against
the real server: the protocol as a JavaScript SDK would see it."""
import json
import os
import shutil
import subprocess

import pytest

from conftest import ROOT

HERE = os.path.dirname(os.path.abspath(__file__))
NODE = shutil.which("node")


def run_node_client(server):
    env = dict(os.environ, NODE_PATH=os.path.join(ROOT, "node_modules"))
    p = subprocess.run([NODE, os.path.join(HERE, "node_client.js"), server.ws_url],
                       capture_output=True, text=True, timeout=60, env=env)
    assert p.returncode == 0, f"node client failed ({p.returncode}):\n{p.stdout}\n{p.stderr}"
    lines = p.stdout.strip().splitlines()
    assert lines, f"no summary printed:\n{p.stderr}"
    return json.loads(lines[-1])


@pytest.mark.skipif(NODE is None, reason="node is not installed")
def test_node_ws_client(server):
    assert os.path.isdir(os.path.join(ROOT, "node_modules", "ws")), "run npm ci first"
    s = run_node_client(server)

    assert s["welcome"] == {"status": "connected", "version": "0.1.0", "tenant_id": None}

    h = s["health"]
    assert h["id"] == "h1" and h["status"] == "complete", h
    assert h["data"]["status"] == "ok" and h["data"]["version"] == "0.1.0", h
    assert h["data"]["connections"] == 1, h

    m = s["metadata"]
    assert m["status"] == "complete", m
    assert m["runtime"] == {"name": "realm", "version": "0.1.0"}
    assert {"health", "metadata", "echo", "cancel"} <= set(m["functions"]), m
    assert m["echo_streaming"] is True

    e = s["echo"]
    assert e["statuses"] == ["streaming"] * 3 + ["complete"], e
    assert e["indices"] == [0, 1, 2], e
    assert e["messages"] == [{"hello": "w\u00f6rld"}] * 4, e
    assert e["final"] == {"message": {"hello": "w\u00f6rld"}, "parts": 3}, e

    c = s["cancel"]
    assert c["first_status"] == "streaming", c
    assert c["victim"] == {"id": "long", "status": "cancelled"}, c
    assert c["reply"] == {"id": "c1", "status": "complete",
                          "data": {"id": "long", "cancelled": True}}, c

    assert s["unknown"] == "FUNCTION_NOT_FOUND", s
    assert s["close"] == {"code": 1000, "reason": "done"}, s
    assert "unexpected_binary" not in s
