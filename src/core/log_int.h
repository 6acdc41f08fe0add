/*
 * Private to the library: the escaping every JSON log line uses.
 */
#ifndef VH_CORE_LOG_INT_H
#define VH_CORE_LOG_INT_H

#include <stddef.h>

/*
 * Writes at most `max` bytes of the NUL-terminated `s` as the inside of a JSON string into
 * `out` (always NUL-terminated, cut short to fit `out_size`). Quotes, backslashes, control
 * bytes and every byte >= 0x7f become escapes, so the line is valid JSON (and ASCII)
 * whatever `s` holds: logs quote untrusted bytes (paths, receiver errors).
 */
void vh__json_escape(const char *s, size_t max, char *out, size_t out_size);

#endif
