/*
 * vocohook: one binary, git-style subcommands. Each verb lives in its own cmd_<verb>.c.
 */
#include "cli/cli.h"

#include <stdio.h>
#include <string.h>

#include "core/banned.h"

struct verb {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
};

static const struct verb verbs[] = {
    {"serve", cmd_serve, "run the sender: partner API, ingest API, durable outbox"},
    {"partner", cmd_partner, "create, list partners and rotate their API keys"},
    {"emit", cmd_emit, "ingest a session from a file, as the ingest API does"},
    {"render", cmd_render, "ingest `session` JSON -> the exact webhook body"},
    {"sign", cmd_sign, "print the X-Webhook-Timestamp and X-Webhook-Signature headers for a body"},
    {"verify", cmd_verify, "check a webhook body's signature and timestamp"},
    {"validate", cmd_validate, "check a webhook body (or ingest input) against the contract"},
    {"presign", cmd_presign, "print an S3 SigV4 presigned GET URL for a recording"},
    {"receive", cmd_receive, "run the receiver: verify, store and acknowledge webhooks"},
    {"sessions", cmd_sessions, "list, show and export what the receiver stored"},
};

static void usage(FILE *f)
{
    size_t i;

    fprintf(f, "usage: vocohook <command> [options] [FILE|-]\n\ncommands:\n");
    for (i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++)
        fprintf(f, "  %-10s %s\n", verbs[i].name, verbs[i].summary);
    fprintf(f, "  %-10s %s\n", "version", "print the version");
    fprintf(f, "\n'vocohook <command> --help' describes a command.\n"
               "Exit codes: 0 ok, 1 input rejected, 2 usage error, 3 I/O or internal failure.\n");
}

int main(int argc, char **argv)
{
    size_t i;

    if (argc < 2) {
        usage(stderr);
        return CLI_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return cli_flush_output("help");
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
        printf("vocohook %s\n", vh_version());
        return cli_flush_output("version");
    }
    for (i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++)
        if (strcmp(argv[1], verbs[i].name) == 0)
            return verbs[i].run(argc - 1, argv + 1);
    fprintf(stderr, "vocohook: '%s' is not a command\n\n", argv[1]);
    usage(stderr);
    return CLI_USAGE;
}
