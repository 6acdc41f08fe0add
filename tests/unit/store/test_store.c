/*
 * The store contract suite: what every backend must do, through the public API only.
 *
 * The store comes from VH_TEST_STORE_URL when it is set (the PostgreSQL run points it at a
 * real server), else from a fresh SQLite file in a new temporary directory per test. The
 * tests do not assume an empty store: they count in deltas, use ids unique to the run and
 * look only at their own partners, so a shared database passes as well as a fresh file.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <unistd.h>

#include <cmocka.h>

#include <vocohook/alloc.h>
#include <vocohook/event.h>
#include <vocohook/id.h>
#include <vocohook/sign.h>
#include <vocohook/store.h>

#include "unit/wait.h"

#define T0 INT64_C(1773585128000) /* 2026-03-15T14:32:08.000Z */

struct fixture {
    char dir[256]; /* the temp dir, "" when VH_TEST_STORE_URL is used */
    char url[512]; /* what vh_store_open gets */
    struct vh_store *st;
};

static int open_store(struct fixture *f)
{
    struct vh_error err = VH_ERROR_INIT;
    int rc = vh_store_open(f->url, &f->st, &err);

    if (rc < 0)
        fprintf(stderr, "open %s: %s\n", f->url, err.msg);
    return rc;
}

static int setup(void **state)
{
    const char *env = getenv("VH_TEST_STORE_URL");
    const char *tmp = getenv("TMPDIR");
    struct fixture *f = calloc(1, sizeof(*f));

    if (!f)
        return -1;
    if (env && *env) {
        snprintf(f->url, sizeof(f->url), "%s", env);
    } else {
        snprintf(f->dir, sizeof(f->dir), "%s/vh-store-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (!mkdtemp(f->dir)) {
            free(f);
            return -1;
        }
        snprintf(f->url, sizeof(f->url), "sqlite:%s/store.db", f->dir);
    }
    if (open_store(f) < 0) {
        free(f);
        return -1;
    }
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

/* `prefix-` and 12 random hex digits: ids that no earlier run can have used. */
static void uniq(char *out, size_t cap, const char *prefix)
{
    char u[VH_UUID_LEN + 1];

    assert_int_equal(vh_uuid_new(u, NULL), 0);
    snprintf(out, cap, "%s-%s", prefix, u + 24);
}

static int64_t count(struct vh_store *st, const char *table)
{
    struct vh_error err = VH_ERROR_INIT;
    int64_t n = -1;

    assert_int_equal(vh_store_count(st, table, &n, &err), 0);
    return n;
}

struct key {
    char key[VH_APIKEY_LEN + 1];
    char hash[VH_SHA256_HEX_LEN + 1];
};

static void new_key(struct key *k)
{
    assert_int_equal(vh_apikey_new(k->key, NULL), 0);
    assert_int_equal(vh_sha256_hex(k->key, strlen(k->key), k->hash, NULL), 0);
}

static void new_partner(struct vh_store *st, const char *name, struct vh_partner *p)
{
    struct vh_error err = VH_ERROR_INIT;
    struct key k;

    new_key(&k);
    assert_int_equal(vh_store_partner_create(st, name, k.hash, T0, p, &err), 0);
}

static void fill_endpoint(struct vh_endpoint *ep, const char *partner_id, const char *label,
                          bool enabled)
{
    memset(ep, 0, sizeof(*ep));
    assert_int_equal(vh_uuid_new(ep->id, NULL), 0);
    snprintf(ep->partner_id, sizeof(ep->partner_id), "%s", partner_id);
    snprintf(ep->label, sizeof(ep->label), "%s", label);
    snprintf(ep->url, sizeof(ep->url), "https://example.com/hooks/%s", label);
    assert_int_equal(vh_secret_new(ep->secret, NULL), 0);
    ep->enabled = enabled;
    ep->created_ms = T0;
    ep->updated_ms = T0;
}

static void new_endpoint(struct vh_store *st, const char *partner_id, const char *label,
                         bool enabled, struct vh_endpoint *ep)
{
    struct vh_error err = VH_ERROR_INIT;

    fill_endpoint(ep, partner_id, label, enabled);
    if (vh_store_endpoint_create(st, ep, VH_ENDPOINTS_MAX, &err) < 0)
        fail_msg("create endpoint %s: %s", label, err.msg);
}

static const char body_text[] = "{\"event\":\"session.completed\",\"data\":{}}";

static void fill_put(struct vh_event_put *ev, const char *partner_id, const char *session_id,
                     int64_t accepted_ms)
{
    memset(ev, 0, sizeof(*ev));
    ev->partner_id = partner_id;
    ev->session_id = session_id;
    ev->body = body_text;
    ev->body_len = sizeof(body_text) - 1;
    ev->accepted_ms = accepted_ms;
}

static void put(struct vh_store *st, const struct vh_event_put *ev, struct vh_event_put_result *res)
{
    struct vh_error err = VH_ERROR_INIT;

    if (vh_store_event_put(st, ev, res, &err) < 0)
        fail_msg("put %s: %s", ev->session_id, err.msg);
}

/* The state of the delivery of `event_id` to `endpoint_id` (fails when there is none). */
static void delivery_state(struct vh_store *st, const char *event_id, const char *endpoint_id,
                           char *state, size_t cap)
{
    struct vh_delivery_brief *d = NULL;
    size_t n = 0, i, hits = 0;

    assert_int_equal(vh_store_event_deliveries(st, event_id, &d, &n, NULL), 0);
    for (i = 0; i < n; i++) {
        if (strcmp(d[i].endpoint_id, endpoint_id) == 0) {
            snprintf(state, cap, "%s", d[i].state);
            hits++;
        }
    }
    vh_free(d);
    assert_int_equal(hits, 1);
}

/* ---- open, migrate, reopen ----------------------------------------------------------------- */

static void reopen_keeps_data_and_schema(void **state)
{
    struct fixture *f = *state;
    struct vh_error err = VH_ERROR_INIT;
    struct vh_event_put_result res, again;
    struct vh_partner p, got;
    struct vh_endpoint ep, ep2;
    struct vh_call_rec rec;
    struct vh_event_put ev;
    char session[64];
    int v1 = -1, v2 = -2;

    assert_int_equal(vh_store_schema_version(f->st, &v1, &err), 0);
    assert_true(v1 >= 1);
    new_partner(f->st, "Acme Voice", &p);
    new_endpoint(f->st, p.id, "primary", true, &ep);
    uniq(session, sizeof(session), "reopen");
    fill_put(&ev, p.id, session, T0);
    put(f->st, &ev, &res);
    assert_true(res.created);

    vh_store_close(f->st);
    f->st = NULL;
    assert_int_equal(open_store(f), 0);

    assert_int_equal(vh_store_schema_version(f->st, &v2, &err), 0);
    assert_int_equal(v1, v2);
    assert_int_equal(vh_store_partner_get(f->st, p.id, &got, &err), 0);
    assert_string_equal(got.name, "Acme Voice");
    assert_int_equal(got.created_ms, T0);
    assert_int_equal(vh_store_endpoint_get(f->st, p.id, ep.id, &ep2, &err), 0);
    assert_string_equal(ep2.secret, ep.secret);
    memset(&rec, 0, sizeof(rec));
    assert_int_equal(vh_store_call_get(f->st, p.id, session, &rec, &err), 0);
    assert_string_equal(rec.event_id, res.event_id);
    assert_int_equal(rec.body.len, sizeof(body_text) - 1);
    assert_memory_equal(rec.body.data, body_text, rec.body.len);
    vh_call_rec_release(&rec);
    /* The idempotency record survived too. */
    put(f->st, &ev, &again);
    assert_false(again.created);
    assert_string_equal(again.event_id, res.event_id);
    assert_int_equal(again.deliveries, 1);
}

static void backend_is_named(void **state)
{
    struct fixture *f = *state;
    const char *name = vh_store_backend(f->st);

    assert_true(strcmp(name, "sqlite") == 0 || strcmp(name, "postgres") == 0);
}

/* ---- partners ------------------------------------------------------------------------------ */

static void partner_create_list_get(void **state)
{
    struct fixture *f = *state;
    struct vh_error err = VH_ERROR_INIT;
    struct vh_partner a, b, got, *list = NULL;
    size_t n = 0, i, seen_a = SIZE_MAX, seen_b = SIZE_MAX;
    int64_t before = count(f->st, "partners");

    new_partner(f->st, "Alpha", &a);
    new_partner(f->st, "Beta", &b);
    assert_int_equal(count(f->st, "partners"), before + 2);
    assert_true(vh_id_is_valid(a.id, strlen(a.id)));
    assert_int_equal(strlen(a.id), VH_UUID_LEN);
    assert_string_not_equal(a.id, b.id);
    assert_string_equal(a.name, "Alpha");
    assert_int_equal(a.created_ms, T0);

    assert_int_equal(vh_store_partner_list(f->st, &list, &n, &err), 0);
    for (i = 0; i < n; i++) {
        if (strcmp(list[i].id, a.id) == 0)
            seen_a = i;
        if (strcmp(list[i].id, b.id) == 0)
            seen_b = i;
    }
    vh_free(list);
    assert_true(seen_a < seen_b && seen_b < n); /* oldest first */

    assert_int_equal(vh_store_partner_get(f->st, b.id, &got, &err), 0);
    assert_string_equal(got.name, "Beta");
    /* Well-formed UTF-8 of every length is a name: é, —, 😀. */
    new_partner(f->st, "Caf\xc3\xa9 \xe2\x80\x94 \xf0\x9f\x98\x80", &b);
    assert_int_equal(vh_store_partner_get(f->st, b.id, &got, &err), 0);
    assert_string_equal(got.name, "Caf\xc3\xa9 \xe2\x80\x94 \xf0\x9f\x98\x80");
    vh_error_clear(&err);
    assert_int_equal(
        vh_store_partner_get(f->st, "00000000-0000-4000-8000-000000000000", &got, &err),
        VH_ENOTFOUND);
    assert_string_equal(err.msg, "partner '00000000-0000-4000-8000-000000000000' not found");
}

static void partner_rejects_bad_input(void **state)
{
    struct fixture *f = *state;
    struct vh_error err = VH_ERROR_INIT;
    char long_name[VH_PARTNER_NAME_MAX + 2];
    struct vh_partner p;
    /* Full-size buffers: the parameters are declared as arrays of VH_SHA256_HEX_LEN + 1. */
    char bad_hash[VH_SHA256_HEX_LEN + 1] = "not-a-hash";
    struct key k;
    int64_t before = count(f->st, "partners");

    new_key(&k);
    assert_int_equal(vh_store_partner_create(f->st, "", k.hash, T0, &p, &err), VH_EINVAL);
    memset(long_name, 'x', sizeof(long_name) - 1);
    long_name[sizeof(long_name) - 1] = '\0';
    vh_error_clear(&err);
    assert_int_equal(vh_store_partner_create(f->st, long_name, k.hash, T0, &p, &err), VH_EINVAL);
    vh_error_clear(&err);
    assert_int_equal(vh_store_partner_create(f->st, "bad\nname", k.hash, T0, &p, &err), VH_EINVAL);
    /* C1 controls too (U+009B is CSI to some terminals); U+00A0 and on are text. */
    vh_error_clear(&err);
    assert_int_equal(vh_store_partner_create(f->st,
                                             "red\xc2\x9b"
                                             "31m",
                                             k.hash, T0, &p, &err),
                     VH_EINVAL);
    vh_error_clear(&err);
    assert_int_equal(vh_store_partner_create(f->st, "\xc2\x80", k.hash, T0, &p, &err), VH_EINVAL);
    /* Names must be well-formed UTF-8: overlong, surrogate, past U+10FFFF, truncated. */
    {
        static const char *const bad_utf8[] = {"a\xc0\x80", "a\xed\xa0\x80\x62", "\xf4\x90\x80\x80",
                                               "ab\xe2\x80", "\xff"};
        size_t i;

        for (i = 0; i < sizeof(bad_utf8) / sizeof(bad_utf8[0]); i++) {
            vh_error_clear(&err);
            if (vh_store_partner_create(f->st, bad_utf8[i], k.hash, T0, &p, &err) != VH_EINVAL)
                fail_msg("name %zu (bad UTF-8) was not refused", i);
        }
    }
    vh_error_clear(&err);
    assert_int_equal(vh_store_partner_create(f->st,
                                             "no\xc2\xa0"
                                             "break",
                                             k.hash, T0, &p, &err),
                     0);
    before++;
    vh_error_clear(&err);
    assert_int_equal(vh_store_partner_create(f->st, "ok", bad_hash, T0, &p, &err), VH_EINVAL);
    assert_string_equal(err.msg, "api key hash: must be 64 lowercase hex digits");
    assert_int_equal(count(f->st, "partners"), before);
}

static void partner_keys_rotate(void **state)
{
    struct fixture *f = *state;
    struct vh_error err = VH_ERROR_INIT;
    struct vh_partner p, other, got;
    char short_hash[VH_SHA256_HEX_LEN + 1] = "short";
    struct key k1, k2, stray;

    new_key(&k1);
    assert_int_equal(vh_store_partner_create(f->st, "Keyed", k1.hash, T0, &p, &err), 0);
    new_partner(f->st, "Other", &other);

    assert_int_equal(vh_store_partner_by_key(f->st, k1.hash, &got, &err), 0);
    assert_string_equal(got.id, p.id);
    assert_string_equal(got.name, "Keyed");

    new_key(&k2);
    assert_int_equal(vh_store_partner_rotate_key(f->st, p.id, k2.hash, T0 + 1000, &err), 0);
    memset(&got, 0x5a, sizeof(got));
    assert_int_equal(vh_store_partner_by_key(f->st, k1.hash, &got, &err), VH_ENOTFOUND);
    assert_int_equal((unsigned char)got.id[0], 0x5a); /* untouched on failure */
    assert_int_equal(vh_store_partner_by_key(f->st, k2.hash, &got, NULL), 0);
    assert_string_equal(got.id, p.id);

    /* Rotating one partner leaves the other's key alone. */
    new_key(&stray);
    assert_int_equal(vh_store_partner_by_key(f->st, stray.hash, &got, NULL), VH_ENOTFOUND);
    vh_error_clear(&err);
    assert_int_equal(vh_store_partner_rotate_key(f->st, "00000000-0000-4000-8000-000000000000",
                                                 stray.hash, T0, &err),
                     VH_ENOTFOUND);
    /* A key that is not even a hash is simply not found. */
    assert_int_equal(vh_store_partner_by_key(f->st, short_hash, &got, NULL), VH_ENOTFOUND);
}

/*
 * A write that fails halfway leaves nothing: rotating to a hash already in use fails after
 * the old keys were revoked in the same transaction, so the old key must still work.
 */
static void failed_writes_leave_nothing(void **state)
{
    struct fixture *f = *state;
    struct vh_error err = VH_ERROR_INIT;
    struct vh_partner a, b, got;
    struct key ka, kb;
    int64_t partners, keys;

    new_key(&ka);
    new_key(&kb);
    assert_int_equal(vh_store_partner_create(f->st, "Atomic A", ka.hash, T0, &a, NULL), 0);
    assert_int_equal(vh_store_partner_create(f->st, "Atomic B", kb.hash, T0, &b, NULL), 0);
    partners = count(f->st, "partners");
    keys = count(f->st, "api_keys");

    assert_int_equal(vh_store_partner_rotate_key(f->st, a.id, kb.hash, T0 + 1, &err), VH_ECONFLICT);
    assert_int_equal(vh_store_partner_by_key(f->st, ka.hash, &got, NULL), 0);
    assert_string_equal(got.id, a.id);
    assert_int_equal(vh_store_partner_by_key(f->st, kb.hash, &got, NULL), 0);
    assert_string_equal(got.id, b.id);

    /* A new partner whose key is taken: the partner row goes too. */
    vh_error_clear(&err);
    assert_int_equal(vh_store_partner_create(f->st, "Atomic C", ka.hash, T0, &got, &err),
                     VH_ECONFLICT);
    assert_int_equal(count(f->st, "partners"), partners);
    assert_int_equal(count(f->st, "api_keys"), keys);
}

/* ---- endpoints ----------------------------------------------------------------------------- */

static void endpoint_create_get_list_update_delete(void **state)
{
    struct fixture *f = *state;
    struct vh_error err = VH_ERROR_INIT;
    struct vh_endpoint a, b, got, *list = NULL;
    struct vh_partner p;
    char want[160];
    size_t n = 0;

    new_partner(f->st, "Endpoints", &p);
    new_endpoint(f->st, p.id, "alpha", true, &a);
    new_endpoint(f->st, p.id, "beta", false, &b);

    assert_int_equal(vh_store_endpoint_get(f->st, p.id, a.id, &got, &err), 0);
    assert_string_equal(got.id, a.id);
    assert_string_equal(got.partner_id, p.id);
    assert_string_equal(got.label, "alpha");
    assert_string_equal(got.url, "https://example.com/hooks/alpha");
    assert_string_equal(got.secret, a.secret);
    assert_true(got.enabled);
    assert_int_equal(got.created_ms, T0);
    assert_int_equal(got.last_delivery_ms, 0);
    assert_int_equal(got.last_delivery_status, VH_OUTCOME_NONE);

    assert_int_equal(vh_store_endpoint_get_by_label(f->st, p.id, "beta", &got, &err), 0);
    assert_string_equal(got.id, b.id);
    assert_false(got.enabled);

    assert_int_equal(vh_store_endpoint_list(f->st, p.id, &list, &n, &err), 0);
    assert_int_equal(n, 2);
    assert_string_equal(list[0].id, a.id); /* oldest first */
    assert_string_equal(list[1].id, b.id);
    vh_free(list);

    snprintf(b.label, sizeof(b.label), "gamma");
    snprintf(b.url, sizeof(b.url), "https://example.org/other");
    b.enabled = true;
    b.updated_ms = T0 + 5000;
    assert_int_equal(vh_store_endpoint_update(f->st, &b, &err), 0);
    assert_int_equal(vh_store_endpoint_get(f->st, p.id, b.id, &got, &err), 0);
    assert_string_equal(got.label, "gamma");
    assert_string_equal(got.url, "https://example.org/other");
    assert_true(got.enabled);
    assert_int_equal(got.created_ms, T0);
    assert_int_equal(got.updated_ms, T0 + 5000);
    assert_int_equal(vh_store_endpoint_get_by_label(f->st, p.id, "beta", &got, NULL), VH_ENOTFOUND);

    assert_int_equal(vh_store_endpoint_delete(f->st, p.id, a.id, T0 + 6000, &err), 0);
    vh_error_clear(&err);
    assert_int_equal(vh_store_endpoint_get(f->st, p.id, a.id, &got, &err), VH_ENOTFOUND);
    snprintf(want, sizeof(want), "endpoint '%s' not found", a.id);
    assert_string_equal(err.msg, want);
    assert_int_equal(vh_store_endpoint_get_by_label(f->st, p.id, "alpha", &got, NULL),
                     VH_ENOTFOUND);
    assert_int_equal(vh_store_endpoint_list(f->st, p.id, &list, &n, &err), 0);
    assert_int_equal(n, 1);
    assert_string_equal(list[0].id, b.id);
    vh_free(list);
    assert_int_equal(vh_store_endpoint_update(f->st, &a, NULL), VH_ENOTFOUND);
    assert_int_equal(vh_store_endpoint_delete(f->st, p.id, a.id, T0, NULL), VH_ENOTFOUND);

    /* A deleted endpoint's label is free again. */
    new_endpoint(f->st, p.id, "alpha", true, &got);
}

static void endpoint_label_conflict(void **state)
{
    struct fixture *f = *state;
    struct vh_error err = VH_ERROR_INIT;
    struct vh_endpoint a, b, dup, theirs;
    struct vh_partner p, q;
    int64_t before;

    new_partner(f->st, "Labels", &p);
    new_partner(f->st, "Labels too", &q);
    new_endpoint(f->st, p.id, "main", true, &a);
    new_endpoint(f->st, p.id, "second", true, &b);
    before = count(f->st, "endpoints");

    fill_endpoint(&dup, p.id, "main", true);
    assert_int_equal(vh_store_endpoint_create(f->st, &dup, VH_ENDPOINTS_MAX, &err), VH_ECONFLICT);
    assert_string_equal(err.msg, "label 'main' is already in use");
    assert_int_equal(count(f->st, "endpoints"), before);

    snprintf(b.label, sizeof(b.label), "main");
    vh_error_clear(&err);
    assert_int_equal(vh_store_endpoint_update(f->st, &b, &err), VH_ECONFLICT);
    assert_string_equal(err.msg, "label 'main' is already in use");
    /* Keeping one's own label is no conflict. */
    snprintf(a.url, sizeof(a.url), "https://example.com/v2");
    assert_int_equal(vh_store_endpoint_update(f->st, &a, NULL), 0);

    /* Labels are per partner. */
    new_endpoint(f->st, q.id, "main", true, &theirs);
}

static void endpoint_limit_and_failed_insert_leaves_nothing(void **state)
{
    struct fixture *f = *state;
    struct vh_error err = VH_ERROR_INIT;
    struct vh_endpoint ep[VH_ENDPOINTS_MAX], extra, got, *list = NULL;
    struct vh_partner p;
    char label[16];
    size_t n = 0;
    int64_t before = count(f->st, "endpoints");
    int i;

    new_partner(f->st, "Limits", &p);
    for (i = 0; i < VH_ENDPOINTS_MAX; i++) {
        snprintf(label, sizeof(label), "ep-%d", i);
        new_endpoint(f->st, p.id, label, true, &ep[i]);
    }
    fill_endpoint(&extra, p.id, "one-too-many", true);
    assert_int_equal(vh_store_endpoint_create(f->st, &extra, VH_ENDPOINTS_MAX, &err), VH_ECONFLICT);
    assert_string_equal(err.msg, "at most 5 endpoints per partner");
    assert_int_equal(count(f->st, "endpoints"), before + VH_ENDPOINTS_MAX);
    assert_int_equal(vh_store_endpoint_list(f->st, p.id, &list, &n, NULL), 0);
    vh_free(list);
    assert_int_equal(n, VH_ENDPOINTS_MAX);
    assert_int_equal(vh_store_endpoint_get(f->st, p.id, extra.id, &got, NULL), VH_ENOTFOUND);

    /* The limit is the caller's. */
    vh_error_clear(&err);
    assert_int_equal(vh_store_endpoint_create(f->st, &extra, 2, &err), VH_ECONFLICT);
    assert_string_equal(err.msg, "at most 2 endpoints per partner");

    /* Deleting one makes room. */
    assert_int_equal(vh_store_endpoint_delete(f->st, p.id, ep[0].id, T0, NULL), 0);
    assert_int_equal(vh_store_endpoint_create(f->st, &extra, VH_ENDPOINTS_MAX, NULL), 0);
    assert_int_equal(vh_store_endpoint_list(f->st, p.id, &list, &n, NULL), 0);
    vh_free(list);
    assert_int_equal(n, VH_ENDPOINTS_MAX);
}

static void endpoint_of_another_partner_is_not_found(void **state)
{
    struct fixture *f = *state;
    struct vh_error err = VH_ERROR_INIT;
    struct vh_endpoint mine, forged, got, *list = NULL;
    struct vh_partner a, b;
    size_t n = 99;

    new_partner(f->st, "Owner", &a);
    new_partner(f->st, "Intruder", &b);
    new_endpoint(f->st, a.id, "private", true, &mine);

    memset(&got, 0x5a, sizeof(got));
    assert_int_equal(vh_store_endpoint_get(f->st, b.id, mine.id, &got, &err), VH_ENOTFOUND);
    assert_int_equal((unsigned char)got.label[0], 0x5a); /* untouched on failure */
    assert_int_equal(vh_store_endpoint_get_by_label(f->st, b.id, "private", &got, NULL),
                     VH_ENOTFOUND);

    forged = mine;
    snprintf(forged.partner_id, sizeof(forged.partner_id), "%s", b.id);
    snprintf(forged.url, sizeof(forged.url), "https://evil.example/");
    assert_int_equal(vh_store_endpoint_update(f->st, &forged, NULL), VH_ENOTFOUND);
    assert_int_equal(vh_store_endpoint_delete(f->st, b.id, mine.id, T0, NULL), VH_ENOTFOUND);
    assert_int_equal(vh_store_endpoint_list(f->st, b.id, &list, &n, NULL), 0);
    assert_int_equal(n, 0);
    vh_free(list);

    assert_int_equal(vh_store_endpoint_get(f->st, a.id, mine.id, &got, NULL), 0);
    assert_string_equal(got.url, mine.url);
    assert_true(got.enabled);
}

static void endpoint_create_for_unknown_partner(void **state)
{
    struct fixture *f = *state;
    struct vh_error err = VH_ERROR_INIT;
    struct vh_endpoint ep;
    int64_t before = count(f->st, "endpoints");

    fill_endpoint(&ep, "00000000-0000-4000-8000-000000000000", "orphan", true);
    assert_int_equal(vh_store_endpoint_create(f->st, &ep, VH_ENDPOINTS_MAX, &err), VH_ENOTFOUND);
    assert_string_equal(err.msg, "partner '00000000-0000-4000-8000-000000000000' not found");
    assert_int_equal(count(f->st, "endpoints"), before);
}

static void endpoint_rejects_bad_fields(void **state)
{
    struct fixture *f = *state;
    struct vh_endpoint ep;
    struct vh_partner p;

    new_partner(f->st, "Strict", &p);
    fill_endpoint(&ep, p.id, "Upper", true);
    assert_int_equal(vh_store_endpoint_create(f->st, &ep, 5, NULL), VH_EINVAL);
    fill_endpoint(&ep, p.id, "-dash", true);
    assert_int_equal(vh_store_endpoint_create(f->st, &ep, 5, NULL), VH_EINVAL);
    fill_endpoint(&ep, p.id, "ok", true);
    ep.url[0] = '\0';
    assert_int_equal(vh_store_endpoint_create(f->st, &ep, 5, NULL), VH_EINVAL);
    fill_endpoint(&ep, p.id, "ok", true);
    ep.secret[0] = '\0';
    assert_int_equal(vh_store_endpoint_create(f->st, &ep, 5, NULL), VH_EINVAL);
    fill_endpoint(&ep, p.id, "ok", true);
    ep.created_ms = -1;
    assert_int_equal(vh_store_endpoint_create(f->st, &ep, 5, NULL), VH_EINVAL);
    fill_endpoint(&ep, p.id, "default", true); /* reserved for the API, not the store */
    assert_int_equal(vh_store_endpoint_create(f->st, &ep, 5, NULL), 0);
}

/* ---- events and deliveries ------------------------------------------------------------------ */

struct fanout {
    struct vh_partner p;
    struct vh_endpoint on[3];
    struct vh_endpoint off;
};

/* A partner with three enabled endpoints and a disabled one. */
static void make_fanout(struct vh_store *st, const char *name, struct fanout *fo)
{
    new_partner(st, name, &fo->p);
    new_endpoint(st, fo->p.id, "one", true, &fo->on[0]);
    new_endpoint(st, fo->p.id, "two", true, &fo->on[1]);
    new_endpoint(st, fo->p.id, "off", false, &fo->off);
    new_endpoint(st, fo->p.id, "three", true, &fo->on[2]);
}

static void event_put_fans_out_to_enabled_endpoints(void **state)
{
    struct fixture *f = *state;
    struct vh_delivery_brief *d = NULL;
    struct vh_event_put_result res;
    struct vh_event_put ev;
    struct fanout fo;
    char session[64];
    size_t n = 0, i;
    int64_t events, deliveries;

    make_fanout(f->st, "Fanout", &fo);
    events = count(f->st, "events");
    deliveries = count(f->st, "deliveries");
    uniq(session, sizeof(session), "fan");
    fill_put(&ev, fo.p.id, session, T0 + 42);
    put(f->st, &ev, &res);
    assert_true(res.created);
    assert_int_equal(res.deliveries, 3);
    assert_int_equal(strlen(res.event_id), VH_UUID_LEN);
    assert_int_equal(count(f->st, "events"), events + 1);
    assert_int_equal(count(f->st, "deliveries"), deliveries + 3);

    assert_int_equal(vh_store_event_deliveries(f->st, res.event_id, &d, &n, NULL), 0);
    assert_int_equal(n, 3);
    for (i = 0; i < n; i++) {
        assert_string_equal(d[i].endpoint_id, fo.on[i].id); /* endpoint order */
        assert_string_equal(d[i].state, "pending");
        assert_int_equal(d[i].attempts, 0);
        assert_int_equal(d[i].next_attempt_ms, T0 + 42); /* due at once */
        assert_int_equal(strlen(d[i].id), VH_UUID_LEN);
    }
    assert_string_not_equal(d[0].id, d[1].id);
    vh_free(d);
    assert_int_equal(
        vh_store_event_deliveries(f->st, "00000000-0000-4000-8000-000000000000", &d, &n, NULL),
        VH_ENOTFOUND);
}

static void event_put_without_endpoints(void **state)
{
    struct fixture *f = *state;
    struct vh_delivery_brief *d = NULL;
    struct vh_event_put_result res;
    struct vh_event_put ev;
    struct vh_partner p;
    char session[64];
    size_t n = 7;

    new_partner(f->st, "Lonely", &p);
    uniq(session, sizeof(session), "lonely");
    fill_put(&ev, p.id, session, T0);
    put(f->st, &ev, &res);
    assert_true(res.created);
    assert_int_equal(res.deliveries, 0);
    assert_int_equal(vh_store_event_deliveries(f->st, res.event_id, &d, &n, NULL), 0);
    assert_int_equal(n, 0);
    vh_free(d);
}

static void event_put_repeat_is_idempotent(void **state)
{
    struct fixture *f = *state;
    struct vh_event_put_result first, again;
    struct vh_endpoint late;
    struct vh_event_put ev;
    struct fanout fo;
    char session[64];
    int64_t events, deliveries;

    make_fanout(f->st, "Repeat", &fo);
    uniq(session, sizeof(session), "rep");
    fill_put(&ev, fo.p.id, session, T0);
    put(f->st, &ev, &first);
    events = count(f->st, "events");
    deliveries = count(f->st, "deliveries");

    /* A repeat, even with another body and time, and after the fan-out changed. */
    new_endpoint(f->st, fo.p.id, "late", true, &late);
    ev.accepted_ms = T0 + 60000;
    ev.body = "{}";
    ev.body_len = 2;
    memset(&again, 0x5a, sizeof(again));
    put(f->st, &ev, &again);
    assert_false(again.created);
    assert_string_equal(again.event_id, first.event_id);
    assert_int_equal(again.deliveries, 3);
    assert_int_equal(count(f->st, "events"), events);
    assert_int_equal(count(f->st, "deliveries"), deliveries);
}

static void event_put_other_partners_session_conflicts(void **state)
{
    struct fixture *f = *state;
    struct vh_error err = VH_ERROR_INIT;
    struct vh_event_put_result res, other;
    struct vh_event_put ev;
    struct vh_partner a, b;
    char session[64], want[160];
    int64_t events;

    new_partner(f->st, "First", &a);
    new_partner(f->st, "Second", &b);
    uniq(session, sizeof(session), "owned");
    fill_put(&ev, a.id, session, T0);
    put(f->st, &ev, &res);
    events = count(f->st, "events");

    ev.partner_id = b.id;
    memset(&other, 0x5a, sizeof(other));
    assert_int_equal(vh_store_event_put(f->st, &ev, &other, &err), VH_ECONFLICT);
    snprintf(want, sizeof(want), "session_id '%s' belongs to another partner", session);
    assert_string_equal(err.msg, want);
    assert_int_equal((unsigned char)other.event_id[0], 0x5a); /* untouched on failure */
    assert_int_equal(count(f->st, "events"), events);
}

static void event_put_rejects_bad_input(void **state)
{
    struct fixture *f = *state;
    struct vh_error err = VH_ERROR_INIT;
    struct vh_event_put_result res;
    struct vh_event_put ev;
    struct vh_partner p;
    char session[64];
    int64_t events = count(f->st, "events");

    new_partner(f->st, "Picky", &p);
    uniq(session, sizeof(session), "bad");
    fill_put(&ev, p.id, "has space", T0);
    assert_int_equal(vh_store_event_put(f->st, &ev, &res, NULL), VH_EINVAL);
    fill_put(&ev, p.id, session, T0);
    ev.call_status = VH_CALL_BUSY; /* a status without a call */
    assert_int_equal(vh_store_event_put(f->st, &ev, &res, NULL), VH_EINVAL);
    fill_put(&ev, p.id, session, T0);
    ev.call_id = "c1";
    ev.call_status = 99;
    assert_int_equal(vh_store_event_put(f->st, &ev, &res, NULL), VH_EINVAL);
    fill_put(&ev, p.id, session, T0);
    ev.body_len = 0;
    assert_int_equal(vh_store_event_put(f->st, &ev, &res, NULL), VH_EINVAL);
    fill_put(&ev, "00000000-0000-4000-8000-000000000000", session, T0);
    assert_int_equal(vh_store_event_put(f->st, &ev, &res, &err), VH_ENOTFOUND);
    assert_string_equal(err.msg, "partner '00000000-0000-4000-8000-000000000000' not found");
    assert_int_equal(count(f->st, "events"), events);
}

struct racer {
    struct vh_store *st;
    const struct vh_event_put *ev;
    pthread_barrier_t *go;
    struct vh_event_put_result res;
    int rc;
    char msg[VH_ERROR_MSG_MAX];
};

static void *race(void *arg)
{
    struct racer *r = arg;
    struct vh_error err = VH_ERROR_INIT;

    pthread_barrier_wait(r->go);
    r->rc = vh_store_event_put(r->st, r->ev, &r->res, &err);
    memcpy(r->msg, err.msg, sizeof(r->msg));
    return NULL;
}

#define RACERS 20

/* Starts RACERS threads, each putting evs[i] (or evs[0] when `same`), and joins them. */
static void run_racers(struct vh_store *st, const struct vh_event_put *evs, bool same,
                       struct racer *r)
{
    pthread_barrier_t go;
    pthread_t t[RACERS];
    int i;

    assert_int_equal(pthread_barrier_init(&go, NULL, RACERS), 0);
    for (i = 0; i < RACERS; i++) {
        r[i].st = st;
        r[i].ev = same ? &evs[0] : &evs[i];
        r[i].go = &go;
        assert_int_equal(pthread_create(&t[i], NULL, race, &r[i]), 0);
    }
    for (i = 0; i < RACERS; i++)
        assert_int_equal(pthread_join(t[i], NULL), 0);
    pthread_barrier_destroy(&go);
    for (i = 0; i < RACERS; i++)
        if (r[i].rc != 0)
            fail_msg("racer %d: %d %s", i, r[i].rc, r[i].msg);
}

static void event_put_same_session_concurrently(void **state)
{
    struct fixture *f = *state;
    struct racer r[RACERS];
    struct vh_event_put ev;
    struct fanout fo;
    char session[64];
    int64_t events, deliveries;
    int i, created = 0;

    make_fanout(f->st, "Racing", &fo);
    events = count(f->st, "events");
    deliveries = count(f->st, "deliveries");
    uniq(session, sizeof(session), "race");
    fill_put(&ev, fo.p.id, session, T0);
    memset(r, 0, sizeof(r));
    run_racers(f->st, &ev, true, r);
    for (i = 0; i < RACERS; i++) {
        created += r[i].res.created;
        assert_string_equal(r[i].res.event_id, r[0].res.event_id);
        assert_int_equal(r[i].res.deliveries, 3);
    }
    assert_int_equal(created, 1);
    assert_int_equal(count(f->st, "events"), events + 1);
    assert_int_equal(count(f->st, "deliveries"), deliveries + 3);
}

static void event_put_distinct_sessions_concurrently(void **state)
{
    struct fixture *f = *state;
    char sessions[RACERS][64];
    struct vh_event_put evs[RACERS];
    struct racer r[RACERS];
    struct vh_call_rec rec;
    struct fanout fo;
    int64_t events, deliveries;
    int i;

    make_fanout(f->st, "Crowd", &fo);
    events = count(f->st, "events");
    deliveries = count(f->st, "deliveries");
    for (i = 0; i < RACERS; i++) {
        uniq(sessions[i], sizeof(sessions[i]), "crowd");
        fill_put(&evs[i], fo.p.id, sessions[i], T0 + i);
    }
    memset(r, 0, sizeof(r));
    run_racers(f->st, evs, false, r);
    for (i = 0; i < RACERS; i++) {
        assert_true(r[i].res.created);
        assert_int_equal(r[i].res.deliveries, 3);
        memset(&rec, 0, sizeof(rec));
        assert_int_equal(vh_store_call_get(f->st, fo.p.id, sessions[i], &rec, NULL), 0);
        assert_string_equal(rec.event_id, r[i].res.event_id);
        vh_call_rec_release(&rec);
    }
    assert_int_equal(count(f->st, "events"), events + RACERS);
    assert_int_equal(count(f->st, "deliveries"), deliveries + 3 * RACERS);
}

static void disabling_an_endpoint_cancels_its_pending_deliveries(void **state)
{
    struct fixture *f = *state;
    struct vh_event_put_result e1, e2;
    struct vh_event_put ev;
    struct vh_endpoint ep;
    struct fanout fo;
    char s1[64], s2[64], st[16];

    make_fanout(f->st, "Disable", &fo);
    uniq(s1, sizeof(s1), "dis");
    fill_put(&ev, fo.p.id, s1, T0);
    put(f->st, &ev, &e1);

    ep = fo.on[1];
    ep.enabled = false;
    ep.updated_ms = T0 + 1000;
    assert_int_equal(vh_store_endpoint_update(f->st, &ep, NULL), 0);
    delivery_state(f->st, e1.event_id, fo.on[1].id, st, sizeof(st));
    assert_string_equal(st, "canceled");
    delivery_state(f->st, e1.event_id, fo.on[0].id, st, sizeof(st));
    assert_string_equal(st, "pending");
    delivery_state(f->st, e1.event_id, fo.on[2].id, st, sizeof(st));
    assert_string_equal(st, "pending");

    /* New events skip it; enabling it again does not revive what was canceled. */
    uniq(s2, sizeof(s2), "dis");
    fill_put(&ev, fo.p.id, s2, T0 + 2000);
    put(f->st, &ev, &e2);
    assert_int_equal(e2.deliveries, 2);
    ep.enabled = true;
    assert_int_equal(vh_store_endpoint_update(f->st, &ep, NULL), 0);
    delivery_state(f->st, e1.event_id, fo.on[1].id, st, sizeof(st));
    assert_string_equal(st, "canceled");
}

static void deleting_an_endpoint_cancels_its_pending_deliveries(void **state)
{
    struct fixture *f = *state;
    struct vh_event_put_result e1, e2;
    struct vh_endpoint got, *list = NULL;
    struct vh_delivery_brief *d = NULL;
    struct vh_event_put ev;
    struct fanout fo;
    char s1[64], s2[64], st[16];
    size_t n = 0, i;

    make_fanout(f->st, "Delete", &fo);
    uniq(s1, sizeof(s1), "del");
    fill_put(&ev, fo.p.id, s1, T0);
    put(f->st, &ev, &e1);

    assert_int_equal(vh_store_endpoint_delete(f->st, fo.p.id, fo.on[0].id, T0 + 1000, NULL), 0);
    delivery_state(f->st, e1.event_id, fo.on[0].id, st, sizeof(st));
    assert_string_equal(st, "canceled");
    delivery_state(f->st, e1.event_id, fo.on[2].id, st, sizeof(st));
    assert_string_equal(st, "pending");

    assert_int_equal(vh_store_endpoint_get(f->st, fo.p.id, fo.on[0].id, &got, NULL), VH_ENOTFOUND);
    assert_int_equal(vh_store_endpoint_list(f->st, fo.p.id, &list, &n, NULL), 0);
    assert_int_equal(n, 3);
    for (i = 0; i < n; i++)
        assert_string_not_equal(list[i].id, fo.on[0].id);
    vh_free(list);

    uniq(s2, sizeof(s2), "del");
    fill_put(&ev, fo.p.id, s2, T0 + 2000);
    put(f->st, &ev, &e2);
    assert_int_equal(e2.deliveries, 2);
    assert_int_equal(vh_store_event_deliveries(f->st, e2.event_id, &d, &n, NULL), 0);
    for (i = 0; i < n; i++)
        assert_string_not_equal(d[i].endpoint_id, fo.on[0].id);
    vh_free(d);
}

/* ---- calls --------------------------------------------------------------------------------- */

static void call_get_by_call_id_and_session_id(void **state)
{
    struct fixture *f = *state;
    struct vh_error err = VH_ERROR_INIT;
    struct vh_event_put_result res, plain;
    struct vh_call_rec rec;
    struct vh_event_put ev;
    struct vh_partner a, b;
    char session[64], call[64], other[64], want[160];

    new_partner(f->st, "Caller", &a);
    new_partner(f->st, "Stranger", &b);
    uniq(session, sizeof(session), "sess");
    uniq(call, sizeof(call), "call");
    fill_put(&ev, a.id, session, T0 + 7);
    ev.call_id = call;
    ev.call_status = VH_CALL_NO_ANSWER;
    ev.recording_key = "recordings/2026/03/15/x.wav";
    put(f->st, &ev, &res);

    memset(&rec, 0, sizeof(rec));
    assert_int_equal(vh_store_call_get(f->st, a.id, call, &rec, &err), 0);
    assert_string_equal(rec.event_id, res.event_id);
    assert_string_equal(rec.partner_id, a.id);
    assert_string_equal(rec.session_id, session);
    assert_string_equal(rec.call_id, call);
    assert_int_equal(rec.call_status, VH_CALL_NO_ANSWER);
    assert_int_equal(rec.accepted_ms, T0 + 7);
    assert_non_null(rec.recording_key);
    assert_string_equal(rec.recording_key, "recordings/2026/03/15/x.wav");
    assert_int_equal(rec.body.len, sizeof(body_text) - 1);
    assert_memory_equal(rec.body.data, body_text, rec.body.len);
    vh_call_rec_release(&rec);
    vh_call_rec_release(&rec); /* releasing twice is harmless */

    memset(&rec, 0, sizeof(rec));
    assert_int_equal(vh_store_call_get(f->st, a.id, session, &rec, &err), 0);
    assert_string_equal(rec.event_id, res.event_id);
    vh_call_rec_release(&rec);

    /* Another partner cannot tell it from a missing call. */
    memset(&rec, 0, sizeof(rec));
    vh_error_clear(&err);
    assert_int_equal(vh_store_call_get(f->st, b.id, call, &rec, &err), VH_ENOTFOUND);
    snprintf(want, sizeof(want), "call '%s' not found", call);
    assert_string_equal(err.msg, want);
    assert_int_equal(vh_store_call_get(f->st, b.id, session, &rec, NULL), VH_ENOTFOUND);
    uniq(other, sizeof(other), "none");
    assert_int_equal(vh_store_call_get(f->st, a.id, other, &rec, NULL), VH_ENOTFOUND);
    assert_null(rec.recording_key);

    /* A session that was not a phone call. */
    uniq(other, sizeof(other), "web");
    fill_put(&ev, a.id, other, T0 + 8);
    put(f->st, &ev, &plain);
    memset(&rec, 0, sizeof(rec));
    assert_int_equal(vh_store_call_get(f->st, a.id, other, &rec, NULL), 0);
    assert_string_equal(rec.call_id, "");
    assert_int_equal(rec.call_status, 0);
    assert_null(rec.recording_key);
    vh_call_rec_release(&rec);
}

static void free_calls(struct vh_call_rec *arr, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        vh_call_rec_release(&arr[i]);
    vh_free(arr);
}

static void call_list_pages_newest_first_with_filter(void **state)
{
    struct fixture *f = *state;
    static const int statuses[] = {VH_CALL_COMPLETED, VH_CALL_FAILED, VH_CALL_COMPLETED,
                                   VH_CALL_BUSY, 0};
    char sessions[25][64], calls[25][64];
    struct vh_event_put_result res;
    struct vh_call_rec *arr = NULL;
    struct vh_event_put ev;
    struct vh_partner p, q;
    size_t n = 0, total = 0, i;
    int completed = 0;

    new_partner(f->st, "Lister", &p);
    new_partner(f->st, "Quiet", &q);
    /* Inserted out of time order: the list sorts by accepted time, not insertion. */
    for (i = 0; i < 25; i++) {
        size_t k = (i * 7) % 25; /* a permutation of 0..24 */

        uniq(sessions[k], sizeof(sessions[k]), "list");
        fill_put(&ev, p.id, sessions[k], T0 + (int64_t)k * 1000);
        if (statuses[k % 5]) {
            uniq(calls[k], sizeof(calls[k]), "c");
            ev.call_id = calls[k];
            ev.call_status = statuses[k % 5];
        }
        put(f->st, &ev, &res);
    }
    for (i = 0; i < 25; i++)
        completed += statuses[i % 5] == VH_CALL_COMPLETED;

    assert_int_equal(vh_store_call_list(f->st, p.id, 10, 0, 0, &arr, &n, &total, NULL), 0);
    assert_int_equal(n, 10);
    assert_int_equal(total, 25);
    for (i = 0; i < n; i++) {
        assert_string_equal(arr[i].session_id, sessions[24 - i]);
        assert_int_equal(arr[i].accepted_ms, T0 + (int64_t)(24 - i) * 1000);
        assert_int_equal(arr[i].body.len, sizeof(body_text) - 1);
    }
    free_calls(arr, n);

    assert_int_equal(vh_store_call_list(f->st, p.id, 10, 20, 0, &arr, &n, &total, NULL), 0);
    assert_int_equal(n, 5);
    assert_int_equal(total, 25);
    assert_string_equal(arr[0].session_id, sessions[4]);
    assert_string_equal(arr[4].session_id, sessions[0]);
    free_calls(arr, n);

    assert_int_equal(vh_store_call_list(f->st, p.id, 10, 25, 0, &arr, &n, NULL, NULL), 0);
    assert_int_equal(n, 0);
    free_calls(arr, n);

    assert_int_equal(
        vh_store_call_list(f->st, p.id, 100, 0, VH_CALL_COMPLETED, &arr, &n, &total, NULL), 0);
    assert_int_equal(n, (size_t)completed);
    assert_int_equal(total, (size_t)completed);
    for (i = 0; i < n; i++) {
        assert_int_equal(arr[i].call_status, VH_CALL_COMPLETED);
        if (i > 0)
            assert_true(arr[i - 1].accepted_ms > arr[i].accepted_ms);
    }
    free_calls(arr, n);

    assert_int_equal(vh_store_call_list(f->st, q.id, 10, 0, 0, &arr, &n, &total, NULL), 0);
    assert_int_equal(n, 0);
    assert_int_equal(total, 0);
    free_calls(arr, n);

    assert_int_equal(vh_store_call_list(f->st, p.id, 0, 0, 0, &arr, &n, NULL, NULL), VH_EINVAL);
    assert_int_equal(vh_store_call_list(f->st, p.id, 101, 0, 0, &arr, &n, NULL, NULL), VH_EINVAL);
    assert_int_equal(vh_store_call_list(f->st, p.id, 10, 0, 42, &arr, &n, NULL, NULL), VH_EINVAL);
}

/* ---- a steady stream of puts: many group commits ------------------------------------------ */

#define STREAMERS   16  /* threads putting at once */
#define STREAM_PUTS 200 /* puts per thread */
#define OWNED       8   /* sessions another partner owns, put before the stream */

static const char no_partner[] = "00000000-0000-4000-8000-000000000000";

/* A fresh put's first answer, which its repeats must get back. */
struct first_answer {
    char session[VH_ID_MAX + 1];
    int partner; /* an index into stream->partners */
    struct vh_event_put_result res;
};

struct stream {
    const char *run;                   /* a prefix unique to the run */
    const struct vh_partner *partners; /* two partners, fanout[k] enabled endpoints each */
    const size_t *fanout;
    char (*owned)[64]; /* OWNED sessions of a third partner */
};

struct streamer {
    struct vh_store *st;
    const struct stream *in;
    pthread_barrier_t *go;
    int id;
    struct first_answer fresh[STREAM_PUTS]; /* the fresh puts' answers, in put order */
    size_t n_fresh;
    size_t deliveries;     /* the sum over fresh[] */
    size_t per_partner[2]; /* fresh puts per partner */
    int puts[4];           /* puts of each kind, by enum stream_kind */
    int failures;
    char first_failure[2 * VH_ERROR_MSG_MAX];
};

enum stream_kind {
    STREAM_FRESH,    /* a new session: created, one delivery per enabled endpoint */
    STREAM_REPEAT,   /* a session this thread put before: its first answer, created=false */
    STREAM_CONFLICT, /* a session another partner owns: VH_ECONFLICT */
    STREAM_UNKNOWN,  /* a partner that does not exist: VH_ENOTFOUND */
};

/* Spreads the failing puts so that most groups hold some, between successes. */
static enum stream_kind stream_kind_of(int t, int i, size_t n_fresh)
{
    switch ((i * 7 + t * 3) % 10) {
    case 0:
        return STREAM_CONFLICT;
    case 1:
        return STREAM_UNKNOWN;
    case 2:
    case 3:
        return n_fresh > 0 ? STREAM_REPEAT : STREAM_FRESH;
    default:
        return STREAM_FRESH;
    }
}

/* Records what went wrong (the first failure in full; cmocka asserts are for the main thread). */
static void stream_fail(struct streamer *s, int i, int rc, const struct vh_error *err,
                        const char *what)
{
    if (s->failures++ == 0)
        snprintf(s->first_failure, sizeof(s->first_failure), "put %d: %s (rc %d, '%s')", i, what,
                 rc, err->msg);
}

/* One put of the given kind, checked against what the contract promises for it. */
static void stream_put(struct streamer *s, int i, enum stream_kind kind)
{
    const struct stream *in = s->in;
    struct vh_error err = VH_ERROR_INIT;
    struct vh_event_put_result res;
    const struct first_answer *first = NULL;
    struct first_answer *fresh;
    struct vh_event_put ev;
    char session[VH_ID_MAX + 1], want[VH_ERROR_MSG_MAX];
    int p = (s->id + i) % 2, rc;

    switch (kind) {
    case STREAM_REPEAT:
        first = &s->fresh[(size_t)i * 13 % s->n_fresh];
        p = first->partner;
        snprintf(session, sizeof(session), "%s", first->session);
        break;
    case STREAM_CONFLICT:
        snprintf(session, sizeof(session), "%s", in->owned[(s->id + i) % OWNED]);
        break;
    default:
        snprintf(session, sizeof(session), "%s-t%02d-%03d", in->run, s->id, i);
        break;
    }
    fill_put(&ev, kind == STREAM_UNKNOWN ? no_partner : in->partners[p].id, session, T0 + i);
    memset(&res, 0x5a, sizeof(res));
    rc = vh_store_event_put(s->st, &ev, &res, &err);
    s->puts[kind]++;

    switch (kind) {
    case STREAM_FRESH:
        if (rc != 0 || !res.created || res.deliveries != in->fanout[p] ||
            strlen(res.event_id) != VH_UUID_LEN) {
            stream_fail(s, i, rc, &err, "fresh: want created with its fan-out");
            return;
        }
        fresh = &s->fresh[s->n_fresh++];
        snprintf(fresh->session, sizeof(fresh->session), "%s", session);
        fresh->partner = p;
        fresh->res = res;
        s->deliveries += res.deliveries;
        s->per_partner[p]++;
        return;
    case STREAM_REPEAT:
        if (rc != 0 || res.created || strcmp(res.event_id, first->res.event_id) != 0 ||
            res.deliveries != first->res.deliveries)
            stream_fail(s, i, rc, &err, "repeat: want the first answer, not created");
        return;
    case STREAM_CONFLICT:
        snprintf(want, sizeof(want), "session_id '%s' belongs to another partner", session);
        if (rc != VH_ECONFLICT || strcmp(err.msg, want) != 0 ||
            (unsigned char)res.event_id[0] != 0x5a)
            stream_fail(s, i, rc, &err, "conflict: want VH_ECONFLICT naming the session");
        return;
    case STREAM_UNKNOWN:
        snprintf(want, sizeof(want), "partner '%s' not found", no_partner);
        if (rc != VH_ENOTFOUND || strcmp(err.msg, want) != 0 ||
            (unsigned char)res.event_id[0] != 0x5a)
            stream_fail(s, i, rc, &err, "unknown partner: want VH_ENOTFOUND");
        return;
    }
}

static void *stream_run(void *arg)
{
    struct streamer *s = arg;
    int i;

    pthread_barrier_wait(s->go);
    for (i = 0; i < STREAM_PUTS; i++)
        stream_put(s, i, stream_kind_of(s->id, i, s->n_fresh));
    return NULL;
}

static int compare_ids(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/*
 * Puts keep arriving while groups commit: STREAMERS threads, started together, each put
 * STREAM_PUTS events in a row, so groups form, fill and hand over their lead many times,
 * with failing events (a conflict, an unknown partner) among successes and repeats in most
 * of them. Every caller must get its own event's answer, and exactly the successes stay.
 */
static void concurrent_puts_in_many_groups_each_get_their_own_answer(void **state)
{
    struct fixture *f = *state;
    struct vh_delivery_brief *d = NULL;
    struct vh_call_rec *arr = NULL;
    struct vh_event_put_result res;
    struct vh_endpoint ep[4];
    struct vh_partner partners[2], owner;
    struct vh_call_rec rec;
    struct vh_event_put ev;
    struct streamer *s;
    struct stream in;
    pthread_barrier_t go;
    pthread_t t[STREAMERS];
    char run[64], owned[OWNED][64];
    const char **ids;
    size_t fanout[2] = {1, 2}, fresh = 0, deliveries = 0, per_partner[2] = {0, 0}, total = 0;
    size_t n = 0, m = 0, i, j;
    int64_t events, before_deliveries;
    int k, puts[4] = {0, 0, 0, 0};

    new_partner(f->st, "Stream one", &partners[0]);
    new_partner(f->st, "Stream two", &partners[1]);
    new_partner(f->st, "Stream owner", &owner);
    new_endpoint(f->st, partners[0].id, "only", true, &ep[0]);
    new_endpoint(f->st, partners[1].id, "first", true, &ep[1]);
    new_endpoint(f->st, partners[1].id, "off", false, &ep[2]);
    new_endpoint(f->st, partners[1].id, "second", true, &ep[3]);
    for (k = 0; k < OWNED; k++) {
        uniq(owned[k], sizeof(owned[k]), "owned");
        fill_put(&ev, owner.id, owned[k], T0);
        put(f->st, &ev, &res);
    }
    uniq(run, sizeof(run), "stream");
    in.run = run;
    in.partners = partners;
    in.fanout = fanout;
    in.owned = owned;
    events = count(f->st, "events");
    before_deliveries = count(f->st, "deliveries");

    s = calloc(STREAMERS, sizeof(*s));
    assert_non_null(s);
    assert_int_equal(pthread_barrier_init(&go, NULL, STREAMERS), 0);
    for (k = 0; k < STREAMERS; k++) {
        s[k].st = f->st;
        s[k].in = &in;
        s[k].go = &go;
        s[k].id = k;
        assert_int_equal(pthread_create(&t[k], NULL, stream_run, &s[k]), 0);
    }
    for (k = 0; k < STREAMERS; k++)
        assert_int_equal(pthread_join(t[k], NULL), 0);
    pthread_barrier_destroy(&go);

    for (k = 0; k < STREAMERS; k++) {
        if (s[k].failures)
            fail_msg("thread %d: %d of %d puts answered wrong; first: %s", k, s[k].failures,
                     STREAM_PUTS, s[k].first_failure);
        fresh += s[k].n_fresh;
        deliveries += s[k].deliveries;
        for (j = 0; j < 2; j++)
            per_partner[j] += s[k].per_partner[j];
        for (j = 0; j < 4; j++)
            puts[j] += s[k].puts[j];
    }
    /* Every kind was put often enough to share groups with the others. */
    assert_true(puts[STREAM_CONFLICT] >= STREAMERS * STREAM_PUTS / 20);
    assert_true(puts[STREAM_UNKNOWN] >= STREAMERS * STREAM_PUTS / 20);
    assert_true(puts[STREAM_REPEAT] >= STREAMERS * STREAM_PUTS / 10);

    /* Exactly the fresh successes stay, each under its own session with its own id. */
    assert_int_equal(count(f->st, "events"), events + (int64_t)fresh);
    assert_int_equal(count(f->st, "deliveries"), before_deliveries + (int64_t)deliveries);
    for (j = 0; j < 2; j++) {
        assert_int_equal(vh_store_call_list(f->st, partners[j].id, 1, 0, 0, &arr, &n, &total, NULL),
                         0);
        free_calls(arr, n);
        assert_int_equal(total, per_partner[j]);
    }
    assert_int_equal(vh_store_call_list(f->st, owner.id, 1, 0, 0, &arr, &n, &total, NULL), 0);
    free_calls(arr, n);
    assert_int_equal(total, OWNED);
    ids = calloc(fresh, sizeof(*ids));
    assert_non_null(ids);
    n = 0;
    for (k = 0; k < STREAMERS; k++) {
        for (i = 0; i < s[k].n_fresh; i++) {
            const struct first_answer *a = &s[k].fresh[i];

            memset(&rec, 0, sizeof(rec));
            assert_int_equal(
                vh_store_call_get(f->st, partners[a->partner].id, a->session, &rec, NULL), 0);
            assert_string_equal(rec.event_id, a->res.event_id);
            vh_call_rec_release(&rec);
            assert_int_equal(vh_store_event_deliveries(f->st, a->res.event_id, &d, &m, NULL), 0);
            vh_free(d);
            assert_int_equal(m, a->res.deliveries);
            ids[n++] = a->res.event_id;
        }
    }
    qsort(ids, n, sizeof(*ids), compare_ids);
    for (i = 1; i < n; i++)
        assert_string_not_equal(ids[i - 1], ids[i]);
    free(ids);
    free(s);
}

/* ---- puts that do not wait (vh_store_event_put_async) ------------------------------------- */

/* One async put: it owns what the put borrows, and keeps what its `done` saw. */
struct async_put {
    struct vh_event_put ev;
    char session[64];
    sem_t *answered;  /* posted after each `done` */
    atomic_int calls; /* how many times `done` ran */
    int rc;
    bool has_res;
    bool created;
    size_t deliveries;
    char event_id[VH_UUID_LEN + 1];
    char msg[VH_ERROR_MSG_MAX];
};

/*
 * The async puts of one test, on the heap: a test that fails leaks them, so that a `done`
 * which still comes (from the teardown's close) writes into live memory.
 */
struct async_set {
    sem_t answered; /* posted after every `done` of the set */
    size_t n;
    struct async_put op[];
};

static struct async_set *async_set_new(size_t n)
{
    struct async_set *s = calloc(1, sizeof(*s) + n * sizeof(s->op[0]));
    size_t i;

    assert_non_null(s);
    assert_int_equal(sem_init(&s->answered, 0, 0), 0);
    s->n = n;
    for (i = 0; i < n; i++) {
        atomic_init(&s->op[i].calls, 0);
        s->op[i].answered = &s->answered;
    }
    return s;
}

static void async_set_free(struct async_set *s)
{
    sem_destroy(&s->answered);
    free(s);
}

/* Prepares `a` to put `session` (copied) for `partner_id` (borrowed). */
static void async_fill(struct async_put *a, const char *partner_id, const char *session,
                       int64_t accepted_ms)
{
    snprintf(a->session, sizeof(a->session), "%s", session);
    fill_put(&a->ev, partner_id, a->session, accepted_ms);
}

/* The vh_store_put_done_fn of every async put here: records what it got, counts, posts. */
static void async_done(void *ud, int rc, const struct vh_event_put_result *res,
                       const struct vh_error *err)
{
    struct async_put *a = ud;

    a->rc = rc;
    a->has_res = res != NULL;
    if (res) {
        a->created = res->created;
        a->deliveries = res->deliveries;
        snprintf(a->event_id, sizeof(a->event_id), "%s", res->event_id);
    }
    snprintf(a->msg, sizeof(a->msg), "%s", err ? err->msg : "");
    atomic_fetch_add(&a->calls, 1);
    sem_post(a->answered);
}

/* Posts `a`: the store must take it, and report nothing through `err` then. */
static void post(struct vh_store *st, struct async_put *a)
{
    struct vh_error err = VH_ERROR_INIT;
    int rc = vh_store_event_put_async(st, &a->ev, async_done, a, &err);

    if (rc != 0)
        fail_msg("post %s: rc %d, '%s'", a->session, rc, err.msg);
    assert_int_equal(err.code, 0);
    assert_string_equal(err.msg, "");
}

/* Waits (up to WAIT_S) for one more `done` of the set. */
static void await_answer(struct fixture *f, struct async_set *s, const char *what)
{
    if (!wait_sem(&s->answered)) {
        f->st = NULL; /* abandoned: closing it would wait for the lost answer forever */
        fail_msg("%s: no answer within %d s", what, WAIT_S);
    }
}

/* Posts `a` alone and waits for its `done`. */
static void post_and_wait(struct fixture *f, struct async_set *s, struct async_put *a)
{
    post(f->st, a);
    await_answer(f, s, a->session);
    assert_int_equal(atomic_load(&a->calls), 1);
}

/* Closes the store, which waits for every `done`, and opens it again. */
static void reopen(struct fixture *f)
{
    vh_store_close(f->st);
    f->st = NULL;
    assert_int_equal(open_store(f), 0);
}

/* The store holds `a`'s event under its session, with the id `done` gave and `a`'s body. */
static void assert_stored(struct vh_store *st, const struct async_put *a)
{
    struct vh_error err = VH_ERROR_INIT;
    struct vh_call_rec rec;

    memset(&rec, 0, sizeof(rec));
    if (vh_store_call_get(st, a->ev.partner_id, a->session, &rec, &err) < 0)
        fail_msg("call get %s: %s", a->session, err.msg);
    assert_string_equal(rec.event_id, a->event_id);
    assert_string_equal(rec.partner_id, a->ev.partner_id);
    assert_string_equal(rec.session_id, a->session);
    assert_int_equal(rec.accepted_ms, a->ev.accepted_ms);
    assert_int_equal(rec.body.len, a->ev.body_len);
    assert_memory_equal(rec.body.data, a->ev.body, rec.body.len);
    vh_call_rec_release(&rec);
}

static void event_put_async_new_event_is_answered_once(void **state)
{
    struct fixture *f = *state;
    struct vh_delivery_brief *d = NULL;
    struct async_set *s = async_set_new(1);
    struct async_put *a = &s->op[0];
    struct fanout fo;
    char session[64];
    int64_t events, deliveries;
    size_t n = 0;

    make_fanout(f->st, "Async", &fo);
    events = count(f->st, "events");
    deliveries = count(f->st, "deliveries");
    uniq(session, sizeof(session), "async");
    async_fill(a, fo.p.id, session, T0 + 5);
    post_and_wait(f, s, a);
    if (a->rc != 0)
        fail_msg("done: rc %d, '%s'", a->rc, a->msg);
    assert_true(a->has_res);
    assert_true(a->created);
    assert_int_equal(a->deliveries, 3);
    assert_int_equal(strlen(a->event_id), VH_UUID_LEN);

    /* Answered means committed: a reader sees it at once, with its deliveries. */
    assert_stored(f->st, a);
    assert_int_equal(count(f->st, "events"), events + 1);
    assert_int_equal(count(f->st, "deliveries"), deliveries + 3);
    assert_int_equal(vh_store_event_deliveries(f->st, a->event_id, &d, &n, NULL), 0);
    vh_free(d);
    assert_int_equal(n, 3);

    /* Once closed, no `done` can come any more: it ran exactly once. The event stays. */
    reopen(f);
    assert_int_equal(atomic_load(&a->calls), 1);
    assert_stored(f->st, a);
    async_set_free(s);
}

static void event_put_async_repeat_gets_the_first_answer(void **state)
{
    struct fixture *f = *state;
    struct async_set *s = async_set_new(3);
    struct async_put *rep = &s->op[0], *fresh = &s->op[1], *again = &s->op[2];
    struct vh_event_put_result first, sync_again;
    struct vh_event_put ev;
    struct fanout fo;
    char s1[64], s2[64];
    int64_t events, deliveries;
    size_t i;

    make_fanout(f->st, "Async repeat", &fo);
    events = count(f->st, "events");
    deliveries = count(f->st, "deliveries");

    /* Async after sync: the first answer, even with another body and time. */
    uniq(s1, sizeof(s1), "arep");
    fill_put(&ev, fo.p.id, s1, T0);
    put(f->st, &ev, &first);
    assert_true(first.created);
    async_fill(rep, fo.p.id, s1, T0 + 60000);
    rep->ev.body = "{}";
    rep->ev.body_len = 2;
    post_and_wait(f, s, rep);
    if (rep->rc != 0)
        fail_msg("async repeat: rc %d, '%s'", rep->rc, rep->msg);
    assert_true(rep->has_res);
    assert_false(rep->created);
    assert_string_equal(rep->event_id, first.event_id);
    assert_int_equal(rep->deliveries, 3);

    /* Sync after async, then async again: the async put's answer each time. */
    uniq(s2, sizeof(s2), "arep");
    async_fill(fresh, fo.p.id, s2, T0 + 1);
    post_and_wait(f, s, fresh);
    assert_int_equal(fresh->rc, 0);
    assert_true(fresh->created);
    fill_put(&ev, fo.p.id, s2, T0 + 120000);
    ev.body = "{\"other\":1}";
    ev.body_len = strlen(ev.body);
    memset(&sync_again, 0x5a, sizeof(sync_again));
    put(f->st, &ev, &sync_again);
    assert_false(sync_again.created);
    assert_string_equal(sync_again.event_id, fresh->event_id);
    assert_int_equal(sync_again.deliveries, 3);
    async_fill(again, fo.p.id, s2, T0 + 180000);
    post_and_wait(f, s, again);
    assert_int_equal(again->rc, 0);
    assert_false(again->created);
    assert_string_equal(again->event_id, fresh->event_id);
    assert_int_equal(again->deliveries, 3);

    /* Two events, and the first body of each. */
    assert_int_equal(count(f->st, "events"), events + 2);
    assert_int_equal(count(f->st, "deliveries"), deliveries + 6);
    assert_stored(f->st, fresh);
    reopen(f);
    for (i = 0; i < s->n; i++)
        assert_int_equal(atomic_load(&s->op[i].calls), 1);
    assert_stored(f->st, fresh);
    async_set_free(s);
}

static void event_put_async_failures_come_through_done(void **state)
{
    struct fixture *f = *state;
    struct async_set *s = async_set_new(2);
    struct async_put *conflict = &s->op[0], *unknown = &s->op[1];
    struct vh_call_rec *arr = NULL;
    struct vh_event_put_result res;
    struct vh_call_rec rec;
    struct vh_endpoint hook;
    struct vh_event_put ev;
    struct vh_partner a, b;
    char owned[64], orphan[64], want[160];
    int64_t events, deliveries;
    size_t n = 0, total = 7, i;

    new_partner(f->st, "Async owner", &a);
    new_partner(f->st, "Async other", &b);
    new_endpoint(f->st, b.id, "hook", true, &hook); /* a wrongly stored event would fan out */
    uniq(owned, sizeof(owned), "aown");
    fill_put(&ev, a.id, owned, T0);
    put(f->st, &ev, &res);
    events = count(f->st, "events");
    deliveries = count(f->st, "deliveries");

    /* Another partner's session: the message vh_store_event_put gives, through `done`. */
    async_fill(conflict, b.id, owned, T0 + 1);
    post_and_wait(f, s, conflict);
    assert_int_equal(conflict->rc, VH_ECONFLICT);
    assert_false(conflict->has_res);
    snprintf(want, sizeof(want), "session_id '%s' belongs to another partner", owned);
    assert_string_equal(conflict->msg, want);

    /* A partner that does not exist. */
    uniq(orphan, sizeof(orphan), "aorphan");
    async_fill(unknown, no_partner, orphan, T0 + 2);
    post_and_wait(f, s, unknown);
    assert_int_equal(unknown->rc, VH_ENOTFOUND);
    assert_false(unknown->has_res);
    snprintf(want, sizeof(want), "partner '%s' not found", no_partner);
    assert_string_equal(unknown->msg, want);

    /* Nothing stored: the owner keeps its event, the other partner has none. */
    assert_int_equal(count(f->st, "events"), events);
    assert_int_equal(count(f->st, "deliveries"), deliveries);
    memset(&rec, 0, sizeof(rec));
    assert_int_equal(vh_store_call_get(f->st, a.id, owned, &rec, NULL), 0);
    assert_string_equal(rec.event_id, res.event_id);
    vh_call_rec_release(&rec);
    assert_int_equal(vh_store_call_list(f->st, b.id, 10, 0, 0, &arr, &n, &total, NULL), 0);
    free_calls(arr, n);
    assert_int_equal(total, 0);
    reopen(f);
    for (i = 0; i < s->n; i++)
        assert_int_equal(atomic_load(&s->op[i].calls), 1);
    assert_int_equal(count(f->st, "events"), events);
    async_set_free(s);
}

/* Posts a bad `a`: it must be refused at once with `want`, naming `field` (as sync does). */
static void assert_refused(struct vh_store *st, struct async_put *a, int want, const char *field)
{
    struct vh_error err = VH_ERROR_INIT, sync_err = VH_ERROR_INIT;
    struct vh_event_put_result res;
    int rc;

    rc = vh_store_event_put_async(st, &a->ev, async_done, a, &err);
    if (rc != want)
        fail_msg("post %s: rc %d ('%s'), want %d", a->session, rc, err.msg, want);
    assert_int_equal(err.code, want);
    if (!strstr(err.msg, field))
        fail_msg("post %s: '%s' does not name %s", a->session, err.msg, field);
    /* The same refusal as vh_store_event_put's. */
    assert_int_equal(vh_store_event_put(st, &a->ev, &res, &sync_err), want);
    assert_string_equal(err.msg, sync_err.msg);
}

static void event_put_async_refuses_bad_input_at_once(void **state)
{
    struct fixture *f = *state;
    struct vh_error err = VH_ERROR_INIT;
    struct async_set *s = async_set_new(6);
    struct async_put *a = s->op;
    struct vh_partner p;
    char session[64];
    int64_t events = count(f->st, "events");
    size_t i;

    new_partner(f->st, "Async picky", &p);
    uniq(session, sizeof(session), "abad");
    async_fill(&a[0], p.id, "has space", T0);
    assert_refused(f->st, &a[0], VH_EINVAL, "session_id");
    async_fill(&a[1], p.id, session, T0);
    a[1].ev.body_len = 0;
    assert_refused(f->st, &a[1], VH_EINVAL, "body");
    async_fill(&a[2], p.id, session, T0);
    a[2].ev.body = NULL;
    assert_refused(f->st, &a[2], VH_EINVAL, "body");
    async_fill(&a[3], p.id, session, T0);
    a[3].ev.call_status = VH_CALL_BUSY; /* a status without a call */
    assert_refused(f->st, &a[3], VH_EINVAL, "call status");
    async_fill(&a[4], "not a partner id", session, T0);
    assert_refused(f->st, &a[4], VH_ENOTFOUND, "partner");

    /* Missing arguments: no callback, no event, no store. */
    async_fill(&a[5], p.id, session, T0);
    assert_int_equal(vh_store_event_put_async(f->st, &a[5].ev, NULL, &a[5], &err), VH_EINVAL);
    assert_int_equal(err.code, VH_EINVAL);
    vh_error_clear(&err);
    assert_int_equal(vh_store_event_put_async(f->st, NULL, async_done, &a[5], &err), VH_EINVAL);
    assert_int_equal(err.code, VH_EINVAL);
    vh_error_clear(&err);
    assert_int_equal(vh_store_event_put_async(NULL, &a[5].ev, async_done, &a[5], &err), VH_EINVAL);
    assert_int_equal(err.code, VH_EINVAL);

    /* Refused means never answered: once closed, no `done` has run, and nothing is stored. */
    reopen(f);
    for (i = 0; i < s->n; i++)
        assert_int_equal(atomic_load(&s->op[i].calls), 0);
    assert_false(posted_within(&s->answered, 0));
    assert_int_equal(count(f->st, "events"), events);
    async_set_free(s);
}

#define POSTERS      8  /* threads posting at once */
#define POSTER_PUTS  50 /* async puts per thread */
#define POSTER_SYNC  5  /* ... and a sync put after every POSTER_SYNC of them */
#define POSTER_SYNCS (POSTER_PUTS / POSTER_SYNC)

struct poster {
    struct vh_store *st;
    struct async_put *op; /* POSTER_PUTS, this thread's */
    const char *partner_id;
    const char *run;
    int id;
    pthread_barrier_t *go;
    sem_t *finished; /* posted when the thread is done posting */
    char sync_session[POSTER_SYNCS][64];
    struct vh_event_put_result sync_res[POSTER_SYNCS];
    int failures;
    char first_failure[2 * VH_ERROR_MSG_MAX];
};

static void poster_fail(struct poster *p, const char *what, int i, int rc, const char *msg)
{
    if (p->failures++ == 0)
        snprintf(p->first_failure, sizeof(p->first_failure), "%s %d: rc %d, '%s'", what, i, rc,
                 msg);
}

static void *poster_run(void *arg)
{
    struct poster *p = arg;
    struct vh_error err = VH_ERROR_INIT;
    struct vh_event_put ev;
    int i, j, rc;

    pthread_barrier_wait(p->go);
    for (i = 0, j = 0; i < POSTER_PUTS; i++) {
        vh_error_clear(&err);
        rc = vh_store_event_put_async(p->st, &p->op[i].ev, async_done, &p->op[i], &err);
        if (rc != 0)
            poster_fail(p, "post", i, rc, err.msg);
        if (i % POSTER_SYNC != POSTER_SYNC - 1)
            continue;
        snprintf(p->sync_session[j], sizeof(p->sync_session[j]), "%s-s%02d-%03d", p->run, p->id, j);
        fill_put(&ev, p->partner_id, p->sync_session[j], T0 + i);
        vh_error_clear(&err);
        rc = vh_store_event_put(p->st, &ev, &p->sync_res[j], &err);
        if (rc != 0 || !p->sync_res[j].created)
            poster_fail(p, "sync put", j, rc, err.msg);
        j++;
    }
    sem_post(p->finished);
    return NULL;
}

/*
 * POSTERS threads post POSTER_PUTS async puts each, with sync puts among them, so that the
 * runner's groups and the sync callers' groups take each other's puts. Every `done` runs
 * exactly once with its own event's answer, and every event is stored once.
 */
static void event_put_async_from_many_threads_each_answered_once(void **state)
{
    struct fixture *f = *state;
    struct async_set *s = async_set_new(POSTERS * POSTER_PUTS);
    struct vh_call_rec *arr = NULL;
    struct poster *p;
    struct fanout fo;
    pthread_barrier_t go;
    pthread_t t[POSTERS];
    sem_t finished;
    char run[64];
    const char **ids;
    const size_t all = POSTERS * (POSTER_PUTS + POSTER_SYNCS);
    size_t n = 0, total = 0, i, j;
    int64_t events, deliveries;
    int k;

    make_fanout(f->st, "Async crowd", &fo);
    events = count(f->st, "events");
    deliveries = count(f->st, "deliveries");
    uniq(run, sizeof(run), "acrowd");
    for (i = 0; i < s->n; i++) {
        char session[64];

        assert_true(snprintf(session, sizeof(session), "%s-a%02zu-%03zu", run, i / POSTER_PUTS,
                             i % POSTER_PUTS) < (int)sizeof(session));
        async_fill(&s->op[i], fo.p.id, session, T0 + (int64_t)i);
    }
    p = calloc(POSTERS, sizeof(*p));
    assert_non_null(p);
    assert_int_equal(sem_init(&finished, 0, 0), 0);
    assert_int_equal(pthread_barrier_init(&go, NULL, POSTERS), 0);
    for (k = 0; k < POSTERS; k++) {
        p[k].st = f->st;
        p[k].op = &s->op[(size_t)k * POSTER_PUTS];
        p[k].partner_id = fo.p.id;
        p[k].run = run;
        p[k].id = k;
        p[k].go = &go;
        p[k].finished = &finished;
        assert_int_equal(pthread_create(&t[k], NULL, poster_run, &p[k]), 0);
    }
    for (k = 0; k < POSTERS; k++)
        if (!wait_sem(&finished)) {
            f->st = NULL; /* abandoned, with the thread stuck in it */
            fail_msg("a posting thread did not finish within %d s", WAIT_S);
        }
    for (k = 0; k < POSTERS; k++)
        assert_int_equal(pthread_join(t[k], NULL), 0);
    pthread_barrier_destroy(&go);
    sem_destroy(&finished);
    for (k = 0; k < POSTERS; k++)
        if (p[k].failures)
            fail_msg("thread %d: %d failures; first: %s", k, p[k].failures, p[k].first_failure);
    for (i = 0; i < s->n; i++)
        if (!wait_sem(&s->answered)) {
            f->st = NULL; /* abandoned: closing it would wait for the lost answers */
            fail_msg("%zu of %zu async puts answered within %d s", i, s->n, WAIT_S);
        }

    ids = calloc(all, sizeof(*ids));
    assert_non_null(ids);
    for (i = 0; i < s->n; i++) {
        const struct async_put *a = &s->op[i];

        if (atomic_load(&a->calls) != 1 || a->rc != 0 || !a->has_res || !a->created ||
            a->deliveries != 3)
            fail_msg("put %s: %d calls, rc %d, '%s', created %d, %zu deliveries", a->session,
                     atomic_load(&a->calls), a->rc, a->msg, a->created, a->deliveries);
        ids[n++] = a->event_id;
    }
    for (k = 0; k < POSTERS; k++) {
        for (j = 0; j < POSTER_SYNCS; j++) {
            assert_int_equal(p[k].sync_res[j].deliveries, 3);
            ids[n++] = p[k].sync_res[j].event_id;
        }
    }
    qsort(ids, n, sizeof(*ids), compare_ids);
    for (i = 1; i < n; i++)
        assert_string_not_equal(ids[i - 1], ids[i]);
    free(ids);

    /* Every event once; and after the close no `done` came twice. */
    assert_int_equal(count(f->st, "events"), events + (int64_t)all);
    assert_int_equal(count(f->st, "deliveries"), deliveries + 3 * (int64_t)all);
    assert_int_equal(vh_store_call_list(f->st, fo.p.id, 1, 0, 0, &arr, &n, &total, NULL), 0);
    free_calls(arr, n);
    assert_int_equal(total, all);
    reopen(f);
    for (i = 0; i < s->n; i++) {
        assert_int_equal(atomic_load(&s->op[i].calls), 1);
        assert_stored(f->st, &s->op[i]);
    }
    assert_false(posted_within(&s->answered, 0));
    free(p);
    async_set_free(s);
}

/* One of the threads putting the same session, sync (even ids) or async (odd ones). */
struct mixed_racer {
    struct vh_store *st;
    const struct vh_event_put *ev; /* sync */
    struct async_put *a;           /* async */
    pthread_barrier_t *go;
    sem_t *finished;
    struct vh_event_put_result res;
    int rc;
    char msg[VH_ERROR_MSG_MAX];
};

static void *mixed_race(void *arg)
{
    struct mixed_racer *r = arg;
    struct vh_error err = VH_ERROR_INIT;

    pthread_barrier_wait(r->go);
    if (r->a)
        r->rc = vh_store_event_put_async(r->st, &r->a->ev, async_done, r->a, &err);
    else
        r->rc = vh_store_event_put(r->st, r->ev, &r->res, &err);
    memcpy(r->msg, err.msg, sizeof(r->msg));
    sem_post(r->finished);
    return NULL;
}

/* Sync and async puts of one session at once: one of them creates it, all get its id. */
static void event_put_async_and_sync_of_one_session_agree(void **state)
{
    struct fixture *f = *state;
    struct async_set *s = async_set_new(RACERS / 2);
    struct mixed_racer r[RACERS];
    const char *ids[RACERS];
    struct vh_event_put ev;
    struct fanout fo;
    pthread_barrier_t go;
    pthread_t t[RACERS];
    sem_t finished;
    char session[64];
    int64_t events, deliveries;
    int i, created = 0;

    make_fanout(f->st, "Async racing", &fo);
    events = count(f->st, "events");
    deliveries = count(f->st, "deliveries");
    uniq(session, sizeof(session), "amix");
    fill_put(&ev, fo.p.id, session, T0);
    memset(r, 0, sizeof(r));
    assert_int_equal(sem_init(&finished, 0, 0), 0);
    assert_int_equal(pthread_barrier_init(&go, NULL, RACERS), 0);
    for (i = 0; i < RACERS; i++) {
        r[i].st = f->st;
        r[i].ev = &ev;
        if (i % 2) {
            r[i].a = &s->op[i / 2];
            async_fill(r[i].a, fo.p.id, session, T0 + i);
        }
        r[i].go = &go;
        r[i].finished = &finished;
        assert_int_equal(pthread_create(&t[i], NULL, mixed_race, &r[i]), 0);
    }
    for (i = 0; i < RACERS; i++)
        if (!wait_sem(&finished)) {
            f->st = NULL; /* abandoned, with the racer stuck in it */
            fail_msg("a racer did not finish within %d s", WAIT_S);
        }
    for (i = 0; i < RACERS; i++)
        assert_int_equal(pthread_join(t[i], NULL), 0);
    pthread_barrier_destroy(&go);
    sem_destroy(&finished);
    for (i = 0; i < RACERS; i++)
        if (r[i].rc != 0)
            fail_msg("racer %d: rc %d, '%s'", i, r[i].rc, r[i].msg);
    for (i = 0; i < RACERS / 2; i++)
        await_answer(f, s, "a racing async put");

    for (i = 0; i < RACERS; i++) {
        const struct async_put *a = r[i].a;

        if (a) {
            assert_int_equal(atomic_load(&a->calls), 1);
            assert_int_equal(a->rc, 0);
            assert_int_equal(a->deliveries, 3);
            created += a->created;
            ids[i] = a->event_id;
        } else {
            assert_int_equal(r[i].res.deliveries, 3);
            created += r[i].res.created;
            ids[i] = r[i].res.event_id;
        }
        assert_string_equal(ids[i], ids[0]);
    }
    assert_int_equal(created, 1);
    assert_int_equal(count(f->st, "events"), events + 1);
    assert_int_equal(count(f->st, "deliveries"), deliveries + 3);
    reopen(f);
    for (i = 0; i < RACERS / 2; i++)
        assert_int_equal(atomic_load(&s->op[i].calls), 1);
    async_set_free(s);
}

#define CLOSE_PUTS 64

/* vh_store_close right after posting: it answers every put before it returns. */
static void store_close_answers_every_posted_put(void **state)
{
    struct fixture *f = *state;
    struct async_set *s = async_set_new(CLOSE_PUTS);
    struct vh_call_rec rec;
    struct vh_partner p;
    struct vh_endpoint ep;
    char run[64], session[64];
    bool sqlite = strcmp(vh_store_backend(f->st), "sqlite") == 0;
    int64_t events, committed = 0;
    size_t i;

    new_partner(f->st, "Async closing", &p);
    new_endpoint(f->st, p.id, "hook", true, &ep);
    events = count(f->st, "events");
    uniq(run, sizeof(run), "aclose");
    for (i = 0; i < s->n; i++) {
        assert_true(snprintf(session, sizeof(session), "%s-%03zu", run, i) < (int)sizeof(session));
        async_fill(&s->op[i], p.id, session, T0 + (int64_t)i);
    }
    for (i = 0; i < s->n; i++)
        post(f->st, &s->op[i]);
    vh_store_close(f->st);
    f->st = NULL;

    /* No waiting: close has returned, so every answer is in. */
    for (i = 0; i < s->n; i++) {
        const struct async_put *a = &s->op[i];

        assert_int_equal(atomic_load(&a->calls), 1);
        assert_true(posted_within(&s->answered, 0));
        if (a->rc == 0) {
            assert_true(a->has_res);
            assert_true(a->created);
            assert_int_equal(a->deliveries, 1);
            committed++;
        } else {
            assert_true(a->rc < 0);
            assert_false(a->has_res);
            assert_string_not_equal(a->msg, "");
        }
        if (sqlite && a->rc != 0) /* SQLite commits what was queued before it closes */
            fail_msg("put %s: rc %d, '%s'", a->session, a->rc, a->msg);
    }
    assert_false(posted_within(&s->answered, 0));

    /* What was answered with success is durable; nothing else was stored. */
    assert_int_equal(open_store(f), 0);
    assert_int_equal(count(f->st, "events"), events + committed);
    for (i = 0; i < s->n; i++) {
        if (s->op[i].rc == 0) {
            assert_stored(f->st, &s->op[i]);
        } else {
            memset(&rec, 0, sizeof(rec));
            assert_int_equal(vh_store_call_get(f->st, p.id, s->op[i].session, &rec, NULL),
                             VH_ENOTFOUND);
        }
    }
    async_set_free(s);
}

/* ---- counts ---------------------------------------------------------------------------------- */

static void count_accepts_only_known_tables(void **state)
{
    static const char *const known[] = {"partners", "api_keys",   "endpoints",
                                        "events",   "deliveries", "attempts"};
    static const char *const unknown[] = {
        "",        "sqlite_schema",  "events; DROP TABLE events", "Events",
        "events ", "schema_version", "pg_catalog.pg_tables"};
    struct fixture *f = *state;
    struct vh_error err = VH_ERROR_INIT;
    int64_t n;
    size_t i;

    for (i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        assert_true(count(f->st, known[i]) >= 0);
    for (i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++) {
        n = 12345;
        vh_error_clear(&err);
        assert_int_equal(vh_store_count(f->st, unknown[i], &n, &err), VH_EINVAL);
        assert_int_equal(n, 12345);
        assert_non_null(strstr(err.msg, "unknown table"));
    }
    assert_int_equal(vh_store_count(f->st, NULL, &n, NULL), VH_EINVAL);
    assert_true(count(f->st, "events") >= 0); /* still there */
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(reopen_keeps_data_and_schema),
        T(backend_is_named),
        T(partner_create_list_get),
        T(partner_rejects_bad_input),
        T(partner_keys_rotate),
        T(failed_writes_leave_nothing),
        T(endpoint_create_get_list_update_delete),
        T(endpoint_label_conflict),
        T(endpoint_limit_and_failed_insert_leaves_nothing),
        T(endpoint_of_another_partner_is_not_found),
        T(endpoint_create_for_unknown_partner),
        T(endpoint_rejects_bad_fields),
        T(event_put_fans_out_to_enabled_endpoints),
        T(event_put_without_endpoints),
        T(event_put_repeat_is_idempotent),
        T(event_put_other_partners_session_conflicts),
        T(event_put_rejects_bad_input),
        T(event_put_same_session_concurrently),
        T(event_put_distinct_sessions_concurrently),
        T(disabling_an_endpoint_cancels_its_pending_deliveries),
        T(deleting_an_endpoint_cancels_its_pending_deliveries),
        T(call_get_by_call_id_and_session_id),
        T(call_list_pages_newest_first_with_filter),
        T(concurrent_puts_in_many_groups_each_get_their_own_answer),
        T(event_put_async_new_event_is_answered_once),
        T(event_put_async_repeat_gets_the_first_answer),
        T(event_put_async_failures_come_through_done),
        T(event_put_async_refuses_bad_input_at_once),
        T(event_put_async_from_many_threads_each_answered_once),
        T(event_put_async_and_sync_of_one_session_agree),
        T(store_close_answers_every_posted_put),
        T(count_accepts_only_known_tables),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
