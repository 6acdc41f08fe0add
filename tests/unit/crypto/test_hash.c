/*
 * The shared hash primitives of src/crypto/hash.c: HMAC-SHA256 over message parts,
 * SHA-256 and hex encoding, against published vectors.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>

#include <pthread.h>

#include <cmocka.h>

#include "crypto/crypto_int.h"
#include "core/banned.h"

/* Decodes lowercase hex written by the test itself (no validation needed). */
static size_t unhex(const char *hex, unsigned char *out)
{
    size_t i, n = strlen(hex) / 2;

    for (i = 0; i < n; i++) {
        unsigned hi = (unsigned)(hex[2 * i] <= '9' ? hex[2 * i] - '0' : hex[2 * i] - 'a' + 10);
        unsigned lo =
            (unsigned)(hex[2 * i + 1] <= '9' ? hex[2 * i + 1] - '0' : hex[2 * i + 1] - 'a' + 10);

        out[i] = (unsigned char)(hi << 4 | lo);
    }
    return n;
}

/* RFC 4231 section 4: HMAC-SHA256 test cases 1 to 7. */
struct rfc4231_case {
    unsigned char key_byte; /* the key is key_len copies of this byte ... */
    size_t key_len;
    const char *key_hex;     /* ... unless the key is given in hex */
    unsigned char data_byte; /* the data is data_len copies of this byte ... */
    size_t data_len;
    const char *data; /* ... unless given as text */
    const char *mac_hex;
    size_t mac_len; /* bytes to compare: test case 5 truncates to 128 bits */
};

static const struct rfc4231_case rfc4231[] = {
    {0x0b, 20, NULL, 0, 0, "Hi There",
     "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7", 32},
    {0, 4, "4a656665", 0, 0, "what do ya want for nothing?",
     "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843", 32},
    {0xaa, 20, NULL, 0xdd, 50, NULL,
     "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe", 32},
    {0, 25, "0102030405060708090a0b0c0d0e0f10111213141516171819", 0xcd, 50, NULL,
     "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b", 32},
    {0x0c, 20, NULL, 0, 0, "Test With Truncation", "a3b6167473100ee06e0c796c2955552b", 16},
    {0xaa, 131, NULL, 0, 0, "Test Using Larger Than Block-Size Key - Hash Key First",
     "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54", 32},
    {0xaa, 131, NULL, 0, 0,
     "This is a test using a larger than block-size key and a larger than block-size data. "
     "The key needs to be hashed before being used by the HMAC algorithm.",
     "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2", 32},
};

struct vector {
    unsigned char key[200];
    size_t key_len;
    unsigned char data[200];
    size_t data_len;
    unsigned char mac[32];
    size_t mac_len;
};

static void load(const struct rfc4231_case *c, struct vector *v)
{
    if (c->key_hex) {
        v->key_len = unhex(c->key_hex, v->key);
    } else {
        memset(v->key, c->key_byte, c->key_len);
        v->key_len = c->key_len;
    }
    if (c->data) {
        v->data_len = strlen(c->data);
        memcpy(v->data, c->data, v->data_len);
    } else {
        memset(v->data, c->data_byte, c->data_len);
        v->data_len = c->data_len;
    }
    assert_int_equal(unhex(c->mac_hex, v->mac), c->mac_len);
    v->mac_len = c->mac_len;
    assert_int_equal(v->key_len, c->key_len);
}

static void test_rfc4231_one_part(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(rfc4231) / sizeof(rfc4231[0]); i++) {
        struct vector v;
        struct vh__iov part;
        unsigned char out[VH_SHA256_LEN];
        struct vh_error err = VH_ERROR_INIT;

        load(&rfc4231[i], &v);
        part.p = v.data;
        part.len = v.data_len;
        assert_int_equal(vh__hmac_sha256(v.key, v.key_len, &part, 1, out, &err), 0);
        assert_int_equal(err.code, 0);
        if (memcmp(out, v.mac, v.mac_len) != 0)
            fail_msg("RFC 4231 test case %zu: wrong MAC", i + 1);
    }
}

/* Every split of the data into three parts (empty ones included) gives the same MAC. */
static void test_rfc4231_split_parts(void **state)
{
    size_t i, a, b;

    (void)state;
    for (i = 0; i < sizeof(rfc4231) / sizeof(rfc4231[0]); i++) {
        struct vector v;

        load(&rfc4231[i], &v);
        for (a = 0; a <= v.data_len; a++) {
            for (b = a; b <= v.data_len; b += 7) {
                struct vh__iov parts[3] = {
                    {v.data, a}, {v.data + a, b - a}, {v.data + b, v.data_len - b}};
                unsigned char out[VH_SHA256_LEN];

                assert_int_equal(vh__hmac_sha256(v.key, v.key_len, parts, 3, out, NULL), 0);
                if (memcmp(out, v.mac, v.mac_len) != 0)
                    fail_msg("RFC 4231 test case %zu split at %zu/%zu: wrong MAC", i + 1, a, b);
            }
        }
    }
}

/*
 * An empty key and zero parts are valid HMAC inputs. Expected values computed
 * independently with Python: hmac.new(b"", b"abc", hashlib.sha256).hexdigest() and
 * hmac.new(b"Jefe", b"", hashlib.sha256).hexdigest().
 */
static void test_hmac_empty_key_and_message(void **state)
{
    unsigned char out[VH_SHA256_LEN], want[VH_SHA256_LEN];
    struct vh__iov part = {"abc", 3};

    (void)state;
    assert_int_equal(vh__hmac_sha256(NULL, 0, &part, 1, out, NULL), 0);
    unhex("fd7adb152c05ef80dccf50a1fa4c05d5a3ec6da95575fc312ae7c5d091836351", want);
    assert_memory_equal(out, want, sizeof(want));

    assert_int_equal(vh__hmac_sha256("Jefe", 4, NULL, 0, out, NULL), 0);
    unhex("923598ca6d64af2a5dba79dcd021a8a0fe5c5f557519adaaf0ad532d4506dd30", want);
    assert_memory_equal(out, want, sizeof(want));
}

/*
 * hash.c keys its context again only when the key changes (it keeps the last key, up to 256
 * bytes): the same key twice, a key one byte longer than the last (same prefix), a key too
 * long to keep (twice), the empty key, and back. Expected values computed independently
 * with Python: hmac.new(key, b"what do ya want for nothing?", hashlib.sha256).hexdigest().
 */
static void test_hmac_key_changes(void **state)
{
    static const char *const macs[] = {
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843", /* Jefe */
        "75e08531fdf8adadd7001e3d477bfa3b893540b6a320c1d7091f27a947ae3b7a", /* Jefex */
        "bf334b45659989a53927ad3a889c666a5e6fcd7cc856af69e2a0c8b092cb1e95", /* 300 x 'a' */
        "76d9e7194e7dbc3aa00bbe8ffb9f6fcb5a932170f971f948bb2ab61607d2b9d6", /* empty */
    };
    static const int order[] = {0, 0, 1, 0, 1, 1, 2, 2, 0, 3, 3, 0, 2, 1};
    struct vh__iov part = {"what do ya want for nothing?", 28};
    unsigned char out[VH_SHA256_LEN], want[VH_SHA256_LEN], longkey[300];
    size_t i;

    (void)state;
    memset(longkey, 'a', sizeof(longkey));
    for (i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
        const int k = order[i];
        const void *key = k == 0 ? "Jefe" : k == 1 ? "Jefex" : k == 2 ? (const char *)longkey : "";
        const size_t len = k == 0 ? 4 : k == 1 ? 5 : k == 2 ? sizeof(longkey) : 0;

        assert_int_equal(vh__hmac_sha256(key, len, &part, 1, out, NULL), 0);
        unhex(macs[k], want);
        if (memcmp(out, want, sizeof(want)) != 0)
            fail_msg("call %zu (key %d): wrong MAC", i, k);
    }
}

/*
 * hash.c keeps one HMAC context per thread and re-keys it when the key changes: threads signing
 * at once, each switching between short, long (hashed) and empty keys, must each get the
 * MAC of their own key and message. Run under ASan, this also checks that each thread's
 * context is freed when the thread exits.
 */
static void *hmac_thread(void *arg)
{
    size_t round, i, failures = 0;

    for (round = 0; round < 300; round++) {
        for (i = 0; i < sizeof(rfc4231) / sizeof(rfc4231[0]); i++) {
            struct vector v;
            struct vh__iov part;
            unsigned char out[VH_SHA256_LEN];
            size_t k = (i + (size_t)(uintptr_t)arg) % (sizeof(rfc4231) / sizeof(rfc4231[0]));

            load(&rfc4231[k], &v);
            part.p = v.data;
            part.len = v.data_len;
            if (vh__hmac_sha256(v.key, v.key_len, &part, 1, out, NULL) != 0 ||
                memcmp(out, v.mac, v.mac_len) != 0)
                failures++;
        }
    }
    return (void *)(uintptr_t)failures;
}

static void test_hmac_threads(void **state)
{
    pthread_t t[4];
    size_t i;
    void *failures;

    (void)state;
    for (i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&t[i], NULL, hmac_thread, (void *)(uintptr_t)i), 0);
    for (i = 0; i < 4; i++) {
        assert_int_equal(pthread_join(t[i], &failures), 0);
        assert_int_equal((uintptr_t)failures, 0);
    }
}

/* FIPS 180-2 appendix B.1 ("abc") and the empty message. */
static void test_sha256(void **state)
{
    unsigned char out[VH_SHA256_LEN], want[VH_SHA256_LEN];

    (void)state;
    assert_int_equal(vh__sha256("abc", 3, out, NULL), 0);
    unhex("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", want);
    assert_memory_equal(out, want, sizeof(want));
    assert_int_equal(vh__sha256("", 0, out, NULL), 0);
    unhex("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", want);
    assert_memory_equal(out, want, sizeof(want));
}

static void test_hex_encode(void **state)
{
    static const unsigned char in[] = {0x00, 0x01, 0x7f, 0x80, 0xab, 0xff};
    char out[2 * sizeof(in) + 2];

    (void)state;
    memset(out, 'X', sizeof(out));
    vh__hex_encode(in, sizeof(in), out);
    assert_string_equal(out, "00017f80abff");
    assert_int_equal(out[sizeof(out) - 1], 'X');
    vh__hex_encode(in, 0, out);
    assert_string_equal(out, "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc4231_one_part), cmocka_unit_test(test_rfc4231_split_parts),
        cmocka_unit_test(test_hmac_key_changes), cmocka_unit_test(test_hmac_empty_key_and_message),
        cmocka_unit_test(test_hmac_threads),     cmocka_unit_test(test_sha256),
        cmocka_unit_test(test_hex_encode),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
