/*
 * The one UTF-8 sequence check of the library (RFC 3629, table 3-7): no overlong forms, no
 * UTF-16 surrogates, nothing past U+10FFFF, nothing truncated. Used where bytes are judged
 * one character at a time: the JSON parser's strings (jtree.c), the payload encoder
 * (event.c), the store's labels and URLs (store.c).
 */
#ifndef VH_CORE_UTF8_INT_H
#define VH_CORE_UTF8_INT_H

#include <stdbool.h>
#include <stddef.h>

static inline bool vh__utf8_in(unsigned char c, unsigned char lo, unsigned char hi)
{
    return c >= lo && c <= hi;
}

/*
 * The length (2 to 4) of the well-formed multi-byte sequence at `s`, of which `n` bytes
 * may be read, or 0 when there is none there (an ASCII byte included: callers handle it).
 */
static inline size_t vh__utf8_seq_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];

    if (vh__utf8_in(c, 0xc2, 0xdf))
        return n >= 2 && vh__utf8_in(s[1], 0x80, 0xbf) ? 2 : 0;
    if (vh__utf8_in(c, 0xe0, 0xef)) {
        unsigned char lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;

        return n >= 3 && vh__utf8_in(s[1], lo, hi) && vh__utf8_in(s[2], 0x80, 0xbf) ? 3 : 0;
    }
    if (vh__utf8_in(c, 0xf0, 0xf4)) {
        unsigned char lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;

        return n >= 4 && vh__utf8_in(s[1], lo, hi) && vh__utf8_in(s[2], 0x80, 0xbf) &&
                       vh__utf8_in(s[3], 0x80, 0xbf)
                   ? 4
                   : 0;
    }
    return 0;
}

#endif
