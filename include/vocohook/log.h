/*
 * Logging. The library never prints: it hands each record to the application's
 * `vh_log_fn`, already formatted as one JSON object (a JSON-lines log line, no newline).
 * Records never contain secrets, API keys, tokens or request bodies.
 */
#ifndef VOCOHOOK_LOG_H
#define VOCOHOOK_LOG_H

#include <vocohook/common.h>

enum vh_log_level { VH_LOG_ERROR = 0, VH_LOG_WARN = 1, VH_LOG_INFO = 2, VH_LOG_DEBUG = 3 };

/* Receives one record; may be called from any thread, concurrently. */
typedef void vh_log_fn(void *ud, enum vh_log_level level, const char *json_line);

/* "error", "warn", "info", "debug". */
VH_API const char *vh_log_level_name(enum vh_log_level level);

#endif
