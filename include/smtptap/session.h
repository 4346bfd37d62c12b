/* session.h - one client connection and its upstream: two legs glued by the SMTP framer,
 * the reply parser and the pairing FIFO. It forwards bytes exactly as received, turns
 * everything it sees into events, and applies backpressure between the legs. */
#ifndef SMTPTAP_SESSION_H
#define SMTPTAP_SESSION_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "smtptap/auth.h"
#include "smtptap/events.h"
#include "smtptap/fault.h"
#include "smtptap/hello.h"
#include "smtptap/leg.h"
#include "smtptap/lint.h"
#include "smtptap/message.h"
#include "smtptap/sink_leg.h"
#include "smtptap/smtp.h"

struct server;
struct listener;
struct held_bytes;

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

    bool observed;    /* some writer wants events (live transcript or capture) */
    bool follow_auth; /* observed, and AUTH is decoded or redacted */
    struct auth_decoder auth;
    bool in_message;
    struct message_view msg;
    struct lint_content lint;

    uv_timer_t timer; /* connect/greeting timeout, then idle timeout, then linger */
    int timer_purpose;
    int timers_open; /* timer and reply_timer, closed last */

    /* Replies owed to the client that a fault holds back, in order (session_reply.c). */
    struct held_bytes *held_head, *held_tail;
    size_t held_size;
    uv_timer_t reply_timer;
    const struct fault_set *fault_set; /* the rules this session matches against */
    struct fault_session faults;
    bool bdat_local;              /* the current BDAT chunk was answered locally: not forwarded */
    bool client_tls_via_starttls; /* the client's TLS began with STARTTLS, not on connect */
    bool client_dead; /* nothing can be written to the client any more (an error, a failed TLS
                         handshake); a FIN alone still lets replies out */
    int upgrade;      /* enum upstream_upgrade (session_upgrade.c) */
    struct buf upgrade_hello;             /* owned: the client's EHLO/HELO, sent again inside TLS */
    struct smtp_pending upgrade_of;       /* the client's FIFO entry for that command */
    uint64_t upgrade_seq;                 /* its running number: the probe's reply pairs with it */
    struct hello_memory hello;            /* the server's hello in its current TLS state */
    const struct fault_rule *hello_fault; /* the EHLO/HELO fault for a hello answered from it */
    struct buf hello_line;                /* owned: that hello's line, for the transcript */
    uint64_t last_activity_ms;
    uv_getaddrinfo_t gai;
    struct addrinfo *addrs, *next_addr; /* owned: resolution result being tried */
    int last_connect_error;
    struct sockaddr_storage upstream_local; /* our end of the upstream connection */

    uint64_t commands, messages;
    uint64_t bytes_up, bytes_down; /* plain text from the client, and sent to it */
    struct event_writer *capture;  /* owned: per-session capture file, or NULL */
    char client_name[80], local_name[80], upstream_name[300];
};

/* ---- shared by session.c and session_reply.c ------------------------------------------- */

void session_emit(struct session *s, enum event_kind kind, enum event_dir dir, const uint8_t *bytes,
                  size_t len, const char *text, bool local);
void session_emitf(struct session *s, enum event_kind kind, enum event_dir dir, const char *fmt,
                   ...) __attribute__((format(printf, 4, 5)));
void session_end(struct session *s);
/* After a reply (real or local) to a command that blocks the framer. */
void session_resume_client(struct session *s, const struct smtp_pending *p, int code,
                           bool from_client_path);

enum upstream_upgrade {
    UPGRADE_NONE,
    UPGRADE_PROBING,       /* an EHLO went up; its reply says if STARTTLS is there */
    UPGRADE_STARTTLS_SENT, /* smtptap's own STARTTLS went up */
    UPGRADE_HANDSHAKING,
    UPGRADE_DONE,     /* the upstream leg is in TLS */
    UPGRADE_DECLINED, /* no-prefix upstream without STARTTLS: it stays plain */
};
/* session_upgrade.c: STARTTLS towards a starttls: or no-prefix upstream. Called for a
 * client command about to go upstream; true when it took the command over (it sent what
 * the upgrade needs instead). */
bool upgrade_intercepts(struct session *s, const struct smtp_in_item *it);
bool upgrade_busy(const struct session *s);
/* starttls: while the upstream leg is not in TLS: a local 503 for a command that would go in clear
 * (anything but EHLO HELO NOOP RSET QUIT), else NULL. */
const struct fault_rule *upgrade_guard(const struct session *s, const struct smtp_in_item *it,
                                       const struct fault_rule *fault);
/* True when the next reply belongs to the upgrade (the probe's, or to smtptap's STARTTLS). */
bool upgrade_waits_for_head(const struct session *s);
/* A reply relayed in pieces while the upgrade waits for a whole one: true when the client
 * got 421 for it (starttls:, or the reply to smtptap's STARTTLS); false when a no-prefix
 * upstream stays plain and the reply goes on to the client. */
bool upgrade_reply_too_long(struct session *s);
/* True when the reply belongs to the upgrade and must not reach the client. */
bool upgrade_takes(const struct session *s, const struct smtp_pending *p,
                   const struct smtp_reply *r);
/* Every paired reply goes here before the client path (which it skips when upgrade_takes). */
void upgrade_on_reply(struct session *s, const struct smtp_pending *p, const struct smtp_reply *r);
void session_update_flow(struct session *s);

/* session_hello.c: the client's view of EHLO replies, and hellos the server must not see. */
/* Appends to out the reply the client gets for the server's EHLO reply (STARTTLS offered or
 * removed as --client-starttls and the client's TLS say); false when it goes unchanged. */
bool hello_edit_for_client(struct session *s, enum smtp_verb verb, const uint8_t *reply, size_t len,
                           struct buf *out);
/* Answers the client's first hello after a STARTTLS that smtptap answered (p is its FIFO
 * entry, routed there by hello_route), from the server's kept reply, shaped by
 * s->hello_fault; s->hello_line is its command line. */
void session_hello_after_starttls(struct session *s, const struct smtp_pending *p);
/* The upstream stays plain after smtptap's EHLO probe: answers the client's hello p (shaped by
 * p->fault; line: its command) from the probe's reply. False when the server accepted no
 * hello: then the client's own must go up. */
bool session_hello_after_probe(struct session *s, const struct smtp_pending *p,
                               const struct buf *line);

/* STARTTLS answered by smtptap (--client-starttls offer): the 220 is out, TLS starts. */
void session_client_starttls(struct session *s);

/* session_reply.c: bytes to the client, in order, shaped by faults. */
extern const struct fault_rule reply_starttls_ready;   /* 220, then the handshake */
extern const struct fault_rule reply_starttls_refused; /* 502 (--client-starttls strip) */
extern const struct fault_rule reply_hello_first;      /* 503 before the starttls: upgrade */
extern const struct fault_rule reply_hello_remembered; /* session_hello_answer answers it */
void reply_send(struct session *s, const uint8_t *bytes, size_t len);
/* The rule that fires for a command (or the greeting, or DATA-END), or NULL. */
const struct fault_rule *reply_fault_for(struct session *s, enum fault_stage stage,
                                         const uint8_t *arg, size_t arg_len);
enum fault_stage reply_stage_of(enum smtp_verb verb);
/* True when a REPLY fault can answer this command instead of the server. */
bool reply_fault_is_local(const struct fault_rule *r, enum smtp_verb verb);
/* Sends the local reply of a pending item answered by a fault. */
void reply_local(struct session *s, const struct smtp_pending *p, bool from_client_path);
/* A real reply for p, whose fault rule shapes what the client gets. */
void reply_faulted(struct session *s, const struct smtp_pending *p, const uint8_t *bytes,
                   size_t len, int code);
/* Frees what is held (session end). */
void reply_free_held(struct session *s);

/* Accepts a connection from the listener into a new session. */
void session_accept(struct server *srv, struct listener *l);
/* Shutdown: tells the client the service is closing after its current command
 * (421) and ends the session once idle, or at once when force is set. */
void session_stop(struct session *s, bool force);

#endif
