/* session_close.c - either side of a session finishing (EOF, errors, a closed leg), the
 * client's half-close (DRAINING: the server answers what it was sent, then the end), and
 * backpressure between the legs. The leg event tables live here. */
#include <stdio.h>

#include "session_int.h"
#include "smtptap/upstream.h"

/* ---- backpressure ------------------------------------------------------------------------- */

/* Hysteresis: a side that stopped reading resumes once the queue is down to half. */
static bool room(size_t queued, bool reading)
{
    return reading ? queued < HIGH_WATER : queued <= HIGH_WATER / 2;
}

void session_update_flow(struct session *s)
{
    if (!session_relaying(s)) return;
    struct leg *c = &s->client.base, *u = s->upstream;
    bool read_client = !s->client_eof && !upgrade_busy(s) && room(u->queued, c->reading) &&
                       smtp_fifo_count(&s->fifo) < FIFO_HIGH &&
                       smtp_in_buffered(&s->cin) < HIGH_WATER;
    bool read_upstream = !s->upstream_eof && room(c->queued + s->held_size, u->reading);
    read_client ? leg_read_start(c) : leg_read_stop(c);
    read_upstream ? leg_read_start(u) : leg_read_stop(u);
}

/* ---- either side finishing ---------------------------------------------------------------- */

void session_shutdown_upstream_when_answered(struct session *s)
{
    if (s->state != SESSION_DRAINING) return;
    /* client bytes held behind DATA (or AUTH) until its reply: they go first */
    if (smtp_in_mode(&s->cin) == SMTP_IN_WAIT && smtp_in_buffered(&s->cin) > 0) return;
    if (session_upstream_in_tls(s) && smtp_fifo_count(&s->fifo) > 0 && !s->in_message)
        return;                /* replies owed */
    leg_shutdown(s->upstream); /* called per reply: both kinds of leg ignore a repeat */
}

static void client_gone(struct session *s, const char *how)
{
    if (s->client_eof || s->state >= SESSION_ENDING) return;
    s->client_eof = true;
    leg_read_stop(&s->client.base);
    if (s->in_message && !session_opaque(s))
        session_emitf(s, EV_ERROR, DIR_C2S,
                      "client %s during %s (message %llu cut short after %llu bytes)", how,
                      smtp_in_mode(&s->cin) == SMTP_IN_BDAT ? "BDAT" : "DATA",
                      (unsigned long long)s->messages + 1,
                      (unsigned long long)(s->observed ? s->msg.size : 0));
    else
        session_emitf(s, EV_INFO, DIR_C2S, "client %s", how);
    if ((s->state != SESSION_GREETING && s->state != SESSION_RELAYING) || s->upstream_eof) {
        session_end(s);
        return;
    }
    /* Let the server answer what it was sent (a QUIT, say), then end. Over TLS the FIN
     * waits for those replies: it comes with a close_notify, data that a server closing
     * after its 221 never reads, and its kernel would answer with a reset that can take
     * the unread replies with it. A plain FIN carries no data and goes at once. */
    session_enter(s, SESSION_DRAINING, "the client finished");
    session_shutdown_upstream_when_answered(s);
}

static void upstream_gone(struct session *s, const char *how)
{
    if (s->upstream_eof || s->state >= SESSION_ENDING) return;
    s->upstream_eof = true;
    bool owed = smtp_fifo_count(&s->fifo) > 0 || s->in_message;
    owed = owed || upgrade_busy(s); /* the client's EHLO/HELO waits for the upgrade */
    /* smtptap's own 421 only for a client still talking; a client that went away (even
     * half-closed) is only sent what the server itself answers. */
    if (owed && !session_opaque(s) && !s->client_eof && !s->saw_421) {
        bool greeted = s->state >= SESSION_RELAYING; /* not DRAINING: the client is there */
        session_emitf(s, EV_ERROR, DIR_S2C, "upstream %s%s", how,
                      s->in_message ? " during DATA"
                      : !greeted    ? " before its greeting"
                                    : "");
        session_local_reply(s, "421 4.4.0 smtptap: upstream %s%s", how,
                            s->in_message ? " during DATA" : "");
    } else {
        session_emitf(s, EV_INFO, DIR_S2C, "%s %s",
                      s->up_kind == UP_SINK     ? "sink"
                      : s->up_kind == UP_REPLAY ? "replay"
                                                : "upstream",
                      how);
    }
    session_end(s);
}

static const char *closed_words(const struct tcp_leg *t)
{
    if (tcp_leg_tls_state(t) == LEG_TLS_HANDSHAKING)
        return "closed the connection during the TLS handshake";
    return t->tls_truncated ? "closed the connection without a TLS close_notify (truncated)"
                            : "closed the connection";
}

static void on_client_eof(struct leg *leg)
{
    struct session *s = leg->owner;
    client_gone(s, closed_words(&s->client));
}

static void on_upstream_eof(struct leg *leg)
{
    struct session *s = leg->owner;
    upstream_gone(s, s->up_kind == UP_TCP ? closed_words(&s->up.tcp) : "closed the connection");
}

/* Words for a failed leg: the TLS reason when TLS failed, else the socket error. */
static void failure_words(const struct tcp_leg *t, int err, char *how, size_t size)
{
    if (err == UV_EPROTO && t->tls_error[0])
        snprintf(how, size, "TLS failed (%s)", t->tls_error);
    else
        snprintf(how, size, "connection failed (%s)", upstream_connect_reason(err));
}

static void on_client_error(struct leg *leg, int err)
{
    struct session *s = leg->owner;
    char how[600];
    failure_words(&s->client, err, how, sizeof how);
    s->client_dead = true;
    client_gone(s, how);
    session_end(s);
}

static void on_upstream_error(struct leg *leg, int err)
{
    struct session *s = leg->owner;
    char how[600];
    if (s->up_kind == UP_TCP)
        failure_words(&s->up.tcp, err, how, sizeof how);
    else
        snprintf(how, sizeof how, "connection failed (%s)", upstream_connect_reason(err));
    upstream_gone(s, how);
}

static void on_drain(struct leg *leg)
{
    session_update_flow(leg->owner);
}

static void on_leg_closed(struct leg *leg)
{
    struct session *s = leg->owner;
    s->open_handles--;
    if (leg == s->upstream && s->state == SESSION_RETRYING) {
        session_retry_connect(s);
        return;
    }
    session_release_if_done(s);
}

const struct leg_events session_client_events = {session_on_client_read, on_client_eof,
                                                 on_client_error, on_drain, on_leg_closed};
const struct leg_events session_upstream_events = {session_on_upstream_read, on_upstream_eof,
                                                   on_upstream_error, on_drain, on_leg_closed};
