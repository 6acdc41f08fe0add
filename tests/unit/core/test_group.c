/*
 * Group commit (src/core/group.c) without SQLite: `run` logs each batch (the ids of its ops,
 * in order) and can hold one batch until the test releases it, so the test decides when
 * batches end. Submitted (blocking) and posted (non-blocking) ops, the runner thread and its
 * stop, and a queue that has no runner (the SQLite store's).
 *
 * cmocka's assertions only work on the test's own thread: other threads record what they
 * saw in flags that the test checks. Every wait has a deadline (WAIT_S), so a lost wakeup
 * fails the test instead of hanging it.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "core/group_int.h"
#include "unit/wait.h"
#include "core/banned.h"

#define MAX_IDS 16384 /* op ids of one test: 0 .. MAX_IDS - 1 */

struct fx;

/* One op: the queue's entry first, so `run` and `on_done` cast back. */
struct top {
    struct vh__group_op g;
    struct fx *f;
    int id;
    atomic_bool ran; /* set by `run` once the batch holding it has run */
};

struct fx {
    pthread_mutex_t mu; /* the queue's */
    struct vh__group g;
    struct vh__group_runner rn;
    pthread_t runner;
    sem_t runner_done; /* posted once the runner thread returned */

    /* Under log_mu: the ids `run` saw, in order, and each batch's size. */
    pthread_mutex_t log_mu;
    int log[MAX_IDS];
    size_t n_log;
    size_t batches[MAX_IDS];
    size_t n_batches;

    atomic_int running;     /* batches inside `run` now */
    atomic_bool overlapped; /* two batches ran at once */
    atomic_bool bad_batch;  /* an op ran twice, ran after it was done, or a batch too large */
    atomic_bool early;      /* an op completed before its batch ran */
    atomic_bool timed_out;  /* a wait on another thread passed its deadline */

    /* Holding a batch: set `hold`; the next batch posts `held` and waits for `release`. */
    atomic_bool hold;
    sem_t held, release;

    /* Completions by id: on_done calls and submit returns. */
    atomic_int completed[MAX_IDS];
    atomic_int done_calls;  /* on_done calls, all ops */
    atomic_int done_target; /* `all_done` is posted when done_calls reaches it */
    sem_t all_done;

    /* Holding a completion: on_done of op `block_done_id` posts `in_done`, waits for `go_on`. */
    atomic_int block_done_id;
    sem_t in_done, go_on;

    bool clean; /* the test ended with no thread left: teardown may free */
};

static void run(void *ud, struct vh__group_op *batch)
{
    struct fx *f = ud;
    struct vh__group_op *op;
    size_t n = 0;

    if (atomic_fetch_add(&f->running, 1) != 0)
        atomic_store(&f->overlapped, true);
    if (atomic_exchange(&f->hold, false)) {
        sem_post(&f->held);
        if (!wait_sem(&f->release))
            atomic_store(&f->timed_out, true);
    }
    pthread_mutex_lock(&f->log_mu);
    for (op = batch; op; op = op->next) {
        struct top *t = (struct top *)op;

        if (op->done || atomic_load(&t->ran) || f->n_log == MAX_IDS)
            atomic_store(&f->bad_batch, true);
        else
            f->log[f->n_log++] = t->id;
        n++;
    }
    if (f->g.batch_max && n > f->g.batch_max)
        atomic_store(&f->bad_batch, true);
    if (f->n_batches < MAX_IDS)
        f->batches[f->n_batches++] = n;
    pthread_mutex_unlock(&f->log_mu);
    /* Another batch now would overlap this one: give it the chance. */
    sched_yield();
    for (op = batch; op; op = op->next)
        atomic_store(&((struct top *)op)->ran, true);
    atomic_fetch_sub(&f->running, 1);
}

static void on_done(struct vh__group_op *op)
{
    struct top *t = (struct top *)op;
    struct fx *f = t->f;

    if (!atomic_load(&t->ran) || !op->done)
        atomic_store(&f->early, true);
    if (t->id == atomic_load(&f->block_done_id)) {
        sem_post(&f->in_done);
        if (!wait_sem(&f->go_on))
            atomic_store(&f->timed_out, true);
    }
    atomic_fetch_add(&f->completed[t->id], 1);
    if (atomic_fetch_add(&f->done_calls, 1) + 1 == atomic_load(&f->done_target))
        sem_post(&f->all_done);
}

static void post(struct fx *f, struct top *t, int id)
{
    t->f = f;
    t->id = id;
    atomic_init(&t->ran, false);
    t->g.on_done = on_done;
    vh__group_post(&f->g, &t->g);
}

/* Submits op `id` from the calling thread; false when it returned before its batch ran. */
static bool submit(struct fx *f, int id)
{
    struct top t; /* on the stack, as the inbox and the store do */
    bool ok;

    memset(&t, 0, sizeof(t));
    t.f = f;
    t.id = id;
    atomic_init(&t.ran, false);
    ok = vh__group_submit(&f->g, &t.g, run, f) == 0 && t.g.done && atomic_load(&t.ran);
    if (!ok)
        atomic_store(&f->early, true);
    atomic_fetch_add(&f->completed[id], 1);
    return ok;
}

/* How many ops the queue holds (those of a running batch are out of it). */
static size_t queued(struct fx *f)
{
    const struct vh__group_op *op;
    size_t n = 0;

    pthread_mutex_lock(&f->mu);
    for (op = f->g.head; op; op = op->next)
        n++;
    pthread_mutex_unlock(&f->mu);
    return n;
}

/*
 * Waits until the queue holds at least `n` ops. group.c signals nothing a test could wait
 * on when an op joins the queue, so this polls, with the same deadline as every wait.
 */
static bool wait_queued(struct fx *f, size_t n)
{
    const struct timespec ms = {0, 1000000L};
    int i;

    for (i = 0; i < WAIT_S * 1000; i++) {
        if (queued(f) >= n)
            return true;
        nanosleep(&ms, NULL);
    }
    return false;
}

/* ---- threads ----------------------------------------------------------------------------- */

static void *runner_body(void *arg)
{
    struct fx *f = arg;

    vh__group_runner_main(&f->rn);
    sem_post(&f->runner_done);
    return NULL;
}

static void start_runner(struct fx *f)
{
    assert_int_equal(vh__group_runner_init(&f->g), 0);
    assert_true(f->g.kick_ready);
    f->rn.g = &f->g;
    f->rn.run = run;
    f->rn.ud = f;
    assert_int_equal(pthread_create(&f->runner, NULL, runner_body, f), 0);
}

/* Waits for the runner to return (it was stopped), joins it and releases the queue's cv. */
static void join_runner(struct fx *f)
{
    assert_true(wait_sem(&f->runner_done));
    assert_int_equal(pthread_join(f->runner, NULL), 0);
    vh__group_runner_release(&f->g);
    assert_false(f->g.kick_ready);
}

static void stop_runner(struct fx *f)
{
    vh__group_runner_stop(&f->g);
    join_runner(f);
}

/* A thread that queues ops: `n` of them, ids first.., submitted, posted or alternating. */
enum how { SUBMIT, POST, ALTERNATE };

struct worker {
    struct fx *f;
    enum how how;
    int first, n;
    struct top *ops; /* the posted ops (they must outlive the call): ops[0..n) */
    bool ok;         /* every submit returned after its batch ran */
    pthread_t th;
    sem_t finished;
};

static void *worker_body(void *arg)
{
    struct worker *w = arg;
    int i;

    w->ok = true;
    for (i = 0; i < w->n; i++) {
        if (w->how == POST || (w->how == ALTERNATE && i % 2 == 0))
            post(w->f, &w->ops[i], w->first + i);
        else if (!submit(w->f, w->first + i))
            w->ok = false;
    }
    sem_post(&w->finished);
    return NULL;
}

static void start_worker(struct worker *w, struct fx *f, enum how how, int first, int n)
{
    memset(w, 0, sizeof(*w));
    w->f = f;
    w->how = how;
    w->first = first;
    w->n = n;
    if (how != SUBMIT) {
        w->ops = calloc((size_t)n, sizeof(*w->ops));
        assert_non_null(w->ops);
    }
    assert_int_equal(sem_init(&w->finished, 0, 0), 0);
    assert_int_equal(pthread_create(&w->th, NULL, worker_body, w), 0);
}

/* Waits for the worker's last op to be queued (and, for a submit, done); joins it. */
static void join_worker(struct worker *w)
{
    assert_true(wait_sem(&w->finished));
    assert_int_equal(pthread_join(w->th, NULL), 0);
    sem_destroy(&w->finished);
    assert_true(w->ok);
}

/* Frees the posted ops (once each has completed). */
static void free_worker(struct worker *w)
{
    free(w->ops);
    w->ops = NULL;
}

/* ---- fixture ----------------------------------------------------------------------------- */

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    assert_int_equal(pthread_mutex_init(&f->mu, NULL), 0);
    assert_int_equal(pthread_mutex_init(&f->log_mu, NULL), 0);
    assert_int_equal(sem_init(&f->runner_done, 0, 0), 0);
    assert_int_equal(sem_init(&f->held, 0, 0), 0);
    assert_int_equal(sem_init(&f->release, 0, 0), 0);
    assert_int_equal(sem_init(&f->all_done, 0, 0), 0);
    assert_int_equal(sem_init(&f->in_done, 0, 0), 0);
    assert_int_equal(sem_init(&f->go_on, 0, 0), 0);
    atomic_init(&f->block_done_id, -1);
    f->g.mu = &f->mu;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;

    /* After a failure threads may still use the fixture: leave it to them. */
    if (!f->clean)
        return 0;
    sem_destroy(&f->runner_done);
    sem_destroy(&f->held);
    sem_destroy(&f->release);
    sem_destroy(&f->all_done);
    sem_destroy(&f->in_done);
    sem_destroy(&f->go_on);
    pthread_mutex_destroy(&f->log_mu);
    pthread_mutex_destroy(&f->mu);
    free(f);
    return 0;
}

/* Holds the next batch to start: it waits inside `run` (after posting `held`) for `release`. */
static void hold_next(struct fx *f)
{
    atomic_store(&f->hold, true);
}

/* What every test checks at its end: each of ids [0, n) completed once; no batch went wrong. */
static void check_all_once(struct fx *f, int n)
{
    int seen[MAX_IDS];
    size_t i;
    int id;

    assert_false(atomic_load(&f->overlapped));
    assert_false(atomic_load(&f->bad_batch));
    assert_false(atomic_load(&f->early));
    assert_false(atomic_load(&f->timed_out));
    assert_int_equal(atomic_load(&f->running), 0);
    memset(seen, 0, sizeof(seen));
    pthread_mutex_lock(&f->log_mu);
    assert_int_equal(f->n_log, (size_t)n);
    for (i = 0; i < f->n_log; i++)
        seen[f->log[i]]++;
    pthread_mutex_unlock(&f->log_mu);
    for (id = 0; id < n; id++) {
        assert_int_equal(seen[id], 1);
        assert_int_equal(atomic_load(&f->completed[id]), 1);
    }
    assert_null(f->g.head);
    assert_null(f->g.tail);
    assert_false(f->g.leading);
    assert_int_equal(f->g.posted, 0);
}

/* Checks the log of batches, from the first: sizes[0..n) and ids first..first + sum. */
static void check_batches(struct fx *f, const size_t *sizes, size_t n)
{
    size_t i, total = 0;

    pthread_mutex_lock(&f->log_mu);
    assert_int_equal(f->n_batches, n);
    for (i = 0; i < n; i++) {
        assert_int_equal(f->batches[i], sizes[i]);
        total += sizes[i];
    }
    assert_int_equal(f->n_log, total);
    for (i = 0; i < total; i++)
        assert_int_equal(f->log[i], (int)i);
    pthread_mutex_unlock(&f->log_mu);
}

/* ---- tests ------------------------------------------------------------------------------- */

#define POSTERS    4
#define PER_POSTER 250
#define QUEUED     20
#define PINGS      100
#define FIRST      (1 + QUEUED + PINGS) /* the threads' first id */

/*
 * Posted ops alone: the runner leads every batch, each on_done runs once after its batch,
 * batches hold at most batch_max ops, taken from the queue in order.
 */
/* True when a thread of this process is named `name` (/proc/self/task/<tid>/comm). */
static bool thread_named(const char *name)
{
    char path[300], comm[32];
    struct dirent *d;
    bool found = false;
    DIR *dir = opendir("/proc/self/task");
    FILE *fp;

    assert_non_null(dir);
    while (!found && (d = readdir(dir)) != NULL) {
        if (d->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "/proc/self/task/%s/comm", d->d_name);
        fp = fopen(path, "r");
        if (!fp)
            continue; /* the thread has ended */
        if (fgets(comm, sizeof(comm), fp)) {
            comm[strcspn(comm, "\n")] = '\0';
            found = strcmp(comm, name) == 0;
        }
        fclose(fp);
    }
    closedir(dir);
    return found;
}

/* The runner names its thread (top -H, perf): named before it leads its first batch. */
static void runner_names_its_thread(void **state)
{
    struct fx *f = *state;
    struct top op;

    assert_false(thread_named("vh-test-runner"));
    f->rn.name = "vh-test-runner";
    start_runner(f);
    atomic_store(&f->done_target, 1);
    post(f, &op, 0);
    assert_true(wait_sem(&f->all_done));
    assert_true(thread_named("vh-test-runner"));
    stop_runner(f);
    assert_false(thread_named("vh-test-runner"));
    f->clean = true;
}

static void posted_ops_alone(void **state)
{
    struct fx *f = *state;
    struct worker w[POSTERS];
    const size_t sizes[] = {1, 4, 4, 4, 4, 4};
    struct top *ops;
    int i, j, k, prev[POSTERS];
    size_t b;

    f->g.batch_max = 4;
    start_runner(f);
    ops = calloc(FIRST, sizeof(*ops));
    assert_non_null(ops);

    /* One thread, the queue filled behind a held batch: the order and the sizes are known. */
    atomic_store(&f->done_target, 1 + QUEUED);
    hold_next(f);
    post(f, &ops[0], 0);
    assert_true(wait_sem(&f->held));
    for (i = 1; i <= QUEUED; i++)
        post(f, &ops[i], i);
    assert_int_equal(queued(f), QUEUED);
    assert_int_equal(atomic_load(&f->done_calls), 0);
    pthread_mutex_lock(&f->mu);
    assert_int_equal(f->g.posted, 1 + QUEUED);
    pthread_mutex_unlock(&f->mu);
    sem_post(&f->release);
    assert_true(wait_sem(&f->all_done));
    check_batches(f, sizes, sizeof(sizes) / sizeof(sizes[0]));

    /* One at a time: each post finds the runner idle, most likely, and must wake it. */
    for (i = 1 + QUEUED; i < FIRST; i++) {
        atomic_store(&f->done_target, i + 1);
        post(f, &ops[i], i);
        assert_true(wait_sem(&f->all_done));
    }
    pthread_mutex_lock(&f->log_mu);
    assert_int_equal(f->n_batches, sizeof(sizes) / sizeof(sizes[0]) + PINGS);
    pthread_mutex_unlock(&f->log_mu);

    /* Several threads at once: each thread's ops stay in its order. */
    atomic_store(&f->done_target, FIRST + POSTERS * PER_POSTER);
    for (i = 0; i < POSTERS; i++)
        start_worker(&w[i], f, POST, FIRST + i * PER_POSTER, PER_POSTER);
    for (i = 0; i < POSTERS; i++)
        join_worker(&w[i]);
    assert_true(wait_sem(&f->all_done));
    stop_runner(f);
    check_all_once(f, FIRST + POSTERS * PER_POSTER);
    for (i = 0; i < POSTERS; i++)
        prev[i] = -1;
    pthread_mutex_lock(&f->log_mu);
    for (b = 0; b < FIRST; b++)
        assert_int_equal(f->log[b], (int)b);
    for (b = FIRST; b < f->n_log; b++) {
        j = f->log[b] - FIRST;
        k = j / PER_POSTER;
        assert_true(j % PER_POSTER > prev[k]);
        prev[k] = j % PER_POSTER;
    }
    for (b = 0; b < f->n_batches; b++)
        assert_true(f->batches[b] >= 1 && f->batches[b] <= 4);
    pthread_mutex_unlock(&f->log_mu);
    for (i = 0; i < POSTERS; i++)
        free_worker(&w[i]);
    free(ops);
    f->clean = true;
}

#define MIXED_THREADS 8
#define MIXED_PER     500

/*
 * Submitters and posters at once: every op completes once, batches never overlap, and a
 * submitter returns only after its op's batch ran.
 */
static void submitted_and_posted_at_once(void **state)
{
    struct fx *f = *state;
    struct worker w[MIXED_THREADS];
    int i, posted = 0;

    f->g.batch_max = 16;
    start_runner(f);
    for (i = 0; i < MIXED_THREADS; i++) {
        enum how how = i < 3 ? SUBMIT : i < 6 ? POST : ALTERNATE;

        posted += how == POST ? MIXED_PER : how == ALTERNATE ? MIXED_PER / 2 : 0;
    }
    atomic_store(&f->done_target, posted);
    for (i = 0; i < MIXED_THREADS; i++)
        start_worker(&w[i], f, i < 3 ? SUBMIT : i < 6 ? POST : ALTERNATE, i * MIXED_PER, MIXED_PER);
    for (i = 0; i < MIXED_THREADS; i++)
        join_worker(&w[i]);
    assert_true(wait_sem(&f->all_done));
    stop_runner(f);
    assert_int_equal(atomic_load(&f->done_calls), posted);
    check_all_once(f, MIXED_THREADS * MIXED_PER);
    for (i = 0; i < MIXED_THREADS; i++)
        free_worker(&w[i]);
    f->clean = true;
}

/*
 * A posted op queued while a submitter's batch runs: when that batch ends, the runner (or
 * the submitter queued next, in its batch) runs it.
 */
static void posted_behind_a_submitters_batch(void **state)
{
    struct fx *f = *state;
    struct worker a, b;
    struct top p[3];
    const size_t sizes[] = {1, 1, 1, 2, 1, 2};

    f->g.batch_max = 0;
    start_runner(f);
    memset(p, 0, sizeof(p));

    /* Nothing else queued: the runner is woken for it. */
    atomic_store(&f->done_target, 1);
    hold_next(f);
    start_worker(&a, f, SUBMIT, 0, 1);
    assert_true(wait_sem(&f->held));
    post(f, &p[0], 1);
    assert_int_equal(atomic_load(&f->done_calls), 0);
    sem_post(&f->release);
    assert_true(wait_sem(&f->all_done));
    join_worker(&a);

    /* A submitter queued before it: the submitter leads, the posted op in its batch. */
    atomic_store(&f->done_target, 2);
    hold_next(f);
    start_worker(&a, f, SUBMIT, 2, 1);
    assert_true(wait_sem(&f->held));
    start_worker(&b, f, SUBMIT, 3, 1);
    assert_true(wait_queued(f, 1));
    post(f, &p[1], 4);
    sem_post(&f->release);
    assert_true(wait_sem(&f->all_done));
    join_worker(&a);
    join_worker(&b);

    /* A submitter queued after it: the runner leads a batch with the submitter's op in it. */
    atomic_store(&f->done_target, 3);
    hold_next(f);
    start_worker(&a, f, SUBMIT, 5, 1);
    assert_true(wait_sem(&f->held));
    post(f, &p[2], 6);
    start_worker(&b, f, SUBMIT, 7, 1);
    assert_true(wait_queued(f, 2));
    sem_post(&f->release);
    assert_true(wait_sem(&f->all_done));
    join_worker(&a);
    join_worker(&b);

    stop_runner(f);
    check_batches(f, sizes, sizeof(sizes) / sizeof(sizes[0]));
    check_all_once(f, 8);
    f->clean = true;
}

#define DRAIN 30

/* Stopped with posted ops queued behind a held batch of its own: the runner runs them all. */
static void runner_stop_drains(void **state)
{
    struct fx *f = *state;
    struct top *ops;
    int i;

    f->g.batch_max = 3;
    start_runner(f);
    ops = calloc(1 + DRAIN, sizeof(*ops));
    assert_non_null(ops);
    hold_next(f);
    post(f, &ops[0], 0);
    assert_true(wait_sem(&f->held));
    for (i = 1; i <= DRAIN; i++)
        post(f, &ops[i], i);
    vh__group_runner_stop(&f->g);
    assert_false(posted_within(&f->runner_done, 0));
    sem_post(&f->release);
    join_runner(f);
    /* Every on_done ran before the runner returned. */
    assert_int_equal(atomic_load(&f->done_calls), 1 + DRAIN);
    check_all_once(f, 1 + DRAIN);
    free(ops);
    f->clean = true;
}

/* The same, the held batch a submitter's: its end wakes the runner, which runs the rest. */
static void runner_stop_drains_behind_a_submitter(void **state)
{
    struct fx *f = *state;
    struct worker a;
    struct top *ops;
    int i;

    f->g.batch_max = 0;
    start_runner(f);
    ops = calloc(1 + DRAIN, sizeof(*ops));
    assert_non_null(ops);
    hold_next(f);
    start_worker(&a, f, SUBMIT, 0, 1);
    assert_true(wait_sem(&f->held));
    for (i = 1; i <= DRAIN; i++)
        post(f, &ops[i], i);
    vh__group_runner_stop(&f->g);
    sem_post(&f->release);
    join_runner(f);
    assert_int_equal(atomic_load(&f->done_calls), DRAIN);
    join_worker(&a);
    check_all_once(f, 1 + DRAIN);
    free(ops);
    f->clean = true;
}

/*
 * The runner returns only once every posted op is answered, also when a submitter's batch
 * ran the last of them: here the submitter queued ahead of the posted ops leads their batch,
 * and the first on_done is held while the test checks that the runner has not returned.
 */
static void runner_stop_waits_for_a_submitters_on_done(void **state)
{
    struct fx *f = *state;
    struct worker a, b;
    struct top ops[4];
    const size_t sizes[] = {1, 5};
    bool returned;
    int i;

    f->g.batch_max = 0;
    start_runner(f);
    memset(ops, 0, sizeof(ops));
    hold_next(f);
    start_worker(&a, f, SUBMIT, 0, 1);
    assert_true(wait_sem(&f->held));
    start_worker(&b, f, SUBMIT, 1, 1);
    assert_true(wait_queued(f, 1));
    atomic_store(&f->block_done_id, 2);
    for (i = 0; i < 4; i++)
        post(f, &ops[i], 2 + i);
    vh__group_runner_stop(&f->g);
    sem_post(&f->release);
    assert_true(wait_sem(&f->in_done)); /* b's thread, inside on_done of op 2 */
    returned = posted_within(&f->runner_done, 300);
    sem_post(&f->go_on);
    if (returned)
        sem_post(&f->runner_done); /* for join_runner */
    join_runner(f);
    join_worker(&a);
    join_worker(&b);
    f->clean = true; /* no thread left */
    assert_false(returned);
    assert_int_equal(atomic_load(&f->done_calls), 4);
    check_batches(f, sizes, sizeof(sizes) / sizeof(sizes[0]));
    check_all_once(f, 6);
}

#define SOLO_THREADS 8
#define SOLO_PER     500

/* No runner, submits only (the store's use): leaders hand over, batches form and stay FIFO. */
static void submits_without_a_runner(void **state)
{
    struct fx *f = *state;
    struct worker w[SOLO_THREADS];
    const size_t sizes[] = {1, 2, 2};
    int i;

    /* Four submitters queued one by one behind a held leader. */
    f->g.batch_max = 2;
    hold_next(f);
    start_worker(&w[0], f, SUBMIT, 0, 1);
    assert_true(wait_sem(&f->held));
    for (i = 1; i <= 4; i++) {
        start_worker(&w[i], f, SUBMIT, i, 1);
        assert_true(wait_queued(f, (size_t)i));
    }
    sem_post(&f->release);
    for (i = 0; i <= 4; i++)
        join_worker(&w[i]);
    check_batches(f, sizes, sizeof(sizes) / sizeof(sizes[0]));

    /* Many at once, no bound on a batch. */
    f->g.batch_max = 0;
    for (i = 0; i < SOLO_THREADS; i++)
        start_worker(&w[i], f, SUBMIT, 5 + i * SOLO_PER, SOLO_PER);
    for (i = 0; i < SOLO_THREADS; i++)
        join_worker(&w[i]);
    check_all_once(f, 5 + SOLO_THREADS * SOLO_PER);
    assert_int_equal(atomic_load(&f->done_calls), 0);
    assert_false(f->g.kick_ready);
    f->clean = true;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(posted_ops_alone, setup, teardown),
        cmocka_unit_test_setup_teardown(runner_names_its_thread, setup, teardown),
        cmocka_unit_test_setup_teardown(submitted_and_posted_at_once, setup, teardown),
        cmocka_unit_test_setup_teardown(posted_behind_a_submitters_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(runner_stop_drains, setup, teardown),
        cmocka_unit_test_setup_teardown(runner_stop_drains_behind_a_submitter, setup, teardown),
        cmocka_unit_test_setup_teardown(runner_stop_waits_for_a_submitters_on_done, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(submits_without_a_runner, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
