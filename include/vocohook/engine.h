/*
 * The delivery engine: makes webhook requests (SPEC §2) and reports each one as a
 * `struct vh_attempt` (policy.h). It knows nothing of the store: a dispatcher claims due
 * deliveries, submits one job per attempt, and on each report asks the retry policy what
 * comes next and persists it.
 *
 * One engine thread, started by vh_engine_new, makes every request: libcurl connects (and
 * does TLS), the engine speaks HTTP/1.1 itself, and connections, TLS sessions and the CA
 * store are built once and reused.
 * Each attempt is signed when it starts (a fresh X-Webhook-Timestamp, the body untouched),
 * is a POST with Content-Type application/json, X-Webhook-Timestamp, X-Webhook-Signature,
 * X-Webhook-Id and User-Agent `vocohook/<VH_VERSION_STRING>`, no `Expect: 100-continue`,
 * no redirect following, no proxy (the environment's proxy variables are ignored), and reads
 * at most VH_ATTEMPT_READ_MAX bytes of the response body. Only https:// URLs are allowed
 * (and http:// with allow_http); the address connected to is checked when the connection is
 * made, and loopback, private, link-local, CGNAT, multicast, metadata and reserved addresses
 * are refused (VH_ATTEMPT_BLOCKED) unless allow_private_networks is set.
 *
 * Fairness: at most max_per_endpoint attempts per endpoint and max_total in all are in
 * progress; the rest wait in per-endpoint queues, served round-robin, so a slow or dead
 * endpoint holds only its own slots.
 *
 * Threads: vh_engine_submit, vh_engine_drop_endpoint and vh_engine_in_flight may be called
 * from any thread. Done callbacks run on the engine thread, one at a time; they may call
 * vh_engine_submit and vh_engine_in_flight, but not vh_engine_drop_endpoint, vh_engine_stop
 * or vh_engine_free, and should return quickly (every other transfer waits meanwhile).
 */
#ifndef VOCOHOOK_ENGINE_H
#define VOCOHOOK_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <vocohook/common.h>
#include <vocohook/error.h>
#include <vocohook/log.h>
#include <vocohook/policy.h>

struct vh_engine;

#define VH_ENGINE_MAX_PER_ENDPOINT_DEFAULT 8
#define VH_ENGINE_MAX_TOTAL_DEFAULT        256
#define VH_ENGINE_IDLE_MAX_MS_DEFAULT      118000 /* libcurl's default age, 118 s */
#define VH_ENGINE_IDLE_MAX_MS_MIN          1000
#define VH_ENGINE_IDLE_MAX_MS_MAX          3600000
#define VH_ENGINE_MAX_QUEUED_DEFAULT       100000
#define VH_ENGINE_URL_MAX                  4096 /* bytes of a job's URL */
#define VH_ENGINE_ID_MAX                   128  /* bytes of a job's ids */

struct vh_engine_config {
    bool allow_http;             /* accept http:// URLs as well as https:// (development) */
    bool allow_private_networks; /* connect to any address (development, tests) */
    const char *ca_file;         /* PEM CA bundle to trust; NULL: the system's. Copied */
    unsigned max_per_endpoint;   /* attempts in progress per endpoint, >= 1 */
    unsigned max_total;          /* attempts in progress in all, >= 1 (and connections kept) */
    size_t max_queued;           /* jobs submitted and not yet reported, >= 1 */
    int64_t timeout_ms;          /* for jobs whose timeout_ms is 0; > 0 */
    vh_log_fn *log;              /* NULL: no logs. Never gets secrets or bodies */
    void *log_ud;
    enum vh_log_level log_level; /* records above it are not even made (one per attempt is
                                    VH_LOG_DEBUG) */
    bool sched_batch;            /* the engine's thread under SCHED_BATCH (docs/decisions.md) */
    /*
     * An idle kept connection is closed after this long; 0: VH_ENGINE_IDLE_MAX_MS_DEFAULT,
     * otherwise VH_ENGINE_IDLE_MAX_MS_MIN..VH_ENGINE_IDLE_MAX_MS_MAX. libcurl's own age for
     * the connections of its cache (CURLOPT_MAXAGE_CONN) is set to the same, in seconds.
     */
    int64_t idle_max_ms;
};

/*
 * Fills `cfg` with the defaults: https only, public destinations only, the system CA store,
 * VH_ENGINE_MAX_PER_ENDPOINT_DEFAULT, VH_ENGINE_MAX_TOTAL_DEFAULT,
 * VH_ENGINE_MAX_QUEUED_DEFAULT, VH_RETRY_TIMEOUT_DEFAULT_MS, no logs (VH_LOG_DEBUG once a
 * log function is set).
 */
VH_API void vh_engine_config_init(struct vh_engine_config *cfg);

/*
 * One attempt to make. Every pointer is borrowed for the call only and the strings are
 * copied (the secret into memory that is wiped on release), except `body`: it is borrowed
 * until the done callback has been called, and must stay unchanged until then (one body is
 * typically shared by every endpoint and attempt of an event).
 */
struct vh_delivery_job {
    const char *delivery_id; /* for logs; NULL allowed */
    const char *event_id;    /* the X-Webhook-Id value: printable ASCII, 1..VH_ENGINE_ID_MAX */
    const char *endpoint_id; /* the fairness key; NULL: the URL is the key */
    const char *url;         /* the endpoint URL, 1..VH_ENGINE_URL_MAX bytes */
    const char *secret;      /* the signing secret, 1..VH_SECRET_MAX bytes */
    size_t secret_len;
    const void *body; /* the webhook payload, sent byte for byte */
    size_t body_len;
    unsigned attempt;   /* 1-based; copied into the report */
    int64_t timeout_ms; /* for the whole attempt; 0: the engine's default */
    /*
     * Wall clock: a job still queued then is not started, and is reported
     * VH_ATTEMPT_INTERRUPTED (no attempt is made, none used up). 0: no limit. The sender sets
     * it so that an attempt ends before its claim's lease does: a delivery whose lease ran
     * out may be claimed and sent by another node.
     */
    int64_t start_by_ms;
};

/*
 * Reports the end of a job: `attempt` is borrowed for the call. `ud` is the pointer given
 * to vh_engine_submit. Runs on the engine thread.
 */
typedef void vh_delivery_done_fn(void *ud, const struct vh_attempt *attempt);

/*
 * Creates an engine and starts its thread. `cfg` is read during the call only. Returns 0
 * and stores the engine in `*out`; VH_EINVAL (a bad setting), VH_EIO (the CA file cannot be
 * read, or the thread cannot start) or VH_ENOMEM, and then `*out` is untouched.
 */
VH_API int vh_engine_new(const struct vh_engine_config *cfg, struct vh_engine **out,
                         struct vh_error *err);

/*
 * Queues one attempt. Returns 0 and later calls `done(ud, attempt)` exactly once, from the
 * engine thread (possibly before vh_engine_submit returns to its caller's caller, never
 * from inside this call); or returns < 0 and never calls `done`: VH_EINVAL (a job field is
 * missing or out of bounds), VH_ETOOBIG (max_queued jobs are already waiting), VH_ESTATE
 * (the engine is stopping or stopped) or VH_ENOMEM. A failed request is not an error: it is
 * reported through `done`. Thread-safe.
 */
VH_API int vh_engine_submit(struct vh_engine *e, const struct vh_delivery_job *job,
                            vh_delivery_done_fn *done, void *ud, struct vh_error *err);

/*
 * Takes every job of `endpoint_id` (its vh_delivery_job.endpoint_id) submitted before this
 * call and not started yet out of the queue, and reports each one through its done callback,
 * from the engine thread, as VH_ATTEMPT_INTERRUPTED with no connection made (as a job past
 * its start_by_ms: no attempt is made, none used up). Attempts already started finish as
 * they would have; jobs submitted after the call are queued as usual. For a dispatcher whose
 * queued jobs carry an endpoint's URL and secret when these change or the endpoint goes.
 * `endpoint_id` NULL takes every endpoint's waiting jobs (when changes may have been missed).
 * Returns 0 once every dropped job's callback has run (at once when the engine is stopping:
 * the stop reports the waiting jobs); VH_EINVAL (`endpoint_id` empty or longer than
 * VH_ENGINE_URL_MAX), VH_ESTATE (called from a done callback: the engine thread cannot wait
 * for itself) or VH_ENOMEM, and then nothing is dropped. Thread-safe; it may wait for a done
 * callback in progress to return, so the caller must not hold a lock that callbacks take.
 */
VH_API int vh_engine_drop_endpoint(struct vh_engine *e, const char *endpoint_id,
                                   struct vh_error *err);

/*
 * Jobs submitted whose done callback has not been called yet (waiting or in progress); a
 * job stops counting just before its callback runs. Thread-safe.
 */
VH_API size_t vh_engine_in_flight(struct vh_engine *e);

/*
 * Stops the engine: new submissions fail with VH_ESTATE; jobs not yet started are reported
 * VH_ATTEMPT_INTERRUPTED at once; attempts in progress get up to `grace_ms` (0: none) to
 * finish, and the rest are cut short and reported VH_ATTEMPT_INTERRUPTED. Returns once every
 * callback has run and the engine thread has exited: 0, or VH_ESTATE when called from a
 * done callback (the engine thread cannot wait for itself). Later calls return 0 at once.
 * Call it from one thread at a time.
 */
VH_API int vh_engine_stop(struct vh_engine *e, int64_t grace_ms, struct vh_error *err);

/*
 * Stops the engine as vh_engine_stop(e, 0, NULL) if it still runs, then frees it. NULL is a
 * no-op. No other call on `e` may run concurrently or follow; not from a done callback.
 */
VH_API void vh_engine_free(struct vh_engine *e);

#endif
