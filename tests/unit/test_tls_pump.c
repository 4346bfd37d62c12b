/* test_tls_pump.c - unit tests for the TLS pump (tls_pump.h): two pumps, a client and a
 * server, talk to each other through their ciphertext callbacks, with every flight delivered
 * whole, cut at each of its byte boundaries, or one byte at a time.
 *
 * The certificates are made here in memory: a throwaway CA and a leaf for pump.test that it
 * signed. The contexts are smtptap's own (tls_server_ctx, tls_client_ctx) with the leaf on
 * the server's and the CA added to the client's trust store. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtptap/buf.h"
#include "smtptap/tls.h"
#include "smtptap/tls_pump.h"

#define LIT(s) (const uint8_t *)(s), (sizeof(s) - 1)

enum { CLIENT, SERVER };
enum { MIB = 1024 * 1024 };

static const char HOST[] = "pump.test";

/* ---- certificates and contexts, made once ------------------------------------------------ */

struct material {
    EVP_PKEY *ca_key, *leaf_key;
    X509 *ca, *leaf;
    SSL_CTX *server;     /* shows the leaf */
    SSL_CTX *server12;   /* the same, TLS 1.2 at most */
    SSL_CTX *client;     /* trusts the CA */
    SSL_CTX *untrusting; /* trusts only the system store */
};

static struct material M;

static void add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX v3;
    X509V3_set_ctx(&v3, issuer, cert, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
    assert_non_null(ext);
    assert_int_equal(X509_add_ext(cert, ext, -1), 1);
    X509_EXTENSION_free(ext);
}

/* A certificate for key named cn, signed by issuer_key (self-signed when issuer is NULL). */
static X509 *make_cert(EVP_PKEY *key, const char *cn, X509 *issuer, EVP_PKEY *issuer_key, bool ca)
{
    X509 *cert = X509_new();
    assert_non_null(cert);
    assert_int_equal(X509_set_version(cert, 2), 1);
    assert_int_equal(ASN1_INTEGER_set(X509_get_serialNumber(cert), ca ? 1 : 2), 1);
    assert_non_null(X509_gmtime_adj(X509_getm_notBefore(cert), -3600));
    assert_non_null(X509_gmtime_adj(X509_getm_notAfter(cert), 3600));
    assert_int_equal(X509_set_pubkey(cert, key), 1);
    X509_NAME *name = X509_get_subject_name(cert);
    assert_int_equal(
        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0),
        1);
    X509 *signer = issuer ? issuer : cert;
    assert_int_equal(X509_set_issuer_name(cert, X509_get_subject_name(signer)), 1);
    add_ext(cert, signer, NID_basic_constraints, ca ? "critical,CA:TRUE" : "critical,CA:FALSE");
    add_ext(cert, signer, NID_subject_key_identifier, "hash");
    if (ca) {
        add_ext(cert, signer, NID_key_usage, "critical,keyCertSign,cRLSign");
    } else {
        add_ext(cert, signer, NID_authority_key_identifier, "keyid");
        add_ext(cert, signer, NID_key_usage, "critical,digitalSignature");
        add_ext(cert, signer, NID_ext_key_usage, "serverAuth");
        add_ext(cert, signer, NID_subject_alt_name, "DNS:pump.test");
    }
    assert_true(X509_sign(cert, issuer_key, EVP_sha256()) > 0);
    return cert;
}

/* smtptap's server context showing the leaf. Flights are kept short, as every byte of them
 * costs a handshake in the cutting tests: no chain (the client has the CA), one ticket. */
static SSL_CTX *server_ctx(int max_version)
{
    char err[TLS_ERR_MAX];
    SSL_CTX *ctx = tls_server_ctx(NULL, err, sizeof err);
    if (!ctx) fail_msg("tls_server_ctx: %s", err);
    assert_int_equal(SSL_CTX_use_certificate(ctx, M.leaf), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey(ctx, M.leaf_key), 1);
    assert_int_equal(SSL_CTX_set_num_tickets(ctx, 1), 1);
    if (max_version) assert_int_equal(SSL_CTX_set_max_proto_version(ctx, max_version), 1);
    return ctx;
}

static SSL_CTX *client_ctx(bool trust_ca)
{
    char err[TLS_ERR_MAX];
    SSL_CTX *ctx = tls_client_ctx(NULL, false, NULL, err, sizeof err);
    if (!ctx) fail_msg("tls_client_ctx: %s", err);
    if (trust_ca) assert_int_equal(X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx), M.ca), 1);
    return ctx;
}

static int material_setup(void **state)
{
    (void)state;
    M.ca_key = EVP_EC_gen("P-256");
    M.leaf_key = EVP_EC_gen("P-256");
    if (!M.ca_key || !M.leaf_key) return -1;
    M.ca = make_cert(M.ca_key, "pump test CA", NULL, M.ca_key, true);
    M.leaf = make_cert(M.leaf_key, HOST, M.ca, M.ca_key, false);
    M.server = server_ctx(0);
    M.server12 = server_ctx(TLS1_2_VERSION);
    M.client = client_ctx(true);
    M.untrusting = client_ctx(false);
    return 0;
}

static int material_teardown(void **state)
{
    (void)state;
    SSL_CTX_free(M.server);
    SSL_CTX_free(M.server12);
    SSL_CTX_free(M.client);
    SSL_CTX_free(M.untrusting);
    X509_free(M.ca);
    X509_free(M.leaf);
    EVP_PKEY_free(M.ca_key);
    EVP_PKEY_free(M.leaf_key);
    return 0;
}

/* ---- one end: a pump and what it told its owner ------------------------------------------- */

struct end {
    struct tls_pump pump;
    struct buf wire; /* ciphertext it produced, not yet delivered to the other end */
    struct buf got;  /* plaintext it received */
    int handshakes, handshake_status, peer_closes, failures;
    size_t written, sent; /* plaintext given to tls_pump_write; reported encrypted */
    int in_callback;      /* callbacks running */
    bool nested_plaintext;
    /* what the owner does when plaintext comes in */
    const char *echo;        /* writes this back */
    bool halt_on_read;       /* halts the pump */
    bool stop_on_read;       /* stops reading */
    bool write_on_handshake; /* writes "hello" when the handshake completes */
};

static struct end *end_of(struct tls_pump *p)
{
    return p->owner;
}

static void end_write(struct end *e, const uint8_t *bytes, size_t len)
{
    if (tls_pump_writable(&e->pump)) e->written += len;
    tls_pump_write(&e->pump, bytes, len);
}

static void on_ciphertext_out(struct tls_pump *p, const uint8_t *bytes, size_t len)
{
    buf_append(&end_of(p)->wire, bytes, len);
}

static void on_plaintext_in(struct tls_pump *p, const uint8_t *bytes, size_t len)
{
    struct end *e = end_of(p);
    if (e->in_callback) e->nested_plaintext = true;
    e->in_callback++;
    buf_append(&e->got, bytes, len);
    if (e->echo) end_write(e, (const uint8_t *)e->echo, strlen(e->echo));
    if (e->halt_on_read) tls_pump_halt(p);
    if (e->stop_on_read) tls_pump_stop_reading(p);
    e->in_callback--;
}

static void on_plaintext_sent(struct tls_pump *p, size_t n)
{
    struct end *e = end_of(p);
    e->sent += n;
    assert_true(e->sent <= e->written);
}

static void on_handshake_done(struct tls_pump *p, int status)
{
    struct end *e = end_of(p);
    e->handshakes++;
    e->handshake_status = status;
    if (status == 0) assert_int_equal(tls_pump_state(p), TLS_PUMP_ON);
    if (status < 0) assert_int_equal(tls_pump_state(p), TLS_PUMP_FAILED);
    if (status == 0 && e->write_on_handshake) end_write(e, LIT("hello"));
}

static void on_peer_closed(struct tls_pump *p)
{
    end_of(p)->peer_closes++;
}

static void on_failed(struct tls_pump *p)
{
    end_of(p)->failures++;
    assert_int_equal(tls_pump_state(p), TLS_PUMP_FAILED);
}

static const struct tls_pump_events EVENTS = {
    .ciphertext_out = on_ciphertext_out,
    .plaintext_in = on_plaintext_in,
    .plaintext_sent = on_plaintext_sent,
    .handshake_done = on_handshake_done,
    .peer_closed = on_peer_closed,
    .failed = on_failed,
};

static void end_free(struct end *e)
{
    tls_pump_free(&e->pump);
    buf_free(&e->wire);
    buf_free(&e->got);
}

static void assert_got(const struct end *e, const uint8_t *want, size_t len)
{
    assert_int_equal(buf_size(&e->got), len);
    assert_memory_equal(buf_head(&e->got), want, len);
}

static void assert_contains(const char *text, const char *part)
{
    if (!strstr(text, part)) fail_msg("\"%s\" does not contain \"%s\"", text, part);
}

/* ---- two ends and the wire between them ---------------------------------------------------- */

/* How each delivery (one end's ciphertext since its last delivery: a flight) is cut. */
struct plan {
    int cut_delivery; /* the delivery cut in two, -1 for none */
    size_t cut_at;    /* after this many bytes */
    size_t piece;     /* every delivery in pieces of this size (0: whole) */
    bool cut_fell;    /* the cut fell inside its delivery */
    int deliveries;
};

static const struct plan WHOLE = {.cut_delivery = -1};

struct pair {
    struct end end[2];
    struct plan plan;
};

static void pair_start(struct pair *pr, SSL_CTX *server, SSL_CTX *client, const char *host,
                       struct plan plan)
{
    memset(pr, 0, sizeof *pr);
    pr->plan = plan;
    assert_int_equal(
        tls_pump_start(&pr->end[SERVER].pump, server, true, NULL, &EVENTS, &pr->end[SERVER]), 0);
    assert_int_equal(
        tls_pump_start(&pr->end[CLIENT].pump, client, false, host, &EVENTS, &pr->end[CLIENT]), 0);
}

static void pair_free(struct pair *pr)
{
    end_free(&pr->end[CLIENT]);
    end_free(&pr->end[SERVER]);
}

static void feed(struct end *to, const uint8_t *bytes, size_t len, size_t piece)
{
    if (!piece) piece = len;
    for (size_t off = 0; off < len; off += piece)
        tls_pump_receive(&to->pump, bytes + off, len - off < piece ? len - off : piece);
}

/* Delivers what from produced to the other end, cut as the plan says; false if nothing. */
static bool deliver(struct pair *pr, int from)
{
    struct buf flight = pr->end[from].wire; /* taken: the receiver writes only its own wire */
    buf_init(&pr->end[from].wire);
    size_t n = buf_size(&flight);
    struct plan *plan = &pr->plan;
    struct end *to = &pr->end[!from];
    if (n && plan->deliveries++ == plan->cut_delivery && plan->cut_at < n) {
        plan->cut_fell = true;
        feed(to, buf_head(&flight), plan->cut_at, 0);
        feed(to, buf_head(&flight) + plan->cut_at, n - plan->cut_at, 0);
    } else if (n) {
        feed(to, buf_head(&flight), n, plan->piece);
    }
    buf_free(&flight);
    return n > 0;
}

/* Delivers both ways until neither end has anything more to say. */
static void converse(struct pair *pr)
{
    for (int i = 0; i < 10000; i++) {
        bool moved = deliver(pr, CLIENT);
        moved = deliver(pr, SERVER) || moved;
        if (!moved) return;
    }
    fail_msg("the conversation does not settle");
}

static void assert_handshake_ok(const struct pair *pr)
{
    for (int side = CLIENT; side <= SERVER; side++) {
        const struct end *e = &pr->end[side];
        if (e->handshakes != 1 || e->handshake_status != 0)
            fail_msg("%s: %d handshake callbacks, status %d: %s", side ? "server" : "client",
                     e->handshakes, e->handshake_status, tls_pump_error(&e->pump));
        assert_int_equal(tls_pump_state(&e->pump), TLS_PUMP_ON);
        assert_int_equal(e->failures, 0);
        assert_false(e->nested_plaintext);
    }
    assert_int_equal(SSL_get_verify_result(pr->end[CLIENT].pump.ssl), X509_V_OK);
}

/* A handshake with plaintext both ways written before it finished, delivered as planned;
 * returns whether the plan's cut fell inside a delivery. */
static bool handshake_with_early_words(SSL_CTX *server, struct plan plan)
{
    struct pair pr;
    pair_start(&pr, server, M.client, HOST, plan);
    end_write(&pr.end[CLIENT], LIT("EHLO client.test\r\n"));
    end_write(&pr.end[SERVER], LIT("220 pump.test ESMTP\r\n"));
    assert_int_equal(tls_pump_queued(&pr.end[CLIENT].pump), 18);
    converse(&pr);
    assert_handshake_ok(&pr);
    assert_got(&pr.end[SERVER], LIT("EHLO client.test\r\n"));
    assert_got(&pr.end[CLIENT], LIT("220 pump.test ESMTP\r\n"));
    for (int side = CLIENT; side <= SERVER; side++) {
        assert_int_equal(pr.end[side].sent, pr.end[side].written);
        assert_int_equal(tls_pump_queued(&pr.end[side].pump), 0);
    }
    bool fell = pr.plan.cut_fell;
    pair_free(&pr);
    return fell;
}

/* Every delivery cut at every byte boundary, one delivery and one cut per handshake. */
static void cut_every_flight_everywhere(SSL_CTX *server)
{
    int handshakes = 0;
    for (int delivery = 0; delivery < 16; delivery++) {
        size_t at = 1;
        while (handshake_with_early_words(server,
                                          (struct plan){.cut_delivery = delivery, .cut_at = at}))
            at++, handshakes++;
        if (at == 1) break; /* there was no such delivery */
    }
    assert_true(handshakes > 500); /* a few flights of a few hundred bytes each */
}

/* ---- handshake and plaintext ---------------------------------------------------------------- */

static void the_handshake_completes_on_both_sides_with_whole_flights(void **state)
{
    (void)state;
    assert_false(handshake_with_early_words(M.server, WHOLE));
    assert_false(handshake_with_early_words(M.server12, WHOLE));
}

static void the_handshake_survives_a_cut_at_every_byte_of_every_flight_tls13(void **state)
{
    (void)state;
    cut_every_flight_everywhere(M.server);
}

static void the_handshake_survives_a_cut_at_every_byte_of_every_flight_tls12(void **state)
{
    (void)state;
    cut_every_flight_everywhere(M.server12);
}

static void the_handshake_survives_one_byte_at_a_time(void **state)
{
    (void)state;
    handshake_with_early_words(M.server, (struct plan){.cut_delivery = -1, .piece = 1});
    handshake_with_early_words(M.server12, (struct plan){.cut_delivery = -1, .piece = 1});
}

static void plaintext_written_early_waits_for_the_handshake(void **state)
{
    (void)state;
    struct pair pr;
    pair_start(&pr, M.server, M.client, HOST, WHOLE);
    struct end *c = &pr.end[CLIENT];
    end_write(c, LIT("EHLO a\r\n"));
    end_write(c, LIT("MAIL FROM:<a@b>\r\n"));
    assert_int_equal(tls_pump_queued(&c->pump), 25);
    assert_int_equal(c->sent, 0);
    assert_int_equal(tls_pump_state(&c->pump), TLS_PUMP_HANDSHAKING);
    converse(&pr);
    assert_handshake_ok(&pr);
    assert_got(&pr.end[SERVER], LIT("EHLO a\r\nMAIL FROM:<a@b>\r\n"));
    assert_int_equal(c->sent, 25);
    assert_int_equal(tls_pump_queued(&c->pump), 0);
    pair_free(&pr);
}

static void a_mebibyte_each_way_arrives_byte_for_byte(void **state)
{
    (void)state;
    uint8_t *up = malloc(MIB), *down = malloc(MIB);
    assert_non_null(up);
    assert_non_null(down);
    assert_int_equal(RAND_bytes(up, MIB), 1);
    assert_int_equal(RAND_bytes(down, MIB), 1);
    for (size_t piece = 0; piece <= 4093; piece += 4093) { /* whole, then odd-sized pieces */
        struct pair pr;
        pair_start(&pr, M.server, M.client, HOST,
                   (struct plan){.cut_delivery = -1, .piece = piece});
        end_write(&pr.end[CLIENT], up, MIB / 2); /* half before the handshake, half after */
        converse(&pr);
        assert_handshake_ok(&pr);
        end_write(&pr.end[CLIENT], up + MIB / 2, MIB / 2);
        end_write(&pr.end[SERVER], down, MIB);
        converse(&pr);
        assert_got(&pr.end[SERVER], up, MIB);
        assert_got(&pr.end[CLIENT], down, MIB);
        for (int side = CLIENT; side <= SERVER; side++) {
            assert_int_equal(pr.end[side].sent, MIB);
            assert_int_equal(tls_pump_queued(&pr.end[side].pump), 0);
        }
        pair_free(&pr);
    }
    free(up);
    free(down);
}

static void writes_inside_callbacks_go_out_and_never_reenter_the_owner(void **state)
{
    (void)state;
    struct pair pr;
    pair_start(&pr, M.server, M.client, HOST, WHOLE);
    pr.end[SERVER].echo = "250 ok\r\n";
    pr.end[CLIENT].write_on_handshake = true;
    converse(&pr);
    assert_handshake_ok(&pr);
    assert_got(&pr.end[SERVER], LIT("hello"));
    assert_got(&pr.end[CLIENT], LIT("250 ok\r\n"));
    /* three records at once: one echo each, and never a callback inside a callback */
    end_write(&pr.end[CLIENT], LIT("a"));
    end_write(&pr.end[CLIENT], LIT("b"));
    end_write(&pr.end[CLIENT], LIT("c"));
    converse(&pr);
    assert_got(&pr.end[SERVER], LIT("helloabc"));
    assert_got(&pr.end[CLIENT], LIT("250 ok\r\n250 ok\r\n250 ok\r\n250 ok\r\n"));
    assert_false(pr.end[SERVER].nested_plaintext);
    pair_free(&pr);
}

static void a_stopped_or_halted_pump_hands_over_nothing_more(void **state)
{
    (void)state;
    for (int halt = 0; halt <= 1; halt++) {
        struct pair pr;
        pair_start(&pr, M.server, M.client, HOST, WHOLE);
        converse(&pr);
        assert_handshake_ok(&pr);
        pr.end[SERVER].halt_on_read = halt;
        pr.end[SERVER].stop_on_read = !halt;
        end_write(&pr.end[CLIENT], LIT("one"));
        end_write(&pr.end[CLIENT], LIT("two"));
        end_write(&pr.end[CLIENT], LIT("three"));
        converse(&pr);
        assert_got(&pr.end[SERVER], LIT("one")); /* two records stay undecrypted */
        end_write(&pr.end[CLIENT], LIT("four"));
        converse(&pr);
        assert_got(&pr.end[SERVER], LIT("one"));
        assert_int_equal(pr.end[SERVER].failures + pr.end[SERVER].peer_closes, 0);
        pair_free(&pr);
    }
}

/* ---- ends ------------------------------------------------------------------------------------ */

static void close_notify_is_a_clean_close_and_the_other_way_stays_open(void **state)
{
    (void)state;
    struct pair pr;
    pair_start(&pr, M.server, M.client, HOST, WHOLE);
    converse(&pr);
    assert_handshake_ok(&pr);
    end_write(&pr.end[CLIENT], LIT("QUIT\r\n"));
    tls_pump_close_notify(&pr.end[CLIENT].pump);
    tls_pump_close_notify(&pr.end[CLIENT].pump); /* once is enough */
    converse(&pr);
    assert_got(&pr.end[SERVER], LIT("QUIT\r\n"));
    assert_int_equal(pr.end[SERVER].peer_closes, 1);
    assert_true(tls_pump_peer_closed(&pr.end[SERVER].pump));
    assert_int_equal(pr.end[SERVER].failures, 0);
    /* the server still speaks, then closes too */
    end_write(&pr.end[SERVER], LIT("221 bye\r\n"));
    tls_pump_close_notify(&pr.end[SERVER].pump);
    converse(&pr);
    assert_got(&pr.end[CLIENT], LIT("221 bye\r\n"));
    assert_int_equal(pr.end[CLIENT].peer_closes, 1);
    assert_int_equal(pr.end[CLIENT].failures + pr.end[SERVER].failures, 0);
    pair_free(&pr);
}

static void a_cut_close_notify_or_record_is_not_a_clean_close(void **state)
{
    (void)state;
    struct pair pr;
    pair_start(&pr, M.server, M.client, HOST, WHOLE);
    converse(&pr);
    assert_handshake_ok(&pr);
    end_write(&pr.end[CLIENT], LIT("DATA\r\n"));
    tls_pump_close_notify(&pr.end[CLIENT].pump);
    struct buf *wire = &pr.end[CLIENT].wire;
    size_t n = buf_size(wire);
    assert_true(n > 2);
    /* everything but the close_notify's last byte: the data, no close */
    tls_pump_receive(&pr.end[SERVER].pump, buf_head(wire), n - 1);
    assert_got(&pr.end[SERVER], LIT("DATA\r\n"));
    assert_int_equal(pr.end[SERVER].peer_closes, 0);
    assert_false(tls_pump_peer_closed(&pr.end[SERVER].pump));
    assert_int_equal(tls_pump_state(&pr.end[SERVER].pump), TLS_PUMP_ON);
    pair_free(&pr);

    pair_start(&pr, M.server, M.client, HOST, WHOLE);
    converse(&pr);
    end_write(&pr.end[CLIENT], LIT("a record cut short"));
    wire = &pr.end[CLIENT].wire;
    tls_pump_receive(&pr.end[SERVER].pump, buf_head(wire), buf_size(wire) / 2);
    assert_int_equal(buf_size(&pr.end[SERVER].got), 0);
    assert_int_equal(pr.end[SERVER].peer_closes + pr.end[SERVER].failures, 0);
    pair_free(&pr);
}

static void close_notify_before_the_handshake_is_not_sent(void **state)
{
    (void)state;
    struct pair pr;
    pair_start(&pr, M.server, M.client, HOST, WHOLE);
    size_t hello = buf_size(&pr.end[CLIENT].wire);
    tls_pump_close_notify(&pr.end[CLIENT].pump);
    assert_int_equal(buf_size(&pr.end[CLIENT].wire), hello);
    converse(&pr);
    assert_handshake_ok(&pr);
    assert_int_equal(pr.end[SERVER].peer_closes, 0);
    pair_free(&pr);
}

/* ---- failures ------------------------------------------------------------------------------ */

static void an_untrusted_certificate_fails_with_a_readable_error_on_both_sides(void **state)
{
    (void)state;
    struct pair pr;
    pair_start(&pr, M.server, M.untrusting, HOST, WHOLE);
    end_write(&pr.end[CLIENT], LIT("EHLO x\r\n"));
    converse(&pr);
    struct end *c = &pr.end[CLIENT], *s = &pr.end[SERVER];
    assert_int_equal(c->handshakes, 1);
    assert_int_equal(c->handshake_status, -1);
    assert_int_equal(c->failures, 0);
    assert_contains(tls_pump_error(&c->pump), "certificate verify failed: ");
    assert_contains(tls_pump_error(&c->pump), "CN=pump.test");
    /* the client's alert tells the server */
    assert_int_equal(s->handshakes, 1);
    assert_int_equal(s->handshake_status, -1);
    assert_contains(tls_pump_error(&s->pump), "client sent alert: ");
    assert_int_equal(buf_size(&s->got), 0);
    /* and a failed pump takes nothing more */
    assert_false(tls_pump_writable(&c->pump));
    end_write(c, LIT("more"));
    tls_pump_close_notify(&c->pump);
    tls_pump_resume(&c->pump);
    tls_pump_receive(&c->pump, LIT("\x17\x03\x03\x00\x01x"));
    assert_int_equal(buf_size(&c->wire), 0);
    assert_int_equal(c->handshakes + c->failures, 1);
    pair_free(&pr);
}

static void another_host_name_fails_and_names_the_expected_one(void **state)
{
    (void)state;
    struct pair pr;
    pair_start(&pr, M.server, M.client, "other.test", WHOLE);
    converse(&pr);
    assert_int_equal(pr.end[CLIENT].handshake_status, -1);
    assert_contains(tls_pump_error(&pr.end[CLIENT].pump), "(expected other.test)");
    pair_free(&pr);
}

static void plain_smtp_instead_of_tls_fails_cleanly_and_is_recognised(void **state)
{
    (void)state;
    struct end server = {0}, client = {0};
    assert_int_equal(tls_pump_start(&server.pump, M.server, true, NULL, &EVENTS, &server), 0);
    tls_pump_receive(&server.pump, LIT("EHLO client.test\r\n"));
    assert_int_equal(server.handshakes, 1);
    assert_int_equal(server.handshake_status, -1);
    assert_true(tls_pump_error(&server.pump)[0]);
    assert_true(tls_pump_peer_spoke_plain(&server.pump));
    end_free(&server);

    assert_int_equal(tls_pump_start(&client.pump, M.client, false, HOST, &EVENTS, &client), 0);
    assert_true(buf_size(&client.wire) > 0); /* its ClientHello */
    tls_pump_receive(&client.pump, LIT("220 mx.test ESMTP\r\n"));
    assert_int_equal(client.handshake_status, -1);
    assert_true(tls_pump_peer_spoke_plain(&client.pump));
    assert_true(tls_pump_error(&client.pump)[0]);
    end_free(&client);
}

static void garbage_after_the_handshake_fails_once_not_as_a_handshake(void **state)
{
    (void)state;
    struct pair pr;
    pair_start(&pr, M.server, M.client, HOST, WHOLE);
    converse(&pr);
    assert_handshake_ok(&pr);
    assert_false(tls_pump_peer_spoke_plain(&pr.end[SERVER].pump));
    uint8_t junk[5 + 64] = {0x17, 0x03, 0x03, 0x00, 64};
    memset(junk + 5, 'A', 64);
    tls_pump_receive(&pr.end[SERVER].pump, junk, sizeof junk);
    tls_pump_receive(&pr.end[SERVER].pump, junk, sizeof junk); /* ignored */
    assert_int_equal(pr.end[SERVER].failures, 1);
    assert_int_equal(pr.end[SERVER].handshakes, 1);
    assert_int_equal(tls_pump_state(&pr.end[SERVER].pump), TLS_PUMP_FAILED);
    assert_true(tls_pump_error(&pr.end[SERVER].pump)[0]);
    converse(&pr); /* the server's alert */
    assert_int_equal(pr.end[CLIENT].failures, 1);
    assert_contains(tls_pump_error(&pr.end[CLIENT].pump), "server sent alert: ");
    pair_free(&pr);
}

static void random_garbage_at_every_stage_never_crashes(void **state)
{
    (void)state;
    uint8_t junk[512];
    for (int round = 0; round < 64; round++) {
        assert_int_equal(RAND_bytes(junk, sizeof junk), 1);
        if (round % 2) junk[0] = 0x16, junk[1] = 0x03, junk[2] = 0x01; /* a handshake record */
        struct pair pr;
        pair_start(&pr, M.server, M.client, HOST, WHOLE);
        for (int i = 0; i < round % 4; i++) deliver(&pr, i % 2 ? SERVER : CLIENT);
        tls_pump_receive(&pr.end[round % 3 ? SERVER : CLIENT].pump, junk,
                         1 + (size_t)round * 7 % sizeof junk);
        converse(&pr);
        for (int side = CLIENT; side <= SERVER; side++) {
            const struct end *e = &pr.end[side];
            assert_true(e->handshakes <= 1);
            assert_true(e->failures <= 1);
            if (tls_pump_state(&e->pump) == TLS_PUMP_FAILED)
                assert_true(tls_pump_error(&e->pump)[0]);
        }
        pair_free(&pr);
    }
}

static void a_read_bio_that_refuses_bytes_fails_the_pump_with_a_clear_error(void **state)
{
    (void)state;
    struct pair pr;
    pair_start(&pr, M.server, M.client, HOST, WHOLE);
    BIO_set_flags(SSL_get_rbio(pr.end[SERVER].pump.ssl), BIO_FLAGS_MEM_RDONLY);
    converse(&pr);
    assert_int_equal(pr.end[SERVER].handshakes, 1);
    assert_int_equal(pr.end[SERVER].handshake_status, -1);
    assert_contains(tls_pump_error(&pr.end[SERVER].pump), "cannot buffer ");
    assert_contains(tls_pump_error(&pr.end[SERVER].pump), " bytes of TLS records from the peer");
    pair_free(&pr);
}

static void a_host_name_openssl_refuses_fails_the_start(void **state)
{
    (void)state;
    char host[300];
    memset(host, 'a', sizeof host - 1);
    host[sizeof host - 1] = 0;
    struct end client = {0};
    assert_int_equal(tls_pump_start(&client.pump, M.client, false, host, &EVENTS, &client), -1);
    assert_contains(tls_pump_error(&client.pump), "cannot set the expected host");
    assert_int_equal(tls_pump_state(&client.pump), TLS_PUMP_FAILED);
    assert_true(tls_pump_started(&client.pump));
    assert_false(tls_pump_writable(&client.pump));
    tls_pump_receive(&client.pump, LIT("220 x\r\n"));
    assert_int_equal(client.handshakes + client.failures, 0);
    assert_int_equal(buf_size(&client.wire), 0);
    end_free(&client);
    tls_pump_free(&client.pump); /* twice is fine */
    struct tls_pump zeroed = {0};
    tls_pump_free(&zeroed);
    assert_false(tls_pump_started(&zeroed));
}

/* ---- a parked ClientHello ---------------------------------------------------------------- */

static bool hold_hello;

static int parking_hello_cb(SSL *ssl, int *alert, void *arg)
{
    (void)alert, (void)arg;
    assert_non_null(tls_pump_owner_of_ssl(ssl));
    return hold_hello ? SSL_CLIENT_HELLO_RETRY : SSL_CLIENT_HELLO_SUCCESS;
}

static void a_parked_client_hello_waits_for_resume(void **state)
{
    (void)state;
    SSL_CTX *server = server_ctx(0);
    SSL_CTX_set_client_hello_cb(server, parking_hello_cb, NULL);
    hold_hello = true;
    struct pair pr;
    pair_start(&pr, server, M.client, HOST, WHOLE);
    end_write(&pr.end[SERVER], LIT("220 ready\r\n"));
    converse(&pr);
    assert_int_equal(buf_size(&pr.end[SERVER].wire), 0); /* nothing said yet */
    assert_int_equal(pr.end[SERVER].handshakes + pr.end[CLIENT].handshakes, 0);
    assert_int_equal(tls_pump_state(&pr.end[SERVER].pump), TLS_PUMP_HANDSHAKING);
    assert_ptr_equal(tls_pump_owner_of_ssl(pr.end[SERVER].pump.ssl), &pr.end[SERVER]);
    hold_hello = false;
    tls_pump_resume(&pr.end[SERVER].pump);
    converse(&pr);
    assert_handshake_ok(&pr);
    assert_got(&pr.end[CLIENT], LIT("220 ready\r\n"));
    pair_free(&pr);
    SSL_CTX_free(server);
}

static void a_parked_client_hello_takes_at_most_64_kib_behind_it(void **state)
{
    (void)state;
    SSL_CTX *server = server_ctx(0);
    SSL_CTX_set_client_hello_cb(server, parking_hello_cb, NULL);
    hold_hello = true;
    struct pair pr;
    pair_start(&pr, server, M.client, HOST, WHOLE);
    converse(&pr);
    static uint8_t junk[16 * 1024];
    memset(junk, 'A', sizeof junk);
    for (int i = 0; i < 4; i++) tls_pump_receive(&pr.end[SERVER].pump, junk, sizeof junk);
    assert_int_equal(pr.end[SERVER].handshakes, 0); /* 64 KiB is still fine */
    tls_pump_receive(&pr.end[SERVER].pump, junk, 1);
    assert_int_equal(pr.end[SERVER].handshakes, 1);
    assert_int_equal(pr.end[SERVER].handshake_status, -1);
    assert_string_equal(tls_pump_error(&pr.end[SERVER].pump),
                        "client sent over 64 KiB while its ClientHello waited");
    hold_hello = false;
    pair_free(&pr);
    SSL_CTX_free(server);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(the_handshake_completes_on_both_sides_with_whole_flights),
        cmocka_unit_test(the_handshake_survives_a_cut_at_every_byte_of_every_flight_tls13),
        cmocka_unit_test(the_handshake_survives_a_cut_at_every_byte_of_every_flight_tls12),
        cmocka_unit_test(the_handshake_survives_one_byte_at_a_time),
        cmocka_unit_test(plaintext_written_early_waits_for_the_handshake),
        cmocka_unit_test(a_mebibyte_each_way_arrives_byte_for_byte),
        cmocka_unit_test(writes_inside_callbacks_go_out_and_never_reenter_the_owner),
        cmocka_unit_test(a_stopped_or_halted_pump_hands_over_nothing_more),
        cmocka_unit_test(close_notify_is_a_clean_close_and_the_other_way_stays_open),
        cmocka_unit_test(a_cut_close_notify_or_record_is_not_a_clean_close),
        cmocka_unit_test(close_notify_before_the_handshake_is_not_sent),
        cmocka_unit_test(an_untrusted_certificate_fails_with_a_readable_error_on_both_sides),
        cmocka_unit_test(another_host_name_fails_and_names_the_expected_one),
        cmocka_unit_test(plain_smtp_instead_of_tls_fails_cleanly_and_is_recognised),
        cmocka_unit_test(garbage_after_the_handshake_fails_once_not_as_a_handshake),
        cmocka_unit_test(random_garbage_at_every_stage_never_crashes),
        cmocka_unit_test(a_read_bio_that_refuses_bytes_fails_the_pump_with_a_clear_error),
        cmocka_unit_test(a_host_name_openssl_refuses_fails_the_start),
        cmocka_unit_test(a_parked_client_hello_waits_for_resume),
        cmocka_unit_test(a_parked_client_hello_takes_at_most_64_kib_behind_it),
    };
    return cmocka_run_group_tests(tests, material_setup, material_teardown);
}
