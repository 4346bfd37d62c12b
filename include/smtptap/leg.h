/* leg.h - one side of a session. The session sees the same interface whether the leg is a
 * TCP socket or the built-in sink: bytes in through callbacks, bytes out through leg_write,
 * a write queue it can measure for backpressure, half-close and close. */
#ifndef SMTPTAP_LEG_H
#define SMTPTAP_LEG_H

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#include "smtptap/buf.h"

struct leg;

/* What a leg tells its owner. Every callback may be the last thing that happens before the
 * owner closes the leg; none is called after leg_close() except on_closed. */
struct leg_events {
    void (*on_read)(struct leg *leg, const uint8_t *bytes, size_t len); /* bytes borrowed */
    void (*on_eof)(struct leg *leg);              /* the peer will send nothing more */
    void (*on_error)(struct leg *leg, int uverr); /* read or write failed */
    void (*on_drain)(struct leg *leg);            /* some queued bytes were written */
    void (*on_closed)(struct leg *leg);           /* handle closed; the leg may be freed now */
};

struct leg_ops {
    void (*read_start)(struct leg *leg);
    void (*read_stop)(struct leg *leg);
    void (*write)(struct leg *leg, const uint8_t *bytes, size_t len); /* bytes copied */
    void (*shutdown)(struct leg *leg); /* FIN once queued bytes are written; keep reading */
    void (*end)(struct leg *leg);      /* FIN once queued bytes are written, then close */
    void (*close)(struct leg *leg);    /* close now; queued bytes are dropped */
};

struct leg {
    const struct leg_ops *ops;
    const struct leg_events *ev;
    void *owner;
    size_t queued; /* bytes accepted by write() and not yet handed to the kernel */
    bool reading;
    bool ending;  /* leg_end called: closes by itself once flushed */
    bool closing; /* the handle is being closed; on_closed follows */
};

static inline void leg_read_start(struct leg *l)
{
    if (!l->reading && !l->closing) l->ops->read_start(l);
}
static inline void leg_read_stop(struct leg *l)
{
    if (l->reading && !l->closing) l->ops->read_stop(l);
}
static inline void leg_write(struct leg *l, const uint8_t *bytes, size_t len)
{
    if (!l->closing && len) l->ops->write(l, bytes, len);
}
static inline void leg_shutdown(struct leg *l)
{
    if (!l->closing) l->ops->shutdown(l);
}
static inline void leg_end(struct leg *l)
{
    if (!l->closing && !l->ending) {
        l->ending = true;
        l->ops->end(l);
    }
}
static inline void leg_close(struct leg *l)
{
    if (!l->closing) {
        l->closing = true;
        l->ops->close(l);
    }
}

/* ---- TCP legs ---------------------------------------------------------------------------- */

enum leg_tls_state { LEG_TLS_OFF, LEG_TLS_HANDSHAKING, LEG_TLS_ON, LEG_TLS_FAILED };

struct tcp_leg;
/* Called once per handshake: status 0 when it completed, -1 when it failed (the reason is in
 * t->tls_error; the leg should then be closed). */
typedef void (*leg_tls_cb)(struct tcp_leg *t, int status);

struct tcp_leg {
    struct leg base;
    uv_tcp_t tcp;
    /* TLS over memory BIOs (leg_tls.c); all NULL/OFF for a plain leg. */
    SSL *ssl; /* owned */
    enum leg_tls_state tls;
    leg_tls_cb on_tls;
    struct buf tls_out;       /* owned: plaintext written before the handshake finished */
    bool tls_peer_closed;     /* close_notify received */
    bool tls_truncated;       /* TCP EOF without close_notify */
    char tls_name[256];       /* server side: leaf name when the client sends no SNI */
    X509 *tls_model;          /* owned reference, may be NULL: the upstream certificate whose
                                 subject and SANs the client's leaf copies */
    bool tls_hold_hello;      /* server side: park the ClientHello until leg_tls_release_hello */
    bool end_after_handshake; /* leg_end came while plaintext waited for the handshake */
    bool read_ended;          /* EOF or a read error: nothing more will come in */
    uint8_t tls_first[4];     /* the first bytes the peer sent once TLS started (for hints) */
    uint8_t tls_first_len;
    char tls_error[512];
    uv_shutdown_t shutdown_req;
    uv_connect_t connect_req;
    void (*on_connect)(struct tcp_leg *t, int status);
    bool connected;     /* accepted, or connect completed */
    bool shut;          /* FIN requested */
    bool shutdown_done; /* FIN sent (or could not be) */
};

/* Initialises a TCP leg on loop; the caller accepts into t->tcp or calls tcp_leg_connect.
 * The tcp_leg must stay allocated until on_closed. */
void tcp_leg_init(struct tcp_leg *t, uv_loop_t *loop, const struct leg_events *ev, void *owner);
/* Aborts the connection with a TCP RST (SO_LINGER 0) and closes the leg; on_closed follows. */
void tcp_leg_reset(struct tcp_leg *t);
/* Accepts a pending connection of server into t. Returns 0 or a libuv error. */
int tcp_leg_accept(struct tcp_leg *t, uv_stream_t *server);
/* Starts connecting to addr; on_connect(t, status) follows (status < 0: libuv error). */
int tcp_leg_connect(struct tcp_leg *t, const struct sockaddr *addr,
                    void (*on_connect)(struct tcp_leg *t, int status));

/* ---- TLS on a TCP leg (leg_tls.c) -------------------------------------------------------- */

/* Starts TLS on a connected leg: as the server (client-facing) or as the client (upstream;
 * expect_host sets SNI and the name to verify, NULL for none). Bytes written from now on are
 * encrypted (held until the handshake is done); bytes read are decrypted before on_read.
 * Returns 0, or -1 with a reason in t->tls_error. */
int tcp_leg_start_tls(struct tcp_leg *t, SSL_CTX *ctx, bool server, const char *expect_host,
                      leg_tls_cb on_tls);
/* Server side with tls_hold_hello: the ClientHello waits (the leaf is not chosen yet) until
 * this is called; model (may be NULL) is the certificate the leaf copies. */
void leg_tls_release_hello(struct tcp_leg *t, X509 *model);
/* True when the peer's first bytes after TLS started were plain text, not a TLS record:
 * "220 " from a server (a plain SMTP port) or letters from a client (an SMTP command). */
bool leg_tls_peer_spoke_plain(const struct tcp_leg *t);
/* For leg.c: ciphertext received; plaintext to send; close_notify before FIN; cleanup. */
void leg_tls_received(struct tcp_leg *t, const uint8_t *bytes, size_t len);
void leg_tls_write(struct tcp_leg *t, const uint8_t *bytes, size_t len);
void leg_tls_close_notify(struct tcp_leg *t);
void leg_tls_free(struct tcp_leg *t);
/* The end leg_end asked for, once the handshake it waited for is over (leg_tls.c). */
void tcp_leg_end_now(struct tcp_leg *t);
/* The raw socket write underneath (leg.c). */
void tcp_leg_raw_write(struct tcp_leg *t, const uint8_t *bytes, size_t len);

/* Formats a socket's local or peer address as "ip:port" ("[v6]:port"). */
void sockaddr_format(const struct sockaddr *sa, char *out, size_t size);

#endif
