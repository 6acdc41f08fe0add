/*
 * The delivery engine's side of the store contract: claim, record, recover, the due-time
 * peek, the queue stats, and the delivery history (list, get, retry, replay). Public API
 * only, except the query-plan test, which is SQLite's and skipped on other backends.
 *
 * Like test_store.c, the store comes from VH_TEST_STORE_URL when it is set, else from a
 * fresh SQLite file per test. A claim takes any due delivery in the store, so on a shared
 * database each test works at its own random time in 2001..2020 (before every other suite's
 * times), keeps only its own partners' jobs, and checks exact queue-wide numbers only on a
 * fresh file. A PostgreSQL URL is not shared: each test gets a new database beside it
 * (CREATE DATABASE, dropped in teardown), so the exact checks run there too, and a test
 * never claims what an earlier one left due.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pthread.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <vocohook/alloc.h>
#include <vocohook/buf.h>
#include <vocohook/id.h>
#include <vocohook/sign.h>
#include <vocohook/store.h>

#include "store/store_int.h"

#define DAY_MS   INT64_C(86400000)
#define Y2001_MS INT64_C(978307200000)
#define LEASE_MS INT64_C(60000)

struct fixture {
    char dir[256]; /* the temp dir, "" when VH_TEST_STORE_URL is used */
    char url[512];
    struct vh_store *st;
    struct vh_store *admin; /* PostgreSQL: the store at VH_TEST_STORE_URL, NULL otherwise */
    char db[64];            /* PostgreSQL: this test's database */
    bool fresh;             /* a new, empty store: queue-wide numbers are exact */
    int64_t tb;             /* this test's time base */
    char node[VH_UUID_LEN + 1];
};

static int64_t random_day(void)
{
    char u[VH_UUID_LEN + 1];

    if (vh_uuid_new(u, NULL) < 0)
        return 0;
    return (int64_t)(strtoul(u + 28, NULL, 16) % 7000);
}

static bool is_pg_url(const char *url)
{
    return strncmp(url, "postgres://", 11) == 0 || strncmp(url, "postgresql://", 13) == 0;
}

/*
 * Creates a new database next to the one `base` names and puts its URL (`base` with the
 * database name replaced, query kept) in f->url.
 */
static int pg_fresh_db(struct fixture *f, const char *base)
{
    struct vh_error err = VH_ERROR_INIT;
    const char *host = strstr(base, "://") + 3, *path, *query;
    char u[VH_UUID_LEN + 1], sql[128];

    if (vh_uuid_new(u, NULL) < 0 || vh_store_open(base, &f->admin, &err) < 0) {
        fprintf(stderr, "open %s: %s\n", base, err.msg);
        return -1;
    }
    snprintf(f->db, sizeof(f->db), "vh_t_%.8s%.4s%.4s", u, u + 9, u + 14);
    snprintf(sql, sizeof(sql), "CREATE DATABASE %s", f->db);
    if (vh__store_pg_exec(f->admin, sql, NULL, &err) < 0) {
        fprintf(stderr, "%s: %s\n", sql, err.msg);
        return -1;
    }
    path = strchr(host, '/');
    query = strchr(host, '?');
    if (!path || (query && query < path))
        path = query ? query : host + strlen(host);
    snprintf(f->url, sizeof(f->url), "%.*s/%s%s", (int)(path - base), base, f->db,
             query ? query : "");
    return 0;
}

static void pg_drop_db(struct fixture *f)
{
    char sql[128];

    if (!f->admin)
        return;
    if (f->db[0]) {
        snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)", f->db);
        vh__store_pg_exec(f->admin, sql, NULL, NULL);
    }
    vh_store_close(f->admin);
    f->admin = NULL;
}

static int setup(void **state)
{
    const char *env = getenv("VH_TEST_STORE_URL");
    const char *tmp = getenv("TMPDIR");
    struct vh_error err = VH_ERROR_INIT;
    struct fixture *f = calloc(1, sizeof(*f));

    if (!f)
        return -1;
    if (env && *env && is_pg_url(env)) {
        if (pg_fresh_db(f, env) < 0) {
            pg_drop_db(f);
            free(f);
            return -1;
        }
        f->fresh = true;
    } else if (env && *env) {
        snprintf(f->url, sizeof(f->url), "%s", env);
    } else {
        snprintf(f->dir, sizeof(f->dir), "%s/vh-dlv-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (!mkdtemp(f->dir)) {
            free(f);
            return -1;
        }
        snprintf(f->url, sizeof(f->url), "sqlite:%s/store.db", f->dir);
        f->fresh = true;
    }
    if (vh_store_open(f->url, &f->st, &err) < 0 || vh_uuid_new(f->node, NULL) < 0) {
        fprintf(stderr, "open %s: %s\n", f->url, err.msg);
        pg_drop_db(f);
        free(f);
        return -1;
    }
    f->tb = Y2001_MS + random_day() * DAY_MS;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    static const char *const files[] = {"store.db", "store.db-wal", "store.db-shm",
                                        "store.db-lock"};
    struct fixture *f = *state;
    char path[512];
    size_t i;

    vh_store_close(f->st);
    pg_drop_db(f);
    if (f->dir[0]) {
        for (i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
            snprintf(path, sizeof(path), "%s/%s", f->dir, files[i]);
            unlink(path);
        }
        rmdir(f->dir);
    }
    free(f);
    return 0;
}

/* ---- helpers --------------------------------------------------------------------------- */

static int64_t count(struct vh_store *st, const char *table)
{
    int64_t n = -1;

    assert_int_equal(vh_store_count(st, table, &n, NULL), 0);
    return n;
}

static void new_partner(struct vh_store *st, const char *name, struct vh_partner *p)
{
    char key[VH_APIKEY_LEN + 1], hash[VH_SHA256_HEX_LEN + 1];
    struct vh_error err = VH_ERROR_INIT;

    assert_int_equal(vh_apikey_new(key, NULL), 0);
    assert_int_equal(vh_sha256_hex(key, strlen(key), hash, NULL), 0);
    if (vh_store_partner_create(st, name, hash, Y2001_MS, p, &err) < 0)
        fail_msg("create partner: %s", err.msg);
}

static void new_endpoint(struct vh_store *st, const char *partner_id, const char *label,
                         struct vh_endpoint *ep)
{
    struct vh_error err = VH_ERROR_INIT;

    memset(ep, 0, sizeof(*ep));
    assert_int_equal(vh_uuid_new(ep->id, NULL), 0);
    snprintf(ep->partner_id, sizeof(ep->partner_id), "%s", partner_id);
    snprintf(ep->label, sizeof(ep->label), "%s", label);
    snprintf(ep->url, sizeof(ep->url), "https://example.com/hooks/%s", label);
    assert_int_equal(vh_secret_new(ep->secret, NULL), 0);
    ep->enabled = true;
    ep->created_ms = Y2001_MS;
    ep->updated_ms = Y2001_MS;
    if (vh_store_endpoint_create(st, ep, VH_ENDPOINTS_MAX, &err) < 0)
        fail_msg("create endpoint %s: %s", label, err.msg);
}

static void set_enabled(struct vh_store *st, struct vh_endpoint *ep, bool enabled, int64_t now)
{
    struct vh_error err = VH_ERROR_INIT;

    ep->enabled = enabled;
    ep->updated_ms = now;
    if (vh_store_endpoint_update(st, ep, &err) < 0)
        fail_msg("update endpoint: %s", err.msg);
}

static const char body_text[] = "{\"event\":\"session.completed\",\"data\":{\"n\":1}}";

/* Ingests a new session of the partner accepted at `at`; its id goes to `event_id`. */
static void put_event(struct vh_store *st, const char *partner_id, int64_t at, char *event_id)
{
    struct vh_error err = VH_ERROR_INIT;
    struct vh_event_put_result res;
    struct vh_event_put ev;
    char session[VH_UUID_LEN + 1];

    assert_int_equal(vh_uuid_new(session, NULL), 0);
    memset(&ev, 0, sizeof(ev));
    ev.partner_id = partner_id;
    ev.session_id = session;
    ev.body = body_text;
    ev.body_len = sizeof(body_text) - 1;
    ev.accepted_ms = at;
    if (vh_store_event_put(st, &ev, &res, &err) < 0)
        fail_msg("put event: %s", err.msg);
    assert_true(res.created);
    if (event_id)
        memcpy(event_id, res.event_id, sizeof(res.event_id));
}

/* The one delivery of `event_id` (the tests give such events one endpoint). */
static struct vh_delivery_brief brief_of(struct vh_store *st, const char *event_id)
{
    struct vh_delivery_brief *d = NULL, one;
    size_t n = 0;

    assert_int_equal(vh_store_event_deliveries(st, event_id, &d, &n, NULL), 0);
    assert_int_equal(n, 1);
    one = d[0];
    vh_free(d);
    return one;
}

/*
 * Claims as node `node` and keeps the jobs of `partner_id` only (a shared database may
 * hold others' due deliveries; they are released and ignored). Returns the kept count.
 */
static size_t claim_own(struct fixture *f, const char *node, int64_t now, int64_t lease, size_t max,
                        const char *partner_id, struct vh_delivery_job_rec **out)
{
    struct vh_error err = VH_ERROR_INIT;
    struct vh_delivery_job_rec *jobs = NULL;
    size_t n = 0, i, kept = 0;

    if (vh_store_delivery_claim(f->st, node, now, lease, max, &jobs, &n, &err) < 0)
        fail_msg("claim: %s", err.msg);
    for (i = 0; i < n; i++) {
        if (i > 0)
            assert_true(jobs[i - 1].next_attempt_ms <= jobs[i].next_attempt_ms);
        if (strcmp(jobs[i].partner_id, partner_id) != 0) {
            vh_delivery_job_rec_release(&jobs[i]);
            continue;
        }
        if (kept != i)
            jobs[kept] = jobs[i];
        kept++;
    }
    if (kept == 0) {
        vh_free(jobs);
        jobs = NULL;
    }
    *out = jobs;
    return kept;
}

/* A result for `job`'s next attempt, as the dispatcher would fill it. */
static void fill_result(struct vh_delivery_result *r, const struct vh_delivery_job_rec *job,
                        const char *node, int64_t started, int status, const char *new_state,
                        int64_t next)
{
    memset(r, 0, sizeof(*r));
    r->delivery_id = job->delivery_id;
    r->node_id = node;
    r->attempt = job->attempts + 1;
    r->started_ms = started;
    r->duration_ms = 25;
    r->http_status = status;
    r->error_class = status >= 200 && status < 300 ? NULL : "http_status";
    r->new_state = new_state;
    r->next_attempt_ms = next;
}

static void record(struct vh_store *st, const struct vh_delivery_result *r, size_t n)
{
    struct vh_error err = VH_ERROR_INIT;

    if (vh_store_delivery_record(st, r, n, &err) < 0)
        fail_msg("record: %s", err.msg);
}

static void get(struct vh_store *st, const char *partner_id, const char *id,
                struct vh_delivery_info *info, struct vh_attempt_info **attempts, size_t *n)
{
    struct vh_error err = VH_ERROR_INIT;

    if (vh_store_delivery_get(st, partner_id, id, info, attempts, n, NULL, &err) < 0)
        fail_msg("get delivery %s: %s", id, err.msg);
}

/* ---- claim ------------------------------------------------------------------------------- */

static void claim_takes_due_pending_oldest_first(void **state)
{
    struct fixture *f = *state;
    struct vh_delivery_job_rec *jobs = NULL, *more = NULL;
    char e1[VH_UUID_LEN + 1], e2[VH_UUID_LEN + 1], e3[VH_UUID_LEN + 1], later[VH_UUID_LEN + 1];
    struct vh_delivery_brief b;
    struct vh_endpoint ep;
    struct vh_partner p;
    const int64_t now = f->tb + 5000;
    size_t n;

    new_partner(f->st, "Claim", &p);
    new_endpoint(f->st, p.id, "primary", &ep);
    put_event(f->st, p.id, f->tb + 3000, e3);
    put_event(f->st, p.id, f->tb + 1000, e1);
    put_event(f->st, p.id, f->tb + 2000, e2);
    put_event(f->st, p.id, f->tb + 9000, later); /* not due yet */

    n = claim_own(f, f->node, now, LEASE_MS, 10, p.id, &jobs);
    assert_int_equal(n, 3);
    assert_string_equal(jobs[0].event_id, e1);
    assert_string_equal(jobs[1].event_id, e2);
    assert_string_equal(jobs[2].event_id, e3);
    assert_int_equal(jobs[0].next_attempt_ms, f->tb + 1000);
    assert_string_equal(jobs[0].endpoint_id, ep.id);
    assert_string_equal(jobs[0].partner_id, p.id);
    assert_string_equal(jobs[0].url, ep.url);
    assert_string_equal(jobs[0].secret, ep.secret);
    assert_string_equal(jobs[0].retry_schedule, "");
    assert_int_equal(jobs[0].timeout_ms, 0);
    assert_int_equal(jobs[0].attempts, 0);
    assert_int_equal(jobs[0].attempt_base, 0);
    assert_int_equal(jobs[0].lease_until_ms, now + LEASE_MS);
    assert_int_equal(jobs[0].body.len, sizeof(body_text) - 1);
    assert_memory_equal(jobs[0].body.data, body_text, jobs[0].body.len);
    b = brief_of(f->st, e1);
    assert_string_equal(b.state, "in_flight");
    assert_string_equal(b.id, jobs[0].delivery_id);
    b = brief_of(f->st, later);
    assert_string_equal(b.state, "pending");

    /* Claimed ones are not handed out again, to this node or another. */
    assert_int_equal(claim_own(f, f->node, now, LEASE_MS, 10, p.id, &more), 0);
    assert_int_equal(claim_own(f, "other-node", now + 1000, LEASE_MS, 10, p.id, &more), 0);
    assert_null(more);
    vh_delivery_job_recs_free(jobs, n);

    /* Its time comes. */
    n = claim_own(f, f->node, f->tb + 9000, LEASE_MS, 10, p.id, &jobs);
    assert_int_equal(n, 1);
    assert_string_equal(jobs[0].event_id, later);
    vh_delivery_job_recs_free(jobs, n);
}

static void claim_respects_max(void **state)
{
    struct fixture *f = *state;
    struct vh_delivery_job_rec *jobs = NULL;
    struct vh_endpoint ep[3];
    struct vh_partner p;
    size_t n, total = 0;
    int i;

    new_partner(f->st, "Max", &p);
    new_endpoint(f->st, p.id, "a", &ep[0]);
    new_endpoint(f->st, p.id, "b", &ep[1]);
    new_endpoint(f->st, p.id, "c", &ep[2]);
    for (i = 0; i < 3; i++)
        put_event(f->st, p.id, f->tb + i, NULL); /* 9 deliveries */
    for (i = 0; i < 5; i++) {
        n = claim_own(f, f->node, f->tb + 10, LEASE_MS, 2, p.id, &jobs);
        assert_true(n <= 2);
        total += n;
        vh_delivery_job_recs_free(jobs, n);
    }
    assert_int_equal(total, 9);
}

/* Stores an event whose body is `len` bytes of JSON (at least 12), accepted at `at`. */
static void put_event_sized(struct vh_store *st, const char *partner_id, int64_t at, size_t len)
{
    struct vh_error err = VH_ERROR_INIT;
    struct vh_event_put_result res;
    struct vh_event_put ev;
    char session[VH_UUID_LEN + 1], *body = malloc(len + 1);

    assert_non_null(body);
    assert_true(len >= 12);
    memset(body, 'x', len);
    memcpy(body, "{\"pad\":\"", 8);
    memcpy(body + len - 2, "\"}", 2);
    body[len] = '\0';
    assert_int_equal(vh_uuid_new(session, NULL), 0);
    memset(&ev, 0, sizeof(ev));
    ev.partner_id = partner_id;
    ev.session_id = session;
    ev.body = body;
    ev.body_len = len;
    ev.accepted_ms = at;
    if (vh_store_event_put(st, &ev, &res, &err) < 0)
        fail_msg("put event: %s", err.msg);
    assert_true(res.created);
    free(body);
}

/* A bounded claim: the bodies in due order up to the bound, at least one. */
static size_t claim_bounded(struct fixture *f, size_t max_bytes, size_t *bytes)
{
    struct vh_error err = VH_ERROR_INIT;
    struct vh_delivery_job_rec *jobs = NULL;
    size_t n = 0, i;

    if (vh_store_delivery_claim_bounded(f->st, f->node, f->tb + 10, LEASE_MS, 10, max_bytes, &jobs,
                                        &n, &err) < 0)
        fail_msg("claim: %s", err.msg);
    *bytes = 0;
    for (i = 0; i < n; i++)
        *bytes += jobs[i].body.len;
    vh_delivery_job_recs_free(jobs, n);
    return n;
}

/*
 * vh_store_delivery_claim_bounded stops before the body that would take the claim past its
 * byte bound, and takes the first due row whatever its size; what it stopped before is the
 * next claim's first row. Bodies of 100, 300, 100 and 100 bytes, due in that order.
 */
static void claim_bounded_by_bytes_stops_before_the_bound(void **state)
{
    struct fixture *f = *state;
    struct vh_endpoint ep;
    struct vh_partner p;
    size_t bytes = 0;

    if (!f->fresh)
        skip(); /* others' due rows would count against the bound */
    new_partner(f->st, "Bytes", &p);
    new_endpoint(f->st, p.id, "primary", &ep);
    put_event_sized(f->st, p.id, f->tb + 1, 100);
    put_event_sized(f->st, p.id, f->tb + 2, 300);
    put_event_sized(f->st, p.id, f->tb + 3, 100);
    put_event_sized(f->st, p.id, f->tb + 4, 100);

    assert_int_equal(claim_bounded(f, 50, &bytes), 1); /* larger than the bound: alone */
    assert_int_equal(bytes, 100);
    assert_int_equal(claim_bounded(f, 350, &bytes), 1); /* 300 fits, 300 + 100 does not */
    assert_int_equal(bytes, 300);
    assert_int_equal(claim_bounded(f, 200, &bytes), 2); /* exactly the bound */
    assert_int_equal(bytes, 200);
    assert_int_equal(claim_bounded(f, 1, &bytes), 0);
}

/*
 * A claim that fills up lets the next one begin past its last row (SQLite: struct
 * claim_resume in sqlite.c). Whatever puts a due row before that point in between is found
 * all the same: an ingest with an earlier time, a report that sends its delivery back to
 * pending, a recovery. The row found must be the earliest due each time. (A write by
 * another process: test_sqlite.c.)
 */
static void a_claim_after_a_full_one_finds_rows_due_before_it(void **state)
{
    struct fixture *f = *state;
    struct vh_delivery_job_rec *first = NULL, *jobs = NULL;
    struct vh_delivery_result r;
    char early[VH_UUID_LEN + 1], ev[4][VH_UUID_LEN + 1];
    struct vh_endpoint ep;
    struct vh_partner p;
    const int64_t now = f->tb + 1000;
    size_t n, i;

    new_partner(f->st, "Resume", &p);
    new_endpoint(f->st, p.id, "primary", &ep);
    for (i = 0; i < 4; i++)
        put_event(f->st, p.id, f->tb + 100 * (int64_t)(i + 1), ev[i]); /* due 100 … 400 */

    /* Full: it may resume past its last row, 200. An ingest due at 150 comes in. */
    n = claim_own(f, f->node, now, LEASE_MS, 2, p.id, &first);
    assert_int_equal(n, 2);
    assert_string_equal(first[1].event_id, ev[1]);
    put_event(f->st, p.id, f->tb + 150, early);
    n = claim_own(f, f->node, now, LEASE_MS, 1, p.id, &jobs);
    assert_int_equal(n, 1);
    assert_string_equal(jobs[0].event_id, early);
    vh_delivery_job_recs_free(jobs, n);

    /* Full again (past 150). The attempt due at 100 fails and is due again at 120. */
    fill_result(&r, &first[0], f->node, now, 503, "pending", f->tb + 120);
    record(f->st, &r, 1);
    n = claim_own(f, f->node, now, LEASE_MS, 1, p.id, &jobs);
    assert_int_equal(n, 1);
    assert_string_equal(jobs[0].event_id, ev[0]);
    assert_int_equal(jobs[0].next_attempt_ms, f->tb + 120);
    vh_delivery_job_recs_free(jobs, n);

    /* Full again (past 120). The node restarts, its clock behind: its 3 claims (200, 150,
     * 120) are due again at 110. */
    assert_int_equal(vh_store_delivery_recover(f->st, f->node, f->tb + 110, NULL), 3);
    n = claim_own(f, f->node, now, LEASE_MS, 1, p.id, &jobs);
    assert_int_equal(n, 1);
    assert_int_equal(jobs[0].next_attempt_ms, f->tb + 110);
    vh_delivery_job_recs_free(jobs, n);

    /* The rest: the other two at 110, then 300 and 400. */
    n = claim_own(f, f->node, now, LEASE_MS, 10, p.id, &jobs);
    assert_int_equal(n, 4);
    assert_int_equal(jobs[1].next_attempt_ms, f->tb + 110);
    assert_string_equal(jobs[2].event_id, ev[2]);
    assert_string_equal(jobs[3].event_id, ev[3]);
    for (i = 1; i < n; i++)
        assert_true(jobs[i - 1].next_attempt_ms <= jobs[i].next_attempt_ms);
    vh_delivery_job_recs_free(jobs, n);
    vh_delivery_job_recs_free(first, 2);
}

/*
 * vh_store_endpoint_update_if writes only over the row its caller read: each field an
 * update writes, changed by another writer meanwhile, makes it VH_ESTATE with nothing
 * written; the row as read again goes through.
 */
static void an_update_over_a_changed_endpoint_is_refused(void **state)
{
    struct fixture *f = *state;
    struct vh_error err = VH_ERROR_INIT;
    struct vh_endpoint seen, mine, theirs, got;
    struct vh_partner p;
    int i;

    new_partner(f->st, "ReadModifyWrite", &p);
    new_endpoint(f->st, p.id, "rmw", &seen);
    for (i = 0; i < 6; i++) {
        assert_int_equal(vh_store_endpoint_get(f->st, p.id, seen.id, &seen, &err), 0);
        theirs = seen;
        switch (i) {
        case 0:
            snprintf(theirs.label, sizeof(theirs.label), "%s", "renamed");
            break;
        case 1:
            snprintf(theirs.url, sizeof(theirs.url), "%s", "https://example.com/moved");
            break;
        case 2:
            snprintf(theirs.secret, sizeof(theirs.secret), "whsec_%064d", 7);
            break;
        case 3:
            theirs.enabled = !seen.enabled;
            break;
        case 4:
            snprintf(theirs.retry_schedule, sizeof(theirs.retry_schedule), "%s", "0,1m");
            break;
        default:
            theirs.timeout_ms = 1234;
        }
        assert_int_equal(vh_store_endpoint_update(f->st, &theirs, &err), 0);
        mine = seen;
        snprintf(mine.url, sizeof(mine.url), "https://example.com/mine-%d", i);
        assert_int_equal(vh_store_endpoint_update_if(f->st, &seen, &mine, &err), VH_ESTATE);
        assert_non_null(strstr(err.msg, "changed since it was read"));
        vh_error_clear(&err);
        assert_int_equal(vh_store_endpoint_get(f->st, p.id, seen.id, &got, &err), 0);
        /* theirs stands */
        assert_string_equal(got.label, theirs.label);
        assert_string_equal(got.url, theirs.url);
        assert_string_equal(got.secret, theirs.secret);
        assert_int_equal(got.enabled, theirs.enabled);
        assert_string_equal(got.retry_schedule, theirs.retry_schedule);
        assert_int_equal(got.timeout_ms, theirs.timeout_ms);
        /* read again, it goes through */
        mine = got;
        snprintf(mine.url, sizeof(mine.url), "https://example.com/mine-%d", i);
        assert_int_equal(vh_store_endpoint_update_if(f->st, &got, &mine, &err), 0);
        assert_int_equal(vh_store_endpoint_get(f->st, p.id, seen.id, &got, &err), 0);
        assert_string_equal(got.url, mine.url);
        assert_string_equal(got.secret, theirs.secret);
        assert_int_equal(got.timeout_ms, theirs.timeout_ms);
    }
    assert_int_equal(vh_store_endpoint_update_if(f->st, NULL, &mine, &err), VH_EINVAL);
}

static void claim_carries_endpoint_overrides(void **state)
{
    struct fixture *f = *state;
    struct vh_error err = VH_ERROR_INIT;
    struct vh_delivery_job_rec *jobs = NULL;
    struct vh_endpoint ep, got;
    struct vh_partner p;
    size_t n;

    new_partner(f->st, "Overrides", &p);
    new_endpoint(f->st, p.id, "slow", &ep);
    snprintf(ep.retry_schedule, sizeof(ep.retry_schedule), "%s", "5s,5m,30m,2h");
    ep.timeout_ms = 2500;
    assert_int_equal(vh_store_endpoint_update(f->st, &ep, &err), 0);
    assert_int_equal(vh_store_endpoint_get(f->st, p.id, ep.id, &got, &err), 0);
    assert_string_equal(got.retry_schedule, "5s,5m,30m,2h");
    assert_int_equal(got.timeout_ms, 2500);

    put_event(f->st, p.id, f->tb, NULL);
    n = claim_own(f, f->node, f->tb, LEASE_MS, 5, p.id, &jobs);
    assert_int_equal(n, 1);
    assert_string_equal(jobs[0].retry_schedule, "5s,5m,30m,2h");
    assert_int_equal(jobs[0].timeout_ms, 2500);
    vh_delivery_job_recs_free(jobs, n);

    /* Back to the server's: "" and 0. */
    ep.retry_schedule[0] = '\0';
    ep.timeout_ms = 0;
    assert_int_equal(vh_store_endpoint_update(f->st, &ep, &err), 0);
    assert_int_equal(vh_store_endpoint_get(f->st, p.id, ep.id, &got, &err), 0);
    assert_string_equal(got.retry_schedule, "");
    assert_int_equal(got.timeout_ms, 0);

    /* The store keeps odd bytes and bad timeouts out. */
    snprintf(ep.retry_schedule, sizeof(ep.retry_schedule), "%s", "5s;DROP");
    assert_int_equal(vh_store_endpoint_update(f->st, &ep, &err), VH_EINVAL);
    assert_non_null(strstr(err.msg, "retry schedule"));
    ep.retry_schedule[0] = '\0';
    ep.timeout_ms = -1;
    assert_int_equal(vh_store_endpoint_update(f->st, &ep, NULL), VH_EINVAL);
    ep.timeout_ms = VH_ENDPOINT_TIMEOUT_MAX_MS + 1;
    assert_int_equal(vh_store_endpoint_update(f->st, &ep, NULL), VH_EINVAL);
}

static void claim_rejects_bad_arguments(void **state)
{
    struct fixture *f = *state;
    struct vh_error err = VH_ERROR_INIT;
    struct vh_delivery_job_rec *jobs = (struct vh_delivery_job_rec *)&err; /* sentinel */
    size_t n = 77;

    assert_int_equal(vh_store_delivery_claim(f->st, "", f->tb, LEASE_MS, 1, &jobs, &n, &err),
                     VH_EINVAL);
    assert_non_null(strstr(err.msg, "node id"));
    assert_int_equal(vh_store_delivery_claim(f->st, "a b", f->tb, LEASE_MS, 1, &jobs, &n, NULL),
                     VH_EINVAL);
    assert_int_equal(vh_store_delivery_claim(f->st, NULL, f->tb, LEASE_MS, 1, &jobs, &n, NULL),
                     VH_EINVAL);
    assert_int_equal(vh_store_delivery_claim(f->st, "n", f->tb, 0, 1, &jobs, &n, NULL), VH_EINVAL);
    assert_int_equal(
        vh_store_delivery_claim(f->st, "n", f->tb, VH_LEASE_MAX_MS + 1, 1, &jobs, &n, NULL),
        VH_EINVAL);
    assert_int_equal(vh_store_delivery_claim(f->st, "n", f->tb, LEASE_MS, 0, &jobs, &n, NULL),
                     VH_EINVAL);
    assert_int_equal(
        vh_store_delivery_claim(f->st, "n", f->tb, LEASE_MS, VH_CLAIM_MAX + 1, &jobs, &n, NULL),
        VH_EINVAL);
    assert_int_equal(vh_store_delivery_claim(f->st, "n", -1, LEASE_MS, 1, &jobs, &n, NULL),
                     VH_EINVAL);
    assert_int_equal(vh_store_delivery_claim(f->st, "n", f->tb, LEASE_MS, 1, NULL, &n, NULL),
                     VH_EINVAL);
    /* Failure leaves the out-parameters alone. */
    assert_ptr_equal(jobs, (struct vh_delivery_job_rec *)&err);
    assert_int_equal(n, 77);
    vh_delivery_job_recs_free(NULL, 0);
    vh_delivery_job_rec_release(NULL);
}

/* ---- recover ------------------------------------------------------------------------------- */

static void recover_takes_back_expired_leases(void **state)
{
    struct fixture *f = *state;
    struct vh_delivery_job_rec *jobs = NULL, *again = NULL;
    char ev[VH_UUID_LEN + 1];
    struct vh_delivery_brief b;
    struct vh_endpoint ep;
    struct vh_partner p;
    const int64_t now = f->tb + 100;
    size_t n;
    int rc;

    new_partner(f->st, "Recover", &p);
    new_endpoint(f->st, p.id, "primary", &ep);
    put_event(f->st, p.id, f->tb, ev);
    put_event(f->st, p.id, f->tb, NULL);
    n = claim_own(f, f->node, now, 1000, 10, p.id, &jobs);
    assert_int_equal(n, 2);

    /* Not yet expired: nothing to do. */
    rc = vh_store_delivery_recover(f->st, NULL, now + 999, NULL);
    assert_true(rc >= 0);
    if (f->fresh)
        assert_int_equal(rc, 0);
    b = brief_of(f->st, ev);
    assert_string_equal(b.state, "in_flight");

    /* The lease ends at now + 1000: pending again, due at once, attempts unchanged. */
    rc = vh_store_delivery_recover(f->st, NULL, now + 1000, NULL);
    assert_true(rc >= 2);
    if (f->fresh)
        assert_int_equal(rc, 2);
    b = brief_of(f->st, ev);
    assert_string_equal(b.state, "pending");
    assert_int_equal(b.next_attempt_ms, now + 1000);
    assert_int_equal(b.attempts, 0);

    n = claim_own(f, "second-node", now + 1000, LEASE_MS, 10, p.id, &again);
    assert_int_equal(n, 2);
    assert_int_equal(again[0].attempts, 0);
    vh_delivery_job_recs_free(jobs, 2);
    vh_delivery_job_recs_free(again, n);
}

static void recover_at_start_up_takes_this_nodes_claims(void **state)
{
    struct fixture *f = *state;
    struct vh_delivery_job_rec *jobs = NULL;
    char ev[VH_UUID_LEN + 1];
    struct vh_delivery_brief b;
    struct vh_endpoint ep;
    struct vh_partner p;
    size_t n;

    new_partner(f->st, "Restart", &p);
    new_endpoint(f->st, p.id, "primary", &ep);
    put_event(f->st, p.id, f->tb, ev);
    n = claim_own(f, f->node, f->tb, LEASE_MS, 10, p.id, &jobs);
    assert_int_equal(n, 1);
    vh_delivery_job_recs_free(jobs, n);

    /* Another node's restart leaves this node's live lease alone. */
    assert_true(vh_store_delivery_recover(f->st, "some-other-node", f->tb + 1, NULL) >= 0);
    b = brief_of(f->st, ev);
    assert_string_equal(b.state, "in_flight");
    /* This node restarting takes its own claims back at once, lease or not. */
    assert_true(vh_store_delivery_recover(f->st, f->node, f->tb + 1, NULL) >= 1);
    b = brief_of(f->st, ev);
    assert_string_equal(b.state, "pending");
    assert_int_equal(b.next_attempt_ms, f->tb + 1);

    assert_int_equal(vh_store_delivery_recover(f->st, "bad node", f->tb, NULL), VH_EINVAL);
    assert_int_equal(vh_store_delivery_recover(f->st, NULL, -5, NULL), VH_EINVAL);
}

/*
 * A node that knows every claim under its name is an orphan takes back those only: no lease
 * is read, so however late the clock says it is, another node's claim stays its own.
 */
static void recover_node_takes_only_this_nodes_claims(void **state)
{
    struct fixture *f = *state;
    struct vh_delivery_job_rec *mine = NULL, *theirs = NULL;
    char ev_mine[VH_UUID_LEN + 1], ev_theirs[VH_UUID_LEN + 1];
    struct vh_delivery_brief b;
    struct vh_endpoint ep;
    struct vh_partner p;
    const int64_t late = f->tb + 365LL * 24 * 3600 * 1000;
    int rc;

    new_partner(f->st, "Orphans", &p);
    new_endpoint(f->st, p.id, "primary", &ep);
    put_event(f->st, p.id, f->tb, ev_mine);
    assert_int_equal(claim_own(f, f->node, f->tb, 1000, 10, p.id, &mine), 1);
    put_event(f->st, p.id, f->tb, ev_theirs);
    assert_int_equal(claim_own(f, "other-node", f->tb, 1000, 10, p.id, &theirs), 1);

    rc = vh_store_delivery_recover_node(f->st, f->node, late, NULL);
    assert_true(rc >= 1);
    if (f->fresh)
        assert_int_equal(rc, 1);
    b = brief_of(f->st, ev_mine);
    assert_string_equal(b.state, "pending");
    assert_int_equal(b.next_attempt_ms, late);
    b = brief_of(f->st, ev_theirs);
    assert_string_equal(b.state, "in_flight"); /* its lease ended long ago: not read */
    /* The lease-reading recovery would take it. */
    assert_true(vh_store_delivery_recover(f->st, NULL, late, NULL) >= 1);
    b = brief_of(f->st, ev_theirs);
    assert_string_equal(b.state, "pending");

    assert_int_equal(vh_store_delivery_recover_node(f->st, NULL, late, NULL), VH_EINVAL);
    assert_int_equal(vh_store_delivery_recover_node(f->st, "bad node", late, NULL), VH_EINVAL);
    vh_delivery_job_recs_free(mine, 1);
    vh_delivery_job_recs_free(theirs, 1);
}

/* ---- record ---------------------------------------------------------------------------------- */

static void record_writes_a_mixed_batch_at_once(void **state)
{
    struct fixture *f = *state;
    static const char head[] = "{\"ok\":false}\0tail";
    struct vh_delivery_job_rec *jobs = NULL;
    struct vh_delivery_result r[4];
    struct vh_attempt_info *att = NULL;
    struct vh_delivery_info info;
    char ev[4][VH_UUID_LEN + 1];
    struct vh_endpoint ep, got;
    struct vh_delivery_brief b;
    struct vh_partner p;
    int64_t attempts0;
    size_t n, na, i;

    new_partner(f->st, "Batch", &p);
    new_endpoint(f->st, p.id, "primary", &ep);
    for (i = 0; i < 4; i++)
        put_event(f->st, p.id, f->tb + (int64_t)i, ev[i]);
    n = claim_own(f, f->node, f->tb + 10, LEASE_MS, 10, p.id, &jobs);
    assert_int_equal(n, 4);
    attempts0 = count(f->st, "attempts");

    fill_result(&r[0], &jobs[0], f->node, f->tb + 100, 200, "succeeded", 0);
    r[0].response_head = head;
    r[0].response_len = sizeof(head) - 1;
    fill_result(&r[1], &jobs[1], f->node, f->tb + 200, 503, "pending", f->tb + 1200);
    fill_result(&r[2], &jobs[2], f->node, f->tb + 300, 0, "abandoned", 0);
    r[2].error_class = "timeout";
    r[2].error = "Operation timed out after 10000 milliseconds\nwith 0 bytes received";
    fill_result(&r[3], &jobs[3], f->node, f->tb + 400, 0, "pending", f->tb + 400);
    r[3].error_class = "interrupted";
    r[3].interrupted = true;
    /*
     * Results may name their endpoint and row as the claim gave them (the sender's case) or
     * not.
     */
    r[1].endpoint_id = jobs[1].endpoint_id;
    r[1].row = jobs[1].row;
    r[2].endpoint_id = jobs[2].endpoint_id;
    r[2].row = jobs[2].row;
    r[3].endpoint_id = "not an id";
    assert_int_equal(vh_store_delivery_record(f->st, r, 4, NULL), VH_EINVAL);
    r[3].endpoint_id = jobs[3].endpoint_id;
    r[3].row = -1;
    assert_int_equal(vh_store_delivery_record(f->st, r, 4, NULL), VH_EINVAL);
    r[3].row = jobs[3].row;
    record(f->st, r, 4);

    assert_int_equal(count(f->st, "attempts"), attempts0 + 3);
    b = brief_of(f->st, ev[0]);
    assert_string_equal(b.state, "succeeded");
    assert_int_equal(b.attempts, 1);
    b = brief_of(f->st, ev[1]);
    assert_string_equal(b.state, "pending");
    assert_int_equal(b.attempts, 1);
    assert_int_equal(b.next_attempt_ms, f->tb + 1200);
    b = brief_of(f->st, ev[2]);
    assert_string_equal(b.state, "abandoned");
    assert_int_equal(b.attempts, 1);
    b = brief_of(f->st, ev[3]);
    assert_string_equal(b.state, "pending");
    assert_int_equal(b.attempts, 0);
    assert_int_equal(b.next_attempt_ms, f->tb + 400);

    /* The attempts as recorded. */
    get(f->st, p.id, jobs[0].delivery_id, &info, &att, &na);
    assert_int_equal(na, 1);
    assert_int_equal(att[0].n, 1);
    assert_int_equal(att[0].started_ms, f->tb + 100);
    assert_int_equal(att[0].duration_ms, 25);
    assert_int_equal(att[0].http_status, 200);
    assert_string_equal(att[0].error_class, "");
    assert_int_equal(att[0].response_len, sizeof(head) - 1);
    assert_memory_equal(att[0].response_head, head, sizeof(head) - 1);
    assert_int_equal(info.last_http_status, 200);
    assert_int_equal(info.last_attempt_ms, f->tb + 100);
    vh_free(att);
    get(f->st, p.id, jobs[2].delivery_id, &info, &att, &na);
    assert_int_equal(na, 1);
    assert_int_equal(att[0].http_status, 0);
    assert_string_equal(att[0].error_class, "timeout");
    assert_string_equal(att[0].error, "Operation timed out after 10000 milliseconds");
    assert_int_equal(att[0].response_len, 0);
    assert_string_equal(info.last_error_class, "timeout");
    assert_int_equal(info.next_attempt_ms, 0); /* final */
    vh_free(att);
    get(f->st, p.id, jobs[3].delivery_id, &info, &att, &na);
    assert_int_equal(na, 0);
    assert_null(att);
    assert_int_equal(info.last_attempt_ms, 0);

    /* The endpoint shows the latest counted attempt: the abandoned one's failure. */
    assert_int_equal(vh_store_endpoint_get(f->st, p.id, ep.id, &got, NULL), 0);
    assert_int_equal(got.last_delivery_ms, f->tb + 300);
    assert_int_equal(got.last_delivery_status, VH_OUTCOME_FAILED);
    vh_delivery_job_recs_free(jobs, n);
}

/*
 * A batch with no interrupted result, of every other kind: new outcomes (one with a head
 * of bytes an array literal must quote, one with an error line of them), a late report
 * for a delivery taken back (it counts), and one for a delivery another node has claimed
 * since (history only). PostgreSQL writes such a batch in one statement (S_RECORD_MANY);
 * it must do what a statement per result does.
 */
static void record_writes_a_batch_of_every_kind_in_one_go(void **state)
{
    struct fixture *f = *state;
    static const char head[] = "{\"a\\\\b\",} NULL \\x00\0tail'";
    static const char error[] = "said \"no\" \\ {x,y} \xc3\xa9";
    struct vh_delivery_job_rec *fresh = NULL, *a = NULL, *b = NULL;
    struct vh_attempt_info *att = NULL;
    struct vh_delivery_result r[5];
    struct vh_delivery_info info;
    char ev[5][VH_UUID_LEN + 1];
    struct vh_delivery_brief d;
    struct vh_endpoint ep;
    struct vh_partner p;
    size_t i, na;

    new_partner(f->st, "OneGo", &p);
    new_endpoint(f->st, p.id, "primary", &ep);
    for (i = 0; i < 3; i++)
        put_event(f->st, p.id, f->tb, ev[i]);
    assert_int_equal(claim_own(f, f->node, f->tb, LEASE_MS, 10, p.id, &fresh), 3);
    /* ev[3] and ev[4]: node A's leases run out; node B takes ev[3] over. */
    put_event(f->st, p.id, f->tb + 10, ev[3]);
    put_event(f->st, p.id, f->tb + 11, ev[4]);
    assert_int_equal(claim_own(f, "node-a", f->tb + 11, 100, 10, p.id, &a), 2);
    assert_true(vh_store_delivery_recover(f->st, NULL, f->tb + 200, NULL) >= 2);
    assert_int_equal(claim_own(f, "node-b", f->tb + 200, LEASE_MS, 1, p.id, &b), 1);
    assert_string_equal(b[0].event_id, a[0].event_id);

    fill_result(&r[0], &fresh[0], f->node, f->tb + 300, 200, "succeeded", 0);
    r[0].response_head = head;
    r[0].response_len = sizeof(head) - 1;
    fill_result(&r[1], &fresh[1], f->node, f->tb + 301, 503, "pending", f->tb + 1300);
    fill_result(&r[2], &fresh[2], f->node, f->tb + 302, 0, "abandoned", 0);
    r[2].error_class = "timeout";
    r[2].error = error;
    fill_result(&r[3], &a[1], "node-a", f->tb + 20, 500, "pending", f->tb + 1020);
    fill_result(&r[4], &a[0], "node-a", f->tb + 21, 502, "pending", f->tb + 1021);
    record(f->st, r, 5);

    d = brief_of(f->st, fresh[0].event_id);
    assert_string_equal(d.state, "succeeded");
    assert_int_equal(d.attempts, 1);
    d = brief_of(f->st, fresh[1].event_id);
    assert_string_equal(d.state, "pending");
    assert_int_equal(d.attempts, 1);
    assert_int_equal(d.next_attempt_ms, f->tb + 1300);
    d = brief_of(f->st, fresh[2].event_id);
    assert_string_equal(d.state, "abandoned");
    /* The late report of the delivery taken back counts; B's claim is not moved. */
    d = brief_of(f->st, a[1].event_id);
    assert_string_equal(d.state, "pending");
    assert_int_equal(d.attempts, 1);
    d = brief_of(f->st, a[0].event_id);
    assert_string_equal(d.state, "in_flight");
    assert_int_equal(d.attempts, 0);

    get(f->st, p.id, fresh[0].delivery_id, &info, &att, &na);
    assert_int_equal(na, 1);
    assert_int_equal(att[0].response_len, sizeof(head) - 1);
    assert_memory_equal(att[0].response_head, head, sizeof(head) - 1);
    vh_free(att);
    get(f->st, p.id, fresh[2].delivery_id, &info, &att, &na);
    assert_int_equal(na, 1);
    assert_string_equal(att[0].error_class, "timeout");
    assert_string_equal(att[0].error, error);
    vh_free(att);
    get(f->st, p.id, a[1].delivery_id, &info, &att, &na);
    assert_int_equal(na, 1);
    assert_int_equal(att[0].http_status, 500);
    assert_int_equal(att[0].started_ms, f->tb + 20);
    vh_free(att);
    get(f->st, p.id, a[0].delivery_id, &info, &att, &na);
    assert_int_equal(na, 1); /* history: A's report is kept under its number */
    assert_int_equal(att[0].http_status, 502);
    vh_free(att);
    vh_delivery_job_recs_free(fresh, 3);
    vh_delivery_job_recs_free(a, 2);
    vh_delivery_job_recs_free(b, 1);
}

/*
 * One batch that reports the same attempt twice, between others (a refused batch recorded
 * again with what finished since can repeat a report): the first moves the delivery, the
 * copy changes nothing, and the others are recorded as well. On PostgreSQL such a batch
 * cannot take the one statement (S_RECORD_MANY would update one attempt twice in one
 * statement, an error), so record_set_fits must find the copy among many ids.
 */
static void record_with_a_report_twice_in_one_batch(void **state)
{
    struct fixture *f = *state;
    struct vh_delivery_job_rec *jobs = NULL;
    struct vh_delivery_result r[6];
    struct vh_attempt_info *att = NULL;
    struct vh_delivery_info info;
    struct vh_delivery_brief d;
    struct vh_endpoint ep;
    struct vh_partner p;
    size_t i, na;

    new_partner(f->st, "Twice", &p);
    new_endpoint(f->st, p.id, "primary", &ep);
    for (i = 0; i < 5; i++)
        put_event(f->st, p.id, f->tb + (int64_t)i, NULL);
    assert_int_equal(claim_own(f, f->node, f->tb + 10, LEASE_MS, 10, p.id, &jobs), 5);
    for (i = 0; i < 5; i++)
        fill_result(&r[i], &jobs[i], f->node, f->tb + 100 + (int64_t)i, 204, "succeeded", 0);
    r[5] = r[1]; /* the copy, last, apart from its original */
    record(f->st, r, 6);
    for (i = 0; i < 5; i++) {
        d = brief_of(f->st, jobs[i].event_id);
        assert_string_equal(d.state, "succeeded");
        assert_int_equal(d.attempts, 1);
        get(f->st, p.id, jobs[i].delivery_id, &info, &att, &na);
        assert_int_equal(na, 1);
        assert_int_equal(att[0].http_status, 204);
        vh_free(att);
    }
    vh_delivery_job_recs_free(jobs, 5);
}

/*
 * A result whose row is another delivery's (a caller's bug) still moves its own delivery
 * on, and only it: the row spares a search, it never decides which delivery is meant.
 */
static void record_with_a_wrong_row_moves_the_right_delivery(void **state)
{
    struct fixture *f = *state;
    struct vh_delivery_job_rec *jobs = NULL;
    struct vh_delivery_result r;
    struct vh_attempt_info *att = NULL;
    struct vh_delivery_info info;
    char ev[2][VH_UUID_LEN + 1];
    struct vh_endpoint ep;
    struct vh_delivery_brief b;
    struct vh_partner p;
    size_t n, na;

    new_partner(f->st, "Rows", &p);
    new_endpoint(f->st, p.id, "primary", &ep);
    put_event(f->st, p.id, f->tb, ev[0]);
    put_event(f->st, p.id, f->tb + 1, ev[1]);
    n = claim_own(f, f->node, f->tb + 10, LEASE_MS, 10, p.id, &jobs);
    assert_int_equal(n, 2);
    if (jobs[0].row != 0) /* SQLite hands rows out; PostgreSQL does not */
        assert_int_not_equal(jobs[0].row, jobs[1].row);

    fill_result(&r, &jobs[0], f->node, f->tb + 100, 204, "succeeded", 0);
    r.endpoint_id = jobs[0].endpoint_id;
    r.row = jobs[1].row ? jobs[1].row : 12345;
    record(f->st, &r, 1);
    b = brief_of(f->st, ev[0]);
    assert_string_equal(b.state, "succeeded");
    assert_int_equal(b.attempts, 1);
    b = brief_of(f->st, ev[1]);
    assert_string_equal(b.state, "in_flight");
    assert_int_equal(b.attempts, 0);
    get(f->st, p.id, jobs[0].delivery_id, &info, &att, &na);
    assert_int_equal(na, 1);
    assert_int_equal(att[0].http_status, 204);
    vh_free(att);
    att = NULL;
    get(f->st, p.id, jobs[1].delivery_id, &info, &att, &na);
    assert_int_equal(na, 0);
    vh_free(att);

    /* The other one, with its own row, moves on too. */
    fill_result(&r, &jobs[1], f->node, f->tb + 200, 204, "succeeded", 0);
    r.endpoint_id = jobs[1].endpoint_id;
    r.row = jobs[1].row;
    record(f->st, &r, 1);
    b = brief_of(f->st, ev[1]);
    assert_string_equal(b.state, "succeeded");
    vh_delivery_job_recs_free(jobs, n);
}

static void record_keeps_long_heads_short(void **state)
{
    struct fixture *f = *state;
    struct vh_delivery_job_rec *jobs = NULL;
    struct vh_attempt_info *att = NULL;
    struct vh_delivery_info info;
    struct vh_delivery_result r;
    char head[3000], error[600];
    struct vh_endpoint ep;
    struct vh_partner p;
    size_t n, na;

    new_partner(f->st, "Heads", &p);
    new_endpoint(f->st, p.id, "primary", &ep);
    put_event(f->st, p.id, f->tb, NULL);
    n = claim_own(f, f->node, f->tb, LEASE_MS, 10, p.id, &jobs);
    assert_int_equal(n, 1);
    memset(head, 'h', sizeof(head));
    memset(error, 'e', sizeof(error));
    /* "é" straddles the cut at VH_ATTEMPT_ERROR_LEN: it goes whole. */
    error[VH_ATTEMPT_ERROR_LEN - 1] = (char)0xc3;
    error[VH_ATTEMPT_ERROR_LEN] = (char)0xa9;
    error[sizeof(error) - 1] = '\0';
    fill_result(&r, &jobs[0], f->node, f->tb, 500, "abandoned", 0);
    r.response_head = head;
    r.response_len = sizeof(head);
    r.error = error;
    record(f->st, &r, 1);
    get(f->st, p.id, jobs[0].delivery_id, &info, &att, &na);
    assert_int_equal(na, 1);
    assert_int_equal(att[0].response_len, VH_STORED_HEAD_MAX);
    assert_int_equal(att[0].response_head[VH_STORED_HEAD_MAX], '\0');
    assert_int_equal(strlen(att[0].error), VH_ATTEMPT_ERROR_LEN - 1);
    vh_free(att);
    vh_delivery_job_recs_free(jobs, n);
}

static void record_is_all_or_nothing(void **state)
{
    struct fixture *f = *state;
    struct vh_error err = VH_ERROR_INIT;
    struct vh_delivery_job_rec *jobs = NULL;
    struct vh_delivery_result r[2];
    char ev[VH_UUID_LEN + 1], ghost[VH_UUID_LEN + 1];
    struct vh_delivery_brief b;
    struct vh_endpoint ep, got;
    struct vh_partner p;
    int64_t attempts0;
    size_t n;

    new_partner(f->st, "Atomic", &p);
    new_endpoint(f->st, p.id, "primary", &ep);
    put_event(f->st, p.id, f->tb, ev);
    n = claim_own(f, f->node, f->tb, LEASE_MS, 10, p.id, &jobs);
    assert_int_equal(n, 1);
    attempts0 = count(f->st, "attempts");

    /* The second result names no delivery: the first is not written either. */
    assert_int_equal(vh_uuid_new(ghost, NULL), 0);
    fill_result(&r[0], &jobs[0], f->node, f->tb + 5, 200, "succeeded", 0);
    fill_result(&r[1], &jobs[0], f->node, f->tb + 5, 200, "succeeded", 0);
    r[1].delivery_id = ghost;
    assert_int_equal(vh_store_delivery_record(f->st, r, 2, &err), VH_ENOTFOUND);
    assert_non_null(strstr(err.msg, ghost));
    assert_int_equal(count(f->st, "attempts"), attempts0);
    /* The same with the claim's row and endpoint, the sender's way: the id decides. */
    r[1].endpoint_id = jobs[0].endpoint_id;
    r[1].row = jobs[0].row;
    vh_error_clear(&err);
    assert_int_equal(vh_store_delivery_record(f->st, r, 2, &err), VH_ENOTFOUND);
    assert_non_null(strstr(err.msg, ghost));
    assert_int_equal(count(f->st, "attempts"), attempts0);
    b = brief_of(f->st, ev);
    assert_string_equal(b.state, "in_flight");
    assert_int_equal(vh_store_endpoint_get(f->st, p.id, ep.id, &got, NULL), 0);
    assert_int_equal(got.last_delivery_status, VH_OUTCOME_NONE);

    /* Bad results are refused before anything is written; msg names the index. */
    r[1] = r[0];
    r[1].new_state = "canceled";
    vh_error_clear(&err);
    assert_int_equal(vh_store_delivery_record(f->st, r, 2, &err), VH_EINVAL);
    assert_non_null(strstr(err.msg, "result 1"));
    r[1] = r[0];
    r[1].error_class = "timeout"; /* a failure cannot be 'succeeded' */
    assert_int_equal(vh_store_delivery_record(f->st, r, 2, NULL), VH_EINVAL);
    r[1] = r[0];
    r[1].new_state = "pending"; /* a success must be 'succeeded' */
    assert_int_equal(vh_store_delivery_record(f->st, r, 2, NULL), VH_EINVAL);
    r[1] = r[0];
    r[1].interrupted = true; /* an interrupted attempt is no success */
    assert_int_equal(vh_store_delivery_record(f->st, r, 2, NULL), VH_EINVAL);
    r[1] = r[0];
    r[1].attempt = 0;
    assert_int_equal(vh_store_delivery_record(f->st, r, 2, NULL), VH_EINVAL);
    r[1] = r[0];
    r[1].http_status = 1000;
    assert_int_equal(vh_store_delivery_record(f->st, r, 2, NULL), VH_EINVAL);
    r[1] = r[0];
    r[1].duration_ms = -1;
    assert_int_equal(vh_store_delivery_record(f->st, r, 2, NULL), VH_EINVAL);
    r[1] = r[0];
    r[1].error_class = "Bad Class";
    r[1].new_state = "abandoned";
    assert_int_equal(vh_store_delivery_record(f->st, r, 2, NULL), VH_EINVAL);
    r[1] = r[0];
    r[1].response_len = 3; /* without data */
    assert_int_equal(vh_store_delivery_record(f->st, r, 2, NULL), VH_EINVAL);
    r[1] = r[0];
    r[1].node_id = NULL;
    assert_int_equal(vh_store_delivery_record(f->st, r, 2, NULL), VH_EINVAL);
    assert_int_equal(vh_store_delivery_record(f->st, r, 0, NULL), VH_EINVAL);
    assert_int_equal(vh_store_delivery_record(f->st, NULL, 1, NULL), VH_EINVAL);
    assert_int_equal(count(f->st, "attempts"), attempts0);

    record(f->st, r, 1);
    b = brief_of(f->st, ev);
    assert_string_equal(b.state, "succeeded");
    vh_delivery_job_recs_free(jobs, n);
}

static void canceled_meanwhile_stays_canceled(void **state)
{
    struct fixture *f = *state;
    struct vh_error err = VH_ERROR_INIT;
    struct vh_delivery_job_rec *jobs = NULL, *again = NULL;
    struct vh_attempt_info *att = NULL;
    struct vh_delivery_info info;
    struct vh_delivery_result r;
    char ev[VH_UUID_LEN + 1];
    struct vh_endpoint ep, got;
    struct vh_delivery_brief b;
    struct vh_partner p;
    int64_t attempts0;
    size_t n, na;

    new_partner(f->st, "Cancel", &p);
    new_endpoint(f->st, p.id, "primary", &ep);
    put_event(f->st, p.id, f->tb, ev);
    n = claim_own(f, f->node, f->tb, LEASE_MS, 10, p.id, &jobs);
    assert_int_equal(n, 1);

    /* Disabled while the attempt is out: canceled at once. */
    set_enabled(f->st, &ep, false, f->tb + 10);
    b = brief_of(f->st, ev);
    assert_string_equal(b.state, "canceled");
    /* Its lease ends: there is nothing to put back, it is not in flight any more. */
    if (f->fresh)
        assert_int_equal(vh_store_delivery_recover(f->st, NULL, f->tb + LEASE_MS, NULL), 0);
    b = brief_of(f->st, ev);
    assert_string_equal(b.state, "canceled");

    /* The attempt comes back: its row is kept, the state is not touched. */
    attempts0 = count(f->st, "attempts");
    fill_result(&r, &jobs[0], f->node, f->tb + 1, 200, "succeeded", 0);
    record(f->st, &r, 1);
    assert_int_equal(count(f->st, "attempts"), attempts0 + 1);
    b = brief_of(f->st, ev);
    assert_string_equal(b.state, "canceled");
    assert_int_equal(b.attempts, 1); /* the attempt was made */
    assert_int_equal(vh_store_endpoint_get(f->st, p.id, ep.id, &got, NULL), 0);
    assert_int_equal(got.last_delivery_status, VH_OUTCOME_SUCCEEDED);
    assert_int_equal(got.last_delivery_ms, f->tb + 1);

    /* A retry needs the endpoint enabled; then the schedule restarts, numbers go on. */
    assert_int_equal(vh_store_delivery_retry(f->st, p.id, jobs[0].delivery_id, f->tb + 20, &err),
                     VH_ECONFLICT);
    assert_non_null(strstr(err.msg, "is disabled"));
    set_enabled(f->st, &ep, true, f->tb + 30);
    assert_int_equal(vh_store_delivery_retry(f->st, p.id, jobs[0].delivery_id, f->tb + 40, &err),
                     0);
    n = claim_own(f, f->node, f->tb + 40, LEASE_MS, 10, p.id, &again);
    assert_int_equal(n, 1);
    assert_int_equal(again[0].attempts, 1);
    assert_int_equal(again[0].attempt_base, 1);
    fill_result(&r, &again[0], f->node, f->tb + 50, 500, "pending", f->tb + 1050);
    assert_int_equal(r.attempt, 2);
    record(f->st, &r, 1);
    get(f->st, p.id, jobs[0].delivery_id, &info, &att, &na);
    assert_int_equal(na, 2);
    assert_int_equal(att[0].n, 1);
    assert_int_equal(att[0].http_status, 200);
    assert_int_equal(att[1].n, 2);
    assert_int_equal(att[1].http_status, 500);
    assert_string_equal(info.state, "pending");
    assert_int_equal(info.attempts, 2);
    assert_int_equal(info.attempt_base, 1);
    vh_free(att);

    /* Deleted while in flight: canceled too, and retrying is refused for good. */
    vh_delivery_job_recs_free(again, n);
    n = claim_own(f, f->node, f->tb + 1050, LEASE_MS, 10, p.id, &again);
    assert_int_equal(n, 1);
    assert_int_equal(vh_store_endpoint_delete(f->st, p.id, ep.id, f->tb + 1060, NULL), 0);
    fill_result(&r, &again[0], f->node, f->tb + 1055, 200, "succeeded", 0);
    record(f->st, &r, 1);
    b = brief_of(f->st, ev);
    assert_string_equal(b.state, "canceled");
    assert_int_equal(b.attempts, 3);
    vh_error_clear(&err);
    assert_int_equal(vh_store_delivery_retry(f->st, p.id, jobs[0].delivery_id, f->tb + 2000, &err),
                     VH_ECONFLICT);
    assert_non_null(strstr(err.msg, "was deleted"));
    vh_delivery_job_recs_free(again, n);
    vh_delivery_job_recs_free(jobs, 1);
}

/*
 * The sender takes back the attempts queued for an endpoint that changed (its URL, secret,
 * enabled flag or existence) and reports them interrupted: a delivery canceled meanwhile
 * (disabled, deleted) stays canceled, with nothing recorded; one still wanted is pending
 * again, due at once, and claimed again with the endpoint as it is now.
 */
static void interrupted_after_an_endpoint_change(void **state)
{
    struct fixture *f = *state;
    struct vh_delivery_job_rec *jobs = NULL, *again = NULL;
    struct vh_delivery_result r;
    char ev[VH_UUID_LEN + 1], ev2[VH_UUID_LEN + 1];
    struct vh_delivery_brief b;
    struct vh_endpoint ep;
    struct vh_partner p;
    int64_t attempts0;
    size_t n;

    new_partner(f->st, "Changed", &p);
    new_endpoint(f->st, p.id, "primary", &ep);
    attempts0 = count(f->st, "attempts");

    /* Disabled while its attempt waited in the queue. */
    put_event(f->st, p.id, f->tb, ev);
    n = claim_own(f, f->node, f->tb, LEASE_MS, 10, p.id, &jobs);
    assert_int_equal(n, 1);
    set_enabled(f->st, &ep, false, f->tb + 10);
    fill_result(&r, &jobs[0], f->node, f->tb + 11, 0, "pending", f->tb + 11);
    r.error_class = "interrupted";
    r.interrupted = true;
    record(f->st, &r, 1);
    b = brief_of(f->st, ev);
    assert_string_equal(b.state, "canceled");
    assert_int_equal(b.attempts, 0);
    assert_int_equal(count(f->st, "attempts"), attempts0);
    vh_delivery_job_recs_free(jobs, n);

    /* A new URL while its attempt waited: claimed again at once, with the new URL. */
    set_enabled(f->st, &ep, true, f->tb + 20);
    put_event(f->st, p.id, f->tb + 20, ev2);
    n = claim_own(f, f->node, f->tb + 20, LEASE_MS, 10, p.id, &jobs);
    assert_int_equal(n, 1);
    assert_string_equal(jobs[0].url, ep.url);
    snprintf(ep.url, sizeof(ep.url), "https://moved.example.com/hook");
    ep.updated_ms = f->tb + 30;
    assert_int_equal(vh_store_endpoint_update(f->st, &ep, NULL), 0);
    fill_result(&r, &jobs[0], f->node, f->tb + 31, 0, "pending", f->tb + 31);
    r.error_class = "interrupted";
    r.interrupted = true;
    record(f->st, &r, 1);
    b = brief_of(f->st, ev2);
    assert_string_equal(b.state, "pending");
    assert_int_equal(b.attempts, 0);
    assert_int_equal(b.next_attempt_ms, f->tb + 31);
    n = claim_own(f, f->node, f->tb + 31, LEASE_MS, 10, p.id, &again);
    assert_int_equal(n, 1);
    assert_string_equal(again[0].delivery_id, jobs[0].delivery_id);
    assert_string_equal(again[0].url, "https://moved.example.com/hook");
    assert_int_equal(again[0].attempts, 0);
    vh_delivery_job_recs_free(jobs, 1);

    /* Deleted while its attempt (the one claimed again) waited. */
    assert_int_equal(vh_store_endpoint_delete(f->st, p.id, ep.id, f->tb + 40, NULL), 0);
    fill_result(&r, &again[0], f->node, f->tb + 41, 0, "pending", f->tb + 41);
    r.error_class = "interrupted";
    r.interrupted = true;
    record(f->st, &r, 1);
    b = brief_of(f->st, ev2);
    assert_string_equal(b.state, "canceled");
    assert_int_equal(b.attempts, 0);
    assert_int_equal(count(f->st, "attempts"), attempts0);
    vh_delivery_job_recs_free(again, 1);
}

/*
 * Canceled while an attempt is out, then re-enabled and retried before that attempt
 * reports: the retry's new budget is not settled by the old attempt (found in review: on
 * SQLite the claim held for the old attempt outlived the retry, so its report, here the
 * last step of the old budget, abandoned the retried delivery).
 */
static void a_retry_is_not_settled_by_the_attempt_before_it(void **state)
{
    struct fixture *f = *state;
    struct vh_error err = VH_ERROR_INIT;
    struct vh_delivery_job_rec *jobs = NULL, *again = NULL;
    struct vh_delivery_result r;
    struct vh_delivery_brief b;
    struct vh_delivery_info info;
    struct vh_attempt_info *att = NULL;
    char ev[VH_UUID_LEN + 1];
    struct vh_endpoint ep;
    struct vh_partner p;
    size_t n, na = 0;

    new_partner(f->st, "CancelRetry", &p);
    new_endpoint(f->st, p.id, "primary", &ep);
    put_event(f->st, p.id, f->tb, ev);
    n = claim_own(f, f->node, f->tb, LEASE_MS, 10, p.id, &jobs);
    assert_int_equal(n, 1);
    set_enabled(f->st, &ep, false, f->tb + 10);
    assert_string_equal(brief_of(f->st, ev).state, "canceled");
    set_enabled(f->st, &ep, true, f->tb + 20);
    if (vh_store_delivery_retry(f->st, p.id, jobs[0].delivery_id, f->tb + 30, &err) < 0)
        fail_msg("retry: %s", err.msg);
    assert_string_equal(brief_of(f->st, ev).state, "pending");

    /* The old attempt fails for good under the old budget: recorded, and nothing more. */
    fill_result(&r, &jobs[0], f->node, f->tb + 40, 500, "abandoned", 0);
    record(f->st, &r, 1);
    b = brief_of(f->st, ev);
    assert_string_equal(b.state, "pending");
    get(f->st, p.id, jobs[0].delivery_id, &info, &att, &na);
    assert_int_equal(na, 1);
    assert_int_equal(att[0].n, 1);
    assert_int_equal(att[0].http_status, 500);
    vh_free(att);

    /* The retried delivery is claimed again, and its attempt is numbered after the old one. */
    n = claim_own(f, f->node, f->tb + 50, LEASE_MS, 10, p.id, &again);
    assert_int_equal(n, 1);
    fill_result(&r, &again[0], f->node, f->tb + 60, 200, "succeeded", 0);
    assert_int_equal(r.attempt, 2);
    record(f->st, &r, 1);
    b = brief_of(f->st, ev);
    assert_string_equal(b.state, "succeeded");
    assert_int_equal(b.attempts, 2);
    vh_delivery_job_recs_free(again, n);
    vh_delivery_job_recs_free(jobs, 1);
}

/*
 * As above, but the retried delivery is claimed again by the same node before the old
 * attempt reports (the retry notifies every node, so the claim follows at once; an old
 * attempt can take up to its timeout). The old attempt's report, the last step of the old
 * budget, must not abandon the new claim, and the new attempt's outcome must count.
 */
static void a_retry_claimed_again_is_not_settled_by_the_attempt_before_it(void **state)
{
    struct fixture *f = *state;
    struct vh_error err = VH_ERROR_INIT;
    struct vh_delivery_job_rec *jobs = NULL, *again = NULL;
    struct vh_delivery_result r;
    struct vh_delivery_brief b;
    char ev[VH_UUID_LEN + 1];
    struct vh_endpoint ep;
    struct vh_partner p;
    size_t n;

    new_partner(f->st, "CancelRetryClaim", &p);
    new_endpoint(f->st, p.id, "primary", &ep);
    put_event(f->st, p.id, f->tb, ev);
    n = claim_own(f, f->node, f->tb, LEASE_MS, 10, p.id, &jobs);
    assert_int_equal(n, 1);
    set_enabled(f->st, &ep, false, f->tb + 10);
    set_enabled(f->st, &ep, true, f->tb + 20);
    if (vh_store_delivery_retry(f->st, p.id, jobs[0].delivery_id, f->tb + 30, &err) < 0)
        fail_msg("retry: %s", err.msg);

    /* The same node claims the retried delivery while the old attempt is still out. */
    n = claim_own(f, f->node, f->tb + 31, LEASE_MS, 10, p.id, &again);
    assert_int_equal(n, 1);

    /* The old attempt fails for good under the old budget: history, not a transition. */
    fill_result(&r, &jobs[0], f->node, f->tb + 40, 500, "abandoned", 0);
    r.lease_until_ms = jobs[0].lease_until_ms; /* as the sender reports it */
    record(f->st, &r, 1);
    b = brief_of(f->st, ev);
    print_message("after the old attempt's report: %s, %d attempt(s)\n", b.state, b.attempts);
    assert_string_equal(b.state, "in_flight");

    /* The new attempt succeeds: it decides the retried delivery. */
    fill_result(&r, &again[0], f->node, f->tb + 60, 200, "succeeded", 0);
    r.lease_until_ms = again[0].lease_until_ms;
    record(f->st, &r, 1);
    b = brief_of(f->st, ev);
    print_message("after the new attempt's report: %s, %d attempt(s)\n", b.state, b.attempts);
    assert_string_equal(b.state, "succeeded");
    vh_delivery_job_recs_free(again, 1);
    vh_delivery_job_recs_free(jobs, 1);
}

/*
 * Checks that delivery `delivery_id` starts its schedule afresh after attempt `number`
 * (the attempt reported late): that attempt is in the history under its own number, the
 * delivery is pending with no attempt of its current schedule used, and its next claim
 * makes attempt 1 of that schedule, numbered `number + 1`.
 */
static void expect_a_fresh_schedule_after(struct fixture *f, const struct vh_partner *p,
                                          const char *delivery_id, unsigned number, int64_t now)
{
    struct vh_delivery_job_rec *again = NULL;
    struct vh_attempt_info *att = NULL;
    struct vh_delivery_info info;
    size_t n, na = 0;

    get(f->st, p->id, delivery_id, &info, &att, &na);
    if (na == 0 || att[na - 1].n != number)
        fail_msg("delivery %s: the late attempt %u is not the newest in its history (%zu rows)",
                 delivery_id, number, na);
    vh_free(att);
    assert_string_equal(info.state, "pending");
    if (info.attempts != number || info.attempt_base != number)
        fail_msg("delivery %s: attempts %u, attempt_base %u after the late attempt %u: its"
                 " current schedule shows %u attempt(s) used, want 0",
                 delivery_id, info.attempts, info.attempt_base, number,
                 info.attempts - info.attempt_base);
    n = claim_own(f, f->node, now, LEASE_MS, 10, p->id, &again);
    assert_int_equal(n, 1);
    if (again[0].attempts - again[0].attempt_base != 0)
        fail_msg("delivery %s: the claim after the late attempt %u is attempt %u of its"
                 " schedule, want 1 (attempts %u, attempt_base %u)",
                 delivery_id, number, again[0].attempts - again[0].attempt_base + 1,
                 again[0].attempts, again[0].attempt_base);
    if (again[0].attempts + 1 != number + 1)
        fail_msg("delivery %s: the claim after the late attempt %u makes attempt number %u,"
                 " want %u",
                 delivery_id, number, again[0].attempts + 1, number + 1);
    vh_delivery_job_recs_free(again, n);
}

/*
 * Canceled while an attempt is out, then re-enabled and retried, and the old attempt
 * reports before the retried delivery is claimed (found in review): the report
 * raised the attempt count so that the next attempt gets a number of its own, but left
 * attempt_base as the retry set it, so the old attempt counted as the first of the retry's
 * schedule, and the retry made one attempt fewer than its schedule gives.
 */
static void a_retry_keeps_its_whole_schedule_after_the_attempt_before_it(void **state)
{
    struct fixture *f = *state;
    struct vh_error err = VH_ERROR_INIT;
    struct vh_delivery_job_rec *jobs = NULL;
    struct vh_delivery_result r;
    char ev[VH_UUID_LEN + 1];
    struct vh_endpoint ep;
    struct vh_partner p;
    size_t n;

    new_partner(f->st, "RetrySchedule", &p);
    new_endpoint(f->st, p.id, "primary", &ep);
    put_event(f->st, p.id, f->tb, ev);
    n = claim_own(f, f->node, f->tb, LEASE_MS, 10, p.id, &jobs);
    assert_int_equal(n, 1);
    set_enabled(f->st, &ep, false, f->tb + 10);
    set_enabled(f->st, &ep, true, f->tb + 20);
    if (vh_store_delivery_retry(f->st, p.id, jobs[0].delivery_id, f->tb + 30, &err) < 0)
        fail_msg("retry: %s", err.msg);

    /* The old attempt, the first of the old schedule, fails: the old policy says "again". */
    fill_result(&r, &jobs[0], f->node, f->tb + 40, 500, "pending", f->tb + 1040);
    r.lease_until_ms = jobs[0].lease_until_ms; /* as the sender reports it */
    record(f->st, &r, 1);
    expect_a_fresh_schedule_after(f, &p, jobs[0].delivery_id, 1, f->tb + 50);
    vh_delivery_job_recs_free(jobs, 1);
}

/*
 * A lease ran out while its attempt was still out, and the delivery was taken back: the
 * attempt's late report, arriving before the delivery is claimed again, uses up no attempt
 * of the schedule (as when it arrives after the next claim, which makes the attempt after
 * it again), and the next attempt is numbered after it.
 */
static void a_late_report_after_recovery_uses_up_no_attempt(void **state)
{
    struct fixture *f = *state;
    struct vh_delivery_job_rec *jobs = NULL;
    struct vh_delivery_result r;
    char ev[VH_UUID_LEN + 1];
    struct vh_endpoint ep;
    struct vh_partner p;

    new_partner(f->st, "LateAfterRecover", &p);
    new_endpoint(f->st, p.id, "primary", &ep);
    put_event(f->st, p.id, f->tb, ev);
    assert_int_equal(claim_own(f, f->node, f->tb, 100, 10, p.id, &jobs), 1);
    assert_true(vh_store_delivery_recover(f->st, NULL, f->tb + 100, NULL) >= 1);
    assert_string_equal(brief_of(f->st, ev).state, "pending");

    fill_result(&r, &jobs[0], f->node, f->tb + 1, 500, "pending", f->tb + 1100);
    r.lease_until_ms = jobs[0].lease_until_ms;
    record(f->st, &r, 1);
    expect_a_fresh_schedule_after(f, &p, jobs[0].delivery_id, 1, f->tb + 200);
    vh_delivery_job_recs_free(jobs, 1);
}

static void interrupted_attempts_leave_no_trace(void **state)
{
    struct fixture *f = *state;
    struct vh_delivery_job_rec *jobs = NULL, *again = NULL;
    struct vh_delivery_result r;
    char ev[VH_UUID_LEN + 1];
    struct vh_delivery_brief b;
    struct vh_endpoint ep, got;
    struct vh_partner p;
    int64_t attempts0;
    size_t n;

    new_partner(f->st, "Interrupted", &p);
    new_endpoint(f->st, p.id, "primary", &ep);
    put_event(f->st, p.id, f->tb, ev);
    n = claim_own(f, f->node, f->tb, LEASE_MS, 10, p.id, &jobs);
    assert_int_equal(n, 1);
    attempts0 = count(f->st, "attempts");
    fill_result(&r, &jobs[0], f->node, f->tb + 5, 0, "pending", f->tb + 7);
    r.error_class = "interrupted";
    r.interrupted = true;
    record(f->st, &r, 1);
    assert_int_equal(count(f->st, "attempts"), attempts0);
    b = brief_of(f->st, ev);
    assert_string_equal(b.state, "pending");
    assert_int_equal(b.attempts, 0);
    assert_int_equal(b.next_attempt_ms, f->tb + 7);
    assert_int_equal(vh_store_endpoint_get(f->st, p.id, ep.id, &got, NULL), 0);
    assert_int_equal(got.last_delivery_status, VH_OUTCOME_NONE);
    assert_int_equal(got.last_delivery_ms, 0);

    /* The same attempt number is made again. */
    n = claim_own(f, f->node, f->tb + 7, LEASE_MS, 10, p.id, &again);
    assert_int_equal(n, 1);
    assert_int_equal(again[0].attempts, 0);
    vh_delivery_job_recs_free(again, n);
    vh_delivery_job_recs_free(jobs, 1);
}

static void stale_results_do_not_move_a_new_claim(void **state)
{
    struct fixture *f = *state;
    struct vh_delivery_job_rec *a = NULL, *b = NULL, *a2 = NULL, *a3 = NULL;
    struct vh_attempt_info *att = NULL;
    struct vh_delivery_result r, late;
    char ev[VH_UUID_LEN + 1], ev2[VH_UUID_LEN + 1];
    struct vh_delivery_info info;
    struct vh_delivery_brief d;
    struct vh_endpoint ep, got;
    struct vh_partner p;
    size_t na;

    new_partner(f->st, "Stale", &p);
    new_endpoint(f->st, p.id, "primary", &ep);
    put_event(f->st, p.id, f->tb, ev);
    /* Node A's lease runs out; node B takes the delivery over. */
    assert_int_equal(claim_own(f, "node-a", f->tb, 100, 10, p.id, &a), 1);
    assert_true(vh_store_delivery_recover(f->st, NULL, f->tb + 100, NULL) >= 1);
    assert_int_equal(claim_own(f, "node-b", f->tb + 100, LEASE_MS, 10, p.id, &b), 1);

    /* A's late report is history, not a transition. */
    fill_result(&r, &a[0], "node-a", f->tb + 1, 500, "pending", f->tb + 2000);
    record(f->st, &r, 1);
    d = brief_of(f->st, ev);
    assert_string_equal(d.state, "in_flight");
    assert_int_equal(d.attempts, 0);

    /* B's own report moves it on, and its row replaces A's for the same number. */
    fill_result(&r, &b[0], "node-b", f->tb + 150, 200, "succeeded", 0);
    record(f->st, &r, 1);
    d = brief_of(f->st, ev);
    assert_string_equal(d.state, "succeeded");
    assert_int_equal(d.attempts, 1);
    get(f->st, p.id, d.id, &info, &att, &na);
    assert_int_equal(na, 1);
    assert_int_equal(att[0].http_status, 200);
    vh_free(att);
    assert_int_equal(vh_store_endpoint_get(f->st, p.id, ep.id, &got, NULL), 0);
    assert_int_equal(got.last_delivery_status, VH_OUTCOME_SUCCEEDED);
    assert_int_equal(got.last_delivery_ms, f->tb + 150);

    /* An older attempt reported late does not hide the endpoint's newer one. */
    fill_result(&r, &a[0], "node-a", f->tb + 2, 500, "pending", f->tb + 2000);
    record(f->st, &r, 1);
    assert_int_equal(vh_store_endpoint_get(f->st, p.id, ep.id, &got, NULL), 0);
    assert_int_equal(got.last_delivery_status, VH_OUTCOME_SUCCEEDED);
    d = brief_of(f->st, ev);
    assert_string_equal(d.state, "succeeded");

    /*
     * The same node claims one delivery twice (its lease ran out in between): the report of
     * attempt 1, delivered twice, moves it once; the copy does not move attempt 2's claim.
     */
    put_event(f->st, p.id, f->tb + 3000, ev2);
    assert_int_equal(claim_own(f, "node-a", f->tb + 3000, 100, 10, p.id, &a2), 1);
    assert_true(vh_store_delivery_recover(f->st, NULL, f->tb + 3100, NULL) >= 1);
    assert_int_equal(claim_own(f, "node-a", f->tb + 3100, LEASE_MS, 10, p.id, &a3), 1);
    fill_result(&late, &a2[0], "node-a", f->tb + 3001, 500, "pending", f->tb + 3200);
    record(f->st, &late, 1);
    d = brief_of(f->st, ev2);
    assert_string_equal(d.state, "pending");
    assert_int_equal(d.attempts, 1);
    vh_delivery_job_recs_free(a3, 1);
    assert_int_equal(claim_own(f, "node-a", f->tb + 3200, LEASE_MS, 10, p.id, &a3), 1);
    assert_int_equal(a3[0].attempts, 1);
    record(f->st, &late, 1); /* the copy */
    d = brief_of(f->st, ev2);
    assert_string_equal(d.state, "in_flight");
    assert_int_equal(d.attempts, 1);

    vh_delivery_job_recs_free(a, 1);
    vh_delivery_job_recs_free(b, 1);
    vh_delivery_job_recs_free(a2, 1);
    vh_delivery_job_recs_free(a3, 1);
}

/* ---- next due, stats, counts --------------------------------------------------------------- */

static void next_due_tracks_the_earliest_pending(void **state)
{
    struct fixture *f = *state;
    struct vh_error err = VH_ERROR_INIT;
    struct vh_delivery_job_rec *jobs = NULL;
    struct vh_endpoint ep;
    struct vh_partner p;
    int64_t due = 0;
    size_t n;

    if (f->fresh) {
        assert_int_equal(vh_store_delivery_next_due(f->st, &due, &err), VH_ENOTFOUND);
        assert_int_equal(due, 0);
    }
    new_partner(f->st, "NextDue", &p);
    new_endpoint(f->st, p.id, "primary", &ep);
    put_event(f->st, p.id, f->tb + 5000, NULL);
    put_event(f->st, p.id, f->tb + 2000, NULL);
    assert_int_equal(vh_store_delivery_next_due(f->st, &due, &err), 0);
    assert_true(due <= f->tb + 2000);
    if (f->fresh)
        assert_int_equal(due, f->tb + 2000);

    n = claim_own(f, f->node, f->tb + 2000, LEASE_MS, 10, p.id, &jobs);
    assert_int_equal(n, 1);
    vh_delivery_job_recs_free(jobs, n);
    if (f->fresh) {
        assert_int_equal(vh_store_delivery_next_due(f->st, &due, &err), 0);
        assert_int_equal(due, f->tb + 5000);
        n = claim_own(f, f->node, f->tb + 5000, LEASE_MS, 10, p.id, &jobs);
        assert_int_equal(n, 1);
        vh_delivery_job_recs_free(jobs, n);
        assert_int_equal(vh_store_delivery_next_due(f->st, &due, &err), VH_ENOTFOUND);
    }
    assert_int_equal(vh_store_delivery_next_due(f->st, NULL, NULL), VH_EINVAL);
}

static void stats_and_counts_follow_the_queue(void **state)
{
    struct fixture *f = *state;
    struct vh_delivery_counts c0, c1;
    struct vh_delivery_job_rec *jobs = NULL;
    struct vh_delivery_stats s;
    struct vh_delivery_result r;
    struct vh_endpoint ep;
    struct vh_partner p;
    size_t n;

    assert_int_equal(vh_store_delivery_counts(f->st, &c0, NULL), 0);
    new_partner(f->st, "Stats", &p);
    new_endpoint(f->st, p.id, "primary", &ep);
    put_event(f->st, p.id, f->tb + 1000, NULL);
    put_event(f->st, p.id, f->tb + 2000, NULL);
    put_event(f->st, p.id, f->tb + 9000, NULL);
    assert_int_equal(vh_store_delivery_stats(f->st, f->tb + 5000, &s, NULL), 0);
    if (f->fresh) {
        assert_int_equal(s.pending, 3);
        assert_int_equal(s.due, 2);
        assert_int_equal(s.in_flight, 0);
        assert_int_equal(s.oldest_pending_age_ms, 4000);
        assert_int_equal(s.due_lag_ms, 4000);
    } else {
        assert_true(s.pending >= 3 && s.due >= 2);
    }

    n = claim_own(f, f->node, f->tb + 5000, LEASE_MS, 1, p.id, &jobs);
    assert_int_equal(n, 1);
    fill_result(&r, &jobs[0], f->node, f->tb + 5000, 200, "succeeded", 0);
    record(f->st, &r, 1);
    vh_delivery_job_recs_free(jobs, n);
    n = claim_own(f, f->node, f->tb + 5000, LEASE_MS, 1, p.id, &jobs);
    assert_int_equal(n, 1);
    vh_delivery_job_recs_free(jobs, n);
    assert_int_equal(vh_store_delivery_stats(f->st, f->tb + 5000, &s, NULL), 0);
    if (f->fresh) {
        assert_int_equal(s.pending, 1);
        assert_int_equal(s.due, 0);
        assert_int_equal(s.in_flight, 1);
        assert_int_equal(s.oldest_pending_age_ms, 0); /* created in the future */
        assert_int_equal(s.due_lag_ms, 0);
    }
    assert_int_equal(vh_store_delivery_counts(f->st, &c1, NULL), 0);
    assert_int_equal(c1.succeeded - c0.succeeded, 1);
    assert_int_equal(c1.pending + c1.in_flight - c0.pending - c0.in_flight, 2);
    assert_int_equal(vh_store_delivery_stats(f->st, -1, &s, NULL), VH_EINVAL);
    assert_int_equal(vh_store_delivery_counts(f->st, NULL, NULL), VH_EINVAL);
}

/* ---- history --------------------------------------------------------------------------------- */

static void free_infos(struct vh_delivery_info *d)
{
    vh_free(d);
}

/* Lists `state` of endpoint `ep`: the total must be `total`, the page the events in `want`. */
static void expect_list(struct fixture *f, const char *partner_id, const char *ep,
                        const char *state, size_t total, const char *const *want, size_t n_want)
{
    struct vh_error err = VH_ERROR_INIT;
    struct vh_delivery_info *d = NULL;
    size_t n = 0, got_total = 0, i;

    if (vh_store_delivery_list(f->st, partner_id, ep, state, 10, 0, &d, &n, &got_total, &err) < 0)
        fail_msg("list %s: %s", state, err.msg);
    if (got_total != total || n != n_want)
        fail_msg("list %s: total %zu, %zu rows; want %zu, %zu", state, got_total, n, total, n_want);
    for (i = 0; i < n; i++) {
        assert_string_equal(d[i].state, state);
        assert_string_equal(d[i].endpoint_id, ep);
        assert_string_equal(d[i].event_id, want[i]);
    }
    free_infos(d);
}

/* The store's counts by state have moved from `c0` by these numbers. */
static void expect_counts(struct fixture *f, const struct vh_delivery_counts *c0, int64_t pending,
                          int64_t in_flight, int64_t succeeded, int64_t abandoned, int64_t canceled)
{
    struct vh_error err = VH_ERROR_INIT;
    struct vh_delivery_counts c;

    if (vh_store_delivery_counts(f->st, &c, &err) < 0)
        fail_msg("delivery counts: %s", err.msg);
    if (c.pending - c0->pending != pending || c.in_flight - c0->in_flight != in_flight ||
        c.succeeded - c0->succeeded != succeeded || c.abandoned - c0->abandoned != abandoned ||
        c.canceled - c0->canceled != canceled)
        fail_msg("counts moved by pending %" PRId64 ", in flight %" PRId64 ", succeeded %" PRId64
                 ", abandoned %" PRId64 ", canceled %" PRId64 "; want %" PRId64 ", %" PRId64
                 ", %" PRId64 ", %" PRId64 ", %" PRId64,
                 c.pending - c0->pending, c.in_flight - c0->in_flight, c.succeeded - c0->succeeded,
                 c.abandoned - c0->abandoned, c.canceled - c0->canceled, pending, in_flight,
                 succeeded, abandoned, canceled);
}

/*
 * Every state filters to its own rows and total, newest first, whichever index serves it
 * (SQLite keeps in-flight and succeeded deliveries out of the state index), and never shows
 * another endpoint's: two endpoints share the events and hold every state between them.
 * Disabling an endpoint cancels its pending and its in-flight deliveries. The store's
 * counts by state follow (SQLite counts each state from the index that holds it, and
 * succeeded as what the others are not).
 */
static void each_state_lists_its_own_rows(void **state)
{
    struct fixture *f = *state;
    struct vh_delivery_job_rec *jobs = NULL;
    struct vh_delivery_result r[8];
    struct vh_endpoint a, b, c;
    struct vh_partner p;
    struct vh_delivery_counts c0;
    char ev[6][VH_UUID_LEN + 1];
    size_t n, i, k = 0;

    assert_int_equal(vh_store_delivery_counts(f->st, &c0, NULL), 0);
    new_partner(f->st, "States", &p);
    new_endpoint(f->st, p.id, "a", &a);
    new_endpoint(f->st, p.id, "b", &b);
    for (i = 0; i < 5; i++)
        put_event(f->st, p.id, f->tb + (int64_t)i * 1000, ev[i]);
    new_endpoint(f->st, p.id, "c", &c); /* only the last event goes to c */
    put_event(f->st, p.id, f->tb + 5000, ev[5]);

    /* ev0..ev3 to a and b are due: a's become succeeded, abandoned, pending (a retry) and
     * in flight; b's succeeded but the last, in flight too. */
    n = claim_own(f, f->node, f->tb + 3000, LEASE_MS, 100, p.id, &jobs);
    assert_int_equal(n, 8);
    for (i = 0; i < n; i++) {
        const bool on_a = strcmp(jobs[i].endpoint_id, a.id) == 0;
        size_t e = 0;

        while (e < 4 && strcmp(jobs[i].event_id, ev[e]) != 0)
            e++;
        assert_true(e < 4);
        if (e == 3)
            continue; /* left in flight */
        if (on_a && e == 1)
            fill_result(&r[k++], &jobs[i], f->node, f->tb + 3010, 410, "abandoned", 0);
        else if (on_a && e == 2)
            fill_result(&r[k++], &jobs[i], f->node, f->tb + 3010, 503, "pending", f->tb + 100000);
        else
            fill_result(&r[k++], &jobs[i], f->node, f->tb + 3010, 204, "succeeded", 0);
    }
    assert_int_equal(k, 6);
    record(f->st, r, k);
    vh_delivery_job_recs_free(jobs, n);

    {
        const char *const a_succeeded[] = {ev[0]};
        const char *const a_abandoned[] = {ev[1]};
        const char *const a_pending[] = {ev[5], ev[4], ev[2]};
        const char *const a_in_flight[] = {ev[3]};
        const char *const b_succeeded[] = {ev[2], ev[1], ev[0]};
        const char *const b_pending[] = {ev[5], ev[4]};
        const char *const b_in_flight[] = {ev[3]};
        const char *const c_pending[] = {ev[5]};

        expect_list(f, p.id, a.id, "succeeded", 1, a_succeeded, 1);
        expect_list(f, p.id, a.id, "abandoned", 1, a_abandoned, 1);
        expect_list(f, p.id, a.id, "pending", 3, a_pending, 3);
        expect_list(f, p.id, a.id, "in_flight", 1, a_in_flight, 1);
        expect_list(f, p.id, a.id, "canceled", 0, NULL, 0);
        expect_list(f, p.id, b.id, "succeeded", 3, b_succeeded, 3);
        expect_list(f, p.id, b.id, "abandoned", 0, NULL, 0);
        expect_list(f, p.id, b.id, "pending", 2, b_pending, 2);
        expect_list(f, p.id, b.id, "in_flight", 1, b_in_flight, 1);
        expect_list(f, p.id, c.id, "pending", 1, c_pending, 1);
        expect_list(f, p.id, c.id, "succeeded", 0, NULL, 0);
        expect_list(f, p.id, c.id, "in_flight", 0, NULL, 0);
    }
    expect_counts(f, &c0, 6, 2, 4, 1, 0);

    /* Disabling a cancels its pending and in-flight deliveries, and only a's. */
    set_enabled(f->st, &a, false, f->tb + 4000);
    {
        const char *const a_canceled[] = {ev[5], ev[4], ev[3], ev[2]};
        const char *const a_succeeded[] = {ev[0]};
        const char *const b_in_flight[] = {ev[3]};

        expect_list(f, p.id, a.id, "canceled", 4, a_canceled, 4);
        expect_list(f, p.id, a.id, "pending", 0, NULL, 0);
        expect_list(f, p.id, a.id, "in_flight", 0, NULL, 0);
        expect_list(f, p.id, a.id, "succeeded", 1, a_succeeded, 1);
        expect_list(f, p.id, b.id, "in_flight", 1, b_in_flight, 1);
    }
    expect_counts(f, &c0, 3, 1, 4, 1, 4);
}

static void list_pages_newest_first_with_a_state_filter(void **state)
{
    struct fixture *f = *state;
    struct vh_error err = VH_ERROR_INIT;
    struct vh_delivery_job_rec *jobs = NULL;
    struct vh_delivery_info *d = NULL;
    struct vh_delivery_result r;
    struct vh_endpoint ep, other, theirs;
    struct vh_partner p, q;
    char ev[5][VH_UUID_LEN + 1];
    size_t n = 0, total = 0, i;

    new_partner(f->st, "History", &p);
    new_partner(f->st, "Someone else", &q);
    new_endpoint(f->st, p.id, "primary", &ep);
    new_endpoint(f->st, q.id, "theirs", &theirs);
    for (i = 0; i < 5; i++)
        put_event(f->st, p.id, f->tb + (int64_t)i * 1000, ev[i]);
    new_endpoint(f->st, p.id, "later", &other); /* no deliveries */

    assert_int_equal(vh_store_delivery_list(f->st, p.id, ep.id, NULL, 2, 0, &d, &n, &total, &err),
                     0);
    assert_int_equal(n, 2);
    assert_int_equal(total, 5);
    assert_string_equal(d[0].event_id, ev[4]);
    assert_string_equal(d[1].event_id, ev[3]);
    assert_string_equal(d[0].endpoint_id, ep.id);
    assert_string_equal(d[0].state, "pending");
    assert_int_equal(d[0].next_attempt_ms, f->tb + 4000);
    assert_int_equal(d[0].created_ms, f->tb + 4000);
    assert_true(d[0].session_id[0] != '\0');
    free_infos(d);
    assert_int_equal(vh_store_delivery_list(f->st, p.id, ep.id, NULL, 2, 4, &d, &n, &total, &err),
                     0);
    assert_int_equal(n, 1);
    assert_string_equal(d[0].event_id, ev[0]);
    free_infos(d);

    /* The oldest one succeeds; the filter finds it, with its latest attempt. */
    n = claim_own(f, f->node, f->tb, LEASE_MS, 1, p.id, &jobs);
    assert_int_equal(n, 1);
    fill_result(&r, &jobs[0], f->node, f->tb + 10, 204, "succeeded", 0);
    record(f->st, &r, 1);
    vh_delivery_job_recs_free(jobs, n);
    assert_int_equal(
        vh_store_delivery_list(f->st, p.id, ep.id, "succeeded", 10, 0, &d, &n, &total, &err), 0);
    assert_int_equal(n, 1);
    assert_int_equal(total, 1);
    assert_string_equal(d[0].event_id, ev[0]);
    assert_int_equal(d[0].attempts, 1);
    assert_int_equal(d[0].last_http_status, 204);
    assert_int_equal(d[0].last_attempt_ms, f->tb + 10);
    assert_int_equal(d[0].next_attempt_ms, 0);
    free_infos(d);
    assert_int_equal(
        vh_store_delivery_list(f->st, p.id, ep.id, "pending", 10, 0, &d, &n, &total, &err), 0);
    assert_int_equal(n, 4);
    assert_int_equal(total, 4);
    free_infos(d);
    assert_int_equal(vh_store_delivery_list(f->st, p.id, other.id, NULL, 10, 0, &d, &n, NULL, &err),
                     0);
    assert_int_equal(n, 0);
    assert_null(d);

    /* Scoping and bad input. */
    assert_int_equal(vh_store_delivery_list(f->st, q.id, ep.id, NULL, 10, 0, &d, &n, NULL, &err),
                     VH_ENOTFOUND);
    assert_int_equal(
        vh_store_delivery_list(f->st, p.id, theirs.id, NULL, 10, 0, &d, &n, NULL, NULL),
        VH_ENOTFOUND);
    assert_int_equal(
        vh_store_delivery_list(f->st, p.id, "no such", NULL, 10, 0, &d, &n, NULL, NULL),
        VH_ENOTFOUND);
    assert_int_equal(vh_store_delivery_list(f->st, p.id, ep.id, "done", 10, 0, &d, &n, NULL, NULL),
                     VH_EINVAL);
    assert_int_equal(vh_store_delivery_list(f->st, p.id, ep.id, NULL, 0, 0, &d, &n, NULL, NULL),
                     VH_EINVAL);
    assert_int_equal(vh_store_delivery_list(f->st, p.id, ep.id, NULL, 101, 0, &d, &n, NULL, NULL),
                     VH_EINVAL);
    /* A deleted endpoint's history is gone from the list (its deliveries stay gettable). */
    assert_int_equal(vh_store_endpoint_delete(f->st, p.id, ep.id, f->tb + 9000, NULL), 0);
    assert_int_equal(vh_store_delivery_list(f->st, p.id, ep.id, NULL, 10, 0, &d, &n, NULL, NULL),
                     VH_ENOTFOUND);
}

/*
 * Makes `count` failed attempts of the partner's one due delivery, each claimed at *now and
 * recorded as failing, due again a millisecond later; *now moves on past them.
 */
static void fail_attempts(struct fixture *f, const struct vh_partner *p, int64_t *now,
                          unsigned count)
{
    struct vh_delivery_job_rec *jobs = NULL;
    struct vh_delivery_result r;
    unsigned i;

    for (i = 0; i < count; i++, (*now)++) {
        if (claim_own(f, f->node, *now, LEASE_MS, 10, p->id, &jobs) != 1)
            fail_msg("claim at %" PRId64 ": not the one delivery of partner %s", *now, p->id);
        fill_result(&r, &jobs[0], f->node, *now, 500, "pending", *now + 1);
        r.lease_until_ms = jobs[0].lease_until_ms;
        record(f->st, &r, 1);
        vh_delivery_job_recs_free(jobs, 1);
    }
}

/* A get of delivery `id` must return the attempts numbered first..last, and `older`. */
static void expect_newest_attempts(struct fixture *f, const struct vh_partner *p, const char *id,
                                   unsigned first, unsigned last, size_t older)
{
    struct vh_error err = VH_ERROR_INIT;
    struct vh_attempt_info *att = NULL;
    struct vh_delivery_info info;
    size_t na = 0, got_older = 99999, i;

    if (vh_store_delivery_get(f->st, p->id, id, &info, &att, &na, &got_older, &err) < 0)
        fail_msg("get delivery %s: %s", id, err.msg);
    if (na != last - first + 1)
        fail_msg("get delivery %s of %u attempts: returned %zu attempts, want the newest %u"
                 " (VH_HISTORY_ATTEMPTS_MAX %d)",
                 id, info.attempts, na, last - first + 1, VH_HISTORY_ATTEMPTS_MAX);
    for (i = 0; i < na; i++)
        if (att[i].n != first + i)
            fail_msg("get delivery %s: attempt [%zu] is number %u, want %zu (oldest first)", id, i,
                     att[i].n, first + i);
    if (got_older != older)
        fail_msg("get delivery %s: %zu older attempts counted, want %zu", id, got_older, older);
    assert_int_equal(info.attempts, last);
    vh_free(att);
}

/*
 * A delivery retried without end keeps every attempt, and a get returns only the newest
 * VH_HISTORY_ATTEMPTS_MAX with the count of the older ones (found in review: it read every
 * attempt into memory, and the API showed only the newest 200).
 */
static void get_reads_only_the_newest_attempts(void **state)
{
    struct fixture *f = *state;
    struct vh_error err = VH_ERROR_INIT;
    struct vh_attempt_info *att = NULL;
    struct vh_delivery_info info;
    char ev[VH_UUID_LEN + 1], id[VH_UUID_LEN + 1];
    struct vh_endpoint ep;
    struct vh_partner p;
    int64_t now = f->tb;
    size_t na = 0;

    new_partner(f->st, "LongHistory", &p);
    new_endpoint(f->st, p.id, "primary", &ep);
    put_event(f->st, p.id, now, ev);
    snprintf(id, sizeof(id), "%s", brief_of(f->st, ev).id);

    fail_attempts(f, &p, &now, VH_HISTORY_ATTEMPTS_MAX - 1);
    expect_newest_attempts(f, &p, id, 1, VH_HISTORY_ATTEMPTS_MAX - 1, 0);
    fail_attempts(f, &p, &now, 1);
    expect_newest_attempts(f, &p, id, 1, VH_HISTORY_ATTEMPTS_MAX, 0);
    fail_attempts(f, &p, &now, 1);
    expect_newest_attempts(f, &p, id, 2, VH_HISTORY_ATTEMPTS_MAX + 1, 1);
    fail_attempts(f, &p, &now, 49);
    expect_newest_attempts(f, &p, id, 51, VH_HISTORY_ATTEMPTS_MAX + 50, 50);

    /* The count of older attempts is optional. */
    if (vh_store_delivery_get(f->st, p.id, id, &info, &att, &na, NULL, &err) < 0)
        fail_msg("get delivery %s without the older count: %s", id, err.msg);
    assert_int_equal(na, VH_HISTORY_ATTEMPTS_MAX);
    assert_int_equal(att[0].n, 51);
    vh_free(att);
}

static void get_is_scoped_to_the_partner(void **state)
{
    struct fixture *f = *state;
    struct vh_error err = VH_ERROR_INIT;
    struct vh_attempt_info *att = (struct vh_attempt_info *)&err; /* sentinel */
    struct vh_delivery_info info;
    struct vh_delivery_brief b;
    char ev[VH_UUID_LEN + 1], ghost[VH_UUID_LEN + 1];
    struct vh_endpoint ep;
    struct vh_partner p, q;
    size_t na = 9, older = 7;

    new_partner(f->st, "Owner", &p);
    new_partner(f->st, "Stranger", &q);
    new_endpoint(f->st, p.id, "primary", &ep);
    put_event(f->st, p.id, f->tb, ev);
    b = brief_of(f->st, ev);

    assert_int_equal(vh_store_delivery_get(f->st, q.id, b.id, &info, &att, &na, &older, &err),
                     VH_ENOTFOUND);
    assert_int_equal(vh_uuid_new(ghost, NULL), 0);
    assert_int_equal(vh_store_delivery_get(f->st, p.id, ghost, &info, &att, &na, &older, NULL),
                     VH_ENOTFOUND);
    assert_int_equal(vh_store_delivery_get(f->st, p.id, "../x", &info, &att, &na, &older, NULL),
                     VH_ENOTFOUND);
    assert_ptr_equal(att, (struct vh_attempt_info *)&err);
    assert_int_equal(na, 9);
    assert_int_equal(older, 7);

    get(f->st, p.id, b.id, &info, &att, &na);
    assert_string_equal(info.id, b.id);
    assert_string_equal(info.event_id, ev);
    assert_string_equal(info.state, "pending");
    assert_int_equal(info.attempts, 0);
    assert_int_equal(na, 0);
    assert_null(att);
}

static void retry_restarts_finished_deliveries(void **state)
{
    struct fixture *f = *state;
    struct vh_error err = VH_ERROR_INIT;
    struct vh_delivery_job_rec *jobs = NULL;
    struct vh_delivery_result r[2];
    struct vh_delivery_info info;
    struct vh_attempt_info *att = NULL;
    char ev[2][VH_UUID_LEN + 1];
    struct vh_delivery_brief b;
    struct vh_endpoint ep;
    struct vh_partner p, q;
    size_t n, na;

    new_partner(f->st, "Retry", &p);
    new_partner(f->st, "Not yours", &q);
    new_endpoint(f->st, p.id, "primary", &ep);
    put_event(f->st, p.id, f->tb, ev[0]);
    put_event(f->st, p.id, f->tb, ev[1]);
    b = brief_of(f->st, ev[0]);

    /* Pending, then in flight: nothing to retry. */
    assert_int_equal(vh_store_delivery_retry(f->st, p.id, b.id, f->tb, &err), VH_ECONFLICT);
    assert_non_null(strstr(err.msg, "already pending"));
    n = claim_own(f, f->node, f->tb, LEASE_MS, 10, p.id, &jobs);
    assert_int_equal(n, 2);
    assert_int_equal(vh_store_delivery_retry(f->st, p.id, b.id, f->tb, NULL), VH_ECONFLICT);

    /* One is abandoned, one succeeds: both can be sent again. */
    fill_result(&r[0], &jobs[0], f->node, f->tb + 1, 500, "abandoned", 0);
    fill_result(&r[1], &jobs[1], f->node, f->tb + 1, 200, "succeeded", 0);
    record(f->st, r, 2);
    vh_delivery_job_recs_free(jobs, n);
    assert_int_equal(vh_store_delivery_retry(f->st, q.id, b.id, f->tb + 100, NULL), VH_ENOTFOUND);
    assert_int_equal(vh_store_delivery_retry(f->st, p.id, "nope nope", f->tb, NULL), VH_ENOTFOUND);
    assert_int_equal(vh_store_delivery_retry(f->st, p.id, b.id, f->tb + 100, &err), 0);
    b = brief_of(f->st, ev[1]);
    assert_int_equal(vh_store_delivery_retry(f->st, p.id, b.id, f->tb + 100, &err), 0);
    b = brief_of(f->st, ev[0]);
    assert_string_equal(b.state, "pending");
    assert_int_equal(b.next_attempt_ms, f->tb + 100);
    assert_int_equal(b.attempts, 1);

    n = claim_own(f, f->node, f->tb + 100, LEASE_MS, 10, p.id, &jobs);
    assert_int_equal(n, 2);
    assert_int_equal(jobs[0].attempts, 1);
    assert_int_equal(jobs[0].attempt_base, 1); /* the schedule starts over */
    vh_delivery_job_recs_free(jobs, n);
    get(f->st, p.id, b.id, &info, &att, &na);
    assert_int_equal(na, 1); /* the history stays */
    assert_int_equal(info.attempt_base, 1);
    vh_free(att);
    assert_int_equal(vh_store_delivery_retry(f->st, p.id, b.id, -1, NULL), VH_EINVAL);
}

static void replay_adds_a_delivery_per_event_in_range(void **state)
{
    struct fixture *f = *state;
    struct vh_error err = VH_ERROR_INIT;
    struct vh_delivery_job_rec *jobs = NULL;
    struct vh_endpoint ep, off, theirs;
    struct vh_partner p, q;
    char ev[5][VH_UUID_LEN + 1];
    int64_t deliveries0;
    size_t n, created = 99, i;

    new_partner(f->st, "Replay", &p);
    new_partner(f->st, "Other", &q);
    new_endpoint(f->st, q.id, "theirs", &theirs);
    for (i = 0; i < 5; i++)
        put_event(f->st, p.id, f->tb + (int64_t)i * 1000, ev[i]); /* no endpoint yet */
    put_event(f->st, q.id, f->tb + 2500, NULL);                   /* not p's */
    new_endpoint(f->st, p.id, "fresh", &ep);
    new_endpoint(f->st, p.id, "off", &off);
    set_enabled(f->st, &off, false, f->tb);

    deliveries0 = count(f->st, "deliveries");
    assert_int_equal(vh_store_endpoint_replay(f->st, p.id, ep.id, f->tb + 1000, f->tb + 3000,
                                              f->tb + 10000, &created, &err),
                     0);
    assert_int_equal(created, 3);
    assert_int_equal(count(f->st, "deliveries"), deliveries0 + 3);
    n = claim_own(f, f->node, f->tb + 10000, LEASE_MS, 10, p.id, &jobs);
    assert_int_equal(n, 3);
    for (i = 0; i < n; i++) {
        assert_string_equal(jobs[i].event_id, ev[i + 1]); /* accepted order */
        assert_string_equal(jobs[i].endpoint_id, ep.id);
        assert_int_equal(jobs[i].next_attempt_ms, f->tb + 10000);
        assert_int_equal(jobs[i].attempts, 0);
    }
    vh_delivery_job_recs_free(jobs, n);

    /* An empty range is fine; the rest is refused and creates nothing. */
    assert_int_equal(vh_store_endpoint_replay(f->st, p.id, ep.id, f->tb + 100, f->tb + 200,
                                              f->tb + 10000, &created, &err),
                     0);
    assert_int_equal(created, 0);
    assert_int_equal(vh_store_endpoint_replay(f->st, p.id, off.id, f->tb, f->tb + 9000,
                                              f->tb + 10000, &created, &err),
                     VH_ECONFLICT);
    assert_non_null(strstr(err.msg, "is disabled"));
    assert_int_equal(vh_store_endpoint_replay(f->st, q.id, ep.id, f->tb, f->tb + 9000,
                                              f->tb + 10000, NULL, NULL),
                     VH_ENOTFOUND);
    assert_int_equal(vh_store_endpoint_replay(f->st, p.id, theirs.id, f->tb, f->tb + 9000,
                                              f->tb + 10000, NULL, NULL),
                     VH_ENOTFOUND);
    assert_int_equal(vh_store_endpoint_replay(f->st, p.id, ep.id, f->tb + 2, f->tb + 1,
                                              f->tb + 10000, NULL, NULL),
                     VH_EINVAL);
    assert_int_equal(count(f->st, "deliveries"), deliveries0 + 3);
}

/* ---- the claim's query plan (SQLite) --------------------------------------------------------- */

static void due_scans_use_the_index(void **state)
{
    static const char *const queries[] = {
        "claim",         "next_due",       "recover",        "stats",          "list",
        "list_by_state", "list_succeeded", "count_by_state", "cancel_pending", "attempts_of"};
    /* Each state filter on the index that holds that state (schema version 4). */
    static const struct {
        const char *query, *index;
    } by_index[] = {
        {"list_by_state", "deliveries_endpoint (endpoint_id=? AND state=?)"},
        {"count_by_state", "deliveries_endpoint (endpoint_id=? AND state=?)"},
        {"cancel_pending", "deliveries_endpoint (endpoint_id=? AND state=?)"},
        {"list_in_flight", "deliveries_due (state=?)"},
        {"count_in_flight", "deliveries_due (state=?)"},
        {"cancel_in_flight", "deliveries_due (state=?)"},
        {"list_succeeded", "deliveries_endpoint_time (endpoint_id=?)"},
        {"count_succeeded", "deliveries_endpoint_time (endpoint_id=?)"},
    };
    struct fixture *f = *state;
    struct vh_error err = VH_ERROR_INIT;
    struct vh_buf plan = VH_BUF_INIT(1 << 16);
    size_t i;

    if (strcmp(vh_store_backend(f->st), "sqlite") != 0)
        skip();
    assert_int_equal(vh__store_sqlite_explain(f->st, "claim", &plan, &err), 0);
    /* From the start, or past the last claim's row (claim_resume): a range either way. */
    assert_non_null(strstr(plan.data, "SEARCH d USING INDEX deliveries_due (state=? AND "
                                      "next_attempt_ms>? AND next_attempt_ms<?)"));
    /* The event by its seq, not by a search of its random id (schema version 4). */
    assert_non_null(strstr(plan.data, "SEARCH v USING INTEGER PRIMARY KEY (rowid=?)"));
    vh_buf_reset(&plan);
    assert_int_equal(vh__store_sqlite_explain(f->st, "list", &plan, &err), 0);
    assert_non_null(strstr(plan.data, "SEARCH v USING INTEGER PRIMARY KEY (rowid=?)"));
    /* An event's deliveries by their index on its seq (sorted after: a handful of rows). */
    vh_buf_reset(&plan);
    assert_int_equal(vh__store_sqlite_explain(f->st, "event_deliveries", &plan, &err), 0);
    assert_non_null(strstr(plan.data, "SEARCH d USING INDEX deliveries_event"
                                      " (event_seq=?)"));
    for (i = 0; i < sizeof(queries) / sizeof(queries[0]); i++) {
        vh_buf_reset(&plan);
        assert_int_equal(vh__store_sqlite_explain(f->st, queries[i], &plan, &err), 0);
        if (strstr(plan.data, "SCAN") || strstr(plan.data, "TEMP B-TREE"))
            fail_msg("%s: the plan scans or sorts:\n%s", queries[i], plan.data);
    }
    for (i = 0; i < sizeof(by_index) / sizeof(by_index[0]); i++) {
        vh_buf_reset(&plan);
        assert_int_equal(vh__store_sqlite_explain(f->st, by_index[i].query, &plan, &err), 0);
        if (!strstr(plan.data, by_index[i].index) || strstr(plan.data, "SCAN deliveries") ||
            strstr(plan.data, "SCAN d "))
            fail_msg("%s: not on %s:\n%s", by_index[i].query, by_index[i].index, plan.data);
    }
    /* The counts by state read indexes only: pending and in flight from deliveries_due
     * (migration 5: it holds nothing else), the rest from the smaller indexes. */
    vh_buf_reset(&plan);
    assert_int_equal(vh__store_sqlite_explain(f->st, "counts", &plan, &err), 0);
    if (!strstr(plan.data, "COVERING INDEX deliveries_due (state=?)") ||
        strstr(plan.data, "SCAN deliveries\n") || !strstr(plan.data, "SCAN deliveries USING"))
        fail_msg("counts: not on the indexes:\n%s", plan.data);
    /*
     * A delivery's newest attempts come newest first from the attempts' key, with a count
     * of them all run once (a correlated one would run per row read).
     */
    vh_buf_reset(&plan);
    assert_int_equal(vh__store_sqlite_explain(f->st, "attempts_of", &plan, &err), 0);
    if (!strstr(plan.data, "SEARCH attempts USING INDEX") ||
        !strstr(plan.data, "SEARCH attempts USING COVERING INDEX") ||
        strstr(plan.data, "CORRELATED"))
        fail_msg("attempts_of: not the newest attempts by the key, counted once:\n%s", plan.data);
    assert_int_equal(vh__store_sqlite_explain(f->st, "nope", &plan, NULL), VH_ENOTFOUND);
    vh_buf_release(&plan);
}

/*
 * The writes every delivery makes build no temporary b-tree: a CHECK with an IN list of
 * more than two values did, once per statement (schema version 3 removed it).
 */
static void delivery_writes_build_no_temporary_tree(void **state)
{
    static const char *const writes[] = {"program:held_recover", "program:finish",
                                         "program:attempt", "program:ingest"};
    struct fixture *f = *state;
    struct vh_error err = VH_ERROR_INIT;
    struct vh_buf prog = VH_BUF_INIT(1 << 16);
    size_t i;

    if (strcmp(vh_store_backend(f->st), "sqlite") != 0)
        skip();
    for (i = 0; i < sizeof(writes) / sizeof(writes[0]); i++) {
        vh_buf_reset(&prog);
        if (vh__store_sqlite_explain(f->st, writes[i], &prog, &err) < 0)
            fail_msg("%s: %s", writes[i], err.msg);
        /* It is the program: it writes the table. */
        assert_non_null(strstr(prog.data, "OpenWrite"));
        if (strstr(prog.data, "OpenEphemeral"))
            fail_msg("%s builds a temporary b-tree:\n%s", writes[i], prog.data);
    }
    vh_buf_release(&prog);
}

/* ---- concurrency ----------------------------------------------------------------------------- */

#define CONC_THREADS 4
#define CONC_EVENTS  200 /* times VH_ENDPOINTS_MAX endpoints: 1000 deliveries */

struct claimer {
    struct fixture *f;
    pthread_barrier_t *start; /* every thread claims from the same moment */
    const char *partner_id;
    char node[32];
    char (*ids)[VH_UUID_LEN + 1]; /* what this thread got */
    size_t n;
    int rc;
    char msg[VH_ERROR_MSG_MAX];
};

static void *claim_loop(void *arg)
{
    struct claimer *c = arg;
    struct vh_error err = VH_ERROR_INIT;
    const struct timespec pause = {0, 1000000}; /* 1 ms */
    struct vh_delivery_job_rec *jobs;
    size_t n, i;

    pthread_barrier_wait(c->start);
    for (;;) {
        jobs = NULL;
        n = 0;
        c->rc = vh_store_delivery_claim(c->f->st, c->node, c->f->tb + 1000, LEASE_MS, 7, &jobs, &n,
                                        &err);
        if (c->rc < 0) {
            snprintf(c->msg, sizeof(c->msg), "%s", err.msg);
            return NULL;
        }
        if (n == 0)
            return NULL;
        for (i = 0; i < n; i++)
            if (strcmp(jobs[i].partner_id, c->partner_id) == 0 && c->n < 2000)
                memcpy(c->ids[c->n++], jobs[i].delivery_id, VH_UUID_LEN + 1);
        vh_delivery_job_recs_free(jobs, n);
        /*
         * A dispatcher works between claims. Without a pause the thread that holds the write
         * lock takes it again at once, while the others sleep in SQLite's busy handler, and
         * the test would not interleave claims at all.
         */
        nanosleep(&pause, NULL);
    }
}

static int cmp_id(const void *a, const void *b)
{
    return strcmp(a, b);
}

static void concurrent_claims_never_share_a_delivery(void **state)
{
    struct fixture *f = *state;
    struct claimer c[CONC_THREADS];
    pthread_barrier_t start;
    char(*all)[VH_UUID_LEN + 1];
    pthread_t th[CONC_THREADS];
    struct vh_endpoint ep[VH_ENDPOINTS_MAX];
    struct vh_partner p;
    size_t i, k, total = 0;
    char label[8];

    new_partner(f->st, "Crowd", &p);
    for (i = 0; i < VH_ENDPOINTS_MAX; i++) {
        snprintf(label, sizeof(label), "ep%zu", i);
        new_endpoint(f->st, p.id, label, &ep[i]);
    }
    for (i = 0; i < CONC_EVENTS; i++)
        put_event(f->st, p.id, f->tb + (int64_t)(i % 50), NULL);

    all = calloc(CONC_THREADS * 2000, sizeof(*all));
    assert_non_null(all);
    assert_int_equal(pthread_barrier_init(&start, NULL, CONC_THREADS), 0);
    for (i = 0; i < CONC_THREADS; i++) {
        memset(&c[i], 0, sizeof(c[i]));
        c[i].f = f;
        c[i].start = &start;
        c[i].partner_id = p.id;
        snprintf(c[i].node, sizeof(c[i].node), "node-%zu", i);
        c[i].ids = all + i * 2000;
        assert_int_equal(pthread_create(&th[i], NULL, claim_loop, &c[i]), 0);
    }
    for (i = 0; i < CONC_THREADS; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    pthread_barrier_destroy(&start);
    for (i = 0; i < CONC_THREADS; i++) {
        if (c[i].rc < 0)
            fail_msg("%s: %s", c[i].node, c[i].msg);
        /* Pack the ids together for the sort. */
        if (total != i * 2000)
            memmove(all + total, all + i * 2000, c[i].n * sizeof(*all));
        total += c[i].n;
    }
    assert_int_equal(total, CONC_EVENTS * VH_ENDPOINTS_MAX);
    qsort(all, total, sizeof(*all), cmp_id);
    for (k = 1; k < total; k++)
        if (strcmp(all[k - 1], all[k]) == 0)
            fail_msg("delivery %s was claimed twice", all[k]);
    free(all);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(claim_takes_due_pending_oldest_first),
        T(claim_respects_max),
        T(claim_bounded_by_bytes_stops_before_the_bound),
        T(a_claim_after_a_full_one_finds_rows_due_before_it),
        T(claim_carries_endpoint_overrides),
        T(an_update_over_a_changed_endpoint_is_refused),
        T(claim_rejects_bad_arguments),
        T(recover_takes_back_expired_leases),
        T(recover_at_start_up_takes_this_nodes_claims),
        T(recover_node_takes_only_this_nodes_claims),
        T(record_writes_a_mixed_batch_at_once),
        T(record_writes_a_batch_of_every_kind_in_one_go),
        T(record_with_a_report_twice_in_one_batch),
        T(record_with_a_wrong_row_moves_the_right_delivery),
        T(record_keeps_long_heads_short),
        T(record_is_all_or_nothing),
        T(canceled_meanwhile_stays_canceled),
        T(interrupted_after_an_endpoint_change),
        T(a_retry_is_not_settled_by_the_attempt_before_it),
        T(a_retry_claimed_again_is_not_settled_by_the_attempt_before_it),
        T(a_retry_keeps_its_whole_schedule_after_the_attempt_before_it),
        T(a_late_report_after_recovery_uses_up_no_attempt),
        T(interrupted_attempts_leave_no_trace),
        T(stale_results_do_not_move_a_new_claim),
        T(next_due_tracks_the_earliest_pending),
        T(stats_and_counts_follow_the_queue),
        T(list_pages_newest_first_with_a_state_filter),
        T(each_state_lists_its_own_rows),
        T(get_is_scoped_to_the_partner),
        T(get_reads_only_the_newest_attempts),
        T(retry_restarts_finished_deliveries),
        T(replay_adds_a_delivery_per_event_in_range),
        T(due_scans_use_the_index),
        T(delivery_writes_build_no_temporary_tree),
        T(concurrent_claims_never_share_a_delivery),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
