#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include <vocohook/clock.h>

static int64_t parse_ok(const char *s)
{
    struct vh_error err = VH_ERROR_INIT;
    int64_t ms = -1;

    assert_int_equal(vh_time_parse(s, strlen(s), &ms, &err), 0);
    assert_int_equal(err.code, 0);
    return ms;
}

static void parse_reject(const char *s, const char *want_msg)
{
    struct vh_error err = VH_ERROR_INIT;
    int64_t ms = 777;

    assert_int_equal(vh_time_parse(s, strlen(s), &ms, &err), VH_EINVAL);
    assert_int_equal(ms, 777); /* untouched on failure */
    assert_string_equal(err.msg, want_msg);
}

static void known_instants(void **state)
{
    (void)state;
    assert_int_equal(parse_ok("1970-01-01T00:00:00.000Z"), 0);
    /* date -u -d 2026-03-15T14:32:08Z +%s -> 1773585128 */
    assert_int_equal(parse_ok("2026-03-15T14:32:08.000Z"), INT64_C(1773585128000));
    assert_int_equal(parse_ok("2026-03-15T14:30:04.500Z"), INT64_C(1773585004500));
    assert_int_equal(parse_ok("2000-02-29T23:59:59.999Z"), INT64_C(951868799999));
    assert_int_equal(parse_ok("9999-12-31T23:59:59.999Z"), VH_TIME_MAX_MS);
}

static void round_trip_every_day_for_decades(void **state)
{
    char out[VH_TIME_LEN + 1];
    int64_t ms;

    (void)state;
    /* Every day from 1970 to 2110 at an odd time of day: format, parse back, compare. */
    for (ms = 12345678; ms < INT64_C(4417977600000); ms += 86400000) {
        struct vh_error err = VH_ERROR_INIT;
        int64_t back = -1;

        assert_int_equal(vh_time_format(ms, out), 0);
        assert_int_equal(strlen(out), VH_TIME_LEN);
        assert_int_equal(vh_time_parse(out, VH_TIME_LEN, &back, &err), 0);
        assert_int_equal(back, ms);
    }
}

static void matches_libc(void **state)
{
    time_t t;
    char want[64], got[VH_TIME_LEN + 1];

    (void)state;
    /* Compare with the C library's own calendar every 997 hours for 100 years. */
    for (t = 0; t < (time_t)3155760000; t += 997 * 3600 + 17) {
        struct tm tm;

        assert_non_null(gmtime_r(&t, &tm));
        strftime(want, sizeof(want), "%Y-%m-%dT%H:%M:%S.000Z", &tm);
        assert_int_equal(vh_time_format((int64_t)t * 1000, got), 0);
        assert_string_equal(got, want);
    }
}

static void rejects_other_forms(void **state)
{
    char out[VH_TIME_LEN + 1];

    (void)state;
    parse_reject("2026-03-15T14:32:08Z", "must be an ISO 8601 UTC time like "
                                         "2026-03-15T14:32:08.000Z (24 characters, got 20)");
    parse_reject("2026-03-15T14:32:08.000+0", "must be an ISO 8601 UTC time like "
                                              "2026-03-15T14:32:08.000Z (24 characters, got 25)");
    parse_reject("2026-03-15 14:32:08.000Z",
                 "must be an ISO 8601 UTC time like "
                 "2026-03-15T14:32:08.000Z (expected 'T' at character 11)");
    parse_reject("2026-03-15T14:32:08.000z",
                 "must be an ISO 8601 UTC time like "
                 "2026-03-15T14:32:08.000Z (expected 'Z' at character 24)");
    parse_reject("2026-03-15T14:32:08,000Z",
                 "must be an ISO 8601 UTC time like "
                 "2026-03-15T14:32:08.000Z (expected '.' at character 20)");
    parse_reject("2026-0a-15T14:32:08.000Z", "must be an ISO 8601 UTC time like "
                                             "2026-03-15T14:32:08.000Z (month is not a number)");
    parse_reject("2026-02-29T00:00:00.000Z", "day 29 does not exist in 2026-02");
    parse_reject("2100-02-29T00:00:00.000Z", "day 29 does not exist in 2100-02");
    parse_reject("2026-04-31T00:00:00.000Z", "day 31 does not exist in 2026-04");
    parse_reject("2026-13-01T00:00:00.000Z", "month 13 is out of range");
    parse_reject("2026-00-01T00:00:00.000Z", "month 00 is out of range");
    parse_reject("2026-03-15T24:00:00.000Z", "hour 24 is out of range");
    parse_reject("2026-03-15T23:60:00.000Z", "minute 60 is out of range");
    parse_reject("2026-06-30T23:59:60.000Z", "second 60 is out of range");
    parse_reject("1969-12-31T23:59:59.999Z", "year 1969 is before 1970");
    parse_reject("+026-03-15T14:32:08.000Z", "must be an ISO 8601 UTC time like "
                                             "2026-03-15T14:32:08.000Z (year is not a number)");
    assert_int_equal(vh_time_format(-1, out), VH_EINVAL);
    assert_string_equal(out, "");
    assert_int_equal(vh_time_format(VH_TIME_MAX_MS + 1, out), VH_EINVAL);
}

static void clocks_advance(void **state)
{
    int64_t a = vh_time_mono_ms(), w = vh_time_now_ms();

    (void)state;
    assert_true(w > INT64_C(1700000000000)); /* after 2023 */
    assert_true(vh_time_mono_ms() >= a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(known_instants), cmocka_unit_test(round_trip_every_day_for_decades),
        cmocka_unit_test(matches_libc),   cmocka_unit_test(rejects_other_forms),
        cmocka_unit_test(clocks_advance),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
