/*
 * Fuzzes the delivery engine's HTTP/1.1 response parser (src/deliver/h1_int.h): the input is
 * the bytes a server sent, then the close.
 *
 * Runs (each a fresh parser):
 * - whole: all the input in one vh__h1_parse call;
 * - split: as a real caller does it, through a buffer of VH__H1_HEAD_MAX bytes, the first read
 *   ending at a position taken from data[0], every later read filling the buffer, the bytes
 *   not consumed kept for the next call;
 * - byte by byte, for small inputs.
 *
 * Invariants (abort() on a violation):
 * - a call never consumes more than it was given, nor anything in DONE or ERROR; body bytes
 *   are never more than the bytes consumed; ERROR comes with a message; DONE has a final
 *   status (200-999);
 * - with the caller's buffer full, a call consumes something or ends in DONE or ERROR;
 * - every run ends in the same state, and unless that is ERROR with the same status,
 *   keep_alive, body bytes and consumed count; vh__h1_eof then agrees too.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "deliver/h1_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok)
{
    if (!ok)
        abort();
}

/* Body bytes as handed on; never more than the input holds. */
struct sink {
    char *buf;
    size_t len, cap;
};

static void on_body(void *ud, const char *p, size_t n)
{
    struct sink *s = ud;

    check(n <= s->cap - s->len);
    memcpy(s->buf + s->len, p, n);
    s->len += n;
}

struct run {
    struct vh__h1 p;
    struct sink body;
    size_t consumed;
};

static void run_init(struct run *r, size_t size)
{
    memset(r, 0, sizeof(*r));
    vh__h1_init(&r->p);
    r->body.cap = size;
    r->body.buf = malloc(size ? size : 1);
    check(r->body.buf != NULL);
}

static size_t feed(struct run *r, const char *buf, size_t len)
{
    enum vh__h1_state before = r->p.state;
    size_t n = vh__h1_parse(&r->p, buf, len, on_body, &r->body);

    check(n <= len);
    if (before == VH__H1_DONE || before == VH__H1_ERROR)
        check(n == 0 && r->p.state == before);
    r->consumed += n;
    check(r->body.len <= r->consumed);
    if (r->p.state == VH__H1_ERROR)
        check(r->p.error != NULL && r->p.error[0] != '\0');
    if (r->p.state == VH__H1_DONE)
        check(r->p.status >= 200 && r->p.status <= 999);
    return n;
}

static bool finished(const struct run *r)
{
    return r->p.state == VH__H1_DONE || r->p.state == VH__H1_ERROR;
}

/* The split run, through a caller buffer of VH__H1_HEAD_MAX bytes. */
static void run_bounded(struct run *r, const char *in, size_t size, size_t first)
{
    char *buf = malloc(VH__H1_HEAD_MAX);
    size_t plen = 0, from = 0, limit = first, n;

    check(buf != NULL);
    for (;; limit = size) {
        size_t room = VH__H1_HEAD_MAX - plen, take = limit - from;
        if (take > room)
            take = room;
        memcpy(buf + plen, in + from, take);
        plen += take;
        from += take;
        n = feed(r, buf, plen);
        if (plen == VH__H1_HEAD_MAX)
            check(n > 0 || finished(r));
        memmove(buf, buf + n, plen - n);
        plen -= n;
        if (finished(r) || (from == size && n == 0 && limit == size))
            break;
    }
    free(buf);
}

static void run_bytewise(struct run *r, const char *in, size_t size)
{
    char *buf = malloc(size ? size : 1);
    size_t plen = 0, i, n;

    check(buf != NULL);
    for (i = 0; i < size && !finished(r); i++) {
        buf[plen++] = in[i];
        n = feed(r, buf, plen);
        memmove(buf, buf + n, plen - n);
        plen -= n;
    }
    free(buf);
}

static void check_same(const struct run *a, const struct run *b)
{
    check(a->p.state == b->p.state);
    if (a->p.state == VH__H1_ERROR)
        return;
    check(a->p.status == b->p.status);
    check(a->p.keep_alive == b->p.keep_alive);
    check(a->consumed == b->consumed);
    check(a->body.len == b->body.len);
    check(a->body.len == 0 || memcmp(a->body.buf, b->body.buf, a->body.len) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data;
    struct run whole, split, bytes;
    size_t first = size ? (size_t)data[0] * (size + 1) / 256 : 0;
    enum vh__h1_state whole_eof;

    run_init(&whole, size);
    feed(&whole, in, size);

    run_init(&split, size);
    run_bounded(&split, in, size, first);

    check_same(&whole, &split);

    if (size <= 512) {
        run_init(&bytes, size);
        run_bytewise(&bytes, in, size);
        check_same(&whole, &bytes);
    }

    /* Then the server closes: every run agrees on how the response ended. */
    whole_eof = vh__h1_eof(&whole.p);
    check(vh__h1_eof(&split.p) == whole_eof);
    if (size <= 512) {
        check(vh__h1_eof(&bytes.p) == whole_eof);
        if (whole_eof == VH__H1_DONE)
            check(bytes.p.keep_alive == whole.p.keep_alive);
        free(bytes.body.buf);
    }
    if (whole_eof == VH__H1_DONE)
        check(whole.p.status >= 200 && whole.p.status <= 999);
    free(whole.body.buf);
    free(split.body.buf);
    return 0;
}
