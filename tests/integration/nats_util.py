"""A throwaway nats-server for the cluster tests (docs/cluster.md):
started on loopback with a free port (`-p -1`; the port is read from its log,
no sleeps), killed with SIGKILL, started again on the same port.

    with NatsServer.running() as n:
        n.url                         # 'nats://127.0.0.1:PORT'
        n.kill(); n.start()           # a crash, and the server back on its port
"""
import contextlib
import re
import shutil
import signal
import subprocess
import threading

LISTEN_RE = re.compile(r"Listening for client connections on 127\.0\.0\.1:(\d+)")
# Debian installs it in /usr/sbin, which a user's PATH may lack.
NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"


class NatsServer:
    def __init__(self):
        self.port = -1
        self.proc = None
        self.log = []

    def start(self, timeout=30):
        self.proc = subprocess.Popen([NATS_SERVER, "-a", "127.0.0.1", "-p", str(self.port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        got = threading.Event()

        def read(proc):
            # Keeps reading to the end: Go exits when its stderr is closed.
            for line in proc.stderr:
                self.log.append(line)
                m = LISTEN_RE.search(line)
                if m:
                    self.port = int(m.group(1))
                    got.set()
            got.set()

        threading.Thread(target=read, args=(self.proc,), daemon=True).start()
        if not got.wait(timeout) or self.proc.poll() is not None:
            raise RuntimeError("nats-server did not start:\n" + "".join(self.log))
        return self

    @property
    def url(self):
        return f"nats://127.0.0.1:{self.port}"

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    @classmethod
    @contextlib.contextmanager
    def running(cls):
        n = cls().start()
        try:
            yield n
        finally:
            n.stop()
