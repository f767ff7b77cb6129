#!/bin/sh
# with_pg.sh SOURCE_DIR PROGRAM [ARGS...] - runs PROGRAM with a throwaway
# PostgreSQL cluster (tests/integration/pg_util.py: initdb + pg_ctl on a free
# loopback port, as the postgres user when run as root) and
# REALM_TEST_PG_URL naming its database; stops and removes the cluster when
# PROGRAM ends, fails or the wrapper is interrupted (SIGINT/SIGTERM, as
# ctest's timeout sends). Exits with PROGRAM's status.
#
# The unit tests built with REALM_TEST_PG (test_store_pg, test_registry_pg)
# run through it under ctest. With REALM_TEST_PG_URL already set (a server
# of your own), PROGRAM runs against that database instead. Without
# PostgreSQL's server binaries this fails with pg_util's message
# (scripts/setup.sh --test installs postgresql-15): it never skips.
set -eu
src=$1
shift
if [ -n "${REALM_TEST_PG_URL:-}" ]; then
    exec "$@"
fi
exec /usr/bin/python3 -c '
import os, signal, subprocess, sys
sys.path.insert(0, os.path.join(sys.argv[1], "tests", "integration"))
from pg_util import PgCluster

def stop(signum, frame):
    raise SystemExit(128 + signum)  # unwinds through the cluster cleanup below

signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGINT, stop)
rc = 1
# fsync off: durability is not what these tests check, speed matters.
with PgCluster.running(fsync=False) as pg:
    env = dict(os.environ, REALM_TEST_PG_URL=pg.url)
    child = subprocess.Popen(sys.argv[2:], env=env)
    try:
        rc = child.wait()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
sys.exit(rc)
' "$src" "$@"
