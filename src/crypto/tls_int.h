/*
 * Private to the library: what the engine sets on libcurl's OpenSSL contexts, kept here so
 * that OpenSSL stays inside src/crypto/ (docs/decisions.md, "The engine reads TLS ahead").
 */
#ifndef VH_CRYPTO_TLS_INT_H
#define VH_CRYPTO_TLS_INT_H

#include <stdbool.h>

/*
 * Sets up the context libcurl made for one TLS connection (`ssl_ctx` is an SSL_CTX *, used
 * by that connection alone, as libcurl 7.x does): OpenSSL reads as many bytes as the socket
 * has into its own buffer, so that a record's header and body come in one read instead of
 * two, and the SSL the handshake starts on is written to `*ssl_slot` (it lives as long as
 * the connection), for vh__tls_has_pending. Returns false, with nothing set, when no slot
 * could be kept: read ahead with no way to ask what OpenSSL holds would hide bytes from the
 * caller's checks of the socket.
 */
bool vh__tls_ctx_setup(void *ssl_ctx, const void **ssl_slot);

/*
 * Whether OpenSSL holds bytes of this connection (`ssl` is an SSL *) that a read would
 * return or process: records read ahead, or data decrypted and not yet read.
 */
bool vh__tls_has_pending(const void *ssl);

#endif
