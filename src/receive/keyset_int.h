/*
 * A set of session ids in memory, each with its row id: the inbox's tail of keys not yet
 * merged into its `session_keys` index (inbox.c explains why). Open addressing with linear
 * probing, at most half full; a key is one allocation the set points to.
 *
 * Not thread-safe: the inbox's commit leader is its only user.
 */
#ifndef VH_RECEIVE_KEYSET_INT_H
#define VH_RECEIVE_KEYSET_INT_H

#include <stddef.h>
#include <stdint.h>

struct vh__key {
    int64_t id; /* the session's row id */
    uint64_t hash;
    size_t len;
    char s[]; /* `len` bytes, then a NUL */
};

struct vh__keyset {
    struct vh__key **slot;
    size_t cap; /* 0, or a power of two */
    size_t n;
};

/* The hash the set files `s` under. */
uint64_t vh__key_hash(const char *s, size_t len);

/* A new key (free it with vh_free), or NULL when out of memory. */
struct vh__key *vh__key_new(const char *s, size_t len, int64_t id);

/* Orders keys as SQLite's BINARY collation orders their text (qsort on `struct vh__key *`). */
int vh__key_cmp(const void *a, const void *b);

/* An empty set: zero it. vh__keyset_release frees the set and every key in it. */
void vh__keyset_release(struct vh__keyset *ks);

/* The key equal to `s`, or NULL. */
struct vh__key *vh__keyset_find(const struct vh__keyset *ks, const char *s, size_t len,
                                uint64_t hash);

/* Makes room for `more` adds that then cannot fail. Returns 0 or VH_ENOMEM. */
int vh__keyset_reserve(struct vh__keyset *ks, size_t more);

/* Adds `k` (not in the set; room reserved); the set owns it from now on. */
void vh__keyset_add(struct vh__keyset *ks, struct vh__key *k);

/* Takes `k` (in the set) out again; the caller owns it again. */
void vh__keyset_remove(struct vh__keyset *ks, struct vh__key *k);

#endif
