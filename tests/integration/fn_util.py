"""Helpers for the execution-layer tests (test_76..test_79): code packages from
{path: text} (bootstrap files executable), deploying through boto3, invoking
through boto3, raw HTTP and the event-stream route, the Realm routes (logs,
failed-events), a poll-until with a deadline, and a module-scoped server.

Every environment has its own pid namespace, so process.pid / os.getpid() is
the same small number in each; handlers identify their environment with a
token drawn once at module load (ENV_ID below) instead.
"""
import base64
import contextlib
import http.client
import io
import json
import os
import re
import time
import urllib.parse
import urllib.request
import zipfile

from botocore.eventstream import EventStreamBuffer
from botocore.exceptions import ClientError

from conftest import Server, finish, lambda_client
from lambda_util import ROLE

FIXED_TIME = (2024, 1, 1, 0, 0, 0)
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NODE_MODULES = os.path.join(ROOT, "node_modules")

# ---- packages -----------------------------------------------------------------------


def build_zip(files, executable=()):
    """A zip from {path: str|bytes}. Files named "bootstrap" (in any folder) and
    the paths in `executable` get mode 0755, the others 0644."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in files.items():
            zi = zipfile.ZipInfo(name, date_time=FIXED_TIME)
            zi.create_system = 3  # Unix: external_attr's high bits are st_mode
            is_exec = os.path.basename(name) == "bootstrap" or name in executable
            zi.external_attr = (0o100755 if is_exec else 0o100644) << 16
            zi.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(zi, data)
    return buf.getvalue()


def tree_files(src_dir, prefix):
    """{prefix/relpath: bytes} for every regular file under src_dir."""
    out = {}
    for base, dirs, files in os.walk(src_dir):
        dirs.sort()
        for f in sorted(files):
            path = os.path.join(base, f)
            if os.path.islink(path) or not os.path.isfile(path):
                continue
            rel = os.path.relpath(path, src_dir)
            with open(path, "rb") as fh:
                out[f"{prefix}/{rel}"] = fh.read()
    return out


# Handlers that tell which environment served them: a token drawn at module
# load, plus a module-level counter of invocations served.
NODE_IDENT = """
const crypto = require('crypto');
const ENV_ID = crypto.randomUUID();
let served = 0;
function ident() { served += 1; return { env: ENV_ID, pid: process.pid, served }; }
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
"""

PY_IDENT = """
import json, os, time, uuid
ENV_ID = str(uuid.uuid4())
served = 0
def ident():
    global served
    served += 1
    return {"env": ENV_ID, "pid": os.getpid(), "served": served}
"""

# An echo handler: logs a line, answers the event and who served it; sleeps
# event.sleep_ms first if asked.
NODE_ECHO = NODE_IDENT + """
exports.handler = async (event, context) => {
  console.log('echo-node', JSON.stringify(event));
  if (event && event.sleep_ms) await sleep(event.sleep_ms);
  return { event, ...ident(), requestId: context.awsRequestId,
           clientContext: context.clientContext === undefined ? null : context.clientContext,
           arn: context.invokedFunctionArn, version: context.functionVersion };
};
"""

PY_ECHO = PY_IDENT + """
def handler(event, context):
    print('echo-python', json.dumps(event))
    if isinstance(event, dict) and event.get('sleep_ms'):
        time.sleep(event['sleep_ms'] / 1000.0)
    cc = context.client_context
    if cc is not None:
        client = cc.client
        if client is not None:
            client = {k: getattr(client, k, None) for k in
                      ("installation_id", "app_title", "app_version_name",
                       "app_version_code", "app_package_name")}
        cc = {"client": client, "custom": cc.custom, "env": cc.env}
    return dict(event=event, requestId=context.aws_request_id, clientContext=cc,
                arn=context.invoked_function_arn, version=context.function_version, **ident())
"""


def node_files(src=NODE_ECHO, name="index.js"):
    return {name: src}


def py_files(src=PY_ECHO, name="app.py"):
    return {name: src}


# ---- clients ---------------------------------------------------------------------------


def fn_client(server, read_timeout=30):
    """A boto3 Lambda client that makes exactly one attempt per call (a 429 is
    seen as it is, not retried) and closes before the server stops."""
    return lambda_client(server, retries={"total_max_attempts": 1}, read_timeout=read_timeout,
                         max_pool_connections=4)


# ---- deploy ---------------------------------------------------------------------------


def deploy(lam, name, files, runtime="nodejs20.x", handler="index.handler", **kw):
    """CreateFunction from {path: text}; returns its configuration."""
    z = files if isinstance(files, bytes) else build_zip(files)
    return lam.create_function(FunctionName=name, Runtime=runtime, Role=ROLE,
                               Handler=handler, Code={"ZipFile": z}, **kw)


def deploy_node(lam, name, src=NODE_ECHO, **kw):
    return deploy(lam, name, node_files(src), "nodejs20.x", "index.handler", **kw)


def deploy_python(lam, name, src=PY_ECHO, runtime="python3.11", **kw):
    return deploy(lam, name, py_files(src), runtime, "app.handler", **kw)


# ---- invoke (boto3) -----------------------------------------------------------------


def invoke(lam, name, event=None, raw=None, **kw):
    """boto3 Invoke; returns (response, payload parsed as JSON, or the bytes if
    they are not JSON)."""
    body = raw if raw is not None else json.dumps({} if event is None else event).encode()
    r = lam.invoke(FunctionName=name, Payload=body, **kw)
    data = r["Payload"].read() if "Payload" in r else b""
    try:
        parsed = json.loads(data) if data else None
    except ValueError:
        parsed = data
    return r, parsed


def tail_log(resp):
    """The decoded X-Amz-Log-Result of an Invoke response."""
    return base64.b64decode(resp["LogResult"]).decode("utf-8", "replace")


def ok(lam, name, event=None, **kw):
    """Invoke that must succeed (200, no FunctionError); returns the payload."""
    r, p = invoke(lam, name, event, **kw)
    assert r["StatusCode"] == 200, r
    assert "FunctionError" not in r, (r, p)
    return p


def error_code(fn, *a, **kw):
    """(code, HTTP status, response) of the ClientError fn(*a, **kw) raises."""
    try:
        fn(*a, **kw)
    except ClientError as e:
        return (e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"],
                e.response)
    raise AssertionError("the call did not fail")


# ---- raw HTTP ---------------------------------------------------------------------------


def http_request(port, method, path, body=b"", headers=None, timeout=30):
    """(status, {lower-case header: value}, body bytes)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data
    finally:
        c.close()


def invoke_path(name, qualifier=None, stream=False):
    quoted = urllib.parse.quote(name, safe="")
    base = (f"/2021-11-15/functions/{quoted}/response-streaming-invocations" if stream
            else f"/2015-03-31/functions/{quoted}/invocations")
    if qualifier:
        base += "?Qualifier=" + urllib.parse.quote(qualifier, safe="")
    return base


def raw_invoke(server, name, body=b"{}", headers=None, qualifier=None, timeout=30):
    """POST .../invocations without SigV4: (status, headers, body)."""
    return http_request(server.ports["control"], "POST", invoke_path(name, qualifier), body,
                        headers, timeout)


def decode_event_stream(data):
    """[(':event-type' or ':exception-type', headers, payload bytes)] from event-stream bytes."""
    buf = EventStreamBuffer()
    buf.add_data(data)
    out = []
    for msg in buf:
        h = msg.headers
        out.append((h.get(":event-type") or h.get(":exception-type"), dict(h), msg.payload))
    return out


def stream_invoke(server, name, event=None, headers=None, qualifier=None, timeout=30,
                  on_first=None):
    """POST .../response-streaming-invocations, reading the body as it comes.
    Returns (status, headers, events, arrival times of the events (seconds since
    the request), raw body). Events are decoded as each read completes, so the
    times show whether chunks came one by one."""
    body = json.dumps({} if event is None else event).encode()
    c = http.client.HTTPConnection("127.0.0.1", server.ports["control"], timeout=timeout)
    t0 = time.monotonic()
    try:
        c.request("POST", invoke_path(name, qualifier, stream=True), body=body,
                  headers=headers or {})
        r = c.getresponse()
        hdrs = {k.lower(): v for k, v in r.getheaders()}
        buf = EventStreamBuffer()
        events, times, raw = [], [], b""
        while True:
            chunk = r.read1(65536) if hasattr(r, "read1") else r.read(65536)
            if not chunk:
                break
            raw += chunk
            if r.status != 200:
                continue
            buf.add_data(chunk)
            for msg in buf:
                h = msg.headers
                events.append((h.get(":event-type") or h.get(":exception-type"), dict(h),
                               msg.payload))
                times.append(time.monotonic() - t0)
        return r.status, hdrs, events, times, raw
    finally:
        c.close()


# ---- Realm routes ---------------------------------------------------------------------


def fn_logs(server, name, tail=None):
    path = f"/realm/v1/functions/{urllib.parse.quote(name, safe='')}/logs"
    if tail is not None:
        path += f"?tail={tail}"
    status, _, body = http_request(server.ports["control"], "GET", path)
    assert status == 200, (status, body)
    return body.decode("utf-8", "replace")


def failed_events(server, name):
    path = f"/realm/v1/functions/{urllib.parse.quote(name, safe='')}/failed-events"
    status, _, body = http_request(server.ports["control"], "GET", path)
    assert status == 200, (status, body)
    return json.loads(body)


# ---- waiting --------------------------------------------------------------------------


def poll_until(check, timeout, interval=0.05, what="condition"):
    """Calls check() until it returns a truthy value (returned) or timeout
    seconds pass (AssertionError with the last value)."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = check()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}; last: {last!r}")
        time.sleep(interval)


# ---- servers --------------------------------------------------------------------------


def retire_functions(s):
    """Deletes every function of s (which stops their environments)."""
    lam = lambda_client(s)
    try:
        names = [f["FunctionName"] for f in lam.list_functions(MaxItems=1000)["Functions"]]
        for n in names:
            try:
                lam.delete_function(FunctionName=n)
            except ClientError:
                pass
    except Exception:  # noqa: BLE001 - the server may be gone already (a killed test server)
        pass


def metric(server, name, labels=""):
    """One sample of the server's /metrics (a float)."""
    with urllib.request.urlopen(server.url("metrics", "/metrics"), timeout=10) as r:
        text = r.read().decode()
    m = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.M)
    assert m, f"{name}{labels} not in /metrics"
    return float(m.group(1))


def runtime_connections(server):
    return metric(server, "realm_connections_open", '{listener="runtime"}')


@contextlib.contextmanager
def fn_server(*flags, **kw):
    """A server for a module-scoped fixture. Before it is stopped its functions
    are deleted, which stops their environments, and their runtime connections
    are given a moment to close, so that shutdown has nothing to wait for. The
    grace is short: nothing is in flight then, and it bounds the wait should
    runtime connections stay open (test_77's
    test_stopped_environment_closes_its_runtime_connections and
    test_sigterm_with_idle_environments_stops_promptly check those paths)."""
    if "--shutdown-grace-ms" not in flags:
        flags = (*flags, "--shutdown-grace-ms", "1000")
    s = Server(*flags, **kw)
    try:
        yield s
    finally:
        if s.proc.poll() is None:
            retire_functions(s)
            try:
                poll_until(lambda: runtime_connections(s) == 0, 1.5,
                           what="runtime connections to close")
            except (AssertionError, OSError):
                pass  # the stop below still checks the exit
        finish(s)
