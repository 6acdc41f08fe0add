/*
 * vocohook sessions: what the receiver stored. `list` is a table for people, `show` one
 * session as a readable conversation with its latency and jobs, `export` every session as
 * JSON lines (the payload as received, compacted) or CSV (the fields flattened).
 *
 * It opens the inbox read-mostly while `vocohook receive` may be writing it (WAL: neither
 * waits for the other) and never creates it.
 */
#include "cli/cli.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vocohook/config.h>
#include <vocohook/json.h>
#include <vocohook/receive.h>

#include "core/banned.h"

#define INBOX_DEFAULT "./var/inbox.db"
#define AGENT_COL     24 /* bytes of the agent name in `list` */
#define LINE_MAX_OUT  (4 * 1024 * 1024)

static const char sessions_usage[] =
    "usage: vocohook sessions list [--db PATH] [--since T] [--status S] [--limit N]\n"
    "       vocohook sessions show ID [--db PATH]\n"
    "       vocohook sessions export --format jsonl|csv [--db PATH] [--since T] [--status S]\n"
    "Shows what `vocohook receive` stored, oldest first.\n"
    "  --db PATH     the inbox (default: VOCOHOOK_INBOX, else ./var/inbox.db)\n"
    "  --since T     received at or after T: 2026-03-15T00:00:00.000Z, or a duration ago\n"
    "                (90m, 24h)\n"
    "  --status S    the recording state: none, skipped, pending, downloading, downloaded,\n"
    "                failed or expired\n"
    "  --limit N     at most N sessions\n"
    "  --format F    export as jsonl (one object per session, with the payload) or csv\n";

struct sessions_args {
    const char *db;
    const char *sub;
    const char *id;
    const char *format;
    struct vh_inbox_filter filter;
    int64_t now_ms;
};

/* ---- small helpers -------------------------------------------------------------------------- */

static void time_text(int64_t ms, char out[VH_TIME_LEN + 1])
{
    if (vh_time_format(ms, out) < 0)
        out[0] = '\0';
}

/*
 * The length in bytes of the control character at `s` (`n` bytes left), or 0 when there is
 * none there. The payload's text is well-formed UTF-8 (the parse checked it); a terminal
 * acts on C0 and DEL, and on C1 (U+0080 to U+009F, two bytes: U+009B is CSI to some
 * terminals, U+0085 a line break), as decisions.md says of stored names.
 */
static size_t control_len(const char *s, size_t n)
{
    unsigned char c = (unsigned char)s[0];

    if (c < 0x20 || c == 0x7f)
        return 1;
    if (c == 0xc2 && n >= 2 && (unsigned char)s[1] >= 0x80 && (unsigned char)s[1] < 0xa0)
        return 2;
    return 0;
}

/* Writes `n` bytes of free text from the payload with each control character as spaces. */
static void put_text_n(const char *s, size_t n)
{
    size_t i, k;

    for (i = 0; i < n; i += k) {
        k = control_len(s + i, n - i);
        if (k == 0) {
            putchar((unsigned char)s[i]);
            k = 1;
        } else {
            fputs(k == 1 ? " " : "  ", stdout);
        }
    }
}

/*
 * Copies `s` (`len` bytes) for display: control characters become spaces, and it is cut at
 * `max` bytes on a UTF-8 character boundary (with "..." after it).
 */
static void display(const char *s, size_t len, size_t max, char *out, size_t out_size)
{
    size_t n = len, i, k;

    if (n > max) {
        n = max;
        while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
            n--;
    }
    if (n + 4 > out_size)
        n = out_size - 4;
    for (i = 0; i < n; i += k) {
        k = control_len(s + i, n - i);
        if (k == 0) {
            out[i] = s[i];
            k = 1;
        } else {
            memset(out + i, ' ', k);
        }
    }
    if (n < len) {
        memcpy(out + n, "...", 3);
        n += 3;
    }
    out[n] = '\0';
}

static const struct vh_inbox_job *find_job(const struct vh_inbox_session *s, enum vh_job_kind k)
{
    size_t i;

    for (i = 0; i < s->n_jobs; i++)
        if (s->jobs[i].kind == k)
            return &s->jobs[i];
    return NULL;
}

/* The payload, parsed leniently (it was checked on arrival). NULL if it no longer parses. */
static struct vh_event *parse_body(const struct vh_inbox_session *s)
{
    struct vh_event *ev = NULL;

    if (vh_event_parse(s->body.data ? s->body.data : "", s->body.len, VH_PARSE_ALLOW_UNKNOWN, &ev,
                       NULL) < 0)
        return NULL;
    return ev;
}

/* ---- list --------------------------------------------------------------------------------- */

static int list_row(void *ud, const struct vh_inbox_session *s)
{
    struct vh_event *ev = parse_body(s);
    char received[VH_TIME_LEN + 1], agent[AGENT_COL + 8], dur[24];
    const char *call = "-";

    (void)ud;
    time_text(s->received_ms, received);
    agent[0] = '\0';
    snprintf(dur, sizeof(dur), "-");
    if (ev) {
        display(ev->session->agent_name, strlen(ev->session->agent_name), AGENT_COL, agent,
                sizeof(agent));
        snprintf(dur, sizeof(dur), "%llds", (long long)ev->session->duration_seconds);
        if (ev->session->has_call)
            call = vh_call_status_name(ev->session->call.status);
    }
    printf("%-24s  %-36s  %-27s  %8s  %-9s  %s\n", received, s->session_id, agent, dur, call,
           vh_recording_state_name(s->recording));
    vh_event_free(ev);
    return 0;
}

static int do_list(struct vh_inbox *ib, struct sessions_args *a)
{
    struct vh_error err = VH_ERROR_INIT;
    int rc;

    a->filter.with_body = true; /* the agent, duration and call status come from the payload */
    printf("%-24s  %-36s  %-27s  %8s  %-9s  %s\n", "RECEIVED", "SESSION", "AGENT", "DURATION",
           "CALL", "RECORDING");
    rc = vh_inbox_foreach(ib, &a->filter, list_row, NULL, &err);
    if (rc < 0)
        return cli_fail("sessions", CLI_FAILED, "%s", err.msg);
    if (fflush(stdout) != 0)
        return cli_fail("sessions", CLI_FAILED, "writing standard output failed");
    return CLI_OK;
}

/* ---- show --------------------------------------------------------------------------------- */

static void show_latency(const struct vh_session *s)
{
    struct vh_latency derived;
    size_t i, n = 0;

    for (i = 0; i < s->n_turns; i++)
        if (s->turns[i].role == VH_ROLE_BOT && s->turns[i].has_latency)
            n++;
    vh_session_derive_latency(s, &derived);
    printf("latency     min %lld ms, avg %lld ms, max %lld ms (as sent)\n",
           (long long)s->latency.min_ms, (long long)s->latency.avg_ms,
           (long long)s->latency.max_ms);
    printf("            min %lld ms, avg %lld ms, max %lld ms over %zu bot turn%s with latency\n",
           (long long)derived.min_ms, (long long)derived.avg_ms, (long long)derived.max_ms, n,
           n == 1 ? "" : "s");
}

static void show_job(const char *label, const struct vh_inbox_job *j, bool download)
{
    char when[VH_TIME_LEN + 1];

    if (download && j->state == VH_JOB_DONE) {
        printf("%-11s downloaded  %s  (%llu bytes, sha256 %s)\n", label, j->path,
               (unsigned long long)j->size, j->sha256);
        return;
    }
    printf("%-11s %s", label,
           download && j->state == VH_JOB_RUNNING ? "downloading" : vh_job_state_name(j->state));
    printf(" after %u attempt%s", j->attempts, j->attempts == 1 ? "" : "s");
    if (j->state == VH_JOB_PENDING) {
        time_text(j->next_attempt_ms, when);
        printf(", next at %s", when);
    }
    if (download && j->state != VH_JOB_EXPIRED && j->state != VH_JOB_FAILED) {
        time_text(j->deadline_ms, when);
        printf(", URL expires %s", when);
    }
    if (j->error[0])
        printf(": %s", j->error);
    printf("\n");
}

static void show_transcript(const struct vh_session *s)
{
    char when[VH_TIME_LEN + 1], lat[32];
    const struct vh_turn *t;
    const char *nl;
    size_t i, j, k;

    printf("\ntranscript (%zu turn%s)\n", s->n_turns, s->n_turns == 1 ? "" : "s");
    for (i = 0; i < s->n_turns; i++) {
        t = &s->turns[i];
        time_text(t->ts_ms, when);
        lat[0] = '\0';
        if (t->role == VH_ROLE_BOT && t->has_latency)
            snprintf(lat, sizeof(lat), " (+%lld ms)", (long long)t->latency_ms);
        /* "HH:MM:SS.mmm" of the ISO form, then the speaker. */
        printf("  %.12s  %s%s: ", when + 11, t->role == VH_ROLE_BOT ? "bot" : "user", lat);
        /* A line break stays one, indented under the text; other controls are spaces. */
        for (j = 0; j < t->content_len; j = k + 1) {
            nl = memchr(t->content + j, '\n', t->content_len - j);
            k = nl ? (size_t)(nl - t->content) : t->content_len;
            put_text_n(t->content + j, k - j);
            if (nl)
                fputs("\n                ", stdout);
        }
        putchar('\n');
    }
}

static void show_session(const struct vh_inbox_session *is, const struct vh_event *ev)
{
    const struct vh_session *s = ev->session;
    char t1[VH_TIME_LEN + 1], t2[VH_TIME_LEN + 1], num[VH_NUMBER_MAX];

    printf("session     %s\n", is->session_id);
    fputs("agent       ", stdout);
    put_text_n(s->agent_name, strlen(s->agent_name));
    printf(" (%s)\n", s->agent_id);
    time_text(ev->ts_ms, t1);
    time_text(is->received_ms, t2);
    printf("event       %s, signed %s, received %s\n", t1, is->signed_at, t2);
    if (is->webhook_id[0])
        printf("webhook id  %s\n", is->webhook_id);
    vh_number_format(s->credits_used, num);
    printf("duration    %lld s, %s credits\n", (long long)s->duration_seconds, num);
    if (s->has_call)
        printf("call        %s  %s -> %s, %s\n", s->call.call_id, s->call.from_number,
               s->call.to_number, vh_call_status_name(s->call.status));
    else
        printf("call        none (not a phone call)\n");
    show_latency(s);
}

static int do_show(struct vh_inbox *ib, const struct sessions_args *a)
{
    struct vh_error err = VH_ERROR_INIT;
    struct vh_inbox_session s;
    const struct vh_inbox_job *j;
    struct vh_event *ev;
    int rc;

    rc = vh_inbox_get(ib, a->id, &s, &err);
    if (rc < 0)
        return cli_fail("sessions", cli_exit_for(rc), "%s", err.msg);
    ev = parse_body(&s);
    if (!ev) {
        printf("session     %s\n(the stored payload no longer parses)\n", s.session_id);
    } else {
        show_session(&s, ev);
    }
    j = find_job(&s, VH_JOB_DOWNLOAD);
    if (j)
        show_job("recording", j, true);
    else
        printf("recording   %s\n", s.recording == VH_RECORDING_NONE
                                       ? "none (recording_url was null)"
                                       : "skipped (the receiver had no --recordings directory)");
    j = find_job(&s, VH_JOB_EXEC);
    if (j)
        show_job("exec", j, false);
    j = find_job(&s, VH_JOB_FORWARD);
    if (j)
        show_job("forward", j, false);
    if (ev)
        show_transcript(ev->session);
    vh_event_free(ev);
    vh_inbox_session_release(&s);
    if (fflush(stdout) != 0)
        return cli_fail("sessions", CLI_FAILED, "writing standard output failed");
    return CLI_OK;
}

/* ---- export --------------------------------------------------------------------------------- */

/*
 * Appends JSON text without the whitespace between tokens. Strings cannot hold a raw
 * newline or tab (the parser checked), so only bytes outside strings are dropped.
 */
static int add_compact(struct vh_buf *b, const char *p, size_t n)
{
    bool in_str = false, esc = false;
    size_t i;
    int rc = 0;

    for (i = 0; i < n && rc == 0; i++) {
        char c = p[i];

        if (in_str) {
            if (esc)
                esc = false;
            else if (c == '\\')
                esc = true;
            else if (c == '"')
                in_str = false;
        } else if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
            continue;
        } else if (c == '"') {
            in_str = true;
        }
        rc = vh_buf_addc(b, c);
    }
    return rc;
}

static int add_str(struct vh_buf *b, const char *s)
{
    return vh_json_add_string(b, s, strlen(s));
}

static int add_job_json(struct vh_buf *b, const struct vh_inbox_job *j)
{
    char t[VH_TIME_LEN + 1];
    int rc = vh_buf_adds(b, "{\"kind\":");

    if (!rc)
        rc = add_str(b, vh_job_kind_name(j->kind));
    if (!rc)
        rc = vh_buf_adds(b, ",\"state\":");
    if (!rc)
        rc = add_str(b, vh_job_state_name(j->state));
    if (!rc)
        rc = vh_buf_addf(b, ",\"attempts\":%u,\"status\":%d,\"error\":", j->attempts, j->status);
    if (!rc)
        rc = j->error[0] ? add_str(b, j->error) : vh_buf_adds(b, "null");
    if (!rc && j->state == VH_JOB_PENDING) {
        time_text(j->next_attempt_ms, t);
        rc = vh_buf_addf(b, ",\"next_attempt_at\":\"%s\"", t);
    }
    if (!rc && j->kind == VH_JOB_DOWNLOAD) {
        time_text(j->deadline_ms, t);
        rc = vh_buf_addf(b, ",\"expires_at\":\"%s\"", t);
    }
    if (!rc && j->kind == VH_JOB_DOWNLOAD && j->state == VH_JOB_DONE) {
        rc = vh_buf_adds(b, ",\"path\":");
        if (!rc)
            rc = add_str(b, j->path);
        if (!rc)
            rc = vh_buf_addf(b, ",\"size\":%llu,\"sha256\":\"%s\"", (unsigned long long)j->size,
                             j->sha256);
    }
    if (!rc)
        rc = vh_buf_addc(b, '}');
    return rc;
}

/*
 * Writes one exported line, or reports why it could not be built (`rc` < 0). Returns 0, or
 * -1 after printing the error: vh_inbox_foreach stops and hands the -1 back.
 */
static int write_line(const struct vh_inbox_session *s, const struct vh_buf *b, int rc)
{
    if (rc < 0) {
        cli_fail("sessions", CLI_FAILED, "export '%s': %s", s->session_id, vh_strerror(rc));
        return -1;
    }
    if (fwrite(b->data, 1, b->len, stdout) != b->len) {
        cli_fail("sessions", CLI_FAILED, "writing standard output failed");
        return -1;
    }
    return 0;
}

static int export_jsonl(void *ud, const struct vh_inbox_session *s)
{
    struct vh_buf *b = ud;
    char t[VH_TIME_LEN + 1];
    size_t i;
    int rc;

    vh_buf_reset(b);
    time_text(s->received_ms, t);
    rc = vh_buf_addf(b,
                     "{\"session_id\":\"%s\",\"received_at\":\"%s\",\"signed_at\":\"%s\","
                     "\"webhook_id\":",
                     s->session_id, t, s->signed_at);
    if (!rc)
        rc = s->webhook_id[0] ? add_str(b, s->webhook_id) : vh_buf_adds(b, "null");
    if (!rc)
        rc = vh_buf_addf(b, ",\"recording\":\"%s\",\"jobs\":[",
                         vh_recording_state_name(s->recording));
    for (i = 0; !rc && i < s->n_jobs; i++) {
        if (i)
            rc = vh_buf_addc(b, ',');
        if (!rc)
            rc = add_job_json(b, &s->jobs[i]);
    }
    if (!rc)
        rc = vh_buf_adds(b, "],\"payload\":");
    if (!rc)
        rc = add_compact(b, s->body.data, s->body.len);
    if (!rc)
        rc = vh_buf_adds(b, "}\n");
    return write_line(s, b, rc);
}

/* Appends one CSV field (RFC 4180: quoted when it holds a comma, quote or line break). */
static int csv_field(struct vh_buf *b, const char *s, bool first)
{
    int rc = first ? 0 : vh_buf_addc(b, ',');

    if (rc || !strpbrk(s, ",\"\r\n"))
        return rc ? rc : vh_buf_adds(b, s);
    rc = vh_buf_addc(b, '"');
    for (; !rc && *s; s++)
        rc = *s == '"' ? vh_buf_adds(b, "\"\"") : vh_buf_addc(b, *s);
    return rc ? rc : vh_buf_addc(b, '"');
}

/*
 * Appends the sender's free text as a CSV field. Spreadsheets may run a cell that starts with
 * =, +, -, @, a tab or a CR as a formula (CSV injection, OWASP), so such text is written
 * after a single quote, which they show as text. The other columns hold validated ids,
 * E.164 numbers, times and numbers, which cannot call a function.
 */
static int csv_text(struct vh_buf *b, const char *s)
{
    char quoted[VH_NAME_MAX + 2]; /* the parser bounds agent_name */

    if (!*s || !strchr("=+-@\t\r", *s))
        return csv_field(b, s, false);
    snprintf(quoted, sizeof(quoted), "'%s", s);
    return csv_field(b, quoted, false);
}

static const char *const csv_columns[] = {
    "session_id",       "received_at",    "event_timestamp", "agent_id",         "agent_name",
    "duration_seconds", "credits_used",   "call_id",         "from_number",      "to_number",
    "call_status",      "turns",          "latency_min_ms",  "latency_avg_ms",   "latency_max_ms",
    "recording_state",  "recording_path", "recording_size",  "recording_sha256", NULL};

static int csv_session_fields(struct vh_buf *b, const struct vh_event *ev)
{
    const struct vh_session *s = ev->session;
    char t[VH_TIME_LEN + 1], n[8][32], num[VH_NUMBER_MAX];
    int rc;

    time_text(ev->ts_ms, t);
    vh_number_format(s->credits_used, num);
    snprintf(n[0], sizeof(n[0]), "%lld", (long long)s->duration_seconds);
    snprintf(n[1], sizeof(n[1]), "%zu", s->n_turns);
    snprintf(n[2], sizeof(n[2]), "%lld", (long long)s->latency.min_ms);
    snprintf(n[3], sizeof(n[3]), "%lld", (long long)s->latency.avg_ms);
    snprintf(n[4], sizeof(n[4]), "%lld", (long long)s->latency.max_ms);
    rc = csv_field(b, t, false);
    if (!rc)
        rc = csv_field(b, s->agent_id, false);
    if (!rc)
        rc = csv_text(b, s->agent_name);
    if (!rc)
        rc = csv_field(b, n[0], false);
    if (!rc)
        rc = csv_field(b, num, false);
    if (!rc)
        rc = csv_field(b, s->has_call ? s->call.call_id : "", false);
    if (!rc)
        rc = csv_field(b, s->has_call ? s->call.from_number : "", false);
    if (!rc)
        rc = csv_field(b, s->has_call ? s->call.to_number : "", false);
    if (!rc)
        rc = csv_field(b, s->has_call ? vh_call_status_name(s->call.status) : "", false);
    if (!rc)
        rc = csv_field(b, n[1], false);
    if (!rc)
        rc = csv_field(b, n[2], false);
    if (!rc)
        rc = csv_field(b, n[3], false);
    if (!rc)
        rc = csv_field(b, n[4], false);
    return rc;
}

static int export_csv(void *ud, const struct vh_inbox_session *s)
{
    const struct vh_inbox_job *j = find_job(s, VH_JOB_DOWNLOAD);
    struct vh_event *ev = parse_body(s);
    struct vh_buf *b = ud;
    char t[VH_TIME_LEN + 1], size[32] = "";
    bool done = j && j->state == VH_JOB_DONE;
    int rc, k;

    vh_buf_reset(b);
    time_text(s->received_ms, t);
    rc = csv_field(b, s->session_id, true);
    if (!rc)
        rc = csv_field(b, t, false);
    if (!rc && ev)
        rc = csv_session_fields(b, ev);
    for (k = 0; !rc && !ev && k < 13; k++)
        rc = csv_field(b, "", false);
    if (done)
        snprintf(size, sizeof(size), "%llu", (unsigned long long)j->size);
    if (!rc)
        rc = csv_field(b, vh_recording_state_name(s->recording), false);
    if (!rc)
        rc = csv_field(b, done ? j->path : "", false);
    if (!rc)
        rc = csv_field(b, size, false);
    if (!rc)
        rc = csv_field(b, done ? j->sha256 : "", false);
    if (!rc)
        rc = vh_buf_adds(b, "\r\n");
    vh_event_free(ev);
    return write_line(s, b, rc);
}

static int do_export(struct vh_inbox *ib, struct sessions_args *a)
{
    struct vh_error err = VH_ERROR_INIT;
    struct vh_buf line = VH_BUF_INIT(LINE_MAX_OUT);
    bool csv;
    size_t i;
    int rc;

    if (!a->format || (strcmp(a->format, "jsonl") != 0 && strcmp(a->format, "csv") != 0))
        return cli_fail("sessions", CLI_USAGE, "export: --format jsonl or --format csv");
    csv = strcmp(a->format, "csv") == 0;
    if (csv) {
        for (i = 0; csv_columns[i]; i++)
            printf("%s%s", i ? "," : "", csv_columns[i]);
        printf("\r\n");
    }
    a->filter.with_body = true;
    rc = vh_inbox_foreach(ib, &a->filter, csv ? export_csv : export_jsonl, &line, &err);
    vh_buf_release(&line);
    if (rc < 0)
        return err.code ? cli_fail("sessions", CLI_FAILED, "%s", err.msg) : CLI_FAILED;
    if (fflush(stdout) != 0)
        return cli_fail("sessions", CLI_FAILED, "writing standard output failed");
    return CLI_OK;
}

/* ---- arguments --------------------------------------------------------------------------------
 */

/* --since: an exact timestamp, or a duration before now. */
static int parse_since(struct sessions_args *a, const char *v)
{
    struct vh_error err = VH_ERROR_INIT;
    int64_t ms;

    if (vh_time_parse(v, strlen(v), &ms, NULL) == 0) {
        a->filter.since_ms = ms;
        return 0;
    }
    if (vh_duration_parse(v, &ms, &err) == 0) {
        a->filter.since_ms = a->now_ms - ms;
        return 0;
    }
    return cli_fail("sessions", CLI_USAGE,
                    "--since: expected YYYY-MM-DDTHH:MM:SS.mmmZ or a duration like 24h, got '%s'",
                    v);
}

static int parse_args(int argc, char **argv, struct sessions_args *a)
{
    static const struct option opts[] = {{"db", required_argument, NULL, 'd'},
                                         {"since", required_argument, NULL, 's'},
                                         {"status", required_argument, NULL, 't'},
                                         {"limit", required_argument, NULL, 'l'},
                                         {"format", required_argument, NULL, 'f'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    struct vh_error err = VH_ERROR_INIT;
    int64_t n;
    int c, code;

    optind = 1;
    for (;;) {
        c = getopt_long(argc, argv, "h", opts, NULL);
        if (c == -1)
            break;
        code = 0;
        if (c == 'd') {
            a->db = optarg;
        } else if (c == 's') {
            code = parse_since(a, optarg);
        } else if (c == 't') {
            if (vh_recording_state_parse(optarg, strlen(optarg), &a->filter.recording_state, &err) <
                0)
                return cli_fail("sessions", CLI_USAGE, "--status: %s", err.msg);
            a->filter.has_recording_state = true;
        } else if (c == 'l') {
            code = cli_parse_int("sessions", "--limit", optarg, 1, INT64_C(1) << 40, &n);
            a->filter.limit = (size_t)n;
        } else if (c == 'f') {
            a->format = optarg;
        } else if (c == 'h') {
            fputs(sessions_usage, stdout);
            return -1;
        } else {
            fputs(sessions_usage, stderr);
            return CLI_USAGE;
        }
        if (code)
            return code;
    }
    if (optind >= argc) {
        fputs(sessions_usage, stderr);
        return CLI_USAGE;
    }
    a->sub = argv[optind++];
    if (strcmp(a->sub, "show") == 0 && optind < argc)
        a->id = argv[optind++];
    if ((strcmp(a->sub, "show") == 0 && !a->id) || optind != argc ||
        (strcmp(a->sub, "list") != 0 && strcmp(a->sub, "show") != 0 &&
         strcmp(a->sub, "export") != 0)) {
        fprintf(stderr, "vocohook sessions: expected list, show ID or export\n");
        fputs(sessions_usage, stderr);
        return CLI_USAGE;
    }
    return 0;
}

int cmd_sessions(int argc, char **argv)
{
    struct vh_error err = VH_ERROR_INIT;
    struct sessions_args a;
    struct vh_inbox *ib = NULL;
    const char *env = getenv("VOCOHOOK_INBOX");
    int code, rc;

    memset(&a, 0, sizeof(a));
    a.db = env && *env ? env : INBOX_DEFAULT;
    a.now_ms = vh_time_now_ms();
    code = parse_args(argc, argv, &a);
    if (code)
        return code < 0 ? CLI_OK : code;
    rc = vh_inbox_open(a.db, 0, &ib, &err);
    if (rc < 0)
        return cli_fail("sessions", CLI_FAILED, "%s", err.msg);
    if (strcmp(a.sub, "list") == 0)
        code = do_list(ib, &a);
    else if (strcmp(a.sub, "show") == 0)
        code = do_show(ib, &a);
    else
        code = do_export(ib, &a);
    vh_inbox_close(ib);
    return code;
}
