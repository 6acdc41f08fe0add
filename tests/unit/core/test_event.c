/*
 * The session model: the seed round trip, the bad-input corpus (tests/data/bad/MANIFEST.tsv),
 * bounds too large for data files, lenient mode, the encoder's escaping and failure
 * behaviour, latency derivation. Number formatting is in test_number.c, OOM in
 * test_event_oom.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vocohook/alloc.h>
#include <vocohook/clock.h>
#include <vocohook/event.h>
#include <vocohook/json.h>

#define SEED_TS_MS INT64_C(1773585128000) /* 2026-03-15T14:32:08.000Z */

/* A data file under $VH_SOURCE_DIR/tests/data, NUL-terminated; the caller frees it. */
static char *read_data(const char *rel, size_t *len)
{
    const char *dir = getenv("VH_SOURCE_DIR");
    char path[4096];
    FILE *f;
    char *buf;
    long n;

    assert_non_null(dir);
    snprintf(path, sizeof(path), "%s/tests/data/%s", dir, rel);
    f = fopen(path, "rb");
    if (!f)
        fail_msg("cannot open %s", path);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    n = ftell(f);
    assert_true(n >= 0);
    rewind(f);
    buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = '\0';
    fclose(f);
    *len = (size_t)n;
    return buf;
}

/* Renders and compares with an expected file byte for byte, showing both on a mismatch. */
static void assert_renders_as(const struct vh_session *s, int64_t ts, const char *expected_file)
{
    struct vh_buf out = VH_BUF_INIT(VH_BODY_MAX);
    struct vh_error err = VH_ERROR_INIT;
    size_t want_len;
    char *want = read_data(expected_file, &want_len);

    assert_int_equal(vh_session_render(s, ts, &out, &err), 0);
    if (out.len != want_len || memcmp(out.data, want, want_len) != 0)
        fail_msg("render differs from %s\n got: %s\nwant: %s", expected_file, vh_buf_cstr(&out),
                 want);
    vh_buf_release(&out);
    free(want);
}

static struct vh_session *parse_session_file(const char *rel, unsigned flags)
{
    struct vh_error err = VH_ERROR_INIT;
    struct vh_session *s = NULL;
    size_t len;
    char *buf = read_data(rel, &len);

    if (vh_session_parse(buf, len, flags, &s, &err) != 0)
        fail_msg("%s: %s", rel, err.msg);
    free(buf);
    return s;
}

static struct vh_event *parse_event_file(const char *rel, unsigned flags)
{
    struct vh_error err = VH_ERROR_INIT;
    struct vh_event *ev = NULL;
    size_t len;
    char *buf = read_data(rel, &len);

    if (vh_event_parse(buf, len, flags, &ev, &err) != 0)
        fail_msg("%s: %s", rel, err.msg);
    free(buf);
    return ev;
}

/* --- the seed -------------------------------------------------------------------------- */

static void test_seed_session_renders_the_seed_body(void **state)
{
    struct vh_session *s = parse_session_file("good/seed_session.json", 0);
    int64_t ts;

    (void)state;
    assert_int_equal(vh_time_parse("2026-03-15T14:32:08.000Z", 24, &ts, NULL), 0);
    assert_int_equal(ts, SEED_TS_MS);
    assert_string_equal(s->session_id, "s1234567-abcd-1234-abcd-123456789012");
    assert_int_equal(s->duration_seconds, 127);
    assert_true(s->credits_used == 2.12);
    assert_int_equal(s->n_turns, 3);
    assert_int_equal(s->turns[0].role, VH_ROLE_BOT);
    assert_false(s->turns[0].has_latency);
    assert_int_equal(s->turns[1].role, VH_ROLE_USER);
    assert_int_equal(s->turns[1].ts_ms, INT64_C(1773585004500));
    assert_true(s->turns[2].has_latency);
    assert_int_equal(s->turns[2].latency_ms, 700);
    assert_true(s->has_latency);
    assert_int_equal(s->latency.min_ms, 450);
    assert_int_equal(s->latency.max_ms, 1200);
    assert_int_equal(s->latency.avg_ms, 680);
    assert_true(s->has_call);
    assert_int_equal(s->call.status, VH_CALL_COMPLETED);
    assert_string_equal(s->call.to_number, "+919876543210");
    assert_null(s->recording_key);
    assert_renders_as(s, ts, "good/seed_payload.compact.json");
    vh_session_free(s);
}

static void test_seed_payload_parses_strictly_and_rerenders(void **state)
{
    struct vh_event *ev = parse_event_file("good/seed_payload.json", 0);

    (void)state;
    assert_int_equal(ev->ts_ms, SEED_TS_MS);
    assert_renders_as(ev->session, ev->ts_ms, "good/seed_payload.compact.json");
    vh_event_free(ev);
    /* The compact body is itself a valid payload that renders to itself. */
    ev = parse_event_file("good/seed_payload.compact.json", 0);
    assert_renders_as(ev->session, ev->ts_ms, "good/seed_payload.compact.json");
    vh_event_free(ev);
}

/* --- the bad-input corpus ----------------------------------------------------------------- */

static int parse_in_mode(const char *mode, const char *buf, size_t len, struct vh_error *err)
{
    struct vh_session *s = NULL;
    struct vh_ingest *in = NULL;
    struct vh_event *ev = NULL;
    int rc;

    if (strcmp(mode, "session") == 0) {
        rc = vh_session_parse(buf, len, 0, &s, err);
        assert_true(rc == 0 || s == NULL);
        vh_session_free(s);
    } else if (strcmp(mode, "ingest") == 0) {
        rc = vh_ingest_parse(buf, len, &in, err);
        assert_true(rc == 0 || in == NULL);
        vh_ingest_free(in);
    } else if (strcmp(mode, "event") == 0 || strcmp(mode, "event-lenient") == 0) {
        rc = vh_event_parse(buf, len, strcmp(mode, "event") ? VH_PARSE_ALLOW_UNKNOWN : 0, &ev, err);
        assert_true(rc == 0 || ev == NULL);
        vh_event_free(ev);
    } else {
        fail_msg("MANIFEST.tsv: unknown mode '%s'", mode);
        rc = 0;
    }
    return rc;
}

static void test_bad_corpus_gives_the_manifest_errors(void **state)
{
    size_t len, cases = 0, failures = 0;
    char *manifest = read_data("bad/MANIFEST.tsv", &len);
    char *line, *next;

    (void)state;
    for (line = manifest; line && *line; line = next) {
        char *field[4] = {NULL, NULL, NULL, NULL};
        char rel[512];
        struct vh_error err = VH_ERROR_INIT;
        size_t n = 0, blen;
        char *buf, *p = line;
        int want, rc;

        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        if (line[0] == '#' || line[0] == '\0')
            continue;
        while (n < 4) {
            field[n++] = p;
            p = strchr(p, '\t');
            if (!p)
                break;
            *p++ = '\0';
        }
        if (n != 4)
            fail_msg("MANIFEST.tsv: want 4 TAB-separated fields in: %s", line);
        want = strcmp(field[2], "EINVAL") == 0    ? VH_EINVAL
               : strcmp(field[2], "ETOOBIG") == 0 ? VH_ETOOBIG
                                                  : 0;
        assert_int_not_equal(want, 0);
        snprintf(rel, sizeof(rel), "bad/%s", field[0]);
        buf = read_data(rel, &blen);
        rc = parse_in_mode(field[1], buf, blen, &err);
        if (rc != want || err.code != want || strcmp(err.msg, field[3]) != 0) {
            print_error("%s (%s): got %s [%s]\n%*s want %s [%s]\n", field[0], field[1],
                        vh_strerror(rc), err.msg, (int)strlen(field[0]), "", field[2], field[3]);
            failures++;
        }
        free(buf);
        cases++;
    }
    free(manifest);
    assert_true(cases >= 45);
    if (failures)
        fail_msg("%zu of %zu corpus cases gave the wrong error", failures, cases);
}

/* --- bounds too large for data files -------------------------------------------------------- */

/* A session with `n` minimal turns, the first with `content_len` bytes of content. */
static char *big_session(size_t n, size_t content_len, size_t *len)
{
    static const char head[] = "{\"session_id\":\"s\",\"agent_id\":\"a\",\"agent_name\":\"n\","
                               "\"duration_seconds\":1,\"credits_used\":0,\"transcript\":[";
    static const char turn[] = "{\"role\":\"bot\",\"content\":\"\","
                               "\"timestamp\":\"2026-03-15T14:30:01.000Z\"}";
    size_t cap = sizeof(head) + n * sizeof(turn) + content_len + 16, i;
    char *buf = malloc(cap), *p = buf;

    assert_non_null(buf);
    memcpy(p, head, sizeof(head) - 1);
    p += sizeof(head) - 1;
    for (i = 0; i < n; i++) {
        if (i)
            *p++ = ',';
        memcpy(p, turn, 25); /* up to and including the content's opening quote */
        p += 25;
        if (i == 0) {
            memset(p, 'x', content_len);
            p += content_len;
        }
        memcpy(p, turn + 25, sizeof(turn) - 1 - 25);
        p += sizeof(turn) - 1 - 25;
    }
    memcpy(p, "]}", 2);
    p += 2;
    *len = (size_t)(p - buf);
    return buf;
}

static void expect_session(const char *buf, size_t len, int want, const char *want_msg)
{
    struct vh_error err = VH_ERROR_INIT;
    struct vh_session *s = NULL;
    int rc = vh_session_parse(buf, len, 0, &s, &err);

    if (rc != want || (want_msg && strcmp(err.msg, want_msg) != 0))
        fail_msg("got %d [%s], want %d [%s]", rc, err.msg, want, want_msg ? want_msg : "");
    if (rc == 0)
        assert_non_null(s);
    vh_session_free(s);
}

static void test_bounds_content_turns_body(void **state)
{
    size_t len;
    char *buf;

    (void)state;
    buf = big_session(1, VH_CONTENT_MAX, &len);
    expect_session(buf, len, 0, NULL);
    free(buf);
    buf = big_session(1, VH_CONTENT_MAX + 1, &len);
    expect_session(buf, len, VH_ETOOBIG, "transcript[0].content: longer than 65536 bytes");
    free(buf);
    buf = big_session(VH_TURNS_MAX, 0, &len);
    expect_session(buf, len, 0, NULL);
    free(buf);
    buf = big_session(VH_TURNS_MAX + 1, 0, &len);
    expect_session(buf, len, VH_ETOOBIG, "transcript: more than 10000 turns");
    free(buf);
    /* 1 MiB exactly is parsed (and fails later); one byte more is refused unread. */
    buf = big_session(1, VH_BODY_MAX, &len);
    expect_session(buf, VH_BODY_MAX, VH_EINVAL, NULL);
    expect_session(buf, VH_BODY_MAX + 1, VH_ETOOBIG, "json: larger than 1048576 bytes");
    free(buf);
}

static void test_depth_limit_and_brackets_in_strings(void **state)
{
    char buf[512];
    struct vh_error err = VH_ERROR_INIT;
    struct vh_session *s = NULL;
    int n;

    (void)state;
    /* Depth 32 exactly (root object + 31 arrays) in an unknown key, lenient: accepted. */
    n = snprintf(buf, sizeof(buf),
                 "{\"x\":%.*s%.*s,\"session_id\":\"s\",\"agent_id\":\"a\",\"agent_name\":\"n\","
                 "\"duration_seconds\":1,\"credits_used\":0,\"transcript\":[{\"role\":\"bot\","
                 "\"content\":\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[{{{{{{{{{{\\\"[[[[[[\","
                 "\"timestamp\":\"2026-03-15T14:30:01.000Z\"}]}",
                 31, "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[", 31,
                 "]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]");
    assert_int_equal(vh_session_parse(buf, (size_t)n, VH_PARSE_ALLOW_UNKNOWN, &s, &err), 0);
    assert_int_equal(s->turns[0].content[0], '[');
    vh_session_free(s);
    s = NULL;
    /* One more level: refused, at the bracket that goes one level too deep. */
    n = snprintf(buf, sizeof(buf), "{\"x\":%.*s%.*s}", 32, "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
                 32, "]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]");
    assert_int_equal(vh_session_parse(buf, (size_t)n, VH_PARSE_ALLOW_UNKNOWN, &s, &err),
                     VH_ETOOBIG);
    assert_string_equal(err.msg, "json: nested deeper than 32 levels at byte 36");
    assert_null(s);
}

static void test_failure_leaves_out_untouched(void **state)
{
    struct vh_session sentinel, *s = &sentinel;
    struct vh_event esentinel, *ev = &esentinel;
    struct vh_ingest isentinel, *in = &isentinel;
    struct vh_error err = VH_ERROR_INIT;
    size_t len;
    char *buf = read_data("good/seed_payload.json", &len);

    (void)state;
    /* A valid payload is not a valid bare session, and vice versa. */
    assert_int_equal(vh_session_parse(buf, len, 0, &s, &err), VH_EINVAL);
    assert_string_equal(err.msg, "(root): unknown key \"event\"");
    assert_ptr_equal(s, &sentinel);
    vh_error_clear(&err);
    assert_int_equal(vh_ingest_parse(buf, len, &in, &err), VH_EINVAL);
    assert_ptr_equal(in, &isentinel);
    vh_error_clear(&err);
    assert_int_equal(vh_event_parse(buf, len - 3, 0, &ev, &err), VH_EINVAL);
    assert_ptr_equal(ev, &esentinel);
    vh_error_clear(&err);
    assert_int_equal(vh_event_parse(buf, len, 0x80, &ev, &err), VH_EINVAL);
    assert_string_equal(err.msg, "parse: unknown flags 0x80");
    assert_ptr_equal(ev, &esentinel);
    free(buf);
}

/* --- good variants ----------------------------------------------------------------------- */

static void test_escapes_and_derived_latency_match_javascript(void **state)
{
    struct vh_session *s = parse_session_file("good/escapes_session.json", 0);

    (void)state;
    assert_false(s->has_latency);
    assert_false(s->has_call);
    assert_null(s->recording_url);
    assert_false(s->turns[2].has_latency); /* the bot turn without latency in the middle */
    assert_int_equal(s->turns[4].content_len, 0);
    assert_renders_as(s, SEED_TS_MS, "good/escapes_payload.compact.json");
    vh_session_free(s);
}

static void test_payload_with_null_call_and_recording(void **state)
{
    struct vh_event *ev = parse_event_file("good/payload_call_null.json", 0);
    const struct vh_session *s = ev->session;
    struct vh_buf out = VH_BUF_INIT(VH_BODY_MAX);
    struct vh_error err = VH_ERROR_INIT;

    (void)state;
    assert_false(s->has_call);
    assert_null(s->recording_url);
    assert_int_equal(s->n_turns, 5);
    assert_false(s->turns[2].has_latency);
    assert_true(s->turns[4].has_latency);
    assert_true(s->credits_used == 100);
    assert_int_equal(vh_session_render(s, ev->ts_ms, &out, &err), 0);
    assert_non_null(strstr(out.data, "\"credits_used\":100,"));
    assert_non_null(strstr(out.data, "{\"role\":\"bot\",\"content\":\"One moment.\","
                                     "\"timestamp\":\"2026-03-15T14:30:05.000Z\"},"));
    assert_non_null(strstr(out.data, "\"recording_url\":null,\"latency\":{\"min_ms\":450,"
                                     "\"max_ms\":450,\"avg_ms\":450},\"call\":null}}"));
    vh_buf_release(&out);
    vh_event_free(ev);
}

static void test_lenient_accepts_newer_senders(void **state)
{
    struct vh_error err = VH_ERROR_INIT;
    struct vh_event *ev = NULL, *plain = parse_event_file("good/payload_call_null.json", 0);
    struct vh_buf a = VH_BUF_INIT(VH_BODY_MAX), b = VH_BUF_INIT(VH_BODY_MAX);
    size_t len;
    char *buf = read_data("good/payload_newer_sender.json", &len);

    (void)state;
    assert_int_equal(vh_event_parse(buf, len, 0, &ev, &err), VH_EINVAL);
    assert_string_equal(err.msg, "(root): unknown key \"id\"");
    assert_null(ev);
    vh_error_clear(&err);
    assert_int_equal(vh_event_parse(buf, len, VH_PARSE_ALLOW_UNKNOWN, &ev, &err), 0);
    /* Without its extra keys it is the plain payload, so both render the same bytes. */
    assert_int_equal(vh_session_render(ev->session, ev->ts_ms, &a, &err), 0);
    assert_int_equal(vh_session_render(plain->session, plain->ts_ms, &b, &err), 0);
    assert_int_equal(a.len, b.len);
    assert_memory_equal(a.data, b.data, a.len);
    vh_buf_release(&a);
    vh_buf_release(&b);
    vh_event_free(ev);
    vh_event_free(plain);
    free(buf);
}

/*
 * A newer sender's unknown field may hold any JSON number. JavaScript's JSON.stringify writes
 * magnitudes from 2^63 up to 1e21 as plain digits (12345678901234567000), so a receiver must
 * not refuse the whole signed webhook because such a number does not fit an int64.
 */
static void test_lenient_accepts_big_integers_in_unknown_fields(void **state)
{
    struct vh_error err = VH_ERROR_INIT;
    struct vh_event *ev = NULL;
    size_t len;
    char *buf = read_data("good/payload_big_integer_variable.json", &len);
    static const char big_duration[] =
        "{\"session_id\":\"s\",\"agent_id\":\"a\",\"agent_name\":\"n\","
        "\"duration_seconds\":99999999999999999999999,\"credits_used\":1,\"transcript\":[]}";
    struct vh_session *s = NULL;

    (void)state;
    if (vh_event_parse(buf, len, VH_PARSE_ALLOW_UNKNOWN, &ev, &err) != 0)
        fail_msg("refused: %s", err.msg);
    assert_string_equal(ev->session->session_id, "web_session_42");
    vh_event_free(ev);
    free(buf);
    /* A known integer field still refuses it, naming the field. */
    vh_error_clear(&err);
    assert_int_equal(vh_session_parse(big_duration, sizeof(big_duration) - 1, 0, &s, &err),
                     VH_EINVAL);
    assert_null(s);
    assert_string_equal(err.msg, "duration_seconds: must be between 0 and 604800");
}

/*
 * JavaScript strings are UTF-16, and JSON.stringify writes a lone surrogate (a turn cut in the
 * middle of an emoji by .slice()) as the escape "\ud83d". That is valid JSON (RFC 8259 §7), so
 * the receiver must take the signed webhook; the string holds U+FFFD in its place.
 */
static void test_lenient_accepts_lone_surrogate_escapes(void **state)
{
    struct vh_error err = VH_ERROR_INIT;
    struct vh_event *ev = NULL;
    size_t len;
    char *buf = read_data("good/payload_lone_surrogate.json", &len);

    (void)state;
    if (vh_event_parse(buf, len, VH_PARSE_ALLOW_UNKNOWN, &ev, &err) != 0)
        fail_msg("refused: %s", err.msg);
    assert_string_equal(ev->session->turns[0].content, "Hello! \xef\xbf\xbd");
    vh_event_free(ev);
    free(buf);
}

static void test_ingest_recording_key_must_be_presigned(void **state)
{
    struct vh_error err = VH_ERROR_INIT;
    struct vh_ingest *in = NULL;
    struct vh_buf out = VH_BUF_INIT(VH_BODY_MAX);
    size_t len;
    char *buf = read_data("good/ingest_recording_key.json", &len);

    (void)state;
    assert_int_equal(vh_ingest_parse(buf, len, &in, &err), 0);
    assert_string_equal(in->partner_id, "partner_01");
    assert_string_equal(in->session->recording_key, "recordings/2026/03/15/s-ingest-1.wav");
    assert_false(in->session->has_latency);
    assert_false(in->session->has_call);
    assert_false(in->session->turns[1].has_latency);
    assert_int_equal(vh_buf_adds(&out, "prefix"), 0);
    assert_int_equal(vh_session_render(in->session, SEED_TS_MS, &out, &err), VH_EINVAL);
    assert_string_equal(err.msg, "data.recording_url: recording_key "
                                 "'recordings/2026/03/15/s-ingest-1.wav' must be presigned first");
    assert_string_equal(vh_buf_cstr(&out), "prefix");
    /* What the sender does: presign into recording_url, then render. */
    in->session->recording_url = vh_strndup("https://b.s3.amazonaws.com/k?X-Amz-Expires=86400", 48);
    vh_error_clear(&err);
    assert_int_equal(vh_session_render(in->session, SEED_TS_MS, &out, &err), 0);
    assert_non_null(strstr(out.data, "\"recording_url\":\"https://b.s3.amazonaws.com/k?X-Amz-"
                                     "Expires=86400\",\"latency\":{\"min_ms\":1000,\"max_ms\":1000,"
                                     "\"avg_ms\":1000},\"call\":null}}"));
    assert_memory_equal(out.data, "prefix{\"event\":", 15);
    vh_buf_release(&out);
    vh_ingest_free(in);
    free(buf);
}

static void test_numbers_in_json(void **state)
{
    static const struct {
        const char *credits;
        const char *rendered;
    } cases[] = {{"2.12", "2.12"},
                 {"0", "0"},
                 {"-0.0", "0"},
                 {"1E2", "100"},
                 {"1e9", "1000000000"},
                 {"0.000001", "0.000001"},
                 {"1e-7", "1e-7"},
                 {"100.0", "100"},
                 {"0.30000000000000004", "0.30000000000000004"}};
    static const char fmt[] = "{\"session_id\":\"s\",\"agent_id\":\"a\",\"agent_name\":\"n\","
                              "\"duration_seconds\":%s,\"credits_used\":%s,\"transcript\":[]}";
    char buf[512], want[64];
    struct vh_error err = VH_ERROR_INIT;
    struct vh_session *s = NULL;
    struct vh_buf out = VH_BUF_INIT(4096);
    size_t i;
    int n;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        n = snprintf(buf, sizeof(buf), fmt, "0", cases[i].credits);
        if (vh_session_parse(buf, (size_t)n, 0, &s, &err) != 0)
            fail_msg("%s: %s", cases[i].credits, err.msg);
        vh_buf_reset(&out);
        assert_int_equal(vh_session_render(s, 0, &out, &err), 0);
        snprintf(want, sizeof(want), "\"credits_used\":%s,", cases[i].rendered);
        if (!strstr(out.data, want))
            fail_msg("credits %s: want %s in %s", cases[i].credits, want, out.data);
        vh_session_free(s);
        s = NULL;
    }
    /* An integral real is still not an integer: producers send 12, not 12.0. */
    n = snprintf(buf, sizeof(buf), fmt, "12.0", "1");
    assert_int_equal(vh_session_parse(buf, (size_t)n, 0, &s, &err), VH_EINVAL);
    assert_string_equal(err.msg, "duration_seconds: must be an integer");
    vh_buf_release(&out);
}

/* --- the encoder on hand-built sessions ---------------------------------------------------- */

static char text_bot[] = "bot says";

static void init_session(struct vh_session *s, struct vh_turn *turns, size_t n)
{
    static char id[] = "s1", agent[] = "a1", name[] = "Name";

    memset(s, 0, sizeof(*s));
    s->session_id = id;
    s->agent_id = agent;
    s->agent_name = name;
    s->turns = turns;
    s->n_turns = n;
}

static void set_turn(struct vh_turn *t, enum vh_role role, char *content, size_t content_len,
                     bool has_latency, int64_t latency)
{
    memset(t, 0, sizeof(*t));
    t->role = role;
    t->content = content;
    t->content_len = content_len;
    t->ts_ms = SEED_TS_MS;
    t->has_latency = has_latency;
    t->latency_ms = latency;
}

static void test_escaping_like_json_stringify(void **state)
{
    static char content[] =
        "q\" b\\ s/ \b\f\n\r\t \x01\x1f\x7f \xc3\xa9 \xe2\x80\xa8 \xf0\x9f\x98\x80";
    static const char want[] = "\"content\":\"q\\\" b\\\\ s/ \\b\\f\\n\\r\\t \\u0001\\u001f\x7f "
                               "\xc3\xa9 \xe2\x80\xa8 \xf0\x9f\x98\x80\"";
    struct vh_session s;
    struct vh_turn t;
    struct vh_buf out = VH_BUF_INIT(4096);
    struct vh_error err = VH_ERROR_INIT;

    (void)state;
    init_session(&s, &t, 1);
    set_turn(&t, VH_ROLE_BOT, content, sizeof(content) - 1, false, 0);
    assert_int_equal(vh_session_render(&s, SEED_TS_MS, &out, &err), 0);
    if (!strstr(out.data, want))
        fail_msg("want %s in %s", want, out.data);
    vh_buf_release(&out);
}

/* The reference: JSON.stringify's escape of one ASCII byte, written the obvious way. */
static void reference_escape(unsigned char c, char *out)
{
    switch (c) {
    case '"':
        snprintf(out, 8, "%s", "\\\"");
        break;
    case '\\':
        snprintf(out, 8, "%s", "\\\\");
        break;
    case '\b':
        snprintf(out, 8, "%s", "\\b");
        break;
    case '\f':
        snprintf(out, 8, "%s", "\\f");
        break;
    case '\n':
        snprintf(out, 8, "%s", "\\n");
        break;
    case '\r':
        snprintf(out, 8, "%s", "\\r");
        break;
    case '\t':
        snprintf(out, 8, "%s", "\\t");
        break;
    default:
        if (c < 0x20)
            snprintf(out, 8, "\\u%04x", c);
        else
            snprintf(out, 8, "%c", c);
    }
}

/*
 * Every byte value at every offset of a 17-byte string, so that each byte meets the
 * eight-at-a-time scan in every lane and the byte-by-byte tail: ASCII must come out as
 * the reference escapes it, NUL and a lone byte >= 0x80 must be refused.
 */
static void test_escaping_every_byte_at_every_offset(void **state)
{
    static const char alpha[] = "abcdefghijklmnopq";
    char content[18], want[64], esc[8];
    struct vh_session s;
    struct vh_turn t;
    struct vh_buf out = VH_BUF_INIT(4096);
    struct vh_error err = VH_ERROR_INIT;
    size_t off;
    int b, rc;

    (void)state;
    init_session(&s, &t, 1);
    for (b = 0; b < 256; b++) {
        for (off = 0; off < 17; off++) {
            memcpy(content, alpha, 18);
            content[off] = (char)b;
            set_turn(&t, VH_ROLE_BOT, content, 17, false, 0);
            vh_buf_reset(&out);
            vh_error_clear(&err);
            rc = vh_session_render(&s, SEED_TS_MS, &out, &err);
            if (b == 0 || b >= 0x80) {
                if (rc != VH_EINVAL)
                    fail_msg("byte 0x%02x at %zu: rendered %s", b, off, out.data);
                continue;
            }
            assert_int_equal(rc, 0);
            reference_escape((unsigned char)b, esc);
            snprintf(want, sizeof(want), "\"content\":\"%.*s%s%s\"", (int)off, alpha, esc,
                     alpha + off + 1);
            if (!strstr(out.data, want))
                fail_msg("byte 0x%02x at %zu: want %s in %s", b, off, want, out.data);
        }
    }
    vh_buf_release(&out);
}

static void test_render_refuses_what_would_not_be_json(void **state)
{
    static char with_nul[] = "a\0b", bad_utf8[] = "a\xc3(", surrogate[] = "\xed\xa0\x80";
    struct vh_session s;
    struct vh_turn t;
    struct vh_buf out = VH_BUF_INIT(4096);
    struct vh_error err = VH_ERROR_INIT;

    (void)state;
    init_session(&s, &t, 1);
    assert_int_equal(vh_buf_adds(&out, "kept"), 0);
    set_turn(&t, VH_ROLE_BOT, with_nul, 3, false, 0);
    assert_int_equal(vh_session_render(&s, SEED_TS_MS, &out, &err), VH_EINVAL);
    assert_string_equal(err.msg, "data.transcript[0].content: contains a NUL byte");
    assert_string_equal(vh_buf_cstr(&out), "kept");
    assert_int_equal(out.len, 4);
    vh_error_clear(&err);
    set_turn(&t, VH_ROLE_BOT, bad_utf8, 3, false, 0);
    assert_int_equal(vh_session_render(&s, SEED_TS_MS, &out, &err), VH_EINVAL);
    assert_string_equal(err.msg, "data.transcript[0].content: not valid UTF-8");
    vh_error_clear(&err);
    set_turn(&t, VH_ROLE_BOT, surrogate, 3, false, 0);
    assert_int_equal(vh_session_render(&s, SEED_TS_MS, &out, &err), VH_EINVAL);
    vh_error_clear(&err);
    set_turn(&t, (enum vh_role)7, text_bot, 8, false, 0);
    assert_int_equal(vh_session_render(&s, SEED_TS_MS, &out, &err), VH_EINVAL);
    assert_string_equal(err.msg, "data.transcript[0].role: is neither user nor bot");
    vh_error_clear(&err);
    set_turn(&t, VH_ROLE_BOT, text_bot, 8, false, 0);
    s.credits_used = HUGE_VAL;
    assert_int_equal(vh_session_render(&s, SEED_TS_MS, &out, &err), VH_EINVAL);
    assert_string_equal(err.msg, "data.credits_used: must be finite");
    vh_error_clear(&err);
    s.credits_used = 1;
    assert_int_equal(vh_session_render(&s, -1, &out, &err), VH_EINVAL);
    vh_error_clear(&err);
    s.has_call = true; /* with NULL fields */
    assert_int_equal(vh_session_render(&s, SEED_TS_MS, &out, &err), VH_EINVAL);
    assert_string_equal(vh_buf_cstr(&out), "kept");
    vh_buf_release(&out);
}

static void test_render_bound_and_buffer_restore(void **state)
{
    struct vh_session s;
    struct vh_turn t;
    struct vh_buf out = VH_BUF_INIT(100), full = VH_BUF_INIT(VH_BODY_MAX);
    struct vh_error err = VH_ERROR_INIT;

    (void)state;
    init_session(&s, &t, 1);
    set_turn(&t, VH_ROLE_BOT, text_bot, 8, true, 5);
    /* Into an empty buffer: a failure gives the buffer back in its INIT state. */
    assert_int_equal(vh_session_render(&s, SEED_TS_MS, &out, &err), VH_ETOOBIG);
    assert_string_equal(err.msg, "render: payload larger than the buffer's bound of 100 bytes");
    assert_null(out.data);
    assert_int_equal(out.len, 0);
    assert_int_equal(out.max, 100);
    /* The same body fits exactly in a buffer bounded at its length. */
    assert_int_equal(vh_session_render(&s, SEED_TS_MS, &full, &err), 0);
    out.max = full.len;
    vh_error_clear(&err);
    assert_int_equal(vh_session_render(&s, SEED_TS_MS, &out, &err), 0);
    assert_int_equal(out.len, full.len);
    assert_memory_equal(out.data, full.data, full.len);
    /* Twice does not fit: the first copy stays, byte for byte. */
    assert_int_equal(vh_session_render(&s, SEED_TS_MS, &out, &err), VH_ETOOBIG);
    assert_int_equal(out.len, full.len);
    assert_memory_equal(out.data, full.data, full.len + 1);
    vh_buf_release(&out);
    vh_buf_release(&full);
}

/* json.h's string writer: a failure gives the buffer back as it was, unallocated included. */
static void test_json_add_string_failure_leaves_buffer_as_it_was(void **state)
{
    struct vh_buf b = VH_BUF_INIT(100), small = VH_BUF_INIT(4);

    (void)state;
    assert_int_equal(vh_json_add_string(&b, "a\xff", 2), VH_EINVAL);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, 0);
    assert_int_equal(vh_json_add_string(&b, "a\0b", 3), VH_EINVAL);
    assert_null(b.data);
    assert_int_equal(vh_json_add_string(&small, "abcd", 4), VH_ETOOBIG);
    assert_null(small.data);
    assert_int_equal(small.cap, 0);
    assert_int_equal(small.max, 4);
    /* With content already there, that content stays, byte for byte. */
    assert_int_equal(vh_json_add_string(&b, "ok", 2), 0);
    assert_int_equal(vh_json_add_string(&b, "x\xc3", 2), VH_EINVAL);
    assert_int_equal(b.len, 4);
    assert_string_equal(b.data, "\"ok\"");
    /* (NULL, 0) is the empty string, as for vh_buf_add. */
    assert_int_equal(vh_json_add_string(&b, NULL, 0), 0);
    assert_string_equal(b.data, "\"ok\"\"\"");
    vh_buf_release(&b);
}

/* --- latency and names -------------------------------------------------------------------- */

static void derive(const int64_t *lat, size_t n, struct vh_latency *out)
{
    struct vh_session s;
    struct vh_turn t[8];
    size_t i;

    assert_true(n * 2 + 1 <= 8);
    init_session(&s, t, n * 2 + 1);
    set_turn(&t[0], VH_ROLE_BOT, text_bot, 8, false, 0); /* greeting: no latency */
    for (i = 0; i < n; i++) {
        set_turn(&t[2 * i + 1], VH_ROLE_USER, text_bot, 8, false, 0);
        set_turn(&t[2 * i + 2], VH_ROLE_BOT, text_bot, 8, true, lat[i]);
    }
    /* User turns never count, even with a stray latency. */
    t[1].has_latency = true;
    t[1].latency_ms = 999999;
    vh_session_derive_latency(&s, out);
}

static void test_derive_latency_rounds_half_up(void **state)
{
    static const int64_t a[] = {1, 2}, b[] = {1, 2, 2}, c[] = {1, 1, 2}, d[] = {450, 1200, 700};
    struct vh_latency l;
    struct vh_session s;

    (void)state;
    derive(a, 2, &l);
    assert_int_equal(l.min_ms, 1);
    assert_int_equal(l.max_ms, 2);
    assert_int_equal(l.avg_ms, 2); /* 1.5 -> 2 */
    derive(b, 3, &l);
    assert_int_equal(l.avg_ms, 2); /* 1.67 -> 2 */
    derive(c, 3, &l);
    assert_int_equal(l.avg_ms, 1); /* 1.33 -> 1 */
    derive(d, 3, &l);
    assert_int_equal(l.min_ms, 450);
    assert_int_equal(l.max_ms, 1200);
    assert_int_equal(l.avg_ms, 783); /* 783.33 */
    derive(a, 0, &l);
    assert_int_equal(l.min_ms, 0);
    assert_int_equal(l.max_ms, 0);
    assert_int_equal(l.avg_ms, 0);
    init_session(&s, NULL, 0);
    l.min_ms = 5;
    vh_session_derive_latency(&s, &l);
    assert_int_equal(l.min_ms, 0);
}

static void test_call_status_names(void **state)
{
    static const char *const names[] = {"completed", "failed", "no_answer", "busy", "canceled"};
    int i;

    (void)state;
    for (i = 0; i < 5; i++) {
        enum vh_call_status st = (enum vh_call_status)(VH_CALL_COMPLETED + i);

        assert_string_equal(vh_call_status_name(st), names[i]);
        assert_int_equal(vh_call_status_from_name(names[i], strlen(names[i])), st);
    }
    assert_null(vh_call_status_name((enum vh_call_status)0));
    assert_null(vh_call_status_name((enum vh_call_status)6));
    assert_int_equal(vh_call_status_from_name("busy ", 5), 0);
    assert_int_equal(vh_call_status_from_name("bus", 3), 0);
    assert_int_equal(vh_call_status_from_name("", 0), 0);
    vh_session_free(NULL);
    vh_ingest_free(NULL);
    vh_event_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_seed_session_renders_the_seed_body),
        cmocka_unit_test(test_seed_payload_parses_strictly_and_rerenders),
        cmocka_unit_test(test_bad_corpus_gives_the_manifest_errors),
        cmocka_unit_test(test_bounds_content_turns_body),
        cmocka_unit_test(test_depth_limit_and_brackets_in_strings),
        cmocka_unit_test(test_failure_leaves_out_untouched),
        cmocka_unit_test(test_escapes_and_derived_latency_match_javascript),
        cmocka_unit_test(test_payload_with_null_call_and_recording),
        cmocka_unit_test(test_lenient_accepts_newer_senders),
        cmocka_unit_test(test_lenient_accepts_big_integers_in_unknown_fields),
        cmocka_unit_test(test_lenient_accepts_lone_surrogate_escapes),
        cmocka_unit_test(test_ingest_recording_key_must_be_presigned),
        cmocka_unit_test(test_numbers_in_json),
        cmocka_unit_test(test_escaping_like_json_stringify),
        cmocka_unit_test(test_escaping_every_byte_at_every_offset),
        cmocka_unit_test(test_render_refuses_what_would_not_be_json),
        cmocka_unit_test(test_render_bound_and_buffer_restore),
        cmocka_unit_test(test_json_add_string_failure_leaves_buffer_as_it_was),
        cmocka_unit_test(test_derive_latency_rounds_half_up),
        cmocka_unit_test(test_call_status_names),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
