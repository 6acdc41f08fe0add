/*
 * The store: partners, API keys (hashed), webhook endpoints, ingested sessions (events)
 * and their deliveries. One API over pluggable backends (SQLite now, PostgreSQL later); a
 * backend fills a private table of functions, so callers never branch on the kind.
 *
 * Threads: a `struct vh_store` may be used from several threads at once; it keeps one
 * database connection per concurrent caller internally (a connection itself belongs to one
 * thread at a time). Every write is one transaction: on any error nothing is left half
 * written.
 *
 * Errors: VH_ENOTFOUND (no such row, or it belongs to another partner — callers must not
 * tell the two apart), VH_ECONFLICT (a uniqueness or count rule; msg says which),
 * VH_EINVAL (a value the store refuses), VH_ESTORE (the database failed; msg has its text),
 * VH_ENOMEM.
 */
#ifndef VOCOHOOK_STORE_H
#define VOCOHOOK_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <vocohook/buf.h>
#include <vocohook/common.h>
#include <vocohook/error.h>
#include <vocohook/id.h>
#include <vocohook/sign.h>

struct vh_store;

#define VH_PARTNER_NAME_MAX        128                 /* bytes */
#define VH_LABEL_MAX               31                  /* ^[a-z0-9][a-z0-9-]{0,30}$ */
#define VH_ENDPOINT_URL_MAX        2048                /* bytes */
#define VH_ENDPOINTS_MAX           5                   /* per partner (SPEC §4) */
#define VH_ENDPOINT_SCHEDULE_MAX   255                 /* bytes of an endpoint's schedule */
#define VH_ENDPOINT_TIMEOUT_MAX_MS INT64_C(2592000000) /* 30 days */

/*
 * Opens a store. `url` is `sqlite:PATH` or a plain path (SQLite, created if missing, WAL
 * mode, synchronous=FULL), or `postgres://…` / `postgresql://…` (a libpq URL; the PG*
 * environment variables fill the gaps). Runs the schema migrations (on PostgreSQL under an
 * advisory lock, so several nodes starting at once migrate once). Stores a new handle in
 * `*out`. Returns 0, VH_EINVAL (unknown scheme; `:memory:`, which a connection pool cannot
 * share), VH_ESTORE (including a store whose schema is newer than this build, or that is
 * not a vocohook database) or VH_ENOMEM.
 */
VH_API int vh_store_open(const char *url, struct vh_store **out, struct vh_error *err);

/*
 * Closes every connection and frees the handle. NULL is a no-op. No other call on `st` may
 * be running.
 */
VH_API void vh_store_close(struct vh_store *st);

/* "sqlite" or "postgres". */
VH_API const char *vh_store_backend(const struct vh_store *st);

/* The schema version the store is at (after migrations). */
VH_API int vh_store_schema_version(struct vh_store *st, int *out, struct vh_error *err);

/* ---- partners ---------------------------------------------------------------------- */

struct vh_partner {
    char id[VH_UUID_LEN + 1];
    /*
     * Well-formed UTF-8 without control characters. Read from the store, a name written
     * before the store refused a character (C1 controls, before session 20) or by other
     * means has each such character as a space and each ill-formed byte as '?'.
     */
    char name[VH_PARTNER_NAME_MAX + 1];
    int64_t created_ms;
};

/*
 * Creates a partner with a new id and its first API key, stored only as `key_hash`
 * (vh_sha256_hex of the key). Fills `*out`. Name: 1..VH_PARTNER_NAME_MAX bytes of
 * well-formed UTF-8 without control characters (C0, DEL, C1), else VH_EINVAL.
 */
VH_API int vh_store_partner_create(struct vh_store *st, const char *name,
                                   const char key_hash[VH_SHA256_HEX_LEN + 1], int64_t now_ms,
                                   struct vh_partner *out, struct vh_error *err);

/*
 * All partners, oldest first, in a new array (caller vh_free()s it; NULL when empty); `*n`
 * its length.
 */
VH_API int vh_store_partner_list(struct vh_store *st, struct vh_partner **out, size_t *n,
                                 struct vh_error *err);

/* One partner by id; VH_ENOTFOUND when there is none. */
VH_API int vh_store_partner_get(struct vh_store *st, const char *id, struct vh_partner *out,
                                struct vh_error *err);

/* Replaces the partner's API keys by `key_hash`: every earlier key stops working. */
VH_API int vh_store_partner_rotate_key(struct vh_store *st, const char *id,
                                       const char key_hash[VH_SHA256_HEX_LEN + 1], int64_t now_ms,
                                       struct vh_error *err);

/* The partner owning a live key with this hash; VH_ENOTFOUND when none (or revoked). */
VH_API int vh_store_partner_by_key(struct vh_store *st, const char key_hash[VH_SHA256_HEX_LEN + 1],
                                   struct vh_partner *out, struct vh_error *err);

/* ---- endpoints ----------------------------------------------------------------------- */

enum vh_delivery_outcome {
    VH_OUTCOME_NONE = 0,      /* no attempt yet: "last_delivery_status": null */
    VH_OUTCOME_SUCCEEDED = 1, /* "succeeded" */
    VH_OUTCOME_FAILED = 2     /* "failed" */
};

struct vh_endpoint {
    char id[VH_UUID_LEN + 1];
    char partner_id[VH_UUID_LEN + 1];
    char label[VH_LABEL_MAX + 1];
    char url[VH_ENDPOINT_URL_MAX + 1];
    char secret[VH_SECRET_LEN + 1]; /* readable: the sender signs with it */
    bool enabled;
    int64_t created_ms;
    int64_t updated_ms;
    int64_t last_delivery_ms; /* 0: never */
    enum vh_delivery_outcome last_delivery_status;
    /*
     * SPEC §3: the endpoint's own retry schedule, in the text form of
     * vh_retry_policy_set_schedule ("5s,5m,30m"), or "" for the server's. The store keeps
     * the text as given (at most VH_ENDPOINT_SCHEDULE_MAX bytes of [0-9a-z, ]); the caller
     * checks its syntax before writing it.
     */
    char retry_schedule[VH_ENDPOINT_SCHEDULE_MAX + 1];
    int64_t timeout_ms; /* per attempt; 0: the server's. 0..VH_ENDPOINT_TIMEOUT_MAX_MS */
};

/*
 * Inserts `ep` (all fields set by the caller, id included; last_delivery_* ignored).
 * VH_ECONFLICT with "label '<l>' is already in use" when the partner has that label, or
 * "at most <max> endpoints per partner" when it already has `max` endpoints.
 */
VH_API int vh_store_endpoint_create(struct vh_store *st, const struct vh_endpoint *ep, int max,
                                    struct vh_error *err);

/* One endpoint of `partner_id`; VH_ENOTFOUND when missing or another partner's. */
VH_API int vh_store_endpoint_get(struct vh_store *st, const char *partner_id, const char *id,
                                 struct vh_endpoint *out, struct vh_error *err);

/* The partner's endpoint with `label`; VH_ENOTFOUND when none. */
VH_API int vh_store_endpoint_get_by_label(struct vh_store *st, const char *partner_id,
                                          const char *label, struct vh_endpoint *out,
                                          struct vh_error *err);

/* The partner's endpoints, oldest first, in a new array (vh_free() it; NULL when empty). */
VH_API int vh_store_endpoint_list(struct vh_store *st, const char *partner_id,
                                  struct vh_endpoint **out, size_t *n, struct vh_error *err);

/*
 * Writes label, url, secret, enabled, retry_schedule, timeout_ms and updated_ms of the
 * endpoint `ep->id` owned by `ep->partner_id`. VH_ECONFLICT on a taken label, VH_ENOTFOUND
 * when missing. Disabling an endpoint cancels its pending and in-flight deliveries in the
 * same transaction (an attempt already out still gets its row when it is recorded).
 */
VH_API int vh_store_endpoint_update(struct vh_store *st, const struct vh_endpoint *ep,
                                    struct vh_error *err);

/*
 * vh_store_endpoint_update for a read-modify-write: writes only while the stored endpoint
 * still holds what the caller read into `seen` (label, url, secret, enabled,
 * retry_schedule, timeout_ms), checked in the write's transaction; otherwise returns
 * VH_ESTATE and writes nothing, and the caller reads again. So a change made between the
 * read and the write (a secret rotation, a PATCH on another node) is never written over
 * with what was read before it.
 */
VH_API int vh_store_endpoint_update_if(struct vh_store *st, const struct vh_endpoint *seen,
                                       const struct vh_endpoint *ep, struct vh_error *err);

/*
 * Deletes the endpoint; its pending and in-flight deliveries end as canceled. VH_ENOTFOUND
 * when missing. The endpoint is invisible afterwards (every read, the count and the limit
 * skip it) and its label is free again; its past deliveries still name it.
 */
VH_API int vh_store_endpoint_delete(struct vh_store *st, const char *partner_id, const char *id,
                                    int64_t now_ms, struct vh_error *err);

/* ---- events (ingested sessions) and their deliveries ------------------------------------ */

struct vh_event_put {
    const char *partner_id;
    const char *session_id;
    const char *call_id;       /* NULL when the session was not a phone call */
    int call_status;           /* enum vh_call_status, or 0 without a call */
    const char *recording_key; /* NULL, or the S3 key to presign afresh on read */
    const char *body;          /* the webhook payload, serialized once */
    size_t body_len;
    int64_t accepted_ms; /* the payload's timestamp */
};

struct vh_event_put_result {
    char event_id[VH_UUID_LEN + 1];
    size_t deliveries; /* deliveries created (or, for a repeat, created the first time) */
    bool created;      /* false: the session_id was ingested before; nothing was added */
};

/*
 * Commits the event and one pending delivery (due at accepted_ms) per enabled endpoint of
 * the partner, atomically, and durably before returning. Idempotent on session_id: a
 * repeat for the same partner returns the original event id and delivery count with
 * created=false and writes nothing; a repeat for another partner is VH_ECONFLICT
 * ("session_id '<id>' belongs to another partner"). VH_ENOTFOUND when the partner does
 * not exist.
 */
VH_API int vh_store_event_put(struct vh_store *st, const struct vh_event_put *ev,
                              struct vh_event_put_result *out, struct vh_error *err);

/*
 * How a vh_store_event_put_async ended: `rc` as vh_store_event_put returns it, `res` (when
 * rc is 0) and `err` (when it is not) valid only during the call.
 */
typedef void vh_store_put_done_fn(void *ud, int rc, const struct vh_event_put_result *res,
                                  const struct vh_error *err);

/*
 * vh_store_event_put for a caller that must not wait (a server thread): checks `ev`, queues
 * it and returns 0; `done` then runs exactly once, when the event is durable or has failed,
 * on whichever thread committed it: the store's own, this one (possibly before this call
 * returns), or another caller's inside its vh_store_event_put. `done` must be short and must
 * not call the store's writes or vh_store_close (the commit it runs on waits for it). `ev`
 * and what it points to must stay valid until `done` runs; vh_store_close waits for every
 * `done`. Returns what vh_store_event_put returns for a bad event (VH_EINVAL, VH_ETOOBIG,
 * VH_ENOTFOUND for a malformed partner id), VH_ENOMEM or VH_EIO (no thread to commit on)
 * without queuing anything, and then `done` never runs. SQLite commits queued events in
 * groups, on a thread of its own when no caller waits; PostgreSQL commits on the calling
 * thread, before returning.
 */
VH_API int vh_store_event_put_async(struct vh_store *st, const struct vh_event_put *ev,
                                    vh_store_put_done_fn *done, void *ud, struct vh_error *err);

struct vh_call_rec {
    char event_id[VH_UUID_LEN + 1];
    char partner_id[VH_UUID_LEN + 1];
    char session_id[VH_ID_MAX + 1];
    char call_id[VH_ID_MAX + 1]; /* "" when not a call */
    int call_status;             /* 0 when not a call */
    int64_t accepted_ms;
    char *recording_key; /* owned; NULL when none */
    struct vh_buf body;  /* owned; the stored webhook payload */
};

/* Releases what a vh_call_rec owns (safe on a zeroed record). */
VH_API void vh_call_rec_release(struct vh_call_rec *rec);

/* The partner's session whose call_id or session_id is `id`; VH_ENOTFOUND otherwise. */
VH_API int vh_store_call_get(struct vh_store *st, const char *partner_id, const char *id,
                             struct vh_call_rec *out, struct vh_error *err);

/*
 * The partner's sessions, newest first, `limit` (1..100) from `offset`, optionally only
 * those whose call status is `call_status` (0: any). A new array in `*out` (release each
 * record, then vh_free() the array); `*total` (optional) the count before paging.
 */
VH_API int vh_store_call_list(struct vh_store *st, const char *partner_id, size_t limit,
                              size_t offset, int call_status, struct vh_call_rec **out, size_t *n,
                              size_t *total, struct vh_error *err);

/*
 * Counts rows, for tests and metrics. `table` is one of "partners", "api_keys",
 * "endpoints" (live ones), "events", "deliveries", "attempts"; anything else is VH_EINVAL.
 */
VH_API int vh_store_count(struct vh_store *st, const char *table, int64_t *out,
                          struct vh_error *err);

/* One delivery of an event, in brief. */
struct vh_delivery_brief {
    char id[VH_UUID_LEN + 1];
    char endpoint_id[VH_UUID_LEN + 1];
    char state[16]; /* "pending", "succeeded", "abandoned", "canceled", ... */
    int attempts;
    int64_t next_attempt_ms;
};

/*
 * The deliveries of an event, in any state, oldest first (for tests and the API), in a new
 * array in `*out` (vh_free() it; NULL when empty) of `*n`. VH_ENOTFOUND when there is no
 * such event.
 */
VH_API int vh_store_event_deliveries(struct vh_store *st, const char *event_id,
                                     struct vh_delivery_brief **out, size_t *n,
                                     struct vh_error *err);

/* ---- the delivery engine's side: claim, record, recover ------------------------------------- */

/*
 * Delivery states, as stored and shown: "pending" (waiting, due at next_attempt_ms),
 * "in_flight" (claimed by a node, an attempt is out), "succeeded", "abandoned" (the
 * schedule ran out) and "canceled" (the endpoint was disabled or deleted). They are the
 * names of policy.h's enum vh_delivery_state (vh_delivery_state_name).
 */
#define VH_DELIVERY_STATE_MAX 15 /* bytes of the longest state name */

#define VH_NODE_ID_MAX          VH_ID_MAX         /* a node id: 1..64 of [A-Za-z0-9_-] */
#define VH_CLAIM_MAX            1000              /* deliveries one claim returns at most */
#define VH_LEASE_MAX_MS         INT64_C(86400000) /* the longest lease: one day */
#define VH_STORED_HEAD_MAX      1024              /* response body bytes kept with an attempt */
#define VH_ERROR_CLASS_MAX      31                /* bytes of an error class ("timeout") */
#define VH_ATTEMPT_ERROR_LEN    255               /* bytes of an attempt's error line kept */
#define VH_REPLAY_MAX           10000             /* events one replay may cover */
#define VH_HISTORY_ATTEMPTS_MAX 200               /* attempts a delivery get returns: the newest */

/*
 * One claimed delivery: everything the engine needs for its next attempt. Owns `body`
 * (release with vh_delivery_job_rec_release); the secret is wiped on release.
 *
 * Attempt numbers count every attempt the delivery ever made, so they stay unique in its
 * history: the attempt to make now is number `attempts + 1`. A manual retry restarts the
 * schedule without renumbering: the retry policy sees `attempts - attempt_base` attempts
 * made so far, and numbers the new one `attempts - attempt_base + 1`.
 */
struct vh_delivery_job_rec {
    char delivery_id[VH_UUID_LEN + 1];
    char event_id[VH_UUID_LEN + 1]; /* the X-Webhook-Id */
    char endpoint_id[VH_UUID_LEN + 1];
    char partner_id[VH_UUID_LEN + 1];
    unsigned attempts; /* made so far, in every budget */
    /*
     * Made outside the current budget: before the last manual retry, or reported after
     * their claim was taken back (vh_store_delivery_record).
     */
    unsigned attempt_base;
    int64_t next_attempt_ms; /* when it was due */
    int64_t lease_until_ms;  /* the claim's lease ends then; recovery may take it back after */
    char url[VH_ENDPOINT_URL_MAX + 1];
    char secret[VH_SECRET_LEN + 1];
    char retry_schedule[VH_ENDPOINT_SCHEDULE_MAX + 1]; /* "": the server's */
    int64_t timeout_ms;                                /* 0: the server's */
    struct vh_buf body;                                /* owned: the event's payload */
    /*
     * The store's own handle of the delivery's row (SQLite: its seq), or 0: hand it back in
     * vh_delivery_result.row to spare the store a search by id.
     */
    int64_t row;
};

/* Releases what `rec` owns and wipes its secret. Safe on a zeroed or released record. */
VH_API void vh_delivery_job_rec_release(struct vh_delivery_job_rec *rec);

/* Releases each of the `n` records, then frees the array. NULL is a no-op. */
VH_API void vh_delivery_job_recs_free(struct vh_delivery_job_rec *recs, size_t n);

/*
 * Claims up to `max` (1..VH_CLAIM_MAX) due deliveries for node `node_id`: takes the pending
 * deliveries with next_attempt_ms <= now_ms, earliest due first, marks them in_flight with
 * a lease held by `node_id` until now_ms + lease_ms (1..VH_LEASE_MAX_MS), and returns them
 * in a new array in `*out` (free it with vh_delivery_job_recs_free; NULL when none is due)
 * of `*n` records, in due order. A delivery is handed to one claimer only, however many
 * nodes and threads claim at once.
 *
 * PostgreSQL marks the rows, in one transaction. SQLite holds the claims in the handle's
 * memory and writes nothing: the rows stay pending in the file, and only this handle shows
 * them in_flight (docs/decisions.md). So one handle, in one process, claims from a SQLite
 * file: its first claim or recovery locks `<file>-lock` until it is closed, and another
 * handle's claim or recovery fails with VH_ECONFLICT meanwhile. Closing the handle, or the
 * end of its process, drops its claims: their deliveries are due again at once.
 *
 * Returns 0, VH_EINVAL, VH_ECONFLICT (SQLite: another handle claims from the file),
 * VH_ESTORE or VH_ENOMEM (then nothing was claimed).
 */
VH_API int vh_store_delivery_claim(struct vh_store *st, const char *node_id, int64_t now_ms,
                                   int64_t lease_ms, size_t max, struct vh_delivery_job_rec **out,
                                   size_t *n, struct vh_error *err);

/*
 * vh_store_delivery_claim with a bound on the payloads too: stops before the due row whose
 * body would take the claimed bodies' bytes past `max_bytes`, but claims the first due row
 * whatever its size, so that a payload larger than the bound is still sent. A caller that
 * holds its claims' bodies until their attempts end keeps them under its own bound plus one
 * body (the sender: docs/decisions.md, "The sender's memory"). `max_bytes` 0 means no bound.
 * The rows it stopped before stay due, first in line for the next claim.
 */
VH_API int vh_store_delivery_claim_bounded(struct vh_store *st, const char *node_id, int64_t now_ms,
                                           int64_t lease_ms, size_t max, size_t max_bytes,
                                           struct vh_delivery_job_rec **out, size_t *n,
                                           struct vh_error *err);

/*
 * The end of one claimed attempt, as the dispatcher decided it with the retry policy.
 * Every pointer is borrowed for the vh_store_delivery_record call.
 */
struct vh_delivery_result {
    const char *delivery_id;
    /*
     * The delivery's endpoint as its claim returned it (saves the store a lookup per
     * result), or NULL: the store looks it up.
     */
    const char *endpoint_id;
    /* The claim's vh_delivery_job_rec.row, or 0: the store finds the row by delivery_id. */
    int64_t row;
    const char *node_id; /* the claimer: only its lease may be moved on */
    /*
     * The claim's vh_delivery_job_rec.lease_until_ms, or 0. When set, only that claim may be
     * moved on: a later claim of the same node at the same attempt count (the delivery was
     * retried, or its lease ran out, while this attempt was out) is another claim.
     */
    int64_t lease_until_ms;
    unsigned attempt;    /* the attempt's number: the claim's attempts + 1 */
    int64_t started_ms;  /* when it started (wall clock) */
    int64_t duration_ms; /* >= 0 */
    int http_status;     /* the response status, 1..999; 0 when none arrived */
    /*
     * NULL for a success; else how it failed, 1..VH_ERROR_CLASS_MAX bytes of [a-z0-9_]
     * (vh_attempt_result_name: "timeout", "http_status", "interrupted", ...).
     */
    const char *error_class;
    const char *error;         /* NULL or a line of detail; the first 255 bytes are kept */
    const void *response_head; /* the first bytes of the response body; NULL when none */
    size_t response_len;       /* the first VH_STORED_HEAD_MAX bytes are kept */
    /*
     * The delivery's next state: "pending" (due at next_attempt_ms), "succeeded" (exactly
     * when error_class is NULL) or "abandoned". An interrupted attempt must say "pending".
     */
    const char *new_state;
    int64_t next_attempt_ms; /* for "pending"; ignored otherwise */
    /*
     * True when the attempt does not count (vh_attempt_result_counts is false: our own
     * shutdown or failure cut it short): no attempt row, the attempt count and the
     * endpoint's last_delivery_* stay as they are; the delivery goes back to pending.
     */
    bool interrupted;
};

/*
 * Records `n` (1..VH_CLAIM_MAX) attempt results in ONE write transaction (a group commit:
 * one sync for the batch). For each result:
 *   - if the delivery is still in_flight, under `node_id`'s lease, for this attempt
 *     (its attempt count is `attempt - 1`), moves it to `new_state` with the attempt count
 *     set to `attempt` (unchanged when interrupted), due at next_attempt_ms when pending,
 *     and drops the lease. Otherwise the report is stale and the state is left alone: a
 *     delivery canceled meanwhile stays canceled, one recovered and claimed again belongs
 *     to its new claimer. A stale counted attempt still raises the attempt count of a
 *     delivery that is not in flight to `attempt`, so later attempts get new numbers; of
 *     a pending one (its lease ran out and it was taken back, or it was canceled and
 *     retried, while the attempt was out) it raises attempt_base as much too, so the
 *     attempt uses up none of the schedule the delivery is on now (a retry's is whole);
 *   - unless interrupted, writes the attempt row (number, start, duration, status, error
 *     class and line, response head). The same number twice (a lease ran out while the
 *     attempt was still going, and the new claimer made it too): the report that moved the
 *     delivery on wins, else the first row stays;
 *   - unless interrupted, sets the endpoint's last_delivery_ms to started_ms and its
 *     last_delivery_status to succeeded or failed, unless it already shows a later attempt.
 * Returns 0; VH_EINVAL (a bad result: msg names its index; nothing is written),
 * VH_ENOTFOUND (no such delivery: nothing is written), VH_ESTORE or VH_ENOMEM.
 */
VH_API int vh_store_delivery_record(struct vh_store *st, const struct vh_delivery_result *results,
                                    size_t n, struct vh_error *err);

/*
 * Puts deliveries left in_flight back to pending, due at now_ms, their attempt count
 * unchanged: those whose lease ended by now_ms, and, when `node_id` is not NULL, every one
 * `node_id` holds (call it at start-up with this node's id: a crash left them). On SQLite
 * it takes the file's claim lock as a claim does (call it at start-up, and a second
 * process fails there). Returns the number recovered (>= 0), or VH_EINVAL, VH_ECONFLICT,
 * VH_ESTORE or VH_ENOMEM.
 */
VH_API int vh_store_delivery_recover(struct vh_store *st, const char *node_id, int64_t now_ms,
                                     struct vh_error *err);

/*
 * As vh_store_delivery_recover, but only the deliveries `node_id` (required) holds, whatever
 * their leases say: for a node that knows every claim under its name is an orphan (a claim
 * failed after it may have committed, and it holds nothing now). It reads no lease, so a
 * wall clock that has jumped ahead cannot make it take another node's live claims.
 */
VH_API int vh_store_delivery_recover_node(struct vh_store *st, const char *node_id, int64_t now_ms,
                                          struct vh_error *err);

/*
 * The earliest next_attempt_ms of any pending delivery (possibly in the past), so the
 * dispatcher can sleep until then. VH_ENOTFOUND when nothing is pending. Leases are not
 * considered: recover on a timer of the lease length.
 */
VH_API int vh_store_delivery_next_due(struct vh_store *st, int64_t *out_ms, struct vh_error *err);

/* The queue, for metrics. Visits every pending and in-flight delivery through an index. */
struct vh_delivery_stats {
    int64_t pending;               /* queue depth: pending deliveries, due or not */
    int64_t due;                   /* of them, due at now_ms */
    int64_t in_flight;             /* claimed, attempt out */
    int64_t oldest_pending_age_ms; /* now_ms - created_ms of the oldest pending; 0: none */
    int64_t due_lag_ms;            /* now_ms - next_attempt_ms of the most overdue; 0: none */
};

/* Fills `*out` with the queue as of now_ms (all nodes). Returns 0, VH_ESTORE or VH_ENOMEM. */
VH_API int vh_store_delivery_stats(struct vh_store *st, int64_t now_ms,
                                   struct vh_delivery_stats *out, struct vh_error *err);

/* Deliveries by state, history included. Reads an index entry per delivery: not cheap. */
struct vh_delivery_counts {
    int64_t pending;
    int64_t in_flight;
    int64_t succeeded;
    int64_t abandoned;
    int64_t canceled;
};

/* Fills `*out` with the number of deliveries in each state. Returns 0 or VH_ESTORE. */
VH_API int vh_store_delivery_counts(struct vh_store *st, struct vh_delivery_counts *out,
                                    struct vh_error *err);

/* ---- delivery history (SPEC §4) ------------------------------------------------------------- */

struct vh_delivery_info {
    char id[VH_UUID_LEN + 1];
    char event_id[VH_UUID_LEN + 1];
    char endpoint_id[VH_UUID_LEN + 1];
    char session_id[VH_ID_MAX + 1];
    char state[VH_DELIVERY_STATE_MAX + 1];
    unsigned attempts;       /* made, in every budget */
    unsigned attempt_base;   /* made outside the current budget (as vh_delivery_job_rec's) */
    int64_t next_attempt_ms; /* pending or in_flight: when (it was) due; 0 otherwise */
    int64_t created_ms;
    int64_t updated_ms;
    /* The latest attempt: last_attempt_ms is 0 before the first one. */
    int64_t last_attempt_ms;
    int last_http_status;                          /* 0: none */
    char last_error_class[VH_ERROR_CLASS_MAX + 1]; /* "": success (or no attempt) */
};

struct vh_attempt_info {
    unsigned n; /* 1-based, over every budget of the delivery */
    int64_t started_ms;
    int64_t duration_ms;
    int http_status;                          /* 0: none arrived */
    char error_class[VH_ERROR_CLASS_MAX + 1]; /* "": success */
    char error[VH_ATTEMPT_ERROR_LEN + 1];     /* "" or one line */
    size_t response_len;
    char response_head[VH_STORED_HEAD_MAX + 1]; /* response_len bytes, then a NUL */
};

/*
 * The deliveries to the partner's endpoint `endpoint_id`, newest first, `limit` (1..100)
 * from `offset`, optionally only those in `state` (NULL: any; else a state name). A new
 * array in `*out` (vh_free() it; NULL when empty) of `*n`; `*total` (optional) the count
 * before paging. VH_ENOTFOUND when the endpoint is missing, deleted or another partner's;
 * VH_EINVAL for an unknown state.
 */
VH_API int vh_store_delivery_list(struct vh_store *st, const char *partner_id,
                                  const char *endpoint_id, const char *state, size_t limit,
                                  size_t offset, struct vh_delivery_info **out, size_t *n,
                                  size_t *total, struct vh_error *err);

/*
 * One delivery of the partner (its endpoint may since have been deleted), and its newest
 * attempts, at most VH_HISTORY_ATTEMPTS_MAX of them (manual retries add attempts without
 * end, and every one is kept), oldest first, in a new array in `*attempts` (vh_free() it;
 * NULL when none) of `*n_attempts`; `*older` (optional) gets the number of its attempts
 * older than those, not read. Reads one snapshot. VH_ENOTFOUND when missing or another
 * partner's.
 */
VH_API int vh_store_delivery_get(struct vh_store *st, const char *partner_id,
                                 const char *delivery_id, struct vh_delivery_info *out,
                                 struct vh_attempt_info **attempts, size_t *n_attempts,
                                 size_t *older, struct vh_error *err);

/*
 * A manual retry: a finished delivery (succeeded, abandoned or canceled) goes back to
 * pending, due at now_ms, with a fresh schedule (attempt_base = attempts; its history
 * stays). An attempt of a canceled delivery still out reports later without using up the
 * fresh schedule (vh_store_delivery_record). VH_ENOTFOUND (missing, another partner's),
 * VH_ECONFLICT with "delivery '<id>' is already pending" (pending or in flight),
 * "endpoint '<id>' is disabled" or "endpoint '<id>' was deleted".
 */
VH_API int vh_store_delivery_retry(struct vh_store *st, const char *partner_id,
                                   const char *delivery_id, int64_t now_ms, struct vh_error *err);

/*
 * A replay: one new pending delivery, due at now_ms, to the partner's endpoint for every
 * event of the partner accepted in [since_ms, until_ms], all in one transaction; `*created`
 * (optional) says how many. VH_ENOTFOUND (no such endpoint of the partner), VH_ECONFLICT
 * ("endpoint '<id>' is disabled"), VH_EINVAL (since after until), VH_ETOOBIG (more than
 * VH_REPLAY_MAX events: nothing is created).
 */
VH_API int vh_store_endpoint_replay(struct vh_store *st, const char *partner_id,
                                    const char *endpoint_id, int64_t since_ms, int64_t until_ms,
                                    int64_t now_ms, size_t *created, struct vh_error *err);

/* ---- shared by every node: rate limits and wake-ups ---------------------------------------- */

/* Per-minute request limits of one API key; < 0 means no limit. */
struct vh_rate_limits {
    int general_per_min; /* every partner API request */
    int calls_per_min;   /* requests to the /calls routes, counted in both */
};

/* One key's fixed one-minute windows: each starts at the first request after the last ended. */
struct vh_rate_window {
    int64_t general_start_ms;
    int64_t general_count;
    int64_t calls_start_ms;
    int64_t calls_count;
};

#define VH_RATE_WINDOW_MS INT64_C(60000)

/*
 * Counts one request (`calls`: to a /calls route) against `w` at now_ms, opening a new
 * window where the last one has ended. Returns 0 when the request is allowed (and counted),
 * else the whole seconds until the full window reopens (>= 1; nothing counted). Pure.
 */
VH_API int vh_rate_apply(struct vh_rate_window *w, const struct vh_rate_limits *lim, bool calls,
                         int64_t now_ms);

/*
 * vh_rate_apply on the key's window as the store keeps it for every node, in one
 * transaction: `*wait_s` gets its result and `*window` (optional) the window after it.
 * Returns VH_ENOTSUP when the backend keeps no shared windows (SQLite: one process per
 * database file, so the caller's own memory is the shared state).
 */
VH_API int vh_store_rate_take(struct vh_store *st, const char key_hash[VH_SHA256_HEX_LEN + 1],
                              const struct vh_rate_limits *lim, bool calls, int64_t now_ms,
                              int *wait_s, struct vh_rate_window *window, struct vh_error *err);

/*
 * Calls on_due(ud), from a thread of the store's own, whenever another process (another
 * node) may have made deliveries due: an ingest, a retry, a replay, or leases taken back
 * (PostgreSQL: LISTEN/NOTIFY on its own connection, reconnecting with backoff; on each
 * reconnect it calls on_due once, since notifications sent meanwhile are lost). One
 * watcher per store, shared with vh_store_watch_endpoints; on_due NULL stops calling it
 * (and stops the watcher when on_changed is not set either) and returns once on_due can no
 * longer run, so it must not be called from on_due or on_changed. Not concurrently with
 * vh_store_watch_endpoints. A backend without other writers (SQLite) watches nothing and
 * returns 0.
 */
VH_API int vh_store_watch(struct vh_store *st, void (*on_due)(void *ud), void *ud,
                          struct vh_error *err);

/*
 * Calls on_changed(ud, endpoint_id), from the watcher thread of vh_store_watch (one thread
 * and one connection serve both; either call starts it), whenever a process (another node,
 * or this one) committed a change of an endpoint's url, secret or enabled flag, or deleted
 * it: attempts queued with the endpoint as it was should not be made. endpoint_id is
 * borrowed for the call. PostgreSQL: that write's transaction runs pg_notify on channel
 * vocohook_endpoint with the id, so it is heard once per such write at its commit, never
 * for a rollback; a write that leaves those three columns as they were sends nothing.
 * Changes committed while the watcher is not listening (before its first connect, or while
 * it reconnects) are not heard, so after each connect it calls on_changed(ud, NULL): any
 * endpoint may have changed. on_changed may block: on_due and later changes wait for it.
 * on_changed NULL stops calling it and returns once it can no longer run, so it must not be
 * called from on_due or on_changed. Not concurrently with vh_store_watch. Returns 1 when it
 * watches (on_changed set, on a backend with other writers), 0 when it stopped calling or
 * there is nothing to watch (SQLite: no other writers), or an error.
 */
VH_API int vh_store_watch_endpoints(struct vh_store *st,
                                    void (*on_changed)(void *ud, const char *endpoint_id), void *ud,
                                    struct vh_error *err);

#endif
