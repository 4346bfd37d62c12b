/* test_watch.c - unit tests for watching many sessions (watch.h): which sessions --only and
 * --session pick, the hello name a client gives, and the summary line a session's events
 * make, compared whole. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <string.h>

#include "smtptap/watch.h"

#define LIT(s) (const uint8_t *)(s), (sizeof(s) - 1)
#define MS     (1000000ULL)

static struct watch_filter filter(const char *globs, const char *sessions)
{
    struct watch_filter f;
    memset(&f, 0, sizeof f);
    if (globs) assert_null(watch_add_globs(&f, globs));
    if (sessions) assert_null(watch_add_sessions(&f, sessions));
    return f;
}

static void globs_match_the_address_with_and_without_its_port(void **state)
{
    (void)state;
    struct watch_filter f = filter("127.0.0.1:*", NULL);
    assert_true(watch_picks_address(&f, "127.0.0.1:40312"));
    assert_false(watch_picks_address(&f, "127.0.0.2:40312"));
    f = filter("10.0.*", NULL); /* the IP alone */
    assert_true(watch_picks_address(&f, "10.0.3.4:25"));
    assert_false(watch_picks_address(&f, "110.0.3.4:25"));
    f = filter("[::1]:*", NULL); /* brackets are plain characters, not a set */
    assert_true(watch_picks_address(&f, "[::1]:5000"));
    f = filter("::1", NULL);
    assert_true(watch_picks_address(&f, "[::1]:5000"));
    assert_false(watch_picks_address(&f, "[::2]:5000"));
    f = filter("laptop*, *.EXAMPLE.com", NULL); /* names: any case, blanks around items */
    assert_true(watch_picks_text(&f, "laptop.local"));
    assert_true(watch_picks_text(&f, "mx.example.COM"));
    assert_false(watch_picks_text(&f, "example.com"));
    assert_false(watch_picks_address(&f, "127.0.0.1:1"));
}

static void sessions_are_picked_by_number(void **state)
{
    (void)state;
    struct watch_filter f = filter(NULL, "3, 7");
    assert_true(watch_filters(&f));
    assert_true(watch_picks_number(&f, 3) && watch_picks_number(&f, 7));
    assert_false(watch_picks_number(&f, 4));
    struct watch_filter none = filter(NULL, NULL);
    assert_false(watch_filters(&none));
}

static void bad_lists_leave_the_filter_as_it_was(void **state)
{
    (void)state;
    struct watch_filter f = filter("a*", "1");
    assert_non_null(watch_add_globs(&f, "b*,"));
    assert_non_null(watch_add_sessions(&f, "2,0"));
    assert_int_equal(f.nglobs, 1);
    assert_int_equal(f.nsessions, 1);
    char many[WATCH_MAX_GLOBS * 3 + 8] = "";
    for (int i = 0; i <= WATCH_MAX_GLOBS; i++) strcat(many, i ? ",a*" : "a*");
    assert_non_null(watch_add_globs(&f, many)); /* 17 globs with the one there */
}

static void hello_names_come_from_ehlo_and_helo_only(void **state)
{
    (void)state;
    char name[WATCH_NAME_MAX];
    assert_true(watch_hello_name(LIT("EHLO laptop.local\r\n"), name, sizeof name));
    assert_string_equal(name, "laptop.local");
    assert_true(watch_hello_name(LIT("helo  [192.0.2.1]\r\n"), name, sizeof name));
    assert_string_equal(name, "[192.0.2.1]");
    assert_true(watch_hello_name(LIT("EHLO na\x01me\r\n"), name, sizeof name));
    assert_string_equal(name, "na?me");
    assert_true(watch_hello_name(LIT("EHLO\r\n"), name, sizeof name));
    assert_string_equal(name, "");
    assert_false(watch_hello_name(LIT("EHLOX y\r\n"), name, sizeof name));
    assert_false(watch_hello_name(LIT("MAIL FROM:<a@b>\r\n"), name, sizeof name));
}

/* ---- the summary ------------------------------------------------------------------------ */

static struct event ev(enum event_kind kind, uint64_t ms, const union event_facts *facts)
{
    return (struct event){.session = 3, .kind = kind, .t_ns = ms * MS, .facts = facts};
}

static void feed_reply(struct watch_summary *w, uint64_t ms, int code, bool to_smtptap)
{
    union event_facts f = {.reply = {.code = code}};
    struct event e = ev(EV_REPLY, ms, &f);
    e.to_smtptap = to_smtptap;
    watch_summary_feed(w, &e);
}

static void feed_command(struct watch_summary *w, const char *line)
{
    struct event e = ev(EV_COMMAND, 1, NULL);
    e.bytes = (const uint8_t *)line;
    e.len = strlen(line);
    watch_summary_feed(w, &e);
}

static const char *format(const struct watch_summary *w, struct buf *out)
{
    buf_reset(out);
    watch_summary_format(w, out);
    buf_append(out, "", 1);
    return (const char *)buf_head(out);
}

static void a_whole_session_makes_one_line(void **state)
{
    (void)state;
    struct watch_summary w;
    struct buf out;
    buf_init(&out);
    watch_summary_init(&w, 3, "-");
    union event_facts start = {0}, up = {0};
    struct sockaddr_in *c = (struct sockaddr_in *)&start.endpoints.a;
    c->sin_family = AF_INET;
    c->sin_port = htons(40312);
    inet_pton(AF_INET, "127.0.0.1", &c->sin_addr);
    struct sockaddr_in6 *u = (struct sockaddr_in6 *)&up.endpoints.a;
    u->sin6_family = AF_INET6;
    u->sin6_port = htons(25);
    inet_pton(AF_INET6, "2001:db8::1", &u->sin6_addr);
    watch_summary_feed(&w, &(struct event){.kind = EV_START, .facts = &start});
    watch_summary_feed(&w, &(struct event){.kind = EV_UPSTREAM, .facts = &up});
    feed_reply(&w, 2, 220, false);
    feed_command(&w, "EHLO laptop\r\n");
    feed_reply(&w, 3, 250, true); /* smtptap's own probe: not what the client got */
    union event_facts tls = {.tls = {.upstream = false, .version = "TLSv1.3"}};
    watch_summary_feed(&w, &(struct event){.kind = EV_INFO, .facts = &tls, .t_ns = 4 * MS});
    feed_command(&w, "EHLO other\r\n"); /* the first name stays */
    watch_summary_feed(&w, &(struct event){.kind = EV_LINT, .t_ns = 5 * MS});
    watch_summary_feed(&w, &(struct event){.kind = EV_LINT, .t_ns = 5 * MS});
    watch_summary_feed(&w, &(struct event){.kind = EV_FAULT, .t_ns = 6 * MS});
    feed_reply(&w, 7, 250, false); /* the message's end, then its delivery */
    union event_facts d = {.delivery = {.code = 250}};
    watch_summary_feed(&w, &(struct event){.kind = EV_DELIVERY, .facts = &d, .t_ns = 7 * MS});
    feed_reply(&w, 8, 221, false);
    union event_facts end = {.end = {.commands = 9, .messages = 1}};
    watch_summary_feed(&w, &(struct event){.kind = EV_END, .facts = &end, .t_ns = 1204 * MS});
    assert_string_equal(format(&w, &out),
                        "#3 +1.204 == summary 127.0.0.1:40312 -> [2001:db8::1]:25 helo=laptop "
                        "cmds=9 msgs=1 codes=250,221 tls=c:TLSv1.3,u:- faults=1 lint=2\n");
    buf_free(&out);
}

static void a_session_that_never_got_far(void **state)
{
    (void)state;
    struct watch_summary w;
    struct buf out;
    buf_init(&out);
    watch_summary_init(&w, 12, "sink");
    union event_facts end = {.end = {0}};
    watch_summary_feed(&w, &(struct event){.kind = EV_END, .facts = &end, .t_ns = 5 * MS});
    assert_string_equal(format(&w, &out), "#12 +0.005 == summary ? -> sink helo=- cmds=0 msgs=0 "
                                          "codes=- tls=c:-,u:- faults=0 lint=0\n");
    /* a reply and no message: the last reply's code; a message and nothing after: its own */
    watch_summary_init(&w, 12, "sink");
    feed_reply(&w, 1, 421, false);
    assert_non_null(strstr(format(&w, &out), " codes=421 "));
    union event_facts d = {.delivery = {.code = 451}};
    watch_summary_feed(&w, &(struct event){.kind = EV_DELIVERY, .facts = &d});
    assert_non_null(strstr(format(&w, &out), " codes=451 "));
    buf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(globs_match_the_address_with_and_without_its_port),
        cmocka_unit_test(sessions_are_picked_by_number),
        cmocka_unit_test(bad_lists_leave_the_filter_as_it_was),
        cmocka_unit_test(hello_names_come_from_ehlo_and_helo_only),
        cmocka_unit_test(a_whole_session_makes_one_line),
        cmocka_unit_test(a_session_that_never_got_far),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
