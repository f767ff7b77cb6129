"""A throwaway PostgreSQL cluster for tests and benchmarks (issue 16).

    with PgCluster.running() as pg:       # initdb + start on a free loopback port
        pg.url                           # postgresql://realm@127.0.0.1:PORT/realm
        pg.psql("SELECT 1")              # '1'
        pg.stop("immediate")             # a crash of PostgreSQL (no shutdown checkpoint)
        pg.start()                       # recovery from the WAL, same data dir
    # stopped (fast), no process left, directory removed

Debian's server binaries (postgresql-15: /usr/lib/postgresql/15/bin, or
$REALM_PG_BINDIR) do the work; scripts/setup.sh --test installs them. Nothing
here needs a Python driver: psql (from the same directory) is the client.

- initdb into a new temporary directory (under $REALM_PG_TMP or the system's
  temp dir): data/, sock/ (the Unix socket), postgres.log. Authentication is
  trust, and only loopback can reach the server: listen_addresses=127.0.0.1
  and the Unix socket sits in the cluster's own directory (mode 0700).
  The bootstrap superuser is `realm`, and a database `realm` is made.
- Run as root (the usual CI container), every server command runs as the
  `postgres` user (`runuser -u postgres --`; initdb and postgres refuse
  root) and the directory is chowned to it; run as anyone else, as that user.
- The port: a free loopback port is found by binding port 0, then given to
  postgres (-p). Another process may take it in between: when the log says
  the bind failed, start tries again on a new port (a few times). A restart
  tries the previous port first, so `url` stays the same unless it was taken
  meanwhile (read `url` again after start()).
- Readiness: `pg_ctl start -w` returns once the postmaster reports "ready"
  in postmaster.pid; then pg_isready is polled (bounded, 30 s) on the TCP
  port the tests use. No sleep stands for synchronisation.
- fsync: ON by default, as in production (the commits a test measures or
  counts cost what they cost on a real server). fsync=False (`-c fsync=off`)
  is for tests where durability is not under test and speed matters. Note
  that neither failure the issue's tests cause -- kill -9 of Realm, and
  `pg_ctl stop -m immediate` (the postmaster and its children quit without a
  checkpoint) -- loses the operating system's page cache, so both recover
  every commit with fsync off too; only a power loss or a kernel crash would
  tell the two apart, and no test here makes one.
- Stop: `pg_ctl stop -m fast` (or immediate for crash tests), then a
  bounded poll until no process of the cluster is left (pg_ctl returns when
  postmaster.pid is gone, a moment before the postmaster exits); cleanup() also checks that no process of the cluster
  is left (the postmaster's pid, its children, `pgrep -f DATADIR`), killing
  any with SIGKILL as a last resort, then removes the directory.
"""
import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time

PG_USER = "postgres"      # the OS user the server runs as when we are root
DB_USER = "realm"         # the cluster's superuser (initdb -U)
DB_NAME = "realm"
READY_TIMEOUT = 30        # seconds: pg_ctl -w and the pg_isready poll, each
START_ATTEMPTS = 5        # ports tried when another process takes ours


def pg_bindir():
    """The directory of initdb/pg_ctl/postgres/psql: $REALM_PG_BINDIR, else the
    newest /usr/lib/postgresql/*/bin (Debian), else the one on PATH."""
    env = os.environ.get("REALM_PG_BINDIR")
    if env:
        return env
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(p.split("/")[-3]) if p.split("/")[-3].isdigit() else 0)
    if found:
        return os.path.dirname(found[-1])
    initdb = shutil.which("initdb")
    if initdb:
        return os.path.dirname(initdb)
    raise RuntimeError("PostgreSQL server binaries not found (initdb): "
                       "scripts/setup.sh --test installs postgresql-15, "
                       "or set REALM_PG_BINDIR")


def free_port():
    """A loopback port free right now (another process may take it before
    postgres binds it: start() retries on a bind failure)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgCluster:
    def __init__(self, fsync=True, settings=None, cpus=None):
        """fsync: see the module's notes. settings: extra {"name": value}
        given as -c name=value. cpus: a taskset CPU list ("1") the server
        and its children are pinned to (benchmarks), or None."""
        self.bindir = pg_bindir()
        self.fsync = fsync
        self.settings = dict(settings or {})
        self.cpus = cpus
        self.as_root = os.geteuid() == 0
        base = os.environ.get("REALM_PG_TMP") or tempfile.gettempdir()
        self.dir = tempfile.mkdtemp(prefix="realm-pg-", dir=base)
        self.data = os.path.join(self.dir, "data")
        self.sock = os.path.join(self.dir, "sock")
        self.log = os.path.join(self.dir, "postgres.log")
        self.port = None
        self.pids = set()   # the postmaster and every child seen (checked at cleanup)
        self.running = False
        os.chmod(self.dir, 0o700)
        os.mkdir(self.sock, 0o700)
        if self.as_root:
            pw = pwd.getpwnam(PG_USER)
            for p in (self.dir, self.sock):
                os.chown(p, pw.pw_uid, pw.pw_gid)
            r = self._run(["test", "-w", self.dir], check=False)
            if r.returncode != 0:
                raise RuntimeError(f"{self.dir}: not writable by {PG_USER} (a parent directory "
                                   "is closed to it): set REALM_PG_TMP to a directory it can reach")
        self._run([self._bin("initdb"), "-D", self.data, "-U", DB_USER, "-A", "trust",
                   "-E", "UTF8", "--locale=C", "--no-instructions"]
                  + ([] if fsync else ["--no-sync"]))

    # ---- commands ----------------------------------------------------------------

    def _bin(self, name):
        return os.path.join(self.bindir, name)

    def _as_server(self, cmd):
        """cmd as the server's OS user (and pinned to self.cpus when set)."""
        if self.cpus is not None:
            cmd = ["taskset", "-c", str(self.cpus)] + cmd
        return (["runuser", "-u", PG_USER, "--"] + cmd) if self.as_root else cmd

    def _run(self, cmd, check=True, timeout=120):
        # cwd: the cluster's directory, which the server's user can enter.
        r = subprocess.run(self._as_server(cmd), cwd=self.dir, capture_output=True, text=True,
                           timeout=timeout)
        if check and r.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} exited with {r.returncode}:\n{r.stdout}{r.stderr}")
        return r

    def _log_text(self, offset=0):
        try:
            with open(self.log, "r", errors="replace") as f:
                f.seek(offset)
                return f.read()
        except FileNotFoundError:
            return ""

    def _log_size(self):
        try:
            return os.path.getsize(self.log)
        except FileNotFoundError:
            return 0

    # ---- life --------------------------------------------------------------------

    def start(self):
        """Starts the server (after initdb, or after a stop of any mode: an
        immediate stop is recovered from the WAL here) and waits until it
        accepts connections on 127.0.0.1:port. Returns self."""
        assert not self.running, "already running"
        port = self.port or free_port()
        for attempt in range(START_ATTEMPTS):
            opts = [f"-p {port}", f"-k {self.sock}", "-c listen_addresses=127.0.0.1"]
            if not self.fsync:
                opts.append("-c fsync=off")
            opts += [f"-c {k}={v}" for k, v in self.settings.items()]
            offset = self._log_size()
            r = self._run([self._bin("pg_ctl"), "start", "-D", self.data, "-l", self.log, "-w",
                           "-t", str(READY_TIMEOUT), "-o", " ".join(opts)], check=False,
                          timeout=READY_TIMEOUT + 30)
            if r.returncode == 0:
                self.port = port
                break
            log = self._log_text(offset)
            if "could not bind" in log or "Address already in use" in log:
                port = free_port()  # taken since we looked: another one
                continue
            raise RuntimeError(f"pg_ctl start exited with {r.returncode}:\n{r.stdout}{r.stderr}\n"
                               f"--- {self.log}:\n{log}")
        else:
            raise RuntimeError(f"pg_ctl start: no free port after {START_ATTEMPTS} attempts")
        self.running = True
        self._wait_ready()
        self._note_pids()
        return self

    def _wait_ready(self):
        """Polls pg_isready on the TCP port (bounded): 0 accepting, 1 rejecting
        (starting up), 2 no response, 3 bad parameters."""
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            r = subprocess.run([self._bin("pg_isready"), "-q", "-h", "127.0.0.1", "-p",
                                str(self.port), "-d", "postgres", "-U", DB_USER, "-t", "5"])
            if r.returncode == 0:
                return
            if r.returncode == 3 or time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL on port {self.port} not ready "
                                   f"(pg_isready {r.returncode}):\n{self._log_text()}")
            time.sleep(0.02)  # the poll's period, bounded by the deadline above

    def postmaster_pid(self):
        """The postmaster's pid (postmaster.pid's first line), or None."""
        try:
            with open(os.path.join(self.data, "postmaster.pid")) as f:
                return int(f.readline().strip())
        except (FileNotFoundError, ValueError):
            return None

    def _note_pids(self):
        pm = self.postmaster_pid()
        if pm:
            self.pids.add(pm)
            self.pids.update(_children(pm))

    def stop(self, mode="fast"):
        """pg_ctl stop -m mode (fast: clean shutdown; immediate: a crash, the
        next start recovers). Waits until the postmaster has exited."""
        assert mode in ("smart", "fast", "immediate"), mode
        if not self.running:
            return
        self._note_pids()
        self._run([self._bin("pg_ctl"), "stop", "-D", self.data, "-m", mode, "-w", "-t",
                   str(READY_TIMEOUT)], timeout=READY_TIMEOUT + 30)
        self.running = False
        # pg_ctl returns once postmaster.pid is gone; the postmaster removes it
        # on its way out, so it may still be exiting: wait (bounded) for that.
        deadline = time.monotonic() + READY_TIMEOUT
        while self.processes() and time.monotonic() < deadline:
            time.sleep(0.01)  # the poll's period, bounded by the deadline

    def restart(self, mode="fast"):
        self.stop(mode)
        return self.start()

    def processes(self):
        """Pids of this cluster's processes still alive: the postmaster and
        children seen while it ran, and whatever `pgrep -f DATADIR` finds."""
        alive = {p for p in self.pids if _alive(p)}
        r = subprocess.run(["pgrep", "-f", self.data], capture_output=True, text=True)
        alive.update(int(p) for p in r.stdout.split())
        return sorted(alive)

    def cleanup(self):
        """Stops the server if running (fast, then immediate if that fails),
        checks that no process of it is left (SIGKILL as a last resort, and
        then an error), and removes the directory. Returns the pids that had
        to be killed (an empty list when all went well)."""
        try:
            if self.running:
                try:
                    self.stop("fast")
                except Exception:
                    self.stop("immediate")
        finally:
            left = self.processes()
            self.left_detail = subprocess.run(["ps", "-o", "pid,ppid,stat,cmd", "-p",
                                               ",".join(map(str, left))],
                                              capture_output=True, text=True).stdout if left else ""
            for p in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p, signal.SIGKILL)
            shutil.rmtree(self.dir, ignore_errors=True)
        return left

    @classmethod
    @contextlib.contextmanager
    def running(cls, **kw):
        """A started cluster with database `realm`; stopped and removed after,
        failing when a process of it was left behind."""
        c = cls(**kw)
        try:
            c.start()
            c.psql(f"CREATE DATABASE {DB_NAME}", db="postgres")
            yield c
        finally:
            left = c.cleanup()
        assert not left, f"PostgreSQL processes left after stop: {left}: {c.left_detail}"

    # ---- clients -----------------------------------------------------------------

    def url_for(self, db=DB_NAME):
        return f"postgresql://{DB_USER}@127.0.0.1:{self.port}/{db}"

    @property
    def url(self):
        return self.url_for(DB_NAME)

    def create_database(self, name):
        """A new empty database (one per server when several share the cluster)."""
        self.psql(f'CREATE DATABASE "{name}"', db="postgres")
        return self.url_for(name)

    def psql(self, sql, db=DB_NAME, check=True):
        """Runs sql with psql (-X: no psqlrc, ON_ERROR_STOP, unaligned tuples
        only) and returns its output without the final newline."""
        r = subprocess.run([self._bin("psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                            "-d", self.url_for(db), "-c", sql],
                           capture_output=True, text=True, timeout=60,
                           env={**os.environ, "PGCONNECT_TIMEOUT": "10"})
        if check and r.returncode != 0:
            raise RuntimeError(f"psql exited with {r.returncode}: {r.stderr}")
        return r.stdout.rstrip("\n") if check else r


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def _children(pid):
    r = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return {int(p) for p in r.stdout.split()}
