/*
 * The delivery engine (engine.h): the libcurl multi adapter. It decides nothing about
 * retries; it turns jobs into signed POSTs and each finished transfer into a vh_attempt.
 *
 * Threads. Submitters push jobs on `incoming` under `lock` and wake the engine thread with
 * curl_multi_wakeup. Everything else, the CURLM and CURLSH handles, the endpoint table,
 * the queues and every easy handle, belongs to the engine thread from pthread_create to
 * pthread_join (vh_engine_new sets it up before, vh_engine_free tears it down after).
 *
 * One loop (engine_main): take the incoming jobs, start what the caps allow, let libcurl
 * work, turn each CURLMSG_DONE into a report, and sleep in curl_multi_poll until a socket,
 * a timer or a submitter needs us. curl_multi_perform runs every transfer and each polls
 * its socket (3.3 poll calls a delivery); libcurl's socket interface with our own epoll
 * was measured and was slower (one epoll_ctl a state change, and libcurl still polls before
 * reusing a connection), and loses a transfer's socket if libcurl runs out of memory
 * inside curl_multi_socket_action (docs/BENCHMARKS.md, session 7).
 *
 * Cheap HTTPS: one multi handle keeps up to max_total connections open for reuse; a share
 * handle keeps TLS sessions across easy handles (a job takes any spare easy handle, whose
 * own session cache would not be the right one); the CA store is parsed once and cached by
 * libcurl (CURLOPT_CA_CACHE_TIMEOUT), which needs CURLOPT_CAPATH unset: Debian's libcurl
 * sets a default CA path, and a store built from a directory is never cached.
 *
 * Cheap attempts: a finished transfer's easy handle, with its transport options set, is
 * kept for the next job (up to max_total of them), which then sets only what is its own
 * (URL, headers, body, timeout); a submit wakes the engine thread only when the incoming
 * list was empty (a wakeup is pending otherwise); and a log record above the configured
 * level is never formatted.
 */
#include <vocohook/engine.h>

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <curl/curl.h>

#include <vocohook/alloc.h>
#include <vocohook/clock.h>
#include <vocohook/sign.h>

#include "core/log_int.h"
#include "deliver/deliver_int.h"
#include "core/thread_int.h"
#include "core/banned.h"

#define USER_AGENT      "vocohook/" VH_VERSION_STRING
#define POLL_IDLE_MS    10000 /* curl_multi_poll's longest sleep; wakeups end it sooner */
#define CA_CACHE_S      86400L
#define BUCKETS_MIN     64
#define LOG_LINE_MAX    2048
#define HEADER_LINE_MAX (VH_ENGINE_ID_MAX + 32)

/*
 * One easy handle and the progress of the transfer it runs. Kept, with its transport
 * options, for the next job once the transfer ends (the engine's spares).
 */
struct transfer {
    struct transfer *next_spare;
    CURL *easy;
    struct curl_slist *headers;
    int64_t started_ms;   /* wall clock: the X-Webhook-Timestamp */
    int64_t started_mono; /* monotonic, for the duration */
    size_t read;          /* body bytes read so far */
    size_t head_len;      /* of them kept in head */
    bool capped;          /* we stopped reading at VH_ATTEMPT_READ_MAX */
    bool blocked;         /* the SSRF guard refused an address */
    bool allow_private;
    char blocked_addr[INET6_ADDRSTRLEN];
    char head[VH_ATTEMPT_HEAD_MAX + 1];
    char errbuf[CURL_ERROR_SIZE];
};

/* One submitted job. The struct and its strings are one allocation. */
struct job {
    struct job *next;          /* in `incoming` or its endpoint's queue */
    struct job *aprev, *anext; /* in the engine's list of active jobs */
    struct endpoint *ep;       /* set once queued */
    struct transfer *t;        /* set while active */
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
    pthread_mutex_t stop_lock; /* serializes vh_engine_stop */

    /* The engine thread's. */
    CURLM *multi; /* belongs to the engine thread while it runs */
    CURLSH *share;
    struct endpoint **buckets;
    size_t n_buckets, n_endpoints;
    struct endpoint *ready_head, *ready_tail;
    struct job *active_head;
    unsigned active;
    struct transfer *spares; /* easy handles of finished transfers, ready for a job */
    unsigned n_spares;
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

    vh__json_escape(job->delivery_id, SIZE_MAX, id, sizeof(id));
    vh__json_escape(a->error, SIZE_MAX, error, sizeof(error));
    log_rec(e, a->result == VH_ATTEMPT_BLOCKED ? VH_LOG_WARN : VH_LOG_DEBUG, "attempt",
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
    *out = job;
    return 0;
}

/*
 * Hands the job's report to its owner and frees the job. The job stops counting as in
 * flight first, so a callback that looks at vh_engine_in_flight sees itself done.
 */
static void job_report(struct vh_engine *e, struct job *job, struct vh_attempt *a)
{
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

/* The endpoint for `key`, created when missing; NULL on OOM. */
static struct endpoint *endpoint_get(struct vh_engine *e, const char *key)
{
    size_t len = strlen(key), h = hash_key(key, len);
    struct endpoint *ep;

    for (ep = e->buckets[h & (e->n_buckets - 1)]; ep; ep = ep->hnext)
        if (ep->hash == h && ep->key_len == len && memcmp(ep->key, key, len) == 0)
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
    endpoint_settle(e, ep);
}

static struct job *endpoint_dequeue(struct endpoint *ep)
{
    struct job *job = ep->head;

    if (job) {
        ep->head = job->next;
        if (!ep->head)
            ep->tail = NULL;
        job->next = NULL;
    }
    return job;
}

/* ---- one transfer ---------------------------------------------------------------------------- */

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    struct transfer *t = ud;
    size_t len = size * n, keep = len;

    if (keep > VH_ATTEMPT_READ_MAX - t->read)
        keep = VH_ATTEMPT_READ_MAX - t->read;
    if (t->head_len < VH_ATTEMPT_HEAD_MAX) {
        size_t k =
            keep < VH_ATTEMPT_HEAD_MAX - t->head_len ? keep : VH_ATTEMPT_HEAD_MAX - t->head_len;

        memcpy(t->head + t->head_len, p, k);
        t->head_len += k;
    }
    t->read += keep;
    if (keep < len) {
        /* A short count makes libcurl abort the transfer (CURLE_WRITE_ERROR). */
        t->capped = true;
        return 0;
    }
    return len;
}

/*
 * The SSRF guard, at connect time: the address is the one libcurl is about to connect to,
 * after DNS, so a name that resolves (or re-resolves) to a private address is caught too.
 * Refusing fails the connection attempt (CURLE_COULDNT_CONNECT) before any packet leaves.
 */
static curl_socket_t on_open_socket(void *ud, curlsocktype purpose, struct curl_sockaddr *sa)
{
    struct transfer *t = ud;
    int type = sa->socktype;

    if (purpose != CURLSOCKTYPE_IPCXN)
        return CURL_SOCKET_BAD;
    if (!t->allow_private && vh__addr_is_blocked(&sa->addr, sa->addrlen)) {
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
        if (!bytes || !inet_ntop(sa->family, bytes, t->blocked_addr, sizeof(t->blocked_addr)))
            snprintf(t->blocked_addr, sizeof(t->blocked_addr), "(family %d)", sa->family);
        t->blocked = true;
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

/* The headers of one attempt, signed now. */
static CURLcode build_headers(const struct job *job, struct transfer *t)
{
    char ts[VH_TIME_LEN + 1], sig[VH_SIG_LEN + 1], lines[5][HEADER_LINE_MAX];
    struct curl_slist *h = NULL, *n;
    size_t i;

    if (vh_time_format(t->started_ms, ts) < 0)
        return CURLE_FAILED_INIT;
    if (vh_sign(job->secret, job->secret_len, ts, VH_TIME_LEN, job->body, job->body_len, sig,
                NULL) < 0)
        return CURLE_OUT_OF_MEMORY;
    snprintf(lines[0], sizeof(lines[0]), "Content-Type: application/json");
    snprintf(lines[1], sizeof(lines[1]), "X-Webhook-Timestamp: %s", ts);
    snprintf(lines[2], sizeof(lines[2]), "X-Webhook-Signature: %s", sig);
    snprintf(lines[3], sizeof(lines[3]), "X-Webhook-Id: %s", job->event_id);
    snprintf(lines[4], sizeof(lines[4]), "Expect:"); /* no 100-continue round trip */
    for (i = 0; i < 5; i++) {
        n = curl_slist_append(h, lines[i]);
        if (!n) {
            curl_slist_free_all(h);
            return CURLE_OUT_OF_MEMORY;
        }
        h = n;
    }
    t->headers = h;
    return CURLE_OK;
}

#define SETOPT(opt, val)                                                                           \
    do {                                                                                           \
        if (rc == CURLE_OK)                                                                        \
            rc = curl_easy_setopt(t->easy, opt, val);                                              \
    } while (0)

/* The request: a signed POST of the body, bounded in time, its response read by on_body. */
static CURLcode set_request(struct job *job, struct transfer *t)
{
    CURLcode rc = CURLE_OK;

    SETOPT(CURLOPT_PRIVATE, job);
    SETOPT(CURLOPT_URL, job->url);
    SETOPT(CURLOPT_NOSIGNAL, 1L);
    SETOPT(CURLOPT_TIMEOUT_MS, (long)job->timeout_ms);
    SETOPT(CURLOPT_USERAGENT, USER_AGENT);
    SETOPT(CURLOPT_HTTPHEADER, t->headers);
    SETOPT(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)job->body_len);
    SETOPT(CURLOPT_POSTFIELDS, job->body);
    SETOPT(CURLOPT_WRITEFUNCTION, on_body);
    SETOPT(CURLOPT_WRITEDATA, t);
    SETOPT(CURLOPT_ERRORBUFFER, t->errbuf);
    return rc;
}

/* Where the request may go and how: the safety rules, TLS trust, and reuse. */
static CURLcode set_transport(const struct vh_engine *e, struct transfer *t)
{
    const char *protocols = e->cfg.allow_http ? "http,https" : "https";
    CURLcode rc = CURLE_OK;

    SETOPT(CURLOPT_PROTOCOLS_STR, protocols);
    SETOPT(CURLOPT_REDIR_PROTOCOLS_STR, protocols);
    SETOPT(CURLOPT_FOLLOWLOCATION, 0L);
    SETOPT(CURLOPT_PROXY, ""); /* "" overrides http_proxy and friends in the environment */
    SETOPT(CURLOPT_OPENSOCKETFUNCTION, on_open_socket);
    SETOPT(CURLOPT_OPENSOCKETDATA, t);
    SETOPT(CURLOPT_SHARE, e->share);
    SETOPT(CURLOPT_TCP_KEEPALIVE, 1L);
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
        (void)curl_easy_setopt(t->easy, CURLOPT_CA_CACHE_TIMEOUT, CA_CACHE_S);
    return rc;
}

static void transfer_free(struct transfer *t)
{
    if (!t)
        return;
    curl_easy_cleanup(t->easy);
    curl_slist_free_all(t->headers);
    vh_free(t);
}

/*
 * A transfer for a new job: a spare one, or a new easy handle with the transport options
 * set. NULL when out of memory (`*rc` says what failed).
 */
static struct transfer *transfer_get(struct vh_engine *e, CURLcode *rc)
{
    struct transfer *t = e->spares;

    *rc = CURLE_OK;
    if (t) {
        e->spares = t->next_spare;
        e->n_spares--;
    } else {
        t = vh_malloc(sizeof(*t));
        if (!t) {
            *rc = CURLE_OUT_OF_MEMORY;
            return NULL;
        }
        memset(t, 0, sizeof(*t));
        t->easy = curl_easy_init();
        *rc = t->easy ? set_transport(e, t) : CURLE_OUT_OF_MEMORY;
        if (*rc != CURLE_OK) {
            transfer_free(t);
            return NULL;
        }
    }
    /* What a transfer leaves behind, cleared for the next: all but the handle. */
    t->next_spare = NULL;
    t->read = t->head_len = 0;
    t->capped = t->blocked = false;
    t->blocked_addr[0] = '\0';
    t->errbuf[0] = '\0';
    t->allow_private = e->cfg.allow_private_networks;
    return t;
}

/* Keeps a transfer that libcurl no longer holds for the next job, or frees it. */
static void transfer_put(struct vh_engine *e, struct transfer *t)
{
    curl_slist_free_all(t->headers);
    t->headers = NULL;
    if (e->n_spares >= e->cfg.max_total) {
        transfer_free(t);
        return;
    }
    t->next_spare = e->spares;
    e->spares = t;
    e->n_spares++;
}

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

/*
 * Starts one job: signs it and hands it to libcurl. A job that cannot start is reported at
 * once (BLOCKED for a refused scheme, INTERNAL when we ran out of memory).
 */
static void job_start(struct vh_engine *e, struct job *job)
{
    struct transfer *t;
    CURLcode rc;

    if (!scheme_allowed(e, job->url)) {
        job_report_now(e, job, VH_ATTEMPT_BLOCKED,
                       e->cfg.allow_http ? "only http:// and https:// URLs are allowed"
                                         : "only https:// URLs are allowed (allow_http is off)");
        return;
    }
    t = transfer_get(e, &rc);
    if (!t) {
        job_report_now(e, job, VH_ATTEMPT_INTERNAL, curl_easy_strerror(rc));
        return;
    }
    t->started_ms = vh_time_now_ms();
    t->started_mono = vh_time_mono_ms();
    rc = build_headers(job, t);
    if (rc == CURLE_OK)
        rc = set_request(job, t);
    if (rc == CURLE_OK && curl_multi_add_handle(e->multi, t->easy) != CURLM_OK)
        rc = CURLE_OUT_OF_MEMORY;
    if (rc != CURLE_OK) {
        transfer_free(t); /* not kept: its options may be half set */
        job_report_now(e, job, VH_ATTEMPT_INTERNAL, curl_easy_strerror(rc));
        return;
    }
    job->t = t;
    active_link(e, job);
}

/* Starts waiting jobs, one per ready endpoint in turn, while the total cap allows. */
static void start_ready(struct vh_engine *e)
{
    struct endpoint *ep;
    struct job *job;

    while (e->active < e->cfg.max_total) {
        ep = ready_pop(e);
        if (!ep)
            break;
        job = endpoint_dequeue(ep);
        /* Counted before the start, so a job reported at once cannot free the endpoint. */
        ep->active++;
        job_start(e, job);
        ep->active--;
        endpoint_settle(e, ep);
    }
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

/*
 * A transfer's outcome as an attempt result. A complete response is judged by its status;
 * so is one whose body we stopped reading at the bound. Any other failure counts, even
 * after a 2xx status line: the response never completed, and a retry is the safe side of
 * at-least-once.
 */
static enum vh_attempt_result classify(CURLcode rc, long status, const struct transfer *t)
{
    if (rc == CURLE_OK || (rc == CURLE_WRITE_ERROR && t->capped))
        return result_of_status(status);
    if (t->blocked && rc == CURLE_COULDNT_CONNECT)
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
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
        return VH_ATTEMPT_RESET;
    case CURLE_URL_MALFORMAT:
        /* An unusable destination, refused before any connection, like a bad scheme. */
        return VH_ATTEMPT_BLOCKED;
    case CURLE_OUT_OF_MEMORY:
    case CURLE_FAILED_INIT:
    case CURLE_BAD_FUNCTION_ARGUMENT:
        return VH_ATTEMPT_INTERNAL;
    default:
        /*
         * CURLE_WEIRD_SERVER_REPLY, HTTP/0.9 (CURLE_UNSUPPORTED_PROTOCOL), HTTP/2 errors, bad
         * content encodings: what came back is not HTTP we accept.
         */
        return VH_ATTEMPT_PROTOCOL;
    }
}

/* Fills the report of a transfer that ended (rc) or was cut short (interrupted). */
static void transfer_report(const struct job *job, const struct transfer *t, CURLcode rc,
                            bool interrupted, struct vh_attempt *a)
{
    long status = 0, connects = 0;

    memset(a, 0, sizeof(*a));
    curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(t->easy, CURLINFO_NUM_CONNECTS, &connects);
    a->number = job->attempt;
    a->result = interrupted ? VH_ATTEMPT_INTERRUPTED : classify(rc, status, t);
    a->http_status = status > 0 && status <= 999 ? (int)status : 0;
    a->started_ms = t->started_ms;
    a->duration_ms = vh_time_mono_ms() - t->started_mono;
    a->reused_connection = !interrupted && connects == 0 && status > 0;
    a->response_read = t->read;
    a->response_len = t->head_len;
    memcpy(a->response_head, t->head, t->head_len);
    a->response_head[t->head_len] = '\0';
    if (interrupted)
        snprintf(a->error, sizeof(a->error), "interrupted by shutdown");
    else if (a->result == VH_ATTEMPT_BLOCKED)
        snprintf(a->error, sizeof(a->error),
                 "destination %s is not a public address (allow_private_networks is off)",
                 t->blocked_addr);
    else if (rc == CURLE_OK || t->capped)
        a->error[0] = '\0';
    else
        snprintf(a->error, sizeof(a->error), "%s",
                 t->errbuf[0] ? t->errbuf : curl_easy_strerror(rc));
}

/* Takes a job off libcurl and the active list, reports it, and frees it. */
static void job_finish(struct vh_engine *e, struct job *job, CURLcode rc, bool interrupted)
{
    struct endpoint *ep = job->ep;
    struct vh_attempt a;

    curl_multi_remove_handle(e->multi, job->t->easy);
    transfer_report(job, job->t, rc, interrupted, &a);
    transfer_put(e, job->t);
    job->t = NULL;
    active_unlink(e, job);
    /* Released before the callback: the body is the caller's again once it runs. */
    job_report(e, job, &a);
    endpoint_settle(e, ep);
}

static void finish_done(struct vh_engine *e)
{
    struct CURLMsg *msg;
    int left;

    for (;;) {
        char *job = NULL;

        msg = curl_multi_info_read(e->multi, &left);
        if (!msg)
            break;
        if (msg->msg != CURLMSG_DONE)
            continue;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &job);
        job_finish(e, (struct job *)job, msg->data.result, false);
    }
}

/* ---- the engine thread ----------------------------------------------------------------------- */

/*
 * Moves submitted jobs to their endpoint queues, or, once stopping, reports them
 * interrupted. Returns whether the engine is stopping (read under the same lock as the
 * jobs, so no job can arrive after a `true`).
 */
static bool take_incoming(struct vh_engine *e, int64_t *grace_ms)
{
    struct job *job, *next;
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
        if (stopping)
            job_report_now(e, job, VH_ATTEMPT_INTERRUPTED, "interrupted by shutdown");
        else
            endpoint_enqueue(e, job);
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
            for (job = endpoint_dequeue(ep); job; job = endpoint_dequeue(ep))
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
        job_finish(e, e->active_head, CURLE_OK, true);
}

static int poll_timeout(const struct vh_engine *e, bool stopping, int64_t deadline)
{
    int64_t left;

    if (!stopping && e->ready_head && e->active < e->cfg.max_total)
        return 0;
    if (!stopping)
        return POLL_IDLE_MS;
    left = deadline - vh_time_mono_ms();
    if (left < 0)
        return 0;
    return left < POLL_IDLE_MS ? (int)left : POLL_IDLE_MS;
}

static void *engine_main(void *arg)
{
    struct vh_engine *e = arg;
    bool stopping = false;
    int64_t deadline = 0, grace = 0;
    int running;

    vh__thread_name("vh-engine");
    for (;;) {
        if (take_incoming(e, &grace) && !stopping) {
            stopping = true;
            deadline = vh_time_mono_ms() + grace;
            interrupt_waiting(e);
            log_rec(e, VH_LOG_INFO, "engine stopping", ",\"active\":%u,\"grace_ms\":%lld",
                    e->active, (long long)grace);
        }
        if (!stopping)
            start_ready(e);
        curl_multi_perform(e->multi, &running);
        finish_done(e);
        if (stopping && (!e->active_head || vh_time_mono_ms() >= deadline))
            break;
        curl_multi_poll(e->multi, NULL, 0, poll_timeout(e, stopping, deadline), NULL);
    }
    interrupt_active(e);
    return NULL;
}

/* ---- the API --------------------------------------------------------------------------------- */

void vh_engine_config_init(struct vh_engine_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->max_per_endpoint = VH_ENGINE_MAX_PER_ENDPOINT_DEFAULT;
    cfg->max_total = VH_ENGINE_MAX_TOTAL_DEFAULT;
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
    FILE *f;

    if (cfg->max_per_endpoint < 1 || cfg->max_total < 1 || cfg->max_queued < 1)
        return vh_error_set(err, VH_EINVAL,
                            "engine: max_per_endpoint, max_total and max_queued "
                            "must be at least 1");
    if (cfg->max_total > 65536)
        return vh_error_set(err, VH_EINVAL, "engine: max_total is over 65536");
    if (cfg->timeout_ms < 1 || cfg->timeout_ms > VH_RETRY_DELAY_MAX_MS)
        return vh_error_set(err, VH_EINVAL, "engine: timeout out of range");
    if (cfg->ca_file) {
        /* Checked now: a bad path would otherwise fail every HTTPS attempt, one by one. */
        f = fopen(cfg->ca_file, "r");
        if (!f)
            return vh_error_set(err, VH_EIO, "engine: cannot read CA file '%s'", cfg->ca_file);
        fclose(f);
    }
    return 0;
}

/* Frees what vh_engine_new set up; the thread is not running. */
static void engine_release(struct vh_engine *e, bool curl_inited)
{
    struct transfer *t;
    struct endpoint *ep;
    size_t i;

    /* Before the share handle: an easy handle that uses it keeps it in use. */
    while ((t = e->spares)) {
        e->spares = t->next_spare;
        transfer_free(t);
    }
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
    vh_free(e->ca_file);
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
    pthread_mutex_init(&e->lock, NULL);
    pthread_mutex_init(&e->stop_lock, NULL);
    e->cfg = *cfg;
    e->cfg.ca_file = NULL;
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
    /*
     * libcurl allocates through our hook too (it is reference-counted: the first init picks
     * the functions, later ones only count).
     */
    if (curl_global_init_mem(CURL_GLOBAL_DEFAULT, vh_malloc, vh_free, vh_realloc, curl_strdup,
                             curl_calloc) != CURLE_OK)
        goto fail;
    curl_inited = true;
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
    if (curl_multi_setopt(e->multi, CURLMOPT_MAXCONNECTS, (long)cfg->max_total) != CURLM_OK)
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
        curl_multi_wakeup(e->multi);
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
        curl_multi_wakeup(e->multi);
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
