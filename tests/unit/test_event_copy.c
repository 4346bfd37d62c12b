/* test_event_copy.c - unit tests for event_copy.h: a copy carries every byte, string and
 * array of its event and points only into its own block, for each kind with facts; the
 * source can be overwritten afterwards (what the writer thread relies on). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "smtptap/event_copy.h"

struct copied {
    unsigned char *mem;
    size_t size;
    struct event *ev;
};

static struct copied copy(const struct event *ev)
{
    struct copied c;
    c.size = event_copy_size(ev);
    assert_int_equal(c.size % _Alignof(max_align_t), 0);
    assert_int_equal(posix_memalign((void **)&c.mem, _Alignof(max_align_t), c.size), 0);
    memset(c.mem, 0xa5, c.size);
    c.ev = event_copy_into(c.mem, ev);
    assert_ptr_equal(c.ev, c.mem);
    return c;
}

static void assert_inside(const struct copied *c, const void *p)
{
    if (!p) return;
    const unsigned char *b = p;
    assert_true(b >= c->mem && b < c->mem + c->size);
}

/* The source's strings live here; they are wiped after the copy. */
static char source[4096];
static size_t used;

static const char *str(const char *s)
{
    size_t n = strlen(s) + 1;
    assert_true(used + n <= sizeof source);
    char *at = source + used;
    memcpy(at, s, n);
    used += n;
    return at;
}

static void wipe(void)
{
    memset(source, 'X', sizeof source);
    used = 0;
}

static void bytes_and_text_are_copied(void **state)
{
    (void)state;
    const char *bytes = str("250 2.0.0 OK\r\n");
    struct event ev = {.session = 7,
                       .t_ns = 12,
                       .wall_us = 34,
                       .kind = EV_REPLY,
                       .dir = DIR_S2C,
                       .tls = true,
                       .local = true,
                       .bytes = (const uint8_t *)bytes,
                       .len = 14,
                       .text = str("a text")};
    const char *from = str("250-x\r\n250 STARTTLS\r\n");
    union event_facts f = {.reply = {.code = 250,
                                     .latency_ns = 99,
                                     .edited_from = (const uint8_t *)from,
                                     .edited_from_len = 20}};
    ev.facts = &f;
    struct copied c = copy(&ev);
    wipe();
    memset(&f, 0, sizeof f);
    assert_int_equal(c.ev->session, 7);
    assert_int_equal(c.ev->t_ns, 12);
    assert_int_equal(c.ev->wall_us, 34);
    assert_int_equal(c.ev->kind, EV_REPLY);
    assert_true(c.ev->tls && c.ev->local);
    assert_int_equal(c.ev->len, 14);
    assert_memory_equal(c.ev->bytes, "250 2.0.0 OK\r\n", 14);
    assert_string_equal(c.ev->text, "a text");
    assert_int_equal(c.ev->facts->reply.code, 250);
    assert_int_equal(c.ev->facts->reply.latency_ns, 99);
    assert_int_equal(c.ev->facts->reply.edited_from_len, 20);
    assert_memory_equal(c.ev->facts->reply.edited_from, "250-x\r\n250 STARTTLS\r\n", 20);
    assert_inside(&c, c.ev->facts->reply.edited_from);
    assert_inside(&c, c.ev->bytes);
    assert_inside(&c, c.ev->text);
    assert_inside(&c, c.ev->facts);
    free(c.mem);
}

static void no_pointer_stays_null_or_empty(void **state)
{
    (void)state;
    struct event ev = {.kind = EV_WIRE, .dir = DIR_C2S};
    struct copied c = copy(&ev);
    assert_null(c.ev->bytes);
    assert_null(c.ev->text);
    assert_null(c.ev->facts);
    free(c.mem);
    /* zero bytes that are there are not NULL: the writer may tell them apart */
    ev.bytes = (const uint8_t *)"";
    c = copy(&ev);
    assert_non_null(c.ev->bytes);
    assert_inside(&c, c.ev->bytes);
    free(c.mem);
}

static void tls_facts_are_copied(void **state)
{
    (void)state;
    union event_facts f = {.tls = {.upstream = true,
                                   .version = str("TLSv1.3"),
                                   .cipher = str("TLS_AES_256_GCM_SHA384"),
                                   .sni = str(""),
                                   .peer_subject = str("CN=mx.example"),
                                   .peer_issuer = str("CN=ca"),
                                   .peer_sha256 = str("ab12"),
                                   .verify = str("verified")}};
    struct event ev = {.kind = EV_INFO, .text = str("TLS up"), .facts = &f};
    struct copied c = copy(&ev);
    wipe();
    const struct event_tls_facts *t = &c.ev->facts->tls;
    assert_true(t->upstream);
    assert_string_equal(t->version, "TLSv1.3");
    assert_string_equal(t->cipher, "TLS_AES_256_GCM_SHA384");
    assert_string_equal(t->sni, "");
    assert_string_equal(t->peer_subject, "CN=mx.example");
    assert_string_equal(t->peer_issuer, "CN=ca");
    assert_string_equal(t->peer_sha256, "ab12");
    assert_string_equal(t->verify, "verified");
    const char *ptrs[] = {t->version,     t->cipher,      t->sni,   t->peer_subject,
                          t->peer_issuer, t->peer_sha256, t->verify};
    for (size_t i = 0; i < sizeof ptrs / sizeof ptrs[0]; i++) assert_inside(&c, ptrs[i]);
    free(c.mem);
}

static void delivery_facts_with_their_recipients(void **state)
{
    (void)state;
    const char *rcpts[3] = {str("RCPT TO:<a@x>"), str("RCPT TO:<b@x>"), str("RCPT TO:<c@x>")};
    union event_facts f = {.delivery = {.message = 3,
                                        .helo = str("client.test"),
                                        .mail_from = str("MAIL FROM:<m@x> BODY=8BITMIME"),
                                        .rcpts = rcpts,
                                        .nrcpts = 3,
                                        .reply = (const uint8_t *)str("250 queued\r\n"),
                                        .reply_len = 12,
                                        .code = 250}};
    struct event ev = {.kind = EV_DELIVERY, .facts = &f};
    struct copied c = copy(&ev);
    wipe();
    memset(rcpts, 0, sizeof rcpts);
    const struct event_delivery_facts *d = &c.ev->facts->delivery;
    assert_int_equal(d->message, 3);
    assert_string_equal(d->helo, "client.test");
    assert_string_equal(d->mail_from, "MAIL FROM:<m@x> BODY=8BITMIME");
    assert_int_equal(d->nrcpts, 3);
    assert_inside(&c, d->rcpts);
    assert_string_equal(d->rcpts[0], "RCPT TO:<a@x>");
    assert_string_equal(d->rcpts[2], "RCPT TO:<c@x>");
    assert_inside(&c, d->rcpts[1]);
    assert_memory_equal(d->reply, "250 queued\r\n", 12);
    assert_inside(&c, d->reply);
    assert_int_equal(d->code, 250);
    free(c.mem);
}

static void lint_fault_message_verdict_facts(void **state)
{
    (void)state;
    union event_facts lint = {.lint = {.id = str("bare-lf-in-message"), .offset = 42}};
    struct event ev = {.kind = EV_LINT, .text = str("lint: bare LF"), .facts = &lint};
    struct copied c1 = copy(&ev);
    union event_facts fault = {.fault = {.rule = str("busy"), .action = str("reply")}};
    ev = (struct event){.kind = EV_FAULT, .facts = &fault};
    struct copied c2 = copy(&ev);
    union event_facts msg = {.message = {.number = 2, .size = 9, .lines = 1, .sha256 = str("ff")}};
    ev = (struct event){.kind = EV_MESSAGE, .facts = &msg};
    struct copied c3 = copy(&ev);
    union event_facts v = {.verdict = {.cert = str("expired"),
                                       .starttls = str("offer"),
                                       .action = str("refused"),
                                       .alert = str("certificate_expired"),
                                       .auth_mech = str(""),
                                       .auth_user = str(""),
                                       .good = true}};
    ev = (struct event){.kind = EV_VERDICT, .facts = &v};
    struct copied c4 = copy(&ev);
    wipe();
    assert_string_equal(c1.ev->facts->lint.id, "bare-lf-in-message");
    assert_int_equal(c1.ev->facts->lint.offset, 42);
    assert_string_equal(c1.ev->text, "lint: bare LF");
    assert_string_equal(c2.ev->facts->fault.rule, "busy");
    assert_string_equal(c2.ev->facts->fault.action, "reply");
    assert_string_equal(c3.ev->facts->message.sha256, "ff");
    assert_int_equal(c3.ev->facts->message.size, 9);
    assert_string_equal(c4.ev->facts->verdict.cert, "expired");
    assert_string_equal(c4.ev->facts->verdict.alert, "certificate_expired");
    assert_true(c4.ev->facts->verdict.good);
    assert_inside(&c4, c4.ev->facts->verdict.action);
    free(c1.mem);
    free(c2.mem);
    free(c3.mem);
    free(c4.mem);
}

/* A decoded SASL line's facts: its mechanism, step, user, each field's name and value. */
static void auth_facts_with_their_fields(void **state)
{
    (void)state;
    union event_facts a = {.auth = {.mechanism = str("PLAIN"),
                                    .step = str("command"),
                                    .user = str("alice"),
                                    .nfields = 2,
                                    .names = {str("authcid"), str("password")},
                                    .values = {str("alice"), str("<redacted>")},
                                    .secret = {false, true}}};
    struct event ev = {.kind = EV_AUTH, .text = str("AUTH PLAIN ..."), .facts = &a};
    struct copied c = copy(&ev);
    wipe();
    const struct event_auth_facts *x = &c.ev->facts->auth;
    assert_string_equal(x->mechanism, "PLAIN");
    assert_string_equal(x->step, "command");
    assert_string_equal(x->user, "alice");
    assert_null(x->outcome);
    assert_int_equal(x->nfields, 2);
    assert_string_equal(x->names[1], "password");
    assert_string_equal(x->values[1], "<redacted>");
    assert_true(x->secret[1] && !x->secret[0]);
    assert_inside(&c, x->names[0]);
    assert_inside(&c, x->values[1]);
    free(c.mem);
}

/* An EV_BODY's facts carry no digest: NULL stays NULL. */
static void body_facts_without_digest(void **state)
{
    (void)state;
    static uint8_t big[100000];
    memset(big, 'b', sizeof big);
    union event_facts f = {.message = {.number = 5}};
    struct event ev = {.kind = EV_BODY, .bytes = big, .len = sizeof big, .facts = &f};
    struct copied c = copy(&ev);
    memset(big, 0, sizeof big);
    assert_null(c.ev->facts->message.sha256);
    assert_int_equal(c.ev->facts->message.number, 5);
    for (size_t i = 0; i < sizeof big; i++)
        if (c.ev->bytes[i] != 'b') fail_msg("byte %zu not copied", i);
    free(c.mem);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(bytes_and_text_are_copied),
        cmocka_unit_test(no_pointer_stays_null_or_empty),
        cmocka_unit_test(tls_facts_are_copied),
        cmocka_unit_test(delivery_facts_with_their_recipients),
        cmocka_unit_test(lint_fault_message_verdict_facts),
        cmocka_unit_test(body_facts_without_digest),
        cmocka_unit_test(auth_facts_with_their_fields),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
