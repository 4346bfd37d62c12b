/* test_auth.c - unit tests for the SASL decoder (auth.h): what the transcript shows for each
 * line of an AUTH exchange, what it hides, and that broken input never breaks it.
 *
 * The examples come from the RFCs (4616 PLAIN, 2195 CRAM-MD5, 7628 OAUTHBEARER) and Google's
 * XOAUTH2 page. Every test that involves a secret checks that it is visible in `text` (so the
 * check means something) and absent from `redacted` and from the redacted raw line. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <openssl/evp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtptap/auth.h"

/* ---- helpers ----------------------------------------------------------------------------- */

static void command(struct auth_decoder *a, struct auth_view *v, const char *line)
{
    auth_on_command(a, (const uint8_t *)line, strlen(line), v);
}

static void client(struct auth_decoder *a, struct auth_view *v, const char *line)
{
    auth_on_client_line(a, (const uint8_t *)line, strlen(line), v);
}

/* Feeds a reply; its code is read from its first three characters. */
static void reply(struct auth_decoder *a, struct auth_view *v, const char *text)
{
    auth_on_reply(a, atoi(text), (const uint8_t *)text, strlen(text), v);
}

/* The raw line with the view's secret span redacted. */
static const char *redact(const char *raw, const struct auth_view *v, char *out, size_t size)
{
    auth_redact_line((const uint8_t *)raw, strlen(raw), v->secret_off, v->secret_len, out, size);
    return out;
}

/* `secret` is shown in text but neither in the redacted text nor in the redacted raw line;
 * `b64` (the base64 that carries it, if given) is in raw but not in the redacted raw line. */
static void assert_secret_hidden(const char *raw, const struct auth_view *v, const char *secret,
                                 const char *b64)
{
    char out[AUTH_TEXT_MAX * 2];
    redact(raw, v, out, sizeof out);
    assert_non_null(strstr(v->text, secret));
    assert_null(strstr(v->redacted, secret));
    assert_null(strstr(out, secret));
    if (b64) {
        assert_non_null(strstr(raw, b64));
        assert_null(strstr(out, b64));
        assert_null(strstr(v->redacted, b64));
    }
}

static void assert_span(const struct auth_view *v, size_t off, size_t len)
{
    assert_int_equal(v->secret_off, off);
    assert_int_equal(v->secret_len, len);
}

static void assert_printable(const char *s, size_t size)
{
    size_t n = strnlen(s, size);
    assert_true(n < size);
    for (size_t i = 0; i < n; i++) assert_true(s[i] >= 0x20 && s[i] < 0x7f);
}

/* ---- PLAIN (RFC 4616) -------------------------------------------------------------------- */

static void plain_initial_response_shows_the_user_and_hides_the_password(void **state)
{
    (void)state;
    struct auth_decoder a;
    struct auth_view v;
    const char *raw = "AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n";
    auth_init(&a);
    command(&a, &v, raw);
    assert_true(v.decoded);
    assert_string_equal(v.text, "AUTH PLAIN authzid=\"\" authcid=\"alice\" password=\"secret\"");
    assert_string_equal(v.redacted,
                        "AUTH PLAIN authzid=\"\" authcid=\"alice\" password=<redacted>");
    assert_string_equal(v.problem, "");
    assert_span(&v, 11, 20);
    assert_true(a.active);
    assert_int_equal(a.mech, AUTH_MECH_PLAIN);
    assert_string_equal(a.user, "alice");
    assert_secret_hidden(raw, &v, "secret", "AGFsaWNlAHNlY3JldA==");
}

static void redacted_plain_line_keeps_the_command_and_the_terminator(void **state)
{
    (void)state;
    struct auth_decoder a;
    struct auth_view v;
    char out[128];
    const char *raw = "AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n";
    auth_init(&a);
    command(&a, &v, raw);
    size_t n = auth_redact_line((const uint8_t *)raw, strlen(raw), v.secret_off, v.secret_len, out,
                                sizeof out);
    /* The span is the 20 characters of base64; how many is not told (it tells the password's
     * length). */
    assert_string_equal(out, "AUTH PLAIN <redacted>\r\n");
    assert_int_equal(n, strlen(out));
}

/* Issue 15 item 14: "<redacted 6 bytes>" told how long the password was. Two passwords of
 * different lengths now read the same, in the "##" line and in the raw line; a bearer token
 * says what it was, not how long. */
static void redaction_does_not_tell_a_secrets_length(void **state)
{
    (void)state;
    static const char *const lines[] = {
        "AUTH PLAIN AGFsaWNlAHg=\r\n",                             /* alice / x */
        "AUTH PLAIN AGFsaWNlAGNvcnJlY3QgaG9yc2UgYmF0dGVyeQ==\r\n", /* alice / correct horse.. */
    };
    char redacted[2][AUTH_TEXT_MAX], raw[2][128];
    for (int i = 0; i < 2; i++) {
        struct auth_decoder a;
        struct auth_view v;
        auth_init(&a);
        command(&a, &v, lines[i]);
        assert_null(strstr(v.redacted, "bytes"));
        snprintf(redacted[i], sizeof redacted[i], "%s", v.redacted);
        auth_redact_line((const uint8_t *)lines[i], strlen(lines[i]), v.secret_off, v.secret_len,
                         raw[i], sizeof raw[i]);
    }
    assert_string_equal(redacted[0],
                        "AUTH PLAIN authzid=\"\" authcid=\"alice\" password=<redacted>");
    assert_string_equal(redacted[1], redacted[0]);
    assert_string_equal(raw[0], "AUTH PLAIN <redacted>\r\n");
    assert_string_equal(raw[1], raw[0]);

    struct auth_decoder a;
    struct auth_view v;
    auth_init(&a);
    command(&a, &v, "AUTH XOAUTH2 dXNlcj1hAWF1dGg9QmVhcmVyIFQBAQ==\r\n"); /* user=a auth=Bearer T */
    assert_string_equal(v.redacted, "AUTH XOAUTH2 user=\"a\" token=<redacted token>");
}

static void rfc4616_example_with_an_authorization_identity(void **state)
{
    (void)state;
    struct auth_decoder a;
    struct auth_view v;
    const char *raw = "AUTH PLAIN VXJzZWwAS3VydAB4aXBqM3BsbXE=\r\n"; /* Ursel\0Kurt\0xipj3plmq */
    auth_init(&a);
    command(&a, &v, raw);
    assert_string_equal(v.text,
                        "AUTH PLAIN authzid=\"Ursel\" authcid=\"Kurt\" password=\"xipj3plmq\"");
    assert_string_equal(v.redacted,
                        "AUTH PLAIN authzid=\"Ursel\" authcid=\"Kurt\" password=<redacted>");
    assert_string_equal(a.user, "Kurt");
    assert_secret_hidden(raw, &v, "xipj3plmq", "VXJzZWwAS3VydAB4aXBqM3BsbXE=");
}

static void rfc4616_example_tim_then_accepted_summary_names_tim(void **state)
{
    (void)state;
    struct auth_decoder a;
    struct auth_view v;
    const char *raw = "AUTH PLAIN AHRpbQB0YW5zdGFhZnRhbnN0YWFm\r\n"; /* \0tim\0tanstaaftanstaaf */
    auth_init(&a);
    command(&a, &v, raw);
    assert_string_equal(v.text,
                        "AUTH PLAIN authzid=\"\" authcid=\"tim\" password=\"tanstaaftanstaaf\"");
    assert_secret_hidden(raw, &v, "tanstaaftanstaaf", "AHRpbQB0YW5zdGFhZnRhbnN0YWFm");
    reply(&a, &v, "235 2.7.0 Authentication successful\r\n");
    assert_string_equal(v.text, "AUTH PLAIN for tim: accepted (235 2.7.0)");
    assert_string_equal(v.redacted, v.text);
    assert_span(&v, 0, 0);
    assert_false(a.active);
}

static void
plain_without_initial_response_gets_an_empty_challenge_then_the_credentials(void **state)
{
    (void)state;
    struct auth_decoder a;
    struct auth_view v;
    auth_init(&a);
    command(&a, &v, "AUTH PLAIN\r\n");
    assert_string_equal(v.text, "AUTH PLAIN (no initial response)");
    assert_span(&v, 0, 0);
    reply(&a, &v, "334 \r\n");
    assert_true(v.decoded);
    assert_string_equal(v.text,
                        "AUTH PLAIN empty challenge (the client sends its credentials next)");
    client(&a, &v, "AGFsaWNlAHNlY3JldA==\r\n");
    assert_string_equal(v.text, "AUTH PLAIN authzid=\"\" authcid=\"alice\" password=\"secret\"");
    assert_span(&v, 0, 20);
    assert_secret_hidden("AGFsaWNlAHNlY3JldA==\r\n", &v, "secret", "AGFsaWNlAHNlY3JldA==");
    reply(&a, &v, "535 5.7.8 Authentication credentials invalid\r\n");
    assert_string_equal(v.text, "AUTH PLAIN for alice: rejected (535 5.7.8)");
}

static void plain_message_without_nul_separators_is_a_problem_and_stays_secret(void **state)
{
    (void)state;
    struct auth_decoder a;
    struct auth_view v;
    const char *raw = "AUTH PLAIN YWxpY2VzZWNyZXQ=\r\n"; /* "alicesecret" */
    auth_init(&a);
    command(&a, &v, raw);
    assert_string_equal(v.text, "AUTH PLAIN message=\"alicesecret\"");
    assert_string_equal(v.redacted, "AUTH PLAIN message=<redacted>");
    assert_non_null(strstr(v.problem, "no NUL separator"));
    assert_secret_hidden(raw, &v, "alicesecret", "YWxpY2VzZWNyZXQ=");
}

static void plain_message_with_one_nul_is_a_problem_and_stays_secret(void **state)
{
    (void)state;
    struct auth_decoder a;
    struct auth_view v;
    const char *raw = "AUTH PLAIN YWxpY2UAc2VjcmV0\r\n"; /* "alice\0secret" */
    auth_init(&a);
    command(&a, &v, raw);
    assert_string_equal(v.text, "AUTH PLAIN message=\"alice\\x00secret\"");
    assert_non_null(strstr(v.problem, "only one NUL separator"));
    assert_secret_hidden(raw, &v, "secret", "YWxpY2UAc2VjcmV0");
}

static void plain_with_empty_authcid_or_nul_in_password_is_a_problem(void **state)
{
    (void)state;
    struct auth_decoder a;
    struct auth_view v;
    auth_init(&a);
    command(&a, &v, "AUTH PLAIN AABzZWNyZXQ=\r\n"); /* "\0\0secret" */
    assert_string_equal(v.problem, "AUTH PLAIN authcid (user name) is empty");
    assert_string_equal(v.redacted, "AUTH PLAIN authzid=\"\" authcid=\"\" password=<redacted>");
    command(&a, &v, "AUTH PLAIN AGEAYgBj\r\n"); /* "\0a\0b\0c" */
    assert_string_equal(v.problem, "AUTH PLAIN password contains a NUL byte");
    assert_string_equal(v.text, "AUTH PLAIN authzid=\"\" authcid=\"a\" password=\"b\\x00c\"");
}

static void decoded_values_are_escaped_so_the_text_stays_printable(void **state)
{
    (void)state;
    struct auth_decoder a;
    struct auth_view v;
    /* authzid "q\"b\\s", authcid "\x01\xff", password "p" */
    auth_init(&a);
    command(&a, &v, "AUTH PLAIN cSJiXHMAAf8AcA==");
    assert_string_equal(v.text,
                        "AUTH PLAIN authzid=\"q\\\"b\\\\s\" authcid=\"\\x01\\xFF\" password=\"p\"");
    assert_string_equal(a.user, "\\x01\\xFF");
}

/* ---- LOGIN ------------------------------------------------------------------------------- */

static void login_without_initial_response_asks_user_then_password(void **state)
{
    (void)state;
    struct auth_decoder a;
    struct auth_view v;
    auth_init(&a);
    command(&a, &v, "AUTH LOGIN\r\n");
    assert_string_equal(v.text, "AUTH LOGIN (no initial response)");
    reply(&a, &v, "334 VXNlcm5hbWU6\r\n");
    assert_string_equal(v.text, "AUTH LOGIN prompt \"Username:\" (next line: the user name)");
    client(&a, &v, "YWxpY2U=\r\n");
    assert_string_equal(v.text, "AUTH LOGIN user=\"alice\"");
    assert_string_equal(v.redacted, v.text);
    assert_span(&v, 0, 0);
    reply(&a, &v, "334 UGFzc3dvcmQ6\r\n");
    assert_string_equal(v.text, "AUTH LOGIN prompt \"Password:\" (next line: the password)");
    client(&a, &v, "c2VjcmV0\r\n");
    assert_string_equal(v.text, "AUTH LOGIN password=\"secret\"");
    assert_string_equal(v.redacted, "AUTH LOGIN password=<redacted>");
    assert_span(&v, 0, 8);
    assert_secret_hidden("c2VjcmV0\r\n", &v, "secret", "c2VjcmV0");
    reply(&a, &v, "235 2.7.0 OK\r\n");
    assert_string_equal(v.text, "AUTH LOGIN for alice: accepted (235 2.7.0)");
}

static void login_counts_steps_and_ignores_prompts_that_lie(void **state)
{
    (void)state;
    struct auth_decoder a;
    struct auth_view v;
    auth_init(&a);
    command(&a, &v, "AUTH LOGIN\r\n");
    reply(&a, &v, "334 UGFzc3dvcmQ6\r\n"); /* says "Password:" but the first line is the user */
    assert_string_equal(v.text, "AUTH LOGIN prompt \"Password:\" (next line: the user name)");
    client(&a, &v, "YWxpY2U=\r\n");
    assert_string_equal(v.text, "AUTH LOGIN user=\"alice\"");
    reply(&a, &v, "334 VXNlcm5hbWU6\r\n"); /* says "Username:" but the second is the password */
    client(&a, &v, "c2VjcmV0\r\n");
    assert_string_equal(v.redacted, "AUTH LOGIN password=<redacted>");
    assert_secret_hidden("c2VjcmV0\r\n", &v, "secret", "c2VjcmV0");
}

static void login_with_initial_response_takes_it_as_the_user_and_next_line_as_password(void **state)
{
    (void)state;
    struct auth_decoder a;
    struct auth_view v;
    auth_init(&a);
    command(&a, &v, "AUTH LOGIN YWxpY2U=\r\n");
    assert_string_equal(v.text, "AUTH LOGIN user=\"alice\"");
    assert_string_equal(v.redacted, "AUTH LOGIN user=\"alice\"");
    assert_span(&v, 0, 0);
    reply(&a, &v, "334 UGFzc3dvcmQ6\r\n");
    assert_string_equal(v.text, "AUTH LOGIN prompt \"Password:\" (next line: the password)");
    client(&a, &v, "c2VjcmV0\r\n");
    assert_string_equal(v.text, "AUTH LOGIN password=\"secret\"");
    assert_secret_hidden("c2VjcmV0\r\n", &v, "secret", "c2VjcmV0");
    reply(&a, &v, "535 5.7.8 Authentication credentials invalid\r\n");
    assert_string_equal(v.text, "AUTH LOGIN for alice: rejected (535 5.7.8)");
}

static void login_third_response_is_unexpected_and_secret(void **state)
{
    (void)state;
    struct auth_decoder a;
    struct auth_view v;
    auth_init(&a);
    command(&a, &v, "AUTH LOGIN YWxpY2U=\r\n");
    client(&a, &v, "c2VjcmV0\r\n");
    reply(&a, &v, "334 UGFzc3dvcmQ6\r\n");
    assert_string_equal(
        v.text, "AUTH LOGIN prompt \"Password:\" (next line: an unexpected extra response)");
    client(&a, &v, "c2VjcmV0\r\n");
    assert_string_equal(v.problem, "AUTH LOGIN: unexpected response #2");
    assert_string_equal(v.redacted, "AUTH LOGIN <redacted>");
    assert_secret_hidden("c2VjcmV0\r\n", &v, "secret", "c2VjcmV0");
}

/* ---- CRAM-MD5 (RFC 2195) ----------------------------------------------------------------- */

static void cram_md5_rfc2195_example_shows_challenge_and_user_and_hides_digest(void **state)
{
    (void)state;
    struct auth_decoder a;
    struct auth_view v;
    const char *resp = "dGltIGI5MTNhNjAyYzdlZGE3YTQ5NWI0ZTZlNzMzNGQzODkw\r\n";
    auth_init(&a);
    command(&a, &v, "AUTH CRAM-MD5\r\n");
    assert_string_equal(v.text, "AUTH CRAM-MD5 (no initial response)");
    reply(&a, &v, "334 PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+\r\n");
    assert_string_equal(v.text,
                        "AUTH CRAM-MD5 challenge \"<1896.697170952@postoffice.reston.mci.net>\"");
    client(&a, &v, resp);
    assert_string_equal(v.text,
                        "AUTH CRAM-MD5 user=\"tim\" digest=\"b913a602c7eda7a495b4e6e7334d3890\"");
    assert_string_equal(v.redacted, "AUTH CRAM-MD5 user=\"tim\" digest=<redacted digest>");
    assert_string_equal(v.problem, "");
    assert_span(&v, 0, strlen(resp) - 2);
    assert_secret_hidden(resp, &v, "b913a602c7eda7a495b4e6e7334d3890",
                         "dGltIGI5MTNhNjAyYzdlZGE3YTQ5NWI0ZTZlNzMzNGQzODkw");
    reply(&a, &v, "235 2.7.0 Authentication successful\r\n");
    assert_string_equal(v.text, "AUTH CRAM-MD5 for tim: accepted (235 2.7.0)");
}

static void cram_md5_response_without_space_or_with_short_digest_is_a_problem(void **state)
{
    (void)state;
    struct auth_decoder a;
    struct auth_view v;
    auth_init(&a);
    command(&a, &v, "AUTH CRAM-MD5\r\n");
    client(&a, &v, "dGltYjkxMw==\r\n"); /* "timb913" */
    assert_string_equal(v.problem, "AUTH CRAM-MD5 response has no space between user and digest");
    assert_string_equal(v.redacted, "AUTH CRAM-MD5 response=<redacted>");
    assert_secret_hidden("dGltYjkxMw==\r\n", &v, "timb913", "dGltYjkxMw==");
    command(&a, &v, "AUTH CRAM-MD5\r\n");
    client(&a, &v, "dGltIGI5MTM=\r\n"); /* "tim b913" */
    assert_string_equal(v.problem, "AUTH CRAM-MD5 digest is not 32 hex digits");
    assert_string_equal(v.redacted, "AUTH CRAM-MD5 user=\"tim\" digest=<redacted digest>");
}

static void cram_md5_with_an_initial_response_is_a_problem_and_secret(void **state)
{
    (void)state;
    struct auth_decoder a;
    struct auth_view v;
    const char *raw = "AUTH CRAM-MD5 dGltIGI5MTM=\r\n";
    auth_init(&a);
    command(&a, &v, raw);
    assert_string_equal(v.problem, "AUTH CRAM-MD5 takes no initial response");
    assert_string_equal(v.redacted, "AUTH CRAM-MD5 <redacted>");
    assert_secret_hidden(raw, &v, "b913", "dGltIGI5MTM=");
}

/* ---- XOAUTH2 (Google) -------------------------------------------------------------------- */

static const char *XOAUTH2_IR = "dXNlcj1zb21ldXNlckBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB5YTI5LnZGOWRmdD"
                                "RxbVRjMk52YjNSbGNrQmhkSFJoZG1semRHRXVZMjl0Q2cBAQ==";
static const char *XOAUTH2_TOKEN = "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg";

static void xoauth2_google_example_shows_the_user_and_hides_the_token(void **state)
{
    (void)state;
    struct auth_decoder a;
    struct auth_view v;
    char raw[256];
    snprintf(raw, sizeof raw, "AUTH XOAUTH2 %s\r\n", XOAUTH2_IR);
    auth_init(&a);
    command(&a, &v, raw);
    assert_string_equal(v.text, "AUTH XOAUTH2 user=\"someuser@example.com\" "
                                "token=\"ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg\"");
    assert_string_equal(v.redacted,
                        "AUTH XOAUTH2 user=\"someuser@example.com\" token=<redacted token>");
    assert_string_equal(v.problem, "");
    assert_span(&v, 13, strlen(XOAUTH2_IR));
    assert_secret_hidden(raw, &v, XOAUTH2_TOKEN, XOAUTH2_IR);
    reply(&a, &v, "235 2.7.0 Accepted\r\n");
    assert_string_equal(v.text, "AUTH XOAUTH2 for someuser@example.com: accepted (235 2.7.0)");
}

static void xoauth2_error_challenge_shows_the_json_and_the_empty_answer(void **state)
{
    (void)state;
    struct auth_decoder a;
    struct auth_view v;
    char raw[256];
    snprintf(raw, sizeof raw, "AUTH XOAUTH2 %s\r\n", XOAUTH2_IR);
    auth_init(&a);
    command(&a, &v, raw);
    reply(&a, &v,
          "334 eyJzdGF0dXMiOiI0MDEiLCJzY2hlbWVzIjoiQmVhcmVyIiwic2NvcGUiOiJodHRwczovL21haWwuZ29"
          "vZ2xlLmNvbS8ifQ==\r\n");
    assert_string_equal(v.text, "AUTH XOAUTH2 error challenge {\"status\":\"401\",\"schemes\":"
                                "\"Bearer\",\"scope\":\"https://mail.google.com/\"}");
    assert_true(a.oauth_error);
    client(&a, &v, "\r\n");
    assert_string_equal(v.text, "AUTH XOAUTH2 empty response acknowledging the error");
    assert_string_equal(v.problem, "");
    assert_span(&v, 0, 0);
    reply(&a, &v, "535 5.7.8 Username and Password not accepted\r\n");
    assert_string_equal(v.text, "AUTH XOAUTH2 for someuser@example.com: rejected (535 5.7.8)");
}

static void xoauth2_non_empty_answer_to_an_error_is_a_problem_and_secret(void **state)
{
    (void)state;
    struct auth_decoder a;
    struct auth_view v;
    char raw[256];
    snprintf(raw, sizeof raw, "AUTH XOAUTH2 %s\r\n", XOAUTH2_IR);
    auth_init(&a);
    command(&a, &v, raw);
    reply(&a, &v, "334 eyJzdGF0dXMiOiI0MDEifQ==\r\n");
    client(&a, &v, "c2VjcmV0\r\n");
    assert_non_null(strstr(v.problem, "must send an empty line"));
    assert_secret_hidden("c2VjcmV0\r\n", &v, "secret", "c2VjcmV0");
}

static void
xoauth2_without_initial_response_sends_the_message_after_an_empty_challenge(void **state)
{
    (void)state;
    struct auth_decoder a;
    struct auth_view v;
    char raw[256];
    snprintf(raw, sizeof raw, "%s\r\n", XOAUTH2_IR);
    auth_init(&a);
    command(&a, &v, "AUTH XOAUTH2\r\n");
    reply(&a, &v, "334 \r\n");
    assert_false(a.oauth_error);
    client(&a, &v, raw);
    assert_string_equal(v.redacted,
                        "AUTH XOAUTH2 user=\"someuser@example.com\" token=<redacted token>");
    assert_secret_hidden(raw, &v, XOAUTH2_TOKEN, XOAUTH2_IR);
}

static void xoauth2_message_without_final_separators_or_auth_is_a_problem(void **state)
{
    (void)state;
    struct auth_decoder a;
    struct auth_view v;
    auth_init(&a);
    command(&a, &v, "AUTH XOAUTH2 dXNlcj1hAWF1dGg9QmVhcmVyIFQ=\r\n"); /* user=a^Aauth=Bearer T */
    assert_string_equal(v.problem, "AUTH XOAUTH2 message does not end with ^A^A");
    assert_string_equal(v.redacted, "AUTH XOAUTH2 user=\"a\" token=<redacted token>");
    command(&a, &v, "AUTH XOAUTH2 dXNlcj1hAQE=\r\n"); /* user=a^A^A */
    assert_string_equal(v.problem, "AUTH XOAUTH2 message has no auth= field");
}

static void xoauth2_other_auth_schemes_and_unknown_keys_are_secret(void **state)
{
    (void)state;
    struct auth_decoder a;
    struct auth_view v;
    /* user=a^Aauth=Basic c2VjcmV0^Afoo=bar^A^A */
    const char *raw = "AUTH XOAUTH2 dXNlcj1hAWF1dGg9QmFzaWMgYzJWamNtVjABZm9vPWJhcgEB\r\n";
    auth_init(&a);
    command(&a, &v, raw);
    assert_string_equal(v.text, "AUTH XOAUTH2 user=\"a\" auth=\"Basic c2VjcmV0\" foo=\"bar\"");
    assert_string_equal(v.redacted, "AUTH XOAUTH2 user=\"a\" auth=<redacted> foo=<redacted>");
    assert_string_equal(v.problem, "");
    assert_secret_hidden(raw, &v, "c2VjcmV0", "dXNlcj1hAWF1dGg9QmFzaWMgYzJWamNtVjABZm9vPWJhcgEB");
}

/* ---- OAUTHBEARER (RFC 7628) -------------------------------------------------------------- */

static const char *OAUTHBEARER_IR =
    "bixhPXVzZXJAZXhhbXBsZS5jb20sAWhvc3Q9c2VydmVyLmV4YW1wbGUuY29tAXBvcnQ9MTQzAWF1dGg9QmVhcmVy"
    "IHZGOWRmdDRxbVRjMk52YjNSbGNrQmhiSFJoZG1semRHRXVZMjl0Q2c9PQEB";
static const char *OAUTHBEARER_TOKEN = "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==";

static void oauthbearer_rfc7628_example_shows_user_host_port_and_hides_the_token(void **state)
{
    (void)state;
    struct auth_decoder a;
    struct auth_view v;
    char raw[256];
    snprintf(raw, sizeof raw, "AUTH OAUTHBEARER %s\r\n", OAUTHBEARER_IR);
    auth_init(&a);
    command(&a, &v, raw);
    assert_string_equal(v.text, "AUTH OAUTHBEARER user=\"user@example.com\" "
                                "host=\"server.example.com\" port=\"143\" "
                                "token=\"vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==\"");
    assert_string_equal(v.redacted, "AUTH OAUTHBEARER user=\"user@example.com\" "
                                    "host=\"server.example.com\" port=\"143\" "
                                    "token=<redacted token>");
    assert_string_equal(v.problem, "");
    assert_span(&v, 17, strlen(OAUTHBEARER_IR));
    assert_secret_hidden(raw, &v, OAUTHBEARER_TOKEN, OAUTHBEARER_IR);
}

static void oauthbearer_rfc7628_error_step_is_answered_with_AQ(void **state)
{
    (void)state;
    struct auth_decoder a;
    struct auth_view v;
    char raw[256];
    snprintf(raw, sizeof raw, "AUTH OAUTHBEARER %s\r\n", OAUTHBEARER_IR);
    auth_init(&a);
    command(&a, &v, raw);
    reply(&a, &v,
          "334 eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIiwic2NvcGUiOiJleGFtcGxlX3Njb3BlIiwib3BlbmlkLWNvbm"
          "ZpZ3VyYXRpb24iOiJodHRwczovL2V4YW1wbGUuY29tLy53ZWxsLWtub3duL29wZW5pZC1jb25maWd1cmF0aW9u"
          "In0=\r\n");
    assert_string_equal(v.text,
                        "AUTH OAUTHBEARER error challenge {\"status\":\"invalid_token\",\"scope\":"
                        "\"example_scope\",\"openid-configuration\":\"https://example.com/"
                        ".well-known/openid-configuration\"}");
    client(&a, &v, "AQ==\r\n");
    assert_string_equal(v.text, "AUTH OAUTHBEARER ^A acknowledging the error");
    assert_string_equal(v.problem, "");
    assert_span(&v, 0, 0);
    reply(&a, &v, "535 5.7.8 Authentication credentials invalid\r\n");
    assert_string_equal(v.text, "AUTH OAUTHBEARER for user@example.com: rejected (535 5.7.8)");
}

static void oauthbearer_empty_answer_to_an_error_is_a_problem(void **state)
{
    (void)state;
    struct auth_decoder a;
    struct auth_view v;
    char raw[256];
    snprintf(raw, sizeof raw, "AUTH OAUTHBEARER %s\r\n", OAUTHBEARER_IR);
    auth_init(&a);
    command(&a, &v, raw);
    reply(&a, &v, "334 eyJzdGF0dXMiOiI0MDEifQ==\r\n");
    client(&a, &v, "\r\n");
    assert_non_null(strstr(v.problem, "must send AQ=="));
}

static void oauthbearer_without_gs2_header_is_a_problem_and_all_secret(void **state)
{
    (void)state;
    struct auth_decoder a;
    struct auth_view v;
    const char *raw = "AUTH OAUTHBEARER YXV0aD1CZWFyZXIgVAEB\r\n"; /* auth=Bearer T^A^A */
    auth_init(&a);
    command(&a, &v, raw);
    assert_non_null(strstr(v.problem, "GS2 header"));
    assert_string_equal(v.redacted, "AUTH OAUTHBEARER message=<redacted>");
    assert_secret_hidden(raw, &v, "Bearer T", "YXV0aD1CZWFyZXIgVAEB");
}

static void oauthbearer_authzid_escapes_are_undone(void **state)
{
    (void)state;
    struct auth_decoder a;
    struct auth_view v;
    auth_init(&a);
    command(&a, &v, "AUTH OAUTHBEARER bixhPWE9MkNiPTNELAFhdXRoPUJlYXJlciBUAQE=\r\n");
    /* n,a=a=2Cb=3D,^Aauth=Bearer T^A^A */
    assert_string_equal(v.text, "AUTH OAUTHBEARER user=\"a,b=\" token=\"T\"");
    assert_string_equal(a.user, "a,b=");
}

static void oauthbearer_without_initial_response_and_without_authzid(void **state)
{
    (void)state;
    struct auth_decoder a;
    struct auth_view v;
    const char *raw = "biwsAWF1dGg9QmVhcmVyIFQwS0VOAQE=\r\n"; /* n,,^Aauth=Bearer T0KEN^A^A */
    auth_init(&a);
    command(&a, &v, "AUTH OAUTHBEARER\r\n");
    reply(&a, &v, "334 \r\n");
    assert_false(a.oauth_error);
    client(&a, &v, raw);
    assert_string_equal(v.text, "AUTH OAUTHBEARER token=\"T0KEN\"");
    assert_string_equal(v.redacted, "AUTH OAUTHBEARER token=<redacted token>");
    assert_secret_hidden(raw, &v, "T0KEN", "biwsAWF1dGg9QmVhcmVyIFQwS0VOAQE=");
    reply(&a, &v, "235 2.7.0 OK\r\n");
    assert_string_equal(v.text, "AUTH OAUTHBEARER: accepted (235 2.7.0)");
}

/* ---- unknown mechanisms ------------------------------------------------------------------ */

static void unknown_mechanism_shows_escaped_bytes_and_redacts_the_whole_payload(void **state)
{
    (void)state;
    struct auth_decoder a;
    struct auth_view v;
    /* RFC 5802's SCRAM client-first message, "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL" */
    const char *raw = "AUTH SCRAM-SHA-1 biwsbj11c2VyLHI9ZnlrbytkMmxiYkZnT05Sdjlxa3hkYXdM\r\n";
    auth_init(&a);
    command(&a, &v, raw);
    assert_int_equal(a.mech, AUTH_MECH_OTHER);
    assert_string_equal(v.text, "AUTH SCRAM-SHA-1 \"n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL\"");
    assert_string_equal(v.redacted, "AUTH SCRAM-SHA-1 <redacted 36 bytes>");
    assert_span(&v, 17, 48);
    assert_secret_hidden(raw, &v, "fyko+d2lbbFgONRv9qkxdawL",
                         "biwsbj11c2VyLHI9ZnlrbytkMmxiYkZnT05Sdjlxa3hkYXdM");
    reply(&a, &v, "334 eAB5\r\n");
    assert_string_equal(v.text, "AUTH SCRAM-SHA-1 challenge \"x\\x00y\"");
    client(&a, &v, "c2VjcmV0\r\n");
    assert_string_equal(v.redacted, "AUTH SCRAM-SHA-1 <redacted 6 bytes>");
    assert_secret_hidden("c2VjcmV0\r\n", &v, "secret", "c2VjcmV0");
    reply(&a, &v, "504 5.5.4 Unrecognized authentication type\r\n");
    assert_string_equal(v.text, "AUTH SCRAM-SHA-1: mechanism not supported (504 5.5.4)");
}

static void mechanism_name_is_upper_cased_and_bad_names_are_a_problem(void **state)
{
    (void)state;
    struct auth_decoder a;
    struct auth_view v;
    auth_init(&a);
    command(&a, &v, "auth plain AGFsaWNlAHNlY3JldA==\r\n");
    assert_int_equal(a.mech, AUTH_MECH_PLAIN);
    assert_string_equal(a.mech_name, "PLAIN");
    assert_string_equal(v.problem, "");
    command(&a, &v, "AUTH P\x01\xffLAIN\r\n");
    assert_int_equal(a.mech, AUTH_MECH_OTHER);
    assert_string_equal(a.mech_name, "P\\x01\\xFFLAIN");
    assert_non_null(strstr(v.problem, "not a valid SASL name"));
}

/* ---- "=", "*" ---------------------------------------------------------------------------- */

static void equals_sign_is_an_empty_initial_response(void **state)
{
    (void)state;
    struct auth_decoder a;
    struct auth_view v;
    auth_init(&a);
    command(&a, &v, "AUTH PLAIN =\r\n");
    assert_true(a.has_ir);
    assert_string_equal(v.text, "AUTH PLAIN message=\"\"");
    assert_non_null(strstr(v.problem, "no NUL separator"));
    command(&a, &v, "AUTH EXTERNAL =\r\n");
    assert_string_equal(v.text, "AUTH EXTERNAL <empty>");
    assert_string_equal(v.problem, "");
}

static void equals_sign_and_empty_line_are_empty_responses(void **state)
{
    (void)state;
    struct auth_decoder a;
    struct auth_view v;
    auth_init(&a);
    command(&a, &v, "AUTH LOGIN YWxpY2U=\r\n");
    client(&a, &v, "=\r\n");
    assert_string_equal(v.text, "AUTH LOGIN password=\"\"");
    assert_string_equal(v.redacted, "AUTH LOGIN password=<redacted>");
    command(&a, &v, "AUTH LOGIN\r\n");
    client(&a, &v, "\r\n");
    assert_string_equal(v.text, "AUTH LOGIN user=\"\"");
}

static void star_cancels_is_not_secret_and_the_summary_says_cancelled(void **state)
{
    (void)state;
    struct auth_decoder a;
    struct auth_view v;
    auth_init(&a);
    command(&a, &v, "AUTH LOGIN\r\n");
    reply(&a, &v, "334 VXNlcm5hbWU6\r\n");
    client(&a, &v, "*\r\n");
    assert_string_equal(v.text, "AUTH LOGIN cancelled by the client (*)");
    assert_string_equal(v.redacted, v.text);
    assert_span(&v, 0, 0);
    assert_string_equal(v.problem, "");
    reply(&a, &v, "501 5.7.0 Authentication cancelled\r\n");
    assert_string_equal(v.text, "AUTH LOGIN: cancelled (501 5.7.0)");
    assert_false(a.active);
}

/* ---- summaries --------------------------------------------------------------------------- */

static void summary_words_follow_the_reply_code(void **state)
{
    (void)state;
    static const struct {
        const char *reply, *summary;
    } cases[] = {
        {"454 4.7.0 Temporary authentication failure\r\n",
         "AUTH PLAIN for alice: temporary failure (454 4.7.0)"},
        {"534 5.7.9 Authentication mechanism is too weak\r\n",
         "AUTH PLAIN for alice: mechanism too weak (534 5.7.9)"},
        {"538 5.7.11 Encryption required\r\n",
         "AUTH PLAIN for alice: encryption required (538 5.7.11)"},
        {"501 5.5.2 Cannot decode response\r\n", "AUTH PLAIN for alice: syntax error (501 5.5.2)"},
        {"503 5.5.1 Already authenticated\r\n",
         "AUTH PLAIN for alice: refused (bad sequence of commands) (503 5.5.1)"},
        {"235 Authentication successful\r\n", "AUTH PLAIN for alice: accepted (235)"},
        {"535-5.7.8 Username and Password not accepted.\r\n535 5.7.8 Learn more\r\n",
         "AUTH PLAIN for alice: rejected (535 5.7.8)"},
        {"535 5.7.8x no\r\n", "AUTH PLAIN for alice: rejected (535)"},
        {"535", "AUTH PLAIN for alice: rejected (535)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct auth_decoder a;
        struct auth_view v;
        auth_init(&a);
        command(&a, &v, "AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n");
        reply(&a, &v, cases[i].reply);
        assert_string_equal(v.text, cases[i].summary);
        assert_false(a.active);
    }
}

static void summary_without_a_known_user_omits_for(void **state)
{
    (void)state;
    struct auth_decoder a;
    struct auth_view v;
    auth_init(&a);
    command(&a, &v, "AUTH CRAM-MD5\r\n");
    reply(&a, &v, "454 4.7.0 Temporary authentication failure\r\n");
    assert_string_equal(v.text, "AUTH CRAM-MD5: temporary failure (454 4.7.0)");
}

static void unexpected_reply_code_is_a_problem_and_the_exchange_goes_on(void **state)
{
    (void)state;
    struct auth_decoder a;
    struct auth_view v;
    auth_init(&a);
    command(&a, &v, "AUTH LOGIN\r\n");
    reply(&a, &v, "354 go ahead\r\n");
    assert_string_equal(v.text, "AUTH LOGIN: unexpected reply 354");
    assert_non_null(strstr(v.problem, "unexpected reply 354"));
    assert_true(a.active);
}

/* ---- not in an exchange ------------------------------------------------------------------ */

static void lines_and_replies_outside_an_exchange_give_no_view(void **state)
{
    (void)state;
    struct auth_decoder a;
    struct auth_view v;
    auth_init(&a);
    client(&a, &v, "AGFsaWNlAHNlY3JldA==\r\n");
    assert_false(v.decoded);
    assert_string_equal(v.problem, "");
    reply(&a, &v, "334 VXNlcm5hbWU6\r\n");
    assert_false(v.decoded);
    reply(&a, &v, "235 2.7.0 OK\r\n");
    assert_false(v.decoded);
    command(&a, &v, "MAIL FROM:<a@b>\r\n");
    assert_false(v.decoded);
    command(&a, &v, "AUTHX PLAIN\r\n");
    assert_false(v.decoded);
    assert_false(a.active);
}

static void a_second_final_reply_gives_no_view(void **state)
{
    (void)state;
    struct auth_decoder a;
    struct auth_view v;
    auth_init(&a);
    command(&a, &v, "AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n");
    reply(&a, &v, "235 2.7.0 OK\r\n");
    assert_true(v.decoded);
    reply(&a, &v, "250 OK\r\n");
    assert_false(v.decoded);
}

/* ---- broken input ------------------------------------------------------------------------ */

static void invalid_base64_initial_response_is_shown_as_such_and_redacted(void **state)
{
    (void)state;
    struct auth_decoder a;
    struct auth_view v;
    const char *raw = "AUTH PLAIN AGFsaWNlAHNlY3\r\n"; /* 14 bytes, cut */
    auth_init(&a);
    command(&a, &v, raw);
    assert_string_equal(v.text, "AUTH PLAIN <invalid base64, 14 bytes>");
    /* Invalid base64 may be a password sent as it is: its length is not told. */
    assert_string_equal(v.redacted, "AUTH PLAIN <invalid base64>");
    assert_string_equal(v.problem, "AUTH PLAIN initial response is not valid base64 (its length "
                                   "is not a multiple of 4)");
    assert_span(&v, 11, 14);
    char out[64];
    assert_string_equal(redact(raw, &v, out, sizeof out), "AUTH PLAIN <redacted>\r\n");
}

static void base64_that_openssl_alone_would_accept_is_still_invalid(void **state)
{
    (void)state;
    /* EVP_DecodeBlock takes "=" mid-string as zero bits and trims blanks at both ends. */
    static const char *lines[] = {
        "AUTH PLAIN QQ==QQ==\r\n",
        "AUTH PLAIN AGFsaWNlAHNl Y3JldA==\r\n",
        "AUTH PLAIN AGFsaWNlAHNlY3JldA== \r\n",
        "AUTH PLAIN AGFsaWNlAHNlY3JldA=\r\n",
        "AUTH PLAIN ====\r\n",
        "AUTH PLAIN AGFsaWNlAHNlY3Jld\x80==\r\n",
    };
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++) {
        struct auth_decoder a;
        struct auth_view v;
        auth_init(&a);
        command(&a, &v, lines[i]);
        assert_non_null(strstr(v.problem, "is not valid base64"));
        assert_non_null(strstr(v.text, "<invalid base64"));
        assert_int_equal(v.secret_off, 11);
        assert_int_equal(v.secret_len, strlen(lines[i]) - 13);
    }
}

static void invalid_base64_response_line_is_redacted_whole(void **state)
{
    (void)state;
    struct auth_decoder a;
    struct auth_view v;
    auth_init(&a);
    command(&a, &v, "AUTH LOGIN YWxpY2U=\r\n");
    client(&a, &v, "secret!!\r\n"); /* a client that forgot to encode */
    assert_string_equal(v.text, "AUTH LOGIN <invalid base64, 8 bytes>");
    assert_string_equal(v.problem,
                        "AUTH LOGIN response is not valid base64 (bad character at offset 6)");
    assert_span(&v, 0, 8);
    assert_null(strstr(v.redacted, "secret"));
    char out[64];
    assert_string_equal(v.redacted, "AUTH LOGIN <invalid base64>");
    assert_string_equal(redact("secret!!\r\n", &v, out, sizeof out), "<redacted>\r\n");
}

static void invalid_base64_challenge_is_a_problem(void **state)
{
    (void)state;
    struct auth_decoder a;
    struct auth_view v;
    auth_init(&a);
    command(&a, &v, "AUTH LOGIN\r\n");
    reply(&a, &v, "334 Username:\r\n");
    assert_string_equal(v.text, "AUTH LOGIN challenge <invalid base64, 9 bytes>");
    assert_non_null(strstr(v.problem, "AUTH LOGIN challenge is not valid base64"));
    reply(&a, &v, "334\r\n"); /* bare code: an empty challenge */
    assert_string_equal(v.problem, "");
    assert_string_equal(v.text, "AUTH LOGIN prompt \"\" (next line: the user name)");
}

static void empty_line_only_auth_and_missing_mechanism(void **state)
{
    (void)state;
    struct auth_decoder a;
    struct auth_view v;
    auth_init(&a);
    command(&a, &v, "");
    assert_false(v.decoded);
    auth_on_command(&a, NULL, 0, &v);
    assert_false(v.decoded);
    command(&a, &v, "AUTH\r\n");
    assert_true(v.decoded);
    assert_string_equal(v.text, "AUTH <no mechanism>");
    assert_string_equal(v.problem, "AUTH command has no mechanism name");
    assert_int_equal(a.mech, AUTH_MECH_NONE);
    command(&a, &v, "AUTH    \r\n");
    assert_string_equal(v.text, "AUTH <no mechanism>");
    reply(&a, &v, "501 5.5.4 Syntax: AUTH mechanism\r\n");
    assert_string_equal(v.text, "AUTH: syntax error (501 5.5.4)");
    client(&a, &v, "\r\n");
    assert_false(v.decoded);
}

static void terminator_is_optional_and_bare_lf_is_accepted(void **state)
{
    (void)state;
    struct auth_decoder a;
    struct auth_view v;
    static const char *lines[] = {
        "AUTH PLAIN AGFsaWNlAHNlY3JldA==", "AUTH PLAIN AGFsaWNlAHNlY3JldA==\n",
        "AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n"};
    for (size_t i = 0; i < 3; i++) {
        auth_init(&a);
        command(&a, &v, lines[i]);
        assert_string_equal(v.redacted,
                            "AUTH PLAIN authzid=\"\" authcid=\"alice\" password=<redacted>");
        assert_span(&v, 11, 20);
    }
}

static void nul_bytes_in_the_raw_line_are_invalid_base64_not_a_crash(void **state)
{
    (void)state;
    struct auth_decoder a;
    struct auth_view v;
    static const uint8_t line[] = "AUTH PLAIN AGFs\0\0\0\0aWNl\r\n";
    auth_init(&a);
    auth_on_command(&a, line, sizeof line - 1, &v);
    assert_string_equal(v.text, "AUTH PLAIN <invalid base64, 12 bytes>");
    assert_string_equal(v.problem, "AUTH PLAIN initial response is not valid base64 (bad "
                                   "character at offset 4)");
    assert_span(&v, 11, 12);
    static const uint8_t nul_line[] = "\0\0\0\0\r\n";
    auth_on_client_line(&a, nul_line, sizeof nul_line - 1, &v);
    assert_span(&v, 0, 4);
    assert_non_null(strstr(v.problem, "not valid base64"));
}

static void twenty_kilobyte_lines_are_over_long_and_redacted_whole(void **state)
{
    (void)state;
    struct auth_decoder a;
    struct auth_view v;
    size_t n = 20 * 1024;
    uint8_t *line = malloc(n + 2);
    assert_non_null(line);
    memcpy(line, "AUTH PLAIN ", 11);
    memset(line + 11, 'A', n - 11);
    memcpy(line + n, "\r\n", 2);
    auth_init(&a);
    auth_on_command(&a, line, n + 2, &v);
    assert_true(v.decoded);
    assert_string_equal(v.text, "AUTH PLAIN <over-long initial response, 20469 bytes>");
    assert_non_null(strstr(v.problem, "longer than the 12288"));
    assert_span(&v, 11, n - 11);
    assert_true(a.active);

    memset(line, 'A', n);
    command(&a, &v, "AUTH LOGIN YWxpY2U=\r\n");
    auth_on_client_line(&a, line, n + 2, &v);
    assert_string_equal(v.text, "AUTH LOGIN <over-long response, 20480 bytes>");
    assert_span(&v, 0, n);
    /* the boundary: 12288 bytes of base64 still decode (PLAIN without NULs: a problem) */
    auth_on_client_line(&a, line, 12288, &v);
    assert_null(strstr(v.text, "over-long"));
    free(line);
}

static void long_decoded_values_are_cut_with_an_ellipsis_and_never_leak(void **state)
{
    (void)state;
    struct auth_decoder a;
    struct auth_view v;
    /* \0 + 3000 x "u" + \0 + "secret": the text is cut before the password */
    uint8_t msg[3008];
    msg[0] = 0;
    memset(msg + 1, 'u', 3000);
    msg[3001] = 0;
    memcpy(msg + 3002, "secret", 6);
    char line[5000] = "AUTH PLAIN ";
    EVP_EncodeBlock((unsigned char *)line + 11, msg, sizeof msg);
    auth_init(&a);
    command(&a, &v, line);
    assert_int_equal(strlen(v.text), AUTH_TEXT_MAX - 1);
    assert_string_equal(v.text + AUTH_TEXT_MAX - 4, "...");
    assert_null(strstr(v.text, "secret")); /* cut off */
    assert_null(strstr(v.redacted, "secret"));
    assert_int_equal(strlen(a.user), AUTH_USER_MAX - 1);
    assert_string_equal(a.user + AUTH_USER_MAX - 4, "...");
    assert_span(&v, 11, strlen(line) - 11);
}

static void redact_line_clamps_spans_and_truncates_to_the_buffer(void **state)
{
    (void)state;
    const uint8_t *raw = (const uint8_t *)"AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n";
    char out[64];
    assert_int_equal(auth_redact_line(raw, 33, 0, 0, out, sizeof out), 33);
    assert_string_equal(out, "AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n");
    auth_redact_line(raw, 33, 11, 1000, out, sizeof out); /* to the end, terminator too */
    assert_string_equal(out, "AUTH PLAIN <redacted>");
    auth_redact_line(raw, 33, 1000, 5, out, sizeof out); /* beyond the end: nothing */
    assert_string_equal(out, "AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n");
    assert_int_equal(auth_redact_line(raw, 33, 11, 20, out, 16), 15);
    assert_string_equal(out, "AUTH PLAIN <red");
    assert_int_equal(auth_redact_line(raw, 33, 11, 20, out, 0), 0);
    assert_int_equal(auth_redact_line(NULL, 0, 0, 0, out, sizeof out), 0);
    assert_string_equal(out, "");
}

/* ---- garbage ----------------------------------------------------------------------------- */

static uint32_t next_random(uint32_t *seed)
{
    *seed = *seed * 1103515245u + 12345u;
    return *seed >> 8;
}

/* Random bytes, mostly from a set that hits the separators the parsers look for. */
static size_t random_bytes(uint32_t *seed, uint8_t *out, size_t max)
{
    static const uint8_t pick[] = {0, 1, 1, ',', '=', ' ', 'a', 'n', '\r', '\n', 0xff, '"'};
    size_t n = next_random(seed) % max;
    for (size_t i = 0; i < n; i++) {
        uint32_t r = next_random(seed);
        out[i] = r % 3 ? pick[(r >> 4) % sizeof pick] : (uint8_t)(r >> 12);
    }
    return n;
}

/* A line: raw garbage, or an optional prefix and the base64 of garbage. */
static size_t random_line(uint32_t *seed, const char *prefix, uint8_t *out, size_t max)
{
    uint8_t raw[600];
    size_t p = strlen(prefix), n = random_bytes(seed, raw, sizeof raw);
    memcpy(out, prefix, p);
    if (next_random(seed) % 4 == 0) {
        memcpy(out + p, raw, n < max - p ? n : max - p);
        return p + (n < max - p ? n : max - p);
    }
    return p + (size_t)EVP_EncodeBlock(out + p, raw, (int)n);
}

static void assert_view_sane(const struct auth_view *v, size_t line_len)
{
    assert_printable(v->text, sizeof v->text);
    assert_printable(v->redacted, sizeof v->redacted);
    assert_true(strnlen(v->problem, sizeof v->problem) < sizeof v->problem);
    assert_true(v->secret_off <= line_len && v->secret_len <= line_len - v->secret_off);
    /* every structured field lies inside its texts, a shown value between quotes, a secret
     * one in the redacted text as a mark */
    assert_true(v->nfields <= AUTH_FIELDS_MAX);
    size_t tlen = strlen(v->text), rlen = strlen(v->redacted);
    for (unsigned i = 0; i < v->nfields; i++) {
        const struct auth_field *f = &v->fields[i];
        assert_true(f->name[0] && strnlen(f->name, sizeof f->name) < sizeof f->name);
        assert_true(f->off >= 1 && f->off + f->len < tlen + 1);
        assert_int_equal(v->text[f->off - 1], '"');
        assert_int_equal(v->text[f->off + f->len], '"');
        assert_true(f->roff + f->rlen <= rlen);
        if (f->secret)
            assert_memory_equal(v->redacted + f->roff, "<redacted", 9);
        else
            assert_memory_equal(v->redacted + f->roff, v->text + f->off, f->len);
    }
}

static void binary_garbage_in_every_step_keeps_views_printable_and_in_bounds(void **state)
{
    (void)state;
    static const char *const prefixes[] = {"AUTH PLAIN ",   "AUTH LOGIN ",       "AUTH CRAM-MD5 ",
                                           "AUTH XOAUTH2 ", "AUTH OAUTHBEARER ", "AUTH X ",
                                           "AUTH ",         "AUTH LOGIN",        ""};
    uint32_t seed = 42;
    uint8_t line[1000];
    struct auth_decoder a;
    struct auth_view v;
    auth_init(&a);
    for (int i = 0; i < 20000; i++) {
        const char *prefix = prefixes[next_random(&seed) % 9];
        size_t n;
        switch (next_random(&seed) % 3) {
        case 0:
            n = random_line(&seed, prefix, line, sizeof line);
            auth_on_command(&a, line, n, &v);
            break;
        case 1:
            n = random_line(&seed, "", line, sizeof line);
            auth_on_client_line(&a, line, n, &v);
            break;
        default: {
            int code = next_random(&seed) % 2 ? 334 : (int)(next_random(&seed) % 700);
            n = random_line(&seed, "334 ", line, sizeof line);
            auth_on_reply(&a, code, line, n, &v);
            n = 0; /* replies carry no secret span */
        }
        }
        assert_view_sane(&v, n);
        assert_printable(a.user, sizeof a.user);
        assert_printable(a.mech_name, sizeof a.mech_name);
    }
}

/* The field named name in v, as text (secret false) or redacted text shows it. */
static const char *field(const struct auth_view *v, const char *name, bool redacted, char *out,
                         size_t size)
{
    for (unsigned i = 0; i < v->nfields; i++) {
        const struct auth_field *f = &v->fields[i];
        if (strcmp(f->name, name) != 0) continue;
        snprintf(out, size, "%.*s", (int)(redacted ? f->rlen : f->len),
                 (redacted ? v->redacted + f->roff : v->text + f->off));
        return out;
    }
    return NULL;
}

static void the_structured_view_names_each_value_its_step_and_the_outcome(void **state)
{
    (void)state;
    struct auth_decoder a;
    struct auth_view v;
    char buf[AUTH_TEXT_MAX];
    auth_init(&a);
    command(&a, &v, "AUTH PLAIN AGFsaWNlAHMzY3JldA==\r\n"); /* \0alice\0s3cret */
    assert_string_equal(v.step, "command");
    assert_int_equal(v.nfields, 3);
    assert_string_equal(field(&v, "authzid", false, buf, sizeof buf), "");
    assert_string_equal(field(&v, "authcid", false, buf, sizeof buf), "alice");
    assert_string_equal(field(&v, "authcid", true, buf, sizeof buf), "alice");
    assert_string_equal(field(&v, "password", false, buf, sizeof buf), "s3cret");
    assert_string_equal(field(&v, "password", true, buf, sizeof buf), "<redacted>");
    assert_false(v.fields[1].secret);
    assert_true(v.fields[2].secret);
    assert_null(v.outcome);
    assert_view_sane(&v, 32);
    reply(&a, &v, "235 2.7.0 Authentication successful\r\n");
    assert_string_equal(v.step, "outcome");
    assert_string_equal(v.outcome, "accepted");
    assert_int_equal(v.code, 235);
    assert_int_equal(v.nfields, 0);

    /* LOGIN: the prompts are "prompt" fields of "challenge" steps; the answers are named by
     * their place, whatever the prompt says */
    command(&a, &v, "AUTH LOGIN\r\n");
    assert_int_equal(v.nfields, 0);
    reply(&a, &v, "334 VXNlcm5hbWU6\r\n"); /* Username: */
    assert_string_equal(v.step, "challenge");
    assert_string_equal(field(&v, "prompt", false, buf, sizeof buf), "Username:");
    client(&a, &v, "Ym9i\r\n");
    assert_string_equal(v.step, "response");
    assert_string_equal(field(&v, "user", false, buf, sizeof buf), "bob");
    reply(&a, &v, "334 UGFzc3dvcmQ6\r\n");
    client(&a, &v, "cHci\r\n"); /* pw" : the quote is escaped in both forms */
    assert_string_equal(field(&v, "password", false, buf, sizeof buf), "pw\\\"");
    assert_string_equal(field(&v, "password", true, buf, sizeof buf), "<redacted>");
    assert_view_sane(&v, 6);
    reply(&a, &v, "535 5.7.8 Authentication credentials invalid\r\n");
    assert_string_equal(v.outcome, "rejected");
    assert_int_equal(v.code, 535);

    /* a 3xx other than 334 is neither a challenge nor an outcome */
    command(&a, &v, "AUTH LOGIN\r\n");
    reply(&a, &v, "354 what\r\n");
    assert_string_equal(v.step, "unexpected");
    assert_null(v.outcome);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(plain_initial_response_shows_the_user_and_hides_the_password),
        cmocka_unit_test(redacted_plain_line_keeps_the_command_and_the_terminator),
        cmocka_unit_test(redaction_does_not_tell_a_secrets_length),
        cmocka_unit_test(rfc4616_example_with_an_authorization_identity),
        cmocka_unit_test(rfc4616_example_tim_then_accepted_summary_names_tim),
        cmocka_unit_test(
            plain_without_initial_response_gets_an_empty_challenge_then_the_credentials),
        cmocka_unit_test(plain_message_without_nul_separators_is_a_problem_and_stays_secret),
        cmocka_unit_test(plain_message_with_one_nul_is_a_problem_and_stays_secret),
        cmocka_unit_test(plain_with_empty_authcid_or_nul_in_password_is_a_problem),
        cmocka_unit_test(decoded_values_are_escaped_so_the_text_stays_printable),
        cmocka_unit_test(login_without_initial_response_asks_user_then_password),
        cmocka_unit_test(login_counts_steps_and_ignores_prompts_that_lie),
        cmocka_unit_test(
            login_with_initial_response_takes_it_as_the_user_and_next_line_as_password),
        cmocka_unit_test(login_third_response_is_unexpected_and_secret),
        cmocka_unit_test(cram_md5_rfc2195_example_shows_challenge_and_user_and_hides_digest),
        cmocka_unit_test(cram_md5_response_without_space_or_with_short_digest_is_a_problem),
        cmocka_unit_test(cram_md5_with_an_initial_response_is_a_problem_and_secret),
        cmocka_unit_test(xoauth2_google_example_shows_the_user_and_hides_the_token),
        cmocka_unit_test(xoauth2_error_challenge_shows_the_json_and_the_empty_answer),
        cmocka_unit_test(xoauth2_non_empty_answer_to_an_error_is_a_problem_and_secret),
        cmocka_unit_test(
            xoauth2_without_initial_response_sends_the_message_after_an_empty_challenge),
        cmocka_unit_test(xoauth2_message_without_final_separators_or_auth_is_a_problem),
        cmocka_unit_test(xoauth2_other_auth_schemes_and_unknown_keys_are_secret),
        cmocka_unit_test(oauthbearer_rfc7628_example_shows_user_host_port_and_hides_the_token),
        cmocka_unit_test(oauthbearer_rfc7628_error_step_is_answered_with_AQ),
        cmocka_unit_test(oauthbearer_empty_answer_to_an_error_is_a_problem),
        cmocka_unit_test(oauthbearer_without_gs2_header_is_a_problem_and_all_secret),
        cmocka_unit_test(oauthbearer_authzid_escapes_are_undone),
        cmocka_unit_test(oauthbearer_without_initial_response_and_without_authzid),
        cmocka_unit_test(unknown_mechanism_shows_escaped_bytes_and_redacts_the_whole_payload),
        cmocka_unit_test(mechanism_name_is_upper_cased_and_bad_names_are_a_problem),
        cmocka_unit_test(equals_sign_is_an_empty_initial_response),
        cmocka_unit_test(equals_sign_and_empty_line_are_empty_responses),
        cmocka_unit_test(star_cancels_is_not_secret_and_the_summary_says_cancelled),
        cmocka_unit_test(summary_words_follow_the_reply_code),
        cmocka_unit_test(summary_without_a_known_user_omits_for),
        cmocka_unit_test(unexpected_reply_code_is_a_problem_and_the_exchange_goes_on),
        cmocka_unit_test(lines_and_replies_outside_an_exchange_give_no_view),
        cmocka_unit_test(a_second_final_reply_gives_no_view),
        cmocka_unit_test(invalid_base64_initial_response_is_shown_as_such_and_redacted),
        cmocka_unit_test(base64_that_openssl_alone_would_accept_is_still_invalid),
        cmocka_unit_test(invalid_base64_response_line_is_redacted_whole),
        cmocka_unit_test(invalid_base64_challenge_is_a_problem),
        cmocka_unit_test(empty_line_only_auth_and_missing_mechanism),
        cmocka_unit_test(terminator_is_optional_and_bare_lf_is_accepted),
        cmocka_unit_test(nul_bytes_in_the_raw_line_are_invalid_base64_not_a_crash),
        cmocka_unit_test(twenty_kilobyte_lines_are_over_long_and_redacted_whole),
        cmocka_unit_test(long_decoded_values_are_cut_with_an_ellipsis_and_never_leak),
        cmocka_unit_test(redact_line_clamps_spans_and_truncates_to_the_buffer),
        cmocka_unit_test(binary_garbage_in_every_step_keeps_views_printable_and_in_bounds),
        cmocka_unit_test(the_structured_view_names_each_value_its_step_and_the_outcome),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
