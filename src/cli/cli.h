/*
 * cli.h - the `realm deploy`, `realm functions` and `realm delete` commands:
 * thin, blocking clients of the control API (docs/control-api.md).
 *
 * The endpoint is --endpoint URL, else $REALM_ENDPOINT, else
 * http://127.0.0.1:9000 (http:// only for now). Exit codes: 0 success;
 * 1 the request failed (an API error, printed as "realm CMD: TYPE: message",
 * an unreachable endpoint, an unreadable package); 2 a usage error (an
 * unknown option, a missing or malformed value, a bad endpoint URL).
 * Results go to stdout, messages to stderr.
 */
#ifndef REALM_CLI_CLI_H
#define REALM_CLI_CLI_H

/* 1 if cmd is one of the commands realm_cli_main runs, else 0. */
int realm_cli_has_command(const char *cmd);

/*
 * Runs command cmd ("deploy", "functions", "delete") with its arguments
 * (argv[0..argc-1] are what follows the command name on the command line;
 * borrowed for the call). Returns the process exit code (0, 1 or 2, as
 * above); an unknown cmd is a usage error (2).
 */
int realm_cli_main(const char *cmd, int argc, char **argv);

/*
 * `realm keys create|list|revoke` (cli/keys.c): argv[0] is the subcommand,
 * argv[1..argc-1] its arguments (borrowed for the call). Works on the data
 * dir's auth.db directly, not through the control API. Returns the exit
 * code (0, 1 or 2, as above).
 */
int realm_cli_keys_main(int argc, char **argv);

#endif
