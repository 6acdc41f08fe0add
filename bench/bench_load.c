/*
 * The backlog loader of `make bench` (scenario 1, "drain a backlog"): ingests N sessions
 * into a store while no daemon runs, through the same call as `vocohook emit` and
 * POST /internal/v1/sessions (vh_api_ingest_session: validation, render, one committed
 * transaction per session with one pending delivery per enabled endpoint). It only saves
 * the process start that `vocohook emit` pays per session.
 *
 * usage: bench_load --db URL --partner ID --template FILE --count N [--prefix P]
 *
 * FILE is a bare session object whose text holds `__SID__` once, inside the session_id
 * string; session i gets the id `<P><i>` (P defaults to "bl-"). Prints one line:
 * `loaded N sessions, D deliveries, S s`. Exit 0, 1 on a rejected session, 2 on a usage
 * error, 3 on a store failure.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vocohook/vocohook.h>

#include "bench_common.h"
#include "core/banned.h"

#define PLACEHOLDER "__SID__"

static int usage(void)
{
    fputs("usage: bench_load --db URL --partner ID --template FILE --count N [--prefix P]\n",
          stderr);
    return 2;
}

/* Ingests `count` sessions made from `tpl`; returns an exit code. */
static int load(struct vh_api *api, const char *partner, const char *tpl, const char *prefix,
                long count)
{
    struct vh_buf json = VH_BUF_INIT(VH_BODY_MAX);
    struct vh_error err = VH_ERROR_INIT;
    struct vh_event_put_result res;
    const char *hole = strstr(tpl, PLACEHOLDER);
    const char *tail;
    size_t deliveries = 0;
    int64_t t0 = vh_time_mono_ms();
    char id[64];
    long i;
    int code = 0;

    if (!hole) {
        fprintf(stderr, "bench_load: the template has no %s\n", PLACEHOLDER);
        return 2;
    }
    tail = hole + strlen(PLACEHOLDER);
    for (i = 0; i < count; i++) {
        snprintf(id, sizeof(id), "%s%ld", prefix, i);
        vh_buf_reset(&json);
        if (vh_buf_add(&json, tpl, (size_t)(hole - tpl)) < 0 ||
            vh_buf_add(&json, id, strlen(id)) < 0 || vh_buf_add(&json, tail, strlen(tail)) < 0) {
            fputs("bench_load: out of memory\n", stderr);
            code = 3;
            break;
        }
        memset(&res, 0, sizeof(res));
        if (vh_api_ingest_session(api, partner, json.data, json.len, "", vh_time_now_ms(), &res,
                                  &err) < 0) {
            fprintf(stderr, "bench_load: session %s: %s\n", id, err.msg);
            code = err.code == VH_EINVAL || err.code == VH_ETOOBIG ? 1 : 3;
            break;
        }
        deliveries += res.deliveries;
    }
    if (code == 0)
        printf("loaded %ld sessions, %zu deliveries, %.2f s\n", count, deliveries,
               (double)(vh_time_mono_ms() - t0) / 1000.0);
    vh_buf_release(&json);
    return code;
}

int main(int argc, char **argv)
{
    struct vh_buf tpl = VH_BUF_INIT(VH_BODY_MAX);
    struct vh_error err = VH_ERROR_INIT;
    struct vh_api_config cfg;
    struct vh_store *st = NULL;
    struct vh_api *api = NULL;
    const char *db = NULL, *partner = NULL, *file = NULL, *prefix = "bl-";
    long count = -1;
    int i, code;

    for (i = 1; i + 1 < argc; i += 2) {
        char *end;

        if (strcmp(argv[i], "--db") == 0) {
            db = argv[i + 1];
        } else if (strcmp(argv[i], "--partner") == 0) {
            partner = argv[i + 1];
        } else if (strcmp(argv[i], "--template") == 0) {
            file = argv[i + 1];
        } else if (strcmp(argv[i], "--prefix") == 0) {
            prefix = argv[i + 1];
        } else if (strcmp(argv[i], "--count") == 0) {
            errno = 0;
            count = strtol(argv[i + 1], &end, 10);
            if (errno || *end || count < 0 || count > 100000000)
                return usage();
        } else {
            return usage();
        }
    }
    if (i != argc || !db || !partner || !file || count < 0 || strlen(prefix) > 40)
        return usage();
    if (bench_read_file(file, &tpl) < 0) {
        fprintf(stderr, "bench_load: cannot read %s\n", file);
        vh_buf_release(&tpl);
        return 3;
    }
    memset(&cfg, 0, sizeof(cfg));
    cfg.allow_http = true;
    if (vh_store_open(db, &st, &err) < 0 || vh_api_new(st, &cfg, &api, &err) < 0) {
        fprintf(stderr, "bench_load: %s\n", err.msg);
        code = 3;
        goto out;
    }
    code = load(api, partner, vh_buf_cstr(&tpl), prefix, count);
out:
    vh_api_free(api);
    vh_store_close(st);
    vh_buf_release(&tpl);
    return code;
}
