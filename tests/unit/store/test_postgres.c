/*
 * What only the PostgreSQL backend has to show: several processes ("nodes") on one
 * database. Migrations under the advisory lock, claims that never hand a delivery to two
 * nodes, idempotent ingest under a race, a pool that survives lost connections, wake-ups
 * from one node's writes to another (LISTEN/NOTIFY), and rate windows shared by nodes.
 *
 * Runs when VH_TEST_STORE_URL is a postgres:// URL (ctest's unit/store/postgres@postgres,
 * under scripts/with-postgres); every test is skipped otherwise. Each test works in a new
 * database of its own, created next to that URL and dropped afterwards.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <pthread.h>

#include <cmocka.h>

#include <vocohook/alloc.h>
#include <vocohook/buf.h>
#include <vocohook/id.h>
#include <vocohook/sign.h>
#include <vocohook/store.h>

#include "store/store_int.h"

#define T0       INT64_C(1773585128000) /* 2026-03-15T14:32:08.000Z */
#define LEASE_MS INT64_C(60000)

struct fixture {
    char base[512];         /* VH_TEST_STORE_URL; "" when it is not a postgres URL */
    struct vh_store *admin; /* a store at `base`: creates and drops the test's database */
    char db[64];            /* the test's database */
    char url[512];          /* its URL */
};

static bool is_pg_url(const char *url)
{
    return strncmp(url, "postgres://", 11) == 0 || strncmp(url, "postgresql://", 13) == 0;
}

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void exec_ok(struct vh_store *st, const char *sql, struct vh_buf *out)
{
    struct vh_error err = VH_ERROR_INIT;

    if (vh__store_pg_exec(st, sql, out, &err) < 0)
        fail_msg("%s: %s", sql, err.msg);
}

static int setup(void **state)
{
    const char *env = getenv("VH_TEST_STORE_URL");
    struct vh_error err = VH_ERROR_INIT;
    struct fixture *f = calloc(1, sizeof(*f));
    const char *host, *path, *query;
    char u[VH_UUID_LEN + 1], sql[128];

    if (!f)
        return -1;
    *state = f;
    if (!env || !is_pg_url(env))
        return 0;
    snprintf(f->base, sizeof(f->base), "%s", env);
    if (vh_store_open(f->base, &f->admin, &err) < 0 || vh_uuid_new(u, NULL) < 0) {
        fprintf(stderr, "open %s: %s\n", f->base, err.msg);
        return -1;
    }
    snprintf(f->db, sizeof(f->db), "vh_pg_%.8s%.4s%.4s", u, u + 9, u + 14);
    snprintf(sql, sizeof(sql), "CREATE DATABASE %s", f->db);
    if (vh__store_pg_exec(f->admin, sql, NULL, &err) < 0) {
        fprintf(stderr, "%s: %s\n", sql, err.msg);
        return -1;
    }
    /* The URL with its database name replaced; a query string is kept. */
    host = strstr(f->base, "://") + 3;
    path = strchr(host, '/');
    query = strchr(host, '?');
    if (!path || (query && query < path))
        path = query ? query : host + strlen(host);
    snprintf(f->url, sizeof(f->url), "%.*s/%s%s", (int)(path - f->base), f->base, f->db,
             query ? query : "");
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    char sql[128];

    if (f->admin && f->db[0]) {
        snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)", f->db);
        vh__store_pg_exec(f->admin, sql, NULL, NULL);
    }
    vh_store_close(f->admin);
    free(f);
    return 0;
}

/* Skips the test unless the run has a PostgreSQL server. */
static struct fixture *need_pg(void **state)
{
    struct fixture *f = *state;

    if (!f->base[0])
        skip();
    return f;
}

static struct vh_store *open_ok(const char *url)
{
    struct vh_error err = VH_ERROR_INIT;
    struct vh_store *st = NULL;

    if (vh_store_open(url, &st, &err) < 0)
        fail_msg("open %s: %s", url, err.msg);
    return st;
}

static int64_t count(struct vh_store *st, const char *table)
{
    struct vh_error err = VH_ERROR_INIT;
    int64_t n = -1;

    if (vh_store_count(st, table, &n, &err) < 0)
        fail_msg("count %s: %s", table, err.msg);
    return n;
}

static void new_partner(struct vh_store *st, struct vh_partner *p)
{
    char key[VH_APIKEY_LEN + 1], hash[VH_SHA256_HEX_LEN + 1];
    struct vh_error err = VH_ERROR_INIT;

    assert_int_equal(vh_apikey_new(key, NULL), 0);
    assert_int_equal(vh_sha256_hex(key, strlen(key), hash, NULL), 0);
    if (vh_store_partner_create(st, "Nodes", hash, T0, p, &err) < 0)
        fail_msg("create partner: %s", err.msg);
}

static void new_endpoint(struct vh_store *st, const char *partner_id, const char *label)
{
    struct vh_error err = VH_ERROR_INIT;
    struct vh_endpoint ep;

    memset(&ep, 0, sizeof(ep));
    assert_int_equal(vh_uuid_new(ep.id, NULL), 0);
    snprintf(ep.partner_id, sizeof(ep.partner_id), "%s", partner_id);
    snprintf(ep.label, sizeof(ep.label), "%s", label);
    snprintf(ep.url, sizeof(ep.url), "https://example.com/hooks/%s", label);
    assert_int_equal(vh_secret_new(ep.secret, NULL), 0);
    ep.enabled = true;
    ep.created_ms = T0;
    ep.updated_ms = T0;
    if (vh_store_endpoint_create(st, &ep, VH_ENDPOINTS_MAX, &err) < 0)
        fail_msg("create endpoint %s: %s", label, err.msg);
}

static const char body_text[] = "{\"event\":\"session.completed\",\"data\":{\"n\":1}}";

static void fill_put(struct vh_event_put *ev, const char *partner_id, const char *session,
                     int64_t at)
{
    memset(ev, 0, sizeof(*ev));
    ev->partner_id = partner_id;
    ev->session_id = session;
    ev->body = body_text;
    ev->body_len = sizeof(body_text) - 1;
    ev->accepted_ms = at;
}

/* ---- migrations ------------------------------------------------------------------------------ */

#define OPENERS 4

struct opener {
    const char *url;
    pthread_barrier_t *go;
    int rc;
    int version;
    char msg[256];
    struct vh_store *st;
};

static void *open_at_once(void *arg)
{
    struct opener *o = arg;
    struct vh_error err = VH_ERROR_INIT;

    pthread_barrier_wait(o->go);
    o->rc = vh_store_open(o->url, &o->st, &err);
    if (o->rc == 0)
        o->rc = vh_store_schema_version(o->st, &o->version, &err);
    snprintf(o->msg, sizeof(o->msg), "%s", err.msg);
    return NULL;
}

static void nodes_starting_at_once_migrate_once(void **state)
{
    struct fixture *f = need_pg(state);
    struct vh_buf out = VH_BUF_INIT(64);
    struct opener o[OPENERS];
    pthread_t t[OPENERS];
    pthread_barrier_t go;
    int i, want = 0;

    pthread_barrier_init(&go, NULL, OPENERS);
    for (i = 0; i < OPENERS; i++) {
        memset(&o[i], 0, sizeof(o[i]));
        o[i].url = f->url;
        o[i].go = &go;
        assert_int_equal(pthread_create(&t[i], NULL, open_at_once, &o[i]), 0);
    }
    for (i = 0; i < OPENERS; i++)
        pthread_join(t[i], NULL);
    pthread_barrier_destroy(&go);
    for (i = 0; i < OPENERS; i++) {
        if (o[i].rc != 0)
            fail_msg("opener %d: %d %s", i, o[i].rc, o[i].msg);
        if (i == 0)
            want = o[i].version;
        assert_int_equal(o[i].version, want);
    }
    assert_true(want >= 2);
    exec_ok(o[0].st, "SELECT count(*) FROM vocohook_schema", &out);
    assert_string_equal(vh_buf_cstr(&out), "1");
    vh_buf_reset(&out);
    /* Every table once, whoever created it. */
    exec_ok(o[0].st,
            "SELECT count(*) FROM pg_catalog.pg_tables WHERE schemaname = current_schema()"
            " AND tablename IN ('partners', 'api_keys', 'endpoints', 'events', 'deliveries',"
            " 'attempts')",
            &out);
    assert_string_equal(vh_buf_cstr(&out), "6");
    vh_buf_release(&out);
    for (i = 0; i < OPENERS; i++)
        vh_store_close(o[i].st);

    /* A later start finds the schema current. */
    o[0].st = open_ok(f->url);
    assert_int_equal(vh_store_schema_version(o[0].st, &i, NULL), 0);
    assert_int_equal(i, want);
    vh_store_close(o[0].st);
}

/*
 * Schema version 5 adds deliveries.body_len without reading the table: the migration holds
 * an ACCESS EXCLUSIVE lock on deliveries, and a CHECK validated as the column is added
 * scans every row under it (0.5 s per 3 million rows here), while every node's claims,
 * records and ingests wait. The rows it adds the column to are all NULL, so the check is
 * added NOT VALID: it holds for every row written after, and reads none before.
 */
static void the_body_len_column_is_added_without_reading_the_table(void **state)
{
    struct fixture *f = need_pg(state);
    struct vh_error err = VH_ERROR_INIT;
    struct vh_buf out = VH_BUF_INIT(64);
    struct vh_store *st = open_ok(f->url);
    struct vh_partner p;

    new_partner(st, &p);
    new_endpoint(st, p.id, "old");
    /* Back to version 4, with a delivery row from then. */
    exec_ok(st,
            "ALTER TABLE deliveries DROP COLUMN body_len;"
            " UPDATE vocohook_schema SET version = 4;"
            " INSERT INTO events (id, partner_id, session_id, body, fanout, accepted_ms)"
            " SELECT 'e1', id, 's1', '\\x7b7d', 1, 1 FROM partners;"
            " INSERT INTO deliveries (id, event_id, endpoint_id, partner_id, state, attempts,"
            " next_attempt_ms, created_ms, updated_ms)"
            " SELECT 'd1', 'e1', id, partner_id, 'pending', 0, 1, 1, 1 FROM endpoints",
            NULL);
    vh_store_close(st);
    st = open_ok(f->url);
    exec_ok(st,
            "SELECT convalidated FROM pg_constraint WHERE conrelid = 'deliveries'::regclass"
            " AND pg_get_constraintdef(oid) LIKE '%body_len >= 0%'",
            &out);
    assert_string_equal(vh_buf_cstr(&out), "f");
    /* Still checked for the rows written from now on. */
    assert_true(vh__store_pg_exec(st, "UPDATE deliveries SET body_len = -1", NULL, &err) < 0);
    vh_buf_reset(&out);
    exec_ok(st, "SELECT count(*) FROM deliveries WHERE body_len IS NULL", &out);
    assert_string_equal(vh_buf_cstr(&out), "1");
    vh_buf_release(&out);
    vh_store_close(st);
}

static void refuses_a_database_that_is_not_vocohooks(void **state)
{
    struct fixture *f = need_pg(state);
    struct vh_error err = VH_ERROR_INIT;
    struct vh_store *st = NULL;

    /* A database with someone else's table and no vocohook_schema: the store keeps out. */
    st = open_ok(f->url);
    exec_ok(st,
            "DROP TABLE vocohook_schema, attempts, deliveries, events, endpoints, api_keys,"
            " partners; CREATE TABLE theirs (x int)",
            NULL);
    vh_store_close(st);
    st = NULL;
    assert_int_equal(vh_store_open(f->url, &st, &err), VH_ESTORE);
    assert_null(st);
    assert_non_null(strstr(err.msg, "not a vocohook database"));
}

/*
 * Schema version 4: deliveries_endpoint holds pending, abandoned and canceled deliveries
 * only. The filters and the cancel for those states repeat its predicate, so that the
 * generic plan a prepared statement ends up with can still use it; in-flight and succeeded
 * deliveries are not in it and are read through another index. The tables are nearly
 * empty, so the planner would rather scan them: sequential scans are turned off here.
 */
static void history_filters_use_the_index_of_their_state(void **state)
{
    static const struct {
        const char *query, *index; /* NULL: any index but the partial one */
    } by_index[] = {
        {"list_by_state", "deliveries_endpoint"},
        {"count_by_state", "deliveries_endpoint"},
        {"cancel", "deliveries_endpoint"},
        {"list_in_flight", NULL},
        {"count_in_flight", NULL},
        {"list_succeeded", NULL},
        {"count_succeeded", NULL},
    };
    struct fixture *f = need_pg(state);
    struct vh_error err = VH_ERROR_INIT;
    struct vh_buf out = VH_BUF_INIT(1 << 16);
    struct vh_store *st = open_ok(f->url);
    const char *plan;
    bool partial;
    size_t i;

    exec_ok(st, "SELECT indexdef FROM pg_indexes WHERE indexname = 'deliveries_endpoint'", &out);
    if (!strstr(vh_buf_cstr(&out), "WHERE ((state <> 'in_flight'::text) AND (state <> "
                                   "'succeeded'::text))"))
        fail_msg("deliveries_endpoint is not partial: %s", vh_buf_cstr(&out));
    exec_ok(st,
            "DO $$BEGIN EXECUTE format('ALTER DATABASE %I SET enable_seqscan = off',"
            " current_database()); END$$",
            NULL);
    vh_store_close(st);
    st = open_ok(f->url); /* new connections, with the setting */
    for (i = 0; i < sizeof(by_index) / sizeof(by_index[0]); i++) {
        vh_buf_reset(&out);
        if (vh__store_pg_explain(st, by_index[i].query, &out, &err) < 0)
            fail_msg("%s: %s", by_index[i].query, err.msg);
        plan = vh_buf_cstr(&out);
        /* "Index Scan using X on deliveries", "Bitmap Index Scan on X" */
        partial =
            strstr(plan, "using deliveries_endpoint ") || strstr(plan, "on deliveries_endpoint ");
        if (strstr(plan, "Seq Scan on deliveries") || (by_index[i].index && !partial) ||
            (!by_index[i].index && partial))
            fail_msg("%s: not on %s:\n%s", by_index[i].query,
                     by_index[i].index ? by_index[i].index : "another index", plan);
    }
    assert_int_equal(vh__store_pg_explain(st, "nope", &out, NULL), VH_ENOTFOUND);
    vh_buf_release(&out);
    vh_store_close(st);
}

/*
 * A delivery's get reads its newest attempts, newest first, from the attempts' primary key
 * (no sort of them all), with the count of them all run once (an InitPlan; a SubPlan would
 * run per row read). Sequential scans are off, as above.
 */
static void a_delivery_get_reads_the_newest_attempts_by_the_key(void **state)
{
    struct fixture *f = need_pg(state);
    struct vh_error err = VH_ERROR_INIT;
    struct vh_buf out = VH_BUF_INIT(1 << 16);
    struct vh_store *st = open_ok(f->url);
    const char *plan;

    exec_ok(st,
            "DO $$BEGIN EXECUTE format('ALTER DATABASE %I SET enable_seqscan = off',"
            " current_database()); END$$",
            NULL);
    vh_store_close(st);
    st = open_ok(f->url);
    if (vh__store_pg_explain(st, "attempts_of", &out, &err) < 0)
        fail_msg("attempts_of: %s", err.msg);
    plan = vh_buf_cstr(&out);
    if (!strstr(plan, "Index Scan Backward using attempts_pkey on attempts") ||
        !strstr(plan, "InitPlan") || strstr(plan, "SubPlan") || strstr(plan, "Sort"))
        fail_msg("attempts_of: not the newest attempts by the key, counted once:\n%s", plan);
    vh_buf_release(&out);
    vh_store_close(st);
}

/*
 * The claim marks the rows it locked by key, whatever the table holds. As a join of the
 * locked rows with the table, a generic plan (which cannot see LIMIT $2, so expects a tenth
 * of the table) hash-joined a scan of all of it: 20 000 rows read per claim here, a million
 * on a large backlog. Sequential scans stay on, and the table is analyzed.
 */
static void a_claim_marks_its_rows_by_the_key(void **state)
{
    struct fixture *f = need_pg(state);
    struct vh_error err = VH_ERROR_INIT;
    struct vh_buf out = VH_BUF_INIT(1 << 16), sql = VH_BUF_INIT(4096);
    struct vh_store *st = open_ok(f->url);
    struct vh_partner p;
    const char *plan;

    new_partner(st, &p);
    new_endpoint(st, p.id, "bulk");
    assert_int_equal(
        vh_buf_addf(&sql,
                    "INSERT INTO events (id, partner_id, session_id, body, fanout, accepted_ms)"
                    " SELECT 'e' || g, '%s', 's' || g, '\\x7b7d', 1, g"
                    " FROM generate_series(1, 20000) AS g;"
                    " INSERT INTO deliveries (id, event_id, endpoint_id, partner_id, state,"
                    " attempts, next_attempt_ms, created_ms, updated_ms)"
                    " SELECT 'd' || g, 'e' || g, (SELECT id FROM endpoints), '%s', 'pending', 0,"
                    " g, g, g FROM generate_series(1, 20000) AS g;"
                    " ANALYZE",
                    p.id, p.id),
        0);
    exec_ok(st, vh_buf_cstr(&sql), NULL);
    if (vh__store_pg_explain(st, "claim", &out, &err) < 0)
        fail_msg("claim: %s", err.msg);
    plan = vh_buf_cstr(&out);
    if (strstr(plan, "Seq Scan on deliveries") || !strstr(plan, "deliveries_due") ||
        !strstr(plan, "deliveries_pkey"))
        fail_msg("claim: not by the due index and the key:\n%s", plan);
    /* These rows have no body_len, as rows from before schema 5: their events' count. */
    {
        struct vh_delivery_job_rec *jobs = NULL;
        size_t n = 0;

        if (vh_store_delivery_claim_bounded(st, "node-a", T0, LEASE_MS, 10, 5, &jobs, &n, &err) < 0)
            fail_msg("claim: %s", err.msg);
        assert_int_equal(n, 2); /* 2 + 2 bytes of "{}" fit in 5; a third would not */
        vh_delivery_job_recs_free(jobs, n);
    }
    vh_buf_release(&sql);
    vh_buf_release(&out);
    vh_store_close(st);
}

static void connect_failures_are_one_line_store_errors(void **state)
{
    struct vh_error err = VH_ERROR_INIT;
    struct vh_store *st = NULL;

    (void)need_pg(state);
    /* Port 1 on loopback: nothing listens there. */
    assert_int_equal(
        vh_store_open("postgres://vocohook@127.0.0.1:1/x?connect_timeout=2", &st, &err), VH_ESTORE);
    assert_null(st);
    assert_non_null(strstr(err.msg, "connect to postgres"));
    assert_null(strchr(err.msg, '\n'));
}

/*
 * libpq quotes a URL it cannot parse, or the part it could not decode; the store's error
 * (which a daemon logs) shows the password of neither the userinfo nor the query as "***".
 */
static void connect_failures_never_show_the_password(void **state)
{
    static const char *const urls[] = {
        "postgres://vocohook:Hush%zzPw1@127.0.0.1:1/x",          /* a bad escape in it */
        "postgres://vocohook:HushHushPw1@[::1/x",                /* the whole URL quoted */
        "postgres://vocohook@127.0.0.1:1/x?password=Hush%zzPw1", /* in the query */
        "postgres://vocohook:HushHushPw1@127.0.0.1:1/x?password=Hush%zzPw1&sslmode=disable",
    };
    struct vh_error err;
    struct vh_store *st = NULL;
    size_t i;

    (void)need_pg(state);
    for (i = 0; i < sizeof(urls) / sizeof(urls[0]); i++) {
        memset(&err, 0, sizeof(err));
        assert_int_equal(vh_store_open(urls[i], &st, &err), VH_ESTORE);
        assert_null(st);
        if (strstr(err.msg, "Hush") || !strstr(err.msg, "***"))
            fail_msg("%s: %s", urls[i], err.msg);
        assert_non_null(strstr(err.msg, "connect to postgres: "));
    }
}

/* ---- two nodes claiming ------------------------------------------------------------------------
 */

#define DUE_EVENTS   400 /* times VH_ENDPOINTS_MAX endpoints: 2000 due deliveries */
#define CLAIMERS     4   /* threads: two per node */
#define CLAIM_BATCH  25
#define CLAIM_ROUNDS 10000

struct claimer {
    struct vh_store *st;
    const char *node;
    pthread_barrier_t *go;
    char (*ids)[VH_UUID_LEN + 1]; /* what this claimer got */
    size_t n;
    size_t cap;
    int rc;
    char msg[256];
};

static void *claim_until_empty(void *arg)
{
    struct claimer *c = arg;
    struct vh_delivery_job_rec *jobs;
    struct vh_error err = VH_ERROR_INIT;
    size_t n, i;
    int round;

    pthread_barrier_wait(c->go);
    for (round = 0; round < CLAIM_ROUNDS; round++) {
        jobs = NULL;
        n = 0;
        c->rc = vh_store_delivery_claim(c->st, c->node, T0 + 1000, LEASE_MS, CLAIM_BATCH, &jobs, &n,
                                        &err);
        if (c->rc < 0) {
            snprintf(c->msg, sizeof(c->msg), "%s", err.msg);
            return NULL;
        }
        for (i = 0; i < n && c->n < c->cap; i++)
            memcpy(c->ids[c->n++], jobs[i].delivery_id, sizeof(c->ids[0]));
        vh_delivery_job_recs_free(jobs, n);
        if (n == 0)
            return NULL;
    }
    return NULL;
}

static int cmp_id(const void *a, const void *b)
{
    return strcmp(a, b);
}

static void two_nodes_never_claim_the_same_delivery(void **state)
{
    struct fixture *f = need_pg(state);
    const size_t want = (size_t)DUE_EVENTS * VH_ENDPOINTS_MAX;
    struct vh_event_put_result res;
    struct vh_error err = VH_ERROR_INIT;
    struct vh_store *node[2];
    struct claimer c[CLAIMERS];
    char(*all)[VH_UUID_LEN + 1];
    char session[VH_UUID_LEN + 1], label[8];
    struct vh_event_put ev;
    struct vh_partner p;
    pthread_t t[CLAIMERS];
    pthread_barrier_t go;
    size_t total = 0, i, k;
    double t0, t1;

    node[0] = open_ok(f->url);
    node[1] = open_ok(f->url);
    new_partner(node[0], &p);
    for (i = 0; i < VH_ENDPOINTS_MAX; i++) {
        snprintf(label, sizeof(label), "ep%zu", i);
        new_endpoint(node[0], p.id, label);
    }
    t0 = now_s();
    for (i = 0; i < DUE_EVENTS; i++) {
        assert_int_equal(vh_uuid_new(session, NULL), 0);
        fill_put(&ev, p.id, session, T0 + (int64_t)(i % 7));
        if (vh_store_event_put(node[i % 2], &ev, &res, &err) < 0)
            fail_msg("put: %s", err.msg);
        assert_int_equal(res.deliveries, VH_ENDPOINTS_MAX);
    }
    t1 = now_s();
    print_message("ingest: %d events (%zu deliveries) in %.3f s, %.0f events/s\n", DUE_EVENTS, want,
                  t1 - t0, DUE_EVENTS / (t1 - t0));
    assert_int_equal(count(node[0], "deliveries"), (int64_t)want);

    pthread_barrier_init(&go, NULL, CLAIMERS);
    for (i = 0; i < CLAIMERS; i++) {
        memset(&c[i], 0, sizeof(c[i]));
        c[i].st = node[i % 2];
        c[i].node = i % 2 ? "node-b" : "node-a";
        c[i].go = &go;
        c[i].cap = want;
        c[i].ids = calloc(want, sizeof(c[i].ids[0]));
        assert_non_null(c[i].ids);
        assert_int_equal(pthread_create(&t[i], NULL, claim_until_empty, &c[i]), 0);
    }
    t0 = now_s();
    for (i = 0; i < CLAIMERS; i++)
        pthread_join(t[i], NULL);
    t1 = now_s();
    pthread_barrier_destroy(&go);
    for (i = 0; i < CLAIMERS; i++) {
        if (c[i].rc < 0)
            fail_msg("claimer %zu: %s", i, c[i].msg);
        total += c[i].n;
    }
    print_message("claim: %zu deliveries by %d claimers on 2 nodes in %.3f s (%zu/%zu/%zu/%zu)\n",
                  total, CLAIMERS, t1 - t0, c[0].n, c[1].n, c[2].n, c[3].n);
    /* Together they got all, and no delivery twice. */
    assert_int_equal(total, want);
    all = calloc(want, sizeof(all[0]));
    assert_non_null(all);
    for (i = 0, k = 0; i < CLAIMERS; i++) {
        memcpy(all[k], c[i].ids, c[i].n * sizeof(all[0]));
        k += c[i].n;
        free(c[i].ids);
    }
    qsort(all, want, sizeof(all[0]), cmp_id);
    for (i = 1; i < want; i++)
        if (strcmp(all[i - 1], all[i]) == 0)
            fail_msg("delivery %s was claimed twice", all[i]);
    free(all);
    {
        struct vh_delivery_stats s;

        assert_int_equal(vh_store_delivery_stats(node[1], T0 + 1000, &s, NULL), 0);
        assert_int_equal(s.pending, 0);
        assert_int_equal(s.in_flight, (int64_t)want);
    }
    vh_store_close(node[0]);
    vh_store_close(node[1]);
}

/* ---- the same session from 20 callers at once -------------------------------------------------
 */

#define PUTTERS 20

struct putter {
    struct vh_store *st;
    const struct vh_event_put *ev;
    pthread_barrier_t *go;
    struct vh_event_put_result res;
    int rc;
    char msg[256];
};

static void *put_at_once(void *arg)
{
    struct putter *pt = arg;
    struct vh_error err = VH_ERROR_INIT;

    pthread_barrier_wait(pt->go);
    pt->rc = vh_store_event_put(pt->st, pt->ev, &pt->res, &err);
    snprintf(pt->msg, sizeof(pt->msg), "%s", err.msg);
    return NULL;
}

static void identical_puts_on_two_nodes_make_one_event(void **state)
{
    struct fixture *f = need_pg(state);
    struct vh_store *node[2];
    struct putter pt[PUTTERS];
    pthread_t t[PUTTERS];
    pthread_barrier_t go;
    struct vh_event_put ev;
    struct vh_partner p;
    char session[VH_UUID_LEN + 1];
    int i, created = 0;

    node[0] = open_ok(f->url);
    node[1] = open_ok(f->url);
    new_partner(node[0], &p);
    new_endpoint(node[0], p.id, "a");
    new_endpoint(node[0], p.id, "b");
    new_endpoint(node[0], p.id, "c");
    assert_int_equal(vh_uuid_new(session, NULL), 0);
    fill_put(&ev, p.id, session, T0);

    pthread_barrier_init(&go, NULL, PUTTERS);
    for (i = 0; i < PUTTERS; i++) {
        memset(&pt[i], 0, sizeof(pt[i]));
        pt[i].st = node[i % 2];
        pt[i].ev = &ev;
        pt[i].go = &go;
        assert_int_equal(pthread_create(&t[i], NULL, put_at_once, &pt[i]), 0);
    }
    for (i = 0; i < PUTTERS; i++)
        pthread_join(t[i], NULL);
    pthread_barrier_destroy(&go);
    for (i = 0; i < PUTTERS; i++) {
        if (pt[i].rc != 0)
            fail_msg("putter %d: %d %s", i, pt[i].rc, pt[i].msg);
        created += pt[i].res.created;
        assert_string_equal(pt[i].res.event_id, pt[0].res.event_id);
        assert_int_equal(pt[i].res.deliveries, 3);
    }
    assert_int_equal(created, 1);
    assert_int_equal(count(node[1], "events"), 1);
    assert_int_equal(count(node[1], "deliveries"), 3);
    vh_store_close(node[0]);
    vh_store_close(node[1]);
}

/* ---- lost connections ---------------------------------------------------------------------- */

#define BUSY 6

struct busy {
    struct vh_store *st;
    pthread_barrier_t *go;
    int rc;
};

/* One call of a burst: while it holds a connection, the others open their own. */
static void *count_at_once(void *arg)
{
    struct busy *b = arg;
    int64_t n;

    pthread_barrier_wait(b->go);
    b->rc = vh_store_count(b->st, "partners", &n, NULL);
    if (b->rc == 0)
        b->rc = vh_store_count(b->st, "endpoints", &n, NULL);
    return NULL;
}

static void run_busy(struct vh_store *st)
{
    struct busy b[BUSY];
    pthread_t t[BUSY];
    pthread_barrier_t go;
    int i;

    pthread_barrier_init(&go, NULL, BUSY);
    for (i = 0; i < BUSY; i++) {
        b[i].st = st;
        b[i].go = &go;
        b[i].rc = -1;
        assert_int_equal(pthread_create(&t[i], NULL, count_at_once, &b[i]), 0);
    }
    for (i = 0; i < BUSY; i++)
        pthread_join(t[i], NULL);
    pthread_barrier_destroy(&go);
    for (i = 0; i < BUSY; i++)
        assert_int_equal(b[i].rc, 0);
}

/*
 * count(EXPR) over the sessions of the test's database but the admin's own: how many there
 * are ("*"), or how many a call on each ended ("pg_terminate_backend(pid, 5000)").
 */
static long over_sessions(struct fixture *f, const char *expr)
{
    struct vh_buf out = VH_BUF_INIT(64);
    char sql[256];
    long n;

    snprintf(sql, sizeof(sql),
             "SELECT count(%s) FROM pg_stat_activity WHERE datname = '%s'"
             " AND pid <> pg_backend_pid()",
             expr, f->db);
    exec_ok(f->admin, sql, &out);
    n = strtol(vh_buf_cstr(&out), NULL, 10);
    vh_buf_release(&out);
    return n;
}

static long sessions_of(struct fixture *f)
{
    return over_sessions(f, "*");
}

/*
 * Runs bursts until the pool holds at least two connections. The threads of a burst only
 * overlap by chance: on a loaded machine one burst can run one call after the other.
 */
static void fill_pool(struct fixture *f, struct vh_store *st)
{
    int i;

    for (i = 0; i < 200 && sessions_of(f) < 2; i++)
        run_busy(st);
    assert_true(sessions_of(f) >= 2);
}

/* Ends every session on the test's database but the admin's own; returns how many. */
static long terminate_all(struct fixture *f)
{
    /* The timeout form (PostgreSQL 14) waits until each session is really gone. */
    return over_sessions(f, "pg_terminate_backend(pid, 5000)");
}

static void a_lost_connection_fails_once_then_reconnects(void **state)
{
    struct fixture *f = need_pg(state);
    struct vh_error err = VH_ERROR_INIT;
    struct vh_partner p, got;
    struct vh_store *st;
    int64_t n = -1;
    long killed;

    st = open_ok(f->url);
    new_partner(st, &p);
    fill_pool(f, st); /* several pooled connections */
    killed = terminate_all(f);
    print_message("terminated %ld pooled connections\n", killed);
    assert_true(killed >= 2);

    /* The call that meets a dead connection fails as a store error, with one line. */
    assert_int_equal(vh_store_count(st, "partners", &n, &err), VH_ESTORE);
    assert_int_equal(n, -1);
    assert_true(err.msg[0] != '\0');
    assert_null(strchr(err.msg, '\n'));
    print_message("lost connection: %s\n", err.msg);

    /* The next call reconnects and works; so does a burst that needs several connections. */
    vh_error_clear(&err);
    if (vh_store_partner_get(st, p.id, &got, &err) < 0)
        fail_msg("after reconnect: %s", err.msg);
    assert_string_equal(got.id, p.id);
    run_busy(st);

    /* A write that meets a dead connection fails whole, and the store goes on. */
    assert_true(terminate_all(f) >= 1);
    vh_error_clear(&err);
    {
        char key[VH_APIKEY_LEN + 1], hash[VH_SHA256_HEX_LEN + 1];

        assert_int_equal(vh_apikey_new(key, NULL), 0);
        assert_int_equal(vh_sha256_hex(key, strlen(key), hash, NULL), 0);
        assert_int_equal(vh_store_partner_create(st, "Lost", hash, T0, &got, &err), VH_ESTORE);
    }
    assert_int_equal(count(st, "partners"), 1);
    vh_store_close(st);
}

/* ---- wake-ups ------------------------------------------------------------------------------ */

struct wakes {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int n;
};

static void on_due(void *ud)
{
    struct wakes *w = ud;

    pthread_mutex_lock(&w->mu);
    w->n++;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

/* Waits (at most 10 s) until the watcher was called more than `seen` times; the new count. */
static int await_wake(struct wakes *w, int seen, const char *after)
{
    struct timespec until;
    int n;

    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 10;
    pthread_mutex_lock(&w->mu);
    while (w->n <= seen && pthread_cond_timedwait(&w->cv, &w->mu, &until) == 0)
        ;
    n = w->n;
    pthread_mutex_unlock(&w->mu);
    if (n <= seen)
        fail_msg("no wake-up within 10 s after %s", after);
    return n;
}

static void another_nodes_writes_wake_a_watcher(void **state)
{
    struct fixture *f = need_pg(state);
    struct vh_error err = VH_ERROR_INIT;
    struct vh_event_put_result res;
    struct vh_delivery_job_rec *jobs = NULL;
    struct wakes w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};
    struct vh_store *a, *b;
    struct vh_event_put ev;
    struct vh_partner p;
    size_t n_jobs = 0;
    int seen;
    double t;

    a = open_ok(f->url);
    b = open_ok(f->url);
    new_partner(b, &p);
    new_endpoint(b, p.id, "primary");
    if (vh_store_watch(a, on_due, &w, &err) < 0)
        fail_msg("watch: %s", err.msg);
    /* Once on connecting: what was sent before it listened is not lost. */
    seen = await_wake(&w, 0, "starting");

    t = now_s();
    fill_put(&ev, p.id, "wake-1", T0);
    if (vh_store_event_put(b, &ev, &res, &err) < 0)
        fail_msg("put: %s", err.msg);
    seen = await_wake(&w, seen, "an ingest on another node");
    print_message("ingest on node b -> wake-up on node a: %.1f ms\n", (now_s() - t) * 1000);

    /* Leases taken back by one node wake the others. */
    if (vh_store_delivery_claim(b, "node-b", T0, 1, 10, &jobs, &n_jobs, &err) < 0)
        fail_msg("claim: %s", err.msg);
    assert_int_equal(n_jobs, 1);
    vh_delivery_job_recs_free(jobs, n_jobs);
    assert_int_equal(vh_store_delivery_recover(b, NULL, T0 + 10, &err), 1);
    seen = await_wake(&w, seen, "a lease recovery on another node");

    /* The listening connection is cut: the watcher reconnects and calls once more. */
    assert_true(terminate_all(f) >= 1);
    seen = await_wake(&w, seen, "the server ended the listening connection");
    fill_put(&ev, p.id, "wake-2", T0);
    /* b's pooled connections were cut too: its first call may fail once. */
    if (vh_store_event_put(b, &ev, &res, &err) < 0) {
        vh_error_clear(&err);
        if (vh_store_event_put(b, &ev, &res, &err) < 0)
            fail_msg("put after reconnect: %s", err.msg);
    }
    seen = await_wake(&w, seen, "an ingest after the reconnect");

    /* Stopping returns once on_due can no longer run: then `w` may go away. */
    assert_int_equal(vh_store_watch(a, NULL, NULL, &err), 0);
    vh_store_close(a);
    vh_store_close(b);
    assert_true(seen >= 4);
}

/* ---- endpoint changes ---------------------------------------------------------------------- */

struct changes {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int n;
    char ids[8][VH_UUID_LEN + 1];
    int connects; /* calls with NULL: the watcher (re)connected */
};

static void on_endpoint_changed(void *ud, const char *endpoint_id)
{
    struct changes *c = ud;

    pthread_mutex_lock(&c->mu);
    if (!endpoint_id) {
        c->connects++;
    } else {
        if (c->n < 8)
            snprintf(c->ids[c->n], sizeof(c->ids[0]), "%s", endpoint_id);
        c->n++;
    }
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

/* Waits (at most `ms`) until `*count` (c->n or c->connects) reaches `want`; its value then. */
static int await_count(struct changes *c, const int *count, int want, int ms)
{
    struct timespec until;
    int n;

    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += ms / 1000;
    until.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&c->mu);
    while (*count < want && pthread_cond_timedwait(&c->cv, &c->mu, &until) == 0)
        ;
    n = *count;
    pthread_mutex_unlock(&c->mu);
    return n;
}

static int await_changes(struct changes *c, int want, int ms)
{
    return await_count(c, &c->n, want, ms);
}

/*
 * Another node's committed change of an endpoint's url, enabled flag or existence reaches a
 * watcher with the endpoint's id, once per write; a label-only write and a refused
 * conditional update (rolled back) send nothing.
 */
static void another_nodes_endpoint_changes_reach_a_watcher(void **state)
{
    struct fixture *f = need_pg(state);
    struct vh_error err = VH_ERROR_INIT;
    struct changes c = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, {{0}}, 0};
    struct wakes w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};
    struct vh_endpoint ep, seen, stale;
    struct vh_store *a, *b;
    struct vh_partner p;
    int i;

    a = open_ok(f->url);
    b = open_ok(f->url);
    new_partner(b, &p);
    new_endpoint(b, p.id, "moving");
    if (vh_store_endpoint_get_by_label(b, p.id, "moving", &ep, &err) < 0)
        fail_msg("get: %s", err.msg);
    if (vh_store_watch_endpoints(a, on_endpoint_changed, &c, &err) < 0)
        fail_msg("watch endpoints: %s", err.msg);
    /*
     * The same watcher: on_due is called once it listens (on both channels), and a change
     * made before that would be lost.
     */
    if (vh_store_watch(a, on_due, &w, &err) < 0)
        fail_msg("watch: %s", err.msg);
    (void)await_wake(&w, 0, "starting");
    /* Its connect came first: whatever changed before it listened is reported as NULL. */
    assert_int_equal(await_count(&c, &c.connects, 1, 0), 1);
    stale = ep;

    snprintf(ep.label, sizeof(ep.label), "renamed");
    ep.updated_ms = T0 + 1;
    assert_int_equal(vh_store_endpoint_update(b, &ep, &err), 0);
    snprintf(ep.url, sizeof(ep.url), "https://example.com/hooks/stale");
    assert_int_equal(vh_store_endpoint_update_if(b, &stale, &ep, &err), VH_ESTATE);
    vh_error_clear(&err);
    snprintf(ep.url, sizeof(ep.url), "https://example.com/hooks/moved");
    ep.updated_ms = T0 + 2;
    assert_int_equal(vh_store_endpoint_update(b, &ep, &err), 0);
    seen = ep;
    ep.enabled = false;
    ep.updated_ms = T0 + 3;
    assert_int_equal(vh_store_endpoint_update_if(b, &seen, &ep, &err), 0);
    assert_int_equal(vh_store_endpoint_delete(b, p.id, ep.id, T0 + 4, &err), 0);

    assert_int_equal(await_changes(&c, 3, 10000), 3);
    assert_int_equal(await_changes(&c, 4, 300), 3); /* nothing more */
    for (i = 0; i < 3; i++)
        assert_string_equal(c.ids[i], ep.id);
    assert_int_equal(await_count(&c, &c.connects, 2, 0), 1);

    /*
     * The listening connection is cut: what changes before it listens again is lost, so
     * once it does, the watcher says any endpoint may have changed.
     */
    assert_true(terminate_all(f) >= 1);
    assert_int_equal(await_count(&c, &c.connects, 2, 10000), 2);
    assert_int_equal(await_changes(&c, 4, 0), 3);

    /* Stopping returns once on_changed can no longer run: then `c` may go away. */
    assert_int_equal(vh_store_watch_endpoints(a, NULL, NULL, &err), 0);
    assert_int_equal(vh_store_watch(a, NULL, NULL, &err), 0);
    vh_store_close(a);
    vh_store_close(b);
}

/* ---- shared rate limits --------------------------------------------------------------------- */

#define RATE_THREADS 8
#define RATE_TRIES   10
#define RATE_LIMIT   30

struct taker {
    struct vh_store *st;
    const char *key;
    pthread_barrier_t *go;
    int allowed;
    int rc;
};

static void *take_at_once(void *arg)
{
    const struct vh_rate_limits lim = {RATE_LIMIT, -1};
    struct taker *t = arg;
    struct vh_error err = VH_ERROR_INIT;
    int i, wait;

    pthread_barrier_wait(t->go);
    for (i = 0; i < RATE_TRIES; i++) {
        t->rc = vh_store_rate_take(t->st, t->key, &lim, false, T0 + i, &wait, NULL, &err);
        if (t->rc < 0)
            return NULL;
        if (wait == 0)
            t->allowed++;
    }
    return NULL;
}

static void rate_windows_hold_across_nodes(void **state)
{
    struct fixture *f = need_pg(state);
    const struct vh_rate_limits lim = {5, 2};
    struct vh_error err = VH_ERROR_INIT;
    char key[VH_SHA256_HEX_LEN + 1], other[VH_SHA256_HEX_LEN + 1];
    struct taker t[RATE_THREADS];
    pthread_t th[RATE_THREADS];
    struct vh_store *node[2];
    struct vh_rate_window win;
    pthread_barrier_t go;
    int i, wait = -1, allowed = 0;

    node[0] = open_ok(f->url);
    node[1] = open_ok(f->url);
    assert_int_equal(vh_sha256_hex("key-1", 5, key, NULL), 0);
    assert_int_equal(vh_sha256_hex("key-2", 5, other, NULL), 0);

    /* Alternating nodes: 2 /calls requests pass, the third waits; 5 in all pass. */
    for (i = 0; i < 3; i++) {
        if (vh_store_rate_take(node[i % 2], key, &lim, true, T0 + i * 1000, &wait, &win, &err) < 0)
            fail_msg("take: %s", err.msg);
        assert_int_equal(wait, i < 2 ? 0 : 58);
    }
    assert_int_equal(win.calls_count, 2);
    assert_int_equal(win.calls_start_ms, T0);
    for (i = 0; i < 4; i++) {
        assert_int_equal(
            vh_store_rate_take(node[i % 2], key, &lim, false, T0 + 3000, &wait, &win, &err), 0);
        assert_int_equal(wait, i < 3 ? 0 : 57);
    }
    assert_int_equal(win.general_count, 5);
    /* Another key has windows of its own. */
    assert_int_equal(vh_store_rate_take(node[1], other, &lim, false, T0 + 3000, &wait, NULL, &err),
                     0);
    assert_int_equal(wait, 0);
    /* A minute after its start the window opens again. */
    assert_int_equal(vh_store_rate_take(node[0], key, &lim, true, T0 + 60000, &wait, &win, &err),
                     0);
    assert_int_equal(wait, 0);
    assert_int_equal(win.general_count, 1);
    assert_int_equal(win.calls_count, 1);

    /* Racing: 8 threads on two nodes, 80 requests, a limit of 30: exactly 30 pass. */
    assert_int_equal(vh_sha256_hex("key-3", 5, key, NULL), 0);
    pthread_barrier_init(&go, NULL, RATE_THREADS);
    for (i = 0; i < RATE_THREADS; i++) {
        t[i] = (struct taker){node[i % 2], key, &go, 0, -1};
        assert_int_equal(pthread_create(&th[i], NULL, take_at_once, &t[i]), 0);
    }
    for (i = 0; i < RATE_THREADS; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(t[i].rc, 0);
        allowed += t[i].allowed;
    }
    pthread_barrier_destroy(&go);
    assert_int_equal(allowed, RATE_LIMIT);
    vh_store_close(node[0]);
    vh_store_close(node[1]);
}

/* ---- connections ----------------------------------------------------------------------------- */

/*
 * Every connection carries TCP settings that bound a call on a network path that died
 * without a word: keepalive probes after 30 s idle, 3 of them 10 s apart, and 30 s for
 * unacknowledged data. Read from the socket itself; a URL's own values win.
 */
static void connections_give_up_on_a_silent_network(void **state)
{
    struct fixture *f = need_pg(state);
    struct vh_error err = VH_ERROR_INIT;
    struct vh__pg_socket_opts o;
    struct vh_store *st = open_ok(f->url);
    char url[600];

    if (vh__store_pg_socket_opts(st, &o, &err) < 0)
        fail_msg("socket options: %s", err.msg);
    assert_int_equal(o.keepalive, 1);
    assert_int_equal(o.keepidle, 30);
    assert_int_equal(o.keepintvl, 10);
    assert_int_equal(o.keepcnt, 3);
    assert_int_equal(o.user_timeout_ms, 30000);
    vh_store_close(st);

    snprintf(url, sizeof(url), "%s%skeepalives_idle=45&tcp_user_timeout=5000", f->url,
             strchr(f->url, '?') ? "&" : "?");
    st = open_ok(url);
    if (vh__store_pg_socket_opts(st, &o, &err) < 0)
        fail_msg("socket options: %s", err.msg);
    assert_int_equal(o.keepidle, 45);
    assert_int_equal(o.user_timeout_ms, 5000);
    assert_int_equal(o.keepcnt, 3);
    vh_store_close(st);
}

/* ---- disabling an endpoint while its attempts are being recorded ---------------------------- */

/*
 * Polls `sql` (a count on the test's database, run on `st`) until it reaches `want`, for up
 * to 10 s: how a test knows another session got as far as it should before it goes on.
 */
static void wait_for_count(struct vh_store *st, const char *sql, long want)
{
    struct vh_buf out = VH_BUF_INIT(64);
    int i;

    for (i = 0; i < 1000; i++) {
        vh_buf_reset(&out);
        exec_ok(st, sql, &out);
        if (strtol(vh_buf_cstr(&out), NULL, 10) >= want)
            break;
        nanosleep(&(struct timespec){0, 10000000}, NULL);
    }
    vh_buf_release(&out);
    if (i == 1000)
        fail_msg("timed out waiting for: %s", sql);
}

struct racer {
    struct vh_store *st;
    const struct vh_delivery_result *result; /* record this, or */
    struct vh_endpoint *ep;                  /* update this */
    int rc;
    char msg[256];
};

static void *record_in_thread(void *arg)
{
    struct racer *r = arg;
    struct vh_error err = VH_ERROR_INIT;

    r->rc = vh_store_delivery_record(r->st, r->result, 1, &err);
    snprintf(r->msg, sizeof(r->msg), "%s", err.msg);
    return NULL;
}

static void *update_in_thread(void *arg)
{
    struct racer *r = arg;
    struct vh_error err = VH_ERROR_INIT;

    r->rc = vh_store_endpoint_update(r->st, r->ep, &err);
    snprintf(r->msg, sizeof(r->msg), "%s", err.msg);
    return NULL;
}

/*
 * SPEC §3: disabling an endpoint stops its pending deliveries. Node A records a failed
 * attempt (in flight -> pending, a retry due later) while an operator disables the endpoint
 * on node B. The record's transaction is held open after its UPDATE by a test trigger (it
 * stands for the record's COMMIT and WAL flush, or a batch of 64). The disable's cancel ran
 * as two statements, one for pending rows and one for in-flight rows, each of which misses
 * a row that moves from the other state meanwhile: the delivery stayed pending, and the
 * next claim sent it to the disabled endpoint.
 */
static void disabling_while_an_attempt_is_recorded_cancels_its_retry(void **state)
{
    struct fixture *f = need_pg(state);
    struct vh_error err = VH_ERROR_INIT;
    struct vh_store *node_a, *node_b, *locker;
    struct vh_delivery_job_rec *jobs = NULL, *later = NULL;
    struct vh_delivery_brief *briefs = NULL;
    struct vh_event_put_result res;
    struct vh_delivery_result r;
    struct racer rec, upd;
    struct vh_event_put ev;
    struct vh_endpoint ep;
    struct vh_partner p;
    pthread_t t_rec, t_upd;
    char session[VH_UUID_LEN + 1];
    size_t n = 0, nb = 0;

    node_a = open_ok(f->url);
    node_b = open_ok(f->url);
    locker = open_ok(f->url); /* a session of its own holds the advisory lock */
    new_partner(node_a, &p);
    memset(&ep, 0, sizeof(ep));
    assert_int_equal(vh_uuid_new(ep.id, NULL), 0);
    snprintf(ep.partner_id, sizeof(ep.partner_id), "%s", p.id);
    snprintf(ep.label, sizeof(ep.label), "primary");
    snprintf(ep.url, sizeof(ep.url), "https://example.com/hooks/primary");
    assert_int_equal(vh_secret_new(ep.secret, NULL), 0);
    ep.enabled = true;
    ep.created_ms = T0;
    ep.updated_ms = T0;
    if (vh_store_endpoint_create(node_a, &ep, VH_ENDPOINTS_MAX, &err) < 0)
        fail_msg("create endpoint: %s", err.msg);
    assert_int_equal(vh_uuid_new(session, NULL), 0);
    fill_put(&ev, p.id, session, T0);
    if (vh_store_event_put(node_a, &ev, &res, &err) < 0)
        fail_msg("put: %s", err.msg);
    assert_int_equal(vh_store_delivery_claim(node_a, "node-a", T0, LEASE_MS, 10, &jobs, &n, &err),
                     0);
    assert_int_equal(n, 1);

    /* The record's UPDATE waits on advisory lock 4242 before its transaction commits. */
    exec_ok(node_a,
            "CREATE FUNCTION vh_test_stall() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
            " PERFORM pg_advisory_lock(4242); PERFORM pg_advisory_unlock(4242); RETURN NULL;"
            " END $$;"
            " CREATE TRIGGER vh_test_stall AFTER UPDATE ON deliveries FOR EACH ROW"
            " WHEN (OLD.state = 'in_flight' AND NEW.state = 'pending')"
            " EXECUTE PROCEDURE vh_test_stall()",
            NULL);
    exec_ok(locker, "SELECT pg_advisory_lock(4242)", NULL);

    /* Node A: attempt 1 failed, attempt 2 due in a second. */
    memset(&r, 0, sizeof(r));
    r.delivery_id = jobs[0].delivery_id;
    r.endpoint_id = jobs[0].endpoint_id;
    r.node_id = "node-a";
    r.attempt = jobs[0].attempts + 1;
    r.started_ms = T0 + 1;
    r.duration_ms = 25;
    r.http_status = 503;
    r.error_class = "http_status";
    r.new_state = "pending";
    r.next_attempt_ms = T0 + 1000;
    memset(&rec, 0, sizeof(rec));
    rec.st = node_a;
    rec.result = &r;
    assert_int_equal(pthread_create(&t_rec, NULL, record_in_thread, &rec), 0);
    wait_for_count(locker,
                   "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
                   " AND NOT granted",
                   1);

    /* Node B: the operator disables the endpoint; its cancel meets the record's row. */
    ep.enabled = false;
    ep.updated_ms = T0 + 10;
    memset(&upd, 0, sizeof(upd));
    upd.st = node_b;
    upd.ep = &ep;
    assert_int_equal(pthread_create(&t_upd, NULL, update_in_thread, &upd), 0);
    wait_for_count(locker,
                   "SELECT count(*) FROM pg_locks WHERE locktype = 'transactionid'"
                   " AND NOT granted",
                   1);

    exec_ok(locker, "SELECT pg_advisory_unlock(4242)", NULL);
    pthread_join(t_rec, NULL);
    pthread_join(t_upd, NULL);
    if (rec.rc < 0)
        fail_msg("record: %s", rec.msg);
    if (upd.rc < 0)
        fail_msg("disable: %s", upd.msg);

    /* The endpoint is disabled: its delivery is canceled, and no node claims it. */
    assert_int_equal(vh_store_event_deliveries(node_b, res.event_id, &briefs, &nb, &err), 0);
    assert_int_equal(nb, 1);
    n = 0;
    assert_int_equal(
        vh_store_delivery_claim(node_b, "node-b", T0 + 1000, LEASE_MS, 10, &later, &n, &err), 0);
    print_message("after the disable: delivery %s, %u attempt(s); a claim then hands out %zu%s%s\n",
                  briefs[0].state, (unsigned)briefs[0].attempts, n, n ? " to " : "",
                  n ? later[0].url : "");
    assert_string_equal(briefs[0].state, "canceled");
    assert_int_equal(n, 0);
    vh_free(briefs);
    vh_delivery_job_recs_free(later, n);
    vh_delivery_job_recs_free(jobs, 1);
    vh_store_close(locker);
    vh_store_close(node_b);
    vh_store_close(node_a);
}

/* ---- someone else's lock ------------------------------------------------------------------ */

struct table_lock {
    struct vh_store *st;
    int rc;
    char msg[256];
};

/*
 * Another session (an operator's `BEGIN; LOCK TABLE deliveries`): holds the table until
 * the test lets go of advisory lock 4243, or for 30 s at most.
 */
static void *hold_deliveries(void *arg)
{
    struct table_lock *t = arg;
    struct vh_error err = VH_ERROR_INIT;

    t->rc = vh__store_pg_exec(t->st,
                              "BEGIN; SET LOCAL lock_timeout = '30s';"
                              " LOCK TABLE deliveries IN ACCESS EXCLUSIVE MODE;"
                              " SELECT pg_advisory_xact_lock(4243); COMMIT",
                              NULL, &err);
    snprintf(t->msg, sizeof(t->msg), "%s", err.msg);
    return NULL;
}

/*
 * A call that meets a lock someone else keeps fails within the store's lock_timeout (5 s),
 * with nothing written, instead of waiting as long as the lock is held (the ingest's HTTP
 * thread and a pool connection with it); a lock_timeout the URL sets is kept.
 */
static void a_lock_held_elsewhere_fails_a_call_instead_of_hanging_it(void **state)
{
    struct fixture *f = need_pg(state);
    struct vh_error err = VH_ERROR_INIT;
    struct vh_buf out = VH_BUF_INIT(64);
    struct vh_event_put_result res;
    struct vh_store *node, *holder, *locker;
    struct vh_event_put ev;
    struct table_lock t;
    struct vh_partner p;
    pthread_t th;
    char session[VH_UUID_LEN + 1], url[600];
    double t0, waited;
    int rc;

    node = open_ok(f->url);
    holder = open_ok(f->url);
    locker = open_ok(f->url);
    new_partner(node, &p);
    new_endpoint(node, p.id, "a");
    assert_int_equal(vh_uuid_new(session, NULL), 0);
    fill_put(&ev, p.id, session, T0);
    exec_ok(node, "SHOW lock_timeout", &out);
    assert_string_equal(vh_buf_cstr(&out), "5s");

    exec_ok(locker, "SELECT pg_advisory_lock(4243)", NULL);
    memset(&t, 0, sizeof(t));
    t.st = holder;
    assert_int_equal(pthread_create(&th, NULL, hold_deliveries, &t), 0);
    wait_for_count(locker,
                   "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted", 1);
    t0 = now_s();
    rc = vh_store_event_put(node, &ev, &res, &err);
    waited = now_s() - t0;
    exec_ok(locker, "SELECT pg_advisory_unlock(4243)", NULL);
    pthread_join(th, NULL);
    if (t.rc < 0)
        fail_msg("the lock holder: %s", t.msg);
    print_message("an ingest under someone else's table lock: %d after %.1f s: %s\n", rc, waited,
                  err.msg);
    assert_int_equal(rc, VH_ESTORE);
    assert_non_null(strstr(err.msg, "lock timeout"));
    assert_true(waited < 15.0);
    assert_int_equal(count(node, "events"), 0);
    if (vh_store_event_put(node, &ev, &res, &err) < 0)
        fail_msg("put once the lock is gone: %s", err.msg);
    assert_int_equal(res.deliveries, 1);
    vh_store_close(node);
    vh_store_close(holder);
    vh_store_close(locker);

    snprintf(url, sizeof(url), "%s%soptions=-c%%20lock_timeout%%3D1234", f->url,
             strchr(f->url, '?') ? "&" : "?");
    node = open_ok(url);
    vh_buf_reset(&out);
    exec_ok(node, "SHOW lock_timeout", &out);
    assert_string_equal(vh_buf_cstr(&out), "1234ms");
    vh_store_close(node);
    vh_buf_release(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(nodes_starting_at_once_migrate_once, setup, teardown),
        cmocka_unit_test_setup_teardown(history_filters_use_the_index_of_their_state, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(a_delivery_get_reads_the_newest_attempts_by_the_key, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(the_body_len_column_is_added_without_reading_the_table,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(refuses_a_database_that_is_not_vocohooks, setup, teardown),
        cmocka_unit_test_setup_teardown(a_claim_marks_its_rows_by_the_key, setup, teardown),
        cmocka_unit_test_setup_teardown(connect_failures_are_one_line_store_errors, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(connect_failures_never_show_the_password, setup, teardown),
        cmocka_unit_test_setup_teardown(two_nodes_never_claim_the_same_delivery, setup, teardown),
        cmocka_unit_test_setup_teardown(connections_give_up_on_a_silent_network, setup, teardown),
        cmocka_unit_test_setup_teardown(identical_puts_on_two_nodes_make_one_event, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(a_lost_connection_fails_once_then_reconnects, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(another_nodes_writes_wake_a_watcher, setup, teardown),
        cmocka_unit_test_setup_teardown(another_nodes_endpoint_changes_reach_a_watcher, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(rate_windows_hold_across_nodes, setup, teardown),
        cmocka_unit_test_setup_teardown(disabling_while_an_attempt_is_recorded_cancels_its_retry,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(a_lock_held_elsewhere_fails_a_call_instead_of_hanging_it,
                                        setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
