/* server.h - the running proxy: listeners, the set of live sessions, the live transcript,
 * signals and graceful shutdown. */
#ifndef SMTPTAP_SERVER_H
#define SMTPTAP_SERVER_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "smtptap/config.h"
#include "smtptap/events.h"
#include "smtptap/fault.h"
#include "smtptap/fault_book.h"
#include "smtptap/heap_trim.h"
#include "smtptap/parse.h"
#include "smtptap/session.h"
#include "smtptap/sink_auth.h"
#include "smtptap/tls.h"

struct session_slot;
struct control;

struct listener {
    uv_tcp_t tcp;
    struct server *server;
    struct listen_spec spec;
    char bound[80]; /* the address actually bound, e.g. 127.0.0.1:2525 */
};

struct server {
    struct buf header; /* the transcript's first lines, and each text capture's */
    uv_loop_t *loop;
    const struct config *cfg;
    struct listener listeners[CONFIG_MAX_LISTEN];
    unsigned nlisteners;
    struct session_slot *sessions; /* the live sessions, owned (server.c) */
    uint64_t nsessions;
    struct heap_trim heap_trim; /* when freed session memory goes back (server.c) */
    uint64_t next_id;
    struct event_writer *live; /* NULL with --quiet */
    bool stopping;
    bool grace_expired;
    int exit_code;
    char host[128];
    struct sink_users sink_users; /* parsed [sink] users */
    struct fault_book faults;     /* the rules in force: the file's (SIGHUP) and the API's */
    struct control *control;      /* --control, or NULL */
    struct tls_ca ca;             /* smtptap's CA, open when a client leg may use TLS */
    SSL_CTX *tls_server;          /* client-facing TLS, or NULL */
    SSL_CTX *tls_client;          /* upstream TLS, or NULL */
    uint64_t seed;                /* for probabilistic faults */
    uv_signal_t sigint, sigterm, sighup;
    struct fault_set *old_faults; /* every set loaded by SIGHUP, freed at exit */
    uv_timer_t grace;
    uv_check_t flush;       /* flushes the live transcript once per loop iteration */
    struct session_env env; /* what sessions see of all this */
};

/* --print-ca: opens (or creates) the CA and prints its certificate. Returns the exit code. */
int server_print_ca(const struct config *cfg);
/* Runs until SIGINT/SIGTERM and every session has ended. Returns the process exit code. */
int server_run(const struct config *cfg);
/* A connection waits on listener l: starts a session for it (server.c). */
void server_accept(struct server *srv, struct listener *l);

/* listener.c: binds one listen address; new connections go to server_accept. */
int listener_open(struct server *srv, struct listener *l, const struct listen_spec *spec, char *err,
                  size_t err_size);
void listener_close(struct listener *l);

#endif
