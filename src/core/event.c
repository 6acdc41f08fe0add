/*
 * The pure half of the session model: the payload encoder, credits formatting, latency
 * derivation, status names and the free functions. The parsers are in json.c.
 *
 * The encoder is written by hand rather than with a JSON library's printer: the body is
 * signed, so every byte must be under our control (key order, no spaces, escaping exactly
 * like JavaScript's JSON.stringify, reals as the shortest decimal that round-trips, where
 * jansson's JSON_REAL_PRECISION(17) gives 2.1200000000000001). It also avoids building a
 * tree just to print it: one pass over the struct, one reservation.
 */
#include <vocohook/event.h>

#include <vocohook/json.h>

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vocohook/alloc.h>
#include <vocohook/clock.h>

#include "core/utf8_int.h"
#include "core/banned.h"

/* --- names ---------------------------------------------------------------------------- */

static const char *const status_names[] = {
    [VH_CALL_COMPLETED] = "completed", [VH_CALL_FAILED] = "failed",
    [VH_CALL_NO_ANSWER] = "no_answer", [VH_CALL_BUSY] = "busy",
    [VH_CALL_CANCELED] = "canceled",
};

const char *vh_call_status_name(enum vh_call_status st)
{
    if (st < VH_CALL_COMPLETED || st > VH_CALL_CANCELED)
        return NULL;
    return status_names[st];
}

enum vh_call_status vh_call_status_from_name(const char *s, size_t len)
{
    int st;

    for (st = VH_CALL_COMPLETED; st <= VH_CALL_CANCELED; st++)
        if (strlen(status_names[st]) == len && memcmp(status_names[st], s, len) == 0)
            return (enum vh_call_status)st;
    return (enum vh_call_status)0;
}

/* --- free functions ------------------------------------------------------------------- */

void vh_session_free(struct vh_session *s)
{
    size_t i;

    if (!s)
        return;
    vh_free(s->session_id);
    vh_free(s->agent_id);
    vh_free(s->agent_name);
    if (s->turns)
        for (i = 0; i < s->n_turns; i++)
            vh_free(s->turns[i].content);
    vh_free(s->turns);
    vh_free(s->recording_url);
    vh_free(s->recording_key);
    vh_free(s->call.call_id);
    vh_free(s->call.from_number);
    vh_free(s->call.to_number);
    vh_free(s);
}

void vh_ingest_free(struct vh_ingest *in)
{
    if (!in)
        return;
    vh_free(in->partner_id);
    vh_session_free(in->session);
    vh_free(in);
}

void vh_event_free(struct vh_event *ev)
{
    if (!ev)
        return;
    vh_session_free(ev->session);
    vh_free(ev);
}

/* --- latency -------------------------------------------------------------------------- */

void vh_session_derive_latency(const struct vh_session *s, struct vh_latency *out)
{
    /*
     * The sum is unsigned so that out-of-contract input (the parsers bound every latency
     * to 0..VH_LATENCY_MAX) gives a wrong answer rather than undefined behaviour.
     */
    uint64_t sum = 0, n = 0, q, r;
    int64_t min = 0, max = 0;
    size_t i;

    for (i = 0; i < s->n_turns; i++) {
        const struct vh_turn *t = &s->turns[i];

        if (t->role != VH_ROLE_BOT || !t->has_latency)
            continue;
        if (n == 0 || t->latency_ms < min)
            min = t->latency_ms;
        if (n == 0 || t->latency_ms > max)
            max = t->latency_ms;
        sum += (uint64_t)t->latency_ms;
        n++;
    }
    if (n == 0) {
        out->min_ms = out->max_ms = out->avg_ms = 0;
        return;
    }
    /* Half up: round(sum / n) with .5 going up, without computing 2 * sum. */
    q = sum / n;
    r = sum % n;
    if (r >= n - r)
        q++;
    out->min_ms = min;
    out->max_ms = max;
    out->avg_ms = (int64_t)q;
}

/* --- numbers -------------------------------------------------------------------------- */

/*
 * The decimal digits of `v` (> 0, finite) in scientific form with `prec` significant
 * digits, as "%.*e" rounds them (to nearest, ties to even: correctly rounded in glibc).
 * Stores the digits without a point in `digits` and returns the decimal exponent.
 */
static int sci_digits(double v, int prec, char digits[20])
{
    char buf[40];
    int i, k = 0;
    long e;

    snprintf(buf, sizeof(buf), "%.*e", prec - 1, v);
    for (i = 0; buf[i] && buf[i] != 'e'; i++)
        if (buf[i] != '.')
            digits[k++] = buf[i];
    digits[k] = '\0';
    e = strtol(buf + i + 1, NULL, 10);
    return (int)e;
}

/* True when the digits d1 d2 … × 10^(exp - k + 1) read back as exactly `v`. */
static bool reads_back(const char *digits, int exp, double v)
{
    char buf[48];

    if (digits[1])
        snprintf(buf, sizeof(buf), "%c.%se%d", digits[0], digits + 1, exp);
    else
        snprintf(buf, sizeof(buf), "%ce%d", digits[0], exp);
    return strtod(buf, NULL) == v;
}

/*
 * Adds one unit in the last place of the decimal digit string `digits` (exponent *exp),
 * carrying; "999" becomes "1000" read as "1" with the exponent one higher.
 */
static void digits_increment(char *digits, int *exp)
{
    size_t k = strlen(digits), i = k;

    while (i > 0) {
        i--;
        if (digits[i] != '9') {
            digits[i]++;
            return;
        }
        digits[i] = '0';
    }
    memmove(digits + 1, digits, k + 1);
    digits[0] = '1';
    (*exp)++;
}

/* Strips trailing zeros (keeping one digit). */
static void digits_trim(char *digits)
{
    size_t k = strlen(digits);

    while (k > 1 && digits[k - 1] == '0')
        digits[--k] = '\0';
}

/*
 * The shortest digit string that reads back as `v` (ECMA-262 Number::toString step 5:
 * smallest k; of those, the closest to v).
 *
 * For a normal v, 15 digits first: a decimal of up to 15 digits that reads back as v is
 * within half an ulp (2^-53 of v) of it, so within half a 15-digit step, so it is the
 * correctly rounded 15-digit form with its zeros stripped. Else 16, then 17 digits (which
 * always read back). Subnormals, whose ulp is large next to them, try every precision.
 *
 * At each precision the correctly rounded candidate is the closest; when it misses, only
 * the next one up can still hit, and only when v is a power of two, whose round-trip
 * interval reaches twice as far up as down: 2^-1017 is 7.120236347223045e-307 in
 * JavaScript, while the rounded 16 digits, ...044, do not read back.
 */
static int shortest_digits(double v, char digits[20])
{
    char up[21];
    int prec, exp = 0, up_exp;

    if (v >= DBL_MIN) {
        exp = sci_digits(v, 15, digits);
        if (reads_back(digits, exp, v)) {
            digits_trim(digits);
            return exp;
        }
    }
    for (prec = v >= DBL_MIN ? 16 : 1; prec <= 17; prec++) {
        exp = sci_digits(v, prec, digits);
        if (reads_back(digits, exp, v))
            break;
        memcpy(up, digits, (size_t)prec + 1);
        up_exp = exp;
        digits_increment(up, &up_exp);
        if (reads_back(up, up_exp, v)) {
            memcpy(digits, up, strlen(up) + 1);
            exp = up_exp;
            break;
        }
    }
    digits_trim(digits); /* a carry may have left zeros */
    return exp;
}

size_t vh_number_format(double v, char out[VH_NUMBER_MAX])
{
    char digits[21];
    char *p = out;
    int k, n, i, e;

    if (isnan(v)) {
        memcpy(out, "NaN", 4);
        return 3;
    }
    if (v == 0) { /* -0 too, as in JavaScript */
        memcpy(out, "0", 2);
        return 1;
    }
    if (v < 0) {
        *p++ = '-';
        v = -v;
    }
    if (isinf(v)) {
        memcpy(p, "Infinity", 9);
        return (size_t)(p - out) + 8;
    }
    /* JavaScript's n: the value is 0.d1d2…dk × 10^n. */
    n = shortest_digits(v, digits) + 1;
    k = (int)strlen(digits);
    if (k <= n && n <= 21) {
        memcpy(p, digits, (size_t)k);
        p += k;
        for (i = k; i < n; i++)
            *p++ = '0';
    } else if (0 < n && n <= 21) {
        memcpy(p, digits, (size_t)n);
        p += n;
        *p++ = '.';
        memcpy(p, digits + n, (size_t)(k - n));
        p += k - n;
    } else if (-6 < n && n <= 0) {
        *p++ = '0';
        *p++ = '.';
        for (i = n; i < 0; i++)
            *p++ = '0';
        memcpy(p, digits, (size_t)k);
        p += k;
    } else {
        *p++ = digits[0];
        if (k > 1) {
            *p++ = '.';
            memcpy(p, digits + 1, (size_t)(k - 1));
            p += k - 1;
        }
        e = n - 1;
        p += snprintf(p, 8, "e%c%d", e < 0 ? '-' : '+', e < 0 ? -e : e);
    }
    *p = '\0';
    return (size_t)(p - out);
}

/* --- the encoder ---------------------------------------------------------------------- */

/*
 * Appends with a sticky error: after the first failure every write is a no-op, so the
 * encoder reads as straight-line code and checks once at the end.
 */
struct writer {
    struct vh_buf *b;
    int rc;               /* 0, or the first failure */
    struct vh_error *err; /* set by fail(); buffer failures get their message at the end */
};

static void put(struct writer *w, const char *p, size_t n)
{
    struct vh_buf *b = w->b;

    if (w->rc < 0)
        return;
    /*
     * The common case after the up-front reservation: no call, no checks beyond these.
     * buf.h does not promise len <= max (a caller may lower max), so that is checked before
     * max - len is taken; a buffer already past its bound goes to vh_buf_add and fails.
     */
    if (b->data && n < b->cap - b->len && b->len <= b->max && n <= b->max - b->len) {
        memcpy(b->data + b->len, p, n);
        b->len += n;
        b->data[b->len] = '\0';
        return;
    }
    w->rc = vh_buf_add(b, p, n);
}

static void put_cstr(struct writer *w, const char *s)
{
    put(w, s, strlen(s));
}

static void put_int(struct writer *w, int64_t v)
{
    char buf[24], *p = buf + sizeof(buf);
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;

    do {
        *--p = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        *--p = '-';
    put(w, p, (size_t)(buf + sizeof(buf) - p));
}

static void put_time(struct writer *w, int64_t ms)
{
    char ts[VH_TIME_LEN + 1];

    vh_time_format(ms, ts); /* the caller checked the range */
    put(w, "\"", 1);
    put(w, ts, VH_TIME_LEN);
    put(w, "\"", 1);
}

static void fail(struct writer *w, const char *field, size_t turn, const char *reason)
{
    if (w->rc < 0)
        return;
    if (turn == SIZE_MAX)
        w->rc = vh_error_set(w->err, VH_EINVAL, "data.%s: %s", field, reason);
    else
        w->rc = vh_error_set(w->err, VH_EINVAL, "data.transcript[%zu].%s: %s", turn, field, reason);
}

/* 0: copy as is; 1: escape; 2: the lead byte of a UTF-8 sequence to check. */
static const unsigned char byte_class[256] = {
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x00 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x10 */
    0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x20: '"' */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x30 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x40 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, /* 0x50: '\\' */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x60 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x70: DEL is copied, as JS does */
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, /* 0x80 */
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, /* 0x90 */
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, /* 0xa0 */
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, /* 0xb0 */
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, /* 0xc0 */
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, /* 0xd0 */
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, /* 0xe0 */
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, /* 0xf0 */
};

/*
 * True when one of the eight bytes is below 0x20, '"', '\\' or 0x80 and above (the bytes
 * byte_class does not copy blindly). Exact as a yes/no: the borrows of the subtractions
 * only run upward from a byte that already matches (Bit Twiddling Hacks, "haszero").
 */
static bool word_needs_care(uint64_t x)
{
    const uint64_t ones = UINT64_C(0x0101010101010101), highs = UINT64_C(0x8080808080808080);
    uint64_t quote = x ^ (ones * '"'), bslash = x ^ (ones * '\\');
    uint64_t below_space = (x - ones * 0x20) & ~x;
    uint64_t is_quote = (quote - ones) & ~quote, is_bslash = (bslash - ones) & ~bslash;

    return ((below_space | is_quote | is_bslash | x) & highs) != 0;
}

/*
 * A JSON string escaped as JSON.stringify does: `"` `\` and the C0 controls (short forms
 * where JSON has them, else \u00xx in lowercase); everything else, '/' and DEL and U+2028
 * included, is copied. Refuses NUL and invalid UTF-8, which no parser of ours accepts.
 */
static void put_string(struct writer *w, const char *str, size_t n, const char *field, size_t turn)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0, run = 0, k;
    char esc[6];

    put(w, "\"", 1);
    while (i < n) {
        unsigned char c;
        uint64_t word;

        /* Most text needs no escape: skip it eight bytes at a time. */
        if (n - i >= 8) {
            memcpy(&word, s + i, 8);
            if (!word_needs_care(word)) {
                i += 8;
                continue;
            }
        }
        c = s[i];
        if (byte_class[c] == 0) {
            i++;
            continue;
        }
        if (byte_class[c] == 2) {
            k = vh__utf8_seq_len(s + i, n - i);
            if (k == 0) {
                fail(w, field, turn, "not valid UTF-8");
                return;
            }
            i += k;
            continue;
        }
        if (c == 0) {
            fail(w, field, turn, "contains a NUL byte");
            return;
        }
        put(w, str + run, i - run);
        esc[0] = '\\';
        k = 2;
        switch (c) {
        case '"':
        case '\\':
            esc[1] = (char)c;
            break;
        case '\b':
            esc[1] = 'b';
            break;
        case '\f':
            esc[1] = 'f';
            break;
        case '\n':
            esc[1] = 'n';
            break;
        case '\r':
            esc[1] = 'r';
            break;
        case '\t':
            esc[1] = 't';
            break;
        default:
            memcpy(esc + 1, "u00", 3);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 0x0f];
            k = 6;
        }
        put(w, esc, k);
        run = ++i;
    }
    put(w, str + run, n - run);
    put(w, "\"", 1);
}

static void put_cstring(struct writer *w, const char *s, const char *field)
{
    put_string(w, s, strlen(s), field, SIZE_MAX);
}

static void put_turn(struct writer *w, const struct vh_turn *t, size_t i)
{
    if (t->ts_ms < VH_TIME_MIN_MS || t->ts_ms > VH_TIME_MAX_MS) {
        fail(w, "timestamp", i, "outside the years 1970 to 9999");
        return;
    }
    if (!t->content && t->content_len) {
        fail(w, "content", i, "is NULL");
        return;
    }
    if (t->role == VH_ROLE_USER)
        put_cstr(w, "{\"role\":\"user\",\"content\":");
    else if (t->role == VH_ROLE_BOT)
        put_cstr(w, "{\"role\":\"bot\",\"content\":");
    else {
        fail(w, "role", i, "is neither user nor bot");
        return;
    }
    put_string(w, t->content ? t->content : "", t->content_len, "content", i);
    put_cstr(w, ",\"timestamp\":");
    put_time(w, t->ts_ms);
    if (t->role == VH_ROLE_USER) {
        put_cstr(w, ",\"latency_ms\":null}");
    } else if (t->has_latency) {
        put_cstr(w, ",\"latency_ms\":");
        put_int(w, t->latency_ms);
        put(w, "}", 1);
    } else {
        put(w, "}", 1);
    }
}

static void put_call(struct writer *w, const struct vh_call *call)
{
    const char *status = vh_call_status_name(call->status);

    if (!call->call_id || !call->from_number || !call->to_number) {
        fail(w, "call", SIZE_MAX, "has a NULL field");
        return;
    }
    if (!status) {
        fail(w, "call.status", SIZE_MAX, "is not a known status");
        return;
    }
    put_cstr(w, ",\"call\":{\"call_id\":");
    put_cstring(w, call->call_id, "call.call_id");
    put_cstr(w, ",\"from_number\":");
    put_cstring(w, call->from_number, "call.from_number");
    put_cstr(w, ",\"to_number\":");
    put_cstring(w, call->to_number, "call.to_number");
    put_cstr(w, ",\"direction\":\"outbound\",\"status\":\"");
    put_cstr(w, status);
    put_cstr(w, "\"}");
}

/* Enough for the body unless strings need escapes: the one reservation of a render. */
static size_t estimate(const struct vh_session *s)
{
    size_t n = 400, i;

    n += strlen(s->session_id) + strlen(s->agent_id) + strlen(s->agent_name);
    if (s->recording_url)
        n += strlen(s->recording_url);
    if (s->has_call && s->call.call_id && s->call.from_number && s->call.to_number)
        n += strlen(s->call.call_id) + strlen(s->call.from_number) + strlen(s->call.to_number);
    for (i = 0; i < s->n_turns; i++)
        n += s->turns[i].content_len + 100;
    return n;
}

static void put_session(struct writer *w, const struct vh_session *s, int64_t event_ts_ms)
{
    struct vh_latency lat;
    char num[VH_NUMBER_MAX];
    size_t i;

    put_cstr(w, "{\"event\":\"" VH_EVENT_TYPE "\",\"timestamp\":");
    put_time(w, event_ts_ms);
    put_cstr(w, ",\"data\":{\"session_id\":");
    put_cstring(w, s->session_id, "session_id");
    put_cstr(w, ",\"agent_id\":");
    put_cstring(w, s->agent_id, "agent_id");
    put_cstr(w, ",\"agent_name\":");
    put_cstring(w, s->agent_name, "agent_name");
    put_cstr(w, ",\"duration_seconds\":");
    put_int(w, s->duration_seconds);
    put_cstr(w, ",\"credits_used\":");
    put(w, num, vh_number_format(s->credits_used, num));
    put_cstr(w, ",\"transcript\":[");
    for (i = 0; i < s->n_turns && w->rc == 0; i++) {
        if (i)
            put(w, ",", 1);
        put_turn(w, &s->turns[i], i);
    }
    put_cstr(w, "],\"recording_url\":");
    if (s->recording_url)
        put_cstring(w, s->recording_url, "recording_url");
    else
        put_cstr(w, "null");
    if (s->has_latency)
        lat = s->latency;
    else
        vh_session_derive_latency(s, &lat);
    put_cstr(w, ",\"latency\":{\"min_ms\":");
    put_int(w, lat.min_ms);
    put_cstr(w, ",\"max_ms\":");
    put_int(w, lat.max_ms);
    put_cstr(w, ",\"avg_ms\":");
    put_int(w, lat.avg_ms);
    put(w, "}", 1);
    if (s->has_call)
        put_call(w, &s->call);
    else
        put_cstr(w, ",\"call\":null");
    put_cstr(w, "}}");
}

/* What must hold for the body to be well-formed JSON; the values are the parsers' job. */
static int check_renderable(const struct vh_session *s, int64_t event_ts_ms, struct vh_error *err)
{
    if (!s->session_id || !s->agent_id || !s->agent_name)
        return vh_error_set(err, VH_EINVAL, "data: session_id, agent_id or agent_name is NULL");
    if (s->n_turns && !s->turns)
        return vh_error_set(err, VH_EINVAL, "data.transcript: NULL with %zu turns", s->n_turns);
    if (!isfinite(s->credits_used))
        return vh_error_set(err, VH_EINVAL, "data.credits_used: must be finite");
    if (s->recording_key && !s->recording_url)
        return vh_error_set(err, VH_EINVAL,
                            "data.recording_url: recording_key '%s' must be presigned first",
                            s->recording_key);
    if (event_ts_ms < VH_TIME_MIN_MS || event_ts_ms > VH_TIME_MAX_MS)
        return vh_error_set(err, VH_EINVAL, "timestamp: outside the years 1970 to 9999");
    return 0;
}

int vh_session_render(const struct vh_session *s, int64_t event_ts_ms, struct vh_buf *out,
                      struct vh_error *err)
{
    struct writer w = {out, 0, err};
    size_t old_len = out->len, room, want, max = out->max;
    bool had_data = out->data != NULL;
    bool bounded = false; /* the payload's own bound is the nearer one */
    int rc;

    rc = check_renderable(s, event_ts_ms, err);
    if (rc < 0)
        goto out;
    room = out->max >= out->len ? out->max - out->len : 0;
    /*
     * The payload is a request body to its receiver, bounded as one (VH_BODY_MAX): vocohook
     * receive, verify and validate refuse a larger one, so a sender must never make it.
     */
    if (room > (size_t)VH_BODY_MAX) {
        room = VH_BODY_MAX;
        out->max = old_len + room;
        bounded = true;
    }
    want = estimate(s);
    rc = vh_buf_grow(out, want < room ? want : room);
    if (rc == 0) {
        put_session(&w, s, event_ts_ms);
        rc = w.rc;
    }
    out->max = max;
    if (rc == VH_ENOMEM)
        vh_error_set(err, rc, "render: out of memory");
    else if (rc == VH_ETOOBIG && bounded)
        vh_error_set(err, rc, "render: the payload would be larger than %d bytes (VH_BODY_MAX)",
                     VH_BODY_MAX);
    else if (rc == VH_ETOOBIG)
        vh_error_set(err, rc, "render: payload larger than the buffer's bound of %zu bytes",
                     out->max);
out:
    if (rc < 0) {
        if (!had_data) {
            vh_buf_release(out);
        } else {
            out->len = old_len;
            out->data[old_len] = '\0';
        }
    }
    return rc;
}

int vh_json_add_string(struct vh_buf *b, const char *s, size_t len)
{
    struct writer w = {b, 0, NULL};
    size_t old_len = b->len;
    bool had_data = b->data != NULL;

    if (!s && len)
        return VH_EINVAL;
    put_string(&w, s ? s : "", len, "string", SIZE_MAX);
    /* As vh_session_render: an unallocated buffer goes back to its INIT state. */
    if (w.rc < 0 && !had_data) {
        vh_buf_release(b);
    } else if (w.rc < 0) {
        b->len = old_len;
        b->data[old_len] = '\0';
    }
    return w.rc;
}
