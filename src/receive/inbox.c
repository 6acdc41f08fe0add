/*
 * The inbox: the receiver's SQLite file (sessions as received, and their jobs). The only
 * file of src/receive/ that includes <sqlite3.h>.
 *
 * Connections. `wdb` writes, `rdb` reads; each belongs to one thread at a time. `rdb` is
 * borrowed under `rmu` for a whole read. `wdb` belongs to the current commit leader (below).
 * Both are opened with SQLITE_OPEN_NOMUTEX, since these rules already keep them to one
 * thread at a time. WAL mode: readers never wait for the writer.
 *
 * Group commit. Every write is an `op` queued under `mu`. The op at the head of the queue,
 * when no batch runs, leads: it takes the queue (up to BATCH_MAX ops), runs them all in one
 * BEGIN IMMEDIATE ... COMMIT, each op that may fail halfway inside its own SAVEPOINT so
 * that one op's failure undoes only that op (a single statement is undone by SQLite
 * itself, and a put without jobs undoes its own row: tail_put), then marks them done and
 * wakes the waiters; a waiter whose op is still queued becomes the next leader. So N
 * requests that arrive together cost one fsync, not N, and a caller still returns only
 * once its own write is durable (synchronous=FULL syncs the WAL in COMMIT). A failed
 * COMMIT fails every op of its batch.
 *
 * The queue, the leader's turn and the wakeups are core/group_int.h's (the SQLite store's
 * ingests use the same): waiters sleep on a semaphore of their own, and a finished batch
 * wakes exactly its own ops and the next leader.
 *
 * Posted puts (vh__inbox_put_post) join the same queue without a waiting caller: a runner
 * thread, started with the first of them, leads when one is at the head, and each is
 * answered through its callback once its batch has committed. An HTTP thread then serves
 * other connections while the commit runs, instead of sleeping through it.
 *
 * Deduplication. Session ids are random, so a UNIQUE index on them took each new session to
 * a random leaf page: about one 8 KiB WAL frame per webhook, more than the row itself (a
 * third of a page), written again by the checkpoint. Now a key lives in one of two places:
 * - `session_tail` (row id, session_id), the keys of the latest sessions in arrival order,
 *   each inserted by the put that stores its session, in the same transaction: its inserts
 *   append to one page;
 * - `session_keys` (session_id PRIMARY KEY), every older key.
 * The commit leader keeps the tail's keys in memory as well (`struct tail`, a hash set), so
 * a put looks up the set, then session_keys, and inserts. When the tail reaches an eighth of
 * all sessions (4096 to 65536 keys), its keys are sorted and merged into session_keys a few
 * at a time with each later transaction, in key order, so each leaf of session_keys is
 * written once per merge rather than once per session; the last step deletes them from the
 * tail. Every step is in the transaction of the puts it rides with, so a crash at any point
 * leaves each key in session_keys, in session_tail, or in both. The set is loaded from
 * session_tail at the first batch, and at every batch the rows that another connection to
 * the file added since are loaded too (a rowid seek past the end, usually empty), so two
 * receivers on one file still deduplicate against each other.
 */
#include <vocohook/receive.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include <vocohook/alloc.h>
#include <vocohook/event.h>

#include "core/group_int.h"
#include "core/utf8_int.h"
#include "receive/keyset_int.h"
#include "receive/receive_int.h"
#include "store/readahead_int.h"
#include "core/banned.h"

#define BUSY_TIMEOUT_MS 10000
#define BATCH_MAX       256
#define BODY_MAX        ((size_t)VH_BODY_MAX) /* the receiver stores at most a request body */
#define APPLICATION_ID  0x76686962            /* "vhib" */
#define SQLITE_MIN      3035000               /* RETURNING */
#define PAGE_SIZE_NEW   "8192"                /* bytes per page of a new inbox */
#define TAIL_MIN        4096  /* the dedupe tail is merged at this many keys at the least, */
#define TAIL_MAX        65536 /* at this many at the most, */
#define TAIL_SHARE      8     /* else at 1 / TAIL_SHARE of the sessions so far */
#define MERGE_MIN       32    /* keys merged per transaction beyond twice its new sessions */

/*
 * Migrations, oldest first; step i takes the schema from version i to i + 1 in one
 * transaction with `PRAGMA user_version`. Never edit a released step.
 *
 * Version 1 deduplicated with a UNIQUE session_id; version 2 with session_keys and
 * session_tail (the top of the file). sessions.id keeps arrival order. A job row exists for each
 * action configured when its session arrived; kind and state are stored by name (vh_job_kind_name,
 * vh_job_state_name).
 */
static const char *const migrations[] = {
    "PRAGMA application_id = 1986554210;\n" /* APPLICATION_ID */
    "CREATE TABLE sessions (\n"
    "    id            INTEGER PRIMARY KEY,\n"
    "    session_id    TEXT NOT NULL UNIQUE,\n"
    "    body          BLOB NOT NULL,\n"
    "    signed_at     TEXT NOT NULL,\n"
    "    signature     TEXT NOT NULL,\n"
    "    webhook_id    TEXT,\n"
    "    event_ms      INTEGER NOT NULL,\n"
    "    received_ms   INTEGER NOT NULL,\n"
    "    recording_url TEXT\n"
    ") STRICT;\n"
    "CREATE INDEX sessions_received ON sessions(received_ms);\n"
    "CREATE TABLE jobs (\n"
    "    session_id      TEXT NOT NULL REFERENCES sessions(session_id),\n"
    "    kind            TEXT NOT NULL CHECK (kind IN ('download', 'exec', 'forward')),\n"
    "    state           TEXT NOT NULL CHECK (state IN\n"
    "                        ('pending', 'running', 'done', 'failed', 'expired')),\n"
    "    attempts        INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),\n"
    "    next_attempt_ms INTEGER NOT NULL,\n"
    "    deadline_ms     INTEGER NOT NULL,\n"
    "    updated_ms      INTEGER NOT NULL,\n"
    "    status          INTEGER,\n"
    "    error           TEXT,\n"
    "    path            TEXT,\n"
    "    size            INTEGER,\n"
    "    sha256          TEXT,\n"
    "    PRIMARY KEY (session_id, kind)\n"
    ") STRICT;\n"
    "CREATE INDEX jobs_due ON jobs(state, next_attempt_ms);\n",

    /*
     * 2: deduplication moves out of `sessions` (the top of the file says why). The table is
     * rebuilt without its UNIQUE index on session_id; jobs point at their session's row id
     * (`sid`) and are keyed by it, so a new session's jobs append too; session_keys holds
     * every key so far, and the trigger starts session_tail.
     */
    "CREATE TABLE sessions_v2 (\n"
    "    id            INTEGER PRIMARY KEY,\n"
    "    session_id    TEXT NOT NULL,\n"
    "    body          BLOB NOT NULL,\n"
    "    signed_at     TEXT NOT NULL,\n"
    "    signature     TEXT NOT NULL,\n"
    "    webhook_id    TEXT,\n"
    "    event_ms      INTEGER NOT NULL,\n"
    "    received_ms   INTEGER NOT NULL,\n"
    "    recording_url TEXT\n"
    ") STRICT;\n"
    "INSERT INTO sessions_v2 SELECT id, session_id, body, signed_at, signature, webhook_id,\n"
    "    event_ms, received_ms, recording_url FROM sessions ORDER BY id;\n"
    "CREATE TABLE jobs_v2 (\n"
    "    session_id      TEXT NOT NULL,\n"
    "    sid             INTEGER NOT NULL REFERENCES sessions_v2(id),\n"
    "    kind            TEXT NOT NULL CHECK (kind IN ('download', 'exec', 'forward')),\n"
    "    state           TEXT NOT NULL CHECK (state IN\n"
    "                        ('pending', 'running', 'done', 'failed', 'expired')),\n"
    "    attempts        INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),\n"
    "    next_attempt_ms INTEGER NOT NULL,\n"
    "    deadline_ms     INTEGER NOT NULL,\n"
    "    updated_ms      INTEGER NOT NULL,\n"
    "    status          INTEGER,\n"
    "    error           TEXT,\n"
    "    path            TEXT,\n"
    "    size            INTEGER,\n"
    "    sha256          TEXT,\n"
    "    PRIMARY KEY (sid, kind)\n"
    ") STRICT;\n"
    /* A job whose session is missing has no sid: NOT NULL fails the step. */
    "INSERT INTO jobs_v2 SELECT j.session_id, s.id, j.kind, j.state, j.attempts,\n"
    "    j.next_attempt_ms, j.deadline_ms, j.updated_ms, j.status, j.error, j.path, j.size,\n"
    "    j.sha256 FROM jobs AS j LEFT JOIN sessions AS s ON s.session_id = j.session_id;\n"
    "DROP TABLE jobs;\n"
    "DROP TABLE sessions;\n"
    "ALTER TABLE sessions_v2 RENAME TO sessions;\n"
    "ALTER TABLE jobs_v2 RENAME TO jobs;\n"
    "CREATE INDEX sessions_received ON sessions(received_ms);\n"
    "CREATE INDEX jobs_due ON jobs(state, next_attempt_ms);\n"
    "CREATE TABLE session_keys (\n"
    "    session_id TEXT PRIMARY KEY,\n"
    "    id         INTEGER NOT NULL\n"
    ") STRICT, WITHOUT ROWID;\n"
    "INSERT INTO session_keys SELECT session_id, id FROM sessions ORDER BY session_id;\n"
    "CREATE TABLE session_tail (\n"
    "    id         INTEGER PRIMARY KEY,\n"
    "    session_id TEXT NOT NULL\n"
    ") STRICT;\n"
    "CREATE TRIGGER sessions_tail AFTER INSERT ON sessions BEGIN\n"
    "    INSERT INTO session_tail (id, session_id) VALUES (new.id, new.session_id);\n"
    "END;\n",

    /*
     * 3: the put inserts its key into session_tail itself (op_put). The trigger's program
     * ran as a sub-program with a statement journal on every put: about 7 us of a put's 40
     * (docs/BENCHMARKS.md, session 14).
     */
    "DROP TRIGGER sessions_tail;\n",

    /*
     * 4: a claim takes a due download before the other kinds (sql_claim says why), so each
     * kind's due jobs are found by a seek of their own. jobs_due ordered every kind together:
     * a claim of one kind over it stepped over each due job of the others. Every other query
     * on `state` (recovery, the count of unfinished jobs) is served by the new index's first
     * column, so jobs_due goes.
     */
    ("CREATE INDEX jobs_kind_due ON jobs(state, kind, next_attempt_ms);\n"
     "DROP INDEX jobs_due;\n"),
};

#define SCHEMA_VERSION ((int)(sizeof(migrations) / sizeof(migrations[0])))

/* The recording state of a row of `sessions AS s LEFT JOIN jobs AS d` (the download job). */
#define RECORDING_STATE_SQL                                                                        \
    "CASE WHEN s.recording_url IS NULL THEN 'none' WHEN d.state IS NULL THEN 'skipped'"            \
    " WHEN d.state = 'running' THEN 'downloading' WHEN d.state = 'done' THEN 'downloaded'"         \
    " ELSE d.state END"

/* The caller has checked the tail and session_keys; it adds the key to the tail (below). */
static const char sql_put_session[] =
    "INSERT INTO sessions (session_id, body, signed_at, signature, webhook_id, event_ms,"
    " received_ms, recording_url) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";
static const char sql_put_tail[] = "INSERT INTO session_tail (id, session_id) VALUES (?1, ?2)";
static const char sql_unput_session[] = "DELETE FROM sessions WHERE id = ?1";
static const char sql_seen[] = "SELECT 1 FROM session_keys WHERE session_id = ?1";
static const char sql_put_job[] =
    "INSERT INTO jobs (session_id, sid, kind, state, attempts, next_attempt_ms, deadline_ms,"
    " updated_ms) VALUES (?1, ?2, ?3, 'pending', 0, ?4, ?5, ?6)";
/*
 * ?2..?4 (?1..?3 in next_due): 'download', 'exec' and 'forward', each when this start runs
 * that kind (vh__inbox_set_kinds), else NULL. A due download is claimed before any other
 * job: its link expires, and exec and forward jobs can hold every worker for minutes. The
 * others go by when they fell due, then rowid. Each row of `k` finds its kind's first due
 * job with one seek of jobs_kind_due (its kind's due jobs in order, rowid last), so a claim
 * never steps over the jobs of another kind; the ORDER BY sorts at most three rows.
 */
static const char sql_claim[] =
    "UPDATE jobs SET state = 'running', updated_ms = ?1 WHERE rowid = (SELECT j.rowid"
    " FROM (VALUES (0, ?2), (1, ?3), (1, ?4)) AS k CROSS JOIN jobs AS j WHERE j.rowid ="
    " (SELECT rowid FROM jobs WHERE state = 'pending' AND kind = k.column2 AND"
    " next_attempt_ms <= ?1 ORDER BY next_attempt_ms, rowid LIMIT 1)"
    " ORDER BY k.column1, j.next_attempt_ms, j.rowid LIMIT 1)"
    " RETURNING session_id, kind, attempts, deadline_ms, sid";
static const char sql_claim_session[] =
    "SELECT body, signed_at, signature, webhook_id, received_ms, recording_url FROM sessions"
    " WHERE id = ?1";
static const char sql_tail_load[] =
    "SELECT id, session_id FROM session_tail WHERE id > ?1 ORDER BY id";
static const char sql_merge[] =
    "INSERT OR IGNORE INTO session_keys (session_id, id) VALUES (?1, ?2)";
static const char sql_trim[] = "DELETE FROM session_tail WHERE id <= ?1";
static const char sql_finish[] =
    "UPDATE jobs SET state = ?3, attempts = ?4, next_attempt_ms = ?5, updated_ms = ?6,"
    " status = ?7, error = ?8, path = ?9, size = ?10, sha256 = ?11"
    " WHERE sid = ?1 AND kind = ?2 AND state = 'running'";
static const char sql_recover[] = "UPDATE jobs SET state = 'pending', next_attempt_ms = ?1,"
                                  " updated_ms = ?1 WHERE state = 'running'";
/* Whatever the claim's order, a worker must wake when the first job of any kind falls due. */
static const char sql_next_due[] =
    "SELECT min((SELECT next_attempt_ms FROM jobs WHERE state = 'pending' AND kind = k.column1"
    " ORDER BY next_attempt_ms LIMIT 1)) FROM (VALUES (?1), (?2), (?3)) AS k";
static const char sql_unfinished[] =
    "SELECT count(*) FROM jobs WHERE state IN ('pending', 'running')";
static const char sql_count[] = "SELECT count(*) FROM sessions";
static const char sql_list[] =
    "SELECT s.session_id, s.received_ms, s.event_ms, s.signed_at, s.webhook_id,"
    " " RECORDING_STATE_SQL ", CASE WHEN ?4 THEN s.body END, s.id"
    " FROM sessions AS s LEFT JOIN jobs AS d ON d.sid = s.id AND"
    " d.kind = 'download' WHERE s.received_ms >= ?1 AND (?2 IS NULL OR " RECORDING_STATE_SQL
    " = ?2) ORDER BY s.id LIMIT ?3";
static const char sql_get[] =
    "SELECT s.session_id, s.received_ms, s.event_ms, s.signed_at, s.webhook_id,"
    " " RECORDING_STATE_SQL ", s.body, s.id"
    " FROM sessions AS s LEFT JOIN jobs AS d ON d.sid = s.id AND"
    " d.kind = 'download' WHERE s.id = coalesce((SELECT id FROM session_keys WHERE"
    " session_id = ?1), (SELECT min(id) FROM session_tail WHERE session_id = ?1))";
static const char sql_jobs_of[] =
    "SELECT kind, state, attempts, next_attempt_ms, deadline_ms, updated_ms, status, error,"
    " path, size, sha256 FROM jobs WHERE sid = ?1"
    " ORDER BY CASE kind WHEN 'download' THEN 1 WHEN 'exec' THEN 2 ELSE 3 END";

/* The write connection's statements, prepared once and kept (the leader's to use). */
enum wstmt {
    W_BEGIN,
    W_COMMIT,
    W_ROLLBACK,
    W_SAVEPOINT,
    W_RELEASE,
    W_ROLLBACK_TO,
    W_PUT_SESSION,
    W_PUT_TAIL,
    W_UNPUT_SESSION,
    W_PUT_JOB,
    W_CLAIM,
    W_CLAIM_SESSION,
    W_FINISH,
    W_RECOVER,
    W_SEEN,
    W_TAIL_LOAD,
    W_MERGE,
    W_TRIM,
    W__N
};

static const char *const wstmt_sql[W__N] = {
    [W_BEGIN] = "BEGIN IMMEDIATE",
    [W_COMMIT] = "COMMIT",
    [W_ROLLBACK] = "ROLLBACK",
    [W_SAVEPOINT] = "SAVEPOINT op",
    [W_RELEASE] = "RELEASE op",
    [W_ROLLBACK_TO] = "ROLLBACK TO op",
    [W_PUT_SESSION] = sql_put_session,
    [W_PUT_TAIL] = sql_put_tail,
    [W_UNPUT_SESSION] = sql_unput_session,
    [W_PUT_JOB] = sql_put_job,
    [W_CLAIM] = sql_claim,
    [W_CLAIM_SESSION] = sql_claim_session,
    [W_FINISH] = sql_finish,
    [W_RECOVER] = sql_recover,
    [W_SEEN] = sql_seen,
    [W_TAIL_LOAD] = sql_tail_load,
    [W_MERGE] = sql_merge,
    [W_TRIM] = sql_trim,
};

/*
 * One queued write, on its caller's stack. `rc` and `err` are written by the leader before
 * it posts the op (group_int.h), and read by the caller after.
 */
struct op {
    struct vh__group_op g; /* first: a batch's ops are cast back from it */
    int (*run)(struct vh_inbox *ib, void *arg, struct vh_error *err);
    void *arg;
    bool single; /* undoes itself on failure (one statement, or tail_put): no SAVEPOINT */
    int rc;
    struct vh_error err;
};

/* The keys not yet in session_keys (the top of the file); the commit leader's alone. */
struct tail {
    struct vh__keyset keys;   /* owns every key below */
    int64_t last_id;          /* session_tail is loaded up to this row id */
    struct vh__key **pending; /* the keys of this transaction's new sessions */
    size_t n_pending, cap_pending;
    struct vh__key **frozen; /* the keys being merged, in session_keys' order; NULL if none */
    size_t n_frozen;
    size_t merged;     /* how many of them are committed to session_keys */
    size_t merging;    /* merged, plus this transaction's */
    int64_t frozen_hi; /* the frozen keys are the tail's keys with id <= this */
};

struct vh_inbox {
    char *path;
    sqlite3 *wdb;            /* the commit leader's */
    sqlite3_stmt *wst[W__N]; /* wdb's statements, prepared on first use */
    sqlite3 *rdb;            /* borrowed under rmu */
    pthread_mutex_t rmu;

    pthread_mutex_t mu; /* guards q, and starting the runner */
    struct vh__group q; /* the writes waiting for a batch */
    struct vh__group_runner rn;
    pthread_t runner;           /* leads for posted puts; started with the first */
    atomic_bool runner_started; /* read without `mu` by every post, once set */
    struct tail tail;
    unsigned kinds; /* the job kinds claimed, 1 << kind each; set before the first claim */
};

/* ---- statements ------------------------------------------------------------------------ */

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

static int db_fail(sqlite3 *db, const char *what, struct vh_error *err)
{
    return vh_error_set(err, map_code(sqlite3_extended_errcode(db)), "inbox: %s: %s", what,
                        sqlite3_errmsg(db));
}

/*
 * A statement for one use, prepared on the fly (SQLite's own cache makes this cheap enough
 * here: a handful of statements per request). Binds report their first failure at the step.
 */
struct stmt {
    sqlite3 *db;
    sqlite3_stmt *st;
    const char *what;
    int bind_rc;
    bool cached; /* one of the write connection's kept statements: reset, not finalized */
};

static int st_prepare(struct stmt *s, sqlite3 *db, const char *sql, const char *what,
                      struct vh_error *err)
{
    s->db = db;
    s->st = NULL;
    s->what = what;
    s->bind_rc = SQLITE_OK;
    s->cached = false;
    if (sqlite3_prepare_v2(db, sql, -1, &s->st, NULL) != SQLITE_OK)
        return db_fail(db, what, err);
    return 0;
}

/* A kept statement of the write connection (only the commit leader calls this). */
static int st_write(struct stmt *s, struct vh_inbox *ib, enum wstmt id, const char *what,
                    struct vh_error *err)
{
    s->db = ib->wdb;
    s->st = NULL;
    s->what = what;
    s->bind_rc = SQLITE_OK;
    s->cached = true;
    if (!ib->wst[id] && sqlite3_prepare_v3(ib->wdb, wstmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT,
                                           &ib->wst[id], NULL) != SQLITE_OK)
        return db_fail(ib->wdb, what, err);
    s->st = ib->wst[id];
    return 0;
}

static void st_rc(struct stmt *s, int rc)
{
    if (s->bind_rc == SQLITE_OK)
        s->bind_rc = rc;
}

static void st_text(struct stmt *s, int idx, const char *v)
{
    size_t n = v ? strlen(v) : 0;

    if (!v)
        st_rc(s, sqlite3_bind_null(s->st, idx));
    else if (n > INT_MAX)
        st_rc(s, SQLITE_TOOBIG);
    else
        st_rc(s, sqlite3_bind_text(s->st, idx, v, (int)n, SQLITE_STATIC));
}

static void st_blob(struct stmt *s, int idx, const void *p, size_t n)
{
    if (n > INT_MAX)
        st_rc(s, SQLITE_TOOBIG);
    else
        st_rc(s, sqlite3_bind_blob(s->st, idx, n ? p : "", (int)n, SQLITE_STATIC));
}

static void st_int(struct stmt *s, int idx, int64_t v)
{
    st_rc(s, sqlite3_bind_int64(s->st, idx, v));
}

/* Steps once: 1 for a row, 0 when done, < 0 after reporting an error. */
static int st_step(struct stmt *s, struct vh_error *err)
{
    int rc = s->bind_rc;

    if (rc == SQLITE_OK)
        rc = sqlite3_step(s->st);
    if (rc == SQLITE_ROW)
        return 1;
    if (rc == SQLITE_DONE)
        return 0;
    if (s->bind_rc != SQLITE_OK)
        return vh_error_set(err, map_code(rc), "inbox: %s: %s", s->what, sqlite3_errstr(rc));
    return db_fail(s->db, s->what, err);
}

static void st_end(struct stmt *s)
{
    if (s->cached) {
        sqlite3_reset(s->st);
        sqlite3_clear_bindings(s->st);
    } else {
        sqlite3_finalize(s->st);
    }
    s->st = NULL;
}

/* Runs a kept statement that binds nothing and returns no rows. */
static int write_exec(struct vh_inbox *ib, enum wstmt id, const char *what, struct vh_error *err)
{
    struct stmt s;
    int rc;

    rc = st_write(&s, ib, id, what, err);
    if (rc < 0)
        return rc;
    rc = st_step(&s, err);
    st_end(&s);
    return rc < 0 ? rc : 0;
}

/* Runs `sql`, which returns no rows, binding nothing. */
static int exec_sql(sqlite3 *db, const char *sql, const char *what, struct vh_error *err)
{
    if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
        return db_fail(db, what, err);
    return 0;
}

/* Runs a query that answers one integer. */
static int query_int(sqlite3 *db, const char *sql, const char *what, int64_t *out,
                     struct vh_error *err)
{
    struct stmt s;
    int rc;

    rc = st_prepare(&s, db, sql, what, err);
    if (rc < 0)
        return rc;
    rc = st_step(&s, err);
    if (rc == 0)
        rc = vh_error_set(err, VH_ESTORE, "inbox: %s: no result", what);
    if (rc > 0) {
        *out = sqlite3_column_int64(s.st, 0);
        rc = sqlite3_column_type(s.st, 0) == SQLITE_NULL ? 0 : 1;
    }
    st_end(&s);
    return rc;
}

/* Copies a text column into a fixed field ("" for NULL); too long is VH_ESTORE. */
static int col_text(sqlite3_stmt *st, int col, char *dst, size_t cap, const char *what,
                    struct vh_error *err)
{
    const unsigned char *t;
    int n;

    dst[0] = '\0';
    if (sqlite3_column_type(st, col) == SQLITE_NULL)
        return 0;
    t = sqlite3_column_text(st, col);
    n = sqlite3_column_bytes(st, col);
    if (!t)
        return vh_error_set(err, VH_ENOMEM, "inbox: %s: out of memory", what);
    if (n < 0 || (size_t)n >= cap)
        return vh_error_set(err, VH_ESTORE, "inbox: %s: a stored value is too long", what);
    memcpy(dst, t, (size_t)n);
    dst[n] = '\0';
    return 0;
}

static int col_blob(sqlite3_stmt *st, int col, struct vh_buf *out, const char *what,
                    struct vh_error *err)
{
    const void *p = sqlite3_column_blob(st, col);
    int n = sqlite3_column_bytes(st, col);
    int rc;

    if (n <= 0)
        return 0;
    if (!p)
        return vh_error_set(err, VH_ENOMEM, "inbox: %s: out of memory", what);
    rc = vh_buf_add(out, p, (size_t)n);
    if (rc < 0)
        return vh_error_set(err, rc, "inbox: %s: body: %s", what, vh_strerror(rc));
    return 0;
}

static int kind_parse(const char *s, enum vh_job_kind *out)
{
    if (strcmp(s, "download") == 0)
        *out = VH_JOB_DOWNLOAD;
    else if (strcmp(s, "exec") == 0)
        *out = VH_JOB_EXEC;
    else if (strcmp(s, "forward") == 0)
        *out = VH_JOB_FORWARD;
    else
        return -1;
    return 0;
}

/* ---- the dedupe tail --------------------------------------------------------------------- */

/* How many keys the tail gathers before they are merged: an eighth of the sessions so far. */
static size_t tail_limit(int64_t last_id)
{
    int64_t n = last_id / TAIL_SHARE;

    return (size_t)(n < TAIL_MIN ? TAIL_MIN : n > TAIL_MAX ? TAIL_MAX : n);
}

static void tail_release(struct tail *t)
{
    vh__keyset_release(&t->keys); /* the pending and frozen keys are in it */
    vh_free(t->pending);
    vh_free(t->frozen);
    memset(t, 0, sizeof(*t));
}

/*
 * Loads the keys that session_tail gained since the last load: at the first batch, all of
 * it; later, only what another connection to the file committed (normally nothing), so a
 * second writer's sessions are deduplicated against too. Runs inside the write transaction.
 */
static int tail_load(struct vh_inbox *ib, struct vh_error *err)
{
    struct tail *t = &ib->tail;
    struct vh__key *k;
    const char *sid;
    struct stmt s;
    int64_t id;
    int n, rc;

    rc = st_write(&s, ib, W_TAIL_LOAD, "load the dedupe tail", err);
    if (rc < 0)
        return rc;
    st_int(&s, 1, t->last_id);
    while ((rc = st_step(&s, err)) > 0) {
        id = sqlite3_column_int64(s.st, 0);
        sid = (const char *)sqlite3_column_text(s.st, 1);
        n = sqlite3_column_bytes(s.st, 1);
        if (!sid || n < 0) {
            rc = vh_error_set(err, VH_ENOMEM, "inbox: load the dedupe tail: out of memory");
            break;
        }
        if (!vh__keyset_find(&t->keys, sid, (size_t)n, vh__key_hash(sid, (size_t)n))) {
            k = vh__keyset_reserve(&t->keys, 1) == 0 ? vh__key_new(sid, (size_t)n, id) : NULL;
            if (!k) {
                rc = vh_error_set(err, VH_ENOMEM, "inbox: load the dedupe tail: out of memory");
                break;
            }
            vh__keyset_add(&t->keys, k);
        }
        t->last_id = id;
    }
    st_end(&s);
    return rc < 0 ? rc : 0;
}

/*
 * Starts a merge once the tail is long enough: its keys, sorted, to go into session_keys.
 * Without the memory for them (up to 8 bytes a key, about half a megabyte) the merge waits
 * for a later batch: it only keeps the tail short, and a batch's puts need far less.
 */
static void tail_freeze(struct tail *t)
{
    size_t i, n = 0;

    if (t->frozen || t->keys.n < tail_limit(t->last_id))
        return;
    t->frozen = vh_malloc(t->keys.n * sizeof(*t->frozen));
    if (!t->frozen)
        return;
    for (i = 0; i < t->keys.cap; i++) {
        if (t->keys.slot[i])
            t->frozen[n++] = t->keys.slot[i];
    }
    qsort(t->frozen, n, sizeof(*t->frozen), vh__key_cmp);
    t->n_frozen = n;
    t->merged = t->merging = 0;
    t->frozen_hi = t->last_id;
}

/*
 * Merges the next frozen keys into session_keys, in key order, a few more than the batch
 * adds (so a merge ends before the next is due); the last step empties session_tail of them.
 */
static int tail_merge(struct vh_inbox *ib, struct vh_error *err)
{
    struct tail *t = &ib->tail;
    size_t end;
    struct stmt s;
    int rc;

    if (!t->frozen)
        return 0;
    end = t->merged + 2 * t->n_pending + MERGE_MIN;
    if (end > t->n_frozen)
        end = t->n_frozen;
    for (t->merging = t->merged; t->merging < end; t->merging++) {
        rc = st_write(&s, ib, W_MERGE, "merge the dedupe tail", err);
        if (rc < 0)
            return rc;
        st_text(&s, 1, t->frozen[t->merging]->s);
        st_int(&s, 2, t->frozen[t->merging]->id);
        rc = st_step(&s, err);
        st_end(&s);
        if (rc < 0)
            return rc;
    }
    if (t->merging < t->n_frozen)
        return 0;
    rc = st_write(&s, ib, W_TRIM, "merge the dedupe tail", err);
    if (rc < 0)
        return rc;
    st_int(&s, 1, t->frozen_hi);
    rc = st_step(&s, err);
    st_end(&s);
    return rc < 0 ? rc : 0;
}

/* After the transaction: its keys stay (committed) or go (rolled back), and so its merge. */
static void tail_end(struct tail *t, bool committed)
{
    size_t i;

    for (i = 0; i < t->n_pending; i++) {
        if (committed) {
            if (t->pending[i]->id > t->last_id)
                t->last_id = t->pending[i]->id;
        } else {
            vh__keyset_remove(&t->keys, t->pending[i]);
            vh_free(t->pending[i]);
        }
    }
    t->n_pending = 0;
    if (!t->frozen)
        return;
    if (!committed) {
        t->merging = t->merged;
        return;
    }
    t->merged = t->merging;
    if (t->merged < t->n_frozen)
        return;
    /* Every frozen key is in session_keys now, and out of session_tail. */
    for (i = 0; i < t->n_frozen; i++) {
        vh__keyset_remove(&t->keys, t->frozen[i]);
        vh_free(t->frozen[i]);
    }
    vh_free(t->frozen);
    t->frozen = NULL;
    t->n_frozen = t->merged = t->merging = 0;
}

/* ---- opening --------------------------------------------------------------------------- */

static int conn_open(const char *path, bool create, sqlite3 **out, struct vh_error *err)
{
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (create ? SQLITE_OPEN_CREATE : 0);
    sqlite3 *db = NULL;
    int rc;

    /*
     * Through the VFS that writes the WAL behind (store/readahead_int.h): a batch's frames
     * in one pwrite(2) before its sync, not two per frame. Without it (it could not be
     * registered), the system's VFS as it is.
     */
    rc = sqlite3_open_v2(path, &db, flags,
                         vh__readahead_register() == SQLITE_OK ? VH__WAL_BEHIND_VFS : NULL);
    if (rc != SQLITE_OK) {
        if (db)
            rc = vh_error_set(err, map_code(sqlite3_extended_errcode(db)), "inbox '%s': %s", path,
                              sqlite3_errmsg(db));
        else
            rc = vh_error_set(err, VH_ENOMEM, "inbox '%s': out of memory", path);
        sqlite3_close_v2(db);
        return rc;
    }
    sqlite3_extended_result_codes(db, 1);
    sqlite3_busy_timeout(db, BUSY_TIMEOUT_MS);
    /*
     * WAL + FULL: COMMIT syncs the log before it returns, so a 200 means on disk. The page
     * size only takes on a new file (before its first table): a stored webhook (~2.6 KB)
     * took a 4 KiB page of its own, where 8 KiB pages hold three; an inbox made with 4 KiB
     * pages keeps them (docs/decisions.md).
     */
    rc = exec_sql(db,
                  "PRAGMA page_size = " PAGE_SIZE_NEW "; PRAGMA journal_mode = WAL;"
                  " PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON",
                  "open", err);
    if (rc < 0) {
        sqlite3_close_v2(db);
        return rc;
    }
    *out = db;
    return 0;
}

static int migrate_steps(sqlite3 *db, const char *path, bool create, struct vh_error *err)
{
    int64_t version = 0, app_id = 0, tables = 0;
    char sql[64];
    int rc, i;

    for (;;) {
        rc = exec_sql(db, "BEGIN IMMEDIATE", "migrate", err);
        if (rc < 0)
            return rc;
        rc = query_int(db, "PRAGMA user_version", "migrate", &version, err);
        if (rc >= 0)
            rc = query_int(db, "PRAGMA application_id", "migrate", &app_id, err);
        if (rc < 0)
            goto fail;
        if (app_id != 0 && app_id != APPLICATION_ID) {
            rc = vh_error_set(err, VH_ESTORE, "inbox '%s': not a vocohook inbox", path);
            goto fail;
        }
        if (version > SCHEMA_VERSION) {
            rc = vh_error_set(err, VH_ESTORE,
                              "inbox '%s': schema version %lld is newer than this build's %d", path,
                              (long long)version, SCHEMA_VERSION);
            goto fail;
        }
        if (version == SCHEMA_VERSION)
            return exec_sql(db, "COMMIT", "migrate", err);
        if (version == 0) {
            /* Someone else's SQLite file, given by mistake: add nothing to it. */
            rc = query_int(db, "SELECT count(*) FROM sqlite_schema", "migrate", &tables, err);
            if (rc < 0)
                goto fail;
            if (tables != 0) {
                rc = vh_error_set(err, VH_ESTORE,
                                  "inbox '%s': not a vocohook inbox (it has tables but no "
                                  "schema version)",
                                  path);
                goto fail;
            }
            /* A reader (vocohook sessions) never makes an inbox, of a new file or an empty one. */
            if (!create) {
                rc = vh_error_set(err, VH_ENOTFOUND,
                                  "inbox '%s': empty, not an inbox yet (vocohook receive makes "
                                  "it)",
                                  path);
                goto fail;
            }
        }
        i = (int)version;
        rc = exec_sql(db, migrations[i], "migrate", err);
        if (rc < 0)
            goto fail;
        snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", i + 1);
        rc = exec_sql(db, sql, "migrate", err);
        if (rc >= 0)
            rc = exec_sql(db, "COMMIT", "migrate", err);
        if (rc < 0)
            goto fail;
    }
fail:
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

/*
 * The steps with secure_delete off, as the build set it restored after (Debian's SQLite has
 * it on): a step frees only the pages of a table it has just copied, and zeroing them took
 * most of version 2's time (docs/decisions.md). Those pages are reused by later writes.
 */
static int migrate(sqlite3 *db, const char *path, bool create, struct vh_error *err)
{
    int64_t secure_delete = 0;
    char sql[48];
    int rc;

    rc = query_int(db, "PRAGMA secure_delete", "migrate", &secure_delete, err);
    if (rc < 0)
        return rc;
    rc = exec_sql(db, "PRAGMA secure_delete = OFF", "migrate", err);
    if (rc < 0)
        return rc;
    rc = migrate_steps(db, path, create, err);
    snprintf(sql, sizeof(sql), "PRAGMA secure_delete = %d", secure_delete ? 1 : 0);
    if (exec_sql(db, sql, "migrate", rc < 0 ? NULL : err) < 0 && rc == 0)
        rc = VH_ESTORE;
    return rc;
}

void vh_inbox_close(struct vh_inbox *ib)
{
    size_t i;

    if (!ib)
        return;
    if (atomic_load(&ib->runner_started)) {
        /* Every posted put is answered before the runner returns. */
        vh__group_runner_stop(&ib->q);
        pthread_join(ib->runner, NULL);
    }
    vh__group_runner_release(&ib->q);
    tail_release(&ib->tail);
    for (i = 0; i < W__N; i++)
        sqlite3_finalize(ib->wst[i]);
    sqlite3_close_v2(ib->wdb);
    sqlite3_close_v2(ib->rdb);
    pthread_mutex_destroy(&ib->rmu);
    pthread_mutex_destroy(&ib->mu);
    vh_free(ib->path);
    vh_free(ib);
}

/* Creates the file with mode 0600 (SQLite would use 0644: the inbox holds call transcripts). */
static int create_private(const char *path, struct vh_error *err)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);

    if (fd < 0)
        return vh_error_set(err, VH_EIO, "inbox '%s': %s", path, strerror(errno));
    close(fd);
    return 0;
}

static vh__group_run_fn run_batch;

int vh_inbox_open(const char *path, unsigned flags, struct vh_inbox **out, struct vh_error *err)
{
    struct vh_inbox *ib;
    bool create = (flags & VH_INBOX_CREATE) != 0;
    struct stat sb;
    int rc;

    if (!path || !*path || !out)
        return vh_error_set(err, VH_EINVAL, "inbox: no path");
    if (flags & ~(unsigned)VH_INBOX_CREATE)
        return vh_error_set(err, VH_EINVAL, "inbox: unknown flags 0x%x", flags);
    if (sqlite3_libversion_number() < SQLITE_MIN)
        return vh_error_set(err, VH_ESTORE, "inbox: SQLite %s is too old (3.35 or later needed)",
                            sqlite3_libversion());
    if (stat(path, &sb) != 0) {
        if (errno != ENOENT || !create)
            return vh_error_set(err, errno == ENOENT ? VH_ENOTFOUND : VH_EIO, "inbox '%s': %s",
                                path, strerror(errno));
        rc = create_private(path, err);
        if (rc < 0)
            return rc;
    } else if (!create && sb.st_size == 0) {
        /* Opening would write SQLite's header into it; a reader leaves the file alone. */
        return vh_error_set(err, VH_ENOTFOUND,
                            "inbox '%s': empty, not an inbox yet (vocohook receive makes it)",
                            path);
    }
    ib = vh_malloc(sizeof(*ib));
    if (!ib)
        return vh_error_set(err, VH_ENOMEM, "inbox: out of memory");
    memset(ib, 0, sizeof(*ib));
    atomic_init(&ib->runner_started, false);
    ib->kinds = 1u << VH_JOB_DOWNLOAD | 1u << VH_JOB_EXEC | 1u << VH_JOB_FORWARD;
    pthread_mutex_init(&ib->rmu, NULL);
    pthread_mutex_init(&ib->mu, NULL);
    ib->q.mu = &ib->mu;
    ib->rn.g = &ib->q;
    ib->rn.run = run_batch;
    ib->rn.ud = ib;
    ib->rn.name = "vh-inbox";
    ib->q.batch_max = BATCH_MAX;
    ib->path = vh_strndup(path, strlen(path));
    if (!ib->path) {
        rc = vh_error_set(err, VH_ENOMEM, "inbox: out of memory");
        goto fail;
    }
    rc = conn_open(path, false, &ib->wdb, err);
    if (rc < 0)
        goto fail;
    rc = migrate(ib->wdb, path, create, err);
    if (rc < 0)
        goto fail;
    /*
     * A put with jobs runs in a SAVEPOINT, whose journal of the pages it changes went to a
     * temporary file: a pwrite of each 8 KiB page per put. In memory it is a copy (bench_inbox
     * --jobs 1: 45-52 against 77-79 us per put; docs/BENCHMARKS.md, session 11). After the
     * migration, whose sorts may be large.
     */
    rc = exec_sql(ib->wdb, "PRAGMA temp_store = MEMORY", "open", err);
    if (rc < 0)
        goto fail;
    rc = conn_open(path, false, &ib->rdb, err);
    if (rc < 0)
        goto fail;
    *out = ib;
    return 0;
fail:
    vh_inbox_close(ib);
    return rc;
}

/* ---- group commit ------------------------------------------------------------------------- */

/*
 * Runs one op inside the open transaction. Returns < 0 only when the transaction as a whole
 * is lost (its error in `txerr`); an op that fails alone has its own rc and error.
 */
static int run_op(struct vh_inbox *ib, struct op *op, struct vh_error *txerr)
{
    int rc;

    if (op->single) {
        op->rc = op->run(ib, op->arg, &op->err);
        /* Some failures (I/O, disk full) roll the whole transaction back: stop the batch. */
        if (op->rc < 0 && sqlite3_get_autocommit(ib->wdb)) {
            *txerr = op->err;
            return op->rc;
        }
        return 0;
    }
    rc = write_exec(ib, W_SAVEPOINT, "savepoint", &op->err);
    if (rc < 0) {
        op->rc = rc;
        return 0; /* only this op failed */
    }
    op->rc = op->run(ib, op->arg, &op->err);
    if (op->rc < 0)
        rc = write_exec(ib, W_ROLLBACK_TO, "rollback to savepoint", txerr);
    if (rc == 0)
        rc = write_exec(ib, W_RELEASE, "release savepoint", txerr);
    return rc;
}

/* The op a group entry belongs to (its first member). */
static struct op *op_of(struct vh__group_op *g)
{
    return (struct op *)g;
}

/* Runs one batch in one transaction (vh__group_run_fn): the leader only, without `mu`. */
static void run_batch(void *ud, struct vh__group_op *batch)
{
    struct vh_inbox *ib = ud;
    struct vh_error txerr = VH_ERROR_INIT;
    struct vh__group_op *g;
    int rc;

    rc = write_exec(ib, W_BEGIN, "begin", &txerr);
    if (rc == 0)
        rc = tail_load(ib, &txerr);
    if (rc == 0)
        tail_freeze(&ib->tail);
    for (g = batch; rc == 0 && g; g = g->next)
        rc = run_op(ib, op_of(g), &txerr);
    if (rc == 0)
        rc = tail_merge(ib, &txerr);
    if (rc == 0)
        rc = write_exec(ib, W_COMMIT, "commit", &txerr);
    tail_end(&ib->tail, rc == 0);
    if (rc == 0)
        return;
    /* The transaction failed as a whole: every op of the batch fails with its error. */
    if (!sqlite3_get_autocommit(ib->wdb))
        write_exec(ib, W_ROLLBACK, "rollback", NULL);
    for (g = batch; g; g = g->next) {
        if (op_of(g)->rc >= 0) {
            op_of(g)->rc = rc;
            op_of(g)->err = txerr;
        }
    }
}

/*
 * Queues `run(arg)` and returns once it is committed (or failed); `single` says that `run`
 * is one statement.
 */
static int submit(struct vh_inbox *ib, int (*run)(struct vh_inbox *, void *, struct vh_error *),
                  void *arg, bool single, struct vh_error *err)
{
    struct op op;

    memset(&op, 0, sizeof(op));
    op.run = run;
    op.arg = arg;
    op.single = single;
    if (vh__group_submit(&ib->q, &op.g, run_batch, ib) < 0)
        return vh_error_set(err, VH_ENOMEM, "inbox: semaphore: %s", strerror(errno));
    if (op.rc < 0 && err && !err->code)
        *err = op.err;
    return op.rc;
}

/* ---- writes ----------------------------------------------------------------------------- */

struct put_arg {
    const struct vh__inbox_put *p;
    bool created;
};

/*
 * Adds the key of the session just stored as row `id` to session_tail. Should that fail, the
 * session row goes too, so that no session is ever stored without its key (a put without
 * jobs runs without a savepoint); if even that fails, the whole transaction is rolled back,
 * and the batch fails with it.
 */
static int tail_put(struct vh_inbox *ib, int64_t id, const char *session_id, struct vh_error *err)
{
    bool undone = false;
    struct stmt s;
    int rc;

    rc = st_write(&s, ib, W_PUT_TAIL, "insert session key", err);
    if (rc == 0) {
        st_int(&s, 1, id);
        st_text(&s, 2, session_id);
        rc = st_step(&s, err);
        st_end(&s);
    }
    if (rc >= 0 || sqlite3_get_autocommit(ib->wdb))
        return rc < 0 ? rc : 0;
    if (st_write(&s, ib, W_UNPUT_SESSION, "undo the session", NULL) == 0) {
        st_int(&s, 1, id);
        undone = st_step(&s, NULL) == 0 && sqlite3_changes(ib->wdb) == 1;
        st_end(&s);
    }
    if (!undone)
        write_exec(ib, W_ROLLBACK, "rollback", NULL);
    return rc;
}

static int op_put(struct vh_inbox *ib, void *arg, struct vh_error *err)
{
    struct put_arg *a = arg;
    const struct vh__inbox_put *p = a->p;
    struct tail *t = &ib->tail;
    size_t len = strlen(p->session_id), i;
    uint64_t hash = vh__key_hash(p->session_id, len);
    struct vh__key *k;
    struct stmt s;
    int rc;

    a->created = false;
    if (vh__keyset_find(&t->keys, p->session_id, len, hash))
        return 0; /* a duplicate of a recent session */
    rc = st_write(&s, ib, W_SEEN, "look up session", err);
    if (rc < 0)
        return rc;
    st_text(&s, 1, p->session_id);
    rc = st_step(&s, err);
    st_end(&s);
    if (rc != 0)
        return rc < 0 ? rc : 0; /* a duplicate of an older one */
    /* Room first: once the row is in, the key must reach the tail. */
    if (t->n_pending == t->cap_pending) {
        size_t cap = t->cap_pending ? 2 * t->cap_pending : BATCH_MAX;
        struct vh__key **pending = vh_realloc(t->pending, cap * sizeof(*pending));

        if (!pending)
            return vh_error_set(err, VH_ENOMEM, "inbox: out of memory");
        t->pending = pending;
        t->cap_pending = cap;
    }
    k = vh__keyset_reserve(&t->keys, 1) == 0 ? vh__key_new(p->session_id, len, 0) : NULL;
    if (!k)
        return vh_error_set(err, VH_ENOMEM, "inbox: out of memory");
    rc = st_write(&s, ib, W_PUT_SESSION, "insert session", err);
    if (rc < 0)
        goto fail;
    st_text(&s, 1, p->session_id);
    st_blob(&s, 2, p->body, p->body_len);
    st_text(&s, 3, p->signed_at);
    st_text(&s, 4, p->signature);
    st_text(&s, 5, p->webhook_id);
    st_int(&s, 6, p->event_ms);
    st_int(&s, 7, p->received_ms);
    st_text(&s, 8, p->recording_url);
    rc = st_step(&s, err);
    st_end(&s);
    if (rc < 0)
        goto fail;
    k->id = sqlite3_last_insert_rowid(ib->wdb);
    rc = tail_put(ib, k->id, p->session_id, err);
    if (rc < 0)
        goto fail;
    for (i = 0; i < p->n_jobs; i++) {
        rc = st_write(&s, ib, W_PUT_JOB, "insert job", err);
        if (rc < 0)
            goto fail;
        st_text(&s, 1, p->session_id);
        st_int(&s, 2, k->id);
        st_text(&s, 3, vh_job_kind_name(p->jobs[i].kind));
        st_int(&s, 4, p->jobs[i].next_attempt_ms);
        st_int(&s, 5, p->jobs[i].deadline_ms);
        st_int(&s, 6, p->received_ms);
        rc = st_step(&s, err);
        st_end(&s);
        if (rc < 0)
            goto fail; /* the op's savepoint takes the session back out */
    }
    vh__keyset_add(&t->keys, k);
    t->pending[t->n_pending++] = k;
    a->created = true;
    return 0;
fail:
    vh_free(k);
    return rc;
}

int vh__inbox_put(struct vh_inbox *ib, const struct vh__inbox_put *p, bool *created,
                  struct vh_error *err)
{
    struct put_arg a = {p, false};
    int rc;

    if (p->n_jobs > VH_INBOX_JOBS_MAX)
        return vh_error_set(err, VH_EINVAL, "inbox: too many jobs");
    rc = submit(ib, op_put, &a, p->n_jobs == 0, err);
    if (rc < 0)
        return rc;
    *created = a.created;
    return 0;
}

/* A put with no waiting caller: its copy of the put, and whom to tell. */
struct posted_put {
    struct op op; /* first: the queue's entry */
    struct put_arg a;
    struct vh__inbox_put p;
    vh__inbox_put_done_fn *done;
    void *ud;
};

/* The op's completion (vh__group_done_fn): on the thread that ran its batch. */
static void posted_put_done(struct vh__group_op *g)
{
    struct posted_put *pp = (struct posted_put *)g;
    vh__inbox_put_done_fn *done = pp->done;
    void *ud = pp->ud;
    struct vh_error err = pp->op.err;
    int rc = pp->op.rc;
    bool created = pp->a.created;

    /* Freed first: once told, the caller may count its memory, or be gone. */
    vh_free(pp);
    done(ud, rc, created, &err);
}

int vh__inbox_put_post(struct vh_inbox *ib, const struct vh__inbox_put *p,
                       vh__inbox_put_done_fn *done, void *ud, struct vh_error *err)
{
    struct posted_put *pp;
    int rc;

    if (p->n_jobs > VH_INBOX_JOBS_MAX)
        return vh_error_set(err, VH_EINVAL, "inbox: too many jobs");
    /* The commit thread starts with the first post. */
    rc = vh__group_runner_start(&ib->q, &ib->rn, &ib->runner, &ib->runner_started, "inbox", err);
    if (rc < 0)
        return rc;
    pp = vh_malloc(sizeof(*pp));
    if (!pp)
        return vh_error_set(err, VH_ENOMEM, "inbox: out of memory");
    memset(pp, 0, sizeof(*pp));
    pp->p = *p;
    pp->a.p = &pp->p;
    pp->op.run = op_put;
    pp->op.arg = &pp->a;
    pp->op.single = p->n_jobs == 0;
    pp->op.g.on_done = posted_put_done;
    pp->done = done;
    pp->ud = ud;
    vh__group_post(&ib->q, &pp->op.g);
    return 0;
}

void vh__job_release(struct vh__job *j)
{
    vh_free(j->recording_url);
    j->recording_url = NULL;
    vh_buf_release(&j->body);
}

void vh__inbox_set_kinds(struct vh_inbox *ib, unsigned kinds)
{
    ib->kinds = kinds;
}

/* Binds the names of the kinds in `kinds` (NULL for the others) from parameter `first` on. */
static void bind_kinds(struct stmt *s, unsigned kinds, int first)
{
    static const enum vh_job_kind all[] = {VH_JOB_DOWNLOAD, VH_JOB_EXEC, VH_JOB_FORWARD};
    size_t i;

    for (i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        st_text(s, first + (int)i, kinds & 1u << all[i] ? vh_job_kind_name(all[i]) : NULL);
}

struct claim_arg {
    int64_t now_ms;
    struct vh__job *job;
    bool found;
};

static int claim_session(struct vh_inbox *ib, struct vh__job *j, struct vh_error *err)
{
    struct stmt s;
    int rc;

    rc = st_write(&s, ib, W_CLAIM_SESSION, "claim job", err);
    if (rc < 0)
        return rc;
    st_int(&s, 1, j->sid);
    rc = st_step(&s, err);
    if (rc == 0)
        rc = vh_error_set(err, VH_ESTORE, "inbox: job of '%s' has no session", j->session_id);
    if (rc > 0)
        rc = col_blob(s.st, 0, &j->body, "claim job", err);
    if (rc >= 0)
        rc = col_text(s.st, 1, j->signed_at, sizeof(j->signed_at), "claim job", err);
    if (rc >= 0)
        rc = col_text(s.st, 2, j->signature, sizeof(j->signature), "claim job", err);
    if (rc >= 0)
        rc = col_text(s.st, 3, j->webhook_id, sizeof(j->webhook_id), "claim job", err);
    if (rc >= 0) {
        j->received_ms = sqlite3_column_int64(s.st, 4);
        if (sqlite3_column_type(s.st, 5) != SQLITE_NULL) {
            const unsigned char *u = sqlite3_column_text(s.st, 5);
            int n = sqlite3_column_bytes(s.st, 5);

            j->recording_url = u && n >= 0 ? vh_strndup((const char *)u, (size_t)n) : NULL;
            if (!j->recording_url)
                rc = vh_error_set(err, VH_ENOMEM, "inbox: claim job: out of memory");
        }
    }
    st_end(&s);
    return rc < 0 ? rc : 0;
}

static int op_claim(struct vh_inbox *ib, void *arg, struct vh_error *err)
{
    struct claim_arg *a = arg;
    struct vh__job *j = a->job;
    char kind[16];
    struct stmt s;
    int rc;

    a->found = false;
    rc = st_write(&s, ib, W_CLAIM, "claim job", err);
    if (rc < 0)
        return rc;
    st_int(&s, 1, a->now_ms);
    bind_kinds(&s, ib->kinds, 2);
    rc = st_step(&s, err);
    if (rc > 0) {
        rc = col_text(s.st, 0, j->session_id, sizeof(j->session_id), "claim job", err);
        if (rc >= 0)
            rc = col_text(s.st, 1, kind, sizeof(kind), "claim job", err);
        if (rc >= 0 && kind_parse(kind, &j->kind) < 0)
            rc = vh_error_set(err, VH_ESTORE, "inbox: claim job: unknown kind '%s'", kind);
        j->attempts = (unsigned)sqlite3_column_int64(s.st, 2);
        j->deadline_ms = sqlite3_column_int64(s.st, 3);
        j->sid = sqlite3_column_int64(s.st, 4);
        /* RETURNING rows are all computed by the first step; finish the statement. */
        if (rc >= 0 && st_step(&s, err) < 0)
            rc = VH_ESTORE;
        if (rc >= 0)
            a->found = true;
    }
    st_end(&s);
    if (rc < 0 || !a->found)
        return rc < 0 ? rc : 0;
    return claim_session(ib, j, err);
}

int vh__inbox_claim(struct vh_inbox *ib, int64_t now_ms, struct vh__job *out, struct vh_error *err)
{
    struct claim_arg a = {now_ms, out, false};
    int rc;

    memset(out, 0, sizeof(*out));
    vh_buf_init(&out->body, BODY_MAX);
    rc = submit(ib, op_claim, &a, false, err);
    if (rc < 0)
        return rc;
    return a.found ? 1 : 0;
}

struct finish_arg {
    int64_t sid;
    const char *session_id;
    enum vh_job_kind kind;
    const struct vh__job_update *u;
    int64_t now_ms;
};

static int op_finish(struct vh_inbox *ib, void *arg, struct vh_error *err)
{
    const struct finish_arg *a = arg;
    const struct vh__job_update *u = a->u;
    struct stmt s;
    int rc;

    rc = st_write(&s, ib, W_FINISH, "finish job", err);
    if (rc < 0)
        return rc;
    st_int(&s, 1, a->sid);
    st_text(&s, 2, vh_job_kind_name(a->kind));
    st_text(&s, 3, vh_job_state_name(u->state));
    st_int(&s, 4, u->attempts);
    st_int(&s, 5, u->next_attempt_ms);
    st_int(&s, 6, a->now_ms);
    if (u->status)
        st_int(&s, 7, u->status);
    else
        st_text(&s, 7, NULL);
    st_text(&s, 8, u->error[0] ? u->error : NULL);
    st_text(&s, 9, u->path);
    if (u->path)
        st_int(&s, 10, (int64_t)u->size);
    else
        st_text(&s, 10, NULL);
    st_text(&s, 11, u->sha256);
    rc = st_step(&s, err);
    st_end(&s);
    if (rc < 0)
        return rc;
    if (sqlite3_changes(ib->wdb) != 1)
        return vh_error_set(err, VH_ESTATE, "inbox: %s job of '%s' is not running",
                            vh_job_kind_name(a->kind), a->session_id);
    return 0;
}

int vh__inbox_finish(struct vh_inbox *ib, int64_t sid, const char *session_id,
                     enum vh_job_kind kind, const struct vh__job_update *u, int64_t now_ms,
                     struct vh_error *err)
{
    struct finish_arg a = {sid, session_id, kind, u, now_ms};
    int rc;

    rc = vh_job_transition(VH_JOB_RUNNING, u->state, err);
    if (rc < 0)
        return rc;
    return submit(ib, op_finish, &a, false, err);
}

struct recover_arg {
    int64_t now_ms;
    int64_t n;
};

static int op_recover(struct vh_inbox *ib, void *arg, struct vh_error *err)
{
    struct recover_arg *a = arg;
    struct stmt s;
    int rc;

    rc = st_write(&s, ib, W_RECOVER, "recover jobs", err);
    if (rc < 0)
        return rc;
    st_int(&s, 1, a->now_ms);
    rc = st_step(&s, err);
    st_end(&s);
    if (rc < 0)
        return rc;
    a->n = sqlite3_changes(ib->wdb);
    return 0;
}

int vh__inbox_recover(struct vh_inbox *ib, int64_t now_ms, int64_t *n, struct vh_error *err)
{
    struct recover_arg a = {now_ms, 0};
    int rc = submit(ib, op_recover, &a, false, err);

    if (rc == 0)
        *n = a.n;
    return rc;
}

/* ---- reads ------------------------------------------------------------------------------ */

/* Runs a one-integer query on the read connection: 1 with a value, 0 for NULL, or < 0. */
static int read_int(struct vh_inbox *ib, const char *sql, const char *what, int64_t *out,
                    struct vh_error *err)
{
    int rc;

    pthread_mutex_lock(&ib->rmu);
    rc = query_int(ib->rdb, sql, what, out, err);
    pthread_mutex_unlock(&ib->rmu);
    return rc;
}

int vh__inbox_next_due(struct vh_inbox *ib, int64_t *out_ms, struct vh_error *err)
{
    struct stmt s;
    int rc;

    pthread_mutex_lock(&ib->rmu);
    rc = st_prepare(&s, ib->rdb, sql_next_due, "next due job", err);
    if (rc >= 0) {
        bind_kinds(&s, ib->kinds, 1);
        rc = st_step(&s, err);
        if (rc == 0)
            rc = vh_error_set(err, VH_ESTORE, "inbox: next due job: no result");
        if (rc > 0) {
            *out_ms = sqlite3_column_int64(s.st, 0);
            rc = sqlite3_column_type(s.st, 0) == SQLITE_NULL ? 0 : 1;
        }
        st_end(&s);
    }
    pthread_mutex_unlock(&ib->rmu);
    return rc;
}

int vh__inbox_unfinished(struct vh_inbox *ib, int64_t *out, struct vh_error *err)
{
    int rc = read_int(ib, sql_unfinished, "count jobs", out, err);

    return rc < 0 ? rc : 0;
}

int vh_receiver_pending_jobs(struct vh_receiver *r, int64_t *out, struct vh_error *err)
{
    return vh__inbox_unfinished(r->ib, out, err);
}

int vh_inbox_count(struct vh_inbox *ib, int64_t *out, struct vh_error *err)
{
    int rc = read_int(ib, sql_count, "count sessions", out, err);

    return rc < 0 ? rc : 0;
}

void vh_inbox_session_release(struct vh_inbox_session *s)
{
    vh_buf_release(&s->body);
}

static int read_jobs(sqlite3 *db, int64_t sid, struct vh_inbox_session *s, struct vh_error *err)
{
    struct vh_inbox_job *j;
    char kind[16], state[16];
    struct stmt st;
    int rc;

    s->n_jobs = 0;
    rc = st_prepare(&st, db, sql_jobs_of, "read jobs", err);
    if (rc < 0)
        return rc;
    st_int(&st, 1, sid);
    for (;;) {
        rc = st_step(&st, err);
        if (rc <= 0 || s->n_jobs == VH_INBOX_JOBS_MAX)
            break;
        j = &s->jobs[s->n_jobs];
        memset(j, 0, sizeof(*j));
        rc = col_text(st.st, 0, kind, sizeof(kind), "read jobs", err);
        if (rc >= 0)
            rc = col_text(st.st, 1, state, sizeof(state), "read jobs", err);
        if (rc >= 0 && (kind_parse(kind, &j->kind) < 0 ||
                        vh_job_state_parse(state, strlen(state), &j->state, NULL) < 0))
            rc = vh_error_set(err, VH_ESTORE, "inbox: read jobs: unknown kind or state");
        if (rc >= 0)
            rc = col_text(st.st, 7, j->error, sizeof(j->error), "read jobs", err);
        /* Cleaned when written since session 19 (vh__job_decide); an older inbox may hold
         * any bytes, which a JSON export would refuse. */
        if (rc >= 0)
            vh__utf8_repair(j->error, strlen(j->error), true);
        if (rc >= 0)
            rc = col_text(st.st, 8, j->path, sizeof(j->path), "read jobs", err);
        if (rc >= 0)
            rc = col_text(st.st, 10, j->sha256, sizeof(j->sha256), "read jobs", err);
        if (rc < 0)
            break;
        j->attempts = (unsigned)sqlite3_column_int64(st.st, 2);
        j->next_attempt_ms = sqlite3_column_int64(st.st, 3);
        j->deadline_ms = sqlite3_column_int64(st.st, 4);
        j->updated_ms = sqlite3_column_int64(st.st, 5);
        j->status = (int)sqlite3_column_int64(st.st, 6);
        j->size = (uint64_t)sqlite3_column_int64(st.st, 9);
        s->n_jobs++;
    }
    st_end(&st);
    return rc < 0 ? rc : 0;
}

/* Reads the row of sql_list / sql_get into a zeroed `s`, then its jobs (by s.id, column 7). */
static int read_session(sqlite3 *db, sqlite3_stmt *st, struct vh_inbox_session *s,
                        struct vh_error *err)
{
    char rec[16];
    int rc;

    vh_buf_init(&s->body, BODY_MAX);
    rc = col_text(st, 0, s->session_id, sizeof(s->session_id), "read session", err);
    if (rc >= 0)
        rc = col_text(st, 3, s->signed_at, sizeof(s->signed_at), "read session", err);
    if (rc >= 0)
        rc = col_text(st, 4, s->webhook_id, sizeof(s->webhook_id), "read session", err);
    if (rc >= 0)
        rc = col_text(st, 5, rec, sizeof(rec), "read session", err);
    if (rc >= 0 && vh_recording_state_parse(rec, strlen(rec), &s->recording, NULL) < 0)
        rc = vh_error_set(err, VH_ESTORE, "inbox: read session: unknown recording state");
    if (rc >= 0)
        rc = col_blob(st, 6, &s->body, "read session", err);
    if (rc < 0)
        return rc;
    s->received_ms = sqlite3_column_int64(st, 1);
    s->event_ms = sqlite3_column_int64(st, 2);
    return read_jobs(db, sqlite3_column_int64(st, 7), s, err);
}

int vh_inbox_foreach(struct vh_inbox *ib, const struct vh_inbox_filter *f, vh_inbox_session_fn *fn,
                     void *ud, struct vh_error *err)
{
    struct vh_inbox_filter none;
    struct vh_inbox_session s;
    struct stmt st;
    int rc;

    if (!f) {
        memset(&none, 0, sizeof(none));
        f = &none;
    }
    pthread_mutex_lock(&ib->rmu);
    /* One read transaction: a consistent snapshot while the receiver keeps writing. */
    rc = exec_sql(ib->rdb, "BEGIN", "list sessions", err);
    if (rc < 0)
        goto unlock;
    rc = st_prepare(&st, ib->rdb, sql_list, "list sessions", err);
    if (rc < 0)
        goto end;
    st_int(&st, 1, f->since_ms);
    st_text(&st, 2, f->has_recording_state ? vh_recording_state_name(f->recording_state) : NULL);
    st_int(&st, 3, f->limit && f->limit <= INT64_MAX ? (int64_t)f->limit : -1);
    st_int(&st, 4, f->with_body ? 1 : 0);
    for (;;) {
        rc = st_step(&st, err);
        if (rc <= 0)
            break;
        memset(&s, 0, sizeof(s));
        rc = read_session(ib->rdb, st.st, &s, err);
        if (rc >= 0)
            rc = fn(ud, &s);
        vh_inbox_session_release(&s);
        if (rc < 0)
            break;
    }
    st_end(&st);
end:
    sqlite3_exec(ib->rdb, "COMMIT", NULL, NULL, NULL);
unlock:
    pthread_mutex_unlock(&ib->rmu);
    return rc < 0 ? rc : 0;
}

int vh_inbox_get(struct vh_inbox *ib, const char *session_id, struct vh_inbox_session *out,
                 struct vh_error *err)
{
    struct vh_inbox_session s;
    struct stmt st;
    int rc;

    memset(&s, 0, sizeof(s));
    pthread_mutex_lock(&ib->rmu);
    rc = exec_sql(ib->rdb, "BEGIN", "get session", err);
    if (rc < 0)
        goto unlock;
    rc = st_prepare(&st, ib->rdb, sql_get, "get session", err);
    if (rc < 0)
        goto end;
    st_text(&st, 1, session_id);
    rc = st_step(&st, err);
    if (rc == 0)
        rc = vh_error_set(err, VH_ENOTFOUND, "session '%.64s': not in the inbox", session_id);
    if (rc > 0)
        rc = read_session(ib->rdb, st.st, &s, err);
    st_end(&st);
end:
    sqlite3_exec(ib->rdb, "COMMIT", NULL, NULL, NULL);
unlock:
    pthread_mutex_unlock(&ib->rmu);
    if (rc < 0) {
        vh_inbox_session_release(&s);
        return rc;
    }
    *out = s;
    return 0;
}
