/* control_sse.c - GET /api/events: every event as it happens, as Server-Sent Events (one
 * "data:" line each, the jsonl capture's object; "event: session" with the session's summary
 * when it starts and ends; a comment every 15 s). Each stream has one buffer being sent and
 * one filling; a stream that falls CONTROL_STREAM_BEHIND bytes behind is dropped (its
 * connection closed), never buffered without limit. At most CONTROL_MAX_STREAMS at once. */
#include "control_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "smtptap/buf.h"
#include "smtptap/capture.h"

struct control_stream {
    h2o_generator_t gen; /* first: h2o calls back with it */
    h2o_req_t *req;
    struct control *c;
    struct control_stream *prev, *next;
    uint64_t filter[CONTROL_MAX_FILTER];
    size_t nfilter;
    bool content;                /* message lines too (?content=1) */
    bool summaries;              /* session summaries only (?view=sessions) */
    struct buf sending, pending; /* sending: h2o holds it until proceed */
    bool inflight, ending, finished;
};

static void unlink_stream(struct control_stream *st)
{
    struct control *c = st->c;
    if (!c) return;
    if (st->prev)
        st->prev->next = st->next;
    else
        c->streams = st->next;
    if (st->next) st->next->prev = st->prev;
    c->nstreams--;
    st->c = NULL;
}

/* The request's memory is going (the response ended or the client went away). */
static void on_dispose(void *p)
{
    struct control_stream *st = p;
    unlink_stream(st);
    buf_free(&st->sending);
    buf_free(&st->pending);
}

static void send_now(struct control_stream *st)
{
    if (st->inflight || st->finished) return;
    if (buf_size(&st->pending) == 0) {
        if (st->ending) {
            st->finished = true;
            unlink_stream(st);
            h2o_send(st->req, NULL, 0, H2O_SEND_STATE_FINAL);
        }
        return;
    }
    struct buf t = st->sending;
    st->sending = st->pending;
    st->pending = t;
    buf_reset(&st->pending);
    h2o_iovec_t v = h2o_iovec_init(buf_head(&st->sending), buf_size(&st->sending));
    st->inflight = true;
    h2o_send(st->req, &v, 1, H2O_SEND_STATE_IN_PROGRESS);
}

static void on_proceed(h2o_generator_t *gen, h2o_req_t *req)
{
    (void)req;
    struct control_stream *st = (struct control_stream *)gen;
    st->inflight = false;
    buf_reset(&st->sending);
    if (st->ending || !st->c) {
        send_now(st);
    } else if (buf_size(&st->pending)) { /* the next flush takes it */
        if (!st->c->streams_dirty) control_sse_flush_later(st->c);
        st->c->streams_dirty = true;
    }
}

static void on_stop(h2o_generator_t *gen, h2o_req_t *req)
{
    (void)req;
    struct control_stream *st = (struct control_stream *)gen;
    st->finished = true;
    unlink_stream(st);
}

static bool wants(const struct control_stream *st, const struct event *ev);
static void queue(struct control *c, struct control_stream *st, const char *a, size_t alen,
                  const char *b, size_t blen);

/* ---- resuming: Last-Event-ID ---------------------------------------------------------------- */

/* A stream that reconnects with Last-Event-ID: N (EventSource does so by itself) gets the
 * stored events after N that it wants, in order, before the live ones. At most
 * CONTROL_REPLAY_MAX bytes at a time: past that the stream ends after them, and the client
 * reconnects from the last one it got. When an event after N is no longer kept, an
 * "event: gap" comes first. */
struct replayed {
    uint64_t seq;
    const struct event *ev;
};

struct replay {
    const struct control_stream *st;
    uint64_t after;
    struct replayed *items;
    size_t n, cap;
};

static bool collect(void *ctx, uint64_t seq, const struct event *ev)
{
    struct replay *r = ctx;
    if (seq <= r->after || !wants(r->st, ev)) return true;
    if (ev->kind == EV_CONTENT && ev->past_preview && !r->st->c->cfg->verbosity) return true;
    if (r->n == r->cap) {
        size_t cap = r->cap ? 2 * r->cap : 256;
        struct replayed *more = realloc(r->items, cap * sizeof *more);
        if (!more) abort();
        r->items = more;
        r->cap = cap;
    }
    r->items[r->n++] = (struct replayed){seq, ev};
    return true;
}

static int by_seq(const void *a, const void *b)
{
    uint64_t x = ((const struct replayed *)a)->seq, y = ((const struct replayed *)b)->seq;
    return x < y ? -1 : x > y;
}

/* The number in a Last-Event-ID header, or false when there is none or it is not one. */
static bool last_event_id(h2o_req_t *req, uint64_t *out)
{
    ssize_t i = h2o_find_header_by_str(&req->headers, H2O_STRLIT("last-event-id"), -1);
    if (i < 0) return false;
    h2o_iovec_t v = req->headers.entries[i].value;
    return control_last_event_id(v.base, v.len, out);
}

static void replay(struct control *c, struct control_stream *st, uint64_t after)
{
    const struct control_store *store = &c->store;
    if (store->lost_seq_max > after) {
        char gap[128];
        int n = snprintf(gap, sizeof gap, "{\"after\":%llu,\"lost_up_to\":%llu}",
                         (unsigned long long)after, (unsigned long long)store->lost_seq_max);
        static const char head[] = "event: gap\ndata: ";
        queue(c, st, head, sizeof head - 1, gap, (size_t)n);
    }
    struct replay r = {.st = st, .after = after};
    for (const struct control_session *s = store->oldest; s; s = s->newer)
        if (s->nevents && s->last_seq > after) control_session_each_numbered(s, collect, &r);
    qsort(r.items, r.n, sizeof *r.items, by_seq);
    size_t bytes = 0;
    for (size_t i = 0; i < r.n && !st->finished; i++) {
        size_t len = 0;
        char *line = jsonl_event_line(r.items[i].ev, &len);
        if (!line) continue;
        char head[48];
        int hlen =
            snprintf(head, sizeof head, "id: %llu\ndata: ", (unsigned long long)r.items[i].seq);
        if (bytes + (size_t)hlen + len + 2 > CONTROL_REPLAY_MAX) { /* the rest next time */
            free(line);
            st->ending = true;
            break;
        }
        queue(c, st, head, (size_t)hlen, line, len);
        bytes += (size_t)hlen + len + 2;
        free(line);
    }
    free(r.items);
}

int control_sse_open(struct control *c, h2o_req_t *req, const struct control_request *r)
{
    if (c->stopping) {
        control_respond_error(req, 503, "Service Unavailable", "smtptap is shutting down");
        return 0;
    }
    if (c->nstreams >= CONTROL_MAX_STREAMS) {
        char text[120];
        snprintf(text, sizeof text, "too many event streams open (%d); close one and retry",
                 CONTROL_MAX_STREAMS);
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL, H2O_STRLIT("5"));
        control_respond_error(req, 503, "Service Unavailable", text);
        return 0;
    }
    struct control_stream *st = h2o_mem_alloc_shared(&req->pool, sizeof *st, on_dispose);
    memset(st, 0, sizeof *st);
    st->gen.proceed = on_proceed;
    st->gen.stop = on_stop;
    st->req = req;
    st->c = c;
    memcpy(st->filter, r->sessions, r->nsessions * sizeof r->sessions[0]);
    st->nfilter = r->nsessions;
    st->content = r->content;
    st->summaries = r->summaries;
    buf_init(&st->sending);
    buf_init(&st->pending);
    st->next = c->streams;
    if (c->streams) c->streams->prev = st;
    c->streams = st;
    c->nstreams++;
    req->res.status = 200;
    req->res.reason = "OK";
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
                   H2O_STRLIT("text/event-stream; charset=utf-8"));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL,
                   H2O_STRLIT("no-store"));
    h2o_start_response(req, &st->gen);
    buf_append_str(&st->pending, ": smtptap events\nretry: 2000\n\n");
    uint64_t after;
    if (!st->summaries && last_event_id(req, &after)) replay(c, st, after);
    send_now(st);
    return 0;
}

static bool wants_session(const struct control_stream *st, uint64_t session)
{
    if (!st->nfilter) return true;
    for (size_t i = 0; i < st->nfilter; i++)
        if (st->filter[i] == session) return true;
    return false;
}

static bool wants(const struct control_stream *st, const struct event *ev)
{
    if (st->summaries || (ev->kind == EV_CONTENT && !st->content)) return false;
    return wants_session(st, ev->session);
}

static bool wants_summary(const struct control_stream *st, uint64_t session)
{
    return wants_session(st, session);
}

static const char session_head[] = "event: session\ndata: ";

/* The summary of s as one line (malloc'd), or NULL. */
static char *summary_text(struct control *c, struct control_session *s)
{
    json_t *j = control_session_json(c, s);
    char *text = j ? json_dumps(j, CONTROL_JSON_FLAGS) : NULL;
    json_decref(j);
    s->changed = false;
    return text;
}

/* Ends st at once: its socket is shut down, and h2o closes the connection (now, when
 * nothing is being sent; else when the send in flight fails). */
static void kill_stream(struct control_stream *st)
{
    st->finished = true;
    unlink_stream(st);
    control_abort_connection(st->req);
    if (!st->inflight) h2o_send(st->req, NULL, 0, H2O_SEND_STATE_ERROR);
}

/* Queues text on st, or drops st when it is too far behind. */
static void queue(struct control *c, struct control_stream *st, const char *a, size_t alen,
                  const char *b, size_t blen)
{
    if (st->finished || st->ending) return;
    if (buf_size(&st->pending) + alen + blen > CONTROL_STREAM_BEHIND) {
        c->streams_dropped++;
        kill_stream(st);
        return;
    }
    buf_append(&st->pending, a, alen);
    buf_append(&st->pending, b, blen);
    buf_append(&st->pending, "\n\n", 2);
    if (!c->streams_dirty) control_sse_flush_later(c); /* gathered for CONTROL_FLUSH_MS */
    c->streams_dirty = true;
}

void control_sse_flush(struct control *c)
{
    if (!c->streams_dirty) return;
    c->streams_dirty = false;
    for (struct control_stream *st = c->streams, *next; st; st = next) {
        next = st->next;
        send_now(st);
    }
}

void control_sse_event(struct control *c, const struct event *ev, struct control_session *s)
{
    if (ev->kind == EV_WIRE || ev->kind == EV_BODY) return; /* as jsonl: pcap's, eml's */
    if (ev->kind == EV_CONTENT && ev->past_preview && c->cfg->verbosity == 0) return;
    bool summary_now = s && (ev->kind == EV_START || ev->kind == EV_END);
    bool any_event = false, any_summary = false;
    for (struct control_stream *st = c->streams; st; st = st->next) {
        any_event = any_event || wants(st, ev);
        any_summary = any_summary || (summary_now && wants_summary(st, ev->session));
    }
    size_t len = 0;
    char *line = any_event ? jsonl_event_line(ev, &len) : NULL;
    char *summary = any_summary ? summary_text(c, s) : NULL;
    if (!line && !summary) return;
    char head[48]; /* the event's number in the store: the same for every stream */
    int hlen = snprintf(head, sizeof head, "id: %llu\ndata: ", (unsigned long long)c->store.seq);
    for (struct control_stream *st = c->streams, *next; st; st = next) {
        next = st->next; /* queue may drop st */
        if (line && wants(st, ev)) queue(c, st, head, (size_t)hlen, line, len);
        if (summary && wants_summary(st, ev->session))
            queue(c, st, session_head, sizeof session_head - 1, summary, strlen(summary));
    }
    free(summary);
    free(line);
}

/* Every tick: a summary of each live session that changed since its last one, for the
 * streams of summaries (?view=sessions), so that a page's list follows long sessions. */
static void live_summaries(struct control *c)
{
    bool any = false;
    for (struct control_stream *st = c->streams; st && !any; st = st->next) any = st->summaries;
    if (!any) return;
    for (struct control_session *s = c->store.newest; s; s = s->older) {
        if (!s->live || !s->changed) continue;
        s->changed = false;
        char *summary = summary_text(c, s);
        if (!summary) continue;
        for (struct control_stream *st = c->streams, *next; st; st = next) {
            next = st->next;
            if (st->summaries && wants_summary(st, s->id))
                queue(c, st, session_head, sizeof session_head - 1, summary, strlen(summary));
        }
        free(summary);
    }
}

/* Whether the client of st has closed its side: h2o reads nothing while a response is
 * going out, so a stream whose reader went away would only be noticed at the next write. */
static bool client_gone(const struct control_stream *st)
{
    int fd = control_request_fd(st->req);
    char b;
    return fd >= 0 && recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
}

void control_sse_tick(struct control *c, bool ping)
{
    live_summaries(c);
    for (struct control_stream *st = c->streams, *next; st; st = next) {
        next = st->next;
        if (client_gone(st))
            kill_stream(st);
        else if (ping)
            queue(c, st, ": ping", 6, "", 0);
    }
}

void control_sse_close_all(struct control *c)
{
    for (struct control_stream *st = c->streams, *next; st; st = next) {
        next = st->next;
        st->ending = true;
        send_now(st);
    }
}
