/* envelope.c - pure: the accepted envelope of the transaction in progress (see envelope.h). */
#include "smtptap/envelope.h"

#include <string.h>

void envelope_init(struct envelope *e)
{
    memset(e, 0, sizeof *e);
    buf_init(&e->mail);
    buf_init(&e->rcpts);
    buf_init(&e->pending);
}

void envelope_free(struct envelope *e)
{
    buf_free(&e->mail);
    buf_free(&e->rcpts);
    buf_free(&e->pending);
}

/* The line without its CRLF (or LF), cut at ENVELOPE_LINE_MAX, NUL bytes made '?'. */
static void append_line(struct buf *b, const uint8_t *line, size_t len)
{
    while (len && (line[len - 1] == '\n' || line[len - 1] == '\r')) len--;
    if (len > ENVELOPE_LINE_MAX) len = ENVELOPE_LINE_MAX;
    for (size_t i = 0; i < len; i++) {
        uint8_t c = line[i] ? line[i] : '?';
        buf_append(b, &c, 1);
    }
    buf_append(b, "", 1);
}

/* Removes the oldest waiting line; copies it to out (with its NUL) when out is not NULL. */
static void pop_pending(struct envelope *e, struct buf *out)
{
    const uint8_t *head = buf_head(&e->pending);
    size_t n = strlen((const char *)head) + 1;
    if (out) buf_append(out, head, n);
    buf_consume(&e->pending, n);
    e->npending--;
}

void envelope_command(struct envelope *e, enum smtp_verb verb, const uint8_t *line, size_t len)
{
    if (verb != SMTP_VERB_MAIL && verb != SMTP_VERB_RCPT) return;
    if (e->npending == ENVELOPE_MAX_PENDING) pop_pending(e, NULL);
    append_line(&e->pending, line, len);
    e->npending++;
}

void envelope_reply(struct envelope *e, enum smtp_verb verb, int code)
{
    if ((verb != SMTP_VERB_MAIL && verb != SMTP_VERB_RCPT) || e->npending == 0) return;
    bool accepted = code >= 200 && code < 300;
    if (!accepted) {
        pop_pending(e, NULL);
        return;
    }
    if (verb == SMTP_VERB_MAIL) {
        envelope_reset(e);
        pop_pending(e, &e->mail);
        return;
    }
    if (e->nrcpts == ENVELOPE_MAX_RCPTS) {
        pop_pending(e, NULL);
        return;
    }
    pop_pending(e, &e->rcpts);
    e->nrcpts++;
}

void envelope_reset(struct envelope *e)
{
    buf_reset(&e->mail);
    buf_reset(&e->rcpts);
    e->nrcpts = 0;
}

size_t envelope_rcpts(const struct envelope *e, const char **out, size_t max)
{
    const char *p = (const char *)buf_head(&e->rcpts);
    size_t n = 0;
    for (size_t i = 0; i < e->nrcpts && n < max; i++) {
        out[n++] = p;
        p += strlen(p) + 1;
    }
    return n;
}

const char *envelope_mail(const struct envelope *e)
{
    return buf_size(&e->mail) ? (const char *)buf_head(&e->mail) : "";
}
