/* utf8.h - pure: strict UTF-8 decoding (no overlong forms, no surrogates, nothing above
 * U+10FFFF), shared by the text transcript and the jsonl writer. */
#ifndef SMTPTAP_UTF8_H
#define SMTPTAP_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* Length of the valid multi-byte sequence at p (a lead byte 0xC2..0xF4) within n bytes, with
 * its code point in *cp; 0 when there is none (ASCII included: the caller handles that). */
size_t utf8_sequence(const uint8_t *p, size_t n, uint32_t *cp);

#endif
