/*
 * Private to src/store/: the claims a SQLite store holds in memory (docs/decisions.md,
 * "SQLite: claims held in memory").
 *
 * One entry per claimed delivery, keyed by the delivery's row (its seq, >= 1): the node
 * that claimed it, until when, and the attempt count it had when claimed. That is what a
 * claim wrote into the row before (state in_flight, lease_owner, lease_until_ms, and the
 * count the record's fence compares), kept here instead, so a claim writes nothing.
 *
 * An open-addressing table with linear probing and backward-shift deletion, at most half
 * full. Pure: no locking (the caller's), no I/O.
 */
#ifndef VH_STORE_HELD_INT_H
#define VH_STORE_HELD_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <vocohook/store.h>

struct vh__held_entry {
    int64_t row;      /* the delivery's seq; 0 marks an empty slot */
    int64_t until_ms; /* the lease: taken back by vh__held_expire from then on */
    int64_t attempts; /* the delivery's attempt count when it was claimed */
    char node[VH_NODE_ID_MAX + 1];
};

struct vh__held {
    struct vh__held_entry *slots; /* cap slots; NULL until the first add */
    size_t cap;                   /* 0 or a power of two */
    size_t n;                     /* entries in use */
};

/* What a report of one attempt finds for its delivery (vh__held_match). */
enum vh__held_match {
    VH__HELD_NONE,  /* not held: nobody's claim */
    VH__HELD_MINE,  /* held by the report's node, for the report's attempt */
    VH__HELD_OTHER, /* held by another claim (another node, or a later claim of this one) */
};

/* Frees the table; it is empty and reusable afterwards. */
void vh__held_clear(struct vh__held *h);

/*
 * Holds `row` for `node` (1..VH_NODE_ID_MAX bytes) until `until_ms`, with `attempts`, or
 * replaces the entry `row` already has. Returns 0 or VH_ENOMEM (the table is unchanged).
 */
int vh__held_put(struct vh__held *h, int64_t row, const char *node, int64_t until_ms,
                 int64_t attempts);

/* Room for `more` entries beyond those held, so that as many puts cannot fail. 0 or VH_ENOMEM. */
int vh__held_reserve(struct vh__held *h, size_t more);

/* The entry of `row`, or NULL. */
const struct vh__held_entry *vh__held_find(const struct vh__held *h, int64_t row);

/* Whether a report by `node` of the attempt after `attempts` is `row`'s claim. */
enum vh__held_match vh__held_match(const struct vh__held *h, int64_t row, const char *node,
                                   int64_t attempts);

/* Drops `row`'s entry; false when it had none. */
bool vh__held_remove(struct vh__held *h, int64_t row);

/*
 * The rows `node` holds (none when NULL) and those whose lease ends by `ended_by`
 * (INT64_MAX: every row), in no order: writes up to `max` of them to `out` and returns how
 * many there are.
 */
size_t vh__held_list(const struct vh__held *h, const char *node, int64_t ended_by, int64_t *out,
                     size_t max);

#endif
