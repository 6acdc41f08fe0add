/*
 * vh_sender_start's checks of its configuration, on a real SQLite store in a temp dir: a
 * bad value is refused with VH_EINVAL naming the field, and nothing starts.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <vocohook/sender.h>
#include <vocohook/store.h>

struct fixture {
    char dir[256];
    struct vh_store *st;
};

static int setup(void **state)
{
    const char *tmp = getenv("TMPDIR");
    struct vh_error err = VH_ERROR_INIT;
    struct fixture *f = calloc(1, sizeof(*f));
    char url[512];

    if (!f)
        return -1;
    snprintf(f->dir, sizeof(f->dir), "%s/vh-sender-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(f->dir)) {
        free(f);
        return -1;
    }
    snprintf(url, sizeof(url), "sqlite:%s/store.db", f->dir);
    if (vh_store_open(url, &f->st, &err) < 0) {
        fprintf(stderr, "open %s: %s\n", url, err.msg);
        rmdir(f->dir);
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    static const char *const files[] = {"store.db", "store.db-wal", "store.db-shm",
                                        "store.db-lock"};
    struct fixture *f = *state;
    char path[512];
    size_t i;

    vh_store_close(f->st);
    for (i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", f->dir, files[i]);
        unlink(path);
    }
    rmdir(f->dir);
    free(f);
    return 0;
}

static void heap_warm_over_its_limit_is_refused(void **state)
{
    struct fixture *f = *state;
    struct vh_error err = VH_ERROR_INIT;
    struct vh_sender_config cfg;
    struct vh_sender *s = NULL;

    vh_sender_config_init(&cfg);
    cfg.heap_warm_bytes = VH_SENDER_HEAP_WARM_MAX + 1;
    assert_int_equal(vh_sender_start(f->st, &cfg, &s, &err), VH_EINVAL);
    assert_null(s);
    assert_non_null(strstr(err.msg, "heap_warm_bytes"));
}

static void heap_warm_within_its_limit_starts(void **state)
{
    struct fixture *f = *state;
    struct vh_error err = VH_ERROR_INIT;
    struct vh_sender_config cfg;
    struct vh_sender *s = NULL;

    vh_sender_config_init(&cfg);
    cfg.heap_warm_bytes = 1024 * 1024;
    assert_int_equal(vh_sender_start(f->st, &cfg, &s, &err), 0);
    assert_non_null(s);
    vh_sender_stop(s, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(heap_warm_over_its_limit_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(heap_warm_within_its_limit_starts, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
