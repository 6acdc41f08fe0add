/*
 * The delivery engine (include/vocohook/engine.h) against real receivers on loopback: a
 * small HTTP server thread in this file (one mode per behaviour under test), and for TLS
 * python3's http.server behind a CA and certificate made with the openssl command line.
 * Every wait is a condition with a deadline; nothing sleeps blindly.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <vocohook/clock.h>
#include <vocohook/engine.h>
#include <vocohook/sign.h>

#include "deliver/h1_int.h"
#include "unit/wait.h"
#include "core/banned.h"

extern char **environ;

#define SECRET   "whsec_engine_test_secret"
#define EVENT_ID "0b7e3c1e-9a54-4d7c-8f39-2f1d6a7c5e10"
/* Non-ASCII and a U+2028 on purpose: the body must arrive byte for byte. */
#define BODY                                                                                       \
    "{\"event\":\"session.completed\",\"data\":{\"agent_name\":\"Zo\xc3\xab\","                    \
    "\"x\":\"\xe2\x80\xa8\"}}"
#define WAIT_MS 20000 /* deadline of every wait: generous, sanitizers are slow */
#define N_SLOTS 64

/* ---- conditions with deadlines --------------------------------------------------------------- */

static void cond_init_mono(pthread_cond_t *cv)
{
    pthread_condattr_t attr;

    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(cv, &attr);
    pthread_condattr_destroy(&attr);
}

/* ---- results: what the done callbacks saw ---------------------------------------------------- */

struct slot {
    int calls;
    struct vh_attempt a;
};

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int total;
    struct slot slots[N_SLOTS];
} R;

static struct vh_engine *chain_engine; /* for on_done_chain */

static void on_done(void *ud, const struct vh_attempt *a)
{
    struct slot *s = ud;

    pthread_mutex_lock(&R.mu);
    s->calls++;
    s->a = *a;
    R.total++;
    pthread_cond_broadcast(&R.cv);
    pthread_mutex_unlock(&R.mu);
}

/* Waits until at least `n` callbacks have run in all; false at the deadline. */
static bool wait_total(int n, int ms)
{
    struct timespec dl = deadline_in(ms);
    bool ok;

    pthread_mutex_lock(&R.mu);
    while (R.total < n && pthread_cond_timedwait(&R.cv, &R.mu, &dl) != ETIMEDOUT)
        ;
    ok = R.total >= n;
    pthread_mutex_unlock(&R.mu);
    return ok;
}

static int total_now(void)
{
    int n;

    pthread_mutex_lock(&R.mu);
    n = R.total;
    pthread_mutex_unlock(&R.mu);
    return n;
}

static int reset_results(void **state)
{
    (void)state;
    pthread_mutex_lock(&R.mu);
    R.total = 0;
    memset(R.slots, 0, sizeof(R.slots));
    pthread_mutex_unlock(&R.mu);
    return 0;
}

/* ---- a loopback HTTP server with one behaviour per mode -------------------------------------- */

enum mode {
    M_OK,        /* 200 "ok", keep-alive */
    M_STATUS,    /* 500 with a 3000-byte body */
    M_REDIRECT,  /* 302 to `location` */
    M_HOLD,      /* reads the request, answers nothing until srv_release, then 200 */
    M_CLOSE_MID, /* a 200 head promising 100 bytes, 5 bytes, then close */
    M_GARBAGE,   /* bytes that are not HTTP, then close */
    M_STREAM,    /* a 200 head and an endless body */
    /* Framing and keep-alive (RFC 9112). "Left open": the server keeps the connection, so
     * only the engine's reading of the response decides whether it is used again. */
    M_CHUNKED,          /* 200 chunked: four chunks, an extension, trailers */
    M_CHUNKED_LENGTH,   /* 200 chunked with a Content-Length as well; left open */
    M_UNTIL_EOF,        /* 200 without a length; the body ends when the server closes */
    M_CONN_CLOSE,       /* 200 with Connection: close and a length; left open */
    M_HTTP10,           /* HTTP/1.0 200 with a length, no keep-alive; left open */
    M_HTTP10_KA,        /* HTTP/1.0 200 with Connection: keep-alive */
    M_CLOSE_AFTER,      /* 200 that says nothing of closing, then the server closes */
    M_DROP,             /* reads the request and closes without answering */
    M_RST,              /* reads the request and resets the connection */
    M_DROP_SECOND,      /* answers a connection's first request, closes on its second */
    M_RST_SECOND,       /* the same, resetting */
    M_DROP_AFTER_FIRST, /* answers the server's first request, closes on every later one */
    M_CONTINUE,         /* 100 Continue, a pause, 103 Early Hints, then 200 "ok" */
    M_SWITCH,           /* 101 Switching Protocols; left open */
    M_TWO_LENGTHS,      /* 200 with Content-Length 2 and Content-Length 3; left open */
    M_SAME_LENGTHS,     /* 200 with Content-Length 2 twice */
    M_HUGE_HEAD,        /* 200 whose head is VH__H1_HEAD_MAX + 1 bytes (one big header) */
    M_FULL_HEAD,        /* 200 whose head is exactly VH__H1_HEAD_MAX bytes */
    M_TRAILING,         /* 200 "ok" and, in the same send, a second response nobody asked for */
    M_SLOW_LENGTH,      /* 200 with a length, one byte per send */
    M_SLOW_CHUNKED,     /* 100 Continue then a chunked 200 with a trailer, one byte per send */
    M_OVER_BOUND_WHOLE, /* 200 with a body of VH_ATTEMPT_READ_MAX + 1 bytes, all sent; left
                           open, and later requests on it answered 200 "ok" */
    M_OVER_BOUND_CUT,   /* the same, promising 1000 bytes more than it sends */
    M_EARLY_HOLD,       /* 413 on the request's head, then reads nothing more; left open */
    M_EARLY_CLOSE,      /* 413 on the request's head, then closes with the body unread */
    M_FLOOD_TRAILERS,   /* a chunked 200 whose trailer lines never end, for FLOOD_MS; the
                           server thread does nothing else meanwhile */
    M_FLOOD_INTERIM,    /* 103 Early Hints without end, for FLOOD_MS, the same way */
    M_COUNT_BODY        /* reads each request's body slowly, without keeping it; answers 200
                           with the count of its bytes, in decimal */
};

/* The bodies of the modes above, as the engine must report them. */
#define CHUNKED_BODY "hello, world!123456789"
#define EOF_BODY_LEN 5000
#define SLOW_BODY    "hello, world"

#define FLOOD_MS 3000

#define MAX_CONNS    64
#define REQ_MAX      16384
#define ERR_BODY_LEN 3000

struct conn {
    int fd;
    size_t len;
    bool held;
    bool mute; /* answered early: nothing more is read */
    bool streaming;
    int answered; /* requests this connection had */
    bool in_body; /* M_COUNT_BODY: the head is read, `body_left` bytes of the body are not */
    size_t body_left, body_got;
    char in[REQ_MAX];
};

/* What srv_stray asks the server to do to its other connections, after their answer. */
enum stray {
    STRAY_NONE,
    STRAY_BYTES, /* send a response nobody asked for */
    STRAY_CLOSE  /* close */
};

#define STRAY_RESPONSE "HTTP/1.1 299 Stray\r\nContent-Length: 0\r\n\r\n"

struct srv {
    int lfd, port, wake[2];
    pthread_t th;
    enum mode mode;
    char location[128];
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int accepts, requests; /* under mu */
    int hangups;           /* under mu: connections the engine closed (EOF read) */
    bool release, stop;    /* under mu */
    char last[REQ_MAX];    /* the last complete request, under mu */
    size_t last_len;
    enum stray stray;             /* under mu: asked of the connections not answering last */
    int stray_port;               /* under mu: the engine's port of the one it was done to */
    int last_conn;                /* the server thread's: the connection that answered last */
    struct conn conns[MAX_CONNS]; /* the server thread's */
};

static void send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

        if (w <= 0 && errno == EAGAIN) {
            struct pollfd pfd = {fd, POLLOUT, 0};

            poll(&pfd, 1, 1000);
            continue;
        }
        if (w <= 0)
            return;
        p += w;
        n -= (size_t)w;
    }
}

static void conn_close(struct conn *c)
{
    close(c->fd);
    c->fd = -1;
    c->len = 0;
    c->answered = 0;
    c->held = c->streaming = c->mute = c->in_body = false;
}

/* Closes with a reset (RST) instead of a FIN. */
static void conn_reset(struct conn *c)
{
    struct linger l = {1, 0};

    setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
    conn_close(c);
}

static void send_str(struct conn *c, const char *str)
{
    send_all(c->fd, str, strlen(str));
}

static void pause_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* A 200 head promising `length` body bytes, and `send` of them ('y'). */
static void send_long_body(struct conn *c, size_t length, size_t send)
{
    char head[128], chunk[4096];
    size_t n;

    snprintf(head, sizeof(head), "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n", length);
    send_str(c, head);
    memset(chunk, 'y', sizeof(chunk));
    for (; send > 0; send -= n) {
        n = send < sizeof(chunk) ? send : sizeof(chunk);
        send_all(c->fd, chunk, n);
    }
}

/* One byte per send, each its own segment, with a pause between them. */
static void send_slowly(struct conn *c, const char *str)
{
    size_t i, n = strlen(str);
    int one = 1;

    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    for (i = 0; i < n; i++) {
        send_all(c->fd, str + i, 1);
        pause_ms(1);
    }
}

/*
 * A 200 "ok" whose head is `head_len` bytes: the padding is one X-Big header. The head's
 * last byte goes after a pause, so the engine likely holds `head_len` - 1 bytes of it first.
 */
static void send_big_head(struct conn *c, size_t head_len)
{
    static const char start[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Big: ";
    size_t fill = head_len - (sizeof(start) - 1) - 4;
    char *p = malloc(head_len + 2);

    if (!p)
        abort(); /* the server thread cannot fail a cmocka test */
    memcpy(p, start, sizeof(start) - 1);
    memset(p + sizeof(start) - 1, 'b', fill);
    memcpy(p + head_len - 4, "\r\n\r\nok", 6);
    send_all(c->fd, p, head_len - 1);
    pause_ms(20);
    send_all(c->fd, p + head_len - 1, 3);
    free(p);
}

/*
 * `first`, then `unit` again and again, as fast as the socket takes them, for FLOOD_MS or
 * until the engine closes.
 */
static void send_flood(struct conn *c, const char *first, const char *unit)
{
    static char units[256 * 1024];
    int64_t end = vh_time_mono_ms() + FLOOD_MS;
    size_t n = strlen(unit), len;

    for (len = 0; len + n <= sizeof(units); len += n)
        memcpy(units + len, unit, n);
    fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) & ~O_NONBLOCK);
    send_str(c, first);
    while (vh_time_mono_ms() < end)
        if (send(c->fd, units, len, MSG_NOSIGNAL) < 0)
            break;
    conn_close(c);
}

/* The length of the first complete request in the buffer, or 0 when it is not complete. */
static size_t request_len(const char *p, size_t len)
{
    size_t i, head = 0, cl = 0;

    for (i = 0; i + 4 <= len; i++) {
        if (memcmp(p + i, "\r\n\r\n", 4) == 0) {
            head = i + 4;
            break;
        }
    }
    if (head == 0)
        return 0;
    for (i = 0; i + 17 < head; i++) {
        if (strncasecmp(p + i, "\r\ncontent-length:", 17) == 0) {
            cl = strtoul(p + i + 17, NULL, 10);
            break;
        }
    }
    return len >= head + cl ? head + cl : 0;
}

static void answer_ok(struct conn *c)
{
    static const char ok[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

    send_all(c->fd, ok, sizeof(ok) - 1);
    c->held = false;
}

/* Answers one complete request by mode; false when the connection was closed. */
static bool respond(struct srv *s, struct conn *c, bool released)
{
    char buf[EOF_BODY_LEN + 256]; /* the largest canned body, and a head */
    int n, nth = ++c->answered, total;

    switch (s->mode) {
    case M_OK:
        answer_ok(c);
        return true;
    case M_STATUS:
        n = snprintf(
            buf, sizeof(buf),
            "HTTP/1.1 500 Internal Server Error\r\nContent-Length: %d\r\n\r\nboom:", ERR_BODY_LEN);
        memset(buf + n, 'x', ERR_BODY_LEN - 5);
        send_all(c->fd, buf, (size_t)n + ERR_BODY_LEN - 5);
        return true;
    case M_REDIRECT:
        n = snprintf(buf, sizeof(buf),
                     "HTTP/1.1 302 Found\r\nLocation: %s\r\nContent-Length: 0\r\n\r\n",
                     s->location);
        send_all(c->fd, buf, (size_t)n);
        return true;
    case M_HOLD:
        if (released)
            answer_ok(c);
        else
            c->held = true;
        return true;
    case M_CLOSE_MID:
        n = snprintf(buf, sizeof(buf), "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort");
        send_all(c->fd, buf, (size_t)n);
        conn_close(c);
        return false;
    case M_GARBAGE:
        n = snprintf(buf, sizeof(buf), "\x01\x02 this is not http at all\r\n\r\n");
        send_all(c->fd, buf, (size_t)n);
        conn_close(c);
        return false;
    case M_STREAM:
        n = snprintf(buf, sizeof(buf), "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n");
        send_all(c->fd, buf, (size_t)n);
        c->streaming = true;
        return true;
    case M_CHUNKED:
        send_str(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
                    "Content-Type: text/plain\r\n\r\n"
                    "3;name=\"v\"\r\nhel\r\n"
                    "4\r\nlo, \r\n"
                    "5 ; x\r\nworld\r\n"
                    "A\r\n!123456789\r\n"
                    "0\r\nX-Checksum: abc\r\nX-More: 1\r\n\r\n");
        return true;
    case M_CHUNKED_LENGTH:
        send_str(c, "HTTP/1.1 200 OK\r\nContent-Length: 999\r\nTransfer-Encoding: chunked\r\n"
                    "\r\n2\r\nok\r\n0\r\n\r\n");
        return true;
    case M_UNTIL_EOF:
        send_str(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\neof:");
        memset(buf, 'e', EOF_BODY_LEN - 4);
        send_all(c->fd, buf, EOF_BODY_LEN - 4);
        conn_close(c);
        return false;
    case M_CONN_CLOSE:
        send_str(c, "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok");
        return true;
    case M_HTTP10:
        send_str(c, "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok");
        return true;
    case M_HTTP10_KA:
        send_str(c, "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok");
        return true;
    case M_CLOSE_AFTER:
        answer_ok(c);
        conn_close(c);
        return false;
    case M_DROP:
        conn_close(c);
        return false;
    case M_RST:
        conn_reset(c);
        return false;
    case M_DROP_SECOND:
    case M_RST_SECOND:
        if (nth == 1) {
            answer_ok(c);
            return true;
        }
        if (s->mode == M_RST_SECOND)
            conn_reset(c);
        else
            conn_close(c);
        return false;
    case M_DROP_AFTER_FIRST:
        pthread_mutex_lock(&s->mu);
        total = s->requests;
        pthread_mutex_unlock(&s->mu);
        if (total == 1) {
            answer_ok(c);
            return true;
        }
        conn_close(c);
        return false;
    case M_CONTINUE:
        send_str(c, "HTTP/1.1 100 Continue\r\n\r\n");
        pause_ms(20); /* so the interim answer may arrive alone */
        send_str(c, "HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
                    "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        return true;
    case M_SWITCH:
        send_str(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                    "Connection: Upgrade\r\n\r\n");
        return true;
    case M_TWO_LENGTHS:
        send_str(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok!");
        return true;
    case M_SAME_LENGTHS:
        send_str(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok");
        return true;
    case M_HUGE_HEAD:
        send_big_head(c, VH__H1_HEAD_MAX + 1);
        return true;
    case M_FULL_HEAD:
        send_big_head(c, VH__H1_HEAD_MAX);
        return true;
    case M_TRAILING:
        send_str(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
                    "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        return true;
    case M_SLOW_LENGTH:
        send_slowly(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n"
                       "\r\n" SLOW_BODY);
        return true;
    case M_SLOW_CHUNKED:
        send_slowly(c, "HTTP/1.1 100 Continue\r\n\r\n"
                       "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                       "5;a=b\r\nhello\r\n7\r\n, world\r\n0\r\nX-T: 1\r\n\r\n");
        return true;
    case M_OVER_BOUND_WHOLE:
    case M_OVER_BOUND_CUT:
        if (nth == 1)
            send_long_body(c, VH_ATTEMPT_READ_MAX + (s->mode == M_OVER_BOUND_CUT ? 1001 : 1),
                           VH_ATTEMPT_READ_MAX + 1);
        else
            answer_ok(c);
        return true;
    case M_EARLY_HOLD:
    case M_EARLY_CLOSE:
        return true; /* answered on the head, in conn_read */
    case M_FLOOD_TRAILERS:
        send_flood(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n",
                   "X-T: 1\r\n");
        return false;
    case M_FLOOD_INTERIM:
        send_flood(c, "", "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n");
        return false;
    case M_COUNT_BODY:
        return true; /* answered in count_body */
    }
    return true;
}

/* Whether the buffer holds a whole request head. */
static bool has_head(const char *p, size_t len)
{
    size_t i;

    for (i = 0; i + 4 <= len; i++)
        if (memcmp(p + i, "\r\n\r\n", 4) == 0)
            return true;
    return false;
}

/*
 * M_COUNT_BODY: takes a request's head, then counts its body's bytes as they come and lets
 * them go, so a body larger than REQ_MAX can be read; answers once it has them all. It is a
 * slow reader: a pause after each read of the body, so that an engine sending megabytes
 * always finds the socket full and has to wait for room to write.
 */
static void count_body(struct srv *s, struct conn *c)
{
    char answer[96];
    size_t head = 0, i, take;
    int n;

    if (!c->in_body) {
        for (i = 0; i + 4 <= c->len && !head; i++)
            if (memcmp(c->in + i, "\r\n\r\n", 4) == 0)
                head = i + 4;
        if (!head) {
            if (c->len == sizeof(c->in))
                conn_close(c);
            return;
        }
        c->body_left = 0;
        for (i = 0; i + 17 < head; i++)
            if (strncasecmp(c->in + i, "\r\ncontent-length:", 17) == 0)
                c->body_left = strtoul(c->in + i + 17, NULL, 10);
        c->in_body = true;
        c->body_got = 0;
        memmove(c->in, c->in + head, c->len - head);
        c->len -= head;
    }
    take = c->len < c->body_left ? c->len : c->body_left;
    c->body_got += take;
    c->body_left -= take;
    memmove(c->in, c->in + take, c->len - take);
    c->len -= take;
    if (c->body_left) {
        pause_ms(1);
        return;
    }
    c->in_body = false;
    pthread_mutex_lock(&s->mu);
    s->requests++;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    n = snprintf(answer, sizeof(answer), "%zu", c->body_got);
    n = snprintf(answer, sizeof(answer), "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%zu", n,
                 c->body_got);
    send_all(c->fd, answer, (size_t)n);
}

static void conn_read(struct srv *s, struct conn *c, bool released)
{
    ssize_t r = recv(c->fd, c->in + c->len, sizeof(c->in) - c->len, 0);
    size_t n;

    if (r < 0 && errno == EAGAIN)
        return;
    if (r == 0) {
        pthread_mutex_lock(&s->mu);
        s->hangups++;
        pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->mu);
    }
    if (r <= 0) {
        conn_close(c);
        return;
    }
    c->len += (size_t)r;
    if (s->mode == M_COUNT_BODY) {
        count_body(s, c);
        return;
    }
    if ((s->mode == M_EARLY_HOLD || s->mode == M_EARLY_CLOSE) && has_head(c->in, c->len)) {
        pthread_mutex_lock(&s->mu);
        s->requests++;
        pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->mu);
        send_str(c, "HTTP/1.1 413 Payload Too Large\r\nContent-Length: 8\r\n"
                    "Connection: close\r\n\r\ntoo long");
        c->mute = true;
        if (s->mode == M_EARLY_CLOSE)
            conn_close(c);
        return;
    }
    for (;;) {
        if (c->fd < 0 || c->held)
            return;
        n = request_len(c->in, c->len);
        if (n == 0)
            break;
        pthread_mutex_lock(&s->mu);
        memcpy(s->last, c->in, n);
        s->last_len = n;
        s->requests++;
        pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->mu);
        memmove(c->in, c->in + n, c->len - n);
        c->len -= n;
        s->last_conn = (int)(c - s->conns);
        if (!respond(s, c, released))
            return;
    }
    if (c->len == sizeof(c->in))
        conn_close(c);
}

static void conn_stream(struct conn *c)
{
    static char chunk[16384];

    memset(chunk, 'z', sizeof(chunk));
    if (send(c->fd, chunk, sizeof(chunk), MSG_NOSIGNAL | MSG_DONTWAIT) < 0 && errno != EAGAIN)
        conn_close(c);
}

static void srv_accept(struct srv *s)
{
    int fd = accept(s->lfd, NULL, NULL), i;

    if (fd < 0)
        return;
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    pthread_mutex_lock(&s->mu);
    s->accepts++;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    for (i = 0; i < MAX_CONNS; i++) {
        if (s->conns[i].fd < 0) {
            s->conns[i].fd = fd;
            return;
        }
    }
    close(fd);
}

/*
 * Does `what` to every open connection but the one that answered last, and says which of
 * the engine's ports it was done to (-1: none, or more than one).
 */
static void srv_do_stray(struct srv *s, enum stray what)
{
    struct sockaddr_in a;
    socklen_t alen;
    int i, port = -1, done = 0;

    for (i = 0; i < MAX_CONNS; i++) {
        struct conn *c = &s->conns[i];

        if (c->fd < 0 || i == s->last_conn)
            continue;
        alen = sizeof(a);
        if (getpeername(c->fd, (struct sockaddr *)&a, &alen) == 0)
            port = ntohs(a.sin_port);
        done++;
        if (what == STRAY_BYTES)
            send_str(c, STRAY_RESPONSE);
        else
            conn_close(c);
    }
    pthread_mutex_lock(&s->mu);
    s->stray = STRAY_NONE;
    s->stray_port = done == 1 ? port : -1;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

static void *srv_main(void *arg)
{
    struct srv *s = arg;
    struct pollfd pfd[MAX_CONNS + 2];
    int idx[MAX_CONNS + 2], n, k, i;
    bool stop, released;
    enum stray stray;
    char drain[64];

    for (;;) {
        pthread_mutex_lock(&s->mu);
        stop = s->stop;
        released = s->release;
        stray = s->stray;
        pthread_mutex_unlock(&s->mu);
        if (stop)
            break;
        if (stray != STRAY_NONE)
            srv_do_stray(s, stray);
        for (i = 0; released && i < MAX_CONNS; i++)
            if (s->conns[i].fd >= 0 && s->conns[i].held)
                answer_ok(&s->conns[i]);
        n = 0;
        pfd[n].fd = s->wake[0];
        pfd[n++].events = POLLIN;
        pfd[n].fd = s->lfd;
        pfd[n++].events = POLLIN;
        for (i = 0; i < MAX_CONNS; i++) {
            if (s->conns[i].fd < 0 || s->conns[i].mute)
                continue;
            pfd[n].fd = s->conns[i].fd;
            pfd[n].events = POLLIN | (s->conns[i].streaming ? POLLOUT : 0);
            idx[n++] = i;
        }
        if (poll(pfd, (nfds_t)n, -1) < 0)
            continue;
        if (pfd[0].revents)
            (void)!read(s->wake[0], drain, sizeof(drain));
        if (pfd[1].revents & POLLIN)
            srv_accept(s);
        for (k = 2; k < n; k++) {
            struct conn *c = &s->conns[idx[k]];

            if (c->fd >= 0 && (pfd[k].revents & (POLLIN | POLLHUP | POLLERR)))
                conn_read(s, c, released);
            if (c->fd >= 0 && c->streaming && (pfd[k].revents & POLLOUT))
                conn_stream(c);
        }
    }
    for (i = 0; i < MAX_CONNS; i++)
        if (s->conns[i].fd >= 0)
            conn_close(&s->conns[i]);
    return NULL;
}

static struct srv *srv_start(enum mode mode)
{
    struct sockaddr_in a;
    socklen_t alen = sizeof(a);
    struct srv *s = calloc(1, sizeof(*s));
    int i, one = 1;

    assert_non_null(s);
    s->mode = mode;
    s->last_conn = -1;
    for (i = 0; i < MAX_CONNS; i++)
        s->conns[i].fd = -1;
    pthread_mutex_init(&s->mu, NULL);
    cond_init_mono(&s->cv);
    assert_int_equal(pipe(s->wake), 0);
    s->lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(s->lfd >= 0);
    setsockopt(s->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (mode == M_EARLY_HOLD || mode == M_EARLY_CLOSE || mode == M_COUNT_BODY) {
        /*
         * Inherited: a large body cannot all wait in the server's buffer, and the engine's
         * send buffer fills long before the server has read it (M_COUNT_BODY).
         */
        int small = 4096;

        setsockopt(s->lfd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    }
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(s->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(s->lfd, 64), 0);
    assert_int_equal(getsockname(s->lfd, (struct sockaddr *)&a, &alen), 0);
    s->port = ntohs(a.sin_port);
    assert_int_equal(pthread_create(&s->th, NULL, srv_main, s), 0);
    return s;
}

static void srv_poke(struct srv *s)
{
    (void)!write(s->wake[1], "x", 1);
}

/* Answers every held request, and every later one, with 200. */
static void srv_release(struct srv *s)
{
    pthread_mutex_lock(&s->mu);
    s->release = true;
    pthread_mutex_unlock(&s->mu);
    srv_poke(s);
}

static void srv_stop(struct srv *s)
{
    pthread_mutex_lock(&s->mu);
    s->stop = true;
    pthread_mutex_unlock(&s->mu);
    srv_poke(s);
    pthread_join(s->th, NULL);
    close(s->lfd);
    close(s->wake[0]);
    close(s->wake[1]);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
}

/*
 * Has the server do `what` to its connections but the one that answered last (from any
 * thread); returns the engine's port of the one it was done to, or -1 when that was not
 * exactly one connection.
 */
static int srv_stray(struct srv *s, enum stray what)
{
    struct timespec dl = deadline_in(WAIT_MS);
    int port;

    pthread_mutex_lock(&s->mu);
    s->stray = what;
    pthread_mutex_unlock(&s->mu);
    srv_poke(s);
    pthread_mutex_lock(&s->mu);
    while (s->stray != STRAY_NONE && pthread_cond_timedwait(&s->cv, &s->mu, &dl) != ETIMEDOUT)
        ;
    port = s->stray == STRAY_NONE ? s->stray_port : -1;
    pthread_mutex_unlock(&s->mu);
    return port;
}

static bool srv_wait_requests(struct srv *s, int n, int ms)
{
    struct timespec dl = deadline_in(ms);
    bool ok;

    pthread_mutex_lock(&s->mu);
    while (s->requests < n && pthread_cond_timedwait(&s->cv, &s->mu, &dl) != ETIMEDOUT)
        ;
    ok = s->requests >= n;
    pthread_mutex_unlock(&s->mu);
    return ok;
}

/* Waits up to `ms` for the engine to have closed `n` connections to `s`. */
static bool srv_wait_hangups(struct srv *s, int n, int ms)
{
    struct timespec dl = deadline_in(ms);
    bool ok;

    pthread_mutex_lock(&s->mu);
    while (s->hangups < n && pthread_cond_timedwait(&s->cv, &s->mu, &dl) != ETIMEDOUT)
        ;
    ok = s->hangups >= n;
    pthread_mutex_unlock(&s->mu);
    return ok;
}

static int srv_accepts(struct srv *s)
{
    int n;

    pthread_mutex_lock(&s->mu);
    n = s->accepts;
    pthread_mutex_unlock(&s->mu);
    return n;
}

static int srv_requests(struct srv *s)
{
    int n;

    pthread_mutex_lock(&s->mu);
    n = s->requests;
    pthread_mutex_unlock(&s->mu);
    return n;
}

static void srv_url(const struct srv *s, char *out, size_t n)
{
    snprintf(out, n, "http://127.0.0.1:%d/hook?x=1", s->port);
}

/* ---- engine helpers -------------------------------------------------------------------------- */

static void test_log(void *ud, enum vh_log_level level, const char *line)
{
    (void)ud;
    (void)level;
    if (getenv("VH_TEST_VERBOSE"))
        fprintf(stderr, "%s\n", line);
}

static struct vh_engine *engine_with(bool allow_http, bool allow_private, const char *ca_file,
                                     unsigned per_endpoint)
{
    struct vh_engine_config cfg;
    struct vh_engine *e = NULL;
    struct vh_error err = VH_ERROR_INIT;

    vh_engine_config_init(&cfg);
    cfg.allow_http = allow_http;
    cfg.allow_private_networks = allow_private;
    cfg.ca_file = ca_file;
    cfg.max_per_endpoint = per_endpoint;
    cfg.log = test_log;
    if (vh_engine_new(&cfg, &e, &err) != 0)
        fail_msg("vh_engine_new: %s", err.msg);
    return e;
}

static struct vh_engine *engine_dev(void)
{
    return engine_with(true, true, NULL, 8);
}

static struct vh_delivery_job job_for(const char *url, const char *endpoint, int64_t timeout_ms)
{
    struct vh_delivery_job j;

    memset(&j, 0, sizeof(j));
    j.delivery_id = "d-test";
    j.event_id = EVENT_ID;
    j.endpoint_id = endpoint;
    j.url = url;
    j.secret = SECRET;
    j.secret_len = strlen(SECRET);
    j.body = BODY;
    j.body_len = strlen(BODY);
    j.attempt = 1;
    j.timeout_ms = timeout_ms;
    return j;
}

static void submit(struct vh_engine *e, int slot, const char *url, const char *endpoint,
                   int64_t timeout_ms)
{
    struct vh_delivery_job j = job_for(url, endpoint, timeout_ms);
    struct vh_error err = VH_ERROR_INIT;

    if (vh_engine_submit(e, &j, on_done, &R.slots[slot], &err) != 0)
        fail_msg("vh_engine_submit: %s", err.msg);
}

/* Delivers one job to `url` and returns its report. */
static struct vh_attempt deliver_one(struct vh_engine *e, const char *url, int64_t timeout_ms)
{
    int before = total_now();

    submit(e, 0, url, NULL, timeout_ms);
    assert_true(wait_total(before + 1, WAIT_MS));
    assert_int_equal(R.slots[0].calls, 1);
    return R.slots[0].a;
}

/* Delivers `body` (`len` bytes) to `url` in one job and returns its report. */
static struct vh_attempt deliver_body(struct vh_engine *e, const char *url, const char *body,
                                      size_t len, int64_t timeout_ms)
{
    struct vh_delivery_job j = job_for(url, NULL, timeout_ms);
    struct vh_error err = VH_ERROR_INIT;
    int before = total_now();

    j.body = body;
    j.body_len = len;
    if (vh_engine_submit(e, &j, on_done, &R.slots[0], &err) != 0)
        fail_msg("vh_engine_submit: %s", err.msg);
    assert_true(wait_total(before + 1, WAIT_MS));
    return R.slots[0].a;
}

/* The value of header `name` in a raw request, or false. */
static bool header(const char *req, size_t len, const char *name, char *out, size_t n)
{
    size_t nl = strlen(name), i, j;

    for (i = 0; i + 2 + nl < len; i++) {
        if (memcmp(req + i, "\r\n", 2) != 0 || strncasecmp(req + i + 2, name, nl) != 0 ||
            req[i + 2 + nl] != ':')
            continue;
        i += 3 + nl;
        while (i < len && req[i] == ' ')
            i++;
        for (j = 0; i + j < len && req[i + j] != '\r' && j + 1 < n; j++)
            out[j] = req[i + j];
        out[j] = '\0';
        return true;
    }
    return false;
}

/* ---- the request itself ---------------------------------------------------------------------- */

static void test_success_headers_and_signature(void **state)
{
    struct srv *s = srv_start(M_OK);
    struct vh_engine *e = engine_dev();
    char url[128], v[256], req[REQ_MAX];
    size_t req_len, head_len;
    struct vh_attempt a;
    struct vh_verify_opts opts;
    const char *secrets[1] = {SECRET};
    char ts[VH_TIME_LEN + 1];
    int64_t now = vh_time_now_ms();

    (void)state;
    srv_url(s, url, sizeof(url));
    a = deliver_one(e, url, 0);
    assert_int_equal(a.result, VH_ATTEMPT_OK);
    assert_int_equal(a.http_status, 200);
    assert_int_equal(a.number, 1);
    assert_int_equal(a.response_len, 2);
    assert_int_equal(a.response_read, 2);
    assert_string_equal(a.response_head, "ok");
    assert_string_equal(a.error, "");
    assert_true(a.duration_ms >= 0);
    assert_true(a.started_ms >= now - 1000 && a.started_ms <= vh_time_now_ms());
    assert_int_equal(vh_engine_in_flight(e), 0);

    pthread_mutex_lock(&s->mu);
    req_len = s->last_len;
    memcpy(req, s->last, req_len);
    pthread_mutex_unlock(&s->mu);
    assert_true(req_len > 0);
    assert_memory_equal(req, "POST /hook?x=1 HTTP/1.1\r\n", 25);
    assert_true(header(req, req_len, "Content-Type", v, sizeof(v)));
    assert_string_equal(v, "application/json");
    assert_true(header(req, req_len, "User-Agent", v, sizeof(v)));
    assert_string_equal(v, "vocohook/" VH_VERSION_STRING);
    assert_true(header(req, req_len, "X-Webhook-Id", v, sizeof(v)));
    assert_string_equal(v, EVENT_ID);
    assert_true(header(req, req_len, "Content-Length", v, sizeof(v)));
    assert_int_equal(strtoul(v, NULL, 10), strlen(BODY));
    assert_false(header(req, req_len, "Expect", v, sizeof(v)));
    assert_false(header(req, req_len, "Transfer-Encoding", v, sizeof(v)));

    /* The timestamp is the attempt's start, and the signature verifies over the raw body. */
    assert_true(header(req, req_len, "X-Webhook-Timestamp", ts, sizeof(ts)));
    {
        char want[VH_TIME_LEN + 1];

        assert_int_equal(vh_time_format(a.started_ms, want), 0);
        assert_string_equal(ts, want);
    }
    head_len = req_len - strlen(BODY);
    assert_memory_equal(req + head_len, BODY, strlen(BODY));
    assert_true(header(req, req_len, "X-Webhook-Signature", v, sizeof(v)));
    opts.secrets = secrets;
    opts.n_secrets = 1;
    opts.tolerance_ms = 300000;
    opts.now_ms = vh_time_now_ms();
    assert_int_equal(
        vh_verify(&opts, ts, strlen(ts), v, strlen(v), req + head_len, strlen(BODY), NULL, NULL),
        0);
    secrets[0] = "whsec_another";
    assert_int_equal(
        vh_verify(&opts, ts, strlen(ts), v, strlen(v), req + head_len, strlen(BODY), NULL, NULL),
        VH_ESIG);

    vh_engine_free(e);
    srv_stop(s);
}

static void test_connection_reused(void **state)
{
    struct srv *s = srv_start(M_OK);
    struct vh_engine *e = engine_dev();
    char url[128];
    struct vh_attempt a;

    (void)state;
    srv_url(s, url, sizeof(url));
    a = deliver_one(e, url, 0);
    assert_int_equal(a.result, VH_ATTEMPT_OK);
    assert_false(a.reused_connection);
    reset_results(NULL);
    a = deliver_one(e, url, 0);
    assert_int_equal(a.result, VH_ATTEMPT_OK);
    assert_true(a.reused_connection);
    assert_int_equal(srv_accepts(s), 1);
    assert_int_equal(srv_requests(s), 2);
    vh_engine_free(e);
    srv_stop(s);
}

/* A URL nothing answers: a port that was just free (bound, never listened on, closed). */
static void refused_url(char *out, size_t n)
{
    struct sockaddr_in a;
    socklen_t alen = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    assert_true(fd >= 0);
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &alen), 0);
    snprintf(out, n, "http://127.0.0.1:%d/", ntohs(a.sin_port));
    close(fd);
}

/* Counts the records a log function gets, by level. */
static int log_counts[4];

static void counting_log(void *ud, enum vh_log_level level, const char *line)
{
    (void)ud;
    (void)line;
    if ((unsigned)level < 4)
        __atomic_add_fetch(&log_counts[level], 1, __ATOMIC_SEQ_CST);
}

/*
 * One attempt at a time (max_total 1), each after a different ending: what an attempt left
 * behind (a capped body, an error line) never shows in the next one's report. And no record
 * above the configured log level is made.
 */
static void test_reused_handle_starts_clean(void **state)
{
    struct srv *stream = srv_start(M_STREAM), *ok = srv_start(M_OK);
    struct vh_error err = VH_ERROR_INIT;
    struct vh_engine_config cfg;
    struct vh_engine *e = NULL;
    char url[128], refused[128];
    struct vh_attempt at;

    (void)state;
    memset(log_counts, 0, sizeof(log_counts));
    vh_engine_config_init(&cfg);
    cfg.allow_http = true;
    cfg.allow_private_networks = true;
    cfg.max_total = 1;
    cfg.log = counting_log;
    cfg.log_level = VH_LOG_INFO;
    if (vh_engine_new(&cfg, &e, &err) != 0)
        fail_msg("vh_engine_new: %s", err.msg);

    srv_url(stream, url, sizeof(url));
    at = deliver_one(e, url, 120000);
    assert_int_equal(at.result, VH_ATTEMPT_OK);
    assert_int_equal(at.response_len, VH_ATTEMPT_HEAD_MAX);

    refused_url(refused, sizeof(refused));
    reset_results(NULL);
    at = deliver_one(e, refused, 0);
    assert_int_equal(at.result, VH_ATTEMPT_CONNECT);
    assert_string_not_equal(at.error, "");

    srv_url(ok, url, sizeof(url));
    reset_results(NULL);
    at = deliver_one(e, url, 0);
    assert_int_equal(at.result, VH_ATTEMPT_OK);
    assert_int_equal(at.http_status, 200);
    assert_string_equal(at.error, "");
    assert_int_equal(at.response_read, 2);
    assert_int_equal(at.response_len, 2);
    assert_string_equal(at.response_head, "ok");
    assert_int_equal(srv_requests(ok), 1);

    vh_engine_free(e);
    /* "engine started" and "engine stopped" came; the three attempts' records did not. */
    assert_true(__atomic_load_n(&log_counts[VH_LOG_INFO], __ATOMIC_SEQ_CST) >= 2);
    assert_int_equal(__atomic_load_n(&log_counts[VH_LOG_DEBUG], __ATOMIC_SEQ_CST), 0);
    srv_stop(stream);
    srv_stop(ok);
}

/*
 * At most max_total connections stay idle: with max_total 1, the first origin's connection
 * is kept and the second's is closed once its answer is read (the idle list is full), so
 * the first is reused and the second connects again.
 */
static void test_idle_connections_bounded(void **state)
{
    struct srv *a = srv_start(M_OK), *b = srv_start(M_OK);
    struct vh_error err = VH_ERROR_INIT;
    struct vh_engine_config cfg;
    struct vh_engine *e = NULL;
    char url_a[128], url_b[128];
    struct vh_attempt at;

    (void)state;
    vh_engine_config_init(&cfg);
    cfg.allow_http = true;
    cfg.allow_private_networks = true;
    cfg.max_total = 1;
    if (vh_engine_new(&cfg, &e, &err) != 0)
        fail_msg("vh_engine_new: %s", err.msg);
    srv_url(a, url_a, sizeof(url_a));
    srv_url(b, url_b, sizeof(url_b));
    at = deliver_one(e, url_a, 0);
    assert_int_equal(at.result, VH_ATTEMPT_OK);
    reset_results(NULL);
    at = deliver_one(e, url_b, 0);
    assert_int_equal(at.result, VH_ATTEMPT_OK);
    assert_false(at.reused_connection);
    reset_results(NULL);
    at = deliver_one(e, url_a, 0);
    assert_int_equal(at.result, VH_ATTEMPT_OK);
    assert_true(at.reused_connection);
    reset_results(NULL);
    at = deliver_one(e, url_b, 0);
    assert_int_equal(at.result, VH_ATTEMPT_OK);
    assert_false(at.reused_connection);
    assert_int_equal(srv_accepts(a), 1);
    assert_int_equal(srv_accepts(b), 2);
    vh_engine_free(e);
    srv_stop(a);
    srv_stop(b);
}

/* ---- failure classes ------------------------------------------------------------------------- */

static void test_status_500_keeps_first_kib(void **state)
{
    struct srv *s = srv_start(M_STATUS);
    struct vh_engine *e = engine_dev();
    char url[128];
    struct vh_attempt a;
    size_t i;

    (void)state;
    srv_url(s, url, sizeof(url));
    a = deliver_one(e, url, 0);
    assert_int_equal(a.result, VH_ATTEMPT_HTTP_STATUS);
    assert_int_equal(a.http_status, 500);
    assert_int_equal(a.response_read, ERR_BODY_LEN);
    assert_int_equal(a.response_len, VH_ATTEMPT_HEAD_MAX);
    assert_memory_equal(a.response_head, "boom:", 5);
    for (i = 5; i < VH_ATTEMPT_HEAD_MAX; i++)
        assert_int_equal(a.response_head[i], 'x');
    assert_int_equal(a.response_head[VH_ATTEMPT_HEAD_MAX], '\0');
    assert_string_equal(vh_attempt_result_name(a.result), "http_status");
    vh_engine_free(e);
    srv_stop(s);
}

static void test_redirect_not_followed(void **state)
{
    struct srv *target = srv_start(M_OK);
    struct srv *s = srv_start(M_REDIRECT);
    struct vh_engine *e = engine_dev();
    char url[128];
    struct vh_attempt a;

    (void)state;
    srv_url(target, s->location, sizeof(s->location));
    srv_url(s, url, sizeof(url));
    a = deliver_one(e, url, 0);
    assert_int_equal(a.result, VH_ATTEMPT_REDIRECT);
    assert_int_equal(a.http_status, 302);
    vh_engine_free(e); /* every connection is closed: nothing can still reach the target */
    assert_int_equal(srv_accepts(target), 0);
    srv_stop(s);
    srv_stop(target);
}

static void test_connection_refused(void **state)
{
    struct vh_engine *e = engine_dev();
    struct vh_attempt at;
    char url[128];

    (void)state;
    refused_url(url, sizeof(url));
    at = deliver_one(e, url, 0);
    assert_int_equal(at.result, VH_ATTEMPT_CONNECT);
    assert_int_equal(at.http_status, 0);
    assert_string_not_equal(at.error, "");
    vh_engine_free(e);
}

static void test_timeout(void **state)
{
    struct srv *s = srv_start(M_HOLD);
    struct vh_engine *e = engine_dev();
    char url[128];
    struct vh_attempt a;

    (void)state;
    srv_url(s, url, sizeof(url));
    a = deliver_one(e, url, 300);
    assert_int_equal(a.result, VH_ATTEMPT_TIMEOUT);
    assert_int_equal(a.http_status, 0);
    assert_true(a.duration_ms >= 290);
    assert_string_equal(a.error, "no complete response within 300 ms");
    assert_int_equal(srv_requests(s), 1);
    vh_engine_free(e);
    srv_stop(s);
}

static void test_close_mid_response(void **state)
{
    struct srv *s = srv_start(M_CLOSE_MID);
    struct vh_engine *e = engine_dev();
    char url[128];
    struct vh_attempt a;

    (void)state;
    srv_url(s, url, sizeof(url));
    a = deliver_one(e, url, 0);
    if (a.result != VH_ATTEMPT_RESET && a.result != VH_ATTEMPT_PROTOCOL)
        fail_msg("got %s (%s)", vh_attempt_result_name(a.result), a.error);
    assert_string_not_equal(a.error, "");
    vh_engine_free(e);
    srv_stop(s);
}

static void test_garbage_is_protocol(void **state)
{
    struct srv *s = srv_start(M_GARBAGE);
    struct vh_engine *e = engine_dev();
    char url[128];
    struct vh_attempt a;

    (void)state;
    srv_url(s, url, sizeof(url));
    a = deliver_one(e, url, 0);
    assert_int_equal(a.result, VH_ATTEMPT_PROTOCOL);
    vh_engine_free(e);
    srv_stop(s);
}

static void test_unresolvable_host(void **state)
{
    struct vh_engine *e = engine_dev();
    struct vh_attempt a;

    (void)state;
    /* .invalid never resolves (RFC 6761). */
    a = deliver_one(e, "http://vocohook-engine-test.invalid/", 10000);
    assert_int_equal(a.result, VH_ATTEMPT_DNS);
    vh_engine_free(e);
}

/* An endless 200 body is read up to the bound, then dropped: the attempt still succeeds. */
static void test_response_body_is_bounded(void **state)
{
    struct srv *s = srv_start(M_STREAM);
    struct vh_engine *e = engine_dev();
    char url[128];
    struct vh_attempt a;

    (void)state;
    srv_url(s, url, sizeof(url));
    a = deliver_one(e, url, 120000); /* the wait's deadline comes first if reading never ends */
    assert_int_equal(a.result, VH_ATTEMPT_OK);
    assert_int_equal(a.http_status, 200);
    assert_int_equal(a.response_read, VH_ATTEMPT_READ_MAX);
    assert_int_equal(a.response_len, VH_ATTEMPT_HEAD_MAX);
    assert_int_equal(a.response_head[0], 'z');
    /* The rest of the body was never read: that connection cannot carry another request. */
    reset_results(NULL);
    a = deliver_one(e, url, 120000);
    assert_int_equal(a.result, VH_ATTEMPT_OK);
    assert_false(a.reused_connection);
    assert_int_equal(srv_accepts(s), 2);
    vh_engine_free(e);
    srv_stop(s);
}

/* ---- framing and keep-alive (the engine's own HTTP/1.1) ------------------------------------- */

/* Two deliveries, one after the other, to a server in `mode`, and what the server saw. */
struct two {
    struct vh_attempt a[2];
    int accepts, requests;
};

static struct two deliver_two(enum mode mode)
{
    struct srv *s = srv_start(mode);
    struct vh_engine *e = engine_dev();
    struct two t;
    char url[128];

    srv_url(s, url, sizeof(url));
    t.a[0] = deliver_one(e, url, 0);
    reset_results(NULL);
    t.a[1] = deliver_one(e, url, 0);
    /* Both were answered (or dropped) by the server: its counts are final. */
    t.accepts = srv_accepts(s);
    t.requests = srv_requests(s);
    vh_engine_free(e);
    srv_stop(s);
    return t;
}

static void assert_ok_body(const struct vh_attempt *a, const char *body)
{
    if (a->result != VH_ATTEMPT_OK)
        fail_msg("got %s: %s", vh_attempt_result_name(a->result), a->error);
    assert_int_equal(a->http_status, 200);
    assert_string_equal(a->error, "");
    assert_int_equal(a->response_read, strlen(body));
    assert_int_equal(a->response_len, strlen(body));
    assert_string_equal(a->response_head, body);
}

/* The first response left the connection for the next request. */
static void assert_reused(const struct two *t)
{
    assert_false(t->a[0].reused_connection);
    assert_true(t->a[1].reused_connection);
    assert_int_equal(t->accepts, 1);
    assert_int_equal(t->requests, 2);
}

/* The first response ended its connection: the second delivery made a new one. */
static void assert_not_reused(const struct two *t)
{
    assert_false(t->a[0].reused_connection);
    assert_false(t->a[1].reused_connection);
    assert_int_equal(t->accepts, 2);
    assert_int_equal(t->requests, 2);
}

static void test_chunked_body_is_dechunked(void **state)
{
    struct two t = deliver_two(M_CHUNKED);

    (void)state;
    assert_ok_body(&t.a[0], CHUNKED_BODY);
    assert_ok_body(&t.a[1], CHUNKED_BODY);
    assert_reused(&t); /* the last chunk and the trailers were all read */
}

/* Transfer-Encoding and Content-Length both: the chunks frame it, and the connection ends. */
static void test_chunked_with_length_not_reused(void **state)
{
    struct two t = deliver_two(M_CHUNKED_LENGTH);

    (void)state;
    assert_ok_body(&t.a[0], "ok");
    assert_ok_body(&t.a[1], "ok");
    assert_not_reused(&t);
}

static void test_close_delimited_body(void **state)
{
    struct two t = deliver_two(M_UNTIL_EOF);
    size_t i;

    (void)state;
    for (i = 0; i < 2; i++) {
        assert_int_equal(t.a[i].result, VH_ATTEMPT_OK);
        assert_int_equal(t.a[i].http_status, 200);
        assert_string_equal(t.a[i].error, "");
        assert_int_equal(t.a[i].response_read, EOF_BODY_LEN);
        assert_int_equal(t.a[i].response_len, VH_ATTEMPT_HEAD_MAX);
        assert_memory_equal(t.a[i].response_head, "eof:eee", 7);
        assert_int_equal(t.a[i].response_head[VH_ATTEMPT_HEAD_MAX - 1], 'e');
    }
    assert_not_reused(&t);
}

static void test_connection_close_not_reused(void **state)
{
    struct two t = deliver_two(M_CONN_CLOSE);

    (void)state;
    assert_ok_body(&t.a[0], "ok");
    assert_ok_body(&t.a[1], "ok");
    assert_not_reused(&t);
}

static void test_http10_keep_alive_rules(void **state)
{
    struct two t = deliver_two(M_HTTP10);

    (void)state;
    /* HTTP/1.0 closes unless it says keep-alive... */
    assert_ok_body(&t.a[0], "ok");
    assert_ok_body(&t.a[1], "ok");
    assert_not_reused(&t);
    /* ...and may be kept when it does. */
    reset_results(NULL);
    t = deliver_two(M_HTTP10_KA);
    assert_ok_body(&t.a[0], "ok");
    assert_ok_body(&t.a[1], "ok");
    assert_reused(&t);
}

/*
 * The stale keep-alive race: the server answers without saying it closes, then closes.
 * Whether the engine sees the close while the connection is idle or only when it sends on
 * it, the next delivery succeeds on a new connection.
 */
static void test_server_closes_idle_connection(void **state)
{
    struct two t = deliver_two(M_CLOSE_AFTER);

    (void)state;
    assert_ok_body(&t.a[0], "ok");
    assert_ok_body(&t.a[1], "ok");
    assert_not_reused(&t);
}

/*
 * An idle connection is closed once it has been idle for idle_max_ms (its shortest, 1 s
 * here), without a job to make the engine look: the server reads its end. The next
 * delivery then goes on a new connection. Not before: a delivery right after the first
 * reuses it.
 */
static void test_idle_connection_closed_after_idle_max(void **state)
{
    struct srv *s = srv_start(M_OK);
    struct vh_engine_config cfg;
    struct vh_engine *e = NULL;
    struct vh_error err = VH_ERROR_INIT;
    struct vh_attempt at;
    char url[128];

    (void)state;
    vh_engine_config_init(&cfg);
    cfg.allow_http = cfg.allow_private_networks = true;
    cfg.idle_max_ms = VH_ENGINE_IDLE_MAX_MS_MIN;
    cfg.log = test_log;
    if (vh_engine_new(&cfg, &e, &err) != 0)
        fail_msg("vh_engine_new: %s", err.msg);
    srv_url(s, url, sizeof(url));
    at = deliver_one(e, url, 0);
    assert_ok_body(&at, "ok");
    reset_results(NULL);
    at = deliver_one(e, url, 0);
    assert_ok_body(&at, "ok");
    assert_true(at.reused_connection);
    assert_int_equal(srv_accepts(s), 1);

    assert_true(srv_wait_hangups(s, 1, WAIT_MS));
    reset_results(NULL);
    at = deliver_one(e, url, 0);
    assert_ok_body(&at, "ok");
    assert_false(at.reused_connection);
    assert_int_equal(srv_accepts(s), 2);
    vh_engine_free(e);
    srv_stop(s);
}

/*
 * The check before reuse when several idle connections are taken in one turn (over plain
 * HTTP one poll checks them all): a connection that got a response nobody asked for after
 * its answer was read, with no poll of the engine between that and the next jobs' start, is
 * not used; a quiet one is. Read as the next request's answer, the stray response would
 * record a 299 the endpoint never gave. A close is caught the same way (without the check,
 * the retry on a new connection would hide it).
 */
static struct {
    struct srv *s;
    struct vh_engine *e;
    const char *url;
    enum stray what;
    const char *failed; /* set by the callback: what went wrong there */
} Stray;

/* The engine's socket whose local port is `port` (this process's descriptors), or -1. */
static int engine_fd_of(int port)
{
    struct sockaddr_in a;
    socklen_t alen;
    int fd;

    for (fd = 0; fd < 1024; fd++) {
        alen = sizeof(a);
        if (getsockname(fd, (struct sockaddr *)&a, &alen) == 0 && a.sin_family == AF_INET &&
            ntohs(a.sin_port) == port)
            return fd;
    }
    return -1;
}

/*
 * The third job's report, on the engine thread: the stray bytes (or the close) go to the
 * other idle connection and are awaited on the engine's end of it, then two jobs are
 * submitted. They start in the next turn, with no poll of the engine between.
 */
static void on_done_stray(void *ud, const struct vh_attempt *a)
{
    struct vh_delivery_job j = job_for(Stray.url, NULL, 0);
    struct pollfd pfd;
    int port, i;

    port = srv_stray(Stray.s, Stray.what);
    pfd.fd = port < 0 ? -1 : engine_fd_of(port);
    pfd.events = POLLIN;
    pfd.revents = 0;
    if (pfd.fd < 0)
        Stray.failed = "no single other connection on the server and the engine";
    else if (poll(&pfd, 1, WAIT_MS) != 1)
        Stray.failed = "the stray bytes or the close never reached the engine";
    for (i = 3; i < 5; i++)
        if (vh_engine_submit(Stray.e, &j, on_done, &R.slots[i], NULL) != 0)
            Stray.failed = "submit failed";
    on_done(ud, a);
}

static void test_idle_connections_checked_together(void **state)
{
    enum stray whats[2] = {STRAY_BYTES, STRAY_CLOSE};
    struct vh_delivery_job j;
    char url[128];
    int i, k, reused;

    (void)state;
    for (k = 0; k < 2; k++) {
        reset_results(NULL);
        memset(&Stray, 0, sizeof(Stray));
        Stray.s = srv_start(M_HOLD);
        Stray.e = engine_with(true, true, NULL, 2);
        Stray.what = whats[k];
        srv_url(Stray.s, url, sizeof(url));
        Stray.url = url;
        /* Two connections: both requests are held until both came. */
        submit(Stray.e, 0, url, NULL, 0);
        submit(Stray.e, 1, url, NULL, 0);
        assert_true(srv_wait_requests(Stray.s, 2, WAIT_MS));
        srv_release(Stray.s);
        assert_true(wait_total(2, WAIT_MS));
        assert_int_equal(srv_accepts(Stray.s), 2);
        /* One more on one of them; its callback spoils the other and submits two. */
        j = job_for(url, NULL, 0);
        assert_int_equal(vh_engine_submit(Stray.e, &j, on_done_stray, &R.slots[2], NULL), 0);
        assert_true(wait_total(5, WAIT_MS));
        if (Stray.failed)
            fail_msg("%s", Stray.failed);
        reused = 0;
        for (i = 0; i < 5; i++) {
            if (R.slots[i].a.http_status != 200)
                fail_msg("case %d, job %d: got %s (%d): %s", k, i,
                         vh_attempt_result_name(R.slots[i].a.result), R.slots[i].a.http_status,
                         R.slots[i].a.error);
            assert_int_equal(R.slots[i].calls, 1);
        }
        for (i = 3; i < 5; i++)
            reused += R.slots[i].a.reused_connection;
        assert_int_equal(reused, 1); /* the quiet one was taken, the other not */
        assert_int_equal(srv_accepts(Stray.s), 3);
        assert_int_equal(srv_requests(Stray.s), 5);
        vh_engine_free(Stray.e);
        srv_stop(Stray.s);
    }
}

/*
 * libcurl keeps the engine's connections in its cache, and as it makes a new connection it
 * prunes (at most once a second) those it thinks unused and older than its age limit
 * (CURLOPT_MAXAGE_CONN, which the engine sets to idle_max_ms). None of the engine's may look
 * unused to it: a busy connection that libcurl closed would leave its descriptor's number to
 * the next socket, and the engine's next request to the first server would go out on the
 * second server's connection (found in review, session 26, when plain HTTP stopped sending
 * through libcurl). Here a connection to one server stays busy, never idle for
 * idle_max_ms, until it is older than that; then another server's connection is made. Each
 * server must get exactly its own requests, the first one on its one connection. The pauses
 * are the ages themselves: there is no event to wait for.
 */
static void test_libcurl_never_closes_a_connection_in_use(void **state)
{
    struct srv *a = srv_start(M_OK), *b = srv_start(M_OK);
    struct vh_engine_config cfg;
    struct vh_engine *e = NULL;
    struct vh_error err = VH_ERROR_INIT;
    struct vh_attempt at;
    char url_a[128], url_b[128];
    int i;

    (void)state;
    vh_engine_config_init(&cfg);
    cfg.allow_http = cfg.allow_private_networks = true;
    cfg.idle_max_ms = VH_ENGINE_IDLE_MAX_MS_MIN;
    cfg.log = test_log;
    if (vh_engine_new(&cfg, &e, &err) != 0)
        fail_msg("vh_engine_new: %s", err.msg);
    srv_url(a, url_a, sizeof(url_a));
    srv_url(b, url_b, sizeof(url_b));
    /*
     * 2.6 s of requests 0.2 s apart: never idle for idle_max_ms, and older than libcurl's
     * limit (whole seconds of age, which must be more than the limit's 1: 2 at least).
     */
    for (i = 0; i < 14; i++) {
        if (i)
            pause_ms(200);
        reset_results(NULL);
        at = deliver_one(e, url_a, 0);
        assert_ok_body(&at, "ok");
        assert_int_equal(at.reused_connection, i > 0);
    }
    reset_results(NULL);
    at = deliver_one(e, url_b, 0); /* a new connection: libcurl prunes its cache */
    assert_ok_body(&at, "ok");
    for (i = 0; i < 2; i++) {
        reset_results(NULL);
        at = deliver_one(e, url_a, 0);
        assert_ok_body(&at, "ok");
        assert_true(at.reused_connection);
    }
    assert_int_equal(srv_requests(b), 1);
    assert_int_equal(srv_requests(a), 16);
    assert_int_equal(srv_accepts(a), 1);
    vh_engine_free(e);
    srv_stop(a);
    srv_stop(b);
}

/*
 * A reused connection that fails before any byte of the answer (the server closes it, or
 * resets it, on reading the request): the request goes again, once, on a new connection,
 * and the report says the connection was not reused.
 */
static void test_reused_connection_failure_is_retried(void **state)
{
    enum mode modes[2] = {M_DROP_SECOND, M_RST_SECOND};
    struct two t;
    size_t i;

    (void)state;
    for (i = 0; i < 2; i++) {
        reset_results(NULL);
        t = deliver_two(modes[i]);
        assert_ok_body(&t.a[0], "ok");
        assert_ok_body(&t.a[1], "ok");
        assert_false(t.a[0].reused_connection);
        assert_false(t.a[1].reused_connection);
        assert_int_equal(t.accepts, 2);
        assert_int_equal(t.requests, 3); /* one on the reused connection, lost */
    }
}

/* The retry is made once: when the new connection fails too, that is the attempt's end. */
static void test_retry_is_made_once(void **state)
{
    struct two t = deliver_two(M_DROP_AFTER_FIRST);

    (void)state;
    assert_ok_body(&t.a[0], "ok");
    assert_int_equal(t.a[1].result, VH_ATTEMPT_RESET);
    assert_int_equal(t.a[1].http_status, 0);
    assert_false(t.a[1].reused_connection);
    assert_string_not_equal(t.a[1].error, "");
    assert_int_equal(t.accepts, 2);
    assert_int_equal(t.requests, 3);
}

/* A fresh connection closed or reset without an answer: RESET, and no second request. */
static void test_fresh_connection_failure_not_retried(void **state)
{
    enum mode modes[2] = {M_DROP, M_RST};
    struct srv *s;
    struct vh_engine *e;
    struct vh_attempt a;
    char url[128];
    size_t i;

    (void)state;
    for (i = 0; i < 2; i++) {
        reset_results(NULL);
        s = srv_start(modes[i]);
        e = engine_dev();
        srv_url(s, url, sizeof(url));
        a = deliver_one(e, url, 0);
        if (a.result != VH_ATTEMPT_RESET)
            fail_msg("mode %d: got %s: %s", (int)modes[i], vh_attempt_result_name(a.result),
                     a.error);
        assert_int_equal(a.http_status, 0);
        assert_false(a.reused_connection);
        assert_string_not_equal(a.error, "");
        vh_engine_free(e);
        assert_int_equal(srv_accepts(s), 1);
        assert_int_equal(srv_requests(s), 1);
        srv_stop(s);
    }
}

/* 100 Continue and 103 Early Hints come before the answer: skipped, the 200 counts. */
static void test_interim_responses_skipped(void **state)
{
    struct two t = deliver_two(M_CONTINUE);

    (void)state;
    assert_ok_body(&t.a[0], "ok");
    assert_ok_body(&t.a[1], "ok");
    assert_reused(&t);
}

static void test_switching_protocols_is_protocol(void **state)
{
    struct two t = deliver_two(M_SWITCH);

    (void)state;
    assert_int_equal(t.a[0].result, VH_ATTEMPT_PROTOCOL);
    assert_non_null(strstr(t.a[0].error, "101"));
    assert_int_equal(t.a[1].result, VH_ATTEMPT_PROTOCOL);
    assert_not_reused(&t); /* the server left it open: the engine closed it */
}

static void test_two_content_lengths_is_protocol(void **state)
{
    struct two t = deliver_two(M_TWO_LENGTHS);

    (void)state;
    assert_int_equal(t.a[0].result, VH_ATTEMPT_PROTOCOL);
    assert_non_null(strstr(t.a[0].error, "Content-Length"));
    assert_int_equal(t.a[1].result, VH_ATTEMPT_PROTOCOL);
    assert_not_reused(&t);
    /* The same length twice frames the body one way only: accepted. */
    reset_results(NULL);
    t = deliver_two(M_SAME_LENGTHS);
    assert_ok_body(&t.a[0], "ok");
    assert_ok_body(&t.a[1], "ok");
    assert_reused(&t);
}

/* A head of VH__H1_HEAD_MAX bytes is read; one byte more is refused. */
static void test_response_head_bound(void **state)
{
    struct two t = deliver_two(M_FULL_HEAD);

    (void)state;
    assert_ok_body(&t.a[0], "ok");
    assert_ok_body(&t.a[1], "ok");
    assert_reused(&t);
    reset_results(NULL);
    t = deliver_two(M_HUGE_HEAD);
    assert_int_equal(t.a[0].result, VH_ATTEMPT_PROTOCOL);
    assert_non_null(strstr(t.a[0].error, "16 KiB"));
    assert_int_equal(t.a[1].result, VH_ATTEMPT_PROTOCOL);
    assert_not_reused(&t);
}

/*
 * Bytes after a complete response (here a second response, as a desynchronized server
 * would send): the answer is the first one, and the connection is not used again (the
 * stray response must never be read as the next request's).
 */
static void test_bytes_after_response_end_connection(void **state)
{
    struct two t = deliver_two(M_TRAILING);

    (void)state;
    assert_ok_body(&t.a[0], "ok");
    assert_ok_body(&t.a[1], "ok");
    assert_not_reused(&t);
}

/* A response arriving one byte at a time is parsed across every boundary. */
static void test_response_byte_by_byte(void **state)
{
    struct two t = deliver_two(M_SLOW_LENGTH);

    (void)state;
    assert_ok_body(&t.a[0], SLOW_BODY);
    assert_ok_body(&t.a[1], SLOW_BODY);
    assert_reused(&t);
    reset_results(NULL);
    t = deliver_two(M_SLOW_CHUNKED);
    assert_ok_body(&t.a[0], SLOW_BODY);
    assert_ok_body(&t.a[1], SLOW_BODY);
    assert_reused(&t);
}

/* The job's deadline covers reading: a response still trickling in when it passes is cut. */
static void test_timeout_while_reading(void **state)
{
    struct srv *s = srv_start(M_SLOW_LENGTH); /* over 80 bytes, a millisecond or more each */
    struct vh_engine *e = engine_dev();
    struct vh_attempt a;
    char url[128];

    (void)state;
    srv_url(s, url, sizeof(url));
    a = deliver_one(e, url, 30);
    assert_int_equal(a.result, VH_ATTEMPT_TIMEOUT);
    assert_string_equal(a.error, "no complete response within 30 ms");
    assert_true(a.duration_ms >= 29);
    assert_int_equal(srv_requests(s), 1);
    vh_engine_free(e);
    srv_stop(s);
}

/*
 * An answer that keeps coming without growing its body (trailer lines, interim answers) is
 * read up to a bound of its own, not as long as it comes: the engine thread reading it
 * would hold every other endpoint, and the attempt, past its timeout. A 200 whose body
 * came whole is judged by its status, as a body over its bound is; endless interim answers
 * are a protocol failure. The timeout here is far away: only the bound ends them.
 */
static void test_endless_answer_is_bounded(void **state)
{
    struct srv *s = srv_start(M_FLOOD_TRAILERS);
    struct vh_engine *e = engine_dev();
    struct vh_attempt a;
    char url[128];

    (void)state;
    srv_url(s, url, sizeof(url));
    a = deliver_one(e, url, 600000);
    assert_int_equal(a.result, VH_ATTEMPT_OK);
    assert_int_equal(a.http_status, 200);
    assert_string_equal(a.response_head, "ok");
    assert_true(a.duration_ms < FLOOD_MS);
    srv_stop(s);

    reset_results(NULL);
    s = srv_start(M_FLOOD_INTERIM);
    srv_url(s, url, sizeof(url));
    a = deliver_one(e, url, 600000);
    assert_int_equal(a.result, VH_ATTEMPT_PROTOCOL);
    assert_int_equal(a.http_status, 0);
    assert_string_equal(a.error, "no final response in the first 1 MiB");
    assert_true(a.duration_ms < FLOOD_MS);
    vh_engine_free(e);
    srv_stop(s);
}

/*
 * A job still queued at its start-by time is not started: reported interrupted (no attempt
 * used), nothing sent. One started in time goes out as usual. The sender sets it so that no
 * attempt outlasts its claim's lease.
 */
static void test_start_by_time_passed_is_not_started(void **state)
{
    struct srv *s = srv_start(M_OK);
    struct vh_engine *e = engine_dev();
    struct vh_error err = VH_ERROR_INIT;
    struct vh_delivery_job j;
    struct vh_attempt a;
    char url[128];
    int before;

    (void)state;
    srv_url(s, url, sizeof(url));
    before = total_now();
    j = job_for(url, NULL, 1000);
    j.start_by_ms = vh_time_now_ms() - 1;
    if (vh_engine_submit(e, &j, on_done, &R.slots[0], &err) != 0)
        fail_msg("vh_engine_submit: %s", err.msg);
    assert_true(wait_total(before + 1, WAIT_MS));
    a = R.slots[0].a;
    assert_int_equal(a.result, VH_ATTEMPT_INTERRUPTED);
    assert_false(vh_attempt_result_counts(a.result));
    assert_string_equal(a.error, "not started: it waited in the queue past its start-by time");
    assert_int_equal(srv_accepts(s), 0);

    before = total_now();
    j.start_by_ms = vh_time_now_ms() + 60000;
    if (vh_engine_submit(e, &j, on_done, &R.slots[0], &err) != 0)
        fail_msg("vh_engine_submit: %s", err.msg);
    assert_true(wait_total(before + 1, WAIT_MS));
    assert_int_equal(R.slots[0].a.result, VH_ATTEMPT_OK);
    assert_int_equal(srv_requests(s), 1);
    vh_engine_free(e);
    srv_stop(s);
}

/*
 * A server that answers on the request's head (413 or 401 before reading a large body) is
 * judged by its answer, whether it then waits with the body unread or closes: the engine
 * reads while it sends. Before, the first was a timeout and the second a reset. The
 * connection, with the request half sent, is not used again.
 */
static void test_early_answer_while_sending(void **state)
{
    enum mode modes[2] = {M_EARLY_HOLD, M_EARLY_CLOSE};
    size_t big = 8 * 1024 * 1024; /* more than a socket buffers (tcp_wmem: 4 MiB at most) */
    char *body = malloc(big);
    int i;

    (void)state;
    assert_non_null(body);
    memset(body, 'b', big);
    for (i = 0; i < 2; i++) {
        struct srv *s = srv_start(modes[i]);
        struct vh_engine *e = engine_dev();
        struct vh_attempt a;
        char url[128];
        int n;

        srv_url(s, url, sizeof(url));
        for (n = 1; n <= 2; n++) {
            a = deliver_body(e, url, body, big, 5000);
            if (a.result != VH_ATTEMPT_HTTP_STATUS || a.http_status != 413)
                fail_msg("mode %d, request %d: got %s (%d): %s", (int)modes[i], n,
                         vh_attempt_result_name(a.result), a.http_status, a.error);
            assert_string_equal(a.response_head, "too long");
            assert_false(a.reused_connection);
        }
        assert_int_equal(srv_accepts(s), 2);
        vh_engine_free(e);
        srv_stop(s);
    }
    free(body);
}

/*
 * A request larger than the socket takes at once goes out over several turns, the engine
 * waiting for room to write between them; the whole body arrives, and the connection then
 * carries the next request.
 */
static void test_large_request_goes_out_in_turns(void **state)
{
    size_t big = 8 * 1024 * 1024; /* more than a socket buffers (tcp_wmem: 4 MiB at most) */
    char *body = malloc(big), want[32];
    struct srv *s = srv_start(M_COUNT_BODY);
    struct vh_engine *e = engine_dev();
    struct vh_attempt a;
    char url[128];
    size_t i;
    int n;

    (void)state;
    assert_non_null(body);
    for (i = 0; i < big; i++)
        body[i] = (char)('a' + i % 26);
    snprintf(want, sizeof(want), "%zu", big);
    srv_url(s, url, sizeof(url));
    for (n = 1; n <= 2; n++) {
        a = deliver_body(e, url, body, big, 10000);
        assert_ok_body(&a, want);
        assert_int_equal(a.reused_connection, n == 2);
    }
    assert_int_equal(srv_accepts(s), 1);
    assert_int_equal(srv_requests(s), 2);
    vh_engine_free(e);
    srv_stop(s);
    free(body);
}

/*
 * A body over VH_ATTEMPT_READ_MAX is cut, and its connection closed, whether the server sent
 * all of it or stopped just past the bound: a server left holding the rest (and answering
 * the next request on that connection) never gets another request there.
 */
static void test_body_over_bound_ends_connection(void **state)
{
    enum mode modes[2] = {M_OVER_BOUND_WHOLE, M_OVER_BOUND_CUT};
    struct two t;
    size_t i;

    (void)state;
    for (i = 0; i < 2; i++) {
        reset_results(NULL);
        t = deliver_two(modes[i]);
        if (t.a[0].result != VH_ATTEMPT_OK)
            fail_msg("mode %d: got %s: %s", (int)modes[i], vh_attempt_result_name(t.a[0].result),
                     t.a[0].error);
        assert_int_equal(t.a[0].http_status, 200);
        assert_int_equal(t.a[0].response_read, VH_ATTEMPT_READ_MAX);
        assert_int_equal(t.a[0].response_len, VH_ATTEMPT_HEAD_MAX);
        assert_int_equal(t.a[0].response_head[0], 'y');
        assert_int_equal(t.a[1].result, VH_ATTEMPT_OK);
        assert_false(t.a[1].reused_connection);
        assert_int_equal(t.accepts, 2);
        assert_int_equal(t.requests, 2);
    }
}

/* ---- safety ---------------------------------------------------------------------------------- */

static void test_private_destination_blocked(void **state)
{
    struct srv *s = srv_start(M_OK);
    struct vh_engine *e = engine_with(true, false, NULL, 8);
    char url[128];
    struct vh_attempt a;

    (void)state;
    srv_url(s, url, sizeof(url));
    a = deliver_one(e, url, 0);
    assert_int_equal(a.result, VH_ATTEMPT_BLOCKED);
    assert_non_null(strstr(a.error, "not a public address"));
    /* The error is the partner's to read: the address (ours) goes to the log only. */
    assert_null(strstr(a.error, "127.0.0.1"));
    assert_int_equal(a.http_status, 0);

    /* A name that resolves to loopback is caught at connect time too. */
    reset_results(NULL);
    snprintf(url, sizeof(url), "http://localhost:%d/", s->port);
    a = deliver_one(e, url, 0);
    assert_int_equal(a.result, VH_ATTEMPT_BLOCKED);
    assert_null(strstr(a.error, "127.0.0.1"));
    assert_null(strstr(a.error, "::1"));

    reset_results(NULL);
    snprintf(url, sizeof(url), "http://[::ffff:127.0.0.1]:%d/", s->port);
    a = deliver_one(e, url, 0);
    assert_int_equal(a.result, VH_ATTEMPT_BLOCKED);

    vh_engine_free(e);
    assert_int_equal(srv_accepts(s), 0);
    srv_stop(s);
}

static void test_scheme_rules(void **state)
{
    struct srv *s = srv_start(M_OK);
    struct vh_engine *e = engine_with(false, true, NULL, 8);
    char url[128];
    struct vh_attempt a;

    (void)state;
    srv_url(s, url, sizeof(url));
    a = deliver_one(e, url, 0); /* http:// without allow_http */
    assert_int_equal(a.result, VH_ATTEMPT_BLOCKED);
    assert_non_null(strstr(a.error, "https://"));
    reset_results(NULL);
    a = deliver_one(e, "ftp://127.0.0.1/x", 0);
    assert_int_equal(a.result, VH_ATTEMPT_BLOCKED);
    vh_engine_free(e);

    e = engine_dev();
    reset_results(NULL);
    a = deliver_one(e, "file:///etc/passwd", 0);
    assert_int_equal(a.result, VH_ATTEMPT_BLOCKED);
    reset_results(NULL);
    a = deliver_one(e, "gopher://127.0.0.1/", 0);
    assert_int_equal(a.result, VH_ATTEMPT_BLOCKED);
    vh_engine_free(e);
    assert_int_equal(srv_accepts(s), 0);
    srv_stop(s);
}

static void test_submit_rejects(void **state)
{
    struct vh_engine *e = engine_dev();
    struct vh_delivery_job j;
    struct vh_error err = VH_ERROR_INIT;
    char long_url[VH_ENGINE_URL_MAX + 16];

    (void)state;
    j = job_for("http://127.0.0.1:1/", NULL, 0);
    j.event_id = NULL;
    assert_int_equal(vh_engine_submit(e, &j, on_done, &R.slots[0], &err), VH_EINVAL);
    j = job_for("http://127.0.0.1:1/", NULL, 0);
    j.event_id = "id\r\nX-Injected: 1";
    assert_int_equal(vh_engine_submit(e, &j, on_done, &R.slots[0], NULL), VH_EINVAL);
    j = job_for("http://127.0.0.1:1/a b", NULL, 0);
    assert_int_equal(vh_engine_submit(e, &j, on_done, &R.slots[0], NULL), VH_EINVAL);
    memset(long_url, 'a', sizeof(long_url) - 1);
    long_url[sizeof(long_url) - 1] = '\0';
    j = job_for(long_url, NULL, 0);
    assert_int_equal(vh_engine_submit(e, &j, on_done, &R.slots[0], NULL), VH_EINVAL);
    j = job_for("http://127.0.0.1:1/", NULL, 0);
    j.secret_len = 0;
    assert_int_equal(vh_engine_submit(e, &j, on_done, &R.slots[0], NULL), VH_EINVAL);
    j = job_for("http://127.0.0.1:1/", NULL, 0);
    j.attempt = 0;
    assert_int_equal(vh_engine_submit(e, &j, on_done, &R.slots[0], NULL), VH_EINVAL);
    j = job_for("http://127.0.0.1:1/", NULL, -1);
    assert_int_equal(vh_engine_submit(e, &j, on_done, &R.slots[0], NULL), VH_EINVAL);
    j = job_for("http://127.0.0.1:1/", NULL, 0);
    assert_int_equal(vh_engine_submit(e, &j, NULL, NULL, NULL), VH_EINVAL);
    assert_int_equal(vh_engine_in_flight(e), 0);
    vh_engine_free(e);
    assert_int_equal(total_now(), 0);
}

static void test_config_rejects(void **state)
{
    struct vh_engine_config cfg;
    struct vh_engine *e = (struct vh_engine *)&cfg; /* must stay untouched */
    struct vh_error err = VH_ERROR_INIT, idle_err = VH_ERROR_INIT;

    (void)state;
    vh_engine_config_init(&cfg);
    cfg.max_per_endpoint = 0;
    assert_int_equal(vh_engine_new(&cfg, &e, NULL), VH_EINVAL);
    vh_engine_config_init(&cfg);
    cfg.timeout_ms = 0;
    assert_int_equal(vh_engine_new(&cfg, &e, NULL), VH_EINVAL);
    vh_engine_config_init(&cfg);
    cfg.idle_max_ms = VH_ENGINE_IDLE_MAX_MS_MIN - 1;
    assert_int_equal(vh_engine_new(&cfg, &e, &idle_err), VH_EINVAL);
    assert_non_null(strstr(idle_err.msg, "idle_max_ms"));
    vh_engine_config_init(&cfg);
    cfg.idle_max_ms = VH_ENGINE_IDLE_MAX_MS_MAX + 1;
    assert_int_equal(vh_engine_new(&cfg, &e, NULL), VH_EINVAL);
    vh_engine_config_init(&cfg);
    cfg.ca_file = "/nonexistent/ca.pem";
    assert_int_equal(vh_engine_new(&cfg, &e, &err), VH_EIO);
    assert_non_null(strstr(err.msg, "/nonexistent/ca.pem"));
    assert_ptr_equal(e, (struct vh_engine *)&cfg);
}

/* ---- concurrency, fairness, shutdown --------------------------------------------------------- */

/* A dead endpoint holding all its slots does not hold up a healthy one. */
static void test_hung_endpoint_does_not_block_others(void **state)
{
    struct srv *hung = srv_start(M_HOLD);
    struct srv *ok = srv_start(M_OK);
    struct vh_engine *e = engine_with(true, true, NULL, 2);
    char hung_url[128], ok_url[128];
    int i;

    (void)state;
    srv_url(hung, hung_url, sizeof(hung_url));
    srv_url(ok, ok_url, sizeof(ok_url));
    for (i = 0; i < 6; i++)
        submit(e, i, hung_url, "ep-hung", 600000);
    assert_true(srv_wait_requests(hung, 2, WAIT_MS)); /* its two slots are taken */
    for (i = 6; i < 12; i++)
        submit(e, i, ok_url, "ep-ok", 0);
    assert_true(wait_total(6, WAIT_MS));
    pthread_mutex_lock(&R.mu);
    for (i = 0; i < 6; i++)
        assert_int_equal(R.slots[i].calls, 0);
    for (i = 6; i < 12; i++) {
        assert_int_equal(R.slots[i].calls, 1);
        assert_int_equal(R.slots[i].a.result, VH_ATTEMPT_OK);
    }
    pthread_mutex_unlock(&R.mu);
    /* The cap held: two connections, two requests, the other four jobs still queued. */
    assert_int_equal(srv_accepts(hung), 2);
    assert_int_equal(srv_requests(hung), 2);
    assert_int_equal(vh_engine_in_flight(e), 6);

    assert_int_equal(vh_engine_stop(e, 0, NULL), 0);
    for (i = 0; i < 6; i++) {
        assert_int_equal(R.slots[i].calls, 1);
        assert_int_equal(R.slots[i].a.result, VH_ATTEMPT_INTERRUPTED);
        assert_false(vh_attempt_result_counts(R.slots[i].a.result));
    }
    assert_int_equal(R.total, 12);
    assert_int_equal(vh_engine_in_flight(e), 0);
    vh_engine_free(e);
    srv_stop(hung);
    srv_stop(ok);
}

/* A copy of the callbacks' results, so a failed assertion leaves R.mu unlocked. */
static void snapshot(struct slot out[N_SLOTS])
{
    pthread_mutex_lock(&R.mu);
    memcpy(out, R.slots, sizeof(R.slots));
    pthread_mutex_unlock(&R.mu);
}

/*
 * Dropping an endpoint takes its waiting jobs back, reported interrupted before the call
 * returns and never sent; its attempts in progress, and other endpoints' jobs, go on.
 */
static void test_drop_endpoint_interrupts_its_waiting_jobs(void **state)
{
    struct srv *s = srv_start(M_HOLD);
    struct vh_engine *e = engine_with(true, true, NULL, 2);
    struct vh_error err = VH_ERROR_INIT;
    struct slot got[N_SLOTS];
    char url[128];
    int i;

    (void)state;
    srv_url(s, url, sizeof(url));
    for (i = 0; i < 6; i++)
        submit(e, i, url, "ep-a", 600000); /* two start, four wait */
    for (i = 10; i < 13; i++)
        submit(e, i, url, "ep-b", 600000); /* two start, one waits */
    assert_true(srv_wait_requests(s, 4, WAIT_MS));
    assert_int_equal(vh_engine_drop_endpoint(e, "ep-gone", &err), 0); /* nothing of it */
    assert_int_equal(total_now(), 0);

    assert_int_equal(vh_engine_drop_endpoint(e, "ep-a", &err), 0);
    /* Returned: the four waiting jobs of ep-a are reported, no other. */
    snapshot(got);
    for (i = 0; i < 2; i++)
        assert_int_equal(got[i].calls, 0);
    for (i = 2; i < 6; i++) {
        assert_int_equal(got[i].calls, 1);
        assert_int_equal(got[i].a.result, VH_ATTEMPT_INTERRUPTED);
        assert_false(vh_attempt_result_counts(got[i].a.result));
        assert_int_equal(got[i].a.http_status, 0);
        assert_string_equal(got[i].a.error,
                            "not started: its endpoint changed while it waited in the queue");
    }
    for (i = 10; i < 13; i++)
        assert_int_equal(got[i].calls, 0);
    assert_int_equal(total_now(), 4);
    assert_int_equal(vh_engine_in_flight(e), 5);

    /* The attempts on the wire finish normally; nothing dropped reaches the server. */
    srv_release(s);
    assert_true(wait_total(9, WAIT_MS));
    snapshot(got);
    for (i = 0; i < 2; i++)
        assert_int_equal(got[i].a.result, VH_ATTEMPT_OK);
    for (i = 10; i < 13; i++)
        assert_int_equal(got[i].a.result, VH_ATTEMPT_OK);
    assert_int_equal(srv_requests(s), 5); /* two of ep-a, three of ep-b */

    /* A job submitted after the drop is sent as usual. */
    submit(e, 20, url, "ep-a", 0);
    assert_true(wait_total(10, WAIT_MS));
    snapshot(got);
    assert_int_equal(got[20].a.result, VH_ATTEMPT_OK);
    assert_int_equal(srv_requests(s), 6);
    assert_int_equal(total_now(), 10);

    assert_int_equal(vh_engine_drop_endpoint(e, "", NULL), VH_EINVAL);
    assert_int_equal(vh_engine_stop(e, 0, NULL), 0);
    assert_int_equal(vh_engine_drop_endpoint(e, "ep-a", NULL), 0); /* stopped: nothing waits */
    vh_engine_free(e);
    srv_stop(s);
}

/*
 * Dropping with no endpoint (changes may have been missed) takes back every endpoint's
 * waiting jobs; the attempts in progress go on.
 */
static void test_drop_every_endpoint_interrupts_all_waiting_jobs(void **state)
{
    struct srv *s = srv_start(M_HOLD);
    struct vh_engine *e = engine_with(true, true, NULL, 2);
    struct vh_error err = VH_ERROR_INIT;
    struct slot got[N_SLOTS];
    char url[128];
    int i;

    (void)state;
    srv_url(s, url, sizeof(url));
    for (i = 0; i < 5; i++)
        submit(e, i, url, "ep-a", 600000); /* two start, three wait */
    for (i = 10; i < 13; i++)
        submit(e, i, url, "ep-b", 600000); /* two start, one waits */
    assert_true(srv_wait_requests(s, 4, WAIT_MS));

    assert_int_equal(vh_engine_drop_endpoint(e, NULL, &err), 0);
    snapshot(got);
    for (i = 0; i < 13; i++) {
        bool waited = (i >= 2 && i < 5) || i == 12;

        if (i >= 5 && i < 10)
            continue;
        assert_int_equal(got[i].calls, waited ? 1 : 0);
        if (!waited)
            continue;
        assert_int_equal(got[i].a.result, VH_ATTEMPT_INTERRUPTED);
        assert_false(vh_attempt_result_counts(got[i].a.result));
        assert_string_equal(
            got[i].a.error,
            "not started: its endpoint may have changed while it waited in the queue");
    }
    assert_int_equal(total_now(), 4);
    assert_int_equal(vh_engine_in_flight(e), 4);

    /* The four on the wire finish; none of the dropped reaches the server. */
    srv_release(s);
    assert_true(wait_total(8, WAIT_MS));
    snapshot(got);
    for (i = 0; i < 2; i++)
        assert_int_equal(got[i].a.result, VH_ATTEMPT_OK);
    for (i = 10; i < 12; i++)
        assert_int_equal(got[i].a.result, VH_ATTEMPT_OK);
    assert_int_equal(srv_requests(s), 4);
    assert_int_equal(vh_engine_drop_endpoint(e, NULL, &err), 0); /* nothing waits: no-op */
    assert_int_equal(total_now(), 8);
    assert_int_equal(vh_engine_stop(e, 0, NULL), 0);
    vh_engine_free(e);
    srv_stop(s);
}

/*
 * A drop waits for the engine thread, so a done callback (on that thread) may not drop: it
 * is refused with VH_ESTATE, where waiting would never end.
 */
static int drop_in_callback_rc = 1;

static void on_done_drop(void *ud, const struct vh_attempt *a)
{
    struct vh_error err = VH_ERROR_INIT;

    drop_in_callback_rc = vh_engine_drop_endpoint(chain_engine, "ep-a", &err);
    on_done(ud, a);
}

static void test_drop_from_a_callback_is_refused(void **state)
{
    struct srv *s = srv_start(M_OK);
    struct vh_engine *e = engine_dev();
    struct vh_delivery_job j;
    char url[128];

    (void)state;
    chain_engine = e;
    srv_url(s, url, sizeof(url));
    j = job_for(url, "ep-a", 0);
    assert_int_equal(vh_engine_submit(e, &j, on_done_drop, &R.slots[0], NULL), 0);
    assert_true(wait_total(1, WAIT_MS));
    assert_int_equal(drop_in_callback_rc, VH_ESTATE);
    assert_int_equal(R.slots[0].a.result, VH_ATTEMPT_OK);
    vh_engine_free(e);
    srv_stop(s);
}

static void test_stop_interrupts_each_job_once(void **state)
{
    struct srv *s = srv_start(M_HOLD);
    struct vh_engine *e = engine_with(true, true, NULL, 1);
    struct vh_delivery_job j;
    char url[128];
    int i;

    (void)state;
    srv_url(s, url, sizeof(url));
    for (i = 0; i < 3; i++)
        submit(e, i, url, NULL, 600000);
    assert_true(srv_wait_requests(s, 1, WAIT_MS)); /* one in progress, two waiting */
    assert_int_equal(vh_engine_stop(e, 0, NULL), 0);
    /* stop returned: every callback has run, exactly once. */
    for (i = 0; i < 3; i++) {
        assert_int_equal(R.slots[i].calls, 1);
        assert_int_equal(R.slots[i].a.result, VH_ATTEMPT_INTERRUPTED);
        assert_int_equal(R.slots[i].a.number, 1);
    }
    assert_int_equal(R.total, 3);
    j = job_for(url, NULL, 0);
    assert_int_equal(vh_engine_submit(e, &j, on_done, &R.slots[5], NULL), VH_ESTATE);
    assert_int_equal(vh_engine_stop(e, 0, NULL), 0); /* again: a no-op */
    vh_engine_free(e);
    assert_int_equal(R.total, 3);
    srv_stop(s);
}

struct stopper {
    struct vh_engine *e;
    int64_t grace_ms;
    int rc;
};

static void *stopper_main(void *arg)
{
    struct stopper *st = arg;

    st->rc = vh_engine_stop(st->e, st->grace_ms, NULL);
    return NULL;
}

static int probes_done, probes_bad; /* under R.mu */

static void on_probe_done(void *ud, const struct vh_attempt *a)
{
    (void)ud;
    pthread_mutex_lock(&R.mu);
    probes_done++;
    if (a->result != VH_ATTEMPT_BLOCKED && a->result != VH_ATTEMPT_INTERRUPTED)
        probes_bad++;
    pthread_cond_broadcast(&R.cv);
    pthread_mutex_unlock(&R.mu);
}

static bool wait_probes(int n, int ms)
{
    struct timespec dl = deadline_in(ms);
    bool ok;

    pthread_mutex_lock(&R.mu);
    while (probes_done < n && pthread_cond_timedwait(&R.cv, &R.mu, &dl) != ETIMEDOUT)
        ;
    ok = probes_done >= n;
    pthread_mutex_unlock(&R.mu);
    return ok;
}

/* Within the grace period, an attempt in progress finishes normally. */
static void test_stop_grace_lets_attempts_finish(void **state)
{
    struct srv *s = srv_start(M_HOLD);
    struct vh_engine *e = engine_dev();
    struct stopper st = {e, 600000, -100};
    struct vh_delivery_job j;
    pthread_t th;
    char url[128];
    int probes = 0, rc;
    int64_t deadline;

    (void)state;
    probes_done = probes_bad = 0;
    srv_url(s, url, sizeof(url));
    submit(e, 0, url, NULL, 600000);
    assert_true(srv_wait_requests(s, 1, WAIT_MS));
    assert_int_equal(pthread_create(&th, NULL, stopper_main, &st), 0);
    /*
     * The engine is stopping once a submission is refused. Probes that get in first end at
     * once: BLOCKED (their scheme) if started before the stop, INTERRUPTED if not.
     */
    j = job_for("ftp://127.0.0.1/probe", "probe", 0);
    deadline = vh_time_mono_ms() + WAIT_MS;
    for (;;) {
        assert_true(vh_time_mono_ms() < deadline);
        rc = vh_engine_submit(e, &j, on_probe_done, NULL, NULL);
        if (rc == VH_ESTATE)
            break;
        assert_int_equal(rc, 0);
        probes++;
        assert_true(wait_probes(probes, WAIT_MS));
    }
    srv_release(s);
    pthread_join(th, NULL);
    assert_int_equal(st.rc, 0);
    assert_int_equal(R.slots[0].calls, 1);
    assert_int_equal(R.slots[0].a.result, VH_ATTEMPT_OK);
    assert_int_equal(probes_done, probes);
    assert_int_equal(probes_bad, 0);
    vh_engine_free(e);
    srv_stop(s);
}

/* A callback submits the next attempt itself, as a dispatcher may. */
static void on_done_chain(void *ud, const struct vh_attempt *a)
{
    static char url[128];
    struct vh_delivery_job j;

    if (a->number == 1) {
        snprintf(url, sizeof(url), "%s", (const char *)ud);
        j = job_for(url, NULL, 0);
        j.attempt = 2;
        if (vh_engine_submit(chain_engine, &j, on_done, &R.slots[1], NULL) != 0)
            R.slots[1].calls = -100;
    }
    on_done(&R.slots[0], a);
}

static void test_callback_may_submit(void **state)
{
    struct srv *s = srv_start(M_OK);
    struct vh_engine *e = engine_dev();
    struct vh_delivery_job j;
    char url[128];

    (void)state;
    chain_engine = e;
    srv_url(s, url, sizeof(url));
    j = job_for(url, NULL, 0);
    assert_int_equal(vh_engine_submit(e, &j, on_done_chain, url, NULL), 0);
    assert_true(wait_total(2, WAIT_MS));
    assert_int_equal(R.slots[0].a.number, 1);
    assert_int_equal(R.slots[1].calls, 1);
    assert_int_equal(R.slots[1].a.number, 2);
    assert_int_equal(R.slots[1].a.result, VH_ATTEMPT_OK);
    vh_engine_free(e);
    srv_stop(s);
}

/* ---- TLS ------------------------------------------------------------------------------------- */

static struct {
    bool ready;
    char dir[256];
    char ca[300], cert[300], key[300];
} T;

static const char *const tls_files[] = {"ca.key",  "ca.pem",  "ca.srl", "srv.key",
                                        "srv.csr", "srv.pem", "ext.cnf"};

static int tls_setup(void **state)
{
    char cmd[2048], path[300];
    const char *tmp = getenv("TMPDIR");
    FILE *f;

    (void)state;
    snprintf(T.dir, sizeof(T.dir), "%s/vh-engine-tls-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(T.dir))
        return 0;
    snprintf(path, sizeof(path), "%s/ext.cnf", T.dir);
    f = fopen(path, "w");
    if (!f)
        return 0;
    fputs("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
          "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
          f);
    fclose(f);
    snprintf(cmd, sizeof(cmd),
             "(cd '%s' && "
             "openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
             "-keyout ca.key -out ca.pem -days 2 -subj /CN=vocohook-test-ca "
             "-addext basicConstraints=critical,CA:TRUE "
             "-addext keyUsage=critical,keyCertSign,cRLSign && "
             "openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
             "-keyout srv.key -out srv.csr -subj /CN=127.0.0.1 && "
             "openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
             "-out srv.pem -days 2 -extfile ext.cnf) >/dev/null 2>&1",
             T.dir);
    if (system(cmd) != 0 || system("python3 -c 'import ssl' 2>/dev/null") != 0) {
        fprintf(stderr, "test_engine: openssl or python3 unavailable, TLS tests skipped\n");
        return 0;
    }
    snprintf(T.ca, sizeof(T.ca), "%s/ca.pem", T.dir);
    snprintf(T.cert, sizeof(T.cert), "%s/srv.pem", T.dir);
    snprintf(T.key, sizeof(T.key), "%s/srv.key", T.dir);
    T.ready = true;
    return 0;
}

static int tls_teardown(void **state)
{
    char path[300];
    size_t i;

    (void)state;
    for (i = 0; T.dir[0] && i < sizeof(tls_files) / sizeof(tls_files[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", T.dir, tls_files[i]);
        unlink(path);
    }
    if (T.dir[0])
        rmdir(T.dir);
    return 0;
}

struct pyserver {
    pid_t pid;
    int in_fd; /* its stdin: closing it ends the server */
    int port;
};

static const char *script_path(char *out, size_t n)
{
    const char *src = getenv("VH_SOURCE_DIR");
    const char *file = __FILE__, *slash = strrchr(file, '/');

    if (src && *src)
        snprintf(out, n, "%s/tests/unit/deliver/https_server.py", src);
    else
        snprintf(out, n, "%.*s/https_server.py", slash ? (int)(slash - file) : 1,
                 slash ? file : ".");
    return out;
}

static struct pyserver py_start(const char *mode)
{
    struct pyserver p = {-1, -1, 0};
    posix_spawn_file_actions_t fa;
    int in[2], out[2];
    char script[1024], line[32], py[] = "python3", m[16];
    char *argv[] = {py, script, T.cert, T.key, m, NULL};
    size_t len = 0;
    int64_t deadline = vh_time_mono_ms() + WAIT_MS;

    script_path(script, sizeof(script));
    snprintf(m, sizeof(m), "%s", mode);
    assert_int_equal(pipe(in), 0);
    assert_int_equal(pipe(out), 0);
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_addclose(&fa, in[1]);
    posix_spawn_file_actions_addclose(&fa, out[0]);
    assert_int_equal(posix_spawnp(&p.pid, "python3", &fa, NULL, argv, environ), 0);
    posix_spawn_file_actions_destroy(&fa);
    close(in[0]);
    close(out[1]);
    p.in_fd = in[1];
    /* The first line is the port; wait for it, up to the deadline. */
    while (len < sizeof(line) - 1 && !memchr(line, '\n', len)) {
        struct pollfd pfd = {out[0], POLLIN, 0};
        int64_t left = deadline - vh_time_mono_ms();
        ssize_t r;

        assert_true(left > 0);
        if (poll(&pfd, 1, (int)left) <= 0)
            continue;
        r = read(out[0], line + len, sizeof(line) - 1 - len);
        assert_true(r > 0);
        len += (size_t)r;
    }
    line[len] = '\0';
    close(out[0]);
    p.port = (int)strtol(line, NULL, 10);
    assert_true(p.port > 0);
    return p;
}

static void py_stop(struct pyserver *p)
{
    close(p->in_fd);
    kill(p->pid, SIGTERM);
    waitpid(p->pid, NULL, 0);
}

static void test_tls_with_ca_file(void **state)
{
    struct pyserver p;
    struct vh_engine *e;
    struct vh_attempt a;
    char url[128];

    (void)state;
    if (!T.ready)
        skip();
    p = py_start("keep");
    e = engine_with(false, true, T.ca, 8);
    snprintf(url, sizeof(url), "https://127.0.0.1:%d/hook", p.port);
    a = deliver_one(e, url, 0);
    if (a.result != VH_ATTEMPT_OK)
        fail_msg("got %s: %s", vh_attempt_result_name(a.result), a.error);
    assert_int_equal(a.http_status, 200);
    assert_string_equal(a.response_head, "ok");
    reset_results(NULL);
    a = deliver_one(e, url, 0);
    assert_int_equal(a.result, VH_ATTEMPT_OK);
    assert_true(a.reused_connection);
    /* The certificate names 127.0.0.1 and localhost; any other name fails the check. */
    vh_engine_free(e);
    py_stop(&p);
}

static void test_tls_without_ca_file(void **state)
{
    struct pyserver p;
    struct vh_engine *e;
    struct vh_attempt a;
    char url[128];

    (void)state;
    if (!T.ready)
        skip();
    p = py_start("keep");
    e = engine_with(false, true, NULL, 8); /* the system store does not know our CA */
    snprintf(url, sizeof(url), "https://127.0.0.1:%d/hook", p.port);
    a = deliver_one(e, url, 0);
    assert_int_equal(a.result, VH_ATTEMPT_TLS);
    assert_int_equal(a.http_status, 0);
    assert_string_not_equal(a.error, "");
    vh_engine_free(e);
    py_stop(&p);
}

static void test_tls_fresh_connections(void **state)
{
    struct pyserver p;
    struct vh_engine *e;
    struct vh_attempt a;
    char url[128];
    int i;

    (void)state;
    if (!T.ready)
        skip();
    p = py_start("close"); /* every answer closes its connection */
    e = engine_with(false, true, T.ca, 8);
    snprintf(url, sizeof(url), "https://127.0.0.1:%d/hook", p.port);
    for (i = 0; i < 3; i++) {
        reset_results(NULL);
        a = deliver_one(e, url, 0);
        assert_int_equal(a.result, VH_ATTEMPT_OK);
        assert_false(a.reused_connection);
    }
    vh_engine_free(e);
    py_stop(&p);
}

/*
 * An answer, then a second TLS record nobody asked for, in one flush (found in review): a
 * read takes one record, so the second waited on the connection, which the next job took
 * at once, without a poll between, and read as its own answer (a 299 recorded for a
 * request the endpoint would have answered 500). It must go out on a new connection.
 */
static void test_tls_bytes_after_an_answer_close_the_connection(void **state)
{
    struct pyserver p;
    struct vh_engine *e;
    char url[128];

    (void)state;
    if (!T.ready)
        skip();
    p = py_start("trailing");
    e = engine_with(false, true, T.ca, 1); /* one at a time: the second waits for the first */
    snprintf(url, sizeof(url), "https://127.0.0.1:%d/hook", p.port);
    submit(e, 0, url, NULL, 0);
    submit(e, 1, url, NULL, 0);
    assert_true(wait_total(2, WAIT_MS));
    assert_int_equal(R.slots[0].a.http_status, 200);
    assert_int_equal(R.slots[1].a.http_status, 200);
    assert_false(R.slots[1].a.reused_connection);
    vh_engine_free(e);
    py_stop(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_success_headers_and_signature, reset_results),
        cmocka_unit_test_setup(test_connection_reused, reset_results),
        cmocka_unit_test_setup(test_reused_handle_starts_clean, reset_results),
        cmocka_unit_test_setup(test_idle_connections_bounded, reset_results),
        cmocka_unit_test_setup(test_status_500_keeps_first_kib, reset_results),
        cmocka_unit_test_setup(test_redirect_not_followed, reset_results),
        cmocka_unit_test_setup(test_connection_refused, reset_results),
        cmocka_unit_test_setup(test_timeout, reset_results),
        cmocka_unit_test_setup(test_close_mid_response, reset_results),
        cmocka_unit_test_setup(test_garbage_is_protocol, reset_results),
        cmocka_unit_test_setup(test_unresolvable_host, reset_results),
        cmocka_unit_test_setup(test_response_body_is_bounded, reset_results),
        cmocka_unit_test_setup(test_chunked_body_is_dechunked, reset_results),
        cmocka_unit_test_setup(test_chunked_with_length_not_reused, reset_results),
        cmocka_unit_test_setup(test_close_delimited_body, reset_results),
        cmocka_unit_test_setup(test_connection_close_not_reused, reset_results),
        cmocka_unit_test_setup(test_http10_keep_alive_rules, reset_results),
        cmocka_unit_test_setup(test_server_closes_idle_connection, reset_results),
        cmocka_unit_test_setup(test_idle_connections_checked_together, reset_results),
        cmocka_unit_test_setup(test_libcurl_never_closes_a_connection_in_use, reset_results),
        cmocka_unit_test_setup(test_idle_connection_closed_after_idle_max, reset_results),
        cmocka_unit_test_setup(test_reused_connection_failure_is_retried, reset_results),
        cmocka_unit_test_setup(test_retry_is_made_once, reset_results),
        cmocka_unit_test_setup(test_fresh_connection_failure_not_retried, reset_results),
        cmocka_unit_test_setup(test_interim_responses_skipped, reset_results),
        cmocka_unit_test_setup(test_switching_protocols_is_protocol, reset_results),
        cmocka_unit_test_setup(test_two_content_lengths_is_protocol, reset_results),
        cmocka_unit_test_setup(test_response_head_bound, reset_results),
        cmocka_unit_test_setup(test_bytes_after_response_end_connection, reset_results),
        cmocka_unit_test_setup(test_response_byte_by_byte, reset_results),
        cmocka_unit_test_setup(test_body_over_bound_ends_connection, reset_results),
        cmocka_unit_test_setup(test_timeout_while_reading, reset_results),
        cmocka_unit_test_setup(test_endless_answer_is_bounded, reset_results),
        cmocka_unit_test_setup(test_early_answer_while_sending, reset_results),
        cmocka_unit_test_setup(test_large_request_goes_out_in_turns, reset_results),
        cmocka_unit_test_setup(test_start_by_time_passed_is_not_started, reset_results),
        cmocka_unit_test_setup(test_private_destination_blocked, reset_results),
        cmocka_unit_test_setup(test_scheme_rules, reset_results),
        cmocka_unit_test_setup(test_submit_rejects, reset_results),
        cmocka_unit_test_setup(test_config_rejects, reset_results),
        cmocka_unit_test_setup(test_hung_endpoint_does_not_block_others, reset_results),
        cmocka_unit_test_setup(test_drop_endpoint_interrupts_its_waiting_jobs, reset_results),
        cmocka_unit_test_setup(test_drop_every_endpoint_interrupts_all_waiting_jobs, reset_results),
        cmocka_unit_test_setup(test_drop_from_a_callback_is_refused, reset_results),
        cmocka_unit_test_setup(test_stop_interrupts_each_job_once, reset_results),
        cmocka_unit_test_setup(test_stop_grace_lets_attempts_finish, reset_results),
        cmocka_unit_test_setup(test_callback_may_submit, reset_results),
        cmocka_unit_test_setup(test_tls_with_ca_file, reset_results),
        cmocka_unit_test_setup(test_tls_without_ca_file, reset_results),
        cmocka_unit_test_setup(test_tls_fresh_connections, reset_results),
        cmocka_unit_test_setup(test_tls_bytes_after_an_answer_close_the_connection, reset_results),
    };

    signal(SIGPIPE, SIG_IGN);
    pthread_mutex_init(&R.mu, NULL);
    cond_init_mono(&R.cv);
    return cmocka_run_group_tests(tests, tls_setup, tls_teardown);
}
