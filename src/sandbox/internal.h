/*
 * internal.h - shared by the sandbox module's files (not a public header).
 */
#ifndef REALM_SANDBOX_INTERNAL_H
#define REALM_SANDBOX_INTERNAL_H

#include <stddef.h>

/*
 * A new close-on-exec memfd named name holding len bytes of data, offset 0.
 * Returns 0 and the fd in *fd_out, or a negative errno.
 */
int realm_sandbox_memfd(const char *name, const void *data, size_t len, int *fd_out);

#endif
