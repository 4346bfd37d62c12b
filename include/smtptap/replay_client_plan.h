/* replay_client_plan.h - what `smtptap replay-client` sends and how it judges, pure: which
 * recorded steps are the client's own, the body of a recorded message (the capture's lines,
 * or a synthetic body of the recorded size when the capture has only the first lines), and
 * whether a reply differs from the recorded one in class (2xx/3xx/4xx/5xx). */
#ifndef SMTPTAP_REPLAY_CLIENT_PLAN_H
#define SMTPTAP_REPLAY_CLIENT_PLAN_H

#include <stdbool.h>

#include "smtptap/buf.h"
#include "smtptap/capture_read.h"

/* True when step i is something the recorded client sent to the server and replay-client
 * sends again: a command (or SASL line) or a message's end; false for the greeting, TLS
 * facts, unasked replies, and the STARTTLS / repeated EHLO smtptap answered itself. */
bool replay_client_sends(const struct capture_dialog *d, size_t i);

/* The message of a DATA-END step as it goes on the wire: dot-stuffed, CRLF line ends, then
 * ".\r\n". The capture's content lines when it has all of them (-v), else a synthetic body
 * of the recorded size (*synthetic set). */
void replay_client_body(const struct capture_step *s, struct buf *out, bool *synthetic);

/* size octets of synthetic message (headers, then lines of filler), no terminator. */
void replay_client_synthetic(uint64_t size, struct buf *out);

/* True when the two codes are of a different class (a missing reply is code 0). */
bool replay_client_class_differs(int recorded, int got);

#endif
