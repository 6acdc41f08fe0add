#include "cli/cli.h"

#include <getopt.h>
#include <stdio.h>

#include "core/banned.h"

static const char render_usage[] =
    "usage: vocohook render [--timestamp T] FILE|-\n"
    "Reads an ingest `session` object and writes the exact session.completed webhook body.\n"
    "  --timestamp T   the event time, YYYY-MM-DDTHH:MM:SS.mmmZ (default: now)\n";

int cmd_render(int argc, char **argv)
{
    static const struct option opts[] = {{"timestamp", required_argument, NULL, 't'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    struct vh_buf in = VH_BUF_INIT(VH_BODY_MAX);
    struct vh_buf out = VH_BUF_INIT(2 * VH_BODY_MAX);
    struct vh_error err = VH_ERROR_INIT;
    struct vh_session *s = NULL;
    int64_t ts = vh_time_now_ms();
    int c, code, rc;

    optind = 1;
    while ((c = getopt_long(argc, argv, "t:h", opts, NULL)) != -1) {
        if (c == 't') {
            code = cli_parse_time("render", "--timestamp", optarg, &ts);
            if (code)
                return code;
        } else if (c == 'h') {
            fputs(render_usage, stdout);
            return CLI_OK;
        } else {
            fputs(render_usage, stderr);
            return CLI_USAGE;
        }
    }
    if (optind != argc - 1) {
        fputs(render_usage, stderr);
        return CLI_USAGE;
    }
    code = cli_read_input("render", argv[optind], &in);
    if (code)
        goto out;
    rc = vh_session_parse(in.data ? in.data : "", in.len, 0, &s, &err);
    if (rc == 0)
        rc = vh_session_render(s, ts, &out, &err);
    if (rc < 0) {
        code = cli_exit_for(rc);
        fprintf(stderr, "%s\n", err.msg[0] ? err.msg : vh_strerror(rc));
        goto out;
    }
    code = cli_write_output("render", out.data, out.len);
out:
    vh_session_free(s);
    vh_buf_release(&in);
    vh_buf_release(&out);
    return code;
}
