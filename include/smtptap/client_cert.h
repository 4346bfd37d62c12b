/* client_cert.h - the kinds of certificate smtptap can show the client (--client-cert MODE):
 * the good one and the bad ones a careful client must refuse. Names and words only; the
 * certificates themselves are minted in tls_bad.c. Pure. */
#ifndef SMTPTAP_CLIENT_CERT_H
#define SMTPTAP_CLIENT_CERT_H

#include <stdbool.h>

enum client_cert {
    CLIENT_CERT_GOOD,          /* signed by smtptap's CA for the name asked (the default) */
    CLIENT_CERT_SELF_SIGNED,   /* a leaf that signs itself: no CA at all */
    CLIENT_CERT_UNTRUSTED_CA,  /* signed by a throwaway CA, made in memory per process */
    CLIENT_CERT_EXPIRED,       /* validity ended yesterday */
    CLIENT_CERT_NOT_YET_VALID, /* validity starts in 30 days */
    CLIENT_CERT_WRONG_HOST,    /* the SAN and CN name wrong-host.invalid */
    CLIENT_CERT_WEAK_KEY,      /* an RSA 1024 key */
    CLIENT_CERT_SHA1,          /* signed with SHA-1 */
    CLIENT_CERT_COUNT,
};

/* The host name a wrong-host certificate is made for. */
#define CLIENT_CERT_WRONG_HOST_NAME "wrong-host.invalid"

/* The mode's name as the flag takes it ("not-yet-valid"); NULL out of range. */
const char *client_cert_name(enum client_cert mode);
/* The certificate in words, after "the" or "a"/"an": "expired certificate",
 * "self-signed certificate", "certificate for the wrong host". */
const char *client_cert_words(enum client_cert mode);
/* "a" or "an" for client_cert_words(mode). */
const char *client_cert_article(enum client_cert mode);
/* Parses a name; false when it is none of them. */
bool client_cert_parse(const char *text, enum client_cert *out);
/* "good, self-signed, untrusted-ca, ..., sha1": the accepted values, for error messages. */
const char *client_cert_choices(void);

#endif
