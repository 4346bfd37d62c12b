/* fuzz.c - helpers shared by the libFuzzer targets (see fuzz.h). */
#include "fuzz.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

uint8_t fuzz_u8(struct fuzz_in *in)
{
    if (in->n == 0) return 0;
    in->n--;
    return *in->p++;
}

uint16_t fuzz_u16(struct fuzz_in *in)
{
    uint16_t lo = fuzz_u8(in);
    return (uint16_t)(lo | fuzz_u8(in) << 8);
}

const uint8_t *fuzz_bytes(struct fuzz_in *in, size_t max, size_t *len)
{
    const uint8_t *p = in->p;
    *len = in->n < max ? in->n : max;
    in->p += *len;
    in->n -= *len;
    return p;
}

const uint8_t *fuzz_until(struct fuzz_in *in, uint8_t stop, size_t *len)
{
    const uint8_t *p = in->p;
    const uint8_t *end = in->n ? memchr(in->p, stop, in->n) : NULL;
    *len = end ? (size_t)(end - p) : in->n;
    in->p += *len + (end != NULL);
    in->n -= *len + (end != NULL);
    return p;
}

uint32_t fuzz_rand(uint32_t *state)
{
    uint32_t x = *state ? *state : 0x9e3779b9u; /* xorshift32 */
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return *state = x;
}

static int cmp_size(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return x < y ? -1 : x > y;
}

size_t fuzz_cuts(uint32_t seed, size_t len, size_t *cuts)
{
    if (len < 2) return 0;
    if (seed % 4 == 0) { /* one byte at a time */
        for (size_t i = 1; i < len; i++) cuts[i - 1] = i;
        return len - 1;
    }
    uint32_t st = seed * 2654435761u + (uint32_t)len;
    size_t want = 1 + seed / 4 % 8, n = 0;
    if (want > len - 1) want = len - 1; /* cuts has room for len entries */
    for (size_t i = 0; i < want; i++) cuts[n++] = 1 + fuzz_rand(&st) % (len - 1);
    qsort(cuts, n, sizeof *cuts, cmp_size);
    size_t k = 0; /* drop repeats: every piece has at least one byte */
    for (size_t i = 0; i < n; i++)
        if (k == 0 || cuts[k - 1] != cuts[i]) cuts[k++] = cuts[i];
    return k;
}

void fuzz_dump(const char *label, const uint8_t *b, size_t n)
{
    fprintf(stderr, "  %s (%zu bytes): \"", label, n);
    size_t shown = n > 300 ? 300 : n;
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

void fuzz_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("fuzz: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    abort();
}

char *fuzz_strndup(const uint8_t *b, size_t n)
{
    char *s = malloc(n + 1);
    if (!s) abort();
    if (n) memcpy(s, b, n);
    s[n] = 0;
    return s;
}
