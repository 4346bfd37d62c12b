/* listener.c - binds each listen address and hands new connections to sessions; refuses
 * connections over --max-sessions with a 421 of its own. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtptap/leg.h"
#include "smtptap/server.h"

struct refusal {
    uv_tcp_t tcp;
    uv_write_t write;
    uv_shutdown_t shutdown;
    char text[200];
};

static void refusal_closed_cb(uv_handle_t *h)
{
    free(h->data);
}

static void refusal_shutdown_cb(uv_shutdown_t *req, int status)
{
    (void)status;
    struct refusal *r = req->data;
    uv_close((uv_handle_t *)&r->tcp, refusal_closed_cb);
}

static void refusal_written_cb(uv_write_t *req, int status)
{
    struct refusal *r = req->data;
    r->shutdown.data = r;
    if (status < 0 || uv_shutdown(&r->shutdown, (uv_stream_t *)&r->tcp, refusal_shutdown_cb) < 0)
        uv_close((uv_handle_t *)&r->tcp, refusal_closed_cb);
}

/* Accepts the connection only to say 421 and close. */
static void refuse_connection(struct listener *l)
{
    struct server *srv = l->server;
    struct refusal *r = calloc(1, sizeof *r);
    if (!r) abort();
    uv_tcp_init(srv->loop, &r->tcp);
    r->tcp.data = r;
    if (uv_accept((uv_stream_t *)&l->tcp, (uv_stream_t *)&r->tcp) < 0) {
        uv_close((uv_handle_t *)&r->tcp, refusal_closed_cb);
        return;
    }
    const char *why = srv->stopping ? "shutting down" : "too many sessions";
    snprintf(r->text, sizeof r->text, "421 4.3.2 smtptap: %s, try again later\r\n", why);
    if (!srv->stopping && !srv->cfg->quiet)
        fprintf(stderr, "smtptap: refused a connection on %s: %s (--max-sessions %llu)\n", l->bound,
                why, (unsigned long long)srv->cfg->max_sessions);
    uv_buf_t b = uv_buf_init(r->text, (unsigned)strlen(r->text));
    r->write.data = r;
    if (uv_write(&r->write, (uv_stream_t *)&r->tcp, &b, 1, refusal_written_cb) < 0)
        uv_close((uv_handle_t *)&r->tcp, refusal_closed_cb);
}

static void on_connection(uv_stream_t *stream, int status)
{
    struct listener *l = stream->data;
    struct server *srv = l->server;
    if (status < 0) {
        if (!srv->cfg->quiet)
            fprintf(stderr, "smtptap: accept on %s failed: %s\n", l->bound, uv_strerror(status));
        return;
    }
    if (srv->stopping || srv->nsessions >= srv->cfg->max_sessions) {
        refuse_connection(l);
        return;
    }
    server_accept(srv, l);
}

int listener_open(struct server *srv, struct listener *l, const struct listen_spec *spec, char *err,
                  size_t err_size)
{
    struct sockaddr_storage sa;
    memset(l, 0, sizeof *l);
    l->server = srv;
    l->spec = *spec;
    char want[300];
    format_hostport(spec->addr.host, spec->addr.port, want, sizeof want);
    int rc = uv_ip4_addr(spec->addr.host, spec->addr.port, (struct sockaddr_in *)&sa);
    if (rc < 0) rc = uv_ip6_addr(spec->addr.host, spec->addr.port, (struct sockaddr_in6 *)&sa);
    uv_tcp_init(srv->loop, &l->tcp);
    l->tcp.data = l;
    unsigned flags = sa.ss_family == AF_INET6 ? UV_TCP_IPV6ONLY : 0;
    if (rc == 0) rc = uv_tcp_bind(&l->tcp, (struct sockaddr *)&sa, flags);
    if (rc == 0) rc = uv_listen((uv_stream_t *)&l->tcp, 511, on_connection);
    if (rc < 0) {
        snprintf(err, err_size, "--listen %s: cannot listen: %s", want, uv_strerror(rc));
        uv_close((uv_handle_t *)&l->tcp, NULL);
        return rc;
    }
    int len = sizeof sa;
    uv_tcp_getsockname(&l->tcp, (struct sockaddr *)&sa, &len);
    sockaddr_format((struct sockaddr *)&sa, l->bound, sizeof l->bound);
    return 0;
}

void listener_close(struct listener *l)
{
    if (!uv_is_closing((uv_handle_t *)&l->tcp)) uv_close((uv_handle_t *)&l->tcp, NULL);
}
