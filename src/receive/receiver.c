/*
 * The receiver's lifecycle and its background workers.
 *
 * Each worker loops: claim a due job, a download first (the claim is committed, so two
 * workers never run one job), make one attempt, let jobs.c decide what the job becomes,
 * record that. With nothing due it sleeps until the earliest due time, or until
 * vh__receiver_wake (a request stored new jobs) or the stop moves `gen`. All job state is
 * in the inbox, so a worker holds nothing that a crash could lose: a job it was running is
 * found `running` at the next start and goes back to pending.
 *
 * Downloads go to `<dir>/.vh-<name>.part`, are fsync'ed, hashed, renamed to `<dir>/<name>`,
 * and the directory is fsync'ed before the job is marked done: the final name only ever
 * holds a complete file, and a done job's file survives a power loss.
 */
#include "receive/receive_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <vocohook/alloc.h>
#include <vocohook/clock.h>

#include "crypto/crypto_int.h"
#include "core/log_int.h"
#include "core/thread_int.h"
#include "core/banned.h"

#define IDLE_WAIT_MS  60000 /* the longest sleep with nothing due (a safety net) */
#define ERROR_WAIT_MS 1000  /* the sleep after the inbox failed */
#define WORKERS_MAX   64
#define LOG_LINE_MAX  2048
#define NAME_MAX_LEN  (VH_ID_MAX + 16)
#define ENV_MAX       5

/* ---- logs ------------------------------------------------------------------------------- */

/* Appends `n` bytes at *len if they fit before the last 2 bytes of `line` (kept for "}"). */
static bool line_add(char *line, size_t *len, const char *p, size_t n)
{
    if (n > LOG_LINE_MAX - 2 - *len)
        return false;
    memcpy(line + *len, p, n);
    *len += n;
    return true;
}

/*
 * The line without printf: every webhook logs one, on the commit thread. `fields` (JSON
 * members, each with its leading comma) is cut at the line's end, as vsnprintf cut it.
 */
void vh__receiver_log_fields(const struct vh_receiver *r, enum vh_log_level level, const char *msg,
                             const char *fields, size_t n)
{
    char line[LOG_LINE_MAX];
    size_t len;

    if (!r->cfg.log)
        return;
    len = vh__log_head(line, vh_time_now_ms(), level);
    if (!line_add(line, &len, ",\"msg\":\"", 8) || !line_add(line, &len, msg, strlen(msg)) ||
        !line_add(line, &len, "\"", 1))
        return;
    if (!line_add(line, &len, fields, n))
        line_add(line, &len, fields, LOG_LINE_MAX - 2 - len);
    line[len] = '}';
    line[len + 1] = '\0';
    r->cfg.log(r->cfg.log_ud, level, line);
}

void vh__receiver_log(const struct vh_receiver *r, enum vh_log_level level, const char *msg,
                      const char *fmt, ...)
{
    char fields[LOG_LINE_MAX];
    va_list ap;
    int m;

    if (!r->cfg.log)
        return;
    va_start(ap, fmt);
    m = vsnprintf(fields, sizeof(fields), fmt, ap);
    va_end(ap);
    if (m < 0)
        return;
    vh__receiver_log_fields(r, level, msg, fields,
                            (size_t)m < sizeof(fields) ? (size_t)m : sizeof(fields) - 1);
}

/* ---- configuration ------------------------------------------------------------------------ */

void vh_receiver_config_init(struct vh_receiver_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->tolerance_ms = VH_RECEIVER_TOLERANCE_DEFAULT;
    cfg->recording_max = VH_RECORDING_MAX_DEFAULT;
    cfg->workers = VH_RECEIVER_WORKERS_DEFAULT;
    cfg->download_timeout_ms = VH_DOWNLOAD_TIMEOUT_DEFAULT_MS;
    cfg->action_timeout_ms = VH_ACTION_TIMEOUT_DEFAULT_MS;
    cfg->action_attempts = VH_ACTION_ATTEMPTS_DEFAULT;
}

static int check_config(const struct vh_receiver_config *cfg, struct vh_error *err)
{
    size_t i;

    if (!cfg->db_path || !*cfg->db_path)
        return vh_error_set(err, VH_EINVAL, "receiver: no inbox path");
    if (cfg->n_secrets == 0 || !cfg->secrets)
        return vh_error_set(err, VH_EINVAL, "receiver: at least one secret is needed");
    if (cfg->n_secrets > VH_RECEIVER_SECRETS_MAX)
        return vh_error_set(err, VH_EINVAL, "receiver: at most %d secrets",
                            VH_RECEIVER_SECRETS_MAX);
    for (i = 0; i < cfg->n_secrets; i++)
        if (!cfg->secrets[i] || !*cfg->secrets[i] || strlen(cfg->secrets[i]) > VH_SECRET_MAX)
            return vh_error_set(err, VH_EINVAL,
                                "receiver: secret %zu is empty or longer than %d "
                                "bytes",
                                i + 1, VH_SECRET_MAX);
    if (cfg->workers < 1 || cfg->workers > WORKERS_MAX)
        return vh_error_set(err, VH_EINVAL, "receiver: workers must be 1 to %d", WORKERS_MAX);
    if (cfg->recording_max < 1)
        return vh_error_set(err, VH_EINVAL, "receiver: recording_max must be at least 1 byte");
    if (cfg->download_timeout_ms < 1 || cfg->action_timeout_ms < 1)
        return vh_error_set(err, VH_EINVAL, "receiver: timeouts must be positive");
    if (cfg->action_attempts < 1)
        return vh_error_set(err, VH_EINVAL, "receiver: action_attempts must be at least 1");
    if (cfg->exec_cmd && !*cfg->exec_cmd)
        return vh_error_set(err, VH_EINVAL, "receiver: empty exec command");
    if (cfg->forward_url && strncmp(cfg->forward_url, "http://", 7) != 0 &&
        strncmp(cfg->forward_url, "https://", 8) != 0)
        return vh_error_set(err, VH_EINVAL, "receiver: forward URL '%.200s' is not http(s)://",
                            cfg->forward_url);
    return 0;
}

/* A copy of `s` in `*dst` (NULL stays NULL). Returns 0 or VH_ENOMEM. */
static int copy_str(const char *s, const char **dst)
{
    char *c;

    *dst = NULL;
    if (!s)
        return 0;
    c = vh_strndup(s, strlen(s));
    if (!c)
        return VH_ENOMEM;
    *dst = c;
    return 0;
}

static void wipe_free(char *p)
{
    volatile char *v = p;

    while (p && *v)
        *v++ = '\0';
    vh_free(p);
}

static void free_strings(struct vh_receiver *r)
{
    size_t i;

    for (i = 0; r->secrets && i < r->cfg.n_secrets; i++)
        wipe_free(r->secrets[i]);
    vh_free(r->secrets);
    /* The config's strings are our copies (copy_config). */
    vh_free((void *)(uintptr_t)r->cfg.db_path);
    vh_free((void *)(uintptr_t)r->cfg.recordings_dir);
    vh_free((void *)(uintptr_t)r->cfg.exec_cmd);
    vh_free((void *)(uintptr_t)r->cfg.forward_url);
    vh_free((void *)(uintptr_t)r->cfg.ca_file);
}

static int copy_config(struct vh_receiver *r, const struct vh_receiver_config *cfg,
                       struct vh_error *err)
{
    size_t i;
    int rc = 0;

    r->cfg = *cfg;
    r->cfg.secrets = NULL;
    rc |= copy_str(cfg->db_path, &r->cfg.db_path);
    rc |= copy_str(cfg->recordings_dir, &r->cfg.recordings_dir);
    rc |= copy_str(cfg->exec_cmd, &r->cfg.exec_cmd);
    rc |= copy_str(cfg->forward_url, &r->cfg.forward_url);
    rc |= copy_str(cfg->ca_file, &r->cfg.ca_file);
    r->secrets = vh_malloc(cfg->n_secrets * sizeof(*r->secrets));
    if (r->secrets) {
        memset(r->secrets, 0, cfg->n_secrets * sizeof(*r->secrets));
        for (i = 0; i < cfg->n_secrets; i++) {
            r->secrets[i] = vh_strndup(cfg->secrets[i], strlen(cfg->secrets[i]));
            if (!r->secrets[i])
                rc = VH_ENOMEM;
        }
    }
    if (rc || !r->secrets)
        return vh_error_set(err, VH_ENOMEM, "receiver: out of memory");
    return 0;
}

/* ---- recovery ---------------------------------------------------------------------------- */

static bool is_temp_name(const char *name)
{
    size_t n = strlen(name), p = strlen(VH__TEMP_PREFIX), s = strlen(VH__TEMP_SUFFIX);

    return n > p + s && strncmp(name, VH__TEMP_PREFIX, p) == 0 &&
           strcmp(name + n - s, VH__TEMP_SUFFIX) == 0;
}

/*
 * The CA file must be a file we can read: libcurl reads it at each transfer, and refuses a
 * directory (which access() and open() pass) as it refuses a missing file.
 */
static int check_ca_file(const char *path, struct vh_error *err)
{
    struct stat sb;

    if (access(path, R_OK) != 0 || stat(path, &sb) != 0)
        return vh_error_set(err, VH_EIO, "ca_file '%s': %s", path, strerror(errno));
    if (!S_ISREG(sb.st_mode))
        return vh_error_set(err, VH_EIO, "ca_file '%s': not a file", path);
    return 0;
}

/* Checks the recordings directory and removes the temporary files a crash left in it. */
static int clean_recordings(struct vh_receiver *r, struct vh_error *err)
{
    const char *dir = r->cfg.recordings_dir;
    struct dirent *de;
    char path[VH_INBOX_PATH_MAX];
    unsigned removed = 0;
    struct stat sb;
    DIR *d;
    int n;

    if (stat(dir, &sb) != 0)
        return vh_error_set(err, VH_EIO, "recordings directory '%s': %s", dir, strerror(errno));
    if (!S_ISDIR(sb.st_mode))
        return vh_error_set(err, VH_EIO, "recordings directory '%s': not a directory", dir);
    if (access(dir, W_OK | X_OK) != 0)
        return vh_error_set(err, VH_EIO, "recordings directory '%s': %s", dir, strerror(errno));
    d = opendir(dir);
    if (!d)
        return vh_error_set(err, VH_EIO, "recordings directory '%s': %s", dir, strerror(errno));
    for (;;) {
        errno = 0;
        de = readdir(d);
        if (!de)
            break;
        if (!is_temp_name(de->d_name))
            continue;
        n = snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        if (n > 0 && (size_t)n < sizeof(path) && unlink(path) == 0)
            removed++;
    }
    closedir(d);
    if (removed)
        vh__receiver_log(r, VH_LOG_INFO, "removed temporary files", ",\"count\":%u", removed);
    return 0;
}

static int recover_jobs(struct vh_receiver *r, struct vh_error *err)
{
    int64_t n = 0;
    int rc;

    rc = vh__inbox_recover(r->ib, vh_time_now_ms(), &n, err);
    if (rc < 0)
        return rc;
    if (n)
        vh__receiver_log(r, VH_LOG_INFO, "resumed jobs", ",\"count\":%lld", (long long)n);
    return 0;
}

static int sync_init(struct vh_receiver *r)
{
    pthread_condattr_t attr;
    int rc;

    if (pthread_condattr_init(&attr) != 0)
        return -1;
    /* Sleeps are measured on the monotonic clock: a wall-clock jump must not stall them. */
    rc = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC) == 0 &&
                 pthread_cond_init(&r->cv, &attr) == 0
             ? 0
             : -1;
    pthread_condattr_destroy(&attr);
    if (rc == 0 && pthread_mutex_init(&r->mu, NULL) != 0) {
        pthread_cond_destroy(&r->cv);
        rc = -1;
    }
    return rc;
}

int vh_receiver_new(const struct vh_receiver_config *cfg, struct vh_receiver **out,
                    struct vh_error *err)
{
    struct vh_receiver *r;
    int rc;

    if (!cfg || !out)
        return vh_error_set(err, VH_EINVAL, "receiver: missing argument");
    rc = check_config(cfg, err);
    if (rc < 0)
        return rc;
    r = vh_malloc(sizeof(*r));
    if (!r)
        return vh_error_set(err, VH_ENOMEM, "receiver: out of memory");
    memset(r, 0, sizeof(*r));
    atomic_init(&r->stopping, false);
    if (sync_init(r) < 0) {
        vh_free(r);
        return vh_error_set(err, VH_ENOMEM, "receiver: out of memory");
    }
    rc = copy_config(r, cfg, err);
    if (rc < 0)
        goto fail;
    rc = vh__fetch_global_init(err);
    if (rc < 0)
        goto fail;
    /*
     * Checked now, as the recordings directory is: libcurl reads the file at each transfer,
     * and an unreadable one would fail every HTTPS download (until its link expired) and
     * every forward, with the receiver seemingly fine.
     */
    if (r->cfg.ca_file) {
        rc = check_ca_file(r->cfg.ca_file, err);
        if (rc < 0) {
            vh__fetch_global_release();
            goto fail;
        }
    }
    rc = vh_inbox_open(r->cfg.db_path, VH_INBOX_CREATE, &r->ib, err);
    if (rc >= 0)
        vh__inbox_set_kinds(r->ib, (r->cfg.recordings_dir ? 1u << VH_JOB_DOWNLOAD : 0) |
                                       (r->cfg.exec_cmd ? 1u << VH_JOB_EXEC : 0) |
                                       (r->cfg.forward_url ? 1u << VH_JOB_FORWARD : 0));
    if (rc >= 0 && r->cfg.recordings_dir)
        rc = clean_recordings(r, err);
    if (rc >= 0)
        rc = recover_jobs(r, err);
    if (rc < 0) {
        vh__fetch_global_release();
        goto fail;
    }
    *out = r;
    return 0;
fail:
    vh_inbox_close(r->ib);
    free_strings(r);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
    vh_free(r);
    return rc;
}

void vh__receiver_wake(struct vh_receiver *r)
{
    pthread_mutex_lock(&r->mu);
    r->gen++;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

/* ---- attempts ------------------------------------------------------------------------------ */

static void fetch_opts(struct vh_receiver *r, int64_t timeout_ms, struct vh__fetch_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->allow_http = r->cfg.allow_http;
    o->allow_private = r->cfg.allow_private_networks;
    o->ca_file = r->cfg.ca_file;
    o->timeout_ms = timeout_ms;
    o->max_bytes = r->cfg.recording_max;
    o->stop = &r->stopping;
}

/* The SHA-256 of the file open at `fd`, `size` bytes. Returns 0 or a negative vh_err. */
static int hash_file(int fd, uint64_t size, char out[VH_SHA256_HEX_LEN + 1], struct vh_error *err)
{
    unsigned char mac[VH_SHA256_LEN];
    void *map = NULL;
    int rc;

    if (size > SIZE_MAX)
        return vh_error_set(err, VH_ETOOBIG, "recording too large to hash");
    if (size > 0) {
        map = mmap(NULL, (size_t)size, PROT_READ, MAP_SHARED, fd, 0);
        if (map == MAP_FAILED)
            return vh_error_set(err, VH_EIO, "mapping the recording: %s", strerror(errno));
    }
    rc = vh__sha256(map ? map : "", (size_t)size, mac, err);
    if (map)
        munmap(map, (size_t)size);
    if (rc < 0)
        return rc;
    vh__hex_encode(mac, sizeof(mac), out);
    return 0;
}

/* fsync of the directory, so a rename in it survives a power loss. */
static int sync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc;

    if (fd < 0)
        return -1;
    rc = fsync(fd);
    close(fd);
    return rc;
}

/* The steps after a complete transfer: sync, hash, rename, sync the directory. */
static void finish_file(struct vh_receiver *r, int fd, const char *tmp, const char *final,
                        struct vh__report *rep, char sha[VH_SHA256_HEX_LEN + 1])
{
    struct vh_error err = VH_ERROR_INIT;

    if (fsync(fd) != 0) {
        rep->outcome = VH__OUTCOME_RETRY;
        snprintf(rep->error, sizeof(rep->error), "fsync of the recording: %s", strerror(errno));
        return;
    }
    if (hash_file(fd, rep->bytes, sha, &err) < 0) {
        rep->outcome = VH__OUTCOME_RETRY;
        snprintf(rep->error, sizeof(rep->error), "%s", err.msg);
        return;
    }
    if (rename(tmp, final) != 0 || sync_dir(r->cfg.recordings_dir) != 0) {
        rep->outcome = VH__OUTCOME_RETRY;
        snprintf(rep->error, sizeof(rep->error), "storing the recording as '%.160s': %s", final,
                 strerror(errno));
    }
}

static void run_download(struct vh_receiver *r, const struct vh__job *j, struct vh__job_update *u,
                         char final[VH_INBOX_PATH_MAX], char sha[VH_SHA256_HEX_LEN + 1])
{
    char name[NAME_MAX_LEN], tmp[VH_INBOX_PATH_MAX];
    struct vh__fetch_opts o;
    struct vh__report rep;
    int fd;

    memset(&rep, 0, sizeof(rep));
    rep.outcome = VH__OUTCOME_RETRY;
    final[0] = '\0';
    if (!j->recording_url) {
        rep.outcome = VH__OUTCOME_FINAL;
        snprintf(rep.error, sizeof(rep.error), "no recording_url");
    } else if (vh__recording_name(j->session_id, j->recording_url, name, sizeof(name)) < 0 ||
               snprintf(final, VH_INBOX_PATH_MAX, "%s/%s", r->cfg.recordings_dir, name) >=
                   VH_INBOX_PATH_MAX ||
               snprintf(tmp, sizeof(tmp), "%s/" VH__TEMP_PREFIX "%s" VH__TEMP_SUFFIX,
                        r->cfg.recordings_dir, name) >= (int)sizeof(tmp)) {
        rep.outcome = VH__OUTCOME_FINAL;
        snprintf(rep.error, sizeof(rep.error), "recordings path too long");
    } else {
        /*
         * 0600: a recording is a call; the integrator widens access on purpose if needed.
         * O_NOFOLLOW: a link planted under the temporary name (by anyone who can write to
         * the directory) is not followed to truncate and fill the file it names.
         */
        fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0) {
            snprintf(rep.error, sizeof(rep.error), "creating '%.160s': %s", tmp, strerror(errno));
        } else {
            fetch_opts(r, r->cfg.download_timeout_ms, &o);
            vh__fetch_download(&o, j->recording_url, fd, &rep);
            if (rep.outcome == VH__OUTCOME_OK)
                finish_file(r, fd, tmp, final, &rep, sha);
            close(fd);
            if (rep.outcome != VH__OUTCOME_OK)
                unlink(tmp);
        }
    }
    vh__job_decide(VH_JOB_DOWNLOAD, j->attempts, j->deadline_ms, 1, &rep, vh_time_now_ms(), u);
    if (u->state == VH_JOB_DONE) {
        u->path = final;
        u->size = rep.bytes;
        u->sha256 = sha;
    }
}

static void run_exec(struct vh_receiver *r, const struct vh__job *j, struct vh__job_update *u)
{
    char vars[ENV_MAX][VH_ID_MAX + 48];
    const char *env[ENV_MAX + 1];
    struct vh__report rep;
    size_t n = 0;

    snprintf(vars[n], sizeof(vars[n]), "VOCOHOOK_SESSION_ID=%s", j->session_id);
    env[n] = vars[n];
    n++;
    snprintf(vars[n], sizeof(vars[n]), "VOCOHOOK_SIGNED_AT=%s", j->signed_at);
    env[n] = vars[n];
    n++;
    snprintf(vars[n], sizeof(vars[n]), "VOCOHOOK_ATTEMPT=%u", j->attempts + 1);
    env[n] = vars[n];
    n++;
    if (j->webhook_id[0]) {
        snprintf(vars[n], sizeof(vars[n]), "VOCOHOOK_WEBHOOK_ID=%s", j->webhook_id);
        env[n] = vars[n];
        n++;
    }
    env[n] = NULL;
    vh__spawn_run(r->cfg.exec_cmd, j->body.data, j->body.len, env, r->cfg.action_timeout_ms,
                  &r->stopping, &rep);
    vh__job_decide(VH_JOB_EXEC, j->attempts, j->deadline_ms, r->cfg.action_attempts, &rep,
                   vh_time_now_ms(), u);
}

static void run_forward(struct vh_receiver *r, const struct vh__job *j, struct vh__job_update *u)
{
    char lines[6][VH_ID_MAX + 64];
    const char *headers[7];
    struct vh__fetch_opts o;
    struct vh__report rep;
    size_t n = 0, i;

    /*
     * The original signature headers go along unchanged: the application behind can verify
     * the payload with the same secret (its timestamp is the original one, so a window check
     * there must allow for the retries here).
     */
    snprintf(lines[n++], sizeof(lines[0]), "Content-Type: application/json");
    snprintf(lines[n++], sizeof(lines[0]), "X-Webhook-Timestamp: %s", j->signed_at);
    snprintf(lines[n++], sizeof(lines[0]), "X-Webhook-Signature: %s", j->signature);
    snprintf(lines[n++], sizeof(lines[0]), "X-Vocohook-Session-Id: %s", j->session_id);
    snprintf(lines[n++], sizeof(lines[0]), "Expect:");
    if (j->webhook_id[0])
        snprintf(lines[n++], sizeof(lines[0]), "X-Webhook-Id: %s", j->webhook_id);
    for (i = 0; i < n; i++)
        headers[i] = lines[i];
    headers[n] = NULL;
    fetch_opts(r, r->cfg.action_timeout_ms, &o);
    vh__fetch_post(&o, r->cfg.forward_url, headers, j->body.data, j->body.len, &rep);
    vh__job_decide(VH_JOB_FORWARD, j->attempts, j->deadline_ms, r->cfg.action_attempts, &rep,
                   vh_time_now_ms(), u);
}

static void log_attempt(struct vh_receiver *r, const struct vh__job *j,
                        const struct vh__job_update *u)
{
    enum vh_log_level level = VH_LOG_INFO;
    char error[VH_JOB_ERROR_MAX * 6], next[VH_TIME_LEN + 1] = "";

    if (u->state == VH_JOB_PENDING && u->attempts > j->attempts)
        level = VH_LOG_WARN;
    else if (u->state == VH_JOB_FAILED || u->state == VH_JOB_EXPIRED)
        level = VH_LOG_ERROR;
    vh__json_escape(u->error, sizeof(u->error), error, sizeof(error));
    if (u->state == VH_JOB_PENDING && vh_time_format(u->next_attempt_ms, next) < 0)
        next[0] = '\0';
    vh__receiver_log(r, level, "job",
                     ",\"session_id\":\"%s\",\"kind\":\"%s\",\"attempt\":%u,\"state\":\"%s\","
                     "\"status\":%d,\"error\":\"%s\",\"next_attempt\":\"%s\"%s%s%s",
                     j->session_id, vh_job_kind_name(j->kind), j->attempts + 1,
                     vh_job_state_name(u->state), u->status, error, next,
                     u->sha256 ? ",\"sha256\":\"" : "", u->sha256 ? u->sha256 : "",
                     u->sha256 ? "\"" : "");
}

/* The monotonic clock `ms` from now. */
static struct timespec deadline_in(int64_t ms)
{
    struct timespec t;
    int64_t ns;

    clock_gettime(CLOCK_MONOTONIC, &t);
    ns = (int64_t)t.tv_nsec + (ms % 1000) * 1000000;
    t.tv_sec += (time_t)(ms / 1000 + ns / 1000000000);
    t.tv_nsec = (long)(ns % 1000000000);
    return t;
}

/* Sleeps up to `ms`, or until `gen` moves on or the receiver stops. */
static void sleep_until(struct vh_receiver *r, uint64_t gen, int64_t ms)
{
    struct timespec deadline = deadline_in(ms);

    pthread_mutex_lock(&r->mu);
    while (r->gen == gen && !atomic_load(&r->stopping))
        if (pthread_cond_timedwait(&r->cv, &r->mu, &deadline) != 0)
            break;
    pthread_mutex_unlock(&r->mu);
}

/* Sleeps `ms`, or until the receiver stops (new webhooks do not cut it short). */
static void pause_ms(struct vh_receiver *r, int64_t ms)
{
    struct timespec deadline = deadline_in(ms);

    pthread_mutex_lock(&r->mu);
    while (!atomic_load(&r->stopping))
        if (pthread_cond_timedwait(&r->cv, &r->mu, &deadline) != 0)
            break;
    pthread_mutex_unlock(&r->mu);
}

/* One attempt of a claimed job, and its record. */
static void run_job(struct vh_receiver *r, const struct vh__job *j)
{
    struct vh_error err = VH_ERROR_INIT;
    char final[VH_INBOX_PATH_MAX], sha[VH_SHA256_HEX_LEN + 1];
    char msg[VH_ERROR_MSG_MAX * 6];
    struct vh__job_update u;
    int rc;

    switch (j->kind) {
    case VH_JOB_DOWNLOAD:
        run_download(r, j, &u, final, sha);
        break;
    case VH_JOB_EXEC:
        run_exec(r, j, &u);
        break;
    case VH_JOB_FORWARD:
    default:
        run_forward(r, j, &u);
        break;
    }
    log_attempt(r, j, &u);
    /*
     * The attempt is made: record it until that works. A job left `running` is claimed by
     * no worker until the next start, so a failed record (the write lock held past the
     * busy timeout by another process, a full disk, a batch rolled back by another write's
     * I/O error) would stall it, and a recording's link could expire meanwhile. A stop
     * leaves it `running`, and the next start puts it back to pending.
     */
    for (;;) {
        vh_error_clear(&err);
        rc = vh__inbox_finish(r->ib, j->sid, j->session_id, j->kind, &u, vh_time_now_ms(), &err);
        if (rc == 0 || rc == VH_ESTATE) /* VH_ESTATE: not running any more, nothing to record */
            break;
        vh__json_escape(err.msg, sizeof(err.msg), msg, sizeof(msg));
        vh__receiver_log(r, VH_LOG_ERROR, "recording a job failed", ",\"error\":\"%s\"", msg);
        if (atomic_load(&r->stopping))
            break;
        pause_ms(r, ERROR_WAIT_MS);
        if (atomic_load(&r->stopping))
            break;
    }
}

/* ---- workers ------------------------------------------------------------------------------ */

static void *worker_main(void *arg)
{
    struct vh_receiver *r = arg;
    struct vh_error err = VH_ERROR_INIT;
    char msg[VH_ERROR_MSG_MAX * 6];
    struct vh__job job;
    int64_t now, due = 0, wait;
    uint64_t gen;
    int rc;

    vh__thread_name("vh-jobs");
    while (!atomic_load(&r->stopping)) {
        pthread_mutex_lock(&r->mu);
        gen = r->gen;
        pthread_mutex_unlock(&r->mu);
        vh_error_clear(&err);
        now = vh_time_now_ms();
        rc = vh__inbox_claim(r->ib, now, &job, &err);
        if (rc > 0)
            run_job(r, &job);
        vh__job_release(&job);
        if (rc > 0)
            continue;
        wait = IDLE_WAIT_MS;
        if (rc == 0)
            rc = vh__inbox_next_due(r->ib, &due, &err);
        if (rc > 0 && due - now < wait)
            wait = due - now > 0 ? due - now : 1;
        if (rc < 0) {
            vh__json_escape(err.msg, sizeof(err.msg), msg, sizeof(msg));
            vh__receiver_log(r, VH_LOG_ERROR, "inbox failed", ",\"error\":\"%s\"", msg);
            wait = ERROR_WAIT_MS;
        }
        sleep_until(r, gen, wait);
    }
    return NULL;
}

static void stop_workers(struct vh_receiver *r)
{
    unsigned i;

    atomic_store(&r->stopping, true);
    vh__receiver_wake(r);
    for (i = 0; i < r->n_threads; i++)
        pthread_join(r->threads[i], NULL);
    vh_free(r->threads);
    r->threads = NULL;
    r->n_threads = 0;
}

int vh_receiver_start(struct vh_receiver *r, struct vh_error *err)
{
    unsigned i;
    int rc = 0;

    if (r->threads)
        return vh_error_set(err, VH_ESTATE, "receiver: already started");
    r->threads = vh_malloc(r->cfg.workers * sizeof(*r->threads));
    if (!r->threads)
        return vh_error_set(err, VH_ENOMEM, "receiver: out of memory");
    /* Workers take no process signals: those are the application's to handle. */
    for (i = 0; i < r->cfg.workers; i++) {
        if (vh__thread_start(&r->threads[i], worker_main, r) < 0) {
            rc = vh_error_set(err, VH_EIO, "receiver: cannot start worker %u", i + 1);
            break;
        }
        r->n_threads++;
    }
    if (rc < 0) {
        stop_workers(r);
        atomic_store(&r->stopping, false);
        return rc;
    }
    vh__receiver_log(r, VH_LOG_INFO, "workers started",
                     ",\"workers\":%u,\"recordings\":%s,\"exec\":%s,\"forward\":%s", r->n_threads,
                     r->cfg.recordings_dir ? "true" : "false", r->cfg.exec_cmd ? "true" : "false",
                     r->cfg.forward_url ? "true" : "false");
    return 0;
}

void vh_receiver_free(struct vh_receiver *r)
{
    if (!r)
        return;
    stop_workers(r);
    vh_inbox_close(r->ib);
    vh__fetch_global_release();
    free_strings(r);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
    vh_free(r);
}
