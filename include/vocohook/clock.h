/*
 * Time as the contract writes it: ISO 8601 UTC with milliseconds, exactly
 * `YYYY-MM-DDTHH:MM:SS.mmmZ` (24 bytes). Internally a time is an int64 count of
 * milliseconds since 1970-01-01T00:00:00.000Z. Years 1970 to 9999 are representable.
 */
#ifndef VOCOHOOK_CLOCK_H
#define VOCOHOOK_CLOCK_H

#include <stddef.h>
#include <stdint.h>

#include <vocohook/common.h>
#include <vocohook/error.h>

#define VH_TIME_LEN    24 /* strlen("2026-03-15T14:32:08.000Z") */
#define VH_TIME_MIN_MS INT64_C(0)
#define VH_TIME_MAX_MS INT64_C(253402300799999) /* 9999-12-31T23:59:59.999Z */

/*
 * Parses exactly the 24-byte form. Anything else (another length, a zone offset, missing
 * milliseconds, day 31 of a 30-day month, 24:00, leap seconds) fails with VH_EINVAL and a
 * message saying which part is wrong. `*out_ms` is written only on success.
 */
VH_API int vh_time_parse(const char *s, size_t len, int64_t *out_ms, struct vh_error *err);

/*
 * Writes the 24-byte form and a NUL into `out`. Returns 0, or VH_EINVAL when `ms` is
 * outside [VH_TIME_MIN_MS, VH_TIME_MAX_MS] (then `out` is "").
 */
VH_API int vh_time_format(int64_t ms, char out[VH_TIME_LEN + 1]);

/* The wall clock (CLOCK_REALTIME) in milliseconds. */
VH_API int64_t vh_time_now_ms(void);

/* A monotonic clock (CLOCK_MONOTONIC) in milliseconds, for scheduling and durations. */
VH_API int64_t vh_time_mono_ms(void);

#endif
