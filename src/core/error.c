#include <vocohook/error.h>

#include <stdarg.h>
#include <stdio.h>

#include "core/banned.h"

int vh_error_set(struct vh_error *err, int code, const char *fmt, ...)
{
    va_list ap;

    if (!err || err->code != 0)
        return code;
    err->code = code;
    va_start(ap, fmt);
    if (vsnprintf(err->msg, sizeof(err->msg), fmt, ap) < 0)
        err->msg[0] = '\0';
    va_end(ap);
    return code;
}

void vh_error_clear(struct vh_error *err)
{
    if (!err)
        return;
    err->code = 0;
    err->msg[0] = '\0';
}

const char *vh_strerror(int code)
{
    switch (code) {
    case VH_OK:
        return "success";
    case VH_ENOMEM:
        return "out of memory";
    case VH_EINVAL:
        return "invalid input";
    case VH_ETOOBIG:
        return "input too large";
    case VH_ENOTFOUND:
        return "not found";
    case VH_ECONFLICT:
        return "conflict";
    case VH_ESTORE:
        return "store failure";
    case VH_EIO:
        return "i/o failure";
    case VH_ESIG:
        return "signature verification failed";
    case VH_ESTATE:
        return "illegal state transition";
    case VH_ENOTSUP:
        return "not supported";
    default:
        return "unknown error";
    }
}
