/*
 * receiver_example: how to take a vocohook / Vocobase `session.completed` webhook in your own
 * C or C++ server with libvocohook. Links only libvocohook and libc.
 *
 * handle_webhook() below is what your HTTP handler calls with the raw request body (the
 * bytes exactly as received, before any JSON parsing) and the two header values. It
 * verifies the signature and the timestamp against every accepted secret, then gives a
 * typed view of the payload. Your handler then stores the body (deduplicating on
 * session_id), answers 200 at once, and does the slow work later (`vocohook receive` does
 * all of that for you; see docs/receiving.md).
 *
 * This program reads one request from the command line, so you can try it on a capture:
 *
 *   VOCOHOOK_SECRETS=whsec_a,whsec_b receiver_example [--now T] [--tolerance SEC] \
 *       BODY_FILE X-Webhook-Timestamp X-Webhook-Signature
 *
 * It prints the HTTP status your server would answer and why; exit 0 for 200, 1 for a
 * refused request, 2 for a usage error.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vocohook/clock.h>
#include <vocohook/error.h>
#include <vocohook/event.h>
#include <vocohook/sign.h>

#define MAX_SECRETS 8

struct verdict {
    int status;          /* the HTTP status to answer: 200, 400 or 401 */
    char reason[300];    /* why, for your logs (never echo secrets) */
    struct vh_event *ev; /* 200: the payload, typed; free with vh_event_free */
};

/*
 * The whole receiving contract in one function: verify first, over the raw bytes; parse
 * only what verified; accept fields the contract does not know yet (newer senders add
 * them), while still checking every field it does know.
 */
static void handle_webhook(const char *body, size_t body_len, const char *ts_header,
                           const char *sig_header, const char *const *secrets, size_t n_secrets,
                           int64_t tolerance_ms, int64_t now_ms, struct verdict *v)
{
    struct vh_error err = VH_ERROR_INIT;
    struct vh_verify_opts opts;
    enum vh_verify_status st = VH_VERIFY_OK;
    int rc;

    memset(v, 0, sizeof(*v));
    opts.secrets = secrets;
    opts.n_secrets = n_secrets;
    opts.tolerance_ms = tolerance_ms; /* the contract's default window is 5 minutes */
    opts.now_ms = now_ms;
    rc = vh_verify(&opts, ts_header, ts_header ? strlen(ts_header) : 0, sig_header,
                   sig_header ? strlen(sig_header) : 0, body, body_len, &st, &err);
    if (rc == VH_ESIG) {
        v->status = 401;
        snprintf(v->reason, sizeof(v->reason), "%s: %s", vh_verify_status_name(st), err.msg);
        return;
    }
    if (rc < 0) { /* our own failure (bad options, out of memory): the sender retries */
        v->status = 500;
        snprintf(v->reason, sizeof(v->reason), "%s", err.msg);
        return;
    }
    rc = vh_event_parse(body, body_len, VH_PARSE_ALLOW_UNKNOWN, &v->ev, &err);
    if (rc < 0) {
        v->status = rc == VH_ENOMEM ? 500 : 400;
        snprintf(v->reason, sizeof(v->reason), "%s", err.msg);
        return;
    }
    v->status = 200;
}

static void print_session(const struct vh_event *ev)
{
    const struct vh_session *s = ev->session;
    char when[VH_TIME_LEN + 1], credits[VH_NUMBER_MAX];

    if (vh_time_format(ev->ts_ms, when) < 0)
        when[0] = '\0';
    vh_number_format(s->credits_used, credits);
    printf("session_id: %s\n", s->session_id);
    printf("event_time: %s\n", when);
    printf("agent:      %s (%s)\n", s->agent_name, s->agent_id);
    printf("duration:   %lld s, %s credits, %zu turns\n", (long long)s->duration_seconds, credits,
           s->n_turns);
    printf("latency:    min %lld ms, avg %lld ms, max %lld ms\n", (long long)s->latency.min_ms,
           (long long)s->latency.avg_ms, (long long)s->latency.max_ms);
    if (s->has_call)
        printf("call:       %s -> %s, %s\n", s->call.from_number, s->call.to_number,
               vh_call_status_name(s->call.status));
    printf("recording:  %s\n", s->recording_url ? s->recording_url : "(none)");
}

/* Reads a whole file (at most VH_BODY_MAX bytes) into a new buffer. */
static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    size_t n;

    if (!f)
        return NULL;
    buf = malloc(VH_BODY_MAX + 1);
    n = buf ? fread(buf, 1, VH_BODY_MAX + 1, f) : 0;
    fclose(f);
    if (!buf || n > VH_BODY_MAX) {
        free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}

/* Splits VOCOHOOK_SECRETS ("a,b") in place. Returns the count. */
static size_t split_secrets(char *list, const char **out)
{
    size_t n = 0;
    char *p = list;

    while (p && *p && n < MAX_SECRETS) {
        char *comma = strchr(p, ',');

        if (comma)
            *comma = '\0';
        if (*p)
            out[n++] = p;
        p = comma ? comma + 1 : NULL;
    }
    return n;
}

static int usage(void)
{
    fprintf(stderr, "usage: VOCOHOOK_SECRETS=s1[,s2] receiver_example [--now T] "
                    "[--tolerance SEC] BODY_FILE TIMESTAMP SIGNATURE\n");
    return 2;
}

int main(int argc, char **argv)
{
    const char *secrets[MAX_SECRETS];
    const char *env = getenv("VOCOHOOK_SECRETS");
    int64_t now_ms = vh_time_now_ms(), tolerance_ms = 300000;
    struct verdict v;
    char *list, *body;
    size_t n, body_len = 0;
    int i = 1;

    while (i + 1 < argc && strncmp(argv[i], "--", 2) == 0) {
        if (strcmp(argv[i], "--now") == 0) {
            if (vh_time_parse(argv[i + 1], strlen(argv[i + 1]), &now_ms, NULL) < 0)
                return usage();
        } else if (strcmp(argv[i], "--tolerance") == 0) {
            tolerance_ms = strtoll(argv[i + 1], NULL, 10) * 1000;
        } else {
            return usage();
        }
        i += 2;
    }
    if (argc - i != 3 || !env || !*env)
        return usage();
    list = strdup(env);
    n = list ? split_secrets(list, secrets) : 0;
    body = read_file(argv[i], &body_len);
    if (!body || n == 0) {
        fprintf(stderr, "receiver_example: cannot read %s\n", argv[i]);
        free(list);
        free(body);
        return 2;
    }
    handle_webhook(body, body_len, argv[i + 1], argv[i + 2], secrets, n, tolerance_ms, now_ms, &v);
    printf("%d %s\n", v.status, v.status == 200 ? "valid" : v.reason);
    if (v.ev)
        print_session(v.ev);
    vh_event_free(v.ev);
    free(body);
    free(list);
    return v.status == 200 ? 0 : 1;
}
