/*
 * netstack.h - the user-mode network stack of one environment: slirp4netns
 * attached to the sandbox's own network namespace, so a function reaches
 * the outside world but never the host's loopback (docs/sandbox.md).
 *
 * DESIGN: every environment has a network namespace of its own (the
 * runtime API listens inside it, see realm_sandbox_netns_listen). With the
 * network allowed, slirp4netns gives it a tap device, an address
 * (10.0.2.100), a gateway and a DNS forwarder (10.0.2.3), and makes every
 * outbound connection from the host's side as an ordinary socket;
 * --disable-host-loopback refuses connections to 127.0.0.0/8 through the
 * gateway. slirp4netns runs as the environment's unprivileged host user
 * (through the trampoline, which gives it a /dev/net/tun node it may open
 * in a mount namespace of its own) and enters the namespace's owning user
 * namespace (NS_GET_USERNS on the network namespace: bwrap nests a second
 * user namespace for the sandbox's uid). It stops when we close the write
 * end of its --exit-fd pipe, or when the server dies (the pipe closes).
 * bwrap's child brings the namespace's `lo` up itself and fails if
 * something else did first (slirp4netns does), so the stack starts only
 * once `lo` is up (polled every millisecond on a socket in the namespace).
 * LIFETIME: start -> on_ready exactly once, later (ok or not) unless freed
 * first -> free. THREADS: loop thread only.
 */
#ifndef REALM_EXEC_NETSTACK_H
#define REALM_EXEC_NETSTACK_H

#include <stdint.h>
#include <uv.h>

typedef struct realm_netstack_s realm_netstack_t;

/* ok 1: the tap device is up and configured; 0: the stack failed. */
typedef void (*realm_netstack_ready_cb)(realm_netstack_t *ns, int ok, void *data);

typedef struct {
    const char *self_exe;   /* this binary, for the trampoline */
    const char *slirp_path; /* slirp4netns */
    int pid;                /* a process in the target network namespace (host pid) */
    uint32_t uid, gid;      /* host user it runs as (0: as we are) */
    int lo_fd; /* a socket in that namespace, owned by the stack from start on: it waits
                  until bwrap has brought `lo` up before it starts slirp4netns */
} realm_netstack_opts_t;

/* Starts it. Returns 0 and *out, or -1 with a message in err (no callback). */
int realm_netstack_start(uv_loop_t *loop, const realm_netstack_opts_t *o,
                         realm_netstack_ready_cb cb, void *data, realm_netstack_t **out,
                         char *err, size_t err_len);
/* Stops it (no callback after this) and frees it once its handles close. */
void realm_netstack_free(realm_netstack_t *ns);

/* The sandbox's /etc/resolv.conf with this stack: slirp's DNS forwarder. */
#define REALM_NETSTACK_RESOLV_CONF "nameserver 10.0.2.3\n"

#endif
