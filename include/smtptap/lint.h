/* lint.h - pure protocol warnings: bare CR/LF, NUL, over-long lines and SMTP smuggling
 * sequences in commands, replies and message content. Findings are reported through a
 * callback, each with a stable id, where it is, and one human sentence; nothing is changed in
 * the bytes. */
#ifndef SMTPTAP_LINT_H
#define SMTPTAP_LINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One finding. id: a stable rule id ("bare-lf-in-message", ...; README lists them). at: the
 * offending byte's offset from the first byte of the input given to the call that reported it
 * (negative: a byte of an earlier piece of the same message), LINT_AT_NONE for a summary. */
struct lint_finding {
    const char *id;
    int64_t at;
    const char *text;
};
#define LINT_AT_NONE INT64_MIN

typedef void (*lint_report_fn)(void *ctx, const struct lint_finding *f);

/* RFC 5321 4.5.3.1 limits, terminator included. */
enum {
    LINT_COMMAND_LINE_MAX = 512,
    LINT_SASL_LINE_MAX = 12288, /* RFC 4954 4: a SASL response */
    LINT_REPLY_LINE_MAX = 512,
    LINT_TEXT_LINE_MAX = 1000
};

/* One command (or SASL) line as received, terminator included when present. */
void lint_command_line(const uint8_t *line, size_t len, bool sasl, lint_report_fn report,
                       void *ctx);
/* The first piece of a command (or SASL) line longer than the framer's bound max_line, which
 * relays it in pieces (smtp.h): reports the bytes of the piece as lint_command_line does, then
 * what kind of line it is and its RFC limit, e.g. "SASL line longer than 16384 octets (RFC
 * limit 12288), relayed in pieces". */
void lint_long_line(const uint8_t *piece, size_t len, bool sasl, size_t max_line,
                    lint_report_fn report, void *ctx);
/* One complete reply as received (all its lines). */
void lint_reply(const uint8_t *reply, size_t len, lint_report_fn report, void *ctx);

/* Message content, fed in chunks as it streams. Warnings of one kind are reported for the
 * first few occurrences; the rest are counted and summarised by lint_content_end. */
struct lint_content {
    uint64_t line;     /* 1-based line being scanned */
    uint64_t line_len; /* octets of that line so far */
    uint8_t tail[4];   /* the last bytes seen, newest last, for sequences across chunks */
    bool bdat;
    uint32_t counts[5]; /* per finding kind */
    size_t at;          /* offset in the piece being fed of the byte being looked at */
};

void lint_content_begin(struct lint_content *l, bool bdat);
void lint_content_feed(struct lint_content *l, const uint8_t *bytes, size_t len,
                       lint_report_fn report, void *ctx);
void lint_content_end(struct lint_content *l, lint_report_fn report, void *ctx);

#endif
