/*
 * The HTTP API as logic: a request struct in, a response struct out (api.h). No sockets
 * here; the server adapter (server.c) and the tests drive vh_api_handle directly.
 *
 * Reading order: vh_api_handle (auth, rate limit, dispatch) -> one function per route ->
 * the response helpers at the top.
 */
#include <vocohook/api.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <vocohook/alloc.h>
#include <vocohook/clock.h>
#include <vocohook/id.h>
#include <vocohook/json.h>
#include <vocohook/policy.h>
#include <vocohook/presign.h>
#include <vocohook/sign.h>

#include "core/utf8_int.h"
#include "http/api_int.h"
#include "core/banned.h"

#define RESP_MAX             (4 * 1024 * 1024) /* the largest answer: a page of 100 calls */
#define PATH_MAX_LEN         512
#define PATH_SEGMENTS        8
#define TOKEN_MAX            256
#define SECRET_MESSAGE       "Save this secret \xe2\x80\x94 it will not be shown again."
#define LEGACY_LABEL         "default"
#define LIST_LIMIT_MAX       100
#define LIST_LIMIT_DEFAULT   10
#define ENDPOINT_WRITE_TRIES 5   /* reads and writes of an endpoint that others keep changing */
#define LIST_TAIL_MAX        160 /* `],"total":…,"next_offset":…}}` after a page's calls */

/*
 * The challenges of a 401 (RFC 9110 11.6.1 requires one; RFC 6750 3 gives the form). Both
 * credentials are bearer tokens, told apart by the realm. A token that was sent and refused
 * adds error="invalid_token"; a request that sent none names no error (RFC 6750 3.1).
 */
#define CHALLENGE_API            "Bearer realm=\"vocohook-api\""
#define CHALLENGE_API_INVALID    CHALLENGE_API ", error=\"invalid_token\""
#define CHALLENGE_INGEST         "Bearer realm=\"vocohook-ingest\""
#define CHALLENGE_INGEST_INVALID CHALLENGE_INGEST ", error=\"invalid_token\""

/* The `data` object of a stored payload starts right after this prefix and the timestamp. */
#define PAYLOAD_PREFIX "{\"event\":\"session.completed\",\"timestamp\":\""
#define PAYLOAD_DATA   "\",\"data\":"

struct route_ctx {
    struct vh_api *api;
    const struct vh_api_req *req;
    struct vh_api_resp *resp;
    struct vh_partner partner; /* the authenticated partner (partner API only) */
    char key_hash[VH_SHA256_HEX_LEN + 1];
    char *seg[PATH_SEGMENTS];
    size_t n_seg;
};

/* ---- logging ------------------------------------------------------------------------- */

void vh__api_log(struct vh_api *api, enum vh_log_level level, const char *request_id,
                 const char *fmt, ...)
{
    struct vh_buf line = VH_BUF_INIT(4096);
    char ts[VH_TIME_LEN + 1];
    char msg[512];
    va_list ap;
    int rc;

    if (!api->log)
        return;
    va_start(ap, fmt);
    if (vsnprintf(msg, sizeof(msg), fmt, ap) < 0)
        msg[0] = '\0';
    va_end(ap);
    vh_time_format(vh_time_now_ms(), ts);
    rc = vh_buf_addf(&line, "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":", ts,
                     vh_log_level_name(level));
    if (rc == 0)
        rc = vh_json_add_string(&line, msg, strlen(msg));
    if (rc == 0 && request_id) {
        rc = vh_buf_adds(&line, ",\"request_id\":");
        if (rc == 0)
            rc = vh_json_add_string(&line, request_id, strlen(request_id));
    }
    if (rc == 0)
        rc = vh_buf_addc(&line, '}');
    if (rc == 0)
        api->log(api->log_ud, level, line.data);
    vh_buf_release(&line);
}

/* ---- responses ----------------------------------------------------------------------- */

void vh_api_resp_init(struct vh_api_resp *resp)
{
    resp->status = 0;
    vh_buf_init(&resp->body, RESP_MAX);
    resp->retry_after_s = 0;
    resp->location = NULL;
    resp->content_type = NULL;
    resp->www_authenticate = NULL;
    resp->allow[0] = '\0';
}

void vh_api_resp_release(struct vh_api_resp *resp)
{
    vh_buf_release(&resp->body);
}

static const char *code_for_status(int status)
{
    switch (status) {
    case 400:
        return "VALIDATION_ERROR";
    case 401:
        return "UNAUTHORIZED";
    case 403:
        return "FORBIDDEN";
    case 404:
        return "NOT_FOUND";
    case 405:
        return "METHOD_NOT_ALLOWED";
    case 409:
        return "CONFLICT";
    case 413:
        return "PAYLOAD_TOO_LARGE";
    case 429:
        return "RATE_LIMITED";
    case 503:
        return "UNAVAILABLE";
    default:
        return "INTERNAL_ERROR";
    }
}

/*
 * Bytes that may not be UTF-8 as a JSON string: a receiver's reply, or an error message that
 * quotes the request (a path MHD decoded from %FF, one cut inside a character). Invalid UTF-8
 * would break the whole answer, so then each ill-formed byte (and each NUL) becomes '?'.
 */
static int add_lossy_string(struct vh_buf *b, const char *s, size_t len)
{
    char *copy;
    int rc = vh_json_add_string(b, s, len);

    if (rc != VH_EINVAL)
        return rc;
    copy = vh_strndup(s, len);
    if (!copy)
        return VH_ENOMEM;
    vh__utf8_repair(copy, len, false);
    rc = vh_json_add_string(b, copy, len);
    vh_free(copy);
    return rc;
}

/*
 * Replaces the response with the error envelope. Building it can only fail on memory;
 * then the body is left empty and the server sends the status alone.
 */
static void reply_error(struct vh_api_resp *resp, int status, const char *fmt, ...) VH_PRINTF(3, 4);
static void reply_error(struct vh_api_resp *resp, int status, const char *fmt, ...)
{
    char msg[VH_ERROR_MSG_MAX + 64];
    va_list ap;
    int rc;

    va_start(ap, fmt);
    if (vsnprintf(msg, sizeof(msg), fmt, ap) < 0)
        msg[0] = '\0';
    va_end(ap);
    resp->status = status;
    vh_buf_reset(&resp->body);
    rc = vh_buf_addf(&resp->body, "{\"success\":false,\"error\":{\"code\":\"%s\",\"message\":",
                     code_for_status(status));
    if (rc == 0)
        rc = add_lossy_string(&resp->body, msg, strlen(msg));
    if (rc == 0)
        rc = vh_buf_adds(&resp->body, "}}");
    if (rc < 0)
        vh_buf_reset(&resp->body);
}

/* Answers a failed library call: input errors as 400/404/409, our failures as 500. */
static int reply_rc(struct route_ctx *c, int rc, const struct vh_error *err)
{
    const char *msg = err->msg[0] ? err->msg : vh_strerror(rc);

    switch (rc) {
    case VH_EINVAL:
    case VH_ETOOBIG:
        reply_error(c->resp, 400, "%s", msg);
        return 0;
    case VH_ENOTFOUND:
        reply_error(c->resp, 404, "%s", msg);
        return 0;
    case VH_ECONFLICT:
        reply_error(c->resp, 409, "%s", msg);
        return 0;
    case VH_ESTORE:
        /*
         * The database is unreachable or failed: nothing was committed, so the client may
         * (and should) retry. The cause goes to the log only.
         */
        vh__api_log(c->api, VH_LOG_ERROR, c->req->request_id, "%s %s: %s", c->req->method,
                    c->req->path, msg);
        c->resp->retry_after_s = 1;
        reply_error(c->resp, 503, "the store is unavailable; nothing was saved, retry later");
        return rc;
    default:
        vh__api_log(c->api, VH_LOG_ERROR, c->req->request_id, "%s %s: %s", c->req->method,
                    c->req->path, msg);
        reply_error(c->resp, 500, "internal error (request %s)",
                    c->req->request_id ? c->req->request_id : "-");
        return rc;
    }
}

/* Starts a success envelope; the caller appends the data value, then ok_end(). */
static int ok_begin(struct route_ctx *c, int status)
{
    c->resp->status = status;
    vh_buf_reset(&c->resp->body);
    return vh_buf_adds(&c->resp->body, "{\"success\":true,\"data\":");
}

/* Ends a success envelope; a failure to build it is ours (500), whatever the code. */
static int ok_end(struct route_ctx *c, int rc)
{
    if (rc == 0)
        rc = vh_buf_addc(&c->resp->body, '}');
    if (rc < 0) {
        struct vh_error err = VH_ERROR_INIT;

        vh_error_set(&err, rc, "building the response: %s", vh_strerror(rc));
        /* An answer past RESP_MAX is no fault of the client's input. */
        return reply_rc(c, rc == VH_ETOOBIG ? VH_EIO : rc, &err);
    }
    return 0;
}

/* ---- small JSON writers ---------------------------------------------------------------- */

static int add_key_str(struct vh_buf *b, const char *key, const char *val)
{
    int rc = vh_buf_addf(b, "\"%s\":", key);

    if (rc == 0)
        rc = val ? vh_json_add_string(b, val, strlen(val)) : vh_buf_adds(b, "null");
    return rc;
}

static int add_key_time(struct vh_buf *b, const char *key, int64_t ms, bool null_if_zero)
{
    char ts[VH_TIME_LEN + 1];

    if (null_if_zero && ms == 0)
        return vh_buf_addf(b, "\"%s\":null", key);
    vh_time_format(ms, ts);
    return vh_buf_addf(b, "\"%s\":\"%s\"", key, ts);
}

static const char *outcome_name(enum vh_delivery_outcome o)
{
    switch (o) {
    case VH_OUTCOME_SUCCEEDED:
        return "succeeded";
    case VH_OUTCOME_FAILED:
        return "failed";
    case VH_OUTCOME_NONE:
        break;
    }
    return NULL;
}

/* An endpoint object; the secret only when `with_secret` (create and rotate answers). */
static int add_endpoint(struct vh_buf *b, const struct vh_endpoint *ep, bool with_secret)
{
    int rc = vh_buf_addc(b, '{');

    if (rc == 0)
        rc = add_key_str(b, "id", ep->id);
    if (rc == 0)
        rc = vh_buf_addc(b, ',');
    if (rc == 0)
        rc = add_key_str(b, "label", ep->label);
    if (rc == 0)
        rc = vh_buf_addc(b, ',');
    if (rc == 0)
        rc = add_key_str(b, "url", ep->url);
    if (rc == 0)
        rc = vh_buf_addf(b, ",\"enabled\":%s,", ep->enabled ? "true" : "false");
    if (rc == 0 && with_secret) {
        rc = add_key_str(b, "secret", ep->secret);
        if (rc == 0)
            rc = vh_buf_addc(b, ',');
    }
    if (rc == 0)
        rc = add_key_str(b, "retry_schedule", ep->retry_schedule[0] ? ep->retry_schedule : NULL);
    if (rc == 0)
        rc = ep->timeout_ms ? vh_buf_addf(b, ",\"timeout_ms\":%lld,", (long long)ep->timeout_ms)
                            : vh_buf_adds(b, ",\"timeout_ms\":null,");
    if (rc == 0)
        rc = add_key_time(b, "created_at", ep->created_ms, false);
    if (rc == 0)
        rc = vh_buf_addc(b, ',');
    if (rc == 0)
        rc = add_key_time(b, "updated_at", ep->updated_ms, false);
    if (rc == 0)
        rc = vh_buf_addc(b, ',');
    if (rc == 0)
        rc = add_key_time(b, "last_delivery_at", ep->last_delivery_ms, true);
    if (rc == 0)
        rc = vh_buf_addc(b, ',');
    if (rc == 0)
        rc = add_key_str(b, "last_delivery_status", outcome_name(ep->last_delivery_status));
    if (rc == 0 && with_secret)
        rc = vh_buf_adds(b, ",\"message\":\"" SECRET_MESSAGE "\"");
    if (rc == 0)
        rc = vh_buf_addc(b, '}');
    return rc;
}

/* Answers with one endpoint object (the secret only where the contract shows it once). */
static int reply_endpoint(struct route_ctx *c, int status, const struct vh_endpoint *ep,
                          bool with_secret)
{
    int rc = ok_begin(c, status);

    if (rc == 0)
        rc = add_endpoint(&c->resp->body, ep, with_secret);
    return ok_end(c, rc);
}

/* ---- validation ------------------------------------------------------------------------ */

static bool label_is_valid(const char *s, size_t len)
{
    size_t i;

    if (len < 1 || len > VH_LABEL_MAX)
        return false;
    for (i = 0; i < len; i++) {
        char ch = s[i];
        bool alnum = (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9');

        if (!alnum && (i == 0 || ch != '-'))
            return false;
    }
    return true;
}

/*
 * An endpoint URL: https:// (or http:// when allowed), a host, an optional port, then
 * anything printable. No credentials (they would end up in logs and lists), no fragment.
 * The destination address itself is checked at connect time by the delivery engine.
 */
static int check_endpoint_url(const struct vh_api *api, const char *field, const char *url,
                              size_t len, struct vh_error *err)
{
    const char *host, *end, *p;
    size_t i;

    if (len > VH_ENDPOINT_URL_MAX)
        return vh_error_set(err, VH_ETOOBIG, "%s: longer than %d bytes", field,
                            VH_ENDPOINT_URL_MAX);
    for (i = 0; i < len; i++)
        if ((unsigned char)url[i] <= 0x20 || (unsigned char)url[i] == 0x7f)
            return vh_error_set(err, VH_EINVAL,
                                "%s: must not contain spaces or control "
                                "characters",
                                field);
    if (len >= 8 && strncmp(url, "https://", 8) == 0) {
        host = url + 8;
    } else if (len >= 7 && strncmp(url, "http://", 7) == 0) {
        if (!api->allow_http)
            return vh_error_set(err, VH_EINVAL, "%s: must be an https:// URL", field);
        host = url + 7;
    } else {
        return vh_error_set(err, VH_EINVAL, "%s: must be an https:// URL", field);
    }
    end = host + strcspn(host, "/?#");
    if (end == host)
        return vh_error_set(err, VH_EINVAL, "%s: has no host", field);
    for (p = host; p < end; p++)
        if (*p == '@')
            return vh_error_set(err, VH_EINVAL, "%s: must not contain credentials", field);
    if (strchr(url, '#'))
        return vh_error_set(err, VH_EINVAL, "%s: must not contain a fragment", field);
    p = host;
    if (*p == '[') {
        p = memchr(host, ']', (size_t)(end - host));
        if (!p)
            return vh_error_set(err, VH_EINVAL, "%s: unterminated [IPv6] host", field);
        p++;
    } else {
        while (p < end && *p != ':') {
            if ((unsigned char)*p >= 0x80)
                return vh_error_set(err, VH_EINVAL,
                                    "%s: host must be ASCII (an internationalized name goes in "
                                    "its xn-- form)",
                                    field);
            if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                  (*p >= '0' && *p <= '9') || *p == '.' || *p == '-'))
                return vh_error_set(err, VH_EINVAL, "%s: host has a bad character '%c'", field, *p);
            p++;
        }
        if (p == host)
            return vh_error_set(err, VH_EINVAL, "%s: has no host", field);
    }
    if (p < end) {
        long port = 0;

        if (*p != ':' || p + 1 == end)
            return vh_error_set(err, VH_EINVAL, "%s: bad port", field);
        for (p++; p < end; p++) {
            if (*p < '0' || *p > '9' || port > 65535)
                return vh_error_set(err, VH_EINVAL, "%s: bad port", field);
            port = port * 10 + (*p - '0');
        }
        if (port < 1 || port > 65535)
            return vh_error_set(err, VH_EINVAL, "%s: port must be 1 to 65535", field);
    }
    return 0;
}

static int check_label(const char *label, size_t len, bool allow_default, struct vh_error *err)
{
    if (!label_is_valid(label, len))
        return vh_error_set(err, VH_EINVAL,
                            "label: must match ^[a-z0-9][a-z0-9-]{0,30}$ (lowercase letters, "
                            "digits and '-', 1 to 31 characters)");
    if (!allow_default && strcmp(label, LEGACY_LABEL) == 0)
        return vh_error_set(err, VH_EINVAL,
                            "label: 'default' is reserved for the legacy PUT /config/webhook "
                            "route");
    return 0;
}

/* ---- authentication and rate limits ----------------------------------------------------- */

/* The token of "Authorization: Bearer <token>", or NULL. */
static const char *bearer_token(const char *auth, size_t *len)
{
    const char *t;

    if (!auth || strncasecmp(auth, "Bearer ", 7) != 0)
        return NULL;
    t = auth + 7;
    while (*t == ' ')
        t++;
    *len = strlen(t);
    while (*len > 0 && t[*len - 1] == ' ')
        (*len)--;
    if (*len == 0 || *len > TOKEN_MAX)
        return NULL;
    return t;
}

static int auth_partner(struct route_ctx *c)
{
    struct vh_error err = VH_ERROR_INIT;
    const char *tok;
    size_t len = 0;
    int rc;

    tok = bearer_token(c->req->authorization, &len);
    if (!tok) {
        c->resp->www_authenticate = CHALLENGE_API;
        reply_error(c->resp, 401, "missing or malformed Authorization: Bearer <API key> header");
        return 1;
    }
    rc = vh_sha256_hex(tok, len, c->key_hash, &err);
    if (rc == 0)
        rc = vh_store_partner_by_key(c->api->st, c->key_hash, &c->partner, &err);
    if (rc == VH_ENOTFOUND) {
        c->resp->www_authenticate = CHALLENGE_API_INVALID;
        reply_error(c->resp, 401, "invalid or revoked API key");
        return 1;
    }
    if (rc < 0) {
        reply_rc(c, rc, &err);
        return 1;
    }
    return 0;
}

/* The key's slot (found, or taken over: a free one, else a stale one, else the oldest). */
static struct rate_slot *rate_slot_of(struct vh_api *api, const char *key, int64_t now)
{
    size_t h = 5381, i, slot = RATE_SLOTS, stale = RATE_SLOTS, oldest = 0;
    int64_t oldest_ms = INT64_MAX;
    struct rate_slot *s;

    for (i = 0; key[i]; i++)
        h = h * 33 + (unsigned char)key[i];
    /* Find the key along its probe chain (which ends at a never-used slot); if it is not
     * there, take the first stale slot seen, else the free one, else the stalest. */
    for (i = 0; i < RATE_SLOTS; i++) {
        size_t k = (h + i) % RATE_SLOTS;
        struct rate_slot *r = &api->rates[k];

        if (strcmp(r->key, key) == 0) {
            slot = k;
            break;
        }
        if (r->key[0] == '\0') {
            if (stale == RATE_SLOTS)
                stale = k;
            break;
        }
        if (stale == RATE_SLOTS && now - r->w.general_start_ms >= 2 * VH_RATE_WINDOW_MS &&
            now - r->w.calls_start_ms >= 2 * VH_RATE_WINDOW_MS)
            stale = k;
        if (r->w.general_start_ms < oldest_ms) {
            oldest_ms = r->w.general_start_ms;
            oldest = k;
        }
    }
    if (slot == RATE_SLOTS)
        slot = stale != RATE_SLOTS ? stale : oldest;
    s = &api->rates[slot];
    if (strcmp(s->key, key) != 0) {
        memset(s, 0, sizeof(*s));
        memcpy(s->key, key, VH_SHA256_HEX_LEN);
    }
    return s;
}

/*
 * Counts one request against the key's per-minute windows. Returns 0, or the seconds until
 * the window reopens. With a store that shares windows between nodes (PostgreSQL) the
 * store decides, unless this process's copy already refuses; if the store fails, this
 * process's copy decides alone (limits hold per node until the database is back).
 */
static int rate_take(struct vh_api *api, const char *key, bool calls, int64_t now)
{
    struct vh_error err = VH_ERROR_INIT;
    struct vh_rate_window w;
    struct rate_slot *s;
    int wait, rc;

    if (api->rate.general_per_min < 0 && (!calls || api->rate.calls_per_min < 0))
        return 0;
    pthread_mutex_lock(&api->rate_lock);
    s = rate_slot_of(api, key, now);
    w = s->w;
    wait = vh_rate_apply(&w, &api->rate, calls, now);
    if (wait > 0 || !api->rate_shared) {
        if (wait == 0)
            s->w = w;
        pthread_mutex_unlock(&api->rate_lock);
        return wait;
    }
    pthread_mutex_unlock(&api->rate_lock);

    rc = vh_store_rate_take(api->st, key, &api->rate, calls, now, &wait, &w, &err);
    pthread_mutex_lock(&api->rate_lock);
    s = rate_slot_of(api, key, now);
    if (rc == 0) {
        s->w = w;
    } else {
        if (rc == VH_ENOTSUP)
            api->rate_shared = false;
        w = s->w;
        wait = vh_rate_apply(&w, &api->rate, calls, now);
        if (wait == 0)
            s->w = w;
    }
    pthread_mutex_unlock(&api->rate_lock);
    if (rc < 0 && rc != VH_ENOTSUP)
        vh__api_log(api, VH_LOG_WARN, NULL,
                    "rate limit: the store failed; counting in this "
                    "process alone");
    return wait;
}

/* ---- /api/v2/config/webhooks ------------------------------------------------------------ */

static int new_endpoint_fields(struct route_ctx *c, struct vh_endpoint *ep, struct vh_error *err)
{
    int rc;

    memset(ep, 0, sizeof(*ep));
    rc = vh_uuid_new(ep->id, err);
    if (rc == 0)
        rc = vh_secret_new(ep->secret, err);
    if (rc < 0)
        return rc;
    memcpy(ep->partner_id, c->partner.id, sizeof(ep->partner_id));
    ep->created_ms = c->req->now_ms;
    ep->updated_ms = c->req->now_ms;
    return 0;
}

/*
 * The endpoint's own retry schedule and attempt timeout (SPEC §3), when given: checked with
 * the retry policy's own parser; null puts back the server's.
 */
static int apply_delivery_settings(struct vh_endpoint *ep, const struct vh_jfield *sched,
                                   const struct vh_jfield *timeout, struct vh_error *err)
{
    struct vh_retry_policy p;
    struct vh_error sub = VH_ERROR_INIT;

    if (sched->present && sched->is_null) {
        ep->retry_schedule[0] = '\0';
    } else if (sched->present) {
        vh_retry_policy_init(&p);
        if (vh_retry_policy_set_schedule(&p, sched->str, sched->str_len, &sub) < 0)
            return vh_error_set(err, VH_EINVAL, "retry_schedule: %s", sub.msg);
        if (vh_retry_policy_check_immediate(&p, &sub) < 0)
            return vh_error_set(err, VH_EINVAL, "retry_schedule: %s", sub.msg);
        memcpy(ep->retry_schedule, sched->str, sched->str_len + 1);
    }
    if (timeout->present && timeout->is_null) {
        ep->timeout_ms = 0;
    } else if (timeout->present) {
        if (timeout->i < 100 || timeout->i > VH_ENDPOINT_TIMEOUT_MAX_MS)
            return vh_error_set(err, VH_EINVAL, "timeout_ms: must be from 100 to %lld",
                                (long long)VH_ENDPOINT_TIMEOUT_MAX_MS);
        ep->timeout_ms = timeout->i;
    }
    return 0;
}

static int webhooks_create(struct route_ctx *c)
{
    struct vh_jfield f[] = {
        {.name = "label", .type = VH_JSTRING, .required = true, .max_len = 64},
        {.name = "url", .type = VH_JSTRING, .required = true, .max_len = VH_ENDPOINT_URL_MAX},
        {.name = "enabled", .type = VH_JBOOL},
        {.name = "retry_schedule",
         .type = VH_JSTRING,
         .nullable = true,
         .max_len = VH_ENDPOINT_SCHEDULE_MAX},
        {.name = "timeout_ms", .type = VH_JINT, .nullable = true},
    };
    struct vh_error err = VH_ERROR_INIT;
    struct vh_endpoint ep;
    int rc;

    rc = vh_json_parse_fields(c->req->body, c->req->body_len, f, 5, &err);
    if (rc == 0)
        rc = check_label(f[0].str, f[0].str_len, false, &err);
    if (rc == 0)
        rc = check_endpoint_url(c->api, "url", f[1].str, f[1].str_len, &err);
    if (rc == 0)
        rc = new_endpoint_fields(c, &ep, &err);
    if (rc == 0)
        rc = apply_delivery_settings(&ep, &f[3], &f[4], &err);
    if (rc == 0) {
        memcpy(ep.label, f[0].str, f[0].str_len + 1);
        memcpy(ep.url, f[1].str, f[1].str_len + 1);
        ep.enabled = f[2].present ? f[2].b : true;
        rc = vh_store_endpoint_create(c->api->st, &ep, c->api->max_endpoints, &err);
    }
    vh_json_fields_release(f, 5);
    if (rc < 0)
        return reply_rc(c, rc, &err);
    return reply_endpoint(c, 201, &ep, true);
}

static int webhooks_list(struct route_ctx *c)
{
    struct vh_error err = VH_ERROR_INIT;
    struct vh_endpoint *eps = NULL;
    size_t n = 0, i;
    int rc;

    rc = vh_store_endpoint_list(c->api->st, c->partner.id, &eps, &n, &err);
    if (rc < 0)
        return reply_rc(c, rc, &err);
    rc = ok_begin(c, 200);
    if (rc == 0)
        rc = vh_buf_addc(&c->resp->body, '[');
    for (i = 0; rc == 0 && i < n; i++) {
        if (i)
            rc = vh_buf_addc(&c->resp->body, ',');
        if (rc == 0)
            rc = add_endpoint(&c->resp->body, &eps[i], false);
    }
    if (rc == 0)
        rc = vh_buf_addc(&c->resp->body, ']');
    vh_free(eps);
    return ok_end(c, rc);
}

/* Loads the partner's endpoint named by the path; answers 404 itself when missing. */
static int load_endpoint(struct route_ctx *c, struct vh_endpoint *ep)
{
    struct vh_error err = VH_ERROR_INIT;
    int rc;

    if (!vh_id_is_valid(c->seg[4], strlen(c->seg[4]))) {
        reply_error(c->resp, 404, "webhook endpoint not found");
        return 1;
    }
    rc = vh_store_endpoint_get(c->api->st, c->partner.id, c->seg[4], ep, &err);
    if (rc == VH_ENOTFOUND) {
        reply_error(c->resp, 404, "webhook endpoint '%s' not found", c->seg[4]);
        return 1;
    }
    if (rc < 0) {
        reply_rc(c, rc, &err);
        return 1;
    }
    return 0;
}

static int webhooks_get(struct route_ctx *c)
{
    struct vh_endpoint ep;

    if (load_endpoint(c, &ep))
        return 0;
    return reply_endpoint(c, 200, &ep, false);
}

/*
 * Answers a read-modify-write of an endpoint that lost every try to concurrent changes
 * (ENDPOINT_WRITE_TRIES), or passes any other outcome to reply_rc.
 */
static int reply_endpoint_rc(struct route_ctx *c, int rc, const struct vh_error *err)
{
    if (rc == VH_ESTATE) {
        reply_error(c->resp, 409,
                    "the webhook endpoint is being changed by other requests; try again");
        return 0;
    }
    return reply_rc(c, rc, err);
}

/*
 * The endpoint's URL, secret, enabled flag or existence changed in the store: attempts
 * queued with the old ones are taken back (vh_sender_endpoint_changed).
 */
static void endpoint_changed(struct vh_api *api, const char *endpoint_id)
{
    if (api->on_endpoint_changed)
        api->on_endpoint_changed(api->on_endpoint_changed_ud, endpoint_id);
}

static int webhooks_update(struct route_ctx *c)
{
    struct vh_jfield f[] = {
        {.name = "label", .type = VH_JSTRING, .max_len = 64},
        {.name = "url", .type = VH_JSTRING, .max_len = VH_ENDPOINT_URL_MAX},
        {.name = "enabled", .type = VH_JBOOL},
        {.name = "retry_schedule",
         .type = VH_JSTRING,
         .nullable = true,
         .max_len = VH_ENDPOINT_SCHEDULE_MAX},
        {.name = "timeout_ms", .type = VH_JINT, .nullable = true},
    };
    struct vh_error err = VH_ERROR_INIT;
    struct vh_endpoint seen, ep;
    int rc, tries;

    if (load_endpoint(c, &seen))
        return 0;
    rc = vh_json_parse_fields(c->req->body, c->req->body_len, f, 5, &err);
    if (rc == 0 && f[0].present && strcmp(f[0].str, seen.label) != 0)
        rc = check_label(f[0].str, f[0].str_len, false, &err);
    if (rc == 0 && f[1].present)
        rc = check_endpoint_url(c->api, "url", f[1].str, f[1].str_len, &err);
    /*
     * The fields named go onto the row as read; a change made meanwhile by another request
     * (a rotation, another PATCH) makes the write fail, and it goes again on a fresh read.
     */
    for (tries = 0; rc == 0 && tries < ENDPOINT_WRITE_TRIES; tries++) {
        if (tries && load_endpoint(c, &seen)) {
            vh_json_fields_release(f, 5);
            return 0; /* deleted meanwhile: answered 404 */
        }
        ep = seen;
        rc = apply_delivery_settings(&ep, &f[3], &f[4], &err);
        if (rc < 0)
            break;
        if (f[0].present)
            memcpy(ep.label, f[0].str, f[0].str_len + 1);
        if (f[1].present)
            memcpy(ep.url, f[1].str, f[1].str_len + 1);
        if (f[2].present)
            ep.enabled = f[2].b;
        ep.updated_ms = c->req->now_ms;
        rc = vh_store_endpoint_update_if(c->api->st, &seen, &ep, &err);
        if (rc != VH_ESTATE)
            break;
        vh_error_clear(&err);
        rc = 0;
    }
    if (rc == 0 && tries == ENDPOINT_WRITE_TRIES)
        rc = VH_ESTATE;
    vh_json_fields_release(f, 5);
    if (rc < 0)
        return reply_endpoint_rc(c, rc, &err);
    if (strcmp(ep.url, seen.url) != 0 || ep.enabled != seen.enabled)
        endpoint_changed(c->api, ep.id);
    return reply_endpoint(c, 200, &ep, false);
}

static int webhooks_delete(struct route_ctx *c)
{
    struct vh_error err = VH_ERROR_INIT;
    struct vh_endpoint ep;
    int rc;

    if (load_endpoint(c, &ep))
        return 0;
    rc = vh_store_endpoint_delete(c->api->st, c->partner.id, ep.id, c->req->now_ms, &err);
    if (rc < 0)
        return reply_rc(c, rc, &err);
    endpoint_changed(c->api, ep.id);
    rc = ok_begin(c, 200);
    if (rc == 0)
        rc = vh_buf_addf(&c->resp->body, "{\"id\":\"%s\",\"deleted\":true}", ep.id);
    return ok_end(c, rc);
}

/* Gives `ep` (`seen` as changed by the caller) a new secret and writes it over `seen`. */
static int write_new_secret(struct route_ctx *c, const struct vh_endpoint *seen,
                            struct vh_endpoint *ep, struct vh_error *err)
{
    int rc = vh_secret_new(ep->secret, err);

    ep->updated_ms = c->req->now_ms;
    if (rc == 0)
        rc = vh_store_endpoint_update_if(c->api->st, seen, ep, err);
    return rc;
}

static int webhooks_rotate(struct route_ctx *c)
{
    struct vh_error err = VH_ERROR_INIT;
    struct vh_endpoint seen, ep;
    int rc = 0, tries;

    /* As webhooks_update: a change made meanwhile is read again, never written over. */
    for (tries = 0; tries < ENDPOINT_WRITE_TRIES; tries++) {
        if (load_endpoint(c, &seen))
            return 0;
        ep = seen;
        rc = write_new_secret(c, &seen, &ep, &err);
        if (rc != VH_ESTATE)
            break;
        vh_error_clear(&err);
    }
    if (rc < 0)
        return reply_endpoint_rc(c, rc, &err);
    endpoint_changed(c->api, ep.id);
    rc = ok_begin(c, 200);
    if (rc == 0)
        rc = vh_buf_addf(&c->resp->body, "{\"id\":\"%s\",\"label\":", ep.id);
    if (rc == 0)
        rc = vh_json_add_string(&c->resp->body, ep.label, strlen(ep.label));
    if (rc == 0)
        rc = vh_buf_addf(&c->resp->body, ",\"secret\":\"%s\",\"message\":\"" SECRET_MESSAGE "\"}",
                         ep.secret);
    return ok_end(c, rc);
}

/* PUT /config/webhook: create or replace the reserved `default` endpoint, new secret. */
static int legacy_put(struct route_ctx *c)
{
    struct vh_jfield f[] = {
        {.name = "webhook_url",
         .type = VH_JSTRING,
         .required = true,
         .max_len = VH_ENDPOINT_URL_MAX},
    };
    struct vh_error err = VH_ERROR_INIT;
    struct vh_endpoint seen, ep;
    int rc, tries;

    rc = vh_json_parse_fields(c->req->body, c->req->body_len, f, 1, &err);
    if (rc == 0)
        rc = check_endpoint_url(c->api, "webhook_url", f[0].str, f[0].str_len, &err);
    /* Two concurrent PUTs may both find no default; the loser's insert conflicts on the
     * label, and its second try updates the winner's row. */
    for (tries = 0; rc == 0 && tries < ENDPOINT_WRITE_TRIES; tries++) {
        rc = vh_store_endpoint_get_by_label(c->api->st, c->partner.id, LEGACY_LABEL, &seen, &err);
        if (rc == 0) {
            /* url, secret and enabled onto the row as read; a change meanwhile: read again */
            ep = seen;
            memcpy(ep.url, f[0].str, f[0].str_len + 1);
            ep.enabled = true;
            rc = write_new_secret(c, &seen, &ep, &err);
            if (rc != VH_ESTATE)
                break;
            vh_error_clear(&err);
            rc = 0;
            continue;
        }
        if (rc != VH_ENOTFOUND)
            break;
        vh_error_clear(&err);
        rc = new_endpoint_fields(c, &ep, &err);
        if (rc < 0)
            break;
        memcpy(ep.label, LEGACY_LABEL, sizeof(LEGACY_LABEL));
        memcpy(ep.url, f[0].str, f[0].str_len + 1);
        ep.enabled = true;
        rc = vh_store_endpoint_create(c->api->st, &ep, c->api->max_endpoints, &err);
        /*
         * A concurrent PUT created the default meanwhile: its label conflicts, or its row
         * took the partner's last slot. Either way the next try replaces it. A conflict
         * with no default behind it (five other endpoints) is the answer.
         */
        if (rc != VH_ECONFLICT || vh_store_endpoint_get_by_label(c->api->st, c->partner.id,
                                                                 LEGACY_LABEL, &seen, NULL) < 0)
            break;
        vh_error_clear(&err);
        rc = 0;
    }
    if (rc == 0 && tries == ENDPOINT_WRITE_TRIES)
        rc = VH_ESTATE;
    vh_json_fields_release(f, 1);
    if (rc < 0)
        return reply_endpoint_rc(c, rc, &err);
    endpoint_changed(c->api, ep.id); /* a new secret, even when the URL stays */
    rc = ok_begin(c, 200);
    if (rc == 0)
        rc = vh_buf_adds(&c->resp->body, "{\"webhook_url\":");
    if (rc == 0)
        rc = vh_json_add_string(&c->resp->body, ep.url, strlen(ep.url));
    if (rc == 0)
        rc = vh_buf_addf(&c->resp->body,
                         ",\"webhook_secret\":\"%s\",\"message\":\"" SECRET_MESSAGE "\"}",
                         ep.secret);
    return ok_end(c, rc);
}

/* GET /config: the partner, the legacy webhook, and every endpoint (no secrets). */
static int config_get(struct route_ctx *c)
{
    struct vh_error err = VH_ERROR_INIT;
    struct vh_endpoint *eps = NULL;
    const struct vh_endpoint *legacy = NULL;
    struct vh_buf *b = &c->resp->body;
    size_t n = 0, i;
    int rc;

    rc = vh_store_endpoint_list(c->api->st, c->partner.id, &eps, &n, &err);
    if (rc < 0)
        return reply_rc(c, rc, &err);
    for (i = 0; i < n; i++)
        if (strcmp(eps[i].label, LEGACY_LABEL) == 0)
            legacy = &eps[i];
    rc = ok_begin(c, 200);
    if (rc == 0)
        rc = vh_buf_addf(b, "{\"partner_id\":\"%s\",\"name\":", c->partner.id);
    if (rc == 0)
        rc = vh_json_add_string(b, c->partner.name, strlen(c->partner.name));
    if (rc == 0)
        rc = vh_buf_addf(b, ",\"webhook\":{\"configured\":%s,\"url\":", legacy ? "true" : "false");
    if (rc == 0)
        rc = legacy ? vh_json_add_string(b, legacy->url, strlen(legacy->url))
                    : vh_buf_adds(b, "null");
    if (rc == 0)
        rc = vh_buf_adds(b, ",\"secret\":null},\"webhooks\":[");
    for (i = 0; rc == 0 && i < n; i++) {
        if (i)
            rc = vh_buf_addc(b, ',');
        if (rc == 0)
            rc = add_endpoint(b, &eps[i], false);
    }
    if (rc == 0)
        rc = vh_buf_adds(b, "]}");
    vh_free(eps);
    return ok_end(c, rc);
}

/* ---- /api/v2/calls --------------------------------------------------------------------- */

/* Presigns `key` with the server's S3 settings at `now_ms` into `out`. */
static int presign_key(struct vh_api *api, const char *key, int64_t now_ms, struct vh_buf *out,
                       struct vh_error *err)
{
    struct vh_buf url = VH_BUF_INIT(VH_URL_MAX);
    struct vh_presign p = {0};
    int rc;

    if (!api->s3_endpoint)
        return vh_error_set(err, VH_EINVAL,
                            "recording_key: this server has no S3 settings "
                            "to presign it (--s3-endpoint, --s3-region, "
                            "--s3-bucket)");
    rc = vh_s3_object_url(api->s3_endpoint, api->s3_bucket, key, api->s3_path_style, &url, err);
    if (rc == 0) {
        p.url = url.data;
        p.region = api->s3_region;
        p.access_key = api->s3_access_key;
        p.secret_key = api->s3_secret_key;
        p.at_ms = now_ms;
        p.expires_s = VH_PRESIGN_EXPIRES_DEFAULT;
        rc = vh_presign_url(&p, out, err);
    }
    vh_buf_release(&url);
    return rc;
}

/*
 * Writes one call object to `b`: the call's fields, then `session` = the stored payload's
 * data object, with recording_url presigned afresh when the session has a recording_key.
 * A server started without S3 settings cannot presign: it serves the link presigned at
 * ingest, and says so in the log, rather than fail a read the data is there for.
 */
static int write_call(struct route_ctx *c, const struct vh_call_rec *rec, struct vh_buf *b,
                      struct vh_error *err)
{
    struct vh_event *ev = NULL;
    struct vh_buf fresh = VH_BUF_INIT(2 * VH_BODY_MAX);
    struct vh_buf url = VH_BUF_INIT(VH_URL_MAX * 2);
    const struct vh_buf *payload = &rec->body;
    size_t skip = sizeof(PAYLOAD_PREFIX) - 1 + VH_TIME_LEN + sizeof(PAYLOAD_DATA) - 1;
    int rc;

    rc = vh_event_parse(rec->body.data, rec->body.len, VH_PARSE_ALLOW_UNKNOWN, &ev, err);
    if (rc == 0 && rec->recording_key && !c->api->s3_endpoint) {
        vh__api_log(c->api, VH_LOG_WARN, c->req->request_id,
                    "call '%s': recording_key not presigned afresh, this server has no S3 "
                    "settings (--s3-endpoint, --s3-region, --s3-bucket); serving the link "
                    "presigned at ingest",
                    rec->session_id);
    } else if (rc == 0 && rec->recording_key) {
        rc = presign_key(c->api, rec->recording_key, c->req->now_ms, &url, err);
        if (rc == 0) {
            vh_free(ev->session->recording_url);
            ev->session->recording_url = vh_buf_detach(&url, NULL);
            rc = ev->session->recording_url ? 0 : VH_ENOMEM;
        }
        if (rc == 0)
            rc = vh_session_render(ev->session, ev->ts_ms, &fresh, err);
        payload = &fresh;
    }
    if (rc < 0)
        goto out;
    if (payload->len <= skip + 1 ||
        memcmp(payload->data, PAYLOAD_PREFIX, sizeof(PAYLOAD_PREFIX) - 1) != 0) {
        rc = vh_error_set(err, VH_EIO, "stored payload of '%s' has an unexpected form",
                          rec->session_id);
        goto out;
    }
    rc = vh_buf_adds(b, "{\"call_id\":");
    if (rc == 0 && ev->session->has_call) {
        const struct vh_call *call = &ev->session->call;

        rc = vh_json_add_string(b, call->call_id, strlen(call->call_id));
        if (rc == 0)
            rc = vh_buf_addf(b,
                             ",\"from_number\":\"%s\",\"to_number\":\"%s\","
                             "\"direction\":\"outbound\",\"status\":\"%s\"",
                             call->from_number, call->to_number, vh_call_status_name(call->status));
    } else if (rc == 0) {
        rc = vh_buf_adds(b, "null,\"from_number\":null,\"to_number\":null,\"direction\":null,"
                            "\"status\":null");
    }
    if (rc == 0)
        rc = vh_buf_addf(b, ",\"event_id\":\"%s\",", rec->event_id);
    if (rc == 0)
        rc = add_key_time(b, "created_at", rec->accepted_ms, false);
    if (rc == 0)
        rc = vh_buf_adds(b, ",\"session\":");
    /* The payload is {"event":…,"timestamp":…,"data":{…}}: copy the data object. */
    if (rc == 0)
        rc = vh_buf_add(b, payload->data + skip, payload->len - skip - 1);
    if (rc == 0)
        rc = vh_buf_addc(b, '}');
out:
    vh_event_free(ev);
    vh_buf_release(&fresh);
    vh_buf_release(&url);
    return rc;
}

static int calls_get(struct route_ctx *c)
{
    struct vh_error err = VH_ERROR_INIT;
    struct vh_call_rec rec;
    int rc;

    memset(&rec, 0, sizeof(rec));
    if (!vh_id_is_valid(c->seg[3], strlen(c->seg[3]))) {
        reply_error(c->resp, 404, "call not found");
        return 0;
    }
    rc = vh_store_call_get(c->api->st, c->partner.id, c->seg[3], &rec, &err);
    if (rc == VH_ENOTFOUND) {
        reply_error(c->resp, 404, "call '%s' not found", c->seg[3]);
        return 0;
    }
    if (rc < 0)
        return reply_rc(c, rc, &err);
    rc = ok_begin(c, 200);
    if (rc == 0)
        rc = write_call(c, &rec, &c->resp->body, &err);
    vh_call_rec_release(&rec);
    if (rc < 0 && err.msg[0])
        return reply_rc(c, rc, &err);
    return ok_end(c, rc);
}

static const char *query_get(const struct vh_api_req *req, const char *key)
{
    size_t i;

    for (i = 0; i < req->n_query; i++)
        if (strcmp(req->query[i].key, key) == 0)
            return req->query[i].value ? req->query[i].value : "";
    return NULL;
}

static int query_int(struct route_ctx *c, const char *key, long min, long max, long dflt, long *out)
{
    const char *v = query_get(c->req, key);
    char *end = NULL;
    bool digits;
    long n;

    *out = dflt;
    if (!v)
        return 0;
    /* digits with an optional '-': strtol alone would take " 5" and "+5" too */
    digits = *v == '-' || (*v >= '0' && *v <= '9');
    n = digits ? strtol(v, &end, 10) : 0;
    if (!digits || end == v || *end != '\0' || n < min || n > max) {
        reply_error(c->resp, 400, "%s: must be an integer from %ld to %ld", key, min, max);
        return 1;
    }
    *out = n;
    return 0;
}

static int calls_list(struct route_ctx *c)
{
    struct vh_error err = VH_ERROR_INIT;
    struct vh_buf *b = &c->resp->body;
    struct vh_call_rec *recs = NULL;
    const char *status = query_get(c->req, "status");
    int call_status = 0;
    size_t n = 0, total = 0, shown, i;
    long limit, offset;
    int rc;

    if (query_int(c, "limit", 1, LIST_LIMIT_MAX, LIST_LIMIT_DEFAULT, &limit) ||
        query_int(c, "offset", 0, 1000000000L, 0, &offset))
        return 0;
    if (status) {
        call_status = (int)vh_call_status_from_name(status, strlen(status));
        if (call_status == 0) {
            reply_error(c->resp, 400,
                        "status: must be one of completed, failed, no_answer, "
                        "busy, canceled");
            return 0;
        }
    }
    rc = vh_store_call_list(c->api->st, c->partner.id, (size_t)limit, (size_t)offset, call_status,
                            &recs, &n, &total, &err);
    if (rc < 0)
        return reply_rc(c, rc, &err);
    rc = ok_begin(c, 200);
    if (rc == 0)
        rc = vh_buf_adds(b, "{\"calls\":[");
    /*
     * A page stops before the call that would take the answer past RESP_MAX (calls are up
     * to 1 MiB each): `next_offset` then says where the next page starts, as it does when
     * the page is full.
     */
    b->max = RESP_MAX - LIST_TAIL_MAX;
    for (i = 0; rc == 0 && i < n; i++) {
        size_t mark = b->len;

        if (i)
            rc = vh_buf_addc(b, ',');
        if (rc == 0)
            rc = write_call(c, &recs[i], b, &err);
        if (rc == VH_ETOOBIG && !err.msg[0] && i > 0) { /* the page is full */
            b->len = mark;
            b->data[mark] = '\0';
            vh_error_clear(&err);
            rc = 0;
            break;
        }
    }
    b->max = RESP_MAX;
    shown = i;
    for (i = 0; i < n; i++)
        vh_call_rec_release(&recs[i]);
    vh_free(recs);
    if (rc < 0 && err.msg[0])
        return reply_rc(c, rc, &err);
    if (rc == 0)
        rc = vh_buf_addf(b, "],\"total\":%zu,\"limit\":%ld,\"offset\":%ld,\"next_offset\":", total,
                         limit, offset);
    if (rc == 0 && (size_t)offset + shown < total)
        rc = vh_buf_addf(b, "%zu", (size_t)offset + shown);
    else if (rc == 0)
        rc = vh_buf_adds(b, "null");
    if (rc == 0)
        rc = vh_buf_addc(b, '}');
    return ok_end(c, rc);
}

/* ---- delivery history ------------------------------------------------------------------- */

/* A delivery object, left open (no closing brace) when `open` so members can follow. */
static int add_delivery(struct vh_buf *b, const struct vh_delivery_info *d, bool open)
{
    int rc = vh_buf_addf(b,
                         "{\"id\":\"%s\",\"event_id\":\"%s\",\"endpoint_id\":\"%s\","
                         "\"session_id\":",
                         d->id, d->event_id, d->endpoint_id);

    if (rc == 0)
        rc = vh_json_add_string(b, d->session_id, strlen(d->session_id));
    if (rc == 0)
        rc = vh_buf_addf(b, ",\"state\":\"%s\",\"attempts\":%u,", d->state,
                         d->attempts - d->attempt_base);
    if (rc == 0)
        rc = add_key_time(b, "next_attempt_at", d->next_attempt_ms, true);
    if (rc == 0)
        rc = vh_buf_addc(b, ',');
    if (rc == 0)
        rc = add_key_time(b, "created_at", d->created_ms, false);
    if (rc == 0)
        rc = vh_buf_addc(b, ',');
    if (rc == 0)
        rc = add_key_time(b, "updated_at", d->updated_ms, false);
    if (rc == 0)
        rc = vh_buf_addc(b, ',');
    if (rc == 0)
        rc = add_key_time(b, "last_attempt_at", d->last_attempt_ms, true);
    if (rc == 0)
        rc = d->last_http_status ? vh_buf_addf(b, ",\"last_http_status\":%d,", d->last_http_status)
                                 : vh_buf_adds(b, ",\"last_http_status\":null,");
    if (rc == 0)
        rc = add_key_str(b, "last_error", d->last_error_class[0] ? d->last_error_class : NULL);
    if (rc == 0 && !open)
        rc = vh_buf_addc(b, '}');
    return rc;
}

static int add_attempt(struct vh_buf *b, const struct vh_attempt_info *a)
{
    int rc = vh_buf_addf(b, "{\"n\":%u,", a->n);

    if (rc == 0)
        rc = add_key_time(b, "started_at", a->started_ms, false);
    if (rc == 0)
        rc = vh_buf_addf(b, ",\"duration_ms\":%lld,", (long long)a->duration_ms);
    if (rc == 0)
        rc = a->http_status ? vh_buf_addf(b, "\"http_status\":%d,", a->http_status)
                            : vh_buf_adds(b, "\"http_status\":null,");
    if (rc == 0)
        rc = add_key_str(b, "error_class", a->error_class[0] ? a->error_class : NULL);
    if (rc == 0)
        rc = vh_buf_adds(b, ",\"error\":");
    if (rc == 0)
        rc = a->error[0] ? add_lossy_string(b, a->error, strlen(a->error)) : vh_buf_adds(b, "null");
    if (rc == 0)
        rc = vh_buf_adds(b, ",\"response_head\":");
    if (rc == 0)
        rc = add_lossy_string(b, a->response_head, a->response_len);
    if (rc == 0)
        rc = vh_buf_addc(b, '}');
    return rc;
}

static void wake_sender(struct vh_api *api)
{
    if (api->on_due)
        api->on_due(api->on_due_ud);
}

/* GET /config/webhooks/{id}/deliveries?state=&limit=&offset= */
static int deliveries_list(struct route_ctx *c)
{
    struct vh_error err = VH_ERROR_INIT;
    struct vh_delivery_info *ds = NULL;
    const char *state = query_get(c->req, "state");
    size_t n = 0, total = 0, i;
    long limit, offset;
    int rc;

    if (query_int(c, "limit", 1, LIST_LIMIT_MAX, LIST_LIMIT_DEFAULT, &limit) ||
        query_int(c, "offset", 0, 1000000000L, 0, &offset))
        return 0;
    if (!vh_id_is_valid(c->seg[4], strlen(c->seg[4]))) {
        reply_error(c->resp, 404, "webhook endpoint not found");
        return 0;
    }
    rc = vh_store_delivery_list(c->api->st, c->partner.id, c->seg[4], state, (size_t)limit,
                                (size_t)offset, &ds, &n, &total, &err);
    if (rc == VH_EINVAL) {
        reply_error(c->resp, 400,
                    "state: must be one of pending, in_flight, succeeded, "
                    "abandoned, canceled");
        return 0;
    }
    if (rc < 0)
        return reply_rc(c, rc, &err);
    rc = ok_begin(c, 200);
    if (rc == 0)
        rc = vh_buf_adds(&c->resp->body, "{\"deliveries\":[");
    for (i = 0; rc == 0 && i < n; i++) {
        if (i)
            rc = vh_buf_addc(&c->resp->body, ',');
        if (rc == 0)
            rc = add_delivery(&c->resp->body, &ds[i], false);
    }
    if (rc == 0)
        rc = vh_buf_addf(&c->resp->body, "],\"total\":%zu,\"limit\":%ld,\"offset\":%ld}", total,
                         limit, offset);
    vh_free(ds);
    return ok_end(c, rc);
}

/* GET /deliveries/{id}: the delivery and its newest attempts, oldest first. */
static int delivery_get(struct route_ctx *c)
{
    struct vh_error err = VH_ERROR_INIT;
    struct vh_delivery_info d;
    struct vh_attempt_info *as = NULL;
    struct vh_buf *b = &c->resp->body;
    size_t n = 0, older = 0, i;
    int rc;

    if (!vh_id_is_valid(c->seg[3], strlen(c->seg[3]))) {
        reply_error(c->resp, 404, "delivery not found");
        return 0;
    }
    /*
     * Manual retries add attempts without end: the store reads the newest
     * VH_HISTORY_ATTEMPTS_MAX (shown, up to about 8 KB each, escaped), and
     * `attempts_omitted` counts the older ones.
     */
    rc = vh_store_delivery_get(c->api->st, c->partner.id, c->seg[3], &d, &as, &n, &older, &err);
    if (rc == VH_ENOTFOUND) {
        reply_error(c->resp, 404, "delivery '%s' not found", c->seg[3]);
        return 0;
    }
    if (rc < 0)
        return reply_rc(c, rc, &err);
    rc = ok_begin(c, 200);
    if (rc == 0)
        rc = add_delivery(b, &d, true);
    if (rc == 0)
        rc = vh_buf_adds(b, ",\"attempt_history\":[");
    for (i = 0; rc == 0 && i < n; i++) {
        if (i > 0)
            rc = vh_buf_addc(b, ',');
        if (rc == 0)
            rc = add_attempt(b, &as[i]);
    }
    if (rc == 0)
        rc = vh_buf_addf(b, "],\"attempts_omitted\":%zu}", older);
    vh_free(as);
    return ok_end(c, rc);
}

/* POST /deliveries/{id}/retry: a finished delivery goes again, with a fresh schedule. */
static int delivery_retry(struct route_ctx *c)
{
    struct vh_error err = VH_ERROR_INIT;
    int rc;

    if (!vh_id_is_valid(c->seg[3], strlen(c->seg[3]))) {
        reply_error(c->resp, 404, "delivery not found");
        return 0;
    }
    rc = vh_store_delivery_retry(c->api->st, c->partner.id, c->seg[3], c->req->now_ms, &err);
    if (rc < 0)
        return reply_rc(c, rc, &err);
    wake_sender(c->api);
    rc = ok_begin(c, 202);
    if (rc == 0)
        rc = vh_buf_addf(&c->resp->body, "{\"id\":\"%s\",\"state\":\"pending\"}", c->seg[3]);
    return ok_end(c, rc);
}

/* POST /config/webhooks/{id}/replay {since, until?}: every event in the range, again. */
static int webhooks_replay(struct route_ctx *c)
{
    struct vh_jfield f[] = {
        {.name = "since", .type = VH_JSTRING, .required = true, .max_len = VH_TIME_LEN},
        {.name = "until", .type = VH_JSTRING, .nullable = true, .max_len = VH_TIME_LEN},
    };
    struct vh_error err = VH_ERROR_INIT, sub = VH_ERROR_INIT;
    struct vh_endpoint ep;
    int64_t since = 0, until = c->req->now_ms;
    size_t created = 0;
    int rc;

    if (load_endpoint(c, &ep))
        return 0;
    rc = vh_json_parse_fields(c->req->body, c->req->body_len, f, 2, &err);
    if (rc == 0 && vh_time_parse(f[0].str, f[0].str_len, &since, &sub) < 0)
        rc = vh_error_set(&err, VH_EINVAL, "since: %s", sub.msg);
    if (rc == 0 && f[1].present && !f[1].is_null &&
        vh_time_parse(f[1].str, f[1].str_len, &until, &sub) < 0)
        rc = vh_error_set(&err, VH_EINVAL, "until: %s", sub.msg);
    if (rc == 0 && since > until)
        rc = vh_error_set(&err, VH_EINVAL, "since: %s",
                          f[1].present && !f[1].is_null ? "is after until"
                                                        : "is in the future (until is now)");
    vh_json_fields_release(f, 2);
    if (rc == 0)
        rc = vh_store_endpoint_replay(c->api->st, c->partner.id, ep.id, since, until,
                                      c->req->now_ms, &created, &err);
    if (rc < 0)
        return reply_rc(c, rc, &err);
    if (created > 0)
        wake_sender(c->api);
    rc = ok_begin(c, 202);
    if (rc == 0)
        rc = vh_buf_addf(&c->resp->body, "{\"endpoint_id\":\"%s\",\"deliveries\":%zu}", ep.id,
                         created);
    return ok_end(c, rc);
}

/* ---- ingest ----------------------------------------------------------------------------- */

/*
 * Everything of an ingest before its commit: the partner must exist, a recording_key is
 * presigned, the payload rendered into `body` (initialized by the caller) and `put` filled;
 * `put` borrows `partner_id`, `s` and `body`.
 */
static int ingest_prepare(struct vh_api *api, const char *partner_id, struct vh_session *s,
                          const char *path_prefix, int64_t now_ms, struct vh_buf *body,
                          struct vh_event_put *put, struct vh_error *err)
{
    struct vh_buf url = VH_BUF_INIT(VH_URL_MAX * 2);
    struct vh_partner partner;
    int rc;

    rc = vh_store_partner_get(api->st, partner_id, &partner, err);
    if (rc == VH_ENOTFOUND) {
        vh_error_clear(err);
        rc = vh_error_set(err, VH_ENOTFOUND, "partner_id: no partner '%s'", partner_id);
    }
    if (rc < 0)
        goto out;
    if (s->recording_key) {
        rc = presign_key(api, s->recording_key, now_ms, &url, err);
        if (rc < 0) {
            struct vh_error inner = *err;

            vh_error_clear(err);
            rc = vh_error_set(err, rc, "%s%s", path_prefix, inner.msg);
            goto out;
        }
        s->recording_url = vh_buf_detach(&url, NULL);
        if (!s->recording_url) {
            rc = vh_error_set(err, VH_ENOMEM, "out of memory");
            goto out;
        }
    }
    /* The key is presigned into recording_url; render needs it resolved. */
    {
        char *key = s->recording_key;

        s->recording_key = NULL;
        rc = vh_session_render(s, now_ms, body, err);
        s->recording_key = key;
    }
    if (rc == VH_ETOOBIG) {
        /* Receivers would refuse it, and GET /calls could not read it back (VH_BODY_MAX). */
        vh_error_clear(err);
        rc = vh_error_set(err, rc,
                          "session: renders to a webhook payload larger than %d bytes, which "
                          "receivers refuse (each user turn gains \"latency_ms\":null)",
                          VH_BODY_MAX);
    }
    if (rc < 0)
        goto out;
    memset(put, 0, sizeof(*put));
    put->partner_id = partner_id;
    put->session_id = s->session_id;
    put->call_id = s->has_call ? s->call.call_id : NULL;
    put->call_status = s->has_call ? (int)s->call.status : 0;
    put->recording_key = s->recording_key;
    put->body = body->data;
    put->body_len = body->len;
    put->accepted_ms = now_ms;
out:
    vh_buf_release(&url);
    return rc;
}

/* An ingest's commit done: new deliveries wake the sender. */
static void ingest_committed(struct vh_api *api, const struct vh_event_put_result *res)
{
    if (res->created && res->deliveries > 0)
        wake_sender(api);
}

static int ingest_commit(struct vh_api *api, const char *partner_id, struct vh_session *s,
                         const char *path_prefix, int64_t now_ms, struct vh_event_put_result *out,
                         struct vh_error *err)
{
    struct vh_buf body = VH_BUF_INIT(2 * VH_BODY_MAX);
    struct vh_event_put put;
    int rc;

    rc = ingest_prepare(api, partner_id, s, path_prefix, now_ms, &body, &put, err);
    if (rc == 0)
        rc = vh_store_event_put(api->st, &put, out, err);
    if (rc == 0)
        ingest_committed(api, out);
    vh_buf_release(&body);
    return rc;
}

int vh_api_ingest_session(struct vh_api *api, const char *partner_id, const char *session_json,
                          size_t len, const char *path_prefix, int64_t now_ms,
                          struct vh_event_put_result *out, struct vh_error *err)
{
    struct vh_session *s = NULL;
    int rc;

    if (!partner_id || !vh_id_is_valid(partner_id, strlen(partner_id)))
        return vh_error_set(err, VH_EINVAL, "partner_id: must be 1 to 64 of [A-Za-z0-9_-]");
    rc = vh_session_parse(session_json, len, 0, &s, err);
    if (rc == 0)
        rc = ingest_commit(api, partner_id, s, path_prefix ? path_prefix : "", now_ms, out, err);
    vh_session_free(s);
    return rc;
}

static bool is_json_content_type(const char *ct)
{
    size_t n = strlen("application/json");

    if (!ct || strncasecmp(ct, "application/json", n) != 0)
        return false;
    return ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ';
}

/*
 * The checks before an ingest's body is read: the token, then the Content-Type. Returns 1
 * when the request may go on; else it has been answered, and the handler's result is
 * returned.
 */
static int ingest_admit(struct route_ctx *c, int *result)
{
    struct vh_error err = VH_ERROR_INIT;
    char got[VH_SHA256_HEX_LEN + 1];
    const char *tok;
    size_t len = 0;
    int rc;

    *result = 0;
    tok = bearer_token(c->req->authorization, &len);
    if (!c->api->has_ingest_token || !tok) {
        c->resp->www_authenticate = CHALLENGE_INGEST;
        reply_error(c->resp, 401,
                    c->api->has_ingest_token
                        ? "missing or malformed Authorization: Bearer <ingest "
                          "token> header"
                        : "ingest is disabled: the server has no ingest token");
        return 0;
    }
    /* Compare digests, so the time taken says nothing about the token's bytes or length. */
    rc = vh_sha256_hex(tok, len, got, &err);
    if (rc == 0 && !vh_mem_equal_ct(got, c->api->ingest_token_hex, VH_SHA256_HEX_LEN)) {
        c->resp->www_authenticate = CHALLENGE_INGEST_INVALID;
        reply_error(c->resp, 401, "invalid ingest token");
        return 0;
    }
    if (rc < 0) {
        *result = reply_rc(c, rc, &err);
        return 0;
    }
    if (!is_json_content_type(c->req->content_type)) {
        reply_error(c->resp, 400, "Content-Type must be application/json");
        return 0;
    }
    return 1;
}

/* 202 for a new session, 200 for a repeat. */
static int ingest_answer(struct route_ctx *c, const struct vh_event_put_result *res)
{
    int rc = ok_begin(c, res->created ? 202 : 200);

    if (rc == 0)
        rc = vh_buf_addf(&c->resp->body,
                         "{\"event_id\":\"%s\",\"deliveries\":%zu,"
                         "\"duplicate\":%s}",
                         res->event_id, res->deliveries, res->created ? "false" : "true");
    return ok_end(c, rc);
}

static int ingest(struct route_ctx *c)
{
    struct vh_error err = VH_ERROR_INIT;
    struct vh_ingest *in = NULL;
    struct vh_event_put_result res;
    int rc;

    if (!ingest_admit(c, &rc))
        return rc;
    rc = vh_ingest_parse(c->req->body, c->req->body_len, &in, &err);
    if (rc == 0)
        rc = ingest_commit(c->api, in->partner_id, in->session, "session.", c->req->now_ms, &res,
                           &err);
    vh_ingest_free(in);
    if (rc < 0)
        return reply_rc(c, rc, &err);
    return ingest_answer(c, &res);
}

/*
 * An ingest whose commit is under way (vh_api_handle_async): it owns what the store's put
 * borrows, and what its answer needs; the request and the response are the server's until
 * `done` runs.
 */
struct ingest_job {
    struct vh_api *api;
    const struct vh_api_req *req;
    struct vh_api_resp *resp;
    vh_api_done_fn *done;
    void *ud;
    struct vh_ingest *in;
    struct vh_buf body;
    struct vh_event_put put;
};

static void ingest_job_free(struct ingest_job *j)
{
    vh_ingest_free(j->in);
    vh_buf_release(&j->body);
    vh_free(j);
}

/* The store's answer (vh_store_put_done_fn), on its commit thread or on this one. */
static void ingest_done(void *ud, int rc, const struct vh_event_put_result *res,
                        const struct vh_error *err)
{
    struct ingest_job *j = ud;
    struct route_ctx c;
    vh_api_done_fn *done = j->done;
    void *done_ud = j->ud;

    memset(&c, 0, sizeof(c));
    c.api = j->api;
    c.req = j->req;
    c.resp = j->resp;
    if (rc < 0) {
        reply_rc(&c, rc, err);
    } else {
        ingest_committed(j->api, res);
        ingest_answer(&c, res);
    }
    ingest_job_free(j);
    done(done_ud);
}

/* POST /internal/v1/sessions, answered once the commit is durable, with no thread waiting. */
static int ingest_async(struct route_ctx *c, vh_api_done_fn *done, void *ud)
{
    struct vh_error err = VH_ERROR_INIT;
    struct ingest_job *j;
    int rc;

    if (!ingest_admit(c, &rc))
        return rc;
    j = vh_malloc(sizeof(*j));
    if (!j) {
        vh_error_set(&err, VH_ENOMEM, "ingest: out of memory");
        return reply_rc(c, VH_ENOMEM, &err);
    }
    memset(j, 0, sizeof(*j));
    j->api = c->api;
    j->req = c->req;
    j->resp = c->resp;
    j->done = done;
    j->ud = ud;
    vh_buf_init(&j->body, 2 * VH_BODY_MAX);
    rc = vh_ingest_parse(c->req->body, c->req->body_len, &j->in, &err);
    if (rc == 0)
        rc = ingest_prepare(c->api, j->in->partner_id, j->in->session, "session.", c->req->now_ms,
                            &j->body, &j->put, &err);
    /* From here `done` may run, and free `j`, before the call returns. */
    if (rc == 0)
        rc = vh_store_event_put_async(c->api->st, &j->put, ingest_done, j, &err);
    if (rc < 0) {
        ingest_job_free(j);
        return reply_rc(c, rc, &err);
    }
    return VH_API_LATER;
}

/* GET /healthz: the process answers (the store is not asked). */
static int healthz(struct route_ctx *c)
{
    int rc = ok_begin(c, 200);

    if (rc == 0)
        rc = vh_buf_adds(&c->resp->body, "{\"status\":\"ok\"}");
    return ok_end(c, rc);
}

/*
 * GET /metrics: Prometheus text, unauthenticated like /healthz (counts only, nothing of any
 * partner); expose the port only where the scraper can reach it.
 */
static int metrics(struct route_ctx *c)
{
    struct vh_error err = VH_ERROR_INIT;
    int rc;

    vh_buf_reset(&c->resp->body);
    rc = c->api->metrics(c->api->metrics_ud, c->req->now_ms, &c->resp->body);
    if (rc < 0) {
        vh_error_set(&err, rc, "metrics: %s", vh_strerror(rc));
        return reply_rc(c, rc, &err);
    }
    c->resp->status = 200;
    c->resp->content_type = "text/plain; version=0.0.4";
    return 0;
}

/* ---- dispatch --------------------------------------------------------------------------- */

/* Splits the path into segments in `copy`; false when too long or too deep. */
static bool split_path(struct route_ctx *c, char *copy, size_t cap)
{
    size_t len = strlen(c->req->path);
    char *p;

    if (len == 0 || len >= cap || c->req->path[0] != '/')
        return false;
    memcpy(copy, c->req->path, len + 1);
    if (len > 1 && copy[len - 1] == '/')
        copy[len - 1] = '\0';
    c->n_seg = 0;
    p = copy + 1;
    while (*p) {
        char *slash = strchr(p, '/');

        if (c->n_seg == PATH_SEGMENTS)
            return false;
        c->seg[c->n_seg++] = p;
        if (!slash)
            break;
        *slash = '\0';
        p = slash + 1;
        if (*p == '\0')
            return false; /* an empty segment: "//" */
    }
    return true;
}

static bool seg_is(const struct route_ctx *c, size_t i, const char *s)
{
    return i < c->n_seg && strcmp(c->seg[i], s) == 0;
}

static bool method_is(const struct route_ctx *c, const char *m)
{
    return strcmp(c->req->method, m) == 0;
}

/*
 * The partner API's routes: a path under /api/v2, where "*" stands for any one segment (an
 * id), and a method. The Allow header of a 405 is read off this table too, so the two agree.
 */
struct partner_route {
    const char *method;
    const char *path;
    int (*fn)(struct route_ctx *c);
};

static const struct partner_route partner_routes[] = {
    {"GET", "config", config_get},
    {"PUT", "config/webhook", legacy_put},
    {"GET", "config/webhooks", webhooks_list},
    {"POST", "config/webhooks", webhooks_create},
    {"GET", "config/webhooks/*", webhooks_get},
    {"PATCH", "config/webhooks/*", webhooks_update},
    {"DELETE", "config/webhooks/*", webhooks_delete},
    {"POST", "config/webhooks/*/rotate-secret", webhooks_rotate},
    {"GET", "config/webhooks/*/deliveries", deliveries_list},
    {"POST", "config/webhooks/*/replay", webhooks_replay},
    {"GET", "deliveries/*", delivery_get},
    {"POST", "deliveries/*/retry", delivery_retry},
    {"GET", "calls", calls_list},
    {"GET", "calls/*", calls_get},
};

/* Whether the path's segments from `first` on are `pattern`'s, one for one. */
static bool path_matches(const struct route_ctx *c, size_t first, const char *pattern)
{
    const char *p = pattern;
    size_t i;

    for (i = first; i < c->n_seg; i++) {
        size_t n = strcspn(p, "/");

        if (n == 0)
            return false; /* the path is longer */
        if (!(n == 1 && p[0] == '*') && (strlen(c->seg[i]) != n || strncmp(c->seg[i], p, n) != 0))
            return false;
        p += n;
        if (*p == '/')
            p++;
    }
    return *p == '\0';
}

/*
 * Answers 405 with the methods the path takes (`allow`, as an Allow header lists them):
 * RFC 9110 15.5.6, for a path that exists but not with this method; the header is a MUST.
 */
static int reply_method_not_allowed(struct route_ctx *c, const char *allow)
{
    snprintf(c->resp->allow, sizeof(c->resp->allow), "%s", allow);
    reply_error(c->resp, 405, "method %s is not allowed for %s (allowed: %s)", c->req->method,
                c->req->path, allow);
    return 0;
}

/* The partner API under /api/v2 (segments 0 and 1 already matched). */
static int partner_route(struct route_ctx *c)
{
    const struct partner_route *route = NULL;
    bool calls = seg_is(c, 2, "calls");
    char allow[64] = "";
    size_t i, n = sizeof(partner_routes) / sizeof(partner_routes[0]);
    int wait;

    if (auth_partner(c))
        return 0;
    wait = rate_take(c->api, c->key_hash, calls, c->req->now_ms);
    if (wait > 0) {
        c->resp->retry_after_s = wait;
        reply_error(c->resp, 429, "rate limit exceeded; retry in %d s", wait);
        return 0;
    }
    for (i = 0; i < n && !route; i++) {
        bool get = strcmp(partner_routes[i].method, "GET") == 0;

        if (!path_matches(c, 2, partner_routes[i].path))
            continue;
        /* HEAD wherever GET is (RFC 9110 9.3.2): the same answer; the server sends no body. */
        if (method_is(c, partner_routes[i].method) || (get && method_is(c, "HEAD")))
            route = &partner_routes[i];
        else
            snprintf(allow + strlen(allow), sizeof(allow) - strlen(allow), "%s%s%s",
                     allow[0] ? ", " : "", partner_routes[i].method, get ? ", HEAD" : "");
    }
    if (!route && allow[0])
        return reply_method_not_allowed(c, allow);
    if (!route) {
        reply_error(c->resp, 404, "no route for %s %s", c->req->method, c->req->path);
        return 0;
    }
    if (!c->req->body_too_large && c->req->body_len > 0 && !method_is(c, "GET") &&
        !is_json_content_type(c->req->content_type)) {
        reply_error(c->resp, 400, "Content-Type must be application/json");
        return 0;
    }
    return route->fn(c);
}

/* Sets up `c` for a request, its path split into `copy`; false when the path is unusable. */
static bool route_start(struct route_ctx *c, struct vh_api *api, const struct vh_api_req *req,
                        struct vh_api_resp *resp, char *copy, size_t cap)
{
    memset(c, 0, sizeof(*c));
    c->api = api;
    c->req = req;
    c->resp = resp;
    return req->method && req->path && split_path(c, copy, cap);
}

/* /internal/v1/sessions, the ingest's path, whatever the method. */
static bool is_ingest_path(const struct route_ctx *c)
{
    return c->n_seg == 3 && seg_is(c, 0, "internal") && seg_is(c, 1, "v1") &&
           seg_is(c, 2, "sessions");
}

/* POST /internal/v1/sessions: the ingest (vh_api_handle and vh_api_admit agree on it). */
static bool is_ingest(const struct route_ctx *c)
{
    return is_ingest_path(c) && method_is(c, "POST");
}

/* /api/v2/...: the partner API, behind an API key. */
static bool is_partner_api(const struct route_ctx *c)
{
    return c->n_seg >= 3 && seg_is(c, 0, "api") && seg_is(c, 1, "v2");
}

/* vh_api_handle, or with `done` vh_api_handle_async. */
static int handle(struct vh_api *api, const struct vh_api_req *req, struct vh_api_resp *resp,
                  vh_api_done_fn *done, void *ud)
{
    struct route_ctx c;
    char copy[PATH_MAX_LEN];

    if (!route_start(&c, api, req, resp, copy, sizeof(copy))) {
        reply_error(resp, 404, "no such route");
        return 0;
    }
    /* HEAD too: a monitor may probe with it (the server sends no body). */
    if (c.n_seg == 1 && (seg_is(&c, 0, "healthz") || (seg_is(&c, 0, "metrics") && api->metrics))) {
        if (!method_is(&c, "GET") && !method_is(&c, "HEAD"))
            return reply_method_not_allowed(&c, "GET, HEAD");
        return seg_is(&c, 0, "metrics") ? metrics(&c) : healthz(&c);
    }
    if (req->body_too_large) {
        reply_error(resp, 413, "request body is larger than the server accepts");
        return 0;
    }
    if (req->query_truncated) {
        reply_error(resp, 400, "too many query parameters (at most %d)", VH_API_MAX_QUERY);
        return 0;
    }
    if (is_ingest(&c))
        return done ? ingest_async(&c, done, ud) : ingest(&c);
    if (is_ingest_path(&c))
        return reply_method_not_allowed(&c, "POST");
    if (is_partner_api(&c))
        return partner_route(&c);
    reply_error(resp, 404, "no route for %s %s", req->method, req->path);
    return 0;
}

bool vh_api_admit(struct vh_api *api, const struct vh_api_req *req, struct vh_api_resp *resp)
{
    struct route_ctx c;
    char copy[PATH_MAX_LEN];
    int rc;

    if (!route_start(&c, api, req, resp, copy, sizeof(copy)))
        return true; /* vh_api_handle answers 404 */
    if (is_ingest(&c))
        return ingest_admit(&c, &rc) != 0;
    if (is_partner_api(&c))
        return auth_partner(&c) == 0;
    return true;
}

int vh_api_handle(struct vh_api *api, const struct vh_api_req *req, struct vh_api_resp *resp)
{
    return handle(api, req, resp, NULL, NULL);
}

int vh_api_handle_async(struct vh_api *api, const struct vh_api_req *req, struct vh_api_resp *resp,
                        vh_api_done_fn *done, void *ud)
{
    if (!done) {
        reply_error(resp, 500, "internal error");
        return VH_EINVAL;
    }
    return handle(api, req, resp, done, ud);
}

/* ---- lifecycle -------------------------------------------------------------------------- */

static int dup_opt(const char *s, char **out)
{
    *out = NULL;
    if (!s)
        return 0;
    *out = vh_strndup(s, strlen(s));
    return *out ? 0 : VH_ENOMEM;
}

void vh_api_free(struct vh_api *api)
{
    if (!api)
        return;
    pthread_mutex_destroy(&api->rate_lock);
    vh_free(api->rates);
    vh_free(api->s3_endpoint);
    vh_free(api->s3_region);
    vh_free(api->s3_bucket);
    vh_free(api->s3_access_key);
    vh_free(api->s3_secret_key);
    vh_free(api);
}

/*
 * Presigns a probe key with the S3 settings. Settings no presign can use (a bucket name S3
 * refuses, an endpoint with a path, a bad region) stop the start here; taken, they failed
 * every ingest with a recording_key as a 400 that blamed the producer, storing nothing.
 */
static int check_s3(const struct vh_api_config *cfg, struct vh_error *err)
{
    struct vh_buf url = VH_BUF_INIT(VH_URL_MAX);
    struct vh_buf signed_url = VH_BUF_INIT(VH_URL_MAX * 2);
    struct vh_error sub = VH_ERROR_INIT;
    struct vh_presign p = {0};
    int rc;

    rc =
        vh_s3_object_url(cfg->s3_endpoint, cfg->s3_bucket, "probe", cfg->s3_path_style, &url, &sub);
    if (rc == 0) {
        p.url = url.data;
        p.region = cfg->s3_region;
        p.access_key = cfg->s3_access_key;
        p.secret_key = cfg->s3_secret_key;
        p.at_ms = 0; /* any valid time: only the settings are checked */
        rc = vh_presign_url(&p, &signed_url, &sub);
    }
    if (rc < 0)
        rc = vh_error_set(err, rc == VH_ENOMEM ? rc : VH_EINVAL, "s3: %s", sub.msg);
    vh_buf_release(&signed_url);
    vh_buf_release(&url);
    return rc;
}

int vh_api_new(struct vh_store *st, const struct vh_api_config *cfg, struct vh_api **out,
               struct vh_error *err)
{
    struct vh_api *api;
    int rc = 0;
    bool any_s3, all_s3;

    if (!st || !cfg || !out)
        return vh_error_set(err, VH_EINVAL, "api: store and config are required");
    any_s3 = cfg->s3_endpoint || cfg->s3_region || cfg->s3_bucket;
    all_s3 = cfg->s3_endpoint && cfg->s3_region && cfg->s3_bucket && cfg->s3_access_key &&
             cfg->s3_secret_key;
    if (any_s3 && !all_s3)
        return vh_error_set(err, VH_EINVAL,
                            "s3: endpoint, region, bucket, access key and secret key are all "
                            "needed to presign recordings");
    if (all_s3) {
        rc = check_s3(cfg, err);
        if (rc < 0)
            return rc;
    }
    if (cfg->ingest_token && strlen(cfg->ingest_token) < 16)
        return vh_error_set(err, VH_EINVAL, "ingest token: must be at least 16 characters");
    api = vh_malloc(sizeof(*api));
    if (!api)
        return vh_error_set(err, VH_ENOMEM, "api: out of memory");
    memset(api, 0, sizeof(*api));
    api->rates = vh_malloc(sizeof(*api->rates) * RATE_SLOTS);
    if (!api->rates) {
        vh_free(api);
        return vh_error_set(err, VH_ENOMEM, "api: out of memory");
    }
    memset(api->rates, 0, sizeof(*api->rates) * RATE_SLOTS);
    pthread_mutex_init(&api->rate_lock, NULL);
    api->st = st;
    api->allow_http = cfg->allow_http;
    api->max_endpoints = cfg->max_endpoints > 0 ? cfg->max_endpoints : VH_ENDPOINTS_MAX;
    api->rate.general_per_min = cfg->rate_general_per_min == 0 ? 60 : cfg->rate_general_per_min;
    api->rate.calls_per_min = cfg->rate_calls_per_min == 0 ? 10 : cfg->rate_calls_per_min;
    api->rate_shared = true; /* until the store says it keeps no shared windows */
    api->s3_path_style = cfg->s3_path_style;
    api->log = cfg->log;
    api->log_ud = cfg->log_ud;
    api->on_due = cfg->on_due;
    api->on_due_ud = cfg->on_due_ud;
    api->on_endpoint_changed = cfg->on_endpoint_changed;
    api->on_endpoint_changed_ud = cfg->on_endpoint_changed_ud;
    api->metrics = cfg->metrics;
    api->metrics_ud = cfg->metrics_ud;
    if (cfg->ingest_token) {
        rc =
            vh_sha256_hex(cfg->ingest_token, strlen(cfg->ingest_token), api->ingest_token_hex, err);
        api->has_ingest_token = rc == 0;
    }
    if (rc == 0 && any_s3)
        rc = dup_opt(cfg->s3_endpoint, &api->s3_endpoint) ||
                     dup_opt(cfg->s3_region, &api->s3_region) ||
                     dup_opt(cfg->s3_bucket, &api->s3_bucket) ||
                     dup_opt(cfg->s3_access_key, &api->s3_access_key) ||
                     dup_opt(cfg->s3_secret_key, &api->s3_secret_key)
                 ? vh_error_set(err, VH_ENOMEM, "api: out of memory")
                 : 0;
    if (rc < 0) {
        vh_api_free(api);
        return rc;
    }
    *out = api;
    return 0;
}
