/* smtp_driver.h - what the smtp.h test drivers (test_smtp_in.c, test_smtp_reply.c) share: byte
 * literals and the failure messages that show the input, the split and the bytes compared. */
#ifndef SMTPTAP_TEST_SMTP_DRIVER_H
#define SMTPTAP_TEST_SMTP_DRIVER_H

#include <stddef.h>
#include <stdint.h>

/* A string literal as (bytes, length), embedded NULs included. */
#define LIT(s)   (const uint8_t *)(s), (sizeof(s) - 1)
#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* Writes an escaped, bounded rendering of bytes to stderr for failure messages. */
void dump_bytes(const char *label, const uint8_t *b, size_t n);
/* Describes where an input was cut ("2 cut(s): 3 7") into out. */
void describe_split(char *out, size_t outsz, const size_t *cuts, size_t ncuts);

#endif
