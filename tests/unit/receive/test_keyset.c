/*
 * The inbox's in-memory key set (src/receive/keyset.c): finds what was added and only that,
 * through growth, and after removals in any order (a removal shifts later keys back, so a
 * key past the hole must still be found). Checked against a plain array.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <vocohook/alloc.h>

#include "receive/keyset_int.h"
#include "core/banned.h"

#define KEYS 5000

static struct vh__key *find(const struct vh__keyset *ks, const char *s)
{
    return vh__keyset_find(ks, s, strlen(s), vh__key_hash(s, strlen(s)));
}

static void name(unsigned i, char *out, size_t cap)
{
    snprintf(out, cap, "%x-%u", i * 2654435761u, i);
}

static void add_find_remove(void **state)
{
    struct vh__keyset ks;
    static struct vh__key *k[KEYS];
    static bool in[KEYS];
    char s[32];
    unsigned i, round;
    size_t n = 0;

    (void)state;
    memset(&ks, 0, sizeof(ks));
    assert_null(find(&ks, "none"));
    for (i = 0; i < KEYS; i++) {
        name(i, s, sizeof(s));
        k[i] = vh__key_new(s, strlen(s), (int64_t)i);
        assert_non_null(k[i]);
        assert_int_equal(vh__keyset_reserve(&ks, 1), 0);
        vh__keyset_add(&ks, k[i]);
        in[i] = true;
        n++;
    }
    assert_int_equal(ks.n, KEYS);
    assert_true(ks.cap >= 2 * KEYS);
    /* Remove in three rounds with different strides, checking everything after each. */
    for (round = 0; round < 3; round++) {
        for (i = round; i < KEYS; i += 3 + round) {
            if (!in[i])
                continue;
            vh__keyset_remove(&ks, k[i]);
            vh_free(k[i]);
            in[i] = false;
            n--;
        }
        assert_int_equal(ks.n, n);
        for (i = 0; i < KEYS; i++) {
            name(i, s, sizeof(s));
            if (in[i]) {
                assert_ptr_equal(find(&ks, s), k[i]);
                assert_int_equal(find(&ks, s)->id, i);
            } else {
                assert_null(find(&ks, s));
            }
        }
    }
    /* A removed key can come back. */
    name(0, s, sizeof(s));
    k[0] = vh__key_new(s, strlen(s), 42);
    assert_int_equal(vh__keyset_reserve(&ks, 1), 0);
    vh__keyset_add(&ks, k[0]);
    assert_int_equal(find(&ks, s)->id, 42);
    vh__keyset_release(&ks); /* frees the keys still in it */
    assert_null(ks.slot);
    assert_int_equal(ks.n, 0);
}

/* Keys sort as SQLite's BINARY collation sorts text: bytes first, then the shorter first. */
static void order(void **state)
{
    const char *want[] = {"", "A", "a", "ab", "abc", "b", "\xc3\xa9"};
    struct vh__key *k[7];
    size_t i;

    (void)state;
    for (i = 0; i < 7; i++)
        k[6 - i] = vh__key_new(want[i], strlen(want[i]), (int64_t)i);
    qsort(k, 7, sizeof(k[0]), vh__key_cmp);
    for (i = 0; i < 7; i++) {
        assert_string_equal(k[i]->s, want[i]);
        vh_free(k[i]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(add_find_remove),
        cmocka_unit_test(order),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
