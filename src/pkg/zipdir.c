/*
 * zipdir.c - realm_pkg_zip_dir: a deterministic zip of a directory tree, for
 * `realm deploy DIR` (see pkg.h).
 *
 * DESIGN: the tree is walked first (lstat, never following a symlink below
 * the top directory) into a list of entries, which is sorted by name
 * (directories as "dir/") and then added in that order to an archive built in
 * memory. Every entry carries the same DOS timestamp (1980-01-01 00:00) and
 * Unix external attributes. Permissions are normalised to 0755 when any
 * execute bit is set and 0644 otherwise (directories 0755, symlinks 0777):
 * the store extracts files 0555 or 0444 anyway, and this way the umask of the
 * machine that zips does not change the bytes, and so the CodeSha256.
 *
 * libzip reads file data at zip_close, from the path; each file is opened
 * once while walking so that an unreadable file is reported by name.
 *
 * THREADS: any thread; no shared state.
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

#include <zip.h>

#define DOS_DATE_1980_01_01 ((0 << 9) | (1 << 5) | 1) /* years since 1980, month, day */
#define DOS_ATTR_DIRECTORY 0x10

enum { ITEM_FILE, ITEM_DIR, ITEM_LINK };

typedef struct {
    char *name;   /* owned; relative, '/'-separated; directories end with '/' */
    char *target; /* owned; symlink target, else NULL */
    int kind;     /* ITEM_* */
    mode_t mode;  /* with the S_IF* type bits, as stored in the zip */
} item_t;

typedef struct {
    item_t *v; /* owned */
    size_t cnt;
    size_t cap;
    const char *top; /* borrowed; the directory as given */
    char *err;       /* borrowed; the caller's message buffer */
    size_t err_len;
} walk_t;

static item_t *add_item(walk_t *w, char *name, int kind, mode_t mode)
{
    if (w->cnt == w->cap) {
        w->cap = w->cap ? w->cap * 2 : 64;
        w->v = realm_realloc(w->v, w->cap * sizeof(*w->v));
    }
    item_t *it = &w->v[w->cnt++];
    it->name = name;
    it->target = NULL;
    it->kind = kind;
    it->mode = mode;
    return it;
}

static int cmp_item(const void *a, const void *b)
{
    return strcmp(((const item_t *)a)->name, ((const item_t *)b)->name);
}

/* Adds everything below rel ("" for the top) to w. */
static int walk(walk_t *w, int top_fd, const char *rel)
{
    int fd =
        rel[0] ? openat(top_fd, rel, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) : dup(top_fd);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d) {
        int saved = errno;
        if (fd >= 0) close(fd);
        return realm_pkg_fail(w->err, w->err_len, "cannot read directory '%s/%s': %s", w->top, rel,
                              strerror(saved));
    }

    /* Names first, then recursion: one open directory at a time. */
    char **names = NULL;
    size_t cnt = 0, cap = 0;
    struct dirent *de;
    errno = 0;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
        if (cnt == cap) {
            cap = cap ? cap * 2 : 16;
            names = realm_realloc(names, cap * sizeof(*names));
        }
        names[cnt++] = realm_strdup(de->d_name);
        errno = 0;
    }
    int rc = 0;
    if (errno != 0)
        rc = realm_pkg_fail(w->err, w->err_len, "cannot read directory '%s/%s': %s", w->top, rel,
                            strerror(errno));
    closedir(d);

    realm_buf_t child;
    realm_buf_init(&child);
    for (size_t i = 0; i < cnt && rc == 0; i++) {
        realm_buf_reset(&child);
        if (rel[0]) realm_buf_appendf(&child, "%s/", rel);
        realm_buf_appends(&child, names[i]);
        const char *c = child.data;
        struct stat sb;
        if (fstatat(top_fd, c, &sb, AT_SYMLINK_NOFOLLOW) != 0) {
            rc = realm_pkg_fail(w->err, w->err_len, "cannot read '%s/%s': %s", w->top, c,
                                strerror(errno));
        } else if (S_ISDIR(sb.st_mode)) {
            char *name = realm_malloc(child.len + 2);
            snprintf(name, child.len + 2, "%s/", c);
            add_item(w, name, ITEM_DIR, S_IFDIR | 0755);
            rc = walk(w, top_fd, c);
        } else if (S_ISREG(sb.st_mode)) {
            int ffd = openat(top_fd, c, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
            if (ffd < 0) {
                rc = realm_pkg_fail(w->err, w->err_len, "cannot read '%s/%s': %s", w->top, c,
                                    strerror(errno));
            } else {
                close(ffd);
                add_item(w, realm_strdup(c), ITEM_FILE,
                         S_IFREG | ((sb.st_mode & 0111) ? 0755 : 0644));
            }
        } else if (S_ISLNK(sb.st_mode)) {
            char target[4096];
            ssize_t n = readlinkat(top_fd, c, target, sizeof(target));
            if (n < 0 || (size_t)n >= sizeof(target)) {
                rc = realm_pkg_fail(w->err, w->err_len, "cannot read symlink '%s/%s': %s", w->top,
                                    c, n < 0 ? strerror(errno) : "target too long");
            } else {
                item_t *it = add_item(w, realm_strdup(c), ITEM_LINK, S_IFLNK | 0777);
                it->target = realm_strndup(target, (size_t)n);
            }
        } else {
            rc = realm_pkg_fail(w->err, w->err_len,
                                "'%s/%s' is not a regular file, directory or symlink", w->top, c);
        }
    }
    realm_buf_dispose(&child);
    for (size_t i = 0; i < cnt; i++)
        free(names[i]);
    free(names);
    return rc;
}

/* Adds one item to za. */
static int add_to_zip(walk_t *w, zip_t *za, const item_t *it)
{
    zip_int64_t idx;
    if (it->kind == ITEM_DIR) {
        idx = zip_dir_add(za, it->name, ZIP_FL_ENC_GUESS);
    } else {
        zip_error_t ze;
        zip_error_init(&ze);
        zip_source_t *src;
        if (it->kind == ITEM_LINK) {
            size_t len = strlen(it->target);
            src = zip_source_buffer_create(realm_strndup(it->target, len), len, 1, &ze);
        } else {
            realm_buf_t path;
            realm_buf_init(&path);
            realm_buf_appendf(&path, "%s/%s", w->top, it->name);
            src = zip_source_file_create(path.data, 0, -1, &ze);
            realm_buf_dispose(&path);
        }
        if (!src) {
            int rc = realm_pkg_fail(w->err, w->err_len, "cannot zip '%s/%s': %s", w->top, it->name,
                                    zip_error_strerror(&ze));
            zip_error_fini(&ze);
            return rc;
        }
        zip_error_fini(&ze);
        idx = zip_file_add(za, it->name, src, ZIP_FL_ENC_GUESS);
        if (idx < 0) zip_source_free(src);
    }
    if (idx < 0 ||
        zip_set_file_compression(za, (zip_uint64_t)idx,
                                 it->kind == ITEM_FILE ? ZIP_CM_DEFLATE : ZIP_CM_STORE, 0) != 0 ||
        zip_file_set_dostime(za, (zip_uint64_t)idx, 0, DOS_DATE_1980_01_01, 0) != 0 ||
        zip_file_set_external_attributes(za, (zip_uint64_t)idx, 0, ZIP_OPSYS_UNIX,
                                         (zip_uint32_t)it->mode << 16 |
                                             (it->kind == ITEM_DIR ? DOS_ATTR_DIRECTORY : 0)) != 0)
        return realm_pkg_fail(w->err, w->err_len, "cannot zip '%s/%s': %s", w->top, it->name,
                              zip_strerror(za));
    return 0;
}

/* Builds the archive of w's items into out. */
static int build_zip(walk_t *w, realm_buf_t *out)
{
    zip_error_t ze;
    zip_error_init(&ze);
    zip_source_t *src = zip_source_buffer_create(NULL, 0, 0, &ze);
    zip_t *za = src ? zip_open_from_source(src, ZIP_TRUNCATE, &ze) : NULL;
    if (!za) {
        int rc =
            realm_pkg_fail(w->err, w->err_len, "cannot create a zip: %s", zip_error_strerror(&ze));
        if (src) zip_source_free(src);
        zip_error_fini(&ze);
        return rc;
    }
    zip_error_fini(&ze);
    zip_source_keep(src); /* outlives zip_close: it holds the result */

    for (size_t i = 0; i < w->cnt; i++) {
        if (add_to_zip(w, za, &w->v[i]) != 0) {
            zip_discard(za);
            zip_source_free(src);
            return -1;
        }
    }
    if (zip_close(za) != 0) {
        realm_pkg_fail(w->err, w->err_len, "cannot zip '%s': %s", w->top, zip_strerror(za));
        zip_discard(za);
        zip_source_free(src);
        return -1;
    }

    int rc = 0;
    if (zip_source_open(src) != 0) {
        rc = realm_pkg_fail(w->err, w->err_len, "cannot read the zip back: %s",
                            zip_error_strerror(zip_source_error(src)));
    } else {
        char chunk[65536];
        zip_int64_t n;
        while ((n = zip_source_read(src, chunk, sizeof(chunk))) > 0)
            realm_buf_append(out, chunk, (size_t)n);
        if (n < 0)
            rc = realm_pkg_fail(w->err, w->err_len, "cannot read the zip back: %s",
                                zip_error_strerror(zip_source_error(src)));
        zip_source_close(src);
    }
    zip_source_free(src);
    return rc;
}

int realm_pkg_zip_dir(const char *dir, realm_buf_t *out, char *err, size_t err_len)
{
    walk_t w = {.top = dir, .err = err, .err_len = err_len};
    int top_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (top_fd < 0)
        return realm_pkg_fail(err, err_len, "cannot open directory '%s': %s", dir, strerror(errno));
    int rc = walk(&w, top_fd, "");
    close(top_fd);
    if (rc == 0 && w.cnt == 0)
        rc = realm_pkg_fail(err, err_len, "'%s' is empty: nothing to zip", dir);
    if (rc == 0) {
        qsort(w.v, w.cnt, sizeof(*w.v), cmp_item);
        size_t before = out->len;
        rc = build_zip(&w, out);
        if (rc != 0) {
            out->len = before;
            if (out->data) out->data[before] = '\0';
        }
    }
    for (size_t i = 0; i < w.cnt; i++) {
        free(w.v[i].name);
        free(w.v[i].target);
    }
    free(w.v);
    return rc;
}
