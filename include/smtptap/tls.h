/* tls.h - smtptap's TLS material, without sockets: its own CA (created on first use, 0700
 * directory, 0600 key), leaf certificates minted per name and cached, the SSL_CTX for each
 * side (client-facing server context, upstream client context with verification), the NSS
 * key log, and words for what happened in a handshake. The memory-BIO pump lives in
 * tls_pump.c. */
#ifndef SMTPTAP_TLS_H
#define SMTPTAP_TLS_H

#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdbool.h>
#include <stddef.h>

#include "smtptap/client_cert.h"

enum { TLS_ERR_MAX = 512, TLS_LEAF_CACHE_MAX = 1024 };

struct tls_leaf {
    char name[256];             /* SNI, upstream host name or IP literal */
    unsigned char upstream[32]; /* SHA-256 of the upstream certificate copied; zero if none */
    X509 *cert;                 /* owned */
    int mode;                   /* enum client_cert it was minted for */
    EVP_PKEY *key;              /* borrowed from the tls_ca: the leaf's private key */
    X509 *chain;                /* borrowed from the tls_ca: the CA sent after it, or NULL */
    bool low_security;          /* weak-key, sha1: the SSL serving it needs security level 0 */
};

struct tls_ca {
    char dir[4096];
    X509 *cert;              /* owned: the CA certificate */
    EVP_PKEY *key;           /* owned: the CA key */
    EVP_PKEY *leaf_key;      /* owned: one EC P-256 key shared by every leaf, made by tls_ca_open */
    struct tls_leaf *leaves; /* owned cache, most recent last */
    size_t nleaves;
    char warning[TLS_ERR_MAX]; /* set by tls_ca_open when dir or ca.key is open to others */
    /* Bad-certificate material (tls_bad.c), made on first use, owned: */
    EVP_PKEY *weak_key;  /* RSA 1024 */
    EVP_PKEY *rogue_key; /* the throwaway CA's key */
    X509 *rogue_ca;      /* a CA that is not smtptap's, never written anywhere */
};

/* The default CA directory: $XDG_DATA_HOME/smtptap, else ~/.local/share/smtptap. */
void tls_default_ca_dir(char *out, size_t size);

/* Loads ca.pem and ca.key from dir, or creates them (dir and missing parents 0700, key
 * 0600; an EC P-256 CA named "smtptap CA <hostname>", valid 10 years, basicConstraints
 * CA:TRUE critical, keyUsage keyCertSign+cRLSign). Returns 0, or -1 with a reason in err
 * (ca is then left empty). A directory looser than 0700 or a ca.key looser than 0600 is
 * accepted, and ca->warning says so (empty otherwise). */
int tls_ca_open(struct tls_ca *ca, const char *dir, char *err, size_t err_size);
/* Frees everything ca owns (cached leaves included); safe on a zeroed or failed ca. */
void tls_ca_close(struct tls_ca *ca);
/* Writes the CA certificate as PEM to out (for --print-ca). */
int tls_ca_write_pem(const struct tls_ca *ca, FILE *out);

/* The leaf for a name (cached for the life of the process): SAN DNS:name, or IP:name for
 * an IP literal; when upstream is given (the real server's certificate), its subject and
 * SANs (DNS and IP) are copied and name is added if missing. Validity: from 1 day ago to
 * 397 days from now; a random serial; signed with SHA-256 by the CA; EKU serverAuth. The
 * cache is keyed by name and upstream certificate, holds TLS_LEAF_CACHE_MAX leaves and
 * evicts the oldest. The returned certificate is owned by the cache and stays valid until a
 * later tls_ca_leaf call evicts it (SSL_use_certificate takes its own reference). NULL with
 * a reason in err on failure. */
X509 *tls_ca_leaf(struct tls_ca *ca, const char *name, X509 *upstream, char *err, size_t err_size);

/* The leaf for name as --client-cert mode shapes it (tls_bad.c says how each mode differs
 * from the good leaf above), with the key and the chain certificate to serve it with; cached
 * per mode, name and upstream certificate like tls_ca_leaf's. NULL with a reason in err. */
const struct tls_leaf *tls_ca_leaf_for(struct tls_ca *ca, enum client_cert mode, const char *name,
                                       X509 *upstream, char *err, size_t err_size);

/* Installs leaf and ca->leaf_key on a server-side SSL (e.g. from the client_hello callback).
 * Returns 0, or -1 (OpenSSL error queue set). */
int tls_use_leaf(SSL *ssl, const struct tls_ca *ca, X509 *leaf);

/* Server context for clients (TLS 1.2+, a client_hello callback set by the caller picks the
 * leaf by SNI). Client context for upstreams: system trust store plus extra_ca_file (may be
 * NULL), verification on unless insecure (host name checked per connection with
 * tls_expect_host). keylog_path (may be NULL or empty) receives NSS key log lines from both:
 * the file is created 0600 (an existing one open to others is made 0600, see
 * tls_keylog_prepare), opened O_APPEND, shared by every context that names it and closed
 * with the last of them. NULL with a reason in err on failure. */
SSL_CTX *tls_server_ctx(const char *keylog_path, char *err, size_t err_size);
SSL_CTX *tls_client_ctx(const char *extra_ca_file, bool insecure, const char *keylog_path,
                        char *err, size_t err_size);
/* After a failed verification: true when the server's chain ends at a CA the trust store
 * lacks (unknown issuer, self-signed), with that CA's name ("CN=Example CA,O=Example") in out:
 * --upstream-ca with its certificate is then the fix. False for any other outcome. */
bool tls_untrusted_issuer(const SSL *ssl, char *out, size_t size);

/* Opens the key log file the contexts will write, creating it 0600; an existing regular file
 * whose mode lets others in is made 0600 (it holds the keys to every TLS session logged),
 * and note (when not NULL) says what its mode was; one that cannot be made so is refused.
 * Messages name the file as "--keylog PATH". Returns 0, or -1 with the reason in err. */
int tls_keylog_prepare(const char *path, char *note, size_t note_size, char *err, size_t err_size);

/* Sets SNI (for a host name, not an IP) and the host name or IP to verify. 0 or -1. */
int tls_expect_host(SSL *ssl, const char *host);

/* One line about a finished handshake: "TLSv1.3 TLS_AES_256_GCM_SHA384, SNI x, ALPN y"
 * ("no SNI" when none was sent; ALPN only when negotiated), and, when there is a peer
 * certificate, "subject ..., issuer ..., sha256 AB:CD:...", and with with_verify the
 * verification result ("verified", "not verified: <X509 error string>" or "no peer
 * certificate"). */
void tls_describe(SSL *ssl, bool with_verify, char *out, size_t size);
/* The same facts one by one (for structured capture formats); "" where there is none. */
struct tls_facts {
    char version[32], cipher[96], sni[256];
    char subject[512], issuer[512], sha256[100]; /* sha256: AB:CD:... */
    char verify[160]; /* with_verify: "verified", "no peer certificate" or the X509 error */
};
void tls_facts_of(SSL *ssl, bool with_verify, struct tls_facts *out);
/* Subject, issuer and SHA-256 fingerprint of a certificate, for failure messages. */
void tls_describe_cert(X509 *cert, char *out, size_t size);
/* The reason a handshake failed, from the OpenSSL error queue and the verify result,
 * e.g. "certificate verify failed: certificate has expired; peer certificate subject ...,
 * issuer ..., sha256 ..." or "client sent alert: unknown CA". Clears the error queue. */
void tls_failure_reason(SSL *ssl, char *out, size_t size);

#endif
