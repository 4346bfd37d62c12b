/* test_check_report.c - unit tests for check-client's rows (check_report.h): jsonl events
 * folded into what the client did (the worst session wins), the control row, timeouts and
 * clients that never connected, pass/fail, the table and the JSON. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <jansson.h>
#include <string.h>

#include "smtptap/check_report.h"

static void feed(struct check_row *row, const char *line)
{
    check_row_event(row, line, strlen(line));
}

static const char start[] = "{\"kind\":\"start\",\"session\":1}";
static const char refused[] =
    "{\"kind\":\"verdict\",\"text\":\"verdict: client refused the expired certificate (alert "
    "certificate_expired): good\",\"verdict\":{\"action\":\"refused\",\"good\":true}}";
static const char exposed[] =
    "{\"kind\":\"verdict\",\"text\":\"verdict: client ACCEPTED an expired certificate and then "
    "sent AUTH PLAIN: credentials exposed\",\"verdict\":{\"action\":\"sent-credentials\","
    "\"good\":false}}";

static void test_worst_session_wins(void **state)
{
    (void)state;
    static struct check_report r;
    memset(&r, 0, sizeof r);
    struct check_row *row = check_report_add(&r, "expired", false);
    feed(row, start);
    feed(row, refused);
    feed(row, start);
    feed(row, exposed);
    feed(row, refused); /* a later, better one does not hide it */
    feed(row, "not json at all");
    check_row_finish(row, false, 0);
    assert_int_equal(row->sessions, 2);
    assert_int_equal(row->action, CHECK_SENT_AUTH);
    assert_false(row->good);
    assert_string_equal(row->verdict, "client ACCEPTED an expired certificate and then sent "
                                      "AUTH PLAIN: credentials exposed");
    assert_false(check_report_passed(&r));
}

static void test_control_and_pass(void **state)
{
    (void)state;
    static struct check_report r;
    memset(&r, 0, sizeof r);
    struct check_row *good = check_report_add(&r, "good", true);
    feed(good, start);
    feed(good, "{\"kind\":\"command\",\"line\":\"AUTH PLAIN <redacted>\\r\\n\"}");
    check_row_finish(good, false, 0);
    assert_int_equal(good->action, CHECK_SENT_AUTH);
    assert_true(good->good);
    struct check_row *bad = check_report_add(&r, "expired", false);
    feed(bad, start);
    feed(bad, refused);
    check_row_finish(bad, false, 1);
    assert_int_equal(bad->action, CHECK_REFUSED);
    assert_true(check_report_passed(&r));
    struct buf out;
    buf_init(&out);
    check_report_table(&r, "swaks --tls", &out);
    buf_append(&out, "", 1);
    const char *text = (const char *)buf_head(&out);
    assert_non_null(strstr(text, "smtptap check-client: swaks --tls\n"));
    assert_non_null(strstr(text, "expired         refused at handshake  client refused the "));
    assert_non_null(strstr(text, "PASS: the client refused every bad certificate"));
    buf_free(&out);
    /* the control does not count: a client that works nowhere is not failed by it */
    good->good = false;
    assert_true(check_report_passed(&r));
}

static void test_timeout_and_no_connection(void **state)
{
    (void)state;
    static struct check_report r;
    memset(&r, 0, sizeof r);
    struct check_row *hung = check_report_add(&r, "sha1", false);
    feed(hung, start);
    feed(hung, refused);
    check_row_finish(hung, true, -1);
    assert_int_equal(hung->action, CHECK_TIMED_OUT);
    assert_false(hung->good);
    assert_non_null(strstr(hung->verdict, "still running at the timeout and was stopped; "
                                          "before that: client refused"));
    struct check_row *none = check_report_add(&r, "strip", false);
    check_row_finish(none, false, 2);
    assert_int_equal(none->action, CHECK_NO_CONNECT);
    assert_string_equal(check_action_words(none->action), "did not connect");
    assert_non_null(strstr(none->verdict, "exit status 2"));
    struct buf out;
    buf_init(&out);
    char *argv[] = {"sleep", "100", NULL};
    check_report_json(&r, argv, &out);
    json_t *doc = json_loadb((const char *)buf_head(&out), buf_size(&out), 0, NULL);
    assert_non_null(doc);
    assert_true(json_is_false(json_object_get(doc, "passed")));
    json_t *rows = json_object_get(doc, "rows");
    assert_int_equal(json_array_size(rows), 2);
    json_t *first = json_array_get(rows, 0);
    assert_string_equal(json_string_value(json_object_get(first, "action")), "timed out");
    assert_true(json_is_true(json_object_get(first, "timed_out")));
    assert_int_equal(json_integer_value(json_object_get(first, "sessions")), 1);
    assert_string_equal(json_string_value(json_array_get(json_object_get(doc, "command"), 1)),
                        "100");
    json_decref(doc);
    buf_free(&out);
}

static void test_strip_with_implicit_tls(void **state)
{
    (void)state;
    static struct check_report r;
    memset(&r, 0, sizeof r);
    /* an SMTPS client: no verdict (nothing withheld), every command in TLS */
    struct check_row *row = check_report_add(&r, "strip", false);
    feed(row, start);
    feed(row, "{\"kind\":\"command\",\"tls\":true,\"line\":\"AUTH PLAIN <redacted>\"}");
    check_row_finish(row, false, 0);
    assert_int_equal(row->action, CHECK_SENT_AUTH);
    assert_true(row->good);
    assert_non_null(strstr(row->verdict, "nothing to withhold: the client used implicit TLS"));
    /* a command in clear without a verdict is not passed */
    struct check_row *odd = check_report_add(&r, "strip", false);
    feed(odd, start);
    feed(odd, "{\"kind\":\"command\",\"tls\":false,\"line\":\"EHLO x\"}");
    check_row_finish(odd, false, 0);
    assert_false(odd->good);
    assert_false(check_report_passed(&r));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_worst_session_wins),
        cmocka_unit_test(test_control_and_pass),
        cmocka_unit_test(test_timeout_and_no_connection),
        cmocka_unit_test(test_strip_with_implicit_tls),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
