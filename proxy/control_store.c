/* control_store.c - the sessions the control API shows, from their events
 * (control_store.h). */
#include "smtptap/control_store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtptap/event_copy.h"
#include "smtptap/smtp.h"

/* A session's first chunk is small (an idle session holds a few events: 10,000 of them with
 * 16 KiB each would be 160 MiB), each next one twice the last, up to CHUNK_MAX. */
enum { CHUNK_FIRST = 2 * 1024, CHUNK_MAX = 64 * 1024 };

/* Stored event copies, back to back (each event_copy_size, aligned). */
struct control_event_chunk {
    struct control_event_chunk *next;
    size_t used, cap;
    _Alignas(max_align_t) unsigned char mem[];
};

/* Each stored event: its number, then its copy (event_copy.h), aligned for it. */
struct stored_head {
    uint64_t seq;
    size_t size; /* the copy's */
};
enum {
    HEAD_SIZE = (sizeof(struct stored_head) + _Alignof(max_align_t) - 1) / _Alignof(max_align_t) *
                _Alignof(max_align_t),
};

void control_store_init(struct control_store *st, size_t recent_max, bool whole_messages)
{
    memset(st, 0, sizeof *st);
    st->recent_max = recent_max;
    st->whole_messages = whole_messages;
    st->nbuckets = 256;
    st->buckets = calloc(st->nbuckets, sizeof *st->buckets);
    if (!st->buckets) abort();
}

static void free_record(struct control_session *s)
{
    free(s->summary_text);
    while (s->first) {
        struct control_event_chunk *c = s->first;
        s->first = c->next;
        free(c);
    }
    free(s);
}

void control_store_free(struct control_store *st)
{
    while (st->newest) {
        struct control_session *s = st->newest;
        st->newest = s->older;
        free_record(s);
    }
    free(st->buckets);
    memset(st, 0, sizeof *st);
}

/* ---- the index by session number ------------------------------------------------------ */

static size_t bucket_of(const struct control_store *st, uint64_t id)
{
    return (size_t)((id * 0x9E3779B97F4A7C15u) >> 32) & (st->nbuckets - 1);
}

static void grow_index(struct control_store *st)
{
    size_t n = st->nbuckets * 2;
    struct control_session **b = calloc(n, sizeof *b);
    if (!b) abort();
    struct control_session **old = st->buckets;
    size_t old_n = st->nbuckets;
    st->buckets = b;
    st->nbuckets = n;
    for (size_t i = 0; i < old_n; i++)
        for (struct control_session *s = old[i], *next; s; s = next) {
            next = s->hash_next;
            size_t k = bucket_of(st, s->id);
            s->hash_next = b[k];
            b[k] = s;
        }
    free(old);
}

struct control_session *control_store_find(const struct control_store *st, uint64_t id)
{
    for (struct control_session *s = st->buckets[bucket_of(st, id)]; s; s = s->hash_next)
        if (s->id == id) return s;
    return NULL;
}

static void unindex(struct control_store *st, struct control_session *s)
{
    for (struct control_session **p = &st->buckets[bucket_of(st, s->id)]; *p; p = &(*p)->hash_next)
        if (*p == s) {
            *p = s->hash_next;
            return;
        }
}

/* ---- records ----------------------------------------------------------------------------- */

static struct control_session *new_record(struct control_store *st, const struct event *ev)
{
    struct control_session *s = calloc(1, sizeof *s);
    if (!s) abort();
    s->id = ev->session;
    s->live = true;
    s->started_us = ev->wall_us - ev->t_ns / 1000;
    if (ev->facts) {
        s->client = ev->facts->endpoints.a;
        s->listener = ev->facts->endpoints.b;
    }
    s->older = st->newest;
    if (st->newest) st->newest->newer = s;
    st->newest = s;
    if (!st->oldest) st->oldest = s;
    if (st->nrecords + 1 > st->nbuckets) grow_index(st);
    size_t k = bucket_of(st, s->id);
    s->hash_next = st->buckets[k];
    st->buckets[k] = s;
    st->nrecords++;
    st->live++;
    st->totals.sessions++;
    return s;
}

/* An event numbered seq is no longer kept: a stream resuming before it has a gap. */
static void lost(struct control_store *st, uint64_t seq)
{
    if (seq > st->lost_seq_max) st->lost_seq_max = seq;
}

static void drop_record(struct control_store *st, struct control_session *s)
{
    if (s->nevents) lost(st, s->last_seq);
    if (s->newer)
        s->newer->older = s->older;
    else
        st->newest = s->older;
    if (s->older)
        s->older->newer = s->newer;
    else
        st->oldest = s->newer;
    unindex(st, s);
    st->nrecords--;
    free_record(s);
}

/* Keeps at most recent_max ended records: the oldest ended ones go. */
static void trim_ended(struct control_store *st)
{
    for (struct control_session *s = st->oldest; s && st->ended > st->recent_max;) {
        struct control_session *newer = s->newer;
        if (!s->live) {
            drop_record(st, s);
            st->ended--;
        }
        s = newer;
    }
}

/* ---- events ------------------------------------------------------------------------------ */

/* Kinds kept even past the bound: small, and what the summary and a reader need most. */
static bool essential(enum event_kind k)
{
    return k == EV_END || k == EV_VERDICT || k == EV_MESSAGE || k == EV_DELIVERY || k == EV_FAULT ||
           k == EV_ERROR || k == EV_START || k == EV_UPSTREAM;
}

static const struct event *store_event(struct control_store *st, struct control_session *s,
                                       const struct event *ev, uint64_t seq)
{
    size_t size = event_copy_size(ev), need = HEAD_SIZE + size;
    size_t limit = essential(ev->kind) ? 2 * CONTROL_EVENTS_MAX : CONTROL_EVENTS_MAX;
    /* the end and the verdict, once each, are always kept: s->end, s->verdict */
    bool last = ev->kind == EV_END || ev->kind == EV_VERDICT;
    if (!last && s->events_bytes + need > limit) {
        s->events_dropped++;
        lost(st, seq);
        return NULL;
    }
    struct control_event_chunk *c = s->last;
    if (!c || c->cap - c->used < need) {
        size_t cap = s->last ? 2 * s->last->cap : CHUNK_FIRST;
        if (cap > CHUNK_MAX) cap = CHUNK_MAX;
        if (cap < need) cap = need;
        c = malloc(sizeof *c + cap);
        if (!c) abort();
        c->next = NULL;
        c->used = 0;
        c->cap = cap;
        if (s->last)
            s->last->next = c;
        else
            s->first = c;
        s->last = c;
    }
    struct stored_head *h = (struct stored_head *)(c->mem + c->used);
    h->seq = seq;
    h->size = size;
    struct event *copy = event_copy_into(c->mem + c->used + HEAD_SIZE, ev);
    c->used += need;
    s->events_bytes += need;
    s->nevents++;
    s->last_seq = seq;
    return copy;
}

static void copy_text(char *dst, size_t size, const char *src)
{
    size_t n = src ? strlen(src) : 0;
    if (n >= size) n = size - 1;
    if (n) memcpy(dst, src, n);
    dst[n] = 0;
}

/* The first line of bytes, printable ASCII only (others as '?'). */
static void copy_line(char *dst, size_t size, const uint8_t *b, size_t len)
{
    size_t n = 0;
    while (n < len && n + 1 < size && b[n] != '\r' && b[n] != '\n') {
        dst[n] = b[n] >= 0x20 && b[n] < 0x7f ? (char)b[n] : '?';
        n++;
    }
    dst[n] = 0;
}

/* The command's verb by the project's own parser (smtp.h), and its argument. */
static void on_command(struct control_store *st, struct control_session *s, const struct event *ev)
{
    s->commands++;
    st->totals.commands++;
    s->bytes_up += ev->len;
    const uint8_t *arg;
    size_t arg_len;
    enum smtp_verb verb = smtp_verb_parse(ev->bytes, ev->len, &arg, &arg_len);
    if (!s->helo[0] && (verb == SMTP_VERB_EHLO || verb == SMTP_VERB_HELO))
        copy_line(s->helo, sizeof s->helo, arg, arg_len);
    if (!s->auth_mech[0] && verb == SMTP_VERB_AUTH) {
        copy_line(s->auth_mech, sizeof s->auth_mech, arg, arg_len);
        char *sp = strchr(s->auth_mech, ' ');
        if (sp) *sp = 0;
    }
}

static void on_auth(struct control_session *s, const struct event_auth_facts *a)
{
    if (a->user && a->user[0]) snprintf(s->auth_user, sizeof s->auth_user, "%s", a->user);
    if (a->outcome) {
        snprintf(s->auth_outcome, sizeof s->auth_outcome, "%s", a->outcome);
        s->auth_code = a->code;
    }
}

static void on_reply(struct control_session *s, const struct event *ev)
{
    if (ev->to_smtptap) return;
    bool edited = ev->facts && ev->facts->reply.edited_from;
    if (edited) return; /* the server's own reply was counted */
    s->replies++;
    if (!ev->local) s->bytes_down += ev->len;
    int code = ev->facts ? ev->facts->reply.code : 0;
    if (code >= 200 && code < 600) s->codes[code / 100 - 2]++;
    copy_line(s->last_reply, sizeof s->last_reply, ev->bytes, ev->len);
    uint64_t lat = ev->facts ? ev->facts->reply.latency_ns : 0;
    if (lat) {
        s->last_latency_ns = lat;
        if (lat > s->max_latency_ns) s->max_latency_ns = lat;
        s->server_wait_ns += lat;
    }
}

static void on_tls(struct control_session *s, const struct event_tls_facts *t)
{
    struct control_tls *x = t->upstream ? &s->tls_upstream : &s->tls_client;
    x->on = true;
    copy_text(x->version, sizeof x->version, t->version);
    copy_text(x->cipher, sizeof x->cipher, t->cipher);
    copy_text(x->sni, sizeof x->sni, t->sni);
    copy_text(x->verify, sizeof x->verify, t->verify);
}

static bool kept_in_events(const struct control_store *st, const struct event *ev)
{
    if (ev->kind == EV_WIRE || ev->kind == EV_BODY) return false; /* as jsonl: pcap's, eml's */
    return !(ev->kind == EV_CONTENT && ev->past_preview && !st->whole_messages);
}

struct control_session *control_store_event(struct control_store *st, const struct event *ev)
{
    uint64_t seq = ++st->seq;
    struct control_session *s =
        ev->kind == EV_START ? new_record(st, ev) : control_store_find(st, ev->session);
    if (!s) return NULL;
    s->t_ns = ev->t_ns;
    s->changed = true;
    const struct event *copy = kept_in_events(st, ev) ? store_event(st, s, ev, seq) : NULL;
    switch (ev->kind) {
    case EV_COMMAND: on_command(st, s, ev); break;
    case EV_REPLY: on_reply(s, ev); break;
    case EV_UPSTREAM:
        if (ev->facts) s->upstream = ev->facts->endpoints.a;
        break;
    case EV_INFO:
        if (ev->facts) on_tls(s, &ev->facts->tls);
        break;
    case EV_MESSAGE:
        s->messages++;
        st->totals.messages++;
        break;
    case EV_FAULT:
        if (ev->facts && !ev->facts->fault.change) {
            s->faults++;
            st->totals.faults_fired++;
        }
        break;
    case EV_LINT:
        s->lint++;
        st->totals.lint++;
        break;
    case EV_ERROR: s->errors++; break;
    case EV_AUTH:
        if (ev->facts) on_auth(s, &ev->facts->auth);
        break;
    case EV_VERDICT: s->verdict = copy; break;
    case EV_END:
        s->end = copy;
        if (ev->facts) {
            s->bytes_up = ev->facts->end.bytes_up;
            s->bytes_down = ev->facts->end.bytes_down;
            s->server_wait_ns = ev->facts->end.server_wait_ns;
        }
        st->totals.bytes_up += s->bytes_up;
        st->totals.bytes_down += s->bytes_down;
        s->live = false;
        s->ended_us = ev->wall_us;
        st->live--;
        st->ended++;
        trim_ended(st);
        return control_store_find(st, ev->session); /* NULL when recent_max is 0 */
    default: break;
    }
    return s;
}

void control_session_each_numbered(const struct control_session *s,
                                   bool (*fn)(void *ctx, uint64_t seq, const struct event *ev),
                                   void *ctx)
{
    for (const struct control_event_chunk *c = s->first; c; c = c->next)
        for (size_t at = 0; at < c->used;) {
            const struct stored_head *h = (const struct stored_head *)(c->mem + at);
            if (!fn(ctx, h->seq, (const struct event *)(c->mem + at + HEAD_SIZE))) return;
            at += HEAD_SIZE + h->size;
        }
}

struct unnumbered {
    bool (*fn)(void *ctx, const struct event *ev);
    void *ctx;
};

static bool without_number(void *ctx, uint64_t seq, const struct event *ev)
{
    (void)seq;
    const struct unnumbered *u = ctx;
    return u->fn(u->ctx, ev);
}

void control_session_each_event(const struct control_session *s,
                                bool (*fn)(void *ctx, const struct event *ev), void *ctx)
{
    struct unnumbered u = {fn, ctx};
    control_session_each_numbered(s, without_number, &u);
}
