/*
 * internal.h - shared by the package module's files (not a public header).
 */
#ifndef REALM_PKG_INTERNAL_H
#define REALM_PKG_INTERNAL_H

#include <stddef.h>

/* Formats a message into err (when given) and returns -1. */
int realm_pkg_fail(char *err, size_t err_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
