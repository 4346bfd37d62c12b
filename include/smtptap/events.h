/* events.h - the event model: every observable thing in a session is one event, and
 * writers (live transcript, capture files: text, jsonl, pcap, eml) consume events. Nothing
 * else writes transcripts, and a writer reads nothing but events.
 *
 * An event has a kind, a direction, bytes or a text, and, for some kinds, structured facts
 * (ev->facts: the member that the kind names; everything in it is borrowed for the call). */
#ifndef SMTPTAP_EVENTS_H
#define SMTPTAP_EVENTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

enum event_kind {
    EV_INFO,    /* "==" connection and session facts (text; facts.tls for a TLS handshake) */
    EV_COMMAND, /* a client command or SASL line (bytes, as on the wire) */
    EV_REPLY,   /* a complete server reply, all lines (bytes; facts.reply); or one smtptap
                   wrote (local), or edited (facts.reply.edited_from) */
    EV_CONTENT, /* one message line shown in the transcript (bytes, no terminator) */
    EV_MESSAGE, /* message summary (text; facts.message) */
    EV_RAW,     /* opaque bytes relayed without interpretation (bytes) */
    EV_LINT,    /* "**" protocol warning (text; facts.lint) */
    EV_ERROR,   /* "<**" or "**>" error on one side (text; dir tells the side) */
    EV_FAULT,   /* "!!" a fault rule fired (text; facts.fault) */
    EV_AUTH,    /* "##" a decoded SASL step (text, already redacted if asked; facts.auth) */
    /* Kinds the text format does not show (its "==" lines say the same in words): */
    EV_START,      /* the session began (facts.endpoints: client and listener) */
    EV_UPSTREAM,   /* the upstream is connected (facts.endpoints: its address and ours) */
    EV_WIRE,       /* bytes on the client's connection, in clear, as they passed: C2S what the
                      client sent, S2C what it was sent (bytes; pcap) */
    EV_CLIENT_TLS, /* from here on the client's connection is in TLS (STARTTLS: a new stream
                      in pcap); nothing for implicit TLS, which starts before any byte */
    EV_BODY,       /* message bytes as the server receives them: dot-unstuffed DATA, BDAT
                      chunks joined (bytes; eml) */
    EV_DELIVERY,   /* the server's reply to a message's end (facts.delivery; eml) */
    EV_END,        /* the session is over: the last event (facts.end) */
    EV_VERDICT,    /* "==" what the client did with a bad certificate or a withheld STARTTLS
                      (text; facts.verdict), as the session ends */
};

enum event_dir {
    DIR_NONE,
    DIR_C2S, /* client to server, or about the client side */
    DIR_S2C, /* server to client, or about the upstream side */
};

struct event_endpoints {
    struct sockaddr_storage a, b; /* EV_START: client, listener; EV_UPSTREAM: server, ours */
};

struct event_tls_facts {
    bool upstream;                                        /* which leg */
    const char *version, *cipher, *sni;                   /* sni: "" when none */
    const char *peer_subject, *peer_issuer, *peer_sha256; /* "" when no certificate */
    const char *verify; /* upstream: "verified", "NOT verified (--insecure)" or the error */
};

struct event_reply_facts {
    int code;            /* 0 when the reply has no valid code */
    uint64_t latency_ns; /* from the command's last byte to this reply's last byte; 0: none */
    /* An edited reply (the reply as the client got it after smtptap changed the server's
     * EHLO reply: STARTTLS offered or removed, a strip fault; it follows the server's own
     * EV_REPLY): the server's reply it was made from. NULL for every other reply. */
    const uint8_t *edited_from;
    size_t edited_from_len;
};

struct event_lint_facts {
    const char *id; /* stable rule id, e.g. "bare-lf-in-message" (README: Lint) */
    int64_t offset; /* byte offset in the client's (C2S) or server's (S2C) stream, -1 unknown */
};

struct event_fault_facts {
    const char *rule;   /* the rule's name */
    const char *action; /* reply, delay, drop, reset, stall, strip, slow, truncate */
    /* "added" or "removed": not a firing but a rule changed through the control API (the
     * change applies from the session's next command); NULL for a firing. */
    const char *change;
};

struct event_message_facts {
    uint64_t number, size, lines;
    uint64_t past_preview; /* lines after the first 40: the terminal shows them only with -v */
    const char *sha256;    /* hex */
};

struct event_delivery_facts {
    uint64_t message;         /* its number in the session */
    const char *helo;         /* the name the server was greeted with ("" if none) */
    const char *mail_from;    /* the MAIL command the server accepted, as sent, no CRLF */
    const char *const *rcpts; /* the RCPT commands it accepted, as sent, no CRLF */
    size_t nrcpts;
    const uint8_t *reply; /* the server's reply to the end of the message, as received */
    size_t reply_len;
    int code;
};

struct event_end_facts {
    double seconds;
    uint64_t commands, messages, bytes_up, bytes_down;
    uint64_t server_wait_ns; /* summed reply latencies: time spent waiting for the server */
};

struct event_verdict_facts {
    const char *cert;     /* the --client-cert mode shown: "expired", ... ("good" with strip) */
    const char *starttls; /* "offer", "strip" or "implicit" (a tls: listener) */
    const char *action;   /* "refused", "gave-up", "sent-mail", "sent-credentials" */
    const char *alert;    /* the TLS alert the client refused with ("unknown_ca"), or "" */
    const char *auth_mech, *auth_user; /* "" when none, or when the user is not shown */
    bool good;                         /* the client did what a careful client does */
    bool credentials_exposed, mail_exposed;
};

enum { EVENT_AUTH_FIELDS_MAX = 8 };

/* A decoded SASL line (EV_AUTH, with --decode-auth): what its "##" text says, structured.
 * Values read as the text shows them (printable, escaped); under --redact a secret one is
 * its mark ("<redacted>"), as in the text. */
struct event_auth_facts {
    const char *mechanism; /* as the client wrote it, upper-cased */
    const char *step;      /* command, response, challenge, outcome, unexpected (auth.h) */
    const char *user;      /* the user the exchange named so far, or "" */
    const char *outcome;   /* step "outcome": accepted, rejected, cancelled...; else NULL */
    int code;              /* step "outcome": the reply code */
    size_t nfields;
    const char *names[EVENT_AUTH_FIELDS_MAX], *values[EVENT_AUTH_FIELDS_MAX];
    bool secret[EVENT_AUTH_FIELDS_MAX]; /* the value is a secret (masked under --redact) */
};

union event_facts {
    struct event_endpoints endpoints;
    struct event_tls_facts tls;
    struct event_reply_facts reply;
    struct event_lint_facts lint;
    struct event_fault_facts fault;
    struct event_message_facts message;
    struct event_delivery_facts delivery;
    struct event_end_facts end;
    struct event_verdict_facts verdict;
    struct event_auth_facts auth;
};

struct event {
    uint64_t session;
    uint64_t t_ns;    /* since the session started (monotonic) */
    uint64_t wall_us; /* wall-clock time, microseconds since the epoch */
    enum event_kind kind;
    enum event_dir dir;
    bool tls;             /* the client's connection was in TLS */
    bool local;           /* produced by smtptap itself, not relayed */
    bool to_smtptap;      /* a server reply to smtptap's own command: not relayed */
    bool past_preview;    /* EV_CONTENT after a message's first 40 lines: the terminal shows
                           * it only with -v, a text capture always */
    const uint8_t *bytes; /* borrowed for the duration of the call */
    size_t len;
    const char *text;               /* borrowed; for text kinds */
    const union event_facts *facts; /* borrowed; NULL when the kind has none here */
};

/* A consumer of events. write() must not keep the pointers it is given. */
struct event_writer {
    void (*write)(struct event_writer *w, const struct event *ev);
    /* Flushes and frees the writer (session end or shutdown). */
    void (*close)(struct event_writer *w);
    /* A file writer makes what it was given readable in its file at every reply and at the
     * end. With flush_by_owner set (by its owner, before the first write) it leaves that to
     * the owner, who calls flush (NULL: nothing to flush): the writer thread does so once it
     * has written everything it was handed, so that many replies cost one write. */
    void (*flush)(struct event_writer *w);
    bool flush_by_owner;
    bool dirty; /* the writer thread's: written since its last flush */
    struct event_writer *next;
};

#endif
