/* writer_thread.c - the writer thread and the bounded queue in front of it (see
 * writer_thread.h). The loop appends items to a batch of blocks; a uv_prepare hook hands the
 * batch over once per loop iteration, under one lock. The thread takes everything queued at
 * once, writes it, frees the blocks and wakes the loop if it was waiting for room. */
#include "smtptap/writer_thread.h"

#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "smtptap/event_copy.h"

enum {
    BLOCK_SIZE = 256 * 1024,
    HAND_OVER_AT = 1024 * 1024,
    SPARE_MAX = 16,
    HOLD_MS = 10, /* the longest a batch nobody waits for stays with the loop */
};

struct block {
    struct block *next;
    size_t used, cap;
    alignas(max_align_t) unsigned char data[];
};

/* ITEM_LINES: message lines (EV_CONTENT) in a row that differ only in their bytes, in one
 * item: a struct lines, then each line as its length (uint32_t) and its bytes. A 20 MB
 * message in a text capture is some 250,000 lines: one copy of the event each would cost
 * the loop more than the line. */
enum item_op { ITEM_WRITE, ITEM_CLOSE, ITEM_LINES };

struct item {
    alignas(max_align_t) struct event_writer *capture;
    enum item_op op;
    size_t size; /* the whole item, this header included */
};

struct batch {
    struct block *first, *last;
    size_t bytes;
};

struct lines {
    struct event ev; /* the lines' event, without bytes */
    size_t used;     /* bytes of lines after this header */
    unsigned char data[];
};

enum { LINE_MAX_COALESCED = 4096 };

struct writer_thread {
    struct event_writer *live, *stream; /* the thread's only */
    FILE *flush;                        /* flushed after each hand-over is written */
    uv_prepare_t hand_over;             /* the loop's side: once per iteration */
    uv_timer_t hold;                    /* the loop's: hands over a batch held HOLD_MS */
    bool urgent;          /* the loop's: the batch being filled ends a session's files */
    struct batch filling; /* the loop's side: not yet handed over */
    struct block *reuse;  /* the loop's: written blocks to fill again */
    struct item *lines;   /* the loop's: the last item being filled, when ITEM_LINES */
    uv_thread_t thread;
    uv_mutex_t lock; /* the rest is shared, under lock */
    uv_cond_t work, room;
    struct batch queued;
    size_t behind; /* bytes handed over and not yet written */
    size_t max_behind;
    bool stopping;
    struct block *spare; /* written blocks of BLOCK_SIZE, back for the loop to reuse */
    size_t nspare;
    uint64_t posted;           /* the loop's: items queued so far (the last one's mark) */
    _Atomic uint64_t done;     /* the thread's: items written so far */
    _Atomic size_t nwaits;     /* the loop's: waits registered; the thread wakes it only then */
    struct writer_wait *waits; /* the loop's */
    uv_async_t written;        /* the thread tells the loop that waits may be over */
    int closed;                /* handles closed (at stop) */
    /* The thread's: the capture writers written since it last flushed them. */
    struct event_writer **dirty;
    size_t ndirty, dirty_cap;
};

static size_t round_up(size_t n)
{
    return (n + alignof(max_align_t) - 1) / alignof(max_align_t) * alignof(max_align_t);
}

static void batch_append(struct batch *to, struct batch *from)
{
    if (!from->first) return;
    if (to->last)
        to->last->next = from->first;
    else
        to->first = from->first;
    to->last = from->last;
    to->bytes += from->bytes;
    *from = (struct batch){0};
}

/* Room for size bytes at the end of the batch being filled: in a block the thread gave back
 * when there is one (no malloc, no fresh pages), else a new one. */
static void *reserve(struct writer_thread *t, size_t size)
{
    struct batch *b = &t->filling;
    if (!b->last || b->last->cap - b->last->used < size) {
        size_t cap = size > BLOCK_SIZE ? size : BLOCK_SIZE;
        struct block *blk = cap == BLOCK_SIZE ? t->reuse : NULL;
        if (blk)
            t->reuse = blk->next;
        else if (!(blk = malloc(sizeof *blk + cap)))
            abort();
        blk->next = NULL;
        blk->used = 0;
        blk->cap = cap;
        if (b->last)
            b->last->next = blk;
        else
            b->first = blk;
        b->last = blk;
    }
    void *at = b->last->data + b->last->used;
    b->last->used += size;
    b->bytes += size;
    return at;
}

static void hand_over(struct writer_thread *t)
{
    t->lines = NULL; /* the thread's from here on */
    t->urgent = false;
    if (!t->filling.first) return;
    size_t bytes = t->filling.bytes;
    uv_mutex_lock(&t->lock);
    /* The thread is far behind (a slow disk): the loop waits, so nothing grows unbounded. */
    while (t->behind > 0 && t->behind + bytes > t->max_behind) uv_cond_wait(&t->room, &t->lock);
    batch_append(&t->queued, &t->filling);
    t->behind += bytes;
    if (!t->reuse) { /* take what the thread gave back */
        t->reuse = t->spare;
        t->spare = NULL;
        t->nspare = 0;
    }
    uv_cond_signal(&t->work);
    uv_mutex_unlock(&t->lock);
}

static void hold_cb(uv_timer_t *h)
{
    hand_over(h->data);
}

/* Once per loop iteration. Without a live transcript or a stream, what nobody waits for (a
 * command before its reply, a message's lines before its end) may wait for the next batch:
 * a file is flushed only when a reply, delivery or end is written to it anyway, and each
 * hand-over wakes the thread. A reply waiting to be sent, a session's end, a big batch, or
 * HOLD_MS go at once. */
static void hand_over_cb(uv_prepare_t *h)
{
    struct writer_thread *t = h->data;
    if (!t->filling.first) return;
    if (t->live || t->stream || t->urgent || t->filling.bytes >= HAND_OVER_AT ||
        atomic_load_explicit(&t->nwaits, memory_order_relaxed)) {
        hand_over(t);
        return;
    }
    if (!uv_is_active((uv_handle_t *)&t->hold)) uv_timer_start(&t->hold, hold_cb, HOLD_MS, 0);
}

uint64_t writer_thread_written(const struct writer_thread *t)
{
    return atomic_load_explicit(&((struct writer_thread *)t)->done, memory_order_acquire);
}

/* The thread wrote something: the waits it reached are over. */
static void written_cb(uv_async_t *h)
{
    struct writer_thread *t = h->data;
    uint64_t done = writer_thread_written(t);
    struct writer_wait **at = &t->waits;
    while (*at) {
        struct writer_wait *w = *at;
        if (w->mark > done) {
            at = &w->next;
            continue;
        }
        *at = w->next;
        w->waiting = false;
        atomic_fetch_sub_explicit(&t->nwaits, 1, memory_order_release);
        w->cb(w); /* may wait again: it goes to the head, before this point */
    }
}

static void mark_dirty(struct writer_thread *t, struct event_writer *w)
{
    if (w->dirty || !w->flush) return;
    if (t->ndirty == t->dirty_cap) {
        size_t cap = t->dirty_cap ? 2 * t->dirty_cap : 64;
        struct event_writer **d = realloc(t->dirty, cap * sizeof *d);
        if (!d) abort();
        t->dirty = d;
        t->dirty_cap = cap;
    }
    t->dirty[t->ndirty++] = w;
    w->dirty = true;
}

static void forget_dirty(struct writer_thread *t, struct event_writer *w)
{
    if (!w->dirty) return;
    for (size_t i = 0; i < t->ndirty; i++)
        if (t->dirty[i] == w) t->dirty[i] = NULL;
    w->dirty = false;
}

/* Everything handed over is written: readable in the files now. */
static void flush_dirty(struct writer_thread *t)
{
    for (size_t i = 0; i < t->ndirty; i++) {
        if (!t->dirty[i]) continue;
        t->dirty[i]->dirty = false;
        t->dirty[i]->flush(t->dirty[i]);
    }
    t->ndirty = 0;
}

static void write_event(struct writer_thread *t, const struct item *it, const struct event *ev)
{
    if (it->capture) {
        it->capture->write(it->capture, ev);
        /* Flushed once this hand-over is written when the client is to get something: a
         * file is complete up to the last reply (a command alone waits for its reply). */
        if (ev->kind == EV_REPLY || ev->kind == EV_DELIVERY || ev->kind == EV_END)
            mark_dirty(t, it->capture);
    }
    if (t->stream) t->stream->write(t->stream, ev);
    if (t->live) t->live->write(t->live, ev);
}

static void write_lines(struct writer_thread *t, const struct item *it)
{
    const struct lines *l = (const struct lines *)((const unsigned char *)it + sizeof *it);
    struct event ev = l->ev;
    for (size_t at = 0; at < l->used;) {
        uint32_t len;
        memcpy(&len, l->data + at, sizeof len);
        ev.bytes = l->data + at + sizeof len;
        ev.len = len;
        write_event(t, it, &ev);
        at += sizeof len + len;
    }
}

static void write_item(struct writer_thread *t, const struct item *it)
{
    switch (it->op) {
    case ITEM_CLOSE:
        forget_dirty(t, it->capture);
        it->capture->close(it->capture); /* which flushes it */
        return;
    case ITEM_LINES: write_lines(t, it); return;
    case ITEM_WRITE:
        write_event(t, it, (const struct event *)((const unsigned char *)it + sizeof *it));
        return;
    }
}

static void thread_main(void *arg)
{
    struct writer_thread *t = arg;
    for (;;) {
        uv_mutex_lock(&t->lock);
        while (!t->queued.first && !t->stopping) uv_cond_wait(&t->work, &t->lock);
        struct batch todo = t->queued;
        uint64_t items = 0;
        t->queued = (struct batch){0};
        bool last = t->stopping && !todo.first;
        uv_mutex_unlock(&t->lock);
        if (last) return;
        struct block *done_blocks = NULL;
        for (struct block *b = todo.first, *next; b; b = next) {
            next = b->next;
            for (size_t at = 0; at < b->used;) {
                const struct item *it = (const struct item *)(b->data + at);
                write_item(t, it);
                items++;
                at += it->size;
            }
            b->next = done_blocks;
            done_blocks = b;
        }
        flush_dirty(t);
        if (t->flush) fflush(t->flush);
        /* Written only once flushed: a reply waiting for these goes to the client when
         * another process can read them. */
        atomic_fetch_add_explicit(&t->done, items, memory_order_release);
        if (atomic_load_explicit(&t->nwaits, memory_order_acquire)) uv_async_send(&t->written);
        uv_mutex_lock(&t->lock);
        t->behind -= todo.bytes;
        while (done_blocks) { /* back to the loop, up to SPARE_MAX of the usual size */
            struct block *b = done_blocks;
            done_blocks = b->next;
            if (b->cap != BLOCK_SIZE || t->nspare >= SPARE_MAX) {
                free(b);
                continue;
            }
            b->next = t->spare;
            t->spare = b;
            t->nspare++;
        }
        uv_cond_signal(&t->room);
        uv_mutex_unlock(&t->lock);
    }
}

struct writer_thread *writer_thread_start(uv_loop_t *loop, struct event_writer *live,
                                          struct event_writer *stream, FILE *flush,
                                          size_t max_behind)
{
    struct writer_thread *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->live = live;
    t->stream = stream;
    t->flush = flush;
    t->max_behind = max_behind;
    if (uv_mutex_init(&t->lock) != 0) goto no_mutex;
    if (uv_cond_init(&t->work) != 0) goto no_work;
    if (uv_cond_init(&t->room) != 0) goto no_room;
    if (uv_thread_create(&t->thread, thread_main, t) != 0) goto no_thread;
    uv_prepare_init(loop, &t->hand_over);
    t->hand_over.data = t;
    uv_prepare_start(&t->hand_over, hand_over_cb);
    uv_unref((uv_handle_t *)&t->hand_over); /* neither must keep the loop alive */
    uv_async_init(loop, &t->written, written_cb);
    t->written.data = t;
    uv_unref((uv_handle_t *)&t->written);
    uv_timer_init(loop, &t->hold);
    t->hold.data = t;
    uv_unref((uv_handle_t *)&t->hold);
    return t;
no_thread:
    uv_cond_destroy(&t->room);
no_room:
    uv_cond_destroy(&t->work);
no_work:
    uv_mutex_destroy(&t->lock);
no_mutex:
    free(t);
    return NULL;
}

static struct item *new_item(struct writer_thread *t, enum item_op op, struct event_writer *capture,
                             size_t extra)
{
    t->posted++;
    t->lines = NULL; /* another item follows it */
    size_t size = round_up(sizeof(struct item)) + extra;
    struct item *it = reserve(t, size);
    it->capture = capture;
    it->op = op;
    it->size = size;
    return it;
}

/* A message line that can join the lines item being filled: the same writer and event but
 * for the bytes (the same piece of content: one clock reading). */
static bool joins(const struct writer_thread *t, struct event_writer *capture,
                  const struct event *ev)
{
    if (!t->lines || t->lines->capture != capture) return false;
    const struct event *l =
        &((const struct lines *)((const unsigned char *)t->lines + sizeof(struct item)))->ev;
    return l->session == ev->session && l->t_ns == ev->t_ns && l->wall_us == ev->wall_us &&
           l->dir == ev->dir && l->tls == ev->tls && l->local == ev->local &&
           l->to_smtptap == ev->to_smtptap && l->past_preview == ev->past_preview;
}

/* Appends a line to the lines item at the end of the batch being filled; false when its
 * block has no room (a new item is started then). */
static bool append_line(struct writer_thread *t, const struct event *ev)
{
    struct block *b = t->filling.last;
    struct item *it = t->lines;
    struct lines *l = (struct lines *)((unsigned char *)it + sizeof *it);
    size_t start = (size_t)((unsigned char *)it - b->data);
    size_t size = round_up(sizeof *it + sizeof *l + l->used + sizeof(uint32_t) + ev->len);
    if (start + size > b->cap) return false;
    uint32_t len = (uint32_t)ev->len;
    memcpy(l->data + l->used, &len, sizeof len);
    if (len) memcpy(l->data + l->used + sizeof len, ev->bytes, len);
    l->used += sizeof len + len;
    b->used = start + size;
    t->filling.bytes += size - it->size;
    it->size = size;
    return true;
}

static void write_line(struct writer_thread *t, struct event_writer *capture,
                       const struct event *ev)
{
    if (joins(t, capture, ev) && append_line(t, ev)) return;
    uint32_t len = (uint32_t)ev->len;
    struct item *it =
        new_item(t, ITEM_LINES, capture, round_up(sizeof(struct lines) + sizeof len + len));
    struct lines *l = (struct lines *)((unsigned char *)it + sizeof *it);
    l->ev = *ev;
    l->ev.bytes = NULL;
    l->ev.len = 0;
    memcpy(l->data, &len, sizeof len);
    if (len) memcpy(l->data + sizeof len, ev->bytes, len);
    l->used = sizeof len + len;
    t->lines = it;
}

void writer_thread_write(struct writer_thread *t, struct event_writer *capture,
                         const struct event *ev)
{
    if (ev->kind == EV_CONTENT && !ev->facts && !ev->text && ev->len <= LINE_MAX_COALESCED) {
        write_line(t, capture, ev);
        if (t->filling.bytes >= HAND_OVER_AT) hand_over(t);
        return;
    }
    size_t size = event_copy_size(ev);
    struct item *it = new_item(t, ITEM_WRITE, capture, size);
    event_copy_into((unsigned char *)it + sizeof *it, ev);
    if (ev->kind == EV_END) t->urgent = true;
    if (t->filling.bytes >= HAND_OVER_AT) hand_over(t); /* a big message: do not wait */
}

void writer_thread_close(struct writer_thread *t, struct event_writer *capture)
{
    new_item(t, ITEM_CLOSE, capture, 0);
    t->urgent = true;
}

uint64_t writer_thread_mark(const struct writer_thread *t)
{
    return t->posted;
}

void writer_thread_wait(struct writer_thread *t, struct writer_wait *w, uint64_t mark,
                        void (*cb)(struct writer_wait *w))
{
    w->mark = mark;
    w->cb = cb;
    if (w->waiting) return;
    w->waiting = true;
    w->next = t->waits;
    t->waits = w;
    atomic_fetch_add_explicit(&t->nwaits, 1, memory_order_release);
    /* Written already (the thread may have looked at nwaits just before): said at once. */
    if (writer_thread_written(t) >= mark) uv_async_send(&t->written);
}

void writer_thread_cancel(struct writer_thread *t, struct writer_wait *w)
{
    if (!w->waiting) return;
    for (struct writer_wait **at = &t->waits; *at; at = &(*at)->next) {
        if (*at != w) continue;
        *at = w->next;
        break;
    }
    w->waiting = false;
    atomic_fetch_sub_explicit(&t->nwaits, 1, memory_order_release);
}

static void closed_cb(uv_handle_t *h)
{
    struct writer_thread *t = h->data;
    if (++t->closed == 3) free(t);
}

void writer_thread_stop(struct writer_thread *t)
{
    hand_over(t);
    uv_mutex_lock(&t->lock);
    t->stopping = true;
    uv_cond_signal(&t->work);
    uv_mutex_unlock(&t->lock);
    uv_thread_join(&t->thread);
    uv_cond_destroy(&t->room);
    uv_cond_destroy(&t->work);
    uv_mutex_destroy(&t->lock);
    free(t->dirty);
    for (struct block *b = t->spare, *next; b; b = next) next = b->next, free(b);
    for (struct block *b = t->reuse, *next; b; b = next) next = b->next, free(b);
    uv_prepare_stop(&t->hand_over);
    uv_close((uv_handle_t *)&t->hand_over, closed_cb);
    uv_close((uv_handle_t *)&t->written, closed_cb);
    uv_timer_stop(&t->hold);
    uv_close((uv_handle_t *)&t->hold, closed_cb);
}
