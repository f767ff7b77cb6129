"""The two error types that need the server under pressure:
TooManyRequestsException (more code packages at once than --max-package-jobs)
and ServiceException (storage failing: the database's write lock held by
another process longer than the server waits for it; with REALM_TEST_DB=pg,
the database refusing the write)."""
import io
import json
import os
import socket
import sqlite3
import base64
import zipfile

from conftest import PG_MODE, pg_session_cluster
from lambda_util import code_sha256, create, expect_error, lambda_client, node_zip


def big_zip(tag):
    """A few MB of incompressible data: unpacking it takes a while."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr("index.js", f"exports.handler = async () => '{tag}';\n")
        for i in range(32):
            z.writestr(f"blob{i}.bin", os.urandom(512 * 1024))
    return buf.getvalue()


def raw_create(name, zip_bytes):
    body = json.dumps({"FunctionName": name, "Runtime": "nodejs20.x", "Handler": "index.handler",
                       "Role": "arn:aws:iam::000000000000:role/x",
                       "Code": {"ZipFile": base64.b64encode(zip_bytes).decode()}}).encode()
    head = (f"POST /2015-03-31/functions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    return head + body


def read_response(s):
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:])}
    return status, headers, json.loads(body) if body else None


def raw_update_code(name, zip_bytes):
    body = json.dumps({"ZipFile": base64.b64encode(zip_bytes).decode()}).encode()
    head = (f"PUT /2015-03-31/functions/{name}/code HTTP/1.1\r\nHost: x\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"Connection: close\r\n\r\n").encode()
    return head + body


def test_too_many_packages_at_once_is_429(make_server):
    s = make_server("--max-package-jobs", "1")
    lam = lambda_client(s)
    create(lam, "busy", node_zip())
    # A big code update takes the only job slot; while its package is being
    # unpacked (observed as LastUpdateStatus InProgress), a create is refused.
    c1 = socket.create_connection(("127.0.0.1", s.ports["control"]), timeout=60)
    c1.sendall(raw_update_code("busy", big_zip("update")))
    while lam.get_function_configuration(FunctionName="busy")["LastUpdateStatus"] != "InProgress":
        pass
    c2 = socket.create_connection(("127.0.0.1", s.ports["control"]), timeout=60)
    c2.sendall(raw_create("other", node_zip()))
    status, headers, body = read_response(c2)
    assert status == 429, (status, headers, body)
    assert read_response(c1)[0] == 200
    c1.close()
    c2.close()
    assert headers["x-amzn-errortype"] == "TooManyRequestsException", headers
    assert headers["retry-after"] == "1", headers
    assert headers.get("x-amzn-requestid"), headers
    assert body["Type"] == "User" and "retry" in body["message"].lower(), body
    # The refused create left nothing: the name is free, and a retry works.
    assert [f["FunctionName"] for f in lam.list_functions()["Functions"]] == ["busy"]
    create(lam, "other", node_zip())


class WritesRefused:
    """Makes the server's registry refuse writes while in the with block: on
    SQLite another process holds realm.db's write lock (longer than the busy
    timeout); on PostgreSQL (REALM_TEST_DB=pg) a trigger makes every write
    of versions fail (the server's sessions do not wait on a lock forever)."""

    def __init__(self, server):
        self.server = server

    def _psql(self, sql):
        pg_session_cluster().psql(sql, db=self.server.db.rsplit("/", 1)[1])

    def __enter__(self):
        if PG_MODE:
            self._psql("CREATE FUNCTION test_refuse() RETURNS trigger LANGUAGE plpgsql AS "
                       "$$ BEGIN RAISE EXCEPTION 'test: writes refused'; END $$;"
                       "CREATE TRIGGER test_refuse BEFORE INSERT OR UPDATE OR DELETE ON versions"
                       " FOR EACH ROW EXECUTE FUNCTION test_refuse()")
        else:
            self.db = sqlite3.connect(os.path.join(self.server.data_dir, "realm.db"), timeout=0)
            self.db.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        return self

    def __exit__(self, *exc):
        if PG_MODE:
            self._psql("DROP TRIGGER test_refuse ON versions; DROP FUNCTION test_refuse()")
        else:
            self.db.rollback()
            self.db.close()


def test_storage_failure_is_service_exception(make_server):
    s = make_server()
    lam = lambda_client(s)
    create(lam, "locked", node_zip())
    with WritesRefused(s):
        expect_error(lambda: lam.update_function_configuration(FunctionName="locked", Timeout=9),
                     "ServiceException", 500)
        # Reads go on (WAL): the old configuration is intact.
        assert lam.get_function_configuration(FunctionName="locked")["Timeout"] == 3
    # Once the lock is gone, the same update works.
    assert lam.update_function_configuration(FunctionName="locked", Timeout=9)["Timeout"] == 9


def test_an_update_cut_by_kill_9_does_not_hold_the_function(make_server, tmp_path):
    """A server killed while a code update is in flight, started again on the
    same data: the update is gone, the old code stands, and the function takes
    the next update at once (SQLite: the entry in flight died with the
    process; PostgreSQL: the next server on this machine drops the entry of
    the dead process instead of waiting for it to expire)."""
    data = str(tmp_path / "data")
    s1 = make_server(data_dir=data)
    lam = lambda_client(s1)
    before = node_zip("before")
    create(lam, "cut", before)
    c = socket.create_connection(("127.0.0.1", s1.ports["control"]), timeout=60)
    c.sendall(raw_update_code("cut", big_zip("during")))
    while lam.get_function_configuration(FunctionName="cut")["LastUpdateStatus"] != "InProgress":
        pass
    s1.kill()
    c.close()

    s2 = make_server(data_dir=data)
    lam = lambda_client(s2)
    cfg = lam.get_function_configuration(FunctionName="cut")
    assert cfg["CodeSha256"] == code_sha256(before), cfg  # killed mid-update: the old code
    assert cfg["LastUpdateStatus"] == "Successful", cfg
    after = node_zip("after")
    assert lam.update_function_code(FunctionName="cut", ZipFile=after)["CodeSha256"] == \
        code_sha256(after)
