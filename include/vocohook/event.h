/*
 * The session model and its JSON: the producer's ingest input, and the
 * `session.completed` webhook payload of the seed contract (SPEC §2, §5, §8).
 *
 * Three parsers share one validator, so a rule holds everywhere:
 * - vh_session_parse:  a bare `session` object (what `vocohook render` reads);
 *                      error paths look like `transcript[2].role`;
 * - vh_ingest_parse:   `{"partner_id": …, "session": {…}}` (the ingest API body);
 *                      paths look like `session.transcript[2].role`;
 * - vh_event_parse:    a webhook payload `{"event","timestamp","data"}`;
 *                      paths look like `data.transcript[2].role`.
 * Every error is VH_EINVAL (or VH_ETOOBIG for a bound, VH_ENOMEM) with a message
 * `<path>: <reason>`, for example `data.transcript[2].role: must be "user" or "bot"`.
 * Syntax errors (bad JSON, invalid UTF-8, duplicate keys, excess depth) name the byte
 * offset instead: `json: invalid UTF-8 at byte 17`.
 *
 * The encoder writes the payload byte for byte as SPEC §2 says: compact, keys in the
 * seed's order, `latency_ms` null on user turns, an integer or absent on bot turns,
 * `credits_used` as the shortest decimal that round-trips.
 *
 * All functions are pure (no I/O, no clock) and thread-safe on distinct objects.
 */
#ifndef VOCOHOOK_EVENT_H
#define VOCOHOOK_EVENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <vocohook/buf.h>
#include <vocohook/common.h>
#include <vocohook/error.h>

/* Bounds on every input (SPEC §8). Lengths are in bytes of UTF-8. */
#define VH_BODY_MAX       (1024 * 1024) /* a request body or payload */
#define VH_JSON_DEPTH_MAX 32            /* nesting of arrays and objects */
#define VH_NAME_MAX       256           /* agent_name */
#define VH_CONTENT_MAX    65536         /* transcript[].content */
#define VH_TURNS_MAX      10000         /* transcript entries */
#define VH_URL_MAX        4096          /* recording_url */
#define VH_OBJECT_KEY_MAX 1024          /* recording_key (S3's own limit) */
#define VH_DURATION_MAX   604800        /* duration_seconds: one week */
#define VH_CREDITS_MAX    1e9           /* credits_used */
#define VH_LATENCY_MAX    3600000       /* any latency, ms: one hour */
#define VH_EVENT_TYPE     "session.completed"

enum vh_role { VH_ROLE_USER = 1, VH_ROLE_BOT = 2 };

enum vh_call_status {
    VH_CALL_COMPLETED = 1, /* connected and ended normally */
    VH_CALL_FAILED,        /* could not be placed */
    VH_CALL_NO_ANSWER,     /* recipient did not answer */
    VH_CALL_BUSY,          /* line busy */
    VH_CALL_CANCELED       /* canceled before connecting */
};

struct vh_turn {
    enum vh_role role;
    char *content;      /* owned; UTF-8, NUL-terminated, no NUL inside */
    size_t content_len; /* bytes, excluding the NUL */
    int64_t ts_ms;      /* the turn's timestamp */
    bool has_latency;   /* bot turns only: latency_ms present (false: key omitted) */
    int64_t latency_ms; /* valid when has_latency */
};

struct vh_latency {
    int64_t min_ms;
    int64_t max_ms;
    int64_t avg_ms;
};

struct vh_call {
    char *call_id;     /* owned; an incoming id */
    char *from_number; /* owned; E.164 */
    char *to_number;   /* owned; E.164 */
    enum vh_call_status status;
    /* direction is always "outbound" (the only value the contract knows) */
};

struct vh_session {
    char *session_id; /* owned; 1-64 of [A-Za-z0-9_-] */
    char *agent_id;   /* owned; same form */
    char *agent_name; /* owned; 1..VH_NAME_MAX bytes */
    int64_t duration_seconds;
    double credits_used; /* finite, 0..VH_CREDITS_MAX */
    struct vh_turn *turns;
    size_t n_turns;
    bool has_latency; /* false: the encoder derives it from the bot turns */
    struct vh_latency latency;
    char *recording_url; /* owned; NULL encodes as null */
    char *recording_key; /* owned; ingest only: an S3 key the sender presigns */
    bool has_call;       /* false encodes as "call":null */
    struct vh_call call;
};

struct vh_ingest {
    char *partner_id; /* owned */
    struct vh_session *session;
};

struct vh_event {
    int64_t ts_ms; /* the payload's top-level timestamp */
    struct vh_session *session;
};

enum vh_parse_flags {
    /*
     * Accept and ignore keys the contract does not name (the receiver: newer senders add
     * fields). The type and value of every known field are still checked.
     */
    VH_PARSE_ALLOW_UNKNOWN = 1 << 0
};

/*
 * Parses and validates a bare session object of the ingest input. On success stores a new
 * session in `*out` (caller frees with vh_session_free) and returns 0; on failure `*out` is
 * untouched. `flags`: 0 or VH_PARSE_ALLOW_UNKNOWN.
 */
VH_API int vh_session_parse(const char *json, size_t len, unsigned flags, struct vh_session **out,
                            struct vh_error *err);

/* Parses an ingest API body (`partner_id` + `session`); unknown keys are rejected. */
VH_API int vh_ingest_parse(const char *json, size_t len, struct vh_ingest **out,
                           struct vh_error *err);

/*
 * Parses and validates a `session.completed` webhook payload. Strict by default (what
 * `vocohook validate` checks); VH_PARSE_ALLOW_UNKNOWN for receivers.
 */
VH_API int vh_event_parse(const char *json, size_t len, unsigned flags, struct vh_event **out,
                          struct vh_error *err);

/*
 * Appends the webhook payload for `s`, accepted at `event_ts_ms`, to `out`. Uses the
 * session's latency when it has one, else vh_session_derive_latency(). The session must
 * have no recording_key left unresolved (the sender presigns it into recording_url first):
 * that is VH_EINVAL. The payload is at most VH_BODY_MAX bytes, the bound receivers put on a
 * request body; rendering adds to the input (the envelope, `"latency_ms":null` on user turns,
 * a presigned URL), so a session within its own bound can pass it. Returns 0, VH_EINVAL,
 * VH_ENOMEM or VH_ETOOBIG (past VH_BODY_MAX or out's bound); on failure `out` is as it was.
 */
VH_API int vh_session_render(const struct vh_session *s, int64_t event_ts_ms, struct vh_buf *out,
                             struct vh_error *err);

/*
 * The latency stats of the bot turns that carry latency_ms: min, max and the mean rounded
 * half up. All three 0 when there are none.
 */
VH_API void vh_session_derive_latency(const struct vh_session *s, struct vh_latency *out);

/*
 * Writes `v` as JavaScript's Number#toString would (the shortest decimal that round-trips;
 * `2.12`, `100`, `1e+21`, `1e-7`) with a NUL. `v` must be finite. Returns the length.
 */
#define VH_NUMBER_MAX 32
VH_API size_t vh_number_format(double v, char out[VH_NUMBER_MAX]);

/* The wire name of a status ("no_answer") and back; NULL / 0 for unknown input. */
VH_API const char *vh_call_status_name(enum vh_call_status st);
VH_API enum vh_call_status vh_call_status_from_name(const char *s, size_t len);

/* Free functions; NULL is a no-op. */
VH_API void vh_session_free(struct vh_session *s);
VH_API void vh_ingest_free(struct vh_ingest *in);
VH_API void vh_event_free(struct vh_event *ev);

#endif
