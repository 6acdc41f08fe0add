/*
 * S3 recording links (SPEC §6): AWS Signature Version 4 query presigning of a GET, and the
 * object URL it signs. Pure: the signing time is an input.
 */
#ifndef VOCOHOOK_PRESIGN_H
#define VOCOHOOK_PRESIGN_H

#include <stdbool.h>
#include <stdint.h>

#include <vocohook/buf.h>
#include <vocohook/common.h>
#include <vocohook/error.h>

#define VH_PRESIGN_EXPIRES_DEFAULT 86400  /* 24 h, the contract's recording link life */
#define VH_PRESIGN_EXPIRES_MAX     604800 /* SigV4's own maximum: 7 days */

struct vh_presign {
    const char *url;           /* http(s)://host[:port]/path, no query or fragment */
    const char *region;        /* e.g. "us-east-1" */
    const char *access_key;    /* AWS access key id */
    const char *secret_key;    /* AWS secret access key */
    const char *session_token; /* NULL, or a temporary token (X-Amz-Security-Token) */
    int64_t at_ms;             /* signing time (ms since the epoch); its second is used */
    int64_t expires_s;         /* 1..VH_PRESIGN_EXPIRES_MAX; 0 means the default */
};

/*
 * Appends the presigned GET URL to `out`: the URL's path canonicalized as S3 wants it
 * (each segment URI-encoded once; existing %XX escapes kept, uppercased, and those of
 * unreserved characters decoded; the host lowercased; a default port dropped), then
 * X-Amz-Algorithm, X-Amz-Credential, X-Amz-Date, X-Amz-Expires, X-Amz-Security-Token (with
 * a session token), X-Amz-SignedHeaders=host and X-Amz-Signature. A path with a "." or ".."
 * segment is rejected (clients rewrite those). Returns 0, VH_EINVAL naming the bad field,
 * VH_ENOMEM or VH_ETOOBIG; on failure `out` is as it was.
 */
VH_API int vh_presign_url(const struct vh_presign *p, struct vh_buf *out, struct vh_error *err);

/*
 * Appends the URL of object `key` in `bucket` on `endpoint` (`https://s3.amazonaws.com`,
 * `http://127.0.0.1:4569`): virtual-hosted (`scheme://bucket.host/key`) or, with
 * `path_style`, `scheme://host/bucket/key`. The key is URI-encoded except '/'.
 * Virtual-hosted style needs a host name (not an IP) and, over https, a bucket without '.'
 * (the wildcard certificate would not match). Returns 0, VH_EINVAL, VH_ENOMEM or
 * VH_ETOOBIG; on failure `out` is as it was.
 */
VH_API int vh_s3_object_url(const char *endpoint, const char *bucket, const char *key,
                            bool path_style, struct vh_buf *out, struct vh_error *err);

#endif
