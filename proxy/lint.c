/* lint.c - pure protocol warnings (see lint.h). */
#include "smtptap/lint.h"

#include <stdio.h>
#include <string.h>

enum { LINT_SHOW_PER_KIND = 3 };
enum { K_BARE_LF, K_BARE_CR, K_NUL, K_LONG, K_SMUGGLE };
static const char *kind_names[] = {"bare LF", "bare CR", "NUL byte", "over-long line",
                                   "SMTP smuggling sequence"};
static const char *kind_ids[] = {"bare-lf-in-message", "bare-cr-in-message", "nul-in-message",
                                 "long-message-line", "smuggling-sequence"};

static void say(lint_report_fn report, void *ctx, const char *id, int64_t at, const char *text)
{
    struct lint_finding f = {.id = id, .at = at, .text = text};
    report(ctx, &f);
}

static void report_line_bytes(const uint8_t *line, size_t len, const char *what,
                              lint_report_fn report, void *ctx, int64_t base)
{
    char msg[160];
    size_t body = len;
    bool has_lf = body && line[body - 1] == '\n';
    if (has_lf) body--;
    bool has_crlf = has_lf && body && line[body - 1] == '\r';
    if (has_crlf) body--;
    if (has_lf && !has_crlf) {
        snprintf(msg, sizeof msg, "%s ends with a bare LF (RFC 5321 2.3.8 requires CRLF)", what);
        say(report, ctx, "bare-lf-line-ending", base + (int64_t)len - 1, msg);
    }
    for (size_t i = 0; i < body; i++) {
        if (line[i] == '\r' || line[i] == '\n' || line[i] == 0) {
            snprintf(msg, sizeof msg, "%s contains a %s at offset %zu", what,
                     line[i] == 0      ? "NUL byte"
                     : line[i] == '\r' ? "bare CR"
                                       : "bare LF",
                     i);
            say(report, ctx,
                line[i] == 0      ? "nul-in-line"
                : line[i] == '\r' ? "bare-cr-in-line"
                                  : "bare-lf-in-line",
                base + (int64_t)i, msg);
            break;
        }
    }
}

/* RFC 5321 4.5.3.1.4 for commands, RFC 4954 4 for SASL responses. */
static size_t line_limit(bool sasl)
{
    return sasl ? LINT_SASL_LINE_MAX : LINT_COMMAND_LINE_MAX;
}

void lint_command_line(const uint8_t *line, size_t len, bool sasl, lint_report_fn report, void *ctx)
{
    const char *what = sasl ? "SASL line" : "command line";
    report_line_bytes(line, len, what, report, ctx, 0);
    size_t limit = line_limit(sasl);
    if (len > limit) {
        char msg[128];
        snprintf(msg, sizeof msg, "%s is %zu octets (RFC limit %zu)", what, len, limit);
        say(report, ctx, sasl ? "long-sasl-line" : "long-command-line", 0, msg);
    }
}

void lint_long_line(const uint8_t *piece, size_t len, bool sasl, size_t max_line,
                    lint_report_fn report, void *ctx)
{
    const char *what = sasl ? "SASL line" : "command line";
    report_line_bytes(piece, len, what, report, ctx, 0);
    char msg[128];
    snprintf(msg, sizeof msg, "%s longer than %zu octets (RFC limit %zu), relayed in pieces", what,
             max_line, line_limit(sasl));
    say(report, ctx, sasl ? "long-sasl-line" : "long-command-line", 0, msg);
}

void lint_reply(const uint8_t *reply, size_t len, lint_report_fn report, void *ctx)
{
    size_t start = 0;
    while (start < len) {
        const uint8_t *lf = memchr(reply + start, '\n', len - start);
        size_t end = lf ? (size_t)(lf - reply) + 1 : len;
        report_line_bytes(reply + start, end - start, "reply line", report, ctx, (int64_t)start);
        if (end - start > LINT_REPLY_LINE_MAX) {
            char msg[128];
            snprintf(msg, sizeof msg, "reply line is %zu octets (RFC 5321 limit %d)", end - start,
                     LINT_REPLY_LINE_MAX);
            say(report, ctx, "long-reply-line", (int64_t)start, msg);
        }
        start = end;
    }
}

void lint_content_begin(struct lint_content *l, bool bdat)
{
    memset(l, 0, sizeof *l);
    l->line = 1;
    l->bdat = bdat;
    /* Content starts at the beginning of a line, as if after CRLF. */
    l->tail[2] = '\r';
    l->tail[3] = '\n';
}

/* back: how many bytes before the one being looked at the finding starts. */
static void finding(struct lint_content *l, int kind, int64_t back, const char *detail,
                    lint_report_fn report, void *ctx)
{
    if (++l->counts[kind] > LINT_SHOW_PER_KIND) return;
    char msg[200];
    snprintf(msg, sizeof msg, "%s in %s at line %llu%s%s", kind_names[kind],
             l->bdat ? "BDAT" : "DATA", (unsigned long long)l->line, detail ? ": " : "",
             detail ? detail : "");
    say(report, ctx, kind_ids[kind], (int64_t)l->at - back, msg);
}

/* Called for each byte c with l->tail holding the four bytes before it (newest last).
 * Detects a lone dot between line ends other than the one true CRLF "." CRLF, the
 * terminator variants that make two servers disagree about the end of DATA. */
static void check_smuggling(struct lint_content *l, uint8_t c, lint_report_fn report, void *ctx)
{
    const uint8_t *t = l->tail;
    char detail[80];
    const char *after = NULL;
    int dot; /* index in t of the lone dot */
    if (c == '\n' && t[3] == '.') {
        after = "<LF>", dot = 3;
    } else if (c == '\n' && t[3] == '\r' && t[2] == '.') {
        after = "<CR><LF>", dot = 2;
    } else if (c != '\n' && t[3] == '\r' && t[2] == '.') {
        after = "<CR>", dot = 2;
    } else {
        return;
    }
    uint8_t b1 = t[dot - 1], b2 = t[dot - 2];
    const char *before;
    if (b1 == '\n')
        before = b2 == '\r' ? "<CR><LF>" : "<LF>";
    else if (b1 == '\r')
        before = "<CR>";
    else
        return;
    if (strcmp(before, "<CR><LF>") == 0 && strcmp(after, "<CR><LF>") == 0) return;
    snprintf(detail, sizeof detail, "%s.%s", before, after);
    finding(l, K_SMUGGLE, 4 - dot, detail, report, ctx); /* at the lone dot */
}

/* Bytes that can start or end a finding; any other byte after a non-CR only grows the line. */
static bool is_special(uint8_t c)
{
    return c == '\r' || c == '\n' || c == 0 || c == '.';
}

/* True when one of the 8 bytes of w is special (the "has a zero byte" test on w XOR each
 * special byte repeated): a message is mostly ordinary bytes, skipped 8 at a time. */
static bool word_has_special(uint64_t w)
{
    const uint64_t ones = 0x0101010101010101u, highs = 0x8080808080808080u;
    uint64_t cr = w ^ (ones * '\r'), lf = w ^ (ones * '\n'), dot = w ^ (ones * '.');
    uint64_t zero =
        ((w - ones) & ~w) | ((cr - ones) & ~cr) | ((lf - ones) & ~lf) | ((dot - ones) & ~dot);
    return (zero & highs) != 0;
}

/* Skips a run of ordinary bytes at b[0..len): returns its length (0 if b[0] needs a look). */
static size_t ordinary_run(struct lint_content *l, const uint8_t *b, size_t len)
{
    if (l->tail[3] == '\r' || is_special(b[0])) return 0;
    size_t n = 1;
    for (uint64_t w; n + 8 <= len; n += 8) {
        memcpy(&w, b + n, 8);
        if (word_has_special(w)) break;
    }
    while (n < len && !is_special(b[n])) n++;
    l->line_len += n;
    if (n >= 4) {
        memcpy(l->tail, b + n - 4, 4);
    } else {
        memmove(l->tail, l->tail + n, 4 - n);
        memcpy(l->tail + 4 - n, b, n);
    }
    return n;
}

static void one_byte(struct lint_content *l, uint8_t c, lint_report_fn report, void *ctx)
{
    if (!l->bdat) check_smuggling(l, c, report, ctx);
    uint8_t prev = l->tail[3];
    if (c == '\n') {
        if (prev != '\r') finding(l, K_BARE_LF, 0, NULL, report, ctx);
        if (l->line_len + 1 > LINT_TEXT_LINE_MAX) {
            char detail[64];
            snprintf(detail, sizeof detail, "%llu octets (RFC 5321 limit %d)",
                     (unsigned long long)l->line_len + 1, LINT_TEXT_LINE_MAX);
            finding(l, K_LONG, (int64_t)l->line_len, detail, report, ctx); /* its start */
        }
        l->line++;
        l->line_len = 0;
    } else {
        if (prev == '\r') finding(l, K_BARE_CR, 1, NULL, report, ctx);
        if (c == 0) finding(l, K_NUL, 0, NULL, report, ctx);
        /* RFC 5321 4.5.3.1.6: the limit does not count a dot added for transparency. */
        if (l->bdat || l->line_len || c != '.') l->line_len++;
    }
    memmove(l->tail, l->tail + 1, 3);
    l->tail[3] = c;
}

/* A CRLF at b[0..2) that one_byte would pass without a finding (no CR before it, no dot
 * before it that could make it a smuggled end, a line within the limit): ends the line at
 * once. Most lines end so; two calls of one_byte cost more than the line's other bytes. */
static bool plain_crlf(struct lint_content *l, const uint8_t *b, size_t len)
{
    if (len < 2 || b[0] != '\r' || b[1] != '\n' || l->tail[3] == '\r' || l->tail[3] == '.' ||
        l->line_len + 2 > LINT_TEXT_LINE_MAX)
        return false;
    l->line++;
    l->line_len = 0;
    l->tail[0] = l->tail[2];
    l->tail[1] = l->tail[3];
    l->tail[2] = '\r';
    l->tail[3] = '\n';
    return true;
}

void lint_content_feed(struct lint_content *l, const uint8_t *b, size_t len, lint_report_fn report,
                       void *ctx)
{
    size_t i = 0;
    while (i < len) {
        size_t run = ordinary_run(l, b + i, len - i);
        if (run) {
            i += run;
            continue;
        }
        if (plain_crlf(l, b + i, len - i)) {
            i += 2;
            continue;
        }
        l->at = i;
        one_byte(l, b[i++], report, ctx);
    }
}

void lint_content_end(struct lint_content *l, lint_report_fn report, void *ctx)
{
    /* A CR as the very last byte (BDAT) has no next byte to show it is bare. */
    l->at = 0; /* just after the last piece */
    if (l->tail[3] == '\r') finding(l, K_BARE_CR, 1, NULL, report, ctx);
    for (int k = 0; k < 5; k++) {
        if (l->counts[k] <= LINT_SHOW_PER_KIND) continue;
        char msg[128];
        snprintf(msg, sizeof msg, "%s in %s: %u occurrences in all (%d shown)", kind_names[k],
                 l->bdat ? "BDAT" : "DATA", l->counts[k], LINT_SHOW_PER_KIND);
        say(report, ctx, kind_ids[k], LINT_AT_NONE, msg);
    }
}
