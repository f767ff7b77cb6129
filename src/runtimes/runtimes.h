/*
 * runtimes.h - the one table of the runtimes Realm runs: each one's name and
 * aliases, how it starts in a sandbox (argv, binds, environment), where its
 * bootstrap's files are, and how the interpreter is installed.
 *
 * DESIGN: a row per runtime (runtimes.c), read by every place that used to
 * know runtimes by name: the control API's validation and stored metadata
 * (registry/validate.c: accepted names, canonical name, Handler required),
 * exec (argv, binds, environment, the folder bound at /opt), the server
 * (which file marks a runtimes/ folder), the CLI's help, and scripts/setup.sh
 * (the `.install` column, read with sed). Adding a runtime is one row plus
 * its bootstrap under runtimes/ (docs/execution.md has the recipe);
 * scripts/check-layers.sh fails if a runtime's name appears in src/ outside
 * this module.
 *
 * LIFETIME: static data; every pointer returned lives as long as the process.
 * THREADS: read-only, any thread.
 */
#ifndef REALM_RUNTIMES_RUNTIMES_H
#define REALM_RUNTIMES_RUNTIMES_H

#include <stddef.h>

/* Where a runtime's folder (runtimes/<dir>) is bound in the sandbox. */
#define REALM_RUNTIMES_SANDBOX_DIR "/opt"

typedef struct {
    const char *name;       /* canonical: what the control API stores and answers */
    const char *aliases[2]; /* more names accepted on input (the Lambda@Home seed's); NULL-ended */
    const char *dir;        /* our bootstrap's folder under the runtimes dir; NULL: the function
                               brings its own (/var/task/bootstrap) */
    const char *bootstrap;  /* the file in dir that starts it (marks a runtimes/ folder); or NULL */
    const char *argv[3];    /* what runs in the sandbox; NULL-ended */
    const char *env[2];     /* more environment ("K=V"); NULL-ended */
    const char *install;    /* the Debian package that provides argv[0]; or NULL */
    unsigned needs_handler : 1;      /* Handler is required on create */
    unsigned binds_node_modules : 1; /* the server's node_modules at /var/runtime/node_modules */
} realm_runtimes_entry_t;

/* The row of a canonical name or an alias; NULL if none (name may be NULL). */
const realm_runtimes_entry_t *realm_runtimes_find(const char *name);
/* Row i (0..count-1) in table order; NULL past the end. */
const realm_runtimes_entry_t *realm_runtimes_at(size_t i);
/*
 * The row exec starts when a function names no runtime it knows: the
 * function's own bootstrap, under the oldest custom runtime's name.
 */
const realm_runtimes_entry_t *realm_runtimes_fallback(void);
/* The newest custom runtime (brings its own bootstrap): for built-in functions. */
const realm_runtimes_entry_t *realm_runtimes_custom(void);
/*
 * The canonical names, ", "-separated, into out (NUL-terminated, truncated to
 * n - 1). Returns the length of the whole list.
 */
size_t realm_runtimes_names(char *out, size_t n);
/*
 * The file whose presence marks a runtimes folder: "DIR/BOOTSTRAP" of the
 * first row that has a bootstrap of ours.
 */
const char *realm_runtimes_marker(void);

#endif
