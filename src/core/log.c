#include <vocohook/log.h>

#include <string.h>

#include <vocohook/clock.h>

#include "core/log_int.h"
#include "core/utf8_int.h"

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

/* Writes `\\u` and four hex digits of `u` at `out`. */
static void put_u(char *out, unsigned u)
{
    static const char hex[] = "0123456789abcdef";

    out[0] = '\\';
    out[1] = 'u';
    out[2] = hex[(u >> 12) & 0x0f];
    out[3] = hex[(u >> 8) & 0x0f];
    out[4] = hex[(u >> 4) & 0x0f];
    out[5] = hex[u & 0x0f];
}

/* The code point of the well-formed `k`-byte UTF-8 sequence at `s` (vh__utf8_seq_len). */
static unsigned decode(const unsigned char *s, size_t k)
{
    unsigned cp = s[0] & (k == 2 ? 0x1f : k == 3 ? 0x0f : 0x07);
    size_t i;

    for (i = 1; i < k; i++)
        cp = (cp << 6) | (s[i] & 0x3f);
    return cp;
}

void vh__json_escape(const char *s, size_t max, char *out, size_t out_size)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t o = 0, i, k, avail;

    for (i = 0; i < max && u[i] && o + 7 < out_size; i++) {
        unsigned char c = u[i];

        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
            continue;
        }
        if (c >= 0x20 && c < 0x7f) {
            out[o++] = (char)c;
            continue;
        }
        /* Characters as their code points; any other byte as itself (U+0000 to U+00FF). */
        for (avail = 1; avail < 4 && i + avail < max && u[i + avail]; avail++)
            ;
        k = c >= 0x80 ? vh__utf8_seq_len(u + i, avail) : 0;
        if (k == 0) {
            put_u(out + o, c);
            o += 6;
            continue;
        }
        {
            unsigned cp = decode(u + i, k);

            if (cp >= 0x10000) {
                if (o + 13 >= out_size)
                    break; /* no room for the pair and the NUL */
                cp -= 0x10000;
                put_u(out + o, 0xd800 | (cp >> 10));
                put_u(out + o + 6, 0xdc00 | (cp & 0x3ff));
                o += 12;
            } else {
                put_u(out + o, cp);
                o += 6;
            }
        }
        i += k - 1;
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
