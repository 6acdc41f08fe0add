#include "crypto/tls_int.h"

#include <pthread.h>

#include <openssl/ssl.h>

#include "core/banned.h"

static pthread_once_t slot_once = PTHREAD_ONCE_INIT;
static int slot_index = -1; /* our ex_data index on an SSL_CTX: where the slot is kept */

static void slot_index_make(void)
{
    slot_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

/*
 * Writes the SSL the handshake starts on into the slot kept in its context. Called again
 * later (alerts, the close, TLS 1.3 messages after the handshake): the same SSL if at all.
 */
static void on_info(const SSL *ssl, int where, int ret)
{
    const void **slot;

    (void)ret;
    if (!(where & SSL_CB_HANDSHAKE_START))
        return;
    slot = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), slot_index);
    if (slot)
        *slot = ssl;
}

bool vh__tls_ctx_setup(void *ssl_ctx, const void **ssl_slot)
{
    SSL_CTX *ctx = ssl_ctx;

    pthread_once(&slot_once, slot_index_make);
    if (slot_index < 0 || !SSL_CTX_set_ex_data(ctx, slot_index, (void *)ssl_slot))
        return false;
    SSL_CTX_set_info_callback(ctx, on_info);
    SSL_CTX_set_read_ahead(ctx, 1);
    return true;
}

bool vh__tls_has_pending(const void *ssl)
{
    return SSL_has_pending((const SSL *)ssl) != 0;
}
