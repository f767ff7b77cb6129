/*
 * test_fnlog.c - function logs (exec/fnlog.h): the file is made with its
 * folders on the first write, rotated to NAME.log.1 (one generation) when a
 * write would pass the limit; a log without a folder writes nothing; an
 * invocation's tail keeps the last 4 KB; stream names have Lambda's shape.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "exec/fnlog.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static long file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

static void rm_tree(const char *dir)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

static void file_and_rotation(void **state)
{
    (void)state;
    char dir[] = "/tmp/realm-fnlog-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char logs[300], path[400], old[400];
    snprintf(logs, sizeof(logs), "%s/logs", dir);
    snprintf(path, sizeof(path), "%s/_/fn.log", logs);
    snprintf(old, sizeof(old), "%s/_/fn.log.1", logs);

    realm_fnlog_t *l = realm_fnlog_new(logs, "", "fn", 100);
    assert_int_equal(file_size(path), -1); /* nothing before the first write */
    char line[60];
    memset(line, 'a', sizeof(line));
    realm_fnlog_write(l, line, sizeof(line));
    assert_int_equal(file_size(path), 60);
    realm_fnlog_write(l, line, sizeof(line)); /* 120 > 100: rotated first */
    assert_int_equal(file_size(old), 60);
    assert_int_equal(file_size(path), 60);
    realm_fnlog_free(l);

    /* Reopened, it counts what the file holds already. */
    l = realm_fnlog_new(logs, "", "fn", 100);
    realm_fnlog_write(l, line, 30);
    assert_int_equal(file_size(path), 90);
    realm_fnlog_write(l, line, 30);
    assert_int_equal(file_size(path), 30);
    assert_int_equal(file_size(old), 90);
    realm_fnlog_free(l);

    /* A tenant has a folder of its own. */
    l = realm_fnlog_new(logs, "acme", "fn", 100);
    realm_fnlog_write(l, "x\n", 2);
    realm_fnlog_free(l);
    snprintf(path, sizeof(path), "%s/acme/fn.log", logs);
    assert_int_equal(file_size(path), 2);

    /* No folder: nothing written, nothing made. */
    l = realm_fnlog_new(NULL, "", "fn", 100);
    realm_fnlog_write(l, "x\n", 2);
    realm_fnlog_free(l);
    realm_fnlog_free(NULL);
    rm_tree(dir);
}

static void tail_keeps_the_last_4k(void **state)
{
    (void)state;
    realm_buf_t t;
    realm_buf_init(&t);
    const char *v;
    size_t n;
    realm_fnlog_tail_view(&t, &v, &n);
    assert_int_equal(n, 0);
    assert_non_null(v);
    char chunk[1000];
    for (int i = 0; i < 20; i++) {
        memset(chunk, 'a' + i, sizeof(chunk));
        realm_fnlog_tail_append(&t, chunk, sizeof(chunk));
        assert_true(t.len <= 2 * REALM_FNLOG_TAIL_BYTES + sizeof(chunk));
    }
    realm_fnlog_tail_view(&t, &v, &n);
    assert_int_equal(n, REALM_FNLOG_TAIL_BYTES);
    assert_int_equal(v[n - 1], 'a' + 19);
    assert_int_equal(v[n - 1000], 'a' + 19);
    assert_int_equal(v[n - 1001], 'a' + 18);
    realm_buf_dispose(&t);
}

static void stream_name_shape(void **state)
{
    (void)state;
    char s[96];
    realm_fnlog_stream_name(s, sizeof(s), "$LATEST");
    /* YYYY/MM/DD/[$LATEST]<32 hex> */
    assert_int_equal(strlen(s), 10 + 1 + 9 + 32);
    assert_int_equal(s[4], '/');
    assert_int_equal(s[7], '/');
    assert_memory_equal(s + 10, "/[$LATEST]", 10);
    for (size_t i = 20; i < strlen(s); i++)
        assert_non_null(strchr("0123456789abcdef", s[i]));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(file_and_rotation),
        cmocka_unit_test(tail_keeps_the_last_4k),
        cmocka_unit_test(stream_name_shape),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
