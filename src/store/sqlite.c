/*
 * The SQLite store backend: a database file in WAL mode behind a small connection pool.
 *
 * Threads: a `struct sqlite_store` is shared by every thread of the process (libmicrohttpd
 * calls from its pool, the delivery engine from its own thread). Each `sqlite3 *` belongs
 * to exactly one thread at a time: an operation borrows a connection from the pool for its
 * whole duration (conn_get), and gives it back, with no transaction open and every
 * statement reset, when it ends (conn_put). That is why connections are opened with
 * SQLITE_OPEN_NOMUTEX: SQLite's per-connection mutex would only guard what the pool
 * already guarantees. An operation never holds two connections, so the pool cannot
 * deadlock; a caller waits on the condition variable when all POOL_MAX are busy.
 *
 * Writers serialize on SQLite's write lock: every write transaction starts with
 * BEGIN IMMEDIATE, which takes that lock up front (waiting up to BUSY_TIMEOUT_MS; the
 * writers of this process first queue for their turn in arrival order, and run on the
 * one writer connection the turn comes with), so a transaction never upgrades from
 * reading to writing halfway and cannot fail with SQLITE_BUSY after it has looked at the
 * data. Readers use the pool's connections and WAL snapshots, and never wait.
 *
 * Durability: journal_mode=WAL with synchronous=FULL makes COMMIT sync the WAL before it
 * returns, so a write call that returned 0 survives a crash or power loss. A claim writes
 * nothing: it is held in the store's memory (held_int.h, sqlite_delivery_claim), and a
 * crash leaves its deliveries pending, to be sent again.
 */
#include "store/store_int.h"
#include "store/held_int.h"
#include "store/readahead_int.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include <sqlite3.h>

#include <vocohook/alloc.h>
#include <vocohook/buf.h>
#include <vocohook/event.h>
#include <vocohook/id.h>

#include "core/group_int.h"
#include "core/banned.h"

#define POOL_MAX        8    /* connections per store */
#define BUSY_TIMEOUT_MS 5000 /* how long a writer waits for the write lock */
#define WHAT_MAX        160  /* "insert event 's1'": the context of error messages */

/* STRICT tables (the schema) arrived in SQLite 3.37.0. */
#define SQLITE_MIN_VERSION 3037000

/* PRAGMA application_id of a vocohook database: "voco" in ASCII. */
#define APPLICATION_ID 0x766f636f

/* ---- schema ------------------------------------------------------------------------------ */

/*
 * Migrations, oldest first. Step i takes the schema from version i to i + 1 and runs in one
 * transaction together with `PRAGMA user_version = i + 1` (user_version lives in the file
 * header and is transactional), so a crash mid-migration leaves the previous version. Never
 * edit a released step; append a new one.
 *
 * Endpoint deletion (decision): a deleted endpoint keeps its row, with deleted_ms set, its
 * secret erased and enabled = 0, and every read filters it out. Its historical deliveries
 * and attempts keep a foreign key to a real row, so the delivery history can still show
 * where a delivery went; dropping the key instead would let a typo in an endpoint id pass
 * silently. Label uniqueness is therefore a partial unique index over live endpoints only,
 * so a label can be reused after its endpoint is deleted.
 *
 * events.fanout is the number of deliveries created with the event: a repeated ingest
 * answers with it, and it stays exact when later replays add deliveries to the event.
 * events.call_status is the wire name ("no_answer"), NULL exactly when call_id is NULL.
 *
 * Version 2 is the delivery engine's: an endpoint's own retry schedule (the policy's text
 * form, NULL for the server's) and attempt timeout (NULL: the server's); a delivery's
 * attempt_base, the attempts made before its last manual retry, so a retry restarts the
 * schedule while attempt numbers stay unique in its history; an attempt's error line; and
 * the history indexes: newest first per endpoint, with and without a state filter.
 * deliveries.attempts is the highest attempt number recorded, so the next attempt is
 * attempts + 1; next_attempt_ms is 0 once a delivery is final.
 */
static const char *const migrations[] = {
    /* 1: the initial schema */
    "PRAGMA application_id = 1987011439;\n" /* APPLICATION_ID in decimal */
    "CREATE TABLE partners (\n"
    "    id         TEXT NOT NULL PRIMARY KEY,\n"
    "    name       TEXT NOT NULL,\n"
    "    created_ms INTEGER NOT NULL\n"
    ") STRICT;\n"
    "CREATE TABLE api_keys (\n"
    "    key_hash   TEXT NOT NULL PRIMARY KEY,\n"
    "    partner_id TEXT NOT NULL REFERENCES partners(id),\n"
    "    created_ms INTEGER NOT NULL,\n"
    "    revoked_ms INTEGER\n"
    ") STRICT;\n"
    "CREATE INDEX api_keys_partner ON api_keys(partner_id);\n"
    "CREATE TABLE endpoints (\n"
    "    id                   TEXT NOT NULL PRIMARY KEY,\n"
    "    partner_id           TEXT NOT NULL REFERENCES partners(id),\n"
    "    label                TEXT NOT NULL,\n"
    "    url                  TEXT NOT NULL,\n"
    "    secret               TEXT NOT NULL,\n"
    "    enabled              INTEGER NOT NULL CHECK (enabled IN (0, 1)),\n"
    "    created_ms           INTEGER NOT NULL,\n"
    "    updated_ms           INTEGER NOT NULL,\n"
    "    last_delivery_ms     INTEGER,\n"
    "    last_delivery_status TEXT CHECK (last_delivery_status IN ('succeeded', 'failed')),\n"
    "    deleted_ms           INTEGER\n"
    ") STRICT;\n"
    "CREATE UNIQUE INDEX endpoints_label ON endpoints(partner_id, label)\n"
    "    WHERE deleted_ms IS NULL;\n"
    "CREATE TABLE events (\n"
    "    id            TEXT NOT NULL PRIMARY KEY,\n"
    "    partner_id    TEXT NOT NULL REFERENCES partners(id),\n"
    "    session_id    TEXT NOT NULL UNIQUE,\n"
    "    call_id       TEXT,\n"
    "    call_status   TEXT,\n"
    "    recording_key TEXT,\n"
    "    body          BLOB NOT NULL,\n"
    "    fanout        INTEGER NOT NULL CHECK (fanout >= 0),\n"
    "    accepted_ms   INTEGER NOT NULL,\n"
    "    CHECK ((call_id IS NULL) = (call_status IS NULL))\n"
    ") STRICT;\n"
    "CREATE INDEX events_partner_time ON events(partner_id, accepted_ms);\n"
    "CREATE INDEX events_partner_call ON events(partner_id, call_id);\n"
    "CREATE TABLE deliveries (\n"
    "    id              TEXT NOT NULL PRIMARY KEY,\n"
    "    event_id        TEXT NOT NULL REFERENCES events(id),\n"
    "    endpoint_id     TEXT NOT NULL REFERENCES endpoints(id),\n"
    "    partner_id      TEXT NOT NULL REFERENCES partners(id),\n"
    "    state           TEXT NOT NULL CHECK (state IN\n"
    "                        ('pending', 'in_flight', 'succeeded', 'abandoned', 'canceled')),\n"
    "    attempts        INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),\n"
    "    next_attempt_ms INTEGER NOT NULL,\n"
    "    created_ms      INTEGER NOT NULL,\n"
    "    updated_ms      INTEGER NOT NULL,\n"
    "    lease_owner     TEXT,\n"
    "    lease_until_ms  INTEGER\n"
    ") STRICT;\n"
    "CREATE INDEX deliveries_due ON deliveries(state, next_attempt_ms);\n"
    "CREATE INDEX deliveries_endpoint ON deliveries(endpoint_id, state);\n"
    "CREATE INDEX deliveries_event ON deliveries(event_id);\n"
    "CREATE TABLE attempts (\n"
    "    delivery_id   TEXT NOT NULL REFERENCES deliveries(id),\n"
    "    n             INTEGER NOT NULL CHECK (n >= 1),\n"
    "    started_ms    INTEGER NOT NULL,\n"
    "    duration_ms   INTEGER NOT NULL CHECK (duration_ms >= 0),\n"
    "    http_status   INTEGER,\n"
    "    error_class   TEXT,\n"
    "    response_head BLOB,\n"
    "    PRIMARY KEY (delivery_id, n)\n"
    ") STRICT;\n",
    /* 2: per-endpoint schedules, retry budgets, attempt errors, history indexes */
    "ALTER TABLE endpoints ADD COLUMN retry_schedule TEXT;\n"
    "ALTER TABLE endpoints ADD COLUMN timeout_ms INTEGER CHECK (timeout_ms > 0);\n"
    "ALTER TABLE deliveries ADD COLUMN attempt_base INTEGER NOT NULL DEFAULT 0\n"
    "    CHECK (attempt_base >= 0);\n"
    "ALTER TABLE attempts ADD COLUMN error TEXT;\n"
    "DROP INDEX deliveries_endpoint;\n"
    "CREATE INDEX deliveries_endpoint ON deliveries(endpoint_id, state, created_ms);\n"
    "CREATE INDEX deliveries_endpoint_time ON deliveries(endpoint_id, created_ms);\n",
    /*
     * 3: deliveries keyed by a sequence the store owns, attempts keyed by it. Every id is a
     * random v4 UUID (the contract), so an index on one takes each insert at a random
     * place: with a large history, each recorded attempt dirtied its own page of the
     * attempts key and searched the deliveries id index at random (bench scenario 5: the
     * CPU per delivery grew with the backlog). Now `seq` (the rowid, made explicit so that
     * VACUUM keeps it) grows with every delivery, attempts are keyed (delivery_seq, n), and
     * the claim hands the seq to the record: both write at the end of their index. The
     * state CHECK is a chain of ORs: SQLite tests an IN list of more than two values with
     * a temporary b-tree built once per statement, which every claim, record and ingest of
     * a delivery paid for. The tables are rebuilt (children first, so no foreign key is
     * ever left dangling); on a large file this takes a while, once.
     */
    "CREATE TABLE deliveries_v3 (\n"
    "    seq             INTEGER PRIMARY KEY,\n"
    "    id              TEXT NOT NULL UNIQUE,\n"
    "    event_id        TEXT NOT NULL REFERENCES events(id),\n"
    "    endpoint_id     TEXT NOT NULL REFERENCES endpoints(id),\n"
    "    partner_id      TEXT NOT NULL REFERENCES partners(id),\n"
    "    state           TEXT NOT NULL CHECK (state = 'pending' OR state = 'in_flight'\n"
    "                        OR state = 'succeeded' OR state = 'abandoned'\n"
    "                        OR state = 'canceled'),\n"
    "    attempts        INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),\n"
    "    attempt_base    INTEGER NOT NULL DEFAULT 0 CHECK (attempt_base >= 0),\n"
    "    next_attempt_ms INTEGER NOT NULL,\n"
    "    created_ms      INTEGER NOT NULL,\n"
    "    updated_ms      INTEGER NOT NULL,\n"
    "    lease_owner     TEXT,\n"
    "    lease_until_ms  INTEGER\n"
    ") STRICT;\n"
    "INSERT INTO deliveries_v3 (seq, id, event_id, endpoint_id, partner_id, state, attempts,\n"
    "    attempt_base, next_attempt_ms, created_ms, updated_ms, lease_owner, lease_until_ms)\n"
    "    SELECT rowid, id, event_id, endpoint_id, partner_id, state, attempts, attempt_base,\n"
    "    next_attempt_ms, created_ms, updated_ms, lease_owner, lease_until_ms\n"
    "    FROM deliveries ORDER BY rowid;\n"
    "CREATE TABLE attempts_v3 (\n"
    "    delivery_seq  INTEGER NOT NULL REFERENCES deliveries_v3(seq),\n"
    "    n             INTEGER NOT NULL CHECK (n >= 1),\n"
    "    started_ms    INTEGER NOT NULL,\n"
    "    duration_ms   INTEGER NOT NULL CHECK (duration_ms >= 0),\n"
    "    http_status   INTEGER,\n"
    "    error_class   TEXT,\n"
    "    error         TEXT,\n"
    "    response_head BLOB,\n"
    "    PRIMARY KEY (delivery_seq, n)\n"
    ") STRICT;\n"
    "INSERT INTO attempts_v3 (delivery_seq, n, started_ms, duration_ms, http_status,\n"
    "    error_class, error, response_head)\n"
    "    SELECT d.seq, a.n, a.started_ms, a.duration_ms, a.http_status, a.error_class,\n"
    "    a.error, a.response_head\n"
    "    FROM attempts AS a JOIN deliveries_v3 AS d ON d.id = a.delivery_id\n"
    "    ORDER BY d.seq, a.n;\n"
    "DROP TABLE attempts;\n"
    "DROP TABLE deliveries;\n"
    "ALTER TABLE deliveries_v3 RENAME TO deliveries;\n"
    "ALTER TABLE attempts_v3 RENAME TO attempts;\n"
    "CREATE INDEX deliveries_due ON deliveries(state, next_attempt_ms);\n"
    "CREATE INDEX deliveries_event ON deliveries(event_id);\n"
    "CREATE INDEX deliveries_endpoint ON deliveries(endpoint_id, state, created_ms);\n"
    "CREATE INDEX deliveries_endpoint_time ON deliveries(endpoint_id, created_ms);\n",
    /*
     * 4: events keyed by a sequence the store owns, deliveries pointing at it. The claim
     * found each delivery's event by its random id (`v.id = d.event_id`), one random leaf of
     * the events id index per delivery, and that index grows with the history (about 50 MB
     * at 1 000 000 events): bench scenario 5's CPU per delivery grew with the backlog again.
     * Now events.seq (the rowid, explicit so that VACUUM keeps it) is what a delivery holds,
     * and every join goes through it: the claim reads events in the order they were
     * accepted. deliveries.event_id is gone (a join gives it), and with it a second index
     * on a random key that every ingest wrote into; deliveries_event is on event_seq, which
     * grows. Both tables are rebuilt under foreign_keys = OFF (migrate() checks every key
     * before the commit), which leaves attempts as they are. The copy's LEFT JOIN makes a
     * delivery whose event is missing (only possible if someone wrote with the keys off)
     * fail the step on event_seq's NOT NULL, rather than drop out of the copy.
     *
     * deliveries_endpoint, which serves the history's state filter, now holds only the
     * states a delivery rests in: pending, abandoned, canceled. With every state in it,
     * each delivery moved its entry twice on the hot path (claimed, succeeded), and that
     * index was a third of the store's CPU per delivery (bench_store: 25-27 us with it,
     * 17-21 us without). Now a delivery leaves it when claimed and comes back only if it
     * fails. In flight is listed from deliveries_due (as many rows as the nodes have in
     * flight), succeeded from deliveries_endpoint_time (the most common state, so a page
     * comes quickly; its count is the endpoint's total less the others).
     */
    "CREATE TABLE events_v4 (\n"
    "    seq           INTEGER PRIMARY KEY,\n"
    "    id            TEXT NOT NULL UNIQUE,\n"
    "    partner_id    TEXT NOT NULL REFERENCES partners(id),\n"
    "    session_id    TEXT NOT NULL UNIQUE,\n"
    "    call_id       TEXT,\n"
    "    call_status   TEXT,\n"
    "    recording_key TEXT,\n"
    "    body          BLOB NOT NULL,\n"
    "    fanout        INTEGER NOT NULL CHECK (fanout >= 0),\n"
    "    accepted_ms   INTEGER NOT NULL,\n"
    "    CHECK ((call_id IS NULL) = (call_status IS NULL))\n"
    ") STRICT;\n"
    "INSERT INTO events_v4 (seq, id, partner_id, session_id, call_id, call_status,\n"
    "    recording_key, body, fanout, accepted_ms)\n"
    "    SELECT rowid, id, partner_id, session_id, call_id, call_status, recording_key, body,\n"
    "    fanout, accepted_ms FROM events ORDER BY rowid;\n"
    "DROP TABLE events;\n"
    "ALTER TABLE events_v4 RENAME TO events;\n"
    "CREATE INDEX events_partner_time ON events(partner_id, accepted_ms);\n"
    "CREATE INDEX events_partner_call ON events(partner_id, call_id);\n"
    "CREATE TABLE deliveries_v4 (\n"
    "    seq             INTEGER PRIMARY KEY,\n"
    "    id              TEXT NOT NULL UNIQUE,\n"
    "    event_seq       INTEGER NOT NULL REFERENCES events(seq),\n"
    "    endpoint_id     TEXT NOT NULL REFERENCES endpoints(id),\n"
    "    partner_id      TEXT NOT NULL REFERENCES partners(id),\n"
    "    state           TEXT NOT NULL CHECK (state = 'pending' OR state = 'in_flight'\n"
    "                        OR state = 'succeeded' OR state = 'abandoned'\n"
    "                        OR state = 'canceled'),\n"
    "    attempts        INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),\n"
    "    attempt_base    INTEGER NOT NULL DEFAULT 0 CHECK (attempt_base >= 0),\n"
    "    next_attempt_ms INTEGER NOT NULL,\n"
    "    created_ms      INTEGER NOT NULL,\n"
    "    updated_ms      INTEGER NOT NULL,\n"
    "    lease_owner     TEXT,\n"
    "    lease_until_ms  INTEGER\n"
    ") STRICT;\n"
    "INSERT INTO deliveries_v4 (seq, id, event_seq, endpoint_id, partner_id, state, attempts,\n"
    "    attempt_base, next_attempt_ms, created_ms, updated_ms, lease_owner, lease_until_ms)\n"
    "    SELECT d.seq, d.id, v.seq, d.endpoint_id, d.partner_id, d.state, d.attempts,\n"
    "    d.attempt_base, d.next_attempt_ms, d.created_ms, d.updated_ms, d.lease_owner,\n"
    "    d.lease_until_ms\n"
    "    FROM deliveries AS d LEFT JOIN events AS v ON v.id = d.event_id ORDER BY d.seq;\n"
    "DROP TABLE deliveries;\n"
    "ALTER TABLE deliveries_v4 RENAME TO deliveries;\n"
    "CREATE INDEX deliveries_due ON deliveries(state, next_attempt_ms);\n"
    "CREATE INDEX deliveries_event ON deliveries(event_seq);\n"
    "CREATE INDEX deliveries_endpoint ON deliveries(endpoint_id, state, created_ms)\n"
    "    WHERE state <> 'in_flight' AND state <> 'succeeded';\n"
    "CREATE INDEX deliveries_endpoint_time ON deliveries(endpoint_id, created_ms);\n",
    /*
     * 5: deliveries_due holds only the deliveries still to be sent: pending and in flight.
     * It held every delivery, so the record of each success moved the row's entry from
     * (pending, due) to (succeeded, 0): an index insert on the hot path, into an index
     * that grew with the whole history, for the one query that read those entries (the
     * store's counts by state, which now take the finished states from the other indexes;
     * S_COUNT_BY_STATE). The claim, the next due time, recovery and the in-flight listings
     * repeat the WHERE (`state = 'pending'` or `'in_flight'` implies it), so SQLite keeps
     * them on it. Measured with bench/duel_drain.sh: docs/BENCHMARKS.md, session 15.
     */
    "DROP INDEX deliveries_due;\n"
    "CREATE INDEX deliveries_due ON deliveries(state, next_attempt_ms)\n"
    "    WHERE state = 'pending' OR state = 'in_flight';\n",
};

#define SCHEMA_VERSION ((int)(sizeof(migrations) / sizeof(migrations[0])))

/* ---- statements ---------------------------------------------------------------------------- */

/* Every statement the backend runs; each connection prepares each one once, on first use. */
enum stmt_id {
    S_BEGIN,
    S_BEGIN_IMMEDIATE,
    S_COMMIT,
    S_ROLLBACK,
    S_SAVEPOINT,
    S_RELEASE,
    S_ROLLBACK_TO,
    S_USER_VERSION,
    S_APPLICATION_ID,
    S_TABLE_COUNT,
    S_PARTNER_INSERT,
    S_PARTNER_LIST,
    S_PARTNER_GET,
    S_KEY_INSERT,
    S_KEY_REVOKE_ALL,
    S_PARTNER_BY_KEY,
    S_EP_COUNT,
    S_EP_LABEL_TAKEN,
    S_EP_INSERT,
    S_EP_GET,
    S_EP_GET_BY_LABEL,
    S_EP_LIST,
    S_EP_UPDATE,
    S_EP_DELETE,
    S_EP_ENABLED_IDS,
    S_DLV_CANCEL_PENDING,
    S_DLV_CANCEL_IN_FLIGHT,
    S_EV_BY_SESSION,
    S_EV_INSERT,
    S_EV_SEQ,
    S_DLV_INSERT,
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
    S_CLAIM_SELECT,
    S_CLAIM_ENDPOINT,
    S_DATA_VERSION,
    S_DLV_SEQ,
    S_ATTEMPT_INSERT,
    S_ATTEMPT_UPSERT,
    S_DLV_FINISH,
    S_DLV_RAISE_ATTEMPTS,
    S_EP_LAST_DELIVERY,
    S_RECOVER,
    S_HELD_RECOVER,
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
    S_RETRY_LOOKUP,
    S_RETRY,
    S_REPLAY_EVENTS,
    S__N
};

#define EP_COLS                                                                                    \
    "id, partner_id, label, url, secret, enabled, created_ms, updated_ms, last_delivery_ms, "      \
    "last_delivery_status, retry_schedule, timeout_ms"
#define CALL_COLS                                                                                  \
    "id, partner_id, session_id, call_id, call_status, accepted_ms, recording_key, body"
/*
 * The state a delivery `d` shows: a pending row under a claim this store holds in memory
 * (vh_held, held_int.h) is in flight.
 */
#define SHOWN_STATE                                                                                \
    "CASE WHEN d.state = 'pending' AND vh_held(d.seq) THEN 'in_flight' ELSE d.state END"
/*
 * A delivery for the history, with its session and its latest attempt (the highest number
 * recorded: a PK seek). FROM deliveries AS d, events AS v, then INFO_JOIN.
 */
#define INFO_COLS                                                                                  \
    "d.id, v.id, d.endpoint_id, v.session_id, " SHOWN_STATE ", d.attempts, d.attempt_base,"        \
    " d.next_attempt_ms, d.created_ms, d.updated_ms, a.started_ms, a.http_status, a.error_class"
/* Endpoint ?1's deliveries in flight: in the file, or held here (?9: a JSON array of seqs). */
#define IN_FLIGHT_WHERE                                                                            \
    " WHERE d.seq IN (SELECT seq FROM deliveries WHERE state = 'in_flight'"                        \
    " UNION ALL SELECT value FROM json_each(?9)) AND +d.endpoint_id = ?1"                          \
    " AND (d.state = 'in_flight' OR (d.state = 'pending' AND vh_held(d.seq)))"
#define INFO_FROM                                                                                  \
    " FROM deliveries AS d JOIN events AS v ON v.seq = d.event_seq"                                \
    " LEFT JOIN attempts AS a ON a.delivery_seq = d.seq"                                           \
    " AND a.n = (SELECT max(n) FROM attempts WHERE delivery_seq = d.seq)"

static const char *const stmt_sql[S__N] = {
    [S_BEGIN] = "BEGIN",
    [S_BEGIN_IMMEDIATE] = "BEGIN IMMEDIATE",
    [S_COMMIT] = "COMMIT",
    [S_ROLLBACK] = "ROLLBACK",
    [S_SAVEPOINT] = "SAVEPOINT put",
    [S_RELEASE] = "RELEASE put",
    [S_ROLLBACK_TO] = "ROLLBACK TO put",
    [S_USER_VERSION] = "PRAGMA user_version",
    [S_APPLICATION_ID] = "PRAGMA application_id",
    [S_TABLE_COUNT] = "SELECT count(*) FROM sqlite_schema WHERE type = 'table'",
    [S_PARTNER_INSERT] = "INSERT INTO partners (id, name, created_ms) VALUES (?1, ?2, ?3)",
    [S_PARTNER_LIST] = "SELECT id, name, created_ms FROM partners ORDER BY created_ms, rowid",
    [S_PARTNER_GET] = "SELECT id, name, created_ms FROM partners WHERE id = ?1",
    [S_KEY_INSERT] = "INSERT INTO api_keys (key_hash, partner_id, created_ms) VALUES (?1, ?2, ?3)",
    [S_KEY_REVOKE_ALL] = "UPDATE api_keys SET revoked_ms = ?2"
                         " WHERE partner_id = ?1 AND revoked_ms IS NULL",
    [S_PARTNER_BY_KEY] = "SELECT p.id, p.name, p.created_ms, k.key_hash"
                         " FROM api_keys AS k JOIN partners AS p ON p.id = k.partner_id"
                         " WHERE k.key_hash = ?1 AND k.revoked_ms IS NULL",
    [S_EP_COUNT] = "SELECT count(*) FROM endpoints WHERE partner_id = ?1 AND deleted_ms IS NULL",
    [S_EP_LABEL_TAKEN] = "SELECT 1 FROM endpoints WHERE partner_id = ?1 AND label = ?2"
                         " AND id <> ?3 AND deleted_ms IS NULL",
    [S_EP_INSERT] = "INSERT INTO endpoints (id, partner_id, label, url, secret, enabled,"
                    " created_ms, updated_ms, retry_schedule, timeout_ms)"
                    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    [S_EP_GET] = "SELECT " EP_COLS " FROM endpoints"
                 " WHERE partner_id = ?1 AND id = ?2 AND deleted_ms IS NULL",
    [S_EP_GET_BY_LABEL] = "SELECT " EP_COLS " FROM endpoints"
                          " WHERE partner_id = ?1 AND label = ?2 AND deleted_ms IS NULL",
    [S_EP_LIST] = "SELECT " EP_COLS " FROM endpoints"
                  " WHERE partner_id = ?1 AND deleted_ms IS NULL ORDER BY created_ms, rowid",
    [S_EP_UPDATE] = "UPDATE endpoints SET label = ?3, url = ?4, secret = ?5, enabled = ?6,"
                    " updated_ms = ?7, retry_schedule = ?8, timeout_ms = ?9"
                    " WHERE partner_id = ?1 AND id = ?2 AND deleted_ms IS NULL",
    [S_EP_DELETE] = "UPDATE endpoints SET deleted_ms = ?3, updated_ms = ?3, enabled = 0,"
                    " secret = '' WHERE partner_id = ?1 AND id = ?2 AND deleted_ms IS NULL",
    [S_EP_ENABLED_IDS] = "SELECT id FROM endpoints"
                         " WHERE partner_id = ?1 AND enabled = 1 AND deleted_ms IS NULL"
                         " ORDER BY created_ms, rowid",
    /*
     * The endpoint's open deliveries: the pending ones through deliveries_endpoint (its
     * WHERE repeated, so that SQLite may use it), the ones in flight through deliveries_due.
     */
    [S_DLV_CANCEL_PENDING] = "UPDATE deliveries SET state = 'canceled', updated_ms = ?2,"
                             " next_attempt_ms = 0, lease_owner = NULL, lease_until_ms = NULL"
                             " WHERE endpoint_id = ?1 AND state = 'pending'"
                             " AND state <> 'in_flight' AND state <> 'succeeded'",
    [S_DLV_CANCEL_IN_FLIGHT] = "UPDATE deliveries SET state = 'canceled', updated_ms = ?2,"
                               " next_attempt_ms = 0, lease_owner = NULL, lease_until_ms = NULL"
                               " WHERE state = 'in_flight' AND +endpoint_id = ?1",
    [S_EV_BY_SESSION] = "SELECT id, partner_id, fanout FROM events WHERE session_id = ?1",
    [S_EV_INSERT] = "INSERT INTO events (id, partner_id, session_id, call_id, call_status,"
                    " recording_key, body, fanout, accepted_ms)"
                    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    [S_EV_SEQ] = "SELECT seq FROM events WHERE id = ?1",
    [S_DLV_INSERT] = "INSERT INTO deliveries (id, event_seq, endpoint_id, partner_id, state,"
                     " attempts, next_attempt_ms, created_ms, updated_ms)"
                     " VALUES (?1, ?2, ?3, ?4, 'pending', 0, ?5, ?5, ?5)",
    [S_DLV_OF_EVENT] = "SELECT d.id, d.endpoint_id, " SHOWN_STATE ", d.attempts, d.next_attempt_ms"
                       " FROM deliveries AS d WHERE d.event_seq = ?1 ORDER BY d.created_ms, d.seq",
    [S_CALL_BY_SESSION] = "SELECT " CALL_COLS " FROM events"
                          " WHERE partner_id = ?1 AND session_id = ?2",
    [S_CALL_BY_CALL_ID] = "SELECT " CALL_COLS " FROM events"
                          " WHERE partner_id = ?1 AND call_id = ?2"
                          " ORDER BY accepted_ms DESC, rowid DESC LIMIT 1",
    [S_CALL_COUNT] = "SELECT count(*) FROM events"
                     " WHERE partner_id = ?1 AND (?2 IS NULL OR call_status = ?2)",
    [S_CALL_PAGE] = "SELECT " CALL_COLS " FROM events"
                    " WHERE partner_id = ?1 AND (?2 IS NULL OR call_status = ?2)"
                    " ORDER BY accepted_ms DESC, rowid DESC LIMIT ?3 OFFSET ?4",
    [S_COUNT_PARTNERS] = "SELECT count(*) FROM partners",
    [S_COUNT_API_KEYS] = "SELECT count(*) FROM api_keys",
    [S_COUNT_ENDPOINTS] = "SELECT count(*) FROM endpoints WHERE deleted_ms IS NULL",
    [S_COUNT_EVENTS] = "SELECT count(*) FROM events",
    [S_COUNT_DELIVERIES] = "SELECT count(*) FROM deliveries",
    [S_COUNT_ATTEMPTS] = "SELECT count(*) FROM attempts",
    /*
     * The due scan: the deliveries_due index in (state, next_attempt_ms, rowid) order, so
     * it reads exactly the rows it returns, less those already claimed (vh_held: checked
     * on the index entry, before the join). It begins past (?3, ?4): the last row of the
     * claim before, when the scan may resume there (struct claim_resume), else the start.
     * CROSS JOIN pins deliveries as the outer loop (SQLite never reorders it), whatever the
     * statistics say; the plan is tested. The endpoint is read once per claim
     * (S_CLAIM_ENDPOINT), not joined to every row.
     */
    [S_CLAIM_SELECT] =
        "SELECT d.id, v.id, d.endpoint_id, d.partner_id, d.attempts,"
        " d.attempt_base, d.next_attempt_ms, v.body, d.seq"
        " FROM deliveries AS d CROSS JOIN events AS v"
        " WHERE d.state = 'pending' AND d.next_attempt_ms <= ?1"
        " AND d.next_attempt_ms >= ?3 AND NOT (d.next_attempt_ms = ?3 AND d.seq <= ?4)"
        " AND NOT vh_held(d.seq) AND v.seq = d.event_seq"
        " ORDER BY d.next_attempt_ms, d.seq LIMIT ?2",
    /* Changes when another process commits to the file (this one writes on one connection). */
    [S_DATA_VERSION] = "PRAGMA data_version",
    [S_CLAIM_ENDPOINT] = "SELECT url, secret, retry_schedule, timeout_ms FROM endpoints"
                         " WHERE id = ?1",
    [S_DLV_SEQ] = "SELECT seq, endpoint_id FROM deliveries WHERE id = ?1",
    [S_ATTEMPT_INSERT] = "INSERT INTO attempts (delivery_seq, n, started_ms, duration_ms,"
                         " http_status, error_class, error, response_head)"
                         " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
                         " ON CONFLICT (delivery_seq, n) DO NOTHING",
    [S_ATTEMPT_UPSERT] = "INSERT INTO attempts (delivery_seq, n, started_ms, duration_ms,"
                         " http_status, error_class, error, response_head)"
                         " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
                         " ON CONFLICT (delivery_seq, n) DO UPDATE SET"
                         " started_ms = excluded.started_ms, duration_ms = excluded.duration_ms,"
                         " http_status = excluded.http_status, error_class = excluded.error_class,"
                         " error = excluded.error, response_head = excluded.response_head",
    /* The claim itself is checked in memory first (record_one): the row is still pending. */
    [S_DLV_FINISH] = "UPDATE deliveries SET state = ?2, attempts = ?3, next_attempt_ms = ?4,"
                     " updated_ms = ?5"
                     " WHERE seq = ?7 AND id = ?1 AND state = 'pending' AND attempts = ?6",
    /* Pending: attempt_base rises as much (delivery_raise_attempts). */
    [S_DLV_RAISE_ATTEMPTS] = "UPDATE deliveries SET attempts = ?2, attempt_base = attempt_base"
                             " + CASE WHEN state = 'pending' THEN ?2 - attempts ELSE 0 END"
                             " WHERE seq = ?1 AND attempts < ?2 AND state <> 'in_flight'",
    [S_EP_LAST_DELIVERY] = "UPDATE endpoints SET last_delivery_ms = ?2, last_delivery_status = ?3"
                           " WHERE id = ?1"
                           " AND (last_delivery_ms IS NULL OR last_delivery_ms <= ?2)",
    [S_RECOVER] = "UPDATE deliveries SET state = 'pending', next_attempt_ms = ?1,"
                  " lease_owner = NULL, lease_until_ms = NULL, updated_ms = ?1"
                  " WHERE state = 'in_flight' AND (lease_until_ms <= ?3 OR lease_owner = ?2)",
    /* A claim held in memory ended: its row, still pending, is due again now. */
    [S_HELD_RECOVER] = "UPDATE deliveries SET next_attempt_ms = ?2, updated_ms = ?2"
                       " WHERE seq = ?1 AND state = 'pending'",
    /* The first in the index not held here: it skips at most as many rows as are held. */
    [S_NEXT_DUE] = "SELECT next_attempt_ms FROM deliveries WHERE state = 'pending'"
                   " AND NOT vh_held(seq) ORDER BY next_attempt_ms LIMIT 1",
    /* Pending less what this store holds, and what it holds (in flight), in one pass. */
    [S_STATS_PENDING] = "SELECT count(*) - coalesce(sum(h), 0),"
                        " coalesce(sum(NOT h AND next_attempt_ms <= ?1), 0),"
                        " min(CASE WHEN h THEN NULL ELSE created_ms END),"
                        " min(CASE WHEN h THEN NULL ELSE next_attempt_ms END), coalesce(sum(h), 0)"
                        " FROM (SELECT vh_held(seq) AS h, next_attempt_ms, created_ms"
                        " FROM deliveries WHERE state = 'pending')",
    [S_STATS_IN_FLIGHT] = "SELECT count(*) FROM deliveries WHERE state = 'in_flight'",
    /*
     * Each state where it is indexed (migration 5): pending and in flight in deliveries_due,
     * abandoned and canceled in deliveries_endpoint (its WHERE repeated), and every
     * delivery counted (state NULL); succeeded is what the others are not.
     */
    [S_COUNT_BY_STATE] = "SELECT state, count(*),"
                         " sum(CASE WHEN state = 'pending' THEN vh_held(seq) ELSE 0 END)"
                         " FROM deliveries WHERE state = 'pending' OR state = 'in_flight'"
                         " GROUP BY state"
                         " UNION ALL SELECT state, count(*), 0 FROM deliveries"
                         " WHERE state <> 'in_flight' AND state <> 'succeeded'"
                         " AND state <> 'pending' GROUP BY state"
                         " UNION ALL SELECT NULL, count(*), 0 FROM deliveries",
    [S_DLV_LIST_COUNT] = "SELECT count(*) FROM deliveries WHERE endpoint_id = ?1",
    /*
     * The history's state filter, by where each state is indexed (migration 4): pending,
     * abandoned and canceled in deliveries_endpoint (its WHERE repeated, so that SQLite may
     * use it), in flight in deliveries_due (`+` keeps SQLite off the endpoint's whole
     * history), succeeded in deliveries_endpoint_time (`+`: off deliveries_due, which holds
     * every succeeded delivery of every endpoint), and counted as what the others are not.
     * The pending rows this store holds a claim on show as in flight (SHOWN_STATE): the
     * pending filter leaves them out, and the in-flight one adds them, by their seqs (a
     * JSON array: as many as the store holds) to the rows in flight in the file.
     */
    [S_DLV_LIST_COUNT_STATE] = "SELECT count(*) FROM deliveries WHERE endpoint_id = ?1"
                               " AND state = ?4 AND state <> 'in_flight' AND state <> 'succeeded'"
                               " AND NOT (state = 'pending' AND vh_held(seq))",
    [S_DLV_LIST_COUNT_IN_FLIGHT] = "SELECT count(*) FROM deliveries AS d" IN_FLIGHT_WHERE,
    [S_DLV_LIST_COUNT_SUCCEEDED] =
        "SELECT (SELECT count(*) FROM deliveries WHERE endpoint_id = ?1)"
        " - (SELECT count(*) FROM deliveries WHERE endpoint_id = ?1"
        " AND state <> 'in_flight' AND state <> 'succeeded')"
        " - (SELECT count(*) FROM deliveries WHERE state = 'in_flight' AND +endpoint_id = ?1)",
    [S_DLV_LIST] = "SELECT " INFO_COLS INFO_FROM " WHERE d.endpoint_id = ?1"
                   " ORDER BY d.created_ms DESC, d.rowid DESC LIMIT ?2 OFFSET ?3",
    [S_DLV_LIST_STATE] = "SELECT " INFO_COLS INFO_FROM " WHERE d.endpoint_id = ?1 AND d.state = ?4"
                         " AND d.state <> 'in_flight' AND d.state <> 'succeeded'"
                         " AND NOT (d.state = 'pending' AND vh_held(d.seq))"
                         " ORDER BY d.created_ms DESC, d.rowid DESC LIMIT ?2 OFFSET ?3",
    [S_DLV_LIST_IN_FLIGHT] = "SELECT " INFO_COLS INFO_FROM IN_FLIGHT_WHERE
                             " ORDER BY d.created_ms DESC, d.rowid DESC LIMIT ?2 OFFSET ?3",
    [S_DLV_LIST_SUCCEEDED] =
        "SELECT " INFO_COLS INFO_FROM " WHERE d.endpoint_id = ?1 AND +d.state = 'succeeded'"
        " ORDER BY d.created_ms DESC, d.rowid DESC LIMIT ?2 OFFSET ?3",
    [S_DLV_GET] = "SELECT " INFO_COLS INFO_FROM " WHERE d.id = ?1 AND d.partner_id = ?2",
    /*
     * The newest ?2 attempts of delivery ?1, newest first (attempts_of turns them round),
     * each with the count of all its attempts (an uncorrelated subquery, run once, on the
     * PK index): the older rows are not read.
     */
    [S_ATTEMPTS_OF] = "SELECT n, started_ms, duration_ms, http_status, error_class, error,"
                      " response_head, (SELECT count(*) FROM attempts"
                      " WHERE delivery_seq = (SELECT seq FROM deliveries WHERE id = ?1))"
                      " FROM attempts"
                      " WHERE delivery_seq = (SELECT seq FROM deliveries WHERE id = ?1)"
                      " ORDER BY n DESC LIMIT ?2",
    [S_RETRY_LOOKUP] = "SELECT d.state, d.endpoint_id, e.enabled, e.deleted_ms, d.seq"
                       " FROM deliveries AS d JOIN endpoints AS e ON e.id = d.endpoint_id"
                       " WHERE d.id = ?1 AND d.partner_id = ?2",
    [S_RETRY] = "UPDATE deliveries SET state = 'pending', next_attempt_ms = ?2,"
                " attempt_base = attempts, lease_owner = NULL, lease_until_ms = NULL,"
                " updated_ms = ?2 WHERE id = ?1",
    [S_REPLAY_EVENTS] = "SELECT seq FROM events"
                        " WHERE partner_id = ?1 AND accepted_ms >= ?2 AND accepted_ms <= ?3"
                        " ORDER BY accepted_ms, seq LIMIT ?4",
};

/* ---- connections and the pool -------------------------------------------------------------- */

struct conn {
    sqlite3 *db;
    sqlite3_stmt *stmt[S__N]; /* prepared on first use, finalized on close */
    struct conn *next;        /* the next idle connection */
};

/*
 * One event_put in a group commit: a waiting caller's, on its stack (sqlite_event_put), or
 * a posted one, on the heap (sqlite_event_put_post). `out`, `err` and `rc` are written by
 * the leader before it completes the op (core/group_int.h), and read after.
 */
struct put_waiter {
    struct vh__group_op g; /* first: a group's waiters are cast back from it */
    const struct vh_event_put *ev;
    const char *new_id;
    struct vh_event_put_result out;
    struct vh_error err;
    int rc;
    /* Posted only: */
    char id[VH_UUID_LEN + 1]; /* new_id points here */
    vh_store_put_done_fn *done;
    void *ud;
};

/*
 * Where the next claim's due scan may begin: past the last row of a claim that filled up.
 * Every row before it in deliveries_due was then held or finished, and a drain's claims
 * stepped over the held ones again and again (up to the sender's whole window, 320 rows,
 * per claim of 64). It holds while nothing could have put a due, unheld row before it:
 * every write of this process but a claim and a record that only finished its rows
 * forgets it (writer_get), and so does a commit by another process (`data_version`).
 */
struct claim_resume {
    bool valid;
    int64_t next_attempt_ms, seq; /* the last row claimed */
    int64_t data_version;         /* PRAGMA data_version when it was claimed */
};

struct sqlite_store {
    struct vh_store base; /* first: a struct vh_store * points here */
    char *path;
    pthread_mutex_t mu;         /* guards idle, n_conns and put_queue */
    pthread_cond_t cv;          /* signaled when a connection is returned or a slot frees */
    struct conn *idle;          /* readers' connections not borrowed */
    size_t n_conns;             /* readers' connections open or being opened: at most POOL_MAX */
    struct vh__group put_queue; /* ingests waiting for a group commit */
    struct vh__group_runner rn; /* leads for posted ingests (sqlite_event_put_post) */
    pthread_t runner;           /* started with the first post */
    atomic_bool runner_started; /* read without `mu` by every post, once set */
    /*
     * Writers of this process take turns in arrival order (a ticket lock under mu), and
     * the turn comes with the one connection every write transaction of this process runs
     * on (`writer`, opened on first use; only the turn's holder touches it).
     *
     * The order: SQLite's own wait for its write lock is a busy handler that sleeps and
     * retries (1 ms, 2 ms, 5 ms … up to 100 ms): under a steady stream of ingest group
     * commits a claim could sleep through many of them. The turn hands the lock over at
     * once, oldest waiter first; SQLite's lock still guards against other processes.
     *
     * The one connection: a connection drops its whole page cache when it finds that
     * another one wrote since its last transaction. When ingests, claims and records each
     * took a pooled connection, every write transaction began with a cold cache and read
     * the b-tree pages it walks back from the file: 48 pread calls per session at a steady
     * 1 000 sessions/s (docs/BENCHMARKS.md). On the writer, the pages written last are the
     * ones still cached.
     */
    pthread_cond_t turn_cv;
    uint64_t turn_next;    /* the ticket the next writer takes */
    uint64_t turn_serving; /* the ticket whose holder may write */
    struct conn *writer;   /* NULL until the first write, or after a failure closed it */
    /*
     * The claims this store holds (docs/decisions.md, "SQLite: claims held in memory"):
     * changed under the writer's turn and held_mu, read under held_mu by vh_held() from
     * any connection. `claim_lock` is the descriptor of `<path>-lock`, locked (flock)
     * from the first claim or recovery until the store closes: one process claims from a
     * file. -1 until then.
     */
    pthread_mutex_t held_mu;
    struct vh__held held;
    int claim_lock;
    struct claim_resume resume; /* under the writer's turn */
};

static struct sqlite_store *to_sqlite(struct vh_store *st)
{
    return (struct sqlite_store *)st;
}

/* sqlite3 failures: NOMEM and TOOBIG keep their meaning, everything else is the store's. */
static int map_code(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_NOMEM:
        return VH_ENOMEM;
    case SQLITE_TOOBIG:
        return VH_ETOOBIG;
    default:
        return VH_ESTORE;
    }
}

/* The error of the last call on `c`, with `what` as context: `insert event 's1': locked`. */
static int db_fail(const struct conn *c, const char *what, struct vh_error *err)
{
    return vh_error_set(err, map_code(sqlite3_extended_errcode(c->db)), "%s: %s", what,
                        sqlite3_errmsg(c->db));
}

static void conn_close(struct conn *c)
{
    size_t i;

    if (!c)
        return;
    for (i = 0; i < S__N; i++)
        sqlite3_finalize(c->stmt[i]);
    /* close_v2: anything left over is freed when it is finished with, never leaked. */
    sqlite3_close_v2(c->db);
    vh_free(c);
}

/* Runs a PRAGMA that answers with one text value and checks it. */
static int pragma_expect(struct conn *c, const char *sql, const char *want, const char *what,
                         struct vh_error *err)
{
    sqlite3_stmt *st = NULL;
    const unsigned char *got;
    int rc;

    rc = sqlite3_prepare_v2(c->db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK)
        return db_fail(c, what, err);
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        rc = db_fail(c, what, err);
        goto out;
    }
    got = sqlite3_column_text(st, 0);
    if (!got || strcmp((const char *)got, want) != 0) {
        rc = vh_error_set(err, VH_ESTORE, "%s: '%s' gave '%s', not '%s'", what, sql,
                          got ? (const char *)got : "", want);
        goto out;
    }
    rc = 0;
out:
    sqlite3_finalize(st);
    return rc;
}

/*
 * vh_held(seq): 1 when the store (the function's user data; NULL for a connection of no
 * store) holds a claim on delivery row `seq`, else 0.
 */
static void held_fn(sqlite3_context *cx, int argc, sqlite3_value **argv)
{
    struct sqlite_store *s = sqlite3_user_data(cx);
    bool held = false;

    (void)argc;
    if (s) {
        pthread_mutex_lock(&s->held_mu);
        held = vh__held_find(&s->held, sqlite3_value_int64(argv[0])) != NULL;
        pthread_mutex_unlock(&s->held_mu);
    }
    sqlite3_result_int(cx, held);
}

/* Opens a connection to `path`, for store `s` (NULL: a connection of no store). */
static int conn_open(const char *path, struct sqlite_store *s, struct conn **out,
                     struct vh_error *err)
{
    const int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
    char what[WHAT_MAX];
    struct conn *c;
    int rc;

    snprintf(what, sizeof(what), "open '%s'", path);
    c = vh_malloc(sizeof(*c));
    if (!c)
        return vh_error_set(err, VH_ENOMEM, "%s: out of memory", what);
    memset(c, 0, sizeof(*c));
    /*
     * Through the read-ahead VFS (readahead_int.h): a drain reads bodies and rows in file
     * order, a pread(2) per page through the system's VFS; and a commit's WAL frames go in
     * a few pwrite(2)s before its sync, not two per frame. Without it (it could not be
     * registered), the system's VFS as it is.
     */
    rc = sqlite3_open_v2(path, &c->db, flags,
                         vh__readahead_register() == SQLITE_OK ? VH__READAHEAD_VFS : NULL);
    if (rc != SQLITE_OK) {
        if (c->db)
            rc = db_fail(c, what, err);
        else
            rc = vh_error_set(err, map_code(rc), "%s: %s", what, sqlite3_errstr(rc));
        goto out;
    }
    sqlite3_extended_result_codes(c->db, 1);
    /* The busy timeout first: switching to WAL itself may wait for a lock. */
    rc = sqlite3_busy_timeout(c->db, BUSY_TIMEOUT_MS);
    if (rc != SQLITE_OK) {
        rc = db_fail(c, what, err);
        goto out;
    }
    rc = pragma_expect(c, "PRAGMA journal_mode = WAL", "wal", what, err);
    if (rc < 0)
        goto out;
    rc = sqlite3_exec(c->db, "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON", NULL, NULL,
                      NULL);
    if (rc != SQLITE_OK) {
        rc = db_fail(c, what, err);
        goto out;
    }
    /* Both PRAGMAs are silently ignored in some builds: check they took. */
    rc = pragma_expect(c, "PRAGMA synchronous", "2", what, err);
    if (rc < 0)
        goto out;
    rc = pragma_expect(c, "PRAGMA foreign_keys", "1", what, err);
    if (rc < 0)
        goto out;
    /* Direct only: no trigger or view of the file can call it. */
    rc = sqlite3_create_function_v2(c->db, "vh_held", 1, SQLITE_UTF8 | SQLITE_DIRECTONLY, s,
                                    held_fn, NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        rc = db_fail(c, what, err);
        goto out;
    }
    *out = c;
    c = NULL;
    rc = 0;
out:
    conn_close(c);
    return rc;
}

/* Borrows a connection, opening a new one when none is idle and the pool has room. */
static int conn_get(struct sqlite_store *s, struct conn **out, struct vh_error *err)
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
    rc = conn_open(s->path, s, &c, err);
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
 * Resets every statement (a stepped SELECT would otherwise pin a WAL snapshot) and rolls
 * back any transaction an error path left open.
 */
static void conn_reset(struct conn *c)
{
    size_t i;

    for (i = 0; i < S__N; i++)
        if (c->stmt[i])
            sqlite3_reset(c->stmt[i]);
    if (!sqlite3_get_autocommit(c->db))
        sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
}

/*
 * Returns a borrowed reader's connection, clean (conn_reset); one that cannot be brought
 * back to that state is closed rather than pooled.
 */
static void conn_put(struct sqlite_store *s, struct conn *c)
{
    conn_reset(c);
    pthread_mutex_lock(&s->mu);
    if (sqlite3_get_autocommit(c->db)) {
        c->next = s->idle;
        s->idle = c;
        c = NULL;
    } else {
        s->n_conns--;
    }
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    conn_close(c);
}

/* ---- queries ----------------------------------------------------------------------------- */

/*
 * The only place a size_t length narrows to the int that sqlite3_bind_* takes; a length
 * that does not fit fails the bind instead of wrapping.
 */
static bool len_to_int(size_t n, int *out)
{
    if (n > INT_MAX)
        return false;
    *out = (int)n;
    return true;
}

/*
 * One use of a cached statement: bind, step, read, end. Bind failures are remembered and
 * reported by the first step, so call sites bind without checking each call. `what` is
 * the context of every message.
 */
struct query {
    struct conn *c;
    sqlite3_stmt *st;
    const char *what;
    int bind_rc; /* the first failed bind's code, or SQLITE_OK */
};

static int q_start(struct query *q, struct conn *c, enum stmt_id id, const char *what,
                   struct vh_error *err)
{
    int rc;

    q->c = c;
    q->st = NULL;
    q->what = what;
    q->bind_rc = SQLITE_OK;
    if (!c->stmt[id]) {
        /* A statement added to stmt_id without its SQL: SQLite would say "not an error". */
        if (!stmt_sql[id])
            return vh_error_set(err, VH_ESTORE, "%s: statement %d has no SQL", what, (int)id);
        rc = sqlite3_prepare_v3(c->db, stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT, &c->stmt[id],
                                NULL);
        if (rc != SQLITE_OK)
            return db_fail(c, what, err);
    }
    q->st = c->stmt[id];
    return 0;
}

static void q_bind_rc(struct query *q, int rc)
{
    if (q->bind_rc == SQLITE_OK && rc != SQLITE_OK)
        q->bind_rc = rc;
}

/* Binds a C string, or NULL as SQL NULL. The caller keeps `s` alive until q_end. */
static void q_text(struct query *q, int idx, const char *s)
{
    int n;

    if (!s)
        q_bind_rc(q, sqlite3_bind_null(q->st, idx));
    else if (!len_to_int(strlen(s), &n))
        q_bind_rc(q, SQLITE_TOOBIG);
    else
        q_bind_rc(q, sqlite3_bind_text(q->st, idx, s, n, SQLITE_STATIC));
}

static void q_blob(struct query *q, int idx, const void *p, size_t len)
{
    int n;

    if (!len_to_int(len, &n))
        q_bind_rc(q, SQLITE_TOOBIG);
    else
        q_bind_rc(q, sqlite3_bind_blob(q->st, idx, p, n, SQLITE_STATIC));
}

static void q_int(struct query *q, int idx, int64_t v)
{
    q_bind_rc(q, sqlite3_bind_int64(q->st, idx, v));
}

/* Binds `v`, or SQL NULL for 0 (the columns where 0 means "not set"). */
static void q_int_or_null(struct query *q, int idx, int64_t v)
{
    if (v == 0)
        q_bind_rc(q, sqlite3_bind_null(q->st, idx));
    else
        q_int(q, idx, v);
}

/* Steps once; returns SQLITE_ROW, SQLITE_DONE or the (extended) error code, unreported. */
static int q_step_raw(struct query *q)
{
    if (q->bind_rc != SQLITE_OK)
        return q->bind_rc;
    return sqlite3_step(q->st);
}

/* Reports a failure code from q_step_raw. */
static int q_fail(const struct query *q, int rc, struct vh_error *err)
{
    if (q->bind_rc != SQLITE_OK)
        return vh_error_set(err, map_code(rc), "%s: %s", q->what, sqlite3_errstr(rc));
    return db_fail(q->c, q->what, err);
}

/* Steps once: 1 for a row, 0 when done, < 0 after reporting an error. */
static int q_step(struct query *q, struct vh_error *err)
{
    int rc = q_step_raw(q);

    if (rc == SQLITE_ROW)
        return 1;
    if (rc == SQLITE_DONE)
        return 0;
    return q_fail(q, rc, err);
}

/* Ends the use: the statement is reset and forgets the caller's bound buffers. */
static void q_end(struct query *q)
{
    if (!q->st)
        return;
    sqlite3_reset(q->st);
    sqlite3_clear_bindings(q->st);
    q->st = NULL;
}

/* Runs a statement that returns no rows. */
static int q_exec(struct query *q, struct vh_error *err)
{
    int rc = q_step(q, err);

    if (rc > 0)
        rc = vh_error_set(err, VH_ESTORE, "%s: statement returned a row", q->what);
    q_end(q);
    return rc;
}

/* Runs a statement that returns one integer (count(*), a PRAGMA). */
static int q_int_result(struct query *q, int64_t *out, struct vh_error *err)
{
    int rc = q_step(q, err);

    if (rc == 0)
        rc = vh_error_set(err, VH_ESTORE, "%s: no result", q->what);
    if (rc > 0) {
        *out = sqlite3_column_int64(q->st, 0);
        rc = 0;
    }
    q_end(q);
    return rc;
}

/* Runs a statement with no parameters on `c`. */
static int run(struct conn *c, enum stmt_id id, const char *what, struct vh_error *err)
{
    struct query q;
    int rc = q_start(&q, c, id, what, err);

    if (rc < 0)
        return rc;
    return q_exec(&q, err);
}

/* Gives the writer's turn to the next writer in line. */
static void turn_give(struct sqlite_store *s)
{
    pthread_mutex_lock(&s->mu);
    s->turn_serving++;
    pthread_cond_broadcast(&s->turn_cv);
    pthread_mutex_unlock(&s->mu);
}

/*
 * Waits for this thread's turn to write (see struct sqlite_store) and borrows the writer
 * connection with it, opening it if needed. Give both back with writer_put. Keeps where
 * the next claim may resume: for the claim and the record, which look after it themselves.
 */
static int writer_take(struct sqlite_store *s, struct conn **out, struct vh_error *err)
{
    uint64_t ticket;
    struct conn *c;
    int rc;

    pthread_mutex_lock(&s->mu);
    ticket = s->turn_next++;
    while (s->turn_serving != ticket)
        pthread_cond_wait(&s->turn_cv, &s->mu);
    pthread_mutex_unlock(&s->mu);
    if (!s->writer) {
        rc = conn_open(s->path, s, &c, err);
        if (rc < 0) {
            turn_give(s);
            return rc;
        }
        s->writer = c;
    }
    *out = s->writer;
    return 0;
}

/* writer_take for any other write: it may put a due row anywhere, so claims start over. */
static int writer_get(struct sqlite_store *s, struct conn **out, struct vh_error *err)
{
    int rc = writer_take(s, out, err);

    if (rc == 0)
        s->resume.valid = false;
    return rc;
}

/*
 * Returns the writer and its turn. As conn_put does, it leaves the connection clean, and
 * closes one that cannot be made so (the next writer opens another).
 */
static void writer_put(struct sqlite_store *s, struct conn *c)
{
    conn_reset(c);
    if (!sqlite3_get_autocommit(c->db)) {
        conn_close(c);
        s->writer = NULL;
        /* PRAGMA data_version counts per connection: the next one's cannot be compared. */
        s->resume.valid = false;
    }
    turn_give(s);
}

/* Opens a write transaction on the writer (or on a connection outside the pool). */
static int tx_begin_write(struct conn *c, const char *what, struct vh_error *err)
{
    return run(c, S_BEGIN_IMMEDIATE, what, err);
}

static int tx_begin_read(struct conn *c, const char *what, struct vh_error *err)
{
    return run(c, S_BEGIN, what, err);
}

static int tx_commit(struct conn *c, const char *what, struct vh_error *err)
{
    return run(c, S_COMMIT, what, err);
}

/*
 * Ends a failed transaction. The first error is already reported; SQLite may have rolled
 * back by itself (after SQLITE_FULL, IOERR or NOMEM), hence the autocommit check. If the
 * ROLLBACK fails too, conn_put closes the connection.
 */
static void tx_rollback(struct conn *c)
{
    struct query q;

    if (!sqlite3_get_autocommit(c->db) && q_start(&q, c, S_ROLLBACK, "rollback", NULL) == 0)
        q_exec(&q, NULL);
}

/* ---- reading columns ---------------------------------------------------------------------- */

/*
 * Copies a text column into a fixed field ("" for NULL). A value that does not fit means
 * the file was written by something else: VH_ESTORE, never truncation.
 */
static int col_text(const struct query *q, int col, char *dst, size_t cap, const char *name,
                    struct vh_error *err)
{
    const unsigned char *t;
    int n;

    if (sqlite3_column_type(q->st, col) == SQLITE_NULL) {
        dst[0] = '\0';
        return 0;
    }
    t = sqlite3_column_text(q->st, col);
    n = sqlite3_column_bytes(q->st, col);
    if (!t)
        return vh_error_set(err, VH_ENOMEM, "%s: reading %s: out of memory", q->what, name);
    if (n < 0 || (size_t)n >= cap)
        return vh_error_set(err, VH_ESTORE, "%s: stored %s is %d bytes, over the %zu allowed",
                            q->what, name, n, cap - 1);
    memcpy(dst, t, (size_t)n);
    dst[n] = '\0';
    return 0;
}

/*
 * Makes room for one more element in a result array of `len` used and `*cap` allocated
 * elements. Stores the (possibly moved) array in `*out`; `arr` stays valid on failure.
 */
static int array_grow(void *arr, size_t *cap, size_t len, size_t elem, void **out, const char *what,
                      struct vh_error *err)
{
    size_t ncap;
    void *p;

    *out = arr;
    if (len < *cap)
        return 0;
    ncap = *cap ? *cap * 2 : 8;
    if (ncap < *cap || ncap > SIZE_MAX / elem)
        return vh_error_set(err, VH_ENOMEM, "%s: result too large", what);
    p = vh_realloc(arr, ncap * elem);
    if (!p)
        return vh_error_set(err, VH_ENOMEM, "%s: out of memory", what);
    *out = p;
    *cap = ncap;
    return 0;
}

static int row_partner(const struct query *q, struct vh_partner *p, struct vh_error *err)
{
    int rc;

    rc = col_text(q, 0, p->id, sizeof(p->id), "partner id", err);
    if (rc < 0)
        return rc;
    rc = col_text(q, 1, p->name, sizeof(p->name), "partner name", err);
    if (rc < 0)
        return rc;
    p->created_ms = sqlite3_column_int64(q->st, 2);
    return 0;
}

/* Reads the EP_COLS of the current row. */
static int row_endpoint(const struct query *q, struct vh_endpoint *ep, struct vh_error *err)
{
    char status[16];
    int rc;

    rc = col_text(q, 0, ep->id, sizeof(ep->id), "endpoint id", err);
    if (rc == 0)
        rc = col_text(q, 1, ep->partner_id, sizeof(ep->partner_id), "partner id", err);
    if (rc == 0)
        rc = col_text(q, 2, ep->label, sizeof(ep->label), "label", err);
    if (rc == 0)
        rc = col_text(q, 3, ep->url, sizeof(ep->url), "url", err);
    if (rc == 0)
        rc = col_text(q, 4, ep->secret, sizeof(ep->secret), "secret", err);
    if (rc == 0)
        rc = col_text(q, 9, status, sizeof(status), "last delivery status", err);
    if (rc == 0)
        rc = col_text(q, 10, ep->retry_schedule, sizeof(ep->retry_schedule), "retry schedule", err);
    if (rc < 0)
        return rc;
    ep->timeout_ms = sqlite3_column_int64(q->st, 11); /* NULL reads as 0: the server's */
    ep->enabled = sqlite3_column_int64(q->st, 5) != 0;
    ep->created_ms = sqlite3_column_int64(q->st, 6);
    ep->updated_ms = sqlite3_column_int64(q->st, 7);
    ep->last_delivery_ms = sqlite3_column_int64(q->st, 8); /* NULL reads as 0: never */
    if (strcmp(status, "succeeded") == 0)
        ep->last_delivery_status = VH_OUTCOME_SUCCEEDED;
    else if (strcmp(status, "failed") == 0)
        ep->last_delivery_status = VH_OUTCOME_FAILED;
    else
        ep->last_delivery_status = VH_OUTCOME_NONE;
    return 0;
}

/* Reads the CALL_COLS of the current row into a zeroed `rec`; on failure releases it. */
static int row_call(const struct query *q, struct vh_call_rec *rec, struct vh_error *err)
{
    char status[16];
    const void *body;
    const unsigned char *key;
    int n, rc;

    vh_buf_init(&rec->body, VH__STORE_BODY_MAX);
    rc = col_text(q, 0, rec->event_id, sizeof(rec->event_id), "event id", err);
    if (rc == 0)
        rc = col_text(q, 1, rec->partner_id, sizeof(rec->partner_id), "partner id", err);
    if (rc == 0)
        rc = col_text(q, 2, rec->session_id, sizeof(rec->session_id), "session id", err);
    if (rc == 0)
        rc = col_text(q, 3, rec->call_id, sizeof(rec->call_id), "call id", err);
    if (rc == 0)
        rc = col_text(q, 4, status, sizeof(status), "call status", err);
    if (rc < 0)
        goto out;
    rec->call_status = 0;
    if (status[0]) {
        rec->call_status = (int)vh_call_status_from_name(status, strlen(status));
        if (!rec->call_status) {
            rc = vh_error_set(err, VH_ESTORE, "%s: unknown stored call status", q->what);
            goto out;
        }
    }
    rec->accepted_ms = sqlite3_column_int64(q->st, 5);
    if (sqlite3_column_type(q->st, 6) != SQLITE_NULL) {
        key = sqlite3_column_text(q->st, 6);
        n = sqlite3_column_bytes(q->st, 6);
        rec->recording_key = key && n >= 0 ? vh_strndup((const char *)key, (size_t)n) : NULL;
        if (!rec->recording_key) {
            rc = vh_error_set(err, VH_ENOMEM, "%s: out of memory", q->what);
            goto out;
        }
    }
    body = sqlite3_column_blob(q->st, 7);
    n = sqlite3_column_bytes(q->st, 7);
    if (!body || n <= 0) {
        rc = vh_error_set(err, VH_ESTORE, "%s: stored body is empty", q->what);
        goto out;
    }
    rc = vh_buf_add(&rec->body, body, (size_t)n);
    if (rc < 0)
        rc = vh_error_set(err, rc, "%s: reading body: %s", q->what, vh_strerror(rc));
out:
    if (rc < 0)
        vh_call_rec_release(rec);
    return rc;
}

/* ---- migrations ---------------------------------------------------------------------------- */

/*
 * After a step, inside its transaction: every foreign key must still hold, since the steps
 * run with the keys off. Returns 0, or a negative vh_err naming the first broken key.
 */
static int foreign_keys_hold(struct conn *c, const char *what, struct vh_error *err)
{
    sqlite3_stmt *st = NULL;
    int rc;

    if (sqlite3_prepare_v2(c->db, "PRAGMA foreign_key_check", -1, &st, NULL) != SQLITE_OK)
        return db_fail(c, what, err);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        rc = vh_error_set(err, VH_ESTORE, "%s: row %lld of %s refers to a missing row of %s", what,
                          (long long)sqlite3_column_int64(st, 1),
                          (const char *)sqlite3_column_text(st, 0),
                          (const char *)sqlite3_column_text(st, 2));
    else if (rc == SQLITE_DONE)
        rc = 0;
    else
        rc = db_fail(c, what, err);
    sqlite3_finalize(st);
    return rc;
}

/*
 * Brings the file to version `target` (SCHEMA_VERSION but in tests), one step per
 * transaction. Each step re-reads the version under the write lock, so two processes
 * opening a new file at once cannot both apply a step, and checks every foreign key before
 * it commits.
 */
static int migrate_steps(struct conn *c, const char *path, int64_t target, struct vh_error *err)
{
    char what[WHAT_MAX], sql[64];
    struct query q;
    int64_t version = 0, app_id = 0, tables = 0;
    int rc;

    for (;;) {
        snprintf(what, sizeof(what), "migrate '%s'", path);
        rc = tx_begin_write(c, what, err);
        if (rc < 0)
            return rc;
        rc = q_start(&q, c, S_APPLICATION_ID, what, err);
        if (rc == 0)
            rc = q_int_result(&q, &app_id, err);
        if (rc == 0)
            rc = q_start(&q, c, S_USER_VERSION, what, err);
        if (rc == 0)
            rc = q_int_result(&q, &version, err);
        if (rc < 0)
            goto fail;
        if (app_id != 0 && app_id != APPLICATION_ID) {
            rc = vh_error_set(err, VH_ESTORE,
                              "open '%s': not a vocohook database (application_id %lld)", path,
                              (long long)app_id);
            goto fail;
        }
        if (version > SCHEMA_VERSION) {
            rc = vh_error_set(err, VH_ESTORE,
                              "open '%s': schema version %lld is newer than this build "
                              "supports (%d); upgrade vocohook",
                              path, (long long)version, SCHEMA_VERSION);
            goto fail;
        }
        if (version >= target) {
            rc = tx_commit(c, what, err);
            if (rc < 0)
                goto fail;
            return 0;
        }
        if (version == 0) {
            /* A file of someone else's that happens to be SQLite: do not add to it. */
            rc = q_start(&q, c, S_TABLE_COUNT, what, err);
            if (rc == 0)
                rc = q_int_result(&q, &tables, err);
            if (rc < 0)
                goto fail;
            if (tables != 0) {
                rc = vh_error_set(err, VH_ESTORE,
                                  "open '%s': not a vocohook database (it has tables but no "
                                  "schema version)",
                                  path);
                goto fail;
            }
        } else if (version < 0) {
            rc = vh_error_set(err, VH_ESTORE, "open '%s': bad schema version %lld", path,
                              (long long)version);
            goto fail;
        }
        snprintf(what, sizeof(what), "migrate '%s' to version %lld", path, (long long)version + 1);
        if (sqlite3_exec(c->db, migrations[version], NULL, NULL, NULL) != SQLITE_OK) {
            rc = db_fail(c, what, err);
            goto fail;
        }
        rc = foreign_keys_hold(c, what, err);
        if (rc < 0)
            goto fail;
        snprintf(sql, sizeof(sql), "PRAGMA user_version = %lld", (long long)version + 1);
        if (sqlite3_exec(c->db, sql, NULL, NULL, NULL) != SQLITE_OK) {
            rc = db_fail(c, what, err);
            goto fail;
        }
        rc = tx_commit(c, what, err);
        if (rc < 0)
            goto fail;
    }
fail:
    tx_rollback(c);
    return rc;
}

/*
 * migrate_steps() with foreign keys off, as SQLite's way of rebuilding a table wants (new
 * table, copy, drop, rename): with the keys on, dropping a parent table would first delete
 * its rows and so break every child's reference. PRAGMA foreign_keys is a no-op inside a
 * transaction, hence around the steps, not in them. secure_delete is off too: a step frees
 * only the pages of tables it has just copied, and zeroing them doubled the time of
 * version 4 (33.7 s against 16.4 s for 200 000 events and deliveries, docs/decisions.md).
 */
static int migrate(struct conn *c, const char *path, int64_t target, struct vh_error *err)
{
    char what[WHAT_MAX], sql[64];
    sqlite3_stmt *st = NULL;
    int secure_delete = -1, rc;

    snprintf(what, sizeof(what), "migrate '%s'", path);
    /* secure_delete as the build set it (Debian: on), to be restored after. */
    if (sqlite3_prepare_v2(c->db, "PRAGMA secure_delete", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        secure_delete = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    if (secure_delete < 0)
        return db_fail(c, what, err);
    if (sqlite3_exec(c->db, "PRAGMA foreign_keys = OFF; PRAGMA secure_delete = OFF", NULL, NULL,
                     NULL) != SQLITE_OK)
        return db_fail(c, what, err);
    rc = migrate_steps(c, path, target, err);
    snprintf(sql, sizeof(sql), "PRAGMA foreign_keys = ON; PRAGMA secure_delete = %d",
             secure_delete);
    if (sqlite3_exec(c->db, sql, NULL, NULL, NULL) != SQLITE_OK && rc == 0)
        rc = db_fail(c, what, err);
    return rc;
}

/* ---- open and close ------------------------------------------------------------------------- */

static void sqlite_close(struct vh_store *st)
{
    struct sqlite_store *s = to_sqlite(st);
    struct conn *c;

    /* Every posted ingest is answered before the runner returns. */
    if (atomic_load(&s->runner_started)) {
        vh__group_runner_stop(&s->put_queue);
        pthread_join(s->runner, NULL);
    }
    vh__group_runner_release(&s->put_queue);
    /* The contract: no call is running, so every connection is idle. */
    conn_close(s->writer);
    while (s->idle) {
        c = s->idle;
        s->idle = c->next;
        conn_close(c);
    }
    /* After the connections: the next claimer of the file finds them gone. */
    if (s->claim_lock >= 0)
        close(s->claim_lock);
    vh__held_clear(&s->held);
    pthread_mutex_destroy(&s->held_mu);
    pthread_cond_destroy(&s->turn_cv);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    vh_free(s->path);
    vh_free(s);
}

static vh__group_run_fn event_put_group;

/*
 * Creates the database file with mode 0600 when it does not exist yet (SQLite would create
 * it 0644 under the usual umask, and its -wal and -shm files take the same mode): the store
 * holds every endpoint's signing secret in clear. A failure is left to sqlite3_open_v2 to
 * report, in its own words.
 */
static void create_private(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);

    if (fd >= 0)
        close(fd);
}

static int sqlite_open(const char *path, struct vh_store **out, struct vh_error *err)
{
    struct sqlite_store *s = NULL;
    struct conn *c = NULL;
    bool mu_ok = false, cv_ok = false, held_ok = false;
    int rc;

    if (!*path)
        return vh_error_set(err, VH_EINVAL, "sqlite: empty path");
    if (strcmp(path, ":memory:") == 0 || strncmp(path, "file:", 5) == 0)
        return vh_error_set(err, VH_EINVAL,
                            "sqlite: '%s' is not supported: give a file path (each pooled "
                            "connection would see its own in-memory database)",
                            path);
    /*
     * SQLite reads URI options only from a file: URI, so "x.db?mode=ro" would create and
     * use a new file of that name, leaving the operator's store and its options unused.
     */
    if (strchr(path, '?'))
        return vh_error_set(
            err, VH_EINVAL,
            "sqlite: '%s' has a query string: sqlite:PATH takes a file path and no options", path);
    if (!sqlite3_threadsafe())
        return vh_error_set(err, VH_ESTORE, "sqlite: the library was built without threads");
    if (sqlite3_libversion_number() < SQLITE_MIN_VERSION)
        return vh_error_set(err, VH_ESTORE,
                            "sqlite: version %s is too old; 3.37 or newer is needed",
                            sqlite3_libversion());
    s = vh_malloc(sizeof(*s));
    if (!s)
        return vh_error_set(err, VH_ENOMEM, "open '%s': out of memory", path);
    memset(s, 0, sizeof(*s));
    s->base.ops = &vh__store_sqlite_ops;
    s->claim_lock = -1;
    s->path = vh_strndup(path, strlen(path));
    if (!s->path) {
        rc = vh_error_set(err, VH_ENOMEM, "open '%s': out of memory", path);
        goto fail;
    }
    mu_ok = pthread_mutex_init(&s->mu, NULL) == 0;
    s->put_queue.mu = &s->mu;
    s->rn.g = &s->put_queue;
    s->rn.run = event_put_group;
    s->rn.ud = s;
    s->rn.name = "vh-store";
    atomic_init(&s->runner_started, false);
    cv_ok = mu_ok && pthread_cond_init(&s->cv, NULL) == 0;
    if (cv_ok && pthread_cond_init(&s->turn_cv, NULL) != 0) {
        pthread_cond_destroy(&s->cv);
        cv_ok = false;
    }
    held_ok = cv_ok && pthread_mutex_init(&s->held_mu, NULL) == 0;
    if (!held_ok) {
        rc = vh_error_set(err, VH_ENOMEM, "open '%s': cannot create a mutex", path);
        goto fail;
    }
    create_private(path);
    rc = conn_open(path, s, &c, err);
    if (rc < 0)
        goto fail;
    rc = migrate(c, path, SCHEMA_VERSION, err);
    if (rc < 0)
        goto fail;
    s->writer = c; /* the migration's connection writes from now on */
    *out = &s->base;
    return 0;
fail:
    conn_close(c);
    if (held_ok)
        pthread_mutex_destroy(&s->held_mu);
    if (cv_ok) {
        pthread_cond_destroy(&s->turn_cv);
        pthread_cond_destroy(&s->cv);
    }
    if (mu_ok)
        pthread_mutex_destroy(&s->mu);
    vh_free(s->path);
    vh_free(s);
    return rc;
}

static int sqlite_schema_version(struct vh_store *st, int *out, struct vh_error *err)
{
    struct sqlite_store *s = to_sqlite(st);
    struct query q;
    struct conn *c;
    int64_t v = 0;
    int rc;

    rc = conn_get(s, &c, err);
    if (rc < 0)
        return rc;
    rc = q_start(&q, c, S_USER_VERSION, "read schema version", err);
    if (rc == 0)
        rc = q_int_result(&q, &v, err);
    if (rc == 0 && (v < 0 || v > INT_MAX))
        rc = vh_error_set(err, VH_ESTORE, "read schema version: bad value %lld", (long long)v);
    if (rc == 0)
        *out = (int)v;
    conn_put(s, c);
    return rc;
}

/* ---- partners ------------------------------------------------------------------------------ */

static int sqlite_partner_create(struct vh_store *st, const char *id, const char *name,
                                 const char *key_hash, int64_t now_ms, struct vh_partner *out,
                                 struct vh_error *err)
{
    struct sqlite_store *s = to_sqlite(st);
    char what[WHAT_MAX];
    struct query q;
    struct conn *c;
    int rc;

    snprintf(what, sizeof(what), "create partner '%s'", name);
    rc = writer_get(s, &c, err);
    if (rc < 0)
        return rc;
    rc = tx_begin_write(c, what, err);
    if (rc < 0)
        goto out;
    rc = q_start(&q, c, S_PARTNER_INSERT, what, err);
    if (rc < 0)
        goto out;
    q_text(&q, 1, id);
    q_text(&q, 2, name);
    q_int(&q, 3, now_ms);
    rc = q_exec(&q, err);
    if (rc < 0)
        goto out;
    rc = q_start(&q, c, S_KEY_INSERT, what, err);
    if (rc < 0)
        goto out;
    q_text(&q, 1, key_hash);
    q_text(&q, 2, id);
    q_int(&q, 3, now_ms);
    rc = q_step_raw(&q);
    if (rc == SQLITE_CONSTRAINT_PRIMARYKEY)
        rc = vh_error_set(err, VH_ECONFLICT, "%s: the api key is already in use", what);
    else if (rc != SQLITE_DONE)
        rc = q_fail(&q, rc, err);
    else
        rc = 0;
    q_end(&q);
    if (rc < 0)
        goto out;
    rc = tx_commit(c, what, err);
    if (rc < 0)
        goto out;
    snprintf(out->id, sizeof(out->id), "%s", id);
    snprintf(out->name, sizeof(out->name), "%s", name);
    out->created_ms = now_ms;
out:
    tx_rollback(c);
    writer_put(s, c);
    return rc;
}

static int sqlite_partner_list(struct vh_store *st, struct vh_partner **out, size_t *n,
                               struct vh_error *err)
{
    struct sqlite_store *s = to_sqlite(st);
    const char *what = "list partners";
    struct vh_partner *arr = NULL;
    size_t len = 0, cap = 0;
    struct query q;
    struct conn *c;
    void *grown;
    int rc;

    rc = conn_get(s, &c, err);
    if (rc < 0)
        return rc;
    rc = q_start(&q, c, S_PARTNER_LIST, what, err);
    while (rc == 0) {
        rc = q_step(&q, err);
        if (rc <= 0)
            break;
        rc = array_grow(arr, &cap, len, sizeof(*arr), &grown, what, err);
        arr = grown;
        if (rc == 0)
            rc = row_partner(&q, &arr[len], err);
        if (rc == 0)
            len++;
    }
    q_end(&q);
    conn_put(s, c);
    if (rc < 0) {
        vh_free(arr);
        return rc;
    }
    *out = arr;
    *n = len;
    return 0;
}

/* Reads one partner by id with a borrowed connection (also a check inside transactions). */
static int partner_lookup(struct conn *c, const char *id, struct vh_partner *out, const char *what,
                          struct vh_error *err)
{
    struct query q;
    int rc;

    rc = q_start(&q, c, S_PARTNER_GET, what, err);
    if (rc < 0)
        return rc;
    q_text(&q, 1, id);
    rc = q_step(&q, err);
    if (rc == 0)
        rc = vh_error_set(err, VH_ENOTFOUND, "partner '%s' not found", id);
    else if (rc > 0)
        rc = row_partner(&q, out, err);
    q_end(&q);
    return rc;
}

static int sqlite_partner_get(struct vh_store *st, const char *id, struct vh_partner *out,
                              struct vh_error *err)
{
    struct sqlite_store *s = to_sqlite(st);
    char what[WHAT_MAX];
    struct conn *c;
    int rc;

    snprintf(what, sizeof(what), "get partner '%s'", id);
    rc = conn_get(s, &c, err);
    if (rc < 0)
        return rc;
    rc = partner_lookup(c, id, out, what, err);
    conn_put(s, c);
    return rc;
}

static int sqlite_partner_rotate_key(struct vh_store *st, const char *id, const char *key_hash,
                                     int64_t now_ms, struct vh_error *err)
{
    struct sqlite_store *s = to_sqlite(st);
    struct vh_partner p;
    char what[WHAT_MAX];
    struct query q;
    struct conn *c;
    int rc;

    snprintf(what, sizeof(what), "rotate key of partner '%s'", id);
    rc = writer_get(s, &c, err);
    if (rc < 0)
        return rc;
    rc = tx_begin_write(c, what, err);
    if (rc == 0)
        rc = partner_lookup(c, id, &p, what, err);
    if (rc == 0)
        rc = q_start(&q, c, S_KEY_REVOKE_ALL, what, err);
    if (rc < 0)
        goto out;
    q_text(&q, 1, id);
    q_int(&q, 2, now_ms);
    rc = q_exec(&q, err);
    if (rc < 0)
        goto out;
    rc = q_start(&q, c, S_KEY_INSERT, what, err);
    if (rc < 0)
        goto out;
    q_text(&q, 1, key_hash);
    q_text(&q, 2, id);
    q_int(&q, 3, now_ms);
    rc = q_step_raw(&q);
    if (rc == SQLITE_CONSTRAINT_PRIMARYKEY)
        rc = vh_error_set(err, VH_ECONFLICT, "%s: the api key is already in use", what);
    else if (rc != SQLITE_DONE)
        rc = q_fail(&q, rc, err);
    else
        rc = 0;
    q_end(&q);
    if (rc == 0)
        rc = tx_commit(c, what, err);
out:
    tx_rollback(c);
    writer_put(s, c);
    return rc;
}

static int sqlite_partner_by_key(struct vh_store *st, const char *key_hash, struct vh_partner *out,
                                 char stored_hash[VH_SHA256_HEX_LEN + 1], struct vh_error *err)
{
    struct sqlite_store *s = to_sqlite(st);
    struct query q;
    struct conn *c;
    int rc;

    rc = conn_get(s, &c, err);
    if (rc < 0)
        return rc;
    rc = q_start(&q, c, S_PARTNER_BY_KEY, "find partner by api key", err);
    if (rc < 0)
        goto out;
    q_text(&q, 1, key_hash);
    rc = q_step(&q, err);
    if (rc == 0)
        rc = vh_error_set(err, VH_ENOTFOUND, "api key not found");
    else if (rc > 0)
        rc = row_partner(&q, out, err);
    if (rc == 0)
        rc = col_text(&q, 3, stored_hash, VH_SHA256_HEX_LEN + 1, "key hash", err);
    q_end(&q);
out:
    conn_put(s, c);
    return rc;
}

/* ---- endpoints ----------------------------------------------------------------------------- */

/* VH_ECONFLICT when another live endpoint of the partner (not `self_id`) has `label`. */
static int label_check(struct conn *c, const char *partner_id, const char *label,
                       const char *self_id, const char *what, struct vh_error *err)
{
    struct query q;
    int rc;

    rc = q_start(&q, c, S_EP_LABEL_TAKEN, what, err);
    if (rc < 0)
        return rc;
    q_text(&q, 1, partner_id);
    q_text(&q, 2, label);
    q_text(&q, 3, self_id);
    rc = q_step(&q, err);
    if (rc > 0)
        rc = vh_error_set(err, VH_ECONFLICT, "label '%s' is already in use", label);
    q_end(&q);
    return rc;
}

static int cancel_pending(struct conn *c, const char *endpoint_id, int64_t now_ms, const char *what,
                          struct vh_error *err)
{
    struct query q;
    int rc;

    rc = q_start(&q, c, S_DLV_CANCEL_PENDING, what, err);
    if (rc < 0)
        return rc;
    q_text(&q, 1, endpoint_id);
    q_int(&q, 2, now_ms);
    rc = q_exec(&q, err);
    if (rc == 0)
        rc = q_start(&q, c, S_DLV_CANCEL_IN_FLIGHT, what, err);
    if (rc < 0)
        return rc;
    q_text(&q, 1, endpoint_id);
    q_int(&q, 2, now_ms);
    return q_exec(&q, err);
}

static int sqlite_endpoint_create(struct vh_store *st, const struct vh_endpoint *ep, int max,
                                  struct vh_error *err)
{
    struct sqlite_store *s = to_sqlite(st);
    char what[WHAT_MAX];
    int64_t count = 0;
    struct query q;
    struct conn *c;
    int rc;

    snprintf(what, sizeof(what), "create endpoint '%s'", ep->label);
    rc = writer_get(s, &c, err);
    if (rc < 0)
        return rc;
    rc = tx_begin_write(c, what, err);
    if (rc == 0)
        rc = q_start(&q, c, S_EP_COUNT, what, err);
    if (rc < 0)
        goto out;
    q_text(&q, 1, ep->partner_id);
    rc = q_int_result(&q, &count, err);
    if (rc < 0)
        goto out;
    if (count >= max) {
        rc = vh_error_set(err, VH_ECONFLICT, "at most %d endpoints per partner", max);
        goto out;
    }
    /* A new id matches no row, so every live endpoint counts against the label. */
    rc = label_check(c, ep->partner_id, ep->label, ep->id, what, err);
    if (rc == 0)
        rc = q_start(&q, c, S_EP_INSERT, what, err);
    if (rc < 0)
        goto out;
    q_text(&q, 1, ep->id);
    q_text(&q, 2, ep->partner_id);
    q_text(&q, 3, ep->label);
    q_text(&q, 4, ep->url);
    q_text(&q, 5, ep->secret);
    q_int(&q, 6, ep->enabled ? 1 : 0);
    q_int(&q, 7, ep->created_ms);
    q_int(&q, 8, ep->updated_ms);
    q_text(&q, 9, ep->retry_schedule[0] ? ep->retry_schedule : NULL);
    q_int_or_null(&q, 10, ep->timeout_ms);
    rc = q_step_raw(&q);
    if (rc == SQLITE_DONE)
        rc = 0;
    else if (rc == SQLITE_CONSTRAINT_FOREIGNKEY)
        rc = vh_error_set(err, VH_ENOTFOUND, "partner '%s' not found", ep->partner_id);
    else if (rc == SQLITE_CONSTRAINT_PRIMARYKEY)
        rc = vh_error_set(err, VH_ECONFLICT, "endpoint '%s' already exists", ep->id);
    else if (rc == SQLITE_CONSTRAINT_UNIQUE)
        rc = vh_error_set(err, VH_ECONFLICT, "label '%s' is already in use", ep->label);
    else
        rc = q_fail(&q, rc, err);
    q_end(&q);
    if (rc == 0)
        rc = tx_commit(c, what, err);
out:
    tx_rollback(c);
    writer_put(s, c);
    return rc;
}

/* One endpoint by (partner, id) or (partner, label), with a borrowed connection. */
static int endpoint_lookup(struct conn *c, enum stmt_id id, const char *partner_id, const char *key,
                           struct vh_endpoint *out, const char *what, struct vh_error *err)
{
    struct query q;
    int rc;

    rc = q_start(&q, c, id, what, err);
    if (rc < 0)
        return rc;
    q_text(&q, 1, partner_id);
    q_text(&q, 2, key);
    rc = q_step(&q, err);
    if (rc == 0)
        rc = vh_error_set(err, VH_ENOTFOUND, "endpoint '%s' not found", key);
    else if (rc > 0)
        rc = row_endpoint(&q, out, err);
    q_end(&q);
    return rc;
}

static int sqlite_endpoint_get(struct vh_store *st, const char *partner_id, const char *id,
                               struct vh_endpoint *out, struct vh_error *err)
{
    struct sqlite_store *s = to_sqlite(st);
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

static int sqlite_endpoint_get_by_label(struct vh_store *st, const char *partner_id,
                                        const char *label, struct vh_endpoint *out,
                                        struct vh_error *err)
{
    struct sqlite_store *s = to_sqlite(st);
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

static int sqlite_endpoint_list(struct vh_store *st, const char *partner_id,
                                struct vh_endpoint **out, size_t *n, struct vh_error *err)
{
    struct sqlite_store *s = to_sqlite(st);
    struct vh_endpoint *arr = NULL;
    size_t len = 0, cap = 0;
    char what[WHAT_MAX];
    struct query q;
    struct conn *c;
    void *grown;
    int rc;

    snprintf(what, sizeof(what), "list endpoints of partner '%s'", partner_id);
    rc = conn_get(s, &c, err);
    if (rc < 0)
        return rc;
    rc = q_start(&q, c, S_EP_LIST, what, err);
    if (rc == 0)
        q_text(&q, 1, partner_id);
    while (rc == 0) {
        rc = q_step(&q, err);
        if (rc <= 0)
            break;
        rc = array_grow(arr, &cap, len, sizeof(*arr), &grown, what, err);
        arr = grown;
        if (rc == 0)
            rc = row_endpoint(&q, &arr[len], err);
        if (rc == 0)
            len++;
    }
    q_end(&q);
    conn_put(s, c);
    if (rc < 0) {
        vh_free(arr);
        return rc;
    }
    *out = arr;
    *n = len;
    return 0;
}

static int sqlite_endpoint_update(struct vh_store *st, const struct vh_endpoint *seen,
                                  const struct vh_endpoint *ep, struct vh_error *err)
{
    struct sqlite_store *s = to_sqlite(st);
    struct vh_endpoint old;
    char what[WHAT_MAX];
    struct query q;
    struct conn *c;
    int rc;

    snprintf(what, sizeof(what), "update endpoint '%s'", ep->id);
    rc = writer_get(s, &c, err);
    if (rc < 0)
        return rc;
    rc = tx_begin_write(c, what, err);
    /* Existence first, so another partner's id is "not found" whatever the label. */
    if (rc == 0)
        rc = endpoint_lookup(c, S_EP_GET, ep->partner_id, ep->id, &old, what, err);
    if (rc == 0 && seen && !vh__endpoint_unchanged(seen, &old))
        rc = vh_error_set(err, VH_ESTATE, "%s: it changed since it was read", what);
    if (rc == 0)
        rc = label_check(c, ep->partner_id, ep->label, ep->id, what, err);
    if (rc == 0)
        rc = q_start(&q, c, S_EP_UPDATE, what, err);
    if (rc < 0)
        goto out;
    q_text(&q, 1, ep->partner_id);
    q_text(&q, 2, ep->id);
    q_text(&q, 3, ep->label);
    q_text(&q, 4, ep->url);
    q_text(&q, 5, ep->secret);
    q_int(&q, 6, ep->enabled ? 1 : 0);
    q_int(&q, 7, ep->updated_ms);
    q_text(&q, 8, ep->retry_schedule[0] ? ep->retry_schedule : NULL);
    q_int_or_null(&q, 9, ep->timeout_ms);
    rc = q_step_raw(&q);
    if (rc == SQLITE_DONE)
        rc = sqlite3_changes(c->db) == 1
                 ? 0
                 : vh_error_set(err, VH_ESTORE, "%s: the row changed under a write lock", what);
    else if (rc == SQLITE_CONSTRAINT_UNIQUE)
        rc = vh_error_set(err, VH_ECONFLICT, "label '%s' is already in use", ep->label);
    else
        rc = q_fail(&q, rc, err);
    q_end(&q);
    /* SPEC §3: disabling stops the endpoint's pending deliveries. */
    if (rc == 0 && !ep->enabled)
        rc = cancel_pending(c, ep->id, ep->updated_ms, what, err);
    if (rc == 0)
        rc = tx_commit(c, what, err);
out:
    tx_rollback(c);
    writer_put(s, c);
    return rc;
}

static int sqlite_endpoint_delete(struct vh_store *st, const char *partner_id, const char *id,
                                  int64_t now_ms, struct vh_error *err)
{
    struct sqlite_store *s = to_sqlite(st);
    char what[WHAT_MAX];
    struct query q;
    struct conn *c;
    int rc;

    snprintf(what, sizeof(what), "delete endpoint '%s'", id);
    rc = writer_get(s, &c, err);
    if (rc < 0)
        return rc;
    rc = tx_begin_write(c, what, err);
    if (rc == 0)
        rc = q_start(&q, c, S_EP_DELETE, what, err);
    if (rc < 0)
        goto out;
    q_text(&q, 1, partner_id);
    q_text(&q, 2, id);
    q_int(&q, 3, now_ms);
    rc = q_exec(&q, err);
    if (rc == 0 && sqlite3_changes(c->db) == 0)
        rc = vh_error_set(err, VH_ENOTFOUND, "endpoint '%s' not found", id);
    if (rc == 0)
        rc = cancel_pending(c, id, now_ms, what, err);
    if (rc == 0)
        rc = tx_commit(c, what, err);
out:
    tx_rollback(c);
    writer_put(s, c);
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
    struct query q;
    int64_t fanout;
    int rc;

    rc = q_start(&q, c, S_EV_BY_SESSION, what, err);
    if (rc < 0)
        return rc;
    q_text(&q, 1, ev->session_id);
    rc = q_step(&q, err);
    if (rc <= 0)
        goto out; /* 0: a new session */
    rc = col_text(&q, 1, owner, sizeof(owner), "partner id", err);
    if (rc < 0)
        goto out;
    if (strcmp(owner, ev->partner_id) != 0) {
        rc = vh_error_set(err, VH_ECONFLICT, "session_id '%s' belongs to another partner",
                          ev->session_id);
        goto out;
    }
    rc = col_text(&q, 0, out->event_id, sizeof(out->event_id), "event id", err);
    if (rc < 0)
        goto out;
    fanout = sqlite3_column_int64(q.st, 2);
    out->deliveries = fanout > 0 ? (size_t)fanout : 0;
    out->created = false;
    rc = 1;
out:
    q_end(&q);
    return rc;
}

/* The ids of the partner's enabled, live endpoints, in a new array of `*n` entries. */
static int enabled_endpoints(struct conn *c, const char *partner_id, char (**out)[VH_UUID_LEN + 1],
                             size_t *n, const char *what, struct vh_error *err)
{
    char(*ids)[VH_UUID_LEN + 1] = NULL;
    size_t len = 0, cap = 0;
    struct query q;
    void *grown;
    int rc;

    rc = q_start(&q, c, S_EP_ENABLED_IDS, what, err);
    if (rc == 0)
        q_text(&q, 1, partner_id);
    while (rc == 0) {
        rc = q_step(&q, err);
        if (rc <= 0)
            break;
        rc = array_grow(ids, &cap, len, sizeof(*ids), &grown, what, err);
        ids = grown;
        if (rc == 0)
            rc = col_text(&q, 0, ids[len], sizeof(ids[len]), "endpoint id", err);
        if (rc == 0)
            len++;
    }
    q_end(&q);
    if (rc < 0) {
        vh_free(ids);
        return rc;
    }
    *out = ids;
    *n = len;
    return 0;
}

/*
 * Inserts the event row and sets `seq` to its seq; SQLITE_CONSTRAINT_UNIQUE comes back
 * unreported (a lost race).
 */
static int event_insert(struct conn *c, const struct vh_event_put *ev, const char *id,
                        size_t fanout, int64_t *seq, const char *what, struct vh_error *err)
{
    struct query q;
    int rc;

    rc = q_start(&q, c, S_EV_INSERT, what, err);
    if (rc < 0)
        return rc;
    q_text(&q, 1, id);
    q_text(&q, 2, ev->partner_id);
    q_text(&q, 3, ev->session_id);
    q_text(&q, 4, ev->call_id);
    q_text(&q, 5, ev->call_id ? vh_call_status_name((enum vh_call_status)ev->call_status) : NULL);
    q_text(&q, 6, ev->recording_key);
    q_blob(&q, 7, ev->body, ev->body_len);
    q_int(&q, 8, (int64_t)fanout);
    q_int(&q, 9, ev->accepted_ms);
    rc = q_step_raw(&q);
    if (rc == SQLITE_DONE) {
        *seq = sqlite3_last_insert_rowid(c->db);
        rc = 0;
    } else if (rc == SQLITE_CONSTRAINT_UNIQUE)
        rc = SQLITE_CONSTRAINT_UNIQUE;
    else if (rc == SQLITE_CONSTRAINT_FOREIGNKEY)
        rc = vh_error_set(err, VH_ENOTFOUND, "partner '%s' not found", ev->partner_id);
    else
        rc = q_fail(&q, rc, err);
    q_end(&q);
    return rc;
}

/* A new pending delivery of the event with seq `event_seq`, due (and created) at `due_ms`. */
static int delivery_insert(struct conn *c, const char *partner_id, int64_t event_seq,
                           const char *endpoint_id, int64_t due_ms, const char *what,
                           struct vh_error *err)
{
    char id[VH_UUID_LEN + 1];
    struct query q;
    int rc;

    rc = vh_uuid_new(id, err);
    if (rc == 0)
        rc = q_start(&q, c, S_DLV_INSERT, what, err);
    if (rc < 0)
        return rc;
    q_text(&q, 1, id);
    q_int(&q, 2, event_seq);
    q_text(&q, 3, endpoint_id);
    q_text(&q, 4, partner_id);
    q_int(&q, 5, due_ms);
    return q_exec(&q, err);
}

/*
 * One event inside the open write transaction: find its session, or insert the event and
 * its deliveries. Under BEGIN IMMEDIATE the lookup and the insert see the same data, so the
 * session_id UNIQUE constraint cannot fire on SQLite; should it ever, the event fails with
 * VH_ESTORE rather than passing as a repeat. With `savepoint`, the event runs under a
 * savepoint: on failure only this event is undone, and the group goes on. Without it, a
 * failed event may leave part of its writes in the transaction, for the caller to roll back.
 * Returns 0 (out filled; created or a repeat) or a negative vh_err.
 */
static int event_put_one(struct conn *c, const struct vh_event_put *ev, const char *new_id,
                         bool savepoint, struct vh_event_put_result *out, struct vh_error *err)
{
    char(*endpoints)[VH_UUID_LEN + 1] = NULL;
    size_t n_endpoints = 0, i;
    char what[WHAT_MAX];
    int64_t seq = 0;
    int rc;

    snprintf(what, sizeof(what), "insert event '%s'", ev->session_id);
    if (savepoint) {
        rc = run(c, S_SAVEPOINT, what, err);
        if (rc < 0)
            return rc;
    }
    rc = event_find(c, ev, out, what, err);
    if (rc > 0) {
        rc = 0; /* a repeat: its first answer, nothing written */
        goto out;
    }
    if (rc == 0)
        rc = enabled_endpoints(c, ev->partner_id, &endpoints, &n_endpoints, what, err);
    if (rc == 0)
        rc = event_insert(c, ev, new_id, n_endpoints, &seq, what, err);
    if (rc == SQLITE_CONSTRAINT_UNIQUE) /* impossible under the write lock; never silent */
        rc = vh_error_set(err, VH_ESTORE, "%s: session_id conflict", what);
    for (i = 0; i < n_endpoints && rc == 0; i++)
        rc = delivery_insert(c, ev->partner_id, seq, endpoints[i], ev->accepted_ms, what, err);
    if (rc == 0) {
        snprintf(out->event_id, sizeof(out->event_id), "%s", new_id);
        out->deliveries = n_endpoints;
        out->created = true;
    }
out:
    if (savepoint && rc < 0 && !sqlite3_get_autocommit(c->db))
        run(c, S_ROLLBACK_TO, what, NULL);
    if (savepoint && !sqlite3_get_autocommit(c->db)) {
        int released = run(c, S_RELEASE, what, rc < 0 ? NULL : err);

        if (rc == 0 && released < 0)
            rc = released;
    }
    vh_free(endpoints);
    return rc;
}

/*
 * Commits a group of queued ingests in ONE write transaction: one fsync for them all. In a
 * group of several, each event has its own savepoint, so a failed one is undone alone. A
 * group of one needs no savepoint: its failed event is undone by rolling back the whole
 * transaction, which holds nothing else, and answered with its own error, as it would be
 * under a savepoint.
 */
static struct put_waiter *waiter_of(struct vh__group_op *g)
{
    return (struct put_waiter *)g;
}

static void event_put_group(void *ud, struct vh__group_op *batch)
{
    struct sqlite_store *s = ud;
    struct vh_error err = VH_ERROR_INIT;
    struct put_waiter *group = waiter_of(batch), *w;
    bool alone = !batch->next;
    struct conn *c = NULL;
    int rc;

    rc = writer_get(s, &c, &err);
    if (rc == 0)
        rc = tx_begin_write(c, "group commit of events", &err);
    for (w = group; rc == 0 && w; w = waiter_of(w->g.next)) {
        w->rc = event_put_one(c, w->ev, w->new_id, !alone, &w->out, &w->err);
        /* SQLite rolls the whole transaction back by itself on some errors (FULL, IOERR,
         * NOMEM): then nothing of the group stands, and every caller must hear it. */
        if (sqlite3_get_autocommit(c->db))
            rc = vh_error_set(&err, VH_ESTORE, "group commit of events: rolled back (%s)",
                              w->rc < 0 ? w->err.msg : "transaction ended");
    }
    if (rc == 0 && !(alone && group->rc < 0))
        rc = tx_commit(c, "group commit of events", &err);
    if (rc < 0) {
        /* Nothing of the group is durable: every caller gets the failure. */
        for (w = group; w; w = waiter_of(w->g.next)) {
            w->rc = rc;
            w->err = err;
        }
    }
    if (c) {
        tx_rollback(c); /* a failed event alone, or a failed group */
        writer_put(s, c);
    }
}

/*
 * Ingests are group-committed (core/group_int.h, as the receiver's inbox is): a caller
 * queues its event; the one at the head of the queue, when no commit is running, commits
 * everything queued in one transaction (one fsync under synchronous=FULL), the others
 * sleep. Under load, many ingests share each sync; alone, a caller commits at once. A
 * failed event is undone alone and answered with its own error; a failed commit answers the
 * whole group with its error. Each caller returns only once its event is durable (or has
 * failed).
 */
static int sqlite_event_put(struct vh_store *st, const struct vh_event_put *ev, const char *new_id,
                            struct vh_event_put_result *out, struct vh_error *err)
{
    struct sqlite_store *s = to_sqlite(st);
    struct put_waiter me;

    memset(&me, 0, sizeof(me));
    me.ev = ev;
    me.new_id = new_id;
    if (vh__group_submit(&s->put_queue, &me.g, event_put_group, s) < 0)
        return vh_error_set(err, VH_ENOMEM, "insert event '%s': cannot create a semaphore",
                            ev->session_id);
    if (me.rc < 0) {
        if (err && err->code == 0)
            *err = me.err;
        return me.rc;
    }
    *out = me.out;
    return 0;
}

/* A posted put's completion (vh__group_done_fn), on the thread that ran its batch. */
static void put_posted_done(struct vh__group_op *g)
{
    struct put_waiter *w = waiter_of(g);

    w->done(w->ud, w->rc, w->rc == 0 ? &w->out : NULL, &w->err);
    vh_free(w);
}

/*
 * The same group commit for a caller that must not wait: the put joins the queue, and the
 * store's runner thread leads when it reaches the head with no batch running.
 */
static int sqlite_event_put_post(struct vh_store *st, const struct vh_event_put *ev,
                                 const char *new_id, vh_store_put_done_fn *done, void *ud,
                                 struct vh_error *err)
{
    struct sqlite_store *s = to_sqlite(st);
    struct put_waiter *w;
    int rc;

    /* The commit thread starts with the first post. */
    rc =
        vh__group_runner_start(&s->put_queue, &s->rn, &s->runner, &s->runner_started, "store", err);
    if (rc < 0)
        return rc;
    w = vh_malloc(sizeof(*w));
    if (!w)
        return vh_error_set(err, VH_ENOMEM, "insert event '%s': out of memory", ev->session_id);
    memset(w, 0, sizeof(*w));
    w->ev = ev;
    memcpy(w->id, new_id, sizeof(w->id));
    w->new_id = w->id;
    w->done = done;
    w->ud = ud;
    w->g.on_done = put_posted_done;
    vh__group_post(&s->put_queue, &w->g);
    return 0;
}

/* ---- calls (events read back) ------------------------------------------------------------ */

/* 1 and `out` filled when statement `id` finds a row for (partner, key), 0 when none. */
static int call_lookup(struct conn *c, enum stmt_id id, const char *partner_id, const char *key,
                       struct vh_call_rec *out, const char *what, struct vh_error *err)
{
    struct query q;
    int rc;

    rc = q_start(&q, c, id, what, err);
    if (rc < 0)
        return rc;
    q_text(&q, 1, partner_id);
    q_text(&q, 2, key);
    rc = q_step(&q, err);
    if (rc > 0) {
        rc = row_call(&q, out, err);
        if (rc == 0)
            rc = 1;
    }
    q_end(&q);
    return rc;
}

static int sqlite_call_get(struct vh_store *st, const char *partner_id, const char *id,
                           struct vh_call_rec *out, struct vh_error *err)
{
    struct sqlite_store *s = to_sqlite(st);
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

static int sqlite_call_list(struct vh_store *st, const char *partner_id, size_t limit,
                            size_t offset, int call_status, struct vh_call_rec **out, size_t *n,
                            size_t *total, struct vh_error *err)
{
    struct sqlite_store *s = to_sqlite(st);
    const char *status = call_status ? vh_call_status_name((enum vh_call_status)call_status) : NULL;
    struct vh_call_rec *arr = NULL;
    size_t len = 0, cap = 0;
    char what[WHAT_MAX];
    int64_t all = 0;
    struct query q;
    struct conn *c;
    void *grown;
    int rc;

    snprintf(what, sizeof(what), "list calls of partner '%s'", partner_id);
    rc = conn_get(s, &c, err);
    if (rc < 0)
        return rc;
    /* One read transaction: the total and the page come from the same snapshot. */
    rc = tx_begin_read(c, what, err);
    if (rc == 0)
        rc = q_start(&q, c, S_CALL_COUNT, what, err);
    if (rc < 0)
        goto out;
    q_text(&q, 1, partner_id);
    q_text(&q, 2, status);
    rc = q_int_result(&q, &all, err);
    if (rc == 0)
        rc = q_start(&q, c, S_CALL_PAGE, what, err);
    if (rc < 0)
        goto out;
    q_text(&q, 1, partner_id);
    q_text(&q, 2, status);
    q_int(&q, 3, (int64_t)limit);
    q_int(&q, 4, (int64_t)offset);
    while (rc == 0) {
        rc = q_step(&q, err);
        if (rc <= 0)
            break;
        rc = array_grow(arr, &cap, len, sizeof(*arr), &grown, what, err);
        arr = grown;
        if (rc == 0) {
            memset(&arr[len], 0, sizeof(arr[len]));
            rc = row_call(&q, &arr[len], err);
        }
        if (rc == 0)
            len++;
    }
    q_end(&q);
    if (rc == 0)
        rc = tx_commit(c, what, err);
out:
    tx_rollback(c);
    conn_put(s, c);
    if (rc < 0) {
        call_array_free(arr, len);
        return rc;
    }
    *out = arr;
    *n = len;
    *total = all > 0 ? (size_t)all : 0;
    return 0;
}

static int sqlite_event_deliveries(struct vh_store *st, const char *event_id,
                                   struct vh_delivery_brief **out, size_t *n, struct vh_error *err)
{
    struct sqlite_store *s = to_sqlite(st);
    struct vh_delivery_brief *arr = NULL, *d;
    size_t len = 0, cap = 0;
    char what[WHAT_MAX];
    struct query q;
    struct conn *c;
    int64_t attempts, seq = 0;
    void *grown;
    int rc;

    snprintf(what, sizeof(what), "list deliveries of event '%s'", event_id);
    rc = conn_get(s, &c, err);
    if (rc < 0)
        return rc;
    rc = tx_begin_read(c, what, err);
    if (rc == 0)
        rc = q_start(&q, c, S_EV_SEQ, what, err);
    if (rc < 0)
        goto out;
    q_text(&q, 1, event_id);
    rc = q_step(&q, err);
    if (rc > 0)
        seq = sqlite3_column_int64(q.st, 0);
    q_end(&q);
    if (rc == 0)
        rc = vh_error_set(err, VH_ENOTFOUND, "event '%s' not found", event_id);
    if (rc > 0)
        rc = q_start(&q, c, S_DLV_OF_EVENT, what, err);
    if (rc < 0)
        goto out;
    q_int(&q, 1, seq);
    while (rc == 0) {
        rc = q_step(&q, err);
        if (rc <= 0)
            break;
        rc = array_grow(arr, &cap, len, sizeof(*arr), &grown, what, err);
        arr = grown;
        if (rc < 0)
            break;
        d = &arr[len];
        rc = col_text(&q, 0, d->id, sizeof(d->id), "delivery id", err);
        if (rc == 0)
            rc = col_text(&q, 1, d->endpoint_id, sizeof(d->endpoint_id), "endpoint id", err);
        if (rc == 0)
            rc = col_text(&q, 2, d->state, sizeof(d->state), "state", err);
        attempts = sqlite3_column_int64(q.st, 3);
        d->attempts = attempts < 0 || attempts > INT_MAX ? 0 : (int)attempts;
        d->next_attempt_ms = sqlite3_column_int64(q.st, 4);
        if (rc == 0)
            len++;
    }
    q_end(&q);
    if (rc == 0)
        rc = tx_commit(c, what, err);
out:
    tx_rollback(c);
    conn_put(s, c);
    if (rc < 0) {
        vh_free(arr);
        return rc;
    }
    *out = arr;
    *n = len;
    return 0;
}

/* ---- the delivery engine's side: claim, record, recover -------------------------------------- */

/* An attempt count column; a value out of range means the file was written by something else. */
static int col_count(const struct query *q, int col, unsigned *out, const char *name,
                     struct vh_error *err)
{
    int64_t v = sqlite3_column_int64(q->st, col);

    if (v < 0 || v > INT32_MAX)
        return vh_error_set(err, VH_ESTORE, "%s: stored %s %lld is out of range", q->what, name,
                            (long long)v);
    *out = (unsigned)v;
    return 0;
}

/* Appends a blob column (NULL reads as empty) to `b`. */
static int col_blob(const struct query *q, int col, struct vh_buf *b, const char *name,
                    struct vh_error *err)
{
    const void *p = sqlite3_column_blob(q->st, col);
    int n = sqlite3_column_bytes(q->st, col);
    int rc;

    if (n <= 0)
        return 0;
    if (!p)
        return vh_error_set(err, VH_ENOMEM, "%s: reading %s: out of memory", q->what, name);
    rc = vh_buf_add(b, p, (size_t)n);
    if (rc < 0)
        return vh_error_set(err, rc, "%s: reading %s: %s", q->what, name, vh_strerror(rc));
    return 0;
}

/* Reads a row of S_CLAIM_SELECT into a zeroed `j` whose body is initialized. */
static int row_job(const struct query *q, struct vh_delivery_job_rec *j, struct vh_error *err)
{
    int rc;

    rc = col_text(q, 0, j->delivery_id, sizeof(j->delivery_id), "delivery id", err);
    if (rc == 0)
        rc = col_text(q, 1, j->event_id, sizeof(j->event_id), "event id", err);
    if (rc == 0)
        rc = col_text(q, 2, j->endpoint_id, sizeof(j->endpoint_id), "endpoint id", err);
    if (rc == 0)
        rc = col_text(q, 3, j->partner_id, sizeof(j->partner_id), "partner id", err);
    if (rc == 0)
        rc = col_count(q, 4, &j->attempts, "attempt count", err);
    if (rc == 0)
        rc = col_count(q, 5, &j->attempt_base, "attempt base", err);
    if (rc == 0)
        rc = col_blob(q, 7, &j->body, "body", err);
    if (rc < 0)
        return rc;
    j->next_attempt_ms = sqlite3_column_int64(q->st, 6);
    j->row = sqlite3_column_int64(q->st, 8);
    if (j->body.len == 0)
        return vh_error_set(err, VH_ESTORE, "%s: stored body of delivery '%s' is empty", q->what,
                            j->delivery_id);
    return 0;
}

/* Fills the endpoint's part of `j` (url, secret, schedule, timeout) from its row. */
static int claim_endpoint(struct conn *c, struct vh_delivery_job_rec *j, const char *what,
                          struct vh_error *err)
{
    struct query q;
    int rc;

    rc = q_start(&q, c, S_CLAIM_ENDPOINT, what, err);
    if (rc < 0)
        return rc;
    q_text(&q, 1, j->endpoint_id);
    rc = q_step(&q, err);
    if (rc == 0)
        rc = vh_error_set(err, VH_ESTORE, "%s: delivery '%s' names endpoint '%s', not stored", what,
                          j->delivery_id, j->endpoint_id);
    if (rc > 0)
        rc = col_text(&q, 0, j->url, sizeof(j->url), "url", err);
    if (rc == 0)
        rc = col_text(&q, 1, j->secret, sizeof(j->secret), "secret", err);
    if (rc == 0)
        rc = col_text(&q, 2, j->retry_schedule, sizeof(j->retry_schedule), "retry schedule", err);
    if (rc == 0)
        j->timeout_ms = sqlite3_column_int64(q.st, 3); /* NULL reads as 0: the server's */
    q_end(&q);
    return rc;
}

/* Endpoints a claim remembers (claim_endpoints): rows of more are read again, not searched. */
#define CLAIM_ENDPOINTS_SEEN 16

/*
 * Gives each claimed row its endpoint's settings: read once per endpoint of the claim (a
 * drain claims a batch for one endpoint or a few), copied to that endpoint's later rows.
 * Only the last CLAIM_ENDPOINTS_SEEN endpoints read are searched, so a claim of many
 * endpoints costs a read per row, as the join did, and never a long search.
 */
static int claim_endpoints(struct conn *c, struct vh_delivery_job_rec *arr, size_t len,
                           const char *what, struct vh_error *err)
{
    size_t seen[CLAIM_ENDPOINTS_SEEN]; /* rows whose endpoint was read, newest at next - 1 */
    size_t n_seen = 0, next = 0, i, k;
    int rc;

    for (i = 0; i < len; i++) {
        struct vh_delivery_job_rec *j = &arr[i], *from = NULL;

        for (k = 0; !from && k < n_seen; k++) {
            struct vh_delivery_job_rec *r =
                &arr[seen[(next + CLAIM_ENDPOINTS_SEEN - 1 - k) % CLAIM_ENDPOINTS_SEEN]];

            if (strcmp(r->endpoint_id, j->endpoint_id) == 0)
                from = r;
        }
        if (from) {
            memcpy(j->url, from->url, strlen(from->url) + 1);
            memcpy(j->secret, from->secret, sizeof(j->secret));
            memcpy(j->retry_schedule, from->retry_schedule, strlen(from->retry_schedule) + 1);
            j->timeout_ms = from->timeout_ms;
            continue;
        }
        rc = claim_endpoint(c, j, what, err);
        if (rc < 0)
            return rc;
        seen[next] = i;
        next = (next + 1) % CLAIM_ENDPOINTS_SEEN;
        if (n_seen < CLAIM_ENDPOINTS_SEEN)
            n_seen++;
    }
    return 0;
}

/*
 * Reads up to `max` due deliveries into a new array, each with its endpoint's settings, in
 * one read transaction, stopping before a body that would take them past `max_bytes` (0:
 * no bound; the first row is read whatever its size); nothing is marked yet. Begins past
 * `*resume` if it holds and no other process wrote since, and sets it to where the next
 * claim may begin.
 */
static int claim_select(struct conn *c, int64_t now_ms, size_t max, size_t max_bytes,
                        struct claim_resume *resume, struct vh_delivery_job_rec **out, size_t *n,
                        const char *what, struct vh_error *err)
{
    struct vh_delivery_job_rec *arr = NULL;
    size_t len = 0, bytes = 0;
    bool full = false; /* stopped by a bound, not by the due rows running out */
    struct query q = {NULL, NULL, NULL, SQLITE_OK};
    int64_t data_version = 0;
    bool from_start;
    void *shrunk;
    int rc;

    *out = NULL;
    *n = 0;
    if (max == 0)
        return 0;
    /*
     * Room for `max` at once (at most VH_CLAIM_MAX), cut to size after: a record is 2.6 KB,
     * and an array grown by doubling copied about one of them per row claimed.
     */
    arr = vh_malloc(max * sizeof(*arr));
    if (!arr)
        return vh_error_set(err, VH_ENOMEM, "%s: out of memory", what);
    rc = tx_begin_read(c, what, err);
    if (rc == 0)
        rc = q_start(&q, c, S_DATA_VERSION, what, err);
    if (rc == 0)
        rc = q_int_result(&q, &data_version, err);
    from_start = !resume->valid || resume->data_version != data_version;
    resume->valid = false; /* until this claim has filled up */
    if (rc == 0)
        rc = q_start(&q, c, S_CLAIM_SELECT, what, err);
    if (rc == 0) {
        q_int(&q, 1, now_ms);
        q_int(&q, 2, (int64_t)max);
        q_int(&q, 3, from_start ? INT64_MIN : resume->next_attempt_ms);
        q_int(&q, 4, from_start ? 0 : resume->seq);
    }
    while (rc == 0 && len < max) {
        rc = q_step(&q, err);
        if (rc <= 0)
            break;
        memset(&arr[len], 0, sizeof(arr[len]));
        vh_buf_init(&arr[len].body, VH__STORE_BODY_MAX);
        /* Counted before reading, so a failed row is released with the rest. */
        len++;
        rc = row_job(&q, &arr[len - 1], err);
        if (rc < 0)
            break;
        /* Past the byte bound: left due (its body read for nothing), first for the next. */
        if (max_bytes && len > 1 && bytes + arr[len - 1].body.len > max_bytes) {
            vh_delivery_job_rec_release(&arr[--len]);
            full = true;
            break;
        }
        bytes += arr[len - 1].body.len;
    }
    full = full || len == max;
    q_end(&q);
    if (rc == 0)
        rc = claim_endpoints(c, arr, len, what, err);
    if (rc == 0)
        rc = tx_commit(c, what, err);
    if (rc < 0) {
        tx_rollback(c);
        vh_delivery_job_recs_free(arr, len);
        return rc;
    }
    if (len == 0) {
        vh_free(arr);
        return 0;
    }
    if (full) {
        resume->valid = true;
        resume->next_attempt_ms = arr[len - 1].next_attempt_ms;
        resume->seq = arr[len - 1].row;
        resume->data_version = data_version;
    }
    shrunk = len < max ? vh_realloc(arr, len * sizeof(*arr)) : NULL;
    *out = shrunk ? shrunk : arr; /* a failed shrink leaves the array as it was */
    *n = len;
    return 0;
}

/*
 * Takes `<file>-lock` for this store, once (under the writer's turn, on its connection
 * `c`). The claims live in this process's memory, so a second process claiming from the
 * file would send the same deliveries: the lock makes it fail instead. flock, not a lock
 * on the database file: the kernel drops it when the process dies, however it dies, and
 * SQLite's own POSIX locks on the file would be dropped by any close of a descriptor of
 * it. `<file>` is the name SQLite resolved (symbolic links followed, as it does for its
 * -wal and -shm), not the path as given: a handle opened through a link to the file is
 * another claimer of the same file.
 */
static int claim_lock_take(struct sqlite_store *s, struct conn *c, const char *what,
                           struct vh_error *err)
{
    const char *file = sqlite3_db_filename(c->db, "main");
    size_t len;
    char *name;
    int fd, rc = 0;

    if (s->claim_lock >= 0)
        return 0;
    if (!file || !*file)
        file = s->path;
    len = strlen(file) + sizeof("-lock");
    name = vh_malloc(len);
    if (!name)
        return vh_error_set(err, VH_ENOMEM, "%s: out of memory", what);
    snprintf(name, len, "%s-lock", file);
    fd = open(name, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        rc = vh_error_set(err, VH_ESTORE, "%s: lock file '%s': %s", what, name, strerror(errno));
    } else if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        const int e = errno;

        close(fd);
        if (e == EWOULDBLOCK)
            rc = vh_error_set(err, VH_ECONFLICT,
                              "%s: another process delivers from '%s' (it holds '%s'); one "
                              "vocohook serve per SQLite file",
                              what, s->path, name);
        else
            rc = vh_error_set(err, VH_ESTORE, "%s: lock file '%s': %s", what, name, strerror(e));
    } else {
        s->claim_lock = fd;
    }
    vh_free(name);
    return rc;
}

/*
 * Reads the due rows through the index, leaving out those already held, and holds each
 * one for `node_id` until now_ms + lease_ms (docs/decisions.md, "SQLite: claims held in
 * memory"). The file is not written: the row stays pending there, and every read of this
 * store shows it in flight (SHOWN_STATE). The writer's turn orders it with the records,
 * which drop what they finish from the table after their commit, so a row is never read
 * as pending and unheld while its report is on its way into the file.
 */
static int sqlite_delivery_claim(struct vh_store *st, const char *node_id, int64_t now_ms,
                                 int64_t lease_ms, size_t max, size_t max_bytes,
                                 struct vh_delivery_job_rec **out, size_t *n, struct vh_error *err)
{
    struct sqlite_store *s = to_sqlite(st);
    struct vh_delivery_job_rec *arr = NULL;
    const int64_t until_ms = now_ms + lease_ms;
    char what[WHAT_MAX];
    size_t len = 0, i;
    struct conn *c;
    int rc;

    snprintf(what, sizeof(what), "claim deliveries for node '%s'", node_id);
    rc = writer_take(s, &c, err);
    if (rc < 0)
        return rc;
    rc = claim_lock_take(s, c, what, err);
    if (rc == 0) {
        /* Room first: holding what the select returns cannot fail. */
        pthread_mutex_lock(&s->held_mu);
        if (vh__held_reserve(&s->held, max) < 0)
            rc = vh_error_set(err, VH_ENOMEM, "%s: out of memory", what);
        pthread_mutex_unlock(&s->held_mu);
    }
    if (rc == 0)
        rc = claim_select(c, now_ms, max, max_bytes, &s->resume, &arr, &len, what, err);
    if (rc == 0) {
        pthread_mutex_lock(&s->held_mu);
        for (i = 0; rc == 0 && i < len; i++) {
            rc = vh__held_put(&s->held, arr[i].row, node_id, until_ms, (int64_t)arr[i].attempts);
            arr[i].lease_until_ms = until_ms;
        }
        /* Cannot happen (reserved); undone all the same. */
        while (rc < 0 && i > 0)
            vh__held_remove(&s->held, arr[--i].row);
        pthread_mutex_unlock(&s->held_mu);
        if (rc < 0)
            rc = vh_error_set(err, VH_ENOMEM, "%s: out of memory", what);
    }
    if (rc < 0)
        s->resume.valid = false;
    writer_put(s, c);
    if (rc < 0) {
        vh_delivery_job_recs_free(arr, len);
        return rc;
    }
    *out = arr;
    *n = len;
    return 0;
}

/*
 * The rows this store holds (`node`'s, and those whose lease ends by `ended_by`) in a new
 * array, for a caller in the writer's turn: nothing changes the table meanwhile.
 */
static int held_rows(struct sqlite_store *s, const char *node, int64_t ended_by, int64_t **out,
                     size_t *n, const char *what, struct vh_error *err)
{
    int64_t *rows = NULL;
    size_t len;

    pthread_mutex_lock(&s->held_mu);
    len = vh__held_list(&s->held, node, ended_by, NULL, 0);
    if (len > 0) {
        rows = vh_malloc(len * sizeof(*rows)); /* len <= cap, whose slots are larger */
        if (rows)
            vh__held_list(&s->held, node, ended_by, rows, len);
    }
    pthread_mutex_unlock(&s->held_mu);
    if (len > 0 && !rows)
        return vh_error_set(err, VH_ENOMEM, "%s: out of memory", what);
    *out = rows;
    *n = len;
    return 0;
}

/* The rows this store holds, as a JSON array of numbers (for json_each), into `out`. */
static int held_json(struct sqlite_store *s, struct vh_buf *out, const char *what,
                     struct vh_error *err)
{
    int64_t *rows = NULL;
    size_t n = 0, i;
    int rc;

    rc = held_rows(s, NULL, INT64_MAX, &rows, &n, what, err);
    if (rc < 0)
        return rc;
    rc = vh_buf_addc(out, '[');
    for (i = 0; rc == 0 && i < n; i++)
        rc = vh_buf_addf(out, i ? ",%lld" : "%lld", (long long)rows[i]);
    if (rc == 0)
        rc = vh_buf_addc(out, ']');
    vh_free(rows);
    return rc < 0 ? vh_error_set(err, rc, "%s: the claims held: %s", what, vh_strerror(rc)) : 0;
}

/* Whose claim row `row` is to a report by `node` of the attempt after `attempts`. */
static enum vh__held_match held_match(struct sqlite_store *s, int64_t row, const char *node,
                                      int64_t attempts, int64_t until_ms)
{
    const struct vh__held_entry *e;
    enum vh__held_match m;

    pthread_mutex_lock(&s->held_mu);
    m = vh__held_match(&s->held, row, node, attempts);
    /* A report that names its claim's lease is another claim's when the lease differs. */
    if (m == VH__HELD_MINE && until_ms != 0) {
        e = vh__held_find(&s->held, row);
        if (e && e->until_ms != until_ms)
            m = VH__HELD_OTHER;
    }
    pthread_mutex_unlock(&s->held_mu);
    return m;
}

/*
 * The bytes of `s` kept as an attempt's error line: up to the first line break, at most
 * VH_ATTEMPT_ERROR_LEN, never ending inside a UTF-8 sequence.
 */
static size_t error_line_len(const char *s)
{
    size_t n = 0;

    while (n < VH_ATTEMPT_ERROR_LEN && s[n] && s[n] != '\n' && s[n] != '\r')
        n++;
    if (s[n] && s[n] != '\n' && s[n] != '\r')
        while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
            n--;
    return n;
}

/*
 * Writes the attempt row. A number can be recorded twice only when a lease ran out while
 * its attempt was still going and the delivery was claimed again: then the report that
 * moved the delivery on (`replace`) wins over a stale one, whichever came first.
 */
static int attempt_insert(struct conn *c, const struct vh_delivery_result *r, int64_t seq,
                          bool replace, const char *what, struct vh_error *err)
{
    size_t head_len = r->response_len < VH_STORED_HEAD_MAX ? r->response_len : VH_STORED_HEAD_MAX;
    size_t line_len = r->error ? error_line_len(r->error) : 0;
    struct query q;
    int rc;

    rc = q_start(&q, c, replace ? S_ATTEMPT_UPSERT : S_ATTEMPT_INSERT, what, err);
    if (rc < 0)
        return rc;
    q_int(&q, 1, seq);
    q_int(&q, 2, r->attempt);
    q_int(&q, 3, r->started_ms);
    q_int(&q, 4, r->duration_ms);
    q_int_or_null(&q, 5, r->http_status);
    q_text(&q, 6, r->error_class);
    if (line_len == 0)
        q_text(&q, 7, NULL);
    else /* at most VH_ATTEMPT_ERROR_LEN: it fits an int */
        q_bind_rc(&q, sqlite3_bind_text(q.st, 7, r->error, (int)line_len, SQLITE_STATIC));
    if (head_len == 0)
        q_text(&q, 8, NULL);
    else
        q_blob(&q, 8, r->response_head, head_len);
    return q_exec(&q, err);
}

/* Sets the endpoint's last delivery, unless it already shows a later attempt. */
static int endpoint_last_delivery(struct conn *c, const char *endpoint_id,
                                  const struct vh_delivery_result *r, const char *what,
                                  struct vh_error *err)
{
    struct query q;
    int rc;

    rc = q_start(&q, c, S_EP_LAST_DELIVERY, what, err);
    if (rc < 0)
        return rc;
    q_text(&q, 1, endpoint_id);
    q_int(&q, 2, r->started_ms);
    q_text(&q, 3, r->error_class ? "failed" : "succeeded");
    return q_exec(&q, err);
}

/*
 * The delivery moves on only if it is still this node's claim for this attempt: the claim
 * held in memory (node and attempt count), then the row (still pending, same attempt
 * count, this id) together fence off a stale report (the lease expired and the delivery
 * was recovered, claimed again, canceled, or already moved on).
 */
static int delivery_finish(struct sqlite_store *s, struct conn *c,
                           const struct vh_delivery_result *r, int64_t seq, bool *applied,
                           const char *what, struct vh_error *err)
{
    const int64_t before = (int64_t)r->attempt - 1;
    const bool pending = strcmp(r->new_state, "pending") == 0;
    struct query q;
    int rc;

    *applied = false;
    if (held_match(s, seq, r->node_id, before, r->lease_until_ms) != VH__HELD_MINE)
        return 0;
    rc = q_start(&q, c, S_DLV_FINISH, what, err);
    if (rc < 0)
        return rc;
    q_text(&q, 1, r->delivery_id);
    q_text(&q, 2, r->new_state);
    q_int(&q, 3, r->interrupted ? before : (int64_t)r->attempt);
    q_int(&q, 4, pending ? r->next_attempt_ms : 0);
    q_int(&q, 5, r->started_ms + r->duration_ms);
    q_int(&q, 6, before);
    q_int(&q, 7, seq);
    rc = q_exec(&q, err);
    if (rc == 0)
        *applied = sqlite3_changes(c->db) == 1;
    return rc;
}

/*
 * A counted attempt the delivery's state did not follow (canceled meanwhile, recovered)
 * still raises its attempt count to its number, so the next attempt, in this budget or
 * after a manual retry, gets a number of its own. A pending delivery (recovered, or
 * canceled and retried, after the attempt's claim) raises its attempt_base as much: the
 * attempt is not one of the schedule it is on now, which a retry started afresh and a
 * recovery left as it was. An in-flight delivery (claimed again: the caller checks the
 * claims held here, the statement the file's) is left alone: its new claimer makes and
 * records this number itself.
 */
static int delivery_raise_attempts(struct conn *c, const struct vh_delivery_result *r, int64_t seq,
                                   const char *what, struct vh_error *err)
{
    struct query q;
    int rc;

    rc = q_start(&q, c, S_DLV_RAISE_ATTEMPTS, what, err);
    if (rc < 0)
        return rc;
    q_int(&q, 1, seq);
    q_int(&q, 2, r->attempt);
    return q_exec(&q, err);
}

/* Per result of a batch: its row and endpoint (the caller's, or looked up by id). */
struct result_row {
    int64_t seq;
    bool release;  /* the claim held for it was this report's: dropped after the commit */
    bool finished; /* record_one succeeded and moved it from pending to an end state */
    char endpoint[VH_UUID_LEN + 1];
    const char *endpoint_id;
};

/* Finds the delivery's row and endpoint by its id. */
static int result_lookup(struct conn *c, const struct vh_delivery_result *r, struct result_row *rr,
                         const char *what, struct vh_error *err)
{
    struct query q;
    int rc;

    rc = q_start(&q, c, S_DLV_SEQ, what, err);
    if (rc < 0)
        return rc;
    q_text(&q, 1, r->delivery_id);
    rc = q_step(&q, err);
    if (rc == 0)
        rc = vh_error_set(err, VH_ENOTFOUND, "%s: delivery '%s' not found", what, r->delivery_id);
    else if (rc > 0)
        rc = col_text(&q, 1, rr->endpoint, sizeof(rr->endpoint), "endpoint id", err);
    if (rc == 0) {
        rr->seq = sqlite3_column_int64(q.st, 0);
        rr->endpoint_id = r->endpoint_id ? r->endpoint_id : rr->endpoint;
    }
    q_end(&q);
    return rc;
}

/*
 * The claim's row (r->row) spares a search by id; the finish checks that the row holds
 * this id, so a wrong row never moves another delivery: the delivery is then looked up by
 * id and finished there. A stale report (not applied) looks its row up the same way.
 */
static int record_one(struct sqlite_store *s, struct conn *c, const struct vh_delivery_result *r,
                      struct result_row *rr, const char *what, struct vh_error *err)
{
    bool applied = false, looked_up = false;
    enum vh__held_match claim;
    int rc = 0;

    if (r->row > 0 && r->endpoint_id) {
        rr->seq = r->row;
        rr->endpoint_id = r->endpoint_id;
    } else {
        rc = result_lookup(c, r, rr, what, err);
        looked_up = true;
    }
    if (rc == 0)
        rc = delivery_finish(s, c, r, rr->seq, &applied, what, err);
    if (rc == 0 && !applied && !looked_up) {
        const int64_t given = rr->seq;

        rc = result_lookup(c, r, rr, what, err);
        if (rc == 0 && rr->seq != given)
            rc = delivery_finish(s, c, r, rr->seq, &applied, what, err);
    }
    if (rc < 0)
        return rc;
    rr->finished = applied && !r->interrupted && strcmp(r->new_state, "pending") != 0;
    /* rr->seq is the delivery's row now. Its claim, if it was this report's, ends. */
    claim = held_match(s, rr->seq, r->node_id, (int64_t)r->attempt - 1, r->lease_until_ms);
    rr->release = claim == VH__HELD_MINE;
    if (r->interrupted)
        return 0;
    rc = attempt_insert(c, r, rr->seq, applied, what, err);
    if (rc == 0 && !applied && claim != VH__HELD_OTHER)
        rc = delivery_raise_attempts(c, r, rr->seq, what, err);
    return rc;
}

/*
 * One write transaction, so one WAL sync, for the whole batch: the group commit. Each
 * endpoint's last_delivery_* is written once per batch, from its latest counted attempt.
 */
static int sqlite_delivery_record(struct vh_store *st, const struct vh_delivery_result *results,
                                  size_t n, struct vh_error *err)
{
    struct sqlite_store *s = to_sqlite(st);
    struct result_row *rr;
    const char **ids;
    char what[WHAT_MAX];
    size_t *last;
    struct conn *c;
    size_t i, k;
    int rc;

    snprintf(what, sizeof(what), "record %zu attempts", n);
    /* n <= VH_CLAIM_MAX (store.c): the sizes cannot overflow. */
    rr = vh_malloc(n * sizeof(*rr));
    ids = vh_malloc(n * sizeof(*ids));
    last = vh_malloc(n * sizeof(*last));
    if (!rr || !ids || !last) {
        rc = vh_error_set(err, VH_ENOMEM, "%s: out of memory", what);
        goto out_free;
    }
    rc = writer_take(s, &c, err);
    if (rc < 0)
        goto out_free;
    rc = tx_begin_write(c, what, err);
    for (i = 0; rc == 0 && i < n; i++) {
        rc = record_one(s, c, &results[i], &rr[i], what, err);
        ids[i] = rr[i].endpoint_id;
        /* A row back in pending, or a claim dropped from a row not finished: start over. */
        if (rc < 0 || !rr[i].finished)
            s->resume.valid = false;
    }
    k = rc == 0 ? vh__store_last_per_endpoint(results, ids, n, last) : 0;
    for (i = 0; rc == 0 && i < k; i++)
        rc = endpoint_last_delivery(c, ids[last[i]], &results[last[i]], what, err);
    if (rc == 0)
        rc = tx_commit(c, what, err);
    tx_rollback(c);
    /*
     * Still in the writer's turn: no claim reads the rows between the commit and this. A
     * failed record keeps its claims; the sender reports again, or their leases end.
     */
    if (rc == 0) {
        pthread_mutex_lock(&s->held_mu);
        for (i = 0; i < n; i++)
            if (rr[i].release)
                vh__held_remove(&s->held, rr[i].seq);
        pthread_mutex_unlock(&s->held_mu);
    }
    writer_put(s, c);
out_free:
    vh_free(last);
    vh_free(ids);
    vh_free(rr);
    return rc;
}

/*
 * Two kinds of claim end here: rows left in flight in the file (another node id's, or an
 * older version's), and the claims this store holds in memory. Both are due at now_ms
 * again; the held ones leave the table only once that is committed.
 */
static int sqlite_delivery_recover(struct vh_store *st, const char *node_id, int64_t expired_by_ms,
                                   int64_t now_ms, int64_t *count, struct vh_error *err)
{
    struct sqlite_store *s = to_sqlite(st);
    const char *what = "recover deliveries";
    int64_t *rows = NULL;
    size_t n = 0, i;
    struct query q;
    struct conn *c;
    int rc;

    rc = writer_get(s, &c, err);
    if (rc < 0)
        return rc;
    /* A restart takes the file's lock here, before its first claim. */
    rc = claim_lock_take(s, c, what, err);
    if (rc == 0)
        rc = held_rows(s, node_id, expired_by_ms, &rows, &n, what, err);
    if (rc == 0)
        rc = tx_begin_write(c, what, err);
    if (rc == 0)
        rc = q_start(&q, c, S_RECOVER, what, err);
    if (rc < 0)
        goto out;
    q_int(&q, 1, now_ms);
    q_text(&q, 2, node_id);
    q_int(&q, 3, expired_by_ms);
    rc = q_exec(&q, err);
    if (rc == 0)
        *count = (int64_t)sqlite3_changes64(c->db);
    /* A held row canceled meanwhile loses its claim too, but is not counted: not pending. */
    for (i = 0; rc == 0 && i < n; i++) {
        rc = q_start(&q, c, S_HELD_RECOVER, what, err);
        if (rc < 0)
            break;
        q_int(&q, 1, rows[i]);
        q_int(&q, 2, now_ms);
        rc = q_exec(&q, err);
        if (rc == 0)
            *count += (int64_t)sqlite3_changes64(c->db);
    }
    if (rc == 0)
        rc = tx_commit(c, what, err);
    if (rc == 0) {
        pthread_mutex_lock(&s->held_mu);
        for (i = 0; i < n; i++)
            vh__held_remove(&s->held, rows[i]);
        pthread_mutex_unlock(&s->held_mu);
    }
out:
    tx_rollback(c);
    writer_put(s, c);
    vh_free(rows);
    return rc;
}

static int sqlite_delivery_next_due(struct vh_store *st, int64_t *out_ms, struct vh_error *err)
{
    struct sqlite_store *s = to_sqlite(st);
    const char *what = "find the next due delivery";
    struct query q;
    struct conn *c;
    int rc;

    rc = conn_get(s, &c, err);
    if (rc < 0)
        return rc;
    rc = q_start(&q, c, S_NEXT_DUE, what, err);
    if (rc == 0)
        rc = q_step(&q, err);
    if (rc == 0)
        rc = vh_error_set(err, VH_ENOTFOUND, "no pending delivery");
    if (rc > 0) {
        *out_ms = sqlite3_column_int64(q.st, 0);
        rc = 0;
    }
    q_end(&q);
    conn_put(s, c);
    return rc;
}

static int sqlite_delivery_stats(struct vh_store *st, int64_t now_ms, struct vh_delivery_stats *out,
                                 struct vh_error *err)
{
    struct sqlite_store *s = to_sqlite(st);
    const char *what = "delivery stats";
    int64_t oldest, earliest, held = 0;
    struct query q;
    struct conn *c;
    int rc;

    rc = conn_get(s, &c, err);
    if (rc < 0)
        return rc;
    /* One snapshot for both queries. */
    rc = tx_begin_read(c, what, err);
    if (rc == 0)
        rc = q_start(&q, c, S_STATS_PENDING, what, err);
    if (rc < 0)
        goto out;
    q_int(&q, 1, now_ms);
    rc = q_step(&q, err);
    if (rc == 0)
        rc = vh_error_set(err, VH_ESTORE, "%s: no result", what);
    if (rc > 0) {
        out->pending = sqlite3_column_int64(q.st, 0);
        out->due = sqlite3_column_int64(q.st, 1);
        oldest = sqlite3_column_int64(q.st, 2);
        earliest = sqlite3_column_int64(q.st, 3);
        if (out->pending > 0 && oldest < now_ms)
            out->oldest_pending_age_ms = now_ms - oldest;
        if (out->due > 0 && earliest < now_ms)
            out->due_lag_ms = now_ms - earliest;
        held = sqlite3_column_int64(q.st, 4);
        rc = 0;
    }
    q_end(&q);
    if (rc == 0)
        rc = q_start(&q, c, S_STATS_IN_FLIGHT, what, err);
    if (rc == 0)
        rc = q_int_result(&q, &out->in_flight, err);
    out->in_flight += held;
    if (rc == 0)
        rc = tx_commit(c, what, err);
out:
    tx_rollback(c);
    conn_put(s, c);
    return rc;
}

static int sqlite_delivery_counts(struct vh_store *st, struct vh_delivery_counts *out,
                                  struct vh_error *err)
{
    struct sqlite_store *s = to_sqlite(st);
    const char *what = "count deliveries by state";
    char state[VH_DELIVERY_STATE_MAX + 1];
    int64_t v, held, total = 0;
    struct query q;
    struct conn *c;
    int rc;

    rc = conn_get(s, &c, err);
    if (rc < 0)
        return rc;
    rc = q_start(&q, c, S_COUNT_BY_STATE, what, err);
    while (rc == 0) {
        rc = q_step(&q, err);
        if (rc <= 0)
            break;
        if (sqlite3_column_type(q.st, 0) == SQLITE_NULL) { /* every delivery */
            total = sqlite3_column_int64(q.st, 1);
            rc = 0;
            continue;
        }
        rc = col_text(&q, 0, state, sizeof(state), "state", err);
        if (rc < 0)
            break;
        v = sqlite3_column_int64(q.st, 1);
        held = sqlite3_column_int64(q.st, 2); /* pending rows this store holds: in flight */
        if (strcmp(state, "pending") == 0) {
            out->pending = v - held;
            out->in_flight += held;
        } else if (strcmp(state, "in_flight") == 0) {
            out->in_flight += v;
        } else if (strcmp(state, "abandoned") == 0)
            out->abandoned = v;
        else if (strcmp(state, "canceled") == 0)
            out->canceled = v;
    }
    q_end(&q);
    /* One statement, one snapshot: the rest of the total succeeded. */
    if (rc == 0)
        out->succeeded = total - out->pending - out->in_flight - out->abandoned - out->canceled;
    conn_put(s, c);
    return rc;
}

/* ---- delivery history ------------------------------------------------------------------------ */

/* Reads the INFO_COLS of the current row. */
static int row_info(const struct query *q, struct vh_delivery_info *d, struct vh_error *err)
{
    int rc;

    rc = col_text(q, 0, d->id, sizeof(d->id), "delivery id", err);
    if (rc == 0)
        rc = col_text(q, 1, d->event_id, sizeof(d->event_id), "event id", err);
    if (rc == 0)
        rc = col_text(q, 2, d->endpoint_id, sizeof(d->endpoint_id), "endpoint id", err);
    if (rc == 0)
        rc = col_text(q, 3, d->session_id, sizeof(d->session_id), "session id", err);
    if (rc == 0)
        rc = col_text(q, 4, d->state, sizeof(d->state), "state", err);
    if (rc == 0)
        rc = col_count(q, 5, &d->attempts, "attempt count", err);
    if (rc == 0)
        rc = col_count(q, 6, &d->attempt_base, "attempt base", err);
    if (rc == 0)
        rc = col_text(q, 12, d->last_error_class, sizeof(d->last_error_class), "error class", err);
    if (rc < 0)
        return rc;
    d->next_attempt_ms = 0;
    if (strcmp(d->state, "pending") == 0 || strcmp(d->state, "in_flight") == 0)
        d->next_attempt_ms = sqlite3_column_int64(q->st, 7);
    d->created_ms = sqlite3_column_int64(q->st, 8);
    d->updated_ms = sqlite3_column_int64(q->st, 9);
    d->last_attempt_ms = sqlite3_column_int64(q->st, 10); /* NULL (no attempt) reads as 0 */
    d->last_http_status = sqlite3_column_int(q->st, 11);
    return 0;
}

static int sqlite_delivery_list(struct vh_store *st, const char *partner_id,
                                const char *endpoint_id, const char *state, size_t limit,
                                size_t offset, struct vh_delivery_info **out, size_t *n,
                                size_t *total, struct vh_error *err)
{
    struct sqlite_store *s = to_sqlite(st);
    struct vh_delivery_info *arr = NULL;
    size_t len = 0, cap = 0;
    enum stmt_id count_id, list_id;
    struct vh_buf held = VH_BUF_INIT((size_t)1 << 26);
    struct vh_endpoint ep;
    char what[WHAT_MAX];
    int64_t all = 0;
    struct query q;
    struct conn *c;
    void *grown;
    int rc;

    snprintf(what, sizeof(what), "list deliveries of endpoint '%s'", endpoint_id);
    rc = conn_get(s, &c, err);
    if (rc < 0)
        return rc;
    /* One snapshot: the endpoint check, the total and the page agree. */
    rc = tx_begin_read(c, what, err);
    if (rc == 0)
        rc = endpoint_lookup(c, S_EP_GET, partner_id, endpoint_id, &ep, what, err);
    if (!state) {
        count_id = S_DLV_LIST_COUNT;
        list_id = S_DLV_LIST;
    } else if (strcmp(state, "in_flight") == 0) {
        count_id = S_DLV_LIST_COUNT_IN_FLIGHT;
        list_id = S_DLV_LIST_IN_FLIGHT;
    } else if (strcmp(state, "succeeded") == 0) {
        count_id = S_DLV_LIST_COUNT_SUCCEEDED;
        list_id = S_DLV_LIST_SUCCEEDED;
    } else {
        count_id = S_DLV_LIST_COUNT_STATE;
        list_id = S_DLV_LIST_STATE;
    }
    if (rc == 0 && list_id == S_DLV_LIST_IN_FLIGHT)
        rc = held_json(s, &held, what, err);
    if (rc == 0)
        rc = q_start(&q, c, count_id, what, err);
    if (rc < 0)
        goto out;
    q_text(&q, 1, endpoint_id);
    if (count_id == S_DLV_LIST_COUNT_STATE)
        q_text(&q, 4, state);
    else if (count_id == S_DLV_LIST_COUNT_IN_FLIGHT)
        q_text(&q, 9, vh_buf_cstr(&held));
    rc = q_int_result(&q, &all, err);
    if (rc == 0)
        rc = q_start(&q, c, list_id, what, err);
    if (rc < 0)
        goto out;
    q_text(&q, 1, endpoint_id);
    q_int(&q, 2, (int64_t)limit);
    q_int(&q, 3, (int64_t)offset);
    if (list_id == S_DLV_LIST_STATE)
        q_text(&q, 4, state);
    else if (list_id == S_DLV_LIST_IN_FLIGHT)
        q_text(&q, 9, vh_buf_cstr(&held));
    while (rc == 0) {
        rc = q_step(&q, err);
        if (rc <= 0)
            break;
        rc = array_grow(arr, &cap, len, sizeof(*arr), &grown, what, err);
        arr = grown;
        if (rc == 0) {
            memset(&arr[len], 0, sizeof(arr[len]));
            rc = row_info(&q, &arr[len], err);
        }
        if (rc == 0)
            len++;
    }
    q_end(&q);
    if (rc == 0)
        rc = tx_commit(c, what, err);
out:
    tx_rollback(c);
    conn_put(s, c);
    vh_buf_release(&held);
    if (rc < 0) {
        vh_free(arr);
        return rc;
    }
    *out = arr;
    *n = len;
    *total = all > 0 ? (size_t)all : 0;
    return 0;
}

static int row_attempt(const struct query *q, struct vh_attempt_info *a, struct vh_error *err)
{
    const void *head;
    int64_t n;
    int len, rc;

    n = sqlite3_column_int64(q->st, 0);
    if (n < 1 || n > INT32_MAX)
        return vh_error_set(err, VH_ESTORE, "%s: stored attempt number %lld is out of range",
                            q->what, (long long)n);
    a->n = (unsigned)n;
    a->started_ms = sqlite3_column_int64(q->st, 1);
    a->duration_ms = sqlite3_column_int64(q->st, 2);
    a->http_status = sqlite3_column_int(q->st, 3);
    rc = col_text(q, 4, a->error_class, sizeof(a->error_class), "error class", err);
    if (rc == 0)
        rc = col_text(q, 5, a->error, sizeof(a->error), "error", err);
    if (rc < 0)
        return rc;
    head = sqlite3_column_blob(q->st, 6);
    len = sqlite3_column_bytes(q->st, 6);
    if (len > 0 && !head)
        return vh_error_set(err, VH_ENOMEM, "%s: reading response head: out of memory", q->what);
    if (len < 0 || len > VH_STORED_HEAD_MAX)
        return vh_error_set(err, VH_ESTORE, "%s: stored response head is %d bytes, over %d",
                            q->what, len, VH_STORED_HEAD_MAX);
    if (len > 0)
        memcpy(a->response_head, head, (size_t)len);
    a->response_len = (size_t)len;
    a->response_head[len] = '\0';
    return 0;
}

/* The newest VH_HISTORY_ATTEMPTS_MAX attempts, oldest first, and the number of older ones. */
static int attempts_of(struct conn *c, const char *delivery_id, struct vh_attempt_info **out,
                       size_t *n, size_t *older, const char *what, struct vh_error *err)
{
    struct vh_attempt_info *arr = NULL, swap;
    size_t len = 0, cap = 0, i;
    int64_t total = 0;
    struct query q;
    void *grown;
    int rc;

    rc = q_start(&q, c, S_ATTEMPTS_OF, what, err);
    if (rc == 0) {
        q_text(&q, 1, delivery_id);
        q_int(&q, 2, VH_HISTORY_ATTEMPTS_MAX);
    }
    while (rc == 0) {
        rc = q_step(&q, err);
        if (rc <= 0)
            break;
        rc = array_grow(arr, &cap, len, sizeof(*arr), &grown, what, err);
        arr = grown;
        if (rc == 0) {
            memset(&arr[len], 0, sizeof(arr[len]));
            rc = row_attempt(&q, &arr[len], err);
        }
        if (rc == 0) {
            total = sqlite3_column_int64(q.st, 7);
            len++;
        }
    }
    q_end(&q);
    if (rc == 0 && len > 0 && (total < 0 || (uint64_t)total < len))
        rc = vh_error_set(err, VH_ESTORE, "%s: %lld attempts counted, %zu read", what,
                          (long long)total, len);
    if (rc < 0) {
        vh_free(arr);
        return rc;
    }
    for (i = 0; i < len / 2; i++) {
        swap = arr[i];
        arr[i] = arr[len - 1 - i];
        arr[len - 1 - i] = swap;
    }
    *out = arr;
    *n = len;
    *older = len > 0 ? (size_t)total - len : 0;
    return 0;
}

static int sqlite_delivery_get(struct vh_store *st, const char *partner_id, const char *delivery_id,
                               struct vh_delivery_info *out, struct vh_attempt_info **attempts,
                               size_t *n_attempts, size_t *older, struct vh_error *err)
{
    struct sqlite_store *s = to_sqlite(st);
    char what[WHAT_MAX];
    struct query q;
    struct conn *c;
    int rc;

    snprintf(what, sizeof(what), "get delivery '%s'", delivery_id);
    rc = conn_get(s, &c, err);
    if (rc < 0)
        return rc;
    rc = tx_begin_read(c, what, err);
    if (rc == 0)
        rc = q_start(&q, c, S_DLV_GET, what, err);
    if (rc < 0)
        goto out;
    q_text(&q, 1, delivery_id);
    q_text(&q, 2, partner_id);
    rc = q_step(&q, err);
    if (rc == 0)
        rc = vh_error_set(err, VH_ENOTFOUND, "delivery '%s' not found", delivery_id);
    else if (rc > 0)
        rc = row_info(&q, out, err);
    q_end(&q);
    if (rc == 0)
        rc = attempts_of(c, delivery_id, attempts, n_attempts, older, what, err);
    if (rc == 0)
        rc = tx_commit(c, what, err);
    if (rc < 0 && *attempts) {
        vh_free(*attempts);
        *attempts = NULL;
    }
out:
    tx_rollback(c);
    conn_put(s, c);
    return rc;
}

static int sqlite_delivery_retry(struct vh_store *st, const char *partner_id,
                                 const char *delivery_id, int64_t now_ms, struct vh_error *err)
{
    struct sqlite_store *s = to_sqlite(st);
    char state[VH_DELIVERY_STATE_MAX + 1], endpoint_id[VH_UUID_LEN + 1];
    bool enabled = false, deleted = false;
    char what[WHAT_MAX];
    int64_t seq = 0;
    struct query q;
    struct conn *c;
    int rc;

    snprintf(what, sizeof(what), "retry delivery '%s'", delivery_id);
    rc = writer_get(s, &c, err);
    if (rc < 0)
        return rc;
    rc = tx_begin_write(c, what, err);
    if (rc == 0)
        rc = q_start(&q, c, S_RETRY_LOOKUP, what, err);
    if (rc < 0)
        goto out;
    q_text(&q, 1, delivery_id);
    q_text(&q, 2, partner_id);
    rc = q_step(&q, err);
    if (rc == 0)
        rc = vh_error_set(err, VH_ENOTFOUND, "delivery '%s' not found", delivery_id);
    if (rc > 0)
        rc = col_text(&q, 0, state, sizeof(state), "state", err);
    if (rc == 0)
        rc = col_text(&q, 1, endpoint_id, sizeof(endpoint_id), "endpoint id", err);
    if (rc == 0) {
        enabled = sqlite3_column_int64(q.st, 2) != 0;
        deleted = sqlite3_column_type(q.st, 3) != SQLITE_NULL;
        seq = sqlite3_column_int64(q.st, 4);
    }
    q_end(&q);
    if (rc < 0)
        goto out;
    /* A pending delivery always has a live, enabled endpoint: the claim relies on it. */
    if (strcmp(state, "pending") == 0 || strcmp(state, "in_flight") == 0)
        rc = vh_error_set(err, VH_ECONFLICT, "delivery '%s' is already pending", delivery_id);
    else if (deleted)
        rc = vh_error_set(err, VH_ECONFLICT, "endpoint '%s' was deleted", endpoint_id);
    else if (!enabled)
        rc = vh_error_set(err, VH_ECONFLICT, "endpoint '%s' is disabled", endpoint_id);
    if (rc == 0)
        rc = q_start(&q, c, S_RETRY, what, err);
    if (rc < 0)
        goto out;
    q_text(&q, 1, delivery_id);
    q_int(&q, 2, now_ms);
    rc = q_exec(&q, err);
    if (rc == 0)
        rc = tx_commit(c, what, err);
    /*
     * A delivery canceled while an attempt was out is still held for that attempt. The
     * retry starts a new budget that the old attempt must not settle: its claim ends here,
     * so its report finds none and is recorded without moving the row (as PostgreSQL's
     * finish, which needs the lease a cancel cleared), and the row is claimable again.
     */
    if (rc == 0) {
        pthread_mutex_lock(&s->held_mu);
        vh__held_remove(&s->held, seq);
        pthread_mutex_unlock(&s->held_mu);
    }
out:
    tx_rollback(c);
    writer_put(s, c);
    return rc;
}

/* The seqs of the partner's events accepted in [since, until], at most VH_REPLAY_MAX. */
static int replay_events(struct conn *c, const char *partner_id, int64_t since_ms, int64_t until_ms,
                         int64_t **out, size_t *n, const char *what, struct vh_error *err)
{
    int64_t *seqs = NULL;
    size_t len = 0, cap = 0;
    struct query q;
    void *grown;
    int rc;

    rc = q_start(&q, c, S_REPLAY_EVENTS, what, err);
    if (rc == 0) {
        q_text(&q, 1, partner_id);
        q_int(&q, 2, since_ms);
        q_int(&q, 3, until_ms);
        q_int(&q, 4, (int64_t)VH_REPLAY_MAX + 1); /* one more, to see the range is too big */
    }
    while (rc == 0) {
        rc = q_step(&q, err);
        if (rc <= 0)
            break;
        if (len == VH_REPLAY_MAX) {
            rc = vh_error_set(err, VH_ETOOBIG,
                              "%s: more than %d events in the range; replay a shorter one", what,
                              VH_REPLAY_MAX);
            break;
        }
        rc = array_grow(seqs, &cap, len, sizeof(*seqs), &grown, what, err);
        seqs = grown;
        if (rc == 0)
            seqs[len++] = sqlite3_column_int64(q.st, 0);
    }
    q_end(&q);
    if (rc < 0) {
        vh_free(seqs);
        return rc;
    }
    *out = seqs;
    *n = len;
    return 0;
}

static int sqlite_endpoint_replay(struct vh_store *st, const char *partner_id,
                                  const char *endpoint_id, int64_t since_ms, int64_t until_ms,
                                  int64_t now_ms, size_t *created, struct vh_error *err)
{
    struct sqlite_store *s = to_sqlite(st);
    int64_t *events = NULL;
    size_t n_events = 0, i;
    struct vh_endpoint ep;
    char what[WHAT_MAX];
    struct conn *c;
    int rc;

    snprintf(what, sizeof(what), "replay to endpoint '%s'", endpoint_id);
    rc = writer_get(s, &c, err);
    if (rc < 0)
        return rc;
    rc = tx_begin_write(c, what, err);
    if (rc == 0)
        rc = endpoint_lookup(c, S_EP_GET, partner_id, endpoint_id, &ep, what, err);
    if (rc == 0 && !ep.enabled)
        rc = vh_error_set(err, VH_ECONFLICT, "endpoint '%s' is disabled", endpoint_id);
    if (rc == 0)
        rc = replay_events(c, partner_id, since_ms, until_ms, &events, &n_events, what, err);
    for (i = 0; rc == 0 && i < n_events; i++)
        rc = delivery_insert(c, partner_id, events[i], endpoint_id, now_ms, what, err);
    if (rc == 0)
        rc = tx_commit(c, what, err);
    if (rc == 0)
        *created = n_events;
    tx_rollback(c);
    writer_put(s, c);
    vh_free(events);
    return rc;
}

/* ---- counts ---------------------------------------------------------------------------------- */

static int sqlite_count(struct vh_store *st, enum vh__store_table table, int64_t *out,
                        struct vh_error *err)
{
    struct sqlite_store *s = to_sqlite(st);
    enum stmt_id id;
    struct query q;
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
    rc = q_start(&q, c, id, "count rows", err);
    if (rc == 0)
        rc = q_int_result(&q, out, err);
    conn_put(s, c);
    return rc;
}

const struct vh_store_ops vh__store_sqlite_ops = {
    .name = "sqlite",
    .open = sqlite_open,
    .close = sqlite_close,
    .schema_version = sqlite_schema_version,
    .partner_create = sqlite_partner_create,
    .partner_list = sqlite_partner_list,
    .partner_get = sqlite_partner_get,
    .partner_rotate_key = sqlite_partner_rotate_key,
    .partner_by_key = sqlite_partner_by_key,
    .endpoint_create = sqlite_endpoint_create,
    .endpoint_get = sqlite_endpoint_get,
    .endpoint_get_by_label = sqlite_endpoint_get_by_label,
    .endpoint_list = sqlite_endpoint_list,
    .endpoint_update = sqlite_endpoint_update,
    .endpoint_delete = sqlite_endpoint_delete,
    .event_put = sqlite_event_put,
    .event_put_post = sqlite_event_put_post,
    .call_get = sqlite_call_get,
    .call_list = sqlite_call_list,
    .event_deliveries = sqlite_event_deliveries,
    .count = sqlite_count,
    .delivery_claim = sqlite_delivery_claim,
    .delivery_record = sqlite_delivery_record,
    .delivery_recover = sqlite_delivery_recover,
    .delivery_next_due = sqlite_delivery_next_due,
    .delivery_stats = sqlite_delivery_stats,
    .delivery_counts = sqlite_delivery_counts,
    .delivery_list = sqlite_delivery_list,
    .delivery_get = sqlite_delivery_get,
    .delivery_retry = sqlite_delivery_retry,
    .endpoint_replay = sqlite_endpoint_replay,
};

/* ---- for tests ------------------------------------------------------------------------------- */

static const struct {
    const char *name;
    enum stmt_id id;
} explainable[] = {
    {"claim", S_CLAIM_SELECT},
    {"next_due", S_NEXT_DUE},
    {"recover", S_RECOVER},
    {"stats", S_STATS_PENDING},
    {"list", S_DLV_LIST},
    {"list_by_state", S_DLV_LIST_STATE},
    {"list_in_flight", S_DLV_LIST_IN_FLIGHT},
    {"list_succeeded", S_DLV_LIST_SUCCEEDED},
    {"count_by_state", S_DLV_LIST_COUNT_STATE},
    {"count_in_flight", S_DLV_LIST_COUNT_IN_FLIGHT},
    {"count_succeeded", S_DLV_LIST_COUNT_SUCCEEDED},
    {"cancel_pending", S_DLV_CANCEL_PENDING},
    {"cancel_in_flight", S_DLV_CANCEL_IN_FLIGHT},
    {"held_recover", S_HELD_RECOVER},
    {"finish", S_DLV_FINISH},
    {"attempt", S_ATTEMPT_INSERT},
    {"ingest", S_DLV_INSERT},
    {"event_deliveries", S_DLV_OF_EVENT},
    {"counts", S_COUNT_BY_STATE},
    {"attempts_of", S_ATTEMPTS_OF},
};

int vh__store_sqlite_explain(struct vh_store *st, const char *query, struct vh_buf *out,
                             struct vh_error *err)
{
    struct vh_buf sql = VH_BUF_INIT(4096);
    sqlite3_stmt *plan = NULL;
    const unsigned char *detail;
    struct sqlite_store *s;
    struct conn *c = NULL;
    bool program;
    size_t i;
    int rc;

    if (!st || !query || !out || st->ops != &vh__store_sqlite_ops)
        return vh_error_set(err, VH_EINVAL, "explain: not a sqlite store");
    program = strncmp(query, "program:", 8) == 0;
    if (program)
        query += 8;
    for (i = 0; i < sizeof(explainable) / sizeof(explainable[0]); i++)
        if (strcmp(query, explainable[i].name) == 0)
            break;
    if (i == sizeof(explainable) / sizeof(explainable[0]))
        return vh_error_set(err, VH_ENOTFOUND, "explain: unknown query '%s'", query);
    s = to_sqlite(st);
    rc = vh_buf_adds(&sql, program ? "EXPLAIN " : "EXPLAIN QUERY PLAN ");
    if (rc == 0)
        rc = vh_buf_adds(&sql, stmt_sql[explainable[i].id]);
    if (rc < 0)
        return vh_error_set(err, rc, "explain '%s': %s", query, vh_strerror(rc));
    rc = conn_get(s, &c, err);
    if (rc < 0)
        goto out;
    if (sqlite3_prepare_v2(c->db, sql.data, -1, &plan, NULL) != SQLITE_OK) {
        rc = db_fail(c, "explain", err);
        goto out;
    }
    /* Columns: id, parent, notused, detail; a program's: addr, opcode, p1, ... */
    while ((rc = sqlite3_step(plan)) == SQLITE_ROW) {
        detail = sqlite3_column_text(plan, program ? 1 : 3);
        rc = vh_buf_adds(out, detail ? (const char *)detail : "");
        if (rc == 0)
            rc = vh_buf_addc(out, '\n');
        if (rc < 0) {
            rc = vh_error_set(err, rc, "explain '%s': %s", query, vh_strerror(rc));
            goto out;
        }
    }
    rc = rc == SQLITE_DONE ? 0 : db_fail(c, "explain", err);
out:
    sqlite3_finalize(plan);
    if (c)
        conn_put(s, c);
    vh_buf_release(&sql);
    return rc;
}

int vh__store_sqlite_create_at(const char *path, int version, const char *seed_sql,
                               struct vh_error *err)
{
    struct conn *c = NULL;
    int rc;

    if (!path || version < 1 || version > SCHEMA_VERSION)
        return vh_error_set(err, VH_EINVAL, "create at version %d: no such version", version);
    rc = conn_open(path, NULL, &c, err);
    if (rc == 0)
        rc = migrate(c, path, version, err);
    if (rc == 0 && seed_sql && sqlite3_exec(c->db, seed_sql, NULL, NULL, NULL) != SQLITE_OK)
        rc = db_fail(c, "seed", err);
    conn_close(c);
    return rc;
}
