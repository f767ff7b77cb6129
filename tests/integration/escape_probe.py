"""The attacker's side of the escape suite (test_83_escape.py): every attempt
a deployed function makes to act on the host, run from inside a real
environment. Shipped in each test package as probe.py; Python functions and
the `provided` bootstrap run all of it, Node functions run the syscall part
(`python3 probe.py --syscalls`, JSON on stdin and stdout) beside their own
native checks. Each attempt records "ok" when it succeeded and an error name
when it did not; the test decides what must fail.

Nothing here may change the host when the sandbox holds: writes only go
where the sandbox refuses them, and the test compares the host's state
before and after.
"""
import ctypes
import errno
import json
import os
import socket
import sys

# Host-global sysctls an attacker would change (core_pattern runs a program as
# real root on a crash), and namespaced ones a mapped root could change.
SYSCTLS = {
    "/proc/sys/kernel/core_pattern": "|/var/task/evil %p",
    "/proc/sys/kernel/modprobe": "/var/task/evil",
    "/proc/sys/kernel/hostname": "escaped",
    "/proc/sys/kernel/shmmax": "1024",
    "/proc/sys/kernel/msgmax": "1024",
    "/proc/sys/kernel/pid_max": "4096",
    "/proc/sys/vm/overcommit_memory": "2",
    "/proc/sys/net/ipv4/ip_forward": "1",
    "/proc/sys/fs/mqueue/queues_max": "1",
    "/proc/sysrq-trigger": "h",
}

# Host paths that must not exist inside.
HOST_PATHS = ["/etc/shadow", "/etc/passwd-", "/root", "/home", "/sys", "/boot", "/var/lib",
              "/run/realm", "/proc/1/root/etc/shadow"]

# Where nothing may be written.
RO_PATHS = ["/escape", "/usr/escape", "/etc/escape", "/var/task/escape", "/opt/escape",
            "/var/escape", "/dev/escape", "/proc/escape"]


def err_name(e):
    return errno.errorcode.get(e.errno, str(e.errno)) if isinstance(e, OSError) else type(e).__name__


def proc_writable():
    """Every procfs file outside our own process that opens for writing."""
    found = []
    for root, dirs, files in os.walk("/proc"):
        if root == "/proc":
            dirs[:] = [d for d in dirs if not d.isdigit() and d not in ("self", "thread-self")]
        for f in files:
            p = os.path.join(root, f)
            try:
                fd = os.open(p, os.O_WRONLY | os.O_NONBLOCK | os.O_NOCTTY)
            except OSError:
                continue
            os.close(fd)
            found.append(p)
    return found


def sysctl_writes():
    out = {}
    for path, value in SYSCTLS.items():
        try:
            with open(path, "w") as f:
                f.write(value)
            out[path] = "ok"
        except OSError as e:
            out[path] = err_name(e)
    return out


def connect(host, port, timeout=2.0):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect((host, port))
        return "connected"
    except socket.timeout:
        return "timeout"
    except OSError as e:
        return err_name(e)
    finally:
        s.close()


def connect_abstract(name):
    """A Unix socket in the abstract namespace (per network namespace)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(2)
    try:
        s.connect("\0" + name)
        return "connected"
    except OSError as e:
        return err_name(e)
    finally:
        s.close()


def listening_ports():
    """Local ports in LISTEN state in /proc/net/tcp{,6}: what this network
    namespace shows."""
    ports = set()
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    if parts[3] == "0A":
                        ports.add(int(parts[1].rsplit(":", 1)[1], 16))
        except OSError:
            pass
    return sorted(ports)


def status():
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("Uid", "Gid", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs",
                     "Seccomp", "Groups"):
                out[k] = v.strip()
    return out


def id_map(name):
    with open(f"/proc/self/{name}") as f:
        return [[int(x) for x in line.split()] for line in f if line.strip()]


def ro_writes():
    out = {}
    for p in RO_PATHS:
        try:
            with open(p, "w") as f:
                f.write("x")
            out[p] = "ok"
        except OSError as e:
            out[p] = err_name(e)
    return out


def tmp_write():
    try:
        with open("/tmp/probe", "w") as f:
            f.write("x")
        os.unlink("/tmp/probe")
        return "ok"
    except OSError as e:
        return err_name(e)


def syscalls():
    """Kernel interfaces the sandbox denies; "ok" means the call worked."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long

    def call(fn, *args):
        ctypes.set_errno(0)
        r = fn(*args)
        if r >= 0:
            return "ok"
        e = ctypes.get_errno()
        return errno.errorcode.get(e, str(e))

    out = {}
    out["unshare_user"] = call(libc.unshare, 0x10000000)
    out["unshare_mount"] = call(libc.unshare, 0x00020000)
    out["unshare_net"] = call(libc.unshare, 0x40000000)
    out["mount_tmpfs"] = call(libc.mount, b"none", b"/tmp", b"tmpfs", 0, None)
    out["ptrace_traceme"] = call(libc.ptrace, 0, 0, None, None)
    out["ptrace_attach_1"] = call(libc.ptrace, 16, 1, None, None)
    out["bpf"] = call(libc.syscall, 321, 0, None, 0)
    out["perf_event_open"] = call(libc.syscall, 298, None, 0, -1, -1, 0)
    out["keyctl"] = call(libc.syscall, 250, 0, 0, 0, 0, 0)
    out["setns"] = call(libc.syscall, 308, 0, 0)
    out["init_module"] = call(libc.syscall, 175, None, 0, b"")
    out["kexec_load"] = call(libc.syscall, 246, 0, 0, None, 0)
    out["userfaultfd"] = call(libc.syscall, 323, 0)
    out["io_uring_setup"] = call(libc.syscall, 425, 1, ctypes.create_string_buffer(120))
    out["setuid_0"] = call(libc.setuid, 0)
    out["chroot"] = call(libc.chroot, b"/tmp")
    out["sethostname"] = call(libc.sethostname, b"escaped", 7)
    out["reboot"] = call(libc.reboot, 0x4321FEDC)  # LINUX_REBOOT_CMD_CAD_OFF: harmless if allowed
    for name, fam, typ, proto in (("raw_socket", socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP),
                                  ("packet_socket", socket.AF_PACKET, socket.SOCK_RAW, 0)):
        try:
            socket.socket(fam, typ, proto).close()
            out[name] = "ok"
        except OSError as e:
            out[name] = err_name(e)
    return out


def probe(event):
    """Everything, for Python and provided functions."""
    r = {"runtime": "python"}
    r["uid_map"] = id_map("uid_map")
    r["gid_map"] = id_map("gid_map")
    r["status"] = status()
    r["proc_writable"] = proc_writable()
    r["sysctl_writes"] = sysctl_writes()
    r["connects"] = {f"{h}:{p}": connect(h, p) for h, p in event.get("targets", [])}
    r["outbound"] = {f"{h}:{p}": connect(h, p, 5.0) for h, p in event.get("outbound", [])}
    for name in event.get("abstract", []):
        r["connects"]["@" + name] = connect_abstract(name)
    r["listening"] = listening_ports()
    r["host_paths"] = {p: os.path.lexists(p) for p in HOST_PATHS + event.get("host_paths", [])}
    r["ro_writes"] = ro_writes()
    r["tmp_write"] = tmp_write()
    r["syscalls"] = syscalls()
    return r


if __name__ == "__main__" and "--syscalls" in sys.argv:
    json.dump(syscalls(), sys.stdout)
