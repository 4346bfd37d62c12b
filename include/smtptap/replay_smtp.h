/* replay_smtp.h - the recorded server's protocol, pure: client bytes in, the recorded replies
 * out. Each client command is answered with the reply the client got to the matching
 * recorded command, in order; replay_leg.c makes it look like an upstream connection to the
 * session, as sink_leg.c does for the built-in sink.
 *
 * Matching: the next recorded command that smtptap itself did not answer (its STARTTLS, a
 * repeated EHLO after it: the session does that again on the client's side) must have the same
 * verb (and, for AUTH, the same mechanism; a SASL line matches a recorded SASL line); the
 * arguments may differ (addresses, the EHLO name, SIZE=), and so may message bodies: the
 * recorded reply to a message's end is sent after the new message's end. With strict, the
 * command text must be the same, byte for byte. A command with no counterpart gets
 * `451 4.3.0 smtptap replay: no recorded reply for "..."` and a note saying where the new
 * dialog left the recording; the recording's place does not move. A QUIT before the
 * recording's gets the recorded QUIT's reply (the client may leave earlier). */
#ifndef SMTPTAP_REPLAY_SMTP_H
#define SMTPTAP_REPLAY_SMTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "smtptap/capture_read.h"
#include "smtptap/smtp.h"

struct replay_smtp_out {
    /* A reply to send delay_ms after the previous one was due (bytes borrowed). */
    void (*reply)(void *ctx, const uint8_t *bytes, size_t len, double delay_ms);
    /* Where the new dialog left the recording (a "**" line). */
    void (*note)(void *ctx, const char *text);
    void *ctx;
};

struct replay_smtp {
    struct smtp_in in;              /* owned */
    const struct capture_dialog *d; /* not owned; outlives this */
    size_t next;                    /* the first recorded step not yet replayed */
    bool strict;
    double speed; /* 0: no waits; 1: the recorded waits; N: N times faster */
    long bdat;    /* the matched BDAT step whose reply waits for the chunk's end, or -1 */
    bool bdat_unmatched;
    bool quit; /* the recording's last reply (221, 421) was sent: close after it */
    struct replay_smtp_out out;
};

/* Sends the recorded greeting through out. d must outlive the replay. */
void replay_smtp_init(struct replay_smtp *r, const struct capture_dialog *d, bool strict,
                      double speed, const struct replay_smtp_out *out);
void replay_smtp_free(struct replay_smtp *r);
/* Processes client bytes; replies go to out->reply. */
void replay_smtp_input(struct replay_smtp *r, const uint8_t *bytes, size_t len);

#endif
