/* test_hello.c - unit tests for the EHLO reply editing (ehlo.h) and the server's hello memory
 * (hello.h): which client hello reaches the server and which one smtptap answers from the
 * server's last reply, per TLS state of the server's connection. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdbool.h>
#include <string.h>

#include "smtptap/ehlo.h"
#include "smtptap/hello.h"

/* A string literal as (bytes, length). */
#define LIT(s) (const uint8_t *)(s), (sizeof(s) - 1)

static const char EHLO_REPLY[] = "250-mx.example greets vm\r\n"
                                 "250-PIPELINING\r\n"
                                 "250-STARTTLS\r\n"
                                 "250 AUTH PLAIN LOGIN\r\n";

static void assert_buf_equal(const struct buf *b, const char *want)
{
    char got[1024];
    size_t n = buf_size(b) < sizeof got - 1 ? buf_size(b) : sizeof got - 1;
    memcpy(got, buf_head(b), n);
    got[n] = 0;
    assert_string_equal(got, want);
    assert_int_equal(buf_size(b), strlen(want));
}

/* ---- ehlo.c ----------------------------------------------------------------------------- */

static void has_finds_whole_keywords_after_the_first_line(void **state)
{
    (void)state;
    assert_true(ehlo_has(LIT(EHLO_REPLY), "STARTTLS"));
    assert_true(ehlo_has(LIT(EHLO_REPLY), "auth"));
    assert_false(ehlo_has(LIT(EHLO_REPLY), "PIPE"));
    assert_false(ehlo_has(LIT(EHLO_REPLY), "mx.example")); /* the greeting line is no keyword */
    assert_true(ehlo_has(LIT("250-x\r\n250 AUTH=LOGIN\r\n"), "AUTH"));
    assert_false(ehlo_has(LIT("250 x\r\n"), "STARTTLS"));
}

/* Collects the texts ehlo_lines_not_in reports, "|"-separated. */
static void collect(void *ctx, const uint8_t *text, size_t n)
{
    struct buf *b = ctx;
    if (buf_size(b)) buf_append_str(b, "|");
    buf_append(b, text, n);
}

static void an_edit_is_compared_line_by_line_whatever_the_continuation_mark(void **state)
{
    (void)state;
    const char *server = "250-mx.example\r\n250-8BITMIME\r\n250 AUTH PLAIN\r\n";
    const char *client = "250-mx.example\r\n250-STARTTLS\r\n250 AUTH PLAIN\r\n";
    assert_true(ehlo_has_text((const uint8_t *)server, strlen(server), LIT("AUTH PLAIN")));
    assert_true(ehlo_has_text((const uint8_t *)server, strlen(server), LIT("mx.example")));
    assert_false(ehlo_has_text((const uint8_t *)server, strlen(server), LIT("AUTH")));
    struct buf out;
    buf_init(&out);
    ehlo_lines_not_in((const uint8_t *)client, strlen(client), (const uint8_t *)server,
                      strlen(server), collect, &out);
    assert_buf_equal(&out, "STARTTLS"); /* added */
    buf_reset(&out);
    ehlo_lines_not_in((const uint8_t *)server, strlen(server), (const uint8_t *)client,
                      strlen(client), collect, &out);
    assert_buf_equal(&out, "8BITMIME"); /* removed */
    buf_reset(&out);
    /* "250 mx" became "250-mx" and "250-A" became "250 A": the same lines */
    ehlo_lines_not_in(LIT("250-mx\r\n250 A\r\n"), LIT("250 mx\n250-A\r\n250 B\r\n"), collect, &out);
    assert_buf_equal(&out, "");
    buf_free(&out);
}

static void add_makes_the_first_line_a_continuation(void **state)
{
    (void)state;
    struct buf out;
    buf_init(&out);
    ehlo_add(LIT("250 mx.example\r\n"), "STARTTLS", &out);
    assert_buf_equal(&out, "250-mx.example\r\n250 STARTTLS\r\n");
    buf_reset(&out);
    ehlo_add(LIT("250-mx.example\r\n250 8BITMIME\r\n"), "STARTTLS", &out);
    assert_buf_equal(&out, "250-mx.example\r\n250-STARTTLS\r\n250 8BITMIME\r\n");
    buf_free(&out);
}

static void one_line_keeps_code_and_first_line_text(void **state)
{
    (void)state;
    struct buf out;
    buf_init(&out);
    ehlo_as_one_line(LIT(EHLO_REPLY), &out);
    assert_buf_equal(&out, "250 mx.example greets vm\r\n");
    buf_reset(&out);
    ehlo_as_one_line(LIT("250 single\r\n"), &out);
    assert_buf_equal(&out, "250 single\r\n");
    buf_reset(&out);
    ehlo_as_one_line(LIT("250\r\n"), &out); /* a code without text stays one */
    assert_buf_equal(&out, "250\r\n");
    buf_reset(&out);
    ehlo_as_one_line(LIT("250-bare lf\n250 X\n"), &out);
    assert_buf_equal(&out, "250 bare lf\r\n");
    buf_free(&out);
}

/* ---- hello.c ------------------------------------------------------------------------------ */

struct fixture {
    struct hello_memory m;
    struct buf out;
};

static int setup(void **state)
{
    static struct fixture f;
    hello_memory_init(&f.m);
    buf_init(&f.out);
    *state = &f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    hello_memory_free(&f->m);
    buf_free(&f->out);
    return 0;
}

/* The server accepts "EHLO vm" with EHLO_REPLY. */
static void greet(struct hello_memory *m, const char *line)
{
    hello_memory_sent(m, (const uint8_t *)line, strlen(line));
    hello_memory_replied(m, 250, LIT(EHLO_REPLY));
}

static void first_hello_goes_to_the_server(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(hello_route(&f->m, SMTP_VERB_EHLO), HELLO_FORWARD);
    hello_memory_client_tls(&f->m); /* STARTTLS before any hello: nothing to answer from */
    assert_int_equal(hello_route(&f->m, SMTP_VERB_EHLO), HELLO_FORWARD);
    hello_memory_client_greeted(&f->m);
    assert_false(hello_memory_answer(&f->m, SMTP_VERB_EHLO, &f->out));
    assert_int_equal(buf_size(&f->out), 0);
}

static void hello_after_smtptaps_starttls_is_answered_from_memory(void **state)
{
    struct fixture *f = *state;
    greet(&f->m, "EHLO vm\r\n");
    hello_memory_client_tls(&f->m);
    assert_int_equal(hello_route(&f->m, SMTP_VERB_EHLO), HELLO_FROM_MEMORY);
    assert_true(hello_memory_answer(&f->m, SMTP_VERB_EHLO, &f->out));
    assert_buf_equal(&f->out, EHLO_REPLY);
}

static void only_the_first_hello_after_starttls_is_owed(void **state)
{
    struct fixture *f = *state;
    greet(&f->m, "EHLO vm\r\n");
    hello_memory_client_tls(&f->m);
    assert_int_equal(hello_route(&f->m, SMTP_VERB_NOOP), HELLO_FORWARD); /* not a hello */
    assert_int_equal(hello_route(&f->m, SMTP_VERB_EHLO), HELLO_FROM_MEMORY);
    assert_int_equal(hello_route(&f->m, SMTP_VERB_EHLO), HELLO_FROM_MEMORY); /* only decides */
    hello_memory_client_greeted(&f->m);
    /* a third EHLO the server would have seen without smtptap too */
    assert_int_equal(hello_route(&f->m, SMTP_VERB_EHLO), HELLO_FORWARD);
}

static void repeated_hello_without_starttls_goes_to_the_server(void **state)
{
    struct fixture *f = *state;
    greet(&f->m, "EHLO vm\r\n");
    assert_int_equal(hello_route(&f->m, SMTP_VERB_EHLO), HELLO_FORWARD);
    assert_int_equal(hello_route(&f->m, SMTP_VERB_HELO), HELLO_FORWARD);
}

static void upstream_tls_change_forgets_the_hello(void **state)
{
    struct fixture *f = *state;
    greet(&f->m, "EHLO vm\r\n");
    hello_memory_forget(&f->m); /* smtptap's own STARTTLS to the server was accepted */
    hello_memory_client_tls(&f->m);
    assert_int_equal(hello_route(&f->m, SMTP_VERB_EHLO), HELLO_FORWARD);
}

static void refused_hello_is_not_kept(void **state)
{
    struct fixture *f = *state;
    hello_memory_sent(&f->m, LIT("EHLO vm\r\n"));
    hello_memory_replied(&f->m, 550, LIT("550 go away\r\n"));
    hello_memory_client_tls(&f->m);
    assert_int_equal(hello_route(&f->m, SMTP_VERB_EHLO), HELLO_FORWARD);
    /* and a 250 after a refusal replaces nothing it should not */
    greet(&f->m, "HELO vm\r\n");
    hello_memory_replied(&f->m, 250, LIT("250 late\r\n")); /* no hello on its way: ignored */
    assert_true(hello_memory_answer(&f->m, SMTP_VERB_HELO, &f->out));
    assert_buf_equal(&f->out, "250 mx.example greets vm\r\n");
}

static void helo_gets_one_line_from_an_ehlo_reply(void **state)
{
    struct fixture *f = *state;
    greet(&f->m, "EHLO vm\r\n");
    assert_true(hello_memory_answer(&f->m, SMTP_VERB_HELO, &f->out));
    assert_buf_equal(&f->out, "250 mx.example greets vm\r\n");
}

static void ehlo_after_helo_gets_no_extensions(void **state)
{
    struct fixture *f = *state;
    hello_memory_sent(&f->m, LIT("HELO vm\r\n"));
    hello_memory_replied(&f->m, 250, LIT("250 mx.example\r\n"));
    assert_true(hello_memory_answer(&f->m, SMTP_VERB_EHLO, &f->out));
    assert_buf_equal(&f->out, "250 mx.example\r\n");
}

static void names_compare_without_case_and_line_end(void **state)
{
    struct fixture *f = *state;
    greet(&f->m, "EHLO Laptop.Example\r\n");
    assert_string_equal(f->m.name, "Laptop.Example");
    assert_true(hello_memory_same_name(&f->m, LIT("EHLO laptop.example\r\n")));
    assert_true(hello_memory_same_name(&f->m, LIT("HELO laptop.example \n")));
    assert_false(hello_memory_same_name(&f->m, LIT("EHLO other.example\r\n")));
}

static void hostile_names_are_cut_and_made_printable(void **state)
{
    struct fixture *f = *state;
    char line[600] = "EHLO ";
    memset(line + 5, 'a', 400);
    line[5] = '\x1b';
    memcpy(line + 405, "\r\n", 3);
    greet(&f->m, line);
    assert_int_equal(strlen(f->m.name), HELLO_NAME_MAX);
    assert_int_equal(f->m.name[0], '?');
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(has_finds_whole_keywords_after_the_first_line),
        cmocka_unit_test(add_makes_the_first_line_a_continuation),
        cmocka_unit_test(an_edit_is_compared_line_by_line_whatever_the_continuation_mark),
        cmocka_unit_test(one_line_keeps_code_and_first_line_text),
        cmocka_unit_test_setup_teardown(first_hello_goes_to_the_server, setup, teardown),
        cmocka_unit_test_setup_teardown(hello_after_smtptaps_starttls_is_answered_from_memory,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(only_the_first_hello_after_starttls_is_owed, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(repeated_hello_without_starttls_goes_to_the_server, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(upstream_tls_change_forgets_the_hello, setup, teardown),
        cmocka_unit_test_setup_teardown(refused_hello_is_not_kept, setup, teardown),
        cmocka_unit_test_setup_teardown(helo_gets_one_line_from_an_ehlo_reply, setup, teardown),
        cmocka_unit_test_setup_teardown(ehlo_after_helo_gets_no_extensions, setup, teardown),
        cmocka_unit_test_setup_teardown(names_compare_without_case_and_line_end, setup, teardown),
        cmocka_unit_test_setup_teardown(hostile_names_are_cut_and_made_printable, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
