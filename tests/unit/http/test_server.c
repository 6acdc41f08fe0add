/*
 * The HTTP server (src/http/server.c) over real loopback HTTP, libcurl as the client: a plain
 * handler, and async handlers (vh_server_async_fn) that answer at once, answer later from
 * another thread, answer before they even return VH_SERVER_LATER, answer many requests late
 * and out of order; and vh_server_stop waiting for an answer still owed. Every wait is a
 * condition with a deadline; the only bounded wait that is expected to run out is the one
 * that shows vh_server_stop has not returned.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>

#include <vocohook/api.h>
#include <vocohook/buf.h>
#include <vocohook/config.h>
#include <vocohook/error.h>
#include <vocohook/server.h>

#include "unit/wait.h"
#include "core/banned.h"

#define WAIT_MS      20000 /* deadline of every wait that should end: sanitizers are slow */
#define CLIENT_MS    10000 /* curl's timeout: a lost answer fails the test rather than hang it */
#define NOT_YET_MS   300   /* how long vh_server_stop is watched not returning */
#define QUEUE_MAX    64    /* put-off requests held at once */
#define MANY         200   /* requests of the many-request tests */
#define MANY_CONNS   16    /* its concurrent connections */
#define BODY_MAX     64    /* the early-refusal test's body bound */
#define HUGE_DECLARE (1024 * 1024) /* a Content-Length far past 16 * BODY_MAX */

/* ---- conditions with deadlines --------------------------------------------------------------- */

static bool past(const struct timespec *dl)
{
    struct timespec now;

    clock_gettime(CLOCK_MONOTONIC, &now);
    return now.tv_sec > dl->tv_sec || (now.tv_sec == dl->tv_sec && now.tv_nsec >= dl->tv_nsec);
}

/* A request whose handler returned VH_SERVER_LATER (or will), as the handler left it. */
struct put_off {
    const struct vh_server_req *req;
    struct vh_api_resp *resp;
    struct vh_server_reply *reply;
};

/* What the handlers, the log callback and the helper threads share with the tests. */
static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct put_off q[QUEUE_MAX]; /* put off, not yet taken by the test */
    size_t n;
    bool hold_released; /* a /hold handler may return */
    bool stopped;       /* the stopper's vh_server_stop returned */
    bool draining;      /* the server logged "draining" (vh_server_stop is under way) */
    unsigned logged;    /* "request" log records */
    unsigned sync_calls;
    unsigned async_calls;
} C = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void cond_init_mono(pthread_cond_t *cv)
{
    pthread_condattr_t attr;

    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(cv, &attr);
    pthread_condattr_destroy(&attr);
}

/* Waits until `*flag` (guarded by C.mu) is set; false at the deadline. */
static bool wait_flag(const bool *flag, int ms)
{
    struct timespec dl = deadline_in(ms);
    bool ok;

    pthread_mutex_lock(&C.mu);
    while (!*flag && pthread_cond_timedwait(&C.cv, &C.mu, &dl) != ETIMEDOUT)
        ;
    ok = *flag;
    pthread_mutex_unlock(&C.mu);
    return ok;
}

static void set_flag(bool *flag)
{
    pthread_mutex_lock(&C.mu);
    *flag = true;
    pthread_cond_broadcast(&C.cv);
    pthread_mutex_unlock(&C.mu);
}

/* Waits until at least `n` requests are put off; false at the deadline. */
static bool wait_put_off(size_t n, int ms)
{
    struct timespec dl = deadline_in(ms);
    bool ok;

    pthread_mutex_lock(&C.mu);
    while (C.n < n && pthread_cond_timedwait(&C.cv, &C.mu, &dl) != ETIMEDOUT)
        ;
    ok = C.n >= n;
    pthread_mutex_unlock(&C.mu);
    return ok;
}

/* Takes every put-off request; returns how many. */
static size_t take_all(struct put_off *out)
{
    size_t n;

    pthread_mutex_lock(&C.mu);
    n = C.n;
    memcpy(out, C.q, n * sizeof(*out));
    C.n = 0;
    pthread_mutex_unlock(&C.mu);
    return n;
}

/* Takes the one put-off request there must be. */
static struct put_off take_one(void)
{
    struct put_off p[QUEUE_MAX];

    assert_int_equal(take_all(p), 1);
    return p[0];
}

/* ---- handlers -------------------------------------------------------------------------------- */

static const char *query_value(const struct vh_server_req *req, const char *key)
{
    size_t i;

    for (i = 0; i < req->base.n_query; i++)
        if (strcmp(req->base.query[i].key, key) == 0)
            return req->base.query[i].value;
    return "";
}

/* The answer that belongs to `req`: its query value `i` and its body, echoed. */
static void answer_echo(const struct vh_server_req *req, struct vh_api_resp *resp, int status)
{
    resp->status = status;
    vh_buf_addf(&resp->body, "{\"i\":\"%s\",\"body\":\"%.*s\"}", query_value(req, "i"),
                (int)req->base.body_len, req->base.body ? req->base.body : "");
}

/* Answers a put-off request (from a thread of the test). */
static void reply_echo(const struct put_off *p, int status)
{
    answer_echo(p->req, p->resp, status);
    vh_server_reply(p->reply);
}

static void on_log(void *ud, enum vh_log_level level, const char *line)
{
    (void)ud;
    (void)level;
    pthread_mutex_lock(&C.mu);
    if (strstr(line, "\"msg\":\"request\""))
        C.logged++;
    if (strstr(line, "\"msg\":\"draining\""))
        C.draining = true;
    pthread_cond_broadcast(&C.cv);
    pthread_mutex_unlock(&C.mu);
}

/* The plain handler: echoes what it was given. */
static int on_sync(void *ud, const struct vh_server_req *req, struct vh_api_resp *resp)
{
    (void)ud;
    pthread_mutex_lock(&C.mu);
    C.sync_calls++;
    pthread_mutex_unlock(&C.mu);
    if (strcmp(req->base.path, "/bad-status") == 0) {
        resp->status = 42;
        vh_buf_adds(&resp->body, "{}");
        return 0;
    }
    resp->status = 200;
    vh_buf_addf(&resp->body,
                "{\"method\":\"%s\",\"path\":\"%s\",\"x\":\"%s\",\"echo\":", req->base.method,
                req->base.path, req->headers[0] ? req->headers[0] : "(none)");
    answer_echo(req, resp, 200);
    vh_buf_addc(&resp->body, '}');
    return 0;
}

/*
 * The async handler, by path: /now answers at once, /fail answers at once and reports a
 * failure of its own, /race answers (vh_server_reply) before it returns VH_SERVER_LATER;
 * anything else is put off for the test to answer, and /hold also waits, before returning
 * VH_SERVER_LATER, until the test has answered it.
 */
static int on_async(void *ud, const struct vh_server_req *req, struct vh_api_resp *resp,
                    struct vh_server_reply *reply)
{
    const char *path = req->base.path;
    struct timespec dl;

    (void)ud;
    pthread_mutex_lock(&C.mu);
    C.async_calls++;
    pthread_mutex_unlock(&C.mu);
    if (strcmp(path, "/now") == 0) {
        resp->status = 201;
        vh_buf_addf(&resp->body, "{\"now\":\"%s\"}", req->base.method);
        return 0;
    }
    if (strcmp(path, "/fail") == 0) {
        resp->status = 503;
        vh_buf_adds(&resp->body, "{\"failed\":true}");
        return VH_EIO;
    }
    if (strcmp(path, "/race") == 0) {
        answer_echo(req, resp, 202);
        vh_server_reply(reply);
        return VH_SERVER_LATER; /* `req` and `resp` are no longer ours */
    }
    pthread_mutex_lock(&C.mu);
    if (C.n < QUEUE_MAX) {
        C.q[C.n++] = (struct put_off){req, resp, reply};
    } else {
        /* Cannot happen with the tests below; answer rather than lose the request. */
        pthread_mutex_unlock(&C.mu);
        resp->status = 507;
        return 0;
    }
    pthread_cond_broadcast(&C.cv);
    if (strcmp(path, "/hold") == 0) {
        dl = deadline_in(WAIT_MS);
        while (!C.hold_released && pthread_cond_timedwait(&C.cv, &C.mu, &dl) != ETIMEDOUT)
            ;
    }
    pthread_mutex_unlock(&C.mu);
    return VH_SERVER_LATER;
}

/* ---- the client ------------------------------------------------------------------------------ */

struct call {
    char url[128];
    char send[128]; /* the body to POST; "" sends a GET */
    bool expect_100;
    curl_off_t declare; /* > 0: declare this Content-Length and stream zeros */
    /* results */
    CURLcode rc;
    long status;
    char got[1024];
    size_t got_len;
    bool got_overflow;
    bool conn_close;     /* the answer said Connection: close */
    bool has_request_id; /* the answer had an X-Request-Id */
    curl_off_t uploaded; /* body bytes sent */
    struct curl_slist *headers;
    /* when run on its own thread */
    pthread_t th;
    bool started;
    atomic_bool done;
};

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    struct call *c = ud;
    size_t len = size * n;

    if (c->got_len + len >= sizeof(c->got)) {
        c->got_overflow = true;
        return len;
    }
    memcpy(c->got + c->got_len, p, len);
    c->got_len += len;
    c->got[c->got_len] = '\0';
    return len;
}

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
    struct call *c = ud;
    size_t len = size * n;

    if (len >= 11 && strncasecmp(p, "Connection:", 11) == 0) {
        char v[64];
        size_t vlen = len - 11 < sizeof(v) - 1 ? len - 11 : sizeof(v) - 1;

        memcpy(v, p + 11, vlen);
        v[vlen] = '\0';
        if (strstr(v, "close"))
            c->conn_close = true;
    }
    if (len >= 13 && strncasecmp(p, "X-Request-Id:", 13) == 0 && len > 16)
        c->has_request_id = true;
    return len;
}

static size_t on_read_zeros(char *p, size_t size, size_t n, void *ud)
{
    (void)ud;
    memset(p, '0', size * n);
    return size * n;
}

static void call_init(struct call *c, uint16_t port, const char *path, const char *body)
{
    memset(c, 0, sizeof(*c));
    snprintf(c->url, sizeof(c->url), "http://127.0.0.1:%u%s", (unsigned)port, path);
    snprintf(c->send, sizeof(c->send), "%s", body ? body : "");
    c->rc = CURLE_FAILED_INIT;
    atomic_init(&c->done, false);
}

static CURL *call_easy(struct call *c, long timeout_ms)
{
    CURL *h = curl_easy_init();

    if (!h)
        return NULL;
    curl_easy_setopt(h, CURLOPT_URL, c->url);
    curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, c);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, c);
    curl_easy_setopt(h, CURLOPT_PRIVATE, c);
    c->headers = curl_slist_append(NULL, "X-Test: yes");
    if (c->expect_100)
        c->headers = curl_slist_append(c->headers, "Expect: 100-continue");
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, c->headers);
    if (c->declare > 0) {
        curl_easy_setopt(h, CURLOPT_POST, 1L);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, c->declare);
        curl_easy_setopt(h, CURLOPT_READFUNCTION, on_read_zeros);
        curl_easy_setopt(h, CURLOPT_EXPECT_100_TIMEOUT_MS, (long)WAIT_MS);
    } else if (c->send[0]) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, c->send);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(c->send));
    }
    return h;
}

static void call_finish(struct call *c, CURL *h, CURLcode rc)
{
    c->rc = rc;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &c->status);
    curl_easy_getinfo(h, CURLINFO_SIZE_UPLOAD_T, &c->uploaded);
    curl_easy_cleanup(h);
    curl_slist_free_all(c->headers);
    c->headers = NULL;
}

/* One request on a connection of its own. */
static void call_run(struct call *c)
{
    CURL *h = call_easy(c, CLIENT_MS);

    if (h)
        call_finish(c, h, curl_easy_perform(h));
    atomic_store(&c->done, true);
}

static void *call_main(void *arg)
{
    call_run(arg);
    return NULL;
}

static void call_start(struct call *c)
{
    assert_int_equal(pthread_create(&c->th, NULL, call_main, c), 0);
    c->started = true;
}

static void call_join(struct call *c)
{
    if (c->started)
        pthread_join(c->th, NULL);
    c->started = false;
}

static void check_answer(const struct call *c, long status, const char *body)
{
    if (c->rc != CURLE_OK)
        fail_msg("%s: %s", c->url, curl_easy_strerror(c->rc));
    assert_false(c->got_overflow);
    assert_int_equal(c->status, status);
    assert_string_equal(c->got, body);
    assert_true(c->has_request_id);
}

/* ---- servers and stopping -------------------------------------------------------------------- */

struct fx {
    struct vh_server *srv;
    uint16_t port;
    struct call a, b;
    struct call many[MANY];
    pthread_t stopper;
    bool stopper_started;
};

static void start_server(struct fx *f, vh_server_handler_fn *handle,
                         vh_server_async_fn *handle_async, unsigned threads, size_t body_max)
{
    struct vh_server_handler h;
    struct vh_server_config cfg;
    struct vh_error err = VH_ERROR_INIT;

    memset(&h, 0, sizeof(h));
    h.handle = handle;
    h.handle_async = handle_async;
    h.headers[0] = "X-Test";
    memset(&cfg, 0, sizeof(cfg));
    cfg.listen = "127.0.0.1:0";
    cfg.threads = threads;
    cfg.body_max = body_max;
    cfg.log = on_log;
    if (vh_server_start_handler(&h, &cfg, &f->srv, &err) != 0)
        fail_msg("vh_server_start_handler: %s", err.msg);
    f->port = vh_server_port(f->srv);
    assert_int_not_equal(f->port, 0);
}

static void *stopper_main(void *arg)
{
    vh_server_stop(arg);
    set_flag(&C.stopped);
    return NULL;
}

/* Calls vh_server_stop on a thread of its own (see wait_flag(&C.stopped, ...)). */
static void stop_start(struct fx *f)
{
    struct vh_server *srv = f->srv;

    f->srv = NULL;
    assert_int_equal(pthread_create(&f->stopper, NULL, stopper_main, srv), 0);
    f->stopper_started = true;
}

/* Stops the server; fails (rather than hang) when vh_server_stop does not return. */
static void stop_server(struct fx *f)
{
    if (!f->srv)
        return;
    stop_start(f);
    if (!wait_flag(&C.stopped, WAIT_MS))
        fail_msg("vh_server_stop did not return");
    pthread_join(f->stopper, NULL);
    f->stopper_started = false;
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));

    if (!f)
        return -1;
    pthread_mutex_lock(&C.mu);
    C.n = 0;
    C.hold_released = false;
    C.stopped = false;
    C.draining = false;
    C.logged = 0;
    C.sync_calls = 0;
    C.async_calls = 0;
    pthread_mutex_unlock(&C.mu);
    *state = f;
    return 0;
}

/* After a failure too: answers whatever is still put off, so that nothing is left hanging. */
static int teardown(void **state)
{
    struct fx *f = *state;
    struct put_off left[QUEUE_MAX];
    size_t i, n;

    set_flag(&C.hold_released);
    n = take_all(left);
    for (i = 0; i < n; i++)
        reply_echo(&left[i], 500);
    call_join(&f->a);
    call_join(&f->b);
    if (f->srv)
        stop_start(f);
    if (f->stopper_started) {
        if (wait_flag(&C.stopped, WAIT_MS)) {
            pthread_join(f->stopper, NULL);
        } else {
            pthread_detach(f->stopper); /* the test failed already: leak rather than hang */
            return 0;
        }
    }
    free(f);
    return 0;
}

/* ---- tests ----------------------------------------------------------------------------------- */

static void test_start_needs_a_handler(void **state)
{
    struct vh_server_handler h;
    struct vh_server_config cfg;
    struct vh_server *srv = NULL;
    struct vh_error err = VH_ERROR_INIT;

    (void)state;
    memset(&h, 0, sizeof(h));
    memset(&cfg, 0, sizeof(cfg));
    cfg.listen = "127.0.0.1:0";
    assert_int_equal(vh_server_start_handler(&h, &cfg, &srv, &err), VH_EINVAL);
    assert_int_equal(err.code, VH_EINVAL);
    assert_true(err.msg[0] != '\0');
    assert_null(srv);
    assert_int_equal(vh_server_start_handler(NULL, &cfg, &srv, NULL), VH_EINVAL);
    assert_null(srv);
}

/* The threads of this process, from /proc/self/task. */
static unsigned count_threads(void)
{
    DIR *d = opendir("/proc/self/task");
    struct dirent *de;
    unsigned n = 0;

    assert_non_null(d);
    while ((de = readdir(d)))
        if (de->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

/*
 * No thread count: the server runs vh_config_default_threads() workers, as `serve` does,
 * and its linger thread.
 */
static void test_default_threads(void **state)
{
    struct fx *f = *state;
    unsigned before = count_threads();

    start_server(f, on_sync, NULL, 0, 0);
    assert_int_equal(count_threads() - before, vh_config_default_threads() + 1);
}

/*
 * Regression: a plain handler answers at once as before: method, path, query, the named
 * header and the body reach it, and a status outside 100-599 goes out as 500.
 */
static void test_sync_handler(void **state)
{
    struct fx *f = *state;

    start_server(f, on_sync, NULL, 2, 0);
    call_init(&f->a, f->port, "/sync/path?i=7", "hello");
    call_run(&f->a);
    check_answer(&f->a, 200,
                 "{\"method\":\"POST\",\"path\":\"/sync/path\",\"x\":\"yes\",\"echo\":"
                 "{\"i\":\"7\",\"body\":\"hello\"}}");
    assert_false(f->a.conn_close);

    call_init(&f->b, f->port, "/bad-status", NULL);
    call_run(&f->b);
    check_answer(&f->b, 500, "{}");

    stop_server(f);
    assert_int_equal(C.sync_calls, 2);
    assert_int_equal(C.logged, 2);
}

/*
 * An async handler that answers at once: the status and body arrive as it left them, also
 * when it reports a failure of its own, and `handle_async` is used instead of `handle`. Stop
 * must then not wait for anything (no answer is owed).
 */
static void test_async_answers_at_once(void **state)
{
    struct fx *f = *state;

    start_server(f, on_sync, on_async, 2, 0);
    call_init(&f->a, f->port, "/now", NULL);
    call_run(&f->a);
    check_answer(&f->a, 201, "{\"now\":\"GET\"}");

    call_init(&f->b, f->port, "/fail", "x");
    call_run(&f->b);
    check_answer(&f->b, 503, "{\"failed\":true}");

    stop_server(f);
    assert_int_equal(C.async_calls, 2);
    assert_int_equal(C.sync_calls, 0);
    assert_int_equal(C.logged, 2);
}

/*
 * A put-off answer given later from the test's thread. While it is owed, another request on
 * another connection is answered by the one server thread: the put-off request holds none.
 * The request (its body, its query) stays readable until the reply.
 */
static void test_async_answers_later(void **state)
{
    struct fx *f = *state;
    struct put_off p;

    start_server(f, NULL, on_async, 1, 0);
    call_init(&f->a, f->port, "/later?i=1", "first");
    call_start(&f->a);
    assert_true(wait_put_off(1, WAIT_MS));

    call_init(&f->b, f->port, "/now", NULL);
    call_run(&f->b);
    check_answer(&f->b, 201, "{\"now\":\"GET\"}");
    assert_false(atomic_load(&f->a.done)); /* nothing answered it yet */

    p = take_one();
    assert_string_equal(p.req->base.path, "/later");
    assert_int_equal(p.req->base.body_len, 5);
    assert_memory_equal(p.req->base.body, "first", 5);
    reply_echo(&p, 200);
    call_join(&f->a);
    check_answer(&f->a, 200, "{\"i\":\"1\",\"body\":\"first\"}");

    stop_server(f);
    assert_int_equal(C.logged, 2);
}

/*
 * The handler calls vh_server_reply itself before it returns VH_SERVER_LATER: the answer
 * must still go out (it hangs if the server suspends the connection and nobody resumes it).
 * Over fresh connections and over one kept alive, with one server thread and with several.
 */
static void race_round(struct fx *f, unsigned threads)
{
    CURL *h;
    char path[32], want[64];
    int i;

    start_server(f, NULL, on_async, threads, 0);
    for (i = 0; i < 10; i++) {
        snprintf(path, sizeof(path), "/race?i=%d", i);
        snprintf(want, sizeof(want), "{\"i\":\"%d\",\"body\":\"r\"}", i);
        call_init(&f->a, f->port, path, "r");
        call_run(&f->a);
        check_answer(&f->a, 202, want);
    }
    /* One connection, kept alive across put-off answers. */
    call_init(&f->b, f->port, "/race?i=k", "keep");
    h = call_easy(&f->b, CLIENT_MS);
    assert_non_null(h);
    for (i = 0; i < 10; i++) {
        f->b.got_len = 0;
        f->b.got[0] = '\0';
        f->b.rc = curl_easy_perform(h);
        if (f->b.rc != CURLE_OK)
            break;
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &f->b.status);
        if (f->b.status != 202 || strcmp(f->b.got, "{\"i\":\"k\",\"body\":\"keep\"}") != 0)
            break;
    }
    call_finish(&f->b, h, f->b.rc);
    check_answer(&f->b, 202, "{\"i\":\"k\",\"body\":\"keep\"}");
    assert_int_equal(i, 10);
    stop_server(f);
    pthread_mutex_lock(&C.mu);
    C.stopped = false; /* for the next round */
    pthread_mutex_unlock(&C.mu);
}

static void test_async_replies_before_returning(void **state)
{
    struct fx *f = *state;

    race_round(f, 1);
    race_round(f, 4);
    assert_int_equal(C.logged, 40);
}

/*
 * The same race from the other side: another thread answers while the handler is still
 * running (it returns VH_SERVER_LATER only after the reply); the answer must go out.
 */
static void test_async_reply_while_handler_runs(void **state)
{
    struct fx *f = *state;
    struct put_off p;

    start_server(f, NULL, on_async, 1, 0);
    call_init(&f->a, f->port, "/hold?i=h", "held");
    call_start(&f->a);
    assert_true(wait_put_off(1, WAIT_MS));
    p = take_one();
    reply_echo(&p, 200); /* the handler has not returned yet */
    set_flag(&C.hold_released);
    call_join(&f->a);
    check_answer(&f->a, 200, "{\"i\":\"h\",\"body\":\"held\"}");
    stop_server(f);
}

/*
 * The replier of the many-request tests. In batches: waits until every request the client
 * has in flight is put off, then answers the lot in a scrambled order. Otherwise: answers
 * each request as soon as its handler has put it off, which is often before the server has
 * suspended its connection (the window wait_for_reply closes).
 */
static struct {
    bool batches;
    const char *error;
} R;

static void shuffle(struct put_off *p, size_t n, uint32_t *x)
{
    struct put_off t;
    size_t i, j;

    for (i = n - 1; i > 0; i--) { /* Fisher-Yates with xorshift32 */
        *x ^= *x << 13;
        *x ^= *x >> 17;
        *x ^= *x << 5;
        j = *x % (i + 1);
        t = p[i];
        p[i] = p[j];
        p[j] = t;
    }
}

static void *replier_main(void *arg)
{
    struct put_off batch[QUEUE_MAX];
    uint32_t x = 0x9e3779b9u;
    size_t answered = 0, n, i;

    (void)arg;
    while (answered < MANY) {
        size_t want = MANY - answered < MANY_CONNS ? MANY - answered : MANY_CONNS;

        if (!wait_put_off(R.batches ? want : 1, WAIT_MS)) {
            R.error = "requests did not arrive";
            return NULL;
        }
        n = take_all(batch);
        if (R.batches)
            shuffle(batch, n, &x);
        for (i = 0; i < n; i++)
            reply_echo(&batch[i], 200);
        answered += n;
    }
    return NULL;
}

static void many_add(CURLM *m, struct fx *f, int i)
{
    struct call *c = &f->many[i];
    char path[32], body[64];
    CURL *h;

    snprintf(path, sizeof(path), "/echo?i=%d", i);
    snprintf(body, sizeof(body), "body-%03d-%.*s", i, i % 40,
             "abcdefghijklmnopqrstuvwxyz0123456789ABCD");
    call_init(c, f->port, path, body);
    h = call_easy(c, WAIT_MS);
    if (h)
        curl_multi_add_handle(m, h);
}

/*
 * MANY requests over MANY_CONNS connections (curl multi), each put off and answered from
 * the replier thread: every answer must be its own request's, and each is logged once.
 */
static void run_many(struct fx *f, bool batches)
{
    struct timespec dl;
    pthread_t replier;
    CURLM *m;
    CURLMsg *msg;
    int added = 0, done = 0, running = 0, left, i;
    char want[128];

    start_server(f, NULL, on_async, 4, 0);
    R.batches = batches;
    R.error = NULL;
    m = curl_multi_init();
    assert_non_null(m);
    curl_multi_setopt(m, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)MANY_CONNS);
    assert_int_equal(pthread_create(&replier, NULL, replier_main, NULL), 0);
    for (; added < MANY_CONNS; added++)
        many_add(m, f, added);
    dl = deadline_in(WAIT_MS * 3);
    while (done < MANY && !past(&dl)) {
        curl_multi_perform(m, &running);
        while ((msg = curl_multi_info_read(m, &left)) != NULL) {
            CURL *h = msg->easy_handle;
            char *priv = NULL;

            if (msg->msg != CURLMSG_DONE)
                continue;
            curl_easy_getinfo(h, CURLINFO_PRIVATE, &priv);
            curl_multi_remove_handle(m, h);
            call_finish((struct call *)(void *)priv, h, msg->data.result);
            done++;
            if (added < MANY)
                many_add(m, f, added++);
        }
        if (done < MANY)
            curl_multi_poll(m, NULL, 0, 1000, NULL);
    }
    curl_multi_cleanup(m);
    pthread_join(replier, NULL);
    if (R.error)
        fail_msg("replier: %s (%d answers received)", R.error, done);
    assert_int_equal(done, MANY);
    for (i = 0; i < MANY; i++) {
        snprintf(want, sizeof(want), "{\"i\":\"%d\",\"body\":\"body-%03d-%.*s\"}", i, i, i % 40,
                 "abcdefghijklmnopqrstuvwxyz0123456789ABCD");
        check_answer(&f->many[i], 200, want);
    }
    stop_server(f);
    assert_int_equal(C.logged, MANY);
}

static void test_many_answered_out_of_order(void **state)
{
    run_many(*state, true);
}

static void test_many_answered_at_once(void **state)
{
    run_many(*state, false);
}

/*
 * vh_server_stop with an answer owed: it must not return while the answer is owed, and the
 * answer must reach the client (with Connection: close, the server is stopping).
 */
static void test_stop_waits_for_answer(void **state)
{
    struct fx *f = *state;
    struct put_off p;

    start_server(f, NULL, on_async, 2, 0);
    call_init(&f->a, f->port, "/later?i=s", "last");
    call_start(&f->a);
    assert_true(wait_put_off(1, WAIT_MS));
    stop_start(f);
    assert_true(wait_flag(&C.draining, WAIT_MS)); /* stop is under way, and saw the request */
    assert_false(wait_flag(&C.stopped, NOT_YET_MS));
    assert_false(atomic_load(&f->a.done));

    p = take_one();
    reply_echo(&p, 200);
    assert_true(wait_flag(&C.stopped, WAIT_MS));
    pthread_join(f->stopper, NULL);
    f->stopper_started = false;
    call_join(&f->a);
    check_answer(&f->a, 200, "{\"i\":\"s\",\"body\":\"last\"}");
    assert_true(f->a.conn_close);
    assert_int_equal(C.logged, 1);
}

/*
 * A body declared at more than 16 times the bound is refused before it is read; with an async
 * handler that puts the refusal off, the answer still arrives (the client waits for
 * 100-continue, so it sends nothing until the server answers).
 */
static void test_async_early_refusal_later(void **state)
{
    struct fx *f = *state;
    struct put_off p;

    start_server(f, NULL, on_async, 2, BODY_MAX);
    call_init(&f->a, f->port, "/later?i=big", NULL);
    f->a.declare = HUGE_DECLARE;
    f->a.expect_100 = true;
    call_start(&f->a);
    assert_true(wait_put_off(1, WAIT_MS));
    p = take_one();
    assert_true(p.req->base.body_too_large);
    assert_int_equal(p.req->base.body_len, 0);
    reply_echo(&p, 413);
    call_join(&f->a);
    check_answer(&f->a, 413, "{\"i\":\"big\",\"body\":\"\"}");
    assert_int_equal(f->a.uploaded, 0); /* refused unread: no 100 Continue was sent */
    stop_server(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_start_needs_a_handler, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sync_handler, setup, teardown),
        cmocka_unit_test_setup_teardown(test_async_answers_at_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_async_answers_later, setup, teardown),
        cmocka_unit_test_setup_teardown(test_async_replies_before_returning, setup, teardown),
        cmocka_unit_test_setup_teardown(test_async_reply_while_handler_runs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_answered_out_of_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_answered_at_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_default_threads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_waits_for_answer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_async_early_refusal_later, setup, teardown),
    };
    int rc;

    cond_init_mono(&C.cv);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return 1;
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
