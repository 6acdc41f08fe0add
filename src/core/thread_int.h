/*
 * Threads a library part starts for itself: named as top -H, perf and gdb show them, and
 * deaf to process signals, which are the application's to handle.
 */
#ifndef VH_CORE_THREAD_INT_H
#define VH_CORE_THREAD_INT_H

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>

#ifndef SCHED_BATCH
#define SCHED_BATCH 3 /* Linux's (linux/sched.h); glibc names it only under _GNU_SOURCE */
#endif

/* Names the calling thread (at most 15 bytes are kept). Best effort. */
static inline void vh__thread_name(const char *name)
{
    (void)prctl(PR_SET_NAME, (unsigned long)name, 0UL, 0UL, 0UL);
}

/*
 * Puts the calling thread under SCHED_BATCH (threads it starts inherit it). A woken batch
 * thread does not preempt the one running: it waits until that one blocks or its slice
 * ends. Threads that hand work to each other all the time (a commit thread and the HTTP
 * threads, a dispatcher and its engine) then switch far less often. Unprivileged: a
 * process may always lower its own claim. Returns 0 or the error number of a refusal (a
 * seccomp policy, say); the thread then keeps its policy.
 */
static inline int vh__thread_sched_batch(void)
{
    struct sched_param sp;

    memset(&sp, 0, sizeof(sp));
    return pthread_setschedparam(pthread_self(), SCHED_BATCH, &sp);
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
