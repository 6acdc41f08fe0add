/*
 * The inbox's set of unmerged session ids (keyset_int.h). Linear probing; a removal shifts
 * the keys after it back, so a search never needs tombstones.
 */
#include "receive/keyset_int.h"

#include <stdbool.h>
#include <string.h>

#include <vocohook/alloc.h>
#include <vocohook/error.h>

#include "core/banned.h"

#define CAP_MIN 64

uint64_t vh__key_hash(const char *s, size_t len)
{
    uint64_t h = 0xcbf29ce484222325u; /* FNV-1a, then splitmix64's finalizer for the low bits */
    size_t i;

    for (i = 0; i < len; i++)
        h = (h ^ (unsigned char)s[i]) * 0x100000001b3u;
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9u;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebu;
    return h ^ (h >> 31);
}

struct vh__key *vh__key_new(const char *s, size_t len, int64_t id)
{
    struct vh__key *k;

    if (len > SIZE_MAX - sizeof(*k) - 1)
        return NULL;
    k = vh_malloc(sizeof(*k) + len + 1);
    if (!k)
        return NULL;
    k->id = id;
    k->hash = vh__key_hash(s, len);
    k->len = len;
    memcpy(k->s, s, len);
    k->s[len] = '\0';
    return k;
}

int vh__key_cmp(const void *a, const void *b)
{
    const struct vh__key *x = *(const struct vh__key *const *)a;
    const struct vh__key *y = *(const struct vh__key *const *)b;
    int c = memcmp(x->s, y->s, x->len < y->len ? x->len : y->len);

    if (c)
        return c;
    return (x->len > y->len) - (x->len < y->len);
}

void vh__keyset_release(struct vh__keyset *ks)
{
    size_t i;

    for (i = 0; i < ks->cap; i++)
        vh_free(ks->slot[i]);
    vh_free(ks->slot);
    memset(ks, 0, sizeof(*ks));
}

static bool same(const struct vh__key *k, const char *s, size_t len, uint64_t hash)
{
    return k->hash == hash && k->len == len && memcmp(k->s, s, len) == 0;
}

struct vh__key *vh__keyset_find(const struct vh__keyset *ks, const char *s, size_t len,
                                uint64_t hash)
{
    size_t mask = ks->cap - 1, i;

    if (!ks->cap)
        return NULL;
    for (i = hash & mask; ks->slot[i]; i = (i + 1) & mask) {
        if (same(ks->slot[i], s, len, hash))
            return ks->slot[i];
    }
    return NULL;
}

static void place(struct vh__key **slot, size_t cap, struct vh__key *k)
{
    size_t i;

    for (i = k->hash & (cap - 1); slot[i]; i = (i + 1) & (cap - 1))
        ;
    slot[i] = k;
}

int vh__keyset_reserve(struct vh__keyset *ks, size_t more)
{
    struct vh__key **slot;
    size_t cap = ks->cap ? ks->cap : CAP_MIN, i;

    if (more > SIZE_MAX / 2 - ks->n)
        return VH_ENOMEM;
    while ((ks->n + more) * 2 > cap) {
        if (cap > SIZE_MAX / 2 / sizeof(*slot))
            return VH_ENOMEM;
        cap *= 2;
    }
    if (cap == ks->cap)
        return 0;
    slot = vh_malloc(cap * sizeof(*slot));
    if (!slot)
        return VH_ENOMEM;
    memset(slot, 0, cap * sizeof(*slot));
    for (i = 0; i < ks->cap; i++) {
        if (ks->slot[i])
            place(slot, cap, ks->slot[i]);
    }
    vh_free(ks->slot);
    ks->slot = slot;
    ks->cap = cap;
    return 0;
}

void vh__keyset_add(struct vh__keyset *ks, struct vh__key *k)
{
    place(ks->slot, ks->cap, k);
    ks->n++;
}

void vh__keyset_remove(struct vh__keyset *ks, struct vh__key *k)
{
    size_t mask = ks->cap - 1, i, j, home;

    for (i = k->hash & mask; ks->slot[i] != k; i = (i + 1) & mask)
        ;
    /* Shift back each later key of the run that may sit at the hole (Knuth's algorithm R). */
    for (j = (i + 1) & mask; ks->slot[j]; j = (j + 1) & mask) {
        home = ks->slot[j]->hash & mask;
        if (((j - home) & mask) >= ((j - i) & mask)) {
            ks->slot[i] = ks->slot[j];
            i = j;
        }
    }
    ks->slot[i] = NULL;
    ks->n--;
}
