/*
 * Private to the library: the escaping every JSON log line uses.
 */
#ifndef VH_CORE_LOG_INT_H
#define VH_CORE_LOG_INT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h> /* VH__PUT_LIT */

/*
 * Writes at most `max` bytes of the NUL-terminated `s` as the inside of a JSON string into
 * `out` (always NUL-terminated, cut short to fit `out_size`). Quotes, backslashes, control
 * bytes and everything from 0x7f up become escapes, so the line is valid JSON (and ASCII)
 * whatever `s` holds: logs quote untrusted bytes (paths, receiver errors). A well-formed
 * UTF-8 character becomes its code point (`\u00e9`, a surrogate pair past U+FFFF), so a
 * client reads the character it sent; any other byte becomes itself as a code point
 * (`\u00c3`), so the bytes stay visible.
 */
void vh__json_escape(const char *s, size_t max, char *out, size_t out_size);

#define VH__LOG_HEAD_MAX 64 /* what vh__log_head writes, at most, with its NUL */

/*
 * Starts a log record in `line` (at least VH__LOG_HEAD_MAX bytes): {"ts":"<now_ms as
 * VH_TIME_LEN characters>","level":"<name>" with no comma after. Returns its length. The
 * lines of every request go through here, so it is memcpy, not printf.
 */
size_t vh__log_head(char *line, int64_t now_ms, int level);

/* Writes `v` in decimal at `out` (at most 20 characters, no NUL); returns the end. */
char *vh__log_u64(char *out, uint64_t v);

/* Copies the string literal `s` (without its NUL) to `o`; the expression is the end. */
#define VH__PUT_LIT(o, s) (memcpy((o), (s), sizeof(s) - 1), (o) + sizeof(s) - 1)

#endif
