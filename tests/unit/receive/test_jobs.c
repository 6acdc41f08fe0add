/*
 * The receiver's pure rules (src/receive/jobs.c): names, the job state machine, the backoff,
 * what each outcome leads to, URL expiry and recording file names.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include <vocohook/receive.h>

#include "receive/receive_int.h"
#include "core/banned.h"

#define T0 INT64_C(1773585128000) /* 2026-03-15T14:32:08.000Z */

static void names_round_trip(void **state)
{
    enum vh_job_state js;
    enum vh_recording_state rs;
    int i;

    (void)state;
    for (i = VH_JOB_PENDING; i <= VH_JOB_EXPIRED; i++) {
        const char *n = vh_job_state_name((enum vh_job_state)i);

        assert_int_equal(vh_job_state_parse(n, strlen(n), &js, NULL), 0);
        assert_int_equal(js, i);
    }
    for (i = VH_RECORDING_NONE; i <= VH_RECORDING_EXPIRED; i++) {
        const char *n = vh_recording_state_name((enum vh_recording_state)i);

        assert_int_equal(vh_recording_state_parse(n, strlen(n), &rs, NULL), 0);
        assert_int_equal(rs, i);
    }
    assert_string_equal(vh_job_state_name((enum vh_job_state)99), "unknown");
    assert_string_equal(vh_recording_state_name(VH_RECORDING_DOWNLOADING), "downloading");
    assert_string_equal(vh_job_kind_name(VH_JOB_FORWARD), "forward");
    assert_string_equal(vh_job_kind_name((enum vh_job_kind)0), "unknown");
    assert_int_equal(vh_job_state_parse("done ", 5, &js, NULL), VH_EINVAL);
    assert_int_equal(vh_job_state_parse("don", 3, &js, NULL), VH_EINVAL);
    assert_int_equal(vh_recording_state_parse(NULL, 0, &rs, NULL), VH_EINVAL);
}

static void transitions(void **state)
{
    struct vh_error err = VH_ERROR_INIT;
    int from, to, legal = 0;

    (void)state;
    for (from = VH_JOB_PENDING; from <= VH_JOB_EXPIRED; from++)
        for (to = VH_JOB_PENDING; to <= VH_JOB_EXPIRED; to++)
            if (vh_job_transition((enum vh_job_state)from, (enum vh_job_state)to, NULL) == 0)
                legal++;
    assert_int_equal(legal, 5);
    assert_int_equal(vh_job_transition(VH_JOB_PENDING, VH_JOB_RUNNING, NULL), 0);
    assert_int_equal(vh_job_transition(VH_JOB_RUNNING, VH_JOB_EXPIRED, NULL), 0);
    assert_int_equal(vh_job_transition(VH_JOB_DONE, VH_JOB_RUNNING, &err), VH_ESTATE);
    assert_string_equal(err.msg, "job: illegal transition 'done' -> 'running'");
}

static void backoff(void **state)
{
    (void)state;
    assert_int_equal(vh__backoff_ms(1), 1000);
    assert_int_equal(vh__backoff_ms(2), 2000);
    assert_int_equal(vh__backoff_ms(3), 4000);
    assert_int_equal(vh__backoff_ms(9), 256000);
    assert_int_equal(vh__backoff_ms(10), 300000);
    assert_int_equal(vh__backoff_ms(100000), 300000);
}

static struct vh__job_update decide(enum vh_job_kind kind, unsigned before, int64_t deadline,
                                    enum vh__outcome outcome, int status, int64_t now)
{
    struct vh__report rep;
    struct vh__job_update u;

    memset(&rep, 0, sizeof(rep));
    rep.outcome = outcome;
    rep.status = status;
    snprintf(rep.error, sizeof(rep.error), "%s", outcome == VH__OUTCOME_OK ? "" : "boom");
    vh__job_decide(kind, before, deadline, 3, &rep, now, &u);
    return u;
}

static void decide_downloads(void **state)
{
    const int64_t deadline = T0 + 86400000;
    struct vh__job_update u;

    (void)state;
    u = decide(VH_JOB_DOWNLOAD, 0, deadline, VH__OUTCOME_OK, 200, T0);
    assert_int_equal(u.state, VH_JOB_DONE);
    assert_int_equal(u.attempts, 1);
    assert_string_equal(u.error, "");

    u = decide(VH_JOB_DOWNLOAD, 0, deadline, VH__OUTCOME_RETRY, 500, T0);
    assert_int_equal(u.state, VH_JOB_PENDING);
    assert_int_equal(u.next_attempt_ms, T0 + 1000);
    assert_string_equal(u.error, "boom");
    assert_int_equal(u.status, 500);

    /* Downloads are not bounded by attempts, only by the URL's life. */
    u = decide(VH_JOB_DOWNLOAD, 50, deadline, VH__OUTCOME_RETRY, 503, T0);
    assert_int_equal(u.state, VH_JOB_PENDING);
    assert_int_equal(u.next_attempt_ms, T0 + VH__BACKOFF_MAX_MS);

    /* Close to the expiry: one last attempt just before it. */
    u = decide(VH_JOB_DOWNLOAD, 5, T0 + 10000, VH__OUTCOME_RETRY, 403, T0);
    assert_int_equal(u.state, VH_JOB_PENDING);
    assert_int_equal(u.next_attempt_ms, T0 + 10000 - VH__EXPIRY_MARGIN_MS);

    /* No room left, or past it: expired. */
    u = decide(VH_JOB_DOWNLOAD, 5, T0 + 500, VH__OUTCOME_RETRY, 403, T0);
    assert_int_equal(u.state, VH_JOB_EXPIRED);
    u = decide(VH_JOB_DOWNLOAD, 0, T0 - 1, VH__OUTCOME_RETRY, 403, T0);
    assert_int_equal(u.state, VH_JOB_EXPIRED);
    assert_int_equal(u.attempts, 1);

    u = decide(VH_JOB_DOWNLOAD, 2, deadline, VH__OUTCOME_FINAL, 0, T0);
    assert_int_equal(u.state, VH_JOB_FAILED);
    assert_int_equal(u.attempts, 3);

    u = decide(VH_JOB_DOWNLOAD, 2, deadline, VH__OUTCOME_EXPIRED, 403, T0);
    assert_int_equal(u.state, VH_JOB_EXPIRED);

    /* An interrupted attempt does not count and is due again at once. */
    u = decide(VH_JOB_DOWNLOAD, 2, deadline, VH__OUTCOME_INTERRUPTED, 0, T0);
    assert_int_equal(u.state, VH_JOB_PENDING);
    assert_int_equal(u.attempts, 2);
    assert_int_equal(u.next_attempt_ms, T0);
}

static void decide_actions(void **state)
{
    struct vh__job_update u;

    (void)state;
    u = decide(VH_JOB_EXEC, 0, VH_TIME_MAX_MS, VH__OUTCOME_RETRY, 3, T0);
    assert_int_equal(u.state, VH_JOB_PENDING);
    assert_int_equal(u.next_attempt_ms, T0 + 1000);
    u = decide(VH_JOB_EXEC, 1, VH_TIME_MAX_MS, VH__OUTCOME_RETRY, 3, T0);
    assert_int_equal(u.next_attempt_ms, T0 + 2000);
    u = decide(VH_JOB_FORWARD, 2, VH_TIME_MAX_MS, VH__OUTCOME_RETRY, 500, T0);
    assert_int_equal(u.state, VH_JOB_FAILED); /* the third of 3 attempts */
    assert_int_equal(u.attempts, 3);
    u = decide(VH_JOB_FORWARD, 0, VH_TIME_MAX_MS, VH__OUTCOME_EXPIRED, 0, T0);
    assert_int_equal(u.state, VH_JOB_FAILED);
    u = decide(VH_JOB_FORWARD, 0, VH_TIME_MAX_MS, VH__OUTCOME_OK, 204, T0);
    assert_int_equal(u.state, VH_JOB_DONE);
}

/*
 * The error text is stored, exported as JSON and shown in a terminal: what came from outside
 * (a command's output) is made one line of printable UTF-8 at its length.
 */
static void decide_cleans_the_error(void **state)
{
    struct vh__report rep;
    struct vh__job_update u;

    (void)state;
    memset(&rep, 0, sizeof(rep));
    rep.outcome = VH__OUTCOME_RETRY;
    rep.status = 3;
    snprintf(rep.error, sizeof(rep.error), "%s",
             "status 3: caf\xe9\n\x01\x7f\xc2\x9b[2J ok \xc3\xa9 \xf0\x9f\x98\x80 \xe2\x82");
    vh__job_decide(VH_JOB_EXEC, 0, VH_TIME_MAX_MS, 3, &rep, T0, &u);
    assert_string_equal(u.error, "status 3: caf?     [2J ok \xc3\xa9 \xf0\x9f\x98\x80 ??");
    /* Overlong forms and surrogates are not UTF-8 either. */
    snprintf(rep.error, sizeof(rep.error), "%s", "\xc0\xaf \xed\xa0\x80 x");
    vh__job_decide(VH_JOB_EXEC, 0, VH_TIME_MAX_MS, 3, &rep, T0, &u);
    assert_string_equal(u.error, "?? ??? x");
}

static void expiry(void **state)
{
    const int64_t rcv = T0 + 5000;

    (void)state;
    assert_int_equal(vh_recording_expiry_ms(NULL, rcv), rcv + VH_RECORDING_TTL_DEFAULT_MS);
    assert_int_equal(vh_recording_expiry_ms("https://h/rec.wav", rcv),
                     rcv + VH_RECORDING_TTL_DEFAULT_MS);
    assert_int_equal(vh_recording_expiry_ms("https://b.s3.amazonaws.com/r.wav?X-Amz-Algorithm=A"
                                            "&X-Amz-Date=20260315T143208Z&X-Amz-Expires=86400"
                                            "&X-Amz-Signature=00",
                                            rcv),
                     T0 + 86400000);
    /* Parameters in any order; the first of each wins. */
    assert_int_equal(vh_recording_expiry_ms("http://h/k?X-Amz-Expires=60&a=b&X-Amz-Date="
                                            "20260315T143208Z",
                                            rcv),
                     T0 + 60000);
    /*
     * Signed after it arrived: up to S3's 15 minutes of clock skew, as it says; past them,
     * the default (a far-future date would keep a failing download going for years).
     */
    assert_int_equal(vh_recording_expiry_ms("http://h/k?X-Amz-Date=20260315T144708Z"
                                            "&X-Amz-Expires=60",
                                            T0),
                     T0 + 900000 + 60000);
    assert_int_equal(vh_recording_expiry_ms("http://h/k?X-Amz-Date=20260315T144709Z"
                                            "&X-Amz-Expires=60",
                                            T0),
                     T0 + VH_RECORDING_TTL_DEFAULT_MS);
    assert_int_equal(vh_recording_expiry_ms("http://h/k?X-Amz-Date=20991231T000000Z"
                                            "&X-Amz-Expires=604800",
                                            rcv),
                     rcv + VH_RECORDING_TTL_DEFAULT_MS);
    /* Unreadable or out of range: the default. */
    assert_int_equal(vh_recording_expiry_ms("http://h/k?X-Amz-Date=20260315T143208Z", rcv),
                     rcv + VH_RECORDING_TTL_DEFAULT_MS);
    assert_int_equal(
        vh_recording_expiry_ms("http://h/k?X-Amz-Date=2026-03-15&X-Amz-Expires=60", rcv),
        rcv + VH_RECORDING_TTL_DEFAULT_MS);
    assert_int_equal(vh_recording_expiry_ms("http://h/k?X-Amz-Date=20260315T143208Z"
                                            "&X-Amz-Expires=604801",
                                            rcv),
                     rcv + VH_RECORDING_TTL_DEFAULT_MS);
    assert_int_equal(vh_recording_expiry_ms("http://h/k?X-Amz-Date=20260231T143208Z"
                                            "&X-Amz-Expires=60",
                                            rcv),
                     rcv + VH_RECORDING_TTL_DEFAULT_MS);
    assert_int_equal(vh_recording_expiry_ms("http://h/k?X-Amz-Date=20260315T143208Z"
                                            "&X-Amz-Expires=6x",
                                            rcv),
                     rcv + VH_RECORDING_TTL_DEFAULT_MS);
    assert_int_equal(vh_recording_expiry_ms("http://h/k#X-Amz-Date=20260315T143208Z"
                                            "&X-Amz-Expires=60",
                                            rcv),
                     rcv + VH_RECORDING_TTL_DEFAULT_MS);
    assert_int_equal(vh_recording_expiry_ms("http://h/k?xX-Amz-Date=20260315T143208Z"
                                            "&X-Amz-Expires=60",
                                            rcv),
                     rcv + VH_RECORDING_TTL_DEFAULT_MS);
}

static void name(const char *url, const char *want)
{
    char out[VH_ID_MAX + 16];

    assert_int_equal(vh__recording_name("s1", url, out, sizeof(out)), 0);
    assert_string_equal(out, want);
}

static void recording_names(void **state)
{
    char small[4];

    (void)state;
    name("https://b.s3.amazonaws.com/rec_abc123.wav?X-Amz-Signature=...", "s1.wav");
    name("https://h/a/b/REC.MP3", "s1.mp3");
    name("https://h/a.b/rec", "s1");
    name("https://h/rec.", "s1");
    name("https://h/rec.toolongext", "s1");
    name("https://h/rec.w-v", "s1");
    name("https://h/rec.wav#frag", "s1.wav");
    name("https://h", "s1");
    name("https://h/", "s1");
    name("https://h/x.tar.gz", "s1.gz");
    name("https://h/..%2f..%2fetc%2fpasswd", "s1");
    name(NULL, "s1");
    assert_int_equal(vh__recording_name("session", "https://h/a.wav", small, sizeof(small)),
                     VH_ETOOBIG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(names_round_trip), cmocka_unit_test(transitions),
        cmocka_unit_test(backoff),          cmocka_unit_test(decide_downloads),
        cmocka_unit_test(decide_actions),   cmocka_unit_test(decide_cleans_the_error),
        cmocka_unit_test(expiry),           cmocka_unit_test(recording_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
