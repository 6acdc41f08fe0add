/*
 * --exec: one child process per attempt, `/bin/sh -c CMD`, with the payload on stdin.
 *
 * posix_spawn, not fork: the receiver is multithreaded. The payload goes through an
 * unlinked temporary file rather than a pipe, so a command that never reads its stdin cannot
 * block us, and no SIGPIPE can reach the process. The child gets a clean signal state (the
 * CLI blocks SIGTERM/SIGINT and ignores SIGPIPE; a child must not inherit either) and its own
 * process group, so a timeout ends the whole pipeline the command may have started.
 *
 * Its output (stdout and stderr) goes to a socket pair we read while it runs: the first
 * OUTPUT_SHOWN bytes are kept for the error line (the daemon's stderr is a JSON log), the
 * rest is read and dropped. (Until session 18 it went to a temporary file, which a command
 * printing without end grew until its timeout, on the disk the inbox shares.) A socket pair,
 * not a pipe: POSIX.1-2008 has no pipe2, and a pipe marked close-on-exec only after it was
 * made could reach another worker's command in between. Nothing reads the output once the
 * command has exited: a process it left behind that still writes there gets SIGPIPE (or
 * EPIPE), as docs/receiving.md says.
 */
#include "receive/receive_int.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <vocohook/alloc.h>
#include <vocohook/clock.h>
#include <vocohook/id.h>

#include "core/banned.h"

#define POLL_MS       20
#define TERM_GRACE_MS 2000 /* SIGTERM, then this long, then SIGKILL */
#define OUTPUT_SHOWN  160  /* bytes of the command's output kept in the error line */
#define OUTPUT_READS  64   /* reads of 4 KiB per wake-up at most, then the clock is checked */
#define SECRETS_VAR   "VOCOHOOK_SECRETS="

extern char **environ;

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/*
 * An unlinked temporary file, close-on-exec from the start: the workers spawn commands
 * concurrently, so a descriptor marked only after it was made (mkstemp, then fcntl) could
 * reach another worker's command in between. mkostemp is not POSIX.1-2008, hence a random
 * name opened with O_EXCL. Returns the fd or -1 (errno set).
 */
static int temp_file(void)
{
    const char *dir = getenv("TMPDIR");
    char path[512], id[VH_UUID_LEN + 1];
    int fd, n, tries;

    if (!dir || !*dir)
        dir = "/tmp";
    for (tries = 0; tries < 8; tries++) {
        if (vh_uuid_new(id, NULL) < 0) {
            errno = EIO;
            return -1;
        }
        n = snprintf(path, sizeof(path), "%s/vocohook-exec-%s", dir, id);
        if (n < 0 || (size_t)n >= sizeof(path)) {
            errno = ENAMETOOLONG;
            return -1;
        }
        fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd >= 0) {
            unlink(path);
            return fd;
        }
        if (errno != EEXIST)
            return -1;
    }
    return -1;
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);

        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Whether environment entry `e` sets the variable that `var` ("NAME=value") names. */
static bool same_name(const char *e, const char *var)
{
    const char *eq = strchr(var, '=');
    size_t n = eq ? (size_t)(eq - var) + 1 : strlen(var);

    return strncmp(e, var, n) == 0;
}

/*
 * The child's environment: ours, without VOCOHOOK_SECRETS and without the names `extra`
 * sets, then `extra`. The array is new (vh_free it); its strings are borrowed.
 */
static char **child_env(char *const *extra)
{
    size_t n = 0, i, k, o = 0;
    char **env;
    bool skip;

    while (environ && environ[n])
        n++;
    for (k = 0; extra[k]; k++)
        n++;
    env = vh_malloc((n + 1) * sizeof(*env));
    if (!env)
        return NULL;
    for (i = 0; environ && environ[i]; i++) {
        skip = strncmp(environ[i], SECRETS_VAR, strlen(SECRETS_VAR)) == 0;
        for (k = 0; !skip && extra[k]; k++)
            skip = same_name(environ[i], extra[k]);
        if (!skip)
            env[o++] = environ[i];
    }
    for (k = 0; extra[k]; k++)
        env[o++] = extra[k];
    env[o] = NULL;
    return env;
}

/* Ends the child's process group: SIGTERM, a grace period, SIGKILL. Reaps the child. */
static void end_group(pid_t pid, int *status)
{
    int64_t until = vh_time_mono_ms() + TERM_GRACE_MS;

    kill(-pid, SIGTERM);
    while (vh_time_mono_ms() < until) {
        if (waitpid(pid, status, WNOHANG) == pid) {
            kill(-pid, SIGKILL); /* whatever the shell left behind */
            return;
        }
        sleep_ms(POLL_MS);
    }
    kill(-pid, SIGKILL);
    while (waitpid(pid, status, 0) < 0 && errno == EINTR)
        ;
}

/* The command's output as it is read: its first bytes kept, the rest dropped. */
struct output {
    int fd; /* our end of the socket pair, non-blocking; -1 once the output has ended */
    size_t len;
    char head[OUTPUT_SHOWN];
};

/* Reads what has arrived (up to OUTPUT_READS reads); closes the end once the output ends. */
static void output_read(struct output *o)
{
    char buf[4096];
    size_t keep;
    ssize_t n;
    int i;

    for (i = 0; o->fd >= 0 && i < OUTPUT_READS; i++) {
        n = read(o->fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN) /* EWOULDBLOCK is EAGAIN on Linux */
            return;
        if (n <= 0) {
            /* every writer has closed it (or an error): nothing more will come */
            close(o->fd);
            o->fd = -1;
            return;
        }
        keep = sizeof(o->head) - o->len;
        if (keep > (size_t)n)
            keep = (size_t)n;
        memcpy(o->head + o->len, buf, keep);
        o->len += keep;
    }
}

/* Waits up to `ms` for output, reading what comes; a plain sleep once it has ended. */
static void output_wait(struct output *o, long ms)
{
    struct pollfd p;

    if (o->fd < 0) {
        sleep_ms(ms);
        return;
    }
    p.fd = o->fd;
    p.events = POLLIN;
    p.revents = 0;
    if (poll(&p, 1, (int)ms) > 0)
        output_read(o);
}

/* The first bytes of the command's output, on one line, after `prefix`. */
static void describe(const struct output *o, struct vh__report *rep, const char *prefix)
{
    char buf[OUTPUT_SHOWN + 1];
    size_t i, len = o->len;

    memcpy(buf, o->head, len);
    while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == ' ' || buf[len - 1] == '\r'))
        len--;
    for (i = 0; i < len; i++)
        if ((unsigned char)buf[i] < 0x20)
            buf[i] = ' ';
    buf[len] = '\0';
    snprintf(rep->error, sizeof(rep->error), "%s%s%s", prefix, len ? ": " : "", buf);
}

/*
 * A socket pair for the command's output, both ends close-on-exec from the start where the
 * system allows it; ours non-blocking. Returns 0 or -1 (errno set).
 */
static int output_pair(int sv[2])
{
    int type = SOCK_STREAM, fl;

#ifdef SOCK_CLOEXEC
    type |= SOCK_CLOEXEC;
#endif
    if (socketpair(AF_UNIX, type, 0, sv) != 0)
        return -1;
#ifndef SOCK_CLOEXEC
    fcntl(sv[0], F_SETFD, FD_CLOEXEC);
    fcntl(sv[1], F_SETFD, FD_CLOEXEC);
#endif
    fl = fcntl(sv[0], F_GETFL);
    if (fl < 0 || fcntl(sv[0], F_SETFL, fl | O_NONBLOCK) != 0 || shutdown(sv[0], SHUT_WR) != 0) {
        int e = errno;

        close(sv[0]);
        close(sv[1]);
        errno = e;
        return -1;
    }
    return 0;
}

static int spawn_child(const char *cmd, int in_fd, int out_fd, char **env, pid_t *pid)
{
    char sh[] = "sh", dash_c[] = "-c";
    char *argv[4] = {sh, dash_c, NULL, NULL};
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    sigset_t none, defaults;
    int rc;

    argv[2] = vh_strndup(cmd, strlen(cmd));
    if (!argv[2])
        return ENOMEM;
    sigemptyset(&none);
    sigemptyset(&defaults);
    sigaddset(&defaults, SIGPIPE);
    sigaddset(&defaults, SIGTERM);
    sigaddset(&defaults, SIGINT);
    sigaddset(&defaults, SIGHUP);
    sigaddset(&defaults, SIGCHLD);
    rc = posix_spawn_file_actions_init(&fa);
    if (rc) {
        vh_free(argv[2]);
        return rc;
    }
    rc = posix_spawnattr_init(&attr);
    if (rc == 0) {
        rc = posix_spawn_file_actions_adddup2(&fa, in_fd, STDIN_FILENO);
        if (!rc)
            rc = posix_spawn_file_actions_adddup2(&fa, out_fd, STDOUT_FILENO);
        if (!rc)
            rc = posix_spawn_file_actions_adddup2(&fa, out_fd, STDERR_FILENO);
        if (!rc)
            rc = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                                     POSIX_SPAWN_SETSIGDEF);
        if (!rc)
            rc = posix_spawnattr_setpgroup(&attr, 0);
        if (!rc)
            rc = posix_spawnattr_setsigmask(&attr, &none);
        if (!rc)
            rc = posix_spawnattr_setsigdefault(&attr, &defaults);
        if (!rc)
            rc = posix_spawn(pid, "/bin/sh", &fa, &attr, argv, env);
        posix_spawnattr_destroy(&attr);
    }
    posix_spawn_file_actions_destroy(&fa);
    vh_free(argv[2]);
    return rc;
}

/* Waits for the child, reading its output; ends it on timeout or stop. */
static void wait_child(pid_t pid, int64_t timeout_ms, const atomic_bool *stop, struct output *out,
                       struct vh__report *rep)
{
    int64_t deadline = vh_time_mono_ms() + timeout_ms;
    int status = 0;
    pid_t got;

    for (;;) {
        got = waitpid(pid, &status, WNOHANG);
        if (got == pid)
            break;
        if (got < 0 && errno != EINTR) {
            /* Someone else reaped it (SIGCHLD ignored by the application): no verdict. */
            rep->outcome = VH__OUTCOME_RETRY;
            snprintf(rep->error, sizeof(rep->error), "waiting for the command: %s",
                     strerror(errno));
            return;
        }
        if (stop && atomic_load(stop)) {
            end_group(pid, &status);
            rep->outcome = VH__OUTCOME_INTERRUPTED;
            snprintf(rep->error, sizeof(rep->error), "interrupted by shutdown");
            return;
        }
        if (vh_time_mono_ms() >= deadline) {
            end_group(pid, &status);
            rep->outcome = VH__OUTCOME_RETRY;
            snprintf(rep->error, sizeof(rep->error), "timed out after %lld ms",
                     (long long)timeout_ms);
            return;
        }
        output_wait(out, POLL_MS);
    }
    /* What it wrote before it exited; anything it left running is not waited for. */
    output_read(out);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        rep->outcome = VH__OUTCOME_OK;
        return;
    }
    rep->outcome = VH__OUTCOME_RETRY;
    if (WIFEXITED(status)) {
        char what[48];

        rep->status = WEXITSTATUS(status);
        snprintf(what, sizeof(what), "exited with status %d", rep->status);
        describe(out, rep, what);
    } else {
        char what[48];

        snprintf(what, sizeof(what), "killed by signal %d",
                 WIFSIGNALED(status) ? WTERMSIG(status) : 0);
        describe(out, rep, what);
    }
}

void vh__spawn_run(const char *cmd, const void *body, size_t body_len, const char *const *extra_env,
                   int64_t timeout_ms, const atomic_bool *stop, struct vh__report *rep)
{
    char *none[1] = {NULL};
    char **extra = none, **env = NULL;
    struct output out;
    int in_fd = -1, out_w = -1, rc;
    size_t n = 0, i;
    pid_t pid;

    memset(rep, 0, sizeof(*rep));
    rep->outcome = VH__OUTCOME_RETRY;
    out.fd = -1;
    out.len = 0;
    /* Our own copies: posix_spawn takes `char *const[]`. */
    while (extra_env && extra_env[n])
        n++;
    if (n) {
        extra = vh_malloc((n + 1) * sizeof(*extra));
        if (!extra) {
            snprintf(rep->error, sizeof(rep->error), "out of memory");
            return;
        }
        memset(extra, 0, (n + 1) * sizeof(*extra));
        for (i = 0; i < n; i++) {
            extra[i] = vh_strndup(extra_env[i], strlen(extra_env[i]));
            if (!extra[i]) {
                snprintf(rep->error, sizeof(rep->error), "out of memory");
                goto out;
            }
        }
    }
    in_fd = temp_file();
    if (in_fd < 0 || write_all(in_fd, body, body_len) < 0 || lseek(in_fd, 0, SEEK_SET) != 0) {
        snprintf(rep->error, sizeof(rep->error), "temporary file for the payload: %s",
                 strerror(errno));
        goto out;
    }
    {
        int sv[2];

        if (output_pair(sv) != 0) {
            snprintf(rep->error, sizeof(rep->error), "socket pair for the output: %s",
                     strerror(errno));
            goto out;
        }
        out.fd = sv[0];
        out_w = sv[1];
    }
    env = child_env(extra);
    if (!env) {
        snprintf(rep->error, sizeof(rep->error), "out of memory");
        goto out;
    }
    rc = spawn_child(cmd, in_fd, out_w, env, &pid);
    /* The child has its copies: ours would keep the output from ever ending. */
    close(out_w);
    out_w = -1;
    if (rc) {
        snprintf(rep->error, sizeof(rep->error), "starting /bin/sh: %s", strerror(rc));
        goto out;
    }
    wait_child(pid, timeout_ms, stop, &out, rep);
out:
    if (in_fd >= 0)
        close(in_fd);
    if (out_w >= 0)
        close(out_w);
    if (out.fd >= 0)
        close(out.fd);
    vh_free(env);
    for (i = 0; extra != none && i < n; i++)
        vh_free(extra[i]);
    if (extra != none)
        vh_free(extra);
}
