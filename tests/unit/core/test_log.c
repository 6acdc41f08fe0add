/*
 * The pieces every JSON log line is made of (src/core/log.c): the record's head, numbers
 * written without printf, and the escaping of untrusted bytes.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include <vocohook/clock.h>
#include <vocohook/log.h>

#include "core/log_int.h"
#include "core/banned.h"

static void head(void **state)
{
    char line[VH__LOG_HEAD_MAX];
    size_t n;

    (void)state;
    n = vh__log_head(line, INT64_C(1773585128007), VH_LOG_WARN);
    assert_string_equal(line, "{\"ts\":\"2026-03-15T14:32:08.007Z\",\"level\":\"warn\"");
    assert_int_equal(n, strlen(line));
    n = vh__log_head(line, 0, VH_LOG_DEBUG);
    assert_string_equal(line, "{\"ts\":\"1970-01-01T00:00:00.000Z\",\"level\":\"debug\"");
    assert_int_equal(n, strlen(line));
}

static void u64(void **state)
{
    static const struct {
        uint64_t v;
        const char *s;
    } t[] = {{0, "0"},
             {7, "7"},
             {10, "10"},
             {202, "202"},
             {1000000, "1000000"},
             {UINT64_MAX, "18446744073709551615"}};
    char out[24];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        char *end = vh__log_u64(out, t[i].v);

        *end = '\0';
        assert_string_equal(out, t[i].s);
    }
}

static void escape(void **state)
{
    char out[64];

    (void)state;
    vh__json_escape("a\"b\\c\n\x7f", 64, out, sizeof(out));
    assert_string_equal(out, "a\\\"b\\\\c\\u000a\\u007f");
    /* Characters as their code points: é, €, and 😀 past U+FFFF as a surrogate pair. */
    vh__json_escape("\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", 64, out, sizeof(out));
    assert_string_equal(out, "\\u00e9 \\u20ac \\ud83d\\ude00");
    /* Other bytes as themselves: a lone lead byte, an overlong form, a sequence cut by max. */
    vh__json_escape("\xc3x\xc0\xaf", 64, out, sizeof(out));
    assert_string_equal(out, "\\u00c3x\\u00c0\\u00af");
    vh__json_escape("\xc3\xa9", 1, out, sizeof(out));
    assert_string_equal(out, "\\u00c3");
    /* A pair that does not fit is left out whole. */
    vh__json_escape("ab\xf0\x9f\x98\x80", 64, out, 14);
    assert_string_equal(out, "ab");
    vh__json_escape("abcdef", 3, out, sizeof(out)); /* at most `max` bytes of the input */
    assert_string_equal(out, "abc");
    vh__json_escape("abcdefghij", 64, out, 10); /* cut to fit, still terminated */
    assert_true(strlen(out) < 10);
    assert_memory_equal(out, "abc", 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(head),
        cmocka_unit_test(u64),
        cmocka_unit_test(escape),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
