/* verdict.h - what a client did with what it was shown: a bad certificate (--client-cert) or
 * a withheld STARTTLS (--client-starttls strip). Pure: the session gathers the facts as they
 * happen, and this module turns them into one verdict at the session's end. */
#ifndef SMTPTAP_VERDICT_H
#define SMTPTAP_VERDICT_H

#include <stdbool.h>
#include <stddef.h>

#include "smtptap/client_cert.h"

enum { VERDICT_TEXT_MAX = 600, VERDICT_USER_MAX = 128, VERDICT_MECH_MAX = 32 };

/* What the session saw, filled in as it goes. Zeroed: nothing happened yet. */
struct verdict_facts {
    enum client_cert cert; /* the certificate shown (if TLS got that far) */
    bool strip;            /* STARTTLS was withheld (--client-starttls strip, plain listener) */
    bool implicit_tls;     /* a tls: listener: the handshake came first */
    bool starttls_sent;    /* the client asked for STARTTLS */
    bool tls_started;      /* a handshake began (STARTTLS answered, or implicit TLS) */
    bool tls_up;           /* the handshake completed: the client took the certificate */
    bool tls_failed;       /* the handshake failed */
    int alert;             /* the fatal TLS alert the client sent (SSL_AD_*), 0 none */
    bool auth;             /* the client sent AUTH */
    bool auth_in_tls;
    char auth_mech[VERDICT_MECH_MAX]; /* "PLAIN", as written, upper-cased */
    char auth_user[VERDICT_USER_MAX]; /* the user when known and shown (--decode-auth), or "" */
    bool auth_user_final;             /* auth_user is the recorded AUTH's: a later one came */
    bool mail;                        /* the client sent MAIL FROM */
    bool mail_in_tls;
    unsigned rcpts; /* RCPT commands it sent */
    bool body;      /* it sent message content (DATA or BDAT) */
};

enum verdict_action {
    VERDICT_REFUSED,   /* refused at the handshake */
    VERDICT_GAVE_UP,   /* went away without credentials or mail */
    VERDICT_SENT_MAIL, /* sent mail (an envelope, maybe a body) but no credentials */
    VERDICT_SENT_AUTH, /* sent credentials */
};

struct verdict {
    enum verdict_action action;
    bool good;                   /* the client did what a careful client does */
    bool credentials_exposed;    /* AUTH went where it should not have */
    bool mail_exposed;           /* MAIL went where it should not have */
    char text[VERDICT_TEXT_MAX]; /* the "==" line's words */
};

/* True when the session had something to judge: a bad certificate was shown (or would have
 * been, had the client asked for TLS), or STARTTLS was withheld. */
bool verdict_applies(const struct verdict_facts *f);
/* The verdict on f (verdict_applies(f) assumed). */
void verdict_of(const struct verdict_facts *f, struct verdict *out);
/* "refused at handshake", "gave up", "sent mail", "sent credentials". */
const char *verdict_action_words(enum verdict_action a);
/* A stable id for structured formats: "refused", "gave-up", "sent-mail", "sent-credentials". */
const char *verdict_action_id(enum verdict_action a);
/* The RFC 8446 name of a TLS alert ("certificate_expired", "unknown_ca"), or NULL. */
const char *verdict_alert_name(int alert);

#endif
