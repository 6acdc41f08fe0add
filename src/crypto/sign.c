/*
 * Webhook signatures (SPEC §2, §7): the X-Webhook-Signature value a sender attaches, and
 * the receiver's verification of it. The HMAC itself lives in hash.c; this file owns the
 * header format, the timestamp window and the constant-time comparison.
 */
#include <vocohook/sign.h>

#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>

#include <vocohook/clock.h>

#include "crypto/crypto_int.h"
#include "core/hex_int.h"
#include "core/banned.h"

#define SIG_PREFIX_LEN (sizeof(VH_SIG_PREFIX) - 1)
#define SIG_FORM       "\"sha256=\" followed by 64 hex digits"

/* The signed message is `{timestamp}.{body}`, hashed in place: the body is never copied. */
static void message_parts(struct vh__iov parts[3], const char *ts, size_t ts_len, const void *body,
                          size_t body_len)
{
    parts[0].p = ts;
    parts[0].len = ts_len;
    parts[1].p = ".";
    parts[1].len = 1;
    parts[2].p = body;
    parts[2].len = body_len;
}

int vh_sign(const char *secret, size_t secret_len, const char *timestamp, size_t ts_len,
            const void *body, size_t body_len, char out[VH_SIG_LEN + 1], struct vh_error *err)
{
    unsigned char mac[VH_SHA256_LEN];
    struct vh__iov parts[3];
    int rc;

    if (!secret || secret_len == 0)
        return vh_error_set(err, VH_EINVAL, "sign: the secret is empty");
    if (secret_len > VH_SECRET_MAX)
        return vh_error_set(err, VH_EINVAL, "sign: the secret is %zu bytes (at most %d)",
                            secret_len, VH_SECRET_MAX);
    if ((!timestamp && ts_len) || (!body && body_len))
        return vh_error_set(err, VH_EINVAL, "sign: NULL timestamp or body with a length");

    message_parts(parts, timestamp, ts_len, body, body_len);
    rc = vh__hmac_sha256(secret, secret_len, parts, 3, mac, err);
    if (rc < 0)
        return rc;
    memcpy(out, VH_SIG_PREFIX, SIG_PREFIX_LEN);
    vh__hex_encode(mac, sizeof(mac), out + SIG_PREFIX_LEN);
    return 0;
}

int vh_sig_header_parse(const char *s, size_t len, unsigned char mac[VH_SHA256_LEN],
                        struct vh_error *err)
{
    size_t i, digits;

    if (!s || len == 0)
        return vh_error_set(err, VH_EINVAL, "signature: empty (expected " SIG_FORM ")");
    if (len < SIG_PREFIX_LEN || memcmp(s, VH_SIG_PREFIX, SIG_PREFIX_LEN) != 0)
        return vh_error_set(err, VH_EINVAL, "signature: expected " SIG_FORM);
    /*
     * Positions in messages count from 1 over the whole header value, so "byte 8" is the
     * first hex digit.
     */
    digits = len - SIG_PREFIX_LEN;
    for (i = 0; i < digits && i < VH_SHA256_HEX_LEN; i++)
        if (vh__hex_value((unsigned char)s[SIG_PREFIX_LEN + i]) < 0)
            return vh_error_set(err, VH_EINVAL, "signature: byte %zu is not a hex digit",
                                SIG_PREFIX_LEN + i + 1);
    if (digits < VH_SHA256_HEX_LEN)
        return vh_error_set(err, VH_EINVAL,
                            "signature: expected 64 hex digits after \"sha256=\", got %zu", digits);
    if (digits > VH_SHA256_HEX_LEN)
        return vh_error_set(err, VH_EINVAL,
                            "signature: %zu extra byte%s after the 64 hex digits (expected "
                            "exactly one " SIG_FORM ")",
                            digits - VH_SHA256_HEX_LEN, digits - VH_SHA256_HEX_LEN == 1 ? "" : "s");
    /* Only a fully valid value reaches here, so `mac` is untouched on every failure. */
    for (i = 0; i < VH_SHA256_LEN; i++)
        mac[i] = (unsigned char)(vh__hex_value((unsigned char)s[SIG_PREFIX_LEN + 2 * i]) << 4 |
                                 vh__hex_value((unsigned char)s[SIG_PREFIX_LEN + 2 * i + 1]));
    return 0;
}

/* `ms` as seconds for a message: "300 s", or "300.001 s" when not whole. */
static void format_secs(uint64_t ms, char *out, size_t n)
{
    if (ms % 1000 == 0)
        snprintf(out, n, "%llu s", (unsigned long long)(ms / 1000));
    else
        snprintf(out, n, "%llu.%03llu s", (unsigned long long)(ms / 1000),
                 (unsigned long long)(ms % 1000));
}

/* Every secret must be usable; a bad one is a configuration error, not a failed request. */
static int check_secrets(const struct vh_verify_opts *opts, struct vh_error *err)
{
    size_t i, len;

    if (!opts)
        return vh_error_set(err, VH_EINVAL, "verify: no options");
    if (!opts->secrets || opts->n_secrets == 0)
        return vh_error_set(err, VH_EINVAL, "verify: no secrets");
    for (i = 0; i < opts->n_secrets; i++) {
        if (!opts->secrets[i])
            return vh_error_set(err, VH_EINVAL, "verify: secret %zu is NULL", i + 1);
        len = strnlen(opts->secrets[i], VH_SECRET_MAX + 1);
        if (len == 0)
            return vh_error_set(err, VH_EINVAL, "verify: secret %zu is empty", i + 1);
        if (len > VH_SECRET_MAX)
            return vh_error_set(err, VH_EINVAL, "verify: secret %zu is longer than %d bytes", i + 1,
                                VH_SECRET_MAX);
    }
    return 0;
}

/*
 * Checks `ts_ms` against the window around `now_ms`. The distance is taken in uint64_t,
 * so an extreme caller-supplied `now_ms` cannot overflow.
 */
static enum vh_verify_status check_window(const struct vh_verify_opts *opts, int64_t ts_ms,
                                          const char *ts, struct vh_error *err)
{
    uint64_t dist;
    char d[48], tol[48];
    bool older = opts->now_ms >= ts_ms;

    if (opts->tolerance_ms < 0)
        return VH_VERIFY_OK;
    dist =
        older ? (uint64_t)opts->now_ms - (uint64_t)ts_ms : (uint64_t)ts_ms - (uint64_t)opts->now_ms;
    if (dist <= (uint64_t)opts->tolerance_ms)
        return VH_VERIFY_OK;
    format_secs(dist, d, sizeof(d));
    format_secs((uint64_t)opts->tolerance_ms, tol, sizeof(tol));
    vh_error_set(err, VH_ESIG, "timestamp %.*s is %s %s than now (tolerance %s)", VH_TIME_LEN, ts,
                 d, older ? "older" : "newer", tol);
    return older ? VH_VERIFY_TOO_OLD : VH_VERIFY_TOO_NEW;
}

/*
 * Computes the expected MAC under every secret and compares each in constant time,
 * OR-ing the results without an early exit, so the time taken does not say which secret
 * (if any) matched. Returns 1 on a match, 0 on none, or a negative vh_err.
 */
static int match_any(const struct vh_verify_opts *opts, const char *ts, size_t ts_len,
                     const void *body, size_t body_len, const unsigned char got[VH_SHA256_LEN],
                     struct vh_error *err)
{
    unsigned char want[VH_SHA256_LEN];
    struct vh__iov parts[3];
    unsigned matched = 0;
    size_t i;
    int rc;

    message_parts(parts, ts, ts_len, body, body_len);
    for (i = 0; i < opts->n_secrets; i++) {
        const char *secret = opts->secrets[i];

        rc = vh__hmac_sha256(secret, strlen(secret), parts, 3, want, err);
        if (rc < 0)
            return rc;
        matched |= (unsigned)(CRYPTO_memcmp(want, got, VH_SHA256_LEN) == 0);
    }
    OPENSSL_cleanse(want, sizeof(want));
    return matched ? 1 : 0;
}

/*
 * The checks that need no body, in the order vh_verify reports them. Returns
 * VH_VERIFY_OK with the timestamp in `*ts_ms` and the MAC in `got`, or the status with
 * the reason in `err` (as VH_ESIG).
 */
static enum vh_verify_status check_head(const struct vh_verify_opts *opts, const char *ts,
                                        size_t ts_len, const char *sig, size_t sig_len,
                                        unsigned char got[VH_SHA256_LEN], struct vh_error *err)
{
    struct vh_error sub = VH_ERROR_INIT;
    int64_t ts_ms;

    if (!ts) {
        vh_error_set(err, VH_ESIG, "missing X-Webhook-Timestamp");
        return VH_VERIFY_BAD_TIMESTAMP;
    }
    if (vh_time_parse(ts, ts_len, &ts_ms, &sub) < 0) {
        vh_error_set(err, VH_ESIG, "timestamp: %s", sub.msg);
        return VH_VERIFY_BAD_TIMESTAMP;
    }
    if (!sig) {
        vh_error_set(err, VH_ESIG, "missing X-Webhook-Signature");
        return VH_VERIFY_BAD_SIGNATURE;
    }
    if (vh_sig_header_parse(sig, sig_len, got, &sub) < 0) {
        vh_error_set(err, VH_ESIG, "%s", sub.msg);
        return VH_VERIFY_BAD_SIGNATURE;
    }
    return check_window(opts, ts_ms, ts, err);
}

int vh_verify_head(const struct vh_verify_opts *opts, const char *ts, size_t ts_len,
                   const char *sig, size_t sig_len, enum vh_verify_status *status,
                   struct vh_error *err)
{
    unsigned char got[VH_SHA256_LEN];
    enum vh_verify_status st;

    if (!opts)
        return vh_error_set(err, VH_EINVAL, "verify: no options");
    st = check_head(opts, ts, ts_len, sig, sig_len, got, err);
    if (status)
        *status = st;
    return st == VH_VERIFY_OK ? 0 : VH_ESIG;
}

int vh_verify(const struct vh_verify_opts *opts, const char *ts, size_t ts_len, const char *sig,
              size_t sig_len, const void *body, size_t body_len, enum vh_verify_status *status,
              struct vh_error *err)
{
    unsigned char got[VH_SHA256_LEN];
    enum vh_verify_status st;
    int rc;

    rc = check_secrets(opts, err);
    if (rc < 0)
        return rc;
    if (!body && body_len)
        return vh_error_set(err, VH_EINVAL, "verify: NULL body with a length");

    st = check_head(opts, ts, ts_len, sig, sig_len, got, err);
    if (st != VH_VERIFY_OK) {
        rc = VH_ESIG;
        goto out;
    }
    rc = match_any(opts, ts, ts_len, body, body_len, got, err);
    if (rc < 0)
        return rc; /* an OpenSSL failure: no verdict, so `*status` is left alone */
    if (rc == 0) {
        st = VH_VERIFY_MISMATCH;
        if (opts->n_secrets == 1)
            rc = vh_error_set(err, VH_ESIG, "signature does not match the secret");
        else
            rc = vh_error_set(err, VH_ESIG, "signature does not match any of %zu secrets",
                              opts->n_secrets);
        goto out;
    }
    rc = 0;
out:
    if (status)
        *status = st;
    return rc;
}

const char *vh_verify_status_name(enum vh_verify_status st)
{
    switch (st) {
    case VH_VERIFY_OK:
        return "ok";
    case VH_VERIFY_BAD_TIMESTAMP:
        return "bad_timestamp";
    case VH_VERIFY_BAD_SIGNATURE:
        return "bad_signature";
    case VH_VERIFY_TOO_OLD:
        return "too_old";
    case VH_VERIFY_TOO_NEW:
        return "too_new";
    case VH_VERIFY_MISMATCH:
        return "mismatch";
    }
    return "unknown";
}

int vh_sha256_hex(const void *p, size_t n, char out[VH_SHA256_HEX_LEN + 1], struct vh_error *err)
{
    unsigned char md[VH_SHA256_LEN];
    int rc = vh__sha256(p, n, md, err);

    if (rc < 0)
        return rc;
    vh__hex_encode(md, sizeof(md), out);
    return 0;
}

bool vh_mem_equal_ct(const void *a, const void *b, size_t n)
{
    return CRYPTO_memcmp(a, b, n) == 0;
}
