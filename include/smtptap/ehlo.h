/* ehlo.h - pure editing of EHLO replies: does it advertise a keyword, and the same reply with
 * one more capability (the continuation markers kept valid); which lines an edit changed. Removing
 * capabilities is fault_strip_caps (fault.h). */
#ifndef SMTPTAP_EHLO_H
#define SMTPTAP_EHLO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "smtptap/buf.h"

/* True when a line after the first starts with keyword (case-insensitive, whole word). */
bool ehlo_has(const uint8_t *reply, size_t len, const char *keyword);
/* Appends to out the reply with "CODE-keyword" inserted after its first line. */
void ehlo_add(const uint8_t *reply, size_t len, const char *keyword, struct buf *out);
/* Appends to out a one-line reply with the code and text of the reply's first line
 * ("250-mx.example says hi" becomes "250 mx.example says hi\r\n"): what a HELO gets. */
void ehlo_as_one_line(const uint8_t *reply, size_t len, struct buf *out);

/* Comparing a reply with smtptap's edit of it, line by line: a line's text is what follows
 * its "NNN-" or "NNN " (the continuation mark and the line end do not count, so a line that
 * only became the last one is the same line). */
/* True when some line of reply has this text. */
bool ehlo_has_text(const uint8_t *reply, size_t len, const uint8_t *text, size_t n);
typedef void (*ehlo_line_fn)(void *ctx, const uint8_t *text, size_t n);
/* Calls fn, in order, with the text of each line of a that is on no line of b: the lines an
 * edit added (a the edit, b the server's reply), or removed (the other way round). */
void ehlo_lines_not_in(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen,
                       ehlo_line_fn fn, void *ctx);

#endif
