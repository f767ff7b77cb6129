/*
 * internal.h - shared by the package module's files (not a public header).
 *
 * pkg.c is the content-addressed store (open, has, remove, gc) and unpacks a
 * validated zip into it (passes 2 and 3 of realm_pkg_store_put); zip.c
 * validates a zip (pass 1: names, kinds, duplicates, symlink targets) and
 * reads its entries. A realm_pkg_job_t carries one realm_pkg_store_put call
 * through both.
 */
#ifndef REALM_PKG_INTERNAL_H
#define REALM_PKG_INTERNAL_H

#include "pkg/pkg.h"

#include "base/buf.h"

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <zip.h>

#define REALM_PKG_MAX_COMPONENT_LEN 255 /* NAME_MAX */
#define REALM_PKG_READ_CHUNK 65536
#define REALM_PKG_SHOW_LEN 256 /* room for a name quoted in a message */

enum { REALM_PKG_KIND_FILE, REALM_PKG_KIND_DIR, REALM_PKG_KIND_LINK };

typedef struct {
    char *name;           /* owned; the name as libzip reports it (for messages) */
    char *path;           /* owned; normalised (see zip.c); "" is the root */
    char *target;         /* owned; symlink target (no NUL), else NULL */
    zip_uint64_t zip_idx; /* index in the archive */
    int kind;             /* REALM_PKG_KIND_* */
    mode_t mode;          /* files: 0444 or 0555 */
} realm_pkg_entry_t;

typedef struct {
    const realm_pkg_limits_t *lim; /* borrowed */
    char *err;                     /* borrowed; the caller's message buffer */
    size_t err_len;
    zip_t *za;                  /* owned; read-only archive over the caller's bytes */
    int has_same_names;         /* libzip saw two identical names (opened without CHECKCONS) */
    realm_pkg_entry_t *entries; /* owned; archive order */
    size_t entry_cnt;           /* entries[] in use */
    realm_pkg_entry_t **sorted; /* owned array; entries with a non-root path, by path */
    size_t sorted_cnt;
    uint64_t unzipped;    /* bytes produced so far */
    unsigned char *chunk; /* owned; REALM_PKG_READ_CHUNK bytes */
} realm_pkg_job_t;

/* Formats a message into err (when given) and returns -1. */
int realm_pkg_fail(char *err, size_t err_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* write(2) all of data, retrying on EINTR. 0 or -1 with errno set. (pkg.c) */
int realm_pkg_write_all(int fd, const void *data, size_t len);

/*
 * Copies s into out (REALM_PKG_SHOW_LEN bytes) for a user-facing message:
 * control characters and invalid UTF-8 become '?', and a long name is cut
 * (at a character boundary) and ends with "...". Returns out. (zip.c)
 */
const char *realm_pkg_show(const char *s, char *out);

/* Opens zip read-only over the caller's bytes into j->za. (zip.c) */
int realm_pkg_open_zip(realm_pkg_job_t *j, const void *zip, size_t len);

/* Pass 1: fills j->entries and j->sorted and checks them all. (zip.c) */
int realm_pkg_analyse(realm_pkg_job_t *j, const void *zip, size_t len);

/*
 * Reads entry e to its end (so libzip checks its CRC), counting the bytes
 * against max_unzipped_bytes. The bytes go to fd when fd >= 0 and are
 * appended to keep (at most keep_max bytes) when keep is non-NULL. (zip.c)
 */
int realm_pkg_read_entry(realm_pkg_job_t *j, const realm_pkg_entry_t *e, int fd, realm_buf_t *keep,
                         size_t keep_max);

/* Frees what j owns (not j). (zip.c) */
void realm_pkg_job_dispose(realm_pkg_job_t *j);

#endif
