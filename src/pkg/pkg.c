/*
 * pkg.c - the code package store: storing Lambda zip files by content hash
 * and unpacking them (see pkg.h). Validating a zip (pass 1 below) lives in
 * zip.c, realm_pkg_zip_dir in zipdir.c; internal.h is what they share.
 *
 * DESIGN: realm_pkg_store_put works in three passes over one libzip handle
 * opened on the caller's bytes (nothing is copied):
 *   1. analyse (zip.c): every central directory entry gets a normalised path and a
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

static int is_hex64(const char *s)
{
    for (size_t i = 0; i < REALM_PKG_HEX_LEN; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return 0;
    }
    return s[REALM_PKG_HEX_LEN] == '\0';
}

int realm_pkg_write_all(int fd, const void *data, size_t len)
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

    char comp[REALM_PKG_MAX_COMPONENT_LEN + 1];
    int cur = t->tree_fd;
    size_t start = 0;
    while (start < dlen) {
        const char *s = memchr(path + start, '/', dlen - start);
        size_t end = s ? (size_t)(s - path) : dlen;
        memcpy(comp, path + start, end - start); /* <= REALM_PKG_MAX_COMPONENT_LEN: see normalise */
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
static int extract_entry(realm_pkg_job_t *j, tree_t *t, const realm_pkg_entry_t *e)
{
    char n[REALM_PKG_SHOW_LEN];
    if (e->path[0] == '\0') return realm_pkg_read_entry(j, e, -1, NULL, 0); /* "./" */
    const char *base;
    int dfd = open_parent(t, e->path, &base);
    if (dfd < 0) goto sys_fail;
    switch (e->kind) {
    case REALM_PKG_KIND_DIR:
        if (mkdirat(dfd, base, 0700) != 0 && errno != EEXIST) goto sys_fail;
        return realm_pkg_read_entry(j, e, -1, NULL, 0);
    case REALM_PKG_KIND_LINK: /* read during the analysis */
        if (symlinkat(e->target, dfd, base) != 0) goto sys_fail;
        return 0;
    default: {
        int fd = openat(dfd, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0) goto sys_fail;
        if (realm_pkg_read_entry(j, e, fd, NULL, 0) != 0) {
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
                          realm_pkg_show(e->name, n), strerror(errno));
}

/* Makes every directory below the tree's root 0555, deepest first. */
static int seal_dirs(realm_pkg_job_t *j, int tree_fd)
{
    size_t cnt = 0, cap = 16;
    char **dirs = realm_malloc(cap * sizeof(*dirs));
    for (size_t i = 0; i < j->entry_cnt; i++) {
        const realm_pkg_entry_t *e = &j->entries[i];
        if (e->path[0] == '\0') continue;
        for (size_t k = 0;; k++) {
            char c = e->path[k];
            if (c == '/' || (c == '\0' && e->kind == REALM_PKG_KIND_DIR)) {
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

/*
 * Extracts into a new ROOT/.staging/XXXXXX and renames the tree and the zip
 * into place (pass 2 and 3). Removes the staging directory in any case.
 */
static int store_staged(realm_pkg_store_t *st, realm_pkg_job_t *j, const void *zip, size_t len,
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
    if (zfd < 0 || realm_pkg_write_all(zfd, zip, len) != 0 || fchmod(zfd, 0444) != 0 ||
        fsync(zfd) != 0)
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

    realm_pkg_job_t j = {
        .lim = lim, .err = err, .err_len = err_len, .chunk = realm_malloc(REALM_PKG_READ_CHUNK)};
    int rc = realm_pkg_open_zip(&j, zip, len);
    if (rc == 0) rc = realm_pkg_analyse(&j, zip, len);
    if (rc == 0) {
        if (realm_pkg_store_has(st, info->hex)) {
            /* Stored already: validate and count all the same, write nothing. */
            for (size_t i = 0; i < j.entry_cnt && rc == 0; i++)
                if (j.entries[i].kind != REALM_PKG_KIND_LINK)
                    rc = realm_pkg_read_entry(&j, &j.entries[i], -1, NULL, 0);
        } else {
            rc = store_staged(st, &j, zip, len, info->hex);
        }
    }
    if (rc == 0) {
        info->unzipped_bytes = j.unzipped;
        info->entries = j.entry_cnt;
    }
    realm_pkg_job_dispose(&j);
    return rc;
}
