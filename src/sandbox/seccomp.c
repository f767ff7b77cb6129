/*
 * seccomp.c - the seccomp filter every execution environment runs under
 * (see sandbox.h, docs/sandbox.md).
 *
 * DESIGN: a deny list over a default-allow filter, as Docker's and Flatpak's
 * profiles are at heart: a Lambda runtime may use any ordinary syscall, but
 * nothing that administers the machine, changes namespaces, loads kernel code
 * or inspects other processes. Denied calls fail with EPERM rather than
 * killing the process, so runtimes that probe for a feature (Node's libuv,
 * Python's os module) fall back cleanly. Namespaces and capabilities are the
 * first wall; this filter is the second, for kernel attack surface that an
 * unprivileged user in a user namespace can still reach (unshare, keyrings,
 * bpf, userfaultfd, perf).
 *
 * clone3 gets ENOSYS: its flags are in memory that seccomp cannot read, so it
 * cannot be filtered for CLONE_NEWUSER; glibc (>= 2.34) then falls back to
 * clone, whose flags argument can be checked.
 *
 * Only the native architecture is added: a syscall through another ABI
 * (int 0x80, x32) hits libseccomp's bad-arch action, which kills.
 *
 * The program is built once into bytes (realm_sandbox_seccomp_build) and
 * copied into a fresh memfd per spawn, because bwrap reads --seccomp from the
 * fd's current offset and concurrent spawns must not share one.
 *
 * THREADS: any thread; no shared state.
 */
#include "sandbox/sandbox.h"

#include "sandbox/internal.h"

#include "base/alloc.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <seccomp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <unistd.h>

/* Fail with EPERM whatever the arguments. */
static const char *const denied_syscalls[] = {
    "mount",
    "umount",
    "umount2",
    "pivot_root",
    "move_mount",
    "open_tree",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "mount_setattr",
    "swapon",
    "swapoff",
    "reboot",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "keyctl",
    "add_key",
    "request_key",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "open_by_handle_at",
    "name_to_handle_at",
    "setns",
    "unshare",
    "acct",
    "quotactl",
    "quotactl_fd",
    "lookup_dcookie",
    "iopl",
    "ioperm",
    "syslog",
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "adjtimex",
    "sethostname",
    "setdomainname",
    "vhangup",
    "nfsservctl",
    "uselib",
    "_sysctl",
    /* io_uring: a large kernel surface with a history of privilege
     * escalations (Docker's default profile denies it too); libuv falls
     * back to its thread pool on EPERM. */
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
};

/* Any of these in clone's flags means a new namespace. */
static const unsigned long clone_ns_flags[] = {
    CLONE_NEWNS,  CLONE_NEWUTS, CLONE_NEWIPC,    CLONE_NEWUSER,
    CLONE_NEWPID, CLONE_NEWNET, CLONE_NEWCGROUP,
};

static int deny(scmp_filter_ctx ctx, const char *name, const char **err)
{
    int nr = seccomp_syscall_resolve_name(name);
    if (nr == __NR_SCMP_ERROR) return 0; /* not a syscall on this architecture */
    int rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), nr, 0);
    if (rc < 0 && err) *err = "seccomp_rule_add failed";
    return rc;
}

static int add_rules(scmp_filter_ctx ctx, const char **err)
{
    int rc;
    for (size_t i = 0; i < sizeof(denied_syscalls) / sizeof(denied_syscalls[0]); i++)
        if ((rc = deny(ctx, denied_syscalls[i], err)) < 0) return rc;

    /* clone(flags, ...) with a namespace flag: one rule per flag (rules OR). */
    for (size_t i = 0; i < sizeof(clone_ns_flags) / sizeof(clone_ns_flags[0]); i++) {
        rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(clone), 1,
                              SCMP_A0(SCMP_CMP_MASKED_EQ, clone_ns_flags[i], clone_ns_flags[i]));
        if (rc < 0) {
            if (err) *err = "seccomp_rule_add(clone) failed";
            return rc;
        }
    }
    int nr = seccomp_syscall_resolve_name("clone3");
    if (nr != __NR_SCMP_ERROR && (rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), nr, 0)) < 0) {
        if (err) *err = "seccomp_rule_add(clone3) failed";
        return rc;
    }

    /*
     * personality(): refuse every flag but UNAME26 (chiefly ADDR_NO_RANDOMIZE,
     * which turns ASLR off, READ_IMPLIES_EXEC and MMAP_PAGE_ZERO), but let the
     * 0xffffffff query through. libseccomp allows one comparison per argument
     * in a rule and rules OR together, so this is said bit by bit:
     *   - flag bit b (16..30, not UNAME26's) set while bit 31 is clear;
     *   - bit 31 set while some bit b (0..30) is clear, i.e. not the query.
     * The kernel reads the argument as 32 bits; the masks ignore the rest.
     */
    const uint64_t top = 0x80000000u;
    for (unsigned b = 0; b < 31; b++) {
        uint64_t bit = (uint64_t)1 << b;
        if (b >= 16 && bit != UNAME26) {
            rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(personality), 1,
                                  SCMP_A0(SCMP_CMP_MASKED_EQ, bit | top, bit));
            if (rc < 0) break;
        }
        rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(personality), 1,
                              SCMP_A0(SCMP_CMP_MASKED_EQ, bit | top, top));
        if (rc < 0) break;
    }
    if (rc < 0) {
        if (err) *err = "seccomp_rule_add(personality) failed";
        return rc;
    }
    return 0;
}

static int read_all(int fd, realm_buf_t *out)
{
    if (lseek(fd, 0, SEEK_SET) < 0) return -errno;
    for (;;) {
        realm_buf_reserve(out, 4096);
        ssize_t n = read(fd, out->data + out->len, 4096);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        if (n == 0) break;
        out->len += (size_t)n;
        out->data[out->len] = '\0';
    }
    return 0;
}

int realm_sandbox_seccomp_build(realm_buf_t *bpf, const char **err)
{
    int rc, fd = -1;
    const char *dummy;
    if (!err) err = &dummy;
    *err = NULL;

    if (seccomp_api_get() < 1) {
        *err = "the kernel or libseccomp has no seccomp filter support";
        return -ENOSYS;
    }
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
    if (!ctx) {
        *err = "seccomp_init failed";
        return -ENOMEM;
    }
    /* Keep the filter's own no_new_privs bit: bwrap sets it anyway. */
    if ((rc = add_rules(ctx, err)) < 0) goto fail;

    fd = memfd_create("realm-seccomp", MFD_CLOEXEC);
    if (fd < 0) {
        rc = -errno;
        *err = "memfd_create failed";
        goto fail;
    }
    if ((rc = seccomp_export_bpf(ctx, fd)) < 0) {
        *err = "seccomp_export_bpf failed";
        goto fail;
    }
    if ((rc = read_all(fd, bpf)) < 0) {
        *err = "reading the exported filter failed";
        goto fail;
    }
    rc = 0;
fail:
    if (fd >= 0) close(fd);
    seccomp_release(ctx);
    return rc;
}

int realm_sandbox_memfd(const char *name, const void *data, size_t len, int *fd_out)
{
    int fd = memfd_create(name, MFD_CLOEXEC);
    if (fd < 0) return -errno;
    const char *p = data;
    size_t off = 0;
    while (off < len) {
        ssize_t n = write(fd, p + off, len - off);
        if (n < 0) {
            if (errno == EINTR) continue;
            int rc = -errno;
            close(fd);
            return rc;
        }
        off += (size_t)n;
    }
    if (lseek(fd, 0, SEEK_SET) < 0) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    *fd_out = fd;
    return 0;
}

int realm_sandbox_seccomp_memfd(const void *bpf, size_t len, int *fd_out)
{
    return realm_sandbox_memfd("realm-seccomp", bpf, len, fd_out);
}
