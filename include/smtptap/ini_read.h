/* ini_read.h - pure reader of the INI syntax smtptap's configuration file is written in:
 * [section] headers, "key = value" (or "key: value") lines, comment lines starting with ';' or
 * '#', inline comments starting with ';' after a blank, indented continuation lines, a UTF-8
 * byte order mark. It is inih's syntax (smtptap read its files with libinih before) without
 * inih's limits: Debian's libinih cuts section names at 49 characters and lines at 199, which
 * turned a long [fault NAME] or a long reply into a false error. Here lines and names may have
 * any length. No I/O, no allocation, no globals. */
#ifndef SMTPTAP_INI_READ_H
#define SMTPTAP_INI_READ_H

#include <stdbool.h>
#include <stddef.h>

/* Where a header or value is: its 1-based line, and whether the line is a continuation. */
struct ini_at {
    int line;
    bool continued; /* an indented line after a value: it continues that value's key */
};

/* Called for each section header with key and value NULL (section: the text between '[' and
 * the first ']', untrimmed), then for each value with the section it is in ("" before the
 * first header), the key and the value, both trimmed of blanks and without an inline comment.
 * A continuation line (indented, after a value) repeats the key with the line as its value,
 * blanks trimmed, an inline comment included (as inih does), and at->continued set.
 * The strings are valid during the call only. Returns nonzero to go on, 0 when it refused
 * the line (the reader records that line as the error and goes on). */
typedef int (*ini_read_fn)(void *ctx, const struct ini_at *at, const char *section, const char *key,
                           const char *value);

/* Reads text[0..len) (lines end with LF, CRLF or the end of the text) and calls fn for every
 * header and value in order. The text is cut into strings in place (blanks, comments and line
 * ends become NULs, and text[len] too: text must have len + 1 bytes). Returns 0 when every line was
 * read and accepted, else the 1-based number of the first line that was not: a NUL byte in
 * it, a header without ']', a line without '=' or ':', or a line fn refused. Reading stops
 * there: fn is called for no line after it. */
int ini_read(char *text, size_t len, ini_read_fn fn, void *ctx);

#endif
