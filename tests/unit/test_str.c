/*
 * test_str.c - base/str.h's ids: realm_str_uuid4 is a well-formed version 4
 * UUID, never repeats (also across the blocks of randomness it draws), and a
 * forked child never hands out what its parent will.
 */
#include "base/str.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

static int is_uuid4(const char *u)
{
    if (strlen(u) != 36) return 0;
    for (int i = 0; i < 36; i++) {
        int dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? u[i] != '-' : !strchr("0123456789abcdef", u[i])) return 0;
    }
    return u[14] == '4' && strchr("89ab", u[19]) != NULL;
}

static int by_str(const void *a, const void *b)
{
    return strcmp(a, b);
}

static void test_uuid4_shape_and_unique(void **state)
{
    (void)state;
    enum { N = 20000 }; /* several blocks of 4096 random bytes */
    char(*ids)[37] = malloc(N * sizeof(*ids));
    assert_non_null(ids);
    for (int i = 0; i < N; i++) {
        realm_str_uuid4(ids[i]);
        assert_true(is_uuid4(ids[i]));
    }
    qsort(ids, N, sizeof(*ids), by_str);
    for (int i = 1; i < N; i++)
        assert_true(strcmp(ids[i - 1], ids[i]) != 0);
    free(ids);
}

static void test_uuid4_fork_draws_anew(void **state)
{
    (void)state;
    char first[37];
    realm_str_uuid4(first); /* the parent holds a block now */
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        char c[37];
        realm_str_uuid4(c);
        _exit(write(fds[1], c, 37) == 37 ? 0 : 1);
    }
    char in_child[37] = "", next[37];
    assert_int_equal(read(fds[0], in_child, 37), 37);
    int status;
    assert_int_equal(waitpid(child, &status, 0), child);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    realm_str_uuid4(next); /* what the parent hands out next */
    assert_true(is_uuid4(in_child));
    assert_string_not_equal(in_child, next);
    close(fds[0]);
    close(fds[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_uuid4_shape_and_unique),
        cmocka_unit_test(test_uuid4_fork_draws_anew),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
