/* events.h - the event model: every observable thing in a session is one event, and
 * writers (live transcript, capture files) consume events. Nothing else writes transcripts. */
#ifndef SMTPTAP_EVENTS_H
#define SMTPTAP_EVENTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum event_kind {
    EV_INFO,    /* "==" connection and session facts (text) */
    EV_COMMAND, /* a client command or SASL line (bytes, as on the wire) */
    EV_REPLY,   /* a complete server reply, all lines (bytes) */
    EV_CONTENT, /* one message line shown in the transcript (bytes, no terminator) */
    EV_MESSAGE, /* message summary (text) */
    EV_RAW,     /* opaque bytes relayed without interpretation (bytes) */
    EV_LINT,    /* "**" protocol warning (text) */
    EV_ERROR,   /* "<**" or "**>" error on one side (text; dir tells the side) */
    EV_FAULT,   /* "!!" a fault rule fired (text) */
    EV_AUTH,    /* "##" a decoded SASL step (text, already redacted if asked) */
};

enum event_dir {
    DIR_NONE,
    DIR_C2S, /* client to server, or about the client side */
    DIR_S2C, /* server to client, or about the upstream side */
};

struct event {
    uint64_t session;
    uint64_t t_ns; /* since the session started */
    enum event_kind kind;
    enum event_dir dir;
    bool tls;             /* the leg it travelled on was in TLS */
    bool local;           /* produced by smtptap itself, not relayed */
    bool to_smtptap;      /* a server reply to smtptap's own command: not relayed */
    const uint8_t *bytes; /* borrowed for the duration of the call */
    size_t len;
    const char *text; /* borrowed; for text kinds */
};

/* A consumer of events. write() must not keep the pointers it is given. */
struct event_writer {
    void (*write)(struct event_writer *w, const struct event *ev);
    /* Flushes and frees the writer (session end or shutdown). */
    void (*close)(struct event_writer *w);
    struct event_writer *next;
};

#endif
