/* leg_tls.c - TLS on a TCP leg over memory BIOs: the one place that drives OpenSSL. Every
 * event (ciphertext in, plaintext out) runs the pump: clear errors, handshake or read all
 * plaintext, write what is queued, then always drain the write BIO into the socket. */
#include <openssl/err.h>
#include <string.h>

#include "smtptap/leg.h"
#include "smtptap/tls.h"

enum { PLAIN_CHUNK = 16 * 1024, PARKED_MAX = 64 * 1024 };

/* Moves every byte OpenSSL produced (records, alerts, tickets) to the socket. */
static void drain(struct tcp_leg *t)
{
    BIO *wbio = SSL_get_wbio(t->ssl);
    uint8_t chunk[PLAIN_CHUNK];
    int n;
    while ((n = BIO_read(wbio, chunk, sizeof chunk)) > 0) tcp_leg_raw_write(t, chunk, (size_t)n);
}

static void fail(struct tcp_leg *t)
{
    tls_failure_reason(t->ssl, t->tls_error, sizeof t->tls_error);
    drain(t); /* the alert, if any, tells the peer why */
    bool handshaking = t->tls == LEG_TLS_HANDSHAKING;
    t->tls = LEG_TLS_FAILED;
    if (t->end_after_handshake) { /* the owner is gone already: nothing left to deliver */
        leg_close(&t->base);
        return;
    }
    if (handshaking && t->on_tls)
        t->on_tls(t, -1);
    else
        t->base.ev->on_error(&t->base, UV_EPROTO);
}

/* Plaintext queued during the handshake goes out now (partial writes are enabled). */
static bool flush_plaintext(struct tcp_leg *t)
{
    while (buf_size(&t->tls_out)) {
        size_t n = buf_size(&t->tls_out);
        int w = SSL_write(t->ssl, buf_head(&t->tls_out), n > INT32_MAX ? INT32_MAX : (int)n);
        if (w <= 0) {
            int e = SSL_get_error(t->ssl, w);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return true;
            fail(t);
            return false;
        }
        t->base.queued -= (size_t)w;
        buf_consume(&t->tls_out, (size_t)w);
    }
    return true;
}

/* Reads every decrypted byte out; false when the leg must stop (error, close, EOF). */
static bool read_plaintext(struct tcp_leg *t)
{
    uint8_t plain[PLAIN_CHUNK];
    for (;;) {
        int n = SSL_read(t->ssl, plain, sizeof plain);
        if (n > 0) {
            t->base.ev->on_read(&t->base, plain, (size_t)n);
            if (t->base.closing || !t->ssl) return false;
            continue;
        }
        int e = SSL_get_error(t->ssl, n);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return true;
        if (e == SSL_ERROR_ZERO_RETURN) {
            t->tls_peer_closed = true;
            drain(t);
            t->base.ev->on_eof(&t->base);
            return false;
        }
        fail(t);
        return false;
    }
}

static void pump(struct tcp_leg *t)
{
    ERR_clear_error();
    if (t->tls == LEG_TLS_HANDSHAKING) {
        int rc = SSL_do_handshake(t->ssl);
        if (rc != 1) {
            int e = SSL_get_error(t->ssl, rc);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE ||
                e == SSL_ERROR_WANT_CLIENT_HELLO_CB) { /* the last: a parked ClientHello */
                drain(t);
                return;
            }
            fail(t);
            return;
        }
        t->tls = LEG_TLS_ON;
        drain(t);
        if (t->on_tls) t->on_tls(t, 0);
        if (t->base.closing || !t->ssl) return;
    }
    if (t->tls != LEG_TLS_ON) return;
    if (!flush_plaintext(t)) return;
    if (t->end_after_handshake) { /* what was owed is out: now the end leg_end asked for */
        drain(t);
        tcp_leg_end_now(t);
        return;
    }
    if (!read_plaintext(t)) return;
    drain(t);
}

void leg_tls_received(struct tcp_leg *t, const uint8_t *bytes, size_t len)
{
    for (size_t i = 0; i < len && t->tls_first_len < sizeof t->tls_first; i++)
        t->tls_first[t->tls_first_len++] = bytes[i];
    if (t->tls == LEG_TLS_FAILED) return;
    BIO *rbio = SSL_get_rbio(t->ssl);
    BIO_write(rbio, bytes, (int)len);
    if (t->tls_hold_hello && BIO_ctrl_pending(rbio) > PARKED_MAX) {
        /* A parked ClientHello is not read on; a client has nothing more to say before the
         * ServerHello, so this much is not a client: stop it growing. */
        snprintf(t->tls_error, sizeof t->tls_error,
                 "client sent over %d KiB while its ClientHello waited", PARKED_MAX / 1024);
        t->tls = LEG_TLS_FAILED;
        if (t->on_tls) t->on_tls(t, -1);
        return;
    }
    pump(t);
}

void leg_tls_write(struct tcp_leg *t, const uint8_t *bytes, size_t len)
{
    if (t->tls == LEG_TLS_FAILED) return;
    buf_append(&t->tls_out, bytes, len);
    t->base.queued += len;
    if (t->tls != LEG_TLS_ON) return;
    ERR_clear_error();
    if (flush_plaintext(t)) drain(t);
}

void leg_tls_close_notify(struct tcp_leg *t)
{
    if (t->tls != LEG_TLS_ON) return;
    ERR_clear_error();
    flush_plaintext(t);
    SSL_shutdown(t->ssl);
    drain(t);
}

bool leg_tls_peer_spoke_plain(const struct tcp_leg *t)
{
    /* A TLS record starts with its content type, 20..24; text starts with a digit or a
     * letter. */
    if (t->tls_first_len < sizeof t->tls_first) return false;
    for (size_t i = 0; i < 3; i++) {
        uint8_t c = t->tls_first[i];
        if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')))
            return false;
    }
    return true;
}

void leg_tls_release_hello(struct tcp_leg *t, X509 *model)
{
    if (!t->tls_hold_hello) return;
    t->tls_hold_hello = false;
    if (model && !t->tls_model && X509_up_ref(model)) t->tls_model = model;
    if (t->tls == LEG_TLS_HANDSHAKING) pump(t);
}

void leg_tls_free(struct tcp_leg *t)
{
    if (t->ssl) SSL_free(t->ssl);
    t->ssl = NULL;
    X509_free(t->tls_model);
    t->tls_model = NULL;
    buf_free(&t->tls_out);
}

int tcp_leg_start_tls(struct tcp_leg *t, SSL_CTX *ctx, bool server, const char *expect_host,
                      leg_tls_cb on_tls)
{
    t->ssl = SSL_new(ctx);
    BIO *rbio = BIO_new(BIO_s_mem()), *wbio = BIO_new(BIO_s_mem());
    if (!t->ssl || !rbio || !wbio) {
        BIO_free(rbio);
        BIO_free(wbio);
        snprintf(t->tls_error, sizeof t->tls_error, "cannot create a TLS session");
        return -1;
    }
    BIO_set_mem_eof_return(rbio, -1); /* empty means "want more", never EOF */
    SSL_set_bio(t->ssl, rbio, wbio);
    SSL_set_mode(t->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_RELEASE_BUFFERS);
    SSL_set_app_data(t->ssl, t);
    if (server) {
        SSL_set_accept_state(t->ssl);
    } else {
        SSL_set_connect_state(t->ssl);
        if (expect_host && tls_expect_host(t->ssl, expect_host) < 0) {
            snprintf(t->tls_error, sizeof t->tls_error, "cannot set the expected host %s",
                     expect_host);
            return -1;
        }
    }
    buf_init(&t->tls_out);
    t->tls = LEG_TLS_HANDSHAKING;
    t->on_tls = on_tls;
    pump(t); /* a client speaks first */
    return 0;
}
