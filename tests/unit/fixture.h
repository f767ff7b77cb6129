/*
 * fixture.h - what the unit tests share: a temporary folder, and asserts
 * that print both sides when they fail.
 *
 * DESIGN: cmocka's assert_int_equal / assert_string_equal already print both
 * values; these cover what tests otherwise wrote by hand as
 * assert_true(a > b), assert_true(strncmp(s, p, n) == 0) or
 * assert_true(len == n && memcmp(...) == 0), which say only "false".
 * Include it after <cmocka.h> (and its <setjmp.h>/<stdarg.h>/<stddef.h>/
 * <stdint.h>). Every test executable is linked with fixture.c.
 *
 *   fx_tmpdir_make(dir, sizeof(dir), "pkg")   -> "/tmp/realm-test-pkg-XXXXXX" made
 *   fx_tmpdir_remove(dir)                     -> removed with everything in it
 *   assert_cmp_int(a, >=, b)                  "a >= b: 3 >= 5 is false"
 *   assert_cmp_size(len, <, cap)              the same for unsigned sizes
 *   assert_prefix(s, "sandbox: ")             s starts with the prefix
 *   assert_contains(s, "needle")              strstr
 *   assert_bytes_equal(p, len, "\x81\x05", 2) same length and bytes (escaped dump)
 *
 * LIFETIME: fx_tmpdir_remove() is safe on a path that was never made ("" or
 * a missing folder) so a teardown can call it on a half-built fixture.
 * THREADS: the test's thread.
 */
#ifndef REALM_TEST_FIXTURE_H
#define REALM_TEST_FIXTURE_H

#include <stddef.h>

/*
 * Makes /tmp/realm-test-TAG-XXXXXX (mkdtemp, mode 0700) and writes its path
 * into dir (dir_len >= 64 is plenty). Returns 0, or -1 with a message
 * printed (dir is then "").
 */
int fx_tmpdir_make(char *dir, size_t dir_len, const char *tag);

/*
 * Removes dir and everything under it, first giving the owner write and
 * search permission on every folder (read-only trees, as the package store
 * makes, included); symbolic links are removed, never followed. Returns 0,
 * or -1 with a message printed. "" and a missing dir are 0.
 */
int fx_tmpdir_remove(const char *dir);

/* Writes a file (created or truncated, mode 0644) holding the NUL-terminated data. 0 or -1. */
int fx_write_file(const char *path, const char *data);

/* ---- asserts that print both sides ---- */

#define assert_cmp_int(a, op, b)                                                                   \
    do {                                                                                           \
        long long fx_a_ = (long long)(a), fx_b_ = (long long)(b);                                  \
        if (!(fx_a_ op fx_b_))                                                                     \
            fx_fail_cmp(#a " " #op " " #b, #op, fx_a_, fx_b_, __FILE__, __LINE__);                 \
    } while (0)

#define assert_cmp_size(a, op, b)                                                                  \
    do {                                                                                           \
        unsigned long long fx_a_ = (unsigned long long)(a), fx_b_ = (unsigned long long)(b);       \
        if (!(fx_a_ op fx_b_))                                                                     \
            fx_fail_cmp_u(#a " " #op " " #b, #op, fx_a_, fx_b_, __FILE__, __LINE__);               \
    } while (0)

#define assert_prefix(s, prefix) fx_assert_prefix((s), (prefix), #s, __FILE__, __LINE__)
#define assert_contains(s, needle) fx_assert_contains((s), (needle), #s, __FILE__, __LINE__)
#define assert_bytes_equal(data, len, expect, expect_len)                                          \
    fx_assert_bytes_equal((data), (len), (expect), (expect_len), #data, __FILE__, __LINE__)

/* The functions behind the macros. */
void fx_fail_cmp(const char *expr, const char *op, long long a, long long b, const char *file,
                 int line);
void fx_fail_cmp_u(const char *expr, const char *op, unsigned long long a, unsigned long long b,
                   const char *file, int line);
void fx_assert_prefix(const char *s, const char *prefix, const char *expr, const char *file,
                      int line);
void fx_assert_contains(const char *s, const char *needle, const char *expr, const char *file,
                        int line);
void fx_assert_bytes_equal(const void *data, size_t len, const void *expect, size_t expect_len,
                           const char *expr, const char *file, int line);

#endif
