/* vh_rate_apply: the fixed one-minute windows the partner API enforces (SPEC §4). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <vocohook/store.h>

#define T0 INT64_C(1773585128000)

static void counts_until_the_limit_then_says_how_long_to_wait(void **state)
{
    const struct vh_rate_limits lim = {3, -1};
    struct vh_rate_window w;
    int i;

    (void)state;
    memset(&w, 0, sizeof(w));
    for (i = 0; i < 3; i++)
        assert_int_equal(vh_rate_apply(&w, &lim, false, T0 + i), 0);
    assert_int_equal(w.general_start_ms, T0);
    assert_int_equal(w.general_count, 3);
    /* Refused requests are not counted; the wait rounds up to whole seconds. */
    assert_int_equal(vh_rate_apply(&w, &lim, false, T0 + 1), 60);
    assert_int_equal(vh_rate_apply(&w, &lim, false, T0 + 1000), 59);
    assert_int_equal(vh_rate_apply(&w, &lim, false, T0 + 58500), 2);
    assert_int_equal(vh_rate_apply(&w, &lim, false, T0 + 59999), 1);
    assert_int_equal(w.general_count, 3);
    /* The window ends a minute after its first request; the next one starts then. */
    assert_int_equal(vh_rate_apply(&w, &lim, false, T0 + 60000), 0);
    assert_int_equal(w.general_start_ms, T0 + 60000);
    assert_int_equal(w.general_count, 1);
}

static void calls_have_a_window_of_their_own_inside_the_general_one(void **state)
{
    const struct vh_rate_limits lim = {4, 2};
    struct vh_rate_window w;

    (void)state;
    memset(&w, 0, sizeof(w));
    assert_int_equal(vh_rate_apply(&w, &lim, true, T0), 0);
    assert_int_equal(vh_rate_apply(&w, &lim, true, T0 + 10000), 0);
    assert_int_equal(vh_rate_apply(&w, &lim, true, T0 + 20000), 40); /* calls full */
    assert_int_equal(vh_rate_apply(&w, &lim, false, T0 + 20000), 0); /* others still pass */
    assert_int_equal(vh_rate_apply(&w, &lim, false, T0 + 20000), 0);
    assert_int_equal(w.general_count, 4);
    assert_int_equal(w.calls_count, 2);
    /* With the general window full, a /calls request waits for the general one. */
    assert_int_equal(vh_rate_apply(&w, &lim, true, T0 + 30000), 30);
    assert_int_equal(vh_rate_apply(&w, &lim, false, T0 + 30000), 30);
}

static void a_negative_limit_is_no_limit(void **state)
{
    const struct vh_rate_limits none = {-1, -1}, calls_only = {-1, 1};
    struct vh_rate_window w;
    int i;

    (void)state;
    memset(&w, 0, sizeof(w));
    for (i = 0; i < 1000; i++)
        assert_int_equal(vh_rate_apply(&w, &none, true, T0), 0);
    memset(&w, 0, sizeof(w));
    assert_int_equal(vh_rate_apply(&w, &calls_only, true, T0), 0);
    assert_int_equal(vh_rate_apply(&w, &calls_only, true, T0), 60);
    assert_int_equal(vh_rate_apply(&w, &calls_only, false, T0), 0);
}

static void a_zero_limit_refuses_everything(void **state)
{
    const struct vh_rate_limits zero = {0, -1};
    struct vh_rate_window w;

    (void)state;
    memset(&w, 0, sizeof(w));
    assert_int_equal(vh_rate_apply(&w, &zero, false, T0), 60);
    assert_int_equal(w.general_count, 0);
}

static void a_clock_stepped_back_keeps_the_window(void **state)
{
    const struct vh_rate_limits lim = {1, -1};
    struct vh_rate_window w;

    (void)state;
    memset(&w, 0, sizeof(w));
    assert_int_equal(vh_rate_apply(&w, &lim, false, T0), 0);
    /* An hour back: the window does not reopen, and the wait is at most one window. */
    assert_int_equal(vh_rate_apply(&w, &lim, false, T0 - 3600000), 60);
    assert_int_equal(w.general_start_ms, T0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(counts_until_the_limit_then_says_how_long_to_wait),
        cmocka_unit_test(calls_have_a_window_of_their_own_inside_the_general_one),
        cmocka_unit_test(a_negative_limit_is_no_limit),
        cmocka_unit_test(a_zero_limit_refuses_everything),
        cmocka_unit_test(a_clock_stepped_back_keeps_the_window),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
