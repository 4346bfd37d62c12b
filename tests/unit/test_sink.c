/* test_sink.c - unit tests for the built-in server's protocol (sink_smtp.h).
 *
 * The sink is pure: each test plays a client by feeding bytes and reads back the exact
 * reply bytes the sink queued in s->out, as a mail client on the wire would see them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtptap/sink_smtp.h"

#define HOST    "mx.test"
#define SESSION 7

static const char GREETING[] = "220 mx.test ESMTP smtptap sink\r\n";
static const char EHLO_REPLY[] = "250-mx.test\r\n"
                                 "250-PIPELINING\r\n"
                                 "250-SIZE 104857600\r\n"
                                 "250-8BITMIME\r\n"
                                 "250-SMTPUTF8\r\n"
                                 "250-ENHANCEDSTATUSCODES\r\n"
                                 "250-CHUNKING\r\n"
                                 "250 AUTH PLAIN LOGIN CRAM-MD5 XOAUTH2\r\n";
static const char OK_250[] = "250 2.0.0 Ok\r\n";
static const char MAIL_OK[] = "250 2.1.0 Ok\r\n";
static const char RCPT_OK[] = "250 2.1.5 Ok\r\n";
static const char GO_AHEAD[] = "354 End data with <CR><LF>.<CR><LF>\r\n";
static const char AUTH_OK[] = "235 2.7.0 Authentication successful\r\n";
static const char BYE[] = "221 2.0.0 Bye\r\n";

/* ---- helpers ------------------------------------------------------------------------------ */
static const struct sink_users no_users; /* empty: the sink accepts any credentials */

static int sink_setup(void **state)
{
    struct sink_smtp *s = malloc(sizeof *s);
    if (!s) return -1;
    sink_smtp_init(s, HOST, SESSION, &no_users);
    *state = s;
    return 0;
}

static int sink_teardown(void **state)
{
    sink_smtp_free(*state);
    free(*state);
    return 0;
}

/* Takes everything the sink has queued as a NUL-terminated string (static storage). */
static const char *take(struct sink_smtp *s)
{
    static char out[65536];
    size_t n = buf_size(&s->out);
    assert_true(n < sizeof out);
    if (n) memcpy(out, buf_head(&s->out), n);
    out[n] = 0;
    buf_consume(&s->out, n);
    return out;
}

static void send_bytes(struct sink_smtp *s, const void *bytes, size_t len)
{
    sink_smtp_input(s, bytes, len);
}

static void send_str(struct sink_smtp *s, const char *text)
{
    send_bytes(s, text, strlen(text));
}

/* Sends one client write and asserts the exact replies it produced. */
static void expect(struct sink_smtp *s, const char *client, const char *replies)
{
    send_str(s, client);
    const char *got = take(s);
    if (strcmp(got, replies) != 0)
        fail_msg("after \"%s\":\n got: \"%s\"\nwant: \"%s\"", client, got, replies);
}

/* Greeting, EHLO, MAIL and one RCPT: a transaction ready for DATA or BDAT. */
static void open_transaction(struct sink_smtp *s)
{
    assert_string_equal(take(s), GREETING);
    expect(s, "EHLO client.example\r\n", EHLO_REPLY);
    expect(s, "MAIL FROM:<alice@example.org>\r\n", MAIL_OK);
    expect(s, "RCPT TO:<bob@example.net>\r\n", RCPT_OK);
}

static void greet(struct sink_smtp *s)
{
    assert_string_equal(take(s), GREETING);
    expect(s, "EHLO client.example\r\n", EHLO_REPLY);
}

/* ---- a whole session ------------------------------------------------------------------------ */

static void sink_greets_with_its_host_name(void **state)
{
    struct sink_smtp *s = *state;
    assert_string_equal(take(s), GREETING);
    assert_false(s->quit);
}

static void ehlo_advertises_every_extension(void **state)
{
    struct sink_smtp *s = *state;
    assert_string_equal(take(s), GREETING);
    expect(s, "EHLO client.example\r\n", EHLO_REPLY);
    assert_true(s->greeted);
}

static void helo_gets_a_one_line_reply(void **state)
{
    struct sink_smtp *s = *state;
    assert_string_equal(take(s), GREETING);
    expect(s, "HELO client.example\r\n", "250 mx.test\r\n");
    expect(s, "MAIL FROM:<a@example.org>\r\n", MAIL_OK);
}

static void whole_session_delivers_one_message_and_quits(void **state)
{
    struct sink_smtp *s = *state;
    open_transaction(s);
    expect(s, "RCPT TO:<carol@example.net>\r\n", RCPT_OK);
    expect(s, "DATA\r\n", GO_AHEAD);
    expect(s, "Subject: t\r\n\r\nhi\r\n.\r\n", "250 2.0.0 Ok: queued as S7M1\r\n");
    assert_int_equal(s->messages, 1);
    assert_false(s->in_mail);
    expect(s, "QUIT\r\n", BYE);
    assert_true(s->quit);
}

static void message_content_may_arrive_in_many_pieces(void **state)
{
    struct sink_smtp *s = *state;
    open_transaction(s);
    expect(s, "DATA\r\n", GO_AHEAD);
    static const char content[] = "Subject: pieces\r\n\r\nQUIT\r\nRSET\r\n.\r\n";
    /* Everything but the last byte: no reply yet, whatever the content looks like. */
    for (size_t i = 0; i + 1 < sizeof content - 1; i++) {
        send_bytes(s, content + i, 1);
        assert_string_equal(take(s), "");
    }
    expect(s, "\n", "250 2.0.0 Ok: queued as S7M1\r\n");
    assert_false(s->quit);
}

static void second_message_in_the_same_session_gets_the_next_queue_id(void **state)
{
    struct sink_smtp *s = *state;
    open_transaction(s);
    expect(s, "DATA\r\n", GO_AHEAD);
    expect(s, "one\r\n.\r\n", "250 2.0.0 Ok: queued as S7M1\r\n");
    expect(s, "MAIL FROM:<>\r\n", MAIL_OK);
    expect(s, "RCPT TO:<postmaster@example.net>\r\n", RCPT_OK);
    expect(s, "DATA\r\n", GO_AHEAD);
    expect(s, "second\r\n.\r\n", "250 2.0.0 Ok: queued as S7M2\r\n");
    assert_int_equal(s->messages, 2);
}

static void input_after_quit_is_ignored(void **state)
{
    struct sink_smtp *s = *state;
    greet(s);
    expect(s, "QUIT\r\nNOOP\r\nMAIL FROM:<a@b>\r\n", BYE);
    expect(s, "NOOP\r\n", "");
    assert_true(s->quit);
}

static void simple_commands_get_their_replies(void **state)
{
    struct sink_smtp *s = *state;
    greet(s);
    expect(s, "NOOP\r\n", OK_250);
    expect(s, "VRFY bob\r\n", "252 2.0.0 Cannot VRFY user, but will accept message\r\n");
    expect(s, "EXPN staff\r\n", "502 5.5.1 EXPN not available\r\n");
    expect(s, "HELP\r\n", "214 2.0.0 smtptap sink: see https://www.rfc-editor.org/rfc/rfc5321\r\n");
    expect(s, "XYZZY plugh\r\n", "500 5.5.2 Error: command not recognized\r\n");
    expect(s, "noop\r\n", OK_250);
}

/* ---- pipelining -------------------------------------------------------------------------------
 */

static void pipelined_burst_in_one_write_is_answered_in_order(void **state)
{
    struct sink_smtp *s = *state;
    assert_string_equal(take(s), GREETING);
    static const char burst[] = "EHLO client.example\r\n"
                                "MAIL FROM:<alice@example.org>\r\n"
                                "RCPT TO:<bob@example.net>\r\n"
                                "RCPT TO:<carol@example.net>\r\n"
                                "DATA\r\n"
                                "Subject: burst\r\n"
                                "\r\n"
                                "body\r\n"
                                ".\r\n"
                                "MAIL FROM:<>\r\n"
                                "RSET\r\n"
                                "NOOP\r\n"
                                "QUIT\r\n";
    char want[2048];
    snprintf(want, sizeof want, "%s%s%s%s%s%s%s%s%s%s", EHLO_REPLY, MAIL_OK, RCPT_OK, RCPT_OK,
             GO_AHEAD, "250 2.0.0 Ok: queued as S7M1\r\n", MAIL_OK, OK_250, OK_250, BYE);
    expect(s, burst, want);
    assert_true(s->quit);
    assert_int_equal(s->messages, 1);
}

static void refused_data_in_a_burst_leaves_the_next_line_a_command(void **state)
{
    struct sink_smtp *s = *state;
    greet(s);
    /* No RCPT: DATA is refused, so "NOOP" that follows is a command, not content. */
    expect(s, "MAIL FROM:<a@example.org>\r\nDATA\r\nNOOP\r\n",
           "250 2.1.0 Ok\r\n554 5.5.1 Error: no valid recipients\r\n250 2.0.0 Ok\r\n");
}

/* ---- out of order ------------------------------------------------------------------------------
 */

static void mail_before_ehlo_is_refused(void **state)
{
    struct sink_smtp *s = *state;
    assert_string_equal(take(s), GREETING);
    expect(s, "MAIL FROM:<a@example.org>\r\n", "503 5.5.1 Error: send HELO/EHLO first\r\n");
    assert_false(s->in_mail);
}

static void rcpt_and_data_before_mail_are_refused(void **state)
{
    struct sink_smtp *s = *state;
    greet(s);
    expect(s, "RCPT TO:<b@example.net>\r\n", "503 5.5.1 Error: need MAIL command\r\n");
    expect(s, "DATA\r\n", "503 5.5.1 Error: need MAIL command\r\n");
    expect(s, "NOOP\r\n", OK_250);
}

static void nested_mail_is_refused(void **state)
{
    struct sink_smtp *s = *state;
    greet(s);
    expect(s, "MAIL FROM:<a@example.org>\r\n", MAIL_OK);
    expect(s, "MAIL FROM:<b@example.org>\r\n", "503 5.5.1 Error: nested MAIL command\r\n");
}

static void rset_ends_the_transaction(void **state)
{
    struct sink_smtp *s = *state;
    open_transaction(s);
    expect(s, "RSET\r\n", OK_250);
    expect(s, "RCPT TO:<b@example.net>\r\n", "503 5.5.1 Error: need MAIL command\r\n");
}

static void data_with_an_argument_is_a_syntax_error(void **state)
{
    struct sink_smtp *s = *state;
    open_transaction(s);
    expect(s, "DATA now\r\nNOOP\r\n", "501 5.5.4 Syntax: DATA\r\n250 2.0.0 Ok\r\n");
}

static void mail_and_rcpt_without_from_or_to_are_syntax_errors(void **state)
{
    struct sink_smtp *s = *state;
    greet(s);
    expect(s, "MAIL alice@example.org\r\n", "501 5.5.4 Syntax: MAIL FROM:<address>\r\n");
    expect(s, "MAIL FROM:<a@example.org>\r\n", MAIL_OK);
    expect(s, "RCPT bob@example.net\r\n", "501 5.5.4 Syntax: RCPT TO:<address>\r\n");
}

/* ---- BDAT -------------------------------------------------------------------------------------
 */

static void bdat_chunk_with_command_looking_bytes_is_taken_as_data(void **state)
{
    struct sink_smtp *s = *state;
    open_transaction(s);
    /* 18 octets: "QUIT\r\n" "RSET\r\n" "DATA\r\n". */
    expect(s, "BDAT 18\r\nQUIT\r\nRSET\r\nDATA\r\n", "250 2.0.0 18 octets received\r\n");
    assert_false(s->quit);
    assert_true(s->in_mail);
    /* 6 octets: ".\r\n" and "X\r\n": no terminator in BDAT. */
    expect(s, "BDAT 6 LAST\r\n.\r\nX\r\n", "250 2.0.0 Ok: queued as S7M1\r\n");
    assert_false(s->in_mail);
    expect(s, "NOOP\r\n", OK_250);
}

static void bdat_chunk_split_across_writes(void **state)
{
    struct sink_smtp *s = *state;
    open_transaction(s);
    expect(s, "BDAT 10 LAST\r\nNOOP", "");
    expect(s, "\r\nQUI", "");
    expect(s, "TNOOP\r\n", "250 2.0.0 Ok: queued as S7M1\r\n250 2.0.0 Ok\r\n");
}

static void bdat_zero_last_ends_the_message(void **state)
{
    struct sink_smtp *s = *state;
    open_transaction(s);
    expect(s, "BDAT 3\r\nabcBDAT 0 LAST\r\n",
           "250 2.0.0 3 octets received\r\n250 2.0.0 Ok: queued as S7M1\r\n");
    assert_int_equal(s->messages, 1);
}

static void bdat_zero_last_alone_is_an_empty_message(void **state)
{
    struct sink_smtp *s = *state;
    open_transaction(s);
    expect(s, "BDAT 0 LAST\r\n", "250 2.0.0 Ok: queued as S7M1\r\n");
    expect(s, "BDAT 0\r\n", "503 5.5.1 Error: need MAIL and RCPT before BDAT\r\n");
}

static void bdat_zero_without_last_is_acknowledged(void **state)
{
    struct sink_smtp *s = *state;
    open_transaction(s);
    expect(s, "BDAT 0\r\n", "250 2.0.0 0 octets received\r\n");
    expect(s, "BDAT 2 LAST\r\nok", "250 2.0.0 Ok: queued as S7M1\r\n");
}

static void bdat_without_a_transaction_is_refused_but_its_octets_consumed(void **state)
{
    struct sink_smtp *s = *state;
    greet(s);
    expect(s, "BDAT 6\r\nQUIT\r\nNOOP\r\n",
           "503 5.5.1 Error: need MAIL and RCPT before BDAT\r\n250 2.0.0 Ok\r\n");
    assert_false(s->quit);
}

static void data_after_bdat_is_refused(void **state)
{
    struct sink_smtp *s = *state;
    open_transaction(s);
    expect(s, "BDAT 2\r\nhiDATA\r\nNOOP\r\n",
           "250 2.0.0 2 octets received\r\n503 5.5.1 Error: DATA after BDAT\r\n250 2.0.0 Ok\r\n");
}

static void bdat_with_a_bad_size_is_a_syntax_error(void **state)
{
    struct sink_smtp *s = *state;
    open_transaction(s);
    expect(s, "BDAT ten\r\nNOOP\r\n", "501 5.5.4 Syntax: BDAT size [LAST]\r\n250 2.0.0 Ok\r\n");
    expect(s, "BDAT 5 FIRST\r\n", "501 5.5.4 Syntax: BDAT size [LAST]\r\n");
}

/* ---- AUTH -------------------------------------------------------------------------------------
 */

static void auth_plain_with_initial_response_succeeds_at_once(void **state)
{
    struct sink_smtp *s = *state;
    greet(s);
    /* base64("\0alice\0secret") */
    expect(s, "AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n", AUTH_OK);
    assert_true(s->authenticated);
    expect(s, "AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n", "503 5.5.1 Error: already authenticated\r\n");
}

static void auth_plain_without_initial_response_asks_for_it(void **state)
{
    struct sink_smtp *s = *state;
    greet(s);
    expect(s, "AUTH PLAIN\r\n", "334 \r\n");
    assert_false(s->authenticated);
    expect(s, "AGFsaWNlAHNlY3JldA==\r\n", AUTH_OK);
    assert_true(s->authenticated);
    expect(s, "AUTH LOGIN\r\n", "503 5.5.1 Error: already authenticated\r\n");
}

static void auth_plain_with_initial_response_pipelined_with_mail(void **state)
{
    struct sink_smtp *s = *state;
    greet(s);
    /* RFC 4954: a one-round mechanism with an initial response may be pipelined. */
    char want[256];
    snprintf(want, sizeof want, "%s%s", AUTH_OK, MAIL_OK);
    expect(s, "AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\nMAIL FROM:<alice@example.org>\r\n", want);
}

static void auth_plain_initial_response_that_is_not_base64_is_refused(void **state)
{
    struct sink_smtp *s = *state;
    greet(s);
    expect(s, "AUTH PLAIN alice:secret\r\n", "501 5.5.2 Cannot decode response\r\n");
    assert_false(s->authenticated);
    expect(s, "AUTH LOGIN alice\r\n", "501 5.5.2 Cannot decode response\r\n");
    expect(s, "NOOP\r\n", OK_250);
    /* "=" is an empty initial response (RFC 4954), and an empty PLAIN message has no NULs. */
    expect(s, "AUTH PLAIN =\r\n", "501 5.5.2 Malformed PLAIN response\r\n");
}

static void auth_login_asks_for_user_then_password(void **state)
{
    struct sink_smtp *s = *state;
    greet(s);
    expect(s, "AUTH LOGIN\r\n", "334 VXNlcm5hbWU6\r\n"); /* "Username:" */
    expect(s, "YWxpY2U=\r\n", "334 UGFzc3dvcmQ6\r\n");   /* "Password:" */
    assert_false(s->authenticated);
    expect(s, "c2VjcmV0\r\n", AUTH_OK);
    assert_true(s->authenticated);
    expect(s, "NOOP\r\n", OK_250);
}

static void auth_login_with_the_user_name_as_initial_response(void **state)
{
    struct sink_smtp *s = *state;
    greet(s);
    expect(s, "AUTH LOGIN YWxpY2U=\r\n", "334 UGFzc3dvcmQ6\r\n");
    expect(s, "c2VjcmV0\r\n", AUTH_OK);
}

static void cram_md5_challenge_is_base64_of_a_message_id(void **state)
{
    struct sink_smtp *s = *state;
    greet(s);
    send_str(s, "AUTH CRAM-MD5\r\n");
    const char *reply = take(s);
    assert_int_equal(strncmp(reply, "334 ", 4), 0);
    const char *b64 = reply + 4;
    size_t n = strlen(b64);
    assert_true(n > 2 && strcmp(b64 + n - 2, "\r\n") == 0);
    n -= 2;
    assert_int_equal(n % 4, 0);
    unsigned char decoded[256];
    assert_true(n < sizeof decoded);
    int len = EVP_DecodeBlock(decoded, (const unsigned char *)b64, (int)n);
    assert_true(len > 0);
    while (len && decoded[len - 1] == 0) len--; /* EVP_DecodeBlock keeps the padding */
    decoded[len] = 0;
    /* "<7.TIMESTAMP@mx.test>" (RFC 2195: a msg-id). */
    const char *d = (const char *)decoded;
    assert_int_equal(strncmp(d, "<7.", 3), 0);
    const char *at = strchr(d, '@');
    assert_non_null(at);
    assert_string_equal(at, "@mx.test>");
    assert_true(at - d > 3);
    for (const char *p = d + 3; p < at; p++)
        if (*p < '0' || *p > '9') fail_msg("challenge \"%s\": timestamp not numeric", d);
    /* base64("alice 0123456789abcdef0123456789abcdef") */
    expect(s, "YWxpY2UgMDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\r\n", AUTH_OK);
    assert_true(s->authenticated);
}

static void star_cancels_the_exchange(void **state)
{
    struct sink_smtp *s = *state;
    greet(s);
    expect(s, "AUTH LOGIN\r\n", "334 VXNlcm5hbWU6\r\n");
    expect(s, "YWxpY2U=\r\n", "334 UGFzc3dvcmQ6\r\n");
    expect(s, "*\r\n", "501 5.7.0 Authentication cancelled\r\n");
    assert_false(s->authenticated);
    /* Back to commands: "NOOP" is not taken as a SASL line. */
    expect(s, "NOOP\r\n", OK_250);
    expect(s, "AUTH PLAIN\r\n", "334 \r\n");
    expect(s, "*\r\n", "501 5.7.0 Authentication cancelled\r\n");
}

static void invalid_base64_response_is_refused(void **state)
{
    struct sink_smtp *s = *state;
    greet(s);
    expect(s, "AUTH PLAIN\r\n", "334 \r\n");
    expect(s, "not base64!\r\n", "501 5.5.2 Cannot decode response\r\n");
    assert_false(s->authenticated);
    expect(s, "AUTH LOGIN\r\n", "334 VXNlcm5hbWU6\r\n");
    expect(s, "YWxpY2U\r\n", "501 5.5.2 Cannot decode response\r\n"); /* length not 4n */
    expect(s, "NOOP\r\n", OK_250);
}

static void unknown_mechanism_is_refused_and_commands_continue(void **state)
{
    struct sink_smtp *s = *state;
    greet(s);
    expect(s, "AUTH GSSAPI\r\nNOOP\r\n",
           "504 5.5.4 Unrecognized authentication type\r\n250 2.0.0 Ok\r\n");
    expect(s, "AUTH PLAINX AAAA\r\n", "504 5.5.4 Unrecognized authentication type\r\n");
}

static void auth_during_a_transaction_is_refused(void **state)
{
    struct sink_smtp *s = *state;
    greet(s);
    expect(s, "MAIL FROM:<a@example.org>\r\n", MAIL_OK);
    expect(s, "AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n",
           "503 5.5.1 Error: AUTH not allowed during a mail transaction\r\n");
    assert_false(s->authenticated);
}

/* ---- limits and refusals -----------------------------------------------------------------------
 */

static void size_over_the_limit_is_refused(void **state)
{
    struct sink_smtp *s = *state;
    greet(s);
    expect(s, "MAIL FROM:<a@example.org> SIZE=104857601\r\n",
           "552 5.3.4 Message size exceeds fixed limit\r\n");
    assert_false(s->in_mail);
    expect(s, "MAIL FROM:<a@example.org> BODY=8BITMIME SIZE=104857600\r\n", MAIL_OK);
}

/* Sends `mib` MiB of 1000-octet CRLF lines as DATA content, then the terminator. */
static void send_mebibytes(struct sink_smtp *s, unsigned mib)
{
    size_t chunk = 1024 * 1024;
    char *b = malloc(chunk);
    assert_non_null(b);
    memset(b, 'x', chunk);
    for (size_t i = 998; i + 2 <= chunk; i += 1000) memcpy(b + i, "\r\n", 2);
    memcpy(b + chunk - 2, "\r\n", 2); /* the last line is shorter, but ends with CRLF */
    for (unsigned i = 0; i < mib; i++) {
        send_bytes(s, b, chunk);
        assert_int_equal(buf_size(&s->out), 0);
    }
    free(b);
    send_str(s, ".\r\n");
}

static void message_of_exactly_the_size_limit_is_accepted(void **state)
{
    struct sink_smtp *s = *state;
    open_transaction(s);
    expect(s, "DATA\r\n", GO_AHEAD);
    send_mebibytes(s, SINK_MAX_SIZE / (1024 * 1024));
    assert_string_equal(take(s), "250 2.0.0 Ok: queued as S7M1\r\n");
}

static void message_over_the_size_limit_is_refused_after_its_end(void **state)
{
    struct sink_smtp *s = *state;
    open_transaction(s);
    expect(s, "DATA\r\n", GO_AHEAD);
    send_mebibytes(s, SINK_MAX_SIZE / (1024 * 1024) + 1);
    assert_string_equal(take(s), "552 5.3.4 Message size exceeds fixed limit\r\n");
    assert_false(s->in_mail);
    expect(s, "NOOP\r\n", OK_250);
}

static void starttls_is_refused_and_the_session_stays_plain(void **state)
{
    struct sink_smtp *s = *state;
    greet(s);
    expect(s, "STARTTLS\r\nNOOP\r\n",
           "454 4.7.0 TLS not available in the built-in sink\r\n250 2.0.0 Ok\r\n");
}

static void helo_and_ehlo_without_argument_are_syntax_errors(void **state)
{
    struct sink_smtp *s = *state;
    assert_string_equal(take(s), GREETING);
    expect(s, "HELO\r\n", "501 5.5.4 Syntax: HELO hostname\r\n");
    expect(s, "EHLO   \r\n", "501 5.5.4 Syntax: EHLO hostname\r\n");
    assert_false(s->greeted);
}

static void over_long_line_is_refused_once_and_the_session_goes_on(void **state)
{
    struct sink_smtp *s = *state;
    greet(s);
    size_t n = 40000;
    char *line = malloc(n + 3);
    assert_non_null(line);
    memcpy(line, "MAIL FROM:<", 11);
    memset(line + 11, 'a', n - 11);
    memcpy(line + n, "\r\n", 3);
    /* In two writes, each longer than the framer's line bound. */
    send_bytes(s, line, 20000);
    assert_string_equal(take(s), "");
    send_bytes(s, line + 20000, n + 2 - 20000);
    assert_string_equal(take(s), "500 5.5.2 Error: line too long\r\n");
    assert_false(s->in_mail);
    expect(s, "NOOP\r\n", OK_250);
    free(line);
}

static void over_long_sasl_line_ends_the_exchange(void **state)
{
    struct sink_smtp *s = *state;
    greet(s);
    expect(s, "AUTH PLAIN\r\n", "334 \r\n");
    size_t n = 30000;
    char *line = malloc(n + 2);
    assert_non_null(line);
    memset(line, 'A', n);
    memcpy(line + n, "\r\n", 2);
    send_bytes(s, line, n + 2);
    assert_string_equal(take(s), "500 5.5.2 Error: line too long\r\n");
    assert_false(s->authenticated);
    expect(s, "NOOP\r\n", OK_250);
    free(line);
}

/* ---- AUTH against a [sink] users list ------------------------------------------------------ */

static const char AUTH_BAD[] = "535 5.7.8 Authentication credentials invalid\r\n";
static const char USERS_SPEC[] = "alice:secret, bob:pw, carol:tok3n";
static struct sink_users listed_users;

static int users_setup(void **state)
{
    if (sink_users_parse(USERS_SPEC, &listed_users)) return -1;
    struct sink_smtp *s = malloc(sizeof *s);
    if (!s) return -1;
    sink_smtp_init(s, HOST, SESSION, &listed_users);
    *state = s;
    return 0;
}

/* "AUTH <mech> <base64 of the len bytes of raw>\r\n", or the base64 line alone when mech is
 * NULL. */
static const char *b64_line(const char *mech, const void *raw, size_t len)
{
    static char out[1024];
    char b64[700];
    assert_true(len / 3 * 4 + 5 < sizeof b64);
    EVP_EncodeBlock((unsigned char *)b64, raw, (int)len);
    if (mech)
        snprintf(out, sizeof out, "AUTH %s %s\r\n", mech, b64);
    else
        snprintf(out, sizeof out, "%s\r\n", b64);
    return out;
}

static const char *plain_line(const char *user, const char *password)
{
    char raw[300];
    int n = snprintf(raw, sizeof raw, "%c%s%c%s", 0, user, 0, password);
    return b64_line("PLAIN", raw, (size_t)n);
}

static const char *b64_str(const char *text)
{
    return b64_line(NULL, text, strlen(text));
}

static void users_auth_plain_checks_the_password(void **state)
{
    struct sink_smtp *s = *state;
    greet(s);
    expect(s, plain_line("alice", "wrong"), AUTH_BAD);
    assert_false(s->authenticated);
    expect(s, plain_line("alice", "pw"), AUTH_BAD);       /* bob's password */
    expect(s, plain_line("mallory", "secret"), AUTH_BAD); /* not in the list */
    expect(s, plain_line("Alice", "secret"), AUTH_BAD);   /* names are case-sensitive */
    expect(s, plain_line("alice", "secret "), AUTH_BAD);
    expect(s, plain_line("alice", ""), AUTH_BAD);
    assert_false(s->authenticated);
    expect(s, plain_line("alice", "secret"), AUTH_OK);
    assert_true(s->authenticated);
}

static void users_auth_plain_without_initial_response(void **state)
{
    struct sink_smtp *s = *state;
    greet(s);
    expect(s, "AUTH PLAIN\r\n", "334 \r\n");
    char line[600];
    snprintf(line, sizeof line, "%s", plain_line("bob", "secret") + strlen("AUTH PLAIN "));
    expect(s, line, AUTH_BAD);
    expect(s, "AUTH PLAIN\r\n", "334 \r\n");
    snprintf(line, sizeof line, "%s", plain_line("bob", "pw") + strlen("AUTH PLAIN "));
    expect(s, line, AUTH_OK);
    assert_true(s->authenticated);
}

static void users_auth_plain_authzid_is_not_the_user(void **state)
{
    struct sink_smtp *s = *state;
    greet(s);
    /* authzid "alice", authcid "bob": bob's password counts. */
    static const char as_bob[] = "alice\0bob\0secret";
    expect(s, b64_line("PLAIN", as_bob, sizeof as_bob - 1), AUTH_BAD);
    static const char as_bob_ok[] = "alice\0bob\0pw";
    expect(s, b64_line("PLAIN", as_bob_ok, sizeof as_bob_ok - 1), AUTH_OK);
}

static void users_auth_login_checks_the_password(void **state)
{
    struct sink_smtp *s = *state;
    greet(s);
    expect(s, "AUTH LOGIN\r\n", "334 VXNlcm5hbWU6\r\n");
    expect(s, b64_str("alice"), "334 UGFzc3dvcmQ6\r\n");
    expect(s, b64_str("pw"), AUTH_BAD);
    assert_false(s->authenticated);
    /* The user name as initial response. */
    expect(s, b64_line("LOGIN", "nobody", 6), "334 UGFzc3dvcmQ6\r\n");
    expect(s, b64_str("secret"), AUTH_BAD);
    expect(s, "AUTH LOGIN\r\n", "334 VXNlcm5hbWU6\r\n");
    expect(s, b64_str("alice"), "334 UGFzc3dvcmQ6\r\n");
    expect(s, b64_str("secret"), AUTH_OK);
    assert_true(s->authenticated);
}

/* Sends AUTH CRAM-MD5, returns the decoded challenge (static storage). */
static const char *cram_challenge(struct sink_smtp *s)
{
    static char challenge[256];
    send_str(s, "AUTH CRAM-MD5\r\n");
    const char *reply = take(s);
    assert_int_equal(strncmp(reply, "334 ", 4), 0);
    size_t n = strlen(reply + 4);
    assert_true(n > 2 && n - 2 < sizeof challenge);
    n -= 2;
    unsigned char decoded[256];
    int len = EVP_DecodeBlock(decoded, (const unsigned char *)reply + 4, (int)n);
    assert_true(len > 0);
    if (reply[4 + n - 1] == '=') len--;
    if (reply[4 + n - 2] == '=') len--;
    memcpy(challenge, decoded, (size_t)len);
    challenge[len] = 0;
    assert_int_equal(challenge[0], '<');
    return challenge;
}

/* base64("user hex(HMAC-MD5(key, challenge))") + CRLF. */
static const char *cram_response(const char *user, const char *key, const char *challenge)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned md_len = 0;
    assert_non_null(HMAC(EVP_md5(), key, (int)strlen(key), (const unsigned char *)challenge,
                         strlen(challenge), md, &md_len));
    assert_int_equal(md_len, 16);
    char text[300];
    int n = snprintf(text, sizeof text, "%s ", user);
    for (unsigned i = 0; i < md_len; i++)
        n += snprintf(text + n, sizeof text - (size_t)n, "%02x", md[i]);
    return b64_str(text);
}

static void users_auth_cram_md5_checks_the_digest(void **state)
{
    struct sink_smtp *s = *state;
    greet(s);
    const char *challenge = cram_challenge(s);
    expect(s, cram_response("alice", "wrong", challenge), AUTH_BAD);
    challenge = cram_challenge(s);
    expect(s, cram_response("bob", "secret", challenge), AUTH_BAD); /* alice's password */
    challenge = cram_challenge(s);
    expect(s, cram_response("mallory", "secret", challenge), AUTH_BAD);
    challenge = cram_challenge(s);
    /* A digest for another challenge does not do. */
    expect(s, cram_response("alice", "secret", "<1.2@mx.test>"), AUTH_BAD);
    assert_false(s->authenticated);
    challenge = cram_challenge(s);
    expect(s, cram_response("alice", "secret", challenge), AUTH_OK);
    assert_true(s->authenticated);
}

static void users_auth_cram_md5_upper_case_digest_is_accepted(void **state)
{
    struct sink_smtp *s = *state;
    greet(s);
    const char *challenge = cram_challenge(s);
    const char *line = cram_response("bob", "pw", challenge);
    /* Decode, upper-case the hex digits, encode again. */
    unsigned char d[200];
    size_t n = strlen(line) - 2;
    int len = EVP_DecodeBlock(d, (const unsigned char *)line, (int)n);
    while (len > 0 && d[len - 1] == 0) len--;
    for (int i = 4; i < len; i++)
        if (d[i] >= 'a' && d[i] <= 'f') d[i] = (unsigned char)(d[i] - 'a' + 'A');
    expect(s, b64_line(NULL, d, (size_t)len), AUTH_OK);
}

static void users_auth_cram_md5_malformed_response_is_refused(void **state)
{
    struct sink_smtp *s = *state;
    greet(s);
    cram_challenge(s);
    expect(s, b64_str("alice"), AUTH_BAD); /* no space, no digest */
    cram_challenge(s);
    expect(s, b64_str("alice 0123"), AUTH_BAD); /* digest too short */
    expect(s, "NOOP\r\n", OK_250);
}

/* The XOAUTH2 error challenge the sink sends: base64 of its JSON. */
static const char *xoauth2_error_reply(void)
{
    static char out[300];
    static const char json[] = "{\"status\":\"401\",\"schemes\":\"bearer\",\"scope\":"
                               "\"https://mail.google.com/\"}";
    char b64[200];
    EVP_EncodeBlock((unsigned char *)b64, (const unsigned char *)json, (int)strlen(json));
    snprintf(out, sizeof out, "334 %s\r\n", b64);
    return out;
}

static const char *xoauth2_line(const char *mech, const char *user, const char *token)
{
    char raw[300];
    int n = snprintf(raw, sizeof raw, "user=%s\001auth=Bearer %s\001\001", user, token);
    return b64_line(mech, raw, (size_t)n);
}

static void users_auth_xoauth2_good_token(void **state)
{
    struct sink_smtp *s = *state;
    greet(s);
    expect(s, xoauth2_line("XOAUTH2", "carol", "tok3n"), AUTH_OK);
    assert_true(s->authenticated);
}

static void users_auth_xoauth2_good_token_without_initial_response(void **state)
{
    struct sink_smtp *s = *state;
    greet(s);
    expect(s, "AUTH XOAUTH2\r\n", "334 \r\n");
    expect(s, xoauth2_line(NULL, "carol", "tok3n"), AUTH_OK);
    assert_true(s->authenticated);
}

static void users_auth_xoauth2_bad_token_gets_json_challenge_then_535(void **state)
{
    struct sink_smtp *s = *state;
    greet(s);
    expect(s, xoauth2_line("XOAUTH2", "carol", "expired"), xoauth2_error_reply());
    assert_int_equal(s->auth, SINK_AUTH_XOAUTH2_FAILED);
    assert_false(s->authenticated);
    expect(s, "\r\n", AUTH_BAD); /* the client's empty line */
    assert_int_equal(s->auth, SINK_AUTH_NONE);
    assert_false(s->authenticated);
    expect(s, "NOOP\r\n", OK_250);
    /* Without an initial response: 334, credentials, 334 JSON, empty line, 535. */
    expect(s, "AUTH XOAUTH2\r\n", "334 \r\n");
    expect(s, xoauth2_line(NULL, "alice", "tok3n"), xoauth2_error_reply()); /* carol's token */
    expect(s, "\r\n", AUTH_BAD);
    /* A token for a user the list does not know, then "*" instead of the empty line. */
    expect(s, xoauth2_line("XOAUTH2", "mallory", "tok3n"), xoauth2_error_reply());
    expect(s, "*\r\n", "501 5.7.0 Authentication cancelled\r\n");
    expect(s, xoauth2_line("XOAUTH2", "carol", "tok3n"), AUTH_OK);
}

static void users_auth_xoauth2_without_user_or_token_is_refused(void **state)
{
    struct sink_smtp *s = *state;
    greet(s);
    static const char no_user[] = "auth=Bearer tok3n\001\001";
    expect(s, b64_line("XOAUTH2", no_user, sizeof no_user - 1), xoauth2_error_reply());
    expect(s, "\r\n", AUTH_BAD);
    static const char no_token[] = "user=carol\001\001";
    expect(s, b64_line("XOAUTH2", no_token, sizeof no_token - 1), xoauth2_error_reply());
    expect(s, "\r\n", AUTH_BAD);
    assert_false(s->authenticated);
}

static void no_users_accept_any_xoauth2_token(void **state)
{
    struct sink_smtp *s = *state;
    greet(s);
    expect(s, xoauth2_line("XOAUTH2", "anyone", "whatever"), AUTH_OK);
}

static void sink_users_parse_accepts_a_list(void **state)
{
    (void)state;
    struct sink_users u;
    assert_null(sink_users_parse("  alice:secret ,bob:p:w:x,\tcarol: spaced pw ,", &u));
    assert_int_equal(u.count, 3);
    assert_string_equal(u.users[0].name, "alice");
    assert_string_equal(u.users[0].password, "secret");
    assert_string_equal(u.users[1].name, "bob");
    assert_string_equal(u.users[1].password, "p:w:x"); /* only the first ':' splits */
    assert_string_equal(u.users[2].name, "carol");
    assert_string_equal(u.users[2].password, " spaced pw");
    assert_true(sink_users_password_ok(&u, "bob", "p:w:x"));
    assert_false(sink_users_password_ok(&u, "bob", "p"));
    assert_false(sink_users_password_ok(&u, "dave", ""));
    assert_null(sink_users_parse("", &u));
    assert_int_equal(u.count, 0);
    assert_true(sink_users_password_ok(&u, "anyone", "anything")); /* empty list */
    assert_null(sink_users_parse(" , ,", &u));
    assert_int_equal(u.count, 0);
    assert_null(sink_users_parse("eve:", &u)); /* an empty password is a password */
    assert_int_equal(u.count, 1);
    assert_true(sink_users_password_ok(&u, "eve", ""));
    assert_false(sink_users_password_ok(&u, "eve", "x"));
}

static void sink_users_parse_reports_errors(void **state)
{
    (void)state;
    static const char LIST[] = "a list of user:password, e.g. alice:secret, bob:pw";
    struct sink_users u;
    const char *err = sink_users_parse("alice", &u);
    assert_non_null(err);
    assert_string_equal(err, LIST);
    err = sink_users_parse("alice:secret, bob", &u);
    assert_non_null(err);
    assert_string_equal(err, LIST);
    err = sink_users_parse(":secret", &u);
    assert_non_null(err);
    assert_string_equal(err, LIST);

    char spec[64 * 16 + 64];
    size_t n = 0;
    for (int i = 0; i < 64; i++) n += (size_t)snprintf(spec + n, sizeof spec - n, "u%d:p,", i);
    assert_null(sink_users_parse(spec, &u));
    assert_int_equal(u.count, 64);
    snprintf(spec + n, sizeof spec - n, "u64:p");
    err = sink_users_parse(spec, &u);
    assert_non_null(err);
    assert_string_equal(err, "at most 64 users");

    char long_name[SINK_CRED_MAX + 8];
    memset(long_name, 'n', SINK_CRED_MAX);
    snprintf(long_name + SINK_CRED_MAX, 8, ":pw");
    err = sink_users_parse(long_name, &u);
    assert_non_null(err);
    assert_string_equal(err, "shorter names and passwords");
    char long_pw[SINK_CRED_MAX + 8] = "bob:";
    memset(long_pw + 4, 'p', SINK_CRED_MAX);
    long_pw[4 + SINK_CRED_MAX] = 0;
    err = sink_users_parse(long_pw, &u);
    assert_non_null(err);
    assert_string_equal(err, "shorter names and passwords");
    /* The longest that fit. */
    long_pw[4 + SINK_CRED_MAX - 1] = 0;
    assert_null(sink_users_parse(long_pw, &u));
    assert_int_equal(strlen(u.users[0].password), SINK_CRED_MAX - 1);
}

static void sink_users_cram_ok_needs_a_32_digit_digest(void **state)
{
    (void)state;
    struct sink_users u;
    assert_null(sink_users_parse("", &u));
    assert_true(sink_users_cram_ok(&u, "any", "<1@x>", "0123456789abcdef0123456789abcdef"));
    assert_false(sink_users_cram_ok(&u, "any", "<1@x>", "0123456789abcdef"));
    assert_null(sink_users_parse("alice:secret", &u));
    /* RFC 2195's example: key "tanstaaftanstaaf", challenge <1896.697170952@postoffice...>. */
    assert_null(sink_users_parse("tim:tanstaaftanstaaf", &u));
    assert_true(sink_users_cram_ok(&u, "tim", "<1896.697170952@postoffice.reston.mci.net>",
                                   "b913a602c7eda7a495b4e6e7334d3890"));
    assert_false(sink_users_cram_ok(&u, "tim", "<1896.697170953@postoffice.reston.mci.net>",
                                    "b913a602c7eda7a495b4e6e7334d3890"));
}

#define SINK_TEST(f) cmocka_unit_test_setup_teardown(f, sink_setup, sink_teardown)

#define USERS_TEST(f) cmocka_unit_test_setup_teardown(f, users_setup, sink_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        SINK_TEST(sink_greets_with_its_host_name),
        SINK_TEST(ehlo_advertises_every_extension),
        SINK_TEST(helo_gets_a_one_line_reply),
        SINK_TEST(whole_session_delivers_one_message_and_quits),
        SINK_TEST(message_content_may_arrive_in_many_pieces),
        SINK_TEST(second_message_in_the_same_session_gets_the_next_queue_id),
        SINK_TEST(input_after_quit_is_ignored),
        SINK_TEST(simple_commands_get_their_replies),
        SINK_TEST(pipelined_burst_in_one_write_is_answered_in_order),
        SINK_TEST(refused_data_in_a_burst_leaves_the_next_line_a_command),
        SINK_TEST(mail_before_ehlo_is_refused),
        SINK_TEST(rcpt_and_data_before_mail_are_refused),
        SINK_TEST(nested_mail_is_refused),
        SINK_TEST(rset_ends_the_transaction),
        SINK_TEST(data_with_an_argument_is_a_syntax_error),
        SINK_TEST(mail_and_rcpt_without_from_or_to_are_syntax_errors),
        SINK_TEST(bdat_chunk_with_command_looking_bytes_is_taken_as_data),
        SINK_TEST(bdat_chunk_split_across_writes),
        SINK_TEST(bdat_zero_last_ends_the_message),
        SINK_TEST(bdat_zero_last_alone_is_an_empty_message),
        SINK_TEST(bdat_zero_without_last_is_acknowledged),
        SINK_TEST(bdat_without_a_transaction_is_refused_but_its_octets_consumed),
        SINK_TEST(data_after_bdat_is_refused),
        SINK_TEST(bdat_with_a_bad_size_is_a_syntax_error),
        SINK_TEST(auth_plain_with_initial_response_succeeds_at_once),
        SINK_TEST(auth_plain_without_initial_response_asks_for_it),
        SINK_TEST(auth_plain_with_initial_response_pipelined_with_mail),
        SINK_TEST(auth_plain_initial_response_that_is_not_base64_is_refused),
        SINK_TEST(auth_login_asks_for_user_then_password),
        SINK_TEST(auth_login_with_the_user_name_as_initial_response),
        SINK_TEST(cram_md5_challenge_is_base64_of_a_message_id),
        SINK_TEST(star_cancels_the_exchange),
        SINK_TEST(invalid_base64_response_is_refused),
        SINK_TEST(unknown_mechanism_is_refused_and_commands_continue),
        SINK_TEST(auth_during_a_transaction_is_refused),
        SINK_TEST(size_over_the_limit_is_refused),
        SINK_TEST(message_of_exactly_the_size_limit_is_accepted),
        SINK_TEST(message_over_the_size_limit_is_refused_after_its_end),
        SINK_TEST(starttls_is_refused_and_the_session_stays_plain),
        SINK_TEST(helo_and_ehlo_without_argument_are_syntax_errors),
        SINK_TEST(over_long_line_is_refused_once_and_the_session_goes_on),
        SINK_TEST(over_long_sasl_line_ends_the_exchange),
        USERS_TEST(users_auth_plain_checks_the_password),
        USERS_TEST(users_auth_plain_without_initial_response),
        USERS_TEST(users_auth_plain_authzid_is_not_the_user),
        USERS_TEST(users_auth_login_checks_the_password),
        USERS_TEST(users_auth_cram_md5_checks_the_digest),
        USERS_TEST(users_auth_cram_md5_upper_case_digest_is_accepted),
        USERS_TEST(users_auth_cram_md5_malformed_response_is_refused),
        USERS_TEST(users_auth_xoauth2_good_token),
        USERS_TEST(users_auth_xoauth2_good_token_without_initial_response),
        USERS_TEST(users_auth_xoauth2_bad_token_gets_json_challenge_then_535),
        USERS_TEST(users_auth_xoauth2_without_user_or_token_is_refused),
        SINK_TEST(no_users_accept_any_xoauth2_token),
        cmocka_unit_test(sink_users_parse_accepts_a_list),
        cmocka_unit_test(sink_users_parse_reports_errors),
        cmocka_unit_test(sink_users_cram_ok_needs_a_32_digit_digest),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
