/* event_copy.c - one event, with everything it points to, copied into one block (see
 * event_copy.h). The facts' pointers are the only part that needs knowing per kind. */
#include "smtptap/event_copy.h"

#include <stdalign.h>
#include <stdint.h>
#include <string.h>

/* Where the copy is being laid out; with mem NULL it only counts. */
struct layout {
    unsigned char *mem;
    size_t used;
};

static void *take(struct layout *l, size_t size, size_t align)
{
    l->used = (l->used + align - 1) / align * align;
    void *at = l->mem ? l->mem + l->used : NULL;
    l->used += size;
    return at;
}

static const void *copy_bytes(struct layout *l, const void *src, size_t len)
{
    if (!src) return NULL;
    void *at = take(l, len, 1);
    if (at && len) memcpy(at, src, len);
    return l->mem ? at : src;
}

static const char *copy_str(struct layout *l, const char *s)
{
    return s ? copy_bytes(l, s, strlen(s) + 1) : NULL;
}

static void copy_tls(struct layout *l, struct event_tls_facts *t)
{
    t->version = copy_str(l, t->version);
    t->cipher = copy_str(l, t->cipher);
    t->sni = copy_str(l, t->sni);
    t->peer_subject = copy_str(l, t->peer_subject);
    t->peer_issuer = copy_str(l, t->peer_issuer);
    t->peer_sha256 = copy_str(l, t->peer_sha256);
    t->verify = copy_str(l, t->verify);
}

static void copy_delivery(struct layout *l, struct event_delivery_facts *d)
{
    d->helo = copy_str(l, d->helo);
    d->mail_from = copy_str(l, d->mail_from);
    d->reply = copy_bytes(l, d->reply, d->reply_len);
    if (!d->rcpts) return;
    const char **rcpts = take(l, d->nrcpts * sizeof *rcpts, alignof(const char *));
    for (size_t i = 0; i < d->nrcpts; i++) {
        const char *r = copy_str(l, d->rcpts[i]);
        if (rcpts) rcpts[i] = r;
    }
    if (rcpts) d->rcpts = rcpts;
}

static void copy_verdict(struct layout *l, struct event_verdict_facts *v)
{
    v->cert = copy_str(l, v->cert);
    v->starttls = copy_str(l, v->starttls);
    v->action = copy_str(l, v->action);
    v->alert = copy_str(l, v->alert);
    v->auth_mech = copy_str(l, v->auth_mech);
    v->auth_user = copy_str(l, v->auth_user);
}

static void copy_auth(struct layout *l, struct event_auth_facts *a)
{
    a->mechanism = copy_str(l, a->mechanism);
    a->step = copy_str(l, a->step);
    a->user = copy_str(l, a->user);
    a->outcome = copy_str(l, a->outcome);
    for (size_t i = 0; i < a->nfields && i < EVENT_AUTH_FIELDS_MAX; i++) {
        a->names[i] = copy_str(l, a->names[i]);
        a->values[i] = copy_str(l, a->values[i]);
    }
}

/* The facts' strings, by the kind that says which member is in use. */
static void copy_facts(struct layout *l, enum event_kind kind, union event_facts *f)
{
    switch (kind) {
    case EV_INFO: copy_tls(l, &f->tls); break; /* facts only for a TLS handshake */
    case EV_REPLY:
        f->reply.edited_from = copy_bytes(l, f->reply.edited_from, f->reply.edited_from_len);
        break;
    case EV_LINT: f->lint.id = copy_str(l, f->lint.id); break;
    case EV_FAULT:
        f->fault.rule = copy_str(l, f->fault.rule);
        f->fault.action = copy_str(l, f->fault.action);
        f->fault.change = copy_str(l, f->fault.change);
        break;
    case EV_MESSAGE:
    case EV_BODY: f->message.sha256 = copy_str(l, f->message.sha256); break;
    case EV_DELIVERY: copy_delivery(l, &f->delivery); break;
    case EV_VERDICT: copy_verdict(l, &f->verdict); break;
    case EV_AUTH: copy_auth(l, &f->auth); break;
    default: break; /* endpoints, end: no pointers */
    }
}

static struct event *lay_out(struct layout *l, const struct event *ev)
{
    struct event *copy = take(l, sizeof *copy, alignof(max_align_t));
    struct event scratch = *ev; /* counting: the pointers stay the source's */
    struct event *c = copy ? copy : &scratch;
    *c = *ev;
    c->bytes = copy_bytes(l, ev->bytes, ev->len);
    c->text = copy_str(l, ev->text);
    if (ev->facts) {
        union event_facts *f = take(l, sizeof *f, alignof(union event_facts));
        union event_facts fscratch = *ev->facts;
        union event_facts *fc = f ? f : &fscratch;
        *fc = *ev->facts;
        copy_facts(l, ev->kind, fc);
        c->facts = f ? f : ev->facts;
    }
    l->used = (l->used + alignof(max_align_t) - 1) / alignof(max_align_t) * alignof(max_align_t);
    return copy;
}

size_t event_copy_size(const struct event *ev)
{
    struct layout l = {NULL, 0};
    lay_out(&l, ev);
    return l.used;
}

struct event *event_copy_into(void *mem, const struct event *ev)
{
    struct layout l = {mem, 0};
    return lay_out(&l, ev);
}
