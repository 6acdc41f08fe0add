/*
 * Error codes and the error buffer every fallible call fills.
 *
 * Functions return 0 (or a count, >= 0) on success and a negative `enum vh_err` on
 * failure. They take a `struct vh_error *err` last (NULL allowed); the innermost failure
 * writes one lowercase line naming what failed and why, and callers pass the code up
 * without overwriting the message ("first error wins").
 */
#ifndef VOCOHOOK_ERROR_H
#define VOCOHOOK_ERROR_H

#include <vocohook/common.h>

enum vh_err {
    VH_OK = 0,
    VH_ENOMEM = -1,    /* an allocation failed */
    VH_EINVAL = -2,    /* the input was rejected; msg says where and why */
    VH_ETOOBIG = -3,   /* the input, or a result, is over its bound */
    VH_ENOTFOUND = -4, /* no such object */
    VH_ECONFLICT = -5, /* the object exists, or a uniqueness rule was broken */
    VH_ESTORE = -6,    /* the database failed */
    VH_EIO = -7,       /* a file, socket or OS call failed */
    VH_ESIG = -8,      /* a signature did not verify; msg gives the reason */
    VH_ESTATE = -9,    /* an illegal state transition */
    VH_ENOTSUP = -10   /* the backend or build does not do this */
};

#define VH_ERROR_MSG_MAX 256

struct vh_error {
    int code;                   /* 0 or an enum vh_err value */
    char msg[VH_ERROR_MSG_MAX]; /* "" or one lowercase line, no trailing period */
};

#define VH_ERROR_INIT                                                                              \
    {                                                                                              \
        0,                                                                                         \
        {                                                                                          \
            0                                                                                      \
        }                                                                                          \
    }

/*
 * Records `code` and the formatted message in `err` unless it already holds an error
 * (first error wins). `err` may be NULL. Returns `code`, so callers can write
 * `return vh_error_set(err, VH_EINVAL, "...")`. Never allocates.
 */
VH_API int vh_error_set(struct vh_error *err, int code, const char *fmt, ...) VH_PRINTF(3, 4);

/* Empties `err` so it can be reused. `err` may be NULL. */
VH_API void vh_error_clear(struct vh_error *err);

/* Static text for `code`; never NULL (unknown codes get "unknown error"). */
VH_API const char *vh_strerror(int code);

#endif
