/* envelope.h - pure: the envelope of the mail transaction in progress, as the server
 * accepted it. MAIL and RCPT lines are kept in order as they go to the server (or are
 * answered by smtptap) and each is committed or dropped by its reply, which comes in the
 * same order; a message's delivery takes a snapshot, and the transaction starts over. */
#ifndef SMTPTAP_ENVELOPE_H
#define SMTPTAP_ENVELOPE_H

#include <stdbool.h>
#include <stddef.h>

#include "smtptap/buf.h"
#include "smtptap/smtp.h"

enum { ENVELOPE_MAX_RCPTS = 1000, ENVELOPE_MAX_PENDING = 4096, ENVELOPE_LINE_MAX = 2048 };

struct envelope {
    struct buf mail;  /* owned: the accepted MAIL line, no CRLF ("" when none) */
    struct buf rcpts; /* owned: the accepted RCPT lines, each ending in a NUL */
    size_t nrcpts;
    struct buf pending; /* owned: MAIL/RCPT lines waiting for their reply, each NUL-ended */
    size_t npending;
};

void envelope_init(struct envelope *e);
void envelope_free(struct envelope *e);
/* A MAIL or RCPT command (the whole line) went up or is answered locally; other verbs are
 * ignored. Lines are cut at ENVELOPE_LINE_MAX; past ENVELOPE_MAX_PENDING waiting lines the
 * oldest are forgotten (their replies then pair with nothing). */
void envelope_command(struct envelope *e, enum smtp_verb verb, const uint8_t *line, size_t len);
/* The reply to the oldest waiting MAIL or RCPT: 2xx commits it (MAIL starts the envelope
 * anew). */
void envelope_reply(struct envelope *e, enum smtp_verb verb, int code);
/* The transaction is over (the message's reply, RSET, a new hello): the accepted envelope
 * is forgotten; lines still waiting for replies are kept. */
void envelope_reset(struct envelope *e);
/* The accepted RCPT lines as an array of strings in out (at most max); returns how many. */
size_t envelope_rcpts(const struct envelope *e, const char **out, size_t max);
/* The accepted MAIL line ("" when none); valid until the next call that changes e. */
const char *envelope_mail(const struct envelope *e);

#endif
