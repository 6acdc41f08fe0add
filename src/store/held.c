/*
 * The claims a SQLite store holds in memory (held_int.h): a table of delivery rows.
 */
#include "store/held_int.h"

#include <stdio.h>
#include <string.h>

#include <vocohook/alloc.h>
#include <vocohook/error.h>

#define HELD_MIN_CAP 64

/* Fibonacci hashing: rows are consecutive integers, the multiply spreads them. */
static size_t slot_of(const struct vh__held *h, int64_t row)
{
    return (size_t)(((uint64_t)row * UINT64_C(0x9e3779b97f4a7c15)) >> 32) & (h->cap - 1);
}

/* The slot holding `row`, or the empty slot where it would go. Needs cap > n. */
static size_t probe(const struct vh__held *h, int64_t row)
{
    size_t i = slot_of(h, row);

    while (h->slots[i].row != 0 && h->slots[i].row != row)
        i = (i + 1) & (h->cap - 1);
    return i;
}

void vh__held_clear(struct vh__held *h)
{
    vh_free(h->slots);
    memset(h, 0, sizeof(*h));
}

static int grow(struct vh__held *h, size_t cap)
{
    struct vh__held_entry *old = h->slots;
    const size_t old_cap = h->cap;
    size_t i;

    if (cap > SIZE_MAX / sizeof(*h->slots))
        return VH_ENOMEM;
    h->slots = vh_malloc(cap * sizeof(*h->slots));
    if (!h->slots) {
        h->slots = old;
        return VH_ENOMEM;
    }
    memset(h->slots, 0, cap * sizeof(*h->slots));
    h->cap = cap;
    for (i = 0; i < old_cap; i++)
        if (old[i].row != 0)
            h->slots[probe(h, old[i].row)] = old[i];
    vh_free(old);
    return 0;
}

int vh__held_reserve(struct vh__held *h, size_t more)
{
    size_t cap = h->cap ? h->cap : HELD_MIN_CAP;

    if (more > SIZE_MAX / 4 - h->n)
        return VH_ENOMEM;
    /* At most half full: probes stay short. */
    while (cap < 2 * (h->n + more))
        cap *= 2;
    return cap == h->cap ? 0 : grow(h, cap);
}

int vh__held_put(struct vh__held *h, int64_t row, const char *node, int64_t until_ms,
                 int64_t attempts)
{
    struct vh__held_entry *e;
    int rc;

    rc = vh__held_reserve(h, 1);
    if (rc < 0)
        return rc;
    e = &h->slots[probe(h, row)];
    if (e->row == 0)
        h->n++;
    e->row = row;
    e->until_ms = until_ms;
    e->attempts = attempts;
    snprintf(e->node, sizeof(e->node), "%s", node);
    return 0;
}

const struct vh__held_entry *vh__held_find(const struct vh__held *h, int64_t row)
{
    const struct vh__held_entry *e;

    if (h->n == 0 || row == 0)
        return NULL;
    e = &h->slots[probe(h, row)];
    return e->row == row ? e : NULL;
}

enum vh__held_match vh__held_match(const struct vh__held *h, int64_t row, const char *node,
                                   int64_t attempts)
{
    const struct vh__held_entry *e = vh__held_find(h, row);

    if (!e)
        return VH__HELD_NONE;
    return e->attempts == attempts && strcmp(e->node, node) == 0 ? VH__HELD_MINE : VH__HELD_OTHER;
}

/* Empties slot `i` and moves later entries of its run back, so every probe still finds them. */
static void remove_at(struct vh__held *h, size_t i)
{
    const size_t mask = h->cap - 1;
    size_t j = i, home;

    for (;;) {
        j = (j + 1) & mask;
        if (h->slots[j].row == 0)
            break;
        home = slot_of(h, h->slots[j].row);
        /* Entry j may fill the hole at i unless its home lies cyclically in (i, j]. */
        if (((j - home) & mask) >= ((j - i) & mask)) {
            h->slots[i] = h->slots[j];
            i = j;
        }
    }
    memset(&h->slots[i], 0, sizeof(h->slots[i]));
    h->n--;
}

bool vh__held_remove(struct vh__held *h, int64_t row)
{
    size_t i;

    if (h->n == 0 || row == 0)
        return false;
    i = probe(h, row);
    if (h->slots[i].row != row)
        return false;
    remove_at(h, i);
    return true;
}

size_t vh__held_list(const struct vh__held *h, const char *node, int64_t ended_by, int64_t *out,
                     size_t max)
{
    size_t i, n = 0;

    for (i = 0; i < h->cap; i++) {
        const struct vh__held_entry *e = &h->slots[i];

        if (e->row == 0 || (e->until_ms > ended_by && !(node && strcmp(e->node, node) == 0)))
            continue;
        if (n < max)
            out[n] = e->row;
        n++;
    }
    return n;
}
