/* test_message.c - unit tests for the transcript's view of a message (message.h).
 *
 * The summary's SHA-256 is checked against OpenSSL's SHA256() of the bytes the test expects
 * to be delivered (unstuffed, no terminator), and every message is also fed split at every
 * byte boundary, in three pieces and one byte at a time: the lines shown and the summary
 * must not depend on the chunking. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <openssl/sha.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtptap/message.h"

/* A string literal as (bytes, length), embedded NULs included. */
#define LIT(s) (const uint8_t *)(s), (sizeof(s) - 1)

/* ---- helpers ------------------------------------------------------------------------------ */

/* The lines passed to the show callback, each followed by "|" so that empty lines and
 * trailing blanks are visible. */
struct shown {
    char text[16384];
    size_t len;
    unsigned count;
    size_t longest;
};

static void show_cb(void *ctx, const uint8_t *line, size_t len)
{
    struct shown *s = ctx;
    assert_true(s->len + len + 1 < sizeof s->text);
    memcpy(s->text + s->len, line, len);
    s->len += len;
    s->text[s->len++] = '|';
    s->text[s->len] = 0;
    s->count++;
    if (len > s->longest) s->longest = len;
}

struct result {
    struct shown shown;
    struct message_summary sum;
    uint8_t body[16384]; /* what on_body was given, in order */
    size_t body_len;
};

static void body_cb(void *ctx, const uint8_t *bytes, size_t len)
{
    struct result *r = ctx;
    assert_true(r->body_len + len <= sizeof r->body);
    memcpy(r->body + r->body_len, bytes, len);
    r->body_len += len;
}

static void view_pieces(const uint8_t *b, size_t len, bool bdat, unsigned max_shown,
                        const size_t *cuts, size_t ncuts, struct result *r)
{
    memset(r, 0, sizeof *r);
    struct message_view m;
    message_view_begin(&m, bdat, max_shown);
    m.on_body = body_cb;
    m.body_ctx = r;
    size_t from = 0;
    for (size_t i = 0; i <= ncuts; i++) {
        size_t to = i < ncuts ? cuts[i] : len;
        message_view_feed(&m, b + from, to - from, show_cb, &r->shown);
        from = to;
    }
    message_view_end(&m, &r->sum, NULL, NULL);
}

static void view_whole(const uint8_t *b, size_t len, bool bdat, unsigned max_shown,
                       struct result *r)
{
    view_pieces(b, len, bdat, max_shown, NULL, 0, r);
}

static void sha256_hex(const uint8_t *b, size_t len, char out[65])
{
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256(b, len, md);
    for (int i = 0; i < SHA256_DIGEST_LENGTH; i++) sprintf(out + 2 * i, "%02x", md[i]);
}

static void assert_same_result(const struct result *got, const struct result *want, const char *how)
{
    if (strcmp(got->shown.text, want->shown.text) != 0)
        fail_msg("%s: shown \"%s\", want \"%s\"", how, got->shown.text, want->shown.text);
    if (got->sum.size != want->sum.size || got->sum.lines != want->sum.lines ||
        got->sum.hidden_lines != want->sum.hidden_lines ||
        strcmp(got->sum.sha256_hex, want->sum.sha256_hex) != 0)
        fail_msg("%s: size %llu lines %llu hidden %u sha %s, want %llu %llu %u %s", how,
                 (unsigned long long)got->sum.size, (unsigned long long)got->sum.lines,
                 got->sum.hidden_lines, got->sum.sha256_hex, (unsigned long long)want->sum.size,
                 (unsigned long long)want->sum.lines, want->sum.hidden_lines, want->sum.sha256_hex);
}

/* Feeds `wire` whole, and checks every chunking gives the same result; returns it. */
static void view_every_way(const uint8_t *wire, size_t len, bool bdat, unsigned max_shown,
                           struct result *whole)
{
    struct result *r = malloc(sizeof *r);
    assert_non_null(r);
    char how[64];
    view_whole(wire, len, bdat, max_shown, whole);
    for (size_t cut = 0; cut <= len; cut++) {
        view_pieces(wire, len, bdat, max_shown, &cut, 1, r);
        snprintf(how, sizeof how, "split at %zu of %zu", cut, len);
        assert_same_result(r, whole, how);
    }
    if (len <= 64) {
        for (size_t a = 1; a < len; a++)
            for (size_t b = a + 1; b < len; b++) {
                size_t cuts[2] = {a, b};
                view_pieces(wire, len, bdat, max_shown, cuts, 2, r);
                snprintf(how, sizeof how, "split at %zu and %zu of %zu", a, b, len);
                assert_same_result(r, whole, how);
            }
    }
    size_t *cuts = malloc((len + 1) * sizeof *cuts);
    assert_non_null(cuts);
    for (size_t i = 0; i < len; i++) cuts[i] = i + 1;
    view_pieces(wire, len, bdat, max_shown, cuts, len ? len - 1 : 0, r);
    assert_same_result(r, whole, "one byte at a time");
    free(cuts);
    free(r);
}

/* Checks the summary against the bytes that should have been delivered. */
static void assert_summary(const struct message_summary *sum, const uint8_t *delivered, size_t len,
                           uint64_t lines, unsigned hidden)
{
    char want[65];
    sha256_hex(delivered, len, want);
    assert_int_equal(sum->size, len);
    assert_int_equal(sum->lines, lines);
    assert_int_equal(sum->hidden_lines, hidden);
    assert_string_equal(sum->sha256_hex, want);
}

/* ---- DATA ------------------------------------------------------------------------------------ */

static void short_message_is_shown_whole_and_summarised(void **state)
{
    (void)state;
    static const char wire[] = "From: alice@example.org\r\n"
                               "Subject: lunch\r\n"
                               "\r\n"
                               "Noon?\r\n"
                               ".\r\n";
    static const char delivered[] = "From: alice@example.org\r\n"
                                    "Subject: lunch\r\n"
                                    "\r\n"
                                    "Noon?\r\n";
    struct result r;
    view_every_way(LIT(wire), false, 0, &r);
    assert_string_equal(r.shown.text, "From: alice@example.org|Subject: lunch||Noon?|");
    assert_int_equal(r.shown.count, 4);
    assert_summary(&r.sum, LIT(delivered), 4, 0);
    assert_int_equal(r.sum.size, 50);
}

static void only_max_shown_lines_are_shown_and_the_rest_counted_as_hidden(void **state)
{
    (void)state;
    static const char wire[] = "L1\r\nL2\r\nL3\r\nL4\r\nL5\r\n.\r\n";
    struct result r;
    view_every_way(LIT(wire), false, 3, &r);
    assert_string_equal(r.shown.text, "L1|L2|L3|");
    assert_int_equal(r.shown.count, 3);
    assert_summary(&r.sum, LIT("L1\r\nL2\r\nL3\r\nL4\r\nL5\r\n"), 5, 2);
}

static void max_shown_zero_shows_every_line(void **state)
{
    (void)state;
    static const char wire[] = "L1\r\nL2\r\nL3\r\nL4\r\nL5\r\n.\r\n";
    struct result r;
    view_every_way(LIT(wire), false, 0, &r);
    assert_string_equal(r.shown.text, "L1|L2|L3|L4|L5|");
    assert_summary(&r.sum, LIT("L1\r\nL2\r\nL3\r\nL4\r\nL5\r\n"), 5, 0);
}

static void max_shown_equal_to_the_line_count_hides_nothing(void **state)
{
    (void)state;
    struct result r;
    view_every_way(LIT("a\r\nb\r\n.\r\n"), false, 2, &r);
    assert_string_equal(r.shown.text, "a|b|");
    assert_summary(&r.sum, LIT("a\r\nb\r\n"), 2, 0);
}

static void stuffed_dots_are_removed_from_shown_lines_and_from_the_hash(void **state)
{
    (void)state;
    static const char wire[] = "..leading dot\r\n"
                               "...two dots\r\n"
                               "..\r\n"
                               "mid.dle..\r\n"
                               ".\r\n";
    static const char delivered[] = ".leading dot\r\n"
                                    "..two dots\r\n"
                                    ".\r\n"
                                    "mid.dle..\r\n";
    struct result r;
    view_every_way(LIT(wire), false, 0, &r);
    assert_string_equal(r.shown.text, ".leading dot|..two dots|.|mid.dle..|");
    assert_summary(&r.sum, LIT(delivered), 4, 0);
}

static void data_terminator_is_never_delivered(void **state)
{
    (void)state;
    struct result r;
    view_every_way(LIT("hello\r\n.\r\n"), false, 0, &r);
    assert_string_equal(r.shown.text, "hello|");
    assert_summary(&r.sum, LIT("hello\r\n"), 1, 0);
    assert_int_equal(r.sum.size, 7);
}

static void empty_message_has_no_line_and_the_empty_hash(void **state)
{
    (void)state;
    struct result r;
    view_every_way(LIT(".\r\n"), false, 0, &r);
    assert_string_equal(r.shown.text, "");
    assert_int_equal(r.shown.count, 0);
    assert_int_equal(r.sum.size, 0);
    assert_int_equal(r.sum.lines, 0);
    assert_int_equal(r.sum.hidden_lines, 0);
    assert_string_equal(r.sum.sha256_hex,
                        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

static void message_of_one_empty_line(void **state)
{
    (void)state;
    struct result r;
    view_every_way(LIT("\r\n.\r\n"), false, 0, &r);
    assert_string_equal(r.shown.text, "|");
    assert_summary(&r.sum, LIT("\r\n"), 1, 0);
}

static void bare_lf_ends_a_shown_line_and_is_hashed_as_is(void **state)
{
    (void)state;
    /* The view shows what a reader sees; the hash covers the bytes unchanged. */
    static const char wire[] = "a\nb\r\nc\rd\r\n.\r\n";
    struct result r;
    view_every_way(LIT(wire), false, 0, &r);
    assert_string_equal(r.shown.text, "a|b|c\rd|");
    assert_summary(&r.sum, LIT("a\nb\r\nc\rd\r\n"), 3, 0);
}

static void dot_after_a_bare_lf_is_content_not_stuffing(void **state)
{
    (void)state;
    /* RFC 5321 4.5.2 unstuffs CRLF-delimited lines only: a server keeps this dot, so the
     * summary must hash it. A dot after a bare CR is content too. */
    static const char wire[] = "a\n.b\r\n..c\r\nd\r.e\r\n\n.f\r\n.\r\n";
    static const char delivered[] = "a\n.b\r\n.c\r\nd\r.e\r\n\n.f\r\n";
    struct result r;
    view_every_way(LIT(wire), false, 0, &r);
    assert_string_equal(r.shown.text, "a|.b|.c|d\r.e||.f|");
    assert_summary(&r.sum, LIT(delivered), 6, 0);
}

static void crlf_split_across_chunks_still_starts_a_line(void **state)
{
    (void)state;
    /* CR at the end of one chunk, LF and the stuffed dot in the next ones. */
    struct result r = {0};
    struct message_view m;
    message_view_begin(&m, false, 0);
    message_view_feed(&m, LIT("first line\r"), show_cb, &r.shown);
    message_view_feed(&m, LIT("\n"), show_cb, &r.shown);
    message_view_feed(&m, LIT(".."), show_cb, &r.shown);
    message_view_feed(&m, LIT("dot\r"), show_cb, &r.shown);
    message_view_feed(&m, LIT("\n.\r"), show_cb, &r.shown);
    message_view_feed(&m, LIT("\n"), show_cb, &r.shown);
    message_view_end(&m, &r.sum, NULL, NULL);
    assert_string_equal(r.shown.text, "first line|.dot|");
    assert_summary(&r.sum, LIT("first line\r\n.dot\r\n"), 2, 0);
}

static void binary_bytes_are_counted_and_hashed(void **state)
{
    (void)state;
    static const char wire[] = "nul\0byte \xff\xfe\r\n.\r\n";
    struct result r;
    view_every_way(LIT(wire), false, 0, &r);
    assert_int_equal(r.shown.count, 1);
    assert_int_equal(r.shown.longest, 11);
    assert_memory_equal(r.shown.text, "nul\0byte \xff\xfe|", 12);
    assert_summary(&r.sum, LIT("nul\0byte \xff\xfe\r\n"), 1, 0);
}

static void long_line_is_shown_cut_at_998_octets_but_counted_whole(void **state)
{
    (void)state;
    size_t n = 3000;
    uint8_t *wire = malloc(n + 2 + 6 + 3);
    assert_non_null(wire);
    memset(wire, 'x', n);
    memcpy(wire + n, "\r\nend\r\n.\r\n", 10);
    struct result r;
    view_whole(wire, n + 10, false, 0, &r);
    assert_int_equal(r.shown.count, 2);
    assert_int_equal(r.shown.longest, MESSAGE_SHOW_LINE_MAX);
    assert_memory_equal(r.shown.text + MESSAGE_SHOW_LINE_MAX, "|end|", 6);
    assert_summary(&r.sum, wire, n + 7, 2, 0);
    free(wire);
}

static void line_of_999_octets_is_shown_cut_too(void **state)
{
    (void)state;
    uint8_t wire[999 + 2 + 3];
    memset(wire, 'y', 999);
    memcpy(wire + 999, "\r\n.\r\n", 5);
    struct result r;
    view_whole(wire, sizeof wire, false, 0, &r);
    assert_int_equal(r.shown.count, 1);
    assert_int_equal(r.shown.longest, MESSAGE_SHOW_LINE_MAX);
    assert_summary(&r.sum, wire, 1001, 1, 0);
}

static void line_of_998_octets_is_shown_whole(void **state)
{
    (void)state;
    uint8_t wire[998 + 2 + 3];
    memset(wire, 'z', 998);
    memcpy(wire + 998, "\r\n.\r\n", 5);
    struct result r;
    view_every_way(wire, sizeof wire, false, 0, &r);
    assert_int_equal(r.shown.longest, 998);
    assert_summary(&r.sum, wire, 1000, 1, 0);
}

static void realistic_message_gives_the_same_result_for_every_chunking(void **state)
{
    (void)state;
    static const char wire[] = "Received: from client.example ([192.0.2.1])\r\n"
                               "From: Alice <alice@example.org>\r\n"
                               "To: bob@example.net\r\n"
                               "Subject: =?UTF-8?B?w6lsw6l2ZQ==?=\r\n"
                               "\r\n"
                               "Line one.\r\n"
                               "..starts with a dot\r\n"
                               ".\r\n"; /* the stuffed line above, then the terminator */
    static const char delivered[] = "Received: from client.example ([192.0.2.1])\r\n"
                                    "From: Alice <alice@example.org>\r\n"
                                    "To: bob@example.net\r\n"
                                    "Subject: =?UTF-8?B?w6lsw6l2ZQ==?=\r\n"
                                    "\r\n"
                                    "Line one.\r\n"
                                    ".starts with a dot\r\n";
    struct result r;
    view_every_way(LIT(wire), false, 4, &r);
    assert_string_equal(r.shown.text, "Received: from client.example ([192.0.2.1])|"
                                      "From: Alice <alice@example.org>|"
                                      "To: bob@example.net|"
                                      "Subject: =?UTF-8?B?w6lsw6l2ZQ==?=|");
    assert_summary(&r.sum, LIT(delivered), 7, 3);
}

/* xorshift64*: a fixed seed, so a failure always reproduces. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint64_t rng_next(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1DULL;
}

/* True when the first CRLF.CRLF of the content (content start counts as after CRLF) is
 * its last five octets, as the framer guarantees for DATA. */
static bool ends_only_at_the_end(const uint8_t *w, size_t len)
{
    for (size_t i = 0; i + 3 <= len; i++) {
        bool line_start = i == 0 || (i >= 2 && w[i - 2] == '\r' && w[i - 1] == '\n');
        if (line_start && memcmp(w + i, ".\r\n", 3) == 0) return i + 3 == len;
    }
    return false;
}

/* RFC 5321 4.5.2 by the book: drop the terminator, then the first dot of every line that
 * starts the content or follows a CRLF. Returns the delivered length. */
static size_t reference_unstuff(const uint8_t *w, size_t len, uint8_t *out)
{
    size_t n = 0;
    for (size_t i = 0; i + 3 < len; i++) {
        bool line_start = i == 0 || (i >= 2 && w[i - 2] == '\r' && w[i - 1] == '\n');
        if (line_start && w[i] == '.') continue;
        out[n++] = w[i];
    }
    return n;
}

static void random_messages_match_a_reference_unstuffer_for_random_chunkings(void **state)
{
    (void)state;
    static const uint8_t alphabet[] = {'\r', '\n', '.', 'a'};
    uint8_t wire[64], delivered[64];
    struct result *r = malloc(sizeof *r);
    assert_non_null(r);
    for (int iter = 0, tried = 0; iter < 3000; tried++) {
        assert_true(tried < 1000000);
        size_t body = (size_t)(rng_next() % 40);
        for (size_t i = 0; i < body; i++) wire[i] = alphabet[rng_next() % 4];
        memcpy(wire + body, "\r\n.\r\n", 5);
        size_t len = body + 5;
        if (!ends_only_at_the_end(wire, len)) continue;
        iter++;
        size_t dlen = reference_unstuff(wire, len, delivered);
        uint64_t lf = 0;
        for (size_t i = 0; i < dlen; i++) lf += delivered[i] == '\n';
        size_t cuts[4], ncuts = (size_t)(rng_next() % 5);
        for (size_t i = 0; i < ncuts; i++) cuts[i] = (size_t)(rng_next() % (len + 1));
        for (size_t i = 1; i < ncuts; i++) /* insertion sort: cuts must increase */
            for (size_t j = i; j > 0 && cuts[j - 1] > cuts[j]; j--) {
                size_t t = cuts[j];
                cuts[j] = cuts[j - 1];
                cuts[j - 1] = t;
            }
        view_pieces(wire, len, false, 0, cuts, ncuts, r);
        char want[65];
        sha256_hex(delivered, dlen, want);
        if (r->sum.size != dlen || r->sum.lines != lf || strcmp(r->sum.sha256_hex, want) != 0)
            fail_msg("iteration %d (%zu bytes, %zu cuts): size %llu lines %llu, want %zu %llu",
                     iter, len, ncuts, (unsigned long long)r->sum.size,
                     (unsigned long long)r->sum.lines, dlen, (unsigned long long)lf);
        assert_int_equal(r->shown.count, lf);
        /* every byte delivered passed on once, in order; each line shown without its end */
        assert_int_equal(r->body_len, dlen);
        assert_memory_equal(r->body, delivered, dlen);
        char lines[200];
        size_t nl = 0;
        for (size_t i = 0, start = 0; i < dlen; i++) {
            if (delivered[i] != '\n') continue;
            size_t end = i > start && delivered[i - 1] == '\r' ? i - 1 : i;
            memcpy(lines + nl, delivered + start, end - start);
            nl += end - start;
            lines[nl++] = '|';
            start = i + 1;
        }
        lines[nl] = 0;
        assert_string_equal(r->shown.text, lines);
    }
    free(r);
}

/* ---- BDAT -------------------------------------------------------------------------------------
 */

static void bdat_content_is_delivered_without_unstuffing(void **state)
{
    (void)state;
    /* No dot-stuffing and no terminator in BDAT: every octet is message. */
    static const char chunk[] = "..x\r\n.\r\n";
    struct result r;
    view_every_way(LIT(chunk), true, 0, &r);
    assert_string_equal(r.shown.text, "..x|.|");
    assert_summary(&r.sum, LIT(chunk), 2, 0);
    assert_int_equal(r.sum.size, 8);
}

static void bdat_chunks_make_one_message(void **state)
{
    (void)state;
    struct result r = {0};
    struct message_view m;
    message_view_begin(&m, true, 0);
    message_view_feed(&m, LIT("Subject: chunked\r\n\r\nfirst "), show_cb, &r.shown);
    message_view_feed(&m, LIT("half, second half\r\n"), show_cb, &r.shown);
    message_view_feed(&m, LIT("last line\r\n"), show_cb, &r.shown);
    message_view_end(&m, &r.sum, NULL, NULL);
    assert_string_equal(r.shown.text, "Subject: chunked||first half, second half|last line|");
    assert_summary(&r.sum, LIT("Subject: chunked\r\n\r\nfirst half, second half\r\nlast line\r\n"),
                   4, 0);
}

static void bdat_last_line_without_line_end_is_counted(void **state)
{
    (void)state;
    struct result r;
    view_every_way(LIT("a\r\nno newline"), true, 0, &r);
    assert_int_equal(r.sum.lines, 2);
    assert_int_equal(r.sum.size, 13);
    char want[65];
    sha256_hex(LIT("a\r\nno newline"), want);
    assert_string_equal(r.sum.sha256_hex, want);
}

/* Issue 16, defect 3: a last line without LF (BDAT) is shown cut at MESSAGE_SHOW_LINE_MAX like
 * every other line, not at the 1000 octets collected. */
static void bdat_last_line_without_line_end_is_shown_cut_at_998_octets(void **state)
{
    (void)state;
    static const size_t lens[] = {997, 998, 999, 1000, 1001, 3000};
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        size_t n = lens[i];
        uint8_t *wire = malloc(n + 3);
        assert_non_null(wire);
        memcpy(wire, "a\r\n", 3);
        memset(wire + 3, 'z', n);
        struct shown s = {0};
        struct message_summary sum;
        struct message_view m;
        message_view_begin(&m, true, 0);
        message_view_feed(&m, wire, n + 3, show_cb, &s);
        message_view_end(&m, &sum, show_cb, &s);
        assert_int_equal(s.count, 2);
        assert_int_equal(s.longest, n < MESSAGE_SHOW_LINE_MAX ? n : MESSAGE_SHOW_LINE_MAX);
        assert_summary(&sum, wire, n + 3, 2, 0);
        free(wire);
    }
}

static void empty_bdat_message(void **state)
{
    (void)state;
    /* BDAT 0 LAST: begin and end with nothing fed. */
    struct result r;
    view_whole(LIT(""), true, 0, &r);
    assert_int_equal(r.shown.count, 0);
    assert_summary(&r.sum, LIT(""), 0, 0);
}

/* ---- lifetime ---------------------------------------------------------------------------------
 */

static void aborted_message_frees_its_state(void **state)
{
    (void)state;
    /* Under ASan/LSan a leak here fails the run. */
    struct shown s = {0};
    struct message_view m;
    message_view_begin(&m, false, 0);
    message_view_feed(&m, LIT("Subject: cut short\r\npartial li"), show_cb, &s);
    message_view_abort(&m);
    assert_null(m.sha);
    assert_string_equal(s.text, "Subject: cut short|");
}

static void a_view_can_be_begun_again_for_the_next_message(void **state)
{
    (void)state;
    struct result r1 = {0}, r2 = {0};
    struct message_view m;
    message_view_begin(&m, false, 1);
    message_view_feed(&m, LIT("one\r\ntwo\r\n.\r\n"), show_cb, &r1.shown);
    message_view_end(&m, &r1.sum, NULL, NULL);
    message_view_begin(&m, false, 1);
    message_view_feed(&m, LIT("three\r\n.\r\n"), show_cb, &r2.shown);
    message_view_end(&m, &r2.sum, NULL, NULL);
    assert_string_equal(r1.shown.text, "one|");
    assert_summary(&r1.sum, LIT("one\r\ntwo\r\n"), 2, 1);
    assert_string_equal(r2.shown.text, "three|");
    assert_summary(&r2.sum, LIT("three\r\n"), 1, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(short_message_is_shown_whole_and_summarised),
        cmocka_unit_test(only_max_shown_lines_are_shown_and_the_rest_counted_as_hidden),
        cmocka_unit_test(max_shown_zero_shows_every_line),
        cmocka_unit_test(max_shown_equal_to_the_line_count_hides_nothing),
        cmocka_unit_test(stuffed_dots_are_removed_from_shown_lines_and_from_the_hash),
        cmocka_unit_test(data_terminator_is_never_delivered),
        cmocka_unit_test(empty_message_has_no_line_and_the_empty_hash),
        cmocka_unit_test(message_of_one_empty_line),
        cmocka_unit_test(bare_lf_ends_a_shown_line_and_is_hashed_as_is),
        cmocka_unit_test(dot_after_a_bare_lf_is_content_not_stuffing),
        cmocka_unit_test(crlf_split_across_chunks_still_starts_a_line),
        cmocka_unit_test(binary_bytes_are_counted_and_hashed),
        cmocka_unit_test(long_line_is_shown_cut_at_998_octets_but_counted_whole),
        cmocka_unit_test(line_of_999_octets_is_shown_cut_too),
        cmocka_unit_test(line_of_998_octets_is_shown_whole),
        cmocka_unit_test(realistic_message_gives_the_same_result_for_every_chunking),
        cmocka_unit_test(random_messages_match_a_reference_unstuffer_for_random_chunkings),
        cmocka_unit_test(bdat_content_is_delivered_without_unstuffing),
        cmocka_unit_test(bdat_chunks_make_one_message),
        cmocka_unit_test(bdat_last_line_without_line_end_is_counted),
        cmocka_unit_test(bdat_last_line_without_line_end_is_shown_cut_at_998_octets),
        cmocka_unit_test(empty_bdat_message),
        cmocka_unit_test(aborted_message_frees_its_state),
        cmocka_unit_test(a_view_can_be_begun_again_for_the_next_message),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
