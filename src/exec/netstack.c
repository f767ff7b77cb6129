/*
 * netstack.c - slirp4netns for one environment (see netstack.h).
 */
#include "exec/netstack.h"

#include "base/alloc.h"
#include "base/log.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/nsfs.h>
#include <net/if.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

/* The child's fds: the namespaces, then slirp4netns' two pipes. */
#define NETNS_FD 3
#define USERNS_FD 4
#define READY_FD 5
#define EXIT_FD 6
#define LO_TRIES 2000 /* 1 ms apart: bwrap brings `lo` up at once */

struct realm_netstack_s {
    uv_process_t proc;
    uv_pipe_t ready; /* slirp writes "1" once configured */
    uv_pipe_t exit;  /* closing our end stops it */
    uv_timer_t wait; /* until bwrap has brought `lo` up */
    realm_netstack_ready_cb cb;
    void *data;
    realm_netstack_opts_t o;
    char *self_exe, *slirp_path;
    int nfd, ufd, lo_fd; /* the namespaces; a socket in the namespace */
    int tries;
    int open_handles;
    unsigned is_running : 1;
    unsigned is_told : 1;
    unsigned is_freed : 1;
};

static void release(realm_netstack_t *ns)
{
    if (ns->nfd >= 0) close(ns->nfd);
    if (ns->ufd >= 0) close(ns->ufd);
    if (ns->lo_fd >= 0) close(ns->lo_fd);
    ns->nfd = ns->ufd = ns->lo_fd = -1;
    free(ns->self_exe);
    free(ns->slirp_path);
    free(ns);
}

static void on_closed(uv_handle_t *h)
{
    realm_netstack_t *ns = h->data;
    if (--ns->open_handles == 0 && ns->is_freed && !ns->is_running) release(ns);
}

static void close_handle(realm_netstack_t *ns, uv_handle_t *h)
{
    if (uv_is_closing(h)) return;
    ns->open_handles++;
    uv_close(h, on_closed);
}

static void tell(realm_netstack_t *ns, int ok)
{
    if (ns->is_told || ns->is_freed) return;
    ns->is_told = 1;
    uv_read_stop((uv_stream_t *)&ns->ready);
    ns->cb(ns, ok, ns->data);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    static char one[16];
    buf->base = one;
    buf->len = sizeof(one);
}

static void on_ready(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    (void)buf;
    realm_netstack_t *ns = s->data;
    if (n > 0) tell(ns, 1);
    else if (n < 0) tell(ns, 0);
}

static void on_exit_cb(uv_process_t *p, int64_t status, int sig)
{
    realm_netstack_t *ns = p->data;
    ns->is_running = 0;
    if (ns->is_freed) ns->open_handles++; /* held until the closes below are queued */
    if (!ns->is_freed && (status != 0 || sig != 0))
        realm_warn("network stack of pid %d ended (status %lld, signal %d)", (int)p->pid,
                   (long long)status, sig);
    tell(ns, 0);
    close_handle(ns, (uv_handle_t *)&ns->proc);
    close_handle(ns, (uv_handle_t *)&ns->ready);
    close_handle(ns, (uv_handle_t *)&ns->exit);
    if (ns->is_freed && --ns->open_handles == 0) release(ns);
}

/* Starts slirp4netns; on failure tells the owner (later) that the stack failed. */
static void spawn_stack(realm_netstack_t *ns)
{
    char user[48], ready[24], exitfd[24], userns[40], netns[40];
    snprintf(user, sizeof(user), "%u:%u", (unsigned)ns->o.uid, (unsigned)ns->o.gid);
    snprintf(ready, sizeof(ready), "--ready-fd=%d", READY_FD);
    snprintf(exitfd, sizeof(exitfd), "--exit-fd=%d", EXIT_FD);
    snprintf(userns, sizeof(userns), "--userns-path=/proc/self/fd/%d", USERNS_FD);
    snprintf(netns, sizeof(netns), "/proc/self/fd/%d", NETNS_FD);
    const char *argv[24];
    size_t n = 0;
    argv[n++] = ns->self_exe;
    argv[n++] = "__spawn";
    /* As root, a tun node the unprivileged user may open (the host's may be
     * 0600); otherwise the host's own must do. */
    if (geteuid() == 0) argv[n++] = "--tun";
    if (ns->o.uid) {
        argv[n++] = "--user";
        argv[n++] = user;
    }
    argv[n++] = "--";
    argv[n++] = ns->slirp_path;
    argv[n++] = "--configure";
    argv[n++] = "--mtu=65520";
    argv[n++] = "--disable-host-loopback";
    argv[n++] = ready;
    argv[n++] = exitfd;
    argv[n++] = "--netns-type=path";
    argv[n++] = userns;
    argv[n++] = netns;
    argv[n++] = "tap0";
    argv[n] = NULL;

    uv_stdio_container_t stdio[7];
    stdio[0].flags = UV_IGNORE;
    stdio[1].flags = UV_IGNORE;
    stdio[2].flags = UV_INHERIT_FD; /* its complaints go to our log stream */
    stdio[2].data.fd = 2;
    stdio[NETNS_FD].flags = UV_INHERIT_FD;
    stdio[NETNS_FD].data.fd = ns->nfd;
    stdio[USERNS_FD].flags = UV_INHERIT_FD;
    stdio[USERNS_FD].data.fd = ns->ufd;
    stdio[READY_FD].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
    stdio[READY_FD].data.stream = (uv_stream_t *)&ns->ready;
    stdio[EXIT_FD].flags = UV_CREATE_PIPE | UV_READABLE_PIPE;
    stdio[EXIT_FD].data.stream = (uv_stream_t *)&ns->exit;
    uv_process_options_t po = {0};
    po.exit_cb = on_exit_cb;
    po.file = argv[0];
    po.args = (char **)argv;
    po.stdio = stdio;
    po.stdio_count = 7;
    char *no_env[] = {NULL};
    po.env = no_env;
    int rc = uv_spawn(ns->wait.loop, &ns->proc, &po);
    close(ns->nfd);
    close(ns->ufd);
    ns->nfd = ns->ufd = -1;
    if (rc != 0) {
        realm_error("network stack: spawn %s: %s", ns->slirp_path, uv_strerror(rc));
        close_handle(ns, (uv_handle_t *)&ns->ready);
        close_handle(ns, (uv_handle_t *)&ns->exit);
        tell(ns, 0);
        return;
    }
    ns->is_running = 1;
    uv_read_start((uv_stream_t *)&ns->ready, on_alloc, on_ready);
}

/* Is `lo` up in the namespace? bwrap's child adds 127.0.0.1 and brings it
 * up itself, and fails if the address is there already: slirp4netns, which
 * brings `lo` up too, must only start after that. */
static int lo_is_up(int fd)
{
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "lo");
    return ioctl(fd, SIOCGIFFLAGS, &ifr) == 0 && (ifr.ifr_flags & IFF_UP);
}

static void on_wait(uv_timer_t *t)
{
    realm_netstack_t *ns = t->data;
    if (ns->is_freed) return;
    if (!lo_is_up(ns->lo_fd) && ++ns->tries < LO_TRIES) return;
    uv_timer_stop(t);
    close(ns->lo_fd);
    ns->lo_fd = -1;
    spawn_stack(ns);
}

int realm_netstack_start(uv_loop_t *loop, const realm_netstack_opts_t *o,
                         realm_netstack_ready_cb cb, void *data, realm_netstack_t **out,
                         char *err, size_t err_len)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/ns/net", o->pid);
    int nfd = open(path, O_RDONLY | O_CLOEXEC);
    if (nfd < 0) {
        snprintf(err, err_len, "open %s: %s", path, strerror(errno));
        return -1;
    }
    /* The user namespace that owns the network namespace: bwrap's outer one. */
    int ufd = ioctl(nfd, NS_GET_USERNS);
    if (ufd < 0) {
        snprintf(err, err_len, "NS_GET_USERNS: %s", strerror(errno));
        close(nfd);
        return -1;
    }
    fcntl(ufd, F_SETFD, FD_CLOEXEC);
    realm_netstack_t *ns = realm_calloc(1, sizeof(*ns));
    ns->cb = cb;
    ns->data = data;
    ns->o = *o;
    ns->self_exe = realm_strdup(o->self_exe);
    ns->slirp_path = realm_strdup(o->slirp_path);
    ns->nfd = nfd;
    ns->ufd = ufd;
    ns->lo_fd = o->lo_fd;
    uv_pipe_init(loop, &ns->ready, 0);
    uv_pipe_init(loop, &ns->exit, 0);
    uv_timer_init(loop, &ns->wait);
    ns->proc.data = ns->ready.data = ns->exit.data = ns->wait.data = ns;
    uv_timer_start(&ns->wait, on_wait, 0, 1);
    *out = ns;
    return 0;
}

void realm_netstack_free(realm_netstack_t *ns)
{
    if (!ns || ns->is_freed) return;
    ns->is_freed = 1;
    close_handle(ns, (uv_handle_t *)&ns->wait);
    if (ns->is_running) {
        /* Closing the exit pipe asks it to stop; the kill makes sure. */
        close_handle(ns, (uv_handle_t *)&ns->exit);
        uv_process_kill(&ns->proc, SIGKILL);
        return; /* on_exit_cb closes the rest */
    }
    close_handle(ns, (uv_handle_t *)&ns->ready);
    close_handle(ns, (uv_handle_t *)&ns->exit);
}
