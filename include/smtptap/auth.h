/* auth.h - pure SASL decoding for the transcript: follows one AUTH exchange through its
 * steps, fed the client's lines and the server's replies that the session already pairs,
 * and says what each line means and which of its bytes are secret. No I/O, no globals.
 * Mechanisms: PLAIN (RFC 4616), LOGIN, CRAM-MD5 (RFC 2195), XOAUTH2, OAUTHBEARER (RFC 7628),
 * anything else as raw decoded bytes. */
#ifndef SMTPTAP_AUTH_H
#define SMTPTAP_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum auth_mech {
    AUTH_MECH_NONE = 0,
    AUTH_MECH_PLAIN,
    AUTH_MECH_LOGIN,
    AUTH_MECH_CRAM_MD5,
    AUTH_MECH_XOAUTH2,
    AUTH_MECH_OAUTHBEARER,
    AUTH_MECH_OTHER,
};

enum { AUTH_TEXT_MAX = 1024, AUTH_USER_MAX = 256, AUTH_FIELDS_MAX = 8 };

/* One decoded value of a line, for structured output (jsonl): where it is in the view's two
 * texts, as they show it (printable, escaped, without its quotes). */
struct auth_field {
    char name[32];     /* authzid authcid password user digest response token auth message field
                          prompt challenge data, or an XOAUTH2/OAUTHBEARER key as the client sent
                          it (escaped) */
    bool secret;       /* the redacted text shows a mark instead */
    size_t off, len;   /* in text */
    size_t roff, rlen; /* in redacted: the same value, or its mark ("<redacted>") */
};

/* What one line of the exchange means. Texts are NUL-terminated, printable (non-printable
 * bytes escaped as \xNN), and never longer than AUTH_TEXT_MAX - 1. */
struct auth_view {
    bool decoded;                 /* `text` is set: show it as a "##" line */
    char text[AUTH_TEXT_MAX];     /* with secrets, e.g. AUTH PLAIN authzid="" authcid="alice"
                                     password="secret" */
    char redacted[AUTH_TEXT_MAX]; /* the same with every secret masked, its length not told:
                                     <redacted>, <redacted token>, <redacted digest>; only
                                     data of a mechanism smtptap does not decode keeps its
                                     size, <redacted N bytes> */
    /* The span of the raw line (as given, terminator excluded) that carries a secret and
     * must be masked when redacting: usually the whole base64 payload. len 0: none. */
    size_t secret_off, secret_len;
    char problem[256]; /* non-empty: a "**" lint finding (invalid base64, missing NUL, ...) */
    /* The same, structured: */
    const char *step;    /* "command" (the AUTH line), "response" (a client line),
                            "challenge" (a 334), "outcome" (the final reply), or
                            "unexpected" (a reply that is neither); static strings */
    const char *outcome; /* "outcome": accepted, rejected, cancelled, temporary failure,
                            syntax error, ...; NULL otherwise */
    int code;            /* "outcome": the reply code */
    unsigned nfields;    /* the values shown, in order (those that fit in the texts) */
    struct auth_field fields[AUTH_FIELDS_MAX];
};

struct auth_decoder {
    enum auth_mech mech;
    char mech_name[32]; /* as the client wrote it, upper-cased */
    bool active;        /* between AUTH and its final reply */
    unsigned step;      /* client lines seen after the AUTH command */
    char user[AUTH_USER_MAX];
    bool oauth_error; /* the server sent an error challenge (XOAUTH2/OAUTHBEARER) */
    bool has_ir;      /* the AUTH command carried an initial response */
    bool cancelled;   /* the client sent "*" */
};

void auth_init(struct auth_decoder *a);
/* The client's AUTH command line (terminator optional). Starts an exchange. */
void auth_on_command(struct auth_decoder *a, const uint8_t *line, size_t len,
                     struct auth_view *out);
/* A client SASL response line (after a 334); "*" cancels, "=" is an empty response. */
void auth_on_client_line(struct auth_decoder *a, const uint8_t *line, size_t len,
                         struct auth_view *out);
/* The server's reply to the AUTH command or to a SASL line: a 334 challenge is decoded; a
 * final reply (2xx/4xx/5xx) ends the exchange with a summary, e.g.
 * "AUTH PLAIN for alice: accepted (235 2.7.0)" or "AUTH LOGIN for bob: rejected (535 5.7.8)".
 * `reply` is the whole reply as received. */
void auth_on_reply(struct auth_decoder *a, int code, const uint8_t *reply, size_t len,
                   struct auth_view *out);

/* Decodes strict RFC 4648 base64 (padded, no blanks) into out; "=" alone is an empty
 * response (RFC 4954). Returns the decoded length, or -1 when p is not such base64 or does
 * not fit in out_size bytes. */
long auth_b64_decode(const uint8_t *p, size_t n, uint8_t *out, size_t out_size);

/* Writes raw with raw[off..off+len) replaced by "<redacted>" (its length is not told: the
 * length of base64 tells the secret's) into out (size out_size, NUL-terminated; the
 * terminator of raw is kept). Returns the bytes written. */
size_t auth_redact_line(const uint8_t *raw, size_t raw_len, size_t off, size_t len, char *out,
                        size_t out_size);

#endif
