/* fault.h - pure fault rules: parsed from --fault flags and [fault NAME] config sections
 * into one structure, matched against commands by stage, argument glob, occurrence and
 * chance. The session carries out the action; nothing here does I/O. */
#ifndef SMTPTAP_FAULT_H
#define SMTPTAP_FAULT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "smtptap/buf.h"

enum fault_stage {
    FAULT_GREETING,
    FAULT_EHLO,
    FAULT_HELO,
    FAULT_MAIL,
    FAULT_RCPT,
    FAULT_DATA,     /* the reply to the DATA command (354 normally) */
    FAULT_DATA_END, /* the reply after the message's final dot */
    FAULT_BDAT,
    FAULT_AUTH,
    FAULT_STARTTLS,
    FAULT_RSET,
    FAULT_NOOP,
    FAULT_QUIT,
    FAULT_ANY, /* any command (not the greeting, not DATA-END) */
};

enum fault_action {
    FAULT_REPLY,    /* answer with `reply`; the command is not forwarded */
    FAULT_DELAY,    /* hold the real reply delay_ms */
    FAULT_DROP,     /* close the client connection (FIN) instead of replying */
    FAULT_RESET,    /* abort the client connection (RST) */
    FAULT_STALL,    /* never reply */
    FAULT_STRIP,    /* remove capabilities from the EHLO reply */
    FAULT_SLOW,     /* send the real reply at rate_bps bytes per second */
    FAULT_TRUNCATE, /* send the first truncate_bytes bytes of the real reply, then close */
};

enum { FAULT_NAME_MAX = 64, FAULT_GLOB_MAX = 256, FAULT_REPLY_MAX = 2048, FAULT_CAPS_MAX = 256 };

struct fault_rule {
    char name[FAULT_NAME_MAX]; /* section name, or "flag N" for the Nth --fault */
    enum fault_stage stage;
    bool has_stage;
    char match[FAULT_GLOB_MAX]; /* glob (* ?) on the command argument; empty: any */
    uint64_t nth;               /* only the Nth matching command of a session; 0: every */
    double probability;         /* 0 < p <= 1; 1 by default */
    enum fault_action action;
    bool has_action;
    char reply[FAULT_REPLY_MAX]; /* FAULT_REPLY: complete reply lines, each ending CRLF */
    int reply_code;
    uint64_t delay_ms;
    char strip[FAULT_CAPS_MAX]; /* FAULT_STRIP: comma-separated, e.g. "STARTTLS,AUTH=PLAIN" */
    uint64_t rate_bps;
    uint64_t truncate_bytes;
};

struct fault_set {
    struct fault_rule *rules; /* owned */
    size_t count;
    struct fault_set *next_old; /* the server's list of sets loaded by SIGHUP */
};

void fault_set_init(struct fault_set *s);
void fault_set_free(struct fault_set *s);
/* Appends a copy of a finished rule. */
void fault_set_add(struct fault_set *s, const struct fault_rule *r);

/* Parses --fault 'VERB [GLOB]: ACTION' (e.g. "RCPT *@busy.example: reply 450 4.2.0 Busy",
 * "GREETING: reply 421 4.3.2 Go away", "DATA-END: delay 2s"). VERB ignores case; the first
 * colon after VERB ends GLOB, so a flag's glob cannot contain ':' (a config `match` can).
 * index is the flag's 1-based place on the command line: the rule is named "flag N".
 * Returns 0, or -1 with a message in err naming the flag, its column and what was expected:
 *   --fault #2 "RCTP x: drop": unknown stage "RCTP" at column 1; expected one of GREETING, ...
 * Also refuses combinations that cannot work: strip on any stage but EHLO, a glob on
 * GREETING or DATA-END (they have no command argument). */
int fault_parse_flag(const char *text, unsigned index, struct fault_rule *out, char *err,
                     size_t err_size);
/* The same syntax for a rule given some other way (the control API): named name, and an
 * error starts 'rule "TEXT": ' where a flag's starts '--fault #N "TEXT": '; the rest of the
 * message is the flag's, word for word. */
int fault_parse_named(const char *text, const char *name, struct fault_rule *out, char *err,
                      size_t err_size);
/* Appends the rule in the flag syntax ("RCPT *@x: reply 451 4.7.1 Later", "DATA-END: delay
 * 2s"); nth and probability, which a flag cannot say, are left to the caller. */
void fault_rule_describe(const struct fault_rule *r, struct buf *out);
/* [fault NAME] sections: start a rule, set keys (on, match, nth, probability, action), then
 * finish (checks that `on` and `action` were given, and the combination as for a flag; also
 * that nth on GREETING is 1). Keys are case-sensitive like every config key. Return 0, or -1
 * with a message that starts "[fault NAME]" and names the key, the value and what would be
 * accepted (callers prefix the file name). nth >= 1; 0 < probability <= 1. */
void fault_rule_begin(struct fault_rule *r, const char *name);
int fault_rule_set(struct fault_rule *r, const char *key, const char *value, char *err,
                   size_t err_size);
int fault_rule_finish(struct fault_rule *r, char *err, size_t err_size);
/* Parses an ACTION ("reply 450 4.2.0 Busy", "delay 250ms", "drop", "reset", "stall",
 * "strip STARTTLS,AUTH=PLAIN", "slow 10/s", "truncate 5"). A reply code must be 200-599;
 * "\n" in the text (written as the two characters backslash and n) makes a multi-line
 * reply, each line getting the code ("450-first", "450 last"); the text is kept as written
 * (an enhanced status code is not repeated); an empty line, a real CR or LF is refused.
 * strip takes KEYWORD or AUTH=MECHANISM items. On failure r is unchanged and err says what
 * is wrong and what was expected (no position: the value is short). */
int fault_parse_action(struct fault_rule *r, const char *action, char *err, size_t err_size);
const char *fault_stage_name(enum fault_stage s);
const char *fault_action_name(enum fault_action a);

/* Per-session matching state: how often each rule matched, and a generator seeded from the
 * run's seed and the session number, so a session's firings do not depend on timing. */
struct fault_session {
    uint64_t *matches; /* owned, one per rule */
    size_t count;
    uint64_t rng;
};

void fault_session_init(struct fault_session *fs, const struct fault_set *set, uint64_t seed,
                        uint64_t session);
void fault_session_free(struct fault_session *fs);
/* The first rule that fires for this stage and argument, or NULL. stage is the command's
 * own stage (never FAULT_ANY); arg is the command argument as smtp_verb_parse gives it
 * (blanks and a line end are trimmed here). A rule matches when its stage is the command's
 * (ANY: every command, not GREETING nor DATA-END) and its glob matches: for MAIL and RCPT the
 * glob sees the address inside <...> when there is one ("TO:<Bob@Busy.Example> NOTIFY=NEVER"
 * -> "Bob@Busy.Example"), otherwise the whole argument. Every matching rule's count goes up,
 * even after one fired, so nth means "the Nth matching command of the session". A rule
 * whose nth is met (or unset) and whose probability is below 1 draws the generator once;
 * rules after the one that fired draw nothing. fs must come from fault_session_init with
 * this set. */
const struct fault_rule *fault_match(const struct fault_set *set, struct fault_session *fs,
                                     enum fault_stage stage, const uint8_t *arg, size_t arg_len);

/* Case-insensitive (ASCII) glob with * and ? over len bytes; the whole text must match, so
 * "" matches only an empty text (fault_match treats an empty `match` as "any"). */
bool fault_glob(const char *pattern, const uint8_t *text, size_t len);
/* Appends an EHLO reply to out without the capabilities named in caps (comma-separated,
 * any case; a keyword matches whole: SIZE does not remove SIZEX; "AUTH=PLAIN" removes one
 * mechanism from the AUTH line, and the line if none remain; "AUTH" the whole line; both
 * apply to the old "AUTH=LOGIN PLAIN" line too). The first line (the server's name) is kept,
 * each line keeps its own terminator, and the markers are rewritten so that the last line
 * uses "250 " and the others "250-". Returns how many lines and mechanisms were removed; when
 * none, out gets the reply byte for byte. */
unsigned fault_strip_caps(const uint8_t *reply, size_t len, const char *caps, struct buf *out);

#endif
