/* tls_int.h - what tls.c and tls_bad.c share and no one else: how a leaf is made (a recipe
 * that tls_bad.c bends per --client-cert mode) and the CA certificate maker. */
#ifndef SMTPTAP_TLS_INT_H
#define SMTPTAP_TLS_INT_H

#include <stdbool.h>

#include "smtptap/client_cert.h"
#include "smtptap/tls.h"

struct leaf_recipe {
    EVP_PKEY *key;        /* the leaf's key (borrowed) */
    X509 *issuer;         /* the CA that signs it; NULL: the leaf signs itself */
    EVP_PKEY *issuer_key; /* that CA's key */
    X509 *chain;          /* sent after the leaf, or NULL */
    long from, until;     /* validity, in seconds from now */
    const EVP_MD *md;     /* signature digest */
    const char *name;     /* the name written into the SAN (and CN without an upstream) */
    X509 *upstream;       /* copy its subject and SANs, or NULL */
    bool low_security;    /* the serving SSL needs security level 0 */
};

/* A self-signed CA certificate for key named CN=cn, valid ten years. NULL on failure. */
X509 *tls_ca_cert_new(EVP_PKEY *key, const char *cn);

/* Bends the good recipe r (filled by tls.c) into mode's. 0, or -1 with a reason in err. */
int tls_bad_recipe(struct tls_ca *ca, enum client_cert mode, struct leaf_recipe *r, char *err,
                   size_t err_size);
/* Frees the bad-certificate material of ca. */
void tls_bad_free(struct tls_ca *ca);

#endif
