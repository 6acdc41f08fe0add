/* madvise and MADV_POPULATE_WRITE are Linux's, outside POSIX. */
#define _DEFAULT_SOURCE

#include "core/heap_int.h"

#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

#include <vocohook/alloc.h>

#include "core/banned.h"

int vh__heap_warm(size_t bytes)
{
#ifdef MADV_POPULATE_WRITE
    long page = sysconf(_SC_PAGESIZE);
    uintptr_t from, to;
    void *p;
    int rc = -1;

    if (bytes == 0)
        return 0;
    if (page <= 0)
        return -1;
    p = vh_malloc(bytes);
    if (!p)
        return -1;
    from = ((uintptr_t)p + (uintptr_t)page - 1) & ~((uintptr_t)page - 1);
    to = ((uintptr_t)p + bytes) & ~((uintptr_t)page - 1);
    if (to > from && madvise((void *)from, to - from, MADV_POPULATE_WRITE) == 0)
        rc = 0;
    vh_free(p);
    return rc;
#else
    return bytes == 0 ? 0 : -1;
#endif
}
