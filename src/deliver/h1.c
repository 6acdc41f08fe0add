/*
 * The delivery engine's HTTP/1.1 response parser (h1_int.h). One pass over each byte of the
 * body; the head is parsed once it is whole (a webhook's answer head is a few hundred bytes,
 * and the caller's buffer holds VH__H1_HEAD_MAX).
 */
#include "deliver/h1_int.h"

#include <string.h>
#include <strings.h>

#include "core/banned.h"

#define CL_MAX ((uint64_t)1 << 62) /* a Content-Length or chunk size beyond it is refused */

void vh__h1_init(struct vh__h1 *p)
{
    memset(p, 0, sizeof(*p));
    p->state = VH__H1_HEAD;
}

static size_t fail(struct vh__h1 *p, const char *why)
{
    p->state = VH__H1_ERROR;
    p->error = why;
    return 0;
}

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static bool is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* [s, e) without the optional whitespace at both ends. */
static void trim(const char **s, const char **e)
{
    while (*s < *e && is_ows(**s))
        (*s)++;
    while (*e > *s && is_ows((*e)[-1]))
        (*e)--;
}

static bool equals_ci(const char *s, const char *e, const char *word)
{
    size_t n = strlen(word);

    return (size_t)(e - s) == n && strncasecmp(s, word, n) == 0;
}

/* The end of the line that starts at `s` (its LF), or NULL when it is not all in [s, end). */
static const char *line_end(const char *s, const char *end)
{
    return memchr(s, '\n', (size_t)(end - s));
}

/* [s, lf) without a CR before the LF. */
static const char *content_end(const char *s, const char *lf)
{
    return lf > s && lf[-1] == '\r' ? lf - 1 : lf;
}

/* Digits only, at most CL_MAX; false otherwise. */
static bool parse_decimal(const char *s, const char *e, uint64_t *out)
{
    uint64_t v = 0;

    if (s == e)
        return false;
    for (; s < e; s++) {
        if (*s < '0' || *s > '9' || v > CL_MAX / 10)
            return false;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    if (v > CL_MAX)
        return false;
    *out = v;
    return true;
}

/* What the headers said about framing and the connection. */
struct head {
    bool has_length, has_te, te_chunked, conn_close, conn_keep_alive;
    uint64_t length;
    int status;
    int minor; /* HTTP/1.minor */
};

/* Walks a comma-separated list; `last` gets its last member, `close`/`ka` what it names. */
static void list_tokens(const char *s, const char *e, const char **last_s, const char **last_e,
                        bool *close, bool *ka)
{
    const char *p = s, *t, *te;

    while (p <= e) {
        t = p;
        te = memchr(p, ',', (size_t)(e - p));
        if (!te)
            te = e;
        p = te + 1;
        trim(&t, &te);
        if (t == te)
            continue;
        if (last_s) {
            *last_s = t;
            *last_e = te;
        }
        if (close && equals_ci(t, te, "close"))
            *close = true;
        if (ka && equals_ci(t, te, "keep-alive"))
            *ka = true;
    }
}

/*
 * One header line [s, e) (no CRLF). Returns 1 for a header that frames the message or rules
 * the connection, 0 for any other, -1 (p in ERROR) when it breaks the framing.
 */
static int header_line(struct vh__h1 *p, struct head *h, const char *s, const char *e)
{
    const char *colon = memchr(s, ':', (size_t)(e - s)), *n, *v, *ve;
    uint64_t len;

    if (!colon || colon == s) {
        fail(p, "a response header line without a name and a colon");
        return -1;
    }
    for (n = s; n < colon; n++) {
        if (!is_tchar((unsigned char)*n)) {
            fail(p, is_ows(*n) ? "whitespace before a response header's colon"
                               : "a bad character in a response header name");
            return -1;
        }
    }
    v = colon + 1;
    ve = e;
    trim(&v, &ve);
    if (equals_ci(s, colon, "content-length")) {
        if (!parse_decimal(v, ve, &len)) {
            fail(p, "a Content-Length that is not a number");
            return -1;
        }
        if (h->has_length && h->length != len) {
            fail(p, "two different Content-Lengths");
            return -1;
        }
        h->has_length = true;
        h->length = len;
    } else if (equals_ci(s, colon, "transfer-encoding")) {
        const char *ls = NULL, *le = NULL;

        list_tokens(v, ve, &ls, &le, NULL, NULL);
        h->has_te = true;
        /* Several headers make one list: the last coding named decides. */
        if (ls)
            h->te_chunked = equals_ci(ls, le, "chunked");
    } else if (equals_ci(s, colon, "connection")) {
        list_tokens(v, ve, NULL, NULL, &h->conn_close, &h->conn_keep_alive);
    } else {
        return 0;
    }
    return 1;
}

/* "HTTP/1.x SSS[ reason]"; false (and p in ERROR) otherwise. */
static bool status_line(struct vh__h1 *p, struct head *h, const char *s, const char *e)
{
    if (e - s < 12 || memcmp(s, "HTTP/1.", 7) != 0 || s[7] < '0' || s[7] > '9' || s[8] != ' ' ||
        s[9] < '1' || s[9] > '9' || s[10] < '0' || s[10] > '9' || s[11] < '0' || s[11] > '9' ||
        (e - s > 12 && s[12] != ' ')) {
        fail(p, "the response does not start with an HTTP/1.x status line");
        return false;
    }
    h->status = (s[9] - '0') * 100 + (s[10] - '0') * 10 + (s[11] - '0');
    h->minor = s[7] - '0';
    return true;
}

/*
 * A whole head in [buf, end): `*used` gets its length with the blank line. Returns 1 when
 * parsed, 0 when it is not all there yet, -1 on an error.
 */
static int parse_head(struct vh__h1 *p, const char *buf, const char *end, size_t *used)
{
    const char *s = buf, *lf, *ce;
    struct head h;
    int framing = 0;

    memset(&h, 0, sizeof(h));
    /* A client ought to ignore empty lines before a status line (RFC 9112 §2.2). */
    while (s < end && (*s == '\r' || *s == '\n') && s - buf < 4)
        s++;
    lf = line_end(s, end);
    if (!lf)
        return 0;
    if (!status_line(p, &h, s, content_end(s, lf)))
        return -1;
    for (s = lf + 1;; s = lf + 1) {
        lf = line_end(s, end);
        if (!lf)
            return 0;
        ce = content_end(s, lf);
        if (ce == s)
            break;
        if (is_ows(*s)) {
            /* Obsolete line folding continues the previous header: ignored, unless that
             * header frames the message (its value would be read two ways). */
            if (framing) {
                fail(p, "a folded Content-Length, Transfer-Encoding or Connection header");
                return -1;
            }
            continue;
        }
        framing = header_line(p, &h, s, ce);
        if (framing < 0)
            return -1;
    }
    *used = (size_t)(lf + 1 - buf);
    if (*used > VH__H1_HEAD_MAX) {
        fail(p, "a response head over 16 KiB");
        return -1;
    }
    if (h.status < 200) {
        if (h.status == 101) {
            fail(p, "101 Switching Protocols: the endpoint left HTTP/1.1");
            return -1;
        }
        /* An interim answer (100 Continue, 103 Early Hints): the final one follows. */
        return 1;
    }
    p->status = h.status;
    p->keep_alive = h.minor >= 1 ? !h.conn_close : h.conn_keep_alive && !h.conn_close;
    if (p->status == 204 || p->status == 304) {
        p->state = VH__H1_DONE;
    } else if (h.has_te) {
        /*
         * Transfer-Encoding wins over Content-Length, and the connection ends after; so it
         * does after an HTTP/1.0 answer with one, whose framing may be faulty (RFC 9112 §6.1).
         */
        if (h.has_length || h.minor == 0)
            p->keep_alive = false;
        if (h.te_chunked) {
            p->state = VH__H1_CHUNK_SIZE;
        } else {
            p->state = VH__H1_UNTIL_EOF;
            p->keep_alive = false;
        }
    } else if (h.has_length) {
        p->left = h.length;
        p->state = h.length ? VH__H1_BODY : VH__H1_DONE;
    } else {
        p->state = VH__H1_UNTIL_EOF;
        p->keep_alive = false;
    }
    return 1;
}

/* A chunk-size line: hex digits, then nothing or extensions after an optional ';'. */
static bool chunk_size(struct vh__h1 *p, const char *s, const char *e)
{
    uint64_t v = 0;
    const char *d = s;
    int digit;

    for (; d < e; d++) {
        if (*d >= '0' && *d <= '9')
            digit = *d - '0';
        else if (*d >= 'a' && *d <= 'f')
            digit = *d - 'a' + 10;
        else if (*d >= 'A' && *d <= 'F')
            digit = *d - 'A' + 10;
        else
            break;
        if (v > CL_MAX / 16) {
            fail(p, "a chunk size too large");
            return false;
        }
        v = v * 16 + (uint64_t)digit;
    }
    if (d == s) {
        fail(p, "a chunk size that is not hexadecimal");
        return false;
    }
    while (d < e && is_ows(*d))
        d++;
    if (d < e && *d != ';') {
        fail(p, "a chunk size that is not hexadecimal");
        return false;
    }
    p->left = v;
    p->state = v ? VH__H1_CHUNK_DATA : VH__H1_TRAILERS;
    return true;
}

/* Hands up to `left` body bytes on; returns how many. */
static size_t take_body(struct vh__h1 *p, const char *s, size_t avail, vh__h1_body_fn *body,
                        void *ud)
{
    size_t n = avail;

    if (p->state != VH__H1_UNTIL_EOF && (uint64_t)n > p->left)
        n = (size_t)p->left;
    if (n && body)
        body(ud, s, n);
    if (p->state != VH__H1_UNTIL_EOF)
        p->left -= n;
    return n;
}

size_t vh__h1_parse(struct vh__h1 *p, const char *buf, size_t len, vh__h1_body_fn *body, void *ud)
{
    const char *s = buf, *end = buf + len, *lf, *ce;
    size_t used;
    int r;

    while (s < end || p->state == VH__H1_DONE) {
        switch (p->state) {
        case VH__H1_HEAD:
            used = 0;
            r = parse_head(p, s, end, &used);
            if (r < 0)
                return (size_t)(s - buf);
            if (r == 0) {
                if (end - s >= VH__H1_HEAD_MAX)
                    fail(p, "a response head over 16 KiB");
                return (size_t)(s - buf);
            }
            s += used;
            break;
        case VH__H1_BODY:
        case VH__H1_CHUNK_DATA:
        case VH__H1_UNTIL_EOF:
            s += take_body(p, s, (size_t)(end - s), body, ud);
            if (p->state == VH__H1_BODY && p->left == 0)
                p->state = VH__H1_DONE;
            else if (p->state == VH__H1_CHUNK_DATA && p->left == 0)
                p->state = VH__H1_CHUNK_END;
            break;
        case VH__H1_CHUNK_END:
            if (*s == '\n') {
                s++;
            } else if (*s == '\r') {
                if (end - s < 2)
                    return (size_t)(s - buf);
                if (s[1] != '\n') {
                    fail(p, "chunk data not followed by CRLF");
                    return (size_t)(s - buf);
                }
                s += 2;
            } else {
                fail(p, "chunk data not followed by CRLF");
                return (size_t)(s - buf);
            }
            p->state = VH__H1_CHUNK_SIZE;
            break;
        case VH__H1_CHUNK_SIZE:
        case VH__H1_TRAILERS:
            lf = line_end(s, end);
            if (!lf) {
                if (end - s >= VH__H1_LINE_MAX)
                    fail(p, p->state == VH__H1_TRAILERS ? "a trailer line over 1 KiB"
                                                        : "a chunk-size line over 1 KiB");
                return (size_t)(s - buf);
            }
            if (lf - s >= VH__H1_LINE_MAX) {
                fail(p, p->state == VH__H1_TRAILERS ? "a trailer line over 1 KiB"
                                                    : "a chunk-size line over 1 KiB");
                return (size_t)(s - buf);
            }
            ce = content_end(s, lf);
            if (p->state == VH__H1_CHUNK_SIZE) {
                if (!chunk_size(p, s, ce))
                    return (size_t)(s - buf);
            } else if (ce == s) {
                p->state = VH__H1_DONE;
            }
            s = lf + 1;
            break;
        case VH__H1_DONE:
        case VH__H1_ERROR:
            return (size_t)(s - buf);
        }
    }
    return (size_t)(s - buf);
}

enum vh__h1_state vh__h1_eof(struct vh__h1 *p)
{
    switch (p->state) {
    case VH__H1_UNTIL_EOF:
        p->state = VH__H1_DONE;
        break;
    case VH__H1_DONE:
    case VH__H1_ERROR:
        break;
    case VH__H1_HEAD:
        fail(p, "the connection closed before a complete response head");
        break;
    default:
        fail(p, "the connection closed before the end of the response body");
        break;
    }
    return p->state;
}
