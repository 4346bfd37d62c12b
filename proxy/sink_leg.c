/* sink_leg.c - the built-in server behind the leg interface. Replies are delivered from an
 * idle callback so the session never sees a reply inside its own write call. */
#include "smtptap/sink_leg.h"

#include <string.h>

static void sink_idle_cb(uv_idle_t *h);

static bool sink_pending(const struct sink_leg *k)
{
    return buf_size(&k->smtp.out) || ((k->eof || k->smtp.quit) && !k->eof_sent);
}

static void deliver_cb(uv_idle_t *h)
{
    struct sink_leg *k = h->data;
    uv_idle_stop(h);
    if (k->base.closing || !k->base.reading) return;
    size_t n = buf_size(&k->smtp.out);
    if (n) {
        /* The session copies what it keeps; consume after the call. */
        struct buf out = k->smtp.out;
        buf_init(&k->smtp.out);
        k->base.queued = 0;
        k->base.ev->on_read(&k->base, buf_head(&out), buf_size(&out));
        buf_free(&out);
        if (k->base.closing) return;
    }
    if ((k->eof || k->smtp.quit) && !k->eof_sent && buf_size(&k->smtp.out) == 0) {
        k->eof_sent = true;
        k->base.ev->on_eof(&k->base);
        return;
    }
    if (sink_pending(k) && k->base.reading) uv_idle_start(h, sink_idle_cb);
}

static void sink_idle_cb(uv_idle_t *h)
{
    deliver_cb(h);
}

static void sink_read_start(struct leg *l)
{
    struct sink_leg *k = (struct sink_leg *)l;
    l->reading = true;
    if (sink_pending(k)) uv_idle_start(&k->deliver, sink_idle_cb);
}

static void sink_read_stop(struct leg *l)
{
    struct sink_leg *k = (struct sink_leg *)l;
    l->reading = false;
    uv_idle_stop(&k->deliver);
}

static void sink_write(struct leg *l, const uint8_t *bytes, size_t len)
{
    struct sink_leg *k = (struct sink_leg *)l;
    sink_smtp_input(&k->smtp, bytes, len);
    /* Undelivered replies count as this leg's queue, so a client that writes without
     * reading is paused by the session like with any upstream. */
    l->queued = buf_size(&k->smtp.out);
    if (l->reading) uv_idle_start(&k->deliver, sink_idle_cb);
}

static void sink_shutdown(struct leg *l)
{
    struct sink_leg *k = (struct sink_leg *)l;
    k->eof = true;
    if (l->reading) uv_idle_start(&k->deliver, sink_idle_cb);
}

static void sink_close_cb(uv_handle_t *h)
{
    struct sink_leg *k = h->data;
    sink_smtp_free(&k->smtp);
    k->base.ev->on_closed(&k->base);
}

static void sink_close(struct leg *l)
{
    struct sink_leg *k = (struct sink_leg *)l;
    l->reading = false;
    uv_close((uv_handle_t *)&k->deliver, sink_close_cb);
}

static void sink_end(struct leg *l)
{
    leg_close(l);
}

static const struct leg_ops sink_ops = {sink_read_start, sink_read_stop, sink_write,
                                        sink_shutdown,   sink_end,       sink_close};

void sink_leg_init(struct sink_leg *k, uv_loop_t *loop, const struct leg_events *ev, void *owner,
                   const char *host, uint64_t session, const struct sink_users *users)
{
    memset(k, 0, sizeof *k);
    k->base.ops = &sink_ops;
    k->base.ev = ev;
    k->base.owner = owner;
    sink_smtp_init(&k->smtp, host, session, users);
    k->base.queued = buf_size(&k->smtp.out);
    uv_idle_init(loop, &k->deliver);
    k->deliver.data = k;
}
