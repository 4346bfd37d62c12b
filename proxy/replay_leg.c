/* replay_leg.c - the recorded server behind the leg interface (replay_leg.h). Replies are
 * queued with the time they are due and handed over from a timer, so the session never sees
 * a reply inside its own write call. */
#include "smtptap/replay_leg.h"

#include <stdlib.h>
#include <string.h>

struct replay_due {
    uint8_t *bytes;
    size_t len;
    uint64_t at; /* loop time, ms */
};

static void arm(struct replay_leg *k);

static bool pending(const struct replay_leg *k)
{
    return k->ndue || ((k->eof || k->smtp.quit) && !k->eof_sent);
}

static void queue_reply(void *ctx, const uint8_t *bytes, size_t len, double delay_ms)
{
    struct replay_leg *k = ctx;
    if (k->ndue == k->cap) {
        k->cap = k->cap ? k->cap * 2 : 8;
        k->due = realloc(k->due, k->cap * sizeof *k->due);
        if (!k->due) abort();
    }
    uint64_t now = uv_now(k->loop);
    uint64_t from = k->last_due > now ? k->last_due : now;
    struct replay_due *d = &k->due[k->ndue++];
    d->bytes = malloc(len ? len : 1);
    if (!d->bytes) abort();
    memcpy(d->bytes, bytes, len);
    d->len = len;
    d->at = k->last_due = from + (uint64_t)delay_ms;
    k->base.queued += len;
}

static void note(void *ctx, const char *text)
{
    struct replay_leg *k = ctx;
    if (k->note) k->note(k->base.owner, text);
}

/* Hands every reply that is due to the session, then the EOF once nothing is left. */
static void deliver_cb(uv_timer_t *h)
{
    struct replay_leg *k = h->data;
    if (k->base.closing || !k->base.reading) return;
    uint64_t now = uv_now(k->loop);
    while (k->ndue && k->due[0].at <= now && k->base.reading && !k->base.closing) {
        struct replay_due d = k->due[0];
        memmove(k->due, k->due + 1, (k->ndue - 1) * sizeof *k->due);
        k->ndue--;
        k->base.queued -= d.len;
        k->base.ev->on_read(&k->base, d.bytes, d.len); /* the session copies what it keeps */
        free(d.bytes);
    }
    if (k->base.closing) return;
    if (!k->ndue && (k->eof || k->smtp.quit) && !k->eof_sent) {
        k->eof_sent = true;
        k->base.ev->on_eof(&k->base);
        return;
    }
    arm(k);
}

static void arm(struct replay_leg *k)
{
    if (!pending(k) || !k->base.reading || k->base.closing) return;
    uint64_t now = uv_now(k->loop);
    uint64_t at = k->ndue ? k->due[0].at : now;
    uv_timer_start(&k->timer, deliver_cb, at > now ? at - now : 0, 0);
}

static void replay_read_start(struct leg *l)
{
    l->reading = true;
    arm((struct replay_leg *)l);
}

static void replay_read_stop(struct leg *l)
{
    l->reading = false;
    uv_timer_stop(&((struct replay_leg *)l)->timer);
}

static void replay_write(struct leg *l, const uint8_t *bytes, size_t len)
{
    struct replay_leg *k = (struct replay_leg *)l;
    replay_smtp_input(&k->smtp, bytes, len);
    arm(k);
}

static void replay_shutdown(struct leg *l)
{
    struct replay_leg *k = (struct replay_leg *)l;
    k->eof = true;
    arm(k);
}

static void replay_close_cb(uv_handle_t *h)
{
    struct replay_leg *k = h->data;
    replay_smtp_free(&k->smtp);
    for (size_t i = 0; i < k->ndue; i++) free(k->due[i].bytes);
    free(k->due);
    k->due = NULL;
    k->ndue = 0;
    k->base.ev->on_closed(&k->base);
}

static void replay_close(struct leg *l)
{
    struct replay_leg *k = (struct replay_leg *)l;
    l->reading = false;
    uv_close((uv_handle_t *)&k->timer, replay_close_cb);
}

static void replay_end(struct leg *l)
{
    leg_close(l);
}

static const struct leg_ops replay_ops = {replay_read_start, replay_read_stop, replay_write,
                                          replay_shutdown,   replay_end,       replay_close};

void replay_leg_init(struct replay_leg *k, uv_loop_t *loop, const struct leg_events *ev,
                     void *owner, const struct capture_dialog *d, bool strict, double speed,
                     void (*note_fn)(void *owner, const char *text))
{
    memset(k, 0, sizeof *k);
    k->base.ops = &replay_ops;
    k->base.ev = ev;
    k->base.owner = owner;
    k->loop = loop;
    k->note = note_fn;
    uv_timer_init(loop, &k->timer);
    k->timer.data = k;
    struct replay_smtp_out out = {queue_reply, note, k};
    replay_smtp_init(&k->smtp, d, strict, speed, &out);
}
