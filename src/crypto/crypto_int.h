/*
 * Private to the library: the hash primitives every crypto file shares. OpenSSL stays
 * behind these two functions and inside src/crypto/.
 */
#ifndef VH_CRYPTO_INT_H
#define VH_CRYPTO_INT_H

#include <stddef.h>

#include <vocohook/error.h>
#include <vocohook/sign.h>

/*
 * HMAC-SHA256 over the concatenation of `n` message parts (so `{ts}.{body}` is signed
 * without copying the body). Returns 0, or VH_ENOMEM when OpenSSL cannot allocate.
 */
struct vh__iov {
    const void *p;
    size_t len;
};
int vh__hmac_sha256(const void *key, size_t key_len, const struct vh__iov *parts, size_t n,
                    unsigned char out[VH_SHA256_LEN], struct vh_error *err);

/* SHA-256 of `n` bytes. Returns 0, or VH_ENOMEM. */
int vh__sha256(const void *p, size_t n, unsigned char out[VH_SHA256_LEN], struct vh_error *err);

/* Lowercase hex of `n` bytes into `out` (2n bytes and a NUL). */
void vh__hex_encode(const unsigned char *p, size_t n, char *out);

#endif
