/* sink_leg.h - the built-in server as a leg: the session writes client bytes to it and
 * reads its replies through the same callbacks as a TCP upstream. */
#ifndef SMTPTAP_SINK_LEG_H
#define SMTPTAP_SINK_LEG_H

#include "smtptap/leg.h"
#include "smtptap/sink_smtp.h"

struct sink_leg {
    struct leg base;
    struct sink_smtp smtp;
    uv_idle_t deliver; /* hands replies to the session from the loop, never re-entrantly */
    bool eof;          /* the client side shut down: deliver what is left, then EOF */
    bool eof_sent;
};

/* The sink_leg must stay allocated until on_closed. Its greeting is delivered once the
 * session starts reading. */
void sink_leg_init(struct sink_leg *k, uv_loop_t *loop, const struct leg_events *ev, void *owner,
                   const char *host, uint64_t session, const struct sink_users *users);

#endif
