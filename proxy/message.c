/* message.c - the transcript's view of a message in flight (see message.h). */
#include "smtptap/message.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void message_view_begin(struct message_view *m, bool bdat, unsigned max_shown)
{
    memset(m, 0, sizeof *m);
    m->bdat = bdat;
    m->max_shown = max_shown;
    m->at_line_start = true;
    buf_init(&m->line);
    m->sha = EVP_MD_CTX_new();
    if (!m->sha || !EVP_DigestInit_ex(m->sha, EVP_sha256(), NULL)) abort();
}

static bool showing(const struct message_view *m)
{
    return m->max_shown == 0 || m->shown < m->max_shown;
}

static void collect(struct message_view *m, const uint8_t *p, size_t n)
{
    if (!showing(m)) return;
    size_t room = buf_size(&m->line) < MESSAGE_SHOW_LINE_MAX + 2
                      ? MESSAGE_SHOW_LINE_MAX + 2 - buf_size(&m->line)
                      : 0;
    buf_append(&m->line, p, n < room ? n : room);
}

/* Shows the first n collected octets of the line, cut at MESSAGE_SHOW_LINE_MAX (a longer line
 * had no line end collected), and starts the next line. */
static void show_collected(struct message_view *m, size_t n, message_line_fn show, void *ctx)
{
    if (n > MESSAGE_SHOW_LINE_MAX) n = MESSAGE_SHOW_LINE_MAX;
    show(ctx, buf_head(&m->line), n);
    m->shown++;
    buf_reset(&m->line);
}

static void end_line(struct message_view *m, message_line_fn show, void *ctx)
{
    m->lines++;
    if (!showing(m)) return;
    const uint8_t *l = buf_head(&m->line);
    size_t n = buf_size(&m->line);
    if (n && l[n - 1] == '\n') n--;
    if (n && l[n - 1] == '\r') n--;
    show_collected(m, n, show, ctx);
}

/* A line that ended inside one delivered run: shown from where it lies, without collecting
 * it first (what collect and end_line would show: up to MESSAGE_SHOW_LINE_MAX + 2 octets,
 * less the line end, cut at MESSAGE_SHOW_LINE_MAX). */
static void show_direct(struct message_view *m, const uint8_t *l, size_t n, message_line_fn show,
                        void *ctx)
{
    if (n > MESSAGE_SHOW_LINE_MAX + 2) n = MESSAGE_SHOW_LINE_MAX + 2;
    if (n && l[n - 1] == '\n') n--;
    if (n && l[n - 1] == '\r') n--;
    if (n > MESSAGE_SHOW_LINE_MAX) n = MESSAGE_SHOW_LINE_MAX;
    show(ctx, l, n);
    m->shown++;
}

/* Hashes delivered bytes and passes them on: once per run between stuffed dots, not once
 * per line (a digest update and a callback cost the same for 80 octets as for 64 KiB). */
static void pass_on(struct message_view *m, const uint8_t *p, size_t n)
{
    if (!n) return;
    EVP_DigestUpdate(m->sha, p, n);
    if (m->on_body) m->on_body(m->body_ctx, p, n);
}

/* Delivers unstuffed content: hashes it, counts it and splits it into lines. after_cr: the
 * byte delivered just before p[0] was a CR. */
static void deliver(struct message_view *m, const uint8_t *p, size_t n, bool after_cr,
                    message_line_fn show, void *ctx)
{
    const uint8_t *run = p; /* delivered since the last stuffed dot, not yet passed on */
    while (n) {
        if (m->at_line_start && !m->bdat && p[0] == '.') {
            pass_on(m, run, (size_t)(p - run));
            p++, n--; /* dot-stuffing (RFC 5321 4.5.2) */
            run = p;
            m->at_line_start = after_cr = false;
            continue;
        }
        const uint8_t *lf = memchr(p, '\n', n);
        size_t span = lf ? (size_t)(lf - p) + 1 : n;
        m->size += span;
        /* Only a CRLF starts a line that may be dot-stuffed; a bare LF still ends a shown
         * line. */
        bool crlf = lf && (lf > p ? lf[-1] == '\r' : after_cr);
        m->at_line_start = lf && (m->bdat || crlf);
        m->mid_line = lf == NULL;
        if (lf && !buf_size(&m->line) && showing(m)) { /* the whole line is here */
            m->lines++;
            show_direct(m, p, span, show, ctx);
        } else {
            collect(m, p, span);
            if (lf) end_line(m, show, ctx);
        }
        after_cr = p[span - 1] == '\r';
        p += span, n -= span;
    }
    pass_on(m, run, (size_t)(p - run));
}

/* Byte i of the held bytes followed by the new ones. */
static uint8_t pending_byte(const struct message_view *m, const uint8_t *bytes, size_t i)
{
    return i < m->held ? m->hold[i] : bytes[i - m->held];
}

void message_view_feed(struct message_view *m, const uint8_t *bytes, size_t len,
                       message_line_fn show, void *ctx)
{
    if (m->bdat) {
        deliver(m, bytes, len, false, show, ctx);
        return;
    }
    /* The stream ends with the terminator's ".\r\n": always keep the last 3 bytes back so
     * that it is never delivered, whatever the chunking. Keep a 4th back when it is a CR, so
     * that a CR is always delivered with the byte after it: then the byte before the first
     * one delivered here is never a CR followed by LF. */
    size_t total = m->held + len, keep = 3;
    if (total > keep && pending_byte(m, bytes, total - keep - 1) == '\r') keep = 4;
    if (total <= keep) {
        memcpy(m->hold + m->held, bytes, len);
        m->held += len;
        return;
    }
    size_t out = total - keep;
    size_t from_hold = out < m->held ? out : m->held;
    deliver(m, m->hold, from_hold, false, show, ctx);
    deliver(m, bytes, out - from_hold, from_hold && m->hold[from_hold - 1] == '\r', show, ctx);
    uint8_t next[4];
    size_t k = 0;
    for (size_t i = from_hold; i < m->held; i++) next[k++] = m->hold[i];
    size_t rest = keep - k;
    memcpy(next + k, bytes + len - rest, rest);
    memcpy(m->hold, next, keep);
    m->held = keep;
}

void message_view_end(struct message_view *m, struct message_summary *out, message_line_fn show,
                      void *ctx)
{
    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned md_len = 0;
    if (m->mid_line) { /* a last line without LF (BDAT) */
        if (show && showing(m)) show_collected(m, buf_size(&m->line), show, ctx);
        m->lines++;
    }
    EVP_DigestFinal_ex(m->sha, md, &md_len);
    memset(out, 0, sizeof *out);
    out->size = m->size;
    out->lines = m->lines;
    out->hidden_lines = m->lines > m->shown ? (unsigned)(m->lines - m->shown) : 0;
    for (unsigned i = 0; i < md_len && i < 32; i++) sprintf(out->sha256_hex + 2 * i, "%02x", md[i]);
    message_view_abort(m);
}

void message_view_abort(struct message_view *m)
{
    EVP_MD_CTX_free(m->sha);
    m->sha = NULL;
    buf_free(&m->line);
}
