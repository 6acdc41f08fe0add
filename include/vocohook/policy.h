/*
 * The delivery model (SPEC §3), as pure code: what one attempt produced, the retry policy
 * that decides when the next one is due, and the state machine every delivery follows.
 * Nothing here does I/O or reads a clock: the current time is always a parameter, so the
 * same rules serve the engine, the store and the tests. Thread-safe (no shared state).
 *
 * The delivery engine (engine.h) fills a `struct vh_attempt` for every request it makes;
 * the dispatcher feeds it to the policy, which moves the delivery on, and persists both.
 */
#ifndef VOCOHOOK_POLICY_H
#define VOCOHOOK_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <vocohook/buf.h>
#include <vocohook/common.h>
#include <vocohook/error.h>

/* ---- attempts --------------------------------------------------------------------------- */

#define VH_ATTEMPT_HEAD_MAX  1024  /* response body bytes kept with an attempt */
#define VH_ATTEMPT_READ_MAX  65536 /* response body bytes read at most; the rest is dropped */
#define VH_ATTEMPT_ERROR_MAX 256   /* bytes of an attempt's error line, NUL included */

/*
 * How an attempt ended. Every value but OK is a failure of the receiver or of the path to
 * it (a result, not a vh_err: STYLE §3), except INTERRUPTED and INTERNAL, which are ours and
 * do not count as attempts (vh_attempt_result_counts).
 */
enum vh_attempt_result {
    VH_ATTEMPT_OK = 0,           /* a 2xx status, whatever the body */
    VH_ATTEMPT_HTTP_STATUS = 1,  /* a complete response with a status other than 2xx or 3xx */
    VH_ATTEMPT_TIMEOUT = 2,      /* the attempt's timeout passed first */
    VH_ATTEMPT_CONNECT = 3,      /* the TCP connection was refused or could not be made */
    VH_ATTEMPT_DNS = 4,          /* the host name did not resolve */
    VH_ATTEMPT_TLS = 5,          /* TLS failed: handshake, certificate or host name check */
    VH_ATTEMPT_RESET = 6,        /* the connection broke (or closed) before the response ended */
    VH_ATTEMPT_PROTOCOL = 7,     /* the receiver answered something that is not valid HTTP */
    VH_ATTEMPT_REDIRECT = 8,     /* a 3xx status: redirects are never followed (SPEC §3) */
    VH_ATTEMPT_BLOCKED = 9,      /* refused by our safety rules: scheme or destination address */
    VH_ATTEMPT_INTERRUPTED = 10, /* cut short (or never started) by our shutdown */
    VH_ATTEMPT_INTERNAL = 11     /* our side failed before the request left (out of memory) */
};

/*
 * One attempt, as the engine reports it. Plain data: copy it freely. `response_head` holds
 * the first `response_len` bytes of the response body and a NUL after them (the body itself
 * may contain NULs); `error` is "" or one line saying what failed (libcurl's message, or the
 * blocked address), never a secret.
 */
struct vh_attempt {
    unsigned number;               /* 1-based attempt number, as submitted */
    enum vh_attempt_result result; /* how it ended */
    int http_status;               /* the response status; 0 when no status line arrived */
    int64_t started_ms;            /* wall clock when it started: its X-Webhook-Timestamp */
    int64_t duration_ms;           /* start to end, measured on the monotonic clock */
    bool reused_connection;        /* sent on a connection an earlier attempt opened */
    size_t response_read;          /* body bytes read, at most VH_ATTEMPT_READ_MAX */
    size_t response_len;           /* bytes in response_head, at most VH_ATTEMPT_HEAD_MAX */
    char response_head[VH_ATTEMPT_HEAD_MAX + 1];
    char error[VH_ATTEMPT_ERROR_MAX];
};

/*
 * A short stable name, as stored and shown in the delivery history: "ok", "http_status",
 * "timeout", "connect", "dns", "tls", "reset", "protocol", "redirect",
 * "blocked_destination", "interrupted", "internal"; "unknown" for anything else.
 */
VH_API const char *vh_attempt_result_name(enum vh_attempt_result r);

/*
 * The result named `name` (`len` bytes, as vh_attempt_result_name writes it). Returns 0 or
 * VH_EINVAL; `*out` is written only on success.
 */
VH_API int vh_attempt_result_parse(const char *name, size_t len, enum vh_attempt_result *out,
                                   struct vh_error *err);

/*
 * Whether an attempt with this result used up one step of the schedule. False only for
 * INTERRUPTED and INTERNAL: the receiver never judged the request, so it is made again.
 */
VH_API bool vh_attempt_result_counts(enum vh_attempt_result r);

/* ---- the retry policy ----------------------------------------------------------------- */

#define VH_RETRY_STEPS_MAX          16 /* attempts in a schedule; the same bound as config.h */
#define VH_RETRY_DELAY_MAX_MS       INT64_C(2592000000) /* one step at most: 30 days */
#define VH_RETRY_TIMEOUT_DEFAULT_MS INT64_C(10000)      /* SPEC §3: 10 s per attempt */
#define VH_RETRY_INTERNAL_DELAY_MS  INT64_C(1000)       /* wait after an INTERNAL failure */

/*
 * When the attempts of a delivery are made, and how long each may take. `delays_ms[i]` is
 * the wait before attempt i+1: for the first attempt it counts from the delivery's creation,
 * for the others from the end of the attempt before. SPEC §3's default is {0, 1000, 2000,
 * 4000}: at once, then after 1 s, 2 s and 4 s, four attempts in all. Caller-allocated;
 * copy it freely.
 */
struct vh_retry_policy {
    int64_t delays_ms[VH_RETRY_STEPS_MAX]; /* each 0..VH_RETRY_DELAY_MAX_MS */
    size_t steps;                          /* 1..VH_RETRY_STEPS_MAX attempts in all */
    int64_t timeout_ms;                    /* per attempt, > 0 */
};

/* Fills `p` with SPEC §3's defaults: 0,1s,2s,4s and a 10 s timeout. */
VH_API void vh_retry_policy_init(struct vh_retry_policy *p);

/*
 * Parses a schedule, `len` bytes of comma-separated delays with a unit each (`ms`, `s`, `m`,
 * `h`; a bare `0` is zero), spaces around items allowed: "0,1s,2s,4s", "5s,5m,30m,2h,5h".
 * One to VH_RETRY_STEPS_MAX steps, each at most VH_RETRY_DELAY_MAX_MS. Steps may decrease,
 * and the first may be more than 0 (a delivery that waits before its first attempt). Sets
 * delays_ms and steps; the timeout is left alone. Returns 0, or VH_EINVAL naming the step
 * and the reason; on failure `p` is unchanged.
 */
VH_API int vh_retry_policy_set_schedule(struct vh_retry_policy *p, const char *s, size_t len,
                                        struct vh_error *err);

/*
 * The contract's rule for a configured schedule (SPEC §3): the first attempt follows the
 * event at once, so the first delay must be 0. Returns 0 or VH_EINVAL ("the first delay
 * must be 0: the first attempt follows at once").
 */
VH_API int vh_retry_policy_check_immediate(const struct vh_retry_policy *p, struct vh_error *err);

/*
 * Appends the schedule in the form vh_retry_policy_set_schedule reads, each delay in its
 * largest exact unit ("0,1s,2s,4s", "1500ms,5m"). Returns 0, VH_EINVAL (an invalid
 * policy), VH_ENOMEM or VH_ETOOBIG; on failure the buffer is as it was.
 */
VH_API int vh_retry_policy_format(const struct vh_retry_policy *p, struct vh_buf *out);

/*
 * Checks `p`: steps in 1..VH_RETRY_STEPS_MAX, each delay in 0..VH_RETRY_DELAY_MAX_MS, a
 * timeout in 1..VH_RETRY_DELAY_MAX_MS. Returns 0 or VH_EINVAL.
 */
VH_API int vh_retry_policy_check(const struct vh_retry_policy *p, struct vh_error *err);

/*
 * The wait before attempt `attempt` (1-based): delays_ms[attempt - 1]. Returns -1 when the
 * schedule has no such attempt (0, or past the last step).
 */
VH_API int64_t vh_retry_policy_delay_ms(const struct vh_retry_policy *p, unsigned attempt);

/* ---- the delivery state machine ---------------------------------------------------------- */

/*
 * The states of one delivery (one event to one endpoint). Legal moves (vh_delivery_transition):
 *
 *   pending   -> in_flight  claimed for an attempt
 *   pending   -> canceled   the endpoint was disabled or deleted
 *   in_flight -> succeeded  the attempt got a 2xx
 *   in_flight -> pending    the attempt failed with steps left, was interrupted, or the
 *                           process died mid-attempt and recovery resumes it
 *   in_flight -> abandoned  the last step of the schedule failed
 *   in_flight -> canceled   the endpoint went away while an attempt was out
 *   abandoned -> pending    a manual retry (POST /deliveries/{id}/retry)
 *   canceled  -> pending    a manual retry after the endpoint is enabled again
 *
 * A succeeded delivery is final: sending an event again is a replay, which creates new
 * deliveries. The numbers are stable (they may be stored).
 */
enum vh_delivery_state {
    VH_DELIVERY_PENDING = 0,   /* waiting for its next attempt, due at next_attempt_ms */
    VH_DELIVERY_IN_FLIGHT = 1, /* claimed: an attempt is out; a crash leaves it here */
    VH_DELIVERY_SUCCEEDED = 2, /* final: an attempt got a 2xx */
    VH_DELIVERY_ABANDONED = 3, /* final unless retried by hand: every step failed */
    VH_DELIVERY_CANCELED = 4   /* the endpoint was disabled or deleted before success */
};

/* "pending", "in_flight", "succeeded", "abandoned", "canceled"; "unknown" otherwise. */
VH_API const char *vh_delivery_state_name(enum vh_delivery_state s);

/* The state named `name` (`len` bytes). Returns 0 or VH_EINVAL; `*out` written on success. */
VH_API int vh_delivery_state_parse(const char *name, size_t len, enum vh_delivery_state *out,
                                   struct vh_error *err);

/*
 * Whether `from` -> `to` is one of the legal moves above. Returns 0, or VH_ESTATE with
 * "delivery: illegal transition 'succeeded' -> 'pending'" (a state to itself is illegal too).
 */
VH_API int vh_delivery_transition(enum vh_delivery_state from, enum vh_delivery_state to,
                                  struct vh_error *err);

/*
 * The scheduling part of a delivery: what the policy reads and moves on. The clock base of
 * next_attempt_ms is the caller's (the store keeps wall-clock milliseconds); the policy only
 * adds delays to the `now_ms` it is given.
 */
struct vh_delivery {
    enum vh_delivery_state state;
    unsigned attempts;       /* attempts made that counted (0 before the first) */
    int64_t next_attempt_ms; /* pending: when the next attempt is due; 0 once final */
};

#endif
