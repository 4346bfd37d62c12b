/* session_reply.c - the client-bound reply path of a session: bytes go to the client in
 * order, and fault rules shape them (answer locally, hold, never send, trickle, cut, drop
 * or reset the connection; strip faults edit the EHLO reply in session_hello.c). Every
 * firing is a "!!" event. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "session_int.h"

enum { SLOW_TICK_MS = 100 };

/* Bytes owed to the client, held because a fault shapes them or because earlier bytes are
 * still held: order is kept whatever the faults do. */
/* A server reply's event, emitted when the client gets its bytes. */
struct held_event {
    union event_facts facts;
    struct held_event *edit; /* smtptap's edit of this reply, shown right after it, or NULL */
    size_t len;
    uint8_t bytes[];
};

struct held_bytes {
    struct held_bytes *next;
    struct held_event *event; /* emitted just before the bytes go to the client; or NULL */
    enum fault_action mode;   /* FAULT_REPLY: plain bytes */
    uint64_t due_ms;          /* FAULT_DELAY: loop time to send at */
    uint64_t param;           /* FAULT_SLOW: bytes per second; FAULT_TRUNCATE: bytes kept */
    uint64_t mark;            /* the writer thread's item to be written before they go */
    size_t len, sent;
    size_t announced; /* the events of the bytes up to here are emitted (sent <= it) */
    uint8_t bytes[];
};

static void send_held(struct session *s);

/* The session's capture files are the writer thread's: a reply goes to the client once they
 * hold it and all before it (the eml of a message before the reply to it). */
static bool replies_wait(const struct session *s)
{
    return s->env->writers && s->capture;
}

static void reply_timer_cb(uv_timer_t *t)
{
    send_held(t->data);
}

static void arm(struct session *s, uint64_t ms)
{
    s->reply_timer.data = s;
    uv_timer_start(&s->reply_timer, reply_timer_cb, ms, 0);
}

static void hold(struct session *s, enum fault_action mode, uint64_t param, const uint8_t *bytes,
                 size_t len)
{
    s->s2c_pos += len; /* where the stream the client sees is: written now or later */
    struct held_bytes *h = malloc(sizeof *h + len);
    if (!h) abort();
    memset(h, 0, sizeof *h);
    h->mode = mode;
    h->param = param;
    h->due_ms = uv_now(s->env->loop) + (mode == FAULT_DELAY ? param : 0);
    h->len = len;
    memcpy(h->bytes, bytes, len);
    h->event = s->deferred;
    s->deferred = NULL;
    if (s->held_tail)
        s->held_tail->next = h;
    else
        s->held_head = h;
    s->held_tail = h;
    s->held_size += len;
    send_held(s);
}

static void pop_held(struct session *s)
{
    struct held_bytes *h = s->held_head;
    s->held_head = h->next;
    if (!s->held_head) s->held_tail = NULL;
    s->held_size -= h->len;
    if (h->event) free(h->event->edit);
    free(h->event);
    free(h);
}

void reply_free_held(struct session *s)
{
    if (s->env->writers) writer_thread_cancel(s->env->writers, &s->writers_wait);
    while (s->held_head) pop_held(s);
    if (s->deferred) free(s->deferred->edit);
    free(s->deferred);
    s->deferred = NULL;
}

void reply_defer_event(struct session *s, const uint8_t *bytes, size_t len,
                       const union event_facts *facts)
{
    reply_flush_deferred(s);
    struct held_event *e = malloc(sizeof *e + len);
    if (!e) abort();
    e->facts = *facts;
    e->edit = NULL;
    e->len = len;
    if (len) memcpy(e->bytes, bytes, len);
    s->deferred = e;
}

bool reply_defer_edit(struct session *s, const uint8_t *bytes, size_t len, int code)
{
    struct held_event *e = s->deferred;
    if (!e) return false;
    free(e->edit);
    e->edit = malloc(sizeof *e->edit + len);
    if (!e->edit) abort();
    e->edit->facts = (union event_facts){.reply = {.code = code}};
    e->edit->edit = NULL;
    e->edit->len = len;
    if (len) memcpy(e->edit->bytes, bytes, len);
    return true;
}

static void emit_held_event(struct session *s, struct held_event **e)
{
    if (!*e) return;
    struct held_event *x = *e, *edit = x->edit;
    session_emit_facts(s, EV_REPLY, DIR_S2C, x->bytes, x->len, NULL, false, &x->facts);
    if (edit) { /* "<=" lines: what the client got instead */
        edit->facts.reply.edited_from = x->bytes;
        edit->facts.reply.edited_from_len = x->len;
        session_emit_facts(s, EV_REPLY, DIR_S2C, edit->bytes, edit->len, NULL, false, &edit->facts);
    }
    free(edit);
    free(x);
    *e = NULL;
}

void reply_flush_deferred(struct session *s)
{
    emit_held_event(s, &s->deferred);
}

void reply_emit_unsent(struct session *s)
{
    for (struct held_bytes *h = s->held_head; h; h = h->next) emit_held_event(s, &h->event);
    reply_flush_deferred(s);
}

/* The events of bytes about to go to the client: the wire bytes (pcap). */
static void announce(struct session *s, const uint8_t *bytes, size_t len)
{
    /* A ClientHello parked for the upstream's certificate (which will not come now: the
     * first bytes for the client are smtptap's own) gets a leaf of smtptap's naming. */
    leg_tls_release_hello(&s->client, NULL);
    if (!s->client_dead && len) session_wire(s, DIR_S2C, bytes, len);
}

static void send_now(struct session *s, const uint8_t *bytes, size_t len)
{
    if (s->client_dead || !len) return;
    s->bytes_down += len; /* what the client is sent: edits and local replies included */
    leg_write(&s->client.base, bytes, len);
}

static void writers_caught_up(struct writer_wait *w)
{
    struct session *s = (struct session *)((char *)w - offsetof(struct session, writers_wait));
    send_held(s);
}

/* Writes the next n held bytes: their events first (the held reply's "<-" lines, stamped
 * now, and the wire bytes), then, with a writer thread, the bytes once it has written those
 * events and all before them, so that the files hold what the client gets. False while
 * it waits (the thread calls send_held again). */
static bool write_step(struct session *s, struct held_bytes *h, size_t n)
{
    if (h->event || h->announced < h->sent + n) {
        emit_held_event(s, &h->event);
        announce(s, h->bytes + h->sent, n);
        h->announced = h->sent + n;
        if (replies_wait(s)) h->mark = writer_thread_mark(s->env->writers);
    }
    if (h->mark && writer_thread_written(s->env->writers) < h->mark) {
        writer_thread_wait(s->env->writers, &s->writers_wait, h->mark, writers_caught_up);
        return false;
    }
    send_now(s, h->bytes + h->sent, n);
    h->sent += n;
    return true;
}

/* Sends one trickle of a slow reply; returns true when it is all sent. */
static bool send_slowly(struct session *s, struct held_bytes *h)
{
    uint64_t rate = h->param ? h->param : 1;
    size_t chunk = rate >= 1000 / SLOW_TICK_MS ? (size_t)(rate * SLOW_TICK_MS / 1000) : 1;
    uint64_t interval = rate >= 1000 / SLOW_TICK_MS ? SLOW_TICK_MS : 1000 / rate;
    if (chunk > h->len - h->sent) chunk = h->len - h->sent;
    if (!write_step(s, h, chunk)) return false;
    if (h->sent == h->len) return true;
    arm(s, interval);
    return false;
}

/* Delivers held bytes from the head until one must wait. */
static void send_held(struct session *s)
{
    while (s->held_head && s->state < SESSION_ENDING) {
        struct held_bytes *h = s->held_head;
        uint64_t now = uv_now(s->env->loop);
        switch (h->mode) {
        case FAULT_DELAY:
            if (now < h->due_ms) return arm(s, h->due_ms - now);
            if (!write_step(s, h, h->len - h->sent)) return;
            break;
        case FAULT_STALL: return;
        case FAULT_SLOW:
            if (!send_slowly(s, h)) return;
            break;
        case FAULT_TRUNCATE: {
            size_t keep = h->param < h->len ? (size_t)h->param : h->len;
            if (!write_step(s, h, keep - h->sent)) return;
            pop_held(s);
            session_end(s);
            return;
        }
        case FAULT_DROP:
            pop_held(s);
            session_end(s);
            return;
        case FAULT_RESET:
            pop_held(s);
            tcp_leg_reset(&s->client);
            session_end(s);
            return;
        default:
            if (!write_step(s, h, h->len - h->sent)) return;
            break;
        }
        pop_held(s);
    }
}

void reply_send_waiting(struct session *s)
{
    while (s->held_head && s->held_head->mode == FAULT_REPLY) { /* a fault's are not sent */
        struct held_bytes *h = s->held_head;
        emit_held_event(s, &h->event);
        if (h->announced < h->len) announce(s, h->bytes + h->announced, h->len - h->announced);
        send_now(s, h->bytes + h->sent, h->len - h->sent);
        pop_held(s);
    }
}

void reply_send(struct session *s, const uint8_t *bytes, size_t len)
{
    if (s->held_head || replies_wait(s)) { /* behind held bytes, or the writer thread */
        hold(s, FAULT_REPLY, 0, bytes, len);
        return;
    }
    s->s2c_pos += len;
    announce(s, bytes, len);
    send_now(s, bytes, len);
}

/* ---- matching -------------------------------------------------------------------------- */

enum fault_stage reply_stage_of(enum smtp_verb verb)
{
    switch (verb) {
    case SMTP_VERB_EHLO: return FAULT_EHLO;
    case SMTP_VERB_HELO: return FAULT_HELO;
    case SMTP_VERB_MAIL: return FAULT_MAIL;
    case SMTP_VERB_RCPT: return FAULT_RCPT;
    case SMTP_VERB_DATA: return FAULT_DATA;
    case SMTP_VERB_BDAT: return FAULT_BDAT;
    case SMTP_VERB_AUTH: return FAULT_AUTH;
    case SMTP_VERB_STARTTLS: return FAULT_STARTTLS;
    case SMTP_VERB_RSET: return FAULT_RSET;
    case SMTP_VERB_NOOP: return FAULT_NOOP;
    case SMTP_VERB_QUIT: return FAULT_QUIT;
    default: return FAULT_ANY;
    }
}

const struct fault_rule *reply_fault_for(struct session *s, enum fault_stage stage,
                                         const uint8_t *arg, size_t arg_len)
{
    const struct fault_set *now = *s->env->faults;
    if (!now || now->count == 0) return NULL;
    if (s->fault_set != now) { /* first use, or the rules were reloaded (SIGHUP) */
        if (s->fault_set) fault_session_free(&s->faults);
        fault_session_init(&s->faults, now, s->env->seed, s->id);
        s->fault_set = now;
    }
    return fault_match(now, &s->faults, stage, arg, arg_len);
}

bool reply_fault_is_local(const struct fault_rule *r, enum smtp_verb verb)
{
    if (!r || r->action != FAULT_REPLY) return false;
    /* A command that changes what the client sends next cannot be faked into success:
     * the server never saw it. */
    bool blocks = verb == SMTP_VERB_DATA || verb == SMTP_VERB_AUTH || verb == SMTP_VERB_STARTTLS;
    /* A BDAT chunk that is to look accepted goes to the server (only its reply is replaced):
     * kept back, the server would store the message without it. */
    blocks = blocks || verb == SMTP_VERB_BDAT;
    return !blocks || r->reply_code >= 400;
}

/* ---- what the client gets ---------------------------------------------------------------- */

static void first_line(const uint8_t *bytes, size_t len, char *out, size_t size)
{
    size_t n = 0;
    while (n < len && bytes[n] != '\r' && bytes[n] != '\n' && n + 1 < size) {
        out[n] = bytes[n] >= 0x20 && bytes[n] < 0x7f ? (char)bytes[n] : '?';
        n++;
    }
    out[n] = 0;
}

/* A server that says 421, or answers QUIT, closes the connection: so does the fault. */
static void end_if_closing(struct session *s, int code, enum smtp_verb verb)
{
    if (code == 421 || verb == SMTP_VERB_QUIT) session_end(s);
}

const struct fault_rule reply_starttls_ready = {
    .name = "client-starttls",
    .action = FAULT_REPLY,
    .has_action = true,
    .reply = "220 2.0.0 Ready to start TLS\r\n",
    .reply_code = 220,
};

const struct fault_rule reply_hello_first = {
    .name = "starttls-upstream",
    .action = FAULT_REPLY,
    .has_action = true,
    .reply = "503 5.5.1 smtptap: EHLO first (starttls: upstream, nothing goes to it in clear)\r\n",
    .reply_code = 503,
};

/* No reply text of its own: session_hello_after_starttls gives the server's kept reply. */
const struct fault_rule reply_hello_remembered = {
    .name = "hello-remembered",
    .action = FAULT_REPLY,
    .has_action = true,
    .reply = "",
    .reply_code = 250,
};

const struct fault_rule reply_starttls_refused = {
    .name = "client-starttls",
    .action = FAULT_REPLY,
    .has_action = true,
    .reply = "502 5.5.1 STARTTLS not offered\r\n",
    .reply_code = 502,
};

void reply_local(struct session *s, const struct smtp_pending *p, bool from_client_path)
{
    const struct fault_rule *r = p->fault;
    if (r == &reply_hello_remembered) {
        session_hello_after_starttls(s, p);
        return;
    }
    const uint8_t *bytes = (const uint8_t *)r->reply;
    size_t len = strlen(r->reply);
    session_emit_own_reply(s, bytes, len);
    session_lint_reply(s, p, bytes, len, true);
    reply_send(s, bytes, len);
    if (r == &reply_starttls_ready) {
        reply_send_waiting(s); /* in clear, before the handshake: it cannot wait */
        session_client_starttls(s);
        return;
    }
    if (s->observed) envelope_reply(&s->envelope, p->verb, r->reply_code);
    session_resume_client(s, p, r->reply_code, from_client_path);
    end_if_closing(s, r->reply_code, p->verb);
}

static void fired(struct session *s, const struct fault_rule *r, const char *what,
                  const uint8_t *real, size_t real_len)
{
    char line[200];
    first_line(real, real_len, line, sizeof line);
    session_emit_fault(s, r, "fault %s: %s %s", r->name, what, line);
}

/* For the actions that hold the real reply: the words of the "!!" line, and the parameter
 * the held bytes need. */
static uint64_t hold_words(const struct fault_rule *r, char *what, size_t size)
{
    switch (r->action) {
    case FAULT_DELAY:
        snprintf(what, size, "delay %llums on", (unsigned long long)r->delay_ms);
        return r->delay_ms;
    case FAULT_SLOW:
        snprintf(what, size, "slow %llu bytes/s for", (unsigned long long)r->rate_bps);
        return r->rate_bps;
    case FAULT_TRUNCATE:
        snprintf(what, size, "truncate after %llu bytes, then close, of",
                 (unsigned long long)r->truncate_bytes);
        return r->truncate_bytes;
    case FAULT_STALL: snprintf(what, size, "stall: never sending"); return 0;
    case FAULT_DROP:
        snprintf(what, size, "drop: closing the client connection instead of sending");
        return 0;
    default:
        snprintf(what, size, "reset: aborting the client connection (RST) instead of sending");
        return 0;
    }
}

void reply_faulted(struct session *s, const struct smtp_pending *p, const uint8_t *bytes,
                   size_t len, int code)
{
    const struct fault_rule *r = p->fault;
    char what[200];
    switch (r->action) {
    case FAULT_REPLY: {
        if (p->kind == SMTP_PENDING_GREETING) { /* the client got the fault's greeting already */
            fired(s, r, "swallowed the server's real greeting", bytes, len);
            return;
        }
        const uint8_t *local = (const uint8_t *)r->reply;
        size_t local_len = strlen(r->reply);
        char fake[120];
        first_line(local, local_len, fake, sizeof fake);
        snprintf(what, sizeof what, "reply \"%s\" replaced (the %s reached the server)", fake,
                 p->verb == SMTP_VERB_BDAT && !p->ends_message ? "chunk" : "message");
        fired(s, r, what, bytes, len);
        session_emit_own_reply(s, local, local_len);
        reply_send(s, local, local_len);
        end_if_closing(s, r->reply_code, SMTP_VERB_UNKNOWN);
        return;
    }
    case FAULT_STRIP: /* only on EHLO, whose reply hello_client_view has stripped */
        reply_send(s, bytes, len);
        return;
    default: {
        uint64_t param = hold_words(r, what, sizeof what);
        fired(s, r, what, bytes, len);
        hold(s, r->action, param, bytes, len);
        return;
    }
    }
    (void)code;
}

void reply_greeting_fault(struct session *s)
{
    const struct smtp_pending *g = smtp_fifo_peek(&s->fifo);
    const struct fault_rule *r = g->fault;
    if (!r || r->action != FAULT_REPLY) return;
    session_emit_fault(s, r, "fault %s: greeting answered by smtptap", r->name);
    session_emit_own_reply(s, (const uint8_t *)r->reply, strlen(r->reply));
    reply_send(s, (const uint8_t *)r->reply, strlen(r->reply));
    if (r->reply_code == 421) session_end(s); /* as a server that greets with 421 would */
}
