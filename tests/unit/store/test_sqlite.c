/*
 * What only the SQLite backend promises: the URL forms, the file format checks on open
 * (newer schema, someone else's file), WAL, survival of a killed process, and several
 * handles on one file. The header is patched as bytes (the SQLite header is documented:
 * user_version at offset 60, application_id at 68, both big-endian); the schema is read
 * with a connection of the test's own. Files of an older schema come from the backend's
 * own test hook (store_int.h), with rows an older build could have written.
 */
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <setjmp.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include <vocohook/alloc.h>
#include <vocohook/id.h>
#include <vocohook/sign.h>
#include <vocohook/store.h>

#include "store/readahead_int.h"
#include "store/store_int.h"

#define T0 INT64_C(1773585128000)

struct fixture {
    char dir[256];
    char path[300]; /* dir/store.db */
    char url[320];  /* sqlite:dir/store.db */
};

static int setup(void **state)
{
    const char *tmp = getenv("TMPDIR");
    struct fixture *f = calloc(1, sizeof(*f));

    if (!f)
        return -1;
    snprintf(f->dir, sizeof(f->dir), "%s/vh-sqlite-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(f->dir)) {
        free(f);
        return -1;
    }
    snprintf(f->path, sizeof(f->path), "%s/store.db", f->dir);
    snprintf(f->url, sizeof(f->url), "sqlite:%s", f->path);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    static const char *const files[] = {"store.db", "store.db-wal", "store.db-shm", "store.db-lock",
                                        "junk"};
    struct fixture *f = *state;
    char path[512];
    size_t i;

    for (i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", f->dir, files[i]);
        unlink(path);
    }
    rmdir(f->dir);
    free(f);
    return 0;
}

static struct vh_store *open_ok(const char *url)
{
    struct vh_error err = VH_ERROR_INIT;
    struct vh_store *st = NULL;

    if (vh_store_open(url, &st, &err) < 0)
        fail_msg("open %s: %s", url, err.msg);
    return st;
}

static bool exists(const char *path)
{
    struct stat sb;

    return stat(path, &sb) == 0;
}

/* Overwrites the 4-byte big-endian header field at `offset`. */
static void patch_u32(const char *path, off_t offset, uint32_t v)
{
    unsigned char b[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 8), (unsigned char)v};
    int fd = open(path, O_WRONLY);

    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, b, sizeof(b), offset), sizeof(b));
    assert_int_equal(close(fd), 0);
}

static void new_partner(struct vh_store *st, const char *name, struct vh_partner *p)
{
    char key[VH_APIKEY_LEN + 1], hash[VH_SHA256_HEX_LEN + 1];

    assert_int_equal(vh_apikey_new(key, NULL), 0);
    assert_int_equal(vh_sha256_hex(key, strlen(key), hash, NULL), 0);
    assert_int_equal(vh_store_partner_create(st, name, hash, T0, p, NULL), 0);
}

static const char body_text[] = "{\"event\":\"session.completed\"}";

static void fill_put(struct vh_event_put *ev, const char *partner_id, const char *session_id)
{
    memset(ev, 0, sizeof(*ev));
    ev->partner_id = partner_id;
    ev->session_id = session_id;
    ev->body = body_text;
    ev->body_len = sizeof(body_text) - 1;
    ev->accepted_ms = T0;
}

/* ---- urls ------------------------------------------------------------------------------- */

static void url_forms_name_the_same_file(void **state)
{
    struct fixture *f = *state;
    struct vh_partner p, got;
    struct vh_store *st;
    char url[400];

    st = open_ok(f->url);
    assert_string_equal(vh_store_backend(st), "sqlite");
    new_partner(st, "Forms", &p);
    vh_store_close(st);

    st = open_ok(f->path); /* a plain path */
    assert_int_equal(vh_store_partner_get(st, p.id, &got, NULL), 0);
    vh_store_close(st);

    snprintf(url, sizeof(url), "sqlite://%s", f->path); /* sqlite:///abs/path */
    st = open_ok(url);
    assert_int_equal(vh_store_partner_get(st, p.id, &got, NULL), 0);
    vh_store_close(st);
}

static void open_rejects_unusable_urls(void **state)
{
    static const struct {
        const char *url;
        int code;
        const char *msg;
    } cases[] = {
        {"mysql://localhost/db", VH_EINVAL, "open store: unknown scheme 'mysql'"},
        {"", VH_EINVAL, "open store: empty url"},
        {"sqlite:", VH_EINVAL, "sqlite: empty path"},
        {":memory:", VH_EINVAL, NULL},
        {"sqlite:file:x.db?mode=memory", VH_EINVAL, NULL},
        /* SQLite's URI options are not read: the file would be named "vh-q.db?mode=ro". */
        {"sqlite:/tmp/vh-q.db?mode=ro", VH_EINVAL,
         "sqlite: '/tmp/vh-q.db?mode=ro' has a query string: sqlite:PATH takes a file path and "
         "no options"},
        {"/nonexistent-vh-dir/sub/store.db", VH_ESTORE,
         "open '/nonexistent-vh-dir/sub/store.db': unable to open database file"},
    };
    struct vh_store *st;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct vh_error err = VH_ERROR_INIT;

        st = (struct vh_store *)&err; /* must stay untouched */
        assert_int_equal(vh_store_open(cases[i].url, &st, &err), cases[i].code);
        assert_ptr_equal(st, (struct vh_store *)&err);
        if (cases[i].msg)
            assert_string_equal(err.msg, cases[i].msg);
    }
    assert_int_equal(vh_store_open(NULL, &st, NULL), VH_EINVAL);
    vh_store_close(NULL);
    assert_int_equal(access("/tmp/vh-q.db?mode=ro", F_OK), -1); /* nothing was created */
}

/* ---- the file ------------------------------------------------------------------------------ */

static void newer_schema_is_refused(void **state)
{
    struct fixture *f = *state;
    struct vh_error err = VH_ERROR_INIT;
    struct vh_store *st;
    char wal[320];
    int version = 0;

    st = open_ok(f->url);
    assert_int_equal(vh_store_schema_version(st, &version, NULL), 0);
    assert_true(version >= 1);
    vh_store_close(st);
    /* The last connection checkpointed the WAL into the file and removed it. */
    snprintf(wal, sizeof(wal), "%s-wal", f->path);
    assert_false(exists(wal));

    patch_u32(f->path, 60, (uint32_t)version + 1);
    st = NULL;
    assert_int_equal(vh_store_open(f->url, &st, &err), VH_ESTORE);
    assert_null(st);
    assert_non_null(strstr(err.msg, "is newer than this build supports"));

    /* Back at our version, it opens again: opening a migrated file changes nothing. */
    patch_u32(f->path, 60, (uint32_t)version);
    st = open_ok(f->url);
    version = -1;
    assert_int_equal(vh_store_schema_version(st, &version, NULL), 0);
    assert_true(version >= 1);
    vh_store_close(st);
}

/* A version-1 file as the first release left it: a partner, an endpoint, an event, one
 * delivery waiting for its second attempt (the first failed) and one a dead node held. */
#define V1_PARTNER  "11111111-1111-4111-8111-111111111111"
#define V1_ENDPOINT "22222222-2222-4222-8222-222222222222"
#define V1_EVENT    "33333333-3333-4333-8333-333333333333"
#define V1_WAITING  "44444444-4444-4444-8444-444444444444"
#define V1_HELD     "55555555-5555-4555-8555-555555555555"
static const char v1_rows[] =
    "INSERT INTO partners VALUES ('" V1_PARTNER "', 'Old', 1000);"
    "INSERT INTO endpoints (id, partner_id, label, url, secret, enabled, created_ms,"
    " updated_ms, last_delivery_ms, last_delivery_status) VALUES ('" V1_ENDPOINT "', '" V1_PARTNER
    "', 'old', 'https://example.com/old', 'whsec_old', 1, 1000, 1000, 1400, 'failed');"
    "INSERT INTO events (id, partner_id, session_id, body, fanout, accepted_ms) VALUES ('" V1_EVENT
    "', '" V1_PARTNER "', 's-old', CAST('{\"event\":\"session.completed\"}' AS BLOB), 2, 1000);"
    "INSERT INTO deliveries VALUES ('" V1_WAITING "', '" V1_EVENT "', '" V1_ENDPOINT
    "', '" V1_PARTNER "', 'pending', 1, 2400, 1000, 1430, NULL, NULL);"
    "INSERT INTO deliveries VALUES ('" V1_HELD "', '" V1_EVENT "', '" V1_ENDPOINT "', '" V1_PARTNER
    "', 'in_flight', 0, 1000, 1000, 1000, 'dead-node', 1100);"
    "INSERT INTO attempts VALUES ('" V1_WAITING "', 1, 1400, 30, 503, 'http_status', x'6f6f7073');";

static long long raw_int(const char *path, const char *sql);

static void a_version_1_file_upgrades_in_place(void **state)
{
    struct fixture *f = *state;
    struct vh_error err = VH_ERROR_INIT;
    struct vh_delivery_job_rec *jobs = NULL;
    struct vh_attempt_info *att = NULL;
    struct vh_delivery_info info;
    struct vh_endpoint ep;
    struct vh_partner p;
    struct vh_store *st;
    size_t n = 0, na = 0;
    int version = 0;

    if (vh__store_sqlite_create_at(f->path, 1, v1_rows, &err) < 0)
        fail_msg("create a version-1 file: %s", err.msg);
    st = open_ok(f->url);
    assert_int_equal(vh_store_schema_version(st, &version, NULL), 0);
    assert_int_equal(version, 5);

    /* Every row is there, the new columns at their defaults. */
    assert_int_equal(vh_store_partner_get(st, V1_PARTNER, &p, NULL), 0);
    assert_int_equal(vh_store_endpoint_get(st, V1_PARTNER, V1_ENDPOINT, &ep, &err), 0);
    assert_string_equal(ep.retry_schedule, "");
    assert_int_equal(ep.timeout_ms, 0);
    assert_int_equal(ep.last_delivery_status, VH_OUTCOME_FAILED);
    assert_int_equal(
        vh_store_delivery_get(st, V1_PARTNER, V1_WAITING, &info, &att, &na, NULL, &err), 0);
    assert_int_equal(info.attempts, 1);
    assert_int_equal(info.attempt_base, 0);
    assert_int_equal(info.last_http_status, 503);
    assert_int_equal(na, 1);
    assert_string_equal(att[0].error, "");
    assert_int_equal(att[0].response_len, 4);
    assert_string_equal(att[0].response_head, "oops");
    vh_free(att);

    /* The old rows work with the new operations. */
    assert_int_equal(vh_store_delivery_recover(st, NULL, 2400, &err), 1); /* the dead node's */
    assert_int_equal(vh_store_delivery_claim(st, "new-node", 2400, 1000, 10, &jobs, &n, &err), 0);
    assert_int_equal(n, 2);
    /* Both due at 2400 now: the older row first. */
    assert_string_equal(jobs[0].delivery_id, V1_WAITING);
    assert_int_equal(jobs[0].attempts, 1);
    assert_int_equal(jobs[0].attempt_base, 0);
    assert_string_equal(jobs[0].secret, "whsec_old");
    assert_string_equal(jobs[1].delivery_id, V1_HELD);
    assert_int_equal(jobs[1].attempts, 0);
    vh_delivery_job_recs_free(jobs, n);

    /* deliveries_due holds what is still to send (migration 5), and the counts by state
     * come from the indexes: the claim above holds both rows. */
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM sqlite_schema"
                                      " WHERE name = 'deliveries_due' AND sql LIKE"
                                      " '%WHERE state = ''pending'' OR state = ''in_flight'''"),
                     1);
    {
        struct vh_delivery_counts c;

        assert_int_equal(vh_store_delivery_counts(st, &c, &err), 0);
        assert_int_equal(c.pending, 0);
        assert_int_equal(c.in_flight, 2);
        assert_int_equal(c.succeeded + c.abandoned + c.canceled, 0);
    }
    vh_store_close(st);

    /* Opening again changes nothing. */
    st = open_ok(f->url);
    version = 0;
    assert_int_equal(vh_store_schema_version(st, &version, NULL), 0);
    assert_int_equal(version, 5);
    assert_int_equal(vh_store_endpoint_get(st, V1_PARTNER, V1_ENDPOINT, &ep, NULL), 0);
    vh_store_close(st);

    /* The hook itself refuses versions that do not exist. */
    assert_int_equal(vh__store_sqlite_create_at(f->path, 0, NULL, NULL), VH_EINVAL);
    assert_int_equal(vh__store_sqlite_create_at(f->path, 99, NULL, NULL), VH_EINVAL);
}

/* `sql`'s one integer answer on the file at `path`, read with a connection of its own. */
static long long raw_int(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    long long v = -1;

    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        fail_msg("%s: %s", sql, sqlite3_errmsg(db));
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

/* An sqlite3_exec callback: keeps the first column of the first row in `ud` (64 bytes). */
static int first_text(void *ud, int ncols, char **vals, char **names)
{
    (void)names;
    if (ncols > 0 && vals[0] && !((char *)ud)[0])
        snprintf(ud, 64, "%s", vals[0]);
    return 0;
}

/*
 * Version 3 rebuilds deliveries (keyed by seq, the state CHECK without an IN list) and
 * attempts (keyed by the delivery's seq): the rows stay as they were, the file stays sound,
 * and the same states are refused.
 */
static void version_3_rebuilds_deliveries_and_attempts(void **state)
{
    struct fixture *f = *state;
    struct vh_error err = VH_ERROR_INIT;
    struct vh_delivery_job_rec *jobs = NULL;
    struct vh_store *st;
    sqlite3 *db = NULL;
    char *msg = NULL, check[64] = "";
    size_t n = 0;
    int version = 0;

    /* The version-1 rows, taken to version 2. */
    if (vh__store_sqlite_create_at(f->path, 1, v1_rows, &err) < 0 ||
        vh__store_sqlite_create_at(f->path, 2, NULL, &err) < 0)
        fail_msg("create a version-2 file: %s", err.msg);
    assert_int_equal(raw_int(f->path, "SELECT instr(sql, 'state IN') > 0 FROM sqlite_schema"
                                      " WHERE name = 'deliveries'"),
                     1);
    st = open_ok(f->url);
    assert_int_equal(vh_store_schema_version(st, &version, NULL), 0);
    assert_int_equal(version, 5);
    /* The rows are read as before. */
    assert_int_equal(vh_store_delivery_claim(st, "n", 2400, 1000, 10, &jobs, &n, &err), 0);
    assert_int_equal(n, 1);
    assert_string_equal(jobs[0].delivery_id, V1_WAITING);
    vh_delivery_job_recs_free(jobs, n);
    vh_store_close(st);

    assert_int_equal(raw_int(f->path, "SELECT instr(sql, 'state IN') FROM sqlite_schema"
                                      " WHERE name = 'deliveries'"),
                     0);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM deliveries"), 2);
    /* The old attempt hangs off its delivery's seq, and the seq is the row's id. */
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM attempts AS a JOIN deliveries AS d"
                                      " ON d.seq = a.delivery_seq WHERE d.id = '" V1_WAITING
                                      "' AND a.n = 1 AND a.http_status = 503"),
                     1);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM pragma_foreign_key_check"), 0);
    assert_int_equal(sqlite3_open_v2(f->path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "PRAGMA integrity_check", first_text, check, NULL),
                     SQLITE_OK);
    assert_string_equal(check, "ok");
    assert_int_equal(sqlite3_exec(db, "UPDATE deliveries SET state = 'lost'", NULL, NULL, &msg),
                     SQLITE_CONSTRAINT);
    assert_non_null(msg);
    assert_non_null(strstr(msg, "CHECK constraint failed"));
    sqlite3_free(msg);
    assert_int_equal(sqlite3_exec(db, "UPDATE deliveries SET state = 'canceled'", NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
}

/*
 * A version-3 file with two events whose rowids run against their ids' order, and three
 * deliveries: one of event B, two of event A (one of them done, with its attempt).
 */
#define V3_EVENT_A "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa"
#define V3_EVENT_B "bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb"
#define V3_DLV_B   "d0000001-0000-4000-8000-000000000001"
#define V3_DLV_A1  "d0000002-0000-4000-8000-000000000002"
#define V3_DLV_A2  "d0000003-0000-4000-8000-000000000003"
static const char v3_rows[] =
    "INSERT INTO partners VALUES ('" V1_PARTNER "', 'Old', 1000);"
    "INSERT INTO endpoints (id, partner_id, label, url, secret, enabled, created_ms,"
    " updated_ms) VALUES ('" V1_ENDPOINT "', '" V1_PARTNER
    "', 'old', 'https://example.com/old', 'whsec_old', 1, 1000, 1000);"
    "INSERT INTO events (rowid, id, partner_id, session_id, body, fanout, accepted_ms)"
    " VALUES (7, '" V3_EVENT_A "', '" V1_PARTNER "', 's-a', CAST('{\"a\":1}' AS BLOB), 2, 1000);"
    "INSERT INTO events (rowid, id, partner_id, session_id, call_id, call_status, body, fanout,"
    " accepted_ms) VALUES (3, '" V3_EVENT_B "', '" V1_PARTNER
    "', 's-b', 'c-b', 'completed', CAST('{\"b\":2}' AS BLOB), 1, 1001);"
    "INSERT INTO deliveries (seq, id, event_id, endpoint_id, partner_id, state, attempts,"
    " next_attempt_ms, created_ms, updated_ms) VALUES"
    " (10, '" V3_DLV_B "', '" V3_EVENT_B "', '" V1_ENDPOINT "', '" V1_PARTNER
    "', 'pending', 0, 2000, 1001, 1001),"
    " (11, '" V3_DLV_A1 "', '" V3_EVENT_A "', '" V1_ENDPOINT "', '" V1_PARTNER
    "', 'pending', 0, 2000, 1000, 1000),"
    " (12, '" V3_DLV_A2 "', '" V3_EVENT_A "', '" V1_ENDPOINT "', '" V1_PARTNER
    "', 'succeeded', 1, 0, 1000, 1100);"
    "INSERT INTO attempts (delivery_seq, n, started_ms, duration_ms, http_status)"
    " VALUES (12, 1, 1050, 20, 204);";

/*
 * Version 4 keys events by seq (their old rowid) and points deliveries at it: every
 * delivery still belongs to its event, the claim reads the right bodies, the key holds,
 * and deliveries no longer carry the event's id.
 */
static void version_4_points_deliveries_at_event_seqs(void **state)
{
    struct fixture *f = *state;
    struct vh_error err = VH_ERROR_INIT;
    struct vh_delivery_job_rec *jobs = NULL;
    struct vh_attempt_info *att = NULL;
    struct vh_delivery_brief *briefs = NULL;
    struct vh_event_put_result res;
    struct vh_delivery_info info;
    struct vh_event_put ev;
    struct vh_store *st;
    sqlite3 *db = NULL;
    char *msg = NULL, check[64] = "";
    size_t n = 0, na = 0;
    int version = 0;

    if (vh__store_sqlite_create_at(f->path, 3, v3_rows, &err) < 0)
        fail_msg("create a version-3 file: %s", err.msg);
    st = open_ok(f->url);
    assert_int_equal(vh_store_schema_version(st, &version, NULL), 0);
    assert_int_equal(version, 5);

    /* The claim joins each delivery to its own event, in the order of the deliveries. */
    assert_int_equal(vh_store_delivery_claim(st, "n", 2000, 1000, 10, &jobs, &n, &err), 0);
    assert_int_equal(n, 2);
    assert_string_equal(jobs[0].delivery_id, V3_DLV_B);
    assert_string_equal(jobs[0].event_id, V3_EVENT_B);
    assert_int_equal(jobs[0].body.len, 7);
    assert_memory_equal(jobs[0].body.data, "{\"b\":2}", 7);
    assert_string_equal(jobs[1].delivery_id, V3_DLV_A1);
    assert_string_equal(jobs[1].event_id, V3_EVENT_A);
    assert_int_equal(jobs[1].body.len, 7);
    assert_memory_equal(jobs[1].body.data, "{\"a\":1}", 7);
    vh_delivery_job_recs_free(jobs, n);

    /* The history reads the same. */
    assert_int_equal(vh_store_event_deliveries(st, V3_EVENT_A, &briefs, &n, &err), 0);
    assert_int_equal(n, 2);
    assert_string_equal(briefs[0].id, V3_DLV_A1);
    assert_string_equal(briefs[1].id, V3_DLV_A2);
    vh_free(briefs);
    assert_int_equal(vh_store_delivery_get(st, V1_PARTNER, V3_DLV_A2, &info, &att, &na, NULL, &err),
                     0);
    assert_string_equal(info.event_id, V3_EVENT_A);
    assert_string_equal(info.session_id, "s-a");
    assert_int_equal(info.last_http_status, 204);
    assert_int_equal(na, 1);
    vh_free(att);

    /* A new event takes the next seq and its delivery points at it. */
    fill_put(&ev, V1_PARTNER, "s-new");
    ev.accepted_ms = 3000;
    assert_int_equal(vh_store_event_put(st, &ev, &res, &err), 0);
    assert_int_equal(res.deliveries, 1);
    vh_store_close(st);

    assert_int_equal(raw_int(f->path, "SELECT seq FROM events WHERE id = '" V3_EVENT_A "'"), 7);
    assert_int_equal(raw_int(f->path, "SELECT seq FROM events WHERE id = '" V3_EVENT_B "'"), 3);
    assert_int_equal(raw_int(f->path, "SELECT seq FROM events WHERE session_id = 's-new'"), 8);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM deliveries AS d JOIN events AS v"
                                      " ON v.seq = d.event_seq WHERE d.seq = 13"
                                      " AND v.session_id = 's-new'"),
                     1);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM pragma_table_info('deliveries')"
                                      " WHERE name = 'event_id'"),
                     0);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM attempts WHERE delivery_seq = 12"), 1);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM pragma_foreign_key_check"), 0);
    assert_int_equal(sqlite3_open_v2(f->path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "PRAGMA integrity_check", first_text, check, NULL),
                     SQLITE_OK);
    assert_string_equal(check, "ok");
    /* The new key is a real one. */
    assert_int_equal(sqlite3_exec(db,
                                  "PRAGMA foreign_keys = ON;"
                                  "UPDATE deliveries SET event_seq = 99 WHERE seq = 10",
                                  NULL, NULL, &msg),
                     SQLITE_CONSTRAINT);
    assert_non_null(msg);
    assert_non_null(strstr(msg, "FOREIGN KEY constraint failed"));
    sqlite3_free(msg);
    sqlite3_close(db);
}

/*
 * A version-3 file written with the keys off, so that a delivery's event is missing: the
 * step fails, says why, and leaves the file at version 3 with every row. The same for an
 * attempt whose delivery is missing, which only the key check after the step finds.
 */
static void version_4_refuses_broken_references(void **state)
{
    static const char *const broken[] = {
        "PRAGMA foreign_keys = OFF;"
        "UPDATE deliveries SET event_id = 'cccccccc-cccc-4ccc-8ccc-cccccccccccc' WHERE seq = 10",
        "PRAGMA foreign_keys = OFF;"
        "INSERT INTO attempts (delivery_seq, n, started_ms, duration_ms) VALUES (77, 1, 1, 1)",
    };
    static const char *const why[] = {"NOT NULL constraint failed: deliveries_v4.event_seq",
                                      "refers to a missing row of deliveries"};
    struct fixture *f = *state;
    struct vh_error err = VH_ERROR_INIT;
    struct vh_store *st;
    char seed[2048];
    size_t i;

    for (i = 0; i < sizeof(broken) / sizeof(broken[0]); i++) {
        unlink(f->path);
        snprintf(seed, sizeof(seed), "%s%s", v3_rows, broken[i]);
        if (vh__store_sqlite_create_at(f->path, 3, seed, &err) < 0)
            fail_msg("create a version-3 file: %s", err.msg);
        st = NULL;
        vh_error_clear(&err);
        assert_int_equal(vh_store_open(f->url, &st, &err), VH_ESTORE);
        assert_null(st);
        if (!strstr(err.msg, why[i]) || !strstr(err.msg, "to version 4"))
            fail_msg("case %zu: %s", i, err.msg);
        assert_int_equal(raw_int(f->path, "PRAGMA user_version"), 3);
        assert_int_equal(raw_int(f->path, "SELECT count(*) FROM deliveries"), 3);
        assert_int_equal(raw_int(f->path, "SELECT count(*) FROM events"), 2);
        assert_int_equal(raw_int(f->path, "SELECT count(*) FROM attempts"), 1 + (long long)i);
    }
}

static void foreign_files_are_refused(void **state)
{
    struct fixture *f = *state;
    struct vh_error err = VH_ERROR_INIT;
    struct vh_store *st = NULL;
    char junk[320];
    FILE *fp;

    st = open_ok(f->url);
    vh_store_close(st);
    patch_u32(f->path, 68, 0x12345678); /* another application's id */
    st = NULL;
    assert_int_equal(vh_store_open(f->url, &st, &err), VH_ESTORE);
    assert_non_null(strstr(err.msg, "not a vocohook database"));

    snprintf(junk, sizeof(junk), "%s/junk", f->dir);
    fp = fopen(junk, "w");
    assert_non_null(fp);
    for (int i = 0; i < 100; i++)
        fputs("this is not a database file at all\n", fp);
    assert_int_equal(fclose(fp), 0);
    vh_error_clear(&err);
    assert_int_equal(vh_store_open(junk, &st, &err), VH_ESTORE);
    assert_non_null(strstr(err.msg, "not a database"));
}

static void writes_go_through_the_wal(void **state)
{
    struct fixture *f = *state;
    struct vh_event_put_result res;
    struct vh_event_put ev;
    struct vh_partner p;
    struct vh_store *st;
    char wal[320];

    st = open_ok(f->url);
    new_partner(st, "Wal", &p);
    fill_put(&ev, p.id, "wal-1");
    assert_int_equal(vh_store_event_put(st, &ev, &res, NULL), 0);
    snprintf(wal, sizeof(wal), "%s-wal", f->path);
    assert_true(exists(wal));
    vh_store_close(st);
}

/*
 * A process killed right after vh_store_event_put returned: it never closed the store, so
 * the event lives only in the WAL, and the next open must find it.
 */
static void a_killed_writer_loses_nothing(void **state)
{
    struct fixture *f = *state;
    struct vh_event_put_result res;
    struct vh_call_rec rec;
    struct vh_partner p;
    struct vh_store *st;
    char id[VH_UUID_LEN + 1] = {0};
    int fds[2], status;
    pid_t pid;

    st = open_ok(f->url);
    new_partner(st, "Crash", &p);
    vh_store_close(st);

    assert_int_equal(pipe(fds), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct vh_event_put ev;

        close(fds[0]);
        fill_put(&ev, p.id, "crash-1");
        if (vh_store_open(f->url, &st, NULL) < 0 || vh_store_event_put(st, &ev, &res, NULL) < 0)
            _exit(1);
        if (write(fds[1], res.event_id, VH_UUID_LEN) != VH_UUID_LEN)
            _exit(1);
        kill(getpid(), SIGKILL);
        _exit(1);
    }
    close(fds[1]);
    assert_int_equal(read(fds[0], id, VH_UUID_LEN), VH_UUID_LEN);
    close(fds[0]);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);

    st = open_ok(f->url);
    memset(&rec, 0, sizeof(rec));
    assert_int_equal(vh_store_call_get(st, p.id, "crash-1", &rec, NULL), 0);
    assert_string_equal(rec.event_id, id);
    assert_memory_equal(rec.body.data, body_text, sizeof(body_text) - 1);
    vh_call_rec_release(&rec);
    vh_store_close(st);
}

/* ---- several handles, many threads -------------------------------------------------------- */

#define THREADS 24

struct worker {
    struct vh_store *st;
    const char *partner_id;
    pthread_barrier_t *go;
    int n;
    int rc;
    bool created;
    char msg[VH_ERROR_MSG_MAX];
};

/* Puts the shared session, then a session of its own, then reads both back. */
static void *work(void *arg)
{
    struct worker *w = arg;
    struct vh_error err = VH_ERROR_INIT;
    struct vh_event_put_result res;
    struct vh_call_rec rec;
    struct vh_event_put ev;
    char own[32];

    pthread_barrier_wait(w->go);
    fill_put(&ev, w->partner_id, "shared-session");
    w->rc = vh_store_event_put(w->st, &ev, &res, &err);
    w->created = res.created;
    if (w->rc == 0) {
        snprintf(own, sizeof(own), "own-%d", w->n);
        fill_put(&ev, w->partner_id, own);
        w->rc = vh_store_event_put(w->st, &ev, &res, &err);
    }
    if (w->rc == 0) {
        memset(&rec, 0, sizeof(rec));
        w->rc = vh_store_call_get(w->st, w->partner_id, own, &rec, &err);
        vh_call_rec_release(&rec);
    }
    memcpy(w->msg, err.msg, sizeof(w->msg));
    return NULL;
}

/*
 * Two handles on one file (as two processes would have), THREADS threads over them: more
 * callers than either pool has connections, and one session every thread puts.
 */
static void two_handles_share_one_file(void **state)
{
    struct fixture *f = *state;
    struct worker w[THREADS];
    struct vh_store *a, *b;
    pthread_barrier_t go;
    pthread_t t[THREADS];
    struct vh_partner p;
    int64_t events = 0;
    int i, created = 0;

    a = open_ok(f->url);
    b = open_ok(f->url);
    new_partner(a, "Shared", &p);
    memset(w, 0, sizeof(w));
    assert_int_equal(pthread_barrier_init(&go, NULL, THREADS), 0);
    for (i = 0; i < THREADS; i++) {
        w[i].st = i % 2 ? a : b;
        w[i].partner_id = p.id;
        w[i].go = &go;
        w[i].n = i;
        assert_int_equal(pthread_create(&t[i], NULL, work, &w[i]), 0);
    }
    for (i = 0; i < THREADS; i++)
        assert_int_equal(pthread_join(t[i], NULL), 0);
    pthread_barrier_destroy(&go);
    for (i = 0; i < THREADS; i++) {
        if (w[i].rc != 0)
            fail_msg("worker %d: %d %s", i, w[i].rc, w[i].msg);
        created += w[i].created;
    }
    assert_int_equal(created, 1);
    assert_int_equal(vh_store_count(b, "events", &events, NULL), 0);
    assert_int_equal(events, 1 + THREADS);
    vh_store_close(a);
    vh_store_close(b);
}

/*
 * One process per SQLite file: rate windows stay in the caller's memory (VH_ENOTSUP tells
 * it so) and there is no other node to hear from (watching is a no-op). The checks come
 * first: a bad argument is VH_EINVAL whatever the backend.
 */
static void rate_windows_and_wake_ups_are_the_callers(void **state)
{
    struct fixture *f = *state;
    const struct vh_rate_limits lim = {60, 10};
    struct vh_error err = VH_ERROR_INIT;
    char key[VH_SHA256_HEX_LEN + 1], short_key[VH_SHA256_HEX_LEN + 1] = "short";
    struct vh_rate_window w = {1, 2, 3, 4};
    struct vh_store *st = open_ok(f->url);
    int wait = -7;

    assert_int_equal(vh_sha256_hex("key", 3, key, NULL), 0);
    assert_int_equal(vh_store_rate_take(st, key, &lim, false, T0, &wait, &w, &err), VH_ENOTSUP);
    assert_string_equal(err.msg, "rate limit: the sqlite store keeps no shared windows");
    assert_int_equal(wait, -7); /* untouched on failure */
    assert_int_equal(w.general_count, 2);
    vh_error_clear(&err);
    assert_int_equal(vh_store_rate_take(st, short_key, &lim, false, T0, &wait, NULL, &err),
                     VH_EINVAL);
    assert_string_equal(err.msg, "rate limit: the key hash is not 64 characters");
    assert_int_equal(vh_store_rate_take(st, key, NULL, false, T0, &wait, NULL, NULL), VH_EINVAL);
    assert_int_equal(vh_store_rate_take(st, key, &lim, false, -1, &wait, NULL, NULL), VH_EINVAL);

    assert_int_equal(vh_store_watch(st, NULL, NULL, NULL), 0);
    assert_int_equal(vh_store_watch(NULL, NULL, NULL, NULL), VH_EINVAL);
    assert_int_equal(vh_store_watch_endpoints(st, NULL, NULL, NULL), 0);
    assert_int_equal(vh_store_watch_endpoints(NULL, NULL, NULL, NULL), VH_EINVAL);
    vh_store_close(st);
}

/* ---- which writes sync ------------------------------------------------------------------ */

/*
 * A VFS over the default one that counts xSync calls: the syncs are the durability, and no
 * other outside view tells a commit that waited for the disk from one that did not.
 */
struct counted_file {
    sqlite3_file base;
    sqlite3_file *real; /* right after this struct, in the same allocation */
};

static sqlite3_vfs *real_vfs;
static sqlite3_vfs *default_vfs; /* the default before count_syncs */
static sqlite3_io_methods counted_methods;
static atomic_int syncs;
static atomic_int writes;

static sqlite3_file *real_of(sqlite3_file *f)
{
    return ((struct counted_file *)f)->real;
}

static int c_close(sqlite3_file *f)
{
    return real_of(f)->pMethods->xClose(real_of(f));
}
static int c_read(sqlite3_file *f, void *p, int n, sqlite3_int64 off)
{
    return real_of(f)->pMethods->xRead(real_of(f), p, n, off);
}
static int c_write(sqlite3_file *f, const void *p, int n, sqlite3_int64 off)
{
    atomic_fetch_add(&writes, 1);
    return real_of(f)->pMethods->xWrite(real_of(f), p, n, off);
}
static int c_truncate(sqlite3_file *f, sqlite3_int64 size)
{
    return real_of(f)->pMethods->xTruncate(real_of(f), size);
}
static int c_sync(sqlite3_file *f, int flags)
{
    atomic_fetch_add(&syncs, 1);
    return real_of(f)->pMethods->xSync(real_of(f), flags);
}
static int c_size(sqlite3_file *f, sqlite3_int64 *out)
{
    return real_of(f)->pMethods->xFileSize(real_of(f), out);
}
static int c_lock(sqlite3_file *f, int level)
{
    return real_of(f)->pMethods->xLock(real_of(f), level);
}
static int c_unlock(sqlite3_file *f, int level)
{
    return real_of(f)->pMethods->xUnlock(real_of(f), level);
}
static int c_check(sqlite3_file *f, int *out)
{
    return real_of(f)->pMethods->xCheckReservedLock(real_of(f), out);
}
static int c_control(sqlite3_file *f, int op, void *arg)
{
    return real_of(f)->pMethods->xFileControl(real_of(f), op, arg);
}
static int c_sector(sqlite3_file *f)
{
    return real_of(f)->pMethods->xSectorSize(real_of(f));
}
static int c_caps(sqlite3_file *f)
{
    return real_of(f)->pMethods->xDeviceCharacteristics(real_of(f));
}
static int c_shm_map(sqlite3_file *f, int page, int size, int extend, void volatile **out)
{
    return real_of(f)->pMethods->xShmMap(real_of(f), page, size, extend, out);
}
static int c_shm_lock(sqlite3_file *f, int off, int n, int flags)
{
    return real_of(f)->pMethods->xShmLock(real_of(f), off, n, flags);
}
static void c_shm_barrier(sqlite3_file *f)
{
    real_of(f)->pMethods->xShmBarrier(real_of(f));
}
static int c_shm_unmap(sqlite3_file *f, int del)
{
    return real_of(f)->pMethods->xShmUnmap(real_of(f), del);
}

static int c_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *f, int flags, int *out_flags)
{
    struct counted_file *cf = (struct counted_file *)f;
    int rc;

    (void)vfs;
    cf->real = (sqlite3_file *)(cf + 1);
    rc = real_vfs->xOpen(real_vfs, name, cf->real, flags, out_flags);
    /* Version 2: WAL's shared memory, no memory-mapped reads (xFetch) to forward. */
    cf->base.pMethods = cf->real->pMethods ? &counted_methods : NULL;
    return rc;
}

static sqlite3_vfs counted_vfs;

/*
 * Puts the counting VFS in front of the store's (the read-ahead VFS, found by its name):
 * registered under the same name as the default, it is the one a lookup finds first, so
 * the next connections the store opens count their syncs and writes.
 */
static void count_syncs(void)
{
    static const sqlite3_io_methods m = {
        2,          c_close,       c_read,      c_write,   c_truncate, c_sync, c_size,
        c_lock,     c_unlock,      c_check,     c_control, c_sector,   c_caps, c_shm_map,
        c_shm_lock, c_shm_barrier, c_shm_unmap, NULL,      NULL,
    };

    assert_int_equal(vh__readahead_register(), SQLITE_OK);
    default_vfs = sqlite3_vfs_find(NULL);
    real_vfs = sqlite3_vfs_find(VH__READAHEAD_VFS);
    assert_non_null(default_vfs);
    assert_non_null(real_vfs);
    assert_true(real_vfs->iVersion >= 2);
    counted_methods = m;
    counted_vfs = *real_vfs;
    counted_vfs.szOsFile = (int)sizeof(struct counted_file) + real_vfs->szOsFile;
    counted_vfs.xOpen = c_open;
    counted_vfs.pNext = NULL;
    assert_int_equal(sqlite3_vfs_register(&counted_vfs, 1), SQLITE_OK);
    assert_ptr_equal(sqlite3_vfs_find(VH__READAHEAD_VFS), &counted_vfs);
}

static void stop_counting_syncs(void)
{
    assert_int_equal(sqlite3_vfs_unregister(&counted_vfs), SQLITE_OK);
    assert_int_equal(sqlite3_vfs_register(default_vfs, 1), SQLITE_OK);
}

/* Runs put, then returns how many syncs it made. */
static int syncs_of_put(struct vh_store *st, const char *partner_id, const char *session_id)
{
    struct vh_event_put_result res;
    struct vh_event_put ev;
    int before = atomic_load(&syncs);

    fill_put(&ev, partner_id, session_id);
    assert_int_equal(vh_store_event_put(st, &ev, &res, NULL), 0);
    assert_true(res.created);
    assert_int_equal(res.deliveries, 1);
    return atomic_load(&syncs) - before;
}

/* A new enabled endpoint of `partner_id` on `st`. */
/* An enabled endpoint of `partner_id` named `label` (URL https://example.com/hook/LABEL). */
static void endpoint_fill(struct vh_endpoint *ep, const char *partner_id, const char *label)
{
    memset(ep, 0, sizeof(*ep));
    assert_int_equal(vh_uuid_new(ep->id, NULL), 0);
    snprintf(ep->partner_id, sizeof(ep->partner_id), "%s", partner_id);
    snprintf(ep->label, sizeof(ep->label), "%s", label);
    snprintf(ep->url, sizeof(ep->url), "https://example.com/hook/%s", label);
    assert_int_equal(vh_secret_new(ep->secret, NULL), 0);
    ep->enabled = true;
    ep->created_ms = T0;
    ep->updated_ms = T0;
}

static void new_endpoint(struct vh_store *st, const char *partner_id, struct vh_endpoint *ep)
{
    endpoint_fill(ep, partner_id, "main");
    assert_int_equal(vh_store_endpoint_create(st, ep, VH_ENDPOINTS_MAX, NULL), 0);
}

/*
 * The durability contract, write by write: an ingested event and a recorded attempt are on
 * the disk when the call returns (synchronous=FULL: a sync per commit). A claim writes
 * nothing at all: it is held in the store's memory (docs/decisions.md), so losing it with
 * the process or the machine leaves the delivery pending, to be sent again, as after any
 * crash between a send and its record.
 */
static void a_claim_writes_nothing(void **state)
{
    struct fixture *f = *state;
    struct vh_delivery_job_rec *jobs = NULL;
    struct vh_delivery_result r;
    struct vh_error err = VH_ERROR_INIT;
    struct vh_delivery_info info;
    struct vh_attempt_info *attempts = NULL;
    struct vh_endpoint ep;
    struct vh_partner p;
    struct vh_store *st;
    size_t n = 0, n_attempts = 0;
    int before, written;

    count_syncs();
    st = open_ok(f->url);
    new_partner(st, "Syncs", &p);
    new_endpoint(st, p.id, &ep);

    assert_true(syncs_of_put(st, p.id, "sync-1") >= 1);

    before = atomic_load(&syncs);
    written = atomic_load(&writes);
    assert_int_equal(vh_store_delivery_claim(st, "n1", T0, 60000, 10, &jobs, &n, &err), 0);
    assert_int_equal(n, 1);
    assert_int_equal(atomic_load(&syncs) - before, 0);
    assert_int_equal(atomic_load(&writes) - written, 0);
    /* ... and yet this store shows it in flight. */
    memset(&info, 0, sizeof(info));
    assert_int_equal(vh_store_delivery_get(st, p.id, jobs[0].delivery_id, &info, &attempts,
                                           &n_attempts, NULL, &err),
                     0);
    assert_string_equal(info.state, "in_flight");
    vh_free(attempts);
    attempts = NULL;

    memset(&r, 0, sizeof(r));
    r.delivery_id = jobs[0].delivery_id;
    r.endpoint_id = jobs[0].endpoint_id;
    r.row = jobs[0].row;
    r.node_id = "n1";
    r.attempt = jobs[0].attempts + 1;
    r.started_ms = T0;
    r.duration_ms = 3;
    r.http_status = 204;
    r.new_state = "succeeded";
    before = atomic_load(&syncs);
    assert_int_equal(vh_store_delivery_record(st, &r, 1, &err), 0);
    assert_true(atomic_load(&syncs) - before >= 1);

    /* The next ingest syncs, and the record stands. */
    assert_true(syncs_of_put(st, p.id, "sync-2") >= 1);
    memset(&info, 0, sizeof(info));
    assert_int_equal(vh_store_delivery_get(st, p.id, jobs[0].delivery_id, &info, &attempts,
                                           &n_attempts, NULL, &err),
                     0);
    assert_string_equal(info.state, "succeeded");
    assert_int_equal(n_attempts, 1);
    vh_free(attempts);
    vh_delivery_job_recs_free(jobs, n);
    vh_store_close(st);
    stop_counting_syncs();
}

/* The state `st` shows for delivery `id`. */
static void state_of(struct vh_store *st, const char *partner_id, const char *id, char *state,
                     size_t cap)
{
    struct vh_attempt_info *attempts = NULL;
    struct vh_error err = VH_ERROR_INIT;
    struct vh_delivery_info info;
    size_t n = 0;

    memset(&info, 0, sizeof(info));
    if (vh_store_delivery_get(st, partner_id, id, &info, &attempts, &n, NULL, &err) < 0)
        fail_msg("get %s: %s", id, err.msg);
    vh_free(attempts);
    snprintf(state, cap, "%s", info.state);
}

/*
 * Claims live in the memory of the handle that made them, so one handle claims from a file
 * (`<file>-lock`, flock): a second one (as a second process would be) may ingest and read,
 * sees the first one's claims as pending, and cannot claim or recover until the first is
 * closed. Then it takes over what the first held, as a restart after a crash does.
 */
static void one_handle_claims_from_a_file(void **state)
{
    struct fixture *f = *state;
    struct vh_delivery_job_rec *jobs = NULL, *again = NULL;
    struct vh_error err = VH_ERROR_INIT;
    struct vh_event_put_result res;
    struct vh_event_put ev;
    struct vh_endpoint ep;
    struct vh_partner p;
    struct vh_store *a, *b;
    char lock[600], st[VH_DELIVERY_STATE_MAX + 1];
    size_t n = 0, i;

    a = open_ok(f->url);
    b = open_ok(f->url);
    new_partner(a, "Claims", &p);
    new_endpoint(a, p.id, &ep);
    fill_put(&ev, p.id, "claimed-1");
    assert_int_equal(vh_store_event_put(a, &ev, &res, NULL), 0);
    snprintf(lock, sizeof(lock), "%s-lock", f->path);
    /* Opening and ingesting take no lock. */
    assert_false(exists(lock));

    assert_int_equal(vh_store_delivery_claim(a, "n1", T0 + 1000, 60000, 10, &jobs, &n, &err), 0);
    assert_int_equal(n, 1);
    assert_true(exists(lock));
    state_of(a, p.id, jobs[0].delivery_id, st, sizeof(st));
    assert_string_equal(st, "in_flight");
    state_of(b, p.id, jobs[0].delivery_id, st, sizeof(st));
    assert_string_equal(st, "pending");

    assert_int_equal(vh_store_delivery_claim(b, "n2", T0 + 1000, 60000, 10, &again, &n, &err),
                     VH_ECONFLICT);
    assert_non_null(strstr(err.msg, lock));
    assert_non_null(strstr(err.msg, "one vocohook serve per SQLite file"));
    assert_null(again);
    assert_int_equal(vh_store_delivery_recover(b, "n2", T0 + 1000, &err), VH_ECONFLICT);
    fill_put(&ev, p.id, "claimed-2");
    assert_int_equal(vh_store_event_put(b, &ev, &res, NULL), 0);

    /* The first handle goes, with its claim: the delivery is the second one's to send. */
    vh_store_close(a);
    assert_int_equal(vh_store_delivery_claim(b, "n2", T0 + 1000, 60000, 10, &again, &n, &err), 0);
    assert_int_equal(n, 2);
    for (i = 0; i < n; i++)
        assert_int_equal(again[i].attempts, 0);
    assert_string_equal(again[0].delivery_id, jobs[0].delivery_id);
    state_of(b, p.id, jobs[0].delivery_id, st, sizeof(st));
    assert_string_equal(st, "in_flight");
    vh_delivery_job_recs_free(jobs, 1);
    vh_delivery_job_recs_free(again, n);
    vh_store_close(b);
}

/*
 * The lock is the file's, whatever name the handle opened it by: SQLite follows a symbolic
 * link to the database (its -wal and -shm are the real file's), so a second handle opened
 * through a link shares the file and must not claim from it (found in review: the lock was
 * named after the path as given, so both claimed, and each delivery was sent by both).
 */
static void a_linked_name_is_the_same_file_to_the_lock(void **state)
{
    struct fixture *f = *state;
    struct vh_delivery_job_rec *jobs = NULL, *again = NULL;
    struct vh_error err = VH_ERROR_INIT;
    struct vh_event_put_result res;
    struct vh_event_put ev;
    struct vh_endpoint ep;
    struct vh_partner p;
    struct vh_store *a, *b;
    char link[320], url[340], lock[600];
    size_t n = 0;

    snprintf(link, sizeof(link), "%s/link.db", f->dir);
    snprintf(url, sizeof(url), "sqlite:%s", link);
    a = open_ok(f->url);
    assert_int_equal(symlink(f->path, link), 0);
    b = open_ok(url);
    new_partner(a, "Linked", &p);
    new_endpoint(a, p.id, &ep);
    fill_put(&ev, p.id, "linked-1");
    assert_int_equal(vh_store_event_put(a, &ev, &res, NULL), 0);

    assert_int_equal(vh_store_delivery_claim(a, "n1", T0 + 1000, 60000, 10, &jobs, &n, &err), 0);
    assert_int_equal(n, 1);
    n = 0;
    assert_int_equal(vh_store_delivery_claim(b, "n2", T0 + 1000, 60000, 10, &again, &n, &err),
                     VH_ECONFLICT);
    assert_null(again);
    assert_int_equal(n, 0);
    snprintf(lock, sizeof(lock), "%s-lock", f->path);
    assert_non_null(strstr(err.msg, lock));
    vh_delivery_job_recs_free(jobs, 1);
    vh_store_close(b);
    vh_store_close(a);
    unlink(link);
    snprintf(lock, sizeof(lock), "%s-lock", link);
    unlink(lock);
}

/*
 * The claims' lock file must be a file of its own: a directory in its place, or a symbolic
 * link (it is not followed), fails the claim with VH_ESTORE naming the file, and nothing
 * is claimed.
 */
static void the_claim_lock_must_be_a_plain_file(void **state)
{
    struct fixture *f = *state;
    struct vh_delivery_job_rec *jobs = NULL;
    struct vh_error err = VH_ERROR_INIT;
    struct vh_event_put_result res;
    struct vh_event_put ev;
    struct vh_endpoint ep;
    struct vh_partner p;
    struct vh_store *st;
    char lock[600], target[600];
    size_t n = 0;

    snprintf(lock, sizeof(lock), "%s-lock", f->path);
    snprintf(target, sizeof(target), "%s/junk", f->dir);
    st = open_ok(f->url);
    new_partner(st, "Lock", &p);
    new_endpoint(st, p.id, &ep);
    fill_put(&ev, p.id, "lock-1");
    assert_int_equal(vh_store_event_put(st, &ev, &res, NULL), 0);

    assert_int_equal(mkdir(lock, 0700), 0);
    assert_int_equal(vh_store_delivery_claim(st, "n1", T0 + 1000, 60000, 10, &jobs, &n, &err),
                     VH_ESTORE);
    assert_non_null(strstr(err.msg, lock));
    assert_null(jobs);
    assert_int_equal(rmdir(lock), 0);

    assert_int_equal(symlink(target, lock), 0);
    vh_error_clear(&err);
    assert_int_equal(vh_store_delivery_recover(st, "n1", T0 + 1000, &err), VH_ESTORE);
    assert_non_null(strstr(err.msg, lock));
    assert_false(exists(target)); /* not created through the link */
    assert_int_equal(unlink(lock), 0);

    /* A plain file in its place: the claim goes through. */
    assert_int_equal(vh_store_delivery_claim(st, "n1", T0 + 1000, 60000, 10, &jobs, &n, &err), 0);
    assert_int_equal(n, 1);
    vh_delivery_job_recs_free(jobs, n);
    vh_store_close(st);
}

/*
 * A claim reads each endpoint once and gives its settings to every row of it: rows of 20
 * endpoints (four partners of five), one with a schedule and a timeout of its own, alternate
 * in the due order (each event's deliveries are due together), more endpoints than the claim
 * remembers (16), and each row gets its own endpoint's.
 */
static void a_claim_gives_each_row_its_endpoint(void **state)
{
    enum { PARTNERS = 4, EPS = PARTNERS * VH_ENDPOINTS_MAX, EVENTS = 2 };
    struct fixture *f = *state;
    struct vh_delivery_job_rec *jobs = NULL;
    struct vh_error err = VH_ERROR_INIT;
    struct vh_event_put_result res;
    struct vh_endpoint eps[EPS];
    struct vh_event_put ev;
    struct vh_partner p[PARTNERS];
    struct vh_store *st;
    size_t n = 0, i, k, seen[EPS];
    char name[32], sid[32];

    st = open_ok(f->url);
    for (i = 0; i < PARTNERS; i++) {
        snprintf(name, sizeof(name), "Endpoints %zu", i);
        new_partner(st, name, &p[i]);
    }
    for (k = 0; k < EPS; k++) {
        snprintf(name, sizeof(name), "ep-%zu", k);
        endpoint_fill(&eps[k], p[k / VH_ENDPOINTS_MAX].id, name);
        if (k == 1) {
            snprintf(eps[k].retry_schedule, sizeof(eps[k].retry_schedule), "0,5s,1m");
            eps[k].timeout_ms = 2500;
        }
        assert_int_equal(vh_store_endpoint_create(st, &eps[k], VH_ENDPOINTS_MAX, &err), 0);
        seen[k] = 0;
    }
    for (i = 0; i < EVENTS * PARTNERS; i++) {
        snprintf(sid, sizeof(sid), "alt-%zu", i);
        fill_put(&ev, p[i % PARTNERS].id, sid);
        assert_int_equal(vh_store_event_put(st, &ev, &res, NULL), 0);
        assert_int_equal(res.deliveries, VH_ENDPOINTS_MAX);
    }
    assert_int_equal(vh_store_delivery_claim(st, "n1", T0 + 1000, 60000, 100, &jobs, &n, &err), 0);
    assert_int_equal(n, EPS * EVENTS);
    assert_string_not_equal(jobs[0].endpoint_id, jobs[1].endpoint_id); /* they alternate */
    for (i = 0; i < n; i++) {
        for (k = 0; k < EPS && strcmp(eps[k].id, jobs[i].endpoint_id) != 0; k++)
            ;
        assert_true(k < EPS);
        assert_string_equal(jobs[i].url, eps[k].url);
        assert_string_equal(jobs[i].secret, eps[k].secret);
        assert_string_equal(jobs[i].retry_schedule, eps[k].retry_schedule);
        assert_int_equal(jobs[i].timeout_ms, eps[k].timeout_ms);
        seen[k]++;
    }
    for (k = 0; k < EPS; k++)
        assert_int_equal(seen[k], EVENTS);
    vh_delivery_job_recs_free(jobs, n);
    vh_store_close(st);
}

/*
 * A delivery whose endpoint row is gone (a file written with the keys off) fails the claim,
 * naming both, and is not held: it stays pending.
 */
static void a_claim_names_a_missing_endpoint(void **state)
{
    struct fixture *f = *state;
    struct vh_delivery_job_rec *jobs = NULL;
    struct vh_error err = VH_ERROR_INIT;
    struct vh_event_put_result res;
    struct vh_endpoint ep;
    struct vh_event_put ev;
    struct vh_partner p;
    struct vh_store *st;
    char did[VH_UUID_LEN + 1], sql[256], why[512];
    size_t n = 0;
    sqlite3 *db = NULL;

    st = open_ok(f->url);
    new_partner(st, "Gone", &p);
    new_endpoint(st, p.id, &ep);
    fill_put(&ev, p.id, "gone-1");
    assert_int_equal(vh_store_event_put(st, &ev, &res, NULL), 0);
    assert_int_equal(res.deliveries, 1);
    assert_int_equal(sqlite3_open_v2(f->path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    snprintf(sql, sizeof(sql), "PRAGMA foreign_keys = OFF; DELETE FROM endpoints WHERE id = '%s'",
             ep.id);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);

    assert_int_equal(vh_store_delivery_claim(st, "n1", T0 + 1000, 60000, 10, &jobs, &n, &err),
                     VH_ESTORE);
    assert_null(jobs);
    assert_int_equal(n, 0);
    snprintf(why, sizeof(why), "names endpoint '%s', not stored", ep.id);
    if (!strstr(err.msg, why) || !strstr(err.msg, "delivery '"))
        fail_msg("unexpected error: %s", err.msg);
    snprintf(sql, sizeof(sql), "SELECT id FROM deliveries WHERE endpoint_id = '%s'", ep.id);
    assert_int_equal(sqlite3_open_v2(f->path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    {
        sqlite3_stmt *q = NULL;

        assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &q, NULL), SQLITE_OK);
        assert_int_equal(sqlite3_step(q), SQLITE_ROW);
        snprintf(did, sizeof(did), "%s", (const char *)sqlite3_column_text(q, 0));
        sqlite3_finalize(q);
    }
    sqlite3_close(db);
    state_of(st, p.id, did, why, sizeof(why));
    assert_string_equal(why, "pending");
    vh_store_close(st);
}

/*
 * A claim that fills up lets the next one begin past its last row (claim_resume in
 * sqlite.c), but not once another process has committed to the file: a row that process
 * made due before that point is the next one claimed (PRAGMA data_version).
 */
static void a_write_by_another_process_restarts_the_due_scan(void **state)
{
    struct fixture *f = *state;
    struct vh_error err = VH_ERROR_INIT;
    struct vh_delivery_job_rec *jobs = NULL;
    struct vh_event_put_result res;
    struct vh_event_put ev;
    struct vh_endpoint ep;
    struct vh_partner p;
    struct vh_store *st;
    char session[3][16], sql[160];
    size_t n = 0;
    sqlite3 *db = NULL;
    int i;

    st = open_ok(f->url);
    new_partner(st, "Elsewhere", &p);
    new_endpoint(st, p.id, &ep);
    for (i = 0; i < 3; i++) {
        snprintf(session[i], sizeof(session[i]), "elsewhere-%d", i);
        fill_put(&ev, p.id, session[i]);
        ev.accepted_ms = T0 + 100 * (i + 1); /* due at 100, 200, 300 */
        assert_int_equal(vh_store_event_put(st, &ev, &res, NULL), 0);
    }
    /* Full: the next claim may begin past 100. */
    assert_int_equal(vh_store_delivery_claim(st, "n1", T0 + 1000, 60000, 1, &jobs, &n, &err), 0);
    assert_int_equal(n, 1);
    assert_int_equal(jobs[0].next_attempt_ms, T0 + 100);
    vh_delivery_job_recs_free(jobs, n);

    /* Another process makes the one due at 300 due at 50. */
    snprintf(sql, sizeof(sql),
             "UPDATE deliveries SET next_attempt_ms = %" PRId64 " WHERE next_attempt_ms = %" PRId64,
             T0 + 50, T0 + 300);
    assert_int_equal(sqlite3_open_v2(f->path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_changes(db), 1);
    sqlite3_close(db);

    assert_int_equal(vh_store_delivery_claim(st, "n1", T0 + 1000, 60000, 1, &jobs, &n, &err), 0);
    assert_int_equal(n, 1);
    assert_int_equal(jobs[0].next_attempt_ms, T0 + 50);
    vh_delivery_job_recs_free(jobs, n);
    vh_store_close(st);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(url_forms_name_the_same_file),
        T(open_rejects_unusable_urls),
        T(newer_schema_is_refused),
        T(foreign_files_are_refused),
        T(writes_go_through_the_wal),
        T(a_killed_writer_loses_nothing),
        T(two_handles_share_one_file),
        T(a_version_1_file_upgrades_in_place),
        T(version_3_rebuilds_deliveries_and_attempts),
        T(version_4_points_deliveries_at_event_seqs),
        T(version_4_refuses_broken_references),
        T(rate_windows_and_wake_ups_are_the_callers),
        T(a_claim_writes_nothing),
        T(one_handle_claims_from_a_file),
        T(the_claim_lock_must_be_a_plain_file),
        T(a_linked_name_is_the_same_file_to_the_lock),
        T(a_claim_gives_each_row_its_endpoint),
        T(a_claim_names_a_missing_endpoint),
        T(a_write_by_another_process_restarts_the_due_scan),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
