/*
 * Group commit (group_int.h): the queue, the leader's turn, and the wakeups.
 */
#include "core/group_int.h"
#include "core/thread_int.h"

#include <errno.h>

#include <vocohook/error.h>

#include "core/banned.h"

/* Sleeps until `s` is posted (signals interrupt sem_wait; they do not end the wait). */
static void wait_posted(sem_t *s)
{
    while (sem_wait(s) != 0 && errno == EINTR)
        ;
}

/* Appends `op` to the queue (`mu` held). */
static void enqueue(struct vh__group *g, struct vh__group_op *op)
{
    if (g->tail)
        g->tail->next = op;
    else
        g->head = op;
    g->tail = op;
}

/* With `mu` held, no batch running: takes the next batch from the head; releases `mu`. */
static struct vh__group_op *take_batch(struct vh__group *g)
{
    struct vh__group_op *batch = g->head, *last;
    size_t n;

    g->leading = true;
    for (last = batch, n = 1; last->next && (!g->batch_max || n < g->batch_max); n++)
        last = last->next;
    g->head = last->next;
    if (!g->head)
        g->tail = NULL;
    last->next = NULL;
    pthread_mutex_unlock(g->mu);
    return batch;
}

/*
 * After `batch` ran: ends the turn, completes its ops (all but `self`, the leader's own) and
 * hands the queue on: a submitted op at the head is posted to lead; a posted one wakes the
 * runner. Only the head may lead, and a submitted head only once it is posted, so it stays
 * queued (and alive) until the post below.
 */
static void finish_batch(struct vh__group *g, struct vh__group_op *batch,
                         const struct vh__group_op *self)
{
    struct vh__group_op *lead, *b, *next;
    size_t posted = 0;

    pthread_mutex_lock(g->mu);
    g->leading = false;
    lead = g->head;
    if (lead && lead->on_done) {
        pthread_cond_signal(&g->kick);
        lead = NULL; /* the runner's to lead; it may be gone once `mu` is released */
    }
    pthread_mutex_unlock(g->mu);
    for (b = batch; b; b = next) {
        next = b->next; /* read first: once completed, the op may be gone */
        b->done = true;
        if (b->on_done) {
            posted++;
            b->on_done(b);
        } else if (b != self) {
            sem_post(&b->wake);
        }
    }
    if (lead)
        sem_post(&lead->wake);
    if (posted > 0) {
        /* Counted down only now: the runner returns after the last on_done, not before. */
        pthread_mutex_lock(g->mu);
        g->posted -= posted;
        if (g->stop && g->posted == 0)
            pthread_cond_signal(&g->kick);
        pthread_mutex_unlock(g->mu);
    }
}

int vh__group_submit(struct vh__group *g, struct vh__group_op *op, vh__group_run_fn *run, void *ud)
{
    struct vh__group_op *batch;

    op->next = NULL;
    op->done = false;
    op->on_done = NULL;
    if (sem_init(&op->wake, 0, 0) != 0)
        return VH_ENOMEM;
    pthread_mutex_lock(g->mu);
    enqueue(g, op);
    for (;;) {
        if (g->leading || g->head != op) {
            pthread_mutex_unlock(g->mu);
            wait_posted(&op->wake);
            if (op->done)
                break;
            pthread_mutex_lock(g->mu); /* posted to lead */
            continue;
        }
        /* At the head with no batch running: lead one. */
        batch = take_batch(g);
        run(ud, batch);
        finish_batch(g, batch, op);
        break;
    }
    sem_destroy(&op->wake);
    return 0;
}

void vh__group_post(struct vh__group *g, struct vh__group_op *op)
{
    op->next = NULL;
    op->done = false;
    pthread_mutex_lock(g->mu);
    enqueue(g, op);
    g->posted++;
    if (!g->leading && g->head == op)
        pthread_cond_signal(&g->kick);
    pthread_mutex_unlock(g->mu);
}

int vh__group_runner_init(struct vh__group *g)
{
    if (pthread_cond_init(&g->kick, NULL) != 0)
        return VH_ENOMEM;
    g->kick_ready = true;
    g->stop = false;
    return 0;
}

int vh__group_runner_start(struct vh__group *g, struct vh__group_runner *rn, pthread_t *thread,
                           atomic_bool *started, const char *who, struct vh_error *err)
{
    int rc = 0;

    if (atomic_load(started))
        return 0; /* the common case: no lock beyond the queue's own */
    pthread_mutex_lock(g->mu);
    if (!atomic_load(started)) {
        if (!g->kick_ready && vh__group_runner_init(g) < 0) {
            rc = VH_ENOMEM;
        } else {
            if (vh__thread_start(thread, vh__group_runner_main, rn) < 0)
                rc = VH_EIO;
            else
                atomic_store(started, true);
        }
    }
    pthread_mutex_unlock(g->mu);
    if (rc == VH_ENOMEM)
        return vh_error_set(err, rc, "%s: condition variable: out of memory", who);
    if (rc < 0)
        return vh_error_set(err, rc, "%s: cannot start the commit thread", who);
    return 0;
}

void *vh__group_runner_main(void *arg)
{
    const struct vh__group_runner *rn = arg;
    struct vh__group *g = rn->g;
    struct vh__group_op *batch;

    if (rn->name)
        vh__thread_name(rn->name);

    pthread_mutex_lock(g->mu);
    for (;;) {
        if (g->head && !g->leading && g->head->on_done) {
            batch = take_batch(g);
            rn->run(rn->ud, batch);
            finish_batch(g, batch, NULL);
            pthread_mutex_lock(g->mu);
            continue;
        }
        if (g->stop && g->posted == 0)
            break;
        pthread_cond_wait(&g->kick, g->mu);
    }
    pthread_mutex_unlock(g->mu);
    return NULL;
}

void vh__group_runner_stop(struct vh__group *g)
{
    pthread_mutex_lock(g->mu);
    g->stop = true;
    pthread_cond_signal(&g->kick);
    pthread_mutex_unlock(g->mu);
}

void vh__group_runner_release(struct vh__group *g)
{
    if (g->kick_ready)
        pthread_cond_destroy(&g->kick);
    g->kick_ready = false;
}
