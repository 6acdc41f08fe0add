/*
 * vh_receiver_handle (src/receive/handle.c) on a real inbox, no workers started: the order
 * of checks, every refusal (and that it stores nothing), the jobs a stored session gets, and
 * the configuration checks of vh_receiver_new.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include <vocohook/vocohook.h>
#include <vocohook/receive.h>

#include "receive/receive_int.h"
#include "core/banned.h"

#define SECRET  "whsec_unit_test_secret"
#define SECRET2 "whsec_rotated"
#define NOW     INT64_C(1773585128000) /* 2026-03-15T14:32:08.000Z */

static const char body_fmt[] =
    "{\"event\":\"session.completed\",\"timestamp\":\"2026-03-15T14:32:08.000Z\",\"data\":{"
    "\"session_id\":\"%s\",\"agent_id\":\"a1\",\"agent_name\":\"Agent\",\"duration_seconds\":"
    "3,\"credits_used\":0.5,\"transcript\":[],\"recording_url\":%s,\"latency\":{\"min_ms\":0,"
    "\"max_ms\":0,\"avg_ms\":0},\"call\":null%s}}";

struct fx {
    char dir[64];
    char db[96];
    char rec[96];
    struct vh_receiver *r;
    char body[2048];
    char ts[VH_TIME_LEN + 1];
    char sig[VH_SIG_LEN + 1];
    struct vh_receive_req req;
    struct vh_receive_resp resp;
};

static int setup(void **state)
{
    const char *secrets[] = {SECRET, SECRET2};
    struct vh_receiver_config cfg;
    struct vh_error err = VH_ERROR_INIT;
    struct fx *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "/tmp/vh-handle-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->db, sizeof(f->db), "%s/inbox.db", f->dir);
    snprintf(f->rec, sizeof(f->rec), "%s/rec", f->dir);
    assert_int_equal(mkdir(f->rec, 0700), 0);
    vh_receiver_config_init(&cfg);
    cfg.db_path = f->db;
    cfg.secrets = secrets;
    cfg.n_secrets = 2;
    cfg.recordings_dir = f->rec;
    cfg.exec_cmd = "true";
    cfg.forward_url = "http://127.0.0.1:9/hook";
    if (vh_receiver_new(&cfg, &f->r, &err) != 0)
        fail_msg("vh_receiver_new: %s", err.msg);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    char cmd[128];

    vh_receiver_free(f->r);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

/* A signed POST /webhook of the body for `sid`, with `url` (JSON text) and `extra` members. */
static void make(struct fx *f, const char *sid, const char *url, const char *extra,
                 const char *secret, int64_t signed_ms)
{
    snprintf(f->body, sizeof(f->body), body_fmt, sid, url, extra);
    assert_int_equal(vh_time_format(signed_ms, f->ts), 0);
    assert_int_equal(
        vh_sign(secret, strlen(secret), f->ts, VH_TIME_LEN, f->body, strlen(f->body), f->sig, NULL),
        0);
    memset(&f->req, 0, sizeof(f->req));
    f->req.method = "POST";
    f->req.path = "/webhook";
    f->req.timestamp = f->ts;
    f->req.signature = f->sig;
    f->req.body = f->body;
    f->req.body_len = strlen(f->body);
    f->req.now_ms = NOW;
}

static void handle(struct fx *f, int status)
{
    assert_int_equal(vh_receiver_handle(f->r, &f->req, &f->resp), 0);
    assert_int_equal(f->resp.status, status);
    assert_int_equal(strlen(f->resp.body), f->resp.body_len);
    assert_null(strchr(f->resp.body, '\n'));
}

static int64_t stored(struct fx *f)
{
    struct vh_inbox *ib;
    int64_t n = -1;

    assert_int_equal(vh_inbox_open(f->db, 0, &ib, NULL), 0);
    assert_int_equal(vh_inbox_count(ib, &n, NULL), 0);
    vh_inbox_close(ib);
    return n;
}

static void stores_once(void **state)
{
    struct fx *f = *state;
    struct vh_inbox_session s;
    struct vh_inbox *ib;
    int64_t jobs = 0;

    make(f, "s1",
         "\"https://b.s3.amazonaws.com/r.wav?X-Amz-Date=20260315T143208Z&"
         "X-Amz-Expires=3600\"",
         ",\"variables\":{\"x\":1}", SECRET, NOW - 1000);
    f->req.webhook_id = "0b6c7e0e-8f3a-4a8e-9d55-2f0b7f1d2c3a";
    handle(f, 200);
    assert_int_equal(f->resp.outcome, VH_RECEIVE_STORED);
    assert_string_equal(f->resp.session_id, "s1");
    assert_string_equal(f->resp.body, "{\"ok\":true,\"session_id\":\"s1\",\"duplicate\":false}");
    handle(f, 200);
    assert_int_equal(f->resp.outcome, VH_RECEIVE_DUPLICATE);
    assert_string_equal(f->resp.body, "{\"ok\":true,\"session_id\":\"s1\",\"duplicate\":true}");
    /* The rotated secret is accepted too; the duplicate is still one row. */
    make(f, "s1", "null", "", SECRET2, NOW);
    handle(f, 200);
    assert_int_equal(f->resp.outcome, VH_RECEIVE_DUPLICATE);
    assert_int_equal(stored(f), 1);

    assert_int_equal(vh_receiver_pending_jobs(f->r, &jobs, NULL), 0);
    assert_int_equal(jobs, 3);
    assert_int_equal(vh_inbox_open(f->db, 0, &ib, NULL), 0);
    assert_int_equal(vh_inbox_get(ib, "s1", &s, NULL), 0);
    assert_int_equal(s.n_jobs, 3);
    assert_int_equal(s.jobs[0].kind, VH_JOB_DOWNLOAD);
    assert_int_equal(s.jobs[0].deadline_ms, NOW + 3600 * 1000);
    assert_int_equal(s.jobs[1].kind, VH_JOB_EXEC);
    assert_int_equal(s.jobs[2].kind, VH_JOB_FORWARD);
    assert_string_equal(s.webhook_id, "0b6c7e0e-8f3a-4a8e-9d55-2f0b7f1d2c3a");
    assert_int_equal(s.received_ms, NOW);
    assert_int_equal(s.event_ms, NOW);
    assert_true(strstr(s.body.data, "\"variables\":{\"x\":1}") != NULL);
    vh_inbox_session_release(&s);
    vh_inbox_close(ib);
}

static void unauthorized(struct fx *f, enum vh_verify_status want, const char *reason)
{
    char expect[64];

    handle(f, 401);
    assert_int_equal(f->resp.outcome, VH_RECEIVE_UNAUTHORIZED);
    assert_int_equal(f->resp.verify_status, want);
    snprintf(expect, sizeof(expect), "\"reason\":\"%s\"", reason);
    assert_non_null(strstr(f->resp.body, expect));
}

static void refusals_store_nothing(void **state)
{
    struct fx *f = *state;
    char bad[VH_SIG_LEN + 1];

    make(f, "s2", "null", "", "whsec_other", NOW);
    unauthorized(f, VH_VERIFY_MISMATCH, "mismatch");
    make(f, "s2", "null", "", SECRET, NOW - 300001);
    unauthorized(f, VH_VERIFY_TOO_OLD, "too_old");
    make(f, "s2", "null", "", SECRET, NOW + 300001);
    unauthorized(f, VH_VERIFY_TOO_NEW, "too_new");
    make(f, "s2", "null", "", SECRET, NOW);
    f->req.timestamp = NULL;
    unauthorized(f, VH_VERIFY_BAD_TIMESTAMP, "bad_timestamp");
    make(f, "s2", "null", "", SECRET, NOW);
    f->req.signature = NULL;
    unauthorized(f, VH_VERIFY_BAD_SIGNATURE, "bad_signature");
    make(f, "s2", "null", "", SECRET, NOW);
    memcpy(bad, f->sig, sizeof(bad));
    bad[10] = bad[10] == 'a' ? 'b' : 'a';
    f->req.signature = bad;
    unauthorized(f, VH_VERIFY_MISMATCH, "mismatch");
    make(f, "s2", "null", "", SECRET, NOW);
    f->body[5] = 'X'; /* tampered after signing */
    unauthorized(f, VH_VERIFY_MISMATCH, "mismatch");

    /* Signed, but not the contract: 400 naming the path. */
    make(f, "s2", "42", "", SECRET, NOW);
    handle(f, 400);
    assert_int_equal(f->resp.outcome, VH_RECEIVE_INVALID);
    assert_non_null(strstr(f->resp.body, "\"error\":\"invalid_payload\""));
    assert_non_null(strstr(f->resp.body, "data.recording_url"));
    make(f, "bad id!", "null", "", SECRET, NOW);
    handle(f, 400);

    make(f, "s2", "null", "", SECRET, NOW);
    f->req.body_too_large = true;
    handle(f, 413);
    make(f, "s2", "null", "", SECRET, NOW);
    f->req.method = "GET";
    handle(f, 405);
    f->req.path = "/healthz";
    handle(f, 200);
    assert_int_equal(f->resp.outcome, VH_RECEIVE_HEALTH);
    f->req.method = "POST";
    f->req.path = "/webhooks";
    handle(f, 404);
    f->req.path = NULL;
    handle(f, 404);
    assert_int_equal(stored(f), 0);
}

static void config_checks(void **state)
{
    struct fx *f = *state;
    const char *one[] = {SECRET};
    const char *empty[] = {""};
    struct vh_receiver_config cfg;
    struct vh_receiver *r = NULL;
    struct vh_error err = VH_ERROR_INIT;
    char path[128];

    vh_receiver_config_init(&cfg);
    assert_int_equal(vh_receiver_new(&cfg, &r, NULL), VH_EINVAL); /* no db */
    snprintf(path, sizeof(path), "%s/other.db", f->dir);
    cfg.db_path = path;
    assert_int_equal(vh_receiver_new(&cfg, &r, NULL), VH_EINVAL); /* no secret */
    cfg.secrets = empty;
    cfg.n_secrets = 1;
    assert_int_equal(vh_receiver_new(&cfg, &r, NULL), VH_EINVAL);
    cfg.secrets = one;
    cfg.workers = 0;
    assert_int_equal(vh_receiver_new(&cfg, &r, NULL), VH_EINVAL);
    cfg.workers = 1;
    cfg.forward_url = "ftp://x";
    assert_int_equal(vh_receiver_new(&cfg, &r, NULL), VH_EINVAL);
    cfg.forward_url = NULL;
    cfg.recordings_dir = "/nonexistent/dir";
    assert_int_equal(vh_receiver_new(&cfg, &r, &err), VH_EIO);
    assert_non_null(strstr(err.msg, "recordings directory"));
    assert_null(r);
    cfg.recordings_dir = f->rec;
    assert_int_equal(vh_receiver_new(&cfg, &r, NULL), 0);
    assert_int_equal(vh_receiver_start(r, NULL), 0);
    assert_int_equal(vh_receiver_start(r, NULL), VH_ESTATE);
    vh_receiver_free(r);
    vh_receiver_free(NULL);
}

static void stray_temp_files_removed(void **state)
{
    struct fx *f = *state;
    const char *one[] = {SECRET};
    struct vh_receiver_config cfg;
    struct vh_receiver *r = NULL;
    char tmp[160], keep[160];
    FILE *fp;

    snprintf(tmp, sizeof(tmp), "%s/.vh-s9.wav.part", f->rec);
    snprintf(keep, sizeof(keep), "%s/s8.wav", f->rec);
    fp = fopen(tmp, "w");
    assert_non_null(fp);
    fclose(fp);
    fp = fopen(keep, "w");
    assert_non_null(fp);
    fclose(fp);
    vh_receiver_config_init(&cfg);
    cfg.db_path = f->db;
    cfg.secrets = one;
    cfg.n_secrets = 1;
    cfg.recordings_dir = f->rec;
    vh_receiver_free(f->r); /* one receiver per inbox */
    f->r = NULL;
    assert_int_equal(vh_receiver_new(&cfg, &r, NULL), 0);
    assert_int_not_equal(access(tmp, F_OK), 0);
    assert_int_equal(access(keep, F_OK), 0);
    vh_receiver_free(r);
}

static char last_line[4096];

static void keep_line(void *ud, enum vh_log_level level, const char *line)
{
    (void)ud;
    (void)level;
    snprintf(last_line, sizeof(last_line), "%s", line);
}

/* The log record's shape, and a line too long for the buffer cut to it, still closed. */
static void log_lines(void **state)
{
    const char *secrets[] = {SECRET};
    struct vh_receiver_config cfg;
    struct vh_receiver *r;
    struct fx *f = *state;
    char db[128], fields[3000];

    vh_receiver_config_init(&cfg);
    snprintf(db, sizeof(db), "%s/log.db", f->dir);
    cfg.db_path = db;
    cfg.secrets = secrets;
    cfg.n_secrets = 1;
    cfg.log = keep_line;
    assert_int_equal(vh_receiver_new(&cfg, &r, NULL), 0);

    vh__receiver_log(r, VH_LOG_WARN, "a message", ",\"k\":%d", 5);
    assert_int_equal(strlen(last_line), 7 + 24 + 11 + 4 + 9 + 9 + 1 + 6 + 1);
    assert_memory_equal(last_line, "{\"ts\":\"20", 9);
    assert_string_equal(last_line + 7 + 24, "\",\"level\":\"warn\",\"msg\":\"a message\",\"k\":5}");
    vh__receiver_log_fields(r, VH_LOG_INFO, "m", ",\"j\":1", 6);
    assert_string_equal(last_line + 7 + 24, "\",\"level\":\"info\",\"msg\":\"m\",\"j\":1}");

    memset(fields, 'x', sizeof(fields));
    vh__receiver_log_fields(r, VH_LOG_INFO, "m", fields, sizeof(fields));
    assert_int_equal(strlen(last_line), 2047); /* LOG_LINE_MAX - 1 */
    assert_int_equal(last_line[2045], 'x');
    assert_int_equal(last_line[2046], '}');
    vh__receiver_log(r, VH_LOG_INFO, "m", ",%.2999s", fields);
    assert_int_equal(strlen(last_line), 2047);
    assert_int_equal(last_line[2046], '}');
    vh_receiver_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(stores_once, setup, teardown),
        cmocka_unit_test_setup_teardown(refusals_store_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(config_checks, setup, teardown),
        cmocka_unit_test_setup_teardown(log_lines, setup, teardown),
        cmocka_unit_test_setup_teardown(stray_temp_files_removed, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
