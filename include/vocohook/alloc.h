/*
 * The allocation hook. Every allocation of the library, its JSON parser's included, goes through
 * these functions, so an embedding program can route memory and tests can fail the Nth
 * allocation. Out of memory is returned to the caller as VH_ENOMEM, never fatal.
 */
#ifndef VOCOHOOK_ALLOC_H
#define VOCOHOOK_ALLOC_H

#include <stddef.h>

#include <vocohook/common.h>

typedef void *vh_malloc_fn(size_t size);
typedef void *vh_realloc_fn(void *ptr, size_t size);
typedef void vh_free_fn(void *ptr);

/*
 * Replaces the allocator. All three functions must be given, and must be set before any
 * other vh_ call (memory from one allocator must not reach another's free). Returns 0, or
 * VH_EINVAL when a function is NULL. Not thread-safe: call it once at start-up.
 */
VH_API int vh_replace_allocator(vh_malloc_fn *m, vh_realloc_fn *r, vh_free_fn *f);

/* malloc/realloc/free through the hook. vh_malloc(0) returns a unique pointer or NULL. */
VH_API void *vh_malloc(size_t size);
VH_API void *vh_realloc(void *ptr, size_t size);
VH_API void vh_free(void *ptr);

/* A NUL-terminated copy of `n` bytes of `s` (which need not be terminated); NULL on OOM. */
VH_API char *vh_strndup(const char *s, size_t n);

#endif
