/*
 * A bounded, growable byte buffer (git strbuf, curl dynbuf).
 *
 * `data` is NUL-terminated whenever it is non-NULL, so text can be read as a C string;
 * binary content is fine, use `len`. Every add is checked against `max`: a buffer fed
 * from the network can never grow past its bound. A failed add leaves the buffer as it
 * was. Growth doubles and is overflow-checked.
 */
#ifndef VOCOHOOK_BUF_H
#define VOCOHOOK_BUF_H

#include <stddef.h>

#include <vocohook/common.h>

struct vh_buf {
    char *data; /* NUL-terminated when non-NULL; NULL until the first add */
    size_t len; /* bytes used, excluding the NUL */
    size_t cap; /* bytes allocated */
    size_t max; /* adds that would make len exceed this fail with VH_ETOOBIG */
};

#define VH_BUF_INIT(limit)                                                                         \
    {                                                                                              \
        NULL, 0, 0, (limit)                                                                        \
    }

/* Initializes an embedded buffer with the given bound. */
VH_API void vh_buf_init(struct vh_buf *b, size_t max);

/*
 * Appends `n` bytes (`p` may be NULL when `n` is 0, and may point into the buffer itself).
 * Returns 0, VH_ENOMEM or VH_ETOOBIG.
 */
VH_API int vh_buf_add(struct vh_buf *b, const void *p, size_t n);
/* Appends a C string. Returns as vh_buf_add. */
VH_API int vh_buf_adds(struct vh_buf *b, const char *s);
/* Appends one byte. Returns as vh_buf_add. */
VH_API int vh_buf_addc(struct vh_buf *b, char c);
/*
 * Appends formatted text; an argument may point into the buffer itself. Returns as
 * vh_buf_add (VH_EINVAL on a format error).
 */
VH_API int vh_buf_addf(struct vh_buf *b, const char *fmt, ...) VH_PRINTF(2, 3);
/* Makes sure `n` more bytes fit without reallocating. Returns as vh_buf_add. */
VH_API int vh_buf_grow(struct vh_buf *b, size_t n);

/* len = 0, keeps the memory. */
VH_API void vh_buf_reset(struct vh_buf *b);
/* Frees the memory; the buffer is back in its INIT state with the same max. */
VH_API void vh_buf_release(struct vh_buf *b);
/*
 * Hands the data over: the caller owns it and frees it with vh_free(). Returns a
 * NUL-terminated empty string when nothing was added (NULL only on OOM); stores the length
 * in `*len` when `len` is non-NULL. The buffer is left empty.
 */
VH_API char *vh_buf_detach(struct vh_buf *b, size_t *len);
/* The content as a C string, borrowed; "" when empty. */
VH_API const char *vh_buf_cstr(const struct vh_buf *b);

#endif
