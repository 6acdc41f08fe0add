/*
 * vh_number_format against JavaScript's Number#toString: the examples of the brief, and
 * tests/data/good/numbers.tsv, which node itself wrote (numbers.gen.js): every power of two
 * (the asymmetric round-trip intervals where a naive shortest search goes wrong), random
 * bit patterns, and decimal-looking values.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vocohook/event.h>

static void expect(double v, const char *want)
{
    char out[VH_NUMBER_MAX];
    size_t n;

    memset(out, 'X', sizeof(out));
    n = vh_number_format(v, out);
    if (strcmp(out, want) != 0)
        fail_msg("vh_number_format(%.17g) = %s, want %s", v, out, want);
    assert_int_equal(n, strlen(want));
}

static void test_examples(void **state)
{
    (void)state;
    expect(2.12, "2.12");
    expect(0.1 + 0.2, "0.30000000000000004");
    expect(100, "100");
    expect(1e21, "1e+21");
    expect(1e20, "100000000000000000000");
    expect(1e-7, "1e-7");
    expect(1.5e-7, "1.5e-7");
    expect(0.000001, "0.000001");
    expect(0.0000015, "0.0000015");
    expect(123456789012345680000.0, "123456789012345680000");
    expect(5e-324, "5e-324");
    expect(1.7976931348623157e308, "1.7976931348623157e+308");
    expect(-1.7976931348623157e308, "-1.7976931348623157e+308");
    expect(-0.0, "0");
    expect(0.0, "0");
    expect(-2.5, "-2.5");
    expect(1e9, "1000000000");
    expect(0.5, "0.5");
    expect(123.456, "123.456");
    expect(1e23, "1e+23");
    expect(9007199254740993.0, "9007199254740992");
    expect(NAN, "NaN");
    expect(INFINITY, "Infinity");
    expect(-INFINITY, "-Infinity");
}

static double from_bits(const char *hex)
{
    uint64_t bits = strtoull(hex, NULL, 16);
    double v;

    memcpy(&v, &bits, sizeof(v));
    return v;
}

static void test_javascript_table(void **state)
{
    const char *dir = getenv("VH_SOURCE_DIR");
    char path[4096], line[256];
    size_t lines = 0, bad = 0;
    FILE *f;

    (void)state;
    assert_non_null(dir);
    snprintf(path, sizeof(path), "%s/tests/data/good/numbers.tsv", dir);
    f = fopen(path, "r");
    if (!f)
        fail_msg("cannot open %s", path);
    while (fgets(line, sizeof(line), f)) {
        char out[VH_NUMBER_MAX], *tab, *want;
        double v;

        if (line[0] == '#')
            continue;
        line[strcspn(line, "\n")] = '\0';
        tab = strchr(line, '\t');
        assert_non_null(tab);
        *tab = '\0';
        want = tab + 1;
        v = from_bits(line);
        vh_number_format(v, out);
        if (strcmp(out, want) != 0) {
            print_error("%s: got %s, want %s\n", line, out, want);
            bad++;
        }
        /* And it reads back as the same double. */
        assert_true(strtod(out, NULL) == v);
        lines++;
    }
    fclose(f);
    assert_true(lines > 2500);
    if (bad)
        fail_msg("%zu of %zu numbers differ from JavaScript", bad, lines);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_examples),
        cmocka_unit_test(test_javascript_table),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
