/* session_verdict.c - the session's side of the verdict (verdict.h): the facts gathered from
 * the client's commands and TLS, and at the end one "==" line with its EV_VERDICT facts,
 * when the client was shown a bad certificate or had STARTTLS withheld. */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "session_int.h"

/* The SASL mechanism of "AUTH MECH [ir]", upper-cased. */
static void auth_mech(const struct smtp_in_item *it, char *out, size_t size)
{
    const uint8_t *arg;
    size_t arg_len, n = 0;
    smtp_verb_parse(it->bytes, it->len, &arg, &arg_len);
    while (n < arg_len && n + 1 < size && arg[n] > ' ' && arg[n] < 0x7f) {
        out[n] = (char)toupper(arg[n]);
        n++;
    }
    out[n] = 0;
}

/* The user of the AUTH exchange the decoder saw last, as the "##" lines show it (only with
 * --decode-auth). */
static void take_user(struct session *s)
{
    struct verdict_facts *f = &s->verdict;
    if (s->cfg->decode_auth)
        snprintf(f->auth_user, sizeof f->auth_user, "%.*s", (int)sizeof f->auth_user - 1,
                 s->auth.user);
    f->auth_user_final = true;
}

void session_verdict_command(struct session *s, const struct smtp_in_item *it)
{
    struct verdict_facts *f = &s->verdict;
    bool in_tls = tcp_leg_tls_up(&s->client);
    switch (it->verb) {
    case SMTP_VERB_STARTTLS: f->starttls_sent = true; break;
    case SMTP_VERB_AUTH:
        /* The decoder has not seen this command yet: its user is the previous exchange's,
         * which is the recorded one when this is the first AUTH after it. */
        if (f->auth && !f->auth_user_final) take_user(s);
        if (f->auth && (!f->auth_in_tls || in_tls)) break; /* the first, or one in clear */
        f->auth_user[0] = 0;
        f->auth_user_final = false;
        f->auth = true;
        f->auth_in_tls = in_tls;
        auth_mech(it, f->auth_mech, sizeof f->auth_mech);
        break;
    case SMTP_VERB_MAIL:
        if (f->mail && (!f->mail_in_tls || in_tls)) break;
        f->mail = true;
        f->mail_in_tls = in_tls;
        break;
    case SMTP_VERB_RCPT: f->rcpts++; break;
    default: break;
    }
}

void session_verdict_emit(struct session *s)
{
    struct verdict_facts *f = &s->verdict;
    f->cert = s->cfg->client_cert;
    f->strip = s->cfg->client_starttls == CLIENT_STARTTLS_STRIP;
    if (s->cfg->client_starttls == CLIENT_STARTTLS_PASSTHROUGH && !f->implicit_tls) return;
    if (!verdict_applies(f)) return;
    if (!f->alert) f->alert = s->client.tls_peer_alert;
    if (f->auth && !f->auth_user_final) take_user(s); /* the recorded AUTH was the last */
    struct verdict v;
    verdict_of(f, &v);
    const char *alert = verdict_alert_name(f->alert);
    union event_facts facts = {.verdict = {.cert = client_cert_name(f->cert),
                                           .starttls = f->implicit_tls ? "implicit"
                                                       : f->strip      ? "strip"
                                                                       : "offer",
                                           .action = verdict_action_id(v.action),
                                           .alert = alert ? alert : "",
                                           .auth_mech = f->auth ? f->auth_mech : "",
                                           .auth_user = f->auth_user,
                                           .good = v.good,
                                           .credentials_exposed = v.credentials_exposed,
                                           .mail_exposed = v.mail_exposed}};
    char text[VERDICT_TEXT_MAX + 16];
    snprintf(text, sizeof text, "verdict: %s", v.text);
    session_emit_facts(s, EV_VERDICT, DIR_C2S, NULL, 0, text, false, &facts);
}
