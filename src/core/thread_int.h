/*
 * Threads a library part starts for itself: named as top -H, perf and gdb show them, and
 * deaf to process signals, which are the application's to handle.
 */
#ifndef VH_CORE_THREAD_INT_H
#define VH_CORE_THREAD_INT_H

#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>

/* Names the calling thread (at most 15 bytes are kept). Best effort. */
static inline void vh__thread_name(const char *name)
{
    (void)prctl(PR_SET_NAME, (unsigned long)name, 0UL, 0UL, 0UL);
}

/*
 * pthread_create with every signal blocked in the new thread (the caller's mask is put
 * back). Returns 0, or -1 when no thread could be made.
 */
static inline int vh__thread_start(pthread_t *thread, void *(*fn)(void *), void *arg)
{
    sigset_t all, old;
    int rc;

    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    rc = pthread_create(thread, NULL, fn, arg);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc == 0 ? 0 : -1;
}

#endif
