#include "cli/cli.h"

#include <errno.h>
#include <fcntl.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <vocohook/config.h>

#include "core/banned.h"

int cli_fail(const char *verb, int code, const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "vocohook %s: ", verb);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return code;
}

int cli_exit_for(int rc)
{
    switch (rc) {
    case VH_EINVAL:
    case VH_ETOOBIG:
    case VH_ESIG:
    case VH_ENOTFOUND:
    case VH_ECONFLICT:
        return CLI_REJECTED;
    default:
        return CLI_FAILED;
    }
}

int cli_read_input(const char *verb, const char *path, struct vh_buf *out)
{
    char chunk[65536];
    int fd = 0;
    int code = 0;

    if (strcmp(path, "-") != 0) {
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            return cli_fail(verb, CLI_FAILED, "%s: %s", path, strerror(errno));
    }
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof(chunk));
        int rc;

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            code = cli_fail(verb, CLI_FAILED, "%s: %s", path, strerror(errno));
            break;
        }
        if (n == 0)
            break;
        rc = vh_buf_add(out, chunk, (size_t)n);
        if (rc == VH_ETOOBIG) {
            code = cli_fail(verb, CLI_REJECTED, "%s: larger than %zu bytes", path, out->max);
            break;
        }
        if (rc < 0) {
            code = cli_fail(verb, CLI_FAILED, "%s: %s", path, vh_strerror(rc));
            break;
        }
    }
    if (fd != 0)
        close(fd);
    return code;
}

int cli_write_output(const char *verb, const char *p, size_t n)
{
    if (fwrite(p, 1, n, stdout) != n || (isatty(STDOUT_FILENO) && fputc('\n', stdout) == EOF) ||
        fflush(stdout) != 0)
        return cli_fail(verb, CLI_FAILED, "writing standard output: %s", strerror(errno));
    return CLI_OK;
}

int cli_flush_output(const char *verb)
{
    errno = 0;
    if (fflush(stdout) == 0 && !ferror(stdout))
        return CLI_OK;
    /* stdio keeps the error of an earlier write that failed; errno may be gone by now. */
    return cli_fail(verb, CLI_FAILED, "writing standard output: %s",
                    errno ? strerror(errno) : "failed");
}

int cli_default_store_dir(const char *verb, const char *db)
{
    if (strcmp(db, VH_CONFIG_DB_DEFAULT) != 0)
        return 0;
    if (mkdir("./var", 0700) != 0 && errno != EEXIST)
        return cli_fail(verb, CLI_FAILED, "creating ./var: %s", strerror(errno));
    return 0;
}

int cli_parse_time(const char *verb, const char *opt, const char *s, int64_t *out_ms)
{
    struct vh_error err = VH_ERROR_INIT;

    if (vh_time_parse(s, strlen(s), out_ms, &err) < 0)
        return cli_fail(verb, CLI_USAGE, "%s: %s", opt, err.msg);
    return 0;
}

int cli_parse_int(const char *verb, const char *opt, const char *s, int64_t min, int64_t max,
                  int64_t *out)
{
    /* digits with an optional '-': strtoll alone would take " 5" and "+5" too */
    bool digits = *s == '-' || (*s >= '0' && *s <= '9');
    char *end = NULL;
    long long v;

    errno = 0;
    v = digits ? strtoll(s, &end, 10) : 0;
    if (!digits || errno != 0 || end == s || *end != '\0' || v < min || v > max)
        return cli_fail(verb, CLI_USAGE, "%s: expected an integer from %lld to %lld, got '%s'", opt,
                        (long long)min, (long long)max, s);
    *out = v;
    return 0;
}

void cli_log_to_stderr(void *ud, enum vh_log_level level, const char *json_line)
{
    const enum vh_log_level *max = ud;

    if (level > *max)
        return;
    flockfile(stderr);
    fputs(json_line, stderr);
    fputc('\n', stderr);
    funlockfile(stderr);
}

void cli_log(enum vh_log_level *max, enum vh_log_level level, const char *fmt, ...)
{
    char ts[VH_TIME_LEN + 1], line[1024];
    va_list ap;
    int n;

    if (vh_time_format(vh_time_now_ms(), ts) < 0)
        ts[0] = '\0';
    n = snprintf(line, sizeof(line), "{\"ts\":\"%s\",\"level\":\"%s\",", ts,
                 vh_log_level_name(level));
    if (n < 0 || (size_t)n >= sizeof(line))
        return;
    va_start(ap, fmt);
    n = vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
    va_end(ap);
    if (n >= 0)
        cli_log_to_stderr(max, level, line);
}

int cli_split_secrets(const char *verb, char *list, const char **secrets, size_t max, size_t *n)
{
    char *p = list;

    while (p && *p) {
        char *comma = strchr(p, ',');

        if (comma)
            *comma = '\0';
        if (*p) {
            size_t len = strlen(p);

            /*
             * "new, old" would give the secret " old", which no sender uses: every webhook
             * signed with it would fail, during the rotation the list is for.
             */
            if (strchr(" \t\r\n", p[0]) || strchr(" \t\r\n", p[len - 1]))
                return cli_fail(verb, CLI_USAGE,
                                "VOCOHOOK_SECRETS: secret %zu begins or ends with white space "
                                "(separate secrets with a comma alone)",
                                *n + 1);
            if (*n == max)
                return cli_fail(verb, CLI_USAGE, "VOCOHOOK_SECRETS: at most %zu secrets", max);
            secrets[(*n)++] = p;
        }
        p = comma ? comma + 1 : NULL;
    }
    return 0;
}

void cli_heap_tune(void)
{
#ifdef __GLIBC__
    /* Each is a fixed value: setting either threshold also stops glibc moving them. */
    mallopt(M_MMAP_THRESHOLD, CLI_HEAP_MMAP_THRESHOLD);
    mallopt(M_TRIM_THRESHOLD, CLI_HEAP_TRIM_THRESHOLD);
    mallopt(M_TOP_PAD, CLI_HEAP_TOP_PAD);
#endif
}

void cli_block_stop_signals(sigset_t *set)
{
    struct sigaction ign, hup;

    sigemptyset(set);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGINT);
    if (sigaction(SIGHUP, NULL, &hup) == 0 && hup.sa_handler != SIG_IGN)
        sigaddset(set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, set, NULL);
    memset(&ign, 0, sizeof(ign));
    ign.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &ign, NULL);
}

const char *cli_signal_name(int sig)
{
    return sig == SIGINT ? "SIGINT" : sig == SIGHUP ? "SIGHUP" : "SIGTERM";
}
