/*
 * Fuzz target for the strict JSON parser (core/jtree_int.h, STYLE.md §10): bytes -> tree.
 * An accepted input's tree must hold together (counts match the links, strings and keys
 * are valid UTF-8 without a NUL inside, keys are unique, depth is bounded); it is written
 * back as compact JSON, which must parse into an equal tree and write back to the same
 * bytes. A refusal must leave the doc empty and carry its code in err with a one-line
 * "json: " message whose byte offset, when it has one, lies within the input. Any broken
 * invariant aborts, which libFuzzer (and the replay under ctest) reports.
 */
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vocohook/buf.h>
#include <vocohook/error.h>
#include <vocohook/event.h>

#include "core/jtree_int.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            broken(#cond, __LINE__);                                                               \
    } while (0)

static void broken(const char *what, int line)
{
    fprintf(stderr, "fuzz_jtree.c:%d: invariant broken: %s\n", line, what);
    abort();
}

/* Valid UTF-8 (RFC 3629: no overlongs, surrogates or code points above U+10FFFF). */
static bool utf8_is_valid(const unsigned char *s, size_t n)
{
    size_t i = 0, k, need;
    uint32_t cp;

    while (i < n) {
        unsigned char c = s[i];

        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf) {
            need = 1;
            cp = c & 0x1fu;
        } else if (c >= 0xe0 && c <= 0xef) {
            need = 2;
            cp = c & 0x0fu;
        } else if (c >= 0xf0 && c <= 0xf4) {
            need = 3;
            cp = c & 0x07u;
        } else {
            return false;
        }
        if (n - i <= need)
            return false;
        for (k = 1; k <= need; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + k] & 0x3fu);
        }
        if ((need == 2 && cp < 0x800) || (need == 3 && cp < 0x10000) || cp > 0x10ffff ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += need + 1;
    }
    return true;
}

static int key_order(const void *pa, const void *pb)
{
    const struct vh_jt *a = *(const struct vh_jt *const *)pa;
    const struct vh_jt *b = *(const struct vh_jt *const *)pb;
    size_t n = a->key_len < b->key_len ? a->key_len : b->key_len;
    int c = memcmp(a->key, b->key, n);

    if (c)
        return c;
    return (a->key_len > b->key_len) - (a->key_len < b->key_len);
}

/* No two members of `obj` share a key, and vh__jt_get finds each member. */
static void check_keys(const struct vh_jt *obj, const uint8_t *data, size_t size)
{
    const struct vh_jt **sorted, *m;
    size_t i = 0;

    sorted = malloc((obj->len ? obj->len : 1) * sizeof(*sorted));
    CHECK(sorted != NULL);
    for (m = obj->u.first; m; m = m->next) {
        CHECK(m->key_at < size && data[m->key_at] == '"');
        sorted[i++] = m;
    }
    qsort(sorted, i, sizeof(*sorted), key_order);
    for (i = 1; i < obj->len; i++)
        CHECK(key_order(&sorted[i - 1], &sorted[i]) != 0);
    for (i = 0; i < obj->len; i++)
        CHECK(vh__jt_get(obj, sorted[i]->key) == sorted[i]);
    free(sorted);
}

static void check_tree(const struct vh_jt *v, int depth, const uint8_t *data, size_t size)
{
    const struct vh_jt *m;
    uint32_t n = 0;

    switch (v->kind) {
    case VH_JT_NULL:
    case VH_JT_FALSE:
    case VH_JT_TRUE:
    case VH_JT_INT:
        break;
    case VH_JT_REAL:
        CHECK(isfinite(v->u.d));
        break;
    case VH_JT_STRING:
        CHECK(v->u.s != NULL && v->u.s[v->len] == '\0' && strlen(v->u.s) == v->len);
        CHECK(utf8_is_valid((const unsigned char *)v->u.s, v->len));
        break;
    case VH_JT_ARRAY:
    case VH_JT_OBJECT:
        CHECK(depth <= VH_JSON_DEPTH_MAX); /* counts arrays and objects, not scalars */
        for (m = v->u.first; m; m = m->next) {
            if (v->kind == VH_JT_OBJECT) {
                CHECK(m->key != NULL && m->key[m->key_len] == '\0');
                CHECK(strlen(m->key) == m->key_len);
                CHECK(utf8_is_valid((const unsigned char *)m->key, m->key_len));
            } else {
                CHECK(m->key == NULL);
            }
            check_tree(m, depth + 1, data, size);
            n++;
        }
        CHECK(n == v->len);
        CHECK((v->len == 0) == (v->u.first == NULL));
        if (v->kind == VH_JT_OBJECT)
            check_keys(v, data, size);
        else
            CHECK(vh__jt_get(v, "") == NULL);
        break;
    default:
        CHECK(!"a known kind");
    }
}

/* --- a small writer: compact JSON, strings escaped only where JSON requires it ------------ */

static void put(struct vh_buf *b, const char *s, size_t n)
{
    CHECK(vh_buf_add(b, s, n) == 0);
}

static void write_string(struct vh_buf *b, const char *s, size_t n)
{
    char esc[8];
    size_t i, run = 0;

    put(b, "\"", 1);
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        put(b, s + run, i - run);
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            put(b, esc, 2);
        } else {
            snprintf(esc, sizeof(esc), "\\u%04x", c);
            put(b, esc, 6);
        }
        run = i + 1;
    }
    put(b, s + run, n - run);
    put(b, "\"", 1);
}

static void write_value(struct vh_buf *b, const struct vh_jt *v)
{
    const struct vh_jt *m;
    char num[64];
    int n;

    switch (v->kind) {
    case VH_JT_NULL:
        put(b, "null", 4);
        break;
    case VH_JT_FALSE:
        put(b, "false", 5);
        break;
    case VH_JT_TRUE:
        put(b, "true", 4);
        break;
    case VH_JT_INT:
        n = snprintf(num, sizeof(num), "%" PRId64, v->u.i);
        put(b, num, (size_t)n);
        break;
    case VH_JT_REAL:
        n = snprintf(num, sizeof(num), "%.17g", v->u.d);
        CHECK(n > 0 && (size_t)n < sizeof(num) - 2);
        if (!strpbrk(num, ".eEn")) {
            memcpy(num + n, ".0", 3);
            n += 2;
        }
        put(b, num, (size_t)n);
        break;
    case VH_JT_STRING:
        write_string(b, v->u.s, v->len);
        break;
    case VH_JT_ARRAY:
    case VH_JT_OBJECT:
        put(b, v->kind == VH_JT_ARRAY ? "[" : "{", 1);
        for (m = v->u.first; m; m = m->next) {
            if (m != v->u.first)
                put(b, ",", 1);
            if (v->kind == VH_JT_OBJECT) {
                write_string(b, m->key, m->key_len);
                put(b, ":", 1);
            }
            write_value(b, m);
        }
        put(b, v->kind == VH_JT_ARRAY ? "]" : "}", 1);
        break;
    }
}

static void check_equal(const struct vh_jt *a, const struct vh_jt *b)
{
    const struct vh_jt *x, *y;

    CHECK(a->kind == b->kind);
    CHECK(a->key_len == b->key_len);
    CHECK((a->key == NULL) == (b->key == NULL));
    if (a->key)
        CHECK(memcmp(a->key, b->key, a->key_len) == 0);
    switch (a->kind) {
    case VH_JT_INT:
        CHECK(a->u.i == b->u.i);
        break;
    case VH_JT_REAL:
        CHECK(memcmp(&a->u.d, &b->u.d, sizeof(a->u.d)) == 0);
        break;
    case VH_JT_STRING:
        CHECK(a->len == b->len && memcmp(a->u.s, b->u.s, a->len) == 0);
        break;
    case VH_JT_ARRAY:
    case VH_JT_OBJECT:
        CHECK(a->len == b->len);
        for (x = a->u.first, y = b->u.first; x && y; x = x->next, y = y->next)
            check_equal(x, y);
        CHECK(x == NULL && y == NULL);
        break;
    default:
        break;
    }
}

/* Writes the tree, parses what was written, compares, writes again: same bytes. */
static void round_trip(const struct vh_jt *root)
{
    struct vh_buf a = VH_BUF_INIT(SIZE_MAX), b = VH_BUF_INIT(SIZE_MAX);
    struct vh_error err = VH_ERROR_INIT;
    struct vh_jt_doc doc = {NULL, NULL, NULL};
    int rc;

    write_value(&a, root);
    rc = vh__jt_parse(a.data, a.len, &doc, &err);
    if (rc != 0) {
        fprintf(stderr, "written back, refused: %s\n%.*s\n", err.msg, (int)a.len, a.data);
        CHECK(rc == 0);
    }
    check_tree(doc.root, 1, (const uint8_t *)a.data, a.len);
    check_equal(root, doc.root);
    write_value(&b, doc.root);
    CHECK(a.len == b.len && memcmp(a.data, b.data, a.len) == 0);
    vh__jt_doc_release(&doc);
    vh_buf_release(&a);
    vh_buf_release(&b);
}

static void check_refusal(int rc, const struct vh_error *err, const struct vh_jt_doc *doc,
                          const uint8_t *data, size_t size)
{
    static const char at[] = " at byte ";
    const char *p, *q, *msg = err->msg;
    unsigned long long n;
    char *end;

    CHECK(rc == VH_EINVAL || rc == VH_ETOOBIG || rc == VH_ENOMEM);
    CHECK(err->code == rc);
    CHECK(doc->root == NULL && doc->strings == NULL && doc->chunks == NULL);
    CHECK(strncmp(msg, "json: ", 6) == 0 && msg[6] != '\0');
    for (p = msg; *p; p++)
        CHECK((unsigned char)*p >= 0x20 && *p != 0x7f);
    if (rc == VH_ENOMEM) {
        CHECK(strcmp(msg, "json: out of memory") == 0);
        return;
    }
    if (strcmp(msg, "json: empty input") == 0) {
        for (n = 0; n < size; n++)
            CHECK(data[n] == ' ' || data[n] == '\t' || data[n] == '\n' || data[n] == '\r');
        return;
    }
    /* Every other refusal names a byte: the last " at byte N", N within the input. */
    p = NULL;
    for (q = strstr(msg, at); q; q = strstr(q + 1, at))
        p = q;
    CHECK(p != NULL);
    n = strtoull(p + sizeof(at) - 1, &end, 10);
    CHECK(*end == '\0' && end != p + sizeof(at) - 1 && n <= size);
    if (rc == VH_ETOOBIG) {
        CHECK(strncmp(msg, "json: nested deeper than 32 levels at byte ", 43) == 0);
        CHECK(n < size && (data[n] == '[' || data[n] == '{'));
    } else if (strncmp(msg, "json: invalid UTF-8 at byte ", 28) == 0) {
        CHECK(n < size && data[n] >= 0x80);
    } else if (strncmp(msg, "json: \\u0000 is not allowed", 27) == 0) {
        CHECK(n + 6 <= size && memcmp(data + n, "\\u0000", 6) == 0);
    } else if (strncmp(msg, "json: duplicate key", 19) == 0) {
        CHECK(n < size && data[n] == '"');
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct vh_error err = VH_ERROR_INIT;
    struct vh_jt_doc doc = {NULL, NULL, NULL};
    int rc;

    rc = vh__jt_parse((const char *)data, size, &doc, &err);
    if (rc == 0) {
        CHECK(err.code == 0 && err.msg[0] == '\0');
        CHECK(doc.root != NULL && doc.root->key == NULL && doc.root->next == NULL);
        check_tree(doc.root, 1, data, size);
        round_trip(doc.root);
    } else {
        check_refusal(rc, &err, &doc, data, size);
    }
    vh__jt_doc_release(&doc);
    vh__jt_doc_release(&doc);
    return 0;
}
