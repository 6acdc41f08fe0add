/*
 * Identifiers: RFC 4122 version 4 UUIDs for what vocohook creates, and the validation of
 * what it receives (SPEC §2).
 */
#ifndef VOCOHOOK_ID_H
#define VOCOHOOK_ID_H

#include <stdbool.h>
#include <stddef.h>

#include <vocohook/common.h>
#include <vocohook/error.h>

#define VH_UUID_LEN 36 /* 8-4-4-4-12 lowercase hex */
#define VH_ID_MAX   64 /* incoming ids: 1 to 64 of [A-Za-z0-9_-] */

/*
 * Formats 16 random bytes as a v4 UUID (version and variant bits set) with a NUL.
 * Pure: the caller supplies the randomness.
 */
VH_API void vh_uuid_format(const unsigned char rnd[16], char out[VH_UUID_LEN + 1]);

/* A fresh v4 UUID from the OS random source. Returns 0 or VH_EIO. */
VH_API int vh_uuid_new(char out[VH_UUID_LEN + 1], struct vh_error *err);

/* True when `s` is 1 to 64 bytes of [A-Za-z0-9_-], the form of every incoming id. */
VH_API bool vh_id_is_valid(const char *s, size_t len);

/* True when `s` is E.164: '+', then 2 to 15 digits, the first not '0'. */
VH_API bool vh_e164_is_valid(const char *s, size_t len);

#endif
