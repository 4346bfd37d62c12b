/* message.h - pure view of one message as it streams through DATA or BDAT: the lines to
 * show in a transcript (up to a bound), and the size, line count and SHA-256 of the message
 * as delivered (dot-unstuffed, without the DATA terminator). */
#ifndef SMTPTAP_MESSAGE_H
#define SMTPTAP_MESSAGE_H

#include <openssl/evp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "smtptap/buf.h"

enum { MESSAGE_SHOW_LINE_MAX = 998 };

typedef void (*message_line_fn)(void *ctx, const uint8_t *line, size_t len);

struct message_view {
    uint64_t size;      /* octets delivered so far (after unstuffing) */
    uint64_t lines;     /* complete lines */
    unsigned shown;     /* lines passed to the callback */
    unsigned max_shown; /* 0: no bound */
    bool bdat;          /* no dot-stuffing, no terminator */
    bool at_line_start; /* the next byte may be a stuffed dot (after CRLF) */
    bool mid_line;      /* the last delivered byte was not an LF */
    uint8_t hold[5];    /* DATA: trailing bytes that may be the start of CRLF.CRLF */
    size_t held;
    struct buf line; /* owned: the line being collected for display */
    EVP_MD_CTX *sha; /* owned */
    /* Optional, set after message_view_begin: every delivered byte (unstuffed DATA, BDAT
     * chunks), in order, as it is hashed. */
    message_line_fn on_body;
    void *body_ctx;
};

struct message_summary {
    uint64_t size, lines;
    unsigned hidden_lines;
    char sha256_hex[65];
};

void message_view_begin(struct message_view *m, bool bdat, unsigned max_shown);
/* Feeds content as received on the wire (DATA: stuffed, the last chunk ends with the
 * terminator). Lines to show go to show(ctx, line, len) without their terminator. */
void message_view_feed(struct message_view *m, const uint8_t *bytes, size_t len,
                       message_line_fn show, void *ctx);
/* Ends the message (a last line without LF is shown through show, which may be NULL, cut at
 * MESSAGE_SHOW_LINE_MAX octets like every shown line); frees what the view owns. */
void message_view_end(struct message_view *m, struct message_summary *out, message_line_fn show,
                      void *ctx);
/* Frees without a summary (a message cut short). */
void message_view_abort(struct message_view *m);

#endif
