/* leg_tls.c - TLS on a TCP leg: the glue between a tcp_leg and its tls_pump (ciphertext to
 * and from the socket, plaintext to and from the owner, handshake outcome and close_notify
 * as leg events), the ClientHello callback that picks the client's leaf, and the TLS facts
 * the session may ask of a leg. */
#include <stdio.h>
#include <string.h>

#include "leg_int.h"
#include "smtptap/tls.h"

static struct tcp_leg *leg_of(struct tls_pump *p)
{
    return p->owner;
}

static void keep_error(struct tcp_leg *t)
{
    snprintf(t->tls_error, sizeof t->tls_error, "%s", tls_pump_error(&t->tls_pump));
}

/* ---- what the pump tells the leg ----------------------------------------------------------- */

static void on_ciphertext_out(struct tls_pump *p, const uint8_t *bytes, size_t len)
{
    tcp_leg_raw_write(leg_of(p), bytes, len);
}

static void on_plaintext_in(struct tls_pump *p, const uint8_t *bytes, size_t len)
{
    struct tcp_leg *t = leg_of(p);
    t->base.ev->on_read(&t->base, bytes, len);
}

static void on_plaintext_sent(struct tls_pump *p, size_t n)
{
    leg_of(p)->base.queued -= n; /* its ciphertext is counted as tcp_leg_raw_write takes it */
}

static void on_handshake_done(struct tls_pump *p, int status)
{
    struct tcp_leg *t = leg_of(p);
    if (status < 0) keep_error(t);
    if (status < 0 && t->end_after_handshake) { /* the owner is gone already */
        leg_close(&t->base);
        return;
    }
    if (t->on_tls) t->on_tls(t, status);
    if (status < 0 || t->base.closing || !t->end_after_handshake) return;
    /* What was owed goes out, close_notify after it: now the end leg_end asked for. */
    tls_pump_stop_reading(p);
    tcp_leg_end_now(t);
}

static void on_peer_closed(struct tls_pump *p)
{
    struct tcp_leg *t = leg_of(p);
    t->base.ev->on_eof(&t->base);
}

static void on_failed(struct tls_pump *p)
{
    struct tcp_leg *t = leg_of(p);
    keep_error(t);
    if (t->end_after_handshake) { /* the owner is gone already: nothing left to deliver */
        leg_close(&t->base);
        return;
    }
    t->base.ev->on_error(&t->base, UV_EPROTO);
}

static const struct tls_pump_events pump_events = {
    .ciphertext_out = on_ciphertext_out,
    .plaintext_in = on_plaintext_in,
    .plaintext_sent = on_plaintext_sent,
    .handshake_done = on_handshake_done,
    .peer_closed = on_peer_closed,
    .failed = on_failed,
};

/* ---- what leg.c asks (leg_int.h) ----------------------------------------------------------- */

void leg_tls_received(struct tcp_leg *t, const uint8_t *bytes, size_t len)
{
    tls_pump_receive(&t->tls_pump, bytes, len);
}

void leg_tls_write(struct tcp_leg *t, const uint8_t *bytes, size_t len)
{
    if (!tls_pump_writable(&t->tls_pump)) return;
    t->base.queued += len; /* before the pump encrypts any of it (on_plaintext_sent) */
    tls_pump_write(&t->tls_pump, bytes, len);
}

void leg_tls_close_notify(struct tcp_leg *t)
{
    tls_pump_close_notify(&t->tls_pump);
}

bool leg_tls_peer_closed(const struct tcp_leg *t)
{
    return tls_pump_peer_closed(&t->tls_pump);
}

/* A client's side waits for a handshake its peer has started; a listener's side also for
 * one its client has not started yet (smtptap may owe it a 421 before its ClientHello
 * arrives, e.g. an upstream that refused at once): the owner's linger timer bounds both. */
bool leg_tls_end_waits_for_handshake(const struct tcp_leg *t)
{
    return tcp_leg_tls_state(t) == LEG_TLS_HANDSHAKING && tls_pump_queued(&t->tls_pump) &&
           (tcp_leg_tls_peer_spoke(t) || tls_pump_is_server(&t->tls_pump)) && !t->read_ended;
}

void leg_tls_halt(struct tcp_leg *t)
{
    tls_pump_halt(&t->tls_pump);
}

void leg_tls_free(struct tcp_leg *t)
{
    tls_pump_free(&t->tls_pump);
    X509_free(t->tls_model);
    t->tls_model = NULL;
}

/* ---- starting TLS and the ClientHello ------------------------------------------------------ */

int tcp_leg_start_tls(struct tcp_leg *t, SSL_CTX *ctx, bool server, const char *expect_host,
                      leg_tls_cb on_tls)
{
    t->on_tls = on_tls;
    int rc = tls_pump_start(&t->tls_pump, ctx, server, expect_host, &pump_events, t);
    if (rc < 0) keep_error(t);
    return rc;
}

/* The host name the client asked for (server_name extension), or "" when none. */
static void client_sni(SSL *ssl, char *sni, size_t size)
{
    const unsigned char *ext;
    size_t len;
    sni[0] = 0;
    /* server_name extension: list length (2), type (1) = 0, name length (2), name */
    if (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_server_name, &ext, &len) && len > 5 &&
        ext[2] == 0) {
        size_t n = (size_t)ext[3] << 8 | ext[4];
        if (n > 0 && n < size && 5 + n <= len) {
            memcpy(sni, ext + 5, n);
            sni[n] = 0;
        }
    }
}

/* Picks the leaf for a client's handshake: its SNI, else the name the session chose. */
static int client_hello_cb(SSL *ssl, int *alert, void *arg)
{
    struct tls_ca *ca = arg;
    struct tcp_leg *t = tls_pump_owner_of_ssl(ssl);
    char sni[256], err[TLS_ERR_MAX] = "";
    client_sni(ssl, sni, sizeof sni);
    if (t && t->tls_hold_hello) return SSL_CLIENT_HELLO_RETRY; /* the upstream's cert first */
    const char *name = sni[0] ? sni : t && t->tls_name[0] ? t->tls_name : "localhost";
    enum client_cert mode = t ? (enum client_cert)t->tls_cert_mode : CLIENT_CERT_GOOD;
    const struct tls_leaf *leaf =
        tls_ca_leaf_for(ca, mode, name, t ? t->tls_model : NULL, err, sizeof err);
    /* A weak key or a SHA-1 signature is refused at the default security level: lowered for
     * this connection only, so that the client is the one to refuse it. */
    if (leaf && leaf->low_security) SSL_set_security_level(ssl, 0);
    if (!leaf || SSL_use_certificate(ssl, leaf->cert) != 1 ||
        SSL_use_PrivateKey(ssl, leaf->key) != 1 ||
        (leaf->chain && SSL_add1_chain_cert(ssl, leaf->chain) != 1)) {
        if (t)
            snprintf(t->tls_error, sizeof t->tls_error, "no certificate for %.200s: %.250s", name,
                     err);
        *alert = SSL_AD_INTERNAL_ERROR;
        return SSL_CLIENT_HELLO_ERROR;
    }
    return SSL_CLIENT_HELLO_SUCCESS;
}

/* Keeps the fatal alert a client sends (how it refuses a certificate) for the verdict. */
static void info_cb(const SSL *ssl, int where, int ret)
{
    if (!(where & SSL_CB_READ_ALERT) || (ret >> 8) != SSL3_AL_FATAL) return;
    struct tcp_leg *t = tls_pump_owner_of_ssl(ssl);
    if (t && !t->tls_peer_alert) t->tls_peer_alert = ret & 0xff;
}

void leg_tls_serve_with_ca(SSL_CTX *server_ctx, struct tls_ca *ca)
{
    SSL_CTX_set_client_hello_cb(server_ctx, client_hello_cb, ca);
    SSL_CTX_set_info_callback(server_ctx, info_cb);
}

void leg_tls_release_hello(struct tcp_leg *t, const struct tcp_leg *model_from)
{
    if (!t->tls_hold_hello) return;
    t->tls_hold_hello = false;
    if (model_from && !t->tls_model) tcp_leg_copy_peer_certificate(t, model_from);
    tls_pump_resume(&t->tls_pump);
}

/* ---- what the session may ask ------------------------------------------------------------ */

bool leg_tls_peer_spoke_plain(const struct tcp_leg *t)
{
    return tls_pump_peer_spoke_plain(&t->tls_pump);
}

bool leg_tls_untrusted_issuer(const struct tcp_leg *t, char *out, size_t size)
{
    return tls_untrusted_issuer(t->tls_pump.ssl, out, size);
}

bool tcp_leg_tls_started(const struct tcp_leg *t)
{
    return tls_pump_started(&t->tls_pump);
}

bool tcp_leg_tls_up(const struct tcp_leg *t)
{
    return tcp_leg_tls_state(t) == LEG_TLS_ON;
}

enum leg_tls_state tcp_leg_tls_state(const struct tcp_leg *t)
{
    return (enum leg_tls_state)tls_pump_state(&t->tls_pump);
}

bool tcp_leg_tls_peer_spoke(const struct tcp_leg *t)
{
    return tls_pump_first_len(&t->tls_pump) > 0;
}

void tcp_leg_describe_tls(const struct tcp_leg *t, bool upstream, char *out, size_t size)
{
    if (!tcp_leg_tls_started(t)) {
        snprintf(out, size, "no TLS");
        return;
    }
    tls_describe(t->tls_pump.ssl, upstream, out, size);
}

void tcp_leg_tls_facts(const struct tcp_leg *t, bool upstream, struct tls_facts *out)
{
    if (!tcp_leg_tls_started(t)) {
        memset(out, 0, sizeof *out);
        return;
    }
    tls_facts_of(t->tls_pump.ssl, upstream, out);
}

void tcp_leg_copy_peer_certificate(struct tcp_leg *client, const struct tcp_leg *upstream)
{
    if (!tcp_leg_tls_up(upstream)) return;
    X509 *model = SSL_get0_peer_certificate(upstream->tls_pump.ssl);
    if (!model || !X509_up_ref(model)) return;
    X509_free(client->tls_model);
    client->tls_model = model;
}
