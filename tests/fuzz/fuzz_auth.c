/* fuzz_auth.c - libFuzzer target for the AUTH decoder (auth.h).
 *
 * Input: a list of steps, each [kind][length, 2 bytes][bytes]: the client's AUTH command, a
 * client SASL line, a server reply (the first two bytes give its code), or a base64 string
 * decoded both by auth_b64_decode and by a plain reference decoder here. Oracles:
 *   - every view's texts are NUL-terminated inside their arrays and printable ASCII (the
 *     decoder escapes everything else), its secret span lies inside the line;
 *   - redacting a line replaces exactly the secret span with "<redacted>" (no length) and
 *     keeps every other byte (so no byte of the secret survives);
 *   - auth_b64_decode accepts what the reference accepts (strict, padded RFC 4648, "=" as
 *     empty) and decodes it to the same bytes; it refuses the rest;
 *   - the decoder's own strings (mechanism, user) stay NUL-terminated;
 *   - each structured field (auth_view.fields) is named and lies inside the texts: a shown
 *     value between its quotes and the same in both texts, a secret one a mark in the
 *     redacted text; a secret's bytes never reach the redacted text through a field. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "smtptap/auth.h"

static void check_text(const char *what, const char *t, size_t size)
{
    const char *nul = memchr(t, 0, size);
    FUZZ_CHECK(nul != NULL, "%s is not NUL-terminated", what);
    for (const char *c = t; c < nul; c++)
        FUZZ_CHECK(*c >= 0x20 && *c < 0x7f, "%s has byte 0x%02x at %zu: \"%s\"", what,
                   (unsigned char)*c, (size_t)(c - t), t);
}

/* The redacted line is the line with exactly its secret span replaced. */
static void check_redaction(const uint8_t *line, size_t len, const struct auth_view *v)
{
    if (v->secret_len == 0) return;
    static char out[70000];
    size_t w = auth_redact_line(line, len, v->secret_off, v->secret_len, out, sizeof out);
    static const char mark[] = "<redacted>";
    int m = (int)sizeof mark - 1;
    size_t off = v->secret_off, end = off + v->secret_len;
    FUZZ_CHECK(w == off + (size_t)m + (len - end), "redacted line of %zu bytes", w);
    FUZZ_CHECK(memcmp(out, line, off) == 0 && memcmp(out + off, mark, (size_t)m) == 0 &&
                   memcmp(out + off + m, line + end, len - end) == 0,
               "redaction changed more than the secret span");
}

static void check_view(const uint8_t *line, size_t len, const struct auth_view *v)
{
    check_text("text", v->text, sizeof v->text);
    check_text("redacted", v->redacted, sizeof v->redacted);
    check_text("problem", v->problem, sizeof v->problem);
    size_t body = len; /* the line as given, its terminator excluded (auth.h) */
    if (body && line[body - 1] == '\n') body--;
    if (body && line[body - 1] == '\r') body--;
    FUZZ_CHECK(v->secret_off <= body && v->secret_len <= body - v->secret_off,
               "secret span %zu+%zu outside the %zu bytes of the line", v->secret_off,
               v->secret_len, body);
    check_redaction(line, body, v);
    FUZZ_CHECK(v->nfields <= AUTH_FIELDS_MAX, "%u fields", v->nfields);
    size_t tlen = strlen(v->text), rlen = strlen(v->redacted);
    for (unsigned i = 0; i < v->nfields; i++) {
        const struct auth_field *f = &v->fields[i];
        FUZZ_CHECK(f->name[0] && memchr(f->name, 0, sizeof f->name), "field %u has no name", i);
        FUZZ_CHECK(f->off >= 1 && f->off + f->len <= tlen && v->text[f->off - 1] == '"' &&
                       v->text[f->off + f->len] == '"',
                   "field %s at %zu+%zu is not a quoted value of \"%s\"", f->name, f->off, f->len,
                   v->text);
        FUZZ_CHECK(f->roff + f->rlen <= rlen, "field %s outside the redacted text", f->name);
        if (f->secret)
            FUZZ_CHECK(f->rlen >= 9 && memcmp(v->redacted + f->roff, "<redacted", 9) == 0,
                       "secret field %s is not a mark in \"%s\"", f->name, v->redacted);
        else
            FUZZ_CHECK(f->rlen == f->len &&
                           memcmp(v->redacted + f->roff, v->text + f->off, f->len) == 0,
                       "field %s differs between the texts", f->name);
    }
}

static int b64_value(uint8_t c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

/* Strict RFC 4648 base64 with padding; "=" alone is empty (RFC 4954). -1 when invalid. */
static long ref_b64(const uint8_t *p, size_t n, uint8_t *out)
{
    if (n == 1 && p[0] == '=') return 0;
    if (n % 4) return -1;
    size_t pad = n && p[n - 1] == '=' ? (n > 1 && p[n - 2] == '=' ? 2 : 1) : 0;
    uint32_t acc = 0;
    long w = 0;
    for (size_t i = 0; i < n; i++) {
        int v = i < n - pad ? b64_value(p[i]) : 0;
        if (v < 0) return -1;
        acc = acc << 6 | (uint32_t)v;
        if (i % 4 != 3) continue;
        out[w++] = (uint8_t)(acc >> 16);
        out[w++] = (uint8_t)(acc >> 8);
        out[w++] = (uint8_t)acc;
    }
    return w - (long)pad;
}

static void check_b64(const uint8_t *p, size_t n, size_t out_size)
{
    static uint8_t want[70000], got[70000];
    long r = ref_b64(p, n, want);
    size_t room = out_size < sizeof got ? out_size : sizeof got;
    long g = auth_b64_decode(p, n, got, room);
    if (r >= 0 && n / 4 * 3 <= room) {
        FUZZ_CHECK(g == r, "auth_b64_decode gave %ld, the reference %ld", g, r);
        FUZZ_CHECK(memcmp(got, want, (size_t)r) == 0, "auth_b64_decode decoded other bytes");
    } else if (r < 0) {
        FUZZ_CHECK(g < 0, "auth_b64_decode accepted what is not strict base64 (%ld bytes)", g);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = {data, size};
    struct auth_decoder a;
    static struct auth_view v;
    auth_init(&a);
    while (in.n) {
        uint8_t kind = fuzz_u8(&in) % 4;
        size_t len, want = fuzz_u16(&in);
        const uint8_t *b = fuzz_bytes(&in, want, &len);
        memset(&v, 0x5a, sizeof v); /* whatever is not written must not pass as text */
        switch (kind) {
        case 0: auth_on_command(&a, b, len, &v); break;
        case 1: auth_on_client_line(&a, b, len, &v); break;
        case 2: {
            int code = len >= 2 ? (b[0] | b[1] << 8) % 600 : 334;
            size_t skip = len >= 2 ? 2 : 0;
            auth_on_reply(&a, code, b + skip, len - skip, &v);
            check_view(b + skip, len - skip, &v);
            continue;
        }
        case 3: check_b64(b, len, len % 7 == 0 ? len / 2 : len); continue;
        }
        check_view(b, len, &v);
        FUZZ_CHECK(memchr(a.mech_name, 0, sizeof a.mech_name), "mech_name not NUL-terminated");
        FUZZ_CHECK(memchr(a.user, 0, sizeof a.user), "user not NUL-terminated");
    }
    return 0;
}
