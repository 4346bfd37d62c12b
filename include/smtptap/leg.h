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
#include "smtptap/tls.h"
#include "smtptap/tls_pump.h"

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

enum leg_tls_state {
    LEG_TLS_OFF = TLS_PUMP_OFF,
    LEG_TLS_HANDSHAKING = TLS_PUMP_HANDSHAKING,
    LEG_TLS_ON = TLS_PUMP_ON,
    LEG_TLS_FAILED = TLS_PUMP_FAILED,
};

struct tcp_leg;
/* Called once per handshake: status 0 when it completed, -1 when it failed (the reason is in
 * t->tls_error; the leg should then be closed). */
typedef void (*leg_tls_cb)(struct tcp_leg *t, int status);

struct tcp_leg {
    struct leg base;
    uv_tcp_t tcp;
    /* TLS (leg_tls.c): the pump drives OpenSSL over memory BIOs; not started on a plain leg. */
    struct tls_pump tls_pump;
    leg_tls_cb on_tls;
    bool tls_truncated;          /* TCP EOF without close_notify */
    char tls_error[TLS_ERR_MAX]; /* why TLS failed or could not start */
    char tls_name[256];          /* server side: leaf name when the client sends no SNI */
    X509 *tls_model;             /* owned reference, may be NULL: the upstream certificate
                                    whose subject and SANs the client's leaf copies */
    bool tls_hold_hello;         /* server side: park the ClientHello until leg_tls_release_hello */
    int tls_cert_mode;           /* server side: enum client_cert of the leaf shown (0: good) */
    int tls_peer_alert;          /* the fatal alert the peer sent (SSL_AD_*), 0 none */
    bool end_after_handshake;    /* leg_end came while plaintext waited for the handshake */
    bool read_ended;             /* EOF or a read error: nothing more will come in */
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
/* The socket's local and peer addresses; either pointer may be NULL. Each one asked for is
 * zeroed first (ss_family AF_UNSPEC if it cannot be read). Returns 0, or the libuv error of
 * the first that could not be read. */
int tcp_leg_addresses(const struct tcp_leg *t, struct sockaddr_storage *local,
                      struct sockaddr_storage *peer);
/* Where the client meant to connect before nftables/iptables redirected it to us (see
 * upstream_original_dst). Returns 0, or a negative errno when it was not redirected. */
int tcp_leg_original_dst(const struct tcp_leg *t, struct sockaddr_storage *dst);

/* ---- TLS on a TCP leg (leg_tls.c) -------------------------------------------------------- */

/* Makes server_ctx (client-facing) choose each client's leaf on the ClientHello: by its SNI,
 * else the leg's tls_name, else "localhost", minted by ca and copying the leg's tls_model;
 * a leg with tls_hold_hello parks the ClientHello until leg_tls_release_hello. ca must
 * outlive server_ctx. */
void leg_tls_serve_with_ca(SSL_CTX *server_ctx, struct tls_ca *ca);
/* Starts TLS on a connected leg: as the server (client-facing) or as the client (upstream;
 * expect_host sets SNI and the name to verify, NULL for none). Bytes written from now on are
 * encrypted (held until the handshake is done); bytes read are decrypted before on_read.
 * Returns 0, or -1 with a reason in t->tls_error. */
int tcp_leg_start_tls(struct tcp_leg *t, SSL_CTX *ctx, bool server, const char *expect_host,
                      leg_tls_cb on_tls);
/* Server side with tls_hold_hello: the ClientHello waits (the leaf is not chosen yet) until
 * this is called; the leaf then copies model_from's peer certificate when model_from (may be
 * NULL) is a leg whose TLS is up and t has no tls_model yet. */
void leg_tls_release_hello(struct tcp_leg *t, const struct tcp_leg *model_from);
/* True when the peer's first bytes after TLS started were plain text, not a TLS record:
 * "220 " from a server (a plain SMTP port) or letters from a client (an SMTP command). */
bool leg_tls_peer_spoke_plain(const struct tcp_leg *t);
/* After a failed handshake on an upstream leg: true when verification failed for want of the
 * CA the server's chain ends at, with that CA's name in out (tls_untrusted_issuer). */
bool leg_tls_untrusted_issuer(const struct tcp_leg *t, char *out, size_t size);
/* TLS was started on the leg, whatever came of it. */
bool tcp_leg_tls_started(const struct tcp_leg *t);
/* The handshake completed and TLS has not failed (LEG_TLS_ON). */
bool tcp_leg_tls_up(const struct tcp_leg *t);
enum leg_tls_state tcp_leg_tls_state(const struct tcp_leg *t);
/* The peer has sent at least one byte since TLS started. */
bool tcp_leg_tls_peer_spoke(const struct tcp_leg *t);
/* One line about the leg's TLS (tls_describe); upstream adds the verification result.
 * "no TLS" when TLS was not started. */
void tcp_leg_describe_tls(const struct tcp_leg *t, bool upstream, char *out, size_t size);
/* The same facts one by one (all "" when TLS was not started). */
void tcp_leg_tls_facts(const struct tcp_leg *t, bool upstream, struct tls_facts *out);
/* The leaf of client (not yet in its handshake) copies the certificate upstream's peer
 * presented; nothing happens unless upstream's TLS is up. */
void tcp_leg_copy_peer_certificate(struct tcp_leg *client, const struct tcp_leg *upstream);

/* Formats a socket's local or peer address as "ip:port" ("[v6]:port"). */
void sockaddr_format(const struct sockaddr *sa, char *out, size_t size);

#endif
