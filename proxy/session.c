/* session.c - a session's life: start, the state machine (every change of phase passes
 * session_enter), its timers, its end and freeing, and the events it emits. The rooms that
 * do the work are listed in session_int.h. */
#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "session_int.h"
#include "smtptap/capture.h"
#include "smtptap/parse.h"

/* ---- events ------------------------------------------------------------------------------ */

static uint64_t wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void emit_ev(struct session *s, const struct event *ev)
{
    if (s->env->control) s->env->control->write(s->env->control, ev);
    if (s->env->writers) {
        writer_thread_write(s->env->writers, s->capture, ev);
        return;
    }
    if (s->env->live) s->env->live->write(s->env->live, ev);
    if (s->env->stream) s->env->stream->write(s->env->stream, ev);
    if (s->capture) s->capture->write(s->capture, ev);
}

static void emit(struct session *s, enum event_kind kind, enum event_dir dir, const uint8_t *bytes,
                 size_t len, const char *text, bool local, bool to_smtptap,
                 const union event_facts *facts)
{
    if (!s->observed) return;
    if (tcp_leg_tls_started(&s->client)) s->client_tls_seen = true;
    struct event ev = {
        .wall_us = wall_us(),
        .facts = facts,
        .to_smtptap = to_smtptap,
        .session = s->id,
        .t_ns = uv_hrtime() - s->start_ns,
        .kind = kind,
        .dir = dir,
        .local = local,
        .tls = s->client_tls_seen, /* markers show the client's connection */
        .bytes = bytes,
        .len = len,
        .text = text,
    };
    emit_ev(s, &ev);
}

/* A message line: past_preview when it comes after the first SHOWN_LINES (the terminal
 * shows it only with -v). */
void session_content_clock(struct session *s)
{
    s->content_wall_us = wall_us();
    s->content_t_ns = uv_hrtime() - s->start_ns;
}

void session_emit_content(struct session *s, const uint8_t *bytes, size_t len, bool past_preview)
{
    if (!s->observed) return;
    if (tcp_leg_tls_started(&s->client)) s->client_tls_seen = true;
    struct event ev = {
        .wall_us = s->content_wall_us,
        .session = s->id,
        .t_ns = s->content_t_ns,
        .kind = EV_CONTENT,
        .dir = DIR_C2S,
        .tls = s->client_tls_seen,
        .bytes = bytes,
        .len = len,
        .past_preview = past_preview,
    };
    emit_ev(s, &ev);
}

void session_emit(struct session *s, enum event_kind kind, enum event_dir dir, const uint8_t *bytes,
                  size_t len, const char *text, bool local)
{
    emit(s, kind, dir, bytes, len, text, local, false, NULL);
}

void session_emit_facts(struct session *s, enum event_kind kind, enum event_dir dir,
                        const uint8_t *bytes, size_t len, const char *text, bool local,
                        const union event_facts *facts)
{
    emit(s, kind, dir, bytes, len, text, local, false, facts);
}

void session_emit_to_smtptap(struct session *s, const uint8_t *bytes, size_t len,
                             const union event_facts *facts)
{
    emit(s, EV_REPLY, DIR_S2C, bytes, len, NULL, false, true, facts);
}

void session_lint(struct session *s, const char *id, enum event_dir dir, int64_t offset,
                  const char *fmt, ...)
{
    if (!s->observed) return;
    char text[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    union event_facts f = {.lint = {.id = id, .offset = offset}};
    emit(s, EV_LINT, dir, NULL, 0, text, false, false, &f);
}

void session_on_lint(void *ctx, const struct lint_finding *f)
{
    const struct lint_where *w = ctx;
    int64_t offset = f->at == LINT_AT_NONE ? -1 : w->base + f->at;
    session_lint(w->s, f->id, w->dir, offset < 0 ? -1 : offset, "lint: %s", f->text);
}

static void on_state_finding(void *ctx, const char *id, enum lint_side side, uint64_t offset,
                             const char *text)
{
    session_lint(ctx, id, side == LINT_SIDE_C2S ? DIR_C2S : DIR_S2C,
                 offset == LINT_STATE_NO_OFFSET ? -1 : (int64_t)offset, "lint: %s", text);
}

void session_lint_reply(struct session *s, const struct smtp_pending *p, const uint8_t *bytes,
                        size_t len, bool last)
{
    if (!s->observed || !p) return; /* unasked replies: session_server_path.c says so */
    lint_state_reply(&s->lstate, lint_reply_kind_of(p), p->verb, s->s2c_pos, bytes, len, last);
}

void session_emit_own_reply(struct session *s, const uint8_t *bytes, size_t len)
{
    union event_facts f = {.reply = {.code = 0}};
    if (len >= 3 && bytes[0] >= '1' && bytes[0] <= '9' && bytes[1] >= '0' && bytes[1] <= '9' &&
        bytes[2] >= '0' && bytes[2] <= '9')
        f.reply.code = (bytes[0] - '0') * 100 + (bytes[1] - '0') * 10 + (bytes[2] - '0');
    emit(s, EV_REPLY, DIR_S2C, bytes, len, NULL, true, false, &f);
}

void session_wire(struct session *s, enum event_dir dir, const uint8_t *bytes, size_t len)
{
    if (len) emit(s, EV_WIRE, dir, bytes, len, NULL, false, false, NULL);
}

void session_emit_fault(struct session *s, const struct fault_rule *rule, const char *fmt, ...)
{
    if (!s->observed) return;
    char text[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    union event_facts f = {
        .fault = {.rule = rule->name, .action = fault_action_name(rule->action)}};
    emit(s, EV_FAULT, DIR_S2C, NULL, 0, text, false, false, &f);
}

void session_fault_change(struct session *s, const char *rule, const char *action,
                          const char *change, const char *text)
{
    if (!s->observed || s->state >= SESSION_ENDING) return;
    union event_facts f = {.fault = {.rule = rule, .action = action, .change = change}};
    emit(s, EV_FAULT, DIR_NONE, NULL, 0, text, false, false, &f);
}

uint64_t session_id(const struct session *s)
{
    return s->id;
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

void session_local_reply(struct session *s, const char *fmt, ...)
{
    char line[600];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line - 2, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n > sizeof line - 3) n = sizeof line - 3;
    memcpy(line + n, "\r\n", 3);
    session_emit_own_reply(s, (const uint8_t *)line, (size_t)n + 2);
    reply_send(s, (const uint8_t *)line, (size_t)n + 2);
}

/* ---- timers ------------------------------------------------------------------------------ */

static void timer_cb(uv_timer_t *t);

void session_arm_timer(struct session *s, enum timer_purpose purpose, uint64_t ms)
{
    s->timer_purpose = purpose;
    uv_timer_start(&s->timer, timer_cb, ms, 0);
}

void session_touch(struct session *s)
{
    s->last_activity_ms = uv_now(s->env->loop);
}

static void on_idle_expired(struct session *s)
{
    uint64_t idle = s->cfg->idle_timeout_ms;
    uint64_t quiet = uv_now(s->env->loop) - s->last_activity_ms;
    if (quiet < idle) {
        session_arm_timer(s, TIMER_IDLE, idle - quiet);
        return;
    }
    char d[32];
    format_duration(idle, d, sizeof d);
    if (tcp_leg_tls_state(&s->client) == LEG_TLS_HANDSHAKING &&
        !tcp_leg_tls_peer_spoke(&s->client) && !s->client_tls_via_starttls)
        session_emitf(s, EV_ERROR, DIR_C2S,
                      "client sent nothing in %s, no TLS handshake: a plain SMTP client waits "
                      "for a greeting that an implicit-TLS listener never sends",
                      d);
    session_emitf(s, EV_INFO, DIR_NONE, "session idle for %s: closing", d);
    session_local_reply(s, "421 4.4.2 smtptap: session idle for %s, closing", d);
    session_end(s);
}

static bool reaching_upstream(const struct session *s)
{
    return s->state == SESSION_RESOLVING || s->state == SESSION_CONNECTING ||
           s->state == SESSION_RETRYING || s->state == SESSION_UPSTREAM_TLS;
}

static void on_connect_expired(struct session *s)
{
    char d[32];
    format_duration(s->cfg->connect_timeout_ms, d, sizeof d);
    if (reaching_upstream(s)) {
        session_emitf(s, EV_ERROR, DIR_S2C, "upstream %s unreachable: connect timed out after %s",
                      s->upstream_name, d);
        session_local_reply(s,
                            "421 4.4.2 smtptap: upstream %s unreachable (connect timed out after "
                            "%s)",
                            s->upstream_name, d);
    } else {
        bool plain = s->cfg->upstream.tls != TLS_IMPLICIT;
        session_emitf(s, EV_ERROR, DIR_S2C, "upstream %s timed out: no greeting within %s%s",
                      s->upstream_name, d,
                      plain ? " (an implicit-TLS port says nothing until the client's TLS "
                              "handshake: if that is what it is, use tls:HOST:PORT)"
                            : "");
        session_local_reply(s, "421 4.4.2 smtptap: upstream %s timed out (no greeting within %s)",
                            s->upstream_name, d);
    }
    session_end(s);
}

static void close_legs(struct session *s)
{
    leg_close(&s->client.base);
    if (s->upstream) leg_close(s->upstream);
}

static void timer_cb(uv_timer_t *t)
{
    struct session *s = t->data;
    switch (s->timer_purpose) {
    case TIMER_CONNECT: on_connect_expired(s); break;
    case TIMER_IDLE: on_idle_expired(s); break;
    case TIMER_LINGER:
        if (s->state == SESSION_ENDING)
            close_legs(s);
        else
            session_end(s);
        break;
    }
}

/* ---- the state machine ------------------------------------------------------------------- */

static const char *const state_names[] = {
    [SESSION_STARTING] = "STARTING",
    [SESSION_RESOLVING] = "RESOLVING",
    [SESSION_CONNECTING] = "CONNECTING",
    [SESSION_RETRYING] = "RETRYING",
    [SESSION_UPSTREAM_TLS] = "UPSTREAM_TLS",
    [SESSION_GREETING] = "GREETING",
    [SESSION_RELAYING] = "RELAYING",
    [SESSION_DRAINING] = "DRAINING",
    [SESSION_ENDING] = "ENDING",
    [SESSION_FREEING] = "FREEING",
};

/* The changes the diagram in session_int.h allows. */
static bool allowed(enum session_state from, enum session_state to)
{
    switch (to) {
    case SESSION_RESOLVING: return from == SESSION_STARTING;
    case SESSION_CONNECTING:
        return from == SESSION_STARTING || from == SESSION_RESOLVING || from == SESSION_RETRYING;
    case SESSION_RETRYING: return from == SESSION_CONNECTING;
    case SESSION_UPSTREAM_TLS: return from == SESSION_CONNECTING;
    case SESSION_GREETING:
        return from == SESSION_STARTING || from == SESSION_CONNECTING ||
               from == SESSION_UPSTREAM_TLS;
    case SESSION_RELAYING: return from == SESSION_GREETING;
    case SESSION_DRAINING: return from == SESSION_GREETING || from == SESSION_RELAYING;
    case SESSION_ENDING: return from < SESSION_ENDING;
    case SESSION_FREEING: return from == SESSION_ENDING;
    default: return false;
    }
}

static void report_end(struct session *s)
{
    double secs = (double)(uv_hrtime() - s->start_ns) / 1e9;
    double server_ms = (double)s->server_wait_ns / 1e6;
    double client_ms = secs * 1e3 > server_ms ? secs * 1e3 - server_ms : 0;
    session_emitf(
        s, EV_INFO, DIR_NONE,
        "session ended after %.3fs: %llu command%s, %llu message%s, %llu bytes up, %llu bytes "
        "down; %.0f ms waiting for the server, %.0f ms for the client",
        secs, (unsigned long long)s->commands, s->commands == 1 ? "" : "s",
        (unsigned long long)s->messages, s->messages == 1 ? "" : "s",
        (unsigned long long)s->bytes_up, (unsigned long long)s->bytes_down, server_ms, client_ms);
}

static void timer_closed_cb(uv_handle_t *h);

static void enter_ending(struct session *s, enum session_state old)
{
    reply_send_waiting(s);
    reply_emit_unsent(s); /* replies the client will not get: still in the record */
    session_verdict_emit(s);
    report_end(s);
    if (old == SESSION_RESOLVING) uv_cancel((uv_req_t *)&s->gai); /* on_resolved follows */
    uv_timer_stop(&s->reply_timer);
    leg_end(&s->client.base);
    if (s->upstream) leg_end(s->upstream);
    session_arm_timer(s, TIMER_LINGER, LINGER_MS);
}

void session_enter(struct session *s, enum session_state next, const char *why)
{
    enum session_state old = s->state;
    assert(allowed(old, next));
    if (s->cfg->verbosity >= 2)
        session_emitf(s, EV_INFO, DIR_NONE, "state %s -> %s (%s)", state_names[old],
                      state_names[next], why);
    s->state = next;
    switch (next) {
    case SESSION_GREETING:
        session_touch(s);
        /* the connect timer, armed when reaching the upstream began, now waits for the
         * greeting; the sink greets at once, so its session is idle from here */
        if (s->up_kind == UP_SINK || s->up_kind == UP_REPLAY)
            session_arm_timer(s, TIMER_IDLE, s->cfg->idle_timeout_ms);
        break;
    case SESSION_RELAYING: session_arm_timer(s, TIMER_IDLE, s->cfg->idle_timeout_ms); break;
    case SESSION_DRAINING: session_arm_timer(s, TIMER_LINGER, LINGER_MS); break;
    case SESSION_ENDING: enter_ending(s, old); break;
    case SESSION_FREEING:
        uv_close((uv_handle_t *)&s->timer, timer_closed_cb);
        uv_close((uv_handle_t *)&s->reply_timer, timer_closed_cb);
        break;
    default: break;
    }
}

bool session_relaying(const struct session *s)
{
    return s->state == SESSION_GREETING || s->state == SESSION_RELAYING ||
           s->state == SESSION_DRAINING;
}

void session_end(struct session *s)
{
    if (s->state >= SESSION_ENDING) return;
    session_enter(s, SESSION_ENDING, "session end");
}

/* ---- freeing ----------------------------------------------------------------------------- */

/* EV_END, the session's last event: after it nothing more is said of the session. */
static void emit_end(struct session *s)
{
    union event_facts f = {.end = {.seconds = (double)(uv_hrtime() - s->start_ns) / 1e9,
                                   .commands = s->commands,
                                   .messages = s->messages,
                                   .bytes_up = s->bytes_up,
                                   .bytes_down = s->bytes_down,
                                   .server_wait_ns = s->server_wait_ns}};
    emit(s, EV_END, DIR_NONE, NULL, 0, NULL, false, false, &f);
}

static void timer_closed_cb(uv_handle_t *h)
{
    struct session *s = h->data;
    if (--s->timers_open > 0) return;
    assert(s->open_handles == 0 && s->state == SESSION_FREEING);
    reply_free_held(s);
    buf_free(&s->upgrade_hello);
    buf_free(&s->hello_line);
    buf_free(&s->body);
    hello_memory_free(&s->hello);
    if (s->fault_set) fault_session_free(&s->faults);
    if (s->in_message && s->observed) message_view_abort(&s->msg);
    smtp_in_free(&s->cin);
    smtp_reply_free(&s->sin);
    smtp_fifo_free(&s->fifo);
    if (s->addrs) uv_freeaddrinfo(s->addrs);
    envelope_free(&s->envelope);
    emit_end(s);
    if (s->capture && s->env->writers)
        writer_thread_close(s->env->writers, s->capture);
    else if (s->capture)
        s->capture->close(s->capture);
    s->env->closed(s->env->server, s);
}

void session_release_if_done(struct session *s)
{
    assert(s->open_handles >= 0);
    if (s->open_handles > 0 || s->state == SESSION_FREEING) return;
    assert(s->state == SESSION_ENDING); /* legs close only once the session ends */
    session_enter(s, SESSION_FREEING, "every leg closed");
}

/* ---- starting and stopping --------------------------------------------------------------- */

size_t session_size(void)
{
    return sizeof(struct session);
}

const struct sockaddr_storage *session_upstream_peer(const struct session *s)
{
    return &s->upstream_peer;
}

const struct sockaddr_storage *session_upstream_local(const struct session *s)
{
    return &s->upstream_local;
}

static void name_endpoints(struct session *s, union event_facts *start)
{
    struct sockaddr_storage local, peer;
    strcpy(s->client_name, "?");
    strcpy(s->local_name, "?");
    memset(&local, 0, sizeof local);
    memset(&peer, 0, sizeof peer);
    tcp_leg_addresses(&s->client, &local, &peer);
    s->client_peer = peer;
    start->endpoints.a = peer;
    start->endpoints.b = local;
    if (peer.ss_family)
        sockaddr_format((struct sockaddr *)&peer, s->client_name, sizeof s->client_name);
    if (local.ss_family)
        sockaddr_format((struct sockaddr *)&local, s->local_name, sizeof s->local_name);
}

static void open_capture(struct session *s)
{
    if (!s->cfg->capture_dir[0] || strcmp(s->cfg->capture_dir, "-") == 0) return;
    char err[512];
    struct capture_options opt = {.dir = s->cfg->capture_dir,
                                  .formats = s->cfg->formats,
                                  .eml_raw = s->cfg->eml_raw,
                                  .text_header = s->env->text_header,
                                  .whole_messages = s->cfg->verbosity > 0};
    if (s->env->writers) { /* the writer thread creates them */
        s->capture = capture_open_later(&opt, s->id, s->client_name);
        s->capture->flush_by_owner = true; /* once per hand-over, by the thread */
    } else if (!(s->capture = capture_open(&opt, s->id, s->client_name, err, sizeof err))) {
        fprintf(stderr, "smtptap: #%llu: %s\n", (unsigned long long)s->id, err);
    }
    s->records_text = s->capture && (s->cfg->formats & FORMAT_TEXT);
}

static void init(struct session *s, const struct session_env *env, uint64_t id)
{
    s->env = env;
    s->cfg = env->cfg;
    s->id = id;
    s->start_ns = uv_hrtime();
    s->state = SESSION_STARTING;
    smtp_in_init(&s->cin);
    smtp_reply_init(&s->sin);
    smtp_fifo_init(&s->fifo, FIFO_MAX);
    hello_memory_init(&s->hello);
    envelope_init(&s->envelope);
    buf_init(&s->upgrade_hello);
    buf_init(&s->hello_line);
    buf_init(&s->body);
    auth_init(&s->auth);
    lint_state_init(&s->lstate, on_state_finding, s);
    smtp_fifo_push(&s->fifo,
                   (struct smtp_pending){.kind = SMTP_PENDING_GREETING,
                                         .fault = reply_fault_for(s, FAULT_GREETING, NULL, 0)});
    uv_timer_init(env->loop, &s->timer);
    uv_timer_init(env->loop, &s->reply_timer);
    s->timer.data = s->reply_timer.data = s;
    s->timers_open = 2;
    tcp_leg_init(&s->client, env->loop, &session_client_events, s);
    s->open_handles = 1;
}

void session_start(struct session *s, const struct session_env *env, uint64_t id,
                   uv_stream_t *listener, bool implicit_tls)
{
    init(s, env, id);
    if (tcp_leg_accept(&s->client, listener) != 0) {
        s->observed = false; /* nothing to say about a connection that never was */
        session_end(s);
        leg_close(&s->client.base);
        return;
    }
    union event_facts start;
    name_endpoints(s, &start);
    open_capture(s);
    s->observed = env->live || env->stream || s->capture || env->control;
    emit(s, EV_START, DIR_NONE, NULL, 0, NULL, false, false, &start);
    s->follow_auth = s->observed && (s->cfg->decode_auth || s->cfg->redact);
    if (implicit_tls && !session_start_client_tls(s)) return;
    session_connect_upstream(s);
    if (s->state < SESSION_ENDING) reply_greeting_fault(s);
}

void session_stop(struct session *s, bool force)
{
    if (s->state >= SESSION_ENDING) {
        if (force) close_legs(s);
        return;
    }
    session_emitf(s, EV_INFO, DIR_NONE, "smtptap is shutting down: closing the session");
    session_local_reply(s, "421 4.3.2 smtptap: shutting down, try again later");
    session_end(s);
}
