/*
 * Fixed-window rate limits, as pure arithmetic: the partner API keeps the windows in
 * memory (one process) or in the store (several nodes), and both decide here.
 */
#include <vocohook/store.h>

#include "core/banned.h"

/*
 * Whole seconds from now until a window that started at start_ms ends: 1 to 60 (a clock
 * stepped back never makes a client wait longer than one window).
 */
static int seconds_left(int64_t start_ms, int64_t now_ms)
{
    int64_t ms = start_ms + VH_RATE_WINDOW_MS - now_ms;

    if (ms > VH_RATE_WINDOW_MS)
        ms = VH_RATE_WINDOW_MS;
    return ms <= 1000 ? 1 : (int)((ms + 999) / 1000);
}

int vh_rate_apply(struct vh_rate_window *w, const struct vh_rate_limits *lim, bool calls,
                  int64_t now_ms)
{
    /* A clock stepped back leaves the window as it is: it ends a minute after its start. */
    if (now_ms - w->general_start_ms >= VH_RATE_WINDOW_MS) {
        w->general_start_ms = now_ms;
        w->general_count = 0;
    }
    if (now_ms - w->calls_start_ms >= VH_RATE_WINDOW_MS) {
        w->calls_start_ms = now_ms;
        w->calls_count = 0;
    }
    if (lim->general_per_min >= 0 && w->general_count >= lim->general_per_min)
        return seconds_left(w->general_start_ms, now_ms);
    if (calls && lim->calls_per_min >= 0 && w->calls_count >= lim->calls_per_min)
        return seconds_left(w->calls_start_ms, now_ms);
    w->general_count++;
    if (calls)
        w->calls_count++;
    return 0;
}
