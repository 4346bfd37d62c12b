/* watch_writer.c - the live transcript limited to the sessions --only and --session pick,
 * whole or, with --summary, one line per finished session (see watch_writer.h). Each session
 * it has seen and not yet seen end has an entry in a small hash table: its decision, the
 * lines held back until its hello name decides, and its summary. */
#include "smtptap/watch_writer.h"

#include <stdlib.h>
#include <string.h>

#include "smtptap/text.h"
#include "smtptap/watch.h"

enum { HOLD_MAX = 64 * 1024 }; /* lines kept for a session --only has not decided on */

enum show { SHOW, HIDE, UNDECIDED };

struct watched {
    struct watched *next; /* in its bucket */
    uint64_t id;
    enum show show;
    struct buf held; /* UNDECIDED: the lines so far */
    struct watch_summary sum;
};

struct watch_writer {
    struct event_writer base;
    FILE *stream;
    bool color, whole_messages, summary;
    struct watch_filter filter;
    const char *upstream; /* what a summary names when no upstream connected */
    struct watched **buckets;
    size_t nbuckets, count;
    struct buf line;
};

/* ---- the table ---------------------------------------------------------------------------- */

static struct watched **slot(struct watch_writer *w, uint64_t id)
{
    struct watched **p = &w->buckets[(id * 0x9E3779B97F4A7C15ull >> 32) & (w->nbuckets - 1)];
    while (*p && (*p)->id != id) p = &(*p)->next;
    return p;
}

static void grow(struct watch_writer *w)
{
    struct watched **old = w->buckets;
    size_t n = w->nbuckets;
    w->nbuckets = n * 2;
    w->buckets = calloc(w->nbuckets, sizeof *w->buckets);
    if (!w->buckets) abort();
    for (size_t i = 0; i < n; i++)
        for (struct watched *e = old[i], *next; e; e = next) {
            next = e->next;
            e->next = NULL;
            *slot(w, e->id) = e;
        }
    free(old);
}

/* What the filter says before anything is known of the session but its number. */
static enum show first_decision(const struct watch_writer *w, uint64_t id)
{
    if (!watch_filters(&w->filter) || watch_picks_number(&w->filter, id)) return SHOW;
    return w->filter.nglobs ? UNDECIDED : HIDE;
}

static struct watched *entry(struct watch_writer *w, uint64_t id)
{
    struct watched **p = slot(w, id);
    if (*p) return *p;
    if (w->count >= w->nbuckets) {
        grow(w);
        p = slot(w, id);
    }
    struct watched *e = calloc(1, sizeof *e);
    if (!e) abort();
    e->id = id;
    e->show = first_decision(w, id);
    buf_init(&e->held);
    watch_summary_init(&e->sum, id, w->upstream);
    *p = e;
    w->count++;
    return e;
}

static void forget(struct watch_writer *w, struct watched *e)
{
    *slot(w, e->id) = e->next;
    w->count--;
    buf_free(&e->held);
    free(e);
}

/* ---- deciding ------------------------------------------------------------------------------ */

static void put(struct watch_writer *w, const struct buf *b)
{
    if (buf_size(b)) fwrite(buf_head(b), 1, buf_size(b), w->stream);
}

static void decide(struct watch_writer *w, struct watched *e, enum show show)
{
    e->show = show;
    if (show == SHOW && !w->summary) put(w, &e->held);
    buf_free(&e->held);
    buf_init(&e->held);
}

/* --only: the client's address at the start, else the name of its first hello. */
static void follow_filter(struct watch_writer *w, struct watched *e, const struct event *ev)
{
    char name[WATCH_NAME_MAX];
    if (ev->kind == EV_START && ev->facts) {
        struct watch_summary first;
        watch_summary_init(&first, ev->session, "");
        watch_summary_feed(&first, ev);
        if (watch_picks_address(&w->filter, first.client)) decide(w, e, SHOW);
    } else if (ev->kind == EV_COMMAND && watch_hello_name(ev->bytes, ev->len, name, sizeof name)) {
        decide(w, e, watch_picks_text(&w->filter, name) ? SHOW : HIDE);
    }
}

static void watch_write(struct event_writer *base, const struct event *ev)
{
    struct watch_writer *w = (struct watch_writer *)base;
    struct watched *e = entry(w, ev->session);
    if (e->show == UNDECIDED) follow_filter(w, e, ev);
    if (w->summary) {
        watch_summary_feed(&e->sum, ev);
    } else if (e->show != HIDE) {
        buf_reset(&w->line);
        text_format_live(ev, w->color, w->whole_messages, &w->line);
        if (e->show == SHOW) put(w, &w->line);
        if (e->show == UNDECIDED) buf_append(&e->held, buf_head(&w->line), buf_size(&w->line));
        if (buf_size(&e->held) > HOLD_MAX) decide(w, e, HIDE); /* a hello that never comes */
    }
    if (ev->kind != EV_END) return;
    if (w->summary && e->show == SHOW) {
        buf_reset(&w->line);
        watch_summary_format(&e->sum, &w->line);
        put(w, &w->line);
        fflush(w->stream); /* EV_END comes after the loop's flush of this iteration */
    }
    forget(w, e);
}

static void watch_close(struct event_writer *base)
{
    struct watch_writer *w = (struct watch_writer *)base;
    fflush(w->stream);
    for (size_t i = 0; i < w->nbuckets; i++)
        while (w->buckets[i]) forget(w, w->buckets[i]);
    free(w->buckets);
    buf_free(&w->line);
    free(w);
}

struct event_writer *watch_live_writer_new(FILE *stream, bool color, const struct config *cfg)
{
    bool whole = cfg->verbosity > 0;
    if (!cfg->summary && !watch_filters(&cfg->watch))
        return text_live_writer_new(stream, color, whole);
    struct watch_writer *w = calloc(1, sizeof *w);
    if (!w) abort();
    w->base.write = watch_write;
    w->base.close = watch_close;
    w->stream = stream;
    w->color = color;
    w->whole_messages = whole;
    w->summary = cfg->summary;
    w->filter = cfg->watch;
    w->upstream = cfg->upstream.kind == UPSTREAM_SINK ? "sink" : "-";
    w->nbuckets = 64;
    w->buckets = calloc(w->nbuckets, sizeof *w->buckets);
    if (!w->buckets) abort();
    buf_init(&w->line);
    return &w->base;
}
