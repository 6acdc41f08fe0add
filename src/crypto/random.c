/*
 * Randomness, at the edge: everything that needs fresh random bytes comes through here,
 * so the pure formatters (vh_uuid_format) stay testable with fixed bytes.
 */
#include <vocohook/id.h>
#include <vocohook/sign.h>

#include <limits.h>

#include <openssl/err.h>
#include <openssl/rand.h>

#include "crypto/crypto_int.h"
#include "core/banned.h"

int vh_random_bytes(void *out, size_t n, struct vh_error *err)
{
    if (n > INT_MAX)
        return vh_error_set(err, VH_EINVAL, "random: %zu bytes requested", n);
    if (RAND_bytes(out, (int)n) != 1)
        return vh_error_set(err, VH_EIO, "random: the OS random source failed (%lu)",
                            ERR_get_error());
    return 0;
}

int vh_uuid_new(char out[VH_UUID_LEN + 1], struct vh_error *err)
{
    unsigned char rnd[16];
    int rc = vh_random_bytes(rnd, sizeof(rnd), err);

    if (rc < 0)
        return rc;
    vh_uuid_format(rnd, out);
    return 0;
}

/* `prefix` + 64 lowercase hex digits of 32 fresh random bytes. */
static int random_token(const char *prefix, size_t prefix_len, char *out, struct vh_error *err)
{
    unsigned char rnd[32];
    size_t i;
    int rc = vh_random_bytes(rnd, sizeof(rnd), err);

    if (rc < 0)
        return rc;
    for (i = 0; i < prefix_len; i++)
        out[i] = prefix[i];
    vh__hex_encode(rnd, sizeof(rnd), out + prefix_len);
    return 0;
}

int vh_secret_new(char out[VH_SECRET_LEN + 1], struct vh_error *err)
{
    return random_token(VH_SECRET_PREFIX, sizeof(VH_SECRET_PREFIX) - 1, out, err);
}

int vh_apikey_new(char out[VH_APIKEY_LEN + 1], struct vh_error *err)
{
    return random_token(VH_APIKEY_PREFIX, sizeof(VH_APIKEY_PREFIX) - 1, out, err);
}
