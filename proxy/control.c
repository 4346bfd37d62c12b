/* control.c - the control API's HTTP side: libh2o (its libuv build) on the proxy's loop. It
 * listens, accepts and counts connections, checks the token and where a request comes from,
 * serves the web page's files and hands API routes to control_api.c and control_sse.c. It
 * also takes the sessions' events (control_events) into the store and the event streams.
 *
 * libh2o because it runs on a libuv loop as it is (h2o_uv_socket_create), parses HTTP/1.1
 * (picohttpparser) with its own limits on request lines, headers and bodies, and is in
 * Debian; libmicrohttpd would need its own threads or polling beside the loop, and
 * libwebsockets' libuv support is an event-library plugin with more to configure for less. */
#include "control_int.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "smtptap/leg.h"
#include "smtptap/parse.h"
#include "smtptap/web_assets.h"

struct control_conn {
    uv_tcp_t tcp; /* first: h2o's close callback gets this handle */
    struct control *c;
    struct control_conn *prev, *next;
};

/* ---- responses ---------------------------------------------------------------------------- */

static void add_header(h2o_req_t *req, const h2o_token_t *token, const char *value)
{
    h2o_add_header(&req->pool, &req->res.headers, token, NULL, value, strlen(value));
}

void control_respond(h2o_req_t *req, int status, const char *reason, const char *content_type,
                     const char *body, size_t len)
{
    req->res.status = status;
    req->res.reason = reason;
    req->res.content_length = len;
    add_header(req, H2O_TOKEN_CONTENT_TYPE, content_type);
    add_header(req, H2O_TOKEN_CACHE_CONTROL, "no-store");
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-content-type-options"), 0,
                          NULL, H2O_STRLIT("nosniff"));
    h2o_send_inline(req, body, len);
}

void control_respond_json(h2o_req_t *req, int status, const char *reason, json_t *j)
{
    char *text = j ? json_dumps(j, CONTROL_JSON_FLAGS) : NULL;
    json_decref(j);
    if (!text) {
        static const char oom[] = "{\"error\":\"out of memory\"}";
        control_respond(req, 500, "Internal Server Error", "application/json", oom, sizeof oom - 1);
        return;
    }
    size_t n = strlen(text);
    char *body = h2o_mem_alloc_pool(&req->pool, n + 1);
    memcpy(body, text, n);
    body[n] = '\n';
    free(text);
    control_respond(req, status, reason, "application/json", body, n + 1);
}

void control_respond_error(h2o_req_t *req, int status, const char *reason, const char *text)
{
    control_respond_json(req, status, reason, json_pack("{s:s}", "error", text));
}

int control_request_fd(h2o_req_t *req)
{
    h2o_socket_t *sock =
        req->conn->callbacks->get_socket ? req->conn->callbacks->get_socket(req->conn) : NULL;
    return sock ? h2o_socket_get_fd(sock) : -1;
}

void control_abort_connection(h2o_req_t *req)
{
    int fd = control_request_fd(req);
    if (fd >= 0) shutdown(fd, SHUT_RDWR);
}

/* ---- who may ask ---------------------------------------------------------------------------- */

static const h2o_header_t *header(const h2o_req_t *req, const h2o_token_t *token)
{
    ssize_t i = h2o_find_header(&req->headers, token, -1);
    return i < 0 ? NULL : &req->headers.entries[i];
}

static bool token_matches(const char *want, const char *got, size_t got_len)
{
    size_t n = strlen(want);
    return got_len == n && CRYPTO_memcmp(want, got, n) == 0;
}

static const char token_cookie[] = "smtptap_token";

enum how_authorized { NOT_AUTHORIZED, NO_TOKEN_SET, BY_HEADER, BY_QUERY, BY_COOKIE };

/* The token, from the Authorization header, ?access_token= (RFC 6750 2.1, 2.3) or the cookie
 * the page got when it was opened with ?access_token= (a browser sends no header of its own
 * with the page's script, style sheet and event stream; the cookie is SameSite=Strict). */
static enum how_authorized authorized(const struct control *c, const h2o_req_t *req,
                                      const struct control_request *r)
{
    const char *want = c->cfg->control_token;
    if (!want[0]) return NO_TOKEN_SET;
    const h2o_header_t *h = header(req, H2O_TOKEN_AUTHORIZATION);
    if (h && h->value.len > 7 && strncasecmp(h->value.base, "Bearer ", 7) == 0)
        return token_matches(want, h->value.base + 7, h->value.len - 7) ? BY_HEADER
                                                                        : NOT_AUTHORIZED;
    if (r->token[0])
        return token_matches(want, r->token, strlen(r->token)) ? BY_QUERY : NOT_AUTHORIZED;
    const h2o_header_t *cookie = header(req, H2O_TOKEN_COOKIE);
    const char *v;
    size_t n;
    if (cookie &&
        control_cookie_value(cookie->value.base, cookie->value.len, token_cookie, &v, &n) &&
        token_matches(want, v, n))
        return BY_COOKIE;
    return NOT_AUTHORIZED;
}

/* A browser page of another site must not drive the API (a cross-site POST), nor reach it
 * through a name it rebinds to 127.0.0.1: the Origin, when sent, is this very host, and
 * without a token the Host is an address (or localhost), not some site's name. */
static const char *refused_origin(const struct control *c, const h2o_req_t *req)
{
    const h2o_iovec_t host = req->input.authority;
    bool browser_like = req->version >= 0x101; /* HTTP/1.0 (no Host needed): not a browser */
    if (!c->cfg->control_token[0] && browser_like) {
        if (!control_host_is_local_name(host.base, host.len))
            return "the Host header names neither an address nor localhost (DNS rebinding?); "
                   "use the address smtptap listens on, or set --control-token";
    }
    ssize_t at = h2o_find_header_by_str(&req->headers, H2O_STRLIT("origin"), -1);
    if (at < 0) return NULL;
    const h2o_header_t *o = &req->headers.entries[at];
    static const char http[] = "http://";
    if (o->value.len == host.len + sizeof http - 1 &&
        memcmp(o->value.base, http, sizeof http - 1) == 0 &&
        strncasecmp(o->value.base + sizeof http - 1, host.base, host.len) == 0)
        return NULL;
    return "a request from a page of another origin; the control API answers its own page only";
}

/* ---- requests ------------------------------------------------------------------------------- */

static struct control *control_of_req(h2o_req_t *req)
{
    return (struct control *)((char *)req->conn->ctx - offsetof(struct control, ctx));
}

static void serve_asset(const struct control *c, h2o_req_t *req, enum how_authorized how)
{
    const struct web_asset *a = web_asset_find(req->path_normalized.base, req->path_normalized.len);
    if (!a) {
        control_respond_error(req, 404, "Not Found", "no such page; the web page is at /");
        return;
    }
    static const char csp[] =
        "default-src 'self'; img-src 'self' data:; object-src 'none'; frame-ancestors 'none'";
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("content-security-policy"), 0,
                          NULL, csp, sizeof csp - 1);
    if (how == BY_QUERY) { /* the page's own requests carry it from now on */
        char cookie[400];
        int n = snprintf(cookie, sizeof cookie, "%s=%s; Path=/; HttpOnly; SameSite=Strict",
                         token_cookie, c->cfg->control_token);
        add_header(req, H2O_TOKEN_SET_COOKIE, h2o_strdup(&req->pool, cookie, (size_t)n).base);
    }
    control_respond(req, 200, "OK", a->content_type, (const char *)a->data, a->len);
}

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
    (void)self;
    struct control *c = control_of_req(req);
    struct control_request r;
    control_request_parse(req->method.base, req->method.len, req->path.base, req->path.len, &r);
    enum how_authorized how = authorized(c, req, &r);
    if (how == NOT_AUTHORIZED) {
        add_header(req, H2O_TOKEN_WWW_AUTHENTICATE, "Bearer realm=\"smtptap\"");
        control_respond_error(req, 401, "Unauthorized",
                              "a token is needed: Authorization: Bearer TOKEN");
        return 0;
    }
    const char *refused = refused_origin(c, req);
    if (refused) {
        control_respond_error(req, 403, "Forbidden", refused);
        return 0;
    }
    if (r.route == ROUTE_NONE) {
        control_respond_error(req, 404, "Not Found",
                              "no such route; README \"Control API\" lists them");
        return 0;
    }
    if (!r.method_ok) {
        add_header(req, H2O_TOKEN_ALLOW, r.allow);
        char text[96];
        snprintf(text, sizeof text, "method %.*s not allowed here; expected %s",
                 (int)(req->method.len < 16 ? req->method.len : 16), req->method.base, r.allow);
        control_respond_error(req, 405, "Method Not Allowed", text);
        return 0;
    }
    if (r.bad) {
        control_respond_error(req, 400, "Bad Request", r.bad);
        return 0;
    }
    if (r.route == ROUTE_ASSET) {
        serve_asset(c, req, how);
        return 0;
    }
    if (r.route == ROUTE_EVENTS) return control_sse_open(c, req, &r);
    control_api_dispatch(c, req, &r);
    return 0;
}

/* ---- connections ------------------------------------------------------------------------------
 */

static void maybe_finish(struct control *c);

static void conn_closed(uv_handle_t *h)
{
    struct control_conn *k = (struct control_conn *)h;
    struct control *c = k->c;
    if (k->prev)
        k->prev->next = k->next;
    else
        c->conns = k->next;
    if (k->next) k->next->prev = k->prev;
    c->nconns--;
    free(k);
    maybe_finish(c);
}

static void refused_closed(uv_handle_t *h)
{
    free(h);
}

static void on_connection(uv_stream_t *listener, int status)
{
    struct control *c = listener->data;
    if (status < 0 || c->stopping) return;
    struct control_conn *k = calloc(1, sizeof *k);
    if (!k) abort();
    uv_tcp_init(c->loop, &k->tcp);
    if (uv_accept(listener, (uv_stream_t *)&k->tcp) != 0 || c->nconns >= CONTROL_MAX_CONNECTIONS) {
        uv_close((uv_handle_t *)&k->tcp, refused_closed); /* too many: closed at once */
        return;
    }
    k->c = c;
    k->next = c->conns;
    if (c->conns) c->conns->prev = k;
    c->conns = k;
    c->nconns++;
    h2o_socket_t *sock = h2o_uv_socket_create((uv_stream_t *)&k->tcp, conn_closed);
    h2o_accept(&c->accept_ctx, sock);
}

/* ---- events from the sessions -------------------------------------------------------------------
 */

static void on_event(struct event_writer *w, const struct event *ev)
{
    struct control *c = (struct control *)w;
    if (ev->kind == EV_FAULT) control_count_fired(c, ev);
    struct control_session *s = control_store_event(&c->store, ev);
    if (c->nstreams) control_sse_event(c, ev, s);
}

static void on_events_close(struct event_writer *w)
{
    (void)w; /* the control owns itself: control_stop */
}

static void flush_cb(uv_timer_t *h)
{
    control_sse_flush(h->data);
}

void control_sse_flush_later(struct control *c)
{
    if (!c->stopping) uv_timer_start(&c->flush, flush_cb, CONTROL_FLUSH_MS, 0);
}

static void ping_cb(uv_timer_t *t)
{
    struct control *c = t->data;
    c->ticks++;
    control_sse_tick(c, c->ticks % (CONTROL_PING_MS / CONTROL_TICK_MS) == 0);
}

/* ---- start and stop
 * --------------------------------------------------------------------------------- */

static void free_unstarted(uv_handle_t *h)
{
    struct control *c = h->data;
    control_store_free(&c->store);
    free(c);
}

struct control *control_start(uv_loop_t *loop, const struct config *cfg,
                              const struct control_host *host, char *bound, size_t bound_size,
                              char *err, size_t err_size)
{
    struct control *c = calloc(1, sizeof *c);
    if (!c) abort();
    c->events.write = on_event;
    c->events.close = on_events_close;
    c->loop = loop;
    c->cfg = cfg;
    c->host = *host;
    c->started_ns = uv_hrtime();
    control_store_init(&c->store, cfg->control_recent, cfg->verbosity > 0);

    struct sockaddr_storage addr;
    int rc = uv_ip4_addr(cfg->control.host, cfg->control.port, (struct sockaddr_in *)&addr);
    if (rc) rc = uv_ip6_addr(cfg->control.host, cfg->control.port, (struct sockaddr_in6 *)&addr);
    char at[HOST_MAX + 16];
    format_hostport(cfg->control.host, cfg->control.port, at, sizeof at);
    if (rc) {
        snprintf(err, err_size, "--control %s: not a numeric address", at);
        control_store_free(&c->store);
        free(c);
        return NULL;
    }
    uv_tcp_init(loop, &c->listener);
    c->listener.data = c;
    rc = uv_tcp_bind(&c->listener, (struct sockaddr *)&addr, 0);
    if (!rc) rc = uv_listen((uv_stream_t *)&c->listener, 128, on_connection);
    if (rc) {
        snprintf(err, err_size, "--control %s: cannot listen: %s", at, uv_strerror(rc));
        uv_close((uv_handle_t *)&c->listener, free_unstarted); /* the loop runs on to exit */
        return NULL;
    }
    c->listening = true;
    struct sockaddr_storage name;
    int len = sizeof name;
    uv_tcp_getsockname(&c->listener, (struct sockaddr *)&name, &len);
    sockaddr_format((struct sockaddr *)&name, bound, bound_size);

    h2o_config_init(&c->config);
    c->config.max_request_entity_size = CONTROL_BODY_MAX;
    h2o_hostconf_t *hc =
        h2o_config_register_host(&c->config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_pathconf_t *pc = h2o_config_register_path(hc, "/", 0);
    h2o_handler_t *handler = h2o_create_handler(pc, sizeof *handler);
    handler->on_req = on_req;
    h2o_context_init(&c->ctx, loop, &c->config);
    c->accept_ctx.ctx = &c->ctx;
    c->accept_ctx.hosts = c->config.hosts;
    uv_timer_init(loop, &c->ping);
    c->ping.data = c;
    uv_timer_start(&c->ping, ping_cb, CONTROL_TICK_MS, CONTROL_TICK_MS);
    uv_timer_init(loop, &c->flush);
    c->flush.data = c;
    return c;
}

struct event_writer *control_events(struct control *c)
{
    return &c->events;
}

/* Every connection is closed: h2o's context goes (its own handles close with the loop). */
static void maybe_finish(struct control *c)
{
    if (!c->stopping || c->nconns || c->ctx_disposed) return;
    c->ctx_disposed = true;
    h2o_context_dispose(&c->ctx);
}

void control_stop(struct control *c)
{
    if (c->stopping) return;
    c->stopping = true;
    uv_close((uv_handle_t *)&c->listener, NULL);
    uv_close((uv_handle_t *)&c->ping, NULL);
    uv_close((uv_handle_t *)&c->flush, NULL);
    control_sse_close_all(c);
    /* Not h2o_context_request_shutdown: its timer would outlive the connections closed
     * here, and h2o_context_dispose requires none left. */
    for (struct control_conn *k = c->conns; k; k = k->next) {
        uv_os_fd_t fd;
        if (uv_fileno((uv_handle_t *)&k->tcp, &fd) == 0) shutdown(fd, SHUT_RDWR);
    }
    maybe_finish(c);
}

void control_free(struct control *c)
{
    if (!c) return;
    h2o_config_dispose(&c->config);
    control_store_free(&c->store);
    free(c->fired);
    free(c);
}
