/*
 * The store half of a drain, alone: claims every due delivery of a loaded store in batches
 * and records each as a success, the way the sender's dispatcher does, with no network in
 * between. It measures the CPU time of this thread in each half, so a change to the store's
 * claim or record path can be weighed without the noise of the HTTP half.
 *
 * usage: bench_store --db URL [--batch N] [--node ID]
 *
 * Prints one JSON object: {"deliveries": D, "batches": B, "claim_cpu_us": C,
 * "record_cpu_us": R, "wall_s": W} where C and R are the thread's CPU microseconds per
 * delivery in vh_store_delivery_claim and vh_store_delivery_record. Exit 0, 2 on a usage
 * error, 3 on a store failure.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <vocohook/vocohook.h>

#include "core/banned.h"

static int usage(void)
{
    fputs("usage: bench_store --db URL [--batch N] [--node ID]\n", stderr);
    return 2;
}

static int64_t thread_cpu_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Claims and records until nothing is due; adds the CPU time of each half. */
static int drain(struct vh_store *st, const char *node, size_t batch, size_t *total,
                 size_t *batches, int64_t *claim_ns, int64_t *record_ns)
{
    struct vh_delivery_result *res = calloc(batch, sizeof(*res));
    struct vh_error err = VH_ERROR_INIT;
    int code = 0;

    if (!res) {
        fputs("bench_store: out of memory\n", stderr);
        return 3;
    }
    for (;;) {
        struct vh_delivery_job_rec *recs = NULL;
        int64_t t0 = thread_cpu_ns(), t1, now = vh_time_now_ms();
        size_t n = 0, i;

        if (vh_store_delivery_claim(st, node, now, 600000, batch, &recs, &n, &err) < 0) {
            fprintf(stderr, "bench_store: %s\n", err.msg);
            code = 3;
            break;
        }
        t1 = thread_cpu_ns();
        *claim_ns += t1 - t0;
        if (n == 0)
            break;
        for (i = 0; i < n; i++) {
            struct vh_delivery_result *r = &res[i];

            memset(r, 0, sizeof(*r));
            r->delivery_id = recs[i].delivery_id;
            r->endpoint_id = recs[i].endpoint_id;
            r->row = recs[i].row;
            r->node_id = node;
            r->attempt = recs[i].attempts + 1;
            r->started_ms = now;
            r->duration_ms = 1;
            r->http_status = 204;
            r->new_state = "succeeded";
        }
        t0 = thread_cpu_ns();
        if (vh_store_delivery_record(st, res, n, &err) < 0) {
            fprintf(stderr, "bench_store: %s\n", err.msg);
            code = 3;
        }
        *record_ns += thread_cpu_ns() - t0;
        vh_delivery_job_recs_free(recs, n);
        if (code)
            break;
        *total += n;
        (*batches)++;
    }
    free(res);
    return code;
}

int main(int argc, char **argv)
{
    struct vh_error err = VH_ERROR_INIT;
    struct vh_store *st = NULL;
    const char *db = NULL, *node = "bench";
    size_t total = 0, batches = 0;
    int64_t claim_ns = 0, record_ns = 0, t0;
    long batch = 256;
    int i, code;

    for (i = 1; i + 1 < argc; i += 2) {
        char *end;

        if (strcmp(argv[i], "--db") == 0) {
            db = argv[i + 1];
        } else if (strcmp(argv[i], "--node") == 0) {
            node = argv[i + 1];
        } else if (strcmp(argv[i], "--batch") == 0) {
            errno = 0;
            batch = strtol(argv[i + 1], &end, 10);
            if (errno || *end || batch < 1 || batch > VH_CLAIM_MAX)
                return usage();
        } else {
            return usage();
        }
    }
    if (i != argc || !db)
        return usage();
    if (vh_store_open(db, &st, &err) < 0) {
        fprintf(stderr, "bench_store: %s\n", err.msg);
        return 3;
    }
    t0 = vh_time_mono_ms();
    code = drain(st, node, (size_t)batch, &total, &batches, &claim_ns, &record_ns);
    if (code == 0)
        printf("{\"deliveries\": %zu, \"batches\": %zu, \"claim_cpu_us\": %.2f, "
               "\"record_cpu_us\": %.2f, \"wall_s\": %.3f}\n",
               total, batches, total ? (double)claim_ns / 1000.0 / (double)total : 0.0,
               total ? (double)record_ns / 1000.0 / (double)total : 0.0,
               (double)(vh_time_mono_ms() - t0) / 1000.0);
    vh_store_close(st);
    return code;
}
