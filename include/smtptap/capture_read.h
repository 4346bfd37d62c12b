/* capture_read.h - the capture reader, pure: the text of a jsonl capture (one session, as
 * `-d DIR --format jsonl` writes it) in, the dialog's steps out: the greeting, each command
 * with the reply the client got, message ends, TLS starts. Fed in pieces of any size; the
 * result does not depend on where the pieces were cut. diff, replay and replay-client read
 * captures through it. */
#ifndef SMTPTAP_CAPTURE_READ_H
#define SMTPTAP_CAPTURE_READ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum capture_step_kind {
    STEP_GREETING,    /* the server's first reply */
    STEP_COMMAND,     /* a client command (or SASL line) and the reply to it */
    STEP_DATA_END,    /* the end of a DATA message and the reply to it */
    STEP_TLS,         /* a TLS handshake completed (client or upstream leg) */
    STEP_UNSOLICITED, /* a reply that no command asked for (a 421 mid-session) */
};

struct capture_step {
    enum capture_step_kind kind;
    unsigned line; /* the capture line the step starts on (1-based) */
    char *command; /* STEP_COMMAND: the line as sent, no CRLF, NUL-terminated; else NULL */
    size_t command_len;
    uint8_t *reply; /* the reply the client got (CRLFs kept), NULL when none came */
    size_t reply_len;
    int code;          /* the reply's code, 0 when none */
    bool local;        /* smtptap answered (a fault's reply, its STARTTLS, a repeated EHLO) */
    bool fault;        /* ... by a fault rule's reply */
    bool tls;          /* the client's connection was in TLS */
    unsigned group;    /* pipelining: commands sent before the previous reply share a group */
    double t, t_reply; /* seconds since the session began: the step, its reply */
    double latency_ms; /* the server's reply latency, -1 when not recorded */
    /* STEP_DATA_END: the message (content lines: all of them only with a -v capture) */
    uint64_t msg_size, msg_lines, content_lines;
    uint8_t *body; /* the content lines joined with CRLF, each line ending in CRLF */
    size_t body_len;
    /* STEP_TLS */
    char tls_leg[16], tls_version[32], tls_cipher[80], tls_verify[160];
};

struct capture_dialog {
    struct capture_step *steps;
    size_t n, cap;
    uint64_t session;
    bool ended; /* the session's "end" event was read */
};

struct capture_reader;

/* A reader for one capture; capture_reader_free releases it and its dialog. */
struct capture_reader *capture_reader_new(void);
void capture_reader_free(struct capture_reader *r);
/* Reads the next piece of the capture. 0, or -1 once the capture is found broken (every
 * later call returns -1 too; capture_reader_error says why). */
int capture_reader_feed(struct capture_reader *r, const void *bytes, size_t len);
/* The capture is complete: reads its last line if it has no LF, and checks that the
 * session ended. 0, or -1. */
int capture_reader_finish(struct capture_reader *r);
/* "line 12: not JSON: ..." for a broken capture, else NULL. */
const char *capture_reader_error(const struct capture_reader *r);
/* The line the error is about (0: none). */
unsigned capture_reader_error_line(const struct capture_reader *r);
/* The steps read so far (all of them after a successful finish). Owned by the reader. */
const struct capture_dialog *capture_reader_dialog(const struct capture_reader *r);

/* The capture file at path, read whole (capture_read_file.c: the I/O). NULL with err (size
 * errlen) set to "PATH: line N: ..." for a broken capture, or "PATH: <errno text>" with
 * *unreadable set when the file cannot be read. The caller frees the reader. */
struct capture_reader *capture_read_file(const char *path, char *err, size_t errlen,
                                         bool *unreadable);

/* The upper-cased verb of a command line ("MAIL" for "mail from:<a>"), at most size-1 bytes. */
void capture_verb(const char *command, char *out, size_t size);
/* The reply's enhanced status code ("4.2.0") when its first line has one, else "". */
void capture_enhanced_code(const uint8_t *reply, size_t len, char *out, size_t size);

#endif
