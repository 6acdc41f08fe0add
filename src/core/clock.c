#include <vocohook/clock.h>

#include <stdbool.h>
#include <time.h>

#include "core/banned.h"

/*
 * Civil-date arithmetic after Howard Hinnant's days_from_civil / civil_from_days: exact
 * for the proleptic Gregorian calendar, no tables, no libc time zone state.
 */
static int64_t days_from_civil(int64_t y, int64_t m, int64_t d)
{
    int64_t era, yoe, doy, doe;

    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = y - era * 400;
    doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, int64_t *m, int64_t *d)
{
    int64_t era, doe, yoe, doy, mp;

    z += 719468;
    era = (z >= 0 ? z : z - 146096) / 146097;
    doe = z - era * 146097;
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = yoe + era * 400 + (*m <= 2);
}

static bool is_leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int days_in_month(int64_t y, int64_t m)
{
    static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

    return m == 2 && is_leap(y) ? 29 : days[m - 1];
}

/* Reads `n` ASCII digits at `s`; false when any is not a digit. */
static bool read_digits(const char *s, int n, int64_t *out)
{
    int64_t v = 0;
    int i;

    for (i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

int vh_time_parse(const char *s, size_t len, int64_t *out_ms, struct vh_error *err)
{
    /* Field offsets in "YYYY-MM-DDTHH:MM:SS.mmmZ". */
    static const struct {
        int off, n;
        const char *name;
    } fields[] = {{0, 4, "year"},    {5, 2, "month"},   {8, 2, "day"},          {11, 2, "hour"},
                  {14, 2, "minute"}, {17, 2, "second"}, {20, 3, "milliseconds"}};
    static const struct {
        int off;
        char c;
    } seps[] = {{4, '-'}, {7, '-'}, {10, 'T'}, {13, ':'}, {16, ':'}, {19, '.'}, {23, 'Z'}};
    int64_t v[7];
    size_t i;

    if (len != VH_TIME_LEN)
        return vh_error_set(err, VH_EINVAL,
                            "must be an ISO 8601 UTC time like 2026-03-15T14:32:08.000Z "
                            "(24 characters, got %zu)",
                            len);
    for (i = 0; i < sizeof(seps) / sizeof(seps[0]); i++)
        if (s[seps[i].off] != seps[i].c)
            return vh_error_set(err, VH_EINVAL,
                                "must be an ISO 8601 UTC time like 2026-03-15T14:32:08.000Z "
                                "(expected '%c' at character %d)",
                                seps[i].c, seps[i].off + 1);
    for (i = 0; i < 7; i++)
        if (!read_digits(s + fields[i].off, fields[i].n, &v[i]))
            return vh_error_set(err, VH_EINVAL,
                                "must be an ISO 8601 UTC time like 2026-03-15T14:32:08.000Z "
                                "(%s is not a number)",
                                fields[i].name);
    if (v[0] < 1970)
        return vh_error_set(err, VH_EINVAL, "year %04lld is before 1970", (long long)v[0]);
    if (v[1] < 1 || v[1] > 12)
        return vh_error_set(err, VH_EINVAL, "month %02lld is out of range", (long long)v[1]);
    if (v[2] < 1 || v[2] > days_in_month(v[0], v[1]))
        return vh_error_set(err, VH_EINVAL, "day %02lld does not exist in %04lld-%02lld",
                            (long long)v[2], (long long)v[0], (long long)v[1]);
    if (v[3] > 23)
        return vh_error_set(err, VH_EINVAL, "hour %02lld is out of range", (long long)v[3]);
    if (v[4] > 59)
        return vh_error_set(err, VH_EINVAL, "minute %02lld is out of range", (long long)v[4]);
    if (v[5] > 59)
        return vh_error_set(err, VH_EINVAL, "second %02lld is out of range", (long long)v[5]);
    *out_ms =
        ((days_from_civil(v[0], v[1], v[2]) * 24 + v[3]) * 60 + v[4]) * 60000 + v[5] * 1000 + v[6];
    return 0;
}

int vh_time_format(int64_t ms, char out[VH_TIME_LEN + 1])
{
    int64_t days, rem, y, m, d;
    char *p = out;
    int64_t parts[7];
    static const int widths[7] = {4, 2, 2, 2, 2, 2, 3};
    static const char after[7] = {'-', '-', 'T', ':', ':', '.', 'Z'};
    int i, k;

    if (ms < VH_TIME_MIN_MS || ms > VH_TIME_MAX_MS) {
        out[0] = '\0';
        return VH_EINVAL;
    }
    days = ms / 86400000;
    rem = ms % 86400000;
    civil_from_days(days, &y, &m, &d);
    parts[0] = y;
    parts[1] = m;
    parts[2] = d;
    parts[3] = rem / 3600000;
    parts[4] = rem / 60000 % 60;
    parts[5] = rem / 1000 % 60;
    parts[6] = rem % 1000;
    /* Digit by digit: no printf on the signing hot path. */
    for (i = 0; i < 7; i++) {
        int64_t v = parts[i];

        for (k = widths[i] - 1; k >= 0; k--) {
            p[k] = (char)('0' + v % 10);
            v /= 10;
        }
        p += widths[i];
        *p++ = after[i];
    }
    *p = '\0';
    return 0;
}

int64_t vh_time_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t vh_time_mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
