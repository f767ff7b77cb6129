/*
 * peer.c - which process is at the other end of a loopback TCP connection,
 * and is it in an environment's cgroup (see realm_sandbox_peer_in_group).
 *
 * DESIGN: TCP has no SO_PEERCRED. On loopback both ends live in the same
 * network namespace, so /proc/net/tcp lists the peer's socket too, with its
 * inode; a process holds that socket iff one of its /proc/PID/fd links reads
 * "socket:[inode]". Only the group's own processes are searched, so the cost
 * is one scan of /proc/net/tcp plus the fds of the environment's processes,
 * once per connection (runtime clients keep theirs alive).
 * THREADS: blocking reads of /proc; any thread.
 */
#include "sandbox/sandbox.h"

#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* The inode of the socket whose local end is `local` and remote is `remote`. */
static unsigned long find_inode(const struct sockaddr_in *local, const struct sockaddr_in *remote)
{
    FILE *f = fopen("/proc/net/tcp", "re");
    if (!f) return 0;
    char line[512];
    unsigned long inode = 0;
    if (!fgets(line, sizeof(line), f)) goto done; /* the header */
    while (fgets(line, sizeof(line), f)) {
        unsigned int la, lp, ra, rp, st;
        unsigned long ino;
        /* sl local rem st tx:rx tr:when retrnsmt uid timeout inode */
        if (sscanf(line, " %*d: %x:%x %x:%x %x %*x:%*x %*x:%*x %*x %*u %*u %lu", &la, &lp, &ra, &rp,
                   &st, &ino) != 6)
            continue;
        /* Addresses are the kernel's u32 as printed in host order. */
        if (la == local->sin_addr.s_addr && lp == ntohs(local->sin_port) &&
            ra == remote->sin_addr.s_addr && rp == ntohs(remote->sin_port)) {
            inode = ino;
            break;
        }
    }
done:
    fclose(f);
    return inode;
}

static int pid_holds(int pid, const char *want)
{
    char path[64], link[64];
    snprintf(path, sizeof(path), "/proc/%d/fd", pid);
    DIR *d = opendir(path);
    if (!d) return 0;
    int found = 0;
    struct dirent *de;
    while (!found && (de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.') continue;
        char fdpath[384];
        snprintf(fdpath, sizeof(fdpath), "%s/%s", path, de->d_name);
        ssize_t n = readlink(fdpath, link, sizeof(link) - 1);
        if (n <= 0) continue;
        link[n] = '\0';
        found = strcmp(link, want) == 0;
    }
    closedir(d);
    return found;
}

unsigned long realm_sandbox_peer_inode(int fd)
{
    struct sockaddr_in ours, theirs;
    socklen_t len = sizeof(ours);
    if (getsockname(fd, (struct sockaddr *)&ours, &len) != 0) return 0;
    len = sizeof(theirs);
    if (getpeername(fd, (struct sockaddr *)&theirs, &len) != 0) return 0;
    if (ours.sin_family != AF_INET || theirs.sin_family != AF_INET) return 0;
    /* The peer's socket: its local end is our remote end. */
    return find_inode(&theirs, &ours);
}

int realm_sandbox_group_holds(const realm_sandbox_group_t *g, unsigned long inode)
{
    char want[48];
    snprintf(want, sizeof(want), "socket:[%lu]", inode);
    const char *dir = NULL;
    for (int i = 0; i < REALM_SANDBOX_CG_COUNT && !dir; i++)
        dir = g->dirs[i];
    if (!dir) return -ENOENT; /* no group to vouch for anyone */
    char path[4200];
    snprintf(path, sizeof(path), "%s/cgroup.procs", dir);
    FILE *f = fopen(path, "re");
    if (!f) return -errno;
    int pid, found = 0;
    while (!found && fscanf(f, "%d", &pid) == 1)
        found = pid_holds(pid, want);
    fclose(f);
    return found;
}

int realm_sandbox_peer_in_group(const realm_sandbox_group_t *g, int fd)
{
    unsigned long inode = realm_sandbox_peer_inode(fd);
    if (!inode) return -ENOENT;
    return realm_sandbox_group_holds(g, inode);
}
