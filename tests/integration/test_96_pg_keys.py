"""Tenants and keys on PostgreSQL (docs/tenants.md, "Several servers on one
PostgreSQL database"): `realm keys create --db URL --server-key-file K` makes
a key in the database from anywhere; `realm serve --db URL --auth
--server-key-file K` (its own data dir) accepts it on the client WebSocket
and over SigV4 (boto3), and refuses it once `realm keys revoke --db URL`
revoked it; a server or a `realm keys` command with a missing or another
key file is refused with a message saying every server on one database
needs the same key file, and makes no key file. Key lookups never hold up
the event loop: with the keys table locked, only the requests that wait for
a key wait."""
import json
import os
import subprocess
import threading
import urllib.request

import pytest
from botocore.exceptions import ClientError

from conftest import Server, assert_no_sanitizer_report, finish, realm_bin
from fn_util import poll_until
from test_82_tenants import Conn, tenant_client, wrong_last, ws_bearer, ws_message_auth


def keys(*args):
    p = subprocess.run([realm_bin(), "keys", *args], capture_output=True, text=True, timeout=60)
    assert_no_sanitizer_report(p.stderr)
    return p


def serve_refused(*args, tmp):
    """`realm serve ARGS` that must exit at start: (exit code, stderr)."""
    p = subprocess.run([realm_bin(), "serve", "--port", "0", "--control-port", "0",
                        "--runtime-port", "0", "--metrics-port", "0",
                        "--data-dir", str(tmp / "refused-data"), *args],
                       capture_output=True, text=True, timeout=60)
    assert_no_sanitizer_report(p.stderr)
    return p.returncode, p.stderr


@pytest.fixture
def shared(pg_cluster, tmp_path):
    """A key made in the database by the CLI: (url, key file, key)."""
    key_file = tmp_path / "shared.key"
    p = keys("create", "--tenant", "acme", "--json", "--data-dir", str(tmp_path / "cli"),
             "--db", pg_cluster.url, "--server-key-file", str(key_file))
    assert p.returncode == 0, p.stderr
    k = json.loads(p.stdout)
    assert os.stat(key_file).st_mode & 0o777 == 0o600
    # The keys are in the database, not in the CLI's data dir.
    assert not os.path.exists(tmp_path / "cli" / "auth.db")
    return pg_cluster.url, key_file, k


def test_cli_key_works_on_a_server_of_the_database(shared):
    url, key_file, k = shared
    srv = Server("--db", url, "--auth", "--server-key-file", str(key_file))
    try:
        c, msgs, code = ws_message_auth(srv, k["api_key"])
        assert code is None and msgs[0]["type"] == "auth_success", (msgs, code)
        c.sock.close()
        lam = tenant_client(srv, k)
        assert lam.list_functions()["Functions"] == []
        bad = dict(k, secret_access_key=wrong_last(k["secret_access_key"]))
        with pytest.raises(ClientError) as e:
            tenant_client(srv, bad).list_functions()
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403

        # Listed and revoked from the database, by the CLI.
        p = keys("list", "--json", "--db", url, "--server-key-file", str(key_file))
        assert p.returncode == 0, p.stderr
        assert [x["key_id"] for x in json.loads(p.stdout)] == [k["key_id"]]
        p = keys("revoke", k["key_id"], "--db", url, "--server-key-file", str(key_file))
        assert p.returncode == 0, p.stderr

        def refused():
            try:
                tenant_client(srv, k).list_functions()
                return False
            except ClientError as err:
                return err.response["ResponseMetadata"]["HTTPStatusCode"] == 403

        poll_until(refused, 10, what="the revoked key refused over SigV4")
        c, msgs, code = ws_message_auth(srv, k["api_key"])
        assert code is not None, msgs
        c.sock.close()
    finally:
        finish(srv)


def test_missing_or_other_key_file_refused(shared, tmp_path):
    url, key_file, k = shared
    missing = tmp_path / "missing.key"
    rc, err = serve_refused("--db", url, "--auth", "--server-key-file", str(missing),
                            tmp=tmp_path)
    assert rc != 0
    assert "is missing" in err, err
    assert "every server on one database needs the same server key file" in err, err
    assert not missing.exists()
    # The default key file of a fresh data dir: not made either.
    rc, err = serve_refused("--db", url, "--auth", tmp=tmp_path)
    assert rc != 0 and "is missing" in err, err
    assert not (tmp_path / "refused-data" / "server.key").exists()

    other = tmp_path / "other.key"
    other.write_bytes(os.urandom(32))
    other.chmod(0o600)
    rc, err = serve_refused("--db", url, "--auth", "--server-key-file", str(other), tmp=tmp_path)
    assert rc != 0
    assert "is not the server key the keys in the database were made with" in err, err
    p = keys("list", "--db", url, "--server-key-file", str(other))
    assert p.returncode == 1 and "is not the server key" in p.stderr, p.stderr
    # The right one still works.
    p = keys("list", "--json", "--db", url, "--server-key-file", str(key_file))
    assert p.returncode == 0 and len(json.loads(p.stdout)) == 1, p.stderr


def test_help_names_the_shared_key_file():
    p = subprocess.run([realm_bin(), "serve", "--help"], capture_output=True, text=True,
                       timeout=30)
    assert p.returncode == 0
    assert "--server-key-file PATH" in p.stdout
    assert "every server on one postgresql:// --db needs a copy of the same file" in p.stdout
    p = keys("create", "--help")
    assert p.returncode == 0 and "--server-key-file PATH" in p.stdout and "--db URL" in p.stdout


def test_a_locked_key_table_holds_up_only_the_requests_that_wait_for_a_key(shared, pg_cluster):
    """Another session holds the keys table locked: a signed control request,
    a Bearer upgrade and an auth message wait for their keys, while the loop
    goes on serving a connection authenticated before, the metrics port and
    the unsigned /healthz. Unlocked, all three complete."""
    url, key_file, k = shared
    srv = Server("--db", url, "--auth", "--server-key-file", str(key_file))
    locker = None
    try:
        before = ws_bearer(srv, k["api_key"], tenant="acme")
        locker = subprocess.Popen(
            [pg_cluster._bin("psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", url],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        locker.stdin.write("BEGIN;\nLOCK TABLE keys IN ACCESS EXCLUSIVE MODE;\n\\echo locked\n")
        locker.stdin.flush()
        assert locker.stdout.readline().strip() == "locked"

        got = {}

        def run(name, fn):
            try:
                got[name] = fn()
            except Exception as e:  # pylint: disable=broad-except
                got[name] = e

        waiting = [
            threading.Thread(target=run, args=("control", lambda: tenant_client(srv, k)
                                                .list_functions()["Functions"])),
            threading.Thread(target=run, args=("bearer", lambda: Conn(srv.ports["client"],
                                                                      k["api_key"], timeout=60))),
            threading.Thread(target=run, args=("message", lambda: ws_message_auth(srv,
                                                                                  k["api_key"]))),
        ]
        for t in waiting:
            t.start()
        # The server's key store waits on the lock (one lookup at a time).
        poll_until(lambda: pg_cluster.psql(
            "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = 'keys'::regclass")
            != "0", 30, what="a key lookup waiting on the lock")

        # Meanwhile the loop serves everything that needs no key lookup.
        m = before.call_wait({"id": "h1", "function": "health", "params": {}})
        assert m["status"] == "complete", m
        with urllib.request.urlopen(f"http://127.0.0.1:{srv.ports['metrics']}/health",
                                    timeout=10) as r:
            assert r.status == 200
        with urllib.request.urlopen(f"http://127.0.0.1:{srv.ports['control']}/healthz",
                                    timeout=10) as r:
            assert r.status == 200 and r.read() == b"OK"
        assert all(t.is_alive() for t in waiting), got

        locker.stdin.write("COMMIT;\n")
        locker.stdin.close()
        assert locker.wait(timeout=30) == 0
        locker = None
        for t in waiting:
            t.join(timeout=60)
            assert not t.is_alive()
        assert got["control"] == [], got
        c = got["bearer"]
        assert not isinstance(c, Exception) and c.status == 101, got
        w = c.recv()
        assert w.get("status") == "connected" and w.get("tenant_id") == "acme", w
        c.sock.close()
        assert not isinstance(got["message"], Exception), got
        c, msgs, code = got["message"]
        assert code is None and msgs[0]["type"] == "auth_success", (msgs, code)
        c.sock.close()
        m = before.call_wait({"id": "h2", "function": "health", "params": {}})
        assert m["status"] == "complete", m
        before.sock.close()
    finally:
        if locker is not None:
            locker.kill()
            locker.wait()
        finish(srv)
