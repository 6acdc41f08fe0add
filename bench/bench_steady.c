/*
 * The steady-load benchmark of `make bench` (scenario 4, "steady"): POSTs sessions to
 * POST /internal/v1/sessions at a fixed rate, receives the webhooks the daemon sends for
 * them, and reports how long each session took from its ingest request to its delivery.
 *
 * usage: bench_steady --ingest PORT --listen PORT --partner ID --template FILE
 *                     [--rate N] [--seconds S] [--prefix P] [--conns N] [--wait S]
 *                     [--expect CODE] [--latencies FILE] [--timeline FILE]
 *
 * The ingest token is read from the environment (BENCH_STEADY_TOKEN), never from argv.
 * FILE is a bare session object whose text holds `__SID__` once, inside the session_id
 * string; session i gets the id `<P><i>` (P defaults to "st-"). The daemon's endpoint must
 * point at http://127.0.0.1:<--listen PORT>/.
 *
 * Load: open loop. Session i is due at t0 + i / rate; a timerfd armed at the next due
 * time wakes the loop, and the due session goes out on an idle keep-alive connection, or on
 * a new one when every connection still waits for its answer, so a slow answer never delays
 * the next send. At most MAX_CLIENTS connections: 256 answers outstanding at 1 000/s means
 * the daemon is a quarter of a second behind, and more connections only move the queue
 * into its accept backlog (with 1 000, near its --max-connections of 1 024, some requests
 * waited over a minute there). How late each send was against its schedule is reported
 * (send_lag_ms), with the number of sessions that had to wait for a connection (capped)
 * and the latency counted from the due time instead of the send (latency_from_due_ms).
 *
 * Receiver: HTTP/1.1 with keep-alive on 127.0.0.1; each request is read whole
 * (Content-Length), the first "session_id" string of its body names the session, and the
 * answer is an immediate 204. X-Webhook-Id carries the event id, which the sender learns
 * only from the 202, so the body's session_id is the key.
 *
 * Both sides run in this one thread, on one poll loop: a send or a receive is a few
 * microseconds of work, so at 1 000 sessions/s the loop is idle almost all the time and
 * neither side waits for the other (run with --ingest equal to --listen and --expect 204
 * to measure the harness alone: the load generator then POSTs straight to its receiver).
 * There is no lock, no thread handoff and no clock other than CLOCK_MONOTONIC of this
 * process. Latency = arrival (the request completely read) - send (the first byte of the
 * ingest request written).
 *
 * Prints one JSON line. With --latencies FILE, also writes every latency, sorted, as
 * `fraction latency_ms` lines (a percentile plot's data); with --timeline FILE, one line
 * per session in send order, `send_s answer_ms latency_ms` (send time from the first due
 * time; -1 for what never came), to see whether latency grows during a run. Exit 0 when
 * every session was answered with the expected status (202) and arrived, 1 otherwise (the
 * JSON is still printed), 2 on a usage error, 3 on a system error.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>

#include <vocohook/vocohook.h>

#include "bench_common.h"
#include "core/banned.h"

#define PLACEHOLDER "__SID__"
#define IN_MAX      (256 * 1024) /* one request or answer, headers included */
#define OUT_MAX     (4 * 1024 * 1024)
#define MAX_CLIENTS 256 /* ingest connections, opened as needed */
#define MAX_CONNS   (MAX_CLIENTS + 64)
#define FD_SPARE    16 /* descriptors besides the connections */
#define NS_PER_S    1000000000LL
#define NS_PER_MS   1000000.0

enum conn_kind {
    CONN_CLIENT, /* ours, to the ingest API */
    CONN_RECV    /* the daemon's, to our receiver */
};

struct conn {
    enum conn_kind kind;
    int fd;
    char *in; /* IN_MAX bytes */
    size_t in_len;
    struct vh_buf out; /* bytes still to write, from out_off */
    size_t out_off;
    long sid;        /* client: the session whose answer is awaited, or -1 */
    bool connecting; /* client: the non-blocking connect has not finished */
    bool continued;  /* receiver: 100 Continue sent for the request being read */
    bool dead;
};

/* One parsed HTTP message head. */
struct msg {
    size_t head_len; /* 0 until the blank line has been read */
    size_t body_len;
    int status; /* answers: the status code */
    bool expect_continue;
    bool close;
};

struct run {
    /* Parameters. */
    struct sockaddr_in ingest;
    const char *token;
    const char *prefix;
    struct vh_buf head; /* the ingest body before the session id */
    struct vh_buf tail; /* and after it */
    long count;
    double rate;
    int expect;
    int64_t wait_ns;
    /* State. */
    int listen_fd;
    int timer_fd;
    struct conn *conns[MAX_CONNS];
    size_t nconns;
    size_t nclients;
    long next;          /* the next session to send */
    long armed;         /* the session the timer is armed for, or -1 */
    size_t max_clients; /* MAX_CLIENTS, or less when the descriptor limit is lower */
    bool blocked;       /* every client connection is busy and no more may be opened */
    long blocked_at;    /* the last session that found no connection */
    int64_t t0;         /* session i is due at t0 + i / rate */
    int64_t *sent;      /* per session, CLOCK_MONOTONIC ns; 0 = not yet */
    int64_t *acked;
    int64_t *arrived;
    long n_acked, n_bad_status, n_failed, n_arrived, n_dup, n_unknown, n_capped;
    long opened, accepted;
    char first_error[256];
};

static int usage(void)
{
    fputs("usage: bench_steady --ingest PORT --listen PORT --partner ID --template FILE\n"
          "                    [--rate N] [--seconds S] [--prefix P] [--conns N] [--wait S]\n"
          "                    [--expect CODE] [--latencies FILE] [--timeline FILE]\n"
          "(the ingest token comes from BENCH_STEADY_TOKEN)\n",
          stderr);
    return 2;
}

static int64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * NS_PER_S + ts.tv_nsec;
}

static int64_t due_ns(const struct run *r, long i)
{
    return r->t0 + (int64_t)((double)i * (double)NS_PER_S / r->rate);
}

static void note_error(struct run *r, const char *what, const char *detail, size_t len)
{
    if (r->first_error[0])
        return;
    if (len > 160)
        len = 160;
    snprintf(r->first_error, sizeof(r->first_error), "%s: %.*s", what, (int)len, detail);
}

static const char *find_bytes(const char *hay, size_t n, const char *needle)
{
    size_t k = strlen(needle), i;

    for (i = 0; k <= n && i <= n - k; i++)
        if (hay[i] == needle[0] && memcmp(hay + i, needle, k) == 0)
            return hay + i;
    return NULL;
}

static bool header_is(const char *line, size_t len, const char *name, const char **value,
                      size_t *value_len)
{
    size_t k = strlen(name);

    if (len <= k || line[k] != ':' || strncasecmp(line, name, k) != 0)
        return false;
    line += k + 1;
    len -= k + 1;
    while (len && (*line == ' ' || *line == '\t')) {
        line++;
        len--;
    }
    *value = line;
    *value_len = len;
    return true;
}

static bool value_has(const char *v, size_t len, const char *word)
{
    size_t k = strlen(word), i;

    for (i = 0; k <= len && i <= len - k; i++)
        if (strncasecmp(v + i, word, k) == 0)
            return true;
    return false;
}

/*
 * Parses the message at the start of `p`: returns 1 when it is complete, 0 when more bytes
 * are needed (m->head_len is set once the head is complete), -1 when it is not a message
 * this program handles (chunked bodies, no Content-Length on a message with a body).
 */
static int parse_msg(const char *p, size_t n, bool is_answer, struct msg *m)
{
    const char *end = find_bytes(p, n, "\r\n\r\n");
    const char *line, *eol, *v;
    size_t vlen;
    bool has_length = false;

    memset(m, 0, sizeof(*m));
    if (!end)
        return n >= IN_MAX ? -1 : 0;
    if (is_answer) {
        if (end - p < 12 || strncmp(p, "HTTP/1.", 7) != 0)
            return -1;
        m->status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
    }
    for (line = p; line < end; line = eol + 2) {
        eol = find_bytes(line, (size_t)(end + 2 - line), "\r\n");
        if (header_is(line, (size_t)(eol - line), "content-length", &v, &vlen)) {
            char num[24];

            if (vlen == 0 || vlen >= sizeof(num))
                return -1;
            memcpy(num, v, vlen);
            num[vlen] = '\0';
            m->body_len = strtoul(num, NULL, 10);
            has_length = true;
        } else if (header_is(line, (size_t)(eol - line), "transfer-encoding", &v, &vlen)) {
            if (value_has(v, vlen, "chunked"))
                return -1;
        } else if (header_is(line, (size_t)(eol - line), "expect", &v, &vlen)) {
            m->expect_continue = value_has(v, vlen, "100-continue");
        } else if (header_is(line, (size_t)(eol - line), "connection", &v, &vlen)) {
            m->close = value_has(v, vlen, "close");
        }
    }
    if (is_answer && !has_length && m->status != 204 && m->status != 304 && m->status >= 200)
        return -1;
    m->head_len = (size_t)(end - p) + 4;
    if (m->head_len + m->body_len > IN_MAX)
        return -1;
    return n >= m->head_len + m->body_len ? 1 : 0;
}

/* The session number in the first "session_id" string of a body, or -1. */
static long session_of(const struct run *r, const char *body, size_t len)
{
    const char *p = find_bytes(body, len, "\"session_id\"");
    const char *end = body + len;
    size_t k = strlen(r->prefix);
    long n = 0;

    if (!p)
        return -1;
    p += strlen("\"session_id\"");
    while (p < end && (*p == ' ' || *p == ':'))
        p++;
    if (p >= end || *p != '"' || (size_t)(end - p - 1) < k || memcmp(p + 1, r->prefix, k) != 0)
        return -1;
    for (p += 1 + k; p < end && *p >= '0' && *p <= '9'; p++) {
        n = n * 10 + (*p - '0');
        if (n >= r->count)
            return -1;
    }
    return p < end && *p == '"' ? n : -1;
}

/* A non-blocking socket call that has nothing to do now (or was interrupted). */
static bool is_again(int e)
{
#if EWOULDBLOCK != EAGAIN
    if (e == EWOULDBLOCK)
        return true;
#endif
    return e == EAGAIN || e == EINTR;
}

static int set_nonblocking(int fd)
{
    int one = 1, flags = fcntl(fd, F_GETFL);

    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
        return -1;
    /* Small writes go out at once: latency is what is measured. */
    return setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static struct conn *conn_add(struct run *r, enum conn_kind kind, int fd)
{
    struct conn *c;

    if (r->nconns == MAX_CONNS)
        return NULL;
    c = vh_malloc(sizeof(*c));
    if (!c)
        return NULL;
    memset(c, 0, sizeof(*c));
    c->in = vh_malloc(IN_MAX);
    if (!c->in) {
        vh_free(c);
        return NULL;
    }
    c->kind = kind;
    c->fd = fd;
    c->sid = -1;
    vh_buf_init(&c->out, OUT_MAX);
    r->conns[r->nconns++] = c;
    if (kind == CONN_CLIENT)
        r->nclients++;
    return c;
}

static void conn_free(struct conn *c)
{
    if (!c)
        return;
    if (c->fd >= 0)
        close(c->fd);
    vh_buf_release(&c->out);
    vh_free(c->in);
    vh_free(c);
}

/* Closes the dead connections; a session whose answer was still awaited has failed. */
static void reap(struct run *r)
{
    size_t i = 0;

    while (i < r->nconns) {
        struct conn *c = r->conns[i];

        if (!c->dead) {
            i++;
            continue;
        }
        if (c->kind == CONN_CLIENT) {
            if (c->sid >= 0) {
                r->n_failed++;
                note_error(r, "ingest", "connection closed before the answer", 35);
            }
            r->nclients--;
            r->blocked = false;
        }
        conn_free(c);
        r->conns[i] = r->conns[--r->nconns];
    }
}

static int conn_flush(struct run *r, struct conn *c)
{
    ssize_t n;

    while (c->out_off < c->out.len) {
        if (c->kind == CONN_CLIENT && c->out_off == 0 && c->sid >= 0 && !r->sent[c->sid])
            r->sent[c->sid] = now_ns();
        n = send(c->fd, c->out.data + c->out_off, c->out.len - c->out_off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (!is_again(errno))
                c->dead = true;
            return 0;
        }
        c->out_off += (size_t)n;
    }
    vh_buf_reset(&c->out);
    c->out_off = 0;
    return 0;
}

static struct conn *client_open(struct run *r)
{
    struct conn *c;
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    if (fd < 0)
        return NULL;
    if (set_nonblocking(fd) < 0 ||
        (connect(fd, (const struct sockaddr *)&r->ingest, sizeof(r->ingest)) < 0 &&
         errno != EINPROGRESS)) {
        close(fd);
        return NULL;
    }
    c = conn_add(r, CONN_CLIENT, fd);
    if (!c) {
        close(fd);
        return NULL;
    }
    c->connecting = true;
    r->opened++;
    return c;
}

/* Queues session i's ingest request on c and writes what the socket takes. */
static int client_send(struct run *r, struct conn *c, long i)
{
    char id[96];
    int idlen = snprintf(id, sizeof(id), "%s%ld", r->prefix, i);

    if (vh_buf_addf(&c->out,
                    "POST /internal/v1/sessions HTTP/1.1\r\nHost: 127.0.0.1:%u\r\n"
                    "Authorization: Bearer %s\r\nContent-Type: application/json\r\n"
                    "Content-Length: %zu\r\n\r\n",
                    (unsigned)ntohs(r->ingest.sin_port), r->token,
                    r->head.len + (size_t)idlen + r->tail.len) < 0 ||
        vh_buf_add(&c->out, r->head.data, r->head.len) < 0 ||
        vh_buf_add(&c->out, id, (size_t)idlen) < 0 ||
        vh_buf_add(&c->out, r->tail.data, r->tail.len) < 0) {
        fputs("bench_steady: out of memory\n", stderr);
        return -1;
    }
    c->sid = i;
    return c->connecting ? 0 : conn_flush(r, c);
}

static struct conn *idle_client(struct run *r)
{
    size_t i;

    for (i = 0; i < r->nconns; i++) {
        struct conn *c = r->conns[i];

        if (c->kind == CONN_CLIENT && !c->dead && c->sid < 0)
            return c;
    }
    return NULL;
}

/* Sends every session that is due by `now`. */
static int send_due(struct run *r, int64_t now)
{
    struct conn *c;

    while (r->next < r->count && due_ns(r, r->next) <= now) {
        c = idle_client(r);
        if (!c) {
            if (r->nclients >= r->max_clients) {
                if (r->blocked_at != r->next)
                    r->n_capped++;
                r->blocked_at = r->next;
                r->blocked = true;
                return 0;
            }
            c = client_open(r);
            if (!c) {
                perror("bench_steady: connect to the ingest API");
                return -1;
            }
        }
        if (client_send(r, c, r->next) < 0)
            return -1;
        r->next++;
    }
    return 0;
}

static void on_answer(struct run *r, struct conn *c, const struct msg *m, int64_t now)
{
    if (c->sid < 0) {
        note_error(r, "ingest", "an answer nobody asked for", 26);
        c->dead = true;
        return;
    }
    r->acked[c->sid] = now;
    if (m->status == r->expect) {
        r->n_acked++;
    } else {
        r->n_bad_status++;
        note_error(r, "ingest answer", c->in, m->head_len + m->body_len);
    }
    c->sid = -1;
    r->blocked = false;
    if (m->close)
        c->dead = true;
}

static int on_request(struct run *r, struct conn *c, const struct msg *m, int64_t now)
{
    static const char no_content[] = "HTTP/1.1 204 No Content\r\n\r\n";
    long sid = session_of(r, c->in + m->head_len, m->body_len);

    if (sid < 0) {
        r->n_unknown++;
    } else if (r->arrived[sid]) {
        r->n_dup++;
    } else {
        r->arrived[sid] = now;
        r->n_arrived++;
    }
    c->continued = false;
    if (vh_buf_add(&c->out, no_content, sizeof(no_content) - 1) < 0) {
        fputs("bench_steady: out of memory\n", stderr);
        return -1;
    }
    if (m->close)
        c->dead = true;
    return 0;
}

/* Handles every complete message in c's input. */
static int conn_process(struct run *r, struct conn *c, int64_t now)
{
    static const char go_on[] = "HTTP/1.1 100 Continue\r\n\r\n";
    struct msg m;
    size_t used;
    int rc;

    while (!c->dead) {
        rc = parse_msg(c->in, c->in_len, c->kind == CONN_CLIENT, &m);
        if (rc < 0) {
            note_error(r, "unhandled HTTP message", c->in, c->in_len);
            c->dead = true;
            break;
        }
        if (rc == 0) {
            if (c->kind == CONN_RECV && m.head_len && m.expect_continue && !c->continued) {
                c->continued = true;
                if (vh_buf_add(&c->out, go_on, sizeof(go_on) - 1) < 0)
                    return -1;
            }
            break;
        }
        if (c->kind == CONN_CLIENT)
            on_answer(r, c, &m, now);
        else if (on_request(r, c, &m, now) < 0)
            return -1;
        used = m.head_len + m.body_len;
        memmove(c->in, c->in + used, c->in_len - used);
        c->in_len -= used;
    }
    return conn_flush(r, c);
}

static int conn_on_event(struct run *r, struct conn *c, short revents)
{
    ssize_t n;
    int err = 0;
    socklen_t len = sizeof(err);

    if (c->connecting && (revents & (POLLOUT | POLLERR | POLLHUP))) {
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err) {
            note_error(r, "connect to the ingest API", strerror(err), strlen(strerror(err)));
            c->dead = true;
            return 0;
        }
        c->connecting = false;
    }
    if (revents & (POLLIN | POLLHUP | POLLERR)) {
        n = recv(c->fd, c->in + c->in_len, IN_MAX - c->in_len, 0);
        if (n == 0) {
            c->dead = true;
            return 0;
        }
        if (n < 0) {
            if (!is_again(errno))
                c->dead = true;
            return 0;
        }
        c->in_len += (size_t)n;
        return conn_process(r, c, now_ns());
    }
    return conn_flush(r, c);
}

static int accept_all(struct run *r)
{
    int fd;

    for (;;) {
        fd = accept(r->listen_fd, NULL, NULL);
        if (fd < 0)
            return is_again(errno) ? 0 : -1;
        if (set_nonblocking(fd) < 0 || !conn_add(r, CONN_RECV, fd)) {
            close(fd);
            fputs("bench_steady: cannot take a receiver connection\n", stderr);
            return -1;
        }
        r->accepted++;
    }
}

static int arm_timer(struct run *r)
{
    struct itimerspec it;
    int64_t at;

    if (r->blocked || r->next >= r->count || r->armed == r->next)
        return 0;
    at = due_ns(r, r->next);
    memset(&it, 0, sizeof(it));
    it.it_value.tv_sec = (time_t)(at / NS_PER_S);
    it.it_value.tv_nsec = (long)(at % NS_PER_S);
    r->armed = r->next;
    return timerfd_settime(r->timer_fd, TFD_TIMER_ABSTIME, &it, NULL);
}

static bool all_done(const struct run *r)
{
    return r->next == r->count && r->n_acked + r->n_bad_status + r->n_failed == r->count &&
           r->n_arrived == r->count;
}

static int run_loop(struct run *r)
{
    struct pollfd pfd[MAX_CONNS + 2];
    int64_t end = due_ns(r, r->count) + r->wait_ns, now;
    uint64_t ticks;
    size_t i, n;
    int rc;

    for (;;) {
        now = now_ns();
        if (send_due(r, now) < 0)
            return -1;
        if (all_done(r) || (r->next == r->count && now >= end))
            return 0;
        if (arm_timer(r) < 0)
            return -1;
        pfd[0] = (struct pollfd){.fd = r->timer_fd, .events = POLLIN};
        pfd[1] = (struct pollfd){.fd = r->listen_fd, .events = POLLIN};
        for (i = 0; i < r->nconns; i++) {
            struct conn *c = r->conns[i];

            pfd[i + 2].fd = c->fd;
            pfd[i + 2].events = POLLIN;
            if (c->connecting || c->out_off < c->out.len)
                pfd[i + 2].events |= POLLOUT;
            pfd[i + 2].revents = 0;
        }
        n = r->nconns;
        rc = poll(pfd, (nfds_t)(n + 2), r->next < r->count ? 1000 : 50);
        if (rc < 0 && errno != EINTR)
            return -1;
        if (rc <= 0)
            continue;
        if ((pfd[0].revents & POLLIN) && read(r->timer_fd, &ticks, sizeof(ticks)) < 0 &&
            errno != EAGAIN)
            return -1;
        for (i = 0; i < n; i++)
            if (pfd[i + 2].revents && conn_on_event(r, r->conns[i], pfd[i + 2].revents) < 0)
                return -1;
        if ((pfd[1].revents & POLLIN) && accept_all(r) < 0)
            return -1;
        reap(r);
    }
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

    return (x > y) - (x < y);
}

/* Nearest-rank percentile of sorted v[0..n), in ms. */
static double pct_ms(const int64_t *v, size_t n, double q)
{
    size_t k;

    if (n == 0)
        return 0.0;
    k = (size_t)(q * (double)n + 0.999999);
    if (k < 1)
        k = 1;
    if (k > n)
        k = n;
    return (double)v[k - 1] / NS_PER_MS;
}

/* Sorts v and prints `"name":{p50,p90,p99,p999,max,mean}` (ms). */
static void print_dist(const char *name, int64_t *v, size_t n, const char *sep)
{
    double sum = 0.0;
    size_t i;

    qsort(v, n, sizeof(*v), cmp_i64);
    for (i = 0; i < n; i++)
        sum += (double)v[i];
    printf("\"%s\":{\"n\":%zu,\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,\"p999\":%.3f,"
           "\"max\":%.3f,\"mean\":%.3f}%s",
           name, n, pct_ms(v, n, 0.5), pct_ms(v, n, 0.9), pct_ms(v, n, 0.99), pct_ms(v, n, 0.999),
           n ? (double)v[n - 1] / NS_PER_MS : 0.0, n ? sum / (double)n / NS_PER_MS : 0.0, sep);
}

static int write_latencies(const char *path, const int64_t *v, size_t n)
{
    FILE *f = fopen(path, "w");
    size_t i;

    if (!f)
        return -1;
    for (i = 0; i < n; i++)
        fprintf(f, "%.7f %.4f\n", ((double)i + 0.5) / (double)n, (double)v[i] / NS_PER_MS);
    return fclose(f) == 0 ? 0 : -1;
}

static int write_timeline(const struct run *r, const char *path)
{
    FILE *f = fopen(path, "w");
    long i;

    if (!f)
        return -1;
    for (i = 0; i < r->count; i++) {
        const int64_t sent = r->sent[i];

        if (!sent)
            continue;
        fprintf(f, "%.6f %.3f %.3f\n", (double)(sent - r->t0) / (double)NS_PER_S,
                r->acked[i] ? (double)(r->acked[i] - sent) / NS_PER_MS : -1.0,
                r->arrived[i] ? (double)(r->arrived[i] - sent) / NS_PER_MS : -1.0);
    }
    return fclose(f) == 0 ? 0 : -1;
}

static void print_json_string(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            printf("\\%c", *s);
        else if ((unsigned char)*s < 0x20)
            printf("\\u%04x", (unsigned)*s);
        else
            putchar(*s);
    }
    putchar('"');
}

/* Prints the summary and writes the optional files; returns the exit code. */
static int report(struct run *r, const char *latencies_path, const char *timeline_path)
{
    int64_t *lat = vh_malloc(sizeof(int64_t) * (size_t)r->count + 1);
    int64_t *ack = vh_malloc(sizeof(int64_t) * (size_t)r->count + 1);
    int64_t *lag = vh_malloc(sizeof(int64_t) * (size_t)r->count + 1);
    int64_t *from_due = vh_malloc(sizeof(int64_t) * (size_t)r->count + 1);
    int64_t first = 0, last = 0;
    size_t nl = 0, na = 0, ns = 0;
    long i;
    int code = 3;

    if (!lat || !ack || !lag || !from_due) {
        fputs("bench_steady: out of memory\n", stderr);
        goto out;
    }
    for (i = 0; i < r->count; i++) {
        if (!r->sent[i])
            continue;
        lag[ns++] = r->sent[i] - due_ns(r, i);
        if (!first)
            first = r->sent[i];
        last = r->sent[i];
        if (r->acked[i])
            ack[na++] = r->acked[i] - r->sent[i];
        if (r->arrived[i]) {
            from_due[nl] = r->arrived[i] - due_ns(r, i);
            lat[nl++] = r->arrived[i] - r->sent[i];
        }
    }
    printf("{\"sessions\":%ld,\"rate\":%g,\"sent\":%zu,\"send_rate\":%.1f,\"accepted\":%ld,"
           "\"bad_status\":%ld,\"failed\":%ld,\"arrived\":%ld,\"lost\":%ld,\"duplicates\":%ld,"
           "\"unknown\":%ld,\"capped\":%ld,\"ingest_connections\":%ld,"
           "\"receiver_connections\":%ld,",
           r->count, r->rate, ns,
           last > first ? (double)(ns - 1) * (double)NS_PER_S / (double)(last - first) : 0.0,
           r->n_acked, r->n_bad_status, r->n_failed, r->n_arrived, r->count - r->n_arrived,
           r->n_dup, r->n_unknown, r->n_capped, r->opened, r->accepted);
    print_dist("latency_from_due_ms", from_due, nl, ",");
    print_dist("latency_ms", lat, nl, ",");
    print_dist("ingest_answer_ms", ack, na, ",");
    print_dist("send_lag_ms", lag, ns, ",");
    printf("\"first_error\":");
    print_json_string(r->first_error);
    printf("}\n");
    fflush(stdout);
    if (latencies_path && write_latencies(latencies_path, lat, nl) < 0) {
        fprintf(stderr, "bench_steady: cannot write %s\n", latencies_path);
        goto out;
    }
    if (timeline_path && write_timeline(r, timeline_path) < 0) {
        fprintf(stderr, "bench_steady: cannot write %s\n", timeline_path);
        goto out;
    }
    code = r->n_acked == r->count && r->n_arrived == r->count ? 0 : 1;
out:
    vh_free(lat);
    vh_free(ack);
    vh_free(lag);
    vh_free(from_due);
    return code;
}

/* Splits the template around its placeholder into r->head and r->tail. */
static int make_body(struct run *r, const char *partner, const char *tpl)
{
    const char *hole = strstr(tpl, PLACEHOLDER);

    if (!hole) {
        fprintf(stderr, "bench_steady: the template has no %s\n", PLACEHOLDER);
        return 2;
    }
    if (vh_buf_addf(&r->head, "{\"partner_id\":\"%s\",\"session\":", partner) < 0 ||
        vh_buf_add(&r->head, tpl, (size_t)(hole - tpl)) < 0 ||
        vh_buf_adds(&r->tail, hole + strlen(PLACEHOLDER)) < 0 || vh_buf_adds(&r->tail, "}") < 0)
        return 3;
    return 0;
}

static int listen_on(struct run *r, unsigned port)
{
    struct sockaddr_in sa;
    int one = 1;

    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = htons((uint16_t)port);
    r->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    if (r->listen_fd < 0 ||
        setsockopt(r->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        bind(r->listen_fd, (const struct sockaddr *)&sa, sizeof(sa)) < 0 ||
        listen(r->listen_fd, 128) < 0 || fcntl(r->listen_fd, F_SETFL, O_NONBLOCK) < 0) {
        perror("bench_steady: listen");
        return -1;
    }
    return 0;
}

/*
 * How many ingest connections may be open: MAX_CLIENTS, or what the descriptor limit leaves
 * room for after raising the soft limit towards the hard one (a common soft default is
 * 1024); half of that with `loopback`, where the receiver takes one connection per client
 * connection.
 */
static size_t client_limit(bool loopback)
{
    const rlim_t want = MAX_CONNS + FD_SPARE;
    struct rlimit rl;
    size_t n = MAX_CLIENTS;

    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return 16;
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want) {
        rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > want ? want : rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0 && getrlimit(RLIMIT_NOFILE, &rl) < 0)
            return 16;
        if (rl.rlim_cur < want)
            n = rl.rlim_cur > 64 + FD_SPARE + 32 ? (size_t)rl.rlim_cur - 64 - FD_SPARE : 16;
    }
    return loopback ? n / 2 : n;
}

/* Opens the sockets and the timer, then runs the load; returns an exit code. */
static int start(struct run *r, unsigned listen_port, long conns, const char *latencies,
                 const char *timeline)
{
    size_t bytes = sizeof(int64_t) * (size_t)r->count + 1;
    long i;

    r->sent = vh_malloc(bytes);
    r->acked = vh_malloc(bytes);
    r->arrived = vh_malloc(bytes);
    if (!r->sent || !r->acked || !r->arrived) {
        fputs("bench_steady: out of memory\n", stderr);
        return 3;
    }
    memset(r->sent, 0, bytes);
    memset(r->acked, 0, bytes);
    memset(r->arrived, 0, bytes);
    r->max_clients = client_limit(ntohs(r->ingest.sin_port) == listen_port);
    if ((size_t)conns > r->max_clients)
        conns = (long)r->max_clients;
    if (listen_on(r, listen_port) < 0)
        return 3;
    r->timer_fd = timerfd_create(CLOCK_MONOTONIC, 0);
    if (r->timer_fd < 0) {
        perror("bench_steady: timerfd_create");
        return 3;
    }
    for (i = 0; i < conns; i++) {
        if (!client_open(r)) {
            perror("bench_steady: connect to the ingest API");
            return 3;
        }
    }
    /* The first send waits 200 ms, long enough for the connections to be established. */
    r->t0 = now_ns() + NS_PER_S / 5;
    if (run_loop(r) < 0) {
        perror("bench_steady: poll loop");
        return 3;
    }
    if (r->first_error[0])
        fprintf(stderr, "bench_steady: first error: %s\n", r->first_error);
    return report(r, latencies, timeline);
}

static void run_release(struct run *r)
{
    size_t i;

    for (i = 0; i < r->nconns; i++)
        conn_free(r->conns[i]);
    r->nconns = 0;
    if (r->listen_fd >= 0)
        close(r->listen_fd);
    if (r->timer_fd >= 0)
        close(r->timer_fd);
    vh_buf_release(&r->head);
    vh_buf_release(&r->tail);
    vh_free(r->sent);
    vh_free(r->acked);
    vh_free(r->arrived);
}

static bool parse_num(const char *s, double lo, double hi, double *out)
{
    char *end;

    errno = 0;
    *out = strtod(s, &end);
    return !errno && end != s && !*end && *out >= lo && *out <= hi;
}

int main(int argc, char **argv)
{
    struct vh_buf tpl = VH_BUF_INIT(VH_BODY_MAX);
    struct run r;
    const char *partner = NULL, *file = NULL, *latencies = NULL, *timeline = NULL;
    double ingest_port = 0, listen_port = 0, seconds = 60, conns = 8, wait_s = 30, expect = 202;
    int i, code;

    memset(&r, 0, sizeof(r));
    r.listen_fd = -1;
    r.timer_fd = -1;
    r.armed = -1;
    r.blocked_at = -1;
    r.rate = 1000;
    r.prefix = "st-";
    r.token = getenv("BENCH_STEADY_TOKEN");
    vh_buf_init(&r.head, VH_BODY_MAX);
    vh_buf_init(&r.tail, VH_BODY_MAX);
    for (i = 1; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        bool ok = true;

        if (strcmp(k, "--ingest") == 0)
            ok = parse_num(v, 1, 65535, &ingest_port);
        else if (strcmp(k, "--listen") == 0)
            ok = parse_num(v, 1, 65535, &listen_port);
        else if (strcmp(k, "--rate") == 0)
            ok = parse_num(v, 0.1, 1e6, &r.rate);
        else if (strcmp(k, "--seconds") == 0)
            ok = parse_num(v, 0.01, 86400, &seconds);
        else if (strcmp(k, "--conns") == 0)
            ok = parse_num(v, 1, MAX_CLIENTS, &conns);
        else if (strcmp(k, "--wait") == 0)
            ok = parse_num(v, 0, 3600, &wait_s);
        else if (strcmp(k, "--expect") == 0)
            ok = parse_num(v, 100, 599, &expect);
        else if (strcmp(k, "--partner") == 0)
            partner = v;
        else if (strcmp(k, "--template") == 0)
            file = v;
        else if (strcmp(k, "--prefix") == 0)
            r.prefix = v;
        else if (strcmp(k, "--latencies") == 0)
            latencies = v;
        else if (strcmp(k, "--timeline") == 0)
            timeline = v;
        else
            ok = false;
        if (!ok)
            return usage();
    }
    r.count = (long)(r.rate * seconds + 0.5);
    if (i != argc || !partner || !file || ingest_port < 1 || listen_port < 1 || r.count < 1 ||
        r.count > 100000000 || strlen(r.prefix) > 40 || strlen(partner) > 64)
        return usage();
    if (!r.token || !*r.token || strlen(r.token) > 256) {
        fputs("bench_steady: BENCH_STEADY_TOKEN is not set\n", stderr);
        return 2;
    }
    r.expect = (int)expect;
    r.wait_ns = (int64_t)(wait_s * (double)NS_PER_S);
    r.ingest.sin_family = AF_INET;
    r.ingest.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    r.ingest.sin_port = htons((uint16_t)ingest_port);
    if (bench_read_file(file, &tpl) < 0) {
        fprintf(stderr, "bench_steady: cannot read %s\n", file);
        code = 3;
        goto out;
    }
    code = make_body(&r, partner, vh_buf_cstr(&tpl));
    if (code == 0)
        code = start(&r, (unsigned)listen_port, (long)conns, latencies, timeline);
out:
    run_release(&r);
    vh_buf_release(&tpl);
    return code;
}
