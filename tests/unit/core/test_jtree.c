/*
 * The strict JSON parser (core/jtree_int.h): every kind of value, every escape, raw UTF-8,
 * the tree's links and counts, member lookup, and each refusal with its code and message.
 *
 * Where a refusal's wording is promised by the header (empty input, invalid UTF-8, \u0000,
 * depth, out of memory) the message is compared whole; elsewhere only its form is: the
 * prefix "json: " and the suffix " at byte N". N follows the header ("the offending byte"),
 * read as:
 * - a syntax error: the first byte the grammar does not allow there (the input's length
 *   when it ends too early), except that a malformed token (a literal such as `tru`, a
 *   number with a leading zero, an escape such as `\x` or `\u12`) is named by its first
 *   byte (the `t`, the leading `0`, the backslash);
 * - a well-formed token refused for what it means (a lone surrogate escape, \u0000, a
 *   number out of range, a duplicate key, one level too deep): its first byte (the
 *   backslash, the first digit or the sign, the opening quote, the opening bracket);
 * - invalid UTF-8: the first byte of the bad sequence.
 * The allocation-failure run is here too: the counting allocator of unit/oom.h is installed
 * for the whole program, and every test checks that it leaves no block behind.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <inttypes.h>
#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <vocohook/alloc.h>
#include <vocohook/buf.h>
#include <vocohook/error.h>

#include "core/jtree_int.h"
#include "unit/oom.h"

#define LIT(s) (s), (sizeof(s) - 1)

static long blocks_before;

/* --- helpers ------------------------------------------------------------------------------ */

/* The input, printable, for failure messages: C escapes, cut after 80 bytes. */
static const char *show(const char *p, size_t n)
{
    static char out[512];
    size_t i, o = 0;

    out[o++] = '\'';
    for (i = 0; i < n && i < 80; i++) {
        unsigned char c = (unsigned char)p[i];

        if (c >= 0x20 && c < 0x7f && c != '\\' && c != '\'')
            out[o++] = (char)c;
        else
            o += (size_t)snprintf(out + o, sizeof(out) - o, "\\x%02x", c);
    }
    out[o++] = '\'';
    if (n > 80)
        o += (size_t)snprintf(out + o, sizeof(out) - o, "... (%zu bytes)", n);
    out[o] = '\0';
    return out;
}

/* Parses into a zeroed doc with a clear error. */
static int parse(const char *json, size_t len, struct vh_jt_doc *doc, struct vh_error *err)
{
    memset(doc, 0, sizeof(*doc));
    vh_error_clear(err);
    return vh__jt_parse(json, len, doc, err);
}

/* Checks the links and counts of a subtree; strings and keys hold no NUL. */
static void check_tree(const struct vh_jt *v, int depth)
{
    const struct vh_jt *m;
    uint32_t n = 0;

    switch (v->kind) {
    case VH_JT_NULL:
    case VH_JT_FALSE:
    case VH_JT_TRUE:
    case VH_JT_INT:
    case VH_JT_REAL:
        break;
    case VH_JT_STRING:
        assert_non_null(v->u.s);
        assert_int_equal(strlen(v->u.s), v->len);
        break;
    case VH_JT_ARRAY:
    case VH_JT_OBJECT:
        assert_true(depth <= 32); /* arrays and objects; a scalar inside is not a level */
        for (m = v->u.first; m; m = m->next) {
            if (v->kind == VH_JT_OBJECT) {
                assert_non_null(m->key);
                assert_int_equal(strlen(m->key), m->key_len);
            } else {
                assert_null(m->key);
            }
            check_tree(m, depth + 1);
            n++;
        }
        assert_int_equal(n, v->len);
        break;
    default:
        fail_msg("unknown kind %d", (int)v->kind);
    }
}

/* Parses what must be accepted; fails the test otherwise. Returns the root. */
static const struct vh_jt *must_parse(struct vh_jt_doc *doc, const char *json, size_t len)
{
    struct vh_error err = VH_ERROR_INIT;
    int rc;

    rc = parse(json, len, doc, &err);
    if (rc != 0)
        fail_msg("%s: refused with %d: %s", show(json, len), rc, err.msg);
    assert_int_equal(err.code, 0);
    assert_string_equal(err.msg, "");
    assert_non_null(doc->root);
    assert_null(doc->root->key);
    assert_null(doc->root->next);
    check_tree(doc->root, 1);
    return doc->root;
}

static void check_string(const struct vh_jt *v, const char *bytes, size_t len)
{
    assert_non_null(v);
    assert_int_equal(v->kind, VH_JT_STRING);
    assert_int_equal(v->len, len);
    if (memcmp(v->u.s, bytes, len) != 0)
        fail_msg("string %s, want %s", show(v->u.s, v->len), show(bytes, len));
    assert_int_equal(v->u.s[len], '\0');
}

static void check_int(const struct vh_jt *v, int64_t want)
{
    assert_non_null(v);
    assert_int_equal(v->kind, VH_JT_INT);
    if (v->u.i != want)
        fail_msg("int %" PRId64 ", want %" PRId64, v->u.i, want);
}

/*
 * Parses what must be refused with `code` and either the message `exact`, or (exact NULL)
 * a message "json: ... at byte `at`". Reports a mismatch and returns false rather than
 * failing, so one run lists every wrong refusal of a table.
 */
static bool refused_as(const char *json, size_t len, int code, const char *exact, size_t at)
{
    struct vh_error err = VH_ERROR_INIT;
    struct vh_jt_doc doc;
    char suffix[64];
    size_t n, sn;
    bool ok = true;
    int rc;

    rc = parse(json, len, &doc, &err);
    if (rc == 0) {
        print_error("%s: accepted, want refused with %d\n", show(json, len), code);
        vh__jt_doc_release(&doc);
        return false;
    }
    if (rc != code) {
        print_error("%s: returned %d, want %d (message '%s')\n", show(json, len), rc, code,
                    err.msg);
        ok = false;
    }
    if (err.code != rc) {
        print_error("%s: err.code %d, returned %d\n", show(json, len), err.code, rc);
        ok = false;
    }
    if (doc.root || doc.strings || doc.chunks) {
        print_error("%s: refused but the doc is not empty\n", show(json, len));
        ok = false;
    }
    if (strchr(err.msg, '\n')) {
        print_error("%s: message has a newline: '%s'\n", show(json, len), err.msg);
        ok = false;
    }
    if (exact) {
        if (strcmp(err.msg, exact) != 0) {
            print_error("%s: message '%s', want '%s'\n", show(json, len), err.msg, exact);
            ok = false;
        }
    } else {
        snprintf(suffix, sizeof(suffix), " at byte %zu", at);
        n = strlen(err.msg);
        sn = strlen(suffix);
        if (strncmp(err.msg, "json: ", 6) != 0 || n < 6 + 1 + sn ||
            strcmp(err.msg + n - sn, suffix) != 0) {
            print_error("%s: message '%s', want 'json: ...%s'\n", show(json, len), err.msg, suffix);
            ok = false;
        }
    }
    vh__jt_doc_release(&doc);
    return ok;
}

static bool refused_utf8(const char *json, size_t len, size_t at)
{
    char want[80];

    snprintf(want, sizeof(want), "json: invalid UTF-8 at byte %zu", at);
    return refused_as(json, len, VH_EINVAL, want, at);
}

struct bad {
    const char *json;
    size_t len;
    size_t at;
};

#define BAD(s, at)                                                                                 \
    {                                                                                              \
        (s), sizeof(s) - 1, (at)                                                                   \
    }

/* Every entry must be refused with VH_EINVAL and "json: ... at byte <at>". */
static void expect_refusals(const struct bad *t, size_t n)
{
    size_t i, wrong = 0;

    for (i = 0; i < n; i++)
        if (!refused_as(t[i].json, t[i].len, VH_EINVAL, NULL, t[i].at))
            wrong++;
    if (wrong)
        fail_msg("%zu of %zu inputs not refused as expected", wrong, n);
}

static int setup(void **state)
{
    (void)state;
    blocks_before = live_blocks;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    if (live_blocks != blocks_before) {
        print_error("%ld blocks leaked\n", live_blocks - blocks_before);
        return -1;
    }
    return 0;
}

/* --- values ------------------------------------------------------------------------------- */

static void test_literals(void **state)
{
    struct vh_jt_doc doc;

    (void)state;
    assert_int_equal(must_parse(&doc, LIT("null"))->kind, VH_JT_NULL);
    vh__jt_doc_release(&doc);
    assert_int_equal(must_parse(&doc, LIT("true"))->kind, VH_JT_TRUE);
    vh__jt_doc_release(&doc);
    assert_int_equal(must_parse(&doc, LIT("false"))->kind, VH_JT_FALSE);
    vh__jt_doc_release(&doc);
    assert_int_equal(must_parse(&doc, LIT(" \t\r\n null \t\r\n "))->kind, VH_JT_NULL);
    vh__jt_doc_release(&doc);
}

static void test_root_scalars(void **state)
{
    struct vh_jt_doc doc;

    (void)state;
    check_int(must_parse(&doc, LIT("42")), 42);
    vh__jt_doc_release(&doc);
    check_string(must_parse(&doc, LIT("\"x\"")), "x", 1);
    vh__jt_doc_release(&doc);
    check_string(must_parse(&doc, LIT("\"\"")), "", 0);
    vh__jt_doc_release(&doc);
    assert_int_equal(must_parse(&doc, LIT("null"))->kind, VH_JT_NULL);
    vh__jt_doc_release(&doc);
    check_int(must_parse(&doc, LIT("7")), 7);
    vh__jt_doc_release(&doc);
    check_int(must_parse(&doc, LIT(" -3\n")), -3);
    vh__jt_doc_release(&doc);
}

static void test_ints(void **state)
{
    static const struct {
        const char *json;
        int64_t want;
    } t[] = {
        {"0", 0},
        {"-0", 0},
        {"1", 1},
        {"-1", -1},
        {"10", 10},
        {"123456789", 123456789},
        {"9223372036854775807", INT64_MAX},
        {"9223372036854775806", INT64_MAX - 1},
        {"-9223372036854775807", -INT64_MAX},
        {"-9223372036854775808", INT64_MIN},
        {"[-9223372036854775808]", INT64_MIN},
        {"4294967296", INT64_C(4294967296)},
        {"-4294967297", -INT64_C(4294967297)},
    };
    struct vh_jt_doc doc;
    const struct vh_jt *v;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        v = must_parse(&doc, t[i].json, strlen(t[i].json));
        if (v->kind == VH_JT_ARRAY)
            v = v->u.first;
        check_int(v, t[i].want);
        assert_true(vh__jt_is_number(v));
        assert_true(vh__jt_number(v) == (double)t[i].want);
        vh__jt_doc_release(&doc);
    }
}

/*
 * Integers past int64 are valid JSON (JavaScript writes 1e20 as 100000000000000000000): they
 * are read as the double strtod gives, as JSON.parse reads them.
 */
static void test_big_ints_are_reals(void **state)
{
    static const char *const t[] = {
        "9223372036854775808",
        "-9223372036854775809",
        "18446744073709551616",
        "18446744073709551617",
        "99999999999999999999",
        "12345678901234567000",
        "100000000000000000000000000000",
    };
    struct vh_jt_doc doc;
    const struct vh_jt *v;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        v = must_parse(&doc, t[i], strlen(t[i]));
        assert_int_equal(v->kind, VH_JT_REAL);
        assert_true(v->u.d == strtod(t[i], NULL));
        vh__jt_doc_release(&doc);
    }
    v = must_parse(&doc, "{\"a\":[0,-9223372036854775809]}",
                   strlen("{\"a\":[0,-9223372036854775809]}"));
    assert_int_equal(v->u.first->u.first->next->kind, VH_JT_REAL);
    assert_true(v->u.first->u.first->next->u.d == -9223372036854775809.0);
    vh__jt_doc_release(&doc);
}

/* Each real must be the double strtod gives, bit for bit (all are in range). */
static void test_reals(void **state)
{
    static const char *const t[] = {
        "1.5",
        "-0.0",
        "1e3",
        "1E-2",
        "2.5e+10",
        "0.1",
        "1E+2",
        "0e0",
        "-0e-0",
        "0.0",
        "-1.5",
        "1e-0",
        "0.30000000000000004",
        "3.141592653589793238462643383279502884197",
        "1.7976931348623157e308",
        "1.7976931348623158e308", /* rounds down to DBL_MAX */
        "-1.7976931348623157e308",
        "2.2250738585072014e-308", /* DBL_MIN */
        "2.2250738585072011e-308", /* largest subnormal, a classic */
        "4.9406564584124654e-324", /* the smallest subnormal */
        "2.4703282292062328e-324", /* just above half of it: rounds up */
        "2.5e-320",                /* subnormal: strtod says ERANGE, yet it is in range */
        "1e-400",                  /* underflow: 0 */
        "-1e-400",                 /* underflow: -0 */
        "2.4703282292062327e-324", /* just below half the smallest subnormal: 0 */
        "9007199254740993.0",      /* halfway between two doubles: to even */
        "9007199254740993e0",
        "1.00000000000000011102230246251565404236316680908203125", /* halfway: to even */
        "1.00000000000000011102230246251565404236316680908203126", /* just above: up */
        "123456789012345678901234567890.0",
        "9223372036854775808.0", /* above INT64_MAX, but a real */
        "-9223372036854775809e0",
        "1e23",
        "8.98846567431158e307",
        "1e0000000000000000000001",
        "0e999999999999999999",
        "1e-99999999999999999999",
        "0.0000000001e310",
        "100000000000000000000000e-10",
    };
    struct vh_buf b = VH_BUF_INIT(SIZE_MAX);
    struct vh_jt_doc doc;
    const struct vh_jt *v;
    double want;
    size_t i, wrong = 0;

    (void)state;
    for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        want = strtod(t[i], NULL);
        v = must_parse(&doc, t[i], strlen(t[i]));
        if (v->kind != VH_JT_REAL || memcmp(&v->u.d, &want, sizeof(want)) != 0) {
            print_error("%s: kind %d value %.17g (%a), want REAL %.17g (%a)\n", t[i], (int)v->kind,
                        v->kind == VH_JT_REAL ? v->u.d : 0.0, v->kind == VH_JT_REAL ? v->u.d : 0.0,
                        want, want);
            wrong++;
        } else {
            assert_true(vh__jt_is_number(v));
        }
        vh__jt_doc_release(&doc);
    }
    /* -0.0 keeps its sign. */
    v = must_parse(&doc, LIT("-0.0"));
    assert_int_equal(v->kind, VH_JT_REAL);
    assert_true(signbit(v->u.d));
    vh__jt_doc_release(&doc);
    /* 0.1 exactly as the C library reads it. */
    v = must_parse(&doc, LIT("0.1"));
    assert_true(v->u.d == 0.1);
    vh__jt_doc_release(&doc);
    /* A mantissa of 800 zeros, then an exponent that brings it back: 0.1. */
    assert_int_equal(vh_buf_adds(&b, "0."), 0);
    for (i = 0; i < 800; i++)
        assert_int_equal(vh_buf_addc(&b, '0'), 0);
    assert_int_equal(vh_buf_adds(&b, "1e800"), 0);
    want = strtod(b.data, NULL);
    v = must_parse(&doc, b.data, b.len);
    assert_int_equal(v->kind, VH_JT_REAL);
    if (memcmp(&v->u.d, &want, sizeof(want)) != 0) {
        print_error("0.(800 zeros)1e800: %.17g, want %.17g\n", v->u.d, want);
        wrong++;
    }
    vh__jt_doc_release(&doc);
    vh_buf_release(&b);
    if (wrong)
        fail_msg("%zu reals differ from strtod", wrong);
}

/*
 * Reals read the same whatever LC_NUMERIC a program embedding the library has set: a comma
 * (de_DE) or a decimal point of two bytes (ps_AF, U+066B). Under ctest LOCPATH points at
 * both, compiled by scripts/make-test-locales, and a locale that does not load fails the
 * test; run by hand without LOCPATH, it is skipped when none is installed.
 */
static void test_reals_ignore_locale(void **state)
{
    static const char *const names[] = {"de_DE.UTF-8", "fr_FR.UTF-8", "ps_AF.UTF-8", "ps_AF.utf8",
                                        "de_DE.utf8"};
    static const double want[] = {1.5, 0.1, -2.5e-3, 1e3};
    struct vh_error err = VH_ERROR_INIT;
    struct vh_jt_doc doc;
    const struct vh_jt *v;
    double got[4];
    size_t i, k, tried = 0, wrong = 0;
    int rc;

    (void)state;
    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (!setlocale(LC_NUMERIC, names[i])) {
            if (getenv("LOCPATH") && strncmp(names[i], "fr_FR", 5) != 0 &&
                strstr(names[i], "UTF-8"))
                fail_msg("%s does not load from LOCPATH=%s", names[i], getenv("LOCPATH"));
            continue;
        }
        tried++;
        rc = parse(LIT("[1.5,0.1,-2.5e-3,1e3]"), &doc, &err);
        for (k = 0; k < 4; k++)
            got[k] = 0;
        for (v = rc == 0 ? doc.root->u.first : NULL, k = 0; v && k < 4; v = v->next, k++)
            got[k] = v->kind == VH_JT_REAL ? v->u.d : -1;
        vh__jt_doc_release(&doc);
        setlocale(LC_NUMERIC, "C");
        if (rc != 0) {
            print_error("%s: refused: %s\n", names[i], err.msg);
            wrong++;
            continue;
        }
        for (k = 0; k < 4; k++) {
            if (got[k] != want[k]) {
                print_error("%s: real %zu read as %.17g, want %.17g\n", names[i], k, got[k],
                            want[k]);
                wrong++;
            }
        }
    }
    setlocale(LC_NUMERIC, "C");
    if (!tried)
        skip();
    if (wrong)
        fail_msg("%zu reals misread under another LC_NUMERIC", wrong);
}

/* Each escaped string must unescape to exactly these bytes. */
static void test_escapes(void **state)
{
    static const struct {
        const char *json;
        const char *want;
        size_t len;
    } t[] = {
        {"\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\uD83D\\uDE00\"",
         "\"\\/\b\f\n\r\t\xc3\xa9\xf0\x9f\x98\x80", 14},
        {"\"\\\"\"", "\"", 1},
        {"\"\\\\\"", "\\", 1},
        {"\"\\/\"", "/", 1},
        {"\"\\b\"", "\b", 1},
        {"\"\\f\"", "\f", 1},
        {"\"\\n\"", "\n", 1},
        {"\"\\r\"", "\r", 1},
        {"\"\\t\"", "\t", 1},
        {"\"\\u0041\"", "A", 1},
        {"\"\\u0001\"", "\x01", 1},
        {"\"\\u001F\"", "\x1f", 1},
        {"\"\\u007f\"", "\x7f", 1},
        {"\"\\u0080\"", "\xc2\x80", 2},
        {"\"\\u00E9\"", "\xc3\xa9", 2},
        {"\"\\u07ff\"", "\xdf\xbf", 2},
        {"\"\\u0800\"", "\xe0\xa0\x80", 3},
        {"\"\\u20AC\"", "\xe2\x82\xac", 3},
        {"\"\\uabcd\"", "\xea\xaf\x8d", 3},
        {"\"\\uABCD\"", "\xea\xaf\x8d", 3},
        {"\"\\uD7FF\"", "\xed\x9f\xbf", 3},
        {"\"\\uE000\"", "\xee\x80\x80", 3},
        {"\"\\uFFFF\"", "\xef\xbf\xbf", 3},
        {"\"\\ud800\\udc00\"", "\xf0\x90\x80\x80", 4},
        {"\"\\uD83D\\uDE00\"", "\xf0\x9f\x98\x80", 4},
        {"\"\\udbff\\udfff\"", "\xf4\x8f\xbf\xbf", 4},
        {"\"a\\u0062c\\nd\"", "abc\nd", 5},
        {"\"\\u00e9\\u00e9\"", "\xc3\xa9\xc3\xa9", 4},
        {"\"\\\\u0041\"", "\\u0041", 6},
    };
    struct vh_jt_doc doc;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        check_string(must_parse(&doc, t[i].json, strlen(t[i].json)), t[i].want, t[i].len);
        vh__jt_doc_release(&doc);
    }
}

/* Raw UTF-8 passes through as is, at each length and at each boundary. */
static void test_raw_utf8(void **state)
{
    static const char *const t[] = {
        "\xc3\xa9",         /* U+00E9, 2 bytes */
        "\xe2\x82\xac",     /* U+20AC, 3 bytes */
        "\xf0\x9f\x98\x80", /* U+1F600, 4 bytes */
        "\x7f",             /* DEL is not a control character in JSON */
        "\xc2\x80",         /* U+0080 */
        "\xdf\xbf",         /* U+07FF */
        "\xe0\xa0\x80",     /* U+0800 */
        "\xed\x9f\xbf",     /* U+D7FF */
        "\xee\x80\x80",     /* U+E000 */
        "\xef\xbf\xbf",     /* U+FFFF */
        "\xf0\x90\x80\x80", /* U+10000 */
        "\xf4\x8f\xbf\xbf", /* U+10FFFF */
        "h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80!",
    };
    struct vh_buf b = VH_BUF_INIT(SIZE_MAX);
    struct vh_jt_doc doc;
    const struct vh_jt *v;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        vh_buf_reset(&b);
        assert_int_equal(vh_buf_addf(&b, "{\"%s\":\"%s\"}", t[i], t[i]), 0);
        v = must_parse(&doc, b.data, b.len)->u.first;
        check_string(v, t[i], strlen(t[i]));
        assert_int_equal(v->key_len, strlen(t[i]));
        assert_string_equal(v->key, t[i]);
        vh__jt_doc_release(&doc);
    }
    vh_buf_release(&b);
}

/*
 * A byte that ends a run of plain characters, at every offset of a long string: the parser
 * scans eight bytes at a time, so each offset modulo 8, and the tail, must see it.
 */
static void test_string_runs(void **state)
{
    struct vh_jt_doc doc;
    char json[64], want[64], msg[80];
    size_t k, len;

    (void)state;
    for (k = 0; k < 40; k++) {
        /* ["aaa...<x>...aaa"]: a 40-byte string with byte k special. */
        memset(json, 0, sizeof(json));
        memcpy(json, "[\"", 2);
        memset(json + 2, 'a', 40);
        memcpy(json + 42, "\"]", 2);
        len = 44;

        json[2 + k] = 0x7f; /* DEL is a plain character */
        memcpy(want, json + 2, 40);
        check_string(must_parse(&doc, json, len)->u.first, want, 40);
        vh__jt_doc_release(&doc);

        snprintf(msg, sizeof(msg), "json: control character in a string at byte %zu", 2 + k);
        json[2 + k] = '\x01';
        assert_true(refused_as(json, len, VH_EINVAL, msg, 2 + k));
        json[2 + k] = 0x1f;
        assert_true(refused_as(json, len, VH_EINVAL, msg, 2 + k));
        json[2 + k] = (char)0xff;
        assert_true(refused_utf8(json, len, 2 + k));

        json[2 + k] = '"'; /* the string ends at k, and the rest is garbage */
        assert_true(refused_as(json, len, VH_EINVAL, NULL, 3 + k));

        json[2 + k] = '\\'; /* \a is not an escape; \n is */
        snprintf(msg, sizeof(msg), "json: invalid escape at byte %zu", 2 + k);
        /* At k = 39 it escapes the closing quote instead: the input ends inside the string. */
        assert_true(refused_as(json, len, VH_EINVAL, k < 39 ? msg : NULL, k < 39 ? 2 + k : len));
        if (k < 39) {
            json[3 + k] = 'n';
            memcpy(want, json + 2, 40);
            want[k] = '\n';
            memmove(want + k + 1, want + k + 2, 40 - k - 2);
            check_string(must_parse(&doc, json, len)->u.first, want, 39);
            vh__jt_doc_release(&doc);
        }
    }
}

static void test_nested(void **state)
{
    const char json[] = "{\"a\":[1,{\"b\":null}],\"c\":{},\"d\":[],\"e\":\"s\",\"f\":[[true],[]]}";
    struct vh_jt_doc doc;
    const struct vh_jt *root, *a, *c, *d, *e, *f, *v;

    (void)state;
    root = must_parse(&doc, LIT(json));
    assert_int_equal(root->kind, VH_JT_OBJECT);
    assert_int_equal(root->len, 5);

    a = root->u.first;
    assert_string_equal(a->key, "a");
    assert_int_equal(a->key_len, 1);
    assert_int_equal(a->kind, VH_JT_ARRAY);
    assert_int_equal(a->len, 2);
    v = a->u.first;
    check_int(v, 1);
    assert_null(v->key);
    assert_int_equal(v->key_len, 0);
    v = v->next;
    assert_int_equal(v->kind, VH_JT_OBJECT);
    assert_int_equal(v->len, 1);
    assert_null(v->next);
    assert_string_equal(v->u.first->key, "b");
    assert_int_equal(v->u.first->kind, VH_JT_NULL);
    assert_null(v->u.first->next);

    c = a->next;
    assert_string_equal(c->key, "c");
    assert_int_equal(c->kind, VH_JT_OBJECT);
    assert_int_equal(c->len, 0);
    assert_null(c->u.first);

    d = c->next;
    assert_string_equal(d->key, "d");
    assert_int_equal(d->kind, VH_JT_ARRAY);
    assert_int_equal(d->len, 0);
    assert_null(d->u.first);

    e = d->next;
    assert_string_equal(e->key, "e");
    check_string(e, "s", 1);

    f = e->next;
    assert_string_equal(f->key, "f");
    assert_int_equal(f->kind, VH_JT_ARRAY);
    assert_int_equal(f->len, 2);
    assert_int_equal(f->u.first->len, 1);
    assert_int_equal(f->u.first->u.first->kind, VH_JT_TRUE);
    assert_int_equal(f->u.first->next->len, 0);
    assert_null(f->u.first->next->u.first);
    assert_null(f->u.first->next->next);
    assert_null(f->next);

    assert_ptr_equal(vh__jt_get(root, "e"), e);
    vh__jt_doc_release(&doc);

    /* Whitespace everywhere it may go. */
    root = must_parse(&doc, LIT(" { \"a\" : [ 1 , 2 ] , \"b\" :\t{ } }\r\n"));
    assert_int_equal(root->len, 2);
    assert_int_equal(root->u.first->len, 2);
    vh__jt_doc_release(&doc);
}

/* Members keep input order; keys are unescaped, with their lengths and input offsets. */
static void test_member_order(void **state)
{
    const char json[] = "{\"z\":1,\"y\":2,\"\":3,\"a\\u0000b\\\"\":4,\"\\u00e9\\n\":5,\"x\":6}";
    static const struct {
        const char *key;
        size_t key_len;
        uint32_t key_at;
    } want[] = {
        {"z", 1, 1}, {"y", 1, 7}, {"", 0, 13}, {"ab\"", 3, 18}, {"\xc3\xa9\n", 3, 27}, {"x", 1, 40},
    };
    struct vh_jt_doc doc;
    struct vh_error err = VH_ERROR_INIT;
    const struct vh_jt *root, *m;
    size_t i;

    (void)state;
    /* \u0000 in a key is refused like in any string (byte 20 is its backslash). */
    assert_int_equal(parse(LIT(json), &doc, &err), VH_EINVAL);
    assert_string_equal(err.msg, "json: \\u0000 is not allowed in strings at byte 20");

    root = must_parse(&doc, LIT("{\"z\":1,\"y\":2,\"\":3,\"ab\\\"\":4,\"\\u00e9\\n\":5,\"x\":6}"));
    assert_int_equal(root->len, 6);
    for (m = root->u.first, i = 0; m; m = m->next, i++) {
        check_int(m, (int64_t)i + 1);
        assert_int_equal(m->key_len, want[i].key_len);
        assert_string_equal(m->key, want[i].key);
        assert_int_equal(m->key_at, want[i].key_at);
    }
    assert_int_equal(i, 6);
    vh__jt_doc_release(&doc);
}

static void test_get(void **state)
{
    const char json[] = "{\"a\":1,\"ab\":2,\"a\\\"b\":3,\"\\u00e9\":4,\"\":5,\"x\\\\y\":6,"
                        "\"n\":{\"deep\":7},\"\\ud83d\\ude00\":8}";
    struct vh_jt_doc doc;
    const struct vh_jt *root, *v;

    (void)state;
    root = must_parse(&doc, LIT(json));
    check_int(vh__jt_get(root, "a"), 1);
    check_int(vh__jt_get(root, "ab"), 2);
    check_int(vh__jt_get(root, "a\"b"), 3);
    check_int(vh__jt_get(root, "\xc3\xa9"), 4);
    check_int(vh__jt_get(root, ""), 5);
    check_int(vh__jt_get(root, "x\\y"), 6);
    check_int(vh__jt_get(root, "\xf0\x9f\x98\x80"), 8);
    v = vh__jt_get(root, "a");
    assert_string_equal(v->key, "a");
    /* Absent: other case, a prefix, an extension, a nested key, the escaped spelling. */
    assert_null(vh__jt_get(root, "A"));
    assert_null(vh__jt_get(root, "a\""));
    assert_null(vh__jt_get(root, "abc"));
    assert_null(vh__jt_get(root, "deep"));
    assert_null(vh__jt_get(root, "\\u00e9"));
    assert_null(vh__jt_get(root, "x\\\\y"));
    check_int(vh__jt_get(vh__jt_get(root, "n"), "deep"), 7);
    /* Not an object: NULL. */
    assert_null(vh__jt_get(vh__jt_get(root, "a"), "a"));
    vh__jt_doc_release(&doc);

    root = must_parse(&doc, LIT("[{\"a\":1},\"a\"]"));
    assert_null(vh__jt_get(root, "a"));
    assert_null(vh__jt_get(root->u.first->next, "a"));
    check_int(vh__jt_get(root->u.first, "a"), 1);
    vh__jt_doc_release(&doc);

    root = must_parse(&doc, LIT("\"a\""));
    assert_null(vh__jt_get(root, "a"));
    vh__jt_doc_release(&doc);

    root = must_parse(&doc, LIT("{}"));
    assert_null(vh__jt_get(root, "a"));
    assert_null(vh__jt_get(root, ""));
    vh__jt_doc_release(&doc);

    root = must_parse(&doc, LIT("null"));
    assert_null(vh__jt_get(root, "a"));
    vh__jt_doc_release(&doc);
}

/* A key quoted for a message: escaped as in JSON, long ones cut on a character boundary. */
static void quoted_as(const char *key, const char *want)
{
    char out[64];

    memset(out, 'X', sizeof(out));
    vh__jt_quote_key(key, out);
    assert_string_equal(out, want);
}

/* A long key's quote: a prefix of the whole escaped text, cut near 48 bytes, then "...". */
static void quoted_cut(const char *key, const char *escaped)
{
    char out[64];
    size_t n;

    memset(out, 'X', sizeof(out));
    vh__jt_quote_key(key, out);
    n = strlen(out);
    assert_true(n >= 3 && n < sizeof(out));
    assert_string_equal(out + n - 3, "...");
    n -= 3;
    assert_true(n >= 40 && n <= 48);
    assert_memory_equal(out, escaped, n);
    /* The cut is not inside a character or an escape. */
    assert_true((unsigned char)escaped[n] < 0x80 || (escaped[n] & 0xc0) != 0x80);
    assert_true(escaped[n] == '\\' || escaped[n - 1] != '\\' || escaped[n - 2] == '\\');
}

static void test_quote_key(void **state)
{
    struct vh_buf key = VH_BUF_INIT(SIZE_MAX), esc = VH_BUF_INIT(SIZE_MAX);
    size_t i;

    (void)state;
    quoted_as("", "");
    quoted_as("abc", "abc");
    quoted_as("a\"b\\c", "a\\\"b\\\\c");
    quoted_as("\n\t\x01\x1f\x7f", "\\u000a\\u0009\\u0001\\u001f\\u007f");
    quoted_as("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");
    quoted_as("012345678901234567890123456789012345678901234567",
              "012345678901234567890123456789012345678901234567");

    for (i = 0; i < 60; i++)
        assert_int_equal(vh_buf_addc(&key, (char)('a' + i % 26)), 0);
    quoted_cut(key.data, key.data);
    for (i = 0; i < 3; i++) {
        static const char *const piece[] = {"\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80"};
        size_t k;

        vh_buf_reset(&key);
        assert_int_equal(vh_buf_addc(&key, 'x'), 0);
        for (k = 0; k < 40; k++)
            assert_int_equal(vh_buf_adds(&key, piece[i]), 0);
        quoted_cut(key.data, key.data);
    }
    vh_buf_reset(&key);
    for (i = 0; i < 20; i++) {
        assert_int_equal(vh_buf_adds(&key, "a\n"), 0);
        assert_int_equal(vh_buf_adds(&esc, "a\\u000a"), 0);
    }
    quoted_cut(key.data, esc.data);
    vh_buf_release(&key);
    vh_buf_release(&esc);
}

/* --- refusals ----------------------------------------------------------------------------- */

static void test_refuse_empty(void **state)
{
    (void)state;
    assert_true(refused_as("", 0, VH_EINVAL, "json: empty input", 0));
    assert_true(refused_as(LIT(" "), VH_EINVAL, "json: empty input", 0));
    assert_true(refused_as(LIT(" \t\r\n \n"), VH_EINVAL, "json: empty input", 0));
}

static void test_refuse_syntax(void **state)
{
    static const struct bad t[] = {
        /* Trailing garbage and a second value. */
        BAD("{} x", 3),
        BAD("{}}", 2),
        BAD("[]]", 2),
        BAD("1 2", 2),
        BAD("\"a\" \"b\"", 4),
        BAD("{\"a\":1}#", 7),
        /* Trailing commas, missing or doubled punctuation. */
        BAD("{\"a\":1,}", 7),
        BAD("[1,]", 3),
        BAD("[1,,2]", 3),
        BAD("[,]", 1),
        BAD("[,1]", 1),
        BAD("{,}", 1),
        BAD("{\"a\"}", 4),
        BAD("{\"a\" 1}", 5),
        BAD("{\"a\":}", 5),
        BAD("{\"a\"::1}", 5),
        BAD("{1:2}", 1),
        BAD("{null:2}", 1),
        BAD("{\"a\":1 \"b\":2}", 7),
        BAD("[1 2]", 3),
        BAD("{\"a\":1]", 6),
        BAD("[1}", 2),
        BAD("[\"a\":1]", 4),
        BAD("]", 0),
        BAD("}", 0),
        BAD(":", 0),
        BAD(",", 0),
        /* Cut short. */
        BAD("[", 1),
        BAD("{", 1),
        BAD("[1,", 3),
        BAD("{\"a\"", 4),
        BAD("{\"a\":", 5),
        BAD("{\"a\":1", 6),
        BAD("[[[]]", 5),
        /* A BOM, single quotes, comments, whitespace JSON does not know. */
        BAD("\xef\xbb\xbf{}", 0),
        BAD("'a'", 0),
        BAD("{'a':1}", 1),
        BAD("[\"a\",'b']", 5),
        BAD("/*c*/1", 0),
        BAD("1//c", 1),
        BAD("[1,/*c*/2]", 3),
        BAD("#c\n1", 0),
        BAD("\v1", 0),
        BAD("1\f", 1),
        BAD("\xc2\xa0"
            "1",
            0),
        /* Bytes outside ASCII outside strings (valid UTF-8 or not). */
        BAD("[\xc3\xa9]", 1),
        BAD("\xff", 0),
        BAD("[1]\x80", 3),
        BAD("{\xc3\xa9:1}", 1),
        /* Literals: cut short, misspelled, run on, or not JSON at all. */
        BAD("tru", 0),
        BAD("trux", 0),
        BAD("t", 0),
        BAD("nul", 0),
        BAD("nulll", 4),
        BAD("fals", 0),
        BAD("falsey", 5),
        BAD("True", 0),
        BAD("NULL", 0),
        BAD("[truefalse]", 5),
        BAD("undefined", 0),
        BAD("NaN", 0),
        BAD("[NaN]", 1),
        BAD("Infinity", 0),
        BAD("-Infinity", 1),
        BAD("[1,-NaN]", 4),
    };

    (void)state;
    expect_refusals(t, sizeof(t) / sizeof(t[0]));
}

static void test_refuse_numbers(void **state)
{
    static const struct bad syntax[] = {
        BAD("01", 0),    BAD("00", 0),   BAD("-01", 1),   BAD("[01]", 1),  BAD("-", 1),
        BAD("[1,-]", 4), BAD("--1", 1),  BAD("- 1", 1),   BAD("1.", 2),    BAD("[1.]", 3),
        BAD("1..2", 2),  BAD("1.e3", 2), BAD("1.5.", 3),  BAD(".5", 0),    BAD("[.5]", 1),
        BAD("-.5", 1),   BAD("+1", 0),   BAD("1e", 2),    BAD("1e+", 3),   BAD("1E-", 3),
        BAD("1.5e", 4),  BAD("1ee1", 2), BAD("1e+-1", 3), BAD("1e1.5", 3), BAD("0x1F", 1),
        BAD("1_000", 1),
    };
    /* Well-formed, out of range: N is the first byte of the number. */
    static const struct bad range[] = {
        BAD("1000000000000000000000000000000000000000000000000000000000000000000000000000000000"
            "0000000000000000000000000000000000000000000000000000000000000000000000000000000000"
            "0000000000000000000000000000000000000000000000000000000000000000000000000000000000"
            "0000000000000000000000000000000000000000000000000000000000000000000000000000000000",
            0),
        BAD("[-1000000000000000000000000000000000000000000000000000000000000000000000000000000"
            "0000000000000000000000000000000000000000000000000000000000000000000000000000000000"
            "0000000000000000000000000000000000000000000000000000000000000000000000000000000000"
            "0000000000000000000000000000000000000000000000000000000000000000000000000000000000]",
            1),
        BAD("1e400", 0),
        BAD("-1e400", 0),
        BAD("[1e400]", 1),
        BAD("[1,1.8e308]", 3),
        BAD("1.7976931348623159e308", 0),
        BAD("1e309", 0),
        BAD("0.1e310", 0),
        BAD("100000000000000000000000e290", 0),
        BAD("{\"a\":-1e400}", 5),
        BAD("1e99999999999999999999", 0),
    };

    (void)state;
    expect_refusals(syntax, sizeof(syntax) / sizeof(syntax[0]));
    expect_refusals(range, sizeof(range) / sizeof(range[0]));
}

/* Lone surrogate escapes (JSON.stringify writes them) read as U+FFFD; pairs still combine. */
static void test_lone_surrogates(void **state)
{
    static const struct {
        const char *json, *want;
    } t[] = {
        {"[\"ab\\ud800\"]", "ab\xef\xbf\xbd"},
        {"[\"ab\\uDBFF\"]", "ab\xef\xbf\xbd"},
        {"[\"ab\\udc00\"]", "ab\xef\xbf\xbd"},
        {"[\"ab\\uDFFF\"]", "ab\xef\xbf\xbd"},
        {"[\"ab\\ud800\\u0041\"]", "ab\xef\xbf\xbd"
                                   "A"},
        {"[\"ab\\ud800\\ud800\"]", "ab\xef\xbf\xbd\xef\xbf\xbd"},
        {"[\"ab\\ud800\\n\"]", "ab\xef\xbf\xbd\n"},
        {"[\"ab\\ud800x\"]", "ab\xef\xbf\xbd"
                             "x"},
        {"[\"ab\\ud800\\\\udc00\"]", "ab\xef\xbf\xbd\\udc00"},
        {"[\"ab\\udc00\\ud800\"]", "ab\xef\xbf\xbd\xef\xbf\xbd"},
        {"[\"\\ud83d\\ude00\\ud83d\"]", "\xf0\x9f\x98\x80\xef\xbf\xbd"},
    };
    struct vh_jt_doc doc;
    const struct vh_jt *v;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        v = must_parse(&doc, t[i].json, strlen(t[i].json));
        assert_string_equal(v->u.first->u.s, t[i].want);
        vh__jt_doc_release(&doc);
    }
    v = must_parse(&doc, "{\"\\ud800\":1}", strlen("{\"\\ud800\":1}"));
    assert_string_equal(v->u.first->key, "\xef\xbf\xbd");
    vh__jt_doc_release(&doc);
}

static void test_refuse_strings(void **state)
{
    static const struct bad t[] = {
        /* Unterminated. */
        BAD("\"abc", 4),
        BAD("[\"abc", 5),
        BAD("\"abc\\", 5),
        BAD("\"abc\\u00", 4),
        BAD("{\"abc", 5),
        /* Raw control characters. */
        BAD("[\"ab\x01\"]", 4),
        BAD("[\"ab\n\"]", 4),
        BAD("[\"ab\r\"]", 4),
        BAD("[\"ab\t\"]", 4),
        BAD("[\"ab\x1f\"]", 4),
        BAD("{\"a\nb\":1}", 3),
        /* Escapes outside the nine, and \u without four hex digits: N is the backslash. */
        BAD("[\"ab\\x\"]", 4),
        BAD("[\"ab\\'\"]", 4),
        BAD("[\"ab\\a\"]", 4),
        BAD("[\"ab\\0\"]", 4),
        BAD("[\"ab\\U0041\"]", 4),
        BAD("[\"ab\\\n\"]", 4),
        BAD("[\"ab\\ \"]", 4),
        BAD("[\"ab\\u12\"]", 4),
        BAD("[\"ab\\u\"]", 4),
        BAD("[\"ab\\uZZZZ\"]", 4),
        BAD("[\"ab\\u00G0\"]", 4),
        BAD("[\"ab\\u-123\"]", 4),
        /* A lone surrogate reads as U+FFFD (test_lone_surrogates); raw UTF-8 after it is checked.
         */
        BAD("[\"ab\\ud800\xed\xb0\x80\"]", 10),
    };
    struct vh_jt_doc doc;

    (void)state;
    expect_refusals(t, sizeof(t) / sizeof(t[0]));
    assert_true(refused_as(LIT("[\"ab\\u0000\"]"), VH_EINVAL,
                           "json: \\u0000 is not allowed in strings at byte 4", 4));
    assert_true(refused_as(LIT("\"\\u0000\""), VH_EINVAL,
                           "json: \\u0000 is not allowed in strings at byte 1", 1));
    assert_true(refused_as(LIT("{\"k\":1,\"\\u0000\":2}"), VH_EINVAL,
                           "json: \\u0000 is not allowed in strings at byte 8", 8));
    assert_true(refused_as(LIT("[\"\\ud83d\\ude00\\u0000\"]"), VH_EINVAL,
                           "json: \\u0000 is not allowed in strings at byte 14", 14));

    /* err may be NULL. */
    memset(&doc, 0, sizeof(doc));
    assert_int_equal(vh__jt_parse(LIT("[\"ab\\x\"]"), &doc, NULL), VH_EINVAL);
    assert_null(doc.root);
    assert_int_equal(vh__jt_parse(LIT("[1]"), &doc, NULL), 0);
    vh__jt_doc_release(&doc);
}

/* Invalid UTF-8 in a string, then in a key; N is the first byte of the bad sequence. */
static void test_refuse_utf8(void **state)
{
    static const struct {
        const char *seq;
        size_t bad; /* offset of the bad sequence within seq */
    } t[] = {
        {"\xff", 0},
        {"\xfe", 0},
        {"\x80", 0}, /* a continuation byte alone */
        {"\xbf", 0},
        {"\xc0\x80", 0},         /* overlong NUL */
        {"\xc1\xbf", 0},         /* overlong */
        {"\xe0\x80\x80", 0},     /* overlong */
        {"\xe0\x9f\xbf", 0},     /* overlong */
        {"\xed\xa0\x80", 0},     /* U+D800 */
        {"\xed\xbf\xbf", 0},     /* U+DFFF */
        {"\xf0\x80\x80\x80", 0}, /* overlong */
        {"\xf0\x8f\xbf\xbf", 0}, /* overlong */
        {"\xf4\x90\x80\x80", 0}, /* U+110000 */
        {"\xf5\x80\x80\x80", 0},
        {"\xf8\x88\x80\x80\x80", 0},
        {"\xc3"
         "A",
         0},
        {"\xe2\x82"
         "A",
         0},
        {"\xe2"
         "A",
         0},
        {"\xf0\x9f\x98"
         "A",
         0},
        {"\xc3\xc3\xa9", 0},
        {"\xc3", 0}, /* cut short by the closing quote */
        {"\xe2\x82", 0},
        {"\xf0\x9f\x98", 0},
        {"\xc3\xa9\xa9", 2}, /* one continuation byte too many */
        {"ok\xc3\xa9\xff", 4},
    };
    static const char *const cut[] = {"\xc3", "\xe2",     "\xe2\x82",
                                      "\xf0", "\xf0\x9f", "\xf0\x9f\x98"};
    struct vh_buf b = VH_BUF_INIT(SIZE_MAX);
    size_t i, wrong = 0;

    (void)state;
    for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        vh_buf_reset(&b);
        assert_int_equal(vh_buf_addf(&b, "[\"ab%s\"]", t[i].seq), 0);
        if (!refused_utf8(b.data, b.len, 4 + t[i].bad))
            wrong++;
        vh_buf_reset(&b);
        assert_int_equal(vh_buf_addf(&b, "{\"k\":0,\"%s\":1}", t[i].seq), 0);
        if (!refused_utf8(b.data, b.len, 8 + t[i].bad))
            wrong++;
    }
    /* Truncated by the end of the input. */
    for (i = 0; i < sizeof(cut) / sizeof(cut[0]); i++) {
        vh_buf_reset(&b);
        assert_int_equal(vh_buf_addf(&b, "\"ab%s", cut[i]), 0);
        if (!refused_utf8(b.data, b.len, 3))
            wrong++;
    }
    vh_buf_release(&b);
    if (wrong)
        fail_msg("%zu invalid UTF-8 inputs not refused as expected", wrong);
}

/* A NUL byte is never whitespace, never a value, and a raw control character in a string. */
static void test_refuse_nul_byte(void **state)
{
    static const struct bad t[] = {
        BAD("\0", 0),  BAD("1\0", 1),      BAD("{\"a\":1}\0", 7), BAD("[1,\0 2]", 3),
        BAD(" \0", 1), BAD("\"a\0b\"", 2), BAD("{\"a\0\":1}", 3), BAD("[\"\0\"]", 2),
    };

    (void)state;
    expect_refusals(t, sizeof(t) / sizeof(t[0]));
}

/* N is the opening quote of the second key. */
static void test_refuse_duplicates(void **state)
{
    static const struct bad t[] = {
        BAD("{\"a\":1,\"a\":2}", 7),
        BAD("{\"a\":1,\"\\u0061\":2}", 7),
        BAD("{\"\\u0061\":1,\"a\":2}", 12),
        BAD("{\"a\":1,\"b\":{\"a\":2},\"a\":3}", 19),
        BAD("{\"\xc3\xa9\":1,\"\\u00e9\":2}", 8),
        BAD("{\"\\u00e9\":1,\"\\u00E9\":2}", 12),
        BAD("{\"\":1,\"\":2}", 6),
        BAD("{\"a\\\"\":1,\"a\\u0022\":2}", 9),
        BAD("{\"x\":{\"a\":1,\"a\":2}}", 12),
        BAD("[{},{\"a\":1,\"b\":2,\"a\":3}]", 17),
    };
    struct vh_buf b = VH_BUF_INIT(SIZE_MAX);
    struct vh_jt_doc doc;
    const struct vh_jt *root;
    size_t i, at;

    (void)state;
    expect_refusals(t, sizeof(t) / sizeof(t[0]));

    /* The same key at different depths or in sibling objects is no duplicate. */
    root = must_parse(&doc, LIT("{\"a\":{\"a\":{\"a\":1}},\"b\":[{\"a\":1},{\"a\":2}]}"));
    assert_int_equal(root->len, 2);
    vh__jt_doc_release(&doc);
    root = must_parse(&doc, LIT("{\"ab\":1,\"a\":2,\"b\":3,\"ba\":4,\"\":5,\"A\":6}"));
    assert_int_equal(root->len, 6);
    vh__jt_doc_release(&doc);

    /* Several duplicates: N names the first member, in input order, that repeats a key. */
    assert_true(refused_as(LIT("{\"a\":1,\"b\":2,\"b\":3,\"a\":4}"), VH_EINVAL, NULL, 13));
    assert_true(refused_as(LIT("{\"a\":1,\"b\":2,\"a\":3,\"b\":4}"), VH_EINVAL, NULL, 13));
    for (i = 16; i <= 18; i++) {
        size_t first, k;

        vh_buf_reset(&b);
        assert_int_equal(vh_buf_addc(&b, '{'), 0);
        for (k = 0; k < i; k++)
            assert_int_equal(vh_buf_addf(&b, "\"k%zu\":%zu,", k, k), 0);
        first = b.len;
        assert_int_equal(vh_buf_adds(&b, "\"k15\":0,\"k3\":0}"), 0);
        assert_true(refused_as(b.data, b.len, VH_EINVAL, NULL, first));
        b.len = first;
        assert_int_equal(vh_buf_adds(&b, "\"k3\":0,\"k15\":0}"), 0);
        assert_true(refused_as(b.data, b.len, VH_EINVAL, NULL, first));
    }
    /* The message quotes the key. */
    assert_true(refused_as(LIT("{\"a\\\"b\":1,\"a\\u0022b\":2}"), VH_EINVAL,
                           "json: duplicate key \"a\\\"b\" at byte 10", 10));

    /* In 1000 members: the last one repeats the 501st, and then the first. */
    vh_buf_reset(&b);
    assert_int_equal(vh_buf_addc(&b, '{'), 0);
    for (i = 0; i < 1000; i++)
        assert_int_equal(vh_buf_addf(&b, "\"k%zu\":%zu,", i, i), 0);
    at = b.len;
    assert_int_equal(vh_buf_adds(&b, "\"k500\":0}"), 0);
    assert_true(refused_as(b.data, b.len, VH_EINVAL, NULL, at));
    b.len = at;
    assert_int_equal(vh_buf_adds(&b, "\"k0\":0}"), 0);
    assert_true(refused_as(b.data, b.len, VH_EINVAL, NULL, at));
    b.len = at;
    assert_int_equal(vh_buf_adds(&b, "\"\\u006b999\":0}"), 0);
    assert_true(refused_as(b.data, b.len, VH_EINVAL, NULL, at));
    vh_buf_release(&b);
}

static void test_big_object(void **state)
{
    struct vh_buf b = VH_BUF_INIT(SIZE_MAX);
    struct vh_jt_doc doc;
    const struct vh_jt *root, *m;
    char key[32];
    size_t i;

    (void)state;
    assert_int_equal(vh_buf_addc(&b, '{'), 0);
    for (i = 0; i < 1000; i++)
        assert_int_equal(vh_buf_addf(&b, "%s\"k%zu\":%zu", i ? "," : "", i, i), 0);
    assert_int_equal(vh_buf_addc(&b, '}'), 0);
    root = must_parse(&doc, b.data, b.len);
    assert_int_equal(root->kind, VH_JT_OBJECT);
    assert_int_equal(root->len, 1000);
    for (m = root->u.first, i = 0; m; m = m->next, i++) {
        snprintf(key, sizeof(key), "k%zu", i);
        assert_string_equal(m->key, key);
        check_int(m, (int64_t)i);
    }
    assert_int_equal(i, 1000);
    check_int(vh__jt_get(root, "k999"), 999);
    assert_int_equal(vh__jt_get(root, "k999")->key_at, b.len - 1 - strlen("\"k999\":999"));
    check_int(vh__jt_get(root, "k0"), 0);
    check_int(vh__jt_get(root, "k500"), 500);
    assert_null(vh__jt_get(root, "k1000"));
    vh__jt_doc_release(&doc);
    vh_buf_release(&b);
}

static void test_depth(void **state)
{
    struct vh_buf b = VH_BUF_INIT(SIZE_MAX);
    struct vh_jt_doc doc;
    const struct vh_jt *v;
    size_t i, at;
    int d;

    (void)state;
    /* 32 arrays: accepted. */
    for (i = 0; i < 32; i++)
        assert_int_equal(vh_buf_addc(&b, '['), 0);
    for (i = 0; i < 32; i++)
        assert_int_equal(vh_buf_addc(&b, ']'), 0);
    v = must_parse(&doc, b.data, b.len);
    for (d = 1; v->u.first; d++)
        v = v->u.first;
    assert_int_equal(d, 32);
    vh__jt_doc_release(&doc);
    /* With a scalar inside the innermost: still 32 levels. */
    b.len = 32;
    assert_int_equal(vh_buf_adds(&b, "true"), 0);
    for (i = 0; i < 32; i++)
        assert_int_equal(vh_buf_addc(&b, ']'), 0);
    v = must_parse(&doc, b.data, b.len);
    for (d = 1; v->kind == VH_JT_ARRAY; d++)
        v = v->u.first;
    assert_int_equal(d, 33);
    assert_int_equal(v->kind, VH_JT_TRUE);
    vh__jt_doc_release(&doc);

    /* 33: refused at the 33rd bracket, whether closed or not. */
    vh_buf_reset(&b);
    for (i = 0; i < 33; i++)
        assert_int_equal(vh_buf_addc(&b, '['), 0);
    assert_true(
        refused_as(b.data, b.len, VH_ETOOBIG, "json: nested deeper than 32 levels at byte 32", 32));
    for (i = 0; i < 33; i++)
        assert_int_equal(vh_buf_addc(&b, ']'), 0);
    assert_true(
        refused_as(b.data, b.len, VH_ETOOBIG, "json: nested deeper than 32 levels at byte 32", 32));

    /* Objects count the same: 32 accepted, the 33rd `{` (byte 5 * 32) refused. */
    vh_buf_reset(&b);
    for (i = 0; i < 31; i++)
        assert_int_equal(vh_buf_adds(&b, "{\"a\":"), 0);
    assert_int_equal(vh_buf_adds(&b, "{}"), 0);
    for (i = 0; i < 31; i++)
        assert_int_equal(vh_buf_addc(&b, '}'), 0);
    must_parse(&doc, b.data, b.len);
    vh__jt_doc_release(&doc);
    vh_buf_reset(&b);
    for (i = 0; i < 32; i++)
        assert_int_equal(vh_buf_adds(&b, "{\"a\":"), 0);
    assert_int_equal(vh_buf_adds(&b, "{}"), 0);
    for (i = 0; i < 32; i++)
        assert_int_equal(vh_buf_addc(&b, '}'), 0);
    assert_true(refused_as(b.data, b.len, VH_ETOOBIG,
                           "json: nested deeper than 32 levels at byte 160", 160));

    /* Mixed, and after a sibling that was 32 deep: depth is the current nesting. */
    vh_buf_reset(&b);
    assert_int_equal(vh_buf_adds(&b, "[{\"x\":"), 0);
    for (i = 0; i < 30; i++)
        assert_int_equal(vh_buf_addc(&b, '['), 0);
    for (i = 0; i < 30; i++)
        assert_int_equal(vh_buf_addc(&b, ']'), 0);
    assert_int_equal(vh_buf_adds(&b, "},{\"y\":"), 0);
    for (i = 0; i < 30; i++)
        assert_int_equal(vh_buf_addc(&b, '['), 0);
    for (i = 0; i < 30; i++)
        assert_int_equal(vh_buf_addc(&b, ']'), 0);
    assert_int_equal(vh_buf_adds(&b, "}]"), 0);
    must_parse(&doc, b.data, b.len);
    vh__jt_doc_release(&doc);
    b.len -= 2 + 30;
    at = b.len;
    assert_int_equal(vh_buf_adds(&b, "[]"), 0);
    for (i = 0; i < 30; i++)
        assert_int_equal(vh_buf_addc(&b, ']'), 0);
    assert_int_equal(vh_buf_adds(&b, "}]"), 0);
    assert_true(refused_as(b.data, b.len, VH_ETOOBIG, NULL, at));

    /* Brackets inside strings do not count. */
    vh_buf_reset(&b);
    assert_int_equal(vh_buf_adds(&b, "[\""), 0);
    for (i = 0; i < 100; i++)
        assert_int_equal(vh_buf_adds(&b, "[{"), 0);
    assert_int_equal(vh_buf_adds(&b, "\"]"), 0);
    v = must_parse(&doc, b.data, b.len);
    assert_int_equal(v->u.first->len, 200);
    vh__jt_doc_release(&doc);
    vh_buf_release(&b);
}

/* Inputs above UINT32_MAX bytes are refused (mapped, never read: the pages are zeros). */
static void test_refuse_huge(void **state)
{
    size_t len = (size_t)UINT32_MAX + 2;
    struct vh_error err = VH_ERROR_INIT;
    struct vh_jt_doc doc;
    void *p;
    int fd, rc;

    (void)state;
    if (sizeof(size_t) <= 4)
        skip();
    fd = open("/dev/zero", O_RDONLY);
    assert_true(fd >= 0);
    p = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED)
        skip();
    rc = parse(p, len, &doc, &err);
    munmap(p, len);
    assert_int_equal(rc, VH_ETOOBIG);
    assert_int_equal(err.code, VH_ETOOBIG);
    assert_true(strncmp(err.msg, "json: ", 6) == 0);
    assert_null(doc.root);
    assert_null(doc.strings);
    assert_null(doc.chunks);
}

/* --- sizes -------------------------------------------------------------------------------- */

static void test_long_string(void **state)
{
    struct vh_buf b = VH_BUF_INIT(SIZE_MAX), want = VH_BUF_INIT(SIZE_MAX);
    struct vh_jt_doc doc;
    const struct vh_jt *v;
    size_t i;

    (void)state;
    /* 100 000 bytes, raw, as a root and as a key. */
    assert_int_equal(vh_buf_addc(&b, '"'), 0);
    for (i = 0; i < 100000; i++)
        assert_int_equal(vh_buf_addc(&want, (char)('a' + i % 26)), 0);
    assert_int_equal(vh_buf_add(&b, want.data, want.len), 0);
    assert_int_equal(vh_buf_addc(&b, '"'), 0);
    check_string(must_parse(&doc, b.data, b.len), want.data, want.len);
    vh__jt_doc_release(&doc);

    vh_buf_reset(&b);
    assert_int_equal(vh_buf_addf(&b, "{\"%s\":\"%s\"}", want.data, want.data), 0);
    v = must_parse(&doc, b.data, b.len)->u.first;
    assert_int_equal(v->key_len, 100000);
    assert_memory_equal(v->key, want.data, 100000);
    check_string(v, want.data, want.len);
    vh__jt_doc_release(&doc);

    /* 100 000 bytes from escapes: 20 000 \u00e9 and 60 000 \n. */
    vh_buf_reset(&b);
    vh_buf_reset(&want);
    assert_int_equal(vh_buf_addc(&b, '"'), 0);
    for (i = 0; i < 20000; i++) {
        assert_int_equal(vh_buf_adds(&b, "\\u00e9\\n\\n\\n"), 0);
        assert_int_equal(vh_buf_adds(&want, "\xc3\xa9\n\n\n"), 0);
    }
    assert_int_equal(vh_buf_addc(&b, '"'), 0);
    assert_int_equal(want.len, 100000);
    check_string(must_parse(&doc, b.data, b.len), want.data, want.len);
    vh__jt_doc_release(&doc);

    vh_buf_release(&b);
    vh_buf_release(&want);
}

/* Enough nodes for many chunks, walked in order. */
static void test_long_array(void **state)
{
    struct vh_buf b = VH_BUF_INIT(SIZE_MAX);
    struct vh_jt_doc doc;
    const struct vh_jt *root, *v;
    size_t i;

    (void)state;
    assert_int_equal(vh_buf_addc(&b, '['), 0);
    for (i = 0; i < 100000; i++)
        assert_int_equal(vh_buf_addf(&b, "%s%zu", i ? "," : "", i), 0);
    assert_int_equal(vh_buf_addc(&b, ']'), 0);
    root = must_parse(&doc, b.data, b.len);
    assert_int_equal(root->kind, VH_JT_ARRAY);
    assert_int_equal(root->len, 100000);
    for (v = root->u.first, i = 0; v; v = v->next, i++)
        check_int(v, (int64_t)i);
    assert_int_equal(i, 100000);
    vh__jt_doc_release(&doc);

    /* Mixed nodes: 100 000 one-member objects with a string each. */
    vh_buf_reset(&b);
    assert_int_equal(vh_buf_addc(&b, '['), 0);
    for (i = 0; i < 100000; i++)
        assert_int_equal(vh_buf_addf(&b, "%s{\"k\":\"%zu\"}", i ? "," : "", i), 0);
    assert_int_equal(vh_buf_addc(&b, ']'), 0);
    root = must_parse(&doc, b.data, b.len);
    assert_int_equal(root->len, 100000);
    for (v = root->u.first, i = 0; v; v = v->next, i++) {
        char want[32];

        snprintf(want, sizeof(want), "%zu", i);
        assert_string_equal(vh__jt_get(v, "k")->u.s, want);
    }
    vh__jt_doc_release(&doc);
    vh_buf_release(&b);
}

/* --- memory ------------------------------------------------------------------------------- */

/* Nothing in the tree points into the input. */
static void test_tree_outlives_input(void **state)
{
    const char json[] = "{\"key\":\"value\",\"e\":\"\\u00e9\",\"n\":[1,2.5,true]}";
    struct vh_jt_doc doc;
    const struct vh_jt *root;
    char *copy;

    (void)state;
    copy = malloc(sizeof(json));
    assert_non_null(copy);
    memcpy(copy, json, sizeof(json));
    root = must_parse(&doc, copy, sizeof(json) - 1);
    memset(copy, 'X', sizeof(json));
    free(copy);
    check_string(vh__jt_get(root, "key"), "value", 5);
    check_string(vh__jt_get(root, "e"), "\xc3\xa9", 2);
    assert_int_equal(vh__jt_get(root, "n")->len, 3);
    vh__jt_doc_release(&doc);
}

static void test_release(void **state)
{
    struct vh_jt_doc doc;

    (void)state;
    memset(&doc, 0, sizeof(doc));
    vh__jt_doc_release(&doc);
    vh__jt_doc_release(&doc);

    must_parse(&doc, LIT("{\"a\":[1,\"b\"]}"));
    vh__jt_doc_release(&doc);
    assert_null(doc.root);
    assert_null(doc.strings);
    assert_null(doc.chunks);
    vh__jt_doc_release(&doc);

    /* A released doc takes another parse. */
    assert_int_equal(vh__jt_parse(LIT("[true]"), &doc, NULL), 0);
    assert_int_equal(doc.root->u.first->kind, VH_JT_TRUE);
    vh__jt_doc_release(&doc);
    vh__jt_doc_release(&doc);
}

/* A refusal leaves the doc empty, whatever it held before (the header: "`doc` empty"). */
static void test_refusal_empties_doc(void **state)
{
    struct vh_error err = VH_ERROR_INIT;
    struct vh_jt_doc doc;

    (void)state;
    memset(&doc, 0xa5, sizeof(doc));
    assert_int_equal(vh__jt_parse(LIT("[1,]"), &doc, &err), VH_EINVAL);
    assert_null(doc.root);
    assert_null(doc.strings);
    assert_null(doc.chunks);
    vh__jt_doc_release(&doc);
}

/*
 * One parse with allocation `fail_at` failing. Returns 1 when that allocation was reached
 * (the parse must then have failed with VH_ENOMEM and left the doc empty), 0 when the parse
 * needed fewer allocations (it must then have succeeded).
 */
static int parse_failing(const char *json, size_t len, long fail_at, struct vh_jt_doc *doc)
{
    struct vh_error err = VH_ERROR_INIT;
    int rc;

    memset(doc, 0, sizeof(*doc));
    alloc_count = 0;
    alloc_fail_at = fail_at;
    rc = vh__jt_parse(json, len, doc, &err);
    alloc_fail_at = 0;
    if (alloc_count < fail_at) {
        if (rc != 0)
            fail_msg("no allocation failed, yet: %d %s", rc, err.msg);
        return 0;
    }
    if (rc != VH_ENOMEM)
        fail_msg("allocation %ld failing gave %d, not VH_ENOMEM: %s", fail_at, rc, err.msg);
    assert_int_equal(err.code, VH_ENOMEM);
    assert_string_equal(err.msg, "json: out of memory");
    assert_null(doc->root);
    assert_null(doc->strings);
    assert_null(doc->chunks);
    return 1;
}

static void torture(const char *json, size_t len)
{
    struct vh_jt_doc doc;
    long n, baseline = live_blocks;

    for (n = 1; parse_failing(json, len, n, &doc); n++) {
        assert_int_equal(live_blocks, baseline);
        assert_true(n < 100000);
    }
    check_tree(doc.root, 1);
    print_message("%zu bytes: %ld allocations, each failing in turn gave VH_ENOMEM\n", len, n - 1);
    vh__jt_doc_release(&doc);
    assert_int_equal(live_blocks, baseline);
    assert_true(n > 1);
}

static void test_oom(void **state)
{
    struct vh_buf b = VH_BUF_INIT(SIZE_MAX);
    size_t i;

    (void)state;
    torture(LIT("{\"a\":[1,2.5,\"x\\u00e9\",true,false,null,{\"b\":{}}],\"c\":\"str\"}"));
    torture(LIT("1"));
    /* A long real (converted off the stack) and an object large enough to sort its keys. */
    torture(LIT("[3.14159265358979323846264338327950288419716939937510582097494459230781640628]"));
    assert_int_equal(vh_buf_addc(&b, '{'), 0);
    for (i = 0; i < 100; i++)
        assert_int_equal(vh_buf_addf(&b, "\"k%zu\":[%zu.5e-1],", i, i), 0);
    assert_int_equal(vh_buf_adds(&b, "\"last\":{}}"), 0);
    torture(b.data, b.len);
    vh_buf_reset(&b);
    torture(LIT("\"s\""));
    /* Enough nodes for several chunks. */
    assert_int_equal(vh_buf_adds(&b, "{\"list\":["), 0);
    for (i = 0; i < 5000; i++)
        assert_int_equal(vh_buf_addf(&b, "%s{\"i\":%zu,\"s\":\"v%zu\"}", i ? "," : "", i, i), 0);
    assert_int_equal(vh_buf_adds(&b, "]}"), 0);
    torture(b.data, b.len);
    vh_buf_release(&b);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_literals),
        T(test_root_scalars),
        T(test_ints),
        T(test_reals),
        T(test_big_ints_are_reals),
        T(test_reals_ignore_locale),
        T(test_escapes),
        T(test_raw_utf8),
        T(test_string_runs),
        T(test_nested),
        T(test_member_order),
        T(test_get),
        T(test_quote_key),
        T(test_refuse_empty),
        T(test_refuse_syntax),
        T(test_refuse_numbers),
        T(test_refuse_strings),
        T(test_lone_surrogates),
        T(test_refuse_utf8),
        T(test_refuse_nul_byte),
        T(test_refuse_duplicates),
        T(test_big_object),
        T(test_depth),
        T(test_refuse_huge),
        T(test_long_string),
        T(test_long_array),
        T(test_tree_outlives_input),
        T(test_release),
        T(test_refusal_empties_doc),
        T(test_oom),
    };

    /* Before any other vh_ call, as alloc.h requires. */
    if (vh_replace_allocator(t_malloc, t_realloc, t_free) != 0)
        return 1;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
