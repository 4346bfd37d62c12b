/* test_replay_smtp.c - unit tests for the recorded server's protocol (replay_smtp.h): a
 * recording read by the capture reader, replayed to another client's bytes fed in one piece
 * and byte by byte: the recorded replies in order for other addresses, the DATA-END reply
 * after the new body, BDAT's after its octets, AUTH LOGIN's SASL lines, the 451 and the note
 * for a command the recording lacks, --replay-strict, an early QUIT, the pace. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "smtptap/buf.h"
#include "smtptap/replay_smtp.h"

#define EV(kind, extra) "{\"session\":1,\"t\":%s,\"kind\":\"" kind "\",\"tls\":false" extra "}\n"
#define CMD(t, text)    EV("command", ",\"line\":\"" text "\\r\\n\"")
#define REPLY(code, text)                                                                          \
    EV("reply", ",\"line\":\"" #code " " text "\\r\\n\",\"reply\":{\"code\":" #code "}")

/* A recording: every event at time 0 but the MAIL reply, 1.5 s after its command. */
static const char *const recording[] = {
    EV("start", ""),
    REPLY(220, "mx.example ESMTP"),
    CMD(0, "EHLO laptop"),
    EV("reply", ",\"line\":\"250-mx.example\\r\\n250 CHUNKING\\r\\n\",\"reply\":{\"code\":250}"),
    CMD(0, "AUTH LOGIN"),
    REPLY(334, "VXNlcm5hbWU6"),
    CMD(0, "YWxpY2U="),
    REPLY(334, "UGFzc3dvcmQ6"),
    CMD(0, "c2VjcmV0"),
    REPLY(235, "2.7.0 ok"),
    CMD(0, "MAIL FROM:<a@example.org> SIZE=100"),
    REPLY(250, "2.1.0 ok"), /* at 1.5 */
    CMD(0, "RCPT TO:<b@example.net>"),
    REPLY(250, "2.1.5 ok"),
    CMD(0, "DATA"),
    REPLY(354, "go"),
    EV("message", ",\"message\":{\"number\":1,\"size\":5,\"lines\":1}"),
    REPLY(250, "2.0.0 queued as Q1"),
    CMD(0, "MAIL FROM:<a@example.org>"),
    REPLY(250, "2.1.0 ok"),
    CMD(0, "RCPT TO:<c@example.net>"),
    REPLY(250, "2.1.5 ok"),
    CMD(0, "BDAT 4 LAST"),
    REPLY(250, "2.0.0 queued as Q2"),
    CMD(0, "QUIT"),
    REPLY(221, "2.0.0 bye"),
    EV("end", ""),
};

struct sent {
    struct buf replies, notes;
    double delays[64];
    size_t n;
};

static void on_reply(void *ctx, const uint8_t *b, size_t n, double delay_ms)
{
    struct sent *s = ctx;
    buf_append(&s->replies, b, n);
    if (s->n < 64) s->delays[s->n++] = delay_ms;
}

static void on_note(void *ctx, const char *text)
{
    struct sent *s = ctx;
    buf_printf(&s->notes, "%s\n", text);
}

static struct capture_reader *read_recording(void)
{
    struct capture_reader *r = capture_reader_new();
    for (size_t i = 0; i < sizeof recording / sizeof *recording; i++) {
        char line[600];
        snprintf(line, sizeof line, recording[i], i == 11 ? "1.5" : "0");
        assert_int_equal(capture_reader_feed(r, line, strlen(line)), 0);
    }
    assert_int_equal(capture_reader_finish(r), 0);
    return r;
}

/* Replays the recording to client (fed whole, or byte by byte); what was sent, as text. */
static void replay(const char *client, bool strict, double speed, size_t piece, struct sent *s)
{
    struct capture_reader *r = read_recording();
    memset(s, 0, sizeof *s);
    buf_init(&s->replies);
    buf_init(&s->notes);
    struct replay_smtp_out out = {on_reply, on_note, s};
    struct replay_smtp p;
    replay_smtp_init(&p, capture_reader_dialog(r), strict, speed, &out);
    size_t n = strlen(client);
    for (size_t i = 0; i < n; i += piece)
        replay_smtp_input(&p, (const uint8_t *)client + i, n - i < piece ? n - i : piece);
    replay_smtp_free(&p);
    capture_reader_free(r);
    buf_append(&s->replies, "", 1);
    buf_append(&s->notes, "", 1);
}

static void sent_free(struct sent *s)
{
    buf_free(&s->replies);
    buf_free(&s->notes);
}

#define ASSERT_SENT(s, want)                                                                       \
    do {                                                                                           \
        if (strcmp((const char *)buf_head(&(s)->replies), want) != 0)                              \
            fail_msg("sent:\n%s\nwanted:\n%s", (const char *)buf_head(&(s)->replies), want);       \
    } while (0)

static const char other_client[] =
    "ehlo other.test\r\nAUTH LOGIN\r\nYm9i\r\ncHc=\r\n"
    "MAIL FROM:<z@other.example> SIZE=999\r\nRCPT TO:<y@other.example>\r\nDATA\r\n"
    "Subject: another body\r\n\r\nlonger than the recorded one\r\n.\r\n"
    "MAIL FROM:<z@other.example>\r\nRCPT TO:<x@other.example>\r\nBDAT 11 LAST\r\nQUIT BODY\r\n"
    "QUIT\r\n";

static const char recorded_replies[] =
    "220 mx.example ESMTP\r\n250-mx.example\r\n250 CHUNKING\r\n334 VXNlcm5hbWU6\r\n"
    "334 UGFzc3dvcmQ6\r\n235 2.7.0 ok\r\n250 2.1.0 ok\r\n250 2.1.5 ok\r\n354 go\r\n"
    "250 2.0.0 queued as Q1\r\n250 2.1.0 ok\r\n250 2.1.5 ok\r\n250 2.0.0 queued as Q2\r\n"
    "221 2.0.0 bye\r\n";

static void another_client_gets_the_recorded_replies(void **state)
{
    (void)state;
    for (size_t piece = 1; piece <= sizeof other_client; piece += sizeof other_client - 1) {
        struct sent s;
        replay(other_client, false, 0, piece, &s); /* "QUIT BODY" is BDAT octets */
        ASSERT_SENT(&s, recorded_replies);
        assert_string_equal((const char *)buf_head(&s.notes), "");
        sent_free(&s);
    }
}

static void a_command_the_recording_lacks_gets_451_and_a_note(void **state)
{
    (void)state;
    struct sent s;
    replay("EHLO x\r\nNOOP\r\nAUTH LOGIN\r\n", false, 0, 1, &s);
    ASSERT_SENT(&s, "220 mx.example ESMTP\r\n250-mx.example\r\n250 CHUNKING\r\n"
                    "451 4.3.0 smtptap replay: no recorded reply for \"NOOP\"\r\n"
                    "334 VXNlcm5hbWU6\r\n"); /* the recording's place did not move */
    assert_string_equal((const char *)buf_head(&s.notes),
                        "replay: \"NOOP\" left the recording where the recording has "
                        "\"AUTH LOGIN\" (line 5); answered 451\n");
    sent_free(&s);
    /* a command the recording has later is no match either: AUTH comes first */
    replay("EHLO x\r\nMAIL FROM:<q@r.example>\r\n", false, 0, 1000, &s);
    assert_non_null(
        strstr((const char *)buf_head(&s.replies),
               "451 4.3.0 smtptap replay: no recorded reply for \"MAIL FROM:<q@r.example>\""));
    sent_free(&s);
}

static void strict_wants_the_recorded_text(void **state)
{
    (void)state;
    struct sent s;
    replay("ehlo laptop\r\nEHLO other\r\n", true, 0, 1000, &s);
    ASSERT_SENT(&s, "220 mx.example ESMTP\r\n250-mx.example\r\n250 CHUNKING\r\n"
                    "451 4.3.0 smtptap replay: no recorded reply for \"EHLO other\"\r\n");
    assert_string_equal((const char *)buf_head(&s.notes),
                        "replay: \"EHLO other\" left the recording where the recording has "
                        "\"AUTH LOGIN\" (line 5); answered 451\n");
    sent_free(&s);
}

static void an_early_quit_gets_the_recorded_quit_reply(void **state)
{
    (void)state;
    struct sent s;
    replay("EHLO x\r\nQUIT\r\nNOOP\r\n", false, 0, 1000, &s);
    ASSERT_SENT(&s, "220 mx.example ESMTP\r\n250-mx.example\r\n250 CHUNKING\r\n221 2.0.0 bye\r\n");
    sent_free(&s);
}

static void the_pace_is_the_recorded_one_divided_by_the_speed(void **state)
{
    (void)state;
    static const char client[] = "EHLO x\r\nAUTH LOGIN\r\nYQ==\r\nYg==\r\nMAIL FROM:<a@b>\r\n";
    struct sent s;
    replay(client, false, 2, 1000, &s);
    assert_int_equal(s.n, 6);
    assert_true(s.delays[5] > 749 && s.delays[5] < 751); /* 1.5 s recorded, twice as fast */
    assert_true(s.delays[0] == 0 && s.delays[4] == 0);
    sent_free(&s);
    replay(client, false, 0, 1000, &s);
    assert_true(s.delays[5] == 0);
    sent_free(&s);
}

/* A capture edited by hand: a reply without its CRLF is sent with one (found by fuzz_replay). */
static void a_recorded_reply_without_crlf_is_ended(void **state)
{
    (void)state;
    static const char text[] =
        "{\"session\":1,\"kind\":\"reply\",\"line\":\"220 hi\"}\n"
        "{\"session\":1,\"kind\":\"command\",\"line\":\"QUIT\"}\n"
        "{\"session\":1,\"kind\":\"reply\",\"line\":\"\"}\n{\"session\":1,\"kind\":\"end\"}\n";
    struct capture_reader *r = capture_reader_new();
    assert_int_equal(capture_reader_feed(r, text, sizeof text - 1), 0);
    assert_int_equal(capture_reader_finish(r), 0);
    struct sent s = {0};
    buf_init(&s.replies);
    buf_init(&s.notes);
    struct replay_smtp_out out = {on_reply, on_note, &s};
    struct replay_smtp p;
    replay_smtp_init(&p, capture_reader_dialog(r), false, 0, &out);
    replay_smtp_input(&p, (const uint8_t *)"QUIT\r\n", 6);
    replay_smtp_free(&p);
    buf_append(&s.replies, "", 1);
    assert_string_equal((const char *)buf_head(&s.replies), "220 hi\r\n\r\n");
    sent_free(&s);
    capture_reader_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(another_client_gets_the_recorded_replies),
        cmocka_unit_test(a_command_the_recording_lacks_gets_451_and_a_note),
        cmocka_unit_test(strict_wants_the_recorded_text),
        cmocka_unit_test(an_early_quit_gets_the_recorded_quit_reply),
        cmocka_unit_test(the_pace_is_the_recorded_one_divided_by_the_speed),
        cmocka_unit_test(a_recorded_reply_without_crlf_is_ended),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
