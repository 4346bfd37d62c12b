/* smtp.h - pure SMTP protocol pieces: command verbs, the client-to-server stream framer
 * (commands, SASL lines, DATA, BDAT), the server reply parser and the FIFO that pairs
 * pipelined commands with their replies. No I/O, no globals. */
#ifndef SMTPTAP_SMTP_H
#define SMTPTAP_SMTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "smtptap/buf.h"

enum smtp_verb {
    SMTP_VERB_UNKNOWN = 0,
    SMTP_VERB_HELO,
    SMTP_VERB_EHLO,
    SMTP_VERB_MAIL,
    SMTP_VERB_RCPT,
    SMTP_VERB_DATA,
    SMTP_VERB_BDAT,
    SMTP_VERB_RSET,
    SMTP_VERB_NOOP,
    SMTP_VERB_QUIT,
    SMTP_VERB_VRFY,
    SMTP_VERB_EXPN,
    SMTP_VERB_HELP,
    SMTP_VERB_AUTH,
    SMTP_VERB_STARTTLS,
};

/* Parses the verb of a command line (case-insensitive; terminator optional). *arg and
 * *arg_len receive the argument without leading blanks and without the line terminator. */
enum smtp_verb smtp_verb_parse(const uint8_t *line, size_t len, const uint8_t **arg,
                               size_t *arg_len);
const char *smtp_verb_name(enum smtp_verb v);

/* Parses "BDAT <size> [LAST]" arguments. Returns false when the size is not a number. */
bool smtp_bdat_parse(const uint8_t *arg, size_t len, uint64_t *size, bool *last);

/* ---- client-to-server framer ------------------------------------------------------------ */

enum smtp_in_mode {
    SMTP_IN_COMMAND, /* each line is a command */
    SMTP_IN_SASL,    /* the next line is a SASL response (after a 334) */
    SMTP_IN_WAIT,    /* blocked until the reply to DATA, AUTH, STARTTLS or a SASL line */
    SMTP_IN_DATA,    /* message content until CRLF.CRLF */
    SMTP_IN_BDAT,    /* a BDAT chunk of known size */
    SMTP_IN_OPAQUE,  /* after STARTTLS was accepted: bytes are no longer SMTP */
};

enum smtp_in_kind {
    SMTP_IN_NEED_MORE, /* nothing complete is buffered */
    SMTP_IN_BLOCKED,   /* bytes are buffered but cannot be classified before a reply */
    SMTP_IN_LINE,      /* a command or SASL line (or a fragment of an over-long one) */
    SMTP_IN_CONTENT,   /* DATA content or BDAT octets */
    SMTP_IN_RAW,       /* opaque bytes after STARTTLS */
};

struct smtp_in_item {
    enum smtp_in_kind kind;
    const uint8_t *bytes; /* valid until the next call on the framer */
    size_t len;           /* including the line terminator or DATA terminator */
    /* LINE: */
    bool sasl;           /* a SASL response rather than a command */
    bool first;          /* this fragment starts the line (always true unless over-long) */
    bool complete;       /* the line terminator is included */
    enum smtp_verb verb; /* of the command (from its first fragment) */
    /* CONTENT: */
    bool bdat; /* BDAT octets rather than DATA content */
    bool end;  /* this chunk ends the message (DATA) or the chunk (BDAT) */
};

struct smtp_in {
    enum smtp_in_mode mode;
    enum smtp_verb waiting_for; /* the verb whose reply unblocks WAIT (UNKNOWN: SASL line) */
    enum smtp_verb line_verb;   /* verb of the over-long line being emitted in pieces */
    bool in_long_line;
    int data_state; /* CRLF.CRLF matcher, see smtp.c */
    uint64_t bdat_left;
    bool bdat_last;
    size_t max_line; /* lines longer than this are emitted in fragments */
    struct buf in;   /* owned: received bytes not yet returned as items */
    size_t taken;    /* bytes of the last item, consumed at the next call */
};

void smtp_in_init(struct smtp_in *p);
void smtp_in_free(struct smtp_in *p);
/* Appends received bytes (copied). */
void smtp_in_feed(struct smtp_in *p, const uint8_t *bytes, size_t len);
/* Returns the next item; item->bytes stays valid until the next call. */
void smtp_in_next(struct smtp_in *p, struct smtp_in_item *item);
/* Tells a framer in WAIT the code of the reply it waits for. Returns the new mode:
 * DATA after 354, SASL after 334, OPAQUE after 2xx to STARTTLS, else COMMAND. */
enum smtp_in_mode smtp_in_resume(struct smtp_in *p, int code);
/* STARTTLS handled by the owner: drops every buffered byte (returns how many: they were
 * sent before the TLS handshake, so they are injection) and goes back to command mode. */
size_t smtp_in_reset(struct smtp_in *p);
/* The same without the mode change (STARTTLS passed through: the framer stays OPAQUE). */
size_t smtp_in_discard(struct smtp_in *p);
static inline enum smtp_in_mode smtp_in_mode(const struct smtp_in *p)
{
    return p->mode;
}
/* Bytes buffered and not yet returned (held while BLOCKED, or a partial line). */
static inline size_t smtp_in_buffered(const struct smtp_in *p)
{
    return buf_size(&p->in) - p->taken;
}

/* ---- server replies --------------------------------------------------------------------- */

struct smtp_reply {
    int code;             /* 0 when the first line carries no valid code */
    const uint8_t *bytes; /* the whole reply, every line with its terminator */
    size_t len;
    unsigned lines;
    bool malformed; /* a line without a code, or codes that differ between lines */
    bool partial;   /* emitted before its end because it grew past the bound */
};

struct smtp_reply_parser {
    struct buf in;  /* owned */
    size_t scan;    /* bytes of `in` already known to belong to the current reply */
    unsigned lines; /* complete lines in the current reply */
    int code;
    bool malformed;
    size_t max_reply;
    size_t taken;  /* bytes of the last reply, consumed at the next call */
    bool cont;     /* a partial piece of the current reply was emitted already */
    bool mid_line; /* ... and it ended inside a line that began like this: */
    bool mid_more;
    int mid_code;
};

void smtp_reply_init(struct smtp_reply_parser *p);
void smtp_reply_free(struct smtp_reply_parser *p);
void smtp_reply_feed(struct smtp_reply_parser *p, const uint8_t *bytes, size_t len);
/* Returns true and fills *r with the next complete reply (valid until the next call). A reply
 * that grows past max_reply comes out in partial pieces, then a last piece that ends it (that
 * one alone pairs with a command). A piece never ends within the first 3 bytes of a line: those
 * wait until the line shows its code and marker ("250" may become "250-" or "250 "), so how
 * reads cut the stream never changes where a reply ends. */
bool smtp_reply_next(struct smtp_reply_parser *p, struct smtp_reply *r);
/* Takes every buffered byte out (for OPAQUE mode): returns the count, *bytes valid until the
 * next call. */
size_t smtp_reply_take_rest(struct smtp_reply_parser *p, const uint8_t **bytes);

/* Parses the code of one reply line: 3 digits 2-5/0-5/0-9 then SP, '-' or end of line.
 * Returns the code or 0; *more is true for a continuation line ("250-"). */
int smtp_reply_line_code(const uint8_t *line, size_t len, bool *more);

/* ---- pairing pipelined commands with replies -------------------------------------------- */

enum smtp_pending_kind {
    SMTP_PENDING_GREETING,
    SMTP_PENDING_COMMAND,
    SMTP_PENDING_DATA_END,
    SMTP_PENDING_SASL,
};

struct smtp_pending {
    enum smtp_pending_kind kind;
    enum smtp_verb verb;
    uint64_t seq;      /* running number of the command in the session */
    const void *fault; /* the owner's annotation (smtptap: the fault rule that fired) */
    bool local;        /* answered by the owner, not by the server: pairs with no reply */
    bool internal;     /* sent by the owner itself: its reply is not the client's */
    uint64_t sent_ns;  /* the owner's clock when the command's last byte came (latency) */
    bool ends_message; /* BDAT ... LAST: its reply is the message's outcome */
    uint64_t message;  /* the owner's number for the message whose outcome the reply is */
};

/* A bounded ring; the owner decides what to do when it is full. */
struct smtp_fifo {
    struct smtp_pending *items; /* owned */
    size_t head, count, cap, max;
};

void smtp_fifo_init(struct smtp_fifo *f, size_t max);
void smtp_fifo_free(struct smtp_fifo *f);
/* Returns false when the FIFO holds `max` items already. */
bool smtp_fifo_push(struct smtp_fifo *f, struct smtp_pending item);
bool smtp_fifo_pop(struct smtp_fifo *f, struct smtp_pending *out);
/* The oldest item, or NULL; valid until the next push or pop. */
const struct smtp_pending *smtp_fifo_peek(const struct smtp_fifo *f);
static inline size_t smtp_fifo_count(const struct smtp_fifo *f)
{
    return f->count;
}
/* True when a pending item of this kind would block the framer (DATA, AUTH, STARTTLS, SASL). */
bool smtp_pending_blocks(const struct smtp_pending *p);

#endif
