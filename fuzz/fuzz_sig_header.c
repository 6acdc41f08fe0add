/*
 * Fuzzes the receiver's side of SPEC §7: the X-Webhook-Signature parser on its own, then
 * vh_verify on `{timestamp}\n{signature}[\n{body}]`.
 *
 * Invariants (abort() on a violation):
 * - vh_sig_header_parse accepts only 71 bytes starting with "sha256=", and the MAC it
 *   returns re-encodes to the input's hex digits (lowercased); a rejection is VH_EINVAL
 *   with a non-empty, printable, one-line message.
 * - vh_verify returns 0 or VH_ESIG, never anything else; 0 means status OK and that one of
 *   the secrets really signs the input; VH_ESIG comes with a known status and a message.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <vocohook/sign.h>

#include "crypto/crypto_int.h"

#define NOW_MS INT64_C(1773585128000) /* 2026-03-15T14:32:08.000Z, the seeds' timestamp */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok)
{
    if (!ok)
        abort();
}

static void check_message(const struct vh_error *err)
{
    size_t i;

    check(err->msg[0] != '\0');
    for (i = 0; err->msg[i]; i++)
        check(err->msg[i] >= 0x20 && err->msg[i] < 0x7f);
}

static char lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static void fuzz_parse(const uint8_t *data, size_t size)
{
    unsigned char mac[VH_SHA256_LEN];
    char hex[VH_SHA256_HEX_LEN + 1];
    struct vh_error err = VH_ERROR_INIT;
    size_t i;
    int rc;

    rc = vh_sig_header_parse((const char *)data, size, mac, &err);
    if (rc != 0) {
        check(rc == VH_EINVAL && err.code == VH_EINVAL);
        check_message(&err);
        return;
    }
    check(size == VH_SIG_LEN && memcmp(data, VH_SIG_PREFIX, 7) == 0);
    vh__hex_encode(mac, sizeof(mac), hex);
    for (i = 0; i < VH_SHA256_HEX_LEN; i++)
        check(hex[i] == lower((char)data[7 + i]));
}

/* Splits `ts\nsig[\nbody]`; no newline at all means a missing signature header. */
static void fuzz_verify(const uint8_t *data, size_t size)
{
    static const char *const secrets[] = {"whsec_fuzz_old", "whsec_fuzz"};
    const struct vh_verify_opts opts = {secrets, 2, 300000, NOW_MS};
    const char *ts = (const char *)data, *sig = NULL, *body = "";
    const char *nl;
    size_t ts_len = size, sig_len = 0, body_len = 0, i;
    enum vh_verify_status st = (enum vh_verify_status) - 1;
    struct vh_error err = VH_ERROR_INIT;
    int rc, signed_by_one = 0;

    nl = size ? memchr(data, '\n', size) : NULL;
    if (nl) {
        ts_len = (size_t)(nl - ts);
        sig = nl + 1;
        sig_len = size - ts_len - 1;
        nl = sig_len ? memchr(sig, '\n', sig_len) : NULL;
        if (nl) {
            body = nl + 1;
            body_len = sig_len - (size_t)(nl - sig) - 1;
            sig_len = (size_t)(nl - sig);
        }
    }
    rc = vh_verify(&opts, size ? ts : NULL, ts_len, sig, sig_len, body, body_len, &st, &err);
    check(rc == 0 || rc == VH_ESIG);
    if (rc == VH_ESIG) {
        check(err.code == VH_ESIG && st > VH_VERIFY_OK && st <= VH_VERIFY_MISMATCH);
        check_message(&err);
        return;
    }
    check(st == VH_VERIFY_OK && err.code == 0 && sig_len == VH_SIG_LEN);
    for (i = 0; i < 2; i++) {
        char want[VH_SIG_LEN + 1];
        size_t k, same = 0;

        check(vh_sign(secrets[i], strlen(secrets[i]), ts, ts_len, body, body_len, want, NULL) == 0);
        for (k = 0; k < VH_SIG_LEN; k++)
            same += want[k] == lower(sig[k]);
        signed_by_one |= same == VH_SIG_LEN;
    }
    check(signed_by_one);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_parse(data, size);
    fuzz_verify(data, size);
    return 0;
}
