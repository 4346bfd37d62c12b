/* test_text.c - unit tests for the text transcript format (text.h, events.h): what a user reads
 * on stderr and in a capture file for each event. Every test renders events through the stream
 * writer into a memory FILE and compares whole lines: "#<session> +<s.mmm> <marker> <text>",
 * one line per reply line, non-printable bytes escaped, the [smtptap] / [to smtptap] tags, and
 * colour escapes only when colour is on. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtptap/text.h"

/* A string literal as (bytes, length), embedded NULs included. */
#define LIT(s) (const uint8_t *)(s), (sizeof(s) - 1)

/* The terminal colours the transcript uses (text.c). */
#define RESET   "\033[0m"
#define DIM     "\033[2m"
#define RED     "\033[31m"
#define GREEN   "\033[32m"
#define YELLOW  "\033[33m"
#define BLUE    "\033[34m"
#define MAGENTA "\033[35m"
#define CYAN    "\033[36m"
#define BOLD    "\033[1m"

#define MS (1000000ULL) /* nanoseconds */

/* ---- helpers -------------------------------------------------------------------------- */

/* An event carrying bytes as on the wire (commands, replies, message lines, raw bytes). */
static struct event wire(enum event_kind kind, enum event_dir dir, const uint8_t *bytes, size_t len)
{
    return (struct event){.session = 1, .kind = kind, .dir = dir, .bytes = bytes, .len = len};
}

/* An event carrying text smtptap wrote (facts, lint, errors, faults, AUTH steps). */
static struct event note(enum event_kind kind, enum event_dir dir, const char *text)
{
    return (struct event){.session = 1, .kind = kind, .dir = dir, .text = text};
}

/* The transcript a stream writer produces for events, as a NUL-terminated string (free it). */
static char *render_all(const struct event *evs, size_t n, bool color, size_t *len)
{
    char *out = NULL;
    size_t size = 0;
    FILE *mem = open_memstream(&out, &size);
    assert_non_null(mem);
    struct event_writer *w = text_stream_writer_new(mem, color);
    assert_non_null(w);
    for (size_t i = 0; i < n; i++) w->write(w, &evs[i]);
    w->close(w); /* flushes; the stream is not the writer's */
    assert_int_equal(fclose(mem), 0);
    if (len) *len = size;
    return out;
}

static char *render(const struct event *ev, bool color)
{
    return render_all(ev, 1, color, NULL);
}

/* Prints s with ESC, CR, LF and other control bytes visible, for failure messages. */
static void show(const char *label, const char *s)
{
    fprintf(stderr, "  %s:\n    \"", label);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '\n')
            fputs(p[1] ? "\\n\"\n    \"" : "\\n", stderr);
        else if (*p == '\033')
            fputs("\\e", stderr);
        else if (*p < 0x20 || *p == 0x7f)
            fprintf(stderr, "<%02X>", *p);
        else
            fputc(*p, stderr);
    }
    fputs("\"\n", stderr);
}

/* The transcript is exactly want; on a difference, prints both and the first differing line. */
static void assert_transcript_(char *got, const char *want, const char *file, int line)
{
    if (strcmp(got, want) != 0) {
        size_t at = 0, lineno = 1;
        while (got[at] && got[at] == want[at]) {
            if (got[at] == '\n') lineno++;
            at++;
        }
        fprintf(stderr, "transcript differs at line %zu (byte %zu)\n", lineno, at);
        show("got ", got);
        show("want", want);
        free(got);
        _fail(file, line);
    }
    free(got);
}
#define assert_transcript(got, want) assert_transcript_((got), (want), __FILE__, __LINE__)

/* ---- the line: session, time, marker, text -------------------------------------------- */

static void test_a_client_command_is_one_line_with_session_time_and_arrow(void **state)
{
    (void)state;
    struct event ev = wire(EV_COMMAND, DIR_C2S, LIT("RCPT TO:<a@busy.example>\r\n"));
    ev.t_ns = 4 * MS;
    assert_transcript(render(&ev, false), "#1 +0.004  -> RCPT TO:<a@busy.example>\n");
}

static void test_the_time_is_seconds_and_milliseconds_since_the_session_started(void **state)
{
    (void)state;
    struct event ev = wire(EV_COMMAND, DIR_C2S, LIT("NOOP\r\n"));
    ev.t_ns = 0;
    assert_transcript(render(&ev, false), "#1 +0.000  -> NOOP\n");
    ev.t_ns = 999999; /* under a millisecond: not rounded up */
    assert_transcript(render(&ev, false), "#1 +0.000  -> NOOP\n");
    ev.t_ns = 1000 * MS;
    assert_transcript(render(&ev, false), "#1 +1.000  -> NOOP\n");
    ev.t_ns = 61234567890ULL;
    assert_transcript(render(&ev, false), "#1 +61.234  -> NOOP\n");
    ev.t_ns = 3600ULL * 1000 * MS + 5 * MS;
    assert_transcript(render(&ev, false), "#1 +3600.005  -> NOOP\n");
}

static void test_the_session_number_comes_first_in_full(void **state)
{
    (void)state;
    struct event ev = wire(EV_COMMAND, DIR_C2S, LIT("QUIT\r\n"));
    ev.session = 42;
    assert_transcript(render(&ev, false), "#42 +0.000  -> QUIT\n");
    ev.session = 0;
    assert_transcript(render(&ev, false), "#0 +0.000  -> QUIT\n");
    ev.session = UINT64_MAX;
    assert_transcript(render(&ev, false), "#18446744073709551615 +0.000  -> QUIT\n");
}

static void test_a_server_reply_points_back_to_the_client(void **state)
{
    (void)state;
    struct event ev = wire(EV_REPLY, DIR_S2C, LIT("220 mx.example ESMTP\r\n"));
    assert_transcript(render(&ev, false), "#1 +0.000 <-  220 mx.example ESMTP\n");
}

static void test_a_multi_line_reply_is_one_transcript_line_per_reply_line(void **state)
{
    (void)state;
    struct event ev = wire(EV_REPLY, DIR_S2C,
                           LIT("250-mx.example greets vm\r\n250-PIPELINING\r\n250-STARTTLS\r\n"
                               "250 AUTH PLAIN LOGIN\r\n"));
    ev.t_ns = 12 * MS;
    assert_transcript(render(&ev, false), "#1 +0.012 <-  250-mx.example greets vm\n"
                                          "#1 +0.012 <-  250-PIPELINING\n"
                                          "#1 +0.012 <-  250-STARTTLS\n"
                                          "#1 +0.012 <-  250 AUTH PLAIN LOGIN\n");
}

static void test_an_empty_reply_line_inside_a_reply_is_still_a_line(void **state)
{
    (void)state;
    struct event ev = wire(EV_REPLY, DIR_S2C, LIT("250-a\r\n\r\n250 b\r\n"));
    assert_transcript(render(&ev, false), "#1 +0.000 <-  250-a\n"
                                          "#1 +0.000 <-  \n"
                                          "#1 +0.000 <-  250 b\n");
}

static void test_a_message_line_is_shown_like_a_command(void **state)
{
    (void)state;
    struct event ev = wire(EV_CONTENT, DIR_C2S, LIT("Subject: hello"));
    assert_transcript(render(&ev, false), "#1 +0.000  -> Subject: hello\n");
    ev = wire(EV_CONTENT, DIR_C2S, LIT("")); /* the blank line after the headers */
    assert_transcript(render(&ev, false), "#1 +0.000  -> \n");
    ev = wire(EV_CONTENT, DIR_C2S, NULL, 0); /* the same, with no bytes at all */
    assert_transcript(render(&ev, false), "#1 +0.000  -> \n");
}

static void test_a_sasl_line_is_shown_as_the_client_sent_it(void **state)
{
    (void)state;
    struct event ev = wire(EV_COMMAND, DIR_C2S, LIT("AHVzZXIAcGFzcw==\r\n"));
    assert_transcript(render(&ev, false), "#1 +0.000  -> AHVzZXIAcGFzcw==\n");
}

static void test_raw_bytes_are_relayed_but_not_shown(void **state)
{
    (void)state;
    /* The writer's first event writes nothing: the stream gets no bytes, not even "". */
    struct event ev = wire(EV_RAW, DIR_C2S, LIT("\x16\x03\x01\x02\x00\r\n"));
    assert_transcript(render(&ev, false), "");
    ev.dir = DIR_S2C;
    assert_transcript(render(&ev, true), "");
}

/* ---- TLS -------------------------------------------------------------------------------- */

static void test_in_tls_the_arrows_become_tildes(void **state)
{
    (void)state;
    struct event evs[] = {
        wire(EV_COMMAND, DIR_C2S, LIT("EHLO client.example\r\n")),
        wire(EV_REPLY, DIR_S2C, LIT("250-mx.example\r\n250 AUTH PLAIN\r\n")),
        wire(EV_CONTENT, DIR_C2S, LIT("Subject: secret")),
    };
    for (size_t i = 0; i < 3; i++) evs[i].tls = true;
    assert_transcript(render_all(evs, 3, false, NULL), "#1 +0.000  ~> EHLO client.example\n"
                                                       "#1 +0.000 <~  250-mx.example\n"
                                                       "#1 +0.000 <~  250 AUTH PLAIN\n"
                                                       "#1 +0.000  ~> Subject: secret\n");
}

static void test_tls_does_not_change_the_markers_of_smtptap_notes(void **state)
{
    (void)state;
    struct event evs[] = {
        note(EV_INFO, DIR_NONE, "client TLS: TLSv1.3"),
        note(EV_LINT, DIR_NONE, "lint: x"),
        note(EV_ERROR, DIR_S2C, "upstream reset"),
        note(EV_ERROR, DIR_C2S, "client reset"),
    };
    for (size_t i = 0; i < 4; i++) evs[i].tls = true;
    assert_transcript(render_all(evs, 4, false, NULL), "#1 +0.000 == client TLS: TLSv1.3\n"
                                                       "#1 +0.000 ** lint: x\n"
                                                       "#1 +0.000 <** upstream reset\n"
                                                       "#1 +0.000 **> client reset\n");
}

static void test_a_starttls_session_switches_markers_at_the_upgrade(void **state)
{
    (void)state;
    struct event evs[] = {
        wire(EV_REPLY, DIR_S2C, LIT("220 mx.example ESMTP\r\n")),
        wire(EV_COMMAND, DIR_C2S, LIT("STARTTLS\r\n")),
        wire(EV_REPLY, DIR_S2C, LIT("220 go ahead\r\n")),
        note(EV_INFO, DIR_C2S, "client TLS: TLSv1.3 TLS_AES_256_GCM_SHA384"),
        wire(EV_COMMAND, DIR_C2S, LIT("EHLO client.example\r\n")),
        wire(EV_REPLY, DIR_S2C, LIT("250 mx.example\r\n")),
    };
    for (size_t i = 3; i < 6; i++) evs[i].tls = true;
    for (size_t i = 0; i < 6; i++) evs[i].t_ns = i * MS;
    assert_transcript(render_all(evs, 6, false, NULL),
                      "#1 +0.000 <-  220 mx.example ESMTP\n"
                      "#1 +0.001  -> STARTTLS\n"
                      "#1 +0.002 <-  220 go ahead\n"
                      "#1 +0.003 == client TLS: TLSv1.3 TLS_AES_256_GCM_SHA384\n"
                      "#1 +0.004  ~> EHLO client.example\n"
                      "#1 +0.005 <~  250 mx.example\n");
}

/* ---- smtptap's own notes ---------------------------------------------------------------- */

static void test_each_note_kind_has_its_marker(void **state)
{
    (void)state;
    struct event evs[] = {
        note(EV_INFO, DIR_NONE, "connect 127.0.0.1:4711 -> upstream 127.0.0.1:25"),
        note(EV_MESSAGE, DIR_C2S, "message: 1234 bytes, 20 lines, sha256 ab12"),
        note(EV_LINT, DIR_NONE, "lint: MAIL FROM ends with a bare LF"),
        note(EV_AUTH, DIR_C2S, "AUTH PLAIN user=\"user\" password=<redacted>"),
        note(EV_FAULT, DIR_NONE, "fault flag 1: RCPT answered by smtptap, not forwarded"),
        note(EV_ERROR, DIR_S2C, "upstream closed the connection"),
        note(EV_ERROR, DIR_C2S, "client closed the connection"),
    };
    assert_transcript(render_all(evs, 7, false, NULL),
                      "#1 +0.000 == connect 127.0.0.1:4711 -> upstream 127.0.0.1:25\n"
                      "#1 +0.000 == message: 1234 bytes, 20 lines, sha256 ab12\n"
                      "#1 +0.000 ** lint: MAIL FROM ends with a bare LF\n"
                      "#1 +0.000 ## AUTH PLAIN user=\"user\" password=<redacted>\n"
                      "#1 +0.000 !! fault flag 1: RCPT answered by smtptap, not forwarded\n"
                      "#1 +0.000 <** upstream closed the connection\n"
                      "#1 +0.000 **> client closed the connection\n");
}

static void test_an_error_that_names_no_side_is_shown_as_the_client_side(void **state)
{
    (void)state;
    struct event ev = note(EV_ERROR, DIR_NONE, "session aborted");
    assert_transcript(render(&ev, false), "#1 +0.000 **> session aborted\n");
}

static void test_a_note_of_several_lines_is_several_transcript_lines(void **state)
{
    (void)state;
    struct event ev = note(EV_INFO, DIR_NONE, "session end\nbytes up 10\r\nbytes down 20\n");
    assert_transcript(render(&ev, false), "#1 +0.000 == session end\n"
                                          "#1 +0.000 == bytes up 10\n"
                                          "#1 +0.000 == bytes down 20\n");
}

static void test_a_note_keeps_its_own_escapes_and_defuses_control_bytes(void **state)
{
    (void)state;
    /* Decoded AUTH text arrives escaped already: its backslashes stay single. */
    struct event ev = note(EV_AUTH, DIR_C2S, "AUTH PLAIN authzid=\"\" user=\"a\\x00b\"");
    assert_transcript(render(&ev, false),
                      "#1 +0.000 ## AUTH PLAIN authzid=\"\" user=\"a\\x00b\"\n");
    /* A terminal escape sequence or a lone CR in a note is made harmless. */
    ev = note(EV_LINT, DIR_NONE, "lint: \033[2J\rgone\x7f");
    assert_transcript(render(&ev, false), "#1 +0.000 ** lint: \\x1B[2J\\x0Dgone\\x7F\n");
}

static void test_a_note_without_text_is_an_empty_line(void **state)
{
    (void)state;
    struct event ev = note(EV_INFO, DIR_NONE, NULL);
    assert_transcript(render(&ev, false), "#1 +0.000 == \n");
    ev = note(EV_INFO, DIR_NONE, "");
    assert_transcript(render(&ev, false), "#1 +0.000 == \n");
}

/* ---- [smtptap] and [to smtptap] ------------------------------------------------------- */

static void test_an_edited_reply_is_shown_as_the_client_got_it(void **state)
{
    (void)state;
    static const char server[] = "250-mx.example\r\n250-8BITMIME\r\n250 SIZE 100\r\n";
    struct event ev =
        wire(EV_REPLY, DIR_S2C, LIT("250-mx.example\r\n250-STARTTLS\r\n250 SIZE 100\r\n"));
    union event_facts f = {.reply = {.code = 250,
                                     .edited_from = (const uint8_t *)server,
                                     .edited_from_len = sizeof server - 1}};
    ev.facts = &f;
    ev.tls = true; /* "<=" has no TLS form: the lines around it tell */
    assert_transcript(render(&ev, false), "#1 +0.000 <=  250-mx.example\n"
                                          "#1 +0.000 <=+ 250-STARTTLS\n"
                                          "#1 +0.000 <=  250 SIZE 100\n");
}

static void test_a_reply_smtptap_wrote_itself_is_tagged(void **state)
{
    (void)state;
    struct event ev = wire(EV_REPLY, DIR_S2C, LIT("450 4.2.0 Mailbox busy, try later\r\n"));
    ev.local = true;
    ev.t_ns = 5 * MS;
    assert_transcript(render(&ev, false),
                      "#1 +0.005 <-  450 4.2.0 Mailbox busy, try later  [smtptap]\n");
}

static void test_smtptaps_own_starttls_to_the_upstream_is_tagged(void **state)
{
    (void)state;
    struct event evs[] = {
        wire(EV_COMMAND, DIR_C2S, LIT("STARTTLS\r\n")),
        wire(EV_REPLY, DIR_S2C, LIT("220 2.0.0 Ready to start TLS\r\n")),
    };
    evs[0].local = true;
    evs[1].to_smtptap = true;
    assert_transcript(render_all(evs, 2, false, NULL),
                      "#1 +0.000  -> STARTTLS  [smtptap]\n"
                      "#1 +0.000 <-  220 2.0.0 Ready to start TLS  [to smtptap]\n");
}

static void test_every_line_of_a_reply_to_smtptap_is_tagged(void **state)
{
    (void)state;
    struct event ev = wire(EV_REPLY, DIR_S2C, LIT("250-mx.example\r\n250 STARTTLS\r\n"));
    ev.to_smtptap = true;
    ev.tls = true;
    assert_transcript(render(&ev, false), "#1 +0.000 <~  250-mx.example  [to smtptap]\n"
                                          "#1 +0.000 <~  250 STARTTLS  [to smtptap]\n");
}

static void test_a_local_note_is_tagged_too(void **state)
{
    (void)state;
    struct event ev = note(EV_INFO, DIR_NONE, "upstream TLS: TLSv1.3");
    ev.local = true;
    assert_transcript(render(&ev, false), "#1 +0.000 == upstream TLS: TLSv1.3  [smtptap]\n");
}

/* ---- line ends ---------------------------------------------------------------------------- */

static void test_bytes_without_a_final_crlf_still_make_a_whole_line(void **state)
{
    (void)state;
    struct event ev = wire(EV_COMMAND, DIR_C2S, LIT("QUIT"));
    assert_transcript(render(&ev, false), "#1 +0.000  -> QUIT\n");
    ev = wire(EV_REPLY, DIR_S2C, LIT("250-first\r\n250 last"));
    assert_transcript(render(&ev, false), "#1 +0.000 <-  250-first\n"
                                          "#1 +0.000 <-  250 last\n");
}

static void test_a_bare_lf_ends_a_line_like_crlf(void **state)
{
    (void)state;
    struct event ev = wire(EV_COMMAND, DIR_C2S, LIT("MAIL FROM:<a@b>\n"));
    assert_transcript(render(&ev, false), "#1 +0.000  -> MAIL FROM:<a@b>\n");
    ev = wire(EV_REPLY, DIR_S2C, LIT("250-a\n250-b\r\n250 c\n"));
    assert_transcript(render(&ev, false), "#1 +0.000 <-  250-a\n"
                                          "#1 +0.000 <-  250-b\n"
                                          "#1 +0.000 <-  250 c\n");
}

static void test_a_cr_that_ends_no_line_is_shown(void **state)
{
    (void)state;
    struct event ev = wire(EV_COMMAND, DIR_C2S, LIT("VRFY a\rb\r\r\n"));
    assert_transcript(render(&ev, false), "#1 +0.000  -> VRFY a\\rb\\r\n");
    ev = wire(EV_COMMAND, DIR_C2S, LIT("NOOP\r"));
    assert_transcript(render(&ev, false), "#1 +0.000  -> NOOP\\r\n");
}

static void test_an_empty_command_is_an_empty_line(void **state)
{
    (void)state;
    struct event ev = wire(EV_COMMAND, DIR_C2S, LIT("\r\n"));
    assert_transcript(render(&ev, false), "#1 +0.000  -> \n");
    ev = wire(EV_COMMAND, DIR_C2S, LIT("\n"));
    assert_transcript(render(&ev, false), "#1 +0.000  -> \n");
}

/* ---- bytes made readable ---------------------------------------------------------------- */

static void test_nul_and_8bit_bytes_are_escaped(void **state)
{
    (void)state;
    struct event ev = wire(EV_COMMAND, DIR_C2S, LIT("MAIL FROM:<a\0b@\xff\x80.example>\r\n"));
    assert_transcript(render(&ev, false), "#1 +0.000  -> MAIL FROM:<a\\0b@\\xFF\\x80.example>\n");
}

static void test_control_bytes_are_escaped_but_tab_is_kept(void **state)
{
    (void)state;
    struct event ev = wire(EV_COMMAND, DIR_C2S, LIT("RCPT\tTO:<\033[31m\x01\x1f\x7f>\r\n"));
    assert_transcript(render(&ev, false), "#1 +0.000  -> RCPT\tTO:<\\x1B[31m\\x01\\x1F\\x7F>\n");
}

static void test_a_backslash_is_doubled_so_escapes_stay_unambiguous(void **state)
{
    (void)state;
    struct event ev = wire(EV_COMMAND, DIR_C2S, LIT("VRFY a\\r\\x41\r\n"));
    assert_transcript(render(&ev, false), "#1 +0.000  -> VRFY a\\\\r\\\\x41\n");
}

static void test_valid_utf8_is_shown_as_it_is(void **state)
{
    (void)state;
    struct event ev =
        wire(EV_CONTENT, DIR_C2S, LIT("Subject: caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x93\xa7"));
    assert_transcript(render(&ev, false),
                      "#1 +0.000  -> Subject: caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x93\xa7\n");
}

static void test_terminal_controls_in_utf8_are_escaped(void **state)
{
    (void)state;
    /* U+009B (8-bit CSI), U+0085 (NEL), U+202E (right-to-left override), U+2066 (isolate) */
    struct event evs[] = {
        wire(EV_COMMAND, DIR_C2S,
             LIT("EHLO \xc2\x9b"
                 "31m\r\n")),
        wire(EV_CONTENT, DIR_C2S,
             LIT("a\xc2\x85"
                 "b \xe2\x80\xae"
                 "gnp.exe \xe2\x81\xa6"
                 "x")),
    };
    assert_transcript(render_all(evs, 2, false, NULL),
                      "#1 +0.000  -> EHLO \\xC2\\x9B31m\n"
                      "#1 +0.000  -> a\\xC2\\x85b \\xE2\\x80\\xAEgnp.exe \\xE2\\x81\\xA6x\n");
}

static void test_invalid_utf8_is_escaped_byte_by_byte(void **state)
{
    (void)state;
    struct event evs[] = {
        wire(EV_CONTENT, DIR_C2S, LIT("overlong \xc0\xaf \xe0\x80\xaf")),
        wire(EV_CONTENT, DIR_C2S, LIT("surrogate \xed\xa0\x80")),
        wire(EV_CONTENT, DIR_C2S, LIT("too big \xf4\x90\x80\x80 \xf5\x80")),
        wire(EV_CONTENT, DIR_C2S, LIT("cut \xc3")),
        wire(EV_CONTENT, DIR_C2S, LIT("lone \xa9 continuation")),
        wire(EV_CONTENT, DIR_C2S, LIT("latin1 caf\xe9!")),
    };
    assert_transcript(render_all(evs, 6, false, NULL),
                      "#1 +0.000  -> overlong \\xC0\\xAF \\xE0\\x80\\xAF\n"
                      "#1 +0.000  -> surrogate \\xED\\xA0\\x80\n"
                      "#1 +0.000  -> too big \\xF4\\x90\\x80\\x80 \\xF5\\x80\n"
                      "#1 +0.000  -> cut \\xC3\n"
                      "#1 +0.000  -> lone \\xA9 continuation\n"
                      "#1 +0.000  -> latin1 caf\\xE9!\n");
}

static void test_text_escape_appends_to_what_is_there(void **state)
{
    (void)state;
    struct buf out;
    buf_init(&out);
    buf_append_str(&out, "got: ");
    text_escape(LIT("a\r\n\0\\\xff\xc3\xa9"), &out);
    const char want[] = "got: a\\r\\n\\0\\\\\\xFF\xc3\xa9";
    char got[64] = {0};
    assert_true(buf_size(&out) < sizeof got);
    memcpy(got, buf_head(&out), buf_size(&out));
    assert_string_equal(got, want);
    assert_int_equal(buf_size(&out), sizeof want - 1);
    buf_free(&out);
}

/* Every byte value at every place in a run of plain text (which text_escape skips 8 bytes
 * at a time): escaped as it is alone, the text around it kept. */
static void test_each_byte_is_escaped_wherever_it_lies_in_a_long_run(void **state)
{
    (void)state;
    struct buf got, want;
    buf_init(&got);
    buf_init(&want);
    uint8_t line[40];
    for (unsigned c = 0; c < 256; c++) {
        for (size_t at = 0; at < 24; at++) {
            memset(line, 'a' + at % 26, sizeof line);
            line[at] = (uint8_t)c;
            buf_reset(&got);
            buf_reset(&want);
            text_escape(line, sizeof line, &got);
            text_escape(line, at, &want);
            text_escape(line + at, 1, &want);
            text_escape(line + at + 1, sizeof line - at - 1, &want);
            assert_int_equal(buf_size(&got), buf_size(&want));
            assert_memory_equal(buf_head(&got), buf_head(&want), buf_size(&want));
            if ((c >= 0x20 && c < 0x7f && c != '\\') || c == '\t') /* tab kept too */
                assert_int_equal(buf_size(&got), sizeof line);     /* kept as it is */
            else
                assert_true(buf_size(&got) > sizeof line);
        }
    }
    buf_free(&got);
    buf_free(&want);
}

static void test_a_very_long_line_is_shown_whole_on_one_line(void **state)
{
    (void)state;
    enum { N = 100000 };
    uint8_t *line = malloc(N + 2);
    assert_non_null(line);
    for (size_t i = 0; i < N; i++) line[i] = (uint8_t)('a' + i % 26);
    memcpy(line + N, "\r\n", 2);
    struct event ev = wire(EV_COMMAND, DIR_C2S, line, N + 2);
    size_t len;
    char *got = render_all(&ev, 1, false, &len);
    static const char head[] = "#1 +0.000  -> ";
    assert_int_equal(len, strlen(head) + N + 1);
    assert_memory_equal(got, head, strlen(head));
    assert_memory_equal(got + strlen(head), line, N);
    assert_int_equal(got[len - 1], '\n');
    assert_null(memchr(got, '\n', len - 1));
    free(got);
    free(line);
}

static void test_a_long_line_of_nul_bytes_is_escaped_whole(void **state)
{
    (void)state;
    enum { N = 5000 };
    uint8_t *line = calloc(1, N); /* N NUL bytes */
    assert_non_null(line);
    line[N - 1] = 0xff;
    struct event ev = wire(EV_CONTENT, DIR_C2S, line, N);
    size_t len;
    char *got = render_all(&ev, 1, false, &len);
    static const char head[] = "#1 +0.000  -> ";
    assert_int_equal(len, strlen(head) + 2 * (N - 1) + 4 + 1);
    assert_memory_equal(got + len - 5, "\\xFF\n", 5);
    assert_memory_equal(got + strlen(head), "\\0\\0\\0", 6);
    free(got);
    free(line);
}

/* ---- colour ------------------------------------------------------------------------------ */

static void test_with_colour_the_marker_and_text_are_coloured_and_reset(void **state)
{
    (void)state;
    struct event evs[] = {
        wire(EV_COMMAND, DIR_C2S, LIT("EHLO client.example\r\n")),
        wire(EV_CONTENT, DIR_C2S, LIT("Subject: hi")),
        note(EV_INFO, DIR_NONE, "connect"),
        note(EV_MESSAGE, DIR_C2S, "message: 3 bytes"),
        note(EV_LINT, DIR_NONE, "lint: x"),
        note(EV_ERROR, DIR_S2C, "upstream reset"),
        note(EV_ERROR, DIR_C2S, "client reset"),
        note(EV_AUTH, DIR_C2S, "AUTH LOGIN"),
        note(EV_FAULT, DIR_NONE, "fault"),
    };
    assert_transcript(render_all(evs, 9, true, NULL),
                      "#1 +0.000 " BOLD " -> EHLO client.example" RESET "\n"
                      "#1 +0.000 " DIM " -> Subject: hi" RESET "\n"
                      "#1 +0.000 " BLUE "== connect" RESET "\n"
                      "#1 +0.000 " BLUE "== message: 3 bytes" RESET "\n"
                      "#1 +0.000 " YELLOW "** lint: x" RESET "\n"
                      "#1 +0.000 " RED "<** upstream reset" RESET "\n"
                      "#1 +0.000 " RED "**> client reset" RESET "\n"
                      "#1 +0.000 " CYAN "## AUTH LOGIN" RESET "\n"
                      "#1 +0.000 " MAGENTA "!! fault" RESET "\n");
}

static void test_with_colour_each_reply_line_is_coloured_by_its_own_code(void **state)
{
    (void)state;
    struct event evs[] = {
        wire(EV_REPLY, DIR_S2C, LIT("220 ready\r\n")),
        wire(EV_REPLY, DIR_S2C, LIT("354 go\r\n")),
        wire(EV_REPLY, DIR_S2C, LIT("451-try\r\n451 later\r\n")),
        wire(EV_REPLY, DIR_S2C, LIT("554 no\r\n")),
        wire(EV_REPLY, DIR_S2C, LIT("250-a\r\njunk\r\n\r\n")),
    };
    assert_transcript(render_all(evs, 5, true, NULL), "#1 +0.000 " GREEN "<-  220 ready" RESET "\n"
                                                      "#1 +0.000 " CYAN "<-  354 go" RESET "\n"
                                                      "#1 +0.000 " YELLOW "<-  451-try" RESET "\n"
                                                      "#1 +0.000 " YELLOW "<-  451 later" RESET "\n"
                                                      "#1 +0.000 " RED "<-  554 no" RESET "\n"
                                                      "#1 +0.000 " GREEN "<-  250-a" RESET "\n"
                                                      "#1 +0.000 " RED "<-  junk" RESET "\n"
                                                      "#1 +0.000 " RED "<-  " RESET "\n");
}

static void test_with_colour_the_tags_come_before_the_reset(void **state)
{
    (void)state;
    struct event evs[] = {
        wire(EV_REPLY, DIR_S2C, LIT("421 shutting down\r\n")),
        wire(EV_REPLY, DIR_S2C, LIT("220 go ahead\r\n")),
    };
    evs[0].local = true;
    evs[1].to_smtptap = true;
    evs[1].tls = true;
    assert_transcript(render_all(evs, 2, true, NULL),
                      "#1 +0.000 " YELLOW "<-  421 shutting down  [smtptap]" RESET "\n"
                      "#1 +0.000 " GREEN "<~  220 go ahead  [to smtptap]" RESET "\n");
}

static void test_without_colour_there_is_no_escape_byte_at_all(void **state)
{
    (void)state;
    struct event evs[] = {
        wire(EV_REPLY, DIR_S2C, LIT("250-a\r\n250 b\r\n")),
        wire(EV_COMMAND, DIR_C2S, LIT("DATA\r\n")),
        wire(EV_CONTENT, DIR_C2S, LIT("x")),
        note(EV_INFO, DIR_NONE, "i"),
        note(EV_MESSAGE, DIR_NONE, "m"),
        note(EV_LINT, DIR_NONE, "l"),
        note(EV_ERROR, DIR_S2C, "e"),
        note(EV_FAULT, DIR_NONE, "f"),
        note(EV_AUTH, DIR_NONE, "a"),
    };
    size_t len;
    char *got = render_all(evs, 9, false, &len);
    if (memchr(got, '\033', len)) {
        show("got", got);
        free(got);
        fail_msg("an ESC byte in a transcript written without colour");
    }
    assert_int_equal(len, strlen(got));
    free(got);
}

static void test_colour_never_comes_from_the_escaped_bytes(void **state)
{
    (void)state;
    /* The client sends its own colour codes: they are shown, not obeyed. */
    struct event ev = wire(EV_COMMAND, DIR_C2S, LIT("HELO \033[32mfake\033[0m\r\n"));
    assert_transcript(render(&ev, true),
                      "#1 +0.000 " BOLD " -> HELO \\x1B[32mfake\\x1B[0m" RESET "\n");
}

/* ---- writers ----------------------------------------------------------------------------- */

static void test_a_whole_session_reads_like_the_readme(void **state)
{
    (void)state;
    struct event evs[] = {
        note(EV_INFO, DIR_NONE, "connect 127.0.0.1:40000 -> 127.0.0.1:2525"),
        wire(EV_REPLY, DIR_S2C, LIT("220 mx.example ESMTP\r\n")),
        wire(EV_COMMAND, DIR_C2S, LIT("EHLO vm\r\n")),
        wire(EV_REPLY, DIR_S2C, LIT("250-mx.example\r\n250 PIPELINING\r\n")),
        wire(EV_COMMAND, DIR_C2S, LIT("MAIL FROM:<a@example.org>\r\n")),
        wire(EV_REPLY, DIR_S2C, LIT("250 ok\r\n")),
        wire(EV_COMMAND, DIR_C2S, LIT("RCPT TO:<a@busy.example>\r\n")),
        note(EV_FAULT, DIR_NONE, "fault flag 1: RCPT answered by smtptap, not forwarded"),
        wire(EV_REPLY, DIR_S2C, LIT("450 4.2.0 Mailbox busy, try later\r\n")),
        wire(EV_COMMAND, DIR_C2S, LIT("QUIT\r\n")),
        wire(EV_REPLY, DIR_S2C, LIT("221 bye\r\n")),
        note(EV_INFO, DIR_NONE, "end: bytes up 60, bytes down 120"),
    };
    evs[8].local = true;
    size_t n = sizeof evs / sizeof evs[0];
    for (size_t i = 0; i < n; i++) {
        evs[i].session = 7;
        evs[i].t_ns = i * MS;
    }
    assert_transcript(render_all(evs, n, false, NULL),
                      "#7 +0.000 == connect 127.0.0.1:40000 -> 127.0.0.1:2525\n"
                      "#7 +0.001 <-  220 mx.example ESMTP\n"
                      "#7 +0.002  -> EHLO vm\n"
                      "#7 +0.003 <-  250-mx.example\n"
                      "#7 +0.003 <-  250 PIPELINING\n"
                      "#7 +0.004  -> MAIL FROM:<a@example.org>\n"
                      "#7 +0.005 <-  250 ok\n"
                      "#7 +0.006  -> RCPT TO:<a@busy.example>\n"
                      "#7 +0.007 !! fault flag 1: RCPT answered by smtptap, not forwarded\n"
                      "#7 +0.008 <-  450 4.2.0 Mailbox busy, try later  [smtptap]\n"
                      "#7 +0.009  -> QUIT\n"
                      "#7 +0.010 <-  221 bye\n"
                      "#7 +0.011 == end: bytes up 60, bytes down 120\n");
}

static void test_the_writer_does_not_keep_the_events_bytes(void **state)
{
    (void)state;
    char *out = NULL;
    size_t size = 0;
    FILE *mem = open_memstream(&out, &size);
    assert_non_null(mem);
    struct event_writer *w = text_stream_writer_new(mem, false);
    char bytes[] = "NOOP\r\n";
    struct event ev = wire(EV_COMMAND, DIR_C2S, (const uint8_t *)bytes, strlen(bytes));
    w->write(w, &ev);
    memcpy(bytes, "XXXX", 4); /* the caller reuses its buffer at once */
    ev = note(EV_INFO, DIR_NONE, "next");
    w->write(w, &ev);
    w->close(w);
    assert_int_equal(fclose(mem), 0);
    assert_transcript(out, "#1 +0.000  -> NOOP\n#1 +0.000 == next\n");
}

static void test_a_capture_file_has_no_colour_and_is_closed_by_its_writer(void **state)
{
    (void)state;
    char *out = NULL;
    size_t size = 0;
    FILE *mem = open_memstream(&out, &size);
    assert_non_null(mem);
    struct event_writer *w = text_file_writer_new(mem);
    assert_non_null(w);
    struct event evs[] = {
        wire(EV_REPLY, DIR_S2C, LIT("220 mx.example\r\n")),
        note(EV_LINT, DIR_NONE, "lint: x"),
    };
    w->write(w, &evs[0]);
    w->write(w, &evs[1]);
    w->close(w); /* closes mem: out and size are final now */
    assert_int_equal(size, strlen(out));
    assert_transcript(out, "#1 +0.000 <-  220 mx.example\n#1 +0.000 ** lint: x\n");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_client_command_is_one_line_with_session_time_and_arrow),
        cmocka_unit_test(test_the_time_is_seconds_and_milliseconds_since_the_session_started),
        cmocka_unit_test(test_the_session_number_comes_first_in_full),
        cmocka_unit_test(test_a_server_reply_points_back_to_the_client),
        cmocka_unit_test(test_a_multi_line_reply_is_one_transcript_line_per_reply_line),
        cmocka_unit_test(test_an_empty_reply_line_inside_a_reply_is_still_a_line),
        cmocka_unit_test(test_a_message_line_is_shown_like_a_command),
        cmocka_unit_test(test_a_sasl_line_is_shown_as_the_client_sent_it),
        cmocka_unit_test(test_raw_bytes_are_relayed_but_not_shown),

        cmocka_unit_test(test_in_tls_the_arrows_become_tildes),
        cmocka_unit_test(test_tls_does_not_change_the_markers_of_smtptap_notes),
        cmocka_unit_test(test_a_starttls_session_switches_markers_at_the_upgrade),

        cmocka_unit_test(test_each_note_kind_has_its_marker),
        cmocka_unit_test(test_an_error_that_names_no_side_is_shown_as_the_client_side),
        cmocka_unit_test(test_a_note_of_several_lines_is_several_transcript_lines),
        cmocka_unit_test(test_a_note_keeps_its_own_escapes_and_defuses_control_bytes),
        cmocka_unit_test(test_a_note_without_text_is_an_empty_line),

        cmocka_unit_test(test_a_reply_smtptap_wrote_itself_is_tagged),
        cmocka_unit_test(test_an_edited_reply_is_shown_as_the_client_got_it),
        cmocka_unit_test(test_smtptaps_own_starttls_to_the_upstream_is_tagged),
        cmocka_unit_test(test_every_line_of_a_reply_to_smtptap_is_tagged),
        cmocka_unit_test(test_a_local_note_is_tagged_too),

        cmocka_unit_test(test_bytes_without_a_final_crlf_still_make_a_whole_line),
        cmocka_unit_test(test_a_bare_lf_ends_a_line_like_crlf),
        cmocka_unit_test(test_a_cr_that_ends_no_line_is_shown),
        cmocka_unit_test(test_an_empty_command_is_an_empty_line),

        cmocka_unit_test(test_nul_and_8bit_bytes_are_escaped),
        cmocka_unit_test(test_control_bytes_are_escaped_but_tab_is_kept),
        cmocka_unit_test(test_a_backslash_is_doubled_so_escapes_stay_unambiguous),
        cmocka_unit_test(test_valid_utf8_is_shown_as_it_is),
        cmocka_unit_test(test_invalid_utf8_is_escaped_byte_by_byte),
        cmocka_unit_test(test_terminal_controls_in_utf8_are_escaped),
        cmocka_unit_test(test_text_escape_appends_to_what_is_there),
        cmocka_unit_test(test_each_byte_is_escaped_wherever_it_lies_in_a_long_run),
        cmocka_unit_test(test_a_very_long_line_is_shown_whole_on_one_line),
        cmocka_unit_test(test_a_long_line_of_nul_bytes_is_escaped_whole),

        cmocka_unit_test(test_with_colour_the_marker_and_text_are_coloured_and_reset),
        cmocka_unit_test(test_with_colour_each_reply_line_is_coloured_by_its_own_code),
        cmocka_unit_test(test_with_colour_the_tags_come_before_the_reset),
        cmocka_unit_test(test_without_colour_there_is_no_escape_byte_at_all),
        cmocka_unit_test(test_colour_never_comes_from_the_escaped_bytes),

        cmocka_unit_test(test_a_whole_session_reads_like_the_readme),
        cmocka_unit_test(test_the_writer_does_not_keep_the_events_bytes),
        cmocka_unit_test(test_a_capture_file_has_no_colour_and_is_closed_by_its_writer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
