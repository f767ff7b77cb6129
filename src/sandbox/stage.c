/*
 * stage.c - what root prepares in a spawned child before it becomes an
 * unprivileged host user and execs bubblewrap or the network stack (see
 * realm_sandbox_stage_apply in sandbox.h, docs/sandbox.md).
 *
 * DESIGN: an environment must never run as, or map to, a privileged host
 * uid, so bwrap runs as an unprivileged host user (one per tenant) and
 * maps the sandbox's uid to that user only. An unprivileged bwrap resolves
 * every bind source with the user's own rights, and a data dir below
 * /root (0700) is out of its reach. So the child, still root, makes a
 * private mount namespace, mounts a small tmpfs on /tmp there and binds
 * every source into it (from O_PATH descriptors opened before /tmp is
 * covered, so sources under /tmp still work); bwrap then binds the staged
 * paths. The same place holds the environment's /tmp disk (a loop-mounted
 * ext4 image of EphemeralStorage size, so /tmp is disk, not memory charged
 * to the function), a generated resolv.conf, and, for the network stack,
 * a /dev/net/tun node the unprivileged user may open. All of it lives in
 * the child's mount namespace and disappears with its last process; the
 * image file is unlinked once the loop device holds it.
 * THREADS: a single-threaded child before exec; nothing here runs in the
 * server.
 */
#include "sandbox/sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/loop.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#define LOOP_TRIES 32
#define COPY_CHUNK (1u << 20)

static int fail(char *err, size_t len, const char *what, const char *path)
{
    int e = errno;
    snprintf(err, len, "%s %s: %s", what, path ? path : "", strerror(e));
    return -1;
}

/* ---- the scratch disk ---- */

static const char *mkfs_path(void)
{
    static const char *const cands[] = {"/usr/sbin/mkfs.ext4", "/sbin/mkfs.ext4"};
    for (size_t i = 0; i < sizeof(cands) / sizeof(cands[0]); i++)
        if (access(cands[i], X_OK) == 0) return cands[i];
    return NULL;
}

int realm_sandbox_scratch_usable(void)
{
    return geteuid() == 0 && mkfs_path() && access("/dev/loop-control", R_OK | W_OK) == 0;
}

/* An empty ext4 file system of mb MiB, sparse, made once per size. */
static int make_template(const char *dir, uint64_t mb, char *path, size_t path_len, char *err,
                         size_t err_len)
{
    snprintf(path, path_len, "%s/ext4-%llu.img", dir, (unsigned long long)mb);
    if (access(path, R_OK) == 0) return 0;
    const char *mkfs = mkfs_path();
    if (!mkfs) {
        errno = ENOENT;
        return fail(err, err_len, "mkfs.ext4", "");
    }
    char tmp[4300];
    snprintf(tmp, sizeof(tmp), "%.4200s.%d", path, (int)getpid());
    int fd = open(tmp, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0600);
    if (fd < 0) return fail(err, err_len, "create", tmp);
    /* ext4's own metadata takes ~2%: the image is larger, so that at least
     * mb MiB are free for files. */
    if (ftruncate(fd, (off_t)((mb + mb / 32 + 4) * 1024 * 1024)) != 0) {
        close(fd);
        unlink(tmp);
        return fail(err, err_len, "size", tmp);
    }
    close(fd);
    /* No journal (scratch space), inode tables written lazily, no
     * reserved blocks: the whole size is the function's. */
    pid_t pid = fork();
    if (pid < 0) return fail(err, err_len, "fork", "");
    if (pid == 0) {
        int null = open("/dev/null", O_RDWR);
        if (null >= 0) {
            dup2(null, 0);
            dup2(null, 1);
        }
        char *const argv[] = {(char *)mkfs, "-q", "-F", "-O", "^has_journal", "-E",
                              "lazy_itable_init=1,nodiscard", "-m", "0", tmp, NULL};
        char *const env[] = {NULL};
        execve(mkfs, argv, env);
        _exit(127);
    }
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        unlink(tmp);
        snprintf(err, err_len, "mkfs.ext4 %s failed (status %d)", tmp, st);
        return -1;
    }
    if (rename(tmp, path) != 0) { /* another child may have won: fine */
        unlink(tmp);
        if (access(path, R_OK) != 0) return fail(err, err_len, "rename", path);
    }
    return 0;
}

/* Copies the allocated parts of src into dst (dst is as large, all hole). */
static int copy_sparse(int src, int dst)
{
    off_t end = lseek(src, 0, SEEK_END);
    off_t at = 0;
    char *buf = malloc(COPY_CHUNK);
    if (!buf) return -1;
    while (at < end) {
        off_t data = lseek(src, at, SEEK_DATA);
        if (data < 0) break; /* ENXIO: only a hole is left */
        off_t hole = lseek(src, data, SEEK_HOLE);
        if (hole < 0) hole = end;
        for (off_t o = data; o < hole;) {
            size_t want = (size_t)(hole - o) < COPY_CHUNK ? (size_t)(hole - o) : COPY_CHUNK;
            ssize_t n = pread(src, buf, want, o);
            if (n <= 0 || pwrite(dst, buf, (size_t)n, o) != n) {
                free(buf);
                return -1;
            }
            o += n;
        }
        at = hole;
    }
    free(buf);
    return 0;
}

/* A fresh image of the template, on a loop device; returns the device's fd. */
static int attach_image(const char *dir, uint64_t mb, char *dev, size_t dev_len, char *err,
                        size_t err_len)
{
    char tpl[4200], img[4200];
    if (make_template(dir, mb, tpl, sizeof(tpl), err, err_len) != 0) return -1;
    snprintf(img, sizeof(img), "%s/env-%d.img", dir, (int)getpid());
    unlink(img); /* a stale one of an earlier process with our pid */
    int src = open(tpl, O_RDONLY | O_CLOEXEC);
    if (src < 0) return fail(err, err_len, "open", tpl);
    int fd = open(img, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0) {
        close(src);
        return fail(err, err_len, "create", img);
    }
    /* The loop device holds the file from now on: the name can go at once,
     * and the space returns when the device is released. */
    unlink(img);
    struct stat ts;
    if (fstat(src, &ts) != 0 || ftruncate(fd, ts.st_size) != 0 || copy_sparse(src, fd) != 0) {
        close(src);
        close(fd);
        return fail(err, err_len, "copy", tpl);
    }
    close(src);
    int ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
    if (ctl < 0) {
        close(fd);
        return fail(err, err_len, "open", "/dev/loop-control");
    }
    int lfd = -1;
    for (int t = 0; t < LOOP_TRIES && lfd < 0; t++) {
        int n = ioctl(ctl, LOOP_CTL_GET_FREE);
        if (n < 0) break;
        snprintf(dev, dev_len, "/dev/loop%d", n);
        int l = open(dev, O_RDWR | O_CLOEXEC);
        if (l < 0) continue;
        struct loop_config cfg;
        memset(&cfg, 0, sizeof(cfg));
        cfg.fd = (uint32_t)fd;
        /* Detached when unmounted; direct I/O keeps the image's pages out
         * of the page cache a second time. */
        cfg.info.lo_flags = LO_FLAGS_AUTOCLEAR | LO_FLAGS_DIRECT_IO;
        int rc = ioctl(l, LOOP_CONFIGURE, &cfg);
        if (rc != 0 && errno == EINVAL) {
            cfg.info.lo_flags = LO_FLAGS_AUTOCLEAR;
            rc = ioctl(l, LOOP_CONFIGURE, &cfg);
        }
        if (rc == 0) {
            lfd = l;
        } else {
            close(l); /* EBUSY: another process took it first */
        }
    }
    int e = errno;
    close(ctl);
    close(fd);
    if (lfd < 0) {
        errno = e;
        return fail(err, err_len, "attach a loop device for", img);
    }
    return lfd;
}

/* Mounts the attached device lfd (closed here) at the stage's scratch_dst. */
static int mount_scratch(const realm_sandbox_stage_t *st, int lfd, const char *dev, char *err,
                         size_t err_len)
{
    if (mkdir(st->scratch_dst, 0755) != 0 && errno != EEXIST) {
        close(lfd);
        return fail(err, err_len, "mkdir", st->scratch_dst);
    }
    int rc = mount(dev, st->scratch_dst, "ext4", MS_NOSUID | MS_NODEV | MS_NOATIME, "");
    int e = errno;
    close(lfd); /* the mount holds the device now */
    if (rc != 0) {
        errno = e;
        return fail(err, err_len, "mount", dev);
    }
    char lf[4200];
    snprintf(lf, sizeof(lf), "%s/lost+found", st->scratch_dst);
    rmdir(lf); /* an empty /tmp, as on Lambda */
    if (chown(st->scratch_dst, st->uid, st->gid) != 0 || chmod(st->scratch_dst, 01777) != 0)
        return fail(err, err_len, "chown", st->scratch_dst);
    return 0;
}

/* ---- the rest of the stage ---- */

static int write_file(const char *path, const char *text, char *err, size_t err_len)
{
    int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);
    if (fd < 0) return fail(err, err_len, "create", path);
    size_t len = strlen(text);
    int ok = write(fd, text, len) == (ssize_t)len;
    close(fd);
    if (!ok) return fail(err, err_len, "write", path);
    return 0;
}

/* A tun node of our own, usable by the unprivileged user, over /dev/net. */
static int private_tun(char *err, size_t err_len)
{
    if (mount("tmpfs", "/dev/net", "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755,size=16k") != 0)
        return fail(err, err_len, "mount tmpfs on", "/dev/net");
    if (mknod("/dev/net/tun", S_IFCHR | 0666, makedev(10, 200)) != 0 ||
        chmod("/dev/net/tun", 0666) != 0)
        return fail(err, err_len, "mknod", "/dev/net/tun");
    return 0;
}

static int drop_to(uint32_t uid, uint32_t gid, char *err, size_t err_len)
{
    if (setgroups(0, NULL) != 0) return fail(err, err_len, "setgroups", "");
    if (setresgid(gid, gid, gid) != 0) return fail(err, err_len, "setresgid", "");
    if (setresuid(uid, uid, uid) != 0) return fail(err, err_len, "setresuid", "");
    /* No way back. */
    if (setuid(0) == 0 || geteuid() != uid || getegid() != gid) {
        errno = EPERM;
        return fail(err, err_len, "drop privileges", "");
    }
    return 0;
}

int realm_sandbox_stage_apply(const realm_sandbox_stage_t *st, char *err, size_t err_len)
{
    int needs_ns = st->n_binds || st->scratch_dir || st->file_dst || st->tun;
    int fds[REALM_SANDBOX_STAGE_MAX_BINDS];
    int lfd = -1;
    char dev[64] = "";
    size_t nfd = 0;
    if (st->n_binds > REALM_SANDBOX_STAGE_MAX_BINDS) {
        errno = E2BIG;
        return fail(err, err_len, "stage", "binds");
    }
    if (needs_ns) {
        if (unshare(CLONE_NEWNS) != 0) return fail(err, err_len, "unshare", "mount namespace");
        /* Nothing we mount here reaches the host's namespace. */
        if (mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL) != 0)
            return fail(err, err_len, "make / a slave", "");
        /* Sources and the disk first: /tmp is covered next. */
        if (st->scratch_dir) {
            lfd = attach_image(st->scratch_dir, st->scratch_mb, dev, sizeof(dev), err, err_len);
            if (lfd < 0) return -1;
        }
        for (; nfd < st->n_binds; nfd++) {
            fds[nfd] = open(st->binds[nfd].src, O_PATH | O_CLOEXEC);
            if (fds[nfd] < 0) {
                int e = errno;
                for (size_t i = 0; i < nfd; i++)
                    close(fds[i]);
                if (lfd >= 0) close(lfd);
                errno = e;
                return fail(err, err_len, "open", st->binds[nfd].src);
            }
        }
        if (mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777,size=64k") != 0 ||
            mkdir(REALM_SANDBOX_STAGE_DIR, 0755) != 0) {
            int e = errno;
            for (size_t i = 0; i < nfd; i++)
                close(fds[i]);
            if (lfd >= 0) close(lfd);
            errno = e;
            return fail(err, err_len, "stage in", "/tmp");
        }
    }
    int rc = 0;
    for (size_t i = 0; i < st->n_binds && rc == 0; i++) {
        const char *dst = st->binds[i].dst;
        struct stat s;
        char src[64];
        snprintf(src, sizeof(src), "/proc/self/fd/%d", fds[i]);
        if (fstat(fds[i], &s) != 0) {
            rc = fail(err, err_len, "stat", st->binds[i].src);
        } else if (S_ISDIR(s.st_mode) ? mkdir(dst, 0755) != 0
                                      : write_file(dst, "", err, err_len) != 0) {
            rc = fail(err, err_len, "make", dst);
        } else if (mount(src, dst, NULL, MS_BIND | MS_REC, NULL) != 0) {
            rc = fail(err, err_len, "bind", st->binds[i].src);
        }
    }
    for (size_t i = 0; i < nfd; i++)
        close(fds[i]);
    if (rc == 0 && lfd >= 0) {
        rc = mount_scratch(st, lfd, dev, err, err_len);
    } else if (lfd >= 0) {
        close(lfd);
    }
    if (rc == 0 && st->file_dst) rc = write_file(st->file_dst, st->file_text, err, err_len);
    if (rc == 0 && st->tun) rc = private_tun(err, err_len);
    if (rc == 0 && st->uid) rc = drop_to(st->uid, st->gid, err, err_len);
    return rc;
}
