/* parse.h - pure parsers for the values users type: addresses, durations, upstream specs,
 * numbers, booleans. Each returns NULL on success or a static string saying what would be
 * accepted. */
#ifndef SMTPTAP_PARSE_H
#define SMTPTAP_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum { HOST_MAX = 256 };

struct hostport {
    char host[HOST_MAX]; /* without brackets for IPv6 */
    uint16_t port;
};

enum tls_mode { TLS_NONE, TLS_IMPLICIT, TLS_STARTTLS, TLS_STARTTLS_IF_OFFERED };

struct listen_spec {
    struct hostport addr; /* numeric IP (or "localhost", mapped to 127.0.0.1) */
    bool implicit_tls;    /* "tls:" prefix */
};

enum upstream_kind { UPSTREAM_SINK, UPSTREAM_FIXED, UPSTREAM_TRANSPARENT, UPSTREAM_REPLAY };

struct upstream_spec {
    enum upstream_kind kind;
    struct hostport target; /* UPSTREAM_FIXED */
    enum tls_mode tls;      /* prefix: tls:, starttls:, plain: or none */
    bool port_defaulted;    /* HOST without :PORT: upstream_default_port() was taken */
    char replay[4096];      /* UPSTREAM_REPLAY: the capture file (replay:FILE) */
};

/* "HOST:PORT" or "[V6]:PORT". Port 0 allowed only when allow_zero. */
const char *parse_hostport(const char *s, bool allow_zero, struct hostport *out);
/* "[tls:]ADDR:PORT" with a numeric address (or localhost). */
const char *parse_listen(const char *s, struct listen_spec *out);
/* A numeric address in 127.0.0.0/8, ::1 or ::ffff:127.0.0.0/104: reachable from this host
 * only. Anything else (0.0.0.0, ::, a host name) is false. */
bool is_loopback_address(const char *numeric_host);
/* "sink" | "transparent" | "replay:FILE" | "[tls:|starttls:|plain:]HOST[:PORT]"; without a port the
 * prefix's usual one (upstream_default_port). A word before a colon that is none of the
 * prefixes ("smtps:mail.example.com:465") returns parse_upstream_unknown_prefix, so that the
 * caller can name it (upstream_prefix_length says how long it is). */
const char *parse_upstream(const char *s, struct upstream_spec *out);
extern const char parse_upstream_unknown_prefix[];
/* The length of the word before the first colon of s, or 0 when s does not start with one. */
size_t upstream_prefix_length(const char *s);
/* 465 for tls:, 587 for starttls:, 25 otherwise. */
uint16_t upstream_default_port(enum tls_mode tls);
/* "250ms", "2s", "1m", "1h", or a bare number of seconds. */
const char *parse_duration_ms(const char *s, uint64_t *ms);
const char *parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out);
/* yes/no/true/false/on/off/1/0 */
const char *parse_bool(const char *s, bool *out);
/* Formats milliseconds the way users write them ("300s", "250ms", "1.5s"). */
void format_duration(uint64_t ms, char *out, unsigned size);
/* Formats host:port, bracketing IPv6. */
void format_hostport(const char *host, unsigned port, char *out, unsigned size);

/* "text,jsonl,pcap,eml" (any of them, once each, any order) -> FORMAT_* bits (capture.h).
 * Returns NULL, or the words for what would be accepted. */
const char *parse_formats(const char *v, unsigned *bits);

#endif
