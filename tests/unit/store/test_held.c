/*
 * The SQLite store's claims held in memory (src/store/held.c): the table against a plain
 * array doing the same puts, removals and expiries, its leases and nodes, and a failed
 * allocation that leaves it as it was.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <vocohook/alloc.h>
#include <vocohook/error.h>

#include "store/held_int.h"
#include "unit/oom.h"

#define ROWS 5000

/* The model: for each row 1..ROWS, whether it is held, and until when. */
struct model {
    bool held[ROWS + 1];
    int64_t until[ROWS + 1];
    size_t n;
};

static uint64_t rng = 0x2545f4914f6cdd1dULL;

static uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static void assert_same(const struct vh__held *h, const struct model *m)
{
    size_t row, found = 0;

    assert_int_equal(h->n, m->n);
    for (row = 1; row <= ROWS; row++) {
        const struct vh__held_entry *e = vh__held_find(h, (int64_t)row);

        if (!m->held[row]) {
            assert_null(e);
            continue;
        }
        assert_non_null(e);
        assert_int_equal(e->row, row);
        assert_int_equal(e->until_ms, m->until[row]);
        found++;
    }
    assert_int_equal(found, m->n);
}

/* Lists what `node` holds or what ended by `now`, then drops it, as a recovery does. */
static size_t expire(struct vh__held *h, const char *node, int64_t now)
{
    size_t n = vh__held_list(h, node, now, NULL, 0), i;
    int64_t *rows = calloc(n + 1, sizeof(*rows));

    assert_non_null(rows);
    assert_int_equal(vh__held_list(h, node, now, rows, n), n);
    for (i = 0; i < n; i++)
        assert_true(vh__held_remove(h, rows[i]));
    free(rows);
    return n;
}

static void matches_a_plain_array_through_puts_removals_and_expiries(void **state)
{
    struct vh__held h = {0};
    struct model *m = calloc(1, sizeof(*m));
    int64_t now = 1000;
    size_t i, k;

    (void)state;
    assert_non_null(m);
    for (k = 0; k < 40; k++) {
        /* A batch of claims, mostly of rows next to each other, as a due scan returns them. */
        size_t start = 1 + (size_t)(next_rand() % ROWS);

        for (i = 0; i < 64; i++) {
            size_t row = 1 + (start + i - 1) % ROWS;
            int64_t until = now + (int64_t)(next_rand() % 100);

            assert_int_equal(vh__held_put(&h, (int64_t)row, "node-a", until, 0), 0);
            if (!m->held[row])
                m->n++;
            m->held[row] = true;
            m->until[row] = until;
        }
        /* Records of some of them, in any order, and of rows nobody holds. */
        for (i = 0; i < 48; i++) {
            size_t row = 1 + (size_t)(next_rand() % ROWS);

            assert_int_equal(vh__held_remove(&h, (int64_t)row), m->held[row]);
            if (m->held[row])
                m->n--;
            m->held[row] = false;
        }
        assert_same(&h, m);
        /* Time passes; leases that ended are taken back. */
        now += 20;
        {
            size_t want = 0, row;

            for (row = 1; row <= ROWS; row++) {
                if (m->held[row] && m->until[row] <= now) {
                    m->held[row] = false;
                    want++;
                }
            }
            m->n -= want;
            assert_int_equal(expire(&h, NULL, now), want);
        }
        assert_same(&h, m);
    }
    assert_false(vh__held_remove(&h, 0));
    assert_null(vh__held_find(&h, 0));
    vh__held_clear(&h);
    assert_int_equal(h.n, 0);
    assert_null(vh__held_find(&h, 1));
    assert_false(vh__held_remove(&h, 1));
    free(m);
}

static void a_report_matches_only_its_own_claim(void **state)
{
    struct vh__held h = {0};
    const struct vh__held_entry *e;

    (void)state;
    assert_int_equal(vh__held_match(&h, 7, "node-a", 0), VH__HELD_NONE);
    assert_int_equal(vh__held_put(&h, 7, "node-a", 500, 2), 0);
    assert_int_equal(vh__held_match(&h, 7, "node-a", 2), VH__HELD_MINE);
    /* Another node, or this node's report of an earlier attempt. */
    assert_int_equal(vh__held_match(&h, 7, "node-b", 2), VH__HELD_OTHER);
    assert_int_equal(vh__held_match(&h, 7, "node-a", 1), VH__HELD_OTHER);
    assert_int_equal(vh__held_match(&h, 8, "node-a", 2), VH__HELD_NONE);

    /* A second claim of the same row replaces the first. */
    assert_int_equal(vh__held_put(&h, 7, "node-b", 900, 3), 0);
    assert_int_equal(h.n, 1);
    e = vh__held_find(&h, 7);
    assert_non_null(e);
    assert_string_equal(e->node, "node-b");
    assert_int_equal(e->until_ms, 900);
    assert_int_equal(vh__held_match(&h, 7, "node-a", 2), VH__HELD_OTHER);
    assert_int_equal(vh__held_match(&h, 7, "node-b", 3), VH__HELD_MINE);
    vh__held_clear(&h);
}

static void a_nodes_claims_are_listed_at_once_and_others_by_lease(void **state)
{
    struct vh__held h = {0};
    int64_t row;

    (void)state;
    for (row = 1; row <= 300; row++)
        assert_int_equal(
            vh__held_put(&h, row, row % 3 == 0 ? "restarted" : "other", row <= 150 ? 100 : 200, 0),
            0);
    /* Every row, and only as many as there is room for. */
    {
        int64_t few[5];

        assert_int_equal(vh__held_list(&h, NULL, INT64_MAX, few, 5), 300);
        for (row = 0; row < 5; row++)
            assert_non_null(vh__held_find(&h, few[row]));
    }
    /* Nothing has ended yet, and no node is named. */
    assert_int_equal(expire(&h, NULL, 99), 0);
    /* The restarted node's 100 go at once; the others' leases have not ended. */
    assert_int_equal(expire(&h, "restarted", 99), 100);
    assert_int_equal(h.n, 200);
    for (row = 1; row <= 300; row++)
        assert_true((vh__held_find(&h, row) != NULL) == (row % 3 != 0));
    /* The leases ending at 100: the other node's 100 of rows 1..150. */
    assert_int_equal(expire(&h, NULL, 100), 100);
    assert_int_equal(expire(&h, NULL, 200), 100);
    assert_int_equal(h.n, 0);
    vh__held_clear(&h);
}

static void a_failed_allocation_leaves_the_table_as_it_was(void **state)
{
    struct vh__held h = {0};
    long live;
    int64_t row;
    size_t cap;

    (void)state;
    live = live_blocks;
    /* The first put allocates; it fails and nothing is held. */
    alloc_count = 0;
    alloc_fail_at = 1;
    assert_int_equal(vh__held_put(&h, 1, "n", 10, 0), VH_ENOMEM);
    assert_int_equal(h.n, 0);
    alloc_fail_at = 0;
    for (row = 1; row <= 32; row++)
        assert_int_equal(vh__held_put(&h, row, "n", 10, 0), 0);
    cap = h.cap;
    /* The put that would grow the table fails; the 32 entries stay. */
    alloc_count = 0;
    alloc_fail_at = 1;
    assert_int_equal(vh__held_put(&h, 33, "n", 10, 0), VH_ENOMEM);
    alloc_fail_at = 0;
    assert_int_equal(h.n, 32);
    assert_int_equal(h.cap, cap);
    for (row = 1; row <= 32; row++)
        assert_non_null(vh__held_find(&h, row));
    assert_null(vh__held_find(&h, 33));
    /* Reserved room cannot fail. */
    assert_int_equal(vh__held_reserve(&h, 100), 0);
    cap = h.cap;
    alloc_count = 0;
    alloc_fail_at = 1;
    for (row = 33; row <= 132; row++)
        assert_int_equal(vh__held_put(&h, row, "n", 10, 0), 0);
    alloc_fail_at = 0;
    assert_int_equal(h.cap, cap);
    vh__held_clear(&h);
    assert_int_equal(live_blocks, live);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(matches_a_plain_array_through_puts_removals_and_expiries),
        cmocka_unit_test(a_report_matches_only_its_own_claim),
        cmocka_unit_test(a_nodes_claims_are_listed_at_once_and_others_by_lease),
        cmocka_unit_test(a_failed_allocation_leaves_the_table_as_it_was),
    };

    /* Every allocation goes through the counting allocator (unit/oom.h). */
    if (vh_replace_allocator(t_malloc, t_realloc, t_free) != 0)
        return 1;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
