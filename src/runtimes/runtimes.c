/*
 * runtimes.c - the runtime table (see runtimes.h).
 *
 * The only file in src/ that names runtimes. A row's `.install` is read by
 * scripts/setup.sh with grep: keep `.install =` and its quoted package on one
 * line.
 */
#include "runtimes/runtimes.h"

#include <stdio.h>
#include <string.h>

/* Our bootstraps (runtimes/<dir>/<file>, bound at /opt). */
#define NODE_DIR "node"
#define NODE_BOOT "bootstrap.js"
#define PYTHON_DIR "python"
#define PYTHON_BOOT "bootstrap.py"

#define NODE(n, alias)                                                                             \
    {                                                                                              \
        .name = n, .aliases = {alias, NULL}, .dir = NODE_DIR, .bootstrap = NODE_BOOT,              \
        .argv = {"/usr/bin/node", REALM_RUNTIMES_SANDBOX_DIR "/" NODE_BOOT, NULL},                 \
        .env = {"NODE_PATH=/opt/node_modules:/var/runtime/node_modules", NULL},                    \
        .install = "nodejs", .needs_handler = 1, .binds_node_modules = 1,                          \
    }
#define PYTHON(n, alias)                                                                           \
    {                                                                                              \
        .name = n, .aliases = {alias, NULL}, .dir = PYTHON_DIR, .bootstrap = PYTHON_BOOT,          \
        .argv = {"/usr/bin/python3", REALM_RUNTIMES_SANDBOX_DIR "/" PYTHON_BOOT, NULL},            \
        .install = "python3", .needs_handler = 1,                                                  \
    }
/* The function's own executable bootstrap at the root of its package. */
#define CUSTOM(n)                                                                                  \
    {                                                                                              \
        .name = n, .argv = {"/var/task/bootstrap", NULL},                                          \
    }

static const realm_runtimes_entry_t table[] = {
    NODE("nodejs18.x", "nodejs18"),
    NODE("nodejs20.x", "nodejs20"),
    NODE("nodejs22.x", "nodejs22"),
    PYTHON("python3.11", "python311"),
    PYTHON("python3.12", "python312"),
    CUSTOM("provided"),
    CUSTOM("provided.al2"),
    CUSTOM("provided.al2023"),
};

#define N_ROWS (sizeof(table) / sizeof(table[0]))
#define FALLBACK 5 /* "provided" */
#define NEWEST_CUSTOM 7

const realm_runtimes_entry_t *realm_runtimes_find(const char *name)
{
    if (!name) return NULL;
    for (size_t i = 0; i < N_ROWS; i++) {
        if (strcmp(table[i].name, name) == 0) return &table[i];
        for (size_t a = 0; a < 2 && table[i].aliases[a]; a++)
            if (strcmp(table[i].aliases[a], name) == 0) return &table[i];
    }
    return NULL;
}

const realm_runtimes_entry_t *realm_runtimes_at(size_t i)
{
    return i < N_ROWS ? &table[i] : NULL;
}

const realm_runtimes_entry_t *realm_runtimes_fallback(void)
{
    return &table[FALLBACK];
}

const realm_runtimes_entry_t *realm_runtimes_custom(void)
{
    return &table[NEWEST_CUSTOM];
}

size_t realm_runtimes_names(char *out, size_t n)
{
    size_t len = 0;
    if (n) out[0] = '\0';
    for (size_t i = 0; i < N_ROWS; i++) {
        int k = snprintf(n > len ? out + len : NULL, n > len ? n - len : 0, "%s%s", i ? ", " : "",
                         table[i].name);
        if (k > 0) len += (size_t)k;
    }
    return len;
}

const char *realm_runtimes_marker(void)
{
    return NODE_DIR "/" NODE_BOOT;
}
