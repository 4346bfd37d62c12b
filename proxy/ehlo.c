/* ehlo.c - pure EHLO reply editing (see ehlo.h). */
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
