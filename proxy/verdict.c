/* verdict.c - one verdict per session on what the client did with a bad certificate or a
 * withheld STARTTLS (verdict.h). Pure: facts in, words out. */
#include "smtptap/verdict.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const char *const action_words[] = {
    [VERDICT_REFUSED] = "refused at handshake",
    [VERDICT_GAVE_UP] = "gave up",
    [VERDICT_SENT_MAIL] = "sent mail",
    [VERDICT_SENT_AUTH] = "sent credentials",
};

static const char *const action_ids[] = {
    [VERDICT_REFUSED] = "refused",
    [VERDICT_GAVE_UP] = "gave-up",
    [VERDICT_SENT_MAIL] = "sent-mail",
    [VERDICT_SENT_AUTH] = "sent-credentials",
};

const char *verdict_action_words(enum verdict_action a)
{
    return (unsigned)a <= VERDICT_SENT_AUTH ? action_words[a] : "?";
}

const char *verdict_action_id(enum verdict_action a)
{
    return (unsigned)a <= VERDICT_SENT_AUTH ? action_ids[a] : "?";
}

const char *verdict_alert_name(int alert)
{
    /* RFC 8446 section 6 and RFC 5246 (the alerts a refusing client may send) */
    static const struct {
        int code;
        const char *name;
    } alerts[] = {
        {10, "unexpected_message"},
        {20, "bad_record_mac"},
        {40, "handshake_failure"},
        {42, "bad_certificate"},
        {43, "unsupported_certificate"},
        {44, "certificate_revoked"},
        {45, "certificate_expired"},
        {46, "certificate_unknown"},
        {47, "illegal_parameter"},
        {48, "unknown_ca"},
        {49, "access_denied"},
        {50, "decode_error"},
        {51, "decrypt_error"},
        {70, "protocol_version"},
        {71, "insufficient_security"},
        {80, "internal_error"},
        {86, "inappropriate_fallback"},
        {90, "user_canceled"},
        {109, "missing_extension"},
        {110, "unsupported_extension"},
        {112, "unrecognized_name"},
        {113, "bad_certificate_status_response"},
        {115, "unknown_psk_identity"},
        {116, "certificate_required"},
        {120, "no_application_protocol"},
    };
    for (size_t i = 0; i < sizeof alerts / sizeof alerts[0]; i++)
        if (alerts[i].code == alert) return alerts[i].name;
    return NULL;
}

bool verdict_applies(const struct verdict_facts *f)
{
    return f->cert != CLIENT_CERT_GOOD || (f->strip && !f->implicit_tls);
}

static void say(struct verdict *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(struct verdict *v, const char *fmt, ...)
{
    size_t used = strnlen(v->text, sizeof v->text);
    if (used + 1 >= sizeof v->text) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v->text + used, sizeof v->text - used, fmt, ap);
    va_end(ap);
}

/* "AUTH PLAIN for alice" (or "AUTH PLAIN" when the user is not known or not shown). */
static void say_auth(struct verdict *v, const struct verdict_facts *f)
{
    say(v, "AUTH%s%s", f->auth_mech[0] ? " " : "", f->auth_mech);
    if (f->auth_user[0]) say(v, " for %s", f->auth_user);
}

/* What mail disclosed: "envelope (MAIL FROM, 2 RCPT) and body exposed". */
static void say_mail(struct verdict *v, const struct verdict_facts *f)
{
    say(v, "envelope (MAIL FROM");
    if (f->rcpts) say(v, ", %u RCPT", f->rcpts);
    say(v, ")%s exposed", f->body ? " and body" : "");
}

/* "client <before>sent <AUTH ... | mail without AUTH><after>: <what was exposed>" */
static void judge_sent(struct verdict *v, const struct verdict_facts *f, const char *before,
                       const char *after)
{
    say(v, "client %ssent ", before);
    if (f->auth) {
        v->action = VERDICT_SENT_AUTH;
        v->credentials_exposed = true;
        say_auth(v, f);
        say(v, "%s: credentials exposed", after);
        if (f->mail) say(v, "; it sent mail too: "), say_mail(v, f);
        return;
    }
    v->action = VERDICT_SENT_MAIL;
    v->mail_exposed = true;
    say(v, "mail without AUTH%s: ", after);
    say_mail(v, f);
}

/* --client-starttls strip on a plain listener: no TLS to be had. */
static void judge_strip(struct verdict *v, const struct verdict_facts *f)
{
    if (f->auth || f->mail) {
        judge_sent(v, f, "", " in clear after STARTTLS was withheld");
        return;
    }
    v->action = VERDICT_GAVE_UP;
    v->good = true;
    say(v, "client gave up without sending credentials%s: good",
        f->starttls_sent ? " (it asked for STARTTLS and was refused)" : "");
}

static void judge_refused(struct verdict *v, const struct verdict_facts *f)
{
    v->action = VERDICT_REFUSED;
    v->good = true;
    const char *alert = verdict_alert_name(f->alert);
    say(v, "client refused the %s", client_cert_words(f->cert));
    if (alert)
        say(v, " (alert %s)", alert);
    else if (f->alert)
        say(v, " (alert %d)", f->alert);
    else
        say(v, " (it closed the connection during the handshake)");
    say(v, ": good");
}

static void judge_cert(struct verdict *v, const struct verdict_facts *f)
{
    /* What went in clear, before TLS or without it, is the worst of it. */
    struct verdict_facts clear = *f;
    clear.auth = f->auth && !f->auth_in_tls;
    clear.mail = f->mail && !f->mail_in_tls;
    if (clear.auth || clear.mail) {
        judge_sent(v, &clear, "",
                   f->tls_started ? " in clear before TLS"
                                  : " in clear without asking for STARTTLS");
        return;
    }
    if (!f->tls_started) {
        v->action = VERDICT_GAVE_UP;
        v->good = true;
        say(v, "client went away without starting TLS or sending credentials: good");
        return;
    }
    if (!f->tls_up) {
        judge_refused(v, f);
        return;
    }
    if (f->auth || f->mail) {
        char before[200];
        snprintf(before, sizeof before, "ACCEPTED %s %s and then ", client_cert_article(f->cert),
                 client_cert_words(f->cert));
        judge_sent(v, f, before, "");
        return;
    }
    v->action = VERDICT_GAVE_UP;
    v->good = true;
    say(v,
        "client completed the handshake with the %s but sent neither credentials nor mail "
        "(it gave up after the handshake): good",
        client_cert_words(f->cert));
}

void verdict_of(const struct verdict_facts *f, struct verdict *out)
{
    memset(out, 0, sizeof *out);
    if (f->strip && !f->implicit_tls)
        judge_strip(out, f);
    else
        judge_cert(out, f);
}
