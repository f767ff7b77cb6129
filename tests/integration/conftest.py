"""Shared fixtures: start the real `realm serve` binary on ephemeral ports.

The binary is $REALM_BIN (make test points it at the sanitizer build), or
build/asan/realm, or build/realm. Each server gets its own temporary data
dir; its listening lines ("listening <name> <url>") tell us the ports.
"""
import os
import re
import signal
import socket
import subprocess
import tempfile
import threading

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LISTEN_RE = re.compile(r"^listening (\w+) \w+://(?:\[[^\]]+\]|[^:]+):(\d+)")


def realm_bin():
    env = os.environ.get("REALM_BIN")
    if env:
        return env
    for cand in ("build/asan/realm", "build/realm", "build/dev/realm"):
        path = os.path.join(ROOT, cand)
        if os.path.exists(path):
            return path
    raise RuntimeError("no realm binary: run make first or set REALM_BIN")


class Server:
    """A running `realm serve` with ports[name] for client/control/runtime/metrics."""

    def __init__(self, *args, data_dir=None, preexec_fn=None):
        self.tmp = tempfile.TemporaryDirectory(prefix="realm-test-")
        self.data_dir = data_dir or os.path.join(self.tmp.name, "data")
        cmd = [realm_bin(), "serve", "--port", "0", "--control-port", "0",
               "--runtime-port", "0", "--metrics-port", "0",
               "--data-dir", self.data_dir, *args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, cwd=self.tmp.name, preexec_fn=preexec_fn)
        self.ports = {}
        self.stdout_lines = []
        self.killed = False  # set by kill(): teardown then expects no clean exit
        # Read listening lines until all four are known (blocking reads, no sleeps).
        while len(self.ports) < 4:
            line = self.proc.stdout.readline()
            if not line:
                err = self.proc.stderr.read()
                raise RuntimeError(f"realm exited early ({self.proc.wait()}): {err}")
            self.stdout_lines.append(line)
            m = LISTEN_RE.match(line)
            if m:
                self.ports[m.group(1)] = int(m.group(2))
        # Drain stderr in the background so the server never blocks on a full pipe.
        self.stderr_chunks = []
        self._t = threading.Thread(target=self._drain, daemon=True)
        self._t.start()

    def _drain(self):
        for line in self.proc.stderr:
            self.stderr_chunks.append(line)

    @property
    def stderr(self):
        return "".join(self.stderr_chunks)

    @property
    def ws_url(self):
        return f"ws://127.0.0.1:{self.ports['client']}"

    def url(self, name, path="/"):
        return f"http://127.0.0.1:{self.ports[name]}{path}"

    def connect(self, name="client", timeout=10):
        s = socket.create_connection(("127.0.0.1", self.ports[name]), timeout=timeout)
        return s

    def signal(self, sig=signal.SIGTERM):
        self.proc.send_signal(sig)

    def kill(self):
        """SIGKILLs the server (a crash) and waits for it; the fixtures' teardown
        then does not require exit code 0 for this server."""
        self.killed = True
        self.proc.send_signal(signal.SIGKILL)
        rc = self.proc.wait(timeout=30)
        self._t.join(timeout=5)
        return rc

    def wait(self, timeout=30):
        rc = self.proc.wait(timeout=timeout)
        self._t.join(timeout=5)
        return rc

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._t.join(timeout=5)
        self.tmp.cleanup()
        return self.proc.returncode


@pytest.fixture
def server():
    s = Server()
    yield s
    rc = s.stop()
    # A clean exit is part of every test: sanitizer reports make the exit code non-zero.
    assert rc == 0 or s.killed, f"realm exited with {rc}\n{s.stderr}"
    assert "ERROR: AddressSanitizer" not in s.stderr, s.stderr
    assert "runtime error:" not in s.stderr, s.stderr


@pytest.fixture
def make_server():
    """Factory for servers with extra flags: make_server('--max-message-bytes', '1024')."""
    started = []

    def make(*args, **kw):
        s = Server(*args, **kw)
        started.append(s)
        return s

    yield make
    for s in started:
        rc = s.stop()
        assert rc == 0 or s.killed, f"realm exited with {rc}\n{s.stderr}"
        assert "ERROR: AddressSanitizer" not in s.stderr, s.stderr
        assert "runtime error:" not in s.stderr, s.stderr
