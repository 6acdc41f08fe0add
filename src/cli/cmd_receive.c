/*
 * vocohook receive: the receiver daemon (SPEC §7). Opens the inbox, serves the webhook
 * paths over HTTP until SIGTERM, SIGINT or SIGHUP, runs the background jobs, then stops
 * accepting, lets requests in progress finish, stops the workers (a job cut short goes back
 * to pending) and exits 0.
 *
 * stdout carries one line, `listening on HOST:PORT`, once the socket is bound; stderr
 * carries the log, one JSON object per line.
 */
#include "cli/cli.h"

#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <vocohook/config.h>
#include <vocohook/json.h>
#include <vocohook/receive.h>

#include "core/banned.h"

#define LISTEN_DEFAULT "127.0.0.1:9000"
#define INBOX_DEFAULT  "./var/inbox.db"
#define LOG_BUF_SIZE   (64 * 1024) /* each of the log's two buffers */
#define LOG_BUF_HIGH   (16 * 1024) /* a buffer this full is written at once */
#define LOG_FLUSH_MS   100         /* the longest an info or debug line waits */

static const char receive_usage[] =
    "usage: vocohook receive [--listen ADDR] [--db PATH] [--secret S ...] [--tolerance SEC]\n"
    "                        [--recordings DIR] [--exec CMD] [--forward URL] [options]\n"
    "Receives session.completed webhooks on POST / and POST /webhook: verifies each one,\n"
    "stores it (deduplicated on session_id) and answers 200 at once; then, in the\n"
    "background, downloads the recording, runs CMD and forwards the payload.\n"
    "  --listen ADDR             127.0.0.1:9000 (default); port 0 picks one\n"
    "  --db PATH                 the inbox, a SQLite file (default: VOCOHOOK_INBOX, else\n"
    "                            ./var/inbox.db); `vocohook sessions` reads it\n"
    "  --secret S                an accepted secret (repeat for rotation); prefer\n"
    "                            VOCOHOOK_SECRETS=s1,s2, which `ps` does not show\n"
    "  --tolerance SEC|off       timestamp window both ways (default 300)\n"
    "  --recordings DIR          download recording_url into DIR before it expires\n"
    "  --recording-max SIZE      the largest recording accepted (default 512MiB)\n"
    "  --exec CMD                run `sh -c CMD` per event, payload on stdin\n"
    "  --forward URL             POST each payload to URL (with its original headers)\n"
    "  --allow-http              download recordings over http:// too (development)\n"
    "  --allow-private-networks  download from loopback and private addresses (development)\n"
    "  --ca-file PEM             CA certificates for downloads and forwards\n"
    "  --action-attempts N       exec and forward attempts in all (default 8)\n"
    "  --action-timeout DUR      one exec or forward attempt (default 60s)\n"
    "  --download-timeout DUR    one download attempt (default 30m)\n"
    "  --workers N               background workers (default 2)\n"
    "  --threads N               HTTP threads, each an event loop (default: one per CPU, at\n"
    "                            most 8)\n"
    "  --sched batch|normal      the threads' scheduling policy (default batch: a thread\n"
    "                            woken up waits for the running one instead of preempting it)\n"
    "  --log-level L             error, warn, info (default) or debug\n";

enum {
    OPT_LISTEN = 256,
    OPT_DB,
    OPT_SECRET,
    OPT_TOLERANCE,
    OPT_RECORDINGS,
    OPT_RECORDING_MAX,
    OPT_EXEC,
    OPT_FORWARD,
    OPT_ALLOW_HTTP,
    OPT_ALLOW_PRIVATE,
    OPT_CA_FILE,
    OPT_ACTION_ATTEMPTS,
    OPT_ACTION_TIMEOUT,
    OPT_DOWNLOAD_TIMEOUT,
    OPT_WORKERS,
    OPT_THREADS,
    OPT_SCHED,
    OPT_LOG_LEVEL
};

static const struct option receive_opts[] = {
    {"listen", required_argument, NULL, OPT_LISTEN},
    {"db", required_argument, NULL, OPT_DB},
    {"secret", required_argument, NULL, OPT_SECRET},
    {"tolerance", required_argument, NULL, OPT_TOLERANCE},
    {"recordings", required_argument, NULL, OPT_RECORDINGS},
    {"recording-max", required_argument, NULL, OPT_RECORDING_MAX},
    {"exec", required_argument, NULL, OPT_EXEC},
    {"forward", required_argument, NULL, OPT_FORWARD},
    {"allow-http", no_argument, NULL, OPT_ALLOW_HTTP},
    {"allow-private-networks", no_argument, NULL, OPT_ALLOW_PRIVATE},
    {"ca-file", required_argument, NULL, OPT_CA_FILE},
    {"action-attempts", required_argument, NULL, OPT_ACTION_ATTEMPTS},
    {"action-timeout", required_argument, NULL, OPT_ACTION_TIMEOUT},
    {"download-timeout", required_argument, NULL, OPT_DOWNLOAD_TIMEOUT},
    {"workers", required_argument, NULL, OPT_WORKERS},
    {"threads", required_argument, NULL, OPT_THREADS},
    {"sched", required_argument, NULL, OPT_SCHED},
    {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0}};

/* The headers the receiver reads, in the order vh_server_req.headers gives them. */
enum { H_TIMESTAMP, H_SIGNATURE, H_ID };

struct receive_args {
    struct vh_receiver_config rcfg;
    const char *secrets[VH_RECEIVER_SECRETS_MAX];
    char *env_secrets; /* owned: VOCOHOOK_SECRETS split in place */
    size_t env_secret_len;
    bool flag_secrets;
    const char *listen;
    unsigned threads;
    bool sched_normal; /* --sched normal */
    enum vh_log_level level;
};

/*
 * The log, buffered. The receiver and the HTTP server log two lines per webhook; written
 * one by one to unbuffered stderr that was four write(2) calls per webhook, taken under
 * stderr's lock by 64 threads. Here a line is copied into a buffer under a mutex, and the
 * flusher thread writes the buffer in one write when it passes LOG_BUF_HIGH bytes or
 * LOG_FLUSH_MS after its first line; a warning or an error goes out at once, from the
 * thread that logs it (with everything before it, in order). A SIGKILL can lose the info
 * lines of the last LOG_FLUSH_MS; the inbox, not the log, is the record of what was stored.
 *
 * Two buffers: lines go into `buf[cur]` while the other one is being written. `write_mu` is
 * held from the swap to the end of the write, so buffers go out in the order they filled.
 */
struct log_sink {
    pthread_mutex_t mu;       /* guards the fields below but `write_mu` */
    pthread_mutex_t write_mu; /* held while a buffer is written */
    pthread_cond_t cv;        /* the flusher waits on it, on CLOCK_MONOTONIC */
    char buf[2][LOG_BUF_SIZE];
    unsigned cur;
    size_t len;
    bool stop;
    bool started;
    pthread_t flusher;
    const enum vh_log_level *max;
};

static void write_all(int fd, const char *p, size_t n)
{
    ssize_t w;

    while (n > 0) {
        w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return; /* nowhere to log to: drop it, as stdio would */
        p += w;
        n -= (size_t)w;
    }
}

/* Writes what is buffered now, after what any flush before it took. */
static void sink_flush(struct log_sink *s)
{
    const char *out;
    size_t n;

    pthread_mutex_lock(&s->write_mu);
    pthread_mutex_lock(&s->mu);
    out = s->buf[s->cur];
    n = s->len;
    s->cur ^= 1;
    s->len = 0;
    pthread_mutex_unlock(&s->mu);
    write_all(STDERR_FILENO, out, n);
    pthread_mutex_unlock(&s->write_mu);
}

/* The vh_log_fn: any thread, concurrently. */
static void sink_log(void *ud, enum vh_log_level level, const char *json_line)
{
    struct log_sink *s = ud;
    size_t n = strlen(json_line);
    bool now;

    if (level > *s->max)
        return;
    if (n + 1 > LOG_BUF_SIZE) {
        /* Longer than a buffer (the library's lines are not): after the rest, alone. */
        sink_flush(s);
        pthread_mutex_lock(&s->write_mu);
        write_all(STDERR_FILENO, json_line, n);
        write_all(STDERR_FILENO, "\n", 1);
        pthread_mutex_unlock(&s->write_mu);
        return;
    }
    pthread_mutex_lock(&s->mu);
    while (s->len + n + 1 > LOG_BUF_SIZE) {
        pthread_mutex_unlock(&s->mu);
        sink_flush(s);
        pthread_mutex_lock(&s->mu);
    }
    /* The first line starts the flusher's clock; LOG_BUF_HIGH bytes end its wait. */
    if (s->len == 0 || (s->len < LOG_BUF_HIGH && s->len + n + 1 >= LOG_BUF_HIGH))
        pthread_cond_signal(&s->cv);
    memcpy(s->buf[s->cur] + s->len, json_line, n);
    s->buf[s->cur][s->len + n] = '\n';
    s->len += n + 1;
    now = level <= VH_LOG_WARN;
    pthread_mutex_unlock(&s->mu);
    if (now)
        sink_flush(s);
}

static void deadline_after(struct timespec *ts, long ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

/*
 * The flusher: a buffer that got a line is written LOG_FLUSH_MS later, or as soon as it
 * holds LOG_BUF_HIGH bytes; so request threads never wait for the write (unless both
 * buffers fill up before one is written).
 */
static void *sink_run(void *arg)
{
    struct log_sink *s = arg;
    struct timespec deadline;

    (void)prctl(PR_SET_NAME, (unsigned long)"vh-log", 0UL, 0UL, 0UL); /* for top -H, perf */
    pthread_mutex_lock(&s->mu);
    while (!s->stop) {
        if (s->len == 0) {
            pthread_cond_wait(&s->cv, &s->mu);
            continue;
        }
        deadline_after(&deadline, LOG_FLUSH_MS);
        while (!s->stop && s->len < LOG_BUF_HIGH &&
               pthread_cond_timedwait(&s->cv, &s->mu, &deadline) == 0)
            ;
        pthread_mutex_unlock(&s->mu);
        sink_flush(s);
        pthread_mutex_lock(&s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* Returns 0, or an exit code (nothing to release then). */
static int sink_init(struct log_sink *s, const enum vh_log_level *max)
{
    pthread_condattr_t attr;
    int rc;

    memset(s, 0, sizeof(*s));
    s->max = max;
    if (pthread_condattr_init(&attr) != 0)
        return cli_fail("receive", CLI_FAILED, "log: out of memory");
    rc = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    if (rc == 0)
        rc = pthread_cond_init(&s->cv, &attr);
    pthread_condattr_destroy(&attr);
    if (rc != 0)
        return cli_fail("receive", CLI_FAILED, "log: %s", strerror(rc));
    pthread_mutex_init(&s->mu, NULL);
    pthread_mutex_init(&s->write_mu, NULL);
    rc = pthread_create(&s->flusher, NULL, sink_run, s);
    if (rc != 0) {
        pthread_mutex_destroy(&s->write_mu);
        pthread_mutex_destroy(&s->mu);
        pthread_cond_destroy(&s->cv);
        return cli_fail("receive", CLI_FAILED, "log: starting a thread: %s", strerror(rc));
    }
    s->started = true;
    return 0;
}

/* Stops the flusher and writes what is left. Nothing may log through `s` any more. */
static void sink_release(struct log_sink *s)
{
    if (!s->started)
        return;
    pthread_mutex_lock(&s->mu);
    s->stop = true;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->flusher, NULL);
    sink_flush(s);
    pthread_mutex_destroy(&s->write_mu);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    s->started = false;
}

/*
 * The HTTP server's handler: the receiver, fed the three webhook headers. It answers through
 * vh_receiver_handle_async, so no server thread sleeps through a commit: a webhook to store
 * is answered once its group commit is durable, by the inbox's commit thread.
 */
struct exchange {
    struct vh_receive_req req;
    struct vh_receive_resp rr;
    struct vh_api_resp *resp;
    struct vh_server_reply *reply;
};

/*
 * Copies the receiver's answer into the server's. `path`: the request's, for the Allow
 * header of a 405 (RFC 9110 15.5.6: a MUST); NULL for a late answer, which is never one.
 */
static void copy_answer(const struct vh_receive_resp *rr, const char *path,
                        struct vh_api_resp *resp)
{
    resp->status = rr->status;
    if (rr->outcome == VH_RECEIVE_METHOD && path)
        snprintf(resp->allow, sizeof(resp->allow), "%s",
                 strcmp(path, "/healthz") == 0 ? "GET, HEAD" : "POST");
    if (vh_buf_add(&resp->body, rr->body, rr->body_len) < 0)
        resp->status = 500; /* the server answers its own 500 body */
}

/* The receiver's late answer (vh_receive_done_fn). */
static void on_stored(void *ud)
{
    struct exchange *x = ud;
    struct vh_server_reply *reply = x->reply;

    copy_answer(&x->rr, NULL, x->resp);
    vh_free(x);
    vh_server_reply(reply);
}

/* The receiver's view of a server request; borrows from `sreq`. */
static void receive_req_from(const struct vh_server_req *sreq, struct vh_receive_req *req)
{
    req->method = sreq->base.method;
    req->path = sreq->base.path;
    req->timestamp = sreq->headers[H_TIMESTAMP];
    req->signature = sreq->headers[H_SIGNATURE];
    req->webhook_id = sreq->headers[H_ID];
    req->body = sreq->base.body;
    req->body_len = sreq->base.body_len;
    req->body_too_large = sreq->base.body_too_large;
    req->now_ms = sreq->base.now_ms;
}

/*
 * The server's admit hook: a request without both signature headers, or outside the
 * timestamp window, is answered before its body (up to 1 MiB) is read.
 */
static bool on_admit(void *ud, const struct vh_server_req *sreq, struct vh_api_resp *resp)
{
    struct vh_receive_req req;
    struct vh_receive_resp rr;

    receive_req_from(sreq, &req);
    if (vh_receiver_admit(ud, &req, &rr))
        return true;
    copy_answer(&rr, req.path, resp);
    return false;
}

/*
 * The server's own refusals (a 400 to a body of ambiguous length), in the receiver's envelope
 * rather than the partner API's: {"ok":false,"error":"bad_request","reason":...}.
 */
static void on_refuse(void *ud, int status, const char *reason, const char *message,
                      struct vh_api_resp *resp)
{
    (void)ud;
    resp->status = status;
    if (vh_buf_addf(
            &resp->body,
            "{\"ok\":false,\"error\":\"bad_request\",\"reason\":\"%s\",\"message\":", reason) < 0 ||
        vh_json_add_string(&resp->body, message, strlen(message)) < 0 ||
        vh_buf_adds(&resp->body, "}") < 0)
        vh_buf_release(&resp->body); /* the server answers its own 500 */
}

static int on_request(void *ud, const struct vh_server_req *sreq, struct vh_api_resp *resp,
                      struct vh_server_reply *reply)
{
    struct exchange *x = vh_malloc(sizeof(*x));
    int rc;

    if (!x) {
        resp->status = 500;
        return VH_ENOMEM;
    }
    memset(x, 0, sizeof(*x));
    receive_req_from(sreq, &x->req);
    x->resp = resp;
    x->reply = reply;
    rc = vh_receiver_handle_async(ud, &x->req, &x->rr, on_stored, x);
    if (rc == 1)
        return VH_SERVER_LATER;
    copy_answer(&x->rr, x->req.path, resp);
    vh_free(x);
    return rc;
}

/*
 * HTTP threads when --threads is not given. No thread waits for a commit (the inbox's commit
 * thread answers), so each is a poll loop over its connections, and more threads than CPUs
 * only add switches: in scenario 6 (docs/BENCHMARKS.md) 1 or 2 of them took 11 k webhooks/s
 * at 75 µs of CPU each, where 64 threads that each slept through a commit took 8 k at 100 µs.
 */
static unsigned default_threads(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);

    return n < 1 ? 1 : n > 8 ? 8 : (unsigned)n;
}

#ifndef SCHED_BATCH
#define SCHED_BATCH 3 /* Linux's (linux/sched.h); glibc names it only under _GNU_SOURCE */
#endif

/*
 * --sched batch, before any thread starts (threads inherit the policy). The daemon's threads
 * hand work to each other all the time: an HTTP thread posts a webhook to the inbox's commit
 * thread, which resumes each connection of a batch with a write to the HTTP thread's wakeup
 * descriptor. Under SCHED_OTHER each of those wakeups may preempt the thread that made it
 * (the commit thread, in the middle of its batch's answers); under SCHED_BATCH the woken
 * thread waits until the running one blocks or its slice ends. Scenario 6 (docs/BENCHMARKS.md,
 * session 11): context switches per webhook 0.57 -> 0.24 and about 5 % less CPU per webhook.
 * Unprivileged: a process may always lower its own claim. Returns 0 or the error number of
 * a refusal (a seccomp policy, say), which only warns.
 */
static int set_sched(bool normal)
{
    struct sched_param sp;

    if (normal)
        return 0;
    memset(&sp, 0, sizeof(sp));
    return pthread_setschedparam(pthread_self(), SCHED_BATCH, &sp);
}

/* Frees the copy of VOCOHOOK_SECRETS, wiping it first (the receiver keeps its own copies). */
static void release_args(struct receive_args *a)
{
    volatile char *v = a->env_secrets;
    size_t n = a->env_secrets ? a->env_secret_len : 0;

    while (n--)
        *v++ = '\0';
    vh_free(a->env_secrets);
    a->env_secrets = NULL;
}

/* Splits VOCOHOOK_SECRETS ("a,b") into `a->secrets`. Returns 0 or an exit code. */
static int secrets_from_env(struct receive_args *a)
{
    const char *env = getenv("VOCOHOOK_SECRETS");

    if (!env || !*env)
        return 0;
    a->env_secret_len = strlen(env);
    a->env_secrets = vh_strndup(env, a->env_secret_len);
    if (!a->env_secrets)
        return cli_fail("receive", CLI_FAILED, "out of memory");
    return cli_split_secrets("receive", a->env_secrets, a->secrets, VH_RECEIVER_SECRETS_MAX,
                             &a->rcfg.n_secrets);
}

static int parse_size(const char *s, uint64_t *out)
{
    static const struct {
        const char *suffix;
        uint64_t mult;
    } units[] = {{"", 1},     {"KiB", 1024}, {"MiB", UINT64_C(1) << 20}, {"GiB", UINT64_C(1) << 30},
                 {"k", 1024}, {"K", 1024},   {"M", UINT64_C(1) << 20},   {"G", UINT64_C(1) << 30}};
    const uint64_t max = UINT64_C(1) << 40;
    uint64_t v = 0;
    const char *p;
    size_t i;

    for (p = s; *p >= '0' && *p <= '9' && v <= max; p++)
        v = v * 10 + (uint64_t)(*p - '0');
    for (i = 0; p != s && v <= max && i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcmp(p, units[i].suffix) == 0 && v > 0 && v <= max / units[i].mult) {
            *out = v * units[i].mult;
            return 0;
        }
    }
    return cli_fail("receive", CLI_USAGE,
                    "--recording-max: expected a size like 512MiB or 2GiB, got '%s'", s);
}

static int parse_level(const char *s, enum vh_log_level *out)
{
    static const enum vh_log_level all[] = {VH_LOG_ERROR, VH_LOG_WARN, VH_LOG_INFO, VH_LOG_DEBUG};
    size_t i;

    for (i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
        if (strcasecmp(s, vh_log_level_name(all[i])) == 0) {
            *out = all[i];
            return 0;
        }
    }
    return cli_fail("receive", CLI_USAGE,
                    "--log-level: expected error, warn, info or debug, got '%s'", s);
}

static int parse_duration(const char *opt, const char *v, int64_t *out)
{
    struct vh_error err = VH_ERROR_INIT;
    int64_t ms;

    if (vh_duration_parse(v, &ms, &err) < 0 || ms < 1)
        return cli_fail("receive", CLI_USAGE, "%s: %s", opt,
                        err.code ? err.msg : "must be more than 0");
    *out = ms;
    return 0;
}

/* One option. Returns 0 or an exit code. */
static int apply_option(struct receive_args *a, int c, const char *v)
{
    struct vh_receiver_config *rc = &a->rcfg;
    int64_t n = 0;
    int code = 0;

    switch (c) {
    case OPT_LISTEN:
        a->listen = v;
        break;
    case OPT_DB:
        rc->db_path = v;
        break;
    case OPT_SECRET:
        if (rc->n_secrets == VH_RECEIVER_SECRETS_MAX)
            return cli_fail("receive", CLI_USAGE, "at most %d secrets", VH_RECEIVER_SECRETS_MAX);
        a->secrets[rc->n_secrets++] = v;
        a->flag_secrets = true;
        break;
    case OPT_TOLERANCE:
        if (strcmp(v, "off") == 0) {
            rc->tolerance_ms = -1;
            break;
        }
        code = cli_parse_int("receive", "--tolerance", v, 0, 365 * 86400, &n);
        rc->tolerance_ms = n * 1000;
        break;
    case OPT_RECORDINGS:
        rc->recordings_dir = v;
        break;
    case OPT_RECORDING_MAX:
        code = parse_size(v, &rc->recording_max);
        break;
    case OPT_EXEC:
        rc->exec_cmd = v;
        break;
    case OPT_FORWARD:
        rc->forward_url = v;
        break;
    case OPT_ALLOW_HTTP:
        rc->allow_http = true;
        break;
    case OPT_ALLOW_PRIVATE:
        rc->allow_private_networks = true;
        break;
    case OPT_CA_FILE:
        rc->ca_file = v;
        break;
    case OPT_ACTION_ATTEMPTS:
        code = cli_parse_int("receive", "--action-attempts", v, 1, 1000, &n);
        rc->action_attempts = (unsigned)n;
        break;
    case OPT_ACTION_TIMEOUT:
        code = parse_duration("--action-timeout", v, &rc->action_timeout_ms);
        break;
    case OPT_DOWNLOAD_TIMEOUT:
        code = parse_duration("--download-timeout", v, &rc->download_timeout_ms);
        break;
    case OPT_WORKERS:
        code = cli_parse_int("receive", "--workers", v, 1, 64, &n);
        rc->workers = (unsigned)n;
        break;
    case OPT_THREADS:
        code = cli_parse_int("receive", "--threads", v, 1, 256, &n);
        a->threads = (unsigned)n;
        break;
    case OPT_SCHED:
        if (strcmp(v, "batch") == 0 || strcmp(v, "normal") == 0)
            a->sched_normal = strcmp(v, "normal") == 0;
        else
            code = cli_fail("receive", CLI_USAGE, "--sched: expected batch or normal, got '%s'", v);
        break;
    case OPT_LOG_LEVEL:
        code = parse_level(v, &a->level);
        break;
    default:
        fputs(receive_usage, stderr);
        return CLI_USAGE;
    }
    return code;
}

/* Parses the command line. Returns 0, or an exit code (-1 for --help, which exits 0). */
static int parse_args(int argc, char **argv, struct receive_args *a)
{
    const char *inbox = getenv("VOCOHOOK_INBOX");
    int c, code;

    vh_receiver_config_init(&a->rcfg);
    a->rcfg.db_path = inbox && *inbox ? inbox : INBOX_DEFAULT;
    a->listen = LISTEN_DEFAULT;
    a->level = VH_LOG_INFO;
    optind = 1;
    for (;;) {
        c = getopt_long(argc, argv, "h", receive_opts, NULL);
        if (c == -1)
            break;
        if (c == 'h') {
            fputs(receive_usage, stdout);
            return -1;
        }
        code = apply_option(a, c, optarg);
        if (code)
            return code;
    }
    if (optind != argc) {
        fprintf(stderr, "vocohook receive: unexpected argument '%s'\n", argv[optind]);
        fputs(receive_usage, stderr);
        return CLI_USAGE;
    }
    if (a->rcfg.n_secrets == 0) {
        code = secrets_from_env(a);
        if (code)
            return code;
    }
    if (a->rcfg.n_secrets == 0)
        return cli_fail("receive", CLI_USAGE, "no secret: set VOCOHOOK_SECRETS (or --secret)");
    a->rcfg.secrets = a->secrets;
    return 0;
}

/* Creates the default inbox directory (./var) on a first run; other paths must exist. */
static int make_default_dir(const char *db_path)
{
    if (strcmp(db_path, INBOX_DEFAULT) != 0)
        return 0;
    if (mkdir("./var", 0700) != 0 && errno != EEXIST)
        return cli_fail("receive", CLI_FAILED, "creating ./var: %s", strerror(errno));
    return 0;
}

static void warn_about(const struct receive_args *a, enum vh_log_level *level)
{
    if (a->flag_secrets)
        cli_log(level, VH_LOG_WARN,
                "\"msg\":\"secrets given with --secret are visible to other users in ps; "
                "prefer VOCOHOOK_SECRETS\"}");
    if (a->rcfg.tolerance_ms < 0)
        cli_log(level, VH_LOG_WARN,
                "\"msg\":\"the timestamp check is off (--tolerance off): old requests can "
                "be replayed\"}");
    if (a->rcfg.allow_http)
        cli_log(level, VH_LOG_WARN,
                "\"msg\":\"allow_http is on: recordings may be fetched over http:// "
                "(development only)\"}");
    if (a->rcfg.allow_private_networks)
        cli_log(level, VH_LOG_WARN,
                "\"msg\":\"allow_private_networks is on: recordings may be fetched from "
                "loopback and private addresses (development only)\"}");
}

/* Serves until SIGTERM, SIGINT or SIGHUP (blocked before any thread starts). */
static int run(struct receive_args *a, const sigset_t *stop_sigs)
{
    struct vh_error err = VH_ERROR_INIT;
    struct vh_receiver *r = NULL;
    struct vh_server *srv = NULL;
    struct vh_server_handler h;
    struct vh_server_config scfg;
    struct log_sink *sink;
    const char *colon = strrchr(a->listen, ':');
    int sched_rc = set_sched(a->sched_normal);
    int code = CLI_OK, rc, sig = 0;

    sink = vh_malloc(sizeof(*sink));
    if (!sink)
        return cli_fail("receive", CLI_FAILED, "out of memory");
    code = sink_init(sink, &a->level);
    if (code) {
        vh_free(sink);
        return code;
    }
    /* Lines written straight to stderr (cli_log, cli_fail) go after what the sink holds. */
    a->rcfg.log = sink_log;
    a->rcfg.log_ud = sink;
    rc = vh_receiver_new(&a->rcfg, &r, &err);
    if (rc < 0) {
        sink_flush(sink);
        code = cli_fail("receive", rc == VH_EINVAL ? CLI_USAGE : CLI_FAILED, "%s", err.msg);
        goto out;
    }
    memset(&h, 0, sizeof(h));
    h.handle_async = on_request;
    h.admit = on_admit;
    h.refuse = on_refuse;
    h.ud = r;
    h.headers[H_TIMESTAMP] = "X-Webhook-Timestamp";
    h.headers[H_SIGNATURE] = "X-Webhook-Signature";
    h.headers[H_ID] = "X-Webhook-Id";
    memset(&scfg, 0, sizeof(scfg));
    scfg.listen = a->listen;
    scfg.threads = a->threads ? a->threads : default_threads();
    scfg.log = sink_log;
    scfg.log_ud = sink;
    rc = vh_server_start_handler(&h, &scfg, &srv, &err);
    if (rc < 0) {
        sink_flush(sink);
        code = cli_fail("receive", rc == VH_EINVAL ? CLI_USAGE : CLI_FAILED, "%s", err.msg);
        goto out;
    }
    rc = vh_receiver_start(r, &err);
    sink_flush(sink);
    if (rc < 0) {
        code = cli_fail("receive", CLI_FAILED, "%s", err.msg);
        goto out;
    }
    warn_about(a, &a->level);
    if (sched_rc)
        cli_log(&a->level, VH_LOG_WARN,
                "\"msg\":\"--sched batch: refused (%s); the threads keep the default policy\"}",
                strerror(sched_rc));
    cli_log(&a->level, VH_LOG_INFO,
            "\"msg\":\"listening\",\"addr\":\"%.*s:%u\",\"secrets\":%zu,\"sched\":\"%s\","
            "\"version\":\"%s\"}",
            (int)(colon - a->listen), a->listen, (unsigned)vh_server_port(srv), a->rcfg.n_secrets,
            a->sched_normal || sched_rc ? "normal" : "batch", vh_version());
    printf("listening on %.*s:%u\n", (int)(colon - a->listen), a->listen,
           (unsigned)vh_server_port(srv));
    fflush(stdout);
    while (sigwait(stop_sigs, &sig) != 0)
        ;
    sink_flush(sink);
    cli_log(&a->level, VH_LOG_INFO, "\"msg\":\"stopping\",\"signal\":\"%s\"}",
            cli_signal_name(sig));
out:
    vh_server_stop(srv); /* first: no request may be running when the receiver goes */
    vh_receiver_free(r);
    sink_release(sink); /* last: the server and the receiver log until they are gone */
    vh_free(sink);
    if (code == CLI_OK)
        cli_log(&a->level, VH_LOG_INFO, "\"msg\":\"stopped\"}");
    return code;
}

int cmd_receive(int argc, char **argv)
{
    struct receive_args a;
    sigset_t stop_sigs;
    int code;

    cli_heap_tune();
    memset(&a, 0, sizeof(a));
    code = parse_args(argc, argv, &a);
    if (code) {
        release_args(&a);
        return code < 0 ? CLI_OK : code;
    }
    if (!strchr(a.listen, ':')) {
        release_args(&a);
        return cli_fail("receive", CLI_USAGE, "--listen: expected HOST:PORT, got '%s'", a.listen);
    }
    code = make_default_dir(a.rcfg.db_path);
    if (code) {
        release_args(&a);
        return code;
    }

    cli_block_stop_signals(&stop_sigs);

    code = run(&a, &stop_sigs);
    release_args(&a);
    return code;
}
