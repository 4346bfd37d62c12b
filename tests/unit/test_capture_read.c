/* test_capture_read.c - unit tests for the capture reader (capture_read.h) and the dialog
 * comparison (capture_diff.h): a pipelined session with a fault's reply written out of
 * order, read whole and byte by byte; broken and truncated captures named by line; two
 * dialogs that differ in a reply code and in capabilities, and one compared with itself. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtptap/capture_diff.h"
#include "smtptap/capture_read.h"

#define EV(kind, extra) "{\"session\":1,\"t\":0.1,\"kind\":\"" kind "\",\"tls\":false" extra "}\n"

/* swaks --pipeline with a fault on the second RCPT: smtptap wrote its 450 before the
 * server's replies to MAIL and the first RCPT had all come. */
static const char pipelined[] = EV("start", "") EV(
    "reply", ",\"line\":\"220 mx ESMTP\\r\\n\",\"reply\":{\"code\":220}")
    EV("command", ",\"line\":\"EHLO vm\\r\\n\"") EV(
        "reply", ",\"line\":\"250-mx\\r\\n250-PIPELINING\\r\\n250 8BITMIME\\r\\n\",\"reply\":{"
                 "\"code\":250,\"latency_ms\":0.4}")
        EV("command", ",\"line\":\"MAIL FROM:<a@example.org> SIZE=100\\r\\n\"") EV(
            "command", ",\"line\":\"RCPT TO:<bob@example.net>\\r\\n\"")
            EV("command", ",\"line\":\"RCPT TO:<x@busy.example>\\r\\n\"") EV(
                "fault", ",\"fault\":{\"rule\":\"flag 1\",\"action\":\"reply\"}")
                EV("command", ",\"line\":\"DATA\\r\\n\"") EV(
                    "reply", ",\"line\":\"250 2.1.0 Ok\\r\\n\",\"reply\":{\"code\":250}")
                    EV("reply",
                       ",\"local\":true,\"line\":\"450 4.2.0 busy\\r\\n\",\"reply\":{\"code\":450}")
                        EV("reply", ",\"line\":\"250 2.1.5 Ok\\r\\n\",\"reply\":{\"code\":250}")
                            EV("reply", ",\"line\":\"354 go\\r\\n\",\"reply\":{\"code\":354}") EV(
                                "content", ",\"line\":\"Subject: hi\"") EV("content",
                                                                           ",\"line_b64\":\"/w==\"")
                                EV("message", ",\"message\":{\"number\":1,\"size\":17,\"lines\":2}")
                                    EV("reply", ",\"line\":\"250 2.0.0 "
                                                "queued\\r\\n\",\"reply\":{\"code\":250}")
                                        EV("command", ",\"line\":\"QUIT\\r\\n\"") EV(
                                            "reply",
                                            ",\"line\":\"221 Bye\\r\\n\",\"reply\":{\"code\":221}")
                                            EV("end", "");

static struct capture_reader *read_in_pieces(const char *text, size_t piece)
{
    struct capture_reader *r = capture_reader_new();
    size_t n = strlen(text);
    for (size_t i = 0; i < n; i += piece)
        assert_int_equal(capture_reader_feed(r, text + i, n - i < piece ? n - i : piece), 0);
    assert_int_equal(capture_reader_finish(r), 0);
    return r;
}

static void pipelined_replies_pair_with_their_commands(void **state)
{
    (void)state;
    struct capture_reader *r = read_in_pieces(pipelined, sizeof pipelined);
    const struct capture_dialog *d = capture_reader_dialog(r);
    assert_int_equal(d->n, 8);
    static const int codes[] = {220, 250, 250, 250, 450, 354, 250, 221};
    assert_int_equal(d->steps[0].kind, STEP_GREETING);
    assert_string_equal(d->steps[3].command, "RCPT TO:<bob@example.net>");
    assert_string_equal(d->steps[4].command, "RCPT TO:<x@busy.example>");
    assert_true(d->steps[4].local);
    assert_int_equal(d->steps[6].kind, STEP_DATA_END);
    assert_int_equal(d->steps[6].msg_size, 17);
    assert_int_equal(d->steps[6].content_lines, 2);
    assert_memory_equal(d->steps[6].body, "Subject: hi\r\n\xff\r\n", 16);
    for (size_t i = 0; i < d->n; i++) assert_int_equal(d->steps[i].code, codes[i]);
    assert_int_equal(d->steps[2].group, d->steps[5].group); /* MAIL .. DATA: one group */
    assert_int_not_equal(d->steps[1].group, d->steps[2].group);
    assert_true(d->steps[1].latency_ms > 0.39 && d->steps[1].latency_ms < 0.41);
    capture_reader_free(r);
}

static void pieces_of_any_size_read_the_same(void **state)
{
    (void)state;
    struct capture_reader *whole = read_in_pieces(pipelined, sizeof pipelined);
    for (size_t piece = 1; piece < 40; piece += 7) {
        struct capture_reader *r = read_in_pieces(pipelined, piece);
        const struct capture_dialog *a = capture_reader_dialog(whole),
                                    *b = capture_reader_dialog(r);
        assert_int_equal(a->n, b->n);
        for (size_t i = 0; i < a->n; i++) {
            assert_int_equal(a->steps[i].code, b->steps[i].code);
            assert_int_equal(a->steps[i].line, b->steps[i].line);
        }
        capture_reader_free(r);
    }
    capture_reader_free(whole);
}

/* The error of a capture, which must be broken. */
static void assert_broken(const char *text, unsigned line, const char *words)
{
    struct capture_reader *r = capture_reader_new();
    int rc = capture_reader_feed(r, text, strlen(text));
    if (rc == 0) rc = capture_reader_finish(r);
    assert_int_equal(rc, -1);
    const char *e = capture_reader_error(r);
    assert_non_null(e);
    if (!strstr(e, words)) fail_msg("error \"%s\" does not say \"%s\"", e, words);
    assert_int_equal(capture_reader_error_line(r), line);
    char prefix[32];
    snprintf(prefix, sizeof prefix, "line %u: ", line);
    assert_memory_equal(e, prefix, strlen(prefix));
    capture_reader_free(r);
}

static void broken_captures_name_the_line(void **state)
{
    (void)state;
    assert_broken(EV("start", "") "{\"session\":1,\"kind\":\"reply\",\"li", 2, "truncated?");
    assert_broken(EV("start", "") "not json\n" EV("end", ""), 2, "not valid JSON");
    assert_broken(EV("start", "") "[1,2]\n", 2, "not a JSON object");
    assert_broken(EV("start", "") "{\"session\":1}\n", 2, "no \"kind\"");
    assert_broken(EV("start", "") EV("command", ""), 2, "without \"line\"");
    assert_broken(EV("start", "") EV("command", ",\"line_b64\":\"@@@\""), 2, "base64");
    assert_broken(EV("start", "") "{\"session\":2,\"kind\":\"end\"}\n", 2, "one session per file");
    assert_broken(EV("start", "") EV("command", ",\"line\":\"QUIT\""), 3, "without the session's");
    assert_broken("", 1, "empty capture");
    assert_broken(EV("end", "") EV("end", ""), 2, "after the session's");
}

static struct capture_reader *read_text(const char *text)
{
    return read_in_pieces(text, strlen(text));
}

static void diff_of_a_dialog_with_itself_is_empty(void **state)
{
    (void)state;
    struct capture_reader *r = read_text(pipelined);
    struct buf out;
    buf_init(&out);
    struct capture_diff_options o = {"A", "B", 1000};
    assert_int_equal(capture_diff(capture_reader_dialog(r), capture_reader_dialog(r), &o, &out), 0);
    buf_append(&out, "", 1);
    assert_non_null(strstr((const char *)buf_head(&out), "A and B: the same dialog (8 steps)\n"));
    assert_null(strstr((const char *)buf_head(&out), "\n!"));
    buf_free(&out);
    capture_reader_free(r);
}

/* text with the first occurrence of from replaced by to. */
static char *replace(const char *text, const char *from, const char *to)
{
    const char *p = strstr(text, from);
    assert_non_null(p);
    char *out = malloc(strlen(text) + strlen(to) + 1);
    sprintf(out, "%.*s%s%s", (int)(p - text), text, to, p + strlen(from));
    return out;
}

static void diff_shows_the_first_divergence(void **state)
{
    (void)state;
    char *t1 = replace(pipelined, "450 4.2.0 busy\\r\\n\",\"reply\":{\"code\":450",
                       "451 4.3.0 later\\r\\n\",\"reply\":{\"code\":451");
    char *t2 = replace(t1, "250 8BITMIME", "250 CHUNKING");
    char *t3 = replace(t2, "<bob@example.net>", "<BOB@Example.NET>"); /* the same address */
    char *t4 = replace(t3, "SIZE=100", "SIZE=200");                   /* ignored */
    struct capture_reader *a = read_text(pipelined), *b = read_text(t4);
    struct buf out;
    buf_init(&out);
    struct capture_diff_options o = {"A", "B", 1000};
    assert_int_equal(capture_diff(capture_reader_dialog(a), capture_reader_dialog(b), &o, &out), 2);
    buf_append(&out, "", 1);
    const char *s = (const char *)buf_head(&out);
    if (!strstr(s, "capabilities: -8BITMIME +CHUNKING") ||
        !strstr(s, "450 4.2.0 [smtptap]      451 4.3.0 [smtptap]      code") ||
        !strstr(s, "A and B differ in 2 rows; first at step 2 (A line 3, B line 3): EHLO vm:"))
        fail_msg("unexpected table:\n%s", s);
    buf_free(&out);
    capture_reader_free(a);
    capture_reader_free(b);
    free(t1), free(t2), free(t3), free(t4);
}

static void commands_normalise(void **state)
{
    (void)state;
    char out[128];
    capture_normalize_command("mail  from:<A@Example.ORG> SIZE=1234 BODY=8BITMIME", out,
                              sizeof out);
    assert_string_equal(out, "MAIL FROM:<a@example.org> SIZE=* BODY=8BITMIME");
    capture_normalize_command("auth plain AGFsaWNlAHNlY3JldA==", out, sizeof out);
    assert_string_equal(out, "AUTH PLAIN ...");
    capture_normalize_command("ehlo Laptop", out, sizeof out);
    assert_string_equal(out, "EHLO Laptop");
    capture_enhanced_code((const uint8_t *)"450 4.2.0 busy\r\n", 16, out, sizeof out);
    assert_string_equal(out, "4.2.0");
    capture_enhanced_code((const uint8_t *)"250 2000 bytes\r\n", 16, out, sizeof out);
    assert_string_equal(out, "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(pipelined_replies_pair_with_their_commands),
        cmocka_unit_test(pieces_of_any_size_read_the_same),
        cmocka_unit_test(broken_captures_name_the_line),
        cmocka_unit_test(diff_of_a_dialog_with_itself_is_empty),
        cmocka_unit_test(diff_shows_the_first_divergence),
        cmocka_unit_test(commands_normalise),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
