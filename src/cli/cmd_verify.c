#include "cli/cli.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/banned.h"

#define MAX_SECRETS 16

static const char verify_usage[] =
    "usage: vocohook verify --secret S [--secret S2 ...] --timestamp T --signature SIG\n"
    "                       [--tolerance SEC] [--now T] FILE|-\n"
    "Exits 0 when the signature matches one of the secrets and the timestamp is within\n"
    "the tolerance of now; else exits 1 with the reason.\n"
    "  --secret S      a candidate secret (repeat for rotation; or VOCOHOOK_SECRETS=a,b)\n"
    "  --timestamp T   the X-Webhook-Timestamp header value\n"
    "  --signature SIG the X-Webhook-Signature header value (sha256=...)\n"
    "  --tolerance SEC the allowed clock difference both ways (default 300; 'off' disables)\n"
    "  --now T         check against this time instead of the clock\n";

int cmd_verify(int argc, char **argv)
{
    static const struct option opts[] = {{"secret", required_argument, NULL, 's'},
                                         {"timestamp", required_argument, NULL, 't'},
                                         {"signature", required_argument, NULL, 'g'},
                                         {"tolerance", required_argument, NULL, 'o'},
                                         {"now", required_argument, NULL, 'n'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    struct vh_buf body = VH_BUF_INIT(VH_BODY_MAX);
    struct vh_error err = VH_ERROR_INIT;
    const char *secrets[MAX_SECRETS];
    struct vh_verify_opts vo;
    const char *ts = NULL, *sig = NULL;
    char *env_list = NULL;
    size_t n = 0;
    int64_t tolerance_s = 300, now = vh_time_now_ms();
    int c, code = CLI_USAGE, rc;

    optind = 1;
    while ((c = getopt_long(argc, argv, "s:t:g:o:n:h", opts, NULL)) != -1) {
        switch (c) {
        case 's':
            if (n == MAX_SECRETS)
                return cli_fail("verify", CLI_USAGE, "at most %d secrets", MAX_SECRETS);
            secrets[n++] = optarg;
            break;
        case 't':
            ts = optarg;
            break;
        case 'g':
            sig = optarg;
            break;
        case 'o':
            if (strcmp(optarg, "off") == 0) {
                tolerance_s = -1;
                break;
            }
            code = cli_parse_int("verify", "--tolerance", optarg, 0, 365 * 86400, &tolerance_s);
            if (code)
                return code;
            break;
        case 'n':
            code = cli_parse_time("verify", "--now", optarg, &now);
            if (code)
                return code;
            break;
        case 'h':
            fputs(verify_usage, stdout);
            return CLI_OK;
        default:
            fputs(verify_usage, stderr);
            return CLI_USAGE;
        }
    }
    if (n == 0 && getenv("VOCOHOOK_SECRETS")) {
        env_list = vh_strndup(getenv("VOCOHOOK_SECRETS"), strlen(getenv("VOCOHOOK_SECRETS")));
        if (!env_list)
            return cli_fail("verify", CLI_FAILED, "out of memory");
        code = cli_split_secrets("verify", env_list, secrets, MAX_SECRETS, &n);
        if (code)
            goto out;
    }
    if (optind != argc - 1 || n == 0 || !ts || !sig) {
        if (n == 0)
            fprintf(stderr, "vocohook verify: --secret (or VOCOHOOK_SECRETS) is required\n");
        fputs(verify_usage, stderr);
        code = CLI_USAGE;
        goto out;
    }
    code = cli_read_input("verify", argv[optind], &body);
    if (code)
        goto out;
    vo.secrets = secrets;
    vo.n_secrets = n;
    vo.tolerance_ms = tolerance_s < 0 ? -1 : tolerance_s * 1000;
    vo.now_ms = now;
    rc = vh_verify(&vo, ts, strlen(ts), sig, strlen(sig), body.data, body.len, NULL, &err);
    if (rc < 0) {
        fprintf(stderr, "%s\n", err.msg[0] ? err.msg : vh_strerror(rc));
        code = cli_exit_for(rc);
        goto out;
    }
    printf("valid\n");
    code = cli_flush_output("verify");
out:
    vh_free(env_list);
    vh_buf_release(&body);
    return code;
}
