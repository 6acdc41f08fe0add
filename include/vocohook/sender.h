/*
 * The sender: the loop that turns stored deliveries into attempts. It claims due
 * deliveries from the store (with a lease held by this node), hands each to the delivery
 * engine, asks the retry policy what follows each attempt, and records the outcomes in
 * batches (one transaction per batch: a group commit). At start it takes back what this
 * node held when it last stopped or died; on a timer it takes back any lease that ran out
 * (another node died).
 *
 * Threads: one dispatcher thread of its own, plus the engine's thread. vh_sender_wake,
 * vh_sender_endpoint_changed and vh_sender_stats may be called from any thread.
 */
#ifndef VOCOHOOK_SENDER_H
#define VOCOHOOK_SENDER_H

#include <stddef.h>
#include <stdint.h>

#include <vocohook/common.h>
#include <vocohook/engine.h>
#include <vocohook/error.h>
#include <vocohook/log.h>
#include <vocohook/policy.h>
#include <vocohook/store.h>

struct vh_sender;

/* The most vh_sender_config.heap_warm_bytes may ask for: every byte of it becomes resident. */
#define VH_SENDER_HEAP_WARM_MAX ((size_t)256 * 1024 * 1024)

/* The default bound on the payloads the sender holds at once (vh_sender_config.max_bytes). */
#define VH_SENDER_MAX_BYTES_DEFAULT ((size_t)64 * 1024 * 1024)

struct vh_sender_config {
    const char *node_id;            /* this node's lease name, 1..64 of [A-Za-z0-9_-]; copied */
    struct vh_retry_policy policy;  /* the server-wide schedule and timeout */
    struct vh_engine_config engine; /* how requests are made */
    size_t claim_batch;             /* deliveries claimed at once; 0 means 256 */
    int64_t idle_poll_ms;           /* the longest sleep between looks at the store; 0: 1000 */
    bool sched_batch;               /* the dispatcher's and the engine's threads under
                                       SCHED_BATCH (sets engine.sched_batch) */
    vh_log_fn *log;                 /* NULL: no logs */
    void *log_ud;
    /*
     * The payload bytes held by claimed deliveries whose outcomes are not recorded yet, at
     * most (plus one payload: a delivery larger than this is still sent, alone); 0 means
     * VH_SENDER_MAX_BYTES_DEFAULT. Past it the dispatcher claims nothing until attempts end.
     */
    size_t max_bytes;
    /*
     * Bytes of heap the dispatcher's thread makes ready once, as it starts, so that its
     * first claims do not fault their pages in one by one; 0: none; at most
     * VH_SENDER_HEAP_WARM_MAX (vh_sender_start refuses more with VH_EINVAL). Worth it only
     * where the process's allocator keeps a freed block of this size in the heap, as
     * `vocohook serve` sets glibc's to (docs/decisions.md, "The daemons' heap").
     */
    size_t heap_warm_bytes;
};

/* Fills `cfg` with the defaults (SPEC §3 policy, engine defaults, node id "node"). */
VH_API void vh_sender_config_init(struct vh_sender_config *cfg);

/*
 * Recovers this node's unfinished deliveries, starts the engine and the dispatcher thread.
 * `st` is borrowed and must outlive the sender. Returns 0, VH_EINVAL, VH_EIO, VH_ESTORE or
 * VH_ENOMEM (then nothing runs).
 */
VH_API int vh_sender_start(struct vh_store *st, const struct vh_sender_config *cfg,
                           struct vh_sender **out, struct vh_error *err);

/* New deliveries may be due: look at the store now rather than at the next poll. */
VH_API void vh_sender_wake(struct vh_sender *s);

/*
 * An endpoint's URL, secret or enabled flag changed, or it was deleted (call it after the
 * store has the change): its attempts queued in this node's engine and not started yet are
 * not made with what they were claimed with. They are recorded as interrupted (nothing used
 * up): the store puts a delivery still wanted back to pending, due at once, to be claimed
 * again with the endpoint as it is now, and leaves one it canceled canceled. Attempts already
 * started finish. Returns once they are taken out; a claim in progress is waited for. The
 * sender also calls it itself for every change the store's watcher hears of
 * (vh_store_watch_endpoints: on PostgreSQL, any node's change, this node's own included,
 * so an API change here drops twice; the second drop finds nothing, or jobs already claimed
 * again with the endpoint as it is now, which cost one more claim). `endpoint_id` NULL drops
 * every endpoint's queued attempts: the watcher calls it so after each (re)connect, since a
 * change made while it was not listening was not heard; the dispatcher makes no claim before
 * the first such call (for up to 2 s). Not from a callback of the engine (the dispatcher's or
 * the engine's thread).
 */
VH_API void vh_sender_endpoint_changed(struct vh_sender *s, const char *endpoint_id);

struct vh_sender_stats {
    uint64_t attempts;      /* attempts reported by the engine */
    uint64_t succeeded;     /* deliveries that ended succeeded */
    uint64_t abandoned;     /* deliveries that ran out of attempts */
    uint64_t interrupted;   /* attempts cut short by our side (not counted) */
    uint64_t record_fails;  /* batches the store refused (their leases will run out) */
    size_t in_flight;       /* claimed and not yet recorded */
    size_t in_flight_bytes; /* their payloads' bytes (vh_sender_config.max_bytes) */
};

/* A snapshot of the counters. */
VH_API void vh_sender_stats(struct vh_sender *s, struct vh_sender_stats *out);

/*
 * Appends the Prometheus text exposition of the sender: attempts by result, finished
 * deliveries by outcome, an attempt-duration histogram (this process, since start), and
 * the store's queue (pending, due, in flight, age of the oldest pending delivery).
 * Returns 0, VH_ESTORE, VH_ENOMEM or VH_ETOOBIG. Thread-safe.
 */
VH_API int vh_sender_metrics(struct vh_sender *s, int64_t now_ms, struct vh_buf *out);

/*
 * Stops claiming, gives attempts in progress up to `grace_ms` to finish (the rest are cut
 * short and recorded as interrupted: they do not use up an attempt), records everything,
 * and frees the sender. NULL is a no-op.
 */
VH_API void vh_sender_stop(struct vh_sender *s, int64_t grace_ms);

#endif
