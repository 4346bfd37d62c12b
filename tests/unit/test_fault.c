/* test_fault.c - unit tests for the fault rules (fault.h): --fault flags and [fault NAME]
 * keys, the refusals users read, matching by stage, glob, occurrence and chance, and the
 * EHLO capability stripper.
 *
 * Messages are compared whole: they are the sentences a user reads when a rule is wrong. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtptap/fault.h"

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))
/* A string literal as (bytes, length). */
#define LIT(s) (const uint8_t *)(s), (sizeof(s) - 1)

static const char *STAGE_LIST = "expected one of GREETING, EHLO, HELO, MAIL, RCPT, DATA, "
                                "DATA-END, BDAT, AUTH, STARTTLS, RSET, NOOP, QUIT, ANY";
static const char *ACTION_LIST = "expected one of reply CODE TEXT, delay DURATION, drop, reset, "
                                 "stall, strip CAP[,CAP], slow RATE, truncate N";
static const char *FLAG_FORM =
    "expected VERB [GLOB]: ACTION, e.g. \"RCPT *@busy.example: reply 450 4.2.0 Busy\"";
static const char *REPLY_FORM =
    "expected a code from 200 to 599 and text, e.g. reply 450 4.2.0 Mailbox busy";
static const char *STRIP_FORM =
    "expected capability keywords separated by commas, e.g. strip STARTTLS,AUTH=PLAIN";
static const char *EHLO_REPLY = "250-mail.example\r\n"
                                "250-PIPELINING\r\n"
                                "250-STARTTLS\r\n"
                                "250 AUTH PLAIN LOGIN\r\n";

/* ---- helpers ------------------------------------------------------------------------------ */

/* Parses a flag that must be accepted. */
static struct fault_rule flag_rule(const char *flag)
{
    struct fault_rule r;
    char err[1024] = "";
    if (fault_parse_flag(flag, 1, &r, err, sizeof err) != 0)
        fail_msg("--fault \"%s\" was refused: %s", flag, err);
    return r;
}

/* Asserts that a flag is refused with exactly `want`. */
static void assert_flag_refused(const char *flag, unsigned index, const char *want)
{
    struct fault_rule r;
    char err[1024] = "";
    assert_int_equal(fault_parse_flag(flag, index, &r, err, sizeof err), -1);
    assert_string_equal(err, want);
}

/* Asserts that an action is refused with exactly "WHAT; HINT". */
static void assert_action_refused(const char *action, const char *what, const char *hint)
{
    struct fault_rule r;
    char err[1024] = "", want[1024];
    fault_rule_begin(&r, "t");
    assert_int_equal(fault_parse_action(&r, action, err, sizeof err), -1);
    snprintf(want, sizeof want, "%s; %s", what, hint);
    assert_string_equal(err, want);
}

static struct fault_rule action_rule(const char *action)
{
    struct fault_rule r;
    char err[1024] = "";
    fault_rule_begin(&r, "t");
    if (fault_parse_action(&r, action, err, sizeof err) != 0)
        fail_msg("action \"%s\" was refused: %s", action, err);
    return r;
}

/* Builds a [fault NAME] rule from key/value pairs (NULL-terminated); it must be accepted. */
static struct fault_rule config_rule(const char *name, const char *const *kv)
{
    struct fault_rule r;
    char err[1024] = "";
    fault_rule_begin(&r, name);
    for (; kv[0]; kv += 2)
        if (fault_rule_set(&r, kv[0], kv[1], err, sizeof err) != 0)
            fail_msg("%s = %s was refused: %s", kv[0], kv[1], err);
    if (fault_rule_finish(&r, err, sizeof err) != 0) fail_msg("finish refused: %s", err);
    return r;
}

static void assert_key_refused(const char *key, const char *value, const char *want)
{
    struct fault_rule r;
    char err[1024] = "";
    fault_rule_begin(&r, "x");
    assert_int_equal(fault_rule_set(&r, key, value, err, sizeof err), -1);
    assert_string_equal(err, want);
}

/* A set and a session over some flags; tear down with done(). */
struct world {
    struct fault_set set;
    struct fault_session fs;
};

static void world_from_flags(struct world *w, const char *const *flags, size_t n, uint64_t seed,
                             uint64_t session)
{
    fault_set_init(&w->set);
    for (size_t i = 0; i < n; i++) {
        struct fault_rule r = flag_rule(flags[i]);
        fault_set_add(&w->set, &r);
    }
    fault_session_init(&w->fs, &w->set, seed, session);
}

static void world_from_rule(struct world *w, const struct fault_rule *r, uint64_t seed,
                            uint64_t session)
{
    fault_set_init(&w->set);
    fault_set_add(&w->set, r);
    fault_session_init(&w->fs, &w->set, seed, session);
}

static void done(struct world *w)
{
    fault_session_free(&w->fs);
    fault_set_free(&w->set);
}

static const struct fault_rule *command(struct world *w, enum fault_stage stage, const char *arg)
{
    return fault_match(&w->set, &w->fs, stage, (const uint8_t *)arg, strlen(arg));
}

/* The index of the rule that fired in w's set, or -1. */
static int fired_index(struct world *w, enum fault_stage stage, const char *arg)
{
    const struct fault_rule *r = command(w, stage, arg);
    return r ? (int)(r - w->set.rules) : -1;
}

static void assert_strip(const char *reply, const char *caps, const char *want, unsigned removed)
{
    struct buf out;
    buf_init(&out);
    unsigned n = fault_strip_caps((const uint8_t *)reply, strlen(reply), caps, &out);
    buf_append(&out, "", 1);
    assert_string_equal((const char *)buf_head(&out), want);
    assert_int_equal(n, removed);
    buf_free(&out);
}

static bool glob(const char *pattern, const char *text)
{
    return fault_glob(pattern, (const uint8_t *)text, strlen(text));
}

/* ---- stages and the shape of a flag -------------------------------------------------------- */

static const struct {
    const char *name;
    enum fault_stage stage;
} stages[] = {
    {"GREETING", FAULT_GREETING}, {"EHLO", FAULT_EHLO}, {"HELO", FAULT_HELO},
    {"MAIL", FAULT_MAIL},         {"RCPT", FAULT_RCPT}, {"DATA", FAULT_DATA},
    {"DATA-END", FAULT_DATA_END}, {"BDAT", FAULT_BDAT}, {"AUTH", FAULT_AUTH},
    {"STARTTLS", FAULT_STARTTLS}, {"RSET", FAULT_RSET}, {"NOOP", FAULT_NOOP},
    {"QUIT", FAULT_QUIT},         {"ANY", FAULT_ANY},
};

static void every_stage_name_is_accepted_in_any_case(void **state)
{
    (void)state;
    for (size_t i = 0; i < NELEM(stages); i++) {
        char upper[64], mixed[64];
        snprintf(upper, sizeof upper, "%s: drop", stages[i].name);
        snprintf(mixed, sizeof mixed, "%s: drop", stages[i].name);
        for (size_t c = 0; c < strlen(stages[i].name); c += 2) /* "gReEtInG" */
            if (mixed[c] >= 'A' && mixed[c] <= 'Z') mixed[c] = (char)(mixed[c] + 'a' - 'A');
        struct fault_rule a = flag_rule(upper), b = flag_rule(mixed);
        assert_int_equal(a.stage, stages[i].stage);
        assert_int_equal(b.stage, stages[i].stage);
        assert_true(a.has_stage);
        assert_string_equal(fault_stage_name(stages[i].stage), stages[i].name);
    }
}

static void every_action_has_the_name_users_write(void **state)
{
    (void)state;
    static const char *names[] = {"reply", "delay", "drop", "reset",
                                  "stall", "strip", "slow", "truncate"};
    static const enum fault_action actions[] = {FAULT_REPLY, FAULT_DELAY,   FAULT_DROP,
                                                FAULT_RESET, FAULT_STALL,   FAULT_STRIP,
                                                FAULT_SLOW,  FAULT_TRUNCATE};
    for (size_t i = 0; i < NELEM(names); i++)
        assert_string_equal(fault_action_name(actions[i]), names[i]);
}

static void busy_mailbox_flag_fills_the_whole_rule(void **state)
{
    (void)state;
    struct fault_rule r;
    char err[256] = "";
    assert_int_equal(
        fault_parse_flag("RCPT *@busy.example: reply 450 4.2.0 Busy", 4, &r, err, sizeof err), 0);
    assert_string_equal(r.name, "flag 4");
    assert_int_equal(r.stage, FAULT_RCPT);
    assert_string_equal(r.match, "*@busy.example");
    assert_int_equal(r.nth, 0);
    assert_true(r.probability == 1.0);
    assert_true(r.has_action);
    assert_int_equal(r.action, FAULT_REPLY);
    assert_int_equal(r.reply_code, 450);
    assert_string_equal(r.reply, "450 4.2.0 Busy\r\n");
}

static void flag_without_a_glob_matches_any_argument(void **state)
{
    (void)state;
    struct fault_rule r = flag_rule("GREETING: reply 421 4.3.2 Go away");
    assert_int_equal(r.stage, FAULT_GREETING);
    assert_string_equal(r.match, "");
    assert_string_equal(r.reply, "421 4.3.2 Go away\r\n");
}

static void glob_may_contain_blanks_for_auth_mechanisms(void **state)
{
    (void)state;
    struct fault_rule r = flag_rule("  AUTH   PLAIN *  :  reply 535 5.7.8 Bad credentials");
    assert_int_equal(r.stage, FAULT_AUTH);
    assert_string_equal(r.match, "PLAIN *");
    assert_string_equal(r.reply, "535 5.7.8 Bad credentials\r\n");
}

static void colon_inside_the_action_text_belongs_to_the_text(void **state)
{
    (void)state;
    struct fault_rule r = flag_rule("MAIL: reply 451 4.3.0 Try again: later");
    assert_string_equal(r.match, "");
    assert_string_equal(r.reply, "451 4.3.0 Try again: later\r\n");
}

static void misspelt_stage_is_refused_with_its_column_and_every_stage(void **state)
{
    (void)state;
    char want[512];
    snprintf(want, sizeof want,
             "--fault #2 \"RCTP x: drop\": unknown stage \"RCTP\" at column 1; %s", STAGE_LIST);
    assert_flag_refused("RCTP x: drop", 2, want);
    snprintf(want, sizeof want,
             "--fault #1 \"   MAILFROM: drop\": unknown stage \"MAILFROM\" at "
             "column 4; %s",
             STAGE_LIST);
    assert_flag_refused("   MAILFROM: drop", 1, want);
}

static void abbreviated_stage_or_action_is_refused(void **state)
{
    (void)state;
    char want[512];
    snprintf(want, sizeof want, "--fault #1 \"RCP: drop\": unknown stage \"RCP\" at column 1; %s",
             STAGE_LIST);
    assert_flag_refused("RCP: drop", 1, want);
    snprintf(want, sizeof want,
             "--fault #1 \"DATA-EN: drop\": unknown stage \"DATA-EN\" at column 1; %s", STAGE_LIST);
    assert_flag_refused("DATA-EN: drop", 1, want);
    assert_action_refused("rep 450 x", "unknown action \"rep\"", ACTION_LIST);
    assert_action_refused("dropped", "unknown action \"dropped\"", ACTION_LIST);
}

static void empty_flag_is_refused(void **state)
{
    (void)state;
    char want[512];
    snprintf(want, sizeof want, "--fault #1 \"\": empty rule at column 1; %s", FLAG_FORM);
    assert_flag_refused("", 1, want);
    snprintf(want, sizeof want, "--fault #5 \"  \": empty rule at column 3; %s", FLAG_FORM);
    assert_flag_refused("  ", 5, want);
}

static void flag_without_a_colon_is_refused_at_its_end(void **state)
{
    (void)state;
    char want[512];
    snprintf(want, sizeof want, "--fault #3 \"RCPT drop\": missing \":\" at column 10; %s",
             FLAG_FORM);
    assert_flag_refused("RCPT drop", 3, want);
}

static void flag_starting_with_a_colon_lacks_its_stage(void **state)
{
    (void)state;
    char want[512];
    snprintf(want, sizeof want, "--fault #1 \": drop\": missing stage at column 1; %s", STAGE_LIST);
    assert_flag_refused(": drop", 1, want);
}

static void flag_with_nothing_after_the_colon_lacks_its_action(void **state)
{
    (void)state;
    char want[512];
    snprintf(want, sizeof want, "--fault #1 \"RCPT *@x:  \": missing action at column 12; %s",
             ACTION_LIST);
    assert_flag_refused("RCPT *@x:  ", 1, want);
}

static void unknown_action_is_refused_with_its_column(void **state)
{
    (void)state;
    char want[512];
    snprintf(want, sizeof want,
             "--fault #1 \"RCPT: explode\": unknown action \"explode\" at column 7; %s",
             ACTION_LIST);
    assert_flag_refused("RCPT: explode", 1, want);
    assert_action_refused("explode now", "unknown action \"explode\"", ACTION_LIST);
}

/* ---- actions ------------------------------------------------------------------------------ */

static void reply_action_keeps_an_enhanced_status_code_as_written(void **state)
{
    (void)state;
    struct fault_rule r = action_rule("reply 550 5.1.1 <bob@example.org>: no such user");
    assert_int_equal(r.action, FAULT_REPLY);
    assert_int_equal(r.reply_code, 550);
    assert_string_equal(r.reply, "550 5.1.1 <bob@example.org>: no such user\r\n");
}

static void action_keyword_ignores_case_and_trailing_blanks(void **state)
{
    (void)state;
    struct fault_rule r = action_rule("  REPLY 250 ok  ");
    assert_int_equal(r.action, FAULT_REPLY);
    assert_string_equal(r.reply, "250 ok\r\n");
    assert_int_equal(action_rule("Drop").action, FAULT_DROP);
}

static void backslash_n_in_reply_text_makes_a_multiline_reply(void **state)
{
    (void)state;
    struct fault_rule r = action_rule("reply 450 first\\nlast");
    assert_string_equal(r.reply, "450-first\r\n450 last\r\n");
    r = action_rule("reply 421 4.3.2 one\\n4.3.2 two\\n4.3.2 three");
    assert_string_equal(r.reply, "421-4.3.2 one\r\n421-4.3.2 two\r\n421 4.3.2 three\r\n");
}

static void reply_codes_at_both_ends_of_the_range_are_accepted(void **state)
{
    (void)state;
    assert_int_equal(action_rule("reply 200 fine").reply_code, 200);
    assert_int_equal(action_rule("reply 599 odd").reply_code, 599);
}

static void reply_code_199_is_refused_with_its_column(void **state)
{
    (void)state;
    char want[512];
    snprintf(want, sizeof want,
             "--fault #1 \"RCPT: reply 199 Hm\": reply code 199 out of range at column 13; %s",
             REPLY_FORM);
    assert_flag_refused("RCPT: reply 199 Hm", 1, want);
    assert_action_refused("reply 199 Hm", "reply code 199 out of range", REPLY_FORM);
}

static void reply_code_600_is_refused(void **state)
{
    (void)state;
    assert_action_refused("reply 600 Hm", "reply code 600 out of range", REPLY_FORM);
}

static void reply_code_that_is_not_three_digits_is_refused(void **state)
{
    (void)state;
    assert_action_refused("reply abc Hm", "reply code \"abc\" is not a three-digit number",
                          REPLY_FORM);
    assert_action_refused("reply 4500 Hm", "reply code \"4500\" is not a three-digit number",
                          REPLY_FORM);
    assert_action_refused("reply 45x Hm", "reply code \"45x\" is not a three-digit number",
                          REPLY_FORM);
}

static void reply_without_code_or_text_is_refused(void **state)
{
    (void)state;
    assert_action_refused("reply", "missing reply code", REPLY_FORM);
    assert_action_refused("reply 450", "missing reply text after 450", REPLY_FORM);
    assert_action_refused("reply 450   ", "missing reply text after 450", REPLY_FORM);
    char want[512];
    snprintf(want, sizeof want,
             "--fault #1 \"MAIL: reply 450\": missing reply text after 450 at column 16; %s",
             REPLY_FORM);
    assert_flag_refused("MAIL: reply 450", 1, want);
}

static void reply_with_a_real_line_break_is_refused(void **state)
{
    (void)state;
    const char *hint = "expected one line; write \\n (backslash n) to start another line";
    assert_action_refused("reply 450 a\r\n450 b", "reply text contains a CR", hint);
    assert_action_refused("reply 450 a\nb", "reply text contains a LF", hint);
}

static void reply_with_an_empty_line_is_refused(void **state)
{
    (void)state;
    const char *hint = "expected text on every line of the reply";
    assert_action_refused("reply 450 a\\n\\nb", "empty line 2 in the reply text", hint);
    assert_action_refused("reply 450 a\\n", "empty line 2 in the reply text", hint);
    char want[512];
    snprintf(want, sizeof want,
             "--fault #1 \"RCPT: reply 450 a\\n\\nb\": empty line 2 in the reply text at column "
             "20; %s",
             hint);
    assert_flag_refused("RCPT: reply 450 a\\n\\nb", 1, want);
}

static void reply_longer_than_the_buffer_is_refused(void **state)
{
    (void)state;
    char action[2048];
    size_t len = (size_t)snprintf(action, sizeof action, "reply 450 ");
    while (len + 3 < sizeof action - 1) len += (size_t)snprintf(action + len, 4, "x\\n");
    snprintf(action + len, sizeof action - len, "x");
    assert_action_refused(action, "reply text too long", "expected a reply of at most 2047 bytes");
}

static void failed_action_leaves_the_rule_as_it_was(void **state)
{
    (void)state;
    struct fault_rule r = action_rule("reply 450 busy");
    char err[256];
    assert_int_equal(fault_parse_action(&r, "reply 999 x", err, sizeof err), -1);
    assert_int_equal(r.action, FAULT_REPLY);
    assert_string_equal(r.reply, "450 busy\r\n");
}

static void second_action_replaces_the_first(void **state)
{
    (void)state;
    struct fault_rule r = action_rule("reply 450 busy");
    char err[256];
    assert_int_equal(fault_parse_action(&r, "delay 2s", err, sizeof err), 0);
    assert_int_equal(r.action, FAULT_DELAY);
    assert_int_equal(r.delay_ms, 2000);
    assert_string_equal(r.reply, "");
    assert_int_equal(r.reply_code, 0);
}

static void delay_accepts_milliseconds_seconds_and_minutes(void **state)
{
    (void)state;
    assert_int_equal(action_rule("delay 250ms").delay_ms, 250);
    assert_int_equal(action_rule("delay 2s").delay_ms, 2000);
    assert_int_equal(action_rule("delay 1m").delay_ms, 60000);
    assert_int_equal(action_rule("delay 3").delay_ms, 3000);
    assert_int_equal(action_rule("delay 1m").action, FAULT_DELAY);
}

static void delay_with_a_bad_duration_is_refused(void **state)
{
    (void)state;
    const char *hint = "expected a duration such as 250ms, 30s, 5m or 1h";
    assert_action_refused("delay soon", "bad duration \"soon\"", hint);
    assert_action_refused("delay 2x", "bad duration \"2x\"", hint);
    assert_action_refused("delay", "missing duration", hint);
    char want[512];
    snprintf(want, sizeof want,
             "--fault #1 \"DATA-END: delay -1s\": bad duration \"-1s\" at column 17; %s", hint);
    assert_flag_refused("DATA-END: delay -1s", 1, want);
}

static void drop_reset_and_stall_take_no_argument(void **state)
{
    (void)state;
    assert_int_equal(action_rule("drop").action, FAULT_DROP);
    assert_int_equal(action_rule("reset").action, FAULT_RESET);
    assert_int_equal(action_rule("stall").action, FAULT_STALL);
    assert_action_refused("drop now", "unexpected \"now\" after drop",
                          "expected nothing after drop");
    assert_action_refused("stall 5s", "unexpected \"5s\" after stall",
                          "expected nothing after stall");
}

static void strip_keeps_the_capability_list_without_blanks(void **state)
{
    (void)state;
    struct fault_rule r = action_rule("strip STARTTLS , auth=plain,SMTPUTF8");
    assert_int_equal(r.action, FAULT_STRIP);
    assert_string_equal(r.strip, "STARTTLS,auth=plain,SMTPUTF8");
}

static void strip_with_a_bad_capability_list_is_refused(void **state)
{
    (void)state;
    assert_action_refused("strip", "missing capability", STRIP_FORM);
    assert_action_refused("strip A,,B", "empty capability", STRIP_FORM);
    assert_action_refused("strip STARTTLS,", "empty capability", STRIP_FORM);
    assert_action_refused("strip START TLS", "bad capability \"START TLS\"", STRIP_FORM);
    assert_action_refused("strip AUTH=", "bad capability \"AUTH=\"", STRIP_FORM);
    assert_action_refused("strip SIZE=100", "\"SIZE=100\" names a parameter of SIZE",
                          "expected KEYWORD or AUTH=MECHANISM; only AUTH lists removable items");
}

static void slow_takes_bytes_per_second_with_or_without_unit(void **state)
{
    (void)state;
    assert_int_equal(action_rule("slow 10").rate_bps, 10);
    assert_int_equal(action_rule("slow 10/s").rate_bps, 10);
    assert_int_equal(action_rule("slow 1").action, FAULT_SLOW);
}

static void slow_at_zero_or_without_a_number_is_refused(void **state)
{
    (void)state;
    const char *hint = "expected bytes per second above 0, e.g. slow 10 or slow 10/s";
    assert_action_refused("slow 0", "bad rate \"0\"", hint);
    assert_action_refused("slow fast", "bad rate \"fast\"", hint);
    assert_action_refused("slow /s", "bad rate \"/s\"", hint);
    assert_action_refused("slow", "bad rate \"\"", hint);
}

static void truncate_takes_zero_or_more_bytes(void **state)
{
    (void)state;
    struct fault_rule r = action_rule("truncate 0");
    assert_int_equal(r.action, FAULT_TRUNCATE);
    assert_int_equal(r.truncate_bytes, 0);
    assert_int_equal(action_rule("truncate 5").truncate_bytes, 5);
    const char *hint = "expected a number of bytes, 0 or more, e.g. truncate 5";
    assert_action_refused("truncate -1", "bad byte count \"-1\"", hint);
    assert_action_refused("truncate", "bad byte count \"\"", hint);
}

/* ---- combinations of stage and action ---------------------------------------------------- */

static void strip_on_rcpt_is_refused_because_only_ehlo_lists_capabilities(void **state)
{
    (void)state;
    assert_flag_refused("RCPT: strip STARTTLS", 1,
                        "--fault #1 \"RCPT: strip STARTTLS\": action strip with stage RCPT at "
                        "column 7; strip edits the capability list, which only the EHLO reply "
                        "carries");
}

static void greeting_and_any_cannot_strip_either(void **state)
{
    (void)state;
    struct fault_rule r;
    char err[512];
    assert_int_equal(fault_parse_flag("GREETING: strip STARTTLS", 1, &r, err, sizeof err), -1);
    assert_non_null(strstr(err, "action strip with stage GREETING at column 11"));
    assert_int_equal(fault_parse_flag("ANY: strip STARTTLS", 1, &r, err, sizeof err), -1);
    assert_non_null(strstr(err, "action strip with stage ANY at column 6"));
    assert_int_equal(flag_rule("ehlo: strip STARTTLS").action, FAULT_STRIP);
}

static void data_end_may_replace_the_final_reply(void **state)
{
    (void)state;
    struct fault_rule r = flag_rule("DATA-END: reply 554 5.7.1 Rejected after all");
    assert_int_equal(r.stage, FAULT_DATA_END);
    assert_string_equal(r.reply, "554 5.7.1 Rejected after all\r\n");
}

static void greeting_accepts_every_action_but_strip(void **state)
{
    (void)state;
    static const char *ok[] = {"GREETING: reply 421 4.3.2 Go away",
                               "GREETING: delay 2s",
                               "GREETING: drop",
                               "GREETING: reset",
                               "GREETING: stall",
                               "GREETING: slow 10/s",
                               "GREETING: truncate 5"};
    for (size_t i = 0; i < NELEM(ok); i++) assert_int_equal(flag_rule(ok[i]).stage, FAULT_GREETING);
}

static void glob_on_greeting_or_data_end_is_refused(void **state)
{
    (void)state;
    const char *hint = "a pattern needs a command argument, and this stage has none";
    char want[512];
    snprintf(want, sizeof want,
             "--fault #1 \"GREETING x: drop\": a match pattern with stage GREETING at column 10; "
             "%s",
             hint);
    assert_flag_refused("GREETING x: drop", 1, want);
    snprintf(want, sizeof want,
             "--fault #2 \"DATA-END *: drop\": a match pattern with stage DATA-END at column 10; "
             "%s",
             hint);
    assert_flag_refused("DATA-END *: drop", 2, want);
}

/* ---- [fault NAME] sections ---------------------------------------------------------------- */

static void config_section_builds_the_rule_it_describes(void **state)
{
    (void)state;
    static const char *kv[] = {
        "on", "RCPT",        "match", "*@busy.example", "nth",
        "2",  "probability", "0.5",   "action",         "reply 450 4.2.0 Mailbox busy, try later",
        NULL};
    struct fault_rule r = config_rule("rcpt-busy", kv);
    assert_string_equal(r.name, "rcpt-busy");
    assert_int_equal(r.stage, FAULT_RCPT);
    assert_string_equal(r.match, "*@busy.example");
    assert_int_equal(r.nth, 2);
    assert_true(r.probability == 0.5);
    assert_int_equal(r.action, FAULT_REPLY);
    assert_string_equal(r.reply, "450 4.2.0 Mailbox busy, try later\r\n");
}

static void config_match_may_contain_a_colon(void **state)
{
    (void)state;
    static const char *kv[] = {"on", "RCPT", "match", "TO:bob@*", "action", "drop", NULL};
    struct fault_rule r = config_rule("c", kv);
    assert_string_equal(r.match, "TO:bob@*");
}

static void unknown_config_key_lists_the_accepted_keys(void **state)
{
    (void)state;
    assert_key_refused("when", "RCPT",
                       "[fault x]: unknown key \"when\"; expected one of on, match, nth, "
                       "probability, action");
}

static void config_stage_is_checked_like_a_flag(void **state)
{
    (void)state;
    char want[512];
    snprintf(want, sizeof want, "[fault x] on = \"RCTP\": unknown stage \"RCTP\"; %s", STAGE_LIST);
    assert_key_refused("on", "RCTP", want);
}

static void probability_must_be_above_zero_and_at_most_one(void **state)
{
    (void)state;
    static const char *bad[] = {"0", "1.5", "-0.5", "abc", "", "0.5x", "nan"};
    for (size_t i = 0; i < NELEM(bad); i++) {
        char want[512];
        snprintf(want, sizeof want,
                 "[fault x] probability = \"%s\": bad probability \"%s\"; expected a number "
                 "above 0 and at most 1, e.g. 0.5",
                 bad[i], bad[i]);
        assert_key_refused("probability", bad[i], want);
    }
    static const char *kv[] = {"on", "RCPT", "probability", "1", "action", "drop", NULL};
    assert_true(config_rule("p", kv).probability == 1.0);
}

static void nth_must_be_a_whole_number_from_one(void **state)
{
    (void)state;
    assert_key_refused("nth", "0",
                       "[fault x] nth = \"0\": bad nth \"0\"; expected a whole number, 1 or more "
                       "(the Nth matching command)");
    assert_key_refused("nth", "second",
                       "[fault x] nth = \"second\": bad nth \"second\"; expected a whole number, "
                       "1 or more (the Nth matching command)");
}

static void config_action_error_names_key_value_and_reason(void **state)
{
    (void)state;
    char want[512];
    snprintf(want, sizeof want,
             "[fault x] action = \"reply 199 x\": reply code 199 out of range; %s", REPLY_FORM);
    assert_key_refused("action", "reply 199 x", want);
}

static void section_without_on_or_action_is_refused_when_finished(void **state)
{
    (void)state;
    struct fault_rule r;
    char err[512], want[512];
    fault_rule_begin(&r, "half");
    assert_int_equal(fault_rule_set(&r, "action", "drop", err, sizeof err), 0);
    assert_int_equal(fault_rule_finish(&r, err, sizeof err), -1);
    snprintf(want, sizeof want, "[fault half]: missing key \"on\" (the stage); %s", STAGE_LIST);
    assert_string_equal(err, want);

    fault_rule_begin(&r, "half");
    assert_int_equal(fault_rule_set(&r, "on", "RCPT", err, sizeof err), 0);
    assert_int_equal(fault_rule_finish(&r, err, sizeof err), -1);
    snprintf(want, sizeof want, "[fault half]: missing key \"action\"; %s", ACTION_LIST);
    assert_string_equal(err, want);
}

static void section_with_strip_on_rcpt_is_refused_when_finished(void **state)
{
    (void)state;
    struct fault_rule r;
    char err[512];
    fault_rule_begin(&r, "s");
    assert_int_equal(fault_rule_set(&r, "action", "strip STARTTLS", err, sizeof err), 0);
    assert_int_equal(fault_rule_set(&r, "on", "RCPT", err, sizeof err), 0);
    assert_int_equal(fault_rule_finish(&r, err, sizeof err), -1);
    assert_string_equal(err, "[fault s]: action strip with stage RCPT; strip edits the "
                             "capability list, which only the EHLO reply carries");
}

static void second_greeting_can_never_come(void **state)
{
    (void)state;
    struct fault_rule r;
    char err[512];
    fault_rule_begin(&r, "g");
    assert_int_equal(fault_rule_set(&r, "on", "GREETING", err, sizeof err), 0);
    assert_int_equal(fault_rule_set(&r, "nth", "2", err, sizeof err), 0);
    assert_int_equal(fault_rule_set(&r, "action", "drop", err, sizeof err), 0);
    assert_int_equal(fault_rule_finish(&r, err, sizeof err), -1);
    assert_string_equal(err, "[fault g]: nth = 2 with stage GREETING; a session has one "
                             "greeting, so only nth = 1 can fire");
}

/* ---- matching: stage and glob ------------------------------------------------------------- */

static void rule_fires_only_for_its_own_stage(void **state)
{
    (void)state;
    static const char *flags[] = {"RCPT: reply 450 busy"};
    struct world w;
    world_from_flags(&w, flags, 1, 0, 1);
    assert_int_equal(fired_index(&w, FAULT_MAIL, "FROM:<a@example.org>"), -1);
    assert_int_equal(fired_index(&w, FAULT_DATA, ""), -1);
    assert_int_equal(fired_index(&w, FAULT_RCPT, "TO:<b@example.org>"), 0);
    done(&w);
}

static void every_stage_fires_its_own_rule_and_no_other(void **state)
{
    (void)state;
    for (size_t i = 0; i < NELEM(stages); i++) {
        if (stages[i].stage == FAULT_ANY) continue;
        char flag[64];
        snprintf(flag, sizeof flag, "%s: drop", stages[i].name);
        const char *flags[] = {flag};
        struct world w;
        world_from_flags(&w, flags, 1, 0, 1);
        for (size_t j = 0; j < NELEM(stages); j++) {
            if (stages[j].stage == FAULT_ANY) continue;
            int want = i == j ? 0 : -1;
            if (fired_index(&w, stages[j].stage, "") != want)
                fail_msg("rule %s, command %s: fired %s", stages[i].name, stages[j].name,
                         want ? "wrongly" : "not");
        }
        done(&w);
    }
}

static void any_fires_for_every_command_but_not_greeting_or_data_end(void **state)
{
    (void)state;
    static const char *flags[] = {"ANY: delay 1s"};
    struct world w;
    world_from_flags(&w, flags, 1, 0, 1);
    for (size_t i = 0; i < NELEM(stages); i++) {
        enum fault_stage s = stages[i].stage;
        if (s == FAULT_ANY) continue;
        int want = s == FAULT_GREETING || s == FAULT_DATA_END ? -1 : 0;
        if (fired_index(&w, s, "x") != want)
            fail_msg("ANY and %s: expected %s", stages[i].name, want ? "no firing" : "a firing");
    }
    done(&w);
}

static void rcpt_glob_sees_the_address_whatever_its_case(void **state)
{
    (void)state;
    static const char *flags[] = {"RCPT *@busy.example: reply 450 4.2.0 Busy"};
    struct world w;
    world_from_flags(&w, flags, 1, 0, 1);
    assert_int_equal(fired_index(&w, FAULT_RCPT, "TO:<Bob@Busy.Example> NOTIFY=NEVER"), 0);
    assert_int_equal(fired_index(&w, FAULT_RCPT, "to:<alice@busy.example>\r\n"), 0);
    assert_int_equal(fired_index(&w, FAULT_RCPT, "TO:<bob@example.org>"), -1);
    assert_int_equal(fired_index(&w, FAULT_RCPT, "TO:<bob@busy.example.org>"), -1);
    done(&w);
}

static void mail_glob_ignores_the_parameters_after_the_address(void **state)
{
    (void)state;
    static const char *flags[] = {"MAIL alice@*: reply 550 5.7.1 Not you"};
    struct world w;
    world_from_flags(&w, flags, 1, 0, 1);
    assert_int_equal(
        fired_index(&w, FAULT_MAIL, "FROM:<alice@example.org> SIZE=1000 BODY=8BITMIME"), 0);
    assert_int_equal(fired_index(&w, FAULT_MAIL, "FROM:<bob@example.org> SIZE=1000"), -1);
    done(&w);
}

static void glob_sees_the_whole_argument_when_there_are_no_angle_brackets(void **state)
{
    (void)state;
    static const char *flags[] = {"RCPT to?bob@*: drop", "EHLO l*.local: drop"};
    struct world w;
    world_from_flags(&w, flags, 2, 0, 1);
    assert_int_equal(fired_index(&w, FAULT_RCPT, "TO:bob@example.org"), 0);
    assert_int_equal(fired_index(&w, FAULT_RCPT, "bob@example.org"), -1);
    assert_int_equal(fired_index(&w, FAULT_EHLO, "laptop.LOCAL"), 1);
    assert_int_equal(fired_index(&w, FAULT_EHLO, "  laptop.local \r\n"), 1);
    assert_int_equal(fired_index(&w, FAULT_EHLO, "laptop.example"), -1);
    done(&w);
}

static void star_matches_the_null_sender(void **state)
{
    (void)state;
    static const char *flags[] = {"MAIL *: drop"};
    struct world w;
    world_from_flags(&w, flags, 1, 0, 1);
    assert_int_equal(fired_index(&w, FAULT_MAIL, "FROM:<>"), 0);
    done(&w);
}

static void question_mark_matches_exactly_one_character(void **state)
{
    (void)state;
    assert_true(glob("user?@x", "user1@x"));
    assert_false(glob("user?@x", "user@x"));
    assert_false(glob("user?@x", "user12@x"));
    assert_true(glob("???", "abc"));
    assert_false(glob("???", "ab"));
}

static void star_matches_any_run_including_none(void **state)
{
    (void)state;
    assert_true(glob("*", ""));
    assert_true(glob("*", "anything at all"));
    assert_true(glob("a*b*c", "abc"));
    assert_true(glob("a*b*c", "aXbYbZc"));
    assert_false(glob("a*b*c", "aXbYbZ"));
    assert_true(glob("*@*.example", "bob@mx.a.example"));
    assert_true(glob("**x", "x"));
}

static void glob_ignores_case_and_must_cover_the_whole_text(void **state)
{
    (void)state;
    assert_true(glob("BOB@EXAMPLE.ORG", "bob@example.org"));
    assert_false(glob("bob", "bobby"));
    assert_false(glob("bobby", "bob"));
    assert_true(glob("", ""));
    assert_false(glob("", "x"));
}

/* ---- matching: nth ----------------------------------------------------------------------- */

static void second_recipient_only_is_refused(void **state)
{
    (void)state;
    static const char *kv[] = {"on", "RCPT", "nth", "2", "action", "reply 452 4.5.3 Too many",
                               NULL};
    struct fault_rule r = config_rule("second", kv);
    struct world w;
    world_from_rule(&w, &r, 0, 1);
    assert_int_equal(fired_index(&w, FAULT_RCPT, "TO:<a@x>"), -1);
    assert_int_equal(fired_index(&w, FAULT_RCPT, "TO:<b@x>"), 0);
    assert_int_equal(fired_index(&w, FAULT_RCPT, "TO:<c@x>"), -1);
    assert_int_equal(fired_index(&w, FAULT_RCPT, "TO:<d@x>"), -1);
    done(&w);
}

static void commands_the_glob_rejects_do_not_count_toward_nth(void **state)
{
    (void)state;
    static const char *kv[] = {"on", "RCPT", "match", "*@busy", "nth", "2", "action", "drop", NULL};
    struct fault_rule r = config_rule("n", kv);
    struct world w;
    world_from_rule(&w, &r, 0, 1);
    assert_int_equal(fired_index(&w, FAULT_RCPT, "TO:<a@busy>"), -1);
    assert_int_equal(fired_index(&w, FAULT_RCPT, "TO:<b@idle>"), -1);
    assert_int_equal(fired_index(&w, FAULT_MAIL, "FROM:<c@busy>"), -1);
    assert_int_equal(fired_index(&w, FAULT_RCPT, "TO:<d@busy>"), 0);
    done(&w);
}

static void nth_counts_a_command_even_when_an_earlier_rule_fired(void **state)
{
    (void)state;
    static const char *first[] = {"on", "RCPT", "nth", "1", "action", "reply 450 first", NULL};
    static const char *second[] = {"on", "RCPT", "nth", "2", "action", "reply 451 second", NULL};
    struct fault_rule a = config_rule("a", first), b = config_rule("b", second);
    struct world w;
    fault_set_init(&w.set);
    fault_set_add(&w.set, &a);
    fault_set_add(&w.set, &b);
    fault_session_init(&w.fs, &w.set, 0, 1);
    assert_int_equal(fired_index(&w, FAULT_RCPT, "TO:<a@x>"), 0);
    assert_int_equal(fired_index(&w, FAULT_RCPT, "TO:<b@x>"), 1);
    assert_int_equal(fired_index(&w, FAULT_RCPT, "TO:<c@x>"), -1);
    done(&w);
}

static void each_session_counts_from_the_start(void **state)
{
    (void)state;
    static const char *kv[] = {"on", "MAIL", "nth", "1", "action", "drop", NULL};
    struct fault_rule r = config_rule("n", kv);
    struct world w;
    world_from_rule(&w, &r, 0, 1);
    assert_int_equal(fired_index(&w, FAULT_MAIL, "FROM:<a@x>"), 0);
    assert_int_equal(fired_index(&w, FAULT_MAIL, "FROM:<a@x>"), -1);
    fault_session_free(&w.fs);
    fault_session_init(&w.fs, &w.set, 0, 2);
    assert_int_equal(fired_index(&w, FAULT_MAIL, "FROM:<a@x>"), 0);
    done(&w);
}

static void first_rule_in_order_wins(void **state)
{
    (void)state;
    static const char *flags[] = {"RCPT *@a: reply 450 a", "ANY: delay 1s", "RCPT: drop"};
    struct world w;
    world_from_flags(&w, flags, 3, 0, 1);
    assert_int_equal(fired_index(&w, FAULT_RCPT, "TO:<x@a>"), 0);
    assert_int_equal(fired_index(&w, FAULT_RCPT, "TO:<x@b>"), 1);
    assert_int_equal(fired_index(&w, FAULT_GREETING, ""), -1);
    done(&w);
}

static void empty_set_never_fires(void **state)
{
    (void)state;
    struct world w;
    world_from_flags(&w, NULL, 0, 0, 1);
    assert_null(command(&w, FAULT_RCPT, "TO:<a@x>"));
    assert_null(fault_match(&w.set, &w.fs, FAULT_GREETING, NULL, 0));
    done(&w);
}

/* ---- matching: probability ---------------------------------------------------------------- */

/* One RCPT per session at p = 0.5 over `sessions` sessions: bit i set if session i fired. */
static uint64_t coin_pattern(uint64_t seed, unsigned sessions)
{
    static const char *kv[] = {"on", "RCPT", "probability", "0.5", "action", "drop", NULL};
    struct fault_rule r = config_rule("coin", kv);
    struct fault_set set;
    uint64_t bits = 0;
    fault_set_init(&set);
    fault_set_add(&set, &r);
    for (unsigned i = 0; i < sessions; i++) {
        struct fault_session fs;
        fault_session_init(&fs, &set, seed, i + 1);
        if (fault_match(&set, &fs, FAULT_RCPT, LIT("TO:<a@x>"))) bits |= 1ull << i;
        fault_session_free(&fs);
    }
    fault_set_free(&set);
    return bits;
}

static void same_seed_fires_the_same_sessions_and_another_seed_others(void **state)
{
    (void)state;
    uint64_t a = coin_pattern(7, 40), b = coin_pattern(7, 40), c = coin_pattern(8, 40);
    assert_int_equal(a, b);
    assert_int_not_equal(a, c);
    int fired = __builtin_popcountll(a), fired8 = __builtin_popcountll(c);
    if (fired < 12 || fired > 28) fail_msg("seed 7: %d of 40 sessions fired at p=0.5", fired);
    if (fired8 < 12 || fired8 > 28) fail_msg("seed 8: %d of 40 sessions fired at p=0.5", fired8);
}

static void firings_of_a_session_do_not_depend_on_other_sessions(void **state)
{
    (void)state;
    static const char *kv[] = {"on", "ANY", "probability", "0.3", "action", "drop", NULL};
    struct fault_rule r = config_rule("p", kv);
    struct fault_set set;
    struct fault_session alone, x, y;
    uint64_t alone_bits = 0, x_bits = 0, y_bits = 0;
    fault_set_init(&set);
    fault_set_add(&set, &r);
    fault_session_init(&alone, &set, 42, 2);
    for (int i = 0; i < 64; i++)
        if (fault_match(&set, &alone, FAULT_NOOP, LIT(""))) alone_bits |= 1ull << i;
    /* The same session number, now interleaved with session 3 as a busy server would. */
    fault_session_init(&x, &set, 42, 2);
    fault_session_init(&y, &set, 42, 3);
    for (int i = 0; i < 64; i++) {
        if (fault_match(&set, &y, FAULT_NOOP, LIT(""))) y_bits |= 1ull << i;
        if (fault_match(&set, &x, FAULT_NOOP, LIT(""))) x_bits |= 1ull << i;
    }
    assert_int_equal(x_bits, alone_bits);
    assert_int_not_equal(y_bits, x_bits);
    assert_int_not_equal(alone_bits, 0);
    fault_session_free(&alone);
    fault_session_free(&x);
    fault_session_free(&y);
    fault_set_free(&set);
}

static void probability_one_always_fires(void **state)
{
    (void)state;
    static const char *kv[] = {"on", "RCPT", "probability", "1.0", "action", "drop", NULL};
    struct fault_rule r = config_rule("p", kv);
    struct world w;
    world_from_rule(&w, &r, 3, 9);
    for (int i = 0; i < 200; i++) assert_int_equal(fired_index(&w, FAULT_RCPT, "TO:<a@x>"), 0);
    done(&w);
}

static void small_probability_fires_rarely_but_does_fire(void **state)
{
    (void)state;
    static const char *kv[] = {"on", "RCPT", "probability", "0.05", "action", "drop", NULL};
    struct fault_rule r = config_rule("p", kv);
    struct world w;
    int fired = 0;
    world_from_rule(&w, &r, 11, 1);
    for (int i = 0; i < 1000; i++) fired += fired_index(&w, FAULT_RCPT, "TO:<a@x>") == 0;
    if (fired < 20 || fired > 90) fail_msg("%d of 1000 fired at p=0.05", fired);
    done(&w);
}

/* ---- EHLO capability stripping ------------------------------------------------------------ */

static void stripping_starttls_keeps_the_other_capabilities(void **state)
{
    (void)state;
    assert_strip(EHLO_REPLY, "STARTTLS",
                 "250-mail.example\r\n250-PIPELINING\r\n250 AUTH PLAIN LOGIN\r\n", 1);
}

static void stripping_the_last_line_makes_the_new_last_line_final(void **state)
{
    (void)state;
    assert_strip(EHLO_REPLY, "AUTH", "250-mail.example\r\n250-PIPELINING\r\n250 STARTTLS\r\n", 1);
}

static void stripping_every_capability_leaves_the_server_name_alone(void **state)
{
    (void)state;
    assert_strip(EHLO_REPLY, "PIPELINING,STARTTLS,AUTH", "250 mail.example\r\n", 3);
}

static void auth_mechanism_is_removed_from_the_auth_line(void **state)
{
    (void)state;
    assert_strip(EHLO_REPLY, "AUTH=PLAIN",
                 "250-mail.example\r\n250-PIPELINING\r\n250-STARTTLS\r\n250 AUTH LOGIN\r\n", 1);
}

static void removing_every_auth_mechanism_removes_the_line(void **state)
{
    (void)state;
    assert_strip(EHLO_REPLY, "AUTH=PLAIN,AUTH=LOGIN",
                 "250-mail.example\r\n250-PIPELINING\r\n250 STARTTLS\r\n", 2);
}

static void capability_names_ignore_case(void **state)
{
    (void)state;
    assert_strip(EHLO_REPLY, "starttls,auth=login",
                 "250-mail.example\r\n250-PIPELINING\r\n250 AUTH PLAIN\r\n", 2);
    assert_strip("250-mx\r\n250-StartTls\r\n250 8BITMIME\r\n", "STARTTLS",
                 "250-mx\r\n250 8BITMIME\r\n", 1);
}

static void keyword_must_match_whole_not_as_a_prefix(void **state)
{
    (void)state;
    assert_strip("250-mx\r\n250-SIZEX 1\r\n250-SIZE 10240000\r\n250 HELP\r\n", "SIZE",
                 "250-mx\r\n250-SIZEX 1\r\n250 HELP\r\n", 1);
    assert_strip("250-mx\r\n250 AUTH PLAINX LOGIN\r\n", "AUTH=PLAIN",
                 "250-mx\r\n250 AUTH PLAINX LOGIN\r\n", 0);
    assert_strip(EHLO_REPLY, "STARTTL,AUTH=PLAI,PIPELININGS", EHLO_REPLY, 0);
}

static void old_style_auth_equals_line_is_edited_too(void **state)
{
    (void)state;
    const char *reply = "250-mx\r\n250-AUTH PLAIN LOGIN\r\n250-AUTH=PLAIN LOGIN\r\n250 HELP\r\n";
    assert_strip(reply, "AUTH=LOGIN", "250-mx\r\n250-AUTH PLAIN\r\n250-AUTH=PLAIN\r\n250 HELP\r\n",
                 2);
    assert_strip(reply, "AUTH", "250-mx\r\n250 HELP\r\n", 2);
}

static void each_line_keeps_its_own_terminator(void **state)
{
    (void)state;
    assert_strip("250-mx\n250-STARTTLS\r\n250 8BITMIME\n", "8BITMIME", "250-mx\n250 STARTTLS\r\n",
                 1);
}

static void absent_capability_leaves_the_reply_byte_for_byte(void **state)
{
    (void)state;
    assert_strip(EHLO_REPLY, "SMTPUTF8,AUTH=XOAUTH2", EHLO_REPLY, 0);
    assert_strip("250 mx\r\n", "STARTTLS", "250 mx\r\n", 0);
    /* Even a reply with a wrong marker is not "repaired" when nothing is removed. */
    assert_strip("250-mx\r\n250-HELP\r\n", "STARTTLS", "250-mx\r\n250-HELP\r\n", 0);
}

static void first_line_is_kept_even_if_it_looks_like_a_capability(void **state)
{
    (void)state;
    assert_strip("250-STARTTLS\r\n250 STARTTLS\r\n", "STARTTLS", "250 STARTTLS\r\n", 1);
}

static void stripped_reply_is_appended_after_what_out_holds(void **state)
{
    (void)state;
    struct buf out;
    buf_init(&out);
    buf_append_str(&out, "before|");
    unsigned n =
        fault_strip_caps((const uint8_t *)EHLO_REPLY, strlen(EHLO_REPLY), "PIPELINING", &out);
    buf_append(&out, "", 1);
    assert_int_equal(n, 1);
    assert_string_equal((const char *)buf_head(&out),
                        "before|250-mail.example\r\n250-STARTTLS\r\n250 AUTH PLAIN LOGIN\r\n");
    buf_free(&out);
}

/* ---- sets --------------------------------------------------------------------------------- */

static void set_keeps_its_own_copy_of_each_rule(void **state)
{
    (void)state;
    struct fault_set set;
    struct fault_rule r = flag_rule("RCPT: drop");
    fault_set_init(&set);
    fault_set_add(&set, &r);
    r.stage = FAULT_MAIL;
    fault_set_add(&set, &r);
    assert_int_equal(set.count, 2);
    assert_int_equal(set.rules[0].stage, FAULT_RCPT);
    assert_int_equal(set.rules[1].stage, FAULT_MAIL);
    fault_set_free(&set);
    assert_int_equal(set.count, 0);
    assert_null(set.rules);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_stage_name_is_accepted_in_any_case),
        cmocka_unit_test(every_action_has_the_name_users_write),
        cmocka_unit_test(busy_mailbox_flag_fills_the_whole_rule),
        cmocka_unit_test(flag_without_a_glob_matches_any_argument),
        cmocka_unit_test(glob_may_contain_blanks_for_auth_mechanisms),
        cmocka_unit_test(colon_inside_the_action_text_belongs_to_the_text),
        cmocka_unit_test(misspelt_stage_is_refused_with_its_column_and_every_stage),
        cmocka_unit_test(abbreviated_stage_or_action_is_refused),
        cmocka_unit_test(empty_flag_is_refused),
        cmocka_unit_test(flag_without_a_colon_is_refused_at_its_end),
        cmocka_unit_test(flag_starting_with_a_colon_lacks_its_stage),
        cmocka_unit_test(flag_with_nothing_after_the_colon_lacks_its_action),
        cmocka_unit_test(unknown_action_is_refused_with_its_column),
        cmocka_unit_test(reply_action_keeps_an_enhanced_status_code_as_written),
        cmocka_unit_test(action_keyword_ignores_case_and_trailing_blanks),
        cmocka_unit_test(backslash_n_in_reply_text_makes_a_multiline_reply),
        cmocka_unit_test(reply_codes_at_both_ends_of_the_range_are_accepted),
        cmocka_unit_test(reply_code_199_is_refused_with_its_column),
        cmocka_unit_test(reply_code_600_is_refused),
        cmocka_unit_test(reply_code_that_is_not_three_digits_is_refused),
        cmocka_unit_test(reply_without_code_or_text_is_refused),
        cmocka_unit_test(reply_with_a_real_line_break_is_refused),
        cmocka_unit_test(reply_with_an_empty_line_is_refused),
        cmocka_unit_test(reply_longer_than_the_buffer_is_refused),
        cmocka_unit_test(failed_action_leaves_the_rule_as_it_was),
        cmocka_unit_test(second_action_replaces_the_first),
        cmocka_unit_test(delay_accepts_milliseconds_seconds_and_minutes),
        cmocka_unit_test(delay_with_a_bad_duration_is_refused),
        cmocka_unit_test(drop_reset_and_stall_take_no_argument),
        cmocka_unit_test(strip_keeps_the_capability_list_without_blanks),
        cmocka_unit_test(strip_with_a_bad_capability_list_is_refused),
        cmocka_unit_test(slow_takes_bytes_per_second_with_or_without_unit),
        cmocka_unit_test(slow_at_zero_or_without_a_number_is_refused),
        cmocka_unit_test(truncate_takes_zero_or_more_bytes),
        cmocka_unit_test(strip_on_rcpt_is_refused_because_only_ehlo_lists_capabilities),
        cmocka_unit_test(greeting_and_any_cannot_strip_either),
        cmocka_unit_test(data_end_may_replace_the_final_reply),
        cmocka_unit_test(greeting_accepts_every_action_but_strip),
        cmocka_unit_test(glob_on_greeting_or_data_end_is_refused),
        cmocka_unit_test(config_section_builds_the_rule_it_describes),
        cmocka_unit_test(config_match_may_contain_a_colon),
        cmocka_unit_test(unknown_config_key_lists_the_accepted_keys),
        cmocka_unit_test(config_stage_is_checked_like_a_flag),
        cmocka_unit_test(probability_must_be_above_zero_and_at_most_one),
        cmocka_unit_test(nth_must_be_a_whole_number_from_one),
        cmocka_unit_test(config_action_error_names_key_value_and_reason),
        cmocka_unit_test(section_without_on_or_action_is_refused_when_finished),
        cmocka_unit_test(section_with_strip_on_rcpt_is_refused_when_finished),
        cmocka_unit_test(second_greeting_can_never_come),
        cmocka_unit_test(rule_fires_only_for_its_own_stage),
        cmocka_unit_test(every_stage_fires_its_own_rule_and_no_other),
        cmocka_unit_test(any_fires_for_every_command_but_not_greeting_or_data_end),
        cmocka_unit_test(rcpt_glob_sees_the_address_whatever_its_case),
        cmocka_unit_test(mail_glob_ignores_the_parameters_after_the_address),
        cmocka_unit_test(glob_sees_the_whole_argument_when_there_are_no_angle_brackets),
        cmocka_unit_test(star_matches_the_null_sender),
        cmocka_unit_test(question_mark_matches_exactly_one_character),
        cmocka_unit_test(star_matches_any_run_including_none),
        cmocka_unit_test(glob_ignores_case_and_must_cover_the_whole_text),
        cmocka_unit_test(second_recipient_only_is_refused),
        cmocka_unit_test(commands_the_glob_rejects_do_not_count_toward_nth),
        cmocka_unit_test(nth_counts_a_command_even_when_an_earlier_rule_fired),
        cmocka_unit_test(each_session_counts_from_the_start),
        cmocka_unit_test(first_rule_in_order_wins),
        cmocka_unit_test(empty_set_never_fires),
        cmocka_unit_test(same_seed_fires_the_same_sessions_and_another_seed_others),
        cmocka_unit_test(firings_of_a_session_do_not_depend_on_other_sessions),
        cmocka_unit_test(probability_one_always_fires),
        cmocka_unit_test(small_probability_fires_rarely_but_does_fire),
        cmocka_unit_test(stripping_starttls_keeps_the_other_capabilities),
        cmocka_unit_test(stripping_the_last_line_makes_the_new_last_line_final),
        cmocka_unit_test(stripping_every_capability_leaves_the_server_name_alone),
        cmocka_unit_test(auth_mechanism_is_removed_from_the_auth_line),
        cmocka_unit_test(removing_every_auth_mechanism_removes_the_line),
        cmocka_unit_test(capability_names_ignore_case),
        cmocka_unit_test(keyword_must_match_whole_not_as_a_prefix),
        cmocka_unit_test(old_style_auth_equals_line_is_edited_too),
        cmocka_unit_test(each_line_keeps_its_own_terminator),
        cmocka_unit_test(absent_capability_leaves_the_reply_byte_for_byte),
        cmocka_unit_test(first_line_is_kept_even_if_it_looks_like_a_capability),
        cmocka_unit_test(stripped_reply_is_appended_after_what_out_holds),
        cmocka_unit_test(set_keeps_its_own_copy_of_each_rule),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
