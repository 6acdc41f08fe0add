/*
 * Deadlines for the unit tests' waits: every wait on another thread gives up, so a lost
 * wakeup fails its test instead of hanging it until ctest's timeout. Header-only.
 */
#ifndef VH_TEST_WAIT_H
#define VH_TEST_WAIT_H

#include <errno.h>
#include <semaphore.h>
#include <stdbool.h>
#include <time.h>

#define WAIT_S 10 /* a wait longer than this is a failure */

/* `ms` from now on `clock`. */
static inline struct timespec deadline_on(clockid_t clock, long ms)
{
    struct timespec ts;

    clock_gettime(clock, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

/* A deadline for condition variables made with CLOCK_MONOTONIC. */
static inline struct timespec deadline_in(long ms)
{
    return deadline_on(CLOCK_MONOTONIC, ms);
}

/* Waits `ms` for `s` (sem_timedwait counts on CLOCK_REALTIME): true when it was posted. */
static inline bool posted_within(sem_t *s, long ms)
{
    struct timespec dl = deadline_on(CLOCK_REALTIME, ms);
    int rc;

    do
        rc = sem_timedwait(s, &dl);
    while (rc != 0 && errno == EINTR);
    return rc == 0;
}

/* Waits for `s` up to WAIT_S: true when it was posted. */
static inline bool wait_sem(sem_t *s)
{
    return posted_within(s, WAIT_S * 1000L);
}

#endif
