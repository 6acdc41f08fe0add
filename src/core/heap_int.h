/*
 * A thread's heap made ready ahead of use (docs/decisions.md, "The daemons' heap").
 */
#ifndef VH_CORE_HEAP_INT_H
#define VH_CORE_HEAP_INT_H

#include <stddef.h>

/*
 * Makes the first `bytes` the calling thread allocates cost no page faults: takes a block of
 * that size from its heap (vh_malloc), has the kernel make its pages ready in one call
 * (MADV_POPULATE_WRITE), and frees it. Useful only where the heap keeps a freed block of
 * that size (glibc does with the CLI's cli_heap_tune; by default it maps a block over
 * 128 KiB on its own and unmaps it on free). A page faulted in on first touch cost 15 us
 * on the benchmarks' VM; made ready this way, about 1 us. Returns 0 (also for 0 bytes),
 * or -1 when the pages were left to fault in as they are used: no memory, or a kernel
 * without MADV_POPULATE_WRITE (before Linux 5.14). Nothing else changes either way.
 */
int vh__heap_warm(size_t bytes);

#endif
