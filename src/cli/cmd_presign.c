#include "cli/cli.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/banned.h"

static const char presign_usage[] =
    "usage: vocohook presign --url URL --region R [--access-key A] [--secret-key K]\n"
    "                        [--session-token T] [--expires N] [--at T]\n"
    "       vocohook presign --s3-endpoint E --bucket B --key KEY [--path-style] --region R ...\n"
    "Prints an S3 SigV4 presigned GET URL.\n"
    "  --url URL        the object URL (http(s)://host[:port]/path)\n"
    "  --s3-endpoint E  with --bucket and --key: build the object URL (virtual-hosted,\n"
    "                   or path-style with --path-style)\n"
    "  --access-key A   default: AWS_ACCESS_KEY_ID\n"
    "  --secret-key K   default: AWS_SECRET_ACCESS_KEY (keeps it out of ps)\n"
    "  --session-token T default: AWS_SESSION_TOKEN, if set\n"
    "  --expires N      seconds the link lives, 1..604800 (default 86400)\n"
    "  --at T           the signing time, YYYY-MM-DDTHH:MM:SS.mmmZ (default: now)\n";

int cmd_presign(int argc, char **argv)
{
    static const struct option opts[] = {{"url", required_argument, NULL, 'u'},
                                         {"region", required_argument, NULL, 'r'},
                                         {"access-key", required_argument, NULL, 'a'},
                                         {"secret-key", required_argument, NULL, 'k'},
                                         {"session-token", required_argument, NULL, 'T'},
                                         {"expires", required_argument, NULL, 'e'},
                                         {"at", required_argument, NULL, 't'},
                                         {"s3-endpoint", required_argument, NULL, 'E'},
                                         {"bucket", required_argument, NULL, 'b'},
                                         {"key", required_argument, NULL, 'K'},
                                         {"path-style", no_argument, NULL, 'p'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    struct vh_presign p = {0};
    struct vh_buf url = VH_BUF_INIT(16384);
    struct vh_buf out = VH_BUF_INIT(32768);
    struct vh_error err = VH_ERROR_INIT;
    const char *endpoint = NULL, *bucket = NULL, *key = NULL;
    bool path_style = false;
    int c, code, rc;

    p.access_key = getenv("AWS_ACCESS_KEY_ID");
    p.secret_key = getenv("AWS_SECRET_ACCESS_KEY");
    p.session_token = getenv("AWS_SESSION_TOKEN");
    p.at_ms = vh_time_now_ms();
    p.expires_s = VH_PRESIGN_EXPIRES_DEFAULT;
    optind = 1;
    while ((c = getopt_long(argc, argv, "u:r:a:k:T:e:t:E:b:K:ph", opts, NULL)) != -1) {
        code = 0;
        switch (c) {
        case 'u':
            p.url = optarg;
            break;
        case 'r':
            p.region = optarg;
            break;
        case 'a':
            p.access_key = optarg;
            break;
        case 'k':
            p.secret_key = optarg;
            break;
        case 'T':
            p.session_token = optarg;
            break;
        case 'e':
            code = cli_parse_int("presign", "--expires", optarg, 1, VH_PRESIGN_EXPIRES_MAX,
                                 &p.expires_s);
            break;
        case 't':
            code = cli_parse_time("presign", "--at", optarg, &p.at_ms);
            break;
        case 'E':
            endpoint = optarg;
            break;
        case 'b':
            bucket = optarg;
            break;
        case 'K':
            key = optarg;
            break;
        case 'p':
            path_style = true;
            break;
        case 'h':
            fputs(presign_usage, stdout);
            return CLI_OK;
        default:
            fputs(presign_usage, stderr);
            return CLI_USAGE;
        }
        if (code)
            return code;
    }
    if (optind != argc || !p.region || !p.access_key || !p.secret_key || (!p.url == !endpoint) ||
        (endpoint && (!bucket || !key))) {
        fputs(presign_usage, stderr);
        return CLI_USAGE;
    }
    if (endpoint) {
        rc = vh_s3_object_url(endpoint, bucket, key, path_style, &url, &err);
        if (rc < 0) {
            code = cli_fail("presign", cli_exit_for(rc), "%s", err.msg);
            goto out;
        }
        p.url = url.data;
    }
    rc = vh_presign_url(&p, &out, &err);
    if (rc < 0) {
        code = cli_fail("presign", cli_exit_for(rc), "%s", err.msg);
        goto out;
    }
    printf("%s\n", out.data);
    code = cli_flush_output("presign");
out:
    vh_buf_release(&url);
    vh_buf_release(&out);
    return code;
}
