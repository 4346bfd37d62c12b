/* session.h - one client connection and its upstream, as the running proxy (server.c) sees
 * it: the server allocates, links, counts and frees sessions; a session sees only the narrow
 * environment below. What a session does inside is proxy/session_int.h's business. */
#ifndef SMTPTAP_SESSION_H
#define SMTPTAP_SESSION_H

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#include "smtptap/config.h"
#include "smtptap/events.h"
#include "smtptap/fault.h"
#include "smtptap/sink_auth.h"

struct capture_dialog;
#include "smtptap/writer_thread.h"

struct session;

/* What a session may use of the running proxy. The server owns all of it and keeps it
 * alive longer than any session. */
struct session_env {
    uv_loop_t *loop;
    const struct config *cfg;
    struct event_writer *live;     /* the live transcript, NULL with --quiet */
    struct event_writer *stream;   /* jsonl on stdout (--capture-dir -), or NULL */
    struct writer_thread *writers; /* writes live, stream and capture files; NULL: this thread */
    struct event_writer *control;  /* the control API's view (on this thread), or NULL */
    SSL_CTX *tls_server;           /* client-facing TLS, NULL when never offered */
    SSL_CTX *tls_client;           /* upstream TLS, NULL with the sink */
    const char *host;              /* this machine's name (the sink greets with it) */
    const struct sink_users *sink_users;   /* [sink] users */
    const struct capture_dialog *replay;   /* -u replay:FILE: the recorded dialog, else NULL */
    const struct fault_set *const *faults; /* the rules in force (the set changes on SIGHUP) */
    uint64_t seed;                         /* for probabilistic faults */
    const char *text_header;               /* lines each text capture begins with */
    void *server;                          /* the argument of the two calls below */
    /* True when peer is the local end of one of the sessions' upstream connections and, when
     * dst is given, that connection went to dst: a connection from peer to dst is then that
     * very connection, come back to smtptap. (Without dst: only whether some upstream
     * connection has peer's address and port; another connection, to another destination,
     * can have the same, so that alone proves nothing.) */
    bool (*is_own_upstream)(void *server, const struct sockaddr *peer, const struct sockaddr *dst);
    /* Every handle of the session is closed: the server unlinks and frees it. */
    void (*closed)(void *server, struct session *s);
};

/* Bytes the server allocates (zeroed) for one session. */
size_t session_size(void);
/* Starts session number id in s (session_size() zeroed bytes that stay allocated until
 * env->closed): accepts the pending connection of listener, starts TLS at once when
 * implicit_tls, and reaches the upstream. env must outlive the session. */
void session_start(struct session *s, const struct session_env *env, uint64_t id,
                   uv_stream_t *listener, bool implicit_tls);
/* Shutdown: tells the client the service is closing (421) and ends the session, or closes
 * both legs at once when force is set and it is ending already. */
void session_stop(struct session *s, bool force);
/* The session's number (#N). */
uint64_t session_id(const struct session *s);
/* A fault rule changed through the control API (change: "added" or "removed"): a "!!" line
 * in the session's transcript, since it applies from its next command. */
void session_fault_change(struct session *s, const char *rule, const char *action,
                          const char *change, const char *text);
/* Our end of the upstream connection (family 0 before it exists). */
const struct sockaddr_storage *session_upstream_local(const struct session *s);
/* The address its upstream connection went to (zero family: none yet). */
const struct sockaddr_storage *session_upstream_peer(const struct session *s);

#endif
