/* session_client_path.c - what the client sends: bytes go through the framer one command
 * (or one content chunk) at a time and are forwarded as received. For each command line a
 * plan is decided first (forward it, or answer it locally, and why), then carried out.
 * Messages are shown and linted here; AUTH lines are decoded and redacted here, once. */
#include <stdio.h>
#include <string.h>

#include "session_int.h"

enum {
    SHOWN_LINES = 40,       /* message lines shown per message without -v */
    BODY_CHUNK = 64 * 1024, /* message bytes per EV_BODY */
    BODY_DIRECT = 8 * 1024, /* delivered bytes that go out as they are, not gathered */
};

static void on_shown_line(void *ctx, const uint8_t *line, size_t len)
{
    struct session *s = ctx;
    session_emit_content(s, line, len, s->msg.shown >= SHOWN_LINES); /* shown: before this one */
}

/* ---- messages ---------------------------------------------------------------------------- */

static void flush_body(struct session *s, uint64_t number);

void session_finish_message(struct session *s)
{
    s->messages++;
    s->in_message = false;
    if (!s->observed) return;
    struct message_summary sum;
    session_content_clock(s); /* a last line without CRLF is shown now */
    message_view_end(&s->msg, &sum, on_shown_line, s);
    flush_body(s, s->message_seq);
    lint_state_message_end(&s->lstate);
    struct lint_where at_end = {s, DIR_C2S, (int64_t)s->content_end_pos};
    lint_content_end(&s->lint, session_on_lint, &at_end);
    /* Lines past the preview: shown or not, the terminal's writer says (text.c); lines not
     * even recorded (no text capture, no -v) are past the preview too. */
    uint64_t shown = sum.lines - sum.hidden_lines;
    uint64_t past = sum.hidden_lines + (shown > SHOWN_LINES ? shown - SHOWN_LINES : 0);
    char text[300];
    snprintf(text, sizeof text, "message %llu: %llu bytes, %llu lines, sha256 %s",
             (unsigned long long)s->messages, (unsigned long long)sum.size,
             (unsigned long long)sum.lines, sum.sha256_hex);
    union event_facts f = {.message = {.number = s->message_seq,
                                       .size = sum.size,
                                       .lines = sum.lines,
                                       .past_preview = past,
                                       .sha256 = sum.sha256_hex}};
    session_emit_facts(s, EV_MESSAGE, DIR_C2S, NULL, 0, text, false, &f);
}

/* Message bytes as the server receives them (unstuffed) go out as EV_BODY in pieces of up
 * to BODY_CHUNK, not per line: a writer's cost is per event. */
static void flush_body(struct session *s, uint64_t number)
{
    if (!buf_size(&s->body)) return;
    union event_facts f = {.message = {.number = number}};
    session_emit_facts(s, EV_BODY, DIR_C2S, buf_head(&s->body), buf_size(&s->body), NULL, false,
                       &f);
    buf_reset(&s->body);
}

static void on_body(void *ctx, const uint8_t *bytes, size_t len)
{
    struct session *s = ctx;
    if (len >= BODY_DIRECT) { /* a whole read's worth: an event of its own, not gathered */
        flush_body(s, s->message_seq);
        union event_facts f = {.message = {.number = s->message_seq}};
        session_emit_facts(s, EV_BODY, DIR_C2S, bytes, len, NULL, false, &f);
        return;
    }
    buf_append(&s->body, bytes, len);
    if (buf_size(&s->body) >= BODY_CHUNK) flush_body(s, s->message_seq);
}

void session_abort_message(struct session *s, const char *why)
{
    s->in_message = false;
    if (!s->observed) return;
    session_emitf(s, EV_INFO, DIR_C2S, "message %llu abandoned: %s",
                  (unsigned long long)s->messages + 1, why);
    message_view_abort(&s->msg);
    lint_content_begin(&s->lint, false); /* drops what it gathered */
    buf_reset(&s->body);                 /* EV_BODY of the next message carries a new number */
}

static void begin_message(struct session *s, bool bdat)
{
    s->in_message = true;
    s->message_seq++;
    if (!s->observed) return;
    /* Every line when a text capture records them or the terminal shows them (-v), else
     * only what the terminal shows. */
    bool every_line = s->cfg->verbosity > 0 || s->records_text;
    message_view_begin(&s->msg, bdat, every_line ? 0 : SHOWN_LINES);
    s->msg.on_body = on_body;
    s->msg.body_ctx = s;
    lint_content_begin(&s->lint, bdat);
}

/* True for a complete "BDAT n LAST" line: its reply is the message's outcome. */
static bool bdat_last(const struct smtp_in_item *it)
{
    const uint8_t *arg;
    size_t arg_len;
    uint64_t size;
    bool last = false;
    if (!it->complete || it->sasl || it->verb != SMTP_VERB_BDAT) return false;
    smtp_verb_parse(it->bytes, it->len, &arg, &arg_len);
    return smtp_bdat_parse(arg, arg_len, &size, &last) && last;
}

/* local: smtptap answers it (a fault's reply, or one of its own). */
static bool push_pending(struct session *s, enum smtp_pending_kind kind, enum smtp_verb verb,
                         const struct fault_rule *fault, bool local, bool ends_message)
{
    struct smtp_pending p = {.kind = kind,
                             .verb = verb,
                             .seq = s->commands,
                             .fault = fault,
                             .local = local,
                             .sent_ns = uv_hrtime(),
                             .ends_message = ends_message,
                             /* the message in progress, or the one this BDAT LAST begins */
                             .message = s->message_seq + (s->in_message ? 0 : 1)};
    if (smtp_fifo_push(&s->fifo, p)) return true;
    session_emitf(s, EV_ERROR, DIR_C2S, "client sent %d commands without reading a reply: closing",
                  FIFO_MAX);
    session_end(s);
    return false;
}

/* BDAT 0 LAST carries no octets: it ends the message by itself. */
static void after_bdat_command(struct session *s, const struct smtp_in_item *it)
{
    const uint8_t *arg;
    size_t arg_len;
    uint64_t size;
    bool last;
    smtp_verb_parse(it->bytes, it->len, &arg, &arg_len);
    if (!smtp_bdat_parse(arg, arg_len, &size, &last)) return;
    if (size != 0 || !last) return;
    if (!s->in_message) begin_message(s, true);
    session_finish_message(s);
}

/* ---- AUTH: decoded and redacted once, here, so every writer gets the same view ---------- */

void session_show_auth(struct session *s, const struct auth_view *v, enum event_dir side)
{
    if (v->decoded && s->cfg->decode_auth) {
        const char *text = s->cfg->redact ? v->redacted : v->text;
        char values[EVENT_AUTH_FIELDS_MAX][AUTH_TEXT_MAX];
        union event_facts f = {.auth = {
                                   .mechanism = s->auth.mech_name,
                                   .step = v->step,
                                   .user = s->auth.user,
                                   .outcome = v->outcome,
                                   .code = v->code,
                               }};
        for (unsigned i = 0; i < v->nfields && i < EVENT_AUTH_FIELDS_MAX; i++) {
            const struct auth_field *x = &v->fields[i];
            size_t off = s->cfg->redact ? x->roff : x->off, len = s->cfg->redact ? x->rlen : x->len;
            snprintf(values[i], sizeof values[i], "%.*s", (int)len, text + off);
            f.auth.names[i] = x->name;
            f.auth.values[i] = values[i];
            f.auth.secret[i] = x->secret;
            f.auth.nfields++;
        }
        session_emit_facts(s, EV_AUTH, DIR_NONE, NULL, 0, text, false, &f);
    }
    if (v->problem[0]) {
        uint64_t pos = side == DIR_S2C ? s->s2c_pos : s->c2s_pos;
        session_lint(s, "sasl-malformed", side, (int64_t)pos, "lint: %s", v->problem);
    }
}

/* The command event for a client line; AUTH lines go through the decoder and, with
 * --redact, their secret bytes never reach an event. */
/* The command (or SASL line) event and the same bytes on the wire: under --redact both
 * carry the masked line, so no capture format sees the secret. */
static void command_event(struct session *s, const uint8_t *bytes, size_t len)
{
    session_emit(s, EV_COMMAND, DIR_C2S, bytes, len, NULL, false);
    session_wire(s, DIR_C2S, bytes, len);
}

static void emit_client_line(struct session *s, const struct smtp_in_item *it)
{
    bool auth_line = it->sasl || it->verb == SMTP_VERB_AUTH;
    if (!s->follow_auth || !auth_line) {
        command_event(s, it->bytes, it->len);
        return;
    }
    char masked[AUTH_TEXT_MAX + 64];
    if (!(it->first && it->complete)) { /* a piece of an over-long line: all of it hidden */
        if (!s->cfg->redact) {
            command_event(s, it->bytes, it->len);
            return;
        }
        int n = snprintf(masked, sizeof masked, "<redacted>"); /* its length neither */
        command_event(s, (const uint8_t *)masked, (size_t)n);
        return;
    }
    struct auth_view v;
    if (it->sasl)
        auth_on_client_line(&s->auth, it->bytes, it->len, &v);
    else
        auth_on_command(&s->auth, it->bytes, it->len, &v);
    if (s->cfg->redact && v.secret_len) {
        size_t n =
            auth_redact_line(it->bytes, it->len, v.secret_off, v.secret_len, masked, sizeof masked);
        command_event(s, (const uint8_t *)masked, n);
    } else {
        command_event(s, it->bytes, it->len);
    }
    session_show_auth(s, &v, DIR_C2S);
}

/* ---- a command line: decide, then act ----------------------------------------------------- */

/* The fault rule for a complete command line, with a "!!" line when it cannot apply. */
static const struct fault_rule *command_fault(struct session *s, const struct smtp_in_item *it)
{
    if (it->sasl || !it->first || !it->complete) return NULL;
    if (s->bdat_failed && it->verb == SMTP_VERB_BDAT) return NULL; /* discarded: see below */
    const uint8_t *arg;
    size_t arg_len;
    smtp_verb_parse(it->bytes, it->len, &arg, &arg_len);
    const struct fault_rule *r = reply_fault_for(s, reply_stage_of(it->verb), arg, arg_len);
    /* A BDAT chunk made to look accepted is forwarded; the server's reply is replaced. */
    if (r && r->action == FAULT_REPLY && it->verb == SMTP_VERB_BDAT) return r;
    if (r && r->action == FAULT_REPLY && !reply_fault_is_local(r, it->verb)) {
        session_emit_fault(s, r,
                           "fault %s: ignored: a %d reply to %s cannot be faked (the server never "
                           "saw it), forwarding",
                           r->name, r->reply_code, smtp_verb_name(it->verb));
        return NULL;
    }
    return r;
}

enum command_route {
    ROUTE_FORWARD,          /* to the upstream (the upgrade may take it over); fault shapes
                               the real reply */
    ROUTE_CONTINUATION,     /* a later piece of an over-long line: forwarded as it is */
    ROUTE_FAULT,            /* a fault rule answers it */
    ROUTE_BDAT_DISCARDED,   /* a chunk of a transaction a fault failed: the rule's reply again */
    ROUTE_STARTTLS_OFFERED, /* smtptap answers 220 and handshakes (--client-starttls offer) */
    ROUTE_STARTTLS_REFUSED, /* smtptap answers 502 (strip, or the client is in TLS) */
    ROUTE_HELLO_FIRST,      /* 503: a starttls: upstream gets nothing in clear */
    ROUTE_HELLO_REMEMBERED, /* answered from the server's kept hello reply (hello.h) */
};

struct command_plan {
    enum command_route route;
    const struct fault_rule *fault; /* the fault rule in play, or NULL */
};

static struct command_plan decide_command(const struct session *s, const struct smtp_in_item *it,
                                          const struct fault_rule *fault)
{
    if (!it->first) return (struct command_plan){ROUTE_CONTINUATION, NULL};
    if (it->sasl) return (struct command_plan){ROUTE_FORWARD, NULL};
    if (s->bdat_failed && it->verb == SMTP_VERB_BDAT)
        return (struct command_plan){ROUTE_BDAT_DISCARDED, s->bdat_failed};
    bool fault_answers = reply_fault_is_local(fault, it->verb);
    enum client_starttls mode = s->cfg->client_starttls;
    if (it->complete && it->verb == SMTP_VERB_STARTTLS && mode != CLIENT_STARTTLS_PASSTHROUGH &&
        !fault_answers)
        return (struct command_plan){mode == CLIENT_STARTTLS_STRIP ||
                                             tcp_leg_tls_started(&s->client)
                                         ? ROUTE_STARTTLS_REFUSED
                                         : ROUTE_STARTTLS_OFFERED,
                                     NULL};
    if (upgrade_guard(s, it, fault)) return (struct command_plan){ROUTE_HELLO_FIRST, NULL};
    if (it->complete && !fault_answers && hello_route(&s->hello, it->verb) == HELLO_FROM_MEMORY)
        return (struct command_plan){ROUTE_HELLO_REMEMBERED, fault};
    if (fault_answers) return (struct command_plan){ROUTE_FAULT, fault};
    return (struct command_plan){ROUTE_FORWARD, fault};
}

/* The rule a local route answers with (kept in the FIFO entry until its turn). */
static const struct fault_rule *local_rule(const struct command_plan *plan)
{
    switch (plan->route) {
    case ROUTE_FAULT:
    case ROUTE_BDAT_DISCARDED: return plan->fault;
    case ROUTE_STARTTLS_OFFERED: return &reply_starttls_ready;
    case ROUTE_STARTTLS_REFUSED: return &reply_starttls_refused;
    case ROUTE_HELLO_FIRST: return &reply_hello_first;
    case ROUTE_HELLO_REMEMBERED: return &reply_hello_remembered;
    default: return NULL;
    }
}

static bool is_hello(enum smtp_verb verb)
{
    return verb == SMTP_VERB_EHLO || verb == SMTP_VERB_HELO;
}

static void forward_line(struct session *s, const struct smtp_in_item *it)
{
    if (upgrade_intercepts(s, it)) return;
    if (it->first && is_hello(it->verb)) hello_memory_sent(&s->hello, it->bytes, it->len);
    leg_write(s->upstream, it->bytes, it->len);
}

/* The "==" or "!!" line that says why smtptap answered a command itself. */
static void explain_local(struct session *s, const struct smtp_in_item *it,
                          const struct command_plan *plan)
{
    switch (plan->route) {
    case ROUTE_STARTTLS_OFFERED:
        session_emitf(s, EV_INFO, DIR_C2S,
                      "STARTTLS answered by smtptap (--client-starttls offer)");
        break;
    case ROUTE_HELLO_FIRST:
        session_emitf(s, EV_INFO, DIR_C2S,
                      "%s answered by smtptap: a starttls: upstream gets nothing before the EHLO "
                      "that starts TLS",
                      smtp_verb_name(it->verb));
        break;
    case ROUTE_STARTTLS_REFUSED:
        session_emitf(s, EV_INFO, DIR_C2S, "STARTTLS refused by smtptap: %s",
                      tcp_leg_tls_started(&s->client) ? "the client is in TLS already"
                                                      : "--client-starttls strip");
        break;
    case ROUTE_FAULT:
        session_emit_fault(s, plan->fault, "fault %s: %s answered by smtptap, not forwarded",
                           plan->fault->name, smtp_verb_name(it->verb));
        break;
    case ROUTE_BDAT_DISCARDED:
        session_emitf(s, EV_INFO, DIR_C2S,
                      "BDAT chunk discarded by smtptap: fault %s failed the transaction at an "
                      "earlier chunk (RFC 3030: later chunks are discarded)",
                      plan->fault->name);
        break;
    default: break; /* ROUTE_HELLO_REMEMBERED: session_hello.c says why when it answers */
    }
}

/* smtptap's own RSET to the server, its reply not the client's: the server must not keep
 * (or later complete) a transaction that the client was told failed. */
static void abandon_upstream_transaction(struct session *s)
{
    static const char rset[] = "RSET\r\n";
    struct smtp_pending p = {.kind = SMTP_PENDING_COMMAND,
                             .verb = SMTP_VERB_RSET,
                             .internal = true,
                             .sent_ns = uv_hrtime()};
    if (!smtp_fifo_push(&s->fifo, p)) {
        session_emitf(s, EV_ERROR, DIR_C2S,
                      "client sent %d commands without reading a reply: "
                      "closing",
                      FIFO_MAX);
        session_end(s);
        return;
    }
    session_emitf(s, EV_INFO, DIR_C2S,
                  "smtptap resets the server's transaction: the client was told it failed");
    session_emit(s, EV_COMMAND, DIR_C2S, (const uint8_t *)rset, sizeof rset - 1, NULL, true);
    leg_write(s->upstream, (const uint8_t *)rset, sizeof rset - 1);
}

/* A BDAT chunk answered by smtptap with a fault's 4xx/5xx: the transaction failed. Its
 * octets (and those of the chunks after it, until LAST) go nowhere and are no message;
 * the server, which may hold the earlier chunks, is reset once. */
static void bdat_refused(struct session *s, const struct smtp_in_item *it,
                         const struct command_plan *plan)
{
    s->bdat_local = smtp_in_mode(&s->cin) == SMTP_IN_BDAT; /* its octets follow */
    if (plan->route == ROUTE_FAULT) {
        if (s->in_message) session_abort_message(s, "a fault refused one of its BDAT chunks");
        if (s->observed) envelope_reset(&s->envelope);
        abandon_upstream_transaction(s);
    }
    s->bdat_failed = bdat_last(it) ? NULL : plan->fault;
}

static void act_on_command(struct session *s, const struct smtp_in_item *it,
                           const struct command_plan *plan)
{
    bool forward = plan->route == ROUTE_FORWARD || plan->route == ROUTE_CONTINUATION;
    if (it->first && !it->sasl && it->verb != SMTP_VERB_BDAT) s->bdat_failed = NULL;
    if (s->observed && it->first && !it->sasl)
        lint_state_command(&s->lstate, s->c2s_pos, it->bytes, it->len,
                           tcp_leg_tls_started(&s->client), smtp_fifo_count(&s->fifo) > 0);
    if (it->first && it->complete && !it->sasl) session_verdict_command(s, it);
    if (it->first) {
        if (!it->sasl) s->commands++;
        const struct fault_rule *rule = forward ? plan->fault : local_rule(plan);
        if (!push_pending(s, it->sasl ? SMTP_PENDING_SASL : SMTP_PENDING_COMMAND, it->verb, rule,
                          !forward, bdat_last(it)))
            return;
        if (plan->route == ROUTE_HELLO_REMEMBERED) {
            s->hello_fault = plan->fault;
            buf_reset(&s->hello_line);
            buf_append(&s->hello_line, it->bytes, it->len);
        }
        if ((forward || plan->route == ROUTE_HELLO_REMEMBERED) && it->complete && !it->sasl &&
            is_hello(it->verb))
            hello_memory_client_greeted(&s->hello);
        if (s->observed && it->complete && !it->sasl)
            envelope_command(&s->envelope, it->verb, it->bytes, it->len);
    }
    emit_client_line(s, it);
    struct lint_where here = {s, DIR_C2S, (int64_t)s->c2s_pos};
    if (s->observed && it->first && it->complete)
        lint_command_line(it->bytes, it->len, it->sasl, session_on_lint, &here);
    else if (s->observed && it->first)
        lint_long_line(it->bytes, it->len, it->sasl, s->cin.max_line, session_on_lint, &here);
    if (forward) {
        forward_line(s, it);
        if (it->first && it->complete && it->verb == SMTP_VERB_BDAT) after_bdat_command(s, it);
    } else {
        explain_local(s, it, plan);
        if (it->first && it->complete && it->verb == SMTP_VERB_BDAT) bdat_refused(s, it, plan);
        session_flush_local_heads(s, true);
    }
}

static void client_line(struct session *s, const struct smtp_in_item *it)
{
    const struct fault_rule *fault = command_fault(s, it);
    struct command_plan plan = decide_command(s, it, fault);
    act_on_command(s, it, &plan);
}

/* ---- message content and raw bytes -------------------------------------------------------- */

static void client_content(struct session *s, const struct smtp_in_item *it)
{
    s->verdict.body = true;
    session_wire(s, DIR_C2S, it->bytes, it->len);
    if (it->bdat && s->bdat_local) { /* a refused chunk's octets: no message, not forwarded */
        if (it->end) s->bdat_local = false;
        return;
    }
    if (!s->in_message) begin_message(s, it->bdat);
    if (s->observed) {
        session_content_clock(s);
        message_view_feed(&s->msg, it->bytes, it->len, on_shown_line, s);
        struct lint_where here = {s, DIR_C2S, (int64_t)s->c2s_pos};
        lint_content_feed(&s->lint, it->bytes, it->len, session_on_lint, &here);
        s->content_end_pos = s->c2s_pos + it->len;
        lint_state_content(&s->lstate, s->c2s_pos, it->bytes, it->len);
    }
    leg_write(s->upstream, it->bytes, it->len);
    if (!it->end) return;
    if (!it->bdat && !push_pending(s, SMTP_PENDING_DATA_END, SMTP_VERB_DATA,
                                   reply_fault_for(s, FAULT_DATA_END, NULL, 0), false, true))
        return;
    if (!it->bdat || s->cin.bdat_last) session_finish_message(s);
}

static void relay_raw_up(struct session *s, const uint8_t *bytes, size_t len)
{
    session_emit(s, EV_RAW, DIR_C2S, bytes, len, NULL, false);
    session_wire(s, DIR_C2S, bytes, len);
    leg_write(s->upstream, bytes, len);
}

void session_pump_client(struct session *s)
{
    while (session_relaying(s) && !upgrade_busy(s)) {
        struct smtp_in_item it;
        smtp_in_next(&s->cin, &it);
        switch (it.kind) {
        case SMTP_IN_NEED_MORE:
        case SMTP_IN_BLOCKED: return;
        case SMTP_IN_LINE: client_line(s, &it); break;
        case SMTP_IN_CONTENT: client_content(s, &it); break;
        case SMTP_IN_RAW: relay_raw_up(s, it.bytes, it.len); break;
        }
        s->c2s_pos += it.len;
    }
}

/* A TLS record (handshake, TLS 1.x) as the very first bytes on a plain listener. */
static bool client_hello_on_plain(const struct session *s, const uint8_t *bytes, size_t len)
{
    return !tcp_leg_tls_started(&s->client) && !session_opaque(s) && s->bytes_up == 0 && len >= 2 &&
           bytes[0] == 0x16 && bytes[1] == 0x03;
}

static bool before_relaying(const struct session *s)
{
    return s->state < SESSION_GREETING;
}

void session_on_client_read(struct leg *leg, const uint8_t *bytes, size_t len)
{
    struct session *s = leg->owner;
    if (client_hello_on_plain(s, bytes, len)) {
        session_emitf(s, EV_ERROR, DIR_C2S,
                      "client started a TLS handshake on this plain listener: it expects implicit "
                      "TLS (SMTPS); give it --listen tls:ADDR:PORT, or make it use STARTTLS");
        s->client_eof = s->client_dead = true; /* nothing it could read can be said to it */
        session_end(s);
        return;
    }
    if (before_relaying(s)) { /* an impatient client (read for its TLS handshake) */
        s->bytes_up += len;
        smtp_in_feed(&s->cin, bytes, len);
        if (smtp_in_buffered(&s->cin) >= HIGH_WATER) leg_read_stop(leg);
        return;
    }
    if (s->state != SESSION_GREETING && s->state != SESSION_RELAYING) return;
    session_touch(s);
    s->bytes_up += len;
    if (session_opaque(s)) {
        relay_raw_up(s, bytes, len);
    } else {
        smtp_in_feed(&s->cin, bytes, len);
        session_pump_client(s);
    }
    session_update_flow(s);
}
