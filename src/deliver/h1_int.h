/*
 * Private to the library: the HTTP/1.1 response parser of the delivery engine (h1.c). Pure:
 * it reads bytes the engine received and says what they mean; it does no I/O.
 *
 * The engine sends one request on a connection and reads its answer, so this parses one
 * response at a time (interim 1xx answers skipped) and says whether the connection may carry
 * the next request. It follows RFC 9112 for a client, strictly where framing is concerned:
 * a response whose length cannot be known the same way by every reader is refused, not
 * guessed at (two different Content-Lengths, a Content-Length that is not a number, a bad
 * chunk size). Bounds: the status line and headers together at most VH__H1_HEAD_MAX bytes, a
 * chunk-size or trailer line at most VH__H1_LINE_MAX.
 */
#ifndef VH_DELIVER_H1_INT_H
#define VH_DELIVER_H1_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VH__H1_HEAD_MAX 16384 /* bytes of a response head: status line, headers, blank line */
#define VH__H1_LINE_MAX 1024  /* bytes of a chunk-size line, and of each trailer line */

enum vh__h1_state {
    VH__H1_HEAD,       /* waiting for the (next) status line and headers */
    VH__H1_BODY,       /* a body of known length: `left` bytes to come */
    VH__H1_CHUNK_SIZE, /* a chunk-size line */
    VH__H1_CHUNK_DATA, /* `left` bytes of chunk data */
    VH__H1_CHUNK_END,  /* the CRLF after a chunk's data */
    VH__H1_TRAILERS,   /* trailer lines, up to a blank one */
    VH__H1_UNTIL_EOF,  /* a body that ends when the server closes the connection */
    VH__H1_DONE,       /* the response is complete */
    VH__H1_ERROR       /* not HTTP/1.x we accept: `error` says why */
};

struct vh__h1 {
    enum vh__h1_state state;
    int status;        /* the final status code, once the head is read; 0 before */
    bool keep_alive;   /* whether the connection may carry another request once DONE */
    uint64_t left;     /* bytes left of the body or of the current chunk */
    const char *error; /* a static message, in state VH__H1_ERROR */
};

/* Body bytes, in order, as they are parsed (never the framing of a chunked body). */
typedef void vh__h1_body_fn(void *ud, const char *p, size_t n);

/* Ready for a response. */
void vh__h1_init(struct vh__h1 *p);

/*
 * Parses what it can of `buf[0..len)`: the bytes received and not yet consumed, in order.
 * Returns how many it consumed; the caller keeps the rest and calls again with them and
 * more once more arrive. Stops early in DONE (bytes after the response are not consumed)
 * and in ERROR. A head, chunk-size line or trailer line longer than its bound is an error
 * as soon as `len` shows it, so a caller whose buffer holds VH__H1_HEAD_MAX bytes always
 * gets progress, DONE or ERROR.
 */
size_t vh__h1_parse(struct vh__h1 *p, const char *buf, size_t len, vh__h1_body_fn *body, void *ud);

/*
 * The server closed the connection (no more bytes will come): ends a body read until EOF
 * (DONE) or makes any other unfinished response an error. Returns the state.
 */
enum vh__h1_state vh__h1_eof(struct vh__h1 *p);

#endif
