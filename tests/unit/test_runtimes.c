/*
 * test_runtimes.c - the runtime table (runtimes/runtimes.h): names and
 * aliases resolve to their canonical row, each row says how it starts, the
 * accepted-names list the control API quotes is the one it quoted before the
 * table existed, and the marker the server probes for is a bootstrap of ours;
 * the probe takes a row's exact version from its own interpreter and refuses
 * one that is missing, fails, or is of another version.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "runtimes/runtimes.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void names_and_aliases(void **state)
{
    (void)state;
    static const char *pairs[][2] = {
        {"nodejs18.x", "nodejs18.x"},     {"nodejs20.x", "nodejs20.x"},
        {"nodejs22.x", "nodejs22.x"},     {"nodejs24.x", "nodejs24.x"},
        {"python3.11", "python3.11"},     {"python3.12", "python3.12"},
        {"python3.13", "python3.13"},     {"provided", "provided"},
        {"provided.al2", "provided.al2"}, {"provided.al2023", "provided.al2023"},
        {"nodejs18", "nodejs18.x"},       {"nodejs20", "nodejs20.x"},
        {"nodejs22", "nodejs22.x"},       {"nodejs24", "nodejs24.x"},
        {"python311", "python3.11"},      {"python312", "python3.12"},
        {"python313", "python3.13"},
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
    /* Each Node major runs its own binary: npm's package, bound at /var/lang. */
    static const char *majors[][3] = {{"nodejs18.x", "lang/node_modules/node18", "v18."},
                                      {"nodejs20.x", "lang/node_modules/node20", "v20."},
                                      {"nodejs22.x", "lang/node_modules/node22", "v22."},
                                      {"nodejs24.x", "lang/node_modules/node24", "v24."}};
    for (size_t i = 0; i < 4; i++) {
        const realm_runtimes_entry_t *node = realm_runtimes_find(majors[i][0]);
        assert_string_equal(node->argv[0], "/var/lang/bin/node");
        assert_string_equal(node->argv[1], "/opt/bootstrap.js");
        assert_null(node->argv[2]);
        assert_string_equal(node->dir, "node");
        assert_string_equal(node->lang, majors[i][1]);
        assert_string_equal(node->version, majors[i][2]);
        assert_true(node->binds_node_modules);
        assert_true(node->needs_handler);
        assert_string_equal(node->env[0], "NODE_PATH=/opt/node_modules:/var/runtime/node_modules");
        assert_null(node->install);
    }

    const realm_runtimes_entry_t *py = realm_runtimes_find("python3.12");
    assert_string_equal(py->argv[0], "/usr/bin/python3.12");
    assert_string_equal(py->version, "3.12.");
    assert_null(py->lang);
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
    assert_null(own->version);
    assert_null(own->lang);

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
    assert_int_equal(n, 10);
}

static void names_list(void **state)
{
    (void)state;
    static const char want[] = "nodejs18.x, nodejs20.x, nodejs22.x, nodejs24.x, python3.11, "
                               "python3.12, python3.13, provided, provided.al2, provided.al2023";
    char out[256];
    assert_int_equal(realm_runtimes_names(out, sizeof(out)), strlen(want));
    assert_string_equal(out, want);
    char small[12];
    assert_int_equal(realm_runtimes_names(small, sizeof(small)), strlen(want));
    assert_string_equal(small, "nodejs18.x,");
}

/* Before any probe (unit tests, tools): every row available, version "". */
static void before_the_probe(void **state)
{
    (void)state;
    const realm_runtimes_entry_t *rt;
    for (size_t i = 0; (rt = realm_runtimes_at(i)) != NULL; i++) {
        assert_string_equal(realm_runtimes_version(rt), "");
        assert_string_equal(realm_runtimes_why(rt), "");
    }
    assert_null(realm_runtimes_version(NULL));
}

static void fake_interpreter(const char *dir, const char *major, const char *script)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/lang/node_modules/node%s/bin", dir, major);
    char cmd[700];
    snprintf(cmd, sizeof(cmd), "mkdir -p '%s'", path);
    assert_int_equal(system(cmd), 0);
    strcat(path, "/node");
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "#!/bin/sh\n%s\n", script);
    fclose(f);
    assert_int_equal(chmod(path, 0755), 0);
}

/*
 * The probe runs each row's own interpreter: a right major is available with
 * its exact version; another major, a failing one and a missing one are
 * refused with the reason; Python rows follow what this machine has.
 */
static void the_probe(void **state)
{
    (void)state;
    char dir[] = "/tmp/realm-rt-XXXXXX";
    assert_non_null(mkdtemp(dir));
    fake_interpreter(dir, "22", "echo v22.23.5");
    fake_interpreter(dir, "18", "echo v20.1.0");      /* the wrong major: never a substitute */
    fake_interpreter(dir, "24", "echo oops; exit 3"); /* does not run */
    /* node20 is not installed at all. */
    size_t n = realm_runtimes_probe(dir);

    assert_string_equal(realm_runtimes_version(realm_runtimes_find("nodejs22.x")), "v22.23.5");
    assert_null(realm_runtimes_version(realm_runtimes_find("nodejs18.x")));
    assert_non_null(strstr(realm_runtimes_why(realm_runtimes_find("nodejs18.x")),
                           "is version 'v20.1.0', not v18.*"));
    assert_null(realm_runtimes_version(realm_runtimes_find("nodejs20.x")));
    assert_non_null(strstr(realm_runtimes_why(realm_runtimes_find("nodejs20.x")),
                           "/lang/node_modules/node20/bin/node: not installed"));
    assert_null(realm_runtimes_version(realm_runtimes_find("nodejs24.x")));
    assert_non_null(strstr(realm_runtimes_why(realm_runtimes_find("nodejs24.x")), "status 3"));
    assert_string_equal(realm_runtimes_version(realm_runtimes_find("provided.al2")), "");

    size_t want = 1 + 3; /* nodejs22.x and the three provided */
    static const char *pys[][2] = {{"python3.11", "/usr/bin/python3.11"},
                                   {"python3.12", "/usr/bin/python3.12"},
                                   {"python3.13", "/usr/bin/python3.13"}};
    char avail[512], list[512] = "nodejs22.x";
    for (size_t i = 0; i < 3; i++) {
        const char *v = realm_runtimes_version(realm_runtimes_find(pys[i][0]));
        if (access(pys[i][1], X_OK) != 0) {
            assert_null(v);
            assert_non_null(
                strstr(realm_runtimes_why(realm_runtimes_find(pys[i][0])), "not installed"));
            continue;
        }
        assert_non_null(v); /* "3.11.2": starts with the row's minor */
        assert_int_equal(strncmp(v, pys[i][0] + 6, 4), 0);
        want++;
        strcat(list, ", ");
        strcat(list, pys[i][0]);
    }
    strcat(list, ", provided, provided.al2, provided.al2023");
    assert_int_equal(n, want);
    assert_int_equal(realm_runtimes_available(avail, sizeof(avail)), strlen(list));
    assert_string_equal(avail, list);

    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(names_and_aliases), cmocka_unit_test(how_each_starts),
        cmocka_unit_test(every_row),         cmocka_unit_test(names_list),
        cmocka_unit_test(before_the_probe),  cmocka_unit_test(the_probe),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
