/* text.c - the text transcript format (see text.h). Markers follow swaks: " ->" client to
 * server, "<- " server to client, "~" instead of "-" once the leg is in TLS. */
#include "smtptap/text.h"

#include "smtptap/ehlo.h"
#include "smtptap/utf8.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define C_RESET   "\033[0m"
#define C_DIM     "\033[2m"
#define C_RED     "\033[31m"
#define C_GREEN   "\033[32m"
#define C_YEL     "\033[33m"
#define C_BLUE    "\033[34m"
#define C_CYAN    "\033[36m"
#define C_MAGENTA "\033[35m"
#define C_BOLD    "\033[1m"

/* Code points that are valid UTF-8 but act on a terminal or reorder what it shows: the C1
 * controls (0x9B is an 8-bit CSI, so a peer could send escape sequences into the live
 * transcript) and the bidirectional controls (a line could be made to read backwards). */
static bool steers_the_terminal(uint32_t cp)
{
    return (cp >= 0x80 && cp < 0xa0) || cp == 0x061c || cp == 0x200e || cp == 0x200f ||
           (cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069);
}

/* A valid UTF-8 sequence at p that the terminal may show as it is, or 0. */
static size_t utf8_len(const uint8_t *p, size_t n)
{
    uint32_t cp;
    size_t len = utf8_sequence(p, n, &cp);
    return len && !steers_the_terminal(cp) ? len : 0; /* else escaped byte by byte */
}

/* Whether one of the 8 bytes in w needs a look: a control byte (< 0x20), DEL, a backslash or
 * a byte >= 0x80. No false negatives (a word with none of them is printable ASCII). */
static bool word_needs_look(uint64_t w)
{
    const uint64_t ones = 0x0101010101010101u, highs = 0x8080808080808080u;
    uint64_t del = w ^ (0x7f * ones), bs = w ^ ('\\' * ones);
    uint64_t control = (w - 0x20 * ones) & ~w; /* a byte below 0x20 (bit 7 set there) */
    return (w | control | ((del - ones) & ~del) | ((bs - ones) & ~bs)) & highs;
}

/* The end of the run of printable ASCII (not a backslash) that starts at b[i]. */
static size_t plain_run(const uint8_t *b, size_t i, size_t n)
{
    for (uint64_t w; i + 8 <= n; i += 8) { /* most content is such runs: 8 bytes a step */
        memcpy(&w, b + i, 8);
        if (word_needs_look(w)) break;
    }
    while (i < n && b[i] >= 0x20 && b[i] < 0x7f && b[i] != '\\') i++;
    return i;
}

void text_escape(const uint8_t *b, size_t n, struct buf *out)
{
    size_t i = 0;
    while (i < n) {
        size_t run = plain_run(b, i, n);
        buf_append(out, b + i, run - i);
        i = run;
        if (i >= n) break;
        uint8_t c = b[i];
        size_t u = c >= 0x80 ? utf8_len(b + i, n - i) : 0;
        if (u) {
            buf_append(out, b + i, u);
            i += u;
            continue;
        }
        switch (c) {
        case '\\': buf_append_str(out, "\\\\"); break;
        case '\r': buf_append_str(out, "\\r"); break;
        case '\n': buf_append_str(out, "\\n"); break;
        case '\t': buf_append_str(out, "\t"); break;
        case 0: buf_append_str(out, "\\0"); break;
        default: buf_printf(out, "\\x%02X", c); break;
        }
        i++;
    }
}

/* A reply smtptap edited on its way to the client: shown as the client got it. */
static bool edited(const struct event *ev)
{
    return ev->kind == EV_REPLY && ev->facts && ev->facts->reply.edited_from;
}

/* "<=+" for a line of an edited reply that the server's reply does not have, else "<= ". */
static const char *edit_marker(const struct event *ev, const uint8_t *line, size_t n)
{
    const struct event_reply_facts *r = &ev->facts->reply;
    size_t skip = n > 4 ? 4 : n;
    return ehlo_has_text(r->edited_from, r->edited_from_len, line + skip, n - skip) ? "<= " : "<=+";
}

static const char *marker(const struct event *ev)
{
    switch (ev->kind) {
    case EV_COMMAND:
    case EV_CONTENT: return ev->tls ? " ~>" : " ->";
    case EV_REPLY: return ev->tls ? "<~ " : "<- ";
    case EV_LINT: return "**";
    case EV_AUTH: return "##";
    case EV_FAULT: return "!!";
    case EV_ERROR: return ev->dir == DIR_S2C ? "<**" : "**>";
    default: return "==";
    }
}

static const char *reply_color(const uint8_t *line, size_t n)
{
    switch (n ? line[0] : 0) {
    case '2': return C_GREEN;
    case '3': return C_CYAN;
    case '4': return C_YEL;
    case '5': return C_RED;
    default: return C_RED;
    }
}

static const char *color_of(const struct event *ev, const uint8_t *line, size_t n)
{
    switch (ev->kind) {
    case EV_COMMAND: return C_BOLD;
    case EV_CONTENT: return C_DIM;
    case EV_REPLY: return reply_color(line, n);
    case EV_LINT: return C_YEL;
    case EV_ERROR: return C_RED;
    case EV_AUTH: return C_CYAN;
    case EV_FAULT: return C_MAGENTA;
    default: return C_BLUE;
    }
}

/* Decimal digits of v at the end of out[0..32): returns where they start. */
static char *digits(uint64_t v, char *end)
{
    do *--end = (char)('0' + v % 10);
    while (v /= 10);
    return end;
}

/* "#N +S.mmm ": on every line of the transcript, so made without printf. */
static void prefix(const struct event *ev, struct buf *out)
{
    uint64_t ms = ev->t_ns / 1000000;
    char tmp[64], *end = tmp + sizeof tmp;
    char *p = end;
    *--p = ' ';
    uint64_t frac = ms % 1000;
    *--p = (char)('0' + frac % 10);
    *--p = (char)('0' + frac / 10 % 10);
    *--p = (char)('0' + frac / 100);
    *--p = '.';
    p = digits(ms / 1000, p);
    *--p = '+';
    *--p = ' ';
    p = digits(ev->session, p);
    *--p = '#';
    buf_append(out, p, (size_t)(end - p));
}

/* Texts that smtptap wrote are readable already (and may carry escapes of their own, e.g.
 * decoded AUTH): only control bytes are made harmless for a terminal. */
static void text_sanitize(const uint8_t *b, size_t n, struct buf *out)
{
    for (size_t i = 0; i < n; i++) {
        if (b[i] < 0x20 || b[i] == 0x7f)
            buf_printf(out, "\\x%02X", b[i]);
        else
            buf_append(out, b + i, 1);
    }
}

/* "  (12 ms)" after a reply's last line: the time from its command's last byte. */
static void latency(const struct event *ev, struct buf *out)
{
    if (ev->kind != EV_REPLY || !ev->facts || !ev->facts->reply.latency_ns) return;
    double ms = (double)ev->facts->reply.latency_ns / 1e6;
    if (ms < 0.1)
        buf_append_str(out, "  (<0.1 ms)");
    else
        buf_printf(out, ms < 10 ? "  (%.1f ms)" : "  (%.0f ms)", ms);
}

static void one_line(const struct event *ev, const uint8_t *line, size_t n, bool last, bool color,
                     struct buf *out)
{
    prefix(ev, out);
    const char *col = color ? color_of(ev, line, n) : NULL;
    if (col) buf_append_str(out, col);
    buf_append_str(out, edited(ev) ? edit_marker(ev, line, n) : marker(ev));
    buf_append_str(out, " ");
    if (ev->bytes)
        text_escape(line, n, out);
    else
        text_sanitize(line, n, out);
    if (last) latency(ev, out);
    if (ev->local) buf_append_str(out, "  [smtptap]");
    if (ev->to_smtptap) buf_append_str(out, "  [to smtptap]");
    if (col) buf_append_str(out, C_RESET);
    buf_append_str(out, "\n");
}

/* Splits bytes at LF; each line loses its CRLF or LF terminator. */
static void lines(const struct event *ev, const uint8_t *b, size_t n, bool color, struct buf *out)
{
    size_t start = 0;
    if (!b) b = (const uint8_t *)""; /* no bytes: one empty line (and no arithmetic on NULL) */
    do {
        const uint8_t *lf = start < n ? memchr(b + start, '\n', n - start) : NULL;
        size_t end = lf ? (size_t)(lf - b) : n;
        size_t body = end;
        if (lf && body > start && b[body - 1] == '\r') body--;
        size_t next = lf ? end + 1 : n;
        one_line(ev, b + start, body - start, next >= n, color, out);
        start = next;
    } while (start < n);
}

void text_format_event(const struct event *ev, bool color, struct buf *out)
{
    const char *text = ev->text ? ev->text : ""; /* a note without text is an empty line */
    switch (ev->kind) {
    case EV_RAW:
    case EV_START:
    case EV_UPSTREAM:
    case EV_WIRE:
    case EV_CLIENT_TLS:
    case EV_BODY:
    case EV_DELIVERY:
    case EV_END: return; /* structured only: "==" lines say the same in words */
    case EV_COMMAND:
    case EV_REPLY:
    case EV_CONTENT: lines(ev, ev->bytes, ev->len, color, out); return;
    default: lines(ev, (const uint8_t *)text, strlen(text), color, out); return;
    }
}

void text_rfc3339(uint64_t wall_us, char *out, size_t size)
{
    time_t secs = (time_t)(wall_us / 1000000u);
    struct tm tm;
    if (!localtime_r(&secs, &tm)) {
        snprintf(out, size, "%llu.%06llu", (unsigned long long)(wall_us / 1000000u),
                 (unsigned long long)(wall_us % 1000000u));
        return;
    }
    long off = tm.tm_gmtoff / 60;
    char sign = off < 0 ? '-' : '+';
    if (off < 0) off = -off;
    char date[40];
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, size, "%s.%06llu%c%02ld:%02ld", date, (unsigned long long)(wall_us % 1000000u),
             sign, off / 60, off % 60);
}

struct stream_writer {
    struct event_writer base;
    FILE *stream;
    bool color;
    bool owns_stream;
    bool preview_only; /* the terminal without -v: a message's first 40 lines */
    struct buf line;
};

void text_format_live(const struct event *ev, bool color, bool whole_messages, struct buf *out)
{
    if (!whole_messages && ev->kind == EV_CONTENT && ev->past_preview) return;
    uint64_t past = ev->kind == EV_MESSAGE && ev->facts ? ev->facts->message.past_preview : 0;
    if (!whole_messages && past && ev->text) {
        struct event noted = *ev;
        char text[400];
        snprintf(text, sizeof text, "%s (%llu line%s not shown, -v shows them)", ev->text,
                 (unsigned long long)past, past == 1 ? "" : "s");
        noted.text = text;
        text_format_event(&noted, color, out);
    } else {
        text_format_event(ev, color, out);
    }
}

enum { FILE_GATHER = 64 * 1024 }; /* a capture file's lines are written this many at once */

/* The lines gathered for a capture file go to its stream. */
static void put_gathered(struct stream_writer *s)
{
    if (buf_size(&s->line)) fwrite(buf_head(&s->line), 1, buf_size(&s->line), s->stream);
    buf_reset(&s->line);
}

static void stream_write(struct event_writer *w, const struct event *ev)
{
    struct stream_writer *s = (struct stream_writer *)w;
    if (!s->owns_stream) { /* the terminal: line by line */
        buf_reset(&s->line);
        text_format_live(ev, s->color, !s->preview_only, &s->line);
        put_gathered(s); /* nothing for raw bytes, and no NULL to fwrite */
        return;
    }
    /* A capture file: lines gathered, one fwrite per FILE_GATHER bytes (a 20 MB message is
     * some 250,000 lines), and whenever the file is flushed. */
    text_format_live(ev, s->color, !s->preview_only, &s->line);
    if (buf_size(&s->line) >= FILE_GATHER) put_gathered(s);
    /* A capture file is readable while its session runs: complete up to the last reply. The
     * live stream is flushed once per loop iteration by the server. */
    if (!w->flush_by_owner && (ev->kind == EV_REPLY || ev->kind == EV_END)) {
        put_gathered(s);
        fflush(s->stream);
    }
}

static void stream_flush(struct event_writer *w)
{
    struct stream_writer *s = (struct stream_writer *)w;
    put_gathered(s);
    fflush(s->stream);
}

static void stream_close(struct event_writer *w)
{
    struct stream_writer *s = (struct stream_writer *)w;
    put_gathered(s);
    if (s->owns_stream)
        fclose(s->stream);
    else
        fflush(s->stream);
    buf_free(&s->line);
    free(s);
}

struct event_writer *text_stream_writer_new(FILE *stream, bool color)
{
    struct stream_writer *s = calloc(1, sizeof *s);
    if (!s) abort();
    s->base.write = stream_write;
    s->base.close = stream_close;
    s->base.flush = stream_flush;
    s->stream = stream;
    s->color = color;
    return &s->base;
}

struct event_writer *text_live_writer_new(FILE *stream, bool color, bool whole_messages)
{
    struct stream_writer *s = (struct stream_writer *)text_stream_writer_new(stream, color);
    s->preview_only = !whole_messages;
    return &s->base;
}

struct event_writer *text_file_writer_new(FILE *file)
{
    struct stream_writer *s = (struct stream_writer *)text_stream_writer_new(file, false);
    s->owns_stream = true;
    return &s->base;
}
