/*
 * The inbox's deduplication (src/receive/inbox.c, "Deduplication") on real SQLite files: the
 * keys of the latest sessions in the tail, their merge into session_keys, a reopen that loads
 * the tail again, two handles on one file, and the upgrade from version 1 (a UNIQUE index)
 * to the latest (jobs found per kind, version 4).
 * The tables are read back with SQLite directly, so a key lost between the two places fails.
 */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <semaphore.h>
#include <unistd.h>

#include <cmocka.h>

#include <sqlite3.h>

#include <vocohook/alloc.h>
#include <vocohook/receive.h>

#include "receive/receive_int.h"
#include "unit/wait.h"
#include "core/banned.h"

#define T0 INT64_C(1773585128000)
#define N  8000 /* enough for one whole merge: it starts at 4096 keys */

struct fx {
    char dir[64];
    char path[96];
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "/tmp/vh-dedupe-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/inbox.db", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    char cmd[128];

    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

/* Session i's id: the ids do not arrive in key order (i * an odd constant is a bijection). */
static void sid_of(unsigned i, char *out, size_t cap)
{
    snprintf(out, cap, "s-%08x", i * 2654435761u);
}

/* Posted puts of sessions [from, to), all answered before it returns. */
struct batch {
    pthread_mutex_t mu;
    sem_t all;
    int total, answered, created, failed;
};

static void on_done(void *ud, int rc, bool created, const struct vh_error *err)
{
    struct batch *b = ud;

    (void)err;
    pthread_mutex_lock(&b->mu);
    b->created += rc == 0 && created;
    b->failed += rc < 0;
    if (++b->answered == b->total)
        sem_post(&b->all);
    pthread_mutex_unlock(&b->mu);
}

/* Posts puts of sessions [from, to) with body "copy N"; returns how many were created. */
static int put_range(struct vh_inbox *ib, unsigned from, unsigned to, int copy)
{
    struct strs {
        char sid[32], body[64];
    } *str = calloc(to - from, sizeof(*str)); /* the queue copies the put, not its strings */
    struct vh__inbox_put p;
    struct batch b;
    unsigned i;

    assert_non_null(str);
    memset(&b, 0, sizeof(b));
    assert_int_equal(pthread_mutex_init(&b.mu, NULL), 0);
    assert_int_equal(sem_init(&b.all, 0, 0), 0);
    b.total = (int)(to - from);
    for (i = from; i < to; i++) {
        struct strs *x = &str[i - from];

        sid_of(i, x->sid, sizeof(x->sid));
        snprintf(x->body, sizeof(x->body), "{\"session\":\"%s\",\"copy\":%d}", x->sid, copy);
        memset(&p, 0, sizeof(p));
        p.session_id = x->sid;
        p.body = x->body;
        p.body_len = strlen(x->body);
        p.signed_at = "2026-03-15T14:32:08.000Z";
        p.signature = "sha256=00";
        p.event_ms = T0;
        p.received_ms = T0 + i;
        assert_int_equal(vh__inbox_put_post(ib, &p, on_done, &b, NULL), 0);
    }
    assert_true(wait_sem(&b.all));
    assert_int_equal(b.failed, 0);
    /* The last answer may still be leaving the lock. */
    pthread_mutex_lock(&b.mu);
    pthread_mutex_unlock(&b.mu);
    sem_destroy(&b.all);
    pthread_mutex_destroy(&b.mu);
    free(str);
    return b.created;
}

static int64_t count(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st;
    int64_t n;

    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return n;
}

static void first_copy_stays(struct vh_inbox *ib, unsigned i)
{
    struct vh_inbox_session s;
    char sid[32], body[64];

    sid_of(i, sid, sizeof(sid));
    snprintf(body, sizeof(body), "{\"session\":\"%s\",\"copy\":1}", sid);
    assert_int_equal(vh_inbox_get(ib, sid, &s, NULL), 0);
    assert_string_equal(s.body.data, body);
    assert_int_equal(s.received_ms, T0 + i);
    vh_inbox_session_release(&s);
}

/* Every stored session's key is in session_keys or in session_tail, with its row id. */
static void every_key_is_kept(sqlite3 *db)
{
    assert_int_equal(count(db, "SELECT count(*) FROM sessions AS s WHERE NOT EXISTS (SELECT 1"
                               " FROM session_keys AS k WHERE k.session_id = s.session_id AND"
                               " k.id = s.id) AND NOT EXISTS (SELECT 1 FROM session_tail AS t"
                               " WHERE t.id = s.id AND t.session_id = s.session_id)"),
                     0);
    /* and neither holds a key of no session */
    assert_int_equal(count(db, "SELECT count(*) FROM session_keys AS k LEFT JOIN sessions AS s"
                               " ON s.id = k.id WHERE s.session_id IS NOT k.session_id"),
                     0);
    assert_int_equal(count(db, "SELECT count(*) FROM session_tail AS t LEFT JOIN sessions AS s"
                               " ON s.id = t.id WHERE s.session_id IS NOT t.session_id"),
                     0);
}

/* The i of the session `sql` picks (it selects received_ms, which is T0 + i). */
static unsigned one_in(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st;
    unsigned i;

    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    i = (unsigned)(sqlite3_column_int64(st, 0) - T0); /* received_ms = T0 + i */
    sqlite3_finalize(st);
    return i;
}

static void merged_and_recent_keys_both_dedupe(void **state)
{
    struct fx *f = *state;
    struct vh_inbox *ib;
    unsigned merged, recent;
    sqlite3 *db;

    assert_int_equal(vh_inbox_open(f->path, VH_INBOX_CREATE, &ib, NULL), 0);
    assert_int_equal(put_range(ib, 0, N, 1), N);
    assert_int_equal(sqlite3_open_v2(f->path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(count(db, "SELECT count(*) FROM sessions"), N);
    assert_int_equal(count(db, "SELECT count(DISTINCT session_id) FROM sessions"), N);
    /* A merge ran to its end: its keys left the tail. */
    assert_true(count(db, "SELECT count(*) FROM session_keys") >= 4096);
    assert_true(count(db, "SELECT count(*) FROM session_tail") < N);
    every_key_is_kept(db);
    merged = one_in(db, "SELECT received_ms FROM sessions WHERE id = (SELECT min(k.id) FROM"
                        " session_keys AS k WHERE k.id NOT IN (SELECT id FROM session_tail))");
    recent = one_in(db, "SELECT received_ms FROM sessions WHERE id = (SELECT max(t.id) FROM"
                        " session_tail AS t WHERE t.id NOT IN (SELECT id FROM session_keys))");

    /* Every second copy is a duplicate, wherever its key is, and the first copy stays. */
    assert_int_equal(put_range(ib, 0, N, 2), 0);
    assert_int_equal(count(db, "SELECT count(*) FROM sessions"), N);
    first_copy_stays(ib, merged);
    first_copy_stays(ib, recent);
    vh_inbox_close(ib);

    /* Reopened, the tail is loaded from the file: still duplicates, and new ones are new. */
    assert_int_equal(vh_inbox_open(f->path, 0, &ib, NULL), 0);
    assert_int_equal(put_range(ib, 0, N, 3), 0);
    assert_int_equal(put_range(ib, N, N + 100, 1), 100);
    first_copy_stays(ib, merged);
    first_copy_stays(ib, recent);
    first_copy_stays(ib, N + 99);
    vh_inbox_close(ib);
    assert_int_equal(count(db, "SELECT count(*) FROM sessions"), N + 100);
    every_key_is_kept(db);
    sqlite3_close(db);
}

/* A put of session `sid` with an empty object for a body. */
static void put_fill(struct vh__inbox_put *p, const char *sid)
{
    memset(p, 0, sizeof(*p));
    p->session_id = sid;
    p->body = "{}";
    p->body_len = 2;
    p->signed_at = "2026-03-15T14:32:08.000Z";
    p->signature = "sha256=00";
    p->event_ms = T0;
    p->received_ms = T0;
}

static void put_one(struct vh_inbox *ib, const char *sid, bool want_created)
{
    struct vh__inbox_put p;
    bool created = !want_created;

    put_fill(&p, sid);
    assert_int_equal(vh__inbox_put(ib, &p, &created, NULL), 0);
    assert_int_equal(created, want_created);
}

/* Two receivers on one file: each loads what the other stored before it writes. */
static void two_handles_on_one_file(void **state)
{
    struct fx *f = *state;
    struct vh_inbox *a, *b;
    int64_t n = 0;

    assert_int_equal(vh_inbox_open(f->path, VH_INBOX_CREATE, &a, NULL), 0);
    assert_int_equal(vh_inbox_open(f->path, 0, &b, NULL), 0);
    put_one(a, "first", true);
    put_one(b, "first", false);
    put_one(b, "second", true);
    put_one(a, "second", false);
    put_one(a, "third", true);
    put_one(b, "third", false);
    assert_int_equal(vh_inbox_count(a, &n, NULL), 0);
    assert_int_equal(n, 3);
    vh_inbox_close(a);
    vh_inbox_close(b);
}

/* Version 1 of the inbox, as its migration made it. */
static const char v1_schema[] =
    "PRAGMA application_id = 1986554210;"
    "CREATE TABLE sessions (id INTEGER PRIMARY KEY, session_id TEXT NOT NULL UNIQUE,"
    " body BLOB NOT NULL, signed_at TEXT NOT NULL, signature TEXT NOT NULL, webhook_id TEXT,"
    " event_ms INTEGER NOT NULL, received_ms INTEGER NOT NULL, recording_url TEXT) STRICT;"
    "CREATE INDEX sessions_received ON sessions(received_ms);"
    "CREATE TABLE jobs (session_id TEXT NOT NULL REFERENCES sessions(session_id),"
    " kind TEXT NOT NULL CHECK (kind IN ('download', 'exec', 'forward')),"
    " state TEXT NOT NULL CHECK (state IN ('pending', 'running', 'done', 'failed', 'expired')),"
    " attempts INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),"
    " next_attempt_ms INTEGER NOT NULL, deadline_ms INTEGER NOT NULL,"
    " updated_ms INTEGER NOT NULL, status INTEGER, error TEXT, path TEXT, size INTEGER,"
    " sha256 TEXT, PRIMARY KEY (session_id, kind)) STRICT;"
    "CREATE INDEX jobs_due ON jobs(state, next_attempt_ms);"
    "INSERT INTO sessions (id, session_id, body, signed_at, signature, event_ms, received_ms,"
    " recording_url) VALUES"
    " (7, 'old-b', CAST('{\"b\":1}' AS BLOB), '2026-03-15T14:32:08.000Z', 'sha256=00', 1, 1773585128000,"
    " NULL),"
    " (9, 'old-a', CAST('{\"a\":1}' AS BLOB), '2026-03-15T14:32:08.000Z', 'sha256=00', 1, 1773585128001,"
    " 'https://h/a.wav');"
    "INSERT INTO jobs (session_id, kind, state, next_attempt_ms, deadline_ms, updated_ms)"
    " VALUES ('old-a', 'download', 'pending', 1773585128000, 1773585129000, 1773585128000);"
    "PRAGMA user_version = 1;";

static void make_v1(const char *path, const char *extra)
{
    sqlite3 *db;

    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, v1_schema, NULL, NULL, NULL), SQLITE_OK);
    if (extra)
        assert_int_equal(sqlite3_exec(db, extra, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
}

static void upgrade_from_version_1(void **state)
{
    struct fx *f = *state;
    struct vh_inbox_session s;
    struct vh_inbox *ib;
    struct vh__job j;
    sqlite3 *db;

    /* An exec job due a second before old-a's download. */
    make_v1(f->path, "INSERT INTO jobs (session_id, kind, state, next_attempt_ms, deadline_ms,"
                     " updated_ms) VALUES ('old-b', 'exec', 'pending', 1773585127000,"
                     " 1773585129000, 1773585127000);");
    assert_int_equal(vh_inbox_open(f->path, 0, &ib, NULL), 0);
    assert_int_equal(sqlite3_open_v2(f->path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(count(db, "PRAGMA user_version"), 4);
    /* Version 3: the put adds its key to the tail, no trigger does. */
    assert_int_equal(count(db, "SELECT count(*) FROM sqlite_schema WHERE type = 'trigger'"), 0);
    assert_int_equal(count(db, "SELECT count(*) FROM pragma_index_list('sessions')"
                               " WHERE \"unique\""),
                     0);
    assert_int_equal(count(db, "SELECT count(*) FROM session_keys"), 2);
    assert_int_equal(count(db, "SELECT id FROM session_keys WHERE session_id = 'old-a'"), 9);
    assert_int_equal(count(db, "SELECT count(*) FROM session_tail"), 0);
    assert_int_equal(count(db, "SELECT sid FROM jobs WHERE session_id = 'old-a'"), 9);
    /* Jobs are keyed by their session's row id: a new session's jobs append. */
    assert_int_equal(count(db, "SELECT count(*) FROM pragma_index_list('jobs') AS l,"
                               " pragma_index_info(l.name) AS i WHERE l.origin = 'pk' AND"
                               " ((i.seqno = 0 AND i.name = 'sid') OR"
                               " (i.seqno = 1 AND i.name = 'kind'))"),
                     2);
    /* Version 4: each kind's due jobs have an index of their own; jobs_due is gone. */
    assert_int_equal(count(db, "SELECT count(*) FROM pragma_index_list('jobs') WHERE"
                               " name = 'jobs_due'"),
                     0);
    assert_int_equal(count(db, "SELECT count(*) FROM pragma_index_info('jobs_kind_due') WHERE"
                               " (seqno = 0 AND name = 'state') OR (seqno = 1 AND name = 'kind')"
                               " OR (seqno = 2 AND name = 'next_attempt_ms')"),
                     3);

    /* The old sessions read back and deduplicate; the job reaches its body by row id. */
    assert_int_equal(vh_inbox_get(ib, "old-a", &s, NULL), 0);
    assert_string_equal(s.body.data, "{\"a\":1}");
    assert_int_equal(s.recording, VH_RECORDING_PENDING);
    assert_int_equal(s.n_jobs, 1);
    vh_inbox_session_release(&s);
    put_one(ib, "old-b", false);
    put_one(ib, "new", true);
    assert_int_equal(count(db, "SELECT id FROM session_tail WHERE session_id = 'new'"), 10);
    assert_int_equal(vh__inbox_claim(ib, T0, &j, NULL), 1);
    assert_string_equal(j.session_id, "old-a");
    assert_string_equal(j.body.data, "{\"a\":1}");
    assert_string_equal(j.recording_url, "https://h/a.wav");
    vh__job_release(&j);
    /* The download went first; the exec job due before it comes next. */
    assert_int_equal(vh__inbox_claim(ib, T0, &j, NULL), 1);
    assert_string_equal(j.session_id, "old-b");
    assert_int_equal(j.kind, VH_JOB_EXEC);
    vh__job_release(&j);
    vh_inbox_close(ib);
    sqlite3_close(db);
}

/*
 * A put whose key cannot go into the tail stores nothing: a row of the tail (written by hand,
 * as a damaged file could hold) takes the id the next session gets, so its key's insert
 * fails, and the session row goes with it. The put fails, naming the step; the next put with
 * the row gone stores the session, once.
 */
static void a_put_whose_key_fails_stores_nothing(void **state)
{
    struct fx *f = *state;
    struct vh_error err = VH_ERROR_INIT;
    struct vh__inbox_put p;
    struct vh_inbox *ib;
    bool created;
    sqlite3 *db;

    assert_int_equal(vh_inbox_open(f->path, VH_INBOX_CREATE, &ib, NULL), 0);
    put_one(ib, "before", true);
    assert_int_equal(sqlite3_open_v2(f->path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db,
                                  "INSERT INTO session_tail (id, session_id)"
                                  " SELECT max(id) + 1, 'squatter' FROM sessions",
                                  NULL, NULL, NULL),
                     SQLITE_OK);

    put_fill(&p, "victim");
    assert_true(vh__inbox_put(ib, &p, &created, &err) < 0);
    if (!strstr(err.msg, "insert session key"))
        fail_msg("unexpected error: %s", err.msg);
    assert_int_equal(count(db, "SELECT count(*) FROM sessions WHERE session_id = 'victim'"), 0);
    assert_int_equal(count(db, "SELECT count(*) FROM sessions"), 1);

    assert_int_equal(sqlite3_exec(db, "DELETE FROM session_tail WHERE session_id = 'squatter'",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    put_one(ib, "victim", true);
    put_one(ib, "victim", false);
    assert_int_equal(count(db, "SELECT count(*) FROM sessions WHERE session_id = 'victim'"), 1);
    every_key_is_kept(db);
    vh_inbox_close(ib);
    sqlite3_close(db);
}

/* A job whose session is missing fails the step, and version 1 stays as it was. */
static void upgrade_refuses_a_job_without_session(void **state)
{
    struct fx *f = *state;
    struct vh_error err = VH_ERROR_INIT;
    struct vh_inbox *ib = NULL;
    sqlite3 *db;

    make_v1(f->path, "PRAGMA foreign_keys = OFF; INSERT INTO jobs (session_id, kind, state,"
                     " next_attempt_ms, deadline_ms, updated_ms) VALUES ('gone', 'exec',"
                     " 'pending', 1, 2, 1);");
    assert_int_equal(vh_inbox_open(f->path, 0, &ib, &err), VH_ESTORE);
    assert_null(ib);
    assert_non_null(strstr(err.msg, "NOT NULL"));
    assert_int_equal(sqlite3_open_v2(f->path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(count(db, "PRAGMA user_version"), 1);
    assert_int_equal(count(db, "SELECT count(*) FROM sessions"), 2);
    assert_int_equal(count(db, "SELECT count(*) FROM jobs"), 2);
    sqlite3_close(db);
}

/*
 * While set, the library's allocations of 32 to 64 KiB fail: the key array of a merge of
 * 4096 to 8191 keys. The dedupe set's own array has room for twice its keys, in a power
 * of two: 64 KiB from 2049 keys, 128 KiB from 4097, so it is out of that range while the
 * tail holds 2049 to 4096 keys and past it after. Installed for the whole program
 * (vh_replace_allocator wants that), and plain malloc while clear.
 */
static atomic_bool fail_merge_array;

static bool merge_sized(size_t n)
{
    return atomic_load(&fail_merge_array) && n >= 32768 && n < 65536;
}

static void *hook_malloc(size_t n)
{
    return merge_sized(n) ? NULL : malloc(n);
}

static void *hook_realloc(void *p, size_t n)
{
    return merge_sized(n) ? NULL : realloc(p, n);
}

static void hook_free(void *p)
{
    free(p);
}

/* A merge that cannot get its key array waits for a later batch; the puts go on. */
static void a_merge_without_memory_waits_for_a_later_batch(void **state)
{
    struct fx *f = *state;
    struct vh_inbox *ib;
    sqlite3 *db;

    assert_int_equal(vh_inbox_open(f->path, VH_INBOX_CREATE, &ib, NULL), 0);
    assert_int_equal(put_range(ib, 0, 3000, 1), 3000);
    atomic_store(&fail_merge_array, true);
    /* Every put is stored (put_range asserts none failed), and no merge has begun. */
    assert_int_equal(put_range(ib, 3000, 5000, 1), 2000);
    assert_int_equal(sqlite3_open_v2(f->path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(count(db, "SELECT count(*) FROM session_keys"), 0);
    assert_int_equal(count(db, "SELECT count(*) FROM session_tail"), 5000);
    assert_int_equal(put_range(ib, 0, 5000, 2), 0);
    atomic_store(&fail_merge_array, false);
    /* With the memory back, the next batches begin the merge. */
    assert_int_equal(put_range(ib, 5000, 5100, 1), 100);
    assert_true(count(db, "SELECT count(*) FROM session_keys") > 0);
    assert_int_equal(count(db, "SELECT count(*) FROM sessions"), 5100);
    every_key_is_kept(db);
    vh_inbox_close(ib);
    sqlite3_close(db);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(merged_and_recent_keys_both_dedupe, setup, teardown),
        cmocka_unit_test_setup_teardown(two_handles_on_one_file, setup, teardown),
        cmocka_unit_test_setup_teardown(upgrade_from_version_1, setup, teardown),
        cmocka_unit_test_setup_teardown(upgrade_refuses_a_job_without_session, setup, teardown),
        cmocka_unit_test_setup_teardown(a_put_whose_key_fails_stores_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(a_merge_without_memory_waits_for_a_later_batch, setup,
                                        teardown),
    };

    if (vh_replace_allocator(hook_malloc, hook_realloc, hook_free) != 0)
        return 1;

    return cmocka_run_group_tests(tests, NULL, NULL);
}
