#include <vocohook/alloc.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <vocohook/error.h>

#include "core/banned.h"

/*
 * The hook is three plain pointers, set once at start-up (see alloc.h); reads are not
 * synchronized because the contract forbids changing them while other calls run.
 */
static vh_malloc_fn *hook_malloc = malloc;
static vh_realloc_fn *hook_realloc = realloc;
static vh_free_fn *hook_free = free;

int vh_replace_allocator(vh_malloc_fn *m, vh_realloc_fn *r, vh_free_fn *f)
{
    if (!m || !r || !f)
        return VH_EINVAL;
    hook_malloc = m;
    hook_realloc = r;
    hook_free = f;
    return 0;
}

void *vh_malloc(size_t size)
{
    return hook_malloc(size ? size : 1);
}

void *vh_realloc(void *ptr, size_t size)
{
    return hook_realloc(ptr, size ? size : 1);
}

void vh_free(void *ptr)
{
    if (ptr)
        hook_free(ptr);
}

char *vh_strndup(const char *s, size_t n)
{
    char *p;

    if (n == SIZE_MAX)
        return NULL;
    p = vh_malloc(n + 1);
    if (!p)
        return NULL;
    if (n)
        memcpy(p, s, n);
    p[n] = '\0';
    return p;
}
