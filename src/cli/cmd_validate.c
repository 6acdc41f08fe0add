#include "cli/cli.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "core/banned.h"

static const char validate_usage[] =
    "usage: vocohook validate [--as event|receiver|session|ingest] FILE|-\n"
    "Checks a session.completed webhook body against the contract; exits 1 with\n"
    "\"path: reason\" when it breaks it.\n"
    "  --as event      a webhook body, strictly (the default)\n"
    "  --as receiver   a webhook body as a receiver takes it (unknown keys allowed)\n"
    "  --as session    an ingest `session` object (what render reads)\n"
    "  --as ingest     an ingest API body {partner_id, session}\n";

int cmd_validate(int argc, char **argv)
{
    static const struct option opts[] = {
        {"as", required_argument, NULL, 'a'}, {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    struct vh_buf in = VH_BUF_INIT(VH_BODY_MAX);
    struct vh_error err = VH_ERROR_INIT;
    const char *as = "event";
    const char *what = "";
    int c, code, rc;

    optind = 1;
    while ((c = getopt_long(argc, argv, "a:h", opts, NULL)) != -1) {
        if (c == 'a') {
            as = optarg;
        } else if (c == 'h') {
            fputs(validate_usage, stdout);
            return CLI_OK;
        } else {
            fputs(validate_usage, stderr);
            return CLI_USAGE;
        }
    }
    if (optind != argc - 1 || (strcmp(as, "event") != 0 && strcmp(as, "receiver") != 0 &&
                               strcmp(as, "session") != 0 && strcmp(as, "ingest") != 0)) {
        fputs(validate_usage, stderr);
        return CLI_USAGE;
    }
    code = cli_read_input("validate", argv[optind], &in);
    if (code)
        goto out;
    if (strcmp(as, "session") == 0) {
        struct vh_session *s = NULL;

        rc = vh_session_parse(in.data ? in.data : "", in.len, 0, &s, &err);
        what = "session";
        vh_session_free(s);
    } else if (strcmp(as, "ingest") == 0) {
        struct vh_ingest *ing = NULL;

        rc = vh_ingest_parse(in.data ? in.data : "", in.len, &ing, &err);
        what = "ingest body";
        vh_ingest_free(ing);
    } else {
        struct vh_event *ev = NULL;
        unsigned flags = strcmp(as, "receiver") == 0 ? VH_PARSE_ALLOW_UNKNOWN : 0;

        rc = vh_event_parse(in.data ? in.data : "", in.len, flags, &ev, &err);
        what = "session.completed payload";
        vh_event_free(ev);
    }
    if (rc < 0) {
        fprintf(stderr, "%s\n", err.msg[0] ? err.msg : vh_strerror(rc));
        code = cli_exit_for(rc);
        goto out;
    }
    printf("ok: a valid %s\n", what);
    code = cli_flush_output("validate");
out:
    vh_buf_release(&in);
    return code;
}
