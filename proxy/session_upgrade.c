/* session_upgrade.c - STARTTLS towards the upstream (-u starttls:HOST:PORT): after the
 * client's first EHLO, smtptap sends STARTTLS itself, handshakes, sends the client's EHLO
 * again, and the client sees one EHLO reply, from inside TLS. The client is not read while
 * this happens. An upstream that does not offer STARTTLS gets the client a 421. */
#include <stdio.h>
#include <string.h>

#include "smtptap/ehlo.h"
#include "smtptap/server.h"
#include "smtptap/session.h"
#include "smtptap/tls.h"

static const char starttls_line[] = "STARTTLS\r\n";

bool upgrade_busy(const struct session *s)
{
    return s->upgrade == UPGRADE_PROBING || s->upgrade == UPGRADE_STARTTLS_SENT ||
           s->upgrade == UPGRADE_HANDSHAKING;
}

bool upgrade_starts(struct session *s, const struct smtp_in_item *it)
{
    if (s->server->cfg->upstream.kind != UPSTREAM_FIXED ||
        s->server->cfg->upstream.tls != TLS_STARTTLS || s->upgrade != UPGRADE_NONE ||
        it->verb != SMTP_VERB_EHLO || !it->first || !it->complete)
        return false;
    buf_append(&s->upgrade_ehlo, it->bytes, it->len);
    s->upgrade = UPGRADE_PROBING;
    return true;
}

static void refuse(struct session *s, const char *why)
{
    char line[600];
    session_emitf(s, EV_ERROR, DIR_S2C, "upstream %s: %s (starttls: requires TLS)",
                  s->upstream_name, why);
    int n = snprintf(line, sizeof line, "421 4.7.0 smtptap: upstream %s: %s\r\n", s->upstream_name,
                     why);
    if (n > (int)sizeof line - 1) n = (int)sizeof line - 1;
    session_emit(s, EV_REPLY, DIR_S2C, (const uint8_t *)line, (size_t)n, NULL, true);
    reply_send(s, (const uint8_t *)line, (size_t)n);
    session_end(s);
}

static void on_upstream_starttls(struct tcp_leg *t, int status)
{
    struct session *s = t->base.owner;
    if (s->state == SESSION_ENDING) return;
    if (status < 0) {
        char why[700];
        snprintf(why, sizeof why, "TLS failed (%s)", t->tls_error);
        refuse(s, why);
        return;
    }
    char facts[1024];
    tls_describe(t->ssl, true, facts, sizeof facts);
    session_emitf(s, EV_INFO, DIR_S2C, "upstream TLS: %s", facts);
    /* The client's EHLO again, now inside TLS: its reply is the one the client gets. */
    struct smtp_pending p = {.kind = SMTP_PENDING_COMMAND, .verb = SMTP_VERB_EHLO};
    smtp_fifo_push(&s->fifo, p);
    session_emit(s, EV_COMMAND, DIR_C2S, buf_head(&s->upgrade_ehlo), buf_size(&s->upgrade_ehlo),
                 NULL, true);
    leg_write(&s->up.tcp.base, buf_head(&s->upgrade_ehlo), buf_size(&s->upgrade_ehlo));
    buf_free(&s->upgrade_ehlo);
    s->upgrade = UPGRADE_DONE;
    session_update_flow(s);
}

static void send_starttls(struct session *s)
{
    struct smtp_pending p = {
        .kind = SMTP_PENDING_COMMAND, .verb = SMTP_VERB_STARTTLS, .internal = true};
    smtp_fifo_push(&s->fifo, p);
    session_emitf(s, EV_INFO, DIR_S2C, "smtptap upgrades the upstream leg: STARTTLS");
    session_emit(s, EV_COMMAND, DIR_C2S, (const uint8_t *)starttls_line, sizeof starttls_line - 1,
                 NULL, true);
    leg_write(&s->up.tcp.base, (const uint8_t *)starttls_line, sizeof starttls_line - 1);
    s->upgrade = UPGRADE_STARTTLS_SENT;
}

static void start_handshake(struct session *s)
{
    const uint8_t *rest;
    size_t n = smtp_reply_take_rest(&s->sin, &rest);
    if (n)
        session_emitf(s, EV_LINT, DIR_S2C,
                      "lint: server sent %zu bytes after its 220 to STARTTLS: discarded (response "
                      "injection)",
                      n);
    s->upgrade = UPGRADE_HANDSHAKING;
    const char *host = s->server->cfg->upstream.target.host;
    if (tcp_leg_start_tls(&s->up.tcp, s->server->tls_client, false, host, on_upstream_starttls) < 0)
        refuse(s, s->up.tcp.tls_error);
}

bool upgrade_on_reply(struct session *s, const struct smtp_pending *p, const struct smtp_reply *r)
{
    if (p->internal) { /* the reply to smtptap's own STARTTLS */
        if (r->code == 220) {
            start_handshake(s);
        } else {
            char why[300];
            snprintf(why, sizeof why, "refused STARTTLS (%d)", r->code);
            refuse(s, why);
        }
        return true;
    }
    if (s->upgrade != UPGRADE_PROBING || p->verb != SMTP_VERB_EHLO) return false;
    if (r->code == 250 && ehlo_has(r->bytes, r->len, "STARTTLS"))
        send_starttls(s);
    else
        refuse(s, "does not offer STARTTLS");
    return true;
}
