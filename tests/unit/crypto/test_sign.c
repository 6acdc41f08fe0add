/*
 * Webhook signing and verification (include/vocohook/sign.h, SPEC §2 and §7).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include <vocohook/clock.h>
#include <vocohook/sign.h>

#include "core/banned.h"

#define TS     "2026-03-15T14:32:08.000Z"
#define SECRET "whsec_test"
#define BODY   "{\"event\":\"session.completed\"}"
#define TOL_MS INT64_C(300000)

/*
 * HMAC-SHA256(SECRET, TS "." BODY), computed independently with Python:
 * hmac.new(b"whsec_test", b'2026-03-15T14:32:08.000Z.{"event":"session.completed"}',
 *          hashlib.sha256).hexdigest()
 */
#define SIG_BODY "sha256=528f97fe8ffd1261aadcb921aae99789a121b7ea3118362da8a5a4a02d7d7485"
/* The same with an empty body: hmac.new(b"whsec_test", b"2026-03-15T14:32:08.000Z.", ...). */
#define SIG_EMPTY "sha256=1497456fb99696b9b8c605204db3fda02f891ddd8cf99574ec9875cee873cb9d"

static int64_t ts_ms(const char *ts)
{
    int64_t ms = -1;

    assert_int_equal(vh_time_parse(ts, strlen(ts), &ms, NULL), 0);
    return ms;
}

static void sign(const char *secret, const char *ts, const char *body, size_t body_len,
                 char out[VH_SIG_LEN + 1])
{
    struct vh_error err = VH_ERROR_INIT;

    assert_int_equal(vh_sign(secret, strlen(secret), ts, strlen(ts), body, body_len, out, &err), 0);
    assert_int_equal(err.code, 0);
}

/* Runs vh_verify with one or more secrets; returns its result and fills status and err. */
static int verify_n(const char *const *secrets, size_t n, int64_t tol, int64_t now, const char *ts,
                    const char *sig, const void *body, size_t body_len, enum vh_verify_status *st,
                    struct vh_error *err)
{
    struct vh_verify_opts opts;

    opts.secrets = secrets;
    opts.n_secrets = n;
    opts.tolerance_ms = tol;
    opts.now_ms = now;
    vh_error_clear(err);
    *st = (enum vh_verify_status)99;
    return vh_verify(&opts, ts, ts ? strlen(ts) : 0, sig, sig ? strlen(sig) : 0, body, body_len, st,
                     err);
}

static int verify1(const char *secret, int64_t tol, int64_t now, const char *ts, const char *sig,
                   const void *body, size_t body_len, enum vh_verify_status *st,
                   struct vh_error *err)
{
    const char *secrets[1];

    secrets[0] = secret;
    return verify_n(secrets, 1, tol, now, ts, sig, body, body_len, st, err);
}

/* --- vh_sign ------------------------------------------------------------------------------ */

static void test_sign_known_vector(void **state)
{
    char out[VH_SIG_LEN + 1];

    (void)state;
    sign(SECRET, TS, BODY, strlen(BODY), out);
    assert_string_equal(out, SIG_BODY);
    sign(SECRET, TS, NULL, 0, out);
    assert_string_equal(out, SIG_EMPTY);
    sign(SECRET, TS, "", 0, out);
    assert_string_equal(out, SIG_EMPTY);
}

/*
 * RFC 4231 test case 7 through vh_sign's layering: its data contains one ". ", so signing
 * timestamp = the text before the '.' and body = the text after it must give the RFC's MAC
 * under the 131-byte key.
 */
static void test_sign_rfc4231_case7(void **state)
{
    static const char ts[] =
        "This is a test using a larger than block-size key and a larger than block-size data";
    static const char body[] =
        " The key needs to be hashed before being used by the HMAC algorithm.";
    char key[131], out[VH_SIG_LEN + 1];

    (void)state;
    memset(key, 0xaa, sizeof(key));
    assert_int_equal(vh_sign(key, sizeof(key), ts, strlen(ts), body, strlen(body), out, NULL), 0);
    assert_string_equal(out,
                        "sha256=9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2");
}

static void test_sign_format(void **state)
{
    char out[VH_SIG_LEN + 2];
    size_t i;

    (void)state;
    memset(out, 'X', sizeof(out));
    sign("k", TS, "x", 1, out);
    assert_int_equal(strlen(out), VH_SIG_LEN);
    assert_memory_equal(out, "sha256=", 7);
    for (i = 7; i < VH_SIG_LEN; i++)
        assert_true((out[i] >= '0' && out[i] <= '9') || (out[i] >= 'a' && out[i] <= 'f'));
    assert_int_equal(out[VH_SIG_LEN + 1], 'X');
}

static void test_sign_bad_secret(void **state)
{
    static char big[VH_SECRET_MAX + 1];
    char out[VH_SIG_LEN + 1];
    struct vh_error err = VH_ERROR_INIT;

    (void)state;
    memset(big, 's', sizeof(big));
    memset(out, 'X', sizeof(out));
    assert_int_equal(vh_sign("", 0, TS, 24, BODY, 5, out, &err), VH_EINVAL);
    assert_string_equal(err.msg, "sign: the secret is empty");
    vh_error_clear(&err);
    assert_int_equal(vh_sign(NULL, 0, TS, 24, BODY, 5, out, &err), VH_EINVAL);
    vh_error_clear(&err);
    assert_int_equal(vh_sign(big, sizeof(big), TS, 24, BODY, 5, out, &err), VH_EINVAL);
    assert_string_equal(err.msg, "sign: the secret is 1025 bytes (at most 1024)");
    assert_int_equal(out[0], 'X'); /* out-params stay untouched on failure */
    assert_int_equal(vh_sign(big, VH_SECRET_MAX, TS, 24, BODY, 5, out, NULL), 0);
}

/* The timestamp is signed as given: no parsing, no normalization. */
static void test_sign_timestamp_as_given(void **state)
{
    char a[VH_SIG_LEN + 1], b[VH_SIG_LEN + 1];

    (void)state;
    sign(SECRET, "not a time", BODY, strlen(BODY), a);
    sign(SECRET, "not a time ", BODY, strlen(BODY), b);
    assert_string_not_equal(a, b);
    assert_int_equal(vh_sign(SECRET, 6, "", 0, "", 0, a, NULL), 0);
}

/* --- vh_verify: accepting ------------------------------------------------------------------ */

static void test_verify_valid(void **state)
{
    enum vh_verify_status st;
    struct vh_error err;

    (void)state;
    assert_int_equal(
        verify1(SECRET, TOL_MS, ts_ms(TS), TS, SIG_BODY, BODY, strlen(BODY), &st, &err), 0);
    assert_int_equal(st, VH_VERIFY_OK);
    assert_int_equal(err.code, 0);
    assert_string_equal(err.msg, "");
    /* status and err are optional. */
    {
        const char *secrets[] = {SECRET};
        struct vh_verify_opts opts = {secrets, 1, TOL_MS, ts_ms(TS)};

        assert_int_equal(
            vh_verify(&opts, TS, 24, SIG_BODY, VH_SIG_LEN, BODY, strlen(BODY), NULL, NULL), 0);
        assert_int_equal(vh_verify(&opts, TS, 24, SIG_BODY, VH_SIG_LEN, "x", 1, NULL, NULL),
                         VH_ESIG);
    }
}

static void test_verify_empty_body(void **state)
{
    enum vh_verify_status st;
    struct vh_error err;

    (void)state;
    assert_int_equal(verify1(SECRET, TOL_MS, ts_ms(TS), TS, SIG_EMPTY, NULL, 0, &st, &err), 0);
    assert_int_equal(verify1(SECRET, TOL_MS, ts_ms(TS), TS, SIG_EMPTY, "", 0, &st, &err), 0);
    assert_int_equal(verify1(SECRET, TOL_MS, ts_ms(TS), TS, SIG_BODY, "", 0, &st, &err), VH_ESIG);
    assert_int_equal(st, VH_VERIFY_MISMATCH);
}

static void test_verify_uppercase_hex(void **state)
{
    char sig[VH_SIG_LEN + 1];
    size_t i;
    enum vh_verify_status st;
    struct vh_error err;

    (void)state;
    memcpy(sig, SIG_BODY, sizeof(sig));
    for (i = 7; i < VH_SIG_LEN; i++)
        if (sig[i] >= 'a' && sig[i] <= 'f')
            sig[i] = (char)(sig[i] - 'a' + 'A');
    assert_string_not_equal(sig, SIG_BODY);
    assert_int_equal(verify1(SECRET, TOL_MS, ts_ms(TS), TS, sig, BODY, strlen(BODY), &st, &err), 0);
    assert_int_equal(st, VH_VERIFY_OK);
}

/* Rotation: a request signed with either secret verifies; neither gives MISMATCH. */
static void test_verify_two_secrets(void **state)
{
    const char *old_new[] = {"whsec_old", SECRET};
    const char *new_old[] = {SECRET, "whsec_old"};
    const char *others[] = {"whsec_a", "whsec_b"};
    enum vh_verify_status st;
    struct vh_error err;
    int64_t now = ts_ms(TS);

    (void)state;
    assert_int_equal(verify_n(old_new, 2, TOL_MS, now, TS, SIG_BODY, BODY, strlen(BODY), &st, &err),
                     0);
    assert_int_equal(st, VH_VERIFY_OK);
    assert_int_equal(verify_n(new_old, 2, TOL_MS, now, TS, SIG_BODY, BODY, strlen(BODY), &st, &err),
                     0);
    assert_int_equal(verify_n(others, 2, TOL_MS, now, TS, SIG_BODY, BODY, strlen(BODY), &st, &err),
                     VH_ESIG);
    assert_int_equal(st, VH_VERIFY_MISMATCH);
    assert_string_equal(err.msg, "signature does not match any of 2 secrets");
    assert_int_equal(verify_n(others, 1, TOL_MS, now, TS, SIG_BODY, BODY, strlen(BODY), &st, &err),
                     VH_ESIG);
    assert_string_equal(err.msg, "signature does not match the secret");
}

/* --- vh_verify: every one-byte change is a mismatch ----------------------------------------- */

static void test_verify_body_byte_flips(void **state)
{
    char body[] = BODY;
    size_t i, n = strlen(body);
    enum vh_verify_status st;
    struct vh_error err;
    int64_t now = ts_ms(TS);

    (void)state;
    for (i = 0; i < n; i++) {
        body[i] ^= 0x01;
        if (verify1(SECRET, TOL_MS, now, TS, SIG_BODY, body, n, &st, &err) != VH_ESIG ||
            st != VH_VERIFY_MISMATCH)
            fail_msg("body byte %zu changed, yet status %d", i, (int)st);
        body[i] ^= 0x01;
    }
    /* A truncated or extended body too. */
    assert_int_equal(verify1(SECRET, TOL_MS, now, TS, SIG_BODY, body, n - 1, &st, &err), VH_ESIG);
    assert_int_equal(st, VH_VERIFY_MISMATCH);
    assert_int_equal(verify1(SECRET, TOL_MS, now, TS, SIG_BODY, body, n + 1, &st, &err), VH_ESIG);
    assert_int_equal(st, VH_VERIFY_MISMATCH);
}

static void test_verify_secret_byte_flips(void **state)
{
    char secret[] = SECRET;
    size_t i, n = strlen(secret);
    enum vh_verify_status st;
    struct vh_error err;

    (void)state;
    for (i = 0; i < n; i++) {
        secret[i] ^= 0x01;
        if (verify1(secret, TOL_MS, ts_ms(TS), TS, SIG_BODY, BODY, strlen(BODY), &st, &err) !=
                VH_ESIG ||
            st != VH_VERIFY_MISMATCH)
            fail_msg("secret byte %zu changed, yet status %d", i, (int)st);
        secret[i] ^= 0x01;
    }
    assert_int_equal(
        verify1("whsec_tes", TOL_MS, ts_ms(TS), TS, SIG_BODY, BODY, strlen(BODY), &st, &err),
        VH_ESIG);
}

/*
 * Changing any digit of the timestamp either leaves a valid time (then the MAC no longer
 * matches: the window is disabled so only the MAC can fail) or an invalid one.
 */
static void test_verify_timestamp_byte_changes(void **state)
{
    char ts[] = TS;
    size_t i;
    char c;
    int64_t ms;
    int mismatches = 0;
    enum vh_verify_status st;
    struct vh_error err;

    (void)state;
    for (i = 0; i < VH_TIME_LEN; i++) {
        char orig = ts[i];

        for (c = '0'; c <= '9'; c++) {
            if (c == orig)
                continue;
            ts[i] = c;
            assert_int_equal(verify1(SECRET, -1, 0, ts, SIG_BODY, BODY, strlen(BODY), &st, &err),
                             VH_ESIG);
            if (vh_time_parse(ts, VH_TIME_LEN, &ms, NULL) == 0) {
                if (st != VH_VERIFY_MISMATCH)
                    fail_msg("timestamp %s: status %d, want mismatch", ts, (int)st);
                mismatches++;
            } else if (st != VH_VERIFY_BAD_TIMESTAMP) {
                fail_msg("timestamp %s: status %d, want bad_timestamp", ts, (int)st);
            }
        }
        ts[i] = orig;
    }
    assert_true(mismatches > 50);
}

/* Each hex digit of the signature changed to another value is a mismatch. */
static void test_verify_signature_digit_changes(void **state)
{
    char sig[] = SIG_BODY;
    size_t i;
    enum vh_verify_status st;
    struct vh_error err;

    (void)state;
    for (i = 7; i < VH_SIG_LEN; i++) {
        char orig = sig[i];

        sig[i] = orig == '0' ? '1' : '0';
        if (verify1(SECRET, TOL_MS, ts_ms(TS), TS, sig, BODY, strlen(BODY), &st, &err) != VH_ESIG ||
            st != VH_VERIFY_MISMATCH)
            fail_msg("signature byte %zu changed, yet status %d", i, (int)st);
        sig[i] = orig;
    }
}

/* --- vh_verify: the window ------------------------------------------------------------------ */

static void test_verify_window_boundaries(void **state)
{
    int64_t t = ts_ms(TS);
    enum vh_verify_status st;
    struct vh_error err;

    (void)state;
    /* Exactly at the boundary is accepted, both ways. */
    assert_int_equal(
        verify1(SECRET, TOL_MS, t + TOL_MS, TS, SIG_BODY, BODY, strlen(BODY), &st, &err), 0);
    assert_int_equal(
        verify1(SECRET, TOL_MS, t - TOL_MS, TS, SIG_BODY, BODY, strlen(BODY), &st, &err), 0);
    /* One millisecond past it is not. */
    assert_int_equal(
        verify1(SECRET, TOL_MS, t + TOL_MS + 1, TS, SIG_BODY, BODY, strlen(BODY), &st, &err),
        VH_ESIG);
    assert_int_equal(st, VH_VERIFY_TOO_OLD);
    assert_string_equal(err.msg, "timestamp " TS " is 300.001 s older than now (tolerance 300 s)");
    assert_int_equal(
        verify1(SECRET, TOL_MS, t - TOL_MS - 1, TS, SIG_BODY, BODY, strlen(BODY), &st, &err),
        VH_ESIG);
    assert_int_equal(st, VH_VERIFY_TOO_NEW);
    assert_string_equal(err.msg, "timestamp " TS " is 300.001 s newer than now (tolerance 300 s)");
    assert_int_equal(
        verify1(SECRET, TOL_MS, t + 400000, TS, SIG_BODY, BODY, strlen(BODY), &st, &err), VH_ESIG);
    assert_string_equal(err.msg, "timestamp " TS " is 400 s older than now (tolerance 300 s)");
    /* The window is checked before the MAC: a stale request with a bad MAC is TOO_OLD. */
    assert_int_equal(
        verify1("other", TOL_MS, t + TOL_MS + 1, TS, SIG_BODY, BODY, strlen(BODY), &st, &err),
        VH_ESIG);
    assert_int_equal(st, VH_VERIFY_TOO_OLD);
    /* A zero tolerance accepts only the exact millisecond. */
    assert_int_equal(verify1(SECRET, 0, t, TS, SIG_BODY, BODY, strlen(BODY), &st, &err), 0);
    assert_int_equal(verify1(SECRET, 0, t + 1, TS, SIG_BODY, BODY, strlen(BODY), &st, &err),
                     VH_ESIG);
    assert_int_equal(st, VH_VERIFY_TOO_OLD);
}

static void test_verify_window_disabled(void **state)
{
    int64_t t = ts_ms(TS);
    enum vh_verify_status st;
    struct vh_error err;

    (void)state;
    assert_int_equal(verify1(SECRET, -1, t + INT64_C(10) * 365 * 86400000, TS, SIG_BODY, BODY,
                             strlen(BODY), &st, &err),
                     0);
    assert_int_equal(verify1(SECRET, -1, 0, TS, SIG_BODY, BODY, strlen(BODY), &st, &err), 0);
    assert_int_equal(
        verify1(SECRET, INT64_MIN, INT64_MAX, TS, SIG_BODY, BODY, strlen(BODY), &st, &err), 0);
}

/* Extreme `now` values must not overflow (the sanitizer build checks). */
static void test_verify_window_extremes(void **state)
{
    enum vh_verify_status st;
    struct vh_error err;

    (void)state;
    assert_int_equal(
        verify1(SECRET, TOL_MS, INT64_MIN, TS, SIG_BODY, BODY, strlen(BODY), &st, &err), VH_ESIG);
    assert_int_equal(st, VH_VERIFY_TOO_NEW);
    assert_int_equal(
        verify1(SECRET, TOL_MS, INT64_MAX, TS, SIG_BODY, BODY, strlen(BODY), &st, &err), VH_ESIG);
    assert_int_equal(st, VH_VERIFY_TOO_OLD);
    /* The distance from INT64_MIN exceeds even the widest tolerance. */
    assert_int_equal(
        verify1(SECRET, INT64_MAX, INT64_MIN, TS, SIG_BODY, BODY, strlen(BODY), &st, &err),
        VH_ESIG);
    assert_int_equal(st, VH_VERIFY_TOO_NEW);
    assert_int_equal(verify1(SECRET, INT64_MAX, 0, TS, SIG_BODY, BODY, strlen(BODY), &st, &err), 0);
}

/* --- vh_verify and vh_sig_header_parse: malformed input ------------------------------------- */

#define HEX64 "528f97fe8ffd1261aadcb921aae99789a121b7ea3118362da8a5a4a02d7d7485"

static const struct {
    const char *sig;
    const char *msg;
} bad_sigs[] = {
    {"", "signature: empty (expected \"sha256=\" followed by 64 hex digits)"},
    {HEX64, "signature: expected \"sha256=\" followed by 64 hex digits"},
    {"sha1=" HEX64, "signature: expected \"sha256=\" followed by 64 hex digits"},
    {"SHA256=" HEX64, "signature: expected \"sha256=\" followed by 64 hex digits"},
    {" sha256=" HEX64, "signature: expected \"sha256=\" followed by 64 hex digits"},
    {"sha256 =" HEX64, "signature: expected \"sha256=\" followed by 64 hex digits"},
    {"sha256", "signature: expected \"sha256=\" followed by 64 hex digits"},
    {"sha256=", "signature: expected 64 hex digits after \"sha256=\", got 0"},
    {"sha256="
     "528f97fe8ffd1261aadcb921aae99789a121b7ea3118362da8a5a4a02d7d748",
     "signature: expected 64 hex digits after \"sha256=\", got 63"},
    {"sha256=" HEX64 "5",
     "signature: 1 extra byte after the 64 hex digits (expected exactly one \"sha256=\" "
     "followed by 64 hex digits)"},
    {"sha256=" HEX64 " ",
     "signature: 1 extra byte after the 64 hex digits (expected exactly one \"sha256=\" "
     "followed by 64 hex digits)"},
    {"sha256=" HEX64 ",sha256=" HEX64,
     "signature: 72 extra bytes after the 64 hex digits (expected exactly one \"sha256=\" "
     "followed by 64 hex digits)"},
    {"sha256=528fg7fe8ffd1261aadcb921aae99789a121b7ea3118362da8a5a4a02d7d7485",
     "signature: byte 12 is not a hex digit"},
    {"sha256= 528f97fe8ffd1261aadcb921aae99789a121b7ea3118362da8a5a4a02d7d748",
     "signature: byte 8 is not a hex digit"},
    {"sha256=528f97fe8ffd1261aadcb921aae99789a121b7ea3118362da8a5a4a02d7d748x",
     "signature: byte 71 is not a hex digit"},
    {"sha256=0x8f97fe8ffd1261aadcb921aae99789a121b7ea3118362da8a5a4a02d7d7485",
     "signature: byte 9 is not a hex digit"},
};

static void test_sig_header_parse_malformed(void **state)
{
    size_t i;
    unsigned char mac[VH_SHA256_LEN];

    (void)state;
    for (i = 0; i < sizeof(bad_sigs) / sizeof(bad_sigs[0]); i++) {
        struct vh_error err = VH_ERROR_INIT;

        memset(mac, 0x5a, sizeof(mac));
        if (vh_sig_header_parse(bad_sigs[i].sig, strlen(bad_sigs[i].sig), mac, &err) != VH_EINVAL)
            fail_msg("accepted bad signature %zu: '%s'", i, bad_sigs[i].sig);
        assert_string_equal(err.msg, bad_sigs[i].msg);
        assert_int_equal(mac[0], 0x5a); /* untouched */
        assert_int_equal(mac[31], 0x5a);
    }
    {
        struct vh_error err = VH_ERROR_INIT;

        assert_int_equal(vh_sig_header_parse(NULL, 0, mac, &err), VH_EINVAL);
        /* A NUL inside the value is just another non-hex byte. */
        vh_error_clear(&err);
        assert_int_equal(vh_sig_header_parse("sha256=\0" HEX64, VH_SIG_LEN, mac, &err), VH_EINVAL);
        assert_string_equal(err.msg, "signature: byte 8 is not a hex digit");
    }
}

static void test_sig_header_parse_valid(void **state)
{
    unsigned char mac[VH_SHA256_LEN];
    static const unsigned char want[VH_SHA256_LEN] = {
        0x52, 0x8f, 0x97, 0xfe, 0x8f, 0xfd, 0x12, 0x61, 0xaa, 0xdc, 0xb9,
        0x21, 0xaa, 0xe9, 0x97, 0x89, 0xa1, 0x21, 0xb7, 0xea, 0x31, 0x18,
        0x36, 0x2d, 0xa8, 0xa5, 0xa4, 0xa0, 0x2d, 0x7d, 0x74, 0x85};

    (void)state;
    assert_int_equal(vh_sig_header_parse(SIG_BODY, VH_SIG_LEN, mac, NULL), 0);
    assert_memory_equal(mac, want, sizeof(want));
    assert_int_equal(vh_sig_header_parse("sha256=528F97FE8FFD1261AADCB921AAE99789A121B7EA3118362D"
                                         "A8A5A4A02D7D7485",
                                         VH_SIG_LEN, mac, NULL),
                     0);
    assert_memory_equal(mac, want, sizeof(want));
    /* Only `len` bytes are read: a longer buffer is fine. */
    assert_int_equal(vh_sig_header_parse(SIG_BODY "trailing", VH_SIG_LEN, mac, NULL), 0);
}

static void test_verify_malformed_signature(void **state)
{
    size_t i;
    enum vh_verify_status st;
    struct vh_error err;

    (void)state;
    for (i = 0; i < sizeof(bad_sigs) / sizeof(bad_sigs[0]); i++) {
        assert_int_equal(
            verify1(SECRET, TOL_MS, ts_ms(TS), TS, bad_sigs[i].sig, BODY, strlen(BODY), &st, &err),
            VH_ESIG);
        assert_int_equal(st, VH_VERIFY_BAD_SIGNATURE);
        assert_string_equal(err.msg, bad_sigs[i].msg);
    }
    assert_int_equal(verify1(SECRET, TOL_MS, ts_ms(TS), TS, NULL, BODY, strlen(BODY), &st, &err),
                     VH_ESIG);
    assert_int_equal(st, VH_VERIFY_BAD_SIGNATURE);
    assert_string_equal(err.msg, "missing X-Webhook-Signature");
}

static void test_verify_malformed_timestamp(void **state)
{
    static const char *const bad[] = {
        "2026-03-15T14:32:08Z",          /* no milliseconds */
        "2026-03-15T14:32:08.000+00:00", /* an offset instead of Z */
        "2026-03-15T14:32:08.000z",      /* lowercase z */
        "2026-03-15 14:32:08.000Z",      /* a space instead of T */
        "2026-03-15T14:32:08.0000Z",     /* four fraction digits */
        " 2026-03-15T14:32:08.000Z",     /* leading space */
        "2026-02-30T14:32:08.000Z",      /* no such day */
        "1773585128000",                 /* epoch milliseconds */
        "",
    };
    size_t i;
    enum vh_verify_status st;
    struct vh_error err;

    (void)state;
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (verify1(SECRET, -1, 0, bad[i], SIG_BODY, BODY, strlen(BODY), &st, &err) != VH_ESIG ||
            st != VH_VERIFY_BAD_TIMESTAMP)
            fail_msg("timestamp '%s': status %d, want bad_timestamp", bad[i], (int)st);
        assert_memory_equal(err.msg, "timestamp: ", 11);
    }
    assert_int_equal(
        verify1(SECRET, -1, 0, "2026-03-15T14:32:08Z", SIG_BODY, BODY, strlen(BODY), &st, &err),
        VH_ESIG);
    assert_string_equal(err.msg, "timestamp: must be an ISO 8601 UTC time like "
                                 "2026-03-15T14:32:08.000Z (24 characters, got 20)");
    /* A missing timestamp is reported before a missing signature. */
    assert_int_equal(verify1(SECRET, TOL_MS, 0, NULL, NULL, BODY, strlen(BODY), &st, &err),
                     VH_ESIG);
    assert_int_equal(st, VH_VERIFY_BAD_TIMESTAMP);
    assert_string_equal(err.msg, "missing X-Webhook-Timestamp");
}

/* --- vh_verify: caller errors ------------------------------------------------------------- */

static void test_verify_bad_opts(void **state)
{
    static char big[VH_SECRET_MAX + 2];
    const char *with_null[] = {SECRET, NULL};
    const char *with_empty[] = {SECRET, ""};
    const char *with_big[] = {big};
    enum vh_verify_status st = VH_VERIFY_MISMATCH;
    struct vh_error err = VH_ERROR_INIT;
    struct vh_verify_opts opts = {with_null, 0, TOL_MS, 0};

    (void)state;
    assert_int_equal(vh_verify(NULL, TS, 24, SIG_BODY, VH_SIG_LEN, BODY, 5, &st, &err), VH_EINVAL);
    assert_string_equal(err.msg, "verify: no options");
    assert_int_equal(st, VH_VERIFY_MISMATCH); /* untouched */

    vh_error_clear(&err);
    assert_int_equal(vh_verify(&opts, TS, 24, SIG_BODY, VH_SIG_LEN, BODY, 5, &st, &err), VH_EINVAL);
    assert_string_equal(err.msg, "verify: no secrets");

    vh_error_clear(&err);
    opts.n_secrets = 2;
    assert_int_equal(vh_verify(&opts, TS, 24, SIG_BODY, VH_SIG_LEN, BODY, 5, &st, &err), VH_EINVAL);
    assert_string_equal(err.msg, "verify: secret 2 is NULL");

    vh_error_clear(&err);
    opts.secrets = with_empty;
    assert_int_equal(vh_verify(&opts, TS, 24, SIG_BODY, VH_SIG_LEN, BODY, 5, &st, &err), VH_EINVAL);
    assert_string_equal(err.msg, "verify: secret 2 is empty");

    /* A secret of VH_SECRET_MAX bytes is fine; one more byte is not. */
    memset(big, 's', VH_SECRET_MAX);
    vh_error_clear(&err);
    opts.secrets = with_big;
    opts.n_secrets = 1;
    opts.tolerance_ms = -1;
    assert_int_equal(vh_verify(&opts, TS, 24, SIG_BODY, VH_SIG_LEN, BODY, 5, &st, &err), VH_ESIG);
    assert_int_equal(st, VH_VERIFY_MISMATCH);
    big[VH_SECRET_MAX] = 's';
    vh_error_clear(&err);
    st = VH_VERIFY_OK;
    assert_int_equal(vh_verify(&opts, TS, 24, SIG_BODY, VH_SIG_LEN, BODY, 5, &st, &err), VH_EINVAL);
    assert_string_equal(err.msg, "verify: secret 1 is longer than 1024 bytes");
    assert_int_equal(st, VH_VERIFY_OK); /* untouched */
    /* Configuration errors win over a bad request. */
    vh_error_clear(&err);
    assert_int_equal(vh_verify(&opts, NULL, 0, NULL, 0, NULL, 0, &st, &err), VH_EINVAL);
}

/* The error buffer keeps the first error (error.h). */
static void test_verify_first_error_wins(void **state)
{
    const char *secrets[] = {SECRET};
    struct vh_verify_opts opts = {secrets, 1, TOL_MS, 0};
    struct vh_error err = VH_ERROR_INIT;

    (void)state;
    vh_error_set(&err, VH_EIO, "earlier");
    assert_int_equal(vh_verify(&opts, NULL, 0, NULL, 0, NULL, 0, NULL, &err), VH_ESIG);
    assert_int_equal(err.code, VH_EIO);
    assert_string_equal(err.msg, "earlier");
}

/*
 * vh_verify_head gives the verdict and reason vh_verify gives on every request whose head
 * decides it, and passes every head vh_verify would judge on the body; it needs no secret.
 */
static void test_verify_head_agrees_with_verify(void **state)
{
    const char *secrets[] = {SECRET};
    int64_t t = ts_ms(TS);
    static const struct {
        const char *ts, *sig;
        int64_t now;
        enum vh_verify_status want; /* VH_VERIFY_OK: the body decides */
    } cases[] = {
        {NULL, SIG_BODY, 0, VH_VERIFY_BAD_TIMESTAMP},
        {"2026-03-15T14:32:08Z", SIG_BODY, 0, VH_VERIFY_BAD_TIMESTAMP},
        {TS, NULL, 0, VH_VERIFY_BAD_SIGNATURE},
        {TS, "sha256=abc", 0, VH_VERIFY_BAD_SIGNATURE},
        {TS, SIG_BODY, TOL_MS + 1, VH_VERIFY_TOO_OLD},
        {TS, SIG_BODY, -TOL_MS - 1, VH_VERIFY_TOO_NEW},
        {TS, SIG_BODY, TOL_MS, VH_VERIFY_OK},
        {TS, SIG_EMPTY, 0, VH_VERIFY_OK}, /* a mismatch: only the body can tell */
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct vh_verify_opts head_opts = {NULL, 0, TOL_MS, t + cases[i].now};
        struct vh_verify_opts opts = {secrets, 1, TOL_MS, t + cases[i].now};
        struct vh_error head_err = VH_ERROR_INIT, err = VH_ERROR_INIT;
        enum vh_verify_status head_st = VH_VERIFY_MISMATCH, st = VH_VERIFY_OK;
        const char *ts = cases[i].ts, *sig = cases[i].sig;
        int head_rc, rc;

        head_rc = vh_verify_head(&head_opts, ts, ts ? strlen(ts) : 0, sig, sig ? strlen(sig) : 0,
                                 &head_st, &head_err);
        rc = vh_verify(&opts, ts, ts ? strlen(ts) : 0, sig, sig ? strlen(sig) : 0, BODY,
                       strlen(BODY), &st, &err);
        assert_int_equal(head_st, cases[i].want);
        if (cases[i].want == VH_VERIFY_OK) {
            assert_int_equal(head_rc, 0);
            assert_string_equal(head_err.msg, "");
            assert_int_equal(st, strcmp(sig, SIG_BODY) == 0 ? VH_VERIFY_OK : VH_VERIFY_MISMATCH);
        } else {
            assert_int_equal(head_rc, VH_ESIG);
            assert_int_equal(rc, VH_ESIG);
            assert_int_equal(st, head_st);
            assert_string_equal(head_err.msg, err.msg);
        }
    }
    assert_int_equal(vh_verify_head(NULL, TS, strlen(TS), SIG_BODY, strlen(SIG_BODY), NULL, NULL),
                     VH_EINVAL);
}

/* Sign then verify over many body sizes, including a 64 KiB one. */
static void test_sign_verify_round_trip(void **state)
{
    static char body[65536];
    size_t sizes[] = {0, 1, 63, 64, 65, 2048, 50000, sizeof(body)};
    size_t i;
    char sig[VH_SIG_LEN + 1];
    enum vh_verify_status st;
    struct vh_error err;

    (void)state;
    for (i = 0; i < sizeof(body); i++)
        body[i] = (char)(i * 31 + 7);
    for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        sign(SECRET, TS, body, sizes[i], sig);
        assert_int_equal(verify1(SECRET, TOL_MS, ts_ms(TS), TS, sig, body, sizes[i], &st, &err), 0);
    }
}

/* --- the small helpers -------------------------------------------------------------------- */

static void test_sha256_hex(void **state)
{
    char out[VH_SHA256_HEX_LEN + 1];

    (void)state;
    assert_int_equal(vh_sha256_hex("abc", 3, out, NULL), 0);
    assert_string_equal(out, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    assert_int_equal(vh_sha256_hex("", 0, out, NULL), 0);
    assert_string_equal(out, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

static void test_mem_equal_ct(void **state)
{
    unsigned char a[32], b[32];
    size_t i;

    (void)state;
    memset(a, 0x11, sizeof(a));
    memset(b, 0x11, sizeof(b));
    assert_true(vh_mem_equal_ct(a, b, sizeof(a)));
    assert_true(vh_mem_equal_ct(a, b, 0));
    for (i = 0; i < sizeof(b); i++) {
        b[i] ^= 0x80;
        assert_false(vh_mem_equal_ct(a, b, sizeof(a)));
        assert_true(vh_mem_equal_ct(a, b, i)); /* the prefix before the change still equal */
        b[i] ^= 0x80;
    }
}

static void assert_token(const char *s, const char *prefix, size_t len)
{
    size_t i, plen = strlen(prefix);

    assert_int_equal(strlen(s), len);
    assert_memory_equal(s, prefix, plen);
    for (i = plen; i < len; i++)
        assert_true((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'));
}

static void test_secret_and_apikey_new(void **state)
{
    char s1[VH_SECRET_LEN + 1], s2[VH_SECRET_LEN + 1];
    char k1[VH_APIKEY_LEN + 1], k2[VH_APIKEY_LEN + 1];

    (void)state;
    assert_int_equal(vh_secret_new(s1, NULL), 0);
    assert_int_equal(vh_secret_new(s2, NULL), 0);
    assert_token(s1, VH_SECRET_PREFIX, VH_SECRET_LEN);
    assert_token(s2, VH_SECRET_PREFIX, VH_SECRET_LEN);
    assert_string_not_equal(s1, s2);
    assert_int_equal(vh_apikey_new(k1, NULL), 0);
    assert_int_equal(vh_apikey_new(k2, NULL), 0);
    assert_token(k1, VH_APIKEY_PREFIX, VH_APIKEY_LEN);
    assert_token(k2, VH_APIKEY_PREFIX, VH_APIKEY_LEN);
    assert_string_not_equal(k1, k2);
    /* A fresh secret signs and verifies. */
    {
        char sig[VH_SIG_LEN + 1];
        enum vh_verify_status st;
        struct vh_error err;

        sign(s1, TS, BODY, strlen(BODY), sig);
        assert_int_equal(verify1(s1, TOL_MS, ts_ms(TS), TS, sig, BODY, strlen(BODY), &st, &err), 0);
    }
}

static void test_status_names(void **state)
{
    (void)state;
    assert_string_equal(vh_verify_status_name(VH_VERIFY_OK), "ok");
    assert_string_equal(vh_verify_status_name(VH_VERIFY_BAD_TIMESTAMP), "bad_timestamp");
    assert_string_equal(vh_verify_status_name(VH_VERIFY_BAD_SIGNATURE), "bad_signature");
    assert_string_equal(vh_verify_status_name(VH_VERIFY_TOO_OLD), "too_old");
    assert_string_equal(vh_verify_status_name(VH_VERIFY_TOO_NEW), "too_new");
    assert_string_equal(vh_verify_status_name(VH_VERIFY_MISMATCH), "mismatch");
    assert_string_equal(vh_verify_status_name((enum vh_verify_status)42), "unknown");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sign_known_vector),
        cmocka_unit_test(test_sign_rfc4231_case7),
        cmocka_unit_test(test_sign_format),
        cmocka_unit_test(test_sign_bad_secret),
        cmocka_unit_test(test_sign_timestamp_as_given),
        cmocka_unit_test(test_verify_valid),
        cmocka_unit_test(test_verify_empty_body),
        cmocka_unit_test(test_verify_uppercase_hex),
        cmocka_unit_test(test_verify_two_secrets),
        cmocka_unit_test(test_verify_head_agrees_with_verify),
        cmocka_unit_test(test_verify_body_byte_flips),
        cmocka_unit_test(test_verify_secret_byte_flips),
        cmocka_unit_test(test_verify_timestamp_byte_changes),
        cmocka_unit_test(test_verify_signature_digit_changes),
        cmocka_unit_test(test_verify_window_boundaries),
        cmocka_unit_test(test_verify_window_disabled),
        cmocka_unit_test(test_verify_window_extremes),
        cmocka_unit_test(test_sig_header_parse_malformed),
        cmocka_unit_test(test_sig_header_parse_valid),
        cmocka_unit_test(test_verify_malformed_signature),
        cmocka_unit_test(test_verify_malformed_timestamp),
        cmocka_unit_test(test_verify_bad_opts),
        cmocka_unit_test(test_verify_first_error_wins),
        cmocka_unit_test(test_sign_verify_round_trip),
        cmocka_unit_test(test_sha256_hex),
        cmocka_unit_test(test_mem_equal_ct),
        cmocka_unit_test(test_secret_and_apikey_new),
        cmocka_unit_test(test_status_names),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
