/* fuzz_lint_message.c - libFuzzer target for the content lint and the message view (lint.h,
 * message.h).
 *
 * Input: [flags: BDAT or DATA, how many lines to show][split seed, 2 bytes][message content as
 * on the wire; DATA is cut after its first CRLF.CRLF, or gets one, as the framer hands it over].
 * The content is linted and viewed fed whole and fed in pieces. Oracles:
 *   - the same findings, the same lines shown and the same summary (size, lines, hidden
 *     lines, SHA-256) however the content is cut;
 *   - the summary is that of a reference here: DATA unstuffed (a dot after CRLF removed, the
 *     last 3 bytes held back as the terminator), BDAT as is;
 *   - no shown line is longer than MESSAGE_SHOW_LINE_MAX, the last one without LF included
 *     (issue 16, defect 3), and no more lines are shown than asked;
 *   - every finding has a rule id, and an offset inside the bytes (the absolute offset, from
 *     the piece's base, is part of what must not depend on the cut);
 *   - command, SASL and reply lint on the same bytes: findings are short sentences. */
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "smtptap/buf.h"
#include "smtptap/lint.h"
#include "smtptap/message.h"

struct seen {
    struct buf findings; /* each finding: id, absolute offset, sentence, then "\n" */
    size_t base;         /* offset of the piece being fed in the whole input */
    size_t len;          /* the whole input's length */
    struct buf shown;    /* each shown line, then its length */
    unsigned shown_count;
    struct message_summary sum;
};

static void on_finding(void *ctx, const struct lint_finding *f)
{
    struct seen *s = ctx;
    size_t n = strlen(f->text);
    FUZZ_CHECK(n > 0 && n < 300, "a finding of %zu characters", n);
    FUZZ_CHECK(f->id && *f->id, "a finding without an id: %s", f->text);
    char where[64] = "summary";
    if (f->at != LINT_AT_NONE) {
        int64_t at = (int64_t)s->base + f->at;
        FUZZ_CHECK(at >= 0 && (size_t)at <= s->len, "%s at %lld, outside the %zu input bytes",
                   f->id, (long long)at, s->len);
        snprintf(where, sizeof where, "%lld", (long long)at);
    }
    buf_append(&s->findings, f->id, strlen(f->id));
    buf_append(&s->findings, where, strlen(where));
    buf_append(&s->findings, f->text, n);
    buf_append(&s->findings, "\n", 1);
}

static void on_shown(void *ctx, const uint8_t *line, size_t len)
{
    struct seen *s = ctx;
    FUZZ_CHECK(len <= MESSAGE_SHOW_LINE_MAX, "a line shown with %zu octets", len);
    buf_append(&s->shown, line, len);
    buf_append(&s->shown, &len, sizeof len);
    s->shown_count++;
}

static void view(const uint8_t *b, size_t n, bool bdat, unsigned max_shown, const size_t *cuts,
                 size_t ncuts, struct seen *s)
{
    memset(s, 0, sizeof *s);
    s->len = n;
    buf_init(&s->findings);
    buf_init(&s->shown);
    struct lint_content l;
    struct message_view m;
    lint_content_begin(&l, bdat);
    message_view_begin(&m, bdat, max_shown);
    size_t from = 0;
    for (size_t k = 0; k <= ncuts; k++) {
        size_t to = k < ncuts ? cuts[k] : n;
        s->base = from;
        lint_content_feed(&l, b + from, to - from, on_finding, s);
        message_view_feed(&m, b + from, to - from, on_shown, s);
        from = to;
    }
    s->base = n;
    lint_content_end(&l, on_finding, s);
    message_view_end(&m, &s->sum, on_shown, s);
}

static void seen_free(struct seen *s)
{
    buf_free(&s->findings);
    buf_free(&s->shown);
}

static bool same_buf(const struct buf *a, const struct buf *b)
{
    return buf_size(a) == buf_size(b) && !memcmp(buf_head(a), buf_head(b), buf_size(a));
}

/* What the server receives: BDAT as is; DATA without its last 3 bytes, dots after CRLF gone. */
static size_t reference(const uint8_t *b, size_t n, bool bdat, uint8_t *out)
{
    if (bdat) {
        memcpy(out, b, n);
        return n;
    }
    size_t w = 0;
    bool at_start = true;
    for (size_t i = 0; i + 3 < n; i++) { /* the last 3 bytes are the terminator */
        uint8_t c = b[i];
        if (at_start && c == '.') {
            at_start = false;
            continue;
        }
        at_start = c == '\n' && w > 0 && out[w - 1] == '\r';
        out[w++] = c;
    }
    return w;
}

static void check_summary(const uint8_t *b, size_t n, bool bdat, unsigned max_shown,
                          const struct seen *s)
{
    uint8_t *want = malloc(n + 1), md[SHA256_DIGEST_LENGTH];
    if (!want) abort();
    size_t w = reference(b, n, bdat, want);
    uint64_t lines = 0;
    for (size_t i = 0; i < w; i++) lines += want[i] == '\n';
    if (w && want[w - 1] != '\n') lines++;
    SHA256(want, w, md);
    char hex[65];
    for (int i = 0; i < SHA256_DIGEST_LENGTH; i++) sprintf(hex + 2 * i, "%02x", md[i]);
    FUZZ_CHECK(s->sum.size == w && s->sum.lines == lines && !strcmp(s->sum.sha256_hex, hex),
               "summary %llu bytes %llu lines %s, reference %zu bytes %llu lines %s",
               (unsigned long long)s->sum.size, (unsigned long long)s->sum.lines, s->sum.sha256_hex,
               w, (unsigned long long)lines, hex);
    FUZZ_CHECK(!max_shown || s->shown_count <= max_shown, "%u lines shown, %u asked",
               s->shown_count, max_shown);
    FUZZ_CHECK(s->sum.hidden_lines == lines - s->shown_count, "hidden %u of %llu, %u shown",
               s->sum.hidden_lines, (unsigned long long)lines, s->shown_count);
    free(want);
}

static void lint_lines(const uint8_t *b, size_t n)
{
    struct seen s;
    memset(&s, 0, sizeof s);
    s.len = n;
    buf_init(&s.findings);
    lint_command_line(b, n, false, on_finding, &s);
    lint_command_line(b, n, true, on_finding, &s);
    lint_reply(b, n, on_finding, &s);
    lint_long_line(b, n, n & 1, n, on_finding, &s);
    buf_free(&s.findings);
}

/* DATA content as the framer hands it over: up to its first CRLF.CRLF (".\r\n" at the very
 * start counts), or with one added; the view's contract (message.h). Returns a copy. */
static uint8_t *as_framed(const uint8_t *b, size_t n, size_t *len)
{
    uint8_t *out = malloc(n + 5);
    if (!out) abort();
    size_t end = n >= 3 && !memcmp(b, ".\r\n", 3) ? 3 : 0;
    for (size_t i = 0; !end && i + 5 <= n; i++)
        if (!memcmp(b + i, "\r\n.\r\n", 5)) end = i + 5;
    memcpy(out, b, end ? end : n);
    if (!end) memcpy(out + n, "\r\n.\r\n", 5);
    *len = end ? end : n + 5;
    return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = {data, size};
    uint8_t flags = fuzz_u8(&in);
    bool bdat = flags & 1;
    unsigned max_shown = flags >> 1 & 7;
    uint16_t seed = fuzz_u16(&in);
    size_t framed_len = in.n;
    uint8_t *framed = bdat ? NULL : as_framed(in.p, in.n, &framed_len);
    if (framed) in = (struct fuzz_in){framed, framed_len};
    size_t *cuts = malloc((in.n + 1) * sizeof *cuts);
    if (!cuts) abort();
    size_t ncuts = fuzz_cuts(seed, in.n, cuts);
    struct seen whole, split;
    view(in.p, in.n, bdat, max_shown, NULL, 0, &whole);
    view(in.p, in.n, bdat, max_shown, cuts, ncuts, &split);
    if (!same_buf(&whole.findings, &split.findings) || !same_buf(&whole.shown, &split.shown) ||
        memcmp(&whole.sum, &split.sum, sizeof whole.sum) != 0) {
        fuzz_dump("content", in.p, in.n);
        fuzz_dump("findings whole", buf_head(&whole.findings), buf_size(&whole.findings));
        fuzz_dump("findings split", buf_head(&split.findings), buf_size(&split.findings));
        fuzz_fail("fed whole and in %zu pieces: different findings, lines or summary", ncuts + 1);
    }
    check_summary(in.p, in.n, bdat, max_shown, &whole);
    lint_lines(in.p, in.n);
    seen_free(&whole);
    seen_free(&split);
    free(cuts);
    free(framed);
    return 0;
}
