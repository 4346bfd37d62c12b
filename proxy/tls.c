/* tls.c - smtptap's TLS material (see tls.h): the CA on disk, leaves minted per name, the
 * SSL_CTX of each side, the NSS key log and readable words for handshake outcomes. */
#include "smtptap/tls.h"

#include "tls_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum {
    DAY = 24 * 60 * 60,
    CA_DAYS = 3650,  /* the CA: ten years */
    LEAF_DAYS = 397, /* leaves: Apple and browsers refuse more than 398 days in all */
    SERIAL_BYTES = 16,
    SHA256_LEN = 32,
    CN_MAX = 64, /* ub-common-name (RFC 5280) */
};

/* ---- small helpers -------------------------------------------------------------------- */

/* snprintf that appends to what out already holds. */
static void append(char *out, size_t size, const char *fmt, ...)
{
    size_t used = strnlen(out, size);
    if (used + 1 >= size) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out + used, size - used, fmt, ap);
    va_end(ap);
}

/* The reason of the oldest error on the OpenSSL queue, which is then cleared. */
static const char *ossl_reason(void)
{
    unsigned long e = ERR_peek_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    ERR_clear_error();
    return r ? r : "unknown OpenSSL error";
}

/* Fills ip (16 bytes) from an IPv4 or IPv6 literal; returns its length, or 0 for a name. */
static int ip_literal(const char *name, unsigned char ip[16])
{
    if (inet_pton(AF_INET, name, ip) == 1) return 4;
    if (inet_pton(AF_INET6, name, ip) == 1) return 16;
    return 0;
}

static int sha256_of(X509 *cert, unsigned char md[SHA256_LEN])
{
    unsigned int len = 0;
    return X509_digest(cert, EVP_sha256(), md, &len) == 1 && len == SHA256_LEN ? 0 : -1;
}

/* ---- certificates --------------------------------------------------------------------- */

/* A random positive serial of 127 bits (RFC 5280 allows up to 20 octets). */
static int set_random_serial(X509 *cert)
{
    unsigned char bytes[SERIAL_BYTES];
    if (RAND_bytes(bytes, sizeof bytes) != 1) return -1;
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    BIGNUM *bn = BN_bin2bn(bytes, sizeof bytes, NULL);
    int ok = bn && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert)) != NULL;
    BN_free(bn);
    return ok ? 0 : -1;
}

/* A v3 certificate for pub, issued by issuer (NULL: set later), valid from `from` to `until`
 * seconds from now, with a random serial and no subject or extensions yet. */
static X509 *cert_skeleton_at(EVP_PKEY *pub, const X509_NAME *issuer, long from, long until)
{
    X509 *cert = X509_new();
    if (cert && X509_set_version(cert, X509_VERSION_3) && set_random_serial(cert) == 0 &&
        (!issuer || X509_set_issuer_name(cert, issuer)) &&
        X509_gmtime_adj(X509_getm_notBefore(cert), from) &&
        X509_gmtime_adj(X509_getm_notAfter(cert), until) && X509_set_pubkey(cert, pub))
        return cert;
    X509_free(cert);
    return NULL;
}

/* Valid from a day ago for days days from now. */
static X509 *cert_skeleton(EVP_PKEY *pub, const X509_NAME *issuer, int days)
{
    return cert_skeleton_at(pub, issuer, -DAY, (long)days * DAY);
}

/* Adds one extension written in openssl.cnf syntax ("critical,CA:TRUE"). */
static int add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_nconf_nid(NULL, &ctx, nid, value);
    int ok = ext && X509_add_ext(cert, ext, -1);
    X509_EXTENSION_free(ext);
    return ok ? 0 : -1;
}

static int add_cn(X509_NAME *name, const char *cn)
{
    const unsigned char *bytes = (const unsigned char *)cn;
    int ok = X509_NAME_add_entry_by_NID(name, NID_commonName, MBSTRING_UTF8, bytes, -1, -1, 0);
    return ok ? 0 : -1;
}

/* "smtptap CA <hostname>", within the 64 characters a CN may hold. */
static void ca_common_name(char out[CN_MAX + 1])
{
    static const char prefix[] = "smtptap CA ";
    char host[256] = "";
    if (gethostname(host, sizeof host) < 0 || !host[0]) strcpy(host, "localhost");
    host[sizeof host - 1] = 0;
    snprintf(out, CN_MAX + 1, "%s%.*s", prefix, (int)(CN_MAX - (sizeof prefix - 1)), host);
}

/* A self-signed CA certificate for key. */
static X509 *ca_cert_new(EVP_PKEY *key)
{
    char cn[CN_MAX + 1];
    ca_common_name(cn);
    return tls_ca_cert_new(key, cn);
}

X509 *tls_ca_cert_new(EVP_PKEY *key, const char *cn)
{
    X509_NAME *name = X509_NAME_new();
    X509 *cert = name && add_cn(name, cn) == 0 ? cert_skeleton(key, name, CA_DAYS) : NULL;
    X509_NAME_free(name);
    if (cert && X509_set_subject_name(cert, X509_get_issuer_name(cert)) &&
        add_ext(cert, cert, NID_basic_constraints, "critical,CA:TRUE") == 0 &&
        add_ext(cert, cert, NID_key_usage, "critical,keyCertSign,cRLSign") == 0 &&
        add_ext(cert, cert, NID_subject_key_identifier, "hash") == 0 &&
        X509_sign(cert, key, EVP_sha256()) > 0)
        return cert;
    X509_free(cert);
    return NULL;
}

/* ---- the CA on disk ------------------------------------------------------------------- */

void tls_default_ca_dir(char *out, size_t size)
{
    const char *xdg = getenv("XDG_DATA_HOME");
    if (xdg && xdg[0] == '/') {
        snprintf(out, size, "%s/smtptap", xdg);
        return;
    }
    const char *home = getenv("HOME");
    if (!home || !*home) {
        const struct passwd *pw = getpwuid(getuid());
        home = pw && pw->pw_dir ? pw->pw_dir : ".";
    }
    snprintf(out, size, "%s/.local/share/smtptap", home);
}

/* mkdir -p with mode 0700 for every directory it creates. */
static int make_dirs(const char *dir, char *err, size_t err_size)
{
    char path[sizeof((struct tls_ca *)0)->dir]; /* tls_ca_open checked that dir fits */
    snprintf(path, sizeof path, "%s", dir);
    for (char *p = path + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(path, 0700) < 0 && errno != EEXIST) break;
        *p = '/';
    }
    struct stat st;
    if ((mkdir(path, 0700) < 0 && errno != EEXIST) || stat(path, &st) < 0) {
        snprintf(err, err_size, "cannot create CA directory %s: %s", dir, strerror(errno));
        return -1;
    }
    if (S_ISDIR(st.st_mode)) return 0;
    snprintf(err, err_size, "CA directory %s is not a directory", dir);
    return -1;
}

/* Adds to ca->warning when path is open to group or others; mode is the one to suggest. */
static void check_private(struct tls_ca *ca, const char *path, const char *what, mode_t mode)
{
    struct stat st;
    if (stat(path, &st) < 0 || !(st.st_mode & 077)) return;
    append(ca->warning, sizeof ca->warning,
           "%s%s %s is mode %03o, open to other users (chmod %03o it)", ca->warning[0] ? "; " : "",
           what, path, (unsigned)(st.st_mode & 0777), (unsigned)mode);
}

/* Creates path exclusively with exactly mode (whatever the umask) and opens it for writing. */
static FILE *create_file(const char *path, mode_t mode, char *err, size_t err_size)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    FILE *f = fd >= 0 && fchmod(fd, mode) == 0 ? fdopen(fd, "w") : NULL;
    if (f) return f;
    snprintf(err, err_size, "cannot create %s: %s", path, strerror(errno));
    if (fd >= 0) {
        close(fd);
        unlink(path);
    }
    return NULL;
}

/* Closes f, which was just written; removes path if anything failed. */
static int finish_file(FILE *f, int written, const char *path, char *err, size_t err_size)
{
    int flushed = fflush(f) == 0 && fsync(fileno(f)) == 0;
    int saved = errno;
    if (fclose(f) == 0 && written && flushed) return 0;
    snprintf(err, err_size, "cannot write %s: %s", path, written ? strerror(saved) : ossl_reason());
    unlink(path);
    return -1;
}

static int write_key(const char *path, EVP_PKEY *key, char *err, size_t err_size)
{
    FILE *f = create_file(path, 0600, err, err_size);
    if (!f) return -1;
    int ok = PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL);
    return finish_file(f, ok, path, err, err_size);
}

static int write_cert(const char *path, X509 *cert, char *err, size_t err_size)
{
    FILE *f = create_file(path, 0644, err, err_size);
    if (!f) return -1;
    int ok = PEM_write_X509(f, cert);
    return finish_file(f, ok, path, err, err_size);
}

/* Makes a new CA and writes ca.key, then ca.pem; leaves neither behind on failure. */
static int ca_create(struct tls_ca *ca, const char *key_path, const char *pem_path, char *err,
                     size_t err_size)
{
    ca->key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    ca->cert = ca->key ? ca_cert_new(ca->key) : NULL;
    if (!ca->cert) {
        snprintf(err, err_size, "cannot make a CA certificate: %s", ossl_reason());
        return -1;
    }
    if (write_key(key_path, ca->key, err, err_size) < 0) return -1;
    if (write_cert(pem_path, ca->cert, err, err_size) == 0) return 0;
    unlink(key_path);
    return -1;
}

/* No passphrase prompt: an encrypted ca.key is refused rather than blocking on a tty. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf, (void)size, (void)rwflag, (void)u;
    return -1;
}

static int ca_read(struct tls_ca *ca, const char *key_path, const char *pem_path, char *err,
                   size_t err_size)
{
    FILE *f = fopen(pem_path, "re");
    ca->cert = f ? PEM_read_X509(f, NULL, no_passphrase, NULL) : NULL;
    if (f) fclose(f);
    if (!ca->cert) {
        snprintf(err, err_size, "cannot read %s: %s", pem_path,
                 f ? ossl_reason() : strerror(errno));
        return -1;
    }
    f = fopen(key_path, "re");
    ca->key = f ? PEM_read_PrivateKey(f, NULL, no_passphrase, NULL) : NULL;
    if (f) fclose(f);
    if (!ca->key) {
        snprintf(err, err_size, "cannot read %s (an unencrypted PEM key is needed): %s", key_path,
                 f ? ossl_reason() : strerror(errno));
        return -1;
    }
    return 0;
}

/* The loaded pair must be a CA certificate and its own key. */
static int ca_check(const struct tls_ca *ca, char *err, size_t err_size)
{
    if (X509_check_ca(ca->cert) == 0) {
        snprintf(err, err_size,
                 "ca.pem in %s is not a CA certificate (no basicConstraints CA:TRUE)", ca->dir);
        return -1;
    }
    if (X509_check_private_key(ca->cert, ca->key) == 1) return 0;
    ERR_clear_error();
    snprintf(err, err_size,
             "ca.key does not belong to ca.pem in %s (restore the matching pair, or remove both "
             "to make a new CA)",
             ca->dir);
    return -1;
}

/* Loads the pair, or creates it when neither file exists; refuses a lone file. */
static int ca_load_or_create(struct tls_ca *ca, char *err, size_t err_size)
{
    char key_path[sizeof ca->dir + 8], pem_path[sizeof ca->dir + 8];
    snprintf(key_path, sizeof key_path, "%s/ca.key", ca->dir);
    snprintf(pem_path, sizeof pem_path, "%s/ca.pem", ca->dir);
    bool has_key = access(key_path, F_OK) == 0, has_pem = access(pem_path, F_OK) == 0;
    if (!has_key && !has_pem) return ca_create(ca, key_path, pem_path, err, err_size);
    if (has_key != has_pem) {
        snprintf(err, err_size, "%s has %s but no %s (restore it, or remove both to make a new CA)",
                 ca->dir, has_key ? "ca.key" : "ca.pem", has_key ? "ca.pem" : "ca.key");
        return -1;
    }
    if (ca_read(ca, key_path, pem_path, err, err_size) < 0) return -1;
    check_private(ca, key_path, "CA key", 0600);
    return ca_check(ca, err, err_size);
}

int tls_ca_open(struct tls_ca *ca, const char *dir, char *err, size_t err_size)
{
    memset(ca, 0, sizeof *ca);
    if (!dir || !*dir || strlen(dir) >= sizeof ca->dir - 8) {
        snprintf(err, err_size, "CA directory \"%s\" is empty or too long", dir ? dir : "");
        return -1;
    }
    snprintf(ca->dir, sizeof ca->dir, "%s", dir);
    if (make_dirs(dir, err, err_size) < 0) return -1;
    check_private(ca, dir, "CA directory", 0700);
    /* Two smtptaps started at once on a new CA directory (a benchmark, two units) must not
     * both create it: the one that gets the lock creates, the other loads. */
    int lock = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (lock >= 0 && flock(lock, LOCK_EX) < 0) {
        close(lock);
        lock = -1;
    }
    int rc = ca_load_or_create(ca, err, err_size);
    if (lock >= 0) close(lock); /* closing releases the lock */
    if (rc < 0) goto fail;
    ca->leaf_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    if (ca->leaf_key) return 0;
    snprintf(err, err_size, "cannot make the leaf key: %s", ossl_reason());
fail:
    tls_ca_close(ca);
    return -1;
}

void tls_ca_close(struct tls_ca *ca)
{
    for (size_t i = 0; i < ca->nleaves; i++) X509_free(ca->leaves[i].cert);
    free(ca->leaves);
    tls_bad_free(ca);
    X509_free(ca->cert);
    EVP_PKEY_free(ca->key);
    EVP_PKEY_free(ca->leaf_key);
    memset(ca, 0, sizeof *ca);
}

int tls_ca_write_pem(const struct tls_ca *ca, FILE *out)
{
    return ca->cert && PEM_write_X509(out, ca->cert) == 1 ? 0 : -1;
}

/* ---- leaves --------------------------------------------------------------------------- */

/* A GENERAL_NAME for name: an iPAddress for an IP literal, else a dNSName. */
static GENERAL_NAME *general_name(const char *name)
{
    unsigned char ip[16];
    int iplen = ip_literal(name, ip);
    GENERAL_NAME *gn = GENERAL_NAME_new();
    ASN1_STRING *value = iplen ? ASN1_OCTET_STRING_new() : ASN1_IA5STRING_new();
    int ok = gn && value &&
             (iplen ? ASN1_STRING_set(value, ip, iplen) : ASN1_STRING_set(value, name, -1));
    if (ok) {
        GENERAL_NAME_set0_value(gn, iplen ? GEN_IPADD : GEN_DNS, value);
        return gn;
    }
    ASN1_STRING_free(value);
    GENERAL_NAME_free(gn);
    return NULL;
}

/* Whether gens already holds want (DNS names compared without case). */
static bool has_name(const GENERAL_NAMES *gens, const GENERAL_NAME *want)
{
    for (int i = 0; i < sk_GENERAL_NAME_num(gens); i++) {
        const GENERAL_NAME *gn = sk_GENERAL_NAME_value(gens, i);
        if (gn->type != want->type) continue;
        const ASN1_STRING *a = gn->d.ia5, *b = want->d.ia5;
        if (ASN1_STRING_length(a) != ASN1_STRING_length(b)) continue;
        const char *x = (const char *)ASN1_STRING_get0_data(a);
        const char *y = (const char *)ASN1_STRING_get0_data(b);
        size_t n = (size_t)ASN1_STRING_length(a);
        if (gn->type == GEN_DNS ? strncasecmp(x, y, n) == 0 : memcmp(x, y, n) == 0) return true;
    }
    return false;
}

/* Appends the upstream certificate's DNS and IP SANs (other kinds are dropped). */
static int copy_sans(GENERAL_NAMES *gens, X509 *upstream)
{
    GENERAL_NAMES *up = X509_get_ext_d2i(upstream, NID_subject_alt_name, NULL, NULL);
    int ok = 1;
    for (int i = 0; ok && i < sk_GENERAL_NAME_num(up); i++) {
        const GENERAL_NAME *gn = sk_GENERAL_NAME_value(up, i);
        if (gn->type != GEN_DNS && gn->type != GEN_IPADD) continue;
        if (has_name(gens, gn)) continue;
        GENERAL_NAME *copy = GENERAL_NAME_dup(gn);
        ok = copy && sk_GENERAL_NAME_push(gens, copy);
        if (!ok) GENERAL_NAME_free(copy);
    }
    GENERAL_NAMES_free(up);
    return ok ? 0 : -1;
}

/* subjectAltName: the upstream's DNS and IP names, then name if they lack it. Not critical:
 * the subject is never empty. */
static int add_sans(X509 *leaf, const char *name, X509 *upstream)
{
    GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
    GENERAL_NAME *own = general_name(name);
    int ok = gens && own && (!upstream || copy_sans(gens, upstream) == 0);
    if (ok && !has_name(gens, own)) {
        ok = sk_GENERAL_NAME_push(gens, own) > 0;
        if (ok) own = NULL; /* gens owns it now */
    }
    ok = ok && X509_add1_ext_i2d(leaf, NID_subject_alt_name, gens, 0, X509V3_ADD_DEFAULT);
    GENERAL_NAME_free(own);
    GENERAL_NAMES_free(gens);
    return ok ? 0 : -1;
}

/* The upstream's subject when it has one, else CN=name (or CN=smtptap for a name too long
 * for a CN; the SAN carries it). */
static int set_leaf_subject(X509 *leaf, const char *name, X509 *upstream)
{
    X509_NAME *up = upstream ? X509_get_subject_name(upstream) : NULL;
    if (up && X509_NAME_entry_count(up) > 0) return X509_set_subject_name(leaf, up) ? 0 : -1;
    return add_cn(X509_get_subject_name(leaf), strlen(name) <= CN_MAX ? name : "smtptap");
}

/* A self-signed leaf names itself as its issuer and has no authority key identifier. */
static X509 *leaf_new(const struct leaf_recipe *r, const char *name, X509 *upstream)
{
    X509 *issuer = r->issuer;
    X509 *leaf =
        cert_skeleton_at(r->key, issuer ? X509_get_subject_name(issuer) : NULL, r->from, r->until);
    X509 *by = issuer ? issuer : leaf;
    if (leaf && set_leaf_subject(leaf, name, upstream) == 0 &&
        (issuer || X509_set_issuer_name(leaf, X509_get_subject_name(leaf))) &&
        add_sans(leaf, name, upstream) == 0 &&
        add_ext(leaf, by, NID_basic_constraints, "critical,CA:FALSE") == 0 &&
        add_ext(leaf, by, NID_key_usage, "critical,digitalSignature") == 0 &&
        add_ext(leaf, by, NID_ext_key_usage, "serverAuth") == 0 &&
        add_ext(leaf, by, NID_subject_key_identifier, "hash") == 0 &&
        (!issuer || add_ext(leaf, issuer, NID_authority_key_identifier, "keyid:always") == 0) &&
        X509_sign(leaf, issuer ? r->issuer_key : r->key, r->md) > 0)
        return leaf;
    X509_free(leaf);
    return NULL;
}

static const struct tls_leaf *cache_find(const struct tls_ca *ca, int mode, const char *name,
                                         const unsigned char *up)
{
    for (size_t i = ca->nleaves; i-- > 0;) {
        const struct tls_leaf *l = &ca->leaves[i];
        if (l->mode == mode && strcasecmp(l->name, name) == 0 &&
            memcmp(l->upstream, up, SHA256_LEN) == 0)
            return l;
    }
    return NULL;
}

/* Appends a leaf (taking ownership of cert), evicting the oldest when the cache is full. */
static struct tls_leaf *cache_add(struct tls_ca *ca, const char *name, const unsigned char *up,
                                  X509 *cert)
{
    if (!ca->leaves) ca->leaves = calloc(TLS_LEAF_CACHE_MAX, sizeof *ca->leaves);
    if (!ca->leaves) return NULL;
    if (ca->nleaves == TLS_LEAF_CACHE_MAX) {
        X509_free(ca->leaves[0].cert);
        memmove(ca->leaves, ca->leaves + 1, --ca->nleaves * sizeof *ca->leaves);
    }
    struct tls_leaf *l = &ca->leaves[ca->nleaves++];
    snprintf(l->name, sizeof l->name, "%s", name);
    memcpy(l->upstream, up, SHA256_LEN);
    l->cert = cert;
    return l;
}

X509 *tls_ca_leaf(struct tls_ca *ca, const char *name, X509 *upstream, char *err, size_t err_size)
{
    const struct tls_leaf *l = tls_ca_leaf_for(ca, CLIENT_CERT_GOOD, name, upstream, err, err_size);
    return l ? l->cert : NULL;
}

const struct tls_leaf *tls_ca_leaf_for(struct tls_ca *ca, enum client_cert mode, const char *name,
                                       X509 *upstream, char *err, size_t err_size)
{
    unsigned char up[SHA256_LEN] = {0};
    if (!name || !*name || strlen(name) >= sizeof ca->leaves->name) {
        snprintf(err, err_size, "cannot mint a certificate for \"%.64s\": empty or too long name",
                 name ? name : "");
        return NULL;
    }
    if (upstream && sha256_of(upstream, up) < 0) {
        snprintf(err, err_size, "cannot hash the upstream certificate: %s", ossl_reason());
        return NULL;
    }
    const struct tls_leaf *found = cache_find(ca, (int)mode, name, up);
    if (found) return found;
    struct leaf_recipe r = {.key = ca->leaf_key,
                            .issuer = ca->cert,
                            .issuer_key = ca->key,
                            .chain = ca->cert,
                            .from = -DAY,
                            .until = (long)LEAF_DAYS * DAY,
                            .md = EVP_sha256(),
                            .name = name,
                            .upstream = upstream};
    if (tls_bad_recipe(ca, mode, &r, err, err_size) < 0) return NULL;
    X509 *leaf = leaf_new(&r, r.name, r.upstream);
    struct tls_leaf *l = leaf ? cache_add(ca, name, up, leaf) : NULL;
    if (l) {
        l->mode = (int)mode;
        l->key = r.key;
        l->chain = r.chain;
        l->low_security = r.low_security;
        return l;
    }
    snprintf(err, err_size, "cannot mint a certificate for %s: %s", name,
             leaf ? "out of memory" : ossl_reason());
    X509_free(leaf);
    return NULL;
}

int tls_use_leaf(SSL *ssl, const struct tls_ca *ca, X509 *leaf)
{
    if (SSL_use_certificate(ssl, leaf) != 1) return -1;
    return SSL_use_PrivateKey(ssl, ca->leaf_key) == 1 ? 0 : -1;
}

/* ---- key log -------------------------------------------------------------------------- */

/* One open key log file, shared by every SSL_CTX that names it (found by device and inode)
 * and closed with the last one. The loop runs on one thread, so the list needs no lock. */
struct keylog {
    struct keylog *next;
    dev_t dev;
    ino_t ino;
    FILE *file;
    int refs;
};

static struct keylog *keylogs;
static int keylog_index = -1;

static void keylog_release(struct keylog *k)
{
    if (--k->refs > 0) return;
    for (struct keylog **p = &keylogs; *p; p = &(*p)->next)
        if (*p == k) {
            *p = k->next;
            break;
        }
    fclose(k->file);
    free(k);
}

/* CRYPTO_EX_free: the context is being freed. */
static void keylog_ex_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                           void *argp)
{
    (void)parent, (void)ad, (void)idx, (void)argl, (void)argp;
    if (ptr) keylog_release(ptr);
}

static void keylog_line_cb(const SSL *ssl, const char *line)
{
    struct keylog *k = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), keylog_index);
    if (!k) return;
    fprintf(k->file, "%s\n", line);
    fflush(k->file);
}

/* Opens path for appending, created 0600; a regular file open to others is made 0600 (note
 * says what it was). Returns the descriptor, or -1 with err set, opened by `who` (how the
 * caller names the file: "--keylog PATH"). */
static int keylog_fd(const char *who, const char *path, struct stat *st, char *note,
                     size_t note_size, char *err, size_t err_size)
{
    if (note && note_size) note[0] = 0;
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0 || fstat(fd, st) < 0) {
        snprintf(err, err_size,
                 "%s: cannot open the file: %s; expected a file smtptap can create or append to",
                 who, strerror(errno));
        if (fd >= 0) close(fd);
        return -1;
    }
    unsigned mode = (unsigned)(st->st_mode & 07777);
    if (!S_ISREG(st->st_mode) || !(mode & 077)) return fd; /* private, or a pipe, a device */
    if (fchmod(fd, 0600) < 0) {
        snprintf(err, err_size,
                 "%s: the file is mode %o, open to other users, and cannot be made 600: %s "
                 "(whoever reads it can decrypt every TLS session smtptap logs; chmod 600 it "
                 "as its owner, or give another file)",
                 who, mode, strerror(errno));
        close(fd);
        return -1;
    }
    if (note && note_size)
        snprintf(note, note_size,
                 "%s: the file was mode %o, open to other users; it is 600 now (it holds the keys "
                 "to every TLS session smtptap logs)",
                 who, mode);
    st->st_mode = (st->st_mode & ~(mode_t)07777) | 0600;
    return fd;
}

int tls_keylog_prepare(const char *path, char *note, size_t note_size, char *err, size_t err_size)
{
    char who[4200];
    snprintf(who, sizeof who, "--keylog %s", path);
    struct stat st;
    int fd = keylog_fd(who, path, &st, note, note_size, err, err_size);
    if (fd < 0) return -1;
    close(fd);
    return 0;
}

/* Opens path (see keylog_fd) or shares the copy already open. */
static struct keylog *keylog_open(const char *path, char *err, size_t err_size)
{
    char who[4200];
    snprintf(who, sizeof who, "key log %s", path);
    struct stat st;
    int fd = keylog_fd(who, path, &st, NULL, 0, err, err_size);
    if (fd < 0) return NULL;
    for (struct keylog *k = keylogs; k; k = k->next)
        if (k->dev == st.st_dev && k->ino == st.st_ino) {
            close(fd);
            k->refs++;
            return k;
        }
    struct keylog *k = calloc(1, sizeof *k);
    FILE *f = k ? fdopen(fd, "a") : NULL;
    if (!f) {
        snprintf(err, err_size, "%s: cannot open the file: %s", who, strerror(errno));
        free(k);
        close(fd);
        return NULL;
    }
    *k = (struct keylog){.next = keylogs, .dev = st.st_dev, .ino = st.st_ino, .file = f, .refs = 1};
    keylogs = k;
    return k;
}

/* Sends ctx's key log lines to path; nothing to do without a path. */
static int ctx_set_keylog(SSL_CTX *ctx, const char *path, char *err, size_t err_size)
{
    if (!path || !*path) return 0;
    if (keylog_index < 0)
        keylog_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, keylog_ex_free);
    if (keylog_index < 0) {
        snprintf(err, err_size, "cannot set up the key log: %s", ossl_reason());
        return -1;
    }
    struct keylog *k = keylog_open(path, err, err_size);
    if (!k) return -1;
    if (!SSL_CTX_set_ex_data(ctx, keylog_index, k)) {
        keylog_release(k);
        snprintf(err, err_size, "cannot set up the key log: %s", ossl_reason());
        return -1;
    }
    SSL_CTX_set_keylog_callback(ctx, keylog_line_cb);
    return 0;
}

/* ---- contexts ------------------------------------------------------------------------- */

SSL_CTX *tls_server_ctx(const char *keylog_path, char *err, size_t err_size)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx || !SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION)) {
        snprintf(err, err_size, "cannot make the client-side TLS context: %s", ossl_reason());
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    /* A peer that closes without close_notify must show up as truncation, not as EOF. */
    SSL_CTX_clear_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
    if (ctx_set_keylog(ctx, keylog_path, err, err_size) == 0) return ctx;
    SSL_CTX_free(ctx);
    return NULL;
}

/* Adds a PEM file of CA certificates to ctx's trust store. */
static int ctx_trust_file(SSL_CTX *ctx, const char *path, char *err, size_t err_size)
{
    FILE *f = fopen(path, "re");
    if (!f) {
        snprintf(err, err_size, "cannot read CA file %s: %s", path, strerror(errno));
        return -1;
    }
    fclose(f);
    if (SSL_CTX_load_verify_file(ctx, path) == 1) return 0;
    snprintf(err, err_size, "cannot load CA file %s: %s", path, ossl_reason());
    return -1;
}

SSL_CTX *tls_client_ctx(const char *extra_ca_file, bool insecure, const char *keylog_path,
                        char *err, size_t err_size)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx || SSL_CTX_set_default_verify_paths(ctx) != 1) {
        snprintf(err, err_size, "cannot make the upstream TLS context: %s", ossl_reason());
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_clear_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
    SSL_CTX_set_verify(ctx, insecure ? SSL_VERIFY_NONE : SSL_VERIFY_PEER, NULL);
    if ((extra_ca_file && *extra_ca_file &&
         ctx_trust_file(ctx, extra_ca_file, err, err_size) < 0) ||
        ctx_set_keylog(ctx, keylog_path, err, err_size) < 0) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

int tls_expect_host(SSL *ssl, const char *host)
{
    unsigned char ip[16];
    if (ip_literal(host, ip))
        return X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host) == 1 ? 0 : -1;
    SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    return SSL_set_tlsext_host_name(ssl, host) == 1 && SSL_set1_host(ssl, host) == 1 ? 0 : -1;
}

/* ---- words ---------------------------------------------------------------------------- */

/* Appends a distinguished name as RFC 2253 text ("CN=x,O=y"), control bytes escaped. */
static void append_name(char *out, size_t size, const X509_NAME *name)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *text = NULL;
    long len = 0;
    if (bio && X509_NAME_print_ex(bio, name, 0, XN_FLAG_RFC2253) >= 0)
        len = BIO_get_mem_data(bio, &text);
    if (len > 0)
        append(out, size, "%.*s", (int)len, text);
    else
        append(out, size, "(empty)");
    BIO_free(bio);
}

static void append_fingerprint(char *out, size_t size, X509 *cert)
{
    unsigned char md[SHA256_LEN];
    if (sha256_of(cert, md) < 0) {
        append(out, size, "sha256 unknown");
        return;
    }
    append(out, size, "sha256 ");
    for (int i = 0; i < SHA256_LEN; i++) append(out, size, i ? ":%02X" : "%02X", md[i]);
}

static void append_cert(char *out, size_t size, X509 *cert)
{
    append(out, size, "subject ");
    append_name(out, size, X509_get_subject_name(cert));
    append(out, size, ", issuer ");
    append_name(out, size, X509_get_issuer_name(cert));
    append(out, size, ", ");
    append_fingerprint(out, size, cert);
}

void tls_describe_cert(X509 *cert, char *out, size_t size)
{
    if (!size) return;
    out[0] = 0;
    if (cert)
        append_cert(out, size, cert);
    else
        append(out, size, "no certificate");
}

/* The peer's certificate, also after a failed verification (when only the chain is kept). */
static X509 *peer_cert(const SSL *ssl)
{
    X509 *cert = SSL_get0_peer_certificate(ssl);
    STACK_OF(X509) *chain = cert ? NULL : SSL_get_peer_cert_chain(ssl);
    return cert ? cert : sk_X509_num(chain) > 0 ? sk_X509_value(chain, 0) : NULL;
}

void tls_describe(SSL *ssl, bool with_verify, char *out, size_t size)
{
    if (!size) return;
    out[0] = 0;
    append(out, size, "%s %s", SSL_get_version(ssl), SSL_get_cipher_name(ssl));
    const char *sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    append(out, size, sni ? ", SNI %s" : ", no SNI", sni);
    const unsigned char *alpn = NULL;
    unsigned int alpn_len = 0;
    SSL_get0_alpn_selected(ssl, &alpn, &alpn_len);
    if (alpn_len) append(out, size, ", ALPN %.*s", (int)alpn_len, (const char *)alpn);
    X509 *cert = peer_cert(ssl);
    if (cert) {
        append(out, size, ", ");
        append_cert(out, size, cert);
    }
    if (!with_verify) return;
    long v = SSL_get_verify_result(ssl);
    if (!cert)
        append(out, size, ", no peer certificate");
    else if (v == X509_V_OK)
        append(out, size, ", verified");
    else
        append(out, size, ", not verified: %s", X509_verify_cert_error_string(v));
}

void tls_facts_of(SSL *ssl, bool with_verify, struct tls_facts *out)
{
    memset(out, 0, sizeof *out);
    snprintf(out->version, sizeof out->version, "%s", SSL_get_version(ssl));
    snprintf(out->cipher, sizeof out->cipher, "%s", SSL_get_cipher_name(ssl));
    const char *sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    snprintf(out->sni, sizeof out->sni, "%s", sni ? sni : "");
    X509 *cert = peer_cert(ssl);
    if (cert) {
        append_name(out->subject, sizeof out->subject, X509_get_subject_name(cert));
        append_name(out->issuer, sizeof out->issuer, X509_get_issuer_name(cert));
        unsigned char md[SHA256_LEN];
        if (sha256_of(cert, md) == 0)
            for (int i = 0; i < SHA256_LEN; i++)
                append(out->sha256, sizeof out->sha256, i ? ":%02X" : "%02X", md[i]);
    }
    if (!with_verify) return;
    long v = SSL_get_verify_result(ssl);
    snprintf(out->verify, sizeof out->verify, "%s",
             !cert            ? "no peer certificate"
             : v == X509_V_OK ? "verified"
                              : X509_verify_cert_error_string(v));
}

/* " (expected HOST)" for a host or IP mismatch. */
static void append_expected(char *out, size_t size, SSL *ssl, long verify)
{
    X509_VERIFY_PARAM *param = SSL_get0_param(ssl);
    if (verify == X509_V_ERR_HOSTNAME_MISMATCH) {
        const char *host = X509_VERIFY_PARAM_get0_host(param, 0);
        if (host) append(out, size, " (expected %s)", host);
    } else if (verify == X509_V_ERR_IP_ADDRESS_MISMATCH) {
        char *ip = X509_VERIFY_PARAM_get1_ip_asc(param);
        if (ip) append(out, size, " (expected %s)", ip);
        OPENSSL_free(ip);
    }
}

bool tls_untrusted_issuer(const SSL *ssl, char *out, size_t size)
{
    if (size) out[0] = 0;
    if (!ssl) return false;
    switch (SSL_get_verify_result(ssl)) {
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT: break;
    default: return false;
    }
    /* The issuer of the last certificate the server sent: the CA its chain ends at (a
     * self-signed one names itself). */
    STACK_OF(X509) *chain = SSL_get_peer_cert_chain(ssl);
    int n = chain ? sk_X509_num(chain) : 0;
    X509 *top = n > 0 ? sk_X509_value(chain, n - 1) : SSL_get0_peer_certificate(ssl);
    if (!top) return false;
    append_name(out, size, X509_get_issuer_name(top));
    return true;
}

static void verify_failure(SSL *ssl, char *out, size_t size)
{
    long v = SSL_get_verify_result(ssl);
    append(out, size, "certificate verify failed: %s", X509_verify_cert_error_string(v));
    append_expected(out, size, ssl, v);
    X509 *cert = peer_cert(ssl);
    if (!cert) return;
    append(out, size, "; peer certificate ");
    append_cert(out, size, cert);
}

/* An alert the peer sent shows up as an SSL error whose reason is the alert plus 1000. */
static bool is_alert(unsigned long e)
{
    int r = ERR_GET_REASON(e);
    return ERR_GET_LIB(e) == ERR_LIB_SSL && r >= SSL_AD_REASON_OFFSET &&
           r < SSL_AD_REASON_OFFSET + 256;
}

static bool is_ssl_reason(unsigned long e, int reason)
{
    return ERR_GET_LIB(e) == ERR_LIB_SSL && ERR_GET_REASON(e) == reason;
}

/* Words for the most telling error: a verify failure, then an alert, then EOF, then the
 * oldest error. */
static void describe_error(SSL *ssl, unsigned long first, unsigned long alert, bool verify,
                           bool eof, char *out, size_t size)
{
    bool server = ssl && SSL_is_server(ssl);
    if (verify && ssl)
        verify_failure(ssl, out, size);
    else if (alert)
        append(out, size, "%s sent alert: %s", server ? "client" : "server",
               SSL_alert_desc_string_long(ERR_GET_REASON(alert) - SSL_AD_REASON_OFFSET));
    else if (eof && ssl && SSL_get_state(ssl) == TLS_ST_OK) /* kept after a fatal error */
        append(out, size, "the %s closed the connection without close_notify (truncated)",
               server ? "client" : "server");
    else if (eof)
        append(out, size, "the %s closed the connection during the handshake",
               server ? "client" : "server");
    else if (first && ERR_reason_error_string(first))
        append(out, size, "%s", ERR_reason_error_string(first));
    else if (first)
        append(out, size, "OpenSSL error %lu", first);
    else
        append(out, size, "TLS failed without an error from OpenSSL");
}

void tls_failure_reason(SSL *ssl, char *out, size_t size)
{
    unsigned long e, first = 0, alert = 0;
    bool verify = false, eof = false;
    while ((e = ERR_get_error()) != 0) {
        if (!first) first = e;
        if (!alert && is_alert(e)) alert = e;
        verify = verify || is_ssl_reason(e, SSL_R_CERTIFICATE_VERIFY_FAILED);
        eof = eof || is_ssl_reason(e, SSL_R_UNEXPECTED_EOF_WHILE_READING);
    }
    if (!size) return;
    out[0] = 0;
    describe_error(ssl, first, alert, verify, eof, out, size);
}
