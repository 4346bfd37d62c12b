/* server.c - the running proxy: opens listeners, owns the live transcript, tracks sessions
 * and shuts down gracefully on SIGINT/SIGTERM (stop accepting, let sessions finish for a
 * grace period, then close them with a 421). */
#include "smtptap/server.h"

#include <assert.h>
#include <errno.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "smtptap/capture.h"
#include "smtptap/capture_read.h"
#include "smtptap/control.h"
#include "smtptap/heap_trim.h"
#include "smtptap/leg.h"
#include "smtptap/text.h"
#include "smtptap/upstream.h"
#include "smtptap/watch_writer.h"
#include "smtptap/writer_thread.h"

enum { EXIT_UNAVAILABLE = 69, FORCE_AFTER_MS = 2000 };
/* How far the writer thread may fall behind before the loop waits for it. */
enum { WRITERS_MAX_BEHIND = 64 * 1024 * 1024 };

/* The writer thread has written everything (every session has ended) and is gone. */
static void stop_writers(struct server *srv)
{
    if (!srv->env.writers) return;
    writer_thread_stop(srv->env.writers);
    srv->env.writers = NULL;
}

static void finish_shutdown(struct server *srv)
{
    stop_writers(srv);
    if (srv->control) control_stop(srv->control);
    uv_close((uv_handle_t *)&srv->sigint, NULL);
    uv_close((uv_handle_t *)&srv->sigterm, NULL);
    uv_close((uv_handle_t *)&srv->sighup, NULL);
    uv_close((uv_handle_t *)&srv->grace, NULL);
    uv_close((uv_handle_t *)&srv->flush, NULL);
    /* Closing the watchers restored the default action; a late signal must not kill the
     * process while it flushes and exits 0. */
    signal(SIGINT, SIG_IGN);
    signal(SIGTERM, SIG_IGN);
}

/* After a burst of sessions (10,000 idle TLS sessions hold 430 MiB) the freed heap stays
 * with the process unless it is handed back (heap_trim.h says when). Rare by construction,
 * so its cost does not matter. */
static void give_memory_back(struct server *srv)
{
    if (!heap_trim_due(&srv->heap_trim, srv->nsessions)) return;
#ifdef __GLIBC__
    malloc_trim(0);
#endif
}

/* A session and the links of the server's list; the session's bytes follow (session.h:
 * the server allocates them, session_size() of them). */
struct session_slot {
    struct session_slot *prev, *next;
    _Alignas(max_align_t) unsigned char session[];
};

static struct session *session_of(struct session_slot *slot)
{
    return (struct session *)slot->session;
}

static struct session_slot *slot_of(struct session *s)
{
    return (struct session_slot *)((unsigned char *)s - offsetof(struct session_slot, session));
}

/* session_env.closed: every handle of the session is closed. */
static void session_closed(void *server, struct session *s)
{
    struct server *srv = server;
    struct session_slot *slot = slot_of(s);
    fault_book_session_ended(&srv->faults, session_id(s));
    if (slot->prev)
        slot->prev->next = slot->next;
    else
        srv->sessions = slot->next;
    if (slot->next) slot->next->prev = slot->prev;
    free(slot);
    assert(srv->nsessions > 0);
    srv->nsessions--;
    give_memory_back(srv);
    if (srv->stopping && srv->nsessions == 0) finish_shutdown(srv);
}

/* session_env.is_own_upstream: a redirect that loops back to smtptap. */
static bool is_own_upstream(void *server, const struct sockaddr *peer, const struct sockaddr *dst)
{
    struct server *srv = server;
    for (struct session_slot *slot = srv->sessions; slot; slot = slot->next) {
        const struct session *s = session_of(slot);
        const struct sockaddr_storage *local = session_upstream_local(s);
        if (!local->ss_family || !sockaddr_equal((const struct sockaddr *)local, peer)) continue;
        if (!dst) return true;
        const struct sockaddr_storage *went = session_upstream_peer(s);
        if (went->ss_family && sockaddr_equal((const struct sockaddr *)went, dst)) return true;
    }
    return false;
}

void server_accept(struct server *srv, struct listener *l)
{
    struct session_slot *slot = calloc(1, sizeof *slot + session_size());
    if (!slot) abort();
    slot->next = srv->sessions;
    if (srv->sessions) srv->sessions->prev = slot;
    srv->sessions = slot;
    srv->nsessions++;
    session_start(session_of(slot), &srv->env, ++srv->next_id, (uv_stream_t *)&l->tcp,
                  l->spec.implicit_tls);
}

static void stop_sessions(struct server *srv, bool force)
{
    for (struct session_slot *slot = srv->sessions; slot; slot = slot->next)
        session_stop(session_of(slot), force);
}

static void grace_cb(uv_timer_t *t)
{
    struct server *srv = t->data;
    bool force = srv->grace_expired;
    srv->grace_expired = true;
    stop_sessions(srv, force);
    if (!force) uv_timer_start(&srv->grace, grace_cb, FORCE_AFTER_MS, 0);
}

static void begin_shutdown(struct server *srv, int signum)
{
    if (srv->stopping) {
        /* A second signal: do not wait any longer. */
        srv->grace_expired = true;
        stop_sessions(srv, false);
        stop_sessions(srv, true);
        return;
    }
    srv->stopping = true;
    char grace[32];
    format_duration(srv->cfg->grace_ms, grace, sizeof grace);
    if (!srv->cfg->quiet && srv->nsessions == 0)
        fprintf(stderr, "smtptap: %s received: no new sessions; none running\n", strsignal(signum));
    else if (!srv->cfg->quiet)
        fprintf(stderr,
                "smtptap: %s received: no new sessions; %llu running session%s %s %s to "
                "finish\n",
                strsignal(signum), (unsigned long long)srv->nsessions,
                srv->nsessions == 1 ? "" : "s", srv->nsessions == 1 ? "gets" : "get", grace);
    for (unsigned i = 0; i < srv->nlisteners; i++) listener_close(&srv->listeners[i]);
    if (srv->nsessions == 0) {
        finish_shutdown(srv);
        return;
    }
    uv_timer_start(&srv->grace, grace_cb, srv->cfg->grace_ms, 0);
}

static void signal_cb(uv_signal_t *h, int signum)
{
    begin_shutdown(h->data, signum);
}

static void flush_cb(uv_check_t *h)
{
    (void)h;
    fflush(stderr);
}

static bool want_color(const struct config *cfg)
{
    if (cfg->color != COLOR_AUTO) return cfg->color == COLOR_ALWAYS;
    const char *no_color = getenv("NO_COLOR");
    if (no_color && *no_color) return false;
    return isatty(STDERR_FILENO);
}

static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/* A listener that other hosts can reach turns smtptap into a relay from this host's address
 * and writes what strangers send into the transcript: said at every start, on purpose with
 * no switch to silence it (-q does not). */
static void warn_if_exposed(const struct server *srv, const struct listener *l)
{
    if (is_loopback_address(l->spec.addr.host)) return;
    const struct upstream_spec *u = &srv->cfg->upstream;
    char what[400], up[300];
    if (u->kind == UPSTREAM_SINK || u->kind == UPSTREAM_REPLAY) {
        snprintf(what, sizeof what, "send mail to smtptap's %s",
                 u->kind == UPSTREAM_SINK ? "built-in sink" : "replay of a recorded server");
    } else if (u->kind == UPSTREAM_TRANSPARENT) {
        snprintf(what, sizeof what,
                 "relay mail through smtptap, from this host's address, to where each "
                 "redirected connection was going");
    } else {
        format_hostport(u->target.host, u->target.port, up, sizeof up);
        snprintf(what, sizeof what, "relay mail through smtptap to %s, from this host's address",
                 up);
    }
    const char *cap = srv->cfg->capture_dir;
    const char *live = !srv->cfg->quiet ? "this transcript" : "";
    const char *files = !cap[0]                 ? ""
                        : strcmp(cap, "-") == 0 ? "the jsonl on stdout"
                                                : "the capture files";
    char where[200] = "";
    if (*live || *files)
        snprintf(where, sizeof where,
                 ", and what they send (credentials too, unless --redact) goes into %s%s%s", live,
                 *live && *files ? " and " : "", files);
    fprintf(stderr,
            "smtptap: warning: %s is not a loopback address: anyone who can reach it can %s%s. "
            "If that is not intended, listen on 127.0.0.1 or [::1]; if it is, let a firewall "
            "decide who reaches it (this warning has no switch)\n",
            l->bound, what, where);
}

/* ---- an upstream that is smtptap itself ------------------------------------------------- */

/* An address of this host: loopback, or one of its interfaces' addresses. */
static bool is_local_address(const struct sockaddr *a)
{
    char host[64];
    if (uv_ip_name(a, host, sizeof host) == 0 && is_loopback_address(host)) return true;
    uv_interface_address_t *ifs;
    int n;
    if (uv_interface_addresses(&ifs, &n) < 0) return false;
    bool found = false;
    for (int i = 0; i < n && !found; i++) {
        struct sockaddr_storage x;
        memset(&x, 0, sizeof x);
        memcpy(&x, &ifs[i].address,
               a->sa_family == AF_INET6 ? sizeof ifs[i].address.address6
                                        : sizeof ifs[i].address.address4);
        if (x.ss_family != a->sa_family) continue;
        if (a->sa_family == AF_INET) /* the port is the target's: only the address counts */
            ((struct sockaddr_in *)&x)->sin_port = ((const struct sockaddr_in *)a)->sin_port;
        else
            ((struct sockaddr_in6 *)&x)->sin6_port = ((const struct sockaddr_in6 *)a)->sin6_port;
        found = sockaddr_equal((struct sockaddr *)&x, a);
    }
    uv_free_interface_addresses(ifs, n);
    return found;
}

/* Would a connection to `target` reach listener l? Its own address and port, or its port on
 * any address of this host when l listens on the wildcard address. */
static bool reaches_listener(const struct listener *l, const struct sockaddr *target)
{
    struct sockaddr_storage la;
    int len = sizeof la;
    memset(&la, 0, sizeof la);
    if (uv_tcp_getsockname(&l->tcp, (struct sockaddr *)&la, &len) < 0 ||
        la.ss_family != target->sa_family)
        return false;
    if (sockaddr_equal((struct sockaddr *)&la, target)) return true;
    if (la.ss_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)&la, *t = (const void *)target;
        return x->sin_port == t->sin_port && x->sin_addr.s_addr == htonl(INADDR_ANY) &&
               is_local_address(target);
    }
    const struct sockaddr_in6 *x = (const void *)&la, *t = (const void *)target;
    return x->sin6_port == t->sin6_port &&
           memcmp(&x->sin6_addr, &in6addr_any, sizeof in6addr_any) == 0 && is_local_address(target);
}

/* -u 127.0.0.1:2577 -l 127.0.0.1:2577: every session would connect to smtptap again, and
 * that one again, until --max-sessions. Told at start for a numeric upstream or localhost (a
 * name would need resolving; sessions catch those: session_connect.c). */
static int refuse_own_listener(const struct server *srv)
{
    const struct upstream_spec *u = &srv->cfg->upstream;
    if (u->kind != UPSTREAM_FIXED) return 0;
    struct sockaddr_storage targets[2];
    int n = 0;
    if (sockaddr_from_numeric(u->target.host, u->target.port, &targets[0]))
        n = 1;
    else if (strcasecmp(u->target.host, "localhost") == 0) {
        sockaddr_from_numeric("127.0.0.1", u->target.port, &targets[n++]);
        sockaddr_from_numeric("::1", u->target.port, &targets[n++]);
    }
    for (int i = 0; i < n; i++)
        for (unsigned j = 0; j < srv->nlisteners; j++) {
            if (!reaches_listener(&srv->listeners[j], (struct sockaddr *)&targets[i])) continue;
            char up[300];
            format_hostport(u->target.host, u->target.port, up, sizeof up);
            fprintf(stderr,
                    "smtptap: --upstream %s is smtptap's own listener %s: every session would "
                    "connect to smtptap again, and that one again, until --max-sessions; point "
                    "--upstream at the real server (or leave it out for the built-in sink)\n",
                    up, srv->listeners[j].bound);
            return EXIT_CONFIG;
        }
    return 0;
}

/* -u smtp.example.com: the port smtptap picked is said, with the rule. */
static void say_default_port(const struct upstream_spec *u)
{
    if (u->kind != UPSTREAM_FIXED || !u->port_defaulted) return;
    const char *prefix = u->tls == TLS_IMPLICIT   ? "tls:"
                         : u->tls == TLS_STARTTLS ? "starttls:"
                         : u->tls == TLS_NONE     ? "plain:"
                                                  : "";
    bool v6 = strchr(u->target.host, ':') != NULL;
    char spec[HOST_MAX + 16];
    snprintf(spec, sizeof spec, "%s%s%s%s", prefix, v6 ? "[" : "", u->target.host, v6 ? "]" : "");
    fprintf(stderr,
            "smtptap: upstream \"%s\" names no port: using %u (without a port: 25, or 587 with "
            "starttls:, 465 with tls:); write %s:PORT for another\n",
            spec, (unsigned)u->target.port, spec);
}

/* ", capture files in /abs/dir (text, jsonl)" or ", jsonl on stdout" for the listening line;
 * "" without -d. */
static void capture_words(const struct config *cfg, char *out, size_t size)
{
    out[0] = 0;
    if (!cfg->capture_dir[0]) return;
    if (strcmp(cfg->capture_dir, "-") == 0) {
        snprintf(out, size, ", jsonl on stdout");
        return;
    }
    static const struct {
        unsigned bit;
        const char *name;
    } formats[] = {
        {FORMAT_TEXT, "text"}, {FORMAT_JSONL, "jsonl"}, {FORMAT_PCAP, "pcap"}, {FORMAT_EML, "eml"}};
    char names[64] = "";
    for (size_t i = 0; i < sizeof formats / sizeof formats[0]; i++)
        if (cfg->formats & formats[i].bit)
            snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s",
                     names[0] ? ", " : "", formats[i].name);
    char *abs = realpath(cfg->capture_dir, NULL); /* made by prepare_capture: it exists */
    snprintf(out, size, ", capture files in %s (%s)", abs ? abs : cfg->capture_dir, names);
    free(abs);
}

static int open_listeners(struct server *srv)
{
    char err[512], up[320], cap[4200];
    const struct upstream_spec *u = &srv->cfg->upstream;
    if (u->kind == UPSTREAM_SINK)
        snprintf(up, sizeof up, "sink (built-in)");
    else if (u->kind == UPSTREAM_TRANSPARENT)
        snprintf(up, sizeof up, "transparent");
    else if (u->kind == UPSTREAM_REPLAY)
        snprintf(up, sizeof up, "replay of %.280s", u->replay);
    else
        format_hostport(u->target.host, u->target.port, up, sizeof up);
    if (u->kind == UPSTREAM_FIXED && u->tls == TLS_IMPLICIT)
        snprintf(up + strlen(up), sizeof up - strlen(up), " (implicit TLS%s)",
                 srv->cfg->insecure ? ", not verified" : "");
    for (unsigned i = 0; i < srv->cfg->nlisten; i++) {
        if (listener_open(srv, &srv->listeners[i], &srv->cfg->listen[i], err, sizeof err) < 0) {
            fprintf(stderr, "smtptap: %s\n", err);
            return EXIT_UNAVAILABLE;
        }
        srv->nlisteners++;
    }
    int rc = refuse_own_listener(srv); /* before saying it listens: it will not serve */
    if (rc) return rc;
    capture_words(srv->cfg, cap, sizeof cap);
    fwrite(buf_head(&srv->header), 1, buf_size(&srv->header),
           stderr); /* the start, once it is sure */
    for (unsigned i = 0; i < srv->nlisteners; i++) {
        size_t from = buf_size(&srv->header);
        buf_printf(&srv->header, "smtptap %s listening on %s (%s), upstream %s%s\n",
                   SMTPTAP_VERSION, srv->listeners[i].bound,
                   srv->cfg->listen[i].implicit_tls ? "implicit TLS" : "plain", up, cap);
        fwrite(buf_head(&srv->header) + from, 1, buf_size(&srv->header) - from, stderr);
        warn_if_exposed(srv, &srv->listeners[i]);
    }
    buf_append(&srv->header, "", 1); /* a C string from here: env.text_header */
    srv->env.text_header = (const char *)buf_head(&srv->header);
    say_default_port(u);
    fflush(stderr);
    return 0;
}

static int prepare_capture(const struct config *cfg)
{
    if (!cfg->capture_dir[0]) return 0;
    if (strcmp(cfg->capture_dir, "-") == 0) {
        if (cfg->formats == FORMAT_JSONL) return 0;
        fprintf(stderr, "smtptap: --capture-dir -: only --format jsonl can go to stdout (one "
                        "line per event of every session); give a directory for the other "
                        "formats\n");
        return EXIT_CONFIG;
    }
    const char *warning;
    int rc = capture_dir_prepare(cfg->capture_dir, &warning);
    if (rc < 0) {
        fprintf(stderr, "smtptap: --capture-dir %s: cannot create the directory: %s\n",
                cfg->capture_dir, strerror(-rc));
        return EXIT_CONFIG;
    }
    if (warning)
        fprintf(stderr, "smtptap: warning: --capture-dir %s: %s\n", cfg->capture_dir, warning);
    return 0;
}

/* A rule that fires by chance (probability below 1): the seed then matters. */
static bool uses_probability(const struct fault_set *f)
{
    for (size_t i = 0; i < f->count; i++)
        if (f->rules[i].probability < 1) return true;
    return false;
}

/* The seed is printed so that a run with probabilistic faults can be repeated. */
static void start_faults(struct server *srv)
{
    const struct config *cfg = srv->cfg;
    fault_book_init(&srv->faults, &cfg->faults);
    srv->seed = cfg->seed;
    if (!cfg->seed_given && uv_random(NULL, NULL, &srv->seed, sizeof srv->seed, 0, NULL) < 0)
        srv->seed = uv_hrtime() ^ (uint64_t)getpid();
    if (!cfg->faults.count) return;
    /* The seed only matters to a rule that fires by chance: said only then. */
    if (uses_probability(&cfg->faults))
        buf_printf(&srv->header,
                   "smtptap: %zu fault rule%s, seed %llu (--seed %llu repeats this run)\n",
                   cfg->faults.count, cfg->faults.count == 1 ? "" : "s",
                   (unsigned long long)srv->seed, (unsigned long long)srv->seed);
    else
        buf_printf(&srv->header, "smtptap: %zu fault rule%s\n", cfg->faults.count,
                   cfg->faults.count == 1 ? "" : "s");
}

/* SIGHUP: new rules for new commands; sessions keep the rule sets they matched against,
 * so every set stays alive until exit. A broken file keeps the rules in force. */
static void reload_faults(struct server *srv)
{
    struct buf err;
    buf_init(&err);
    struct fault_set *next = calloc(1, sizeof *next);
    if (!next) abort();
    if (!srv->cfg->config_file[0]) {
        fprintf(stderr, "smtptap: SIGHUP: no --config file to reload fault rules from\n");
    } else if (config_reload_faults(srv->cfg, next, &err) != CONFIG_OK) {
        fprintf(stderr, "smtptap: SIGHUP: %.*s; keeping the %zu fault rule%s in force\n",
                (int)buf_size(&err), (const char *)buf_head(&err), srv->faults.in_force->count,
                srv->faults.in_force->count == 1 ? "" : "s");
    } else {
        next->next_old = srv->old_faults;
        srv->old_faults = next;
        fault_book_set_file(&srv->faults, next, srv->nsessions, srv->next_id);
        char seed[80] = "", api[80] = "";
        if (srv->faults.api.count)
            snprintf(api, sizeof api, ", and %zu from the control API", srv->faults.api.count);
        if (uses_probability(next))
            snprintf(seed, sizeof seed, ", seed %llu (--seed %llu repeats this run)",
                     (unsigned long long)srv->seed, (unsigned long long)srv->seed);
        fprintf(stderr,
                "smtptap: SIGHUP: %zu fault rule%s now in force (from %s and --fault)%s%s\n",
                next->count, next->count == 1 ? "" : "s", srv->cfg->config_file, api, seed);
        next = NULL;
    }
    if (next) {
        fault_set_free(next);
        free(next);
    }
    buf_free(&err);
}

static void sighup_cb(uv_signal_t *h, int signum)
{
    (void)signum;
    reload_faults(h->data);
}

static void free_old_faults(struct server *srv)
{
    while (srv->old_faults) {
        struct fault_set *f = srv->old_faults;
        srv->old_faults = f->next_old;
        fault_set_free(f);
        free(f);
    }
}

/* ---- TLS material ---------------------------------------------------------------------- */

static bool needs_client_tls(const struct config *cfg)
{
    if (cfg->client_starttls == CLIENT_STARTTLS_OFFER) return true;
    for (unsigned i = 0; i < cfg->nlisten; i++)
        if (cfg->listen[i].implicit_tls) return true;
    return false;
}

static int open_ca(const struct config *cfg, struct tls_ca *ca)
{
    char dir[4096], err[TLS_ERR_MAX];
    if (cfg->ca_dir[0])
        snprintf(dir, sizeof dir, "%s", cfg->ca_dir);
    else
        tls_default_ca_dir(dir, sizeof dir);
    if (tls_ca_open(ca, dir, err, sizeof err) == 0) {
        /* The key signs a certificate for any name the client asks for: a key others can
         * read lets them impersonate any server to whoever trusts the CA. */
        if (ca->warning[0])
            fprintf(stderr,
                    "smtptap: warning: --ca-dir %s: %s; the CA key can impersonate any "
                    "server to clients that trust the CA\n",
                    dir, ca->warning);
        return 0;
    }
    fprintf(stderr, "smtptap: --ca-dir %s: %s\n", dir, err);
    return EXIT_CONFIG;
}

int server_print_ca(const struct config *cfg)
{
    struct tls_ca ca;
    memset(&ca, 0, sizeof ca);
    int rc = open_ca(cfg, &ca);
    if (rc) return rc;
    rc = tls_ca_write_pem(&ca, stdout) < 0 ? EXIT_CONFIG : 0;
    tls_ca_close(&ca);
    return rc;
}

static int start_tls(struct server *srv)
{
    const struct config *cfg = srv->cfg;
    char err[TLS_ERR_MAX];
    const char *keylog = cfg->keylog[0] ? cfg->keylog : NULL;
    bool client_side = needs_client_tls(cfg), upstream_side = cfg->upstream.kind != UPSTREAM_SINK &&
                                                              cfg->upstream.kind != UPSTREAM_REPLAY;
    if (keylog && (client_side || upstream_side)) { /* errors name --keylog, not a TLS side */
        char note[TLS_ERR_MAX];
        if (tls_keylog_prepare(keylog, note, sizeof note, err, sizeof err) < 0) {
            fprintf(stderr, "smtptap: %s\n", err);
            return EXIT_CONFIG;
        }
        if (note[0]) fprintf(stderr, "smtptap: warning: %s\n", note);
    }
    if (client_side) {
        int rc = open_ca(cfg, &srv->ca);
        if (rc) return rc;
        if (!(srv->tls_server = tls_server_ctx(keylog, err, sizeof err))) {
            fprintf(stderr, "smtptap: client-side TLS: %s\n", err);
            return EXIT_CONFIG;
        }
        leg_tls_serve_with_ca(srv->tls_server, &srv->ca);
    }
    if (upstream_side) {
        const char *extra = cfg->upstream_ca[0] ? cfg->upstream_ca : NULL;
        if (!(srv->tls_client = tls_client_ctx(extra, cfg->insecure, keylog, err, sizeof err))) {
            fprintf(stderr, "smtptap: upstream TLS: %s\n", err);
            return EXIT_CONFIG;
        }
    }
    return 0;
}

static void stop_tls(struct server *srv)
{
    if (srv->tls_server) SSL_CTX_free(srv->tls_server);
    if (srv->tls_client) SSL_CTX_free(srv->tls_client);
    if (srv->ca.cert) tls_ca_close(&srv->ca);
}

/* Capture files (other than eml) or jsonl on stdout: the writers get a thread of their own,
 * and the live transcript goes with them (a session's files are complete when its end line
 * shows). Without a thread, they are written here, as they are with the live transcript
 * alone. */
static void start_writers(struct server *srv)
{
    const struct config *cfg = srv->cfg;
    bool files =
        cfg->capture_dir[0] && (strcmp(cfg->capture_dir, "-") == 0 ||
                                (cfg->formats & (FORMAT_TEXT | FORMAT_JSONL | FORMAT_PCAP)));
    if (!files) return;
    srv->env.writers = writer_thread_start(srv->loop, srv->env.live, srv->env.stream,
                                           srv->env.live ? stderr : NULL, WRITERS_MAX_BEHIND);
    if (!srv->env.writers) /* no thread: written here, as before */
        fprintf(stderr, "smtptap: warning: cannot start the writer thread; captures are written "
                        "by the event loop\n");
}

/* ---- the control API --------------------------------------------------------------------- */

static uint64_t live_sessions(void *server)
{
    return ((struct server *)server)->nsessions;
}

static uint64_t newest_session(void *server)
{
    return ((struct server *)server)->next_id;
}

/* A rule changed through the API: a "!!" line in every live session, whose next command
 * meets the new rules. */
static void faults_changed(void *server, const struct fault_rule *r, const char *change)
{
    struct server *srv = server;
    struct buf d;
    buf_init(&d);
    fault_rule_describe(r, &d);
    char text[FAULT_REPLY_MAX + 256];
    snprintf(text, sizeof text, "fault rule \"%s\" %s through the control API: %.*s", r->name,
             change, (int)buf_size(&d), (const char *)buf_head(&d));
    buf_free(&d);
    for (struct session_slot *slot = srv->sessions; slot; slot = slot->next)
        session_fault_change(session_of(slot), r->name, fault_action_name(r->action), change, text);
    if (!srv->cfg->quiet && !srv->sessions) fprintf(stderr, "smtptap: %s\n", text);
}

static int start_control(struct server *srv)
{
    if (!srv->cfg->control_on) return 0;
    struct control_host host = {.server = srv,
                                .faults = &srv->faults,
                                .live_sessions = live_sessions,
                                .newest_session = newest_session,
                                .faults_changed = faults_changed};
    char bound[96], err[512];
    srv->control = control_start(srv->loop, srv->cfg, &host, bound, sizeof bound, err, sizeof err);
    if (!srv->control) {
        fprintf(stderr, "smtptap: %s\n", err);
        return EXIT_UNAVAILABLE;
    }
    srv->env.control = control_events(srv->control);
    fprintf(stderr, "smtptap control API and web page on http://%s/%s\n", bound,
            srv->cfg->control_token[0] ? " (a token is required)" : "");
    fflush(stderr);
    return 0;
}

static void close_walk_cb(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h)) uv_close(h, NULL);
}

/* The transcript's first lines, also each text capture's: when and how smtptap was
 * started; the fault rules and the listening lines follow. Written to stderr only once
 * the listeners are open, so a failed start says only why. */
static void start_header(struct server *srv)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    char when[64];
    text_rfc3339((uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u, when, sizeof when);
    buf_printf(&srv->header, "smtptap %s started %s, pid %ld\n", SMTPTAP_VERSION, when,
               (long)getpid());
    buf_printf(&srv->header, "smtptap command line: %s\n", srv->cfg->command_line);
    if (srv->cfg->config_file[0])
        buf_printf(&srv->header, "smtptap config file: %s (read at start)\n",
                   srv->cfg->config_file);
}

/* -u replay:FILE: the recorded dialog, read once for every session; NULL (said why) when
 * the file cannot be read or is no capture of one whole session. */
static struct capture_reader *load_replay(const struct config *cfg)
{
    char err[700];
    bool unreadable;
    struct capture_reader *r =
        capture_read_file(cfg->upstream.replay, err, sizeof err, &unreadable);
    if (!r) fprintf(stderr, "smtptap: --upstream replay:%s: %s\n", cfg->upstream.replay, err);
    return r;
}

int server_run(const struct config *cfg)
{
    static struct server srv;
    memset(&srv, 0, sizeof srv);
    srv.cfg = cfg;
    srv.loop = uv_default_loop();
    signal(SIGPIPE, SIG_IGN);
    raise_fd_limit();
    if (gethostname(srv.host, sizeof srv.host) < 0 || !srv.host[0]) strcpy(srv.host, "localhost");
    buf_init(&srv.header);
    start_header(&srv);
    int rc = prepare_capture(cfg);
    if (rc) {
        buf_free(&srv.header);
        return rc;
    }
    if (sink_users_parse(cfg->sink_users, &srv.sink_users)) { /* checked */
        buf_free(&srv.header);
        return EXIT_CONFIG;
    }
    static struct capture_reader *replay;
    if (cfg->upstream.kind == UPSTREAM_REPLAY && !(replay = load_replay(cfg))) {
        buf_free(&srv.header);
        return 65; /* EX_DATAERR, as smtptap diff says of a bad capture */
    }
    start_faults(&srv);
    if ((rc = start_tls(&srv))) {
        stop_tls(&srv);
        capture_reader_free(replay);
        buf_free(&srv.header);
        return rc;
    }
    static char stderr_buf[64 * 1024];
    setvbuf(stderr, stderr_buf, _IOFBF, sizeof stderr_buf);
    if (!cfg->quiet) srv.live = watch_live_writer_new(stderr, want_color(cfg), cfg);
    srv.env = (struct session_env){
        .loop = srv.loop,
        .cfg = cfg,
        .live = srv.live,
        .stream = strcmp(cfg->capture_dir, "-") == 0 ? jsonl_writer_new(stdout, false, true) : NULL,
        .tls_server = srv.tls_server,
        .tls_client = srv.tls_client,
        .host = srv.host,
        .sink_users = &srv.sink_users,
        .replay = replay ? capture_reader_dialog(replay) : NULL,
        .faults = &srv.faults.in_force,
        .seed = srv.seed,
        .server = &srv,
        .is_own_upstream = is_own_upstream,
        .closed = session_closed,
    };
    if (srv.env.stream) jsonl_writer_whole_messages(srv.env.stream, cfg->verbosity > 0);
    uv_check_init(srv.loop, &srv.flush);
    uv_check_start(&srv.flush, flush_cb);
    uv_signal_init(srv.loop, &srv.sigint);
    uv_signal_init(srv.loop, &srv.sigterm);
    srv.sigint.data = srv.sigterm.data = &srv;
    uv_signal_start(&srv.sigint, signal_cb, SIGINT);
    uv_signal_start(&srv.sigterm, signal_cb, SIGTERM);
    uv_signal_init(srv.loop, &srv.sighup);
    srv.sighup.data = &srv;
    uv_signal_start(&srv.sighup, sighup_cb, SIGHUP);
    uv_timer_init(srv.loop, &srv.grace);
    srv.grace.data = &srv;
    rc = open_listeners(&srv);
    if (!rc) rc = start_control(&srv);
    if (rc) {
        uv_walk(srv.loop, close_walk_cb, NULL);
    } else {
        srv.exit_code = 0;
        start_writers(&srv);
    }
    uv_run(srv.loop, UV_RUN_DEFAULT);
    assert(srv.nsessions == 0 && !srv.sessions && !srv.env.writers);
    if (srv.live) srv.live->close(srv.live);
    if (srv.env.stream) srv.env.stream->close(srv.env.stream);
    fflush(stderr);
    int closed = uv_loop_close(srv.loop);
    if (closed != 0) { /* a handle left open: a bug, but the exit code stays the run's */
        fprintf(stderr, "smtptap: internal error: the event loop did not close (%s)\n",
                uv_strerror(closed));
        uv_walk(srv.loop, close_walk_cb, NULL);
        uv_run(srv.loop, UV_RUN_DEFAULT);
        uv_loop_close(srv.loop);
    }
    stop_tls(&srv);
    control_free(srv.control);
    fault_book_free(&srv.faults);
    free_old_faults(&srv);
    capture_reader_free(replay);
    replay = NULL;
    buf_free(&srv.header);
    return rc ? rc : srv.exit_code;
}
