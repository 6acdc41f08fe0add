/*
 * The delivery model as pure code (policy.h, deliver_int.h): attempt results, the retry
 * schedule, the delivery state machine, and the destination-address rule of the SSRF
 * guard. No I/O, no clock, no globals: every input is a parameter (STYLE §6).
 */
#include "deliver/deliver_int.h"

#include <string.h>

#include <netinet/in.h>

#include "core/banned.h"

/* ---- attempt results ------------------------------------------------------------------------- */

static const char *const result_names[] = {
    [VH_ATTEMPT_OK] = "ok",
    [VH_ATTEMPT_HTTP_STATUS] = "http_status",
    [VH_ATTEMPT_TIMEOUT] = "timeout",
    [VH_ATTEMPT_CONNECT] = "connect",
    [VH_ATTEMPT_DNS] = "dns",
    [VH_ATTEMPT_TLS] = "tls",
    [VH_ATTEMPT_RESET] = "reset",
    [VH_ATTEMPT_PROTOCOL] = "protocol",
    [VH_ATTEMPT_REDIRECT] = "redirect",
    [VH_ATTEMPT_BLOCKED] = "blocked_destination",
    [VH_ATTEMPT_INTERRUPTED] = "interrupted",
    [VH_ATTEMPT_INTERNAL] = "internal",
};

#define N_RESULTS (sizeof(result_names) / sizeof(result_names[0]))

const char *vh_attempt_result_name(enum vh_attempt_result r)
{
    if ((unsigned)r >= N_RESULTS)
        return "unknown";
    return result_names[r];
}

/* Whether `len` bytes at `s` spell the C string `name` exactly. */
static bool name_is(const char *s, size_t len, const char *name)
{
    return strlen(name) == len && memcmp(s, name, len) == 0;
}

int vh_attempt_result_parse(const char *name, size_t len, enum vh_attempt_result *out,
                            struct vh_error *err)
{
    size_t i;

    for (i = 0; name && i < N_RESULTS; i++) {
        if (name_is(name, len, result_names[i])) {
            *out = (enum vh_attempt_result)i;
            return 0;
        }
    }
    return vh_error_set(err, VH_EINVAL, "unknown attempt result '%.*s'", len > 64 ? 64 : (int)len,
                        name ? name : "");
}

bool vh_attempt_result_counts(enum vh_attempt_result r)
{
    return r != VH_ATTEMPT_INTERRUPTED && r != VH_ATTEMPT_INTERNAL;
}

/* ---- the retry policy ------------------------------------------------------------------------ */

void vh_retry_policy_init(struct vh_retry_policy *p)
{
    static const int64_t spec[] = {0, 1000, 2000, 4000};

    memset(p, 0, sizeof(*p));
    memcpy(p->delays_ms, spec, sizeof(spec));
    p->steps = sizeof(spec) / sizeof(spec[0]);
    p->timeout_ms = VH_RETRY_TIMEOUT_DEFAULT_MS;
}

static const struct unit {
    const char *name;
    int64_t ms;
} units[] = {{"h", 3600000}, {"m", 60000}, {"s", 1000}, {"ms", 1}};

#define N_UNITS (sizeof(units) / sizeof(units[0]))

/*
 * One step: digits and a unit, or a bare "0". The digits stop accumulating once past the
 * bound, so no input can overflow.
 */
static int parse_delay(const char *s, size_t len, size_t step, int64_t *out, struct vh_error *err)
{
    int64_t v = 0;
    size_t i = 0, u;

    if (len == 1 && s[0] == '0') {
        *out = 0;
        return 0;
    }
    for (; i < len && s[i] >= '0' && s[i] <= '9'; i++)
        if (v <= VH_RETRY_DELAY_MAX_MS)
            v = v * 10 + (s[i] - '0');
    for (u = 0; i > 0 && u < N_UNITS; u++) {
        if (!name_is(s + i, len - i, units[u].name))
            continue;
        if (v > VH_RETRY_DELAY_MAX_MS / units[u].ms)
            return vh_error_set(err, VH_EINVAL, "schedule: step %zu: '%.*s' is longer than 30 days",
                                step, (int)len, s);
        *out = v * units[u].ms;
        return 0;
    }
    return vh_error_set(err, VH_EINVAL,
                        "schedule: step %zu: expected a delay like 0, 500ms, 10s, 5m or 2h, got "
                        "'%.*s'",
                        step, len > 32 ? 32 : (int)len, s);
}

static bool is_blank(char c)
{
    return c == ' ' || c == '\t';
}

int vh_retry_policy_set_schedule(struct vh_retry_policy *p, const char *s, size_t len,
                                 struct vh_error *err)
{
    int64_t delays[VH_RETRY_STEPS_MAX];
    size_t n = 0, pos = 0;
    int rc;

    if (!p || (!s && len))
        return vh_error_set(err, VH_EINVAL, "schedule: missing argument");
    for (;;) {
        size_t start = pos, end;

        while (pos < len && s[pos] != ',')
            pos++;
        end = pos;
        while (start < end && is_blank(s[start]))
            start++;
        while (end > start && is_blank(s[end - 1]))
            end--;
        if (start == end && len == 0)
            return vh_error_set(err, VH_EINVAL, "schedule: no steps");
        if (start == end)
            return vh_error_set(err, VH_EINVAL, "schedule: step %zu is empty", n + 1);
        if (n == VH_RETRY_STEPS_MAX)
            return vh_error_set(err, VH_EINVAL, "schedule: more than %d steps", VH_RETRY_STEPS_MAX);
        rc = parse_delay(s + start, end - start, n + 1, &delays[n], err);
        if (rc < 0)
            return rc;
        n++;
        if (pos == len)
            break;
        pos++; /* the comma */
    }
    memcpy(p->delays_ms, delays, n * sizeof(delays[0]));
    p->steps = n;
    return 0;
}

int vh_retry_policy_check_immediate(const struct vh_retry_policy *p, struct vh_error *err)
{
    if (p->steps < 1 || p->delays_ms[0] != 0)
        return vh_error_set(err, VH_EINVAL,
                            "the first delay must be 0: the first attempt follows at once");
    return 0;
}

int vh_retry_policy_check(const struct vh_retry_policy *p, struct vh_error *err)
{
    size_t i;

    if (!p)
        return vh_error_set(err, VH_EINVAL, "retry policy: missing");
    if (p->steps < 1 || p->steps > VH_RETRY_STEPS_MAX)
        return vh_error_set(err, VH_EINVAL, "retry policy: %zu steps (1 to %d)", p->steps,
                            VH_RETRY_STEPS_MAX);
    for (i = 0; i < p->steps; i++)
        if (p->delays_ms[i] < 0 || p->delays_ms[i] > VH_RETRY_DELAY_MAX_MS)
            return vh_error_set(err, VH_EINVAL, "retry policy: step %zu is out of range", i + 1);
    if (p->timeout_ms < 1 || p->timeout_ms > VH_RETRY_DELAY_MAX_MS)
        return vh_error_set(err, VH_EINVAL, "retry policy: timeout out of range");
    return 0;
}

int vh_retry_policy_format(const struct vh_retry_policy *p, struct vh_buf *out)
{
    struct vh_buf b = VH_BUF_INIT(out->max);
    size_t i, u;
    int rc = 0;

    if (vh_retry_policy_check(p, NULL) < 0)
        return VH_EINVAL;
    for (i = 0; i < p->steps && rc == 0; i++) {
        int64_t ms = p->delays_ms[i];

        if (i > 0)
            rc = vh_buf_addc(&b, ',');
        if (rc == 0 && ms == 0)
            rc = vh_buf_addc(&b, '0');
        for (u = 0; rc == 0 && ms != 0 && u < N_UNITS; u++) {
            if (ms % units[u].ms == 0) {
                rc = vh_buf_addf(&b, "%lld%s", (long long)(ms / units[u].ms), units[u].name);
                break;
            }
        }
    }
    /* Built aside and appended whole, so a failure leaves `out` as it was. */
    if (rc == 0)
        rc = vh_buf_add(out, b.data ? b.data : "", b.len);
    vh_buf_release(&b);
    return rc;
}

int64_t vh_retry_policy_delay_ms(const struct vh_retry_policy *p, unsigned attempt)
{
    if (!p || attempt == 0 || attempt > p->steps || attempt > VH_RETRY_STEPS_MAX)
        return -1;
    return p->delays_ms[attempt - 1];
}

/* ---- the state machine ----------------------------------------------------------------------- */

static const char *const state_names[] = {
    [VH_DELIVERY_PENDING] = "pending",     [VH_DELIVERY_IN_FLIGHT] = "in_flight",
    [VH_DELIVERY_SUCCEEDED] = "succeeded", [VH_DELIVERY_ABANDONED] = "abandoned",
    [VH_DELIVERY_CANCELED] = "canceled",
};

#define N_STATES (sizeof(state_names) / sizeof(state_names[0]))

/* legal[from] has bit `to` set for each legal move (the table in policy.h). */
static const unsigned legal[N_STATES] = {
    [VH_DELIVERY_PENDING] = 1u << VH_DELIVERY_IN_FLIGHT | 1u << VH_DELIVERY_CANCELED,
    [VH_DELIVERY_IN_FLIGHT] = 1u << VH_DELIVERY_SUCCEEDED | 1u << VH_DELIVERY_PENDING |
                              1u << VH_DELIVERY_ABANDONED | 1u << VH_DELIVERY_CANCELED,
    [VH_DELIVERY_SUCCEEDED] = 0,
    [VH_DELIVERY_ABANDONED] = 1u << VH_DELIVERY_PENDING,
    [VH_DELIVERY_CANCELED] = 1u << VH_DELIVERY_PENDING,
};

const char *vh_delivery_state_name(enum vh_delivery_state s)
{
    if ((unsigned)s >= N_STATES)
        return "unknown";
    return state_names[s];
}

int vh_delivery_state_parse(const char *name, size_t len, enum vh_delivery_state *out,
                            struct vh_error *err)
{
    size_t i;

    for (i = 0; name && i < N_STATES; i++) {
        if (name_is(name, len, state_names[i])) {
            *out = (enum vh_delivery_state)i;
            return 0;
        }
    }
    return vh_error_set(err, VH_EINVAL, "unknown delivery state '%.*s'", len > 64 ? 64 : (int)len,
                        name ? name : "");
}

int vh_delivery_transition(enum vh_delivery_state from, enum vh_delivery_state to,
                           struct vh_error *err)
{
    if ((unsigned)from < N_STATES && (unsigned)to < N_STATES && (legal[from] & (1u << to)))
        return 0;
    return vh_error_set(err, VH_ESTATE, "delivery: illegal transition '%s' -> '%s'",
                        vh_delivery_state_name(from), vh_delivery_state_name(to));
}

int vh__delivery_on_attempt(struct vh_delivery *d, const struct vh_attempt *a, int64_t now_ms,
                            const struct vh_retry_policy *p, struct vh_error *err)
{
    struct vh_delivery next;
    int rc;

    if (!d || !a)
        return vh_error_set(err, VH_EINVAL, "delivery: missing argument");
    rc = vh_retry_policy_check(p, err);
    if (rc < 0)
        return rc;
    if (d->state != VH_DELIVERY_IN_FLIGHT)
        return vh_error_set(err, VH_ESTATE, "delivery: attempt reported while '%s'",
                            vh_delivery_state_name(d->state));
    if (a->number != d->attempts + 1)
        return vh_error_set(err, VH_ESTATE, "delivery: attempt %u reported after %u attempts",
                            a->number, d->attempts);
    next = *d;
    if (a->result == VH_ATTEMPT_OK) {
        next.state = VH_DELIVERY_SUCCEEDED;
        next.attempts++;
        next.next_attempt_ms = 0;
    } else if (a->result == VH_ATTEMPT_INTERRUPTED) {
        next.state = VH_DELIVERY_PENDING;
        next.next_attempt_ms = now_ms;
    } else if (a->result == VH_ATTEMPT_INTERNAL) {
        next.state = VH_DELIVERY_PENDING;
        next.next_attempt_ms = now_ms + VH_RETRY_INTERNAL_DELAY_MS;
    } else if (d->attempts + 1 < p->steps) {
        /* delays_ms[attempts + 1] is the wait before attempt attempts + 2. */
        next.state = VH_DELIVERY_PENDING;
        next.attempts++;
        next.next_attempt_ms = now_ms + p->delays_ms[next.attempts];
    } else {
        next.state = VH_DELIVERY_ABANDONED;
        next.attempts++;
        next.next_attempt_ms = 0;
    }
    rc = vh_delivery_transition(d->state, next.state, err);
    if (rc < 0)
        return rc;
    *d = next;
    return 0;
}

/* ---- the destination-address rule ------------------------------------------------------------ */

/* An IPv4 prefix: the address in host order and the prefix length. */
struct v4net {
    uint32_t addr;
    unsigned bits;
};

/* IANA's IPv4 special-purpose registry, less the globally reachable anycast entries. */
static const struct v4net v4_blocked[] = {
    {0x00000000u, 8},  /* 0.0.0.0/8 "this network", the unspecified address */
    {0x0a000000u, 8},  /* 10.0.0.0/8 private (RFC 1918) */
    {0x64400000u, 10}, /* 100.64.0.0/10 shared address space, CGNAT (RFC 6598) */
    {0x7f000000u, 8},  /* 127.0.0.0/8 loopback */
    {0xa9fe0000u, 16}, /* 169.254.0.0/16 link-local; 169.254.169.254 is cloud metadata */
    {0xac100000u, 12}, /* 172.16.0.0/12 private */
    {0xc0000000u, 24}, /* 192.0.0.0/24 IETF protocol assignments */
    {0xc0000200u, 24}, /* 192.0.2.0/24 TEST-NET-1 */
    {0xc0586300u, 24}, /* 192.88.99.0/24 deprecated 6to4 relay anycast */
    {0xc0a80000u, 16}, /* 192.168.0.0/16 private */
    {0xc6120000u, 15}, /* 198.18.0.0/15 benchmarking */
    {0xc6336400u, 24}, /* 198.51.100.0/24 TEST-NET-2 */
    {0xcb007100u, 24}, /* 203.0.113.0/24 TEST-NET-3 */
    {0xe0000000u, 4},  /* 224.0.0.0/4 multicast */
    {0xf0000000u, 4},  /* 240.0.0.0/4 reserved, and 255.255.255.255 broadcast */
};

bool vh__ipv4_is_blocked(const unsigned char a[4])
{
    uint32_t v = (uint32_t)a[0] << 24 | (uint32_t)a[1] << 16 | (uint32_t)a[2] << 8 | a[3];
    size_t i;

    for (i = 0; i < sizeof(v4_blocked) / sizeof(v4_blocked[0]); i++) {
        uint32_t mask = 0xffffffffu << (32 - v4_blocked[i].bits);

        if ((v & mask) == v4_blocked[i].addr)
            return true;
    }
    return false;
}

/* Whether the first `bits` bits of `a` equal those of `prefix` (16 bytes each). */
static bool v6_in(const unsigned char a[16], const unsigned char prefix[16], unsigned bits)
{
    unsigned whole = bits / 8, rest = bits % 8;

    if (memcmp(a, prefix, whole) != 0)
        return false;
    if (rest == 0)
        return true;
    return ((a[whole] ^ prefix[whole]) & (0xffu << (8 - rest)) & 0xffu) == 0;
}

/* An IPv6 prefix whose low 32 bits of the address (or bytes 2..5, 6to4) hold an IPv4 one. */
static const unsigned char v6_mapped[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
static const unsigned char v6_translated[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
static const unsigned char v6_nat64[16] = {0x00, 0x64, 0xff, 0x9b};
static const unsigned char v6_6to4[16] = {0x20, 0x02};

/* Blocked whole, inside 2000::/3 or not (the rest outside 2000::/3 is blocked anyway). */
static const struct v6net {
    unsigned char prefix[16];
    unsigned bits;
} v6_blocked[] = {
    {{0}, 96},                            /* ::/96 IPv4-compatible (deprecated), :: and ::1 */
    {{0x00, 0x64, 0xff, 0x9b, 0, 1}, 48}, /* 64:ff9b:1::/48 local-use NAT64 */
    {{0x20, 0x01}, 23},                   /* 2001::/23 IETF protocol assignments, Teredo */
    {{0x20, 0x01, 0x0d, 0xb8}, 32},       /* 2001:db8::/32 documentation */
    {{0x3f, 0xff}, 20},                   /* 3fff::/20 documentation (RFC 9637) */
    {{0x5f, 0x00}, 16},                   /* 5f00::/16 segment routing SIDs (RFC 9602) */
};

bool vh__ipv6_is_blocked(const unsigned char a[16])
{
    size_t i;

    /* Addresses that carry an IPv4 address are judged by it. */
    if (v6_in(a, v6_mapped, 96) || v6_in(a, v6_translated, 96) || v6_in(a, v6_nat64, 96))
        return vh__ipv4_is_blocked(a + 12);
    if (v6_in(a, v6_6to4, 16))
        return vh__ipv4_is_blocked(a + 2);
    for (i = 0; i < sizeof(v6_blocked) / sizeof(v6_blocked[0]); i++)
        if (v6_in(a, v6_blocked[i].prefix, v6_blocked[i].bits))
            return true;
    /*
     * Only 2000::/3 is global unicast; the rest is loopback, ULA, link-local, multicast or
     * not allocated.
     */
    return (a[0] & 0xe0) != 0x20;
}

bool vh__addr_is_blocked(const struct sockaddr *sa, size_t len)
{
    struct sockaddr_in in4;
    struct sockaddr_in6 in6;

    if (!sa || len < sizeof(sa_family_t))
        return true;
    if (sa->sa_family == AF_INET && len >= sizeof(in4)) {
        memcpy(&in4, sa, sizeof(in4));
        return vh__ipv4_is_blocked((const unsigned char *)&in4.sin_addr.s_addr);
    }
    if (sa->sa_family == AF_INET6 && len >= sizeof(in6)) {
        memcpy(&in6, sa, sizeof(in6));
        return vh__ipv6_is_blocked(in6.sin6_addr.s6_addr);
    }
    return true;
}

bool vh__clock_watch_allows(struct vh__clock_watch *w, int64_t wall_ms, int64_t mono_ms,
                            int64_t hold_ms, int64_t *step_ms)
{
    int64_t step = 0;

    if (w->started) {
        step = (wall_ms - w->wall_ms) - (mono_ms - w->mono_ms);
        if (step > VH__CLOCK_STEP_MS)
            w->hold_until_mono = mono_ms + hold_ms;
        else
            step = 0;
    }
    w->started = true;
    w->wall_ms = wall_ms;
    w->mono_ms = mono_ms;
    *step_ms = step;
    return mono_ms >= w->hold_until_mono;
}

void vh__attempt_window(int64_t lease_until_ms, int64_t now_ms, int64_t timeout_ms,
                        int64_t margin_ms, int64_t *start_by_ms, int64_t *timeout_ms_out)
{
    int64_t left = lease_until_ms - margin_ms;

    if (timeout_ms <= left - now_ms - VH__ATTEMPT_QUEUE_MS) {
        *start_by_ms = left - timeout_ms;
        *timeout_ms_out = timeout_ms;
    } else if (left - now_ms - VH__ATTEMPT_QUEUE_MS >= 1000) {
        *start_by_ms = now_ms + VH__ATTEMPT_QUEUE_MS;
        *timeout_ms_out = left - *start_by_ms;
    } else {
        *start_by_ms = 1; /* long past: the engine does not start it */
        *timeout_ms_out = timeout_ms;
    }
}
