/*
 * Out-of-memory torture for the session model (STYLE.md §10, curl's torture tests): run each
 * operation with allocation 1, 2, … N failing until a run needs fewer than N allocations.
 * Every run that reaches its failing allocation must return VH_ENOMEM, leave the output
 * untouched and hold no memory afterwards (the test allocator counts live blocks; ASan
 * checks the rest); the last run must succeed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vocohook/alloc.h>
#include <vocohook/event.h>

#define TS_MS INT64_C(1773585128000)

#include "unit/oom.h"

static char *read_data(const char *rel, size_t *len)
{
    const char *dir = getenv("VH_SOURCE_DIR");
    char path[4096];
    FILE *f;
    char *buf;
    long n;

    assert_non_null(dir);
    snprintf(path, sizeof(path), "%s/tests/data/%s", dir, rel);
    f = fopen(path, "rb");
    if (!f)
        fail_msg("cannot open %s", path);
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    rewind(f);
    buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = '\0';
    fclose(f);
    *len = (size_t)n;
    return buf;
}

enum op { OP_SESSION, OP_INGEST, OP_EVENT };

/*
 * One parse with allocation `fail_at` failing. Returns 1 when that allocation was reached
 * (the parse must then have failed with VH_ENOMEM), 0 when the parse needed fewer
 * allocations (it must then have succeeded, and `*result` holds the parsed object).
 */
static int parse_once(enum op op, const char *buf, size_t len, long fail_at, void **result)
{
    static char sentinel;
    struct vh_error err = VH_ERROR_INIT;
    void *out = &sentinel;
    int rc;

    alloc_count = 0;
    alloc_fail_at = fail_at;
    if (op == OP_SESSION)
        rc = vh_session_parse(buf, len, 0, (struct vh_session **)&out, &err);
    else if (op == OP_INGEST)
        rc = vh_ingest_parse(buf, len, (struct vh_ingest **)&out, &err);
    else
        rc = vh_event_parse(buf, len, 0, (struct vh_event **)&out, &err);
    alloc_fail_at = 0;
    if (alloc_count < fail_at) {
        if (rc != 0)
            fail_msg("no allocation failed, yet: %s", err.msg);
        *result = out;
        return 0;
    }
    /* Whichever allocation fails (the tree, a copied string), the parse reports it. */
    if (rc != VH_ENOMEM)
        fail_msg("allocation %ld failing gave %d, not VH_ENOMEM: %s", fail_at, rc, err.msg);
    assert_string_equal(err.msg, "json: out of memory");
    assert_ptr_equal(out, &sentinel);
    return 1;
}

static void torture_parse(enum op op, const char *file)
{
    size_t len;
    char *buf = read_data(file, &len);
    long n, baseline = live_blocks;
    void *result = NULL;

    for (n = 1; parse_once(op, buf, len, n, &result); n++) {
        assert_int_equal(live_blocks, baseline);
        assert_true(n < 100000);
    }
    /* The tree's string buffer and nodes, then every string the session copies out. */
    assert_true(n > 10);
    print_message("%s: %ld allocations, each failing in turn gave VH_ENOMEM\n", file, n - 1);
    if (op == OP_SESSION)
        vh_session_free(result);
    else if (op == OP_INGEST)
        vh_ingest_free(result);
    else
        vh_event_free(result);
    assert_int_equal(live_blocks, baseline);
    free(buf);
}

static void test_parse_session_oom(void **state)
{
    (void)state;
    torture_parse(OP_SESSION, "good/seed_session.json");
    torture_parse(OP_SESSION, "good/escapes_session.json");
}

static void test_parse_ingest_oom(void **state)
{
    (void)state;
    torture_parse(OP_INGEST, "good/ingest_recording_key.json");
}

static void test_parse_event_oom(void **state)
{
    (void)state;
    torture_parse(OP_EVENT, "good/seed_payload.json");
}

/* Renders into an empty buffer and into one holding a prefix, failing allocation n. */
static void test_render_oom(void **state)
{
    struct vh_error err = VH_ERROR_INIT;
    struct vh_session *s = NULL;
    size_t len;
    char *buf = read_data("good/seed_session.json", &len);
    long n, baseline, before = live_blocks;
    int rc, prefixed;

    (void)state;
    assert_int_equal(vh_session_parse(buf, len, 0, &s, &err), 0);
    baseline = live_blocks;
    for (prefixed = 0; prefixed < 2; prefixed++) {
        for (n = 1;; n++) {
            struct vh_buf out = VH_BUF_INIT(VH_BODY_MAX);

            if (prefixed)
                assert_int_equal(vh_buf_adds(&out, "kept"), 0);
            vh_error_clear(&err);
            alloc_count = 0;
            alloc_fail_at = n;
            rc = vh_session_render(s, TS_MS, &out, &err);
            alloc_fail_at = 0;
            if (alloc_count < n) {
                assert_int_equal(rc, 0);
                assert_true(out.len > 1000);
                vh_buf_release(&out);
                break;
            }
            assert_int_equal(rc, VH_ENOMEM);
            assert_string_equal(err.msg, "render: out of memory");
            if (prefixed) {
                assert_string_equal(out.data, "kept");
                assert_int_equal(out.len, 4);
            } else {
                assert_null(out.data);
            }
            vh_buf_release(&out);
            assert_int_equal(live_blocks, baseline);
        }
        /* One reservation: the whole body costs a single allocation. */
        assert_int_equal(n, 2);
    }
    vh_session_free(s);
    assert_int_equal(live_blocks, before);
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_session_oom),
        cmocka_unit_test(test_parse_ingest_oom),
        cmocka_unit_test(test_parse_event_oom),
        cmocka_unit_test(test_render_oom),
    };

    /* Before any other vh_ call, as alloc.h requires. */
    if (vh_replace_allocator(t_malloc, t_realloc, t_free) != 0)
        return 1;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
