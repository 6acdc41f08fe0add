/*
 * Private to src/receive/: the receiver's parts and the contracts between them.
 *
 *   handle.c   one request: verify, parse, store (no I/O but the inbox call)
 *   inbox.c    the inbox file: schema, group commit, jobs (the only <sqlite3.h> user here)
 *   jobs.c     pure rules: job states, backoff, what an attempt's outcome leads to, expiry
 *   fetch.c    downloads and forwards over libcurl (the only <curl/curl.h> user here)
 *   spawn.c    --exec: a child process with the payload on stdin
 *   receiver.c the receiver's lifecycle, its worker threads and their logs
 *
 * Tests include this header to drive the parts one by one.
 */
#ifndef VH_RECEIVE_RECEIVE_INT_H
#define VH_RECEIVE_RECEIVE_INT_H

#include "core/log_int.h"
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <vocohook/buf.h>
#include <vocohook/error.h>
#include <vocohook/log.h>
#include <vocohook/receive.h>

#define VH__BACKOFF_FIRST_MS INT64_C(1000)   /* the wait after a first failed attempt */
#define VH__BACKOFF_MAX_MS   INT64_C(300000) /* the longest wait between attempts: 5 min */
#define VH__EXPIRY_MARGIN_MS INT64_C(1000)   /* the last download attempt starts this early */
#define VH__TEMP_PREFIX      ".vh-"          /* temporary downloads: .vh-<session>.part */
#define VH__TEMP_SUFFIX      ".part"
#define VH__SIG_HEADER_MAX   (VH_SIG_LEN + 1)

/* ---- the receiver ------------------------------------------------------------------------ */

struct vh_receiver {
    struct vh_receiver_config cfg; /* every string points at an owned copy */
    char **secrets;                /* owned copies, wiped when freed */
    struct vh_inbox *ib;

    /* Workers sleep on `cv` until a job is due or `gen` moves (a new job, or stop). */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint64_t gen;
    pthread_t *threads;
    unsigned n_threads;
    atomic_bool stopping; /* read by attempts in progress, so they can be cut short */
};

/* Wakes every worker: jobs were added. */
void vh__receiver_wake(struct vh_receiver *r);

/* A log record {"ts","level","msg",...}: `fmt` writes the members after "msg" (or nothing). */
void vh__receiver_log(const struct vh_receiver *r, enum vh_log_level level, const char *msg,
                      const char *fmt, ...) VH_PRINTF(4, 5);

/* The same with the members already written: `n` bytes of `fields` (each with its comma). */
void vh__receiver_log_fields(const struct vh_receiver *r, enum vh_log_level level, const char *msg,
                             const char *fields, size_t n);

/*
 * Writes `s` (at most `max` bytes of it) as the inside of a JSON string into `out`, cut to
 * fit `out_size`; control bytes and bytes >= 0x7f are escaped one by one, so the result is
 * valid JSON whatever `s` holds.
 */

/* ---- the inbox, write side --------------------------------------------------------------- */

/* A job to create with a new session. */
struct vh__job_spec {
    enum vh_job_kind kind;
    int64_t next_attempt_ms;
    int64_t deadline_ms;
};

/* A verified, valid webhook to store. Everything is borrowed for the call. */
struct vh__inbox_put {
    const char *session_id;
    const char *body; /* the raw bytes */
    size_t body_len;
    const char *signed_at;     /* the X-Webhook-Timestamp value */
    const char *signature;     /* the X-Webhook-Signature value */
    const char *webhook_id;    /* NULL when absent */
    const char *recording_url; /* NULL when null */
    int64_t event_ms;
    int64_t received_ms;
    struct vh__job_spec jobs[VH_INBOX_JOBS_MAX];
    size_t n_jobs;
};

/*
 * Stores the session and its jobs in one transaction, unless the session_id is already
 * there (then nothing is written). `*created` says which. Durable on return. Concurrent
 * callers share commits. Returns 0, VH_ESTORE or VH_ENOMEM.
 */
int vh__inbox_put(struct vh_inbox *ib, const struct vh__inbox_put *p, bool *created,
                  struct vh_error *err);

/* A posted put's answer: rc 0 (with `created`) or < 0 with `err`; on the committing thread. */
typedef void vh__inbox_put_done_fn(void *ud, int rc, bool created, const struct vh_error *err);

/*
 * vh__inbox_put for a caller that must not block: queues the put and returns; `done(ud, …)`
 * runs once it is durable or has failed, on another thread. What `p` points to must stay
 * valid until then (`p` itself is copied). Returns 0 (then `done` will run exactly once),
 * or VH_EINVAL, VH_ENOMEM, VH_EIO (then it will not). vh_inbox_close answers every posted put
 * first.
 */
int vh__inbox_put_post(struct vh_inbox *ib, const struct vh__inbox_put *p,
                       vh__inbox_put_done_fn *done, void *ud, struct vh_error *err);

/* A claimed job, with what its attempt needs. Release with vh__job_release. */
struct vh__job {
    char session_id[VH_ID_MAX + 1];
    int64_t sid; /* the session's row id */
    enum vh_job_kind kind;
    unsigned attempts; /* made before this one */
    int64_t deadline_ms;
    int64_t received_ms;
    char signed_at[VH_TIME_LEN + 1];
    char signature[VH__SIG_HEADER_MAX];
    char webhook_id[VH_ID_MAX + 1]; /* "" when none */
    char *recording_url;            /* owned; NULL when null */
    struct vh_buf body;             /* the raw payload */
};

void vh__job_release(struct vh__job *j);

/*
 * Claims a pending job due at `now_ms`, marking it running, and fills `*out` (zeroed first;
 * release it whatever the result): the download due longest if one is due, else the job of
 * another kind due longest (a recording's link expires; a command can run for minutes).
 * Returns 1 when a job was claimed, 0 when none is due, or VH_ESTORE / VH_ENOMEM.
 */
int vh__inbox_claim(struct vh_inbox *ib, int64_t now_ms, struct vh__job *out, struct vh_error *err);

/* What a running job becomes after an attempt (jobs.c decides, inbox.c writes it). */
struct vh__job_update {
    enum vh_job_state state; /* pending, done, failed or expired */
    unsigned attempts;
    int64_t next_attempt_ms; /* pending: when due; else 0 */
    int status;              /* HTTP status or exit status; 0: none */
    char error[VH_JOB_ERROR_MAX];
    const char *path; /* done downloads: the file; else NULL */
    uint64_t size;
    const char *sha256; /* done downloads: lowercase hex; else NULL */
};

/*
 * Records the end of an attempt of the running job (sid, kind): `sid` is the session's row
 * id (vh__job.sid), `session_id` names it in messages. Returns 0, VH_ESTATE (the job is
 * not running), VH_ESTORE or VH_ENOMEM.
 */
int vh__inbox_finish(struct vh_inbox *ib, int64_t sid, const char *session_id,
                     enum vh_job_kind kind, const struct vh__job_update *u, int64_t now_ms,
                     struct vh_error *err);

/*
 * Puts every running job back to pending, due at `now_ms` (the process that ran them is
 * gone). Stores how many in `*n`. Returns 0, VH_ESTORE or VH_ENOMEM.
 */
int vh__inbox_recover(struct vh_inbox *ib, int64_t now_ms, int64_t *n, struct vh_error *err);

/*
 * When the earliest pending job is due. Returns 1 and sets `*out_ms`, 0 when no job is
 * pending, or VH_ESTORE.
 */
int vh__inbox_next_due(struct vh_inbox *ib, int64_t *out_ms, struct vh_error *err);

/*
 * Limits vh__inbox_claim and vh__inbox_next_due to the job kinds in `kinds` (1 << kind
 * each; all by default): a job planned under an action this start does not have (a restart
 * without --exec, say) stays pending for a start that has it. Call before the first claim.
 */
void vh__inbox_set_kinds(struct vh_inbox *ib, unsigned kinds);

/* Jobs pending or running. */
int vh__inbox_unfinished(struct vh_inbox *ib, int64_t *out, struct vh_error *err);

/* ---- pure rules (jobs.c) ------------------------------------------------------------------ */

/* How one attempt ended, whatever the kind. */
enum vh__outcome {
    VH__OUTCOME_OK = 0,          /* it worked */
    VH__OUTCOME_RETRY = 1,       /* it failed; another attempt may work */
    VH__OUTCOME_FINAL = 2,       /* it failed; no attempt will work */
    VH__OUTCOME_INTERRUPTED = 3, /* our shutdown cut it short: not counted */
    VH__OUTCOME_EXPIRED = 4      /* download: the server refused a URL past its expiry */
};

/* One attempt's report (fetch.c, spawn.c). Plain data. */
struct vh__report {
    enum vh__outcome outcome;
    int status;     /* HTTP status, or the command's exit status; 0: none */
    uint64_t bytes; /* downloads: body bytes written */
    char error[VH_JOB_ERROR_MAX];
};

/* The wait after `attempts` failed attempts (1-based): 1 s doubling, at most 5 min. */
int64_t vh__backoff_ms(unsigned attempts);

/*
 * What job `j` becomes after an attempt that ended at `now_ms` with `rep`:
 *   OK          -> done
 *   INTERRUPTED -> pending, due now, attempts unchanged
 *   FINAL       -> failed
 *   EXPIRED     -> expired (downloads) / failed (others)
 *   RETRY       -> downloads: pending while the URL lives, the next attempt after the
 *                  backoff but no later than its expiry less a margin; expired once past it.
 *                  Others: pending after the backoff until `max_attempts` are used, then failed.
 * Fills `*u` (path, size and sha256 are left NULL/0 for the caller).
 */
void vh__job_decide(enum vh_job_kind kind, unsigned attempts_before, int64_t deadline_ms,
                    unsigned max_attempts, const struct vh__report *rep, int64_t now_ms,
                    struct vh__job_update *u);

/*
 * The file name a recording of `session_id` gets: the session id, plus the extension of the
 * URL path's last segment when it is 1-8 alphanumerics (lowercased), e.g. "s1.wav". Returns
 * 0, or VH_ETOOBIG when `out_size` is too small.
 */
int vh__recording_name(const char *session_id, const char *url, char *out, size_t out_size);

/* ---- transfers (fetch.c) ----------------------------------------------------------------- */

struct vh__fetch_opts {
    bool allow_http;    /* http:// as well as https:// */
    bool allow_private; /* connect to loopback and private addresses */
    const char *ca_file;
    int64_t timeout_ms;      /* the whole transfer */
    uint64_t max_bytes;      /* downloads: larger is FINAL */
    const atomic_bool *stop; /* set: cut the transfer short (INTERRUPTED) */
};

/* libcurl's global state, counted: every init needs a release. Returns 0 or VH_ENOMEM. */
int vh__fetch_global_init(struct vh_error *err);
void vh__fetch_global_release(void);

/*
 * GETs `url` and writes the body of a 200 answer to `fd` (at its current offset); writes
 * nothing for any other answer. Redirects are followed (at most 5, same scheme rules; the
 * address check applies to every connection). Fills `*rep`: OK only for a complete 200 body
 * (a Content-Length that promised more is RETRY), EXPIRED never (the caller decides from the
 * status and the time), FINAL for a refused scheme or address, a malformed URL, a body over
 * max_bytes, or a 4xx other than 403, 404, 408, 425 and 429.
 */
void vh__fetch_download(const struct vh__fetch_opts *o, const char *url, int fd,
                        struct vh__report *rep);

/*
 * POSTs `body` to `url` with `headers` ("Name: value" lines, NULL-terminated). No address
 * check (the operator chose the URL), no redirects. OK for any 2xx; FINAL for a refused
 * scheme or a malformed URL; RETRY otherwise.
 */
void vh__fetch_post(const struct vh__fetch_opts *o, const char *url, const char *const *headers,
                    const void *body, size_t body_len, struct vh__report *rep);

/* ---- --exec (spawn.c) ---------------------------------------------------------------------- */

/*
 * Runs `/bin/sh -c cmd` with `body` on stdin, the environment without VOCOHOOK_SECRETS plus
 * `extra_env` ("NAME=value", NULL-terminated), stdout and stderr captured (the first bytes
 * of them end up in the error line), in its own process group. Exit 0 is OK; another exit,
 * a signal or `timeout_ms` passing (the group gets SIGTERM, then SIGKILL) is RETRY; `stop`
 * being set ends it the same way, as INTERRUPTED.
 */
void vh__spawn_run(const char *cmd, const void *body, size_t body_len, const char *const *extra_env,
                   int64_t timeout_ms, const atomic_bool *stop, struct vh__report *rep);

#endif
