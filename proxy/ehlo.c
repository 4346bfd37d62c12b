/* ehlo.c - pure EHLO reply editing and comparing (see ehlo.h). */
#include "smtptap/ehlo.h"

#include <string.h>
#include <strings.h>

static size_t line_end(const uint8_t *r, size_t len, size_t start)
{
    const uint8_t *lf = memchr(r + start, '\n', len - start);
    return lf ? (size_t)(lf - r) + 1 : len;
}

bool ehlo_has(const uint8_t *reply, size_t len, const char *keyword)
{
    size_t kw = strlen(keyword);
    size_t start = line_end(reply, len, 0);
    while (start < len) {
        size_t end = line_end(reply, len, start);
        const uint8_t *text = reply + start + 4;
        size_t n = end - start > 4 ? end - start - 4 : 0;
        if (n >= kw && strncasecmp((const char *)text, keyword, kw) == 0 &&
            (n == kw || text[kw] == ' ' || text[kw] == '\r' || text[kw] == '\n' || text[kw] == '='))
            return true;
        start = end;
    }
    return false;
}

void ehlo_add(const uint8_t *reply, size_t len, const char *keyword, struct buf *out)
{
    if (len < 3) return buf_append(out, reply, len);
    size_t first = line_end(reply, len, 0);
    size_t body = first > 4 ? 4 : first, body_end = first;
    while (body_end > body && (reply[body_end - 1] == '\n' || reply[body_end - 1] == '\r'))
        body_end--;
    buf_append(out, reply, 3); /* the first line, now a continuation line */
    buf_append_str(out, "-");
    buf_append(out, reply + body, body_end - body);
    buf_append_str(out, "\r\n");
    buf_append(out, reply, 3);
    buf_append_str(out, first >= len ? " " : "-"); /* last line when the reply had one */
    buf_append_str(out, keyword);
    buf_append_str(out, "\r\n");
    buf_append(out, reply + first, len - first);
}

void ehlo_as_one_line(const uint8_t *reply, size_t len, struct buf *out)
{
    if (len < 3) return buf_append(out, reply, len);
    size_t first = line_end(reply, len, 0), text_end = first;
    while (text_end > 3 && (reply[text_end - 1] == '\n' || reply[text_end - 1] == '\r')) text_end--;
    buf_append(out, reply, 3);
    if (text_end > 4) {
        buf_append_str(out, " ");
        buf_append(out, reply + 4, text_end - 4);
    }
    buf_append_str(out, "\r\n");
}

/* The text of the line at [start, end): after "NNN-" or "NNN ", without its line end. */
static void line_text(const uint8_t *r, size_t start, size_t end, const uint8_t **text, size_t *n)
{
    while (end > start && (r[end - 1] == '\n' || r[end - 1] == '\r')) end--;
    size_t from = end - start > 4 ? start + 4 : end;
    *text = r + from;
    *n = end - from;
}

bool ehlo_has_text(const uint8_t *reply, size_t len, const uint8_t *text, size_t n)
{
    for (size_t start = 0; start < len;) {
        size_t end = line_end(reply, len, start);
        const uint8_t *t;
        size_t tn;
        line_text(reply, start, end, &t, &tn);
        if (tn == n && (n == 0 || memcmp(t, text, n) == 0)) return true;
        start = end;
    }
    return false;
}

void ehlo_lines_not_in(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen,
                       ehlo_line_fn fn, void *ctx)
{
    for (size_t start = 0; start < alen;) {
        size_t end = line_end(a, alen, start);
        const uint8_t *t;
        size_t tn;
        line_text(a, start, end, &t, &tn);
        if (!ehlo_has_text(b, blen, t, tn)) fn(ctx, t, tn);
        start = end;
    }
}
