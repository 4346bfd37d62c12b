/* leg_int.h - inside the TCP leg: what leg.c (the socket) and leg_tls.c (its TLS pump) call
 * of each other. Nothing else includes this. */
#ifndef SMTPTAP_LEG_INT_H
#define SMTPTAP_LEG_INT_H

#include "smtptap/leg.h"

/* leg.c: writes bytes to the socket as they are (ciphertext on a TLS leg), trying the
 * socket first and queueing the rest. */
void tcp_leg_raw_write(struct tcp_leg *t, const uint8_t *bytes, size_t len);
/* leg.c: the end leg_end asked for, once the handshake it waited for is over. */
void tcp_leg_end_now(struct tcp_leg *t);

/* leg_tls.c, for a leg whose TLS was started: ciphertext read from the socket; plaintext the
 * owner writes; close_notify before FIN. */
void leg_tls_received(struct tcp_leg *t, const uint8_t *bytes, size_t len);
void leg_tls_write(struct tcp_leg *t, const uint8_t *bytes, size_t len);
void leg_tls_close_notify(struct tcp_leg *t);
/* leg_tls.c: the peer's close_notify arrived (a TCP EOF after it is not a truncation). */
bool leg_tls_peer_closed(const struct tcp_leg *t);
/* leg_tls.c: leg_end must wait for the handshake: plaintext (a 421, say) is queued for it,
 * and the peer, which has begun it, can still finish it. */
bool leg_tls_end_waits_for_handshake(const struct tcp_leg *t);
/* leg_tls.c: the leg is closing: TLS makes no more calls to the owner. Safe on a plain leg. */
void leg_tls_halt(struct tcp_leg *t);
/* leg_tls.c: frees the TLS state once the handle is closed. Safe on a plain leg. */
void leg_tls_free(struct tcp_leg *t);

#endif
