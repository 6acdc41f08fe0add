/*
 * vh__heap_warm: a thread's heap made ready ahead of use (docs/decisions.md, "The daemons'
 * heap"). The pages a warmed thread allocates next must cost no page faults: counted with
 * getrusage, against a block of the same size allocated first, which does fault.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <sys/resource.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include <vocohook/alloc.h>

#include "cli/cli.h"
#include "core/heap_int.h"
#include "unit/oom.h"

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif

#define BLOCK ((size_t)4 * 1024 * 1024)
#define PAGES (BLOCK / 4096)

static void zero_bytes_is_nothing_to_do(void **state)
{
    (void)state;
    assert_int_equal(vh__heap_warm(0), 0);
}

static void no_memory_leaves_the_pages_to_fault_in(void **state)
{
    long live = live_blocks;

    (void)state;
    alloc_count = 0;
    alloc_fail_at = 1;
    assert_int_equal(vh__heap_warm(BLOCK), -1);
    alloc_fail_at = 0;
    assert_int_equal(live_blocks, live);
}

static long minor_faults(void)
{
    struct rusage ru;

    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return -1;
    return ru.ru_minflt;
}

struct faults {
    int warm_rc;
    int warm_errno;
    long cold; /* faults writing a block allocated before the warm-up */
    long warm; /* faults writing one of the same size after it */
};

static long write_block(unsigned char **out)
{
    long before = minor_faults();
    unsigned char *p = vh_malloc(BLOCK);

    if (!p)
        return -1;
    memset(p, 0xa5, BLOCK);
    *out = p;
    return minor_faults() - before;
}

/* In a thread of its own, as the dispatcher does: a heap that has served nothing yet. */
static void *measure(void *arg)
{
    struct faults *f = arg;
    unsigned char *cold = NULL, *warm = NULL;

    f->cold = write_block(&cold); /* kept: the warm-up must take fresh pages */
    errno = 0;
    f->warm_rc = vh__heap_warm(BLOCK + 65536);
    f->warm_errno = errno;
    f->warm = write_block(&warm);
    vh_free(warm);
    vh_free(cold);
    return NULL;
}

static void warmed_pages_do_not_fault_again(void **state)
{
    struct faults f;
    pthread_t t;

    (void)state;
#if defined(UNDER_ASAN) || !defined(__GLIBC__)
    skip(); /* ASan's allocator keeps freed blocks in quarantine: no reuse to measure */
#endif
    memset(&f, 0, sizeof(f));
    assert_int_equal(pthread_create(&t, NULL, measure, &f), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    /* The control: the same write before the warm-up faults about once per page. */
    assert_true(f.cold >= (long)PAGES / 2);
    if (f.warm_rc != 0 && f.warm_errno == EINVAL)
        skip(); /* a kernel before 5.14: no MADV_POPULATE_WRITE, the pages fault as before */
    assert_int_equal(f.warm_rc, 0);
    assert_true(f.warm >= 0);
    assert_true(f.warm < (long)PAGES / 32);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(zero_bytes_is_nothing_to_do),
        cmocka_unit_test(no_memory_leaves_the_pages_to_fault_in),
        cmocka_unit_test(warmed_pages_do_not_fault_again),
    };

#ifdef __GLIBC__
    /* The daemons' policy (cli_heap_tune), which a warm-up needs: freed blocks stay. */
    mallopt(M_MMAP_THRESHOLD, CLI_HEAP_MMAP_THRESHOLD);
    mallopt(M_TRIM_THRESHOLD, CLI_HEAP_TRIM_THRESHOLD);
    mallopt(M_TOP_PAD, CLI_HEAP_TOP_PAD);
#endif
    if (vh_replace_allocator(t_malloc, t_realloc, t_free) != 0)
        return 1;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
