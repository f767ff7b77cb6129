"""Code packages: hostile zips are refused with a message naming the problem
and leave nothing behind (registry or DATA_DIR/packages); packages are
stored once per hash and removed with their last function; the zip size
limit; and the control listener's raw HTTP behaviour (unknown paths, bodies
that are not JSON, the seed's compatibility form)."""
import base64
import http.client
import io
import json
import os
import zipfile

import pytest

from lambda_util import (HOSTILE_FLAGS, ROLE, code_hex, code_sha256, create,
                         expect_error, hostile_zips, lambda_client, make_zip, node_zip,
                         package_listing, python_zip, running)

HOSTILE = hostile_zips()


@pytest.fixture(scope="module")
def srv():
    with running(*HOSTILE_FLAGS) as s:
        yield s


@pytest.fixture(scope="module")
def lam(srv):
    return lambda_client(srv)


def live_hexes(lam):
    """Hex hashes of every version's code package in the registry."""
    out = set()
    for page in lam.get_paginator("list_functions").paginate(FunctionVersion="ALL"):
        for f in page["Functions"]:
            out.add(base64.b64decode(f["CodeSha256"]).hex())
    return out


def assert_store_clean(server, lam):
    """The store holds exactly the packages functions use, each as zip + tree,
    and nothing is staged."""
    zips, dirs, staging = package_listing(server.data_dir)
    want = sorted(live_hexes(lam))
    assert zips == [h + ".zip" for h in want]
    assert dirs == want
    assert staging == []


def function_names(lam):
    return [f["FunctionName"] for p in lam.get_paginator("list_functions").paginate()
            for f in p["Functions"]]


# ---- hostile packages ---------------------------------------------------------------


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_package_refused_by_create(srv, lam, case):
    data, words, entry = HOSTILE[case]
    name = f"hostile-{case.replace('_', '-')}"
    msg = expect_error(create, "InvalidParameterValueException", 400, lam=lam, name=name,
                       zip_bytes=data)
    assert any(w in msg.lower() for w in words), f"none of {words} in {msg!r}"
    if entry is not None:
        assert entry in msg, f"the message does not name the entry {entry!r}: {msg!r}"
    assert name not in function_names(lam)
    expect_error(lam.get_function, "ResourceNotFoundException", 404, FunctionName=name)
    assert_store_clean(srv, lam)
    assert code_hex(data) + ".zip" not in package_listing(srv.data_dir)[0]


@pytest.fixture(scope="module")
def victim(lam):
    z = node_zip("victim")
    c = create(lam, "victim", z)
    return c


@pytest.mark.parametrize("case", ["dotdot", "symlink_up", "duplicate", "bomb", "crc",
                                  "not_a_zip"])
def test_hostile_package_refused_by_update(srv, lam, victim, case):
    data, words, _ = HOSTILE[case]
    msg = expect_error(lam.update_function_code, "InvalidParameterValueException", 400,
                       FunctionName="victim", ZipFile=data)
    assert any(w in msg.lower() for w in words), f"none of {words} in {msg!r}"
    c = lam.get_function_configuration(FunctionName="victim")
    assert (c["CodeSha256"], c["RevisionId"]) == (victim["CodeSha256"], victim["RevisionId"])
    assert c["LastUpdateStatus"] == "Successful"
    assert_store_clean(srv, lam)
    assert code_hex(data) not in live_hexes(lam)


def test_entry_limit_is_inclusive(srv, lam):
    """Exactly --max-code-entries entries is fine."""
    files = {"index.js": "exports.handler = async () => 1;\n"}
    files.update({f"f{i}.txt": str(i) for i in range(9)})
    z = make_zip(files)
    r = create(lam, "ten-entries", z)
    assert r["CodeSha256"] == code_sha256(z)
    zips, dirs, _ = package_listing(srv.data_dir)
    assert code_hex(z) + ".zip" in zips and code_hex(z) in dirs
    tree = os.path.join(srv.data_dir, "packages", code_hex(z))
    assert sorted(os.listdir(tree)) == sorted(files)
    with open(os.path.join(tree, "f3.txt")) as f:
        assert f.read() == "3"


def test_good_package_after_bad_one(srv, lam):
    bad = HOSTILE["symlink_abs"][0]
    expect_error(create, "InvalidParameterValueException", 400, lam=lam, name="phoenix",
                 zip_bytes=bad)
    z = python_zip("phoenix")
    r = create(lam, "phoenix", z, runtime="python3.11", handler="app.handler")
    assert r["CodeSha256"] == code_sha256(z) and r["State"] == "Active"
    tree = os.path.join(srv.data_dir, "packages", code_hex(z))
    with open(os.path.join(tree, "lib", "util.py")) as f:
        assert f.read() == "X = 1\n"
    assert_store_clean(srv, lam)


def test_symlink_inside_the_package_is_kept(srv, lam):
    z = make_zip({"index.js": "exports.handler = async () => 1;\n", "lib/real.js": "1;\n"},
                 symlinks=[("lib/alias.js", "real.js"), ("top", "lib")])
    create(lam, "linked", z)
    tree = os.path.join(srv.data_dir, "packages", code_hex(z))
    assert os.readlink(os.path.join(tree, "lib", "alias.js")) == "real.js"
    assert os.readlink(os.path.join(tree, "top")) == "lib"
    assert_store_clean(srv, lam)


def test_same_zip_is_stored_once(make_server):
    s = make_server()
    lam = lambda_client(s)
    z = node_zip("shared")
    a = create(lam, "share-a", z)
    b = create(lam, "share-b", z)
    assert a["CodeSha256"] == b["CodeSha256"] == code_sha256(z)
    zips, dirs, staging = package_listing(s.data_dir)
    assert zips == [code_hex(z) + ".zip"] and dirs == [code_hex(z)] and staging == []
    lam.delete_function(FunctionName="share-a")
    assert package_listing(s.data_dir)[0] == [code_hex(z) + ".zip"]
    assert lam.get_function(FunctionName="share-b")["Configuration"]["CodeSha256"] == \
        code_sha256(z)
    lam.delete_function(FunctionName="share-b")
    assert package_listing(s.data_dir) == ([], [], [])


def test_deleted_version_keeps_package_while_used(make_server):
    s = make_server()
    lam = lambda_client(s)
    z1, z2 = node_zip("v1"), node_zip("v2")
    create(lam, "keeper", z1, Publish=True)
    lam.update_function_code(FunctionName="keeper", ZipFile=z2, Publish=True)
    # Version 1 still uses z1.
    zips = package_listing(s.data_dir)[0]
    assert code_hex(z1) + ".zip" in zips and code_hex(z2) + ".zip" in zips
    lam.delete_function(FunctionName="keeper")
    assert package_listing(s.data_dir) == ([], [], [])


# ---- size limit ---------------------------------------------------------------------


def random_zip(size):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr("index.js", "exports.handler = async () => 1;\n")
        z.writestr("random.bin", os.urandom(size))
    return buf.getvalue()


def test_zip_over_the_limit(make_server):
    s = make_server("--max-code-zip-bytes", "64KiB")
    lam = lambda_client(s)
    big = random_zip(200 * 1024)
    expect_error(create, "RequestTooLargeException", 413, lam=lam, name="too-big",
                 zip_bytes=big)
    assert function_names(lam) == []
    assert package_listing(s.data_dir) == ([], [], [])
    # Under the limit is fine on the same server.
    small = random_zip(40 * 1024)
    assert create(lam, "small-enough", small)["CodeSize"] == len(small)
    expect_error(lam.update_function_code, "RequestTooLargeException", 413,
                 FunctionName="small-enough", ZipFile=big)
    assert lam.get_function_configuration(FunctionName="small-enough")["CodeSize"] == len(small)
    assert package_listing(s.data_dir)[0] == [code_hex(small) + ".zip"]

    # A body announced far over the limit is refused from its headers alone.
    conn = http.client.HTTPConnection("127.0.0.1", s.ports["control"], timeout=10)
    try:
        conn.putrequest("POST", "/2015-03-31/functions")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(100 * 1024 * 1024))
        conn.endheaders()
        r = conn.getresponse()
        assert r.status == 413
        assert r.getheader("x-amzn-ErrorType", "").startswith("RequestTooLargeException")
        assert r.getheader("x-amzn-RequestId")
    finally:
        conn.close()


# ---- raw HTTP -----------------------------------------------------------------------


def request(server, method, path, body=None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", server.ports["control"], timeout=30)
    try:
        h = {"Content-Type": "application/json"}
        h.update(headers or {})
        conn.request(method, path, body=body, headers=h)
        r = conn.getresponse()
        data = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data
    finally:
        conn.close()


def assert_aws_error(status, headers, data, want_status, want_type):
    assert status == want_status, (status, headers, data)
    assert headers.get("x-amzn-errortype", "").split(":")[0] == want_type, headers
    assert headers.get("x-amzn-requestid"), headers
    body = json.loads(data)
    assert isinstance(body.get("message"), str) and body["message"], body
    assert body.get("Type") == ("Service" if want_status >= 500 else "User"), body
    return body["message"]


@pytest.mark.parametrize("method,path", [
    ("GET", "/nope"),
    ("GET", "/2015-03-31/nothing-here"),
    ("POST", "/2015-03-31/functions/x/unknown"),
    ("GET", "/"),
])
def test_unknown_path(srv, method, path):
    status, headers, data = request(srv, method, path)
    assert_aws_error(status, headers, data, 404, "UnknownOperationException")


def test_unknown_method(srv):
    status, headers, data = request(srv, "PATCH", "/2015-03-31/functions")
    assert status in (404, 405)
    assert_aws_error(status, headers, data, status, "UnknownOperationException")


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b"\"str\"", b"{\"a\":"])
def test_body_not_a_json_object(srv, body):
    status, headers, data = request(srv, "POST", "/2015-03-31/functions", body)
    assert_aws_error(status, headers, data, 400, "InvalidRequestContentException")
    status, headers, data = request(srv, "PUT", "/2015-03-31/functions/any/configuration",
                                    body)
    assert_aws_error(status, headers, data, 400, "InvalidRequestContentException")


def test_zipfile_not_base64(srv, lam):
    body = json.dumps({"FunctionName": "b64-bad", "Runtime": "nodejs20.x", "Role": ROLE,
                       "Handler": "index.handler", "Code": {"ZipFile": "!!not base64!!"}})
    status, headers, data = request(srv, "POST", "/2015-03-31/functions", body)
    msg = assert_aws_error(status, headers, data, 400, "InvalidParameterValueException")
    assert "base64" in msg
    assert "b64-bad" not in function_names(lam)


def test_success_has_request_id(srv):
    status, headers, data = request(srv, "GET", "/2016-08-19/account-settings/")
    assert status == 200 and headers.get("x-amzn-requestid")
    assert json.loads(data)["AccountLimit"]["ConcurrentExecutions"] == 100


def test_seed_compatibility_form(srv, lam):
    z = python_zip("seed")
    body = json.dumps({"function_name": "seed-fn", "runtime": "python311",
                       "handler": "app.handler",
                       "code": {"zip_file": base64.b64encode(z).decode()},
                       "description": "from the seed", "timeout": 30, "memory_size": 256,
                       "environment": {"KEY": "value"}})
    status, headers, data = request(srv, "POST", "/2015-03-31/functions", body)
    assert status == 201, data
    assert headers.get("x-amzn-requestid")
    r = json.loads(data)
    assert r["FunctionName"] == "seed-fn" and r["Runtime"] == "python3.11"
    assert r["Handler"] == "app.handler" and r["Description"] == "from the seed"
    assert (r["Timeout"], r["MemorySize"]) == (30, 256)
    assert r["Environment"] == {"Variables": {"KEY": "value"}}
    assert r["CodeSha256"] == code_sha256(z) and r["CodeSize"] == len(z)
    assert r["Version"] == "$LATEST" and r["State"] == "Active"
    c = lam.get_function_configuration(FunctionName="seed-fn")
    c.pop("ResponseMetadata")
    assert c == r
    check = json.dumps({"function_name": "seed-2", "runtime": "nodejs20",
                        "handler": "index.handler",
                        "code": {"zip_file": base64.b64encode(node_zip("seed2")).decode()}})
    status, _, data = request(srv, "POST", "/2015-03-31/functions", check)
    assert status == 201 and json.loads(data)["Runtime"] == "nodejs20.x"
    # The seed form goes through the same rules.
    bad = json.dumps({"function_name": "seed-3", "runtime": "python27", "handler": "a.b",
                      "code": {"zip_file": base64.b64encode(z).decode()}})
    status, headers, data = request(srv, "POST", "/2015-03-31/functions", bad)
    assert_aws_error(status, headers, data, 400, "InvalidParameterValueException")
    assert_store_clean(srv, lam)
