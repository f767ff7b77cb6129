/*
 * test_pkg.c - unit tests for pkg/: the content-addressed package store
 * (validation of hostile zips, extraction, permissions, hashing, storing the
 * same package twice, gc) and realm_pkg_zip_dir (round trip, determinism).
 *
 * Hostile zips are built in memory with libzip itself, then patched byte by
 * byte where libzip would refuse to write them (duplicate names, a NUL in a
 * name, a bad compression method, a corrupt CRC). Every test works in its own
 * mkdtemp() directory under /tmp, removed by the teardown (read-only trees
 * included). After every refusal the store must hold nothing but an empty
 * .staging.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "fixture.h"
#include "pkg/pkg.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <zip.h>

/* ------------------------------------------------------------------------ */
/* Fixture                                                                   */
/* ------------------------------------------------------------------------ */

typedef struct {
    char tmp[64];   /* mkdtemp directory, removed by the teardown */
    char root[128]; /* tmp/store */
    realm_pkg_store_t *st;
} fx_t;

static const realm_pkg_limits_t default_limits = {
    .max_zip_bytes = 50 * 1024 * 1024,
    .max_unzipped_bytes = 250 * 1024 * 1024,
    .max_entries = 20000,
};

static int setup(void **state)
{
    fx_t *fx = calloc(1, sizeof(*fx));
    if (fx_tmpdir_make(fx->tmp, sizeof(fx->tmp), "pkg") != 0) return -1;
    snprintf(fx->root, sizeof(fx->root), "%s/store", fx->tmp);
    char err[256] = "";
    fx->st = realm_pkg_store_open(fx->root, err, sizeof(err));
    if (!fx->st) {
        print_error("store_open: %s\n", err);
        return -1;
    }
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fx_t *fx = *state;
    realm_pkg_store_close(fx->st);
    int rc = fx_tmpdir_remove(fx->tmp);
    free(fx);
    return rc == 0 ? 0 : -1;
}

/* ------------------------------------------------------------------------ */
/* Building zips                                                             */
/* ------------------------------------------------------------------------ */

typedef struct {
    const char *name;
    char kind;        /* 'f' file, 'd' directory, 'l' symlink */
    const char *data; /* file data or symlink target; NULL for directories */
    size_t len;       /* 0: strlen(data) */
    unsigned mode;    /* permission bits; 0: 0644 (files) */
    int store;        /* 1: ZIP_CM_STORE instead of deflate */
} zent_t;

/* Builds a zip of n entries into out (which must be empty). */
static void make_zip(const zent_t *ents, size_t n, realm_buf_t *out)
{
    zip_error_t ze;
    zip_error_init(&ze);
    zip_source_t *src = zip_source_buffer_create(NULL, 0, 0, &ze);
    assert_non_null(src);
    zip_t *za = zip_open_from_source(src, ZIP_TRUNCATE, &ze);
    assert_non_null(za);
    zip_source_keep(src);
    for (size_t i = 0; i < n; i++) {
        const zent_t *e = &ents[i];
        zip_int64_t idx;
        unsigned mode;
        if (e->kind == 'd') {
            idx = zip_dir_add(za, e->name, 0);
            mode = S_IFDIR | 0755;
        } else {
            size_t len = e->len ? e->len : strlen(e->data);
            zip_source_t *fs = zip_source_buffer_create(e->data, len, 0, &ze);
            assert_non_null(fs);
            idx = zip_file_add(za, e->name, fs, 0);
            if (idx < 0) print_error("zip_file_add %s: %s\n", e->name, zip_strerror(za));
            mode = e->kind == 'l' ? S_IFLNK | 0777 : S_IFREG | (e->mode ? e->mode : 0644);
        }
        assert_cmp_int(idx, >=, 0);
        assert_int_equal(zip_file_set_external_attributes(za, (zip_uint64_t)idx, 0, ZIP_OPSYS_UNIX,
                                                          (zip_uint32_t)mode << 16),
                         0);
        if (e->store)
            assert_int_equal(zip_set_file_compression(za, (zip_uint64_t)idx, ZIP_CM_STORE, 0), 0);
    }
    assert_int_equal(zip_close(za), 0);
    assert_int_equal(zip_source_open(src), 0);
    char chunk[65536];
    zip_int64_t got;
    while ((got = zip_source_read(src, chunk, sizeof(chunk))) > 0)
        realm_buf_append(out, chunk, (size_t)got);
    assert_int_equal(got, 0);
    zip_source_close(src);
    zip_source_free(src);
    zip_error_fini(&ze);
}

/* Replaces every occurrence of from with to (same length) in b; returns how many. */
static int patch_all(realm_buf_t *b, const void *from, const void *to, size_t len)
{
    int cnt = 0;
    char *p = b->data, *end = b->data + b->len;
    while ((p = memmem(p, (size_t)(end - p), from, len)) != NULL) {
        memcpy(p, to, len);
        p += len;
        cnt++;
    }
    return cnt;
}

static void put16(realm_buf_t *b, unsigned v)
{
    unsigned char x[2] = {(unsigned char)v, (unsigned char)(v >> 8)};
    realm_buf_append(b, x, 2);
}

static void put32(realm_buf_t *b, uint32_t v)
{
    put16(b, v & 0xffff);
    put16(b, v >> 16);
}

/* A zip with one empty stored file whose raw name is name[0..name_len), by hand
 * (libzip will not write an empty name). */
static void raw_zip_one(const char *name, size_t name_len, realm_buf_t *out)
{
    realm_buf_append(out, "PK\3\4", 4);
    put16(out, 20);   /* version needed */
    put16(out, 0);    /* flags */
    put16(out, 0);    /* stored */
    put16(out, 0);    /* time */
    put16(out, 0x21); /* 1980-01-01 */
    put32(out, 0);    /* CRC-32 of nothing */
    put32(out, 0);
    put32(out, 0);
    put16(out, (unsigned)name_len);
    put16(out, 0);
    realm_buf_append(out, name, name_len);
    size_t cd = out->len;
    realm_buf_append(out, "PK\1\2", 4);
    put16(out, 0x0314); /* made by: Unix */
    put16(out, 20);
    put16(out, 0);
    put16(out, 0);
    put16(out, 0);
    put16(out, 0x21);
    put32(out, 0);
    put32(out, 0);
    put32(out, 0);
    put16(out, (unsigned)name_len);
    put16(out, 0); /* extra */
    put16(out, 0); /* comment */
    put16(out, 0); /* disk */
    put16(out, 0); /* internal attributes */
    put32(out, (uint32_t)(S_IFREG | 0644) << 16);
    put32(out, 0); /* local header offset */
    realm_buf_append(out, name, name_len);
    size_t cd_len = out->len - cd;
    realm_buf_append(out, "PK\5\6", 4);
    put16(out, 0);
    put16(out, 0);
    put16(out, 1);
    put16(out, 1);
    put32(out, (uint32_t)cd_len);
    put32(out, (uint32_t)cd);
    put16(out, 0);
}

/* ------------------------------------------------------------------------ */
/* Checks                                                                    */
/* ------------------------------------------------------------------------ */

/* The store holds nothing but an empty .staging. */
static void assert_clean(const fx_t *fx)
{
    DIR *d = opendir(fx->root);
    assert_non_null(d);
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
        assert_string_equal(de->d_name, ".staging");
    }
    closedir(d);
    char staging[256];
    snprintf(staging, sizeof(staging), "%s/.staging", fx->root);
    d = opendir(staging);
    assert_non_null(d);
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
        fail_msg("left in .staging: %s", de->d_name);
    }
    closedir(d);
}

static void refused_with(fx_t *fx, const realm_buf_t *zip, const realm_pkg_limits_t *lim,
                         const char *msg)
{
    char err[512] = "";
    realm_pkg_info_t info;
    assert_int_equal(realm_pkg_store_put(fx->st, zip->data, zip->len, lim, &info, err, sizeof(err)),
                     -1);
    assert_string_equal(err, msg);
    assert_clean(fx);
}

/* Builds a zip of ents and checks it is refused with msg. */
static void zip_refused(fx_t *fx, const zent_t *ents, size_t n, const char *msg)
{
    realm_buf_t z;
    realm_buf_init(&z);
    make_zip(ents, n, &z);
    refused_with(fx, &z, &default_limits, msg);
    realm_buf_dispose(&z);
}

static void put_ok(fx_t *fx, const realm_buf_t *zip, realm_pkg_info_t *info)
{
    char err[512] = "";
    int rc =
        realm_pkg_store_put(fx->st, zip->data, zip->len, &default_limits, info, err, sizeof(err));
    if (rc != 0) print_error("put: %s\n", err);
    assert_int_equal(rc, 0);
}

/* lstat of tree/rel; returns the mode. */
static mode_t mode_of(const fx_t *fx, const char *hex, const char *rel)
{
    char p[512];
    snprintf(p, sizeof(p), "%s/%s%s%s", fx->root, hex, rel[0] ? "/" : "", rel);
    struct stat sb;
    if (lstat(p, &sb) != 0) fail_msg("lstat %s: %s", p, strerror(errno));
    return sb.st_mode;
}

/* tree/rel (followed if a symlink) is a regular file with perm and data. */
static void assert_file(const fx_t *fx, const char *hex, const char *rel, const char *data,
                        mode_t perm)
{
    char p[512];
    snprintf(p, sizeof(p), "%s/%s/%s", fx->root, hex, rel);
    struct stat sb;
    if (stat(p, &sb) != 0) fail_msg("stat %s: %s", p, strerror(errno));
    assert_int_equal(sb.st_mode, S_IFREG | perm);
    FILE *f = fopen(p, "rb");
    assert_non_null(f);
    char buf[4096];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    assert_string_equal(buf, data);
}

static void assert_link(const fx_t *fx, const char *hex, const char *rel, const char *target)
{
    assert_true(S_ISLNK(mode_of(fx, hex, rel)));
    char p[512], buf[4096];
    snprintf(p, sizeof(p), "%s/%s/%s", fx->root, hex, rel);
    ssize_t n = readlink(p, buf, sizeof(buf) - 1);
    assert_cmp_int(n, >=, 0);
    buf[n] = '\0';
    assert_string_equal(buf, target);
}

static void sha256(const void *data, size_t len, char *hex, char *b64)
{
    unsigned char md[32];
    unsigned int md_len = 0;
    assert_int_equal(EVP_Digest(data, len, md, &md_len, EVP_sha256(), NULL), 1);
    for (unsigned i = 0; i < md_len; i++)
        sprintf(hex + 2 * i, "%02x", md[i]);
    EVP_EncodeBlock((unsigned char *)b64, md, (int)md_len);
}

/* ------------------------------------------------------------------------ */
/* Refusals                                                                  */
/* ------------------------------------------------------------------------ */

static void test_not_a_zip(void **state)
{
    fx_t *fx = *state;
    realm_buf_t z;
    realm_buf_init(&z);
    realm_buf_appends(&z, "this is certainly not a zip file, just some text");
    refused_with(fx, &z, &default_limits,
                 "Code package is not a valid zip file: Not a zip archive");
    realm_buf_reset(&z);
    refused_with(fx, &z, &default_limits, "Code package is not a valid zip file: it is empty");
    realm_buf_dispose(&z);
}

static void test_truncated(void **state)
{
    fx_t *fx = *state;
    static const char text[] = "some text that fills a few bytes of the archive, some text";
    const zent_t ents[] = {{"a.txt", 'f', text, 0, 0, 0}, {"b.txt", 'f', text, 0, 0, 0}};
    realm_buf_t z;
    realm_buf_init(&z);
    make_zip(ents, 2, &z);
    size_t full = z.len;
    const size_t cuts[] = {full - 1, full - 10, full / 2, 30};
    for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
        char err[512] = "";
        realm_pkg_info_t info;
        assert_int_equal(
            realm_pkg_store_put(fx->st, z.data, cuts[i], &default_limits, &info, err, sizeof(err)),
            -1);
        const char *prefix = "Code package is not a valid zip file: ";
        if (strncmp(err, prefix, strlen(prefix)) != 0) fail_msg("cut at %zu: %s", cuts[i], err);
        assert_clean(fx);
    }
    realm_buf_dispose(&z);
}

static void test_too_big(void **state)
{
    fx_t *fx = *state;
    const zent_t ents[] = {{"a.txt", 'f', "hello", 0, 0, 0}};
    realm_buf_t z;
    realm_buf_init(&z);
    make_zip(ents, 1, &z);
    realm_pkg_limits_t lim = default_limits;
    lim.max_zip_bytes = z.len - 1;
    char msg[128];
    snprintf(msg, sizeof(msg), "Code package is %zu bytes; the limit is %zu", z.len, z.len - 1);
    refused_with(fx, &z, &lim, msg);
    realm_buf_dispose(&z);
}

static void test_bad_names(void **state)
{
    fx_t *fx = *state;
    static const struct {
        const char *name;
        const char *msg;
    } cases[] = {
        {"../x", "Code package entry '../x': path leaves the package"},
        {"/abs", "Code package entry '/abs': path is absolute"},
        {"a/../../x", "Code package entry 'a/../../x': path leaves the package"},
        {"a/../b", "Code package entry 'a/../b': path contains a '..' component"},
        {"a\\..\\..\\x", "Code package entry 'a\\..\\..\\x': path leaves the package"},
        {"..\\evil", "Code package entry '..\\evil': path leaves the package"},
        {"\\abs", "Code package entry '\\abs': path is absolute"},
        {"a//b", "Code package entry 'a//b': path has an empty component"},
        {".", "Code package entry '.': path names the package root"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const zent_t ents[] = {{"ok.txt", 'f', "fine", 0, 0, 0},
                               {cases[i].name, 'f', "x", 0, 0, 0}};
        zip_refused(fx, ents, 2, cases[i].msg);
    }
}

/* Names are quoted safely: control characters become '?'. */
static void test_control_chars_shown(void **state)
{
    fx_t *fx = *state;
    const zent_t ents[] = {{"a\tb/../../x", 'f', "x", 0, 0, 0}};
    zip_refused(fx, ents, 1, "Code package entry 'a?b/../../x': path leaves the package");
}

static void test_nul_in_name(void **state)
{
    fx_t *fx = *state;
    const zent_t ents[] = {{"ok.txt", 'f', "fine", 0, 0, 0}, {"aXb.txt", 'f', "x", 0, 0, 0}};
    realm_buf_t z;
    realm_buf_init(&z);
    make_zip(ents, 2, &z);
    assert_int_equal(patch_all(&z, "aXb.txt", "a\0b.txt", 7), 2); /* local + central */
    refused_with(fx, &z, &default_limits, "Code package entry 'a b.txt': name contains a NUL byte");
    realm_buf_dispose(&z);
}

static void test_raw_names(void **state)
{
    fx_t *fx = *state;
    realm_buf_t z;
    realm_buf_init(&z);
    raw_zip_one("", 0, &z);
    refused_with(fx, &z, &default_limits, "Code package has an entry with an empty name");
    realm_buf_reset(&z);
    raw_zip_one("x\0/../../y", 10, &z);
    refused_with(fx, &z, &default_limits,
                 "Code package entry 'x /../../y': name contains a NUL byte");
    /* The hand-made zip itself is fine. */
    realm_buf_reset(&z);
    raw_zip_one("empty.txt", 9, &z);
    realm_pkg_info_t info;
    put_ok(fx, &z, &info);
    assert_file(fx, info.hex, "empty.txt", "", 0444);
    realm_buf_dispose(&z);
}

static void test_symlink_absolute(void **state)
{
    fx_t *fx = *state;
    const zent_t ents[] = {{"lib/", 'd', NULL, 0, 0, 0}, {"lib/link", 'l', "/etc/passwd", 0, 0, 0}};
    zip_refused(fx, ents, 2,
                "Code package entry 'lib/link': symlink target '/etc/passwd' leaves the package");
}

static void test_symlink_dotdot(void **state)
{
    fx_t *fx = *state;
    const zent_t a[] = {{"x", 'l', "../..", 0, 0, 0}};
    zip_refused(fx, a, 1, "Code package entry 'x': symlink target '../..' leaves the package");
    const zent_t b[] = {{"sub/x", 'l', "../../etc/passwd", 0, 0, 0}};
    zip_refused(fx, b, 1,
                "Code package entry 'sub/x': symlink target '../../etc/passwd' leaves the package");
    /* Climbing out and back in is still leaving. */
    const zent_t c[] = {{"sub/x", 'l', "../../store/y", 0, 0, 0}};
    zip_refused(fx, c, 1,
                "Code package entry 'sub/x': symlink target '../../store/y' leaves the package");
    const zent_t d[] = {{"l", 'l', "", 0, 0, 0}};
    zip_refused(fx, d, 1, "Code package entry 'l': symlink target is empty");
}

static void test_symlink_too_long(void **state)
{
    fx_t *fx = *state;
    char *target = malloc(5001);
    memset(target, 'a', 5000);
    target[5000] = '\0';
    const zent_t ents[] = {{"l", 'l', target, 0, 0, 0}};
    zip_refused(fx, ents, 1, "Code package entry 'l': symlink target is longer than 4095 bytes");
    free(target);
}

static void test_symlink_chain_escape(void **state)
{
    fx_t *fx = *state;
    const char *msg = "Code package entry 'p': symlink target 'q/..' goes through symlink 'q'";
    const zent_t a[] = {{"q", 'l', ".", 0, 0, 0}, {"p", 'l', "q/..", 0, 0, 0}};
    zip_refused(fx, a, 2, msg);
    const zent_t b[] = {{"p", 'l', "q/..", 0, 0, 0}, {"q", 'l', ".", 0, 0, 0}}; /* any order */
    zip_refused(fx, b, 2, msg);
    /* Deeper: d/q -> .. is fine on its own, d/p -> q/../.. would escape. */
    const zent_t c[] = {{"d/p", 'l', "q/x", 0, 0, 0}, {"d/q", 'l', "..", 0, 0, 0}};
    zip_refused(fx, c, 2,
                "Code package entry 'd/p': symlink target 'q/x' goes through symlink 'd/q'");
}

static void test_beneath_symlink(void **state)
{
    fx_t *fx = *state;
    const zent_t ents[] = {
        {"l/x", 'f', "payload", 0, 0, 0}, /* before the link: order must not matter */
        {"sub/", 'd', NULL, 0, 0, 0},
        {"l", 'l', "sub", 0, 0, 0},
    };
    zip_refused(fx, ents, 3, "Code package entry 'l/x': lies beneath symlink 'l'");
    const zent_t deeper[] = {{"l", 'l', "sub", 0, 0, 0}, {"l/a/b/c", 'f', "payload", 0, 0, 0}};
    zip_refused(fx, deeper, 2, "Code package entry 'l/a/b/c': lies beneath symlink 'l'");
}

static void test_beneath_file(void **state)
{
    fx_t *fx = *state;
    const zent_t ents[] = {{"a/b", 'f', "x", 0, 0, 0}, {"a", 'f', "y", 0, 0, 0}};
    zip_refused(fx, ents, 2, "Code package entry 'a/b': 'a' is a file, not a directory");
}

static void test_duplicates(void **state)
{
    fx_t *fx = *state;
    const zent_t a[] = {{"a.txt", 'f', "one", 0, 0, 0}, {"./a.txt", 'f', "two", 0, 0, 0}};
    zip_refused(fx, a, 2, "Code package has two entries named 'a.txt'");
    const zent_t b[] = {{"a", 'f', "one", 0, 0, 0}, {"a/", 'd', NULL, 0, 0, 0}};
    zip_refused(fx, b, 2, "Code package has two entries named 'a'");
    const zent_t c[] = {
        {"d/", 'd', NULL, 0, 0, 0}, {"d/l", 'l', "x", 0, 0, 0}, {"./d/l", 'f', "x", 0, 0, 0}};
    zip_refused(fx, c, 3, "Code package has two entries named 'd/l'");

    /* The very same name twice (libzip will not write that: patch it in). */
    const zent_t d[] = {{"a.txt", 'f', "one", 0, 0, 0}, {"b.txt", 'f', "two", 0, 0, 0}};
    realm_buf_t z;
    realm_buf_init(&z);
    make_zip(d, 2, &z);
    assert_int_equal(patch_all(&z, "b.txt", "a.txt", 5), 2);
    refused_with(fx, &z, &default_limits, "Code package has two entries named 'a.txt'");
    realm_buf_dispose(&z);

    /* "./" twice: both are the root, which is ignored, yet still refused. */
    const zent_t e[] = {
        {"./", 'd', NULL, 0, 0, 0}, {"x/", 'd', NULL, 0, 0, 0}, {"a", 'f', "1", 0, 0, 0}};
    realm_buf_init(&z);
    make_zip(e, 3, &z);
    assert_int_equal(patch_all(&z, "x/", "./", 2), 2);
    refused_with(fx, &z, &default_limits, "Code package has two entries with the same name");
    realm_buf_dispose(&z);
}

static void test_too_many_entries(void **state)
{
    fx_t *fx = *state;
    const zent_t ents[] = {
        {"a", 'f', "1", 0, 0, 0}, {"b", 'f', "2", 0, 0, 0}, {"c/", 'd', NULL, 0, 0, 0}};
    realm_buf_t z;
    realm_buf_init(&z);
    make_zip(ents, 3, &z);
    realm_pkg_limits_t lim = default_limits;
    lim.max_entries = 2;
    refused_with(fx, &z, &lim, "Code package has more than 2 entries");
    lim.max_entries = 3;
    char err[256] = "";
    realm_pkg_info_t info;
    assert_int_equal(realm_pkg_store_put(fx->st, z.data, z.len, &lim, &info, err, sizeof(err)), 0);
    assert_int_equal(info.entries, 3);
    realm_buf_dispose(&z);
}

static void test_zip_bomb(void **state)
{
    fx_t *fx = *state;
    size_t len = 10 * 1024 * 1024;
    char *zeros = calloc(1, len);
    const zent_t ents[] = {{"zeros.bin", 'f', zeros, len, 0, 0}};
    realm_buf_t z;
    realm_buf_init(&z);
    make_zip(ents, 1, &z);
    assert_cmp_size(z.len, <, 100 * 1024); /* it is a bomb: deflate shrinks it >100x */
    realm_pkg_limits_t lim = default_limits;
    lim.max_unzipped_bytes = 1024 * 1024;
    refused_with(fx, &z, &lim, "Code package unzips to more than 1048576 bytes");

    /* Declared sizes are not what counts: claim 1 byte, still refused. */
    assert_memory_equal(z.data, "PK\3\4", 4);
    memcpy(z.data + 22, "\1\0\0\0", 4); /* local header: uncompressed size */
    char *cd = memmem(z.data, z.len, "PK\1\2", 4);
    assert_non_null(cd);
    memcpy(cd + 24, "\1\0\0\0", 4); /* central directory: the same */
    refused_with(fx, &z, &lim, "Code package unzips to more than 1048576 bytes");
    realm_buf_dispose(&z);
    free(zeros);
}

static void test_crc_error(void **state)
{
    fx_t *fx = *state;
    static const char data[] = "stored data whose CRC will not match after one flip";
    const zent_t ents[] = {{"ok.txt", 'f', "fine", 0, 0, 0}, {"a.txt", 'f', data, 0, 0, 1}};
    realm_buf_t z;
    realm_buf_init(&z);
    make_zip(ents, 2, &z);
    char *p = memmem(z.data, z.len, data, strlen(data));
    assert_non_null(p);
    p[10] ^= 0x20;
    refused_with(fx, &z, &default_limits,
                 "Code package entry 'a.txt': CRC error (the archive is corrupt)");
    realm_buf_dispose(&z);
}

static void test_unsupported_method(void **state)
{
    fx_t *fx = *state;
    const zent_t ents[] = {{"a.txt", 'f', "data", 0, 0, 1}};
    realm_buf_t z;
    realm_buf_init(&z);
    make_zip(ents, 1, &z);
    /* Method 6 (implode) in the local header (offset 8) and the central one (10). */
    assert_memory_equal(z.data, "PK\3\4", 4);
    z.data[8] = 6;
    char *cd = memmem(z.data, z.len, "PK\1\2", 4);
    assert_non_null(cd);
    cd[10] = 6;
    refused_with(fx, &z, &default_limits,
                 "Code package entry 'a.txt' uses compression method 6, which is not supported");
    realm_buf_dispose(&z);
}

static void test_encrypted(void **state)
{
    fx_t *fx = *state;
    zip_error_t ze;
    zip_error_init(&ze);
    zip_source_t *src = zip_source_buffer_create(NULL, 0, 0, &ze);
    zip_t *za = zip_open_from_source(src, ZIP_TRUNCATE, &ze);
    assert_non_null(za);
    zip_source_keep(src);
    zip_source_t *fs = zip_source_buffer_create("secret data", 11, 0, &ze);
    zip_int64_t idx = zip_file_add(za, "secret.txt", fs, 0);
    assert_cmp_int(idx, >=, 0);
    if (zip_file_set_encryption(za, (zip_uint64_t)idx, ZIP_EM_AES_256, "password") != 0) {
        zip_discard(za);
        zip_source_free(src);
        zip_error_fini(&ze);
        skip(); /* libzip built without crypto */
    }
    assert_int_equal(zip_close(za), 0);
    realm_buf_t z;
    realm_buf_init(&z);
    assert_int_equal(zip_source_open(src), 0);
    char chunk[4096];
    zip_int64_t got;
    while ((got = zip_source_read(src, chunk, sizeof(chunk))) > 0)
        realm_buf_append(&z, chunk, (size_t)got);
    zip_source_close(src);
    zip_source_free(src);
    zip_error_fini(&ze);
    refused_with(
        fx, &z, &default_limits,
        "Code package entry 'secret.txt' is encrypted; encrypted entries are not supported");
    realm_buf_dispose(&z);
}

/* ------------------------------------------------------------------------ */
/* Storing                                                                   */
/* ------------------------------------------------------------------------ */

static const char bootstrap[] = "#!/bin/sh\necho hello\n";
static const char a_txt[] = "alpha\n";
static const char b_txt[] = "bravo bravo\n";
static const char y_txt[] = "why\n";
static const char so_txt[] = "\177ELF pretend\n";

static void make_good(realm_buf_t *z)
{
    const zent_t ents[] = {
        {"bootstrap", 'f', bootstrap, 0, 0755, 0},
        {"./", 'd', NULL, 0, 0, 0}, /* the root itself: ignored */
        {"lib/", 'd', NULL, 0, 0, 0},
        {"lib/b.txt", 'f', b_txt, 0, 0600, 1},
        {"lib/link", 'l', "../a.txt", 0, 0, 0},
        {"lib/libfoo.so", 'l', "libfoo.so.1", 0, 0, 0}, /* a chain, into the package */
        {"lib/libfoo.so.1", 'l', "libfoo.so.1.0", 0, 0, 0},
        {"lib/libfoo.so.1.0", 'f', so_txt, 0, 0700, 0},
        {"a.txt", 'f', a_txt, 0, 0, 0},
        {"./x/./y.txt", 'f', y_txt, 0, 0, 0}, /* x/ is implicit */
        {"empty/", 'd', NULL, 0, 0, 0},
        {"up", 'l', "lib/../a.txt", 0, 0, 0},
    };
    make_zip(ents, sizeof(ents) / sizeof(ents[0]), z);
}

static void check_good_tree(const fx_t *fx, const char *hex)
{
    assert_int_equal(mode_of(fx, hex, ""), S_IFDIR | 0555);
    assert_file(fx, hex, "bootstrap", bootstrap, 0555);
    assert_file(fx, hex, "a.txt", a_txt, 0444);
    assert_int_equal(mode_of(fx, hex, "lib"), S_IFDIR | 0555);
    assert_file(fx, hex, "lib/b.txt", b_txt, 0444);
    assert_link(fx, hex, "lib/link", "../a.txt");
    assert_link(fx, hex, "lib/libfoo.so", "libfoo.so.1");
    assert_link(fx, hex, "lib/libfoo.so.1", "libfoo.so.1.0");
    assert_file(fx, hex, "lib/libfoo.so.1.0", so_txt, 0555);
    assert_file(fx, hex, "lib/link", a_txt, 0444); /* through the link */
    assert_file(fx, hex, "lib/libfoo.so", so_txt, 0555);
    assert_int_equal(mode_of(fx, hex, "x"), S_IFDIR | 0555);
    assert_file(fx, hex, "x/y.txt", y_txt, 0444);
    assert_int_equal(mode_of(fx, hex, "empty"), S_IFDIR | 0555);
    assert_link(fx, hex, "up", "lib/../a.txt");
}

static void test_hash(void **state)
{
    (void)state;
    realm_pkg_info_t info;
    realm_pkg_hash("abc", 3, &info);
    assert_string_equal(info.hex,
                        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    assert_string_equal(info.sha256_b64, "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=");
    assert_int_equal(info.zip_bytes, 3);
    realm_pkg_hash("", 0, &info);
    assert_string_equal(info.hex,
                        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

static void test_good_package(void **state)
{
    fx_t *fx = *state;
    realm_buf_t z;
    realm_buf_init(&z);
    make_good(&z);
    char hex[65], b64[45];
    sha256(z.data, z.len, hex, b64);

    assert_int_equal(realm_pkg_store_has(fx->st, hex), 0);
    realm_pkg_info_t info;
    put_ok(fx, &z, &info);
    assert_string_equal(info.hex, hex);
    assert_string_equal(info.sha256_b64, b64);
    assert_int_equal(info.zip_bytes, z.len);
    assert_int_equal(info.entries, 12);
    size_t unzipped = strlen(bootstrap) + strlen(a_txt) + strlen(b_txt) + strlen(y_txt) +
                      strlen(so_txt) + strlen("../a.txt") + strlen("libfoo.so.1") +
                      strlen("libfoo.so.1.0") + strlen("lib/../a.txt");
    assert_int_equal(info.unzipped_bytes, unzipped);
    assert_int_equal(realm_pkg_store_has(fx->st, hex), 1);
    check_good_tree(fx, hex);

    /* The zip is stored as uploaded, read-only. */
    char p[512];
    realm_pkg_store_zip_path(fx->st, hex, p, sizeof(p));
    struct stat sb;
    assert_int_equal(stat(p, &sb), 0);
    assert_int_equal(sb.st_mode, S_IFREG | 0444);
    assert_int_equal(sb.st_size, z.len);
    FILE *f = fopen(p, "rb");
    assert_non_null(f);
    char *back = malloc(z.len);
    assert_int_equal(fread(back, 1, z.len, f), z.len);
    fclose(f);
    assert_memory_equal(back, z.data, z.len);
    free(back);

    char want[512];
    snprintf(want, sizeof(want), "%s/%s", fx->root, hex);
    realm_pkg_store_tree_path(fx->st, hex, p, sizeof(p));
    assert_string_equal(p, want);
    assert_string_equal(realm_pkg_store_root(fx->st), fx->root);
    realm_buf_dispose(&z);
}

static void test_store_twice(void **state)
{
    fx_t *fx = *state;
    realm_buf_t z;
    realm_buf_init(&z);
    make_good(&z);
    realm_pkg_info_t one, two;
    put_ok(fx, &z, &one);
    put_ok(fx, &z, &two);
    assert_memory_equal(&one, &two, sizeof(one));
    check_good_tree(fx, one.hex);

    /* Still validated: with a lower limit the stored package is refused too. */
    realm_pkg_limits_t lim = default_limits;
    lim.max_unzipped_bytes = 10;
    char err[256] = "";
    assert_int_equal(realm_pkg_store_put(fx->st, z.data, z.len, &lim, &two, err, sizeof(err)), -1);
    assert_string_equal(err, "Code package unzips to more than 10 bytes");
    assert_int_equal(realm_pkg_store_has(fx->st, one.hex), 1);

    /* A half-stored package (tree without zip, as after a crash) is completed. */
    char p[512];
    realm_pkg_store_zip_path(fx->st, one.hex, p, sizeof(p));
    assert_int_equal(unlink(p), 0);
    assert_int_equal(realm_pkg_store_has(fx->st, one.hex), 0);
    put_ok(fx, &z, &two);
    assert_int_equal(realm_pkg_store_has(fx->st, one.hex), 1);
    check_good_tree(fx, one.hex);

    snprintf(p, sizeof(p), "%s/.staging", fx->root);
    DIR *d = opendir(p);
    assert_non_null(d);
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        assert_true(de->d_name[0] == '.');
    closedir(d);
    realm_buf_dispose(&z);
}

typedef struct {
    realm_pkg_store_t *st;
    const realm_buf_t *zip;
    int rc;
    char err[256];
} put_job_t;

static void *put_thread(void *arg)
{
    put_job_t *j = arg;
    realm_pkg_info_t info;
    j->rc = realm_pkg_store_put(j->st, j->zip->data, j->zip->len, &default_limits, &info, j->err,
                                sizeof(j->err));
    return NULL;
}

static void test_store_concurrently(void **state)
{
    fx_t *fx = *state;
    realm_buf_t z;
    realm_buf_init(&z);
    make_good(&z);
    put_job_t jobs[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        jobs[i] = (put_job_t){.st = fx->st, .zip = &z};
        assert_int_equal(pthread_create(&th[i], NULL, put_thread, &jobs[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        if (jobs[i].rc != 0) print_error("thread %d: %s\n", i, jobs[i].err);
        assert_int_equal(jobs[i].rc, 0);
    }
    char hex[65], b64[45];
    sha256(z.data, z.len, hex, b64);
    check_good_tree(fx, hex);
    realm_buf_dispose(&z);
}

static int keep_one(const char *hex, void *data)
{
    return strcmp(hex, data) == 0;
}

static void test_remove_and_gc(void **state)
{
    fx_t *fx = *state;
    const zent_t a[] = {{"a.txt", 'f', "package a", 0, 0, 0}, {"d/e/f.txt", 'f', "deep", 0, 0, 0}};
    const zent_t b[] = {{"b.txt", 'f', "package b", 0, 0, 0}};
    const zent_t c[] = {{"c.txt", 'f', "package c", 0, 0, 0}};
    realm_buf_t za, zb, zc;
    realm_buf_init(&za);
    realm_buf_init(&zb);
    realm_buf_init(&zc);
    make_zip(a, 2, &za);
    make_zip(b, 1, &zb);
    make_zip(c, 1, &zc);
    realm_pkg_info_t ia, ib, ic;
    put_ok(fx, &za, &ia);
    put_ok(fx, &zb, &ib);
    put_ok(fx, &zc, &ic);

    /* Things gc must leave alone. */
    char p[512];
    snprintf(p, sizeof(p), "%s/notes.txt", fx->root);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fclose(f);

    assert_int_equal(realm_pkg_store_gc(fx->st, keep_one, ia.hex), 2);
    assert_int_equal(realm_pkg_store_has(fx->st, ia.hex), 1);
    assert_int_equal(realm_pkg_store_has(fx->st, ib.hex), 0);
    assert_int_equal(realm_pkg_store_has(fx->st, ic.hex), 0);
    assert_int_equal(access(p, F_OK), 0);
    realm_pkg_store_tree_path(fx->st, ib.hex, p, sizeof(p));
    assert_int_equal(access(p, F_OK), -1);
    assert_int_equal(realm_pkg_store_gc(fx->st, keep_one, ia.hex), 0);

    /* remove: read-only trees go; missing is fine; a bad hash is refused. */
    assert_int_equal(realm_pkg_store_remove(fx->st, ia.hex), 0);
    assert_int_equal(realm_pkg_store_has(fx->st, ia.hex), 0);
    realm_pkg_store_tree_path(fx->st, ia.hex, p, sizeof(p));
    assert_int_equal(access(p, F_OK), -1);
    assert_int_equal(realm_pkg_store_remove(fx->st, ia.hex), 0);
    assert_int_equal(realm_pkg_store_remove(fx->st, "../../etc"), -1);
    assert_int_equal(realm_pkg_store_has(fx->st, "../../etc"), 0);

    realm_buf_dispose(&za);
    realm_buf_dispose(&zb);
    realm_buf_dispose(&zc);
}

static void test_open_clears_staging(void **state)
{
    fx_t *fx = *state;
    char p[256];
    snprintf(p, sizeof(p), "%s/.staging/junk/tree/sub", fx->root);
    char cmd[2048];
    snprintf(cmd, sizeof(cmd),
             "mkdir -p '%s' && echo x > '%s/f' && chmod 0444 '%s/f' && "
             "chmod 0555 '%s' '%s/..' && touch '%s/.staging/loose'",
             p, p, p, p, p, fx->root);
    assert_int_equal(system(cmd), 0);
    realm_pkg_store_close(fx->st);
    char err[256] = "";
    fx->st = realm_pkg_store_open(fx->root, err, sizeof(err));
    if (!fx->st) fail_msg("reopen: %s", err);
    assert_clean(fx);
}

/* ------------------------------------------------------------------------ */
/* realm_pkg_zip_dir                                                         */
/* ------------------------------------------------------------------------ */

static void write_file(const char *path, const char *data, mode_t mode)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(data, f);
    fclose(f);
    assert_int_equal(chmod(path, mode), 0);
}

/* A source tree under tmp/src. */
static void make_src(const fx_t *fx, char *src, size_t src_len)
{
    snprintf(src, src_len, "%s/src", fx->tmp);
    char p[512];
    assert_int_equal(mkdir(src, 0755), 0);
    snprintf(p, sizeof(p), "%s/bootstrap", src);
    write_file(p, bootstrap, 0755);
    snprintf(p, sizeof(p), "%s/sub", src);
    assert_int_equal(mkdir(p, 0750), 0);
    snprintf(p, sizeof(p), "%s/sub/data.txt", src);
    write_file(p, b_txt, 0600);
    snprintf(p, sizeof(p), "%s/sub/deeper", src);
    assert_int_equal(mkdir(p, 0755), 0);
    snprintf(p, sizeof(p), "%s/sub/deeper/more.txt", src);
    write_file(p, y_txt, 0664);
    snprintf(p, sizeof(p), "%s/emptydir", src);
    assert_int_equal(mkdir(p, 0755), 0);
    snprintf(p, sizeof(p), "%s/link", src);
    assert_int_equal(symlink("sub/data.txt", p), 0);
    snprintf(p, sizeof(p), "%s/a-file", src); /* sorts before "a/..." names would */
    write_file(p, a_txt, 0644);
}

static void test_zip_dir_round_trip(void **state)
{
    fx_t *fx = *state;
    char src[256];
    make_src(fx, src, sizeof(src));
    realm_buf_t z;
    realm_buf_init(&z);
    char err[512] = "";
    int rc = realm_pkg_zip_dir(src, &z, err, sizeof(err));
    if (rc != 0) fail_msg("zip_dir: %s", err);

    /* Sorted names, directories as "dir/", symlinks as symlinks. */
    zip_error_t ze;
    zip_error_init(&ze);
    zip_source_t *zs = zip_source_buffer_create(z.data, z.len, 0, &ze);
    zip_t *za = zip_open_from_source(zs, ZIP_CHECKCONS | ZIP_RDONLY, &ze);
    assert_non_null(za);
    static const char *const names[] = {
        "a-file", "bootstrap",    "emptydir/",   "link",
        "sub/",   "sub/data.txt", "sub/deeper/", "sub/deeper/more.txt"};
    assert_int_equal(zip_get_num_entries(za, 0), 8);
    for (zip_uint64_t i = 0; i < 8; i++) {
        assert_string_equal(zip_get_name(za, i, 0), names[i]);
        zip_uint8_t opsys;
        zip_uint32_t attr;
        assert_int_equal(zip_file_get_external_attributes(za, i, 0, &opsys, &attr), 0);
        assert_int_equal(opsys, ZIP_OPSYS_UNIX);
        mode_t m = (mode_t)(attr >> 16);
        if (strcmp(names[i], "link") == 0) assert_true(S_ISLNK(m));
        if (strcmp(names[i], "bootstrap") == 0) assert_int_equal(m, S_IFREG | 0755);
        if (strcmp(names[i], "sub/data.txt") == 0) assert_int_equal(m, S_IFREG | 0644);
        if (names[i][strlen(names[i]) - 1] == '/') assert_true(S_ISDIR(m));
        zip_stat_t st;
        assert_int_equal(zip_stat_index(za, i, 0, &st), 0);
        assert_int_equal(st.mtime,
                         mktime(&(struct tm){.tm_year = 80, .tm_mday = 1, .tm_isdst = -1}));
    }
    zip_discard(za);
    zip_error_fini(&ze);

    realm_pkg_info_t info;
    put_ok(fx, &z, &info);
    assert_file(fx, info.hex, "bootstrap", bootstrap, 0555);
    assert_file(fx, info.hex, "a-file", a_txt, 0444);
    assert_file(fx, info.hex, "sub/data.txt", b_txt, 0444);
    assert_file(fx, info.hex, "sub/deeper/more.txt", y_txt, 0444);
    assert_int_equal(mode_of(fx, info.hex, "sub"), S_IFDIR | 0555);
    assert_int_equal(mode_of(fx, info.hex, "emptydir"), S_IFDIR | 0555);
    assert_link(fx, info.hex, "link", "sub/data.txt");
    assert_file(fx, info.hex, "link", b_txt, 0444);
    realm_buf_dispose(&z);
}

static void test_zip_dir_deterministic(void **state)
{
    fx_t *fx = *state;
    char src[256];
    make_src(fx, src, sizeof(src));
    realm_buf_t one, two;
    realm_buf_init(&one);
    realm_buf_init(&two);
    char err[512] = "";
    assert_int_equal(realm_pkg_zip_dir(src, &one, err, sizeof(err)), 0);

    /* Other times and another umask's permission bits change nothing. */
    char p[512];
    snprintf(p, sizeof(p), "%s/sub/data.txt", src);
    struct timespec ts[2] = {{.tv_sec = 1000000000}, {.tv_sec = 1000000000}};
    assert_int_equal(utimensat(AT_FDCWD, p, ts, 0), 0);
    assert_int_equal(chmod(p, 0664), 0);
    /* (directory times change as entries come and go) */
    snprintf(p, sizeof(p), "%s/tmpfile", src);
    write_file(p, "x", 0644);
    assert_int_equal(unlink(p), 0);

    assert_int_equal(realm_pkg_zip_dir(src, &two, err, sizeof(err)), 0);
    assert_int_equal(one.len, two.len);
    assert_memory_equal(one.data, two.data, one.len);
    realm_buf_dispose(&one);
    realm_buf_dispose(&two);
}

static void test_zip_dir_errors(void **state)
{
    fx_t *fx = *state;
    realm_buf_t z;
    realm_buf_init(&z);
    char err[512] = "", want[1024], p[256];

    snprintf(p, sizeof(p), "%s/missing", fx->tmp);
    assert_int_equal(realm_pkg_zip_dir(p, &z, err, sizeof(err)), -1);
    snprintf(want, sizeof(want), "cannot open directory '%s': No such file or directory", p);
    assert_string_equal(err, want);

    snprintf(p, sizeof(p), "%s/empty", fx->tmp);
    assert_int_equal(mkdir(p, 0755), 0);
    assert_int_equal(realm_pkg_zip_dir(p, &z, err, sizeof(err)), -1);
    snprintf(want, sizeof(want), "'%s' is empty: nothing to zip", p);
    assert_string_equal(err, want);

    snprintf(want, sizeof(want), "%s/fifo", p);
    assert_int_equal(mkfifo(want, 0644), 0);
    assert_int_equal(realm_pkg_zip_dir(p, &z, err, sizeof(err)), -1);
    snprintf(want, sizeof(want), "'%s/fifo' is not a regular file, directory or symlink", p);
    assert_string_equal(err, want);
    assert_int_equal(z.len, 0);

    if (geteuid() != 0) { /* root reads anything */
        snprintf(want, sizeof(want), "%s/fifo", p);
        assert_int_equal(unlink(want), 0);
        snprintf(want, sizeof(want), "%s/secret", p);
        write_file(want, "x", 0000);
        assert_int_equal(realm_pkg_zip_dir(p, &z, err, sizeof(err)), -1);
        snprintf(want, sizeof(want), "cannot read '%s/secret': Permission denied", p);
        assert_string_equal(err, want);
    }
    realm_buf_dispose(&z);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hash),
        cmocka_unit_test_setup_teardown(test_not_a_zip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_too_big, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_control_chars_shown, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nul_in_name, setup, teardown),
        cmocka_unit_test_setup_teardown(test_raw_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_symlink_absolute, setup, teardown),
        cmocka_unit_test_setup_teardown(test_symlink_dotdot, setup, teardown),
        cmocka_unit_test_setup_teardown(test_symlink_too_long, setup, teardown),
        cmocka_unit_test_setup_teardown(test_symlink_chain_escape, setup, teardown),
        cmocka_unit_test_setup_teardown(test_beneath_symlink, setup, teardown),
        cmocka_unit_test_setup_teardown(test_beneath_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_duplicates, setup, teardown),
        cmocka_unit_test_setup_teardown(test_too_many_entries, setup, teardown),
        cmocka_unit_test_setup_teardown(test_zip_bomb, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crc_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unsupported_method, setup, teardown),
        cmocka_unit_test_setup_teardown(test_encrypted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_good_package, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_twice, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_concurrently, setup, teardown),
        cmocka_unit_test_setup_teardown(test_remove_and_gc, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_clears_staging, setup, teardown),
        cmocka_unit_test_setup_teardown(test_zip_dir_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_zip_dir_deterministic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_zip_dir_errors, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
