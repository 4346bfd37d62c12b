/* control_int.h - the control API's rooms, shared by control.c (HTTP: listening, connections,
 * the token, dispatch), control_api.c (the JSON routes) and control_sse.c (event streams). */
#ifndef SMTPTAP_CONTROL_INT_H
#define SMTPTAP_CONTROL_INT_H

#define H2O_USE_LIBUV 1
#include <h2o.h>
#include <jansson.h>

#include "smtptap/control.h"
#include "smtptap/control_request.h"
#include "smtptap/control_store.h"

enum {
    CONTROL_MAX_CONNECTIONS = 1024,  /* more are closed as soon as accepted */
    CONTROL_MAX_STREAMS = 64,        /* event streams at once; more get 503 */
    CONTROL_STREAM_BEHIND = 1 << 20, /* bytes a stream may lag before it is dropped */
    CONTROL_REPLAY_MAX = 512 * 1024, /* stored events resent at once to a stream that resumes */
    CONTROL_BODY_MAX = 64 * 1024,    /* request bodies (fault rules) */
    CONTROL_PING_MS = 15000,
    CONTROL_TICK_MS = 1000,
    CONTROL_FLUSH_MS = 20,
};

/* As the jsonl capture: compact, in order, reals without binary noise (0.774, not
 * 0.77400000000000002). */
#define CONTROL_JSON_FLAGS (JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(12))

struct control_conn; /* one accepted connection (control.c) */
struct control_stream;

struct control {
    struct event_writer events; /* first: the sessions' events arrive here */
    uv_loop_t *loop;
    const struct config *cfg;
    struct control_host host;
    h2o_globalconf_t config;
    h2o_context_t ctx;
    h2o_accept_ctx_t accept_ctx;
    uv_tcp_t listener;
    bool listening, stopping, ctx_disposed;
    struct control_conn *conns; /* open connections */
    size_t nconns;
    struct control_store store;
    struct control_stream *streams;
    size_t nstreams;
    uint64_t streams_dropped;
    bool streams_dirty;
    uv_timer_t flush; /* control_sse_flush, CONTROL_FLUSH_MS after the first event */
    uv_timer_t ping;
    unsigned ticks;
    uint64_t started_ns;
    /* fired counts by rule name, for GET /api/faults */
    struct fired_count {
        char name[FAULT_NAME_MAX];
        uint64_t n;
    } * fired;
    size_t nfired;
};

/* control.c */
void control_respond(h2o_req_t *req, int status, const char *reason, const char *content_type,
                     const char *body, size_t len);
/* Sends j (taking the reference) as JSON with status. */
void control_respond_json(h2o_req_t *req, int status, const char *reason, json_t *j);
void control_respond_error(h2o_req_t *req, int status, const char *reason, const char *text);
/* The socket of req's connection, or -1. */
int control_request_fd(h2o_req_t *req);
/* Closes a connection at once (its socket shut down: h2o then closes it as a peer's close). */
void control_abort_connection(h2o_req_t *req);

/* control_api.c */
void control_api_dispatch(struct control *c, h2o_req_t *req, const struct control_request *r);
json_t *control_session_json(const struct control *c, const struct control_session *s);
void control_count_fired(struct control *c, const struct event *ev);

/* control_sse.c */
int control_sse_open(struct control *c, h2o_req_t *req, const struct control_request *r);
void control_sse_event(struct control *c, const struct event *ev, struct control_session *s);
void control_sse_close_all(struct control *c);
/* Sends what the streams were given since the last time (one write each): events are
 * gathered for CONTROL_FLUSH_MS, so that a busy proxy writes to a stream some 50 times a
 * second, not once per event or per loop iteration (on a VM a system call is dear). */
void control_sse_flush(struct control *c);
void control_sse_flush_later(struct control *c); /* control.c: starts the flush timer */
/* Every CONTROL_TICK_MS: streams whose client went away are closed; a comment goes out
 * on the others when ping is set (every CONTROL_PING_MS). */
void control_sse_tick(struct control *c, bool ping);

#endif
