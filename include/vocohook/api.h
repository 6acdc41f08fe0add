/*
 * The HTTP API as pure logic: a bounded request struct in, a response struct out. The
 * partner API (SPEC §4, under /api/v2), the producer ingest API (SPEC §5,
 * POST /internal/v1/sessions) and GET /healthz. The HTTP server (server.h) only moves
 * bytes between sockets and these structs; tests call vh_api_handle directly too.
 *
 * Thread-safe: one `struct vh_api` serves concurrent requests.
 */
#ifndef VOCOHOOK_API_H
#define VOCOHOOK_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <vocohook/buf.h>
#include <vocohook/common.h>
#include <vocohook/error.h>
#include <vocohook/log.h>
#include <vocohook/store.h>

struct vh_api;

struct vh_api_config {
    const char *ingest_token; /* the producer's bearer token; NULL disables ingest (401) */
    bool allow_http;          /* accept http:// endpoint URLs (development only) */
    int max_endpoints;        /* per partner; 0 means VH_ENDPOINTS_MAX */
    int rate_general_per_min; /* per API key; 0 means 60; < 0 disables */
    int rate_calls_per_min;   /* per API key on /calls; 0 means 10; < 0 disables */
    /* S3, for presigning recording_key (all NULL: recording_key is refused at ingest). */
    const char *s3_endpoint; /* https://s3.amazonaws.com, http://127.0.0.1:4569 */
    const char *s3_region;
    const char *s3_bucket;
    const char *s3_access_key;
    const char *s3_secret_key;
    bool s3_path_style;
    vh_log_fn *log; /* NULL: no logs */
    void *log_ud;
    /* Called (any thread) when deliveries became due (ingest, retry, replay): wake the sender. */
    void (*on_due)(void *ud);
    void *on_due_ud;
    /*
     * Called (any thread) once the store has an endpoint's new URL, secret or enabled flag,
     * or its deletion (PATCH, rotate-secret, DELETE, legacy PUT), with its id (borrowed for
     * the call): take back what is queued with the old ones (vh_sender_endpoint_changed).
     * NULL: nothing is called.
     */
    void (*on_endpoint_changed)(void *ud, const char *endpoint_id);
    void *on_endpoint_changed_ud;
    /* Appends the Prometheus text for GET /metrics; NULL: no /metrics route. */
    int (*metrics)(void *ud, int64_t now_ms, struct vh_buf *out);
    void *metrics_ud;
};

/*
 * Creates the API over `st` (borrowed: it must outlive the API). Copies every string of
 * `cfg`. S3 settings are checked by presigning a probe key with them. Returns 0, VH_EINVAL
 * (a bad setting, named: `s3: bucket: ...`) or VH_ENOMEM.
 */
VH_API int vh_api_new(struct vh_store *st, const struct vh_api_config *cfg, struct vh_api **out,
                      struct vh_error *err);
/* Frees the API (not the store). No request may be in progress. NULL is a no-op. */
VH_API void vh_api_free(struct vh_api *api);

#define VH_API_MAX_QUERY 16

struct vh_api_kv {
    const char *key; /* borrowed, decoded */
    const char *value;
};

struct vh_api_req {
    const char *method; /* "GET", "POST", ... */
    const char *path;   /* decoded path, no query: "/api/v2/config/webhooks" */
    struct vh_api_kv query[VH_API_MAX_QUERY];
    size_t n_query;            /* query arguments, in order */
    bool query_truncated;      /* more than VH_API_MAX_QUERY arguments were sent */
    const char *authorization; /* the Authorization header, NULL when absent */
    const char *content_type;  /* the Content-Type header, NULL when absent */
    const char *body;          /* borrowed; NULL with body_len 0 when none */
    size_t body_len;
    bool body_too_large;    /* the server stopped reading at its bound: answer 413 */
    const char *request_id; /* for log records */
    int64_t now_ms;         /* the wall clock when the request arrived */
};

struct vh_api_resp {
    int status;                   /* HTTP status */
    struct vh_buf body;           /* the JSON body (owned) */
    int retry_after_s;            /* > 0: send a Retry-After header with this many seconds */
    const char *location;         /* NULL, or a static/owned-by-api string for a Location header */
    const char *content_type;     /* NULL: application/json; else a static string */
    const char *www_authenticate; /* NULL, or a static string: a 401's WWW-Authenticate */
    char allow[48];               /* "" or a 405's Allow header: "GET, HEAD" */
};

/* Initializes a response for vh_api_handle; release it with vh_api_resp_release. */
VH_API void vh_api_resp_init(struct vh_api_resp *resp);
VH_API void vh_api_resp_release(struct vh_api_resp *resp);

/*
 * Handles one request. Always fills `resp` with a complete answer (the documented
 * `{success,data}` / `{success:false,error:{code,message}}` envelope; a 500 with
 * INTERNAL_ERROR when our own part failed, whose cause goes to the log, never to the
 * client). Returns 0, or the negative vh_err of an internal failure (already answered).
 */
VH_API int vh_api_handle(struct vh_api *api, const struct vh_api_req *req,
                         struct vh_api_resp *resp);

/*
 * The checks a request's head is enough for, for a server to run before it reads the body
 * (`req->body` NULL): the ingest token and Content-Type of POST /internal/v1/sessions, the
 * API key of /api/v2 (no rate limit is counted: vh_api_handle does that). Returns true when
 * the body may be read and the request go on to vh_api_handle; false when `resp` holds the
 * answer (401, 400, or 500 when the key's lookup failed), which should go out without the
 * body being read. A client without credentials so never gets a body buffered.
 */
VH_API bool vh_api_admit(struct vh_api *api, const struct vh_api_req *req,
                         struct vh_api_resp *resp);

/* Tells the caller of vh_api_handle_async that its put-off answer is complete. */
typedef void vh_api_done_fn(void *ud);

#define VH_API_LATER 1 /* vh_api_handle_async: "the answer comes through `done`" */

/*
 * vh_api_handle for a server that should not hold a thread through a commit: the same
 * answers, but a request that waits for one (POST /internal/v1/sessions, the ingest) may be
 * put off. Then it returns VH_API_LATER, and `done(ud)` runs exactly once, when `resp` holds
 * the complete answer, on the thread that ran the commit: the store's, this one (possibly
 * before this call returns), or another caller's (vh_store_event_put_async). `req`, what it
 * points to, and `resp` must stay valid until then. Any other return is vh_api_handle's, and
 * `done` never runs. `done` must be short, and must not call the API or the store's writes.
 * A NULL `done` is a misuse: every request gets a 500, and the call returns VH_EINVAL.
 */
VH_API int vh_api_handle_async(struct vh_api *api, const struct vh_api_req *req,
                               struct vh_api_resp *resp, vh_api_done_fn *done, void *ud);

/*
 * Ingests one session for `partner_id` as POST /internal/v1/sessions does (and
 * `vocohook emit`): validates `session_json` (a bare session object; error paths are
 * prefixed with `path_prefix`, e.g. "session."), presigns a recording_key with the S3
 * settings, renders the payload once (timestamp `now_ms`) and commits it with its
 * deliveries (vh_store_event_put). Returns 0 (see `out->created` for a repeat),
 * VH_EINVAL/VH_ETOOBIG (rejected input, `err` names the path), VH_ENOTFOUND (no such
 * partner), VH_ECONFLICT, VH_ESTORE or VH_ENOMEM.
 */
VH_API int vh_api_ingest_session(struct vh_api *api, const char *partner_id,
                                 const char *session_json, size_t len, const char *path_prefix,
                                 int64_t now_ms, struct vh_event_put_result *out,
                                 struct vh_error *err);

#endif
