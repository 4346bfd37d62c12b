/* tls_pump.c - TLS over memory BIOs without sockets: run() is the one function that drives
 * OpenSSL; every entry point (ciphertext in, plaintext out, close_notify, a released
 * ClientHello) feeds it. See tls_pump.h. */
#include "smtptap/tls_pump.h"

#include <limits.h>
#include <openssl/err.h>
#include <stdio.h>
#include <string.h>

enum { CHUNK = 16 * 1024 };

static bool retry_later(int ssl_error)
{
    return ssl_error == SSL_ERROR_WANT_READ || ssl_error == SSL_ERROR_WANT_WRITE;
}

/* Hands every byte OpenSSL produced (records, alerts, tickets) to the owner. */
static void drain(struct tls_pump *p)
{
    BIO *wbio = SSL_get_wbio(p->ssl);
    uint8_t chunk[CHUNK];
    int n;
    while (!p->halted && (n = BIO_read(wbio, chunk, sizeof chunk)) > 0)
        p->ev->ciphertext_out(p, chunk, (size_t)n);
}

/* The pump fails: the reason (why, else the OpenSSL error queue), the alert if any to the
 * peer, then the owner hears of it. */
static void fail(struct tls_pump *p, const char *why)
{
    if (why) {
        snprintf(p->error, sizeof p->error, "%s", why);
        ERR_clear_error();
    } else {
        tls_failure_reason(p->ssl, p->error, sizeof p->error);
    }
    drain(p);
    bool handshaking = p->state == TLS_PUMP_HANDSHAKING;
    p->state = TLS_PUMP_FAILED;
    if (p->halted) return;
    if (handshaking)
        p->ev->handshake_done(p, -1);
    else
        p->ev->failed(p);
}

/* One handshake step; false when the run stops here (waiting for the peer or for a parked
 * ClientHello, failed, or halted by the owner). */
static bool step_handshake(struct tls_pump *p)
{
    ERR_clear_error();
    int rc = SSL_do_handshake(p->ssl);
    if (rc != 1) {
        int e = SSL_get_error(p->ssl, rc);
        p->hello_parked = e == SSL_ERROR_WANT_CLIENT_HELLO_CB;
        if (!retry_later(e) && !p->hello_parked) fail(p, NULL);
        return false;
    }
    p->hello_parked = false;
    p->state = TLS_PUMP_ON;
    drain(p); /* the last flight goes out before the owner, told, may end the connection */
    if (!p->halted) p->ev->handshake_done(p, 0);
    return !p->halted;
}

/* Encrypts the queued plaintext (partial writes: whatever SSL_write takes is consumed). */
static bool flush_plaintext(struct tls_pump *p)
{
    while (buf_size(&p->plain_out)) {
        size_t n = buf_size(&p->plain_out);
        ERR_clear_error();
        int w = SSL_write(p->ssl, buf_head(&p->plain_out), n > INT_MAX ? INT_MAX : (int)n);
        if (w <= 0) {
            int e = SSL_get_error(p->ssl, w);
            if (retry_later(e)) return true;
            fail(p, NULL);
            return false;
        }
        buf_consume(&p->plain_out, (size_t)w);
        p->ev->plaintext_sent(p, (size_t)w);
        if (p->halted) return false;
    }
    return true;
}

/* close_notify, once: SSL_shutdown answers 1 (both sides closed) or 0 (ours sent, theirs may
 * follow); below 0 it failed unless OpenSSL only wants the BIOs serviced. */
static bool send_close_notify(struct tls_pump *p)
{
    p->close_notify_sent = true;
    ERR_clear_error();
    int rc = SSL_shutdown(p->ssl);
    if (rc >= 0 || retry_later(SSL_get_error(p->ssl, rc))) return true;
    fail(p, NULL);
    return false;
}

/* Hands every decrypted byte to the owner, until OpenSSL wants more ciphertext. */
static void read_plaintext(struct tls_pump *p)
{
    uint8_t plain[CHUNK];
    for (;;) {
        ERR_clear_error();
        int n = SSL_read(p->ssl, plain, sizeof plain);
        if (n > 0) {
            p->ev->plaintext_in(p, plain, (size_t)n);
            if (p->halted || p->reading_stopped || p->state != TLS_PUMP_ON) return;
            continue;
        }
        int e = SSL_get_error(p->ssl, n);
        if (retry_later(e)) return;
        if (e != SSL_ERROR_ZERO_RETURN) {
            fail(p, NULL);
            return;
        }
        p->peer_closed = true;
        drain(p);
        if (!p->halted) p->ev->peer_closed(p);
        return;
    }
}

/* The one function that drives OpenSSL: the handshake, then the queued plaintext, the
 * close_notify asked for and, when this run may read, every decrypted byte; then always the
 * ciphertext OpenSSL produced goes to the owner. A run inside a callback (depth > 1) does
 * not read: the owner is not handed plaintext while it handles a callback. */
static void run(struct tls_pump *p, bool may_read)
{
    if (!p->ssl || p->halted) return;
    p->depth++;
    ERR_clear_error();
    bool go = true;
    if (p->state == TLS_PUMP_HANDSHAKING) go = step_handshake(p);
    if (go && p->state == TLS_PUMP_ON) go = flush_plaintext(p);
    if (go && p->state == TLS_PUMP_ON && p->close_notify_wanted && !p->close_notify_sent)
        go = send_close_notify(p);
    if (go && p->state == TLS_PUMP_ON && may_read && p->depth == 1 && !p->reading_stopped &&
        !p->peer_closed)
        read_plaintext(p);
    drain(p);
    p->depth--;
}

/* Makes the SSL with its memory BIOs; false when OpenSSL could not. */
static bool make_ssl(struct tls_pump *p, SSL_CTX *ctx)
{
    p->ssl = SSL_new(ctx);
    BIO *rbio = BIO_new(BIO_s_mem()), *wbio = BIO_new(BIO_s_mem());
    if (!p->ssl || !rbio || !wbio || SSL_set_app_data(p->ssl, p) != 1) {
        BIO_free(rbio);
        BIO_free(wbio);
        SSL_free(p->ssl);
        p->ssl = NULL;
        return false;
    }
    BIO_set_mem_eof_return(rbio, -1); /* empty means "want more", never EOF */
    SSL_set_bio(p->ssl, rbio, wbio);
    SSL_set_mode(p->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_RELEASE_BUFFERS);
    return true;
}

int tls_pump_start(struct tls_pump *p, SSL_CTX *ctx, bool server, const char *expect_host,
                   const struct tls_pump_events *ev, void *owner)
{
    memset(p, 0, sizeof *p);
    buf_init(&p->plain_out);
    p->ev = ev;
    p->owner = owner;
    ERR_clear_error();
    if (!make_ssl(p, ctx)) {
        snprintf(p->error, sizeof p->error, "cannot create a TLS session");
        ERR_clear_error();
        return -1;
    }
    if (server) {
        SSL_set_accept_state(p->ssl);
    } else {
        SSL_set_connect_state(p->ssl);
        if (expect_host && tls_expect_host(p->ssl, expect_host) < 0) {
            snprintf(p->error, sizeof p->error, "cannot set the expected host %s", expect_host);
            ERR_clear_error();
            p->state = TLS_PUMP_FAILED;
            return -1;
        }
    }
    p->state = TLS_PUMP_HANDSHAKING;
    run(p, true); /* a client speaks first */
    return 0;
}

void tls_pump_receive(struct tls_pump *p, const uint8_t *bytes, size_t len)
{
    for (size_t i = 0; i < len && p->first_len < sizeof p->first; i++)
        p->first[p->first_len++] = bytes[i];
    if (!p->ssl || p->halted || p->state == TLS_PUMP_FAILED) return;
    char why[128];
    BIO *rbio = SSL_get_rbio(p->ssl);
    int written = len > INT_MAX ? -1 : BIO_write(rbio, bytes, (int)len);
    if (written < 0 || (size_t)written != len) {
        snprintf(why, sizeof why, "cannot buffer %zu bytes of TLS records from the peer", len);
        fail(p, why);
        return;
    }
    if (p->hello_parked && BIO_ctrl_pending(rbio) > TLS_PUMP_PARKED_MAX) {
        /* A parked ClientHello is not read on; a client has nothing more to say before the
         * ServerHello, so this much is not a client: stop it growing. */
        snprintf(why, sizeof why, "client sent over %d KiB while its ClientHello waited",
                 TLS_PUMP_PARKED_MAX / 1024);
        fail(p, why);
        return;
    }
    run(p, true);
}

bool tls_pump_writable(const struct tls_pump *p)
{
    return p->ssl && !p->halted && p->state != TLS_PUMP_FAILED;
}

void tls_pump_write(struct tls_pump *p, const uint8_t *bytes, size_t len)
{
    if (!tls_pump_writable(p) || len == 0) return;
    buf_append(&p->plain_out, bytes, len);
    if (p->state == TLS_PUMP_ON) run(p, false);
}

void tls_pump_close_notify(struct tls_pump *p)
{
    if (p->state != TLS_PUMP_ON || p->close_notify_wanted) return;
    p->close_notify_wanted = true;
    run(p, false);
}

void tls_pump_resume(struct tls_pump *p)
{
    if (p->state == TLS_PUMP_HANDSHAKING) run(p, true);
}

void tls_pump_stop_reading(struct tls_pump *p)
{
    p->reading_stopped = true;
}

void tls_pump_halt(struct tls_pump *p)
{
    p->halted = true;
}

void tls_pump_free(struct tls_pump *p)
{
    SSL_free(p->ssl); /* and its BIOs */
    p->ssl = NULL;
    buf_free(&p->plain_out);
}

void *tls_pump_owner_of_ssl(const SSL *ssl)
{
    const struct tls_pump *p = SSL_get_app_data(ssl);
    return p ? p->owner : NULL;
}

bool tls_pump_is_server(const struct tls_pump *p)
{
    return p->ssl && SSL_is_server(p->ssl);
}

bool tls_pump_peer_spoke_plain(const struct tls_pump *p)
{
    /* A TLS record starts with its content type, 20..24; text starts with a digit or a
     * letter. */
    if (p->first_len < sizeof p->first) return false;
    for (size_t i = 0; i < 3; i++) {
        uint8_t c = p->first[i];
        if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')))
            return false;
    }
    return true;
}
