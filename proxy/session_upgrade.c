/* session_upgrade.c - STARTTLS towards the upstream, done by smtptap itself: required for
 * -u starttls:HOST:PORT, opportunistic for a HOST:PORT without prefix (unless the client's own
 * STARTTLS is passed through). At the client's first EHLO (or HELO: smtptap then probes with
 * EHLO) smtptap stops reading the client, sends STARTTLS itself, handshakes, and sends the
 * client's command again inside TLS; the client sees one reply, from inside TLS. Without
 * STARTTLS on offer: starttls: gets the client a 421, no prefix stays plain with a notice. */
#include <assert.h>
#include <stdio.h>
#include <string.h>

#include "session_int.h"
#include "smtptap/ehlo.h"

static const char starttls_line[] = "STARTTLS\r\n";

static const char *const upgrade_names[] = {
    [UPGRADE_NONE] = "NONE",
    [UPGRADE_PROBING] = "PROBING",
    [UPGRADE_STARTTLS_SENT] = "STARTTLS_SENT",
    [UPGRADE_HANDSHAKING] = "HANDSHAKING",
    [UPGRADE_DONE] = "DONE",
    [UPGRADE_DECLINED] = "DECLINED",
};

void upgrade_enter(struct session *s, enum upstream_upgrade next, const char *why)
{
    enum upstream_upgrade old = s->upgrade;
    assert(next > old && old < UPGRADE_DONE); /* forward only, and DONE, DECLINED are final */
    if (s->cfg->verbosity >= 2)
        session_emitf(s, EV_INFO, DIR_NONE, "upstream upgrade %s -> %s (%s)", upgrade_names[old],
                      upgrade_names[next], why);
    s->upgrade = next;
    if (next == UPGRADE_DONE || next == UPGRADE_DECLINED)
        buf_free(&s->upgrade_hello); /* the client's hello has gone up, or is answered */
}

bool upgrade_busy(const struct session *s)
{
    return s->upgrade == UPGRADE_PROBING || s->upgrade == UPGRADE_STARTTLS_SENT ||
           s->upgrade == UPGRADE_HANDSHAKING;
}

static bool required(const struct session *s)
{
    return s->cfg->upstream.tls == TLS_STARTTLS;
}

/* starttls: always; no prefix unless the client's STARTTLS is meant for the server. */
static bool wanted(const struct session *s)
{
    const struct config *cfg = s->cfg;
    if (cfg->upstream.kind != UPSTREAM_FIXED) return false;
    if (cfg->upstream.tls == TLS_STARTTLS) return true;
    return cfg->upstream.tls == TLS_STARTTLS_IF_OFFERED &&
           cfg->client_starttls != CLIENT_STARTTLS_PASSTHROUGH;
}

bool upgrade_intercepts(struct session *s, const struct smtp_in_item *it)
{
    if (s->upgrade != UPGRADE_NONE || it->sasl || !it->first || !it->complete ||
        (it->verb != SMTP_VERB_EHLO && it->verb != SMTP_VERB_HELO) || !wanted(s))
        return false;
    buf_append(&s->upgrade_hello, it->bytes, it->len);
    upgrade_enter(s, UPGRADE_PROBING, smtp_verb_name(it->verb));
    s->upgrade_seq = s->commands; /* the number client_line gave its FIFO entry */
    if (it->verb == SMTP_VERB_EHLO) {
        hello_memory_sent(&s->hello, it->bytes, it->len);
        leg_write(&s->up.tcp.base, it->bytes, it->len); /* its reply is the probe */
        return true;
    }
    /* HELO: the client's own line waits; an EHLO with its domain asks about STARTTLS. */
    const uint8_t *arg;
    size_t arg_len;
    smtp_verb_parse(it->bytes, it->len, &arg, &arg_len);
    char line[600];
    int n = snprintf(line, sizeof line, "EHLO %.*s\r\n",
                     arg_len ? (int)(arg_len > 500 ? 500 : arg_len) : 7,
                     arg_len ? (const char *)arg : "smtptap");
    session_emitf(s, EV_INFO, DIR_C2S,
                  "smtptap holds the client's HELO and asks the upstream with EHLO whether it "
                  "offers STARTTLS");
    /* The client's HELO entry, already in the FIFO, pairs with this EHLO's reply. */
    session_emit(s, EV_COMMAND, DIR_C2S, (const uint8_t *)line, (size_t)n, NULL, true);
    hello_memory_sent(&s->hello, (const uint8_t *)line, (size_t)n);
    leg_write(&s->up.tcp.base, (const uint8_t *)line, (size_t)n);
    return true;
}

static void refuse(struct session *s, const char *why)
{
    char line[600], hint[800], ca[500];
    bool untrusted = session_upstream_ca_hint(s, ca, sizeof ca);
    if (required(s))
        snprintf(hint, sizeof hint, "starttls: requires TLS%s%s%s", untrusted ? "; " : "",
                 untrusted ? ca : "", untrusted ? ", or --insecure to skip verification" : "");
    else /* the usual fix first: trusting the server's CA keeps the upstream leg verified */
        snprintf(hint, sizeof hint,
                 "the server offers STARTTLS, so smtptap requires it to work; %s%suse "
                 "plain:HOST:PORT to stay in plain text, or --insecure to skip verification",
                 untrusted ? ca : "", untrusted ? "; or " : "");
    session_emitf(s, EV_ERROR, DIR_S2C, "upstream %s: %s (%s)", s->upstream_name, why, hint);
    int n = snprintf(line, sizeof line, "421 4.7.0 smtptap: upstream %s: %s\r\n", s->upstream_name,
                     why);
    if (n > (int)sizeof line - 1) n = (int)sizeof line - 1;
    session_emit_own_reply(s, (const uint8_t *)line, (size_t)n);
    reply_send(s, (const uint8_t *)line, (size_t)n);
    session_end(s);
}

/* The client's EHLO/HELO goes up (again): its reply is the one the client gets. */
static void send_client_hello(struct session *s, enum upstream_upgrade next)
{
    smtp_fifo_push(&s->fifo, s->upgrade_of);
    session_emit(s, EV_COMMAND, DIR_C2S, buf_head(&s->upgrade_hello), buf_size(&s->upgrade_hello),
                 NULL, true);
    hello_memory_sent(&s->hello, buf_head(&s->upgrade_hello), buf_size(&s->upgrade_hello));
    leg_write(&s->up.tcp.base, buf_head(&s->upgrade_hello), buf_size(&s->upgrade_hello));
    upgrade_enter(s, next, "the client's hello sent");
    session_update_flow(s);
    session_pump_client(s); /* what the client sent while the upstream was being upgraded */
}

/* Not lint: a server may lawfully not offer STARTTLS, or refuse it; "==" with a notice. */
static void stay_plain(struct session *s, const char *why)
{
    session_emitf(s, EV_INFO, DIR_S2C,
                  "notice: upstream %s: %s: the upstream leg stays in plain text (use starttls: "
                  "to require TLS)",
                  s->upstream_name, why);
}

/* The upstream stays plain and the client's hello has had no reply yet: the server, greeted
 * by the probe already, answers it from memory; only when it accepted no hello does the
 * client's own go up. */
static void decline(struct session *s)
{
    if (!session_hello_after_probe(s, &s->upgrade_of, &s->upgrade_hello)) {
        send_client_hello(s, UPGRADE_DECLINED);
        return;
    }
    upgrade_enter(s, UPGRADE_DECLINED, "the client's hello answered from the probe's reply");
    session_update_flow(s);
    session_pump_client(s);
}

static void on_upstream_starttls(struct tcp_leg *t, int status)
{
    struct session *s = t->base.owner;
    if (s->state >= SESSION_ENDING) return;
    if (status < 0) {
        char why[700];
        snprintf(why, sizeof why, "TLS failed (%s)", t->tls_error);
        refuse(s, why);
        return;
    }
    session_tls_event(s, t, true);
    send_client_hello(s, UPGRADE_DONE);
}

static void send_starttls(struct session *s)
{
    session_emitf(s, EV_INFO, DIR_S2C, "smtptap upgrades the upstream leg: STARTTLS");
    struct smtp_pending p = {.kind = SMTP_PENDING_COMMAND,
                             .verb = SMTP_VERB_STARTTLS,
                             .internal = true,
                             .sent_ns = uv_hrtime()};
    smtp_fifo_push(&s->fifo, p);
    session_emit(s, EV_COMMAND, DIR_C2S, (const uint8_t *)starttls_line, sizeof starttls_line - 1,
                 NULL, true);
    leg_write(&s->up.tcp.base, (const uint8_t *)starttls_line, sizeof starttls_line - 1);
    upgrade_enter(s, UPGRADE_STARTTLS_SENT, "the server offers STARTTLS");
}

static void start_handshake(struct session *s)
{
    session_discard_after_starttls(s, DISCARD_SERVER_AFTER_220_OWN);
    upgrade_enter(s, UPGRADE_HANDSHAKING, "220 to smtptap's STARTTLS");
    hello_memory_forget(&s->hello); /* the server will want a new hello inside TLS */
    const char *host = s->cfg->upstream.target.host;
    if (tcp_leg_start_tls(&s->up.tcp, s->env->tls_client, false, host, on_upstream_starttls) < 0)
        refuse(s, s->up.tcp.tls_error);
}

/* The reply to smtptap's STARTTLS. */
static void starttls_reply(struct session *s, const struct smtp_reply *r)
{
    if (r->code == 220) {
        start_handshake(s);
        return;
    }
    char why[300];
    snprintf(why, sizeof why, "refused STARTTLS (%d)", r->code);
    if (required(s)) {
        refuse(s, why);
        return;
    }
    stay_plain(s, why);
    decline(s);
}

static bool offers_starttls(const struct smtp_reply *r)
{
    return r->code == 250 && ehlo_has(r->bytes, r->len, "STARTTLS");
}

static bool is_probe_reply(const struct session *s, const struct smtp_pending *p)
{
    return s->upgrade == UPGRADE_PROBING && p->kind == SMTP_PENDING_COMMAND && !p->internal &&
           p->seq == s->upgrade_seq;
}

static bool is_starttls_reply(const struct smtp_pending *p)
{
    return p->internal && p->verb == SMTP_VERB_STARTTLS;
}

const struct fault_rule *upgrade_guard(const struct session *s, const struct smtp_in_item *it,
                                       const struct fault_rule *fault)
{
    /* Not only before the upgrade: also after a 421 ended it, the leg is still plain. */
    if (!required(s) || s->upgrade == UPGRADE_DONE || it->sasl || !it->first || !it->complete ||
        reply_fault_is_local(fault, it->verb))
        return NULL;
    switch (it->verb) {
    case SMTP_VERB_EHLO:
    case SMTP_VERB_HELO:
    case SMTP_VERB_NOOP:
    case SMTP_VERB_RSET:
    case SMTP_VERB_QUIT: return NULL;
    default: return &reply_hello_first;
    }
}

bool upgrade_waits_for_head(const struct session *s)
{
    const struct smtp_pending *head = smtp_fifo_peek(&s->fifo);
    return head && (is_starttls_reply(head) || is_probe_reply(s, head));
}

bool upgrade_reply_too_long(struct session *s)
{
    const struct smtp_pending *head = smtp_fifo_peek(&s->fifo);
    if (required(s) || is_starttls_reply(head)) {
        refuse(s, "sent a reply over 64 KiB while smtptap was upgrading the connection");
        return true;
    }
    /* No prefix: whether STARTTLS is in there cannot be told; the reply goes on as it is. */
    stay_plain(s, "its EHLO reply is over 64 KiB, STARTTLS cannot be looked for");
    upgrade_enter(s, UPGRADE_DECLINED, "EHLO reply over 64 KiB");
    return false;
}

bool upgrade_takes(const struct session *s, const struct smtp_pending *p,
                   const struct smtp_reply *r)
{
    if (r->code == 421) return false; /* the server is closing: the client hears it */
    if (is_starttls_reply(p)) return true;
    if (!is_probe_reply(s, p)) return false;
    /* Only a no-prefix upstream's EHLO reply without STARTTLS goes on to the client. */
    return offers_starttls(r) || required(s) || p->verb == SMTP_VERB_HELO;
}

void upgrade_on_reply(struct session *s, const struct smtp_pending *p, const struct smtp_reply *r)
{
    if (!is_starttls_reply(p) && !is_probe_reply(s, p)) return;
    if (r->code == 421) { /* goes on to the client as the reply to its EHLO/HELO */
        session_emitf(s, EV_INFO, DIR_S2C,
                      "upstream %s answered 421 during the STARTTLS upgrade: the client gets it",
                      s->upstream_name);
        upgrade_enter(s, UPGRADE_DECLINED, "421 from the server");
        return;
    }
    if (is_starttls_reply(p)) {
        starttls_reply(s, r);
        return;
    }
    /* The probe's reply: to the client's EHLO, or to smtptap's EHLO standing for a HELO. */
    s->upgrade_of = *p;
    if (offers_starttls(r)) {
        send_starttls(s);
        return;
    }
    char why[300];
    if (r->code == 250)
        snprintf(why, sizeof why, "does not offer STARTTLS");
    else
        snprintf(why, sizeof why, "answered EHLO with %d, so no STARTTLS", r->code);
    if (required(s)) {
        refuse(s, why);
        return;
    }
    stay_plain(s, why);
    if (p->verb == SMTP_VERB_HELO) { /* the client's HELO still waits for its reply */
        decline(s);
        return;
    }
    /* this reply is the client's; reading resumes after it */
    upgrade_enter(s, UPGRADE_DECLINED, "no STARTTLS offered");
}
