/*
 * The HTTP server: libmicrohttpd in thread-pool mode in front of a `struct vh_api` (the
 * sender's API) or of any other handler (the receiver's). It bounds what it reads (body,
 * headers, connections, time), fills a request struct, calls the handler and writes the
 * response. It decides nothing itself. The body reaches the handler byte for byte as the
 * client sent it (after HTTP's own chunked framing is removed), so signatures over the raw
 * bytes can be checked.
 *
 * Every request gets an id (`X-Request-Id`, and `request_id` in the log) and one log
 * record: {"ts","level","msg":"request","request_id","method","path","status","ms"}; never
 * headers, query strings or bodies. A body past `body_max` is read and thrown away, then
 * answered 413 by the API; one declared (Content-Length) at more than 16 times the bound is
 * answered 413 at once, unread, and the connection closed.
 *
 * A connection closed with its body unread (that 413, or an admit hook's refusal) is closed
 * in stages, as RFC 9112 §9.6 advises: the answer goes out with `Connection: close` and a
 * FIN after it, and what the client still sends is read and dropped until it closes its
 * side, for at most 5 s, by one thread of the server's (at most 64 such connections at once;
 * past that the oldest is closed). A client that sends its whole body before it reads, or a
 * proxy in front (nginx), then gets the answer rather than a reset.
 */
#ifndef VOCOHOOK_SERVER_H
#define VOCOHOOK_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include <vocohook/api.h>
#include <vocohook/common.h>
#include <vocohook/error.h>
#include <vocohook/log.h>

struct vh_server;

struct vh_server_config {
    const char *listen;      /* "127.0.0.1:8080", "[::1]:8080", "0.0.0.0:0" (any port) */
    unsigned threads;        /* worker threads; 0: vh_config_default_threads() */
    size_t body_max;         /* request body bound; 0 means VH_BODY_MAX (413 past it) */
    unsigned max_conns;      /* 0 means 1024 */
    unsigned conn_timeout_s; /* idle connection timeout; 0 means 30 */
    vh_log_fn *log;          /* one JSON line per request (id, method, path, status, ms) */
    void *log_ud;
};

/*
 * Binds and starts serving `api` (borrowed: it must outlive the server). Returns 0,
 * VH_EINVAL (a bad listen address), VH_EIO (bind failed, with errno text) or VH_ENOMEM.
 */
VH_API int vh_server_start(struct vh_api *api, const struct vh_server_config *cfg,
                           struct vh_server **out, struct vh_error *err);

#define VH_SERVER_HEADERS_MAX 8 /* extra request headers a handler can ask for */

/*
 * A request as a generic handler sees it: what vh_api_handle gets (`base`: method, path,
 * query, Authorization, Content-Type, the raw body and its bound, the request id and the
 * arrival time), and the values of the extra headers the handler named, in the order it
 * named them (NULL when the request has no such header). A header sent on several lines
 * is one value, the lines' values joined with ", " (RFC 9110 §5.3), so that a handler
 * sees that there were several rather than the first alone (out of memory: NULL).
 * Everything is borrowed for the duration of the call.
 */
struct vh_server_req {
    struct vh_api_req base;
    const char *headers[VH_SERVER_HEADERS_MAX];
};

/*
 * Answers one request. Must leave a complete answer in `resp` (initialized by the server
 * with vh_api_resp_init; the body is sent as application/json); a status outside 100-599
 * is sent as 500. Returns 0, or a negative vh_err when its own part failed (the answer is
 * still sent). Runs on the server's worker threads, several at once.
 */
typedef int vh_server_handler_fn(void *ud, const struct vh_server_req *req,
                                 struct vh_api_resp *resp);

/* A request whose answer its handler put off (see vh_server_async_fn). */
struct vh_server_reply;

#define VH_SERVER_LATER 1 /* an async handler's "the answer comes through vh_server_reply" */

/*
 * A handler that may answer later, for work that waits (a commit) without holding a server
 * thread. It either answers now, as vh_server_handler_fn, or keeps `reply` and returns
 * VH_SERVER_LATER: the server then serves other connections, and sends `resp` once
 * vh_server_reply(reply) is called. `req`, what it points to, and `resp` stay valid until
 * that call.
 */
typedef int vh_server_async_fn(void *ud, const struct vh_server_req *req, struct vh_api_resp *resp,
                               struct vh_server_reply *reply);

/*
 * Sends the answer now complete in the `resp` of a request its handler put off. Exactly once
 * per VH_SERVER_LATER, from any thread (the handler itself may call it, even before it
 * returns VH_SERVER_LATER). vh_server_stop waits for every reply.
 */
VH_API void vh_server_reply(struct vh_server_reply *reply);

/*
 * Looks at a request's head before its body is read (`req->base.body` NULL). Returns true
 * to read the body and go on to the handler; false when `resp` holds the answer, which goes
 * out at once, the body unread (the connection is then closed, in stages: see above).
 */
typedef bool vh_server_admit_fn(void *ud, const struct vh_server_req *req,
                                struct vh_api_resp *resp);

/*
 * Writes the answer to a request the server refuses itself, before any handler or admit
 * hook sees it: `status` (400: a head whose body framing is ambiguous or not understood,
 * or with white space in a field name; the connection is closed after it), `reason` (a
 * static name: "ambiguous_length", "unsupported_transfer_encoding", "bad_header_name") and
 * `message` (static, one line). `resp` is as for the handler.
 */
typedef void vh_server_refuse_fn(void *ud, int status, const char *reason, const char *message,
                                 struct vh_api_resp *resp);

struct vh_server_handler {
    vh_server_handler_fn *handle;
    vh_server_async_fn *handle_async; /* used instead of `handle` when set */
    void *ud;                         /* borrowed: passed to `handle`; must outlive the server */
    /* Names of the extra headers to look up (case-insensitive); NULL ends the list early. */
    const char *headers[VH_SERVER_HEADERS_MAX];
    vh_server_admit_fn *admit; /* optional: for requests that declare a body */
    /* Optional: the server's own refusals in the handler's envelope; NULL: the vh_api's. */
    vh_server_refuse_fn *refuse;
};

/*
 * Binds and starts serving `h` (copied; the names it points to must outlive the server).
 * Returns as vh_server_start; VH_EINVAL also when `h` has neither `handle` nor
 * `handle_async`.
 */
VH_API int vh_server_start_handler(const struct vh_server_handler *h,
                                   const struct vh_server_config *cfg, struct vh_server **out,
                                   struct vh_error *err);

/* The bound port (the real one when the config asked for port 0). */
VH_API uint16_t vh_server_port(const struct vh_server *srv);

/*
 * Stops accepting, lets requests in progress finish (for up to 10 s; idle keep-alive
 * connections are closed, and answers given meanwhile carry `Connection: close`), and
 * frees the server. An answer an async handler put off is waited for however long it takes
 * (its handler must bound it), and then has 1 s more to go out. Call it from a thread of the
 * application, never from a log callback or a handler. A connection still being closed in
 * stages is closed at once. NULL is a no-op.
 */
VH_API void vh_server_stop(struct vh_server *srv);

#endif
