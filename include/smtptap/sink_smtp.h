/* sink_smtp.h - the built-in server's protocol, pure: client bytes in, reply bytes out.
 * It accepts every message (and, for now, any credentials); sink_leg.c makes it look like an
 * upstream connection to the session. */
#ifndef SMTPTAP_SINK_SMTP_H
#define SMTPTAP_SINK_SMTP_H

#include <stdbool.h>
#include <stdint.h>

#include "smtptap/buf.h"
#include "smtptap/sink_auth.h"
#include "smtptap/smtp.h"

enum { SINK_MAX_SIZE = 104857600 };

enum sink_auth_step {
    SINK_AUTH_NONE,
    SINK_AUTH_PLAIN,
    SINK_AUTH_LOGIN_USER,
    SINK_AUTH_LOGIN_PASS,
    SINK_AUTH_CRAM,
    SINK_AUTH_XOAUTH2,
    SINK_AUTH_XOAUTH2_FAILED, /* the JSON error challenge was sent; 535 follows */
};

struct sink_smtp {
    struct smtp_in in; /* owned */
    struct buf out;    /* owned: reply bytes not yet taken by the leg */
    char host[128];
    uint64_t session;
    bool greeted; /* HELO or EHLO seen */
    bool in_mail; /* MAIL accepted */
    unsigned rcpts;
    bool bdat_active; /* a BDAT transaction is open (no DATA allowed) */
    bool bdat_failed; /* the current BDAT chunk is discarded */
    bool bdat_last;
    uint64_t size;  /* of the message being received */
    uint64_t chunk; /* of the current BDAT chunk */
    uint64_t messages;
    bool authenticated;
    enum sink_auth_step auth;
    char login_user[SINK_CRED_MAX];
    char challenge[200];            /* CRAM-MD5 */
    const struct sink_users *users; /* not owned; empty: anyone is accepted */
    bool quit;                      /* QUIT answered: the sink closes after its output */
};

/* Appends the greeting to s->out. users must outlive the sink. */
void sink_smtp_init(struct sink_smtp *s, const char *host, uint64_t session,
                    const struct sink_users *users);
void sink_smtp_free(struct sink_smtp *s);
/* Processes client bytes; replies are appended to s->out. */
void sink_smtp_input(struct sink_smtp *s, const uint8_t *bytes, size_t len);

#endif
