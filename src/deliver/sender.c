/*
 * The sender (sender.h): store <-> policy <-> engine. One dispatcher thread loops:
 *   1. take the attempts the engine finished (its done callback queued them), once
 *      RECORD_BATCH of them are waiting or the oldest has waited RECORD_LINGER_MS,
 *   2. record them in one store transaction (group commit),
 *   3. claim due deliveries up to the in-flight cap and submit them to the engine,
 *   4. sleep until the next delivery is due, a wake-up, or finished attempts to record.
 * The retry decision is made by the pure policy (vh__delivery_on_attempt) on the engine
 * thread, when the attempt ends, so the time it bases the next due time on is the end of
 * the attempt.
 */
#include <vocohook/sender.h>

#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <vocohook/alloc.h>
#include <vocohook/clock.h>
#include <vocohook/json.h>

#include "deliver/deliver_int.h"
#include "core/heap_int.h"
#include "core/thread_int.h"
#include "core/banned.h"

#define CLAIM_BATCH_DEFAULT 256
#define IDLE_POLL_DEFAULT   1000
/*
 * Finished attempts wait for company before they are recorded: each record is a commit
 * with a sync, taken in turn with every other write of the store, and each finished attempt
 * used to wake the dispatcher. At a steady 1 000 sessions/s that was one synced record per
 * delivery; a draining backlog recorded in batches of about 34, with a wake-up per attempt.
 * Now the dispatcher wakes for the first finished attempt and for a full batch only
 * (docs/BENCHMARKS.md, "Session 8"). The cost: an outcome reaches the store up to
 * RECORD_LINGER_MS later, and a crash in that window sends the delivery again (at least
 * once, as for any attempt not yet recorded). A stop records at once.
 */
#define RECORD_BATCH     64
#define RECORD_LINGER_MS 5
/*
 * At a stop, outcomes the store refuses (a full disk) are tried again, 500 ms apart, for
 * this long after the first refusal, then dropped: their deliveries are sent again.
 */
#define STOP_RECORD_MS 1000
/*
 * How long a claim is ours. An attempt waits in the engine's per-endpoint queue before it
 * starts, so the lease covers the queue as well as the timeout. A job that waited so long
 * that its attempt could outlast the lease is not started (the engine's start_by_ms): once
 * the lease has run out, another node may claim the delivery and send it too. It goes back
 * to pending, due at once, and no attempt is used up; the queue it waited in is shorter by
 * then. LEASE_MARGIN_MS covers the record after the attempt and clocks a little apart.
 */
#define LEASE_MIN_MS    (10 * 60 * 1000)
#define LEASE_MARGIN_MS (10 * 1000)

/*
 * How long the dispatcher waits, at its start, for the store's watcher to listen (PostgreSQL)
 * before it claims anyway: past it, what is claimed before the watcher's first connect is
 * dropped and claimed again when it does connect.
 */
#define WATCH_START_WAIT_MS 2000

/*
 * The records one claim returned, shared by its jobs: each job points at its own record
 * (2.6 KB, most of it the endpoint's URL buffer) instead of a copy, and the last job freed
 * frees the array. Jobs are freed on one thread at a time (the dispatcher, or the sender's
 * teardown after it), so the count needs no lock.
 */
struct claim_batch {
    struct vh_delivery_job_rec *recs;
    size_t n;
    size_t refs; /* jobs not yet freed */
};

/* One claimed delivery, from its claim until its outcome is recorded. */
struct job {
    struct vh_sender *s;
    struct claim_batch *batch;
    struct vh_delivery_job_rec *rec; /* in batch; owns the body, which the engine borrows */
    struct vh_retry_policy policy;   /* the endpoint's own, or the server's */
    struct vh_attempt attempt;       /* the engine's report */
    struct vh_delivery next;         /* the policy's decision */
    struct job *next_done;
};

/* Upper bounds of the attempt-duration histogram, in ms (then +Inf). */
static const int64_t duration_buckets_ms[] = {5,   10,   25,   50,   100,   250,
                                              500, 1000, 2500, 5000, 10000, 30000};
#define N_BUCKETS (sizeof(duration_buckets_ms) / sizeof(duration_buckets_ms[0]))
#define N_RESULTS (VH_ATTEMPT_INTERNAL + 1)

struct vh_sender {
    struct vh_store *st;
    struct vh_engine *engine;
    char node_id[VH_NODE_ID_MAX + 1];
    struct vh_retry_policy policy;
    size_t claim_batch;
    size_t max_in_flight;
    size_t max_bytes; /* the claimed payloads' bound (plus one payload) */
    int64_t idle_poll_ms;
    int64_t lease_ms;
    bool sched_batch;
    size_t heap_warm_bytes;
    vh_log_fn *log;
    void *log_ud;
    pthread_t thread;
    /*
     * Held by the dispatcher from a claim until its jobs are submitted, and by
     * vh_sender_endpoint_changed around its drop: a claim that read an endpoint before its
     * change has its jobs in the engine, to be dropped, before the drop; one after it reads
     * the change. Taken before `lock`, never while the engine may wait for us.
     */
    pthread_mutex_t submit_lock;
    pthread_mutex_t lock; /* guards everything below */
    pthread_cond_t cond;  /* on CLOCK_MONOTONIC */
    struct job *done_head, *done_tail;
    size_t done_n;         /* jobs in the done list */
    int64_t done_since_ms; /* monotonic: when the done list's first job arrived */
    bool wake;
    bool stopping;
    bool engine_stopped;
    bool watching;  /* the store hears other nodes' endpoint changes (PostgreSQL) */
    bool listening; /* ... and has connected once: every change since reaches us */
    struct vh_sender_stats stats;
    uint64_t by_result[N_RESULTS];
    uint64_t buckets[N_BUCKETS + 1]; /* not cumulative; the last is +Inf */
    int64_t duration_sum_ms;
};

static void sender_log(struct vh_sender *s, enum vh_log_level level, const char *msg,
                       const char *detail)
{
    struct vh_buf line = VH_BUF_INIT(2048);
    char ts[VH_TIME_LEN + 1];
    int rc;

    if (!s->log)
        return;
    vh_time_format(vh_time_now_ms(), ts);
    rc = vh_buf_addf(&line, "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":\"%s\",\"node\":\"%s\"", ts,
                     vh_log_level_name(level), msg, s->node_id);
    if (rc == 0 && detail) {
        rc = vh_buf_adds(&line, ",\"detail\":");
        if (rc == 0)
            rc = vh_json_add_string(&line, detail, strlen(detail));
    }
    if (rc == 0)
        rc = vh_buf_addc(&line, '}');
    if (rc == 0)
        s->log(s->log_ud, level, line.data);
    vh_buf_release(&line);
}

void vh_sender_config_init(struct vh_sender_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->node_id = "node";
    vh_retry_policy_init(&cfg->policy);
    vh_engine_config_init(&cfg->engine);
}

static void batch_unref(struct claim_batch *b)
{
    if (--b->refs > 0)
        return;
    vh_delivery_job_recs_free(b->recs, b->n);
    vh_free(b);
}

static void job_free(struct job *j)
{
    vh_delivery_job_rec_release(j->rec); /* the body and the secret, now */
    batch_unref(j->batch);
    vh_free(j);
}

/* Queues a finished job for the dispatcher. */
static void push_done(struct vh_sender *s, struct job *j)
{
    int64_t now = vh_time_mono_ms();

    pthread_mutex_lock(&s->lock);
    j->next_done = NULL;
    if (s->done_tail) {
        s->done_tail->next_done = j;
    } else {
        s->done_head = j;
        s->done_since_ms = now;
    }
    s->done_tail = j;
    s->done_n++;
    s->stats.attempts++;
    if ((unsigned)j->attempt.result < N_RESULTS)
        s->by_result[j->attempt.result]++;
    {
        size_t b = 0;

        while (b < N_BUCKETS && j->attempt.duration_ms > duration_buckets_ms[b])
            b++;
        s->buckets[b]++;
        s->duration_sum_ms += j->attempt.duration_ms > 0 ? j->attempt.duration_ms : 0;
    }
    if (j->next.state == VH_DELIVERY_SUCCEEDED)
        s->stats.succeeded++;
    else if (j->next.state == VH_DELIVERY_ABANDONED)
        s->stats.abandoned++;
    if (!vh_attempt_result_counts(j->attempt.result))
        s->stats.interrupted++;
    /* The first starts the linger (the dispatcher may sleep longer); a full batch ends it. */
    if (s->done_n == 1 || s->done_n == RECORD_BATCH)
        pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

/*
 * Copies the engine's report without the unused tail of its buffers (1.3 KB, most of it
 * response_head, where a 204 leaves a few bytes): the fields, then the bytes in use.
 */
static void attempt_copy(struct vh_attempt *dst, const struct vh_attempt *a)
{
    size_t head = a->response_len < VH_ATTEMPT_HEAD_MAX ? a->response_len : VH_ATTEMPT_HEAD_MAX;
    size_t error = strnlen(a->error, sizeof(a->error) - 1);

    memcpy(dst, a, offsetof(struct vh_attempt, response_head));
    dst->response_len = head;
    memcpy(dst->response_head, a->response_head, head);
    dst->response_head[head] = '\0';
    memcpy(dst->error, a->error, error);
    dst->error[error] = '\0';
}

/* Decides what follows the attempt (pure policy) and hands the job back. */
static void finish(struct job *j, const struct vh_attempt *a)
{
    struct vh_error err = VH_ERROR_INIT;
    int64_t now = vh_time_now_ms();

    attempt_copy(&j->attempt, a);
    j->next.state = VH_DELIVERY_IN_FLIGHT;
    j->next.attempts = j->rec->attempts - j->rec->attempt_base;
    j->next.next_attempt_ms = j->rec->next_attempt_ms;
    if (vh__delivery_on_attempt(&j->next, a, now, &j->policy, &err) < 0) {
        /* Cannot happen for a job we numbered ourselves; never lose it either way. */
        sender_log(j->s, VH_LOG_ERROR, "policy refused an attempt", err.msg);
        j->attempt.result = VH_ATTEMPT_INTERNAL;
        j->next.state = VH_DELIVERY_PENDING;
        j->next.next_attempt_ms = now + VH_RETRY_INTERNAL_DELAY_MS;
    }
    push_done(j->s, j);
}

/* The engine's done callback: runs on the engine thread. */
static void on_attempt_done(void *ud, const struct vh_attempt *a)
{
    finish(ud, a);
}

/* A job the engine would not take: reported as not counting, so nothing is used up. */
static void finish_unsent(struct job *j, enum vh_attempt_result result, const char *why)
{
    struct vh_attempt a;

    memset(&a, 0, sizeof(a));
    a.number = j->rec->attempts - j->rec->attempt_base + 1;
    a.result = result;
    a.started_ms = vh_time_now_ms();
    snprintf(a.error, sizeof(a.error), "%s", why);
    finish(j, &a);
}

/* Records the finished jobs in batches of at most VH_CLAIM_MAX, then frees them. */
/*
 * Records the finished jobs in batches of at most VH_CLAIM_MAX and frees them. A batch the
 * store refuses (the database is down, a deadlock) is kept and returned, to be recorded
 * again: the receiver has seen those attempts, and dropping them would leave the rows in
 * flight until their lease runs out. Recording again is safe: the store ignores a report
 * whose attempt it already holds.
 */
static struct job *record(struct vh_sender *s, struct job *list)
{
    struct vh_delivery_result *res = NULL;
    struct job *batch[VH_CLAIM_MAX];
    struct job *failed = NULL, **failed_tail = &failed;
    size_t n, i, recorded = 0, bytes = 0;

    res = vh_malloc(sizeof(*res) * VH_CLAIM_MAX);
    while (list) {
        struct vh_error err = VH_ERROR_INIT;

        for (n = 0; list && n < VH_CLAIM_MAX; n++, list = list->next_done)
            batch[n] = list;
        for (i = 0; res && i < n; i++) {
            const struct job *j = batch[i];
            const struct vh_attempt *a = &j->attempt;
            struct vh_delivery_result *r = &res[i];

            memset(r, 0, sizeof(*r));
            r->delivery_id = j->rec->delivery_id;
            r->endpoint_id = j->rec->endpoint_id;
            r->row = j->rec->row;
            r->node_id = s->node_id;
            r->lease_until_ms = j->rec->lease_until_ms;
            r->attempt = j->rec->attempts + 1;
            r->started_ms = a->started_ms;
            r->duration_ms = a->duration_ms < 0 ? 0 : a->duration_ms;
            r->http_status = a->http_status;
            r->error_class = a->result == VH_ATTEMPT_OK ? NULL : vh_attempt_result_name(a->result);
            r->error = a->error[0] ? a->error : NULL;
            r->response_head = a->response_len ? a->response_head : NULL;
            r->response_len = a->response_len;
            r->new_state = vh_delivery_state_name(j->next.state);
            r->next_attempt_ms = j->next.next_attempt_ms;
            r->interrupted = !vh_attempt_result_counts(a->result);
        }
        if (!res || vh_store_delivery_record(s->st, res, n, &err) < 0) {
            sender_log(s, VH_LOG_ERROR, "recording attempts failed; will retry",
                       res ? err.msg : "out of memory");
            pthread_mutex_lock(&s->lock);
            s->stats.record_fails++;
            pthread_mutex_unlock(&s->lock);
            for (i = 0; i < n; i++) {
                batch[i]->next_done = NULL;
                *failed_tail = batch[i];
                failed_tail = &batch[i]->next_done;
            }
            continue;
        }
        for (i = 0; i < n; i++) {
            bytes += batch[i]->rec->body.len;
            job_free(batch[i]);
        }
        recorded += n;
    }
    vh_free(res);
    pthread_mutex_lock(&s->lock);
    s->stats.in_flight -= recorded;
    s->stats.in_flight_bytes -= bytes;
    pthread_mutex_unlock(&s->lock);
    return failed;
}

/* Frees jobs that could not be recorded before shutdown: their leases bring them back. */
static void drop_unrecorded(struct vh_sender *s, struct job *list)
{
    size_t n = 0, bytes = 0;

    while (list) {
        struct job *next = list->next_done;

        bytes += list->rec->body.len;
        job_free(list);
        list = next;
        n++;
    }
    if (n) {
        sender_log(s, VH_LOG_ERROR,
                   "stopping with attempts not recorded; their deliveries are sent again at "
                   "the next start (SQLite), or once their leases run out (PostgreSQL)",
                   NULL);
        pthread_mutex_lock(&s->lock);
        s->stats.in_flight -= n;
        s->stats.in_flight_bytes -= bytes;
        pthread_mutex_unlock(&s->lock);
    }
}

/*
 * Claims up to `max` due deliveries whose payloads fit in `max_bytes` (at least one), and
 * submits them. Returns how many were claimed; sets `*failed` when the claim failed (it may
 * still have committed: see `orphans` in dispatch).
 */
static size_t claim_and_submit_locked(struct vh_sender *s, size_t max, size_t max_bytes,
                                      bool *failed)
{
    struct vh_error err = VH_ERROR_INIT;
    struct vh_delivery_job_rec *recs = NULL;
    struct claim_batch *batch;
    size_t n = 0, i, bytes = 0;
    int64_t now = vh_time_now_ms();

    if (vh_store_delivery_claim_bounded(s->st, s->node_id, now, s->lease_ms, max, max_bytes, &recs,
                                        &n, &err) < 0) {
        sender_log(s, VH_LOG_ERROR, "claiming deliveries failed", err.msg);
        *failed = true;
        return 0;
    }
    if (n == 0) {
        vh_delivery_job_recs_free(recs, 0); /* a backend may return an empty array */
        return 0;
    }
    batch = vh_malloc(sizeof(*batch));
    if (!batch) {
        /* Leave the claims to their leases: recovery puts them back. */
        sender_log(s, VH_LOG_ERROR, "out of memory", "claimed deliveries left to their leases");
        vh_delivery_job_recs_free(recs, n);
        return n;
    }
    batch->recs = recs;
    batch->n = n;
    batch->refs = n + 1; /* each job's, and this loop's until it ends */
    for (i = 0; i < n; i++)
        bytes += recs[i].body.len;
    pthread_mutex_lock(&s->lock);
    s->stats.in_flight += n;
    s->stats.in_flight_bytes += bytes;
    pthread_mutex_unlock(&s->lock);
    for (i = 0; i < n; i++) {
        struct job *j = vh_malloc(sizeof(*j));
        struct vh_delivery_job job;
        struct vh_error serr = VH_ERROR_INIT;
        int rc;

        if (!j) {
            /* Leave the claim to its lease: recovery puts it back. */
            size_t body_len = recs[i].body.len;

            sender_log(s, VH_LOG_ERROR, "out of memory", recs[i].delivery_id);
            vh_delivery_job_rec_release(&recs[i]);
            batch_unref(batch);
            pthread_mutex_lock(&s->lock);
            s->stats.in_flight--;
            s->stats.in_flight_bytes -= body_len;
            pthread_mutex_unlock(&s->lock);
            continue;
        }
        memset(j, 0, sizeof(*j));
        j->s = s;
        j->batch = batch;
        j->rec = &recs[i];
        j->policy = s->policy;
        if (j->rec->timeout_ms > 0)
            j->policy.timeout_ms = j->rec->timeout_ms;
        if (j->rec->retry_schedule[0] &&
            vh_retry_policy_set_schedule(&j->policy, j->rec->retry_schedule,
                                         strlen(j->rec->retry_schedule), &serr) < 0) {
            sender_log(s, VH_LOG_WARN, "endpoint schedule ignored", serr.msg);
            j->policy.steps = s->policy.steps;
            memcpy(j->policy.delays_ms, s->policy.delays_ms, sizeof(s->policy.delays_ms));
            vh_error_clear(&serr);
        }
        memset(&job, 0, sizeof(job));
        job.delivery_id = j->rec->delivery_id;
        job.event_id = j->rec->event_id;
        job.endpoint_id = j->rec->endpoint_id;
        job.url = j->rec->url;
        job.secret = j->rec->secret;
        job.secret_len = strlen(j->rec->secret);
        job.body = j->rec->body.data;
        job.body_len = j->rec->body.len;
        job.attempt = j->rec->attempts - j->rec->attempt_base + 1;
        /*
         * An endpoint's own timeout can be longer than the lease, which is sized by the
         * server's: such an attempt is cut to what its lease leaves (docs/decisions.md).
         */
        vh__attempt_window(j->rec->lease_until_ms, now, j->policy.timeout_ms, LEASE_MARGIN_MS,
                           &job.start_by_ms, &job.timeout_ms);
        rc = vh_engine_submit(s->engine, &job, on_attempt_done, j, &serr);
        if (rc < 0)
            finish_unsent(j, rc == VH_ESTATE ? VH_ATTEMPT_INTERRUPTED : VH_ATTEMPT_INTERNAL,
                          serr.msg);
    }
    batch_unref(batch);
    return n;
}

static size_t claim_and_submit(struct vh_sender *s, size_t max, size_t max_bytes, bool *failed)
{
    size_t n;

    pthread_mutex_lock(&s->submit_lock);
    n = claim_and_submit_locked(s, max, max_bytes, failed);
    pthread_mutex_unlock(&s->submit_lock);
    return n;
}

static void deadline_after(struct timespec *ts, int64_t ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += (time_t)(ms / 1000);
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

/*
 * Whether the finished jobs are to be recorded now (under s->lock). When they are not but
 * some are waiting, pulls `*until` in to the end of their linger and sets `*lingers`.
 */
static bool record_due(struct vh_sender *s, struct timespec *until, bool *lingers)
{
    struct timespec end;
    int64_t left;

    *lingers = false;
    if (!s->done_head)
        return false;
    if (s->done_n >= RECORD_BATCH || s->stopping)
        return true;
    left = s->done_since_ms + RECORD_LINGER_MS - vh_time_mono_ms();
    if (left <= 0)
        return true;
    deadline_after(&end, left);
    if (end.tv_sec < until->tv_sec ||
        (end.tv_sec == until->tv_sec && end.tv_nsec < until->tv_nsec)) {
        *until = end;
        *lingers = true;
    }
    return false;
}

/* How long to sleep: until the next pending delivery is due, at most the idle poll. */
static int64_t idle_wait_ms(struct vh_sender *s)
{
    struct vh_error err = VH_ERROR_INIT;
    int64_t due = 0, wait;

    if (vh_store_delivery_next_due(s->st, &due, &err) < 0)
        return s->idle_poll_ms;
    wait = due - vh_time_now_ms();
    if (wait < 0)
        wait = 0;
    return wait < s->idle_poll_ms ? wait : s->idle_poll_ms;
}

/*
 * Takes back the claims (any node's) whose lease ran out, unless the wall clock stepped
 * forward within the last lease: then the claims held across the step only look expired.
 */
static void recover_expired(struct vh_sender *s, struct vh__clock_watch *clock)
{
    struct vh_error err = VH_ERROR_INIT;
    int64_t now = vh_time_now_ms(), step;
    char detail[96];
    int n;

    if (!vh__clock_watch_allows(clock, now, vh_time_mono_ms(), s->lease_ms, &step)) {
        if (step > 0) {
            snprintf(detail, sizeof(detail), "stepped %lld s ahead; waiting %lld s",
                     (long long)(step / 1000), (long long)(s->lease_ms / 1000));
            sender_log(s, VH_LOG_WARN, "the wall clock jumped; lease recovery waits a lease",
                       detail);
        }
        return;
    }
    n = vh_store_delivery_recover(s->st, NULL, now, &err);
    if (n > 0)
        sender_log(s, VH_LOG_WARN, "took back deliveries whose lease ran out", NULL);
    else if (n < 0)
        sender_log(s, VH_LOG_ERROR, "lease recovery failed", err.msg);
}

/*
 * Before the first claim: waits (at most WATCH_START_WAIT_MS) for the store's watcher to
 * listen, so that no endpoint change can slip between a claim and its first connect. Its
 * connect drops whatever was claimed before (vh_sender_endpoint_changed with NULL).
 */
static void await_watcher(struct vh_sender *s)
{
    struct timespec until;
    bool waited;

    deadline_after(&until, WATCH_START_WAIT_MS);
    pthread_mutex_lock(&s->lock);
    while (s->watching && !s->listening && !s->stopping &&
           pthread_cond_timedwait(&s->cond, &s->lock, &until) != ETIMEDOUT)
        ;
    waited = s->watching && !s->listening && !s->stopping;
    pthread_mutex_unlock(&s->lock);
    if (waited)
        sender_log(s, VH_LOG_WARN, "the store's watcher is not listening yet; claiming without it",
                   NULL);
}

static void *dispatch(void *arg)
{
    struct vh_sender *s = arg;
    int64_t wait_ms = 0;
    int64_t next_recover = vh_time_mono_ms() + s->lease_ms / 4;
    struct vh__clock_watch clock = {0};
    int64_t step;
    struct job *unrecorded = NULL; /* refused by the store; recorded again */
    int64_t stop_refused_ms = -1;  /* when the store first refused a record at the stop */

    vh__thread_name("vh-dispatch");
    (void)vh__heap_warm(s->heap_warm_bytes); /* best effort: pages not made ready fault in */
    if (s->sched_batch) {
        int rc = vh__thread_sched_batch();

        if (rc)
            sender_log(s, VH_LOG_WARN, "SCHED_BATCH refused; the dispatcher keeps its policy",
                       strerror(rc));
    }
    await_watcher(s);
    /* The first reading: a step from here on is seen at the next recovery. */
    (void)vh__clock_watch_allows(&clock, vh_time_now_ms(), vh_time_mono_ms(), 0, &step);
    /*
     * A claim failed, and may have committed anyway (the connection broke after COMMIT):
     * then rows are in flight under our name that we do not hold. We cannot tell them from
     * the ones we do hold, so we stop claiming until we hold none, then take back every row
     * in flight under our name: all of those are orphans.
     */
    bool orphans = false;

    for (;;) {
        struct timespec until;
        struct job *done = NULL;
        bool stopping, stopped, record_now;
        size_t room, room_bytes;

        deadline_after(&until, wait_ms);
        pthread_mutex_lock(&s->lock);
        for (;;) {
            struct timespec at = until;
            bool lingers;

            record_now = record_due(s, &at, &lingers);
            /*
             * A stopped engine ends the wait at once, unless a refused batch waits to be
             * tried again: then the tries at a stop stay 500 ms apart (wait_ms), or they
             * would all run within a millisecond and give the store no time to recover.
             */
            if (record_now || s->wake || (s->stopping && s->engine_stopped && !unrecorded))
                break;
            if (pthread_cond_timedwait(&s->cond, &s->lock, &at) == ETIMEDOUT && !lingers)
                break;
        }
        if (record_now) {
            done = s->done_head;
            s->done_head = s->done_tail = NULL;
            s->done_n = 0;
        }
        s->wake = false;
        stopping = s->stopping;
        stopped = s->engine_stopped;
        pthread_mutex_unlock(&s->lock);

        if (unrecorded) {
            struct job *tail = unrecorded;

            while (tail->next_done)
                tail = tail->next_done;
            tail->next_done = done;
            done = unrecorded;
            unrecorded = NULL;
        }
        if (done)
            unrecorded = record(s, done);
        if (stopping) {
            /*
             * Given up by time, not by count: attempts the engine finishes during the stop
             * each bring a try at once, and three tries once ran within 70 ms of the stop.
             */
            if (unrecorded) {
                int64_t now = vh_time_mono_ms();

                if (stop_refused_ms < 0) {
                    stop_refused_ms = now;
                } else if (now - stop_refused_ms >= STOP_RECORD_MS) {
                    drop_unrecorded(s, unrecorded);
                    unrecorded = NULL;
                }
            }
            if (stopped && !unrecorded) {
                pthread_mutex_lock(&s->lock);
                done = s->done_head;
                pthread_mutex_unlock(&s->lock);
                if (!done)
                    break;
            }
            wait_ms = unrecorded ? 500 : 1000;
            continue;
        }
        /*
         * Not while the store refuses records: the claims of the outcomes waiting to be
         * recorded may outlive their leases meanwhile (a full disk for ten minutes), and a
         * recovery that took them back, being a smaller write, could get through first. The
         * record would then be fenced off, and a delivery that succeeded sent again.
         */
        if (!unrecorded && vh_time_mono_ms() >= next_recover) {
            recover_expired(s, &clock);
            next_recover = vh_time_mono_ms() + s->lease_ms / 4;
        }
        /*
         * Read after the record, so that what it freed is room now: when every held job
         * ended in this batch (a full byte bound holds few), no finished attempt is left
         * to wake the dispatcher, and a room read before it would wait the idle poll.
         */
        pthread_mutex_lock(&s->lock);
        room = s->max_in_flight > s->stats.in_flight ? s->max_in_flight - s->stats.in_flight : 0;
        room_bytes =
            s->max_bytes > s->stats.in_flight_bytes ? s->max_bytes - s->stats.in_flight_bytes : 0;
        pthread_mutex_unlock(&s->lock);
        /* The bound is on the payloads held: full, claims wait for attempts to end. */
        if (room_bytes == 0)
            room = 0;
        if (orphans && room == s->max_in_flight && !unrecorded) {
            struct vh_error err = VH_ERROR_INIT;
            /* Only ours: no lease is read, so a clock that jumped cannot take others'. */
            int n = vh_store_delivery_recover_node(s->st, s->node_id, vh_time_now_ms(), &err);

            if (n >= 0) {
                orphans = false;
                if (n > 0)
                    sender_log(s, VH_LOG_WARN, "took back deliveries of a failed claim", NULL);
            }
        }
        if (orphans)
            room = 0; /* drain first */
        /*
         * The store refuses records (a full disk): nothing more is claimed until it takes
         * them. On SQLite a claim writes nothing and would still work, and each delivery it
         * sent would have an outcome that could not be kept, to be sent again after a
         * restart.
         */
        if (unrecorded)
            room = 0;
        if (room > s->claim_batch)
            room = s->claim_batch;
        if (room > 0 && claim_and_submit(s, room, room_bytes, &orphans) == room)
            wait_ms = 0; /* more may be due right away */
        else
            wait_ms = room > 0 ? idle_wait_ms(s) : s->idle_poll_ms;
        if (unrecorded && wait_ms > 500)
            wait_ms = 500; /* try the refused batch again soon */
    }
    return NULL;
}

void vh_sender_wake(struct vh_sender *s)
{
    pthread_mutex_lock(&s->lock);
    s->wake = true;
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

void vh_sender_endpoint_changed(struct vh_sender *s, const char *endpoint_id)
{
    struct vh_error err = VH_ERROR_INIT;
    int rc;

    pthread_mutex_lock(&s->submit_lock);
    rc = vh_engine_drop_endpoint(s->engine, endpoint_id, &err);
    pthread_mutex_unlock(&s->submit_lock);
    if (!endpoint_id) {
        /*
         * The watcher (re)connected and hears every change from now on. Said after the
         * drop, so that the dispatcher's first claim cannot be taken back by it.
         */
        pthread_mutex_lock(&s->lock);
        s->listening = true;
        pthread_cond_signal(&s->cond);
        pthread_mutex_unlock(&s->lock);
    }
    if (rc < 0)
        sender_log(s, VH_LOG_ERROR, "dropping an endpoint's queued attempts failed", err.msg);
    /* The dropped deliveries are due again at once, with the endpoint as it is now. */
    vh_sender_wake(s);
}

static void sender_wake_cb(void *ud)
{
    vh_sender_wake(ud);
}

/*
 * On the store's watcher thread, which holds no lock of ours: the drop waits for the engine
 * thread and for a claim in progress, both of which run until vh_sender_stop has stopped
 * this callback (its first step).
 */
static void sender_endpoint_changed_cb(void *ud, const char *endpoint_id)
{
    vh_sender_endpoint_changed(ud, endpoint_id);
}

void vh_sender_stats(struct vh_sender *s, struct vh_sender_stats *out)
{
    pthread_mutex_lock(&s->lock);
    *out = s->stats;
    pthread_mutex_unlock(&s->lock);
}

static void sender_free(struct vh_sender *s)
{
    struct job *j = s->done_head;

    while (j) {
        struct job *next = j->next_done;

        job_free(j);
        j = next;
    }
    vh_engine_free(s->engine);
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->lock);
    pthread_mutex_destroy(&s->submit_lock);
    vh_free(s);
}

int vh_sender_start(struct vh_store *st, const struct vh_sender_config *cfg, struct vh_sender **out,
                    struct vh_error *err)
{
    struct vh_engine_config ecfg;
    struct vh_sender *s;
    pthread_condattr_t attr;
    int rc, recovered;

    if (!st || !cfg || !out || !cfg->node_id || !vh_id_is_valid(cfg->node_id, strlen(cfg->node_id)))
        return vh_error_set(err, VH_EINVAL, "sender: node id must be 1 to 64 of [A-Za-z0-9_-]");
    rc = vh_retry_policy_check(&cfg->policy, err);
    if (rc < 0)
        return rc;
    if (cfg->heap_warm_bytes > VH_SENDER_HEAP_WARM_MAX)
        return vh_error_set(err, VH_EINVAL, "sender: heap_warm_bytes: %zu is over the limit of %zu",
                            cfg->heap_warm_bytes, VH_SENDER_HEAP_WARM_MAX);
    s = vh_malloc(sizeof(*s));
    if (!s)
        return vh_error_set(err, VH_ENOMEM, "sender: out of memory");
    memset(s, 0, sizeof(*s));
    s->st = st;
    memcpy(s->node_id, cfg->node_id, strlen(cfg->node_id) + 1);
    s->policy = cfg->policy;
    s->claim_batch = cfg->claim_batch ? cfg->claim_batch : CLAIM_BATCH_DEFAULT;
    if (s->claim_batch > VH_CLAIM_MAX)
        s->claim_batch = VH_CLAIM_MAX;
    /* Enough claimed to keep every engine slot busy with a batch waiting behind it. */
    s->max_in_flight = (cfg->engine.max_total ? cfg->engine.max_total : 256) + s->claim_batch;
    s->max_bytes = cfg->max_bytes ? cfg->max_bytes : VH_SENDER_MAX_BYTES_DEFAULT;
    s->idle_poll_ms = cfg->idle_poll_ms > 0 ? cfg->idle_poll_ms : IDLE_POLL_DEFAULT;
    s->lease_ms =
        2 * cfg->policy.timeout_ms > LEASE_MIN_MS ? 2 * cfg->policy.timeout_ms : LEASE_MIN_MS;
    s->sched_batch = cfg->sched_batch;
    s->heap_warm_bytes = cfg->heap_warm_bytes;
    s->log = cfg->log;
    s->log_ud = cfg->log_ud;
    pthread_mutex_init(&s->lock, NULL);
    pthread_mutex_init(&s->submit_lock, NULL);
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cond, &attr);
    pthread_condattr_destroy(&attr);

    /* What this node held when it last stopped or died is due again now. */
    recovered = vh_store_delivery_recover(st, s->node_id, vh_time_now_ms(), err);
    if (recovered < 0) {
        rc = recovered;
        goto fail;
    }
    if (recovered > 0)
        sender_log(s, VH_LOG_WARN, "resumed deliveries left in flight by an earlier run", NULL);
    ecfg = cfg->engine;
    ecfg.sched_batch = ecfg.sched_batch || cfg->sched_batch;
    rc = vh_engine_new(&ecfg, &s->engine, err);
    if (rc < 0)
        goto fail;
    /*
     * Before the dispatcher, which waits for the watcher's first connect before it claims.
     * Other nodes' endpoint changes take back this node's queued jobs too (PostgreSQL); this
     * callback goes first, since it starts the watcher, whose first connect must reach it.
     * Other nodes' ingests wake this one too; without that, the idle poll would.
     */
    rc = vh_store_watch_endpoints(st, sender_endpoint_changed_cb, s, err);
    if (rc >= 0) {
        pthread_mutex_lock(&s->lock);
        s->watching = rc > 0;
        pthread_mutex_unlock(&s->lock);
        rc = vh_store_watch(st, sender_wake_cb, s, err);
    }
    if (rc < 0)
        goto fail;
    if (pthread_create(&s->thread, NULL, dispatch, s) != 0) {
        rc = vh_error_set(err, VH_EIO, "sender: cannot start the dispatcher thread");
        goto fail;
    }
    *out = s;
    return 0;
fail:
    /* The callbacks can no longer run once these return. */
    (void)vh_store_watch_endpoints(st, NULL, NULL, NULL);
    (void)vh_store_watch(st, NULL, NULL, NULL);
    sender_free(s);
    return rc;
}

void vh_sender_stop(struct vh_sender *s, int64_t grace_ms)
{
    if (!s)
        return;
    /*
     * First, so that no wake-up or endpoint change reaches a sender being freed. A drop
     * running meanwhile is waited for; it finishes, since the engine and the dispatcher
     * still run.
     */
    (void)vh_store_watch_endpoints(s->st, NULL, NULL, NULL);
    (void)vh_store_watch(s->st, NULL, NULL, NULL);
    pthread_mutex_lock(&s->lock);
    s->stopping = true;
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->lock);
    /* Every job the engine holds is reported (finished or interrupted) before this returns. */
    vh_engine_stop(s->engine, grace_ms, NULL);
    pthread_mutex_lock(&s->lock);
    s->engine_stopped = true;
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->lock);
    pthread_join(s->thread, NULL);
    sender_free(s);
}

int vh_sender_metrics(struct vh_sender *s, int64_t now_ms, struct vh_buf *out)
{
    struct vh_delivery_stats q;
    struct vh_error err = VH_ERROR_INIT;
    uint64_t by_result[N_RESULTS], buckets[N_BUCKETS + 1], cumulative = 0;
    struct vh_sender_stats st;
    int64_t sum_ms;
    size_t i;
    int rc;

    rc = vh_store_delivery_stats(s->st, now_ms, &q, &err);
    if (rc < 0)
        return rc;
    pthread_mutex_lock(&s->lock);
    st = s->stats;
    memcpy(by_result, s->by_result, sizeof(by_result));
    memcpy(buckets, s->buckets, sizeof(buckets));
    sum_ms = s->duration_sum_ms;
    pthread_mutex_unlock(&s->lock);

    rc = vh_buf_adds(out, "# HELP vocohook_attempts_total Delivery attempts made by this node, "
                          "by result.\n# TYPE vocohook_attempts_total counter\n");
    for (i = 0; rc == 0 && i < N_RESULTS; i++)
        rc = vh_buf_addf(out, "vocohook_attempts_total{result=\"%s\"} %llu\n",
                         vh_attempt_result_name((enum vh_attempt_result)i),
                         (unsigned long long)by_result[i]);
    if (rc == 0)
        rc = vh_buf_addf(out,
                         "# HELP vocohook_deliveries_finished_total Deliveries this node finished, "
                         "by outcome.\n# TYPE vocohook_deliveries_finished_total counter\n"
                         "vocohook_deliveries_finished_total{outcome=\"succeeded\"} %llu\n"
                         "vocohook_deliveries_finished_total{outcome=\"abandoned\"} %llu\n",
                         (unsigned long long)st.succeeded, (unsigned long long)st.abandoned);
    if (rc == 0)
        rc = vh_buf_adds(out, "# HELP vocohook_attempt_duration_seconds Time from the start of an "
                              "attempt to its end.\n"
                              "# TYPE vocohook_attempt_duration_seconds histogram\n");
    for (i = 0; rc == 0 && i <= N_BUCKETS; i++) {
        cumulative += buckets[i];
        if (i < N_BUCKETS)
            rc = vh_buf_addf(out, "vocohook_attempt_duration_seconds_bucket{le=\"%g\"} %llu\n",
                             (double)duration_buckets_ms[i] / 1000.0,
                             (unsigned long long)cumulative);
        else
            rc = vh_buf_addf(out, "vocohook_attempt_duration_seconds_bucket{le=\"+Inf\"} %llu\n",
                             (unsigned long long)cumulative);
    }
    if (rc == 0)
        rc = vh_buf_addf(out,
                         "vocohook_attempt_duration_seconds_sum %.3f\n"
                         "vocohook_attempt_duration_seconds_count %llu\n",
                         (double)sum_ms / 1000.0, (unsigned long long)cumulative);
    if (rc == 0)
        rc = vh_buf_addf(
            out,
            "# HELP vocohook_queue_pending Deliveries waiting for an attempt (all nodes).\n"
            "# TYPE vocohook_queue_pending gauge\nvocohook_queue_pending %lld\n"
            "# HELP vocohook_queue_due Pending deliveries already due.\n"
            "# TYPE vocohook_queue_due gauge\nvocohook_queue_due %lld\n"
            "# HELP vocohook_queue_in_flight Deliveries claimed with an attempt out.\n"
            "# TYPE vocohook_queue_in_flight gauge\nvocohook_queue_in_flight %lld\n"
            "# HELP vocohook_oldest_pending_age_seconds Age of the oldest pending delivery.\n"
            "# TYPE vocohook_oldest_pending_age_seconds gauge\n"
            "vocohook_oldest_pending_age_seconds %.3f\n"
            "# HELP vocohook_record_failures_total Attempt batches the store refused.\n"
            "# TYPE vocohook_record_failures_total counter\nvocohook_record_failures_total %llu\n"
            "# HELP vocohook_delivery_memory_bytes Payload bytes this node holds for its claimed "
            "deliveries (bound: delivery_memory).\n"
            "# TYPE vocohook_delivery_memory_bytes gauge\nvocohook_delivery_memory_bytes %zu\n",
            (long long)q.pending, (long long)q.due, (long long)q.in_flight,
            (double)q.oldest_pending_age_ms / 1000.0, (unsigned long long)st.record_fails,
            st.in_flight_bytes);
    return rc;
}
