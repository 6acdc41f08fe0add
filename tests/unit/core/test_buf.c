#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <vocohook/alloc.h>
#include <vocohook/buf.h>
#include <vocohook/error.h>

static void add_and_terminate(void **state)
{
    struct vh_buf b = VH_BUF_INIT(1024);

    (void)state;
    assert_string_equal(vh_buf_cstr(&b), "");
    assert_int_equal(vh_buf_adds(&b, "hello"), 0);
    assert_int_equal(vh_buf_addc(&b, ' '), 0);
    assert_int_equal(vh_buf_addf(&b, "%d-%s", 42, "x"), 0);
    assert_int_equal(b.len, 10);
    assert_string_equal(b.data, "hello 42-x");
    assert_int_equal(b.data[b.len], '\0');
    vh_buf_reset(&b);
    assert_int_equal(b.len, 0);
    assert_string_equal(vh_buf_cstr(&b), "");
    assert_non_null(b.data); /* memory kept */
    vh_buf_release(&b);
    assert_null(b.data);
    assert_int_equal(b.max, 1024);
}

static void bound_is_exact_and_failure_leaves_buffer(void **state)
{
    struct vh_buf b = VH_BUF_INIT(8);

    (void)state;
    assert_int_equal(vh_buf_add(&b, "12345678", 8), 0); /* exactly max fits */
    assert_int_equal(vh_buf_add(&b, "9", 1), VH_ETOOBIG);
    assert_int_equal(b.len, 8);
    assert_string_equal(b.data, "12345678");
    assert_true(b.cap <= 9); /* never holds more than the bound needs */
    vh_buf_reset(&b);
    assert_int_equal(vh_buf_addf(&b, "%s", "far too long for eight"), VH_ETOOBIG);
    assert_int_equal(b.len, 0);
    assert_int_equal(vh_buf_add(&b, "x", SIZE_MAX), VH_ETOOBIG); /* overflow-checked */
    vh_buf_release(&b);
}

static void long_formatted_text(void **state)
{
    struct vh_buf b = VH_BUF_INIT(1 << 20);
    char big[1000];
    size_t i;

    (void)state;
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    for (i = 0; i < 50; i++)
        assert_int_equal(vh_buf_addf(&b, "[%s]", big), 0);
    assert_int_equal(b.len, 50 * 1001);
    assert_int_equal(b.data[0], '[');
    assert_int_equal(b.data[b.len - 1], ']');
    vh_buf_release(&b);
}

static void detach_hands_over(void **state)
{
    struct vh_buf b = VH_BUF_INIT(64);
    size_t len = 99;
    char *p;

    (void)state;
    p = vh_buf_detach(&b, &len); /* empty buffer: still a string */
    assert_non_null(p);
    assert_string_equal(p, "");
    assert_int_equal(len, 0);
    vh_free(p);
    assert_int_equal(vh_buf_adds(&b, "abc"), 0);
    p = vh_buf_detach(&b, &len);
    assert_string_equal(p, "abc");
    assert_int_equal(len, 3);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    vh_free(p);
}

/* Appending the buffer's own bytes works when the add moves the data (it was a use after free). */
static void add_own_bytes(void **state)
{
    struct vh_buf b = VH_BUF_INIT(1 << 20);
    char want[600];

    (void)state;
    assert_int_equal(vh_buf_adds(&b, "0123456789012345678901234567890123456789"), 0);
    assert_int_equal(b.cap, 64);
    assert_int_equal(vh_buf_add(&b, b.data, b.len), 0); /* must grow past 64 */
    assert_int_equal(b.len, 80);
    assert_string_equal(b.data, "01234567890123456789012345678901234567890123456789012345678901234"
                                "567890123456789");
    vh_buf_reset(&b);
    assert_int_equal(vh_buf_adds(&b, "abcdef"), 0);
    assert_int_equal(vh_buf_add(&b, b.data + 2, 3), 0); /* no growth */
    assert_string_equal(b.data, "abcdefcde");
    vh_buf_release(&b);

    memset(want, 'x', 600);
    assert_int_equal(vh_buf_add(&b, want, 300), 0);
    assert_int_equal(vh_buf_addf(&b, "%s", b.data), 0); /* longer than the stack copy */
    assert_int_equal(b.len, 600);
    assert_memory_equal(b.data, want, 600);
    assert_int_equal(b.data[600], '\0');
    vh_buf_release(&b);
}

static int fail_after;
static void *failing_malloc(size_t n)
{
    return fail_after-- > 0 ? malloc(n) : NULL;
}
static void *failing_realloc(void *p, size_t n)
{
    return fail_after-- > 0 ? realloc(p, n) : NULL;
}

static void out_of_memory_is_returned(void **state)
{
    struct vh_buf b = VH_BUF_INIT(1 << 20);
    char chunk[100] = {0};

    (void)state;
    assert_int_equal(vh_replace_allocator(failing_malloc, failing_realloc, free), 0);
    fail_after = 1;
    assert_int_equal(vh_buf_add(&b, chunk, sizeof(chunk)), 0);
    assert_int_equal(vh_buf_add(&b, chunk, 1000), VH_ENOMEM); /* must grow, cannot */
    assert_int_equal(b.len, 100);
    assert_null(vh_strndup("abc", 3));
    assert_int_equal(vh_replace_allocator(malloc, realloc, free), 0);
    assert_int_equal(vh_replace_allocator(NULL, realloc, free), VH_EINVAL);
    vh_buf_release(&b);
}

static void errors_first_wins(void **state)
{
    struct vh_error err = VH_ERROR_INIT;

    (void)state;
    assert_int_equal(vh_error_set(&err, VH_EINVAL, "inner '%s'", "x"), VH_EINVAL);
    assert_int_equal(vh_error_set(&err, VH_EIO, "outer"), VH_EIO);
    assert_int_equal(err.code, VH_EINVAL);
    assert_string_equal(err.msg, "inner 'x'");
    assert_int_equal(vh_error_set(NULL, VH_EIO, "ignored"), VH_EIO);
    vh_error_clear(&err);
    assert_int_equal(err.code, 0);
    assert_string_equal(err.msg, "");
    assert_string_equal(vh_strerror(VH_ESIG), "signature verification failed");
    assert_string_equal(vh_strerror(12345), "unknown error");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(add_and_terminate),
        cmocka_unit_test(bound_is_exact_and_failure_leaves_buffer),
        cmocka_unit_test(long_formatted_text),
        cmocka_unit_test(detach_hands_over),
        cmocka_unit_test(add_own_bytes),
        cmocka_unit_test(out_of_memory_is_returned),
        cmocka_unit_test(errors_first_wins),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
