/* test_verdict.c - unit tests for the verdict (verdict.h): each bad certificate refused with
 * an alert, or without one; accepted and then AUTH or mail; checked after the handshake;
 * credentials or mail in clear (without STARTTLS, before TLS, after a withheld STARTTLS);
 * and the modes names and words (client_cert.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "smtptap/client_cert.h"
#include "smtptap/verdict.h"

static struct verdict judge(const struct verdict_facts *f)
{
    struct verdict v;
    assert_true(verdict_applies(f));
    verdict_of(f, &v);
    return v;
}

static void test_refused_with_alert(void **state)
{
    (void)state;
    struct verdict_facts f = {.cert = CLIENT_CERT_EXPIRED,
                              .starttls_sent = true,
                              .tls_started = true,
                              .tls_failed = true,
                              .alert = 45};
    struct verdict v = judge(&f);
    assert_string_equal(v.text, "client refused the expired certificate (alert "
                                "certificate_expired): good");
    assert_int_equal(v.action, VERDICT_REFUSED);
    assert_true(v.good);
    assert_false(v.credentials_exposed);
    assert_string_equal(verdict_action_words(v.action), "refused at handshake");
    assert_string_equal(verdict_action_id(v.action), "refused");
}

static void test_refused_without_alert(void **state)
{
    (void)state;
    struct verdict_facts f = {.cert = CLIENT_CERT_UNTRUSTED_CA,
                              .implicit_tls = true,
                              .tls_started = true,
                              .tls_failed = true};
    struct verdict v = judge(&f);
    assert_string_equal(v.text, "client refused the certificate from an untrusted CA (it "
                                "closed the connection during the handshake): good");
    assert_true(v.good);
    f.alert = 200; /* not a known alert: its number */
    v = judge(&f);
    assert_non_null(strstr(v.text, "(alert 200)"));
}

static void test_accepted_then_auth(void **state)
{
    (void)state;
    struct verdict_facts f = {.cert = CLIENT_CERT_EXPIRED,
                              .starttls_sent = true,
                              .tls_started = true,
                              .tls_up = true,
                              .auth = true,
                              .auth_in_tls = true,
                              .auth_mech = "PLAIN",
                              .auth_user = "alice"};
    struct verdict v = judge(&f);
    assert_string_equal(v.text, "client ACCEPTED an expired certificate and then sent AUTH PLAIN "
                                "for alice: credentials exposed");
    assert_int_equal(v.action, VERDICT_SENT_AUTH);
    assert_false(v.good);
    assert_true(v.credentials_exposed);
    assert_string_equal(verdict_action_words(v.action), "sent credentials");
    f.auth_user[0] = 0; /* user not shown (no --decode-auth) */
    f.mail = f.mail_in_tls = f.body = true;
    f.rcpts = 2;
    v = judge(&f);
    assert_string_equal(v.text, "client ACCEPTED an expired certificate and then sent AUTH PLAIN: "
                                "credentials exposed; it sent mail too: envelope (MAIL FROM, 2 "
                                "RCPT) and body exposed");
}

static void test_accepted_then_mail(void **state)
{
    (void)state;
    struct verdict_facts f = {.cert = CLIENT_CERT_WRONG_HOST,
                              .tls_started = true,
                              .tls_up = true,
                              .mail = true,
                              .mail_in_tls = true,
                              .rcpts = 1,
                              .body = true};
    struct verdict v = judge(&f);
    assert_string_equal(v.text, "client ACCEPTED a certificate for the wrong host and then sent "
                                "mail without AUTH: envelope (MAIL FROM, 1 RCPT) and body exposed");
    assert_int_equal(v.action, VERDICT_SENT_MAIL);
    assert_true(v.mail_exposed);
    assert_false(v.good);
}

static void test_checked_after_handshake(void **state)
{
    (void)state;
    struct verdict_facts f = {.cert = CLIENT_CERT_SELF_SIGNED, .tls_started = true, .tls_up = true};
    struct verdict v = judge(&f);
    assert_int_equal(v.action, VERDICT_GAVE_UP);
    assert_true(v.good);
    assert_non_null(
        strstr(v.text, "self-signed certificate but sent neither credentials nor mail"));
}

static void test_clear_without_starttls(void **state)
{
    (void)state;
    struct verdict_facts f = {
        .cert = CLIENT_CERT_SHA1, .auth = true, .auth_mech = "LOGIN", .auth_user = "bob"};
    struct verdict v = judge(&f);
    assert_string_equal(v.text, "client sent AUTH LOGIN for bob in clear without asking for "
                                "STARTTLS: credentials exposed");
    assert_false(v.good);
    /* AUTH in clear, then TLS: the clear one counts */
    f.tls_started = f.tls_up = true;
    v = judge(&f);
    assert_non_null(strstr(v.text, "in clear before TLS: credentials exposed"));
    struct verdict_facts quiet = {.cert = CLIENT_CERT_SHA1};
    v = judge(&quiet);
    assert_int_equal(v.action, VERDICT_GAVE_UP);
    assert_true(v.good);
}

static void test_strip(void **state)
{
    (void)state;
    struct verdict_facts f = {.strip = true, .starttls_sent = true};
    struct verdict v = judge(&f);
    assert_string_equal(v.text, "client gave up without sending credentials (it asked for "
                                "STARTTLS and was refused): good");
    assert_true(v.good);
    f.auth = true;
    strcpy(f.auth_mech, "PLAIN");
    strcpy(f.auth_user, "alice");
    v = judge(&f);
    assert_string_equal(v.text, "client sent AUTH PLAIN for alice in clear after STARTTLS was "
                                "withheld: credentials exposed");
    assert_int_equal(v.action, VERDICT_SENT_AUTH);
    assert_false(v.good);
    struct verdict_facts m = {.strip = true, .mail = true, .rcpts = 1, .body = true};
    v = judge(&m);
    assert_string_equal(v.text, "client sent mail without AUTH in clear after STARTTLS was "
                                "withheld: envelope (MAIL FROM, 1 RCPT) and body exposed");
}

static void test_applies(void **state)
{
    (void)state;
    struct verdict_facts good = {.cert = CLIENT_CERT_GOOD};
    assert_false(verdict_applies(&good));
    struct verdict_facts strip_implicit = {.strip = true, .implicit_tls = true};
    assert_false(verdict_applies(&strip_implicit)); /* strip has no STARTTLS to withhold */
    struct verdict_facts strip = {.strip = true};
    assert_true(verdict_applies(&strip));
}

static void test_alert_names(void **state)
{
    (void)state;
    assert_string_equal(verdict_alert_name(48), "unknown_ca");
    assert_string_equal(verdict_alert_name(42), "bad_certificate");
    assert_string_equal(verdict_alert_name(46), "certificate_unknown");
    assert_null(verdict_alert_name(0));
}

static void test_client_cert_names(void **state)
{
    (void)state;
    const char *names[] = {"good",          "self-signed", "untrusted-ca", "expired",
                           "not-yet-valid", "wrong-host",  "weak-key",     "sha1"};
    for (int i = 0; i < CLIENT_CERT_COUNT; i++) {
        enum client_cert m;
        assert_true(client_cert_parse(names[i], &m));
        assert_int_equal(m, i);
        assert_string_equal(client_cert_name(m), names[i]);
        assert_non_null(strstr(client_cert_choices(), names[i]));
    }
    enum client_cert m = CLIENT_CERT_SHA1;
    assert_false(client_cert_parse("Expired", &m));
    assert_false(client_cert_parse("", &m));
    assert_int_equal(m, CLIENT_CERT_SHA1);
    assert_null(client_cert_name(CLIENT_CERT_COUNT));
    assert_string_equal(client_cert_article(CLIENT_CERT_EXPIRED), "an");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_refused_with_alert),
        cmocka_unit_test(test_refused_without_alert),
        cmocka_unit_test(test_accepted_then_auth),
        cmocka_unit_test(test_accepted_then_mail),
        cmocka_unit_test(test_checked_after_handshake),
        cmocka_unit_test(test_clear_without_starttls),
        cmocka_unit_test(test_strip),
        cmocka_unit_test(test_applies),
        cmocka_unit_test(test_alert_names),
        cmocka_unit_test(test_client_cert_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
