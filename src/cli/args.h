/*
 * args.h - argument helpers shared by the CLI commands.
 */
#ifndef REALM_CLI_ARGS_H
#define REALM_CLI_ARGS_H

#include <stdio.h>

/* Prints "realm CMD: <message>" and the usage to stderr; returns 2 (the exit code). */
int realm_cli_usage_error(const char *cmd, void (*usage)(FILE *), const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/*
 * Is argv[*i] the option `name` taking a value ("--name V" or "--name=V")?
 * Returns 1 and sets *val (advancing *i past a separate value), 0 if it is
 * another option, -1 if the value is missing.
 */
int realm_cli_opt_value(int argc, char **argv, int *i, const char *name, const char **val);
/* Is a "-h" or "--help"? */
int realm_cli_is_help(const char *a);

#endif
