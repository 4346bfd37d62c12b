/* test_fault_book.c - unit tests for fault_book.h: the rules in force are the control API's
 * (in the order added, named api-N when unnamed) then the file's; names are unique across
 * both origins; file rules cannot be removed through the API; a SIGHUP's new file set keeps
 * the API's rules; a set that stops being in force is freed only once every session that
 * was running when it stopped (numbered up to the newest then) has ended. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "smtptap/fault_book.h"

/* A rule as --fault #index gives it ("flag N"). */
static struct fault_rule flag_rule(const char *text, unsigned index)
{
    struct fault_rule r;
    char err[1024] = "";
    if (fault_parse_flag(text, index, &r, err, sizeof err) != 0) fail_msg("%s", err);
    return r;
}

/* A rule as a [fault NAME] section gives it. */
static struct fault_rule section_rule(const char *name, const char *on, const char *action)
{
    struct fault_rule r;
    char err[1024] = "";
    fault_rule_begin(&r, name);
    if (fault_rule_set(&r, "on", on, err, sizeof err) ||
        fault_rule_set(&r, "action", action, err, sizeof err) ||
        fault_rule_finish(&r, err, sizeof err))
        fail_msg("%s", err);
    return r;
}

/* A rule for the API: named name, or "" for an automatic name. */
static struct fault_rule api_rule(const char *text, const char *name)
{
    struct fault_rule r;
    char err[1024] = "";
    if (fault_parse_named(text, name, &r, err, sizeof err) != 0) fail_msg("%s", err);
    return r;
}

/* The file's set: --fault #1 and a [fault busy] section. */
static void file_set(struct fault_set *s)
{
    fault_set_init(s);
    struct fault_rule r = flag_rule("RCPT *@slow.example: delay 2s", 1);
    fault_set_add(s, &r);
    r = section_rule("busy", "MAIL", "reply 451 4.7.1 Busy");
    fault_set_add(s, &r);
}

static void add_ok(struct fault_book *b, const char *text, const char *name, uint64_t live,
                   uint64_t newest)
{
    struct fault_rule r = api_rule(text, name);
    char err[256] = "";
    if (fault_book_add(b, &r, live, newest, err, sizeof err) != 0) fail_msg("%s", err);
}

static void assert_names(const struct fault_book *b, const char *const *names, size_t n)
{
    assert_non_null(b->in_force);
    assert_int_equal(b->in_force->count, n);
    for (size_t i = 0; i < n; i++) assert_string_equal(b->in_force->rules[i].name, names[i]);
}

/* ---- order and names ----------------------------------------------------------------------- */

static void without_api_rules_the_file_set_is_in_force(void **state)
{
    (void)state;
    struct fault_set file;
    file_set(&file);
    struct fault_book b;
    fault_book_init(&b, &file);
    assert_ptr_equal(b.in_force, &file);
    assert_int_equal(fault_book_origin(&b, 0), FAULT_ORIGIN_FLAG);
    assert_int_equal(fault_book_origin(&b, 1), FAULT_ORIGIN_CONFIG);
    fault_book_free(&b);
    fault_set_free(&file);
}

static void api_rules_come_first_in_the_order_added_then_the_files(void **state)
{
    (void)state;
    struct fault_set file;
    file_set(&file);
    struct fault_book b;
    fault_book_init(&b, &file);
    add_ok(&b, "RCPT: reply 450 4.2.0 First", "", 0, 0);
    add_ok(&b, "DATA-END: drop", "", 0, 0);
    add_ok(&b, "GREETING: stall", "mine", 0, 0);
    static const char *const names[] = {"api-1", "api-2", "mine", "flag 1", "busy"};
    assert_names(&b, names, 5);
    assert_int_equal(b.in_force->rules[0].stage, FAULT_RCPT);
    assert_string_equal(b.in_force->rules[0].reply, "450 4.2.0 First\r\n");
    assert_int_equal(b.in_force->rules[1].action, FAULT_DROP);
    assert_int_equal(b.in_force->rules[3].delay_ms, 2000);
    static const enum fault_origin origins[] = {FAULT_ORIGIN_API, FAULT_ORIGIN_API,
                                                FAULT_ORIGIN_API, FAULT_ORIGIN_FLAG,
                                                FAULT_ORIGIN_CONFIG};
    for (size_t i = 0; i < 5; i++) assert_int_equal(fault_book_origin(&b, i), origins[i]);
    assert_string_equal(fault_origin_name(FAULT_ORIGIN_FLAG), "flag");
    assert_string_equal(fault_origin_name(FAULT_ORIGIN_CONFIG), "config");
    assert_string_equal(fault_origin_name(FAULT_ORIGIN_API), "api");
    /* the file's set is left as it was */
    assert_int_equal(file.count, 2);
    fault_book_free(&b);
    fault_set_free(&file);
}

static void a_rule_matched_through_the_book_wins_over_the_files(void **state)
{
    (void)state;
    struct fault_set file;
    file_set(&file);
    struct fault_book b;
    fault_book_init(&b, &file);
    add_ok(&b, "MAIL: reply 550 5.7.1 No", "", 0, 0);
    struct fault_session fs;
    fault_session_init(&fs, b.in_force, 1, 1);
    const struct fault_rule *r =
        fault_match(b.in_force, &fs, FAULT_MAIL, (const uint8_t *)"FROM:<a@b>", 10);
    assert_non_null(r);
    assert_string_equal(r->name, "api-1");
    fault_session_free(&fs);
    fault_book_free(&b);
    fault_set_free(&file);
}

static void a_taken_name_is_refused_whatever_its_origin(void **state)
{
    (void)state;
    struct fault_set file;
    file_set(&file);
    struct fault_book b;
    fault_book_init(&b, &file);
    add_ok(&b, "RCPT: drop", "mine", 0, 0);
    static const char *const taken[] = {"busy", "flag 1", "mine"};
    for (size_t i = 0; i < 3; i++) {
        struct fault_rule r = api_rule("QUIT: reset", taken[i]);
        char err[256] = "", want[256];
        assert_int_equal(fault_book_add(&b, &r, 0, 0, err, sizeof err), -1);
        snprintf(want, sizeof want,
                 "a fault rule named \"%s\" exists already; remove it first or choose another "
                 "name",
                 taken[i]);
        assert_string_equal(err, want);
    }
    static const char *const names[] = {"mine", "flag 1", "busy"};
    assert_names(&b, names, 3);
    fault_book_free(&b);
    fault_set_free(&file);
}

static void automatic_names_skip_names_already_taken(void **state)
{
    (void)state;
    struct fault_set file;
    fault_set_init(&file);
    struct fault_rule r = section_rule("api-1", "RCPT", "drop");
    fault_set_add(&file, &r);
    struct fault_book b;
    fault_book_init(&b, &file);
    add_ok(&b, "MAIL: drop", "api-3", 0, 0);
    add_ok(&b, "MAIL: stall", "", 0, 0);
    add_ok(&b, "MAIL: reset", "", 0, 0);
    static const char *const names[] = {"api-3", "api-2", "api-4", "api-1"};
    assert_names(&b, names, 4);
    /* numbers are not given out again after a removal */
    struct fault_rule out;
    assert_int_equal(fault_book_remove(&b, "api-4", &out, 0, 0), 0);
    add_ok(&b, "MAIL: reset", "", 0, 0);
    assert_string_equal(b.in_force->rules[2].name, "api-5");
    fault_book_free(&b);
    fault_set_free(&file);
}

/* ---- removing ------------------------------------------------------------------------------ */

static void remove_gives_the_rule_back_and_refuses_file_and_unknown_names(void **state)
{
    (void)state;
    struct fault_set file;
    file_set(&file);
    struct fault_book b;
    fault_book_init(&b, &file);
    add_ok(&b, "RCPT *@x.example: reply 451 4.7.1 Later", "", 0, 0);
    add_ok(&b, "EHLO: strip STARTTLS", "", 0, 0);
    struct fault_rule out;
    memset(&out, 0, sizeof out);
    assert_int_equal(fault_book_remove(&b, "busy", &out, 0, 0), -2);
    assert_int_equal(fault_book_remove(&b, "flag 1", &out, 0, 0), -2);
    assert_int_equal(fault_book_remove(&b, "nothing", &out, 0, 0), -1);
    assert_int_equal(fault_book_remove(&b, "", &out, 0, 0), -1);
    assert_int_equal(b.in_force->count, 4);
    assert_int_equal(fault_book_remove(&b, "api-1", &out, 0, 0), 0);
    assert_string_equal(out.name, "api-1");
    assert_string_equal(out.match, "*@x.example");
    assert_string_equal(out.reply, "451 4.7.1 Later\r\n");
    static const char *const names[] = {"api-2", "flag 1", "busy"};
    assert_names(&b, names, 3);
    assert_int_equal(fault_book_remove(&b, "api-1", &out, 0, 0), -1);
    assert_int_equal(fault_book_remove(&b, "api-2", &out, 0, 0), 0);
    assert_int_equal(out.action, FAULT_STRIP);
    /* no API rule left: the file's own set again */
    assert_ptr_equal(b.in_force, &file);
    assert_int_equal(fault_book_origin(&b, 0), FAULT_ORIGIN_FLAG);
    fault_book_free(&b);
    fault_set_free(&file);
}

static void reset_removes_every_api_rule_and_counts_them(void **state)
{
    (void)state;
    struct fault_set file;
    file_set(&file);
    struct fault_book b;
    fault_book_init(&b, &file);
    assert_int_equal(fault_book_reset(&b, 0, 0), 0);
    assert_ptr_equal(b.in_force, &file);
    add_ok(&b, "RCPT: drop", "", 0, 0);
    add_ok(&b, "MAIL: drop", "", 0, 0);
    add_ok(&b, "DATA: drop", "", 0, 0);
    assert_int_equal(fault_book_reset(&b, 0, 0), 3);
    assert_ptr_equal(b.in_force, &file);
    assert_int_equal(fault_book_reset(&b, 0, 0), 0);
    /* the names of removed rules are free again; numbers go on */
    add_ok(&b, "RCPT: drop", "", 0, 0);
    assert_string_equal(b.in_force->rules[0].name, "api-4");
    fault_book_free(&b);
    fault_set_free(&file);
}

static void book_without_a_file_set(void **state)
{
    (void)state;
    struct fault_book b;
    fault_book_init(&b, NULL);
    assert_null(b.in_force);
    add_ok(&b, "RCPT: drop", "", 0, 0);
    static const char *const names[] = {"api-1"};
    assert_names(&b, names, 1);
    struct fault_rule out;
    assert_int_equal(fault_book_remove(&b, "x", &out, 0, 0), -1);
    assert_int_equal(fault_book_reset(&b, 0, 0), 1);
    assert_null(b.in_force);
    fault_book_free(&b);
}

/* ---- SIGHUP -------------------------------------------------------------------------------- */

static void a_new_file_set_keeps_the_api_rules_first(void **state)
{
    (void)state;
    struct fault_set file, next;
    file_set(&file);
    fault_set_init(&next);
    struct fault_rule r = section_rule("later", "QUIT", "drop");
    fault_set_add(&next, &r);
    struct fault_book b;
    fault_book_init(&b, &file);
    add_ok(&b, "RCPT: drop", "", 0, 0);
    fault_book_set_file(&b, &next, 0, 0);
    static const char *const names[] = {"api-1", "later"};
    assert_names(&b, names, 2);
    assert_int_equal(fault_book_origin(&b, 1), FAULT_ORIGIN_CONFIG);
    /* the old file's names are free now, the new file's taken */
    add_ok(&b, "MAIL: drop", "busy", 0, 0);
    struct fault_rule dup = api_rule("MAIL: drop", "later");
    char err[256];
    assert_int_equal(fault_book_add(&b, &dup, 0, 0, err, sizeof err), -1);
    struct fault_rule out;
    assert_int_equal(fault_book_remove(&b, "later", &out, 0, 0), -2);
    assert_int_equal(fault_book_reset(&b, 0, 0), 2);
    assert_ptr_equal(b.in_force, &next);
    /* and without API rules a new file set is simply in force */
    fault_book_set_file(&b, &file, 0, 0);
    assert_ptr_equal(b.in_force, &file);
    fault_book_free(&b);
    fault_set_free(&file);
    fault_set_free(&next);
}

/* ---- retired sets -------------------------------------------------------------------------- */

static void a_set_replaced_while_no_session_runs_is_freed_at_once(void **state)
{
    (void)state;
    struct fault_book b;
    fault_book_init(&b, NULL);
    add_ok(&b, "RCPT: drop", "", 0, 9);
    add_ok(&b, "MAIL: drop", "", 0, 9);
    assert_int_equal(fault_book_retired_count(&b), 0);
    fault_book_reset(&b, 0, 9);
    assert_int_equal(fault_book_retired_count(&b), 0);
    fault_book_free(&b);
}

static void a_retired_set_waits_for_every_session_live_at_retirement(void **state)
{
    (void)state;
    struct fault_book b;
    fault_book_init(&b, NULL);
    /* sessions 3 and 5 run (1, 2 and 4 have ended) when the first API rule's set is
     * replaced: it is kept until both have ended */
    add_ok(&b, "RCPT: drop", "", 2, 5);
    assert_int_equal(fault_book_retired_count(&b), 0); /* the file's set is not the book's */
    const struct fault_set *first = b.in_force;
    add_ok(&b, "MAIL: drop", "", 2, 5);
    assert_ptr_not_equal(b.in_force, first);
    assert_int_equal(fault_book_retired_count(&b), 1);
    fault_book_session_ended(&b, 6); /* started after: never held it */
    fault_book_session_ended(&b, 7);
    assert_int_equal(fault_book_retired_count(&b), 1);
    fault_book_session_ended(&b, 3);
    assert_int_equal(fault_book_retired_count(&b), 1);
    fault_book_session_ended(&b, 5);
    assert_int_equal(fault_book_retired_count(&b), 0);
    fault_book_free(&b);
}

static void each_retired_set_counts_its_own_sessions(void **state)
{
    (void)state;
    struct fault_set file;
    file_set(&file);
    struct fault_book b;
    fault_book_init(&b, &file);
    add_ok(&b, "RCPT: drop", "", 1, 1);
    /* session 1 runs: set A retired with {1} */
    add_ok(&b, "MAIL: drop", "", 1, 1);
    /* sessions 1 and 2 run: set B retired with {1, 2} (SIGHUP) */
    fault_book_set_file(&b, &file, 2, 2);
    assert_int_equal(fault_book_retired_count(&b), 2);
    /* sessions 1, 2, 3 run: set C retired with {1, 2, 3} */
    struct fault_rule out;
    assert_int_equal(fault_book_remove(&b, "api-1", &out, 3, 3), 0);
    assert_int_equal(fault_book_retired_count(&b), 3);
    fault_book_session_ended(&b, 2); /* B and C still wait for 1 */
    assert_int_equal(fault_book_retired_count(&b), 3);
    fault_book_session_ended(&b, 1); /* A and B freed, C waits for 3 */
    assert_int_equal(fault_book_retired_count(&b), 1);
    fault_book_session_ended(&b, 4);
    assert_int_equal(fault_book_retired_count(&b), 1);
    fault_book_session_ended(&b, 3);
    assert_int_equal(fault_book_retired_count(&b), 0);
    /* the last API rule is still in force */
    static const char *const names[] = {"api-2", "flag 1", "busy"};
    assert_names(&b, names, 3);
    fault_book_free(&b);
    fault_set_free(&file);
}

static void freeing_the_book_frees_sets_still_retired(void **state)
{
    (void)state;
    struct fault_book b;
    fault_book_init(&b, NULL);
    add_ok(&b, "RCPT: drop", "", 4, 4);
    add_ok(&b, "MAIL: drop", "", 4, 4);
    fault_book_reset(&b, 4, 4);
    assert_int_equal(fault_book_retired_count(&b), 2);
    fault_book_free(&b); /* valgrind/ASan: nothing leaks */
    assert_int_equal(fault_book_retired_count(&b), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(without_api_rules_the_file_set_is_in_force),
        cmocka_unit_test(api_rules_come_first_in_the_order_added_then_the_files),
        cmocka_unit_test(a_rule_matched_through_the_book_wins_over_the_files),
        cmocka_unit_test(a_taken_name_is_refused_whatever_its_origin),
        cmocka_unit_test(automatic_names_skip_names_already_taken),
        cmocka_unit_test(remove_gives_the_rule_back_and_refuses_file_and_unknown_names),
        cmocka_unit_test(reset_removes_every_api_rule_and_counts_them),
        cmocka_unit_test(book_without_a_file_set),
        cmocka_unit_test(a_new_file_set_keeps_the_api_rules_first),
        cmocka_unit_test(a_set_replaced_while_no_session_runs_is_freed_at_once),
        cmocka_unit_test(a_retired_set_waits_for_every_session_live_at_retirement),
        cmocka_unit_test(each_retired_set_counts_its_own_sessions),
        cmocka_unit_test(freeing_the_book_frees_sets_still_retired),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
