/*
 * netns.c - a listening socket inside a sandbox's private network
 * namespace (see realm_sandbox_netns_listen in sandbox.h).
 *
 * DESIGN: an environment without the host's network cannot reach the
 * runtime API on the host's loopback. Instead of a forwarding process in
 * every sandbox, Realm makes the runtime API's socket *inside* the
 * sandbox's namespace: setns(2) switches only the calling thread, so a
 * short-lived thread enters the namespace and binds and listens on
 * 127.0.0.1:PORT there; the socket stays in that namespace and the loop
 * thread accepts on it like any other. Only processes of that namespace
 * (the environment's) can connect to it. `lo` is bwrap's to set up (its
 * child does it at the same time, and fails if the address is there
 * already), so the socket is bound with IP_FREEBIND: it takes connections
 * once bwrap has brought `lo` up, before the command runs.
 * THREADS: any thread; blocks while the helper thread runs.
 */
#include "sandbox/sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct {
    int ns_fd;
    int port;
    int fd;  /* result */
    int err; /* negative errno */
} job_t;

static void *run(void *arg)
{
    job_t *j = arg;
    j->fd = -1;
    if (setns(j->ns_fd, CLONE_NEWNET) != 0) {
        j->err = -errno;
        return NULL;
    }
    int s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s < 0) {
        j->err = -errno;
        return NULL;
    }
    int one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    setsockopt(s, IPPROTO_IP, IP_FREEBIND, &one, sizeof(one));
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)j->port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(s, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(s, 64) != 0) {
        j->err = -errno;
        close(s);
        return NULL;
    }
    j->fd = s;
    return NULL;
}

int realm_sandbox_netns_listen(int pid, int port, int *fd_out)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/ns/net", pid);
    job_t j = {.ns_fd = open(path, O_RDONLY | O_CLOEXEC), .port = port, .fd = -1};
    if (j.ns_fd < 0) return -errno;
    pthread_t t;
    int rc = pthread_create(&t, NULL, run, &j);
    if (rc != 0) {
        close(j.ns_fd);
        return -rc;
    }
    pthread_join(t, NULL);
    close(j.ns_fd);
    if (j.fd < 0) return j.err ? j.err : -EIO;
    *fd_out = j.fd;
    return 0;
}
