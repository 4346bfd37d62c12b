/* lint_state.c - pure protocol lint that needs the dialog's state (see lint_state.h): the
 * server's extensions from its EHLO reply, the transaction's MAIL parameters, whether the
 * greeting came, and the reply being received line by line. */
#include "smtptap/lint_state.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* ---- helpers ------------------------------------------------------------------------------ */

static uint64_t at(uint64_t base, size_t k)
{
    return base == LINT_STATE_NO_OFFSET ? base : base + k;
}

__attribute__((format(printf, 5, 6))) static void say(struct lint_state *ls, const char *id,
                                                      enum lint_side side, uint64_t offset,
                                                      const char *fmt, ...)
{
    char text[320];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    ls->finding(ls->ctx, id, side, offset, text);
}

/* Writes b[0..n) to out (size cap) as printable ASCII, other bytes as \xNN. */
static const char *shown(char *out, size_t cap, const uint8_t *b, size_t n)
{
    size_t o = 0;
    out[0] = 0;
    for (size_t i = 0; i < n && o + 5 <= cap; i++) {
        if (b[i] >= 0x20 && b[i] < 0x7f && b[i] != '"' && b[i] != '\\')
            out[o++] = (char)b[i], out[o] = 0;
        else
            o += (size_t)snprintf(out + o, cap - o, "\\x%02X", b[i]);
    }
    return out;
}

static bool is_digit(uint8_t c)
{
    return c >= '0' && c <= '9';
}

/* Case-insensitive: does b[0..n) start with word? */
static bool starts_with(const uint8_t *b, size_t n, const char *word)
{
    size_t w = strlen(word);
    return n >= w && strncasecmp((const char *)b, word, w) == 0;
}

/* Case-insensitive: is t[0..n) exactly word? */
static bool is_word(const uint8_t *t, size_t n, const char *word)
{
    return n == strlen(word) && starts_with(t, n, word);
}

/* Decimal digits at b[0..n) (saturating at UINT64_MAX); *used: how many. */
static uint64_t number(const uint8_t *b, size_t n, size_t *used)
{
    uint64_t v = 0;
    size_t i = 0;
    for (; i < n && is_digit(b[i]); i++) {
        uint64_t d = (uint64_t)(b[i] - '0');
        v = v > (UINT64_MAX - d) / 10 ? UINT64_MAX : v * 10 + d;
    }
    *used = i;
    return v;
}

static const char *verb_word(enum smtp_verb v)
{
    return v == SMTP_VERB_UNKNOWN ? "a command" : smtp_verb_name(v);
}

/* ---- state resets ------------------------------------------------------------------------- */

static void message_reset(struct lint_state *ls)
{
    ls->in_message = false;
    ls->msg_line = 1;
    ls->eight_said = false;
    ls->chunking_said = false;
}

/* The transaction is over or aborted: its MAIL parameters no longer hold. */
static void transaction_reset(struct lint_state *ls)
{
    ls->body_8bit = false;
    message_reset(ls);
}

void lint_state_init(struct lint_state *ls, lint_state_finding_fn finding, void *ctx)
{
    memset(ls, 0, sizeof *ls);
    ls->finding = finding;
    ls->ctx = ctx;
    transaction_reset(ls);
}

/* ---- commands ----------------------------------------------------------------------------- */

/* A command before the whole greeting came: said once per session. */
static void check_greeted(struct lint_state *ls, uint64_t off, enum smtp_verb verb)
{
    if (!ls->early_said)
        say(ls, LINT_ID_COMMAND_BEFORE_GREETING, LINT_SIDE_C2S, off,
            "client sent %s before the server's greeting (RFC 5321 3.1: the client waits for "
            "the 220); servers that check for early talkers refuse it",
            verb_word(verb));
    ls->early_said = ls->in_burst = true; /* it stands for the burst's pipelining finding */
}

/* Talking before the greeting, or pipelining without PIPELINING: once per burst of commands
 * sent while replies were due. */
static void check_order(struct lint_state *ls, uint64_t off, enum smtp_verb verb, bool outstanding)
{
    if (!ls->greeted) {
        check_greeted(ls, off, verb);
    } else if (!outstanding || ls->in_burst) {
        ls->in_burst = outstanding; /* a burst ends at a command sent with no reply due */
    } else {
        ls->in_burst = true;
        if (!ls->caps.pipelining)
            say(ls, LINT_ID_PIPELINING_NOT_OFFERED, LINT_SIDE_C2S, off,
                "client sent %s before the reply to its previous command, but the server did "
                "not offer PIPELINING after EHLO (RFC 2920): it may drop or misread the commands",
                verb_word(verb));
    }
}

/* The parts of a MAIL or RCPT argument ("FROM:<path> params") lint_state needs. */
struct path_args {
    const uint8_t *path; /* the address, brackets included */
    size_t path_len;
    bool body_8bit, smtputf8, size_given;
    uint64_t size;
};

/* The end of the path starting at a[0]: the first blank outside a quoted string. */
static size_t path_end(const uint8_t *a, size_t n)
{
    bool quoted = false;
    for (size_t i = 0; i < n; i++) {
        if (a[i] == '\\' && quoted)
            i++;
        else if (a[i] == '"')
            quoted = !quoted;
        else if (!quoted && (a[i] == ' ' || a[i] == '\t'))
            return i;
    }
    return n;
}

/* One ESMTP parameter "KEY[=VALUE]" of MAIL. */
static void path_param(struct path_args *pa, const uint8_t *t, size_t n)
{
    if (is_word(t, n, "SMTPUTF8")) pa->smtputf8 = true;
    if (is_word(t, n, "BODY=8BITMIME") || is_word(t, n, "BODY=BINARYMIME")) pa->body_8bit = true;
    if (n > 5 && starts_with(t, n, "SIZE=")) {
        size_t used;
        pa->size = number(t + 5, n - 5, &used);
        pa->size_given = used == n - 5;
    }
}

/* Splits "FROM:<path> params" (prefix: "FROM:" or "TO:"); false when the prefix is missing. */
static bool path_parse(const uint8_t *a, size_t n, const char *prefix, struct path_args *pa)
{
    memset(pa, 0, sizeof *pa);
    if (!starts_with(a, n, prefix)) return false;
    size_t i = strlen(prefix);
    while (i < n && (a[i] == ' ' || a[i] == '\t')) i++;
    pa->path = a + i;
    pa->path_len = path_end(a + i, n - i);
    for (i += pa->path_len; i < n;) {
        while (i < n && (a[i] == ' ' || a[i] == '\t')) i++;
        size_t start = i;
        while (i < n && a[i] != ' ' && a[i] != '\t') i++;
        if (i > start) path_param(pa, a + start, i - start);
    }
    return true;
}

/* SMTPUTF8 asked for, or a non-ASCII address, without the server offering SMTPUTF8. */
static void check_smtputf8(struct lint_state *ls, uint64_t off, const char *what,
                           const struct path_args *pa)
{
    if (ls->caps.smtputf8) return;
    const uint8_t *hi = NULL;
    for (size_t i = 0; i < pa->path_len && !hi; i++)
        if (pa->path[i] >= 0x80) hi = pa->path + i;
    if (pa->smtputf8)
        say(ls, LINT_ID_SMTPUTF8_NOT_OFFERED, LINT_SIDE_C2S, off,
            "%s carries the SMTPUTF8 parameter but the server did not offer SMTPUTF8 "
            "(RFC 6531): it may refuse the transaction",
            what);
    else if (hi)
        say(ls, LINT_ID_SMTPUTF8_NOT_OFFERED, LINT_SIDE_C2S, off,
            "%s has a non-ASCII address (byte 0x%02X) but the server did not offer SMTPUTF8 "
            "(RFC 6531): it may refuse or mangle the address",
            what, *hi);
}

static void check_size(struct lint_state *ls, uint64_t off, const struct path_args *pa)
{
    if (!ls->caps.size || !ls->caps.size_limit || !pa->size_given) return;
    if (pa->size <= ls->caps.size_limit) return;
    say(ls, LINT_ID_SIZE_OVER_LIMIT, LINT_SIDE_C2S, off,
        "MAIL FROM declares SIZE=%llu but the server's SIZE limit is %llu octets (RFC 1870): "
        "it will refuse the message",
        (unsigned long long)pa->size, (unsigned long long)ls->caps.size_limit);
}

static void on_mail(struct lint_state *ls, uint64_t off, const uint8_t *arg, size_t len)
{
    struct path_args pa;
    transaction_reset(ls);
    if (!path_parse(arg, len, "FROM:", &pa)) return;
    ls->body_8bit = pa.body_8bit;
    check_smtputf8(ls, off, "MAIL FROM", &pa);
    check_size(ls, off, &pa);
}

static void on_rcpt(struct lint_state *ls, uint64_t off, const uint8_t *arg, size_t len)
{
    struct path_args pa;
    if (!path_parse(arg, len, "TO:", &pa)) return;
    check_smtputf8(ls, off, "RCPT TO", &pa);
}

static void on_bdat(struct lint_state *ls, uint64_t off)
{
    if (ls->caps.chunking || ls->chunking_said) return;
    ls->chunking_said = true;
    say(ls, LINT_ID_CHUNKING_NOT_OFFERED, LINT_SIDE_C2S, off,
        "client sent BDAT but the server did not offer CHUNKING (RFC 3030): it will read the "
        "chunk's octets as commands");
}

static void on_auth(struct lint_state *ls, uint64_t off, bool client_in_tls)
{
    if (!ls->caps.starttls || client_in_tls) return;
    say(ls, LINT_ID_AUTH_BEFORE_STARTTLS, LINT_SIDE_C2S, off,
        "client sent AUTH in plain text although STARTTLS was offered to it (RFC 3207, RFC "
        "4954 4): the credentials cross the network unencrypted");
}

void lint_state_command(struct lint_state *ls, uint64_t offset, const uint8_t *line, size_t len,
                        bool client_in_tls, bool replies_outstanding)
{
    const uint8_t *arg;
    size_t arg_len;
    enum smtp_verb verb = smtp_verb_parse(line, len, &arg, &arg_len);
    check_order(ls, offset, verb, replies_outstanding);
    switch (verb) {
    case SMTP_VERB_HELO:
    case SMTP_VERB_EHLO:
        memset(&ls->caps, 0, sizeof ls->caps); /* the new hello's reply decides */
        transaction_reset(ls);
        break;
    case SMTP_VERB_RSET: transaction_reset(ls); break;
    case SMTP_VERB_MAIL: on_mail(ls, offset, arg, arg_len); break;
    case SMTP_VERB_RCPT: on_rcpt(ls, offset, arg, arg_len); break;
    case SMTP_VERB_BDAT: on_bdat(ls, offset); break;
    case SMTP_VERB_AUTH: on_auth(ls, offset, client_in_tls); break;
    default: break;
    }
}

/* ---- message content ---------------------------------------------------------------------- */

void lint_state_content(struct lint_state *ls, uint64_t offset, const uint8_t *b, size_t len)
{
    ls->in_message = true;
    if (ls->eight_said || ls->body_8bit) return;
    /* The first 8-bit byte, 8 bytes at a time; then the lines before it, with memchr. */
    size_t i = 0;
    for (uint64_t w; i + 8 <= len; i += 8) {
        memcpy(&w, b + i, 8);
        if (w & 0x8080808080808080u) break;
    }
    while (i < len && b[i] < 0x80) i++;
    for (const uint8_t *p = b, *end = b + i; (p = memchr(p, '\n', (size_t)(end - p))); p++)
        ls->msg_line++;
    if (i == len) return;
    ls->eight_said = true;
    say(ls, LINT_ID_8BIT_WITHOUT_8BITMIME, LINT_SIDE_C2S, at(offset, i),
        "8-bit byte 0x%02X in the message at line %llu without BODY=8BITMIME on MAIL "
        "FROM (RFC 6152): a 7-bit server or relay may strip the 8th bit or refuse it",
        b[i], (unsigned long long)ls->msg_line);
}

void lint_state_message_end(struct lint_state *ls)
{
    transaction_reset(ls);
}

/* ---- replies: one line at a time ---------------------------------------------------------- */

static bool code_is(const struct lint_reply_scan *r, const char *code)
{
    return r->code_len == 3 && memcmp(r->code, code, 3) == 0;
}

/* A reply that paired with no command (a 421 may come any time: RFC 5321 3.8). */
static void check_unasked(struct lint_state *ls, const char *code)
{
    struct lint_reply_scan *r = &ls->reply;
    if (r->kind != LINT_REPLY_UNASKED || code_is(r, "421")) return;
    say(ls, LINT_ID_REPLY_BEFORE_COMMAND, LINT_SIDE_S2C, r->line_off,
        "server sent a \"%s\" reply %s", code,
        ls->in_message ? "while the message was still open: it saw an end of data the client "
                         "did not send (SMTP smuggling risk)"
                       : "no command asked for: it came before its command, so the client may "
                         "take it as the answer to its next one");
}

/* The first line: an unasked reply; a code outside 2xx-5xx. */
static void first_line(struct lint_state *ls, const uint8_t *t, size_t n)
{
    struct lint_reply_scan *r = &ls->reply;
    char code[16];
    r->code_len = n < 3 ? n : 3;
    memcpy(r->code, t, r->code_len);
    shown(code, sizeof code, r->code, r->code_len);
    check_unasked(ls, code);
    bool digits = r->code_len == 3 && is_digit(t[0]) && is_digit(t[1]) && is_digit(t[2]);
    if (digits && t[0] >= '2' && t[0] <= '5') return;
    say(ls, LINT_ID_REPLY_CODE_OUT_OF_RANGE, LINT_SIDE_S2C, r->line_off,
        "reply code \"%s\" is not a 3-digit code from 2xx to 5xx (RFC 5321 4.2.1): the client "
        "cannot tell whether its command succeeded",
        code);
}

/* A later line of a multi-line reply must carry the first line's code. */
static void next_line(struct lint_state *ls, const uint8_t *t, size_t n)
{
    struct lint_reply_scan *r = &ls->reply;
    size_t len = n < 3 ? n : 3;
    if (r->changed_said || (len == r->code_len && memcmp(t, r->code, len) == 0)) return;
    r->changed_said = true;
    char from[16], to[16];
    say(ls, LINT_ID_REPLY_CODE_CHANGES, LINT_SIDE_S2C, r->line_off,
        "multi-line reply changes its code from \"%s\" to \"%s\" at line %u (RFC 5321 4.2.1: "
        "every line carries the same code): clients may act on either",
        shown(from, sizeof from, r->code, r->code_len), shown(to, sizeof to, t, len), r->lines);
}

/* Length of an enhanced status code "d.ddd.ddd" at t[0..n) followed by a blank or the end;
 * 0 when there is none. */
static size_t enhanced_len(const uint8_t *t, size_t n)
{
    size_t i = 1, used;
    if (n < 5 || !is_digit(t[0]) || t[1] != '.') return 0;
    for (int part = 0; part < 2; part++) {
        number(t + i + 1, n - i - 1, &used);
        if (used < 1 || used > 3) return 0;
        i += 1 + used;
        if (part == 0 && (i >= n || t[i] != '.')) return 0;
    }
    return i == n || t[i] == ' ' ? i : 0;
}

static const char *class_meaning(uint8_t c)
{
    return c == '2'   ? "success"
           : c == '4' ? "temporary failure"
           : c == '5' ? "permanent failure"
                      : "no valid class";
}

/* Does this reply get its enhanced status codes checked (RFC 2034)? */
static bool enhanced_applies(const struct lint_state *ls)
{
    const struct lint_reply_scan *r = &ls->reply;
    if (!ls->caps.enhanced || r->enhanced_said || r->kind == LINT_REPLY_GREETING) return false;
    return r->kind != LINT_REPLY_COMMAND ||
           (r->verb != SMTP_VERB_HELO && r->verb != SMTP_VERB_EHLO);
}

/* An enhanced status code whose class is not the line's reply class (never judged on 3xx). */
static void check_enhanced(struct lint_state *ls, const uint8_t *t, size_t n)
{
    if (!enhanced_applies(ls) || n < 4 || !is_digit(t[0]) || t[0] == '3') return;
    if (!is_digit(t[1]) || !is_digit(t[2]) || (t[3] != ' ' && t[3] != '-')) return;
    size_t e = enhanced_len(t + 4, n - 4);
    if (!e || t[4] == t[0]) return;
    ls->reply.enhanced_said = true;
    say(ls, LINT_ID_ENHANCED_CODE_MISMATCH, LINT_SIDE_S2C, ls->reply.line_off,
        "reply %.3s carries enhanced status code %.*s, whose class says %s (RFC 3463: the class "
        "must agree with the reply code's first digit): clients may act on either",
        (const char *)t, (int)e, (const char *)t + 4, class_meaning(t[4]));
}

/* One capability line of a reply to EHLO ("CODE-KEYWORD params"). */
static void ehlo_keyword(struct lint_caps *c, const uint8_t *t, size_t n)
{
    const char *names[] = {"PIPELINING", "8BITMIME", "SMTPUTF8",           "CHUNKING",
                           "STARTTLS",   "SIZE",     "ENHANCEDSTATUSCODES"};
    bool *flags[] = {&c->pipelining, &c->eightbitmime, &c->smtputf8, &c->chunking,
                     &c->starttls,   &c->size,         &c->enhanced};
    if (n < 4) return;
    t += 4, n -= 4;
    size_t w = 0, used;
    while (w < n && t[w] != ' ' && t[w] != '=') w++;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (is_word(t, w, names[i])) *flags[i] = true;
    if (is_word(t, w, "SIZE") && w + 1 < n) c->size_limit = number(t + w + 1, n - w - 1, &used);
}

/* A reply line is complete (or the reply ended inside it). */
static void line_done(struct lint_state *ls)
{
    struct lint_reply_scan *r = &ls->reply;
    size_t n = r->kept;
    while (n && (r->line[n - 1] == '\n' || r->line[n - 1] == '\r')) n--; /* the terminator */
    r->in_line = false;
    if (++r->lines == 1)
        first_line(ls, r->line, n);
    else
        next_line(ls, r->line, n);
    check_enhanced(ls, r->line, n);
    if (r->lines > 1 && r->kind == LINT_REPLY_COMMAND && r->verb == SMTP_VERB_EHLO)
        ehlo_keyword(&r->offered, r->line, n);
}

/* The reply is complete: what it changes in the dialog. */
static void reply_done(struct lint_state *ls)
{
    struct lint_reply_scan *r = &ls->reply;
    r->active = false;
    if (r->kind == LINT_REPLY_GREETING) ls->greeted = true;
    if (r->kind != LINT_REPLY_COMMAND) return;
    if (r->verb == SMTP_VERB_EHLO || r->verb == SMTP_VERB_HELO) {
        bool offered = r->verb == SMTP_VERB_EHLO && code_is(r, "250");
        memset(&ls->caps, 0, sizeof ls->caps); /* HELO, or a refused EHLO: no extensions */
        if (offered) ls->caps = r->offered, ls->caps.ehlo = true;
    } else if (r->verb == SMTP_VERB_STARTTLS && r->code_len == 3 && r->code[0] == '2') {
        memset(&ls->caps, 0, sizeof ls->caps); /* RFC 3207 4.2: forget what came before TLS */
        transaction_reset(ls);
    }
}

/* Takes the bytes of the current line (up to LINT_STATE_LINE_KEEP of them). */
static void keep(struct lint_reply_scan *r, const uint8_t *b, size_t n)
{
    size_t room = sizeof r->line - r->kept;
    memcpy(r->line + r->kept, b, n < room ? n : room);
    r->kept += n < room ? n : room;
}

static void reply_begin(struct lint_reply_scan *r, enum lint_reply_kind kind, enum smtp_verb verb)
{
    memset(r, 0, sizeof *r);
    r->active = true;
    r->kind = kind;
    r->verb = verb;
}

void lint_state_reply(struct lint_state *ls, enum lint_reply_kind kind, enum smtp_verb verb,
                      uint64_t offset, const uint8_t *bytes, size_t len, bool last)
{
    struct lint_reply_scan *r = &ls->reply;
    if (!r->active) reply_begin(r, kind, verb);
    for (size_t i = 0; i < len;) {
        if (!r->in_line) r->in_line = true, r->line_off = at(offset, i), r->kept = 0;
        const uint8_t *lf = memchr(bytes + i, '\n', len - i);
        size_t end = lf ? (size_t)(lf - bytes) + 1 : len;
        keep(r, bytes + i, end - i);
        i = end;
        if (lf) line_done(ls);
    }
    if (!last) return;
    if (r->in_line) line_done(ls);
    reply_done(ls);
}
