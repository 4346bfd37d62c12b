/* test_lint.c - unit tests for the protocol warnings (lint.h).
 *
 * Findings are collected as one string, one finding per line, so each test states the
 * exact sentences the transcript will show. Content is also fed split at every byte
 * boundary and one byte at a time: the findings must not depend on how TCP cut the stream. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtptap/lint.h"

/* A string literal as (bytes, length), embedded NULs included. */
#define LIT(s)   (const uint8_t *)(s), (sizeof(s) - 1)
#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* ---- helpers ------------------------------------------------------------------------------ */

/* Every finding reported so far, each followed by "\n". */
struct findings {
    char text[8192];
    size_t len;
    unsigned count;
    const char *ids[16]; /* the first findings' rule ids and offsets */
    int64_t at[16];
};

static void collect_cb(void *ctx, const struct lint_finding *found)
{
    struct findings *f = ctx;
    assert_non_null(found->id);
    if (f->count < NELEM(f->ids)) {
        f->ids[f->count] = found->id;
        f->at[f->count] = found->at;
    }
    int n = snprintf(f->text + f->len, sizeof f->text - f->len, "%s\n", found->text);
    assert_true(n > 0 && (size_t)n < sizeof f->text - f->len);
    f->len += (size_t)n;
    f->count++;
}

/* Lints content fed in pieces cut at cuts[0..ncuts) (increasing offsets), then ends it. */
static void lint_pieces(const uint8_t *b, size_t len, bool bdat, const size_t *cuts, size_t ncuts,
                        struct findings *out)
{
    memset(out, 0, sizeof *out);
    struct lint_content l;
    lint_content_begin(&l, bdat);
    size_t from = 0;
    for (size_t i = 0; i <= ncuts; i++) {
        size_t to = i < ncuts ? cuts[i] : len;
        lint_content_feed(&l, b + from, to - from, collect_cb, out);
        from = to;
    }
    lint_content_end(&l, collect_cb, out);
}

static void lint_whole(const uint8_t *b, size_t len, bool bdat, struct findings *out)
{
    lint_pieces(b, len, bdat, NULL, 0, out);
}

/* Asserts that every split of the content gives exactly `want`. */
static void assert_same_for_every_split(const uint8_t *b, size_t len, bool bdat, const char *want)
{
    struct findings f;
    for (size_t cut = 0; cut <= len; cut++) {
        lint_pieces(b, len, bdat, &cut, 1, &f);
        if (strcmp(f.text, want) != 0)
            fail_msg("split at %zu of %zu:\n got:\n%s want:\n%s", cut, len, f.text, want);
    }
    size_t *cuts = malloc(len * sizeof *cuts);
    assert_non_null(cuts);
    for (size_t i = 0; i < len; i++) cuts[i] = i + 1;
    lint_pieces(b, len, bdat, cuts, len ? len - 1 : 0, &f);
    free(cuts);
    if (strcmp(f.text, want) != 0)
        fail_msg("one byte at a time:\n got:\n%s want:\n%s", f.text, want);
}

static void assert_content_findings(const uint8_t *b, size_t len, bool bdat, const char *want)
{
    struct findings f;
    lint_whole(b, len, bdat, &f);
    if (strcmp(f.text, want) != 0) fail_msg("got:\n%s want:\n%s", f.text, want);
    assert_same_for_every_split(b, len, bdat, want);
}

static void assert_command_findings(const uint8_t *line, size_t len, bool sasl, const char *want)
{
    struct findings f = {0};
    lint_command_line(line, len, sasl, collect_cb, &f);
    if (strcmp(f.text, want) != 0) fail_msg("got:\n%s want:\n%s", f.text, want);
}

static void assert_reply_findings(const uint8_t *reply, size_t len, const char *want)
{
    struct findings f = {0};
    lint_reply(reply, len, collect_cb, &f);
    if (strcmp(f.text, want) != 0) fail_msg("got:\n%s want:\n%s", f.text, want);
}

/* ---- normal mail: silence ----------------------------------------------------------------- */

static void ordinary_message_gives_no_finding(void **state)
{
    (void)state;
    static const char msg[] = "From: Alice <alice@example.org>\r\n"
                              "To: Bob <bob@example.net>\r\n"
                              "Subject: quarterly numbers\r\n"
                              "\r\n"
                              "Hi Bob,\r\n"
                              "..a stuffed line that starts with a dot\r\n"
                              ". \r\n"
                              "a line with a dot. in the middle.\r\n"
                              "\r\n"
                              "-- \r\n"
                              "Alice\r\n"
                              ".\r\n";
    assert_content_findings(LIT(msg), false, "");
}

static void empty_message_gives_no_finding(void **state)
{
    (void)state;
    assert_content_findings(LIT(".\r\n"), false, "");
}

static void line_of_exactly_1000_octets_gives_no_finding(void **state)
{
    (void)state;
    uint8_t b[1000 + 3];
    memset(b, 'x', 998);
    memcpy(b + 998, "\r\n.\r\n", 5);
    assert_content_findings(b, sizeof b, false, "");
}

static void stuffed_dot_does_not_count_toward_the_line_limit(void **state)
{
    (void)state;
    /* RFC 5321 4.5.3.1.6: 1000 octets "not counting the leading dot duplicated for
     * transparency": 1001 octets on the wire, 1000 once unstuffed. */
    uint8_t b[1 + 998 + 2 + 3];
    b[0] = '.';
    memset(b + 1, 'x', 998);
    memcpy(b + 999, "\r\n.\r\n", 5);
    assert_content_findings(b, sizeof b, false, "");
}

static void over_long_stuffed_line_is_measured_without_its_dot(void **state)
{
    (void)state;
    uint8_t b[1 + 999 + 2 + 3];
    b[0] = '.';
    memset(b + 1, 'x', 999);
    memcpy(b + 1000, "\r\n.\r\n", 5);
    assert_content_findings(
        b, sizeof b, false,
        "over-long line in DATA at line 1: 1001 octets (RFC 5321 limit 1000)\n");
}

/* ---- one finding each --------------------------------------------------------------------- */

static void bare_lf_in_data_is_reported_with_its_line(void **state)
{
    (void)state;
    assert_content_findings(LIT("Subject: x\r\nline two\nline three\r\n.\r\n"), false,
                            "bare LF in DATA at line 2\n");
}

static void bare_cr_in_data_is_reported_with_its_line(void **state)
{
    (void)state;
    assert_content_findings(LIT("Subject: x\r\n\r\nbody\rmore\r\n.\r\n"), false,
                            "bare CR in DATA at line 3\n");
}

static void nul_byte_in_data_is_reported(void **state)
{
    (void)state;
    assert_content_findings(LIT("Subject: x\r\n\r\nbin\0ary\r\n.\r\n"), false,
                            "NUL byte in DATA at line 3\n");
}

static void line_of_1001_octets_is_reported_as_over_long(void **state)
{
    (void)state;
    uint8_t b[12 + 999 + 2 + 3];
    memcpy(b, "Subject: x\r\n", 12);
    memset(b + 12, 'x', 999);
    memcpy(b + 12 + 999, "\r\n.\r\n", 5);
    assert_content_findings(
        b, sizeof b, false,
        "over-long line in DATA at line 2: 1001 octets (RFC 5321 limit 1000)\n");
}

static void very_long_line_is_reported_once(void **state)
{
    (void)state;
    size_t n = 5000;
    uint8_t *b = malloc(n + 5);
    assert_non_null(b);
    memset(b, 'y', n);
    memcpy(b + n, "\r\n.\r\n", 5);
    struct findings f;
    lint_whole(b, n + 5, false, &f);
    assert_string_equal(f.text,
                        "over-long line in DATA at line 1: 5002 octets (RFC 5321 limit 1000)\n");
    free(b);
}

/* ---- SMTP smuggling: each terminator variant ---------------------------------------------- */

struct smuggle_case {
    const char *name;
    const uint8_t *bytes;
    size_t len;
    const char *want;
};

/* Each variant sits between "b" (line 2) and "c", in "a\r\nb<variant>c\r\n.\r\n". */
#define SMUGGLE(variant, findings)                                                                 \
    {                                                                                              \
        variant, LIT("a\r\nb" variant "c\r\n.\r\n"), findings                                      \
    }

static const struct smuggle_case smuggle_cases[] = {
    SMUGGLE("\n.\n", "bare LF in DATA at line 2\n"
                     "SMTP smuggling sequence in DATA at line 3: <LF>.<LF>\n"
                     "bare LF in DATA at line 3\n"),
    SMUGGLE("\r.\r", "bare CR in DATA at line 2\n"
                     "SMTP smuggling sequence in DATA at line 2: <CR>.<CR>\n"
                     "bare CR in DATA at line 2\n"),
    SMUGGLE("\r.\n", "bare CR in DATA at line 2\n"
                     "SMTP smuggling sequence in DATA at line 2: <CR>.<LF>\n"
                     "bare LF in DATA at line 2\n"),
    SMUGGLE("\n.\r", "bare LF in DATA at line 2\n"
                     "SMTP smuggling sequence in DATA at line 3: <LF>.<CR>\n"
                     "bare CR in DATA at line 3\n"),
    SMUGGLE("\n.\r\n", "bare LF in DATA at line 2\n"
                       "SMTP smuggling sequence in DATA at line 3: <LF>.<CR><LF>\n"),
    SMUGGLE("\r\n.\n", "SMTP smuggling sequence in DATA at line 3: <CR><LF>.<LF>\n"
                       "bare LF in DATA at line 3\n"),
    SMUGGLE("\r.\r\n", "bare CR in DATA at line 2\n"
                       "SMTP smuggling sequence in DATA at line 2: <CR>.<CR><LF>\n"),
    SMUGGLE("\r\n.\r", "SMTP smuggling sequence in DATA at line 3: <CR><LF>.<CR>\n"
                       "bare CR in DATA at line 3\n"),
};

static void each_smuggling_terminator_variant_is_reported(void **state)
{
    (void)state;
    for (size_t i = 0; i < NELEM(smuggle_cases); i++) {
        const struct smuggle_case *c = &smuggle_cases[i];
        struct findings f;
        lint_whole(c->bytes, c->len, false, &f);
        if (strcmp(f.text, c->want) != 0)
            fail_msg("variant %zu: got:\n%s want:\n%s", i, f.text, c->want);
    }
}

static void each_smuggling_variant_is_found_whatever_the_chunking(void **state)
{
    (void)state;
    for (size_t i = 0; i < NELEM(smuggle_cases); i++)
        assert_same_for_every_split(smuggle_cases[i].bytes, smuggle_cases[i].len, false,
                                    smuggle_cases[i].want);
}

static void smuggling_sequence_right_after_the_data_command_is_reported(void **state)
{
    (void)state;
    /* Content starts as if after CRLF: the DATA command's own line end. */
    assert_content_findings(LIT(".\nMAIL FROM:<spoof@example.com>\r\n.\r\n"), false,
                            "SMTP smuggling sequence in DATA at line 1: <CR><LF>.<LF>\n"
                            "bare LF in DATA at line 1\n");
}

static void cr_lf_dot_cr_followed_by_lf_is_the_real_terminator(void **state)
{
    (void)state;
    /* "\r\n.\r" + LF is CRLF.CRLF; the check must look at the byte after the CR. */
    assert_content_findings(LIT("a\r\nb\r\n.\r\n"), false, "");
}

static void whole_smuggled_second_message_is_reported(void **state)
{
    (void)state;
    static const char attack[] = "From: a@example.com\r\n"
                                 "\r\n"
                                 "first\r\n"
                                 "\n.\r\n"
                                 "MAIL FROM:<admin@example.com>\r\n"
                                 "RCPT TO:<victim@example.net>\r\n"
                                 "DATA\r\n"
                                 "From: admin@example.com\r\n"
                                 "\r\n"
                                 "spoofed\r\n"
                                 ".\r\n";
    /* "\r\n\n.\r\n": the LF at line 4 is bare; the dot on line 5 sits between it and CRLF. */
    assert_content_findings(LIT(attack), false,
                            "bare LF in DATA at line 4\n"
                            "SMTP smuggling sequence in DATA at line 5: <LF>.<CR><LF>\n");
}

/* ---- BDAT ---------------------------------------------------------------------------------- */

static void bdat_content_does_not_report_smuggling_sequences(void **state)
{
    (void)state;
    /* BDAT has no terminator: a lone dot is just data. Bare LF and CR still count, and the
     * findings say BDAT. */
    assert_content_findings(LIT("a\r\n.\r\nb\n.\nc\r.\rd\r\n"), true,
                            "bare LF in BDAT at line 3\n"
                            "bare LF in BDAT at line 4\n"
                            "bare CR in BDAT at line 5\n"
                            "bare CR in BDAT at line 5\n");
}

static void bdat_message_ending_in_cr_reports_the_bare_cr(void **state)
{
    (void)state;
    /* No byte follows the CR, so only lint_content_end can tell it is bare. */
    assert_content_findings(LIT("Subject: x\r\n\r\nabc\r"), true, "bare CR in BDAT at line 3\n");
}

static void bdat_content_with_crlf_dot_crlf_gives_no_finding(void **state)
{
    (void)state;
    assert_content_findings(LIT("Subject: x\r\n\r\n.\r\n..\r\nend\r\n"), true, "");
}

static void nul_and_over_long_lines_are_reported_in_bdat_too(void **state)
{
    (void)state;
    uint8_t b[2 + 1001 + 2];
    memcpy(b, "\0\n", 2);
    memset(b + 2, 'z', 1001);
    memcpy(b + 2 + 1001, "\r\n", 2);
    assert_content_findings(b, sizeof b, true,
                            "NUL byte in BDAT at line 1\n"
                            "bare LF in BDAT at line 1\n"
                            "over-long line in BDAT at line 2: 1003 octets (RFC 5321 limit "
                            "1000)\n");
}

/* ---- per-kind cap and summary --------------------------------------------------------------- */

static void only_three_findings_of_a_kind_are_shown_and_the_rest_summarised(void **state)
{
    (void)state;
    assert_content_findings(LIT("1\n2\n3\n4\n5\n\r\n.\r\n"), false,
                            "bare LF in DATA at line 1\n"
                            "bare LF in DATA at line 2\n"
                            "bare LF in DATA at line 3\n"
                            "bare LF in DATA: 5 occurrences in all (3 shown)\n");
}

static void exactly_three_findings_need_no_summary(void **state)
{
    (void)state;
    assert_content_findings(LIT("1\n2\n3\n\r\n.\r\n"), false,
                            "bare LF in DATA at line 1\n"
                            "bare LF in DATA at line 2\n"
                            "bare LF in DATA at line 3\n");
}

static void cap_is_counted_per_kind(void **state)
{
    (void)state;
    /* Four bare LFs hit the cap; the NUL and the bare CR after them are still shown. */
    assert_content_findings(LIT("1\n2\n3\n4\nnul\0\r\ncr\rx\r\n.\r\n"), false,
                            "bare LF in DATA at line 1\n"
                            "bare LF in DATA at line 2\n"
                            "bare LF in DATA at line 3\n"
                            "NUL byte in DATA at line 5\n"
                            "bare CR in DATA at line 6\n"
                            "bare LF in DATA: 4 occurrences in all (3 shown)\n");
}

static void summaries_cover_every_kind_over_the_cap(void **state)
{
    (void)state;
    assert_content_findings(LIT("\0\0\0\0\0\0\r\n"
                                "a\nb\nc\nd\n"
                                "\r\n.\r\n"),
                            false,
                            "NUL byte in DATA at line 1\n"
                            "NUL byte in DATA at line 1\n"
                            "NUL byte in DATA at line 1\n"
                            "bare LF in DATA at line 2\n"
                            "bare LF in DATA at line 3\n"
                            "bare LF in DATA at line 4\n"
                            "bare LF in DATA: 4 occurrences in all (3 shown)\n"
                            "NUL byte in DATA: 6 occurrences in all (3 shown)\n");
}

static void smuggling_sequences_are_capped_too(void **state)
{
    (void)state;
    struct findings f;
    static const char many[] = "x\r\n.\ny\r\n.\nz\r\n.\nw\r\n.\nv\r\n.\r\n";
    lint_whole(LIT(many), false, &f);
    /* Five <CR><LF>.<LF>: three shown, and five bare LFs: three shown. */
    assert_string_equal(f.text, "SMTP smuggling sequence in DATA at line 2: <CR><LF>.<LF>\n"
                                "bare LF in DATA at line 2\n"
                                "SMTP smuggling sequence in DATA at line 4: <CR><LF>.<LF>\n"
                                "bare LF in DATA at line 4\n"
                                "SMTP smuggling sequence in DATA at line 6: <CR><LF>.<LF>\n"
                                "bare LF in DATA at line 6\n"
                                "bare LF in DATA: 4 occurrences in all (3 shown)\n"
                                "SMTP smuggling sequence in DATA: 4 occurrences in all (3 "
                                "shown)\n");
    assert_same_for_every_split(LIT(many), false, f.text);
}

static void lint_content_begin_starts_a_fresh_count(void **state)
{
    (void)state;
    struct findings f = {0};
    struct lint_content l;
    lint_content_begin(&l, false);
    lint_content_feed(&l, LIT("1\n2\n3\n4\n\r\n.\r\n"), collect_cb, &f);
    lint_content_begin(&l, false);
    memset(&f, 0, sizeof f);
    lint_content_feed(&l, LIT("one\ntwo\r\n.\r\n"), collect_cb, &f);
    lint_content_end(&l, collect_cb, &f);
    assert_string_equal(f.text, "bare LF in DATA at line 1\n");
}

/* ---- a mixed message split at every byte --------------------------------------------------- */

static void mixed_findings_are_the_same_for_every_chunking(void **state)
{
    (void)state;
    static const char mixed[] = "Subject: mixed\r\n"
                                "bare\nlf\nagain\r\n"
                                "nul\0here\r\n"
                                "cr\rthere\r\n"
                                "\r.\r\n"
                                "\n.\n"
                                "..stuffed\r\n"
                                "\r\n.\r"
                                "x\r\n"
                                ".\r\n";
    struct findings f;
    lint_whole(LIT(mixed), false, &f);
    /* The fourth bare LF (line 9) is over the cap: only the summary counts it. */
    assert_string_equal(f.text, "bare LF in DATA at line 2\n"
                                "bare LF in DATA at line 3\n"
                                "NUL byte in DATA at line 5\n"
                                "bare CR in DATA at line 6\n"
                                "bare CR in DATA at line 7\n"
                                "SMTP smuggling sequence in DATA at line 7: <CR>.<CR><LF>\n"
                                "bare LF in DATA at line 8\n"
                                "SMTP smuggling sequence in DATA at line 9: <LF>.<LF>\n"
                                "SMTP smuggling sequence in DATA at line 12: <CR><LF>.<CR>\n"
                                "bare CR in DATA at line 12\n"
                                "bare LF in DATA: 4 occurrences in all (3 shown)\n");
    assert_same_for_every_split(LIT(mixed), false, f.text);
}

/* ---- command lines -------------------------------------------------------------------------- */

static void well_formed_command_gives_no_finding(void **state)
{
    (void)state;
    assert_command_findings(LIT("MAIL FROM:<alice@example.org> SIZE=1000\r\n"), false, "");
    assert_command_findings(LIT("AGFsaWNlAHNlY3JldA==\r\n"), true, "");
}

static void command_ending_in_bare_lf_is_reported(void **state)
{
    (void)state;
    assert_command_findings(LIT("MAIL FROM:<a@example.org>\n"), false,
                            "command line ends with a bare LF (RFC 5321 2.3.8 requires CRLF)\n");
}

static void bare_cr_inside_a_command_is_reported_with_its_offset(void **state)
{
    (void)state;
    assert_command_findings(LIT("RCPT TO:<a>\rRCPT TO:<b>\r\n"), false,
                            "command line contains a bare CR at offset 11\n");
}

static void nul_inside_a_command_is_reported_with_its_offset(void **state)
{
    (void)state;
    assert_command_findings(LIT("HELO a\0b\r\n"), false,
                            "command line contains a NUL byte at offset 6\n");
}

static void only_the_first_bad_byte_of_a_line_is_reported(void **state)
{
    (void)state;
    assert_command_findings(LIT("NOOP \0\r\0\r\n"), false,
                            "command line contains a NUL byte at offset 5\n");
}

static void command_over_512_octets_is_reported(void **state)
{
    (void)state;
    uint8_t line[513];
    memcpy(line, "NOOP ", 5);
    memset(line + 5, 'a', 506);
    memcpy(line + 511, "\r\n", 2);
    assert_command_findings(line, 513, false, "command line is 513 octets (RFC limit 512)\n");
    /* 512 octets, CRLF included, is the limit itself. */
    memcpy(line + 510, "\r\n", 2);
    assert_command_findings(line, 512, false, "");
}

static void sasl_lines_may_be_12288_octets(void **state)
{
    (void)state;
    size_t n = 12289;
    uint8_t *line = malloc(n);
    assert_non_null(line);
    memset(line, 'Q', n);
    memcpy(line + n - 2, "\r\n", 2);
    assert_command_findings(line + 1, n - 1, true, "");
    assert_command_findings(line, n, true, "SASL line is 12289 octets (RFC limit 12288)\n");
    assert_command_findings(line + n - 1000, 1000, false,
                            "command line is 1000 octets (RFC limit 512)\n");
    free(line);
}

static void sasl_line_with_bare_lf_says_sasl(void **state)
{
    (void)state;
    assert_command_findings(LIT("dXNlcg==\n"), true,
                            "SASL line ends with a bare LF (RFC 5321 2.3.8 requires CRLF)\n");
}

/* Lints the first piece of an over-long line and returns the findings. */
static void assert_long_line_findings(const uint8_t *piece, size_t len, bool sasl, const char *want)
{
    struct findings f;
    memset(&f, 0, sizeof f);
    lint_long_line(piece, len, sasl, len, collect_cb, &f);
    assert_string_equal(f.text, want);
}

/* Issue 16, defect 5: a SASL response longer than the framer's bound (16384) is relayed in
 * pieces; the finding says it is a SASL line and gives RFC 4954's limit, not "command line". */
static void over_long_sasl_line_is_called_a_sasl_line(void **state)
{
    (void)state;
    size_t n = 16384;
    uint8_t *piece = malloc(n);
    assert_non_null(piece);
    memset(piece, 'Q', n);
    assert_long_line_findings(
        piece, n, true,
        "SASL line longer than 16384 octets (RFC limit 12288), relayed in pieces\n");
    assert_long_line_findings(
        piece, n, false,
        "command line longer than 16384 octets (RFC limit 512), relayed in pieces\n");
    /* What the piece shows is reported too, as for a complete line. */
    piece[100] = 0;
    assert_long_line_findings(
        piece, n, true,
        "SASL line contains a NUL byte at offset 100\n"
        "SASL line longer than 16384 octets (RFC limit 12288), relayed in pieces\n");
    free(piece);
}

/* ---- replies -------------------------------------------------------------------------------- */

static void well_formed_multiline_reply_gives_no_finding(void **state)
{
    (void)state;
    assert_reply_findings(LIT("250-mx.example\r\n250-PIPELINING\r\n250 SIZE 1000\r\n"), "");
}

static void reply_line_with_bare_lf_is_reported_per_line(void **state)
{
    (void)state;
    assert_reply_findings(LIT("250-mx.example\n250-PIPELINING\r\n250 CHUNKING\n"),
                          "reply line ends with a bare LF (RFC 5321 2.3.8 requires CRLF)\n"
                          "reply line ends with a bare LF (RFC 5321 2.3.8 requires CRLF)\n");
}

static void bare_cr_and_nul_in_a_reply_are_reported(void **state)
{
    (void)state;
    assert_reply_findings(LIT("550 no\rway\r\n"), "reply line contains a bare CR at offset 6\n");
    assert_reply_findings(LIT("250-ok\r\n250 o\0k\r\n"),
                          "reply line contains a NUL byte at offset 5\n");
}

/* Every finding carries a stable rule id and the offset of the offending byte (README's lint
 * table; jsonl lint events). */
static void findings_have_rule_ids_and_offsets(void **state)
{
    (void)state;
    struct findings f = {0};
    lint_reply(LIT("250-ok\r\n250 o\0k\r\n"), collect_cb, &f);
    assert_int_equal(f.count, 1);
    assert_string_equal(f.ids[0], "nul-in-line");
    assert_int_equal(f.at[0], 8 + 5); /* from the reply's first byte */

    memset(&f, 0, sizeof f);
    lint_command_line(LIT("NOOP\n"), false, collect_cb, &f);
    assert_string_equal(f.ids[0], "bare-lf-line-ending");
    assert_int_equal(f.at[0], 4);

    memset(&f, 0, sizeof f);
    struct lint_content l;
    lint_content_begin(&l, false);
    lint_content_feed(&l, LIT("ab\ncd"), collect_cb, &f);     /* bare LF at 2 */
    lint_content_feed(&l, LIT("\rx"), collect_cb, &f);        /* bare CR at 0 of this piece */
    lint_content_feed(&l, LIT("\n.\nz\r\n"), collect_cb, &f); /* <LF>.<LF>: the dot at 1 */
    lint_content_end(&l, collect_cb, &f);
    assert_int_equal(f.count, 5); /* the LF after the dot is bare too */
    assert_string_equal(f.ids[0], "bare-lf-in-message");
    assert_int_equal(f.at[0], 2);
    assert_string_equal(f.ids[1], "bare-cr-in-message");
    assert_int_equal(f.at[1], 0);
    assert_string_equal(f.ids[2], "bare-lf-in-message");
    assert_int_equal(f.at[2], 0);
    assert_string_equal(f.ids[3], "smuggling-sequence");
    assert_int_equal(f.at[3], 1);
    assert_string_equal(f.ids[4], "bare-lf-in-message");
    assert_int_equal(f.at[4], 2);
}

static void a_summary_of_many_findings_has_no_offset(void **state)
{
    (void)state;
    struct findings f = {0};
    struct lint_content l;
    lint_content_begin(&l, true);
    lint_content_feed(&l, LIT("\0\0\0\0\0"), collect_cb, &f);
    lint_content_end(&l, collect_cb, &f);
    assert_int_equal(f.count, 4); /* 3 shown, then the summary */
    assert_int_equal(f.at[2], 2);
    assert_string_equal(f.ids[3], "nul-in-message");
    assert_true(f.at[3] == LINT_AT_NONE);
}

static void reply_line_over_512_octets_is_reported(void **state)
{
    (void)state;
    uint8_t r[8 + 513];
    memcpy(r, "250-ok\r\n", 8);
    memcpy(r + 8, "250 ", 4);
    memset(r + 12, 'x', 507);
    memcpy(r + 8 + 511, "\r\n", 2);
    assert_reply_findings(r, sizeof r, "reply line is 513 octets (RFC 5321 limit 512)\n");
    /* One x fewer: 512 octets, the limit itself. */
    memcpy(r + 8 + 510, "\r\n", 2);
    assert_reply_findings(r, sizeof r - 1, "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ordinary_message_gives_no_finding),
        cmocka_unit_test(empty_message_gives_no_finding),
        cmocka_unit_test(line_of_exactly_1000_octets_gives_no_finding),
        cmocka_unit_test(stuffed_dot_does_not_count_toward_the_line_limit),
        cmocka_unit_test(over_long_stuffed_line_is_measured_without_its_dot),
        cmocka_unit_test(bare_lf_in_data_is_reported_with_its_line),
        cmocka_unit_test(bare_cr_in_data_is_reported_with_its_line),
        cmocka_unit_test(nul_byte_in_data_is_reported),
        cmocka_unit_test(line_of_1001_octets_is_reported_as_over_long),
        cmocka_unit_test(very_long_line_is_reported_once),
        cmocka_unit_test(each_smuggling_terminator_variant_is_reported),
        cmocka_unit_test(each_smuggling_variant_is_found_whatever_the_chunking),
        cmocka_unit_test(smuggling_sequence_right_after_the_data_command_is_reported),
        cmocka_unit_test(cr_lf_dot_cr_followed_by_lf_is_the_real_terminator),
        cmocka_unit_test(whole_smuggled_second_message_is_reported),
        cmocka_unit_test(bdat_content_does_not_report_smuggling_sequences),
        cmocka_unit_test(bdat_message_ending_in_cr_reports_the_bare_cr),
        cmocka_unit_test(bdat_content_with_crlf_dot_crlf_gives_no_finding),
        cmocka_unit_test(nul_and_over_long_lines_are_reported_in_bdat_too),
        cmocka_unit_test(only_three_findings_of_a_kind_are_shown_and_the_rest_summarised),
        cmocka_unit_test(exactly_three_findings_need_no_summary),
        cmocka_unit_test(cap_is_counted_per_kind),
        cmocka_unit_test(summaries_cover_every_kind_over_the_cap),
        cmocka_unit_test(smuggling_sequences_are_capped_too),
        cmocka_unit_test(lint_content_begin_starts_a_fresh_count),
        cmocka_unit_test(mixed_findings_are_the_same_for_every_chunking),
        cmocka_unit_test(well_formed_command_gives_no_finding),
        cmocka_unit_test(command_ending_in_bare_lf_is_reported),
        cmocka_unit_test(bare_cr_inside_a_command_is_reported_with_its_offset),
        cmocka_unit_test(nul_inside_a_command_is_reported_with_its_offset),
        cmocka_unit_test(only_the_first_bad_byte_of_a_line_is_reported),
        cmocka_unit_test(command_over_512_octets_is_reported),
        cmocka_unit_test(sasl_lines_may_be_12288_octets),
        cmocka_unit_test(sasl_line_with_bare_lf_says_sasl),
        cmocka_unit_test(over_long_sasl_line_is_called_a_sasl_line),
        cmocka_unit_test(well_formed_multiline_reply_gives_no_finding),
        cmocka_unit_test(reply_line_with_bare_lf_is_reported_per_line),
        cmocka_unit_test(bare_cr_and_nul_in_a_reply_are_reported),
        cmocka_unit_test(reply_line_over_512_octets_is_reported),
        cmocka_unit_test(findings_have_rule_ids_and_offsets),
        cmocka_unit_test(a_summary_of_many_findings_has_no_offset),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
