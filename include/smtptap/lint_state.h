/* lint_state.h - pure protocol lint that needs the dialog's state: it follows one session's
 * SMTP dialog (greeting, commands, replies, message content) and reports what breaks a rule
 * only in context: an extension used that the server did not offer, pipelining without
 * PIPELINING, talking before the greeting, reply codes that change or disagree with their
 * enhanced status codes, replies nobody asked for, AUTH in clear next to STARTTLS.
 *
 * No I/O, no allocation, no globals: a struct lint_state is embedded in its owner and needs
 * no freeing. Each finding goes to a callback with a stable id (LINT_ID_*), the side whose
 * bytes broke the rule and the byte offset in that side's stream, and one readable sentence.
 *
 * Offsets are passed in: every input carries the offset of its first byte in its stream,
 * counted by the owner (smtptap: the client's bytes as received for C2S, the bytes the client
 * is sent for S2C). lint_state adds positions inside the bytes it is given, nothing else.
 * LINT_STATE_NO_OFFSET passes through unchanged when the owner does not know.
 *
 * Feed everything in the order it happened on the wire; commands and replies interleave as
 * they came (a reply may arrive in pieces with commands between them). */
#ifndef SMTPTAP_LINT_STATE_H
#define SMTPTAP_LINT_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "smtptap/smtp.h"

/* The stable rule ids, kebab-case as in jsonl "lint" events; each rule once per what it says.
 * "Offered" always means: by the latest 250 reply to EHLO (a HELO session offers nothing;
 * a new EHLO or HELO, and TLS starting, forget what was offered before). */
/* C2S: a content byte >= 0x80 while the transaction's MAIL had neither BODY=8BITMIME nor
 * BODY=BINARYMIME. Once per message, at that byte. */
#define LINT_ID_8BIT_WITHOUT_8BITMIME "8bit-without-8bitmime"
/* C2S: MAIL with the SMTPUTF8 parameter, or MAIL/RCPT whose address has a byte >= 0x80,
 * while SMTPUTF8 was not offered. Once per line, at the line. */
#define LINT_ID_SMTPUTF8_NOT_OFFERED "smtputf8-not-offered"
/* C2S: a command sent while a reply was due and PIPELINING was not offered (RFC 2920). Once
 * per burst (until a command comes with no reply due), at the first pipelined command. */
#define LINT_ID_PIPELINING_NOT_OFFERED "pipelining-not-offered"
/* C2S: a command before the whole greeting came. Once per session, at the first such command
 * (it stands for the pipelining finding of the same burst). */
#define LINT_ID_COMMAND_BEFORE_GREETING "command-before-greeting"
/* C2S: BDAT while CHUNKING was not offered. Once per message, at the first BDAT. */
#define LINT_ID_CHUNKING_NOT_OFFERED "chunking-not-offered"
/* C2S: MAIL with SIZE=n above the offered SIZE limit (SIZE 0 or bare SIZE: no limit). Once
 * per MAIL, at the line. */
#define LINT_ID_SIZE_OVER_LIMIT "size-over-limit"
/* S2C: a line of a multi-line reply whose code is not the first line's. Once per reply, at
 * the first such line. */
#define LINT_ID_REPLY_CODE_CHANGES "reply-code-changes"
/* S2C: a reply whose first line does not start with 3 digits, the first one 2 to 5. Once
 * per reply, at the reply. */
#define LINT_ID_REPLY_CODE_OUT_OF_RANGE "reply-code-out-of-range"
/* S2C: an enhanced status code (RFC 3463 "c.sss.ddd" after the code) whose class is not the
 * line's reply class, while ENHANCEDSTATUSCODES was offered; not judged on the greeting, on
 * HELO/EHLO replies, or on 3xx lines. Once per reply, at the first such line. */
#define LINT_ID_ENHANCED_CODE_MISMATCH "enhanced-code-mismatch"
/* S2C: a reply that paired with no command (LINT_REPLY_UNASKED), except a 421. Once per
 * reply, at the reply. */
#define LINT_ID_REPLY_BEFORE_COMMAND "reply-before-command"
/* C2S: AUTH from a client not in TLS while STARTTLS was offered. Once per AUTH, at the line. */
#define LINT_ID_AUTH_BEFORE_STARTTLS "auth-before-starttls"

enum lint_side {
    LINT_SIDE_C2S, /* the client's bytes */
    LINT_SIDE_S2C, /* the server's bytes */
};

/* "Offset unknown": given as an input offset, findings on those bytes carry it unchanged. */
#define LINT_STATE_NO_OFFSET UINT64_MAX

/* One finding. id: a LINT_ID_* string; text: one sentence without a "lint: " prefix, plain
 * printable ASCII (a byte from the wire that is not is shown as 0xNN or \xNN), so it is
 * valid UTF-8 for jsonl as it is. Both strings are valid for the call only. */
typedef void (*lint_state_finding_fn)(void *ctx, const char *id, enum lint_side side,
                                      uint64_t offset, const char *text);

/* What a reply answers. Mirrors enum smtp_pending_kind, plus UNASKED for a reply that
 * paired with nothing (lint_reply_kind_of maps a pending item, or NULL, to it). */
enum lint_reply_kind {
    LINT_REPLY_GREETING,
    LINT_REPLY_COMMAND,
    LINT_REPLY_DATA_END,
    LINT_REPLY_SASL,
    LINT_REPLY_UNASKED,
};

/* Bytes of each reply line kept for its checks: code, separator, enhanced code, and an EHLO
 * keyword with its argument ("SIZE 35882577"). Longer lines are judged by this prefix. */
enum { LINT_STATE_LINE_KEEP = 64 };

/* The server's extensions, from its latest 250 reply to EHLO (none after HELO). */
struct lint_caps {
    bool ehlo; /* a 250 EHLO reply is in effect: everything below comes from it */
    bool pipelining, eightbitmime, smtputf8, chunking, starttls, enhanced;
    bool size;           /* SIZE was offered ... */
    uint64_t size_limit; /* ... with this limit; 0: no fixed limit */
};

/* The reply being received (a reply may come in pieces). */
struct lint_reply_scan {
    bool active; /* a reply began and has not ended */
    enum lint_reply_kind kind;
    enum smtp_verb verb;
    unsigned lines;    /* complete lines so far */
    uint64_t line_off; /* offset of the current line's first byte */
    bool in_line;      /* the current line has begun */
    uint8_t line[LINT_STATE_LINE_KEEP];
    size_t kept;     /* bytes kept of the current line */
    uint8_t code[3]; /* the first line's first 3 bytes (fewer: code_len) */
    size_t code_len;
    bool changed_said, enhanced_said; /* once per reply */
    struct lint_caps offered;         /* what this reply offers, if it is a 250 to EHLO */
};

struct lint_state {
    lint_state_finding_fn finding;
    void *ctx;
    struct lint_caps caps; /* in effect now */
    bool greeted;          /* the greeting has arrived whole */
    bool early_said;       /* command-before-greeting was reported (once per session) */
    bool in_burst;         /* commands are being pipelined: pipelining was judged already */
    /* The transaction, from its MAIL command: */
    bool body_8bit;     /* BODY=8BITMIME or BODY=BINARYMIME */
    bool chunking_said; /* chunking-not-offered was reported for this message */
    /* The message being received: */
    bool in_message;
    uint64_t msg_line; /* 1-based line of the next content byte */
    bool eight_said;   /* 8bit-without-8bitmime was reported for this message */
    struct lint_reply_scan reply;
};

/* Starts following a new session: nothing offered, no greeting yet. finding receives every
 * finding with ctx. */
void lint_state_init(struct lint_state *ls, lint_state_finding_fn finding, void *ctx);

/* One client command (not a SASL response), as received: the whole line with its terminator,
 * or the first fragment of an over-long line (later fragments are not fed). offset: its first
 * byte in the client's stream. client_in_tls: the client's connection is in TLS.
 * replies_outstanding: when this line arrived, a reply the client waits for was still due
 * (an earlier command's, or the greeting's). Judge when the bytes arrived, not when a held
 * line was let go: a line the framer held (BLOCKED) behind DATA, AUTH or STARTTLS arrived
 * while that reply was due, so it is pipelined.
 * Command findings carry the offset of the command's first byte. */
void lint_state_command(struct lint_state *ls, uint64_t offset, const uint8_t *line, size_t len,
                        bool client_in_tls, bool replies_outstanding);

/* A reply, or a piece of one: bytes as the client receives them (after smtptap's EHLO edit
 * and fault shaping, smtptap's own answers included, so the capabilities are the ones the
 * client was offered); not replies to smtptap's own commands. offset: the piece's first byte
 * in the server-to-client stream. last: this piece ends the reply (whole replies: always
 * true; smtptap: !smtp_reply.partial). kind and verb describe what the reply answers (verb:
 * of the command; SMTP_VERB_DATA for DATA_END; anything for GREETING, SASL and UNASKED); the
 * first piece's values hold for the whole reply. The greeting is the reply of kind
 * GREETING. Splitting a reply anywhere gives the same findings as feeding it whole. */
void lint_state_reply(struct lint_state *ls, enum lint_reply_kind kind, enum smtp_verb verb,
                      uint64_t offset, const uint8_t *bytes, size_t len, bool last);

/* Message bytes as the client sent them, in any chunks: DATA content dot-stuffed (the
 * terminator may be included), BDAT chunks raw and joined across BDAT commands. offset: the
 * first byte in the client's stream. Splitting content anywhere gives the same findings. */
void lint_state_content(struct lint_state *ls, uint64_t offset, const uint8_t *bytes, size_t len);

/* The message is over: after DATA's terminator, or after the chunk of BDAT ... LAST. The
 * transaction's MAIL parameters are forgotten with it. */
void lint_state_message_end(struct lint_state *ls);

/* The reply kind of a reply paired with p (NULL: it paired with nothing). */
static inline enum lint_reply_kind lint_reply_kind_of(const struct smtp_pending *p)
{
    if (!p) return LINT_REPLY_UNASKED;
    switch (p->kind) {
    case SMTP_PENDING_GREETING: return LINT_REPLY_GREETING;
    case SMTP_PENDING_DATA_END: return LINT_REPLY_DATA_END;
    case SMTP_PENDING_SASL: return LINT_REPLY_SASL;
    default: return LINT_REPLY_COMMAND;
    }
}

#endif
