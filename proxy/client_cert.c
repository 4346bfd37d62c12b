/* client_cert.c - names and words of the certificate modes (client_cert.h). Pure. */
#include "smtptap/client_cert.h"

#include <stddef.h>
#include <string.h>

static const struct {
    const char *name, *words, *article;
} modes[CLIENT_CERT_COUNT] = {
    [CLIENT_CERT_GOOD] = {"good", "certificate signed by smtptap's CA", "a"},
    [CLIENT_CERT_SELF_SIGNED] = {"self-signed", "self-signed certificate", "a"},
    [CLIENT_CERT_UNTRUSTED_CA] = {"untrusted-ca", "certificate from an untrusted CA", "a"},
    [CLIENT_CERT_EXPIRED] = {"expired", "expired certificate", "an"},
    [CLIENT_CERT_NOT_YET_VALID] = {"not-yet-valid", "not yet valid certificate", "a"},
    [CLIENT_CERT_WRONG_HOST] = {"wrong-host", "certificate for the wrong host", "a"},
    [CLIENT_CERT_WEAK_KEY] = {"weak-key", "certificate with a weak key (RSA 1024)", "a"},
    [CLIENT_CERT_SHA1] = {"sha1", "SHA-1 signed certificate", "a"},
};

const char *client_cert_name(enum client_cert mode)
{
    return (unsigned)mode < CLIENT_CERT_COUNT ? modes[mode].name : NULL;
}

const char *client_cert_words(enum client_cert mode)
{
    return (unsigned)mode < CLIENT_CERT_COUNT ? modes[mode].words : "certificate";
}

const char *client_cert_article(enum client_cert mode)
{
    return (unsigned)mode < CLIENT_CERT_COUNT ? modes[mode].article : "a";
}

bool client_cert_parse(const char *text, enum client_cert *out)
{
    for (int i = 0; i < CLIENT_CERT_COUNT; i++)
        if (text && strcmp(text, modes[i].name) == 0) {
            *out = (enum client_cert)i;
            return true;
        }
    return false;
}

const char *client_cert_choices(void)
{
    return "good, self-signed, untrusted-ca, expired, not-yet-valid, wrong-host, weak-key or sha1";
}
