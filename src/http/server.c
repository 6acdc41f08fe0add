/*
 * The HTTP server: libmicrohttpd moves bytes, a handler decides (routes.c for the sender's
 * API, the receiver for `vocohook receive`). The only file that includes <microhttpd.h>
 * (STYLE.md §1).
 *
 * Threads: MHD runs a pool of worker threads, each polling its own connections with
 * poll(2). MHD's single-thread epoll mode is avoided on purpose: it stalls when exactly
 * 128*k connections arrive together. Every callback here can run on any worker thread, at
 * once; the only shared state is the request counter and the in-flight count below.
 *
 * Bounds: bodies (body_max, then 413), headers and the read buffer
 * (MHD_OPTION_CONNECTION_MEMORY_LIMIT), connections (MHD_OPTION_CONNECTION_LIMIT) and idle
 * time (MHD_OPTION_CONNECTION_TIMEOUT).
 *
 * Lingering close (RFC 9112 §9.6). A request answered on its head (a declared body far over
 * the bound, or the admit hook's refusal) leaves its body unread, and MHD closes such a
 * connection once the answer is out. A close with unread input makes the kernel send a
 * reset: a client still sending its body then fails its send (EPIPE, ECONNRESET) before it
 * reads the answer, and nginx in front of us answers 502 instead of ours. So such a socket
 * outlives MHD's close: on_completed (MHD calls it once the answer is sent, before it shuts
 * the write side and closes its descriptor) hands a duplicate to the linger thread. The FIN
 * still goes out after the answer, and the thread reads and drops whatever still comes until
 * the client closes or LINGER_S pass, and then closes it. The answer says `Connection:
 * close` (send_answer), so MHD never reads a next request from a socket the thread reads.
 */
#include <vocohook/server.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include <vocohook/alloc.h>
#include <vocohook/clock.h>
#include <vocohook/config.h>
#include <vocohook/event.h>
#include <vocohook/sign.h>

#include "core/hex_int.h"
#include "core/log_int.h"
#include "core/thread_int.h"
#include "core/banned.h"

#define MAX_CONNS_DEFAULT    1024
#define CONN_TIMEOUT_DEFAULT 30
/*
 * Per connection: the request line and headers, and MHD's read and write buffers. MHD
 * zeroes the whole pool after every request, so its size is paid per request: 16 KiB took
 * about 2 % less CPU per webhook than 32 KiB (docs/BENCHMARKS.md, session 11). Headers of
 * 8 KiB still fit (tests/integration/test_serve_http.py); much larger ones get 431.
 */
#define CONN_MEMORY_LIMIT   (16 * 1024)
#define DRAIN_TIMEOUT_MS    10000 /* how long stop waits for requests in progress */
#define LATE_ANSWER_S       1   /* and then for answers put off past it, once resumed, to go out */
#define EARLY_REJECT_FACTOR 16  /* a declared body this many times the bound is refused unread */
#define LOG_PATH_MAX        256 /* bytes of the path that go into a log record */
#define LINGER_S            5   /* how long a body left unread may still come in, dropped */
#define LINGER_MAX          64  /* sockets lingering at once; past it the oldest is closed */
#define REQUEST_ID_LEN      24

struct vh_server {
    struct MHD_Daemon *mhd;
    struct vh_server_handler handler; /* its ud and names are borrowed */
    size_t body_max;
    vh_log_fn *log;
    void *log_ud;
    uint16_t port;
    char id_prefix[9]; /* 8 random hex digits: request ids differ across restarts */
    atomic_uint_fast64_t next_id;
    atomic_bool stopping;

    /*
     * Sockets to linger on travel to the linger thread as an int each, over a socket pair
     * (one message per send, so the HTTP threads may send at once); closing linger_fd[1]
     * stops the thread.
     */
    int linger_fd[2];
    pthread_t linger_thread;

    /* Requests between their first callback and MHD's completion notice. */
    pthread_mutex_t lock;
    pthread_cond_t drained;
    unsigned in_flight;
    unsigned waiting; /* answers put off (VH_SERVER_LATER) and not yet given */
};

/*
 * Where a put-off answer stands, under the server's lock. The handler may reply before the
 * connection is suspended, so whoever comes second resumes it: MHD_resume_connection must
 * follow MHD_suspend_connection (with libmicrohttpd 0.9.75 a resume that comes first makes
 * it answer twice and touch freed memory; unit/http/server's many_answered_at_once shows it).
 */
enum answer_state {
    ANSWER_NONE,      /* no async call yet, or answered at once */
    ANSWER_WAITING,   /* the handler put it off; the connection is not suspended yet */
    ANSWER_SUSPENDED, /* put off, the connection suspended */
    ANSWER_READY      /* vh_server_reply came: `resp` is the answer */
};

struct vh_server_reply {
    struct request *rq;
};

/* One HTTP request (MHD's per-request context). */
struct request {
    struct vh_buf body; /* bounded by body_max */
    bool too_large;     /* the body passed the bound: stop storing, answer 413 */
    bool body_unread;   /* answered on its head: MHD closes, the linger thread drains */
    /* Copies of header values that had trailing whitespace (header_value), or NULL. */
    char *trimmed[2 + VH_SERVER_HEADERS_MAX];
    int64_t start_ms; /* monotonic */
    char id[REQUEST_ID_LEN];
    /* An async handler's request, kept (with its answer) while the connection waits. */
    struct vh_server *srv;
    struct MHD_Connection *conn;
    struct vh_server_req sreq;
    struct vh_api_resp resp;
    enum answer_state state;
    struct vh_server_reply reply;
};

/* ---- logging ---------------------------------------------------------------------------- */

static void log_line(const struct vh_server *srv, enum vh_log_level level, const char *fmt, ...)
    VH_PRINTF(3, 4);

static void log_line(const struct vh_server *srv, enum vh_log_level level, const char *fmt, ...)
{
    char line[2048];
    va_list ap;
    size_t n;

    if (!srv->log)
        return;
    n = vh__log_head(line, vh_time_now_ms(), level);
    line[n++] = ',';
    va_start(ap, fmt);
    if (vsnprintf(line + n, sizeof(line) - n, fmt, ap) < 0) {
        va_end(ap);
        return;
    }
    va_end(ap);
    srv->log(srv->log_ud, level, line);
}

/*
 * The access log: a line per request, so memcpy rather than printf. Every part is bounded:
 * the request id, the escaped method (16 bytes at most) and path (LOG_PATH_MAX), two numbers.
 */
static void log_request(const struct vh_server *srv, const struct request *rq, const char *method,
                        const char *path, int status)
{
    char line[VH__LOG_HEAD_MAX + sizeof(rq->id) + 16 * 6 + LOG_PATH_MAX * 6 + 128], *o;
    enum vh_log_level level = status >= 500 ? VH_LOG_ERROR : VH_LOG_INFO;
    int64_t ms = vh_time_mono_ms() - rq->start_ms;
    size_t n;

    if (!srv->log)
        return;
    o = line + vh__log_head(line, vh_time_now_ms(), level);
    o = VH__PUT_LIT(o, ",\"msg\":\"request\",\"request_id\":\"");
    n = strnlen(rq->id, sizeof(rq->id));
    memcpy(o, rq->id, n);
    o += n;
    o = VH__PUT_LIT(o, "\",\"method\":\"");
    vh__json_escape(method, 16, o, 16 * 6 + 1);
    o += strlen(o);
    o = VH__PUT_LIT(o, "\",\"path\":\"");
    vh__json_escape(path, LOG_PATH_MAX, o, LOG_PATH_MAX * 6 + 1);
    o += strlen(o);
    o = VH__PUT_LIT(o, "\",\"status\":");
    o = vh__log_u64(o, (uint64_t)(status > 0 ? status : 0));
    o = VH__PUT_LIT(o, ",\"ms\":");
    o = vh__log_u64(o, (uint64_t)(ms > 0 ? ms : 0));
    o = VH__PUT_LIT(o, "}");
    *o = '\0';
    srv->log(srv->log_ud, level, line);
}

/* MHD's own diagnostics (malformed requests, resource limits), as log records. */
static void on_mhd_log(void *cls, const char *fmt, va_list ap) VH_PRINTF(2, 0);

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    const struct vh_server *srv = cls;
    char text[512], esc[512 * 6 + 1];
    size_t len;

    if (vsnprintf(text, sizeof(text), fmt, ap) < 0)
        return;
    len = strlen(text);
    while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == ' '))
        text[--len] = '\0';
    vh__json_escape(text, sizeof(text), esc, sizeof(esc));
    log_line(srv, VH_LOG_WARN, "\"msg\":\"http\",\"detail\":\"%s\"}", esc);
}

/* ---- lingering close ------------------------------------------------------------------------ */

struct lingering {
    int fd;
    int64_t until_ms; /* monotonic */
};

/* Closes held[i]; the others keep their order of arrival (so held[0] is due first). */
static void linger_drop(struct lingering *held, size_t *n, size_t i)
{
    close(held[i].fd);
    memmove(held + i, held + i + 1, (*n - i - 1) * sizeof(*held));
    (*n)--;
}

/* Takes in the sockets sent to the thread. Returns false once the sending end is closed. */
static bool linger_adopt(int from, struct lingering *held, size_t *n, int64_t now_ms)
{
    ssize_t got;
    int fd, fl;

    for (;;) {
        got = recv(from, &fd, sizeof(fd), 0);
        if (got == 0)
            return false;
        if (got < 0)
            return errno == EAGAIN || errno == EINTR; /* EWOULDBLOCK is EAGAIN on Linux */
        if (got != (ssize_t)sizeof(fd))
            continue; /* not one of ours: every message is one int */
        if (*n == LINGER_MAX)
            linger_drop(held, n, 0);
        fl = fcntl(fd, F_GETFL);
        if (fl >= 0)
            (void)fcntl(fd, F_SETFL, fl | O_NONBLOCK);
        held[*n].fd = fd;
        held[*n].until_ms = now_ms + LINGER_S * 1000;
        (*n)++;
    }
}

/*
 * Reads and drops what has come on `fd` (a few reads at most, so that one fast client does
 * not hold up the others). Returns false once the client has closed it, or it failed.
 */
static bool linger_drain(int fd)
{
    char scratch[64 * 1024];
    ssize_t got;
    int i;

    for (i = 0; i < 4; i++) {
        got = read(fd, scratch, sizeof(scratch));
        if (got == 0)
            return false;
        if (got < 0)
            return errno == EAGAIN || errno == EINTR; /* EWOULDBLOCK is EAGAIN on Linux */
    }
    return true;
}

/*
 * The linger thread: polls the sockets it holds, in order of arrival, and the socket pair
 * they come by. It ends when the server closes its end of that pair (vh_server_stop, once
 * MHD has stopped), closing what it still holds.
 */
static void *linger_main(void *arg)
{
    struct vh_server *srv = arg;
    struct lingering held[LINGER_MAX];
    struct pollfd pfd[LINGER_MAX + 1];
    size_t n = 0, i;
    int64_t now;
    int timeout;
    bool open = true;

    vh__thread_name("vh-linger");
    while (open) {
        pfd[0] = (struct pollfd){.fd = srv->linger_fd[0], .events = POLLIN};
        for (i = 0; i < n; i++)
            pfd[i + 1] = (struct pollfd){.fd = held[i].fd, .events = POLLIN};
        timeout = -1;
        if (n > 0) {
            now = vh_time_mono_ms();
            timeout = held[0].until_ms > now ? (int)(held[0].until_ms - now) : 0;
        }
        if (poll(pfd, (nfds_t)(n + 1), timeout) < 0)
            continue; /* EINTR (signals are blocked here) or ENOMEM: try again */
        now = vh_time_mono_ms();
        for (i = n; i-- > 0;) /* backwards: a drop moves only what was seen already */
            if ((pfd[i + 1].revents != 0 && !linger_drain(held[i].fd)) || held[i].until_ms <= now)
                linger_drop(held, &n, i);
        if (pfd[0].revents != 0)
            open = linger_adopt(srv->linger_fd[0], held, &n, now);
    }
    for (i = 0; i < n; i++)
        close(held[i].fd);
    return NULL;
}

/*
 * A request answered on its head is complete, and MHD is about to close its connection,
 * the body unread: a duplicate of the socket goes to the linger thread. Should that fail,
 * MHD's close resets the connection, as it did before there was a linger thread.
 */
static void linger_on(struct vh_server *srv, struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    int fd;

    if (!info || info->connect_fd == MHD_INVALID_SOCKET)
        return;
    fd = fcntl(info->connect_fd, F_DUPFD_CLOEXEC, 0);
    if (fd < 0)
        return;
    if (send(srv->linger_fd[1], &fd, sizeof(fd), MSG_NOSIGNAL) != (ssize_t)sizeof(fd))
        close(fd);
}

static int linger_start(struct vh_server *srv, struct vh_error *err)
{
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, srv->linger_fd) < 0)
        return vh_error_set(err, VH_EIO, "server: linger socket pair: %s", strerror(errno));
    if (vh__thread_start(&srv->linger_thread, linger_main, srv) < 0) {
        close(srv->linger_fd[0]);
        close(srv->linger_fd[1]);
        return vh_error_set(err, VH_EIO, "server: cannot start the linger thread");
    }
    return 0;
}

/* After MHD has stopped: nothing sends to the thread any more. */
static void linger_stop(struct vh_server *srv)
{
    close(srv->linger_fd[1]);
    pthread_join(srv->linger_thread, NULL);
    close(srv->linger_fd[0]);
}

/* ---- requests ----------------------------------------------------------------------------- */

static enum MHD_Result collect_query(void *cls, enum MHD_ValueKind kind, const char *key,
                                     const char *value)
{
    struct vh_api_req *req = cls;

    (void)kind;
    if (req->n_query == VH_API_MAX_QUERY) {
        req->query_truncated = true;
        return MHD_NO; /* stop iterating */
    }
    req->query[req->n_query].key = key;
    req->query[req->n_query].value = value ? value : "";
    req->n_query++;
    return MHD_YES;
}

/* The declared Content-Length, or 0 when absent or unreadable (MHD checks its syntax). */
static unsigned long long declared_length(struct MHD_Connection *conn)
{
    const char *v =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    unsigned long long n = 0;

    for (; v && *v >= '0' && *v <= '9'; v++) {
        if (n > (unsigned long long)-1 / 20)
            return (unsigned long long)-1;
        n = n * 10 + (unsigned long long)(*v - '0');
    }
    return n;
}

/* Whether the request says a body follows (a Content-Length above 0, or chunked). */
static bool declares_body(struct MHD_Connection *conn)
{
    return declared_length(conn) > 0 ||
           MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING) !=
               NULL;
}

/* What the head says of its body's framing, and of its field names. */
struct framing {
    const char *length;  /* the first Content-Length value */
    bool lengths_differ; /* a later one differs from it */
    unsigned codings;    /* Transfer-Encoding lines */
    bool not_chunked;    /* one of them is not exactly "chunked" */
    bool space_in_name;  /* a field name with white space in it */
};

static enum MHD_Result collect_framing(void *cls, enum MHD_ValueKind kind, const char *key,
                                       const char *value)
{
    struct framing *f = cls;

    (void)kind;
    value = value ? value : "";
    if (strpbrk(key, " \t")) {
        f->space_in_name = true;
    } else if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0) {
        if (!f->length)
            f->length = value;
        else if (strcmp(f->length, value) != 0)
            f->lengths_differ = true;
    } else if (strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING) == 0) {
        f->codings++;
        if (strcasecmp(value, "chunked") != 0)
            f->not_chunked = true;
    }
    return MHD_YES;
}

/*
 * Why the body's length cannot be trusted (RFC 9112 §6.3), as a message, with its reason
 * name in `*reason`; NULL when it can. Content-Length values that differ, or one beside a
 * Transfer-Encoding: MHD takes the first Content-Length, or the chunked coding, and reads
 * what follows as a next request; a proxy in front that took the other sends those bytes as
 * this request's body, and the next request is smuggled. A Transfer-Encoding that is not
 * one "chunked" alone (`gzip, chunked`, `chunked ` with a space, two lines): MHD reads such
 * a body until the connection closes, where a proxy reads chunks. White space before a
 * field name's colon (RFC 9112 §5.1: a MUST reject): MHD keeps the name with it, so
 * `Transfer-Encoding : chunked` frames nothing here, where a lenient proxy frames by it.
 */
static const char *framing_problem(struct MHD_Connection *conn, const char **reason)
{
    struct framing f = {NULL, false, 0, false, false};

    MHD_get_connection_values(conn, MHD_HEADER_KIND, collect_framing, &f);
    *reason = "ambiguous_length";
    if (f.lengths_differ || (f.length && f.codings > 0))
        return "ambiguous body length: Content-Length values differ, or come with "
               "Transfer-Encoding";
    *reason = "unsupported_transfer_encoding";
    if (f.codings > 1 || f.not_chunked)
        return "Transfer-Encoding other than chunked alone: the body's length is unknown";
    *reason = "bad_header_name";
    if (f.space_in_name)
        return "white space in a header field name";
    return NULL;
}

static struct request *request_new(struct vh_server *srv)
{
    struct request *rq = vh_malloc(sizeof(*rq));
    uint_fast64_t n;

    if (!rq)
        return NULL;
    memset(rq, 0, sizeof(*rq));
    vh_buf_init(&rq->body, srv->body_max);
    rq->srv = srv;
    rq->reply.rq = rq;
    vh_api_resp_init(&rq->resp);
    rq->start_ms = vh_time_mono_ms();
    n = atomic_fetch_add(&srv->next_id, 1);
    snprintf(rq->id, sizeof(rq->id), "%s-%06llx", srv->id_prefix, (unsigned long long)n);
    pthread_mutex_lock(&srv->lock);
    srv->in_flight++;
    pthread_mutex_unlock(&srv->lock);
    return rq;
}

static void trimmed_free(struct request *rq)
{
    size_t i;

    for (i = 0; i < sizeof(rq->trimmed) / sizeof(rq->trimmed[0]); i++) {
        vh_free(rq->trimmed[i]);
        rq->trimmed[i] = NULL;
    }
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct vh_server *srv = cls;
    struct request *rq = *req_cls;

    if (!rq)
        return;
    if (rq->body_unread && toe == MHD_REQUEST_TERMINATED_COMPLETED_OK)
        linger_on(srv, conn);
    vh_buf_release(&rq->body);
    vh_api_resp_release(&rq->resp);
    trimmed_free(rq);
    vh_free(rq);
    *req_cls = NULL;
    pthread_mutex_lock(&srv->lock);
    if (--srv->in_flight == 0)
        pthread_cond_broadcast(&srv->drained);
    pthread_mutex_unlock(&srv->lock);
}

static bool add_header(struct MHD_Response *r, const char *name, const char *value)
{
    return MHD_add_response_header(r, name, value) == MHD_YES;
}

/* The put-off answer of the vh_api is in: send it. */
static void api_answered(void *ud)
{
    vh_server_reply(ud);
}

/*
 * The vh_api as a handler: what vh_server_start serves. An ingest is answered once its
 * commit is durable, without a server thread waiting for it.
 */
static int api_handler(void *ud, const struct vh_server_req *req, struct vh_api_resp *resp,
                       struct vh_server_reply *reply)
{
    int rc = vh_api_handle_async(ud, &req->base, resp, api_answered, reply);

    return rc == VH_API_LATER ? VH_SERVER_LATER : rc;
}

static bool api_admit(void *ud, const struct vh_server_req *req, struct vh_api_resp *resp)
{
    return vh_api_admit(ud, &req->base, resp);
}

/* The server's own refusals (a 400) in the vh_api's envelope: what `vocohook serve` answers. */
static void api_refuse(void *ud, int status, const char *reason, const char *message,
                       struct vh_api_resp *resp)
{
    (void)ud;
    (void)reason;
    resp->status = status;
    (void)vh_buf_addf(
        &resp->body,
        "{\"success\":false,\"error\":{\"code\":\"VALIDATION_ERROR\",\"message\":\"%s\"}}",
        message); /* the message is static, with nothing to escape */
}

/* Fills the request the handler sees from what MHD parsed. */
/*
 * The value of header `name` without trailing spaces and tabs, or NULL when it is absent.
 * RFC 9110 5.5: whitespace around a field value is not part of it; MHD strips the leading
 * only, so `X-Webhook-Signature: sha256=… ` would fail to parse. A value that has any is
 * copied into rq->trimmed[slot] (slot: one per header asked for); out of memory, the value
 * stays as MHD has it.
 */
static const char *header_value(struct request *rq, size_t slot, struct MHD_Connection *conn,
                                const char *name)
{
    const char *v = NULL;
    size_t len = 0, n;

    if (MHD_lookup_connection_value_n(conn, MHD_HEADER_KIND, name, strlen(name), &v, &len) !=
            MHD_YES ||
        !v)
        return NULL;
    for (n = len; n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'); n--)
        ;
    if (n == len)
        return v;
    vh_free(rq->trimmed[slot]);
    rq->trimmed[slot] = vh_strndup(v, n);
    return rq->trimmed[slot] ? rq->trimmed[slot] : v;
}

/* A header's field lines, gathered by join_lines. */
struct field_lines {
    const char *name;
    const char *first;  /* the first line's value */
    unsigned n;         /* lines with that name */
    struct vh_buf join; /* from the second line on: all values, trimmed, joined by ", " */
    bool failed;        /* out of memory */
};

/* Appends `value` without its trailing white space, after ", " unless it is the first. */
static void join_add(struct field_lines *fl, const char *value, bool first)
{
    size_t n;

    for (n = strlen(value); n > 0 && (value[n - 1] == ' ' || value[n - 1] == '\t'); n--)
        ;
    if ((!first && vh_buf_add(&fl->join, ", ", 2) < 0) || vh_buf_add(&fl->join, value, n) < 0)
        fl->failed = true;
}

static enum MHD_Result join_lines(void *cls, enum MHD_ValueKind kind, const char *key,
                                  const char *value)
{
    struct field_lines *fl = cls;

    (void)kind;
    if (strcasecmp(key, fl->name) != 0)
        return MHD_YES;
    value = value ? value : "";
    if (fl->n++ == 0) {
        fl->first = value; /* nothing copied unless a second line comes */
        return MHD_YES;
    }
    if (fl->n == 2)
        join_add(fl, fl->first, true);
    join_add(fl, value, false);
    return MHD_YES;
}

/*
 * The value of a header the handler named (header_value), or, when it came on several
 * lines, all of them joined with ", " (RFC 9110 §5.3) into rq->trimmed[slot]: the first
 * alone would let one request be read two ways (`X-Webhook-Signature` twice: the handler
 * would check the first, a proxy or another reader the last). Out of memory that is NULL,
 * never the first line alone. Only a repeat allocates.
 */
static const char *field_value(struct request *rq, size_t slot, struct MHD_Connection *conn,
                               const char *name)
{
    struct field_lines fl = {name, NULL, 0, VH_BUF_INIT(CONN_MEMORY_LIMIT), false};

    MHD_get_connection_values(conn, MHD_HEADER_KIND, join_lines, &fl);
    if (fl.n < 2)
        return header_value(rq, slot, conn, name);
    vh_free(rq->trimmed[slot]);
    rq->trimmed[slot] = fl.failed ? NULL : vh_buf_detach(&fl.join, NULL);
    vh_buf_release(&fl.join);
    return rq->trimmed[slot];
}

/* Fills `sreq` (rq->sreq) for the handler; a second fill replaces what the first gave. */
static void fill_request(const struct vh_server *srv, struct MHD_Connection *conn,
                         struct request *rq, const char *method, const char *path,
                         struct vh_server_req *sreq)
{
    struct vh_api_req *req = &sreq->base;
    size_t i;

    memset(sreq, 0, sizeof(*sreq));
    req->method = method;
    req->path = path;
    MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, collect_query, req);
    req->authorization = header_value(rq, 0, conn, MHD_HTTP_HEADER_AUTHORIZATION);
    req->content_type = header_value(rq, 1, conn, MHD_HTTP_HEADER_CONTENT_TYPE);
    req->body_too_large = rq->too_large;
    if (!rq->too_large && rq->body.len > 0) {
        req->body = rq->body.data;
        req->body_len = rq->body.len;
    }
    req->request_id = rq->id;
    req->now_ms = vh_time_now_ms();
    for (i = 0; i < VH_SERVER_HEADERS_MAX && srv->handler.headers[i]; i++)
        sreq->headers[i] = field_value(rq, 2 + i, conn, srv->handler.headers[i]);
}

/* Sends `rq->resp`, the handler's answer (and releases it). */
static enum MHD_Result send_answer(struct vh_server *srv, struct MHD_Connection *conn,
                                   struct request *rq, const char *method, const char *path)
{
    static const char oom_body[] =
        "{\"success\":false,\"error\":{\"code\":\"INTERNAL_ERROR\",\"message\":\"internal error\"}}";
    struct vh_api_resp *resp = &rq->resp;
    struct MHD_Response *r;
    char retry[24];
    size_t len = 0;
    char *body;
    int status;
    bool ok;
    enum MHD_Result ret;

    status = resp->status >= 100 && resp->status <= 599 ? resp->status : 500;
    body = vh_buf_detach(&resp->body, &len);
    if (body) {
        r = MHD_create_response_from_buffer_with_free_callback(len, body, vh_free);
        if (!r)
            vh_free(body);
    } else {
        status = 500;
        /* PERSISTENT: MHD never writes to the buffer; the cast only drops the const. */
        r = MHD_create_response_from_buffer(sizeof(oom_body) - 1, (void *)(uintptr_t)oom_body,
                                            MHD_RESPMEM_PERSISTENT);
    }
    if (!r) {
        vh_api_resp_release(resp);
        log_request(srv, rq, method, path, 500);
        return MHD_NO; /* MHD closes the connection */
    }
    ok = add_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
                    resp->content_type ? resp->content_type : "application/json") &&
         add_header(r, "X-Request-Id", rq->id) &&
         add_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store") &&
         add_header(r, "X-Content-Type-Options", "nosniff");
    if (ok && resp->retry_after_s > 0) {
        snprintf(retry, sizeof(retry), "%d", resp->retry_after_s);
        ok = add_header(r, MHD_HTTP_HEADER_RETRY_AFTER, retry);
    }
    if (ok && resp->location)
        ok = add_header(r, MHD_HTTP_HEADER_LOCATION, resp->location);
    if (ok && resp->www_authenticate)
        ok = add_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE, resp->www_authenticate);
    if (ok && resp->allow[0])
        ok = add_header(r, MHD_HTTP_HEADER_ALLOW, resp->allow);
    /*
     * Draining keep-alives; or the body is left unread, so MHD must close (and the linger
     * thread, which then reads the socket, must never share it with a next request).
     */
    if (ok && (atomic_load(&srv->stopping) || rq->body_unread))
        ok = add_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
    ret = ok ? MHD_queue_response(conn, (unsigned)status, r) : MHD_NO;
    MHD_destroy_response(r);
    vh_api_resp_release(resp);
    log_request(srv, rq, method, path, ok ? status : 500);
    return ret;
}

/*
 * One put-off answer is through: its connection was resumed (or never suspended), so
 * vh_server_stop may stop MHD as far as it is concerned. Never before the resume: MHD must
 * not free a connection that MHD_resume_connection is still to touch.
 */
static void answer_through(struct vh_server *srv)
{
    pthread_mutex_lock(&srv->lock);
    if (--srv->waiting == 0)
        pthread_cond_broadcast(&srv->drained);
    pthread_mutex_unlock(&srv->lock);
}

/*
 * An async handler put the answer off: suspends the connection, unless the reply already
 * came (then it resumes it at once: MHD calls on_request again, which sends the answer).
 */
static void wait_for_reply(struct vh_server *srv, struct MHD_Connection *conn, struct request *rq)
{
    bool ready;

    MHD_suspend_connection(conn);
    pthread_mutex_lock(&srv->lock);
    ready = rq->state == ANSWER_READY;
    if (!ready)
        rq->state = ANSWER_SUSPENDED;
    pthread_mutex_unlock(&srv->lock);
    if (ready) {
        MHD_resume_connection(conn);
        answer_through(srv);
    }
}

void vh_server_reply(struct vh_server_reply *reply)
{
    struct request *rq = reply->rq;
    struct vh_server *srv = rq->srv; /* alive: vh_server_stop waits for this answer */
    bool resume;

    pthread_mutex_lock(&srv->lock);
    resume = rq->state == ANSWER_SUSPENDED;
    rq->state = ANSWER_READY;
    pthread_mutex_unlock(&srv->lock);
    /* Not suspended yet: wait_for_reply sees READY and resumes it itself. */
    if (resume) {
        MHD_resume_connection(rq->conn);
        answer_through(srv);
    }
}

/* Calls the handler and sends its answer, or waits for it (an async handler). */
static enum MHD_Result respond(struct vh_server *srv, struct MHD_Connection *conn,
                               struct request *rq, const char *method, const char *path)
{
    int rc;

    if (rq->state == ANSWER_READY) /* resumed: the put-off answer is in */
        return send_answer(srv, conn, rq, method, path);
    fill_request(srv, conn, rq, method, path, &rq->sreq);
    /* The handler always answers; its failures are logged by it. */
    if (!srv->handler.handle_async) {
        srv->handler.handle(srv->handler.ud, &rq->sreq, &rq->resp);
        return send_answer(srv, conn, rq, method, path);
    }
    rq->conn = conn;
    pthread_mutex_lock(&srv->lock);
    rq->state = ANSWER_WAITING;
    srv->waiting++;
    pthread_mutex_unlock(&srv->lock);
    rc = srv->handler.handle_async(srv->handler.ud, &rq->sreq, &rq->resp, &rq->reply);
    if (rc == VH_SERVER_LATER) {
        wait_for_reply(srv, conn, rq);
        return MHD_YES;
    }
    pthread_mutex_lock(&srv->lock);
    rq->state = ANSWER_NONE;
    pthread_mutex_unlock(&srv->lock);
    answer_through(srv);
    return send_answer(srv, conn, rq, method, path);
}

/*
 * MHD calls this once with the headers (*req_cls still NULL), once per chunk of body, and
 * once more with no data when the body is complete; the answer goes out on that last call.
 */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **req_cls)
{
    struct vh_server *srv = cls;
    struct request *rq = *req_cls;
    const char *msg, *reason;

    (void)version;
    if (!rq) {
        rq = request_new(srv);
        if (!rq)
            return MHD_NO;
        *req_cls = rq;
        /*
         * A body whose length is ambiguous is not read: 400, and the connection closed with
         * it (RFC 9112 §6.3), so nothing after it is read as a request of its own. The
         * handler's refuse hook words it, so that each daemon answers in its own envelope.
         */
        msg = framing_problem(conn, &reason);
        if (msg) {
            rq->body_unread = true;
            (srv->handler.refuse ? srv->handler.refuse : api_refuse)(srv->handler.ud, 400, reason,
                                                                     msg, &rq->resp);
            return send_answer(srv, conn, rq, method, url); /* no body: a 500, closed */
        }
        /*
         * Reading a huge declared body only to throw it away wastes the link; refuse it
         * before reading (MHD then closes the connection, and the linger thread drops what
         * still comes for LINGER_S, so that a client sending on sees the 413). Nearer the
         * bound, the body is read and discarded, and the connection kept.
         */
        if (declared_length(conn) / EARLY_REJECT_FACTOR > srv->body_max) {
            rq->too_large = true;
            rq->body_unread = true;
            return respond(srv, conn, rq, method, url);
        }
        /*
         * Credentials before the body: a client without them must not get up to body_max
         * buffered on each of its connections (the answer goes out, the body unread, and
         * the connection closed as above).
         */
        if (srv->handler.admit && declares_body(conn)) {
            fill_request(srv, conn, rq, method, url, &rq->sreq);
            if (!srv->handler.admit(srv->handler.ud, &rq->sreq, &rq->resp)) {
                rq->body_unread = true;
                return send_answer(srv, conn, rq, method, url);
            }
            vh_api_resp_release(&rq->resp);
            vh_api_resp_init(&rq->resp);
        }
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        if (!rq->too_large) {
            int rc = vh_buf_add(&rq->body, upload_data, *upload_data_size);

            if (rc == VH_ETOOBIG) {
                rq->too_large = true;
                vh_buf_release(&rq->body);
            } else if (rc < 0) {
                return MHD_NO;
            }
        }
        *upload_data_size = 0;
        return MHD_YES;
    }
    return respond(srv, conn, rq, method, url);
}

/* ---- lifecycle ------------------------------------------------------------------------------ */

/* Parses HOST:PORT (IPv4 literal or "localhost") or [IPv6]:PORT. */
static int parse_listen(const char *s, struct sockaddr_storage *ss, socklen_t *len,
                        struct vh_error *err)
{
    const char *colon = strrchr(s, ':');
    char host[64];
    const char *h = s, *p;
    size_t hlen;
    unsigned long port = 0;
    bool v6 = s[0] == '[';

    memset(ss, 0, sizeof(*ss));
    if (!colon || colon == s || colon[1] == '\0')
        goto bad;
    hlen = (size_t)(colon - s);
    if (v6) {
        if (hlen < 3 || s[hlen - 1] != ']')
            goto bad;
        h = s + 1;
        hlen -= 2;
    }
    if (hlen >= sizeof(host))
        goto bad;
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    for (p = colon + 1; *p >= '0' && *p <= '9' && port <= 65535; p++)
        port = port * 10 + (unsigned long)(*p - '0');
    if (*p != '\0' || port > 65535)
        goto bad;
    if (v6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;

        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)port);
        if (inet_pton(AF_INET6, host, &a->sin6_addr) != 1)
            goto bad;
        *len = sizeof(*a);
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)ss;

        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)port);
        if (strcmp(host, "localhost") == 0)
            a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        else if (inet_pton(AF_INET, host, &a->sin_addr) != 1)
            goto bad;
        *len = sizeof(*a);
    }
    return 0;
bad:
    return vh_error_set(err, VH_EINVAL,
                        "listen address '%s': expected IPv4:PORT or [IPv6]:PORT (port 0: any)", s);
}

static int open_listener(const char *listen_addr, int *out, struct vh_error *err)
{
    struct sockaddr_storage ss;
    socklen_t len = 0;
    int fd, one = 1, rc;

    rc = parse_listen(listen_addr, &ss, &len, err);
    if (rc < 0)
        return rc;
    fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return vh_error_set(err, VH_EIO, "listen on %s: socket: %s", listen_addr, strerror(errno));
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, SOMAXCONN) < 0) {
        rc = vh_error_set(err, VH_EIO, "listen on %s: %s", listen_addr, strerror(errno));
        close(fd);
        return rc;
    }
    *out = fd;
    return 0;
}

static uint16_t bound_port(struct MHD_Daemon *mhd, int fd)
{
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(mhd, MHD_DAEMON_INFO_BIND_PORT);
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);

    if (info && info->port != 0)
        return info->port;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
        return 0;
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static int sync_init(struct vh_server *srv, struct vh_error *err)
{
    pthread_condattr_t attr;
    int rc = VH_OK;

    if (pthread_condattr_init(&attr) != 0)
        return vh_error_set(err, VH_ENOMEM, "server: condition attributes: out of memory");
    /* The drain deadline is monotonic: a wall-clock jump must not cut it short. */
    if (pthread_condattr_setclock(&attr, CLOCK_MONOTONIC) != 0 ||
        pthread_cond_init(&srv->drained, &attr) != 0) {
        rc = vh_error_set(err, VH_ENOMEM, "server: condition variable: out of memory");
    } else if (pthread_mutex_init(&srv->lock, NULL) != 0) {
        pthread_cond_destroy(&srv->drained);
        rc = vh_error_set(err, VH_ENOMEM, "server: mutex: out of memory");
    }
    pthread_condattr_destroy(&attr);
    return rc;
}

/*
 * MHD's unescaping of the path and the query (MHD_OPTION_UNESCAPE_CALLBACK): every %HH is
 * decoded as MHD_http_unescape does, except %00, which stays as it came. The handler reads
 * the path and query values as C strings, so a decoded NUL would cut them there:
 * `DELETE /api/v2/config/webhooks/ID%00/deliveries` would delete the endpoint, and the
 * access log would show the shorter path. Kept encoded, it matches no route, id or number.
 */
static size_t unescape_keep_nul(void *cls, struct MHD_Connection *conn, char *s)
{
    char *in = s, *out = s;

    (void)cls;
    (void)conn;
    while (*in) {
        int hi = in[0] == '%' ? vh__hex_value((unsigned char)in[1]) : -1;
        int lo = hi >= 0 ? vh__hex_value((unsigned char)in[2]) : -1;

        if (lo >= 0 && (hi | lo) != 0) {
            *out++ = (char)(hi * 16 + lo);
            in += 3;
        } else {
            *out++ = *in++;
        }
    }
    *out = '\0';
    return (size_t)(out - s);
}

/*
 * MHD_USE_ITC is what MHD_quiesce_daemon needs in thread-pool mode. MHD_USE_POLL: each
 * worker polls its own connections (never the single-thread epoll mode); with one thread,
 * MHD's internal thread polls alone (MHD warns about a pool of 1, so none is asked for).
 * The logger comes first so that MHD reports everything, option errors included, through it.
 */
static struct MHD_Daemon *start_mhd(struct vh_server *srv, int fd, unsigned threads,
                                    unsigned max_conns, unsigned timeout)
{
    struct MHD_OptionItem opts[8];
    size_t n = 0;
    unsigned flags =
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_USE_ITC | MHD_USE_ERROR_LOG;

    if (srv->handler.handle_async)
        flags |= MHD_ALLOW_SUSPEND_RESUME;

    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_LISTEN_SOCKET, fd, NULL};
    if (threads > 1)
        opts[n++] = (struct MHD_OptionItem){MHD_OPTION_THREAD_POOL_SIZE, threads, NULL};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_LIMIT, max_conns, NULL};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_TIMEOUT, timeout, NULL};
    opts[n++] =
        (struct MHD_OptionItem){MHD_OPTION_CONNECTION_MEMORY_LIMIT, CONN_MEMORY_LIMIT, NULL};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_STRICT_FOR_CLIENT, 1, NULL};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
    return MHD_start_daemon(flags, 0, NULL, NULL, on_request, srv, MHD_OPTION_EXTERNAL_LOGGER,
                            on_mhd_log, srv, MHD_OPTION_ARRAY, opts, MHD_OPTION_NOTIFY_COMPLETED,
                            on_completed, srv, MHD_OPTION_UNESCAPE_CALLBACK, unescape_keep_nul,
                            NULL, MHD_OPTION_END);
}

int vh_server_start(struct vh_api *api, const struct vh_server_config *cfg, struct vh_server **out,
                    struct vh_error *err)
{
    struct vh_server_handler h;

    memset(&h, 0, sizeof(h));
    h.handle_async = api_handler;
    h.admit = api_admit;
    h.ud = api;
    return vh_server_start_handler(&h, cfg, out, err);
}

int vh_server_start_handler(const struct vh_server_handler *h, const struct vh_server_config *cfg,
                            struct vh_server **out, struct vh_error *err)
{
    unsigned char rnd[4];
    struct vh_server *srv;
    unsigned threads = cfg->threads ? cfg->threads : vh_config_default_threads();
    unsigned max_conns = cfg->max_conns ? cfg->max_conns : MAX_CONNS_DEFAULT;
    unsigned timeout = cfg->conn_timeout_s ? cfg->conn_timeout_s : CONN_TIMEOUT_DEFAULT;
    int fd = -1, rc;

    if (!cfg->listen)
        return vh_error_set(err, VH_EINVAL, "server: no listen address");
    if (!h || (!h->handle && !h->handle_async))
        return vh_error_set(err, VH_EINVAL, "server: no request handler");
    srv = vh_malloc(sizeof(*srv));
    if (!srv)
        return vh_error_set(err, VH_ENOMEM, "server: out of memory");
    memset(srv, 0, sizeof(*srv));
    srv->handler = *h;
    srv->body_max = cfg->body_max ? cfg->body_max : VH_BODY_MAX;
    srv->log = cfg->log;
    srv->log_ud = cfg->log_ud;
    atomic_init(&srv->next_id, 1);
    atomic_init(&srv->stopping, false);
    rc = vh_random_bytes(rnd, sizeof(rnd), err);
    if (rc < 0) {
        vh_free(srv);
        return rc;
    }
    snprintf(srv->id_prefix, sizeof(srv->id_prefix), "%02x%02x%02x%02x", rnd[0], rnd[1], rnd[2],
             rnd[3]);
    rc = sync_init(srv, err);
    if (rc < 0) {
        vh_free(srv);
        return rc;
    }
    /* Before MHD: a connection may be lingered on as soon as MHD accepts one. */
    rc = linger_start(srv, err);
    if (rc < 0) {
        pthread_mutex_destroy(&srv->lock);
        pthread_cond_destroy(&srv->drained);
        vh_free(srv);
        return rc;
    }
    rc = open_listener(cfg->listen, &fd, err);
    if (rc < 0)
        goto fail;
    srv->mhd = start_mhd(srv, fd, threads, max_conns, timeout);
    if (!srv->mhd) {
        rc = vh_error_set(err, VH_EIO, "listen on %s: the HTTP server did not start (see the log)",
                          cfg->listen);
        goto fail;
    }
    srv->port = bound_port(srv->mhd, fd);
    *out = srv;
    return 0;
fail:
    /* MHD closes the socket on some of its failure paths and not on others. */
    if (fd >= 0 && fcntl(fd, F_GETFD) != -1)
        close(fd);
    linger_stop(srv);
    pthread_mutex_destroy(&srv->lock);
    pthread_cond_destroy(&srv->drained);
    vh_free(srv);
    return rc;
}

uint16_t vh_server_port(const struct vh_server *srv)
{
    return srv->port;
}

void vh_server_stop(struct vh_server *srv)
{
    struct timespec deadline;
    MHD_socket fd;
    unsigned in_flight;

    if (!srv)
        return;
    atomic_store(&srv->stopping, true);
    fd = MHD_quiesce_daemon(srv->mhd);
    pthread_mutex_lock(&srv->lock);
    in_flight = srv->in_flight;
    pthread_mutex_unlock(&srv->lock);
    if (in_flight > 0)
        log_line(srv, VH_LOG_INFO, "\"msg\":\"draining\",\"in_flight\":%u}", in_flight);
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += DRAIN_TIMEOUT_MS / 1000;
    pthread_mutex_lock(&srv->lock);
    while (srv->in_flight > 0)
        if (pthread_cond_timedwait(&srv->drained, &srv->lock, &deadline) == ETIMEDOUT)
            break;
    /*
     * A put-off answer still to come holds a suspended connection (which MHD must not be
     * stopped with) and the handler holds its request: wait for it whatever the deadline. Its
     * handler bounds it (the receiver's commit fails in the end rather than hang). Once the
     * last is resumed, give those requests a moment to go out: resumed is not yet sent.
     */
    if (srv->waiting > 0) {
        while (srv->waiting > 0)
            pthread_cond_wait(&srv->drained, &srv->lock);
        clock_gettime(CLOCK_MONOTONIC, &deadline);
        deadline.tv_sec += LATE_ANSWER_S;
        while (srv->in_flight > 0)
            if (pthread_cond_timedwait(&srv->drained, &srv->lock, &deadline) == ETIMEDOUT)
                break;
    }
    pthread_mutex_unlock(&srv->lock);
    MHD_stop_daemon(srv->mhd);
    /* A quiesced socket is ours again, and may be closed only after MHD has stopped. */
    if (fd != MHD_INVALID_SOCKET)
        close(fd);
    linger_stop(srv); /* what still lingers is closed now */
    pthread_mutex_destroy(&srv->lock);
    pthread_cond_destroy(&srv->drained);
    vh_free(srv);
}
