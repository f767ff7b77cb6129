/*
 * test_config.c - unit tests for config/config.c: defaults, every option type,
 * the config file parser, the flag parser and their precedence.
 *
 * Config files are written with mkstemp() under /tmp and removed by the test
 * that made them.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "config/config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ------------------------------------------------------------------------ */
/* Helpers                                                                   */
/* ------------------------------------------------------------------------ */

/* Writes len bytes to a new temp file; path must hold 64 bytes. */
static void write_temp_bytes(char *path, const char *text, size_t len)
{
    strcpy(path, "/tmp/realm-test-config-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, len), len);
    assert_int_equal(close(fd), 0);
}

static void write_temp(char *path, const char *text)
{
    write_temp_bytes(path, text, strlen(text));
}

/* realm_config_set() that must succeed (prints the error if it does not). */
static void set_ok(realm_config_t *c, const char *name, const char *value)
{
    char err[256] = "";
    int rc = realm_config_set(c, name, value, err, sizeof(err));
    if (rc != 0) print_error("set %s=%s: %s\n", name, value, err);
    assert_int_equal(rc, 0);
}

/* realm_config_set() that must fail with exactly msg. */
static void set_fails(realm_config_t *c, const char *name, const char *value, const char *msg)
{
    char err[256] = "";
    assert_int_equal(realm_config_set(c, name, value, err, sizeof(err)), -1);
    assert_string_equal(err, msg);
}

static uint64_t set_u64(realm_config_t *c, const char *name, const char *value,
                        const uint64_t *field)
{
    set_ok(c, name, value);
    return *field;
}

static int parse(realm_config_t *c, int argc, char **argv, char *err, size_t err_len)
{
    err[0] = '\0';
    return realm_config_parse_args(c, argc, argv, err, err_len);
}

/* ------------------------------------------------------------------------ */
/* Defaults and dispose                                                      */
/* ------------------------------------------------------------------------ */

static void test_defaults(void **state)
{
    realm_config_t c;
    memset(&c, 0xa5, sizeof(c)); /* defaults must not read or free what was there */
    realm_config_defaults(&c);
    assert_string_equal(c.host, "127.0.0.1");
    assert_int_equal(c.port, 8080);
    assert_int_equal(c.control_port, 9000);
    assert_int_equal(c.runtime_port, 9001);
    assert_int_equal(c.metrics_port, 9090);
    assert_string_equal(c.data_dir, "./realm-data");
    assert_string_equal(c.log_format, "text");
    assert_string_equal(c.log_level, "info");
    assert_int_equal(c.max_message_bytes, 16u * 1024 * 1024);
    assert_int_equal(c.max_send_queue_bytes, 32u * 1024 * 1024);
    assert_int_equal(c.max_header_bytes, 16u * 1024);
    assert_int_equal(c.max_body_bytes, 6u * 1024 * 1024);
    assert_int_equal(c.header_timeout_ms, 10000);
    assert_int_equal(c.idle_timeout_ms, 60000);
    assert_int_equal(c.ws_ping_interval_ms, 30000);
    assert_int_equal(c.shutdown_grace_ms, 10000);
    assert_int_equal(c.max_calls_per_connection, 1024);
    realm_config_dispose(&c);
}

static void test_dispose_zeroed_and_twice(void **state)
{
    realm_config_t c;
    memset(&c, 0, sizeof(c));
    realm_config_dispose(&c);

    realm_config_defaults(&c);
    realm_config_dispose(&c);
    assert_null(c.host);
    assert_null(c.data_dir);
    assert_null(c.log_format);
    assert_null(c.log_level);
    realm_config_dispose(&c); /* a second dispose must not double-free */
}

/* ------------------------------------------------------------------------ */
/* realm_config_set, one type at a time                                      */
/* ------------------------------------------------------------------------ */

static void test_set_string(void **state)
{
    realm_config_t c;
    realm_config_defaults(&c);
    set_ok(&c, "host", "::1");
    assert_string_equal(c.host, "::1");
    set_ok(&c, "data-dir", "/var/lib/realm data");
    assert_string_equal(c.data_dir, "/var/lib/realm data");
    set_fails(&c, "host", "", "--host: the value must not be empty");
    assert_string_equal(c.host, "::1");
    set_fails(&c, "host", NULL, "--host: missing value");
    realm_config_dispose(&c);
}

static void test_set_port(void **state)
{
    realm_config_t c;
    realm_config_defaults(&c);
    set_ok(&c, "port", "0");
    assert_int_equal(c.port, 0);
    set_ok(&c, "port", "65535");
    assert_int_equal(c.port, 65535);
    set_ok(&c, "metrics-port", "1");
    assert_int_equal(c.metrics_port, 1);

    set_fails(&c, "port", "70000", "--port: '70000' is not a port (0-65535)");
    set_fails(&c, "port", "65536", "--port: '65536' is not a port (0-65535)");
    set_fails(&c, "port", "-1", "--port: '-1' is not a port (0-65535)");
    set_fails(&c, "port", "+80", "--port: '+80' is not a port (0-65535)");
    set_fails(&c, "port", " 80", "--port: ' 80' is not a port (0-65535)");
    set_fails(&c, "port", "80x", "--port: '80x' is not a port (0-65535)");
    set_fails(&c, "port", "", "--port: '' is not a port (0-65535)");
    set_fails(&c, "control-port", "18446744073709551696",
              "--control-port: '18446744073709551696' is not a port (0-65535)");
    assert_int_equal(c.port, 65535); /* failures leave the field alone */
    realm_config_dispose(&c);
}

static void test_set_size_suffixes(void **state)
{
    realm_config_t c;
    realm_config_defaults(&c);
    const uint64_t *f = &c.max_message_bytes;
    const char *n = "max-message-bytes";
    assert_int_equal(set_u64(&c, n, "1", f), 1);
    assert_int_equal(set_u64(&c, n, "123456", f), 123456);
    assert_int_equal(set_u64(&c, n, "3k", f), 3 * 1024);
    assert_int_equal(set_u64(&c, n, "3K", f), 3 * 1024);
    assert_int_equal(set_u64(&c, n, "3KB", f), 3 * 1024);
    assert_int_equal(set_u64(&c, n, "3KiB", f), 3 * 1024);
    assert_int_equal(set_u64(&c, n, "5m", f), 5 * 1024 * 1024);
    assert_int_equal(set_u64(&c, n, "5M", f), 5 * 1024 * 1024);
    assert_int_equal(set_u64(&c, n, "5MB", f), 5 * 1024 * 1024);
    assert_int_equal(set_u64(&c, n, "5MiB", f), 5 * 1024 * 1024);
    assert_int_equal(set_u64(&c, n, "2g", f), UINT64_C(2) << 30);
    assert_int_equal(set_u64(&c, n, "2G", f), UINT64_C(2) << 30);
    assert_int_equal(set_u64(&c, n, "2GB", f), UINT64_C(2) << 30);
    assert_int_equal(set_u64(&c, n, "2GiB", f), UINT64_C(2) << 30);
    assert_int_equal(set_u64(&c, n, "18446744073709551615", f), UINT64_MAX);
    assert_int_equal(set_u64(&c, n, "17179869183G", f), UINT64_MAX - ((UINT64_C(1) << 30) - 1));
    realm_config_dispose(&c);
}

static void test_set_size_invalid(void **state)
{
    realm_config_t c;
    realm_config_defaults(&c);
    static const char *const garbage[] = {"",  "abc",  "-1",  "+1", "1x",   "1 K", "1KK",
                                          "K", "1kib", "1Ki", "1T", "1.5M", " 1"};
    for (size_t i = 0; i < sizeof(garbage) / sizeof(garbage[0]); i++) {
        char want[256];
        snprintf(want, sizeof(want),
                 "--max-body-bytes: '%s' is not a size (a byte count, optionally with a suffix "
                 "k/K/KB/KiB, m/M/MB/MiB or g/G/GB/GiB)",
                 garbage[i]);
        set_fails(&c, "max-body-bytes", garbage[i], want);
    }
    set_fails(&c, "max-body-bytes", "18446744073709551616",
              "--max-body-bytes: '18446744073709551616' is too large "
              "(at most 18446744073709551615 bytes)");
    set_fails(&c, "max-body-bytes", "17179869184G",
              "--max-body-bytes: '17179869184G' is too large "
              "(at most 18446744073709551615 bytes)");
    assert_int_equal(c.max_body_bytes, 6 * 1024 * 1024);

    /* 0 is a valid body limit (no body at all), but not for these. */
    set_ok(&c, "max-body-bytes", "0");
    assert_int_equal(c.max_body_bytes, 0);
    set_fails(&c, "max-message-bytes", "0",
              "--max-message-bytes: '0' is too small (at least 1 bytes)");
    set_fails(&c, "max-send-queue-bytes", "0",
              "--max-send-queue-bytes: '0' is too small (at least 1 bytes)");
    set_fails(&c, "max-header-bytes", "1023",
              "--max-header-bytes: '1023' is too small (at least 1024 bytes)");
    set_fails(&c, "max-header-bytes", "0",
              "--max-header-bytes: '0' is too small (at least 1024 bytes)");
    set_ok(&c, "max-header-bytes", "1k");
    assert_int_equal(c.max_header_bytes, 1024);
    realm_config_dispose(&c);
}

static void test_set_duration(void **state)
{
    realm_config_t c;
    realm_config_defaults(&c);
    set_ok(&c, "header-timeout-ms", "1");
    assert_int_equal(c.header_timeout_ms, 1);
    set_ok(&c, "idle-timeout-ms", "86400000");
    assert_int_equal(c.idle_timeout_ms, 86400000);
    set_ok(&c, "ws-ping-interval-ms", "0"); /* never ping */
    assert_int_equal(c.ws_ping_interval_ms, 0);
    set_ok(&c, "shutdown-grace-ms", "0");
    assert_int_equal(c.shutdown_grace_ms, 0);

    set_fails(&c, "header-timeout-ms", "0",
              "--header-timeout-ms: '0' is too small (at least 1 ms)");
    set_fails(&c, "idle-timeout-ms", "0", "--idle-timeout-ms: '0' is too small (at least 1 ms)");
    set_fails(&c, "idle-timeout-ms", "10s",
              "--idle-timeout-ms: '10s' is not a duration (whole milliseconds)");
    set_fails(&c, "idle-timeout-ms", "1k",
              "--idle-timeout-ms: '1k' is not a duration (whole milliseconds)");
    set_fails(&c, "shutdown-grace-ms", "-5",
              "--shutdown-grace-ms: '-5' is not a duration (whole milliseconds)");
    set_fails(&c, "shutdown-grace-ms", "",
              "--shutdown-grace-ms: '' is not a duration (whole milliseconds)");
    set_fails(&c, "ws-ping-interval-ms", "99999999999999999999",
              "--ws-ping-interval-ms: '99999999999999999999' is too large "
              "(at most 18446744073709551615 ms)");
    assert_int_equal(c.idle_timeout_ms, 86400000);
    realm_config_dispose(&c);
}

static void test_set_count(void **state)
{
    realm_config_t c;
    realm_config_defaults(&c);
    set_ok(&c, "max-calls-per-connection", "1");
    assert_int_equal(c.max_calls_per_connection, 1);
    set_ok(&c, "max-calls-per-connection", "100000");
    assert_int_equal(c.max_calls_per_connection, 100000);
    set_fails(&c, "max-calls-per-connection", "0",
              "--max-calls-per-connection: '0' is too small (at least 1)");
    set_fails(&c, "max-calls-per-connection", "2k",
              "--max-calls-per-connection: '2k' is not a number (a whole number)");
    set_fails(&c, "max-calls-per-connection", "-3",
              "--max-calls-per-connection: '-3' is not a number (a whole number)");
    set_fails(&c, "max-calls-per-connection", "18446744073709551616",
              "--max-calls-per-connection: '18446744073709551616' is too large "
              "(at most 18446744073709551615)");
    assert_int_equal(c.max_calls_per_connection, 100000);
    realm_config_dispose(&c);
}

static void test_set_enum(void **state)
{
    realm_config_t c;
    realm_config_defaults(&c);
    set_ok(&c, "log-format", "json");
    assert_string_equal(c.log_format, "json");
    set_ok(&c, "log-format", "text");
    assert_string_equal(c.log_format, "text");
    static const char *const levels[] = {"debug", "info", "warn", "error"};
    for (size_t i = 0; i < 4; i++) {
        set_ok(&c, "log-level", levels[i]);
        assert_string_equal(c.log_level, levels[i]);
    }
    set_fails(&c, "log-format", "xml", "--log-format: 'xml' is not one of text|json");
    set_fails(&c, "log-format", "", "--log-format: '' is not one of text|json");
    set_fails(&c, "log-format", "tex", "--log-format: 'tex' is not one of text|json");
    set_fails(&c, "log-level", "verbose",
              "--log-level: 'verbose' is not one of debug|info|warn|error");
    set_fails(&c, "log-level", "INFO", "--log-level: 'INFO' is not one of debug|info|warn|error");
    assert_string_equal(c.log_level, "error");
    realm_config_dispose(&c);
}

static void test_set_names(void **state)
{
    realm_config_t c;
    realm_config_defaults(&c);
    set_ok(&c, "max_message_bytes", "7");
    assert_int_equal(c.max_message_bytes, 7);
    set_ok(&c, "control_port", "1234");
    assert_int_equal(c.control_port, 1234);
    set_fails(&c, "nope", "1", "unknown option 'nope'");
    set_fails(&c, "por", "1", "unknown option 'por'");
    set_fails(&c, "portx", "1", "unknown option 'portx'");
    set_fails(&c, "", "1", "unknown option ''");
    set_fails(&c, "config", "x", "unknown option 'config'");
    realm_config_dispose(&c);
}

static void test_set_error_truncated(void **state)
{
    realm_config_t c;
    char err[8];
    realm_config_defaults(&c);
    assert_int_equal(realm_config_set(&c, "port", "70000", err, sizeof(err)), -1);
    assert_string_equal(err, "--port:");
    assert_int_equal(realm_config_set(&c, "port", "70000", NULL, 0), -1);
    realm_config_dispose(&c);
}

/* ------------------------------------------------------------------------ */
/* Config file                                                               */
/* ------------------------------------------------------------------------ */

static void test_file_ok(void **state)
{
    char path[64], err[256] = "";
    write_temp(path, "# a comment\n"
                     "\n"
                     "   \t\n"
                     "port = 1111\n"
                     "  control_port=2222   # trailing comment\n"
                     "host = \"a#b \\\"q\\\" c\\\\d\"  # quoted\n"
                     "data-dir = /srv/realm data  \r\n"
                     "log-format=json\n"
                     "max-message-bytes = 4MiB\n"
                     "log_level = \"warn\"\n"
                     "\tmetrics-port\t=\t3333\n"
                     "# the last line has no newline\n"
                     "runtime-port = 4444");
    realm_config_t c;
    realm_config_defaults(&c);
    assert_int_equal(realm_config_load_file(&c, path, err, sizeof(err)), 0);
    assert_string_equal(err, "");
    assert_int_equal(c.port, 1111);
    assert_int_equal(c.control_port, 2222);
    assert_string_equal(c.host, "a#b \"q\" c\\d");
    assert_string_equal(c.data_dir, "/srv/realm data");
    assert_string_equal(c.log_format, "json");
    assert_int_equal(c.max_message_bytes, 4 * 1024 * 1024);
    assert_string_equal(c.log_level, "warn");
    assert_int_equal(c.metrics_port, 3333);
    assert_int_equal(c.runtime_port, 4444);
    assert_int_equal(c.header_timeout_ms, 10000); /* untouched options keep their defaults */
    remove(path);

    /* A backslash before anything but '"' or '\\' is kept (Windows-style paths). */
    write_temp(path, "data-dir = \"C:\\dir\\\\x\"\n");
    assert_int_equal(realm_config_load_file(&c, path, err, sizeof(err)), 0);
    assert_string_equal(c.data_dir, "C:\\dir\\x");
    remove(path);
    realm_config_dispose(&c);
}

static void test_file_empty(void **state)
{
    char path[64], err[256] = "";
    write_temp(path, "");
    realm_config_t c;
    realm_config_defaults(&c);
    assert_int_equal(realm_config_load_file(&c, path, err, sizeof(err)), 0);
    assert_int_equal(c.port, 8080);
    remove(path);
    realm_config_dispose(&c);
}

/* Each case is a one-bad-line file after a good line; the error names line 2. */
static void test_file_errors(void **state)
{
    static const struct {
        const char *line;
        const char *msg;
    } cases[] = {
        {"nope = 1", "unknown option 'nope'"},
        {"port = 70000", "--port: '70000' is not a port (0-65535)"},
        {"port 80", "expected 'name = value'"},
        {"port", "expected 'name = value'"},
        {"= 80", "expected 'name = value'"},
        {"--port = 80", "unknown option '--port'"},
        {"port =", "--port: '' is not a port (0-65535)"},
        {"port = # nothing", "--port: '' is not a port (0-65535)"},
        {"host = \"abc", "unterminated quoted value"},
        {"host = \"abc\\\"", "unterminated quoted value"},
        {"host = \"abc\" x", "unexpected text after the closing quote"},
        {"host = \"\"", "--host: the value must not be empty"},
        {"max-header-bytes = 1000",
         "--max-header-bytes: '1000' is too small (at least 1024 bytes)"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char path[64], err[256] = "", text[128], want[256];
        snprintf(text, sizeof(text), "port = 1\n%s\nport = 2\n", cases[i].line);
        write_temp(path, text);
        realm_config_t c;
        realm_config_defaults(&c);
        assert_int_equal(realm_config_load_file(&c, path, err, sizeof(err)), -1);
        snprintf(want, sizeof(want), "%s:2: %s", path, cases[i].msg);
        assert_string_equal(err, want);
        assert_int_equal(c.port, 1); /* stopped at the bad line */
        remove(path);
        realm_config_dispose(&c);
    }
}

static void test_file_nul_byte(void **state)
{
    char path[64], err[256] = "", want[256];
    static const char text[] = "port = 1\nport = 2\0junk\n";
    write_temp_bytes(path, text, sizeof(text) - 1);
    realm_config_t c;
    realm_config_defaults(&c);
    assert_int_equal(realm_config_load_file(&c, path, err, sizeof(err)), -1);
    snprintf(want, sizeof(want), "%s:2: the line holds a NUL byte", path);
    assert_string_equal(err, want);
    assert_int_equal(c.port, 1);
    remove(path);
    realm_config_dispose(&c);
}

static void test_file_unreadable(void **state)
{
    char err[256] = "";
    realm_config_t c;
    realm_config_defaults(&c);
    assert_int_equal(realm_config_load_file(&c, "/tmp/realm-test-no-such-file", err, sizeof(err)),
                     -1);
    assert_string_equal(err, "/tmp/realm-test-no-such-file: No such file or directory");
    assert_int_equal(realm_config_load_file(&c, "/tmp", err, sizeof(err)), -1);
    assert_string_equal(err, "/tmp: Is a directory");
    realm_config_dispose(&c);
}

/* ------------------------------------------------------------------------ */
/* Command line                                                              */
/* ------------------------------------------------------------------------ */

static void test_args_ok(void **state)
{
    char err[256];
    char *argv[] = {"--port",           "1",  "--host=::1",
                    "--max-body-bytes", "1M", "--log_level=debug",
                    "--data-dir",       "-",  "--ws-ping-interval-ms=0",
                    "--data-dir=--odd"};
    realm_config_t c;
    realm_config_defaults(&c);
    assert_int_equal(parse(&c, 10, argv, err, sizeof(err)), 0);
    assert_string_equal(err, "");
    assert_int_equal(c.port, 1);
    assert_string_equal(c.host, "::1");
    assert_int_equal(c.max_body_bytes, 1024 * 1024);
    assert_string_equal(c.log_level, "debug");
    assert_int_equal(c.ws_ping_interval_ms, 0);
    assert_string_equal(c.data_dir, "--odd");
    assert_int_equal(c.control_port, 9000);

    assert_int_equal(parse(&c, 0, argv, err, sizeof(err)), 0);
    assert_int_equal(c.port, 1);
    realm_config_dispose(&c);
}

static void test_args_errors(void **state)
{
    static const struct {
        int argc;
        char *argv[4];
        const char *msg;
    } cases[] = {
        {1, {"--nope"}, "unknown option '--nope'"},
        {2, {"--nope=1", "--port"}, "unknown option '--nope'"},
        {1, {"-p"}, "unexpected argument '-p'"},
        {1, {"serve"}, "unexpected argument 'serve'"},
        {3, {"--port", "1", "extra"}, "unexpected argument 'extra'"},
        {1, {"--"}, "unexpected argument '--'"},
        {1, {"--port"}, "--port: missing value"},
        {3, {"--port", "--host", "x"}, "--port: missing value"},
        {1, {"--config"}, "--config: missing value"},
        {1, {"--config="}, "--config: missing value"},
        {2, {"--port", "70000"}, "--port: '70000' is not a port (0-65535)"},
        {1, {"--port="}, "--port: '' is not a port (0-65535)"},
        {1, {"--log-format=xml"}, "--log-format: 'xml' is not one of text|json"},
        {2,
         {"--max-header-bytes", "-1"},
         "--max-header-bytes: '-1' is not a size (a byte count, optionally with a suffix "
         "k/K/KB/KiB, m/M/MB/MiB or g/G/GB/GiB)"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char err[256];
        char *argv[4];
        memcpy(argv, cases[i].argv, sizeof(argv));
        realm_config_t c;
        realm_config_defaults(&c);
        assert_int_equal(parse(&c, cases[i].argc, argv, err, sizeof(err)), -1);
        assert_string_equal(err, cases[i].msg);
        realm_config_dispose(&c);
    }
}

static void test_args_help(void **state)
{
    char err[256];
    char *a1[] = {"--help"};
    char *a2[] = {"-h"};
    char *a3[] = {"--port", "70000", "--nope", "stray", "-h"};
    char *a4[] = {"--config", "/tmp/realm-test-no-such-file", "--help"};
    char *a5[] = {"--help=yes"};
    char *a6[] = {"--host", "-h"}; /* -h is the host's value here, not a request for help */
    realm_config_t c;
    realm_config_defaults(&c);
    assert_int_equal(parse(&c, 1, a1, err, sizeof(err)), 1);
    assert_int_equal(parse(&c, 1, a2, err, sizeof(err)), 1);
    assert_int_equal(parse(&c, 5, a3, err, sizeof(err)), 1);
    assert_int_equal(parse(&c, 3, a4, err, sizeof(err)), 1);
    assert_int_equal(parse(&c, 1, a5, err, sizeof(err)), 1);
    assert_int_equal(c.port, 8080); /* help applies nothing */
    assert_int_equal(parse(&c, 2, a6, err, sizeof(err)), 0);
    assert_string_equal(c.host, "-h");
    realm_config_dispose(&c);
}

static void test_args_precedence(void **state)
{
    char path[64], err[256];
    write_temp(path, "port = 1111\nhost = filehost\nmetrics-port = 3333\n");
    char *before[] = {"--port", "2222", "--config", path};
    char *after[] = {"--config", path, "--port=2222"};
    realm_config_t c;

    realm_config_defaults(&c);
    assert_int_equal(parse(&c, 4, before, err, sizeof(err)), 0);
    assert_int_equal(c.port, 2222);
    assert_string_equal(c.host, "filehost");
    assert_int_equal(c.metrics_port, 3333);
    assert_int_equal(c.control_port, 9000);
    realm_config_dispose(&c);

    realm_config_defaults(&c);
    assert_int_equal(parse(&c, 3, after, err, sizeof(err)), 0);
    assert_int_equal(c.port, 2222);
    assert_string_equal(c.host, "filehost");
    realm_config_dispose(&c);
    remove(path);
}

static void test_args_config_twice(void **state)
{
    char p1[64], p2[64], err[256];
    write_temp(p1, "port = 1111\nhost = one\n");
    write_temp(p2, "port = 2222\n");
    char *argv[] = {"--config", p1, "--config=" /* filled below */};
    char eq[80];
    snprintf(eq, sizeof(eq), "--config=%s", p2);
    argv[2] = eq;
    realm_config_t c;
    realm_config_defaults(&c);
    assert_int_equal(parse(&c, 3, argv, err, sizeof(err)), 0);
    assert_int_equal(c.port, 2222);
    assert_string_equal(c.host, "127.0.0.1"); /* only the last file is read */
    realm_config_dispose(&c);
    remove(p1);
    remove(p2);
}

static void test_args_config_errors(void **state)
{
    char path[64], err[256], want[256];
    write_temp(path, "port = 1\nbogus = 2\n");
    char *bad_file[] = {"--port", "5", "--config", path};
    char *missing[] = {"--config", "/tmp/realm-test-no-such-file"};
    realm_config_t c;
    realm_config_defaults(&c);
    assert_int_equal(parse(&c, 4, bad_file, err, sizeof(err)), -1);
    snprintf(want, sizeof(want), "%s:2: unknown option 'bogus'", path);
    assert_string_equal(err, want);
    assert_int_equal(parse(&c, 2, missing, err, sizeof(err)), -1);
    assert_string_equal(err, "/tmp/realm-test-no-such-file: No such file or directory");
    realm_config_dispose(&c);
    remove(path);
}

/* ------------------------------------------------------------------------ */
/* Help                                                                      */
/* ------------------------------------------------------------------------ */

static void test_print_help(void **state)
{
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    assert_non_null(out);
    realm_config_print_help(out);
    assert_int_equal(fclose(out), 0);

    assert_true(strncmp(text, "usage: realm serve [options]\n", 29) == 0);
    static const char *const lines[] = {
        "--config PATH ",
        "--host ADDR ",
        "--port PORT ",
        "--control-port PORT ",
        "--runtime-port PORT ",
        "--metrics-port PORT ",
        "--data-dir DIR ",
        "--log-format text|json ",
        "--log-level debug|info|warn|error ",
        "--max-message-bytes SIZE ",
        "--max-send-queue-bytes SIZE ",
        "--max-header-bytes SIZE ",
        "--max-body-bytes SIZE ",
        "--header-timeout-ms MS ",
        "--idle-timeout-ms MS ",
        "--ws-ping-interval-ms MS ",
        "--shutdown-grace-ms MS ",
        "--max-calls-per-connection N ",
        "-h, --help ",
        "(default: 127.0.0.1)\n",
        "(default: 8080)\n",
        "(default: 16MiB)\n",
        "(default: 6MiB)\n",
        "(default: 1024)\n",
    };
    for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
        if (strstr(text, lines[i]) == NULL) print_error("missing from help: '%s'\n", lines[i]);
        assert_non_null(strstr(text, lines[i]));
    }
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_dispose_zeroed_and_twice),
        cmocka_unit_test(test_set_string),
        cmocka_unit_test(test_set_port),
        cmocka_unit_test(test_set_size_suffixes),
        cmocka_unit_test(test_set_size_invalid),
        cmocka_unit_test(test_set_duration),
        cmocka_unit_test(test_set_count),
        cmocka_unit_test(test_set_enum),
        cmocka_unit_test(test_set_names),
        cmocka_unit_test(test_set_error_truncated),
        cmocka_unit_test(test_file_ok),
        cmocka_unit_test(test_file_empty),
        cmocka_unit_test(test_file_errors),
        cmocka_unit_test(test_file_nul_byte),
        cmocka_unit_test(test_file_unreadable),
        cmocka_unit_test(test_args_ok),
        cmocka_unit_test(test_args_errors),
        cmocka_unit_test(test_args_help),
        cmocka_unit_test(test_args_precedence),
        cmocka_unit_test(test_args_config_twice),
        cmocka_unit_test(test_args_config_errors),
        cmocka_unit_test(test_print_help),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
