/*
 * Private to src/store/: the table a storage backend fills (git `ref_storage_be`, curl
 * `Curl_ssl`), and the handle layout every backend shares.
 *
 * store.c owns everything that does not depend on the database: argument checks, the
 * choice of backend by URL scheme, new object ids, the table-name allow-list, the
 * constant-time key comparison, and the rule that a failed call leaves the caller's
 * out-parameters untouched (it hands each op a local result and copies it out on success).
 * So an op may assume valid arguments, and may write its outputs even when it then fails.
 *
 * A backend keeps the meaning of every public function in <vocohook/store.h>: one
 * transaction per write, VH_ENOTFOUND for another partner's rows, the exact VH_ECONFLICT
 * messages, durability on return. tests/unit/store/test_store.c and test_deliveries.c are
 * the contract suite each backend must pass.
 */
#ifndef VH_STORE_STORE_INT_H
#define VH_STORE_STORE_INT_H

#include <stddef.h>
#include <stdint.h>

#include <vocohook/buf.h>
#include <vocohook/error.h>
#include <vocohook/event.h>
#include <vocohook/store.h>

/*
 * The largest stored webhook payload. The ingest request is capped at VH_BODY_MAX, but its
 * rendering can be longer (the sender adds the envelope and may write a presigned URL), so
 * the store allows four times that while still bounding what a read allocates.
 */
#define VH__STORE_BODY_MAX ((size_t)4 * 1024 * 1024)
_Static_assert(VH__STORE_BODY_MAX >= (size_t)VH_BODY_MAX, "the store must hold any ingested body");

/* The tables vh_store_count() accepts; store.c maps names to these, never SQL text. */
enum vh__store_table {
    VH__TABLE_PARTNERS,
    VH__TABLE_API_KEYS,
    VH__TABLE_ENDPOINTS, /* live endpoints only: deleted ones are invisible everywhere */
    VH__TABLE_EVENTS,
    VH__TABLE_DELIVERIES,
    VH__TABLE_ATTEMPTS
};

/*
 * Every backend's handle starts with this struct (the backend's own struct embeds it as its
 * first member, so a `struct vh_store *` converts to it and back).
 */
struct vh_store {
    const struct vh_store_ops *ops;
};

struct vh_store_ops {
    const char *name; /* "sqlite", "postgres": what vh_store_backend() returns */

    /*
     * Opens the backend at `target` (for SQLite the path with any `sqlite:` prefix removed,
     * for PostgreSQL the whole URL), runs the migrations, and stores the handle in `*out`.
     */
    int (*open)(const char *target, struct vh_store **out, struct vh_error *err);
    /* Frees everything; no call may be running. */
    void (*close)(struct vh_store *st);

    int (*schema_version)(struct vh_store *st, int *out, struct vh_error *err);

    /* `id` is new (store.c makes it). */
    int (*partner_create)(struct vh_store *st, const char *id, const char *name,
                          const char *key_hash, int64_t now_ms, struct vh_partner *out,
                          struct vh_error *err);
    int (*partner_list)(struct vh_store *st, struct vh_partner **out, size_t *n,
                        struct vh_error *err);
    int (*partner_get)(struct vh_store *st, const char *id, struct vh_partner *out,
                       struct vh_error *err);
    int (*partner_rotate_key)(struct vh_store *st, const char *id, const char *key_hash,
                              int64_t now_ms, struct vh_error *err);
    /*
     * The partner of the live key found by `key_hash`, and the hash as stored (store.c
     * compares the two in constant time before it accepts the match).
     */
    int (*partner_by_key)(struct vh_store *st, const char *key_hash, struct vh_partner *out,
                          char stored_hash[VH_SHA256_HEX_LEN + 1], struct vh_error *err);

    int (*endpoint_create)(struct vh_store *st, const struct vh_endpoint *ep, int max,
                           struct vh_error *err);
    int (*endpoint_get)(struct vh_store *st, const char *partner_id, const char *id,
                        struct vh_endpoint *out, struct vh_error *err);
    int (*endpoint_get_by_label)(struct vh_store *st, const char *partner_id, const char *label,
                                 struct vh_endpoint *out, struct vh_error *err);
    int (*endpoint_list)(struct vh_store *st, const char *partner_id, struct vh_endpoint **out,
                         size_t *n, struct vh_error *err);
    /* `seen`: NULL, or what the caller read (VH_ESTATE when the row no longer holds it). */
    int (*endpoint_update)(struct vh_store *st, const struct vh_endpoint *seen,
                           const struct vh_endpoint *ep, struct vh_error *err);
    int (*endpoint_delete)(struct vh_store *st, const char *partner_id, const char *id,
                           int64_t now_ms, struct vh_error *err);

    /* `new_id` is the event id to use if the session is new (store.c makes it). */
    int (*event_put)(struct vh_store *st, const struct vh_event_put *ev, const char *new_id,
                     struct vh_event_put_result *out, struct vh_error *err);
    /*
     * Optional (NULL: store.c runs event_put and calls `done` itself). Queues the event;
     * 0 means `done` will run exactly once, < 0 that it never will. `new_id` is copied.
     */
    int (*event_put_post)(struct vh_store *st, const struct vh_event_put *ev, const char *new_id,
                          vh_store_put_done_fn *done, void *ud, struct vh_error *err);
    /* On failure the op releases whatever it put into `out`. */
    int (*call_get)(struct vh_store *st, const char *partner_id, const char *id,
                    struct vh_call_rec *out, struct vh_error *err);
    int (*call_list)(struct vh_store *st, const char *partner_id, size_t limit, size_t offset,
                     int call_status, struct vh_call_rec **out, size_t *n, size_t *total,
                     struct vh_error *err);
    int (*event_deliveries)(struct vh_store *st, const char *event_id,
                            struct vh_delivery_brief **out, size_t *n, struct vh_error *err);

    int (*count)(struct vh_store *st, enum vh__store_table table, int64_t *out,
                 struct vh_error *err);

    /*
     * The delivery engine's side. claim: `*out` is a new array (NULL when empty); on
     * failure the op frees what it built and claims nothing. SQLite serializes claimers on
     * its write lock; a backend with row locks should let them skip each other's rows
     * (PostgreSQL: UPDATE ... WHERE id IN (SELECT ... ORDER BY next_attempt_ms LIMIT n
     * FOR UPDATE SKIP LOCKED) RETURNING ...). `max_bytes` (0: none) bounds the bodies as
     * vh_store_delivery_claim_bounded says; the first row is claimed whatever its size.
     */
    int (*delivery_claim)(struct vh_store *st, const char *node_id, int64_t now_ms,
                          int64_t lease_ms, size_t max, size_t max_bytes,
                          struct vh_delivery_job_rec **out, size_t *n, struct vh_error *err);
    /* The results are checked (store.c): new_state is one of the three names, and so on. */
    int (*delivery_record)(struct vh_store *st, const struct vh_delivery_result *results, size_t n,
                           struct vh_error *err);
    /*
     * Those held by `node_id` (may be NULL) and those whose lease ended by `expired_by_ms`
     * (INT64_MIN: none), due again at now_ms; `*count` the deliveries recovered.
     */
    int (*delivery_recover)(struct vh_store *st, const char *node_id, int64_t expired_by_ms,
                            int64_t now_ms, int64_t *count, struct vh_error *err);
    /*
     * Optional (NULL: the caller keeps windows in memory): vh_rate_apply on the key's
     * shared window in one transaction. `*window` gets the window after it.
     */
    int (*rate_take)(struct vh_store *st, const char *key_hash, const struct vh_rate_limits *lim,
                     bool calls, int64_t now_ms, int *wait_s, struct vh_rate_window *window,
                     struct vh_error *err);
    /* Optional (NULL: nothing to watch): as vh_store_watch. */
    int (*watch)(struct vh_store *st, void (*on_due)(void *ud), void *ud, struct vh_error *err);
    /* Optional (NULL: nothing to watch): as vh_store_watch_endpoints. */
    int (*watch_endpoints)(struct vh_store *st,
                           void (*on_changed)(void *ud, const char *endpoint_id), void *ud,
                           struct vh_error *err);
    int (*delivery_next_due)(struct vh_store *st, int64_t *out_ms, struct vh_error *err);
    int (*delivery_stats)(struct vh_store *st, int64_t now_ms, struct vh_delivery_stats *out,
                          struct vh_error *err);
    int (*delivery_counts)(struct vh_store *st, struct vh_delivery_counts *out,
                           struct vh_error *err);

    /* Delivery history. `state` is NULL or a checked state name. */
    int (*delivery_list)(struct vh_store *st, const char *partner_id, const char *endpoint_id,
                         const char *state, size_t limit, size_t offset,
                         struct vh_delivery_info **out, size_t *n, size_t *total,
                         struct vh_error *err);
    /*
     * The newest VH_HISTORY_ATTEMPTS_MAX attempts at most, oldest first, and in `*older`
     * the number of older ones. On failure the op frees the attempts array it built.
     */
    int (*delivery_get)(struct vh_store *st, const char *partner_id, const char *delivery_id,
                        struct vh_delivery_info *out, struct vh_attempt_info **attempts,
                        size_t *n_attempts, size_t *older, struct vh_error *err);
    int (*delivery_retry)(struct vh_store *st, const char *partner_id, const char *delivery_id,
                          int64_t now_ms, struct vh_error *err);
    int (*endpoint_replay)(struct vh_store *st, const char *partner_id, const char *endpoint_id,
                           int64_t since_ms, int64_t until_ms, int64_t now_ms, size_t *created,
                           struct vh_error *err);
};

extern const struct vh_store_ops vh__store_sqlite_ops;
extern const struct vh_store_ops vh__store_postgres_ops;

/* ---- SQLite only, for tests ---------------------------------------------------------------- */

/*
 * The query plan SQLite chose for one of the backend's statements, named by `query`:
 * "claim" (the due-delivery scan), "next_due", "recover", "stats", "list" and
 * "list_by_state", and the per-delivery writes "claim_mark", "finish", "attempt" and
 * "ingest". Appends one line per plan step, as EXPLAIN QUERY PLAN's detail column gives it
 * ("SEARCH d USING INDEX deliveries_due (state=? AND next_attempt_ms<?)"); with "program:"
 * before the name, one line per instruction of the compiled statement, its opcode name
 * ("OpenEphemeral"). `st` must be a SQLite store (VH_EINVAL otherwise); VH_ENOTFOUND for an
 * unknown name.
 */
int vh__store_sqlite_explain(struct vh_store *st, const char *query, struct vh_buf *out,
                             struct vh_error *err);

/*
 * Creates a new SQLite file at `path` whose schema stops at `version` (1..the current one),
 * as an older build would have left it, then runs `seed_sql` (NULL: none) on it: tests of
 * the migrations start from such a file.
 */
int vh__store_sqlite_create_at(const char *path, int version, const char *seed_sql,
                               struct vh_error *err);

/* ---- PostgreSQL only, for tests ------------------------------------------------------------ */

/*
 * Runs `sql` (no parameters; several statements allowed) on one of the store's pooled
 * connections, outside any transaction, and appends the first column of the first row, as
 * text, to `out` (NULL: ignored). For tests that need what the store API does not offer:
 * creating and dropping databases, ending other sessions (pg_terminate_backend), looking at
 * the catalog. `st` must be a postgres store (VH_EINVAL otherwise); VH_ESTORE with the
 * server's first line when the statement fails.
 */
int vh__store_pg_exec(struct vh_store *st, const char *sql, struct vh_buf *out,
                      struct vh_error *err);

/* A pooled connection's TCP settings, as the kernel holds them (for tests). */
struct vh__pg_socket_opts {
    int keepalive;       /* SO_KEEPALIVE */
    int keepidle;        /* TCP_KEEPIDLE, s */
    int keepintvl;       /* TCP_KEEPINTVL, s */
    int keepcnt;         /* TCP_KEEPCNT */
    int user_timeout_ms; /* TCP_USER_TIMEOUT */
};

/*
 * Reads the TCP settings of one of the store's connections (a TCP one: over a Unix socket
 * VH_EIO). `st` must be a postgres store (VH_EINVAL otherwise).
 */
int vh__store_pg_socket_opts(struct vh_store *st, struct vh__pg_socket_opts *out,
                             struct vh_error *err);

/*
 * Appends PostgreSQL's generic plan (EXPLAIN EXECUTE under plan_cache_mode =
 * force_generic_plan, one line per row) of the statement named `query` ("list_by_state",
 * "count_in_flight", "cancel", ...: postgres.c's `explainable`) to `out`. Returns 0,
 * VH_ENOTFOUND (an unknown name), VH_EINVAL (not a postgres store) or VH_ESTORE.
 */
int vh__store_pg_explain(struct vh_store *st, const char *query, struct vh_buf *out,
                         struct vh_error *err);

/*
 * The endpoints' last_delivery_* a record batch sets: for each endpoint (endpoint_ids[i] is
 * result i's), the index of its counted result that started last (a tie goes to the later
 * one in the batch, as if the results were applied in order). Writes the indexes to `out`
 * (room for n) and returns how many. Interrupted results set nothing.
 */
size_t vh__store_last_per_endpoint(const struct vh_delivery_result *results,
                                   const char *const *endpoint_ids, size_t n, size_t *out);

/*
 * Whether the stored endpoint `row` still holds what a caller read into `seen`: the fields
 * an update writes (label, url, secret, enabled, retry_schedule, timeout_ms).
 */
bool vh__endpoint_unchanged(const struct vh_endpoint *seen, const struct vh_endpoint *row);

#endif
