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
 *
 * Posted ops (vh__group_post) are the same writes for a caller that must not block (an
 * event loop): the op is queued and its `on_done` runs once its batch has run, on whichever
 * thread ran the batch. A posted op never leads; when one is at the head with no batch
 * running, the queue's runner thread (vh__group_runner_main) leads in its stead. A queue
 * with posted ops needs its runner.
 */
#ifndef VH_CORE_GROUP_INT_H
#define VH_CORE_GROUP_INT_H

#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

struct vh__group_op;
struct vh_error;

/* A posted op's completion: runs without `mu`; the op is the callee's (it may free it). */
typedef void vh__group_done_fn(struct vh__group_op *op);

/* Embed it first in the caller's op; `run` casts back. */
struct vh__group_op {
    struct vh__group_op *next;  /* in the queue, then in its batch (oldest first) */
    bool done;                  /* written before the post, read after the wait */
    sem_t wake;                 /* submitted ops only */
    vh__group_done_fn *on_done; /* posted ops only; NULL for a submitted one */
};

/* A queue. `mu` is the caller's (it may guard more); it guards the other fields. */
struct vh__group {
    pthread_mutex_t *mu;
    struct vh__group_op *head, *tail;
    bool leading;     /* a batch is running */
    size_t batch_max; /* ops in one batch, at most; 0: no bound */
    /* The runner, for posted ops: it waits on `kick` (with `mu`) and stops at `stop`. */
    pthread_cond_t kick;
    bool kick_ready; /* `kick` was initialised (vh__group_runner_init) */
    bool stop;
    size_t posted; /* posted ops whose on_done has not returned yet */
};

/* Runs one batch (linked by `next`, oldest first), on the leader's thread, without `mu`. */
typedef void vh__group_run_fn(void *ud, struct vh__group_op *batch);

/*
 * Queues `op` (its other fields are the caller's) and returns once a batch holding it has
 * run: 0, or VH_ENOMEM when no semaphore could be made (then nothing was queued).
 */
int vh__group_submit(struct vh__group *g, struct vh__group_op *op, vh__group_run_fn *run, void *ud);

/*
 * Queues `op` (op->on_done set, its other fields the caller's) and returns at once; on_done
 * runs once a batch holding it has run. Never fails. Needs the runner (below).
 */
void vh__group_post(struct vh__group *g, struct vh__group_op *op);

/* Prepares the runner's condition variable. Returns 0 or VH_ENOMEM. */
int vh__group_runner_init(struct vh__group *g);

/* Arguments of the runner thread. */
struct vh__group_runner {
    struct vh__group *g;
    vh__group_run_fn *run;
    void *ud;
    const char *name; /* the thread's name (vh__thread_name); NULL: unnamed */
};

/*
 * The runner thread's body (arg: a struct vh__group_runner, alive while it runs): leads a
 * batch whenever a posted op is at the head of the queue and no batch runs. Returns once
 * vh__group_runner_stop was called and no posted op is left.
 */
void *vh__group_runner_main(void *arg);

/*
 * Starts the runner thread on `rn` (filled by the caller) once: the first caller that finds
 * `*started` false does it, under the queue's `mu`, with every signal blocked in the new
 * thread (process signals are the application's). Later calls cost one atomic load. Returns
 * 0, VH_ENOMEM (no condition variable) or VH_EIO (no thread), with `err` saying so after
 * `who` ("store", "inbox").
 */
int vh__group_runner_start(struct vh__group *g, struct vh__group_runner *rn, pthread_t *thread,
                           atomic_bool *started, const char *who, struct vh_error *err);

/* Asks the runner to return once the queue holds no posted op. */
void vh__group_runner_stop(struct vh__group *g);

/* Frees what vh__group_runner_init made (after the runner has returned). */
void vh__group_runner_release(struct vh__group *g);

#endif
