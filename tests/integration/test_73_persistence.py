"""Durability: the registry and the package store survive `kill -9` exactly
(every field, RevisionId and LastModified included), version numbers are
not reused after a restart, and a crash's leftovers (staged work, packages
no row refers to) are removed at the next start."""
import base64
import hashlib
import io
import os
import threading
import urllib.parse
import urllib.request
import zipfile

from lambda_util import (arn, code_hex, create, expect_error, lambda_client, node_zip,
                         package_listing, python_zip)


def strip(resp):
    resp = dict(resp)
    resp.pop("ResponseMetadata", None)
    return resp


def download(location):
    with urllib.request.urlopen(location, timeout=10) as f:
        assert f.status == 200
        return f.read()


def snapshot(lam, names):
    """Everything the API says about the functions, minus what names the
    listener (the Code.Location host:port changes with the port)."""
    snap = {"functions": [strip(f) for p in
                          lam.get_paginator("list_functions").paginate(FunctionVersion="ALL")
                          for f in p["Functions"]]}
    acct = strip(lam.get_account_settings())
    snap["account"] = acct
    for n in names:
        g = strip(lam.get_function(FunctionName=n))
        g["Code"]["Location"] = urllib.parse.urlsplit(g["Code"]["Location"]).path
        versions = strip(lam.list_versions_by_function(FunctionName=n))["Versions"]
        snap[n] = {
            "get_function": g,
            "versions": versions,
            "version_configs": [strip(lam.get_function_configuration(
                FunctionName=n, Qualifier=v["Version"])) for v in versions],
            "aliases": strip(lam.list_aliases(FunctionName=n))["Aliases"],
            "alias_configs": [strip(lam.get_alias(FunctionName=n, Name=a["Name"]))
                              for a in lam.list_aliases(FunctionName=n)["Aliases"]],
            "concurrency": strip(lam.get_function_concurrency(FunctionName=n)),
            "tags": strip(lam.list_tags(Resource=arn(n))),
        }
    return snap


def populate(lam):
    z1, z2, zp = node_zip("persist-1"), node_zip("persist-2"), python_zip("persist")
    create(lam, "p-node", z1, Description="node one", Timeout=10,
           Environment={"Variables": {"GREETING": "hi"}}, Tags={"team": "core"})
    lam.publish_version(FunctionName="p-node", Description="v1")
    lam.update_function_configuration(FunctionName="p-node", MemorySize=512,
                                      Environment={"Variables": {"GREETING": "hello"}})
    lam.publish_version(FunctionName="p-node")
    lam.update_function_code(FunctionName="p-node", ZipFile=z2)
    lam.create_alias(FunctionName="p-node", Name="live", FunctionVersion="1",
                     Description="prod", RoutingConfig={"AdditionalVersionWeights": {"2": 0.3}})
    lam.create_alias(FunctionName="p-node", Name="edge", FunctionVersion="$LATEST")
    lam.put_function_concurrency(FunctionName="p-node", ReservedConcurrentExecutions=7)
    lam.tag_resource(Resource=arn("p-node"), Tags={"env": "prod", "cost": "42"})
    lam.untag_resource(Resource=arn("p-node"), TagKeys=["team"])

    create(lam, "p-py", zp, runtime="python3.11", handler="app.handler", MemorySize=1024)
    lam.publish_version(FunctionName="p-py")
    lam.update_function_configuration(FunctionName="p-py", Timeout=60)
    lam.publish_version(FunctionName="p-py")
    lam.delete_function(FunctionName="p-py", Qualifier="2")

    create(lam, "p-gone", node_zip("gone"))
    lam.delete_function(FunctionName="p-gone")
    return z1, z2, zp


def test_state_survives_kill(make_server, tmp_path):
    data = str(tmp_path / "data")
    s1 = make_server(data_dir=data)
    lam = lambda_client(s1)
    z1, z2, zp = populate(lam)
    names = ["p-node", "p-py"]
    before = snapshot(lam, names)
    packages_before = package_listing(data)
    assert before["p-node"]["concurrency"] == {"ReservedConcurrentExecutions": 7}
    assert [v["Version"] for v in before["p-py"]["versions"]] == ["$LATEST", "1"]

    assert s1.proc.poll() is None, s1.stderr
    assert s1.kill() == -9

    s2 = make_server(data_dir=data)
    lam = lambda_client(s2)
    after = snapshot(lam, names)
    for key in before:
        assert after[key] == before[key], key
    # The store holds the packages the registry uses, as it did before the crash.
    live = sorted({base64.b64decode(f["CodeSha256"]).hex() for f in after["functions"]})
    assert package_listing(data) == ([h + ".zip" for h in live], live, [])
    assert set(live) <= set(packages_before[1])
    expect_error(lam.get_function, "ResourceNotFoundException", 404, FunctionName="p-gone")

    # Code is served as before, for $LATEST and for the versions.
    assert download(lam.get_function(FunctionName="p-node")["Code"]["Location"]) == z2
    assert download(lam.get_function(FunctionName="p-node", Qualifier="1")["Code"][
        "Location"]) == z1
    assert download(lam.get_function(FunctionName="p-py")["Code"]["Location"]) == zp

    # The registry carries on: no number reused, the aliases still exist, the
    # reserved concurrency still counts against the limit.
    lam.update_function_configuration(FunctionName="p-py", Timeout=61)
    assert lam.publish_version(FunctionName="p-py")["Version"] == "3"
    expect_error(lam.create_alias, "ResourceConflictException", 409, FunctionName="p-node",
                 Name="live", FunctionVersion="2")
    expect_error(lam.put_function_concurrency, "InvalidParameterValueException", 400,
                 FunctionName="p-py", ReservedConcurrentExecutions=94)
    assert lam.get_account_settings()["AccountLimit"]["UnreservedConcurrentExecutions"] == 93


def test_crash_leftovers_are_removed_at_start(make_server, tmp_path):
    data = str(tmp_path / "data")
    s1 = make_server(data_dir=data)
    lam = lambda_client(s1)
    z = node_zip("leftover-kept")
    create(lam, "kept", z)
    assert s1.kill() == -9

    root = os.path.join(data, "packages")
    staging = os.path.join(root, ".staging")
    os.makedirs(os.path.join(staging, "half-unpacked"), exist_ok=True)
    with open(os.path.join(staging, "junk"), "wb") as f:
        f.write(b"partial upload")
    with open(os.path.join(staging, "half-unpacked", "index.js"), "w") as f:
        f.write("half")
    orphan = hashlib.sha256(b"an orphan package").hexdigest()
    with open(os.path.join(root, orphan + ".zip"), "wb") as f:
        f.write(node_zip("orphan"))
    os.makedirs(os.path.join(root, orphan))
    with open(os.path.join(root, orphan, "index.js"), "w") as f:
        f.write("orphan")
    zips, dirs, staged = package_listing(data)
    assert orphan + ".zip" in zips and staged == ["half-unpacked", "junk"]

    s2 = make_server(data_dir=data)
    lam = lambda_client(s2)
    assert [f["FunctionName"] for f in lam.list_functions()["Functions"]] == ["kept"]
    assert package_listing(data) == ([code_hex(z) + ".zip"], [code_hex(z)], [])
    assert download(lam.get_function(FunctionName="kept")["Code"]["Location"]) == z


def test_kill_during_updates_leaves_a_consistent_store(make_server, tmp_path):
    """SIGKILL while code updates are in flight: after a restart every function's
    package is whole, and the store holds exactly the packages in use."""
    data = str(tmp_path / "data")
    s1 = make_server(data_dir=data)
    lam = lambda_client(s1)
    create(lam, "churn", node_zip("churn-0"))
    progressed = threading.Event()
    stop = threading.Event()
    done = []

    def churn():
        c = lambda_client(s1)
        i = 1
        while not stop.is_set():
            try:
                c.update_function_code(FunctionName="churn", ZipFile=node_zip(f"churn-{i}"))
            except Exception:  # the server is gone
                break
            done.append(i)
            if len(done) >= 3:
                progressed.set()
            i += 1

    t = threading.Thread(target=churn, daemon=True)
    t.start()
    assert progressed.wait(timeout=60), "no code update completed"
    assert s1.kill() == -9
    stop.set()
    t.join(timeout=60)
    assert not t.is_alive()

    s2 = make_server(data_dir=data)
    lam = lambda_client(s2)
    g = lam.get_function(FunctionName="churn")
    sha = g["Configuration"]["CodeSha256"]
    body = download(g["Code"]["Location"])
    assert base64.b64encode(hashlib.sha256(body).digest()).decode() == sha
    # The last update that was answered is there, or a later one that committed.
    with zipfile.ZipFile(io.BytesIO(body)) as z:
        src = z.read("index.js").decode()
    n = int(src.rsplit("// churn-", 1)[1].split("\n", 1)[0])
    assert n >= done[-1], (n, done[-1])
    hexes = {base64.b64decode(sha).hex()}
    zips, dirs, staged = package_listing(data)
    assert (zips, dirs, staged) == ([h + ".zip" for h in sorted(hexes)], sorted(hexes), [])
    # No update is left marked as in progress by the crash.
    assert g["Configuration"]["LastUpdateStatus"] == "Successful"
    u = lam.update_function_code(FunctionName="churn", ZipFile=node_zip("after"))
    assert u["CodeSha256"] == base64.b64encode(
        hashlib.sha256(node_zip("after")).digest()).decode()
