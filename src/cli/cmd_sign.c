#include "cli/cli.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/banned.h"

static const char sign_usage[] =
    "usage: vocohook sign --secret S [--timestamp T] FILE|-\n"
    "Prints the X-Webhook-Timestamp and X-Webhook-Signature header lines for a body.\n"
    "  --secret S      the endpoint secret (or set VOCOHOOK_SECRET, which stays out of ps)\n"
    "  --timestamp T   the attempt time, YYYY-MM-DDTHH:MM:SS.mmmZ (default: now)\n";

int cmd_sign(int argc, char **argv)
{
    static const struct option opts[] = {{"secret", required_argument, NULL, 's'},
                                         {"timestamp", required_argument, NULL, 't'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    struct vh_buf body = VH_BUF_INIT(VH_BODY_MAX);
    struct vh_error err = VH_ERROR_INIT;
    const char *secret = getenv("VOCOHOOK_SECRET");
    char ts[VH_TIME_LEN + 1];
    char sig[VH_SIG_LEN + 1];
    int64_t ts_ms = vh_time_now_ms();
    int c, code, rc;

    optind = 1;
    while ((c = getopt_long(argc, argv, "s:t:h", opts, NULL)) != -1) {
        if (c == 's') {
            secret = optarg;
        } else if (c == 't') {
            code = cli_parse_time("sign", "--timestamp", optarg, &ts_ms);
            if (code)
                return code;
        } else if (c == 'h') {
            fputs(sign_usage, stdout);
            return CLI_OK;
        } else {
            fputs(sign_usage, stderr);
            return CLI_USAGE;
        }
    }
    if (optind != argc - 1 || !secret || !*secret) {
        if (!secret || !*secret)
            fprintf(stderr, "vocohook sign: --secret (or VOCOHOOK_SECRET) is required, and not "
                            "empty\n");
        fputs(sign_usage, stderr);
        return CLI_USAGE;
    }
    code = cli_read_input("sign", argv[optind], &body);
    if (code)
        goto out;
    if (vh_time_format(ts_ms, ts) < 0) {
        code = cli_fail("sign", CLI_USAGE, "--timestamp: out of range");
        goto out;
    }
    rc = vh_sign(secret, strlen(secret), ts, VH_TIME_LEN, body.data, body.len, sig, &err);
    if (rc < 0) {
        code = cli_fail("sign", cli_exit_for(rc), "%s", err.msg);
        goto out;
    }
    printf("X-Webhook-Timestamp: %s\nX-Webhook-Signature: %s\n", ts, sig);
    code = cli_flush_output("sign");
out:
    vh_buf_release(&body);
    return code;
}
