/*
 * fixture.c - the unit tests' shared fixture (see fixture.h).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* nftw's FTW_DEPTH, FTW_PHYS */
#endif
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "fixture.h"

#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- the temporary folder ---- */

int fx_tmpdir_make(char *dir, size_t dir_len, const char *tag)
{
    int n = snprintf(dir, dir_len, "/tmp/realm-test-%s-XXXXXX", tag);
    if (n < 0 || (size_t)n >= dir_len || !mkdtemp(dir)) {
        print_error("fx_tmpdir_make(%s): %s\n", tag,
                    n >= 0 && (size_t)n < dir_len ? strerror(errno) : "name too long");
        if (dir_len) dir[0] = '\0';
        return -1;
    }
    return 0;
}

/* Pre-order: make every folder writable and searchable so its entries can go. */
static int on_make_writable(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    if (type == FTW_D || type == FTW_DNR) chmod(path, (st->st_mode & 07777) | S_IRWXU);
    return 0;
}

static int on_remove(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    int rc = type == FTW_DP ? rmdir(path) : unlink(path);
    if (rc != 0 && errno != ENOENT) {
        print_error("fx_tmpdir_remove: %s: %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}

int fx_tmpdir_remove(const char *dir)
{
    struct stat st;
    if (!dir || !*dir || lstat(dir, &st) != 0) return 0;
    nftw(dir, on_make_writable, 16, FTW_PHYS);
    return nftw(dir, on_remove, 16, FTW_DEPTH | FTW_PHYS) == 0 ? 0 : -1;
}

int fx_write_file(const char *path, const char *data)
{
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    size_t len = strlen(data);
    int ok = fwrite(data, 1, len, f) == len;
    return fclose(f) == 0 && ok ? 0 : -1;
}

/* ---- asserts ---- */

void fx_fail_cmp(const char *expr, const char *op, long long a, long long b, const char *file,
                 int line)
{
    print_error("%s: %lld %s %lld is false\n", expr, a, op, b);
    _fail(file, line);
}

void fx_fail_cmp_u(const char *expr, const char *op, unsigned long long a, unsigned long long b,
                   const char *file, int line)
{
    print_error("%s: %llu %s %llu is false\n", expr, a, op, b);
    _fail(file, line);
}

void fx_assert_prefix(const char *s, const char *prefix, const char *expr, const char *file,
                      int line)
{
    if (s && strncmp(s, prefix, strlen(prefix)) == 0) return;
    print_error("%s = \"%s\" does not start with \"%s\"\n", expr, s ? s : "(null)", prefix);
    _fail(file, line);
}

void fx_assert_contains(const char *s, const char *needle, const char *expr, const char *file,
                        int line)
{
    if (s && strstr(s, needle)) return;
    print_error("%s = \"%s\" does not contain \"%s\"\n", expr, s ? s : "(null)", needle);
    _fail(file, line);
}

/* Prints up to 256 bytes, escaping what is not printable ASCII. */
static void dump(const char *what, const unsigned char *p, size_t len)
{
    char out[256 * 4 + 8];
    size_t o = 0;
    for (size_t i = 0; i < len && i < 256; i++) {
        if (p[i] >= 0x20 && p[i] < 0x7f && p[i] != '\\')
            out[o++] = (char)p[i];
        else
            o += (size_t)snprintf(out + o, sizeof(out) - o, "\\x%02x", p[i]);
    }
    out[o] = '\0';
    print_error("  %s (%zu bytes): \"%s\"%s\n", what, len, out, len > 256 ? "..." : "");
}

void fx_assert_bytes_equal(const void *data, size_t len, const void *expect, size_t expect_len,
                           const char *expr, const char *file, int line)
{
    if (len == expect_len && (len == 0 || memcmp(data, expect, len) == 0)) return;
    print_error("%s differs from what was expected:\n", expr);
    dump("got", data, len);
    dump("expected", expect, expect_len);
    _fail(file, line);
}
