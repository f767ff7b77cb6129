"""Schema versions (docs/storage.md, "Schema versions and migrations"): each
file of a data dir records its schema version in a realm_schema table; a
file newer than the binary makes `realm serve` (and `realm keys`) refuse to
start, naming the file and both versions, and leaves the file untouched; a
data dir from the releases before realm_schema (the same tables, the version
in PRAGMA user_version) starts, records its version and keeps its functions.

With REALM_TEST_DB=pg the registry's and the queue's versions are rows of
realm_schema in the server's database (conftest: one per data dir), the
keys' (of `realm keys --data-dir`) still in auth.db, and the refusal names
the database and the kind. The files from
before realm_schema are SQLite's own history (sqlite_only)."""
import contextlib
import os
import sqlite3
import subprocess

import pytest

from conftest import (PG_MODE, assert_no_sanitizer_report, lambda_client, pg_database_for,
                      pg_session_cluster, realm_bin)
from lambda_util import create, node_zip


def serve(data_dir):
    """`realm serve` on the data dir (and, with REALM_TEST_DB=pg, its database),
    expected to exit by itself (refusing)."""
    db = ["--db", pg_database_for(data_dir)] if PG_MODE else []
    return subprocess.run([realm_bin(), "serve", "--port", "0", "--control-port", "0",
                           "--runtime-port", "0", "--metrics-port", "0",
                           "--data-dir", data_dir, *db], capture_output=True, text=True, timeout=60)


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


KINDS = {"realm.db": "registry", "events.db": "queue"}


class Kept:
    """Where a data dir keeps one kind's version: its file (DATA_DIR/FILE), or,
    for the registry (realm.db) and the queue (events.db) with
    REALM_TEST_DB=pg, the kind's row of realm_schema in the data dir's
    database."""

    def __init__(self, data_dir, file):
        self.path = os.path.join(data_dir, file)
        self.kind = KINDS.get(file)
        self.url = pg_database_for(data_dir) if PG_MODE and self.kind else None
        # As the messages name it.
        self.where = f"{self.url} ({self.kind})" if self.url else self.path

    def sql(self, statement):
        if not self.url:
            return sql(self.path, statement)
        out = pg_session_cluster().psql(statement, db=self.url.rsplit("/", 1)[1])
        return [tuple(line.split("|")) for line in out.splitlines()]

    def versions(self):
        only = f" WHERE kind = '{self.kind}'" if self.url else ""
        return {k: int(v) for k, v in self.sql("SELECT kind, version FROM realm_schema" + only)}

    def cookie(self):
        """Changes when the schema or the version row does."""
        if not self.url:
            return self.sql("PRAGMA schema_version")
        return self.sql(f"SELECT xmin, version FROM realm_schema WHERE kind = '{self.kind}'")


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
    reg, queue = Kept(data, "realm.db").versions(), Kept(data, "events.db").versions()
    assert list(reg) == ["registry"] and reg["registry"] >= 1, reg
    assert list(queue) == ["queue"] and queue["queue"] >= (1 if PG_MODE else 2), queue
    # With REALM_TEST_DB=pg the registry and the queue are in the database only.
    assert os.path.exists(os.path.join(data, "realm.db")) == (not PG_MODE)
    assert os.path.exists(os.path.join(data, "events.db")) == (not PG_MODE)
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
    f = Kept(data, file)
    known = f.versions()[kind]
    f.sql(f"UPDATE realm_schema SET version = {known + 5} WHERE kind = '{kind}'")
    cookie = f.cookie()

    p = serve(data)
    assert p.returncode == 1, (p.returncode, p.stderr)
    assert_no_sanitizer_report(p.stderr)
    want = (f"realm serve: {f.where}: schema version {known + 5} is newer than this realm "
            f"(knows up to {known}); upgrade realm")
    assert want in p.stderr.splitlines(), p.stderr
    assert "listening" not in p.stdout, p.stdout
    assert f.versions() == {kind: known + 5}
    assert f.cookie() == cookie  # nothing written

    # Only the version stood in the way: back at the known one, all is there.
    f.sql(f"UPDATE realm_schema SET version = {known} WHERE kind = '{kind}'")
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


@pytest.mark.sqlite_only  # SQLite files as the releases before realm_schema left them
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
