/* watch.h - watching many sessions on the terminal, pure (no I/O): which sessions the live
 * transcript shows (--only CLIENT-GLOB, --session N) and the one line that sums up a finished
 * session (--summary), gathered from its events. The writer that uses them is
 * watch_writer.h; captures always record every session. */
#ifndef SMTPTAP_WATCH_H
#define SMTPTAP_WATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "smtptap/buf.h"
#include "smtptap/events.h"

enum {
    WATCH_MAX_GLOBS = 16,
    WATCH_GLOB_MAX = 128, /* bytes of one glob, its NUL included */
    WATCH_MAX_SESSIONS = 64,
    WATCH_NAME_MAX = 64, /* bytes of a client's hello name kept for the summary */
    WATCH_CODES_MAX = 16,
};

/* The sessions to show: one whose number is listed, or whose client matches a glob. With
 * neither list, every session. */
struct watch_filter {
    char globs[WATCH_MAX_GLOBS][WATCH_GLOB_MAX];
    size_t nglobs;
    uint64_t sessions[WATCH_MAX_SESSIONS];
    size_t nsessions;
};

/* Adds a comma-separated list of globs (* and ?, any case). Returns NULL, or what would have
 * been accepted, for a "FLAG: invalid value ...; expected ..." message (f is unchanged). */
const char *watch_add_globs(struct watch_filter *f, const char *list);
/* Adds a comma-separated list of session numbers (1 or more). NULL or what is accepted. */
const char *watch_add_sessions(struct watch_filter *f, const char *list);
/* True when some glob or number was given: not every session is shown. */
bool watch_filters(const struct watch_filter *f);
/* True when the session's number is listed. */
bool watch_picks_number(const struct watch_filter *f, uint64_t session);
/* True when a glob matches the whole text (a client's address, or its hello name). */
bool watch_picks_text(const struct watch_filter *f, const char *text);
/* True when a glob matches the client's address "IP:PORT" ("[IPv6]:PORT") or its IP alone. */
bool watch_picks_address(const struct watch_filter *f, const char *address);

/* The name a client's EHLO or HELO command gives, NUL-terminated in out (bytes that are not
 * printable ASCII become '?'); false for any other command. */
bool watch_hello_name(const uint8_t *command, size_t len, char *out, size_t size);

/* What one session's events said, for its summary line. */
struct watch_summary {
    uint64_t session;
    uint64_t t_ns; /* when its last event came: its duration */
    char client[64], upstream[64];
    char helo[WATCH_NAME_MAX];             /* the first EHLO/HELO name; "" before one ("-" shown) */
    char client_tls[32], upstream_tls[32]; /* "-" without TLS */
    uint64_t commands, messages, faults, lints;
    int codes[WATCH_CODES_MAX]; /* the server's reply to each message's end */
    size_t ncodes;
    bool more_codes;    /* more messages than codes[] holds */
    int last_code;      /* the last reply the client got */
    bool replied_after; /* ... and it came after the last message's end */
    bool ended;         /* EV_END was fed */
};

/* upstream: what the summary names when no upstream connects ("sink", "-"). */
void watch_summary_init(struct watch_summary *w, uint64_t session, const char *upstream);
void watch_summary_feed(struct watch_summary *w, const struct event *ev);
/* Appends the summary line, e.g.
 * "#3 +1.204 == summary 127.0.0.1:40312 -> 127.0.0.1:2526 helo=laptop cmds=9 msgs=1
 *  codes=250,221 tls=c:TLSv1.3,u:- faults=0 lint=2\n" (one line). */
void watch_summary_format(const struct watch_summary *w, struct buf *out);

#endif
