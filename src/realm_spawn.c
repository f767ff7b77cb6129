/*
 * realm_spawn.c - realm-spawn, the server's trampoline as a program of its
 * own: `realm-spawn __spawn ARGS...` does what `realm __spawn ARGS...` does
 * (exec/trampoline.c), without loading the server's libraries. The server
 * uses it when it sits next to the realm binary.
 */
#include "exec/spawn.h"

#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "__spawn") != 0) {
        fprintf(stderr, "realm-spawn: the server's helper; run as `realm-spawn __spawn ...`\n");
        return 127;
    }
    return realm_spawn_trampoline_main(argc - 2, argv + 2);
}
