/*
 * zip.c - validating a code package zip: pass 1 of realm_pkg_store_put
 * (see pkg.c for the passes), and reading an entry to its end.
 *
 * DESIGN: every central directory entry gets a normalised path and a kind
 * (file, directory, symlink), and symlink targets are read. Whether a symlink
 * is safe depends on every other entry and entries come in any order, so
 * names, duplicates, entries beneath symlinks or files and symlink targets
 * are all checked before a byte is written.
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
 * LIFETIME: everything belongs to the realm_pkg_job_t of one call
 * (realm_pkg_job_dispose).
 * THREADS: no shared state; a job is used by one thread.
 */
#include "pkg/internal.h"

#include "base/alloc.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <zip.h>

#define MAX_NAME_LEN 3072 /* bytes in an entry name: ROOT-relative paths stay < PATH_MAX */
#define MAX_LINK_LEN 4095 /* a symlink target: PATH_MAX less its NUL */

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
 * Copies s into out (REALM_PKG_SHOW_LEN bytes) for a user-facing message: control
 * characters and invalid UTF-8 become '?', and a long name is cut (at a
 * character boundary) and ends with "...". Returns out.
 */
const char *realm_pkg_show(const char *s, char *out)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s), o = 0;
    while (n > 0) {
        size_t k = utf8_seq(p, n);
        if (o + (k ? k : 1) > REALM_PKG_SHOW_LEN - 4) {
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
        if (clen > REALM_PKG_MAX_COMPONENT_LEN) {
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
static int read_error(realm_pkg_job_t *j, const realm_pkg_entry_t *e, zip_error_t *ze)
{
    char n[REALM_PKG_SHOW_LEN];
    switch (zip_error_code_zip(ze)) {
    case ZIP_ER_CRC:
        return realm_pkg_fail(j->err, j->err_len,
                              "Code package entry '%s': CRC error (the archive is corrupt)",
                              realm_pkg_show(e->name, n));
    case ZIP_ER_ENCRNOTSUPP:
    case ZIP_ER_NOPASSWD:
    case ZIP_ER_WRONGPASSWD:
        return realm_pkg_fail(
            j->err, j->err_len,
            "Code package entry '%s' is encrypted; encrypted entries are not supported",
            realm_pkg_show(e->name, n));
    case ZIP_ER_COMPNOTSUPP:
        return realm_pkg_fail(
            j->err, j->err_len,
            "Code package entry '%s' uses a compression method that is not supported",
            realm_pkg_show(e->name, n));
    default:
        return realm_pkg_fail(j->err, j->err_len, "Code package entry '%s' cannot be read: %s",
                              realm_pkg_show(e->name, n), zip_error_strerror(ze));
    }
}

/*
 * Reads entry e to its end (so libzip checks its CRC), counting the bytes
 * against max_unzipped_bytes. The bytes go to fd when fd >= 0 and are
 * appended to keep (at most keep_max bytes) when keep is non-NULL.
 */
int realm_pkg_read_entry(realm_pkg_job_t *j, const realm_pkg_entry_t *e, int fd, realm_buf_t *keep,
                         size_t keep_max)
{
    char n[REALM_PKG_SHOW_LEN];
    zip_file_t *zf = zip_fopen_index(j->za, e->zip_idx, 0);
    if (!zf) return read_error(j, e, zip_get_error(j->za));
    int rc = 0;
    for (;;) {
        zip_int64_t got = zip_fread(zf, j->chunk, REALM_PKG_READ_CHUNK);
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
                    realm_pkg_show(e->name, n), keep_max);
                break;
            }
            realm_buf_append(keep, j->chunk, (size_t)got);
        }
        if (fd >= 0 && realm_pkg_write_all(fd, j->chunk, (size_t)got) != 0) {
            rc = realm_pkg_fail(j->err, j->err_len, "Code package could not be stored: %s",
                                strerror(errno));
            break;
        }
    }
    zip_fclose(zf);
    return rc;
}

/* Opens zip read-only over the caller's bytes. */
int realm_pkg_open_zip(realm_pkg_job_t *j, const void *zip, size_t len)
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
    return strcmp((*(realm_pkg_entry_t *const *)a)->path, (*(realm_pkg_entry_t *const *)b)->path);
}

typedef struct {
    const char *s;
    size_t len;
} name_key_t;

static int cmp_key(const void *k, const void *e)
{
    const name_key_t *key = k;
    const char *path = (*(realm_pkg_entry_t *const *)e)->path;
    int c = strncmp(key->s, path, key->len);
    if (c != 0) return c;
    return path[key->len] == '\0' ? 0 : -1;
}

/* The entry whose path is s[0..len), or NULL (implicit directory, or none). */
static const realm_pkg_entry_t *lookup(const realm_pkg_job_t *j, const char *s, size_t len)
{
    name_key_t key = {s, len};
    realm_pkg_entry_t **e = bsearch(&key, j->sorted, j->sorted_cnt, sizeof(*j->sorted), cmp_key);
    return e ? *e : NULL;
}

/* Checks the target of symlink e (see the file comment). */
static int check_target(realm_pkg_job_t *j, const realm_pkg_entry_t *e)
{
    char n[REALM_PKG_SHOW_LEN], t[REALM_PKG_SHOW_LEN], via[REALM_PKG_SHOW_LEN];
    const char *tg = e->target;
    if (tg[0] == '\0')
        return realm_pkg_fail(j->err, j->err_len,
                              "Code package entry '%s': symlink target is empty",
                              realm_pkg_show(e->name, n));
    if (tg[0] == '/')
        return realm_pkg_fail(j->err, j->err_len,
                              "Code package entry '%s': symlink target '%s' leaves the package",
                              realm_pkg_show(e->name, n), realm_pkg_show(tg, t));

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
        const realm_pkg_entry_t *at = r.len ? lookup(j, r.data, r.len) : NULL;
        if (at && at->kind == REALM_PKG_KIND_LINK) {
            rc = realm_pkg_fail(
                j->err, j->err_len,
                "Code package entry '%s': symlink target '%s' goes through symlink '%s'",
                realm_pkg_show(e->name, n), realm_pkg_show(tg, t), realm_pkg_show(r.data, via));
        } else if (clen == 2 && c[0] == '.' && c[1] == '.') {
            if (r.len == 0) {
                rc = realm_pkg_fail(
                    j->err, j->err_len,
                    "Code package entry '%s': symlink target '%s' leaves the package",
                    realm_pkg_show(e->name, n), realm_pkg_show(tg, t));
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
int realm_pkg_analyse(realm_pkg_job_t *j, const void *zip, size_t len)
{
    char n[REALM_PKG_SHOW_LEN], m[REALM_PKG_SHOW_LEN];
    zip_int64_t num = zip_get_num_entries(j->za, 0);
    if (num < 0) num = 0;
    if ((uint64_t)num > j->lim->max_entries)
        return realm_pkg_fail(j->err, j->err_len, "Code package has more than %llu entries",
                              (unsigned long long)j->lim->max_entries);
    j->entries = realm_calloc((size_t)num + 1, sizeof(*j->entries));

    int64_t nul_idx = find_nul_name(zip, len, (uint64_t)num);
    for (zip_uint64_t i = 0; i < (zip_uint64_t)num; i++) {
        realm_pkg_entry_t *e = &j->entries[j->entry_cnt++];
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
                                  realm_pkg_show(e->name, n));
        if ((zs.valid & ZIP_STAT_ENCRYPTION_METHOD) && zs.encryption_method != ZIP_EM_NONE)
            return realm_pkg_fail(
                j->err, j->err_len,
                "Code package entry '%s' is encrypted; encrypted entries are not supported",
                realm_pkg_show(e->name, n));
        if ((zs.valid & ZIP_STAT_COMP_METHOD) &&
            !zip_compression_method_supported(zs.comp_method, 0))
            return realm_pkg_fail(
                j->err, j->err_len,
                "Code package entry '%s' uses compression method %u, which is not supported",
                realm_pkg_show(e->name, n), (unsigned)zs.comp_method);
        if (e->name[0] == '\0')
            return realm_pkg_fail(j->err, j->err_len,
                                  "Code package has an entry with an empty name");
        int slash_dir;
        const char *why = normalise(e->name, &e->path, &slash_dir);
        if (why)
            return realm_pkg_fail(j->err, j->err_len, "Code package entry '%s': %s",
                                  realm_pkg_show(e->name, n), why);

        zip_uint8_t opsys = 0;
        zip_uint32_t attr = 0;
        if (zip_file_get_external_attributes(j->za, i, 0, &opsys, &attr) != 0) opsys = 0, attr = 0;
        mode_t zmode = opsys == ZIP_OPSYS_UNIX ? (mode_t)(attr >> 16) : 0;
        if (slash_dir || (opsys == ZIP_OPSYS_UNIX && S_ISDIR(zmode))) {
            e->kind = REALM_PKG_KIND_DIR;
        } else if (opsys == ZIP_OPSYS_UNIX && S_ISLNK(zmode)) {
            e->kind = REALM_PKG_KIND_LINK;
        } else {
            e->kind = REALM_PKG_KIND_FILE;
            e->mode = (zmode & 0111) ? 0555 : 0444;
        }
        if (e->path[0] == '\0' && e->kind != REALM_PKG_KIND_DIR)
            return realm_pkg_fail(j->err, j->err_len,
                                  "Code package entry '%s': path names the package root",
                                  realm_pkg_show(e->name, n));
        if (e->kind == REALM_PKG_KIND_LINK) {
            realm_buf_t t;
            realm_buf_init(&t);
            if (realm_pkg_read_entry(j, e, -1, &t, MAX_LINK_LEN) != 0) {
                realm_buf_dispose(&t);
                return -1;
            }
            size_t tlen = t.len;
            e->target = realm_buf_steal(&t, NULL);
            if (memchr(e->target, '\0', tlen))
                return realm_pkg_fail(j->err, j->err_len,
                                      "Code package entry '%s': symlink target contains a NUL byte",
                                      realm_pkg_show(e->name, n));
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
                                  realm_pkg_show(j->sorted[i]->path, n));
    if (j->has_same_names)
        return realm_pkg_fail(j->err, j->err_len,
                              "Code package has two entries with the same name");

    /* Every directory above an entry must be a directory (explicit or not). */
    for (size_t i = 0; i < j->entry_cnt; i++) {
        const realm_pkg_entry_t *e = &j->entries[i];
        for (const char *s = strchr(e->path, '/'); s; s = strchr(s + 1, '/')) {
            const realm_pkg_entry_t *up = lookup(j, e->path, (size_t)(s - e->path));
            if (!up || up->kind == REALM_PKG_KIND_DIR) continue;
            if (up->kind == REALM_PKG_KIND_LINK)
                return realm_pkg_fail(j->err, j->err_len,
                                      "Code package entry '%s': lies beneath symlink '%s'",
                                      realm_pkg_show(e->name, n), realm_pkg_show(up->path, m));
            return realm_pkg_fail(j->err, j->err_len,
                                  "Code package entry '%s': '%s' is a file, not a directory",
                                  realm_pkg_show(e->name, n), realm_pkg_show(up->path, m));
        }
    }
    for (size_t i = 0; i < j->entry_cnt; i++)
        if (j->entries[i].kind == REALM_PKG_KIND_LINK && check_target(j, &j->entries[i]) != 0)
            return -1;
    return 0;
}

void realm_pkg_job_dispose(realm_pkg_job_t *j)
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
