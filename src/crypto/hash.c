#include "crypto/crypto_int.h"

#include <pthread.h>

#include <openssl/evp.h>

#include "core/banned.h"

/*
 * The HMAC and digest implementations are fetched from the default provider once:
 * EVP_MAC_fetch and EVP_MD_fetch take a global lock and a hash-table lookup per call, which
 * costs more than signing a small body.
 */
static EVP_MAC *hmac_impl;
static EVP_MD *sha256_impl;
static pthread_once_t fetch_once = PTHREAD_ONCE_INIT;

static void fetch_impls(void)
{
    hmac_impl = EVP_MAC_fetch(NULL, "HMAC", NULL);
    sha256_impl = EVP_MD_fetch(NULL, "SHA256", NULL);
}

int vh__hmac_sha256(const void *key, size_t key_len, const struct vh__iov *parts, size_t n,
                    unsigned char out[VH_SHA256_LEN], struct vh_error *err)
{
    OSSL_PARAM params[2];
    EVP_MAC_CTX *ctx = NULL;
    size_t out_len = 0, i;
    int rc = VH_ENOMEM;
    static const unsigned char empty_key[1] = {0};
    static char digest_name[] = "SHA256";

    pthread_once(&fetch_once, fetch_impls);
    if (!hmac_impl)
        return vh_error_set(err, VH_ENOMEM, "hmac: openssl has no HMAC implementation");
    ctx = EVP_MAC_CTX_new(hmac_impl);
    if (!ctx)
        goto fail;
    params[0] = OSSL_PARAM_construct_utf8_string("digest", digest_name, 0);
    params[1] = OSSL_PARAM_construct_end();
    /* OpenSSL refuses a NULL key; an empty key is a valid (if useless) HMAC key. */
    if (!EVP_MAC_init(ctx, key_len ? key : empty_key, key_len, params))
        goto fail;
    for (i = 0; i < n; i++)
        if (parts[i].len && !EVP_MAC_update(ctx, parts[i].p, parts[i].len))
            goto fail;
    if (!EVP_MAC_final(ctx, out, &out_len, VH_SHA256_LEN) || out_len != VH_SHA256_LEN)
        goto fail;
    rc = 0;
fail:
    EVP_MAC_CTX_free(ctx);
    if (rc < 0)
        return vh_error_set(err, rc, "hmac: openssl failed");
    return 0;
}

int vh__sha256(const void *p, size_t n, unsigned char out[VH_SHA256_LEN], struct vh_error *err)
{
    unsigned int len = 0;

    pthread_once(&fetch_once, fetch_impls);
    if (!sha256_impl || !EVP_Digest(p, n, out, &len, sha256_impl, NULL) || len != VH_SHA256_LEN)
        return vh_error_set(err, VH_ENOMEM, "sha256: openssl failed");
    return 0;
}

void vh__hex_encode(const unsigned char *p, size_t n, char *out)
{
    static const char hex[] = "0123456789abcdef";
    size_t i;

    for (i = 0; i < n; i++) {
        out[2 * i] = hex[p[i] >> 4];
        out[2 * i + 1] = hex[p[i] & 0x0f];
    }
    out[2 * n] = '\0';
}
