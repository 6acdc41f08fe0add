/*
 * Webhook signatures (SPEC §2) and the secrets behind them.
 *
 * The signature of an attempt is `sha256=` + lowercase hex of
 * HMAC-SHA256(key = the endpoint secret's bytes, message = `{timestamp}.{raw body}`),
 * where timestamp is the X-Webhook-Timestamp header value. Verification compares in
 * constant time, checks the timestamp's exact form and a window around `now`, and accepts
 * any of several secrets (rotation). Thread-safe.
 */
#ifndef VOCOHOOK_SIGN_H
#define VOCOHOOK_SIGN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <vocohook/common.h>
#include <vocohook/error.h>

#define VH_SIG_PREFIX     "sha256="
#define VH_SIG_LEN        71 /* "sha256=" + 64 hex */
#define VH_SHA256_LEN     32
#define VH_SHA256_HEX_LEN 64
#define VH_SECRET_PREFIX  "whsec_"
#define VH_SECRET_LEN     70 /* "whsec_" + 64 hex (32 random bytes) */
#define VH_APIKEY_PREFIX  "rg_live_"
#define VH_APIKEY_LEN     72   /* "rg_live_" + 64 hex (32 random bytes) */
#define VH_SECRET_MAX     1024 /* longest secret accepted for signing or verifying */

/*
 * Writes the X-Webhook-Signature value (VH_SIG_LEN bytes and a NUL) into `out` for
 * `timestamp` and `body`. The timestamp is used as given (the caller formats it). Returns
 * 0; VH_EINVAL for an empty or over-long secret; VH_ENOMEM if OpenSSL cannot allocate.
 */
VH_API int vh_sign(const char *secret, size_t secret_len, const char *timestamp, size_t ts_len,
                   const void *body, size_t body_len, char out[VH_SIG_LEN + 1],
                   struct vh_error *err);

/*
 * Parses a signature header value: exactly `sha256=` and 64 hex digits (either case).
 * Stores the 32 MAC bytes in `mac`. Returns 0 or VH_EINVAL naming what is wrong.
 */
VH_API int vh_sig_header_parse(const char *s, size_t len, unsigned char mac[VH_SHA256_LEN],
                               struct vh_error *err);

enum vh_verify_status {
    VH_VERIFY_OK = 0,
    VH_VERIFY_BAD_TIMESTAMP, /* header missing or not YYYY-MM-DDTHH:MM:SS.mmmZ */
    VH_VERIFY_BAD_SIGNATURE, /* header missing or not sha256=<64 hex> */
    VH_VERIFY_TOO_OLD,       /* timestamp earlier than now - tolerance */
    VH_VERIFY_TOO_NEW,       /* timestamp later than now + tolerance */
    VH_VERIFY_MISMATCH       /* well-formed, in the window, but no secret matches */
};

struct vh_verify_opts {
    const char *const *secrets; /* borrowed; NUL-terminated candidate secrets */
    size_t n_secrets;           /* at least 1 */
    int64_t tolerance_ms;       /* window both ways; < 0 disables the check */
    int64_t now_ms;             /* the current time (an input: the caller reads the clock) */
};

/*
 * Verifies one request: `ts`/`sig` are the raw header values (NULL when missing), `body`
 * the raw bytes as received. Returns 0 when a secret matches inside the window; VH_ESIG
 * with a one-line reason otherwise (and `*status`, when non-NULL, says which); VH_EINVAL
 * when `opts` is NULL, has no secrets, or has a NULL, empty or over-VH_SECRET_MAX secret;
 * VH_ENOMEM if OpenSSL cannot allocate (`*status` is written only with 0 and VH_ESIG).
 * Every candidate is compared, in constant time, so the time taken does not depend on which
 * secret (if any) matched.
 */
VH_API int vh_verify(const struct vh_verify_opts *opts, const char *ts, size_t ts_len,
                     const char *sig, size_t sig_len, const void *body, size_t body_len,
                     enum vh_verify_status *status, struct vh_error *err);

/*
 * The checks of vh_verify that need no body: both headers present and well-formed, the
 * timestamp inside the window. Returns 0 when the request may still verify (its body is
 * then worth reading), otherwise as vh_verify (VH_ESIG with the same reason and `*status`
 * it would give). `opts->secrets` is not used and may be empty.
 */
VH_API int vh_verify_head(const struct vh_verify_opts *opts, const char *ts, size_t ts_len,
                          const char *sig, size_t sig_len, enum vh_verify_status *status,
                          struct vh_error *err);

/* A short stable name for a status ("too_old"), for logs and metrics. */
VH_API const char *vh_verify_status_name(enum vh_verify_status st);

/* `n` bytes from the OS random source (OpenSSL's CSPRNG). Returns 0 or VH_EIO. */
VH_API int vh_random_bytes(void *out, size_t n, struct vh_error *err);

/* A new endpoint secret `whsec_<64 hex>` with a NUL. Returns 0 or VH_EIO. */
VH_API int vh_secret_new(char out[VH_SECRET_LEN + 1], struct vh_error *err);

/* A new partner API key `rg_live_<64 hex>` with a NUL. Returns 0 or VH_EIO. */
VH_API int vh_apikey_new(char out[VH_APIKEY_LEN + 1], struct vh_error *err);

/* Lowercase hex SHA-256 of `p` with a NUL (how API keys are stored). Returns 0 or VH_ENOMEM. */
VH_API int vh_sha256_hex(const void *p, size_t n, char out[VH_SHA256_HEX_LEN + 1],
                         struct vh_error *err);

/* Compares `n` bytes in time that depends only on `n`. */
VH_API bool vh_mem_equal_ct(const void *a, const void *b, size_t n);

#endif
