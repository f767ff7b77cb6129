"""Shared fixtures: start the real `realm serve` binary on ephemeral ports.

The binary is $REALM_BIN (make test points it at the sanitizer build), or
build/asan/realm, or build/realm. Each server gets its own temporary data
dir; its listening lines ("listening <name> <url>") tell us the ports.

What every test file shares lives here, once:
- Proc: a child process whose output is read line by line as it comes
  (Server below, test_90's bootstraps and test_92's model worker);
- Server, the `server` and `make_server` fixtures, and for module-scoped
  fixtures running() / finish(), all with the same teardown checks (a clean
  exit, no sanitizer report);
- lambda_client(): the one boto3 Lambda client factory (closed before its
  server stops);
- assert_no_sanitizer_report() for the output of a `realm` command;
- the PostgreSQL mode (REALM_TEST_DB=pg, `make integration-pg`): see below.

REALM_TEST_DB=pg runs the same tests with the registry in PostgreSQL: one
throwaway cluster for the whole session (pg_util.PgCluster, fsync off: the
functional suite does not test durability against a power loss, and a killed
Realm or an immediate stop of PostgreSQL keeps every commit either way; see
pg_util), and every server a test starts (Server, hence running(), `server`,
make_server, fn_util's servers) gets `--db URL` of a database of its own,
made with CREATE DATABASE when first needed. The database is keyed by the
server's data dir: a test that starts a server again on the same data dir (a
restart, a crash and recovery) finds the same database again, as it finds the
same files. A test that passes its own --db keeps it (`--db sqlite` asks for
SQLite explicitly). Tests marked sqlite_only (they open realm.db with sqlite3,
migrate SQLite files...) are deselected in this mode, not skipped: the summary
line counts them as deselected.
"""
import atexit
import contextlib
import itertools
import os
import re
import signal
import socket
import subprocess
import tempfile
import threading

import boto3
import pytest
from botocore.config import Config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LISTEN_RE = re.compile(r"^listening (\w+) \w+://(?:\[[^\]]+\]|[^:]+):(\d+)")


def realm_bin():
    env = os.environ.get("REALM_BIN")
    if env:
        return env
    for cand in ("build/asan/realm", "build/realm", "build/dev/realm"):
        path = os.path.join(ROOT, cand)
        if os.path.exists(path):
            return path
    raise RuntimeError("no realm binary: run make first or set REALM_BIN")


SANITIZER_REPORTS = ("AddressSanitizer", "LeakSanitizer", "runtime error:")


def assert_no_sanitizer_report(text):
    """text (a `realm` command's stderr) holds no ASan/LSan/UBSan report."""
    for report in SANITIZER_REPORTS:
        assert report not in text, text


class Proc:
    """A child process whose stdout and stderr (when piped) are read by
    threads, line by line as they come, so a full pipe never blocks it.
    lines[name] holds the decoded lines (newline kept), then None at EOF."""

    def __init__(self, cmd, env=None, cwd=None, stdin=None, stdout=True, preexec_fn=None):
        self.cond = threading.Condition()
        self.lines = {}
        self.proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdin=stdin,
                                     stdout=subprocess.PIPE if stdout else subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, preexec_fn=preexec_fn)
        names = ("stdout", "stderr") if stdout else ("stderr",)
        self.threads = []
        for name in names:
            self.lines[name] = []
            t = threading.Thread(target=self._drain, args=(name,), daemon=True)
            self.threads.append(t)
            t.start()

    def _drain(self, name):
        for raw in getattr(self.proc, name):
            with self.cond:
                self.lines[name].append(raw.decode("utf-8", "replace"))
                self.cond.notify_all()
        with self.cond:
            self.lines[name].append(None)  # end of stream
            self.cond.notify_all()

    def output(self, name="stdout"):
        """The lines so far (newline kept)."""
        with self.cond:
            return [line for line in self.lines[name] if line is not None]

    def text(self, name="stderr"):
        return "".join(self.output(name))

    def find_line(self, pred, name="stdout", timeout=30, start=0):
        """The first line from index start on for which pred is true, waiting
        up to timeout seconds for it; None when the stream ends or time runs out."""
        def find():
            return next((l for l in self.lines[name][start:] if l is not None and pred(l)), None)
        with self.cond:
            self.cond.wait_for(lambda: find() or None in self.lines[name], timeout)
            return find()

    def join(self, timeout=5):
        for t in self.threads:
            t.join(timeout)


# ---- the backend under test (REALM_TEST_DB) ---------------------------------------------

TEST_DB = os.environ.get("REALM_TEST_DB", "sqlite")
if TEST_DB not in ("sqlite", "pg"):
    raise RuntimeError(f"REALM_TEST_DB={TEST_DB!r}: sqlite (the default) or pg")
PG_MODE = TEST_DB == "pg"

_pg = None                 # the session's PgCluster, started by the first server needing it
_pg_dbs = {}               # absolute data dir -> that server's database URL
_pg_names = itertools.count(1)
_pg_lock = threading.Lock()


def pg_session_cluster():
    """The session's cluster (started on first use; stopped at the session's end)."""
    global _pg
    with _pg_lock:
        if _pg is None:
            from pg_util import PgCluster
            c = PgCluster(fsync=False)
            try:
                c.start()
            except BaseException:
                c.cleanup()
                raise
            _pg = c
            atexit.register(_pg_stop)  # also when the session dies before its finish hook
            _stop_cluster_on(signal.SIGTERM, signal.SIGHUP)
        return _pg


def _stop_cluster_on(*signals):
    """A pytest killed by these signals stops and removes the cluster first
    (atexit does not run on a signal's default action)."""
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in signals:
        previous = signal.getsignal(sig)
        if previous not in (signal.SIG_DFL, None):
            continue  # someone else handles it

        def handler(signum, frame, owner=os.getpid()):
            if os.getpid() == owner:  # not in a forked child
                _pg_stop()
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
        signal.signal(sig, handler)


def _pg_stop():
    global _pg
    with _pg_lock:
        c, _pg = _pg, None
    if c is not None:
        return c.cleanup()
    return []


def pg_database_for(data_dir):
    """The URL of data_dir's own database in the session's cluster, made on first use."""
    key = os.path.realpath(data_dir)
    cluster = pg_session_cluster()
    with _pg_lock:
        url = _pg_dbs.get(key)
        if url is None:
            url = cluster.create_database(f"realm_t{next(_pg_names)}")
            _pg_dbs[key] = url
        return url


def db_args(data_dir):
    """What `realm keys` needs besides --data-dir to work on the keys of the
    server that runs on data_dir: nothing on SQLite (auth.db is in the data
    dir); in PostgreSQL mode, that server's --db."""
    if TEST_DB != "pg":
        return []
    return ["--db", pg_database_for(data_dir)]


def has_db_flag(args):
    return any(a == "--db" or str(a).startswith("--db=") for a in args)


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "sqlite_only: the test looks at SQLite files itself (realm.db...); "
        "deselected when REALM_TEST_DB=pg")


def pytest_collection_modifyitems(config, items):
    if not PG_MODE:
        return
    keep, drop = [], []
    for item in items:
        (drop if item.get_closest_marker("sqlite_only") else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def pytest_report_header(config):
    return f"realm backend: {TEST_DB}" + (" (REALM_TEST_DB=pg: a session cluster, "
                                          "a database per server)" if PG_MODE else "")


def pytest_sessionfinish(session, exitstatus):
    left = _pg_stop()
    if left:  # a failure of the run, though every test passed
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        print(f"\nERROR: PostgreSQL processes left after the session (killed): {left}")


class Server(Proc):
    """A running `realm serve` with ports[name] for client/control/runtime/metrics.
    In PostgreSQL mode (REALM_TEST_DB=pg) it gets --db with its data dir's own
    database unless args hold a --db already; self.db is that URL (or None)."""

    def __init__(self, *args, data_dir=None, preexec_fn=None):
        self.tmp = tempfile.TemporaryDirectory(prefix="realm-test-")
        self.data_dir = data_dir or os.path.join(self.tmp.name, "data")
        self.db = None
        if PG_MODE and not has_db_flag(args):
            # A relative data dir is the server's, relative to its cwd (self.tmp).
            self.db = pg_database_for(os.path.join(self.tmp.name, self.data_dir))
            args = ("--db", self.db, *args)
        cmd = [realm_bin(), "serve", "--port", "0", "--control-port", "0",
               "--runtime-port", "0", "--metrics-port", "0",
               "--data-dir", self.data_dir, *args]
        super().__init__(cmd, cwd=self.tmp.name, preexec_fn=preexec_fn)
        self.ports = {}
        self.stdout_lines = []
        self.killed = False  # set by kill(): teardown then expects no clean exit
        # Read listening lines until all four are known (no sleeps).
        while len(self.ports) < 4:
            n = len(self.stdout_lines)
            line = self.find_line(lambda _: True, "stdout", timeout=None, start=n)
            if line is None:
                rc = self.proc.wait()
                self.join()
                raise RuntimeError(f"realm exited early ({rc}): {self.stderr}")
            self.stdout_lines.append(line)
            m = LISTEN_RE.match(line)
            if m:
                self.ports[m.group(1)] = int(m.group(2))

    @property
    def stderr(self):
        return self.text("stderr")

    @property
    def ws_url(self):
        return f"ws://127.0.0.1:{self.ports['client']}"

    def url(self, name, path="/"):
        return f"http://127.0.0.1:{self.ports[name]}{path}"

    def connect(self, name="client", timeout=10):
        s = socket.create_connection(("127.0.0.1", self.ports[name]), timeout=timeout)
        return s

    def signal(self, sig=signal.SIGTERM):
        self.proc.send_signal(sig)

    def kill(self):
        """SIGKILLs the server (a crash) and waits for it; the fixtures' teardown
        then does not require exit code 0 for this server."""
        self.killed = True
        self.proc.send_signal(signal.SIGKILL)
        rc = self.proc.wait(timeout=30)
        self.join(timeout=5)
        return rc

    def wait(self, timeout=30):
        rc = self.proc.wait(timeout=timeout)
        self.join(timeout=5)
        return rc

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.join(timeout=5)
        self.tmp.cleanup()
        return self.proc.returncode


def finish(s):
    """Stops s and asserts what every server fixture asserts: a clean exit
    (sanitizer reports make the exit code non-zero) unless the test killed it,
    and no sanitizer report."""
    rc = s.stop()
    assert rc == 0 or s.killed, f"realm exited with {rc}\n{s.stderr}"
    assert "ERROR: AddressSanitizer" not in s.stderr, s.stderr
    assert "runtime error:" not in s.stderr, s.stderr


@contextlib.contextmanager
def running(*flags, **kw):
    """A server for a module-scoped fixture: yields it, then stops and checks it."""
    s = Server(*flags, **kw)
    try:
        yield s
    finally:
        finish(s)


@pytest.fixture
def server():
    s = Server()
    yield s
    # A clean exit is part of every test: sanitizer reports make the exit code non-zero.
    finish(s)


@pytest.fixture
def make_server():
    """Factory for servers with extra flags: make_server('--max-message-bytes', '1024')."""
    started = []

    def make(*args, **kw):
        s = Server(*args, **kw)
        started.append(s)
        return s

    yield make
    for s in started:
        finish(s)


# ---- boto3 -----------------------------------------------------------------------------

REGION = "us-east-1"


def lambda_client(server, validate=True, *, akid="test", secret="test", retries=None,
                  connect_timeout=5, read_timeout=30, max_pool_connections=None):
    """A boto3 Lambda client for server's control port, closed before the
    server stops. validate=False lets values botocore itself refuses
    (Timeout 0, MemorySize 127) reach the server. retries defaults to
    {"max_attempts": 1}; {"total_max_attempts": 1} makes exactly one attempt
    per call (a 429 is seen as it is, not retried). connect_timeout None is
    botocore's default."""
    config = {"retries": retries or {"max_attempts": 1}, "read_timeout": read_timeout,
              "parameter_validation": validate}
    if connect_timeout is not None:
        config["connect_timeout"] = connect_timeout
    if max_pool_connections is not None:
        config["max_pool_connections"] = max_pool_connections
    client = boto3.session.Session().client(
        "lambda",
        endpoint_url=f"http://127.0.0.1:{server.ports['control']}",
        region_name=REGION,
        aws_access_key_id=akid,
        aws_secret_access_key=secret,
        config=Config(**config),
    )
    close_before_stop(server, client)
    return client


def close_before_stop(server, client):
    """Closes the server's clients before it stops: an idle keep-alive connection
    left in boto3's pool holds the server's graceful shutdown for ~2 s."""
    clients = server.__dict__.setdefault("_lambda_clients", [])
    if not clients:
        stop = server.stop

        def close_then_stop():
            for c in server._lambda_clients:
                c.close()
            return stop()

        server.stop = close_then_stop
    clients.append(client)


# ---- PostgreSQL ------------------------------------------------------------------------

@pytest.fixture
def pg_cluster():
    """A throwaway PostgreSQL cluster (pg_util.PgCluster: initdb, a free loopback
    port, trust auth, database `realm`), stopped and removed after the test."""
    from pg_util import PgCluster
    with PgCluster.running() as c:
        yield c
