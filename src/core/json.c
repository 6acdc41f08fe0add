/*
 * The three parsers of event.h: bytes -> JSON tree (jtree_int.h, our strict parser) ->
 * validated struct.
 *
 * Order of work, so that the cheap refusals come first and the message is the same for
 * the same input whatever the mode: size bound, then syntax (the tree parser, which also
 * refuses excess nesting, duplicate keys, invalid UTF-8 and \u0000), then one validator
 * walking each object: unknown keys first, then the known keys in the seed's order. The
 * first failure wins and names its JSON path.
 */
#include <vocohook/event.h>
#include <vocohook/json.h>

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <vocohook/alloc.h>
#include <vocohook/clock.h>
#include <vocohook/id.h>

#include "core/jtree_int.h"
#include "core/log_int.h"
#include "core/banned.h"

/* --- context, paths and messages ------------------------------------------------------- */

/* Longer than any path the schema has ("session.transcript[9999].latency_ms"). */
#define JSON_PATH_MAX 96

struct ctx {
    bool payload;       /* webhook payload rules (vh_event_parse), else ingest rules */
    bool allow_unknown; /* VH_PARSE_ALLOW_UNKNOWN */
    struct vh_error *err;
    char path[JSON_PATH_MAX]; /* where we are, "" at the root */
    size_t path_len;
};

static void ctx_init(struct ctx *c, bool payload, unsigned flags, struct vh_error *err)
{
    c->payload = payload;
    c->allow_unknown = (flags & VH_PARSE_ALLOW_UNKNOWN) != 0;
    c->err = err;
    c->path[0] = '\0';
    c->path_len = 0;
}

static void path_set_len(struct ctx *c, size_t len)
{
    c->path_len = len < sizeof(c->path) ? len : sizeof(c->path) - 1;
    c->path[c->path_len] = '\0';
}

/*
 * Appends `n` bytes to the path, cut at its end as snprintf would. The path is built for
 * every key and turn a parse visits, not only on failure, so this is memcpy, not snprintf
 * (which was 1 % of the receiver's CPU).
 */
static void path_add(struct ctx *c, const char *p, size_t n)
{
    size_t room = sizeof(c->path) - 1 - c->path_len;

    if (n > room)
        n = room;
    memcpy(c->path + c->path_len, p, n);
    path_set_len(c, c->path_len + n);
}

/* Appends ".key" (or "key" at the root); returns the length to pop back to. */
static size_t path_push_key(struct ctx *c, const char *key)
{
    size_t old = c->path_len;

    if (old)
        path_add(c, ".", 1);
    path_add(c, key, strlen(key));
    return old;
}

static size_t path_push_index(struct ctx *c, size_t i)
{
    size_t old = c->path_len;
    char index[24], *end;

    index[0] = '[';
    end = vh__log_u64(index + 1, i);
    *end++ = ']';
    path_add(c, index, (size_t)(end - index));
    return old;
}

static int vfail(struct ctx *c, int code, const char *fmt, va_list ap) VH_PRINTF(3, 0);
static int fail(struct ctx *c, int code, const char *fmt, ...) VH_PRINTF(3, 4);
static int fail_at(struct ctx *c, const char *key, int code, const char *fmt, ...) VH_PRINTF(4, 5);

static int vfail(struct ctx *c, int code, const char *fmt, va_list ap)
{
    char reason[VH_ERROR_MSG_MAX];

    if (vsnprintf(reason, sizeof(reason), fmt, ap) < 0)
        reason[0] = '\0';
    return vh_error_set(c->err, code, "%s: %s", c->path_len ? c->path : "(root)", reason);
}

/* Fails at the current path: `data: missing key "agent_id"`. */
static int fail(struct ctx *c, int code, const char *fmt, ...)
{
    va_list ap;
    int rc;

    va_start(ap, fmt);
    rc = vfail(c, code, fmt, ap);
    va_end(ap);
    return rc;
}

/* Fails at the member `key` of the current object: `data.agent_name: must be a string`. */
static int fail_at(struct ctx *c, const char *key, int code, const char *fmt, ...)
{
    va_list ap;
    size_t old = path_push_key(c, key);
    int rc;

    va_start(ap, fmt);
    rc = vfail(c, code, fmt, ap);
    va_end(ap);
    path_set_len(c, old);
    return rc;
}

static int nomem(struct ctx *c)
{
    return vh_error_set(c->err, VH_ENOMEM, "json: out of memory");
}

/* --- loading ---------------------------------------------------------------------------- */

/* Parses the bytes into `doc`, whose root must be an object. */
static int load(const char *json, size_t len, struct vh_jt_doc *doc, struct vh_error *err)
{
    int rc;

    if (len > VH_BODY_MAX)
        return vh_error_set(err, VH_ETOOBIG, "json: larger than %d bytes", VH_BODY_MAX);
    rc = vh__jt_parse(json, len, doc, err);
    if (rc < 0)
        return rc;
    if (doc->root->kind != VH_JT_OBJECT) {
        vh__jt_doc_release(doc);
        return vh_error_set(err, VH_EINVAL, "(root): must be an object");
    }
    return 0;
}

static bool is_kind(const struct vh_jt *v, enum vh_jt_kind kind)
{
    return v && v->kind == kind;
}

static bool is_bool(const struct vh_jt *v)
{
    return v && (v->kind == VH_JT_TRUE || v->kind == VH_JT_FALSE);
}

/* True when `v` is the string `s`. */
static bool is_string_eq(const struct vh_jt *v, const char *s)
{
    return is_kind(v, VH_JT_STRING) && strcmp(v->u.s, s) == 0;
}

/* --- members ------------------------------------------------------------------------------ */

static bool key_is_known(const char *key, const char *const *known)
{
    size_t i;

    for (i = 0; known[i]; i++)
        if (strcmp(key, known[i]) == 0)
            return true;
    return false;
}

/* Refuses keys outside `known` (NULL-terminated) unless the mode allows them. */
static int check_keys(struct ctx *c, const struct vh_jt *obj, const char *const *known)
{
    const struct vh_jt *v;
    char quoted[64];

    if (c->allow_unknown)
        return 0;
    for (v = obj->u.first; v; v = v->next) {
        if (!key_is_known(v->key, known)) {
            vh__jt_quote_key(v->key, quoted);
            return fail(c, VH_EINVAL, "unknown key \"%s\"", quoted);
        }
    }
    return 0;
}

/* The member `key`, or NULL when absent; absent and `required` is an error. */
static int member(struct ctx *c, const struct vh_jt *obj, const char *key, bool required,
                  const struct vh_jt **out)
{
    *out = vh__jt_get(obj, key);
    if (!*out && required)
        return fail(c, VH_EINVAL, "missing key \"%s\"", key);
    return 0;
}

static int dup_string(struct ctx *c, const char *s, size_t len, char **out)
{
    *out = vh_strndup(s, len);
    return *out ? 0 : nomem(c);
}

/* A required string member. */
static int get_string(struct ctx *c, const struct vh_jt *obj, const char *key, const char **s,
                      size_t *len)
{
    const struct vh_jt *v;
    int rc = member(c, obj, key, true, &v);

    if (rc < 0)
        return rc;
    if (!is_kind(v, VH_JT_STRING))
        return fail_at(c, key, VH_EINVAL, "must be a string");
    *s = v->u.s;
    *len = v->len;
    return 0;
}

/* A required id member: 1 to 64 of [A-Za-z0-9_-] (SPEC §2). */
static int get_id(struct ctx *c, const struct vh_jt *obj, const char *key, char **out)
{
    const char *s = NULL;
    size_t len = 0;
    int rc = get_string(c, obj, key, &s, &len);

    if (rc < 0)
        return rc;
    if (!vh_id_is_valid(s, len))
        return fail_at(c, key, VH_EINVAL, "must be 1 to 64 characters of [A-Za-z0-9_-]");
    return dup_string(c, s, len, out);
}

static int get_e164(struct ctx *c, const struct vh_jt *obj, const char *key, char **out)
{
    const char *s = NULL;
    size_t len = 0;
    int rc = get_string(c, obj, key, &s, &len);

    if (rc < 0)
        return rc;
    if (!vh_e164_is_valid(s, len))
        return fail_at(c, key, VH_EINVAL, "must be E.164 (+ then 2 to 15 digits, first not 0)");
    return dup_string(c, s, len, out);
}

/*
 * True for an integer too large for an int64, which the parser reads as a real: its
 * magnitude is at least 2^63, and -9223372036854775809 rounds to exactly -2^63, so the
 * negative side compares with <=. (A real written as such, 1e30, counts too: it is out of
 * range as well as not an integer.)
 */
static bool is_past_int64(const struct vh_jt *v)
{
    return is_kind(v, VH_JT_REAL) && (v->u.d >= 0x1p63 || v->u.d <= -0x1p63);
}

/* A JSON integer in 0..max; reals (12.5, and 12.0 too) are refused. */
static int int_value(struct ctx *c, const struct vh_jt *v, const char *key, int64_t max,
                     const char *type_msg, int64_t *out)
{
    int64_t x;

    if (is_past_int64(v))
        return fail_at(c, key, VH_EINVAL, "must be between 0 and %lld", (long long)max);
    if (!is_kind(v, VH_JT_INT))
        return fail_at(c, key, VH_EINVAL, "%s", type_msg);
    x = v->u.i;
    if (x < 0 || x > max)
        return fail_at(c, key, VH_EINVAL, "must be between 0 and %lld", (long long)max);
    *out = (int64_t)x;
    return 0;
}

static int get_int(struct ctx *c, const struct vh_jt *obj, const char *key, int64_t max,
                   int64_t *out)
{
    const struct vh_jt *v;
    int rc = member(c, obj, key, true, &v);

    if (rc < 0)
        return rc;
    return int_value(c, v, key, max, "must be an integer", out);
}

static int get_time(struct ctx *c, const struct vh_jt *obj, const char *key, int64_t *out)
{
    struct vh_error terr = VH_ERROR_INIT;
    const char *s = NULL;
    size_t len = 0;
    int rc = get_string(c, obj, key, &s, &len);

    if (rc < 0)
        return rc;
    rc = vh_time_parse(s, len, out, &terr);
    if (rc < 0)
        return fail_at(c, key, rc, "%s", terr.msg);
    return 0;
}

/* --- the session ---------------------------------------------------------------------------- */

static int parse_turn(struct ctx *c, const struct vh_jt *obj, struct vh_turn *t)
{
    static const char *const keys[] = {"role", "content", "timestamp", "latency_ms", NULL};
    const char *s = NULL;
    size_t len = 0;
    const struct vh_jt *v;
    int rc;

    if (!is_kind(obj, VH_JT_OBJECT))
        return fail(c, VH_EINVAL, "must be an object");
    rc = check_keys(c, obj, keys);
    if (rc < 0)
        return rc;
    rc = member(c, obj, "role", true, &v);
    if (rc < 0)
        return rc;
    if (is_string_eq(v, "user"))
        t->role = VH_ROLE_USER;
    else if (is_string_eq(v, "bot"))
        t->role = VH_ROLE_BOT;
    else
        return fail_at(c, "role", VH_EINVAL, "must be \"user\" or \"bot\"");
    rc = get_string(c, obj, "content", &s, &len);
    if (rc < 0)
        return rc;
    if (len > VH_CONTENT_MAX)
        return fail_at(c, "content", VH_ETOOBIG, "longer than %d bytes", VH_CONTENT_MAX);
    rc = dup_string(c, s, len, &t->content);
    if (rc < 0)
        return rc;
    t->content_len = len;
    rc = get_time(c, obj, "timestamp", &t->ts_ms);
    if (rc < 0)
        return rc;
    /*
     * The seed's strict form: user turns carry "latency_ms": null, bot turns an integer or
     * nothing (the greeting). Producers and receivers may leave the user's null out.
     */
    rc = member(c, obj, "latency_ms", t->role == VH_ROLE_USER && c->payload && !c->allow_unknown,
                &v);
    if (rc < 0 || !v)
        return rc;
    if (t->role == VH_ROLE_USER) {
        if (!is_kind(v, VH_JT_NULL))
            return fail_at(c, "latency_ms", VH_EINVAL, "must be null on user turns");
        return 0;
    }
    rc = int_value(c, v, "latency_ms", VH_LATENCY_MAX, "must be an integer or absent on bot turns",
                   &t->latency_ms);
    if (rc < 0)
        return rc;
    t->has_latency = true;
    return 0;
}

static int parse_transcript(struct ctx *c, const struct vh_jt *obj, struct vh_session *s)
{
    const struct vh_jt *arr, *turn;
    size_t old, i, n;
    int rc;

    rc = member(c, obj, "transcript", true, &arr);
    if (rc < 0)
        return rc;
    old = path_push_key(c, "transcript");
    if (!is_kind(arr, VH_JT_ARRAY)) {
        rc = fail(c, VH_EINVAL, "must be an array");
        goto out;
    }
    n = arr->len;
    if (n > VH_TURNS_MAX) {
        rc = fail(c, VH_ETOOBIG, "more than %d turns", VH_TURNS_MAX);
        goto out;
    }
    if (n) {
        s->turns = vh_malloc(n * sizeof(*s->turns));
        if (!s->turns) {
            rc = nomem(c);
            goto out;
        }
        for (i = 0; i < n; i++)
            s->turns[i] = (struct vh_turn){0};
        s->n_turns = n; /* all zeroed, so vh_session_free() can run at any point */
    }
    for (i = 0, turn = arr->u.first; turn; i++, turn = turn->next) {
        size_t at = path_push_index(c, i);

        rc = parse_turn(c, turn, &s->turns[i]);
        path_set_len(c, at);
        if (rc < 0)
            goto out;
    }
out:
    path_set_len(c, old);
    return rc;
}

static int parse_latency(struct ctx *c, const struct vh_jt *obj, struct vh_latency *lat)
{
    static const char *const keys[] = {"min_ms", "max_ms", "avg_ms", NULL};
    int rc;

    if (!is_kind(obj, VH_JT_OBJECT))
        return fail(c, VH_EINVAL, "must be an object");
    rc = check_keys(c, obj, keys);
    if (rc == 0)
        rc = get_int(c, obj, "min_ms", VH_LATENCY_MAX, &lat->min_ms);
    if (rc == 0)
        rc = get_int(c, obj, "max_ms", VH_LATENCY_MAX, &lat->max_ms);
    if (rc == 0)
        rc = get_int(c, obj, "avg_ms", VH_LATENCY_MAX, &lat->avg_ms);
    if (rc == 0 && !(lat->min_ms <= lat->avg_ms && lat->avg_ms <= lat->max_ms))
        rc = fail(c, VH_EINVAL, "must have min_ms <= avg_ms <= max_ms");
    return rc;
}

static int parse_call(struct ctx *c, const struct vh_jt *obj, struct vh_call *call)
{
    static const char *const keys[] = {"call_id",   "from_number", "to_number",
                                       "direction", "status",      NULL};
    const char *s = NULL;
    size_t len = 0;
    const struct vh_jt *v;
    int rc;

    rc = check_keys(c, obj, keys);
    if (rc == 0)
        rc = get_id(c, obj, "call_id", &call->call_id);
    if (rc == 0)
        rc = get_e164(c, obj, "from_number", &call->from_number);
    if (rc == 0)
        rc = get_e164(c, obj, "to_number", &call->to_number);
    if (rc == 0)
        rc = member(c, obj, "direction", true, &v);
    if (rc == 0 && !(is_string_eq(v, "outbound")))
        rc = fail_at(c, "direction", VH_EINVAL, "must be \"outbound\"");
    if (rc == 0) {
        rc = get_string(c, obj, "status", &s, &len);
        if (rc == 0) {
            call->status = vh_call_status_from_name(s, len);
            if (!call->status)
                rc = fail_at(c, "status", VH_EINVAL,
                             "must be one of completed, failed, no_answer, busy, canceled");
        }
    }
    return rc;
}

/* recording_url: null or an http(s) URL, at most VH_URL_MAX bytes, no spaces or controls. */
static int parse_url(struct ctx *c, const struct vh_jt *v, char **out)
{
    const char *s;
    size_t len, i, scheme;

    if (!v || is_kind(v, VH_JT_NULL))
        return 0;
    if (!is_kind(v, VH_JT_STRING))
        return fail_at(c, "recording_url", VH_EINVAL, "must be a string or null");
    s = v->u.s;
    len = v->len;
    if (len > VH_URL_MAX)
        return fail_at(c, "recording_url", VH_ETOOBIG, "longer than %d bytes", VH_URL_MAX);
    scheme = strncmp(s, "https://", 8) == 0 ? 8 : strncmp(s, "http://", 7) == 0 ? 7 : 0;
    if (scheme == 0 || len == scheme)
        return fail_at(c, "recording_url", VH_EINVAL, "must be an http:// or https:// URL");
    for (i = 0; i < len; i++)
        if ((unsigned char)s[i] <= 0x20 || s[i] == 0x7f)
            return fail_at(c, "recording_url", VH_EINVAL,
                           "must not contain spaces or control characters");
    return dup_string(c, s, len, out);
}

/* recording_key (ingest only): an S3 object key, 1..VH_OBJECT_KEY_MAX bytes, no controls. */
static int parse_object_key(struct ctx *c, const struct vh_jt *v, char **out)
{
    const char *s = NULL;
    size_t len = 0, i;

    if (!v || is_kind(v, VH_JT_NULL))
        return 0;
    if (!is_kind(v, VH_JT_STRING))
        return fail_at(c, "recording_key", VH_EINVAL, "must be a string or null");
    s = v->u.s;
    len = v->len;
    if (len == 0)
        return fail_at(c, "recording_key", VH_EINVAL, "must not be empty");
    if (len > VH_OBJECT_KEY_MAX)
        return fail_at(c, "recording_key", VH_ETOOBIG, "longer than %d bytes", VH_OBJECT_KEY_MAX);
    for (i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return fail_at(c, "recording_key", VH_EINVAL, "must not contain control characters");
    return dup_string(c, s, len, out);
}

static int parse_agent_name(struct ctx *c, const struct vh_jt *obj, char **out)
{
    const char *s = NULL;
    size_t len = 0;
    int rc = get_string(c, obj, "agent_name", &s, &len);

    if (rc < 0)
        return rc;
    if (len == 0)
        return fail_at(c, "agent_name", VH_EINVAL, "must not be empty");
    if (len > VH_NAME_MAX)
        return fail_at(c, "agent_name", VH_ETOOBIG, "longer than %d bytes", VH_NAME_MAX);
    return dup_string(c, s, len, out);
}

static int parse_credits(struct ctx *c, const struct vh_jt *obj, double *out)
{
    const struct vh_jt *v;
    double x;
    int rc = member(c, obj, "credits_used", true, &v);

    if (rc < 0)
        return rc;
    if (!(v && vh__jt_is_number(v)))
        return fail_at(c, "credits_used", VH_EINVAL, "must be a number");
    /* The parser refuses reals that overflow, so x is finite; !(x >= 0) would catch a NaN. */
    x = vh__jt_number(v);
    if (!(x >= 0 && x <= VH_CREDITS_MAX))
        return fail_at(c, "credits_used", VH_EINVAL, "must be between 0 and 1000000000");
    *out = x;
    return 0;
}

/*
 * The three keys whose presence depends on the document: required in a payload, where
 * null is a value; optional in ingest, where null means the same as absent.
 */
static int parse_optional_parts(struct ctx *c, const struct vh_jt *obj, struct vh_session *s)
{
    const struct vh_jt *v;
    size_t old;
    int rc;

    rc = member(c, obj, "recording_url", c->payload, &v);
    if (rc == 0)
        rc = parse_url(c, v, &s->recording_url);
    if (rc == 0 && !c->payload) {
        rc = parse_object_key(c, vh__jt_get(obj, "recording_key"), &s->recording_key);
        if (rc == 0 && s->recording_url && s->recording_key)
            rc = fail_at(c, "recording_key", VH_EINVAL, "not allowed together with recording_url");
    }
    if (rc == 0)
        rc = member(c, obj, "latency", c->payload, &v);
    if (rc == 0 && v && !(is_kind(v, VH_JT_NULL) && !c->payload)) {
        old = path_push_key(c, "latency");
        rc = parse_latency(c, v, &s->latency);
        path_set_len(c, old);
        s->has_latency = rc == 0;
    }
    if (rc == 0)
        rc = member(c, obj, "call", c->payload, &v);
    if (rc == 0 && v && !is_kind(v, VH_JT_NULL)) {
        old = path_push_key(c, "call");
        rc = is_kind(v, VH_JT_OBJECT) ? parse_call(c, v, &s->call)
                                      : fail(c, VH_EINVAL, "must be an object or null");
        path_set_len(c, old);
        s->has_call = rc == 0;
    }
    return rc;
}

/* The session object at the current path; stores a new session in *out on success. */
static int parse_session(struct ctx *c, const struct vh_jt *obj, struct vh_session **out)
{
    static const char *const keys_ingest[] = {
        "session_id", "agent_id",      "agent_name",    "duration_seconds", "credits_used",
        "transcript", "recording_url", "recording_key", "latency",          "call",
        NULL};
    static const char *const keys_payload[] = {
        "session_id",   "agent_id",   "agent_name",    "duration_seconds",
        "credits_used", "transcript", "recording_url", "latency",
        "call",         NULL};
    struct vh_session *s = NULL;
    int rc;

    if (!is_kind(obj, VH_JT_OBJECT))
        return fail(c, VH_EINVAL, "must be an object");
    rc = check_keys(c, obj, c->payload ? keys_payload : keys_ingest);
    if (rc < 0)
        return rc;
    s = vh_malloc(sizeof(*s));
    if (!s)
        return nomem(c);
    *s = (struct vh_session){0};
    rc = get_id(c, obj, "session_id", &s->session_id);
    if (rc == 0)
        rc = get_id(c, obj, "agent_id", &s->agent_id);
    if (rc == 0)
        rc = parse_agent_name(c, obj, &s->agent_name);
    if (rc == 0)
        rc = get_int(c, obj, "duration_seconds", VH_DURATION_MAX, &s->duration_seconds);
    if (rc == 0)
        rc = parse_credits(c, obj, &s->credits_used);
    if (rc == 0)
        rc = parse_transcript(c, obj, s);
    if (rc == 0)
        rc = parse_optional_parts(c, obj, s);
    if (rc < 0)
        goto out;
    *out = s;
    s = NULL;
out:
    vh_session_free(s);
    return rc;
}

/* Parses the member `key` of the root as a session, with paths under "key.". */
static int parse_session_at(struct ctx *c, const struct vh_jt *root, const char *key,
                            struct vh_session **out)
{
    const struct vh_jt *v;
    size_t old;
    int rc = member(c, root, key, true, &v);

    if (rc < 0)
        return rc;
    old = path_push_key(c, key);
    rc = parse_session(c, v, out);
    path_set_len(c, old);
    return rc;
}

static int check_flags(unsigned flags, struct vh_error *err)
{
    if (flags & ~(unsigned)VH_PARSE_ALLOW_UNKNOWN)
        return vh_error_set(err, VH_EINVAL, "parse: unknown flags 0x%x", flags);
    return 0;
}

/* --- entry points ------------------------------------------------------------------------- */

int vh_session_parse(const char *json, size_t len, unsigned flags, struct vh_session **out,
                     struct vh_error *err)
{
    struct ctx c;
    struct vh_jt_doc doc = {0};
    int rc;

    ctx_init(&c, false, flags, err);
    rc = check_flags(flags, err);
    if (rc == 0)
        rc = load(json, len, &doc, err);
    if (rc == 0)
        rc = parse_session(&c, doc.root, out);
    vh__jt_doc_release(&doc);
    return rc;
}

int vh_ingest_parse(const char *json, size_t len, struct vh_ingest **out, struct vh_error *err)
{
    static const char *const keys[] = {"partner_id", "session", NULL};
    struct ctx c;
    struct vh_jt_doc doc = {0};
    const struct vh_jt *root;
    struct vh_ingest *in = NULL;
    int rc;

    ctx_init(&c, false, 0, err);
    rc = load(json, len, &doc, err);
    if (rc < 0)
        goto out;
    root = doc.root;
    in = vh_malloc(sizeof(*in));
    if (!in) {
        rc = nomem(&c);
        goto out;
    }
    *in = (struct vh_ingest){0};
    rc = check_keys(&c, root, keys);
    if (rc == 0)
        rc = get_id(&c, root, "partner_id", &in->partner_id);
    if (rc == 0)
        rc = parse_session_at(&c, root, "session", &in->session);
    if (rc < 0)
        goto out;
    *out = in;
    in = NULL;
out:
    vh_ingest_free(in);
    vh__jt_doc_release(&doc);
    return rc;
}

int vh_event_parse(const char *json, size_t len, unsigned flags, struct vh_event **out,
                   struct vh_error *err)
{
    static const char *const keys[] = {"event", "timestamp", "data", NULL};
    struct ctx c;
    struct vh_jt_doc doc = {0};
    const struct vh_jt *root, *v;
    struct vh_event *ev = NULL;
    int rc;

    ctx_init(&c, true, flags, err);
    rc = check_flags(flags, err);
    if (rc == 0)
        rc = load(json, len, &doc, err);
    if (rc < 0)
        goto out;
    root = doc.root;
    ev = vh_malloc(sizeof(*ev));
    if (!ev) {
        rc = nomem(&c);
        goto out;
    }
    *ev = (struct vh_event){0};
    rc = check_keys(&c, root, keys);
    if (rc == 0)
        rc = member(&c, root, "event", true, &v);
    if (rc == 0 && !(is_string_eq(v, VH_EVENT_TYPE)))
        rc = fail_at(&c, "event", VH_EINVAL, "must be \"" VH_EVENT_TYPE "\"");
    if (rc == 0)
        rc = get_time(&c, root, "timestamp", &ev->ts_ms);
    if (rc == 0)
        rc = parse_session_at(&c, root, "data", &ev->session);
    if (rc < 0)
        goto out;
    *out = ev;
    ev = NULL;
out:
    vh_event_free(ev);
    vh__jt_doc_release(&doc);
    return rc;
}

/* --- flat request objects (json.h) ------------------------------------------------------ */

void vh_json_fields_release(struct vh_jfield *fields, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        vh_free(fields[i].str);
        fields[i].str = NULL;
        fields[i].str_len = 0;
        fields[i].present = false;
        fields[i].is_null = false;
        fields[i].b = false;
        fields[i].i = 0;
    }
}

static const char *type_name(enum vh_jtype t)
{
    switch (t) {
    case VH_JSTRING:
        return "a string";
    case VH_JBOOL:
        return "a boolean";
    case VH_JINT:
        return "an integer";
    }
    return "a value";
}

static int fill_field(struct vh_jfield *f, const struct vh_jt *v, struct vh_error *err)
{
    f->present = true;
    if (is_kind(v, VH_JT_NULL)) {
        if (!f->nullable)
            return vh_error_set(err, VH_EINVAL, "%s: must be %s, not null", f->name,
                                type_name(f->type));
        f->is_null = true;
        return 0;
    }
    switch (f->type) {
    case VH_JSTRING: {
        const char *s;
        size_t len;

        if (!is_kind(v, VH_JT_STRING))
            break;
        s = v->u.s;
        len = v->len;
        if (len > f->max_len)
            return vh_error_set(err, VH_ETOOBIG, "%s: longer than %zu bytes", f->name, f->max_len);
        if (memchr(s, '\0', len))
            return vh_error_set(err, VH_EINVAL, "%s: must not contain NUL", f->name);
        f->str = vh_strndup(s, len);
        if (!f->str)
            return vh_error_set(err, VH_ENOMEM, "%s: out of memory", f->name);
        f->str_len = len;
        return 0;
    }
    case VH_JBOOL:
        if (!is_bool(v))
            break;
        f->b = (v->kind == VH_JT_TRUE);
        return 0;
    case VH_JINT:
        if (is_past_int64(v))
            return vh_error_set(err, VH_EINVAL, "%s: must be an integer between %lld and %lld",
                                f->name, (long long)INT64_MIN, (long long)INT64_MAX);
        if (!is_kind(v, VH_JT_INT))
            break;
        f->i = (int64_t)v->u.i;
        return 0;
    }
    return vh_error_set(err, VH_EINVAL, "%s: must be %s", f->name, type_name(f->type));
}

int vh_json_parse_fields(const char *json, size_t len, struct vh_jfield *fields, size_t n,
                         struct vh_error *err)
{
    struct vh_jt_doc doc = {0};
    const struct vh_jt *v;
    char quoted[64];
    size_t i;
    int rc = 0;

    vh_json_fields_release(fields, n);
    rc = load(json, len, &doc, err);
    if (rc < 0)
        return rc;
    for (v = doc.root->u.first; v; v = v->next) {
        for (i = 0; i < n; i++)
            if (strcmp(fields[i].name, v->key) == 0)
                break;
        if (i == n) {
            vh__jt_quote_key(v->key, quoted);
            rc = vh_error_set(err, VH_EINVAL, "body: unknown key \"%s\"", quoted);
            goto out;
        }
        rc = fill_field(&fields[i], v, err);
        if (rc < 0)
            goto out;
    }
    for (i = 0; i < n; i++)
        if (fields[i].required && !fields[i].present) {
            rc = vh_error_set(err, VH_EINVAL, "%s: missing", fields[i].name);
            goto out;
        }
out:
    vh__jt_doc_release(&doc);
    if (rc < 0)
        vh_json_fields_release(fields, n);
    return rc;
}
