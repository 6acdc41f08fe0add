#include <vocohook/buf.h>

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <vocohook/alloc.h>
#include <vocohook/error.h>

#include "core/banned.h"

void vh_buf_init(struct vh_buf *b, size_t max)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
}

/* True when `n` more bytes keep len within max; sound when len is already past max. */
static bool fits(const struct vh_buf *b, size_t n)
{
    return n <= b->max && b->len <= b->max - n;
}

int vh_buf_grow(struct vh_buf *b, size_t n)
{
    size_t need, cap;
    char *p;

    if (!fits(b, n))
        return VH_ETOOBIG;
    need = b->len + n + 1; /* the NUL; cannot overflow as max < SIZE_MAX in practice */
    if (need < n)
        return VH_ETOOBIG;
    if (need <= b->cap)
        return 0;
    cap = b->cap ? b->cap : 64;
    while (cap < need) {
        if (cap > SIZE_MAX / 2) {
            cap = need;
            break;
        }
        cap *= 2;
    }
    /* Never hold more than the bound needs. */
    if (b->max < SIZE_MAX && cap > b->max + 1)
        cap = b->max + 1;
    p = vh_realloc(b->data, cap);
    if (!p)
        return VH_ENOMEM;
    if (!b->data)
        p[0] = '\0';
    b->data = p;
    b->cap = cap;
    return 0;
}

int vh_buf_add(struct vh_buf *b, const void *p, size_t n)
{
    /*
     * `p` may point into the buffer itself (appending part of what it holds, as git's
     * strbuf_addbuf(sb, sb)): growing may move the data, so keep the offset, not the pointer.
     */
    uintptr_t at = (uintptr_t)p, start = (uintptr_t)b->data;
    bool inside = b->data && at >= start && at - start < b->cap;
    int rc = vh_buf_grow(b, n);

    if (rc < 0)
        return rc;
    if (inside)
        p = b->data + (at - start);
    if (n)
        memmove(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

int vh_buf_adds(struct vh_buf *b, const char *s)
{
    return vh_buf_add(b, s, strlen(s));
}

int vh_buf_addc(struct vh_buf *b, char c)
{
    return vh_buf_add(b, &c, 1);
}

int vh_buf_addf(struct vh_buf *b, const char *fmt, ...)
{
    va_list ap;
    char small[256], *big;
    int n, again;
    int rc;

    va_start(ap, fmt);
    n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0)
        return VH_EINVAL;
    if ((size_t)n < sizeof(small))
        return vh_buf_add(b, small, (size_t)n);
    if (!fits(b, (size_t)n))
        return VH_ETOOBIG;
    /*
     * Formatted into a copy, not into the buffer: an argument may point into the buffer
     * (vh_buf_addf(b, "%s", b->data)), which growing would free and formatting overwrite.
     */
    big = vh_malloc((size_t)n + 1);
    if (!big)
        return VH_ENOMEM;
    va_start(ap, fmt);
    again = vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    rc = again == n ? vh_buf_add(b, big, (size_t)n) : VH_EINVAL;
    vh_free(big);
    return rc;
}

void vh_buf_reset(struct vh_buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

void vh_buf_release(struct vh_buf *b)
{
    vh_free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

char *vh_buf_detach(struct vh_buf *b, size_t *len)
{
    char *p = b->data;

    if (!p) {
        p = vh_malloc(1);
        if (!p)
            return NULL;
        p[0] = '\0';
    }
    if (len)
        *len = b->len;
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    return p;
}

const char *vh_buf_cstr(const struct vh_buf *b)
{
    return b->data ? b->data : "";
}
