/*
 * pkg.h - code packages: validating, storing and extracting Lambda zip files
 * in a content-addressed store, and zipping a directory (for `realm deploy`).
 *
 * DESIGN: a package is stored once per content hash (SHA-256 of the zip
 * bytes) under the store's root:
 *   ROOT/<hex>.zip   the zip exactly as uploaded
 *   ROOT/<hex>/      its extracted tree (files 0444/0555, directories 0555)
 *   ROOT/.staging/   work in progress; anything found here at open is junk
 * A package becomes visible only by rename(2) of a complete staged file or
 * tree, so a crash at any point leaves either nothing or a whole package
 * (plus junk in .staging that realm_pkg_store_open removes).
 *
 * Validation happens while extracting (every byte is read, so CRCs are
 * checked and declared sizes are never trusted). A package is refused,
 * with a message that names the entry and says what was wrong, when it:
 *   - is not a readable zip (corrupt, truncated, not a zip at all);
 *   - has an entry whose name is absolute, contains a ".." component, a
 *     backslash-separated ".." or a NUL, or is empty;
 *   - has a symlink whose target is absolute or leaves the package (resolved
 *     against the link's own directory), a symlink whose target goes through
 *     another symlink, or an entry that lies beneath a symlink;
 *   - has duplicate entry names;
 *   - has more than max_entries entries;
 *   - inflates to more than max_unzipped_bytes in total (counted on the
 *     bytes actually produced, not the sizes the archive declares);
 *   - has an entry with a CRC mismatch or an unsupported compression method
 *     or encryption.
 * A refused package leaves nothing behind.
 *
 * THREADS: every function here blocks on disk; call them from a worker
 * thread (uv_queue_work) when on the event loop. Distinct packages may be
 * stored from several threads at once; storing the same hash twice at once
 * is safe (the second rename finds the first's result and keeps it).
 */
#ifndef REALM_PKG_PKG_H
#define REALM_PKG_PKG_H

#include "base/buf.h"

#include <stddef.h>
#include <stdint.h>

#define REALM_PKG_HEX_LEN 64 /* SHA-256 in lower-case hex */

typedef struct {
    uint64_t max_zip_bytes;      /* the zip itself */
    uint64_t max_unzipped_bytes; /* sum of inflated sizes */
    uint64_t max_entries;        /* files + directories + symlinks */
} realm_pkg_limits_t;

typedef struct {
    char hex[REALM_PKG_HEX_LEN + 1]; /* SHA-256 of the zip, lower-case hex */
    char sha256_b64[45];             /* the same hash, base64 (Lambda's CodeSha256) */
    uint64_t zip_bytes;              /* CodeSize */
    uint64_t unzipped_bytes;
    uint64_t entries;
} realm_pkg_info_t;

typedef struct realm_pkg_store_s realm_pkg_store_t;

/*
 * Opens (creating if needed, mode 0700) a store rooted at root and removes
 * leftovers in ROOT/.staging. Returns NULL with a message in err.
 */
realm_pkg_store_t *realm_pkg_store_open(const char *root, char *err, size_t err_len);
void realm_pkg_store_close(realm_pkg_store_t *st);
const char *realm_pkg_store_root(const realm_pkg_store_t *st);

/* Hashes zip bytes without storing them (fills hex, sha256_b64, zip_bytes). */
void realm_pkg_hash(const void *zip, size_t len, realm_pkg_info_t *info);

/*
 * Validates zip (len bytes) and stores it with its extracted tree, unless a
 * package with the same hash is already stored (then nothing is written and
 * the stored one is kept). Returns 0 and fills info, or -1 with a message
 * in err ("entry '../x': path leaves the package"). On -1 nothing is left
 * on disk.
 */
int realm_pkg_store_put(realm_pkg_store_t *st, const void *zip, size_t len,
                        const realm_pkg_limits_t *lim, realm_pkg_info_t *info, char *err,
                        size_t err_len);

/* 1 if ROOT/<hex>.zip and ROOT/<hex>/ both exist, else 0. */
int realm_pkg_store_has(const realm_pkg_store_t *st, const char *hex);

/* Path of the stored zip / extracted tree into out (always NUL-terminated). */
void realm_pkg_store_zip_path(const realm_pkg_store_t *st, const char *hex, char *out,
                              size_t out_len);
void realm_pkg_store_tree_path(const realm_pkg_store_t *st, const char *hex, char *out,
                               size_t out_len);

/* Removes a stored package (zip and tree). Missing is not an error. Returns 0 or -1. */
int realm_pkg_store_remove(realm_pkg_store_t *st, const char *hex);

/*
 * Removes every stored package whose hash is not kept: keep(hex, data)
 * returns 1 to keep. Returns the number removed.
 */
size_t realm_pkg_store_gc(realm_pkg_store_t *st, int (*keep)(const char *hex, void *data),
                          void *data);

/*
 * Zips a directory tree into out (deflate), for `realm deploy DIR`: regular
 * files keep their permission bits (so an executable `bootstrap` stays
 * executable), symlinks are stored as symlinks, entries are sorted by name
 * and carry a fixed timestamp so the same tree always gives the same bytes
 * (and so the same CodeSha256). Returns 0, or -1 with a message in err.
 */
int realm_pkg_zip_dir(const char *dir, realm_buf_t *out, char *err, size_t err_len);

#endif
