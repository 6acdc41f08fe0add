/*
 * The delivery model (include/vocohook/policy.h, src/deliver/deliver_int.h): attempt
 * results, schedule parsing, the state machine, the retry decision, and the SSRF
 * address rule.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <vocohook/policy.h>
#include <vocohook/store.h>

#include "deliver/deliver_int.h"
#include "core/banned.h"

/* --- attempt results -------------------------------------------------------------------------- */

static void test_result_names_round_trip(void **state)
{
    enum vh_attempt_result r, back;

    (void)state;
    for (r = VH_ATTEMPT_OK; r <= VH_ATTEMPT_INTERNAL; r++) {
        const char *name = vh_attempt_result_name(r);

        assert_string_not_equal(name, "unknown");
        assert_int_equal(vh_attempt_result_parse(name, strlen(name), &back, NULL), 0);
        assert_int_equal(back, r);
    }
    assert_string_equal(vh_attempt_result_name(VH_ATTEMPT_BLOCKED), "blocked_destination");
    assert_string_equal(vh_attempt_result_name((enum vh_attempt_result)99), "unknown");
    assert_int_equal(vh_attempt_result_parse("ok ", 3, &back, NULL), VH_EINVAL);
    assert_int_equal(vh_attempt_result_parse("o", 1, &back, NULL), VH_EINVAL);
    assert_int_equal(vh_attempt_result_parse(NULL, 0, &back, NULL), VH_EINVAL);
}

static void test_result_counts(void **state)
{
    (void)state;
    assert_true(vh_attempt_result_counts(VH_ATTEMPT_OK));
    assert_true(vh_attempt_result_counts(VH_ATTEMPT_TIMEOUT));
    assert_true(vh_attempt_result_counts(VH_ATTEMPT_BLOCKED));
    assert_false(vh_attempt_result_counts(VH_ATTEMPT_INTERRUPTED));
    assert_false(vh_attempt_result_counts(VH_ATTEMPT_INTERNAL));
}

/* --- schedules -------------------------------------------------------------------------------- */

static void test_policy_defaults(void **state)
{
    struct vh_retry_policy p;

    (void)state;
    vh_retry_policy_init(&p);
    assert_int_equal(p.steps, 4);
    assert_int_equal(p.delays_ms[0], 0);
    assert_int_equal(p.delays_ms[1], 1000);
    assert_int_equal(p.delays_ms[2], 2000);
    assert_int_equal(p.delays_ms[3], 4000);
    assert_int_equal(p.timeout_ms, 10000);
    assert_int_equal(vh_retry_policy_check(&p, NULL), 0);
    assert_int_equal(vh_retry_policy_delay_ms(&p, 1), 0);
    assert_int_equal(vh_retry_policy_delay_ms(&p, 4), 4000);
    assert_int_equal(vh_retry_policy_delay_ms(&p, 0), -1);
    assert_int_equal(vh_retry_policy_delay_ms(&p, 5), -1);
}

static struct vh_retry_policy parse_ok(const char *s)
{
    struct vh_retry_policy p;
    struct vh_error err = VH_ERROR_INIT;

    vh_retry_policy_init(&p);
    if (vh_retry_policy_set_schedule(&p, s, strlen(s), &err) != 0)
        fail_msg("'%s': %s", s, err.msg);
    assert_int_equal(vh_retry_policy_check(&p, NULL), 0);
    return p;
}

static void test_schedule_parse(void **state)
{
    struct vh_retry_policy p;

    (void)state;
    p = parse_ok("0,1s,2s,4s");
    assert_int_equal(p.steps, 4);
    assert_int_equal(p.delays_ms[3], 4000);

    p = parse_ok("5s,5m,30m,2h");
    assert_int_equal(p.steps, 4);
    assert_int_equal(p.delays_ms[0], 5000);
    assert_int_equal(p.delays_ms[1], 300000);
    assert_int_equal(p.delays_ms[2], 1800000);
    assert_int_equal(p.delays_ms[3], 7200000);
    assert_int_equal(p.timeout_ms, 10000); /* untouched */

    p = parse_ok("0,5s,5m,30m,2h,5h,10h,10h"); /* SPEC §3's production example */
    assert_int_equal(p.steps, 8);
    assert_int_equal(p.delays_ms[7], 36000000);

    p = parse_ok(" 0 , 1500ms,\t2s ");
    assert_int_equal(p.steps, 3);
    assert_int_equal(p.delays_ms[1], 1500);

    p = parse_ok("0");
    assert_int_equal(p.steps, 1);

    p = parse_ok("0ms,0s,0m,0h");
    assert_int_equal(p.steps, 4);

    p = parse_ok("4s,2s,1s"); /* decreasing is allowed */
    assert_int_equal(p.delays_ms[2], 1000);

    p = parse_ok("720h"); /* exactly 30 days */
    assert_int_equal(p.delays_ms[0], INT64_C(2592000000));

    p = parse_ok("0,1s,2s,3s,4s,5s,6s,7s,8s,9s,10s,11s,12s,13s,14s,15s");
    assert_int_equal(p.steps, 16);
}

static void parse_bad(const char *s, const char *want)
{
    struct vh_retry_policy p, before;
    struct vh_error err = VH_ERROR_INIT;

    vh_retry_policy_init(&p);
    before = p;
    assert_int_equal(vh_retry_policy_set_schedule(&p, s, strlen(s), &err), VH_EINVAL);
    if (!strstr(err.msg, want))
        fail_msg("'%s': message '%s' lacks '%s'", s, err.msg, want);
    assert_memory_equal(&p, &before, sizeof(p)); /* unchanged on failure */
}

static void test_schedule_errors(void **state)
{
    (void)state;
    parse_bad("", "no steps");
    parse_bad("   ", "step 1 is empty");
    parse_bad("0,,2s", "step 2 is empty");
    parse_bad("0,1s,", "step 3 is empty");
    parse_bad(",1s", "step 1 is empty");
    parse_bad("5", "step 1: expected a delay");
    parse_bad("0,1", "step 2: expected a delay");
    parse_bad("-1s", "expected a delay");
    parse_bad("1.5s", "expected a delay");
    parse_bad("1d", "expected a delay");
    parse_bad("1S", "expected a delay");
    parse_bad("s", "expected a delay");
    parse_bad("1 s", "expected a delay");
    parse_bad("1sec", "expected a delay");
    parse_bad("0x10s", "expected a delay");
    parse_bad("+1s", "expected a delay");
    parse_bad("721h", "longer than 30 days");
    parse_bad("2592000001ms", "longer than 30 days");
    parse_bad("99999999999999999999999999h", "longer than 30 days");
    parse_bad("0,1s,2s,3s,4s,5s,6s,7s,8s,9s,10s,11s,12s,13s,14s,15s,16s", "more than 16 steps");
}

static void test_schedule_embedded_nul_and_length(void **state)
{
    struct vh_retry_policy p;

    (void)state;
    vh_retry_policy_init(&p);
    /* Only `len` bytes are read: "0,1s" of "0,1sXYZ". */
    assert_int_equal(vh_retry_policy_set_schedule(&p, "0,1sXYZ", 4, NULL), 0);
    assert_int_equal(p.steps, 2);
    assert_int_equal(vh_retry_policy_set_schedule(&p, "0\0,1s", 5, NULL), VH_EINVAL);
    assert_int_equal(vh_retry_policy_set_schedule(NULL, "0", 1, NULL), VH_EINVAL);
}

static void format_is(const char *in, const char *want)
{
    struct vh_retry_policy p = parse_ok(in);
    struct vh_buf b = VH_BUF_INIT(1024);

    assert_int_equal(vh_retry_policy_format(&p, &b), 0);
    assert_string_equal(vh_buf_cstr(&b), want);
    vh_buf_release(&b);
}

static void test_schedule_format(void **state)
{
    struct vh_retry_policy p;
    struct vh_buf b = VH_BUF_INIT(4);

    (void)state;
    format_is("0,1s,2s,4s", "0,1s,2s,4s");
    format_is("0ms,1000ms,60s,3600s,90m,1500ms", "0,1s,1m,1h,90m,1500ms");
    format_is("5s,5m,30m,2h,5h,10h,10h", "5s,5m,30m,2h,5h,10h,10h");
    /* Over the buffer's bound: VH_ETOOBIG and the buffer untouched. */
    vh_retry_policy_init(&p);
    assert_int_equal(vh_retry_policy_format(&p, &b), VH_ETOOBIG);
    assert_int_equal(b.len, 0);
    p.steps = 0;
    assert_int_equal(vh_retry_policy_format(&p, &b), VH_EINVAL);
    vh_buf_release(&b);
}

static void test_policy_check(void **state)
{
    struct vh_retry_policy p;
    struct vh_error err = VH_ERROR_INIT;

    (void)state;
    vh_retry_policy_init(&p);
    p.steps = 17;
    assert_int_equal(vh_retry_policy_check(&p, &err), VH_EINVAL);
    vh_retry_policy_init(&p);
    p.delays_ms[2] = -1;
    assert_int_equal(vh_retry_policy_check(&p, NULL), VH_EINVAL);
    vh_retry_policy_init(&p);
    p.timeout_ms = 0;
    assert_int_equal(vh_retry_policy_check(&p, NULL), VH_EINVAL);
    assert_int_equal(vh_retry_policy_check(NULL, NULL), VH_EINVAL);
}

/* --- the state machine ------------------------------------------------------------------------ */

static void test_state_names(void **state)
{
    enum vh_delivery_state s, back;

    (void)state;
    for (s = VH_DELIVERY_PENDING; s <= VH_DELIVERY_CANCELED; s++) {
        const char *name = vh_delivery_state_name(s);

        assert_int_equal(vh_delivery_state_parse(name, strlen(name), &back, NULL), 0);
        assert_int_equal(back, s);
    }
    assert_string_equal(vh_delivery_state_name(VH_DELIVERY_IN_FLIGHT), "in_flight");
    assert_string_equal(vh_delivery_state_name((enum vh_delivery_state)7), "unknown");
    assert_int_equal(vh_delivery_state_parse("done", 4, &back, NULL), VH_EINVAL);
}

static void test_transitions(void **state)
{
    /* legal[from][to], exactly the table in policy.h. */
    static const int legal[5][5] = {
        /*               pend in_f succ aban canc */
        /* pending   */ {0, 1, 0, 0, 1},
        /* in_flight */ {1, 0, 1, 1, 1},
        /* succeeded */ {0, 0, 0, 0, 0},
        /* abandoned */ {1, 0, 0, 0, 0},
        /* canceled  */ {1, 0, 0, 0, 0},
    };
    struct vh_error err = VH_ERROR_INIT;
    int from, to;

    (void)state;
    for (from = 0; from < 5; from++) {
        for (to = 0; to < 5; to++) {
            int rc = vh_delivery_transition((enum vh_delivery_state)from,
                                            (enum vh_delivery_state)to, NULL);

            assert_int_equal(rc, legal[from][to] ? 0 : VH_ESTATE);
        }
    }
    assert_int_equal(vh_delivery_transition(VH_DELIVERY_SUCCEEDED, VH_DELIVERY_PENDING, &err),
                     VH_ESTATE);
    assert_string_equal(err.msg, "delivery: illegal transition 'succeeded' -> 'pending'");
    assert_int_equal(vh_delivery_transition((enum vh_delivery_state)9, VH_DELIVERY_PENDING, NULL),
                     VH_ESTATE);
    assert_int_equal(vh_delivery_transition(VH_DELIVERY_PENDING, (enum vh_delivery_state)9, NULL),
                     VH_ESTATE);
}

/* --- vh__delivery_on_attempt ------------------------------------------------------------------ */

#define NOW INT64_C(1773585128000)

static struct vh_attempt attempt(unsigned n, enum vh_attempt_result r)
{
    struct vh_attempt a;

    memset(&a, 0, sizeof(a));
    a.number = n;
    a.result = r;
    return a;
}

static struct vh_delivery in_flight(unsigned attempts)
{
    struct vh_delivery d;

    d.state = VH_DELIVERY_IN_FLIGHT;
    d.attempts = attempts;
    d.next_attempt_ms = NOW - 5;
    return d;
}

static void test_on_attempt_success(void **state)
{
    struct vh_retry_policy p;
    struct vh_delivery d = in_flight(2);
    struct vh_attempt a = attempt(3, VH_ATTEMPT_OK);

    (void)state;
    vh_retry_policy_init(&p);
    assert_int_equal(vh__delivery_on_attempt(&d, &a, NOW, &p, NULL), 0);
    assert_int_equal(d.state, VH_DELIVERY_SUCCEEDED);
    assert_int_equal(d.attempts, 3);
    assert_int_equal(d.next_attempt_ms, 0);
}

/* The default schedule end to end: failures at +1 s, +2 s, +4 s, then abandoned. */
static void test_on_attempt_default_schedule(void **state)
{
    static const enum vh_attempt_result failures[] = {VH_ATTEMPT_HTTP_STATUS, VH_ATTEMPT_TIMEOUT,
                                                      VH_ATTEMPT_CONNECT, VH_ATTEMPT_TLS};
    static const int64_t waits[] = {1000, 2000, 4000};
    struct vh_retry_policy p;
    struct vh_delivery d;
    struct vh_attempt a;
    int64_t now = NOW;
    unsigned i;

    (void)state;
    vh_retry_policy_init(&p);
    d.state = VH_DELIVERY_PENDING;
    d.attempts = 0;
    d.next_attempt_ms = now;
    for (i = 0; i < 4; i++) {
        assert_int_equal(vh_delivery_transition(d.state, VH_DELIVERY_IN_FLIGHT, NULL), 0);
        d.state = VH_DELIVERY_IN_FLIGHT;
        a = attempt(i + 1, failures[i]);
        now += 37; /* the attempt took a while; the wait counts from its end */
        assert_int_equal(vh__delivery_on_attempt(&d, &a, now, &p, NULL), 0);
        assert_int_equal(d.attempts, i + 1);
        if (i < 3) {
            assert_int_equal(d.state, VH_DELIVERY_PENDING);
            assert_int_equal(d.next_attempt_ms, now + waits[i]);
            now = d.next_attempt_ms;
        }
    }
    assert_int_equal(d.state, VH_DELIVERY_ABANDONED);
    assert_int_equal(d.next_attempt_ms, 0);
}

static void test_on_attempt_every_failure_class_counts(void **state)
{
    static const enum vh_attempt_result failures[] = {
        VH_ATTEMPT_HTTP_STATUS, VH_ATTEMPT_TIMEOUT,  VH_ATTEMPT_CONNECT,
        VH_ATTEMPT_DNS,         VH_ATTEMPT_TLS,      VH_ATTEMPT_RESET,
        VH_ATTEMPT_PROTOCOL,    VH_ATTEMPT_REDIRECT, VH_ATTEMPT_BLOCKED};
    struct vh_retry_policy p;
    size_t i;

    (void)state;
    vh_retry_policy_init(&p);
    for (i = 0; i < sizeof(failures) / sizeof(failures[0]); i++) {
        struct vh_delivery d = in_flight(0);
        struct vh_attempt a = attempt(1, failures[i]);

        assert_int_equal(vh__delivery_on_attempt(&d, &a, NOW, &p, NULL), 0);
        assert_int_equal(d.state, VH_DELIVERY_PENDING);
        assert_int_equal(d.attempts, 1);
        assert_int_equal(d.next_attempt_ms, NOW + 1000);
    }
}

static void test_on_attempt_interrupted_and_internal(void **state)
{
    struct vh_retry_policy p;
    struct vh_delivery d = in_flight(3);
    struct vh_attempt a = attempt(4, VH_ATTEMPT_INTERRUPTED);

    (void)state;
    vh_retry_policy_init(&p);
    /* The last step, interrupted: not abandoned, the same attempt again, due now. */
    assert_int_equal(vh__delivery_on_attempt(&d, &a, NOW, &p, NULL), 0);
    assert_int_equal(d.state, VH_DELIVERY_PENDING);
    assert_int_equal(d.attempts, 3);
    assert_int_equal(d.next_attempt_ms, NOW);

    d = in_flight(3);
    a = attempt(4, VH_ATTEMPT_INTERNAL);
    assert_int_equal(vh__delivery_on_attempt(&d, &a, NOW, &p, NULL), 0);
    assert_int_equal(d.state, VH_DELIVERY_PENDING);
    assert_int_equal(d.attempts, 3);
    assert_int_equal(d.next_attempt_ms, NOW + VH_RETRY_INTERNAL_DELAY_MS);
}

static void test_on_attempt_custom_schedules(void **state)
{
    struct vh_retry_policy p = parse_ok("5s,5m,30m");
    struct vh_delivery d = in_flight(0);
    struct vh_attempt a = attempt(1, VH_ATTEMPT_HTTP_STATUS);

    (void)state;
    assert_int_equal(vh__delivery_on_attempt(&d, &a, NOW, &p, NULL), 0);
    assert_int_equal(d.next_attempt_ms, NOW + 300000);

    /* One step: the first failure abandons. */
    p = parse_ok("0");
    d = in_flight(0);
    assert_int_equal(vh__delivery_on_attempt(&d, &a, NOW, &p, NULL), 0);
    assert_int_equal(d.state, VH_DELIVERY_ABANDONED);
    assert_int_equal(d.attempts, 1);

    /* A manual retry past the schedule's end fails: abandoned again, 5 attempts made. */
    vh_retry_policy_init(&p);
    d = in_flight(4);
    a = attempt(5, VH_ATTEMPT_TIMEOUT);
    assert_int_equal(vh__delivery_on_attempt(&d, &a, NOW, &p, NULL), 0);
    assert_int_equal(d.state, VH_DELIVERY_ABANDONED);
    assert_int_equal(d.attempts, 5);
}

static void test_on_attempt_rejects(void **state)
{
    struct vh_retry_policy p, bad;
    struct vh_delivery d = in_flight(1), before;
    struct vh_attempt a = attempt(2, VH_ATTEMPT_OK);
    struct vh_error err = VH_ERROR_INIT;

    (void)state;
    vh_retry_policy_init(&p);
    d.state = VH_DELIVERY_PENDING;
    before = d;
    assert_int_equal(vh__delivery_on_attempt(&d, &a, NOW, &p, &err), VH_ESTATE);
    assert_string_equal(err.msg, "delivery: attempt reported while 'pending'");
    assert_memory_equal(&d, &before, sizeof(d));

    d = in_flight(1);
    a = attempt(3, VH_ATTEMPT_OK); /* not the attempt the delivery was claimed for */
    assert_int_equal(vh__delivery_on_attempt(&d, &a, NOW, &p, NULL), VH_ESTATE);
    a = attempt(1, VH_ATTEMPT_OK);
    assert_int_equal(vh__delivery_on_attempt(&d, &a, NOW, &p, NULL), VH_ESTATE);
    assert_int_equal(d.state, VH_DELIVERY_IN_FLIGHT);

    d.state = VH_DELIVERY_SUCCEEDED;
    a = attempt(2, VH_ATTEMPT_OK);
    assert_int_equal(vh__delivery_on_attempt(&d, &a, NOW, &p, NULL), VH_ESTATE);

    d = in_flight(1);
    bad = p;
    bad.steps = 0;
    assert_int_equal(vh__delivery_on_attempt(&d, &a, NOW, &bad, NULL), VH_EINVAL);
    assert_int_equal(vh__delivery_on_attempt(&d, &a, NOW, NULL, NULL), VH_EINVAL);
    assert_int_equal(vh__delivery_on_attempt(NULL, &a, NOW, &p, NULL), VH_EINVAL);
    assert_int_equal(vh__delivery_on_attempt(&d, NULL, NOW, &p, NULL), VH_EINVAL);
}

/* --- the SSRF address rule -------------------------------------------------------------------- */

/* Parses an IPv4 or IPv6 literal into a sockaddr and asks the classifier. */
static bool blocked(const char *lit)
{
    struct sockaddr_in in4;
    struct sockaddr_in6 in6;

    memset(&in4, 0, sizeof(in4));
    memset(&in6, 0, sizeof(in6));
    if (inet_pton(AF_INET, lit, &in4.sin_addr) == 1) {
        in4.sin_family = AF_INET;
        return vh__addr_is_blocked((const struct sockaddr *)&in4, sizeof(in4));
    }
    if (inet_pton(AF_INET6, lit, &in6.sin6_addr) == 1) {
        in6.sin6_family = AF_INET6;
        return vh__addr_is_blocked((const struct sockaddr *)&in6, sizeof(in6));
    }
    fail_msg("'%s' is not an address literal", lit);
    return false;
}

static void test_addr_blocked(void **state)
{
    static const char *const lits[] = {
        /* IPv4 */
        "127.0.0.1",
        "127.1.2.3",
        "127.255.255.255",
        "10.0.0.1",
        "10.255.255.255",
        "172.16.0.1",
        "172.20.1.1",
        "172.31.255.255",
        "192.168.0.1",
        "192.168.255.254",
        "169.254.169.254",
        "169.254.0.1",
        "100.64.0.1",
        "100.127.255.255",
        "100.100.100.200",
        "0.0.0.0",
        "0.1.2.3",
        "224.0.0.1",
        "239.255.255.250",
        "255.255.255.255",
        "240.0.0.1",
        "198.18.0.1",
        "198.19.255.255",
        "192.0.0.1",
        "192.0.0.170",
        "192.0.2.1",
        "198.51.100.7",
        "203.0.113.9",
        "192.88.99.1",
        /* IPv6 */
        "::1",
        "::",
        "fe80::1",
        "febf::1",
        "fc00::1",
        "fd12::1",
        "fd00:ec2::254",
        "ff02::1",
        "ff05::1:3",
        "fec0::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "::ffff:169.254.169.254",
        "::ffff:0.0.0.0",
        "::ffff:192.168.1.1",
        "::ffff:0:127.0.0.1",
        "::127.0.0.1",
        "::10.0.0.1",
        "::8.8.8.8",
        "64:ff9b::7f00:1",
        "64:ff9b::a00:1",
        "64:ff9b::a9fe:a9fe",
        "64:ff9b:1::8.8.8.8",
        "2002:7f00:1::",
        "2002:a00:1::",
        "2002:c0a8:101::1",
        "2002:a9fe:a9fe::",
        "2001:db8::1",
        "2001:db8:ffff::1",
        "2001::1",
        "2001:0:4136:e378::1",
        "3fff::1",
        "5f00::1",
        "100::1",
        "1::1",
        "4000::1",
        "e000::1",
    };
    size_t i;

    (void)state;
    assert_true(sizeof(lits) / sizeof(lits[0]) >= 30);
    for (i = 0; i < sizeof(lits) / sizeof(lits[0]); i++)
        if (!blocked(lits[i]))
            fail_msg("'%s' should be blocked", lits[i]);
}

static void test_addr_allowed(void **state)
{
    static const char *const lits[] = {
        "8.8.8.8",           "1.1.1.1",
        "93.184.216.34",     "9.255.255.255",
        "11.0.0.1",          "100.63.255.255",
        "100.128.0.1",       "126.255.255.255",
        "128.0.0.1",         "169.253.255.255",
        "169.255.0.1",       "172.15.255.255",
        "172.32.0.1",        "192.0.1.1",
        "192.167.255.255",   "192.169.0.1",
        "198.17.255.255",    "198.20.0.1",
        "223.255.255.255",   "2606:4700::1111",
        "2a00:1450:4001::1", "2001:4860:4860::8888",
        "2001:200::1",       "2002:808:808::1",
        "::ffff:8.8.8.8",    "64:ff9b::808:808",
        "2400:cb00::1",
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(lits) / sizeof(lits[0]); i++)
        if (blocked(lits[i]))
            fail_msg("'%s' should be allowed", lits[i]);
}

static void test_addr_odd_inputs(void **state)
{
    struct sockaddr_in in4;
    struct sockaddr_in6 in6;
    struct sockaddr sa;
    static const unsigned char pub4[4] = {8, 8, 8, 8};

    (void)state;
    memset(&in4, 0, sizeof(in4));
    in4.sin_family = AF_INET;
    memcpy(&in4.sin_addr, pub4, 4);
    assert_false(vh__addr_is_blocked((const struct sockaddr *)&in4, sizeof(in4)));
    /* Too short for its family, an unknown family, NULL: all blocked. */
    assert_true(vh__addr_is_blocked((const struct sockaddr *)&in4, sizeof(in4) - 1));
    memset(&in6, 0, sizeof(in6));
    in6.sin6_family = AF_INET6;
    in6.sin6_addr.s6_addr[0] = 0x26;
    assert_false(vh__addr_is_blocked((const struct sockaddr *)&in6, sizeof(in6)));
    assert_true(vh__addr_is_blocked((const struct sockaddr *)&in6, sizeof(in4)));
    memset(&sa, 0, sizeof(sa));
    sa.sa_family = AF_UNIX;
    assert_true(vh__addr_is_blocked(&sa, sizeof(sa)));
    assert_true(vh__addr_is_blocked(NULL, 0));
    assert_false(vh__ipv4_is_blocked(pub4));
}

/*
 * An attempt ends before its lease does (less the margin for its record). Until session 18
 * an endpoint timeout longer than that got no start-by time at all, and its attempt could
 * run past its lease, when another node may take the delivery and send it too.
 */
/*
 * A step of the wall clock ahead holds lease recovery for a lease; drift, a small step and a
 * step back hold nothing.
 */
static void test_clock_watch(void **state)
{
    const int64_t lease = 600000, wall0 = INT64_C(1773585128000), mono0 = 5000;
    struct vh__clock_watch w = {0};
    int64_t step = -1;

    (void)state;
    assert_true(vh__clock_watch_allows(&w, wall0, mono0, lease, &step)); /* the first reading */
    assert_int_equal(step, 0);
    /* 150 s on both clocks, with 4.9 s of drift: no step. */
    assert_true(vh__clock_watch_allows(&w, wall0 + 154900, mono0 + 150000, lease, &step));
    assert_int_equal(step, 0);
    /* The wall clock 11 minutes ahead of the monotonic one over the next 150 s. */
    assert_false(
        vh__clock_watch_allows(&w, wall0 + 154900 + 150000 + 660000, mono0 + 300000, lease, &step));
    assert_int_equal(step, 660000);
    /* Held for a lease from the reading that saw the step, then allowed again. */
    assert_false(vh__clock_watch_allows(&w, wall0 + 964900 + 150000, mono0 + 450000, lease, &step));
    assert_int_equal(step, 0);
    assert_false(vh__clock_watch_allows(&w, wall0 + 964900 + 599999, mono0 + 899999, lease, &step));
    assert_true(vh__clock_watch_allows(&w, wall0 + 964900 + 600000, mono0 + 900000, lease, &step));
    /* A step back only delays expiries: nothing held. */
    assert_true(vh__clock_watch_allows(&w, wall0, mono0 + 1050000, lease, &step));
    assert_int_equal(step, 0);
    /* Just past the threshold counts; a second step within the hold extends it. */
    assert_false(vh__clock_watch_allows(&w, wall0 + 150000 + VH__CLOCK_STEP_MS + 1, mono0 + 1200000,
                                        lease, &step));
    assert_int_equal(step, VH__CLOCK_STEP_MS + 1);
    assert_false(vh__clock_watch_allows(&w, wall0 + 300000 + 2 * VH__CLOCK_STEP_MS + 2,
                                        mono0 + 1350000, lease, &step));
    assert_false(vh__clock_watch_allows(&w, wall0 + 300000 + 2 * VH__CLOCK_STEP_MS + 2 + 599999,
                                        mono0 + 1350000 + 599999, lease, &step));
    assert_true(vh__clock_watch_allows(&w, wall0 + 300000 + 2 * VH__CLOCK_STEP_MS + 2 + 600000,
                                       mono0 + 1350000 + 600000, lease, &step));
}

static void test_attempt_window(void **state)
{
    const int64_t now = INT64_C(1700000000000), margin = 10000, lease = now + 600000;
    const int64_t timeouts[] = {100,
                                10000,
                                479999,
                                480000,
                                529999,
                                530000,
                                530001,
                                589000,
                                600000,
                                3600000,
                                VH_ENDPOINT_TIMEOUT_MAX_MS};
    int64_t start_by, timeout;
    size_t i;

    (void)state;
    /* fits: the timeout stays, and the attempt starts late enough to end in time */
    vh__attempt_window(lease, now, 10000, margin, &start_by, &timeout);
    assert_int_equal(timeout, 10000);
    assert_int_equal(start_by, lease - margin - 10000);
    /* exactly a queue's wait to spare still fits */
    vh__attempt_window(lease, now, 530000, margin, &start_by, &timeout);
    assert_int_equal(timeout, 530000);
    assert_int_equal(start_by, now + VH__ATTEMPT_QUEUE_MS);
    /* longer than the lease allows: cut, after a queue's wait at most */
    vh__attempt_window(lease, now, 3600000, margin, &start_by, &timeout);
    assert_int_equal(start_by, now + VH__ATTEMPT_QUEUE_MS);
    assert_int_equal(timeout, lease - margin - start_by);
    assert_int_equal(timeout, 530000);
    for (i = 0; i < sizeof(timeouts) / sizeof(timeouts[0]); i++) {
        vh__attempt_window(lease, now, timeouts[i], margin, &start_by, &timeout);
        assert_true(timeout > 0 && timeout <= timeouts[i]);
        assert_true(start_by >= now + VH__ATTEMPT_QUEUE_MS);
        assert_true(start_by + timeout <= lease - margin);
    }
    /* a lease about to end: a short timeout still fits, a long one may not start */
    vh__attempt_window(now + margin + VH__ATTEMPT_QUEUE_MS + 999, now, 999, margin, &start_by,
                       &timeout);
    assert_int_equal(start_by, now + VH__ATTEMPT_QUEUE_MS);
    assert_int_equal(timeout, 999);
    vh__attempt_window(now + margin + VH__ATTEMPT_QUEUE_MS + 999, now, 10000, margin, &start_by,
                       &timeout);
    assert_true(start_by > 0 && start_by < now);
    vh__attempt_window(now - 5000, now, 10000, margin, &start_by, &timeout);
    assert_true(start_by > 0 && start_by < now);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_result_names_round_trip),
        cmocka_unit_test(test_result_counts),
        cmocka_unit_test(test_policy_defaults),
        cmocka_unit_test(test_schedule_parse),
        cmocka_unit_test(test_schedule_errors),
        cmocka_unit_test(test_schedule_embedded_nul_and_length),
        cmocka_unit_test(test_schedule_format),
        cmocka_unit_test(test_policy_check),
        cmocka_unit_test(test_state_names),
        cmocka_unit_test(test_transitions),
        cmocka_unit_test(test_on_attempt_success),
        cmocka_unit_test(test_on_attempt_default_schedule),
        cmocka_unit_test(test_on_attempt_every_failure_class_counts),
        cmocka_unit_test(test_on_attempt_interrupted_and_internal),
        cmocka_unit_test(test_on_attempt_custom_schedules),
        cmocka_unit_test(test_on_attempt_rejects),
        cmocka_unit_test(test_addr_blocked),
        cmocka_unit_test(test_addr_allowed),
        cmocka_unit_test(test_addr_odd_inputs),
        cmocka_unit_test(test_attempt_window),
        cmocka_unit_test(test_clock_watch),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
