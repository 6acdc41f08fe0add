/*
 * The engine alone: the delivery engine (engine.h) with nothing else to do. It submits N
 * signed POSTs of the same body to one endpoint at once and waits for every report: no
 * store, no dispatcher, no retries. Scenario 1 runs it against the same nginx as wrk,
 * bench_curl and vocohook: its ratio to wrk is what the engine half of a drain can reach on
 * one core, as bench_store gives the store half, and its CPU per request is the engine
 * half's cost.
 *
 * usage: bench_engine --url URL --body FILE --count N [--conns K] [--ca-file PEM]
 *
 * --conns is the engine's max_per_endpoint (default 8, the engine's default). Prints one
 * JSON object: {"requests": N, "seconds": S, "rate": R, "cpu_us": C}, R from the first
 * submit to the last report, C the process's CPU (user + system) per request. Exit 0; 2 on
 * a usage error; 3 when the engine fails or an attempt is not a 2xx (the figure would not be
 * the sink's).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <vocohook/buf.h>
#include <vocohook/engine.h>

#include "bench_common.h"
#include "core/banned.h"

#define SECRET "whsec_bench_engine_0123456789abcdef0123456789abcdef"

struct state {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    long count, done, failed;
    char first_failure[VH_ATTEMPT_ERROR_MAX + 64];
};

static int usage(void)
{
    fputs("usage: bench_engine --url URL --body FILE --count N [--conns K] [--ca-file PEM]\n",
          stderr);
    return 2;
}

static double seconds_of(const struct timeval *tv)
{
    return (double)tv->tv_sec + (double)tv->tv_usec / 1e6;
}

static void on_done(void *ud, const struct vh_attempt *a)
{
    struct state *st = ud;

    pthread_mutex_lock(&st->mu);
    if (a->result != VH_ATTEMPT_OK && st->failed++ == 0)
        snprintf(st->first_failure, sizeof(st->first_failure), "%s, HTTP %d: %s",
                 vh_attempt_result_name(a->result), a->http_status, a->error);
    if (++st->done == st->count)
        pthread_cond_signal(&st->cv); /* only then: a wakeup per report would be measured */
    pthread_mutex_unlock(&st->mu);
}

int main(int argc, char **argv)
{
    const char *url = NULL, *body_path = NULL, *ca_file = NULL;
    long count = 0, conns = 8, i;
    struct vh_buf body;
    struct vh_engine_config cfg;
    struct vh_engine *e = NULL;
    struct vh_error err = VH_ERROR_INIT;
    struct vh_delivery_job job;
    struct state st;
    struct timespec t0, t1;
    struct rusage ru;
    double secs, cpu;
    int code = 3;

    for (i = 1; i < argc; i++) {
        const char *a = argv[i];

        if (i + 1 >= argc)
            return usage();
        if (strcmp(a, "--url") == 0)
            url = argv[++i];
        else if (strcmp(a, "--body") == 0)
            body_path = argv[++i];
        else if (strcmp(a, "--ca-file") == 0)
            ca_file = argv[++i];
        else if (strcmp(a, "--count") == 0)
            count = strtol(argv[++i], NULL, 10);
        else if (strcmp(a, "--conns") == 0)
            conns = strtol(argv[++i], NULL, 10);
        else
            return usage();
    }
    if (!url || !body_path || count < 1 || conns < 1 || conns > 65536)
        return usage();
    vh_buf_init(&body, 64 * 1024 * 1024);
    if (bench_read_file(body_path, &body) < 0) {
        fprintf(stderr, "bench_engine: cannot read %s\n", body_path);
        return 3;
    }
    memset(&st, 0, sizeof(st));
    st.count = count;
    pthread_mutex_init(&st.mu, NULL);
    pthread_cond_init(&st.cv, NULL);
    vh_engine_config_init(&cfg);
    cfg.allow_http = true;
    cfg.allow_private_networks = true; /* the sink is on loopback */
    cfg.ca_file = ca_file;
    cfg.max_per_endpoint = (unsigned)conns;
    cfg.max_total = (unsigned)conns;
    cfg.max_queued = (size_t)count;
    if (vh_engine_new(&cfg, &e, &err) < 0) {
        fprintf(stderr, "bench_engine: %s\n", err.msg);
        goto out;
    }
    memset(&job, 0, sizeof(job));
    job.event_id = "00000000-0000-4000-8000-000000000000";
    job.endpoint_id = "bench";
    job.url = url;
    job.secret = SECRET;
    job.secret_len = strlen(SECRET);
    job.body = body.data;
    job.body_len = body.len;
    job.attempt = 1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (i = 0; i < count; i++) {
        if (vh_engine_submit(e, &job, on_done, &st, &err) < 0) {
            fprintf(stderr, "bench_engine: submit %ld: %s\n", i, err.msg);
            goto out;
        }
    }
    pthread_mutex_lock(&st.mu);
    while (st.done < count)
        pthread_cond_wait(&st.cv, &st.mu);
    pthread_mutex_unlock(&st.mu);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (st.failed) {
        fprintf(stderr, "bench_engine: %ld of %ld attempts failed, the first: %s\n", st.failed,
                count, st.first_failure);
        goto out;
    }
    secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    getrusage(RUSAGE_SELF, &ru);
    cpu = seconds_of(&ru.ru_utime) + seconds_of(&ru.ru_stime);
    printf("{\"requests\": %ld, \"seconds\": %.3f, \"rate\": %.1f, \"cpu_us\": %.2f}\n", count,
           secs, (double)count / secs, cpu * 1e6 / (double)count);
    code = 0;
out:
    vh_engine_free(e);
    vh_buf_release(&body);
    pthread_cond_destroy(&st.cv);
    pthread_mutex_destroy(&st.mu);
    return code;
}
