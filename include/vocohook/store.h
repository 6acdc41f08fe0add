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

#define VH_PARTNER_NAME_MAX 128  /* bytes */
#define VH_LABEL_MAX        31   /* ^[a-z0-9][a-z0-9-]{0,30}$ */
#define VH_ENDPOINT_URL_MAX 2048 /* bytes */
#define VH_ENDPOINTS_MAX    5    /* per partner (SPEC §4) */

/*
 * Opens a store. `url` is `sqlite:PATH` or a plain path (SQLite, created if missing, WAL
 * mode, synchronous=FULL). Runs the schema migrations. Stores a new handle in `*out`.
 * Returns 0, VH_EINVAL (unknown scheme; `postgres://` until that backend is built;
 * `:memory:`, which a connection pool cannot share), VH_ESTORE (including a file whose
 * schema is newer than this build, or that is not a vocohook database) or VH_ENOMEM.
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
    char name[VH_PARTNER_NAME_MAX + 1];
    int64_t created_ms;
};

/*
 * Creates a partner with a new id and its first API key, stored only as `key_hash`
 * (vh_sha256_hex of the key). Fills `*out`. Name: 1..VH_PARTNER_NAME_MAX bytes.
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
 * Writes label, url, secret, enabled and updated_ms of the endpoint `ep->id` owned by
 * `ep->partner_id`. VH_ECONFLICT on a taken label, VH_ENOTFOUND when missing. Disabling
 * an endpoint cancels its pending deliveries in the same transaction.
 */
VH_API int vh_store_endpoint_update(struct vh_store *st, const struct vh_endpoint *ep,
                                    struct vh_error *err);

/*
 * Deletes the endpoint; its pending deliveries end as canceled. VH_ENOTFOUND when missing.
 * The endpoint is invisible afterwards (every read, the count and the limit skip it) and its
 * label is free again; its past deliveries still name it.
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

/*
 * The deliveries of an event, in any state, oldest first (for tests and the API), in a new
 * array (vh_free() it; NULL when empty). VH_ENOTFOUND when there is no such event.
 */
struct vh_delivery_brief {
    char id[VH_UUID_LEN + 1];
    char endpoint_id[VH_UUID_LEN + 1];
    char state[16]; /* "pending", "succeeded", "abandoned", "canceled", ... */
    int attempts;
    int64_t next_attempt_ms;
};
VH_API int vh_store_event_deliveries(struct vh_store *st, const char *event_id,
                                     struct vh_delivery_brief **out, size_t *n,
                                     struct vh_error *err);

#endif
