/*
 * vocohook emit: ingests a session file in-process, exactly as POST /internal/v1/sessions
 * does (same validation, same store transaction, same fan-out), for a partner named on the
 * command line. Useful to seed a store, and for producers that share the host.
 */
#include "cli/cli.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vocohook/config.h>

#include "core/banned.h"

extern char **environ;

static const char emit_usage[] =
    "usage: vocohook emit FILE|- --partner ID [--db URL] [--config FILE]\n"
    "                     [--s3-endpoint URL --s3-region R --s3-bucket B [--s3-path-style]]\n"
    "Ingests a session (the `session` object of the ingest API) for a partner, as the\n"
    "ingest API does, and prints the event id, the number of deliveries queued, and whether\n"
    "the session_id had been ingested before (then nothing is added).\n"
    "  --partner ID    the partner the session belongs to\n"
    "  --db URL        the store (default: VOCOHOOK_DB, else sqlite:./var/vocohook.db)\n"
    "  --config FILE   read settings (db, S3) from the serve config file\n"
    "  --s3-...        as for serve, to presign a recording_key (keys: AWS_ACCESS_KEY_ID,\n"
    "                  AWS_SECRET_ACCESS_KEY)\n";

static const struct option emit_opts[] = {{"partner", required_argument, NULL, 'p'},
                                          {"config", required_argument, NULL, 'c'},
                                          {"help", no_argument, NULL, 'h'},
                                          {"db", required_argument, NULL, 'C'},
                                          {"s3-endpoint", required_argument, NULL, 'C'},
                                          {"s3-region", required_argument, NULL, 'C'},
                                          {"s3-bucket", required_argument, NULL, 'C'},
                                          {"s3-path-style", no_argument, NULL, 'C'},
                                          {NULL, 0, NULL, 0}};

/* Library log records go to stderr, warnings and errors only: stdout is the result. */
static void log_to_stderr(void *ud, enum vh_log_level level, const char *json_line)
{
    (void)ud;
    if (level > VH_LOG_WARN)
        return;
    flockfile(stderr);
    fputs(json_line, stderr);
    fputc('\n', stderr);
    funlockfile(stderr);
}

static int ingest(const struct vh_config *cfg, const char *partner, const struct vh_buf *in)
{
    struct vh_error err = VH_ERROR_INIT;
    struct vh_store *st = NULL;
    struct vh_api *api = NULL;
    struct vh_api_config acfg;
    struct vh_event_put_result res;
    int code = CLI_OK, rc;

    memset(&acfg, 0, sizeof(acfg));
    acfg.allow_http = cfg->allow_http;
    if (cfg->s3_endpoint) { /* vh_config_check: then all five are set */
        acfg.s3_endpoint = cfg->s3_endpoint;
        acfg.s3_region = cfg->s3_region;
        acfg.s3_bucket = cfg->s3_bucket;
        acfg.s3_access_key = cfg->s3_access_key;
        acfg.s3_secret_key = cfg->s3_secret_key;
        acfg.s3_path_style = cfg->s3_path_style;
    }
    acfg.log = log_to_stderr;
    code = cli_default_store_dir("emit", cfg->db);
    if (code)
        return code;
    rc = vh_store_open(cfg->db, &st, &err);
    if (rc == 0)
        rc = vh_api_new(st, &acfg, &api, &err);
    if (rc < 0) {
        code = cli_fail("emit", rc == VH_EINVAL ? CLI_USAGE : CLI_FAILED, "%s", err.msg);
        goto out;
    }
    memset(&res, 0, sizeof(res));
    rc = vh_api_ingest_session(api, partner, vh_buf_cstr(in), in->len, "", vh_time_now_ms(), &res,
                               &err);
    if (rc < 0) {
        code = cli_fail("emit", cli_exit_for(rc), "%s", err.msg);
        goto out;
    }
    if (printf("event_id: %s\ndeliveries: %zu\nduplicate: %s\n", res.event_id, res.deliveries,
               res.created ? "false" : "true") < 0 ||
        fflush(stdout) != 0)
        code = cli_fail("emit", CLI_FAILED, "writing standard output failed");
out:
    vh_api_free(api);
    vh_store_close(st);
    return code;
}

int cmd_emit(int argc, char **argv)
{
    struct vh_buf in = VH_BUF_INIT(VH_BODY_MAX);
    struct vh_error err = VH_ERROR_INIT;
    struct vh_config cfg;
    struct vh_config_flag *flags;
    const char *file = getenv("VOCOHOOK_CONFIG");
    const char *partner = NULL;
    size_t n = 0;
    int c, idx, code, rc;

    if (file && !*file)
        file = NULL;
    flags = vh_malloc(sizeof(*flags) * (size_t)argc);
    if (!flags)
        return cli_fail("emit", CLI_FAILED, "out of memory");
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", emit_opts, &idx)) != -1) {
        if (c == 'p') {
            partner = optarg;
        } else if (c == 'c') {
            file = optarg;
        } else if (c == 'C') {
            flags[n].name = emit_opts[idx].name;
            flags[n].value = emit_opts[idx].has_arg ? optarg : "true";
            n++;
        } else if (c == 'h') {
            vh_free(flags);
            fputs(emit_usage, stdout);
            return CLI_OK;
        } else {
            vh_free(flags);
            fputs(emit_usage, stderr);
            return CLI_USAGE;
        }
    }
    if (optind != argc - 1 || !partner) {
        if (!partner)
            fprintf(stderr, "vocohook emit: --partner is required\n");
        vh_free(flags);
        fputs(emit_usage, stderr);
        return CLI_USAGE;
    }
    rc = vh_config_init(&cfg, &err);
    if (rc == 0)
        rc = vh_config_load(&cfg, file, (const char *const *)environ, flags, n, &err);
    vh_free(flags);
    if (rc < 0) {
        code = cli_fail("emit", rc == VH_EINVAL ? CLI_USAGE : CLI_FAILED, "%s", err.msg);
        goto out;
    }
    code = cli_read_input("emit", argv[optind], &in);
    if (code)
        goto out;
    code = ingest(&cfg, partner, &in);
out:
    vh_buf_release(&in);
    vh_config_release(&cfg);
    return code;
}
