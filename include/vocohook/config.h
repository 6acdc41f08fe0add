/*
 * The configuration of `vocohook serve` (and of the verbs that share its settings, such as
 * `emit`): built-in defaults, then an INI file, then VOCOHOOK_* environment variables, then
 * command-line flags, each layer overriding the one before. Every setting has one name,
 * used as the INI key; the environment variable is VOCOHOOK_<NAME> in capitals (the S3
 * credentials use AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY) and the flag --<name> with
 * '-' for '_'.
 *
 * Secrets (ingest_token, s3_access_key, s3_secret_key) are accepted from the file and the
 * environment only, never from a flag, so they never show in `ps`.
 *
 * Every error is VH_EINVAL with a message that starts with where the value came from:
 * `serve.ini:7: timeout: ...`, `VOCOHOOK_TIMEOUT: ...` or `--timeout: ...`. Reading the file
 * can also fail with VH_EIO. Nothing here logs. A `struct vh_config` belongs to one thread
 * while it is loaded; once loaded, it is read-only and may be shared.
 */
#ifndef VOCOHOOK_CONFIG_H
#define VOCOHOOK_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <vocohook/common.h>
#include <vocohook/error.h>
#include <vocohook/log.h>
#include <vocohook/policy.h>

#define VH_CONFIG_LISTEN_DEFAULT "127.0.0.1:8080"
#define VH_CONFIG_DB_DEFAULT     "sqlite:./var/vocohook.db"
#define VH_CONFIG_FILE_MAX       65536 /* bytes of an INI file */
#define VH_TOKEN_MIN             16    /* the shortest ingest token accepted */
#define VH_TOKEN_MAX             1024

enum vh_config_source {
    VH_CONFIG_FILE = 1, /* the INI file */
    VH_CONFIG_ENV = 2,  /* an environment variable */
    VH_CONFIG_FLAG = 3  /* a command-line flag: secrets are refused */
};

struct vh_config {
    char *listen;                /* owned; "127.0.0.1:8080", "[::1]:8080"; port 0: any */
    char *db;                    /* owned; "sqlite:PATH" (or a path), "postgres://..." */
    bool allow_http;             /* accept http:// endpoint URLs (development) */
    bool allow_private_networks; /* deliver to loopback/private addresses (development) */
    char *ca_file;               /* owned; NULL: the system's CA store */
    char *node_id;               /* owned; this node's lease name; NULL: from the host name */
    /* Delays of the attempts after the event is accepted; the first is 0 ("0,1s,2s,4s"). */
    int64_t retry_schedule_ms[VH_RETRY_STEPS_MAX];
    size_t retry_steps;          /* 1..VH_RETRY_STEPS_MAX */
    int64_t timeout_ms;          /* per delivery attempt */
    char *ingest_token;          /* owned; NULL: the ingest API is disabled */
    char *s3_endpoint;           /* owned; NULL unless S3 is configured */
    char *s3_region;             /* owned */
    char *s3_bucket;             /* owned */
    char *s3_access_key;         /* owned; AWS_ACCESS_KEY_ID */
    char *s3_secret_key;         /* owned; AWS_SECRET_ACCESS_KEY */
    bool s3_path_style;          /* https://endpoint/bucket/key instead of bucket.endpoint */
    unsigned threads;            /* HTTP worker threads */
    size_t body_max;             /* request body bound, bytes */
    size_t delivery_memory;      /* payload bytes the sender holds claimed at once (plus one
                                    payload; vh_sender_config.max_bytes) */
    unsigned max_connections;    /* simultaneous HTTP connections */
    unsigned conn_timeout_s;     /* an idle HTTP connection is closed after this */
    int rate_limit;              /* requests per minute per API key; -1: off */
    int rate_limit_calls;        /* the same, on /calls; -1: off */
    enum vh_log_level log_level; /* records above this level are dropped */
    bool sched_batch;            /* "sched": the delivery threads under SCHED_BATCH ("batch",
                                    the default) or the default policy ("normal") */
};

/*
 * Fills `cfg` with the defaults: listen 127.0.0.1:8080, db sqlite:./var/vocohook.db,
 * retry schedule 0,1s,2s,4s, timeout 10s, vh_config_default_threads() threads, body_max
 * 1 MiB, delivery_memory 64 MiB, 1024 connections, conn_timeout 30s, rate limits 60 and
 * 10 per minute, log level info, sched batch, everything else off or unset. Returns 0 or
 * VH_ENOMEM (then `cfg` holds nothing to release).
 */
VH_API int vh_config_init(struct vh_config *cfg, struct vh_error *err);

/* The default number of HTTP threads: two per online CPU, at least 4, at most 16. */
VH_API unsigned vh_config_default_threads(void);

/* Frees what `cfg` owns (wiping secrets first). Safe on a zeroed struct. */
VH_API void vh_config_release(struct vh_config *cfg);

/*
 * Sets the setting `key` (its INI name, e.g. "retry_schedule") from `value`, which came
 * from `source`. `where` names the source in messages ("serve.ini:7", "--timeout",
 * "VOCOHOOK_TIMEOUT"). Returns 0, VH_EINVAL (unknown key, a bad value, a secret given as a
 * flag) or VH_ENOMEM. On failure `cfg` is unchanged.
 */
VH_API int vh_config_set(struct vh_config *cfg, enum vh_config_source source, const char *key,
                         const char *value, const char *where, struct vh_error *err);

/*
 * Applies INI text: `key = value` lines at the top, in [serve], or in [s3] (where `endpoint`
 * means `s3_endpoint`, and so on). `;` and `#` start comments; a value may be wrapped in
 * double quotes. Lines may be indented; there are no continuation lines. A key set twice,
 * an unknown key or section, or a line longer than the INI reader's limit is an error.
 * `name` is used in messages (`name:line: ...`). Settings before the first error stay
 * applied: callers give up on the whole config on an error. Returns 0, VH_EINVAL or
 * VH_ENOMEM.
 */
VH_API int vh_config_load_string(struct vh_config *cfg, const char *text, size_t len,
                                 const char *name, struct vh_error *err);

/* Reads the file at `path` (at most VH_CONFIG_FILE_MAX bytes), then as load_string. */
VH_API int vh_config_load_file(struct vh_config *cfg, const char *path, struct vh_error *err);

/*
 * Applies the environment: `envp` is a NULL-terminated array of "NAME=value" (pass
 * `environ`). Unknown VOCOHOOK_* names are ignored; an empty value counts as unset.
 * Returns as vh_config_set.
 */
VH_API int vh_config_load_env(struct vh_config *cfg, const char *const *envp, struct vh_error *err);

/*
 * Checks the settings together once every layer is applied: S3 needs its endpoint,
 * region, bucket and both keys, or none of them; max_connections is at least threads.
 * Returns 0 or VH_EINVAL.
 */
VH_API int vh_config_check(const struct vh_config *cfg, struct vh_error *err);

/* A setting given on the command line: the flag's name without "--", and its value. */
struct vh_config_flag {
    const char *name;  /* "listen", "allow-http", "s3-endpoint" (borrowed) */
    const char *value; /* "true" for a flag without an argument (borrowed) */
};

/*
 * Applies every layer over the current settings (normally the defaults of
 * vh_config_init), in order: the INI file `file` (NULL: none), the environment `envp`
 * (NULL: none), then `flags` (`n` of them, in command-line order, so the last one wins),
 * and runs vh_config_check. Returns 0, VH_EINVAL (a bad setting, named with its source),
 * VH_EIO (the file cannot be read) or VH_ENOMEM.
 */
VH_API int vh_config_load(struct vh_config *cfg, const char *file, const char *const *envp,
                          const struct vh_config_flag *flags, size_t n, struct vh_error *err);

/*
 * Parses a duration: a non-negative integer and a unit, `ms`, `s`, `m` or `h` ("1500ms",
 * "10s", "5m", "2h"); "0" alone is zero. Stores milliseconds in `*out_ms`. At most 30
 * days. Returns 0 or VH_EINVAL (the message names the reason, not the source).
 */
VH_API int vh_duration_parse(const char *s, int64_t *out_ms, struct vh_error *err);

#endif
