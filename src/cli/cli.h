/*
 * The vocohook command line: one function per verb, shared helpers for reading input and
 * reporting errors. Only src/cli/ maps errors to exit codes (SPEC §9):
 * 0 success, 1 input rejected, 2 usage error, 3 I/O or internal failure.
 */
#ifndef VH_CLI_H
#define VH_CLI_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include <vocohook/vocohook.h>

enum cli_exit { CLI_OK = 0, CLI_REJECTED = 1, CLI_USAGE = 2, CLI_FAILED = 3 };

int cmd_serve(int argc, char **argv);
int cmd_partner(int argc, char **argv);
int cmd_emit(int argc, char **argv);
int cmd_render(int argc, char **argv);
int cmd_sign(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_validate(int argc, char **argv);
int cmd_presign(int argc, char **argv);
int cmd_receive(int argc, char **argv);
int cmd_sessions(int argc, char **argv);

/* Prints "vocohook <verb>: <message>" on stderr and returns `code`. */
int cli_fail(const char *verb, int code, const char *fmt, ...) VH_PRINTF(3, 4);

/* The exit code for a library error: rejected input (1) or our failure (3). */
int cli_exit_for(int rc);

/*
 * Reads FILE, or standard input for "-", into `out` (bounded by out->max). Returns 0 or an
 * exit code after printing why.
 */
int cli_read_input(const char *verb, const char *path, struct vh_buf *out);

/* Writes `n` bytes to stdout, then a newline when stdout is a terminal. Returns an exit code. */
int cli_write_output(const char *verb, const char *p, size_t n);

/*
 * Flushes what the verb printed to stdout. Returns CLI_OK, or CLI_FAILED after printing why
 * when it, or an earlier write, failed (a full disk, a closed stdout): a verb whose answer
 * was lost must not exit 0.
 */
int cli_flush_output(const char *verb);

/*
 * Splits VOCOHOOK_SECRETS ("a,b"; `list`, changed in place) into `secrets`, after the `*n`
 * already there, at most `max` in all; empty items are skipped. Returns 0, or CLI_USAGE after
 * printing why (a secret with white space around it, too many; never a secret's value).
 */
/*
 * The daemons' stop signals, blocked in the calling thread (threads started after inherit
 * the mask, so only the caller's sigwait sees them), with SIGPIPE ignored: SIGTERM, SIGINT,
 * and SIGHUP (there is nothing to reload) unless it was ignored when we started (nohup: a
 * blocked signal is queued even when its action is to ignore it, so it stays out).
 */
void cli_block_stop_signals(sigset_t *set);

/*
 * The daemons' heap policy (glibc; elsewhere a no-op), set before any thread starts. A
 * page touched for the first time costs a fault: 15 us on the benchmarks' VM, where glibc's
 * defaults gave a drain one fault per four deliveries. By default glibc serves a block over
 * 128 KiB with mmap and unmaps it on free (the threshold then moves with what was freed),
 * and gives a thread's free heap top back to the system past twice that: the next claim
 * (256 records of 2.6 KB, their payloads) faults the same pages in again. Here blocks up to
 * 16 MiB come from the heap, up to 16 MiB of free heap top is kept (a peak's memory stays
 * resident for the next one), and a thread's heap starts with 4 MiB mapped (address space:
 * one mprotect in place of one per page as it grows). docs/decisions.md, "The daemons'
 * heap".
 */
#define CLI_HEAP_MMAP_THRESHOLD (16 * 1024 * 1024)
#define CLI_HEAP_TRIM_THRESHOLD (16 * 1024 * 1024)
#define CLI_HEAP_TOP_PAD        (4 * 1024 * 1024)
void cli_heap_tune(void);

/*
 * What the sender's dispatcher makes ready of its heap as it starts (heap_warm_bytes; under
 * CLI_HEAP_MMAP_THRESHOLD, or the block would be mapped apart): about what its first claims
 * touch (claimed records, their payloads, the store's page cache). It faulted 2 200 pages in
 * one by one, about 33 ms of a drain's start on that VM.
 */
#define CLI_HEAP_WARM_SENDER (8 * 1024 * 1024)

/* "SIGTERM", "SIGINT" or "SIGHUP", for the stopping log record. */
const char *cli_signal_name(int sig);

int cli_split_secrets(const char *verb, char *list, const char **secrets, size_t max, size_t *n);

/*
 * The daemons' vh_log_fn: writes each JSON record as one line on stderr; `ud` points to
 * the highest enum vh_log_level to write (records above it are dropped).
 */
void cli_log_to_stderr(void *ud, enum vh_log_level level, const char *json_line);

/* A record of the CLI's own: `fmt` continues the JSON object after "ts" and "level". */
void cli_log(enum vh_log_level *max, enum vh_log_level level, const char *fmt, ...) VH_PRINTF(3, 4);

/*
 * Creates ./var (mode 0700) when `db` is the default store, sqlite:./var/vocohook.db, so that
 * a first run with the defaults works, as `vocohook receive` does for its inbox. Other paths
 * must exist. Returns 0 or CLI_FAILED after printing why.
 */
int cli_default_store_dir(const char *verb, const char *db);

/* Parses a --timestamp style value (exact ISO 8601 form). Returns 0 or CLI_USAGE. */
int cli_parse_time(const char *verb, const char *opt, const char *s, int64_t *out_ms);

/* Parses a decimal integer in [min, max]. Returns 0 or CLI_USAGE. */
int cli_parse_int(const char *verb, const char *opt, const char *s, int64_t min, int64_t max,
                  int64_t *out);

#endif
