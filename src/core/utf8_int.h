/*
 * The one UTF-8 sequence check of the library (RFC 3629, table 3-7): no overlong forms, no
 * UTF-16 surrogates, nothing past U+10FFFF, nothing truncated. Used where bytes are judged
 * one character at a time: the JSON parser's strings (jtree.c), the payload encoder
 * (event.c), the store's labels and URLs (store.c), and text cleaned for display
 * (vh__utf8_repair: the receiver's job errors, the API's lossy strings).
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

/*
 * Makes s[0..n) well-formed UTF-8 without NUL bytes, in place and at the same length: each
 * byte of an ill-formed or cut sequence, and each NUL, becomes '?'. With `one_line`, each
 * control character becomes a space too (C0 and DEL one byte each, C1 (U+0080..U+009F) its
 * two). For text from outside (a command's output, a server's reply, a decoded path) that
 * is stored or shown: JSON writers refuse ill-formed UTF-8, and a terminal acts on control
 * characters.
 */
static inline void vh__utf8_repair(char *s, size_t n, bool one_line)
{
    unsigned char *p = (unsigned char *)s;
    size_t k;

    while (n > 0) {
        if (*p < 0x80) {
            if (*p == 0)
                *p = '?';
            else if (one_line && (*p < 0x20 || *p == 0x7f))
                *p = ' ';
            p++;
            n--;
            continue;
        }
        k = vh__utf8_seq_len(p, n);
        if (k == 0) {
            *p++ = '?';
            n--;
            continue;
        }
        if (one_line && p[0] == 0xc2 && p[1] < 0xa0)
            p[0] = p[1] = ' ';
        p += k;
        n -= k;
    }
}

#endif
