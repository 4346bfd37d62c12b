/* session.h - one client connection and its upstream: two legs glued by the SMTP framer,
 * the reply parser and the pairing FIFO. It forwards bytes exactly as received, turns
 * everything it sees into events, and applies backpressure between the legs. */
#ifndef SMTPTAP_SESSION_H
#define SMTPTAP_SESSION_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "smtptap/events.h"
#include "smtptap/leg.h"
#include "smtptap/lint.h"
#include "smtptap/message.h"
#include "smtptap/sink_leg.h"
#include "smtptap/smtp.h"

struct server;
struct listener;

enum session_state {
    SESSION_CONNECTING, /* resolving or connecting the upstream; the client is not read */
    SESSION_RELAYING,
    SESSION_DRAINING, /* one side has finished; waiting for the other to finish */
    SESSION_ENDING,   /* legs are flushing and closing */
};

struct session {
    struct server *server;
    struct session *prev, *next;
    uint64_t id;
    uint64_t start_ns;
    enum session_state state;

    struct tcp_leg client;
    union {
        struct tcp_leg tcp;
        struct sink_leg sink;
    } up;
    struct leg *upstream; /* &up.tcp.base or &up.sink.base, NULL before it exists */
    int open_handles;     /* legs and a pending DNS request; the timer closes after them */
    bool timer_closing;

    struct smtp_in cin;           /* client-to-server framing */
    struct smtp_reply_parser sin; /* server replies */
    struct smtp_fifo fifo;        /* commands waiting for their reply */
    bool opaque;                  /* STARTTLS passed through: bytes are no longer SMTP */
    bool client_eof, upstream_eof;
    bool greeted;         /* the upstream's greeting arrived */
    bool saw_421;         /* the upstream announced it is closing */
    bool reply_in_pieces; /* a reply over the bound is being relayed */
    bool retry_connect;   /* the failed upstream socket closes, then the next address */
    bool gai_pending;

    bool observed; /* some writer wants events (live transcript or capture) */
    bool in_message;
    struct message_view msg;
    struct lint_content lint;

    uv_timer_t timer; /* connect/greeting timeout, then idle timeout, then linger */
    int timer_purpose;
    uint64_t last_activity_ms;
    uv_getaddrinfo_t gai;
    struct addrinfo *addrs, *next_addr; /* owned: resolution result being tried */
    int last_connect_error;
    struct sockaddr_storage upstream_local; /* our end of the upstream connection */

    uint64_t commands, messages, bytes_up, bytes_down;
    struct event_writer *capture; /* owned: per-session capture file, or NULL */
    char client_name[80], local_name[80], upstream_name[300];
};

/* Accepts a connection from the listener into a new session. */
void session_accept(struct server *srv, struct listener *l);
/* Shutdown: tells the client the service is closing after its current command
 * (421) and ends the session once idle, or at once when force is set. */
void session_stop(struct session *s, bool force);

#endif
