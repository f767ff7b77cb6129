"""Schema versions (docs/storage.md, "Schema versions and migrations"): each
file of a data dir records its schema version in a realm_schema table; a
file newer than the binary makes `realm serve` (and `realm keys`) refuse to
start, naming the file and both versions, and leaves the file untouched; a
data dir from the releases before realm_schema (the same tables, the version
in PRAGMA user_version) starts, records its version and keeps its functions."""
import contextlib
import os
import sqlite3
import subprocess

import pytest

from conftest import assert_no_sanitizer_report, lambda_client, realm_bin
from lambda_util import create, node_zip


def serve(data_dir):
    """`realm serve` on the data dir, expected to exit by itself (refusing)."""
    return subprocess.run([realm_bin(), "serve", "--port", "0", "--control-port", "0",
                           "--runtime-port", "0", "--metrics-port", "0",
                           "--data-dir", data_dir], capture_output=True, text=True, timeout=60)


def sql(path, *statements):
    """Runs statements on a file (no server has it open); the last one's rows."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        rows = []
        for st in statements:
            rows = db.execute(st).fetchall()
        db.commit()
        return rows


def versions(path):
    return dict(sql(path, "SELECT kind, version FROM realm_schema"))


def populate(make_server, data):
    s = make_server(data_dir=data)
    lam = lambda_client(s)
    create(lam, "kept", node_zip("kept"), Description="before")
    s.stop()
    assert s.proc.returncode == 0, s.stderr


def still_there(make_server, data):
    s = make_server(data_dir=data)
    lam = lambda_client(s)
    assert lam.get_function(FunctionName="kept")["Configuration"]["Description"] == "before"
    return s


def test_each_file_records_its_version(make_server, tmp_path):
    data = str(tmp_path / "data")
    populate(make_server, data)
    reg, queue = versions(os.path.join(data, "realm.db")), versions(os.path.join(data, "events.db"))
    assert list(reg) == ["registry"] and reg["registry"] >= 1, reg
    assert list(queue) == ["queue"] and queue["queue"] >= 2, queue
    p = subprocess.run([realm_bin(), "keys", "create", "--tenant", "acme", "--json",
                        "--data-dir", data], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    assert p.stderr == ""  # a new file's schema is made without a word
    auth = versions(os.path.join(data, "auth.db"))
    assert list(auth) == ["auth"] and auth["auth"] >= 1, auth


@pytest.mark.parametrize("file,kind", [("realm.db", "registry"), ("events.db", "queue")])
def test_newer_file_is_refused(make_server, tmp_path, file, kind):
    data = str(tmp_path / "data")
    populate(make_server, data)
    path = os.path.join(data, file)
    known = versions(path)[kind]
    sql(path, f"UPDATE realm_schema SET version = {known + 5}")
    cookie = sql(path, "PRAGMA schema_version")

    p = serve(data)
    assert p.returncode == 1, (p.returncode, p.stderr)
    assert_no_sanitizer_report(p.stderr)
    want = (f"realm serve: {path}: schema version {known + 5} is newer than this realm "
            f"(knows up to {known}); upgrade realm")
    assert want in p.stderr.splitlines(), p.stderr
    assert "listening" not in p.stdout, p.stdout
    assert versions(path) == {kind: known + 5}
    assert sql(path, "PRAGMA schema_version") == cookie  # nothing written

    # Only the version stood in the way: back at the known one, all is there.
    sql(path, f"UPDATE realm_schema SET version = {known}")
    still_there(make_server, data)


def test_newer_auth_file_is_refused_by_keys(tmp_path):
    data = str(tmp_path / "data")
    keys = [realm_bin(), "keys"]
    p = subprocess.run(keys + ["create", "--tenant", "acme", "--data-dir", data],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    path = os.path.join(data, "auth.db")
    known = versions(path)["auth"]
    sql(path, f"UPDATE realm_schema SET version = {known + 1}")
    p = subprocess.run(keys + ["list", "--data-dir", data], capture_output=True, text=True,
                       timeout=30)
    assert p.returncode != 0, p
    assert_no_sanitizer_report(p.stderr)
    assert (f"{path}: schema version {known + 1} is newer than this realm "
            f"(knows up to {known}); upgrade realm") in p.stderr, p.stderr
    assert versions(path) == {"auth": known + 1}


def test_data_dir_from_before_versions(make_server, tmp_path):
    data = str(tmp_path / "data")
    populate(make_server, data)
    # As the releases before realm_schema left the files: the same tables,
    # the version only in PRAGMA user_version.
    for file, old in (("realm.db", 1), ("events.db", 2)):
        path = os.path.join(data, file)
        sql(path, "DROP TABLE realm_schema", f"PRAGMA user_version = {old}")
        assert sql(path, "SELECT count(*) FROM sqlite_master WHERE name = 'realm_schema'") == [(0,)]
    s = still_there(make_server, data)
    assert versions(os.path.join(data, "realm.db"))["registry"] >= 1
    assert versions(os.path.join(data, "events.db"))["queue"] >= 2
    assert "registry schema version 1 recorded" in s.stderr, s.stderr
    assert "queue schema version 2 recorded" in s.stderr, s.stderr
