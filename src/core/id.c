#include <vocohook/id.h>

#include "core/banned.h"

void vh_uuid_format(const unsigned char rnd[16], char out[VH_UUID_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char b[16];
    size_t i, o = 0;

    for (i = 0; i < 16; i++)
        b[i] = rnd[i];
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40); /* version 4 */
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80); /* variant 10xx (RFC 4122) */
    for (i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hex[b[i] >> 4];
        out[o++] = hex[b[i] & 0x0f];
    }
    out[o] = '\0';
}

bool vh_id_is_valid(const char *s, size_t len)
{
    size_t i;

    if (len < 1 || len > VH_ID_MAX)
        return false;
    for (i = 0; i < len; i++) {
        char c = s[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            return false;
    }
    return true;
}

bool vh_e164_is_valid(const char *s, size_t len)
{
    size_t i;

    if (len < 3 || len > 16 || s[0] != '+' || s[1] < '1' || s[1] > '9')
        return false;
    for (i = 2; i < len; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}
