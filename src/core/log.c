#include <vocohook/log.h>

#include <string.h>

#include <vocohook/clock.h>

#include "core/log_int.h"

#include "core/banned.h"

const char *vh_log_level_name(enum vh_log_level level)
{
    switch (level) {
    case VH_LOG_ERROR:
        return "error";
    case VH_LOG_WARN:
        return "warn";
    case VH_LOG_INFO:
        return "info";
    case VH_LOG_DEBUG:
        return "debug";
    }
    return "info";
}

void vh__json_escape(const char *s, size_t max, char *out, size_t out_size)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0, i;

    for (i = 0; i < max && s[i] && o + 7 < out_size; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c < 0x20 || c >= 0x7f) {
            /* Bytes, not characters: a log line stays valid JSON whatever it quotes. */
            memcpy(out + o, "\\u00", 4);
            out[o + 4] = hex[c >> 4];
            out[o + 5] = hex[c & 0x0f];
            o += 6;
        } else {
            out[o++] = (char)c;
        }
    }
    out[o] = '\0';
}

size_t vh__log_head(char *line, int64_t now_ms, int level)
{
    const char *name = vh_log_level_name((enum vh_log_level)level);
    size_t n = strlen(name), len = 7;

    memcpy(line, "{\"ts\":\"", 7);
    if (vh_time_format(now_ms, line + len) == 0)
        len += VH_TIME_LEN;
    memcpy(line + len, "\",\"level\":\"", 11);
    len += 11;
    memcpy(line + len, name, n);
    len += n;
    line[len++] = '"';
    line[len] = '\0';
    return len;
}

char *vh__log_u64(char *out, uint64_t v)
{
    char digits[20];
    size_t k = sizeof(digits);

    do {
        digits[--k] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    memcpy(out, digits + k, sizeof(digits) - k);
    return out + (sizeof(digits) - k);
}
