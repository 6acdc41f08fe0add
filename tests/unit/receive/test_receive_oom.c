/*
 * Out-of-memory torture for the receiver (STYLE.md §10): vh_receiver_new, the request path
 * and the inbox's read side, each run with allocation 1, 2, ... N failing until a run needs
 * fewer than N. A run that hits its failure must fail cleanly (VH_ENOMEM, or a 500 answer),
 * store nothing half-done, and hold no memory afterwards; the last run must succeed. SQLite
 * and libcurl keep their own allocators for most of their work; what goes through ours
 * (every vh_ allocation, jansson's, libcurl's global state) is what this covers.
 */
#include <semaphore.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <vocohook/alloc.h>
#include <vocohook/receive.h>
#include <vocohook/sign.h>

#define SECRET "whsec_oom"
#define NOW    INT64_C(1773585128000)
#define RUNS   5000

#include "unit/oom.h"
#include "unit/wait.h"

static void arm(long n)
{
    alloc_count = 0;
    alloc_fail_at = n;
}

/* Whether the run just made reached its failing allocation. */
static bool hit(void)
{
    bool h = alloc_fail_at && alloc_count >= alloc_fail_at;

    alloc_fail_at = 0;
    return h;
}

static char dir[64], db[96], rec[96];
static char stored_sid[32]; /* a session handle_under_oom stored */

static void config(struct vh_receiver_config *cfg, const char **secrets)
{
    vh_receiver_config_init(cfg);
    cfg->db_path = db;
    cfg->secrets = secrets;
    cfg->n_secrets = 1;
    cfg->recordings_dir = rec;
    cfg->exec_cmd = "true";
}

static void new_under_oom(void **state)
{
    const char *secrets[] = {SECRET};
    struct vh_receiver_config cfg;
    struct vh_receiver *r;
    long n, base = live_blocks;
    int rc;

    (void)state;
    config(&cfg, secrets);
    for (n = 1; n < RUNS; n++) {
        r = NULL;
        arm(n);
        rc = vh_receiver_new(&cfg, &r, NULL);
        if (!hit()) {
            assert_int_equal(rc, 0);
            vh_receiver_free(r);
            assert_int_equal(live_blocks, base);
            return;
        }
        if (rc == 0)
            vh_receiver_free(r); /* a failure it could absorb */
        else
            assert_null(r);
        assert_int_equal(live_blocks, base);
    }
    fail_msg("vh_receiver_new never succeeded");
}

static bool is_stored(const char *sid)
{
    struct vh_inbox_session s;
    struct vh_inbox *ib;
    int rc;

    assert_int_equal(vh_inbox_open(db, 0, &ib, NULL), 0);
    rc = vh_inbox_get(ib, sid, &s, NULL);
    if (rc == 0)
        vh_inbox_session_release(&s);
    vh_inbox_close(ib);
    assert_true(rc == 0 || rc == VH_ENOTFOUND);
    return rc == 0;
}

/* vh_receiver_handle_async's completion: posts the semaphore the test waits on. */
static void on_answer(void *ud)
{
    sem_post(ud);
}

/* One request through vh_receiver_handle, or through the async form, awaited. */
static int handle_once(struct vh_receiver *r, sem_t *answered, const struct vh_receive_req *req,
                       struct vh_receive_resp *resp)
{
    int rc;

    if (!answered)
        return vh_receiver_handle(r, req, resp);
    rc = vh_receiver_handle_async(r, req, resp, on_answer, answered);
    if (rc != 1)
        return rc;
    assert_true(wait_sem(answered)); /* a lost answer fails here instead of hanging */
    return resp->status == 200 ? 0 : VH_ENOMEM;
}

/*
 * The request path, sync or async (`answered` set): a run that fails answers 500 (at once, or
 * through the callback), stores nothing half-done and holds no memory afterwards, but for
 * one block per session it stored: the inbox keeps each new session's key in memory until
 * it is merged (inbox.c). A first request, not counted, makes the inbox's arrays.
 */
static void handle_until_it_succeeds(const char *prefix, sem_t *answered)
{
    static const char fmt[] =
        "{\"event\":\"session.completed\",\"timestamp\":\"2026-03-15T14:32:08.000Z\",\"data\":{"
        "\"session_id\":\"%s\",\"agent_id\":\"a1\",\"agent_name\":\"Agent\","
        "\"duration_seconds\":3,\"credits_used\":0.5,\"transcript\":[{\"role\":\"bot\","
        "\"content\":\"Hi\",\"timestamp\":\"2026-03-15T14:30:01.000Z\"}],\"recording_url\":"
        "\"https://h/r.wav\",\"latency\":{\"min_ms\":0,\"max_ms\":0,\"avg_ms\":0},\"call\":null,"
        "\"variables\":{\"k\":[1,2]}}}";
    const char *secrets[] = {SECRET};
    struct vh_receiver_config cfg;
    struct vh_receiver *r = NULL;
    struct vh_receive_req req;
    struct vh_receive_resp resp;
    char body[1024], sid[32], ts[VH_TIME_LEN + 1], sig[VH_SIG_LEN + 1];
    long n, base = 0;
    int rc;

    config(&cfg, secrets);
    assert_int_equal(vh_receiver_new(&cfg, &r, NULL), 0);
    assert_int_equal(vh_time_format(NOW, ts), 0);
    for (n = 0; n < RUNS; n++) {
        snprintf(sid, sizeof(sid), "%s_%ld", prefix, n);
        snprintf(body, sizeof(body), fmt, sid);
        assert_int_equal(
            vh_sign(SECRET, strlen(SECRET), ts, VH_TIME_LEN, body, strlen(body), sig, NULL), 0);
        memset(&req, 0, sizeof(req));
        req.method = "POST";
        req.path = "/webhook";
        req.timestamp = ts;
        req.signature = sig;
        req.body = body;
        req.body_len = strlen(body);
        req.now_ms = NOW;
        if (n == 0) {
            assert_int_equal(handle_once(r, answered, &req, &resp), 0);
            assert_true(is_stored(sid));
            base = live_blocks;
            continue;
        }
        arm(n);
        rc = handle_once(r, answered, &req, &resp);
        if (!hit()) {
            assert_int_equal(rc, 0);
            assert_int_equal(resp.status, 200);
            assert_true(is_stored(sid));
            assert_int_equal(live_blocks, base + 1);
            snprintf(stored_sid, sizeof(stored_sid), "%s", sid);
            vh_receiver_free(r);
            return;
        }
        assert_true(resp.status == 200 || resp.status == 500);
        if (resp.status == 500)
            assert_int_equal(rc, VH_ENOMEM);
        assert_int_equal(is_stored(sid), resp.status == 200);
        if (resp.status == 200)
            base++;
        assert_int_equal(live_blocks, base);
    }
    fail_msg("the request path never succeeded");
}

static void handle_under_oom(void **state)
{
    (void)state;
    handle_until_it_succeeds("oom", NULL);
}

/* The same through vh_receiver_handle_async (the daemon's path). */
static void handle_async_under_oom(void **state)
{
    sem_t answered;

    (void)state;
    assert_int_equal(sem_init(&answered, 0, 0), 0);
    handle_until_it_succeeds("oom_async", &answered);
    sem_destroy(&answered);
}

static int count_cb(void *ud, const struct vh_inbox_session *s)
{
    (void)s;
    (*(int *)ud)++;
    return 0;
}

static void reads_under_oom(void **state)
{
    struct vh_inbox_filter f;
    struct vh_inbox_session s;
    struct vh_inbox *ib;
    long n, base;
    int rc, seen;

    (void)state;
    assert_int_equal(vh_inbox_open(db, 0, &ib, NULL), 0);
    memset(&f, 0, sizeof(f));
    f.with_body = true;
    base = live_blocks;
    for (n = 1; n < RUNS; n++) {
        seen = 0;
        arm(n);
        rc = vh_inbox_foreach(ib, &f, count_cb, &seen, NULL);
        if (!hit()) {
            assert_int_equal(rc, 0);
            assert_true(seen > 0);
            break;
        }
        assert_true(rc == 0 || rc == VH_ENOMEM);
        assert_int_equal(live_blocks, base);
    }
    for (n = 1; n < RUNS; n++) {
        arm(n);
        rc = vh_inbox_get(ib, stored_sid, &s, NULL);
        if (!hit()) {
            assert_int_equal(rc, 0);
            vh_inbox_session_release(&s);
            break;
        }
        if (rc == 0)
            vh_inbox_session_release(&s);
        else
            assert_int_equal(rc, VH_ENOMEM);
        assert_int_equal(live_blocks, base);
    }
    vh_inbox_close(ib);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(new_under_oom),
        cmocka_unit_test(handle_under_oom),
        cmocka_unit_test(handle_async_under_oom),
        cmocka_unit_test(reads_under_oom),
    };
    char cmd[128];
    int rc;

    assert_int_equal(vh_replace_allocator(t_malloc, t_realloc, t_free), 0);
    snprintf(dir, sizeof(dir), "/tmp/vh-recv-oom-XXXXXX");
    if (!mkdtemp(dir))
        return 1;
    snprintf(db, sizeof(db), "%s/inbox.db", dir);
    snprintf(rec, sizeof(rec), "%s/rec", dir);
    if (mkdir(rec, 0700) != 0)
        return 1;
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        rc = 1;
    return rc;
}
