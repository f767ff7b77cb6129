"""Execution limits and the sandbox: timeouts, the memory limit, crashes,
throttling, idle environments, shutdown with live environments, what a
function can see and do from inside its sandbox, and who may use the runtime
API."""
import json
import os
import re
import threading
import time

import pytest

from conftest import Server
from fn_util import (NODE_ECHO, PY_ECHO, deploy_node, deploy_python, error_code, fn_client,
                     fn_logs, fn_server, http_request, invoke, metric, ok, poll_until,
                     runtime_connections)
from lambda_util import finish

RID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


@pytest.fixture(scope="module")
def srv():
    # Queue depth 0: a call that finds no environment free and none startable is
    # throttled at once. (A synchronous call past reserved concurrency is
    # throttled at once whatever the depth: test_85_streaming_invoke.py.)
    with fn_server("--invoke-queue-depth", "0") as s:
        yield s


@pytest.fixture(scope="module")
def lam(srv):
    return fn_client(srv)


def deploy(lam, runtime, name, node_src, py_src, **kw):
    if runtime == "node":
        return deploy_node(lam, name, node_src, **kw)
    return deploy_python(lam, name, py_src, **kw)


def expect_fn_error(lam, name, event, error_type):
    """Invokes; the answer must be 200 + FunctionError Unhandled with errorType;
    returns (error JSON, request id, seconds taken)."""
    t0 = time.monotonic()
    r, p = invoke(lam, name, event)
    elapsed = time.monotonic() - t0
    assert r["StatusCode"] == 200, r
    assert r.get("FunctionError") == "Unhandled", (r, p)
    assert isinstance(p, dict) and p.get("errorType") == error_type, p
    return p, r["ResponseMetadata"]["RequestId"], elapsed


# ---- timeout, memory, exit ---------------------------------------------------------------


@pytest.mark.parametrize("runtime", ["node", "python"])
def test_timeout_ends_the_invocation_at_the_deadline(lam, runtime):
    name = f"timeout-{runtime}"
    deploy(lam, runtime, name, NODE_ECHO, PY_ECHO, Timeout=1)
    warm = ok(lam, name, {})
    err, rid, elapsed = expect_fn_error(lam, name, {"sleep_ms": 10000}, "Sandbox.Timedout")
    assert err["errorMessage"] == f"RequestId: {rid} Error: Task timed out after 1.00 seconds", err
    assert 1.0 <= elapsed < 1.0 + 2.0, elapsed
    # The environment was replaced; the next call works.
    after = ok(lam, name, {"again": 1})
    assert after["event"] == {"again": 1}
    assert after["env"] != warm["env"], (warm, after)


NODE_OOM = """
exports.handler = async (event) => {
  if (!event.blow) return 'fine';
  const keep = [];
  for (let i = 0; i < 64; i++) keep.push(Buffer.alloc(16 * 1024 * 1024, i));  // 1 GiB
  return keep.length;
};
"""

PY_OOM = """
def handler(event, context):
    if not event.get('blow'):
        return 'fine'
    keep = []
    for i in range(64):
        keep.append(bytearray(16 * 1024 * 1024))  # zero-filled pages are touched
        keep[-1][::4096] = b'x' * (16 * 1024 * 1024 // 4096)
    return len(keep)
"""


@pytest.mark.parametrize("runtime", ["node", "python"])
def test_memory_limit_is_runtime_out_of_memory(lam, runtime):
    name = f"oom-{runtime}"
    deploy(lam, runtime, name, NODE_OOM, PY_OOM, MemorySize=128, Timeout=10)
    err, rid, elapsed = expect_fn_error(lam, name, {"blow": True}, "Runtime.OutOfMemory")
    assert err["errorMessage"].startswith(f"RequestId: {rid} Error: "), err
    assert elapsed < 8, elapsed
    assert ok(lam, name, {}) == "fine"


NODE_EXIT = "exports.handler = async (e) => { if (e.exit) process.exit(3); return 'fine'; };\n"
PY_EXIT = ("import os\ndef handler(e, c):\n    if e.get('exit'):\n        os._exit(3)\n"
           "    return 'fine'\n")


@pytest.mark.parametrize("runtime", ["node", "python"])
def test_process_exit_is_runtime_exit_error(lam, runtime):
    name = f"exit-{runtime}"
    deploy(lam, runtime, name, NODE_EXIT, PY_EXIT)
    assert ok(lam, name, {}) == "fine"
    err, rid, _ = expect_fn_error(lam, name, {"exit": True}, "Runtime.ExitError")
    assert err["errorMessage"] == \
        f"RequestId: {rid} Error: Runtime exited with error: exit status 3", err
    assert ok(lam, name, {}) == "fine"


def test_killed_by_a_signal_is_runtime_exit_error(lam):
    deploy_node(lam, "sigkill", "exports.handler = async (e) => { "
                "if (e.kill) process.kill(process.pid, 'SIGKILL'); return 'fine'; };")
    err, rid, _ = expect_fn_error(lam, "sigkill", {"kill": True}, "Runtime.ExitError")
    assert err["errorMessage"] == \
        f"RequestId: {rid} Error: Runtime exited with error: signal: killed", err
    assert ok(lam, "sigkill", {}) == "fine"


# ---- throttling ---------------------------------------------------------------------------


def test_reserved_concurrency_zero_is_throttled(lam):
    deploy_node(lam, "reserved-zero")
    lam.put_function_concurrency(FunctionName="reserved-zero", ReservedConcurrentExecutions=0)
    code, status, resp = error_code(lam.invoke, FunctionName="reserved-zero", Payload=b"{}")
    assert (code, status) == ("TooManyRequestsException", 429), resp
    assert resp["Reason"] == "ReservedFunctionConcurrentInvocationLimitExceeded", resp
    assert resp["ResponseMetadata"]["HTTPHeaders"].get("retry-after"), resp
    lam.delete_function_concurrency(FunctionName="reserved-zero")
    assert ok(lam, "reserved-zero", {"after": 1})["event"] == {"after": 1}


def test_reserved_concurrency_one_throttles_a_second_call(srv, lam):
    deploy_node(lam, "reserved-one")
    lam.put_function_concurrency(FunctionName="reserved-one", ReservedConcurrentExecutions=1)
    ok(lam, "reserved-one", {})  # the one environment is warm
    slow_result = []
    other = fn_client(srv)
    t = threading.Thread(target=lambda: slow_result.append(
        invoke(other, "reserved-one", {"sleep_ms": 2000})))
    t.start()
    # Wait until the slow call is running (its line is in the function's log).
    poll_until(lambda: '"sleep_ms":2000' in fn_logs(srv, "reserved-one"), 10,
               what="the slow call to start")
    t0 = time.monotonic()
    code, status, resp = error_code(lam.invoke, FunctionName="reserved-one", Payload=b"{}")
    assert time.monotonic() - t0 < 1.0
    assert (code, status) == ("TooManyRequestsException", 429), resp
    assert resp["Reason"] == "ReservedFunctionConcurrentInvocationLimitExceeded", resp
    t.join(timeout=30)
    r, p = slow_result[0]
    assert "FunctionError" not in r and p["event"] == {"sleep_ms": 2000}, p
    assert ok(lam, "reserved-one", {"n": 2})["event"] == {"n": 2}


# ---- environments' lifetimes ------------------------------------------------------------


def test_idle_environment_is_stopped():
    with fn_server("--env-idle-ms", "300") as s:
        lam = fn_client(s)
        deploy_node(lam, "idle")
        first = ok(lam, "idle", {})
        assert metric(s, "realm_environments", '{state="idle"}') == 1
        poll_until(lambda: metric(s, "realm_environments_stopped_total") >= 1
                   and metric(s, "realm_environments", '{state="idle"}') == 0, 10,
                   what="the idle environment to stop")
        second = ok(lam, "idle", {})
        assert second["env"] != first["env"], (first, second)
        assert second["served"] == 1
        assert metric(s, "realm_environments_started_total") == 2


@pytest.mark.parametrize("runtime,channel", [("node", "websocket"), ("python", "websocket"),
                                             ("node", "http"), ("python", "http")])
def test_stopped_environment_closes_its_runtime_connections(srv, lam, runtime, channel):
    """Once an environment is stopped (here: its function is deleted) and its
    processes are gone, the server holds none of its runtime connections."""
    name = f"conn-{runtime}-{channel}"
    env = {"Variables": {"LAMBDA_USE_WEBSOCKET": "false" if channel == "http" else "true"}}
    baseline = runtime_connections(srv)
    deploy(lam, runtime, name, NODE_ECHO, PY_ECHO, Environment=env)
    ok(lam, name, {})
    assert runtime_connections(srv) > baseline
    lam.delete_function(FunctionName=name)
    poll_until(lambda: runtime_connections(srv) <= baseline, 5,
               what=f"the runtime connections of {name}'s stopped environment to close "
                    f"(baseline {baseline})")


def test_sigterm_with_idle_environments_stops_promptly():
    """No call is in flight, so shutdown has nothing to wait for: the warm
    environments (Node on the WebSocket channel, Python long-polling over HTTP)
    are stopped and the server exits at once, not after the grace period."""
    s = Server("--shutdown-grace-ms", "3000")
    try:
        lam = fn_client(s)
        deploy_node(lam, "warm-node")
        deploy_python(lam, "warm-py", Environment={"Variables": {"LAMBDA_USE_WEBSOCKET": "false"}})
        ok(lam, "warm-node", {})
        ok(lam, "warm-py", {})
        lam.close()
        t0 = time.monotonic()
        s.signal()
        rc = s.wait(timeout=60)
        elapsed = time.monotonic() - t0
    finally:
        finish(s)
    assert rc == 0, s.stderr
    assert elapsed < 2.5, f"shutdown took {elapsed:.1f} s\n{s.stderr}"


# ---- inside the sandbox -------------------------------------------------------------------

SANDBOX_NODE = r"""
const fs = require('fs');
function probeRead(p) {
  try { fs.readdirSync(p); return 'listed'; } catch (e) {
    if (e.code !== 'ENOTDIR') return e.code;
    try { fs.readFileSync(p); return 'read'; } catch (e2) { return e2.code; }
  }
}
function probeWrite(p) {
  try { fs.writeFileSync(p, 'x'); return 'written'; } catch (e) { return e.code; }
}
exports.handler = async (event) => {
  const status = fs.readFileSync('/proc/self/status', 'utf8');
  const field = (k) => (status.match(new RegExp('^' + k + ':\\s*(.*)$', 'm')) || [])[1];
  const pids = fs.readdirSync('/proc').filter((d) => /^\d+$/.test(d)).map(Number);
  const comms = pids.map((p) => { try { return fs.readFileSync(`/proc/${p}/comm`, 'utf8').trim(); } catch (e) { return e.code; } });
  fs.writeFileSync('/tmp/probe.txt', 'tmp works');
  return {
    uid: process.getuid(), gid: process.getgid(), euid: process.geteuid(), pid: process.pid,
    cwd: process.cwd(),
    status: { CapEff: field('CapEff'), CapPrm: field('CapPrm'), CapInh: field('CapInh'),
              CapBnd: field('CapBnd'), CapAmb: field('CapAmb'), NoNewPrivs: field('NoNewPrivs'),
              Seccomp: field('Seccomp') },
    pids, comms,
    reads: Object.fromEntries(event.reads.map((p) => [p, probeRead(p)])),
    writes: Object.fromEntries(event.writes.map((p) => [p, probeWrite(p)])),
    tmp: fs.readFileSync('/tmp/probe.txt', 'utf8'),
    env: process.env,
  };
};
"""

HOST_PATHS = ["/root", "/home", "/etc/shadow", "/etc/passwd", "/work", "/work/main",
              "/work/main/src", "/var/lib", "/srv", "/boot"]
WRITE_PATHS = ["/var/task/new.txt", "/var/task/index.js", "/opt/new.txt", "/usr/new.txt",
               "/new.txt", "/etc/new.txt", "/usr/bin/node"]


@pytest.fixture(scope="module")
def inside(lam):
    """What a Node function reports from inside its sandbox (run once)."""
    deploy_node(lam, "sandbox-probe", SANDBOX_NODE, MemorySize=256,
                Environment={"Variables": {"MY_SETTING": "from-config"}})
    return ok(lam, "sandbox-probe", {"reads": HOST_PATHS, "writes": WRITE_PATHS})


def test_sandbox_hides_host_files(inside):
    for path, outcome in inside["reads"].items():
        assert outcome in ("ENOENT", "EACCES", "EPERM"), (path, outcome)


def test_sandbox_is_read_only_except_tmp(inside):
    for path, outcome in inside["writes"].items():
        assert outcome in ("EROFS", "EACCES", "EPERM"), (path, outcome)
    assert inside["tmp"] == "tmp works"
    assert inside["cwd"] == "/var/task"


def test_sandbox_user_and_capabilities(inside):
    assert (inside["uid"], inside["euid"]) == (993, 993), inside
    st = inside["status"]
    for cap in ("CapEff", "CapPrm", "CapInh", "CapAmb"):
        assert int(st[cap], 16) == 0, (cap, st)
    assert st["NoNewPrivs"] == "1", st
    assert st["Seccomp"] == "2", st  # a filter is installed


def test_sandbox_has_its_own_pid_namespace(inside):
    assert inside["pid"] < 10, inside["pid"]
    # Only the sandbox's own few processes: not the host's (pytest, realm, ...).
    assert len(inside["pids"]) <= 5, list(zip(inside["pids"], inside["comms"]))
    assert max(inside["pids"]) < 50, inside["pids"]
    for comm in inside["comms"]:
        assert comm not in ("realm", "pytest", "python3", "sh", "bash", "systemd", "init"), \
            inside["comms"]


def test_sandbox_environment_variables(srv, inside):
    env = inside["env"]
    expected = {
        "_HANDLER": "index.handler",
        "LAMBDA_TASK_ROOT": "/var/task",
        "LAMBDA_RUNTIME_DIR": "/opt",
        "AWS_LAMBDA_FUNCTION_NAME": "sandbox-probe",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
        "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/sandbox-probe",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "MY_SETTING": "from-config",
    }
    for k, v in expected.items():
        assert env.get(k) == v, (k, env.get(k))
    assert re.fullmatch(r"127\.0\.0\.1:\d+", env.get("AWS_LAMBDA_RUNTIME_API", "")), env
    assert env.get("AWS_LAMBDA_LOG_STREAM_NAME"), env
    assert env.get("TZ"), env


def test_sandbox_does_not_leak_host_environment(inside):
    env = inside["env"]
    host = os.environ
    # Whatever the test process (and so the server) has that a function must not see.
    leaks = [k for k in env if k in host and k not in ("PATH", "LANG", "TZ", "PWD")
             and env[k] == host[k]]
    assert not leaks, leaks
    for k in ("HOME", "AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "AWS_SESSION_TOKEN",
              "SSL_CERT_FILE", "NODE_EXTRA_CA_CERTS", "REQUESTS_CA_BUNDLE"):
        assert k not in env or env[k] != host.get(k), (k, env[k])
    assert not [k for k in env if k.startswith(("PYENV", "PYTEST", "REALM_"))], sorted(env)


def test_python_sandbox_identity_and_environment(lam):
    deploy_python(lam, "py-probe", """
import os
def handler(event, context):
    with open('/proc/self/status') as f:
        status = dict(l.split(':', 1) for l in f.read().splitlines() if ':' in l)
    try:
        open('/var/task/new.txt', 'w').write('x')
        write = 'written'
    except OSError as e:
        write = e.errno
    return {'uid': os.getuid(), 'pid': os.getpid(), 'cap': status['CapEff'].strip(),
            'env': dict(os.environ), 'write': write, 'cwd': os.getcwd()}
""", runtime="python3.11")
    p = ok(lam, "py-probe", {})
    assert p["uid"] == 993 and int(p["cap"], 16) == 0 and p["pid"] < 10, p
    assert p["cwd"] == "/var/task"
    assert p["write"] in (30, 13, 1), p  # EROFS, EACCES, EPERM
    env = p["env"]
    assert env["_HANDLER"] == "app.handler" and env["AWS_LAMBDA_FUNCTION_NAME"] == "py-probe"
    assert "HOME" not in env or env["HOME"] != os.environ.get("HOME"), env
    assert not [k for k in env if k.startswith(("PYENV", "PYTEST", "VIRTUAL_ENV"))], sorted(env)


def test_tmp_is_private_to_each_environment(srv, lam):
    deploy_node(lam, "tmp-a", "const fs = require('fs'); exports.handler = async () => { "
                "fs.writeFileSync('/tmp/secret-a', 'a'); return fs.readdirSync('/tmp'); };")
    deploy_node(lam, "tmp-b", "const fs = require('fs'); exports.handler = async () => "
                "fs.readdirSync('/tmp');")
    assert "secret-a" in ok(lam, "tmp-a", {})
    assert "secret-a" not in ok(lam, "tmp-b", {})


PIDS_PY = """
import threading
def handler(event, context):
    stop = threading.Event()
    started, error = 0, None
    threads = []
    try:
        for _ in range(event['max']):
            t = threading.Thread(target=stop.wait)
            t.start()
            threads.append(t)
            started += 1
    except Exception as e:  # RuntimeError: can't start new thread
        error = type(e).__name__ + ': ' + str(e)
    stop.set()
    for t in threads:
        t.join()
    return {'started': started, 'error': error}
"""


def test_pids_limit_stops_a_thread_bomb():
    with fn_server("--env-pids-max", "64") as s:
        lam = fn_client(s)
        deploy_python(lam, "bomb", PIDS_PY, MemorySize=512, Timeout=20)
        p = ok(lam, "bomb", {"max": 500})
        assert p["error"], p
        assert p["started"] < 64, p
        # The environment still works afterwards.
        p = ok(lam, "bomb", {"max": 5})
        assert p == {"started": 5, "error": None}, p


CONNECT_NODE = """
const net = require('net');
exports.handler = async (event) => new Promise((resolve) => {
  const s = net.connect({ host: '127.0.0.1', port: event.port });
  s.setTimeout(2000, () => { s.destroy(); resolve('timeout'); });
  s.on('connect', () => { s.destroy(); resolve('connected'); });
  s.on('error', (e) => resolve(e.code));
});
"""


def test_host_loopback_is_unreachable_by_default(srv, lam):
    """Every environment has a network namespace of its own: the host's
    loopback services (here the control port) are out of reach."""
    deploy_node(lam, "net-private", CONNECT_NODE)
    assert ok(lam, "net-private", {"port": srv.ports["control"]}) == "ECONNREFUSED"


def test_env_network_host_shares_the_hosts_network():
    """The explicit opt-in for local development: the host's own network."""
    with fn_server("--env-network=host") as s:
        lam = fn_client(s)
        deploy_node(lam, "net-host", CONNECT_NODE)
        assert ok(lam, "net-host", {"port": s.ports["control"]}) == "connected"


@pytest.mark.parametrize("runtime", ["node", "python"])
def test_env_network_false_isolates_functions_but_keeps_the_runtime_api(runtime):
    with fn_server("--env-network=none") as s:
        lam = fn_client(s)
        if runtime == "node":
            deploy_node(lam, "net-off", CONNECT_NODE)
        else:
            deploy_python(lam, "net-off", """
import socket
def handler(event, context):
    s = socket.socket()
    s.settimeout(2)
    try:
        s.connect(('127.0.0.1', event['port']))
        return 'connected'
    except ConnectionRefusedError:
        return 'ECONNREFUSED'
    except OSError as e:
        return type(e).__name__
    finally:
        s.close()
""")
        # The function is invoked (so its runtime API works) but cannot reach a
        # host port: its loopback is its own.
        for _ in range(2):
            assert ok(lam, "net-off", {"port": s.ports["control"]}) != "connected"


def test_function_log_is_rotated_at_log_file_bytes():
    with fn_server("--log-file-bytes", "4096") as s:
        lam = fn_client(s)
        deploy_node(lam, "rotated", "exports.handler = async (e) => "
                    "{ console.log('line-' + e.i + ' ' + 'x'.repeat(200)); return e.i; };")
        for i in range(30):
            assert ok(lam, "rotated", {"i": i}) == i
        d = os.path.join(s.data_dir, "logs", "_")
        files = sorted(os.listdir(d))
        assert files == ["rotated.log", "rotated.log.1"], files
        for f in files:
            assert os.path.getsize(os.path.join(d, f)) <= 4096, (f, os.path.getsize(
                os.path.join(d, f)))
        log = fn_logs(s, "rotated")
        assert len(log.encode()) <= 2 * 4096
        assert "line-29 " in log and "line-0 " not in log, log
        assert log.rstrip("\n").splitlines()[-1].startswith("REPORT RequestId: "), log


# ---- the runtime API's door -------------------------------------------------------------


def test_runtime_api_refuses_processes_outside_environments(srv):
    port = srv.ports["runtime"]
    for method, path, body in (
            ("GET", "/2018-06-01/runtime/invocation/next", b""),
            ("POST", "/2018-06-01/runtime/invocation/00000000-0000-4000-8000-000000000000/response",
             b'{"stolen":true}'),
            ("POST", "/2018-06-01/runtime/invocation/00000000-0000-4000-8000-000000000000/error",
             b'{"errorType":"X","errorMessage":"y"}'),
            ("POST", "/2018-06-01/runtime/init/error", b'{"errorType":"X","errorMessage":"y"}')):
        status, _, data = http_request(port, method, path, body,
                                       {"Content-Type": "application/json"}, timeout=10)
        assert status == 403, (path, status, data)
        assert json.loads(data)["errorType"] == "Realm.UnknownEnvironment", (path, data)


# A function that tries the runtime API itself, over plain HTTP.
INTRUDER_NODE = """
const http = require('http');
function call(method, path, body) {
  return new Promise((resolve) => {
    const [host, port] = process.env.AWS_LAMBDA_RUNTIME_API.split(':');
    const req = http.request({ host, port, method, path, timeout: 3000,
                               headers: { 'Content-Type': 'application/json' } }, (res) => {
      let data = '';
      res.on('data', (c) => { data += c; });
      res.on('end', () => resolve({ status: res.statusCode, body: data }));
    });
    req.on('timeout', () => { req.destroy(); resolve({ status: 'timeout' }); });
    req.on('error', (e) => resolve({ status: 'error', body: e.message }));
    req.end(body);
  });
}
exports.handler = async (event, context) => {
  const out = {};
  if (event.victim) {
    out.respond = await call('POST', `/2018-06-01/runtime/invocation/${event.victim}/response`,
                             JSON.stringify({ hijacked: true }));
    out.error = await call('POST', `/2018-06-01/runtime/invocation/${event.victim}/error`,
                           JSON.stringify({ errorType: 'Hijack', errorMessage: 'hijacked' }));
  }
  if (event.next) out.next = await call('GET', '/2018-06-01/runtime/invocation/next');
  return out;
};
"""


def test_function_cannot_take_its_own_next_while_invoked(lam):
    deploy_node(lam, "intruder-next", INTRUDER_NODE)
    p = ok(lam, "intruder-next", {"next": True})
    assert p["next"]["status"] == 403, p
    assert json.loads(p["next"]["body"])["errorType"] == "InvalidStateTransition", p


def test_function_cannot_answer_another_functions_invocation(srv, lam):
    deploy_node(lam, "victim", NODE_ECHO)
    deploy_node(lam, "intruder", INTRUDER_NODE)
    ok(lam, "victim", {})
    victim = []
    other = fn_client(srv)
    t = threading.Thread(target=lambda: victim.append(
        invoke(other, "victim", {"victim_marker": 1, "sleep_ms": 1500})))
    t.start()

    def victim_request_id():
        log = fn_logs(srv, "victim")
        at = log.find('"victim_marker":1')
        if at < 0:
            return None
        start = log.rfind("START RequestId: ", 0, at)
        return log[start:].split()[2] if start >= 0 else None

    rid = poll_until(victim_request_id, 10, what="the victim's invocation to start")
    p = ok(lam, "intruder", {"victim": rid})
    for k in ("respond", "error"):
        assert p[k]["status"] in (400, 403), p
        assert json.loads(p[k]["body"])["errorType"] in ("InvalidRequestID",
                                                         "InvalidStateTransition"), p
    t.join(timeout=30)
    r, vp = victim[0]
    assert "FunctionError" not in r, vp
    assert vp["event"] == {"victim_marker": 1, "sleep_ms": 1500}, vp
    assert vp["requestId"] == rid
