/* session_tls.c - TLS on either leg of a session: implicit TLS from the client (tls:
 * listeners) and to the upstream (tls: upstreams), the client's STARTTLS that smtptap
 * answers, STARTTLS passed through to the server, the leaf's name, and the one rule for bytes
 * that arrive behind a STARTTLS before TLS could start (they are injection). */
#include <stdio.h>
#include <string.h>

#include "session_int.h"

bool session_opaque(const struct session *s)
{
    return smtp_in_mode(&s->cin) == SMTP_IN_OPAQUE;
}

bool session_upstream_in_tls(const struct session *s)
{
    return s->up_kind == UP_TCP && tcp_leg_tls_started(&s->up.tcp);
}

/* The "client TLS: ..." or "upstream TLS: ..." line, with its facts for structured formats. */
void session_tls_event(struct session *s, const struct tcp_leg *t, bool upstream)
{
    char facts_line[1024];
    tcp_leg_describe_tls(t, upstream, facts_line, sizeof facts_line);
    struct tls_facts tf;
    tcp_leg_tls_facts(t, upstream, &tf);
    union event_facts f = {.tls = {.upstream = upstream,
                                   .version = tf.version,
                                   .cipher = tf.cipher,
                                   .sni = tf.sni,
                                   .peer_subject = tf.subject,
                                   .peer_issuer = tf.issuer,
                                   .peer_sha256 = tf.sha256,
                                   .verify = tf.verify}};
    char text[1100];
    snprintf(text, sizeof text, "%s TLS: %s", upstream ? "upstream" : "client", facts_line);
    session_emit_facts(s, EV_INFO, upstream ? DIR_S2C : DIR_C2S, NULL, 0, text, false, &f);
}

/* ---- injection behind STARTTLS ----------------------------------------------------------- */

void session_discard_after_starttls(struct session *s, enum starttls_discard which)
{
    static const char *const words[] = {
        [DISCARD_CLIENT_BEFORE_SERVER_REPLY] =
            "lint: client sent %zu bytes after STARTTLS before the server's reply: discarded, "
            "not relayed (command injection, CVE-2011-0411 class)",
        [DISCARD_CLIENT_BEFORE_OWN_220] =
            "lint: client sent %zu bytes after STARTTLS before the 220: discarded, not relayed "
            "into TLS (command injection, CVE-2011-0411 class)",
        [DISCARD_SERVER_AFTER_220_RELAYED] =
            "lint: server sent %zu bytes after its 220 to STARTTLS: discarded, not relayed "
            "(response injection)",
        [DISCARD_SERVER_AFTER_220_OWN] =
            "lint: server sent %zu bytes after its 220 to STARTTLS: discarded, not taken as the "
            "server's words inside TLS (response injection)",
    };
    const uint8_t *rest;
    size_t n;
    bool client =
        which == DISCARD_CLIENT_BEFORE_SERVER_REPLY || which == DISCARD_CLIENT_BEFORE_OWN_220;
    if (which == DISCARD_CLIENT_BEFORE_OWN_220)
        n = smtp_in_reset(&s->cin); /* and back to commands: they come inside TLS now */
    else if (client)
        n = smtp_in_discard(&s->cin); /* the framer stays opaque */
    else
        n = smtp_reply_take_rest(&s->sin, &rest);
    if (n)
        session_lint(s, client ? "command-injection" : "response-injection",
                     client ? DIR_C2S : DIR_S2C, (int64_t)(client ? s->c2s_pos : s->s2c_pos),
                     words[which], n);
}

void session_start_passthrough(struct session *s)
{
    session_emitf(s, EV_INFO, DIR_NONE,
                  "STARTTLS accepted by the server: TLS passes through, the rest of the session is "
                  "encrypted end to end and not visible");
    /* Plain text sent after STARTTLS, by either side, would be taken as the peer's first
     * words inside TLS by a careless TLS stack: it goes nowhere. */
    session_discard_after_starttls(s, DISCARD_CLIENT_BEFORE_SERVER_REPLY);
    session_discard_after_starttls(s, DISCARD_SERVER_AFTER_220_RELAYED);
    session_emit(s, EV_CLIENT_TLS, DIR_NONE, NULL, 0, NULL, false);
}

/* ---- the upstream leg ---------------------------------------------------------------------- */

bool session_upstream_ca_hint(struct session *s, char *out, size_t size)
{
    char issuer[300];
    if (s->up_kind != UP_TCP || !leg_tls_untrusted_issuer(&s->up.tcp, issuer, sizeof issuer))
        return false;
    snprintf(out, size,
             "its issuer %s is not a CA smtptap trusts: give that CA's certificate with "
             "--upstream-ca FILE",
             issuer);
    return true;
}

static void on_upstream_tls(struct tcp_leg *t, int status)
{
    struct session *s = t->base.owner;
    if (s->state != SESSION_UPSTREAM_TLS) return;
    if (status == 0) {
        session_tls_event(s, t, true);
        leg_tls_release_hello(&s->client, t);
        if (s->state != SESSION_UPSTREAM_TLS) return;
        session_start_relaying(s);
        return;
    }
    char hint[600] = "", ca[500];
    if (leg_tls_peer_spoke_plain(t))
        snprintf(hint, sizeof hint,
                 " (the server speaks plain SMTP on this port, it sent \"220\": use "
                 "starttls:HOST:PORT, or HOST:PORT without a prefix)");
    else if (session_upstream_ca_hint(s, ca, sizeof ca))
        snprintf(hint, sizeof hint, " (%s, or --insecure to skip verification)", ca);
    session_emitf(s, EV_ERROR, DIR_S2C, "upstream %s TLS handshake failed: %s%s", s->upstream_name,
                  t->tls_error, hint);
    session_local_reply(s, "421 4.4.0 smtptap: upstream %s unreachable (TLS failed: %s)",
                        s->upstream_name, t->tls_error);
    session_end(s);
}

void session_start_upstream_tls(struct session *s)
{
    session_enter(s, SESSION_UPSTREAM_TLS, "implicit TLS upstream");
    const char *host = s->cfg->upstream.target.host;
    if (tcp_leg_start_tls(&s->up.tcp, s->env->tls_client, false, host, on_upstream_tls) < 0) {
        session_unreachable(s, s->up.tcp.tls_error);
        return;
    }
    leg_read_start(&s->up.tcp.base);
}

/* ---- the client leg ------------------------------------------------------------------------ */

static void on_client_tls(struct tcp_leg *t, int status)
{
    struct session *s = t->base.owner;
    if (s->state >= SESSION_ENDING) return;
    if (status == 0) {
        s->verdict.tls_up = true;
        session_tls_event(s, t, false);
        const struct upstream_spec *u = &s->cfg->upstream;
        if (u->kind == UPSTREAM_TRANSPARENT || (u->kind == UPSTREAM_FIXED && u->tls == TLS_NONE) ||
            s->upgrade == UPGRADE_DECLINED)
            session_emitf(s, EV_INFO, DIR_NONE,
                          "the client's TLS ends at smtptap: the upstream leg is plain text");
        return;
    }
    s->verdict.tls_failed = true;
    s->verdict.alert = t->tls_peer_alert;
    session_emitf(s, EV_ERROR, DIR_C2S, "client TLS handshake failed: %s%s", t->tls_error,
                  !leg_tls_peer_spoke_plain(t) ? ""
                  : s->client_tls_via_starttls
                      ? " (the client went on in plain text after the 220 to STARTTLS)"
                      : " (the client speaks plain SMTP: it expects a plain or STARTTLS port, "
                        "not implicit TLS)");
    s->client_eof = s->client_dead = true; /* nothing more can be said to it */
    session_end(s);
}

/* The leaf's name when the client sends no SNI: the upstream host, else the address the
 * client meant (transparent: its original destination, set when it is known), else the
 * address it connected to. */
static void choose_leaf_name(struct session *s)
{
    const struct upstream_spec *u = &s->cfg->upstream;
    s->client.tls_cert_mode = (int)s->cfg->client_cert;
    if (u->kind == UPSTREAM_FIXED) {
        snprintf(s->client.tls_name, sizeof s->client.tls_name, "%s", u->target.host);
        return;
    }
    if (s->client.tls_name[0]) return;
    struct sockaddr_storage local;
    memset(&local, 0, sizeof local);
    char ip[80] = "localhost";
    if (tcp_leg_addresses(&s->client, &local, NULL) == 0 && local.ss_family)
        uv_ip_name((struct sockaddr *)&local, ip, sizeof ip);
    snprintf(s->client.tls_name, sizeof s->client.tls_name, "%s", ip);
}

/* With an implicit-TLS upstream the ClientHello waits for the upstream's certificate, so the
 * leaf can copy it. */
bool session_start_client_tls(struct session *s)
{
    const struct upstream_spec *u = &s->cfg->upstream;
    choose_leaf_name(s);
    s->client.tls_hold_hello = u->kind == UPSTREAM_FIXED && u->tls == TLS_IMPLICIT;
    s->verdict.implicit_tls = s->verdict.tls_started = true;
    if (tcp_leg_start_tls(&s->client, s->env->tls_server, true, NULL, on_client_tls) == 0) {
        leg_read_start(&s->client.base);
        return true;
    }
    session_emitf(s, EV_ERROR, DIR_C2S, "client TLS could not start: %s", s->client.tls_error);
    session_end(s);
    return false;
}

void session_client_starttls(struct session *s)
{
    if (s->state >= SESSION_ENDING || tcp_leg_tls_started(&s->client)) return;
    s->client_tls_via_starttls = true;
    s->verdict.tls_started = true;
    hello_memory_client_tls(&s->hello);
    session_discard_after_starttls(s, DISCARD_CLIENT_BEFORE_OWN_220);
    session_emit(s, EV_CLIENT_TLS, DIR_NONE, NULL, 0, NULL, false);
    choose_leaf_name(s);
    if (s->up_kind == UP_TCP) tcp_leg_copy_peer_certificate(&s->client, &s->up.tcp);
    if (!s->env->tls_server ||
        tcp_leg_start_tls(&s->client, s->env->tls_server, true, NULL, on_client_tls) < 0) {
        session_emitf(s, EV_ERROR, DIR_C2S, "client TLS could not start: %s", s->client.tls_error);
        session_end(s);
    }
}
