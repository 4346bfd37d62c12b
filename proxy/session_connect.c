/* session_connect.c - reaching the upstream: the built-in sink, a fixed host (resolved, then
 * each address in turn), or the original destination of a redirected connection; a 421 for
 * the client when none can be reached. */
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "session_int.h"
#include "smtptap/text.h"
#include "smtptap/upstream.h"

void session_start_relaying(struct session *s)
{
    session_enter(s, SESSION_GREETING, "upstream ready");
    session_pump_client(s); /* what the client sent while the upstream was being reached */
    session_update_flow(s);
}

void session_unreachable(struct session *s, const char *why)
{
    session_emitf(s, EV_ERROR, DIR_S2C, "upstream %s unreachable: %s", s->upstream_name, why);
    session_local_reply(s, "421 4.4.0 smtptap: upstream %s unreachable (%s)", s->upstream_name,
                        why);
    session_end(s);
}

static void on_upstream_connected(struct tcp_leg *t, int status)
{
    struct session *s = t->base.owner;
    if (s->state != SESSION_CONNECTING) return;
    if (status < 0) {
        s->last_connect_error = status;
        if (s->next_addr) {
            session_enter(s, SESSION_RETRYING, upstream_connect_reason(status));
            leg_close(&t->base); /* session_close.c's on_closed goes on with the next one */
        } else {
            session_unreachable(s, upstream_connect_reason(status));
        }
        return;
    }
    /* Both ends are known since the connect call: no getsockname/getpeername here. */
    struct sockaddr_storage local = s->upstream_local, peer = s->upstream_peer;
    char from[80] = "?", to[80] = "?";
    if (local.ss_family) sockaddr_format((struct sockaddr *)&local, from, sizeof from);
    if (peer.ss_family) sockaddr_format((struct sockaddr *)&peer, to, sizeof to);
    session_emitf(s, EV_INFO, DIR_S2C, "upstream %s connected from %s", to, from);
    union event_facts f = {.endpoints = {.a = peer, .b = local}};
    session_emit_facts(s, EV_UPSTREAM, DIR_S2C, NULL, 0, NULL, false, &f);
    if (s->cfg->upstream.tls == TLS_IMPLICIT) {
        session_start_upstream_tls(s);
        return;
    }
    session_start_relaying(s);
}

static void connect_to(struct session *s, const struct sockaddr *addr)
{
    session_enter(s, SESSION_CONNECTING, "an upstream address");
    tcp_leg_init(&s->up.tcp, s->env->loop, &session_upstream_events, s);
    s->up_kind = UP_TCP;
    s->upstream = &s->up.tcp.base;
    s->open_handles++;
    memset(&s->upstream_peer, 0, sizeof s->upstream_peer);
    memcpy(&s->upstream_peer, addr,
           addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in));
    int rc = tcp_leg_connect(&s->up.tcp, addr, on_upstream_connected);
    /* The socket has its local port now: a redirect loop shows up as a client with it,
     * possibly before this connect completes. */
    if (rc == 0 && tcp_leg_addresses(&s->up.tcp, &s->upstream_local, NULL) < 0)
        memset(&s->upstream_local, 0, sizeof s->upstream_local);
    if (rc < 0) {
        s->last_connect_error = rc;
        session_unreachable(s, upstream_connect_reason(rc));
    }
}

void session_retry_connect(struct session *s)
{
    struct addrinfo *a = s->next_addr;
    s->next_addr = a->ai_next;
    connect_to(s, a->ai_addr);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct session *s = req->data;
    s->open_handles--;
    if (s->state != SESSION_RESOLVING) { /* ended meanwhile (the request was cancelled) */
        if (res) uv_freeaddrinfo(res);
        session_release_if_done(s);
        return;
    }
    if (status < 0 || !res) {
        char why[400];
        snprintf(why, sizeof why, "cannot resolve %s: %s", s->cfg->upstream.target.host,
                 uv_strerror(status));
        session_unreachable(s, why);
        return;
    }
    s->addrs = s->next_addr = res;
    session_retry_connect(s);
}

static void connect_fixed(struct session *s, const struct hostport *hp)
{
    format_hostport(hp->host, hp->port, s->upstream_name, sizeof s->upstream_name);
    session_arm_timer(s, TIMER_CONNECT, s->cfg->connect_timeout_ms);
    struct sockaddr_storage sa;
    if (sockaddr_from_numeric(hp->host, hp->port, &sa)) {
        connect_to(s, (struct sockaddr *)&sa);
        return;
    }
    char port[8];
    snprintf(port, sizeof port, "%u", hp->port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    s->gai.data = s;
    if (uv_getaddrinfo(s->env->loop, &s->gai, on_resolved, hp->host, port, &hints) == 0) {
        s->open_handles++;
        session_enter(s, SESSION_RESOLVING, hp->host);
    } else {
        session_unreachable(s, "cannot start name resolution");
    }
}

/* True when this client is one of smtptap's own upstream connections, come back to it
 * (directly, or by a redirect rule that does not exclude smtptap's traffic): it comes from
 * the address and port of one of them AND went where that one went, to this listener's
 * address or to the address a redirect took it from. The port alone is not enough: a client
 * may get the same port as an upstream connection to another destination. */
static bool comes_from_myself(struct session *s)
{
    const struct sockaddr *peer = (const struct sockaddr *)&s->client_peer;
    if (!s->client_peer.ss_family || !s->env->is_own_upstream(s->env->server, peer, NULL))
        return false; /* the usual case, without a system call */
    struct sockaddr_storage local, dst;
    if (tcp_leg_addresses(&s->client, &local, NULL) == 0 && local.ss_family &&
        s->env->is_own_upstream(s->env->server, peer, (const struct sockaddr *)&local))
        return true;
    return tcp_leg_original_dst(&s->client, &dst) == 0 &&
           s->env->is_own_upstream(s->env->server, peer, (const struct sockaddr *)&dst);
}

/* -u HOST:PORT that leads back to smtptap (a name for one of its listeners, or a redirect to
 * one): each session's upstream connection would be a new session, until --max-sessions. The
 * start catches a numeric HOST or localhost (server.c); this catches the rest at the first
 * session that came back. True when it ended the session. */
static bool fixed_loop(struct session *s)
{
    if (!comes_from_myself(s)) return false;
    session_emitf(s, EV_ERROR, DIR_S2C,
                  "connection from %s is smtptap's own upstream connection: upstream %s leads "
                  "back to smtptap (one of its listeners, or a redirect to one); point "
                  "--upstream at the real server",
                  s->client_name, s->upstream_name);
    session_local_reply(s, "421 4.3.0 smtptap: loop, upstream %s is smtptap itself",
                        s->upstream_name);
    session_end(s);
    return true;
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
        session_local_reply(s,
                            "421 4.3.0 smtptap: redirect loop, my own connection came back to me");
        session_end(s);
        return;
    }
    int rc = tcp_leg_original_dst(&s->client, &dst);
    if (rc < 0) {
        snprintf(s->upstream_name, sizeof s->upstream_name, "(original destination of %s)",
                 s->local_name);
        session_emitf(
            s, EV_ERROR, DIR_S2C,
            "connection to %s was not redirected (no NAT original destination: %s); "
            "transparent mode needs an nftables/iptables REDIRECT rule, refusing to loop to "
            "myself",
            s->local_name, uv_strerror(rc));
        session_local_reply(s,
                            "421 4.3.0 smtptap: connection to %s was not redirected, transparent "
                            "mode cannot tell the real server",
                            s->local_name);
        session_end(s);
        return;
    }
    sockaddr_format((struct sockaddr *)&dst, s->upstream_name, sizeof s->upstream_name);
    uv_ip_name((struct sockaddr *)&dst, s->client.tls_name, sizeof s->client.tls_name);
    session_arm_timer(s, TIMER_CONNECT, s->cfg->connect_timeout_ms);
    connect_to(s, (struct sockaddr *)&dst);
}

static void connect_sink(struct session *s)
{
    sink_leg_init(&s->up.sink, s->env->loop, &session_upstream_events, s, s->env->host, s->id,
                  s->env->sink_users);
    s->up_kind = UP_SINK;
    s->upstream = &s->up.sink.base;
    s->open_handles++;
    session_start_relaying(s);
}

/* The recorded server where the note lands: a "**" line. */
static void replay_note(void *owner, const char *text)
{
    session_lint(owner, "replay-unmatched", DIR_C2S, -1, "%s", text);
}

static void connect_replay(struct session *s)
{
    replay_leg_init(&s->up.replay, s->env->loop, &session_upstream_events, s, s->env->replay,
                    s->cfg->replay_strict, s->cfg->replay_speed, replay_note);
    s->up_kind = UP_REPLAY;
    s->upstream = &s->up.replay.base;
    s->open_handles++;
    session_start_relaying(s);
}

void session_connect_upstream(struct session *s)
{
    const struct upstream_spec *u = &s->cfg->upstream;
    char started[64]; /* the session's first line says when it began, by the wall clock */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    text_rfc3339((uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u, started,
                 sizeof started);
    switch (u->kind) {
    case UPSTREAM_SINK:
        snprintf(s->upstream_name, sizeof s->upstream_name, "sink (built-in)");
        session_emitf(s, EV_INFO, DIR_NONE, "%s connected to %s, upstream %s, at %s",
                      s->client_name, s->local_name, s->upstream_name, started);
        connect_sink(s);
        return;
    case UPSTREAM_FIXED:
        format_hostport(u->target.host, u->target.port, s->upstream_name, sizeof s->upstream_name);
        session_emitf(s, EV_INFO, DIR_NONE, "%s connected to %s, upstream %s, at %s",
                      s->client_name, s->local_name, s->upstream_name, started);
        if (fixed_loop(s)) return;
        connect_fixed(s, &u->target);
        return;
    case UPSTREAM_REPLAY:
        snprintf(s->upstream_name, sizeof s->upstream_name, "replay of %.250s", u->replay);
        session_emitf(s, EV_INFO, DIR_NONE, "%s connected to %s, upstream %s, at %s",
                      s->client_name, s->local_name, s->upstream_name, started);
        connect_replay(s);
        return;
    case UPSTREAM_TRANSPARENT:
        session_emitf(s, EV_INFO, DIR_NONE, "%s connected to %s, upstream transparent, at %s",
                      s->client_name, s->local_name, started);
        connect_transparent(s);
        return;
    }
}
