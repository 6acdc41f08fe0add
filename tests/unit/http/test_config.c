#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <vocohook/config.h>
#include <vocohook/event.h>

#define TOKEN "0123456789abcdef-token"

static void load_text(struct vh_config *cfg, const char *text, int want_rc, const char *want_msg)
{
    struct vh_error err = VH_ERROR_INIT;
    int rc = vh_config_load_string(cfg, text, strlen(text), "serve.ini", &err);

    if (rc != want_rc)
        fail_msg("rc %d, want %d (%s) for:\n%s", rc, want_rc, err.msg, text);
    if (want_msg)
        assert_string_equal(err.msg, want_msg);
}

static void reject_text(const char *text, const char *want_msg)
{
    struct vh_config cfg;

    assert_int_equal(vh_config_init(&cfg, NULL), 0);
    load_text(&cfg, text, VH_EINVAL, want_msg);
    vh_config_release(&cfg);
}

static void defaults(void **state)
{
    struct vh_config cfg;

    (void)state;
    assert_int_equal(vh_config_init(&cfg, NULL), 0);
    assert_string_equal(cfg.listen, "127.0.0.1:8080");
    assert_string_equal(cfg.db, "sqlite:./var/vocohook.db");
    assert_false(cfg.allow_http);
    assert_false(cfg.allow_private_networks);
    assert_null(cfg.ca_file);
    assert_int_equal(cfg.retry_steps, 4);
    assert_int_equal(cfg.retry_schedule_ms[0], 0);
    assert_int_equal(cfg.retry_schedule_ms[1], 1000);
    assert_int_equal(cfg.retry_schedule_ms[2], 2000);
    assert_int_equal(cfg.retry_schedule_ms[3], 4000);
    assert_int_equal(cfg.timeout_ms, 10000);
    assert_null(cfg.ingest_token);
    assert_null(cfg.s3_endpoint);
    assert_int_equal(cfg.threads, vh_config_default_threads());
    assert_true(cfg.threads >= 4 && cfg.threads <= 16);
    assert_int_equal(cfg.body_max, VH_BODY_MAX);
    assert_int_equal(cfg.delivery_memory, 64 * 1024 * 1024);
    assert_int_equal(cfg.max_connections, 1024);
    assert_int_equal(cfg.conn_timeout_s, 30);
    assert_int_equal(cfg.rate_limit, 60);
    assert_int_equal(cfg.rate_limit_calls, 10);
    assert_int_equal(cfg.log_level, VH_LOG_INFO);
    assert_true(cfg.sched_batch);
    assert_int_equal(vh_config_check(&cfg, NULL), 0);
    vh_config_release(&cfg);
    vh_config_release(&cfg); /* idempotent */
}

static void durations(void **state)
{
    static const struct {
        const char *in;
        int64_t ms;
    } good[] = {{"0", 0},         {"0ms", 0},           {"1ms", 1},
                {"1500ms", 1500}, {"10s", 10000},       {"5m", 300000},
                {"2h", 7200000},  {"720h", 2592000000}, {"43200m", 2592000000}};
    static const char *const bad[] = {"",
                                      "s",
                                      "10",
                                      "10 s",
                                      "-1s",
                                      "1.5s",
                                      "10S",
                                      "1d",
                                      "721h",
                                      "10sx",
                                      "99999999999999999999s",
                                      " 1s",
                                      "0x10s"};
    struct vh_error err = VH_ERROR_INIT;
    int64_t ms = -1;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        if (vh_duration_parse(good[i].in, &ms, &err) != 0)
            fail_msg("'%s': %s", good[i].in, err.msg);
        assert_int_equal(ms, good[i].ms);
    }
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ms = -7;
        vh_error_clear(&err);
        if (vh_duration_parse(bad[i], &ms, &err) != VH_EINVAL)
            fail_msg("'%s' was accepted", bad[i]);
        assert_int_equal(ms, -7); /* untouched */
        assert_true(err.msg[0] != '\0');
    }
    vh_error_clear(&err);
    vh_duration_parse("721h", &ms, &err);
    assert_string_equal(err.msg, "'721h' is longer than 30 days");
}

static void schedule_reject(const char *in, const char *want)
{
    struct vh_config cfg;
    struct vh_error err = VH_ERROR_INIT;

    assert_int_equal(vh_config_init(&cfg, NULL), 0);
    if (vh_config_set(&cfg, VH_CONFIG_FLAG, "retry_schedule", in, "--retry-schedule", &err) !=
        VH_EINVAL)
        fail_msg("'%s' was accepted", in);
    assert_int_equal(cfg.retry_steps, 4); /* the default, untouched */
    assert_string_equal(err.msg, want);
    vh_config_release(&cfg);
}

static void schedule_ok(const char *in, size_t steps, int64_t last_ms)
{
    struct vh_config cfg;
    struct vh_error err = VH_ERROR_INIT;

    assert_int_equal(vh_config_init(&cfg, NULL), 0);
    if (vh_config_set(&cfg, VH_CONFIG_FLAG, "retry_schedule", in, "--retry-schedule", &err) != 0)
        fail_msg("'%s': %s", in, err.msg);
    assert_int_equal(cfg.retry_steps, steps);
    assert_int_equal(cfg.retry_schedule_ms[steps - 1], last_ms);
    vh_config_release(&cfg);
}

static void schedules(void **state)
{
    (void)state;
    schedule_ok("0,1s,2s,4s", 4, 4000);
    /* The production example of SPEC §3, with spaces around the commas. */
    schedule_ok("0, 5s, 5m, 30m, 2h, 5h, 10h, 10h", 8, 36000000);
    schedule_ok("0", 1, 0);
    schedule_ok("0,0,0", 3, 0);
    schedule_ok("0,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s", 16, 1000);

    schedule_reject("0,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s",
                    "--retry-schedule: schedule: more than 16 steps");
    schedule_reject(
        "1s,2s", "--retry-schedule: the first delay must be 0: the first attempt follows at once");
    schedule_reject("0,,2s", "--retry-schedule: schedule: step 2 is empty");
    schedule_reject("", "--retry-schedule: schedule: no steps");
}

static void ini_file_applies(void **state)
{
    struct vh_config cfg;

    (void)state;
    assert_int_equal(vh_config_init(&cfg, NULL), 0);
    load_text(&cfg,
              "; vocohook serve\n"
              "# another comment\n"
              "listen = 0.0.0.0:9000\n"
              "\n"
              "[serve]\n"
              "db = sqlite:/tmp/x.db   ; inline comment\n"
              "allow_http = yes\n"
              "allow_private_networks = ON\n"
              "retry_schedule = 0,5s,5m\n"
              "timeout = 2500ms\n"
              "ingest_token = \"" TOKEN "\"\n"
              "threads = 8\n"
              "body_max = 64KiB\n"
              "delivery_memory = 2GiB\n"
              "max_connections = 100\n"
              "conn_timeout = 2m\n"
              "rate_limit = off\n"
              "rate_limit_calls = 120\n"
              "log_level = debug\n"
              "sched = normal\n"
              "ca_file = /etc/ssl/certs/ca-certificates.crt\n"
              "[s3]\n"
              "endpoint = https://s3.eu-west-1.amazonaws.com\r\n"
              "region = eu-west-1\n"
              "bucket = recordings\n"
              "path_style = true\n"
              "access_key = AKIAEXAMPLE\n"
              "secret_key = wJalrXUtnFEMI/K7MDENG\n",
              0, NULL);
    assert_string_equal(cfg.listen, "0.0.0.0:9000");
    assert_string_equal(cfg.db, "sqlite:/tmp/x.db");
    assert_true(cfg.allow_http);
    assert_true(cfg.allow_private_networks);
    assert_int_equal(cfg.retry_steps, 3);
    assert_int_equal(cfg.retry_schedule_ms[2], 300000);
    assert_int_equal(cfg.timeout_ms, 2500);
    assert_string_equal(cfg.ingest_token, TOKEN); /* quotes stripped */
    assert_int_equal(cfg.threads, 8);
    assert_int_equal(cfg.body_max, 65536);
    assert_int_equal(cfg.delivery_memory, (size_t)2 * 1024 * 1024 * 1024);
    assert_int_equal(cfg.max_connections, 100);
    assert_int_equal(cfg.conn_timeout_s, 120);
    assert_int_equal(cfg.rate_limit, -1);
    assert_int_equal(cfg.rate_limit_calls, 120);
    assert_int_equal(cfg.log_level, VH_LOG_DEBUG);
    assert_false(cfg.sched_batch);
    assert_string_equal(cfg.ca_file, "/etc/ssl/certs/ca-certificates.crt");
    assert_string_equal(cfg.s3_endpoint, "https://s3.eu-west-1.amazonaws.com");
    assert_string_equal(cfg.s3_region, "eu-west-1");
    assert_string_equal(cfg.s3_bucket, "recordings");
    assert_true(cfg.s3_path_style);
    assert_string_equal(cfg.s3_access_key, "AKIAEXAMPLE");
    assert_string_equal(cfg.s3_secret_key, "wJalrXUtnFEMI/K7MDENG");
    assert_int_equal(vh_config_check(&cfg, NULL), 0);
    vh_config_release(&cfg);
}

static void ini_errors_name_the_line(void **state)
{
    char long_line[400];

    (void)state;
    reject_text("listen = 127.0.0.1:8080\nthreads = many\n",
                "serve.ini:2: threads: expected a number from 1 to 256, got 'many'");
    reject_text("\n\nnot a setting\n",
                "serve.ini:3: expected 'key = value', '[section]' or a comment");
    reject_text("[serve]\ncolour = blue\n", "serve.ini:2: colour: unknown setting 'colour'");
    reject_text("[server]\nlisten = 127.0.0.1:1\n",
                "serve.ini:2: unknown section [server] (use [serve] or [s3])");
    reject_text("listen = 127.0.0.1:1\n\nlisten = 127.0.0.1:2\n",
                "serve.ini:3: listen: set twice (first on line 1)");
    reject_text("[s3]\nendpoint = ftp://x\n",
                "serve.ini:2: s3_endpoint: expected an http:// or https:// URL, got 'ftp://x'");
    reject_text("timeout = 0\n", "serve.ini:1: timeout: must be from 1ms to 1h, got '0'");
    reject_text("timeout = 2h\n", "serve.ini:1: timeout: must be from 1ms to 1h, got '2h'");
    reject_text("conn_timeout = 1500ms\n",
                "serve.ini:1: conn_timeout: must be whole seconds from 1s to 3600s, got '1500ms'");
    reject_text(
        "retry_schedule = 1s\n",
        "serve.ini:1: retry_schedule: the first delay must be 0: the first attempt follows at once");
    reject_text(
        "body_max = 2MiB\n",
        "serve.ini:1: body_max: expected a size from 1 to 1048576 bytes (a number, or with KiB, MiB or GiB), got '2MiB'");
    reject_text(
        "delivery_memory = 17GiB\n",
        "serve.ini:1: delivery_memory: expected a size from 1 to 17179869184 bytes (a number, or with KiB, MiB or GiB), got '17GiB'");
    reject_text(
        "listen = example.com:80\n",
        "serve.ini:1: listen: 'example.com' is not an IP address (use 127.0.0.1, 0.0.0.0 or [::1]; names are not resolved)");
    reject_text("listen = 127.0.0.1:65536\n",
                "serve.ini:1: listen: port '65536' is not a number from 0 to 65535");
    reject_text("allow_http = maybe\n",
                "serve.ini:1: allow_http: expected true or false, got 'maybe'");
    reject_text("log_level = loud\n",
                "serve.ini:1: log_level: expected error, warn, info or debug, got 'loud'");
    reject_text("sched = fifo\n", "serve.ini:1: sched: expected batch or normal, got 'fifo'");
    reject_text(
        "rate_limit = -5\n",
        "serve.ini:1: rate_limit: expected requests per minute (1 to 1000000) or off, got '-5'");
    /* A token is never echoed: only its length. */
    reject_text(
        "ingest_token = short\n",
        "serve.ini:1: ingest_token: must be 16 to 1024 visible ASCII characters, no spaces (got 5 bytes)");
    /* The first error in the file wins, whichever kind it is. */
    reject_text("threads = 0\nnot a setting\n",
                "serve.ini:1: threads: expected a number from 1 to 256, got '0'");
    reject_text("garbage\nthreads = 0\n",
                "serve.ini:1: expected 'key = value', '[section]' or a comment");

    memset(long_line, 'x', sizeof(long_line) - 1);
    long_line[sizeof(long_line) - 1] = '\0';
    memcpy(long_line, "db = ", 5);
    {
        struct vh_config cfg;
        struct vh_error err = VH_ERROR_INIT;
        char text[512];

        snprintf(text, sizeof(text), "threads = 2\n%s\n", long_line);
        assert_int_equal(vh_config_init(&cfg, NULL), 0);
        assert_int_equal(vh_config_load_string(&cfg, text, strlen(text), "serve.ini", &err),
                         VH_EINVAL);
        assert_non_null(strstr(err.msg, "serve.ini:2: line longer than"));
        vh_config_release(&cfg);
    }
    {
        struct vh_config cfg;
        struct vh_error err = VH_ERROR_INIT;
        static const char text[] = "threads = 2\nlisten\0= x\n";

        assert_int_equal(vh_config_init(&cfg, NULL), 0);
        assert_int_equal(vh_config_load_string(&cfg, text, sizeof(text) - 1, "serve.ini", &err),
                         VH_EINVAL);
        assert_string_equal(err.msg, "serve.ini:2: contains a NUL byte");
        vh_config_release(&cfg);
    }
}

static void ini_indented_lines(void **state)
{
    struct vh_config cfg;

    (void)state;
    /* Keys indented under their section are settings of their own, not continuations. */
    assert_int_equal(vh_config_init(&cfg, NULL), 0);
    load_text(&cfg,
              "[serve]\n"
              "    listen = 0.0.0.0:9000\n"
              "\ttimeout = 2500ms\n"
              "    body_max = 64KiB\n"
              "  ; an indented comment\n"
              "  [s3]\n"
              "    region = eu-west-1\n",
              0, NULL);
    assert_string_equal(cfg.listen, "0.0.0.0:9000");
    assert_int_equal(cfg.timeout_ms, 2500);
    assert_int_equal(cfg.body_max, 65536);
    assert_string_equal(cfg.s3_region, "eu-west-1");
    vh_config_release(&cfg);
    reject_text("timeout = 1s\n  garbage\n",
                "serve.ini:2: expected 'key = value', '[section]' or a comment");
}

static void env_and_flags_override_the_file(void **state)
{
    const char *const envp[] = {"PATH=/bin",
                                "VOCOHOOK_TIMEOUT=3s",
                                "VOCOHOOK_THREADS=",   /* empty: unset */
                                "VOCOHOOK_LISTENER=x", /* another name */
                                "VOCOHOOK_INGEST_TOKEN=" TOKEN,
                                "VOCOHOOK_UNKNOWN=ignored",
                                "VOCOHOOK_TIMEOUT=9s", /* the first one wins */
                                NULL};
    const struct vh_config_flag flags[] = {{"listen", "127.0.0.1:0"},
                                           {"allow-http", "true"},
                                           {"retry-schedule", "0,1s"},
                                           {"listen", "[::1]:0"}};
    struct vh_error err = VH_ERROR_INIT;
    struct vh_config cfg;
    char path[] = "/tmp/vh-test-config-XXXXXX";
    static const char text[] = "listen = 127.0.0.1:7000\ntimeout = 1s\nthreads = 3\n"
                               "retry_schedule = 0,1m\n";
    int fd;

    (void)state;
    fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, sizeof(text) - 1), (ssize_t)(sizeof(text) - 1));
    close(fd);

    assert_int_equal(vh_config_init(&cfg, NULL), 0);
    if (vh_config_load(&cfg, path, envp, flags, 4, &err) != 0)
        fail_msg("%s", err.msg);
    assert_string_equal(cfg.listen, "[::1]:0"); /* flag, the last one */
    assert_int_equal(cfg.timeout_ms, 3000);     /* env over file */
    assert_int_equal(cfg.threads, 3);           /* file: the empty env var is unset */
    assert_int_equal(cfg.retry_steps, 2);       /* flag over file */
    assert_int_equal(cfg.retry_schedule_ms[1], 1000);
    assert_true(cfg.allow_http);
    assert_string_equal(cfg.ingest_token, TOKEN); /* env */
    vh_config_release(&cfg);

    /* A bad env var names itself; a bad flag names itself. */
    {
        const char *const bad_env[] = {"VOCOHOOK_RETRY_SCHEDULE=0,2x", NULL};
        const struct vh_config_flag bad_flag[] = {{"timeout", "forever"}};

        vh_error_clear(&err);
        assert_int_equal(vh_config_init(&cfg, NULL), 0);
        assert_int_equal(vh_config_load(&cfg, NULL, bad_env, NULL, 0, &err), VH_EINVAL);
        assert_string_equal(
            err.msg,
            "VOCOHOOK_RETRY_SCHEDULE: schedule: step 2: expected a delay like 0, 500ms, 10s, 5m or 2h, got '2x'");
        vh_config_release(&cfg);

        vh_error_clear(&err);
        assert_int_equal(vh_config_init(&cfg, NULL), 0);
        assert_int_equal(vh_config_load(&cfg, NULL, NULL, bad_flag, 1, &err), VH_EINVAL);
        assert_string_equal(
            err.msg, "--timeout: expected a duration like 500ms, 10s, 5m or 2h, got 'forever'");
        vh_config_release(&cfg);
    }

    /* A missing file is an I/O error that names the file. */
    vh_error_clear(&err);
    assert_int_equal(vh_config_init(&cfg, NULL), 0);
    assert_int_equal(vh_config_load(&cfg, "/nonexistent/serve.ini", NULL, NULL, 0, &err), VH_EIO);
    assert_string_equal(err.msg, "config '/nonexistent/serve.ini': No such file or directory");
    vh_config_release(&cfg);
    unlink(path);
}

static void secrets_never_from_flags(void **state)
{
    static const char *const secrets[] = {"ingest_token", "s3_access_key", "s3_secret_key"};
    struct vh_error err = VH_ERROR_INIT;
    struct vh_config cfg;
    size_t i;

    (void)state;
    assert_int_equal(vh_config_init(&cfg, NULL), 0);
    for (i = 0; i < sizeof(secrets) / sizeof(secrets[0]); i++) {
        vh_error_clear(&err);
        assert_int_equal(vh_config_set(&cfg, VH_CONFIG_FLAG, secrets[i], TOKEN, "--x", &err),
                         VH_EINVAL);
        assert_non_null(strstr(err.msg, "not accepted on the command line"));
        assert_null(strstr(err.msg, TOKEN));
        assert_int_equal(vh_config_set(&cfg, VH_CONFIG_ENV, secrets[i], TOKEN, "ENV", &err), 0);
    }
    {
        const struct vh_config_flag flag[] = {{"ingest-token", TOKEN}};

        vh_error_clear(&err);
        assert_int_equal(vh_config_load(&cfg, NULL, NULL, flag, 1, &err), VH_EINVAL);
        assert_string_equal(err.msg, "--ingest-token: a secret is not accepted on the command line "
                                     "(it would show in ps); set VOCOHOOK_INGEST_TOKEN or use the "
                                     "config file");
    }
    /* AWS_* from the environment. */
    {
        const char *const envp[] = {"AWS_ACCESS_KEY_ID=AKIDENV", "AWS_SECRET_ACCESS_KEY=secretenv",
                                    NULL};

        assert_int_equal(vh_config_load_env(&cfg, envp, NULL), 0);
        assert_string_equal(cfg.s3_access_key, "AKIDENV");
        assert_string_equal(cfg.s3_secret_key, "secretenv");
    }
    vh_config_release(&cfg);
}

static void s3_is_all_or_nothing(void **state)
{
    struct vh_error err = VH_ERROR_INIT;
    struct vh_config cfg;

    (void)state;
    assert_int_equal(vh_config_init(&cfg, NULL), 0);
    /* AWS keys alone (other tools use them) do not turn S3 on. */
    assert_int_equal(vh_config_set(&cfg, VH_CONFIG_ENV, "s3_access_key", "A", "E", NULL), 0);
    assert_int_equal(vh_config_check(&cfg, NULL), 0);
    assert_int_equal(vh_config_set(&cfg, VH_CONFIG_FLAG, "s3_endpoint", "http://127.0.0.1:4569",
                                   "--s3-endpoint", NULL),
                     0);
    assert_int_equal(vh_config_check(&cfg, &err), VH_EINVAL);
    assert_string_equal(err.msg, "s3: s3_region is missing (S3 needs s3_endpoint, s3_region, "
                                 "s3_bucket, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)");
    assert_int_equal(vh_config_set(&cfg, VH_CONFIG_FLAG, "s3_region", "us-east-1", "-", NULL), 0);
    assert_int_equal(vh_config_set(&cfg, VH_CONFIG_FLAG, "s3_bucket", "b", "-", NULL), 0);
    vh_error_clear(&err);
    assert_int_equal(vh_config_check(&cfg, &err), VH_EINVAL);
    assert_non_null(strstr(err.msg, "AWS_SECRET_ACCESS_KEY is missing"));
    assert_int_equal(vh_config_set(&cfg, VH_CONFIG_ENV, "s3_secret_key", "K", "E", NULL), 0);
    assert_int_equal(vh_config_check(&cfg, NULL), 0);
    vh_config_release(&cfg);
}

static void connections_cover_threads(void **state)
{
    struct vh_error err = VH_ERROR_INIT;
    struct vh_config cfg;

    (void)state;
    assert_int_equal(vh_config_init(&cfg, NULL), 0);
    assert_int_equal(vh_config_set(&cfg, VH_CONFIG_FLAG, "threads", "8", "--threads", NULL), 0);
    assert_int_equal(
        vh_config_set(&cfg, VH_CONFIG_FLAG, "max_connections", "4", "--max-connections", NULL), 0);
    assert_int_equal(vh_config_check(&cfg, &err), VH_EINVAL);
    assert_string_equal(err.msg, "max_connections (4) must be at least threads (8)");
    assert_int_equal(
        vh_config_set(&cfg, VH_CONFIG_FLAG, "max_connections", "8", "--max-connections", NULL), 0);
    assert_int_equal(vh_config_check(&cfg, NULL), 0);
    vh_config_release(&cfg);
}

static void failed_set_leaves_value(void **state)
{
    struct vh_config cfg;

    (void)state;
    assert_int_equal(vh_config_init(&cfg, NULL), 0);
    assert_int_equal(vh_config_set(&cfg, VH_CONFIG_FLAG, "listen", "nope", "--listen", NULL),
                     VH_EINVAL);
    assert_string_equal(cfg.listen, "127.0.0.1:8080");
    assert_int_equal(
        vh_config_set(&cfg, VH_CONFIG_FLAG, "retry_schedule", "0,5s,1x", "--retry-schedule", NULL),
        VH_EINVAL);
    assert_int_equal(cfg.retry_steps, 4);
    assert_int_equal(vh_config_set(&cfg, VH_CONFIG_FLAG, "db", "", "--db", NULL), VH_EINVAL);
    assert_string_equal(cfg.db, "sqlite:./var/vocohook.db");
    assert_int_equal(vh_config_set(&cfg, VH_CONFIG_FLAG, "listen", "[::1]:8080", "-", NULL), 0);
    assert_int_equal(vh_config_set(&cfg, VH_CONFIG_FLAG, "listen", "localhost:0", "-", NULL), 0);
    assert_int_equal(vh_config_set(&cfg, VH_CONFIG_FLAG, "listen", "::1:8080", "-", NULL),
                     VH_EINVAL);
    assert_int_equal(vh_config_set(&cfg, VH_CONFIG_FLAG, "listen", "[::1]8080", "-", NULL),
                     VH_EINVAL);
    vh_config_release(&cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(defaults),
        cmocka_unit_test(durations),
        cmocka_unit_test(schedules),
        cmocka_unit_test(ini_file_applies),
        cmocka_unit_test(ini_errors_name_the_line),
        cmocka_unit_test(ini_indented_lines),
        cmocka_unit_test(env_and_flags_override_the_file),
        cmocka_unit_test(secrets_never_from_flags),
        cmocka_unit_test(s3_is_all_or_nothing),
        cmocka_unit_test(connections_cover_threads),
        cmocka_unit_test(failed_set_leaves_value),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
