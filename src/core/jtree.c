/*
 * The strict JSON parser of jtree_int.h: one pass over the bytes, recursive descent (the
 * depth is bounded before each recursion), strings unescaped straight into the document's
 * string buffer, nodes taken from chunks that double in size.
 *
 * Duplicate keys are looked for when an object closes: pairwise for small objects (the
 * session's are), by sorting the members' keys for larger ones, so an object of n members
 * costs O(n log n) and not O(n^2). The message names the later of the first duplicated pair.
 */
#include "core/jtree_int.h"

#include <inttypes.h>
#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vocohook/alloc.h>
#include <vocohook/event.h>

#include "core/utf8_int.h"
#include "core/banned.h"

#define CHUNK_FIRST   32    /* nodes in the first chunk; each next chunk doubles */
#define CHUNK_MAX     65536 /* nodes in a chunk, at most */
#define PAIRWISE_MAX  16    /* objects up to this many members: compare keys pairwise */
#define NUMBER_INLINE 64    /* real numbers up to this long are converted on the stack */

struct vh_jt_chunk {
    struct vh_jt_chunk *next;
    size_t used, cap;
    struct vh_jt nodes[];
};

struct parser {
    const unsigned char *in;
    size_t len;
    size_t pos;
    char *out;      /* the document's string buffer */
    size_t out_len; /* bytes of it used */
    struct vh_jt_doc *doc;
    unsigned depth;
    struct vh_error *err;
};

/* --- errors ---------------------------------------------------------------------------- */

static int syntax(struct parser *ps, size_t at, const char *what)
{
    return vh_error_set(ps->err, VH_EINVAL, "json: %s at byte %zu", what, at);
}

static int nomem(struct parser *ps)
{
    return vh_error_set(ps->err, VH_ENOMEM, "json: out of memory");
}

/* The byte at `at` is not what the grammar allows there (or the input ended). */
static int unexpected(struct parser *ps, size_t at)
{
    unsigned char c;

    if (at >= ps->len)
        return syntax(ps, ps->len, "unexpected end of input");
    c = ps->in[at];
    if (c == '\'')
        return vh_error_set(ps->err, VH_EINVAL, "json: unexpected \"'\" at byte %zu", at);
    if (c > 0x20 && c < 0x7f)
        return vh_error_set(ps->err, VH_EINVAL, "json: unexpected '%c' at byte %zu", c, at);
    return vh_error_set(ps->err, VH_EINVAL, "json: unexpected byte 0x%02x at byte %zu", c, at);
}

/*
 * An object key from the input, fit to quote in a one-line message: `"` `\` and controls
 * escaped as in JSON, cut after about 48 bytes (on a character boundary) with "...".
 */
void vh__jt_quote_key(const char *key, char out[64])
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *k = (const unsigned char *)key;
    size_t o = 0, cut = 0, i, n, w;
    char piece[6];

    for (i = 0; k[i]; i += n) {
        n = 1;
        if (k[i] >= 0xc0) /* a UTF-8 lead byte: the parser has checked the sequence */
            while (n < 4 && (k[i + n] & 0xc0) == 0x80)
                n++;
        if (k[i] == '"' || k[i] == '\\') {
            piece[0] = '\\';
            piece[1] = (char)k[i];
            w = 2;
        } else if (k[i] < 0x20 || k[i] == 0x7f) {
            memcpy(piece, "\\u00", 4);
            piece[4] = hex[k[i] >> 4];
            piece[5] = hex[k[i] & 0x0f];
            w = 6;
        } else {
            memcpy(piece, key + i, n);
            w = n;
        }
        if (o + w > 48) {
            memcpy(out + cut, "...", 3);
            o = cut + 3;
            break;
        }
        memcpy(out + o, piece, w);
        o += w;
        if (o <= 45)
            cut = o;
    }
    out[o] = '\0';
}

/* --- nodes ----------------------------------------------------------------------------- */

static struct vh_jt *node_new(struct parser *ps)
{
    struct vh_jt_chunk *ch = ps->doc->chunks;
    struct vh_jt *n;

    if (!ch || ch->used == ch->cap) {
        size_t cap = ch ? ch->cap * 2 : CHUNK_FIRST;

        if (cap > CHUNK_MAX)
            cap = CHUNK_MAX;
        ch = vh_malloc(sizeof(*ch) + cap * sizeof(ch->nodes[0]));
        if (!ch)
            return NULL;
        ch->next = ps->doc->chunks;
        ch->used = 0;
        ch->cap = cap;
        ps->doc->chunks = ch;
    }
    n = &ch->nodes[ch->used++];
    memset(n, 0, sizeof(*n));
    return n;
}

/* --- strings --------------------------------------------------------------------------- */

static int hex4(const unsigned char *s, unsigned *out)
{
    unsigned v = 0;
    int i;

    for (i = 0; i < 4; i++) {
        unsigned char c = s[i];

        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (unsigned)(c - 'A' + 10);
        else
            return -1;
    }
    *out = v;
    return 0;
}

static size_t utf8_put(char *out, unsigned cp)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xc0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xe0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* The \u escape at ps->pos (the backslash): appends its character, moves past it. */
static int unicode_escape(struct parser *ps)
{
    size_t at = ps->pos;
    unsigned cp, lo;

    if (ps->len - at < 6 || hex4(ps->in + at + 2, &cp) < 0)
        return syntax(ps, at, "invalid \\u escape");
    ps->pos += 6;
    if (cp == 0)
        return syntax(ps, at, "\\u0000 is not allowed in strings");
    /*
     * A lone surrogate is valid JSON (RFC 8259 §7, §8.2): JavaScript's JSON.stringify writes
     * one for a string cut between the halves of a pair. It cannot be UTF-8, so it reads as
     * U+FFFD, as WHATWG decoders and Go's encoding/json read it; the next escape is left to
     * the loop.
     */
    if (cp >= 0xdc00 && cp <= 0xdfff)
        cp = 0xfffd;
    if (cp >= 0xd800 && cp <= 0xdbff) {
        if (ps->len - ps->pos < 6 || ps->in[ps->pos] != '\\' || ps->in[ps->pos + 1] != 'u' ||
            hex4(ps->in + ps->pos + 2, &lo) < 0 || lo < 0xdc00 || lo > 0xdfff) {
            cp = 0xfffd;
        } else {
            ps->pos += 6;
            cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
        }
    }
    ps->out_len += utf8_put(ps->out + ps->out_len, cp);
    return 0;
}

#define ONES  UINT64_C(0x0101010101010101)
#define HIGHS UINT64_C(0x8080808080808080)

/* The high bit of each byte of `w` that is below `c` (c <= 0x80; exact in the lowest one). */
static uint64_t bytes_below(uint64_t w, unsigned c)
{
    return (w - ONES * c) & ~w & HIGHS;
}

/*
 * How many bytes from `p` a string copies as they are: printable ASCII but the quote and the
 * backslash. Eight at a time: a byte that ends the run sets its high bit in `m` (a borrow may
 * also mark bytes after it, never one before), and the lowest marked byte is where it ends.
 */
static size_t plain_run(const unsigned char *p, size_t n)
{
    size_t i = 0;

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ && defined(__GNUC__)
    for (; n - i >= 8; i += 8) {
        uint64_t w, m;

        memcpy(&w, p + i, 8);
        m = (w & HIGHS) | bytes_below(w, 0x20) | bytes_below(w ^ (ONES * '"'), 1) |
            bytes_below(w ^ (ONES * '\\'), 1);
        if (m)
            return i + (size_t)(__builtin_ctzll(m) >> 3);
    }
#endif
    while (i < n && p[i] >= 0x20 && p[i] < 0x80 && p[i] != '"' && p[i] != '\\')
        i++;
    return i;
}

/*
 * The string at ps->pos (its opening quote): unescaped into the string buffer, with a NUL.
 * Sets *s and *n to it. The output never outruns the input: an escape is 2 to 12 bytes for
 * at most 4 of output, a raw byte is copied as is, and the two quotes pay for the NUL.
 */
static int parse_string(struct parser *ps, const char **s, uint32_t *n)
{
    const unsigned char *in = ps->in;
    size_t start = ps->out_len;
    int rc;

    ps->pos++;
    for (;;) {
        size_t run = ps->pos + plain_run(in + ps->pos, ps->len - ps->pos);
        unsigned char c;

        memcpy(ps->out + ps->out_len, in + ps->pos, run - ps->pos);
        ps->out_len += run - ps->pos;
        ps->pos = run;
        if (ps->pos >= ps->len)
            return unexpected(ps, ps->pos);
        c = in[ps->pos];
        if (c == '"') {
            ps->pos++;
            break;
        }
        if (c < 0x20)
            return syntax(ps, ps->pos, "control character in a string");
        if (c >= 0x80) {
            size_t k = vh__utf8_seq_len(in + ps->pos, ps->len - ps->pos);

            if (!k)
                return syntax(ps, ps->pos, "invalid UTF-8");
            memcpy(ps->out + ps->out_len, in + ps->pos, k);
            ps->out_len += k;
            ps->pos += k;
            continue;
        }
        /* A backslash. */
        if (ps->pos + 1 >= ps->len)
            return unexpected(ps, ps->len);
        switch (in[ps->pos + 1]) {
        case '"':
        case '\\':
        case '/':
            c = in[ps->pos + 1];
            break;
        case 'b':
            c = '\b';
            break;
        case 'f':
            c = '\f';
            break;
        case 'n':
            c = '\n';
            break;
        case 'r':
            c = '\r';
            break;
        case 't':
            c = '\t';
            break;
        case 'u':
            rc = unicode_escape(ps);
            if (rc < 0)
                return rc;
            continue;
        default:
            return syntax(ps, ps->pos, "invalid escape");
        }
        ps->out[ps->out_len++] = (char)c;
        ps->pos += 2;
    }
    ps->out[ps->out_len++] = '\0';
    *s = ps->out + start;
    *n = (uint32_t)(ps->out_len - start - 1);
    return 0;
}

/* --- numbers --------------------------------------------------------------------------- */

static bool is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

/*
 * strtod follows LC_NUMERIC, which a program embedding the library may have set (a decimal
 * comma, or U+066B). Reals are converted under a "C" locale of their own, switched to for
 * this thread only (uselocale), which neither reads nor changes the global locale.
 */
static locale_t c_locale;
static pthread_once_t c_locale_once = PTHREAD_ONCE_INIT;

static void c_locale_init(void)
{
    c_locale = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
}

/* A real's text (already checked against the grammar) converted with strtod in "C". */
static int real_value(struct parser *ps, size_t at, size_t n, double *out)
{
    char inline_buf[NUMBER_INLINE], *buf = inline_buf, *end = NULL;
    locale_t old;
    double d;
    bool whole;

    pthread_once(&c_locale_once, c_locale_init);
    if (!c_locale)
        return nomem(ps); /* newlocale fails only for want of memory: "C" always exists */
    if (n >= sizeof(inline_buf)) {
        buf = vh_malloc(n + 1);
        if (!buf)
            return nomem(ps);
    }
    memcpy(buf, ps->in + at, n);
    buf[n] = '\0';
    old = uselocale(c_locale);
    d = strtod(buf, &end);
    uselocale(old);
    whole = end == buf + n;
    if (buf != inline_buf)
        vh_free(buf);
    if (!whole) /* cannot happen for text the grammar accepted; never a silent misread */
        return syntax(ps, at, "invalid number");
    if (isinf(d))
        return syntax(ps, at, "number out of range");
    *out = d;
    return 0;
}

static int parse_number(struct parser *ps, struct vh_jt *v)
{
    const unsigned char *in = ps->in;
    size_t at = ps->pos, digits;
    bool neg = false, real = false;
    uint64_t mag = 0, limit;

    if (in[ps->pos] == '-') {
        neg = true;
        ps->pos++;
    }
    if (ps->pos >= ps->len || !is_digit(in[ps->pos]))
        return unexpected(ps, ps->pos);
    if (in[ps->pos] == '0' && ps->pos + 1 < ps->len && is_digit(in[ps->pos + 1]))
        return syntax(ps, ps->pos, "leading zero in a number");
    digits = ps->pos;
    while (ps->pos < ps->len && is_digit(in[ps->pos]))
        ps->pos++;
    digits = ps->pos - digits;
    if (ps->pos < ps->len && in[ps->pos] == '.') {
        real = true;
        ps->pos++;
        if (ps->pos >= ps->len || !is_digit(in[ps->pos]))
            return unexpected(ps, ps->pos);
        while (ps->pos < ps->len && is_digit(in[ps->pos]))
            ps->pos++;
    }
    if (ps->pos < ps->len && (in[ps->pos] == 'e' || in[ps->pos] == 'E')) {
        real = true;
        ps->pos++;
        if (ps->pos < ps->len && (in[ps->pos] == '+' || in[ps->pos] == '-'))
            ps->pos++;
        if (ps->pos >= ps->len || !is_digit(in[ps->pos]))
            return unexpected(ps, ps->pos);
        while (ps->pos < ps->len && is_digit(in[ps->pos]))
            ps->pos++;
    }
    if (real) {
        v->kind = VH_JT_REAL;
        return real_value(ps, at, ps->pos - at, &v->u.d);
    }
    /*
     * An integer: its magnitude may be at most 2^63 - 1, or 2^63 when negative. A larger one
     * is still valid JSON (JavaScript's JSON.stringify writes 1e20 as 100000000000000000000),
     * so it becomes a real, as JSON.parse reads it; the validators refuse it where they want
     * an integer, naming the field.
     */
    limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    for (size_t i = ps->pos - digits; i < ps->pos; i++) {
        unsigned d = (unsigned)(in[i] - '0');

        if (mag > (limit - d) / 10) {
            v->kind = VH_JT_REAL;
            return real_value(ps, at, ps->pos - at, &v->u.d);
        }
        mag = mag * 10 + d;
    }
    v->kind = VH_JT_INT;
    v->u.i = neg ? (mag == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)mag) : (int64_t)mag;
    return 0;
}

/* --- values ---------------------------------------------------------------------------- */

static void skip_ws(struct parser *ps)
{
    while (ps->pos < ps->len) {
        unsigned char c = ps->in[ps->pos];

        if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
            break;
        ps->pos++;
    }
}

static int parse_value(struct parser *ps, struct vh_jt *v);

static int key_cmp(const struct vh_jt *a, const struct vh_jt *b)
{
    size_t n = a->key_len < b->key_len ? a->key_len : b->key_len;
    int c = memcmp(a->key, b->key, n);

    if (c)
        return c;
    return a->key_len < b->key_len ? -1 : a->key_len > b->key_len;
}

static bool key_eq(const struct vh_jt *a, const struct vh_jt *b)
{
    return a->key_len == b->key_len && memcmp(a->key, b->key, a->key_len) == 0;
}

/* Sorts members by key, then by the offset of the key in the input. */
static int by_key_then_offset(const void *pa, const void *pb)
{
    const struct vh_jt *a = *(const struct vh_jt *const *)pa, *b = *(const struct vh_jt *const *)pb;
    int c = key_cmp(a, b);

    if (c)
        return c;
    return a->key_at < b->key_at ? -1 : a->key_at > b->key_at;
}

/*
 * The member whose key an earlier member already has, the first such in input order, or
 * NULL; sets *failed (and returns NULL) when out of memory.
 */
static const struct vh_jt *find_duplicate(const struct vh_jt *obj, bool *failed)
{
    const struct vh_jt *m, *o, *dup = NULL, **sorted;
    size_t i, n = obj->len;

    *failed = false;
    if (n <= PAIRWISE_MAX) {
        for (m = obj->u.first; m; m = m->next)
            for (o = obj->u.first; o != m; o = o->next)
                if (key_eq(o, m))
                    return m;
        return NULL;
    }
    sorted = vh_malloc(n * sizeof(*sorted));
    if (!sorted) {
        *failed = true;
        return NULL;
    }
    for (i = 0, m = obj->u.first; m; m = m->next)
        sorted[i++] = m;
    qsort(sorted, n, sizeof(*sorted), by_key_then_offset);
    for (i = 1; i < n; i++)
        if (key_eq(sorted[i - 1], sorted[i]) && (!dup || sorted[i]->key_at < dup->key_at))
            dup = sorted[i];
    vh_free(sorted);
    return dup;
}

/* Fails at `at` when the input ended there, else with `what`. */
static int expected(struct parser *ps, const char *what)
{
    if (ps->pos >= ps->len)
        return unexpected(ps, ps->pos);
    return syntax(ps, ps->pos, what);
}

/* The object at ps->pos (its '{'). */
static int parse_object(struct parser *ps, struct vh_jt *v)
{
    struct vh_jt *tail = NULL;
    const struct vh_jt *dup;
    bool failed;
    int rc;

    v->kind = VH_JT_OBJECT;
    ps->pos++;
    skip_ws(ps);
    if (ps->pos < ps->len && ps->in[ps->pos] == '}') {
        ps->pos++;
        return 0;
    }
    for (;;) {
        struct vh_jt *m = node_new(ps);

        if (!m)
            return nomem(ps);
        skip_ws(ps);
        if (ps->pos >= ps->len || ps->in[ps->pos] != '"')
            return expected(ps, "expected a string key");
        m->key_at = (uint32_t)ps->pos;
        rc = parse_string(ps, &m->key, &m->key_len);
        if (rc < 0)
            return rc;
        skip_ws(ps);
        if (ps->pos >= ps->len || ps->in[ps->pos] != ':')
            return expected(ps, "expected ':' after a key");
        ps->pos++;
        skip_ws(ps);
        rc = parse_value(ps, m);
        if (rc < 0)
            return rc;
        if (tail)
            tail->next = m;
        else
            v->u.first = m;
        tail = m;
        v->len++;
        skip_ws(ps);
        if (ps->pos < ps->len && ps->in[ps->pos] == ',') {
            ps->pos++;
            continue;
        }
        if (ps->pos < ps->len && ps->in[ps->pos] == '}') {
            ps->pos++;
            break;
        }
        return expected(ps, "expected ',' or '}'");
    }
    dup = find_duplicate(v, &failed);
    if (failed)
        return nomem(ps);
    if (dup) {
        char quoted[64];

        vh__jt_quote_key(dup->key, quoted);
        return vh_error_set(ps->err, VH_EINVAL, "json: duplicate key \"%s\" at byte %" PRIu32,
                            quoted, dup->key_at);
    }
    return 0;
}

/* The array at ps->pos (its '['). */
static int parse_array(struct parser *ps, struct vh_jt *v)
{
    struct vh_jt *tail = NULL;
    int rc;

    v->kind = VH_JT_ARRAY;
    ps->pos++;
    skip_ws(ps);
    if (ps->pos < ps->len && ps->in[ps->pos] == ']') {
        ps->pos++;
        return 0;
    }
    for (;;) {
        struct vh_jt *e = node_new(ps);

        if (!e)
            return nomem(ps);
        skip_ws(ps);
        rc = parse_value(ps, e);
        if (rc < 0)
            return rc;
        if (tail)
            tail->next = e;
        else
            v->u.first = e;
        tail = e;
        v->len++;
        skip_ws(ps);
        if (ps->pos < ps->len && ps->in[ps->pos] == ',') {
            ps->pos++;
            continue;
        }
        if (ps->pos < ps->len && ps->in[ps->pos] == ']') {
            ps->pos++;
            return 0;
        }
        return expected(ps, "expected ',' or ']'");
    }
}

static int literal(struct parser *ps, const char *word, enum vh_jt_kind kind, struct vh_jt *v)
{
    size_t n = strlen(word);

    if (ps->len - ps->pos < n || memcmp(ps->in + ps->pos, word, n) != 0)
        return syntax(ps, ps->pos, "invalid literal");
    ps->pos += n;
    v->kind = kind;
    return 0;
}

/* The value at ps->pos (no whitespace before it). */
static int parse_value(struct parser *ps, struct vh_jt *v)
{
    int rc;

    if (ps->pos >= ps->len)
        return unexpected(ps, ps->pos);
    switch (ps->in[ps->pos]) {
    case '{':
    case '[':
        if (++ps->depth > VH_JSON_DEPTH_MAX)
            return vh_error_set(ps->err, VH_ETOOBIG,
                                "json: nested deeper than %d levels at byte %zu", VH_JSON_DEPTH_MAX,
                                ps->pos);
        rc = ps->in[ps->pos] == '{' ? parse_object(ps, v) : parse_array(ps, v);
        ps->depth--;
        return rc;
    case '"':
        v->kind = VH_JT_STRING;
        return parse_string(ps, &v->u.s, &v->len);
    case 't':
        return literal(ps, "true", VH_JT_TRUE, v);
    case 'f':
        return literal(ps, "false", VH_JT_FALSE, v);
    case 'n':
        return literal(ps, "null", VH_JT_NULL, v);
    case '-':
    case '0':
    case '1':
    case '2':
    case '3':
    case '4':
    case '5':
    case '6':
    case '7':
    case '8':
    case '9':
        return parse_number(ps, v);
    default:
        return unexpected(ps, ps->pos);
    }
}

/* --- the document ---------------------------------------------------------------------- */

void vh__jt_doc_release(struct vh_jt_doc *doc)
{
    struct vh_jt_chunk *ch = doc->chunks;

    while (ch) {
        struct vh_jt_chunk *next = ch->next;

        vh_free(ch);
        ch = next;
    }
    vh_free(doc->strings);
    doc->root = NULL;
    doc->strings = NULL;
    doc->chunks = NULL;
}

int vh__jt_parse(const char *json, size_t len, struct vh_jt_doc *doc, struct vh_error *err)
{
    struct parser ps;
    int rc;

    doc->root = NULL;
    doc->strings = NULL;
    doc->chunks = NULL;
    if (len > UINT32_MAX)
        return vh_error_set(err, VH_ETOOBIG, "json: longer than %lu bytes",
                            (unsigned long)UINT32_MAX);
    if (len && !json)
        return vh_error_set(err, VH_EINVAL, "json: NULL input");
    memset(&ps, 0, sizeof(ps));
    ps.in = (const unsigned char *)json;
    ps.len = len;
    ps.doc = doc;
    ps.err = err;
    skip_ws(&ps);
    if (ps.pos == len)
        return vh_error_set(err, VH_EINVAL, "json: empty input");
    doc->strings = vh_malloc(len + 1);
    ps.out = doc->strings;
    doc->root = ps.out ? node_new(&ps) : NULL;
    if (!doc->root) {
        vh__jt_doc_release(doc);
        return nomem(&ps);
    }
    rc = parse_value(&ps, doc->root);
    if (rc == 0) {
        skip_ws(&ps);
        if (ps.pos < len)
            rc = unexpected(&ps, ps.pos);
    }
    if (rc < 0)
        vh__jt_doc_release(doc);
    return rc;
}

const struct vh_jt *vh__jt_get(const struct vh_jt *obj, const char *key)
{
    const struct vh_jt *m;
    size_t n;

    if (!obj || obj->kind != VH_JT_OBJECT)
        return NULL;
    n = strlen(key);
    for (m = obj->u.first; m; m = m->next)
        if (m->key_len == n && memcmp(m->key, key, n) == 0)
            return m;
    return NULL;
}
