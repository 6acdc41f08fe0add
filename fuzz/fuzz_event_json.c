/*
 * Fuzz target for the session model (STYLE.md §10): bytes -> each of the parsers (session
 * strict and lenient, ingest, payload strict and lenient); whatever one accepts is rendered,
 * the body must parse again as a strict payload, and rendering that must give the same
 * bytes. Refusals must carry a one-line message and a parse error code. Any broken
 * invariant aborts, which libFuzzer (and the replay under ctest) reports.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <vocohook/event.h>

#define FUZZ_TS_MS INT64_C(1773585128000) /* 2026-03-15T14:32:08.000Z */

static void check_refusal(int rc, const struct vh_error *err)
{
    if (rc != VH_EINVAL && rc != VH_ETOOBIG)
        abort();
    if (err->code != rc || err->msg[0] == '\0' || strchr(err->msg, '\n'))
        abort();
}

/* Renders `s`, re-parses the body strictly, renders again: the two bodies must match. */
static void round_trip(const struct vh_session *s)
{
    struct vh_buf a = VH_BUF_INIT(4 * (size_t)VH_BODY_MAX),
                  b = VH_BUF_INIT(4 * (size_t)VH_BODY_MAX);
    struct vh_error err = VH_ERROR_INIT;
    struct vh_event *ev = NULL;
    int rc;

    rc = vh_session_render(s, FUZZ_TS_MS, &a, &err);
    if (rc < 0) {
        /* The one refusal a parsed session may meet: a recording_key not yet presigned. */
        if (rc != VH_EINVAL || !s->recording_key || s->recording_url)
            abort();
        goto out;
    }
    /* An ingest body near the bound can render a little larger (added nulls and latency). */
    if (a.len > VH_BODY_MAX)
        goto out;
    if (vh_event_parse(a.data, a.len, 0, &ev, &err) != 0)
        abort();
    if (ev->ts_ms != FUZZ_TS_MS)
        abort();
    if (vh_session_render(ev->session, ev->ts_ms, &b, &err) != 0)
        abort();
    if (a.len != b.len || memcmp(a.data, b.data, a.len) != 0)
        abort();
out:
    vh_event_free(ev);
    vh_buf_release(&a);
    vh_buf_release(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *json = (const char *)data;
    unsigned flags;
    int rc;

    for (flags = 0; flags <= VH_PARSE_ALLOW_UNKNOWN; flags += VH_PARSE_ALLOW_UNKNOWN) {
        struct vh_error err = VH_ERROR_INIT;
        struct vh_session *s = NULL;
        struct vh_event *ev = NULL;

        rc = vh_session_parse(json, size, flags, &s, &err);
        if (rc == 0)
            round_trip(s);
        else
            check_refusal(rc, &err);
        vh_session_free(s);

        vh_error_clear(&err);
        rc = vh_event_parse(json, size, flags, &ev, &err);
        if (rc == 0)
            round_trip(ev->session);
        else
            check_refusal(rc, &err);
        vh_event_free(ev);
    }
    {
        struct vh_error err = VH_ERROR_INIT;
        struct vh_ingest *in = NULL;

        rc = vh_ingest_parse(json, size, &in, &err);
        if (rc == 0)
            round_trip(in->session);
        else
            check_refusal(rc, &err);
        vh_ingest_free(in);
    }
    return 0;
}
