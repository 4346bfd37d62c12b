/* session_int.h - the inside of a session, shared by the session_*.c files and no one else:
 * the state machine, the struct, and the functions the rooms call on one another.
 *
 *   session.c               life: start, the state machine, timers, end, freeing, events
 *   session_connect.c       reaching the upstream: sink, fixed host, transparent; retries
 *   session_tls.c           TLS on either leg: implicit, the client's STARTTLS, passthrough
 *   session_client_path.c   client bytes: framing, commands (decide, then act), messages
 *   session_server_path.c   server bytes: replies (decide, then act), pairing, resuming
 *   session_close.c         either side finishing: EOF, errors, draining, backpressure
 *   session_reply.c         bytes owed to the client, in order, shaped by faults
 *   session_upgrade.c       STARTTLS towards the upstream, done by smtptap itself
 *   session_hello.c         EHLO replies as the client sees them; hellos kept from the server
 */
#ifndef SMTPTAP_SESSION_INT_H
#define SMTPTAP_SESSION_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "smtptap/auth.h"
#include "smtptap/config.h"
#include "smtptap/envelope.h"
#include "smtptap/events.h"
#include "smtptap/fault.h"
#include "smtptap/hello.h"
#include "smtptap/leg.h"
#include "smtptap/lint.h"
#include "smtptap/lint_state.h"
#include "smtptap/message.h"
#include "smtptap/replay_leg.h"
#include "smtptap/session.h"
#include "smtptap/sink_leg.h"
#include "smtptap/smtp.h"
#include "smtptap/verdict.h"

/* Every phase a session goes through, in order; each change passes session_enter().
 *
 *   STARTING --> RESOLVING --> CONNECTING <--> RETRYING      (fixed host: one address each)
 *      |  |                       |
 *      |  +--(transparent)--------+--> UPSTREAM_TLS          (tls: upstream)
 *      |                          |        |
 *      +--(sink)--> GREETING <----+--------+
 *                      |
 *                   RELAYING --> DRAINING                    (the client finished first)
 *                      |            |
 *   any of the above --+------------+--> ENDING --> FREEING  (legs closed: timers, then free)
 */
enum session_state {
    SESSION_STARTING,     /* accepted; the upstream is not chosen yet */
    SESSION_RESOLVING,    /* the upstream's name is being resolved */
    SESSION_CONNECTING,   /* TCP connect to one upstream address */
    SESSION_RETRYING,     /* that connect failed: its socket closes, then the next address */
    SESSION_UPSTREAM_TLS, /* implicit TLS handshake with the upstream */
    SESSION_GREETING,     /* relaying; the upstream's greeting has not come (connect timer) */
    SESSION_RELAYING,     /* both sides talk (idle timer) */
    SESSION_DRAINING,     /* the client finished; the upstream answers what it got (linger) */
    SESSION_ENDING,       /* both legs flush and close (linger timer bounds it) */
    SESSION_FREEING,      /* every leg and request is closed; the timers close, then free */
};

/* STARTTLS towards the upstream (session_upgrade.c), changed through upgrade_enter(). */
enum upstream_upgrade {
    UPGRADE_NONE,
    UPGRADE_PROBING,       /* an EHLO went up; its reply says if STARTTLS is there */
    UPGRADE_STARTTLS_SENT, /* smtptap's own STARTTLS went up */
    UPGRADE_HANDSHAKING,
    UPGRADE_DONE,     /* the upstream leg is in TLS */
    UPGRADE_DECLINED, /* no-prefix upstream without STARTTLS: it stays plain */
};

enum timer_purpose { TIMER_CONNECT, TIMER_IDLE, TIMER_LINGER };

/* Which leg `up` holds. */
enum upstream_leg { UP_NONE, UP_TCP, UP_SINK, UP_REPLAY };

struct held_bytes;

struct session {
    const struct session_env *env;
    const struct config *cfg; /* env->cfg */
    uint64_t id;
    uint64_t start_ns;
    enum session_state state;

    struct tcp_leg client;
    enum upstream_leg up_kind;
    union {
        struct tcp_leg tcp;
        struct sink_leg sink;
        struct replay_leg replay;
    } up;
    struct leg *upstream; /* &up.tcp.base or &up.sink.base, NULL before it exists */
    int open_handles;     /* legs and a pending DNS request; the timers close after them */
    int timers_open;      /* timer and reply_timer, closed last */

    struct smtp_in cin;           /* client-to-server framing */
    struct smtp_reply_parser sin; /* server replies */
    struct smtp_fifo fifo;        /* commands waiting for their reply */
    bool client_eof;              /* the client side sends nothing more (or must not be read) */
    bool client_dead; /* nothing can be written to the client any more (an error, a failed TLS
                         handshake); a FIN alone still lets replies out */
    bool upstream_eof;
    bool saw_421;         /* the upstream announced it is closing */
    bool reply_in_pieces; /* a reply over the bound is being relayed */

    bool observed;    /* some writer wants events (live transcript or capture) */
    bool follow_auth; /* observed, and AUTH is decoded or redacted */
    struct auth_decoder auth;
    bool in_message; /* between DATA's 354 (or the first BDAT) and the end of the message */
    struct message_view msg;
    struct buf body;      /* owned: message bytes not yet emitted as EV_BODY */
    uint64_t message_seq; /* messages begun, abandoned ones included: EV_BODY/EV_MESSAGE */
    uint64_t content_wall_us, content_t_ns; /* the time of message lines (session_content_clock) */
    bool client_tls_seen; /* the client's connection was in TLS (kept after the leg closed) */
    bool records_text;    /* a text capture is open: it records every line of every message */
    struct lint_content lint;
    struct lint_state lstate; /* the lint that needs the dialog's state (lint_state.h) */
    uint64_t c2s_pos;         /* bytes framed from the client so far: lint offsets */
    uint64_t content_end_pos; /* c2s_pos just after the last message byte fed to lint */
    uint64_t s2c_pos;         /* bytes for the client so far (sent, or held to send) */

    uv_timer_t timer; /* connect/greeting timeout, then idle timeout, then linger */
    enum timer_purpose timer_purpose;

    /* Replies owed to the client that a fault holds back, in order (session_reply.c). */
    struct held_bytes *held_head, *held_tail;
    size_t held_size;
    /* The server's reply that is about to be held: its "<-" event waits in the held bytes
     * and is emitted when the client gets them (reply_defer_event). */
    struct held_event *deferred;
    uv_timer_t reply_timer;
    const struct fault_set *fault_set; /* the rules this session matches against */
    struct fault_session faults;
    bool bdat_local; /* the current BDAT chunk was answered locally: not forwarded */
    /* A fault refused a BDAT chunk: the transaction failed (RFC 3030 section 3), so the
     * rest of its chunks are discarded with the rule's reply until LAST or another command
     * (session_client_path.c). */
    const struct fault_rule *bdat_failed;
    bool client_tls_via_starttls; /* the client's TLS began with STARTTLS, not on connect */

    enum upstream_upgrade upgrade;
    struct buf upgrade_hello;       /* owned: the client's EHLO/HELO, sent again inside TLS */
    struct smtp_pending upgrade_of; /* the client's FIFO entry for that command */
    uint64_t upgrade_seq;           /* its running number: the probe's reply pairs with it */

    struct hello_memory hello;            /* the server's hello in its current TLS state */
    const struct fault_rule *hello_fault; /* the EHLO/HELO fault for a hello answered from it */
    struct buf hello_line;                /* owned: that hello's line, for the transcript */

    uint64_t last_activity_ms;
    uv_getaddrinfo_t gai;
    struct addrinfo *addrs, *next_addr; /* owned: resolution result being tried */
    int last_connect_error;
    struct sockaddr_storage upstream_local; /* our end of the upstream connection */
    struct sockaddr_storage upstream_peer;  /* the address it connects to */
    struct sockaddr_storage client_peer;    /* the client's address (kept: no second syscall) */

    struct envelope envelope; /* the transaction's accepted MAIL and RCPTs (EV_DELIVERY) */
    uint64_t server_wait_ns;  /* summed reply latencies of the client's commands */

    uint64_t commands, messages;
    uint64_t bytes_up, bytes_down;   /* plain text from the client, and sent to it */
    struct event_writer *capture;    /* owned: per-session capture files, or NULL; written by
                                        the writer thread when there is one */
    struct writer_wait writers_wait; /* held replies waiting for the writer thread */
    char client_name[80], local_name[80], upstream_name[300];
    struct verdict_facts verdict; /* what the client did with what it was shown (verdict.h) */
};

enum {
    HIGH_WATER = 512 * 1024, /* queued bytes on one leg that stop reading the other */
    FIFO_HIGH = 4096,        /* pending commands that stop reading the client */
    FIFO_MAX = 1 << 20,
    LINGER_MS = 5000, /* how long a half-closed session waits for the other side */
};

/* ---- session.c: life and events ------------------------------------------------------- */

/* The one way a session changes phase: logs "old -> new (why)" at -vv, runs the steps of
 * leaving old and entering next (timers, cancelling a lookup, ending the legs). */
void session_enter(struct session *s, enum session_state next, const char *why);
/* GREETING, RELAYING or DRAINING: the two legs are glued. */
bool session_relaying(const struct session *s);
/* Ends the session: flushes what each leg has queued, sends FIN, closes. Idempotent. */
void session_end(struct session *s);
void session_arm_timer(struct session *s, enum timer_purpose purpose, uint64_t ms);
void session_touch(struct session *s);
/* A leg or a lookup closed: once nothing is open, the session is freed. */
void session_release_if_done(struct session *s);

void session_emit(struct session *s, enum event_kind kind, enum event_dir dir, const uint8_t *bytes,
                  size_t len, const char *text, bool local);
void session_emit_to_smtptap(struct session *s, const uint8_t *bytes, size_t len,
                             const union event_facts *facts);
/* An event with structured facts (events.h says which kinds carry which). */
void session_emit_facts(struct session *s, enum event_kind kind, enum event_dir dir,
                        const uint8_t *bytes, size_t len, const char *text, bool local,
                        const union event_facts *facts);
/* A decoded SASL line: its "##" event (with --decode-auth; facts.auth), and its lint
 * finding, if any, on side's stream. */
void session_show_auth(struct session *s, const struct auth_view *v, enum event_dir side);
/* A "**" lint line with its stable id and the offset in its side's stream. */
void session_lint(struct session *s, const char *id, enum event_dir dir, int64_t offset,
                  const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* A reply the client gets, for the stateful lint (p: what it answers, NULL when unasked). */
/* Where a lint.c finding is: the session, the direction and the stream offset its `at` counts
 * from (the ctx of a lint_report_fn; session_on_lint is that function). */
struct lint_where {
    struct session *s;
    enum event_dir dir;
    int64_t base;
};
void session_on_lint(void *ctx, const struct lint_finding *f);
void session_lint_reply(struct session *s, const struct smtp_pending *p, const uint8_t *bytes,
                        size_t len, bool last);
/* A reply smtptap wrote itself (marked [smtptap]; facts.reply.code from its first line). */
void session_emit_own_reply(struct session *s, const uint8_t *bytes, size_t len);
/* EV_CONTENT: one message line; past_preview after the first 40 (the terminal shows it only
 * with -v). */
void session_emit_content(struct session *s, const uint8_t *bytes, size_t len, bool past_preview);
/* The time the message lines about to be emitted carry: read once per piece of content, not
 * once per line (a 20 MB message has 270,000 lines). */
void session_content_clock(struct session *s);
/* Bytes on the client's connection, in clear (EV_WIRE): C2S as framed, S2C as sent. */
void session_wire(struct session *s, enum event_dir dir, const uint8_t *bytes, size_t len);
/* A "!!" line for a rule that fired (EV_FAULT with its facts). */
void session_emit_fault(struct session *s, const struct fault_rule *rule, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void session_emitf(struct session *s, enum event_kind kind, enum event_dir dir, const char *fmt,
                   ...) __attribute__((format(printf, 4, 5)));
/* A reply smtptap writes itself: shown with [smtptap], sent to the client. */
void session_local_reply(struct session *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* ---- session_connect.c ---------------------------------------------------------------- */

void session_connect_upstream(struct session *s);
/* The upstream leg is ready for SMTP (connected, or its implicit TLS is up). */
void session_start_relaying(struct session *s);
/* The failed upstream socket closed while RETRYING: the next address. */
void session_retry_connect(struct session *s);
/* The upstream could not be reached: a 421 for the client, then the end. */
void session_unreachable(struct session *s, const char *why);

/* ---- session_tls.c -------------------------------------------------------------------- */

/* Implicit TLS from the client (a tls: listener); false when the session ended. */
bool session_start_client_tls(struct session *s);
/* STARTTLS answered by smtptap (--client-starttls offer): the 220 is out, TLS starts. */
void session_client_starttls(struct session *s);
/* Implicit TLS to the upstream (tls: or port 465): relaying starts after the handshake. */
void session_start_upstream_tls(struct session *s);
/* The server accepted the client's STARTTLS (--client-starttls passthrough). */
void session_start_passthrough(struct session *s);
/* STARTTLS passed through: the rest of the session is opaque bytes. */
bool session_opaque(const struct session *s);
/* The "client TLS:" / "upstream TLS:" line of a finished handshake, with its facts. */
void session_tls_event(struct session *s, const struct tcp_leg *t, bool upstream);
/* True when the upstream leg is in TLS. */
bool session_upstream_in_tls(const struct session *s);
/* After the upstream's handshake failed: when the server's CA is one smtptap does not trust,
 * the fix users usually need ("its issuer CN=X is not a CA smtptap trusts: give that CA's
 * certificate with --upstream-ca FILE") into out, and true. */
bool session_upstream_ca_hint(struct session *s, char *out, size_t size);

/* Bytes that arrived behind a STARTTLS before TLS could start: injection, discarded and
 * flagged ("**"), never relayed. */
enum starttls_discard {
    DISCARD_CLIENT_BEFORE_SERVER_REPLY, /* passthrough: client bytes after STARTTLS */
    DISCARD_CLIENT_BEFORE_OWN_220,      /* offer: client bytes after STARTTLS */
    DISCARD_SERVER_AFTER_220_RELAYED,   /* passthrough: server bytes after its 220 */
    DISCARD_SERVER_AFTER_220_OWN,       /* smtptap's upgrade: server bytes after its 220 */
};
void session_discard_after_starttls(struct session *s, enum starttls_discard which);

/* ---- session_client_path.c ------------------------------------------------------------ */

void session_on_client_read(struct leg *leg, const uint8_t *bytes, size_t len);
/* Frames and forwards what the client sent, as far as the framer and the upgrade allow. */
void session_pump_client(struct session *s);
/* Local replies keep their place: those now at the head of the FIFO go out. */
void session_flush_local_heads(struct session *s, bool from_client_path);
/* A message in progress will not be delivered (RSET or a new hello between BDAT chunks). */
void session_abort_message(struct session *s, const char *why);
/* Counts and shows a finished message (also a BDAT 0 LAST). */
void session_finish_message(struct session *s);

/* ---- session_server_path.c ------------------------------------------------------------ */

void session_on_upstream_read(struct leg *leg, const uint8_t *bytes, size_t len);
/* After a reply (real or local) to a command that blocks the framer. */
void session_resume_client(struct session *s, const struct smtp_pending *p, int code,
                           bool from_client_path);

/* ---- session_close.c ------------------------------------------------------------------ */

extern const struct leg_events session_client_events, session_upstream_events;
/* Starts or stops reading each side by the other side's queue (hysteresis: stop at
 * HIGH_WATER, resume at half). */
void session_update_flow(struct session *s);
/* While DRAINING: FIN to the upstream once what it owes the client is in. */
void session_shutdown_upstream_when_answered(struct session *s);

/* ---- session_upgrade.c ---------------------------------------------------------------- */

/* The one way the upgrade changes phase (logs at -vv; leaving it frees the held hello). */
void upgrade_enter(struct session *s, enum upstream_upgrade next, const char *why);
/* Called for a client command about to go upstream; true when it took the command over
 * (it sent what the upgrade needs instead). */
bool upgrade_intercepts(struct session *s, const struct smtp_in_item *it);
bool upgrade_busy(const struct session *s);
/* starttls: while the upstream leg is not in TLS: a local 503 for a command that would go in
 * clear (anything but EHLO HELO NOOP RSET QUIT), else NULL. */
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

/* ---- session_hello.c ------------------------------------------------------------------ */

/* Appends to out the reply the client gets for the server's EHLO/HELO reply to p: STARTTLS
 * offered or removed (as --client-starttls and the client's TLS say), then p's strip fault
 * (its "!!" line). When that differs from reply it is shown as "<=" lines (smtptap's edit,
 * as the client got it) and true is returned; false when the reply goes unchanged. */
bool hello_client_view(struct session *s, const struct smtp_pending *p, const uint8_t *reply,
                       size_t len, struct buf *out);
/* True when p's fault rule is a strip, which hello_client_view has applied already. */
bool hello_fault_applied(const struct smtp_pending *p);
/* Answers the client's first hello after a STARTTLS that smtptap answered (p is its FIFO
 * entry, routed there by hello_route), from the server's kept reply, shaped by
 * s->hello_fault; s->hello_line is its command line. */
void session_hello_after_starttls(struct session *s, const struct smtp_pending *p);
/* The upstream stays plain after smtptap's EHLO probe: answers the client's hello p (shaped by
 * p->fault; line: its command) from the probe's reply. False when the server accepted no
 * hello: then the client's own must go up. */
bool session_hello_after_probe(struct session *s, const struct smtp_pending *p,
                               const struct buf *line);

/* ---- session_reply.c: bytes to the client, in order, shaped by faults ------------------ */

extern const struct fault_rule reply_starttls_ready;   /* 220, then the handshake */
extern const struct fault_rule reply_starttls_refused; /* 502 (--client-starttls strip) */
extern const struct fault_rule reply_hello_first;      /* 503 before the starttls: upgrade */
extern const struct fault_rule reply_hello_remembered; /* session_hello_after_starttls */
void reply_send(struct session *s, const uint8_t *bytes, size_t len);
/* The session ends: replies held only until the writer thread had written what came before
 * go to the client now (the thread writes the rest before the session's files close). */
void reply_send_waiting(struct session *s);
/* The rule that fires for a command (or the greeting, or DATA-END), or NULL. */
const struct fault_rule *reply_fault_for(struct session *s, enum fault_stage stage,
                                         const uint8_t *arg, size_t arg_len);
enum fault_stage reply_stage_of(enum smtp_verb verb);
/* True when a REPLY fault can answer this command instead of the server. */
bool reply_fault_is_local(const struct fault_rule *r, enum smtp_verb verb);
/* Sends the local reply of a pending item answered by smtptap. */
void reply_local(struct session *s, const struct smtp_pending *p, bool from_client_path);
/* A real reply for p, whose fault rule shapes what the client gets. */
void reply_faulted(struct session *s, const struct smtp_pending *p, const uint8_t *bytes,
                   size_t len, int code);
/* A REPLY fault on the greeting answers at once; the server's own greeting is swallowed
 * when it comes. */
void reply_greeting_fault(struct session *s);
/* Frees what is held (session end). */
void reply_free_held(struct session *s);
/* The reply event of bytes that are about to be held (a delay fault, or earlier bytes still
 * held): kept until the client gets them, so its "<-" lines carry that time. */
void reply_defer_event(struct session *s, const uint8_t *bytes, size_t len,
                       const union event_facts *facts);
/* The reply the client gets instead of the deferred one (smtptap's EHLO edit): kept with it,
 * shown as "<=" lines right after it. False when no event is deferred. */
bool reply_defer_edit(struct session *s, const uint8_t *bytes, size_t len, int code);
/* Emits a deferred event that no held bytes took (they went to the client at once). */
void reply_flush_deferred(struct session *s);
/* Emits the events of replies still held, never sent: the session is ending. */
void reply_emit_unsent(struct session *s);

/* ---- session_verdict.c: what the client did with what it was shown ------------------- */

/* A client command line (complete, not SASL) and the facts it adds: STARTTLS, AUTH, MAIL,
 * RCPT. */
void session_verdict_command(struct session *s, const struct smtp_in_item *it);
/* The verdict ("==" line and EV_VERDICT) when there is one to give, as the session ends
 * (before its "session ended" line). */
void session_verdict_emit(struct session *s);

#endif
