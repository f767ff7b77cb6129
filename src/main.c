/*
 * main.c - the `realm` command: parses the subcommand and its arguments,
 * wires the server, runs the loop. No logic lives here.
 */
#include "api/server.h"
#include "base/log.h"
#include "cli/cli.h"
#include "config/config.h"
#include "exec/spawn.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

static void usage(FILE *out)
{
    fprintf(
        out,
        "Usage: realm <command> [options]\n"
        "\n"
        "Realm runs functions and lets clients call them over WebSockets.\n"
        "\n"
        "Commands:\n"
        "  serve        start the server (realm serve --help for its options)\n"
        "  deploy       create or update a function from a directory or a .zip\n"
        "  functions    list the functions\n"
        "  delete       delete a function\n"
        "  invoke       invoke a function and print its answer\n"
        "  logs         print the end of a function's log\n"
        "  keys         create, list and revoke tenants' keys (realm keys --help)\n"
        "\n"
        "deploy, functions, delete, invoke and logs talk to the control API at --endpoint URL,\n"
        "else $REALM_ENDPOINT, else http://127.0.0.1:9000 (realm CMD --help).\n"
        "\n"
        "Options:\n"
        "  -h, --help     show this help\n"
        "  -V, --version  print the version\n");
}

static int cmd_serve(int argc, char **argv)
{
    realm_config_t cfg;
    char err[512];
    realm_config_defaults(&cfg);
    int rc = realm_config_parse_args(&cfg, argc, argv, err, sizeof(err));
    if (rc == 1) {
        realm_config_print_help(stdout);
        realm_config_dispose(&cfg);
        return 0;
    }
    if (rc != 0) {
        fprintf(stderr, "realm serve: %s\n(see realm serve --help)\n", err);
        realm_config_dispose(&cfg);
        return 2;
    }
    /* Sandboxes bind paths of the data dir: they must be absolute. */
    if (cfg.data_dir[0] != '/') {
        char cwd[4096], abs[8300];
        if (getcwd(cwd, sizeof(cwd)) != NULL) {
            snprintf(abs, sizeof(abs), "%s/%s", cwd, cfg.data_dir);
            realm_config_set(&cfg, "data-dir", abs, err, sizeof(err));
        }
    }
    realm_log_format_t fmt = REALM_LOG_TEXT;
    realm_log_level_t lvl = REALM_LOG_INFO;
    realm_log_format_parse(cfg.log_format, &fmt);
    realm_log_level_parse(cfg.log_level, &lvl);
    realm_log_init(fmt, lvl);

    /* A peer that resets its connection must cost only that connection:
     * writes then fail with EPIPE instead of killing the process. */
    signal(SIGPIPE, SIG_IGN);
    uv_loop_t loop;
    uv_loop_init(&loop);
    realm_server_t *server;
    if (realm_server_new(&loop, &cfg, &server, err, sizeof(err)) != 0) {
        fprintf(stderr, "realm serve: %s\n", err);
        uv_loop_close(&loop);
        realm_config_dispose(&cfg);
        return 1;
    }
    realm_info("realm %s started (data dir %s)", REALM_VERSION, cfg.data_dir);
    realm_server_print_listeners(server, stdout);
    rc = realm_server_run(server);
    realm_server_free(server);
    if (uv_loop_close(&loop) != 0) realm_warn("event loop closed with handles still open");
    realm_config_dispose(&cfg);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(cmd, "-V") == 0 || strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
        printf("realm %s\n", REALM_VERSION);
        return 0;
    }
    if (strcmp(cmd, "serve") == 0) return cmd_serve(argc - 2, argv + 2);
    /* Internal: how the server starts a sandbox inside its cgroups (exec/spawn.h). */
    if (strcmp(cmd, "__spawn") == 0) return realm_spawn_trampoline_main(argc - 2, argv + 2);
    if (realm_cli_has_command(cmd)) return realm_cli_main(cmd, argc - 2, argv + 2);
    fprintf(stderr, "realm: unknown command '%s'\n\n", cmd);
    usage(stderr);
    return 2;
}
