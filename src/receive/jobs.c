/*
 * The receiver's pure rules: job and recording state names, the job state machine, the
 * backoff, what an attempt's outcome leads to, and when a recording URL expires. No I/O, no
 * clock: time is always a parameter.
 */
#include "receive/receive_int.h"

#include <stdio.h>
#include <string.h>

#include <vocohook/clock.h>

#include "core/utf8_int.h"
#include "core/banned.h"

#define AMZ_DATE_LEN    16 /* YYYYMMDDTHHMMSSZ */
#define AMZ_EXPIRES_MAX 604800
/*
 * How far ahead of its arrival a URL may say it was signed: S3 refuses a request whose
 * X-Amz-Date is more than 15 minutes ahead of its own clock, so a later date is not a real
 * presign's, and would keep a download that can only fail retrying for as long as it says.
 */
#define AMZ_DATE_AHEAD_MS (15 * 60 * 1000)
#define EXT_MAX           8

static const char *const job_kinds[] = {
    [VH_JOB_DOWNLOAD] = "download",
    [VH_JOB_EXEC] = "exec",
    [VH_JOB_FORWARD] = "forward",
};

static const char *const job_states[] = {
    [VH_JOB_PENDING] = "pending", [VH_JOB_RUNNING] = "running", [VH_JOB_DONE] = "done",
    [VH_JOB_FAILED] = "failed",   [VH_JOB_EXPIRED] = "expired",
};

static const char *const recording_states[] = {
    [VH_RECORDING_NONE] = "none",
    [VH_RECORDING_SKIPPED] = "skipped",
    [VH_RECORDING_PENDING] = "pending",
    [VH_RECORDING_DOWNLOADING] = "downloading",
    [VH_RECORDING_DOWNLOADED] = "downloaded",
    [VH_RECORDING_FAILED] = "failed",
    [VH_RECORDING_EXPIRED] = "expired",
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

const char *vh_job_kind_name(enum vh_job_kind k)
{
    if ((unsigned)k < COUNT(job_kinds) && job_kinds[k])
        return job_kinds[k];
    return "unknown";
}

const char *vh_job_state_name(enum vh_job_state s)
{
    if ((unsigned)s < COUNT(job_states))
        return job_states[s];
    return "unknown";
}

const char *vh_recording_state_name(enum vh_recording_state s)
{
    if ((unsigned)s < COUNT(recording_states))
        return recording_states[s];
    return "unknown";
}

/* The index of `name` (`len` bytes) in `names`, or -1. */
static int find_name(const char *const *names, size_t n, const char *name, size_t len)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (names[i] && strlen(names[i]) == len && memcmp(names[i], name, len) == 0)
            return (int)i;
    return -1;
}

int vh_job_state_parse(const char *name, size_t len, enum vh_job_state *out, struct vh_error *err)
{
    int i = name ? find_name(job_states, COUNT(job_states), name, len) : -1;

    if (i < 0)
        return vh_error_set(err, VH_EINVAL,
                            "job state: expected pending, running, done, failed or expired");
    *out = (enum vh_job_state)i;
    return 0;
}

int vh_recording_state_parse(const char *name, size_t len, enum vh_recording_state *out,
                             struct vh_error *err)
{
    int i = name ? find_name(recording_states, COUNT(recording_states), name, len) : -1;

    if (i < 0)
        return vh_error_set(err, VH_EINVAL,
                            "recording state: expected none, skipped, pending, downloading, "
                            "downloaded, failed or expired");
    *out = (enum vh_recording_state)i;
    return 0;
}

int vh_job_transition(enum vh_job_state from, enum vh_job_state to, struct vh_error *err)
{
    bool ok;

    switch (from) {
    case VH_JOB_PENDING:
        ok = to == VH_JOB_RUNNING;
        break;
    case VH_JOB_RUNNING:
        ok = to == VH_JOB_PENDING || to == VH_JOB_DONE || to == VH_JOB_FAILED ||
             to == VH_JOB_EXPIRED;
        break;
    default:
        ok = false; /* done, failed and expired are final */
        break;
    }
    if (!ok)
        return vh_error_set(err, VH_ESTATE, "job: illegal transition '%s' -> '%s'",
                            vh_job_state_name(from), vh_job_state_name(to));
    return 0;
}

int64_t vh__backoff_ms(unsigned attempts)
{
    int64_t d = VH__BACKOFF_FIRST_MS;
    unsigned i;

    for (i = 1; i < attempts && d < VH__BACKOFF_MAX_MS; i++)
        d *= 2;
    return d < VH__BACKOFF_MAX_MS ? d : VH__BACKOFF_MAX_MS;
}

/* A failed download: retry while the URL lives, never past its expiry. */
static void decide_download_retry(int64_t deadline_ms, int64_t now_ms, int64_t next,
                                  struct vh__job_update *u)
{
    if (now_ms >= deadline_ms) {
        u->state = VH_JOB_EXPIRED;
        return;
    }
    if (next > deadline_ms - VH__EXPIRY_MARGIN_MS) {
        /* One last attempt just before the URL stops working, if there is room for it. */
        next = deadline_ms - VH__EXPIRY_MARGIN_MS;
        if (next <= now_ms) {
            u->state = VH_JOB_EXPIRED;
            return;
        }
    }
    u->state = VH_JOB_PENDING;
    u->next_attempt_ms = next;
}

void vh__job_decide(enum vh_job_kind kind, unsigned attempts_before, int64_t deadline_ms,
                    unsigned max_attempts, const struct vh__report *rep, int64_t now_ms,
                    struct vh__job_update *u)
{
    memset(u, 0, sizeof(*u));
    u->attempts = attempts_before + 1;
    u->status = rep->status;
    snprintf(u->error, sizeof(u->error), "%s", rep->error);
    /* A command's output or a server's words: stored, exported as JSON, shown in a terminal. */
    vh__utf8_repair(u->error, strlen(u->error), true);
    switch (rep->outcome) {
    case VH__OUTCOME_OK:
        u->state = VH_JOB_DONE;
        u->error[0] = '\0';
        return;
    case VH__OUTCOME_INTERRUPTED:
        u->state = VH_JOB_PENDING;
        u->attempts = attempts_before;
        u->next_attempt_ms = now_ms;
        return;
    case VH__OUTCOME_FINAL:
        u->state = VH_JOB_FAILED;
        return;
    case VH__OUTCOME_EXPIRED:
        u->state = kind == VH_JOB_DOWNLOAD ? VH_JOB_EXPIRED : VH_JOB_FAILED;
        return;
    case VH__OUTCOME_RETRY:
        break;
    }
    if (kind == VH_JOB_DOWNLOAD) {
        decide_download_retry(deadline_ms, now_ms, now_ms + vh__backoff_ms(u->attempts), u);
        return;
    }
    if (u->attempts >= max_attempts || now_ms >= deadline_ms) {
        u->state = VH_JOB_FAILED;
        return;
    }
    u->state = VH_JOB_PENDING;
    u->next_attempt_ms = now_ms + vh__backoff_ms(u->attempts);
}

/*
 * The value of query parameter `name` in `url`: a pointer into `url` and its length, or
 * NULL. Only the query is searched (up to a '#').
 */
static const char *query_param(const char *url, const char *name, size_t *len)
{
    const char *q = strchr(url, '?');
    size_t nlen = strlen(name);

    while (q && *q && *q != '#') {
        const char *p = q + 1, *end = p;

        while (*end && *end != '&' && *end != '#')
            end++;
        if ((size_t)(end - p) > nlen && memcmp(p, name, nlen) == 0 && p[nlen] == '=') {
            *len = (size_t)(end - p) - nlen - 1;
            return p + nlen + 1;
        }
        q = *end == '&' ? end : NULL;
    }
    return NULL;
}

/* X-Amz-Date (YYYYMMDDTHHMMSSZ) in ms, through the contract's own timestamp parser. */
static bool amz_date_ms(const char *s, size_t len, int64_t *out)
{
    char iso[VH_TIME_LEN + 1];

    if (len != AMZ_DATE_LEN || s[8] != 'T' || s[15] != 'Z')
        return false;
    snprintf(iso, sizeof(iso), "%.4s-%.2s-%.2sT%.2s:%.2s:%.2s.000Z", s, s + 4, s + 6, s + 9, s + 11,
             s + 13);
    return vh_time_parse(iso, VH_TIME_LEN, out, NULL) == 0;
}

int64_t vh_recording_expiry_ms(const char *url, int64_t received_ms)
{
    const char *date, *expires;
    size_t date_len = 0, exp_len = 0, i;
    int64_t signed_ms, secs = 0;

    if (url) {
        date = query_param(url, "X-Amz-Date", &date_len);
        expires = query_param(url, "X-Amz-Expires", &exp_len);
        if (date && expires && exp_len >= 1 && exp_len <= 6 &&
            amz_date_ms(date, date_len, &signed_ms) &&
            signed_ms <= received_ms + AMZ_DATE_AHEAD_MS) {
            for (i = 0; i < exp_len && expires[i] >= '0' && expires[i] <= '9'; i++)
                secs = secs * 10 + (expires[i] - '0');
            if (i == exp_len && secs >= 1 && secs <= AMZ_EXPIRES_MAX)
                return signed_ms + secs * 1000;
        }
    }
    return received_ms + VH_RECORDING_TTL_DEFAULT_MS;
}

int vh__recording_name(const char *session_id, const char *url, char *out, size_t out_size)
{
    char ext[EXT_MAX + 2] = "";
    const char *path, *end, *seg, *dot = NULL, *p;
    size_t n;
    int w;

    /* The path: after "scheme://host", up to the query or fragment. */
    path = url ? strstr(url, "://") : NULL;
    path = path ? strchr(path + 3, '/') : NULL;
    if (path) {
        end = path + strcspn(path, "?#");
        seg = path;
        for (p = path; p < end; p++) {
            if (*p == '/')
                seg = p + 1;
        }
        for (p = seg; p < end; p++)
            if (*p == '.')
                dot = p;
        n = dot ? (size_t)(end - dot - 1) : 0;
        if (dot && n >= 1 && n <= EXT_MAX) {
            ext[0] = '.';
            for (p = dot + 1; p < end; p++) {
                char c = *p;

                if (c >= 'A' && c <= 'Z')
                    c = (char)(c - 'A' + 'a');
                if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))) {
                    ext[0] = '\0';
                    break;
                }
                ext[p - dot] = c;
            }
            if (ext[0])
                ext[n + 1] = '\0';
        }
    }
    w = snprintf(out, out_size, "%s%s", session_id, ext);
    if (w < 0 || (size_t)w >= out_size)
        return vh_error_set(NULL, VH_ETOOBIG, "recording name: too long");
    return 0;
}
