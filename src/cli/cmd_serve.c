/*
 * vocohook serve: the sender daemon. Loads the configuration (defaults, INI file,
 * environment, flags), opens the store, serves the API over HTTP until SIGTERM, SIGINT or
 * SIGHUP, then stops accepting, lets requests in progress finish, and exits 0.
 *
 * stdout carries one line, `listening on HOST:PORT`, once the socket is bound (scripts and
 * tests wait for it); stderr carries the log, one JSON object per line.
 */
#include "cli/cli.h"

#include <ctype.h>

#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <vocohook/config.h>

#include "core/banned.h"

extern char **environ;

static const char serve_usage[] =
    "usage: vocohook serve [--listen ADDR] [--db URL] [--config FILE] [options]\n"
    "Runs the sender: the partner API, the ingest API and the delivery outbox.\n"
    "  --listen ADDR             127.0.0.1:8080 (default), [::1]:8080; port 0 picks one\n"
    "  --db URL                  sqlite:PATH (default sqlite:./var/vocohook.db) or\n"
    "                            postgres://... (several nodes on one database)\n"
    "  --node-id ID              this node's lease name (default: the host name); distinct\n"
    "                            per node\n"
    "  --config FILE             an INI file (or VOCOHOOK_CONFIG); the environment and\n"
    "                            flags override it\n"
    "  --allow-http              accept http:// endpoint URLs (development only)\n"
    "  --allow-private-networks  deliver to loopback and private addresses (development only)\n"
    "  --ca-file PEM             CA certificates for deliveries (default: the system's)\n"
    "  --retry-schedule LIST     attempt delays, first 0 (default 0,1s,2s,4s)\n"
    "  --timeout DUR             per attempt (default 10s)\n"
    "  --s3-endpoint URL, --s3-region R, --s3-bucket B, --s3-path-style\n"
    "                            presign recording_key (keys: AWS_ACCESS_KEY_ID and\n"
    "                            AWS_SECRET_ACCESS_KEY)\n"
    "  --threads N               HTTP worker threads (default: two per CPU, 4 to 16)\n"
    "  --body-max SIZE           request body bound (default 1MiB; 413 past it)\n"
    "  --delivery-memory SIZE    payloads held for attempts at once (default 64MiB);\n"
    "                            past it, claims wait for attempts to end\n"
    "  --max-connections N       simultaneous connections (default 1024)\n"
    "  --conn-timeout DUR        idle connections are closed after this (default 30s)\n"
    "  --rate-limit N|off        requests per minute per API key (default 60)\n"
    "  --rate-limit-calls N|off  the same, on /calls (default 10)\n"
    "  --log-level L             error, warn, info (default) or debug\n"
    "  --sched batch|normal      the delivery threads' scheduling policy (default batch:\n"
    "                            a woken delivery thread does not preempt the other)\n"
    "The ingest token comes from VOCOHOOK_INGEST_TOKEN (or the config file) only, never a\n"
    "flag; without it the ingest API is disabled. Every setting is also VOCOHOOK_<NAME>.\n";

/* Config flags all map to 'C'; the setting is the option's name. */
static const struct option serve_opts[] = {{"config", required_argument, NULL, 'c'},
                                           {"help", no_argument, NULL, 'h'},
                                           {"listen", required_argument, NULL, 'C'},
                                           {"db", required_argument, NULL, 'C'},
                                           {"allow-http", no_argument, NULL, 'C'},
                                           {"allow-private-networks", no_argument, NULL, 'C'},
                                           {"ca-file", required_argument, NULL, 'C'},
                                           {"node-id", required_argument, NULL, 'C'},
                                           {"retry-schedule", required_argument, NULL, 'C'},
                                           {"timeout", required_argument, NULL, 'C'},
                                           {"s3-endpoint", required_argument, NULL, 'C'},
                                           {"s3-region", required_argument, NULL, 'C'},
                                           {"s3-bucket", required_argument, NULL, 'C'},
                                           {"s3-path-style", no_argument, NULL, 'C'},
                                           {"threads", required_argument, NULL, 'C'},
                                           {"body-max", required_argument, NULL, 'C'},
                                           {"delivery-memory", required_argument, NULL, 'C'},
                                           {"max-connections", required_argument, NULL, 'C'},
                                           {"conn-timeout", required_argument, NULL, 'C'},
                                           {"rate-limit", required_argument, NULL, 'C'},
                                           {"rate-limit-calls", required_argument, NULL, 'C'},
                                           {"log-level", required_argument, NULL, 'C'},
                                           {"sched", required_argument, NULL, 'C'},
                                           {NULL, 0, NULL, 0}};

/* Exit code for a configuration or start-up failure (SPEC §9): 2 a bad setting, 3 I/O. */
static int setup_exit(int rc)
{
    return rc == VH_EINVAL || rc == VH_ETOOBIG ? CLI_USAGE : CLI_FAILED;
}

/*
 * Parses the command line into `flags` (room for argc entries) and the config file.
 * Returns 0, or an exit code after printing why (-1 for --help, which exits 0).
 */
static int parse_args(int argc, char **argv, struct vh_config_flag *flags, size_t *n,
                      const char **file)
{
    int c, idx;

    optind = 1;
    *n = 0;
    while ((c = getopt_long(argc, argv, "h", serve_opts, &idx)) != -1) {
        if (c == 'c') {
            *file = optarg;
        } else if (c == 'C') {
            flags[*n].name = serve_opts[idx].name;
            flags[*n].value = serve_opts[idx].has_arg ? optarg : "true";
            (*n)++;
        } else if (c == 'h') {
            fputs(serve_usage, stdout);
            return -1;
        } else {
            fputs(serve_usage, stderr);
            return CLI_USAGE;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "vocohook serve: unexpected argument '%s'\n", argv[optind]);
        fputs(serve_usage, stderr);
        return CLI_USAGE;
    }
    return 0;
}

static void api_config_from(const struct vh_config *cfg, enum vh_log_level *level,
                            struct vh_api_config *out)
{
    memset(out, 0, sizeof(*out));
    out->ingest_token = cfg->ingest_token;
    out->allow_http = cfg->allow_http;
    out->rate_general_per_min = cfg->rate_limit;
    out->rate_calls_per_min = cfg->rate_limit_calls;
    if (cfg->s3_endpoint) { /* vh_config_check: then all five are set */
        out->s3_endpoint = cfg->s3_endpoint;
        out->s3_region = cfg->s3_region;
        out->s3_bucket = cfg->s3_bucket;
        out->s3_access_key = cfg->s3_access_key;
        out->s3_secret_key = cfg->s3_secret_key;
        out->s3_path_style = cfg->s3_path_style;
    }
    out->log = cli_log_to_stderr;
    out->log_ud = level;
}

#define STOP_GRACE_MS 3000

static int sender_metrics(void *ud, int64_t now_ms, struct vh_buf *out)
{
    return vh_sender_metrics(ud, now_ms, out);
}

static void wake_sender(void *ud)
{
    vh_sender_wake(ud);
}

static void endpoint_changed(void *ud, const char *endpoint_id)
{
    vh_sender_endpoint_changed(ud, endpoint_id);
}

/*
 * This node's lease name: the configured one, else the host name with anything outside
 * [A-Za-z0-9_-] replaced, so a restart on the same host takes back what it left in flight.
 */
static void node_id_for(const struct vh_config *cfg, char out[VH_NODE_ID_MAX + 1])
{
    char host[256] = "";
    size_t i, n;

    if (cfg->node_id) {
        snprintf(out, VH_NODE_ID_MAX + 1, "%s", cfg->node_id);
        return;
    }
    if (gethostname(host, sizeof(host) - 1) != 0 || !host[0])
        snprintf(host, sizeof(host), "node");
    /* A longer host name is cut; copied, since gcc -O0 flags a cut by snprintf. */
    n = strlen(host);
    if (n > VH_NODE_ID_MAX)
        n = VH_NODE_ID_MAX;
    memcpy(out, host, n);
    out[n] = '\0';
    for (i = 0; out[i]; i++)
        if (!isalnum((unsigned char)out[i]) && out[i] != '-' && out[i] != '_')
            out[i] = '-';
}

static void sender_config_from(const struct vh_config *cfg, enum vh_log_level *level,
                               char node_id[VH_NODE_ID_MAX + 1], struct vh_sender_config *out)
{
    vh_sender_config_init(out);
    node_id_for(cfg, node_id);
    out->node_id = node_id;
    out->policy.steps = cfg->retry_steps;
    memcpy(out->policy.delays_ms, cfg->retry_schedule_ms,
           cfg->retry_steps * sizeof(cfg->retry_schedule_ms[0]));
    out->policy.timeout_ms = cfg->timeout_ms;
    out->engine.allow_http = cfg->allow_http;
    out->engine.allow_private_networks = cfg->allow_private_networks;
    out->engine.ca_file = cfg->ca_file;
    out->engine.timeout_ms = cfg->timeout_ms;
    out->engine.log = cli_log_to_stderr;
    out->engine.log_ud = level;
    out->engine.log_level = *level;
    out->sched_batch = cfg->sched_batch;
    out->max_bytes = cfg->delivery_memory;
    out->heap_warm_bytes = CLI_HEAP_WARM_SENDER;
    out->log = cli_log_to_stderr;
    out->log_ud = level;
}

/* The warnings a development setting deserves, every time the daemon starts. */
static void warn_about(const struct vh_config *cfg, enum vh_log_level *level)
{
    if (!cfg->ingest_token)
        cli_log(level, VH_LOG_WARN,
                "\"msg\":\"ingest disabled: VOCOHOOK_INGEST_TOKEN is not set; POST "
                "/internal/v1/sessions answers 401\"}");
    if (cfg->allow_http)
        cli_log(level, VH_LOG_WARN,
                "\"msg\":\"allow_http is on: http:// endpoint URLs are accepted (development "
                "only)\"}");
    if (cfg->allow_private_networks)
        cli_log(level, VH_LOG_WARN,
                "\"msg\":\"allow_private_networks is on: deliveries may reach loopback and "
                "private addresses (development only)\"}");
}

/* Serves until SIGTERM, SIGINT or SIGHUP. They are blocked before any thread starts. */
static int run(const struct vh_config *cfg, enum vh_log_level *level, const sigset_t *stop_sigs)
{
    struct vh_error err = VH_ERROR_INIT;
    struct vh_store *st = NULL;
    struct vh_api *api = NULL;
    struct vh_server *srv = NULL;
    struct vh_sender *sender = NULL;
    struct vh_sender_config dcfg;
    char node_id[VH_NODE_ID_MAX + 1];
    struct vh_api_config acfg;
    struct vh_server_config scfg;
    const char *colon = strrchr(cfg->listen, ':');
    int code = CLI_OK, rc, sig = 0;

    code = cli_default_store_dir("serve", cfg->db);
    if (code)
        return code;
    rc = vh_store_open(cfg->db, &st, &err);
    if (rc < 0) {
        code = cli_fail("serve", setup_exit(rc), "%s", err.msg);
        goto out;
    }
    sender_config_from(cfg, level, node_id, &dcfg);
    rc = vh_sender_start(st, &dcfg, &sender, &err);
    if (rc < 0) {
        code = cli_fail("serve", setup_exit(rc), "%s", err.msg);
        goto out;
    }
    api_config_from(cfg, level, &acfg);
    acfg.on_due = wake_sender;
    acfg.on_due_ud = sender;
    acfg.on_endpoint_changed = endpoint_changed;
    acfg.on_endpoint_changed_ud = sender;
    acfg.metrics = sender_metrics;
    acfg.metrics_ud = sender;
    rc = vh_api_new(st, &acfg, &api, &err);
    if (rc < 0) {
        code = cli_fail("serve", setup_exit(rc), "%s", err.msg);
        goto out;
    }
    memset(&scfg, 0, sizeof(scfg));
    scfg.listen = cfg->listen;
    scfg.threads = cfg->threads;
    scfg.body_max = cfg->body_max;
    scfg.max_conns = cfg->max_connections;
    scfg.conn_timeout_s = cfg->conn_timeout_s;
    scfg.log = cli_log_to_stderr;
    scfg.log_ud = level;
    rc = vh_server_start(api, &scfg, &srv, &err);
    if (rc < 0) {
        code = cli_fail("serve", setup_exit(rc), "%s", err.msg);
        goto out;
    }
    warn_about(cfg, level);
    /* The database URL is not logged: a postgres:// URL may carry a password. */
    cli_log(level, VH_LOG_INFO,
            "\"msg\":\"listening\",\"addr\":\"%.*s:%u\",\"store\":\"%s\",\"sched\":\"%s\","
            "\"version\":\"%s\"}",
            (int)(colon - cfg->listen), cfg->listen, (unsigned)vh_server_port(srv),
            vh_store_backend(st), cfg->sched_batch ? "batch" : "normal", vh_version());
    printf("listening on %.*s:%u\n", (int)(colon - cfg->listen), cfg->listen,
           (unsigned)vh_server_port(srv));
    fflush(stdout);
    while (sigwait(stop_sigs, &sig) != 0)
        ;
    cli_log(level, VH_LOG_INFO, "\"msg\":\"stopping\",\"signal\":\"%s\"}", cli_signal_name(sig));
out:
    vh_server_stop(srv);
    /*
     * Attempts in progress get a short grace; the rest are cut short, recorded as
     * interrupted (they use up nothing) and made again at the next start.
     */
    vh_sender_stop(sender, cfg->timeout_ms < STOP_GRACE_MS ? cfg->timeout_ms : STOP_GRACE_MS);
    vh_api_free(api);
    vh_store_close(st);
    if (code == CLI_OK)
        cli_log(level, VH_LOG_INFO, "\"msg\":\"stopped\"}");
    return code;
}

int cmd_serve(int argc, char **argv)
{
    struct vh_config cfg;
    struct vh_error err = VH_ERROR_INIT;
    struct vh_config_flag *flags;
    const char *file = getenv("VOCOHOOK_CONFIG");
    enum vh_log_level level;
    sigset_t stop_sigs;
    size_t n = 0;
    int code, rc;

    cli_heap_tune();
    flags = vh_malloc(sizeof(*flags) * (size_t)argc);
    if (!flags)
        return cli_fail("serve", CLI_FAILED, "out of memory");
    if (file && !*file)
        file = NULL;
    code = parse_args(argc, argv, flags, &n, &file);
    if (code) {
        vh_free(flags);
        return code < 0 ? CLI_OK : code;
    }
    rc = vh_config_init(&cfg, &err);
    if (rc == 0)
        rc = vh_config_load(&cfg, file, (const char *const *)environ, flags, n, &err);
    vh_free(flags);
    if (rc < 0) {
        vh_config_release(&cfg);
        return cli_fail("serve", setup_exit(rc), "%s", err.msg);
    }
    if (cfg.ca_file && access(cfg.ca_file, R_OK) != 0) {
        code = cli_fail("serve", CLI_FAILED, "ca_file '%s': cannot be read", cfg.ca_file);
        vh_config_release(&cfg);
        return code;
    }
    level = cfg.log_level;

    cli_block_stop_signals(&stop_sigs);

    code = run(&cfg, &level, &stop_sigs);
    vh_config_release(&cfg);
    return code;
}
