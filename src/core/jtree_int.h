/*
 * A strict JSON parser (RFC 8259) into a read-only tree, for core/json.c. It replaced
 * jansson, which took 50-60 us to parse the 2 KB session body on the bench machine (a
 * quarter of `vocohook receive`'s CPU per webhook); see docs/decisions.md.
 *
 * What it accepts: exactly one JSON value of any type, surrounded by optional whitespace
 * (space, tab, LF, CR), at most VH_JSON_DEPTH_MAX (event.h) arrays/objects deep. What it
 * refuses: anything outside the grammar (a BOM, trailing commas, leading zeros, `+1`, `.5`,
 * `1.`, comments, single quotes, raw control characters in strings, a NUL byte anywhere),
 * invalid UTF-8 (overlong, surrogates, above U+10FFFF, truncated), escapes other than the
 * nine of RFC 8259, a \u escape that is a lone surrogate, \u0000 (strings are NUL-terminated
 * C strings), an integer outside int64, a real that overflows a double, and duplicate keys
 * (compared after unescaping).
 *
 * Errors: `json: <what> at byte N`, N the 0-based offset where the offending token starts:
 * the unexpected byte, the first byte of a bad UTF-8 sequence, the backslash of a bad
 * escape, the first byte of a bad number or literal (`tru`, `01`), the opening quote of a
 * duplicated key (the later one), the bracket one level too deep; the input's length when
 * it ends too early. The first error in input order wins, except that duplicate keys are
 * looked for when their object closes (so `{"a":1,"a":2,}` reports the trailing comma).
 * The messages event.h promises are kept: `json: empty input` (nothing but whitespace),
 * `json: invalid UTF-8 at byte N`, `json: \u0000 is not allowed in strings at byte N`,
 * `json: nested deeper than 32 levels at byte N`, `json: out of memory`. Reals are read in
 * the "C" locale whatever the program's LC_NUMERIC.
 *
 * Memory: the tree lives in one document: nodes in a few chunks, and every string and key
 * unescaped into one buffer as long as the input (an escape never grows its text, and the
 * quotes pay for the NUL). Nothing in the tree points into the input.
 */
#ifndef VH_CORE_JTREE_INT_H
#define VH_CORE_JTREE_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <vocohook/error.h>

enum vh_jt_kind {
    VH_JT_NULL,
    VH_JT_FALSE,
    VH_JT_TRUE,
    VH_JT_INT,  /* no fraction, no exponent: `12`, `-0` */
    VH_JT_REAL, /* a fraction or an exponent: `12.0`, `1e3` */
    VH_JT_STRING,
    VH_JT_ARRAY,
    VH_JT_OBJECT,
};

struct vh_jt {
    enum vh_jt_kind kind;
    uint32_t len;       /* STRING: bytes (no NUL inside); ARRAY, OBJECT: members */
    const char *key;    /* a member of an object: its key, unescaped, NUL-terminated; else NULL */
    uint32_t key_len;   /* bytes of key */
    uint32_t key_at;    /* a member: the offset of its key (the opening quote) in the input */
    struct vh_jt *next; /* the next element or member of the parent, in input order */
    union {
        int64_t i;           /* INT */
        double d;            /* REAL */
        const char *s;       /* STRING: unescaped, NUL-terminated */
        struct vh_jt *first; /* ARRAY, OBJECT: the first element or member, NULL when empty */
    } u;
};

struct vh_jt_chunk;

/* A parsed document; embed it, parse into it, release it. */
struct vh_jt_doc {
    struct vh_jt *root;
    char *strings;              /* every string and key */
    struct vh_jt_chunk *chunks; /* the nodes */
};

/*
 * Parses `len` bytes of `json` into `doc` (its previous contents are not freed: release it
 * first). Returns 0, or VH_EINVAL / VH_ETOOBIG (depth) / VH_ENOMEM with `err` set and `doc`
 * empty (every field NULL, so releasing it is harmless). Inputs are bounded by the caller
 * (VH_BODY_MAX); lengths above UINT32_MAX are refused with VH_ETOOBIG.
 */
int vh__jt_parse(const char *json, size_t len, struct vh_jt_doc *doc, struct vh_error *err);

/* Frees what `doc` holds and empties it; a released or zeroed doc may be released again. */
void vh__jt_doc_release(struct vh_jt_doc *doc);

/* The member `key` of `obj`, or NULL when absent or when `obj` is not an object. */
const struct vh_jt *vh__jt_get(const struct vh_jt *obj, const char *key);

/*
 * `key` (NUL-terminated UTF-8, as the parser leaves keys) fit to quote in a one-line
 * message: `"`, `\` and controls escaped as in JSON, cut after about 48 bytes (on a
 * character boundary) with "...".
 */
void vh__jt_quote_key(const char *key, char out[64]);

/* True for INT and REAL. */
static inline bool vh__jt_is_number(const struct vh_jt *v)
{
    return v->kind == VH_JT_INT || v->kind == VH_JT_REAL;
}

/* The value of an INT or REAL as a double. */
static inline double vh__jt_number(const struct vh_jt *v)
{
    return v->kind == VH_JT_INT ? (double)v->u.i : v->u.d;
}

#endif
