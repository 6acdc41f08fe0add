/*
 * The serve configuration: one table of settings, each with its INI key, environment
 * variable and kind; one parser per kind. The layers (defaults, file, environment, flags)
 * all go through vh_config_set, so a value is checked the same way wherever it comes from.
 * The only file that includes <ini.h> (libinih).
 */
#include <vocohook/config.h>

#include <vocohook/policy.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ini.h>

#include <vocohook/alloc.h>
#include <vocohook/buf.h>
#include <vocohook/event.h>
#include <vocohook/sender.h>

#include "core/banned.h"

#define DURATION_MAX_MS INT64_C(2592000000) /* 30 days */
#define TIMEOUT_MAX_MS  INT64_C(3600000)    /* one hour per attempt */
#define STRING_MAX      4096                /* paths, URLs, names */
/* 16 GiB, or what a size_t can hold */
#define DELIVERY_MEMORY_MAX                                                                        \
    ((uint64_t)SIZE_MAX > UINT64_C(17179869184) ? INT64_C(17179869184) : (int64_t)(SIZE_MAX / 2))
#define KEY_MAX 64 /* the longest setting name, with room */

enum kind {
    K_LISTEN,   /* HOST:PORT */
    K_TEXT,     /* printable text: paths, database URLs */
    K_URL,      /* http:// or https:// */
    K_TOKEN,    /* a bearer token: VH_TOKEN_MIN..VH_TOKEN_MAX visible ASCII */
    K_WORD,     /* visible ASCII, no spaces: regions, buckets, access keys */
    K_BOOL,     /* true/false, yes/no, on/off, 1/0 */
    K_DURATION, /* a timeout in ms, 1 ms .. TIMEOUT_MAX_MS */
    K_SECONDS,  /* a whole number of seconds, stored as unsigned */
    K_SCHEDULE, /* the retry schedule */
    K_COUNT,    /* an unsigned integer in [min, max] */
    K_SIZE,     /* bytes, with an optional KiB/MiB/GiB suffix, in [min, max] */
    K_RATE,     /* requests per minute in [min, max], or off (stored as -1) */
    K_LEVEL,    /* a log level name */
    K_SCHED     /* batch or normal, stored as a bool (true: batch) */
};

struct setting {
    const char *key; /* the INI key; the flag is --key with '-' for '_' */
    const char *env; /* the environment variable */
    enum kind kind;
    size_t off;  /* the field in struct vh_config */
    bool secret; /* never from a flag; wiped when replaced */
    int64_t min, max;
};

#define AT(field) offsetof(struct vh_config, field)

static const struct setting settings[] = {
    {"listen", "VOCOHOOK_LISTEN", K_LISTEN, AT(listen), false, 0, 0},
    {"db", "VOCOHOOK_DB", K_TEXT, AT(db), false, 0, 0},
    {"allow_http", "VOCOHOOK_ALLOW_HTTP", K_BOOL, AT(allow_http), false, 0, 0},
    {"allow_private_networks", "VOCOHOOK_ALLOW_PRIVATE_NETWORKS", K_BOOL,
     AT(allow_private_networks), false, 0, 0},
    {"ca_file", "VOCOHOOK_CA_FILE", K_TEXT, AT(ca_file), false, 0, 0},
    {"node_id", "VOCOHOOK_NODE_ID", K_WORD, AT(node_id), false, 0, 0},
    {"retry_schedule", "VOCOHOOK_RETRY_SCHEDULE", K_SCHEDULE, 0, false, 0, 0},
    {"timeout", "VOCOHOOK_TIMEOUT", K_DURATION, AT(timeout_ms), false, 1, TIMEOUT_MAX_MS},
    {"ingest_token", "VOCOHOOK_INGEST_TOKEN", K_TOKEN, AT(ingest_token), true, 0, 0},
    {"s3_endpoint", "VOCOHOOK_S3_ENDPOINT", K_URL, AT(s3_endpoint), false, 0, 0},
    {"s3_region", "VOCOHOOK_S3_REGION", K_WORD, AT(s3_region), false, 0, 0},
    {"s3_bucket", "VOCOHOOK_S3_BUCKET", K_WORD, AT(s3_bucket), false, 0, 0},
    {"s3_path_style", "VOCOHOOK_S3_PATH_STYLE", K_BOOL, AT(s3_path_style), false, 0, 0},
    {"s3_access_key", "AWS_ACCESS_KEY_ID", K_WORD, AT(s3_access_key), true, 0, 0},
    {"s3_secret_key", "AWS_SECRET_ACCESS_KEY", K_WORD, AT(s3_secret_key), true, 0, 0},
    {"threads", "VOCOHOOK_THREADS", K_COUNT, AT(threads), false, 1, 256},
    {"body_max", "VOCOHOOK_BODY_MAX", K_SIZE, AT(body_max), false, 1, VH_BODY_MAX},
    {"delivery_memory", "VOCOHOOK_DELIVERY_MEMORY", K_SIZE, AT(delivery_memory), false, 1,
     DELIVERY_MEMORY_MAX},
    {"max_connections", "VOCOHOOK_MAX_CONNECTIONS", K_COUNT, AT(max_connections), false, 1, 65536},
    {"conn_timeout", "VOCOHOOK_CONN_TIMEOUT", K_SECONDS, AT(conn_timeout_s), false, 1, 3600},
    {"rate_limit", "VOCOHOOK_RATE_LIMIT", K_RATE, AT(rate_limit), false, 1, 1000000},
    {"rate_limit_calls", "VOCOHOOK_RATE_LIMIT_CALLS", K_RATE, AT(rate_limit_calls), false, 1,
     1000000},
    {"log_level", "VOCOHOOK_LOG_LEVEL", K_LEVEL, AT(log_level), false, 0, 0},
    {"sched", "VOCOHOOK_SCHED", K_SCHED, AT(sched_batch), false, 0, 0},
};

#define N_SETTINGS (sizeof(settings) / sizeof(settings[0]))

static const struct setting *find_setting(const char *key)
{
    size_t i;

    for (i = 0; i < N_SETTINGS; i++)
        if (strcmp(settings[i].key, key) == 0)
            return &settings[i];
    return NULL;
}

static void *field(struct vh_config *cfg, const struct setting *s)
{
    return (char *)cfg + s->off;
}

static void wipe(char *p)
{
    volatile char *v = p;

    while (p && *v)
        *v++ = '\0';
}

static void free_string(char *p, bool secret)
{
    if (secret)
        wipe(p);
    vh_free(p);
}

/* ---- value parsers: each writes its output only on success ---------------------------- */

int vh_duration_parse(const char *s, int64_t *out_ms, struct vh_error *err)
{
    static const struct {
        const char *name;
        int64_t ms;
    } units[] = {{"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}};
    const char *p = s;
    int64_t v = 0;
    size_t i;

    if (strcmp(s, "0") == 0) {
        *out_ms = 0;
        return 0;
    }
    if (*p < '0' || *p > '9')
        return vh_error_set(err, VH_EINVAL,
                            "expected a duration like 500ms, 10s, 5m or 2h, got '%s'", s);
    for (; *p >= '0' && *p <= '9'; p++) {
        if (v > DURATION_MAX_MS)
            break;
        v = v * 10 + (*p - '0');
    }
    for (i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcmp(p, units[i].name) != 0)
            continue;
        if (v > DURATION_MAX_MS / units[i].ms)
            return vh_error_set(err, VH_EINVAL, "'%s' is longer than 30 days", s);
        *out_ms = v * units[i].ms;
        return 0;
    }
    if (*p >= '0' && *p <= '9')
        return vh_error_set(err, VH_EINVAL, "'%s' is longer than 30 days", s);
    return vh_error_set(err, VH_EINVAL, "expected a duration like 500ms, 10s, 5m or 2h, got '%s'",
                        s);
}

/* A retry schedule in the retry policy's own grammar, under the contract's rule. */
static int parse_schedule(const char *value, struct vh_config *cfg, struct vh_error *err)
{
    struct vh_retry_policy p;
    int rc;

    vh_retry_policy_init(&p);
    rc = vh_retry_policy_set_schedule(&p, value, strlen(value), err);
    if (rc == 0)
        rc = vh_retry_policy_check_immediate(&p, err);
    if (rc < 0)
        return rc;
    memcpy(cfg->retry_schedule_ms, p.delays_ms, p.steps * sizeof(p.delays_ms[0]));
    cfg->retry_steps = p.steps;
    return 0;
}

static int parse_uint(const char *s, int64_t min, int64_t max, int64_t *out, struct vh_error *err)
{
    int64_t v = 0;
    const char *p = s;

    if (*p < '0' || *p > '9')
        return vh_error_set(err, VH_EINVAL, "expected a number from %lld to %lld, got '%s'",
                            (long long)min, (long long)max, s);
    for (; *p >= '0' && *p <= '9'; p++) {
        v = v * 10 + (*p - '0');
        if (v > max)
            break;
    }
    if (*p != '\0' || v < min || v > max)
        return vh_error_set(err, VH_EINVAL, "expected a number from %lld to %lld, got '%s'",
                            (long long)min, (long long)max, s);
    *out = v;
    return 0;
}

static int parse_size(const char *s, int64_t min, int64_t max, int64_t *out, struct vh_error *err)
{
    static const struct {
        const char *suffix;
        int64_t mult;
    } units[] = {{"", 1},           {"k", 1024},        {"K", 1024},      {"KiB", 1024},
                 {"m", 1048576},    {"M", 1048576},     {"MiB", 1048576}, {"g", 1073741824},
                 {"G", 1073741824}, {"GiB", 1073741824}};
    const char *p = s;
    int64_t v = 0;
    size_t i;

    for (; *p >= '0' && *p <= '9' && v <= max; p++)
        v = v * 10 + (*p - '0');
    if (p != s && v <= max)
        for (i = 0; i < sizeof(units) / sizeof(units[0]); i++)
            if (strcmp(p, units[i].suffix) == 0 && v <= max / units[i].mult &&
                v * units[i].mult >= min) {
                *out = v * units[i].mult;
                return 0;
            }
    return vh_error_set(
        err, VH_EINVAL,
        "expected a size from %lld to %lld bytes (a number, or with KiB, MiB or GiB), got '%s'",
        (long long)min, (long long)max, s);
}

static int parse_bool(const char *s, bool *out, struct vh_error *err)
{
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};
    size_t i;

    for (i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return vh_error_set(err, VH_EINVAL, "expected true or false, got '%s'", s);
}

static int parse_level(const char *s, enum vh_log_level *out, struct vh_error *err)
{
    static const enum vh_log_level levels[] = {VH_LOG_ERROR, VH_LOG_WARN, VH_LOG_INFO,
                                               VH_LOG_DEBUG};
    size_t i;

    for (i = 0; i < sizeof(levels) / sizeof(levels[0]); i++) {
        if (strcmp(s, vh_log_level_name(levels[i])) == 0) {
            *out = levels[i];
            return 0;
        }
    }
    return vh_error_set(err, VH_EINVAL, "expected error, warn, info or debug, got '%s'", s);
}

/* HOST:PORT, HOST an IPv4 literal or "localhost", or [IPv6]:PORT; PORT 0..65535. */
static int check_listen(const char *s, struct vh_error *err)
{
    const char *colon = strrchr(s, ':');
    unsigned char addr[16];
    char host[64];
    int64_t port;
    size_t hlen;
    int af = AF_INET;
    const char *h = s;

    if (!colon || colon == s || colon[1] == '\0')
        return vh_error_set(err, VH_EINVAL,
                            "expected HOST:PORT (127.0.0.1:8080, [::1]:8080), got '%s'", s);
    hlen = (size_t)(colon - s);
    if (s[0] == '[') {
        if (hlen < 3 || s[hlen - 1] != ']')
            return vh_error_set(err, VH_EINVAL, "expected [IPv6]:PORT, got '%s'", s);
        af = AF_INET6;
        h = s + 1;
        hlen -= 2;
    }
    if (hlen >= sizeof(host))
        return vh_error_set(err, VH_EINVAL, "'%s' is not an IP address and port", s);
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    if (!(af == AF_INET && strcmp(host, "localhost") == 0) && inet_pton(af, host, addr) != 1)
        return vh_error_set(
            err, VH_EINVAL,
            "'%s' is not an IP address (use 127.0.0.1, 0.0.0.0 or [::1]; names are not resolved)",
            host);
    if (parse_uint(colon + 1, 0, 65535, &port, NULL) < 0)
        return vh_error_set(err, VH_EINVAL, "port '%s' is not a number from 0 to 65535", colon + 1);
    return 0;
}

static bool is_visible_ascii(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f)
            return false;
    return true;
}

static bool has_control(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s == 0x7f)
            return true;
    return false;
}

static int check_string(const struct setting *st, const char *s, struct vh_error *err)
{
    size_t len = strlen(s);

    if (len == 0)
        return vh_error_set(err, VH_EINVAL, "must not be empty");
    switch (st->kind) {
    case K_LISTEN:
        return check_listen(s, err);
    case K_TOKEN:
        if (len < VH_TOKEN_MIN || len > VH_TOKEN_MAX || !is_visible_ascii(s))
            return vh_error_set(
                err, VH_EINVAL,
                "must be %d to %d visible ASCII characters, no spaces (got %zu bytes)",
                VH_TOKEN_MIN, VH_TOKEN_MAX, len);
        return 0;
    case K_WORD:
        /* Secrets go into no message: only their length is named. */
        if (len > STRING_MAX || !is_visible_ascii(s))
            return vh_error_set(err, VH_EINVAL, "must be visible ASCII characters, no spaces");
        return 0;
    case K_URL:
        if ((strncmp(s, "http://", 7) != 0 && strncmp(s, "https://", 8) != 0) || len > STRING_MAX ||
            !is_visible_ascii(s))
            return vh_error_set(err, VH_EINVAL, "expected an http:// or https:// URL, got '%s'", s);
        return 0;
    default:
        if (len > STRING_MAX || has_control(s))
            return vh_error_set(err, VH_EINVAL,
                                "must be at most %d bytes without control characters", STRING_MAX);
        return 0;
    }
}

/* Parses `value` for `st` and stores it; `cfg` is untouched on failure. */
static int apply(struct vh_config *cfg, const struct setting *st, const char *value,
                 struct vh_error *err)
{
    int64_t v = 0;
    int rc = 0;

    switch (st->kind) {
    case K_LISTEN:
    case K_TEXT:
    case K_URL:
    case K_TOKEN:
    case K_WORD: {
        char **slot = field(cfg, st);
        char *copy;

        rc = check_string(st, value, err);
        if (rc < 0)
            return rc;
        copy = vh_strndup(value, strlen(value));
        if (!copy)
            return vh_error_set(err, VH_ENOMEM, "out of memory");
        free_string(*slot, st->secret);
        *slot = copy;
        return 0;
    }
    case K_BOOL:
        return parse_bool(value, field(cfg, st), err);
    case K_DURATION:
        rc = vh_duration_parse(value, &v, err);
        if (rc == 0 && (v < st->min || v > st->max))
            rc = vh_error_set(err, VH_EINVAL, "must be from 1ms to 1h, got '%s'", value);
        if (rc == 0)
            *(int64_t *)field(cfg, st) = v;
        return rc;
    case K_SECONDS:
        rc = vh_duration_parse(value, &v, err);
        if (rc == 0 && (v % 1000 != 0 || v / 1000 < st->min || v / 1000 > st->max))
            rc = vh_error_set(err, VH_EINVAL, "must be whole seconds from %llds to %llds, got '%s'",
                              (long long)st->min, (long long)st->max, value);
        if (rc == 0)
            *(unsigned *)field(cfg, st) = (unsigned)(v / 1000);
        return rc;
    case K_SCHEDULE:
        return parse_schedule(value, cfg, err);
    case K_COUNT:
        rc = parse_uint(value, st->min, st->max, &v, err);
        if (rc == 0)
            *(unsigned *)field(cfg, st) = (unsigned)v;
        return rc;
    case K_SIZE:
        rc = parse_size(value, st->min, st->max, &v, err);
        if (rc == 0)
            *(size_t *)field(cfg, st) = (size_t)v;
        return rc;
    case K_RATE:
        if (strcmp(value, "off") == 0 || strcmp(value, "0") == 0) {
            *(int *)field(cfg, st) = -1;
            return 0;
        }
        rc = parse_uint(value, st->min, st->max, &v, NULL);
        if (rc < 0)
            return vh_error_set(err, VH_EINVAL,
                                "expected requests per minute (1 to %lld) or off, got '%s'",
                                (long long)st->max, value);
        *(int *)field(cfg, st) = (int)v;
        return 0;
    case K_LEVEL:
        return parse_level(value, field(cfg, st), err);
    case K_SCHED:
        if (strcmp(value, "batch") != 0 && strcmp(value, "normal") != 0)
            return vh_error_set(err, VH_EINVAL, "expected batch or normal, got '%s'", value);
        *(bool *)field(cfg, st) = value[0] == 'b';
        return 0;
    }
    return vh_error_set(err, VH_EINVAL, "unhandled setting kind");
}

/* ---- the layers --------------------------------------------------------------------------- */

/*
 * HTTP threads when none is configured: two per CPU, from 4 to 16. No thread waits for an
 * ingest's commit (the store's commit thread answers it), so more threads only add
 * switches; a few spare ones serve the partner API, whose calls still hold their thread
 * through a store call. Scenario 3 (docs/BENCHMARKS.md): 2 or 4 threads ingested 5.1-5.9 k
 * sessions/s at 138-163 us of CPU each, 64 threads 4.6-4.8 k at 172-183 us.
 */
unsigned vh_config_default_threads(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);

    n = n < 1 ? 2 : 2 * n;
    return n < 4 ? 4 : n > 16 ? 16 : (unsigned)n;
}

int vh_config_init(struct vh_config *cfg, struct vh_error *err)
{
    static const int64_t schedule[] = {0, 1000, 2000, 4000};

    memset(cfg, 0, sizeof(*cfg));
    cfg->listen = vh_strndup(VH_CONFIG_LISTEN_DEFAULT, strlen(VH_CONFIG_LISTEN_DEFAULT));
    cfg->db = vh_strndup(VH_CONFIG_DB_DEFAULT, strlen(VH_CONFIG_DB_DEFAULT));
    if (!cfg->listen || !cfg->db) {
        vh_config_release(cfg);
        return vh_error_set(err, VH_ENOMEM, "out of memory");
    }
    memcpy(cfg->retry_schedule_ms, schedule, sizeof(schedule));
    cfg->retry_steps = sizeof(schedule) / sizeof(schedule[0]);
    cfg->timeout_ms = 10000;
    cfg->threads = vh_config_default_threads();
    cfg->body_max = VH_BODY_MAX;
    cfg->delivery_memory = VH_SENDER_MAX_BYTES_DEFAULT;
    cfg->max_connections = 1024;
    cfg->conn_timeout_s = 30;
    cfg->rate_limit = 60;
    cfg->rate_limit_calls = 10;
    cfg->log_level = VH_LOG_INFO;
    cfg->sched_batch = true;
    return 0;
}

void vh_config_release(struct vh_config *cfg)
{
    size_t i;

    if (!cfg)
        return;
    for (i = 0; i < N_SETTINGS; i++) {
        const struct setting *st = &settings[i];

        if (st->kind == K_LISTEN || st->kind == K_TEXT || st->kind == K_URL ||
            st->kind == K_TOKEN || st->kind == K_WORD) {
            char **slot = field(cfg, st);

            free_string(*slot, st->secret);
            *slot = NULL;
        }
    }
}

int vh_config_set(struct vh_config *cfg, enum vh_config_source source, const char *key,
                  const char *value, const char *where, struct vh_error *err)
{
    const struct setting *st = find_setting(key);
    struct vh_error sub = VH_ERROR_INIT;
    int rc;

    if (!st)
        return vh_error_set(err, VH_EINVAL, "%s: unknown setting '%s'", where, key);
    if (st->secret && source == VH_CONFIG_FLAG)
        return vh_error_set(
            err, VH_EINVAL,
            "%s: a secret is not accepted on the command line (it would show in ps); set %s or use the config file",
            where, st->env);
    rc = apply(cfg, st, value, &sub);
    if (rc < 0)
        return vh_error_set(err, rc, "%s: %s", where, sub.msg);
    return 0;
}

struct ini_reader_state {
    const char *p; /* the rest of the text */
    size_t left;   /* bytes in it */
    int line;      /* the number of the line last handed to inih */
    int too_long;  /* the line that did not fit inih's buffer, or 0 */
    int line_max;  /* that buffer's size */
};

struct ini_ctx {
    struct vh_config *cfg;
    const char *name;
    struct ini_reader_state *rd;
    int seen[N_SETTINGS]; /* the line that set each setting, 0 when none */
    int err_line;         /* the line of our first error, 0 when none */
    struct vh_error err;
};

/*
 * inih's reader, fed from memory one whole line at a time, so its line numbers and ours
 * agree. A line longer than inih's fixed buffer would otherwise be split into two "lines"
 * silently; here it stops the parse with an error instead. Leading blanks are dropped:
 * inih reads an indented line after a setting as a continuation of that setting's value,
 * so `[serve]` with its keys indented under it failed as "set twice".
 */
static char *ini_read_line(char *str, int num, void *stream)
{
    struct ini_reader_state *rd = stream;
    size_t n = 0;

    if (rd->too_long || rd->left == 0 || num < 2)
        return NULL;
    while (rd->left > 0 && (rd->p[0] == ' ' || rd->p[0] == '\t')) {
        rd->p++;
        rd->left--;
    }
    while (n < rd->left && rd->p[n] != '\n')
        n++;
    if (n < rd->left)
        n++; /* the newline */
    rd->line++;
    if (n > (size_t)num - 1) {
        rd->too_long = rd->line;
        rd->line_max = num - 1;
        return NULL;
    }
    memcpy(str, rd->p, n);
    str[n] = '\0';
    rd->p += n;
    rd->left -= n;
    return str;
}

static int ini_on_entry(void *user, const char *section, const char *name, const char *value)
{
    struct ini_ctx *c = user;
    const struct setting *st;
    char key[KEY_MAX], where[512];
    size_t vlen = strlen(value);
    char *unquoted = NULL;
    int rc;

    if (c->err_line)
        return 0;
    if (strcmp(section, "") == 0 || strcmp(section, "serve") == 0) {
        snprintf(key, sizeof(key), "%s", name);
    } else if (strcmp(section, "s3") == 0) {
        snprintf(key, sizeof(key), "s3_%s", name);
    } else {
        c->err_line = c->rd->line;
        vh_error_set(&c->err, VH_EINVAL, "%s:%d: unknown section [%s] (use [serve] or [s3])",
                     c->name, c->rd->line, section);
        return 0;
    }
    snprintf(where, sizeof(where), "%s:%d: %s", c->name, c->rd->line, key);
    st = find_setting(key);
    if (st && c->seen[st - settings]) {
        c->err_line = c->rd->line;
        vh_error_set(&c->err, VH_EINVAL, "%s: set twice (first on line %d)", where,
                     c->seen[st - settings]);
        return 0;
    }
    if (vlen >= 2 && value[0] == '"' && value[vlen - 1] == '"') {
        unquoted = vh_strndup(value + 1, vlen - 2);
        if (!unquoted) {
            c->err_line = c->rd->line;
            vh_error_set(&c->err, VH_ENOMEM, "out of memory");
            return 0;
        }
        value = unquoted;
    }
    rc = vh_config_set(c->cfg, VH_CONFIG_FILE, key, value, where, &c->err);
    if (unquoted)
        free_string(unquoted, st && st->secret);
    if (rc < 0) {
        c->err_line = c->rd->line;
        return 0;
    }
    c->seen[st - settings] = c->rd->line;
    return 1;
}

static int line_of(const char *text, size_t off)
{
    int line = 1;
    size_t i;

    for (i = 0; i < off; i++)
        if (text[i] == '\n')
            line++;
    return line;
}

int vh_config_load_string(struct vh_config *cfg, const char *text, size_t len, const char *name,
                          struct vh_error *err)
{
    struct ini_reader_state rd = {text, len, 0, 0, 0};
    struct ini_ctx c;
    const char *nul = memchr(text, '\0', len);
    int first;

    if (nul)
        return vh_error_set(err, VH_EINVAL, "%s:%d: contains a NUL byte", name,
                            line_of(text, (size_t)(nul - text)));
    memset(&c, 0, sizeof(c));
    c.cfg = cfg;
    c.name = name;
    c.rd = &rd;
    first = ini_parse_stream(ini_read_line, &rd, ini_on_entry, &c);
    if (first < 0)
        return vh_error_set(err, VH_ENOMEM, "%s: out of memory", name);
    if (rd.too_long && (first == 0 || rd.too_long < first))
        first = rd.too_long;
    if (first == 0)
        return 0;
    if (first == c.err_line)
        return vh_error_set(err, c.err.code, "%s", c.err.msg);
    if (first == rd.too_long)
        return vh_error_set(err, VH_EINVAL, "%s:%d: line longer than %d bytes", name, first,
                            rd.line_max);
    return vh_error_set(err, VH_EINVAL, "%s:%d: expected 'key = value', '[section]' or a comment",
                        name, first);
}

int vh_config_load_file(struct vh_config *cfg, const char *path, struct vh_error *err)
{
    struct vh_buf text = VH_BUF_INIT(VH_CONFIG_FILE_MAX);
    char chunk[4096];
    int fd, rc = 0;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return vh_error_set(err, VH_EIO, "config '%s': %s", path, strerror(errno));
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof(chunk));

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = vh_error_set(err, VH_EIO, "config '%s': %s", path, strerror(errno));
            goto out;
        }
        if (n == 0)
            break;
        rc = vh_buf_add(&text, chunk, (size_t)n);
        if (rc == VH_ETOOBIG) {
            rc = vh_error_set(err, VH_EINVAL, "config '%s': larger than %d bytes", path,
                              VH_CONFIG_FILE_MAX);
            goto out;
        }
        if (rc < 0) {
            rc = vh_error_set(err, rc, "config '%s': out of memory", path);
            goto out;
        }
    }
    rc = vh_config_load_string(cfg, vh_buf_cstr(&text), text.len, path, err);
out:
    close(fd);
    if (text.data)
        wipe(text.data); /* it may hold the ingest token */
    vh_buf_release(&text);
    return rc;
}

int vh_config_load_env(struct vh_config *cfg, const char *const *envp, struct vh_error *err)
{
    size_t i, j;
    int rc;

    for (i = 0; i < N_SETTINGS; i++) {
        size_t len = strlen(settings[i].env);

        for (j = 0; envp && envp[j]; j++) {
            const char *e = envp[j];

            if (strncmp(e, settings[i].env, len) != 0 || e[len] != '=')
                continue;
            if (e[len + 1] != '\0') {
                rc = vh_config_set(cfg, VH_CONFIG_ENV, settings[i].key, e + len + 1,
                                   settings[i].env, err);
                if (rc < 0)
                    return rc;
            }
            break; /* the first definition wins, as with getenv */
        }
    }
    return 0;
}

int vh_config_check(const struct vh_config *cfg, struct vh_error *err)
{
    const struct {
        const char *value;
        const char *name;
    } s3[] = {{cfg->s3_endpoint, "s3_endpoint"},
              {cfg->s3_region, "s3_region"},
              {cfg->s3_bucket, "s3_bucket"},
              {cfg->s3_access_key, "AWS_ACCESS_KEY_ID"},
              {cfg->s3_secret_key, "AWS_SECRET_ACCESS_KEY"}};
    size_t i;

    /* MHD shares the connection limit out among its worker threads. */
    if (cfg->max_connections < cfg->threads)
        return vh_error_set(err, VH_EINVAL, "max_connections (%u) must be at least threads (%u)",
                            cfg->max_connections, cfg->threads);
    /* AWS_* alone is common (other tools use them): S3 is on once the bucket side is named. */
    if (!cfg->s3_endpoint && !cfg->s3_region && !cfg->s3_bucket)
        return 0;
    for (i = 0; i < sizeof(s3) / sizeof(s3[0]); i++)
        if (!s3[i].value)
            return vh_error_set(
                err, VH_EINVAL,
                "s3: %s is missing (S3 needs s3_endpoint, s3_region, s3_bucket, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)",
                s3[i].name);
    return 0;
}

int vh_config_load(struct vh_config *cfg, const char *file, const char *const *envp,
                   const struct vh_config_flag *flags, size_t n, struct vh_error *err)
{
    char key[KEY_MAX], where[KEY_MAX + 2];
    size_t i, j;
    int rc;

    if (file) {
        rc = vh_config_load_file(cfg, file, err);
        if (rc < 0)
            return rc;
    }
    rc = vh_config_load_env(cfg, envp, err);
    if (rc < 0)
        return rc;
    for (i = 0; i < n; i++) {
        size_t len = strlen(flags[i].name);

        if (len >= sizeof(key))
            return vh_error_set(err, VH_EINVAL, "--%.*s: unknown setting", KEY_MAX, flags[i].name);
        for (j = 0; j <= len; j++)
            key[j] = flags[i].name[j] == '-' ? '_' : flags[i].name[j];
        snprintf(where, sizeof(where), "--%s", flags[i].name);
        rc = vh_config_set(cfg, VH_CONFIG_FLAG, key, flags[i].value, where, err);
        if (rc < 0)
            return rc;
    }
    return vh_config_check(cfg, err);
}
