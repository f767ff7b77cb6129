"""The escape suite (issue 13; docs/security.md): from inside real Node,
Python and `provided` functions, on a server run as root, with and without
--auth, every attempt to act on the host fails, and the host is unchanged.

Each function runs the same attempts (escape_probe.py, escape_probe.js): its
identity, writes anywhere under /proc (sysctls such as core_pattern, which a
crash would run as real root), TCP connections to every host loopback port
Realm and an unrelated listener have (directly, through the user-mode
stack's gateway, over IPv6), a Unix socket in the host's abstract
namespace, the host's sockets in /proc/net, host paths,
writes outside /tmp, and the syscalls the sandbox denies (unshare, mount,
ptrace, bpf, keyrings, io_uring, raw sockets...). The test then checks from
the host: every process the server started runs as an unprivileged host
uid, the sysctls read as before, the unrelated listener accepted nothing.

Controls, so that each check can fail: an outbound TCP connection to a test
host of our own (a network namespace made here, reached through a veth
pair) must succeed, /tmp must be writable, and the probe must find the
server's processes.
"""
import contextlib
import json
import os
import secrets
import socket
import subprocess
import threading

import pytest

from conftest import lambda_client, realm_bin, db_args
from fn_util import build_zip, fn_client, fn_server, poll_until
from lambda_util import ROLE

HERE = os.path.dirname(os.path.abspath(__file__))
ADMIN_KEY = "adm-" + secrets.token_hex(16)
UID_FIRST, UID_LAST = 1000000, 1999999

with open(os.path.join(HERE, "escape_probe.py")) as f:
    PROBE_PY = f.read()
with open(os.path.join(HERE, "escape_probe.js")) as f:
    PROBE_JS = f.read()

PY_HANDLER = """
from probe import probe
def handler(event, context):
    return probe(event)
"""

# A custom runtime: the Lambda runtime API loop by hand, then the probe.
PROVIDED_BOOTSTRAP = """#!/usr/bin/python3
import http.client, json, os, sys
sys.path.insert(0, "/var/task")
from probe import probe
host, port = os.environ["AWS_LAMBDA_RUNTIME_API"].split(":")
while True:
    c = http.client.HTTPConnection(host, int(port))
    c.request("GET", "/2018-06-01/runtime/invocation/next")
    r = c.getresponse()
    event = json.loads(r.read())
    rid = r.getheader("Lambda-Runtime-Aws-Request-Id")
    body = json.dumps(probe(event)).encode()
    c.request("POST", f"/2018-06-01/runtime/invocation/{rid}/response", body=body)
    c.getresponse().read()
    c.close()
"""

PACKAGES = {
    "node": ("nodejs20.x", "index.handler", {"index.js": PROBE_JS, "probe.py": PROBE_PY}),
    "python": ("python3.11", "app.handler", {"app.py": PY_HANDLER, "probe.py": PROBE_PY}),
    "provided": ("provided.al2023", "unused", {"bootstrap": PROVIDED_BOOTSTRAP,
                                               "probe.py": PROBE_PY}),
}

# What an attacker would change on the host, read before and after.
HOST_SYSCTLS = ["/proc/sys/kernel/core_pattern", "/proc/sys/kernel/modprobe",
                "/proc/sys/kernel/hostname", "/proc/sys/kernel/shmmax", "/proc/sys/kernel/msgmax",
                "/proc/sys/kernel/pid_max", "/proc/sys/vm/overcommit_memory",
                "/proc/sys/net/ipv4/ip_forward", "/proc/sys/fs/mqueue/queues_max"]


def read_host_sysctls():
    out = {}
    for p in HOST_SYSCTLS:
        try:
            with open(p) as f:
                out[p] = f.read()
        except OSError as e:
            out[p] = f"<{e.errno}>"
    return out


@pytest.fixture
def host_sysctls():
    """The host's sysctls before the attempts; should a sandbox ever fail,
    the values are put back afterwards (the test still fails)."""
    before = read_host_sysctls()
    yield before
    for path, value in before.items():
        if not value.startswith("<") and read_host_sysctls().get(path) != value:
            with contextlib.suppress(OSError), open(path, "w") as f:
                f.write(value)


# ---- the host side: an unrelated listener, a test host outside -----------------------------


class Listener:
    """A TCP listener on the host's loopback, or a Unix socket in the host's
    abstract namespace, that counts what it accepts."""

    def __init__(self, abstract=None):
        if abstract:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.bind("\0" + abstract)
            self.port = None
        else:
            self.sock = socket.socket()
            self.sock.bind(("127.0.0.1", 0))
            self.port = self.sock.getsockname()[1]
        self.abstract = abstract
        self.sock.listen(16)
        self.accepted = 0
        self.closed = False
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        while not self.closed:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            if not self.closed:
                self.accepted += 1
            c.close()

    def close(self):
        self.closed = True
        # Wake accept() so the thread ends.
        with contextlib.suppress(OSError):
            if self.abstract:
                c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                c.connect("\0" + self.abstract)
                c.close()
            else:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        self.sock.close()
        self.t.join(timeout=5)


def run(*cmd):
    subprocess.run(cmd, check=True, capture_output=True, timeout=30)


@pytest.fixture(scope="module")
def outside():
    """A test host of our own: a network namespace behind a veth pair, with a
    TCP listener. A function reaching it proves outbound traffic works."""
    tag = f"{os.getpid() % 100000}"
    ns, host_if, ns_if = f"realm-esc-{tag}", f"resc{tag}a", f"resc{tag}b"
    octet = os.getpid() % 250 + 1
    host_ip, ns_ip = f"198.18.{octet}.1", f"198.18.{octet}.2"
    port = 8000
    run("ip", "netns", "add", ns)
    srv = None
    try:
        run("ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if)
        run("ip", "link", "set", ns_if, "netns", ns)
        run("ip", "addr", "add", f"{host_ip}/30", "dev", host_if)
        run("ip", "link", "set", host_if, "up")
        run("ip", "-n", ns, "addr", "add", f"{ns_ip}/30", "dev", ns_if)
        run("ip", "-n", ns, "link", "set", ns_if, "up")
        run("ip", "-n", ns, "link", "set", "lo", "up")
        code = ("import socket\n"
                "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
                f"s.bind(('{ns_ip}', {port})); s.listen(16); s.settimeout(600)\n"
                "while True:\n"
                "    c, _ = s.accept(); c.close()\n")
        srv = subprocess.Popen(["ip", "netns", "exec", ns, "/usr/bin/python3", "-c", code],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def up():
            try:
                socket.create_connection((ns_ip, port), timeout=1).close()
                return True
            except OSError:
                return False

        poll_until(up, 10, what="the outside test host to listen")
        yield (ns_ip, port)
    finally:
        if srv:
            srv.kill()
            srv.wait()
        subprocess.run(["ip", "link", "del", host_if], capture_output=True)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


@pytest.fixture(scope="module")
def unrelated():
    l = Listener()
    yield l
    l.close()


@pytest.fixture(scope="module")
def abstract():
    l = Listener(abstract=f"realm-escape-{os.getpid()}")
    yield l
    l.close()


def tenant_key(s):
    p = subprocess.run([realm_bin(), "keys", "create", "--tenant", "intruder", "--json",
                        "--data-dir", s.data_dir, *db_args(s.data_dir)], capture_output=True,
                       text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


@pytest.fixture(scope="module", params=["no-auth", "auth"])
def deployed(request):
    """A server (as root, the normal case) with the three probes deployed."""
    assert os.geteuid() == 0, "the escape suite runs as root, as Realm does here"
    flags = ("--auth", "--admin-key", ADMIN_KEY) if request.param == "auth" else ()
    with fn_server(*flags) as s:
        if request.param == "auth":
            k = tenant_key(s)
            lam = lambda_client(s, akid=k["access_key_id"], secret=k["secret_access_key"],
                                retries={"total_max_attempts": 1}, connect_timeout=None,
                                read_timeout=120)
        else:
            lam = fn_client(s, read_timeout=120)
        for name, (runtime, handler, files) in PACKAGES.items():
            lam.create_function(FunctionName=f"esc-{name}", Runtime=runtime, Handler=handler,
                                Role=ROLE, Code={"ZipFile": build_zip(files)}, Timeout=120,
                                MemorySize=256)
            lam.get_waiter("function_active_v2").wait(FunctionName=f"esc-{name}")
        yield s, lam, request.param


def descendants(pid):
    """Every process below pid: {pid: (comm, [real, effective, saved, fs uid])}."""
    parent, info = {}, {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/status") as f:
                st = dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
        except OSError:
            continue
        parent[int(d)] = int(st["PPid"])
        info[int(d)] = (st["Name"], [int(x) for x in st["Uid"].split()],
                        [int(x) for x in st["Gid"].split()])
    out = {}
    for p in parent:
        q = p
        while q and q != pid and q in parent:
            q = parent[q]
        if q == pid and p != pid:
            out[p] = info[p]
    return out


@pytest.mark.parametrize("runtime", ["node", "python", "provided"])
def test_no_escape(deployed, runtime, outside, unrelated, abstract, host_sysctls):
    s, lam, mode = deployed
    before = host_sysctls
    ports = [s.ports[n] for n in ("client", "control", "runtime", "metrics")] + [unrelated.port]
    targets = [[h, p] for h in ("127.0.0.1", "127.0.0.2", "10.0.2.2", "::1") for p in ports]
    event = {"targets": targets, "outbound": [list(outside)], "abstract": [abstract.abstract],
             "host_paths": [s.data_dir, os.path.dirname(s.data_dir), HERE]}
    resp = lam.invoke(FunctionName=f"esc-{runtime}", Payload=json.dumps(event).encode())
    body = resp["Payload"].read()
    assert resp["StatusCode"] == 200 and "FunctionError" not in resp, body
    r = json.loads(body)
    where = f"{runtime}, {mode}"

    # Controls: the probe ran for real and the network works.
    assert r["tmp_write"] == "ok", (where, r["tmp_write"])
    assert all(v == "connected" for v in r["outbound"].values()), (where, r["outbound"])

    # Identity: no capabilities, no new privileges, seccomp on, one uid mapped.
    st = r["status"]
    assert int(st["CapEff"], 16) == 0 and int(st["CapPrm"], 16) == 0, (where, st)
    assert int(st["CapAmb"], 16) == 0, (where, st)
    assert st["NoNewPrivs"] == "1" and st["Seccomp"] == "2", (where, st)
    assert len(r["uid_map"]) == 1 and r["uid_map"][0][2] == 1, (where, r["uid_map"])
    assert len(r["gid_map"]) == 1 and r["gid_map"][0][2] == 1, (where, r["gid_map"])

    # From the host: everything the server started runs as an unprivileged
    # host user of the configured range (the environments' processes and
    # their network stacks).
    procs = descendants(s.proc.pid)
    assert procs, "the server has no child processes: the environments are gone"
    names = {v[0] for v in procs.values()}
    assert "bwrap" in names and "slirp4netns" in names, (where, names)
    for pid, (name, uids, gids) in procs.items():
        assert all(UID_FIRST <= u <= UID_LAST for u in uids), (where, pid, name, uids)
        assert all(UID_FIRST <= g <= UID_LAST for g in gids), (where, pid, name, gids)

    # procfs: nothing outside the process itself opens for writing; no sysctl changes.
    assert r["proc_writable"] == [], (where, r["proc_writable"])
    assert all(v != "ok" for v in r["sysctl_writes"].values()), (where, r["sysctl_writes"])
    assert read_host_sysctls() == before, where

    # The host's loopback services are out of reach, and out of sight.
    assert all(v != "connected" for v in r["connects"].values()), (where, r["connects"])
    assert not set(ports) & set(r["listening"]), (where, r["listening"])
    assert unrelated.accepted == 0 and abstract.accepted == 0, where
    assert f"@{abstract.abstract}" in r["connects"], r["connects"]

    # Host files invisible; nothing writable but /tmp; the kernel's admin surface refused.
    assert not any(r["host_paths"].values()), (where, r["host_paths"])
    assert all(v != "ok" for v in r["ro_writes"].values()), (where, r["ro_writes"])
    assert all(v != "ok" for v in r["syscalls"].values()), (where, r["syscalls"])


# ---- /tmp is a disk of its own ----------------------------------------------------------------

TMP_WRITER = """
import os
def handler(event, context):
    out = {}
    st = os.statvfs("/tmp")
    out["free_mb"] = st.f_bavail * st.f_frsize // 2**20
    chunk = b"x" * (1 << 20)
    try:
        with open("/tmp/big", "wb") as f:
            for _ in range(event["mb"]):
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        out["written"] = os.path.getsize("/tmp/big")
    except OSError as e:
        out["error"] = e.strerror
    finally:
        if os.path.exists("/tmp/big"):
            os.unlink("/tmp/big")
    return out
"""


def test_tmp_is_a_disk_of_ephemeral_storage_size_not_memory():
    """A 128 MB function writes 300 MB into its 512 MB /tmp (a tmpfs would be
    charged to its memory and OOM-kill it); /tmp holds at least what
    EphemeralStorage says, and no more."""
    with fn_server() as s:
        lam = fn_client(s, read_timeout=120)
        for name, size in (("tmp-512", 512), ("tmp-1024", 1024)):
            lam.create_function(FunctionName=name, Runtime="python3.11", Handler="app.handler",
                                Role=ROLE, Code={"ZipFile": build_zip({"app.py": TMP_WRITER})},
                                MemorySize=128, Timeout=120, EphemeralStorage={"Size": size})
            lam.get_waiter("function_active_v2").wait(FunctionName=name)

        def call(name, mb):
            resp = lam.invoke(FunctionName=name, Payload=json.dumps({"mb": mb}).encode())
            body = resp["Payload"].read()
            assert "FunctionError" not in resp, body
            return json.loads(body)

        r = call("tmp-512", 300)
        assert r.get("written") == 300 * 2**20, r
        assert 512 <= r["free_mb"] < 600, r
        r = call("tmp-512", 700)
        assert r.get("error") == "No space left on device", r
        r = call("tmp-1024", 900)
        assert r.get("written") == 900 * 2**20 and 1024 <= r["free_mb"] < 1100, r


CONN_HOG = """
import os, socket
def handler(event, context):
    host, port = os.environ["AWS_LAMBDA_RUNTIME_API"].split(":")
    socks, failed = [], 0
    for _ in range(event["n"]):
        s = socket.socket()
        s.settimeout(2)
        try:
            s.connect((host, int(port)))
            socks.append(s)
        except OSError:
            failed += 1
            s.close()
    # A refused connection is answered 503 and closed at once; the others
    # stay open and silent (no request was sent).
    held = 0
    for s in socks:
        s.settimeout(0.2)
        try:
            data = s.recv(64)
            if not data:
                continue
            if data.startswith(b"HTTP/1.1 503"):
                continue
            held += 1
        except socket.timeout:
            held += 1
        except OSError:
            pass
    for s in socks:
        s.close()
    return {"held": held, "failed": failed, "opened": len(socks)}
"""


def test_a_function_cannot_take_the_servers_descriptors_through_its_runtime_api():
    """Its private runtime listener takes a handful of connections; the rest
    are refused at once, so a function opening hundreds costs the server
    nothing lasting."""
    with fn_server() as s:
        lam = fn_client(s, read_timeout=120)
        lam.create_function(FunctionName="hog", Runtime="python3.11", Handler="app.handler",
                            Role=ROLE, Code={"ZipFile": build_zip({"app.py": CONN_HOG})},
                            Timeout=60)
        lam.get_waiter("function_active_v2").wait(FunctionName="hog")
        resp = lam.invoke(FunctionName="hog", Payload=json.dumps({"n": 300}).encode())
        body = resp["Payload"].read()
        assert "FunctionError" not in resp, body
        r = json.loads(body)
        assert r["opened"] + r["failed"] == 300, r
        # The runtime's own connection is one of the 16.
        assert 0 < r["held"] <= 16, r


@pytest.mark.parametrize("value", ["0-9", "5-2", "abc", "100-", "1-4294967295"])
def test_a_bad_host_uid_range_stops_the_server_at_start(value, tmp_path):
    p = subprocess.run([realm_bin(), "serve", "--port", "0", "--control-port", "0",
                        "--runtime-port", "0", "--metrics-port", "0",
                        "--data-dir", str(tmp_path / "d"), "--env-host-uids", value],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode != 0 and "--env-host-uids" in p.stderr, (p.returncode, p.stderr)
