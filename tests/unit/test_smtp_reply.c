/* test_smtp_reply.c - unit tests for the server side of the pure SMTP module (smtp.h): the
 * reply parser (smtp_reply_*: reply codes, multi-line replies, malformed and partial replies,
 * take_rest) and the FIFO that pairs pipelined commands with replies (smtp_fifo_*,
 * smtp_pending_blocks).
 *
 * Most reply cases go through a driver that feeds the same byte stream whole, split in two
 * at every byte boundary, split in three at every pair of boundaries (short inputs) and one
 * byte at a time, each taking all replies per feed or one reply per feed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtp_driver.h"
#include "smtptap/smtp.h"

/* ---- replies -------------------------------------------------------------------------- */

static void test_reply_line_code_validity(void **state)
{
    (void)state;
    static const struct {
        const char *line;
        int code;
        bool more;
    } cases[] = {
        {"250 ok\r\n", 250, false},
        {"250-ok\r\n", 250, true},
        {"250\r\n", 250, false},
        {"250\n", 250, false},
        {"250", 250, false},
        {"250-", 250, true},
        {"220 x", 220, false},
        {"554 no", 554, false},
        {"200 x", 200, false},
        {"559 x", 559, false},
        {"300 x", 300, false},
        {"421-x", 421, true},
        {"199 x", 0, false},
        {"600 x", 0, false},
        {"2a0 x", 0, false},
        {"260 x", 0, false},
        {"099 x", 0, false},
        {"25", 0, false},
        {"", 0, false},
        {"250x", 0, false},
        {"250\tok", 0, false},
        {" 250 ok", 0, false},
        {"2500 x", 0, false},
        {"250\r", 250, false},
        {"25 0", 0, false},
        {"-250 x", 0, false},
        {"2\xff"
         "0 x",
         0, false},
    };
    for (size_t i = 0; i < NELEM(cases); i++) {
        bool more = !cases[i].more;
        int code =
            smtp_reply_line_code((const uint8_t *)cases[i].line, strlen(cases[i].line), &more);
        if (code != cases[i].code || more != cases[i].more)
            fail_msg("line %zu \"%s\": code %d more %d, expected %d %d", i, cases[i].line, code,
                     more, cases[i].code, cases[i].more);
    }
}

struct rexp {
    int code;
    const uint8_t *bytes;
    size_t len;
    unsigned lines;
    bool malformed;
    bool partial;
};

#define R(c, s, l, m)                                                                              \
    {                                                                                              \
        .code = (c), .bytes = (const uint8_t *)(s), .len = sizeof(s) - 1, .lines = (l),            \
        .malformed = (m)                                                                           \
    }

#define MAX_REPLIES 32

struct got_reply {
    int code;
    uint8_t *bytes;
    size_t len;
    unsigned lines;
    bool malformed, partial;
};

static void reply_run_one(const uint8_t *in, size_t n, const struct rexp *exp, size_t nexp,
                          size_t final_buffered, bool onestep, const size_t *cuts, size_t ncuts)
{
    struct smtp_reply_parser p;
    struct got_reply got[MAX_REPLIES];
    size_t ngot = 0;
    const char *diff = NULL;
    smtp_reply_init(&p);
    size_t start = 0;
    for (size_t k = 0; k <= ncuts; k++) {
        size_t end = k < ncuts ? cuts[k] : n;
        smtp_reply_feed(&p, in + start, end - start);
        start = end;
        struct smtp_reply r;
        while (smtp_reply_next(&p, &r)) {
            if (ngot == MAX_REPLIES) {
                diff = "too many replies";
                break;
            }
            got[ngot].code = r.code;
            got[ngot].len = r.len;
            got[ngot].lines = r.lines;
            got[ngot].malformed = r.malformed;
            got[ngot].partial = r.partial;
            got[ngot].bytes = malloc(r.len ? r.len : 1);
            assert_non_null(got[ngot].bytes);
            memcpy(got[ngot].bytes, r.bytes, r.len);
            ngot++;
            if (onestep && k < ncuts) break;
        }
    }
    /* Drain what a one-step schedule left behind. */
    struct smtp_reply r;
    while (!diff && smtp_reply_next(&p, &r)) {
        if (ngot == MAX_REPLIES) {
            diff = "too many replies";
            break;
        }
        got[ngot] = (struct got_reply){
            r.code, malloc(r.len ? r.len : 1), r.len, r.lines, r.malformed, r.partial};
        assert_non_null(got[ngot].bytes);
        memcpy(got[ngot].bytes, r.bytes, r.len);
        ngot++;
    }
    size_t at = 0;
    for (size_t i = 0; !diff && (i < ngot || i < nexp); i++) {
        at = i;
        if (i >= ngot)
            diff = "missing reply";
        else if (i >= nexp)
            diff = "extra reply";
        else if (got[i].code != exp[i].code)
            diff = "code";
        else if (got[i].lines != exp[i].lines)
            diff = "lines";
        else if (got[i].malformed != exp[i].malformed)
            diff = "malformed";
        else if (got[i].partial != exp[i].partial)
            diff = "partial";
        else if (got[i].len != exp[i].len || memcmp(got[i].bytes, exp[i].bytes, exp[i].len))
            diff = "bytes";
    }
    /* What is left unparsed is still there: the take_rest count tells it. */
    const uint8_t *rest;
    size_t left = smtp_reply_take_rest(&p, &rest);
    if (!diff && left != final_buffered) diff = "bytes left over";
    if (diff) {
        char split[160];
        describe_split(split, sizeof split, cuts, ncuts);
        fprintf(stderr, "reply mismatch (%s) at reply %zu, %s%s; left %zu expected %zu\n", diff, at,
                split, onestep ? " one-step" : "", left, final_buffered);
        dump_bytes("input", in, n);
        if (at < ngot) {
            fprintf(stderr, "  got code=%d lines=%u malformed=%d partial=%d\n", got[at].code,
                    got[at].lines, got[at].malformed, got[at].partial);
            dump_bytes("got", got[at].bytes, got[at].len);
        }
        if (at < nexp) {
            fprintf(stderr, "  expected code=%d lines=%u malformed=%d partial=%d\n", exp[at].code,
                    exp[at].lines, exp[at].malformed, exp[at].partial);
            dump_bytes("expected", exp[at].bytes, exp[at].len);
        }
    }
    for (size_t i = 0; i < ngot; i++) free(got[i].bytes);
    smtp_reply_free(&p);
    if (diff) fail_msg("reply case failed: %s", diff);
}

static void run_reply_case(const uint8_t *in, size_t n, const struct rexp *exp, size_t nexp,
                           size_t final_buffered)
{
    size_t *cuts = calloc(n + 1, sizeof *cuts);
    assert_non_null(cuts);
    for (int onestep = 0; onestep < 2; onestep++) {
        reply_run_one(in, n, exp, nexp, final_buffered, onestep, NULL, 0);
        for (size_t k = 1; k < n; k++) {
            cuts[0] = k;
            reply_run_one(in, n, exp, nexp, final_buffered, onestep, cuts, 1);
        }
        if (n <= 64) {
            for (size_t a = 1; a < n; a++) {
                for (size_t b = a + 1; b < n; b++) {
                    cuts[0] = a;
                    cuts[1] = b;
                    reply_run_one(in, n, exp, nexp, final_buffered, onestep, cuts, 2);
                }
            }
        }
        if (n > 1) {
            for (size_t k = 1; k < n; k++) cuts[k - 1] = k;
            reply_run_one(in, n, exp, nexp, final_buffered, onestep, cuts, n - 1);
        }
    }
    free(cuts);
}

#define REPLY_CASE(input, exp_, left) run_reply_case(LIT(input), (exp_), NELEM(exp_), (left))

static void test_reply_single_line(void **state)
{
    (void)state;
    const struct rexp exp[] = {R(220, "220 mx.example ESMTP ready\r\n", 1, false)};
    REPLY_CASE("220 mx.example ESMTP ready\r\n", exp, 0);
}

static void test_reply_multiline_is_one_reply(void **state)
{
    (void)state;
    const struct rexp exp[] = {R(250, "250-a\r\n250-b\r\n250 c\r\n", 3, false)};
    REPLY_CASE("250-a\r\n250-b\r\n250 c\r\n", exp, 0);
}

static void test_reply_bare_code_line_and_bare_lf(void **state)
{
    (void)state;
    const struct rexp exp[] = {
        R(250, "250\r\n", 1, false),
        R(354, "354\n", 1, false),
        R(250, "250-x\n250\n", 2, false),
    };
    REPLY_CASE("250\r\n354\n250-x\n250\n", exp, 0);
}

static void test_reply_several_in_one_read(void **state)
{
    (void)state;
    const struct rexp exp[] = {
        R(250, "250-mx.example\r\n250-PIPELINING\r\n250 CHUNKING\r\n", 3, false),
        R(250, "250 2.1.0 ok\r\n", 1, false),
        R(250, "250 2.1.5 ok\r\n", 1, false),
        R(554, "554 5.7.1 no\r\n", 1, false),
        R(354, "354 go ahead\r\n", 1, false),
    };
    REPLY_CASE("250-mx.example\r\n250-PIPELINING\r\n250 CHUNKING\r\n250 2.1.0 ok\r\n250 2.1.5 "
               "ok\r\n554 5.7.1 no\r\n354 go ahead\r\n",
               exp, 0);
}

static void test_reply_step_by_step_bytes_valid_until_next_call(void **state)
{
    (void)state;
    struct smtp_reply_parser p;
    struct smtp_reply r;
    smtp_reply_init(&p);
    assert_false(smtp_reply_next(&p, &r));
    smtp_reply_feed(&p, LIT("250-a\r\n250 b\r\n221 bye\r\n4"));
    assert_true(smtp_reply_next(&p, &r));
    assert_int_equal(r.code, 250);
    assert_int_equal(r.lines, 2);
    assert_int_equal(r.len, 14);
    assert_memory_equal(r.bytes, "250-a\r\n250 b\r\n", 14);
    assert_false(r.malformed);
    assert_false(r.partial);
    assert_true(smtp_reply_next(&p, &r));
    assert_int_equal(r.code, 221);
    assert_int_equal(r.lines, 1);
    assert_memory_equal(r.bytes, "221 bye\r\n", 9);
    assert_false(smtp_reply_next(&p, &r));
    assert_false(smtp_reply_next(&p, &r));
    smtp_reply_feed(&p, LIT("21 closing\r\n"));
    assert_true(smtp_reply_next(&p, &r));
    assert_int_equal(r.code, 421);
    assert_int_equal(r.len, 13);
    assert_memory_equal(r.bytes, "421 closing\r\n", 13);
    smtp_reply_free(&p);
}

static void test_reply_malformed_line_alone_is_a_reply_with_code_zero(void **state)
{
    (void)state;
    const struct rexp exp[] = {
        R(0, "hello\r\n", 1, true),
        R(0, "\r\n", 1, true),
        R(0, "199 too low\r\n", 1, true),
        R(0, "600 too high\r\n", 1, true),
        R(0, "2a0 not a number\r\n", 1, true),
        R(0, "250x glued\n", 1, true),
        R(250, "250 ok\r\n", 1, false),
    };
    REPLY_CASE("hello\r\n\r\n199 too low\r\n600 too high\r\n2a0 not a number\r\n250x "
               "glued\n250 ok\r\n",
               exp, 0);
}

static void test_reply_mixed_codes_in_one_multiline_reply_are_malformed(void **state)
{
    (void)state;
    const struct rexp exp[] = {
        R(250, "250-a\r\n251-b\r\n250 c\r\n", 3, true),
        R(250, "250-a\r\n251 b\r\n", 2, true),
        R(250, "250-a\r\njunk\r\n250 c\r\n", 3, true),
        R(220, "220 ok\r\n", 1, false),
    };
    REPLY_CASE("250-a\r\n251-b\r\n250 c\r\n250-a\r\n251 b\r\n250-a\r\njunk\r\n250 c\r\n220 ok\r\n",
               exp, 0);
}

static void test_reply_incomplete_reply_is_held(void **state)
{
    (void)state;
    const struct rexp exp[] = {R(250, "250 a\r\n", 1, false)};
    /* A continuation line without its final line, then half a line. */
    REPLY_CASE("250 a\r\n250-b\r\n250-c\r\n250 d", exp, 19);
}

static void test_reply_is_partial_when_it_grows_past_max_reply(void **state)
{
    (void)state;
    struct smtp_reply_parser p;
    struct smtp_reply r;
    smtp_reply_init(&p);
    p.max_reply = 16;
    /* Two complete continuation lines (20 bytes) and no end yet: past the bound. */
    smtp_reply_feed(&p, LIT("250-aaaa\r\n250-bbbb\r\n"));
    assert_true(smtp_reply_next(&p, &r));
    assert_true(r.partial);
    assert_int_equal(r.code, 250);
    assert_int_equal(r.lines, 2);
    assert_false(r.malformed);
    assert_int_equal(r.len, 20);
    assert_memory_equal(r.bytes, "250-aaaa\r\n250-bbbb\r\n", 20);
    assert_false(smtp_reply_next(&p, &r));
    smtp_reply_feed(&p, LIT("250 cc\r\n221 bye\r\n"));
    assert_true(smtp_reply_next(&p, &r));
    /* The last piece closes the same reply: it pairs with the command, counts every line. */
    assert_false(r.partial);
    assert_int_equal(r.code, 250);
    assert_int_equal(r.lines, 3);
    assert_int_equal(r.len, 8);
    assert_memory_equal(r.bytes, "250 cc\r\n", 8);
    assert_true(smtp_reply_next(&p, &r));
    assert_false(r.partial);
    assert_int_equal(r.code, 221);
    assert_int_equal(r.lines, 1);
    assert_false(smtp_reply_next(&p, &r));

    /* At the bound exactly nothing is emitted. */
    smtp_reply_feed(&p, LIT("250-aaaaaaaaaaa\r"));
    assert_false(smtp_reply_next(&p, &r));
    smtp_reply_feed(&p, LIT("\n"));
    assert_true(smtp_reply_next(&p, &r));
    assert_true(r.partial);
    assert_int_equal(r.len, 17);
    assert_int_equal(r.lines, 1);
    assert_int_equal(r.code, 250);

    /* The rest of that reply arrives in one read: its last piece is not partial and counts
     * the line emitted before. */
    smtp_reply_feed(&p, LIT("250-aaaa\r\n250-bbbb\r\n250 cccc\r\n"));
    assert_true(smtp_reply_next(&p, &r));
    assert_false(r.partial);
    assert_int_equal(r.lines, 4);
    assert_int_equal(r.len, 30);

    /* A complete reply longer than the bound that arrives in one read is not partial. */
    smtp_reply_feed(&p, LIT("250-aaaa\r\n250-bbbb\r\n250 cccc\r\n"));
    assert_true(smtp_reply_next(&p, &r));
    assert_false(r.partial);
    assert_int_equal(r.lines, 3);
    assert_int_equal(r.len, 30);
    smtp_reply_free(&p);
}

/* A piece cut inside a line: the rest of that line is not a reply of its own, so one server
 * reply pops the FIFO exactly once, however it is cut. */
static void test_reply_cut_mid_line_pairs_once(void **state)
{
    (void)state;
    struct smtp_reply_parser p;
    struct smtp_reply r;
    smtp_reply_init(&p);
    p.max_reply = 8;
    smtp_reply_feed(&p, LIT("250-abcdefghijkl"));
    assert_true(smtp_reply_next(&p, &r));
    assert_true(r.partial);
    assert_int_equal(r.code, 250);
    smtp_reply_feed(&p, LIT("mnopqrstuvwxyz"));
    assert_true(smtp_reply_next(&p, &r)); /* still past the bound, still inside the line */
    assert_true(r.partial);
    smtp_reply_feed(&p, LIT("\r\n250 end\r\n"));
    assert_true(smtp_reply_next(&p, &r));
    assert_false(r.partial);
    assert_false(r.malformed);
    assert_int_equal(r.code, 250);
    assert_int_equal(r.lines, 2);
    assert_int_equal(r.len, 11);
    assert_memory_equal(r.bytes, "\r\n250 end\r\n", 11);
    assert_false(smtp_reply_next(&p, &r));
    /* A final line cut in the middle ends the reply when its LF comes. */
    smtp_reply_feed(&p, LIT("451 0123456789"));
    assert_true(smtp_reply_next(&p, &r));
    assert_true(r.partial);
    smtp_reply_feed(&p, LIT("\r\n220 x\r\n"));
    assert_true(smtp_reply_next(&p, &r));
    assert_false(r.partial);
    assert_int_equal(r.code, 451);
    assert_int_equal(r.len, 2);
    assert_true(smtp_reply_next(&p, &r));
    assert_int_equal(r.code, 220);
    smtp_reply_free(&p);
}

static void test_reply_partial_inside_an_over_long_first_line(void **state)
{
    (void)state;
    struct smtp_reply_parser p;
    struct smtp_reply r;
    smtp_reply_init(&p);
    p.max_reply = 16;
    static const char in[] = "250-xxxxxxxxxxxxxxxxxxxx";
    smtp_reply_feed(&p, LIT(in));
    assert_true(smtp_reply_next(&p, &r));
    assert_true(r.partial);
    assert_int_equal(r.len, 24);
    assert_memory_equal(r.bytes, in, 24);
    assert_int_equal(r.lines, 0);
    /* The first line does carry a valid code even though it is not complete. */
    assert_int_equal(r.code, 250);
    assert_false(r.malformed);

    /* Every byte comes out exactly once and the reply still ends at its final line. */
    smtp_reply_feed(&p, LIT("yy\r\n250 end\r\n"));
    uint8_t all[64];
    size_t n = 0;
    struct smtp_reply lastr = {0};
    while (smtp_reply_next(&p, &r)) {
        assert_true(n + r.len <= sizeof all);
        memcpy(all + n, r.bytes, r.len);
        n += r.len;
        lastr = r;
    }
    assert_int_equal(n, 13);
    assert_memory_equal(all, "yy\r\n250 end\r\n", 13);
    assert_false(lastr.partial);
    assert_int_equal(lastr.code, 250);
    assert_memory_equal(lastr.bytes + lastr.len - 9, "250 end\r\n", 9);
    smtp_reply_free(&p);
}

static void test_reply_take_rest_hands_over_every_buffered_byte(void **state)
{
    (void)state;
    struct smtp_reply_parser p;
    struct smtp_reply r;
    const uint8_t *rest = NULL;
    smtp_reply_init(&p);
    smtp_reply_feed(&p, LIT("220 go ahead\r\n\x16\x03\x03\0\x02\r\n"));
    assert_true(smtp_reply_next(&p, &r));
    assert_int_equal(r.code, 220);
    assert_int_equal(r.len, 14);
    assert_int_equal(smtp_reply_take_rest(&p, &rest), 7);
    assert_memory_equal(rest, "\x16\x03\x03\0\x02\r\n", 7);
    assert_false(smtp_reply_next(&p, &r));
    assert_int_equal(smtp_reply_take_rest(&p, &rest), 0);
    smtp_reply_feed(&p, LIT("abc"));
    assert_int_equal(smtp_reply_take_rest(&p, &rest), 3);
    assert_memory_equal(rest, "abc", 3);
    assert_int_equal(smtp_reply_take_rest(&p, &rest), 0);
    smtp_reply_free(&p);
}

static void test_reply_take_rest_mid_reply_leaves_a_clean_parser(void **state)
{
    (void)state;
    struct smtp_reply_parser p;
    struct smtp_reply r;
    const uint8_t *rest = NULL;
    smtp_reply_init(&p);
    /* Scanned lines of an unfinished, malformed reply... */
    smtp_reply_feed(&p, LIT("250-a\r\njunk\r\n251-b\r\n"));
    assert_false(smtp_reply_next(&p, &r));
    assert_int_equal(smtp_reply_take_rest(&p, &rest), 20);
    assert_memory_equal(rest, "250-a\r\njunk\r\n251-b\r\n", 20);
    /* ...leave nothing behind that colours the next reply. */
    smtp_reply_feed(&p, LIT("220 ok\r\n"));
    assert_true(smtp_reply_next(&p, &r));
    assert_int_equal(r.code, 220);
    assert_int_equal(r.lines, 1);
    assert_false(r.malformed);
    assert_false(r.partial);
    assert_int_equal(r.len, 8);
    assert_memory_equal(r.bytes, "220 ok\r\n", 8);
    smtp_reply_free(&p);
}

/* Issue 16, defect 4: a parser that was never fed has no storage; asking it for a reply or for
 * its rest must not compute NULL + 0 (clang's UBSan reports it) nor hand out NULL. */
static void test_reply_parser_never_fed_hands_out_no_null_pointer(void **state)
{
    (void)state;
    struct smtp_reply_parser p;
    struct smtp_reply r;
    const uint8_t *rest = NULL;
    smtp_reply_init(&p);
    assert_false(smtp_reply_next(&p, &r));
    assert_int_equal(smtp_reply_take_rest(&p, &rest), 0);
    assert_non_null(rest);
    smtp_reply_free(&p);
}

/* ---- replies past the bound, cut anywhere ----------------------------------------------- */

/* The replies of a stream as the session pairs them: the pieces of a partial reply joined to
 * the piece that ends it, with that piece's code, line count and malformed flag. */
struct logical {
    char bytes[512];
    size_t len;
    int code;
    unsigned lines;
    bool malformed;
};

/* Feeds in[0..n) cut at cuts[0..ncuts) to a parser bounded at max_reply; returns how many
 * replies ended (at most max_out). Every emitted byte must come out exactly once. */
static size_t logical_replies(const uint8_t *in, size_t n, size_t max_reply, const size_t *cuts,
                              size_t ncuts, struct logical *out, size_t max_out)
{
    struct smtp_reply_parser p;
    struct logical cur = {0};
    size_t nout = 0, emitted = 0, start = 0;
    smtp_reply_init(&p);
    p.max_reply = max_reply;
    for (size_t k = 0; k <= ncuts; k++) {
        size_t end = k < ncuts ? cuts[k] : n;
        smtp_reply_feed(&p, in + start, end - start);
        start = end;
        struct smtp_reply r;
        while (smtp_reply_next(&p, &r)) {
            assert_true(r.len > 0);
            assert_memory_equal(r.bytes, in + emitted, r.len);
            emitted += r.len;
            assert_true(cur.len + r.len <= sizeof cur.bytes);
            memcpy(cur.bytes + cur.len, r.bytes, r.len);
            cur.len += r.len;
            if (r.partial) continue;
            cur.code = r.code;
            cur.lines = r.lines;
            cur.malformed = r.malformed;
            assert_true(nout < max_out);
            out[nout++] = cur;
            memset(&cur, 0, sizeof cur);
        }
    }
    const uint8_t *rest;
    assert_int_equal(emitted + smtp_reply_take_rest(&p, &rest), n);
    smtp_reply_free(&p);
    return nout;
}

/* Every split of the stream in one or two places, with a bound of max_reply, gives the
 * replies an unbounded parser finds in the whole stream: pairing cannot drift. */
static void assert_bounded_replies_match_whole(const uint8_t *in, size_t n, size_t max_reply)
{
    struct logical want[8], got[8];
    size_t nwant = logical_replies(in, n, 1 << 20, NULL, 0, want, NELEM(want));
    for (size_t a = 0; a <= n; a++) {
        for (size_t b = a; b <= n; b++) {
            size_t cuts[2] = {a, b};
            size_t ngot = logical_replies(in, n, max_reply, cuts, 2, got, NELEM(got));
            bool same = ngot == nwant;
            for (size_t i = 0; same && i < ngot; i++)
                same = got[i].len == want[i].len &&
                       !memcmp(got[i].bytes, want[i].bytes, got[i].len) &&
                       got[i].code == want[i].code && got[i].lines == want[i].lines &&
                       got[i].malformed == want[i].malformed;
            if (!same) {
                dump_bytes("input", in, n);
                fail_msg("bound %zu, cut at %zu and %zu: %zu replies (first code %d), want %zu",
                         max_reply, a, b, ngot, ngot ? got[0].code : -1, nwant);
            }
        }
    }
}

/* Issue 16, defect 1: a piece past the bound that ends 1-3 bytes into a line ("250" of
 * "250-more") must not take those bytes for a final line. */
static void test_reply_cut_within_the_first_bytes_of_a_line_does_not_end_the_reply(void **state)
{
    (void)state;
    struct smtp_reply_parser p;
    struct smtp_reply r;
    smtp_reply_init(&p);
    p.max_reply = 8;
    smtp_reply_feed(&p, LIT("250-abcdefgh\r\n250"));
    while (smtp_reply_next(&p, &r)) assert_true(r.partial);
    smtp_reply_feed(&p, LIT("-more\r\n250 2.1.5 ok\r\n"));
    unsigned ended = 0;
    while (smtp_reply_next(&p, &r)) {
        if (r.partial) continue;
        ended++;
        assert_int_equal(r.code, 250);
        assert_int_equal(r.lines, 3);
        assert_false(r.malformed);
        assert_memory_equal(r.bytes + r.len - 14, "250 2.1.5 ok\r\n", 14);
    }
    assert_int_equal(ended, 1);
    smtp_reply_free(&p);

    for (size_t bound = 1; bound <= 12; bound++) {
        assert_bounded_replies_match_whole(LIT("250-abcdefgh\r\n250-more\r\n250 ok\r\n221 x\r\n"),
                                           bound);
        assert_bounded_replies_match_whole(LIT("250-a\r\n25\r\n250-b\r\n250\r\n"), bound);
        assert_bounded_replies_match_whole(LIT("hello\r\n250-x\n250 y\n"), bound);
    }
}

/* The same at the real bound: 65,537 bytes ending in "250", then "-more" and the final line
 * (what a server sent in the reproduction). */
static void test_reply_of_64k_cut_after_250_is_one_reply(void **state)
{
    (void)state;
    struct smtp_reply_parser p;
    struct smtp_reply r;
    smtp_reply_init(&p);
    size_t first = 65537;
    uint8_t *big = malloc(first);
    assert_non_null(big);
    size_t at = 0;
    while (first - at - 3 >= 100) { /* lines "250-xxx...\r\n" of 100 bytes */
        memcpy(big + at, "250-", 4);
        memset(big + at + 4, 'x', 94);
        memcpy(big + at + 98, "\r\n", 2);
        at += 100;
    }
    size_t last = first - at - 3; /* one shorter line, then "250" */
    memcpy(big + at, "250-", 4);
    memset(big + at + 4, 'y', last - 6);
    memcpy(big + at + last - 2, "\r\n250", 5);
    smtp_reply_feed(&p, big, first);
    size_t out = 0;
    while (smtp_reply_next(&p, &r)) {
        assert_true(r.partial);
        out += r.len;
    }
    smtp_reply_feed(&p, LIT("-more\r\n250 2.1.5 ok\r\n"));
    unsigned ended = 0;
    while (smtp_reply_next(&p, &r)) {
        out += r.len;
        if (r.partial) continue;
        ended++;
        assert_int_equal(r.code, 250);
        assert_false(r.malformed);
        assert_int_equal(r.lines, at / 100 + 3);
    }
    assert_int_equal(ended, 1);
    assert_int_equal(out, first + 21);
    free(big);
    smtp_reply_free(&p);
}

/* ---- pairing FIFO --------------------------------------------------------------------- */

static struct smtp_pending pending(enum smtp_pending_kind kind, enum smtp_verb verb, uint64_t seq)
{
    struct smtp_pending p = {.kind = kind, .verb = verb, .seq = seq};
    return p;
}

static void test_fifo_pops_in_push_order(void **state)
{
    (void)state;
    struct smtp_fifo f;
    struct smtp_pending out;
    smtp_fifo_init(&f, 100);
    assert_int_equal(smtp_fifo_count(&f), 0);
    assert_false(smtp_fifo_pop(&f, &out));
    assert_true(smtp_fifo_push(&f, pending(SMTP_PENDING_GREETING, SMTP_VERB_UNKNOWN, 0)));
    assert_true(smtp_fifo_push(&f, pending(SMTP_PENDING_COMMAND, SMTP_VERB_EHLO, 1)));
    assert_true(smtp_fifo_push(&f, pending(SMTP_PENDING_COMMAND, SMTP_VERB_MAIL, 2)));
    assert_true(smtp_fifo_push(&f, pending(SMTP_PENDING_DATA_END, SMTP_VERB_DATA, 3)));
    assert_int_equal(smtp_fifo_count(&f), 4);
    assert_true(smtp_fifo_pop(&f, &out));
    assert_int_equal(out.kind, SMTP_PENDING_GREETING);
    assert_int_equal(out.seq, 0);
    assert_true(smtp_fifo_pop(&f, &out));
    assert_int_equal(out.kind, SMTP_PENDING_COMMAND);
    assert_int_equal(out.verb, SMTP_VERB_EHLO);
    assert_int_equal(out.seq, 1);
    assert_true(smtp_fifo_pop(&f, &out));
    assert_int_equal(out.verb, SMTP_VERB_MAIL);
    assert_int_equal(out.seq, 2);
    assert_true(smtp_fifo_pop(&f, &out));
    assert_int_equal(out.kind, SMTP_PENDING_DATA_END);
    assert_int_equal(out.seq, 3);
    assert_int_equal(smtp_fifo_count(&f), 0);
    out.seq = 777;
    assert_false(smtp_fifo_pop(&f, &out));
    assert_int_equal(out.seq, 777);
    smtp_fifo_free(&f);
    assert_null(f.items);
    assert_int_equal(f.count, 0);
}

static void test_fifo_wraps_around_many_times(void **state)
{
    (void)state;
    struct smtp_fifo f;
    struct smtp_pending out;
    smtp_fifo_init(&f, 1000);
    uint64_t pushed = 0, popped = 0;
    /* Keep 5 items in flight while 10000 pass through a ring of 8. */
    for (; pushed < 5; pushed++)
        assert_true(smtp_fifo_push(&f, pending(SMTP_PENDING_COMMAND, SMTP_VERB_RCPT, pushed)));
    size_t cap = f.cap;
    assert_int_equal(cap, 8);
    while (popped < 10000) {
        assert_true(smtp_fifo_pop(&f, &out));
        assert_int_equal(out.seq, popped);
        popped++;
        assert_true(smtp_fifo_push(&f, pending(SMTP_PENDING_COMMAND, SMTP_VERB_RCPT, pushed)));
        pushed++;
        assert_int_equal(smtp_fifo_count(&f), 5);
    }
    assert_int_equal(f.cap, cap);
    while (smtp_fifo_pop(&f, &out)) {
        assert_int_equal(out.seq, popped);
        popped++;
    }
    assert_int_equal(popped, pushed);
    smtp_fifo_free(&f);
}

static void test_fifo_keeps_order_when_growing_while_wrapped(void **state)
{
    (void)state;
    struct smtp_fifo f;
    struct smtp_pending out;
    smtp_fifo_init(&f, 1000);
    uint64_t pushed = 0, popped = 0;
    for (int round = 0; round < 50; round++) {
        /* Push more than we pop so the ring grows while its head is not at 0. */
        for (int i = 0; i < 7; i++, pushed++)
            assert_true(smtp_fifo_push(&f, pending(SMTP_PENDING_COMMAND, SMTP_VERB_NOOP, pushed)));
        for (int i = 0; i < 5; i++, popped++) {
            assert_true(smtp_fifo_pop(&f, &out));
            assert_int_equal(out.seq, popped);
        }
    }
    assert_int_equal(smtp_fifo_count(&f), 100);
    while (smtp_fifo_pop(&f, &out)) {
        assert_int_equal(out.seq, popped);
        popped++;
    }
    assert_int_equal(popped, pushed);
    smtp_fifo_free(&f);
}

static void test_fifo_respects_its_max(void **state)
{
    (void)state;
    struct smtp_fifo f;
    struct smtp_pending out;
    smtp_fifo_init(&f, 3);
    for (uint64_t i = 0; i < 3; i++)
        assert_true(smtp_fifo_push(&f, pending(SMTP_PENDING_COMMAND, SMTP_VERB_RCPT, i)));
    assert_false(smtp_fifo_push(&f, pending(SMTP_PENDING_COMMAND, SMTP_VERB_RCPT, 99)));
    assert_int_equal(smtp_fifo_count(&f), 3);
    assert_true(smtp_fifo_pop(&f, &out));
    assert_int_equal(out.seq, 0);
    assert_true(smtp_fifo_push(&f, pending(SMTP_PENDING_COMMAND, SMTP_VERB_RCPT, 3)));
    assert_false(smtp_fifo_push(&f, pending(SMTP_PENDING_COMMAND, SMTP_VERB_RCPT, 100)));
    for (uint64_t i = 1; i <= 3; i++) {
        assert_true(smtp_fifo_pop(&f, &out));
        assert_int_equal(out.seq, i);
    }
    assert_false(smtp_fifo_pop(&f, &out));
    smtp_fifo_free(&f);

    smtp_fifo_init(&f, 0);
    assert_false(smtp_fifo_push(&f, pending(SMTP_PENDING_GREETING, SMTP_VERB_UNKNOWN, 0)));
    assert_int_equal(smtp_fifo_count(&f), 0);
    smtp_fifo_free(&f);

    smtp_fifo_init(&f, 1000);
    for (uint64_t i = 0; i < 1000; i++)
        assert_true(smtp_fifo_push(&f, pending(SMTP_PENDING_COMMAND, SMTP_VERB_RCPT, i)));
    assert_false(smtp_fifo_push(&f, pending(SMTP_PENDING_COMMAND, SMTP_VERB_RCPT, 1000)));
    assert_int_equal(smtp_fifo_count(&f), 1000);
    smtp_fifo_free(&f);
}

static void test_fifo_releases_large_storage_when_drained_and_still_works(void **state)
{
    (void)state;
    struct smtp_fifo f;
    struct smtp_pending out;
    smtp_fifo_init(&f, 500);
    for (uint64_t i = 0; i < 100; i++)
        assert_true(smtp_fifo_push(&f, pending(SMTP_PENDING_COMMAND, SMTP_VERB_RCPT, i)));
    assert_true(f.cap >= 100);
    for (uint64_t i = 0; i < 100; i++) {
        assert_true(smtp_fifo_pop(&f, &out));
        assert_int_equal(out.seq, i);
    }
    assert_null(f.items);
    assert_int_equal(f.cap, 0);
    assert_true(smtp_fifo_push(&f, pending(SMTP_PENDING_SASL, SMTP_VERB_UNKNOWN, 7)));
    assert_true(smtp_fifo_pop(&f, &out));
    assert_int_equal(out.kind, SMTP_PENDING_SASL);
    assert_int_equal(out.seq, 7);
    smtp_fifo_free(&f);
}

static void test_pending_blocks_only_for_data_auth_starttls_and_sasl(void **state)
{
    (void)state;
    for (int v = SMTP_VERB_UNKNOWN; v <= SMTP_VERB_STARTTLS; v++) {
        struct smtp_pending cmd = pending(SMTP_PENDING_COMMAND, (enum smtp_verb)v, 1);
        bool blocks = v == SMTP_VERB_DATA || v == SMTP_VERB_AUTH || v == SMTP_VERB_STARTTLS;
        assert_int_equal(smtp_pending_blocks(&cmd), blocks);
        struct smtp_pending greet = pending(SMTP_PENDING_GREETING, (enum smtp_verb)v, 0);
        assert_false(smtp_pending_blocks(&greet));
        struct smtp_pending end = pending(SMTP_PENDING_DATA_END, (enum smtp_verb)v, 2);
        assert_false(smtp_pending_blocks(&end));
        struct smtp_pending sasl = pending(SMTP_PENDING_SASL, (enum smtp_verb)v, 3);
        assert_true(smtp_pending_blocks(&sasl));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reply_line_code_validity),
        cmocka_unit_test(test_reply_single_line),
        cmocka_unit_test(test_reply_multiline_is_one_reply),
        cmocka_unit_test(test_reply_bare_code_line_and_bare_lf),
        cmocka_unit_test(test_reply_several_in_one_read),
        cmocka_unit_test(test_reply_step_by_step_bytes_valid_until_next_call),
        cmocka_unit_test(test_reply_malformed_line_alone_is_a_reply_with_code_zero),
        cmocka_unit_test(test_reply_mixed_codes_in_one_multiline_reply_are_malformed),
        cmocka_unit_test(test_reply_incomplete_reply_is_held),
        cmocka_unit_test(test_reply_is_partial_when_it_grows_past_max_reply),
        cmocka_unit_test(test_reply_cut_mid_line_pairs_once),
        cmocka_unit_test(test_reply_partial_inside_an_over_long_first_line),
        cmocka_unit_test(test_reply_take_rest_hands_over_every_buffered_byte),
        cmocka_unit_test(test_reply_take_rest_mid_reply_leaves_a_clean_parser),
        cmocka_unit_test(test_reply_parser_never_fed_hands_out_no_null_pointer),
        cmocka_unit_test(test_reply_cut_within_the_first_bytes_of_a_line_does_not_end_the_reply),
        cmocka_unit_test(test_reply_of_64k_cut_after_250_is_one_reply),

        cmocka_unit_test(test_fifo_pops_in_push_order),
        cmocka_unit_test(test_fifo_wraps_around_many_times),
        cmocka_unit_test(test_fifo_keeps_order_when_growing_while_wrapped),
        cmocka_unit_test(test_fifo_respects_its_max),
        cmocka_unit_test(test_fifo_releases_large_storage_when_drained_and_still_works),
        cmocka_unit_test(test_pending_blocks_only_for_data_auth_starttls_and_sasl),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
