/* control_store.h - pure: what the control API knows of sessions, built from their events
 * alone: a summary per session (peers, TLS, counts, reply codes, latency, AUTH, verdict) and
 * its events (copies, as the jsonl capture has them: no connection bytes, message lines past
 * the first 40 only with -v), for the live sessions and a ring of the most recent ended ones.
 * Bounded: at most `recent_max` ended sessions, and EVENTS_MAX bytes of events per session
 * (past it events are counted as dropped; the summary stays whole). No I/O. */
#ifndef SMTPTAP_CONTROL_STORE_H
#define SMTPTAP_CONTROL_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "smtptap/events.h"

enum { CONTROL_EVENTS_MAX = 512 * 1024, CONTROL_HELO_MAX = 256, CONTROL_LINE_MAX = 512 };

struct control_event_chunk;

struct control_tls {
    bool on;
    char version[32], cipher[96], sni[256], verify[256];
};

struct control_session {
    uint64_t id;
    bool live;
    uint64_t started_us, ended_us; /* wall clock; ended_us 0 while live */
    uint64_t t_ns;                 /* the last event's time since the session started */
    struct sockaddr_storage client, listener, upstream; /* upstream: family 0 when none */
    char helo[CONTROL_HELO_MAX];
    struct control_tls tls_client, tls_upstream;
    char auth_mech[32];
    /* With --decode-auth (EV_AUTH facts): the user the exchange named, and its outcome
     * ("accepted", "rejected", ...) and reply code once it ended; "" and 0 before. */
    char auth_user[96], auth_outcome[40];
    int auth_code;
    uint64_t commands, replies, messages, faults, lint, errors;
    uint64_t codes[4]; /* 2xx, 3xx, 4xx, 5xx */
    uint64_t server_wait_ns, last_latency_ns, max_latency_ns;
    uint64_t bytes_up, bytes_down;
    char last_reply[CONTROL_LINE_MAX];
    const struct event *verdict; /* its stored copy, or NULL */
    const struct event *end;     /* its stored copy, or NULL */
    bool changed;                /* an event came since the control API last sent its summary */
    /* The control API's summary of an ended session as JSON text, kept once made (an
     * ended session does not change): owned, freed with the record. */
    char *summary_text;
    uint64_t events_dropped;
    uint64_t last_seq; /* the number of its last stored event */
    size_t events_bytes, nevents;
    struct control_event_chunk *first, *last;
    struct control_session *newer, *older; /* every record, newest first */
    struct control_session *hash_next;
};

struct control_totals {
    uint64_t sessions, commands, messages, bytes_up, bytes_down, faults_fired, lint;
};

struct control_store {
    size_t recent_max; /* ended sessions kept */
    bool whole_messages;
    struct control_session *newest, *oldest;
    size_t live, ended;
    struct control_session **buckets;
    size_t nbuckets, nrecords;
    struct control_totals totals;
    /* Every event taken is numbered, from 1 (the event streams' ids). lost_seq_max: the
     * highest number of an event no longer kept (past a session's bound, or with its
     * session's record): a stream resuming before it may miss events. */
    uint64_t seq, lost_seq_max;
};

void control_store_init(struct control_store *st, size_t recent_max, bool whole_messages);
void control_store_free(struct control_store *st);
/* Takes one event, numbered st->seq from then on (its session's record is made at
 * EV_START). Returns the record, or NULL when the event belongs to no known session. */
struct control_session *control_store_event(struct control_store *st, const struct event *ev);
struct control_session *control_store_find(const struct control_store *st, uint64_t id);
/* Calls fn for each stored event of s with its number, in order; stops when fn returns
 * false. */
void control_session_each_numbered(const struct control_session *s,
                                   bool (*fn)(void *ctx, uint64_t seq, const struct event *ev),
                                   void *ctx);
/* Calls fn for each stored event of s, in order; stops when fn returns false. */
void control_session_each_event(const struct control_session *s,
                                bool (*fn)(void *ctx, const struct event *ev), void *ctx);

#endif
