/*
 * One hex digit's value, for the places that read hex: the signature header (sign.c), a
 * presigned URL's percent escapes (presign.c), and the path and query escapes the server
 * decodes (server.c).
 */
#ifndef VH_CORE_HEX_INT_H
#define VH_CORE_HEX_INT_H

/* The value of one hex digit of either case, or -1. */
static inline int vh__hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

#endif
