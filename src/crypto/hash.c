#include "crypto/crypto_int.h"

#include <pthread.h>
#include <stdbool.h>
#include <string.h>

#include <vocohook/alloc.h>

#include <openssl/crypto.h>
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

/*
 * Each thread also keeps one HMAC context and re-keys it only when the key changes. Creating
 * a context and setting its digest allocates several objects and looks the digest up by
 * name, which cost as much as the MAC of a small body: reuse made a 64-byte signature 2x and
 * a 2 KB one 1.45x faster (50 KB: 1.03x). Keying it again costs two more SHA-256 blocks and
 * the key's parameters: 2.8 against 2.0 us for a 2.2 KB body with the same key (session 12),
 * and a sender signs every request to an endpoint with that endpoint's one secret, a
 * receiver verifies with its one (or two, while rotating). So the thread keeps a copy of the
 * last key beside the context, compared in constant time; both are wiped when the key
 * changes, when a call fails and at the thread's exit. Keys longer than KEY_KEPT_MAX are
 * never kept (the contract's secrets are 70 bytes).
 */
#define KEY_KEPT_MAX 256

struct hmac_tls {
    EVP_MAC_CTX *ctx;
    size_t key_len;
    bool keyed; /* ctx holds `key` */
    unsigned char key[KEY_KEPT_MAX];
};

static pthread_key_t ctx_key;
static bool ctx_key_ok;

static void forget_key(struct hmac_tls *t)
{
    OPENSSL_cleanse(t->key, sizeof(t->key));
    t->key_len = 0;
    t->keyed = false;
}

static void free_tls(void *p)
{
    struct hmac_tls *t = p;

    forget_key(t);
    EVP_MAC_CTX_free(t->ctx);
    vh_free(t);
}

static void fetch_impls(void)
{
    hmac_impl = EVP_MAC_fetch(NULL, "HMAC", NULL);
    sha256_impl = EVP_MD_fetch(NULL, "SHA256", NULL);
    ctx_key_ok = pthread_key_create(&ctx_key, free_tls) == 0;
}

static EVP_MAC_CTX *new_ctx(void)
{
    OSSL_PARAM params[2];
    static char digest_name[] = "SHA256";
    EVP_MAC_CTX *ctx = EVP_MAC_CTX_new(hmac_impl);

    if (!ctx)
        return NULL;
    params[0] = OSSL_PARAM_construct_utf8_string("digest", digest_name, 0);
    params[1] = OSSL_PARAM_construct_end();
    if (!EVP_MAC_CTX_set_params(ctx, params)) {
        EVP_MAC_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

/*
 * This thread's context and last key, made on first use. `*cached` says whether the thread
 * keeps them; when it cannot (no thread key), the caller frees them after use.
 */
static struct hmac_tls *get_tls(bool *cached)
{
    struct hmac_tls *t = ctx_key_ok ? pthread_getspecific(ctx_key) : NULL;

    *cached = t != NULL;
    if (t)
        return t;
    t = vh_malloc(sizeof(*t));
    if (!t)
        return NULL;
    memset(t, 0, sizeof(*t));
    t->ctx = new_ctx();
    if (!t->ctx) {
        vh_free(t);
        return NULL;
    }
    *cached = ctx_key_ok && pthread_setspecific(ctx_key, t) == 0;
    return t;
}

/* Starts a MAC under `key`: reuses the context's key when it is the same. */
static int mac_init(struct hmac_tls *t, const void *key, size_t key_len, bool cached)
{
    static const unsigned char empty_key[1] = {0};

    if (cached && t->keyed && t->key_len == key_len &&
        (key_len == 0 || CRYPTO_memcmp(t->key, key, key_len) == 0))
        return EVP_MAC_init(t->ctx, NULL, 0, NULL); /* NULL: the key set before */
    forget_key(t);
    /* Never a NULL key here: an empty key is a valid (if useless) HMAC key. */
    if (!EVP_MAC_init(t->ctx, key_len ? key : empty_key, key_len, NULL))
        return 0;
    if (cached && key_len <= KEY_KEPT_MAX) {
        if (key_len)
            memcpy(t->key, key, key_len);
        t->key_len = key_len;
        t->keyed = true;
    }
    return 1;
}

int vh__hmac_sha256(const void *key, size_t key_len, const struct vh__iov *parts, size_t n,
                    unsigned char out[VH_SHA256_LEN], struct vh_error *err)
{
    struct hmac_tls *t;
    size_t out_len = 0, i;
    bool cached = false;
    int rc = VH_ENOMEM;

    pthread_once(&fetch_once, fetch_impls);
    if (!hmac_impl)
        return vh_error_set(err, VH_ENOMEM, "hmac: openssl has no HMAC implementation");
    t = get_tls(&cached);
    if (!t)
        goto fail;
    if (!mac_init(t, key, key_len, cached))
        goto fail;
    for (i = 0; i < n; i++)
        if (parts[i].len && !EVP_MAC_update(t->ctx, parts[i].p, parts[i].len))
            goto fail;
    if (!EVP_MAC_final(t->ctx, out, &out_len, VH_SHA256_LEN) || out_len != VH_SHA256_LEN)
        goto fail;
    rc = 0;
fail:
    if (rc < 0 && cached) {
        /* A context that failed half-way is not trusted again. */
        pthread_setspecific(ctx_key, NULL);
        cached = false;
    }
    if (t && !cached)
        free_tls(t);
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
