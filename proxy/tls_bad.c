/* tls_bad.c - the certificates a careful client must refuse (--client-cert MODE): how each
 * mode bends the good leaf's recipe, and the material they need (an RSA 1024 key, a
 * throwaway CA that lives in memory only), made on first use. */
#include <openssl/err.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <unistd.h>

#include "tls_int.h"

enum { DAY = 24 * 60 * 60 };

static const char *reason(void)
{
    unsigned long e = ERR_peek_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    ERR_clear_error();
    return r ? r : "unknown OpenSSL error";
}

static EVP_PKEY *weak_key(struct tls_ca *ca)
{
    if (!ca->weak_key) ca->weak_key = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
    return ca->weak_key;
}

/* A CA of its own, per process: made here, never written, trusted by no one. */
static X509 *rogue_ca(struct tls_ca *ca)
{
    if (ca->rogue_ca) return ca->rogue_ca;
    if (!ca->rogue_key) ca->rogue_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    char cn[64];
    snprintf(cn, sizeof cn, "smtptap untrusted test CA %ld", (long)getpid());
    if (ca->rogue_key) ca->rogue_ca = tls_ca_cert_new(ca->rogue_key, cn);
    return ca->rogue_ca;
}

int tls_bad_recipe(struct tls_ca *ca, enum client_cert mode, struct leaf_recipe *r, char *err,
                   size_t err_size)
{
    switch (mode) {
    case CLIENT_CERT_GOOD:
    case CLIENT_CERT_COUNT: return 0;
    case CLIENT_CERT_SELF_SIGNED:
        r->issuer = r->chain = NULL;
        r->issuer_key = NULL;
        return 0;
    case CLIENT_CERT_UNTRUSTED_CA:
        if (!rogue_ca(ca)) break;
        r->issuer = r->chain = ca->rogue_ca;
        r->issuer_key = ca->rogue_key;
        return 0;
    case CLIENT_CERT_EXPIRED: r->from = -60L * DAY, r->until = -DAY; return 0;
    case CLIENT_CERT_NOT_YET_VALID: r->from = 30L * DAY, r->until = 400L * DAY; return 0;
    case CLIENT_CERT_WRONG_HOST:
        r->name = CLIENT_CERT_WRONG_HOST_NAME;
        r->upstream = NULL; /* its names would be right */
        return 0;
    case CLIENT_CERT_WEAK_KEY:
        if (!(r->key = weak_key(ca))) break;
        r->low_security = true;
        return 0;
    case CLIENT_CERT_SHA1:
        r->md = EVP_sha1();
        r->low_security = true;
        return 0;
    }
    snprintf(err, err_size, "cannot make the %s certificate's material: %s", client_cert_name(mode),
             reason());
    return -1;
}

void tls_bad_free(struct tls_ca *ca)
{
    EVP_PKEY_free(ca->weak_key);
    EVP_PKEY_free(ca->rogue_key);
    X509_free(ca->rogue_ca);
    ca->weak_key = ca->rogue_key = NULL;
    ca->rogue_ca = NULL;
}
