/*
 * S3 SigV4 query presigning (src/crypto/presign.c).
 *
 * The expected URLs other than AWS's own example were computed once, independently, with
 * this Python 3 script (hashlib/hmac only, no code shared with the C side), and every one
 * of them was also reproduced exactly by botocore 1.43's S3SigV4QueryAuth at the same
 * fixed time (mock.patch('botocore.auth.get_current_datetime')):
 *
 *   import hashlib, hmac, urllib.parse
 *   def presign(host_hdr, scheme, uri, region, ak, sk, amz_date, expires=86400, token=None):
 *       q = lambda v: urllib.parse.quote(v, safe='-_.~')
 *       d = amz_date[:8]
 *       params = {'X-Amz-Algorithm': 'AWS4-HMAC-SHA256',
 *                 'X-Amz-Credential': f'{ak}/{d}/{region}/s3/aws4_request',
 *                 'X-Amz-Date': amz_date, 'X-Amz-Expires': str(expires),
 *                 'X-Amz-SignedHeaders': 'host'}
 *       if token: params['X-Amz-Security-Token'] = token
 *       query = '&'.join(f'{q(k)}={q(v)}' for k, v in sorted(params.items()))
 *       creq = f'GET\n{uri}\n{query}\nhost:{host_hdr}\n\nhost\nUNSIGNED-PAYLOAD'
 *       sts = (f'AWS4-HMAC-SHA256\n{amz_date}\n{d}/{region}/s3/aws4_request\n'
 *              + hashlib.sha256(creq.encode()).hexdigest())
 *       k = ('AWS4' + sk).encode()
 *       for m in (d, region, 's3', 'aws4_request'):
 *           k = hmac.new(k, m.encode(), hashlib.sha256).digest()
 *       sig = hmac.new(k, sts.encode(), hashlib.sha256).hexdigest()
 *       return f'{scheme}://{host_hdr}{uri}?{query}&X-Amz-Signature={sig}'
 *   AK, SK = 'AKIAIOSFODNN7EXAMPLE', 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY'
 *   # PORT_URL
 *   presign('127.0.0.1:4569', 'http',
 *           '/vocohook-recordings/calls/2026/03/15/s1234567-abcd.wav',
 *           'us-east-1', AK, SK, '20260315T143208Z')
 *   # TOKEN_URL
 *   presign('examplebucket.s3.amazonaws.com', 'https', '/test.txt', 'us-east-1', AK, SK,
 *           '20130524T000000Z', token='FwoGZXIvYXdzEBYaDH+/token==')
 *   # UNICODE_URL
 *   key = 'my recordings/café call #1 (final).wav'
 *   presign('vocohook-recordings.s3.eu-west-1.amazonaws.com', 'https',
 *           '/' + urllib.parse.quote(key.encode(), safe='/-_.~'), 'eu-west-1', AK, SK,
 *           '20260315T143208Z', expires=3600)
 *   # PRE_ENCODED_URL
 *   presign('examplebucket.s3.amazonaws.com', 'https', '/my%20file%2Fx.txt', 'us-east-1',
 *           AK, SK, '20130524T000000Z')
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <vocohook/alloc.h>
#include <vocohook/buf.h>
#include <vocohook/clock.h>
#include <vocohook/presign.h>

#define AK "AKIAIOSFODNN7EXAMPLE"
#define SK "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"

/* 2013-05-24T00:00:00Z, the time of the AWS documentation's example. */
#define AWS_EXAMPLE_MS INT64_C(1369353600000)

#define CRED_20130524                                                                              \
    "X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"

/* From the AWS documentation, "Authenticating Requests: Using Query Parameters". */
static const char AWS_URL[] =
    "https://examplebucket.s3.amazonaws.com/test.txt"
    "?X-Amz-Algorithm=AWS4-HMAC-SHA256&" CRED_20130524 "&X-Amz-Date=20130524T000000Z"
    "&X-Amz-Expires=86400&X-Amz-SignedHeaders=host"
    "&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404";

static const char PORT_URL[] =
    "http://127.0.0.1:4569/vocohook-recordings/calls/2026/03/15/s1234567-abcd.wav"
    "?X-Amz-Algorithm=AWS4-HMAC-SHA256"
    "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20260315%2Fus-east-1%2Fs3%2Faws4_request"
    "&X-Amz-Date=20260315T143208Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host"
    "&X-Amz-Signature=b9a5af53c212e0e550e3b84517aeb6ec27422c59512573da226860724c575dfe";

static const char TOKEN_URL[] =
    "https://examplebucket.s3.amazonaws.com/test.txt"
    "?X-Amz-Algorithm=AWS4-HMAC-SHA256&" CRED_20130524 "&X-Amz-Date=20130524T000000Z"
    "&X-Amz-Expires=86400&X-Amz-Security-Token=FwoGZXIvYXdzEBYaDH%2B%2Ftoken%3D%3D"
    "&X-Amz-SignedHeaders=host"
    "&X-Amz-Signature=1ca38b78e628b390da286f4ae46a9a535188a6403f250b14eb84baea15108519";

static const char UNICODE_URL[] =
    "https://vocohook-recordings.s3.eu-west-1.amazonaws.com"
    "/my%20recordings/caf%C3%A9%20call%20%231%20%28final%29.wav"
    "?X-Amz-Algorithm=AWS4-HMAC-SHA256"
    "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20260315%2Feu-west-1%2Fs3%2Faws4_request"
    "&X-Amz-Date=20260315T143208Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host"
    "&X-Amz-Signature=eb05b51d1b4de3fa115318a661d3c40eb77496b61bc73efaf42d81dbccc6106a";

static const char PRE_ENCODED_URL[] =
    "https://examplebucket.s3.amazonaws.com/my%20file%2Fx.txt"
    "?X-Amz-Algorithm=AWS4-HMAC-SHA256&" CRED_20130524 "&X-Amz-Date=20130524T000000Z"
    "&X-Amz-Expires=86400&X-Amz-SignedHeaders=host"
    "&X-Amz-Signature=c1d80eccb8ff927073a553b9d1bcd86f15ecc2bdf7c324d75a75670c0b9a4553";

/* The AWS example's inputs; tests change one field at a time. */
static struct vh_presign aws_example(void)
{
    struct vh_presign p = {
        .url = "https://examplebucket.s3.amazonaws.com/test.txt",
        .region = "us-east-1",
        .access_key = AK,
        .secret_key = SK,
        .session_token = NULL,
        .at_ms = AWS_EXAMPLE_MS,
        .expires_s = 86400,
    };
    return p;
}

/* Presigns `p` and checks the result is exactly `want`. */
static void expect_url(const struct vh_presign *p, const char *want)
{
    struct vh_buf out = VH_BUF_INIT(64 * 1024);
    struct vh_error err = VH_ERROR_INIT;

    assert_int_equal(vh_presign_url(p, &out, &err), 0);
    assert_string_equal(err.msg, "");
    assert_string_equal(vh_buf_cstr(&out), want);
    vh_buf_release(&out);
}

/* Presigns `p` and returns the URL up to (not including) "?". */
static char *presigned_path(const struct vh_presign *p)
{
    struct vh_buf out = VH_BUF_INIT(64 * 1024);
    struct vh_error err = VH_ERROR_INIT;
    char *s, *q;

    assert_int_equal(vh_presign_url(p, &out, &err), 0);
    s = vh_buf_detach(&out, NULL);
    q = strchr(s, '?');
    assert_non_null(q);
    *q = '\0';
    return s;
}

static void expect_fail(const struct vh_presign *p, int code, const char *msg)
{
    struct vh_buf out = VH_BUF_INIT(64 * 1024);
    struct vh_error err = VH_ERROR_INIT;

    assert_int_equal(vh_presign_url(p, &out, &err), code);
    assert_int_equal(err.code, code);
    assert_string_equal(err.msg, msg);
    assert_int_equal(out.len, 0);
    assert_null(out.data);
    vh_buf_release(&out);
}

static void test_aws_documentation_example(void **state)
{
    struct vh_presign p = aws_example();

    (void)state;
    expect_url(&p, AWS_URL);
    /* 0 means the 24 h default; the milliseconds of the signing time are not used. */
    p.expires_s = 0;
    p.at_ms = AWS_EXAMPLE_MS + 999;
    expect_url(&p, AWS_URL);
}

static void test_normalized_origin_signs_the_same(void **state)
{
    static const char *const same[] = {
        "https://examplebucket.s3.amazonaws.com:443/test.txt",
        "HTTPS://ExampleBucket.S3.amazonaws.com/test.txt",
        "https://examplebucket.s3.amazonaws.com/%74%65%73%74.txt",
    };
    struct vh_presign p = aws_example();
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(same) / sizeof(same[0]); i++) {
        p.url = same[i];
        expect_url(&p, AWS_URL);
    }
}

static void test_path_style_with_port(void **state)
{
    struct vh_buf url = VH_BUF_INIT(4096);
    struct vh_error err = VH_ERROR_INIT;
    struct vh_presign p = aws_example();

    (void)state;
    assert_int_equal(vh_s3_object_url("http://127.0.0.1:4569", "vocohook-recordings",
                                      "calls/2026/03/15/s1234567-abcd.wav", true, &url, &err),
                     0);
    assert_string_equal(vh_buf_cstr(&url),
                        "http://127.0.0.1:4569/vocohook-recordings/calls/2026/03/15/"
                        "s1234567-abcd.wav");
    p.url = vh_buf_cstr(&url);
    assert_int_equal(vh_time_parse("2026-03-15T14:32:08.123Z", VH_TIME_LEN, &p.at_ms, &err), 0);
    p.expires_s = 0;
    expect_url(&p, PORT_URL);
    vh_buf_release(&url);
}

static void test_session_token(void **state)
{
    struct vh_presign p = aws_example();

    (void)state;
    p.session_token = "FwoGZXIvYXdzEBYaDH+/token==";
    expect_url(&p, TOKEN_URL);
}

static void test_unicode_and_spaces_in_key(void **state)
{
    struct vh_buf url = VH_BUF_INIT(4096);
    struct vh_error err = VH_ERROR_INIT;
    struct vh_presign p = aws_example();

    (void)state;
    assert_int_equal(vh_s3_object_url("https://s3.eu-west-1.amazonaws.com", "vocohook-recordings",
                                      "my recordings/caf\xc3\xa9 call #1 (final).wav", false, &url,
                                      &err),
                     0);
    p.url = vh_buf_cstr(&url);
    p.region = "eu-west-1";
    p.expires_s = 3600;
    assert_int_equal(vh_time_parse("2026-03-15T14:32:08.000Z", VH_TIME_LEN, &p.at_ms, &err), 0);
    expect_url(&p, UNICODE_URL);
    vh_buf_release(&url);
}

static void test_pre_encoded_path(void **state)
{
    struct vh_presign p = aws_example();

    (void)state;
    /* A pre-encoded key is not encoded twice; lowercase escapes are normalized. */
    p.url = "https://examplebucket.s3.amazonaws.com/my%20file%2Fx.txt";
    expect_url(&p, PRE_ENCODED_URL);
    p.url = "https://examplebucket.s3.amazonaws.com/my%20file%2fx.txt";
    expect_url(&p, PRE_ENCODED_URL);
}

static void test_canonical_uri(void **state)
{
    static const struct {
        const char *url, *want;
    } cases[] = {
        /* An empty path is "/". */
        {"https://b.example.com", "https://b.example.com/"},
        {"https://b.example.com/", "https://b.example.com/"},
        /* Reserved and non-ASCII bytes are encoded; unreserved ones and '/' are not. */
        {"https://b.example.com/a+b=c;d,e!f$g'h*i@j:k[l]",
         "https://b.example.com/"
         "a%2Bb%3Dc%3Bd%2Ce%21f%24g%27h%2Ai%40j%3Ak%5Bl%5D"},
        {"https://b.example.com/x-_.~Z9/\xe2\x82\xac", "https://b.example.com/x-_.~Z9/%E2%82%AC"},
        /* A '%' that starts no valid escape is a literal percent sign. */
        {"https://b.example.com/100%", "https://b.example.com/100%25"},
        {"https://b.example.com/%zz%4", "https://b.example.com/%25zz%254"},
        /* Escapes of unreserved characters become the characters; others are uppercased. */
        {"https://b.example.com/%7e%2d%41%3a%c3%a9", "https://b.example.com/~-A%3A%C3%A9"},
        /* Empty segments are kept: S3 keys may have them. */
        {"https://b.example.com//a//b/", "https://b.example.com//a//b/"},
        {"https://b.example.com/a/.b/..c/...", "https://b.example.com/a/.b/..c/..."},
        /* Default ports are left out; other ports are kept. */
        {"http://b.example.com:80/k", "http://b.example.com/k"},
        {"http://b.example.com:443/k", "http://b.example.com:443/k"},
        {"https://b.example.com:80/k", "https://b.example.com:80/k"},
        {"http://[::1]:9000/b/k", "http://[::1]:9000/b/k"},
        {"http://[::1]/b/k", "http://[::1]/b/k"},
        {"http://minio_1:09000/b/k", "http://minio_1:9000/b/k"},
    };
    struct vh_presign p = aws_example();
    char *got, *again;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        p.url = cases[i].url;
        got = presigned_path(&p);
        assert_string_equal(got, cases[i].want);
        /* The canonical form is a fixed point: presigning it again changes nothing. */
        p.url = got;
        again = presigned_path(&p);
        assert_string_equal(again, got);
        vh_free(again);
        vh_free(got);
    }
}

static void test_appends_to_out(void **state)
{
    struct vh_buf out = VH_BUF_INIT(4096);
    struct vh_error err = VH_ERROR_INIT;
    struct vh_presign p = aws_example();

    (void)state;
    assert_int_equal(vh_buf_adds(&out, "url="), 0);
    assert_int_equal(vh_presign_url(&p, &out, &err), 0);
    assert_string_equal(vh_buf_cstr(&out) + 4, AWS_URL);
    assert_memory_equal(out.data, "url=", 4);
    vh_buf_release(&out);
}

static void test_output_bound(void **state)
{
    struct vh_buf out = VH_BUF_INIT(sizeof(AWS_URL) - 1 + 4);
    struct vh_error err = VH_ERROR_INIT;
    struct vh_presign p = aws_example();
    size_t max;

    (void)state;
    /* Exactly enough room: fits. */
    assert_int_equal(vh_buf_adds(&out, "url="), 0);
    assert_int_equal(vh_presign_url(&p, &out, &err), 0);
    vh_buf_release(&out);
    /* One byte short at every possible point of failure: VH_ETOOBIG, `out` as it was. */
    for (max = 4; max < sizeof(AWS_URL) - 1 + 4; max++) {
        vh_buf_init(&out, max);
        vh_error_clear(&err);
        assert_int_equal(vh_buf_adds(&out, "url="), 0);
        assert_int_equal(vh_presign_url(&p, &out, &err), VH_ETOOBIG);
        assert_string_equal(err.msg, "presign: the URL is over the output bound");
        assert_string_equal(vh_buf_cstr(&out), "url=");
        vh_buf_release(&out);
    }
}

static void test_url_errors(void **state)
{
    static const struct {
        const char *url, *msg;
    } cases[] = {
        {NULL, "url: must not be empty"},
        {"", "url: must not be empty"},
        {"ftp://b.example.com/k", "url: must start with http:// or https://"},
        {"b.example.com/k", "url: must start with http:// or https://"},
        {"https:/b.example.com/k", "url: must start with http:// or https://"},
        {"https://", "url: host must not be empty"},
        {"https:///k", "url: host must not be empty"},
        {"https://:443/k", "url: host must not be empty"},
        {"https://user:pw@b.example.com/k", "url: must not have user info ('@')"},
        {"https://@b.example.com/k", "url: must not have user info ('@')"},
        {"https://b.example.com/k?versionId=1", "url: must not have a query ('?')"},
        {"https://b.example.com/k?", "url: must not have a query ('?')"},
        {"https://b.example.com/k#frag", "url: must not have a fragment ('#')"},
        {"https://b.example.com/a b", "url: control character or space at byte 24"},
        {"https://b.example.com/a\tb", "url: control character or space at byte 24"},
        {"https://b.example.com/a\x7f", "url: control character or space at byte 24"},
        {" https://b.example.com/k", "url: control character or space at byte 1"},
        {"https://b.example.com/k\n", "url: control character or space at byte 24"},
        {"https://b.exa%6dple.com/k", "url: host has a character not allowed in a host name at "
                                      "byte 14"},
        {"https://b.ex\xc3\xa4mple.com/k", "url: host has a character not allowed in a host "
                                           "name at byte 13"},
        {"https://b.example.com:/k", "url: port must be a number in 1..65535"},
        {"https://b.example.com:0/k", "url: port must be a number in 1..65535"},
        {"https://b.example.com:65536/k", "url: port must be a number in 1..65535"},
        {"https://b.example.com:123456/k", "url: port must be a number in 1..65535"},
        {"https://b.example.com:-1/k", "url: port must be a number in 1..65535"},
        {"https://b.example.com:44x/k", "url: port must be a number in 1..65535"},
        {"https://[]/k", "url: bad IPv6 host"},
        {"https://[::1/k", "url: bad IPv6 host"},
        {"https://[::g]/k", "url: bad IPv6 host"},
        {"https://[::1]x/k", "url: bad IPv6 host"},
        {"https://b.example.com/a/../k", "url: path has a '.' or '..' segment"},
        {"https://b.example.com/./k", "url: path has a '.' or '..' segment"},
        {"https://b.example.com/k/..", "url: path has a '.' or '..' segment"},
        {"https://b.example.com/a/%2E%2e/k", "url: path has a '.' or '..' segment"},
        {"https://b.example.com/%2E", "url: path has a '.' or '..' segment"},
    };
    struct vh_presign p = aws_example();
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        p.url = cases[i].url;
        expect_fail(&p, VH_EINVAL, cases[i].msg);
    }
}

static void test_url_length_bound(void **state)
{
    struct vh_presign p = aws_example();
    char *url = vh_malloc(4098);
    const char *prefix = "https://b.example.com/";
    size_t n = strlen(prefix);

    (void)state;
    assert_non_null(url);
    memcpy(url, prefix, n);
    memset(url + n, 'k', 4096 - n);
    url[4096] = '\0';
    p.url = url;
    {
        struct vh_buf out = VH_BUF_INIT(64 * 1024);
        struct vh_error err = VH_ERROR_INIT;

        assert_int_equal(vh_presign_url(&p, &out, &err), 0);
        vh_buf_release(&out);
    }
    url[4096] = 'k';
    url[4097] = '\0';
    expect_fail(&p, VH_EINVAL, "url: is over 4096 bytes");
    vh_free(url);
}

static void test_param_errors(void **state)
{
    struct vh_presign p;
    char long_secret[1026];
    char long_token[8194];

    (void)state;
    p = aws_example();
    p.region = NULL;
    expect_fail(&p, VH_EINVAL, "region: must not be empty");
    p.region = "";
    expect_fail(&p, VH_EINVAL, "region: must not be empty");
    p.region = "us/east";
    expect_fail(&p, VH_EINVAL, "region: must be 1..64 characters of [A-Za-z0-9_-]");
    p.region = "us-east-1-and-a-region-name-that-goes-on-for-more-than-64-characters";
    expect_fail(&p, VH_EINVAL, "region: must be 1..64 characters of [A-Za-z0-9_-]");

    p = aws_example();
    p.access_key = NULL;
    expect_fail(&p, VH_EINVAL, "access_key: must not be empty");
    p.access_key = "";
    expect_fail(&p, VH_EINVAL, "access_key: must not be empty");
    p.access_key = "AKIA/EXAMPLE";
    expect_fail(&p, VH_EINVAL,
                "access_key: must be 1..128 printable ASCII characters other than '/'");
    p.access_key = "AKIA EXAMPLE";
    expect_fail(&p, VH_EINVAL,
                "access_key: must be 1..128 printable ASCII characters other than '/'");

    p = aws_example();
    p.secret_key = NULL;
    expect_fail(&p, VH_EINVAL, "secret_key: must not be empty");
    p.secret_key = "";
    expect_fail(&p, VH_EINVAL, "secret_key: must not be empty");
    memset(long_secret, 's', sizeof(long_secret) - 1);
    long_secret[sizeof(long_secret) - 1] = '\0';
    p.secret_key = long_secret;
    expect_fail(&p, VH_EINVAL, "secret_key: is over 1024 bytes");
    long_secret[1024] = '\0';
    {
        struct vh_buf out = VH_BUF_INIT(4096);

        assert_int_equal(vh_presign_url(&p, &out, NULL), 0);
        vh_buf_release(&out);
    }

    p = aws_example();
    p.session_token = "";
    expect_fail(&p, VH_EINVAL, "session_token: must not be empty (NULL means no token)");
    p.session_token = "tok en";
    expect_fail(&p, VH_EINVAL, "session_token: must be 1..8192 printable ASCII characters");
    memset(long_token, 't', sizeof(long_token) - 1);
    long_token[sizeof(long_token) - 1] = '\0';
    p.session_token = long_token;
    expect_fail(&p, VH_EINVAL, "session_token: must be 1..8192 printable ASCII characters");

    p = aws_example();
    p.expires_s = -1;
    expect_fail(&p, VH_EINVAL, "expires: must be 1..604800 seconds (got -1)");
    p.expires_s = VH_PRESIGN_EXPIRES_MAX + 1;
    expect_fail(&p, VH_EINVAL, "expires: must be 1..604800 seconds (got 604801)");
    p.expires_s = 1;
    {
        struct vh_buf out = VH_BUF_INIT(4096);

        assert_int_equal(vh_presign_url(&p, &out, NULL), 0);
        assert_non_null(strstr(vh_buf_cstr(&out), "&X-Amz-Expires=1&"));
        vh_buf_reset(&out);
        p.expires_s = VH_PRESIGN_EXPIRES_MAX;
        assert_int_equal(vh_presign_url(&p, &out, NULL), 0);
        assert_non_null(strstr(vh_buf_cstr(&out), "&X-Amz-Expires=604800&"));
        vh_buf_release(&out);
    }

    p = aws_example();
    p.at_ms = -1;
    expect_fail(&p, VH_EINVAL, "at: -1 ms is outside years 1970..9999");
    p.at_ms = VH_TIME_MAX_MS + 1;
    expect_fail(&p, VH_EINVAL, "at: 253402300800000 ms is outside years 1970..9999");
}

static void test_first_error_wins(void **state)
{
    struct vh_buf out = VH_BUF_INIT(4096);
    struct vh_error err = VH_ERROR_INIT;
    struct vh_presign p = aws_example();

    (void)state;
    vh_error_set(&err, VH_EIO, "earlier failure");
    p.region = "";
    assert_int_equal(vh_presign_url(&p, &out, &err), VH_EINVAL);
    assert_int_equal(err.code, VH_EIO);
    assert_string_equal(err.msg, "earlier failure");
    vh_buf_release(&out);
}

static void expect_object_url(const char *endpoint, const char *bucket, const char *key,
                              bool path_style, const char *want)
{
    struct vh_buf out = VH_BUF_INIT(8192);
    struct vh_error err = VH_ERROR_INIT;

    assert_int_equal(vh_s3_object_url(endpoint, bucket, key, path_style, &out, &err), 0);
    assert_string_equal(err.msg, "");
    assert_string_equal(vh_buf_cstr(&out), want);
    vh_buf_release(&out);
}

static void expect_object_fail(const char *endpoint, const char *bucket, const char *key,
                               bool path_style, const char *msg)
{
    struct vh_buf out = VH_BUF_INIT(8192);
    struct vh_error err = VH_ERROR_INIT;

    assert_int_equal(vh_s3_object_url(endpoint, bucket, key, path_style, &out, &err), VH_EINVAL);
    assert_string_equal(err.msg, msg);
    assert_int_equal(out.len, 0);
    assert_null(out.data);
    vh_buf_release(&out);
}

static void test_object_url(void **state)
{
    (void)state;
    expect_object_url("https://s3.amazonaws.com", "examplebucket", "test.txt", false,
                      "https://examplebucket.s3.amazonaws.com/test.txt");
    expect_object_url("https://s3.amazonaws.com/", "examplebucket", "test.txt", true,
                      "https://s3.amazonaws.com/examplebucket/test.txt");
    expect_object_url("http://127.0.0.1:4569", "rec", "a/b/c.wav", true,
                      "http://127.0.0.1:4569/rec/a/b/c.wav");
    expect_object_url("http://LOCALHOST:9000/", "rec", "k", false, "http://rec.localhost:9000/k");
    expect_object_url("https://s3.amazonaws.com:443", "rec", "k", false,
                      "https://rec.s3.amazonaws.com/k");
    expect_object_url("http://[::1]:9000", "rec", "k", true, "http://[::1]:9000/rec/k");
    /* A key is raw bytes: '%' and everything else outside unreserved and '/' is encoded. */
    expect_object_url("https://s3.amazonaws.com", "rec", "my file 100%.wav", false,
                      "https://rec.s3.amazonaws.com/my%20file%20100%25.wav");
    expect_object_url("https://s3.amazonaws.com", "rec", "d\xc3\xa9j\xc3\xa0/vu?#&+=~", false,
                      "https://rec.s3.amazonaws.com/d%C3%A9j%C3%A0/vu%3F%23%26%2B%3D~");
    expect_object_url("https://s3.amazonaws.com", "rec", "/lead//slash/", false,
                      "https://rec.s3.amazonaws.com//lead//slash/");
    /* Dotted buckets: path-style, or virtual-hosted over plain http. */
    expect_object_url("https://s3.amazonaws.com", "my.bucket", "k", true,
                      "https://s3.amazonaws.com/my.bucket/k");
    expect_object_url("http://s3.local", "my.bucket", "k", false, "http://my.bucket.s3.local/k");
    expect_object_url("https://s3.amazonaws.com", "abc", "k", false,
                      "https://abc.s3.amazonaws.com/k");
    expect_object_url("https://s3.amazonaws.com",
                      "a23456789012345678901234567890123456789012345678901234567890123", "k", false,
                      "https://a23456789012345678901234567890123456789012345678901234567890123"
                      ".s3.amazonaws.com/k");
}

static void test_object_url_errors(void **state)
{
    static const char bucket_msg[] = "bucket: must be 3-63 characters of [a-z0-9.-], starting "
                                     "and ending with a letter or digit, no '..', not an IP "
                                     "address";
    static const char *const bad_buckets[] = {
        NULL,         "",
        "ab",         "a234567890123456789012345678901234567890123456789012345678901234",
        "Bucket",     "my_bucket",
        "-bucket",    "bucket-",
        ".bucket",    "bucket.",
        "my..bucket", "192.168.1.10",
        "b\xc3\xa9k",
    };
    char long_key[1026];
    size_t i;

    (void)state;
    expect_object_fail(NULL, "rec", "k", false, "endpoint: must not be empty");
    expect_object_fail("s3.amazonaws.com", "rec", "k", false,
                       "endpoint: must start with http:// or https://");
    expect_object_fail("https://s3.amazonaws.com/base", "rec", "k", false,
                       "endpoint: must not have a path");
    expect_object_fail("https://s3.amazonaws.com//", "rec", "k", true,
                       "endpoint: must not have a path");
    expect_object_fail("https://s3.amazonaws.com?x=1", "rec", "k", false,
                       "endpoint: must not have a query ('?')");
    expect_object_fail("https://key:secret@s3.amazonaws.com", "rec", "k", false,
                       "endpoint: must not have user info ('@')");
    for (i = 0; i < sizeof(bad_buckets) / sizeof(bad_buckets[0]); i++)
        expect_object_fail("https://s3.amazonaws.com", bad_buckets[i], "k", true, bucket_msg);
    expect_object_fail("http://127.0.0.1:4569", "rec", "k", false,
                       "endpoint: an IP address host needs path-style addressing");
    expect_object_fail("http://[::1]:4569", "rec", "k", false,
                       "endpoint: an IP address host needs path-style addressing");
    expect_object_fail("https://s3.amazonaws.com", "my.bucket", "k", false,
                       "bucket: a name with '.' needs path-style addressing over https");
    expect_object_fail("https://s3.amazonaws.com", "rec", NULL, false,
                       "key: must be 1..1024 bytes");
    expect_object_fail("https://s3.amazonaws.com", "rec", "", false, "key: must be 1..1024 bytes");
    memset(long_key, 'k', sizeof(long_key) - 1);
    long_key[sizeof(long_key) - 1] = '\0';
    expect_object_fail("https://s3.amazonaws.com", "rec", long_key, false,
                       "key: must be 1..1024 bytes");
    long_key[1024] = '\0';
    {
        struct vh_buf out = VH_BUF_INIT(8192);

        assert_int_equal(
            vh_s3_object_url("https://s3.amazonaws.com", "rec", long_key, false, &out, NULL), 0);
        vh_buf_release(&out);
    }
    expect_object_fail("https://s3.amazonaws.com", "rec", "a\nb", false,
                       "key: control character at byte 2");
    expect_object_fail("https://s3.amazonaws.com", "rec", "ab\x7f", false,
                       "key: control character at byte 3");
    expect_object_fail("https://s3.amazonaws.com", "rec", "a/../b", false,
                       "key: has a '.' or '..' segment, which HTTP clients rewrite");
    expect_object_fail("https://s3.amazonaws.com", "rec", ".", false,
                       "key: has a '.' or '..' segment, which HTTP clients rewrite");
}

static void test_object_url_bound(void **state)
{
    static const char want[] = "https://rec.s3.amazonaws.com/a%20b";
    struct vh_buf out;
    struct vh_error err = VH_ERROR_INIT;
    size_t max;

    (void)state;
    for (max = 0; max < sizeof(want) - 1; max++) {
        vh_buf_init(&out, max);
        vh_error_clear(&err);
        assert_int_equal(
            vh_s3_object_url("https://s3.amazonaws.com", "rec", "a b", false, &out, &err),
            VH_ETOOBIG);
        assert_int_equal(out.len, 0);
        vh_buf_release(&out);
    }
    expect_object_url("https://s3.amazonaws.com", "rec", "a b", false, want);
}

/*
 * Allocation failure (STYLE §10): fail the Nth allocation for N = 1, 2, ... until a call
 * succeeds; every failing run must return VH_ENOMEM and leave `out` as it was. Leaks show
 * up under ASan/valgrind.
 */
static long fail_at; /* the allocation number that fails; 0: none */
static long n_allocs;

static void *failing_malloc(size_t n)
{
    return fail_at && ++n_allocs == fail_at ? NULL : malloc(n);
}

static void *failing_realloc(void *p, size_t n)
{
    return fail_at && ++n_allocs == fail_at ? NULL : realloc(p, n);
}

static void test_out_of_memory(void **state)
{
    struct vh_presign p = aws_example();
    struct vh_error err;
    int rc = VH_ENOMEM;
    long n;

    (void)state;
    p.session_token = "FwoGZXIvYXdzEBYaDH+/token==";
    for (n = 1; rc == VH_ENOMEM && n < 1000; n++) {
        struct vh_buf out = VH_BUF_INIT(64 * 1024);

        vh_error_clear(&err);
        n_allocs = 0;
        fail_at = n;
        rc = vh_presign_url(&p, &out, &err);
        fail_at = 0;
        if (rc == VH_ENOMEM) {
            assert_string_equal(err.msg, "presign: out of memory");
            assert_null(out.data);
        } else {
            assert_int_equal(rc, 0);
            assert_string_equal(vh_buf_cstr(&out), TOKEN_URL);
        }
        vh_buf_release(&out);
    }
    assert_int_equal(rc, 0);
    assert_true(n > 2); /* at least one failing run happened */

    rc = VH_ENOMEM;
    for (n = 1; rc == VH_ENOMEM && n < 1000; n++) {
        struct vh_buf out = VH_BUF_INIT(64 * 1024);

        vh_error_clear(&err);
        n_allocs = 0;
        fail_at = n;
        rc = vh_s3_object_url("http://127.0.0.1:4569", "rec", "a b", true, &out, &err);
        fail_at = 0;
        if (rc == VH_ENOMEM)
            assert_null(out.data);
        else
            assert_string_equal(vh_buf_cstr(&out), "http://127.0.0.1:4569/rec/a%20b");
        vh_buf_release(&out);
    }
    assert_int_equal(rc, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_aws_documentation_example),
        cmocka_unit_test(test_normalized_origin_signs_the_same),
        cmocka_unit_test(test_path_style_with_port),
        cmocka_unit_test(test_session_token),
        cmocka_unit_test(test_unicode_and_spaces_in_key),
        cmocka_unit_test(test_pre_encoded_path),
        cmocka_unit_test(test_canonical_uri),
        cmocka_unit_test(test_appends_to_out),
        cmocka_unit_test(test_output_bound),
        cmocka_unit_test(test_url_errors),
        cmocka_unit_test(test_url_length_bound),
        cmocka_unit_test(test_param_errors),
        cmocka_unit_test(test_first_error_wins),
        cmocka_unit_test(test_object_url),
        cmocka_unit_test(test_object_url_errors),
        cmocka_unit_test(test_object_url_bound),
        cmocka_unit_test(test_out_of_memory),
    };

    /* Installed before any other vh_ call, as alloc.h requires; it fails nothing by default. */
    vh_replace_allocator(failing_malloc, failing_realloc, free);
    return cmocka_run_group_tests_name("crypto/presign", tests, NULL, NULL);
}
