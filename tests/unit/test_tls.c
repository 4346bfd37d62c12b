/* test_tls.c - unit tests for smtptap's TLS material (tls.h): the CA on disk, minted leaves,
 * both contexts, the key log and the words for handshake outcomes.
 *
 * Every test works in a private temporary directory. Leaves are checked the way a strict
 * client checks them (X509_STORE with X509_V_FLAG_X509_STRICT, the TLS server purpose and a
 * host or IP check), and handshakes run in memory: a client and a server SSL joined by a
 * BIO pair, pumped until both finish or one fails. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <ftw.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "smtptap/tls.h"

enum { DAY = 24 * 60 * 60 };

/* ---- fixture: a temporary directory and a CA in it ---------------------------------- */

struct fixture {
    char tmp[64];
    char cadir[128]; /* tmp/parent/ca: neither exists before the test */
    char ca_pem[160];
    char ca_key[160];
    struct tls_ca ca;
    char err[TLS_ERR_MAX];
};

static int fixture_setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    if (!f) return -1;
    strcpy(f->tmp, "/tmp/smtptap-test-tls-XXXXXX");
    if (!mkdtemp(f->tmp)) return -1;
    snprintf(f->cadir, sizeof f->cadir, "%s/parent/ca", f->tmp);
    snprintf(f->ca_pem, sizeof f->ca_pem, "%s/ca.pem", f->cadir);
    snprintf(f->ca_key, sizeof f->ca_key, "%s/ca.key", f->cadir);
    *state = f;
    return 0;
}

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st, (void)type, (void)ftw;
    return remove(path);
}

static int fixture_teardown(void **state)
{
    struct fixture *f = *state;
    tls_ca_close(&f->ca);
    nftw(f->tmp, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    ERR_clear_error();
    return 0;
}

/* The fixture with its CA opened in cadir. */
static int ca_setup(void **state)
{
    if (fixture_setup(state) < 0) return -1;
    struct fixture *f = *state;
    if (tls_ca_open(&f->ca, f->cadir, f->err, sizeof f->err) == 0) return 0;
    fprintf(stderr, "tls_ca_open: %s\n", f->err);
    return -1;
}

/* ---- helpers ----------------------------------------------------------------------------- */

static mode_t mode_of(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return st.st_mode & 07777;
}

static void assert_contains(const char *text, const char *part)
{
    if (strstr(text, part)) return;
    fail_msg("\"%s\" does not contain \"%s\"", text, part);
}

static void assert_starts_with(const char *text, const char *prefix)
{
    if (strncmp(text, prefix, strlen(prefix)) == 0) return;
    fail_msg("\"%s\" does not start with \"%s\"", text, prefix);
}

static X509 *leaf(struct fixture *f, const char *name, X509 *upstream)
{
    X509 *cert = tls_ca_leaf(&f->ca, name, upstream, f->err, sizeof f->err);
    if (!cert) fail_msg("tls_ca_leaf(%s): %s", name, f->err);
    return cert;
}

/* The certificate's SANs as text, one per line: "DNS:x", "IP:1.2.3.4" or "other". */
static void sans_text(X509 *cert, char *out, size_t size)
{
    GENERAL_NAMES *gens = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
    out[0] = 0;
    for (int i = 0; i < sk_GENERAL_NAME_num(gens); i++) {
        const GENERAL_NAME *gn = sk_GENERAL_NAME_value(gens, i);
        size_t used = strlen(out);
        if (gn->type == GEN_DNS) {
            snprintf(out + used, size - used, "DNS:%s\n",
                     (const char *)ASN1_STRING_get0_data(gn->d.dNSName));
        } else if (gn->type == GEN_IPADD) {
            int len = ASN1_STRING_length(gn->d.iPAddress);
            char ip[INET6_ADDRSTRLEN] = "?";
            inet_ntop(len == 4 ? AF_INET : AF_INET6, ASN1_STRING_get0_data(gn->d.iPAddress), ip,
                      sizeof ip);
            snprintf(out + used, size - used, "IP:%s/%d\n", ip, len);
        } else {
            snprintf(out + used, size - used, "other\n");
        }
    }
    GENERAL_NAMES_free(gens);
}

/* Verifies cert against the CA in strict mode, for purpose (0: any) and host (a name) or
 * ip when given. Returns the X509_V_ result. */
static int verify_cert(X509 *ca, X509 *cert, int purpose, const char *host, const char *ip)
{
    X509_STORE *store = X509_STORE_new();
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    assert_non_null(store);
    assert_non_null(ctx);
    assert_int_equal(X509_STORE_add_cert(store, ca), 1);
    assert_int_equal(X509_STORE_CTX_init(ctx, store, cert, NULL), 1);
    X509_VERIFY_PARAM *param = X509_STORE_CTX_get0_param(ctx);
    X509_VERIFY_PARAM_set_flags(param, X509_V_FLAG_X509_STRICT);
    if (purpose) assert_int_equal(X509_STORE_CTX_set_purpose(ctx, purpose), 1);
    if (host) assert_int_equal(X509_VERIFY_PARAM_set1_host(param, host, 0), 1);
    if (ip) assert_int_equal(X509_VERIFY_PARAM_set1_ip_asc(param, ip), 1);
    int ok = X509_verify_cert(ctx);
    int result = X509_STORE_CTX_get_error(ctx);
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    ERR_clear_error();
    return ok == 1 ? X509_V_OK : (result != X509_V_OK ? result : -1);
}

/* As a strict TLS client checks a server certificate. */
static int verify_leaf(X509 *ca, X509 *leaf, const char *host, const char *ip)
{
    return verify_cert(ca, leaf, X509_PURPOSE_SSL_SERVER, host, ip);
}

static void assert_verify(int got, int want)
{
    if (got == want) return;
    fail_msg("verification gave %d (%s), expected %d (%s)", got, X509_verify_cert_error_string(got),
             want, X509_verify_cert_error_string(want));
}

/* Seconds from now to t (negative in the past). */
static long seconds_from_now(const ASN1_TIME *t)
{
    int days = 0, secs = 0;
    assert_int_equal(ASN1_TIME_diff(&days, &secs, NULL, t), 1);
    return (long)days * DAY + secs;
}

static void add_ext(X509 *cert, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, cert, cert, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_nconf_nid(NULL, &ctx, nid, value);
    assert_non_null(ext);
    assert_int_equal(X509_add_ext(cert, ext, -1), 1);
    X509_EXTENSION_free(ext);
}

/* A self-signed certificate like a real mail server's, with its own key: subject
 * C=DE, O=Upstream Mail, CN=mx.upstream.example and SANs of three kinds. */
static X509 *fake_upstream(void)
{
    EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    X509 *cert = X509_new();
    assert_non_null(key);
    assert_non_null(cert);
    X509_set_version(cert, X509_VERSION_3);
    ASN1_INTEGER_set(X509_get_serialNumber(cert), 4242);
    X509_NAME *name = X509_get_subject_name(cert);
    X509_NAME_add_entry_by_txt(name, "C", MBSTRING_ASC, (const unsigned char *)"DE", -1, -1, 0);
    X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"Upstream Mail", -1,
                               -1, 0);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                               (const unsigned char *)"mx.upstream.example", -1, -1, 0);
    X509_set_issuer_name(cert, name);
    X509_gmtime_adj(X509_getm_notBefore(cert), 0);
    X509_gmtime_adj(X509_getm_notAfter(cert), 30L * DAY);
    X509_set_pubkey(cert, key);
    add_ext(cert, NID_subject_alt_name,
            "DNS:mx.upstream.example,DNS:*.upstream.example,IP:192.0.2.7,"
            "email:postmaster@upstream.example");
    assert_true(X509_sign(cert, key, EVP_sha256()) > 0);
    EVP_PKEY_free(key);
    return cert;
}

/* ---- in-memory handshakes --------------------------------------------------------------- */

enum { CLIENT, SERVER };

struct hs {
    SSL *ssl[2];
    bool done[2], failed[2];
    char reason[2][2 * TLS_ERR_MAX]; /* tls_failure_reason, taken as soon as a side fails */
};

/* A client and a server SSL joined by a BIO pair; the client expects host. */
static void hs_new(struct hs *h, SSL_CTX *client, SSL_CTX *server, const char *host)
{
    memset(h, 0, sizeof *h);
    h->ssl[CLIENT] = SSL_new(client);
    h->ssl[SERVER] = SSL_new(server);
    assert_non_null(h->ssl[CLIENT]);
    assert_non_null(h->ssl[SERVER]);
    BIO *c = NULL, *s = NULL;
    assert_int_equal(BIO_new_bio_pair(&c, 0, &s, 0), 1);
    SSL_set_bio(h->ssl[CLIENT], c, c);
    SSL_set_bio(h->ssl[SERVER], s, s);
    SSL_set_connect_state(h->ssl[CLIENT]);
    SSL_set_accept_state(h->ssl[SERVER]);
    assert_int_equal(tls_expect_host(h->ssl[CLIENT], host), 0);
}

static void hs_free(struct hs *h)
{
    SSL_free(h->ssl[CLIENT]);
    SSL_free(h->ssl[SERVER]);
}

/* One handshake step for one side; the error queue is shared, so a failure's reason is
 * read at once. Returns whether the side moved on (finished or failed). */
static bool hs_step(struct hs *h, int side)
{
    if (h->done[side] || h->failed[side]) return false;
    int r = SSL_do_handshake(h->ssl[side]);
    if (r == 1) return h->done[side] = true;
    int e = SSL_get_error(h->ssl[side], r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return false;
    tls_failure_reason(h->ssl[side], h->reason[side], sizeof h->reason[side]);
    return h->failed[side] = true;
}

/* Pumps both sides until both are finished or failed, or neither can move. */
static void hs_run(struct hs *h)
{
    for (int i = 0; i < 100; i++) {
        hs_step(h, CLIENT);
        hs_step(h, SERVER);
        if ((h->done[CLIENT] || h->failed[CLIENT]) && (h->done[SERVER] || h->failed[SERVER])) break;
    }
}

static void assert_hs_ok(const struct hs *h)
{
    if (h->done[CLIENT] && h->done[SERVER]) return;
    fail_msg("handshake did not finish: client %s, server %s", h->reason[CLIENT],
             h->reason[SERVER]);
}

/* Contexts for a handshake with the fixture's CA: the client trusts it when trust_ca. */
struct ctxs {
    SSL_CTX *client, *server;
};

static struct ctxs ctxs_new(struct fixture *f, bool trust_ca, const char *keylog)
{
    struct ctxs c;
    c.server = tls_server_ctx(keylog, f->err, sizeof f->err);
    if (!c.server) fail_msg("tls_server_ctx: %s", f->err);
    c.client = tls_client_ctx(trust_ca ? f->ca_pem : NULL, false, keylog, f->err, sizeof f->err);
    if (!c.client) fail_msg("tls_client_ctx: %s", f->err);
    return c;
}

static void ctxs_free(struct ctxs *c)
{
    SSL_CTX_free(c->client);
    SSL_CTX_free(c->server);
}

/* A handshake where the server shows the leaf minted for leaf_name and the client expects
 * host; the caller frees h. */
static void handshake(struct fixture *f, struct ctxs *c, const char *leaf_name, const char *host,
                      struct hs *h)
{
    hs_new(h, c->client, c->server, host);
    assert_int_equal(tls_use_leaf(h->ssl[SERVER], &f->ca, leaf(f, leaf_name, NULL)), 0);
    hs_run(h);
}

/* ---- the CA on disk ------------------------------------------------------------------- */

static void first_use_creates_the_ca_with_private_modes_whatever_the_umask(void **state)
{
    struct fixture *f = *state;
    mode_t old = umask(0);
    int r = tls_ca_open(&f->ca, f->cadir, f->err, sizeof f->err);
    umask(old);
    if (r != 0) fail_msg("tls_ca_open: %s", f->err);

    char parent[160];
    snprintf(parent, sizeof parent, "%s/parent", f->tmp);
    assert_int_equal(mode_of(parent), 0700);
    assert_int_equal(mode_of(f->cadir), 0700);
    assert_int_equal(mode_of(f->ca_key), 0600);
    assert_int_equal(mode_of(f->ca_pem), 0644);
    assert_string_equal(f->ca.warning, "");
    assert_non_null(f->ca.cert);
    assert_non_null(f->ca.key);
    assert_non_null(f->ca.leaf_key);
}

static void the_ca_certificate_is_an_ec_ca_named_after_the_host(void **state)
{
    struct fixture *f = *state;
    X509 *ca = f->ca.cert;
    char cn[128];
    assert_true(
        X509_NAME_get_text_by_NID(X509_get_subject_name(ca), NID_commonName, cn, sizeof cn) > 0);
    assert_starts_with(cn, "smtptap CA ");
    assert_int_equal(X509_check_ca(ca), 1);
    int i = X509_get_ext_by_NID(ca, NID_basic_constraints, -1);
    assert_true(i >= 0);
    assert_int_equal(X509_EXTENSION_get_critical(X509_get_ext(ca, i)), 1);
    assert_int_equal(X509_get_key_usage(ca), KU_KEY_CERT_SIGN | KU_CRL_SIGN);
    assert_non_null(X509_get0_subject_key_id(ca));
    assert_true(EVP_PKEY_is_a(X509_get0_pubkey(ca), "EC"));
    long until = seconds_from_now(X509_get0_notAfter(ca));
    assert_in_range(until, 3649L * DAY, 3651L * DAY);
    assert_verify(verify_cert(ca, ca, 0, NULL, NULL), X509_V_OK);
}

static void reopening_loads_the_same_ca(void **state)
{
    struct fixture *f = *state;
    char before[TLS_ERR_MAX], after[TLS_ERR_MAX];
    tls_describe_cert(f->ca.cert, before, sizeof before);
    tls_ca_close(&f->ca);
    assert_null(f->ca.cert);
    assert_int_equal(tls_ca_open(&f->ca, f->cadir, f->err, sizeof f->err), 0);
    tls_describe_cert(f->ca.cert, after, sizeof after);
    assert_string_equal(before, after);
    assert_int_equal(X509_check_private_key(f->ca.cert, f->ca.key), 1);
}

static void a_key_from_another_ca_is_refused_with_a_clear_message(void **state)
{
    struct fixture *f = *state;
    struct tls_ca other;
    char other_dir[160], other_key[200];
    snprintf(other_dir, sizeof other_dir, "%s/other", f->tmp);
    snprintf(other_key, sizeof other_key, "%s/ca.key", other_dir);
    assert_int_equal(tls_ca_open(&other, other_dir, f->err, sizeof f->err), 0);
    tls_ca_close(&other);
    tls_ca_close(&f->ca);
    assert_int_equal(rename(other_key, f->ca_key), 0);

    assert_int_equal(tls_ca_open(&f->ca, f->cadir, f->err, sizeof f->err), -1);
    char want[300];
    snprintf(want, sizeof want, "ca.key does not belong to ca.pem in %s", f->cadir);
    assert_contains(f->err, want);
    assert_null(f->ca.cert);
    assert_null(f->ca.key);
}

static void a_certificate_without_its_key_is_refused_not_replaced(void **state)
{
    struct fixture *f = *state;
    char before[TLS_ERR_MAX];
    tls_describe_cert(f->ca.cert, before, sizeof before);
    tls_ca_close(&f->ca);
    assert_int_equal(unlink(f->ca_key), 0);

    assert_int_equal(tls_ca_open(&f->ca, f->cadir, f->err, sizeof f->err), -1);
    assert_contains(f->err, "has ca.pem but no ca.key");
    assert_int_equal(access(f->ca_key, F_OK), -1);
    FILE *pem = fopen(f->ca_pem, "r");
    assert_non_null(pem);
    X509 *still = PEM_read_X509(pem, NULL, NULL, NULL);
    fclose(pem);
    char after[TLS_ERR_MAX];
    tls_describe_cert(still, after, sizeof after);
    X509_free(still);
    assert_string_equal(before, after);
}

static void a_garbled_key_is_refused_naming_the_file(void **state)
{
    struct fixture *f = *state;
    tls_ca_close(&f->ca);
    FILE *key = fopen(f->ca_key, "w");
    assert_non_null(key);
    fputs("-----BEGIN PRIVATE KEY-----\nnot base64\n-----END PRIVATE KEY-----\n", key);
    fclose(key);
    assert_int_equal(tls_ca_open(&f->ca, f->cadir, f->err, sizeof f->err), -1);
    char want[300];
    snprintf(want, sizeof want, "cannot read %s", f->ca_key);
    assert_contains(f->err, want);
}

static void a_loose_directory_and_key_are_accepted_with_a_warning(void **state)
{
    struct fixture *f = *state;
    tls_ca_close(&f->ca);
    assert_int_equal(chmod(f->cadir, 0755), 0);
    assert_int_equal(tls_ca_open(&f->ca, f->cadir, f->err, sizeof f->err), 0);
    assert_contains(f->ca.warning, "CA directory");
    assert_contains(f->ca.warning, "mode 755");
    assert_contains(f->ca.warning, "chmod 700");

    tls_ca_close(&f->ca);
    assert_int_equal(chmod(f->cadir, 0700), 0);
    assert_int_equal(chmod(f->ca_key, 0640), 0);
    assert_int_equal(tls_ca_open(&f->ca, f->cadir, f->err, sizeof f->err), 0);
    assert_contains(f->ca.warning, "ca.key is mode 640");
    assert_contains(f->ca.warning, "chmod 600");
}

static void a_file_in_place_of_the_directory_is_refused(void **state)
{
    struct fixture *f = *state;
    char path[160];
    snprintf(path, sizeof path, "%s/plainfile", f->tmp);
    FILE *file = fopen(path, "w");
    assert_non_null(file);
    fclose(file);
    assert_int_equal(tls_ca_open(&f->ca, path, f->err, sizeof f->err), -1);
    assert_contains(f->err, "is not a directory");
}

static void print_ca_writes_the_certificate_as_pem(void **state)
{
    struct fixture *f = *state;
    FILE *out = tmpfile();
    assert_non_null(out);
    assert_int_equal(tls_ca_write_pem(&f->ca, out), 0);
    rewind(out);
    X509 *back = PEM_read_X509(out, NULL, NULL, NULL);
    fclose(out);
    assert_non_null(back);
    assert_int_equal(X509_cmp(back, f->ca.cert), 0);
    X509_free(back);
}

static void the_default_directory_follows_xdg_then_home(void **state)
{
    (void)state;
    char *xdg = getenv("XDG_DATA_HOME") ? strdup(getenv("XDG_DATA_HOME")) : NULL;
    char *home = getenv("HOME") ? strdup(getenv("HOME")) : NULL;
    char dir[4096];

    setenv("XDG_DATA_HOME", "/data/xdg", 1);
    tls_default_ca_dir(dir, sizeof dir);
    assert_string_equal(dir, "/data/xdg/smtptap");

    setenv("HOME", "/home/alice", 1);
    setenv("XDG_DATA_HOME", "relative/is/ignored", 1);
    tls_default_ca_dir(dir, sizeof dir);
    assert_string_equal(dir, "/home/alice/.local/share/smtptap");
    unsetenv("XDG_DATA_HOME");
    tls_default_ca_dir(dir, sizeof dir);
    assert_string_equal(dir, "/home/alice/.local/share/smtptap");

    if (xdg) setenv("XDG_DATA_HOME", xdg, 1);
    if (home) setenv("HOME", home, 1);
    free(xdg);
    free(home);
}

/* ---- leaves --------------------------------------------------------------------------- */

static void a_leaf_for_a_name_verifies_for_that_name_only(void **state)
{
    struct fixture *f = *state;
    X509 *cert = leaf(f, "smtp.example.com", NULL);
    char sans[512];
    sans_text(cert, sans, sizeof sans);
    assert_string_equal(sans, "DNS:smtp.example.com\n");
    char cn[128];
    assert_true(
        X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof cn) > 0);
    assert_string_equal(cn, "smtp.example.com");
    assert_int_equal(X509_NAME_cmp(X509_get_issuer_name(cert), X509_get_subject_name(f->ca.cert)),
                     0);

    assert_verify(verify_leaf(f->ca.cert, cert, "smtp.example.com", NULL), X509_V_OK);
    assert_verify(verify_leaf(f->ca.cert, cert, "SMTP.Example.COM", NULL), X509_V_OK);
    assert_verify(verify_leaf(f->ca.cert, cert, "other.example.com", NULL),
                  X509_V_ERR_HOSTNAME_MISMATCH);
    assert_verify(verify_leaf(f->ca.cert, cert, NULL, "127.0.0.1"), X509_V_ERR_IP_ADDRESS_MISMATCH);
}

static void a_leaf_has_the_extensions_a_tls_server_needs(void **state)
{
    struct fixture *f = *state;
    X509 *cert = leaf(f, "smtp.example.com", NULL);
    assert_int_equal(X509_check_ca(cert), 0);
    int i = X509_get_ext_by_NID(cert, NID_basic_constraints, -1);
    assert_true(i >= 0);
    assert_int_equal(X509_EXTENSION_get_critical(X509_get_ext(cert, i)), 1);
    assert_true(X509_get_extension_flags(cert) & EXFLAG_XKUSAGE);
    assert_int_equal(X509_get_extended_key_usage(cert), XKU_SSL_SERVER);
    assert_int_equal(X509_get_key_usage(cert), KU_DIGITAL_SIGNATURE);
    const ASN1_OCTET_STRING *aki = X509_get0_authority_key_id(cert);
    assert_non_null(aki);
    assert_int_equal(ASN1_OCTET_STRING_cmp(aki, X509_get0_subject_key_id(f->ca.cert)), 0);
    assert_non_null(X509_get0_subject_key_id(cert));
    assert_int_equal(X509_get_version(cert), X509_VERSION_3);
}

static void a_leaf_for_an_ipv4_literal_has_an_ip_san(void **state)
{
    struct fixture *f = *state;
    X509 *cert = leaf(f, "127.0.0.1", NULL);
    char sans[512];
    sans_text(cert, sans, sizeof sans);
    assert_string_equal(sans, "IP:127.0.0.1/4\n");
    assert_verify(verify_leaf(f->ca.cert, cert, NULL, "127.0.0.1"), X509_V_OK);
    assert_verify(verify_leaf(f->ca.cert, cert, NULL, "127.0.0.2"), X509_V_ERR_IP_ADDRESS_MISMATCH);
}

static void a_leaf_for_an_ipv6_literal_has_an_ip_san(void **state)
{
    struct fixture *f = *state;
    X509 *cert = leaf(f, "::1", NULL);
    char sans[512];
    sans_text(cert, sans, sizeof sans);
    assert_string_equal(sans, "IP:::1/16\n");
    assert_verify(verify_leaf(f->ca.cert, cert, NULL, "::1"), X509_V_OK);
    assert_verify(verify_leaf(f->ca.cert, cert, NULL, "::2"), X509_V_ERR_IP_ADDRESS_MISMATCH);
    assert_verify(verify_leaf(f->ca.cert, cert, "localhost", NULL), X509_V_ERR_HOSTNAME_MISMATCH);
}

static void a_leaf_is_valid_from_yesterday_for_397_days(void **state)
{
    struct fixture *f = *state;
    X509 *cert = leaf(f, "smtp.example.com", NULL);
    assert_in_range(seconds_from_now(X509_get0_notBefore(cert)) + DAY + 60, 0, 120);
    assert_in_range(seconds_from_now(X509_get0_notAfter(cert)) - 397L * DAY + 60, 0, 120);
    int days = 0, secs = 0;
    assert_int_equal(
        ASN1_TIME_diff(&days, &secs, X509_get0_notBefore(cert), X509_get0_notAfter(cert)), 1);
    assert_true(days * DAY + secs <= 398 * DAY);
}

static void leaves_share_one_ec_key_and_have_random_serials(void **state)
{
    struct fixture *f = *state;
    X509 *a = leaf(f, "a.example", NULL), *b = leaf(f, "b.example", NULL);
    EVP_PKEY *ka = X509_get0_pubkey(a), *kb = X509_get0_pubkey(b);
    assert_true(EVP_PKEY_is_a(ka, "EC"));
    char group[64];
    assert_int_equal(EVP_PKEY_get_group_name(ka, group, sizeof group, NULL), 1);
    assert_string_equal(group, "prime256v1");
    assert_int_equal(EVP_PKEY_eq(ka, kb), 1);
    assert_int_equal(EVP_PKEY_eq(ka, f->ca.leaf_key), 1);
    assert_int_not_equal(EVP_PKEY_eq(ka, X509_get0_pubkey(f->ca.cert)), 1);

    BIGNUM *sa = ASN1_INTEGER_to_BN(X509_get0_serialNumber(a), NULL);
    BIGNUM *sb = ASN1_INTEGER_to_BN(X509_get0_serialNumber(b), NULL);
    assert_true(BN_num_bits(sa) >= 64);
    assert_true(BN_num_bits(sb) >= 64);
    assert_false(BN_is_negative(sa));
    assert_int_not_equal(BN_cmp(sa, sb), 0);
    BN_free(sa);
    BN_free(sb);
}

static void the_cache_returns_the_same_leaf_for_the_same_name(void **state)
{
    struct fixture *f = *state;
    X509 *first = leaf(f, "smtp.example.com", NULL);
    X509 *other = leaf(f, "mx.example.com", NULL);
    assert_ptr_equal(leaf(f, "smtp.example.com", NULL), first);
    assert_ptr_equal(leaf(f, "SMTP.example.com", NULL), first);
    assert_ptr_not_equal(other, first);
    assert_int_equal(f->ca.nleaves, 2);
}

static void the_cache_is_bounded_and_evicts_the_oldest(void **state)
{
    struct fixture *f = *state;
    char name[64];
    for (int i = 0; i <= TLS_LEAF_CACHE_MAX; i++) {
        snprintf(name, sizeof name, "h%d.example", i);
        leaf(f, name, NULL);
    }
    assert_int_equal(f->ca.nleaves, TLS_LEAF_CACHE_MAX);
    assert_string_equal(f->ca.leaves[0].name, "h1.example");
    snprintf(name, sizeof name, "h%d.example", TLS_LEAF_CACHE_MAX);
    assert_string_equal(f->ca.leaves[TLS_LEAF_CACHE_MAX - 1].name, name);

    X509 *again = leaf(f, "h0.example", NULL);
    assert_int_equal(f->ca.nleaves, TLS_LEAF_CACHE_MAX);
    assert_ptr_equal(f->ca.leaves[TLS_LEAF_CACHE_MAX - 1].cert, again);
    assert_string_equal(f->ca.leaves[0].name, "h2.example");
}

static void a_leaf_copies_the_upstream_subject_and_names_and_adds_its_own(void **state)
{
    struct fixture *f = *state;
    X509 *up = fake_upstream();
    X509 *cert = leaf(f, "smtp.alias.example", up);
    assert_int_equal(X509_NAME_cmp(X509_get_subject_name(cert), X509_get_subject_name(up)), 0);
    assert_int_equal(X509_NAME_cmp(X509_get_issuer_name(cert), X509_get_subject_name(f->ca.cert)),
                     0);
    char sans[512];
    sans_text(cert, sans, sizeof sans);
    assert_string_equal(sans, "DNS:mx.upstream.example\nDNS:*.upstream.example\nIP:192.0.2.7/4\n"
                              "DNS:smtp.alias.example\n");
    assert_int_equal(EVP_PKEY_eq(X509_get0_pubkey(cert), f->ca.leaf_key), 1);
    assert_verify(verify_leaf(f->ca.cert, cert, "smtp.alias.example", NULL), X509_V_OK);
    assert_verify(verify_leaf(f->ca.cert, cert, "relay.upstream.example", NULL), X509_V_OK);
    assert_verify(verify_leaf(f->ca.cert, cert, NULL, "192.0.2.7"), X509_V_OK);
    assert_verify(verify_leaf(f->ca.cert, cert, "upstream.example", NULL),
                  X509_V_ERR_HOSTNAME_MISMATCH);
    X509_free(up);
}

static void a_name_the_upstream_already_covers_is_not_added_twice(void **state)
{
    struct fixture *f = *state;
    X509 *up = fake_upstream();
    char sans[512];
    const char *want = "DNS:mx.upstream.example\nDNS:*.upstream.example\nIP:192.0.2.7/4\n";
    sans_text(leaf(f, "MX.Upstream.Example", up), sans, sizeof sans);
    assert_string_equal(sans, want);
    sans_text(leaf(f, "192.0.2.7", up), sans, sizeof sans);
    assert_string_equal(sans, want);
    X509_free(up);
}

static void the_cache_tells_a_leaf_with_upstream_from_one_without(void **state)
{
    struct fixture *f = *state;
    X509 *up = fake_upstream();
    X509 *plain = leaf(f, "mx.upstream.example", NULL);
    X509 *copied = leaf(f, "mx.upstream.example", up);
    assert_ptr_not_equal(plain, copied);
    assert_ptr_equal(leaf(f, "mx.upstream.example", up), copied);
    assert_ptr_equal(leaf(f, "mx.upstream.example", NULL), plain);
    X509_free(up);
}

static void an_empty_or_overlong_name_is_refused(void **state)
{
    struct fixture *f = *state;
    char name[300];
    memset(name, 'a', sizeof name - 1);
    name[sizeof name - 1] = 0;
    assert_null(tls_ca_leaf(&f->ca, "", NULL, f->err, sizeof f->err));
    assert_contains(f->err, "empty or too long");
    assert_null(tls_ca_leaf(&f->ca, name, NULL, f->err, sizeof f->err));
    assert_contains(f->err, "empty or too long");
    assert_int_equal(f->ca.nleaves, 0);
}

/* ---- contexts ------------------------------------------------------------------------- */

static void the_server_context_wants_tls12_and_shows_truncation(void **state)
{
    struct fixture *f = *state;
    SSL_CTX *ctx = tls_server_ctx(NULL, f->err, sizeof f->err);
    assert_non_null(ctx);
    assert_int_equal(SSL_CTX_get_min_proto_version(ctx), TLS1_2_VERSION);
    assert_true(SSL_CTX_get_mode(ctx) & SSL_MODE_RELEASE_BUFFERS);
    assert_false(SSL_CTX_get_options(ctx) & SSL_OP_IGNORE_UNEXPECTED_EOF);
    SSL_CTX_free(ctx);
}

static void the_client_context_verifies_unless_insecure(void **state)
{
    struct fixture *f = *state;
    SSL_CTX *strict = tls_client_ctx(f->ca_pem, false, NULL, f->err, sizeof f->err);
    SSL_CTX *insecure = tls_client_ctx(NULL, true, NULL, f->err, sizeof f->err);
    assert_non_null(strict);
    assert_non_null(insecure);
    assert_int_equal(SSL_CTX_get_verify_mode(strict), SSL_VERIFY_PEER);
    assert_int_equal(SSL_CTX_get_verify_mode(insecure), SSL_VERIFY_NONE);
    assert_true(SSL_CTX_get_mode(strict) & SSL_MODE_RELEASE_BUFFERS);
    assert_false(SSL_CTX_get_options(strict) & SSL_OP_IGNORE_UNEXPECTED_EOF);
    SSL_CTX_free(strict);
    SSL_CTX_free(insecure);
}

static void a_missing_extra_ca_file_is_named_in_the_error(void **state)
{
    struct fixture *f = *state;
    char path[200];
    snprintf(path, sizeof path, "%s/nope.pem", f->tmp);
    assert_null(tls_client_ctx(path, false, NULL, f->err, sizeof f->err));
    assert_contains(f->err, path);
    assert_contains(f->err, "No such file");

    snprintf(path, sizeof path, "%s/empty.pem", f->tmp);
    FILE *empty = fopen(path, "w");
    assert_non_null(empty);
    fclose(empty);
    assert_null(tls_client_ctx(path, false, NULL, f->err, sizeof f->err));
    assert_contains(f->err, "cannot load CA file");
}

/* ---- handshakes ----------------------------------------------------------------------- */

static void a_client_that_trusts_the_ca_completes_and_verifies_the_host(void **state)
{
    struct fixture *f = *state;
    struct ctxs c = ctxs_new(f, true, NULL);
    struct hs h;
    handshake(f, &c, "smtp.example.com", "smtp.example.com", &h);
    assert_hs_ok(&h);
    assert_int_equal(SSL_get_verify_result(h.ssl[CLIENT]), X509_V_OK);

    char text[2 * TLS_ERR_MAX], cert[TLS_ERR_MAX];
    tls_describe(h.ssl[CLIENT], true, text, sizeof text);
    tls_describe_cert(leaf(f, "smtp.example.com", NULL), cert, sizeof cert);
    assert_starts_with(text, "TLSv1.3 TLS_");
    assert_contains(text, ", SNI smtp.example.com, subject CN=smtp.example.com, issuer ");
    assert_contains(text, cert);
    assert_contains(text, ", verified");
    tls_describe(h.ssl[SERVER], false, text, sizeof text);
    assert_contains(text, "SNI smtp.example.com");
    assert_false(strstr(text, "verified"));

    const char ehlo[] = "EHLO laptop.local\r\n";
    char got[64] = "";
    assert_int_equal(SSL_write(h.ssl[CLIENT], ehlo, sizeof ehlo - 1), sizeof ehlo - 1);
    assert_int_equal(SSL_read(h.ssl[SERVER], got, sizeof got - 1), sizeof ehlo - 1);
    assert_string_equal(got, ehlo);
    hs_free(&h);
    ctxs_free(&c);
}

static void a_client_that_does_not_trust_the_ca_fails_and_says_why(void **state)
{
    struct fixture *f = *state;
    struct ctxs c = ctxs_new(f, false, NULL);
    struct hs h;
    handshake(f, &c, "smtp.example.com", "smtp.example.com", &h);
    assert_true(h.failed[CLIENT]);
    assert_true(h.failed[SERVER]);
    assert_starts_with(h.reason[CLIENT],
                       "certificate verify failed: unable to get local issuer certificate; peer "
                       "certificate subject CN=smtp.example.com, issuer CN=smtptap CA ");
    char cert[TLS_ERR_MAX];
    tls_describe_cert(leaf(f, "smtp.example.com", NULL), cert, sizeof cert);
    assert_contains(h.reason[CLIENT], cert);
    assert_string_equal(h.reason[SERVER], "client sent alert: unknown CA");
    /* The CA the client lacks, for the hint "--upstream-ca FILE" (issue 15 item 12). */
    char issuer[300];
    assert_true(tls_untrusted_issuer(h.ssl[CLIENT], issuer, sizeof issuer));
    assert_starts_with(issuer, "CN=smtptap CA ");
    assert_false(tls_untrusted_issuer(NULL, issuer, sizeof issuer));
    assert_string_equal(issuer, "");
    hs_free(&h);
    ctxs_free(&c);
}

static void a_client_that_expects_another_host_fails_and_names_it(void **state)
{
    struct fixture *f = *state;
    struct ctxs c = ctxs_new(f, true, NULL);
    struct hs h;
    handshake(f, &c, "smtp.example.com", "mail.example.org", &h);
    assert_true(h.failed[CLIENT]);
    assert_starts_with(h.reason[CLIENT],
                       "certificate verify failed: hostname mismatch (expected mail.example.org); "
                       "peer certificate subject CN=smtp.example.com");
    char issuer[300];
    assert_false(tls_untrusted_issuer(h.ssl[CLIENT], issuer, sizeof issuer)); /* CA trusted */
    assert_true(h.failed[SERVER]);
    assert_starts_with(h.reason[SERVER], "client sent alert: ");
    hs_free(&h);
    ctxs_free(&c);
}

static void a_server_that_refuses_the_client_is_reported_from_both_sides(void **state)
{
    struct fixture *f = *state;
    struct ctxs c = ctxs_new(f, true, NULL);
    struct hs h;
    hs_new(&h, c.client, c.server, "smtp.example.com");
    /* a TLS 1.3 client whose only suite the server does not enable */
    assert_int_equal(SSL_set_min_proto_version(h.ssl[CLIENT], TLS1_3_VERSION), 1);
    assert_int_equal(SSL_set_ciphersuites(h.ssl[CLIENT], "TLS_AES_128_CCM_8_SHA256"), 1);
    assert_int_equal(tls_use_leaf(h.ssl[SERVER], &f->ca, leaf(f, "smtp.example.com", NULL)), 0);
    hs_run(&h);
    assert_true(h.failed[SERVER]);
    assert_string_equal(h.reason[SERVER], "no shared cipher");
    assert_true(h.failed[CLIENT]);
    assert_string_equal(h.reason[CLIENT], "server sent alert: handshake failure");
    hs_free(&h);
    ctxs_free(&c);
}

static void an_ip_upstream_is_checked_by_ip_and_gets_no_sni(void **state)
{
    struct fixture *f = *state;
    struct ctxs c = ctxs_new(f, true, NULL);
    struct hs h;
    handshake(f, &c, "127.0.0.1", "127.0.0.1", &h);
    assert_hs_ok(&h);
    char text[2 * TLS_ERR_MAX];
    tls_describe(h.ssl[SERVER], false, text, sizeof text);
    assert_contains(text, ", no SNI");
    tls_describe(h.ssl[CLIENT], true, text, sizeof text);
    assert_contains(text, ", verified");
    hs_free(&h);

    handshake(f, &c, "127.0.0.1", "127.0.0.2", &h);
    assert_true(h.failed[CLIENT]);
    assert_starts_with(h.reason[CLIENT],
                       "certificate verify failed: IP address mismatch (expected 127.0.0.2)");
    hs_free(&h);
    ctxs_free(&c);
}

static void an_insecure_client_completes_and_still_reports_the_verify_error(void **state)
{
    struct fixture *f = *state;
    struct ctxs c = ctxs_new(f, false, NULL);
    SSL_CTX_free(c.client);
    c.client = tls_client_ctx(NULL, true, NULL, f->err, sizeof f->err);
    assert_non_null(c.client);
    struct hs h;
    handshake(f, &c, "smtp.example.com", "smtp.example.com", &h);
    assert_hs_ok(&h);
    char text[2 * TLS_ERR_MAX];
    tls_describe(h.ssl[CLIENT], true, text, sizeof text);
    assert_contains(text, ", not verified: unable to get local issuer certificate");
    hs_free(&h);
    ctxs_free(&c);
}

static void a_peer_that_vanishes_without_close_notify_is_reported_as_truncation(void **state)
{
    struct fixture *f = *state;
    struct ctxs c = ctxs_new(f, true, NULL);
    struct hs h;
    handshake(f, &c, "smtp.example.com", "smtp.example.com", &h);
    assert_hs_ok(&h);
    char byte;
    assert_int_equal(SSL_read(h.ssl[CLIENT], &byte, 1), -1); /* takes the session tickets */
    assert_int_equal(BIO_shutdown_wr(SSL_get_wbio(h.ssl[CLIENT])), 1);
    int r = SSL_read(h.ssl[SERVER], &byte, 1);
    assert_true(r <= 0);
    assert_int_equal(SSL_get_error(h.ssl[SERVER], r), SSL_ERROR_SSL);
    char reason[TLS_ERR_MAX];
    tls_failure_reason(h.ssl[SERVER], reason, sizeof reason);
    assert_string_equal(reason,
                        "the client closed the connection without close_notify (truncated)");
    assert_int_equal(ERR_peek_error(), 0);
    hs_free(&h);
    ctxs_free(&c);
}

static void a_client_that_hangs_up_mid_handshake_is_reported_as_such(void **state)
{
    struct fixture *f = *state;
    struct ctxs c = ctxs_new(f, true, NULL);
    struct hs h;
    hs_new(&h, c.client, c.server, "smtp.example.com");
    assert_int_equal(tls_use_leaf(h.ssl[SERVER], &f->ca, leaf(f, "smtp.example.com", NULL)), 0);
    hs_step(&h, CLIENT);
    assert_int_equal(BIO_shutdown_wr(SSL_get_wbio(h.ssl[CLIENT])), 1);
    hs_step(&h, SERVER);
    hs_step(&h, SERVER);
    assert_true(h.failed[SERVER]);
    assert_string_equal(h.reason[SERVER], "the client closed the connection during the handshake");
    hs_free(&h);
    ctxs_free(&c);
}

/* ---- key log -------------------------------------------------------------------------- */

static int open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    assert_non_null(d);
    while (readdir(d)) n++;
    closedir(d);
    return n;
}

/* Lines of path that start with label, copied into lines[]; returns how many. */
static int lines_with(const char *path, const char *label, char lines[][256], int max)
{
    FILE *in = fopen(path, "r");
    assert_non_null(in);
    char line[256];
    int n = 0;
    while (fgets(line, sizeof line, in))
        if (strncmp(line, label, strlen(label)) == 0 && n < max) strcpy(lines[n++], line);
    fclose(in);
    return n;
}

static void the_key_log_gets_tls13_secrets_from_both_sides_in_a_private_file(void **state)
{
    struct fixture *f = *state;
    char path[200], lines[4][256];
    snprintf(path, sizeof path, "%s/keys.log", f->tmp);
    int fds = open_fds();
    struct ctxs c = ctxs_new(f, true, path);
    struct hs h;
    handshake(f, &c, "smtp.example.com", "smtp.example.com", &h);
    assert_hs_ok(&h);
    assert_int_equal(mode_of(path), 0600);
    assert_int_equal(lines_with(path, "CLIENT_HANDSHAKE_TRAFFIC_SECRET ", lines, 4), 2);
    assert_string_equal(lines[0], lines[1]); /* client and server logged the same secret */
    assert_int_equal(lines_with(path, "SERVER_TRAFFIC_SECRET_0 ", lines, 4), 2);
    assert_int_equal(lines_with(path, "CLIENT_RANDOM ", lines, 4), 0);
    hs_free(&h);
    ctxs_free(&c);
    assert_int_equal(open_fds(), fds); /* closed with the last context */
}

static void the_key_log_gets_client_random_lines_for_tls12(void **state)
{
    struct fixture *f = *state;
    char path[200], lines[4][256];
    snprintf(path, sizeof path, "%s/keys.log", f->tmp);
    struct ctxs c = ctxs_new(f, true, path);
    assert_int_equal(SSL_CTX_set_max_proto_version(c.server, TLS1_2_VERSION), 1);
    struct hs h;
    handshake(f, &c, "smtp.example.com", "smtp.example.com", &h);
    assert_hs_ok(&h);
    assert_string_equal(SSL_get_version(h.ssl[CLIENT]), "TLSv1.2");
    assert_int_equal(lines_with(path, "CLIENT_RANDOM ", lines, 4), 2);
    assert_int_equal(strlen(lines[0]), strlen("CLIENT_RANDOM ") + 64 + 1 + 96 + 1);
    hs_free(&h);
    ctxs_free(&c);
}

static void a_key_log_that_cannot_be_opened_is_an_error(void **state)
{
    struct fixture *f = *state;
    char path[200];
    snprintf(path, sizeof path, "%s/missing/keys.log", f->tmp);
    assert_null(tls_server_ctx(path, f->err, sizeof f->err));
    assert_contains(f->err, "cannot open the file");
    assert_contains(f->err, path);
    assert_null(tls_client_ctx(NULL, false, path, f->err, sizeof f->err));
    assert_contains(f->err, "cannot open the file");
    /* What the server says at start names the flag (issue 15 item 11). */
    char note[TLS_ERR_MAX], want[TLS_ERR_MAX];
    assert_int_equal(tls_keylog_prepare(path, note, sizeof note, f->err, sizeof f->err), -1);
    snprintf(want, sizeof want,
             "--keylog %s: cannot open the file: No such file or directory; expected a file "
             "smtptap can create or append to",
             path);
    assert_string_equal(f->err, want);
}

/* Opened 0600, but an existing file kept its mode: one others can read is made 0600 (it
 * decrypts every session), said in the note; a private one is left alone, quietly. */
static void an_existing_key_log_open_to_others_is_made_private(void **state)
{
    struct fixture *f = *state;
    char path[200], note[TLS_ERR_MAX], want[TLS_ERR_MAX];
    snprintf(path, sizeof path, "%s/keys.log", f->tmp);
    FILE *old = fopen(path, "w");
    assert_non_null(old);
    fputs("CLIENT_RANDOM from an earlier run\n", old);
    fclose(old);
    assert_int_equal(chmod(path, 0644), 0);
    assert_int_equal(tls_keylog_prepare(path, note, sizeof note, f->err, sizeof f->err), 0);
    assert_int_equal(mode_of(path), 0600);
    snprintf(want, sizeof want,
             "--keylog %s: the file was mode 644, open to other users; it is 600 now (it holds "
             "the keys to every TLS session smtptap logs)",
             path);
    assert_string_equal(note, want);
    assert_int_equal(tls_keylog_prepare(path, note, sizeof note, f->err, sizeof f->err), 0);
    assert_string_equal(note, "");

    /* The contexts do the same, and append. */
    assert_int_equal(chmod(path, 0666), 0);
    struct ctxs c = ctxs_new(f, true, path);
    assert_int_equal(mode_of(path), 0600);
    struct hs h;
    handshake(f, &c, "smtp.example.com", "smtp.example.com", &h);
    assert_hs_ok(&h);
    char lines[4][256];
    assert_int_equal(lines_with(path, "CLIENT_RANDOM from", lines, 4), 1);
    assert_int_equal(lines_with(path, "SERVER_TRAFFIC_SECRET_0 ", lines, 4), 2);
    hs_free(&h);
    ctxs_free(&c);
}

/* ---- words ---------------------------------------------------------------------------- */

static void a_certificate_is_described_with_an_upper_case_sha256_fingerprint(void **state)
{
    (void)state;
    X509 *up = fake_upstream();
    char text[TLS_ERR_MAX];
    tls_describe_cert(up, text, sizeof text);

    unsigned char *der = NULL, md[32];
    int len = i2d_X509(up, &der);
    assert_true(len > 0);
    assert_int_equal(EVP_Digest(der, (size_t)len, md, NULL, EVP_sha256(), NULL), 1);
    OPENSSL_free(der);
    char want[TLS_ERR_MAX] = "subject CN=mx.upstream.example,O=Upstream Mail,C=DE, issuer "
                             "CN=mx.upstream.example,O=Upstream Mail,C=DE, sha256 ";
    for (int i = 0; i < 32; i++)
        snprintf(want + strlen(want), sizeof want - strlen(want), i ? ":%02X" : "%02X", md[i]);
    assert_string_equal(text, want);
    X509_free(up);

    tls_describe_cert(NULL, text, sizeof text);
    assert_string_equal(text, "no certificate");
}

static void a_failure_without_an_error_says_so_and_a_short_buffer_is_respected(void **state)
{
    (void)state;
    char text[16];
    ERR_clear_error();
    tls_failure_reason(NULL, text, sizeof text);
    assert_string_equal(text, "TLS failed with");
    X509 *up = fake_upstream();
    tls_describe_cert(up, text, sizeof text);
    assert_string_equal(text, "subject CN=mx.u");
    X509_free(up);
}

#define CA_TEST(t)  cmocka_unit_test_setup_teardown(t, ca_setup, fixture_teardown)
#define DIR_TEST(t) cmocka_unit_test_setup_teardown(t, fixture_setup, fixture_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        DIR_TEST(first_use_creates_the_ca_with_private_modes_whatever_the_umask),
        CA_TEST(the_ca_certificate_is_an_ec_ca_named_after_the_host),
        CA_TEST(reopening_loads_the_same_ca),
        CA_TEST(a_key_from_another_ca_is_refused_with_a_clear_message),
        CA_TEST(a_certificate_without_its_key_is_refused_not_replaced),
        CA_TEST(a_garbled_key_is_refused_naming_the_file),
        CA_TEST(a_loose_directory_and_key_are_accepted_with_a_warning),
        DIR_TEST(a_file_in_place_of_the_directory_is_refused),
        CA_TEST(print_ca_writes_the_certificate_as_pem),
        cmocka_unit_test(the_default_directory_follows_xdg_then_home),
        CA_TEST(a_leaf_for_a_name_verifies_for_that_name_only),
        CA_TEST(a_leaf_has_the_extensions_a_tls_server_needs),
        CA_TEST(a_leaf_for_an_ipv4_literal_has_an_ip_san),
        CA_TEST(a_leaf_for_an_ipv6_literal_has_an_ip_san),
        CA_TEST(a_leaf_is_valid_from_yesterday_for_397_days),
        CA_TEST(leaves_share_one_ec_key_and_have_random_serials),
        CA_TEST(the_cache_returns_the_same_leaf_for_the_same_name),
        CA_TEST(the_cache_is_bounded_and_evicts_the_oldest),
        CA_TEST(a_leaf_copies_the_upstream_subject_and_names_and_adds_its_own),
        CA_TEST(a_name_the_upstream_already_covers_is_not_added_twice),
        CA_TEST(the_cache_tells_a_leaf_with_upstream_from_one_without),
        CA_TEST(an_empty_or_overlong_name_is_refused),
        CA_TEST(the_server_context_wants_tls12_and_shows_truncation),
        CA_TEST(the_client_context_verifies_unless_insecure),
        CA_TEST(a_missing_extra_ca_file_is_named_in_the_error),
        CA_TEST(a_client_that_trusts_the_ca_completes_and_verifies_the_host),
        CA_TEST(a_client_that_does_not_trust_the_ca_fails_and_says_why),
        CA_TEST(a_client_that_expects_another_host_fails_and_names_it),
        CA_TEST(a_server_that_refuses_the_client_is_reported_from_both_sides),
        CA_TEST(an_ip_upstream_is_checked_by_ip_and_gets_no_sni),
        CA_TEST(an_insecure_client_completes_and_still_reports_the_verify_error),
        CA_TEST(a_peer_that_vanishes_without_close_notify_is_reported_as_truncation),
        CA_TEST(a_client_that_hangs_up_mid_handshake_is_reported_as_such),
        CA_TEST(the_key_log_gets_tls13_secrets_from_both_sides_in_a_private_file),
        CA_TEST(the_key_log_gets_client_random_lines_for_tls12),
        CA_TEST(a_key_log_that_cannot_be_opened_is_an_error),
        CA_TEST(an_existing_key_log_open_to_others_is_made_private),
        cmocka_unit_test(a_certificate_is_described_with_an_upper_case_sha256_fingerprint),
        cmocka_unit_test(a_failure_without_an_error_says_so_and_a_short_buffer_is_respected),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
