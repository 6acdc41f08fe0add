/*
 * libcurl alone: full libcurl transfers with nothing else to do, the way the delivery engine
 * used them until session 9 (it now lets libcurl connect only, and speaks HTTP/1.1 itself).
 * It POSTs the same body N times over K connections (one multi handle, easy handles reused,
 * curl_multi_perform then curl_multi_poll, the engine's old transport options), with no
 * store, no signing, no job bookkeeping. Scenarios 1 and 1b run it against the same sink as
 * wrk and vocohook: the ratio to wrk is what a libcurl-driven sender could reach on one core,
 * and vocohook's ratio to it shows what the engine's own HTTP/1.1 bought.
 *
 * usage: bench_curl --url URL --body FILE --count N [--conns K] [--ca-file PEM] [--fresh]
 *
 * --fresh forbids connection reuse (a new connection, so a full TLS handshake, per request).
 * Prints one JSON object: {"requests": N, "seconds": S, "rate": R, "cpu_us": C} where R is
 * requests/s from the first request to the last answer and C the process's CPU (user +
 * system) per request. Exit 0; 2 on a usage error; 3 when libcurl fails or an answer is not
 * 2xx (the figure would not be the sink's).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <curl/curl.h>

#include <vocohook/buf.h>
#include <vocohook/common.h>

#include "bench_common.h"
#include "core/banned.h"

#define CONNS_MAX 256

static int usage(void)
{
    fputs("usage: bench_curl --url URL --body FILE --count N [--conns K] [--ca-file PEM]"
          " [--fresh]\n",
          stderr);
    return 2;
}

static size_t discard(char *p, size_t size, size_t n, void *ud)
{
    (void)p;
    (void)ud;
    return size * n;
}

static double seconds_of(const struct timeval *tv)
{
    return (double)tv->tv_sec + (double)tv->tv_usec / 1e6;
}

/* The engine's options (engine.c: set_request and set_transport) that apply here. */
static CURLcode setup(CURL *c, const char *url, const struct vh_buf *body,
                      struct curl_slist *headers, const char *ca_file, int fresh)
{
    CURLcode rc = CURLE_OK;

#define SET(opt, val)                                                                              \
    do {                                                                                           \
        if (rc == CURLE_OK)                                                                        \
            rc = curl_easy_setopt(c, opt, val);                                                    \
    } while (0)
    SET(CURLOPT_URL, url);
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_TIMEOUT_MS, 30000L);
    SET(CURLOPT_USERAGENT, "vocohook/" VH_VERSION_STRING);
    SET(CURLOPT_HTTPHEADER, headers);
    SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body->len);
    SET(CURLOPT_POSTFIELDS, body->data);
    SET(CURLOPT_WRITEFUNCTION, discard);
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_FOLLOWLOCATION, 0L);
    SET(CURLOPT_PROXY, "");
    SET(CURLOPT_TCP_KEEPALIVE, 1L);
    SET(CURLOPT_CAPATH, NULL);
    if (ca_file)
        SET(CURLOPT_CAINFO, ca_file);
    if (rc == CURLE_OK) /* as in the engine: only a saving, before 7.87 it fails */
        (void)curl_easy_setopt(c, CURLOPT_CA_CACHE_TIMEOUT, 86400L);
    if (fresh)
        SET(CURLOPT_FORBID_REUSE, 1L);
#undef SET
    return rc;
}

/* Runs `count` requests over `conns` handles; 0 or 3. */
static int run(CURLM *m, CURL **easy, long conns, long count, long *done)
{
    long started = 0, i;

    for (i = 0; i < conns && started < count; i++, started++)
        if (curl_multi_add_handle(m, easy[i]) != CURLM_OK)
            return 3;
    while (*done < count) {
        CURLMsg *msg;
        int running, left;

        if (curl_multi_perform(m, &running) != CURLM_OK)
            return 3;
        while ((msg = curl_multi_info_read(m, &left)) != NULL) {
            long status = 0;

            if (msg->msg != CURLMSG_DONE)
                continue;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &status);
            if (msg->data.result != CURLE_OK || status < 200 || status > 299) {
                fprintf(stderr, "bench_curl: request %ld: %s, HTTP %ld\n", *done,
                        curl_easy_strerror(msg->data.result), status);
                return 3;
            }
            (*done)++;
            curl_multi_remove_handle(m, msg->easy_handle);
            if (started < count) {
                if (curl_multi_add_handle(m, msg->easy_handle) != CURLM_OK)
                    return 3;
                started++;
            }
        }
        if (*done < count && curl_multi_poll(m, NULL, 0, 1000, NULL) != CURLM_OK)
            return 3;
    }
    return 0;
}

int main(int argc, char **argv)
{
    const char *url = NULL, *body_path = NULL, *ca_file = NULL;
    long count = 0, conns = 8, done = 0, i;
    int fresh = 0, code = 3;
    struct vh_buf body;
    struct curl_slist *headers = NULL, *h;
    static const char *const lines[] = {
        /* The engine's header set, with values of the same lengths. */
        "Content-Type: application/json",
        "X-Webhook-Timestamp: 2026-03-15T14:32:08.000Z",
        "X-Webhook-Signature: sha256=0000000000000000000000000000000000000000000000000000000000000000",
        "X-Webhook-Id: 00000000-0000-4000-8000-000000000000",
        "Expect:",
    };
    CURL *easy[CONNS_MAX] = {0};
    CURLM *m = NULL;
    struct timespec t0, t1;
    struct rusage ru;
    double secs, cpu;

    for (i = 1; i < argc; i++) {
        const char *a = argv[i];

        if (strcmp(a, "--fresh") == 0) {
            fresh = 1;
            continue;
        }
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
    if (!url || !body_path || count < 1 || conns < 1 || conns > CONNS_MAX)
        return usage();
    vh_buf_init(&body, 64 * 1024 * 1024);
    if (bench_read_file(body_path, &body) < 0) {
        fprintf(stderr, "bench_curl: cannot read %s\n", body_path);
        return 3;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        goto out;
    for (i = 0; i < (long)(sizeof(lines) / sizeof(lines[0])); i++) {
        h = curl_slist_append(headers, lines[i]);
        if (!h)
            goto out;
        headers = h;
    }
    m = curl_multi_init();
    if (!m || curl_multi_setopt(m, CURLMOPT_MAXCONNECTS, conns) != CURLM_OK)
        goto out;
    for (i = 0; i < conns; i++) {
        easy[i] = curl_easy_init();
        if (!easy[i] || setup(easy[i], url, &body, headers, ca_file, fresh) != CURLE_OK)
            goto out;
    }
    clock_gettime(CLOCK_MONOTONIC, &t0);
    code = run(m, easy, conns, count, &done);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (code == 0) {
        secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
        getrusage(RUSAGE_SELF, &ru);
        cpu = seconds_of(&ru.ru_utime) + seconds_of(&ru.ru_stime);
        printf("{\"requests\": %ld, \"seconds\": %.3f, \"rate\": %.1f, \"cpu_us\": %.2f}\n", done,
               secs, (double)done / secs, cpu * 1e6 / (double)done);
    }
out:
    if (code != 0 && done == 0)
        fputs("bench_curl: libcurl failed before the first answer\n", stderr);
    for (i = 0; i < conns; i++) {
        if (easy[i]) {
            if (m)
                curl_multi_remove_handle(m, easy[i]);
            curl_easy_cleanup(easy[i]);
        }
    }
    curl_multi_cleanup(m);
    curl_slist_free_all(headers);
    vh_buf_release(&body);
    curl_global_cleanup();
    return code;
}
