/* auth.c - pure SASL decoding for the transcript: what each line of an AUTH exchange means and
 * which of its bytes are secret (see auth.h). Fixed buffers only; no I/O, no allocation. */
#include "smtptap/auth.h"

#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* RFC 4954 §4: servers should accept AUTH lines of 12288 octets. Longer payloads are not
 * decoded (and stay entirely secret), which also bounds the decode buffer. */
enum { AUTH_LINE_MAX = 12288, AUTH_DECODED_MAX = AUTH_LINE_MAX / 4 * 3 };

/* ---- bounded text ------------------------------------------------------------------------ */

/* A NUL-terminated string in a fixed buffer. Pieces are appended whole or not at all; the
 * first piece that does not fit ends the text with "...", for which 4 bytes are reserved. */
struct sb {
    char *buf;
    size_t cap, len;
    bool full;
};

static void sb_init(struct sb *s, char *buf, size_t size)
{
    s->buf = buf;
    s->cap = size - 4;
    s->len = 0;
    s->full = false;
    buf[0] = '\0';
}

static void sb_put(struct sb *s, const char *p, size_t n)
{
    if (s->full) return;
    if (n > s->cap - s->len) {
        memcpy(s->buf + s->len, "...", 4);
        s->full = true;
        return;
    }
    memcpy(s->buf + s->len, p, n);
    s->len += n;
    s->buf[s->len] = '\0';
}

__attribute__((format(printf, 2, 0))) static void sb_vfmt(struct sb *s, const char *fmt, va_list ap)
{
    char tmp[AUTH_TEXT_MAX];
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    if (n < 0) return;
    sb_put(s, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

__attribute__((format(printf, 2, 3))) static void sb_fmt(struct sb *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sb_vfmt(s, fmt, ap);
    va_end(ap);
}

/* Appends bytes as printable ASCII: \\ for a backslash, \" for a quote when quoted, \xNN for
 * anything else outside 0x20-0x7e. */
static void sb_escaped(struct sb *s, const uint8_t *p, size_t n, bool quoted)
{
    for (size_t i = 0; i < n && !s->full; i++) {
        char esc[8];
        if (p[i] == '\\' || (quoted && p[i] == '"')) {
            esc[0] = '\\', esc[1] = (char)p[i];
            sb_put(s, esc, 2);
        } else if (p[i] >= 0x20 && p[i] < 0x7f) {
            sb_put(s, (const char *)p + i, 1);
        } else {
            snprintf(esc, sizeof esc, "\\x%02X", p[i]);
            sb_put(s, esc, 4);
        }
    }
}

/* ---- building a view ---------------------------------------------------------------------- */

/* The view being written: its text and its redacted twin grow together. */
struct out {
    struct auth_view *v;
    struct sb text, red;
    char who[48]; /* "AUTH PLAIN", to open the problems */
};

static void no_view(struct auth_view *v)
{
    memset(v, 0, sizeof *v);
}

/* Appends to both texts. */
__attribute__((format(printf, 2, 3))) static void out_fmt(struct out *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sb_vfmt(&o->text, fmt, ap);
    va_end(ap);
    va_start(ap, fmt);
    sb_vfmt(&o->red, fmt, ap);
    va_end(ap);
}

/* Starts a view with "AUTH <MECH>"; step says which line it is (auth_view.step). */
static void out_begin(struct out *o, struct auth_view *v, const struct auth_decoder *a,
                      const char *step)
{
    no_view(v);
    v->decoded = true;
    v->step = step;
    o->v = v;
    sb_init(&o->text, v->text, sizeof v->text);
    sb_init(&o->red, v->redacted, sizeof v->redacted);
    snprintf(o->who, sizeof o->who, "AUTH%s%s", a->mech_name[0] ? " " : "", a->mech_name);
    out_fmt(o, "%s", o->who);
}

/* How a value reads in the redacted text. A redacted value never tells its length (a
 * password's length is a clue to it); only data of a mechanism smtptap does not decode
 * keeps its size, which is all that can be said of it (a Kerberos ticket's size, say). */
enum secrecy {
    VISIBLE,       /* as in the text: user names, prompts */
    SECRET,        /* <redacted>: passwords and anything that may hold one */
    SECRET_TOKEN,  /* <redacted token>: an OAuth bearer token */
    SECRET_DIGEST, /* <redacted digest>: a CRAM-MD5 digest */
    SECRET_BLOB,   /* <redacted N bytes>: opaque data of a mechanism smtptap does not decode */
};

/* Appends ` key="value"`, or ` "value"` when shown without a key (name is then the
 * structured form's key); a secret value reads as its `secrecy` says in the redacted text.
 * The value is recorded in the view's fields when both texts hold it whole. */
static void out_named_field(struct out *o, const char *key, const char *name, const uint8_t *p,
                            size_t n, enum secrecy secrecy)
{
    if (key)
        out_fmt(o, " %s=", key);
    else
        out_fmt(o, " ");
    sb_put(&o->text, "\"", 1);
    size_t off = o->text.len, roff = o->red.len;
    sb_escaped(&o->text, p, n, true);
    size_t len = o->text.len - off;
    sb_put(&o->text, "\"", 1);
    char mark[64];
    switch (secrecy) {
    case VISIBLE:
        sb_put(&o->red, "\"", 1);
        roff = o->red.len;
        sb_escaped(&o->red, p, n, true);
        sb_put(&o->red, "\"", 1);
        break;
    case SECRET: snprintf(mark, sizeof mark, "<redacted>"); break;
    case SECRET_TOKEN: snprintf(mark, sizeof mark, "<redacted token>"); break;
    case SECRET_DIGEST: snprintf(mark, sizeof mark, "<redacted digest>"); break;
    case SECRET_BLOB: snprintf(mark, sizeof mark, "<redacted %zu bytes>", n); break;
    }
    if (secrecy != VISIBLE) sb_put(&o->red, mark, strlen(mark));
    size_t rlen = secrecy == VISIBLE ? o->red.len - roff - 1 : o->red.len - roff;
    struct auth_view *v = o->v;
    if (o->text.full || o->red.full || v->nfields == AUTH_FIELDS_MAX) return;
    struct auth_field *f = &v->fields[v->nfields++];
    snprintf(f->name, sizeof f->name, "%s", name && name[0] ? name : "field"); /* "=v": no key */
    f->secret = secrecy != VISIBLE;
    f->off = off;
    f->len = len;
    f->roff = roff;
    f->rlen = rlen;
}

static void out_field(struct out *o, const char *key, const uint8_t *p, size_t n,
                      enum secrecy secrecy)
{
    out_named_field(o, key, key ? key : "data", p, n, secrecy);
}

/* Records a lint finding; the first one wins. Findings never quote secret bytes. */
__attribute__((format(printf, 2, 3))) static void out_problem(struct out *o, const char *fmt, ...)
{
    if (o->v->problem[0]) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(o->v->problem, sizeof o->v->problem, fmt, ap);
    va_end(ap);
}

static void out_secret(struct out *o, size_t off, size_t len)
{
    o->v->secret_off = off;
    o->v->secret_len = len;
}

/* ---- small parsers ------------------------------------------------------------------------ */

/* The length of line without its CRLF, LF or CR terminator. */
static size_t strip_eol(const uint8_t *line, size_t len)
{
    if (len > 0 && line[len - 1] == '\n') len--;
    if (len > 0 && line[len - 1] == '\r') len--;
    return len;
}

static uint8_t upper(uint8_t c)
{
    return c >= 'a' && c <= 'z' ? (uint8_t)(c - 'a' + 'A') : c;
}

static bool is_digit(uint8_t c)
{
    return c >= '0' && c <= '9';
}

static bool is_hex(uint8_t c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static bool is_b64(uint8_t c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || is_digit(c) || c == '+' || c == '/';
}

/* Why p is not strict RFC 4648 base64 (padded, no whitespace), or NULL if it is. */
static const char *b64_check(const uint8_t *p, size_t n, char *why, size_t why_size)
{
    if (n % 4 != 0) { /* the length itself is left out: the bytes may be a password */
        snprintf(why, why_size, "its length is not a multiple of 4");
        return why;
    }
    size_t pad = n >= 1 && p[n - 1] == '=' ? (n >= 2 && p[n - 2] == '=' ? 2 : 1) : 0;
    for (size_t i = 0; i < n - pad; i++) {
        if (is_b64(p[i])) continue;
        snprintf(why, why_size, "%s at offset %zu", p[i] == '=' ? "padding" : "bad character", i);
        return why;
    }
    return NULL;
}

/* Decodes checked base64 (n <= AUTH_LINE_MAX) into out (AUTH_DECODED_MAX bytes). OpenSSL's
 * EVP_DecodeBlock counts the padding as decoded zero bytes; they are dropped here. */
static size_t b64_decode(const uint8_t *p, size_t n, uint8_t *out)
{
    if (n == 0) return 0;
    int got = EVP_DecodeBlock(out, p, (int)n);
    if (got < 0) return 0;
    size_t pad = (size_t)(p[n - 1] == '=') + (size_t)(p[n - 2] == '=');
    return (size_t)got - pad;
}

long auth_b64_decode(const uint8_t *p, size_t n, uint8_t *out, size_t out_size)
{
    char why[64];
    if (n == 1 && p[0] == '=') return 0;
    if (b64_check(p, n, why, sizeof why) || n / 4 * 3 > out_size) return -1;
    return (long)b64_decode(p, n, out);
}

/* Stores the user name shown in the summary, escaped and bounded. */
static void set_user(struct auth_decoder *a, const uint8_t *p, size_t n)
{
    struct sb s;
    sb_init(&s, a->user, sizeof a->user);
    sb_escaped(&s, p, n, false);
}

/* ---- payloads ---------------------------------------------------------------------------- */

/* Decodes the base64 payload p (an initial response, a response or a challenge, as `what`
 * says) into buf. "=" is empty. On failure the text gets `lead` and the reason, the problem
 * is set, and false is returned. */
static bool decode_payload(struct out *o, const char *what, const char *lead, const uint8_t *p,
                           size_t n, uint8_t *buf, size_t *buf_len)
{
    char why[96];
    *buf_len = 0;
    if (n == 1 && p[0] == '=') return true;
    if (n > AUTH_LINE_MAX) {
        out_fmt(o, "%s <over-long %s, %zu bytes>", lead, what, n);
        out_problem(o, "%s %s is %zu bytes, longer than the %d that RFC 4954 allows", o->who, what,
                    n, AUTH_LINE_MAX);
        return false;
    }
    if (b64_check(p, n, why, sizeof why)) {
        /* Maybe a password sent without base64: its length stays out of the redacted text. */
        sb_fmt(&o->text, "%s <invalid base64, %zu bytes>", lead, n);
        sb_fmt(&o->red, "%s <invalid base64>", lead);
        out_problem(o, "%s %s is not valid base64 (%s)", o->who, what, why);
        return false;
    }
    *buf_len = b64_decode(p, n, buf);
    return true;
}

/* Anything not understood: all of it escaped, all of it secret; `secrecy` is SECRET_BLOB
 * for a mechanism smtptap does not decode, SECRET where a known mechanism's password may be
 * in it. */
static void show_opaque(struct out *o, const uint8_t *p, size_t n, enum secrecy secrecy)
{
    if (n == 0)
        out_fmt(o, " <empty>");
    else
        out_field(o, NULL, p, n, secrecy);
}

/* RFC 4616: authzid NUL authcid NUL passwd. */
static void show_plain(struct out *o, struct auth_decoder *a, const uint8_t *p, size_t n)
{
    const uint8_t *nul1 = memchr(p, 0, n);
    const uint8_t *nul2 = nul1 ? memchr(nul1 + 1, 0, n - (size_t)(nul1 + 1 - p)) : NULL;
    if (!nul2) {
        out_problem(o,
                    "AUTH PLAIN message has %s NUL separator (expected "
                    "authzid\\0authcid\\0password)",
                    nul1 ? "only one" : "no");
        out_field(o, "message", p, n, SECRET);
        return;
    }
    size_t zlen = (size_t)(nul1 - p), clen = (size_t)(nul2 - nul1 - 1);
    size_t plen = n - zlen - clen - 2;
    out_field(o, "authzid", p, zlen, VISIBLE);
    out_field(o, "authcid", nul1 + 1, clen, VISIBLE);
    out_field(o, "password", nul2 + 1, plen, SECRET);
    set_user(a, nul1 + 1, clen);
    if (clen == 0) out_problem(o, "AUTH PLAIN authcid (user name) is empty");
    if (memchr(nul2 + 1, 0, plen)) out_problem(o, "AUTH PLAIN password contains a NUL byte");
}

/* RFC 2195: "user SP digest", the digest 32 hex digits (the user may contain spaces). */
static void show_cram(struct out *o, struct auth_decoder *a, const uint8_t *p, size_t n)
{
    size_t sp = n;
    while (sp > 0 && p[sp - 1] != ' ') sp--;
    if (sp == 0) {
        out_problem(o, "AUTH CRAM-MD5 response has no space between user and digest");
        out_field(o, "response", p, n, SECRET);
        return;
    }
    const uint8_t *digest = p + sp;
    size_t dlen = n - sp, hex = 0;
    while (hex < dlen && is_hex(digest[hex])) hex++;
    out_field(o, "user", p, sp - 1, VISIBLE);
    out_field(o, "digest", digest, dlen, SECRET_DIGEST);
    set_user(a, p, sp - 1);
    if (dlen != 32 || hex != 32) out_problem(o, "AUTH CRAM-MD5 digest is not 32 hex digits");
}

static bool key_is(const uint8_t *k, size_t klen, const char *name)
{
    size_t n = strlen(name);
    if (klen != n) return false;
    for (size_t i = 0; i < n; i++)
        if (upper(k[i]) != upper((uint8_t)name[i])) return false;
    return true;
}

/* One key=value of XOAUTH2/OAUTHBEARER. "auth=Bearer T" shows the token; user, host and port
 * are visible, every other value is secret. */
static void show_kvpair(struct out *o, struct auth_decoder *a, const uint8_t *p, size_t n)
{
    const uint8_t *eq = memchr(p, '=', n);
    if (!eq) {
        out_problem(o, "%s field has no '='", o->who);
        out_field(o, "field", p, n, SECRET);
        return;
    }
    size_t klen = (size_t)(eq - p), vlen = n - klen - 1;
    const uint8_t *v = eq + 1;
    if (key_is(p, klen, "auth")) {
        if (vlen > 7 && key_is(v, 7, "Bearer "))
            out_field(o, "token", v + 7, vlen - 7, SECRET_TOKEN);
        else
            out_field(o, "auth", v, vlen, SECRET);
        return;
    }
    char key[32];
    struct sb ks;
    sb_init(&ks, key, sizeof key);
    sb_escaped(&ks, p, klen, true);
    bool visible = key_is(p, klen, "user") || key_is(p, klen, "host") || key_is(p, klen, "port");
    out_field(o, key, v, vlen, visible ? VISIBLE : SECRET);
    if (key_is(p, klen, "user")) set_user(a, v, vlen);
}

/* key=value pairs, each ended by ^A, then a final ^A (XOAUTH2; OAUTHBEARER after its GS2
 * header and ^A). */
static void show_kvpairs(struct out *o, struct auth_decoder *a, const uint8_t *p, size_t n)
{
    bool has_auth = false;
    if (n < 2 || p[n - 1] != 1 || p[n - 2] != 1)
        out_problem(o, "%s message does not end with ^A^A", o->who);
    while (n > 0 && p[n - 1] == 1) n--;
    while (n > 0) {
        const uint8_t *sep = memchr(p, 1, n);
        size_t len = sep ? (size_t)(sep - p) : n;
        if (len > 0) show_kvpair(o, a, p, len);
        if (len >= 5 && key_is(p, 5, "auth=")) has_auth = true;
        p += len + (sep != NULL);
        n -= len + (sep != NULL);
    }
    if (!has_auth) out_problem(o, "%s message has no auth= field", o->who);
}

static void show_xoauth2(struct out *o, struct auth_decoder *a, const uint8_t *p, size_t n)
{
    show_kvpairs(o, a, p, n);
    if (!a->user[0]) out_problem(o, "AUTH XOAUTH2 message has no user name");
}

/* The GS2 header's length ("n,a=U," - RFC 5801 as profiled by RFC 7628 §3.1), or 0. */
static size_t gs2_header(const uint8_t *p, size_t n, const uint8_t **authz, size_t *authz_len)
{
    const uint8_t *c1 = memchr(p, ',', n);
    if (!c1) return 0;
    size_t flag = (size_t)(c1 - p), rest = n - flag - 1;
    bool flag_ok =
        (flag == 1 && (p[0] == 'n' || p[0] == 'y')) || (flag > 2 && p[0] == 'p' && p[1] == '=');
    const uint8_t *c2 = memchr(c1 + 1, ',', rest);
    if (!flag_ok || !c2) return 0;
    size_t seg = (size_t)(c2 - c1 - 1);
    if (seg > 0 && (seg < 2 || c1[1] != 'a' || c1[2] != '=')) return 0;
    *authz = seg ? c1 + 3 : c1 + 1;
    *authz_len = seg ? seg - 2 : 0;
    return (size_t)(c2 + 1 - p);
}

/* The authzid of a GS2 header with its =2C and =3D escapes undone (the result is never
 * longer than the input). */
static size_t saslname_decode(const uint8_t *p, size_t n, uint8_t *out)
{
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '=' && i + 2 < n && p[i + 1] == '2' && upper(p[i + 2]) == 'C')
            out[len++] = ',', i += 2;
        else if (p[i] == '=' && i + 2 < n && p[i + 1] == '3' && upper(p[i + 2]) == 'D')
            out[len++] = '=', i += 2;
        else
            out[len++] = p[i];
    }
    return len;
}

/* RFC 7628 §3.1: gs2-header ^A *(kvpair ^A) ^A. */
static void show_oauthbearer(struct out *o, struct auth_decoder *a, const uint8_t *p, size_t n)
{
    const uint8_t *authz = NULL;
    size_t authz_len = 0, hdr = gs2_header(p, n, &authz, &authz_len);
    if (hdr == 0 || hdr >= n || p[hdr] != 1) {
        out_problem(o, "AUTH OAUTHBEARER message does not start with a GS2 header and ^A");
        out_field(o, "message", p, n, SECRET);
        return;
    }
    if (authz_len > 0) {
        uint8_t user[AUTH_DECODED_MAX];
        size_t ulen = saslname_decode(authz, authz_len, user);
        out_field(o, "user", user, ulen, VISIBLE);
        set_user(a, user, ulen);
    }
    show_kvpairs(o, a, p + hdr + 1, n - hdr - 1);
}

/* ---- the AUTH command -------------------------------------------------------------------- */

static const struct {
    const char *name;
    enum auth_mech mech;
} MECHS[] = {
    {"PLAIN", AUTH_MECH_PLAIN},
    {"LOGIN", AUTH_MECH_LOGIN},
    {"CRAM-MD5", AUTH_MECH_CRAM_MD5},
    {"XOAUTH2", AUTH_MECH_XOAUTH2},
    {"OAUTHBEARER", AUTH_MECH_OAUTHBEARER},
};

/* RFC 4422 §3.1: 1 to 20 of A-Z 0-9 - _ (compared upper-cased). */
static bool sasl_name_ok(const uint8_t *p, size_t n)
{
    if (n == 0 || n > 20) return false;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = upper(p[i]);
        if (!((c >= 'A' && c <= 'Z') || is_digit(c) || c == '-' || c == '_')) return false;
    }
    return true;
}

/* Starts an exchange for the mechanism p[0..n). */
static void start_exchange(struct auth_decoder *a, const uint8_t *p, size_t n)
{
    auth_init(a);
    a->active = true;
    uint8_t up[sizeof a->mech_name] = {0};
    size_t ulen = 0;
    for (; ulen < n && ulen < sizeof up; ulen++) up[ulen] = upper(p[ulen]);
    struct sb s;
    sb_init(&s, a->mech_name, sizeof a->mech_name);
    sb_escaped(&s, up, ulen, false);
    a->mech = n ? AUTH_MECH_OTHER : AUTH_MECH_NONE;
    for (size_t i = 0; i < sizeof MECHS / sizeof MECHS[0]; i++)
        if (key_is(p, n, MECHS[i].name)) a->mech = MECHS[i].mech;
}

/* Shows a decoded initial response and marks its base64 secret where it carries one. */
static void show_initial(struct out *o, struct auth_decoder *a, const uint8_t *buf, size_t n,
                         size_t ir_off, size_t ir_len)
{
    switch (a->mech) {
    case AUTH_MECH_PLAIN: show_plain(o, a, buf, n); break;
    case AUTH_MECH_LOGIN:
        out_field(o, "user", buf, n, VISIBLE);
        set_user(a, buf, n);
        return; /* the user name is no secret */
    case AUTH_MECH_XOAUTH2: show_xoauth2(o, a, buf, n); break;
    case AUTH_MECH_OAUTHBEARER: show_oauthbearer(o, a, buf, n); break;
    case AUTH_MECH_CRAM_MD5:
        out_problem(o, "AUTH CRAM-MD5 takes no initial response");
        show_opaque(o, buf, n, SECRET);
        break;
    default: show_opaque(o, buf, n, SECRET_BLOB); break;
    }
    out_secret(o, ir_off, ir_len);
}

static bool is_auth_verb(const uint8_t *line, size_t len)
{
    return len >= 4 && key_is(line, 4, "AUTH") && (len == 4 || line[4] == ' ');
}

void auth_init(struct auth_decoder *a)
{
    memset(a, 0, sizeof *a);
}

/* Where "AUTH mech [ir]" has its mechanism [*mech, *mech_end) and its initial response (from
 * *ir to the end; none if *ir == len). Runs of spaces are tolerated. */
static void split_command(const uint8_t *line, size_t len, size_t *mech, size_t *mech_end,
                          size_t *ir)
{
    size_t i = 4;
    while (i < len && line[i] == ' ') i++;
    *mech = i;
    while (i < len && line[i] != ' ') i++;
    *mech_end = i;
    while (i < len && line[i] == ' ') i++;
    *ir = i;
}

void auth_on_command(struct auth_decoder *a, const uint8_t *line, size_t len, struct auth_view *out)
{
    no_view(out);
    len = line ? strip_eol(line, len) : 0;
    if (!is_auth_verb(line, len)) return;
    size_t m, mend, ir;
    split_command(line, len, &m, &mend, &ir);
    start_exchange(a, line + m, mend - m);
    a->has_ir = ir < len;
    struct out o;
    out_begin(&o, out, a, "command");
    if (a->mech == AUTH_MECH_NONE) {
        out_fmt(&o, " <no mechanism>");
        out_problem(&o, "AUTH command has no mechanism name");
        return;
    }
    if (!sasl_name_ok(line + m, mend - m))
        out_problem(&o, "AUTH mechanism name is not a valid SASL name (1-20 of A-Z 0-9 - _)");
    if (!a->has_ir) {
        out_fmt(&o, " (no initial response)");
        return;
    }
    uint8_t buf[AUTH_DECODED_MAX];
    size_t n;
    if (decode_payload(&o, "initial response", "", line + ir, len - ir, buf, &n))
        show_initial(&o, a, buf, n, ir, len - ir);
    else
        out_secret(&o, ir, len - ir);
}

/* ---- client responses -------------------------------------------------------------------- */

/* A response the exchange did not call for: shown opaque and secret. */
static void show_unexpected(struct out *o, const struct auth_decoder *a, const uint8_t *buf,
                            size_t n)
{
    out_problem(o, "%s: unexpected response #%u", o->who, a->step);
    show_opaque(o, buf, n, SECRET);
}

/* LOGIN: count the lines, never trust the prompts: user name, then password. */
static bool show_login(struct out *o, struct auth_decoder *a, unsigned idx, const uint8_t *buf,
                       size_t n)
{
    unsigned role = idx + (a->has_ir ? 1 : 0);
    if (role == 0) {
        out_field(o, "user", buf, n, VISIBLE);
        set_user(a, buf, n);
        return false;
    }
    if (role == 1)
        out_field(o, "password", buf, n, SECRET);
    else
        show_unexpected(o, a, buf, n);
    return true;
}

/* After an error challenge the client must send an empty line (XOAUTH2) or ^A (OAUTHBEARER,
 * RFC 7628 §3.2.3) to get the final failure. */
static bool show_oauth_ack(struct out *o, const struct auth_decoder *a, const uint8_t *buf,
                           size_t n)
{
    bool xo = a->mech == AUTH_MECH_XOAUTH2;
    if ((xo && n == 0) || (!xo && n == 1 && buf[0] == 1)) {
        out_fmt(o, xo ? " empty response acknowledging the error" : " ^A acknowledging the error");
        return false;
    }
    out_problem(o, "%s: after an error challenge the client must send %s", o->who,
                xo ? "an empty line" : "AQ== (^A) or *");
    show_opaque(o, buf, n, SECRET);
    return true;
}

/* Shows a decoded response; returns whether its line carries a secret. */
static bool show_response(struct out *o, struct auth_decoder *a, unsigned idx, const uint8_t *buf,
                          size_t n)
{
    bool first = idx == 0 && !a->has_ir;
    bool oauth = a->mech == AUTH_MECH_XOAUTH2 || a->mech == AUTH_MECH_OAUTHBEARER;
    if (oauth && a->oauth_error) return show_oauth_ack(o, a, buf, n);
    if (a->mech == AUTH_MECH_LOGIN) return show_login(o, a, idx, buf, n);
    if (a->mech == AUTH_MECH_PLAIN && first)
        show_plain(o, a, buf, n);
    else if (a->mech == AUTH_MECH_CRAM_MD5 && idx == 0)
        show_cram(o, a, buf, n);
    else if (a->mech == AUTH_MECH_XOAUTH2 && first)
        show_xoauth2(o, a, buf, n);
    else if (a->mech == AUTH_MECH_OAUTHBEARER && first)
        show_oauthbearer(o, a, buf, n);
    else if (a->mech == AUTH_MECH_OTHER || a->mech == AUTH_MECH_NONE)
        show_opaque(o, buf, n, SECRET_BLOB);
    else
        show_unexpected(o, a, buf, n);
    return true;
}

void auth_on_client_line(struct auth_decoder *a, const uint8_t *line, size_t len,
                         struct auth_view *out)
{
    no_view(out);
    if (!a->active) return;
    len = line ? strip_eol(line, len) : 0;
    unsigned idx = a->step++;
    struct out o;
    out_begin(&o, out, a, "response");
    if (len == 1 && line[0] == '*') {
        a->cancelled = true;
        out_fmt(&o, " cancelled by the client (*)");
        return;
    }
    uint8_t buf[AUTH_DECODED_MAX];
    size_t n;
    if (!decode_payload(&o, "response", "", line, len, buf, &n))
        out_secret(&o, 0, len);
    else if (show_response(&o, a, idx, buf, n))
        out_secret(&o, 0, len);
}

/* ---- server replies ---------------------------------------------------------------------- */

/* Shows a decoded 334 challenge. */
static void show_challenge(struct out *o, struct auth_decoder *a, const uint8_t *buf, size_t n)
{
    static const char *const login_next[] = {"the user name", "the password",
                                             "an unexpected extra response"};
    bool oauth = a->mech == AUTH_MECH_XOAUTH2 || a->mech == AUTH_MECH_OAUTHBEARER;
    if (a->mech == AUTH_MECH_LOGIN) {
        unsigned role = a->step + (a->has_ir ? 1 : 0);
        out_fmt(o, " prompt");
        out_named_field(o, NULL, "prompt", buf, n, VISIBLE);
        out_fmt(o, " (next line: %s)", login_next[role < 2 ? role : 2]);
    } else if (n == 0) {
        out_fmt(o, " empty challenge (the client sends its credentials next)");
    } else if (oauth && (a->has_ir || a->step > 0)) {
        a->oauth_error = true; /* the credentials were sent: this is the error */
        out_fmt(o, " error challenge ");
        sb_escaped(&o->text, buf, n, false);
        sb_escaped(&o->red, buf, n, false);
    } else {
        out_fmt(o, " challenge");
        out_named_field(o, NULL, "challenge", buf, n, VISIBLE);
    }
}

/* The first line of a reply, without its code and separator. */
static const uint8_t *reply_text(const uint8_t *reply, size_t len, size_t *text_len)
{
    const uint8_t *eol = reply ? memchr(reply, '\n', len) : NULL;
    size_t line = strip_eol(reply, eol ? (size_t)(eol - reply) + 1 : len);
    *text_len = line > 4 ? line - 4 : 0;
    return line > 4 ? reply + 4 : reply;
}

static void on_challenge(struct auth_decoder *a, const uint8_t *reply, size_t len, struct out *o)
{
    size_t tlen;
    const uint8_t *text = reply_text(reply, len, &tlen);
    uint8_t buf[AUTH_DECODED_MAX];
    size_t n;
    if (decode_payload(o, "challenge", " challenge", text, tlen, buf, &n))
        show_challenge(o, a, buf, n);
}

/* The length of the enhanced status code (RFC 3463: class.subject.detail, class 2, 4 or 5,
 * subject and detail 1-3 digits) that opens reply text, or 0. */
static size_t enhanced_code(const uint8_t *p, size_t n)
{
    if (n < 5 || (p[0] != '2' && p[0] != '4' && p[0] != '5') || p[1] != '.') return 0;
    size_t i = 2;
    for (int part = 0; part < 2; part++) {
        size_t start = i;
        while (i < n && is_digit(p[i]) && i - start < 3) i++;
        if (i == start) return 0;
        if (part == 1) break;
        if (i >= n || p[i] != '.') return 0;
        i++;
    }
    return i == n || p[i] == ' ' ? i : 0;
}

static const char *outcome(const struct auth_decoder *a, int code)
{
    if (code / 100 == 2) return "accepted";
    if (a->cancelled) return "cancelled";
    if (code / 100 == 4) return "temporary failure";
    switch (code) {
    case 500:
    case 501: return "syntax error";
    case 503: return "refused (bad sequence of commands)";
    case 504: return "mechanism not supported";
    case 534: return "mechanism too weak";
    case 538: return "encryption required";
    default: return "rejected";
    }
}

/* A final reply: the summary line, and the exchange is over. */
static void on_final(struct auth_decoder *a, int code, const uint8_t *reply, size_t len,
                     struct out *o)
{
    size_t tlen;
    const uint8_t *text = reply_text(reply, len, &tlen);
    size_t ecode = enhanced_code(text, tlen);
    if (a->user[0]) out_fmt(o, " for %s", a->user);
    out_fmt(o, ": %s (%d%s%.*s)", outcome(a, code), code, ecode ? " " : "", (int)ecode,
            (const char *)text);
    o->v->outcome = outcome(a, code);
    o->v->code = code;
    a->active = false;
}

void auth_on_reply(struct auth_decoder *a, int code, const uint8_t *reply, size_t len,
                   struct auth_view *out)
{
    no_view(out);
    if (!a->active) return;
    if (!reply) len = 0;
    struct out o;
    bool final = code >= 200 && code < 600 && code / 100 != 3;
    out_begin(&o, out, a, code == 334 ? "challenge" : final ? "outcome" : "unexpected");
    if (code == 334) {
        on_challenge(a, reply, len, &o);
    } else if (final) {
        on_final(a, code, reply, len, &o);
    } else {
        out_fmt(&o, ": unexpected reply %d", code);
        out_problem(&o, "%s: unexpected reply %d during the exchange", o.who, code);
    }
}

/* ---- redaction --------------------------------------------------------------------------- */

size_t auth_redact_line(const uint8_t *raw, size_t raw_len, size_t off, size_t len, char *out,
                        size_t out_size)
{
    if (out_size == 0) return 0;
    if (!raw) raw = (const uint8_t *)"", raw_len = 0;
    if (off > raw_len) off = raw_len;
    if (len > raw_len - off) len = raw_len - off;
    static const char mark[] = "<redacted>"; /* no length: base64's tells the secret's */
    size_t mlen = len ? sizeof mark - 1 : 0;
    const struct {
        const void *p;
        size_t n;
    } parts[] = {{raw, off}, {mark, mlen}, {raw + off + len, raw_len - off - len}};
    size_t w = 0;
    for (size_t i = 0; i < 3; i++) {
        size_t n = parts[i].n < out_size - 1 - w ? parts[i].n : out_size - 1 - w;
        if (n) memcpy(out + w, parts[i].p, n);
        w += n;
    }
    out[w] = '\0';
    return w;
}
