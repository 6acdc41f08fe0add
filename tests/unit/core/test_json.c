/*
 * json.h's flat request objects (vh_json_parse_fields): the messages name the key, on one
 * line. The string writer is tested with the encoder, in test_event.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include <vocohook/event.h>
#include <vocohook/json.h>

static int parse(const char *json, struct vh_jfield *f, size_t n, struct vh_error *err)
{
    vh_error_clear(err);
    return vh_json_parse_fields(json, strlen(json), f, n, err);
}

static void test_unknown_key_is_quoted_on_one_line(void **state)
{
    struct vh_jfield f[] = {{.name = "url", .type = VH_JSTRING, .max_len = 10}};
    struct vh_error err = VH_ERROR_INIT;

    (void)state;
    assert_int_equal(parse("{\"a\\nb\\u001b[31m\":1}", f, 1, &err), VH_EINVAL);
    assert_string_equal(err.msg, "body: unknown key \"a\\u000ab\\u001b[31m\"");
    assert_null(strchr(err.msg, '\n'));
    assert_int_equal(parse("{\"q\\\"\":1}", f, 1, &err), VH_EINVAL);
    assert_string_equal(err.msg, "body: unknown key \"q\\\"\"");
    assert_false(f[0].present);
}

static void test_fields_filled_and_released(void **state)
{
    struct vh_jfield f[] = {{.name = "url", .type = VH_JSTRING, .required = true, .max_len = 10},
                            {.name = "n", .type = VH_JINT}};
    struct vh_error err = VH_ERROR_INIT;

    (void)state;
    assert_int_equal(parse("{\"url\":\"x\",\"n\":7}", f, 2, &err), 0);
    assert_string_equal(f[0].str, "x");
    assert_int_equal(f[1].i, 7);
    assert_int_equal(parse("{\"n\":7}", f, 2, &err), VH_EINVAL);
    assert_string_equal(err.msg, "url: missing");
    assert_null(f[0].str);
    assert_false(f[1].present);
    vh_json_fields_release(f, 2);
}

/* An integer past int64 is an integer still: the message says it is out of range. */
static void test_integer_past_int64_is_out_of_range(void **state)
{
    static const char *const past[] = {
        "{\"count\":9223372036854775808}",
        "{\"count\":-9223372036854775809}", /* reads as exactly -2^63 */
        "{\"count\":100000000000000000000}",
        "{\"count\":1e30}",
    };
    struct vh_jfield f[] = {{.name = "count", .type = VH_JINT}};
    struct vh_error err = VH_ERROR_INIT;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(past) / sizeof(past[0]); i++) {
        assert_int_equal(parse(past[i], f, 1, &err), VH_EINVAL);
        assert_string_equal(err.msg, "count: must be an integer between -9223372036854775808 "
                                     "and 9223372036854775807");
        assert_false(f[0].present);
    }
    assert_int_equal(parse("{\"count\":9223372036854775807}", f, 1, &err), 0);
    assert_true(f[0].i == INT64_MAX);
    assert_int_equal(parse("{\"count\":-9223372036854775808}", f, 1, &err), 0);
    assert_true(f[0].i == INT64_MIN);
    assert_int_equal(parse("{\"count\":-0}", f, 1, &err), 0);
    assert_true(f[0].i == 0);
    assert_int_equal(parse("{\"count\":12.5}", f, 1, &err), VH_EINVAL);
    assert_string_equal(err.msg, "count: must be an integer");
    assert_int_equal(parse("{\"count\":-0.0}", f, 1, &err), VH_EINVAL);
    assert_string_equal(err.msg, "count: must be an integer");
    vh_json_fields_release(f, 1);
}

static int parse_session_duration(const char *duration, struct vh_error *err)
{
    char json[512];
    struct vh_session *s = NULL;
    int rc;

    snprintf(json, sizeof(json),
             "{\"session_id\":\"s1\",\"agent_id\":\"a1\",\"agent_name\":\"n\","
             "\"duration_seconds\":%s,\"credits_used\":0,\"transcript\":[]}",
             duration);
    vh_error_clear(err);
    rc = vh_session_parse(json, strlen(json), 0, &s, err);
    vh_session_free(s);
    return rc;
}

/* The session's integers: one past int64 on either side is out of range, as any other. */
static void test_session_integer_past_int64_is_out_of_range(void **state)
{
    static const char *const past[] = {"9223372036854775808", "-9223372036854775809",
                                       "-100000000000000000000", "-1e30"};
    struct vh_error err = VH_ERROR_INIT;
    size_t i;

    (void)state;
    assert_int_equal(parse_session_duration("60", &err), 0);
    for (i = 0; i < sizeof(past) / sizeof(past[0]); i++) {
        assert_int_equal(parse_session_duration(past[i], &err), VH_EINVAL);
        assert_string_equal(err.msg, "duration_seconds: must be between 0 and 604800");
    }
    assert_int_equal(parse_session_duration("60.0", &err), VH_EINVAL);
    assert_string_equal(err.msg, "duration_seconds: must be an integer");
}

/*
 * A buffer already past its bound (its max lowered after adds; buf.h allows it) refuses
 * any more and is left as it was. The encoder's fast path took max - len without checking
 * len <= max, so the subtraction wrapped and the string was appended.
 */
static void test_add_string_to_a_buffer_past_its_bound(void **state)
{
    static const char *const strings[] = {"a", "quote \" and \\ and \n", ""};
    struct vh_buf b = VH_BUF_INIT(100);
    size_t i;

    (void)state;
    assert_int_equal(vh_buf_adds(&b, "0123456789012345678901234567890123456789"), 0);
    b.max = 10;
    for (i = 0; i < sizeof(strings) / sizeof(strings[0]); i++) {
        assert_int_equal(vh_json_add_string(&b, strings[i], strlen(strings[i])), VH_ETOOBIG);
        assert_int_equal(b.len, 40);
        assert_string_equal(b.data, "0123456789012345678901234567890123456789");
    }
    b.max = 42;
    assert_int_equal(vh_json_add_string(&b, "", 0), 0); /* exactly to the bound */
    assert_string_equal(b.data + 40, "\"\"");
    vh_buf_release(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unknown_key_is_quoted_on_one_line),
        cmocka_unit_test(test_fields_filled_and_released),
        cmocka_unit_test(test_integer_past_int64_is_out_of_range),
        cmocka_unit_test(test_session_integer_past_int64_is_out_of_range),
        cmocka_unit_test(test_add_string_to_a_buffer_past_its_bound),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
