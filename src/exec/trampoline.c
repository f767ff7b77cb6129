/*
 * trampoline.c - `realm __spawn`, the program the server spawns for every
 * sandboxed process (see realm_spawn_trampoline_main in spawn.h): it joins
 * the environment's cgroups, applies the stage as root, becomes the
 * environment's unprivileged host user and execs bwrap (or slirp4netns).
 *
 * It links only libc and src/sandbox/stage.c, so that it can also be its
 * own small program, realm-spawn (src/realm_spawn.c): a cold start execs
 * it once or twice, and the full realm binary takes ~8 ms longer to load.
 * THREADS: a single-threaded child before exec.
 */
#include "exec/spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int parse_u32(const char *s, char stop, uint32_t *out, const char **end)
{
    char *e;
    errno = 0;
    unsigned long v = strtoul(s, &e, 10);
    if (errno || e == s || *e != stop || v > UINT32_MAX) return -1;
    *out = (uint32_t)v;
    if (end) *end = e;
    return 0;
}

int realm_spawn_trampoline_main(int argc, char **argv)
{
    char pid[24];
    snprintf(pid, sizeof(pid), "%d", (int)getpid());
    realm_sandbox_stage_bind_t binds[REALM_SANDBOX_STAGE_MAX_BINDS];
    realm_sandbox_stage_t st;
    memset(&st, 0, sizeof(st));
    st.binds = binds;
    int i = 0;
    for (; i < argc && strcmp(argv[i], "--") != 0; i++) {
        const char *a = argv[i];
        int left = argc - i - 1;
        if (strcmp(a, "--cgroup") == 0 && left >= 1) {
            const char *f = argv[++i];
            int fd = open(f, O_WRONLY | O_CLOEXEC);
            if (fd < 0 || write(fd, pid, strlen(pid)) < 0) {
                fprintf(stderr, "realm __spawn: %s: %s\n", f, strerror(errno));
                return 127;
            }
            close(fd);
        } else if (strcmp(a, "--bind") == 0 && left >= 2 &&
                   st.n_binds < REALM_SANDBOX_STAGE_MAX_BINDS) {
            binds[st.n_binds].src = argv[++i];
            binds[st.n_binds++].dst = argv[++i];
        } else if (strcmp(a, "--scratch") == 0 && left >= 3) {
            uint32_t mb;
            st.scratch_dir = argv[++i];
            if (parse_u32(argv[++i], '\0', &mb, NULL) != 0 || mb == 0) goto usage;
            st.scratch_mb = mb;
            st.scratch_dst = argv[++i];
        } else if (strcmp(a, "--file") == 0 && left >= 2) {
            st.file_dst = argv[++i];
            st.file_text = argv[++i];
        } else if (strcmp(a, "--tun") == 0) {
            st.tun = 1;
        } else if (strcmp(a, "--user") == 0 && left >= 1) {
            const char *e;
            if (parse_u32(argv[++i], ':', &st.uid, &e) != 0 ||
                parse_u32(e + 1, '\0', &st.gid, NULL) != 0 || st.uid == 0 || st.gid == 0)
                goto usage;
        } else {
            goto usage;
        }
    }
    if (i + 1 >= argc) {
        fprintf(stderr, "realm __spawn: no program after --\n");
        return 127;
    }
    char err[512];
    if (realm_sandbox_stage_apply(&st, err, sizeof(err)) != 0) {
        fprintf(stderr, "realm __spawn: %s\n", err);
        return 127;
    }
    char *no_env[] = {NULL};
    execve(argv[i + 1], argv + i + 1, no_env);
    fprintf(stderr, "realm __spawn: %s: %s\n", argv[i + 1], strerror(errno));
    return 127;
usage:
    fprintf(stderr, "realm __spawn: bad argument near '%s'\n", i < argc ? argv[i] : "");
    return 127;
}
