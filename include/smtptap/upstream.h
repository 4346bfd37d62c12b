/* upstream.h - choosing and reaching the upstream: the original destination of a
 * redirected connection, name resolution, and the words for why a connect failed. */
#ifndef SMTPTAP_UPSTREAM_H
#define SMTPTAP_UPSTREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <uv.h>

/* Original destination of a connection redirected by nftables/iptables (REDIRECT/DNAT),
 * IPv4 or IPv6. Returns 0, or a negative errno when the connection was not redirected. */
int upstream_original_dst(uv_tcp_t *client, struct sockaddr_storage *out);

/* True when a and b have the same family, address and port. */
bool sockaddr_equal(const struct sockaddr *a, const struct sockaddr *b);

/* A numeric host parsed into *out with port; returns false for names. */
bool sockaddr_from_numeric(const char *host, unsigned port, struct sockaddr_storage *out);

/* Plain words for a libuv connect error ("connection refused", "no route to host", ...). */
const char *upstream_connect_reason(int uverr);

#endif
