/*
 * The receiver toolkit (SPEC §7): what an integrator runs, or links, to take
 * `session.completed` webhooks safely.
 *
 * Three layers, each usable alone:
 *
 * - Verification, for any C or C++ server: vh_verify() (sign.h) checks one request's raw
 *   body and its two header values against a list of accepted secrets and a time window,
 *   and says why it failed; vh_event_parse() with VH_PARSE_ALLOW_UNKNOWN (event.h) gives the
 *   typed view of the payload. docs/receiving.md and examples/receiver_example.c show both.
 *
 * - The receiver (vh_receiver_*): verifies each request first, then checks the payload,
 *   stores the raw body durably in an inbox (a SQLite file), deduplicating on session_id,
 *   and answers at once. Background worker threads then work off jobs kept in the same
 *   file: downloading the recording before its URL expires, running a command, forwarding
 *   the payload. `vocohook receive` is this behind the HTTP server (server.h).
 *
 * - The inbox (vh_inbox_*): reads what arrived, for `vocohook sessions`.
 *
 * Durability: a request is answered 200 only once its row (and its jobs) are committed with
 * synchronous=FULL, so a crash or `kill -9` at any moment loses no acknowledged event and no
 * pending job. Downloads are written to a temporary file in the recordings directory,
 * fsync'ed and renamed, so a half-written file never has its final name; the temporary
 * files a crash leaves behind are removed when the next receiver starts.
 *
 * One receiver per inbox file and recordings directory at a time.
 */
#ifndef VOCOHOOK_RECEIVE_H
#define VOCOHOOK_RECEIVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <vocohook/buf.h>
#include <vocohook/clock.h>
#include <vocohook/common.h>
#include <vocohook/error.h>
#include <vocohook/id.h>
#include <vocohook/log.h>
#include <vocohook/sign.h>

#define VH_RECEIVER_SECRETS_MAX        16
#define VH_RECEIVER_TOLERANCE_DEFAULT  INT64_C(300000) /* ±5 min (SPEC §7) */
#define VH_RECEIVER_WORKERS_DEFAULT    2
#define VH_RECORDING_MAX_DEFAULT       (UINT64_C(512) * 1024 * 1024)
#define VH_RECORDING_TTL_DEFAULT_MS    INT64_C(86400000) /* a URL without X-Amz-* lives 24 h */
#define VH_DOWNLOAD_TIMEOUT_DEFAULT_MS INT64_C(1800000)  /* one download attempt: 30 min */
#define VH_ACTION_TIMEOUT_DEFAULT_MS   INT64_C(60000)    /* one --exec or --forward attempt */
#define VH_ACTION_ATTEMPTS_DEFAULT     8                 /* --exec and --forward, in all */
#define VH_JOB_ERROR_MAX               256  /* bytes of a job's last error, NUL included */
#define VH_INBOX_PATH_MAX              4096 /* bytes of a stored file path, NUL included */

/* ---- jobs ------------------------------------------------------------------------------- */

enum vh_job_kind {
    VH_JOB_DOWNLOAD = 1, /* fetch recording_url into the recordings directory */
    VH_JOB_EXEC = 2,     /* run the --exec command with the payload on stdin */
    VH_JOB_FORWARD = 3   /* POST the payload to the --forward URL */
};

/*
 * The states of a background job. Legal moves (vh_job_transition):
 *
 *   pending -> running   a worker claimed it
 *   running -> pending   the attempt failed with time (or attempts) left, was cut short by
 *                        a shutdown, or the process died during it (found at start)
 *   running -> done      the attempt succeeded
 *   running -> failed    final: an error no retry can fix, or the last attempt failed
 *   running -> expired   final, downloads only: the URL expired before a download succeeded
 *
 * The numbers are stable (the names are stored).
 */
enum vh_job_state {
    VH_JOB_PENDING = 0, /* waiting for its next attempt, due at next_attempt_ms */
    VH_JOB_RUNNING = 1, /* an attempt is under way */
    VH_JOB_DONE = 2,    /* final: succeeded */
    VH_JOB_FAILED = 3,  /* final: gave up */
    VH_JOB_EXPIRED = 4  /* final: the recording URL expired first */
};

/* "download", "exec", "forward"; "unknown" otherwise. */
VH_API const char *vh_job_kind_name(enum vh_job_kind k);

/* "pending", "running", "done", "failed", "expired"; "unknown" otherwise. */
VH_API const char *vh_job_state_name(enum vh_job_state s);

/* The state named `name` (`len` bytes). Returns 0 or VH_EINVAL; `*out` is set on success. */
VH_API int vh_job_state_parse(const char *name, size_t len, enum vh_job_state *out,
                              struct vh_error *err);

/*
 * Whether `from` -> `to` is a legal move (above). Returns 0, or VH_ESTATE naming both
 * states ("job: illegal transition 'done' -> 'running'").
 */
VH_API int vh_job_transition(enum vh_job_state from, enum vh_job_state to, struct vh_error *err);

/*
 * When a recording URL stops working: X-Amz-Date + X-Amz-Expires when the query has both
 * (an S3 SigV4 presigned URL; X-Amz-Date is `YYYYMMDDTHHMMSSZ`), otherwise `received_ms` +
 * VH_RECORDING_TTL_DEFAULT_MS (the contract's 24 h). Pure. Never fails: a URL whose
 * parameters cannot be read, or that says it was signed more than 15 minutes after
 * `received_ms` (S3 would refuse it: not a real presign), gets the default.
 */
VH_API int64_t vh_recording_expiry_ms(const char *url, int64_t received_ms);

/* ---- the receiver ---------------------------------------------------------------------- */

struct vh_receiver;

struct vh_receiver_config {
    const char *db_path;         /* the inbox file; created (mode 0600) when missing */
    const char *const *secrets;  /* accepted secrets (rotation); copied */
    size_t n_secrets;            /* 1..VH_RECEIVER_SECRETS_MAX */
    int64_t tolerance_ms;        /* timestamp window both ways; < 0 disables the check */
    const char *recordings_dir;  /* an existing directory; NULL: recordings are not fetched */
    uint64_t recording_max;      /* bytes; a larger recording fails, for good */
    const char *exec_cmd;        /* NULL, or a command run by /bin/sh -c for each event */
    const char *forward_url;     /* NULL, or an http(s) URL each payload is POSTed to */
    bool allow_http;             /* fetch recordings over http:// too (not only https://) */
    bool allow_private_networks; /* fetch recordings from loopback and private addresses */
    const char *ca_file;         /* PEM CA bundle for downloads and forwards; NULL: system */
    unsigned workers;            /* background threads, >= 1 */
    int64_t download_timeout_ms; /* one download attempt, start to end */
    int64_t action_timeout_ms;   /* one exec or forward attempt */
    unsigned action_attempts;    /* exec and forward attempts in all, >= 1 */
    vh_log_fn *log;              /* NULL: no logs. Never gets secrets or bodies */
    void *log_ud;
};

/*
 * Fills `cfg` with the defaults: no db path and no secrets (both required), tolerance
 * VH_RECEIVER_TOLERANCE_DEFAULT, no recordings, VH_RECORDING_MAX_DEFAULT, no exec or
 * forward, https and public addresses only, VH_RECEIVER_WORKERS_DEFAULT workers,
 * VH_DOWNLOAD_TIMEOUT_DEFAULT_MS, VH_ACTION_TIMEOUT_DEFAULT_MS, VH_ACTION_ATTEMPTS_DEFAULT.
 */
VH_API void vh_receiver_config_init(struct vh_receiver_config *cfg);

/*
 * Opens (or creates) the inbox, checks the configuration, and recovers from the previous
 * run: jobs left running go back to pending, and stray temporary files in the recordings
 * directory are removed. Starts no thread (vh_receiver_start does). Copies every string of
 * `cfg`. Returns 0, VH_EINVAL (a bad setting, named), VH_EIO (the recordings directory),
 * VH_ESTORE or VH_ENOMEM.
 */
VH_API int vh_receiver_new(const struct vh_receiver_config *cfg, struct vh_receiver **out,
                           struct vh_error *err);

/*
 * Starts the background workers. Returns 0, VH_ESTATE (already started) or VH_EIO (a
 * thread could not be created; those that started are stopped again).
 */
VH_API int vh_receiver_start(struct vh_receiver *r, struct vh_error *err);

/*
 * Stops the workers (an attempt in progress is cut short and its job goes back to pending,
 * not counted), closes the inbox and frees `r`. No vh_receiver_handle call may be running.
 * NULL is a no-op.
 */
VH_API void vh_receiver_free(struct vh_receiver *r);

/* One webhook request, as the HTTP server hands it over. Everything is borrowed. */
struct vh_receive_req {
    const char *method;     /* "POST" */
    const char *path;       /* the decoded path, no query */
    const char *timestamp;  /* the X-Webhook-Timestamp value; NULL when absent */
    const char *signature;  /* the X-Webhook-Signature value; NULL when absent */
    const char *webhook_id; /* the X-Webhook-Id value; NULL when absent (kept, not needed) */
    const char *body;       /* the raw body, byte for byte as received; NULL when empty */
    size_t body_len;
    bool body_too_large; /* the server stopped reading at its bound */
    int64_t now_ms;      /* the wall clock when the request arrived */
};

enum vh_receive_outcome {
    VH_RECEIVE_STORED = 0,       /* 200: verified, valid, stored now; its jobs are queued */
    VH_RECEIVE_DUPLICATE = 1,    /* 200: verified, valid, and that session_id is stored */
    VH_RECEIVE_HEALTH = 2,       /* 200: GET or HEAD /healthz */
    VH_RECEIVE_INVALID = 3,      /* 400: verified, but the payload breaks the contract */
    VH_RECEIVE_UNAUTHORIZED = 4, /* 401: `verify_status` says why */
    VH_RECEIVE_NOT_FOUND = 5,    /* 404: not a webhook path */
    VH_RECEIVE_METHOD = 6,       /* 405: a webhook path, but not POST; /healthz, not GET or HEAD */
    VH_RECEIVE_TOO_LARGE = 7,    /* 413: the body passed the server's bound */
    VH_RECEIVE_INTERNAL = 8      /* 500: the inbox failed; the sender will retry */
};

#define VH_RECEIVE_RESP_MAX 512

/* The answer: a status and a one-line JSON body ({"ok":true,...} or {"ok":false,...}). */
struct vh_receive_resp {
    int status;
    enum vh_receive_outcome outcome;
    enum vh_verify_status verify_status; /* VH_VERIFY_OK unless UNAUTHORIZED */
    char session_id[VH_ID_MAX + 1];      /* STORED, DUPLICATE: the session; else "" */
    char body[VH_RECEIVE_RESP_MAX];      /* NUL-terminated JSON */
    size_t body_len;
};

/*
 * Handles one request on the webhook paths `/` and `/webhook` (and GET or HEAD /healthz): verifies
 * the raw bytes against the secrets and the window first (401 with the reason otherwise),
 * then parses the payload leniently (VH_PARSE_ALLOW_UNKNOWN; 400 naming the path and the
 * reason), then stores it with its jobs and answers 200. A session_id already stored answers
 * 200 and stores nothing. Always fills `resp`. Returns 0, or the negative vh_err of an
 * internal failure (answered 500, and logged). Thread-safe: the server calls it from all its
 * threads at once; stores from concurrent requests share one commit (group commit).
 */
VH_API int vh_receiver_handle(struct vh_receiver *r, const struct vh_receive_req *req,
                              struct vh_receive_resp *resp);

/*
 * The checks of vh_receiver_handle that need no body, for a server to make on a request's
 * head before it reads the body (`req->body` unused): the path, the method, both signature
 * headers and the timestamp window. Returns true when the body is worth reading (the
 * request goes on to vh_receiver_handle, which checks all again); false with the answer
 * vh_receiver_handle would give in `resp` (and the same log line). A sender without the
 * secret cannot pass, but anyone can send a fresh timestamp: the signature itself needs
 * the body.
 */
VH_API bool vh_receiver_admit(struct vh_receiver *r, const struct vh_receive_req *req,
                              struct vh_receive_resp *resp);

/* Called once an answer vh_receiver_handle_async put off is in its `resp`. */
typedef void vh_receive_done_fn(void *ud);

/*
 * vh_receiver_handle for a server that must not block on the commit (an event loop): the
 * same checks and answers, but when the webhook is to be stored it returns 1 at once and
 * calls `done(ud)` exactly once, from another thread, after filling `resp` (200, or 500 when
 * the store failed). `req`'s strings and body and `resp` must stay valid until then.
 * Otherwise it returns as vh_receiver_handle does (0 or < 0, `resp` filled, no call).
 * vh_receiver_free answers every put-off request first.
 */
VH_API int vh_receiver_handle_async(struct vh_receiver *r, const struct vh_receive_req *req,
                                    struct vh_receive_resp *resp, vh_receive_done_fn *done,
                                    void *ud);

/* Jobs waiting or running right now (for tests and health checks). Returns >= 0 or < 0. */
VH_API int vh_receiver_pending_jobs(struct vh_receiver *r, int64_t *out, struct vh_error *err);

/* ---- the inbox, read side ----------------------------------------------------------------- */

struct vh_inbox;

enum vh_inbox_flags {
    VH_INBOX_CREATE = 1 << 0 /* create the file (mode 0600) when it is missing */
};

/*
 * Opens the inbox at `path`, running the schema migrations. Without VH_INBOX_CREATE a
 * missing file is VH_ENOTFOUND. Returns 0, VH_ENOTFOUND, VH_EINVAL (bad flags), VH_ESTORE
 * (not an inbox, or from a newer version) or VH_ENOMEM. A `struct vh_inbox` may be used
 * from several threads (calls are serialized inside).
 */
VH_API int vh_inbox_open(const char *path, unsigned flags, struct vh_inbox **out,
                         struct vh_error *err);

/* Closes the inbox. NULL is a no-op. No other call on `ib` may be running. */
VH_API void vh_inbox_close(struct vh_inbox *ib);

/* What became of a session's recording: the download job's state, or why there is none. */
enum vh_recording_state {
    VH_RECORDING_NONE = 0,        /* "none": recording_url was null */
    VH_RECORDING_SKIPPED = 1,     /* "skipped": a URL, but no recordings directory then */
    VH_RECORDING_PENDING = 2,     /* "pending": waiting for an attempt */
    VH_RECORDING_DOWNLOADING = 3, /* "downloading": an attempt is under way */
    VH_RECORDING_DOWNLOADED = 4,  /* "downloaded": stored, with its size and SHA-256 */
    VH_RECORDING_FAILED = 5,      /* "failed": gave up (too large, blocked, refused) */
    VH_RECORDING_EXPIRED = 6      /* "expired": the URL expired before a download worked */
};

/* The names above; "unknown" otherwise. */
VH_API const char *vh_recording_state_name(enum vh_recording_state s);

/* The state named `name`. Returns 0 or VH_EINVAL; `*out` is set on success. */
VH_API int vh_recording_state_parse(const char *name, size_t len, enum vh_recording_state *out,
                                    struct vh_error *err);

/* One job of a session, as stored. */
struct vh_inbox_job {
    enum vh_job_kind kind;
    enum vh_job_state state;
    unsigned attempts;       /* attempts made (interrupted ones do not count) */
    int64_t next_attempt_ms; /* pending: when the next attempt is due */
    int64_t deadline_ms;     /* no attempt starts after this (downloads: the URL's expiry) */
    int64_t updated_ms;
    int status;                   /* the last attempt's HTTP status, or the exit status; 0: none */
    char error[VH_JOB_ERROR_MAX]; /* the last attempt's error, "" after a success */
    char path[VH_INBOX_PATH_MAX]; /* downloads: the file, once done; else "" */
    uint64_t size;                /* downloads: bytes, once done */
    char sha256[VH_SHA256_HEX_LEN + 1]; /* downloads: lowercase hex, once done; else "" */
};

#define VH_INBOX_JOBS_MAX 3 /* one per kind */

/* One stored session. Release with vh_inbox_session_release. */
struct vh_inbox_session {
    char session_id[VH_ID_MAX + 1];
    int64_t received_ms;               /* when the receiver stored it */
    int64_t event_ms;                  /* the payload's "timestamp" */
    char signed_at[VH_TIME_LEN + 1];   /* the X-Webhook-Timestamp it arrived with */
    char webhook_id[VH_ID_MAX + 1];    /* X-Webhook-Id, "" when absent or not id-like */
    enum vh_recording_state recording; /* derived from recording_url and the job */
    struct vh_buf body;                /* the raw body as received (empty without it) */
    struct vh_inbox_job jobs[VH_INBOX_JOBS_MAX];
    size_t n_jobs;
};

/* Empties `s` (frees the body). Safe on a zeroed struct. */
VH_API void vh_inbox_session_release(struct vh_inbox_session *s);

/* Which sessions vh_inbox_foreach visits. Zero it, then set what you need. */
struct vh_inbox_filter {
    int64_t since_ms;         /* received at or after this; 0: any */
    bool has_recording_state; /* filter on `recording_state` */
    enum vh_recording_state recording_state;
    bool with_body; /* load each body (export); else bodies are left empty */
    size_t limit;   /* at most this many; 0: all */
};

/*
 * Called once per session, oldest received first. `s` is borrowed for the call. Return 0
 * to go on, or a negative value to stop (vh_inbox_foreach then returns it).
 */
typedef int vh_inbox_session_fn(void *ud, const struct vh_inbox_session *s);

/*
 * Visits the sessions that pass `f`, reading one consistent snapshot (the receiver may keep
 * writing meanwhile). Returns 0, what `fn` returned to stop, VH_ESTORE or VH_ENOMEM.
 */
VH_API int vh_inbox_foreach(struct vh_inbox *ib, const struct vh_inbox_filter *f,
                            vh_inbox_session_fn *fn, void *ud, struct vh_error *err);

/*
 * Reads one session with its body and jobs into `out` (release it after). Returns 0,
 * VH_ENOTFOUND, VH_ESTORE or VH_ENOMEM; on failure `out` holds nothing to release.
 */
VH_API int vh_inbox_get(struct vh_inbox *ib, const char *session_id, struct vh_inbox_session *out,
                        struct vh_error *err);

/* The number of stored sessions. */
VH_API int vh_inbox_count(struct vh_inbox *ib, int64_t *out, struct vh_error *err);

#endif
