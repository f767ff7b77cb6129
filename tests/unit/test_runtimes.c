/*
 * test_runtimes.c - the runtime table (runtimes/runtimes.h): names and
 * aliases resolve to their canonical row, each row says how it starts, the
 * accepted-names list the control API quotes is the one it quoted before the
 * table existed, and the marker the server probes for is a bootstrap of ours.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "runtimes/runtimes.h"

#include <stdio.h>
#include <string.h>

static void names_and_aliases(void **state)
{
    (void)state;
    static const char *pairs[][2] = {
        {"nodejs18.x", "nodejs18.x"},     {"nodejs20.x", "nodejs20.x"},
        {"nodejs22.x", "nodejs22.x"},     {"python3.11", "python3.11"},
        {"python3.12", "python3.12"},     {"provided", "provided"},
        {"provided.al2", "provided.al2"}, {"provided.al2023", "provided.al2023"},
        {"nodejs18", "nodejs18.x"},       {"nodejs20", "nodejs20.x"},
        {"nodejs22", "nodejs22.x"},       {"python311", "python3.11"},
        {"python312", "python3.12"},
    };
    for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
        const realm_runtimes_entry_t *rt = realm_runtimes_find(pairs[i][0]);
        assert_non_null(rt);
        assert_string_equal(rt->name, pairs[i][1]);
    }
    assert_null(realm_runtimes_find("java21"));
    assert_null(realm_runtimes_find("nodejs20.X"));
    assert_null(realm_runtimes_find(""));
    assert_null(realm_runtimes_find(NULL));
}

static void how_each_starts(void **state)
{
    (void)state;
    const realm_runtimes_entry_t *node = realm_runtimes_find("nodejs20.x");
    assert_string_equal(node->argv[0], "/usr/bin/node");
    assert_string_equal(node->argv[1], "/opt/bootstrap.js");
    assert_null(node->argv[2]);
    assert_string_equal(node->dir, "node");
    assert_true(node->binds_node_modules);
    assert_true(node->needs_handler);
    assert_string_equal(node->env[0], "NODE_PATH=/opt/node_modules:/var/runtime/node_modules");
    assert_string_equal(node->install, "nodejs");

    const realm_runtimes_entry_t *py = realm_runtimes_find("python3.12");
    assert_string_equal(py->argv[0], "/usr/bin/python3");
    assert_string_equal(py->argv[1], "/opt/bootstrap.py");
    assert_string_equal(py->dir, "python");
    assert_false(py->binds_node_modules);
    assert_null(py->env[0]);

    const realm_runtimes_entry_t *own = realm_runtimes_find("provided.al2");
    assert_string_equal(own->argv[0], "/var/task/bootstrap");
    assert_null(own->argv[1]);
    assert_null(own->dir);
    assert_false(own->needs_handler);
    assert_null(own->install);

    assert_string_equal(realm_runtimes_fallback()->name, "provided");
    assert_string_equal(realm_runtimes_custom()->name, "provided.al2023");
    assert_string_equal(realm_runtimes_marker(), "node/bootstrap.js");
}

static void every_row(void **state)
{
    (void)state;
    size_t n = 0;
    const realm_runtimes_entry_t *rt;
    for (; (rt = realm_runtimes_at(n)) != NULL; n++) {
        assert_non_null(rt->argv[0]);
        assert_ptr_equal(realm_runtimes_find(rt->name), rt); /* names are unique */
        /* A bootstrap of ours runs from the folder bound at /opt. */
        if (rt->dir) {
            char want[64];
            snprintf(want, sizeof(want), "%s/%s", REALM_RUNTIMES_SANDBOX_DIR, rt->bootstrap);
            assert_string_equal(rt->argv[1], want);
        }
    }
    assert_int_equal(n, 8);
}

static void names_list(void **state)
{
    (void)state;
    static const char want[] = "nodejs18.x, nodejs20.x, nodejs22.x, python3.11, python3.12, "
                               "provided, provided.al2, provided.al2023";
    char out[256];
    assert_int_equal(realm_runtimes_names(out, sizeof(out)), strlen(want));
    assert_string_equal(out, want);
    char small[12];
    assert_int_equal(realm_runtimes_names(small, sizeof(small)), strlen(want));
    assert_string_equal(small, "nodejs18.x,");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(names_and_aliases),
        cmocka_unit_test(how_each_starts),
        cmocka_unit_test(every_row),
        cmocka_unit_test(names_list),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
