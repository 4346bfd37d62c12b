/* test_capture_eml.c - unit tests for the eml capture writer (capture_eml.c): synthetic event
 * sequences go in, and each test reads back the files it left in a temporary capture
 * directory and compares them whole: the X-Smtptap- header block and the body bytes exactly
 * (raw mode: the body and nothing else), one file per message written at its EV_DELIVERY,
 * pipelined BDAT bodies paired with their replies in order, a message with no reply, a body
 * cut short, hostile header values, large bodies that leave memory, odd event orders. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <ftw.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "smtptap/capture.h"

/* A string literal as (bytes, length), embedded NULs included. */
#define LIT(s) (const uint8_t *)(s), (sizeof(s) - 1)

#define SESSION 7

/* ---- the fixture: a capture directory and a writer in it ------------------------------ */

struct fixture {
    char dir[64];
    char prefix[128];
    struct event_writer *w;
};

static int setup_with(void **state, bool raw)
{
    struct fixture *f = calloc(1, sizeof *f);
    if (!f) return -1;
    strcpy(f->dir, "/tmp/smtptap-test-eml-XXXXXX");
    if (!mkdtemp(f->dir)) return -1;
    snprintf(f->prefix, sizeof f->prefix, "%s/20240102T030405-7-192.0.2.1_40001", f->dir);
    f->w = eml_writer_new(f->prefix, raw);
    *state = f;
    return f->w ? 0 : -1;
}

static int setup(void **state)
{
    return setup_with(state, false);
}

static int setup_raw(void **state)
{
    return setup_with(state, true);
}

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st, (void)type, (void)ftw;
    return remove(path);
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    if (f->w) f->w->close(f->w);
    nftw(f->dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

/* Closes the writer now (the test then reads what it left). */
static void close_writer(struct fixture *f)
{
    f->w->close(f->w);
    f->w = NULL;
}

/* ---- events --------------------------------------------------------------------------- */

static void feed(struct fixture *f, enum event_kind kind, const uint8_t *bytes, size_t len,
                 const union event_facts *facts)
{
    struct event ev = {.session = SESSION,
                       .kind = kind,
                       .dir = kind == EV_DELIVERY ? DIR_S2C : DIR_C2S,
                       .bytes = bytes,
                       .len = len,
                       .facts = facts};
    f->w->write(f->w, &ev);
}

static void start4(struct fixture *f, const char *ip, unsigned port)
{
    union event_facts facts;
    memset(&facts, 0, sizeof facts);
    struct sockaddr_in *in = (struct sockaddr_in *)&facts.endpoints.a;
    in->sin_family = AF_INET;
    in->sin_port = htons((uint16_t)port);
    assert_int_equal(inet_pton(AF_INET, ip, &in->sin_addr), 1);
    feed(f, EV_START, NULL, 0, &facts);
}

static void start6(struct fixture *f, const char *ip, unsigned port)
{
    union event_facts facts;
    memset(&facts, 0, sizeof facts);
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&facts.endpoints.a;
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons((uint16_t)port);
    assert_int_equal(inet_pton(AF_INET6, ip, &in6->sin6_addr), 1);
    feed(f, EV_START, NULL, 0, &facts);
}

static void body(struct fixture *f, uint64_t n, const uint8_t *bytes, size_t len)
{
    union event_facts facts = {.message = {.number = n}};
    feed(f, EV_BODY, bytes, len, &facts);
}

static void message(struct fixture *f, uint64_t n)
{
    union event_facts facts = {.message = {.number = n, .sha256 = ""}};
    feed(f, EV_MESSAGE, NULL, 0, &facts);
}

/* An EV_DELIVERY: reply as received, helo, MAIL line, then RCPT lines, NULL-terminated. */
static void delivery(struct fixture *f, uint64_t n, const char *reply, const char *helo,
                     const char *mail, ...)
{
    const char *rcpts[16];
    size_t nr = 0;
    va_list ap;
    va_start(ap, mail);
    for (const char *r; (r = va_arg(ap, const char *)) && nr < 16;) rcpts[nr++] = r;
    va_end(ap);
    union event_facts facts = {.delivery = {.message = n,
                                            .helo = helo,
                                            .mail_from = mail,
                                            .rcpts = rcpts,
                                            .nrcpts = nr,
                                            .reply = (const uint8_t *)reply,
                                            .reply_len = strlen(reply),
                                            .code = atoi(reply)}};
    feed(f, EV_DELIVERY, NULL, 0, &facts);
}

static void end(struct fixture *f)
{
    union event_facts facts = {.end = {.seconds = 1}};
    feed(f, EV_END, NULL, 0, &facts);
}

/* ---- reading back --------------------------------------------------------------------- */

static void eml_path(const struct fixture *f, uint64_t n, char *out, size_t size)
{
    snprintf(out, size, "%s-%llu.eml", f->prefix, (unsigned long long)n);
}

/* The whole file of message n (free it), or NULL when there is none. */
static uint8_t *read_eml(const struct fixture *f, uint64_t n, size_t *len)
{
    char path[256];
    eml_path(f, n, path, sizeof path);
    FILE *in = fopen(path, "rb");
    if (!in) return NULL;
    assert_int_equal(fseek(in, 0, SEEK_END), 0);
    long size = ftell(in);
    assert_true(size >= 0);
    rewind(in);
    uint8_t *data = malloc((size_t)size + 1);
    assert_non_null(data);
    assert_int_equal(fread(data, 1, (size_t)size, in), (size_t)size);
    data[size] = 0;
    fclose(in);
    *len = (size_t)size;
    return data;
}

/* How many entries the capture directory holds (no temporary files left behind). */
static int entries(const struct fixture *f)
{
    DIR *d = opendir(f->dir);
    assert_non_null(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n;
}

/* Prints bytes with CR, LF and other control bytes visible, for failure messages. */
static void show(const char *label, const uint8_t *s, size_t n)
{
    fprintf(stderr, "  %s (%zu bytes):\n    \"", label, n);
    for (size_t i = 0; i < n && i < 4000; i++) {
        if (s[i] == '\n')
            fputs(i + 1 < n ? "\\n\"\n    \"" : "\\n", stderr);
        else if (s[i] == '\r')
            fputs("\\r", stderr);
        else if (s[i] < 0x20 || s[i] >= 0x7f)
            fprintf(stderr, "\\x%02X", s[i]);
        else
            fputc(s[i], stderr);
    }
    fputs("\"\n", stderr);
}

/* Message n's file is exactly want (len bytes). */
static void assert_eml(const struct fixture *f, uint64_t n, const void *want, size_t len)
{
    size_t got_len = 0;
    uint8_t *got = read_eml(f, n, &got_len);
    if (!got) fail_msg("no file for message %llu", (unsigned long long)n);
    if (got_len != len || memcmp(got, want, len) != 0) {
        show("want", want, len);
        show("got", got, got_len);
        free(got);
        fail_msg("message %llu's file differs", (unsigned long long)n);
    }
    free(got);
}

#define ASSERT_EML(f, n, s) assert_eml((f), (n), (s), sizeof(s) - 1)

static void assert_no_eml(const struct fixture *f, uint64_t n)
{
    size_t len;
    uint8_t *got = read_eml(f, n, &len);
    if (got) {
        show("unexpected file", got, len);
        free(got);
        fail_msg("message %llu has a file", (unsigned long long)n);
    }
}

/* ---- a message with its envelope ------------------------------------------------------- */

#define BODY1 "Subject: hi\r\n\r\n.leading dot, unstuffed\r\n8-bit: \xc3\xa9\xff\r\nend\r\n"

static void test_a_message_gets_the_envelope_headers_then_its_body_exactly(void **state)
{
    struct fixture *f = *state;
    start4(f, "192.0.2.1", 40001);
    body(f, 1, LIT("Subject: hi\r\n\r\n.leading dot, "));
    body(f, 1, LIT("unstuffed\r\n8-bit: \xc3\xa9\xff\r\nend\r\n"));
    message(f, 1);
    assert_no_eml(f, 1); /* not before the server's reply */
    delivery(f, 1, "250 2.0.0 Ok: queued as ABC\r\n", "client.example",
             "MAIL FROM:<a@example.org> SIZE=62 BODY=8BITMIME", "RCPT TO:<b@example.net>",
             "RCPT TO:<c@example.net> NOTIFY=NEVER", NULL);
    ASSERT_EML(f, 1,
               "X-Smtptap-Client: 192.0.2.1:40001\r\n"
               "X-Smtptap-Helo: client.example\r\n"
               "X-Smtptap-Mail-From: <a@example.org> SIZE=62 BODY=8BITMIME\r\n"
               "X-Smtptap-Rcpt-To: <b@example.net>\r\n"
               "X-Smtptap-Rcpt-To: <c@example.net> NOTIFY=NEVER\r\n"
               "X-Smtptap-Reply: 250 2.0.0 Ok: queued as ABC\r\n"
               "X-Smtptap-Session: 7\r\n" BODY1);
}

static void test_the_file_is_0600(void **state)
{
    struct fixture *f = *state;
    body(f, 1, LIT("x\r\n"));
    message(f, 1);
    delivery(f, 1, "250 ok\r\n", "h", "MAIL FROM:<>", "RCPT TO:<r@x>", NULL);
    char path[256];
    eml_path(f, 1, path, sizeof path);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
}

static void test_a_multiline_reply_is_joined_with_slashes(void **state)
{
    struct fixture *f = *state;
    start4(f, "127.0.0.1", 5000);
    body(f, 1, LIT("x\r\n"));
    message(f, 1);
    delivery(f, 1, "550-5.7.1 first\r\n550-second\r\n550 5.7.1 third\r\n", "h", "MAIL FROM:<>",
             "RCPT TO:<r@x>", NULL);
    ASSERT_EML(f, 1,
               "X-Smtptap-Client: 127.0.0.1:5000\r\n"
               "X-Smtptap-Helo: h\r\n"
               "X-Smtptap-Mail-From: <>\r\n"
               "X-Smtptap-Rcpt-To: <r@x>\r\n"
               "X-Smtptap-Reply: 550-5.7.1 first / 550-second / 550 5.7.1 third\r\n"
               "X-Smtptap-Session: 7\r\n"
               "x\r\n");
}

static void test_an_ipv6_client_is_bracketed(void **state)
{
    struct fixture *f = *state;
    start6(f, "2001:db8::1", 587);
    message(f, 1); /* an empty message: headers only */
    delivery(f, 1, "250 ok\r\n", "h", "MAIL FROM:<>", "RCPT TO:<r@x>", NULL);
    ASSERT_EML(f, 1,
               "X-Smtptap-Client: [2001:db8::1]:587\r\n"
               "X-Smtptap-Helo: h\r\n"
               "X-Smtptap-Mail-From: <>\r\n"
               "X-Smtptap-Rcpt-To: <r@x>\r\n"
               "X-Smtptap-Reply: 250 ok\r\n"
               "X-Smtptap-Session: 7\r\n");
}

static void
test_the_verb_is_matched_in_any_case_and_blanks_after_the_colon_are_skipped(void **state)
{
    struct fixture *f = *state;
    body(f, 1, LIT("x\r\n"));
    message(f, 1);
    delivery(f, 1, "250 ok", "h", "mail from: <a@b>", "Rcpt To:\t<c@d>", "RCPT <odd>", NULL);
    ASSERT_EML(f, 1,
               "X-Smtptap-Helo: h\r\n"
               "X-Smtptap-Mail-From: <a@b>\r\n"
               "X-Smtptap-Rcpt-To: <c@d>\r\n"
               "X-Smtptap-Rcpt-To: RCPT <odd>\r\n" /* no "RCPT TO:": the line as it is */
               "X-Smtptap-Reply: 250 ok\r\n"
               "X-Smtptap-Session: 7\r\n"
               "x\r\n");
}

static void test_an_empty_helo_and_mail_are_empty_headers(void **state)
{
    struct fixture *f = *state;
    body(f, 1, LIT("x\r\n"));
    message(f, 1);
    delivery(f, 1, "250 ok\r\n", "", "", NULL);
    ASSERT_EML(f, 1,
               "X-Smtptap-Helo: \r\n"
               "X-Smtptap-Mail-From: \r\n"
               "X-Smtptap-Reply: 250 ok\r\n"
               "X-Smtptap-Session: 7\r\n"
               "x\r\n");
}

/* ---- raw mode ----------------------------------------------------------------------------- */

static void test_raw_is_the_body_byte_for_byte_and_nothing_else(void **state)
{
    struct fixture *f = *state;
    start4(f, "192.0.2.1", 40001);
    static const uint8_t all[] = "..\r\n.\r\nNUL \0 CR \r LF \n 8bit \x80\xfe\xff\r\n\r\n";
    body(f, 1, all, 10);
    body(f, 1, all + 10, sizeof all - 1 - 10);
    message(f, 1);
    delivery(f, 1, "250 ok\r\n", "h", "MAIL FROM:<a@b>", "RCPT TO:<c@d>", NULL);
    assert_eml(f, 1, all, sizeof all - 1);
}

static void test_raw_every_byte_value_and_no_final_crlf(void **state)
{
    struct fixture *f = *state;
    uint8_t all[256 * 3];
    for (size_t i = 0; i < sizeof all; i++) all[i] = (uint8_t)(i * 7);
    for (size_t i = 0; i < sizeof all; i += 100)
        body(f, 1, all + i, sizeof all - i < 100 ? sizeof all - i : 100);
    message(f, 1);
    delivery(f, 1, "250 ok\r\n", "h", "MAIL FROM:<a@b>", NULL);
    assert_eml(f, 1, all, sizeof all);
}

static void test_raw_an_empty_message_is_an_empty_file(void **state)
{
    struct fixture *f = *state;
    message(f, 1); /* BDAT 0 LAST: no EV_BODY at all */
    delivery(f, 1, "250 ok\r\n", "h", "MAIL FROM:<a@b>", NULL);
    assert_eml(f, 1, "", 0);
}

/* ---- several messages, pipelining --------------------------------------------------------- */

static void test_each_message_has_its_own_file_and_envelope(void **state)
{
    struct fixture *f = *state;
    body(f, 1, LIT("one\r\n"));
    message(f, 1);
    delivery(f, 1, "250 first\r\n", "h", "MAIL FROM:<a@1>", "RCPT TO:<b@1>", NULL);
    body(f, 2, LIT("two\r\n"));
    message(f, 2);
    delivery(f, 2, "554 no\r\n", "h2", "MAIL FROM:<a@2>", "RCPT TO:<b@2>", NULL);
    ASSERT_EML(f, 1,
               "X-Smtptap-Helo: h\r\nX-Smtptap-Mail-From: <a@1>\r\nX-Smtptap-Rcpt-To: <b@1>\r\n"
               "X-Smtptap-Reply: 250 first\r\nX-Smtptap-Session: 7\r\none\r\n");
    ASSERT_EML(f, 2,
               "X-Smtptap-Helo: h2\r\nX-Smtptap-Mail-From: <a@2>\r\nX-Smtptap-Rcpt-To: <b@2>\r\n"
               "X-Smtptap-Reply: 554 no\r\nX-Smtptap-Session: 7\r\ntwo\r\n");
    assert_int_equal(entries(f), 2);
}

/* BDAT 5 LAST + MAIL + RCPT + BDAT 5 + ... sent at once: message 2's chunks arrive before
 * and after message 1's reply, and both replies come after message 2 ended. */
static void test_interleaved_pipelined_bdat_bodies_pair_with_their_replies_in_order(void **state)
{
    struct fixture *f = *state;
    body(f, 1, LIT("m1a\r\n"));
    body(f, 1, LIT("m1b\r\n"));
    message(f, 1);
    body(f, 2, LIT("m2a\r\n"));
    delivery(f, 1, "250 one\r\n", "h", "MAIL FROM:<a@1>", "RCPT TO:<b@1>", NULL);
    assert_no_eml(f, 2);
    body(f, 2, LIT("m2b\r\n"));
    message(f, 2);
    body(f, 3, LIT("m3\r\n"));
    message(f, 3);
    delivery(f, 2, "250 two\r\n", "h", "MAIL FROM:<a@2>", "RCPT TO:<b@2>", NULL);
    delivery(f, 3, "451 three\r\n", "h", "MAIL FROM:<a@3>", "RCPT TO:<b@3>", NULL);
    ASSERT_EML(f, 1,
               "X-Smtptap-Helo: h\r\nX-Smtptap-Mail-From: <a@1>\r\nX-Smtptap-Rcpt-To: <b@1>\r\n"
               "X-Smtptap-Reply: 250 one\r\nX-Smtptap-Session: 7\r\nm1a\r\nm1b\r\n");
    ASSERT_EML(f, 2,
               "X-Smtptap-Helo: h\r\nX-Smtptap-Mail-From: <a@2>\r\nX-Smtptap-Rcpt-To: <b@2>\r\n"
               "X-Smtptap-Reply: 250 two\r\nX-Smtptap-Session: 7\r\nm2a\r\nm2b\r\n");
    ASSERT_EML(f, 3,
               "X-Smtptap-Helo: h\r\nX-Smtptap-Mail-From: <a@3>\r\nX-Smtptap-Rcpt-To: <b@3>\r\n"
               "X-Smtptap-Reply: 451 three\r\nX-Smtptap-Session: 7\r\nm3\r\n");
}

/* ---- the session ends first --------------------------------------------------------------- */

static void test_a_message_without_a_reply_is_written_at_the_end_with_none(void **state)
{
    struct fixture *f = *state;
    start4(f, "192.0.2.1", 40001);
    body(f, 1, LIT("unanswered\r\n"));
    message(f, 1);
    end(f);
    ASSERT_EML(f, 1,
               "X-Smtptap-Client: 192.0.2.1:40001\r\n"
               "X-Smtptap-Reply: (none: the session ended before the server replied)\r\n"
               "X-Smtptap-Session: 7\r\n"
               "unanswered\r\n");
}

static void test_a_message_without_a_reply_is_written_at_close_without_ev_end(void **state)
{
    struct fixture *f = *state;
    body(f, 1, LIT("answered\r\n"));
    message(f, 1);
    body(f, 2, LIT("unanswered\r\n"));
    message(f, 2);
    delivery(f, 1, "250 ok\r\n", "h", "MAIL FROM:<a@b>", NULL);
    close_writer(f);
    ASSERT_EML(f, 2,
               "X-Smtptap-Reply: (none: the session ended before the server replied)\r\n"
               "X-Smtptap-Session: 7\r\n"
               "unanswered\r\n");
}

static void test_raw_a_message_without_a_reply_is_still_its_body(void **state)
{
    struct fixture *f = *state;
    body(f, 1, LIT("unanswered\r\n"));
    message(f, 1);
    end(f);
    ASSERT_EML(f, 1, "unanswered\r\n");
}

static void test_a_body_cut_short_is_not_written(void **state)
{
    struct fixture *f = *state;
    body(f, 1, LIT("complete\r\n"));
    message(f, 1);
    delivery(f, 1, "250 ok\r\n", "h", "MAIL FROM:<a@b>", NULL);
    body(f, 2, LIT("the client went away in the mid"));
    end(f);
    close_writer(f);
    assert_no_eml(f, 2);
    assert_int_equal(entries(f), 1);
}

static void test_a_body_cut_short_by_a_new_message_is_dropped(void **state)
{
    struct fixture *f = *state;
    body(f, 1, LIT("never ended"));
    body(f, 2, LIT("two\r\n"));
    message(f, 2);
    delivery(f, 2, "250 ok\r\n", "h", "MAIL FROM:<a@b>", NULL);
    assert_no_eml(f, 1);
    ASSERT_EML(f, 2, "two\r\n");
}

/* ---- hostile header values ---------------------------------------------------------------- */

/* Every line of the header block (before the body) is printable ASCII, CRLF-ended, at most
 * 998 octets, and is a header or a continuation. Returns the block's length. */
static size_t assert_valid_header_block(const uint8_t *s, size_t n, size_t body_len)
{
    assert_true(n >= body_len);
    size_t hdr = n - body_len, i = 0;
    while (i < hdr) {
        const uint8_t *crlf = NULL;
        for (size_t j = i; j + 1 < hdr + 1 && j + 1 < n; j++)
            if (s[j] == '\r' && s[j + 1] == '\n') {
                crlf = s + j;
                break;
            }
        assert_non_null(crlf);
        size_t len = (size_t)(crlf - (s + i));
        if (len > 998) fail_msg("a header line of %zu octets", len);
        for (size_t j = i; j < i + len; j++)
            if (s[j] < 0x20 || s[j] >= 0x7f) fail_msg("byte 0x%02X in the header block", s[j]);
        bool continuation = s[i] == ' ';
        bool field = memcmp(s + i, "X-Smtptap-", 10) == 0 && memchr(s + i, ':', len);
        if (!continuation && !field) fail_msg("line at %zu is neither a field nor folded", i);
        i += len + 2;
    }
    assert_int_equal(i, hdr);
    return hdr;
}

static void test_control_and_8bit_bytes_in_header_values_are_escaped(void **state)
{
    struct fixture *f = *state;
    body(f, 1, LIT("Subject: real\r\n\r\nx\r\n"));
    message(f, 1);
    delivery(f, 1, "250 ok\x1b[31m\r\r\n\x00\xff\t\r\n", "h\r\nBcc: evil@x",
             "MAIL FROM:<a@b>\r\nX-Injected: 1", "RCPT TO:<c@d>\n\nbody", "RCPT TO:<\xc3\xa9@x>",
             NULL);
    ASSERT_EML(f, 1,
               "X-Smtptap-Helo: h\\x0D\\x0ABcc: evil@x\r\n"
               "X-Smtptap-Mail-From: <a@b>\\x0D\\x0AX-Injected: 1\r\n"
               "X-Smtptap-Rcpt-To: <c@d>\\x0A\\x0Abody\r\n"
               "X-Smtptap-Rcpt-To: <\\xC3\\xA9@x>\r\n"
               "X-Smtptap-Reply: 250 ok\\x1B[31m\\x0D\r\n" /* one CR of CR CR LF ends the line */
               "X-Smtptap-Session: 7\r\n"
               "Subject: real\r\n\r\nx\r\n");
}

static void test_nul_bytes_in_the_reply_are_escaped(void **state)
{
    struct fixture *f = *state;
    body(f, 1, LIT("x\r\n"));
    message(f, 1);
    static const uint8_t reply[] = "250 a\0b\xff\r\n250 c\r\n";
    const char *none[] = {NULL};
    union event_facts facts = {.delivery = {.message = 1,
                                            .helo = NULL,
                                            .mail_from = NULL,
                                            .rcpts = none,
                                            .nrcpts = 1, /* a NULL entry: skipped */
                                            .reply = reply,
                                            .reply_len = sizeof reply - 1,
                                            .code = 250}};
    feed(f, EV_DELIVERY, NULL, 0, &facts);
    ASSERT_EML(f, 1,
               "X-Smtptap-Reply: 250 a\\x00b\\xFF / 250 c\r\n"
               "X-Smtptap-Session: 7\r\n"
               "x\r\n");
}

static void test_long_values_are_folded_at_spaces_and_unfold_to_the_value(void **state)
{
    struct fixture *f = *state;
    body(f, 1, LIT("x\r\n"));
    message(f, 1);
    char reply[40 * 40] = "";
    for (int i = 0; i < 40; i++)
        strcat(reply, i < 39 ? "250-a line of the reply abcdef\r\n" : "250 end\r\n");
    char mail[3000];
    strcpy(mail, "MAIL FROM:<a@b>");
    for (int i = 0; i < 200; i++) strcat(mail, " X=0123456789");
    delivery(f, 1, reply, "h", mail, NULL);
    size_t n;
    uint8_t *got = read_eml(f, 1, &n);
    assert_non_null(got);
    size_t hdr = assert_valid_header_block(got, n, 3);
    /* unfolded: CRLF before a space removed */
    char *unfolded = malloc(hdr + 1);
    size_t u = 0;
    for (size_t i = 0; i < hdr; i++) {
        if (got[i] == '\r' && got[i + 1] == '\n' && i + 2 < hdr && got[i + 2] == ' ') {
            i++;
            continue;
        }
        unfolded[u++] = (char)got[i];
    }
    unfolded[u] = 0;
    char want_mail[3100];
    snprintf(want_mail, sizeof want_mail, "X-Smtptap-Mail-From: %s\r\n", mail + 10);
    assert_non_null(strstr(unfolded, want_mail));
    assert_non_null(strstr(unfolded, "X-Smtptap-Reply: 250-a line of the reply abcdef / 250-a"));
    assert_non_null(strstr(unfolded, "abcdef / 250 end\r\nX-Smtptap-Session: 7\r\n"));
    assert_memory_equal(got + hdr, "x\r\n", 3);
    free(unfolded);
    free(got);
}

static void test_a_long_value_without_spaces_is_broken_hard_but_stays_valid(void **state)
{
    struct fixture *f = *state;
    body(f, 1, LIT("x\r\n"));
    message(f, 1);
    char helo[5000];
    memset(helo, 'h', sizeof helo - 1);
    helo[sizeof helo - 1] = 0;
    char mail[2100] = "MAIL FROM:<";
    memset(mail + 11, '\x01', 2000); /* each byte becomes \x01: 8000 octets */
    strcpy(mail + 2011, ">");
    delivery(f, 1, "250 ok\r\n", helo, mail, NULL);
    size_t n;
    uint8_t *got = read_eml(f, 1, &n);
    assert_non_null(got);
    assert_valid_header_block(got, n, 3);
    /* each break is CRLF SP inserted between two escapes, never inside one */
    const char *line = strstr((const char *)got, "X-Smtptap-Mail-From: <") + 22;
    int continuations = 0;
    for (;;) {
        while (memcmp(line, "\\x01", 4) == 0) line += 4;
        if (*line == '>') line++;
        assert_memory_equal(line, "\r\n", 2);
        if (line[2] != ' ') break;
        line += 3, continuations++;
    }
    assert_true(continuations >= 8);
    char *joined = calloc(1, n + 1);
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        if (i + 2 < n && memcmp(got + i, "\r\n ", 3) == 0) {
            i += 2;
            continue;
        }
        joined[j++] = (char)got[i];
    }
    char want[8100] = "X-Smtptap-Mail-From: <";
    for (int i = 0; i < 2000; i++) strcat(want, "\\x01");
    strcat(want, ">\r\n");
    assert_non_null(strstr(joined, want));
    char *h = strstr(joined, "X-Smtptap-Helo: ");
    assert_non_null(h);
    assert_int_equal(strspn(h + 16, "h"), 4999);
    free(joined);
    free(got);
}

/* ---- large bodies leave memory ------------------------------------------------------------ */

/* Whether this process holds an open, deleted file in dir (the spilled body). */
static bool holds_deleted_file_in(const char *dir)
{
    DIR *d = opendir("/proc/self/fd");
    assert_non_null(d);
    bool found = false;
    for (struct dirent *e; (e = readdir(d)) && !found;) {
        char link[300], target[512];
        snprintf(link, sizeof link, "/proc/self/fd/%s", e->d_name);
        ssize_t k = readlink(link, target, sizeof target - 1);
        if (k <= 0) continue;
        target[k] = 0;
        found = strncmp(target, dir, strlen(dir)) == 0 && strstr(target, "(deleted)");
    }
    closedir(d);
    return found;
}

static uint8_t *pattern(size_t n)
{
    uint8_t *p = malloc(n);
    assert_non_null(p);
    for (size_t i = 0; i < n; i++) p[i] = (uint8_t)((i * 131) ^ (i >> 13));
    return p;
}

static void test_a_large_body_moves_to_an_unnamed_file_and_comes_back_exactly(void **state)
{
    struct fixture *f = *state;
    size_t n = 20u << 20, chunk = 65536;
    uint8_t *big = pattern(n);
    for (size_t i = 0; i < n; i += chunk) body(f, 1, big + i, chunk);
    assert_true(holds_deleted_file_in(f->dir)); /* past 8 MiB: on disk, not in RAM */
    assert_int_equal(entries(f), 0);            /* and nothing named left in the directory */
    message(f, 1);
    delivery(f, 1, "250 ok\r\n", "h", "MAIL FROM:<a@b>", NULL);
    assert_false(holds_deleted_file_in(f->dir));
    assert_int_equal(entries(f), 1);
    assert_eml(f, 1, big, n);
    free(big);
}

/* EV_BODY comes a line at a time: a spilled body is written in pieces, in order. */
static void test_a_large_body_in_line_sized_events_comes_back_exactly(void **state)
{
    struct fixture *f = *state;
    size_t n = 12u << 20;
    uint8_t *big = pattern(n);
    for (size_t i = 0, k = 1; i < n; i += k, k = k % 1500 + 1)
        body(f, 1, big + i, n - i < k ? n - i : k);
    message(f, 1);
    body(f, 2, LIT("next\r\n")); /* the next message is in memory again */
    message(f, 2);
    delivery(f, 1, "250 ok\r\n", "h", "MAIL FROM:<a@b>", NULL);
    delivery(f, 2, "250 ok\r\n", "h", "MAIL FROM:<a@b>", NULL);
    assert_eml(f, 1, big, n);
    ASSERT_EML(f, 2, "next\r\n");
    free(big);
}

static void test_a_large_body_keeps_its_headers(void **state)
{
    struct fixture *f = *state;
    size_t n = 9u << 20;
    uint8_t *big = pattern(n);
    body(f, 1, big, n); /* one event larger than the limit */
    message(f, 1);
    delivery(f, 1, "250 ok\r\n", "h", "MAIL FROM:<a@b>", NULL);
    static const char hdr[] = "X-Smtptap-Helo: h\r\nX-Smtptap-Mail-From: <a@b>\r\n"
                              "X-Smtptap-Reply: 250 ok\r\nX-Smtptap-Session: 7\r\n";
    size_t len;
    uint8_t *got = read_eml(f, 1, &len);
    assert_non_null(got);
    assert_int_equal(len, sizeof hdr - 1 + n);
    assert_memory_equal(got, hdr, sizeof hdr - 1);
    assert_true(memcmp(got + sizeof hdr - 1, big, n) == 0);
    free(got);
    free(big);
}

/* Pipelined bodies waiting for replies share the memory limit: the later ones spill. */
static void test_waiting_bodies_share_the_memory_limit(void **state)
{
    struct fixture *f = *state;
    size_t n = 3u << 20;
    uint8_t *big = pattern(n);
    for (uint64_t m = 1; m <= 5; m++) {
        big[0] = (uint8_t)('0' + m);
        body(f, m, big, n);
        message(f, m);
    }
    assert_true(holds_deleted_file_in(f->dir));
    for (uint64_t m = 1; m <= 5; m++) delivery(f, m, "250 ok\r\n", "h", "MAIL FROM:<a@b>", NULL);
    for (uint64_t m = 1; m <= 5; m++) {
        big[0] = (uint8_t)('0' + m);
        assert_eml(f, m, big, n);
    }
    assert_false(holds_deleted_file_in(f->dir));
    free(big);
}

static void test_a_spilled_body_cut_short_leaves_nothing(void **state)
{
    struct fixture *f = *state;
    size_t n = 9u << 20;
    uint8_t *big = pattern(n);
    body(f, 1, big, n);
    assert_true(holds_deleted_file_in(f->dir));
    end(f);
    assert_false(holds_deleted_file_in(f->dir));
    assert_int_equal(entries(f), 0);
    free(big);
}

/* ---- odd event sequences never crash ------------------------------------------------------ */

static void test_a_delivery_without_a_body_writes_nothing(void **state)
{
    struct fixture *f = *state;
    delivery(f, 1, "250 ok\r\n", "h", "MAIL FROM:<a@b>", NULL);
    body(f, 1, LIT("open"));
    delivery(f, 1, "250 ok\r\n", "h", "MAIL FROM:<a@b>", NULL); /* before its EV_MESSAGE */
    close_writer(f);
    assert_int_equal(entries(f), 0);
}

static void test_events_without_facts_are_tolerated(void **state)
{
    struct fixture *f = *state;
    feed(f, EV_START, NULL, 0, NULL);
    feed(f, EV_BODY, LIT("no facts\r\n"), NULL);
    feed(f, EV_BODY, NULL, 0, NULL);
    feed(f, EV_MESSAGE, NULL, 0, NULL);
    feed(f, EV_DELIVERY, NULL, 0, NULL); /* no envelope: as if there were no reply */
    feed(f, EV_END, NULL, 0, NULL);
    ASSERT_EML(f, 1,
               "X-Smtptap-Reply: (none: the session ended before the server replied)\r\n"
               "X-Smtptap-Session: 7\r\n"
               "no facts\r\n");
}

static void test_other_kinds_and_events_after_the_end_are_harmless(void **state)
{
    struct fixture *f = *state;
    static const enum event_kind kinds[] = {EV_INFO, EV_COMMAND,  EV_REPLY, EV_CONTENT,
                                            EV_RAW,  EV_LINT,     EV_ERROR, EV_FAULT,
                                            EV_AUTH, EV_UPSTREAM, EV_WIRE,  EV_CLIENT_TLS};
    union event_facts junk;
    memset(&junk, 0xa5, sizeof junk);
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        feed(f, kinds[i], LIT("\0\xff"), NULL);
        feed(f, kinds[i], LIT("\0\xff"), &junk); /* facts of another kind are never read */
    }
    end(f);
    end(f);
    body(f, 1, LIT("late\r\n"));
    message(f, 1);
    close_writer(f); /* written then, with no reply */
    ASSERT_EML(f, 1,
               "X-Smtptap-Reply: (none: the session ended before the server replied)\r\n"
               "X-Smtptap-Session: 7\r\nlate\r\n");
}

static void test_a_number_seen_twice_does_not_overwrite_the_first_file(void **state)
{
    struct fixture *f = *state;
    body(f, 1, LIT("first\r\n"));
    message(f, 1);
    delivery(f, 1, "250 ok\r\n", "h", "MAIL FROM:<a@b>", NULL);
    body(f, 1, LIT("second\r\n"));
    message(f, 1);
    delivery(f, 1, "250 ok\r\n", "h", "MAIL FROM:<a@b>", NULL);
    ASSERT_EML(f, 1, "first\r\n");
    char path[256];
    snprintf(path, sizeof path, "%s-1-2.eml", f->prefix);
    assert_int_equal(access(path, F_OK), 0);
}

static void test_the_writer_does_not_keep_the_events_bytes(void **state)
{
    struct fixture *f = *state;
    uint8_t *bytes = malloc(6);
    memcpy(bytes, "hello\n", 6);
    body(f, 1, bytes, 6);
    memset(bytes, 'X', 6);
    free(bytes);
    char *helo = strdup("name");
    message(f, 1);
    delivery(f, 1, "250 ok\r\n", helo, "MAIL FROM:<a@b>", NULL);
    free(helo);
    ASSERT_EML(f, 1,
               "X-Smtptap-Helo: name\r\nX-Smtptap-Mail-From: <a@b>\r\n"
               "X-Smtptap-Reply: 250 ok\r\nX-Smtptap-Session: 7\r\nhello\n");
}

static void test_a_directory_that_is_gone_loses_the_message_but_not_the_process(void **state)
{
    struct fixture *f = *state;
    body(f, 1, LIT("x\r\n"));
    message(f, 1);
    assert_int_equal(rmdir(f->dir), 0);
    delivery(f, 1, "250 ok\r\n", "h", "MAIL FROM:<a@b>", NULL); /* a warning on stderr */
    size_t n = 9u << 20;
    uint8_t *big = pattern(n);
    body(f, 2, big, n); /* cannot spill: dropped */
    message(f, 2);
    delivery(f, 2, "250 ok\r\n", "h", "MAIL FROM:<a@b>", NULL);
    free(big);
    assert_int_equal(mkdir(f->dir, 0700), 0); /* for the teardown */
}

int main(void)
{
#define T(name)     cmocka_unit_test_setup_teardown(name, setup, teardown)
#define T_RAW(name) cmocka_unit_test_setup_teardown(name, setup_raw, teardown)
    const struct CMUnitTest tests[] = {
        T(test_a_message_gets_the_envelope_headers_then_its_body_exactly),
        T(test_the_file_is_0600),
        T(test_a_multiline_reply_is_joined_with_slashes),
        T(test_an_ipv6_client_is_bracketed),
        T(test_the_verb_is_matched_in_any_case_and_blanks_after_the_colon_are_skipped),
        T(test_an_empty_helo_and_mail_are_empty_headers),

        T_RAW(test_raw_is_the_body_byte_for_byte_and_nothing_else),
        T_RAW(test_raw_every_byte_value_and_no_final_crlf),
        T_RAW(test_raw_an_empty_message_is_an_empty_file),

        T(test_each_message_has_its_own_file_and_envelope),
        T(test_interleaved_pipelined_bdat_bodies_pair_with_their_replies_in_order),

        T(test_a_message_without_a_reply_is_written_at_the_end_with_none),
        T(test_a_message_without_a_reply_is_written_at_close_without_ev_end),
        T_RAW(test_raw_a_message_without_a_reply_is_still_its_body),
        T(test_a_body_cut_short_is_not_written),
        T_RAW(test_a_body_cut_short_by_a_new_message_is_dropped),

        T(test_control_and_8bit_bytes_in_header_values_are_escaped),
        T(test_nul_bytes_in_the_reply_are_escaped),
        T(test_long_values_are_folded_at_spaces_and_unfold_to_the_value),
        T(test_a_long_value_without_spaces_is_broken_hard_but_stays_valid),

        T_RAW(test_a_large_body_moves_to_an_unnamed_file_and_comes_back_exactly),
        T_RAW(test_a_large_body_in_line_sized_events_comes_back_exactly),
        T(test_a_large_body_keeps_its_headers),
        T_RAW(test_waiting_bodies_share_the_memory_limit),
        T(test_a_spilled_body_cut_short_leaves_nothing),

        T(test_a_delivery_without_a_body_writes_nothing),
        T(test_events_without_facts_are_tolerated),
        T(test_other_kinds_and_events_after_the_end_are_harmless),
        T_RAW(test_a_number_seen_twice_does_not_overwrite_the_first_file),
        T(test_the_writer_does_not_keep_the_events_bytes),
        T(test_a_directory_that_is_gone_loses_the_message_but_not_the_process),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
