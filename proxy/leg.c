/* leg.c - the TCP leg: a libuv stream with a write queue whose size the session watches
 * for backpressure. Writes try the socket first and queue only what it did not take; on a
 * TLS leg the bytes pass through leg_tls.c on their way. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "leg_int.h"
#include "smtptap/upstream.h"

enum { READ_BUFFER = 64 * 1024 };

/* Reads are handled synchronously and every consumer copies what it keeps, so one
 * buffer serves every socket of the loop (the loop runs on one thread). */
static char read_buffer[READ_BUFFER];

struct write_req {
    uv_write_t req;
    size_t len;
    uint8_t bytes[]; /* owned until the write callback */
};

static void tcp_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h, (void)suggested;
    buf->base = read_buffer;
    buf->len = sizeof read_buffer;
}

static void tcp_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct tcp_leg *t = s->data;
    if (nread < 0) t->read_ended = true;
    bool tls = tcp_leg_tls_started(t);
    if (nread > 0 && tls)
        leg_tls_received(t, (const uint8_t *)buf->base, (size_t)nread);
    else if (nread > 0)
        t->base.ev->on_read(&t->base, (const uint8_t *)buf->base, (size_t)nread);
    else if (nread == UV_EOF && tls && !leg_tls_peer_closed(t))
        t->tls_truncated = true, t->base.ev->on_eof(&t->base);
    else if (nread == UV_EOF)
        t->base.ev->on_eof(&t->base);
    else if (nread < 0)
        t->base.ev->on_error(&t->base, (int)nread);
}

static void tcp_read_start(struct leg *l)
{
    struct tcp_leg *t = (struct tcp_leg *)l;
    if (uv_read_start((uv_stream_t *)&t->tcp, tcp_alloc_cb, tcp_read_cb) == 0) l->reading = true;
}

static void tcp_read_stop(struct leg *l)
{
    struct tcp_leg *t = (struct tcp_leg *)l;
    uv_read_stop((uv_stream_t *)&t->tcp);
    l->reading = false;
}

static void tcp_write_cb(uv_write_t *req, int status)
{
    struct write_req *w = (struct write_req *)req;
    struct tcp_leg *t = req->handle->data;
    t->base.queued -= w->len;
    free(w);
    if (status == UV_ECANCELED || t->base.closing) return;
    if (status < 0)
        t->base.ev->on_error(&t->base, status);
    else
        t->base.ev->on_drain(&t->base);
}

static void tcp_write(struct leg *l, const uint8_t *bytes, size_t len)
{
    struct tcp_leg *t = (struct tcp_leg *)l;
    if (tcp_leg_tls_started(t))
        leg_tls_write(t, bytes, len);
    else
        tcp_leg_raw_write(t, bytes, len);
}

void tcp_leg_raw_write(struct tcp_leg *t, const uint8_t *bytes, size_t len)
{
    struct leg *l = &t->base;
    if (len == 0 || l->closing) return;
    if (l->queued == 0) {
        uv_buf_t b = uv_buf_init((char *)bytes, (unsigned)len);
        int n = uv_try_write((uv_stream_t *)&t->tcp, &b, 1);
        if (n > 0) bytes += n, len -= (size_t)n;
        if (len == 0) return;
    }
    struct write_req *w = malloc(sizeof *w + len);
    if (!w) abort();
    memcpy(w->bytes, bytes, len);
    w->len = len;
    uv_buf_t b = uv_buf_init((char *)w->bytes, (unsigned)len);
    l->queued += len;
    int rc = uv_write(&w->req, (uv_stream_t *)&t->tcp, &b, 1, tcp_write_cb);
    if (rc < 0) {
        l->queued -= len;
        free(w);
        l->ev->on_error(l, rc);
    }
}

static void tcp_shutdown_cb(uv_shutdown_t *req, int status)
{
    (void)status;
    struct tcp_leg *t = req->data;
    t->shutdown_done = true;
    if (t->base.ending) leg_close(&t->base);
}

/* Sends FIN once every queued write is done; returns false when that cannot start. */
static bool tcp_start_shutdown(struct tcp_leg *t)
{
    if (t->shut) return true;
    t->shut = true;
    if (tcp_leg_tls_started(t)) leg_tls_close_notify(t);
    t->shutdown_req.data = t;
    if (uv_shutdown(&t->shutdown_req, (uv_stream_t *)&t->tcp, tcp_shutdown_cb) == 0) return true;
    t->shutdown_done = true;
    return false;
}

static void tcp_shutdown(struct leg *l)
{
    tcp_start_shutdown((struct tcp_leg *)l);
}

static void tcp_close_cb(uv_handle_t *h)
{
    struct tcp_leg *t = h->data;
    leg_tls_free(t);
    t->base.ev->on_closed(&t->base);
}

static void tcp_close(struct leg *l)
{
    struct tcp_leg *t = (struct tcp_leg *)l;
    l->reading = false;
    leg_tls_halt(t);
    uv_close((uv_handle_t *)&t->tcp, tcp_close_cb);
}

void tcp_leg_end_now(struct tcp_leg *t)
{
    /* Cleared only after: a TLS failure while what was owed goes out still finds the owner
     * gone (leg_tls.c closes the leg rather than report it). */
    t->base.ops->end(&t->base);
    t->end_after_handshake = false;
}

static void tcp_end(struct leg *l)
{
    struct tcp_leg *t = (struct tcp_leg *)l;
    if (leg_tls_end_waits_for_handshake(t)) {
        /* What is queued (a 421, say) needs the handshake: read on until it is done
         * (leg_tls.c ends the leg then) or fails; the owner's linger timer bounds it. */
        t->end_after_handshake = true;
        if (!l->reading) tcp_read_start(l);
        return;
    }
    uv_read_stop((uv_stream_t *)&t->tcp);
    l->reading = false;
    /* A socket still connecting would hold a shutdown until the connect ends: close it. */
    if (!t->connected || !tcp_start_shutdown(t) || t->shutdown_done) leg_close(l);
    /* else tcp_shutdown_cb closes once the queue is flushed */
}

static const struct leg_ops tcp_ops = {tcp_read_start, tcp_read_stop, tcp_write,
                                       tcp_shutdown,   tcp_end,       tcp_close};

void tcp_leg_init(struct tcp_leg *t, uv_loop_t *loop, const struct leg_events *ev, void *owner)
{
    memset(t, 0, sizeof *t);
    t->base.ops = &tcp_ops;
    t->base.ev = ev;
    t->base.owner = owner;
    uv_tcp_init(loop, &t->tcp);
    t->tcp.data = t;
}

static void tcp_connect_cb(uv_connect_t *req, int status)
{
    struct tcp_leg *t = req->data;
    if (status == UV_ECANCELED || t->base.closing) return;
    if (status == 0) {
        t->connected = true;
        uv_tcp_nodelay(&t->tcp, 1);
    }
    t->on_connect(t, status);
}

void tcp_leg_reset(struct tcp_leg *t)
{
    if (t->base.closing) return;
    t->base.closing = true;
    t->base.reading = false;
    leg_tls_halt(t);
    if (uv_tcp_close_reset(&t->tcp, tcp_close_cb) < 0)
        uv_close((uv_handle_t *)&t->tcp, tcp_close_cb);
}

int tcp_leg_accept(struct tcp_leg *t, uv_stream_t *server)
{
    int rc = uv_accept(server, (uv_stream_t *)&t->tcp);
    if (rc == 0) {
        t->connected = true;
        uv_tcp_nodelay(&t->tcp, 1);
    }
    return rc;
}

int tcp_leg_connect(struct tcp_leg *t, const struct sockaddr *addr,
                    void (*on_connect)(struct tcp_leg *t, int status))
{
    t->on_connect = on_connect;
    t->connect_req.data = t;
    return uv_tcp_connect(&t->connect_req, &t->tcp, addr, tcp_connect_cb);
}

int tcp_leg_addresses(const struct tcp_leg *t, struct sockaddr_storage *local,
                      struct sockaddr_storage *peer)
{
    int rc = 0, len;
    if (local) {
        memset(local, 0, sizeof *local);
        len = sizeof *local;
        rc = uv_tcp_getsockname(&t->tcp, (struct sockaddr *)local, &len);
    }
    if (peer) {
        memset(peer, 0, sizeof *peer);
        len = sizeof *peer;
        int prc = uv_tcp_getpeername(&t->tcp, (struct sockaddr *)peer, &len);
        if (rc == 0) rc = prc;
    }
    return rc;
}

int tcp_leg_original_dst(const struct tcp_leg *t, struct sockaddr_storage *dst)
{
    return upstream_original_dst((uv_tcp_t *)&t->tcp, dst); /* reads the socket, changes nothing */
}

void sockaddr_format(const struct sockaddr *sa, char *out, size_t size)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, ip, sizeof ip);
        port = ntohs(in->sin_port);
        snprintf(out, size, "%s:%u", ip, port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof ip);
        port = ntohs(in6->sin6_port);
        snprintf(out, size, "[%s]:%u", ip, port);
    } else {
        snprintf(out, size, "?");
    }
}
