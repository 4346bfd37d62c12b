/* control.h - the control API and the live web page (--control ADDR:PORT): HTTP served by
 * libh2o on the proxy's own libuv loop. JSON routes for sessions, their events and captures,
 * statistics and fault rules; Server-Sent Events of every event as it happens; the page
 * (web_assets.h) at /. Every request needs the token when one is set (Authorization: Bearer,
 * or access_token=, RFC 6750). Routes and shapes: README "Control API". */
#ifndef SMTPTAP_CONTROL_H
#define SMTPTAP_CONTROL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "smtptap/config.h"
#include "smtptap/events.h"
#include "smtptap/fault_book.h"

/* What the control API may see and do of the running proxy (server.c provides it). */
struct control_host {
    void *server;
    struct fault_book *faults;
    uint64_t (*live_sessions)(void *server);
    uint64_t (*newest_session)(void *server);
    /* in_force changed (rule r was "added" or "removed"): every live session is told. */
    void (*faults_changed)(void *server, const struct fault_rule *r, const char *change);
};

struct control;

/* Listens on cfg->control. NULL with a reason in err when it cannot. bound gets the address
 * actually bound (port 0 picks one). */
struct control *control_start(uv_loop_t *loop, const struct config *cfg,
                              const struct control_host *host, char *bound, size_t bound_size,
                              char *err, size_t err_size);
/* The sessions' events go here (on the loop's thread). */
struct event_writer *control_events(struct control *c);
/* Stops listening, ends event streams, closes every connection; frees c once its handles
 * are closed (the loop must run on). */
void control_stop(struct control *c);
/* Frees c after the loop has run its last turn (every handle closed). */
void control_free(struct control *c);

#endif
