/*
 * A counting allocator for out-of-memory tests (STYLE §10): install it with
 * vh_replace_allocator(t_malloc, t_realloc, t_free), set `alloc_fail_at` to N to make the Nth
 * allocation fail, and check `live_blocks` returns to where it was (no leak on any path).
 * Header-only: each test program gets its own counters.
 */
#ifndef VH_TEST_OOM_H
#define VH_TEST_OOM_H

#include <stdlib.h>

static long alloc_count;   /* allocations so far in this run */
static long alloc_fail_at; /* this allocation fails (1-based); 0: none */
static long live_blocks;   /* allocated and not yet freed, through the hook */

static void *t_malloc(size_t n)
{
    void *p;

    if (alloc_fail_at && ++alloc_count == alloc_fail_at)
        return NULL;
    p = malloc(n);
    if (p)
        live_blocks++;
    return p;
}

static void *t_realloc(void *ptr, size_t n)
{
    void *p;

    if (alloc_fail_at && ++alloc_count == alloc_fail_at)
        return NULL;
    p = realloc(ptr, n);
    if (p && !ptr)
        live_blocks++;
    return p;
}

static void t_free(void *p)
{
    if (p)
        live_blocks--;
    free(p);
}

#endif
