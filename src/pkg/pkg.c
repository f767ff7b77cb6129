/*
 * pkg.c - the code package store: validating, extracting and storing Lambda
 * zip files by content hash (see pkg.h). realm_pkg_zip_dir lives in zipdir.c.
 *
 * DESIGN: realm_pkg_store_put works in three passes over one libzip handle
 * opened on the caller's bytes (nothing is copied):
 *   1. analyse: every central directory entry gets a normalised path and a
 *      kind (file, directory, symlink), and symlink targets are read. Whether
 *      a symlink is safe depends on every other entry and entries come in any
 *      order, so names, duplicates, entries beneath symlinks or files and
 *      symlink targets are all checked here, before a byte is written.
 *   2. extract: every entry is read to its end (libzip checks the CRC only
 *      there) into ROOT/.staging/XXXXXX/tree, counting the bytes actually
 *      produced against max_unzipped_bytes. Files are created with
 *      O_CREAT|O_EXCL|O_NOFOLLOW in a directory opened component by component
 *      with O_NOFOLLOW, so nothing is ever written through a symlink even if
 *      the analysis had missed one.
 *   3. publish: directories are made read-only deepest first, the file system
 *      is synced, and the tree and then the zip are renamed into place. The
 *      tree's own root is made read-only only after its rename: moving a
 *      directory to another parent rewrites its ".." entry, which needs write
 *      permission on it. A crash in between leaves a complete package whose
 *      top directory is still 0700, which is harmless.
 * A package already stored is still read in full (pass 2 writing nothing), so
 * the same bytes always get the same answer and the same info.
 *
 * Names: components are split on '/'. "." components are dropped ("./a/./b"
 * is "a/b"; "./" alone is the root and is ignored); empty components ("a//b")
 * and ".." components are refused. A backslash is an ordinary character on
 * Linux, but zips made on Windows use it as a separator, so ".." between
 * backslashes ("a\..\..\x") is refused too. libzip turns NUL bytes in names
 * into spaces, so NULs are looked for in the raw central directory
 * (find_nul_name).
 *
 * Symlinks: a target is resolved lexically from the link's own directory. It
 * must be relative, must never climb above the package root and must not
 * continue through a symlink of the package, since the kernel would follow
 * that one and its target may climb ("q -> ." plus "p -> q/.." ends above the
 * root). The last component may be a symlink (libfoo.so -> libfoo.so.1
 * chains are common): that link's own target is checked the same way.
 *
 * LIFETIME: the store owns its root path and an fd on the root directory
 * until realm_pkg_store_close.
 * THREADS: no shared mutable state; staging directories are unique (mkdtemp),
 * so any number of threads or processes may store packages at once.
 */
#include "pkg/pkg.h"

#include "pkg/internal.h"

#include "base/alloc.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <zip.h>

#define MAX_NAME_LEN 3072     /* bytes in an entry name: ROOT-relative paths stay < PATH_MAX */
#define MAX_COMPONENT_LEN 255 /* NAME_MAX */
#define MAX_LINK_LEN 4095     /* a symlink target: PATH_MAX less its NUL */
#define READ_CHUNK 65536
#define SHOW_LEN 256 /* room for a name quoted in a message */

struct realm_pkg_store_s {
    char *root;  /* owned; as given to realm_pkg_store_open */
    int root_fd; /* O_DIRECTORY fd on root; every path below is relative to it */
};

/* ------------------------------------------------------------------------ */
/* Small helpers                                                             */
/* ------------------------------------------------------------------------ */

int realm_pkg_fail(char *err, size_t err_len, const char *fmt, ...)
{
    if (err && err_len) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, err_len, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* Length of the valid UTF-8 sequence at s (n bytes available), 0 if invalid
 * (overlong forms and surrogates included: messages end up in JSON). */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t len;
    unsigned long cp, min;
    if (c < 0x80) return 1;
    if ((c & 0xe0) == 0xc0) {
        len = 2, cp = c & 0x1f, min = 0x80;
    } else if ((c & 0xf0) == 0xe0) {
        len = 3, cp = c & 0x0f, min = 0x800;
    } else if ((c & 0xf8) == 0xf0) {
        len = 4, cp = c & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (len > n) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
    return len;
}

/*
 * Copies s into out (SHOW_LEN bytes) for a user-facing message: control
 * characters and invalid UTF-8 become '?', and a long name is cut (at a
 * character boundary) and ends with "...". Returns out.
 */
static const char *show(const char *s, char *out)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s), o = 0;
    while (n > 0) {
        size_t k = utf8_seq(p, n);
        if (o + (k ? k : 1) > SHOW_LEN - 4) {
            memcpy(out + o, "...", 3);
            o += 3;
            break;
        }
        if (k == 0 || (k == 1 && (p[0] < 0x20 || p[0] == 0x7f))) {
            out[o++] = '?';
            k = 1;
        } else {
            memcpy(out + o, p, k);
            o += k;
        }
        p += k;
        n -= k;
    }
    out[o] = '\0';
    return out;
}

static int is_hex64(const char *s)
{
    for (size_t i = 0; i < REALM_PKG_HEX_LEN; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return 0;
    }
    return s[REALM_PKG_HEX_LEN] == '\0';
}

static int write_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * Lists the names in directory fd (closing it), without "." and "..".
 * Returns a new array of new strings (free each and the array), or NULL with
 * errno set.
 */
static char **list_dir(int fd, size_t *cnt)
{
    DIR *d = fdopendir(fd);
    /* fd may be a dup() of a descriptor read before: they share the offset. */
    if (d) rewinddir(d);
    if (!d) {
        int saved = errno;
        close(fd);
        errno = saved;
        return NULL;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    errno = 0;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            names = realm_realloc(names, cap * sizeof(*names));
        }
        names[n++] = realm_strdup(de->d_name);
        errno = 0;
    }
    int saved = errno;
    closedir(d);
    if (saved) {
        for (size_t i = 0; i < n; i++)
            free(names[i]);
        free(names);
        errno = saved;
        return NULL;
    }
    *cnt = n;
    return names ? names : realm_calloc(1, sizeof(*names));
}

static void free_names(char **names, size_t cnt)
{
    for (size_t i = 0; i < cnt; i++)
        free(names[i]);
    free(names);
}

/*
 * Removes path (relative to base) and, if it is a directory, everything in
 * it, whatever the permissions (directories are made writable first). Keeps
 * no fd open across levels, so depth is bounded by PATH_MAX, not by the fd
 * limit. Missing is not an error. Returns 0 or -1 with errno set.
 */
static int rm_tree(int base, const char *path)
{
    struct stat sb;
    if (fstatat(base, path, &sb, AT_SYMLINK_NOFOLLOW) != 0) return errno == ENOENT ? 0 : -1;
    if (!S_ISDIR(sb.st_mode)) return unlinkat(base, path, 0) == 0 || errno == ENOENT ? 0 : -1;

    int fd = openat(base, path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 && errno == EACCES && fchmodat(base, path, 0700, 0) == 0)
        fd = openat(base, path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return -1;
    if ((sb.st_mode & 0700) != 0700 && fchmod(fd, 0700) != 0) {
        close(fd);
        return -1;
    }
    size_t cnt = 0;
    char **names = list_dir(fd, &cnt);
    if (!names) return -1;

    int rc = 0, saved = 0;
    realm_buf_t child;
    realm_buf_init(&child);
    for (size_t i = 0; i < cnt; i++) {
        realm_buf_reset(&child);
        realm_buf_appendf(&child, "%s/%s", path, names[i]);
        if (rm_tree(base, child.data) != 0 && rc == 0) rc = -1, saved = errno;
    }
    realm_buf_dispose(&child);
    free_names(names, cnt);
    if (rc != 0) {
        errno = saved;
        return -1;
    }
    return unlinkat(base, path, AT_REMOVEDIR) == 0 || errno == ENOENT ? 0 : -1;
}

/* mkdir -p with mode for the directories it creates. */
static int mkdir_p(const char *path, mode_t mode)
{
    char *p = realm_strdup(path);
    int rc = 0;
    for (char *s = p + 1; *s; s++) {
        if (*s != '/') continue;
        *s = '\0';
        if (mkdir(p, mode) != 0 && errno != EEXIST) rc = -1;
        *s = '/';
        if (rc) break;
    }
    if (rc == 0 && mkdir(p, mode) != 0 && errno != EEXIST) rc = -1;
    free(p);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Store                                                                     */
/* ------------------------------------------------------------------------ */

/* Removes everything in ROOT/.staging. Returns 0 or -1 with errno set. */
static int clear_staging(int root_fd)
{
    int fd = openat(root_fd, ".staging", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return -1;
    size_t cnt = 0;
    char **names = list_dir(fd, &cnt);
    if (!names) return -1;
    int rc = 0;
    realm_buf_t p;
    realm_buf_init(&p);
    for (size_t i = 0; i < cnt && rc == 0; i++) {
        realm_buf_reset(&p);
        realm_buf_appendf(&p, ".staging/%s", names[i]);
        rc = rm_tree(root_fd, p.data);
    }
    realm_buf_dispose(&p);
    free_names(names, cnt);
    return rc;
}

realm_pkg_store_t *realm_pkg_store_open(const char *root, char *err, size_t err_len)
{
    if (!root || !*root) {
        realm_pkg_fail(err, err_len, "package store: no directory given");
        return NULL;
    }
    if (mkdir_p(root, 0700) != 0) {
        realm_pkg_fail(err, err_len, "package store: cannot create '%s': %s", root,
                       strerror(errno));
        return NULL;
    }
    int fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        realm_pkg_fail(err, err_len, "package store: cannot open '%s': %s", root, strerror(errno));
        return NULL;
    }
    if (mkdirat(fd, ".staging", 0700) != 0 && errno != EEXIST) {
        realm_pkg_fail(err, err_len, "package store: cannot create '%s/.staging': %s", root,
                       strerror(errno));
        close(fd);
        return NULL;
    }
    if (clear_staging(fd) != 0) {
        realm_pkg_fail(err, err_len, "package store: cannot clear '%s/.staging': %s", root,
                       strerror(errno));
        close(fd);
        return NULL;
    }
    realm_pkg_store_t *st = realm_calloc(1, sizeof(*st));
    st->root = realm_strdup(root);
    st->root_fd = fd;
    return st;
}

void realm_pkg_store_close(realm_pkg_store_t *st)
{
    if (!st) return;
    close(st->root_fd);
    free(st->root);
    free(st);
}

const char *realm_pkg_store_root(const realm_pkg_store_t *st)
{
    return st->root;
}

void realm_pkg_hash(const void *zip, size_t len, realm_pkg_info_t *info)
{
    static const char digits[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    if (EVP_Digest(len ? zip : "", len, md, &md_len, EVP_sha256(), NULL) != 1 || md_len != 32) {
        fprintf(stderr, "realm: SHA-256 failed\n");
        abort();
    }
    for (unsigned i = 0; i < 32; i++) {
        info->hex[2 * i] = digits[md[i] >> 4];
        info->hex[2 * i + 1] = digits[md[i] & 15];
    }
    info->hex[REALM_PKG_HEX_LEN] = '\0';
    EVP_EncodeBlock((unsigned char *)info->sha256_b64, md, 32); /* 44 chars + NUL */
    info->zip_bytes = len;
}

int realm_pkg_store_has(const realm_pkg_store_t *st, const char *hex)
{
    if (!is_hex64(hex)) return 0;
    char zip[REALM_PKG_HEX_LEN + 5];
    snprintf(zip, sizeof(zip), "%s.zip", hex);
    struct stat sb;
    if (fstatat(st->root_fd, zip, &sb, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(sb.st_mode)) return 0;
    if (fstatat(st->root_fd, hex, &sb, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISDIR(sb.st_mode)) return 0;
    return 1;
}

void realm_pkg_store_zip_path(const realm_pkg_store_t *st, const char *hex, char *out,
                              size_t out_len)
{
    snprintf(out, out_len, "%s/%s.zip", st->root, hex);
}

void realm_pkg_store_tree_path(const realm_pkg_store_t *st, const char *hex, char *out,
                               size_t out_len)
{
    snprintf(out, out_len, "%s/%s", st->root, hex);
}

int realm_pkg_store_remove(realm_pkg_store_t *st, const char *hex)
{
    if (!is_hex64(hex)) return -1;
    char zip[REALM_PKG_HEX_LEN + 5];
    snprintf(zip, sizeof(zip), "%s.zip", hex);
    /* The zip first: realm_pkg_store_has turns false at once. */
    int rc = unlinkat(st->root_fd, zip, 0) == 0 || errno == ENOENT ? 0 : -1;
    if (rm_tree(st->root_fd, hex) != 0) rc = -1;
    return rc;
}

size_t realm_pkg_store_gc(realm_pkg_store_t *st, int (*keep)(const char *hex, void *data),
                          void *data)
{
    int fd = dup(st->root_fd);
    if (fd < 0) return 0;
    size_t cnt = 0;
    char **names = list_dir(fd, &cnt);
    if (!names) return 0;

    /* Reduce "<hex>" and "<hex>.zip" to unique hashes so keep() sees each once. */
    size_t hex_cnt = 0;
    for (size_t i = 0; i < cnt; i++) {
        char *n = names[i];
        size_t len = strlen(n);
        if (len == REALM_PKG_HEX_LEN + 4 && strcmp(n + REALM_PKG_HEX_LEN, ".zip") == 0)
            n[REALM_PKG_HEX_LEN] = '\0';
        if (is_hex64(n)) {
            names[hex_cnt++] = n;
        } else {
            free(n);
        }
    }
    qsort(names, hex_cnt, sizeof(*names), cmp_str);

    size_t removed = 0;
    for (size_t i = 0; i < hex_cnt; i++) {
        if (i > 0 && strcmp(names[i], names[i - 1]) == 0) continue;
        if (keep(names[i], data)) continue;
        if (realm_pkg_store_remove(st, names[i]) == 0) removed++;
    }
    free_names(names, hex_cnt);
    return removed;
}

/* ------------------------------------------------------------------------ */
/* Analysis                                                                  */
/* ------------------------------------------------------------------------ */

enum { KIND_FILE, KIND_DIR, KIND_LINK };

typedef struct {
    char *name;           /* owned; the name as libzip reports it (for messages) */
    char *path;           /* owned; normalised (see the file comment); "" is the root */
    char *target;         /* owned; symlink target (no NUL), else NULL */
    zip_uint64_t zip_idx; /* index in the archive */
    int kind;             /* KIND_* */
    mode_t mode;          /* files: 0444 or 0555 */
} entry_t;

typedef struct {
    const realm_pkg_limits_t *lim; /* borrowed */
    char *err;                     /* borrowed; the caller's message buffer */
    size_t err_len;
    zip_t *za;          /* owned; read-only archive over the caller's bytes */
    int has_same_names; /* libzip saw two identical names (opened without CHECKCONS) */
    entry_t *entries;   /* owned; archive order */
    size_t entry_cnt;   /* entries[] in use */
    entry_t **sorted;   /* owned array; entries with a non-root path, by path */
    size_t sorted_cnt;
    uint64_t unzipped;    /* bytes produced so far */
    unsigned char *chunk; /* owned; READ_CHUNK bytes */
} job_t;

static uint32_t rd16(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8;
}

static uint32_t rd32(const unsigned char *p)
{
    return rd16(p) | rd16(p + 2) << 16;
}

static uint64_t rd64(const unsigned char *p)
{
    return rd32(p) | (uint64_t)rd32(p + 4) << 32;
}

/*
 * Walks the central directory of z (which libzip has already accepted) and
 * returns the index of the first entry whose raw name holds a NUL byte, or -1
 * if none does or the directory cannot be walked simply (prepended data,
 * trailing garbage, a count other than libzip's). In those rare cases the
 * check is skipped: libzip has turned any NUL into a space, so a missed NUL
 * only yields a file with a space in its name.
 */
static int64_t find_nul_name(const unsigned char *z, size_t len, uint64_t expect_cnt)
{
    if (len < 22) return -1;
    size_t lo = len - 22 > 65535 ? len - 22 - 65535 : 0;
    for (size_t pos = len - 22 + 1; pos-- > lo;) {
        if (rd32(z + pos) != 0x06054b50 || pos + 22 + rd16(z + pos + 20) != len) continue;
        uint64_t cnt = rd16(z + pos + 10), off = rd32(z + pos + 16);
        if (cnt == 0xffff || off == 0xffffffff) {
            /* Zip64: the locator sits just before the classic record. */
            if (pos < 20 || rd32(z + pos - 20) != 0x07064b50) return -1;
            uint64_t z64 = rd64(z + pos - 20 + 8);
            if (z64 > len || len - z64 < 56 || rd32(z + z64) != 0x06064b50) return -1;
            cnt = rd64(z + z64 + 32);
            off = rd64(z + z64 + 48);
        }
        if (cnt != expect_cnt) return -1;
        for (uint64_t i = 0; i < cnt; i++) {
            if (off > len || len - off < 46 || rd32(z + off) != 0x02014b50) return -1;
            size_t name_len = rd16(z + off + 28);
            if (len - off - 46 < name_len) return -1;
            if (memchr(z + off + 46, 0, name_len)) return (int64_t)i;
            off += 46 + name_len + rd16(z + off + 30) + rd16(z + off + 32);
        }
        return -1;
    }
    return -1;
}

/*
 * Normalises an entry name into a new string *path (see the file comment);
 * *slash_dir says the name ended with '/'. Returns NULL, or why the name is
 * refused (*path is then NULL).
 */
static const char *normalise(const char *name, char **path, int *slash_dir)
{
    size_t len = strlen(name);
    *path = NULL;
    *slash_dir = 0;
    if (len > MAX_NAME_LEN) return "name is too long";
    if (name[0] == '/' || name[0] == '\\') return "path is absolute";
    if (len > 0 && name[len - 1] == '/') {
        *slash_dir = 1;
        len--;
    }

    realm_buf_t out;
    realm_buf_init(&out);
    long depth = 0;
    int has_dotdot = 0, leaves = 0;
    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && name[i] != '/') continue;
        const char *c = name + start;
        size_t clen = i - start;
        start = i + 1;
        if (clen == 0) {
            realm_buf_dispose(&out);
            return "path has an empty component";
        }
        if (clen > MAX_COMPONENT_LEN) {
            realm_buf_dispose(&out);
            return "path component is too long";
        }
        if (clen == 1 && c[0] == '.') continue;
        /* Depth, counting '\' as a separator too. */
        size_t s = 0;
        for (size_t k = 0; k <= clen; k++) {
            if (k < clen && c[k] != '\\') continue;
            size_t slen = k - s;
            if (slen == 2 && c[s] == '.' && c[s + 1] == '.') {
                has_dotdot = 1;
                if (--depth < 0) leaves = 1;
            } else if (slen > 0 && !(slen == 1 && c[s] == '.')) {
                depth++;
            }
            s = k + 1;
        }
        if (out.len) realm_buf_append(&out, "/", 1);
        realm_buf_append(&out, c, clen);
    }
    if (has_dotdot) {
        realm_buf_dispose(&out);
        return leaves ? "path leaves the package" : "path contains a '..' component";
    }
    *path = realm_buf_steal(&out, NULL);
    return NULL;
}

/* The message for a failed zip_fopen_index / zip_fread on e. */
static int read_error(job_t *j, const entry_t *e, zip_error_t *ze)
{
    char n[SHOW_LEN];
    switch (zip_error_code_zip(ze)) {
    case ZIP_ER_CRC:
        return realm_pkg_fail(j->err, j->err_len,
                              "Code package entry '%s': CRC error (the archive is corrupt)",
                              show(e->name, n));
    case ZIP_ER_ENCRNOTSUPP:
    case ZIP_ER_NOPASSWD:
    case ZIP_ER_WRONGPASSWD:
        return realm_pkg_fail(
            j->err, j->err_len,
            "Code package entry '%s' is encrypted; encrypted entries are not supported",
            show(e->name, n));
    case ZIP_ER_COMPNOTSUPP:
        return realm_pkg_fail(
            j->err, j->err_len,
            "Code package entry '%s' uses a compression method that is not supported",
            show(e->name, n));
    default:
        return realm_pkg_fail(j->err, j->err_len, "Code package entry '%s' cannot be read: %s",
                              show(e->name, n), zip_error_strerror(ze));
    }
}

/*
 * Reads entry e to its end (so libzip checks its CRC), counting the bytes
 * against max_unzipped_bytes. The bytes go to fd when fd >= 0 and are
 * appended to keep (at most keep_max bytes) when keep is non-NULL.
 */
static int read_entry(job_t *j, const entry_t *e, int fd, realm_buf_t *keep, size_t keep_max)
{
    char n[SHOW_LEN];
    zip_file_t *zf = zip_fopen_index(j->za, e->zip_idx, 0);
    if (!zf) return read_error(j, e, zip_get_error(j->za));
    int rc = 0;
    for (;;) {
        zip_int64_t got = zip_fread(zf, j->chunk, READ_CHUNK);
        if (got == 0) break;
        if (got < 0) {
            rc = read_error(j, e, zip_file_get_error(zf));
            break;
        }
        j->unzipped += (uint64_t)got;
        if (j->unzipped > j->lim->max_unzipped_bytes) {
            rc = realm_pkg_fail(j->err, j->err_len, "Code package unzips to more than %llu bytes",
                                (unsigned long long)j->lim->max_unzipped_bytes);
            break;
        }
        if (keep) {
            if (keep->len + (size_t)got > keep_max) {
                rc = realm_pkg_fail(
                    j->err, j->err_len,
                    "Code package entry '%s': symlink target is longer than %zu bytes",
                    show(e->name, n), keep_max);
                break;
            }
            realm_buf_append(keep, j->chunk, (size_t)got);
        }
        if (fd >= 0 && write_all(fd, j->chunk, (size_t)got) != 0) {
            rc = realm_pkg_fail(j->err, j->err_len, "Code package could not be stored: %s",
                                strerror(errno));
            break;
        }
    }
    zip_fclose(zf);
    return rc;
}

/* Opens zip read-only over the caller's bytes. */
static int open_zip(job_t *j, const void *zip, size_t len)
{
    zip_error_t ze;
    zip_error_init(&ze);
    zip_source_t *src = zip_source_buffer_create(zip, len, 0, &ze);
    if (!src) {
        realm_pkg_fail(j->err, j->err_len, "Code package could not be opened: %s",
                       zip_error_strerror(&ze));
        zip_error_fini(&ze);
        return -1;
    }
    j->za = zip_open_from_source(src, ZIP_CHECKCONS | ZIP_RDONLY, &ze);
    if (!j->za && zip_error_code_zip(&ze) == ZIP_ER_EXISTS) {
        /* Two entries with the very same name: libzip refuses them under
         * ZIP_CHECKCONS without saying which. Reopen leniently so that the
         * analysis names the entry; it refuses the package in any case. */
        zip_error_fini(&ze);
        zip_error_init(&ze);
        j->za = zip_open_from_source(src, ZIP_RDONLY, &ze);
        j->has_same_names = 1;
    }
    if (!j->za) {
        realm_pkg_fail(j->err, j->err_len, "Code package is not a valid zip file: %s",
                       zip_error_strerror(&ze));
        zip_source_free(src);
        zip_error_fini(&ze);
        return -1;
    }
    zip_error_fini(&ze);
    return 0;
}

/* Orders entry pointers by path. */
static int cmp_entry(const void *a, const void *b)
{
    return strcmp((*(entry_t *const *)a)->path, (*(entry_t *const *)b)->path);
}

typedef struct {
    const char *s;
    size_t len;
} name_key_t;

static int cmp_key(const void *k, const void *e)
{
    const name_key_t *key = k;
    const char *path = (*(entry_t *const *)e)->path;
    int c = strncmp(key->s, path, key->len);
    if (c != 0) return c;
    return path[key->len] == '\0' ? 0 : -1;
}

/* The entry whose path is s[0..len), or NULL (implicit directory, or none). */
static const entry_t *lookup(const job_t *j, const char *s, size_t len)
{
    name_key_t key = {s, len};
    entry_t **e = bsearch(&key, j->sorted, j->sorted_cnt, sizeof(*j->sorted), cmp_key);
    return e ? *e : NULL;
}

/* Checks the target of symlink e (see the file comment). */
static int check_target(job_t *j, const entry_t *e)
{
    char n[SHOW_LEN], t[SHOW_LEN], via[SHOW_LEN];
    const char *tg = e->target;
    if (tg[0] == '\0')
        return realm_pkg_fail(j->err, j->err_len,
                              "Code package entry '%s': symlink target is empty", show(e->name, n));
    if (tg[0] == '/')
        return realm_pkg_fail(j->err, j->err_len,
                              "Code package entry '%s': symlink target '%s' leaves the package",
                              show(e->name, n), show(tg, t));

    /* r: the resolved path so far, starting at the link's directory. */
    realm_buf_t r;
    realm_buf_init(&r);
    const char *slash = strrchr(e->path, '/');
    realm_buf_append(&r, e->path, slash ? (size_t)(slash - e->path) : 0);
    int rc = 0;
    size_t tlen = strlen(tg), start = 0;
    for (size_t i = 0; i <= tlen && rc == 0; i++) {
        if (i < tlen && tg[i] != '/') continue;
        const char *c = tg + start;
        size_t clen = i - start;
        start = i + 1;
        if (clen == 0 || (clen == 1 && c[0] == '.')) continue;
        /* Going on from r: the kernel would follow r if it is a symlink. */
        const entry_t *at = r.len ? lookup(j, r.data, r.len) : NULL;
        if (at && at->kind == KIND_LINK) {
            rc = realm_pkg_fail(
                j->err, j->err_len,
                "Code package entry '%s': symlink target '%s' goes through symlink '%s'",
                show(e->name, n), show(tg, t), show(r.data, via));
        } else if (clen == 2 && c[0] == '.' && c[1] == '.') {
            if (r.len == 0) {
                rc = realm_pkg_fail(
                    j->err, j->err_len,
                    "Code package entry '%s': symlink target '%s' leaves the package",
                    show(e->name, n), show(tg, t));
            } else {
                char *up = strrchr(r.data, '/');
                r.len = up ? (size_t)(up - r.data) : 0;
                r.data[r.len] = '\0';
            }
        } else {
            if (r.len) realm_buf_append(&r, "/", 1);
            realm_buf_append(&r, c, clen);
        }
    }
    realm_buf_dispose(&r);
    return rc;
}

/* Pass 1 (see the file comment). */
static int analyse(job_t *j, const void *zip, size_t len)
{
    char n[SHOW_LEN], m[SHOW_LEN];
    zip_int64_t num = zip_get_num_entries(j->za, 0);
    if (num < 0) num = 0;
    if ((uint64_t)num > j->lim->max_entries)
        return realm_pkg_fail(j->err, j->err_len, "Code package has more than %llu entries",
                              (unsigned long long)j->lim->max_entries);
    j->entries = realm_calloc((size_t)num + 1, sizeof(*j->entries));

    int64_t nul_idx = find_nul_name(zip, len, (uint64_t)num);
    for (zip_uint64_t i = 0; i < (zip_uint64_t)num; i++) {
        entry_t *e = &j->entries[j->entry_cnt++];
        e->zip_idx = i;
        zip_stat_t zs;
        zip_stat_init(&zs);
        if (zip_stat_index(j->za, i, 0, &zs) != 0 || !(zs.valid & ZIP_STAT_NAME))
            return realm_pkg_fail(j->err, j->err_len, "Code package entry #%llu cannot be read: %s",
                                  (unsigned long long)i + 1, zip_strerror(j->za));
        e->name = realm_strdup(zs.name);
        if (nul_idx >= 0 && (zip_uint64_t)nul_idx == i)
            return realm_pkg_fail(j->err, j->err_len,
                                  "Code package entry '%s': name contains a NUL byte",
                                  show(e->name, n));
        if ((zs.valid & ZIP_STAT_ENCRYPTION_METHOD) && zs.encryption_method != ZIP_EM_NONE)
            return realm_pkg_fail(
                j->err, j->err_len,
                "Code package entry '%s' is encrypted; encrypted entries are not supported",
                show(e->name, n));
        if ((zs.valid & ZIP_STAT_COMP_METHOD) &&
            !zip_compression_method_supported(zs.comp_method, 0))
            return realm_pkg_fail(
                j->err, j->err_len,
                "Code package entry '%s' uses compression method %u, which is not supported",
                show(e->name, n), (unsigned)zs.comp_method);
        if (e->name[0] == '\0')
            return realm_pkg_fail(j->err, j->err_len,
                                  "Code package has an entry with an empty name");
        int slash_dir;
        const char *why = normalise(e->name, &e->path, &slash_dir);
        if (why)
            return realm_pkg_fail(j->err, j->err_len, "Code package entry '%s': %s",
                                  show(e->name, n), why);

        zip_uint8_t opsys = 0;
        zip_uint32_t attr = 0;
        if (zip_file_get_external_attributes(j->za, i, 0, &opsys, &attr) != 0) opsys = 0, attr = 0;
        mode_t zmode = opsys == ZIP_OPSYS_UNIX ? (mode_t)(attr >> 16) : 0;
        if (slash_dir || (opsys == ZIP_OPSYS_UNIX && S_ISDIR(zmode))) {
            e->kind = KIND_DIR;
        } else if (opsys == ZIP_OPSYS_UNIX && S_ISLNK(zmode)) {
            e->kind = KIND_LINK;
        } else {
            e->kind = KIND_FILE;
            e->mode = (zmode & 0111) ? 0555 : 0444;
        }
        if (e->path[0] == '\0' && e->kind != KIND_DIR)
            return realm_pkg_fail(j->err, j->err_len,
                                  "Code package entry '%s': path names the package root",
                                  show(e->name, n));
        if (e->kind == KIND_LINK) {
            realm_buf_t t;
            realm_buf_init(&t);
            if (read_entry(j, e, -1, &t, MAX_LINK_LEN) != 0) {
                realm_buf_dispose(&t);
                return -1;
            }
            size_t tlen = t.len;
            e->target = realm_buf_steal(&t, NULL);
            if (memchr(e->target, '\0', tlen))
                return realm_pkg_fail(j->err, j->err_len,
                                      "Code package entry '%s': symlink target contains a NUL byte",
                                      show(e->name, n));
        }
    }

    /* Duplicates, by normalised path. The root ("./") is ignored. */
    j->sorted = realm_calloc(j->entry_cnt + 1, sizeof(*j->sorted));
    for (size_t i = 0; i < j->entry_cnt; i++)
        if (j->entries[i].path[0]) j->sorted[j->sorted_cnt++] = &j->entries[i];
    qsort(j->sorted, j->sorted_cnt, sizeof(*j->sorted), cmp_entry);
    for (size_t i = 1; i < j->sorted_cnt; i++)
        if (strcmp(j->sorted[i]->path, j->sorted[i - 1]->path) == 0)
            return realm_pkg_fail(j->err, j->err_len, "Code package has two entries named '%s'",
                                  show(j->sorted[i]->path, n));
    if (j->has_same_names)
        return realm_pkg_fail(j->err, j->err_len,
                              "Code package has two entries with the same name");

    /* Every directory above an entry must be a directory (explicit or not). */
    for (size_t i = 0; i < j->entry_cnt; i++) {
        const entry_t *e = &j->entries[i];
        for (const char *s = strchr(e->path, '/'); s; s = strchr(s + 1, '/')) {
            const entry_t *up = lookup(j, e->path, (size_t)(s - e->path));
            if (!up || up->kind == KIND_DIR) continue;
            if (up->kind == KIND_LINK)
                return realm_pkg_fail(j->err, j->err_len,
                                      "Code package entry '%s': lies beneath symlink '%s'",
                                      show(e->name, n), show(up->path, m));
            return realm_pkg_fail(j->err, j->err_len,
                                  "Code package entry '%s': '%s' is a file, not a directory",
                                  show(e->name, n), show(up->path, m));
        }
    }
    for (size_t i = 0; i < j->entry_cnt; i++)
        if (j->entries[i].kind == KIND_LINK && check_target(j, &j->entries[i]) != 0) return -1;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Extraction                                                                */
/* ------------------------------------------------------------------------ */

typedef struct {
    int tree_fd;        /* the staged tree's root */
    int parent_fd;      /* cached directory of the last entry (-1: none; never tree_fd) */
    realm_buf_t parent; /* its path relative to tree_fd */
} tree_t;

/*
 * Returns an fd on the directory that holds path (creating missing
 * directories 0700, never following a symlink) and points *base at the last
 * component. The fd belongs to t. -1 with errno set on failure.
 */
static int open_parent(tree_t *t, const char *path, const char **base)
{
    const char *slash = strrchr(path, '/');
    size_t dlen = slash ? (size_t)(slash - path) : 0;
    *base = slash ? slash + 1 : path;
    if (dlen == 0) return t->tree_fd;
    if (t->parent_fd >= 0 && t->parent.len == dlen && memcmp(t->parent.data, path, dlen) == 0)
        return t->parent_fd;
    if (t->parent_fd >= 0) close(t->parent_fd);
    t->parent_fd = -1;

    char comp[MAX_COMPONENT_LEN + 1];
    int cur = t->tree_fd;
    size_t start = 0;
    while (start < dlen) {
        const char *s = memchr(path + start, '/', dlen - start);
        size_t end = s ? (size_t)(s - path) : dlen;
        memcpy(comp, path + start, end - start); /* <= MAX_COMPONENT_LEN: see normalise */
        comp[end - start] = '\0';
        start = end + 1;
        int next = -1;
        if (mkdirat(cur, comp, 0700) == 0 || errno == EEXIST)
            next = openat(cur, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (cur != t->tree_fd) {
            int saved = errno;
            close(cur);
            errno = saved;
        }
        if (next < 0) return -1;
        cur = next;
    }
    t->parent_fd = cur;
    realm_buf_reset(&t->parent);
    realm_buf_append(&t->parent, path, dlen);
    return cur;
}

/* Creates entry e in the tree (reading its data). */
static int extract_entry(job_t *j, tree_t *t, const entry_t *e)
{
    char n[SHOW_LEN];
    if (e->path[0] == '\0') return read_entry(j, e, -1, NULL, 0); /* "./" */
    const char *base;
    int dfd = open_parent(t, e->path, &base);
    if (dfd < 0) goto sys_fail;
    switch (e->kind) {
    case KIND_DIR:
        if (mkdirat(dfd, base, 0700) != 0 && errno != EEXIST) goto sys_fail;
        return read_entry(j, e, -1, NULL, 0);
    case KIND_LINK: /* read during the analysis */
        if (symlinkat(e->target, dfd, base) != 0) goto sys_fail;
        return 0;
    default: {
        int fd = openat(dfd, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0) goto sys_fail;
        if (read_entry(j, e, fd, NULL, 0) != 0) {
            close(fd);
            return -1;
        }
        if (fchmod(fd, e->mode) != 0) {
            int saved = errno;
            close(fd);
            errno = saved;
            goto sys_fail;
        }
        if (close(fd) != 0) goto sys_fail;
        return 0;
    }
    }
sys_fail:
    return realm_pkg_fail(j->err, j->err_len, "Code package entry '%s' could not be stored: %s",
                          show(e->name, n), strerror(errno));
}

/* Makes every directory below the tree's root 0555, deepest first. */
static int seal_dirs(job_t *j, int tree_fd)
{
    size_t cnt = 0, cap = 16;
    char **dirs = realm_malloc(cap * sizeof(*dirs));
    for (size_t i = 0; i < j->entry_cnt; i++) {
        const entry_t *e = &j->entries[i];
        if (e->path[0] == '\0') continue;
        for (size_t k = 0;; k++) {
            char c = e->path[k];
            if (c == '/' || (c == '\0' && e->kind == KIND_DIR)) {
                if (cnt == cap) dirs = realm_realloc(dirs, (cap *= 2) * sizeof(*dirs));
                dirs[cnt++] = realm_strndup(e->path, k);
            }
            if (c == '\0') break;
        }
    }
    qsort(dirs, cnt, sizeof(*dirs), cmp_str);
    /* A path sorts after its prefixes, so backwards is deepest first. */
    int rc = 0;
    for (size_t i = cnt; i-- > 0;) {
        if (rc == 0 && (i + 1 == cnt || strcmp(dirs[i], dirs[i + 1]) != 0) &&
            fchmodat(tree_fd, dirs[i], 0555, 0) != 0)
            rc = realm_pkg_fail(j->err, j->err_len, "Code package could not be stored: %s",
                                strerror(errno));
    }
    free_names(dirs, cnt);
    return rc;
}

static void job_dispose(job_t *j)
{
    for (size_t i = 0; i < j->entry_cnt; i++) {
        free(j->entries[i].name);
        free(j->entries[i].path);
        free(j->entries[i].target);
    }
    free(j->entries);
    free(j->sorted);
    free(j->chunk);
    if (j->za) zip_discard(j->za);
}

/*
 * Extracts into a new ROOT/.staging/XXXXXX and renames the tree and the zip
 * into place (pass 2 and 3). Removes the staging directory in any case.
 */
static int store_staged(realm_pkg_store_t *st, job_t *j, const void *zip, size_t len,
                        const char *hex)
{
    realm_buf_t path;
    realm_buf_init(&path);
    realm_buf_appendf(&path, "%s/.staging/XXXXXX", st->root);
    if (!mkdtemp(path.data)) {
        int rc = realm_pkg_fail(j->err, j->err_len, "Code package could not be stored: %s",
                                strerror(errno));
        realm_buf_dispose(&path);
        return rc;
    }
    char stage[32]; /* ".staging/XXXXXX", relative to root_fd */
    snprintf(stage, sizeof(stage), ".staging/%s", strrchr(path.data, '/') + 1);
    realm_buf_dispose(&path);

    char zip_name[REALM_PKG_HEX_LEN + 5];
    snprintf(zip_name, sizeof(zip_name), "%s.zip", hex);
    tree_t t = {.tree_fd = -1, .parent_fd = -1};
    realm_buf_init(&t.parent);
    int stage_fd = -1, zfd = -1, rc = -1, tree_moved = 0;

    stage_fd = openat(st->root_fd, stage, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (stage_fd < 0) goto sys_fail;

    /* The zip as uploaded. */
    zfd = openat(stage_fd, "zip", O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (zfd < 0 || write_all(zfd, zip, len) != 0 || fchmod(zfd, 0444) != 0 || fsync(zfd) != 0)
        goto sys_fail;
    if (close(zfd) != 0) {
        zfd = -1;
        goto sys_fail;
    }
    zfd = -1;

    /* The tree. */
    if (mkdirat(stage_fd, "tree", 0700) != 0) goto sys_fail;
    t.tree_fd = openat(stage_fd, "tree", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (t.tree_fd < 0) goto sys_fail;
    for (size_t i = 0; i < j->entry_cnt; i++)
        if (extract_entry(j, &t, &j->entries[i]) != 0) goto out;
    if (seal_dirs(j, t.tree_fd) != 0) goto out;

    /* Publish: data on disk first, then the names (see the file comment). */
    if (syncfs(stage_fd) != 0) goto sys_fail;
    if (renameat(stage_fd, "tree", st->root_fd, hex) == 0) {
        tree_moved = 1;
        if (fchmod(t.tree_fd, 0555) != 0) goto sys_fail;
    } else if (errno != EEXIST && errno != ENOTEMPTY) {
        goto sys_fail; /* EEXIST/ENOTEMPTY: stored meanwhile; keep that one */
    }
    if (renameat(stage_fd, "zip", st->root_fd, zip_name) != 0) goto sys_fail;
    fsync(st->root_fd);
    rc = 0;
    goto out;

sys_fail:
    rc =
        realm_pkg_fail(j->err, j->err_len, "Code package could not be stored: %s", strerror(errno));
    if (tree_moved) rm_tree(st->root_fd, hex);
out:
    if (zfd >= 0) close(zfd);
    if (t.parent_fd >= 0) close(t.parent_fd);
    if (t.tree_fd >= 0) close(t.tree_fd);
    if (stage_fd >= 0) close(stage_fd);
    realm_buf_dispose(&t.parent);
    rm_tree(st->root_fd, stage);
    return rc;
}

int realm_pkg_store_put(realm_pkg_store_t *st, const void *zip, size_t len,
                        const realm_pkg_limits_t *lim, realm_pkg_info_t *info, char *err,
                        size_t err_len)
{
    memset(info, 0, sizeof(*info));
    if ((uint64_t)len > lim->max_zip_bytes)
        return realm_pkg_fail(err, err_len, "Code package is %zu bytes; the limit is %llu", len,
                              (unsigned long long)lim->max_zip_bytes);
    if (len == 0)
        return realm_pkg_fail(err, err_len, "Code package is not a valid zip file: it is empty");
    realm_pkg_hash(zip, len, info);

    job_t j = {.lim = lim, .err = err, .err_len = err_len, .chunk = realm_malloc(READ_CHUNK)};
    int rc = open_zip(&j, zip, len);
    if (rc == 0) rc = analyse(&j, zip, len);
    if (rc == 0) {
        if (realm_pkg_store_has(st, info->hex)) {
            /* Stored already: validate and count all the same, write nothing. */
            for (size_t i = 0; i < j.entry_cnt && rc == 0; i++)
                if (j.entries[i].kind != KIND_LINK) rc = read_entry(&j, &j.entries[i], -1, NULL, 0);
        } else {
            rc = store_staged(st, &j, zip, len, info->hex);
        }
    }
    if (rc == 0) {
        info->unzipped_bytes = j.unzipped;
        info->entries = j.entry_cnt;
    }
    job_dispose(&j);
    return rc;
}
