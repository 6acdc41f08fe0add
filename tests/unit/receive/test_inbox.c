/*
 * The inbox (src/receive/inbox.c) on a real SQLite file in a temp dir: deduplication, job
 * claims and their order, the state checks on finish, recovery after a crash, the read side,
 * and the group commit under threads.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include <vocohook/receive.h>

#include "receive/receive_int.h"
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

static void put(struct vh_inbox *ib, const char *sid, const char *url, int64_t now, size_t n_jobs,
                bool want_created)
{
    struct vh_error err = VH_ERROR_INIT;
    struct vh__inbox_put p;
    char body[128];
    bool created = !want_created;
    size_t i;

    snprintf(body, sizeof(body), "{\"session\":\"%s\"}", sid);
    memset(&p, 0, sizeof(p));
    p.session_id = sid;
    p.body = body;
    p.body_len = strlen(body);
    p.signed_at = "2026-03-15T14:32:08.000Z";
    p.signature = "sha256=00";
    p.recording_url = url;
    p.event_ms = T0;
    p.received_ms = now;
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

static void claim_finish_recover(void **state)
{
    struct fx *f = *state;
    struct vh_error err = VH_ERROR_INIT;
    struct vh__job_update u;
    struct vh__job j;
    struct vh_inbox_session s;
    int64_t due = 0, n = 0;

    put(f->ib, "late", "https://h/late.wav", T0 + 100, 1, true);
    put(f->ib, "early", "https://h/early.wav", T0, 1, true);
    /* Nothing due before T0. */
    assert_int_equal(vh__inbox_claim(f->ib, T0 - 1, &j, NULL), 0);
    vh__job_release(&j);
    assert_int_equal(vh__inbox_next_due(f->ib, &due, NULL), 1);
    assert_int_equal(due, T0);
    /* The one due longest first, with what its attempt needs. */
    assert_int_equal(vh__inbox_claim(f->ib, T0 + 100, &j, NULL), 1);
    assert_string_equal(j.session_id, "early");
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
    assert_int_equal(vh__inbox_finish(f->ib, "early", VH_JOB_DOWNLOAD, &u, T0, &err), VH_ESTATE);
    u.state = VH_JOB_PENDING;
    u.attempts = 1;
    u.next_attempt_ms = T0 + 500;
    snprintf(u.error, sizeof(u.error), "HTTP 503");
    u.status = 503;
    assert_int_equal(vh__inbox_finish(f->ib, "late", VH_JOB_DOWNLOAD, &u, T0, NULL), VH_ESTATE);
    assert_int_equal(vh__inbox_finish(f->ib, "early", VH_JOB_DOWNLOAD, &u, T0, NULL), 0);
    assert_int_equal(vh__inbox_finish(f->ib, "early", VH_JOB_DOWNLOAD, &u, T0, NULL), VH_ESTATE);

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
    assert_int_equal(vh__inbox_finish(f->ib, "late", VH_JOB_DOWNLOAD, &u, T0 + 700, NULL), 0);
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
        memset(&p, 0, sizeof(p));
        p.session_id = sid;
        p.body = sid;
        p.body_len = strlen(sid);
        p.signed_at = "2026-03-15T14:32:08.000Z";
        p.signature = "sha256=00";
        p.received_ms = T0 + i;
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
    return NULL;
}

/* Runs THREADS put_many workers; returns the sessions and the jobs they created. */
static void run_workers(struct fx *f, bool mixed, int *created, int *created_jobs)
{
    struct worker w[THREADS];
    pthread_t t[THREADS];
    int i;

    *created = *created_jobs = 0;
    for (i = 0; i < THREADS; i++) {
        memset(&w[i], 0, sizeof(w[i]));
        w[i].ib = f->ib;
        w[i].id = i;
        w[i].mixed = mixed;
        assert_int_equal(pthread_create(&t[i], NULL, put_many, &w[i]), 0);
    }
    for (i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(w[i].failed, mixed ? 1 : 0);
        *created += w[i].created;
        *created_jobs += w[i].created_jobs;
    }
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(open_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(dedupe, setup, teardown),
        cmocka_unit_test_setup_teardown(claim_finish_recover, setup, teardown),
        cmocka_unit_test_setup_teardown(foreach_filters, setup, teardown),
        cmocka_unit_test_setup_teardown(group_commit_under_threads, setup, teardown),
        cmocka_unit_test_setup_teardown(group_commit_mixed_ops, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
