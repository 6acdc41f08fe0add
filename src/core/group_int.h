/*
 * Group commit, the protocol both SQLite writers use (the store's ingests, store/sqlite.c;
 * the receiver's inbox, receive/inbox.c): many threads each want one write made durable;
 * one fsync should serve all who arrive together.
 *
 * Every caller queues an op (vh__group_submit). The op at the head of the queue, when no
 * batch is running, leads: it takes up to batch_max queued ops, runs them with `run` (one
 * transaction, one fsync), and returns once they are done. The others sleep on a semaphore
 * of their own. A finished batch posts exactly its own ops, then the op now at the head of
 * the queue, which leads the next batch, all after `mu` is released: a waiter whose op is
 * done returns without touching `mu` (so the leader is never preempted by a thread that
 * would only go back to sleep on the mutex it holds), and no waiter of the next batch wakes
 * only to sleep again (the broadcast it replaced cost about five context switches a write).
 *
 * An op may live on its caller's stack: it leaves the queue (into a batch) before it is
 * marked done, and a semaphore may be destroyed as soon as sem_wait returns, while sem_post
 * is still returning (glibc guarantees it since bug 12674, musl too).
 */
#ifndef VH_CORE_GROUP_INT_H
#define VH_CORE_GROUP_INT_H

#include <pthread.h>
#include <semaphore.h>
#include <stdbool.h>
#include <stddef.h>

/* Embed it first in the caller's op; `run` casts back. */
struct vh__group_op {
    struct vh__group_op *next; /* in the queue, then in its batch (oldest first) */
    bool done;                 /* written before the post, read after the wait */
    sem_t wake;
};

/* A queue. `mu` is the caller's (it may guard more); it guards the other fields. */
struct vh__group {
    pthread_mutex_t *mu;
    struct vh__group_op *head, *tail;
    bool leading;     /* a batch is running */
    size_t batch_max; /* ops in one batch, at most; 0: no bound */
};

/* Runs one batch (linked by `next`, oldest first), on the leader's thread, without `mu`. */
typedef void vh__group_run_fn(void *ud, struct vh__group_op *batch);

/*
 * Queues `op` (its other fields are the caller's) and returns once a batch holding it has
 * run: 0, or VH_ENOMEM when no semaphore could be made (then nothing was queued).
 */
int vh__group_submit(struct vh__group *g, struct vh__group_op *op, vh__group_run_fn *run, void *ud);

#endif
