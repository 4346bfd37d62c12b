/* capture_diff.h - two recorded dialogs compared, pure: where they diverge (commands, reply
 * codes and enhanced codes, EHLO capabilities, TLS facts, reply times beyond a threshold),
 * as a short aligned table. `smtptap diff` prints it. */
#ifndef SMTPTAP_CAPTURE_DIFF_H
#define SMTPTAP_CAPTURE_DIFF_H

#include <stddef.h>

#include "smtptap/buf.h"
#include "smtptap/capture_read.h"

struct capture_diff_options {
    const char *name_a, *name_b; /* how the summary names the captures */
    double time_threshold_ms;    /* reply latencies further apart than this differ */
};

/* Appends the table and a summary line to out. Returns how many rows differ (0: the same
 * dialog). */
size_t capture_diff(const struct capture_dialog *a, const struct capture_dialog *b,
                    const struct capture_diff_options *o, struct buf *out);

/* A command as diff compares it: the verb upper-cased, blanks collapsed, MAIL/RCPT
 * addresses lower-cased, SIZE= values and AUTH payloads masked ("AUTH PLAIN ..."). A SASL
 * line (sasl true) is "(SASL)". */
void capture_normalize_command(const char *command, char *out, size_t size);

/* The capability keywords of an EHLO reply, upper-cased, one per line after the first, each
 * followed by '\n' ("PIPELINING\nSIZE\n"). */
void capture_capabilities(const uint8_t *reply, size_t len, struct buf *out);

#endif
