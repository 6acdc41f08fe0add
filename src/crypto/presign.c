/*
 * AWS Signature Version 4, query-string authentication, for S3 GET links (SPEC §6).
 *
 * Reference: "Authenticating Requests: Using Query Parameters (AWS Signature Version 4)",
 * https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-query-string-auth.html. The signed
 * request is
 *
 *     GET\n<canonical URI>\n<canonical query>\nhost:<host>\n\nhost\nUNSIGNED-PAYLOAD
 *
 * and the URL we hand out is built from the very same canonical URI and query, so what is
 * signed is byte for byte what the client sends.
 */
#include <vocohook/presign.h>

#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

#include <vocohook/clock.h>

#include "crypto/crypto_int.h"
#include "core/hex_int.h"
#include "core/banned.h"

/*
 * Input bounds. A URL or token past these is a configuration mistake, not a real S3
 * object: S3 keys are at most 1024 bytes, and STS session tokens are a few KiB.
 */
#define URL_MAX     4096
#define HOST_MAX    255
#define REGION_MAX  64
#define ACCESS_MAX  128
#define SECRET_MAX  1024
#define TOKEN_MAX   8192
#define KEY_MAX     1024 /* S3's own limit on an object key */
#define BUCKET_MIN  3
#define BUCKET_MAX  63
#define SCRATCH_MAX (64 * 1024) /* the canonical request: the bounds above keep it far below */

#define ALGORITHM  "AWS4-HMAC-SHA256"
#define SCOPE_TAIL "/s3/aws4_request"
#define AMZ_DATE   16 /* strlen("20130524T000000Z") */
#define SCOPE_DATE 8  /* strlen("20130524") */

struct url {
    bool https;
    const char *host; /* borrowed from the input; lowercased when copied out */
    size_t host_len;
    unsigned port; /* 0 when the URL names none */
    const char *path;
    size_t path_len; /* 0: no path at all */
};

static bool is_alnum(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* RFC 3986 unreserved, the characters SigV4's UriEncode leaves alone. */
static bool is_unreserved(unsigned char c)
{
    return is_alnum(c) || c == '-' || c == '.' || c == '_' || c == '~';
}

static bool is_ctl_or_space(unsigned char c)
{
    return c <= 0x20 || c == 0x7f;
}

static char lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static unsigned default_port(const struct url *u)
{
    return u->https ? 443 : 80;
}

/*
 * Splits an absolute http(s) URL. `what` names the field in messages ("url", "endpoint").
 * Only the forms a presigned S3 link can take are accepted: no user info, query or
 * fragment, and nothing a client would rewrite before sending.
 */
static int url_parse(const char *what, const char *s, struct url *u, struct vh_error *err)
{
    size_t len, i, scheme_len, auth_end;
    const char *auth;

    if (!s || !*s)
        return vh_error_set(err, VH_EINVAL, "%s: must not be empty", what);
    len = strnlen(s, URL_MAX + 1);
    if (len > URL_MAX)
        return vh_error_set(err, VH_EINVAL, "%s: is over %d bytes", what, URL_MAX);
    for (i = 0; i < len; i++)
        if (is_ctl_or_space((unsigned char)s[i]))
            return vh_error_set(err, VH_EINVAL, "%s: control character or space at byte %zu", what,
                                i + 1);
    if (len >= 8 && strncasecmp(s, "https://", 8) == 0) {
        u->https = true;
        scheme_len = 8;
    } else if (len >= 7 && strncasecmp(s, "http://", 7) == 0) {
        u->https = false;
        scheme_len = 7;
    } else {
        return vh_error_set(err, VH_EINVAL, "%s: must start with http:// or https://", what);
    }
    if (memchr(s, '#', len))
        return vh_error_set(err, VH_EINVAL, "%s: must not have a fragment ('#')", what);
    if (memchr(s, '?', len))
        return vh_error_set(err, VH_EINVAL, "%s: must not have a query ('?')", what);

    auth = s + scheme_len;
    auth_end = strcspn(auth, "/");
    if (memchr(auth, '@', auth_end))
        return vh_error_set(err, VH_EINVAL, "%s: must not have user info ('@')", what);
    u->path = auth + auth_end;
    u->path_len = len - scheme_len - auth_end;

    /* Host: a bracketed IPv6 literal, or a name (an IPv4 address is a name here). */
    u->host = auth;
    if (auth_end && auth[0] == '[') {
        const char *close = memchr(auth, ']', auth_end);

        if (!close || close == auth + 1)
            return vh_error_set(err, VH_EINVAL, "%s: bad IPv6 host", what);
        for (i = 1; auth + i < close; i++)
            if (vh__hex_value((unsigned char)auth[i]) < 0 && auth[i] != ':' && auth[i] != '.')
                return vh_error_set(err, VH_EINVAL, "%s: bad IPv6 host", what);
        u->host_len = (size_t)(close - auth) + 1;
        if (u->host_len < auth_end && auth[u->host_len] != ':')
            return vh_error_set(err, VH_EINVAL, "%s: bad IPv6 host", what);
    } else {
        for (i = 0; i < auth_end && auth[i] != ':'; i++)
            if (!is_alnum((unsigned char)auth[i]) && auth[i] != '-' && auth[i] != '.' &&
                auth[i] != '_')
                return vh_error_set(err, VH_EINVAL,
                                    "%s: host has a character not allowed in a host name at "
                                    "byte %zu",
                                    what, scheme_len + i + 1);
        u->host_len = i;
    }
    if (!u->host_len)
        return vh_error_set(err, VH_EINVAL, "%s: host must not be empty", what);
    if (u->host_len > HOST_MAX)
        return vh_error_set(err, VH_EINVAL, "%s: host is over %d bytes", what, HOST_MAX);

    /* Port: up to 5 digits after the ':' that ends the host. */
    u->port = 0;
    if (u->host_len < auth_end) {
        unsigned long port = 0;

        for (i = u->host_len + 1; i < auth_end; i++) {
            if (auth[i] < '0' || auth[i] > '9' || i - u->host_len > 5)
                return vh_error_set(err, VH_EINVAL, "%s: port must be a number in 1..65535", what);
            port = port * 10 + (unsigned long)(auth[i] - '0');
        }
        if (port < 1 || port > 65535)
            return vh_error_set(err, VH_EINVAL, "%s: port must be a number in 1..65535", what);
        u->port = (unsigned)port;
    }
    return 0;
}

/* `host[:port]`, the host lowercased and a default port left out: the Host header. */
static int add_host(struct vh_buf *out, const struct url *u)
{
    size_t i, start = out->len;
    int rc;

    rc = vh_buf_add(out, u->host, u->host_len);
    if (rc < 0)
        return rc;
    for (i = start; i < out->len; i++)
        out->data[i] = lower(out->data[i]);
    if (u->port && u->port != default_port(u))
        rc = vh_buf_addf(out, ":%u", u->port);
    return rc;
}

static int add_escape(struct vh_buf *out, unsigned char c)
{
    static const char hex[] = "0123456789ABCDEF";
    const char esc[3] = {'%', hex[c >> 4], hex[c & 0x0f]};

    return vh_buf_add(out, esc, sizeof(esc));
}

/* What add_uri_encoded() is encoding; SigV4's UriEncode differs only in '/' and '%'. */
enum uri_part {
    URI_KEY,   /* a raw object key: '/' stays, every other reserved byte is escaped */
    URI_PATH,  /* a URL's path, maybe already encoded: '/' and valid %XX escapes stay */
    URI_VALUE, /* a query value: only unreserved bytes stay ('/' is %2F) */
};

/*
 * Appends `p` URI-encoded as SigV4 wants it: unreserved bytes as they are, every other
 * byte as %XX (uppercase), '/' as `part` says. For URI_PATH the input is taken as already
 * encoded: a valid %XX stays one escape (uppercased), or becomes its character when that
 * is unreserved (RFC 3986 §6.2.2.2), so a pre-encoded key is not encoded twice and the
 * result is the one form that servers which decode and re-encode the path compute too.
 * A '%' not followed by two hex digits is a literal percent sign.
 */
static int add_uri_encoded(struct vh_buf *out, const char *p, size_t n, enum uri_part part)
{
    size_t i, run = 0; /* bytes just before p[i] that go out unchanged */
    int hi, lo, rc = 0;

    for (i = 0; i < n && rc >= 0; i++) {
        unsigned char c = (unsigned char)p[i];

        if (is_unreserved(c) || (c == '/' && part != URI_VALUE)) {
            run++;
            continue;
        }
        rc = vh_buf_add(out, p + i - run, run);
        run = 0;
        if (rc < 0)
            break;
        hi = i + 2 < n ? vh__hex_value((unsigned char)p[i + 1]) : -1;
        lo = i + 2 < n ? vh__hex_value((unsigned char)p[i + 2]) : -1;
        if (c == '%' && part == URI_PATH && hi >= 0 && lo >= 0) {
            c = (unsigned char)(hi * 16 + lo);
            i += 2;
            if (is_unreserved(c)) {
                rc = vh_buf_addc(out, (char)c);
                continue;
            }
        }
        rc = add_escape(out, c);
    }
    if (rc < 0)
        return rc;
    return vh_buf_add(out, p + n - run, run);
}

/* The message for a failed add to an output or scratch buffer. */
static int buf_error(int rc, const char *what, struct vh_error *err)
{
    return vh_error_set(err, rc, "%s: %s", what,
                        rc == VH_ETOOBIG ? "the URL is over the output bound" : "out of memory");
}

/*
 * Drops what a failed call appended, so `out` is as the caller passed it: with its old
 * length, or unallocated if it was (`had_data` false).
 */
static void truncate_to(struct vh_buf *out, size_t len, bool had_data)
{
    if (!had_data) {
        vh_buf_release(out);
    } else {
        out->len = len;
        out->data[len] = '\0';
    }
}

/* True when `p` has a "." or ".." segment, which HTTP clients remove before sending. */
static bool has_dot_segment(const char *p, size_t n)
{
    size_t i = 0, seg;

    while (i < n) {
        seg = 0;
        while (i + seg < n && p[i + seg] != '/')
            seg++;
        if ((seg == 1 && p[i] == '.') || (seg == 2 && p[i] == '.' && p[i + 1] == '.'))
            return true;
        i += seg + 1;
    }
    return false;
}

/* Checks the signing inputs other than the URL. */
static int check_params(const struct vh_presign *p, int64_t *expires, struct vh_error *err)
{
    size_t n, i;

    n = p->region ? strnlen(p->region, REGION_MAX + 1) : 0;
    if (!n)
        return vh_error_set(err, VH_EINVAL, "region: must not be empty");
    for (i = 0; i < n; i++)
        if (!is_alnum((unsigned char)p->region[i]) && p->region[i] != '-' && p->region[i] != '_')
            break;
    if (n > REGION_MAX || i < n)
        return vh_error_set(err, VH_EINVAL, "region: must be 1..%d characters of [A-Za-z0-9_-]",
                            REGION_MAX);

    n = p->access_key ? strnlen(p->access_key, ACCESS_MAX + 1) : 0;
    if (!n)
        return vh_error_set(err, VH_EINVAL, "access_key: must not be empty");
    /* The key id is the first field of the '/'-separated credential scope. */
    for (i = 0; i < n; i++)
        if (is_ctl_or_space((unsigned char)p->access_key[i]) ||
            (unsigned char)p->access_key[i] > 0x7e || p->access_key[i] == '/')
            break;
    if (n > ACCESS_MAX || i < n)
        return vh_error_set(err, VH_EINVAL,
                            "access_key: must be 1..%d printable ASCII characters other than '/'",
                            ACCESS_MAX);

    n = p->secret_key ? strnlen(p->secret_key, SECRET_MAX + 1) : 0;
    if (!n)
        return vh_error_set(err, VH_EINVAL, "secret_key: must not be empty");
    if (n > SECRET_MAX)
        return vh_error_set(err, VH_EINVAL, "secret_key: is over %d bytes", SECRET_MAX);

    if (p->session_token) {
        n = strnlen(p->session_token, TOKEN_MAX + 1);
        if (!n)
            return vh_error_set(err, VH_EINVAL,
                                "session_token: must not be empty (NULL means no token)");
        for (i = 0; i < n; i++)
            if (is_ctl_or_space((unsigned char)p->session_token[i]) ||
                (unsigned char)p->session_token[i] > 0x7e)
                break;
        if (n > TOKEN_MAX || i < n)
            return vh_error_set(err, VH_EINVAL,
                                "session_token: must be 1..%d printable ASCII characters",
                                TOKEN_MAX);
    }

    *expires = p->expires_s ? p->expires_s : VH_PRESIGN_EXPIRES_DEFAULT;
    if (*expires < 1 || *expires > VH_PRESIGN_EXPIRES_MAX)
        return vh_error_set(err, VH_EINVAL, "expires: must be 1..%d seconds (got %lld)",
                            VH_PRESIGN_EXPIRES_MAX, (long long)p->expires_s);
    return 0;
}

/* "YYYYMMDDTHHMMSSZ" of the second `at_ms` falls in; its first 8 bytes are the scope date. */
static int amz_date(int64_t at_ms, char out[AMZ_DATE + 1], struct vh_error *err)
{
    /* Offsets of Y Y Y Y M M D D T H H M M S S Z in "YYYY-MM-DDTHH:MM:SS.mmmZ". */
    static const unsigned char from[AMZ_DATE] = {0,  1,  2,  3,  5,  6,  8,  9,
                                                 10, 11, 12, 14, 15, 17, 18, 23};
    char iso[VH_TIME_LEN + 1];
    size_t i;

    if (vh_time_format(at_ms, iso) < 0)
        return vh_error_set(err, VH_EINVAL, "at: %lld ms is outside years 1970..9999",
                            (long long)at_ms);
    for (i = 0; i < AMZ_DATE; i++)
        out[i] = iso[from[i]];
    out[AMZ_DATE] = '\0';
    return 0;
}

/*
 * The SigV4 signing key: HMAC("AWS4" + secret, date) -> region -> "s3" -> "aws4_request".
 * The intermediate keys are wiped; `key` holds secret material too.
 */
static int signing_key(const char *secret, const char *date, const char *region,
                       unsigned char key[VH_SHA256_LEN], struct vh_error *err)
{
    unsigned char k0[4 + SECRET_MAX];
    size_t secret_len = strlen(secret);
    const char *steps[3] = {region, "s3", "aws4_request"};
    struct vh__iov part;
    size_t i;
    int rc;

    memcpy(k0, "AWS4", 4);
    memcpy(k0 + 4, secret, secret_len);
    part.p = date;
    part.len = SCOPE_DATE;
    rc = vh__hmac_sha256(k0, 4 + secret_len, &part, 1, key, err);
    for (i = 0; rc >= 0 && i < 3; i++) {
        part.p = steps[i];
        part.len = strlen(steps[i]);
        rc = vh__hmac_sha256(key, VH_SHA256_LEN, &part, 1, key, err);
    }
    OPENSSL_cleanse(k0, sizeof(k0));
    return rc;
}

/* Appends the canonical query string: the X-Amz-* parameters, already in byte order. */
static int add_query(struct vh_buf *out, const struct vh_presign *p, const char *date,
                     int64_t expires)
{
    size_t n_access = strlen(p->access_key);
    int rc;

    rc = vh_buf_adds(out, "X-Amz-Algorithm=" ALGORITHM "&X-Amz-Credential=");
    if (rc >= 0)
        rc = add_uri_encoded(out, p->access_key, n_access, URI_VALUE);
    if (rc >= 0)
        rc = vh_buf_addf(out,
                         "%%2F%.8s%%2F%s%%2Fs3%%2Faws4_request&X-Amz-Date=%s&X-Amz-Expires=%lld",
                         date, p->region, date, (long long)expires);
    if (rc >= 0 && p->session_token) {
        rc = vh_buf_adds(out, "&X-Amz-Security-Token=");
        if (rc >= 0)
            rc = add_uri_encoded(out, p->session_token, strlen(p->session_token), URI_VALUE);
    }
    if (rc >= 0)
        rc = vh_buf_adds(out, "&X-Amz-SignedHeaders=host");
    return rc;
}

/*
 * Where the parts of a URL being built start in its buffer, as offsets (the buffer may move
 * as it grows): scheme://HOST URI?QUERY, where the canonical request repeats all three.
 */
struct url_parts {
    size_t host_at, uri_at, query_at;
};

/* Lowercase hex SHA-256 of the canonical request for the URL in `url`. */
static int canonical_request_hash(const struct vh_buf *url, const struct url_parts *at,
                                  char hex[VH_SHA256_HEX_LEN + 1], struct vh_error *err)
{
    struct vh_buf creq = VH_BUF_INIT(SCRATCH_MAX);
    unsigned char hash[VH_SHA256_LEN];
    int rc;

    rc = vh_buf_adds(&creq, "GET\n");
    if (rc >= 0)
        rc = vh_buf_add(&creq, url->data + at->uri_at, at->query_at - 1 - at->uri_at);
    if (rc >= 0)
        rc = vh_buf_addc(&creq, '\n');
    if (rc >= 0)
        rc = vh_buf_add(&creq, url->data + at->query_at, url->len - at->query_at);
    if (rc >= 0)
        rc = vh_buf_adds(&creq, "\nhost:");
    if (rc >= 0)
        rc = vh_buf_add(&creq, url->data + at->host_at, at->uri_at - at->host_at);
    if (rc >= 0)
        rc = vh_buf_adds(&creq, "\n\nhost\nUNSIGNED-PAYLOAD");
    if (rc < 0)
        rc = buf_error(rc, "presign", err);
    else
        rc = vh__sha256(creq.data, creq.len, hash, err);
    if (rc >= 0)
        vh__hex_encode(hash, sizeof(hash), hex);
    vh_buf_release(&creq);
    return rc;
}

/* The signature: HMAC(signing key, algorithm \n time \n scope \n canonical request hash). */
static int signature(const struct vh_presign *p, const char *date,
                     const char creq_hex[VH_SHA256_HEX_LEN], char hex[VH_SHA256_HEX_LEN + 1],
                     struct vh_error *err)
{
    unsigned char key[VH_SHA256_LEN], sig[VH_SHA256_LEN];
    struct vh__iov sts[8];
    int rc;

    rc = signing_key(p->secret_key, date, p->region, key, err);
    if (rc < 0)
        return rc;
    sts[0] = (struct vh__iov){ALGORITHM "\n", sizeof(ALGORITHM)};
    sts[1] = (struct vh__iov){date, AMZ_DATE};
    sts[2] = (struct vh__iov){"\n", 1};
    sts[3] = (struct vh__iov){date, SCOPE_DATE};
    sts[4] = (struct vh__iov){"/", 1};
    sts[5] = (struct vh__iov){p->region, strlen(p->region)};
    sts[6] = (struct vh__iov){SCOPE_TAIL "\n", sizeof(SCOPE_TAIL)};
    sts[7] = (struct vh__iov){creq_hex, VH_SHA256_HEX_LEN};
    rc = vh__hmac_sha256(key, sizeof(key), sts, 8, sig, err);
    OPENSSL_cleanse(key, sizeof(key));
    if (rc >= 0)
        vh__hex_encode(sig, sizeof(sig), hex);
    return rc;
}

int vh_presign_url(const struct vh_presign *p, struct vh_buf *out, struct vh_error *err)
{
    struct url u;
    struct url_parts at;
    int64_t expires = 0;
    char date[AMZ_DATE + 1];
    char creq_hex[VH_SHA256_HEX_LEN + 1], sig_hex[VH_SHA256_HEX_LEN + 1];
    size_t len0 = out->len;
    bool had_data = out->data != NULL;
    int rc;

    rc = url_parse("url", p->url, &u, err);
    if (rc < 0)
        return rc;
    rc = check_params(p, &expires, err);
    if (rc < 0)
        return rc;
    rc = amz_date(p->at_ms, date, err);
    if (rc < 0)
        return rc;

    /* The URL without its signature, which is also what the canonical request is made of. */
    rc = vh_buf_adds(out, u.https ? "https://" : "http://");
    at.host_at = out->len;
    if (rc >= 0)
        rc = add_host(out, &u);
    at.uri_at = out->len;
    if (rc >= 0 && u.path_len)
        rc = add_uri_encoded(out, u.path, u.path_len, URI_PATH);
    else if (rc >= 0)
        rc = vh_buf_addc(out, '/');
    if (rc < 0) {
        rc = buf_error(rc, "presign", err);
        goto out;
    }
    /* Checked after decoding, so "%2E%2E" is caught too. */
    if (has_dot_segment(out->data + at.uri_at, out->len - at.uri_at)) {
        rc = vh_error_set(err, VH_EINVAL, "url: path has a '.' or '..' segment");
        goto out;
    }
    rc = vh_buf_addc(out, '?');
    at.query_at = out->len;
    if (rc >= 0)
        rc = add_query(out, p, date, expires);
    if (rc < 0) {
        rc = buf_error(rc, "presign", err);
        goto out;
    }

    rc = canonical_request_hash(out, &at, creq_hex, err);
    if (rc < 0)
        goto out;
    rc = signature(p, date, creq_hex, sig_hex, err);
    if (rc < 0)
        goto out;
    rc = vh_buf_adds(out, "&X-Amz-Signature=");
    if (rc >= 0)
        rc = vh_buf_add(out, sig_hex, VH_SHA256_HEX_LEN);
    if (rc < 0)
        rc = buf_error(rc, "presign", err);
out:
    if (rc < 0)
        truncate_to(out, len0, had_data); /* `out` as the caller passed it */
    return rc;
}

/* S3 bucket naming: 3-63 of [a-z0-9.-], alphanumeric at both ends, no "..", not an IPv4. */
static bool bucket_is_valid(const char *b, size_t n)
{
    size_t i, dots = 0;
    bool all_digits_dots = true;

    if (n < BUCKET_MIN || n > BUCKET_MAX)
        return false;
    if (!is_alnum((unsigned char)b[0]) || !is_alnum((unsigned char)b[n - 1]))
        return false;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)b[i];

        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-'))
            return false;
        if (c == '.' && b[i + 1] == '.')
            return false;
        dots += c == '.';
        if (c != '.' && (c < '0' || c > '9'))
            all_digits_dots = false;
    }
    return !(all_digits_dots && dots == 3);
}

/* True for an IP literal host: bracketed IPv6, or only digits and dots (IPv4). */
static bool host_is_ip(const struct url *u)
{
    size_t i;

    if (u->host[0] == '[')
        return true;
    for (i = 0; i < u->host_len; i++)
        if (u->host[i] != '.' && (u->host[i] < '0' || u->host[i] > '9'))
            return false;
    return true;
}

int vh_s3_object_url(const char *endpoint, const char *bucket, const char *key, bool path_style,
                     struct vh_buf *out, struct vh_error *err)
{
    struct url u;
    size_t bucket_len, key_len, i, len0 = out->len;
    bool had_data = out->data != NULL;
    int rc;

    rc = url_parse("endpoint", endpoint, &u, err);
    if (rc < 0)
        return rc;
    if (u.path_len > 1 || (u.path_len == 1 && u.path[0] != '/'))
        return vh_error_set(err, VH_EINVAL, "endpoint: must not have a path");

    bucket_len = bucket ? strnlen(bucket, BUCKET_MAX + 1) : 0;
    if (!bucket_is_valid(bucket, bucket_len))
        return vh_error_set(err, VH_EINVAL,
                            "bucket: must be %d-%d characters of [a-z0-9.-], starting and "
                            "ending with a letter or digit, no '..', not an IP address",
                            BUCKET_MIN, BUCKET_MAX);
    if (!path_style && host_is_ip(&u))
        return vh_error_set(err, VH_EINVAL,
                            "endpoint: an IP address host needs path-style addressing");
    /* As a subdomain, a dotted bucket does not match the endpoint's wildcard certificate. */
    if (!path_style && u.https && memchr(bucket, '.', bucket_len))
        return vh_error_set(err, VH_EINVAL,
                            "bucket: a name with '.' needs path-style addressing over https");

    key_len = key ? strnlen(key, KEY_MAX + 1) : 0;
    if (key_len < 1 || key_len > KEY_MAX)
        return vh_error_set(err, VH_EINVAL, "key: must be 1..%d bytes", KEY_MAX);
    for (i = 0; i < key_len; i++)
        if ((unsigned char)key[i] < 0x20 || key[i] == 0x7f)
            return vh_error_set(err, VH_EINVAL, "key: control character at byte %zu", i + 1);
    if (has_dot_segment(key, key_len))
        return vh_error_set(err, VH_EINVAL,
                            "key: has a '.' or '..' segment, which HTTP clients rewrite");

    rc = vh_buf_adds(out, u.https ? "https://" : "http://");
    if (rc >= 0 && !path_style) {
        rc = vh_buf_add(out, bucket, bucket_len);
        if (rc >= 0)
            rc = vh_buf_addc(out, '.');
    }
    if (rc >= 0)
        rc = add_host(out, &u);
    if (rc >= 0 && path_style) {
        rc = vh_buf_addc(out, '/');
        if (rc >= 0)
            rc = vh_buf_add(out, bucket, bucket_len);
    }
    if (rc >= 0)
        rc = vh_buf_addc(out, '/');
    if (rc >= 0)
        rc = add_uri_encoded(out, key, key_len, URI_KEY);
    if (rc < 0) {
        truncate_to(out, len0, had_data);
        return buf_error(rc, "s3 url", err);
    }
    return 0;
}
