/*
 * The inbox (src/receive/inbox.c) on a real SQLite file in a temp dir: deduplication, job
 * claims and their order (downloads first), the state checks on finish, recovery after a
 * crash, the read side, and the group commit under threads, for sync puts and for posted
 * ones.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include <sqlite3.h>

#include <vocohook/receive.h>

#include "receive/receive_int.h"
#include "unit/wait.h"
#include "core/banned.h"

#define T0 INT64_C(1773585128000)

struct fx {
    char dir[64];
    char path[96];
    struct vh_inbox *ib;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "/tmp/vh-inbox-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/inbox.db", f->dir);
    assert_int_equal(vh_inbox_open(f->path, VH_INBOX_CREATE, &f->ib, NULL), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    char cmd[128];

    vh_inbox_close(f->ib);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

/* A put with what every stored webhook needs, received at `received_ms`, no jobs. */
static void put_init(struct vh__inbox_put *p, const char *sid, const char *body,
                     int64_t received_ms)
{
    memset(p, 0, sizeof(*p));
    p->session_id = sid;
    p->body = body;
    p->body_len = strlen(body);
    p->signed_at = "2026-03-15T14:32:08.000Z";
    p->signature = "sha256=00";
    p->received_ms = received_ms;
}

static void put(struct vh_inbox *ib, const char *sid, const char *url, int64_t now, size_t n_jobs,
                bool want_created)
{
    struct vh_error err = VH_ERROR_INIT;
    struct vh__inbox_put p;
    char body[128];
    bool created = !want_created;
    size_t i;

    snprintf(body, sizeof(body), "{\"session\":\"%s\"}", sid);
    put_init(&p, sid, body, now);
    p.recording_url = url;
    p.event_ms = T0;
    for (i = 0; i < n_jobs; i++) {
        p.jobs[i].kind = (enum vh_job_kind)(VH_JOB_DOWNLOAD + (int)i);
        p.jobs[i].next_attempt_ms = now;
        p.jobs[i].deadline_ms = now + 1000;
    }
    p.n_jobs = n_jobs;
    assert_int_equal(vh__inbox_put(ib, &p, &created, &err), 0);
    assert_int_equal(created, want_created);
}

static void open_rules(void **state)
{
    struct fx *f = *state;
    struct vh_error err = VH_ERROR_INIT;
    struct vh_inbox *ib = NULL;
    char other[128];
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    struct stat sb;
    FILE *fp;

    assert_int_equal(stat(f->path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    snprintf(other, sizeof(other), "%s/missing.db", f->dir);
    assert_int_equal(vh_inbox_open(other, 0, &ib, &err), VH_ENOTFOUND);
    assert_null(ib);
    assert_int_equal(vh_inbox_open(other, 8, &ib, NULL), VH_EINVAL);
    /* Reopening an inbox is fine; a file that is not one is refused. */
    assert_int_equal(vh_inbox_open(f->path, 0, &ib, NULL), 0);
    vh_inbox_close(ib);
    snprintf(other, sizeof(other), "%s/junk.db", f->dir);
    fp = fopen(other, "w");
    assert_non_null(fp);
    fputs("this is not a database, just some text that is long enough to look like a file", fp);
    fclose(fp);
    vh_error_clear(&err);
    assert_int_equal(vh_inbox_open(other, 0, &ib, &err), VH_ESTORE);
    vh_inbox_close(NULL);
    /* Another program's SQLite file gets nothing added, even with VH_INBOX_CREATE. */
    snprintf(other, sizeof(other), "%s/app.db", f->dir);
    assert_int_equal(sqlite3_open(other, &db), SQLITE_OK);
    assert_int_equal(
        sqlite3_exec(db, "CREATE TABLE users (id INTEGER PRIMARY KEY)", NULL, NULL, NULL),
        SQLITE_OK);
    sqlite3_close(db);
    vh_error_clear(&err);
    assert_int_equal(vh_inbox_open(other, VH_INBOX_CREATE, &ib, &err), VH_ESTORE);
    assert_non_null(strstr(err.msg, "not a vocohook inbox"));
    assert_int_equal(sqlite3_open(other, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT count(*) FROM sqlite_schema", -1, &st, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(st, 0), 1);
    sqlite3_finalize(st);
    sqlite3_close(db);
    /* An empty file becomes an inbox only when it may be created, never for a reader. */
    snprintf(other, sizeof(other), "%s/empty.db", f->dir);
    fp = fopen(other, "w");
    assert_non_null(fp);
    fclose(fp);
    assert_int_equal(vh_inbox_open(other, 0, &ib, NULL), VH_ENOTFOUND);
    assert_int_equal(stat(other, &sb), 0);
    assert_int_equal(sb.st_size, 0);
    assert_int_equal(vh_inbox_open(other, VH_INBOX_CREATE, &ib, NULL), 0);
    vh_inbox_close(ib);
}

/* The file's page size, read with SQLite itself. */
static int page_size_of(const char *path)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int n;

    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA page_size", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    n = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

/*
 * A new inbox has 8 KiB pages (three stored webhooks a page, not one in 4 KiB); a file that
 * already has 4 KiB pages keeps them, and works.
 */
/* A posted put's callback that must not run. */
static void never_done(void *ud, int rc, bool created, const struct vh_error *err)
{
    (void)rc;
    (void)created;
    (void)err;
    (*(int *)ud)++;
}

/* More jobs than a session can have: refused before anything is queued, by both forms. */
static void too_many_jobs(void **state)
{
    struct fx *f = *state;
    struct vh_error err = VH_ERROR_INIT;
    struct vh__inbox_put p;
    bool created = false;
    int calls = 0;
    int64_t n = -1;

    put_init(&p, "s_jobs", "{}", T0);
    p.n_jobs = VH_INBOX_JOBS_MAX + 1; /* checked before any job is read */
    assert_int_equal(vh__inbox_put(f->ib, &p, &created, &err), VH_EINVAL);
    assert_non_null(strstr(err.msg, "too many jobs"));
    vh_error_clear(&err);
    assert_int_equal(vh__inbox_put_post(f->ib, &p, never_done, &calls, &err), VH_EINVAL);
    assert_non_null(strstr(err.msg, "too many jobs"));
    vh_inbox_close(f->ib); /* answers every posted put: none was queued */
    f->ib = NULL;
    assert_int_equal(calls, 0);
    assert_int_equal(vh_inbox_open(f->path, 0, &f->ib, NULL), 0);
    assert_int_equal(vh_inbox_count(f->ib, &n, NULL), 0);
    assert_int_equal(n, 0);
}

static void page_sizes(void **state)
{
    struct fx *f = *state;
    struct vh__inbox_put p;
    struct vh_inbox *ib = NULL;
    sqlite3 *db = NULL;
    char old[128];
    bool created = false;
    int64_t n = 0;

    assert_int_equal(page_size_of(f->path), 8192);
    snprintf(old, sizeof(old), "%s/old.db", f->dir);
    assert_int_equal(sqlite3_open(old, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "PRAGMA page_size = 4096; CREATE TABLE t (a); DROP TABLE t;",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    assert_int_equal(vh_inbox_open(old, VH_INBOX_CREATE, &ib, NULL), 0);
    put_init(&p, "s_old", "{}", T0);
    assert_int_equal(vh__inbox_put(ib, &p, &created, NULL), 0);
    assert_true(created);
    assert_int_equal(vh_inbox_count(ib, &n, NULL), 0);
    assert_int_equal(n, 1);
    vh_inbox_close(ib);
    assert_int_equal(page_size_of(old), 4096);
}

static void dedupe(void **state)
{
    struct fx *f = *state;
    struct vh_inbox_session s;
    int64_t n = 0;

    put(f->ib, "s1", "https://h/a.wav", T0, 2, true);
    put(f->ib, "s1", NULL, T0 + 1, 0, false);
    put(f->ib, "s2", NULL, T0 + 2, 0, true);
    assert_int_equal(vh_inbox_count(f->ib, &n, NULL), 0);
    assert_int_equal(n, 2);
    assert_int_equal(vh__inbox_unfinished(f->ib, &n, NULL), 0);
    assert_int_equal(n, 2);
    /* The first copy stays, with its jobs. */
    assert_int_equal(vh_inbox_get(f->ib, "s1", &s, NULL), 0);
    assert_int_equal(s.received_ms, T0);
    assert_int_equal(s.n_jobs, 2);
    assert_int_equal(s.recording, VH_RECORDING_PENDING);
    assert_string_equal(s.body.data, "{\"session\":\"s1\"}");
    vh_inbox_session_release(&s);
    assert_int_equal(vh_inbox_get(f->ib, "s2", &s, NULL), 0);
    assert_int_equal(s.recording, VH_RECORDING_NONE);
    vh_inbox_session_release(&s);
    assert_int_equal(vh_inbox_get(f->ib, "nope", &s, NULL), VH_ENOTFOUND);
}

/* A session's row id, read from the file: what vh__inbox_finish takes. */
static int64_t sid_of(const struct fx *f, const char *session_id)
{
    sqlite3_stmt *st;
    sqlite3 *db;
    int64_t id;

    assert_int_equal(sqlite3_open_v2(f->path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(
        sqlite3_prepare_v2(db, "SELECT id FROM sessions WHERE session_id = ?1", -1, &st, NULL),
        SQLITE_OK);
    sqlite3_bind_text(st, 1, session_id, -1, SQLITE_STATIC);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    id = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return id;
}

static void claim_finish_recover(void **state)
{
    struct fx *f = *state;
    struct vh_error err = VH_ERROR_INIT;
    struct vh__job_update u;
    struct vh__job j;
    struct vh_inbox_session s;
    int64_t due = 0, n = 0, late, early;

    put(f->ib, "late", "https://h/late.wav", T0 + 100, 1, true);
    put(f->ib, "early", "https://h/early.wav", T0, 1, true);
    late = sid_of(f, "late");
    early = sid_of(f, "early");
    /* Nothing due before T0. */
    assert_int_equal(vh__inbox_claim(f->ib, T0 - 1, &j, NULL), 0);
    vh__job_release(&j);
    assert_int_equal(vh__inbox_next_due(f->ib, &due, NULL), 1);
    assert_int_equal(due, T0);
    /* The one due longest first, with what its attempt needs. */
    assert_int_equal(vh__inbox_claim(f->ib, T0 + 100, &j, NULL), 1);
    assert_string_equal(j.session_id, "early");
    assert_int_equal(j.sid, early);
    assert_int_equal(j.kind, VH_JOB_DOWNLOAD);
    assert_int_equal(j.attempts, 0);
    assert_int_equal(j.deadline_ms, T0 + 1000);
    assert_string_equal(j.recording_url, "https://h/early.wav");
    assert_string_equal(j.signed_at, "2026-03-15T14:32:08.000Z");
    assert_string_equal(j.body.data, "{\"session\":\"early\"}");
    vh__job_release(&j);
    assert_int_equal(vh_inbox_get(f->ib, "early", &s, NULL), 0);
    assert_int_equal(s.recording, VH_RECORDING_DOWNLOADING);
    vh_inbox_session_release(&s);

    /* Finish: illegal target states and jobs that are not running are refused. */
    memset(&u, 0, sizeof(u));
    u.state = VH_JOB_RUNNING;
    assert_int_equal(vh__inbox_finish(f->ib, early, "early", VH_JOB_DOWNLOAD, &u, T0, &err),
                     VH_ESTATE);
    u.state = VH_JOB_PENDING;
    u.attempts = 1;
    u.next_attempt_ms = T0 + 500;
    snprintf(u.error, sizeof(u.error), "HTTP 503");
    u.status = 503;
    assert_int_equal(vh__inbox_finish(f->ib, late, "late", VH_JOB_DOWNLOAD, &u, T0, NULL),
                     VH_ESTATE);
    assert_int_equal(vh__inbox_finish(f->ib, early, "early", VH_JOB_DOWNLOAD, &u, T0, NULL), 0);
    assert_int_equal(vh__inbox_finish(f->ib, early, "early", VH_JOB_DOWNLOAD, &u, T0, NULL),
                     VH_ESTATE);

    /* A crash with a job running: recovery puts it back, due now. */
    assert_int_equal(vh__inbox_claim(f->ib, T0 + 100, &j, NULL), 1);
    assert_string_equal(j.session_id, "late");
    vh__job_release(&j);
    assert_int_equal(vh__inbox_recover(f->ib, T0 + 200, &n, NULL), 0);
    assert_int_equal(n, 1);
    assert_int_equal(vh__inbox_recover(f->ib, T0 + 200, &n, NULL), 0);
    assert_int_equal(n, 0);

    /* Done, with the file's details. */
    assert_int_equal(vh__inbox_claim(f->ib, T0 + 600, &j, NULL), 1);
    assert_string_equal(j.session_id, "late"); /* due at T0 + 200, before early's T0 + 500 */
    vh__job_release(&j);
    memset(&u, 0, sizeof(u));
    u.state = VH_JOB_DONE;
    u.attempts = 1;
    u.status = 200;
    u.path = "/rec/late.wav";
    u.size = 12345;
    u.sha256 = "ab";
    assert_int_equal(vh__inbox_finish(f->ib, late, "late", VH_JOB_DOWNLOAD, &u, T0 + 700, NULL), 0);
    assert_int_equal(vh_inbox_get(f->ib, "late", &s, NULL), 0);
    assert_int_equal(s.recording, VH_RECORDING_DOWNLOADED);
    assert_int_equal(s.jobs[0].state, VH_JOB_DONE);
    assert_string_equal(s.jobs[0].path, "/rec/late.wav");
    assert_int_equal(s.jobs[0].size, 12345);
    assert_string_equal(s.jobs[0].sha256, "ab");
    assert_int_equal(s.jobs[0].status, 200);
    assert_string_equal(s.jobs[0].error, "");
    vh_inbox_session_release(&s);
    assert_int_equal(vh__inbox_next_due(f->ib, &due, NULL), 1);
    assert_int_equal(due, T0 + 500);
}

/* Claims one job at `now`, which must be `kind` of `session_id`. */
static void claim_is(struct vh_inbox *ib, int64_t now, const char *session_id,
                     enum vh_job_kind kind)
{
    struct vh__job j;

    assert_int_equal(vh__inbox_claim(ib, now, &j, NULL), 1);
    assert_string_equal(j.session_id, session_id);
    assert_int_equal(j.kind, kind);
    vh__job_release(&j);
}

static void claim_none(struct vh_inbox *ib, int64_t now)
{
    struct vh__job j;

    assert_int_equal(vh__inbox_claim(ib, now, &j, NULL), 0);
    vh__job_release(&j);
}

/*
 * A due download is claimed before every other job, however long those have been due; the
 * others go by due time, then arrival, whatever their kind. A start that does not run a
 * kind leaves its jobs, and its next due time does not count them.
 */
static void claims_take_downloads_first(void **state)
{
    struct fx *f = *state;
    int64_t due = 0;

    put(f->ib, "a", "https://h/a.wav", T0 + 5, 3, true); /* download, exec, forward */
    put(f->ib, "b", "https://h/b.wav", T0, 3, true);     /* stored after a, due before it */
    put(f->ib, "c", "https://h/c.wav", T0 + 20, 1, true);
    assert_int_equal(vh__inbox_next_due(f->ib, &due, NULL), 1);
    assert_int_equal(due, T0);
    claim_is(f->ib, T0 + 10, "b", VH_JOB_DOWNLOAD);
    claim_is(f->ib, T0 + 10, "a", VH_JOB_DOWNLOAD);
    claim_is(f->ib, T0 + 10, "b", VH_JOB_EXEC);
    /* c's download falls due: it goes before the jobs due since T0 and T0 + 5. */
    claim_is(f->ib, T0 + 20, "c", VH_JOB_DOWNLOAD);
    claim_is(f->ib, T0 + 20, "b", VH_JOB_FORWARD);
    claim_is(f->ib, T0 + 20, "a", VH_JOB_EXEC);
    claim_is(f->ib, T0 + 20, "a", VH_JOB_FORWARD);
    claim_none(f->ib, T0 + 20);
    assert_int_equal(vh__inbox_next_due(f->ib, &due, NULL), 0);

    put(f->ib, "d", "https://h/d.wav", T0 + 30, 3, true);
    put(f->ib, "e", "https://h/e.wav", T0 + 25, 1, true);
    vh__inbox_set_kinds(f->ib, 1u << VH_JOB_EXEC | 1u << VH_JOB_FORWARD);
    assert_int_equal(vh__inbox_next_due(f->ib, &due, NULL), 1);
    assert_int_equal(due, T0 + 30);
    claim_none(f->ib, T0 + 29);
    claim_is(f->ib, T0 + 40, "d", VH_JOB_EXEC);
    claim_is(f->ib, T0 + 40, "d", VH_JOB_FORWARD);
    claim_none(f->ib, T0 + 40);
    assert_int_equal(vh__inbox_next_due(f->ib, &due, NULL), 0);
    vh__inbox_set_kinds(f->ib, 1u << VH_JOB_DOWNLOAD);
    assert_int_equal(vh__inbox_next_due(f->ib, &due, NULL), 1);
    assert_int_equal(due, T0 + 25);
    claim_is(f->ib, T0 + 40, "e", VH_JOB_DOWNLOAD);
    claim_is(f->ib, T0 + 40, "d", VH_JOB_DOWNLOAD);
    claim_none(f->ib, T0 + 40);
}

struct seen {
    char ids[8][VH_ID_MAX + 1];
    size_t n;
    bool bodies;
};

static int collect(void *ud, const struct vh_inbox_session *s)
{
    struct seen *seen = ud;

    if (seen->n == 8)
        return -42;
    snprintf(seen->ids[seen->n++], sizeof(seen->ids[0]), "%s", s->session_id);
    if (s->body.len)
        seen->bodies = true;
    return 0;
}

static void foreach_filters(void **state)
{
    struct fx *f = *state;
    struct vh_inbox_filter flt;
    struct seen seen;
    int i;

    put(f->ib, "a", NULL, T0, 0, true);
    put(f->ib, "b", "https://h/b.wav", T0 + 10, 1, true);
    put(f->ib, "c", "https://h/c.wav", T0 + 20, 0, true); /* no recordings dir: skipped */
    memset(&seen, 0, sizeof(seen));
    assert_int_equal(vh_inbox_foreach(f->ib, NULL, collect, &seen, NULL), 0);
    assert_int_equal(seen.n, 3);
    assert_string_equal(seen.ids[0], "a");
    assert_string_equal(seen.ids[2], "c");
    assert_false(seen.bodies);

    memset(&flt, 0, sizeof(flt));
    flt.since_ms = T0 + 10;
    flt.with_body = true;
    memset(&seen, 0, sizeof(seen));
    assert_int_equal(vh_inbox_foreach(f->ib, &flt, collect, &seen, NULL), 0);
    assert_int_equal(seen.n, 2);
    assert_string_equal(seen.ids[0], "b");
    assert_true(seen.bodies);

    memset(&flt, 0, sizeof(flt));
    flt.has_recording_state = true;
    flt.recording_state = VH_RECORDING_SKIPPED;
    memset(&seen, 0, sizeof(seen));
    assert_int_equal(vh_inbox_foreach(f->ib, &flt, collect, &seen, NULL), 0);
    assert_int_equal(seen.n, 1);
    assert_string_equal(seen.ids[0], "c");

    flt.recording_state = VH_RECORDING_PENDING;
    flt.limit = 1;
    memset(&seen, 0, sizeof(seen));
    assert_int_equal(vh_inbox_foreach(f->ib, &flt, collect, &seen, NULL), 0);
    assert_int_equal(seen.n, 1);
    assert_string_equal(seen.ids[0], "b");

    /* A callback that stops: its value comes back. */
    for (i = 0; i < 10; i++) {
        char id[16];

        snprintf(id, sizeof(id), "x%d", i);
        put(f->ib, id, NULL, T0 + 100 + i, 0, true);
    }
    memset(&seen, 0, sizeof(seen));
    assert_int_equal(vh_inbox_foreach(f->ib, NULL, collect, &seen, NULL), -42);
}

#define THREADS 8
#define PER     40

struct worker {
    struct vh_inbox *ib;
    int id;
    bool mixed; /* odd ids store sessions without jobs, and each thread puts one bad row */
    int created;
    int created_jobs; /* jobs created with those sessions */
    int failed;
    sem_t *finished; /* posted when the thread is done */
};

static void *put_many(void *arg)
{
    struct worker *w = arg;
    struct vh__inbox_put p;
    char sid[32];
    bool created;
    int i;

    for (i = 0; i < PER; i++) {
        /* Half shared by every thread (one row each), half the thread's own. */
        if (i % 2)
            snprintf(sid, sizeof(sid), "shared_%d", i);
        else
            snprintf(sid, sizeof(sid), "t%d_%d", w->id, i);
        put_init(&p, sid, sid, T0 + i);
        p.jobs[0].kind = VH_JOB_EXEC;
        p.jobs[0].next_attempt_ms = T0;
        p.jobs[0].deadline_ms = T0;
        p.n_jobs = w->mixed && w->id % 2 ? 0 : 1;
        /* signed_at is NOT NULL: this put fails, alone, whatever batch it shares. */
        if (w->mixed && i == PER / 2)
            p.signed_at = NULL;
        if (vh__inbox_put(w->ib, &p, &created, NULL) < 0) {
            w->failed++;
        } else if (created) {
            w->created++;
            w->created_jobs += (int)p.n_jobs;
        }
    }
    sem_post(w->finished);
    return NULL;
}

/*
 * Runs THREADS put_many workers; returns the sessions and the jobs they created. A group
 * commit that loses a waiter fails the test instead of hanging it (the workers, their
 * memory and the inbox are then left as they are: a thread may still use them).
 */
static void run_workers(struct fx *f, bool mixed, int *created, int *created_jobs)
{
    struct worker *w = calloc(THREADS, sizeof(*w));
    pthread_t t[THREADS];
    sem_t *finished = malloc(sizeof(*finished));
    int i;

    assert_non_null(w);
    assert_non_null(finished);
    assert_int_equal(sem_init(finished, 0, 0), 0);
    *created = *created_jobs = 0;
    for (i = 0; i < THREADS; i++) {
        w[i].ib = f->ib;
        w[i].id = i;
        w[i].mixed = mixed;
        w[i].finished = finished;
        assert_int_equal(pthread_create(&t[i], NULL, put_many, &w[i]), 0);
    }
    for (i = 0; i < THREADS; i++) {
        if (!wait_sem(finished)) {
            f->ib = NULL;
            fail_msg("%d of %d put threads did not finish within %d s", THREADS - i, THREADS,
                     WAIT_S);
        }
    }
    for (i = 0; i < THREADS; i++) {
        assert_int_equal(pthread_join(t[i], NULL), 0);
        assert_int_equal(w[i].failed, mixed ? 1 : 0);
        *created += w[i].created;
        *created_jobs += w[i].created_jobs;
    }
    sem_destroy(finished);
    free(finished);
    free(w);
}

static void group_commit_under_threads(void **state)
{
    struct fx *f = *state;
    int64_t n = 0;
    int created, jobs;

    run_workers(f, false, &created, &jobs);
    assert_int_equal(created, THREADS * PER / 2 + PER / 2);
    assert_int_equal(vh_inbox_count(f->ib, &n, NULL), 0);
    assert_int_equal(n, created);
    assert_int_equal(vh__inbox_unfinished(f->ib, &n, NULL), 0);
    assert_int_equal(n, created); /* one job per stored session, none for duplicates */
}

/*
 * Puts without jobs run without a SAVEPOINT (one statement): in batches shared with puts
 * that have jobs, and with puts that fail, each fails or succeeds alone.
 */
static void group_commit_mixed_ops(void **state)
{
    struct fx *f = *state;
    int64_t n = 0;
    int created, jobs;

    run_workers(f, true, &created, &jobs);
    /* Thread t's bad put is "t<t>_<PER/2>" (PER/2 is even), one of its own sessions. */
    assert_int_equal(created, THREADS * (PER / 2 - 1) + PER / 2);
    assert_int_equal(vh_inbox_count(f->ib, &n, NULL), 0);
    assert_int_equal(n, created);
    assert_int_equal(vh__inbox_unfinished(f->ib, &n, NULL), 0);
    assert_int_equal(n, jobs);
}

/* ---- posted puts ------------------------------------------------------------------------- */

/* Every posted put's answers, under `mu`; `all` is posted once `answered` reaches `total`. */
struct answers {
    pthread_mutex_t mu;
    sem_t all;
    int answered, total;
};

/* One put (posted or not) and what it was answered; what its put points to lives here. */
struct pput {
    struct answers *ans;
    char sid[32];
    char body[96];
    int64_t received_ms;
    size_t n_jobs;
    bool posted;
    sem_t *slot; /* posted when answered; NULL: none */
    int calls;   /* the rest under ans->mu */
    int rc;
    bool created;
};

/* On the heap: after a failed assertion, answers still to come must find it. */
static struct answers *answers_new(int total)
{
    struct answers *a = calloc(1, sizeof(*a));

    assert_non_null(a);
    assert_int_equal(pthread_mutex_init(&a->mu, NULL), 0);
    assert_int_equal(sem_init(&a->all, 0, 0), 0);
    a->total = total;
    return a;
}

static void answers_free(struct answers *a)
{
    /* The last answer may still be leaving the lock (it posted `all` inside it). */
    pthread_mutex_lock(&a->mu);
    pthread_mutex_unlock(&a->mu);
    sem_destroy(&a->all);
    pthread_mutex_destroy(&a->mu);
    free(a);
}

/* Waits for `s` until the deadline: true when it was posted. */

static int answered(struct answers *a)
{
    int n;

    pthread_mutex_lock(&a->mu);
    n = a->answered;
    pthread_mutex_unlock(&a->mu);
    return n;
}

/* Closes the inbox on another thread: a close that would not return fails instead. */
struct closer {
    struct vh_inbox *ib;
    sem_t closed;
};

static void *close_body(void *arg)
{
    struct closer *c = arg;

    vh_inbox_close(c->ib);
    sem_post(&c->closed);
    return NULL;
}

static void close_bounded(struct fx *f)
{
    struct closer *c = calloc(1, sizeof(*c)); /* leaked if the close never returns */
    pthread_t th;

    assert_non_null(c);
    c->ib = f->ib;
    f->ib = NULL;
    assert_int_equal(sem_init(&c->closed, 0, 0), 0);
    assert_int_equal(pthread_create(&th, NULL, close_body, c), 0);
    assert_true(wait_sem(&c->closed));
    assert_int_equal(pthread_join(th, NULL), 0);
    sem_destroy(&c->closed);
    free(c);
}

/* A posted put's answer (vh__inbox_put_done_fn), or a sync put's, reported the same way. */
static void put_done(void *ud, int rc, bool created, const struct vh_error *err)
{
    struct pput *pp = ud;
    struct answers *a = pp->ans;

    (void)err;
    /* First: once the last answer is counted, the test may free the slot. */
    if (pp->slot)
        sem_post(pp->slot);
    pthread_mutex_lock(&a->mu);
    pp->calls++;
    pp->rc = rc;
    pp->created = created;
    if (++a->answered == a->total)
        sem_post(&a->all);
    pthread_mutex_unlock(&a->mu);
}

static void pput_init(struct pput *pp, struct answers *a, const char *sid, const char *copy,
                      int64_t received_ms, size_t n_jobs, bool posted)
{
    memset(pp, 0, sizeof(*pp));
    pp->ans = a;
    snprintf(pp->sid, sizeof(pp->sid), "%s", sid);
    snprintf(pp->body, sizeof(pp->body), "{\"session\":\"%s\",\"copy\":\"%s\"}", sid, copy);
    pp->received_ms = received_ms;
    pp->n_jobs = n_jobs;
    pp->posted = posted;
}

/*
 * Stores `pp`, posted or not. The put itself is on this stack frame and gone before the
 * answer (vh__inbox_put_post copies it); what it points to is in `pp`. Returns the call's rc.
 */
static int pput_put(struct vh_inbox *ib, struct pput *pp)
{
    struct vh__inbox_put p;
    bool created = false;
    size_t i;
    int rc;

    put_init(&p, pp->sid, pp->body, pp->received_ms);
    p.event_ms = T0;
    for (i = 0; i < pp->n_jobs; i++) {
        /* exec and forward: no recording URL needed */
        p.jobs[i].kind = (enum vh_job_kind)(VH_JOB_EXEC + (int)i);
        p.jobs[i].next_attempt_ms = pp->received_ms;
        p.jobs[i].deadline_ms = pp->received_ms + 1000;
    }
    p.n_jobs = pp->n_jobs;
    if (pp->posted) {
        rc = vh__inbox_put_post(ib, &p, put_done, pp, NULL);
        memset(&p, 0xa5, sizeof(p)); /* the queue must hold its own copy */
        return rc;
    }
    rc = vh__inbox_put(ib, &p, &created, NULL);
    put_done(pp, rc, created, NULL);
    return rc;
}

/* Checks the stored session of `pp`, the copy that was created. */
static void check_stored(struct vh_inbox *ib, const struct pput *pp)
{
    struct vh_inbox_session s;
    size_t i;

    assert_int_equal(vh_inbox_get(ib, pp->sid, &s, NULL), 0);
    assert_string_equal(s.body.data, pp->body);
    assert_int_equal(s.received_ms, pp->received_ms);
    assert_int_equal(s.n_jobs, pp->n_jobs);
    for (i = 0; i < s.n_jobs; i++) {
        assert_int_equal(s.jobs[i].kind, VH_JOB_EXEC + (int)i);
        assert_int_equal(s.jobs[i].state, VH_JOB_PENDING);
    }
    vh_inbox_session_release(&s);
}

#define PTHREADS 4
#define OWN      30 /* sessions of one thread, each put twice */
#define SHARED   10 /* sessions every thread puts once */
#define LAG      5  /* a thread's second copy of a session follows the first this much later */

/* One thread's puts: own[i][0] the first copy, own[i][1] the second; shared[i] its copy. */
struct pthread_puts {
    struct vh_inbox *ib;
    int id;
    bool sync; /* odd threads put synchronously (mixed_posted_and_sync_puts) */
    struct pput own[OWN][2];
    struct pput shared[SHARED];
    /*
     * In mixed_posted_and_sync_puts a posting thread has at most WINDOW puts unanswered
     * (an HTTP server's connections): its posts come all along the sync puts' batches, not
     * in one burst at the start.
     */
    sem_t slots;
    bool paced;
    int failed;     /* calls that returned < 0, or a wait for a slot that timed out */
    sem_t finished; /* posted when the thread is done */
};

#define WINDOW 3
#define SOLO   5 /* posted_puts: puts one at a time */

/* Puts `pp`; false when it failed, or no answer came for a slot (then the thread stops). */
static bool put_one(struct pthread_puts *t, struct pput *pp)
{
    if (t->paced && !wait_sem(&t->slots)) {
        t->failed++;
        return false;
    }
    if (pput_put(t->ib, pp) < 0)
        t->failed++;
    return true;
}

static void *put_posted_many(void *arg)
{
    struct pthread_puts *t = arg;
    int i;

    for (i = 0; i < OWN + LAG; i++) {
        if (i < OWN && !put_one(t, &t->own[i][0]))
            break;
        if (i < SHARED && !put_one(t, &t->shared[i]))
            break;
        if (i >= LAG && !put_one(t, &t->own[i - LAG][1]))
            break;
    }
    sem_post(&t->finished);
    return NULL;
}

static void threads_prepare(struct pthread_puts *t, struct answers *a, struct vh_inbox *ib,
                            bool mixed)
{
    char sid[32];
    int k, i;

    for (k = 0; k < PTHREADS; k++) {
        t[k].ib = ib;
        t[k].id = k;
        t[k].sync = mixed && k % 2;
        t[k].paced = mixed && !t[k].sync;
        t[k].failed = 0;
        assert_int_equal(sem_init(&t[k].slots, 0, WINDOW), 0);
        assert_int_equal(sem_init(&t[k].finished, 0, 0), 0);
        for (i = 0; i < OWN; i++) {
            snprintf(sid, sizeof(sid), "p%d_%d", k, i);
            /* Jobs or none in either copy: the first copy's count is stored. */
            pput_init(&t[k].own[i][0], a, sid, "first", T0 + i, (size_t)(i % 3), !t[k].sync);
            pput_init(&t[k].own[i][1], a, sid, "second", T0 + 100 + i, (size_t)((i + 1) % 3),
                      !t[k].sync);
        }
        for (i = 0; i < SHARED; i++) {
            char copy[16];

            snprintf(sid, sizeof(sid), "shared_%d", i);
            snprintf(copy, sizeof(copy), "t%d", k);
            pput_init(&t[k].shared[i], a, sid, copy, T0 + 200 + k, (size_t)((k + i) % 3),
                      !t[k].sync);
            if (t[k].paced)
                t[k].shared[i].slot = &t[k].slots;
        }
        for (i = 0; i < OWN && t[k].paced; i++)
            t[k].own[i][0].slot = t[k].own[i][1].slot = &t[k].slots;
    }
}

/*
 * Runs PTHREADS threads of puts (posted, or in `mixed` half of them sync), waits for every
 * answer and checks them; then closes the inbox, reopens it and checks what is stored.
 */
static void run_posted(struct fx *f, bool mixed)
{
    struct pthread_puts *t = calloc(PTHREADS, sizeof(*t));
    const int total = PTHREADS * (2 * OWN + SHARED);
    struct answers *a = answers_new(total);
    pthread_t th[PTHREADS];
    int k, i, created, jobs = 0;
    int64_t n = 0;

    assert_non_null(t);
    threads_prepare(t, a, f->ib, mixed);
    for (k = 0; k < PTHREADS; k++)
        assert_int_equal(pthread_create(&th[k], NULL, put_posted_many, &t[k]), 0);
    for (k = 0; k < PTHREADS; k++) {
        /* A sync put stuck behind an unanswered posted one fails here; it would not return. */
        if (!wait_sem(&t[k].finished)) {
            f->ib = NULL; /* left open: the thread may still use it */
            fail_msg("thread %d did not finish its puts", k);
        }
        assert_int_equal(pthread_join(th[k], NULL), 0);
        assert_int_equal(t[k].failed, 0);
    }
    assert_true(wait_sem(&a->all));

    /* Each answered once, rc 0; a thread's first copy created, its second a duplicate. */
    pthread_mutex_lock(&a->mu);
    assert_int_equal(a->answered, total);
    for (k = 0; k < PTHREADS; k++) {
        for (i = 0; i < OWN; i++) {
            assert_int_equal(t[k].own[i][0].calls, 1);
            assert_int_equal(t[k].own[i][0].rc, 0);
            assert_true(t[k].own[i][0].created);
            assert_int_equal(t[k].own[i][1].calls, 1);
            assert_int_equal(t[k].own[i][1].rc, 0);
            assert_false(t[k].own[i][1].created);
            jobs += (int)t[k].own[i][0].n_jobs;
        }
    }
    /* A session every thread put: one copy created, whichever came first. */
    for (i = 0; i < SHARED; i++) {
        created = 0;
        for (k = 0; k < PTHREADS; k++) {
            assert_int_equal(t[k].shared[i].calls, 1);
            assert_int_equal(t[k].shared[i].rc, 0);
            if (t[k].shared[i].created) {
                created++;
                jobs += (int)t[k].shared[i].n_jobs;
            }
        }
        assert_int_equal(created, 1);
    }
    pthread_mutex_unlock(&a->mu);

    /* Durable: there after close and reopen, as the created copies were. */
    close_bounded(f);
    assert_int_equal(vh_inbox_open(f->path, 0, &f->ib, NULL), 0);
    assert_int_equal(vh_inbox_count(f->ib, &n, NULL), 0);
    assert_int_equal(n, PTHREADS * OWN + SHARED);
    assert_int_equal(vh__inbox_unfinished(f->ib, &n, NULL), 0);
    assert_int_equal(n, jobs);
    for (k = 0; k < PTHREADS; k++) {
        for (i = 0; i < OWN; i++)
            check_stored(f->ib, &t[k].own[i][0]);
        for (i = 0; i < SHARED; i++)
            if (t[k].shared[i].created)
                check_stored(f->ib, &t[k].shared[i]);
    }
    answers_free(a);
    for (k = 0; k < PTHREADS; k++) {
        sem_destroy(&t[k].slots);
        sem_destroy(&t[k].finished);
    }
    free(t);
}

/*
 * Posted puts from several threads, duplicates among them, with jobs and without: each
 * answered once, with the right `created`, and all stored.
 */
static void posted_puts(void **state)
{
    struct fx *f = *state;
    struct pput *pp = calloc(SOLO, sizeof(*pp));
    struct answers *a;
    char sid[32];
    int64_t n = 0;
    int i;

    assert_non_null(pp);
    run_posted(f, false);
    /* Then one at a time on the reopened inbox: each post finds the runner idle. */
    for (i = 0; i < SOLO; i++) {
        a = answers_new(1);
        snprintf(sid, sizeof(sid), "solo_%d", i);
        pput_init(&pp[i], a, sid, "first", T0 + 300 + i, (size_t)(i % 2), true);
        assert_int_equal(pput_put(f->ib, &pp[i]), 0);
        assert_true(wait_sem(&a->all));
        assert_int_equal(pp[i].rc, 0);
        assert_true(pp[i].created);
        answers_free(a);
    }
    assert_int_equal(vh_inbox_count(f->ib, &n, NULL), 0);
    assert_int_equal(n, PTHREADS * OWN + SHARED + SOLO);
    for (i = 0; i < SOLO; i++)
        check_stored(f->ib, &pp[i]);
    free(pp);
}

/* Sync puts and posted puts at once on one inbox: all answered and stored. */
static void mixed_posted_and_sync_puts(void **state)
{
    run_posted(*state, true);
}

#define CLOSE_POSTS 500

/* Closing with posted puts still queued answers them all before it returns; all stored. */
static void close_answers_posted_puts(void **state)
{
    struct fx *f = *state;
    struct pput *pp = calloc(CLOSE_POSTS, sizeof(*pp));
    struct answers *a = answers_new(CLOSE_POSTS);
    char sid[32];
    int64_t n = 0;
    int i, created = 0;

    assert_non_null(pp);
    for (i = 0; i < CLOSE_POSTS; i++) {
        /* Every tenth a duplicate of the one before. */
        snprintf(sid, sizeof(sid), "c%d", i % 10 == 9 ? i - 1 : i);
        pput_init(&pp[i], a, sid, i % 10 == 9 ? "second" : "first", T0 + i, (size_t)(i % 2), true);
        assert_int_equal(pput_put(f->ib, &pp[i]), 0);
    }
    close_bounded(f);
    /* No wait: close returned, so every answer came. */
    assert_int_equal(answered(a), CLOSE_POSTS);
    for (i = 0; i < CLOSE_POSTS; i++) {
        assert_int_equal(pp[i].calls, 1);
        assert_int_equal(pp[i].rc, 0);
        assert_int_equal(pp[i].created, i % 10 != 9);
        created += pp[i].created;
    }
    assert_int_equal(vh_inbox_open(f->path, 0, &f->ib, NULL), 0);
    assert_int_equal(vh_inbox_count(f->ib, &n, NULL), 0);
    assert_int_equal(n, created);
    for (i = 0; i < CLOSE_POSTS; i++)
        if (pp[i].created)
            check_stored(f->ib, &pp[i]);
    answers_free(a);
    free(pp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(open_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(dedupe, setup, teardown),
        cmocka_unit_test_setup_teardown(claim_finish_recover, setup, teardown),
        cmocka_unit_test_setup_teardown(claims_take_downloads_first, setup, teardown),
        cmocka_unit_test_setup_teardown(foreach_filters, setup, teardown),
        cmocka_unit_test_setup_teardown(page_sizes, setup, teardown),
        cmocka_unit_test_setup_teardown(too_many_jobs, setup, teardown),
        cmocka_unit_test_setup_teardown(group_commit_under_threads, setup, teardown),
        cmocka_unit_test_setup_teardown(group_commit_mixed_ops, setup, teardown),
        cmocka_unit_test_setup_teardown(posted_puts, setup, teardown),
        cmocka_unit_test_setup_teardown(close_answers_posted_puts, setup, teardown),
        cmocka_unit_test_setup_teardown(mixed_posted_and_sync_puts, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
