/*
 * Out-of-memory torture for the delivery engine (STYLE.md §10): create an engine, make one
 * attempt, free it, with allocation 1, 2, ... N failing (libcurl's allocations included: the
 * engine routes them through the hook) until a run needs fewer than N. Each run must either
 * fail cleanly with VH_ENOMEM, or report its job exactly once; afterwards no block is live.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <vocohook/alloc.h>
#include <vocohook/engine.h>

#include "core/banned.h"

#define WAIT_S 20

static atomic_long alloc_count;   /* allocations so far in this run */
static atomic_long alloc_fail_at; /* this allocation fails (1-based); 0: none */
static atomic_long live_blocks;   /* allocated and not yet freed, through the hook */

static void *t_malloc(size_t n)
{
    void *p;

    if (atomic_load(&alloc_fail_at) && atomic_fetch_add(&alloc_count, 1) + 1 == alloc_fail_at)
        return NULL;
    p = malloc(n);
    if (p)
        atomic_fetch_add(&live_blocks, 1);
    return p;
}

static void *t_realloc(void *ptr, size_t n)
{
    void *p;

    if (atomic_load(&alloc_fail_at) && atomic_fetch_add(&alloc_count, 1) + 1 == alloc_fail_at)
        return NULL;
    p = realloc(ptr, n);
    if (p && !ptr)
        atomic_fetch_add(&live_blocks, 1);
    return p;
}

static void t_free(void *p)
{
    if (p)
        atomic_fetch_sub(&live_blocks, 1);
    free(p);
}

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int calls;
static enum vh_attempt_result last;

static void on_done(void *ud, const struct vh_attempt *a)
{
    (void)ud;
    pthread_mutex_lock(&mu);
    calls++;
    last = a->result;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
}

static bool wait_calls(int n)
{
    struct timespec dl;
    bool ok;

    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += WAIT_S;
    pthread_mutex_lock(&mu);
    while (calls < n && pthread_cond_timedwait(&cv, &mu, &dl) != ETIMEDOUT)
        ;
    ok = calls >= n;
    pthread_mutex_unlock(&mu);
    return ok;
}

/* One run: returns whether the failing allocation was reached. */
static bool run(long fail_at, const char *url)
{
    static const char body[] = "{\"event\":\"session.completed\"}";
    struct vh_engine_config cfg;
    struct vh_engine *e = NULL;
    struct vh_delivery_job j;
    struct vh_error err = VH_ERROR_INIT;
    int rc;

    vh_engine_config_init(&cfg);
    cfg.allow_http = true;
    cfg.allow_private_networks = true;
    memset(&j, 0, sizeof(j));
    j.event_id = "e1";
    j.url = url;
    j.secret = "whsec_x";
    j.secret_len = 7;
    j.body = body;
    j.body_len = sizeof(body) - 1;
    j.attempt = 1;
    calls = 0;
    atomic_store(&alloc_count, 0);
    atomic_store(&alloc_fail_at, fail_at);

    rc = vh_engine_new(&cfg, &e, &err);
    if (rc == 0) {
        rc = vh_engine_submit(e, &j, on_done, NULL, &err);
        if (rc == 0) {
            assert_true(wait_calls(1));
        } else {
            assert_int_equal(rc, VH_ENOMEM);
        }
        vh_engine_free(e);
        assert_true(calls == (rc == 0 ? 1 : 0));
    } else {
        assert_int_equal(rc, VH_ENOMEM);
        assert_null(e);
    }
    atomic_store(&alloc_fail_at, 0);
    if (atomic_load(&live_blocks) != 0)
        fail_msg("fail_at %ld (%s): %ld blocks live after the run", fail_at, url,
                 (long)atomic_load(&live_blocks));
    return atomic_load(&alloc_count) >= fail_at;
}

static void torture(const char *url, enum vh_attempt_result want)
{
    long n;

    for (n = 1; n < 100000; n++)
        if (!run(n, url))
            break;
    assert_true(n > 1);
    /* The last run had every allocation it asked for. */
    assert_int_equal(calls, 1);
    assert_int_equal(last, want);
}

static void test_oom_refused_scheme(void **state)
{
    (void)state;
    torture("ftp://127.0.0.1/", VH_ATTEMPT_BLOCKED);
}

static void test_oom_connection_refused(void **state)
{
    (void)state;
    /* Port 1 on loopback: nothing listens there, so libcurl sets up a whole transfer. */
    torture("http://127.0.0.1:1/", VH_ATTEMPT_CONNECT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_oom_refused_scheme),
        cmocka_unit_test(test_oom_connection_refused),
    };

    vh_replace_allocator(t_malloc, t_realloc, t_free);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
