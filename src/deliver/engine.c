/*
 * The delivery engine (engine.h). It decides nothing about retries; it turns jobs into
 * signed POSTs and each answer (or failure) into a vh_attempt.
 *
 * Who does what. libcurl makes connections and nothing else (CURLOPT_CONNECT_ONLY in the
 * multi handle): DNS, the connect, the SSRF guard at connect time (on_open_socket), TLS
 * with the CA store cached and sessions shared. The engine writes each HTTP/1.1 request
 * itself (one buffer: head and body) and reads the answer with its own parser (h1.c). Over
 * TLS it sends and reads through curl_easy_send and curl_easy_recv, which encrypt and
 * decrypt; over plain HTTP with send(2) and recv(2) on the socket libcurl connected
 * (conn_write, conn_read), which is all libcurl's calls did there. In a loop with
 * nothing else to do, a full libcurl transfer cost 55-58 us of CPU per request here (its
 * state machine, header handling and URL parse, every time); the same request over a
 * connect-only connection cost 16 us (docs/BENCHMARKS.md, session 9). HTTP/1.1 only: ALPN
 * offers nothing else.
 *
 * Connections are kept per origin ("scheme://authority") in an idle list, newest first, at
 * most max_total of them and none idle longer than cfg.idle_max_ms. An idle one that
 * turns readable (the server closed it) is dropped. A request that fails on a reused
 * connection before any byte of an answer came back goes once more on a new connection:
 * the server most likely closed the idle one as we sent (libcurl did the same).
 *
 * Threads. Submitters push jobs on `incoming` under `lock` and wake the engine thread with
 * an eventfd. Everything else, the CURLM and CURLSH handles, the endpoint table,
 * the queues and every connection, belongs to the engine thread from pthread_create to
 * pthread_join (vh_engine_new sets it up before, vh_engine_free tears it down after).
 *
 * One loop (engine_main): take the incoming jobs, start what the caps allow, let libcurl
 * work while it connects, end the attempts whose time is up, and sleep until a socket, a
 * deadline or a submitter needs us (in epoll_wait; in curl_multi_poll, with the epoll
 * descriptor as its extra one, while libcurl connects); then serve the sockets that are
 * ready. Every connection libcurl has handed over (sending, receiving or idle) and the
 * wakeup stay in one epoll set from then until they are closed: a wait costs the same with
 * 2 connections or 200, and registers no socket again (poll(2) did both, on every wait).
 *
 * Cheap attempts: a submit wakes the engine thread only when the incoming list was empty
 * (a wakeup is pending otherwise); and a log record above the configured level is never
 * formatted.
 */
#include <vocohook/engine.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <curl/curl.h>

#include <vocohook/alloc.h>
#include <vocohook/buf.h>
#include <vocohook/clock.h>
#include <vocohook/sign.h>

#include "core/log_int.h"
#include "crypto/tls_int.h"
#include "deliver/deliver_int.h"
#include "deliver/h1_int.h"
#include "core/thread_int.h"
#include "core/banned.h"

#define USER_AGENT   "vocohook/" VH_VERSION_STRING
#define POLL_IDLE_MS 10000 /* the longest sleep; wakeups end it sooner */
#define CA_CACHE_S   86400L
#define BUCKETS_MIN  64
#define LOG_LINE_MAX 2048
#define REQ_KEEP_MAX (64 * 1024)   /* an idle connection's request buffer past this is freed */
#define RESP_MAX     (1024 * 1024) /* response bytes read per attempt: heads, framing, body */
#define READS_MAX    256           /* reads of one connection per turn of the engine loop */

/* Where a connection is in its life. */
enum conn_state {
    C_CONNECTING, /* libcurl resolves, connects and does TLS (a connect-only transfer) */
    C_SENDING,    /* a job's request is going out */
    C_RECEIVING,  /* its response is coming in */
    C_IDLE        /* kept for the next request to the same origin */
};

/*
 * One connection: an easy handle that libcurl connected (CURLOPT_CONNECT_ONLY) and left in
 * the multi handle for as long as it lives, and the request and response going over it.
 * The struct and its origin are one allocation.
 */
struct conn {
    struct conn *prev, *next; /* in the idle list while idle */
    CURL *easy;
    curl_socket_t fd;
    enum conn_state state;
    struct job *job;    /* while connecting, sending or receiving */
    bool served;        /* an earlier request got its whole response here */
    bool blocked;       /* the SSRF guard refused an address */
    bool allow_private; /* read by the SSRF guard */
    bool capped;        /* the body reached VH_ATTEMPT_READ_MAX */
    bool more;          /* its turn ended with bytes left to read (conn_recv) */
    bool tls;           /* https: OpenSSL may hold bytes that poll(2) cannot see */
    bool watched;       /* in the engine's epoll set (from conn_connected to conn_free) */
    bool attached;      /* libcurl holds it in use: a curl_easy_send went over it (conn_write) */
    bool watch_out;     /* ... waiting to be writable too (a request that did not fit) */
    const void *ssl;    /* https, e->tls_poll: its SSL, set by on_ssl_ctx's setup; or NULL */
    bool quiet;         /* idle_check's verdict: nothing to read on the socket (idle) */
    uint64_t checked;   /* the engine's turn that verdict is for; 0: none */
    int64_t idle_since; /* monotonic ms, while idle */
    struct vh_buf req;  /* the request; kept for the next one's memory */
    size_t sent;
    struct vh__h1 h1;
    size_t got;      /* response bytes received for this request */
    size_t read;     /* body bytes read */
    size_t head_len; /* of them kept in head */
    size_t in_len;   /* bytes in `in` not yet parsed */
    char in[VH__H1_HEAD_MAX];
    char head[VH_ATTEMPT_HEAD_MAX + 1];
    char blocked_addr[INET6_ADDRSTRLEN];
    char errbuf[CURL_ERROR_SIZE];
    size_t origin_len;
    char origin[]; /* "scheme://authority", NUL-terminated */
};

/* One submitted job. The struct and its strings are one allocation. */
struct job {
    struct job *next;          /* in `incoming` or its endpoint's queue */
    struct job *aprev, *anext; /* in the engine's list of active jobs */
    struct endpoint *ep;       /* set once queued */
    struct conn *c;            /* its connection, while active */
    vh_delivery_done_fn *done;
    void *ud;
    const char *delivery_id; /* "" when none was given */
    const char *event_id;
    const char *url;
    const char *key; /* the fairness key */
    char *secret;    /* wiped before the job is freed */
    size_t secret_len;
    const void *body; /* borrowed until `done` has run */
    size_t body_len;
    unsigned attempt;
    int64_t timeout_ms;
    int64_t start_by_ms;  /* wall clock; 0: no limit */
    int64_t started_ms;   /* wall clock: the X-Webhook-Timestamp */
    int64_t started_mono; /* monotonic, for the duration */
    int64_t deadline;     /* monotonic: started_mono + timeout_ms */
    size_t origin_len;    /* of url: "scheme://authority", then the path and query */
    size_t authority_off; /* where the authority (the Host header) starts in url */
    bool reused;          /* the attempt went out on a connection that served before */
    bool retried;         /* it went again on a new connection (conn_broke) */
    bool drop;            /* a drop mark (vh_engine_drop_endpoint): `key` (NULL: all), no job */
};

/* Jobs of one fairness key; exists while it has jobs waiting or active. */
struct endpoint {
    struct endpoint *hnext; /* hash chain */
    struct endpoint *rnext; /* ready list */
    struct job *head, *tail;
    unsigned active;
    bool ready; /* on the ready list: has jobs waiting and a free slot */
    size_t hash;
    size_t key_len;
    char key[]; /* NUL-terminated */
};

struct vh_engine {
    /* Read-only once the thread runs. */
    struct vh_engine_config cfg; /* cfg.ca_file points at ca_file */
    char *ca_file;
    pthread_t thread;
    bool thread_started;

    /* Shared with submitters: under `lock`. */
    pthread_mutex_t lock;
    struct job *in_head, *in_tail;
    size_t in_flight;
    bool stopping;
    bool joined;
    int64_t grace_ms;
    uint64_t drops_asked, drops_done; /* drop marks queued, and taken by the engine thread */
    pthread_cond_t dropped;           /* signaled when drops_done moves */
    pthread_mutex_t stop_lock;        /* serializes vh_engine_stop */

    /* The engine thread's. */
    CURLM *multi; /* belongs to the engine thread while it runs */
    CURLSH *share;
    /*
     * libcurl's TLS is OpenSSL's, and it is libcurl 7.x: a context per connection, and the
     * socket read only through OpenSSL (its socket filter keeps no buffer of its own), so
     * that OpenSSL and the socket hold all there is to read (socket_tells_all). Then TLS
     * connections read ahead (on_ssl_ctx); otherwise every idle check of one is a recv.
     */
    bool tls_poll;
    struct endpoint **buckets;
    size_t n_buckets, n_endpoints;
    struct endpoint *ready_head, *ready_tail;
    size_t n_waiting; /* jobs on the endpoints' queues */
    struct job *active_head;
    unsigned active;
    struct conn *idle_head, *idle_tail; /* newest first */
    unsigned n_idle, n_connecting;
    uint64_t turn;           /* ends at each start_ready and callback (idle_check) */
    int wake_fd;             /* an eventfd: submitters and stop wake the engine thread */
    int ep_fd;               /* epoll: the wakeup (data NULL) and every watched connection */
    struct epoll_event *evs; /* poll_wait's: up to 2 * max_total + 1 */
    struct conn **more;      /* poll_set's: connections with bytes left from their turn */
    struct pollfd *pfd;      /* idle_check's */
    struct conn **wconn;     /* idle_check's */
};

/* ---- logging --------------------------------------------------------------------------------- */

/* Writes `s` as the inside of a JSON string, cut to fit; control and non-ASCII bytes escaped. */

/* Logs one record: `fmt` writes the JSON members after "msg" (or nothing). */
static void log_rec(const struct vh_engine *e, enum vh_log_level level, const char *msg,
                    const char *fmt, ...) VH_PRINTF(4, 5);

static void log_rec(const struct vh_engine *e, enum vh_log_level level, const char *msg,
                    const char *fmt, ...)
{
    char ts[VH_TIME_LEN + 1], line[LOG_LINE_MAX], m[512];
    va_list ap;
    int n;

    if (!e->cfg.log || level > e->cfg.log_level)
        return;
    if (vh_time_format(vh_time_now_ms(), ts) < 0)
        ts[0] = '\0';
    vh__json_escape(msg, SIZE_MAX, m, sizeof(m));
    n = snprintf(line, sizeof(line), "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":\"%s\"", ts,
                 vh_log_level_name(level), m);
    if (n < 0 || (size_t)n >= sizeof(line) - 2)
        return;
    va_start(ap, fmt);
    n += vsnprintf(line + n, sizeof(line) - 1 - (size_t)n, fmt, ap);
    va_end(ap);
    if ((size_t)n >= sizeof(line) - 1)
        n = (int)sizeof(line) - 2; /* cut: still one object, if a clipped one */
    line[n] = '}';
    line[n + 1] = '\0';
    e->cfg.log(e->cfg.log_ud, level, line);
}

static void log_attempt(const struct vh_engine *e, const struct job *job,
                        const struct vh_attempt *a)
{
    char id[2 * VH_ENGINE_ID_MAX], error[2 * VH_ATTEMPT_ERROR_MAX];
    enum vh_log_level level = a->result == VH_ATTEMPT_BLOCKED ? VH_LOG_WARN : VH_LOG_DEBUG;

    if (!e->cfg.log || level > e->cfg.log_level)
        return; /* before the escaping: one attempt per delivery reaches here */
    vh__json_escape(job->delivery_id, SIZE_MAX, id, sizeof(id));
    vh__json_escape(a->error, SIZE_MAX, error, sizeof(error));
    log_rec(e, level, "attempt",
            ",\"delivery_id\":\"%s\",\"attempt\":%u,\"result\":\"%s\",\"status\":%d,"
            "\"ms\":%lld,\"reused\":%s,\"error\":\"%s\"",
            id, a->number, vh_attempt_result_name(a->result), a->http_status,
            (long long)a->duration_ms, a->reused_connection ? "true" : "false", error);
}

/* ---- jobs ------------------------------------------------------------------------------------ */

static void wipe(char *p, size_t n)
{
    volatile char *v = p;

    while (n--)
        *v++ = '\0';
}

static void job_free(struct job *job)
{
    if (!job)
        return;
    wipe(job->secret, job->secret_len);
    vh_free(job);
}

/* Copies `n` bytes of `s` and a NUL at `*p`, moves `*p` past them, returns the copy. */
static char *put_str(char **p, const char *s, size_t n)
{
    char *dst = *p;

    if (n)
        memcpy(dst, s, n);
    dst[n] = '\0';
    *p += n + 1;
    return dst;
}

/* Printable ASCII, no spaces: safe inside a header line. */
static bool is_token(const char *s, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
            return false;
    return true;
}

static int job_check(const struct vh_delivery_job *j, size_t *id_len, size_t *ev_len,
                     size_t *url_len, size_t *key_len, struct vh_error *err)
{
    if (!j || !j->event_id || !j->url || !j->secret || (!j->body && j->body_len))
        return vh_error_set(err, VH_EINVAL, "submit: missing job field");
    *id_len = j->delivery_id ? strlen(j->delivery_id) : 0;
    *ev_len = strlen(j->event_id);
    *url_len = strlen(j->url);
    *key_len = j->endpoint_id ? strlen(j->endpoint_id) : *url_len;
    if (*ev_len == 0 || *ev_len > VH_ENGINE_ID_MAX || !is_token(j->event_id, *ev_len))
        return vh_error_set(err, VH_EINVAL, "submit: bad event id (1 to %d printable bytes)",
                            VH_ENGINE_ID_MAX);
    if (*id_len > VH_ENGINE_ID_MAX || *key_len == 0 || *key_len > VH_ENGINE_URL_MAX)
        return vh_error_set(err, VH_EINVAL, "submit: bad delivery or endpoint id");
    if (*url_len == 0 || *url_len > VH_ENGINE_URL_MAX || !is_token(j->url, *url_len))
        return vh_error_set(err, VH_EINVAL, "submit: bad url (1 to %d printable bytes)",
                            VH_ENGINE_URL_MAX);
    if (j->secret_len == 0 || j->secret_len > VH_SECRET_MAX)
        return vh_error_set(err, VH_EINVAL, "submit: bad secret (1 to %d bytes)", VH_SECRET_MAX);
    if (j->attempt == 0 || j->timeout_ms < 0 || j->timeout_ms > VH_RETRY_DELAY_MAX_MS)
        return vh_error_set(err, VH_EINVAL, "submit: bad attempt number or timeout");
    return 0;
}

static int job_new(const struct vh_engine *e, const struct vh_delivery_job *j,
                   vh_delivery_done_fn *done, void *ud, struct job **out, struct vh_error *err)
{
    size_t id_len = 0, ev_len = 0, url_len = 0, key_len = 0, size;
    struct job *job;
    char *p;
    int rc;

    rc = job_check(j, &id_len, &ev_len, &url_len, &key_len, err);
    if (rc < 0)
        return rc;
    size = sizeof(*job) + id_len + ev_len + url_len + key_len + j->secret_len + 5;
    job = vh_malloc(size);
    if (!job)
        return vh_error_set(err, VH_ENOMEM, "submit: out of memory");
    memset(job, 0, sizeof(*job));
    p = (char *)(job + 1);
    job->delivery_id = put_str(&p, j->delivery_id ? j->delivery_id : "", id_len);
    job->event_id = put_str(&p, j->event_id, ev_len);
    job->url = put_str(&p, j->url, url_len);
    job->key = put_str(&p, j->endpoint_id ? j->endpoint_id : j->url, key_len);
    job->secret = put_str(&p, j->secret, j->secret_len);
    job->secret_len = j->secret_len;
    job->done = done;
    job->ud = ud;
    job->body = j->body ? j->body : "";
    job->body_len = j->body_len;
    job->attempt = j->attempt;
    job->timeout_ms = j->timeout_ms ? j->timeout_ms : e->cfg.timeout_ms;
    job->start_by_ms = j->start_by_ms;
    *out = job;
    return 0;
}

/*
 * Hands the job's report to its owner and frees the job. The job stops counting as in
 * flight first, so a callback that looks at vh_engine_in_flight sees itself done.
 */
static void job_report(struct vh_engine *e, struct job *job, struct vh_attempt *a)
{
    /*
     * The callback is the application's code and may take its time (a store write): an
     * idle connection found quiet before it must be checked again after it.
     */
    e->turn++;
    log_attempt(e, job, a);
    pthread_mutex_lock(&e->lock);
    e->in_flight--;
    pthread_mutex_unlock(&e->lock);
    job->done(job->ud, a);
    job_free(job);
}

/* A report for a job that never reached the network. */
static void job_report_now(struct vh_engine *e, struct job *job, enum vh_attempt_result r,
                           const char *error)
{
    struct vh_attempt a;

    memset(&a, 0, sizeof(a));
    a.number = job->attempt;
    a.result = r;
    a.started_ms = vh_time_now_ms();
    snprintf(a.error, sizeof(a.error), "%s", error);
    job_report(e, job, &a);
}

/* ---- endpoints: fairness queues -------------------------------------------------------------- */

static size_t hash_key(const char *s, size_t n)
{
    uint64_t h = UINT64_C(14695981039346656037); /* FNV-1a */
    size_t i;

    for (i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= UINT64_C(1099511628211);
    }
    return (size_t)h;
}

/* Doubles the table; on OOM the chains just get longer. */
static void buckets_grow(struct vh_engine *e)
{
    size_t n = e->n_buckets * 2, i;
    struct endpoint **b, *ep, *next;

    b = vh_malloc(n * sizeof(*b));
    if (!b)
        return;
    memset(b, 0, n * sizeof(*b));
    for (i = 0; i < e->n_buckets; i++) {
        for (ep = e->buckets[i]; ep; ep = next) {
            next = ep->hnext;
            ep->hnext = b[ep->hash & (n - 1)];
            b[ep->hash & (n - 1)] = ep;
        }
    }
    vh_free(e->buckets);
    e->buckets = b;
    e->n_buckets = n;
}

/* The endpoint for `key`; NULL when it has nothing waiting or active. */
static struct endpoint *endpoint_find(const struct vh_engine *e, const char *key, size_t len,
                                      size_t h)
{
    struct endpoint *ep;

    for (ep = e->buckets[h & (e->n_buckets - 1)]; ep; ep = ep->hnext)
        if (ep->hash == h && ep->key_len == len && memcmp(ep->key, key, len) == 0)
            return ep;
    return NULL;
}

/* The endpoint for `key`, created when missing; NULL on OOM. */
static struct endpoint *endpoint_get(struct vh_engine *e, const char *key)
{
    size_t len = strlen(key), h = hash_key(key, len);
    struct endpoint *ep = endpoint_find(e, key, len, h);

    if (ep)
        return ep;
    ep = vh_malloc(sizeof(*ep) + len + 1);
    if (!ep)
        return NULL;
    memset(ep, 0, sizeof(*ep));
    ep->hash = h;
    ep->key_len = len;
    memcpy(ep->key, key, len + 1);
    ep->hnext = e->buckets[h & (e->n_buckets - 1)];
    e->buckets[h & (e->n_buckets - 1)] = ep;
    if (++e->n_endpoints > e->n_buckets)
        buckets_grow(e);
    return ep;
}

/* Frees an endpoint with nothing waiting, active or on the ready list. */
static void endpoint_drop(struct vh_engine *e, struct endpoint *ep)
{
    struct endpoint **pp = &e->buckets[ep->hash & (e->n_buckets - 1)];

    while (*pp != ep)
        pp = &(*pp)->hnext;
    *pp = ep->hnext;
    e->n_endpoints--;
    vh_free(ep);
}

static void ready_push(struct vh_engine *e, struct endpoint *ep)
{
    ep->ready = true;
    ep->rnext = NULL;
    if (e->ready_tail)
        e->ready_tail->rnext = ep;
    else
        e->ready_head = ep;
    e->ready_tail = ep;
}

static struct endpoint *ready_pop(struct vh_engine *e)
{
    struct endpoint *ep = e->ready_head;

    if (!ep)
        return NULL;
    e->ready_head = ep->rnext;
    if (!e->ready_head)
        e->ready_tail = NULL;
    ep->rnext = NULL;
    ep->ready = false;
    return ep;
}

/* Takes an endpoint off the ready list. */
static void ready_remove(struct vh_engine *e, struct endpoint *ep)
{
    struct endpoint **pp = &e->ready_head, *prev = NULL;

    while (*pp != ep) {
        prev = *pp;
        pp = &(*pp)->rnext;
    }
    *pp = ep->rnext;
    if (e->ready_tail == ep)
        e->ready_tail = prev;
    ep->rnext = NULL;
    ep->ready = false;
}

/*
 * Re-establishes the endpoint's invariants after a change: on the ready list iff it has jobs
 * waiting and a free slot; freed once idle.
 */
static void endpoint_settle(struct vh_engine *e, struct endpoint *ep)
{
    if (ep->head && ep->active < e->cfg.max_per_endpoint && !ep->ready)
        ready_push(e, ep);
    else if (!ep->head && ep->active == 0 && !ep->ready)
        endpoint_drop(e, ep);
}

static void endpoint_enqueue(struct vh_engine *e, struct job *job)
{
    struct endpoint *ep = endpoint_get(e, job->key);

    if (!ep) {
        job_report_now(e, job, VH_ATTEMPT_INTERNAL, "out of memory queueing the job");
        return;
    }
    job->ep = ep;
    job->next = NULL;
    if (ep->tail)
        ep->tail->next = job;
    else
        ep->head = job;
    ep->tail = job;
    e->n_waiting++;
    endpoint_settle(e, ep);
}

static struct job *endpoint_dequeue(struct vh_engine *e, struct endpoint *ep)
{
    struct job *job = ep->head;

    if (job) {
        ep->head = job->next;
        if (!ep->head)
            ep->tail = NULL;
        job->next = NULL;
        e->n_waiting--;
    }
    return job;
}

/* ---- connections ----------------------------------------------------------------------------- */

/*
 * The SSRF guard, at connect time: the address is the one libcurl is about to connect to,
 * after DNS, so a name that resolves (or re-resolves) to a private address is caught too.
 * Refusing fails the connection attempt (CURLE_COULDNT_CONNECT) before any packet leaves.
 */
static curl_socket_t on_open_socket(void *ud, curlsocktype purpose, struct curl_sockaddr *sa)
{
    struct conn *c = ud;
    int type = sa->socktype;

    if (purpose != CURLSOCKTYPE_IPCXN)
        return CURL_SOCKET_BAD;
    if (!c->allow_private && vh__addr_is_blocked(&sa->addr, sa->addrlen)) {
        const void *bytes = NULL;
        struct sockaddr_in in4;
        struct sockaddr_in6 in6;

        if (sa->family == AF_INET && sa->addrlen >= sizeof(in4)) {
            memcpy(&in4, &sa->addr, sizeof(in4));
            bytes = &in4.sin_addr;
        } else if (sa->family == AF_INET6 && sa->addrlen >= sizeof(in6)) {
            memcpy(&in6, &sa->addr, sizeof(in6));
            bytes = &in6.sin6_addr;
        }
        if (!bytes || !inet_ntop(sa->family, bytes, c->blocked_addr, sizeof(c->blocked_addr)))
            snprintf(c->blocked_addr, sizeof(c->blocked_addr), "(family %d)", sa->family);
        c->blocked = true;
        return CURL_SOCKET_BAD;
    }
#ifdef SOCK_CLOEXEC
    type |= SOCK_CLOEXEC; /* a daemon that runs commands must not leak its sockets */
#endif
    return socket(sa->family, type, sa->protocol);
}

static bool scheme_allowed(const struct vh_engine *e, const char *url)
{
    return strncasecmp(url, "https://", 8) == 0 ||
           (e->cfg.allow_http && strncasecmp(url, "http://", 7) == 0);
}

/*
 * Splits an allowed URL into origin ("scheme://authority") and the rest (path and query);
 * NULL, or why it cannot be used.
 */
static const char *split_url(struct job *job)
{
    const char *url = job->url, *a = strstr(url, "://") + 3, *end = a + strcspn(a, "/?#");

    if (end == a)
        return "the URL has no host";
    if (memchr(a, '@', (size_t)(end - a)) || strchr(end, '#'))
        return "the URL has credentials or a fragment";
    job->authority_off = (size_t)(a - url);
    job->origin_len = (size_t)(end - url);
    return NULL;
}

#define SETOPT(opt, val)                                                                           \
    do {                                                                                           \
        if (rc == CURLE_OK)                                                                        \
            rc = curl_easy_setopt(c->easy, opt, val);                                              \
    } while (0)

/*
 * libcurl's OpenSSL context for a new TLS connection, before its handshake (e->tls_poll):
 * OpenSSL reads ahead, and the connection learns its SSL as the handshake starts, to ask
 * OpenSSL what it holds (socket_tells_all). CURLINFO_TLS_SSL_PTR cannot tell it: libcurl
 * detaches a CONNECT_ONLY connection from its easy handle once connected. When the setup
 * fails, the connection goes on as before it: no read ahead, a recv for each idle check.
 */
static CURLcode on_ssl_ctx(CURL *easy, void *ssl_ctx, void *ud)
{
    struct conn *c = ud;

    (void)easy;
    (void)vh__tls_ctx_setup(ssl_ctx, &c->ssl);
    return CURLE_OK;
}

/*
 * Where a connection may go and how: the safety rules, TLS trust, and HTTP/1.1 only (the
 * request and response are ours, so ALPN must not pick HTTP/2). libcurl makes the
 * connection and stops (CURLOPT_CONNECT_ONLY); it is never reused by libcurl itself.
 */
static CURLcode conn_options(const struct vh_engine *e, struct conn *c, int64_t timeout_ms)
{
    const char *protocols = e->cfg.allow_http ? "http,https" : "https";
    CURLcode rc = CURLE_OK;

    SETOPT(CURLOPT_PRIVATE, c);
    SETOPT(CURLOPT_URL, (const char *)c->origin);
    SETOPT(CURLOPT_CONNECT_ONLY, 1L);
    SETOPT(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    SETOPT(CURLOPT_NOSIGNAL, 1L);
    SETOPT(CURLOPT_TIMEOUT_MS, (long)timeout_ms);
    SETOPT(CURLOPT_ERRORBUFFER, c->errbuf);
    SETOPT(CURLOPT_PROTOCOLS_STR, protocols);
    SETOPT(CURLOPT_PROXY, ""); /* "" overrides http_proxy and friends in the environment */
    /* For what libcurl prunes from its cache; it never prunes a connection in use (conn_write). */
    SETOPT(CURLOPT_MAXAGE_CONN, (long)((e->cfg.idle_max_ms + 999) / 1000));
    SETOPT(CURLOPT_OPENSOCKETFUNCTION, on_open_socket);
    SETOPT(CURLOPT_OPENSOCKETDATA, c);
    SETOPT(CURLOPT_SHARE, e->share);
    SETOPT(CURLOPT_TCP_KEEPALIVE, 1L);
    if (e->tls_poll) {
        SETOPT(CURLOPT_SSL_CTX_FUNCTION, on_ssl_ctx);
        SETOPT(CURLOPT_SSL_CTX_DATA, c);
    }
    /*
     * Without a CA path the store comes from one file and libcurl caches it: a new HTTPS
     * connection then cost ~1.3 ms of CPU here instead of ~40 ms (the system bundle parsed
     * again for every connection).
     */
    SETOPT(CURLOPT_CAPATH, NULL);
    if (e->ca_file)
        SETOPT(CURLOPT_CAINFO, e->ca_file);
    /* Only a saving: a libcurl without the CA cache (before 7.87) still works. */
    if (rc == CURLE_OK)
        (void)curl_easy_setopt(c->easy, CURLOPT_CA_CACHE_TIMEOUT, CA_CACHE_S);
    return rc;
}

#undef SETOPT

/* Closes a connection and frees it; it is on no list. */
static void conn_free(struct vh_engine *e, struct conn *c)
{
    if (!c)
        return;
    if (c->state == C_CONNECTING)
        e->n_connecting--;
    /* Before libcurl closes the socket: its number may be the next connection's. */
    if (c->watched)
        (void)epoll_ctl(e->ep_fd, EPOLL_CTL_DEL, c->fd, NULL);
    if (c->easy) {
        curl_multi_remove_handle(e->multi, c->easy);
        curl_easy_cleanup(c->easy);
    }
    vh_buf_release(&c->req);
    vh_free(c);
}

/*
 * Puts a connection libcurl has handed over in the epoll set, waiting to be readable.
 * Returns 0 or an errno.
 */
static int conn_watch(struct vh_engine *e, struct conn *c)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};

    if (epoll_ctl(e->ep_fd, EPOLL_CTL_ADD, c->fd, &ev) != 0)
        return errno;
    c->watched = true;
    c->watch_out = false;
    return 0;
}

/*
 * Makes the epoll set wait for `c` to be writable as well as readable (`out`), or readable
 * only; false when epoll refused. A request goes out in one send unless it does not fit
 * the socket's buffer, so this changes nothing on most turns.
 */
static bool conn_watch_out(struct vh_engine *e, struct conn *c, bool out)
{
    struct epoll_event ev = {.events = EPOLLIN | (out ? EPOLLOUT : 0), .data.ptr = c};

    if (c->watch_out == out)
        return true;
    if (epoll_ctl(e->ep_fd, EPOLL_CTL_MOD, c->fd, &ev) != 0)
        return false;
    c->watch_out = out;
    return true;
}

/* A new connection to the job's origin, being made; NULL when out of memory. */
static struct conn *conn_new(struct vh_engine *e, const struct job *job, size_t origin_len,
                             CURLcode *rc)
{
    struct conn *c = vh_malloc(sizeof(*c) + origin_len + 1);
    int64_t left;

    *rc = CURLE_OUT_OF_MEMORY;
    if (!c)
        return NULL;
    memset(c, 0, sizeof(*c));
    c->fd = CURL_SOCKET_BAD;
    c->state = C_IDLE;
    vh_buf_init(&c->req, SIZE_MAX);
    c->allow_private = e->cfg.allow_private_networks;
    c->origin_len = origin_len;
    memcpy(c->origin, job->url, origin_len);
    c->origin[origin_len] = '\0';
    c->tls = strncasecmp(c->origin, "https://", 8) == 0;
    c->easy = curl_easy_init();
    left = job->deadline - vh_time_mono_ms();
    if (c->easy)
        *rc = conn_options(e, c, left > 0 ? left : 1); /* 0 would be no timeout at all */
    if (*rc == CURLE_OK && curl_multi_add_handle(e->multi, c->easy) != CURLM_OK)
        *rc = CURLE_OUT_OF_MEMORY;
    if (*rc != CURLE_OK) {
        conn_free(e, c);
        return NULL;
    }
    c->state = C_CONNECTING;
    e->n_connecting++;
    return c;
}

/*
 * Sends on the connection as curl_easy_send would, with its codes: over plain HTTP with
 * send(2) itself, since libcurl's way there (its transfer and filter checks) is one send
 * too; over TLS through libcurl, which encrypts.
 *
 * The first send on a connection goes through libcurl all the same. libcurl leaves a
 * connect-only connection in its cache detached from its easy handle, and the first
 * curl_easy_send or curl_easy_recv attaches it for good. A detached one looks unused to
 * libcurl, which prunes its cache as it makes a new connection: it would close one older
 * than CURLOPT_MAXAGE_CONN (counted from its connect, since libcurl never sees our sends)
 * under the engine, and the next socket would get its descriptor's number (found in
 * review: a request for one endpoint went out on another's connection).
 */
static CURLcode conn_write(struct conn *c, const char *p, size_t len, size_t *n)
{
    ssize_t w;

    if (c->tls || !c->attached) {
        CURLcode rc = curl_easy_send(c->easy, p, len, n);

        /* Attached unless libcurl found no connection (then it broke anyway). */
        c->attached = rc == CURLE_OK || rc == CURLE_AGAIN;
        return rc;
    }
    *n = 0;
    w = send(c->fd, p, len, MSG_NOSIGNAL);
    if (w >= 0) {
        *n = (size_t)w;
        return CURLE_OK;
    }
    return errno == EAGAIN || errno == EINTR ? CURLE_AGAIN : CURLE_SEND_ERROR;
}

/* Reads from the connection as curl_easy_recv would (0 bytes and CURLE_OK: the end). */
static CURLcode conn_read(struct conn *c, char *p, size_t len, size_t *n)
{
    ssize_t r;

    if (c->tls)
        return curl_easy_recv(c->easy, p, len, n);
    *n = 0;
    r = recv(c->fd, p, len, 0);
    if (r >= 0) {
        *n = (size_t)r;
        return CURLE_OK;
    }
    return errno == EAGAIN || errno == EINTR ? CURLE_AGAIN : CURLE_RECV_ERROR;
}

static void idle_unlink(struct vh_engine *e, struct conn *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        e->idle_head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    else
        e->idle_tail = c->prev;
    c->prev = c->next = NULL;
    e->n_idle--;
}

/*
 * Keeps a connection whose last response ended cleanly for the next request, newest first;
 * at max_total idle ones it is closed instead (never another: poll_serve holds pointers to
 * the listed ones).
 */
static void idle_push(struct vh_engine *e, struct conn *c)
{
    /* Waiting for room to write, an idle connection would end every wait at once. */
    if (e->n_idle >= e->cfg.max_total || !conn_watch_out(e, c, false)) {
        conn_free(e, c);
        return;
    }
    c->state = C_IDLE;
    c->job = NULL;
    c->served = true;
    c->checked = 0; /* a verdict from before it was taken says nothing of it now */
    c->idle_since = vh_time_mono_ms();
    /*
     * The request buffer is kept for the next request's memory, unless a large payload grew
     * it: up to max_total idle connections would otherwise each hold one (4 MiB at most).
     */
    if (c->req.cap > REQ_KEEP_MAX) {
        vh_buf_release(&c->req);
        vh_buf_init(&c->req, SIZE_MAX);
    }
    c->prev = NULL;
    c->next = e->idle_head;
    if (e->idle_head)
        e->idle_head->prev = c;
    else
        e->idle_tail = c;
    e->idle_head = c;
    e->n_idle++;
}

/*
 * Reads an idle connection once (through OpenSSL over TLS) to see that nothing waits on it:
 * true when the read would block. False when it returned bytes, the end of the stream or an
 * error: the connection cannot carry a request. A TLS record that is no data (a TLS 1.3
 * session ticket) is taken by the read and leaves it usable.
 */
static bool idle_read_quiet(struct conn *c)
{
    char buf[64];
    size_t n = 0;

    return conn_read(c, buf, sizeof(buf), &n) == CURLE_AGAIN;
}

/*
 * Whether everything `c` may have to read is still on its socket, where a poll sees it:
 * always over plain HTTP; over TLS when OpenSSL holds none of it (on_ssl_ctx).
 */
static bool socket_tells_all(const struct conn *c)
{
    return !c->tls || (c->ssl && !vh__tls_has_pending(c->ssl));
}

/* An idle connection without a verdict for this turn that a poll can give (idle_check). */
static bool idle_needs_check(const struct vh_engine *e, const struct conn *c)
{
    return c->checked != e->turn && socket_tells_all(c);
}

/*
 * Checks `first`, which a job is about to take, and the other idle connections that the
 * jobs still waiting may take in this turn and a poll can check (socket_tells_all), in one
 * poll(2) with timeout 0, instead of a recv on each (on a healthy connection it returns
 * EAGAIN: a system call per delivery, since a connection that poll_serve frees is taken by
 * the next start_ready without a poll between). Where the socket tells all (plain TCP, or
 * TLS with nothing in OpenSSL), a poll sees what a recv would: a quiet connection is taken
 * without one. One that shows anything (bytes, a close, an error) is dropped over plain TCP,
 * as the recv would have dropped it, and read over TLS (idle_take). A verdict holds
 * for its turn only, which the next start_ready or callback ends (e->turn), so between the
 * check and the send the engine thread only starts other jobs of this start_ready: bytes
 * arriving then are missed, as are those arriving between a recv and the send.
 *
 * The poll replaces `first`'s recv, so it never adds a system call. It is made only when it
 * can save one (a second connection to check), and covers at most one connection per job
 * that may still start in this turn, so a long idle list is not polled for one job. (The
 * epoll set cannot give these verdicts: a zero-timeout epoll_wait reports every ready
 * connection, and the turn must serve those it reports.)
 */
static void idle_check(struct vh_engine *e, struct conn *first)
{
    size_t slots = e->active < e->cfg.max_total ? e->cfg.max_total - e->active : 0;
    size_t max = 1 + (e->n_waiting < slots ? e->n_waiting : slots), n = 0, i;
    struct conn *c;

    e->wconn[n++] = first;
    for (c = e->idle_head; c && n < max; c = c->next)
        if (c != first && idle_needs_check(e, c))
            e->wconn[n++] = c;
    if (n < 2)
        return; /* one connection alone: its recv costs the same */
    for (i = 0; i < n; i++) {
        e->pfd[i].fd = e->wconn[i]->fd;
        e->pfd[i].events = POLLIN;
        e->pfd[i].revents = 0;
    }
    if (poll(e->pfd, (nfds_t)n, 0) < 0)
        return; /* no verdicts: each is checked by its recv */
    for (i = 0; i < n; i++) {
        e->wconn[i]->quiet = e->pfd[i].revents == 0;
        e->wconn[i]->checked = e->turn;
    }
}

/*
 * The most recently used idle connection to `origin` with nothing to read, taken off the
 * idle list; or NULL. Bytes waiting on an idle connection (a second TLS record sent after
 * an answer, which a read of the first did not take; a late close) would be read as the
 * next request's answer, so such a connection is closed here, as libcurl does before it
 * reuses one. The idle poll catches them too, but only when a poll comes between. The check
 * is idle_check's poll, one for the connections of the turn, where the socket tells all
 * (socket_tells_all); otherwise a recv, through OpenSSL. Over TLS a socket that shows
 * something gets the recv too: a record that is no data (a TLS 1.3 session ticket) leaves
 * the connection usable.
 */
static struct conn *idle_take(struct vh_engine *e, const char *origin, size_t len)
{
    struct conn *c, *next;
    bool polled;

    for (c = e->idle_head; c; c = next) {
        next = c->next;
        if (c->origin_len != len || memcmp(c->origin, origin, len) != 0)
            continue;
        if (idle_needs_check(e, c))
            idle_check(e, c);
        idle_unlink(e, c);
        polled = c->checked == e->turn && socket_tells_all(c);
        if (polled && c->quiet)
            return c;
        /* Over plain TCP a socket that shows anything is done with; over TLS, read it. */
        if ((!polled || c->tls) && idle_read_quiet(c))
            return c;
        conn_free(e, c);
    }
    return NULL;
}

#define LIT(s)                                                                                     \
    {                                                                                              \
        s, sizeof(s) - 1                                                                           \
    }

/* Writes `v` in decimal at `out`; returns the digits' count. */
static size_t put_decimal(size_t v, char out[24])
{
    char tmp[24];
    size_t n = 0, i;

    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    return n;
}

/*
 * The request of one attempt, signed now, into c->req: pieces copied in place (a format
 * string cost about 1.5 % of the drain's CPU).
 */
static int build_request(const struct job *job, struct conn *c)
{
    char ts[VH_TIME_LEN + 1], sig[VH_SIG_LEN + 1], len[24];
    const char *path = job->url + job->origin_len;
    struct vh_buf *b = &c->req;
    size_t path_len = strlen(path), i;
    const struct {
        const char *p;
        size_t n;
    } part[] = {
        {"POST /", path[0] == '/' ? 5 : 6}, /* the "/" only when the path lacks it */
        {path, path_len},
        LIT(" HTTP/1.1\r\nHost: "),
        {job->url + job->authority_off, job->origin_len - job->authority_off},
        LIT("\r\nUser-Agent: " USER_AGENT "\r\nAccept: */*\r\nContent-Type: application/json"
            "\r\nX-Webhook-Timestamp: "),
        {ts, VH_TIME_LEN},
        LIT("\r\nX-Webhook-Signature: "),
        {sig, VH_SIG_LEN},
        LIT("\r\nX-Webhook-Id: "),
        {job->event_id, strlen(job->event_id)},
        LIT("\r\nContent-Length: "),
        {len, put_decimal(job->body_len, len)},
        LIT("\r\n\r\n"),
        {job->body, job->body_len},
    };
    int rc;

    if (vh_time_format(job->started_ms, ts) < 0 ||
        vh_sign(job->secret, job->secret_len, ts, VH_TIME_LEN, job->body, job->body_len, sig,
                NULL) < 0)
        return VH_ENOMEM;
    vh_buf_reset(b);
    rc = vh_buf_grow(b, 512 + job->origin_len + path_len + job->body_len);
    for (i = 0; rc == 0 && i < sizeof(part) / sizeof(part[0]); i++)
        rc = vh_buf_add(b, part[i].p, part[i].n);
    return rc;
}

#undef LIT

static void active_link(struct vh_engine *e, struct job *job)
{
    job->aprev = NULL;
    job->anext = e->active_head;
    if (e->active_head)
        e->active_head->aprev = job;
    e->active_head = job;
    e->active++;
    job->ep->active++;
}

static void active_unlink(struct vh_engine *e, struct job *job)
{
    if (job->aprev)
        job->aprev->anext = job->anext;
    else
        e->active_head = job->anext;
    if (job->anext)
        job->anext->aprev = job->aprev;
    job->aprev = job->anext = NULL;
    e->active--;
    job->ep->active--;
}

static enum vh_attempt_result result_of_status(long status)
{
    if (status >= 200 && status <= 299)
        return VH_ATTEMPT_OK;
    if (status >= 300 && status <= 399)
        return VH_ATTEMPT_REDIRECT;
    if (status >= 100 && status <= 999)
        return VH_ATTEMPT_HTTP_STATUS;
    return VH_ATTEMPT_PROTOCOL;
}

/* A failed connect-only transfer as an attempt result. */
static enum vh_attempt_result classify_connect(CURLcode rc, const struct conn *c)
{
    if (c->blocked && rc == CURLE_COULDNT_CONNECT)
        return VH_ATTEMPT_BLOCKED;
    switch (rc) {
    case CURLE_OPERATION_TIMEDOUT:
        return VH_ATTEMPT_TIMEOUT;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        return VH_ATTEMPT_DNS;
    case CURLE_COULDNT_CONNECT:
        return VH_ATTEMPT_CONNECT;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_SHUTDOWN_FAILED:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_ENGINE_INITFAILED:
    case CURLE_USE_SSL_FAILED:
        return VH_ATTEMPT_TLS;
    case CURLE_URL_MALFORMAT:
        /* An unusable destination, refused before any connection, like a bad scheme. */
        return VH_ATTEMPT_BLOCKED;
    case CURLE_OUT_OF_MEMORY:
    case CURLE_FAILED_INIT:
    case CURLE_BAD_FUNCTION_ARGUMENT:
        return VH_ATTEMPT_INTERNAL;
    default:
        return VH_ATTEMPT_CONNECT;
    }
}

/*
 * Ends a job's attempt on connection `c` (NULL when it never got one) with result `r`:
 * reports it, and keeps the connection for the next request when `keep`, else closes it.
 * `error` is the report's error line ("" for none).
 */
static void job_end(struct vh_engine *e, struct job *job, enum vh_attempt_result r,
                    const char *error, bool keep)
{
    struct endpoint *ep = job->ep;
    struct conn *c = job->c;
    struct vh_attempt a;

    memset(&a, 0, sizeof(a));
    a.number = job->attempt;
    a.result = r;
    a.started_ms = job->started_ms;
    a.duration_ms = vh_time_mono_ms() - job->started_mono;
    snprintf(a.error, sizeof(a.error), "%s", error);
    if (c) {
        a.http_status = c->h1.status >= 100 ? c->h1.status : 0;
        a.reused_connection = job->reused;
        a.response_read = c->read;
        a.response_len = c->head_len;
        memcpy(a.response_head, c->head, c->head_len);
        a.response_head[c->head_len] = '\0';
        job->c = NULL;
        /*
         * Bytes OpenSSL read ahead with the answer (a close_notify, a record nobody asked
         * for) will never show on the socket: read them now.
         */
        if (keep && c->ssl && vh__tls_has_pending(c->ssl))
            keep = idle_read_quiet(c);
        if (keep)
            idle_push(e, c);
        else
            conn_free(e, c);
    }
    active_unlink(e, job);
    /* Released before the callback: the body is the caller's again once it runs. */
    job_report(e, job, &a);
    endpoint_settle(e, ep);
}

static void conn_send(struct vh_engine *e, struct conn *c);
static bool conn_recv(struct vh_engine *e, struct conn *c);

/*
 * Puts the job on connection `c` (an idle one, or one libcurl just connected) and sends
 * what it can of the request.
 */
static void conn_begin(struct vh_engine *e, struct conn *c, struct job *job)
{
    c->job = job;
    job->c = c;
    job->reused = c->served;
    c->sent = c->got = c->read = c->head_len = c->in_len = 0;
    c->capped = c->more = false;
    vh__h1_init(&c->h1);
    if (build_request(job, c) != 0) {
        job_end(e, job, VH_ATTEMPT_INTERNAL, "out of memory building the request", false);
        return;
    }
    c->state = C_SENDING;
    conn_send(e, c);
}

/*
 * Starts the attempt on a connection to the job's origin: an idle one, or a new one. A
 * request that failed on a reused connection before any response byte comes here once more
 * (`retry`): the server may have closed it while it was idle.
 */
static void job_connect(struct vh_engine *e, struct job *job, bool retry)
{
    struct conn *c;
    CURLcode rc;

    c = retry ? NULL : idle_take(e, job->url, job->origin_len);
    if (c) {
        conn_begin(e, c, job);
        return;
    }
    c = conn_new(e, job, job->origin_len, &rc);
    if (!c) {
        job_end(e, job, VH_ATTEMPT_INTERNAL, curl_easy_strerror(rc), false);
        return;
    }
    c->job = job;
    job->c = c;
    job->reused = false;
}

/*
 * The request or response failed on the connection (`why`). On a connection that served
 * before, with nothing of the response received, the server most likely closed it while
 * idle: the job goes again once on a new connection (libcurl did the same).
 */
static void conn_broke(struct vh_engine *e, struct conn *c, const char *why)
{
    struct job *job = c->job;

    if (c->served && c->got == 0 && !job->retried) {
        job->retried = true;
        job->c = NULL;
        conn_free(e, c);
        job_connect(e, job, true);
        return;
    }
    job_end(e, job, VH_ATTEMPT_RESET, why, false);
}

/*
 * Sends what the socket takes of the request. A server may answer before it has read the
 * whole body (a 413 or 401 on the head) and close: a failed send first reads what arrived,
 * so the attempt is judged by that answer, not recorded as a reset.
 */
static void conn_send(struct vh_engine *e, struct conn *c)
{
    char why[VH_ATTEMPT_ERROR_MAX];
    size_t n;
    CURLcode rc;

    while (c->sent < c->req.len) {
        n = 0;
        rc = conn_write(c, c->req.data + c->sent, c->req.len - c->sent, &n);
        if (rc == CURLE_AGAIN)
            return;
        if (rc != CURLE_OK) {
            snprintf(why, sizeof(why), "sending the request failed: %s", curl_easy_strerror(rc));
            /* An answer longer than a turn is read on in the next ones. */
            if (conn_recv(e, c))
                return;
            if (c->more)
                c->state = C_RECEIVING;
            else
                conn_broke(e, c, why);
            return;
        }
        c->sent += n;
    }
    c->state = C_RECEIVING;
}

/* Keeps the first body bytes for the report, counts them, and stops at the bound. */
static void on_body(void *ud, const char *p, size_t n)
{
    struct conn *c = ud;
    size_t keep = n;

    if (keep > VH_ATTEMPT_READ_MAX - c->read) {
        keep = VH_ATTEMPT_READ_MAX - c->read;
        c->capped = true;
    }
    if (c->head_len < VH_ATTEMPT_HEAD_MAX) {
        size_t k =
            keep < VH_ATTEMPT_HEAD_MAX - c->head_len ? keep : VH_ATTEMPT_HEAD_MAX - c->head_len;

        memcpy(c->head + c->head_len, p, k);
        c->head_len += k;
    }
    c->read += keep;
}

/*
 * Judges the response once the parser has said DONE or ERROR, or the body or the whole
 * response reached its bound. Returns false when the attempt goes on.
 */
static bool conn_judge(struct vh_engine *e, struct conn *c)
{
    struct job *job = c->job;

    if (c->h1.state == VH__H1_ERROR) {
        job_end(e, job, VH_ATTEMPT_PROTOCOL, c->h1.error, false);
        return true;
    }
    if (c->h1.state == VH__H1_DONE) {
        /* An answer that came before the whole request went out leaves the rest unsent. */
        job_end(e, job, result_of_status(c->h1.status), "",
                c->h1.keep_alive && c->in_len == 0 && !c->capped && c->sent == c->req.len);
        return true;
    }
    if (c->capped || c->got >= RESP_MAX) {
        /*
         * Judged by its status, like a complete one; the rest is not read. Bytes that are
         * not body (interim answers, chunk framing, trailers) count too: an answer that
         * never ends would otherwise hold the engine thread for as long as it keeps coming.
         */
        job_end(e, job, result_of_status(c->h1.status),
                c->h1.status ? "" : "no final response in the first 1 MiB", false);
        return true;
    }
    return false;
}

/*
 * Reads into `in`: once, or (`greedy`) until nothing more is there, the buffer is full, the
 * stream ends or fails, or `*budget` reads are spent (the last read's code in `*rc`, its
 * count in `*last`). Returns the bytes read. Over TLS one read returns at most one record:
 * parsing after each would parse an unfinished head again for every record, and a server
 * sending its head one byte per record made that quadratic (16 Ki parses of up to 16 KiB),
 * slower than the server sent, so the engine thread never got back to its loop while it
 * lasted. The first read of a turn is not greedy: an answer that comes whole in it is
 * judged without a second read, which would only return EAGAIN (a system call per delivery).
 */
static size_t conn_fill(struct conn *c, bool greedy, unsigned *budget, CURLcode *rc, size_t *last)
{
    size_t got = 0, n;

    do {
        n = 0;
        *rc = conn_read(c, c->in + c->in_len, sizeof(c->in) - c->in_len, &n);
        c->in_len += n;
        got += n;
    } while (greedy && *rc == CURLE_OK && n > 0 && c->in_len < sizeof(c->in) && --*budget > 0);
    *last = n;
    return got;
}

/*
 * Reads what has arrived of the response, until it is complete, nothing more is there, or
 * its turn's READS_MAX reads are spent; also while the request is still going out (an early
 * answer). Bytes read before a close or a failure are parsed first: an answer that came
 * whole is judged by itself. Returns true when the attempt ended (`c` is then gone), false
 * when it waits for more, or (`c->more`) for its next turn.
 *
 * The turn is bounded because RESP_MAX bounds bytes, not work: over TLS a record may carry
 * one byte, and 1 MiB of them cost the engine thread seconds, every endpoint waiting and
 * the attempt's deadline passing unseen. Bytes left then may be decrypted and waiting in
 * libcurl's TLS layer with the socket quiet, so the next turn does not wait for poll.
 */
static bool conn_recv(struct vh_engine *e, struct conn *c)
{
    char why[VH_ATTEMPT_ERROR_MAX];
    size_t n, used, last;
    unsigned budget = READS_MAX;
    bool greedy = false;
    CURLcode rc;

    c->more = false;
    for (;; greedy = true) {
        if (c->in_len == sizeof(c->in)) {
            /* The parser makes progress on a full buffer (h1_int.h); this is a bug guard. */
            job_end(e, c->job, VH_ATTEMPT_PROTOCOL, "a response the parser could not frame", false);
            return true;
        }
        n = conn_fill(c, greedy, &budget, &rc, &last);
        if (n) {
            c->got += n;
            used = vh__h1_parse(&c->h1, c->in, c->in_len, on_body, c);
            c->in_len -= used;
            if (c->in_len && used)
                memmove(c->in, c->in + used, c->in_len);
            /* The stream ended or failed after these bytes: nothing can follow them. */
            if (rc == CURLE_OK ? last == 0 : rc != CURLE_AGAIN)
                c->h1.keep_alive = false;
            if (conn_judge(e, c))
                return true;
        }
        if (rc == CURLE_AGAIN)
            return false;
        if (rc != CURLE_OK) {
            snprintf(why, sizeof(why), "reading the response failed: %s", curl_easy_strerror(rc));
            conn_broke(e, c, why);
            return true;
        }
        if (last == 0) {
            if (c->got == 0) {
                conn_broke(e, c, "the connection closed without a response");
                return true;
            }
            if (vh__h1_eof(&c->h1) == VH__H1_DONE) {
                c->h1.keep_alive = false;
                conn_judge(e, c);
            } else {
                job_end(e, c->job, VH_ATTEMPT_RESET, c->h1.error, false);
            }
            return true;
        }
        if (budget == 0) {
            c->more = true;
            return false;
        }
    }
}

/*
 * An idle connection became readable: the server closed it (or sent what nobody asked
 * for). Either way it cannot carry a request. TLS records that are not data (a TLS 1.3
 * session ticket) leave it idle.
 */
static void idle_readable(struct vh_engine *e, struct conn *c)
{
    if (idle_read_quiet(c))
        return;
    idle_unlink(e, c);
    conn_free(e, c);
}

/* libcurl finished connecting `c` (or failed to). */
static void conn_connected(struct vh_engine *e, struct conn *c, CURLcode rc)
{
    struct job *job = c->job;
    char why[VH_ATTEMPT_ERROR_MAX];
    enum vh_attempt_result r;

    c->state = C_IDLE; /* out of C_CONNECTING */
    e->n_connecting--;
    if (rc == CURLE_OK && curl_easy_getinfo(c->easy, CURLINFO_ACTIVESOCKET, &c->fd) == CURLE_OK &&
        c->fd != CURL_SOCKET_BAD) {
        int werr = conn_watch(e, c);

        if (werr == 0) {
            conn_begin(e, c, job);
            return;
        }
        snprintf(why, sizeof(why), "cannot wait for the connection (epoll_ctl: %s)",
                 strerror(werr));
        job_end(e, job, VH_ATTEMPT_INTERNAL, why, false);
        return;
    }
    if (rc == CURLE_OK)
        rc = CURLE_COULDNT_CONNECT;
    r = classify_connect(rc, c);
    if (r == VH_ATTEMPT_BLOCKED && c->blocked) {
        /*
         * The attempt's error is the partner's to read (delivery history): it must not tell
         * what one of our names resolves to (split-horizon DNS). The address goes to our log.
         */
        snprintf(why, sizeof(why),
                 "destination is not a public address (allow_private_networks is off)");
        log_rec(e, VH_LOG_WARN, "blocked destination", ",\"address\":\"%s\"", c->blocked_addr);
    } else {
        snprintf(why, sizeof(why), "%s", c->errbuf[0] ? c->errbuf : curl_easy_strerror(rc));
    }
    job_end(e, job, r, why, false);
}

/*
 * Starts one job: an allowed URL gets a connection (reused or new). A job that cannot start
 * is reported at once (BLOCKED for a refused scheme or URL, INTERNAL when out of memory).
 */
static void job_start(struct vh_engine *e, struct job *job)
{
    const char *bad;

    if (!scheme_allowed(e, job->url)) {
        job_report_now(e, job, VH_ATTEMPT_BLOCKED,
                       e->cfg.allow_http ? "only http:// and https:// URLs are allowed"
                                         : "only https:// URLs are allowed (allow_http is off)");
        return;
    }
    bad = split_url(job);
    if (bad) {
        job_report_now(e, job, VH_ATTEMPT_BLOCKED, bad);
        return;
    }
    job->started_ms = vh_time_now_ms();
    if (job->start_by_ms && job->started_ms > job->start_by_ms) {
        job_report_now(e, job, VH_ATTEMPT_INTERRUPTED,
                       "not started: it waited in the queue past its start-by time");
        return;
    }
    job->started_mono = vh_time_mono_ms();
    job->deadline = job->started_mono + job->timeout_ms;
    active_link(e, job);
    job_connect(e, job, false);
}

/* Starts waiting jobs, one per ready endpoint in turn, while the total cap allows. */
static void start_ready(struct vh_engine *e)
{
    struct endpoint *ep;
    struct job *job;

    e->turn++; /* the engine polled since the last one: idle_check's verdicts are stale */
    while (e->active < e->cfg.max_total) {
        ep = ready_pop(e);
        if (!ep)
            break;
        job = endpoint_dequeue(e, ep);
        /* Counted before the start, so a job reported at once cannot free the endpoint. */
        ep->active++;
        job_start(e, job);
        ep->active--;
        endpoint_settle(e, ep);
    }
}

/* Hands libcurl's finished connects to their jobs. */
static void finish_connects(struct vh_engine *e)
{
    struct CURLMsg *msg;
    int left;

    for (;;) {
        char *c = NULL;

        msg = curl_multi_info_read(e->multi, &left);
        if (!msg)
            break;
        if (msg->msg != CURLMSG_DONE)
            continue;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &c);
        if (c && ((struct conn *)c)->state == C_CONNECTING)
            conn_connected(e, (struct conn *)c, msg->data.result);
    }
}

/* Ends the attempts whose time is up; returns the earliest deadline left (INT64_MAX: none). */
static int64_t expire(struct vh_engine *e, int64_t now)
{
    struct job *job, *next;
    int64_t first = INT64_MAX;
    char why[VH_ATTEMPT_ERROR_MAX];

    for (job = e->active_head; job; job = next) {
        next = job->anext;
        if (now >= job->deadline) {
            snprintf(why, sizeof(why), "no complete response within %lld ms",
                     (long long)job->timeout_ms);
            job_end(e, job, VH_ATTEMPT_TIMEOUT, why, false);
        } else if (job->deadline < first) {
            first = job->deadline;
        }
    }
    while (e->idle_tail && now - e->idle_tail->idle_since >= e->cfg.idle_max_ms) {
        struct conn *c = e->idle_tail;

        idle_unlink(e, c);
        conn_free(e, c);
    }
    if (e->idle_tail && e->idle_tail->idle_since + e->cfg.idle_max_ms < first)
        first = e->idle_tail->idle_since + e->cfg.idle_max_ms;
    return first;
}

/*
 * Readies the epoll set for a wait: a connection still sending waits for room to write as
 * well, every other one for bytes only (a change is an epoll_ctl, so the common turn makes
 * none). A connection epoll refuses is broken off. Lists in e->more the connections with
 * bytes left from their last turn, which may be decrypted already with the socket quiet
 * (conn_recv): the wait must not sleep then, and poll_serve serves them whatever epoll
 * says. Returns their count.
 */
static unsigned poll_set(struct vh_engine *e)
{
    unsigned n = 0;
    struct job *job, *next;
    struct conn *c;

    for (job = e->active_head; job; job = next) {
        next = job->anext; /* conn_broke ends this job at most */
        c = job->c;
        if (!c || (c->state != C_SENDING && c->state != C_RECEIVING))
            continue;
        if (!conn_watch_out(e, c, c->state == C_SENDING)) {
            conn_broke(e, c, "cannot wait for the connection (epoll_ctl failed)");
            continue;
        }
        if (c->more)
            e->more[n++] = c;
    }
    return n;
}

/*
 * Sleeps until the wakeup or a watched connection needs us, or (while connecting) libcurl
 * does, or `timeout_ms` passes; then collects what is ready into e->evs, with the `n_more`
 * connections of e->more as readable. Returns the count. While a connect is in progress,
 * curl_multi_poll waits with the epoll descriptor as its extra one (readable when anything
 * in the set is ready), and a zero-timeout epoll_wait collects after it. epoll reports a
 * socket's error or hang-up whatever it waits for; poll_serve treats either as every event
 * waited for, so the send or receive that follows meets the error.
 */
static unsigned poll_wait(struct vh_engine *e, unsigned n_more, int timeout_ms)
{
    unsigned cap = 2 * e->cfg.max_total + 1, n, i, k;
    int got;

    if (n_more)
        timeout_ms = 0;
    if (e->n_connecting) {
        struct curl_waitfd w = {.fd = e->ep_fd, .events = CURL_WAIT_POLLIN};

        curl_multi_poll(e->multi, &w, 1, timeout_ms, NULL);
        timeout_ms = 0;
    }
    /* Room is kept for the listed ones; a ready socket left out is ready at the next wait. */
    got = epoll_wait(e->ep_fd, e->evs, (int)(cap - n_more), timeout_ms);
    n = got > 0 ? (unsigned)got : 0;
    for (k = 0; k < n_more; k++) {
        for (i = 0; i < n && e->evs[i].data.ptr != e->more[k]; i++)
            ;
        if (i == n) {
            e->evs[n].events = 0;
            e->evs[n++].data.ptr = e->more[k];
        }
        e->evs[i].events |= EPOLLIN; /* its next turn: see conn_recv */
    }
    return n;
}

/*
 * Serves the wakeup and the connections poll_wait collected. Each entry is its own
 * connection, and serving one frees no other listed one: only start_ready takes or drops
 * idle connections, and a job ends only on its own connection.
 */
static void poll_serve(struct vh_engine *e, unsigned n)
{
    uint64_t count;
    unsigned i;
    uint32_t r;
    struct conn *c;

    for (i = 0; i < n; i++) {
        c = e->evs[i].data.ptr;
        r = e->evs[i].events;
        if (!c) {
            (void)!read(e->wake_fd, &count, sizeof(count)); /* resets the eventfd */
            continue;
        }
        if (r & (EPOLLERR | EPOLLHUP))
            r |= EPOLLIN | EPOLLOUT;
        if (c->state == C_IDLE)
            idle_readable(e, c);
        else if (c->state == C_SENDING && (r & EPOLLIN) && conn_recv(e, c))
            continue; /* answered early: the attempt is over */
        else if (c->state == C_SENDING && (r & EPOLLOUT))
            conn_send(e, c);
        else if (c->state == C_RECEIVING && (r & EPOLLIN))
            conn_recv(e, c);
    }
}

/* Wakes the engine thread (from any thread). */
static void engine_wake(struct vh_engine *e)
{
    uint64_t one = 1;

    /* Only an eventfd at its maximum count refuses, and that one is already readable. */
    (void)!write(e->wake_fd, &one, sizeof(one));
}

/* ---- the engine thread ----------------------------------------------------------------------- */

/*
 * Reports every job waiting on `ep`'s queue as interrupted, through the path of a job past its
 * start-by time: no connection is made, no attempt used up. Its active jobs go on. `ep` may
 * be freed.
 */
static void drop_queue(struct vh_engine *e, struct endpoint *ep, const char *why)
{
    struct job *job, *next;

    if (!ep->head)
        return;
    job = ep->head;
    ep->head = ep->tail = NULL;
    if (ep->ready)
        ready_remove(e, ep);
    ep->active++; /* keeps the endpoint alive through the callbacks */
    for (; job; job = next) {
        next = job->next;
        job->next = NULL;
        e->n_waiting--;
        job_report_now(e, job, VH_ATTEMPT_INTERRUPTED, why);
    }
    ep->active--;
    endpoint_settle(e, ep);
}

/* A drop mark's work: the queue of `key`, or (NULL) every endpoint's queue. */
static void drop_waiting(struct vh_engine *e, const char *key)
{
    struct endpoint *ep, *next;
    size_t i, len;

    if (key) {
        len = strlen(key);
        ep = endpoint_find(e, key, len, hash_key(key, len));
        if (ep)
            drop_queue(e, ep, "not started: its endpoint changed while it waited in the queue");
        return;
    }
    /* The callbacks only submit (to the incoming list): no endpoint is added meanwhile. */
    for (i = 0; i < e->n_buckets; i++) {
        for (ep = e->buckets[i]; ep; ep = next) {
            next = ep->hnext;
            drop_queue(e, ep,
                       "not started: its endpoint may have changed while it waited in the queue");
        }
    }
}

/*
 * Moves submitted jobs to their endpoint queues, or, once stopping, reports them
 * interrupted. A drop mark empties its endpoint's queue of the jobs submitted before it,
 * and its caller is told once every one of them has been reported. Returns whether the
 * engine is stopping (read under the same lock as the jobs, so no job can arrive after a
 * `true`).
 */
static bool take_incoming(struct vh_engine *e, int64_t *grace_ms)
{
    struct job *job, *next;
    uint64_t drops = 0;
    bool stopping;

    pthread_mutex_lock(&e->lock);
    job = e->in_head;
    e->in_head = e->in_tail = NULL;
    stopping = e->stopping;
    *grace_ms = e->grace_ms;
    pthread_mutex_unlock(&e->lock);
    for (; job; job = next) {
        next = job->next;
        job->next = NULL;
        if (job->drop) {
            if (!stopping)
                drop_waiting(e, job->key);
            vh_free(job);
            drops++;
        } else if (stopping) {
            job_report_now(e, job, VH_ATTEMPT_INTERRUPTED, "interrupted by shutdown");
        } else {
            endpoint_enqueue(e, job);
        }
    }
    if (drops) {
        pthread_mutex_lock(&e->lock);
        e->drops_done += drops;
        pthread_cond_broadcast(&e->dropped);
        pthread_mutex_unlock(&e->lock);
    }
    return stopping;
}

/* Reports every job still waiting on an endpoint queue as interrupted. */
static void interrupt_waiting(struct vh_engine *e)
{
    struct endpoint *ep, *next;
    struct job *job;
    size_t i;

    while (ready_pop(e))
        ;
    for (i = 0; i < e->n_buckets; i++) {
        for (ep = e->buckets[i]; ep; ep = next) {
            next = ep->hnext;
            ep->active++; /* keeps the endpoint alive through the callbacks */
            for (job = endpoint_dequeue(e, ep); job; job = endpoint_dequeue(e, ep))
                job_report_now(e, job, VH_ATTEMPT_INTERRUPTED, "interrupted by shutdown");
            ep->active--;
            if (ep->active == 0)
                endpoint_drop(e, ep);
        }
    }
}

static void interrupt_active(struct vh_engine *e)
{
    while (e->active_head)
        job_end(e, e->active_head, VH_ATTEMPT_INTERRUPTED, "interrupted by shutdown", false);
}

static void close_idle(struct vh_engine *e)
{
    struct conn *c;

    while ((c = e->idle_head)) {
        idle_unlink(e, c);
        conn_free(e, c);
    }
}

/* How long to sleep: until a deadline (`first`, the stop's), at most POLL_IDLE_MS. */
static int poll_timeout(const struct vh_engine *e, bool stopping, int64_t deadline, int64_t first,
                        int64_t now)
{
    int64_t left;

    if (!stopping && e->ready_head && e->active < e->cfg.max_total)
        return 0;
    if (stopping && deadline < first)
        first = deadline;
    if (first == INT64_MAX)
        return POLL_IDLE_MS;
    left = first - now;
    if (left < 0)
        return 0;
    return left < POLL_IDLE_MS ? (int)left : POLL_IDLE_MS;
}

static void *engine_main(void *arg)
{
    struct vh_engine *e = arg;
    bool stopping = false;
    int64_t deadline = 0, grace = 0, now, first;
    int running;
    unsigned n;

    vh__thread_name("vh-engine");
    if (e->cfg.sched_batch) {
        int rc = vh__thread_sched_batch();

        if (rc)
            log_rec(e, VH_LOG_WARN, "SCHED_BATCH refused; the engine keeps its policy",
                    ",\"error\":\"%s\"", strerror(rc));
    }
    for (;;) {
        if (take_incoming(e, &grace) && !stopping) {
            stopping = true;
            deadline = vh_time_mono_ms() + grace;
            interrupt_waiting(e);
            close_idle(e);
            log_rec(e, VH_LOG_INFO, "engine stopping", ",\"active\":%u,\"grace_ms\":%lld",
                    e->active, (long long)grace);
        }
        if (!stopping)
            start_ready(e);
        /* libcurl has work only while it connects: the requests and answers are ours. */
        if (e->n_connecting) {
            curl_multi_perform(e->multi, &running);
            finish_connects(e);
        }
        now = vh_time_mono_ms();
        first = expire(e, now);
        if (stopping && (!e->active_head || now >= deadline))
            break;
        n = poll_set(e);
        n = poll_wait(e, n, poll_timeout(e, stopping, deadline, first, now));
        poll_serve(e, n);
    }
    interrupt_active(e);
    close_idle(e);
    return NULL;
}

/* ---- the API --------------------------------------------------------------------------------- */

void vh_engine_config_init(struct vh_engine_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->max_per_endpoint = VH_ENGINE_MAX_PER_ENDPOINT_DEFAULT;
    cfg->max_total = VH_ENGINE_MAX_TOTAL_DEFAULT;
    cfg->idle_max_ms = VH_ENGINE_IDLE_MAX_MS_DEFAULT;
    cfg->max_queued = VH_ENGINE_MAX_QUEUED_DEFAULT;
    cfg->timeout_ms = VH_RETRY_TIMEOUT_DEFAULT_MS;
    cfg->log_level = VH_LOG_DEBUG;
}

static void *curl_calloc(size_t n, size_t size)
{
    void *p;

    if (size && n > SIZE_MAX / size)
        return NULL;
    p = vh_malloc(n * size);
    if (p)
        memset(p, 0, n * size);
    return p;
}

static char *curl_strdup(const char *s)
{
    return vh_strndup(s, strlen(s));
}

static int check_config(const struct vh_engine_config *cfg, struct vh_error *err)
{
    struct stat sb;
    FILE *f;
    bool is_file;

    if (cfg->max_per_endpoint < 1 || cfg->max_total < 1 || cfg->max_queued < 1)
        return vh_error_set(err, VH_EINVAL,
                            "engine: max_per_endpoint, max_total and max_queued "
                            "must be at least 1");
    if (cfg->max_total > 65536)
        return vh_error_set(err, VH_EINVAL, "engine: max_total is over 65536");
    if (cfg->timeout_ms < 1 || cfg->timeout_ms > VH_RETRY_DELAY_MAX_MS)
        return vh_error_set(err, VH_EINVAL, "engine: timeout out of range");
    if (cfg->idle_max_ms && (cfg->idle_max_ms < VH_ENGINE_IDLE_MAX_MS_MIN ||
                             cfg->idle_max_ms > VH_ENGINE_IDLE_MAX_MS_MAX))
        return vh_error_set(err, VH_EINVAL, "engine: idle_max_ms is out of range (%d..%d ms)",
                            VH_ENGINE_IDLE_MAX_MS_MIN, VH_ENGINE_IDLE_MAX_MS_MAX);
    if (cfg->ca_file) {
        /* Checked now: a bad path would otherwise fail every HTTPS attempt, one by one. */
        f = fopen(cfg->ca_file, "r");
        if (!f)
            return vh_error_set(err, VH_EIO, "engine: cannot read CA file '%s'", cfg->ca_file);
        /* A directory opens too, and libcurl refuses it at each transfer all the same. */
        is_file = fstat(fileno(f), &sb) == 0 && S_ISREG(sb.st_mode);
        fclose(f);
        if (!is_file)
            return vh_error_set(err, VH_EIO, "engine: CA file '%s' is not a file", cfg->ca_file);
    }
    return 0;
}

/* Frees what vh_engine_new set up; the thread is not running. */
static void engine_release(struct vh_engine *e, bool curl_inited)
{
    struct endpoint *ep;
    size_t i;

    /* Before the multi and share handles: the engine thread's connections need them. */
    close_idle(e);
    for (i = 0; e->buckets && i < e->n_buckets; i++) {
        for (ep = e->buckets[i]; ep; ep = e->buckets[i]) {
            e->buckets[i] = ep->hnext;
            vh_free(ep);
        }
    }
    if (e->multi)
        curl_multi_cleanup(e->multi);
    if (e->share)
        curl_share_cleanup(e->share);
    if (curl_inited)
        curl_global_cleanup();
    vh_free(e->buckets);
    vh_free(e->evs);
    vh_free(e->more);
    vh_free(e->pfd);
    vh_free(e->wconn);
    if (e->ep_fd >= 0)
        close(e->ep_fd);
    if (e->wake_fd >= 0)
        close(e->wake_fd);
    vh_free(e->ca_file);
    pthread_cond_destroy(&e->dropped);
    pthread_mutex_destroy(&e->lock);
    pthread_mutex_destroy(&e->stop_lock);
    vh_free(e);
}

int vh_engine_new(const struct vh_engine_config *cfg, struct vh_engine **out, struct vh_error *err)
{
    struct vh_engine *e;
    bool curl_inited = false;
    int rc;

    if (!cfg || !out)
        return vh_error_set(err, VH_EINVAL, "engine: missing argument");
    rc = check_config(cfg, err);
    if (rc < 0)
        return rc;
    e = vh_malloc(sizeof(*e));
    if (!e)
        return vh_error_set(err, VH_ENOMEM, "engine: out of memory");
    memset(e, 0, sizeof(*e));
    e->wake_fd = e->ep_fd = -1;
    pthread_mutex_init(&e->lock, NULL);
    pthread_mutex_init(&e->stop_lock, NULL);
    pthread_cond_init(&e->dropped, NULL);
    e->cfg = *cfg;
    e->cfg.ca_file = NULL;
    if (!e->cfg.idle_max_ms)
        e->cfg.idle_max_ms = VH_ENGINE_IDLE_MAX_MS_DEFAULT;
    rc = VH_ENOMEM;
    if (cfg->ca_file) {
        e->ca_file = vh_strndup(cfg->ca_file, strlen(cfg->ca_file));
        if (!e->ca_file)
            goto fail;
        e->cfg.ca_file = e->ca_file;
    }
    e->n_buckets = BUCKETS_MIN;
    e->buckets = vh_malloc(e->n_buckets * sizeof(*e->buckets));
    if (!e->buckets)
        goto fail;
    memset(e->buckets, 0, e->n_buckets * sizeof(*e->buckets));
    e->evs = vh_malloc((2 * (size_t)cfg->max_total + 1) * sizeof(*e->evs));
    e->more = vh_malloc((size_t)cfg->max_total * sizeof(*e->more));
    e->pfd = vh_malloc(((size_t)cfg->max_total + 1) * sizeof(*e->pfd));
    e->wconn = vh_malloc(((size_t)cfg->max_total + 1) * sizeof(*e->wconn));
    if (!e->evs || !e->more || !e->pfd || !e->wconn)
        goto fail;
    e->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (e->wake_fd < 0) {
        rc = vh_error_set(err, VH_EIO, "engine: cannot make an eventfd: %s", strerror(errno));
        goto fail;
    }
    e->ep_fd = epoll_create1(EPOLL_CLOEXEC);
    if (e->ep_fd < 0 ||
        epoll_ctl(e->ep_fd, EPOLL_CTL_ADD, e->wake_fd,
                  &(struct epoll_event){.events = EPOLLIN, .data.ptr = NULL}) != 0) {
        rc = vh_error_set(err, VH_EIO, "engine: cannot make an epoll set: %s", strerror(errno));
        goto fail;
    }
    /*
     * libcurl allocates through our hook too (it is reference-counted: the first init picks
     * the functions, later ones only count).
     */
    if (curl_global_init_mem(CURL_GLOBAL_DEFAULT, vh_malloc, vh_free, vh_realloc, curl_strdup,
                             curl_calloc) != CURLE_OK)
        goto fail;
    curl_inited = true;
    {
        const curl_version_info_data *v = curl_version_info(CURLVERSION_NOW);

        e->tls_poll = v->ssl_version && strncmp(v->ssl_version, "OpenSSL/", 8) == 0 &&
                      v->version_num < 0x080000;
    }
    e->multi = curl_multi_init();
    e->share = curl_share_init();
    if (!e->multi || !e->share)
        goto fail;
    /*
     * Connections are already shared by every easy handle of the multi handle; TLS
     * sessions are not (each easy handle has its own cache), hence the share handle. It is
     * used by the engine thread only, so it needs no lock callbacks.
     */
    if (curl_share_setopt(e->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION) != CURLSHE_OK)
        goto fail;
    if (pthread_create(&e->thread, NULL, engine_main, e) != 0) {
        rc = vh_error_set(err, VH_EIO, "engine: cannot start the engine thread");
        goto fail;
    }
    e->thread_started = true;
    log_rec(e, VH_LOG_INFO, "engine started",
            ",\"max_per_endpoint\":%u,\"max_total\":%u,\"timeout_ms\":%lld,\"allow_http\":%s,"
            "\"allow_private_networks\":%s,\"libcurl\":\"%s\"",
            cfg->max_per_endpoint, cfg->max_total, (long long)cfg->timeout_ms,
            cfg->allow_http ? "true" : "false", cfg->allow_private_networks ? "true" : "false",
            curl_version_info(CURLVERSION_NOW)->version);
    *out = e;
    return 0;
fail:
    if (rc == VH_ENOMEM)
        vh_error_set(err, VH_ENOMEM, "engine: out of memory");
    engine_release(e, curl_inited);
    return rc;
}

int vh_engine_submit(struct vh_engine *e, const struct vh_delivery_job *job,
                     vh_delivery_done_fn *done, void *ud, struct vh_error *err)
{
    struct job *j = NULL;
    bool wake = false;
    int rc;

    if (!e || !done)
        return vh_error_set(err, VH_EINVAL, "submit: missing argument");
    rc = job_new(e, job, done, ud, &j, err);
    if (rc < 0)
        return rc;
    pthread_mutex_lock(&e->lock);
    if (e->stopping)
        rc = vh_error_set(err, VH_ESTATE, "submit: the engine is stopping");
    else if (e->in_flight >= e->cfg.max_queued)
        rc = vh_error_set(err, VH_ETOOBIG, "submit: %zu jobs are already queued", e->in_flight);
    if (rc == 0) {
        /* A list that is not empty has its wakeup pending: the thread takes it whole. */
        wake = !e->in_head;
        if (e->in_tail)
            e->in_tail->next = j;
        else
            e->in_head = j;
        e->in_tail = j;
        e->in_flight++;
        j = NULL;
    }
    pthread_mutex_unlock(&e->lock);
    if (rc < 0) {
        job_free(j);
        return rc;
    }
    if (wake)
        engine_wake(e);
    return 0;
}

int vh_engine_drop_endpoint(struct vh_engine *e, const char *endpoint_id, struct vh_error *err)
{
    size_t len = endpoint_id ? strlen(endpoint_id) : 0;
    struct job *mark;
    uint64_t seq = 0;
    bool wake = false;
    int rc = 0;

    if (!e || (endpoint_id && (len == 0 || len > VH_ENGINE_URL_MAX)))
        return vh_error_set(err, VH_EINVAL, "drop endpoint: missing or bad endpoint id");
    mark = vh_malloc(sizeof(*mark) + len + 1);
    if (!mark)
        return vh_error_set(err, VH_ENOMEM, "drop endpoint: out of memory");
    memset(mark, 0, sizeof(*mark));
    mark->drop = true;
    if (endpoint_id) {
        memcpy(mark + 1, endpoint_id, len + 1);
        mark->key = (const char *)(mark + 1); /* NULL: every endpoint */
    }
    pthread_mutex_lock(&e->lock);
    if (e->thread_started && !e->joined && pthread_equal(pthread_self(), e->thread)) {
        rc = vh_error_set(err, VH_ESTATE, "drop endpoint: called from the engine thread");
    } else if (!e->stopping) {
        /* The stop reports every waiting job; a mark would have nothing left to drop. */
        wake = !e->in_head;
        if (e->in_tail)
            e->in_tail->next = mark;
        else
            e->in_head = mark;
        e->in_tail = mark;
        seq = ++e->drops_asked;
        mark = NULL;
    }
    pthread_mutex_unlock(&e->lock);
    vh_free(mark);
    if (rc < 0 || seq == 0)
        return rc;
    if (wake)
        engine_wake(e);
    /*
     * The engine thread takes every mark before it stops (the mark went in while it was not
     * stopping, under the lock it reads `stopping` with), so this wait ends.
     */
    pthread_mutex_lock(&e->lock);
    while (e->drops_done < seq)
        pthread_cond_wait(&e->dropped, &e->lock);
    pthread_mutex_unlock(&e->lock);
    return 0;
}

size_t vh_engine_in_flight(struct vh_engine *e)
{
    size_t n;

    pthread_mutex_lock(&e->lock);
    n = e->in_flight;
    pthread_mutex_unlock(&e->lock);
    return n;
}

int vh_engine_stop(struct vh_engine *e, int64_t grace_ms, struct vh_error *err)
{
    bool self;

    pthread_mutex_lock(&e->lock);
    self = e->thread_started && !e->joined && pthread_equal(pthread_self(), e->thread);
    pthread_mutex_unlock(&e->lock);
    if (self)
        return vh_error_set(err, VH_ESTATE, "engine: stop called from the engine thread");
    pthread_mutex_lock(&e->stop_lock);
    pthread_mutex_lock(&e->lock);
    if (!e->stopping) {
        e->stopping = true;
        e->grace_ms = grace_ms > 0 ? grace_ms : 0;
    }
    pthread_mutex_unlock(&e->lock);
    if (e->thread_started && !e->joined) {
        engine_wake(e);
        pthread_join(e->thread, NULL);
        pthread_mutex_lock(&e->lock);
        e->joined = true;
        pthread_mutex_unlock(&e->lock);
        log_rec(e, VH_LOG_INFO, "engine stopped", "%s", "");
    }
    pthread_mutex_unlock(&e->stop_lock);
    return 0;
}

void vh_engine_free(struct vh_engine *e)
{
    if (!e)
        return;
    vh_engine_stop(e, 0, NULL);
    engine_release(e, true);
}
