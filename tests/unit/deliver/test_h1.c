/*
 * The delivery engine's HTTP/1.1 response parser (src/deliver/h1_int.h): framing by
 * Content-Length, chunked coding and connection close; interim answers; keep-alive; the
 * refusals of ambiguous framing; the head and line bounds; and the incremental property —
 * any split of the bytes, re-fed as the contract says, parses as one whole feed does.
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

#include "deliver/h1_int.h"
#include "core/banned.h"

/* --- harness ---------------------------------------------------------------------------------- */

/* The body bytes the parser handed on, in order. */
struct sink {
    char *buf;
    size_t len, cap;
};

static void on_body(void *ud, const char *p, size_t n)
{
    struct sink *s = ud;

    if (s->len + n > s->cap) {
        size_t cap = (s->len + n) * 2 + 64;
        char *b = realloc(s->buf, cap);

        assert_non_null(b);
        s->buf = b;
        s->cap = cap;
    }
    memcpy(s->buf + s->len, p, n);
    s->len += n;
}

/* One parse of a response: the parser, the body it gave, and how many bytes it consumed. */
struct run {
    struct vh__h1 p;
    struct sink body;
    size_t consumed;
};

static void run_init(struct run *r)
{
    memset(r, 0, sizeof(*r));
    vh__h1_init(&r->p);
    assert_int_equal(r->p.state, VH__H1_HEAD);
    assert_int_equal(r->p.status, 0);
}

static void run_release(struct run *r)
{
    free(r->body.buf);
    r->body.buf = NULL;
}

/* Feeds bytes, checking the consumed count stays within what was given. */
static size_t feed(struct run *r, const char *buf, size_t len)
{
    size_t n = vh__h1_parse(&r->p, buf, len, on_body, &r->body);

    assert_true(n <= len);
    r->consumed += n;
    return n;
}

/* All of `in` in one call, then the server's close when `eof`. */
static void run_whole(struct run *r, const char *in, size_t len, bool eof)
{
    run_init(r);
    feed(r, in, len);
    if (eof)
        vh__h1_eof(&r->p);
}

/*
 * `in` in pieces ending at cuts[0..ncuts) (ascending) and at `len`, the way the contract
 * asks a caller to feed: the bytes not consumed are kept and handed over again in front of
 * the next piece. Then the server's close when `eof`.
 */
static void run_pieces(struct run *r, const char *in, size_t len, const size_t *cuts, size_t ncuts,
                       bool eof)
{
    char *pending = malloc(len + 1);
    size_t plen = 0, from = 0, i, n;

    assert_non_null(pending);
    run_init(r);
    for (i = 0; i <= ncuts; i++) {
        size_t to = i < ncuts ? cuts[i] : len;

        assert_true(to >= from && to <= len);
        memcpy(pending + plen, in + from, to - from);
        plen += to - from;
        from = to;
        n = feed(r, pending, plen);
        memmove(pending, pending + n, plen - n);
        plen -= n;
    }
    free(pending);
    if (eof)
        vh__h1_eof(&r->p);
}

static void run_bytewise(struct run *r, const char *in, size_t len, bool eof)
{
    size_t *cuts = malloc((len + 1) * sizeof(*cuts)), i;

    assert_non_null(cuts);
    for (i = 0; i < len; i++)
        cuts[i] = i + 1;
    run_pieces(r, in, len, cuts, len, eof);
    free(cuts);
}

/* The outcome of a run is the expected one (a DONE response). */
static void expect_done(const struct run *r, int status, bool keep_alive, const char *body,
                        size_t consumed)
{
    assert_int_equal(r->p.state, VH__H1_DONE);
    assert_int_equal(r->p.status, status);
    assert_int_equal(r->p.keep_alive, keep_alive);
    assert_int_equal(r->body.len, strlen(body));
    if (r->body.len)
        assert_memory_equal(r->body.buf, body, r->body.len);
    assert_int_equal(r->consumed, consumed);
}

static void expect_error(const struct run *r)
{
    assert_int_equal(r->p.state, VH__H1_ERROR);
    assert_non_null(r->p.error);
    assert_true(r->p.error[0] != '\0');
}

/* A string literal, whole, in one call. */
static void parse_str(struct run *r, const char *in, bool eof)
{
    run_whole(r, in, strlen(in), eof);
}

/* A string fed whole must end DONE, with `tail` bytes at its end left unconsumed. */
static void expect_parse(const char *in, size_t tail, bool eof, int status, bool keep_alive,
                         const char *body)
{
    struct run r;

    parse_str(&r, in, eof);
    expect_done(&r, status, keep_alive, body, strlen(in) - tail);
    run_release(&r);
}

/* A response that must be refused, fed whole and byte by byte (with the close after). */
static void expect_refused(const char *in)
{
    struct run r;

    parse_str(&r, in, false);
    if (r.p.state != VH__H1_ERROR)
        fail_msg("not refused (state %d): \"%s\"", (int)r.p.state, in);
    expect_error(&r);
    run_release(&r);
    run_bytewise(&r, in, strlen(in), false);
    if (r.p.state != VH__H1_ERROR)
        fail_msg("not refused byte by byte (state %d): \"%s\"", (int)r.p.state, in);
    run_release(&r);
}

/* --- Content-Length -----------------------------------------------------------------------------
 */

static void test_content_length(void **state)
{
    static const char in[] = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                             "Content-Length: 11\r\n\r\nhello world";
    struct run r;

    (void)state;
    parse_str(&r, in, false);
    expect_done(&r, 200, true, "hello world", sizeof(in) - 1);
    assert_int_equal(r.p.left, 0);
    assert_int_equal(vh__h1_eof(&r.p), VH__H1_DONE); /* a close after DONE changes nothing */
    run_release(&r);
}

static void test_content_length_partial(void **state)
{
    static const char head[] = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n";
    static const char in[] = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhe";
    struct run r;

    (void)state;
    parse_str(&r, head, false);
    assert_int_equal(r.p.state, VH__H1_BODY);
    assert_int_equal(r.p.status, 200);
    assert_int_equal(r.p.left, 5);
    assert_int_equal(r.consumed, sizeof(head) - 1);
    run_release(&r);

    parse_str(&r, in, false);
    assert_int_equal(r.p.state, VH__H1_BODY);
    assert_int_equal(r.p.left, 3);
    assert_int_equal(r.consumed, sizeof(in) - 1); /* body bytes are taken as they come */
    assert_int_equal(r.body.len, 2);
    assert_memory_equal(r.body.buf, "he", 2);
    /* The rest, with the next response behind it. */
    feed(&r, "lloHTTP/1.1", 11);
    expect_done(&r, 200, true, "hello", sizeof(in) - 1 + 3);
    run_release(&r);

    /* The server closes in the middle of the body. */
    parse_str(&r, in, true);
    expect_error(&r);
    run_release(&r);
}

static void test_zero_length(void **state)
{
    static const char in[] = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    struct run r;

    (void)state;
    parse_str(&r, in, false);
    expect_done(&r, 200, true, "", sizeof(in) - 1);
    run_release(&r);
    /* Leading zeros are still a number. */
    expect_parse("HTTP/1.1 200 OK\r\nContent-Length: 0003\r\n\r\nabcdef", 3, false, 200, true,
                 "abc");
}

static void test_content_length_duplicates(void **state)
{
    (void)state;
    expect_parse("HTTP/1.1 200 OK\r\nContent-Length: 3\r\ncontent-length:3\r\n\r\nabcd", 1, false,
                 200, true, "abc");
    expect_refused("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd");
    expect_refused("HTTP/1.1 200 OK\r\nContent-Length: 4\r\nContent-Length: 3\r\n\r\nabcd");
}

static void test_content_length_invalid(void **state)
{
    static const char *const values[] = {
        "abc",
        "-5",
        "+5",
        "5, 5",
        "5,6",
        "",
        "1 2",
        "0x10",
        "5a",
        "5.0",
        "18446744073709551616", /* 2^64 */
        "18446744073709551621", /* 2^64 + 5: a wrapping parser reads 5 */
        "99999999999999999999999999",
        "340282366920938463463374607431768211461",
    };
    char in[256];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        snprintf(in, sizeof(in), "HTTP/1.1 200 OK\r\nContent-Length: %s\r\n\r\nhello", values[i]);
        expect_refused(in);
    }
}

static void test_content_length_large(void **state)
{
    struct run r;

    (void)state;
    /* Big but in range: the body is just long. */
    parse_str(&r, "HTTP/1.1 200 OK\r\nContent-Length: 1000000000000\r\n\r\nab", false);
    assert_int_equal(r.p.state, VH__H1_BODY);
    assert_int_equal(r.p.left, UINT64_C(1000000000000) - 2);
    run_release(&r);
}

/* --- chunked ---------------------------------------------------------------------------------- */

static void test_chunked(void **state)
{
    static const char in[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                             "5;name=value;x=\"q;u\"\r\nhello\r\n"
                             "1A\r\nabcdefghijklmnopqrstuvwxyz\r\n"
                             "0b ; ext\r\n, 123456789\r\n"
                             "0\r\nX-Checksum: abc\r\nX-Other: 1\r\n\r\n";
    struct run r;

    (void)state;
    parse_str(&r, in, false);
    expect_done(&r, 200, true, "helloabcdefghijklmnopqrstuvwxyz, 123456789", sizeof(in) - 1);
    run_release(&r);
}

static void test_chunked_lf_only(void **state)
{
    static const char in[] = "HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n"
                             "3\nabc\n4;e\ndefg\n0\nTrailer: x\n\n";
    struct run r;

    (void)state;
    parse_str(&r, in, false);
    expect_done(&r, 200, true, "abcdefg", sizeof(in) - 1);
    run_release(&r);
}

static void test_chunked_states(void **state)
{
    struct run r;

    (void)state;
    run_init(&r);
    feed(&r, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", 47);
    assert_int_equal(r.p.state, VH__H1_CHUNK_SIZE);
    assert_int_equal(r.p.status, 200);
    assert_int_equal(r.consumed, 47);
    feed(&r, "a\r\n01234", 8);
    assert_int_equal(r.p.state, VH__H1_CHUNK_DATA);
    assert_int_equal(r.p.left, 5);
    feed(&r, "56789", 5);
    assert_int_equal(r.p.state, VH__H1_CHUNK_END);
    feed(&r, "\r\n0\r\n", 5);
    assert_int_equal(r.p.state, VH__H1_TRAILERS);
    assert_int_equal(vh__h1_eof(&r.p), VH__H1_ERROR); /* closed before the last CRLF */
    assert_int_equal(r.body.len, 10);
    assert_memory_equal(r.body.buf, "0123456789", 10);
    run_release(&r);

    /* A close in each unfinished chunked state is an error. */
    parse_str(&r, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", true);
    expect_error(&r);
    run_release(&r);
    parse_str(&r, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", true);
    expect_error(&r);
    run_release(&r);
    parse_str(&r, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab", true);
    expect_error(&r);
    run_release(&r);
}

static void test_chunked_bad_sizes(void **state)
{
    static const char *const lines[] = {
        "\r\n",
        "x\r\n",
        "-1\r\n",
        " 5\r\n",
        "0x5\r\n",
        "5 x\r\n",
        "g\r\n",
        "5x\r\n",
        "+5\r\n",
        ";ext\r\n",
        "5,6\r\n",
        "10000000000000005\r\n", /* 2^64 + 5: a wrapping parser reads 5 */
        "FFFFFFFFFFFFFFFFF\r\n",
        "100000000000000000000000000000000\r\n",
    };
    char in[256];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
        snprintf(in, sizeof(in),
                 "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%shello\r\n0\r\n\r\n",
                 lines[i]);
        expect_refused(in);
    }
}

static void test_chunked_missing_crlf(void **state)
{
    (void)state;
    expect_refused("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloX\r\n0\r\n\r\n");
    expect_refused("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\rX0\r\n\r\n");
    /* The chunk said 5 but 6 bytes came before the CRLF. */
    expect_refused("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello!\r\n0\r\n\r\n");
    /* Directly the next chunk size. */
    expect_refused("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello0\r\n\r\n");
}

static void test_chunked_huge_size(void **state)
{
    struct run r;

    (void)state;
    /* A large chunk in range is data to come, not an error. */
    parse_str(&r, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFF\r\nab", false);
    assert_int_equal(r.p.state, VH__H1_CHUNK_DATA);
    assert_int_equal(r.p.left, UINT64_C(0xFFFFFFFFF) - 2);
    run_release(&r);
}

/* --- close-delimited bodies --------------------------------------------------------------------
 */

static void test_until_eof(void **state)
{
    static const char head[] = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n";
    struct run r;

    (void)state;
    run_init(&r);
    feed(&r, head, sizeof(head) - 1);
    assert_int_equal(r.p.state, VH__H1_UNTIL_EOF);
    assert_int_equal(r.p.status, 200);
    assert_false(r.p.keep_alive);
    feed(&r, "first ", 6);
    feed(&r, "HTTP/1.1 200 OK\r\n", 17); /* anything is body until the close */
    assert_int_equal(r.p.state, VH__H1_UNTIL_EOF);
    assert_int_equal(vh__h1_eof(&r.p), VH__H1_DONE);
    expect_done(&r, 200, false, "first HTTP/1.1 200 OK\r\n", sizeof(head) - 1 + 23);
    run_release(&r);

    /* An empty body ended by the close. */
    parse_str(&r, head, true);
    expect_done(&r, 200, false, "", sizeof(head) - 1);
    run_release(&r);
}

static void test_eof_in_head(void **state)
{
    struct run r;

    (void)state;
    parse_str(&r, "", true);
    expect_error(&r);
    run_release(&r);
    parse_str(&r, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n", true);
    expect_error(&r);
    run_release(&r);
    parse_str(&r, "HTTP/1.1 100 Continue\r\n\r\n", true);
    expect_error(&r);
    run_release(&r);
}

/* --- statuses without a body, interim answers ----------------------------------------------------
 */

static void test_no_body_statuses(void **state)
{
    static const char in204[] = "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n";
    static const char in304[] = "HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n";
    char in[256];
    struct run r;

    (void)state;
    /* The bytes after the head are the next response's, not a body. */
    snprintf(in, sizeof(in), "%shelloHTTP/1.1 200 OK\r\n", in204);
    parse_str(&r, in, false);
    expect_done(&r, 204, true, "", sizeof(in204) - 1);
    run_release(&r);
    snprintf(in, sizeof(in), "%s5\r\nhello\r\n0\r\n\r\n", in304);
    parse_str(&r, in, false);
    expect_done(&r, 304, true, "", sizeof(in304) - 1);
    run_release(&r);
    /* Without any framing header: not read until the close either (and the connection stays). */
    parse_str(&r, "HTTP/1.1 204 No Content\r\n\r\n", false);
    expect_done(&r, 204, true, "", 27);
    run_release(&r);
    /* Other statuses have their body read. */
    expect_parse("HTTP/1.1 205 Reset Content\r\nContent-Length: 2\r\n\r\nok", 0, false, 205, true,
                 "ok");
    expect_parse("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 0, false, 200, true, "ok");
}

static void test_interim(void **state)
{
    static const char in[] = "HTTP/1.1 100 Continue\r\n\r\n"
                             "HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n"
                             "Content-Length: 99\r\n\r\n"
                             "HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok";
    static const char interim[] = "HTTP/1.1 100 Continue\r\n\r\n";
    static const char final[] = "HTTP/1.1 500 Oops\r\nConnection: close\r\nContent-Length: 1\r\n"
                                "\r\nxyz";
    struct run r;

    (void)state;
    parse_str(&r, in, false);
    expect_done(&r, 201, true, "ok", sizeof(in) - 1);
    run_release(&r);

    /* An interim answer alone is consumed; the final one is still awaited. */
    parse_str(&r, interim, false);
    assert_int_equal(r.p.state, VH__H1_HEAD);
    assert_int_equal(r.consumed, sizeof(interim) - 1);
    assert_int_equal(r.body.len, 0);
    feed(&r, final, strlen(final));
    expect_done(&r, 500, false, "x", sizeof(interim) - 1 + strlen(final) - 2);
    run_release(&r);
}

static void test_switching_protocols(void **state)
{
    (void)state;
    expect_refused("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                   "Connection: upgrade\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
}

/* --- keep-alive ----------------------------------------------------------------------------- */

static void test_keep_alive(void **state)
{
    static const struct {
        const char *head;
        bool keep_alive;
    } cases[] = {
        {"HTTP/1.1 200 OK\r\n", true},
        {"HTTP/1.1 200 OK\r\nConnection: close\r\n", false},
        {"HTTP/1.1 200 OK\r\nConnection: CLOSE\r\n", false},
        {"HTTP/1.1 200 OK\r\nConnection: x-foo, close\r\n", false},
        {"HTTP/1.1 200 OK\r\nConnection: x-foo\r\nConnection: close\r\n", false},
        {"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\n", true},
        {"HTTP/1.1 200 OK\r\nConnection: closed\r\n", true},
        {"HTTP/1.1 200 OK\r\nX-Connection: close\r\n", true},
        {"HTTP/1.0 200 OK\r\n", false},
        {"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n", true},
        {"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\n", true},
        {"HTTP/1.0 200 OK\r\nConnection: x-foo , keep-alive\r\n", true},
        {"HTTP/1.0 200 OK\r\nConnection: keep-alive, close\r\n", false},
        {"HTTP/1.0 200 OK\r\nConnection: keep-alive-ish\r\n", false},
        {"HTTP/1.0 200 OK\r\nKeep-Alive: timeout=5\r\n", false},
    };
    char in[256];
    size_t i;
    struct run r;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int n = snprintf(in, sizeof(in), "%sContent-Length: 2\r\n\r\nokNEXT", cases[i].head);

        parse_str(&r, in, false);
        if (r.p.keep_alive != cases[i].keep_alive)
            fail_msg("keep_alive %d for \"%s\"", (int)r.p.keep_alive, cases[i].head);
        expect_done(&r, 200, cases[i].keep_alive, "ok", (size_t)n - 4);
        run_release(&r);
    }
    /* A body read until the close leaves nothing to keep, whatever the headers say. */
    parse_str(&r, "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\nbody", true);
    expect_done(&r, 200, false, "body", 47);
    run_release(&r);
}

/* --- Transfer-Encoding ----------------------------------------------------------------------- */

static void test_te_and_content_length(void **state)
{
    static const char in1[] = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n"
                              "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
    static const char in2[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
                              "Content-Length: 2\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
    struct run r;

    (void)state;
    parse_str(&r, in1, false);
    expect_done(&r, 200, false, "abc", sizeof(in1) - 1);
    run_release(&r);
    parse_str(&r, in2, false);
    expect_done(&r, 200, false, "abc", sizeof(in2) - 1);
    run_release(&r);
}

/*
 * Transfer-Encoding in an HTTP/1.0 answer: the coding is read, but the framing may be
 * faulty (an HTTP/1.0 hop passed it on undecoded), so the connection is not used again,
 * whatever Connection says (RFC 9112 §6.1).
 */
static void test_te_in_http10_closes(void **state)
{
    static const char in[] = "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n"
                             "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
    struct run r;

    (void)state;
    parse_str(&r, in, false);
    expect_done(&r, 200, false, "abc", sizeof(in) - 1);
    run_release(&r);
}

static void test_te_not_chunked(void **state)
{
    static const char *const heads[] = {
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nContent-Length: 4\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunkedx\r\n\r\n",
    };
    char in[256];
    size_t i;
    struct run r;

    (void)state;
    for (i = 0; i < sizeof(heads) / sizeof(heads[0]); i++) {
        int n = snprintf(in, sizeof(in), "%s3\r\nabc\r\n0\r\n\r\n", heads[i]);

        parse_str(&r, in, false);
        if (r.p.state != VH__H1_UNTIL_EOF)
            fail_msg("state %d for \"%s\"", (int)r.p.state, heads[i]);
        assert_false(r.p.keep_alive);
        assert_int_equal(vh__h1_eof(&r.p), VH__H1_DONE);
        expect_done(&r, 200, false, "3\r\nabc\r\n0\r\n\r\n", (size_t)n);
        run_release(&r);
    }
    /* The last coding named decides, whatever the case; chunked last is chunked. */
    expect_parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: CHUNKED\r\n\r\n"
                 "3\r\nabc\r\n0\r\n\r\n",
                 0, false, 200, true, "abc");
    expect_parse(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip ,  chunked \r\n\r\n3\r\nabc\r\n0\r\n\r\n", 0,
        false, 200, true, "abc");
}

/* --- header and status-line syntax --------------------------------------------------------------
 */

static void test_bad_headers(void **state)
{
    (void)state;
    expect_refused("HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nok");
    expect_refused("HTTP/1.1 200 OK\r\nContent-Length\t: 2\r\n\r\nok");
    expect_refused("HTTP/1.1 200 OK\r\nX-Foo : bar\r\nContent-Length: 2\r\n\r\nok");
    expect_refused("HTTP/1.1 200 OK\r\nno colon here\r\nContent-Length: 2\r\n\r\nok");
    expect_refused("HTTP/1.1 200 OK\r\n: empty name\r\nContent-Length: 2\r\n\r\nok");
    expect_refused("HTTP/1.1 200 OK\r\nX(Foo): bar\r\nContent-Length: 2\r\n\r\nok");
}

static void test_bad_status_lines(void **state)
{
    static const char *const lines[] = {
        "HTTP/2 200 OK",
        "HTTP/2.0 200 OK",
        "HTTP/1.1 20",
        "ICY 200 OK",
        "garbage",
        "HTTP/1.1 200OK",
        "HTTP/1.1 2000",
        "http/1.1 200 OK",
        "HTTP/1.1  200 OK",
        "HTTP/1.1 099 X",
        "HTTP/1.1 2x0 OK",
        "HTTP/1.1-200 OK",
        "HTTP/1.1\t200 OK",
        "HTTP/1.1",
        "HTTP/1.x 200 OK",
        "HTTP/1.11 200 OK",
        " HTTP/1.1 200 OK",
        "HTTP/0.9 200 OK",
        "",
    };
    char in[256];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
        snprintf(in, sizeof(in), "%s\r\nContent-Length: 2\r\n\r\nok", lines[i]);
        expect_refused(in);
    }
}

static void test_status_line_forms(void **state)
{
    (void)state;
    /* No reason phrase, an empty one, an odd one; a leading empty line is ignored. */
    expect_parse("HTTP/1.1 404\r\nContent-Length: 1\r\n\r\nx", 0, false, 404, true, "x");
    expect_parse("HTTP/1.1 599 \r\nContent-Length: 1\r\n\r\nx", 0, false, 599, true, "x");
    expect_parse("\r\nHTTP/1.1 302 Found it  \r\nContent-Length: 1\r\n\r\nx", 0, false, 302, true,
                 "x");
    expect_parse("\nHTTP/1.1 200 OK\nContent-Length: 1\n\nx", 0, false, 200, true, "x");
}

static void test_folding(void **state)
{
    (void)state;
    expect_refused("HTTP/1.1 200 OK\r\nContent-Length:\r\n 2\r\n\r\nok");
    expect_refused("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\t2\r\n\r\nok");
    expect_refused("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n chunked\r\n\r\n0\r\n\r\n");
    expect_refused("HTTP/1.1 200 OK\r\nConnection: keep-alive\r\n close\r\nContent-Length: 0\r\n"
                   "\r\n");
    /* Folding in any other header is harmless. */
    expect_parse("HTTP/1.1 200 OK\r\nX-Long: a\r\n b\r\n\tc\r\nContent-Length: 2\r\nX-More: d\r\n"
                 " e\r\n\r\nokX",
                 1, false, 200, true, "ok");
}

/* --- bounds ------------------------------------------------------------------------------------
 */

/* A complete head of exactly `total` bytes declaring Content-Length: 2, padded with X-Pad. */
static char *make_head(size_t total)
{
    static const char prefix[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n";
    char *h = malloc(total + 1);
    size_t at = sizeof(prefix) - 1, fill = total - at - 2;

    assert_non_null(h);
    assert_true(total > at + 2 + 9);
    memcpy(h, prefix, at);
    while (fill) {
        /* "X-Pad: " + a's + CRLF: 9 bytes at least; keep the rest fillable. */
        size_t line = fill > 1000 ? 1000 : fill;

        if (fill - line != 0 && fill - line < 9)
            line -= 9;
        memcpy(h + at, "X-Pad: ", 7);
        memset(h + at + 7, 'a', line - 9);
        memcpy(h + at + line - 2, "\r\n", 2);
        at += line;
        fill -= line;
    }
    memcpy(h + at, "\r\n", 2);
    h[total] = '\0';
    return h;
}

static void test_head_bound(void **state)
{
    char *h;
    struct run r;

    (void)state;
    /* A whole head of exactly the bound is fine. */
    h = make_head(VH__H1_HEAD_MAX);
    assert_int_equal(strlen(h), VH__H1_HEAD_MAX);
    run_init(&r);
    feed(&r, h, VH__H1_HEAD_MAX);
    feed(&r, "ok", 2);
    expect_done(&r, 200, true, "ok", VH__H1_HEAD_MAX + 2);
    run_release(&r);
    /* One byte short of its end: more is needed, nothing is consumed, no error. */
    run_whole(&r, h, VH__H1_HEAD_MAX - 1, false);
    assert_int_equal(r.p.state, VH__H1_HEAD);
    assert_int_equal(r.consumed, 0);
    run_release(&r);
    free(h);

    /* The bound's worth of bytes with no end in them: an error at once. */
    h = make_head(VH__H1_HEAD_MAX + 2); /* its first HEAD_MAX bytes end in a header line */
    run_whole(&r, h, VH__H1_HEAD_MAX, false);
    expect_error(&r);
    run_release(&r);
    free(h);
    h = make_head(VH__H1_HEAD_MAX + 500);
    run_whole(&r, h, VH__H1_HEAD_MAX, false);
    expect_error(&r);
    run_release(&r);
    free(h);
    /* Bytes that are not even a status line. */
    h = malloc(VH__H1_HEAD_MAX);
    assert_non_null(h);
    memset(h, 'H', VH__H1_HEAD_MAX);
    run_whole(&r, h, VH__H1_HEAD_MAX, false);
    expect_error(&r);
    run_release(&r);
    run_whole(&r, h, VH__H1_HEAD_MAX - 1, false);
    assert_int_equal(r.p.state, VH__H1_HEAD);
    run_release(&r);
    free(h);
}

static void test_head_bound_per_head(void **state)
{
    static const char interim[] = "HTTP/1.1 100 Continue\r\n\r\n";
    size_t len = sizeof(interim) - 1 + VH__H1_HEAD_MAX + 2;
    char *h = make_head(VH__H1_HEAD_MAX), *in = malloc(len);
    struct run r;

    (void)state;
    /* The bound is for each head, not for the interim answers and the final one together. */
    assert_non_null(in);
    memcpy(in, interim, sizeof(interim) - 1);
    memcpy(in + sizeof(interim) - 1, h, VH__H1_HEAD_MAX);
    memcpy(in + len - 2, "ok", 2);
    run_whole(&r, in, len, false);
    expect_done(&r, 200, true, "ok", len);
    run_release(&r);
    /* An interim answer, then a final head one byte short of its end: waiting, not an error. */
    run_whole(&r, in, len - 3, false);
    assert_int_equal(r.p.state, VH__H1_HEAD);
    assert_int_equal(r.consumed, sizeof(interim) - 1);
    run_release(&r);
    free(in);
    free(h);
}

/* A chunked response whose first chunk-size line is `line_len` bytes with its CRLF. */
static char *make_chunk_line(size_t line_len, size_t *len)
{
    static const char head[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
    static const char rest[] = "abc\r\n0\r\n\r\n";
    size_t hl = sizeof(head) - 1, rl = sizeof(rest) - 1;
    char *in = malloc(hl + line_len + rl + 1);

    assert_non_null(in);
    assert_true(line_len >= 5);
    memcpy(in, head, hl);
    memcpy(in + hl, "3;", 2);
    memset(in + hl + 2, 'x', line_len - 4);
    memcpy(in + hl + line_len - 2, "\r\n", 2);
    memcpy(in + hl + line_len, rest, rl);
    *len = hl + line_len + rl;
    in[*len] = '\0';
    return in;
}

static void test_chunk_line_bound(void **state)
{
    static const size_t hl = 47; /* the head of make_chunk_line */
    size_t len;
    char *in;
    struct run r;

    (void)state;
    in = make_chunk_line(VH__H1_LINE_MAX, &len);
    run_whole(&r, in, len, false);
    expect_done(&r, 200, true, "abc", len);
    run_release(&r);
    run_bytewise(&r, in, len, false);
    expect_done(&r, 200, true, "abc", len);
    run_release(&r);
    /* The line without its LF, one byte short of the bound: waiting. */
    run_whole(&r, in, hl + VH__H1_LINE_MAX - 1, false);
    assert_int_equal(r.p.state, VH__H1_CHUNK_SIZE);
    assert_int_equal(r.consumed, hl);
    run_release(&r);
    free(in);

    in = make_chunk_line(VH__H1_LINE_MAX + 1, &len);
    run_whole(&r, in, len, false);
    expect_error(&r);
    run_release(&r);
    /* The bound's worth with no LF: an error without waiting for the rest. */
    run_whole(&r, in, hl + VH__H1_LINE_MAX, false);
    expect_error(&r);
    run_release(&r);
    free(in);
}

static void test_chunk_lines_bound_each(void **state)
{
    static const char head[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
    char *in = malloc(64 * 1024), *want = malloc(64);
    size_t at = sizeof(head) - 1, i;
    struct run r;

    (void)state;
    /* Many long extension lines: each under the bound, all together far over it. */
    assert_non_null(in);
    assert_non_null(want);
    memcpy(in, head, at);
    for (i = 0; i < 20; i++) {
        memcpy(in + at, "1;", 2);
        memset(in + at + 2, 'e', 900);
        memcpy(in + at + 902, "\r\n", 2);
        in[at + 904] = (char)('a' + i);
        memcpy(in + at + 905, "\r\n", 2);
        want[i] = (char)('a' + i);
        at += 907;
    }
    want[i] = '\0';
    memcpy(in + at, "0\r\n\r\n", 5);
    at += 5;
    run_whole(&r, in, at, false);
    expect_done(&r, 200, true, want, at);
    run_release(&r);
    free(in);
    free(want);
}

/* A chunked response whose one trailer line is `line_len` bytes with its CRLF. */
static char *make_trailer(size_t line_len, size_t *len)
{
    static const char head[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n";
    size_t hl = sizeof(head) - 1;
    char *in = malloc(hl + line_len + 3);

    assert_non_null(in);
    memcpy(in, head, hl);
    memcpy(in + hl, "X-T: ", 5);
    memset(in + hl + 5, 't', line_len - 7);
    memcpy(in + hl + line_len - 2, "\r\n\r\n", 4);
    *len = hl + line_len + 2;
    in[*len] = '\0';
    return in;
}

static void test_trailer_line_bound(void **state)
{
    static const size_t hl = 50; /* the head and last chunk of make_trailer */
    static const char head[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n";
    size_t len, i, at;
    char *in;
    struct run r;

    (void)state;
    in = make_trailer(VH__H1_LINE_MAX, &len);
    run_whole(&r, in, len, false);
    expect_done(&r, 200, true, "", len);
    run_release(&r);
    run_whole(&r, in, hl + VH__H1_LINE_MAX - 1, false);
    assert_int_equal(r.p.state, VH__H1_TRAILERS);
    assert_int_equal(r.consumed, hl);
    run_release(&r);
    free(in);

    in = make_trailer(VH__H1_LINE_MAX + 1, &len);
    run_whole(&r, in, len, false);
    expect_error(&r);
    run_release(&r);
    run_whole(&r, in, hl + VH__H1_LINE_MAX, false);
    expect_error(&r);
    run_release(&r);
    free(in);

    /* Many trailer lines, each under the bound. */
    in = malloc(32 * 1024);
    assert_non_null(in);
    memcpy(in, head, hl);
    at = hl;
    for (i = 0; i < 10; i++) {
        memcpy(in + at, "X-T: ", 5);
        memset(in + at + 5, 't', 993);
        memcpy(in + at + 998, "\r\n", 2);
        at += 1000;
    }
    memcpy(in + at, "\r\n", 2);
    at += 2;
    run_whole(&r, in, at, false);
    expect_done(&r, 200, true, "", at);
    run_release(&r);
    free(in);
}

/* --- after the end --------------------------------------------------------------------------- */

static void test_done_and_error_are_final(void **state)
{
    static const char in[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n"
                             "Content-Length: 3\r\n\r\nabc";
    struct run r;

    (void)state;
    parse_str(&r, in, false);
    expect_done(&r, 200, true, "ok", 40);
    /* Called again with the pipelined bytes, it takes none of them. */
    assert_int_equal(feed(&r, in + 40, sizeof(in) - 1 - 40), 0);
    assert_int_equal(feed(&r, "", 0), 0);
    expect_done(&r, 200, true, "ok", 40);
    run_release(&r);

    parse_str(&r, "HTTP/3 200 OK\r\n\r\n", false);
    expect_error(&r);
    assert_int_equal(feed(&r, in, sizeof(in) - 1), 0);
    expect_error(&r);
    assert_int_equal(vh__h1_eof(&r.p), VH__H1_ERROR);
    assert_int_equal(r.body.len, 0);
    run_release(&r);

    /* A fresh init makes the parser ready for the next response on the connection. */
    parse_str(&r, in, false);
    vh__h1_init(&r.p);
    r.body.len = 0;
    assert_int_equal(feed(&r, in + 40, sizeof(in) - 1 - 40), sizeof(in) - 1 - 40);
    expect_done(&r, 200, true, "abc", sizeof(in) - 1);
    run_release(&r);
}

/* --- the incremental property -------------------------------------------------------------- */

struct h1_case {
    const char *in; /* a response, then `tail` bytes that belong to the next */
    size_t tail;
    bool eof; /* the server closes after `in` */
    int status;
    bool keep_alive;
    const char *body;
};

static const struct h1_case valid[] = {
    {"HTTP/1.1 200 OK\r\nZ-A: z\r\nContent-Length: 11\r\nX-A: b\r\n\r\nhello worldHTTP/1.1 200 OK\r\n",
     17, false, 200, true, "hello world"},
    {"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 0, false, 200, true, ""},
    {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;a=b\r\nhello\r\nB\r\n, world!!!!"
     "\r\n0;end\r\nX-T: 1\r\n\r\nHTTP",
     4, false, 200, true, "hello, world!!!!"},
    {"HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n3\nabc\n1 ; q\nd\n0\nT: t\n\nX", 1, false, 200,
     true, "abcd"},
    {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 0, false, 200, true, ""},
    {"HTTP/1.0 200 OK\r\nServer: x\r\n\r\nall of this\r\n\r\nuntil the close", 0, true, 200, false,
     "all of this\r\n\r\nuntil the close"},
    {"HTTP/1.1 500 Internal Server Error\r\n\r\n", 0, true, 500, false, ""},
    {"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: <x>\r\n\r\n"
     "HTTP/1.1 202 Accepted\r\nContent-Length: 4\r\nConnection: close\r\n\r\nnopeXX",
     2, false, 202, false, "nope"},
    {"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nhello", 5, false, 204, true, ""},
    {"HTTP/1.1 304 Not Modified\r\n\r\n", 0, false, 304, true, ""},
    {"HTTP/1.0 201 Created\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nokX", 1, false,
     201, true, "ok"},
    {"HTTP/1.1 200 OK\r\nContent-Length: 9\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
     "2\r\nhi\r\n0\r\n\r\n",
     0, false, 200, false, "hi"},
    {"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n2\r\nhi\r\n0\r\n\r\n", 0, true, 200, false,
     "2\r\nhi\r\n0\r\n\r\n"},
    {"\r\nHTTP/1.1 404 Not Found\r\nX-Fold: a\r\n b\r\nContent-Length: 3\r\n\r\nno!", 0, false, 404,
     true, "no!"},
};

static void expect_case(const struct h1_case *c, const struct run *r, const char *how, size_t at,
                        size_t at2)
{
    size_t len = strlen(c->in), blen = strlen(c->body);

    if (r->p.state != VH__H1_DONE || r->p.status != c->status || r->p.keep_alive != c->keep_alive ||
        r->body.len != blen || (blen && memcmp(r->body.buf, c->body, blen) != 0) ||
        r->consumed != len - c->tail)
        fail_msg("%s (%zu, %zu): state %d status %d keep_alive %d body %zu/%zu consumed %zu/%zu "
                 "for \"%s\"",
                 how, at, at2, (int)r->p.state, r->p.status, (int)r->p.keep_alive, r->body.len,
                 blen, r->consumed, len - c->tail, c->in);
}

static void test_incremental_valid(void **state)
{
    size_t k, i, j, len, cuts[2];
    struct run r;

    (void)state;
    for (k = 0; k < sizeof(valid) / sizeof(valid[0]); k++) {
        const struct h1_case *c = &valid[k];

        len = strlen(c->in);
        run_whole(&r, c->in, len, c->eof);
        expect_case(c, &r, "whole", 0, 0);
        run_release(&r);
        run_bytewise(&r, c->in, len, c->eof);
        expect_case(c, &r, "byte by byte", 0, 0);
        run_release(&r);
        for (i = 0; i <= len; i++) {
            cuts[0] = i;
            run_pieces(&r, c->in, len, cuts, 1, c->eof);
            expect_case(c, &r, "split at", i, 0);
            run_release(&r);
            for (j = i; j <= len; j++) {
                cuts[1] = j;
                run_pieces(&r, c->in, len, cuts, 2, c->eof);
                expect_case(c, &r, "split at", i, j);
                run_release(&r);
            }
        }
    }
}

static void test_incremental_invalid(void **state)
{
    static const char *const bad[] = {
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nz\r\n",
        "HTTP/1.1 101 Switching Protocols\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\t3\r\n\r\nab",
        "ICY 200 OK\r\n\r\n",
        "HTTP/1.1 100 Continue\r\n\r\nHTTP/2 200\r\n\r\n",
    };
    size_t k, i, len;
    struct run r;

    (void)state;
    for (k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
        len = strlen(bad[k]);
        for (i = 0; i <= len; i++) {
            run_pieces(&r, bad[k], len, &i, 1, false);
            if (r.p.state != VH__H1_ERROR)
                fail_msg("split at %zu: state %d for \"%s\"", i, (int)r.p.state, bad[k]);
            run_release(&r);
        }
    }
}

/*
 * A real caller: a buffer of VH__H1_HEAD_MAX bytes, filled by reads of uneven sizes. Whenever
 * the buffer is full the parser must consume something, finish, or fail (h1_int.h).
 */
static void test_bounded_caller_buffer(void **state)
{
    static const char tail[] = "0;last\r\nX-Trailer: 1\r\n\r\nNEXT";
    char *head = make_head(VH__H1_HEAD_MAX - 200), *in, *want, *buf = malloc(VH__H1_HEAD_MAX);
    size_t hl = strlen(head), len = 0, wl = 0, from = 0, plen = 0, n, i;
    uint32_t rnd = 12345;
    struct run r;

    (void)state;
    in = malloc(hl + 512 * 1024);
    want = malloc(512 * 1024);
    assert_non_null(in);
    assert_non_null(want);
    assert_non_null(buf);
    /* make_head says Content-Length: 2; make it chunked too (and Content-Length loses). */
    memcpy(in, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n", 45);
    memcpy(in + 45, head + 17, hl - 17);
    len = 45 + hl - 17;
    assert_true(len < VH__H1_HEAD_MAX);
    for (i = 0; i < 60; i++) {
        size_t size = (i * 997) % 5000 + 1, e = (i * 131) % 1000, k;

        len += (size_t)snprintf(in + len, 64, "%zx;", size);
        memset(in + len, 'e', e);
        len += e;
        memcpy(in + len, "\r\n", 2);
        len += 2;
        for (k = 0; k < size; k++)
            want[wl++] = in[len + k] = (char)('A' + (i + k) % 26);
        len += size;
        memcpy(in + len, "\r\n", 2);
        len += 2;
    }
    want[wl] = '\0';
    memcpy(in + len, tail, sizeof(tail) - 1);
    len += sizeof(tail) - 1;

    run_init(&r);
    while (r.p.state != VH__H1_DONE && r.p.state != VH__H1_ERROR) {
        size_t room = VH__H1_HEAD_MAX - plen, take;

        rnd = rnd * 1103515245u + 12345u;
        take = (rnd >> 8) % 9000 + 1;
        if (take > room)
            take = room;
        if (take > len - from)
            take = len - from;
        memcpy(buf + plen, in + from, take);
        plen += take;
        from += take;
        n = feed(&r, buf, plen);
        if (plen == VH__H1_HEAD_MAX)
            assert_true(n > 0 || r.p.state == VH__H1_DONE || r.p.state == VH__H1_ERROR);
        memmove(buf, buf + n, plen - n);
        plen -= n;
        if (from == len && n == 0)
            break;
    }
    /* Transfer-Encoding and Content-Length both there: the connection is not kept. */
    expect_done(&r, 200, false, want, len - 4);
    run_release(&r);
    free(head);
    free(in);
    free(want);
    free(buf);
}

/* A complete head longer than VH__H1_HEAD_MAX is an error however it arrives. */
static void test_whole_head_over_bound(void **state)
{
    char *h = make_head(VH__H1_HEAD_MAX + 2), *in = malloc(VH__H1_HEAD_MAX + 4);
    struct run r;

    (void)state;
    assert_non_null(in);
    memcpy(in, h, VH__H1_HEAD_MAX + 2);
    memcpy(in + VH__H1_HEAD_MAX + 2, "ok", 2);
    /* Through a bounded caller buffer: the first HEAD_MAX bytes have no end, an error. */
    run_whole(&r, in, VH__H1_HEAD_MAX, false);
    expect_error(&r);
    run_release(&r);
    /* Whole: the same error. */
    run_whole(&r, in, VH__H1_HEAD_MAX + 4, false);
    expect_error(&r);
    run_release(&r);
    free(in);
    free(h);
}

/* `status` stays 0 until the final head is whole: not set by a partial head or a 1xx. */
static void test_status_only_with_final_head(void **state)
{
    struct run r;

    (void)state;
    parse_str(&r, "HTTP/1.1 200 OK\r\nContent-Le", false);
    assert_int_equal(r.p.state, VH__H1_HEAD);
    assert_int_equal(r.p.status, 0);
    run_release(&r);
    parse_str(&r, "HTTP/1.1 100 Continue\r\n\r\n", false);
    assert_int_equal(r.p.state, VH__H1_HEAD);
    assert_int_equal(r.p.status, 0);
    run_release(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_content_length),
        cmocka_unit_test(test_content_length_partial),
        cmocka_unit_test(test_zero_length),
        cmocka_unit_test(test_content_length_duplicates),
        cmocka_unit_test(test_content_length_invalid),
        cmocka_unit_test(test_content_length_large),
        cmocka_unit_test(test_chunked),
        cmocka_unit_test(test_chunked_lf_only),
        cmocka_unit_test(test_chunked_states),
        cmocka_unit_test(test_chunked_bad_sizes),
        cmocka_unit_test(test_chunked_missing_crlf),
        cmocka_unit_test(test_chunked_huge_size),
        cmocka_unit_test(test_until_eof),
        cmocka_unit_test(test_eof_in_head),
        cmocka_unit_test(test_no_body_statuses),
        cmocka_unit_test(test_interim),
        cmocka_unit_test(test_switching_protocols),
        cmocka_unit_test(test_keep_alive),
        cmocka_unit_test(test_te_and_content_length),
        cmocka_unit_test(test_te_in_http10_closes),
        cmocka_unit_test(test_te_not_chunked),
        cmocka_unit_test(test_bad_headers),
        cmocka_unit_test(test_bad_status_lines),
        cmocka_unit_test(test_status_line_forms),
        cmocka_unit_test(test_folding),
        cmocka_unit_test(test_head_bound),
        cmocka_unit_test(test_head_bound_per_head),
        cmocka_unit_test(test_chunk_line_bound),
        cmocka_unit_test(test_chunk_lines_bound_each),
        cmocka_unit_test(test_trailer_line_bound),
        cmocka_unit_test(test_done_and_error_are_final),
        cmocka_unit_test(test_incremental_valid),
        cmocka_unit_test(test_incremental_invalid),
        cmocka_unit_test(test_bounded_caller_buffer),
        cmocka_unit_test(test_whole_head_over_bound),
        cmocka_unit_test(test_status_only_with_final_head),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
