/* session.c - one client and its upstream. Client bytes go through the framer one command
 * (or one content chunk) at a time and are forwarded as received; server bytes go through
 * the reply parser one reply at a time; the FIFO pairs them. Everything seen becomes an
 * event. Reading stops on one side while the other side's write queue is high. */
#include "smtptap/session.h"

#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtptap/capture.h"
#include "smtptap/ehlo.h"
#include "smtptap/server.h"
#include "smtptap/tls.h"
#include "smtptap/upstream.h"

enum {
    HIGH_WATER = 512 * 1024, /* queued bytes on one leg that stop reading the other */
    FIFO_HIGH = 4096,        /* pending commands that stop reading the client */
    FIFO_MAX = 1 << 20,
    LINGER_MS = 5000, /* how long a half-closed session waits for the other side */
    SHOWN_LINES = 40, /* message lines shown per message without -v */
};

enum timer_purpose { TIMER_CONNECT, TIMER_IDLE, TIMER_LINGER };

static void pump_client(struct session *s);
static void update_flow(struct session *s);
static void flush_local_heads(struct session *s, bool from_client_path);
static void shutdown_upstream_when_answered(struct session *s);

/* ---- events ---------------------------------------------------------------------------- */

static void emit(struct session *s, enum event_kind kind, enum event_dir dir, const uint8_t *bytes,
                 size_t len, const char *text, bool local, bool to_smtptap)
{
    if (!s->observed) return;
    struct event ev = {
        .to_smtptap = to_smtptap,
        .session = s->id,
        .t_ns = uv_hrtime() - s->start_ns,
        .kind = kind,
        .dir = dir,
        .local = local,
        .tls = s->client.ssl != NULL, /* markers show the client's connection */
        .bytes = bytes,
        .len = len,
        .text = text,
    };
    if (s->server->live) s->server->live->write(s->server->live, &ev);
    if (s->capture) s->capture->write(s->capture, &ev);
}

void session_emit(struct session *s, enum event_kind kind, enum event_dir dir, const uint8_t *bytes,
                  size_t len, const char *text, bool local)
{
    emit(s, kind, dir, bytes, len, text, local, false);
}

void session_emitf(struct session *s, enum event_kind kind, enum event_dir dir, const char *fmt,
                   ...)
{
    if (!s->observed) return;
    char text[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    session_emit(s, kind, dir, NULL, 0, text, false);
}

static void on_lint(void *ctx, const char *finding)
{
    session_emitf(ctx, EV_LINT, DIR_NONE, "lint: %s", finding);
}

static void on_shown_line(void *ctx, const uint8_t *line, size_t len)
{
    session_emit(ctx, EV_CONTENT, DIR_C2S, line, len, NULL, false);
}

/* A reply smtptap writes itself: shown with [smtptap], sent to the client. */
static void local_reply(struct session *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void local_reply(struct session *s, const char *fmt, ...)
{
    char line[600];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line - 2, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n > sizeof line - 3) n = sizeof line - 3;
    memcpy(line + n, "\r\n", 3);
    session_emit(s, EV_REPLY, DIR_S2C, (const uint8_t *)line, (size_t)n + 2, NULL, true);
    reply_send(s, (const uint8_t *)line, (size_t)n + 2);
}

/* ---- timers ---------------------------------------------------------------------------- */

static void timer_cb(uv_timer_t *t);

static void arm_timer(struct session *s, enum timer_purpose purpose, uint64_t ms)
{
    s->timer.data = s;
    s->timer_purpose = purpose;
    uv_timer_start(&s->timer, timer_cb, ms, 0);
}

static void touch(struct session *s)
{
    s->last_activity_ms = uv_now(s->server->loop);
}

static void on_idle_expired(struct session *s)
{
    uint64_t idle = s->server->cfg->idle_timeout_ms;
    uint64_t quiet = uv_now(s->server->loop) - s->last_activity_ms;
    if (quiet < idle) {
        arm_timer(s, TIMER_IDLE, idle - quiet);
        return;
    }
    char d[32];
    format_duration(idle, d, sizeof d);
    if (s->client.tls == LEG_TLS_HANDSHAKING && s->client.tls_first_len == 0 &&
        !s->client_tls_via_starttls)
        session_emitf(s, EV_ERROR, DIR_C2S,
                      "client sent nothing in %s, no TLS handshake: a plain SMTP client waits "
                      "for a greeting that an implicit-TLS listener never sends",
                      d);
    session_emitf(s, EV_INFO, DIR_NONE, "session idle for %s: closing", d);
    local_reply(s, "421 4.4.2 smtptap: session idle for %s, closing", d);
    session_end(s);
}

static void on_connect_expired(struct session *s)
{
    char d[32];
    format_duration(s->server->cfg->connect_timeout_ms, d, sizeof d);
    if (s->state == SESSION_CONNECTING) {
        session_emitf(s, EV_ERROR, DIR_S2C, "upstream %s unreachable: connect timed out after %s",
                      s->upstream_name, d);
        local_reply(s, "421 4.4.2 smtptap: upstream %s unreachable (connect timed out after %s)",
                    s->upstream_name, d);
    } else {
        bool plain = s->server->cfg->upstream.tls != TLS_IMPLICIT;
        session_emitf(s, EV_ERROR, DIR_S2C, "upstream %s timed out: no greeting within %s%s",
                      s->upstream_name, d,
                      plain ? " (an implicit-TLS port says nothing until the client's TLS "
                              "handshake: if that is what it is, use tls:HOST:PORT)"
                            : "");
        local_reply(s, "421 4.4.2 smtptap: upstream %s timed out (no greeting within %s)",
                    s->upstream_name, d);
    }
    session_end(s);
}

static void timer_cb(uv_timer_t *t)
{
    struct session *s = t->data;
    switch (s->timer_purpose) {
    case TIMER_CONNECT: on_connect_expired(s); break;
    case TIMER_IDLE: on_idle_expired(s); break;
    case TIMER_LINGER:
        if (s->state == SESSION_ENDING) {
            leg_close(&s->client.base);
            if (s->upstream) leg_close(s->upstream);
        } else {
            session_end(s);
        }
        break;
    }
}

/* ---- freeing ----------------------------------------------------------------------------- */

static void timer_closed_cb(uv_handle_t *h)
{
    struct session *s = h->data;
    if (--s->timers_open > 0) return;
    reply_free_held(s);
    buf_free(&s->upgrade_hello);
    buf_free(&s->hello_line);
    hello_memory_free(&s->hello);
    if (s->fault_set) fault_session_free(&s->faults);
    if (s->in_message && s->observed) message_view_abort(&s->msg);
    smtp_in_free(&s->cin);
    smtp_reply_free(&s->sin);
    smtp_fifo_free(&s->fifo);
    if (s->addrs) uv_freeaddrinfo(s->addrs);
    if (s->capture) s->capture->close(s->capture);
    server_session_done(s->server, s);
}

/* Once every leg and request is closed, the timer closes last and frees the session. */
static void release_if_done(struct session *s)
{
    if (s->open_handles > 0 || s->timer_closing) return;
    s->timer_closing = true;
    uv_close((uv_handle_t *)&s->timer, timer_closed_cb);
    uv_close((uv_handle_t *)&s->reply_timer, timer_closed_cb);
}

/* Ends the session: flushes what each leg has queued, sends FIN, closes. Idempotent. */
void session_end(struct session *s)
{
    if (s->state == SESSION_ENDING) return;
    s->state = SESSION_ENDING;
    double secs = (double)(uv_hrtime() - s->start_ns) / 1e9;
    session_emitf(
        s, EV_INFO, DIR_NONE,
        "session ended after %.3fs: %llu command%s, %llu message%s, %llu bytes up, %llu bytes "
        "down",
        secs, (unsigned long long)s->commands, s->commands == 1 ? "" : "s",
        (unsigned long long)s->messages, s->messages == 1 ? "" : "s",
        (unsigned long long)s->bytes_up, (unsigned long long)s->bytes_down);
    if (s->gai_pending) uv_cancel((uv_req_t *)&s->gai);
    uv_timer_stop(&s->reply_timer);
    leg_end(&s->client.base);
    if (s->upstream) leg_end(s->upstream);
    arm_timer(s, TIMER_LINGER, LINGER_MS);
}

/* ---- client to server ------------------------------------------------------------------ */

static void finish_message(struct session *s)
{
    s->messages++;
    s->in_message = false;
    if (!s->observed) return;
    struct message_summary sum;
    message_view_end(&s->msg, &sum, on_shown_line, s);
    lint_content_end(&s->lint, on_lint, s);
    char hidden[80] = "";
    if (sum.hidden_lines)
        snprintf(hidden, sizeof hidden, " (%u line%s not shown, -v shows them)", sum.hidden_lines,
                 sum.hidden_lines == 1 ? "" : "s");
    session_emitf(s, EV_MESSAGE, DIR_C2S, "message %llu: %llu bytes, %llu lines, sha256 %s%s",
                  (unsigned long long)s->messages, (unsigned long long)sum.size,
                  (unsigned long long)sum.lines, sum.sha256_hex, hidden);
}

static void begin_message(struct session *s, bool bdat)
{
    s->in_message = true;
    if (!s->observed) return;
    message_view_begin(&s->msg, bdat, s->server->cfg->verbosity > 0 ? 0 : SHOWN_LINES);
    lint_content_begin(&s->lint, bdat);
}

/* local: smtptap answers it (fault's reply, or its own STARTTLS answer). */
static bool push_pending(struct session *s, enum smtp_pending_kind kind, enum smtp_verb verb,
                         const struct fault_rule *fault, bool local)
{
    struct smtp_pending p = {
        .kind = kind, .verb = verb, .seq = s->commands, .fault = fault, .local = local};
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
    if (!smtp_bdat_parse(arg, arg_len, &size, &last) || size != 0 || !last) return;
    if (!s->in_message) begin_message(s, true);
    finish_message(s);
}

/* ---- AUTH: decoded and redacted once, here, so every writer gets the same view ---------- */

static void show_auth_view(struct session *s, const struct auth_view *v)
{
    const struct config *cfg = s->server->cfg;
    if (v->decoded && cfg->decode_auth)
        session_emit(s, EV_AUTH, DIR_NONE, NULL, 0, cfg->redact ? v->redacted : v->text, false);
    if (v->problem[0]) session_emitf(s, EV_LINT, DIR_NONE, "lint: %s", v->problem);
}

/* The command event for a client line; AUTH lines go through the decoder and, with
 * --redact, their secret bytes never reach an event. */
static void emit_client_line(struct session *s, const struct smtp_in_item *it)
{
    bool auth_line = it->sasl || it->verb == SMTP_VERB_AUTH;
    if (!s->follow_auth || !auth_line) {
        session_emit(s, EV_COMMAND, DIR_C2S, it->bytes, it->len, NULL, false);
        return;
    }
    char masked[AUTH_TEXT_MAX + 64];
    if (!(it->first && it->complete)) { /* a piece of an over-long line: all of it hidden */
        if (!s->server->cfg->redact) {
            session_emit(s, EV_COMMAND, DIR_C2S, it->bytes, it->len, NULL, false);
            return;
        }
        int n = snprintf(masked, sizeof masked, "<redacted %zu bytes>", it->len);
        session_emit(s, EV_COMMAND, DIR_C2S, (const uint8_t *)masked, (size_t)n, NULL, false);
        return;
    }
    struct auth_view v;
    if (it->sasl)
        auth_on_client_line(&s->auth, it->bytes, it->len, &v);
    else
        auth_on_command(&s->auth, it->bytes, it->len, &v);
    if (s->server->cfg->redact && v.secret_len) {
        size_t n =
            auth_redact_line(it->bytes, it->len, v.secret_off, v.secret_len, masked, sizeof masked);
        session_emit(s, EV_COMMAND, DIR_C2S, (const uint8_t *)masked, n, NULL, false);
    } else {
        session_emit(s, EV_COMMAND, DIR_C2S, it->bytes, it->len, NULL, false);
    }
    show_auth_view(s, &v);
}

static void auth_reply(struct session *s, const struct smtp_pending *p, const struct smtp_reply *r)
{
    if (!s->follow_auth) return;
    if (p->kind != SMTP_PENDING_SASL && p->verb != SMTP_VERB_AUTH) return;
    struct auth_view v;
    auth_on_reply(&s->auth, r->code, r->bytes, r->len, &v);
    show_auth_view(s, &v);
}

/* The fault rule for a complete command line, with a "!!" line when it answers locally. */
static const struct fault_rule *command_fault(struct session *s, const struct smtp_in_item *it)
{
    if (it->sasl || !it->first || !it->complete) return NULL;
    const uint8_t *arg;
    size_t arg_len;
    smtp_verb_parse(it->bytes, it->len, &arg, &arg_len);
    const struct fault_rule *r = reply_fault_for(s, reply_stage_of(it->verb), arg, arg_len);
    if (r && r->action == FAULT_REPLY && !reply_fault_is_local(r, it->verb)) {
        session_emitf(s, EV_FAULT, DIR_S2C,
                      "fault %s: ignored: a %d reply to %s cannot be faked (the server never saw "
                      "it), forwarding",
                      r->name, r->reply_code, smtp_verb_name(it->verb));
        return NULL;
    }
    return r;
}

/* --client-starttls offer or strip: smtptap answers the client's STARTTLS itself. */
static const struct fault_rule *own_starttls(struct session *s, const struct smtp_in_item *it,
                                             const struct fault_rule *fault)
{
    enum client_starttls mode = s->server->cfg->client_starttls;
    if (it->verb != SMTP_VERB_STARTTLS || it->sasl || mode == CLIENT_STARTTLS_PASSTHROUGH)
        return NULL;
    if (reply_fault_is_local(fault, it->verb)) return NULL; /* a fault answers instead */
    if (mode == CLIENT_STARTTLS_STRIP || s->client.ssl) return &reply_starttls_refused;
    return &reply_starttls_ready;
}

/* The first hello after a STARTTLS that smtptap answered: answered from the server's last
 * reply when the server's connection has not changed since (hello.h). */
static const struct fault_rule *hello_from_memory(struct session *s, const struct smtp_in_item *it,
                                                  const struct fault_rule *fault)
{
    if (it->sasl || !it->complete || reply_fault_is_local(fault, it->verb) ||
        hello_route(&s->hello, it->verb) != HELLO_FROM_MEMORY)
        return NULL;
    s->hello_fault = fault;
    buf_reset(&s->hello_line);
    buf_append(&s->hello_line, it->bytes, it->len);
    return &reply_hello_remembered;
}

static void forward_line(struct session *s, const struct smtp_in_item *it)
{
    if (upgrade_intercepts(s, it)) return;
    if (it->first && (it->verb == SMTP_VERB_EHLO || it->verb == SMTP_VERB_HELO))
        hello_memory_sent(&s->hello, it->bytes, it->len);
    leg_write(s->upstream, it->bytes, it->len);
}

static void client_line(struct session *s, const struct smtp_in_item *it)
{
    const struct fault_rule *fault = command_fault(s, it);
    bool local = false;
    if (it->first) {
        const struct fault_rule *own = it->complete ? own_starttls(s, it, fault) : NULL;
        if (!own) own = upgrade_guard(s, it, fault);
        if (!own) own = hello_from_memory(s, it, fault);
        if (own) fault = own;
        if (!it->sasl) s->commands++;
        local = !it->sasl && (own || reply_fault_is_local(fault, it->verb));
        if (!push_pending(s, it->sasl ? SMTP_PENDING_SASL : SMTP_PENDING_COMMAND, it->verb, fault,
                          local))
            return;
    }
    emit_client_line(s, it);
    if (s->observed && it->first && it->complete)
        lint_command_line(it->bytes, it->len, it->sasl, on_lint, s);
    else if (s->observed && it->first)
        session_emitf(s, EV_LINT, DIR_C2S,
                      "lint: command line longer than %zu octets, relayed in pieces",
                      s->cin.max_line);
    if (local && fault == &reply_starttls_ready) {
        session_emitf(s, EV_INFO, DIR_C2S,
                      "STARTTLS answered by smtptap (--client-starttls offer)");
    } else if (local && fault == &reply_hello_first) {
        session_emitf(s, EV_INFO, DIR_C2S,
                      "%s answered by smtptap: a starttls: upstream gets nothing before the EHLO "
                      "that starts TLS",
                      smtp_verb_name(it->verb));
    } else if (local && fault == &reply_hello_remembered) {
        /* session_hello_answer says why when the reply goes out */
    } else if (local && fault == &reply_starttls_refused) {
        session_emitf(s, EV_INFO, DIR_C2S, "STARTTLS refused by smtptap: %s",
                      s->client.ssl ? "the client is in TLS already" : "--client-starttls strip");
    } else if (local) {
        session_emitf(s, EV_FAULT, DIR_S2C, "fault %s: %s answered by smtptap, not forwarded",
                      fault->name, smtp_verb_name(it->verb));
        if (it->verb == SMTP_VERB_BDAT) s->bdat_local = s->cin.mode == SMTP_IN_BDAT;
    } else {
        forward_line(s, it);
    }
    if (it->first && it->complete && it->verb == SMTP_VERB_BDAT) after_bdat_command(s, it);
    if (local) flush_local_heads(s, true);
}

static void client_content(struct session *s, const struct smtp_in_item *it)
{
    if (!s->in_message) begin_message(s, it->bdat);
    if (s->observed) {
        message_view_feed(&s->msg, it->bytes, it->len, on_shown_line, s);
        lint_content_feed(&s->lint, it->bytes, it->len, on_lint, s);
    }
    if (!(it->bdat && s->bdat_local)) leg_write(s->upstream, it->bytes, it->len);
    if (!it->end) return;
    if (it->bdat) s->bdat_local = false;
    if (!it->bdat && !push_pending(s, SMTP_PENDING_DATA_END, SMTP_VERB_DATA,
                                   reply_fault_for(s, FAULT_DATA_END, NULL, 0), false))
        return;
    if (!it->bdat || s->cin.bdat_last) finish_message(s);
}

static void relay_raw(struct session *s, enum event_dir dir, const uint8_t *bytes, size_t len)
{
    session_emit(s, EV_RAW, dir, bytes, len, NULL, false);
    if (dir == DIR_C2S)
        leg_write(s->upstream, bytes, len);
    else
        reply_send(s, bytes, len);
}

static void pump_client(struct session *s)
{
    while ((s->state == SESSION_RELAYING || s->state == SESSION_DRAINING) && !upgrade_busy(s)) {
        struct smtp_in_item it;
        smtp_in_next(&s->cin, &it);
        switch (it.kind) {
        case SMTP_IN_NEED_MORE:
        case SMTP_IN_BLOCKED: return;
        case SMTP_IN_LINE: client_line(s, &it); break;
        case SMTP_IN_CONTENT: client_content(s, &it); break;
        case SMTP_IN_RAW: relay_raw(s, DIR_C2S, it.bytes, it.len); break;
        }
    }
}

/* A TLS record (handshake, TLS 1.x) as the very first bytes on a plain listener. */
static bool client_hello_on_plain(const struct session *s, const uint8_t *bytes, size_t len)
{
    return !s->client.ssl && !s->opaque && s->bytes_up == 0 && len >= 2 && bytes[0] == 0x16 &&
           bytes[1] == 0x03;
}

static void on_client_read(struct leg *leg, const uint8_t *bytes, size_t len)
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
    if (s->state == SESSION_CONNECTING) { /* an impatient client (read for its TLS handshake) */
        s->bytes_up += len;
        smtp_in_feed(&s->cin, bytes, len);
        if (smtp_in_buffered(&s->cin) >= HIGH_WATER) leg_read_stop(leg);
        return;
    }
    if (s->state != SESSION_RELAYING) return;
    touch(s);
    s->bytes_up += len;
    if (s->opaque) {
        relay_raw(s, DIR_C2S, bytes, len);
    } else {
        smtp_in_feed(&s->cin, bytes, len);
        pump_client(s);
    }
    update_flow(s);
}

/* ---- server to client ------------------------------------------------------------------ */

static void start_upstream_tls(struct session *s);

static void start_passthrough(struct session *s)
{
    s->opaque = true;
    session_emitf(s, EV_INFO, DIR_NONE,
                  "STARTTLS accepted by the server: TLS passes through, the rest of the session is "
                  "encrypted end to end and not visible");
    /* Plain text sent after STARTTLS, by either side, would be taken as the peer's first
     * words inside TLS by a careless TLS stack: it goes nowhere. */
    size_t held = smtp_in_reset(&s->cin);
    if (held)
        session_emitf(s, EV_LINT, DIR_C2S,
                      "lint: client sent %zu bytes after STARTTLS before the server's reply: "
                      "discarded, not relayed (command injection, CVE-2011-0411 class)",
                      held);
    const uint8_t *rest;
    size_t n = smtp_reply_take_rest(&s->sin, &rest);
    if (n)
        session_emitf(s, EV_LINT, DIR_S2C,
                      "lint: server sent %zu bytes after its 220 to STARTTLS: discarded, not "
                      "relayed (response injection)",
                      n);
}

void session_resume_client(struct session *s, const struct smtp_pending *p, int code,
                           bool from_client_path)
{
    if (!smtp_pending_blocks(p)) return;
    if (smtp_in_resume(&s->cin, code) == SMTP_IN_OPAQUE)
        start_passthrough(s);
    else if (!from_client_path)
        pump_client(s); /* bytes held behind DATA/AUTH/STARTTLS can be classified now */
}

/* Local replies keep their place: those now at the head of the FIFO go out. */
static void flush_local_heads(struct session *s, bool from_client_path)
{
    const struct smtp_pending *head;
    while (s->state != SESSION_ENDING && (head = smtp_fifo_peek(&s->fifo)) && head->local) {
        struct smtp_pending p;
        smtp_fifo_pop(&s->fifo, &p);
        reply_local(s, &p, from_client_path);
    }
}

static void unpaired_reply(struct session *s, const struct smtp_reply *r)
{
    if (r->code == 421) {
        s->saw_421 = true;
        session_emitf(s, EV_INFO, DIR_S2C,
                      "upstream sent 421 unasked: it is closing the connection");
    } else if (s->in_message) {
        session_emitf(
            s, EV_LINT, DIR_S2C,
            "lint: server ended DATA early: it replied while the message was still open, so it "
            "saw an end of data smtptap did not (SMTP smuggling risk)");
    } else {
        session_emitf(s, EV_LINT, DIR_S2C, "lint: reply that no command asked for");
    }
}

static void handle_reply(struct session *s, const struct smtp_reply *r)
{
    struct smtp_pending p;
    bool was_upgrading = upgrade_busy(s);
    if (r->partial && upgrade_waits_for_head(s) && upgrade_reply_too_long(s)) {
        emit(s, EV_REPLY, DIR_S2C, r->bytes, r->len, NULL, false, true);
        return;
    }
    bool paired = !r->partial && smtp_fifo_pop(&s->fifo, &p);
    if (r->partial && !s->reply_in_pieces)
        session_emitf(s, EV_LINT, DIR_S2C, "lint: reply longer than %zu octets, relayed in pieces",
                      s->sin.max_reply);
    else if (!r->partial && !paired)
        unpaired_reply(s, r);
    s->reply_in_pieces = r->partial;
    if (paired && r->code == 421) s->saw_421 = true;
    if (paired && !p.local && (p.verb == SMTP_VERB_EHLO || p.verb == SMTP_VERB_HELO))
        hello_memory_replied(&s->hello, r->code, r->bytes, r->len);
    bool for_upgrade = paired && upgrade_takes(s, &p, r);
    emit(s, EV_REPLY, DIR_S2C, r->bytes, r->len, NULL, false, for_upgrade);
    if (s->observed) {
        if (r->malformed && !r->partial)
            session_emitf(
                s, EV_LINT, DIR_S2C,
                "lint: malformed reply (every line must start with the same 3-digit code)");
        lint_reply(r->bytes, r->len, on_lint, s);
    }
    if (for_upgrade) {
        upgrade_on_reply(s, &p, r);
        return;
    }
    if (paired) upgrade_on_reply(s, &p, r); /* a no-prefix probe the client gets */
    struct buf edited;
    buf_init(&edited);
    const uint8_t *bytes = r->bytes;
    size_t len = r->len;
    if (paired && hello_edit_for_client(s, p.verb, r->bytes, r->len, &edited))
        bytes = buf_head(&edited), len = buf_size(&edited);
    if (paired && p.fault)
        reply_faulted(s, &p, bytes, len, r->code);
    else
        reply_send(s, bytes, len);
    buf_free(&edited);
    bool resume = was_upgrading && !upgrade_busy(s); /* the client was held for the upgrade */
    if (!paired || s->state == SESSION_ENDING) {
        if (resume && s->state != SESSION_ENDING) pump_client(s);
        return;
    }
    auth_reply(s, &p, r);
    if (p.kind == SMTP_PENDING_GREETING) {
        s->greeted = true;
        /* draining: the linger timer runs, and must go on running */
        if (s->state == SESSION_RELAYING) arm_timer(s, TIMER_IDLE, s->server->cfg->idle_timeout_ms);
    }
    session_resume_client(s, &p, r->code, false);
    flush_local_heads(s, false);
    shutdown_upstream_when_answered(s);
    if (resume) pump_client(s);
}

static void on_upstream_read(struct leg *leg, const uint8_t *bytes, size_t len)
{
    struct session *s = leg->owner;
    if (s->state != SESSION_RELAYING && s->state != SESSION_DRAINING) return;
    touch(s);
    if (s->opaque) {
        relay_raw(s, DIR_S2C, bytes, len);
    } else {
        smtp_reply_feed(&s->sin, bytes, len);
        struct smtp_reply r;
        while (!s->opaque && s->state != SESSION_ENDING && smtp_reply_next(&s->sin, &r))
            handle_reply(s, &r);
    }
    update_flow(s);
}

/* ---- either side closing ------------------------------------------------------------- */

static void shutdown_upstream_when_answered(struct session *s)
{
    if (s->state != SESSION_DRAINING) return;
    /* client bytes held behind DATA (or AUTH) until its reply: they go first */
    if (s->cin.mode == SMTP_IN_WAIT && smtp_in_buffered(&s->cin) > 0) return;
    bool tls = s->server->cfg->upstream.kind != UPSTREAM_SINK && s->up.tcp.ssl;
    if (tls && smtp_fifo_count(&s->fifo) > 0 && !s->in_message) return; /* replies owed */
    leg_shutdown(s->upstream); /* called per reply: both kinds of leg ignore a repeat */
}

static void client_gone(struct session *s, const char *how)
{
    if (s->client_eof || s->state == SESSION_ENDING) return;
    s->client_eof = true;
    leg_read_stop(&s->client.base);
    if (s->in_message && !s->opaque)
        session_emitf(
            s, EV_ERROR, DIR_C2S, "client %s during %s (message %llu cut short after %llu bytes)",
            how, s->cin.mode == SMTP_IN_BDAT ? "BDAT" : "DATA", (unsigned long long)s->messages + 1,
            (unsigned long long)(s->observed ? s->msg.size : 0));
    else
        session_emitf(s, EV_INFO, DIR_C2S, "client %s", how);
    if (s->state != SESSION_RELAYING || s->upstream_eof) {
        session_end(s);
        return;
    }
    /* Let the server answer what it was sent (a QUIT, say), then end. Over TLS the FIN
     * waits for those replies: it comes with a close_notify, data that a server closing
     * after its 221 never reads, and its kernel would answer with a reset that can take
     * the unread replies with it. A plain FIN carries no data and goes at once. */
    s->state = SESSION_DRAINING;
    shutdown_upstream_when_answered(s);
    arm_timer(s, TIMER_LINGER, LINGER_MS);
}

static void upstream_gone(struct session *s, const char *how)
{
    if (s->upstream_eof || s->state == SESSION_ENDING) return;
    s->upstream_eof = true;
    bool owed = smtp_fifo_count(&s->fifo) > 0 || s->in_message;
    owed = owed || upgrade_busy(s); /* the client's EHLO/HELO waits for the upgrade */
    /* smtptap's own 421 only for a client still talking; a client that went away (even
     * half-closed) is only sent what the server itself answers. */
    if (owed && !s->opaque && !s->client_eof && !s->saw_421) {
        session_emitf(s, EV_ERROR, DIR_S2C, "upstream %s%s", how,
                      s->in_message ? " during DATA"
                      : !s->greeted ? " before its greeting"
                                    : "");
        local_reply(s, "421 4.4.0 smtptap: upstream %s%s", how,
                    s->in_message ? " during DATA" : "");
    } else {
        bool sink = s->server->cfg->upstream.kind == UPSTREAM_SINK;
        session_emitf(s, EV_INFO, DIR_S2C, "%s %s", sink ? "sink" : "upstream", how);
    }
    session_end(s);
}

static const char *closed_words(struct leg *leg)
{
    const struct tcp_leg *t = (const struct tcp_leg *)leg;
    if (t->tls == LEG_TLS_HANDSHAKING) return "closed the connection during the TLS handshake";
    return t->tls_truncated ? "closed the connection without a TLS close_notify (truncated)"
                            : "closed the connection";
}

static void on_client_eof(struct leg *leg)
{
    client_gone(leg->owner, closed_words(leg));
}

static void on_upstream_eof(struct leg *leg)
{
    struct session *s = leg->owner;
    bool tcp = s->server->cfg->upstream.kind != UPSTREAM_SINK; /* up is a union: ask the config */
    upstream_gone(s, tcp ? closed_words(leg) : "closed the connection");
}

/* Words for a failed leg: the TLS reason when TLS failed, else the socket error. */
static void failure_words(struct leg *leg, int err, char *how, size_t size)
{
    const struct tcp_leg *t = (const struct tcp_leg *)leg;
    if (err == UV_EPROTO && t->tls_error[0])
        snprintf(how, size, "TLS failed (%s)", t->tls_error);
    else
        snprintf(how, size, "connection failed (%s)", upstream_connect_reason(err));
}

static void on_client_error(struct leg *leg, int err)
{
    struct session *s = leg->owner;
    char how[600];
    failure_words(leg, err, how, sizeof how);
    s->client_dead = true;
    client_gone(s, how);
    session_end(s);
}

static void on_upstream_error(struct leg *leg, int err)
{
    char how[600];
    failure_words(leg, err, how, sizeof how);
    upstream_gone(leg->owner, how);
}

static void on_drain(struct leg *leg)
{
    update_flow(leg->owner);
}

static void try_next_address(struct session *s);

static void on_leg_closed(struct leg *leg)
{
    struct session *s = leg->owner;
    s->open_handles--;
    if (leg == s->upstream && s->retry_connect && s->state == SESSION_CONNECTING) {
        s->retry_connect = false;
        try_next_address(s);
        return;
    }
    release_if_done(s);
}

static const struct leg_events client_events = {on_client_read, on_client_eof, on_client_error,
                                                on_drain, on_leg_closed};
static const struct leg_events upstream_events = {on_upstream_read, on_upstream_eof,
                                                  on_upstream_error, on_drain, on_leg_closed};

/* ---- backpressure ---------------------------------------------------------------------- */

/* Hysteresis: a side that stopped reading resumes once the queue is down to half. */
static bool room(size_t queued, bool reading)
{
    return reading ? queued < HIGH_WATER : queued <= HIGH_WATER / 2;
}

void session_update_flow(struct session *s)
{
    update_flow(s);
    pump_client(s); /* what the client sent while the upstream was being upgraded */
}

static void update_flow(struct session *s)
{
    if (s->state != SESSION_RELAYING && s->state != SESSION_DRAINING) return;
    struct leg *c = &s->client.base, *u = s->upstream;
    bool read_client = !s->client_eof && !upgrade_busy(s) && room(u->queued, c->reading) &&
                       smtp_fifo_count(&s->fifo) < FIFO_HIGH &&
                       smtp_in_buffered(&s->cin) < HIGH_WATER;
    bool read_upstream = !s->upstream_eof && room(c->queued + s->held_size, u->reading);
    read_client ? leg_read_start(c) : leg_read_stop(c);
    read_upstream ? leg_read_start(u) : leg_read_stop(u);
}

/* ---- reaching the upstream ------------------------------------------------------------- */

static void start_relaying(struct session *s)
{
    s->state = SESSION_RELAYING;
    touch(s);
    if (s->greeted || s->server->cfg->upstream.kind == UPSTREAM_SINK)
        arm_timer(s, TIMER_IDLE, s->server->cfg->idle_timeout_ms);
    pump_client(s); /* what the client sent while the upstream was being reached */
    update_flow(s);
}

static void refuse(struct session *s, const char *why)
{
    session_emitf(s, EV_ERROR, DIR_S2C, "upstream %s unreachable: %s", s->upstream_name, why);
    local_reply(s, "421 4.4.0 smtptap: upstream %s unreachable (%s)", s->upstream_name, why);
    session_end(s);
}

/* ---- TLS on either leg ------------------------------------------------------------------- */

static void on_upstream_tls(struct tcp_leg *t, int status)
{
    struct session *s = t->base.owner;
    if (s->state != SESSION_CONNECTING) return;
    char facts[1024];
    tls_describe(t->ssl, true, facts, sizeof facts);
    if (status == 0) {
        session_emitf(s, EV_INFO, DIR_S2C, "upstream TLS: %s", facts);
        leg_tls_release_hello(&s->client, t);
        if (s->state != SESSION_CONNECTING) return;
        start_relaying(s);
        return;
    }
    session_emitf(s, EV_ERROR, DIR_S2C, "upstream %s TLS handshake failed: %s%s", s->upstream_name,
                  t->tls_error,
                  leg_tls_peer_spoke_plain(t)
                      ? " (the server speaks plain SMTP on this port, it sent \"220\": use "
                        "starttls:HOST:PORT, or HOST:PORT without a prefix)"
                      : "");
    local_reply(s, "421 4.4.0 smtptap: upstream %s unreachable (TLS failed: %s)", s->upstream_name,
                t->tls_error);
    session_end(s);
}

/* Implicit TLS to the upstream (tls: or port 465): relaying starts after the handshake. */
static void start_upstream_tls(struct session *s)
{
    const char *host = s->server->cfg->upstream.target.host;
    if (tcp_leg_start_tls(&s->up.tcp, s->server->tls_client, false, host, on_upstream_tls) < 0) {
        refuse(s, s->up.tcp.tls_error);
        return;
    }
    leg_read_start(&s->up.tcp.base);
}

static void on_client_tls(struct tcp_leg *t, int status)
{
    struct session *s = t->base.owner;
    if (s->state == SESSION_ENDING) return;
    char facts[1024];
    tls_describe(t->ssl, false, facts, sizeof facts);
    if (status == 0) {
        session_emitf(s, EV_INFO, DIR_C2S, "client TLS: %s", facts);
        const struct upstream_spec *u = &s->server->cfg->upstream;
        if (u->kind == UPSTREAM_TRANSPARENT || (u->kind == UPSTREAM_FIXED && u->tls == TLS_NONE) ||
            s->upgrade == UPGRADE_DECLINED)
            session_emitf(s, EV_INFO, DIR_NONE,
                          "the client's TLS ends at smtptap: the upstream leg is plain text");
        return;
    }
    session_emitf(s, EV_ERROR, DIR_C2S, "client TLS handshake failed: %s%s", t->tls_error,
                  !leg_tls_peer_spoke_plain(t) ? ""
                  : s->client_tls_via_starttls
                      ? " (the client went on in plain text after the 220 to STARTTLS)"
                      : " (the client speaks plain SMTP: it expects a plain or STARTTLS port, "
                        "not implicit TLS)");
    s->client_eof = s->client_dead = true; /* nothing more can be said to it */
    session_end(s);
}

/* The upstream's certificate once its TLS is up (the client's leaf copies its names). */
static X509 *upstream_cert(const struct session *s)
{
    if (s->server->cfg->upstream.kind != UPSTREAM_FIXED || s->up.tcp.tls != LEG_TLS_ON) return NULL;
    return SSL_get0_peer_certificate(s->up.tcp.ssl);
}

/* The leaf's name when the client sends no SNI: the upstream host, else the address the
 * client meant (transparent: its original destination, set when it is known), else the
 * address it connected to. */
static void choose_leaf_name(struct session *s)
{
    const struct upstream_spec *u = &s->server->cfg->upstream;
    if (u->kind == UPSTREAM_FIXED) {
        snprintf(s->client.tls_name, sizeof s->client.tls_name, "%s", u->target.host);
        return;
    }
    if (s->client.tls_name[0]) return;
    struct sockaddr_storage sa;
    int len = sizeof sa;
    char ip[80] = "localhost";
    if (uv_tcp_getsockname(&s->client.tcp, (struct sockaddr *)&sa, &len) == 0)
        uv_ip_name((struct sockaddr *)&sa, ip, sizeof ip);
    snprintf(s->client.tls_name, sizeof s->client.tls_name, "%s", ip);
}

/* Implicit TLS from the client (a tls: listener): the handshake starts at once; what the
 * session writes meanwhile waits in the leg until it completes. With an implicit-TLS
 * upstream the ClientHello waits for the upstream's certificate, so the leaf can copy it. */
static bool start_client_tls(struct session *s)
{
    const struct upstream_spec *u = &s->server->cfg->upstream;
    choose_leaf_name(s);
    s->client.tls_hold_hello = u->kind == UPSTREAM_FIXED && u->tls == TLS_IMPLICIT;
    if (tcp_leg_start_tls(&s->client, s->server->tls_server, true, NULL, on_client_tls) == 0) {
        leg_read_start(&s->client.base);
        return true;
    }
    session_emitf(s, EV_ERROR, DIR_C2S, "client TLS could not start: %s", s->client.tls_error);
    session_end(s);
    return false;
}

void session_client_starttls(struct session *s)
{
    if (s->state == SESSION_ENDING || s->client.ssl) return;
    s->client_tls_via_starttls = true;
    hello_memory_client_tls(&s->hello);
    size_t dropped = smtp_in_reset(&s->cin);
    if (dropped)
        session_emitf(s, EV_LINT, DIR_C2S,
                      "lint: client sent %zu bytes after STARTTLS before the 220: discarded, not "
                      "relayed into TLS (command injection, CVE-2011-0411 class)",
                      dropped);
    choose_leaf_name(s);
    X509 *model = upstream_cert(s);
    if (model && X509_up_ref(model)) s->client.tls_model = model;
    if (!s->server->tls_server ||
        tcp_leg_start_tls(&s->client, s->server->tls_server, true, NULL, on_client_tls) < 0) {
        session_emitf(s, EV_ERROR, DIR_C2S, "client TLS could not start: %s", s->client.tls_error);
        session_end(s);
    }
}

static void on_upstream_connected(struct tcp_leg *t, int status)
{
    struct session *s = t->base.owner;
    if (s->state != SESSION_CONNECTING) return;
    if (status < 0) {
        s->last_connect_error = status;
        if (s->next_addr) {
            s->retry_connect = true;
            leg_close(&t->base);
        } else {
            refuse(s, upstream_connect_reason(status));
        }
        return;
    }
    struct sockaddr_storage local, peer;
    int ll = sizeof local, pl = sizeof peer;
    char from[80] = "?", to[80] = "?";
    if (uv_tcp_getsockname(&t->tcp, (struct sockaddr *)&local, &ll) == 0) {
        sockaddr_format((struct sockaddr *)&local, from, sizeof from);
    }
    if (uv_tcp_getpeername(&t->tcp, (struct sockaddr *)&peer, &pl) == 0)
        sockaddr_format((struct sockaddr *)&peer, to, sizeof to);
    session_emitf(s, EV_INFO, DIR_S2C, "upstream %s connected from %s", to, from);
    if (s->server->cfg->upstream.tls == TLS_IMPLICIT) {
        start_upstream_tls(s);
        return;
    }
    start_relaying(s);
}

static void connect_to(struct session *s, const struct sockaddr *addr)
{
    tcp_leg_init(&s->up.tcp, s->server->loop, &upstream_events, s);
    s->upstream = &s->up.tcp.base;
    s->open_handles++;
    int rc = tcp_leg_connect(&s->up.tcp, addr, on_upstream_connected);
    /* The socket has its local port now: a redirect loop shows up as a client with it,
     * possibly before this connect completes. */
    int len = sizeof s->upstream_local;
    if (rc == 0 &&
        uv_tcp_getsockname(&s->up.tcp.tcp, (struct sockaddr *)&s->upstream_local, &len) < 0)
        memset(&s->upstream_local, 0, sizeof s->upstream_local);
    if (rc < 0) {
        s->last_connect_error = rc;
        refuse(s, upstream_connect_reason(rc));
    }
}

static void try_next_address(struct session *s)
{
    struct addrinfo *a = s->next_addr;
    s->next_addr = a->ai_next;
    connect_to(s, a->ai_addr);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct session *s = req->data;
    s->gai_pending = false;
    s->open_handles--;
    if (s->state != SESSION_CONNECTING) {
        if (res) uv_freeaddrinfo(res);
        release_if_done(s);
        return;
    }
    if (status < 0 || !res) {
        char why[400];
        snprintf(why, sizeof why, "cannot resolve %s: %s", s->server->cfg->upstream.target.host,
                 uv_strerror(status));
        refuse(s, why);
        return;
    }
    s->addrs = s->next_addr = res;
    try_next_address(s);
}

static void connect_fixed(struct session *s, const struct hostport *hp)
{
    format_hostport(hp->host, hp->port, s->upstream_name, sizeof s->upstream_name);
    arm_timer(s, TIMER_CONNECT, s->server->cfg->connect_timeout_ms);
    struct sockaddr_storage sa;
    if (sockaddr_from_numeric(hp->host, hp->port, &sa)) {
        connect_to(s, (struct sockaddr *)&sa);
        return;
    }
    char port[8];
    snprintf(port, sizeof port, "%u", hp->port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    s->gai.data = s;
    if (uv_getaddrinfo(s->server->loop, &s->gai, on_resolved, hp->host, port, &hints) == 0) {
        s->gai_pending = true;
        s->open_handles++;
    } else {
        refuse(s, "cannot start name resolution");
    }
}

/* True when this client is one of smtptap's own upstream connections, redirected back to
 * it by a rule that does not exclude smtptap's traffic. */
static bool comes_from_myself(struct session *s)
{
    struct sockaddr_storage peer;
    int len = sizeof peer;
    if (uv_tcp_getpeername(&s->client.tcp, (struct sockaddr *)&peer, &len) < 0) return false;
    for (struct session *o = s->server->sessions; o; o = o->next)
        if (o != s && o->upstream_local.ss_family &&
            sockaddr_equal((struct sockaddr *)&o->upstream_local, (struct sockaddr *)&peer))
            return true;
    return false;
}

static void connect_transparent(struct session *s)
{
    struct sockaddr_storage dst;
    if (comes_from_myself(s)) {
        session_emitf(
            s, EV_ERROR, DIR_S2C,
            "connection from %s is smtptap's own upstream connection, redirected back to it: "
            "the redirect rule must exclude smtptap's traffic (e.g. meta skuid != USER)",
            s->client_name);
        local_reply(s, "421 4.3.0 smtptap: redirect loop, my own connection came back to me");
        session_end(s);
        return;
    }
    int rc = upstream_original_dst(&s->client.tcp, &dst);
    if (rc < 0) {
        snprintf(s->upstream_name, sizeof s->upstream_name, "(original destination of %s)",
                 s->local_name);
        session_emitf(
            s, EV_ERROR, DIR_S2C,
            "connection to %s was not redirected (no NAT original destination: %s); "
            "transparent mode needs an nftables/iptables REDIRECT rule, refusing to loop to "
            "myself",
            s->local_name, uv_strerror(rc));
        local_reply(s,
                    "421 4.3.0 smtptap: connection to %s was not redirected, transparent mode "
                    "cannot tell the real server",
                    s->local_name);
        session_end(s);
        return;
    }
    sockaddr_format((struct sockaddr *)&dst, s->upstream_name, sizeof s->upstream_name);
    uv_ip_name((struct sockaddr *)&dst, s->client.tls_name, sizeof s->client.tls_name);
    arm_timer(s, TIMER_CONNECT, s->server->cfg->connect_timeout_ms);
    connect_to(s, (struct sockaddr *)&dst);
}

static void connect_upstream(struct session *s)
{
    const struct upstream_spec *u = &s->server->cfg->upstream;
    switch (u->kind) {
    case UPSTREAM_SINK:
        snprintf(s->upstream_name, sizeof s->upstream_name, "sink (built-in)");
        session_emitf(s, EV_INFO, DIR_NONE, "%s connected to %s, upstream %s", s->client_name,
                      s->local_name, s->upstream_name);
        sink_leg_init(&s->up.sink, s->server->loop, &upstream_events, s, s->server->host, s->id,
                      &s->server->sink_users);
        s->upstream = &s->up.sink.base;
        s->open_handles++;
        start_relaying(s);
        return;
    case UPSTREAM_FIXED:
        format_hostport(u->target.host, u->target.port, s->upstream_name, sizeof s->upstream_name);
        session_emitf(s, EV_INFO, DIR_NONE, "%s connected to %s, upstream %s", s->client_name,
                      s->local_name, s->upstream_name);
        connect_fixed(s, &u->target);
        return;
    case UPSTREAM_TRANSPARENT:
        session_emitf(s, EV_INFO, DIR_NONE, "%s connected to %s, upstream transparent",
                      s->client_name, s->local_name);
        connect_transparent(s);
        return;
    }
}

/* ---- accepting and stopping ------------------------------------------------------------- */

/* A REPLY fault on the greeting answers at once; the server's own greeting is swallowed
 * when it comes. */
static void greeting_fault(struct session *s)
{
    const struct smtp_pending *g = smtp_fifo_peek(&s->fifo);
    const struct fault_rule *r = g->fault;
    if (!r || r->action != FAULT_REPLY) return;
    session_emitf(s, EV_FAULT, DIR_S2C, "fault %s: greeting answered by smtptap", r->name);
    session_emit(s, EV_REPLY, DIR_S2C, (const uint8_t *)r->reply, strlen(r->reply), NULL, true);
    reply_send(s, (const uint8_t *)r->reply, strlen(r->reply));
    if (r->reply_code == 421) session_end(s); /* as a server that greets with 421 would */
}

static void name_endpoints(struct session *s)
{
    struct sockaddr_storage sa;
    int len = sizeof sa;
    strcpy(s->client_name, "?");
    strcpy(s->local_name, "?");
    if (uv_tcp_getpeername(&s->client.tcp, (struct sockaddr *)&sa, &len) == 0)
        sockaddr_format((struct sockaddr *)&sa, s->client_name, sizeof s->client_name);
    len = sizeof sa;
    if (uv_tcp_getsockname(&s->client.tcp, (struct sockaddr *)&sa, &len) == 0)
        sockaddr_format((struct sockaddr *)&sa, s->local_name, sizeof s->local_name);
}

static void open_capture(struct session *s)
{
    const struct config *cfg = s->server->cfg;
    if (!cfg->capture_dir[0]) return;
    char err[512];
    s->capture = capture_open(cfg->capture_dir, s->id, s->client_name, err, sizeof err);
    if (!s->capture) fprintf(stderr, "smtptap: #%llu: %s\n", (unsigned long long)s->id, err);
}

void session_accept(struct server *srv, struct listener *l)
{
    struct session *s = calloc(1, sizeof *s);
    if (!s) abort();
    s->server = srv;
    s->id = ++srv->next_id;
    s->start_ns = uv_hrtime();
    s->state = SESSION_CONNECTING;
    smtp_in_init(&s->cin);
    smtp_reply_init(&s->sin);
    smtp_fifo_init(&s->fifo, FIFO_MAX);
    hello_memory_init(&s->hello);
    smtp_fifo_push(&s->fifo,
                   (struct smtp_pending){.kind = SMTP_PENDING_GREETING,
                                         .fault = reply_fault_for(s, FAULT_GREETING, NULL, 0)});
    uv_timer_init(srv->loop, &s->timer);
    uv_timer_init(srv->loop, &s->reply_timer);
    s->timer.data = s->reply_timer.data = s;
    s->timers_open = 2;
    tcp_leg_init(&s->client, srv->loop, &client_events, s);
    s->open_handles = 1;
    s->next = srv->sessions;
    if (srv->sessions) srv->sessions->prev = s;
    srv->sessions = s;
    srv->nsessions++;
    if (tcp_leg_accept(&s->client, (uv_stream_t *)&l->tcp) != 0) {
        s->state = SESSION_ENDING;
        leg_close(&s->client.base);
        return;
    }
    name_endpoints(s);
    open_capture(s);
    s->observed = srv->live || s->capture;
    if (l->spec.implicit_tls && !start_client_tls(s)) return;
    s->follow_auth = s->observed && (srv->cfg->decode_auth || srv->cfg->redact);
    auth_init(&s->auth);
    connect_upstream(s);
    if (s->state != SESSION_ENDING) greeting_fault(s);
}

void session_stop(struct session *s, bool force)
{
    if (s->state == SESSION_ENDING) {
        if (force) {
            leg_close(&s->client.base);
            if (s->upstream) leg_close(s->upstream);
        }
        return;
    }
    session_emitf(s, EV_INFO, DIR_NONE, "smtptap is shutting down: closing the session");
    local_reply(s, "421 4.3.2 smtptap: shutting down, try again later");
    session_end(s);
}
