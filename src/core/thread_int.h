/*
 * Names the calling thread, as top -H, perf and gdb show it (at most 15 bytes are kept).
 * Best effort: a failure changes nothing else.
 */
#ifndef VH_CORE_THREAD_INT_H
#define VH_CORE_THREAD_INT_H

#include <sys/prctl.h>

static inline void vh__thread_name(const char *name)
{
    (void)prctl(PR_SET_NAME, (unsigned long)name, 0UL, 0UL, 0UL);
}

#endif
