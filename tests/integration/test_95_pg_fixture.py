"""The throwaway PostgreSQL cluster the PostgreSQL tests stand on
(pg_util.PgCluster, the pg_cluster fixture): it starts on a free loopback
port, takes connections with the URL it hands out, keeps a committed row
across an immediate stop (a crash of PostgreSQL) and a restart, and leaves
no process and no directory behind.

The client is psql from the same Debian package as the server
(postgresql-15, installed by scripts/setup.sh --test): no Python driver is
assumed."""
import os
import socket

from pg_util import DB_NAME, DB_USER, PgCluster


def test_starts_on_loopback_and_serves_the_url(pg_cluster):
    pg = pg_cluster
    assert pg.url == f"postgresql://{DB_USER}@127.0.0.1:{pg.port}/{DB_NAME}"
    assert pg.psql("SELECT current_user || ' ' || current_database()") == f"{DB_USER} {DB_NAME}"
    # Only loopback: the server says so, and the port answers there.
    assert pg.psql("SHOW listen_addresses") == "127.0.0.1"
    assert pg.psql("SHOW fsync") == "on"
    socket.create_connection(("127.0.0.1", pg.port), timeout=5).close()
    # Run as root, the server runs as the postgres user.
    if os.geteuid() == 0:
        uid = os.stat(f"/proc/{pg.postmaster_pid()}").st_uid
        assert uid != 0, "the postmaster runs as root"


def test_immediate_stop_keeps_committed_rows(pg_cluster):
    pg = pg_cluster
    pg.psql("CREATE TABLE t (id int PRIMARY KEY, v text)")
    pg.psql("INSERT INTO t VALUES (1, 'committed')")
    # An open, uncommitted transaction at the crash is lost; the commit is not.
    before = pg.postmaster_pid()
    pg.stop("immediate")
    assert pg.processes() == [], pg.processes()
    url = pg.url
    pg.start()
    assert pg.postmaster_pid() != before
    assert pg.url == url  # the same port again (nobody took it meanwhile)
    assert pg.psql("SELECT v FROM t WHERE id = 1") == "committed"
    # The log records that it recovered rather than started clean.
    with open(pg.log, errors="replace") as f:
        assert "not properly shut down" in f.read()
    pg.psql("INSERT INTO t VALUES (2, 'after')")
    assert pg.psql("SELECT count(*) FROM t") == "2"


def test_fast_stop_leaves_nothing():
    pg = PgCluster(fsync=False)
    try:
        pg.start()
        pg.psql("SELECT 1", db="postgres")
        assert pg.psql("SHOW fsync", db="postgres") == "off"
        pm = pg.postmaster_pid()
        assert pm in pg.processes()
        assert len(pg.processes()) > 1  # the postmaster and its children
        data = pg.data
    finally:
        left = pg.cleanup()
    assert left == []
    assert not os.path.exists(data)
    assert pg.processes() == []


def test_a_taken_port_is_replaced():
    """The race between finding a free port and postgres binding it: when the
    port is taken, start() picks another."""
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 0)
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    pg = PgCluster(fsync=False)
    try:
        pg.port = holder.getsockname()[1]  # as if someone took it after we looked
        pg.start()
        assert pg.port != holder.getsockname()[1]
        assert pg.psql("SELECT 1", db="postgres") == "1"
    finally:
        holder.close()
        assert pg.cleanup() == []
