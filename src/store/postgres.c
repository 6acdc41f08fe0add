/*
 * The PostgreSQL store backend: the store for several nodes sharing one database. Same
 * schema, same meaning of every op as sqlite.c (the reference; read it first); this file
 * says only where PostgreSQL needs something else.
 *
 * Threads: a `struct pg_store` is shared by every thread of the process. Each `PGconn *`
 * belongs to exactly one thread at a time: an op borrows a connection from the pool for
 * its whole duration (conn_get) and gives it back, with no transaction open, when it ends
 * (conn_put). libpq is thread-safe on those terms (one PGconn, one thread). An op never
 * holds two connections, so the pool cannot deadlock; a caller waits when all POOL_MAX are
 * busy.
 *
 * A lost connection (server restart, failover, pg_terminate_backend) fails the op that hit
 * it with VH_ESTORE and is dropped from the pool, together with every idle connection (they
 * most likely went the same way); the next op opens a new one. A write whose COMMIT was
 * cut off may or may not have committed: the caller sees VH_ESTORE either way, and every
 * write is idempotent enough for a retry (event_put on session_id, record fenced by lease).
 *
 * Concurrency: write transactions run at READ COMMITTED (each statement sees what committed
 * before it started) and take row locks where a rule spans rows:
 *   - claim: SELECT ... FOR UPDATE SKIP LOCKED hands each due row to one claimer; claimers
 *     skip each other's rows instead of waiting;
 *   - endpoint create and key rotation lock the partner row (FOR NO KEY UPDATE: event
 *     inserts, which only KEY SHARE it through their foreign key, are not blocked), so the
 *     count and label rules and "one live key" hold however many callers race;
 *   - event_put reads the enabled endpoints FOR SHARE, so an endpoint cannot be disabled
 *     between that read and the new deliveries (which would leave a pending delivery to a
 *     disabled endpoint), and inserts with ON CONFLICT (session_id) DO NOTHING, so identical
 *     concurrent puts make one event and the others read it back;
 *   - lock order is endpoint, then its deliveries (update, delete, retry), which keeps
 *     those from deadlocking; a record batch locks only deliveries (the endpoints'
 *     last_delivery_* follow in a short transaction after it), so it never waits on an
 *     endpoint row; recover and record may still meet on delivery rows, so both retry on
 *     a deadlock or serialization failure.
 * Reads that need one snapshot for several statements (a total and its page) run at
 * REPEATABLE READ, READ ONLY.
 *
 * Durability: COMMIT returns once the WAL is flushed, given the server's default
 * synchronous_commit = on (a server set to off loses the last commits on a crash).
 *
 * Migrations run in one transaction under pg_advisory_xact_lock, so nodes starting at once
 * migrate once: the others wait, then find the schema current. DDL is transactional here,
 * so a crash mid-migration leaves the previous version.
 *
 * Values reach the server only as parameters of prepared statements (text format, binary
 * for bytes), never spliced into SQL. Results come back in binary format: text and bytea
 * columns are their bytes, integers big-endian (the types are checked on every result).
 */
#include "store/store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <libpq-fe.h>

#include <vocohook/alloc.h>
#include <vocohook/buf.h>
#include <vocohook/event.h>
#include <vocohook/id.h>

#include "core/thread_int.h"
#include "core/banned.h"

#define POOL_MAX   8   /* connections per store */
#define WHAT_MAX   160 /* "insert event 's1'": the context of error messages */
#define PARAMS_MAX 14  /* parameters of the largest statement */
#define TX_TRIES   3   /* attempts at a transaction that hit a deadlock */
#define PIPE_CHUNK 64  /* statements of a record batch sent before their results are read */

#define WAKE_CHANNEL         "vocohook_due"      /* what migration 3's trigger notifies */
#define ENDPOINT_CHANNEL     "vocohook_endpoint" /* an endpoint's id, after S_EP_NOTIFY */
#define WATCH_BACKOFF_MS     100                 /* first wait before the watcher reconnects */
#define WATCH_BACKOFF_MAX_MS 5000                /* the longest */
#define RATE_GC_MS           60000               /* sweep ended rate windows at most this often */

/*
 * How long a statement waits for a lock another session holds before it fails, unless the
 * server, role, database or URL set lock_timeout: our own transactions hold theirs for
 * milliseconds, so a longer wait is someone else's (a forgotten `BEGIN; LOCK TABLE`, a
 * VACUUM FULL), and the call fails (503) instead of holding its caller and a pool slot.
 */
#define LOCK_TIMEOUT "5s"

/* The server features used (IDENTITY columns) arrived in PostgreSQL 10. */
#define PG_MIN_VERSION 100000

/* The advisory lock migrations take: "voco" in ASCII, as sqlite.c's application_id. */
#define MIGRATE_LOCK_KEY "1987011439"

/* Type OIDs of the result columns we read (pg_type.h is a server header; these never change). */
#define OID_BOOL  16
#define OID_BYTEA 17
#define OID_INT8  20
#define OID_INT2  21
#define OID_INT4  23
#define OID_TEXT  25

/* ---- schema ------------------------------------------------------------------------------ */

/*
 * Migrations, oldest first: step i takes the schema from version i to i + 1, the same
 * versions as sqlite.c's. Never edit a released step; append a new one.
 *
 * Types: INTEGER becomes BIGINT, BLOB BYTEA, the 0/1 `enabled` BOOLEAN. SQLite's implicit
 * rowid becomes an explicit `seq` identity column where an order uses it (insertion order
 * breaks ties), and the indexes that order by it end with it. The version lives in the
 * one-row table vocohook_schema, which also marks the database as vocohook's.
 */
static const char *const migrations[] = {
    /* 1: the initial schema */
    "CREATE TABLE partners (\n"
    "    id         TEXT NOT NULL PRIMARY KEY,\n"
    "    name       TEXT NOT NULL,\n"
    "    created_ms BIGINT NOT NULL,\n"
    "    seq        BIGINT GENERATED ALWAYS AS IDENTITY\n"
    ");\n"
    "CREATE TABLE api_keys (\n"
    "    key_hash   TEXT NOT NULL PRIMARY KEY,\n"
    "    partner_id TEXT NOT NULL REFERENCES partners(id),\n"
    "    created_ms BIGINT NOT NULL,\n"
    "    revoked_ms BIGINT\n"
    ");\n"
    "CREATE INDEX api_keys_partner ON api_keys(partner_id);\n"
    "CREATE TABLE endpoints (\n"
    "    id                   TEXT NOT NULL PRIMARY KEY,\n"
    "    partner_id           TEXT NOT NULL REFERENCES partners(id),\n"
    "    label                TEXT NOT NULL,\n"
    "    url                  TEXT NOT NULL,\n"
    "    secret               TEXT NOT NULL,\n"
    "    enabled              BOOLEAN NOT NULL,\n"
    "    created_ms           BIGINT NOT NULL,\n"
    "    updated_ms           BIGINT NOT NULL,\n"
    "    last_delivery_ms     BIGINT,\n"
    "    last_delivery_status TEXT CHECK (last_delivery_status IN ('succeeded', 'failed')),\n"
    "    deleted_ms           BIGINT,\n"
    "    seq                  BIGINT GENERATED ALWAYS AS IDENTITY\n"
    ");\n"
    "CREATE UNIQUE INDEX endpoints_label ON endpoints(partner_id, label)\n"
    "    WHERE deleted_ms IS NULL;\n"
    "CREATE INDEX endpoints_partner ON endpoints(partner_id);\n"
    "CREATE TABLE events (\n"
    "    id            TEXT NOT NULL PRIMARY KEY,\n"
    "    partner_id    TEXT NOT NULL REFERENCES partners(id),\n"
    "    session_id    TEXT NOT NULL UNIQUE,\n"
    "    call_id       TEXT,\n"
    "    call_status   TEXT,\n"
    "    recording_key TEXT,\n"
    "    body          BYTEA NOT NULL,\n"
    "    fanout        BIGINT NOT NULL CHECK (fanout >= 0),\n"
    "    accepted_ms   BIGINT NOT NULL,\n"
    "    seq           BIGINT GENERATED ALWAYS AS IDENTITY,\n"
    "    CHECK ((call_id IS NULL) = (call_status IS NULL))\n"
    ");\n"
    "CREATE INDEX events_partner_time ON events(partner_id, accepted_ms, seq);\n"
    "CREATE INDEX events_partner_call ON events(partner_id, call_id);\n"
    "CREATE TABLE deliveries (\n"
    "    id              TEXT NOT NULL PRIMARY KEY,\n"
    "    event_id        TEXT NOT NULL REFERENCES events(id),\n"
    "    endpoint_id     TEXT NOT NULL REFERENCES endpoints(id),\n"
    "    partner_id      TEXT NOT NULL REFERENCES partners(id),\n"
    "    state           TEXT NOT NULL CHECK (state IN\n"
    "                        ('pending', 'in_flight', 'succeeded', 'abandoned', 'canceled')),\n"
    "    attempts        BIGINT NOT NULL DEFAULT 0 CHECK (attempts >= 0),\n"
    "    next_attempt_ms BIGINT NOT NULL,\n"
    "    created_ms      BIGINT NOT NULL,\n"
    "    updated_ms      BIGINT NOT NULL,\n"
    "    lease_owner     TEXT,\n"
    "    lease_until_ms  BIGINT,\n"
    "    seq             BIGINT GENERATED ALWAYS AS IDENTITY\n"
    ");\n"
    "CREATE INDEX deliveries_due ON deliveries(state, next_attempt_ms, seq);\n"
    "CREATE INDEX deliveries_endpoint ON deliveries(endpoint_id, state);\n"
    "CREATE INDEX deliveries_event ON deliveries(event_id);\n"
    "CREATE TABLE attempts (\n"
    "    delivery_id   TEXT NOT NULL REFERENCES deliveries(id),\n"
    "    n             BIGINT NOT NULL CHECK (n >= 1),\n"
    "    started_ms    BIGINT NOT NULL,\n"
    "    duration_ms   BIGINT NOT NULL CHECK (duration_ms >= 0),\n"
    "    http_status   BIGINT,\n"
    "    error_class   TEXT,\n"
    "    response_head BYTEA,\n"
    "    PRIMARY KEY (delivery_id, n)\n"
    ");\n",
    /* 2: per-endpoint schedules, retry budgets, attempt errors, history indexes */
    "ALTER TABLE endpoints ADD COLUMN retry_schedule TEXT;\n"
    "ALTER TABLE endpoints ADD COLUMN timeout_ms BIGINT CHECK (timeout_ms > 0);\n"
    "ALTER TABLE deliveries ADD COLUMN attempt_base BIGINT NOT NULL DEFAULT 0\n"
    "    CHECK (attempt_base >= 0);\n"
    "ALTER TABLE attempts ADD COLUMN error TEXT;\n"
    "DROP INDEX deliveries_endpoint;\n"
    "CREATE INDEX deliveries_endpoint ON deliveries(endpoint_id, state, created_ms, seq);\n"
    "CREATE INDEX deliveries_endpoint_time ON deliveries(endpoint_id, created_ms, seq);\n",
    /*
     * 3 (PostgreSQL only; SQLite has one process per file): wake-ups for the other nodes
     * (every insert into deliveries notifies channel vocohook_due at its commit; identical
     * notifications of one transaction fold into one), and the API keys' rate windows.
     */
    "CREATE FUNCTION vocohook_notify_due() RETURNS trigger LANGUAGE plpgsql AS $$\n"
    "BEGIN\n"
    "    PERFORM pg_notify('vocohook_due', '');\n"
    "    RETURN NULL;\n"
    "END\n"
    "$$;\n"
    "CREATE TRIGGER deliveries_notify_due AFTER INSERT ON deliveries\n"
    "    FOR EACH STATEMENT EXECUTE PROCEDURE vocohook_notify_due();\n"
    "CREATE TABLE rate_windows (\n"
    "    key_hash         TEXT NOT NULL PRIMARY KEY,\n"
    "    general_start_ms BIGINT NOT NULL,\n"
    "    general_count    BIGINT NOT NULL,\n"
    "    calls_start_ms   BIGINT NOT NULL,\n"
    "    calls_count      BIGINT NOT NULL\n"
    ");\n",
    /*
     * 4: deliveries_endpoint holds only the states a delivery rests in besides succeeded
     * (pending, abandoned, canceled), as SQLite's schema 4 does. A claim and its record
     * change `state`, an indexed column, so neither update is HOT: each put a new entry into
     * every index of the table, this one included, for a row that is in flight or done.
     * Now those two entries are not made. The history finds in-flight deliveries through
     * deliveries_due and succeeded ones through deliveries_endpoint_time; each statement
     * that should use this index repeats its predicate, so that a generic plan may.
     */
    "DROP INDEX deliveries_endpoint;\n"
    "CREATE INDEX deliveries_endpoint ON deliveries(endpoint_id, state, created_ms, seq)\n"
    "    WHERE state <> 'in_flight' AND state <> 'succeeded';\n",
    /*
     * 5: each delivery carries its payload's length, for the claim's byte bound
     * (vh_store_delivery_claim_bounded) without a lookup of its event under the row locks
     * (docs/decisions.md, "The sender's memory"). Rows inserted before, or by a node of an
     * earlier version, hold NULL; the claim reads their events' lengths instead. The check
     * is added NOT VALID: validated, it would read every row (all NULL) under the ACCESS
     * EXCLUSIVE lock that holds every node's claims and ingests; it binds the rows written
     * after it all the same.
     */
    "ALTER TABLE deliveries ADD COLUMN body_len BIGINT;\n"
    "ALTER TABLE deliveries ADD CONSTRAINT deliveries_body_len_check CHECK (body_len >= 0)\n"
    "    NOT VALID;\n",
};

#define SCHEMA_VERSION ((int)(sizeof(migrations) / sizeof(migrations[0])))

/* ---- statements ---------------------------------------------------------------------------- */

/* Every statement the backend runs; each connection prepares each one once, on first use. */
enum stmt_id {
    S_SCHEMA_EXISTS,
    S_SCHEMA_VERSION,
    S_SCHEMA_SET,
    S_FOREIGN_TABLES,
    S_PARTNER_INSERT,
    S_PARTNER_LIST,
    S_PARTNER_GET,
    S_PARTNER_LOCK,
    S_KEY_INSERT,
    S_KEY_REVOKE_ALL,
    S_PARTNER_BY_KEY,
    S_EP_COUNT,
    S_EP_LABEL_TAKEN,
    S_EP_INSERT,
    S_EP_GET,
    S_EP_GET_LOCK,
    S_EP_GET_SHARE,
    S_EP_GET_BY_LABEL,
    S_EP_LIST,
    S_EP_UPDATE,
    S_EP_DELETE,
    S_EP_NOTIFY,
    S_EP_ENABLED_IDS,
    S_DLV_CANCEL,
    S_EV_BY_SESSION,
    S_EV_INSERT,
    S_EV_EXISTS,
    S_DLV_INSERT,
    S_DLV_INSERT_MANY,
    S_DLV_OF_EVENT,
    S_CALL_BY_SESSION,
    S_CALL_BY_CALL_ID,
    S_CALL_COUNT,
    S_CALL_PAGE,
    S_COUNT_PARTNERS,
    S_COUNT_API_KEYS,
    S_COUNT_ENDPOINTS,
    S_COUNT_EVENTS,
    S_COUNT_DELIVERIES,
    S_COUNT_ATTEMPTS,
    S_CLAIM,
    S_DLV_ENDPOINT,
    S_DLV_FINISH,
    S_DLV_RAISE_ATTEMPTS,
    S_EP_LAST_DELIVERY,
    S_RECOVER,
    S_NEXT_DUE,
    S_STATS_PENDING,
    S_STATS_IN_FLIGHT,
    S_COUNT_BY_STATE,
    S_DLV_LIST_COUNT,
    S_DLV_LIST_COUNT_STATE,
    S_DLV_LIST_COUNT_IN_FLIGHT,
    S_DLV_LIST_COUNT_SUCCEEDED,
    S_DLV_LIST,
    S_DLV_LIST_STATE,
    S_DLV_LIST_IN_FLIGHT,
    S_DLV_LIST_SUCCEEDED,
    S_DLV_GET,
    S_ATTEMPTS_OF,
    S_RETRY_ENDPOINT,
    S_RETRY_LOCK_ENDPOINT,
    S_RETRY_LOCK_DELIVERY,
    S_RETRY,
    S_REPLAY_EVENTS,
    S_RECORD_ONE,
    S_RECORD_MANY,
    S_RATE_LOCK,
    S_RATE_SET,
    S_RATE_GC,
    S__N
};

#define EP_COLS                                                                                    \
    "id, partner_id, label, url, secret, enabled, created_ms, updated_ms, last_delivery_ms, "      \
    "last_delivery_status, retry_schedule, timeout_ms"
#define CALL_COLS                                                                                  \
    "id, partner_id, session_id, call_id, call_status, accepted_ms, recording_key, body"
/* A delivery for the history, with its session and its latest attempt (as sqlite.c). */
#define INFO_COLS                                                                                  \
    "d.id, d.event_id, d.endpoint_id, v.session_id, d.state, d.attempts, d.attempt_base,"          \
    " d.next_attempt_ms, d.created_ms, d.updated_ms, a.started_ms, a.http_status, a.error_class"
#define INFO_FROM                                                                                  \
    " FROM deliveries AS d JOIN events AS v ON v.id = d.event_id"                                  \
    " LEFT JOIN LATERAL (SELECT started_ms, http_status, error_class FROM attempts"                \
    " WHERE delivery_id = d.id ORDER BY n DESC LIMIT 1) AS a ON true"

static const char *const stmt_sql[S__N] = {
    [S_SCHEMA_EXISTS] = "SELECT to_regclass('vocohook_schema') IS NOT NULL",
    [S_SCHEMA_VERSION] = "SELECT version FROM vocohook_schema",
    [S_SCHEMA_SET] = "UPDATE vocohook_schema SET version = $1",
    [S_FOREIGN_TABLES] = "SELECT count(*) FROM pg_catalog.pg_tables"
                         " WHERE schemaname = current_schema()",
    [S_PARTNER_INSERT] = "INSERT INTO partners (id, name, created_ms) VALUES ($1, $2, $3)",
    [S_PARTNER_LIST] = "SELECT id, name, created_ms FROM partners ORDER BY created_ms, seq",
    [S_PARTNER_GET] = "SELECT id, name, created_ms FROM partners WHERE id = $1",
    [S_PARTNER_LOCK] = "SELECT id, name, created_ms FROM partners WHERE id = $1"
                       " FOR NO KEY UPDATE",
    [S_KEY_INSERT] = "INSERT INTO api_keys (key_hash, partner_id, created_ms) VALUES ($1, $2, $3)",
    [S_KEY_REVOKE_ALL] = "UPDATE api_keys SET revoked_ms = $2"
                         " WHERE partner_id = $1 AND revoked_ms IS NULL",
    [S_PARTNER_BY_KEY] = "SELECT p.id, p.name, p.created_ms, k.key_hash"
                         " FROM api_keys AS k JOIN partners AS p ON p.id = k.partner_id"
                         " WHERE k.key_hash = $1 AND k.revoked_ms IS NULL",
    [S_EP_COUNT] = "SELECT count(*) FROM endpoints WHERE partner_id = $1 AND deleted_ms IS NULL",
    [S_EP_LABEL_TAKEN] = "SELECT 1 FROM endpoints WHERE partner_id = $1 AND label = $2"
                         " AND id <> $3 AND deleted_ms IS NULL",
    [S_EP_INSERT] = "INSERT INTO endpoints (id, partner_id, label, url, secret, enabled,"
                    " created_ms, updated_ms, retry_schedule, timeout_ms)"
                    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    [S_EP_GET] = "SELECT " EP_COLS " FROM endpoints"
                 " WHERE partner_id = $1 AND id = $2 AND deleted_ms IS NULL",
    [S_EP_GET_LOCK] = "SELECT " EP_COLS " FROM endpoints"
                      " WHERE partner_id = $1 AND id = $2 AND deleted_ms IS NULL"
                      " FOR NO KEY UPDATE",
    [S_EP_GET_SHARE] = "SELECT " EP_COLS " FROM endpoints"
                       " WHERE partner_id = $1 AND id = $2 AND deleted_ms IS NULL FOR SHARE",
    [S_EP_GET_BY_LABEL] = "SELECT " EP_COLS " FROM endpoints"
                          " WHERE partner_id = $1 AND label = $2 AND deleted_ms IS NULL",
    [S_EP_LIST] = "SELECT " EP_COLS " FROM endpoints"
                  " WHERE partner_id = $1 AND deleted_ms IS NULL ORDER BY created_ms, seq",
    [S_EP_UPDATE] = "UPDATE endpoints SET label = $3, url = $4, secret = $5, enabled = $6,"
                    " updated_ms = $7, retry_schedule = $8, timeout_ms = $9"
                    " WHERE partner_id = $1 AND id = $2 AND deleted_ms IS NULL",
    [S_EP_DELETE] = "UPDATE endpoints SET deleted_ms = $3, updated_ms = $3, enabled = false,"
                    " secret = '' WHERE partner_id = $1 AND id = $2 AND deleted_ms IS NULL",
    /*
     * Sent at the commit of the transaction it runs in, to every node's watcher. The 1:
     * pg_notify returns void, a type no reader here knows.
     */
    [S_EP_NOTIFY] = "SELECT 1 FROM pg_notify('" ENDPOINT_CHANNEL "', $1)",
    /*
     * Locked in id order, like every other writer that locks several endpoints (the
     * endpoints' last deliveries after a record batch): one order for all, or ingest and
     * attempt recording deadlock.
     * Returned in creation order, for the deliveries' order.
     */
    [S_EP_ENABLED_IDS] = "SELECT id FROM (SELECT id, created_ms, seq FROM endpoints"
                         " WHERE partner_id = $1 AND enabled AND deleted_ms IS NULL"
                         " ORDER BY id FOR SHARE) e ORDER BY created_ms, seq",
    /*
     * Pending and in flight in one statement: a row that a record, a claim or a recovery
     * moves from one of the two states to the other while this runs is waited for and
     * checked again against the whole WHERE (READ COMMITTED re-evaluates an updated row), so
     * it is canceled in either state. Two statements, one per state, each missed a row that
     * moved to the other state meanwhile, and it stayed pending to a disabled endpoint. No
     * row enters either state from outside them without the endpoint's lock, which the
     * caller holds. The ids come pending through deliveries_endpoint (its predicate
     * repeated) and in flight through deliveries_due: one OR over both made the planner
     * read every delivery the endpoint ever had.
     */
    [S_DLV_CANCEL] = "UPDATE deliveries SET state = 'canceled', updated_ms = $2,"
                     " next_attempt_ms = 0, lease_owner = NULL, lease_until_ms = NULL"
                     " WHERE (state = 'pending' OR state = 'in_flight') AND id IN"
                     " (SELECT id FROM deliveries WHERE endpoint_id = $1 AND state = 'pending'"
                     " AND state <> 'in_flight' AND state <> 'succeeded'"
                     " UNION ALL SELECT id FROM deliveries"
                     " WHERE state = 'in_flight' AND endpoint_id = $1)",
    [S_EV_BY_SESSION] = "SELECT id, partner_id, fanout FROM events WHERE session_id = $1",
    [S_EV_INSERT] = "INSERT INTO events (id, partner_id, session_id, call_id, call_status,"
                    " recording_key, body, fanout, accepted_ms)"
                    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
                    " ON CONFLICT (session_id) DO NOTHING",
    [S_EV_EXISTS] = "SELECT 1 FROM events WHERE id = $1",
    [S_DLV_INSERT] = "INSERT INTO deliveries (id, event_id, endpoint_id, partner_id, state,"
                     " attempts, next_attempt_ms, created_ms, updated_ms, body_len)"
                     " VALUES ($1, $2, $3, $4, 'pending', 0, $5, $5, $5, $6)",
    /* Many deliveries to one endpoint (a replay), in the order of the two arrays. */
    [S_DLV_INSERT_MANY] = "INSERT INTO deliveries (id, event_id, endpoint_id, partner_id, state,"
                          " attempts, next_attempt_ms, created_ms, updated_ms, body_len)"
                          " SELECT u.id, u.event_id, $3, $4, 'pending', 0, $5, $5, $5,"
                          " octet_length(v.body)"
                          " FROM unnest($1::text[], $2::text[]) WITH ORDINALITY"
                          " AS u(id, event_id, i) JOIN events AS v ON v.id = u.event_id"
                          " ORDER BY u.i",
    [S_DLV_OF_EVENT] = "SELECT id, endpoint_id, state, attempts, next_attempt_ms"
                       " FROM deliveries WHERE event_id = $1 ORDER BY created_ms, seq",
    [S_CALL_BY_SESSION] = "SELECT " CALL_COLS " FROM events"
                          " WHERE partner_id = $1 AND session_id = $2",
    [S_CALL_BY_CALL_ID] = "SELECT " CALL_COLS " FROM events"
                          " WHERE partner_id = $1 AND call_id = $2"
                          " ORDER BY accepted_ms DESC, seq DESC LIMIT 1",
    [S_CALL_COUNT] = "SELECT count(*) FROM events"
                     " WHERE partner_id = $1 AND ($2::text IS NULL OR call_status = $2::text)",
    [S_CALL_PAGE] = "SELECT " CALL_COLS " FROM events"
                    " WHERE partner_id = $1 AND ($2::text IS NULL OR call_status = $2::text)"
                    " ORDER BY accepted_ms DESC, seq DESC LIMIT $3 OFFSET $4",
    [S_COUNT_PARTNERS] = "SELECT count(*) FROM partners",
    [S_COUNT_API_KEYS] = "SELECT count(*) FROM api_keys",
    [S_COUNT_ENDPOINTS] = "SELECT count(*) FROM endpoints WHERE deleted_ms IS NULL",
    [S_COUNT_EVENTS] = "SELECT count(*) FROM events",
    [S_COUNT_DELIVERIES] = "SELECT count(*) FROM deliveries",
    [S_COUNT_ATTEMPTS] = "SELECT count(*) FROM attempts",
    /*
     * The claim in one statement: lock up to $2 due rows through deliveries_due, skipping
     * rows another claimer holds; keep those whose bodies, summed in due order, stay within
     * $5 bytes (0: all; the first always; a row without body_len, from before schema 5,
     * reads its event's: octet_length reads the stored length, not the body); mark them,
     * and return them joined with what an attempt needs, in due order. The rows locked and
     * not kept stay pending; their locks end with the transaction. The mark finds its rows
     * by key from an array: as a join with the CTE, a generic plan (which cannot see
     * LIMIT $2) could hash-join a scan of the whole table (docs/BENCHMARKS.md, session 20).
     */
    [S_CLAIM] = "WITH due AS (SELECT id, next_attempt_ms, seq, coalesce(body_len,"
                " (SELECT octet_length(v.body) FROM events AS v WHERE v.id = event_id)) AS len"
                " FROM deliveries WHERE state = 'pending' AND next_attempt_ms <= $1"
                " ORDER BY state, next_attempt_ms, seq LIMIT $2 FOR UPDATE SKIP LOCKED),"
                " kept AS (SELECT id FROM (SELECT id, row_number() OVER w AS k,"
                " sum(len) OVER w AS upto FROM due WINDOW w AS (ORDER BY next_attempt_ms, seq))"
                " AS t WHERE k = 1 OR $5::bigint = 0 OR upto <= $5::bigint),"
                " claimed AS (UPDATE deliveries AS d SET state = 'in_flight', lease_owner = $3,"
                " lease_until_ms = $4, updated_ms = $1"
                " WHERE d.id = ANY (ARRAY(SELECT id FROM kept))"
                " RETURNING d.id, d.event_id, d.endpoint_id, d.partner_id, d.attempts,"
                " d.attempt_base, d.next_attempt_ms, d.seq)"
                " SELECT c.id, c.event_id, c.endpoint_id, c.partner_id, c.attempts,"
                " c.attempt_base, c.next_attempt_ms, e.url, e.secret, e.retry_schedule,"
                " e.timeout_ms, v.body"
                " FROM claimed AS c JOIN endpoints AS e ON e.id = c.endpoint_id"
                " JOIN events AS v ON v.id = c.event_id ORDER BY c.next_attempt_ms, c.seq",
    [S_DLV_ENDPOINT] = "SELECT endpoint_id FROM deliveries WHERE id = $1",
    /* As sqlite.c's delivery_raise_attempts: attempt_base rises as much on a pending row. */
    [S_DLV_RAISE_ATTEMPTS] = "UPDATE deliveries SET attempts = $2, attempt_base = attempt_base"
                             " + CASE WHEN state = 'pending' THEN $2 - attempts ELSE 0 END"
                             " WHERE id = $1 AND attempts < $2 AND state <> 'in_flight'",
    [S_DLV_FINISH] = "UPDATE deliveries SET state = $3, attempts = $4, next_attempt_ms = $5,"
                     " lease_owner = NULL, lease_until_ms = NULL, updated_ms = $6"
                     " WHERE id = $1 AND state = 'in_flight' AND lease_owner = $2"
                     " AND attempts = $7 AND ($8::bigint IS NULL OR lease_until_ms = $8)",
    [S_EP_LAST_DELIVERY] = "UPDATE endpoints SET last_delivery_ms = $2, last_delivery_status = $3"
                           " WHERE id = $1"
                           " AND (last_delivery_ms IS NULL OR last_delivery_ms <= $2)",
    [S_RECOVER] = "UPDATE deliveries SET state = 'pending', next_attempt_ms = $1,"
                  " lease_owner = NULL, lease_until_ms = NULL, updated_ms = $1"
                  " WHERE state = 'in_flight'"
                  " AND (lease_until_ms <= $3 OR lease_owner = $2::text)",
    [S_NEXT_DUE] = "SELECT min(next_attempt_ms) FROM deliveries WHERE state = 'pending'",
    [S_STATS_PENDING] = "SELECT count(*),"
                        " count(*) FILTER (WHERE next_attempt_ms <= $1),"
                        " min(created_ms), min(next_attempt_ms)"
                        " FROM deliveries WHERE state = 'pending'",
    [S_STATS_IN_FLIGHT] = "SELECT count(*) FROM deliveries WHERE state = 'in_flight'",
    [S_COUNT_BY_STATE] = "SELECT state, count(*) FROM deliveries GROUP BY state",
    [S_DLV_LIST_COUNT] = "SELECT count(*) FROM deliveries WHERE endpoint_id = $1",
    /*
     * The history's state filter, by where each state is indexed (migration 4): pending,
     * abandoned and canceled in deliveries_endpoint (its predicate repeated), in flight in
     * deliveries_due, succeeded in deliveries_endpoint_time.
     */
    [S_DLV_LIST_COUNT_STATE] = "SELECT count(*) FROM deliveries"
                               " WHERE endpoint_id = $1 AND state = $2"
                               " AND state <> 'in_flight' AND state <> 'succeeded'",
    [S_DLV_LIST_COUNT_IN_FLIGHT] = "SELECT count(*) FROM deliveries"
                                   " WHERE state = 'in_flight' AND endpoint_id = $1",
    [S_DLV_LIST_COUNT_SUCCEEDED] = "SELECT count(*) FROM deliveries"
                                   " WHERE endpoint_id = $1 AND state = 'succeeded'",
    [S_DLV_LIST] = "SELECT " INFO_COLS INFO_FROM " WHERE d.endpoint_id = $1"
                   " ORDER BY d.created_ms DESC, d.seq DESC LIMIT $2 OFFSET $3",
    [S_DLV_LIST_STATE] = "SELECT " INFO_COLS INFO_FROM " WHERE d.endpoint_id = $1 AND d.state = $4"
                         " AND d.state <> 'in_flight' AND d.state <> 'succeeded'"
                         " ORDER BY d.created_ms DESC, d.seq DESC LIMIT $2 OFFSET $3",
    [S_DLV_LIST_IN_FLIGHT] =
        "SELECT " INFO_COLS INFO_FROM " WHERE d.state = 'in_flight' AND d.endpoint_id = $1"
        " ORDER BY d.created_ms DESC, d.seq DESC LIMIT $2 OFFSET $3",
    [S_DLV_LIST_SUCCEEDED] =
        "SELECT " INFO_COLS INFO_FROM " WHERE d.endpoint_id = $1 AND d.state = 'succeeded'"
        " ORDER BY d.created_ms DESC, d.seq DESC LIMIT $2 OFFSET $3",
    [S_DLV_GET] = "SELECT " INFO_COLS INFO_FROM " WHERE d.id = $1 AND d.partner_id = $2",
    /*
     * The newest $2 attempts of delivery $1, newest first (pg_delivery_get turns them
     * round), each with the count of all its attempts (an uncorrelated subquery, run once,
     * on the primary key): the older rows are not read.
     */
    [S_ATTEMPTS_OF] = "SELECT n, started_ms, duration_ms, http_status, error_class, error,"
                      " response_head, (SELECT count(*) FROM attempts WHERE delivery_id = $1)"
                      " FROM attempts WHERE delivery_id = $1 ORDER BY n DESC LIMIT $2",
    [S_RETRY_ENDPOINT] = "SELECT endpoint_id FROM deliveries WHERE id = $1 AND partner_id = $2",
    /* Endpoint first (shared: it must stay enabled until we commit), then the delivery. */
    [S_RETRY_LOCK_ENDPOINT] = "SELECT enabled, deleted_ms IS NOT NULL FROM endpoints"
                              " WHERE id = $1 FOR SHARE",
    [S_RETRY_LOCK_DELIVERY] = "SELECT state FROM deliveries WHERE id = $1 FOR UPDATE",
    [S_RETRY] = "UPDATE deliveries SET state = 'pending', next_attempt_ms = $2,"
                " attempt_base = attempts, lease_owner = NULL, lease_until_ms = NULL,"
                " updated_ms = $2 WHERE id = $1",
    /*
     * A counted attempt's whole record in one statement, so a batch can be pipelined:
     * finish the delivery if it is still this claim (f); write the attempt row, replacing a
     * stale one only when f applied; else raise the attempt count of a delivery no longer
     * in flight, and a pending one's attempt_base with it (as sqlite.c's
     * delivery_raise_attempts). The sub-statements share one snapshot: when f applies, the
     * row is in flight there, so r cannot touch it too.
     */
    [S_RECORD_ONE] =
        "WITH f AS (UPDATE deliveries SET state = $3, attempts = $4, next_attempt_ms = $5,"
        " lease_owner = NULL, lease_until_ms = NULL, updated_ms = $6"
        " WHERE id = $1 AND state = 'in_flight' AND lease_owner = $2 AND attempts = $7"
        " AND ($14::bigint IS NULL OR lease_until_ms = $14) RETURNING 1),"
        " a AS (INSERT INTO attempts (delivery_id, n, started_ms, duration_ms, http_status,"
        " error_class, error, response_head) VALUES ($1, $4, $8, $9, $10, $11, $12, $13)"
        " ON CONFLICT (delivery_id, n) DO UPDATE SET started_ms = excluded.started_ms,"
        " duration_ms = excluded.duration_ms, http_status = excluded.http_status,"
        " error_class = excluded.error_class, error = excluded.error,"
        " response_head = excluded.response_head WHERE EXISTS (SELECT 1 FROM f) RETURNING 1),"
        " r AS (UPDATE deliveries SET attempts = $4, attempt_base = attempt_base"
        " + CASE WHEN state = 'pending' THEN $4 - attempts ELSE 0 END"
        " WHERE id = $1 AND attempts < $4"
        " AND state <> 'in_flight' AND NOT EXISTS (SELECT 1 FROM f) RETURNING 1)"
        " SELECT (SELECT count(*) FROM f), (SELECT count(*) FROM r)",
    /*
     * S_RECORD_ONE for a whole batch in one statement: each parameter an array with one
     * element per result (the same values as S_RECORD_ONE's, in its order), so the
     * executor starts once per batch, not once per result. The batch's deliveries are
     * distinct (record_set_fits), so each row is matched once. Returns, per result in
     * order, whether f and whether r applied to its delivery.
     */
    [S_RECORD_MANY] =
        "WITH u AS (SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int8[],"
        " $5::int8[], $6::int8[], $7::int8[], $8::int8[], $9::int8[], $10::int8[], $11::text[],"
        " $12::text[], $13::bytea[], $14::int8[]) WITH ORDINALITY AS u(id, owner, state,"
        " attempts, next_ms, updated_ms, before, started_ms, duration_ms, http_status,"
        " error_class, error, response_head, lease_until_ms, k)),"
        " f AS (UPDATE deliveries AS d SET state = u.state, attempts = u.attempts,"
        " next_attempt_ms = u.next_ms, lease_owner = NULL, lease_until_ms = NULL,"
        " updated_ms = u.updated_ms FROM u"
        " WHERE d.id = u.id AND d.state = 'in_flight' AND d.lease_owner = u.owner"
        " AND d.attempts = u.before"
        " AND (u.lease_until_ms IS NULL OR d.lease_until_ms = u.lease_until_ms) RETURNING d.id),"
        " a AS (INSERT INTO attempts (delivery_id, n, started_ms, duration_ms, http_status,"
        " error_class, error, response_head) SELECT id, attempts, started_ms, duration_ms,"
        " http_status, error_class, error, response_head FROM u"
        " ON CONFLICT (delivery_id, n) DO UPDATE SET started_ms = excluded.started_ms,"
        " duration_ms = excluded.duration_ms, http_status = excluded.http_status,"
        " error_class = excluded.error_class, error = excluded.error,"
        " response_head = excluded.response_head"
        " WHERE EXISTS (SELECT 1 FROM f WHERE f.id = excluded.delivery_id) RETURNING 1),"
        " r AS (UPDATE deliveries AS d SET attempts = u.attempts, attempt_base = d.attempt_base"
        " + CASE WHEN d.state = 'pending' THEN u.attempts - d.attempts ELSE 0 END FROM u"
        " WHERE d.id = u.id AND d.attempts < u.attempts AND d.state <> 'in_flight'"
        " AND NOT EXISTS (SELECT 1 FROM f WHERE f.id = u.id) RETURNING d.id)"
        " SELECT u.k, EXISTS (SELECT 1 FROM f WHERE f.id = u.id),"
        " EXISTS (SELECT 1 FROM r WHERE r.id = u.id) FROM u ORDER BY u.k",
    /* Creates the key's row if missing and locks it either way (ON CONFLICT DO UPDATE does). */
    [S_RATE_LOCK] = "INSERT INTO rate_windows VALUES ($1, 0, 0, 0, 0) ON CONFLICT (key_hash)"
                    " DO UPDATE SET key_hash = excluded.key_hash RETURNING general_start_ms,"
                    " general_count, calls_start_ms, calls_count",
    [S_RATE_SET] = "UPDATE rate_windows SET general_start_ms = $2, general_count = $3,"
                   " calls_start_ms = $4, calls_count = $5 WHERE key_hash = $1",
    [S_RATE_GC] = "DELETE FROM rate_windows WHERE general_start_ms < $1 AND calls_start_ms < $1",
    [S_REPLAY_EVENTS] = "SELECT id FROM events"
                        " WHERE partner_id = $1 AND accepted_ms >= $2 AND accepted_ms <= $3"
                        " ORDER BY accepted_ms, seq LIMIT $4",
};

/* ---- connections and the pool -------------------------------------------------------------- */

struct conn {
    PGconn *pg;
    bool broken;         /* a pipeline went wrong: drop it (conn_put) instead of reusing it */
    bool prepared[S__N]; /* statement i is prepared on this connection as "vh<i>" */
    char sqlstate[6];    /* of the last failed statement, "" when it had none */
    struct conn *next;   /* the next idle connection */
};

struct pg_store {
    struct vh_store base; /* first: a struct vh_store * points here */
    char *url;
    pthread_mutex_t mu;      /* guards idle and n_conns */
    pthread_cond_t cv;       /* signaled when a connection is returned or a slot frees */
    struct conn *idle;       /* connections not borrowed */
    size_t n_conns;          /* open or being opened, borrowed or idle: at most POOL_MAX */
    int64_t rate_gc_ms;      /* when rate windows were last swept (guarded by mu) */
    struct watcher *watcher; /* NULL, or the LISTEN thread of vh_store_watch(_endpoints) */
};

static void watcher_stop(struct watcher *w);

static struct pg_store *to_pg(struct vh_store *st)
{
    return (struct pg_store *)st;
}

/*
 * The first line of a libpq message ("" for NULL), at most `cap` - 1 bytes, in `dst`:
 * messages carry DETAIL and HINT lines that do not belong in a one-line vh_error.
 */
static const char *first_line(const char *msg, char *dst, size_t cap)
{
    size_t n = 0;

    if (!msg)
        msg = "";
    while (msg[n] && msg[n] != '\n' && n + 1 < cap)
        n++;
    memcpy(dst, msg, n);
    dst[n] = '\0';
    return dst;
}

static void conn_close(struct conn *c)
{
    if (!c)
        return;
    PQfinish(c->pg);
    vh_free(c);
}

/* A connection that can go back to the pool: alive, and outside any transaction. */
static bool conn_is_clean(const struct conn *c)
{
    return !c->broken && PQstatus(c->pg) == CONNECTION_OK &&
           PQtransactionStatus(c->pg) == PQTRANS_IDLE;
}

/* Server notices and the text of a lost connection reach the caller as vh_errors, not stderr. */
static void notice_drop(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

/*
 * The length of a password of `url` that `s` starts with, as written in the URL: its
 * userinfo's (`postgres://user:PASSWORD@host`) or a `password=` of its query string; 0 when
 * none.
 */
static size_t password_at(const char *s, const char *url)
{
    const char *p = strstr(url, "://"), *start, *colon, *q, *end;
    size_t n;

    if (!p)
        return 0;
    start = p + 3;
    for (p = start; *p && *p != '@' && *p != '/'; p++)
        ;
    colon = *p == '@' ? memchr(start, ':', (size_t)(p - start)) : NULL;
    n = colon ? (size_t)(p - colon - 1) : 0;
    if (n > 0 && strncmp(s, colon + 1, n) == 0)
        return n;
    for (q = strchr(start, '?'); q; q = end) {
        q++;
        end = strchr(q, '&');
        if (strncmp(q, "password=", 9) != 0)
            continue;
        n = end ? (size_t)(end - q - 9) : strlen(q + 9);
        if (n > 0 && strncmp(s, q + 9, n) == 0)
            return n;
    }
    return 0;
}

/*
 * first_line() of a message about connecting to `url`, with each copy of the URL's password
 * as "***": libpq quotes the URL, or the part of it it could not decode, when it cannot
 * parse one (`invalid percent-encoded token: "pa%zz"`), and a daemon's errors reach its log.
 * Copies stop before one that would not fit whole.
 */
static const char *first_line_masked(const char *msg, const char *url, char *dst, size_t cap)
{
    size_t i = 0, o = 0, n;

    if (!msg)
        msg = "";
    while (msg[i] && msg[i] != '\n' && o + 4 <= cap) {
        n = password_at(msg + i, url);
        if (n > 0) {
            memcpy(dst + o, "***", 3);
            o += 3;
            i += n;
        } else {
            dst[o++] = msg[i++];
        }
    }
    dst[o] = '\0';
    return dst;
}

static int run_cmd(struct conn *c, const char *sql, const char *tag, const char *what,
                   struct vh_error *err);

static int conn_open(const char *url, struct conn **out, struct vh_error *err)
{
    /*
     * Keywords before `dbname` are defaults the URL may override; the ones after it are
     * ours: text goes over the wire as UTF-8, whatever the URL or PGCLIENTENCODING say.
     * The TCP settings bound how long a call waits on a network path that died without a
     * word (a node cut off, a firewall's dropped state): unacknowledged data fails after
     * 30 s (tcp_user_timeout), an idle connection (LISTEN's, the pool's) is probed after
     * 30 s and given up after 3 probes 10 s apart. Without them, a call waited for the
     * kernel's retransmissions, some 15 minutes, before the store could answer 503.
     */
    const char *const keys[] = {"connect_timeout",     "fallback_application_name",
                                "keepalives",          "keepalives_idle",
                                "keepalives_interval", "keepalives_count",
                                "tcp_user_timeout",    "dbname",
                                "client_encoding",     NULL};
    const char *const vals[] = {"10", "vocohook", "1", "30", "10", "3", "30000", url, "UTF8", NULL};
    char line[200];
    struct conn *c;
    int rc;

    c = vh_malloc(sizeof(*c));
    if (!c)
        return vh_error_set(err, VH_ENOMEM, "connect to postgres: out of memory");
    memset(c, 0, sizeof(*c));
    c->pg = PQconnectdbParams(keys, vals, 1);
    if (!c->pg) {
        rc = vh_error_set(err, VH_ENOMEM, "connect to postgres: out of memory");
        goto fail;
    }
    if (PQstatus(c->pg) != CONNECTION_OK) {
        rc = vh_error_set(err, VH_ESTORE, "connect to postgres: %s",
                          first_line_masked(PQerrorMessage(c->pg), url, line, sizeof(line)));
        goto fail;
    }
    PQsetNoticeProcessor(c->pg, notice_drop, NULL);
    if (PQserverVersion(c->pg) < PG_MIN_VERSION) {
        rc = vh_error_set(err, VH_ESTORE,
                          "postgres: server version %d is too old; 10 or newer "
                          "is needed",
                          PQserverVersion(c->pg));
        goto fail;
    }
    rc = run_cmd(c,
                 "SELECT set_config('lock_timeout', '" LOCK_TIMEOUT "', false)"
                 " WHERE current_setting('lock_timeout') = '0'",
                 NULL, "connect to postgres", err);
    if (rc < 0)
        goto fail;
    *out = c;
    return 0;
fail:
    conn_close(c);
    return rc;
}

/* Borrows a connection, opening a new one when none is idle and the pool has room. */
static int conn_get(struct pg_store *s, struct conn **out, struct vh_error *err)
{
    struct conn *c;
    int rc;

    pthread_mutex_lock(&s->mu);
    while (!s->idle && s->n_conns >= POOL_MAX)
        pthread_cond_wait(&s->cv, &s->mu);
    c = s->idle;
    if (c) {
        s->idle = c->next;
        pthread_mutex_unlock(&s->mu);
        c->next = NULL;
        *out = c;
        return 0;
    }
    s->n_conns++;
    pthread_mutex_unlock(&s->mu);

    /* Opened outside the lock: other callers keep using idle connections meanwhile. */
    rc = conn_open(s->url, &c, err);
    if (rc < 0) {
        pthread_mutex_lock(&s->mu);
        s->n_conns--;
        pthread_cond_signal(&s->cv);
        pthread_mutex_unlock(&s->mu);
        return rc;
    }
    *out = c;
    return 0;
}

/*
 * Ends a transaction an error path left open. The first error is already reported; if the
 * ROLLBACK fails too (the connection is gone), conn_put drops the connection.
 */
static void tx_rollback(struct conn *c)
{
    PGTransactionStatusType ts = PQtransactionStatus(c->pg);

    if (ts == PQTRANS_INTRANS || ts == PQTRANS_INERROR)
        PQclear(PQexec(c->pg, "ROLLBACK"));
}

/*
 * Returns a borrowed connection. One that cannot be brought back to a clean state is
 * closed; one whose server went away takes the idle ones with it, since whatever cut it
 * off (a restart, a failover) most likely cut them off too.
 */
static void conn_put(struct pg_store *s, struct conn *c)
{
    struct conn *stale = NULL, *next;
    bool lost;

    tx_rollback(c);
    lost = PQstatus(c->pg) != CONNECTION_OK;
    pthread_mutex_lock(&s->mu);
    if (conn_is_clean(c)) {
        c->next = s->idle;
        s->idle = c;
        c = NULL;
    } else {
        s->n_conns--;
        if (lost) {
            stale = s->idle;
            s->idle = NULL;
            for (next = stale; next; next = next->next)
                s->n_conns--;
        }
    }
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    conn_close(c);
    while (stale) {
        next = stale->next;
        conn_close(stale);
        stale = next;
    }
}

/* ---- queries ----------------------------------------------------------------------------- */

/*
 * The only place a size_t length narrows to the int that libpq takes; a length that does
 * not fit fails the statement instead of wrapping.
 */
static bool len_to_int(size_t n, int *out)
{
    if (n > INT_MAX)
        return false;
    *out = (int)n;
    return true;
}

/*
 * The parameters of one statement, $1 first. Text values are borrowed until the statement
 * has run; integers are formatted into `num`.
 */
struct params {
    const char *val[PARAMS_MAX];
    int len[PARAMS_MAX];
    int fmt[PARAMS_MAX]; /* 0: text, 1: binary */
    char num[PARAMS_MAX][24];
    int n;
    bool too_big; /* a value that libpq cannot take */
};

static void p_init(struct params *p)
{
    p->n = 0;
    p->too_big = false;
}

static int p_next(struct params *p)
{
    if (p->n >= PARAMS_MAX) {
        p->too_big = true; /* a programming error, reported like a value too large */
        return -1;
    }
    return p->n++;
}

/* A C string in text format, or SQL NULL for NULL. */
static void p_text(struct params *p, const char *s)
{
    int i = p_next(p);

    if (i < 0)
        return;
    p->val[i] = s;
    p->len[i] = 0;
    p->fmt[i] = 0;
}

/* `len` bytes in binary format: bytea, or text that is not NUL-terminated. */
static void p_bytes(struct params *p, const void *data, size_t len)
{
    int i = p_next(p), n;

    if (i < 0)
        return;
    if (!len_to_int(len, &n)) {
        p->too_big = true;
        n = 0;
    }
    /* A zero-length value must still be non-NULL, or it would be SQL NULL. */
    p->val[i] = data ? (const char *)data : "";
    p->len[i] = n;
    p->fmt[i] = 1;
}

static void p_int(struct params *p, int64_t v)
{
    int i = p_next(p);

    if (i < 0)
        return;
    snprintf(p->num[i], sizeof(p->num[i]), "%lld", (long long)v);
    p->val[i] = p->num[i];
    p->len[i] = 0;
    p->fmt[i] = 0;
}

/* `v`, or SQL NULL for 0 (the columns where 0 means "not set"). */
static void p_int_or_null(struct params *p, int64_t v)
{
    if (v == 0)
        p_text(p, NULL);
    else
        p_int(p, v);
}

static void p_bool(struct params *p, bool v)
{
    p_text(p, v ? "true" : "false");
}

static const char *sqlstate_of(const PGresult *res)
{
    const char *s = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;

    return s ? s : "";
}

/*
 * Runs statement `id`, preparing it on this connection first if needed. Returns the
 * result, successful or not (NULL when libpq could not make one: no memory, or the
 * connection is gone); the caller PQclear()s it. Remembers the SQLSTATE of a failure.
 */
/*
 * Prepares statement `id` as "vh<id>" on `c` unless it already is (each connection
 * prepares each statement once, on first use; pipeline mode cannot, so it prepares first).
 * False on failure, with the failed result (NULL when libpq ran out of memory) in `*failed`.
 */
static bool prepare_raw(struct conn *c, enum stmt_id id, PGresult **failed)
{
    char name[16];
    PGresult *res;

    if (c->prepared[id])
        return true;
    snprintf(name, sizeof(name), "vh%d", (int)id);
    res = PQprepare(c->pg, name, stmt_sql[id], 0, NULL);
    if (res && PQresultStatus(res) == PGRES_COMMAND_OK) {
        PQclear(res);
        c->prepared[id] = true;
        return true;
    }
    snprintf(c->sqlstate, sizeof(c->sqlstate), "%s", sqlstate_of(res));
    *failed = res;
    return false;
}

static PGresult *exec_raw(struct conn *c, enum stmt_id id, const struct params *p)
{
    char name[16];
    PGresult *res;

    snprintf(name, sizeof(name), "vh%d", (int)id);
    c->sqlstate[0] = '\0';
    if (!prepare_raw(c, id, &res))
        return res;
    res = PQexecPrepared(c->pg, name, p ? p->n : 0, p ? p->val : NULL, p ? p->len : NULL,
                         p ? p->fmt : NULL, 1);
    if (!res || (PQresultStatus(res) != PGRES_TUPLES_OK && PQresultStatus(res) != PGRES_COMMAND_OK))
        snprintf(c->sqlstate, sizeof(c->sqlstate), "%s", sqlstate_of(res));
    return res;
}

static bool res_ok(const PGresult *res)
{
    return res &&
           (PQresultStatus(res) == PGRES_TUPLES_OK || PQresultStatus(res) == PGRES_COMMAND_OK);
}

/*
 * Reports a failed statement: the server's primary message, or libpq's first line. Without
 * a result and with the connection still up, libpq ran out of memory.
 */
static int res_fail(const struct conn *c, const PGresult *res, const char *what,
                    struct vh_error *err)
{
    const char *msg = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    char line[200];

    if (!res && PQstatus(c->pg) == CONNECTION_OK)
        return vh_error_set(err, VH_ENOMEM, "%s: out of memory", what);
    if (!msg && res)
        msg = PQresultErrorMessage(res);
    if (!msg || !*msg)
        msg = PQerrorMessage(c->pg);
    first_line(msg, line, sizeof(line));
    return vh_error_set(err, VH_ESTORE, "%s: %s", what, line[0] ? line : "unknown error");
}

/* Every column is a type the readers below know, so they never misread one. */
static int res_check_types(const PGresult *res, const char *what, struct vh_error *err)
{
    int i, n = PQnfields(res);

    for (i = 0; i < n; i++) {
        switch (PQftype(res, i)) {
        case OID_BOOL:
        case OID_BYTEA:
        case OID_INT8:
        case OID_INT2:
        case OID_INT4:
        case OID_TEXT:
            break;
        default:
            return vh_error_set(err, VH_ESTORE, "%s: column %d has unexpected type %u", what, i,
                                (unsigned)PQftype(res, i));
        }
    }
    return 0;
}

/*
 * Runs statement `id` and reports any failure. On success stores the result in `*out`
 * (PQclear it) when `out` is not NULL, else clears it.
 */
static int run(struct conn *c, enum stmt_id id, const struct params *p, PGresult **out,
               const char *what, struct vh_error *err)
{
    PGresult *res;
    int rc;

    if (p && p->too_big)
        return vh_error_set(err, VH_ETOOBIG, "%s: a value is too large", what);
    res = exec_raw(c, id, p);
    if (!res_ok(res)) {
        rc = res_fail(c, res, what, err);
        PQclear(res);
        return rc;
    }
    rc = res_check_types(res, what, err);
    if (rc < 0 || !out) {
        PQclear(res);
        return rc;
    }
    *out = res;
    return 0;
}

/* Rows a write statement changed (its command tag's count). */
static int64_t res_changes(const PGresult *res)
{
    const char *t = PQcmdTuples((PGresult *)(uintptr_t)res);

    return t && *t ? strtoll(t, NULL, 10) : 0;
}

/* Runs a statement that changes rows; `*changes` (optional) says how many. */
static int run_write(struct conn *c, enum stmt_id id, const struct params *p, int64_t *changes,
                     const char *what, struct vh_error *err)
{
    PGresult *res = NULL;
    int rc = run(c, id, p, &res, what, err);

    if (rc == 0 && changes)
        *changes = res_changes(res);
    PQclear(res);
    return rc;
}

/* Runs SQL outside the statement table (BEGIN, COMMIT, the migration lock); no result kept. */
static int run_cmd(struct conn *c, const char *sql, const char *tag, const char *what,
                   struct vh_error *err)
{
    PGresult *res = PQexec(c->pg, sql);
    int rc = 0;

    c->sqlstate[0] = '\0';
    if (!res_ok(res)) {
        snprintf(c->sqlstate, sizeof(c->sqlstate), "%s", sqlstate_of(res));
        rc = res_fail(c, res, what, err);
    } else if (tag && strcmp(PQcmdStatus(res), tag) != 0) {
        /* COMMIT of a transaction that failed answers ROLLBACK: nothing was written. */
        rc = vh_error_set(err, VH_ESTORE, "%s: the transaction was rolled back", what);
    }
    PQclear(res);
    return rc;
}

static int tx_begin_write(struct conn *c, const char *what, struct vh_error *err)
{
    return run_cmd(c, "BEGIN", NULL, what, err);
}

/* A read of several statements that must agree: one snapshot, no writes. */
static int tx_begin_read(struct conn *c, const char *what, struct vh_error *err)
{
    return run_cmd(c, "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY", NULL, what, err);
}

static int tx_commit(struct conn *c, const char *what, struct vh_error *err)
{
    return run_cmd(c, "COMMIT", "COMMIT", what, err);
}

/* A deadlock or serialization failure: the whole transaction may simply run again. */
static bool tx_is_retryable(const struct conn *c)
{
    return strcmp(c->sqlstate, "40P01") == 0 || strcmp(c->sqlstate, "40001") == 0;
}

static bool state_is(const struct conn *c, const char *sqlstate)
{
    return strcmp(c->sqlstate, sqlstate) == 0;
}

/* The constraint a failed result names ("" when none). */
static const char *res_constraint(const PGresult *res)
{
    const char *s = res ? PQresultErrorField(res, PG_DIAG_CONSTRAINT_NAME) : NULL;

    return s ? s : "";
}

/* ---- reading columns ---------------------------------------------------------------------- */

/* One row of a result, and the context for messages. */
struct row {
    const PGresult *res;
    int i;
    const char *what;
};

static bool col_is_null(const struct row *r, int col)
{
    return PQgetisnull(r->res, r->i, col) != 0;
}

/* An integer or boolean column (types checked by run); NULL reads as 0. */
static int64_t col_int(const struct row *r, int col)
{
    const unsigned char *v;
    uint64_t u = 0;
    int len, k;

    if (col_is_null(r, col))
        return 0;
    v = (const unsigned char *)PQgetvalue(r->res, r->i, col);
    len = PQgetlength(r->res, r->i, col);
    if (PQftype(r->res, col) == OID_BOOL)
        return len == 1 && v[0] != 0;
    if (len != 2 && len != 4 && len != 8)
        return 0;
    for (k = 0; k < len; k++)
        u = u << 8 | v[k];
    /* Sign-extend the big-endian two's complement value of `len` bytes. */
    if (len < 8 && (v[0] & 0x80))
        u |= ~UINT64_C(0) << (8 * len);
    return (int64_t)u;
}

/*
 * Copies a text column into a fixed field ("" for NULL). A value that does not fit means
 * the database was written by something else: VH_ESTORE, never truncation.
 */
static int col_text(const struct row *r, int col, char *dst, size_t cap, const char *name,
                    struct vh_error *err)
{
    const char *t;
    int n;

    if (col_is_null(r, col)) {
        dst[0] = '\0';
        return 0;
    }
    t = PQgetvalue(r->res, r->i, col);
    n = PQgetlength(r->res, r->i, col);
    if (n < 0 || (size_t)n >= cap || memchr(t, '\0', (size_t)n))
        return vh_error_set(err, VH_ESTORE, "%s: stored %s is %d bytes, over the %zu allowed",
                            r->what, name, n, cap - 1);
    memcpy(dst, t, (size_t)n);
    dst[n] = '\0';
    return 0;
}

/* Appends a bytea column (NULL reads as empty) to `b`. */
static int col_blob(const struct row *r, int col, struct vh_buf *b, const char *name,
                    struct vh_error *err)
{
    int n, rc;

    if (col_is_null(r, col))
        return 0;
    n = PQgetlength(r->res, r->i, col);
    if (n <= 0)
        return 0;
    rc = vh_buf_add(b, PQgetvalue(r->res, r->i, col), (size_t)n);
    if (rc < 0)
        return vh_error_set(err, rc, "%s: reading %s: %s", r->what, name, vh_strerror(rc));
    return 0;
}

/* An attempt count column; a value out of range means the database was written elsewhere. */
static int col_count(const struct row *r, int col, unsigned *out, const char *name,
                     struct vh_error *err)
{
    int64_t v = col_int(r, col);

    if (v < 0 || v > INT32_MAX)
        return vh_error_set(err, VH_ESTORE, "%s: stored %s %lld is out of range", r->what, name,
                            (long long)v);
    *out = (unsigned)v;
    return 0;
}

/* Runs a statement that returns one integer (count(*)). */
static int run_int(struct conn *c, enum stmt_id id, const struct params *p, int64_t *out,
                   const char *what, struct vh_error *err)
{
    PGresult *res = NULL;
    struct row r;
    int rc;

    rc = run(c, id, p, &res, what, err);
    if (rc < 0)
        return rc;
    if (PQntuples(res) < 1 || PQnfields(res) < 1) {
        rc = vh_error_set(err, VH_ESTORE, "%s: no result", what);
    } else {
        r.res = res;
        r.i = 0;
        r.what = what;
        *out = col_int(&r, 0);
    }
    PQclear(res);
    return rc;
}

/* A new zeroed array for the `n` rows of a result (NULL when n is 0). */
static int array_for(size_t n, size_t elem, void **out, const char *what, struct vh_error *err)
{
    void *p;

    *out = NULL;
    if (n == 0)
        return 0;
    if (n > SIZE_MAX / elem)
        return vh_error_set(err, VH_ENOMEM, "%s: result too large", what);
    p = vh_malloc(n * elem);
    if (!p)
        return vh_error_set(err, VH_ENOMEM, "%s: out of memory", what);
    memset(p, 0, n * elem);
    *out = p;
    return 0;
}

static int row_partner(const struct row *r, struct vh_partner *p, struct vh_error *err)
{
    int rc;

    rc = col_text(r, 0, p->id, sizeof(p->id), "partner id", err);
    if (rc == 0)
        rc = col_text(r, 1, p->name, sizeof(p->name), "partner name", err);
    if (rc < 0)
        return rc;
    p->created_ms = col_int(r, 2);
    return 0;
}

/* Reads the EP_COLS of a row. */
static int row_endpoint(const struct row *r, struct vh_endpoint *ep, struct vh_error *err)
{
    char status[16];
    int rc;

    rc = col_text(r, 0, ep->id, sizeof(ep->id), "endpoint id", err);
    if (rc == 0)
        rc = col_text(r, 1, ep->partner_id, sizeof(ep->partner_id), "partner id", err);
    if (rc == 0)
        rc = col_text(r, 2, ep->label, sizeof(ep->label), "label", err);
    if (rc == 0)
        rc = col_text(r, 3, ep->url, sizeof(ep->url), "url", err);
    if (rc == 0)
        rc = col_text(r, 4, ep->secret, sizeof(ep->secret), "secret", err);
    if (rc == 0)
        rc = col_text(r, 9, status, sizeof(status), "last delivery status", err);
    if (rc == 0)
        rc = col_text(r, 10, ep->retry_schedule, sizeof(ep->retry_schedule), "retry schedule", err);
    if (rc < 0)
        return rc;
    ep->enabled = col_int(r, 5) != 0;
    ep->created_ms = col_int(r, 6);
    ep->updated_ms = col_int(r, 7);
    ep->last_delivery_ms = col_int(r, 8); /* NULL reads as 0: never */
    ep->timeout_ms = col_int(r, 11);      /* NULL reads as 0: the server's */
    if (strcmp(status, "succeeded") == 0)
        ep->last_delivery_status = VH_OUTCOME_SUCCEEDED;
    else if (strcmp(status, "failed") == 0)
        ep->last_delivery_status = VH_OUTCOME_FAILED;
    else
        ep->last_delivery_status = VH_OUTCOME_NONE;
    return 0;
}

/* Reads the CALL_COLS of a row into a zeroed `rec`; on failure releases it. */
static int row_call(const struct row *r, struct vh_call_rec *rec, struct vh_error *err)
{
    char status[16];
    int rc;

    vh_buf_init(&rec->body, VH__STORE_BODY_MAX);
    rc = col_text(r, 0, rec->event_id, sizeof(rec->event_id), "event id", err);
    if (rc == 0)
        rc = col_text(r, 1, rec->partner_id, sizeof(rec->partner_id), "partner id", err);
    if (rc == 0)
        rc = col_text(r, 2, rec->session_id, sizeof(rec->session_id), "session id", err);
    if (rc == 0)
        rc = col_text(r, 3, rec->call_id, sizeof(rec->call_id), "call id", err);
    if (rc == 0)
        rc = col_text(r, 4, status, sizeof(status), "call status", err);
    if (rc < 0)
        goto out;
    rec->call_status = 0;
    if (status[0]) {
        rec->call_status = (int)vh_call_status_from_name(status, strlen(status));
        if (!rec->call_status) {
            rc = vh_error_set(err, VH_ESTORE, "%s: unknown stored call status", r->what);
            goto out;
        }
    }
    rec->accepted_ms = col_int(r, 5);
    if (!col_is_null(r, 6)) {
        rec->recording_key =
            vh_strndup(PQgetvalue(r->res, r->i, 6), (size_t)PQgetlength(r->res, r->i, 6));
        if (!rec->recording_key) {
            rc = vh_error_set(err, VH_ENOMEM, "%s: out of memory", r->what);
            goto out;
        }
    }
    rc = col_blob(r, 7, &rec->body, "body", err);
    if (rc == 0 && rec->body.len == 0)
        rc = vh_error_set(err, VH_ESTORE, "%s: stored body is empty", r->what);
out:
    if (rc < 0)
        vh_call_rec_release(rec);
    return rc;
}

/* ---- migrations ---------------------------------------------------------------------------- */

/*
 * Brings the database to SCHEMA_VERSION in one transaction under the migration lock. The
 * version is read after the lock is held (READ COMMITTED: that statement sees every
 * migration committed before), so of several nodes opening a new database at once, one
 * migrates and the others find it done.
 */
static int migrate(struct conn *c, struct vh_error *err)
{
    const char *what = "migrate the postgres schema";
    int64_t exists = 0, version = 0, tables = 0;
    struct params p;
    char line[200];
    PGresult *res;
    int rc, step;

    rc = tx_begin_write(c, what, err);
    /*
     * A node waits for another's migration, and a migration for the transactions in its
     * way, however long they take: no lock_timeout here.
     */
    if (rc == 0)
        rc = run_cmd(c, "SET LOCAL lock_timeout = 0", NULL, what, err);
    if (rc == 0)
        rc = run_cmd(c, "SELECT pg_advisory_xact_lock(" MIGRATE_LOCK_KEY ")", NULL, what, err);
    if (rc == 0)
        rc = run_int(c, S_SCHEMA_EXISTS, NULL, &exists, what, err);
    if (rc == 0 && exists)
        rc = run_int(c, S_SCHEMA_VERSION, NULL, &version, what, err);
    if (rc < 0)
        goto out;
    if (!exists) {
        /* Someone else's tables: do not add to them. */
        rc = run_int(c, S_FOREIGN_TABLES, NULL, &tables, what, err);
        if (rc < 0)
            goto out;
        if (tables != 0) {
            rc = vh_error_set(err, VH_ESTORE,
                              "open postgres store: not a vocohook database (its schema has "
                              "tables but no vocohook_schema)");
            goto out;
        }
        rc = run_cmd(c,
                     "CREATE TABLE vocohook_schema (\n"
                     "    one     BOOLEAN PRIMARY KEY DEFAULT true CHECK (one),\n"
                     "    version BIGINT NOT NULL\n"
                     ");\n"
                     "INSERT INTO vocohook_schema (version) VALUES (0)",
                     NULL, what, err);
        if (rc < 0)
            goto out;
    }
    if (version > SCHEMA_VERSION) {
        rc = vh_error_set(err, VH_ESTORE,
                          "open postgres store: schema version %lld is newer than this build "
                          "supports (%d); upgrade vocohook",
                          (long long)version, SCHEMA_VERSION);
        goto out;
    }
    if (version < 0) {
        rc = vh_error_set(err, VH_ESTORE, "open postgres store: bad schema version %lld",
                          (long long)version);
        goto out;
    }
    for (step = (int)version; step < SCHEMA_VERSION; step++) {
        res = PQexec(c->pg, migrations[step]);
        if (!res || PQresultStatus(res) != PGRES_COMMAND_OK) {
            rc = vh_error_set(err, VH_ESTORE, "migrate the postgres schema to version %d: %s",
                              step + 1,
                              first_line(res ? PQresultErrorMessage(res) : PQerrorMessage(c->pg),
                                         line, sizeof(line)));
            PQclear(res);
            goto out;
        }
        PQclear(res);
    }
    if (version < SCHEMA_VERSION) {
        p_init(&p);
        p_int(&p, SCHEMA_VERSION);
        rc = run_write(c, S_SCHEMA_SET, &p, NULL, what, err);
        if (rc < 0)
            goto out;
    }
    rc = tx_commit(c, what, err);
out:
    tx_rollback(c);
    return rc;
}

/* ---- open and close ------------------------------------------------------------------------- */

static void pg_close(struct vh_store *st)
{
    struct pg_store *s = to_pg(st);
    struct conn *c;

    watcher_stop(s->watcher);
    /* The contract: no call is running, so every connection is idle. */
    while (s->idle) {
        c = s->idle;
        s->idle = c->next;
        conn_close(c);
    }
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    vh_free(s->url);
    vh_free(s);
}

static int pg_open(const char *url, struct vh_store **out, struct vh_error *err)
{
    struct pg_store *s = NULL;
    struct conn *c = NULL;
    bool mu_ok = false, cv_ok = false;
    int rc;

    if (!PQisthreadsafe())
        return vh_error_set(err, VH_ESTORE, "postgres: libpq was built without threads");
    s = vh_malloc(sizeof(*s));
    if (!s)
        return vh_error_set(err, VH_ENOMEM, "open postgres store: out of memory");
    memset(s, 0, sizeof(*s));
    s->base.ops = &vh__store_postgres_ops;
    s->url = vh_strndup(url, strlen(url));
    if (!s->url) {
        rc = vh_error_set(err, VH_ENOMEM, "open postgres store: out of memory");
        goto fail;
    }
    mu_ok = pthread_mutex_init(&s->mu, NULL) == 0;
    cv_ok = mu_ok && pthread_cond_init(&s->cv, NULL) == 0;
    if (!cv_ok) {
        rc = vh_error_set(err, VH_ENOMEM, "open postgres store: cannot create a mutex");
        goto fail;
    }
    rc = conn_open(url, &c, err);
    if (rc < 0)
        goto fail;
    rc = migrate(c, err);
    if (rc < 0)
        goto fail;
    s->idle = c;
    s->n_conns = 1;
    *out = &s->base;
    return 0;
fail:
    conn_close(c);
    if (cv_ok)
        pthread_cond_destroy(&s->cv);
    if (mu_ok)
        pthread_mutex_destroy(&s->mu);
    vh_free(s->url);
    vh_free(s);
    return rc;
}

static int pg_schema_version(struct vh_store *st, int *out, struct vh_error *err)
{
    struct pg_store *s = to_pg(st);
    struct conn *c;
    int64_t v = 0;
    int rc;

    rc = conn_get(s, &c, err);
    if (rc < 0)
        return rc;
    rc = run_int(c, S_SCHEMA_VERSION, NULL, &v, "read schema version", err);
    if (rc == 0 && (v < 0 || v > INT_MAX))
        rc = vh_error_set(err, VH_ESTORE, "read schema version: bad value %lld", (long long)v);
    if (rc == 0)
        *out = (int)v;
    conn_put(s, c);
    return rc;
}

/* ---- partners ------------------------------------------------------------------------------ */

/* Inserts an api key; a key already in use (of any partner) is VH_ECONFLICT. */
static int key_insert(struct conn *c, const char *key_hash, const char *partner_id, int64_t now_ms,
                      const char *what, struct vh_error *err)
{
    struct params p;
    PGresult *res;
    int rc = 0;

    p_init(&p);
    p_text(&p, key_hash);
    p_text(&p, partner_id);
    p_int(&p, now_ms);
    res = exec_raw(c, S_KEY_INSERT, &p);
    if (state_is(c, "23505"))
        rc = vh_error_set(err, VH_ECONFLICT, "%s: the api key is already in use", what);
    else if (!res_ok(res))
        rc = res_fail(c, res, what, err);
    PQclear(res);
    return rc;
}

static int pg_partner_create(struct vh_store *st, const char *id, const char *name,
                             const char *key_hash, int64_t now_ms, struct vh_partner *out,
                             struct vh_error *err)
{
    struct pg_store *s = to_pg(st);
    char what[WHAT_MAX];
    struct params p;
    struct conn *c;
    int rc;

    snprintf(what, sizeof(what), "create partner '%s'", name);
    rc = conn_get(s, &c, err);
    if (rc < 0)
        return rc;
    rc = tx_begin_write(c, what, err);
    if (rc < 0)
        goto out;
    p_init(&p);
    p_text(&p, id);
    p_text(&p, name);
    p_int(&p, now_ms);
    rc = run_write(c, S_PARTNER_INSERT, &p, NULL, what, err);
    if (rc == 0)
        rc = key_insert(c, key_hash, id, now_ms, what, err);
    if (rc == 0)
        rc = tx_commit(c, what, err);
    if (rc < 0)
        goto out;
    snprintf(out->id, sizeof(out->id), "%s", id);
    snprintf(out->name, sizeof(out->name), "%s", name);
    out->created_ms = now_ms;
out:
    conn_put(s, c);
    return rc;
}

static int pg_partner_list(struct vh_store *st, struct vh_partner **out, size_t *n,
                           struct vh_error *err)
{
    struct pg_store *s = to_pg(st);
    const char *what = "list partners";
    struct vh_partner *arr = NULL;
    PGresult *res = NULL;
    struct row r = {NULL, 0, what};
    size_t len = 0;
    void *mem;
    struct conn *c;
    int rc;

    rc = conn_get(s, &c, err);
    if (rc < 0)
        return rc;
    rc = run(c, S_PARTNER_LIST, NULL, &res, what, err);
    conn_put(s, c);
    if (rc < 0)
        return rc;
    r.res = res;
    rc = array_for((size_t)PQntuples(res), sizeof(*arr), &mem, what, err);
    arr = mem;
    for (r.i = 0; rc == 0 && r.i < PQntuples(res); r.i++) {
        rc = row_partner(&r, &arr[len], err);
        if (rc == 0)
            len++;
    }
    PQclear(res);
    if (rc < 0) {
        vh_free(arr);
        return rc;
    }
    *out = arr;
    *n = len;
    return 0;
}

/* Reads one partner by id (locked against concurrent writers when `id` says so). */
static int partner_lookup(struct conn *c, enum stmt_id sid, const char *id, struct vh_partner *out,
                          const char *what, struct vh_error *err)
{
    PGresult *res = NULL;
    struct params p;
    struct row r = {NULL, 0, what};
    int rc;

    p_init(&p);
    p_text(&p, id);
    rc = run(c, sid, &p, &res, what, err);
    if (rc < 0)
        return rc;
    r.res = res;
    if (PQntuples(res) == 0)
        rc = vh_error_set(err, VH_ENOTFOUND, "partner '%s' not found", id);
    else
        rc = row_partner(&r, out, err);
    PQclear(res);
    return rc;
}

static int pg_partner_get(struct vh_store *st, const char *id, struct vh_partner *out,
                          struct vh_error *err)
{
    struct pg_store *s = to_pg(st);
    char what[WHAT_MAX];
    struct conn *c;
    int rc;

    snprintf(what, sizeof(what), "get partner '%s'", id);
    rc = conn_get(s, &c, err);
    if (rc < 0)
        return rc;
    rc = partner_lookup(c, S_PARTNER_GET, id, out, what, err);
    conn_put(s, c);
    return rc;
}

/*
 * The partner row is locked first: two rotations at once then run one after the other,
 * and the second revokes the first's key (READ COMMITTED: its UPDATE sees that key), so
 * exactly one key stays live.
 */
static int pg_partner_rotate_key(struct vh_store *st, const char *id, const char *key_hash,
                                 int64_t now_ms, struct vh_error *err)
{
    struct pg_store *s = to_pg(st);
    struct vh_partner partner;
    char what[WHAT_MAX];
    struct params p;
    struct conn *c;
    int rc;

    snprintf(what, sizeof(what), "rotate key of partner '%s'", id);
    rc = conn_get(s, &c, err);
    if (rc < 0)
        return rc;
    rc = tx_begin_write(c, what, err);
    if (rc == 0)
        rc = partner_lookup(c, S_PARTNER_LOCK, id, &partner, what, err);
    if (rc == 0) {
        p_init(&p);
        p_text(&p, id);
        p_int(&p, now_ms);
        rc = run_write(c, S_KEY_REVOKE_ALL, &p, NULL, what, err);
    }
    if (rc == 0)
        rc = key_insert(c, key_hash, id, now_ms, what, err);
    if (rc == 0)
        rc = tx_commit(c, what, err);
    conn_put(s, c);
    return rc;
}

static int pg_partner_by_key(struct vh_store *st, const char *key_hash, struct vh_partner *out,
                             char stored_hash[VH_SHA256_HEX_LEN + 1], struct vh_error *err)
{
    struct pg_store *s = to_pg(st);
    const char *what = "find partner by api key";
    PGresult *res = NULL;
    struct row r = {NULL, 0, what};
    struct params p;
    struct conn *c;
    int rc;

    rc = conn_get(s, &c, err);
    if (rc < 0)
        return rc;
    p_init(&p);
    p_text(&p, key_hash);
    rc = run(c, S_PARTNER_BY_KEY, &p, &res, what, err);
    conn_put(s, c);
    if (rc < 0)
        return rc;
    r.res = res;
    if (PQntuples(res) == 0)
        rc = vh_error_set(err, VH_ENOTFOUND, "api key not found");
    else
        rc = row_partner(&r, out, err);
    if (rc == 0)
        rc = col_text(&r, 3, stored_hash, VH_SHA256_HEX_LEN + 1, "key hash", err);
    PQclear(res);
    return rc;
}

/* ---- endpoints ----------------------------------------------------------------------------- */

/* VH_ECONFLICT when another live endpoint of the partner (not `self_id`) has `label`. */
static int label_check(struct conn *c, const char *partner_id, const char *label,
                       const char *self_id, const char *what, struct vh_error *err)
{
    PGresult *res = NULL;
    struct params p;
    int rc;

    p_init(&p);
    p_text(&p, partner_id);
    p_text(&p, label);
    p_text(&p, self_id);
    rc = run(c, S_EP_LABEL_TAKEN, &p, &res, what, err);
    if (rc == 0 && PQntuples(res) > 0)
        rc = vh_error_set(err, VH_ECONFLICT, "label '%s' is already in use", label);
    PQclear(res);
    return rc;
}

/* Cancels the endpoint's pending and in-flight deliveries, in one statement (S_DLV_CANCEL). */
static int cancel_pending(struct conn *c, const char *endpoint_id, int64_t now_ms, const char *what,
                          struct vh_error *err)
{
    struct params p;

    p_init(&p);
    p_text(&p, endpoint_id);
    p_int(&p, now_ms);
    return run_write(c, S_DLV_CANCEL, &p, NULL, what, err);
}

/*
 * The endpoint's fields as S_EP_INSERT's $3.. or S_EP_UPDATE's $3.. take them (label, url,
 * secret, enabled, times, overrides); `created` adds created_ms for an insert.
 */
static void p_endpoint(struct params *p, const struct vh_endpoint *ep, bool created)
{
    p_text(p, ep->label);
    p_text(p, ep->url);
    p_text(p, ep->secret);
    p_bool(p, ep->enabled);
    if (created)
        p_int(p, ep->created_ms);
    p_int(p, ep->updated_ms);
    p_text(p, ep->retry_schedule[0] ? ep->retry_schedule : NULL);
    p_int_or_null(p, ep->timeout_ms);
}

/* Maps a failed endpoint insert or update: the unique constraints have their own messages. */
static int endpoint_write_fail(struct conn *c, const PGresult *res, const struct vh_endpoint *ep,
                               const char *what, struct vh_error *err)
{
    const char *constraint = res_constraint(res);

    if (state_is(c, "23505") && strcmp(constraint, "endpoints_label") == 0)
        return vh_error_set(err, VH_ECONFLICT, "label '%s' is already in use", ep->label);
    if (state_is(c, "23505") && strcmp(constraint, "endpoints_pkey") == 0)
        return vh_error_set(err, VH_ECONFLICT, "endpoint '%s' already exists", ep->id);
    if (state_is(c, "23503"))
        return vh_error_set(err, VH_ENOTFOUND, "partner '%s' not found", ep->partner_id);
    return res_fail(c, res, what, err);
}

/*
 * The partner row is locked first, so concurrent creates for one partner run one at a
 * time: the count and label checks see every endpoint committed before them, and the
 * limit holds however many callers race.
 */
static int pg_endpoint_create(struct vh_store *st, const struct vh_endpoint *ep, int max,
                              struct vh_error *err)
{
    struct pg_store *s = to_pg(st);
    struct vh_partner partner;
    char what[WHAT_MAX];
    int64_t count = 0;
    PGresult *res;
    struct params p;
    struct conn *c;
    int rc;

    snprintf(what, sizeof(what), "create endpoint '%s'", ep->label);
    rc = conn_get(s, &c, err);
    if (rc < 0)
        return rc;
    rc = tx_begin_write(c, what, err);
    if (rc == 0)
        rc = partner_lookup(c, S_PARTNER_LOCK, ep->partner_id, &partner, what, err);
    if (rc == 0) {
        p_init(&p);
        p_text(&p, ep->partner_id);
        rc = run_int(c, S_EP_COUNT, &p, &count, what, err);
    }
    if (rc == 0 && count >= max)
        rc = vh_error_set(err, VH_ECONFLICT, "at most %d endpoints per partner", max);
    /* A new id matches no row, so every live endpoint counts against the label. */
    if (rc == 0)
        rc = label_check(c, ep->partner_id, ep->label, ep->id, what, err);
    if (rc < 0)
        goto out;
    p_init(&p);
    p_text(&p, ep->id);
    p_text(&p, ep->partner_id);
    p_endpoint(&p, ep, true);
    res = exec_raw(c, S_EP_INSERT, &p);
    if (!res_ok(res))
        rc = endpoint_write_fail(c, res, ep, what, err);
    PQclear(res);
    if (rc == 0)
        rc = tx_commit(c, what, err);
out:
    conn_put(s, c);
    return rc;
}

/* One endpoint by (partner, id) or (partner, label). */
static int endpoint_lookup(struct conn *c, enum stmt_id sid, const char *partner_id,
                           const char *key, struct vh_endpoint *out, const char *what,
                           struct vh_error *err)
{
    PGresult *res = NULL;
    struct row r = {NULL, 0, what};
    struct params p;
    int rc;

    p_init(&p);
    p_text(&p, partner_id);
    p_text(&p, key);
    rc = run(c, sid, &p, &res, what, err);
    if (rc < 0)
        return rc;
    r.res = res;
    if (PQntuples(res) == 0)
        rc = vh_error_set(err, VH_ENOTFOUND, "endpoint '%s' not found", key);
    else
        rc = row_endpoint(&r, out, err);
    PQclear(res);
    return rc;
}

static int pg_endpoint_get(struct vh_store *st, const char *partner_id, const char *id,
                           struct vh_endpoint *out, struct vh_error *err)
{
    struct pg_store *s = to_pg(st);
    char what[WHAT_MAX];
    struct conn *c;
    int rc;

    snprintf(what, sizeof(what), "get endpoint '%s'", id);
    rc = conn_get(s, &c, err);
    if (rc < 0)
        return rc;
    rc = endpoint_lookup(c, S_EP_GET, partner_id, id, out, what, err);
    conn_put(s, c);
    return rc;
}

static int pg_endpoint_get_by_label(struct vh_store *st, const char *partner_id, const char *label,
                                    struct vh_endpoint *out, struct vh_error *err)
{
    struct pg_store *s = to_pg(st);
    char what[WHAT_MAX];
    struct conn *c;
    int rc;

    snprintf(what, sizeof(what), "get endpoint '%s'", label);
    rc = conn_get(s, &c, err);
    if (rc < 0)
        return rc;
    rc = endpoint_lookup(c, S_EP_GET_BY_LABEL, partner_id, label, out, what, err);
    conn_put(s, c);
    return rc;
}

static int pg_endpoint_list(struct vh_store *st, const char *partner_id, struct vh_endpoint **out,
                            size_t *n, struct vh_error *err)
{
    struct pg_store *s = to_pg(st);
    struct vh_endpoint *arr = NULL;
    char what[WHAT_MAX];
    PGresult *res = NULL;
    struct row r = {NULL, 0, what};
    struct params p;
    size_t len = 0;
    struct conn *c;
    void *mem;
    int rc;

    snprintf(what, sizeof(what), "list endpoints of partner '%s'", partner_id);
    rc = conn_get(s, &c, err);
    if (rc < 0)
        return rc;
    p_init(&p);
    p_text(&p, partner_id);
    rc = run(c, S_EP_LIST, &p, &res, what, err);
    conn_put(s, c);
    if (rc < 0)
        return rc;
    r.res = res;
    rc = array_for((size_t)PQntuples(res), sizeof(*arr), &mem, what, err);
    arr = mem;
    for (r.i = 0; rc == 0 && r.i < PQntuples(res); r.i++) {
        rc = row_endpoint(&r, &arr[len], err);
        if (rc == 0)
            len++;
    }
    PQclear(res);
    if (rc < 0) {
        vh_free(arr);
        return rc;
    }
    *out = arr;
    *n = len;
    return 0;
}

/*
 * Tells every node's watcher, at this transaction's commit, that endpoint `id` changed in a
 * way that its queued attempts must not go out as claimed (url, secret, enabled, deleted).
 */
static int endpoint_notify(struct conn *c, const char *id, const char *what, struct vh_error *err)
{
    PGresult *res = NULL;
    struct params p;
    int rc;

    p_init(&p);
    p_text(&p, id);
    rc = run(c, S_EP_NOTIFY, &p, &res, what, err);
    PQclear(res);
    return rc;
}

/* True when a queued attempt claimed with `old` must not be made: see endpoint_notify. */
static bool endpoint_moved(const struct vh_endpoint *old, const struct vh_endpoint *ep)
{
    return strcmp(old->url, ep->url) != 0 || strcmp(old->secret, ep->secret) != 0 ||
           old->enabled != ep->enabled;
}

static int pg_endpoint_update(struct vh_store *st, const struct vh_endpoint *seen,
                              const struct vh_endpoint *ep, struct vh_error *err)
{
    struct pg_store *s = to_pg(st);
    struct vh_endpoint old;
    char what[WHAT_MAX];
    int64_t changes = 0;
    PGresult *res;
    struct params p;
    struct conn *c;
    int rc;

    snprintf(what, sizeof(what), "update endpoint '%s'", ep->id);
    rc = conn_get(s, &c, err);
    if (rc < 0)
        return rc;
    rc = tx_begin_write(c, what, err);
    /* Existence first (and the row lock), so another partner's id is "not found". */
    if (rc == 0)
        rc = endpoint_lookup(c, S_EP_GET_LOCK, ep->partner_id, ep->id, &old, what, err);
    if (rc == 0 && seen && !vh__endpoint_unchanged(seen, &old))
        rc = vh_error_set(err, VH_ESTATE, "%s: it changed since it was read", what);
    if (rc == 0)
        rc = label_check(c, ep->partner_id, ep->label, ep->id, what, err);
    if (rc < 0)
        goto out;
    p_init(&p);
    p_text(&p, ep->partner_id);
    p_text(&p, ep->id);
    p_endpoint(&p, ep, false);
    res = exec_raw(c, S_EP_UPDATE, &p);
    if (!res_ok(res))
        rc = endpoint_write_fail(c, res, ep, what, err);
    else
        changes = res_changes(res);
    PQclear(res);
    if (rc == 0 && changes != 1)
        rc = vh_error_set(err, VH_ESTORE, "%s: the row changed under a row lock", what);
    /* SPEC §3: disabling stops the endpoint's pending deliveries. */
    if (rc == 0 && !ep->enabled)
        rc = cancel_pending(c, ep->id, ep->updated_ms, what, err);
    if (rc == 0 && endpoint_moved(&old, ep))
        rc = endpoint_notify(c, ep->id, what, err);
    if (rc == 0)
        rc = tx_commit(c, what, err);
out:
    conn_put(s, c);
    return rc;
}

static int pg_endpoint_delete(struct vh_store *st, const char *partner_id, const char *id,
                              int64_t now_ms, struct vh_error *err)
{
    struct pg_store *s = to_pg(st);
    char what[WHAT_MAX];
    int64_t changes = 0;
    struct params p;
    struct conn *c;
    int rc;

    snprintf(what, sizeof(what), "delete endpoint '%s'", id);
    rc = conn_get(s, &c, err);
    if (rc < 0)
        return rc;
    rc = tx_begin_write(c, what, err);
    if (rc == 0) {
        p_init(&p);
        p_text(&p, partner_id);
        p_text(&p, id);
        p_int(&p, now_ms);
        rc = run_write(c, S_EP_DELETE, &p, &changes, what, err);
    }
    if (rc == 0 && changes == 0)
        rc = vh_error_set(err, VH_ENOTFOUND, "endpoint '%s' not found", id);
    if (rc == 0)
        rc = cancel_pending(c, id, now_ms, what, err);
    if (rc == 0)
        rc = endpoint_notify(c, id, what, err);
    if (rc == 0)
        rc = tx_commit(c, what, err);
    conn_put(s, c);
    return rc;
}

/* ---- events -------------------------------------------------------------------------------- */

/*
 * The session's earlier event, if any: 1 and `out` filled (created=false) when it is the
 * same partner's, VH_ECONFLICT when another partner's, 0 when the session is new.
 */
static int event_find(struct conn *c, const struct vh_event_put *ev,
                      struct vh_event_put_result *out, const char *what, struct vh_error *err)
{
    char owner[VH_UUID_LEN + 1];
    PGresult *res = NULL;
    struct row r = {NULL, 0, what};
    struct params p;
    int64_t fanout;
    int rc;

    p_init(&p);
    p_text(&p, ev->session_id);
    rc = run(c, S_EV_BY_SESSION, &p, &res, what, err);
    if (rc < 0)
        return rc;
    r.res = res;
    if (PQntuples(res) == 0)
        goto out; /* 0: a new session */
    rc = col_text(&r, 1, owner, sizeof(owner), "partner id", err);
    if (rc < 0)
        goto out;
    if (strcmp(owner, ev->partner_id) != 0) {
        rc = vh_error_set(err, VH_ECONFLICT, "session_id '%s' belongs to another partner",
                          ev->session_id);
        goto out;
    }
    rc = col_text(&r, 0, out->event_id, sizeof(out->event_id), "event id", err);
    if (rc < 0)
        goto out;
    fanout = col_int(&r, 2);
    out->deliveries = fanout > 0 ? (size_t)fanout : 0;
    out->created = false;
    rc = 1;
out:
    PQclear(res);
    return rc;
}

/*
 * The ids of the partner's enabled, live endpoints, locked FOR SHARE until the commit: an
 * endpoint disabled meanwhile waits for us, then cancels what we add.
 */
static int enabled_endpoints(struct conn *c, const char *partner_id, PGresult **out,
                             const char *what, struct vh_error *err)
{
    struct params p;

    p_init(&p);
    p_text(&p, partner_id);
    return run(c, S_EP_ENABLED_IDS, &p, out, what, err);
}

/*
 * Inserts the event row: 1 when inserted, 0 when the session_id is already taken (by a
 * concurrent put that committed first: ON CONFLICT waited for it).
 */
static int event_insert(struct conn *c, const struct vh_event_put *ev, const char *id,
                        size_t fanout, const char *what, struct vh_error *err)
{
    struct params p;
    PGresult *res;
    int rc;

    p_init(&p);
    p_text(&p, id);
    p_text(&p, ev->partner_id);
    p_text(&p, ev->session_id);
    p_text(&p, ev->call_id);
    p_text(&p, ev->call_id ? vh_call_status_name((enum vh_call_status)ev->call_status) : NULL);
    p_text(&p, ev->recording_key);
    p_bytes(&p, ev->body, ev->body_len);
    p_int(&p, (int64_t)fanout);
    p_int(&p, ev->accepted_ms);
    if (p.too_big)
        return vh_error_set(err, VH_ETOOBIG, "%s: a value is too large", what);
    res = exec_raw(c, S_EV_INSERT, &p);
    if (res_ok(res))
        rc = res_changes(res) == 1 ? 1 : 0;
    else if (state_is(c, "23503"))
        rc = vh_error_set(err, VH_ENOTFOUND, "partner '%s' not found", ev->partner_id);
    else
        rc = res_fail(c, res, what, err);
    PQclear(res);
    return rc;
}

/* A new pending delivery, due (and created) at `due_ms`. */
static int delivery_insert(struct conn *c, const char *partner_id, const char *event_id,
                           const char *endpoint_id, int64_t due_ms, size_t body_len,
                           const char *what, struct vh_error *err)
{
    char id[VH_UUID_LEN + 1];
    struct params p;
    int rc;

    rc = vh_uuid_new(id, err);
    if (rc < 0)
        return rc;
    p_init(&p);
    p_text(&p, id);
    p_text(&p, event_id);
    p_text(&p, endpoint_id);
    p_text(&p, partner_id);
    p_int(&p, due_ms);
    p_int(&p, (int64_t)body_len);
    return run_write(c, S_DLV_INSERT, &p, NULL, what, err);
}

/*
 * One write transaction: find the session; else lock the enabled endpoints, insert the
 * event (ON CONFLICT DO NOTHING) and its deliveries. When a concurrent put of the same
 * session wins the insert, this one reads its event back (a new statement: it sees that
 * commit) and answers as a repeat.
 */
static int pg_event_put(struct vh_store *st, const struct vh_event_put *ev, const char *new_id,
                        struct vh_event_put_result *out, struct vh_error *err)
{
    struct pg_store *s = to_pg(st);
    PGresult *endpoints = NULL;
    char what[WHAT_MAX], endpoint_id[VH_UUID_LEN + 1];
    struct row r = {NULL, 0, what};
    size_t n_endpoints = 0;
    struct conn *c;
    int rc;

    snprintf(what, sizeof(what), "insert event '%s'", ev->session_id);
    rc = conn_get(s, &c, err);
    if (rc < 0)
        return rc;
    rc = tx_begin_write(c, what, err);
    if (rc == 0)
        rc = event_find(c, ev, out, what, err);
    if (rc != 0)
        goto out; /* a repeat (1) writes nothing: the rollback lets the transaction go */
    rc = enabled_endpoints(c, ev->partner_id, &endpoints, what, err);
    if (rc < 0)
        goto out;
    n_endpoints = (size_t)PQntuples(endpoints);
    rc = event_insert(c, ev, new_id, n_endpoints, what, err);
    if (rc == 0) {
        rc = event_find(c, ev, out, what, err);
        if (rc == 0)
            rc = vh_error_set(err, VH_ESTORE, "%s: session_id taken but not found", what);
        goto out;
    }
    if (rc < 0)
        goto out;
    r.res = endpoints;
    rc = 0;
    for (r.i = 0; rc == 0 && r.i < PQntuples(endpoints); r.i++) {
        rc = col_text(&r, 0, endpoint_id, sizeof(endpoint_id), "endpoint id", err);
        if (rc == 0)
            rc = delivery_insert(c, ev->partner_id, new_id, endpoint_id, ev->accepted_ms,
                                 ev->body_len, what, err);
    }
    if (rc == 0)
        rc = tx_commit(c, what, err);
    if (rc < 0)
        goto out;
    snprintf(out->event_id, sizeof(out->event_id), "%s", new_id);
    out->deliveries = n_endpoints;
    out->created = true;
out:
    if (rc > 0)
        rc = 0;
    PQclear(endpoints);
    conn_put(s, c);
    return rc;
}

/* ---- calls (events read back) ------------------------------------------------------------ */

/* 1 and `out` filled when statement `sid` finds a row for (partner, key), 0 when none. */
static int call_lookup(struct conn *c, enum stmt_id sid, const char *partner_id, const char *key,
                       struct vh_call_rec *out, const char *what, struct vh_error *err)
{
    PGresult *res = NULL;
    struct row r = {NULL, 0, what};
    struct params p;
    int rc;

    p_init(&p);
    p_text(&p, partner_id);
    p_text(&p, key);
    rc = run(c, sid, &p, &res, what, err);
    if (rc < 0)
        return rc;
    r.res = res;
    if (PQntuples(res) > 0) {
        rc = row_call(&r, out, err);
        if (rc == 0)
            rc = 1;
    }
    PQclear(res);
    return rc;
}

static int pg_call_get(struct vh_store *st, const char *partner_id, const char *id,
                       struct vh_call_rec *out, struct vh_error *err)
{
    struct pg_store *s = to_pg(st);
    char what[WHAT_MAX];
    struct conn *c;
    int rc;

    snprintf(what, sizeof(what), "get call '%s'", id);
    rc = conn_get(s, &c, err);
    if (rc < 0)
        return rc;
    /* session_id is unique; a call_id could repeat, and then the newest session wins. */
    rc = call_lookup(c, S_CALL_BY_SESSION, partner_id, id, out, what, err);
    if (rc == 0)
        rc = call_lookup(c, S_CALL_BY_CALL_ID, partner_id, id, out, what, err);
    if (rc == 0)
        rc = vh_error_set(err, VH_ENOTFOUND, "call '%s' not found", id);
    else if (rc > 0)
        rc = 0;
    conn_put(s, c);
    return rc;
}

static void call_array_free(struct vh_call_rec *arr, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        vh_call_rec_release(&arr[i]);
    vh_free(arr);
}

static int pg_call_list(struct vh_store *st, const char *partner_id, size_t limit, size_t offset,
                        int call_status, struct vh_call_rec **out, size_t *n, size_t *total,
                        struct vh_error *err)
{
    struct pg_store *s = to_pg(st);
    const char *status = call_status ? vh_call_status_name((enum vh_call_status)call_status) : NULL;
    struct vh_call_rec *arr = NULL;
    char what[WHAT_MAX];
    PGresult *res = NULL;
    struct row r = {NULL, 0, what};
    struct params p;
    size_t len = 0;
    int64_t all = 0;
    struct conn *c;
    void *mem;
    int rc;

    snprintf(what, sizeof(what), "list calls of partner '%s'", partner_id);
    rc = conn_get(s, &c, err);
    if (rc < 0)
        return rc;
    /* One snapshot: the total and the page agree. */
    rc = tx_begin_read(c, what, err);
    if (rc == 0) {
        p_init(&p);
        p_text(&p, partner_id);
        p_text(&p, status);
        rc = run_int(c, S_CALL_COUNT, &p, &all, what, err);
    }
    if (rc == 0) {
        p_int(&p, (int64_t)limit);
        p_int(&p, (int64_t)offset);
        rc = run(c, S_CALL_PAGE, &p, &res, what, err);
    }
    if (rc == 0)
        rc = tx_commit(c, what, err);
    conn_put(s, c);
    if (rc < 0) {
        PQclear(res);
        return rc;
    }
    r.res = res;
    rc = array_for((size_t)PQntuples(res), sizeof(*arr), &mem, what, err);
    arr = mem;
    for (r.i = 0; rc == 0 && r.i < PQntuples(res); r.i++) {
        rc = row_call(&r, &arr[len], err);
        if (rc == 0)
            len++;
    }
    PQclear(res);
    if (rc < 0) {
        call_array_free(arr, len);
        return rc;
    }
    *out = arr;
    *n = len;
    *total = all > 0 ? (size_t)all : 0;
    return 0;
}

static int pg_event_deliveries(struct vh_store *st, const char *event_id,
                               struct vh_delivery_brief **out, size_t *n, struct vh_error *err)
{
    struct pg_store *s = to_pg(st);
    struct vh_delivery_brief *arr = NULL, *d;
    char what[WHAT_MAX];
    PGresult *res = NULL;
    struct row r = {NULL, 0, what};
    int64_t exists = 0, attempts;
    struct params p;
    size_t len = 0;
    struct conn *c;
    void *mem;
    int rc;

    snprintf(what, sizeof(what), "list deliveries of event '%s'", event_id);
    rc = conn_get(s, &c, err);
    if (rc < 0)
        return rc;
    p_init(&p);
    p_text(&p, event_id);
    rc = tx_begin_read(c, what, err);
    if (rc == 0)
        rc = run(c, S_EV_EXISTS, &p, &res, what, err);
    if (rc == 0) {
        exists = PQntuples(res);
        PQclear(res);
        res = NULL;
        if (!exists)
            rc = vh_error_set(err, VH_ENOTFOUND, "event '%s' not found", event_id);
    }
    if (rc == 0)
        rc = run(c, S_DLV_OF_EVENT, &p, &res, what, err);
    if (rc == 0)
        rc = tx_commit(c, what, err);
    conn_put(s, c);
    if (rc < 0) {
        PQclear(res);
        return rc;
    }
    r.res = res;
    rc = array_for((size_t)PQntuples(res), sizeof(*arr), &mem, what, err);
    arr = mem;
    for (r.i = 0; rc == 0 && r.i < PQntuples(res); r.i++) {
        d = &arr[len];
        rc = col_text(&r, 0, d->id, sizeof(d->id), "delivery id", err);
        if (rc == 0)
            rc = col_text(&r, 1, d->endpoint_id, sizeof(d->endpoint_id), "endpoint id", err);
        if (rc == 0)
            rc = col_text(&r, 2, d->state, sizeof(d->state), "state", err);
        attempts = col_int(&r, 3);
        d->attempts = attempts < 0 || attempts > INT_MAX ? 0 : (int)attempts;
        d->next_attempt_ms = col_int(&r, 4);
        if (rc == 0)
            len++;
    }
    PQclear(res);
    if (rc < 0) {
        vh_free(arr);
        return rc;
    }
    *out = arr;
    *n = len;
    return 0;
}

/* ---- the delivery engine's side: claim, record, recover -------------------------------------- */

/* Reads a row of S_CLAIM into a zeroed `j` whose body is initialized. */
static int row_job(const struct row *r, struct vh_delivery_job_rec *j, struct vh_error *err)
{
    int rc;

    rc = col_text(r, 0, j->delivery_id, sizeof(j->delivery_id), "delivery id", err);
    if (rc == 0)
        rc = col_text(r, 1, j->event_id, sizeof(j->event_id), "event id", err);
    if (rc == 0)
        rc = col_text(r, 2, j->endpoint_id, sizeof(j->endpoint_id), "endpoint id", err);
    if (rc == 0)
        rc = col_text(r, 3, j->partner_id, sizeof(j->partner_id), "partner id", err);
    if (rc == 0)
        rc = col_count(r, 4, &j->attempts, "attempt count", err);
    if (rc == 0)
        rc = col_count(r, 5, &j->attempt_base, "attempt base", err);
    if (rc == 0)
        rc = col_text(r, 7, j->url, sizeof(j->url), "url", err);
    if (rc == 0)
        rc = col_text(r, 8, j->secret, sizeof(j->secret), "secret", err);
    if (rc == 0)
        rc = col_text(r, 9, j->retry_schedule, sizeof(j->retry_schedule), "retry schedule", err);
    if (rc == 0)
        rc = col_blob(r, 11, &j->body, "body", err);
    if (rc < 0)
        return rc;
    j->next_attempt_ms = col_int(r, 6);
    j->timeout_ms = col_int(r, 10); /* NULL reads as 0: the server's */
    if (j->body.len == 0)
        return vh_error_set(err, VH_ESTORE, "%s: stored body of delivery '%s' is empty", r->what,
                            j->delivery_id);
    return 0;
}

/*
 * One statement in one transaction: the rows are locked, marked and read together, and
 * committed before they are handed out. A failure after the statement (reading a row, no
 * memory) rolls the whole claim back, so nothing stays claimed that the caller never saw.
 */
static int pg_delivery_claim(struct vh_store *st, const char *node_id, int64_t now_ms,
                             int64_t lease_ms, size_t max, size_t max_bytes,
                             struct vh_delivery_job_rec **out, size_t *n, struct vh_error *err)
{
    struct pg_store *s = to_pg(st);
    struct vh_delivery_job_rec *arr = NULL;
    const int64_t until_ms = now_ms + lease_ms;
    char what[WHAT_MAX];
    PGresult *res = NULL;
    struct row r = {NULL, 0, what};
    struct params p;
    size_t len = 0;
    struct conn *c;
    void *mem;
    int rc;

    snprintf(what, sizeof(what), "claim deliveries for node '%s'", node_id);
    rc = conn_get(s, &c, err);
    if (rc < 0)
        return rc;
    rc = tx_begin_write(c, what, err);
    if (rc == 0) {
        p_init(&p);
        p_int(&p, now_ms);
        p_int(&p, (int64_t)max);
        p_text(&p, node_id);
        p_int(&p, until_ms);
        p_int(&p, max_bytes > (size_t)INT64_MAX ? INT64_MAX : (int64_t)max_bytes);
        rc = run(c, S_CLAIM, &p, &res, what, err);
    }
    if (rc < 0)
        goto out;
    r.res = res;
    rc = array_for((size_t)PQntuples(res), sizeof(*arr), &mem, what, err);
    arr = mem;
    for (r.i = 0; rc == 0 && r.i < PQntuples(res); r.i++) {
        vh_buf_init(&arr[len].body, VH__STORE_BODY_MAX);
        /* Counted before reading, so a failed row is released with the rest. */
        len++;
        rc = row_job(&r, &arr[len - 1], err);
        arr[len - 1].lease_until_ms = until_ms;
    }
    if (rc == 0)
        rc = tx_commit(c, what, err);
out:
    PQclear(res);
    conn_put(s, c);
    if (rc < 0) {
        vh_delivery_job_recs_free(arr, len);
        return rc;
    }
    *out = arr;
    *n = len;
    return 0;
}

/*
 * The bytes of `s` kept as an attempt's error line, copied into `dst`: up to the first line
 * break, at most VH_ATTEMPT_ERROR_LEN, never ending inside a UTF-8 sequence, and with any
 * byte that is not well-formed UTF-8 replaced by '?' (a TEXT value must be valid UTF-8 here,
 * and a receiver's odd bytes must not fail the batch). Returns the length.
 */
static size_t error_line_copy(const char *s, char dst[VH_ATTEMPT_ERROR_LEN + 1])
{
    size_t n = 0, i = 0, k, need;
    unsigned char ch;

    while (n < VH_ATTEMPT_ERROR_LEN && s[n] && s[n] != '\n' && s[n] != '\r')
        n++;
    if (s[n] && s[n] != '\n' && s[n] != '\r')
        while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
            n--;
    memcpy(dst, s, n);
    dst[n] = '\0';
    while (i < n) {
        ch = (unsigned char)dst[i];
        need = ch < 0x80                  ? 0
               : ch >= 0xc2 && ch <= 0xdf ? 1
               : ch >= 0xe0 && ch <= 0xef ? 2
               : ch >= 0xf0 && ch <= 0xf4 ? 3
                                          : 4;
        for (k = 1; need < 4 && k <= need; k++)
            if (i + k >= n || ((unsigned char)dst[i + k] & 0xc0) != 0x80)
                need = 4;
        if (need == 4) {
            dst[i++] = '?';
            continue;
        }
        i += need + 1;
    }
    return n;
}

/* Sets the endpoint's last delivery, unless it already shows a later attempt. */
static int endpoint_last_delivery(struct conn *c, const char *endpoint_id,
                                  const struct vh_delivery_result *r, const char *what,
                                  struct vh_error *err)
{
    struct params p;

    p_init(&p);
    p_text(&p, endpoint_id);
    p_int(&p, r->started_ms);
    p_text(&p, r->error_class ? "failed" : "succeeded");
    return run_write(c, S_EP_LAST_DELIVERY, &p, NULL, what, err);
}

/*
 * The endpoint of each result's delivery into `ids` (n pointers): the caller's, else looked
 * up into `buf`; VH_ENOTFOUND for a missing delivery.
 */
static int record_endpoints(struct conn *c, const struct vh_delivery_result *results, size_t n,
                            const char **ids, char (*buf)[VH_UUID_LEN + 1], const char *what,
                            struct vh_error *err)
{
    PGresult *res = NULL;
    struct row r = {NULL, 0, what};
    struct params p;
    size_t i;
    int rc = 0;

    for (i = 0; rc == 0 && i < n; i++) {
        ids[i] = results[i].endpoint_id;
        if (ids[i])
            continue;
        p_init(&p);
        p_text(&p, results[i].delivery_id);
        rc = run(c, S_DLV_ENDPOINT, &p, &res, what, err);
        if (rc < 0)
            break;
        r.res = res;
        if (PQntuples(res) == 0)
            rc = vh_error_set(err, VH_ENOTFOUND, "%s: delivery '%s' not found", what,
                              results[i].delivery_id);
        else
            rc = col_text(&r, 0, buf[i], sizeof(buf[i]), "endpoint id", err);
        PQclear(res);
        res = NULL;
        ids[i] = buf[i];
    }
    return rc;
}

/* prepare_raw with the failure reported in `err`. */
static int prepare(struct conn *c, enum stmt_id id, const char *what, struct vh_error *err)
{
    PGresult *res = NULL;
    int rc;

    if (prepare_raw(c, id, &res))
        return 0;
    rc = res_fail(c, res, what, err);
    PQclear(res);
    return rc;
}

/* Queues one result's statement: S_RECORD_ONE, or S_DLV_FINISH for an interrupted one. */
static int send_result(struct conn *c, const struct vh_delivery_result *r, const char *what,
                       struct vh_error *err)
{
    const int64_t before = (int64_t)r->attempt - 1;
    const bool pending = strcmp(r->new_state, "pending") == 0;
    size_t head_len = r->response_len < VH_STORED_HEAD_MAX ? r->response_len : VH_STORED_HEAD_MAX;
    char line[VH_ATTEMPT_ERROR_LEN + 1], name[16], msg[200];
    enum stmt_id id = r->interrupted ? S_DLV_FINISH : S_RECORD_ONE;
    struct params p;

    p_init(&p);
    p_text(&p, r->delivery_id);
    p_text(&p, r->node_id);
    p_text(&p, r->new_state);
    p_int(&p, r->interrupted ? before : (int64_t)r->attempt);
    p_int(&p, pending ? r->next_attempt_ms : 0);
    p_int(&p, r->started_ms + r->duration_ms);
    p_int(&p, before);
    if (!r->interrupted) {
        p_int(&p, r->started_ms);
        p_int(&p, r->duration_ms);
        p_int_or_null(&p, r->http_status);
        p_text(&p, r->error_class);
        p_text(&p, r->error && error_line_copy(r->error, line) ? line : NULL);
        if (head_len == 0)
            p_text(&p, NULL);
        else
            p_bytes(&p, r->response_head, head_len);
    }
    /* $8 of S_DLV_FINISH, $14 of S_RECORD_ONE: this claim's lease, or any (NULL). */
    p_int_or_null(&p, r->lease_until_ms);
    if (p.too_big)
        return vh_error_set(err, VH_ETOOBIG, "%s: a value is too large", what);
    snprintf(name, sizeof(name), "vh%d", (int)id);
    if (!PQsendQueryPrepared(c->pg, name, p.n, p.val, p.len, p.fmt, 1))
        return vh_error_set(err, VH_ESTORE, "%s: %s", what,
                            first_line(PQerrorMessage(c->pg), msg, sizeof(msg)));
    return 0;
}

/*
 * Reads the results of `count` queued statements and of the sync that follows them. The
 * first failure is reported (and its SQLSTATE kept for tx_is_retryable); the statements
 * after it come back aborted. A result missing where one must be means the connection is
 * broken: it is marked so, and conn_put drops it.
 */
static int read_results(struct conn *c, const struct vh_delivery_result *results, size_t count,
                        bool *again, const char *what, struct vh_error *err)
{
    PGresult *res;
    size_t i;
    int rc = 0;

    for (i = 0; i < count; i++) {
        struct row r = {NULL, 0, what};
        ExecStatusType st;

        res = PQgetResult(c->pg);
        if (!res) {
            c->broken = true;
            return rc < 0 ? rc : res_fail(c, NULL, what, err);
        }
        st = PQresultStatus(res);
        if (rc == 0 && st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
            snprintf(c->sqlstate, sizeof(c->sqlstate), "%s", sqlstate_of(res));
            rc = res_fail(c, res, what, err);
            if (state_is(c, "23503")) {
                /* The attempt's foreign key: a result (with its endpoint) for no delivery. */
                vh_error_clear(err);
                rc = vh_error_set(err, VH_ENOTFOUND, "%s: delivery '%s' not found", what,
                                  results[i].delivery_id);
            }
        }
        if (rc == 0 && !results[i].interrupted) {
            r.res = res;
            if (PQntuples(res) != 1 || PQnfields(res) != 2 || PQftype(res, 0) != OID_INT8 ||
                PQftype(res, 1) != OID_INT8)
                rc = vh_error_set(err, VH_ESTORE, "%s: unexpected record result", what);
            else
                again[i] = col_int(&r, 0) == 0 && col_int(&r, 1) == 0;
        }
        PQclear(res);
        res = PQgetResult(c->pg); /* the NULL that ends this statement's results */
        if (res) {
            PQclear(res);
            c->broken = true;
            return rc < 0 ? rc : vh_error_set(err, VH_ESTORE, "%s: unexpected result", what);
        }
    }
    res = PQgetResult(c->pg);
    if (!res || PQresultStatus(res) != PGRES_PIPELINE_SYNC) {
        c->broken = true;
        if (rc == 0)
            rc = vh_error_set(err, VH_ESTORE, "%s: the pipeline lost its sync", what);
    }
    PQclear(res);
    return rc;
}

/*
 * A batch's statements, PIPE_CHUNK at a time, each chunk in one round trip (libpq
 * pipeline mode) instead of one per statement.
 */
static int record_pipelined(struct conn *c, const struct vh_delivery_result *results, size_t n,
                            bool *again, const char *what, struct vh_error *err)
{
    size_t i = 0, sent;
    int rc;

    rc = prepare(c, S_RECORD_ONE, what, err);
    if (rc == 0)
        rc = prepare(c, S_DLV_FINISH, what, err);
    if (rc < 0)
        return rc;
    if (!PQenterPipelineMode(c->pg))
        return vh_error_set(err, VH_ESTORE, "%s: cannot enter pipeline mode", what);
    while (rc == 0 && i < n) {
        for (sent = 0; rc == 0 && sent < PIPE_CHUNK && i < n; sent++, i++)
            rc = send_result(c, &results[i], what, err);
        if (rc < 0) {
            c->broken = true; /* statements queued but never synced: start afresh */
            break;
        }
        if (!PQpipelineSync(c->pg)) {
            c->broken = true;
            rc = vh_error_set(err, VH_ESTORE, "%s: cannot send the batch", what);
            break;
        }
        rc = read_results(c, results + i - sent, sent, again + i - sent, what, err);
    }
    if (!c->broken && !PQexitPipelineMode(c->pg))
        c->broken = true;
    return rc;
}

/* ---- a record batch in one statement (S_RECORD_MANY) ---- */

#define ARRAY_MAX ((size_t)16 * 1024 * 1024) /* one array parameter's text at most */

/* One array parameter in text form ("{...}"), built an element at a time. */
struct array {
    struct vh_buf b;
    size_t n;
};

static int array_sep(struct array *a)
{
    return vh_buf_addc(&a->b, a->n++ ? ',' : '{');
}

/* A text element: quoted, with '"' and '\\' escaped; NULL for NULL. */
static int array_text(struct array *a, const char *s)
{
    int rc = array_sep(a);

    if (rc == 0 && !s)
        return vh_buf_adds(&a->b, "NULL");
    if (rc == 0)
        rc = vh_buf_addc(&a->b, '"');
    for (; rc == 0 && *s; s++) {
        if (*s == '"' || *s == '\\')
            rc = vh_buf_addc(&a->b, '\\');
        if (rc == 0)
            rc = vh_buf_addc(&a->b, *s);
    }
    return rc == 0 ? vh_buf_addc(&a->b, '"') : rc;
}

/* An int8 element; NULL for 0 when `zero_is_null` (as p_int_or_null). */
static int array_int(struct array *a, int64_t v, bool zero_is_null)
{
    int rc = array_sep(a);

    if (rc == 0 && zero_is_null && v == 0)
        return vh_buf_adds(&a->b, "NULL");
    return rc == 0 ? vh_buf_addf(&a->b, "%lld", (long long)v) : rc;
}

/* A bytea element in hex ("\\\\x..." once quoted); NULL for no bytes. */
static int array_bytes(struct array *a, const void *data, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *u = data;
    int rc = array_sep(a);
    size_t i;

    if (rc == 0 && len == 0)
        return vh_buf_adds(&a->b, "NULL");
    if (rc == 0)
        rc = vh_buf_adds(&a->b, "\"\\\\x");
    for (i = 0; rc == 0 && i < len; i++) {
        rc = vh_buf_addc(&a->b, hex[u[i] >> 4]);
        if (rc == 0)
            rc = vh_buf_addc(&a->b, hex[u[i] & 0x0f]);
    }
    return rc == 0 ? vh_buf_addc(&a->b, '"') : rc;
}

/*
 * A batch takes the one statement when no result is an interrupted one (those finish
 * with S_DLV_FINISH and write no attempt) and no delivery comes twice (an UPDATE ... FROM
 * matches a row once, where statement after statement would apply both).
 */
static int id_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static bool record_set_fits(const struct vh_delivery_result *results, size_t n)
{
    const char *ids[VH_CLAIM_MAX]; /* n <= VH_CLAIM_MAX (store.c) */
    size_t i;

    for (i = 0; i < n; i++) {
        if (results[i].interrupted)
            return false;
        ids[i] = results[i].delivery_id;
    }
    /* Sorted, a delivery that comes twice is side by side: n log n, not n^2 (1 000 a batch). */
    qsort(ids, n, sizeof(ids[0]), id_cmp);
    for (i = 1; i < n; i++)
        if (strcmp(ids[i - 1], ids[i]) == 0)
            return false;
    return true;
}

/* The batch in one S_RECORD_MANY; `again` as record_pipelined sets it. */
static int record_set(struct conn *c, const struct vh_delivery_result *results, size_t n,
                      bool *again, const char *what, struct vh_error *err)
{
    struct array a[PARAMS_MAX];
    char line[VH_ATTEMPT_ERROR_LEN + 1];
    PGresult *res = NULL;
    struct params p;
    size_t i, k;
    int rc = 0;

    for (k = 0; k < PARAMS_MAX; k++) {
        vh_buf_init(&a[k].b, ARRAY_MAX);
        a[k].n = 0;
    }
    for (i = 0; rc == 0 && i < n; i++) {
        const struct vh_delivery_result *r = &results[i];
        const bool pending = strcmp(r->new_state, "pending") == 0;
        size_t head_len =
            r->response_len < VH_STORED_HEAD_MAX ? r->response_len : VH_STORED_HEAD_MAX;

        rc = array_text(&a[0], r->delivery_id);
        rc = rc ? rc : array_text(&a[1], r->node_id);
        rc = rc ? rc : array_text(&a[2], r->new_state);
        rc = rc ? rc : array_int(&a[3], (int64_t)r->attempt, false);
        rc = rc ? rc : array_int(&a[4], pending ? r->next_attempt_ms : 0, false);
        rc = rc ? rc : array_int(&a[5], r->started_ms + r->duration_ms, false);
        rc = rc ? rc : array_int(&a[6], (int64_t)r->attempt - 1, false);
        rc = rc ? rc : array_int(&a[7], r->started_ms, false);
        rc = rc ? rc : array_int(&a[8], r->duration_ms, false);
        rc = rc ? rc : array_int(&a[9], r->http_status, true);
        rc = rc ? rc : array_text(&a[10], r->error_class);
        rc =
            rc ? rc : array_text(&a[11], r->error && error_line_copy(r->error, line) ? line : NULL);
        rc = rc ? rc : array_bytes(&a[12], r->response_head, head_len);
        rc = rc ? rc : array_int(&a[13], r->lease_until_ms, true);
    }
    p_init(&p);
    for (k = 0; rc == 0 && k < PARAMS_MAX; k++)
        rc = vh_buf_addc(&a[k].b, '}');
    for (k = 0; rc == 0 && k < PARAMS_MAX; k++)
        p_text(&p, vh_buf_cstr(&a[k].b));
    if (rc < 0)
        rc = vh_error_set(err, rc == VH_ETOOBIG ? VH_ETOOBIG : VH_ENOMEM,
                          "%s: the batch's values: %s", what,
                          rc == VH_ETOOBIG ? "too large" : "out of memory");
    if (rc == 0)
        rc = run(c, S_RECORD_MANY, &p, &res, what, err);
    if (rc == 0 && (PQntuples(res) != (int)n || PQnfields(res) != 3))
        rc = vh_error_set(err, VH_ESTORE, "%s: unexpected record result", what);
    for (i = 0; rc == 0 && i < n; i++) {
        struct row r = {res, (int)i, what};

        if (col_int(&r, 0) != (int64_t)i + 1) {
            rc = vh_error_set(err, VH_ESTORE, "%s: unexpected record result", what);
            break;
        }
        again[i] = col_int(&r, 1) == 0 && col_int(&r, 2) == 0;
    }
    PQclear(res);
    for (k = 0; k < PARAMS_MAX; k++)
        vh_buf_release(&a[k].b);
    return rc;
}

/* S_DLV_RAISE_ATTEMPTS for the results whose record changed nothing (see S_RECORD_ONE). */
static int record_raise_again(struct conn *c, const struct vh_delivery_result *results, size_t n,
                              const bool *again, const char *what, struct vh_error *err)
{
    struct params p;
    size_t i;
    int rc = 0;

    for (i = 0; rc == 0 && i < n; i++) {
        if (!again[i])
            continue;
        p_init(&p);
        p_text(&p, results[i].delivery_id);
        p_int(&p, results[i].attempt);
        rc = run_write(c, S_DLV_RAISE_ATTEMPTS, &p, NULL, what, err);
    }
    return rc;
}

/*
 * One batch, one transaction, one WAL flush: the group commit. It writes deliveries and
 * attempts only, and takes no endpoint lock: so batches of several nodes never wait for
 * each other on an endpoint row, and an endpoint update (which locks the endpoint, then
 * its deliveries) cannot deadlock with them.
 */
static int record_batch(struct conn *c, const struct vh_delivery_result *results, size_t n,
                        const char **ids, char (*buf)[VH_UUID_LEN + 1], bool *again,
                        const char *what, struct vh_error *err)
{
    bool set = record_set_fits(results, n);
    int rc;

    memset(again, 0, n * sizeof(*again));
    rc = tx_begin_write(c, what, err);
    if (rc == 0)
        rc = record_endpoints(c, results, n, ids, buf, what, err);
    if (rc == 0 && set) {
        rc = record_set(c, results, n, again, what, err);
        if (rc < 0 && state_is(c, "23503") && !c->broken) {
            /* A result for no delivery: statement by statement, which names it. */
            tx_rollback(c);
            vh_error_clear(err);
            memset(again, 0, n * sizeof(*again));
            set = false;
            rc = tx_begin_write(c, what, err);
        }
    }
    if (rc == 0 && !set)
        rc = record_pipelined(c, results, n, again, what, err);
    if (rc == 0)
        rc = record_raise_again(c, results, n, again, what, err);
    if (rc == 0)
        rc = tx_commit(c, what, err);
    if (!c->broken)
        tx_rollback(c);
    return rc;
}

/*
 * The endpoints' last_delivery_* after a recorded batch: once per endpoint, from its latest
 * counted attempt, in a short transaction of its own that does not wait for the WAL flush.
 * Best effort: these columns only inform (a crash or failure here leaves the previous
 * value; the attempts themselves are committed).
 */
static void record_last_deliveries(struct conn *c, const struct vh_delivery_result *results,
                                   size_t n, const char **ids, size_t *last, const char *what)
{
    struct vh_error err = VH_ERROR_INIT;
    size_t i, j, k = vh__store_last_per_endpoint(results, ids, n, last);
    int rc;

    if (k == 0)
        return;
    /* In id order, the order ingest locks endpoints in (S_EP_ENABLED_IDS): else the two
     * deadlock, each holding one endpoint the other wants. k is small: insertion sort. */
    for (i = 1; i < k; i++) {
        size_t v = last[i];

        for (j = i; j > 0 && strcmp(ids[last[j - 1]], ids[v]) > 0; j--)
            last[j] = last[j - 1];
        last[j] = v;
    }
    rc = run_cmd(c, "BEGIN; SET LOCAL synchronous_commit TO off", NULL, what, &err);
    for (i = 0; rc == 0 && i < k; i++)
        rc = endpoint_last_delivery(c, ids[last[i]], &results[last[i]], what, &err);
    if (rc == 0)
        (void)tx_commit(c, what, &err);
    tx_rollback(c);
}

static int pg_delivery_record(struct vh_store *st, const struct vh_delivery_result *results,
                              size_t n, struct vh_error *err)
{
    struct pg_store *s = to_pg(st);
    char(*buf)[VH_UUID_LEN + 1] = NULL;
    const char **ids = NULL;
    size_t *last = NULL;
    bool *again = NULL;
    char what[WHAT_MAX];
    struct conn *c;
    int rc, tries;

    snprintf(what, sizeof(what), "record %zu attempts", n);
    /* n <= VH_CLAIM_MAX (store.c): the sizes cannot overflow. */
    buf = vh_malloc(n * sizeof(*buf));
    ids = vh_malloc(n * sizeof(*ids));
    last = vh_malloc(n * sizeof(*last));
    again = vh_malloc(n * sizeof(*again));
    if (!buf || !ids || !last || !again) {
        rc = vh_error_set(err, VH_ENOMEM, "%s: out of memory", what);
        goto out;
    }
    rc = conn_get(s, &c, err);
    if (rc < 0)
        goto out;
    for (tries = 1;; tries++) {
        rc = record_batch(c, results, n, ids, buf, again, what, err);
        if (rc == 0 || tries == TX_TRIES || !tx_is_retryable(c))
            break;
        vh_error_clear(err);
    }
    if (rc == 0)
        record_last_deliveries(c, results, n, ids, last, what);
    conn_put(s, c);
out:
    vh_free(again);
    vh_free(last);
    vh_free(ids);
    vh_free(buf);
    return rc;
}

static int pg_delivery_recover(struct vh_store *st, const char *node_id, int64_t expired_by_ms,
                               int64_t now_ms, int64_t *count, struct vh_error *err)
{
    struct pg_store *s = to_pg(st);
    const char *what = "recover deliveries";
    struct params p;
    struct conn *c;
    int rc, tries;

    rc = conn_get(s, &c, err);
    if (rc < 0)
        return rc;
    /* One statement, so its own transaction; it may meet a record batch on a row. */
    for (tries = 1;; tries++) {
        p_init(&p);
        p_int(&p, now_ms);
        p_text(&p, node_id);
        p_int(&p, expired_by_ms);
        rc = run_write(c, S_RECOVER, &p, count, what, err);
        if (rc == 0 || tries == TX_TRIES || !tx_is_retryable(c))
            break;
        vh_error_clear(err);
    }
    if (rc == 0 && *count > 0) {
        struct vh_error note_err = VH_ERROR_INIT;

        /* Best effort: the others' timers find these rows anyway, only later. */
        (void)run_cmd(c, "SELECT pg_notify('" WAKE_CHANNEL "', '')", NULL, what, &note_err);
    }
    conn_put(s, c);
    return rc;
}

static int pg_delivery_next_due(struct vh_store *st, int64_t *out_ms, struct vh_error *err)
{
    struct pg_store *s = to_pg(st);
    const char *what = "find the next due delivery";
    PGresult *res = NULL;
    struct row r = {NULL, 0, what};
    struct conn *c;
    int rc;

    rc = conn_get(s, &c, err);
    if (rc < 0)
        return rc;
    rc = run(c, S_NEXT_DUE, NULL, &res, what, err);
    conn_put(s, c);
    if (rc < 0)
        return rc;
    r.res = res;
    if (PQntuples(res) != 1) /* min() always gives a row */
        rc = vh_error_set(err, VH_ESTORE, "%s: no result", what);
    else if (col_is_null(&r, 0))
        rc = vh_error_set(err, VH_ENOTFOUND, "no pending delivery");
    else
        *out_ms = col_int(&r, 0);
    PQclear(res);
    return rc;
}

static int pg_delivery_stats(struct vh_store *st, int64_t now_ms, struct vh_delivery_stats *out,
                             struct vh_error *err)
{
    struct pg_store *s = to_pg(st);
    const char *what = "delivery stats";
    PGresult *res = NULL;
    struct row r = {NULL, 0, what};
    int64_t oldest, earliest;
    struct params p;
    struct conn *c;
    int rc;

    rc = conn_get(s, &c, err);
    if (rc < 0)
        return rc;
    /* One snapshot for both queries. */
    rc = tx_begin_read(c, what, err);
    if (rc == 0) {
        p_init(&p);
        p_int(&p, now_ms);
        rc = run(c, S_STATS_PENDING, &p, &res, what, err);
    }
    if (rc == 0 && PQntuples(res) != 1)
        rc = vh_error_set(err, VH_ESTORE, "%s: no result", what);
    if (rc == 0) {
        r.res = res;
        out->pending = col_int(&r, 0);
        out->due = col_int(&r, 1);
        oldest = col_int(&r, 2);
        earliest = col_int(&r, 3);
        if (out->pending > 0 && oldest < now_ms)
            out->oldest_pending_age_ms = now_ms - oldest;
        if (out->due > 0 && earliest < now_ms)
            out->due_lag_ms = now_ms - earliest;
    }
    if (rc == 0)
        rc = run_int(c, S_STATS_IN_FLIGHT, NULL, &out->in_flight, what, err);
    if (rc == 0)
        rc = tx_commit(c, what, err);
    PQclear(res);
    conn_put(s, c);
    return rc;
}

static int pg_delivery_counts(struct vh_store *st, struct vh_delivery_counts *out,
                              struct vh_error *err)
{
    struct pg_store *s = to_pg(st);
    const char *what = "count deliveries by state";
    char state[VH_DELIVERY_STATE_MAX + 1];
    PGresult *res = NULL;
    struct row r = {NULL, 0, what};
    struct conn *c;
    int64_t v;
    int rc;

    rc = conn_get(s, &c, err);
    if (rc < 0)
        return rc;
    rc = run(c, S_COUNT_BY_STATE, NULL, &res, what, err);
    conn_put(s, c);
    if (rc < 0)
        return rc;
    r.res = res;
    for (r.i = 0; rc == 0 && r.i < PQntuples(res); r.i++) {
        rc = col_text(&r, 0, state, sizeof(state), "state", err);
        if (rc < 0)
            break;
        v = col_int(&r, 1);
        if (strcmp(state, "pending") == 0)
            out->pending = v;
        else if (strcmp(state, "in_flight") == 0)
            out->in_flight = v;
        else if (strcmp(state, "succeeded") == 0)
            out->succeeded = v;
        else if (strcmp(state, "abandoned") == 0)
            out->abandoned = v;
        else if (strcmp(state, "canceled") == 0)
            out->canceled = v;
    }
    PQclear(res);
    return rc;
}

/* ---- delivery history ------------------------------------------------------------------------ */

/* Reads the INFO_COLS of a row. */
static int row_info(const struct row *r, struct vh_delivery_info *d, struct vh_error *err)
{
    int rc;

    rc = col_text(r, 0, d->id, sizeof(d->id), "delivery id", err);
    if (rc == 0)
        rc = col_text(r, 1, d->event_id, sizeof(d->event_id), "event id", err);
    if (rc == 0)
        rc = col_text(r, 2, d->endpoint_id, sizeof(d->endpoint_id), "endpoint id", err);
    if (rc == 0)
        rc = col_text(r, 3, d->session_id, sizeof(d->session_id), "session id", err);
    if (rc == 0)
        rc = col_text(r, 4, d->state, sizeof(d->state), "state", err);
    if (rc == 0)
        rc = col_count(r, 5, &d->attempts, "attempt count", err);
    if (rc == 0)
        rc = col_count(r, 6, &d->attempt_base, "attempt base", err);
    if (rc == 0)
        rc = col_text(r, 12, d->last_error_class, sizeof(d->last_error_class), "error class", err);
    if (rc < 0)
        return rc;
    d->next_attempt_ms = 0;
    if (strcmp(d->state, "pending") == 0 || strcmp(d->state, "in_flight") == 0)
        d->next_attempt_ms = col_int(r, 7);
    d->created_ms = col_int(r, 8);
    d->updated_ms = col_int(r, 9);
    d->last_attempt_ms = col_int(r, 10); /* NULL (no attempt) reads as 0 */
    d->last_http_status = (int)col_int(r, 11);
    return 0;
}

static int pg_delivery_list(struct vh_store *st, const char *partner_id, const char *endpoint_id,
                            const char *state, size_t limit, size_t offset,
                            struct vh_delivery_info **out, size_t *n, size_t *total,
                            struct vh_error *err)
{
    struct pg_store *s = to_pg(st);
    struct vh_delivery_info *arr = NULL;
    struct vh_endpoint ep;
    char what[WHAT_MAX];
    PGresult *res = NULL;
    struct row r = {NULL, 0, what};
    struct params p;
    size_t len = 0;
    int64_t all = 0;
    enum stmt_id count_id, list_id;
    struct conn *c;
    void *mem;
    int rc;

    snprintf(what, sizeof(what), "list deliveries of endpoint '%s'", endpoint_id);
    rc = conn_get(s, &c, err);
    if (rc < 0)
        return rc;
    /* One snapshot: the endpoint check, the total and the page agree. */
    rc = tx_begin_read(c, what, err);
    if (rc == 0)
        rc = endpoint_lookup(c, S_EP_GET, partner_id, endpoint_id, &ep, what, err);
    /* In flight and succeeded are named in their statements; the other states are $2/$4. */
    if (!state) {
        count_id = S_DLV_LIST_COUNT;
        list_id = S_DLV_LIST;
    } else if (strcmp(state, "in_flight") == 0) {
        count_id = S_DLV_LIST_COUNT_IN_FLIGHT;
        list_id = S_DLV_LIST_IN_FLIGHT;
        state = NULL;
    } else if (strcmp(state, "succeeded") == 0) {
        count_id = S_DLV_LIST_COUNT_SUCCEEDED;
        list_id = S_DLV_LIST_SUCCEEDED;
        state = NULL;
    } else {
        count_id = S_DLV_LIST_COUNT_STATE;
        list_id = S_DLV_LIST_STATE;
    }
    if (rc == 0) {
        p_init(&p);
        p_text(&p, endpoint_id);
        if (state)
            p_text(&p, state);
        rc = run_int(c, count_id, &p, &all, what, err);
    }
    if (rc == 0) {
        p_init(&p);
        p_text(&p, endpoint_id);
        p_int(&p, (int64_t)limit);
        p_int(&p, (int64_t)offset);
        if (state)
            p_text(&p, state);
        rc = run(c, list_id, &p, &res, what, err);
    }
    if (rc == 0)
        rc = tx_commit(c, what, err);
    conn_put(s, c);
    if (rc < 0) {
        PQclear(res);
        return rc;
    }
    r.res = res;
    rc = array_for((size_t)PQntuples(res), sizeof(*arr), &mem, what, err);
    arr = mem;
    for (r.i = 0; rc == 0 && r.i < PQntuples(res); r.i++) {
        rc = row_info(&r, &arr[len], err);
        if (rc == 0)
            len++;
    }
    PQclear(res);
    if (rc < 0) {
        vh_free(arr);
        return rc;
    }
    *out = arr;
    *n = len;
    *total = all > 0 ? (size_t)all : 0;
    return 0;
}

static int row_attempt(const struct row *r, struct vh_attempt_info *a, struct vh_error *err)
{
    int64_t n;
    int len, rc;

    n = col_int(r, 0);
    if (n < 1 || n > INT32_MAX)
        return vh_error_set(err, VH_ESTORE, "%s: stored attempt number %lld is out of range",
                            r->what, (long long)n);
    a->n = (unsigned)n;
    a->started_ms = col_int(r, 1);
    a->duration_ms = col_int(r, 2);
    a->http_status = (int)col_int(r, 3);
    rc = col_text(r, 4, a->error_class, sizeof(a->error_class), "error class", err);
    if (rc == 0)
        rc = col_text(r, 5, a->error, sizeof(a->error), "error", err);
    if (rc < 0)
        return rc;
    len = col_is_null(r, 6) ? 0 : PQgetlength(r->res, r->i, 6);
    if (len < 0 || len > VH_STORED_HEAD_MAX)
        return vh_error_set(err, VH_ESTORE, "%s: stored response head is %d bytes, over %d",
                            r->what, len, VH_STORED_HEAD_MAX);
    if (len > 0)
        memcpy(a->response_head, PQgetvalue(r->res, r->i, 6), (size_t)len);
    a->response_len = (size_t)len;
    a->response_head[len] = '\0';
    return 0;
}

static int pg_delivery_get(struct vh_store *st, const char *partner_id, const char *delivery_id,
                           struct vh_delivery_info *out, struct vh_attempt_info **attempts,
                           size_t *n_attempts, size_t *older, struct vh_error *err)
{
    struct pg_store *s = to_pg(st);
    struct vh_attempt_info *arr = NULL;
    PGresult *res = NULL, *ares = NULL;
    char what[WHAT_MAX];
    struct row r = {NULL, 0, what};
    struct params p;
    size_t len = 0, rows = 0;
    int64_t total = 0;
    struct conn *c;
    void *mem;
    int rc;

    snprintf(what, sizeof(what), "get delivery '%s'", delivery_id);
    rc = conn_get(s, &c, err);
    if (rc < 0)
        return rc;
    rc = tx_begin_read(c, what, err);
    if (rc == 0) {
        p_init(&p);
        p_text(&p, delivery_id);
        p_text(&p, partner_id);
        rc = run(c, S_DLV_GET, &p, &res, what, err);
    }
    if (rc == 0 && PQntuples(res) == 0)
        rc = vh_error_set(err, VH_ENOTFOUND, "delivery '%s' not found", delivery_id);
    if (rc == 0) {
        p_init(&p);
        p_text(&p, delivery_id);
        p_int(&p, VH_HISTORY_ATTEMPTS_MAX);
        rc = run(c, S_ATTEMPTS_OF, &p, &ares, what, err);
    }
    if (rc == 0)
        rc = tx_commit(c, what, err);
    conn_put(s, c);
    if (rc == 0) {
        r.res = res;
        rc = row_info(&r, out, err);
    }
    if (rc == 0) {
        rows = (size_t)PQntuples(ares);
        rc = array_for(rows, sizeof(*arr), &mem, what, err);
    }
    if (rc == 0) {
        arr = mem;
        r.res = ares;
        /* Newest first in the result: the oldest goes first in the array. */
        for (r.i = 0; rc == 0 && r.i < PQntuples(ares); r.i++) {
            rc = row_attempt(&r, &arr[rows - 1 - len], err);
            if (rc == 0) {
                total = col_int(&r, 7);
                len++;
            }
        }
    }
    if (rc == 0 && len > 0 && (total < 0 || (uint64_t)total < len))
        rc = vh_error_set(err, VH_ESTORE, "%s: %lld attempts counted, %zu read", what,
                          (long long)total, len);
    PQclear(res);
    PQclear(ares);
    if (rc < 0) {
        vh_free(arr);
        return rc;
    }
    *attempts = arr;
    *n_attempts = len;
    *older = len > 0 ? (size_t)total - len : 0;
    return 0;
}

/*
 * Locks the endpoint (shared) before the delivery, the order of every writer: an endpoint
 * disabled meanwhile waits for this commit, then cancels the delivery made pending here.
 */
static int pg_delivery_retry(struct vh_store *st, const char *partner_id, const char *delivery_id,
                             int64_t now_ms, struct vh_error *err)
{
    struct pg_store *s = to_pg(st);
    char state[VH_DELIVERY_STATE_MAX + 1], endpoint_id[VH_UUID_LEN + 1];
    char what[WHAT_MAX];
    PGresult *res = NULL;
    struct row r = {NULL, 0, what};
    bool enabled, deleted;
    struct params p;
    struct conn *c;
    int rc;

    snprintf(what, sizeof(what), "retry delivery '%s'", delivery_id);
    rc = conn_get(s, &c, err);
    if (rc < 0)
        return rc;
    rc = tx_begin_write(c, what, err);
    if (rc == 0) {
        p_init(&p);
        p_text(&p, delivery_id);
        p_text(&p, partner_id);
        rc = run(c, S_RETRY_ENDPOINT, &p, &res, what, err);
    }
    if (rc == 0 && PQntuples(res) == 0)
        rc = vh_error_set(err, VH_ENOTFOUND, "delivery '%s' not found", delivery_id);
    r.res = res;
    if (rc == 0)
        rc = col_text(&r, 0, endpoint_id, sizeof(endpoint_id), "endpoint id", err);
    PQclear(res);
    res = NULL;
    if (rc == 0) {
        p_init(&p);
        p_text(&p, endpoint_id);
        rc = run(c, S_RETRY_LOCK_ENDPOINT, &p, &res, what, err);
    }
    if (rc == 0 && PQntuples(res) != 1)
        rc = vh_error_set(err, VH_ESTORE, "%s: endpoint '%s' vanished", what, endpoint_id);
    if (rc < 0)
        goto out;
    r.res = res;
    enabled = col_int(&r, 0) != 0;
    deleted = col_int(&r, 1) != 0;
    PQclear(res);
    res = NULL;
    p_init(&p);
    p_text(&p, delivery_id);
    rc = run(c, S_RETRY_LOCK_DELIVERY, &p, &res, what, err);
    if (rc == 0 && PQntuples(res) != 1)
        rc = vh_error_set(err, VH_ESTORE, "%s: the delivery vanished", what);
    r.res = res;
    if (rc == 0)
        rc = col_text(&r, 0, state, sizeof(state), "state", err);
    if (rc < 0)
        goto out;
    /* A pending delivery always has a live, enabled endpoint: the claim relies on it. */
    if (strcmp(state, "pending") == 0 || strcmp(state, "in_flight") == 0)
        rc = vh_error_set(err, VH_ECONFLICT, "delivery '%s' is already pending", delivery_id);
    else if (deleted)
        rc = vh_error_set(err, VH_ECONFLICT, "endpoint '%s' was deleted", endpoint_id);
    else if (!enabled)
        rc = vh_error_set(err, VH_ECONFLICT, "endpoint '%s' is disabled", endpoint_id);
    if (rc == 0) {
        p_init(&p);
        p_text(&p, delivery_id);
        p_int(&p, now_ms);
        rc = run_write(c, S_RETRY, &p, NULL, what, err);
    }
    if (rc == 0)
        rc = run_cmd(c, "SELECT pg_notify('" WAKE_CHANNEL "', '')", NULL, what, err);
    if (rc == 0)
        rc = tx_commit(c, what, err);
out:
    PQclear(res);
    conn_put(s, c);
    return rc;
}

/*
 * The ids of the partner's events accepted in [since, until] (at most VH_REPLAY_MAX), and
 * new delivery ids for them, as the two array literals S_DLV_INSERT_MANY takes.
 */
static int replay_lists(struct conn *c, const char *partner_id, int64_t since_ms, int64_t until_ms,
                        struct vh_buf *events, struct vh_buf *ids, size_t *n, const char *what,
                        struct vh_error *err)
{
    char id[VH_UUID_LEN + 1], event_id[VH_UUID_LEN + 1];
    PGresult *res = NULL;
    struct row r = {NULL, 0, what};
    struct params p;
    int rc;

    p_init(&p);
    p_text(&p, partner_id);
    p_int(&p, since_ms);
    p_int(&p, until_ms);
    p_int(&p, (int64_t)VH_REPLAY_MAX + 1); /* one more, to see the range is too big */
    rc = run(c, S_REPLAY_EVENTS, &p, &res, what, err);
    if (rc < 0)
        return rc;
    if (PQntuples(res) > VH_REPLAY_MAX) {
        rc = vh_error_set(err, VH_ETOOBIG,
                          "%s: more than %d events in the range; replay a shorter one", what,
                          VH_REPLAY_MAX);
        goto out;
    }
    r.res = res;
    for (r.i = 0; rc == 0 && r.i < PQntuples(res); r.i++) {
        rc = col_text(&r, 0, event_id, sizeof(event_id), "event id", err);
        if (rc == 0)
            rc = vh_uuid_new(id, err);
        if (rc < 0)
            break;
        rc = vh_buf_addf(events, "%s%s", r.i ? "," : "{", event_id);
        if (rc == 0)
            rc = vh_buf_addf(ids, "%s%s", r.i ? "," : "{", id);
        if (rc < 0)
            rc = vh_error_set(err, rc, "%s: %s", what, vh_strerror(rc));
    }
    if (rc == 0 && (vh_buf_adds(events, PQntuples(res) ? "}" : "{}") < 0 ||
                    vh_buf_adds(ids, PQntuples(res) ? "}" : "{}") < 0))
        rc = vh_error_set(err, VH_ENOMEM, "%s: out of memory", what);
    if (rc == 0)
        *n = (size_t)PQntuples(res);
out:
    PQclear(res);
    return rc;
}

static int pg_endpoint_replay(struct vh_store *st, const char *partner_id, const char *endpoint_id,
                              int64_t since_ms, int64_t until_ms, int64_t now_ms, size_t *created,
                              struct vh_error *err)
{
    const size_t list_max = (size_t)VH_REPLAY_MAX * (VH_UUID_LEN + 1) + 2;
    struct vh_buf events = VH_BUF_INIT(list_max), ids = VH_BUF_INIT(list_max);
    struct pg_store *s = to_pg(st);
    struct vh_endpoint ep;
    char what[WHAT_MAX];
    struct params p;
    size_t n = 0;
    struct conn *c;
    int rc;

    snprintf(what, sizeof(what), "replay to endpoint '%s'", endpoint_id);
    rc = conn_get(s, &c, err);
    if (rc < 0)
        return rc;
    rc = tx_begin_write(c, what, err);
    /* Shared lock: the endpoint stays enabled until the new deliveries commit. */
    if (rc == 0)
        rc = endpoint_lookup(c, S_EP_GET_SHARE, partner_id, endpoint_id, &ep, what, err);
    if (rc == 0 && !ep.enabled)
        rc = vh_error_set(err, VH_ECONFLICT, "endpoint '%s' is disabled", endpoint_id);
    if (rc == 0)
        rc = replay_lists(c, partner_id, since_ms, until_ms, &events, &ids, &n, what, err);
    if (rc == 0 && n > 0) {
        p_init(&p);
        p_text(&p, vh_buf_cstr(&ids));
        p_text(&p, vh_buf_cstr(&events));
        p_text(&p, endpoint_id);
        p_text(&p, partner_id);
        p_int(&p, now_ms);
        rc = run_write(c, S_DLV_INSERT_MANY, &p, NULL, what, err);
    }
    if (rc == 0)
        rc = tx_commit(c, what, err);
    if (rc == 0)
        *created = n;
    conn_put(s, c);
    vh_buf_release(&events);
    vh_buf_release(&ids);
    return rc;
}

/* ---- counts ---------------------------------------------------------------------------------- */

static int pg_count(struct vh_store *st, enum vh__store_table table, int64_t *out,
                    struct vh_error *err)
{
    struct pg_store *s = to_pg(st);
    enum stmt_id id;
    struct conn *c;
    int rc;

    switch (table) {
    case VH__TABLE_PARTNERS:
        id = S_COUNT_PARTNERS;
        break;
    case VH__TABLE_API_KEYS:
        id = S_COUNT_API_KEYS;
        break;
    case VH__TABLE_ENDPOINTS:
        id = S_COUNT_ENDPOINTS;
        break;
    case VH__TABLE_EVENTS:
        id = S_COUNT_EVENTS;
        break;
    case VH__TABLE_DELIVERIES:
        id = S_COUNT_DELIVERIES;
        break;
    case VH__TABLE_ATTEMPTS:
        id = S_COUNT_ATTEMPTS;
        break;
    default:
        return vh_error_set(err, VH_EINVAL, "count: unknown table");
    }
    rc = conn_get(s, &c, err);
    if (rc < 0)
        return rc;
    rc = run_int(c, id, NULL, out, "count rows", err);
    conn_put(s, c);
    return rc;
}

/* ---- shared rate windows ---------------------------------------------------------------- */

/*
 * One transaction: lock (or create) the key's row, decide with vh_rate_apply, write the
 * window back. Counts need not survive a crash, so the commit does not wait for the WAL
 * flush (synchronous_commit off for this transaction only). At most once a minute per
 * process, windows that ended over a minute ago are swept, after the commit.
 */
static int pg_rate_take(struct vh_store *st, const char *key_hash, const struct vh_rate_limits *lim,
                        bool calls, int64_t now_ms, int *wait_s, struct vh_rate_window *window,
                        struct vh_error *err)
{
    struct pg_store *s = to_pg(st);
    const char *what = "rate limit";
    PGresult *res = NULL;
    struct row r = {NULL, 0, what};
    struct params p;
    struct conn *c;
    bool sweep;
    int rc, tries;

    rc = conn_get(s, &c, err);
    if (rc < 0)
        return rc;
    for (tries = 1;; tries++) {
        rc = run_cmd(c, "BEGIN; SET LOCAL synchronous_commit TO off", NULL, what, err);
        if (rc == 0) {
            p_init(&p);
            p_text(&p, key_hash);
            rc = run(c, S_RATE_LOCK, &p, &res, what, err);
        }
        if (rc == 0 && PQntuples(res) != 1)
            rc = vh_error_set(err, VH_ESTORE, "%s: the key's window vanished", what);
        if (rc == 0) {
            r.res = res;
            window->general_start_ms = col_int(&r, 0);
            window->general_count = col_int(&r, 1);
            window->calls_start_ms = col_int(&r, 2);
            window->calls_count = col_int(&r, 3);
            *wait_s = vh_rate_apply(window, lim, calls, now_ms);
            p_init(&p);
            p_text(&p, key_hash);
            p_int(&p, window->general_start_ms);
            p_int(&p, window->general_count);
            p_int(&p, window->calls_start_ms);
            p_int(&p, window->calls_count);
            rc = run_write(c, S_RATE_SET, &p, NULL, what, err);
        }
        PQclear(res);
        res = NULL;
        if (rc == 0)
            rc = tx_commit(c, what, err);
        if (rc == 0 || tries == TX_TRIES || !tx_is_retryable(c))
            break;
        tx_rollback(c);
        vh_error_clear(err);
    }
    if (rc == 0) {
        pthread_mutex_lock(&s->mu);
        sweep = now_ms - s->rate_gc_ms >= RATE_GC_MS;
        if (sweep)
            s->rate_gc_ms = now_ms;
        pthread_mutex_unlock(&s->mu);
        if (sweep) {
            struct vh_error gc_err = VH_ERROR_INIT;

            /* Best effort: a failed sweep only leaves rows for the next one. */
            p_init(&p);
            p_int(&p, now_ms - 2 * VH_RATE_WINDOW_MS);
            (void)run_write(c, S_RATE_GC, &p, NULL, what, &gc_err);
        }
    }
    conn_put(s, c);
    return rc;
}

/* ---- wake-ups: LISTEN on a connection of the watcher's own ---------------------------------- */

struct watcher {
    pthread_t thread;
    int stop_pipe[2]; /* a byte on [1] stops the thread */
    char *url;
    /*
     * Held by the thread while it calls a callback, and by vh_store_watch(_endpoints) to
     * change one: once a callback is set to NULL here it can no longer run. The thread
     * LISTENs on both channels whatever is set, so changing a callback needs no reconnect.
     */
    pthread_mutex_t mu;
    void (*on_due)(void *ud); /* NULL: wake-ups are ignored */
    void *due_ud;
    void (*on_endpoint)(void *ud, const char *endpoint_id); /* NULL: endpoint changes are ignored */
    void *endpoint_ud;
};

/* Waits up to `ms` for the stop pipe; true when the watcher is to stop. */
static bool watch_stopped(struct watcher *w, int other_fd, int ms, bool *other_ready)
{
    struct pollfd fds[2] = {{w->stop_pipe[0], POLLIN, 0}, {other_fd, POLLIN, 0}};
    int n = poll(fds, other_fd >= 0 ? 2 : 1, ms);

    if (other_ready)
        *other_ready = n > 0 && other_fd >= 0 && (fds[1].revents & (POLLIN | POLLERR | POLLHUP));
    return n > 0 && (fds[0].revents & (POLLIN | POLLERR | POLLHUP));
}

static void watch_call_due(struct watcher *w)
{
    pthread_mutex_lock(&w->mu);
    if (w->on_due)
        w->on_due(w->due_ud);
    pthread_mutex_unlock(&w->mu);
}

/* Calls on_endpoint with `endpoint_id`, or NULL: any endpoint may have changed. */
static void watch_call_endpoint(struct watcher *w, const char *endpoint_id)
{
    pthread_mutex_lock(&w->mu);
    if (w->on_endpoint)
        w->on_endpoint(w->endpoint_ud, endpoint_id);
    pthread_mutex_unlock(&w->mu);
}

/*
 * Calls on_endpoint for each endpoint change received, in order, and on_due once when
 * wake-ups came too (identical ones fold into one).
 */
static void watch_dispatch(struct watcher *w, struct conn *c)
{
    PGnotify *note;
    bool due = false;

    while ((note = PQnotifies(c->pg)) != NULL) {
        if (strcmp(note->relname, ENDPOINT_CHANNEL) != 0) {
            due = true;
        } else if (note->extra[0] != '\0') {
            watch_call_endpoint(w, note->extra);
        }
        PQfreemem(note);
    }
    if (due)
        watch_call_due(w);
}

/*
 * Connects, LISTENs, calls on_due for every batch of wake-ups and on_endpoint for every
 * endpoint change, and both once after each connect: notifications sent while it was not
 * listening are lost, so on_due (something may be due) and on_endpoint(NULL) (any endpoint
 * may have changed) stand for them. A broken connection is dropped and made again after a
 * backoff that doubles up to WATCH_BACKOFF_MAX_MS.
 */
static void *watch_main(void *arg)
{
    struct watcher *w = arg;
    int backoff = WATCH_BACKOFF_MS;

    vh__thread_name("vh-pg-watch");
    for (;;) {
        struct vh_error err = VH_ERROR_INIT;
        struct conn *c = NULL;
        bool ready = false, alive;

        if (conn_open(w->url, &c, &err) == 0 &&
            run_cmd(c, "LISTEN " WAKE_CHANNEL, NULL, "listen", &err) == 0 &&
            run_cmd(c, "LISTEN " ENDPOINT_CHANNEL, NULL, "listen", &err) == 0) {
            backoff = WATCH_BACKOFF_MS;
            watch_call_endpoint(w, NULL);
            watch_call_due(w);
            for (alive = true; alive;) {
                if (watch_stopped(w, PQsocket(c->pg), -1, &ready)) {
                    conn_close(c);
                    return NULL;
                }
                if (!ready)
                    continue;
                alive = PQconsumeInput(c->pg) == 1 && PQstatus(c->pg) == CONNECTION_OK;
                watch_dispatch(w, c);
            }
        }
        conn_close(c);
        if (watch_stopped(w, -1, backoff, NULL))
            return NULL;
        backoff = backoff * 2 > WATCH_BACKOFF_MAX_MS ? WATCH_BACKOFF_MAX_MS : backoff * 2;
    }
}

static void watcher_stop(struct watcher *w)
{
    char b = 1;

    if (!w)
        return;
    while (write(w->stop_pipe[1], &b, 1) < 0 && errno == EINTR)
        ;
    pthread_join(w->thread, NULL);
    close(w->stop_pipe[0]);
    close(w->stop_pipe[1]);
    pthread_mutex_destroy(&w->mu);
    vh_free(w->url);
    vh_free(w);
}

static int watcher_start(struct pg_store *s, struct watcher **out, struct vh_error *err)
{
    struct watcher *w;

    w = vh_malloc(sizeof(*w));
    if (!w)
        return vh_error_set(err, VH_ENOMEM, "watch: out of memory");
    memset(w, 0, sizeof(*w));
    w->url = vh_strndup(s->url, strlen(s->url));
    if (!w->url) {
        vh_free(w);
        return vh_error_set(err, VH_ENOMEM, "watch: out of memory");
    }
    if (pthread_mutex_init(&w->mu, NULL) != 0) {
        vh_free(w->url);
        vh_free(w);
        return vh_error_set(err, VH_ENOMEM, "watch: cannot create a mutex");
    }
    if (pipe(w->stop_pipe) != 0) {
        pthread_mutex_destroy(&w->mu);
        vh_free(w->url);
        vh_free(w);
        return vh_error_set(err, VH_EIO, "watch: pipe: %s", strerror(errno));
    }
    (void)fcntl(w->stop_pipe[0], F_SETFD, FD_CLOEXEC);
    (void)fcntl(w->stop_pipe[1], F_SETFD, FD_CLOEXEC);
    /* Locked until the caller has set its callback: the thread's first call sees it. */
    pthread_mutex_lock(&w->mu);
    if (pthread_create(&w->thread, NULL, watch_main, w) != 0) {
        pthread_mutex_unlock(&w->mu);
        close(w->stop_pipe[0]);
        close(w->stop_pipe[1]);
        pthread_mutex_destroy(&w->mu);
        vh_free(w->url);
        vh_free(w);
        return vh_error_set(err, VH_EIO, "watch: cannot start a thread");
    }
    *out = w;
    return 0;
}

/*
 * Sets one of the watcher's callbacks (`which` 0: on_due, 1: on_endpoint), starting the
 * watcher if none runs, stopping it when neither is set any more. Returns once a callback
 * replaced can no longer run.
 */
static int watch_set(struct pg_store *s, int which, void (*on_due)(void *ud),
                     void (*on_endpoint)(void *ud, const char *endpoint_id), void *ud,
                     struct vh_error *err)
{
    struct watcher *w = s->watcher;
    bool idle;
    int rc;

    if (!w) {
        if (!on_due && !on_endpoint)
            return 0;
        rc = watcher_start(s, &w, err); /* returns with w->mu held */
        if (rc < 0)
            return rc;
        s->watcher = w;
    } else {
        pthread_mutex_lock(&w->mu);
    }
    if (which == 0) {
        w->on_due = on_due;
        w->due_ud = on_due ? ud : NULL;
    } else {
        w->on_endpoint = on_endpoint;
        w->endpoint_ud = on_endpoint ? ud : NULL;
    }
    idle = !w->on_due && !w->on_endpoint;
    pthread_mutex_unlock(&w->mu);
    if (idle) {
        watcher_stop(w);
        s->watcher = NULL;
    }
    return 0;
}

static int pg_watch(struct vh_store *st, void (*on_due)(void *ud), void *ud, struct vh_error *err)
{
    return watch_set(to_pg(st), 0, on_due, NULL, ud, err);
}

static int pg_watch_endpoints(struct vh_store *st,
                              void (*on_changed)(void *ud, const char *endpoint_id), void *ud,
                              struct vh_error *err)
{
    int rc = watch_set(to_pg(st), 1, NULL, on_changed, ud, err);

    return rc < 0 ? rc : on_changed != NULL;
}

const struct vh_store_ops vh__store_postgres_ops = {
    .name = "postgres",
    .open = pg_open,
    .close = pg_close,
    .schema_version = pg_schema_version,
    .partner_create = pg_partner_create,
    .partner_list = pg_partner_list,
    .partner_get = pg_partner_get,
    .partner_rotate_key = pg_partner_rotate_key,
    .partner_by_key = pg_partner_by_key,
    .endpoint_create = pg_endpoint_create,
    .endpoint_get = pg_endpoint_get,
    .endpoint_get_by_label = pg_endpoint_get_by_label,
    .endpoint_list = pg_endpoint_list,
    .endpoint_update = pg_endpoint_update,
    .endpoint_delete = pg_endpoint_delete,
    .event_put = pg_event_put,
    .call_get = pg_call_get,
    .call_list = pg_call_list,
    .event_deliveries = pg_event_deliveries,
    .count = pg_count,
    .delivery_claim = pg_delivery_claim,
    .delivery_record = pg_delivery_record,
    .delivery_recover = pg_delivery_recover,
    .delivery_next_due = pg_delivery_next_due,
    .delivery_stats = pg_delivery_stats,
    .delivery_counts = pg_delivery_counts,
    .delivery_list = pg_delivery_list,
    .delivery_get = pg_delivery_get,
    .delivery_retry = pg_delivery_retry,
    .endpoint_replay = pg_endpoint_replay,
    .rate_take = pg_rate_take,
    .watch = pg_watch,
    .watch_endpoints = pg_watch_endpoints,
};

/* ---- for tests ------------------------------------------------------------------------------- */

int vh__store_pg_exec(struct vh_store *st, const char *sql, struct vh_buf *out,
                      struct vh_error *err)
{
    struct pg_store *s;
    struct conn *c;
    PGresult *res;
    char line[200];
    int rc = 0;

    if (!st || !sql || st->ops != &vh__store_postgres_ops)
        return vh_error_set(err, VH_EINVAL, "exec: not a postgres store");
    s = to_pg(st);
    rc = conn_get(s, &c, err);
    if (rc < 0)
        return rc;
    res = PQexec(c->pg, sql);
    if (!res ||
        (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK)) {
        rc = vh_error_set(err, VH_ESTORE, "exec: %s",
                          first_line(res ? PQresultErrorMessage(res) : PQerrorMessage(c->pg), line,
                                     sizeof(line)));
    } else if (out && PQntuples(res) > 0 && PQnfields(res) > 0) {
        rc = vh_buf_adds(out, PQgetvalue(res, 0, 0));
        if (rc < 0)
            rc = vh_error_set(err, rc, "exec: %s", vh_strerror(rc));
    }
    PQclear(res);
    conn_put(s, c);
    return rc;
}

int vh__store_pg_socket_opts(struct vh_store *st, struct vh__pg_socket_opts *out,
                             struct vh_error *err)
{
    struct pg_store *s;
    struct conn *c;
    socklen_t len;
    int fd, rc;

    if (!st || !out || st->ops != &vh__store_postgres_ops)
        return vh_error_set(err, VH_EINVAL, "socket options: not a postgres store");
    s = to_pg(st);
    rc = conn_get(s, &c, err);
    if (rc < 0)
        return rc;
    fd = PQsocket(c->pg);
    memset(out, 0, sizeof(*out));
    {
        const struct {
            int level, name;
            int *val;
        } opts[] = {{SOL_SOCKET, SO_KEEPALIVE, &out->keepalive},
                    {IPPROTO_TCP, TCP_KEEPIDLE, &out->keepidle},
                    {IPPROTO_TCP, TCP_KEEPINTVL, &out->keepintvl},
                    {IPPROTO_TCP, TCP_KEEPCNT, &out->keepcnt},
                    {IPPROTO_TCP, TCP_USER_TIMEOUT, &out->user_timeout_ms}};
        size_t i;

        for (i = 0, rc = 0; rc == 0 && i < sizeof(opts) / sizeof(opts[0]); i++) {
            len = sizeof(*opts[i].val);
            rc = getsockopt(fd, opts[i].level, opts[i].name, opts[i].val, &len);
        }
    }
    if (rc != 0)
        rc = vh_error_set(err, VH_EIO, "socket options: %s", strerror(errno));
    conn_put(s, c);
    return rc;
}

/* The statements vh__store_pg_explain knows, by name (as sqlite.c's). */
static const struct {
    const char *name;
    enum stmt_id id;
} explainable[] = {
    {"list_by_state", S_DLV_LIST_STATE},
    {"list_in_flight", S_DLV_LIST_IN_FLIGHT},
    {"list_succeeded", S_DLV_LIST_SUCCEEDED},
    {"count_by_state", S_DLV_LIST_COUNT_STATE},
    {"count_in_flight", S_DLV_LIST_COUNT_IN_FLIGHT},
    {"count_succeeded", S_DLV_LIST_COUNT_SUCCEEDED},
    {"cancel", S_DLV_CANCEL},
    {"attempts_of", S_ATTEMPTS_OF},
    {"claim", S_CLAIM},
};

int vh__store_pg_explain(struct vh_store *st, const char *query, struct vh_buf *out,
                         struct vh_error *err)
{
    struct vh_buf sql = VH_BUF_INIT(8192);
    PGresult *res = NULL;
    struct pg_store *s;
    struct conn *c;
    char line[200];
    size_t i;
    int rc, n, k;

    if (!st || !query || !out || st->ops != &vh__store_postgres_ops)
        return vh_error_set(err, VH_EINVAL, "explain: not a postgres store");
    for (i = 0; i < sizeof(explainable) / sizeof(explainable[0]); i++)
        if (strcmp(query, explainable[i].name) == 0)
            break;
    if (i == sizeof(explainable) / sizeof(explainable[0]))
        return vh_error_set(err, VH_ENOTFOUND, "explain: unknown query '%s'", query);
    s = to_pg(st);
    rc = conn_get(s, &c, err);
    if (rc < 0)
        return rc;
    /* A generic plan, as a prepared statement gets once PostgreSQL stops planning per call. */
    res = PQexec(c->pg, "SET plan_cache_mode = force_generic_plan");
    if (PQresultStatus(res) == PGRES_COMMAND_OK) {
        PQclear(res);
        res = PQprepare(c->pg, "vh_explain", stmt_sql[explainable[i].id], 0, NULL);
    }
    if (PQresultStatus(res) == PGRES_COMMAND_OK) {
        PQclear(res);
        res = PQdescribePrepared(c->pg, "vh_explain");
    }
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        rc = vh_error_set(err, VH_ESTORE, "explain '%s': %s", query,
                          first_line(PQresultErrorMessage(res), line, sizeof(line)));
        goto out;
    }
    /* Every parameter NULL: a generic plan does not look at them. */
    n = PQnparams(res);
    rc = vh_buf_adds(&sql, "EXPLAIN EXECUTE vh_explain");
    for (k = 0; rc == 0 && k < n; k++)
        rc = vh_buf_adds(&sql, k ? ", NULL" : "(NULL");
    if (rc == 0 && n > 0)
        rc = vh_buf_addc(&sql, ')');
    PQclear(res);
    res = NULL;
    if (rc < 0) {
        rc = vh_error_set(err, rc, "explain '%s': %s", query, vh_strerror(rc));
        goto out;
    }
    res = PQexec(c->pg, sql.data);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        rc = vh_error_set(err, VH_ESTORE, "explain '%s': %s", query,
                          first_line(PQresultErrorMessage(res), line, sizeof(line)));
        goto out;
    }
    for (k = 0; rc == 0 && k < PQntuples(res); k++) {
        rc = vh_buf_adds(out, PQgetvalue(res, k, 0));
        if (rc == 0)
            rc = vh_buf_addc(out, '\n');
    }
    if (rc < 0)
        rc = vh_error_set(err, rc, "explain '%s': %s", query, vh_strerror(rc));
out:
    PQclear(res);
    PQclear(PQexec(c->pg, "DEALLOCATE vh_explain"));
    PQclear(PQexec(c->pg, "RESET plan_cache_mode"));
    conn_put(s, c);
    vh_buf_release(&sql);
    return rc;
}
