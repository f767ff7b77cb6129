"""`realm serve --db` (issue 16): where the function registry lives.

`--db postgresql://…` puts the registry in that database and nowhere else
(no realm.db in the data dir), names the database in the log without the
password, and two servers on one database share their functions; `--db
sqlite` (the default) keeps it in DATA_DIR/realm.db; an unreachable
database or an unknown value stops the server at start with a message.

These tests choose their own --db, so they run the same on both backends
of the suite (REALM_TEST_DB); the PostgreSQL ones use the session's cluster
(conftest.pg_session_cluster), with databases of their own."""
import os
import subprocess
import uuid

from conftest import (assert_no_sanitizer_report, lambda_client, pg_session_cluster, realm_bin)
from lambda_util import create, node_zip
from pg_util import free_port


def new_database():
    """(url, name) of a new empty database in the session's cluster."""
    name = "realm_db_" + uuid.uuid4().hex[:12]
    return pg_session_cluster().create_database(name), name


def serve_exits(tmp_path, *args):
    """`realm serve` expected to refuse to start."""
    p = subprocess.run([realm_bin(), "serve", "--port", "0", "--control-port", "0",
                        "--runtime-port", "0", "--metrics-port", "0",
                        "--data-dir", str(tmp_path / "data"), *args],
                       capture_output=True, text=True, timeout=60)
    assert_no_sanitizer_report(p.stderr)
    return p


def test_the_registry_is_in_the_database_only(make_server):
    url, name = new_database()
    # A password in the URL (trust auth ignores it) never reaches the log.
    with_password = url.replace("realm@", "realm:s3cret-pw@")
    s = make_server("--db", with_password)
    lam = lambda_client(s)
    create(lam, "in-pg", node_zip("in-pg"), Description="here")
    assert f"storage: {url}" in s.stderr, s.stderr
    assert "s3cret-pw" not in s.stderr
    assert not os.path.exists(os.path.join(s.data_dir, "realm.db"))
    assert pg_session_cluster().psql("SELECT name FROM functions", db=name) == "in-pg"
    assert int(pg_session_cluster().psql(
        "SELECT version FROM realm_schema WHERE kind = 'registry'", db=name)) >= 1
    # The queue too (issue 16): no events.db either.
    assert not os.path.exists(os.path.join(s.data_dir, "events.db"))


def test_two_servers_on_one_database_share_functions(make_server):
    url, _ = new_database()
    a = make_server("--db", url)
    b = make_server("--db", url)
    la, lb = lambda_client(a), lambda_client(b)
    create(la, "made-by-a", node_zip("a"), Description="from a")
    # b has its own data dir, and sees a's function (and could run its code: the
    # package comes from the database; test_97).
    assert lb.get_function_configuration(FunctionName="made-by-a")["Description"] == "from a"
    assert [f["FunctionName"] for f in lb.list_functions()["Functions"]] == ["made-by-a"]
    lb.update_function_configuration(FunctionName="made-by-a", Description="changed by b")
    assert la.get_function_configuration(FunctionName="made-by-a")["Description"] == "changed by b"


def test_sqlite_is_the_data_dir_file(make_server):
    s = make_server("--db", "sqlite")
    create(lambda_client(s), "in-file", node_zip())
    assert os.path.exists(os.path.join(s.data_dir, "realm.db"))
    assert f"storage: sqlite in {s.data_dir}" in s.stderr, s.stderr


def test_an_unreachable_database_stops_the_server(tmp_path):
    port = free_port()  # nothing listens there
    p = serve_exits(tmp_path, "--db", f"postgresql://realm:s3cret-pw@127.0.0.1:{port}/nowhere")
    assert p.returncode == 1, (p.returncode, p.stderr)
    assert f"postgresql://realm@127.0.0.1:{port}/nowhere" in p.stderr, p.stderr
    assert "s3cret-pw" not in p.stderr + p.stdout
    assert "listening" not in p.stdout


def test_an_unknown_db_value_is_refused(tmp_path):
    p = serve_exits(tmp_path, "--db", "mysql://x/y")
    assert p.returncode == 1, (p.returncode, p.stderr)
    assert "--db: 'mysql://x/y' is neither sqlite nor a postgresql:// URL" in p.stderr, p.stderr
