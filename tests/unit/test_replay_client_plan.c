/* test_replay_client_plan.c - unit tests for what replay-client sends (replay_client_plan.h):
 * a synthetic body of exactly the recorded size, a whole message dot-stuffed with its end,
 * the steps smtptap answered itself left out, and the reply classes compared. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdbool.h>
#include <string.h>

#include "smtptap/replay_client_plan.h"

static void synthetic_bodies_have_the_recorded_size(void **state)
{
    (void)state;
    for (uint64_t size = 60; size < 400; size += 7) {
        struct buf b;
        buf_init(&b);
        replay_client_synthetic(size, &b);
        assert_int_equal(buf_size(&b), size);
        const char *p = (const char *)buf_head(&b);
        assert_memory_equal(p, "Subject: smtptap replay-client synthetic body\r\n\r\n", 49);
        assert_memory_equal(p + size - 2, "\r\n", 2);
        buf_free(&b);
    }
}

static void a_whole_message_is_dot_stuffed_and_ended(void **state)
{
    (void)state;
    static uint8_t body[] = "Subject: x\r\n\r\n.dot\r\nlast\r\n";
    struct capture_step s = {.kind = STEP_DATA_END,
                             .msg_lines = 4,
                             .content_lines = 4,
                             .body = body,
                             .body_len = sizeof body - 1,
                             .msg_size = 25};
    struct buf b;
    buf_init(&b);
    bool synthetic = true;
    replay_client_body(&s, &b, &synthetic);
    assert_false(synthetic);
    buf_append(&b, "", 1);
    assert_string_equal((const char *)buf_head(&b), "Subject: x\r\n\r\n..dot\r\nlast\r\n.\r\n");
    buf_free(&b);
    s.content_lines = 3; /* the capture has only the first lines: synthetic */
    buf_init(&b);
    replay_client_body(&s, &b, &synthetic);
    assert_true(synthetic);
    assert_int_equal(buf_size(&b), 49 + 3); /* the header alone (25 < 49 + 3) and ".\r\n" */
    buf_free(&b);
}

static void what_is_sent_and_how_replies_are_judged(void **state)
{
    (void)state;
    struct capture_step steps[] = {
        {.kind = STEP_GREETING},
        {.kind = STEP_COMMAND, .command = "EHLO a", .code = 250},
        {.kind = STEP_COMMAND, .command = "STARTTLS", .code = 220, .local = true},
        {.kind = STEP_TLS},
        {.kind = STEP_COMMAND, .command = "EHLO a", .code = 250, .local = true},
        {.kind = STEP_COMMAND,
         .command = "RCPT TO:<x@busy>",
         .code = 450,
         .local = true,
         .fault = true},
        {.kind = STEP_DATA_END, .code = 250},
    };
    struct capture_dialog d = {.steps = steps, .n = 7};
    static const bool sends[] = {false, true, false, false, false, true, true};
    for (size_t i = 0; i < d.n; i++) assert_int_equal(replay_client_sends(&d, i), sends[i]);
    assert_false(replay_client_class_differs(250, 251));
    assert_true(replay_client_class_differs(250, 450));
    assert_true(replay_client_class_differs(450, 0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(synthetic_bodies_have_the_recorded_size),
        cmocka_unit_test(a_whole_message_is_dot_stuffed_and_ended),
        cmocka_unit_test(what_is_sent_and_how_replies_are_judged),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
