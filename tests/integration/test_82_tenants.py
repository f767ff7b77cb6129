"""Multi-tenancy (issue 5; docs/tenants.md): with --auth, tenants made by
`realm keys create` on the server's data dir deploy and invoke with their own
SigV4 credentials (the AWS CLI, boto3, raw signed requests) and API keys (the
client WebSocket), and see nothing of each other: not their functions, calls,
logs or failed events; ARNs carry each tenant's account id. Refusals have
AWS's shapes; bad, stale or missing signatures never reach a function; key
revocation closes open WebSockets; rate limits, connection limits, the admin
key, /metrics, per-tenant uids and environments; and a server without --auth
still needs no credentials.

One module-scoped --auth server serves most tests. The 10 s auth-message
timeout has no option to shorten it, so the silent connection of
test_ws_silence_is_auth_failed_after_10s is opened as soon as that server
starts and watched by a thread: by the time its test runs, most of the 10 s
have passed while the other tests ran.
"""
import datetime
import hashlib
import json
import os
import re
import secrets
import socket
import subprocess
import tempfile
import threading
import time
import urllib.parse
import uuid
from unittest import mock

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, RejectConnection, RejectData, Request, TextMessage

from conftest import Server, realm_bin, db_args
from fn_util import build_zip, fn_client, http_request, invoke_path, poll_until
from lambda_util import AWS_BIN, REGION, ROLE, finish, lambda_client, write_zip
from wsclient import Ws

ADMIN_KEY = "adm-" + secrets.token_hex(16)
ACCOUNT_RE = re.compile(r"^[0-9]{12}$")
TIMEOUT = 10

# ---- handlers -------------------------------------------------------------------------------

# `hello`: the same name in every tenant, code that says whose it is.
HELLO_SRC = """
exports.handler = async (event, context) => {
  console.log('hello-log TENANT ' + JSON.stringify(event));
  return { tenant: 'TENANT', event, arn: context.invokedFunctionArn };
};
"""

# A function that logs a marker: did a request reach it?
GUARDED_SRC = """
exports.handler = async (event) => {
  console.log('guarded-marker ' + event.marker);
  return { ok: true, marker: event.marker };
};
"""

# Fails every time: Event invocations of it end in the failed list (--event-retries 0).
BOOM_SRC = """
exports.handler = async (event) => { throw new Error('boom ' + event.tag); };
"""

# Byte-identical in every tenant: the uid it runs under and a token drawn once
# per process (environment).
IDENT_SRC = """
const crypto = require('crypto');
const ENV_ID = crypto.randomUUID();
exports.handler = async () => ({ uid: process.getuid(), env: ENV_ID });
"""


def node_zip(src):
    return build_zip({"index.js": src})


# ---- keys, clients, the AWS CLI -------------------------------------------------------------


def keys_create(srv, tenant, *extra):
    """`realm keys create --tenant T --json` on the server's data dir."""
    p = subprocess.run([realm_bin(), "keys", "create", "--tenant", tenant, "--json",
                        "--data-dir", srv.data_dir, *db_args(srv.data_dir), *extra],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    k = json.loads(p.stdout)
    assert k["tenant"] == tenant and ACCOUNT_RE.match(k["account_id"]), k
    return k


def keys_revoke(srv, key_id):
    p = subprocess.run([realm_bin(), "keys", "revoke", key_id, "--data-dir", srv.data_dir,
                        *db_args(srv.data_dir)],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr


def client_for(srv, akid, secret):
    """A boto3 Lambda client with these credentials that makes exactly one
    attempt per call (a 429 is seen, not retried)."""
    return lambda_client(srv, akid=akid, secret=secret, retries={"total_max_attempts": 1})


def tenant_client(srv, key):
    return client_for(srv, key["access_key_id"], key["secret_access_key"])


def aws_as(srv, key, *args, timeout=60):
    """/usr/bin/aws with the key's credentials: (rc, parsed JSON or None, stderr)."""
    with tempfile.TemporaryDirectory(prefix="realm-aws-") as home:
        env = {"PATH": "/usr/bin:/bin", "HOME": home, "AWS_PAGER": "",
               "AWS_ACCESS_KEY_ID": key["access_key_id"],
               "AWS_SECRET_ACCESS_KEY": key["secret_access_key"],
               "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
               "AWS_MAX_ATTEMPTS": "1", "LANG": "C.UTF-8"}
        p = subprocess.run([AWS_BIN, "--endpoint-url", srv.url("control", ""), "--region", REGION,
                            "--output", "json", *args],
                           capture_output=True, text=True, env=env, timeout=timeout)
    out = json.loads(p.stdout) if p.stdout.strip() else None
    return p.returncode, out, p.stderr


def fn_arn(account, name):
    return f"arn:aws:lambda:{REGION}:{account}:function:{name}"


# ---- raw signed requests --------------------------------------------------------------------


class _Past(datetime.datetime):
    """datetime whose utcnow() is AT (for signing with a stale X-Amz-Date)."""
    AT = None

    @classmethod
    def utcnow(cls):
        return cls.AT


def sign(srv, method, path, body=b"", akid=None, secret=None, headers=None, at=None):
    """The headers (Authorization, X-Amz-Date, ...) of a SigV4-signed request,
    signed by botocore as it signs boto3's; at: a datetime to sign as of."""
    req = AWSRequest(method=method, url=srv.url("control", path), data=body,
                     headers=dict(headers or {}))
    auth = SigV4Auth(Credentials(akid, secret), "lambda", REGION)
    if at is None:
        auth.add_auth(req)
    else:
        _Past.AT = at
        with mock.patch("botocore.auth.datetime.datetime", _Past):
            auth.add_auth(req)
    return dict(req.headers.items())


def send(srv, method, path, body=b"", headers=None):
    """(status, {lower-case header: value}, body) over http.client."""
    return http_request(srv.ports["control"], method, path, body, headers)


def signed(srv, key, method, path, body=b"", headers=None):
    h = sign(srv, method, path, body, key["access_key_id"], key["secret_access_key"], headers)
    return send(srv, method, path, body, h)


def logs_path(name):
    return f"/realm/v1/functions/{urllib.parse.quote(name, safe='')}/logs"


def failed_path(name):
    return f"/realm/v1/functions/{urllib.parse.quote(name, safe='')}/failed-events"


def signed_logs(srv, key, name):
    status, _, body = signed(srv, key, "GET", logs_path(name))
    assert status == 200, (status, body)
    return body.decode("utf-8", "replace")


def check_aws_error(status, headers, body, want_status, code, *words):
    """An AWS-shaped error: status, x-amzn-ErrorType, a JSON message."""
    assert status == want_status, (status, headers, body)
    assert headers.get("x-amzn-errortype", "").split(":")[0] == code, (headers, body)
    msg = json.loads(body).get("message") or json.loads(body).get("Message")
    assert msg, body
    for w in words:
        assert w in msg, (w, msg)
    return msg


def raw_reads_as_missing(srv, key, method, path_of, theirs, missing, body=b""):
    """A signed request naming `theirs` is answered as one naming `missing` (a
    function no one has, of the same length): 404 ResourceNotFoundException, the
    same headers (but the request id and date) and body (but the name sent)."""
    got = signed(srv, key, method, path_of(theirs), body)
    want = signed(srv, key, method, path_of(missing), body)
    check_aws_error(*got, 404, "ResourceNotFoundException")

    def norm(r, sent):
        return (r[0], {k: v for k, v in r[1].items() if k not in ("x-amzn-requestid", "date")},
                r[2].replace(sent.encode(), b"<SENT>"))

    assert norm(got, theirs) == norm(want, missing), (got, want)


# ---- metrics --------------------------------------------------------------------------------


def metrics_text(srv, bearer=ADMIN_KEY):
    h = {"Authorization": f"Bearer {bearer}"} if bearer else {}
    status, _, body = http_request(srv.ports["metrics"], "GET", "/metrics", b"", h)
    assert status == 200, (status, body)
    return body.decode()


def sample(text, name, labels=""):
    m = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.M)
    assert m, f"{name}{labels} not in /metrics"
    return float(m.group(1))


def tenant_invocations(srv, account):
    """realm_tenant_invocations_total of one account, summed over outcomes (0 if absent)."""
    text = metrics_text(srv)
    return sum(float(v) for v in re.findall(
        rf'^realm_tenant_invocations_total\{{tenant="{account}",outcome="\w+"\}} (\S+)$',
        text, re.M))


# ---- the client WebSocket -------------------------------------------------------------------


class Conn(Ws):
    """A client WebSocket that may carry `Authorization: Bearer KEY` and whose
    upgrade may be refused: status is 101 or the refusal's status (headers and
    body kept). Accepted, nothing is read: the caller reads the welcome or
    auth_required."""

    def __init__(self, port, bearer=None, timeout=TIMEOUT):  # pylint: disable=super-init-not-called
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.pending = []
        self.text = ""
        self.headers = {}
        self.body = b""
        self.others = []  # messages read past while waiting for a call's reply
        extra = [("Authorization", f"Bearer {bearer}")] if bearer else []
        self.sock.sendall(self.ws.send(Request(host=f"127.0.0.1:{port}", target="/",
                                               extra_headers=extra)))
        ev = self._next()
        if isinstance(ev, AcceptConnection):
            self.status = 101
            return
        assert isinstance(ev, RejectConnection), ev
        self.status = ev.status_code
        self.headers = {k.decode().lower(): v.decode() for k, v in ev.headers}
        done = not ev.has_body
        while not done:
            try:
                ev = self._next()
            except OSError:
                break
            if isinstance(ev, RejectData):
                self.body += ev.data
                done = ev.body_finished
        self.sock.close()

    def call_wait(self, obj):
        """Sends a call and returns its final reply."""
        self.call(obj)
        return self.final(obj["id"])

    def final(self, call_id):
        while True:
            m = self.recv()
            assert isinstance(m, dict), f"closed {m} waiting for {call_id}"
            if m.get("id") == call_id and m.get("status") in ("complete", "error", "cancelled"):
                return m
            self.others.append(m)


def ws_bearer(srv, bearer, tenant=None):
    """An accepted Bearer connection whose welcome was read (and checked)."""
    c = Conn(srv.ports["client"], bearer)
    assert c.status == 101, (c.status, c.headers, c.body)
    w = c.recv()
    assert isinstance(w, dict) and w.get("status") == "connected", w
    if tenant is not None:
        assert w.get("tenant_id") == tenant, w
    return c


def ws_message_auth(srv, api_key):
    """Upgrade without a key, then the auth message: (conn, [messages up to the
    welcome or the close], close code or None)."""
    c = Conn(srv.ports["client"])
    assert c.status == 101, (c.status, c.body)
    first = c.recv()
    assert first == {"type": "auth_required"}, first
    c.sock.sendall(c.ws.send(TextMessage(data=json.dumps({"type": "auth", "api_key": api_key}))))
    m = c.recv()
    if isinstance(m, tuple):
        return c, [], m[1]
    if m.get("type") == "auth_success":
        return c, [m, c.recv()], None
    rest, code = c.recv_until_close()
    return c, [m] + rest, code


def ws_invoke(c, call_id, name, payload=None, **extra):
    params = {"name": name}
    if payload is not None:
        params["payload"] = payload
    return c.call_wait({"id": call_id, "function": "invoke", "params": params, **extra})


class SilentWatcher:
    """A client WebSocket that never authenticates; a thread records what
    arrives and when (seconds since the upgrade was accepted)."""

    def __init__(self, srv):
        self.c = Conn(srv.ports["client"], timeout=20)
        assert self.c.status == 101, self.c.status
        self.t0 = time.monotonic()
        self.got = []
        self.error = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            while True:
                m = self.c.recv()
                self.got.append((time.monotonic() - self.t0, m))
                if isinstance(m, tuple):
                    return
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.error = e


# ---- the module's --auth server -------------------------------------------------------------


@pytest.fixture(scope="module")
def srv():
    s = Server("--auth", "--admin-key", ADMIN_KEY, "--event-retries", "0",
               "--shutdown-grace-ms", "1000")
    s.silent = SilentWatcher(s)
    s.tenant_keys = []
    try:
        yield s
    finally:
        s.silent.c.close()
        # Delete every tenant's functions (stops their environments) before stopping.
        for key in s.tenant_keys:
            try:
                lam = tenant_client(s, key)
                for f in lam.list_functions()["Functions"]:
                    lam.delete_function(FunctionName=f["FunctionName"])
            except Exception:  # noqa: BLE001 - a revoked key, a rate-limited key
                pass
        finish(s)


def make_tenant(srv, tenant, *extra):
    k = keys_create(srv, tenant, *extra)
    srv.tenant_keys.append(k)
    return k


@pytest.fixture(scope="module")
def ka(srv):
    return make_tenant(srv, "team-a")


@pytest.fixture(scope="module")
def kb(srv):
    return make_tenant(srv, "team-b")


@pytest.fixture(scope="module")
def la(srv, ka):
    return tenant_client(srv, ka)


@pytest.fixture(scope="module")
def lb(srv, kb):
    return tenant_client(srv, kb)


@pytest.fixture(scope="module")
def hellos(srv, ka, kb, tmp_path_factory, la):
    """Both tenants deploy `hello` with the AWS CLI; team-a also has `a-only`.
    Returns {tenant: create-function output}."""
    out = {}
    d = tmp_path_factory.mktemp("hello")
    for key in (ka, kb):
        zp = write_zip(node_zip(HELLO_SRC.replace("TENANT", key["tenant"])), str(d))
        rc, o, err = aws_as(srv, key, "lambda", "create-function", "--function-name", "hello",
                            "--runtime", "nodejs20.x", "--role", ROLE,
                            "--handler", "index.handler", "--zip-file", f"fileb://{zp}")
        assert rc == 0, err
        out[key["tenant"]] = o
    la.create_function(FunctionName="a-only", Runtime="nodejs20.x", Role=ROLE,
                       Handler="index.handler",
                       Code={"ZipFile": node_zip(HELLO_SRC.replace("TENANT", "team-a"))})
    return out


def invoke_json(lam, name, event=None):
    r = lam.invoke(FunctionName=name, Payload=json.dumps(event or {}).encode())
    assert r["StatusCode"] == 200 and "FunctionError" not in r, r
    return json.loads(r["Payload"].read())


# ---- acceptance -----------------------------------------------------------------------------


def test_two_tenants_each_deploy_and_invoke_their_own_hello(srv, ka, kb, hellos, tmp_path):
    for key in (ka, kb):
        t, acct = key["tenant"], key["account_id"]
        created = hellos[t]
        assert created["FunctionArn"] == fn_arn(acct, "hello"), created
        assert created["State"] == "Active", created
        # HTTP: aws lambda invoke.
        outfile = tmp_path / f"{t}.json"
        marker = uuid.uuid4().hex
        rc, o, err = aws_as(srv, key, "lambda", "invoke", "--function-name", "hello",
                            "--cli-binary-format", "raw-in-base64-out",
                            "--payload", json.dumps({"m": marker}), str(outfile))
        assert rc == 0, err
        assert o["StatusCode"] == 200 and "FunctionError" not in o, o
        p = json.loads(outfile.read_text())
        assert p == {"tenant": t, "event": {"m": marker}, "arn": fn_arn(acct, "hello")}, p
        # The WebSocket: invoke, and the function by its own name.
        c = ws_bearer(srv, key["api_key"], t)
        try:
            r = ws_invoke(c, "i1", "hello", {"m": marker})
            assert r["status"] == "complete", r
            assert r["data"]["payload"] == {"tenant": t, "event": {"m": marker},
                                            "arn": fn_arn(acct, "hello")}, r
            r = c.call_wait({"id": "n1", "function": "hello", "params": {"by": "name"}})
            assert r["status"] == "complete", r
            assert r["data"]["payload"]["tenant"] == t, r
            assert r["data"]["payload"]["event"] == {"by": "name"}, r
        finally:
            c.close()
        # list-functions: only its own, with its own account id.
        rc, o, err = aws_as(srv, key, "lambda", "list-functions")
        assert rc == 0, err
        mine = {"team-a": {"hello", "a-only"}, "team-b": {"hello"}}[t]
        assert {f["FunctionName"] for f in o["Functions"]} == mine, o
        assert all(f["FunctionArn"] == fn_arn(acct, f["FunctionName"]) for f in o["Functions"]), o


# ---- isolation on the control API -----------------------------------------------------------


def err_shape(call, sent, **kw):
    """The refusal of call(**kw), as comparable text: status, error code and
    message, headers but the request id and date; `sent` (what the caller named)
    is replaced by <SENT>."""
    with pytest.raises(ClientError) as ei:
        call(**kw)
    r = ei.value.response
    headers = {k: v for k, v in r["ResponseMetadata"]["HTTPHeaders"].items()
               if k not in ("x-amzn-requestid", "date")}
    shape = {"status": r["ResponseMetadata"]["HTTPStatusCode"], "error": r["Error"],
             "headers": headers}
    return json.dumps(shape, sort_keys=True).replace(sent, "<SENT>"), r


def test_other_tenants_functions_read_as_missing(srv, ka, kb, la, lb, hellos):
    a_acct, b_acct = ka["account_id"], kb["account_id"]
    a_hello = la.get_function(FunctionName="hello")["Configuration"]
    # (operation, its arguments for a name, whether it takes a qualified name)
    ops = [
        ("get_function", lambda n: dict(FunctionName=n), True),
        ("get_function_configuration", lambda n: dict(FunctionName=n), True),
        ("invoke", lambda n: dict(FunctionName=n, Payload=b"{}"), True),
        ("invoke", lambda n: dict(FunctionName=n, Payload=b"{}", InvocationType="Event"), True),
        ("invoke", lambda n: dict(FunctionName=n, Payload=b"{}", InvocationType="DryRun"), True),
        ("create_alias", lambda n: dict(FunctionName=n, Name="live", FunctionVersion="$LATEST"),
         False),
        ("list_aliases", lambda n: dict(FunctionName=n), False),
        ("list_versions_by_function", lambda n: dict(FunctionName=n), False),
        ("publish_version", lambda n: dict(FunctionName=n), False),
        ("update_function_configuration", lambda n: dict(FunctionName=n, Description="pwned"),
         False),
        ("update_function_code", lambda n: dict(FunctionName=n, ZipFile=node_zip(BOOM_SRC)),
         False),
        ("put_function_concurrency",
         lambda n: dict(FunctionName=n, ReservedConcurrentExecutions=0), False),
        ("list_tags", lambda n: dict(Resource=n), False),
        ("tag_resource", lambda n: dict(Resource=n, Tags={"owner": "team-b"}), False),
        ("delete_function", lambda n: dict(FunctionName=n), True),
    ]
    # (what team-b names, a truly missing one of the same length to compare with)
    cases = [("a-only", "zz-zzz"),
             (fn_arn(a_acct, "a-only"), fn_arn(a_acct, "zz-zzz")),
             (fn_arn(a_acct, "hello"), fn_arn(a_acct, "hellq")),
             (fn_arn(a_acct, "hello"), fn_arn(b_acct, "hellq")),
             (f"{a_acct}:function:hello", f"{a_acct}:function:hellq"),
             (fn_arn(a_acct, "hello") + ":$LATEST", fn_arn(a_acct, "hellq") + ":$LATEST")]
    for op, args, qualified in ops:
        for theirs, missing in cases:
            if op in ("list_tags", "tag_resource") and not theirs.startswith("arn:"):
                continue  # these take an ARN only
            if theirs.endswith(":$LATEST") and not qualified:
                continue
            got, resp = err_shape(getattr(lb, op), theirs, **args(theirs))
            want, _ = err_shape(getattr(lb, op), missing, **args(missing))
            assert resp["Error"]["Code"] == "ResourceNotFoundException", (op, theirs, resp)
            assert resp["ResponseMetadata"]["HTTPStatusCode"] == 404, (op, theirs, resp)
            assert got == want, (op, theirs, got, want)
            # Never the other tenant's account in a message about a name.
            if theirs == "a-only":
                assert a_acct not in resp["Error"]["Message"], resp
    # InvokeWithResponseStream (raw, signed) likewise.
    for theirs, missing in cases[1:]:
        raw_reads_as_missing(srv, kb, "POST", lambda n: invoke_path(n, stream=True), theirs,
                             missing, b"{}")
    # Creating by team-a's ARN does not create in team-a's namespace.
    for theirs in (fn_arn(a_acct, "new-fn"), fn_arn(a_acct, "hello")):
        with pytest.raises(ClientError) as ei:
            lb.create_function(FunctionName=theirs, Runtime="nodejs20.x", Role=ROLE,
                               Handler="index.handler", Code={"ZipFile": node_zip(BOOM_SRC)})
        assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] in (400, 404), \
            ei.value.response
    # Nothing of team-a's was touched, nor team-b's own hello.
    now = la.get_function(FunctionName="hello")["Configuration"]
    assert {k: now[k] for k in ("FunctionArn", "Description", "CodeSha256", "RevisionId")} == \
        {k: a_hello[k] for k in ("FunctionArn", "Description", "CodeSha256", "RevisionId")}
    assert la.get_function(FunctionName="a-only")["Configuration"]["FunctionName"] == "a-only"
    for name in ("hello", "a-only"):
        assert la.list_aliases(FunctionName=name)["Aliases"] == []
        assert [v["Version"] for v in la.list_versions_by_function(FunctionName=name)[
            "Versions"]] == ["$LATEST"]
        assert "ReservedConcurrentExecutions" not in la.get_function_concurrency(
            FunctionName=name)
        assert la.list_tags(Resource=fn_arn(a_acct, name))["Tags"] == {}
    assert invoke_json(la, "hello")["tenant"] == "team-a"
    assert lb.get_function(FunctionName="hello")["Configuration"]["FunctionArn"] == \
        fn_arn(b_acct, "hello")
    assert invoke_json(lb, "hello")["tenant"] == "team-b"
    assert [f["FunctionName"] for f in lb.list_functions()["Functions"]] == ["hello"]
    assert {f["FunctionName"] for f in la.list_functions()["Functions"]} == {"hello", "a-only"}


def test_logs_are_per_tenant(srv, ka, kb, la, lb, hellos):
    ma, mb = "ma-" + uuid.uuid4().hex, "mb-" + uuid.uuid4().hex
    assert invoke_json(la, "hello", {"m": ma})["tenant"] == "team-a"
    assert invoke_json(lb, "hello", {"m": mb})["tenant"] == "team-b"
    log_a = poll_until(lambda: (lambda t: ma in t and t)(signed_logs(srv, ka, "hello")), 10,
                       what="team-a's log line")
    log_b = poll_until(lambda: (lambda t: mb in t and t)(signed_logs(srv, kb, "hello")), 10,
                       what="team-b's log line")
    assert "hello-log team-a" in log_a and "team-b" not in log_a and mb not in log_a, log_a
    assert "hello-log team-b" in log_b and "team-a" not in log_b and ma not in log_b, log_b
    # Kept per account: DATA_DIR/logs/<account>/.
    for key, own, other in ((ka, ma, mb), (kb, mb, ma)):
        with open(os.path.join(srv.data_dir, "logs", key["account_id"], "hello.log")) as f:
            text = f.read()
        assert own in text and other not in text, text
    # team-b asking for a-only's log, or team-a's hello by ARN: as for a missing function.
    for theirs, missing in (("a-only", "zz-zzz"),
                            (fn_arn(ka["account_id"], "hello"), fn_arn(ka["account_id"], "hellq"))):
        raw_reads_as_missing(srv, kb, "GET", logs_path, theirs, missing)
    # Unsigned: refused before anything is read.
    check_aws_error(*send(srv, "GET", logs_path("hello")), 403,
                    "MissingAuthenticationTokenException")


def test_failed_events_are_per_tenant(srv, ka, kb, la, lb):
    tags = {}
    for key, lam in ((ka, la), (kb, lb)):
        lam.create_function(FunctionName="boom", Runtime="nodejs20.x", Role=ROLE,
                            Handler="index.handler", Code={"ZipFile": node_zip(BOOM_SRC)})
        tags[key["tenant"]] = f"{key['tenant']}-{uuid.uuid4().hex}"
        r = lam.invoke(FunctionName="boom", InvocationType="Event",
                       Payload=json.dumps({"tag": tags[key["tenant"]]}).encode())
        assert r["StatusCode"] == 202, r

    def failed(key):
        status, _, body = signed(srv, key, "GET", failed_path("boom"))
        assert status == 200, (status, body)
        return json.loads(body)

    for key in (ka, kb):
        own, other = tags[key["tenant"]], [v for k, v in tags.items() if k != key["tenant"]][0]
        got = poll_until(lambda: (lambda f: f["FailedEvents"] and f["Pending"] == 0 and f)(
            failed(key)), 15, what=f"{key['tenant']}'s failed event")
        payloads = [e["Payload"] for e in got["FailedEvents"]]
        assert len(payloads) == 1 and own in payloads[0], got
        assert other not in json.dumps(got), got
    # team-b asking for a-only's failed events, or team-a's boom by ARN: as for a missing one.
    for theirs, missing in (("a-only", "zz-zzz"),
                            (fn_arn(ka["account_id"], "boom"), fn_arn(ka["account_id"], "bomb"))):
        raw_reads_as_missing(srv, kb, "GET", failed_path, theirs, missing)


# ---- isolation on the WebSocket -------------------------------------------------------------


def test_websocket_isolation(srv, ka, kb, hellos):
    a_acct, b_acct = ka["account_id"], kb["account_id"]
    ca = ws_bearer(srv, ka["api_key"], "team-a")
    cb = ws_bearer(srv, kb["api_key"], "team-b")
    try:
        # Guessing team-a's ARN (invoke, and by name) reads like a missing function.
        for i, (theirs, missing) in enumerate([(fn_arn(a_acct, "hello"), fn_arn(a_acct, "hellq")),
                                               (fn_arn(a_acct, "a-only"), fn_arn(b_acct, "zz-zzz")),
                                               ("a-only", "zz-zzz")]):
            got = ws_invoke(cb, f"g{i}", theirs)
            want = ws_invoke(cb, f"g{i}", missing)
            assert got["status"] == "error" and got["error"]["code"] == "FUNCTION_NOT_FOUND", got
            assert json.dumps(got).replace(theirs, "<SENT>") == \
                json.dumps(want).replace(missing, "<SENT>"), (got, want)
            got = cb.call_wait({"id": f"h{i}", "function": theirs, "params": {}})
            want = cb.call_wait({"id": f"h{i}", "function": missing, "params": {}})
            assert got["status"] == "error" and got["error"]["code"] == "FUNCTION_NOT_FOUND", got
            assert json.dumps(got).replace(theirs, "<SENT>") == \
                json.dumps(want).replace(missing, "<SENT>"), (got, want)
        # Naming the other tenant (by name or account id) is UNAUTHORIZED; its own is fine.
        for other in ("team-a", a_acct):
            r = ws_invoke(cb, "t1", "hello", tenant_id=other)
            assert r["status"] == "error" and r["error"]["code"] == "UNAUTHORIZED", r
        for own in ("team-b", b_acct):
            r = ws_invoke(cb, "t2", "hello", tenant_id=own)
            assert r["status"] == "complete" and r["data"]["payload"]["tenant"] == "team-b", r
        # cancel of an id in flight on another tenant's connection.
        ca.call({"id": "slow", "function": "echo",
                 "params": {"message": "x", "repeat": 1, "delay_ms": 20000}})
        r = cb.call_wait({"id": "c1", "function": "cancel", "params": {"id": "slow"}})
        assert r["status"] == "error" and r["error"]["code"] == "CALL_NOT_FOUND", r
        assert r["error"].get("target") == "slow", r
        # ... it was in flight: its owner can cancel it.
        ca.call({"id": "c2", "function": "cancel", "params": {"id": "slow"}})
        replies = {}
        while len(replies) < 2:
            m = ca.recv()
            assert isinstance(m, dict), m
            if m.get("id") in ("slow", "c2") and m.get("status") != "streaming":
                replies[m["id"]] = m
        assert replies["slow"]["status"] == "cancelled", replies
        assert replies["c2"]["status"] == "complete", replies
    finally:
        ca.close()
        cb.close()


# ---- bad requests never reach a function ----------------------------------------------------


def test_unauthenticated_or_badly_signed_requests_never_reach_a_function(srv, ka, la):
    la.create_function(FunctionName="guarded", Runtime="nodejs20.x", Role=ROLE,
                       Handler="index.handler", Code={"ZipFile": node_zip(GUARDED_SRC)})
    assert invoke_json(la, "guarded", {"marker": "warm"}) == {"ok": True, "marker": "warm"}
    before = tenant_invocations(srv, ka["account_id"])
    before_all = sample(metrics_text(srv), "realm_invocations_total")

    m_sent = "never-" + uuid.uuid4().hex   # the body each bad request carries
    m_signed = "signed-" + uuid.uuid4().hex  # the body a tampered request was signed for
    path = invoke_path("guarded")
    body = json.dumps({"marker": m_sent}).encode()
    ak, sk = ka["access_key_id"], ka["secret_access_key"]
    good = sign(srv, "POST", path, body, ak, sk)

    def refused(resp, status, code, *words):
        check_aws_error(*resp, status, code, *words)

    # No Authorization at all.
    refused(send(srv, "POST", path, body), 403, "MissingAuthenticationTokenException")
    # The body changed after signing.
    h = sign(srv, "POST", path, json.dumps({"marker": m_signed}).encode(), ak, sk)
    refused(send(srv, "POST", path, body, h), 403, "InvalidSignatureException")
    # The path changed after signing (another of the owner's functions), and the query.
    h = sign(srv, "POST", invoke_path("a-only"), body, ak, sk)
    refused(send(srv, "POST", path, body, h), 403, "InvalidSignatureException")
    refused(send(srv, "POST", path + "?Qualifier=%24LATEST", body, good), 403,
            "InvalidSignatureException")
    h = sign(srv, "POST", path + "?Qualifier=%24LATEST", body, ak, sk)
    refused(send(srv, "POST", path, body, h), 403, "InvalidSignatureException")
    # A signed header changed (X-Amz-Date one second later).
    h = dict(good)
    h["X-Amz-Date"] = (datetime.datetime.strptime(good["X-Amz-Date"], "%Y%m%dT%H%M%SZ") +
                       datetime.timedelta(seconds=1)).strftime("%Y%m%dT%H%M%SZ")
    refused(send(srv, "POST", path, body, h), 403, "InvalidSignatureException")
    # A payload hash header claiming the signed body, or UNSIGNED-PAYLOAD, added unsigned.
    for claim in (hashlib.sha256(json.dumps({"marker": m_signed}).encode()).hexdigest(),
                  "UNSIGNED-PAYLOAD"):
        h = dict(sign(srv, "POST", path, json.dumps({"marker": m_signed}).encode(), ak, sk))
        h["X-Amz-Content-Sha256"] = claim
        refused(send(srv, "POST", path, body, h), 403, "InvalidSignatureException")
    # The wrong secret, an unknown access key id.
    refused(send(srv, "POST", path, body, sign(srv, "POST", path, body, ak, sk[::-1])), 403,
            "InvalidSignatureException")
    refused(send(srv, "POST", path, body,
                 sign(srv, "POST", path, body, "AKIA" + "Z" * 16, sk)), 403,
            "UnrecognizedClientException")
    # Malformed Authorization headers.
    for bad in ("AWS4-HMAC-SHA256", "AWS4-HMAC-SHA256 Credential=" + ak, "Bearer " + ka["api_key"],
                good["Authorization"].split(", Signature=")[0]):
        refused(send(srv, "POST", path, body, {**good, "Authorization": bad}), 400,
                "IncompleteSignatureException")
    # A replay of a request signed 7 minutes ago.
    old = datetime.datetime.utcnow() - datetime.timedelta(minutes=7)
    refused(send(srv, "POST", path, body, sign(srv, "POST", path, body, ak, sk, at=old)), 403,
            "InvalidSignatureException", "Signature expired")
    # The same over the WebSocket: a call before authenticating, a bad Bearer key.
    c = Conn(srv.ports["client"])
    assert c.status == 101
    assert c.recv() == {"type": "auth_required"}
    c.call({"id": "x", "function": "invoke", "params": {"name": "guarded",
                                                       "payload": {"marker": m_sent}}})
    msgs, code = c.recv_until_close()
    assert [m.get("type") for m in msgs] == ["auth_failed"] and code == 1008, (msgs, code)
    c.close()
    assert Conn(srv.ports["client"], "rk_k000000000000_" + "a" * 32).status == 401

    # The function saw none of it; then a good request does reach it (the check can fail).
    assert tenant_invocations(srv, ka["account_id"]) == before
    assert sample(metrics_text(srv), "realm_invocations_total") == before_all
    m_good = "good-" + uuid.uuid4().hex
    gbody = json.dumps({"marker": m_good}).encode()
    status, _, data = send(srv, "POST", path, gbody, sign(srv, "POST", path, gbody, ak, sk))
    assert status == 200 and json.loads(data) == {"ok": True, "marker": m_good}, (status, data)
    log = poll_until(lambda: (lambda t: m_good in t and t)(signed_logs(srv, ka, "guarded")), 10,
                     what="the good request's log line")
    assert m_sent not in log and m_signed not in log, log
    assert tenant_invocations(srv, ka["account_id"]) == before + 1


# ---- WebSocket authentication ---------------------------------------------------------------


def wrong_last(key):
    """key with its last character changed (to one it is not: keys are random)."""
    return key[:-1] + ("y" if key.endswith("x") else "x")


def test_ws_bearer_key(srv, ka):
    c = ws_bearer(srv, ka["api_key"], "team-a")
    r = c.call_wait({"id": "1", "function": "health", "params": {}})
    assert r["status"] == "complete", r
    c.close()
    for bad in ("rk_k000000000000_" + "a" * 32, wrong_last(ka["api_key"]), "nonsense",
                ka["secret_access_key"]):
        c = Conn(srv.ports["client"], bad)
        assert c.status == 401, (bad, c.status, c.body)


def test_ws_auth_message_flow(srv, ka):
    c, msgs, code = ws_message_auth(srv, ka["api_key"])
    try:
        assert code is None, (msgs, code)
        assert msgs == [{"type": "auth_success", "tenant_id": "team-a"},
                        {"status": "connected", "version": msgs[1].get("version"),
                         "tenant_id": "team-a"}], msgs
        r = c.call_wait({"id": "1", "function": "health", "params": {}})
        assert r["status"] == "complete", r
    finally:
        c.close()
    # A wrong key.
    c, msgs, code = ws_message_auth(srv, wrong_last(ka["api_key"]))
    c.close()
    assert [m.get("type") for m in msgs] == ["auth_failed"] and code == 1008, (msgs, code)
    assert msgs[0].get("message"), msgs
    # A first message that is not auth: a call, an auth without a key, not JSON.
    for first in ({"id": "1", "function": "health", "params": {}}, {"type": "auth"},
                  {"type": "hello", "api_key": ka["api_key"]}, "not json"):
        c = Conn(srv.ports["client"])
        assert c.recv() == {"type": "auth_required"}
        text = first if isinstance(first, str) else json.dumps(first)
        c.sock.sendall(c.ws.send(TextMessage(data=text)))
        msgs, code = c.recv_until_close()
        c.close()
        assert [m.get("type") for m in msgs] == ["auth_failed"] and code == 1008, (first, msgs)


def test_messages_behind_a_key_lookup_keep_their_order(srv, ka):
    """Keys are looked up off the event loop (docs/storage.md): calls sent in
    the same packet right behind the auth message wait for the key, then run
    in order; so do calls behind an admin's call naming a tenant (the tenant
    is looked up too), whatever that lookup answers."""
    c = Conn(srv.ports["client"])
    try:
        assert c.recv() == {"type": "auth_required"}
        batch = [{"type": "auth", "api_key": ka["api_key"]}] + [
            {"id": f"p{i}", "function": "health", "params": {}} for i in range(5)]
        c.sock.sendall(b"".join(c.ws.send(TextMessage(data=json.dumps(m))) for m in batch))
        assert c.recv() == {"type": "auth_success", "tenant_id": "team-a"}
        assert c.recv()["status"] == "connected"
        got = [c.recv() for _ in range(5)]
        assert [(m["id"], m["status"]) for m in got] == [(f"p{i}", "complete")
                                                         for i in range(5)], got
    finally:
        c.close()
    c = ws_bearer(srv, ADMIN_KEY)
    try:
        batch = [{"id": "a0", "function": "health", "params": {}, "tenant_id": "team-a"},
                 {"id": "h1", "function": "health", "params": {}},
                 {"id": "x", "function": "health", "params": {}, "tenant_id": "nobody"},
                 {"id": "h2", "function": "health", "params": {}},
                 {"id": "a1", "function": "health", "params": {},
                  "tenant_id": ka["account_id"]}]
        c.sock.sendall(b"".join(c.ws.send(TextMessage(data=json.dumps(m))) for m in batch))
        got = [c.recv() for _ in range(5)]
        assert [(m["id"], m["status"]) for m in got] == [
            ("a0", "complete"), ("h1", "complete"), ("x", "error"), ("h2", "complete"),
            ("a1", "complete")], got
        assert got[2]["error"]["code"] == "UNAUTHORIZED", got[2]
    finally:
        c.close()


# ---- revocation -----------------------------------------------------------------------------


def test_revocation_closes_open_connections(srv, kb, hellos):
    kr = make_tenant(srv, "team-r")
    lr = tenant_client(srv, kr)
    assert lr.list_functions()["Functions"] == []
    bearer = ws_bearer(srv, kr["api_key"], "team-r")
    flow, msgs, code = ws_message_auth(srv, kr["api_key"])
    assert code is None and msgs[-1]["status"] == "connected", msgs
    other = ws_bearer(srv, kb["api_key"], "team-b")
    try:
        for c in (bearer, flow):
            assert c.call_wait({"id": "0", "function": "health"})["status"] == "complete"
        t0 = time.monotonic()
        keys_revoke(srv, kr["key_id"])
        # The next signed request is refused at once.
        with pytest.raises(ClientError) as ei:
            lr.list_functions()
        assert ei.value.response["Error"]["Code"] == "UnrecognizedClientException", \
            ei.value.response
        assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
        # Both open connections get auth_failed and 1008 within a few seconds (the
        # docs: within a second; the bound leaves room for a loaded machine).
        for c in (bearer, flow):
            c.sock.settimeout(max(0.1, t0 + 3 - time.monotonic()))
            ms, code = c.recv_until_close()
            assert [m.get("type") for m in ms] == ["auth_failed"] and code == 1008, (ms, code)
        assert time.monotonic() - t0 < 3
        # The key cannot connect again; the other tenant is unaffected.
        assert Conn(srv.ports["client"], kr["api_key"]).status == 401
        r = ws_invoke(other, "1", "hello")
        assert r["status"] == "complete" and r["data"]["payload"]["tenant"] == "team-b", r
    finally:
        for c in (bearer, flow, other):
            c.close()


# ---- rate limits ----------------------------------------------------------------------------


def test_rate_limit_on_websocket(srv):
    k = make_tenant(srv, "team-rate", "--rate", "1/s", "--burst", "2")
    c = ws_bearer(srv, k["api_key"], "team-rate")
    try:
        for i in range(3):
            c.call({"id": f"r{i}", "function": "health", "params": {}})
        got = [c.final(f"r{i}") for i in range(3)]
        assert [g["status"] for g in got[:2]] == ["complete", "complete"], got
        e = got[2]
        assert e["status"] == "error" and e["error"]["code"] == "RATE_LIMIT_EXCEEDED", got
        ra = e["error"].get("retry_after")
        assert isinstance(ra, int) and not isinstance(ra, bool) and ra >= 1, e
        # cancel is never limited.
        r = c.call_wait({"id": "c", "function": "cancel", "params": {"id": "nope"}})
        assert r["status"] == "error" and r["error"]["code"] == "CALL_NOT_FOUND", r
    finally:
        c.close()


def test_rate_limit_on_control_api(srv):
    k = make_tenant(srv, "team-rate2", "--rate", "1/s", "--burst", "2")
    lam = tenant_client(srv, k)
    lam.list_functions()
    lam.list_functions()
    with pytest.raises(ClientError) as ei:
        lam.list_functions()
    r = ei.value.response
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 429, r
    assert r["Error"]["Code"] == "TooManyRequestsException", r
    ra = r["ResponseMetadata"]["HTTPHeaders"].get("retry-after")
    assert ra is not None and ra.isdigit() and int(ra) >= 1, r


def test_refused_calls_leave_no_leak():
    """UNAUTHORIZED and RATE_LIMIT_EXCEEDED replies, then a clean stop: the
    sanitizer build exits 0 with no LeakSanitizer report."""
    s = Server("--auth", "--admin-key", ADMIN_KEY)
    try:
        k = keys_create(s, "team-l", "--rate", "1/s", "--burst", "1")
        c = ws_bearer(s, k["api_key"], "team-l")
        r = c.call_wait({"id": "u", "function": "health", "tenant_id": "someone-else"})
        assert r["status"] == "error" and r["error"]["code"] == "UNAUTHORIZED", r
        assert c.call_wait({"id": "h", "function": "health"})["status"] == "complete"
        r = c.call_wait({"id": "r", "function": "health"})
        assert r["status"] == "error" and r["error"]["code"] == "RATE_LIMIT_EXCEEDED", r
        c.close_handshake()
    finally:
        rc = s.stop()
    err = s.stderr
    assert "LeakSanitizer" not in err, err[err.find("==ERROR: LeakSanitizer"):][:3000]
    assert rc == 0, err


# ---- connection limits ----------------------------------------------------------------------


def open_count(srv):
    return sample(metrics_text(srv), "realm_websocket_connections")


def test_max_connections(make_server):
    s = make_server("--auth", "--admin-key", ADMIN_KEY, "--max-connections", "3")
    a, b = keys_create(s, "team-a"), keys_create(s, "team-b")
    conns = [ws_bearer(s, a["api_key"]), ws_bearer(s, b["api_key"]), ws_bearer(s, ADMIN_KEY)]
    try:
        for bearer in (a["api_key"], b["api_key"], ADMIN_KEY, None):
            c = Conn(s.ports["client"], bearer)
            assert c.status == 503, (bearer, c.status)
            assert c.headers.get("retry-after") == "1", c.headers
        # One closes: a new one is let in again.
        conns.pop(0).close_handshake()
        poll_until(lambda: open_count(s) == 2, 5, what="the closed connection to go")
        conns.append(ws_bearer(s, b["api_key"], "team-b"))
    finally:
        for c in conns:
            c.close()


def test_max_tenant_connections(make_server):
    s = make_server("--auth", "--admin-key", ADMIN_KEY, "--max-tenant-connections", "2")
    a, b = keys_create(s, "team-a"), keys_create(s, "team-b")
    conns = [ws_bearer(s, a["api_key"], "team-a")]
    try:
        c, msgs, code = ws_message_auth(s, a["api_key"])
        conns.append(c)
        assert code is None and msgs[-1].get("tenant_id") == "team-a", msgs
        # team-a's third: 503 with a Bearer key; auth_failed then 1008 by message.
        c = Conn(s.ports["client"], a["api_key"])
        assert c.status == 503 and c.headers.get("retry-after") == "1", (c.status, c.headers)
        c, msgs, code = ws_message_auth(s, a["api_key"])
        c.close()
        assert [m.get("type") for m in msgs] == ["auth_failed"] and code == 1008, (msgs, code)
        # Another tenant still connects, both ways; so does the admin.
        conns.append(ws_bearer(s, b["api_key"], "team-b"))
        c, msgs, code = ws_message_auth(s, b["api_key"])
        conns.append(c)
        assert code is None and msgs[-1].get("tenant_id") == "team-b", msgs
        conns.append(ws_bearer(s, ADMIN_KEY))
        # One of team-a's closes: team-a gets in again.
        conns.pop(0).close_handshake()
        poll_until(lambda: open_count(s) == 4, 5, what="the closed connection to go")
        conns.append(ws_bearer(s, a["api_key"], "team-a"))
    finally:
        for c in conns:
            c.close()


# ---- the admin key --------------------------------------------------------------------------


def test_admin_key(srv, ka, kb, la, lb, hellos):
    c = ws_bearer(srv, ADMIN_KEY)
    try:
        before = tenant_invocations(srv, ka["account_id"])
        for i, (tid, want) in enumerate([("team-a", "team-a"), (kb["account_id"], "team-b")]):
            r = ws_invoke(c, f"a{i}", "hello", {"via": "admin"}, tenant_id=tid)
            assert r["status"] == "complete", r
            assert r["data"]["payload"]["tenant"] == want, r
        assert tenant_invocations(srv, ka["account_id"]) == before + 1
    finally:
        c.close()
    # SigV4 as "admin" with X-Realm-Tenant lists that tenant's functions.
    admin = {"access_key_id": "admin", "secret_access_key": ADMIN_KEY}
    for key, lam in ((ka, la), (kb, lb)):
        status, _, body = signed(srv, admin, "GET", "/2015-03-31/functions/",
                                 headers={"X-Realm-Tenant": key["tenant"]})
        assert status == 200, (status, body)
        got = {f["FunctionArn"] for f in json.loads(body)["Functions"]}
        own = {f["FunctionArn"] for f in lam.list_functions()["Functions"]}
        assert got == own and fn_arn(key["account_id"], "hello") in got, (got, own)
    # A tenant's own X-Realm-Tenant is ignored: it still sees only its own.
    status, _, body = signed(srv, kb, "GET", "/2015-03-31/functions/",
                             headers={"X-Realm-Tenant": "team-a"})
    assert status == 200, (status, body)
    assert [f["FunctionArn"] for f in json.loads(body)["Functions"]
            if f["FunctionName"] == "hello"] == [fn_arn(kb["account_id"], "hello")], body
    assert ka["account_id"] not in body.decode(), body
    # A wrong admin secret is a bad signature.
    status, h, body = signed(srv, {"access_key_id": "admin", "secret_access_key": "x" + ADMIN_KEY},
                             "GET", "/2015-03-31/functions/", headers={"X-Realm-Tenant": "team-a"})
    check_aws_error(status, h, body, 403, "InvalidSignatureException")


def test_metrics_need_the_admin_key(srv, ka, kb, la, lb, hellos):
    port = srv.ports["metrics"]
    status, h, _ = http_request(port, "GET", "/metrics")
    assert status == 401, status
    for bad in (ka["api_key"], "x" + ADMIN_KEY, ADMIN_KEY[:-1]):
        assert http_request(port, "GET", "/metrics", b"",
                            {"Authorization": f"Bearer {bad}"})[0] == 401, bad
    status, _, body = http_request(port, "GET", "/health")
    assert status == 200 and json.loads(body)["status"] == "ok", (status, body)
    # One series per (tenant account id, outcome); each tenant's own calls count under it.
    before = {k["account_id"]: tenant_invocations(srv, k["account_id"]) for k in (ka, kb)}
    invoke_json(la, "hello")
    invoke_json(la, "hello")
    invoke_json(lb, "hello")
    text = metrics_text(srv)
    series = re.findall(r'^realm_tenant_invocations_total\{tenant="([^"]*)",outcome="(\w+)"\} ',
                        text, re.M)
    assert len(series) == len(set(series)), series
    tenants = {t for t, _ in series}
    assert {ka["account_id"], kb["account_id"]} <= tenants, series
    known = {k["account_id"] for k in srv.tenant_keys}
    assert tenants <= known, (tenants, known)  # account ids, never tenant names
    for t in (ka["account_id"], kb["account_id"]):
        assert {o for tt, o in series if tt == t} == {"ok", "error", "throttled"}, series
    assert tenant_invocations(srv, ka["account_id"]) == before[ka["account_id"]] + 2
    assert tenant_invocations(srv, kb["account_id"]) == before[kb["account_id"]] + 1


# ---- environments ---------------------------------------------------------------------------


def test_environments_are_never_shared(srv, ka, kb, la, lb):
    code = node_zip(IDENT_SRC)  # the same bytes, the same name, in both tenants
    for lam in (la, lb):
        lam.create_function(FunctionName="ident", Runtime="nodejs20.x", Role=ROLE,
                            Handler="index.handler", Code={"ZipFile": code})
    a1, b1, a2, b2 = (invoke_json(la, "ident"), invoke_json(lb, "ident"),
                      invoke_json(la, "ident"), invoke_json(lb, "ident"))
    assert a1["uid"] == a2["uid"] and b1["uid"] == b2["uid"], (a1, a2, b1, b2)
    assert a1["uid"] != b1["uid"], (a1, b1)
    assert 993 not in (a1["uid"], b1["uid"]) and min(a1["uid"], b1["uid"]) >= 20001, (a1, b1)
    assert {a1["env"], a2["env"]}.isdisjoint({b1["env"], b2["env"]}), (a1, a2, b1, b2)


# ---- the auth-message timeout ---------------------------------------------------------------


def test_ws_silence_is_auth_failed_after_10s(srv):
    """The connection opened when the server started (SilentWatcher) and never
    authenticated: auth_failed then 1008, ten seconds (the sweep is once a
    second) after the upgrade."""
    w = srv.silent
    w.thread.join(timeout=max(0.0, w.t0 + 13 - time.monotonic()))
    assert not w.thread.is_alive(), f"still open after 13 s: {w.got}"
    assert w.error is None, (w.error, w.got)
    msgs = [m for _, m in w.got]
    assert msgs[0] == {"type": "auth_required"}, msgs
    assert msgs[1].get("type") == "auth_failed" and msgs[2] == ("close", 1008), msgs
    assert 9.9 <= w.got[1][0] <= 12.0, w.got


# ---- without --auth -------------------------------------------------------------------------


def test_without_auth_nothing_is_needed(make_server):
    s = make_server("--shutdown-grace-ms", "1000")
    lam = fn_client(s)  # any credentials
    lam.create_function(FunctionName="hello", Runtime="nodejs20.x", Role=ROLE,
                        Handler="index.handler",
                        Code={"ZipFile": node_zip(HELLO_SRC.replace("TENANT", "nobody"))})
    assert invoke_json(lam, "hello", {"x": 1})["arn"] == fn_arn("000000000000", "hello")
    status, _, data = send(s, "POST", invoke_path("hello"), b'{"raw":1}')  # no Authorization
    assert status == 200 and json.loads(data)["event"] == {"raw": 1}, (status, data)
    status, _, data = send(s, "GET", logs_path("hello"))
    assert status == 200 and b"hello-log nobody" in data, (status, data)
    c = Conn(s.ports["client"])
    w = c.recv()
    assert w == {"status": "connected", "version": w.get("version"), "tenant_id": None}, w
    try:
        r = ws_invoke(c, "1", "hello", {"ws": 1})
        assert r["status"] == "complete" and r["data"]["payload"]["event"] == {"ws": 1}, r
    finally:
        c.close()
    c = Conn(s.ports["client"], "rk_anything")  # a Bearer header is ignored
    assert c.status == 101
    assert c.recv().get("tenant_id") is None
    c.close()
    status, _, body = http_request(s.ports["metrics"], "GET", "/metrics")
    assert status == 200, status
    assert re.search(r'^realm_tenant_invocations_total\{tenant="default",outcome="ok"\} [1-9]',
                     body.decode(), re.M), body
    lam.delete_function(FunctionName="hello")


def test_code_packages_are_per_tenant(srv, ka, kb, la, hellos):
    """GetFunction's Code.Location serves the caller's own package only: the
    other tenant's package reads as missing, signed or not."""
    loc = la.get_function(FunctionName="a-only")["Code"]["Location"]
    path = urllib.parse.urlsplit(loc).path
    status, _, body = signed(srv, ka, "GET", path)
    assert status == 200 and body[:2] == b"PK", (status, body[:40])
    status, headers, body = signed(srv, kb, "GET", path)
    check_aws_error(status, headers, body, 404, "ResourceNotFoundException")
    status, headers, body = send(srv, "GET", path)
    check_aws_error(status, headers, body, 403, "MissingAuthenticationTokenException")


def test_realm_cli_signs_with_the_tenants_credentials(srv, tmp_path):
    """realm deploy/functions/invoke sign with AWS_ACCESS_KEY_ID/SECRET from the
    environment; without them, or with a wrong secret, the server refuses."""
    k = make_tenant(srv, "team-cli")
    src = tmp_path / "fn"
    src.mkdir()
    (src / "index.js").write_text("exports.handler = async (e) => ({cli: e.n});\n")
    endpoint = f"--endpoint={srv.url('control').rstrip('/')}"
    base = {k2: v for k2, v in os.environ.items() if not k2.startswith("AWS_")}
    env = dict(base, AWS_ACCESS_KEY_ID=k["access_key_id"],
               AWS_SECRET_ACCESS_KEY=k["secret_access_key"], AWS_DEFAULT_REGION="us-east-1")

    def cli(*args, environ=env):
        return subprocess.run([realm_bin(), *args, endpoint], env=environ, capture_output=True,
                              text=True, timeout=60)
    r = cli("deploy", str(src), "--name", "clifn", "--runtime", "nodejs20.x",
            "--handler", "index.handler")
    assert r.returncode == 0, r.stderr
    r = cli("functions", "--json")
    assert r.returncode == 0 and "clifn" in r.stdout, (r.stdout, r.stderr)
    r = cli("invoke", "clifn", "--payload", '{"n": 5}')
    assert r.returncode == 0 and json.loads(r.stdout) == {"cli": 5}, (r.stdout, r.stderr)
    r = cli("functions", environ=base)
    assert r.returncode == 1 and "MissingAuthenticationToken" in r.stderr, r.stderr
    r = cli("functions", environ=dict(env, AWS_SECRET_ACCESS_KEY="wrong"))
    assert r.returncode == 1 and "InvalidSignatureException" in r.stderr, r.stderr
