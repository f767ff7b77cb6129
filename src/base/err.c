/*
 * err.c - lookups over the REALM_ERR_MAP table (see err.h).
 */
#include "base/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <uv.h>

const char *realm_err_code(int err)
{
    switch (err) {
#define X(name, value, code, status, aws, msg)                                                     \
    case value:                                                                                    \
        return code;
        REALM_ERR_MAP(X)
#undef X
    }
    return "INTERNAL_ERROR";
}

const char *realm_err_message(int err)
{
    switch (err) {
#define X(name, value, code, status, aws, msg)                                                     \
    case value:                                                                                    \
        return msg;
        REALM_ERR_MAP(X)
#undef X
    }
    return err < 0 && err > -1000 ? uv_strerror(err) : "unknown error";
}

int realm_err_http_status(int err)
{
    switch (err) {
#define X(name, value, code, status, aws, msg)                                                     \
    case value:                                                                                    \
        return status;
        REALM_ERR_MAP(X)
#undef X
    }
    return 500;
}

const char *realm_err_aws_type(int err)
{
    switch (err) {
#define X(name, value, code, status, aws, msg)                                                     \
    case value:                                                                                    \
        return aws;
        REALM_ERR_MAP(X)
#undef X
    }
    return "ServiceException";
}

int realm_error_set(realm_error_t *e, int code, const char *fmt, ...)
{
    e->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof(e->message), fmt, ap);
    va_end(ap);
    return -1;
}
