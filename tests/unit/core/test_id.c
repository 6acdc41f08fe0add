#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <vocohook/id.h>

static bool id_ok(const char *s)
{
    return vh_id_is_valid(s, strlen(s));
}

static bool e164_ok(const char *s)
{
    return vh_e164_is_valid(s, strlen(s));
}

static void uuid_format_sets_version_and_variant(void **state)
{
    unsigned char zero[16] = {0}, ones[16];
    char out[VH_UUID_LEN + 1];

    (void)state;
    memset(ones, 0xff, sizeof(ones));
    vh_uuid_format(zero, out);
    assert_string_equal(out, "00000000-0000-4000-8000-000000000000");
    vh_uuid_format(ones, out);
    assert_string_equal(out, "ffffffff-ffff-4fff-bfff-ffffffffffff");
}

static void uuid_new_is_v4_and_unique(void **state)
{
    char a[VH_UUID_LEN + 1], b[VH_UUID_LEN + 1];
    struct vh_error err = VH_ERROR_INIT;

    (void)state;
    assert_int_equal(vh_uuid_new(a, &err), 0);
    assert_int_equal(vh_uuid_new(b, &err), 0);
    assert_int_equal(strlen(a), VH_UUID_LEN);
    assert_int_equal(a[14], '4');
    assert_non_null(strchr("89ab", a[19]));
    assert_string_not_equal(a, b);
    assert_true(id_ok(a)); /* our ids pass our own incoming-id check */
}

static void incoming_ids(void **state)
{
    char long_id[VH_ID_MAX + 2];

    (void)state;
    /* The seed's own example ids are not hex and must pass. */
    assert_true(id_ok("s1234567-abcd-1234-abcd-123456789012"));
    assert_true(id_ok("a1b2c3d4-e5f6-7890-abcd-ef1234567890"));
    assert_true(id_ok("c1234567-abcd-1234-abcd-123456789012"));
    assert_true(id_ok("x"));
    assert_true(id_ok("rec_ABC-123"));
    memset(long_id, 'a', sizeof(long_id));
    assert_true(vh_id_is_valid(long_id, VH_ID_MAX));
    assert_false(vh_id_is_valid(long_id, VH_ID_MAX + 1));
    assert_false(id_ok(""));
    assert_false(id_ok("has space"));
    assert_false(id_ok("slash/no"));
    assert_false(id_ok("dot.no"));
    assert_false(id_ok("ünicode"));
    assert_false(vh_id_is_valid("nul\0x", 5));
}

static void e164_numbers(void **state)
{
    (void)state;
    assert_true(e164_ok("+14155551234"));
    assert_true(e164_ok("+919876543210"));
    assert_true(e164_ok("+12"));              /* 2 digits: the minimum */
    assert_true(e164_ok("+123456789012345")); /* 15 digits: the maximum */
    assert_false(e164_ok("+1234567890123456"));
    assert_false(e164_ok("+1"));
    assert_false(e164_ok("14155551234"));
    assert_false(e164_ok("+04155551234"));
    assert_false(e164_ok("+1 415 555 1234"));
    assert_false(e164_ok("+1-415-5551234"));
    assert_false(e164_ok(""));
    assert_false(e164_ok("+"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(uuid_format_sets_version_and_variant),
        cmocka_unit_test(uuid_new_is_v4_and_unique),
        cmocka_unit_test(incoming_ids),
        cmocka_unit_test(e164_numbers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
