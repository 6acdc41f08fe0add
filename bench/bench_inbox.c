/*
 * The receiver's storage half, alone: stores N webhooks in a fresh inbox the way the HTTP
 * threads do (vh__inbox_put_post), keeping `window` puts unanswered at a time as scenario 6's
 * connections do, with no HTTP in between. Each put has the body of --body and a new random
 * session id. It measures the process's CPU time, so a change to the inbox's write path can
 * be weighed without the noise of the HTTP half.
 *
 * usage: bench_inbox --db PATH --body FILE [--n N] [--window W] [--jobs J]
 *
 * --jobs J (0 to 3) gives every put J jobs (download, exec, forward), due in a day, as a
 * receiver with --recordings, --exec or --forward makes them; none runs here.
 *
 * Prints one JSON object: {"puts": N, "cpu_us": C, "wall_s": W, "puts_per_s": R} where C is
 * the process's CPU microseconds per put. Exit 0, 2 on a usage error, 3 on an inbox failure.
 */
#include <errno.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <vocohook/vocohook.h>

#include "receive/receive_int.h"
#include "core/banned.h"

#define SIDS_LEN (VH_UUID_LEN + 1)

static int usage(void)
{
    fputs("usage: bench_inbox --db PATH --body FILE [--n N] [--window W] [--jobs J]\n", stderr);
    return 2;
}

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_s(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

struct run {
    sem_t slots; /* one per put that may be unanswered */
    sem_t all;
    size_t n;
    _Atomic size_t answered;
    _Atomic int failed;
};

static void on_done(void *ud, int rc, bool created, const struct vh_error *err)
{
    struct run *r = ud;

    if (rc < 0 || !created) {
        if (r->failed++ == 0)
            fprintf(stderr, "bench_inbox: put: %s\n", rc < 0 ? err->msg : "not created");
    }
    sem_post(&r->slots);
    if (++r->answered == r->n)
        sem_post(&r->all);
}

int main(int argc, char **argv)
{
    const char *db = NULL, *body_path = NULL;
    size_t n = 50000, window = 64, jobs = 0, i, j, len;
    char *body, (*sids)[SIDS_LEN];
    struct vh_error err = VH_ERROR_INIT;
    struct vh_inbox *ib;
    struct vh__inbox_put p;
    struct run r;
    double t0, c0, wall, cpu;
    FILE *fp;
    int a;

    for (a = 1; a < argc; a++) {
        if (a + 1 < argc && strcmp(argv[a], "--db") == 0)
            db = argv[++a];
        else if (a + 1 < argc && strcmp(argv[a], "--body") == 0)
            body_path = argv[++a];
        else if (a + 1 < argc && strcmp(argv[a], "--n") == 0)
            n = strtoul(argv[++a], NULL, 10);
        else if (a + 1 < argc && strcmp(argv[a], "--window") == 0)
            window = strtoul(argv[++a], NULL, 10);
        else if (a + 1 < argc && strcmp(argv[a], "--jobs") == 0)
            jobs = strtoul(argv[++a], NULL, 10);
        else
            return usage();
    }
    if (!db || !body_path || n == 0 || window == 0 || window > 65536 || jobs > VH_INBOX_JOBS_MAX)
        return usage();
    fp = fopen(body_path, "rb");
    if (!fp) {
        fprintf(stderr, "bench_inbox: %s: %s\n", body_path, strerror(errno));
        return 2;
    }
    body = malloc(VH_BODY_MAX);
    len = body ? fread(body, 1, VH_BODY_MAX, fp) : 0;
    fclose(fp);
    sids = calloc(n, sizeof(*sids));
    if (!body || !sids)
        return 3;
    for (i = 0; i < n; i++) {
        if (vh_uuid_new(sids[i], &err) < 0) { /* random v4 ids, as a sender makes them */
            fprintf(stderr, "bench_inbox: %s\n", err.msg);
            return 3;
        }
    }
    if (vh_inbox_open(db, VH_INBOX_CREATE, &ib, &err) < 0) {
        fprintf(stderr, "bench_inbox: %s\n", err.msg);
        return 3;
    }
    memset(&r, 0, sizeof(r));
    sem_init(&r.slots, 0, (unsigned)window);
    sem_init(&r.all, 0, 0);
    r.n = n;
    t0 = now_s();
    c0 = cpu_s();
    for (i = 0; i < n; i++) {
        while (sem_wait(&r.slots) < 0 && errno == EINTR)
            ;
        memset(&p, 0, sizeof(p));
        p.session_id = sids[i];
        p.body = body; /* the same bytes each time: only the key differs */
        p.body_len = len;
        p.signed_at = "2026-03-15T14:32:08.000Z";
        p.signature = "sha256=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        p.event_ms = 1773585128000;
        p.received_ms = 1773585128000 + (int64_t)i;
        for (j = 0; j < jobs; j++) {
            p.jobs[j].kind = (enum vh_job_kind)(VH_JOB_DOWNLOAD + (int)j);
            p.jobs[j].next_attempt_ms = p.received_ms + 86400000;
            p.jobs[j].deadline_ms = p.received_ms + 2 * 86400000;
        }
        p.n_jobs = jobs;
        if (vh__inbox_put_post(ib, &p, on_done, &r, &err) < 0) {
            fprintf(stderr, "bench_inbox: %s\n", err.msg);
            return 3;
        }
    }
    while (sem_wait(&r.all) < 0 && errno == EINTR)
        ;
    wall = now_s() - t0;
    cpu = cpu_s() - c0;
    vh_inbox_close(ib);
    if (r.failed)
        return 3;
    printf("{\"puts\": %zu, \"cpu_us\": %.1f, \"wall_s\": %.3f, \"puts_per_s\": %.0f}\n", n,
           cpu * 1e6 / (double)n, wall, (double)n / wall);
    free(sids);
    free(body);
    return 0;
}
