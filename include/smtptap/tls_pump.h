/* tls_pump.h - TLS over memory BIOs, without sockets: the owner hands in the ciphertext it
 * read and the plaintext it wants sent; the pump hands back ciphertext for the wire,
 * decrypted bytes and what happened to the handshake, through callbacks. */
#ifndef SMTPTAP_TLS_PUMP_H
#define SMTPTAP_TLS_PUMP_H

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "smtptap/buf.h"
#include "smtptap/tls.h"

enum tls_pump_state { TLS_PUMP_OFF, TLS_PUMP_HANDSHAKING, TLS_PUMP_ON, TLS_PUMP_FAILED };

enum { TLS_PUMP_PARKED_MAX = 64 * 1024 }; /* ciphertext held behind a parked ClientHello */

struct tls_pump;

/* What a pump tells its owner. Ciphertext and plaintext are borrowed for the call. The owner
 * may call tls_pump_write, tls_pump_close_notify, tls_pump_stop_reading and tls_pump_halt
 * from any callback (the pump reads no plaintext inside a callback), but must not free the
 * pump there. */
struct tls_pump_events {
    /* Bytes for the peer, in order: records, alerts, tickets. */
    void (*ciphertext_out)(struct tls_pump *p, const uint8_t *bytes, size_t len);
    /* Bytes the peer sent, decrypted. */
    void (*plaintext_in)(struct tls_pump *p, const uint8_t *bytes, size_t len);
    /* n bytes given to tls_pump_write are encrypted now (their records follow through
     * ciphertext_out): the owner's count of bytes not yet on the wire goes down by n. */
    void (*plaintext_sent)(struct tls_pump *p, size_t n);
    /* Once per pump: 0 when the handshake completed, -1 when it failed (tls_pump_error). */
    void (*handshake_done)(struct tls_pump *p, int status);
    /* The peer sent close_notify: a clean end, it will send nothing more. */
    void (*peer_closed)(struct tls_pump *p);
    /* TLS failed after the handshake (tls_pump_error says why). */
    void (*failed)(struct tls_pump *p);
};

/* Every field is the pump's; the owner reads them through the functions below. */
struct tls_pump {
    SSL *ssl; /* owned, with its memory rbio and wbio; NULL when not started or freed */
    enum tls_pump_state state;
    const struct tls_pump_events *ev;
    void *owner;
    struct buf plain_out;     /* plaintext written and not yet taken by SSL_write */
    bool close_notify_wanted; /* asked for: sent once plain_out is out */
    bool close_notify_sent;
    bool peer_closed;     /* close_notify received */
    bool hello_parked;    /* server: the ClientHello callback answered "retry" */
    bool reading_stopped; /* the owner takes no more plaintext */
    bool halted;          /* the owner is done: no more OpenSSL calls or callbacks */
    unsigned depth;       /* runs in progress: a callback may write, which runs again */
    uint8_t first[4];     /* the first bytes the peer sent (for hints) */
    uint8_t first_len;
    char error[TLS_ERR_MAX]; /* why TLS failed (or could not start); empty otherwise */
};

/* Starts TLS: as the server, or as the client (expect_host sets SNI and the name to verify,
 * NULL for none). The SSL's app data is p (for callbacks of ctx such as the ClientHello
 * callback; tls_pump_owner_of_ssl finds the owner). A client's ClientHello goes out through
 * ev->ciphertext_out before this returns. Returns 0, or -1 with a reason in tls_pump_error:
 * the pump is then FAILED (OFF when not even an SSL could be made). */
int tls_pump_start(struct tls_pump *p, SSL_CTX *ctx, bool server, const char *expect_host,
                   const struct tls_pump_events *ev, void *owner);
/* Ciphertext the peer sent (copied). Decrypted bytes go to plaintext_in before this returns,
 * unless the owner stopped reading. Ignored once FAILED; a short write into the read BIO, or
 * over TLS_PUMP_PARKED_MAX bytes held behind a parked ClientHello, fails the pump. */
void tls_pump_receive(struct tls_pump *p, const uint8_t *bytes, size_t len);
/* True while tls_pump_write takes plaintext: started, not failed, not halted. */
bool tls_pump_writable(const struct tls_pump *p);
/* Plaintext to send (copied): encrypted now when the handshake is done, else queued until
 * it is. Dropped unless tls_pump_writable. */
void tls_pump_write(struct tls_pump *p, const uint8_t *bytes, size_t len);
/* Sends close_notify after the queued plaintext (only once the handshake is done; ignored
 * before). Reading goes on: the peer may still speak. */
void tls_pump_close_notify(struct tls_pump *p);
/* Drives the handshake on without new ciphertext: after a ClientHello callback that
 * answered "retry" can now choose. */
void tls_pump_resume(struct tls_pump *p);
/* The owner takes no more plaintext: ciphertext is still taken, nothing is decrypted. */
void tls_pump_stop_reading(struct tls_pump *p);
/* The owner is done with the pump (closing): no more OpenSSL calls or callbacks. */
void tls_pump_halt(struct tls_pump *p);
/* Frees the SSL and the queue; the pump reads as not started afterwards. Safe on a zeroed
 * or freed pump. */
void tls_pump_free(struct tls_pump *p);

/* The owner given to tls_pump_start, from the SSL (NULL for an SSL no pump owns). */
void *tls_pump_owner_of_ssl(const SSL *ssl);

static inline bool tls_pump_started(const struct tls_pump *p)
{
    return p->ssl != NULL;
}
static inline enum tls_pump_state tls_pump_state(const struct tls_pump *p)
{
    return p->state;
}
static inline const char *tls_pump_error(const struct tls_pump *p)
{
    return p->error;
}
/* Plaintext written and not yet encrypted (it waits for the handshake). */
static inline size_t tls_pump_queued(const struct tls_pump *p)
{
    return buf_size(&p->plain_out);
}
static inline bool tls_pump_peer_closed(const struct tls_pump *p)
{
    return p->peer_closed;
}
/* Bytes the peer has sent since the pump started, counted up to 4. */
static inline size_t tls_pump_first_len(const struct tls_pump *p)
{
    return p->first_len;
}
/* True when the peer's first 4 bytes were plain text, not a TLS record: "220 " from a
 * server (a plain SMTP port) or letters from a client (an SMTP command). */
bool tls_pump_peer_spoke_plain(const struct tls_pump *p);
/* True when this end answers the handshake (a listener's side), false when it starts it. */
bool tls_pump_is_server(const struct tls_pump *p);

#endif
