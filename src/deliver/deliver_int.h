/*
 * Private to the library: the pure rules behind the delivery engine (policy.c), shared by
 * engine.c, the dispatcher that glues the engine to the store, and the unit tests.
 */
#ifndef VH_DELIVER_INT_H
#define VH_DELIVER_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sys/socket.h>

#include <vocohook/error.h>
#include <vocohook/policy.h>

/*
 * Moves an in-flight delivery on after attempt `a` ended at `now_ms`, under `p`:
 *   OK                     -> succeeded; attempts + 1; next_attempt_ms = 0
 *   INTERRUPTED            -> pending; attempts unchanged; due at now_ms
 *   INTERNAL               -> pending; attempts unchanged; due at now_ms +
 *                             VH_RETRY_INTERNAL_DELAY_MS (no busy loop on a lasting fault)
 *   any other (a failure)  -> attempts + 1; pending and due at now_ms + the next step's delay
 *                             while steps are left, abandoned (next_attempt_ms = 0) after the last
 * `a->number` must be `d->attempts + 1` (the attempt the delivery was claimed for). Returns 0,
 * VH_ESTATE (the delivery is not in flight, or the numbers disagree) or VH_EINVAL (an invalid
 * policy or a NULL argument); on failure `*d` is unchanged.
 */
int vh__delivery_on_attempt(struct vh_delivery *d, const struct vh_attempt *a, int64_t now_ms,
                            const struct vh_retry_policy *p, struct vh_error *err);

/*
 * How long a job may wait in the engine's queue before its attempt starts, when the
 * endpoint's own timeout is too long for the attempt to fit its lease otherwise.
 */
#define VH__ATTEMPT_QUEUE_MS INT64_C(60000)

/*
 * When an attempt may start and how long it may take, so that it ends before its claim's
 * lease does: for a job claimed until `lease_until_ms`, submitted at `now_ms`, to an endpoint
 * whose timeout is `timeout_ms` (> 0); `margin_ms` is kept free at the lease's end for the
 * record after the attempt. Let `left` be lease_until_ms - margin_ms.
 *   - `timeout_ms` fits with at least VH__ATTEMPT_QUEUE_MS to spare: the timeout stays, and
 *     the attempt must start by left - timeout_ms.
 *   - Otherwise (an endpoint timeout longer than the lease allows) the attempt must start by
 *     now_ms + VH__ATTEMPT_QUEUE_MS, and its timeout is cut to what is left after that.
 *   - Less than a second would be left: the attempt must not start (*start_by_ms is 1, long
 *     past); the engine reports such a job interrupted, and it is claimed again with a new
 *     lease.
 * Whenever it may start: *timeout_ms_out <= timeout_ms, and *start_by_ms + *timeout_ms_out
 * <= left.
 */
void vh__attempt_window(int64_t lease_until_ms, int64_t now_ms, int64_t timeout_ms,
                        int64_t margin_ms, int64_t *start_by_ms, int64_t *timeout_ms_out);

/*
 * Watches the wall clock against the monotonic one, for lease recovery: leases are wall-clock
 * times (shared by nodes through the store), so a step of the wall clock forward makes every
 * claim held at that moment look expired before its time. Zero-initialise; feed it a reading
 * of both clocks before each recovery.
 */
struct vh__clock_watch {
    bool started;
    int64_t wall_ms, mono_ms; /* the last reading */
    int64_t hold_until_mono;  /* no recovery before this (monotonic) */
};

/* A difference between the two clocks' progress that counts as a step, not a drift. */
#define VH__CLOCK_STEP_MS INT64_C(5000)

/*
 * Feeds a reading (`wall_ms`, `mono_ms`). When the wall clock moved forward more than
 * VH__CLOCK_STEP_MS further than the monotonic one since the last reading, sets *step_ms to
 * by how much (else 0) and holds recovery for `hold_ms` (a lease: every claim made before
 * the step has ended or is truly lost by then). A step backward only delays expiries, and
 * holds nothing. Returns whether a lease recovery may run now.
 */
bool vh__clock_watch_allows(struct vh__clock_watch *w, int64_t wall_ms, int64_t mono_ms,
                            int64_t hold_ms, int64_t *step_ms);

/*
 * The SSRF guard: whether a delivery must not connect to this address, because it is not
 * a public unicast destination. IPv4: 0/8, 10/8, 100.64/10 (CGNAT), 127/8, 169.254/16 (link-
 * local, cloud metadata), 172.16/12, 192.0.0/24, 192.0.2/24, 192.88.99/24, 192.168/16,
 * 198.18/15, 198.51.100/24, 203.0.113/24, 224/4 (multicast), 240/4 (reserved, broadcast).
 * IPv6: only 2000::/3 (global unicast) and addresses embedding an IPv4 address are
 * considered, everything else (::, ::1, fc00::/7, fe80::/10, ff00::/8, ...) is blocked; in
 * 2000::/3, 2001::/23, 2001:db8::/32, 3fff::/20 and 5f00::/16 are blocked; IPv4-mapped
 * (::ffff:0:0/96), IPv4-translated (::ffff:0:0:0/96), NAT64 (64:ff9b::/96) and 6to4
 * (2002::/16) addresses are judged by the IPv4 address inside; the deprecated IPv4-compatible
 * ::/96 and the local-use NAT64 64:ff9b:1::/48 are blocked whole. Any other family, or a
 * `len` too short for the family, is blocked.
 */
bool vh__addr_is_blocked(const struct sockaddr *sa, size_t len);

/* The IPv4 rule alone, for the 4 address bytes in network order. */
bool vh__ipv4_is_blocked(const unsigned char a[4]);

/* The IPv6 rule alone, for the 16 address bytes in network order. */
bool vh__ipv6_is_blocked(const unsigned char a[16]);

#endif
