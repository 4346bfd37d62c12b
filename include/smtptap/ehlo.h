/* ehlo.h - pure editing of EHLO replies: does it advertise a keyword, and the same reply with
 * one more capability (the continuation markers kept valid). Removing capabilities is
 * fault_strip_caps (fault.h). */
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

#endif
