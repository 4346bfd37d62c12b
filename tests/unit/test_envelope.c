/* test_envelope.c - unit tests for the accepted envelope (envelope.h): MAIL and RCPT lines
 * commit or drop by their replies, in order, pipelined or not; a message's end, RSET or a
 * new hello starts over. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "smtptap/envelope.h"

#define LIT(s) (const uint8_t *)(s), (sizeof(s) - 1)

static int setup(void **state)
{
    static struct envelope e;
    envelope_init(&e);
    *state = &e;
    return 0;
}

static int teardown(void **state)
{
    envelope_free(*state);
    return 0;
}

static void assert_rcpts(const struct envelope *e, const char *const *want, size_t n)
{
    const char *got[8];
    assert_int_equal(envelope_rcpts(e, got, 8), n);
    for (size_t i = 0; i < n; i++) assert_string_equal(got[i], want[i]);
}

static void pipelined_replies_pair_in_order(void **state)
{
    struct envelope *e = *state;
    envelope_command(e, SMTP_VERB_MAIL, LIT("MAIL FROM:<a@x> SIZE=10\r\n"));
    envelope_command(e, SMTP_VERB_RCPT, LIT("RCPT TO:<b@y>\r\n"));
    envelope_command(e, SMTP_VERB_RCPT, LIT("RCPT TO:<reject@y>\r\n"));
    envelope_command(e, SMTP_VERB_RCPT, LIT("RCPT TO:<c@y>\n"));
    envelope_reply(e, SMTP_VERB_MAIL, 250);
    envelope_reply(e, SMTP_VERB_RCPT, 250);
    envelope_reply(e, SMTP_VERB_RCPT, 550);
    envelope_reply(e, SMTP_VERB_RCPT, 251);
    assert_string_equal(envelope_mail(e), "MAIL FROM:<a@x> SIZE=10");
    const char *want[] = {"RCPT TO:<b@y>", "RCPT TO:<c@y>"};
    assert_rcpts(e, want, 2);
}

static void refused_mail_keeps_nothing_and_reset_starts_over(void **state)
{
    struct envelope *e = *state;
    envelope_command(e, SMTP_VERB_MAIL, LIT("MAIL FROM:<a@x>\r\n"));
    envelope_reply(e, SMTP_VERB_MAIL, 451);
    assert_string_equal(envelope_mail(e), "");
    envelope_command(e, SMTP_VERB_MAIL, LIT("MAIL FROM:<b@x>\r\n"));
    envelope_command(e, SMTP_VERB_RCPT, LIT("RCPT TO:<c@y>\r\n"));
    envelope_reply(e, SMTP_VERB_MAIL, 250);
    envelope_reply(e, SMTP_VERB_RCPT, 250);
    envelope_reset(e);
    assert_string_equal(envelope_mail(e), "");
    assert_rcpts(e, NULL, 0);
}

static void next_transaction_pipelined_behind_a_message_is_kept(void **state)
{
    struct envelope *e = *state;
    envelope_command(e, SMTP_VERB_MAIL, LIT("MAIL FROM:<one@x>\r\n"));
    envelope_reply(e, SMTP_VERB_MAIL, 250);
    /* BDAT LAST, then the next MAIL before the message's reply */
    envelope_command(e, SMTP_VERB_MAIL, LIT("MAIL FROM:<two@x>\r\n"));
    assert_string_equal(envelope_mail(e), "MAIL FROM:<one@x>");
    envelope_reset(e); /* the first message's reply */
    envelope_reply(e, SMTP_VERB_MAIL, 250);
    assert_string_equal(envelope_mail(e), "MAIL FROM:<two@x>");
}

static void replies_without_commands_and_other_verbs_are_ignored(void **state)
{
    struct envelope *e = *state;
    envelope_reply(e, SMTP_VERB_RCPT, 250);
    envelope_command(e, SMTP_VERB_DATA, LIT("DATA\r\n"));
    envelope_reply(e, SMTP_VERB_DATA, 354);
    assert_int_equal(e->npending, 0);
    assert_string_equal(envelope_mail(e), "");
}

static void hostile_lines_are_cut_and_nul_free(void **state)
{
    struct envelope *e = *state;
    static uint8_t line[5000];
    memset(line, 'a', sizeof line);
    memcpy(line, "MAIL FROM:<\0>", 13);
    envelope_command(e, SMTP_VERB_MAIL, line, sizeof line);
    envelope_reply(e, SMTP_VERB_MAIL, 250);
    assert_int_equal(strlen(envelope_mail(e)), ENVELOPE_LINE_MAX);
    assert_int_equal(envelope_mail(e)[11], '?');
    for (int i = 0; i < ENVELOPE_MAX_PENDING + 10; i++)
        envelope_command(e, SMTP_VERB_RCPT, LIT("RCPT TO:<x@y>\r\n"));
    assert_int_equal(e->npending, ENVELOPE_MAX_PENDING);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(pipelined_replies_pair_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(refused_mail_keeps_nothing_and_reset_starts_over, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(next_transaction_pipelined_behind_a_message_is_kept, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(replies_without_commands_and_other_verbs_are_ignored, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(hostile_lines_are_cut_and_nul_free, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
