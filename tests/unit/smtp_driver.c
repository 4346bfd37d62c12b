/* smtp_driver.c - failure messages shared by the smtp.h test drivers (see smtp_driver.h). */
#include "smtp_driver.h"

#include <stdio.h>

/* Writes an escaped, bounded rendering of bytes to stderr for failure messages. */
void dump_bytes(const char *label, const uint8_t *b, size_t n)
{
    fprintf(stderr, "  %s (%zu bytes): \"", label, n);
    size_t shown = n > 200 ? 200 : n;
    for (size_t i = 0; i < shown; i++) {
        uint8_t c = b[i];
        if (c == '\r')
            fputs("\\r", stderr);
        else if (c == '\n')
            fputs("\\n", stderr);
        else if (c == '\\' || c == '"')
            fprintf(stderr, "\\%c", c);
        else if (c < 0x20 || c >= 0x7f)
            fprintf(stderr, "\\x%02x", c);
        else
            fputc(c, stderr);
    }
    fprintf(stderr, "\"%s\n", shown < n ? "..." : "");
}

void describe_split(char *out, size_t outsz, const size_t *cuts, size_t ncuts)
{
    size_t o = (size_t)snprintf(out, outsz, "%zu cut(s):", ncuts);
    for (size_t i = 0; i < ncuts && i < 8 && o < outsz; i++)
        o += (size_t)snprintf(out + o, outsz - o, " %zu", cuts[i]);
    if (ncuts > 8 && o < outsz) snprintf(out + o, outsz - o, " ...");
}
