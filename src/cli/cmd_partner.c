/*
 * vocohook partner: the admin side of partners. An API key is shown once, when it is made
 * (create, rotate-key); the store keeps only its SHA-256. check-key tells whether a key
 * still works, reading it from standard input (arguments show in ps) and printing nothing.
 */
#include "cli/cli.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vocohook/config.h>

#include "core/banned.h"

extern char **environ;

static const char partner_usage[] =
    "usage: vocohook partner create NAME [--db URL] [--config FILE]\n"
    "       vocohook partner list [--db URL] [--config FILE]\n"
    "       vocohook partner rotate-key ID [--db URL] [--config FILE]\n"
    "       vocohook partner check-key ID [--db URL] [--config FILE] < KEY\n"
    "Creates partners, lists them, and replaces a partner's API key. The key is printed\n"
    "once, when it is made; the store keeps only its hash. check-key reads a key from\n"
    "standard input and exits 0 if it is a live key of partner ID, 1 if not.\n"
    "  --db URL       the store: sqlite:PATH (default: VOCOHOOK_DB, else the config file's\n"
    "                 db, else sqlite:./var/vocohook.db)\n"
    "  --config FILE  the serve config file (or VOCOHOOK_CONFIG), for its db\n";

static void wipe(char *p, size_t n)
{
    volatile char *v = p;

    while (n--)
        *v++ = '\0';
}

/* A new API key and its hash. Returns 0 or an exit code after printing why. */
static int new_key(char key[VH_APIKEY_LEN + 1], char hash[VH_SHA256_HEX_LEN + 1])
{
    struct vh_error err = VH_ERROR_INIT;

    if (vh_apikey_new(key, &err) < 0 || vh_sha256_hex(key, VH_APIKEY_LEN, hash, &err) < 0)
        return cli_fail("partner", CLI_FAILED, "%s", err.msg);
    return 0;
}

static int print_key(const char *partner_id, char key[VH_APIKEY_LEN + 1])
{
    int ok;

    ok = printf("partner_id: %s\napi_key: %s\n", partner_id, key) > 0 && fflush(stdout) == 0;
    wipe(key, VH_APIKEY_LEN + 1);
    /* The store has only the key's hash: a key not written is gone, and the way on is a new one. */
    if (!ok)
        return cli_fail("partner", CLI_FAILED,
                        "writing standard output failed: the key of partner %s is lost (the "
                        "store keeps only its hash); `vocohook partner rotate-key %s` makes "
                        "a new one",
                        partner_id, partner_id);
    return CLI_OK;
}

static int partner_create(struct vh_store *st, const char *name)
{
    struct vh_error err = VH_ERROR_INIT;
    struct vh_partner p;
    char key[VH_APIKEY_LEN + 1], hash[VH_SHA256_HEX_LEN + 1];
    int code, rc;

    code = new_key(key, hash);
    if (code)
        return code;
    rc = vh_store_partner_create(st, name, hash, vh_time_now_ms(), &p, &err);
    if (rc < 0) {
        wipe(key, sizeof(key));
        return cli_fail("partner", cli_exit_for(rc), "%s", err.msg);
    }
    return print_key(p.id, key);
}

static int partner_rotate(struct vh_store *st, const char *id)
{
    struct vh_error err = VH_ERROR_INIT;
    char key[VH_APIKEY_LEN + 1], hash[VH_SHA256_HEX_LEN + 1];
    int code, rc;

    code = new_key(key, hash);
    if (code)
        return code;
    rc = vh_store_partner_rotate_key(st, id, hash, vh_time_now_ms(), &err);
    if (rc < 0) {
        wipe(key, sizeof(key));
        return cli_fail("partner", cli_exit_for(rc), "%s", err.msg);
    }
    return print_key(id, key);
}

/*
 * Whether the key on standard input (one line) is a live key of partner `id`: CLI_OK or
 * CLI_REJECTED with a line on stderr that never shows the key.
 */
static int partner_check_key(struct vh_store *st, const char *id)
{
    struct vh_error err = VH_ERROR_INIT;
    struct vh_buf in = VH_BUF_INIT(VH_APIKEY_LEN + 2); /* the key and "\r\n" */
    struct vh_partner p;
    char hash[VH_SHA256_HEX_LEN + 1];
    size_t len;
    int code, rc;

    code = cli_read_input("partner", "-", &in);
    if (code)
        goto out;
    len = in.len;
    if (len > 0 && in.data[len - 1] == '\n')
        len--;
    if (len > 0 && in.data[len - 1] == '\r')
        len--;
    if (len == 0) {
        code = cli_fail("partner", CLI_REJECTED, "check-key: no key on standard input");
        goto out;
    }
    if (vh_sha256_hex(in.data, len, hash, &err) < 0) {
        code = cli_fail("partner", CLI_FAILED, "%s", err.msg);
        goto out;
    }
    rc = vh_store_partner_by_key(st, hash, &p, &err);
    if (rc < 0 && rc != VH_ENOTFOUND) {
        code = cli_fail("partner", cli_exit_for(rc), "%s", err.msg);
        goto out;
    }
    if (rc == VH_ENOTFOUND || strcmp(p.id, id) != 0)
        code =
            cli_fail("partner", CLI_REJECTED,
                     "check-key: the key on standard input is not a live key of partner '%s'", id);
out:
    if (in.data)
        wipe(in.data, in.len);
    vh_buf_release(&in);
    return code;
}

/* One partner per line: id, name and creation time, separated by tabs. */
static int partner_list(struct vh_store *st)
{
    struct vh_error err = VH_ERROR_INIT;
    struct vh_partner *ps = NULL;
    char ts[VH_TIME_LEN + 1];
    size_t n = 0, i;
    int rc;

    rc = vh_store_partner_list(st, &ps, &n, &err);
    if (rc < 0)
        return cli_fail("partner", cli_exit_for(rc), "%s", err.msg);
    for (i = 0; i < n; i++) {
        /* The store hands out names without control characters: one line, one column. */
        if (vh_time_format(ps[i].created_ms, ts) < 0)
            ts[0] = '\0';
        printf("%s\t%s\t%s\n", ps[i].id, ps[i].name, ts);
    }
    vh_free(ps);
    if (fflush(stdout) != 0)
        return cli_fail("partner", CLI_FAILED, "writing standard output failed");
    return CLI_OK;
}

int cmd_partner(int argc, char **argv)
{
    static const struct option opts[] = {{"db", required_argument, NULL, 'd'},
                                         {"config", required_argument, NULL, 'c'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    struct vh_error err = VH_ERROR_INIT;
    struct vh_store *st = NULL;
    struct vh_config cfg;
    struct vh_config_flag flag = {"db", NULL};
    const char *file = getenv("VOCOHOOK_CONFIG");
    const char *sub;
    int c, want, code, rc;

    if (file && !*file)
        file = NULL;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (c == 'd') {
            flag.value = optarg;
        } else if (c == 'c') {
            file = optarg;
        } else if (c == 'h') {
            fputs(partner_usage, stdout);
            return CLI_OK;
        } else {
            fputs(partner_usage, stderr);
            return CLI_USAGE;
        }
    }
    if (optind >= argc) {
        fputs(partner_usage, stderr);
        return CLI_USAGE;
    }
    sub = argv[optind];
    want = strcmp(sub, "list") == 0 ? 1 : 2;
    if (strcmp(sub, "list") != 0 && strcmp(sub, "create") != 0 && strcmp(sub, "rotate-key") != 0 &&
        strcmp(sub, "check-key") != 0) {
        fprintf(stderr, "vocohook partner: '%s' is not a partner command\n", sub);
        fputs(partner_usage, stderr);
        return CLI_USAGE;
    }
    if (argc - optind != want) {
        fprintf(stderr, "vocohook partner %s: %s\n", sub,
                want == 1 ? "takes no argument" : "takes exactly one argument");
        fputs(partner_usage, stderr);
        return CLI_USAGE;
    }
    /* The store as serve finds it: --db, VOCOHOOK_DB, the config file's db, the default. */
    rc = vh_config_init(&cfg, &err);
    if (rc == 0)
        rc = vh_config_load(&cfg, file, (const char *const *)environ, &flag, flag.value ? 1 : 0,
                            &err);
    if (rc < 0) {
        vh_config_release(&cfg);
        return cli_fail("partner", rc == VH_EINVAL ? CLI_USAGE : CLI_FAILED, "%s", err.msg);
    }
    code = cli_default_store_dir("partner", cfg.db);
    if (code == 0) {
        rc = vh_store_open(cfg.db, &st, &err);
        if (rc < 0)
            code = cli_fail("partner", rc == VH_EINVAL ? CLI_USAGE : CLI_FAILED, "%s", err.msg);
    }
    vh_config_release(&cfg);
    if (code)
        return code;
    if (strcmp(sub, "create") == 0)
        code = partner_create(st, argv[optind + 1]);
    else if (strcmp(sub, "rotate-key") == 0)
        code = partner_rotate(st, argv[optind + 1]);
    else if (strcmp(sub, "check-key") == 0)
        code = partner_check_key(st, argv[optind + 1]);
    else
        code = partner_list(st);
    vh_store_close(st);
    return code;
}
