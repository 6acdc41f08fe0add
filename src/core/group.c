/*
 * Group commit (group_int.h): the queue, the leader's turn, and the wakeups.
 */
#include "core/group_int.h"

#include <errno.h>

#include <vocohook/error.h>

#include "core/banned.h"

/* Sleeps until `s` is posted (signals interrupt sem_wait; they do not end the wait). */
static void wait_posted(sem_t *s)
{
    while (sem_wait(s) != 0 && errno == EINTR)
        ;
}

int vh__group_submit(struct vh__group *g, struct vh__group_op *op, vh__group_run_fn *run, void *ud)
{
    struct vh__group_op *batch, *last, *next, *lead;
    size_t n;

    op->next = NULL;
    op->done = false;
    if (sem_init(&op->wake, 0, 0) != 0)
        return VH_ENOMEM;
    pthread_mutex_lock(g->mu);
    if (g->tail)
        g->tail->next = op;
    else
        g->head = op;
    g->tail = op;
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
        g->leading = true;
        batch = g->head;
        for (last = batch, n = 1; last->next && (!g->batch_max || n < g->batch_max); n++)
            last = last->next;
        g->head = last->next;
        if (!g->head)
            g->tail = NULL;
        last->next = NULL;
        pthread_mutex_unlock(g->mu);

        run(ud, batch);

        /*
         * Only the head of the queue may lead, and only once it is posted, so `lead` stays
         * queued (and alive) until the post below.
         */
        pthread_mutex_lock(g->mu);
        g->leading = false;
        lead = g->head;
        pthread_mutex_unlock(g->mu);
        for (; batch; batch = next) {
            next = batch->next; /* read first: once posted, the op may be gone */
            batch->done = true;
            if (batch != op)
                sem_post(&batch->wake);
        }
        if (lead)
            sem_post(&lead->wake);
        break;
    }
    sem_destroy(&op->wake);
    return 0;
}
