/* replay_leg.h - the recorded server (replay_smtp.h) as a leg: the session writes client
 * bytes to it and reads the recorded replies, at the recorded pace (--replay-speed), through
 * the same callbacks as a TCP upstream. */
#ifndef SMTPTAP_REPLAY_LEG_H
#define SMTPTAP_REPLAY_LEG_H

#include "smtptap/leg.h"
#include "smtptap/replay_smtp.h"

struct replay_due; /* a reply waiting for its time */

struct replay_leg {
    struct leg base;
    struct replay_smtp smtp;
    uv_timer_t timer;       /* hands due replies to the session from the loop */
    struct replay_due *due; /* replies not yet handed over, oldest first (owned) */
    size_t ndue, cap;
    uint64_t last_due; /* loop time (ms) the last queued reply is due at */
    uv_loop_t *loop;
    bool eof; /* the client side shut down: deliver what is left, then EOF */
    bool eof_sent;
    void (*note)(void *owner, const char *text); /* where the dialog left the recording */
};

/* The replay_leg must stay allocated until on_closed; d must outlive it. Its greeting is
 * delivered once the session starts reading. */
void replay_leg_init(struct replay_leg *k, uv_loop_t *loop, const struct leg_events *ev,
                     void *owner, const struct capture_dialog *d, bool strict, double speed,
                     void (*note)(void *owner, const char *text));

#endif
