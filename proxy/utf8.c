/* utf8.c - pure: strict UTF-8 decoding (see utf8.h). */
#include "smtptap/utf8.h"

size_t utf8_sequence(const uint8_t *p, size_t n, uint32_t *cp)
{
    size_t len;
    uint32_t min;
    if (n == 0) return 0;
    if (p[0] >= 0xc2 && p[0] <= 0xdf)
        len = 2, min = 0x80;
    else if (p[0] >= 0xe0 && p[0] <= 0xef)
        len = 3, min = 0x800;
    else if (p[0] >= 0xf0 && p[0] <= 0xf4)
        len = 4, min = 0x10000;
    else
        return 0;
    if (n < len) return 0;
    uint32_t c = p[0] & (0x7f >> len);
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80) return 0;
        c = (c << 6) | (p[i] & 0x3f);
    }
    if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff)) return 0;
    *cp = c;
    return len;
}
