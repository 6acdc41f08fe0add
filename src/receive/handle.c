/*
 * One webhook request: the order of checks is the security argument.
 *
 *   1. Route and method: POST on `/` or `/webhook` (GET /healthz answers 200).
 *   2. Verify the raw bytes (vh_verify: exact timestamp form, window, constant-time compare
 *      against every secret), each signature header sent once. Nothing of an
 *      unauthenticated body is parsed or stored.
 *   3. Parse the payload leniently (unknown keys kept, known ones type-checked): a payload
 *      that breaks the contract is 400, so the sender sees it, and nothing is stored.
 *   4. Store the raw body with its jobs, deduplicating on session_id, durably; then 200.
 *
 * Everything but step 4 is pure; the answer is built in a fixed buffer.
 */
#include "receive/receive_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <vocohook/alloc.h>
#include <vocohook/event.h>
#include <vocohook/id.h>

#include "core/log_int.h"
#include "core/banned.h"

#define ACTION_DEADLINE_MS VH_TIME_MAX_MS /* exec and forward: bounded by attempts instead */

static void answer(struct vh_receive_resp *resp, int status, enum vh_receive_outcome outcome,
                   const char *fmt, ...) VH_PRINTF(4, 5);

static void answer(struct vh_receive_resp *resp, int status, enum vh_receive_outcome outcome,
                   const char *fmt, ...)
{
    va_list ap;
    int n;

    resp->status = status;
    resp->outcome = outcome;
    va_start(ap, fmt);
    n = vsnprintf(resp->body, sizeof(resp->body), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(resp->body)) {
        /* Cannot happen with the bounded fields below; keep the body valid JSON anyway. */
        n = snprintf(resp->body, sizeof(resp->body), "{\"ok\":%s}",
                     status == 200 ? "true" : "false");
    }
    resp->body_len = (size_t)n;
}

static void answer_error(struct vh_receive_resp *resp, int status, enum vh_receive_outcome outcome,
                         const char *code, const char *message)
{
    char msg[VH_ERROR_MSG_MAX * 2];

    vh__json_escape(message, VH_ERROR_MSG_MAX, msg, sizeof(msg));
    answer(resp, status, outcome, "{\"ok\":false,\"error\":\"%s\",\"message\":\"%s\"}", code, msg);
}

static bool is_webhook_path(const char *path)
{
    return path && (strcmp(path, "/") == 0 || strcmp(path, "/webhook") == 0);
}

/* The 401 for `resp->verify_status`; `reason` is JSON-escaped already. */
static void unauthorized(struct vh_receiver *r, struct vh_receive_resp *resp, const char *reason)
{
    answer(resp, 401, VH_RECEIVE_UNAUTHORIZED,
           "{\"ok\":false,\"error\":\"unauthorized\",\"reason\":\"%s\",\"message\":\"%s\"}",
           vh_verify_status_name(resp->verify_status), reason);
    vh__receiver_log(r, VH_LOG_WARN, "rejected", ",\"reason\":\"%s\",\"detail\":\"%s\"",
                     vh_verify_status_name(resp->verify_status), reason);
}

/*
 * The signature header sent more than once, or NULL. Neither a timestamp nor a signature
 * has a comma: one there means several values, on several lines (which the server joins
 * with ", ", RFC 9110 §5.3) or as a list. Taking the first would let the request be read
 * two ways (a proxy in front, or a second reader, may take the last), so it is refused with
 * the status for its header, as a malformed one is.
 */
static const char *repeated_header(const struct vh_receive_req *req, enum vh_verify_status *st)
{
    if (req->timestamp && strchr(req->timestamp, ',')) {
        *st = VH_VERIFY_BAD_TIMESTAMP;
        return "X-Webhook-Timestamp";
    }
    if (req->signature && strchr(req->signature, ',')) {
        *st = VH_VERIFY_BAD_SIGNATURE;
        return "X-Webhook-Signature";
    }
    return NULL;
}

/*
 * Steps 1-2. Returns true when the request may go on to the payload checks. With `head`,
 * only what needs no body (vh_receiver_admit): the body is neither there nor bounded yet.
 */
static bool check_request(struct vh_receiver *r, const struct vh_receive_req *req, bool head,
                          struct vh_receive_resp *resp, int *rc)
{
    struct vh_error err = VH_ERROR_INIT;
    struct vh_verify_opts vo;
    char reason[VH_ERROR_MSG_MAX * 2];
    const char *repeated;

    if (req->path && strcmp(req->path, "/healthz") == 0) {
        /* HEAD too: a monitor may probe with it (the server sends no body). */
        if (req->method && (strcmp(req->method, "GET") == 0 || strcmp(req->method, "HEAD") == 0))
            answer(resp, 200, VH_RECEIVE_HEALTH, "{\"ok\":true}");
        else
            answer_error(resp, 405, VH_RECEIVE_METHOD, "method_not_allowed",
                         "only GET and HEAD are accepted");
        return false;
    }
    if (!is_webhook_path(req->path)) {
        answer_error(resp, 404, VH_RECEIVE_NOT_FOUND, "not_found",
                     "POST webhooks to / or /webhook");
        return false;
    }
    if (!req->method || strcmp(req->method, "POST") != 0) {
        answer_error(resp, 405, VH_RECEIVE_METHOD, "method_not_allowed", "only POST is accepted");
        return false;
    }
    if (!head && req->body_too_large) {
        answer_error(resp, 413, VH_RECEIVE_TOO_LARGE, "payload_too_large",
                     "the body is larger than the receiver accepts");
        return false;
    }
    repeated = repeated_header(req, &resp->verify_status);
    if (repeated) {
        snprintf(reason, sizeof(reason), "%s: more than one value", repeated);
        unauthorized(r, resp, reason);
        return false;
    }
    vo.secrets = (const char *const *)r->secrets;
    vo.n_secrets = r->cfg.n_secrets;
    vo.tolerance_ms = r->cfg.tolerance_ms;
    vo.now_ms = req->now_ms;
    if (head)
        *rc = vh_verify_head(&vo, req->timestamp, req->timestamp ? strlen(req->timestamp) : 0,
                             req->signature, req->signature ? strlen(req->signature) : 0,
                             &resp->verify_status, &err);
    else
        *rc = vh_verify(&vo, req->timestamp, req->timestamp ? strlen(req->timestamp) : 0,
                        req->signature, req->signature ? strlen(req->signature) : 0, req->body,
                        req->body_len, &resp->verify_status, &err);
    if (*rc == VH_ESIG) {
        *rc = 0;
        vh__json_escape(err.msg, sizeof(err.msg), reason, sizeof(reason));
        unauthorized(r, resp, reason);
        return false;
    }
    if (*rc < 0) {
        vh__json_escape(err.msg, sizeof(err.msg), reason, sizeof(reason));
        vh__receiver_log(r, VH_LOG_ERROR, "verify failed", ",\"error\":\"%s\"", reason);
        answer_error(resp, 500, VH_RECEIVE_INTERNAL, "internal_error", "internal error");
        return false;
    }
    return true;
}

/* The jobs a new session gets, from the receiver's configuration. */
static void plan_jobs(const struct vh_receiver *r, const struct vh_session *s, int64_t now_ms,
                      struct vh__inbox_put *p)
{
    if (s->recording_url && r->cfg.recordings_dir) {
        p->jobs[p->n_jobs].kind = VH_JOB_DOWNLOAD;
        p->jobs[p->n_jobs].next_attempt_ms = now_ms;
        p->jobs[p->n_jobs].deadline_ms = vh_recording_expiry_ms(s->recording_url, now_ms);
        p->n_jobs++;
    }
    if (r->cfg.exec_cmd) {
        p->jobs[p->n_jobs].kind = VH_JOB_EXEC;
        p->jobs[p->n_jobs].next_attempt_ms = now_ms;
        p->jobs[p->n_jobs].deadline_ms = ACTION_DEADLINE_MS;
        p->n_jobs++;
    }
    if (r->cfg.forward_url) {
        p->jobs[p->n_jobs].kind = VH_JOB_FORWARD;
        p->jobs[p->n_jobs].next_attempt_ms = now_ms;
        p->jobs[p->n_jobs].deadline_ms = ACTION_DEADLINE_MS;
        p->n_jobs++;
    }
}

/*
 * Step 3: parses the payload and fills `p` (borrowing from `req` and `*ev`). Returns 1 when
 * the put is ready, 0 when `resp` already answers (400), < 0 when it failed (`resp` is 500).
 */
static int prepare(struct vh_receiver *r, const struct vh_receive_req *req,
                   struct vh_receive_resp *resp, struct vh_event **ev, struct vh__inbox_put *p)
{
    struct vh_error err = VH_ERROR_INIT;
    char msg[VH_ERROR_MSG_MAX * 2];
    int rc;

    *ev = NULL;
    rc =
        vh_event_parse(req->body ? req->body : "", req->body_len, VH_PARSE_ALLOW_UNKNOWN, ev, &err);
    if (rc == VH_EINVAL || rc == VH_ETOOBIG) {
        answer_error(resp, 400, VH_RECEIVE_INVALID, "invalid_payload", err.msg);
        vh__json_escape(err.msg, sizeof(err.msg), msg, sizeof(msg));
        vh__receiver_log(r, VH_LOG_WARN, "invalid payload", ",\"detail\":\"%s\"", msg);
        return 0;
    }
    if (rc < 0) { /* out of memory: nothing was stored */
        vh__json_escape(err.msg, sizeof(err.msg), msg, sizeof(msg));
        vh__receiver_log(r, VH_LOG_ERROR, "parsing the payload failed", ",\"error\":\"%s\"", msg);
        answer_error(resp, 500, VH_RECEIVE_INTERNAL, "internal_error", "internal error");
        return rc;
    }
    memset(p, 0, sizeof(*p));
    p->session_id = (*ev)->session->session_id;
    p->body = req->body;
    p->body_len = req->body_len;
    p->signed_at = req->timestamp;
    p->signature = req->signature;
    if (req->webhook_id && vh_id_is_valid(req->webhook_id, strlen(req->webhook_id)))
        p->webhook_id = req->webhook_id;
    p->recording_url = (*ev)->session->recording_url;
    p->event_ms = (*ev)->ts_ms;
    p->received_ms = req->now_ms;
    plan_jobs(r, (*ev)->session, req->now_ms, p);
    return 1;
}

_Static_assert(VH_INBOX_JOBS_MAX <= 9, "the job count is written as one digit");
_Static_assert(VH_RECEIVE_RESP_MAX > VH_ID_MAX + 48, "a 200's body fits");

/*
 * A stored (or duplicate) webhook's 200 and its log line. Every webhook comes here, on the
 * commit thread, so the strings are put together with memcpy, not printf. The session id is
 * [A-Za-z0-9_-]{1,64} (the parse checked it): no escaping, and both fit.
 */

static void answer_stored(struct vh_receiver *r, const struct vh__inbox_put *p, bool created,
                          struct vh_receive_resp *resp)
{
    size_t n = strnlen(p->session_id, VH_ID_MAX);
    char fields[VH_ID_MAX + 32], *o;

    resp->status = 200;
    resp->outcome = created ? VH_RECEIVE_STORED : VH_RECEIVE_DUPLICATE;
    memcpy(resp->session_id, p->session_id, n);
    resp->session_id[n] = '\0';
    o = VH__PUT_LIT(resp->body, "{\"ok\":true,\"session_id\":\"");
    memcpy(o, p->session_id, n);
    o = created ? VH__PUT_LIT(o + n, "\",\"duplicate\":false}")
                : VH__PUT_LIT(o + n, "\",\"duplicate\":true}");
    *o = '\0';
    resp->body_len = (size_t)(o - resp->body);

    o = VH__PUT_LIT(fields, ",\"session_id\":\"");
    memcpy(o, p->session_id, n);
    o = VH__PUT_LIT(o + n, "\",\"jobs\":");
    *o++ = (char)('0' + (created ? p->n_jobs : 0)); /* at most VH_INBOX_JOBS_MAX */
    vh__receiver_log_fields(r, VH_LOG_INFO, created ? "stored" : "duplicate", fields,
                            (size_t)(o - fields));
}

/* Step 4's answer, once the put returned `rc` (and `created`, or `err`). Frees `ev`. */
static int conclude(struct vh_receiver *r, const struct vh__inbox_put *p, struct vh_event *ev,
                    int rc, bool created, const struct vh_error *err, struct vh_receive_resp *resp)
{
    char msg[VH_ERROR_MSG_MAX * 2];

    if (rc < 0) {
        vh__json_escape(err->msg, sizeof(err->msg), msg, sizeof(msg));
        vh__receiver_log(r, VH_LOG_ERROR, "store failed", ",\"error\":\"%s\"", msg);
        answer_error(resp, 500, VH_RECEIVE_INTERNAL, "internal_error", "internal error");
        vh_event_free(ev);
        return rc;
    }
    answer_stored(r, p, created, resp);
    if (created && p->n_jobs > 0)
        vh__receiver_wake(r);
    vh_event_free(ev);
    return 0;
}

/* Steps 3-4, waiting for the commit. */
static int store(struct vh_receiver *r, const struct vh_receive_req *req,
                 struct vh_receive_resp *resp)
{
    struct vh_error err = VH_ERROR_INIT;
    struct vh__inbox_put p;
    struct vh_event *ev;
    bool created = false;
    int rc = prepare(r, req, resp, &ev, &p);

    if (rc <= 0)
        return rc;
    rc = vh__inbox_put(r->ib, &p, &created, &err);
    return conclude(r, &p, ev, rc, created, &err, resp);
}

/*
 * A webhook whose put is posted: what its answer needs once the commit is done. The event is
 * freed on the HTTP thread that parsed it, at once: the put keeps its own copy of the two
 * strings it took from it. Freed on the commit thread, its thirty-odd blocks went through
 * malloc's slow paths (another thread's blocks miss the per-thread cache).
 */
struct pending {
    struct vh_receiver *r;
    char session_id[VH_ID_MAX + 1];
    char *recording_url; /* owned, from the event */
    struct vh__inbox_put p;
    struct vh_receive_resp *resp;
    vh_receive_done_fn *done;
    void *ud;
};

/* The posted put's answer (vh__inbox_put_done_fn), on the committing thread. */
static void on_stored(void *ud, int rc, bool created, const struct vh_error *err)
{
    struct pending *pd = ud;
    vh_receive_done_fn *done = pd->done;
    void *done_ud = pd->ud;

    (void)conclude(pd->r, &pd->p, NULL, rc, created, err, pd->resp);
    vh_free(pd->recording_url);
    vh_free(pd);
    done(done_ud);
}

bool vh_receiver_admit(struct vh_receiver *r, const struct vh_receive_req *req,
                       struct vh_receive_resp *resp)
{
    int rc = 0;

    memset(resp, 0, sizeof(*resp));
    resp->verify_status = VH_VERIFY_OK;
    return check_request(r, req, true, resp, &rc);
}

int vh_receiver_handle(struct vh_receiver *r, const struct vh_receive_req *req,
                       struct vh_receive_resp *resp)
{
    int rc = 0;

    memset(resp, 0, sizeof(*resp));
    resp->verify_status = VH_VERIFY_OK;
    if (!check_request(r, req, false, resp, &rc))
        return rc;
    return store(r, req, resp);
}

int vh_receiver_handle_async(struct vh_receiver *r, const struct vh_receive_req *req,
                             struct vh_receive_resp *resp, vh_receive_done_fn *done, void *ud)
{
    struct vh_error err = VH_ERROR_INIT;
    struct vh_event *ev = NULL;
    struct pending *pd;
    int rc = 0;

    memset(resp, 0, sizeof(*resp));
    resp->verify_status = VH_VERIFY_OK;
    if (!check_request(r, req, false, resp, &rc))
        return rc;
    pd = vh_malloc(sizeof(*pd));
    if (!pd) {
        vh_error_set(&err, VH_ENOMEM, "receiver: out of memory");
        return conclude(r, NULL, NULL, VH_ENOMEM, false, &err, resp);
    }
    rc = prepare(r, req, resp, &ev, &pd->p);
    if (rc <= 0) {
        vh_free(pd);
        return rc;
    }
    /* The session id is 1 to 64 characters (the parse checked it). */
    memcpy(pd->session_id, ev->session->session_id, strlen(ev->session->session_id) + 1);
    pd->recording_url = ev->session->recording_url;
    ev->session->recording_url = NULL;
    vh_event_free(ev);
    pd->p.session_id = pd->session_id;
    pd->p.recording_url = pd->recording_url;
    pd->r = r;
    pd->resp = resp;
    pd->done = done;
    pd->ud = ud;
    rc = vh__inbox_put_post(r->ib, &pd->p, on_stored, pd, &err);
    if (rc < 0) {
        rc = conclude(r, &pd->p, NULL, rc, false, &err, resp);
        vh_free(pd->recording_url);
        vh_free(pd);
        return rc;
    }
    return 1;
}
