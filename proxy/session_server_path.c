/* session_server_path.c - what the server sends: bytes go through the reply parser one
 * reply at a time and the FIFO pairs each reply with its command. For each reply a route is
 * decided first (to the client, to smtptap's own upgrade, or unasked), then carried out;
 * replies that unblock the framer let the client's held bytes go on. */
#include <stdio.h>

#include "session_int.h"

void session_resume_client(struct session *s, const struct smtp_pending *p, int code,
                           bool from_client_path)
{
    if (!smtp_pending_blocks(p)) return;
    enum smtp_in_mode before = smtp_in_mode(&s->cin);
    enum smtp_in_mode now = smtp_in_resume(&s->cin, code);
    if (now == SMTP_IN_OPAQUE && before == SMTP_IN_WAIT)
        session_start_passthrough(s);
    else if (now != SMTP_IN_OPAQUE && !from_client_path)
        session_pump_client(s); /* bytes held behind DATA/AUTH/STARTTLS can be classified now */
}

void session_flush_local_heads(struct session *s, bool from_client_path)
{
    const struct smtp_pending *head;
    while (s->state < SESSION_ENDING && (head = smtp_fifo_peek(&s->fifo)) && head->local) {
        struct smtp_pending p;
        smtp_fifo_pop(&s->fifo, &p);
        reply_local(s, &p, from_client_path);
    }
}

static void auth_reply(struct session *s, const struct smtp_pending *p, const struct smtp_reply *r)
{
    if (!s->follow_auth) return;
    if (p->kind != SMTP_PENDING_SASL && p->verb != SMTP_VERB_AUTH) return;
    struct auth_view v;
    auth_on_reply(&s->auth, r->code, r->bytes, r->len, &v);
    session_show_auth(s, &v, DIR_S2C);
}

static void unpaired_reply(struct session *s, const struct smtp_reply *r)
{
    if (r->code == 421) {
        s->saw_421 = true;
        session_emitf(s, EV_INFO, DIR_S2C,
                      "upstream sent 421 unasked: it is closing the connection");
    } else if (s->in_message) {
        session_lint(
            s, "server-ended-data-early", DIR_S2C, (int64_t)s->s2c_pos,
            "lint: server ended DATA early: it replied while the message was still open, so it "
            "saw an end of data smtptap did not (SMTP smuggling risk)");
    } else {
        session_lint(s, "reply-before-command", DIR_S2C, (int64_t)s->s2c_pos,
                     "lint: reply that no command asked for");
    }
}

/* ---- a reply: decide, then act ------------------------------------------------------------- */

enum reply_route {
    REPLY_TOO_LONG_FOR_UPGRADE, /* a piece of an over-long reply the upgrade waited for: 421 */
    REPLY_PIECE,                /* a piece of an over-long reply: relayed as it comes */
    REPLY_UNPAIRED,             /* no command asked for it: relayed, flagged */
    REPLY_TO_UPGRADE,           /* the reply to smtptap's probe or STARTTLS: not relayed */
    REPLY_TO_SMTPTAP,           /* the reply to smtptap's RSET after a refused BDAT chunk */
    REPLY_TO_CLIENT,            /* the reply to the client's command */
};

static enum reply_route decide_reply(struct session *s, const struct smtp_reply *r, bool paired,
                                     const struct smtp_pending *p)
{
    if (r->partial) return REPLY_PIECE;
    if (!paired) return REPLY_UNPAIRED;
    if (p->internal && p->verb == SMTP_VERB_RSET && r->code != 421) return REPLY_TO_SMTPTAP;
    return upgrade_takes(s, p, r) ? REPLY_TO_UPGRADE : REPLY_TO_CLIENT;
}

/* A reply the client gets later than the server sent it (a delay fault, or earlier bytes
 * still held): its "<-" lines are stamped when the client gets it (session_reply.c). */
static bool held_for_client(const struct session *s, const struct smtp_pending *p,
                            enum reply_route route)
{
    if (route != REPLY_TO_CLIENT || !s->observed) return false;
    if (p->fault) return ((const struct fault_rule *)p->fault)->action == FAULT_DELAY;
    return s->held_size > 0; /* bytes held by a fault (not a wait for the writer thread) */
}

static void observe_reply(struct session *s, const struct smtp_reply *r, bool paired,
                          const struct smtp_pending *p, enum reply_route route)
{
    union event_facts f = {.reply = {.code = r->partial ? 0 : r->code}};
    if (paired && p->sent_ns) {
        f.reply.latency_ns = uv_hrtime() - p->sent_ns;
        if (route == REPLY_TO_CLIENT) s->server_wait_ns += f.reply.latency_ns;
    }
    if (r->partial && !s->reply_in_pieces)
        session_lint(s, "long-reply", DIR_S2C, (int64_t)s->s2c_pos,
                     "lint: reply longer than %zu octets, relayed in pieces", s->sin.max_reply);
    else if (route == REPLY_UNPAIRED)
        unpaired_reply(s, r);
    s->reply_in_pieces = r->partial;
    if (paired && r->code == 421) s->saw_421 = true;
    if (route == REPLY_TO_UPGRADE || route == REPLY_TO_SMTPTAP)
        session_emit_to_smtptap(s, r->bytes, r->len, &f);
    else if (held_for_client(s, p, route))
        reply_defer_event(s, r->bytes, r->len, &f);
    else
        session_emit_facts(s, EV_REPLY, DIR_S2C, r->bytes, r->len, NULL, false, &f);
    if (!s->observed) return;
    if (r->malformed && !r->partial && route == REPLY_UNPAIRED) /* paired: lint_state says it */
        session_lint(s, "reply-code-changes", DIR_S2C, (int64_t)s->s2c_pos,
                     "lint: malformed reply (every line must start with the same 3-digit code)");
    struct lint_where here = {s, DIR_S2C, (int64_t)s->s2c_pos};
    lint_reply(r->bytes, r->len, session_on_lint, &here);
}

/* The client's reply, shaped by smtptap's EHLO edit and by the command's fault rule. */
static void deliver_to_client(struct session *s, const struct smtp_pending *p,
                              const struct smtp_reply *r)
{
    struct buf edited;
    buf_init(&edited);
    const uint8_t *bytes = r->bytes;
    size_t len = r->len;
    if (hello_client_view(s, p, r->bytes, r->len, &edited))
        bytes = buf_head(&edited), len = buf_size(&edited);
    session_lint_reply(s, p, bytes, len, true);
    if (p->fault && !hello_fault_applied(p))
        reply_faulted(s, p, bytes, len, r->code);
    else
        reply_send(s, bytes, len);
    reply_flush_deferred(s); /* not held after all: said now */
    buf_free(&edited);
}

/* The server's reply to the end of a message: its outcome, with the envelope it had. */
static void delivered(struct session *s, const struct smtp_pending *p, const struct smtp_reply *r)
{
    const char *rcpts[ENVELOPE_MAX_RCPTS];
    size_t n = envelope_rcpts(&s->envelope, rcpts, ENVELOPE_MAX_RCPTS);
    union event_facts f = {.delivery = {.message = p->message,
                                        .helo = s->hello.name,
                                        .mail_from = envelope_mail(&s->envelope),
                                        .rcpts = rcpts,
                                        .nrcpts = n,
                                        .reply = r->bytes,
                                        .reply_len = r->len,
                                        .code = r->code}};
    session_emit_facts(s, EV_DELIVERY, DIR_S2C, NULL, 0, NULL, false, &f);
    envelope_reset(&s->envelope);
}

/* The envelope follows the replies: MAIL and RCPT commit or drop, a message's reply ends the
 * transaction, and so do RSET and a new hello. */
static void follow_envelope(struct session *s, const struct smtp_pending *p,
                            const struct smtp_reply *r)
{
    bool ends_message = p->kind == SMTP_PENDING_DATA_END || p->ends_message;
    if (ends_message)
        delivered(s, p, r);
    else if (p->verb == SMTP_VERB_MAIL || p->verb == SMTP_VERB_RCPT)
        envelope_reply(&s->envelope, p->verb, r->code);
    else if ((p->verb == SMTP_VERB_RSET || p->verb == SMTP_VERB_EHLO ||
              p->verb == SMTP_VERB_HELO) &&
             r->code / 100 == 2)
        envelope_reset(&s->envelope);
}

/* After a paired reply went to the client: what it unblocks. */
static void after_client_reply(struct session *s, const struct smtp_pending *p,
                               const struct smtp_reply *r)
{
    auth_reply(s, p, r);
    bool resets =
        p->verb == SMTP_VERB_RSET || p->verb == SMTP_VERB_EHLO || p->verb == SMTP_VERB_HELO;
    if (resets && r->code / 100 == 2 && s->in_message && smtp_in_mode(&s->cin) != SMTP_IN_BDAT)
        session_abort_message(s, "the transaction was reset between BDAT chunks");
    if (p->kind == SMTP_PENDING_GREETING && s->state == SESSION_GREETING)
        session_enter(s, SESSION_RELAYING, "greeting");
    session_resume_client(s, p, r->code, false);
    session_flush_local_heads(s, false);
    session_shutdown_upstream_when_answered(s);
}

static void handle_reply(struct session *s, const struct smtp_reply *r)
{
    bool was_upgrading = upgrade_busy(s); /* before the check below, which may end it */
    if (r->partial && upgrade_waits_for_head(s) && upgrade_reply_too_long(s)) {
        session_emit_to_smtptap(s, r->bytes, r->len, NULL);
        return;
    }
    struct smtp_pending p;
    bool paired = !r->partial && smtp_fifo_pop(&s->fifo, &p);
    if (paired && !p.local && (p.verb == SMTP_VERB_EHLO || p.verb == SMTP_VERB_HELO))
        hello_memory_replied(&s->hello, r->code, r->bytes, r->len);
    enum reply_route route = decide_reply(s, r, paired, &p);
    observe_reply(s, r, paired, &p, route);
    if (route == REPLY_TO_UPGRADE) {
        upgrade_on_reply(s, &p, r);
        return;
    }
    if (route == REPLY_TO_SMTPTAP) { /* the replies owed after it may be smtptap's own */
        session_flush_local_heads(s, false);
        if (s->state < SESSION_ENDING) session_shutdown_upstream_when_answered(s);
        return;
    }
    if (paired) upgrade_on_reply(s, &p, r);               /* a no-prefix probe the client gets */
    if (paired && s->observed) follow_envelope(s, &p, r); /* the eml exists before the 250 */
    if (paired)
        deliver_to_client(s, &p, r);
    else
        reply_send(s, r->bytes, r->len);
    bool resume = was_upgrading && !upgrade_busy(s); /* the client was held for the upgrade */
    if (paired && s->state < SESSION_ENDING) after_client_reply(s, &p, r);
    if (resume && s->state < SESSION_ENDING) session_pump_client(s);
}

void session_on_upstream_read(struct leg *leg, const uint8_t *bytes, size_t len)
{
    struct session *s = leg->owner;
    if (!session_relaying(s)) return;
    session_touch(s);
    if (session_opaque(s)) {
        session_emit(s, EV_RAW, DIR_S2C, bytes, len, NULL, false);
        reply_send(s, bytes, len);
    } else {
        smtp_reply_feed(&s->sin, bytes, len);
        struct smtp_reply r;
        while (!session_opaque(s) && s->state < SESSION_ENDING && smtp_reply_next(&s->sin, &r))
            handle_reply(s, &r);
    }
    session_update_flow(s);
}
