/*
 * The render+sign micro-benchmark: how close does producing a signed webhook come to the
 * cost of the HMAC alone?
 *
 * For a ~2 KB and a ~50 KB session (built here as ingest JSON with realistic transcript
 * turns, parsed once with vh_session_parse) it measures
 *   (a) render only:   vh_session_render into a reused vh_buf;
 *   (b) render + sign: vh_session_render + vh_time_format + vh_sign (what an attempt does);
 *   (c) sign only:     vh_sign on the rendered body;
 *   (d) the limit:     OpenSSL's HMAC-SHA256 of the same bytes (`{ts}.{body}`), one-shot
 *                      HMAC(EVP_sha256(), ...), and a reused EVP_MAC context.
 * Each is run for a fixed wall time (CLOCK_MONOTONIC), several times; the table gives the
 * median and the min-max of the runs. MB/s counts the rendered body's bytes (1 MB = 10^6).
 *
 * usage: bench_sign [--seconds S] [--runs N]      (defaults: 1 s, 5 runs)
 *
 * Not run by ctest: numbers depend on the machine. The library's code is used only through
 * <vocohook/...>; OpenSSL is included here for the baseline only.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <vocohook/vocohook.h>

#include "core/banned.h"

#define SECRET           "whsec_5f2b9c1e8a7d4063b1e9f0a2c4d6e8f01a3c5e7092b4d6f8a0c2e4f6a8b0d2e4"
#define EVENT_TS_MS      INT64_C(1773585128000) /* 2026-03-15T14:32:08.000Z */
#define CALL_START_MS    INT64_C(1773585001000) /* 2026-03-15T14:30:01.000Z */
#define MAX_SAMPLES      99
#define BATCH_MIN_NS     200000.0 /* a timed batch lasts at least 0.2 ms: clock reads are noise */
#define SESSION_JSON_MAX (4 * 1024 * 1024)

/* What one operation needs; every field is set up before timing starts. */
struct ctx {
    const struct vh_session *s;
    struct vh_buf *out; /* reused render buffer */
    const char *body;   /* the rendered body (for sign-only and the baselines) */
    size_t body_len;
    const unsigned char *msg; /* `{ts}.{body}` contiguous, for the one-shot HMAC */
    size_t msg_len;
    char ts[VH_TIME_LEN + 1]; /* the attempt time signed by (c) and (d) */
    int64_t attempt_ms;       /* (b) formats a new attempt time each operation */
    EVP_MAC_CTX *mac;         /* keyed once; re-initialized per operation */
    volatile unsigned sink;
};

typedef int op_fn(struct ctx *c);

static int op_render(struct ctx *c)
{
    struct vh_error err = VH_ERROR_INIT;
    int rc;

    vh_buf_reset(c->out);
    rc = vh_session_render(c->s, EVENT_TS_MS, c->out, &err);
    if (rc < 0)
        fprintf(stderr, "bench_sign: render: %s\n", err.msg);
    return rc;
}

static int op_render_sign(struct ctx *c)
{
    struct vh_error err = VH_ERROR_INIT;
    char ts[VH_TIME_LEN + 1];
    char sig[VH_SIG_LEN + 1];
    int rc;

    vh_buf_reset(c->out);
    rc = vh_session_render(c->s, EVENT_TS_MS, c->out, &err);
    if (rc >= 0)
        rc = vh_time_format(c->attempt_ms++, ts);
    if (rc >= 0)
        rc = vh_sign(SECRET, sizeof(SECRET) - 1, ts, VH_TIME_LEN, c->out->data, c->out->len, sig,
                     &err);
    if (rc < 0) {
        fprintf(stderr, "bench_sign: render+sign: %s\n", err.msg);
        return rc;
    }
    c->sink += (unsigned char)sig[VH_SIG_LEN - 1];
    return 0;
}

static int op_sign(struct ctx *c)
{
    struct vh_error err = VH_ERROR_INIT;
    char sig[VH_SIG_LEN + 1];
    int rc;

    rc = vh_sign(SECRET, sizeof(SECRET) - 1, c->ts, VH_TIME_LEN, c->body, c->body_len, sig, &err);
    if (rc < 0) {
        fprintf(stderr, "bench_sign: sign: %s\n", err.msg);
        return rc;
    }
    c->sink += (unsigned char)sig[VH_SIG_LEN - 1];
    return 0;
}

static int op_hmac_oneshot(struct ctx *c)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;

    if (!HMAC(EVP_sha256(), SECRET, (int)(sizeof(SECRET) - 1), c->msg, c->msg_len, md, &md_len))
        return -1;
    c->sink += md[0];
    return 0;
}

static int op_hmac_reused(struct ctx *c)
{
    unsigned char md[32];
    size_t md_len = 0;

    /* A NULL key re-initializes with the key the context already holds. */
    if (!EVP_MAC_init(c->mac, NULL, 0, NULL) ||
        !EVP_MAC_update(c->mac, (const unsigned char *)c->ts, VH_TIME_LEN) ||
        !EVP_MAC_update(c->mac, (const unsigned char *)".", 1) ||
        !EVP_MAC_update(c->mac, (const unsigned char *)c->body, c->body_len) ||
        !EVP_MAC_final(c->mac, md, &md_len, sizeof(md)))
        return -1;
    c->sink += md[0];
    return 0;
}

static double now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* Runs `batch` operations; returns the nanoseconds taken, or < 0 when one failed. */
static double run_batch(op_fn *op, struct ctx *c, long batch)
{
    double t0 = now_ns();
    long i;

    for (i = 0; i < batch; i++)
        if (op(c) < 0)
            return -1;
    return now_ns() - t0;
}

/*
 * Operations per second of `op`, for `runs` runs of `seconds` each, into `samples`. The
 * batch size is first grown until a batch lasts BATCH_MIN_NS (which also warms caches).
 */
static int measure(op_fn *op, struct ctx *c, double seconds, int runs, double *samples)
{
    long batch = 1, ops;
    double t, elapsed;
    int r;

    for (;;) {
        t = run_batch(op, c, batch);
        if (t < 0)
            return -1;
        if (t >= BATCH_MIN_NS)
            break;
        batch *= 2;
    }
    for (r = 0; r < runs; r++) {
        ops = 0;
        elapsed = 0;
        while (elapsed < seconds * 1e9) {
            t = run_batch(op, c, batch);
            if (t < 0)
                return -1;
            elapsed += t;
            ops += batch;
        }
        samples[r] = (double)ops / (elapsed / 1e9);
    }
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

struct stats {
    double median, min, max;
};

static struct stats summarize(double *samples, int n)
{
    struct stats st;

    qsort(samples, (size_t)n, sizeof(samples[0]), cmp_double);
    st.min = samples[0];
    st.max = samples[n - 1];
    st.median = n % 2 ? samples[n / 2] : (samples[n / 2 - 1] + samples[n / 2]) / 2;
    return st;
}

/* --- the session ------------------------------------------------------------------------ */

static const char *const user_lines[] = {
    "Hi, I'm interested in your enterprise plan.",
    "We have about forty agents today, maybe sixty by the end of the year.",
    "Does that include the call recordings, or is storage billed separately?",
    "Okay. And how long do you keep the transcripts around?",
    "Our compliance team will ask about data residency \xe2\x80\x94 can we keep everything in "
    "the EU?",
    "That sounds good. What does onboarding look like for a team our size?",
    "Can the agents hand a call over to a human when the customer asks for one?",
    "I'd like to see a demo next week, maybe Tuesday or Wednesday afternoon.",
    "Wednesday at 3 works. Please send the invite to Ren\xc3\xa9"
    "e, she runs our support desk.",
    "One more thing: is there a per-minute price above the included credits?",
};

static const char *const bot_lines[] = {
    "Great choice! Our enterprise plan includes unlimited agents, priority support, and custom "
    "voice training.",
    "With sixty agents you'd be well inside the enterprise tier, and you can add seats at any "
    "time without a new contract.",
    "Recordings are included: they're stored for ninety days by default, and you can export "
    "them to your own S3 bucket whenever you like.",
    "Transcripts are kept for as long as your account is active, and you can delete any session "
    "through the API or the dashboard.",
    "Yes \xe2\x80\x94 we can pin all processing and storage to our Frankfurt region, and the "
    "contract includes a data processing agreement.",
    "Onboarding usually takes two weeks: a kickoff call, a pilot with five agents, then a "
    "gradual rollout with a dedicated success manager.",
    "Absolutely. A transfer can be triggered by the caller saying \"agent\" or by a rule you "
    "define, and the transcript so far goes along with the call.",
    "I can book that for you. I have Tuesday at 10 or 2, and Wednesday at 11 or 3 \xe2\x80\x94 "
    "which would you prefer?",
    "Done! Ren\xc3\xa9"
    "e will get an invite for Wednesday at 3 p.m. Central European Time, with "
    "a link to join.",
    "Above the included credits it's 0.9 \xe2\x82\xac cents per minute, billed monthly, and "
    "you'll get an alert at 80% of your allowance.",
};

/* Ingest `session` JSON with `n_turns` transcript turns, the seed's shape. */
static int build_session_json(size_t n_turns, struct vh_buf *json)
{
    char ts[VH_TIME_LEN + 1];
    int64_t t = CALL_START_MS;
    const char *p;
    size_t i;
    int rc;

    rc = vh_buf_adds(json, "{\"session_id\":\"s1234567-abcd-1234-abcd-123456789012\","
                           "\"agent_id\":\"a1234567-abcd-1234-abcd-123456789012\","
                           "\"agent_name\":\"Sales Assistant\",\"duration_seconds\":127,"
                           "\"credits_used\":2.12,\"transcript\":[");
    for (i = 0; rc >= 0 && i < n_turns; i++) {
        /* The bot greets first; then user and bot alternate. */
        bool bot = i % 2 == 0;
        const char *line = bot ? bot_lines[(i / 2) % 10] : user_lines[(i / 2) % 10];
        int64_t latency = 450 + (int64_t)((i * 7919) % 750);

        if (vh_time_format(t, ts) < 0)
            return -1;
        rc = vh_buf_addf(json, "%s{\"role\":\"%s\",\"content\":\"", i ? "," : "",
                         bot ? "bot" : "user");
        /* The lines quote with \" inside; escape for JSON. */
        for (p = line; rc >= 0 && *p; p++)
            rc = *p == '"' ? vh_buf_adds(json, "\\\"") : vh_buf_addc(json, *p);
        if (rc >= 0)
            rc = vh_buf_addf(json, "\",\"timestamp\":\"%s\"", ts);
        if (rc >= 0 && !bot)
            rc = vh_buf_adds(json, ",\"latency_ms\":null");
        else if (rc >= 0 && i > 0)
            rc = vh_buf_addf(json, ",\"latency_ms\":%lld", (long long)latency);
        if (rc >= 0)
            rc = vh_buf_addc(json, '}');
        t += bot ? 3500 : 700;
    }
    if (rc >= 0)
        rc = vh_buf_adds(json, "],\"recording_url\":\"https://vocobase-recordings.s3.amazonaws.com/"
                               "rec_abc123.wav?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature="
                               "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404\","
                               "\"call\":{\"call_id\":\"c1234567-abcd-1234-abcd-123456789012\","
                               "\"from_number\":\"+14155551234\",\"to_number\":\"+919876543210\","
                               "\"direction\":\"outbound\",\"status\":\"completed\"}}");
    return rc;
}

/*
 * Parses the session of `n_turns` and renders it. Returns the rendered size, or 0 after
 * printing why it failed.
 */
static size_t make_session(size_t n_turns, struct vh_session **s, size_t *json_len)
{
    struct vh_buf json = VH_BUF_INIT(SESSION_JSON_MAX);
    struct vh_buf out = VH_BUF_INIT(VH_BODY_MAX);
    struct vh_error err = VH_ERROR_INIT;
    size_t len = 0;

    *s = NULL;
    if (build_session_json(n_turns, &json) < 0) {
        fprintf(stderr, "bench_sign: building the session JSON failed\n");
        goto out;
    }
    if (vh_session_parse(json.data, json.len, 0, s, &err) < 0) {
        fprintf(stderr, "bench_sign: vh_session_parse: %s\n", err.msg);
        goto out;
    }
    if (vh_session_render(*s, EVENT_TS_MS, &out, &err) < 0) {
        fprintf(stderr, "bench_sign: vh_session_render: %s\n", err.msg);
        vh_session_free(*s);
        *s = NULL;
        goto out;
    }
    len = out.len;
    *json_len = json.len;
out:
    vh_buf_release(&json);
    vh_buf_release(&out);
    return len;
}

/* A session whose rendered body is at least `target` bytes (and about one turn over). */
static struct vh_session *session_of_size(size_t target, size_t *n_turns, size_t *json_len)
{
    struct vh_session *s;
    size_t n = 2, len;

    for (;;) {
        len = make_session(n, &s, json_len);
        if (!len)
            return NULL;
        if (len >= target)
            break;
        vh_session_free(s);
        /* Extrapolate from the bytes per turn so far; at least one more turn. */
        n += (target - len) * n / len + 1;
    }
    *n_turns = n;
    return s;
}

/* --- main ------------------------------------------------------------------------------- */

enum { OP_RENDER, OP_RENDER_SIGN, OP_SIGN, OP_HMAC, OP_HMAC_REUSED, N_OPS };

static const struct {
    const char *name;
    op_fn *fn;
} ops[N_OPS] = {
    [OP_RENDER] = {"(a) render", op_render},
    [OP_RENDER_SIGN] = {"(b) render + sign", op_render_sign},
    [OP_SIGN] = {"(c) sign", op_sign},
    [OP_HMAC] = {"(d) OpenSSL HMAC() one-shot", op_hmac_oneshot},
    [OP_HMAC_REUSED] = {"(d') OpenSSL EVP_MAC, reused ctx", op_hmac_reused},
};

static int usage(void)
{
    fputs("usage: bench_sign [--seconds S] [--runs N]\n", stderr);
    return 2;
}

static EVP_MAC_CTX *new_mac_ctx(void)
{
    static char digest[] = "SHA256";
    OSSL_PARAM params[2];
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;

    EVP_MAC_free(mac); /* the context holds its own reference */
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0);
    params[1] = OSSL_PARAM_construct_end();
    if (ctx && !EVP_MAC_init(ctx, (const unsigned char *)SECRET, sizeof(SECRET) - 1, params)) {
        EVP_MAC_CTX_free(ctx);
        ctx = NULL;
    }
    return ctx;
}

/* vh_sign and the baseline must compute the same MAC, or the comparison means nothing. */
static bool baseline_matches(struct ctx *c)
{
    struct vh_error err = VH_ERROR_INIT;
    char sig[VH_SIG_LEN + 1], hex[65];
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0, i;

    if (vh_sign(SECRET, sizeof(SECRET) - 1, c->ts, VH_TIME_LEN, c->body, c->body_len, sig, &err) <
            0 ||
        !HMAC(EVP_sha256(), SECRET, (int)(sizeof(SECRET) - 1), c->msg, c->msg_len, md, &md_len))
        return false;
    for (i = 0; i < md_len; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    return md_len == 32 && strcmp(sig + 7, hex) == 0;
}

struct size_result {
    const char *label;
    size_t turns, json_len, body_len;
    struct stats st[N_OPS];
};

static int bench_size(const char *label, size_t target, double seconds, int runs,
                      struct size_result *res)
{
    struct vh_buf out = VH_BUF_INIT(VH_BODY_MAX);
    struct vh_buf msg = VH_BUF_INIT(VH_BODY_MAX + VH_TIME_LEN + 1);
    struct vh_error err = VH_ERROR_INIT;
    struct vh_session *s;
    struct ctx c;
    double samples[MAX_SAMPLES];
    size_t k;
    int rc = -1;

    memset(&c, 0, sizeof(c));
    s = session_of_size(target, &res->turns, &res->json_len);
    if (!s)
        return -1;
    if (vh_session_render(s, EVENT_TS_MS, &out, &err) < 0 ||
        vh_time_format(EVENT_TS_MS, c.ts) < 0 || vh_buf_add(&msg, c.ts, VH_TIME_LEN) < 0 ||
        vh_buf_addc(&msg, '.') < 0 || vh_buf_add(&msg, out.data, out.len) < 0)
        goto out;
    res->label = label;
    res->body_len = out.len;
    c.s = s;
    c.body = out.data;
    c.body_len = out.len;
    c.msg = (const unsigned char *)msg.data;
    c.msg_len = msg.len;
    c.attempt_ms = EVENT_TS_MS;
    c.mac = new_mac_ctx();
    if (!c.mac || !baseline_matches(&c)) {
        fprintf(stderr, "bench_sign: the OpenSSL baseline does not reproduce vh_sign\n");
        goto out;
    }
    {
        /* A separate render buffer, so (c) and (d) keep reading the body rendered above. */
        struct vh_buf work = VH_BUF_INIT(VH_BODY_MAX);

        c.out = &work;
        for (k = 0; k < N_OPS; k++) {
            fprintf(stderr, "  %s, %s ...\n", label, ops[k].name);
            if (measure(ops[k].fn, &c, seconds, runs, samples) < 0) {
                fprintf(stderr, "bench_sign: %s failed\n", ops[k].name);
                vh_buf_release(&work);
                goto out;
            }
            res->st[k] = summarize(samples, runs);
        }
        vh_buf_release(&work);
    }
    rc = 0;
out:
    EVP_MAC_CTX_free(c.mac);
    vh_session_free(s);
    vh_buf_release(&out);
    vh_buf_release(&msg);
    return rc;
}

static void print_table(const struct size_result *res, size_t n, double seconds, int runs)
{
    size_t i, k;

    printf("## render + sign (%d runs of %.2g s each; median, min-max)\n\n", runs, seconds);
    for (i = 0; i < n; i++)
        printf("- %s session: %zu transcript turns, ingest JSON %zu bytes, rendered body %zu "
               "bytes\n",
               res[i].label, res[i].turns, res[i].json_len, res[i].body_len);
    printf("\n| body | operation | ops/s (median) | ops/s (min-max) | us/op | MB/s (median) |\n");
    printf("|---|---|---:|---:|---:|---:|\n");
    for (i = 0; i < n; i++)
        for (k = 0; k < N_OPS; k++) {
            const struct stats *st = &res[i].st[k];

            printf("| %s | %s | %.0f | %.0f-%.0f | %.2f | %.1f |\n", res[i].label, ops[k].name,
                   st->median, st->min, st->max, 1e6 / st->median,
                   st->median * (double)res[i].body_len / 1e6);
        }
    /*
     * Time per operation relative to the baselines. OpenSSL 3's HMAC() fetches the digest
     * and MAC on every call, so for small bodies the reused context (d') is the real floor.
     */
    printf("\nTime per operation relative to the limit (medians):\n\n");
    printf("| body | (b)/(d) | (b)/(d') | (c)/(d') | (a)/(d') | (d)/(d') |\n");
    printf("|---|---:|---:|---:|---:|---:|\n");
    for (i = 0; i < n; i++) {
        const struct stats *st = res[i].st;
        double d = st[OP_HMAC].median, d2 = st[OP_HMAC_REUSED].median;

        printf("| %s | %.2fx | %.2fx | %.2fx | %.2fx | %.2fx |\n", res[i].label,
               d / st[OP_RENDER_SIGN].median, d2 / st[OP_RENDER_SIGN].median,
               d2 / st[OP_SIGN].median, d2 / st[OP_RENDER].median, d2 / d);
    }
}

int main(int argc, char **argv)
{
    struct size_result res[2];
    double seconds = 1.0;
    long runs = 5;
    int i;

    for (i = 1; i < argc; i++) {
        char *end;

        errno = 0;
        if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) {
            seconds = strtod(argv[++i], &end);
            if (errno || *end || !(seconds > 0 && seconds <= 600))
                return usage();
        } else if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc) {
            runs = strtol(argv[++i], &end, 10);
            if (errno || *end || runs < 1 || runs > MAX_SAMPLES)
                return usage();
        } else {
            return usage();
        }
    }
    if (bench_size("~2 KB", 2048, seconds, (int)runs, &res[0]) < 0 ||
        bench_size("~50 KB", 50 * 1024, seconds, (int)runs, &res[1]) < 0)
        return 3;
    print_table(res, 2, seconds, (int)runs);
    return 0;
}
